"""Found walking the README with ``make run`` (whose ``.env`` sets
``WEBHOOK_ALLOW_PRIVATE_NETWORKS=true``): a deprecated IPv4-compatible IPv6 address
(``::169.254.169.254``, ``::/96``) was judged as merely "reserved", which that setting opens, so
the metadata service's address in that spelling was saved and connected to, although the setting
never opens link-local addresses and the README lists IPv4-compatible among the refused
spellings. It is now judged by the IPv4 address it carries, at save and when sending."""
import pytest

from endpoints.models import WebhookEndpoint
from tests.conftest import assert_seed_error
from tests.endpoints.test_network import install_fake_dns

CARRYING_METADATA_OR_MULTICAST = [
    "http://[::169.254.169.254]/latest/meta-data/", "http://[::a9fe:a9fe]/latest/", "http://[::169.254.1.1]/",
    "http://[::224.0.0.1]/", "http://[::255.255.255.255]/",
]


@pytest.fixture
def private_networks_open(settings) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    settings.WEBHOOK_ALLOWED_PRIVATE_CIDRS = []
    settings.WEBHOOK_ALLOW_HTTP_IN_PRODUCTION = False


@pytest.mark.parametrize("url", CARRYING_METADATA_OR_MULTICAST)
def test_create_endpoint_refuses_ipv4_compatible_metadata_address_with_private_networks_open(
        api, private_networks_open, url):
    # given WEBHOOK_ALLOW_PRIVATE_NETWORKS=true, as `make env` writes it

    # when
    response = api.post("/endpoints", {"name": "CRM", "url": url, "events": ["lead.*"],
                                       "environment": "development"}, format="json")

    # then
    error = assert_seed_error(response, 400, "URL_NOT_ALLOWED")
    assert "url" in error["details"]["fields"]
    assert "169.254" not in error["message"]
    assert WebhookEndpoint.objects.count() == 0


def test_create_endpoint_still_accepts_ipv4_compatible_private_address_with_private_networks_open(
        api, private_networks_open):
    # given the setting opens private addresses, in every spelling

    # when
    response = api.post("/endpoints", {"name": "CRM", "url": "http://[::10.0.0.1]/hook", "events": ["lead.*"],
                                       "environment": "development"}, format="json")

    # then
    assert response.status_code == 201, response.content


def test_test_send_to_name_resolving_to_ipv4_compatible_metadata_address_is_blocked(
        api, private_networks_open, monkeypatch):
    # given a host name whose DNS answers the metadata address in its IPv4-compatible spelling
    dns = install_fake_dns(monkeypatch)
    dns.set("meta.partner.test", ["::a9fe:a9fe"])

    # when
    response = api.post("/endpoints/test", {"url": "http://meta.partner.test/hook", "environment": "development",
                                             "signature_method": "none"}, format="json")

    # then nothing is connected to: the guard refuses the address
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["success"] is False
    assert body["error_class"] == "blocked_destination"
    assert "169.254" not in body["error_message"] and "a9fe" not in body["error_message"]
    assert dns.lookups["meta.partner.test"] >= 1
