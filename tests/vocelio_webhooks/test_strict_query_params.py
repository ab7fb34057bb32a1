"""Bad pagination and filter values are 400 ``VALIDATION_ERROR`` naming the parameter, on every
list endpoint, as ``?status=bogus`` always was, instead of 200 with a default or no filter."""
import pytest
from django.utils import timezone

from deliveries.models import Delivery
from endpoints.models import WebhookEndpoint
from events.models import Event, EventType
from tests.conftest import assert_seed_error
from vocelio_webhooks.models import AuditLogEntry

LISTS = ["/endpoints", "/deliveries", "/deliveries/dead-letters", "/events", "/audit-log", "/alert-rules", "/alerts",
         "/templates"]


@pytest.mark.parametrize("path", LISTS)
@pytest.mark.parametrize("query", ["limit=0", "limit=-1", "limit=abc", "limit=1.5", "limit=501", "limit=+5",
                                   "limit=99999999999999999999999", "offset=-1", "offset=abc", "offset=1e3",
                                   "offset=99999999999999999999999"])
def test_list_with_an_invalid_pagination_value_is_400_naming_it(api, path, query):
    # given / when
    response = api.get(f"{path}?{query}")

    # then
    error = assert_seed_error(response, 400, "VALIDATION_ERROR")
    name = query.split("=")[0]
    assert list(error["details"]["fields"]) == [name]
    assert name in error["message"]


@pytest.fixture
def two_deliveries(event_types):
    endpoint = WebhookEndpoint.objects.create(name="e", url="https://example.com/h", events=["*"])
    event = Event.objects.create(event_id="evt_q_1", event_type=EventType.objects.get(name="lead.created"), data={},
                                 timestamp=timezone.now())
    original = Delivery.objects.create(event=event, endpoint=endpoint)
    replay = Delivery.objects.create(event=event, endpoint=endpoint, is_replay=True)
    return original, replay


@pytest.mark.parametrize(("query", "param"), [
    ("/deliveries?is_replay=maybe", "is_replay"),
    ("/deliveries?is_replay=yes", "is_replay"),
    ("/deliveries?status=bogus", "status"),
    ("/audit-log?action=nope", "action"),
    ("/alert-rules?enabled=maybe", "enabled"),
    ("/endpoints?environment=nowhere", "environment"),
])
def test_list_with_an_invalid_filter_value_is_400_naming_it(api, two_deliveries, query, param):
    # given / when
    response = api.get(query)

    # then
    error = assert_seed_error(response, 400, "VALIDATION_ERROR")
    assert param in error["details"]["fields"]


@pytest.mark.parametrize(("value", "replays"), [("true", [True]), ("True", [True]), ("1", [True]),
                                                ("false", [False]), ("0", [False]), ("", [False, True])])
def test_deliveries_is_replay_filter_takes_true_and_false(api, two_deliveries, value, replays):
    # given / when
    response = api.get(f"/deliveries?is_replay={value}")

    # then
    assert response.status_code == 200, response.content
    assert sorted(row["is_replay"] for row in response.json()["results"]) == replays


def test_valid_pagination_still_pages(api, two_deliveries):
    # given / when
    first = api.get("/deliveries?limit=1")
    second = api.get("/deliveries?limit=1&offset=1")
    everything = api.get("/deliveries?limit=500&offset=0")
    empty_values = api.get("/deliveries?limit=&offset=")

    # then
    assert [len(r.json()["results"]) for r in (first, second, everything, empty_values)] == [1, 1, 2, 2]
    assert first.json()["results"][0]["id"] != second.json()["results"][0]["id"]
    assert "limit=1&offset=1" in first.json()["next"]


@pytest.mark.parametrize("action", ["purge", "test_send", "create"])
def test_audit_log_action_filter_takes_every_recorded_action(api, action):
    # given
    AuditLogEntry.objects.create(actor="command:purge", action=action, object_type="deliveries.delivery")

    # when
    response = api.get(f"/audit-log?action={action}")

    # then
    assert response.status_code == 200, response.content
    assert [row["action"] for row in response.json()["results"]] == [action]
