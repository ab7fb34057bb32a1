"""Outbound network policy: which addresses a webhook may be sent to (SSRF guard).

Rule: a delivery may only go to a globally routable address (``ipaddress`` ``is_global``), so
loopback, private, link-local (cloud metadata), CGNAT, multicast, reserved and unspecified
addresses are refused — unless ``WEBHOOK_ALLOW_PRIVATE_NETWORKS`` is on (the development default
written by ``make env``). An endpoint's ``allowed_ip_ranges``, when set, must also contain the
address. Every address the host name resolves to is checked, at save time and before each
attempt; issue 5 moves the check to the connected socket.
"""
import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings


class BlockedDestination(Exception):
    """The URL resolves to an address deliveries may not reach. The message never names the
    resolved address (so the API cannot be used to map internal networks)."""


class UnresolvableHost(BlockedDestination):
    """The host name does not resolve (now): a DNS failure, retried like a connection error."""


def _addresses(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnresolvableHost(f"Host {host!r} could not be resolved.") from exc
    result = []
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%", 1)[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        result.append(address)
    return result


def check_destination(url: str, *, allowed_ip_ranges: list[str] | None = None, resolve: bool = True) -> None:
    """Raise ``BlockedDestination`` if ``url`` may not be delivered to; return ``None`` if it may.

    ``allowed_ip_ranges`` is the endpoint's CIDR allow-list (empty = any public address).
    ``resolve=False`` skips DNS for names (used at save time when the receiver's DNS may not exist
    yet); literal IP addresses are always checked.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        literal = ipaddress.ip_address(host)
        addresses = [literal]
    except ValueError:
        if not resolve:
            return
        addresses = _addresses(host, port)
    ranges = [ipaddress.ip_network(r, strict=False) for r in (allowed_ip_ranges or [])]
    for address in addresses:
        if ranges and not any(address in network for network in ranges):
            raise BlockedDestination("The URL resolves outside the endpoint's allowed_ip_ranges.")
        if not address.is_global and not settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS:
            raise BlockedDestination(
                "The URL resolves to a private, loopback or reserved address; "
                "set WEBHOOK_ALLOW_PRIVATE_NETWORKS=true to allow internal receivers."
            )
