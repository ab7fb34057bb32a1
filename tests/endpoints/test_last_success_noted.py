"""Found in a walk: an endpoint that had only ever succeeded showed ``health.last_success_at:
null`` in the API, because a success on a healthy endpoint writes nothing of its health (one write
per delivery less, issue 7). Now its time is noted, at most once a minute per endpoint and worker
process (``endpoints.services.note_successes``), on the batch engine's path and the single one."""
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from deliveries import services as delivery_services
from deliveries.models import DeliveryAttempt
from deliveries.services.attempts import attempt_delivery
from endpoints import services as endpoint_services
from endpoints.models import EndpointHealth, WebhookEndpoint
from tests.conftest import due_deliveries, refused_by_database, wait_until


def _endpoint(receiver, name) -> WebhookEndpoint:
    return WebhookEndpoint.objects.create(name=name, url=receiver.url(f"/{name}"), events=["lead.*"],
                                          secret="whsec_noted_test_secret_0123456789")


def _last_success(api, endpoint) -> str | None:
    response = api.get(f"/endpoints/{endpoint.pk}")
    assert response.status_code == 200, response.content
    return response.json()["health"]["last_success_at"]


def _health_writes(queries) -> list[str]:
    return [q["sql"] for q in queries if "endpoints_endpointhealth" in q["sql"]
            and q["sql"].lstrip().upper().startswith(("INSERT", "UPDATE"))]


def test_batch_engine_success_shows_as_last_success_of_a_healthy_endpoint(transactional_db, api, receiver):
    # given: a healthy endpoint that never had a health row, with two due deliveries
    endpoint = _endpoint(receiver, "healthy")
    due_deliveries([endpoint], 2, prefix="evt_noted")
    before = timezone.now()
    assert _last_success(api, endpoint) is None

    # when
    delivery_services.deliver_due_batch()
    wait_until(lambda: DeliveryAttempt.objects.filter(outcome="succeeded").count() == 2)

    # then
    shown = wait_until(lambda: _last_success(api, endpoint))
    assert shown >= before.isoformat()[:19]
    assert EndpointHealth.objects.get(pk=endpoint.pk).circuit_state == "closed"


def test_single_path_success_shows_as_last_success_of_a_healthy_endpoint(transactional_db, api, receiver):
    # given
    endpoint = _endpoint(receiver, "single")
    [delivery] = due_deliveries([endpoint], 1, prefix="evt_noted_single")

    # when
    outcome = attempt_delivery(delivery_id=delivery.pk)

    # then
    assert outcome.status == "succeeded"
    assert _last_success(api, endpoint) is not None


def test_last_success_is_noted_at_most_once_a_minute_per_endpoint(transactional_db, event_types, receiver,
                                                                    monkeypatch):
    # given: one success noted
    endpoint = _endpoint(receiver, "minute")
    due_deliveries([endpoint], 1, prefix="evt_minute_a")
    delivery_services.deliver_due_batch()
    first = wait_until(lambda: EndpointHealth.objects.filter(pk=endpoint.pk).values_list(
        "last_success_at", flat=True).first())

    # when: another success within the minute
    due_deliveries([endpoint], 1, prefix="evt_minute_b")
    with CaptureQueriesContext(connection) as queries:
        delivery_services.deliver_due_batch()
        wait_until(lambda: DeliveryAttempt.objects.filter(outcome="succeeded").count() == 2)

    # then: nothing written to the health row, the time as it was
    assert _health_writes(queries) == []
    assert EndpointHealth.objects.get(pk=endpoint.pk).last_success_at == first

    # when: a success once the minute is over (granularity 0 stands for the minute passing)
    monkeypatch.setattr(endpoint_services, "LAST_SUCCESS_GRANULARITY_SECONDS", 0)
    due_deliveries([endpoint], 1, prefix="evt_minute_c")
    delivery_services.deliver_due_batch()

    # then: its time is noted
    wait_until(lambda: EndpointHealth.objects.get(pk=endpoint.pk).last_success_at > first)


def test_noting_a_success_of_an_endpoint_deleted_meanwhile_writes_nothing(transactional_db, receiver):
    # given
    kept, deleted = _endpoint(receiver, "kept"), _endpoint(receiver, "deleted")
    deleted_id = deleted.pk
    deleted.delete()

    # when
    endpoint_services.note_successes(endpoint_ids=[kept.pk, deleted_id])

    # then
    assert list(EndpointHealth.objects.values_list("pk", flat=True)) == [kept.pk]
    assert EndpointHealth.objects.get(pk=kept.pk).last_success_at is not None


def test_noting_never_moves_the_last_success_back(transactional_db, receiver):
    # given: a health row whose last success is in the future of this note (another process noted
    # a later success while this one stalled)
    endpoint = _endpoint(receiver, "later")
    later = timezone.now() + timezone.timedelta(minutes=5)
    EndpointHealth.objects.create(endpoint=endpoint, last_success_at=later)

    # when
    endpoint_services.note_successes(endpoint_ids=[endpoint.pk])

    # then
    assert EndpointHealth.objects.get(pk=endpoint.pk).last_success_at == later


def test_a_failed_note_inside_a_transaction_leaves_the_transaction_usable(transactional_db, receiver):
    # given: a database that refuses the note (a trigger), inside a caller's transaction
    from django.db import transaction

    endpoint = _endpoint(receiver, "refused")

    # when
    with refused_by_database("endpoints_endpointhealth", "INSERT"), transaction.atomic():
        endpoint_services.note_successes(endpoint_ids=[endpoint.pk])
        renamed = WebhookEndpoint.objects.filter(pk=endpoint.pk).update(name="renamed")

    # then: the caller's work committed; nothing noted
    assert renamed == 1
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).name == "renamed"
    assert not EndpointHealth.objects.filter(pk=endpoint.pk).exists()
