"""``deploy/prometheus/alerts.yml``: valid for Prometheus (``promtool check rules``), proven by its
unit tests (``promtool test rules alerts.test.yml``: each seed rule fires above its threshold and
not at it), carrying the seed's thresholds and actions, and written against metric names that
``GET /metrics`` really exposes.

promtool comes from the Debian package ``prometheus``. Without it the promtool tests skip, except
under ``VOCELIO_REQUIRE_SERVICES=1`` (CI), where they fail.
"""
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from rest_framework.test import APIClient

from vocelio_webhooks import metrics

RULES_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
RULES = RULES_DIR / "alerts.yml"

# The seed's "Alerting Rules" (spec, "Monitoring and Alerting"): name → (threshold, period, action).
SEED_RULES = {
    "delivery_failure_rate": (10, "5m", "alert_operations_team"),
    "response_time_degradation": (5000, "1m", "alert_endpoint_owner"),
    "queue_backlog": (1000, "1m", "scale_processing_capacity"),
}


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("VOCELIO_REQUIRE_SERVICES") == "1":
            pytest.fail("promtool is missing; install the Debian package `prometheus`")
        pytest.skip("promtool is not installed (apt-get install prometheus); CI installs it")
    return path


def rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def test_alert_rules_pass_promtool_check():
    # when
    result = subprocess.run([promtool(), "check", "rules", str(RULES)], check=False,
                            capture_output=True, text=True, timeout=60)

    # then
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 3 rules found" in result.stdout + result.stderr


def test_alert_rules_pass_their_promtool_unit_tests():
    # when: alerts.test.yml feeds synthetic series above, at and below each threshold
    result = subprocess.run([promtool(), "test", "rules", "alerts.test.yml"], check=False, cwd=RULES_DIR,
                            capture_output=True, text=True, timeout=60)

    # then
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_alert_rules_carry_seed_thresholds_periods_and_actions():
    # given
    by_seed_rule = {rule["labels"]["seed_rule"]: rule for rule in rules()}

    # then: one alert per seed rule, with its action as a label and its numbers in the rule
    assert set(by_seed_rule) == set(SEED_RULES)
    for name, (threshold, period, action) in SEED_RULES.items():
        rule = by_seed_rule[name]
        assert rule["labels"]["action"] == action
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert re.search(rf">\s*{threshold}\s*$", rule["expr"].strip()), rule["expr"]
        assert f"[{period}]" in rule["expr"] or rule.get("for") == period, rule
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_alert_rules_use_metrics_that_metrics_endpoint_exposes(db, settings):
    # given: the families /metrics serves now (database gauges) and the worker-side families,
    # which appear in the exposition once a worker observed something (multiprocess files)
    settings.WEBHOOK_METRICS_TOKEN = "rules-test-token"
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer rules-test-token")
    exposition = client.get("/metrics").content.decode()
    families = set(re.findall(r"^# HELP (\w+)", exposition, flags=re.MULTILINE))
    families |= {family.name for collector in (metrics.ATTEMPTS, metrics.DELIVERIES_COMPLETED, metrics.ATTEMPT_DURATION)
                 for family in collector.describe()}
    samples = families | {f"{name}_total" for name in families} | {f"{name}_bucket" for name in families}

    # when
    used = {name for rule in rules() for name in re.findall(r"\bvocelio_\w+", rule["expr"])}

    # then
    assert used, "the rules reference no vocelio_ metric"
    assert used <= samples, f"rules use metrics /metrics does not expose: {sorted(used - samples)}"
