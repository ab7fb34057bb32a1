"""The SSRF guard's address rule and the save-time checks of issue 5 ("Outbound requests"): every
spelling of a non-public address refused with 400 ``URL_NOT_ALLOWED``, what the settings open,
https and certificate verification for production endpoints, and ``ca_bundle`` validation. Names
are resolved by a fake resolver (``socket.getaddrinfo`` replaced); the guard is never switched
off. Sending through the guard is tested in ``tests/deliveries/test_sender.py``."""
import datetime
import ipaddress
import socket
from dataclasses import dataclass, field

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from endpoints import network
from endpoints.models import WebhookEndpoint
from tests.conftest import assert_seed_error

# A documentation-free public address (example.com's) and its other spellings.
PUBLIC_V4 = "93.184.216.34"


# --- helpers shared with tests/deliveries/test_sender.py ---------------------------------------
@dataclass
class FakeDNS:
    """Answers for host names, in order (the last answer repeats); other names go to the real
    resolver. ``lookups`` counts the lookups of each faked name."""

    answers: dict[str, list[list[str]]] = field(default_factory=dict)
    lookups: dict[str, int] = field(default_factory=dict)

    def set(self, host: str, *answers: list[str]) -> None:
        self.answers[host] = list(answers)


def install_fake_dns(monkeypatch) -> FakeDNS:
    """Replace ``socket.getaddrinfo`` so chosen names resolve to chosen addresses."""
    dns = FakeDNS()
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
        name = host.decode() if isinstance(host, bytes) else host
        if name not in dns.answers or flags & socket.AI_NUMERICHOST:
            return real_getaddrinfo(host, port, family, type, proto, flags)
        dns.lookups[name] = dns.lookups.get(name, 0) + 1
        queue = dns.answers[name]
        addresses = queue.pop(0) if len(queue) > 1 else queue[0]
        port_number = int(port or 0)
        return [
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (a, port_number, 0, 0)) if ":" in a
            else (socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port_number))
            for a in addresses
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return dns


@pytest.fixture
def fake_dns(monkeypatch) -> FakeDNS:
    return install_fake_dns(monkeypatch)


def self_signed_certificate(host_name: str) -> tuple[str, str]:
    """A fresh self-signed certificate for ``host_name`` (and 127.0.0.1): ``(cert_pem, key_pem)``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host_name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(host_name), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return certificate.public_bytes(serialization.Encoding.PEM).decode(), key_pem


def close_guard(settings) -> None:
    """The production default: nothing private opened."""
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = False
    settings.WEBHOOK_ALLOWED_PRIVATE_CIDRS = []
    settings.WEBHOOK_ALLOW_HTTP_IN_PRODUCTION = False


@pytest.fixture
def guard_closed(settings) -> None:
    close_guard(settings)


# --- the address rule, on literal URLs ----------------------------------------------------------
BLOCKED_URLS = [
    # loopback in every IPv4 spelling the resolver accepts
    "http://127.0.0.1/hook", "http://2130706433/hook", "http://0177.0.0.1/hook", "http://0x7f.1/hook",
    "http://127.1/hook", "http://0x7f000001/hook", "http://017700000001/hook", "http://127.0.0.2:8080/hook",
    # private, CGNAT, link-local / cloud metadata (also as an integer), unspecified, broadcast
    "http://10.0.0.1/hook", "http://172.16.0.1/hook", "http://192.168.1.1/hook", "http://100.64.0.1/hook",
    "http://169.254.169.254/latest/meta-data/", "http://2852039166/latest/meta-data/", "http://0.0.0.0/hook",
    "http://0/hook", "http://255.255.255.255/hook",
    # multicast, reserved, benchmarking, documentation, IETF protocol assignments
    "http://224.0.0.1/hook", "http://240.0.0.1/hook", "http://198.18.0.1/hook", "http://192.0.2.1/hook",
    "http://198.51.100.7/hook", "http://203.0.113.9/hook", "http://192.0.0.8/hook",
    # IPv6: loopback, unspecified, ULA, link-local, site-local, multicast, documentation
    "http://[::1]/hook", "http://[::]/hook", "http://[fd12:3456::1]/hook", "http://[fe80::1]/hook",
    "http://[fec0::1]/hook", "http://[ff02::1]/hook", "http://[2001:db8::1]/hook",
    # IPv6 carrying a private IPv4: mapped, compatible, NAT64, 6to4, Teredo
    "http://[::ffff:127.0.0.1]/hook", "http://[::ffff:7f00:1]/hook", "http://[::127.0.0.1]/hook",
    "http://[64:ff9b::7f00:1]/hook", "http://[64:ff9b::a9fe:a9fe]/hook", "http://[2002:a00:1::1]/hook",
    "http://[2002:a9fe:a9fe::]/hook", "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/hook",
]


@pytest.mark.parametrize("url", BLOCKED_URLS)
def test_check_destination_refuses_every_spelling_of_a_non_public_address(guard_closed, url):
    # given the production default (guard_closed)

    # when / then
    with pytest.raises(network.BlockedDestination, match="private") as caught:
        network.check_destination(url, resolve=False)
    assert "127.0.0" not in str(caught.value) and "169.254" not in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        f"https://{PUBLIC_V4}/hook", "https://1572395042/hook", "https://[2606:4700::1111]/hook",
        f"https://[::ffff:{PUBLIC_V4}]/hook", "https://[64:ff9b::5db8:d822]/hook", "https://[2002:5db8:d822::1]/hook",
    ],
)
def test_check_destination_accepts_public_addresses_in_any_spelling(guard_closed, url):
    # given the production default

    # when / then (no exception)
    network.check_destination(url, resolve=False)


def test_check_destination_private_networks_setting_opens_private_but_not_metadata_or_multicast(settings):
    # given
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    settings.WEBHOOK_ALLOWED_PRIVATE_CIDRS = []

    # when / then
    network.check_destination("http://10.0.0.1/hook", resolve=False)
    network.check_destination("http://0x7f.1:9000/hook", resolve=False)
    for url in ("http://169.254.169.254/latest/", "http://[fe80::1]/", "http://0.0.0.0/", "http://224.0.0.1/"):
        with pytest.raises(network.BlockedDestination):
            network.check_destination(url, resolve=False)


def test_check_destination_allowed_private_cidrs_open_exactly_the_listed_ranges(settings):
    # given
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = False
    settings.WEBHOOK_ALLOWED_PRIVATE_CIDRS = ["127.0.0.1/32", "169.254.10.0/24"]

    # when / then
    network.check_destination("http://127.0.0.1:9000/hook", resolve=False)
    network.check_destination("http://2130706433:9000/hook", resolve=False)
    network.check_destination("http://169.254.10.5/hook", resolve=False)
    for url in ("http://127.0.0.2/", "http://[::ffff:127.0.0.1]/", "http://169.254.169.254/", "http://10.0.0.1/"):
        with pytest.raises(network.BlockedDestination):
            network.check_destination(url, resolve=False)


def test_check_destination_allowed_ip_ranges_never_open_a_private_address(guard_closed):
    # given an endpoint allow-list naming a private range

    # when / then
    with pytest.raises(network.BlockedDestination, match="private"):
        network.check_destination("http://10.0.0.5/hook", allowed_ip_ranges=["10.0.0.0/8"], resolve=False)


# --- the address rule, on resolved names ------------------------------------------------------
@pytest.mark.parametrize(
    "answer",
    [["127.0.0.1"], ["10.1.2.3"], ["169.254.169.254"], ["::1"], ["::ffff:10.0.0.1"], ["64:ff9b::a00:1"],
     [PUBLIC_V4, "10.0.0.1"], ["fd00::1", "2606:4700::1111"]],
)
def test_check_destination_refuses_a_name_if_any_resolved_address_is_not_public(guard_closed, fake_dns, answer):
    # given
    fake_dns.set("hooks.partner.test", answer)

    # when / then
    with pytest.raises(network.BlockedDestination, match="private") as caught:
        network.check_destination("https://hooks.partner.test/hook")
    assert not any(address in str(caught.value) for address in answer)


def test_check_destination_resolves_names_against_allowed_ip_ranges(guard_closed, fake_dns):
    # given
    fake_dns.set("hooks.partner.test", [PUBLIC_V4])

    # when / then
    network.check_destination("https://hooks.partner.test/hook", allowed_ip_ranges=["93.184.216.0/24"])
    with pytest.raises(network.BlockedDestination, match="allowed_ip_ranges"):
        network.check_destination("https://hooks.partner.test/hook", allowed_ip_ranges=["8.8.8.0/24"])


# --- saving endpoints ---------------------------------------------------------------------------
def _create(api, **fields):
    body = {"name": "CRM", "url": "https://crm.example.com/hooks", "events": ["lead.*"], **fields}
    return api.post("/endpoints", body, format="json")


@pytest.mark.parametrize(
    ("field", "url"),
    [
        ("url", "http://167772161/hook"), ("url", "http://012.0.0.1/hook"), ("url", "http://0xa.1/hook"),
        ("url", "http://10.1/hook"), ("url", "https://2852039166/latest/meta-data/"),
        ("url", "https://[::ffff:a9fe:a9fe]/latest"), ("url", "https://[64:ff9b::a00:1]/hook"),
        ("url", "https://[2002:a00:1::]/hook"), ("failover_url", "https://0x7f.1/hook"),
    ],
)
def test_endpoints_create_refuses_non_public_literal_in_any_spelling(api, guard_closed, field, url):
    # given the production default (guard_closed)

    # when
    response = _create(api, **{field: url})

    # then
    error = assert_seed_error(response, 400, "URL_NOT_ALLOWED")
    assert field in error["details"]["fields"]
    assert not any(part in error["message"] for part in ("10.0.0.1", "169.254", "127.0.0.1"))
    assert WebhookEndpoint.objects.count() == 0


def test_endpoints_update_to_private_spelling_is_refused_and_changes_nothing(api, guard_closed):
    # given
    created = _create(api).json()

    # when
    response = api.patch(f"/endpoints/{created['id']}", {"url": "https://0251.0376.0251.0376/latest"}, format="json")

    # then
    assert_seed_error(response, 400, "URL_NOT_ALLOWED")
    assert WebhookEndpoint.objects.get(pk=created["id"]).url == "https://crm.example.com/hooks"


def test_endpoints_create_accepts_a_receiver_the_deployment_opened(api, settings):
    # given the test settings' allow-list (127.0.0.1/32) with the guard on
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = False
    settings.WEBHOOK_ALLOWED_PRIVATE_CIDRS = ["127.0.0.1/32"]

    # when
    response = _create(api, url="http://127.0.0.1:9000/hooks")

    # then
    assert response.status_code == 201, response.content


def test_endpoints_create_production_plain_http_to_public_address_is_refused(api, guard_closed):
    # given the production default

    # when
    literal = _create(api, url=f"http://{PUBLIC_V4}/hooks")
    name = _create(api, url="http://crm.example.com/hooks")
    staging = _create(api, url="http://crm.example.com/hooks", environment="staging")

    # then
    assert "url" in assert_seed_error(literal, 400, "VALIDATION_ERROR")["details"]["fields"]
    assert "url" in assert_seed_error(name, 400, "VALIDATION_ERROR")["details"]["fields"]
    assert staging.status_code == 201, staging.content


def test_endpoints_create_production_plain_http_allowed_by_setting(api, guard_closed, settings):
    # given
    settings.WEBHOOK_ALLOW_HTTP_IN_PRODUCTION = True

    # when
    response = _create(api, url=f"http://{PUBLIC_V4}/hooks")

    # then
    assert response.status_code == 201, response.content


def test_endpoints_create_production_plain_http_name_accepted_when_private_receivers_are_opened(api, settings):
    # given: the name may resolve to an opened internal address; connecting checks it
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = False
    settings.WEBHOOK_ALLOWED_PRIVATE_CIDRS = ["10.20.0.0/16"]
    settings.WEBHOOK_ALLOW_HTTP_IN_PRODUCTION = False

    # when
    response = _create(api, url="http://crm.internal.test/hooks")

    # then
    assert response.status_code == 201, response.content


def test_endpoints_verify_ssl_false_is_refused_for_production_only(api):
    # given / when
    production = _create(api, verify_ssl=False)
    development = _create(api, verify_ssl=False, environment="development")

    # then
    assert "verify_ssl" in assert_seed_error(production, 400, "VALIDATION_ERROR")["details"]["fields"]
    assert development.status_code == 201, development.content
    assert development.json()["verify_ssl"] is False


def test_endpoints_ca_bundle_is_validated_stored_and_shown(api):
    # given
    certificate, _key = self_signed_certificate("receiver.test")
    second, _ = self_signed_certificate("other.test")

    # when
    response = _create(api, ca_bundle=certificate + second)

    # then
    assert response.status_code == 201, response.content
    assert response.json()["ca_bundle"].strip() == (certificate + second).strip()
    assert api.get(f"/endpoints/{response.json()['id']}").json()["ca_bundle"].strip() == (certificate + second).strip()


@pytest.mark.parametrize(
    "bundle",
    [
        "not a certificate",
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
        "private key",
        "certificate and private key",
    ],
)
def test_endpoints_invalid_ca_bundle_is_refused(api, bundle):
    # given
    certificate, key = self_signed_certificate("receiver.test")
    bundle = {"private key": key, "certificate and private key": certificate + key}.get(bundle, bundle)

    # when
    response = _create(api, ca_bundle=bundle)

    # then
    error = assert_seed_error(response, 400, "VALIDATION_ERROR")
    assert "ca_bundle" in error["details"]["fields"]
    assert "PRIVATE KEY-----" not in str(error)
    assert WebhookEndpoint.objects.count() == 0
