"""The admin's delivery dashboard (``/admin/dashboard/``) and the alert models' admin.

The dashboard reads only through ``analytics.queries`` (``overview`` and ``trends``, the same
functions as the ``/analytics`` API) and draws server-rendered SVG (``analytics.charts``). It
refreshes itself: ``analytics/static/analytics/dashboard.js`` re-fetches the chart fragment
(``?fragment=1``) every ``REFRESH_SECONDS``; no script or style comes from a CDN.
"""
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.utils import timezone

from analytics import charts
from analytics.alerts import services as alert_services
from analytics.models import Alert, AlertRule
from vocelio_webhooks import audit
from vocelio_webhooks.admin import AuditedAdminMixin, _pending_snapshots

REFRESH_SECONDS = 15


@dataclass(frozen=True)
class Range:
    """A dashboard period: how far back from now, and the trend bucket that gives a readable
    number of points (60 minutes, 24 hours, 7 days)."""

    key: str
    label: str
    span: timedelta
    bucket: str
    label_format: str


RANGES = {
    r.key: r for r in (
        Range("1h", "Last hour", timedelta(hours=1), "minute", "%H:%M"),
        Range("24h", "Last 24 hours", timedelta(hours=24), "hour", "%H:%M"),
        Range("7d", "Last 7 days", timedelta(days=7), "day", "%b %d"),
    )
}
DEFAULT_RANGE = "24h"
TOP_ENDPOINTS = 8
TOP_ERRORS = 8


def _bucket_label(value: str, label_format: str) -> str:
    try:
        return datetime.fromisoformat(value).strftime(label_format)
    except (TypeError, ValueError):
        return str(value)


def build_dashboard(*, overview: dict[str, Any], trends: dict[str, Any], period: Range) -> dict[str, Any]:
    """Turn ``analytics.queries.overview`` and ``trends`` results into the dashboard's tiles and
    SVG charts. Pure: no database access. Rates are percentages (0–100) as the queries return
    them; times are milliseconds.

    Returns ``{"tiles": [{"label", "value", "tone"}], "charts": [{"id", "title", "svg"}]}``.
    """
    series = trends.get("series") or []
    forecast = (trends.get("forecast") or {}).get("buckets") or []
    labels = [_bucket_label(row["bucket_start"], period.label_format) for row in series]
    forecast_labels = [_bucket_label(row["bucket_start"], period.label_format) for row in forecast]
    history = len(series)
    padding = [None] * len(forecast)

    def column(key: str) -> list:
        return [row.get(key) for row in series]

    def timing(key: str) -> list:
        return [(row.get("response_time_ms") or {}).get(key) for row in series]

    # The forecast line starts at the last real point so it reads as a continuation.
    forecast_values: list = [None] * history + [row.get("attempts") for row in forecast]
    if forecast and history:
        forecast_values[history - 1] = series[-1].get("attempts")
    volume_series = [
        charts.Series("attempts", column("attempts") + padding, charts.PALETTE[0]),
        charts.Series("succeeded", column("succeeded") + padding, charts.PALETTE[1]),
        charts.Series("failed", column("failed") + padding, charts.PALETTE[2]),
    ]
    if forecast:
        method = (trends.get("forecast") or {}).get("method") or "forecast"
        volume_series.append(charts.Series(f"forecast ({method})", forecast_values, charts.PALETTE[3], dashed=True))

    endpoints = [row for row in overview.get("endpoints") or [] if row.get("failed")][:TOP_ENDPOINTS]
    errors = overview.get("errors") or {}
    by_code = (errors.get("by_status_code") or [])[:TOP_ERRORS]
    by_class = (errors.get("by_error_class") or [])[:TOP_ERRORS]
    queue = overview.get("queue") or {}
    timings = overview.get("response_time_ms") or {}

    chart_list = [
        {"id": "volume", "title": "Deliveries over time (attempts)", "svg": charts.line_chart(
            title="Attempts, successes and failures per bucket", labels=labels + forecast_labels,
            series=volume_series)},
        {"id": "success-rate", "title": "Success rate", "svg": charts.line_chart(
            title="Success rate per bucket", labels=labels,
            series=[charts.Series("success rate", column("success_rate"), charts.PALETTE[1])], unit="%", y_max=100)},
        {"id": "response-time", "title": "Response time percentiles", "svg": charts.line_chart(
            title="Response time percentiles per bucket (ms)", labels=labels, unit="ms",
            series=[charts.Series("p50", timing("p50"), charts.PALETTE[0]),
                    charts.Series("p95", timing("p95"), charts.PALETTE[4]),
                    charts.Series("p99", timing("p99"), charts.PALETTE[2])])},
        {"id": "failing-endpoints", "title": "Top failing endpoints", "svg": charts.bar_chart(
            title="Failed attempts per endpoint", empty_message="No failed attempts in this period",
            items=[(row.get("name") or f"endpoint {row.get('endpoint_id')}", row.get("failed")) for row in endpoints],
            notes=[f"{charts.format_number(row.get('error_rate'), '%')} errors" for row in endpoints])},
        {"id": "errors-by-status", "title": "Errors by status code", "svg": charts.bar_chart(
            title="Failed attempts by HTTP status code", empty_message="No HTTP error answers in this period",
            items=[(str(row.get("status_code") or "no response"), row.get("count")) for row in by_code],
            color=charts.PALETTE[4])},
        {"id": "errors-by-class", "title": "Errors by class", "svg": charts.bar_chart(
            title="Failed attempts by error class", empty_message="No errors in this period",
            items=[(row.get("error_class") or "(none)", row.get("count")) for row in by_class],
            color=charts.PALETTE[4])},
        {"id": "queue", "title": "Queue depth now", "svg": charts.bar_chart(
            title="Deliveries waiting now", color=charts.PALETTE[0],
            items=[("pending", queue.get("pending")), ("retrying", queue.get("retrying")),
                   ("dead letters", overview.get("dead_letters")), ("open circuits", overview.get("open_circuits"))])},
    ]
    attempts = overview.get("attempts") or {}
    success_rate = overview.get("success_rate")
    tiles = [
        {"label": "Deliveries", "value": charts.format_number((overview.get("deliveries") or {}).get("total"))},
        {"label": "Attempts", "value": charts.format_number(attempts.get("total"))},
        {"label": "Success rate", "value": charts.format_number(success_rate, "%"),
         "tone": "bad" if success_rate is not None and success_rate < 95 else "good"},
        {"label": "Failed attempts", "value": charts.format_number(attempts.get("failed")),
         "tone": "bad" if attempts.get("failed") else ""},
        {"label": "p95 response", "value": charts.format_number(timings.get("p95"), "ms")},
        {"label": "Waiting (pending + retrying)",
         "value": charts.format_number((queue.get("pending") or 0) + (queue.get("retrying") or 0))},
        {"label": "Dead letters", "value": charts.format_number(overview.get("dead_letters")),
         "tone": "bad" if overview.get("dead_letters") else ""},
        {"label": "Open circuits", "value": charts.format_number(overview.get("open_circuits")),
         "tone": "bad" if overview.get("open_circuits") else ""},
    ]
    return {"tiles": tiles, "charts": chart_list}


def _refresh_seconds(value: str | None) -> int:
    """``?refresh=N`` (2–300 s) overrides the default refresh period, e.g. for a wall screen."""
    return min(max(int(value), 2), 300) if value and value.isdigit() else REFRESH_SECONDS


def dashboard_view(request):
    """``GET /admin/dashboard/?range=1h|24h|7d&endpoint=<id>&refresh=<seconds>``: tiles and charts of the period
    (wrapped in ``admin_site.admin_view``, so staff only). Needs ``deliveries.view_delivery``
    (the Support group has it). ``&fragment=1`` returns only the refreshable part."""
    from analytics import queries
    from endpoints.models import WebhookEndpoint

    if not request.user.has_perm("deliveries.view_delivery"):
        raise PermissionDenied
    period = RANGES.get(request.GET.get("range", ""), RANGES[DEFAULT_RANGE])
    endpoints = list(WebhookEndpoint.objects.order_by("name").values_list("pk", "name"))
    endpoint_id = request.GET.get("endpoint") or None
    if endpoint_id is not None and (not endpoint_id.isdigit() or int(endpoint_id) not in {pk for pk, _ in endpoints}):
        endpoint_id = None
    endpoint_id = int(endpoint_id) if endpoint_id else None
    end = timezone.now()
    start = end - period.span
    overview = queries.overview(start=start, end=end, endpoint_id=endpoint_id)
    trends = queries.trends(start=start, end=end, bucket=period.bucket, endpoint_id=endpoint_id)
    context = {
        **build_dashboard(overview=overview, trends=trends, period=period),
        "title": "Delivery dashboard",
        "period": period,
        "ranges": RANGES.values(),
        "endpoints": endpoints,
        "endpoint_id": endpoint_id,
        "start": start,
        "end": end,
        "refresh_seconds": _refresh_seconds(request.GET.get("refresh")),
    }
    if request.GET.get("fragment"):
        return TemplateResponse(request, "admin/analytics/dashboard_fragment.html", context)
    context.update(admin.site.each_context(request))
    return TemplateResponse(request, "admin/analytics/dashboard.html", context)


@admin.register(AlertRule)
class AlertRuleAdmin(AuditedAdminMixin, admin.ModelAdmin):
    """Alert rules (metric, threshold, period, action); changes are audited like the API's."""

    list_display = ("name", "metric", "threshold", "period_seconds", "action", "min_samples", "enabled", "updated_at")
    list_filter = ("enabled", "metric", "action")
    search_fields = ("name", "description")
    list_editable = ("enabled",)

    def save_model(self, request, obj, form, change):
        """Changes go through ``analytics.alerts.services.update_rule``, as the API's do: a new
        metric or ``enabled`` unticked resolves the rule's firing alerts at once (resolved event
        and mail). The form has already run the model's validation, the service's own rules."""
        if not change:
            super().save_model(request, obj, form, change)
            return
        current = AlertRule.objects.get(pk=obj.pk)
        _pending_snapshots(request)[(obj._meta.label_lower, obj.pk)] = audit.snapshot(current)
        changed = {name: form.cleaned_data[name] for name in form.changed_data if name in alert_services.RULE_FIELDS}
        alert_services.update_rule(rule=current, **changed)

    def delete_model(self, request, obj):
        """Through ``delete_rule``: firing alerts resolve and are announced before the rule goes."""
        alert_services.delete_rule(rule=obj)

    def delete_queryset(self, request, queryset):
        for rule in queryset:
            alert_services.delete_rule(rule=rule)


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    """Alerts are written by the evaluation task only: read-only history here."""

    list_display = ("id", "rule", "scope_key", "endpoint", "status", "pending_since", "fired_at", "resolved_at",
                    "value_at_fire", "peak_value", "last_value")
    list_filter = ("status", "rule")
    search_fields = ("rule__name", "scope_key", "endpoint__name", "firing_event_id")
    date_hierarchy = "created_at"
    list_select_related = ("rule", "endpoint")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
