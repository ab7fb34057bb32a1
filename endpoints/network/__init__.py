"""Outbound requests: where a webhook may be sent (SSRF guard), and the connection-level machinery
that enforces it on every request (``GuardedHTTPAdapter``) together with the per-attempt deadline.

Address rule (issue 5, "Outbound requests"): a delivery may only connect to a *public* address —
``ipaddress``'s ``is_global`` plus explicit checks for what ``is_global`` lets through on some
Python versions (multicast, IPv6 site-local, the IPv4-compatible ``::/96`` block, NAT64 local-use,
documentation ranges) and for IPv6 addresses that embed an IPv4 one (IPv4-mapped ``::ffff:0:0/96``,
NAT64 ``64:ff9b::/96``, 6to4 ``2002::/16``, Teredo ``2001::/32``), which are public only when the
embedded IPv4 address is. A deployment may open non-public addresses:

* ``WEBHOOK_ALLOW_PRIVATE_NETWORKS`` allows every private, loopback, CGNAT and reserved address,
  but not link-local (``169.254.0.0/16`` holds cloud metadata services) and never the unspecified
  address or multicast;
* ``WEBHOOK_ALLOWED_PRIVATE_CIDRS`` allows exactly the listed ranges (link-local included when
  listed). A range matches the address as connected to: ``127.0.0.1/32`` does not admit
  ``::ffff:127.0.0.1``.

An endpoint's ``allowed_ip_ranges``, when set, must also contain every address (it never opens a
private address by itself). Plain ``http`` to a production endpoint may only reach addresses the
deployment opened as private (``require_https_for_public``), unless
``WEBHOOK_ALLOW_HTTP_IN_PRODUCTION`` is on.

Where it is enforced: ``GuardedHTTPAdapter``'s connections resolve the host name themselves
(``socket.getaddrinfo``, so every IPv4 spelling — ``2130706433``, ``0177.0.0.1``, ``0x7f.1``,
``127.1`` — ends up as the address it really means), check *every* address of the answer and
connect only to a checked one, at each new connection. TLS SNI, certificate verification and the
``Host`` header keep the URL's host name. A name that resolves inward later (DNS rebinding) is
refused at connect time. ``check_destination`` applies the same rule without connecting, for
saving a URL. ``BlockedDestination`` messages never name the resolved address, so the API cannot
be used to map internal networks.
"""
from endpoints.network.policy import (  # noqa: F401
    OUTSIDE_RANGES_MESSAGE,
    PLAIN_HTTP_MESSAGE,
    PRIVATE_MESSAGE,
    BlockedDestination,
    DestinationPolicy,
    UnresolvableHost,
    check_destination,
    destination_policy,
    embedded_ipv4,
    is_public_address,
    literal_address,
    plain_http_allowed_in_production,
    resolve,
    vetted_addresses,
)
from endpoints.network.transport import (  # noqa: F401
    AttemptDeadline,
    GuardedHTTPAdapter,
    OutboundOptions,
    attempt_deadline,
)
