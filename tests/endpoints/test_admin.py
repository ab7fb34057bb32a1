"""The endpoint admin: health in the list and the detail, and the test-send action (the same
service as ``POST /endpoints/{id}/test``) against a real receiver on 127.0.0.1."""
import pytest
from django.utils import timezone

from deliveries.models import Delivery, DeliveryAttempt
from endpoints.models import EndpointHealth, WebhookEndpoint
from events.models import Event, EventType
from vocelio_webhooks.models import AuditLogEntry

CHANGELIST = "/admin/endpoints/webhookendpoint/"


def _endpoint(api, url: str, name: str = "Receiver") -> WebhookEndpoint:
    created = api.post("/endpoints", {"name": name, "url": url, "events": ["lead.created"]}, format="json")
    assert created.status_code == 201, created.content
    return WebhookEndpoint.objects.get(pk=created.json()["id"])


def _attempts(endpoint: WebhookEndpoint, outcomes: list[str]) -> None:
    event = Event.objects.create(event_id=f"evt_h_{endpoint.pk}", event_type=EventType.objects.get(name="lead.created"),
                                 timestamp=timezone.now(), data={}, environment=endpoint.environment)
    delivery = Delivery.objects.create(event=event, endpoint=endpoint, status=Delivery.Status.RETRYING)
    for number, outcome in enumerate(outcomes, start=1):
        DeliveryAttempt.objects.create(delivery=delivery, attempt_number=number, url=endpoint.url, http_method="POST",
                                       outcome=outcome, started_at=timezone.now(), duration_ms=10)


def test_endpoint_admin_test_action_sends_a_signed_event_and_shows_the_answer(api, admin_client, receiver):
    # given
    endpoint = _endpoint(api, receiver.url("/hook"))
    receiver.script("/hook", [(202, {}, b"accepted")])

    # when
    response = admin_client.post(CHANGELIST, {"action": "test_endpoint", "_selected_action": [endpoint.pk]},
                                 follow=True)

    # then
    received = receiver.wait_for(1)
    assert received[0].json()["event_type"] == "lead.created"
    assert received[0].header("X-Vocelio-Signature") or received[0].header("webhook-signature")
    assert "Receiver: test lead.created answered 202 in" in response.content.decode()
    assert AuditLogEntry.objects.filter(action="test_send", object_id=str(endpoint.pk)).exists()


def test_endpoint_admin_test_action_shares_the_bound_on_test_sends_in_flight(api, admin_client, receiver, settings):
    # given: the one test-send slot of this process held by another send in flight
    from deliveries.services import attempts

    settings.WEBHOOK_MAX_CONCURRENT_TEST_SENDS = 1
    endpoint = _endpoint(api, receiver.url("/hook"))

    # when
    with attempts._TEST_SEND_SLOTS.hold(limit=1, seconds=30, code="TEST_SEND_BUSY", message="busy"):
        response = admin_client.post(CHANGELIST, {"action": "test_endpoint", "_selected_action": [endpoint.pk]},
                                     follow=True)

    # then: nothing sent, and the page says why
    assert "Receiver: not sent — Too many test sends are in progress" in response.content.decode()
    assert receiver.for_path("/hook") == []
    assert not AuditLogEntry.objects.filter(action="test_send").exists()


def test_endpoint_admin_test_action_reports_a_failing_receiver(api, admin_client, receiver):
    # given
    endpoint = _endpoint(api, receiver.url("/broken"))
    receiver.script("/broken", [(500, {}, b"boom")])

    # when
    response = admin_client.post(CHANGELIST, {"action": "test_endpoint", "_selected_action": [endpoint.pk]},
                                 follow=True)

    # then
    assert "Receiver: test lead.created failed — answered 500" in response.content.decode()
    assert Delivery.objects.count() == 0  # a test send stores nothing


def test_endpoint_admin_lists_health_and_success_rate(api, admin_client, event_types):
    # given one endpoint with 3 of 4 attempts succeeded and an open circuit, one without attempts
    busy = _endpoint(api, "https://busy.example.com/h", name="Busy")
    _endpoint(api, "https://idle.example.com/h", name="Idle")
    _attempts(busy, ["succeeded", "succeeded", "retry", "succeeded"])
    EndpointHealth.objects.update_or_create(endpoint=busy, defaults={
        "circuit_state": "open", "consecutive_failures": 7, "next_probe_at": timezone.now(),
        "last_failure_at": timezone.now()})

    # when
    listed = admin_client.get(CHANGELIST).content.decode()
    detail = admin_client.get(f"{CHANGELIST}{busy.pk}/change/").content.decode()

    # then
    assert "75.0% of 4" in listed and "no attempts" in listed
    assert "open (7 failures" in listed
    assert "75.0% of 4" in detail and "failures in a row" in detail


def test_endpoint_admin_changelist_queries_do_not_grow_with_rows(api, admin_client, django_assert_max_num_queries):
    # given
    for number in range(20):
        endpoint = _endpoint(api, f"https://e{number}.example.com/h", name=f"e{number}")
        _attempts(endpoint, ["succeeded"])

    # when / then
    with django_assert_max_num_queries(12):
        response = admin_client.get(CHANGELIST)
    assert len(response.context["cl"].result_list) == 20


@pytest.mark.parametrize(("action", "status"), [("pause", "paused"), ("resume", "active")])
def test_endpoint_admin_status_actions_audit_the_change(api, admin_client, action, status):
    # given
    endpoint = _endpoint(api, "https://example.com/h")
    if action == "resume":
        WebhookEndpoint.objects.filter(pk=endpoint.pk).update(status="paused")

    # when
    admin_client.post(CHANGELIST, {"action": action, "_selected_action": [endpoint.pk]})

    # then
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).status == status
    entry = AuditLogEntry.objects.get(action="status_change", object_id=str(endpoint.pk))
    assert entry.changes["status"]["new"] == status


# --- "Delete selected": the message counts what this admin deleted --------------------------------
def _messages(response) -> list[tuple[str, str]]:
    return [(message.level_tag, message.message) for message in response.context["messages"]]


def test_endpoint_admin_bulk_delete_counts_only_what_it_deleted_when_another_delete_wins(api, admin_client):
    # given: two endpoints; while the admin deletes the first, someone else deletes the second
    # (on SQLite one writer at a time, so the other delete runs from the first one's post_delete;
    # tests/endpoints/test_delete_races.py has the two-session race on PostgreSQL)
    from django.db.models.signals import post_delete

    first, second = _endpoint(api, "https://a.example.com/h", "a"), _endpoint(api, "https://b.example.com/h", "b")
    raced = []

    def delete_the_other_meanwhile(sender, instance, **kwargs):
        if not raced:
            raced.append(instance.pk)
            WebhookEndpoint.objects.exclude(pk=instance.pk).delete()

    post_delete.connect(delete_the_other_meanwhile, sender=WebhookEndpoint, weak=False)
    try:
        # when
        response = admin_client.post(CHANGELIST, {"action": "delete_selected", "post": "yes",
                                                  "_selected_action": [first.pk, second.pk]}, follow=True)
    finally:
        post_delete.disconnect(delete_the_other_meanwhile, sender=WebhookEndpoint)

    # then: one deleted by the admin, one skipped, and the message says so
    other = second if raced == [first.pk] else first
    assert not WebhookEndpoint.objects.exists()
    assert list(AuditLogEntry.objects.filter(action="delete").values_list("object_id", flat=True)) == [str(raced[0])]
    expected = ("Successfully deleted 1 webhook endpoint. Skipped 1 that someone else deleted meanwhile (nothing "
                f"recorded for it here): {other.name} (#{other.pk}).")
    assert _messages(response) == [("warning", expected)]


def test_endpoint_admin_bulk_delete_names_an_endpoint_deleted_between_confirmation_and_confirm(api, admin_client):
    # given: "Delete selected" on two endpoints shows its confirmation page; meanwhile the second
    # is deleted through the API
    first, second = _endpoint(api, "https://a.example.com/h", "a"), _endpoint(api, "https://b.example.com/h", "b")
    selection = {"action": "delete_selected", "_selected_action": [first.pk, second.pk]}
    confirmation = admin_client.post(CHANGELIST, selection)
    assert confirmation.status_code == 200 and b'name="post"' in confirmation.content
    assert api.delete(f"/endpoints/{second.pk}").status_code == 204

    # when: the admin confirms
    response = admin_client.post(CHANGELIST, {**selection, "post": "yes"}, follow=True)

    # then
    assert not WebhookEndpoint.objects.exists()
    assert list(AuditLogEntry.objects.filter(action="delete", actor__startswith="user:").values_list(
        "object_id", flat=True)) == [str(first.pk)]
    expected = ("Successfully deleted 1 webhook endpoint. Skipped 1 that someone else deleted meanwhile (nothing "
                f"recorded for it here): #{second.pk}.")
    assert _messages(response) == [("warning", expected)]


def test_endpoint_admin_bulk_delete_without_a_race_reports_every_endpoint_deleted(api, admin_client):
    # given
    first, second = _endpoint(api, "https://a.example.com/h", "a"), _endpoint(api, "https://b.example.com/h", "b")

    # when
    response = admin_client.post(CHANGELIST, {"action": "delete_selected", "_selected_action": [first.pk, second.pk],
                                              "post": "yes"}, follow=True)

    # then
    assert not WebhookEndpoint.objects.exists()
    assert _messages(response) == [("success", "Successfully deleted 2 webhook endpoints.")]


def test_endpoint_admin_bulk_delete_counts_a_selection_written_with_a_leading_zero_once(api, admin_client):
    # given: a hand-made POST naming endpoint 7 as "07" (found in review: it was counted deleted,
    # and skipped as deleted by someone else)
    endpoint = _endpoint(api, "https://a.example.com/h", "a")

    # when
    response = admin_client.post(CHANGELIST, {"action": "delete_selected", "_selected_action": [f"0{endpoint.pk}"],
                                              "post": "yes"}, follow=True)

    # then
    assert not WebhookEndpoint.objects.exists()
    assert _messages(response) == [("success", "Successfully deleted 1 webhook endpoint.")]


def test_endpoint_admin_test_action_without_its_default_event_type_says_so(api, admin_client, receiver):
    # given: an endpoint subscribed by wildcard only, and no lead.created type (the default of a
    # test send then) in the catalogue
    created = api.post("/endpoints", {"name": "Calls", "url": receiver.url("/calls"), "events": ["call.*"]},
                       format="json")
    assert created.status_code == 201, created.content
    EventType.objects.filter(name="lead.created").delete()

    # when
    response = admin_client.post(CHANGELIST, {"action": "test_endpoint", "_selected_action": [created.json()["id"]]},
                                 follow=True)

    # then: an error message naming the type (it was an IndexError: a server error page)
    assert response.status_code == 200
    assert "Calls: unknown event type &#x27;lead.created&#x27;." in response.content.decode()
    assert receiver.for_path("/calls") == []
