"""The delivery admin for support staff: find deliveries by event id, delivery id, endpoint or a
customer's phone/email; see attempts with request and response; retry like the API does."""
import pytest
from django.utils import timezone

from deliveries.models import Delivery, DeliveryAttempt
from endpoints import services as endpoint_services
from events.models import Event, EventType
from vocelio_webhooks.models import AuditLogEntry

CHANGELIST = "/admin/deliveries/delivery/"


@pytest.fixture
def endpoint(event_types):
    return endpoint_services.create_endpoint(data={"name": "CRM", "url": "https://crm.example.com/hooks",
                                                   "events": ["lead.*"]})


def _delivery(endpoint, event_id: str, data: dict, status: str = Delivery.Status.SUCCEEDED, **fields) -> Delivery:
    event = Event.objects.create(event_id=event_id, event_type=EventType.objects.get(name="lead.created"),
                                 timestamp=timezone.now(), data=data, environment=endpoint.environment)
    return Delivery.objects.create(event=event, endpoint=endpoint, status=status, **fields)


def _ids(response) -> set[int]:
    return {row.pk for row in response.context["cl"].result_list}


def test_delivery_admin_search_by_event_id_finds_its_deliveries(admin_client, endpoint):
    # given
    wanted = _delivery(endpoint, "evt_call_42", {"call_id": "c-42"})
    _delivery(endpoint, "evt_call_43", {"call_id": "c-43"})

    # when
    response = admin_client.get(CHANGELIST, {"q": "evt_call_42"})

    # then
    assert response.status_code == 200
    assert _ids(response) == {wanted.pk}


def test_delivery_admin_search_by_phone_in_any_format_finds_the_customers_deliveries(admin_client, endpoint):
    # given one customer's phone written three ways, and another customer
    first = _delivery(endpoint, "evt_a", {"lead": {"phone": "+1-555-010-2030", "name": "Ann"}})
    second = _delivery(endpoint, "evt_b", {"contact_number": 15550102030})
    third = _delivery(endpoint, "evt_c", {"caller": "call from (555) 010 2030 ended"})
    _delivery(endpoint, "evt_d", {"lead": {"phone": "+1-555-010-9999"}})
    _delivery(endpoint, "evt_e", {"amount": 5550102030123})  # longer number that merely contains the digits

    # when
    response = admin_client.get(CHANGELIST, {"q": "+1 (555) 010-2030"})

    # then
    assert response.status_code == 200
    assert _ids(response) == {first.pk, second.pk, third.pk}


def test_delivery_admin_search_by_email_is_case_insensitive(admin_client, endpoint):
    # given
    wanted = _delivery(endpoint, "evt_mail_1", {"lead": {"email": "Ann.Lee@Example.com"}})
    _delivery(endpoint, "evt_mail_2", {"lead": {"email": "bob@example.com"}})

    # when
    response = admin_client.get(CHANGELIST, {"q": "ann.lee@example.com"})

    # then
    assert _ids(response) == {wanted.pk}


def test_delivery_admin_search_by_public_delivery_id_and_endpoint_name(admin_client, endpoint, event_types):
    # given
    other = endpoint_services.create_endpoint(data={"name": "Billing", "url": "https://billing.example.com/h",
                                                    "events": ["lead.*"]})
    wanted = _delivery(endpoint, "evt_x", {})
    at_billing = _delivery(other, "evt_y", {})

    # when
    by_public_id = admin_client.get(CHANGELIST, {"q": f"dlv_{wanted.pk}"})
    by_raw_id = admin_client.get(CHANGELIST, {"q": str(wanted.pk)})
    by_endpoint = admin_client.get(CHANGELIST, {"q": "billing.example.com"})

    # then
    assert _ids(by_public_id) == {wanted.pk}
    assert wanted.pk in _ids(by_raw_id)
    assert _ids(by_endpoint) == {at_billing.pk}


def test_delivery_admin_changelist_shows_support_columns(admin_client, endpoint):
    # given
    _delivery(endpoint, "evt_cols", {}, status=Delivery.Status.DEAD_LETTERED, attempt_count=5, last_status_code=503)

    # when
    html = admin_client.get(CHANGELIST).content.decode()

    # then
    for text in ("evt_cols", "lead.created", "CRM", 'data-status="dead_lettered"', "503", "Event id",
                 "Next attempt at"):
        assert text in html


def test_delivery_admin_changelist_queries_do_not_grow_with_rows(admin_client, endpoint,
                                                                 django_assert_max_num_queries):
    # given 20 deliveries of 20 events
    for number in range(20):
        _delivery(endpoint, f"evt_n_{number}", {"n": number}, status=Delivery.Status.FAILED, last_status_code=400)

    # when / then: session, user, count(s), the page, filters' choices — not one per row
    with django_assert_max_num_queries(15):
        response = admin_client.get(CHANGELIST)
    assert len(response.context["cl"].result_list) == 20


def test_delivery_admin_detail_shows_attempts_with_request_and_response(admin_client, endpoint):
    # given
    delivery = _delivery(endpoint, "evt_detail", {"phone": "+15550001111"}, status=Delivery.Status.FAILED)
    DeliveryAttempt.objects.create(
        delivery=delivery, attempt_number=1, url="https://crm.example.com/hooks", http_method="POST",
        request_headers={"Content-Type": "application/json", "Authorization": "Bearer ab***"},
        request_body='{"event_id":"evt_detail"}', request_body_sha256="a" * 64, request_body_size=25,
        response_status_code=422, response_headers={"X-Trace": "t-99"}, response_body='{"error":"bad lead"}',
        duration_ms=87, error_class="HTTPError", error_message="422 Unprocessable", outcome="failed",
        started_at=timezone.now(),
    )

    # when
    html = admin_client.get(f"{CHANGELIST}{delivery.pk}/change/").content.decode()

    # then
    for text in ("POST https://crm.example.com/hooks", "Bearer ab***", "&quot;event_id&quot;: &quot;evt_detail&quot;",
                 "headers (422)", "t-99", "bad lead", "87", "HTTPError: 422 Unprocessable"):
        assert text in html


def test_delivery_admin_retry_action_sets_the_same_state_as_the_api_retry(admin_client, api, endpoint):
    # given two identical dead letters: one retried through the API, one through the admin
    by_api = _delivery(endpoint, "evt_r1", {}, status=Delivery.Status.DEAD_LETTERED, attempt_count=5)
    by_admin = _delivery(endpoint, "evt_r2", {}, status=Delivery.Status.DEAD_LETTERED, attempt_count=5)

    # when
    api.post(f"/deliveries/retry/{by_api.pk}")
    response = admin_client.post(CHANGELIST, {"action": "retry_selected", "_selected_action": [by_admin.pk]},
                                 follow=True)

    # then
    by_api.refresh_from_db()
    by_admin.refresh_from_db()
    assert "Queued 1 delivery(ies) for an attempt now." in response.content.decode()
    assert by_admin.status == by_api.status == Delivery.Status.RETRYING
    assert by_admin.attempt_count == by_api.attempt_count
    assert by_admin.next_attempt_at is not None and by_admin.completed_at is None
    assert AuditLogEntry.objects.filter(action="retry", object_id=str(by_admin.pk), actor="user:admin").exists()


def test_delivery_admin_discard_action_cancels_dead_letters_only(admin_client, endpoint):
    # given
    dead = _delivery(endpoint, "evt_dead", {}, status=Delivery.Status.DEAD_LETTERED)
    done = _delivery(endpoint, "evt_done", {}, status=Delivery.Status.SUCCEEDED)

    # when
    admin_client.post(CHANGELIST, {"action": "discard_selected", "_selected_action": [dead.pk, done.pk]})

    # then
    dead.refresh_from_db()
    done.refresh_from_db()
    assert (dead.status, done.status) == (Delivery.Status.CANCELLED, Delivery.Status.SUCCEEDED)
    assert AuditLogEntry.objects.filter(action="discard").count() == 1


def test_delivery_admin_dead_letter_filter_lists_only_dead_letters(admin_client, endpoint):
    # given
    dead = _delivery(endpoint, "evt_dl", {}, status=Delivery.Status.DEAD_LETTERED, completed_at=timezone.now())
    _delivery(endpoint, "evt_ok", {})

    # when
    response = admin_client.get(CHANGELIST, {"dead_letter": "24h"})

    # then
    assert _ids(response) == {dead.pk}


def test_event_admin_links_to_its_deliveries(admin_client, endpoint):
    # given
    delivery = _delivery(endpoint, "evt_link", {})
    _delivery(endpoint, "evt_other", {})

    # when
    events_page = admin_client.get("/admin/events/event/", {"q": "evt_link"}).content.decode()
    deliveries = admin_client.get(CHANGELIST, {"event__id__exact": delivery.event_id})

    # then
    assert f"?event__id__exact={delivery.event_id}" in events_page and "1 delivery" in events_page
    assert _ids(deliveries) == {delivery.pk}


def test_delivery_admin_never_deletes_history_even_for_a_superuser(admin_client, endpoint):
    # given
    delivery = _delivery(endpoint, "evt_keep", {})
    attempt = DeliveryAttempt.objects.create(delivery=delivery, attempt_number=1, url=endpoint.url,
                                             started_at=timezone.now(), outcome=DeliveryAttempt.Outcome.SUCCEEDED,
                                             response_status_code=200)

    # when
    listed = admin_client.get(CHANGELIST)
    bulk = admin_client.post(CHANGELIST, {"action": "delete_selected", "_selected_action": [delivery.pk],
                                          "post": "yes"})
    one = admin_client.post(f"{CHANGELIST}{delivery.pk}/delete/", {"post": "yes"})
    one_attempt = admin_client.post(f"/admin/deliveries/deliveryattempt/{attempt.pk}/delete/", {"post": "yes"})
    detail = admin_client.get(f"{CHANGELIST}{delivery.pk}/change/").content.decode()

    # then
    assert "delete_selected" not in [name for name, _ in listed.context["action_form"].fields["action"].choices]
    assert bulk.status_code in (200, 302)
    assert (one.status_code, one_attempt.status_code) == (403, 403)
    assert f"{CHANGELIST}{delivery.pk}/delete/" not in detail
    assert Delivery.objects.filter(pk=delivery.pk).exists()
    assert DeliveryAttempt.objects.filter(pk=attempt.pk).exists()


@pytest.mark.parametrize("query", [
    "created_at__year=99999999999",
    "created_at__year=2024&created_at__month=99999999999",
    "created_at__year=9999&created_at__month=12&created_at__day=31",
    "created_at__year=0",
    "next_attempt_at__year=99999999999",
])
def test_delivery_admin_out_of_range_dates_in_the_query_string_show_the_unfiltered_list(admin_client, endpoint,
                                                                                         query):
    # given
    delivery = _delivery(endpoint, "evt_dates", {})

    # when
    response = admin_client.get(f"{CHANGELIST}?{query}")

    # then Django's answer to any bad filter: back to the list without it
    assert response.status_code == 302
    assert response["Location"] == f"{CHANGELIST}?e=1"
    assert _ids(admin_client.get(response["Location"])) == {delivery.pk}


def test_delivery_admin_action_with_a_bad_id_changes_nothing(admin_client, endpoint):
    # given
    delivery = _delivery(endpoint, "evt_bad_id", {}, status=Delivery.Status.DEAD_LETTERED)

    # when
    response = admin_client.post(CHANGELIST, {"action": "discard_selected", "_selected_action": [delivery.pk, "abc"]},
                                 follow=True)

    # then
    assert response.status_code == 200
    assert "Not a valid id: &#x27;abc&#x27;. No items have been changed." in response.content.decode()
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.DEAD_LETTERED


@pytest.mark.parametrize("url", [
    f"{CHANGELIST}?status__exact=%00",
    "/admin/deliveries/deliveryattempt/?error_class__exact=%00",
    "/admin/endpoints/webhookendpoint/?health__circuit_state__exact=%00",
    "/admin/events/event/?environment__exact=pro%00duction",
    "/admin/vocelio_webhooks/auditlogentry/?action__exact=%00",
])
def test_admin_filter_values_with_a_nul_character_show_the_unfiltered_list(admin_client, endpoint, url):
    # given: a NUL character in a filter value (PostgreSQL refuses it in any text parameter: the
    # page answered 500 with "PostgreSQL text fields cannot contain NUL (0x00) bytes")

    # when
    response = admin_client.get(url)

    # then Django's answer to any bad filter: back to the list without it
    assert response.status_code == 302
    assert response["Location"] == f"{url.split('?')[0]}?e=1"
    assert admin_client.get(response["Location"]).status_code == 200
