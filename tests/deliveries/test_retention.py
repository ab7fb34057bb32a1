"""Retention (issue 5, "Data protection"): what is older than the configured periods is deleted
(or, for successful attempts' bodies, blanked) in batches; deliveries still in progress keep
their event and their history."""
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from deliveries import services as delivery_services
from deliveries.models import Delivery, DeliveryAttempt
from deliveries.tasks import purge_expired_data
from events.models import Event, EventType
from tests.conftest import wait_until

BODY = '{"event_type":"lead.created","data":{"lead":{"id":"lead_123"}}}'


def make_event(event_id: str, *, age_days: float) -> Event:
    event = Event.objects.create(
        event_id=event_id, event_type=EventType.objects.get(name="lead.created"), timestamp=timezone.now(),
        data={"lead": {"id": "lead_123"}}, environment="production",
    )
    Event.objects.filter(pk=event.pk).update(received_at=timezone.now() - timedelta(days=age_days))
    return event


def make_delivery(event: Event, *, status: str, age_days: float) -> Delivery:
    delivery = Delivery.objects.create(event=event, status=status, attempt_count=1)
    Delivery.objects.filter(pk=delivery.pk).update(created_at=timezone.now() - timedelta(days=age_days))
    return delivery


def make_attempt(delivery: Delivery, *, outcome: str, age_days: float, number: int = 1) -> DeliveryAttempt:
    attempt = DeliveryAttempt.objects.create(
        delivery=delivery, attempt_number=number, url="https://crm.example.com/hook", http_method="POST",
        request_body=BODY, request_body_sha256="a" * 64, request_body_size=len(BODY),
        response_status_code=200 if outcome == "succeeded" else 500, response_body='{"ok":true}',
        outcome=outcome, started_at=timezone.now(),
    )
    DeliveryAttempt.objects.filter(pk=attempt.pk).update(created_at=timezone.now() - timedelta(days=age_days))
    return attempt


def history(event_id: str, *, age_days: float, status: str = "succeeded", outcome: str = "succeeded"):
    """An event with one delivery and one attempt, all ``age_days`` old."""
    event = make_event(event_id, age_days=age_days)
    delivery = make_delivery(event, status=status, age_days=age_days)
    return event, delivery, make_attempt(delivery, outcome=outcome, age_days=age_days)


@pytest.mark.django_db
def test_purge_expired_data_deletes_history_older_than_the_periods(event_types):
    # given
    old_event, old_delivery, old_attempt = history("evt_old", age_days=31)
    recent_event, recent_delivery, recent_attempt = history("evt_recent", age_days=29)

    # when
    result = delivery_services.purge_expired_data()

    # then
    assert not Event.objects.filter(pk=old_event.pk).exists()
    assert not Delivery.objects.filter(pk=old_delivery.pk).exists()
    assert not DeliveryAttempt.objects.filter(pk=old_attempt.pk).exists()
    assert Event.objects.filter(pk=recent_event.pk).exists()
    assert Delivery.objects.filter(pk=recent_delivery.pk).exists()
    assert DeliveryAttempt.objects.get(pk=recent_attempt.pk).request_body == ""  # successful, over 7 days
    assert (result.events_deleted, result.deliveries_deleted, result.attempts_deleted) == (1, 1, 1)
    assert result.complete


@pytest.mark.django_db
@pytest.mark.parametrize("status", ["pending", "in_flight", "retrying"])
def test_purge_expired_data_never_purges_a_delivery_in_progress(event_types, status):
    # given
    event, delivery, _attempt = history("evt_live", age_days=90, status=status, outcome="retry")
    make_attempt(delivery, outcome="retry", age_days=60, number=2)

    # when
    result = delivery_services.purge_expired_data()

    # then
    assert Event.objects.filter(pk=event.pk).exists()
    assert Delivery.objects.get(pk=delivery.pk).status == status
    assert DeliveryAttempt.objects.filter(delivery=delivery).count() == 2
    assert (result.events_deleted, result.deliveries_deleted, result.attempts_deleted) == (0, 0, 0)


@pytest.mark.django_db
def test_purge_expired_data_keeps_an_old_event_while_a_replay_of_it_is_in_progress(event_types):
    # given
    event, _, _ = history("evt_replayed", age_days=45)
    make_delivery(event, status="pending", age_days=0)

    # when
    delivery_services.purge_expired_data()

    # then
    assert Event.objects.filter(pk=event.pk).exists()
    assert list(event.deliveries.values_list("status", flat=True)) == ["pending"]  # the old final one went


@pytest.mark.django_db
def test_purge_expired_data_blanks_successful_bodies_before_failed_ones(event_types):
    # given
    event = make_event("evt_bodies", age_days=10)
    delivery = make_delivery(event, status="succeeded", age_days=10)
    failed = make_attempt(delivery, outcome="failed", age_days=8, number=1)
    old_success = make_attempt(delivery, outcome="succeeded", age_days=8, number=2)
    new_success = make_attempt(delivery, outcome="succeeded", age_days=6, number=3)

    # when
    result = delivery_services.purge_expired_data()

    # then
    old_success.refresh_from_db()
    assert (old_success.request_body, old_success.response_body) == ("", "")
    assert (old_success.request_body_sha256, old_success.request_body_size, old_success.response_status_code) == (
        "a" * 64, len(BODY), 200)  # what was sent can still be proven
    assert DeliveryAttempt.objects.get(pk=failed.pk).request_body == BODY
    assert DeliveryAttempt.objects.get(pk=new_success.pk).request_body == BODY
    assert result.attempt_bodies_blanked == 1


@pytest.mark.django_db
def test_purge_expired_data_works_in_batches(event_types):
    # given
    event = make_event("evt_batches", age_days=1)
    delivery = make_delivery(event, status="failed", age_days=1)
    old = [make_attempt(delivery, outcome="failed", age_days=40, number=n) for n in range(1, 6)]
    kept = make_attempt(delivery, outcome="failed", age_days=1, number=6)

    # when
    with CaptureQueriesContext(connection) as queries:
        result = delivery_services.purge_expired_data(batch_size=2)

    # then
    deletes = [q["sql"] for q in queries.captured_queries
               if q["sql"].startswith('DELETE FROM "deliveries_deliveryattempt"')]
    assert len(deletes) == 3  # 2 + 2 + 1 rows, one statement and transaction each
    assert result.attempts_deleted == 5
    assert result.batches == 3
    assert not DeliveryAttempt.objects.filter(pk__in=[a.pk for a in old]).exists()
    assert DeliveryAttempt.objects.filter(pk=kept.pk).exists()


@pytest.mark.django_db
def test_purge_expired_data_follows_the_retention_settings(event_types, settings):
    # given
    settings.WEBHOOK_RETENTION_EVENTS_DAYS = 5
    settings.WEBHOOK_RETENTION_DELIVERIES_DAYS = 0  # 0 turns a step off
    short_lived, _, _ = history("evt_6_days", age_days=6)
    settings_kept = make_event("evt_4_days", age_days=4)
    orphan_delivery = make_delivery(settings_kept, status="failed", age_days=400)

    # when
    result = delivery_services.purge_expired_data()

    # then
    assert not Event.objects.filter(pk=short_lived.pk).exists()
    assert Event.objects.filter(pk=settings_kept.pk).exists()
    assert Delivery.objects.filter(pk=orphan_delivery.pk).exists()
    assert result.events_deleted == 1


@pytest.mark.django_db
def test_purge_expired_data_stops_at_its_time_budget(event_types):
    # given
    event, _, _ = history("evt_budget", age_days=31)

    # when
    result = delivery_services.purge_expired_data(max_seconds=-1)

    # then
    assert not result.complete
    assert result.batches == 0
    assert Event.objects.filter(pk=event.pk).exists()


def test_purge_expired_data_is_scheduled_by_beat_on_the_maintenance_queue():
    # given / when
    entry = settings.CELERY_BEAT_SCHEDULE["purge_expired_data"]

    # then
    assert entry["task"] == purge_expired_data.name == "deliveries.tasks.purge_expired_data"
    assert entry["schedule"] == settings.WEBHOOK_RETENTION_INTERVAL_SECONDS == 3600
    assert entry["options"] == {"queue": "maintenance"}


def test_purge_expired_data_task_runs_on_the_worker(event_types, worker):
    # given
    old_event, _, _ = history("evt_worker_old", age_days=31)
    recent_event, _, _ = history("evt_worker_recent", age_days=1)

    # when
    purge_expired_data.apply_async(**settings.CELERY_BEAT_SCHEDULE["purge_expired_data"]["options"])

    # then
    wait_until(lambda: not Event.objects.filter(pk=old_event.pk).exists())
    assert Event.objects.filter(pk=recent_event.pk).exists()
