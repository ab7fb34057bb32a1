"""Endpoint field rules (shared by the model, the API and the admin), event-type matching and
the SSRF guard. No database needed except where a model is cleaned."""
import pytest
from django.core.exceptions import ValidationError

from endpoints import network
from endpoints.filters import event_type_matches
from endpoints.models import (
    default_retry_policy,
    validate_custom_headers,
    validate_event_patterns,
    validate_ip_ranges,
    validate_retry_policy,
    validate_webhook_url,
)


# --- URL ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "url",
    [
        "https://api.salesforce.com/webhooks/leads",
        "http://127.0.0.1:8080/hook?x=1",
        "https://[2001:db8::1]/hook",
        "https://example.com/" + "a" * (2048 - len("https://example.com/")),
    ],
)
def test_validate_webhook_url_accepts_http_and_https(url):
    # given / when / then (no exception)
    validate_webhook_url(url)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/hook", "scheme"),
        ("file:///etc/passwd", "scheme"),
        ("javascript:alert(1)", "scheme"),
        ("example.com/hook", "scheme"),
        ("https://user:pass@example.com/hook", "credentials"),
        ("https://token@example.com/hook", "credentials"),
        ("https://example.com/hook#frag", "fragment"),
        ("https:///hook", "host"),
        ("https://example.com/" + "a" * 2049, "2048"),
        ("https://example.com:99999/hook", "Invalid URL"),
        ("https://example.com/a b", "spaces"),
    ],
)
def test_validate_webhook_url_rejects_bad_urls(url, message):
    # given / when / then
    with pytest.raises(ValidationError, match=message):
        validate_webhook_url(url)


# --- custom headers ---------------------------------------------------------------------------
def test_validate_custom_headers_accepts_the_seeds_example():
    # given / when / then (no exception)
    validate_custom_headers({"Authorization": "Bearer sf_token_123", "X-Source": "Vocelio"})


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({"X Bad": "v"}, "Invalid header name"),
        ({"X-Bad:": "v"}, "Invalid header name"),
        ({"": "v"}, "Invalid header name"),
        ({"X-Inject": "a\r\nX-Evil: 1"}, "CR, LF"),
        ({"X-Inject": "a\nb"}, "CR, LF"),
        ({"X-Inject": "a\rb"}, "CR, LF"),
        ({"X-Nul": "a\x00b"}, "control"),
        ({"X-Number": 5}, "string value"),
        ({"X-Long": "a" * 8193}, "8192"),
    ],
)
def test_validate_custom_headers_rejects_bad_names_and_values(headers, message):
    # given / when / then
    with pytest.raises(ValidationError, match=message):
        validate_custom_headers(headers)


@pytest.mark.parametrize(
    "name", ["Host", "content-length", "Transfer-Encoding", "Webhook-Signature", "webhook-id", "X-Vocelio-Signature"]
)
def test_validate_custom_headers_rejects_reserved_headers(name):
    # given / when / then
    with pytest.raises(ValidationError, match="cannot be overridden"):
        validate_custom_headers({name: "x"})


def test_validate_custom_headers_rejects_non_object_and_too_many():
    # given
    too_many = {f"X-H{i}": "v" for i in range(51)}

    # when / then
    with pytest.raises(ValidationError):
        validate_custom_headers(["X-Source", "Vocelio"])
    with pytest.raises(ValidationError, match="at most 50"):
        validate_custom_headers(too_many)


# --- event patterns ---------------------------------------------------------------------------
@pytest.mark.parametrize("patterns", [["lead.created"], ["lead.*"], ["*"], ["lead.*", "call.ended", "crm.sync_failed"]])
def test_validate_event_patterns_accepts_types_and_wildcards(patterns):
    # given / when / then (no exception)
    validate_event_patterns(patterns)


@pytest.mark.parametrize(
    "patterns",
    [[], "lead.*", ["Lead.Created"], ["lead.*.created"], ["*.created"], ["lead."], ["lead created"], ["**"],
     [5], None],
)
def test_validate_event_patterns_rejects_bad_patterns(patterns):
    # given / when / then
    with pytest.raises(ValidationError):
        validate_event_patterns(patterns)


# --- retry policy ---------------------------------------------------------------------------
def test_validate_retry_policy_accepts_the_seed_policy_and_partial_policies():
    # given / when / then (no exception)
    validate_retry_policy(default_retry_policy())
    validate_retry_policy({"max_attempts": 3})
    validate_retry_policy({})


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ({"max_retries": 3}, "Unknown retry_policy keys: max_retries"),
        ({"max_attempts": 0}, "between 1 and 50"),
        ({"max_attempts": 51}, "between 1 and 50"),
        ({"initial_delay_seconds": -1}, "between"),
        ({"max_delay_seconds": 7 * 86400 + 1}, "between"),
        ({"backoff_multiplier": 0.5}, "between"),
        ({"backoff_multiplier": 11}, "between"),
        ({"max_attempts": "5"}, "integer"),
        ({"max_attempts": 5.5}, "integer"),
        ({"max_attempts": True}, "integer"),
        ({"backoff_multiplier": "2"}, "number"),
        ({"enabled": "yes"}, "true or false"),
        ({"retry_on_status_codes": [500, "502"]}, "status codes"),
        ({"retry_on_status_codes": [99]}, "status codes"),
        ({"retry_on_status_codes": 500}, "status codes"),
        ({"initial_delay_seconds": 60, "max_delay_seconds": 30}, "must not exceed"),
        ({"initial_delay_seconds": 600}, "must not exceed"),  # above the default max of 300
        ([], "object"),
    ],
)
def test_validate_retry_policy_rejects_bad_policies(policy, message):
    # given / when / then
    with pytest.raises(ValidationError, match=message):
        validate_retry_policy(policy)


# --- IP ranges ------------------------------------------------------------------------------
def test_validate_ip_ranges_accepts_cidrs_and_addresses():
    # given / when / then (no exception)
    validate_ip_ranges(["203.0.113.0/24", "198.51.100.7", "2001:db8::/32"])
    validate_ip_ranges([])


@pytest.mark.parametrize("ranges", [["10.0.0.0/33"], ["not-an-ip"], ["203.0.113.0/24", "999.1.1.1"], "10.0.0.0/8",
                                    [None]])
def test_validate_ip_ranges_rejects_bad_ranges(ranges):
    # given / when / then
    with pytest.raises(ValidationError):
        validate_ip_ranges(ranges)


# --- event type matching ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("patterns", "event_type", "expected"),
    [
        (["lead.*"], "lead.created", True),
        (["lead.*"], "lead.converted", True),
        (["lead.*"], "leads.created", False),
        (["lead.*"], "lead", False),
        (["lead.*"], "call.started", False),
        (["*"], "call.started", True),
        (["*"], "crm.sync_failed", True),
        (["lead.created"], "lead.created", True),
        (["lead.created"], "lead.created_v2", False),
        (["lead.created"], "lead.updated", False),
        (["call.*", "lead.updated"], "lead.updated", True),
        ([], "lead.created", False),
    ],
)
def test_event_type_matches_exact_prefix_wildcard_and_star(patterns, event_type, expected):
    # given / when
    matched = event_type_matches(patterns, event_type)

    # then
    assert matched is expected


# --- SSRF guard -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10:8080/hook",
        "http://172.16.0.1/hook",
        "http://169.254.169.254/latest/meta-data/",  # cloud metadata
        "http://100.64.0.1/hook",  # CGNAT
        "http://0.0.0.0/hook",
        "http://[::1]/hook",
        "http://[fd00::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
    ],
)
def test_check_destination_blocks_private_literals_when_private_networks_disallowed(settings, url):
    # given
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = False
    settings.WEBHOOK_ALLOWED_PRIVATE_CIDRS = []  # the test settings open 127.0.0.1/32

    # when / then
    with pytest.raises(network.BlockedDestination, match="private"):
        network.check_destination(url, resolve=False)


def test_check_destination_allows_private_literals_when_private_networks_allowed(settings):
    # given
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True

    # when / then (no exception)
    network.check_destination("http://127.0.0.1:9000/hook")
    network.check_destination("http://10.1.2.3/hook")


def test_check_destination_allows_public_literal(settings):
    # given
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = False

    # when / then (no exception)
    network.check_destination("https://93.184.216.34/hook")


def test_check_destination_enforces_allowed_ip_ranges(settings):
    # given
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = False
    ranges = ["93.184.216.0/24"]

    # when / then
    network.check_destination("https://93.184.216.34/hook", allowed_ip_ranges=ranges)
    with pytest.raises(network.BlockedDestination, match="allowed_ip_ranges"):
        network.check_destination("https://8.8.8.8/hook", allowed_ip_ranges=ranges)


def test_check_destination_allowed_ip_ranges_apply_to_private_receivers_too(settings):
    # given
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True

    # when / then
    network.check_destination("http://10.0.0.5/hook", allowed_ip_ranges=["10.0.0.0/24"])
    with pytest.raises(network.BlockedDestination, match="allowed_ip_ranges"):
        network.check_destination("http://10.0.1.5/hook", allowed_ip_ranges=["10.0.0.0/24"])


def test_check_destination_allowed_ip_ranges_do_not_unblock_private_addresses(settings):
    # given
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = False

    # when / then
    with pytest.raises(network.BlockedDestination):
        network.check_destination("http://10.0.0.5/hook", allowed_ip_ranges=["10.0.0.0/8"])


def test_check_destination_resolve_false_skips_host_names(settings):
    # given
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = False

    # when / then (no exception, no DNS lookup)
    network.check_destination("http://localhost/hook", resolve=False)
    network.check_destination("https://receiver.invalid/hook", resolve=False)


def test_check_destination_resolves_names_and_blocks_loopback(settings):
    # given "localhost" resolves to a loopback address through /etc/hosts, without a network
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = False
    settings.WEBHOOK_ALLOWED_PRIVATE_CIDRS = []  # the test settings open 127.0.0.1/32

    # when / then
    with pytest.raises(network.BlockedDestination) as caught:
        network.check_destination("http://localhost:8000/hook")
    assert "127.0.0.1" not in str(caught.value) and "::1" not in str(caught.value)


def test_check_destination_unresolvable_name_is_blocked(settings):
    # given a reserved TLD that never resolves (RFC 2606)
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True

    # when / then
    with pytest.raises(network.BlockedDestination, match="could not be resolved"):
        network.check_destination("https://receiver.invalid/hook")


# --- model clean ----------------------------------------------------------------------------
@pytest.mark.django_db
def test_endpoint_clean_rejects_jwt_with_custom_authorization_and_api_key_without_key():
    # given
    from endpoints.models import WebhookEndpoint

    jwt_endpoint = WebhookEndpoint(name="j", url="https://example.com/h", events=["*"], signature_method="jwt",
                                   secret="s" * 32, custom_headers={"authorization": "Bearer x"})
    key_endpoint = WebhookEndpoint(name="k", url="https://example.com/h", events=["*"], signature_method="api_key")

    # when / then
    with pytest.raises(ValidationError) as jwt_error:
        jwt_endpoint.full_clean()
    with pytest.raises(ValidationError) as key_error:
        key_endpoint.full_clean()
    assert "custom_headers" in jwt_error.value.message_dict
    assert "api_key" in key_error.value.message_dict
