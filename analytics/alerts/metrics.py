"""Alert gauges for ``/metrics`` (a scrape source for ``vocelio_webhooks.metrics.add_scrape_source``).

* ``vocelio_alerts_firing{rule,metric,action}`` — firing alerts per enabled rule (0 included, so
  the series exists before the first alert). Labels are bounded by the number of rules: a
  per-endpoint rule counts its endpoints here, the endpoints themselves are in ``/alerts``.
* ``vocelio_alert_scale_processing_capacity{rule}`` — for each enabled rule whose action is
  ``scale_processing_capacity``: while it fires, the last value divided by the threshold (1.2 =
  20 % more backlog than the rule tolerates), else 0. An autoscaler scales workers up while it is
  above 0 (README "Alerting").
"""
from collections.abc import Iterable

from prometheus_client.core import GaugeMetricFamily, Metric

from analytics.alerts.queries import firing_alerts_for_metrics
from analytics.models import AlertRule


def alert_metric_families() -> Iterable[Metric]:
    """The two gauges above, read from the database (two queries) at scrape time."""
    rules = list(AlertRule.objects.filter(enabled=True).order_by("name").values_list("name", "metric", "action"))
    firing = firing_alerts_for_metrics()
    counts = GaugeMetricFamily("vocelio_alerts_firing", "Firing alerts per alert rule.",
                               labels=["rule", "metric", "action"])
    scale = GaugeMetricFamily(
        "vocelio_alert_scale_processing_capacity",
        "While a scale_processing_capacity rule fires: its last value / threshold; else 0.", labels=["rule"],
    )
    for name, metric, action in rules:
        mine = [sample for sample in firing if sample.rule == name]
        counts.add_metric([name, metric, action], len(mine))
        if action == AlertRule.Action.SCALE_PROCESSING_CAPACITY:
            scale.add_metric([name], max((sample.capacity_ratio for sample in mine), default=0.0))
    yield counts
    yield scale
