"""The address rule of the SSRF guard (see the package docstring): which addresses a request
may connect to, name resolution, and the save-time checks. Pure functions and a frozen policy; no
I/O besides the system resolver."""
from __future__ import annotations

import functools
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings
from urllib3.util.connection import allowed_gai_family

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

PRIVATE_MESSAGE = (
    "The URL resolves to a private, loopback, link-local or reserved address, which deliveries may not reach "
    "(an operator can open internal receivers with WEBHOOK_ALLOW_PRIVATE_NETWORKS or WEBHOOK_ALLOWED_PRIVATE_CIDRS)."
)
OUTSIDE_RANGES_MESSAGE = "The URL resolves outside the endpoint's allowed_ip_ranges."
PLAIN_HTTP_MESSAGE = (
    "Production endpoints must use https to reach a public address "
    "(plain http is only for internal receivers, or with WEBHOOK_ALLOW_HTTP_IN_PRODUCTION=true)."
)

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# Not global, whatever this Python's ``is_global`` says (its tables differ between Python releases).
_NOT_GLOBAL = tuple(
    ipaddress.ip_network(cidr)
    for cidr in (
        "0.0.0.0/8", "100.64.0.0/10", "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "198.18.0.0/15",
        "198.51.100.0/24", "203.0.113.0/24", "240.0.0.0/4",
        "::/96",  # IPv4-compatible (deprecated), includes :: and ::1
        "64:ff9b:1::/48",  # NAT64 local use (RFC 8215)
        "100::/64", "2001::/23", "2001:db8::/32", "3fff::/20", "5f00::/16", "fc00::/7", "fe80::/10",
        "fec0::/10", "ff00::/8",
    )
)


class BlockedDestination(Exception):
    """The URL resolves to an address deliveries may not reach. The message never names the
    resolved address (so the API cannot be used to map internal networks)."""


class UnresolvableHost(BlockedDestination):
    """The host name does not resolve (now): a DNS failure, retried like a connection error."""


# --- the address rule -------------------------------------------------------------------------
def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries and is routed to: IPv4-mapped, NAT64
    (``64:ff9b::/96``, RFC 6052), 6to4 (``2002::/16``, RFC 3056) or Teredo's client
    (RFC 4380); ``None`` for other addresses."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    return None


def is_public_address(address: IPAddress) -> bool:
    """``True`` when ``address`` is globally routable and not special in any way listed in the
    module docstring; an IPv6 address that embeds an IPv4 address is public only if the IPv4
    address is (and, for Teredo, whose prefix is never global, not at all)."""
    embedded = embedded_ipv4(address)
    if embedded is not None:
        if isinstance(address, ipaddress.IPv6Address) and address.teredo is not None:
            return False
        return is_public_address(embedded)
    if (
        not address.is_global or address.is_private or address.is_loopback or address.is_link_local
        or address.is_multicast or address.is_reserved or address.is_unspecified
        or getattr(address, "is_site_local", False)
    ):
        return False
    return not any(address in network for network in _NOT_GLOBAL if network.version == address.version)


_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


def _carried_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """``embedded_ipv4``, plus the IPv4 address in a deprecated IPv4-compatible address
    (``::169.254.169.254``, RFC 4291 section 2.5.5.1; not ``::`` or ``::1``). Such an address is
    never public (``_NOT_GLOBAL``), but when the settings open private addresses it must still be
    judged by the address it carries: ``::a9fe:a9fe`` is the metadata service, which they never
    open (found in a walk: it was opened as merely "reserved")."""
    embedded = embedded_ipv4(address)
    if embedded is None and isinstance(address, ipaddress.IPv6Address) and address in _IPV4_COMPATIBLE \
            and int(address) > 1:
        return ipaddress.IPv4Address(int(address))
    return embedded


def _never_allowed(address: IPAddress) -> bool:
    target = _carried_ipv4(address) or address
    return target.is_unspecified or target.is_multicast or target == ipaddress.IPv4Address("255.255.255.255")


def _link_local(address: IPAddress) -> bool:
    return (_carried_ipv4(address) or address).is_link_local


@functools.lru_cache(maxsize=256)
def _networks(cidrs: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)


@dataclass(frozen=True)
class DestinationPolicy:
    """Which addresses one request may connect to. Hashable: it is part of the connection-pool
    key, so a connection opened under one policy (or one value of the settings) is never reused
    under another."""

    allowed_ip_ranges: tuple[IPNetwork, ...] = ()
    allow_private_networks: bool = False
    allowed_private_cidrs: tuple[IPNetwork, ...] = ()
    require_https_for_public: bool = False

    @classmethod
    def from_settings(
        cls, *, allowed_ip_ranges: list[str] | tuple[str, ...] | None = None, require_https_for_public: bool = False
    ) -> DestinationPolicy:
        """The policy for an endpoint with ``allowed_ip_ranges`` (CIDR strings) under the current
        ``WEBHOOK_ALLOW_PRIVATE_NETWORKS`` / ``WEBHOOK_ALLOWED_PRIVATE_CIDRS``. Raises
        ``ValueError`` for a malformed range."""
        return cls(
            allowed_ip_ranges=_networks(tuple(allowed_ip_ranges or ())),
            allow_private_networks=bool(settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS),
            allowed_private_cidrs=_networks(tuple(settings.WEBHOOK_ALLOWED_PRIVATE_CIDRS or ())),
            require_https_for_public=require_https_for_public,
        )

    def check(self, address: IPAddress) -> None:
        """Return ``None`` if ``address`` may be connected to, else raise ``BlockedDestination``
        (with a message that does not contain the address)."""
        if self.allowed_ip_ranges and not any(address in network for network in self.allowed_ip_ranges):
            raise BlockedDestination(OUTSIDE_RANGES_MESSAGE)
        if is_public_address(address):
            if self.require_https_for_public:
                raise BlockedDestination(PLAIN_HTTP_MESSAGE)
            return
        if _never_allowed(address):
            raise BlockedDestination(PRIVATE_MESSAGE)
        if any(address in network for network in self.allowed_private_cidrs):
            return
        if self.allow_private_networks and not _link_local(address):
            return
        raise BlockedDestination(PRIVATE_MESSAGE)


def destination_policy(*, url: str, allowed_ip_ranges: list[str] | None, production: bool) -> DestinationPolicy:
    """The policy for one request to ``url`` from an endpoint with ``allowed_ip_ranges``;
    ``production`` applies the plain-http rule (https required for public addresses unless
    ``WEBHOOK_ALLOW_HTTP_IN_PRODUCTION``)."""
    plain_http = urlsplit(url).scheme.lower() == "http"
    return DestinationPolicy.from_settings(
        allowed_ip_ranges=allowed_ip_ranges,
        require_https_for_public=production and plain_http and not settings.WEBHOOK_ALLOW_HTTP_IN_PRODUCTION,
    )


# --- resolution -------------------------------------------------------------------------------
def _to_address(text: str) -> IPAddress:
    return ipaddress.ip_address(text.split("%", 1)[0])


def literal_address(host: str) -> IPAddress | None:
    """The address ``host`` denotes without DNS, in any spelling the resolver accepts (IPv6,
    dotted, integer ``2130706433``, octal ``0177.0.0.1``, hex ``0x7f.1``, short ``127.1``), or
    ``None`` for a host name. The spelling is read by ``getaddrinfo`` with ``AI_NUMERICHOST`` —
    the same code that reads it when connecting — not parsed here."""
    host = (host or "").strip("[]")
    if not host:
        return None
    try:
        return _to_address(host)
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
    except (socket.gaierror, UnicodeError, ValueError):
        return None
    return _to_address(infos[0][4][0]) if infos else None


def resolve(host: str, port: int) -> list[tuple[socket.AddressFamily, tuple, IPAddress]]:
    """Every ``(family, sockaddr, address)`` ``host`` resolves to now (system resolver,
    ``socket.getaddrinfo``), in the resolver's order, without duplicates. Raises
    ``UnresolvableHost`` when it does not resolve."""
    host = host.strip("[]")
    try:
        infos = socket.getaddrinfo(host, port, allowed_gai_family(), socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, ValueError) as exc:
        raise UnresolvableHost(f"Host {host!r} could not be resolved.") from exc
    seen, result = set(), []
    for family, _type, _proto, _canonname, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        address = _to_address(sockaddr[0])
        if (address, sockaddr) not in seen:
            seen.add((address, sockaddr))
            result.append((family, sockaddr, address))
    if not result:
        raise UnresolvableHost(f"Host {host!r} could not be resolved.")
    return result


def vetted_addresses(host: str, port: int, policy: DestinationPolicy) -> list[tuple[socket.AddressFamily, tuple]]:
    """Resolve ``host`` and check every address against ``policy``; return the
    ``(family, sockaddr)`` pairs to connect to. One refused address refuses the whole answer (a
    name that mixes public and internal addresses is a rebinding attempt). Raises
    ``UnresolvableHost`` or ``BlockedDestination``."""
    candidates = resolve(host, port)
    for _family, _sockaddr, address in candidates:
        policy.check(address)
    return [(family, sockaddr) for family, sockaddr, _address in candidates]


def check_destination(url: str, *, allowed_ip_ranges: list[str] | None = None, resolve: bool = True) -> None:
    """Raise ``BlockedDestination`` if ``url`` may not be delivered to; return ``None`` if it may.

    ``allowed_ip_ranges`` is the endpoint's CIDR allow-list (empty = any allowed address).
    ``resolve=False`` skips DNS for names (used at save time, when the receiver's DNS may not exist
    yet); literal addresses, in every spelling, are always checked. Sending does not rely on this
    check: ``GuardedHTTPAdapter`` checks the addresses it connects to.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    policy = DestinationPolicy.from_settings(allowed_ip_ranges=allowed_ip_ranges)
    literal = literal_address(host)
    if literal is not None:
        policy.check(literal)
    elif resolve:
        vetted_addresses(host, port, policy)


def plain_http_allowed_in_production(url: str) -> bool:
    """Whether a production endpoint may keep the ``http://`` URL ``url`` (checked at save).

    Yes with ``WEBHOOK_ALLOW_HTTP_IN_PRODUCTION``; for a literal address, yes unless it is public
    (a non-public one is then the SSRF rule's business); for a host name, yes only when the
    deployment opened some private addresses — connecting then refuses public ones
    (``DestinationPolicy.require_https_for_public``)."""
    if settings.WEBHOOK_ALLOW_HTTP_IN_PRODUCTION:
        return True
    literal = literal_address(urlsplit(url).hostname or "")
    if literal is not None:
        return not is_public_address(literal)
    return bool(settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS or settings.WEBHOOK_ALLOWED_PRIVATE_CIDRS)
