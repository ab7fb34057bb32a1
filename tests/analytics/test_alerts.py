"""Alert rules inside the service (issue 6): the seed's three rules installed, fired and resolved
from real delivery rows, announced as ``system.health_alert`` events (and deliveries to the
endpoints that subscribe), mailed to operators or the endpoint owner, without flapping; the
``/alert-rules`` and ``/alerts`` API; one end-to-end run with the real worker and receiver."""
import hashlib
import hmac
import importlib
from datetime import timedelta

import pytest
from django.utils import timezone

from analytics.alerts import decisions, firing_alerts_for_metrics
from analytics.alerts import services as alert_services
from analytics.models import Alert, AlertRule
from deliveries.models import Delivery, DeliveryAttempt
from endpoints.models import WebhookEndpoint
from events.models import Event, EventType
from tests.conftest import assert_seed_error, wait_until

SEED_RULES = importlib.import_module("analytics.migrations.0002_alerts").SEED_RULES
OPERATORS = ["ops@example.com", "oncall@example.com"]


@pytest.fixture
def alert_settings(settings):
    settings.WEBHOOK_ALERT_OPERATOR_EMAILS = OPERATORS
    return settings


@pytest.fixture
def seed_rules(db):
    """The seed's rules (a transactional test's flush removes the migrated rows)."""
    for rule in SEED_RULES:
        AlertRule.objects.update_or_create(name=rule["name"], defaults=rule)
    return {rule.name: rule for rule in AlertRule.objects.all()}


def make_endpoint(name="Receiver", owner_email="", events=("lead.*",), url="https://hooks.example.com/in", **fields):
    return WebhookEndpoint.objects.create(name=name, url=url, events=list(events), owner_email=owner_email,
                                          secret="s" * 24, **fields)


def make_attempts(endpoint, *, ok=0, failed=0, at, duration_ms=100, event_type="lead.created", metadata=None):
    """``ok`` succeeded and ``failed`` failed attempts to ``endpoint``, recorded at ``at``."""
    type_row = EventType.objects.get(name=event_type)
    ids = []
    for n in range(ok + failed):
        event = Event.objects.create(event_id=f"evt_{type_row.pk}_{Event.objects.count()}_{n}", event_type=type_row,
                                     timestamp=at, data={}, metadata=metadata or {}, environment=endpoint.environment)
        succeeded = n < ok
        delivery = Delivery.objects.create(event=event, endpoint=endpoint, attempt_count=1,
                                           status="succeeded" if succeeded else "failed")
        attempt = DeliveryAttempt.objects.create(
            delivery=delivery, attempt_number=1, url=endpoint.url, http_method="POST", duration_ms=duration_ms,
            response_status_code=200 if succeeded else 500, started_at=at,
            outcome=DeliveryAttempt.Outcome.SUCCEEDED if succeeded else DeliveryAttempt.Outcome.FAILED,
        )
        ids.append(attempt.pk)
    DeliveryAttempt.objects.filter(pk__in=ids).update(created_at=at)


def alert_events():
    return list(Event.objects.filter(event_type__name="system.health_alert").order_by("id"))


def evaluate(now, capture):
    with capture(execute=True):
        return alert_services.evaluate_alert_rules(now=now)


# --- the seed's rules --------------------------------------------------------------------------
def test_migration_installs_the_seeds_three_rules(db):
    # given / when: the migrated database

    # then
    rules = {r.name: (r.metric, r.threshold, r.period_seconds, r.action, r.enabled) for r in AlertRule.objects.all()}
    assert rules == {
        "delivery_failure_rate": ("delivery_failure_rate_percent", 10.0, 300, "alert_operations_team", True),
        "response_time_degradation": ("endpoint_avg_response_time_ms", 5000.0, 60, "alert_endpoint_owner", True),
        "queue_backlog": ("queue_backlog_deliveries", 1000.0, 60, "scale_processing_capacity", True),
    }


# --- delivery_failure_rate ---------------------------------------------------------------------
def test_failure_rate_fires_publishes_mails_then_resolves(alert_settings, seed_rules, event_types, mailoutbox,
                                                           django_capture_on_commit_callbacks):
    # given: 3 of 20 attempts failed in the last 5 minutes (15 % > 10 %), and an operator's
    # Slack-like endpoint subscribed to system.health_alert
    now = timezone.now()
    endpoint = make_endpoint()
    slack = make_endpoint(name="Slack Alerts", events=["system.health_alert", "system.error"])
    make_attempts(endpoint, ok=17, failed=3, at=now - timedelta(minutes=2))

    # when
    report = evaluate(now, django_capture_on_commit_callbacks)

    # then: one firing alert with its values, one event, a delivery to the subscriber, one mail
    alert = Alert.objects.get()
    assert report.count("fire") == 1
    assert (alert.rule.name, alert.status, alert.scope_key, alert.endpoint) == (
        "delivery_failure_rate", "firing", "global", None)
    assert (alert.value_at_fire, alert.threshold, alert.fired_at) == (15.0, 10.0, now)
    assert alert.details["failed_attempts"] == 3 and alert.details["total_attempts"] == 20
    event, = alert_events()
    assert event.event_id == alert.firing_event_id == f"alert_{alert.pk}_firing"
    assert event.data["alert"] | {"details": None} == {
        "id": f"alert_{alert.pk}", "name": "delivery_failure_rate", "status": "firing", "severity": "critical",
        "service": "webhooks", "metric": "delivery_failure_rate_percent", "value": 15.0, "last_value": 15.0,
        "peak_value": 15.0, "threshold": 10.0, "period": "5m", "period_seconds": 300,
        "action": "alert_operations_team", "scope": "global", "triggered_at": now.isoformat(), "resolved_at": None,
        "details": None,
    }
    assert event.environment == "production" and event.metadata["source_service"] == "vocelio_webhooks"
    assert list(Delivery.objects.filter(event=event).values_list("endpoint_id", flat=True)) == [slack.pk]
    mail, = mailoutbox
    assert mail.to == OPERATORS and mail.subject == "[Vocelio Webhooks] FIRING: delivery_failure_rate"
    assert "15.0" in mail.body

    # when: the failures age out of the window; one clear evaluation is not enough
    evaluate(now + timedelta(minutes=6), django_capture_on_commit_callbacks)
    still = Alert.objects.get()
    # then
    assert still.status == "firing" and still.clear_since == now + timedelta(minutes=6) and still.last_value is None
    assert len(alert_events()) == 1 and len(mailoutbox) == 1

    # when: clear for a whole period
    report = evaluate(now + timedelta(minutes=11), django_capture_on_commit_callbacks)

    # then: resolved, announced by a second event and a second mail
    resolved = Alert.objects.get()
    assert report.count("resolve") == 1
    assert (resolved.status, resolved.resolved_at) == ("resolved", now + timedelta(minutes=11))
    assert resolved.details["resolution"]["reason"] == "condition_cleared"
    _, second = alert_events()
    assert second.event_id == resolved.resolved_event_id == f"alert_{alert.pk}_resolved"
    assert second.data["alert"]["status"] == "resolved" and second.data["alert"]["value"] == 15.0
    assert Delivery.objects.filter(event=second, endpoint=slack).exists()
    assert mailoutbox[1].subject == "[Vocelio Webhooks] RESOLVED: delivery_failure_rate"


def test_failure_rate_below_threshold_or_min_samples_does_not_fire(alert_settings, seed_rules, event_types, mailoutbox,
                                                                   django_capture_on_commit_callbacks):
    # given: 10 % exactly (not above), and elsewhere 100 % of too few attempts
    now = timezone.now()
    make_attempts(make_endpoint(), ok=18, failed=2, at=now - timedelta(minutes=1))

    # when
    report = evaluate(now, django_capture_on_commit_callbacks)
    AlertRule.objects.filter(name="delivery_failure_rate").update(min_samples=25)
    make_attempts(make_endpoint(), failed=4, at=now - timedelta(minutes=1))  # 6/24 = 25 %, below 25 samples
    report_small = evaluate(now, django_capture_on_commit_callbacks)

    # then
    assert report.changes == [] and report_small.changes == []
    assert not Alert.objects.exists() and alert_events() == [] and mailoutbox == []


def test_failure_rate_ignores_failed_deliveries_of_its_own_alerts(alert_settings, seed_rules, event_types,
                                                                  django_capture_on_commit_callbacks):
    # given: an operator endpoint that fails every system.health_alert the service sends it
    now = timezone.now()
    slack = make_endpoint(name="Slack Alerts", events=["system.health_alert"])
    make_attempts(slack, ok=10, at=now - timedelta(minutes=1))
    make_attempts(slack, failed=10, at=now - timedelta(minutes=1), event_type="system.health_alert",
                  metadata={"source_service": "vocelio_webhooks", "alert_id": 1})

    # when
    report = evaluate(now, django_capture_on_commit_callbacks)

    # then: the loop guard keeps the rate at 0 % of the 10 counted attempts
    assert report.changes == [] and not Alert.objects.exists()


def test_a_value_oscillating_around_the_threshold_does_not_flap(alert_settings, seed_rules, event_types, mailoutbox,
                                                                 django_capture_on_commit_callbacks):
    # given: a 1-minute failure-rate rule, and a rate that alternates 15 % / 9 % / 15 % / 0 % ...
    AlertRule.objects.filter(name="delivery_failure_rate").update(period_seconds=60)
    endpoint = make_endpoint()
    start = timezone.now()
    rates = [15, 9, 15, 9, 0, 15, 0, 15, 9]

    # when: one evaluation per minute, each window holding that minute's attempts only
    for minute, failed in enumerate(rates):
        at = start + timedelta(minutes=minute)
        make_attempts(endpoint, ok=100 - failed, failed=failed, at=at - timedelta(seconds=30))
        evaluate(at, django_capture_on_commit_callbacks)

    # then: one alert, fired once, never resolved, one event, one mail
    alert = Alert.objects.get()
    assert alert.status == "firing" and alert.fired_at == start and alert.peak_value == 15.0
    assert [e.data["alert"]["status"] for e in alert_events()] == ["firing"]
    assert len(mailoutbox) == 1

    # when: clear (0 %) for a whole period
    end = start + timedelta(minutes=len(rates))
    evaluate(end, django_capture_on_commit_callbacks)
    evaluate(end + timedelta(seconds=60), django_capture_on_commit_callbacks)

    # then
    assert Alert.objects.get().status == "resolved"
    assert [e.data["alert"]["status"] for e in alert_events()] == ["firing", "resolved"]


def test_evaluating_twice_at_the_same_moment_announces_once(alert_settings, seed_rules, event_types, mailoutbox,
                                                           django_capture_on_commit_callbacks):
    # given
    now = timezone.now()
    make_attempts(make_endpoint(), ok=5, failed=15, at=now - timedelta(minutes=1))

    # when: beat runs twice (two beats, or a retried task)
    first = evaluate(now, django_capture_on_commit_callbacks)
    second = evaluate(now, django_capture_on_commit_callbacks)

    # then
    assert first.count("fire") == 1 and second.changes == []
    assert Alert.objects.count() == 1 and len(alert_events()) == 1 and len(mailoutbox) == 1


# --- response_time_degradation ------------------------------------------------------------------
def test_slow_endpoint_alerts_its_own_owner_only(alert_settings, seed_rules, event_types, mailoutbox,
                                                 django_capture_on_commit_callbacks):
    # given: endpoint A averages 6 s over the last minute, B answers in 200 ms
    now = timezone.now()
    slow = make_endpoint(name="Slow CRM", owner_email="crm-owner@example.com", environment="staging",
                         url="https://slow.example.com/in")
    fast = make_endpoint(name="Fast CRM", owner_email="fast-owner@example.com")
    make_attempts(slow, ok=3, at=now - timedelta(seconds=20), duration_ms=6000)
    make_attempts(slow, ok=1, at=now - timedelta(seconds=20), duration_ms=5000)
    make_attempts(fast, ok=5, at=now - timedelta(seconds=20), duration_ms=200)

    # when
    evaluate(now, django_capture_on_commit_callbacks)

    # then
    alert = Alert.objects.get()
    assert (alert.rule.name, alert.scope_key, alert.endpoint_id) == (
        "response_time_degradation", f"endpoint:{slow.pk}", slow.pk)
    assert alert.value_at_fire == 5750.0 and alert.details["attempts"] == 4 and alert.details["max_duration_ms"] == 6000
    mail, = mailoutbox
    assert mail.to == ["crm-owner@example.com"] and "Slow CRM" in mail.subject
    event, = alert_events()
    assert event.environment == "staging"
    assert event.data["endpoint"] == {"id": slow.pk, "name": "Slow CRM", "url": "https://slow.example.com/in",
                                      "environment": "staging"}
    assert event.data["alert"]["severity"] == "warning" and event.data["alert"]["scope"] == f"endpoint:{slow.pk}"


def test_slow_endpoint_without_owner_mails_the_operators(alert_settings, seed_rules, event_types, mailoutbox,
                                                         django_capture_on_commit_callbacks):
    # given
    now = timezone.now()
    make_attempts(make_endpoint(owner_email=""), ok=3, at=now - timedelta(seconds=10), duration_ms=9000)

    # when
    evaluate(now, django_capture_on_commit_callbacks)

    # then
    assert [m.to for m in mailoutbox] == [OPERATORS]


# --- queue_backlog -----------------------------------------------------------------------------
def _backlog(endpoint, count, *, status="pending", next_attempt_at=None):
    type_row = EventType.objects.get(name="lead.created")
    now = timezone.now()
    events = Event.objects.bulk_create(
        [Event(event_id=f"evt_backlog_{endpoint.pk}_{status}_{n}", event_type=type_row, timestamp=now, data={},
               environment=endpoint.environment) for n in range(count)])
    Delivery.objects.bulk_create([Delivery(event=e, endpoint=endpoint, status=status,
                                           next_attempt_at=next_attempt_at or now - timedelta(seconds=5))
                                  for e in events])


def test_queue_backlog_fires_after_a_full_period_and_feeds_the_autoscaler_metric(
        alert_settings, seed_rules, event_types, mailoutbox, django_capture_on_commit_callbacks):
    # given: 1001 due deliveries for an active endpoint; waiting retries and a paused endpoint's
    # deliveries are not work more workers could do now
    endpoint = make_endpoint()
    _backlog(endpoint, 1001)
    _backlog(endpoint, 50, status="retrying", next_attempt_at=timezone.now() + timedelta(hours=1))
    _backlog(make_endpoint(name="Paused", status="paused"), 20)
    start = timezone.now()

    # when: above the threshold, but not yet for the rule's minute
    evaluate(start, django_capture_on_commit_callbacks)
    evaluate(start + timedelta(seconds=30), django_capture_on_commit_callbacks)

    # then: pending, announced to nobody
    pending = Alert.objects.get()
    assert (pending.status, pending.last_value, pending.pending_since) == ("pending", 1001.0, start)
    assert alert_events() == [] and firing_alerts_for_metrics() == []

    # when: still above a minute later
    evaluate(start + timedelta(seconds=60), django_capture_on_commit_callbacks)

    # then: firing — an event, no mail, and the sample /metrics exposes
    alert = Alert.objects.get()
    assert alert.status == "firing" and alert.details["pending"] == 1001 and alert.details["retrying"] == 0
    event, = alert_events()
    assert event.data["alert"]["action"] == "scale_processing_capacity" and event.data["alert"]["value"] == 1001.0
    assert mailoutbox == []
    sample, = firing_alerts_for_metrics()
    assert (sample.rule, sample.action, sample.scope, sample.value, sample.threshold) == (
        "queue_backlog", "scale_processing_capacity", "global", 1001.0, 1000.0)
    assert sample.capacity_ratio == 1.001

    # when: the workers drain the queue, and it stays drained for a minute
    Delivery.objects.filter(status="pending").update(status="succeeded")
    evaluate(start + timedelta(seconds=90), django_capture_on_commit_callbacks)
    evaluate(start + timedelta(seconds=150), django_capture_on_commit_callbacks)

    # then
    assert Alert.objects.get().status == "resolved" and firing_alerts_for_metrics() == []
    assert [e.data["alert"]["status"] for e in alert_events()] == ["firing", "resolved"]


def test_queue_backlog_alert_is_published_when_the_backlog_fills_the_queue(
        alert_settings, seed_rules, event_types, mailoutbox, django_capture_on_commit_callbacks, monkeypatch, api):
    # given: a backlog at WEBHOOK_MAX_QUEUE_SIZE, so publishers get 503 QUEUE_FULL
    from events import services as event_services

    alert_settings.WEBHOOK_MAX_QUEUE_SIZE = 1001
    _backlog(make_endpoint(), 1001)
    monkeypatch.setattr(event_services, "_queue_size_seen", (0.0, 0))  # count now, restored after
    refused = api.post("/events/publish", {"event_type": "lead.created", "data": {}}, format="json")
    start = timezone.now()

    # when: the backlog rule's period passes
    evaluate(start, django_capture_on_commit_callbacks)
    evaluate(start + timedelta(seconds=60), django_capture_on_commit_callbacks)

    # then: the alert about that very backlog is published all the same
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "QUEUE_FULL"
    assert Alert.objects.get().status == "firing"
    event, = alert_events()
    assert event.data["alert"]["action"] == "scale_processing_capacity"


def test_queue_backlog_that_drains_within_the_period_never_fires(alert_settings, seed_rules, event_types,
                                                                 django_capture_on_commit_callbacks):
    # given
    endpoint = make_endpoint()
    _backlog(endpoint, 1200)
    start = timezone.now()
    evaluate(start, django_capture_on_commit_callbacks)

    # when: the burst is gone 30 s later
    Delivery.objects.update(status="succeeded")
    report = evaluate(start + timedelta(seconds=30), django_capture_on_commit_callbacks)

    # then
    assert report.count("cancel") == 1 and not Alert.objects.exists() and alert_events() == []


# --- editing rules ------------------------------------------------------------------------------
def test_disabled_rule_does_nothing(alert_settings, seed_rules, event_types, mailoutbox,
                                    django_capture_on_commit_callbacks):
    # given
    AlertRule.objects.update(enabled=False)
    now = timezone.now()
    make_attempts(make_endpoint(owner_email="o@example.com"), ok=2, failed=18, at=now - timedelta(seconds=30),
                  duration_ms=9000)
    _backlog(make_endpoint(), 1500)

    # when
    for seconds in (0, 60, 120):
        evaluate(now + timedelta(seconds=seconds), django_capture_on_commit_callbacks)

    # then
    assert not Alert.objects.exists() and alert_events() == [] and mailoutbox == []


def test_disabling_a_firing_rule_resolves_its_alert(alert_settings, seed_rules, event_types,
                                                    django_capture_on_commit_callbacks):
    # given
    now = timezone.now()
    make_attempts(make_endpoint(), ok=5, failed=15, at=now - timedelta(seconds=30))
    evaluate(now, django_capture_on_commit_callbacks)

    # when
    AlertRule.objects.filter(name="delivery_failure_rate").update(enabled=False)
    evaluate(now + timedelta(seconds=30), django_capture_on_commit_callbacks)

    # then
    alert = Alert.objects.get()
    assert alert.status == "resolved" and alert.details["resolution"]["reason"] == "rule_disabled"
    assert [e.data["alert"]["status"] for e in alert_events()] == ["firing", "resolved"]


def test_editing_a_threshold_through_the_api_takes_effect(api, alert_settings, seed_rules,
                                                          django_capture_on_commit_callbacks):
    # given: a 15 % failure rate
    now = timezone.now()
    make_attempts(make_endpoint(), ok=17, failed=3, at=now - timedelta(minutes=1))

    # when: the threshold is raised to 20 %
    response = api.patch("/alert-rules/delivery_failure_rate", {"threshold": 20}, format="json")
    evaluate(now, django_capture_on_commit_callbacks)

    # then
    assert response.status_code == 200, response.content
    assert response.json()["threshold"] == 20.0 and response.json()["period"] == "5m"
    assert not Alert.objects.exists()

    # when: lowered back to 10 % with the seed's period notation
    response = api.patch("/alert-rules/delivery_failure_rate", {"threshold": 10, "period": "2m"}, format="json")
    evaluate(now, django_capture_on_commit_callbacks)

    # then
    assert response.json()["period_seconds"] == 120
    assert Alert.objects.get().status == "firing" and Alert.objects.get().threshold == 10.0


# --- API ------------------------------------------------------------------------------------------
def test_alert_rules_api_lists_creates_and_validates(api, seed_rules):
    # given / when
    listed = api.get("/alert-rules")
    created = api.post("/alert-rules", {"name": "slow_partner", "metric": "endpoint_avg_response_time_ms",
                                        "threshold": 2000, "period": "30s", "action": "alert_endpoint_owner"},
                       format="json")
    duplicate = api.post("/alert-rules", {"name": "slow_partner", "metric": "queue_backlog_deliveries",
                                          "threshold": 1, "period": "1m", "action": "scale_processing_capacity"},
                         format="json")
    bad_percent = api.patch("/alert-rules/delivery_failure_rate", {"threshold": 150}, format="json")
    bad_period = api.patch("/alert-rules/delivery_failure_rate", {"period": "5 weeks"}, format="json")
    bad_action = api.patch("/alert-rules/queue_backlog", {"action": "page_everyone"}, format="json")

    # then
    assert listed.status_code == 200
    assert [(r["name"], r["threshold"], r["period"], r["action"]) for r in listed.json()["results"]] == [
        ("delivery_failure_rate", 10.0, "5m", "alert_operations_team"),
        ("queue_backlog", 1000.0, "1m", "scale_processing_capacity"),
        ("response_time_degradation", 5000.0, "1m", "alert_endpoint_owner"),
    ]
    assert created.status_code == 201, created.content
    assert created.json()["period_seconds"] == 30 and created.json()["min_samples"] == 1
    assert assert_seed_error(duplicate, 400, "VALIDATION_ERROR")["details"]["fields"]["name"]
    assert "threshold" in assert_seed_error(bad_percent, 400, "VALIDATION_ERROR")["details"]["fields"]
    assert "period" in assert_seed_error(bad_period, 400, "VALIDATION_ERROR")["details"]["fields"]
    assert "action" in assert_seed_error(bad_action, 400, "VALIDATION_ERROR")["details"]["fields"]
    assert AlertRule.objects.get(name="delivery_failure_rate").threshold == 10.0


def test_alert_rule_description_refuses_control_characters(api, seed_rules):
    # when
    response = api.patch("/alert-rules/queue_backlog", {"description": "ops \u001b[2J\u202e"}, format="json")

    # then
    assert "U+001B" in assert_seed_error(response, 400, "VALIDATION_ERROR")["details"]["fields"]["description"][0]
    assert "\u001b" not in AlertRule.objects.get(name="queue_backlog").description


def test_alert_rule_changes_need_an_admin_key(api, seed_rules):
    # given: a key that may read and manage endpoints, but is not an admin key
    from rest_framework.test import APIClient

    from vocelio_webhooks import services as key_services

    raw = key_services.create_api_key(name="ops-reader", scopes=["read", "endpoints:manage"]).raw_key
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")

    # when
    read = client.get("/alert-rules/queue_backlog")
    write = client.patch("/alert-rules/queue_backlog", {"threshold": 1}, format="json")
    anonymous = APIClient().get("/alerts")

    # then
    assert read.status_code == 200 and read.json()["name"] == "queue_backlog"
    assert_seed_error(write, 403, "INSUFFICIENT_SCOPE")
    assert anonymous.status_code == 401
    assert AlertRule.objects.get(name="queue_backlog").threshold == 1000.0


def test_alerts_api_lists_alerts_with_their_values(api, alert_settings, seed_rules,
                                                   django_capture_on_commit_callbacks):
    # given
    now = timezone.now()
    endpoint = make_endpoint(name="Slow", owner_email="o@example.com")
    make_attempts(endpoint, ok=3, at=now - timedelta(seconds=10), duration_ms=8000)
    make_attempts(make_endpoint(), ok=5, failed=15, at=now - timedelta(seconds=10))
    evaluate(now, django_capture_on_commit_callbacks)

    # when
    firing = api.get("/alerts", {"status": "firing"}).json()["results"]
    by_rule = api.get("/alerts", {"rule": "response_time_degradation"}).json()["results"]
    rule = api.get("/alert-rules/response_time_degradation").json()

    # then
    assert sorted(a["rule"] for a in firing) == ["delivery_failure_rate", "response_time_degradation"]
    alert, = by_rule
    assert alert["endpoint"] == {"id": endpoint.pk, "name": "Slow"} and alert["value_at_fire"] == 8000.0
    assert alert["threshold"] == 5000.0 and alert["firing_event_id"] == f"alert_{alert['id']}_firing"
    assert rule["firing_alerts"] == 1


# --- pure rules ---------------------------------------------------------------------------------
@pytest.mark.parametrize("text, seconds", [("5m", 300), ("1m", 60), ("30s", 30), ("45", 45), ("1h", 3600), (90, 90)])
def test_parse_period_reads_the_seeds_notation(text, seconds):
    assert decisions.parse_period(text) == seconds
    assert decisions.parse_period(decisions.format_period(seconds)) == seconds


@pytest.mark.parametrize("text", ["", "5 weeks", "-1m", "0s", "2d", True, "1.5m"])
def test_parse_period_refuses_other_text(text):
    with pytest.raises(ValueError):
        decisions.parse_period(text)


def test_decide_needs_a_full_clear_period_below_the_hysteresis_level():
    # given
    now = timezone.now()
    common = {"threshold": 10.0, "resolve_ratio": 0.8, "pending_for_seconds": 0, "clear_for_seconds": 60,
              "pending_since": now, "now": now}

    # when / then
    assert decisions.decide(status=None, value=10.0, clear_since=None, **common).transition == "none"
    assert decisions.decide(status=None, value=10.1, clear_since=None, **common).transition == "fire"
    above_clear_level = decisions.decide(status="firing", value=8.5, clear_since=now - timedelta(hours=1), **common)
    assert above_clear_level == decisions.Decision("none", clear_since=None)
    first_clear = decisions.decide(status="firing", value=8.0, clear_since=None, **common)
    assert first_clear == decisions.Decision("none", clear_since=now)
    assert decisions.decide(status="firing", value=None, clear_since=now - timedelta(seconds=60),
                            **common).transition == "resolve"


# --- end to end ------------------------------------------------------------------------------------
def test_beat_task_alert_reaches_an_operators_endpoint_signed(api, receiver, worker, seed_rules):
    # given: an operator endpoint subscribed to system.health_alert, and a failing minute
    created = api.post("/endpoints", {"name": "Ops", "url": receiver.url("/ops"), "events": ["system.health_alert"]},
                       format="json")
    assert created.status_code == 201, created.content
    make_attempts(make_endpoint(), ok=5, failed=15, at=timezone.now() - timedelta(seconds=30))
    from analytics.tasks import evaluate_alert_rules

    # when: the beat task runs on the worker (the queue beat's schedule names)
    evaluate_alert_rules.apply_async(queue="maintenance")

    # then: the receiver gets the alert, signed like every delivery
    request, = receiver.wait_for(1, path="/ops", timeout=30)
    body = request.json()
    assert body["event_type"] == "system.health_alert"
    assert body["data"]["alert"]["name"] == "delivery_failure_rate" and body["data"]["alert"]["status"] == "firing"
    assert body["data"]["alert"]["value"] == 75.0 and body["data"]["alert"]["threshold"] == 10.0
    expected = "sha256=" + hmac.new(created.json()["secret"].encode(), request.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(request.header("X-Vocelio-Signature"), expected)
    alert = wait_until(lambda: Alert.objects.filter(status="firing").first())
    assert request.header("X-Vocelio-Event-Id") == alert.firing_event_id


def test_two_beats_evaluating_at_once_fire_one_alert(transactional_db, alert_settings, seed_rules, event_types):
    # given: a failing minute, and two evaluations started together (two beats)
    import threading

    from django.db import connection

    now = timezone.now()
    make_attempts(make_endpoint(), ok=5, failed=15, at=now - timedelta(seconds=30))
    barrier = threading.Barrier(2)
    reports = []

    def run():
        try:
            barrier.wait(timeout=10)
            reports.append(alert_services.evaluate_alert_rules(now=now))
        finally:
            connection.close()

    # when
    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    # then: the rule lock (PostgreSQL) or the unique constraint lets exactly one fire
    assert sum(report.count("fire") for report in reports) == 1
    assert Alert.objects.count() == 1 and len(alert_events()) == 1


def test_alert_gauges_tell_an_autoscaler_to_scale(alert_settings, seed_rules, event_types,
                                                  django_capture_on_commit_callbacks):
    # given: a queue backlog of 1500 that has lasted a minute
    from prometheus_client import CollectorRegistry, generate_latest

    from analytics.alerts.metrics import alert_metric_families

    class Source:
        def collect(self):
            return alert_metric_families()

    registry = CollectorRegistry()
    registry.register(Source())
    before = generate_latest(registry).decode()
    _backlog(make_endpoint(), 1500)
    start = timezone.now()

    # when
    evaluate(start, django_capture_on_commit_callbacks)
    evaluate(start + timedelta(seconds=60), django_capture_on_commit_callbacks)
    after = generate_latest(registry).decode()

    # then
    assert 'vocelio_alert_scale_processing_capacity{rule="queue_backlog"} 0.0' in before
    assert 'vocelio_alert_scale_processing_capacity{rule="queue_backlog"} 1.5' in after
    assert ('vocelio_alerts_firing{action="scale_processing_capacity",metric="queue_backlog_deliveries",'
            'rule="queue_backlog"} 1.0') in after
    assert ('vocelio_alerts_firing{action="alert_operations_team",metric="delivery_failure_rate_percent",'
            'rule="delivery_failure_rate"} 0.0') in after


# --- rule edits and deletion keep alert history honest ----------------------------------------------
def _fire_failure_rate(capture):
    """The seed's failure-rate rule firing on 75 % failed attempts; returns (now, the alert)."""
    now = timezone.now()
    make_attempts(make_endpoint(), ok=5, failed=15, at=now - timedelta(seconds=30))
    evaluate(now, capture)
    return now, Alert.objects.get(status="firing")


def test_deleting_a_firing_rule_resolves_its_alert_and_keeps_the_history(
        api, alert_settings, seed_rules, event_types, mailoutbox, django_capture_on_commit_callbacks):
    # given: delivery_failure_rate fired and published alert_<id>_firing
    _, alert = _fire_failure_rate(django_capture_on_commit_callbacks)
    rule_id = alert.rule_id

    # when
    with django_capture_on_commit_callbacks(execute=True):
        response = api.delete(f"/alert-rules/{rule_id}")

    # then: the rule is gone, its alert resolved and announced, the history still readable
    assert response.status_code == 204
    assert not AlertRule.objects.filter(pk=rule_id).exists()
    kept = Alert.objects.get(pk=alert.pk)
    assert (kept.status, kept.rule_id, kept.rule_name) == ("resolved", None, "delivery_failure_rate")
    assert kept.details["resolution"]["reason"] == "rule_deleted"
    assert [(e.event_id, e.data["alert"]["status"]) for e in alert_events()] == [
        (f"alert_{alert.pk}_firing", "firing"), (f"alert_{alert.pk}_resolved", "resolved")]
    assert alert_events()[1].data["alert"]["name"] == "delivery_failure_rate"
    assert [m.subject for m in mailoutbox] == ["[Vocelio Webhooks] FIRING: delivery_failure_rate",
                                               "[Vocelio Webhooks] RESOLVED: delivery_failure_rate"]
    shown = api.get(f"/alerts/{alert.pk}").json()
    assert (shown["rule"], shown["rule_id"], shown["metric"], shown["status"]) == (
        "delivery_failure_rate", None, "delivery_failure_rate_percent", "resolved")
    assert [a["id"] for a in api.get("/alerts", {"rule": "delivery_failure_rate"}).json()["results"]] == [alert.pk]


def test_a_rule_deleted_outside_the_api_has_its_alert_resolved_at_the_next_evaluation(
        alert_settings, seed_rules, event_types, django_capture_on_commit_callbacks):
    # given: a firing alert whose rule is deleted by a bulk delete (the admin's, a shell)
    now, alert = _fire_failure_rate(django_capture_on_commit_callbacks)
    AlertRule.objects.filter(pk=alert.rule_id).delete()
    assert Alert.objects.get(pk=alert.pk).status == "firing" and firing_alerts_for_metrics() == []

    # when
    report = evaluate(now + timedelta(seconds=30), django_capture_on_commit_callbacks)

    # then
    orphan = Alert.objects.get(pk=alert.pk)
    assert orphan.status == "resolved" and orphan.details["resolution"]["reason"] == "rule_deleted"
    assert report.count("resolve") == 1
    assert [e.data["alert"]["status"] for e in alert_events()] == ["firing", "resolved"]


def test_changing_a_firing_rules_metric_resolves_the_alert_and_keeps_what_it_fired_on(
        api, alert_settings, seed_rules, event_types, django_capture_on_commit_callbacks):
    # given: the failure-rate alert is firing (threshold 10, period 5m, operators)
    _, alert = _fire_failure_rate(django_capture_on_commit_callbacks)

    # when: the rule is turned into a backlog rule with another threshold and period
    response = api.patch(f"/alert-rules/{alert.rule_id}",
                         {"metric": "queue_backlog_deliveries", "threshold": 500, "period": "1m"}, format="json")

    # then: the alert resolved at once, and still says what it fired on
    assert response.status_code == 200, response.content
    assert response.json()["metric"] == "queue_backlog_deliveries" and response.json()["firing_alerts"] == 0
    shown = api.get(f"/alerts/{alert.pk}").json()
    assert (shown["status"], shown["metric"], shown["action"], shown["threshold"], shown["period"]) == (
        "resolved", "delivery_failure_rate_percent", "alert_operations_team", 10.0, "5m")
    assert shown["value_at_fire"] == 75.0 and shown["details"]["resolution"]["reason"] == "rule_metric_changed"
    resolved = alert_events()[-1].data["alert"]
    assert (resolved["status"], resolved["metric"], resolved["threshold"], resolved["period"]) == (
        "resolved", "delivery_failure_rate_percent", 10.0, "5m")


def test_editing_a_firing_rules_threshold_does_not_rewrite_the_alert(
        api, alert_settings, seed_rules, event_types, django_capture_on_commit_callbacks):
    # given
    _, alert = _fire_failure_rate(django_capture_on_commit_callbacks)

    # when: threshold and period change, the metric stays
    response = api.patch("/alert-rules/delivery_failure_rate", {"threshold": 50, "period": "10m"}, format="json")

    # then: still firing (it resolves by hysteresis against the new threshold), with its own values
    assert response.status_code == 200, response.content
    shown = api.get(f"/alerts/{alert.pk}").json()
    assert (shown["status"], shown["threshold"], shown["period"], shown["period_seconds"]) == (
        "firing", 10.0, "5m", 300)


def test_disabling_a_firing_rule_through_the_api_resolves_its_alert_at_once(
        api, alert_settings, seed_rules, event_types, django_capture_on_commit_callbacks):
    # given
    _, alert = _fire_failure_rate(django_capture_on_commit_callbacks)

    # when: no evaluation runs after the edit
    response = api.patch("/alert-rules/delivery_failure_rate", {"enabled": False}, format="json")

    # then
    assert response.status_code == 200 and response.json()["firing_alerts"] == 0
    resolved = Alert.objects.get(pk=alert.pk)
    assert resolved.status == "resolved" and resolved.details["resolution"]["reason"] == "rule_disabled"
    assert [e.data["alert"]["status"] for e in alert_events()] == ["firing", "resolved"]


@pytest.mark.parametrize("metric, action, accepted", [
    ("delivery_failure_rate_percent", "alert_operations_team", True),
    ("delivery_failure_rate_percent", "alert_endpoint_owner", False),
    ("delivery_failure_rate_percent", "scale_processing_capacity", False),
    ("endpoint_avg_response_time_ms", "alert_operations_team", True),
    ("endpoint_avg_response_time_ms", "alert_endpoint_owner", True),
    ("endpoint_avg_response_time_ms", "scale_processing_capacity", False),
    ("queue_backlog_deliveries", "alert_operations_team", True),
    ("queue_backlog_deliveries", "alert_endpoint_owner", False),
    ("queue_backlog_deliveries", "scale_processing_capacity", True),
])
def test_alert_rules_accept_only_actions_that_suit_the_metric(api, seed_rules, metric, action, accepted):
    # given / when
    response = api.post("/alert-rules", {"name": "combo", "metric": metric, "threshold": 1, "period": "1m",
                                         "action": action}, format="json")

    # then
    if accepted:
        assert response.status_code == 201, response.content
    else:
        assert "action" in assert_seed_error(response, 400, "VALIDATION_ERROR")["details"]["fields"]
        assert not AlertRule.objects.filter(name="combo").exists()


def test_alert_rule_edit_to_an_unsuitable_action_is_refused(api, seed_rules):
    # when: the backlog rule would mail an endpoint owner it does not have
    response = api.patch("/alert-rules/queue_backlog", {"action": "alert_endpoint_owner"}, format="json")

    # then
    assert "action" in assert_seed_error(response, 400, "VALIDATION_ERROR")["details"]["fields"]
    assert AlertRule.objects.get(name="queue_backlog").action == "scale_processing_capacity"


def test_alert_rule_names_cannot_be_all_digits(api, seed_rules):
    # given / when: "123" would be read as an id by /alert-rules/{id or name}
    created = api.post("/alert-rules", {"name": "123", "metric": "queue_backlog_deliveries", "threshold": 1,
                                        "period": "1m", "action": "scale_processing_capacity"}, format="json")
    renamed = api.patch("/alert-rules/queue_backlog", {"name": "42"}, format="json")
    mixed = api.post("/alert-rules", {"name": "123-backlog", "metric": "queue_backlog_deliveries", "threshold": 1,
                                      "period": "1m", "action": "scale_processing_capacity"}, format="json")

    # then
    assert "name" in assert_seed_error(created, 400, "VALIDATION_ERROR")["details"]["fields"]
    assert "name" in assert_seed_error(renamed, 400, "VALIDATION_ERROR")["details"]["fields"]
    assert mixed.status_code == 201 and api.get("/alert-rules/123-backlog").json()["name"] == "123-backlog"
    assert not AlertRule.objects.filter(name__in=["123", "42"]).exists()


def test_support_staff_may_view_alert_rules_alerts_and_endpoint_health_in_the_admin(
        alert_settings, seed_rules, event_types, django_capture_on_commit_callbacks):
    # given: a staff user in the Support group as the migrations make it (run again: a
    # transactional test's flush may have emptied the auth tables), and a firing alert
    from django.apps import apps as django_apps
    from django.contrib.auth.models import Group, User
    from django.test import Client

    importlib.import_module("vocelio_webhooks.migrations.0007_support_views_alerts_and_health").add_view_permissions(
        django_apps, None)
    _, alert = _fire_failure_rate(django_capture_on_commit_callbacks)
    user = User.objects.create_user("support", "support@example.com", "pw-support-123", is_staff=True)
    user.groups.add(Group.objects.get(name="Support"))
    client = Client()
    client.force_login(user)

    # when
    pages = ["/admin/analytics/alertrule/", "/admin/analytics/alert/", f"/admin/analytics/alert/{alert.pk}/change/",
             "/admin/endpoints/endpointhealth/"]
    answers = {page: client.get(page).status_code for page in pages}
    change = client.post(f"/admin/analytics/alertrule/{alert.rule_id}/change/", {"threshold": 1})

    # then: read-only access
    assert answers == dict.fromkeys(pages, 200)
    assert change.status_code == 403 and AlertRule.objects.get(pk=alert.rule_id).threshold == 10.0


def test_re_announcing_an_alert_whose_endpoint_changed_environment_keeps_its_event(
        alert_settings, seed_rules, event_types, mailoutbox, django_capture_on_commit_callbacks, caplog):
    # given: a slow staging endpoint's alert was announced in staging, then the endpoint moved to production
    now = timezone.now()
    slow = make_endpoint(name="Slow CRM", environment="staging", url="https://slow.example.com/in")
    make_attempts(slow, ok=4, at=now - timedelta(seconds=20), duration_ms=6000)
    evaluate(now, django_capture_on_commit_callbacks)
    alert = Alert.objects.get()
    WebhookEndpoint.objects.filter(pk=slow.pk).update(environment="production")
    alert.refresh_from_db()

    # when: the same announcement runs again (a retried task), now for production
    event_id = alert_services._announce(rule=alert.rule, alert=alert, status="firing")

    # then: nothing new is published and the alert keeps its event id (a 409 is not an error here)
    assert event_id == f"alert_{alert.pk}_firing"
    assert [e.environment for e in alert_events()] == ["staging"]
    assert "could not be published" not in caplog.text
