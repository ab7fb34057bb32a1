"""The admin dashboard: SVG chart functions (pure), the dashboard built from the analytics
queries' documented shapes, and the staff-only page on a known dataset."""
import importlib
import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.utils import timezone

from analytics import charts
from analytics.admin import RANGES, build_dashboard
from analytics.models import Alert, AlertRule
from deliveries.models import Delivery, DeliveryAttempt
from endpoints import services as endpoint_services
from events.models import Event, EventType
from tests.conftest import is_external, page_assets

DASHBOARD = "/admin/dashboard/"


# --- charts ---------------------------------------------------------------------------------
def test_line_chart_draws_one_polyline_per_unbroken_run_and_a_point_per_value():
    # given a series with a gap in the middle
    series = [charts.Series("attempts", [1, 4, None, 2, 3])]

    # when
    svg = charts.line_chart(title="t", labels=["a", "b", "c", "d", "e"], series=series)

    # then
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert svg.count("<polyline") == 2
    assert re.findall(r'data-value="([^"]+)"', svg) == ["1", "4", "2", "3"]
    assert 'data-chart="line"' in svg and "<title>t</title>" in svg


def test_line_chart_scales_to_a_readable_maximum_and_puts_values_at_the_right_height():
    # given: axis top 100 (fixed) over a plot 240 - 12 - 46 = 182 px high starting at y=12
    series = [charts.Series("rate", [100, 50, 0])]

    # when
    svg = charts.line_chart(title="t", labels=["a", "b", "c"], series=series, y_max=100, unit="%")

    # then
    heights = [float(y) for y in re.findall(r'<circle [^>]*cy="([\d.]+)"', svg)]
    assert heights == [12.0, 103.0, 194.0]
    assert ">100%<" in svg and ">50%<" in svg


def test_line_chart_escapes_labels_and_names():
    # when
    svg = charts.line_chart(title="<b>", labels=["<x>"], series=[charts.Series("a&b", [1])])

    # then
    assert "<b>" not in svg and "&lt;b&gt;" in svg and "&lt;x&gt;" in svg and "a&amp;b" in svg


def test_line_chart_without_values_says_so():
    # when
    svg = charts.line_chart(title="t", labels=["a"], series=[charts.Series("s", [None])])

    # then
    assert "No data in this period" in svg and "<polyline" not in svg


def test_bar_chart_bars_are_proportional_and_labelled():
    # when
    svg = charts.bar_chart(title="t", items=[("CRM", 10), ("Billing", 5)], notes=["40% errors", ""], width=640,
                           label_width=220)

    # then: the plot is 640 - 220 - 140 = 280 px wide
    widths = [float(w) for w in re.findall(r'<rect [^>]*width="([\d.]+)"', svg)]
    assert widths == [280.0, 140.0]
    assert 'data-label="CRM" data-value="10"' in svg and "10 · 40% errors" in svg


def test_nice_ceiling_and_format_number():
    assert [charts.nice_ceiling(v) for v in (0, 3, 7, 12, 230, 1000)] == [1, 5, 10, 20, 250, 1000]
    assert charts.format_number(1234) == "1,234"
    assert charts.format_number(99.25, "%") == "99.2%"
    assert charts.format_number(12, "ms") == "12 ms"
    assert charts.format_number(None) == "–"


# --- dashboard built from the documented query shapes ----------------------------------------
def _overview(**overrides) -> dict:
    base = {
        "deliveries": {"total": 12, "by_status": {"succeeded": 10, "dead_lettered": 2}},
        "attempts": {"total": 20, "succeeded": 15, "failed": 5},
        "success_rate": 75.0, "error_rate": 25.0,
        "response_time_ms": {"avg": 40, "p50": 30, "p95": 120, "p99": 250},
        "endpoints": [{"endpoint_id": 1, "name": "CRM", "url": "https://crm", "attempts": 10, "succeeded": 6,
                       "failed": 4, "success_rate": 60.0, "error_rate": 40.0, "response_time_ms": {}},
                      {"endpoint_id": 2, "name": "Quiet", "url": "https://q", "attempts": 10, "succeeded": 10,
                       "failed": 0, "success_rate": 100.0, "error_rate": 0.0, "response_time_ms": {}}],
        "event_types": [],
        "errors": {"by_status_code": [{"status_code": 503, "count": 4, "example": {}}],
                   "by_error_class": [{"error_class": "ConnectTimeout", "count": 1, "example": {}}]},
        "queue": {"pending": 3, "retrying": 2}, "dead_letters": 2, "open_circuits": 1,
    }
    return {**base, **overrides}


def _trends() -> dict:
    rows = [{"bucket_start": f"2026-01-01T{hour:02d}:00:00+00:00", "deliveries": 2, "attempts": 4, "succeeded": 3,
             "failed": 1, "success_rate": 75.0, "error_rate": 25.0,
             "response_time_ms": {"avg": 10, "p50": 8, "p95": 20, "p99": 30}} for hour in range(3)]
    return {"series": rows, "forecast": {"method": "holt", "buckets": [
        {"bucket_start": "2026-01-01T03:00:00+00:00", "attempts": 5, "failure_rate": 20.0}]}}


def test_build_dashboard_draws_every_chart_the_issue_lists():
    # when
    built = build_dashboard(overview=_overview(), trends=_trends(), period=RANGES["24h"])

    # then
    ids = [chart["id"] for chart in built["charts"]]
    assert ids == ["volume", "success-rate", "response-time", "failing-endpoints", "errors-by-status",
                   "errors-by-class", "queue"]
    svgs = {chart["id"]: str(chart["svg"]) for chart in built["charts"]}
    assert 'data-series="forecast (holt)"' in svgs["volume"] and 'stroke-dasharray' in svgs["volume"]
    assert ">03:00<" in svgs["volume"]  # the forecast bucket extends the axis
    assert 'data-label="CRM" data-value="4"' in svgs["failing-endpoints"]
    assert 'data-label="Quiet"' not in svgs["failing-endpoints"]  # no failures, not a "failing" endpoint
    assert 'data-label="503" data-value="4"' in svgs["errors-by-status"]
    assert 'data-label="pending" data-value="3"' in svgs["queue"]
    assert len(re.findall(r'data-series="p95"[^>]*data-value', svgs["response-time"])) == 3
    tiles = {tile["label"]: tile["value"] for tile in built["tiles"]}
    assert tiles["Success rate"] == "75%" and tiles["Waiting (pending + retrying)"] == "5"
    assert tiles["p95 response"] == "120 ms" and tiles["Dead letters"] == "2"


def test_build_dashboard_without_traffic_shows_empty_states():
    # when
    built = build_dashboard(overview=_overview(endpoints=[], errors={}, success_rate=None),
                            trends={"series": [], "forecast": {}}, period=RANGES["1h"])

    # then
    svgs = {chart["id"]: str(chart["svg"]) for chart in built["charts"]}
    assert "No data in this period" in svgs["volume"]
    assert "No failed attempts in this period" in svgs["failing-endpoints"]
    assert {tile["label"]: tile["value"] for tile in built["tiles"]}["Success rate"] == "–"


# --- the page ---------------------------------------------------------------------------------
@pytest.fixture
def dataset(event_types):
    """Last hour: CRM got 4 attempts (3 succeeded, one 503 in 900 ms), Billing 1 success."""
    crm = endpoint_services.create_endpoint(data={"name": "CRM", "url": "https://crm.example.com/h", "events": ["*"]})
    billing = endpoint_services.create_endpoint(data={"name": "Billing", "url": "https://b.example.com/h",
                                                      "events": ["*"]})
    kind = EventType.objects.get(name="lead.created")
    now = timezone.now()
    plan = [(crm, ["succeeded", "succeeded"]), (crm, ["retry", "succeeded"]), (billing, ["succeeded"])]
    for number, (endpoint, outcomes) in enumerate(plan):
        event = Event.objects.create(event_id=f"evt_dash_{number}", event_type=kind, timestamp=now, data={},
                                     environment=endpoint.environment)
        delivery = Delivery.objects.create(event=event, endpoint=endpoint, status=Delivery.Status.SUCCEEDED,
                                           attempt_count=len(outcomes))
        for attempt_number, outcome in enumerate(outcomes, start=1):
            failed = outcome != "succeeded"
            DeliveryAttempt.objects.create(
                delivery=delivery, attempt_number=attempt_number, url=endpoint.url, http_method="POST",
                outcome=outcome, response_status_code=503 if failed else 200, duration_ms=900 if failed else 50,
                error_class="HTTPError" if failed else "", started_at=now - timedelta(minutes=5),
            )
    return {"crm": crm, "billing": billing}


def test_dashboard_page_shows_charts_and_numbers_of_a_known_dataset(admin_client, dataset):
    # when
    response = admin_client.get(DASHBOARD, {"range": "1h"})

    # then
    html = response.content.decode()
    assert response.status_code == 200
    assert html.count("<svg") >= 7 + 1  # the charts, plus the admin's own icon sprite
    assert 'data-chart="line"' in html and 'data-chart="bar"' in html
    assert re.search(r'<div class="label">Attempts</div><div class="value">5</div>', html)
    assert re.search(r'<div class="label">Success rate</div><div class="value">80%</div>', html)
    assert 'data-label="CRM" data-value="1"' in html  # the only failing endpoint
    assert 'data-label="Billing"' not in html.split('id="chart-failing-endpoints"')[1].split("</section>")[0]
    assert 'data-label="503" data-value="1"' in html
    assets = page_assets(html)
    assert any("analytics/dashboard.js" in url for url in assets)
    assert not [url for url in assets if is_external(url)]


def test_dashboard_endpoint_filter_limits_the_numbers(admin_client, dataset):
    # when
    response = admin_client.get(DASHBOARD, {"range": "24h", "endpoint": dataset["billing"].pk})

    # then
    html = response.content.decode()
    assert re.search(r'<div class="label">Attempts</div><div class="value">1</div>', html)
    assert re.search(r'<div class="label">Success rate</div><div class="value">100%</div>', html)


def test_dashboard_fragment_is_only_the_refreshable_part(admin_client, dataset):
    # when
    response = admin_client.get(DASHBOARD, {"range": "7d", "fragment": "1"})

    # then
    html = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in html and "<svg" in html and "Last 7 days" in html


def test_dashboard_is_staff_only_and_needs_the_delivery_view_permission(db, event_types):
    # given
    anonymous = Client()
    staff = Client()
    staff.force_login(User.objects.create_user("s", "s@example.com", "pw-s-123", is_staff=True))
    viewer_user = User.objects.create_user("v", "v@example.com", "pw-v-123", is_staff=True)
    viewer_user.user_permissions.add(Permission.objects.get(codename="view_delivery"))
    viewer = Client()
    viewer.force_login(viewer_user)
    not_staff = Client()
    not_staff.force_login(User.objects.create_user("n", "n@example.com", "pw-n-123"))

    # when
    answers = [c.get(DASHBOARD) for c in (anonymous, not_staff, staff, viewer)]

    # then
    assert answers[0].status_code == 302 and answers[0]["Location"].startswith("/admin/login/")
    assert answers[1].status_code == 302
    assert answers[2].status_code == 403
    assert answers[3].status_code == 200


def test_admin_index_links_to_the_dashboard(admin_client):
    # when
    html = admin_client.get("/admin/").content.decode()

    # then
    assert 'href="/admin/dashboard/"' in html and "Delivery dashboard" in html


def test_alert_rules_and_alerts_are_listed_in_the_admin(admin_client):
    # when
    rules = admin_client.get("/admin/analytics/alertrule/")
    alerts = admin_client.get("/admin/analytics/alert/")
    add_alert = admin_client.get("/admin/analytics/alert/add/")

    # then
    assert (rules.status_code, alerts.status_code, add_alert.status_code) == (200, 200, 403)


# --- alert rules edited in the admin go through the alert services -----------------------------
def _firing_failure_rate_alert(capture):
    from tests.analytics.test_alerts import evaluate, make_attempts, make_endpoint

    now = timezone.now()
    make_attempts(make_endpoint(), ok=5, failed=15, at=now - timedelta(seconds=30))
    evaluate(now, capture)
    return Alert.objects.get(status="firing")


def _rule_form(rule, **changes) -> dict:
    fields = {"name": rule.name, "description": rule.description, "metric": rule.metric,
              "threshold": rule.threshold, "period_seconds": rule.period_seconds, "action": rule.action,
              "min_samples": rule.min_samples, "resolve_ratio": rule.resolve_ratio}
    if rule.enabled:
        fields["enabled"] = "on"
    fields.update(changes)
    return {key: value for key, value in fields.items() if value is not None}


def test_unticking_enabled_in_the_admin_resolves_the_firing_alert_at_once(
        admin_client, event_types, django_capture_on_commit_callbacks):
    # given: the seed's failure-rate rule is firing
    for rule in importlib.import_module("analytics.migrations.0002_alerts").SEED_RULES:
        AlertRule.objects.update_or_create(name=rule["name"], defaults=rule)
    alert = _firing_failure_rate_alert(django_capture_on_commit_callbacks)
    rule = alert.rule

    # when: support unticks "enabled" on the change form
    data = _rule_form(rule)
    data.pop("enabled")
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(f"/admin/analytics/alertrule/{rule.pk}/change/", data)

    # then: saved, and the alert resolved now with its resolved event, not at the next evaluation
    assert response.status_code == 302, response.content.decode()[:2000]
    alert.refresh_from_db()
    rule.refresh_from_db()
    assert (rule.enabled, alert.status, alert.details["resolution"]["reason"]) == (False, "resolved", "rule_disabled")
    assert Event.objects.filter(event_id=f"alert_{alert.pk}_resolved").exists()


def test_deleting_a_firing_rule_in_the_admin_resolves_its_alert_and_keeps_it(
        admin_client, event_types, django_capture_on_commit_callbacks):
    # given
    for rule in importlib.import_module("analytics.migrations.0002_alerts").SEED_RULES:
        AlertRule.objects.update_or_create(name=rule["name"], defaults=rule)
    alert = _firing_failure_rate_alert(django_capture_on_commit_callbacks)

    # when: deleted from the rule's delete page
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(f"/admin/analytics/alertrule/{alert.rule_id}/delete/", {"post": "yes"})

    # then
    assert response.status_code == 302
    kept = Alert.objects.get(pk=alert.pk)
    assert (kept.status, kept.rule_id, kept.details["resolution"]["reason"]) == ("resolved", None, "rule_deleted")
    assert Event.objects.filter(event_id=f"alert_{alert.pk}_resolved").exists()
