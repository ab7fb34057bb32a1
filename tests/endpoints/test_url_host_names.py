"""Found in a walk: ``urlsplit`` (the save-time checks) and urllib3 (the sender) read some URL hosts
differently, so such endpoints were saved (201) and then failed every delivery, or were sent to
another host than the one checked at save: ``http://a\\b.com/`` goes to host ``a``, a
percent-encoded ``%31%36%39.254.169.254`` is the metadata address, ``a<b>.com`` is sent
percent-encoded, ``⒈.com`` is valid IDNA 2003 but not the IDNA 2008 urllib3 uses. They are now
refused at save with a 400 that writes nothing; ordinary and internationalised names still pass."""
import pytest

from endpoints.models import WebhookEndpoint
from tests.conftest import assert_seed_error
from vocelio_webhooks.models import AuditLogEntry


def _create(api, **fields):
    body = {"name": "CRM", "url": "https://crm.example.com/hooks", "events": ["lead.*"], **fields}
    return api.post("/endpoints", body, format="json")


@pytest.mark.parametrize(
    ("field", "url"),
    [
        ("url", "https://hooks.example.com\\.evil.test/x"), ("url", "https://%31%36%39.254.169.254/latest/"),
        ("url", "https://a<b>.example.com/"), ("url", "https://a%41.example.com/"), ("url", "https://a^b.example.com/"),
        ("url", "https://a|b.example.com/"), ("url", "https://a\"b.example.com/"),
        ("url", "https://\u2488.example.com/"), ("url", "https://\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com/"),
        ("failover_url", "https://%31%32%37.0.0.1/hook"), ("failover_url", "https://x{y}.example.com/"),
    ],
)
def test_create_endpoint_refuses_host_the_sender_reads_differently_and_writes_nothing(api, field, url):
    # given
    audit_before = AuditLogEntry.objects.count()

    # when
    response = _create(api, **{field: url})

    # then
    error = assert_seed_error(response, 400, "VALIDATION_ERROR")
    assert field in error["details"]["fields"]
    assert "not a valid host name" in " ".join(error["details"]["fields"][field])
    assert WebhookEndpoint.objects.count() == 0
    assert AuditLogEntry.objects.count() == audit_before


def test_update_endpoint_to_such_a_host_is_refused_and_changes_nothing(api):
    # given
    created = _create(api)
    assert created.status_code == 201, created.content

    # when
    response = api.patch(f"/endpoints/{created.json()['id']}", {"url": "https://crm.example.com\\.evil.test/hooks"},
                         format="json")

    # then
    assert_seed_error(response, 400, "VALIDATION_ERROR")
    assert WebhookEndpoint.objects.get().url == "https://crm.example.com/hooks"


@pytest.mark.parametrize(
    "url",
    [
        "https://crm.example.com/hooks", "https://my_host.example.com/hooks", "https://xn--exmple-cua.com/hooks",
        "https://exämple.com/hooks", "https://ÉXAMPLE.com/hooks", "https://straße.example/hooks",
        "https://crm.example.com./hooks", "https://crm.example.com:8443/a%20b?x=%41",
    ],
)
def test_create_endpoint_still_accepts_ordinary_and_international_host_names(api, url):
    # when
    response = _create(api, url=url)

    # then
    assert response.status_code == 201, response.content
    assert response.json()["url"] == url


@pytest.mark.parametrize(
    "url",
    [
        # valid IDNA 2008 names whose scripts write vowel signs and viramas as combining marks
        # (Unicode categories Mn/Mc, not "letters" for ``\w``), and a Persian name with a
        # zero-width non-joiner (IDNA 2008 CONTEXTJ): the sender encodes and sends each of them
        "https://\u0928\u092e\u0938\u094d\u0924\u0947.\u092d\u093e\u0930\u0924/hooks",  # नमस्ते.भारत
        "https://\u0e20\u0e39\u0e21\u0e34.\u0e44\u0e17\u0e22/hooks",  # ภูมิ.ไทย
        "https://\u0ba4\u0bae\u0bbf\u0bb4\u0bcd.\u0b87\u0ba8\u0bcd\u0ba4\u0bbf\u0baf\u0bbe/hooks",  # தமிழ்.இந்தியா
        "https://\u0645\u062b\u0627\u0644\u200c\u0647\u0627.ir/hooks",  # مثال‌ها.ir
    ],
)
def test_create_endpoint_accepts_idna_names_with_combining_marks(api, url):
    # when
    response = _create(api, url=url)

    # then
    assert response.status_code == 201, response.content
    assert WebhookEndpoint.objects.get().url == url
