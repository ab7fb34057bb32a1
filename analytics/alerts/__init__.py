"""Alerting inside the service (issue 6, "Monitoring and alerting"; the seed's "Alerting Rules"):
stored rules evaluated by beat, alerts recorded with their values, announced as
``system.health_alert`` events plus the rule's action, resolved with hysteresis.

* ``decisions`` — pure: fire / pending / resolve rules, the seed's period notation.
* ``queries`` — the measurements (failure rate, response time per endpoint, queue backlog) and
  ``firing_alerts_for_metrics`` for ``/metrics``.
* ``services`` — ``evaluate_alert_rules`` (the beat task's body), rule edits.
* ``metrics`` — ``alert_metric_families``, the alert gauges of ``/metrics`` (imported on its own:
  it needs prometheus-client).
"""
from analytics.alerts.decisions import (
    Decision,
    Transition,
    decide,
    format_period,
    parse_period,
)
from analytics.alerts.queries import (
    FiringAlertSample,
    Measurement,
    firing_alerts_for_metrics,
    measure,
)
from analytics.alerts.services import (
    AlertChange,
    EvaluationReport,
    alert_payload,
    create_rule,
    delete_rule,
    evaluate_alert_rules,
    evaluate_rule,
    mail_recipients,
    update_rule,
)

__all__ = [
    "AlertChange", "Decision", "EvaluationReport", "FiringAlertSample", "Measurement", "Transition", "alert_payload",
    "create_rule", "decide", "delete_rule", "evaluate_alert_rules", "evaluate_rule", "firing_alerts_for_metrics",
    "format_period", "mail_recipients", "measure", "parse_period", "update_rule",
]
