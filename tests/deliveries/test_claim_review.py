"""Review of the per-endpoint claim (commit 0085574, ``deliveries.services.claim``).

1. The per-endpoint claim reads and locks up to ``LEAST(room, limit)`` rows of every endpoint
   with room (``FOR UPDATE`` in the per-endpoint subquery) before the oldest ``limit`` of them are
   chosen: with many endpoints that each have a backlog (a fan-out burst), a claim of ``limit``
   rows locks up to ``endpoints × limit`` rows, each lock a write to the row and a WAL record,
   where the oldest-first scan locks at most ``4 × limit``. 1,000 endpoints with 20 due rows each:
   10,000 rows locked, 594 KB of WAL and 15-21 ms a claim against 200, 44 KB and 7 ms for the
   scan; batching endpoints (batch_max_events 5, 60 due each): 50,000 rows, 2.8 MB, 52-77 ms
   against 7 ms (/tmp/review_claim/shapes.py on PostgreSQL 15, ANALYZEd).
2. (Removed by the lead: a database migrated at 5e3088f, whose 0004 built the indexes with older
   definitions, exists nowhere; 5e3088f never left the machine. The rule it found is documented
   in ``deliveries.migration_operations``: a valid index of the same name is taken to be the one
   to build, so a changed index needs a new name.)
3. ``WEBHOOK_CLAIM_PER_ENDPOINT_MAX_ENDPOINTS=0`` (documented as "use the oldest-first scan")
   still picks the per-endpoint claim while the cached active-endpoint count is 0 (a process
   whose first claim saw no active endpoint, or an earlier test), so the suite's
   "oldest-first scan" variants depend on which test claimed before them.
"""
import json

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from deliveries import services as delivery_services
from deliveries.models import Delivery
from deliveries.services import claim
from endpoints.models import WebhookEndpoint
from tests.conftest import due_deliveries

POSTGRESQL_ONLY = pytest.mark.skipif("connection.vendor != 'postgresql'")


def _endpoint(receiver, name, **fields) -> WebhookEndpoint:
    return WebhookEndpoint.objects.create(name=name, url=receiver.url(f"/{name}"), events=["lead.*"],
                                          secret="whsec_claim_review_secret_0123456789", **fields)


def _claim_sql(limit: int) -> tuple[list[int], str, str]:
    """``claim_due(limit)``; returns the claimed ids and the claim's two statements (steer, claim)."""
    with CaptureQueriesContext(connection) as queries:
        claimed = delivery_services.claim_due(limit=limit)
    steer, sql = [q["sql"] for q in queries.captured_queries if "advisory" in q["sql"] or "RETURNING" in q["sql"]]
    return claimed, steer, sql


@POSTGRESQL_ONLY
def test_per_endpoint_claim_locks_no_more_rows_than_the_scan_would(event_types, receiver, settings):
    # given: 20 active endpoints, each with 5 due deliveries (a fan-out burst of 5 events), and a
    # claim of 5 (the oldest-first scan would lock at most 4 × 5 = 20 rows to choose them)
    settings.WEBHOOK_CLAIM_PER_ENDPOINT_MAX_ENDPOINTS = 1000
    endpoints = [_endpoint(receiver, f"fan{n}") for n in range(20)]
    due_deliveries(endpoints, 5)
    # (lead) and one endpoint at its cap, so that the per-endpoint statement is the one used
    settings.WEBHOOK_ENDPOINT_MAX_IN_FLIGHT = 5
    busy = due_deliveries([_endpoint(receiver, "busy")], 5)
    Delivery.objects.filter(pk__in=[d.pk for d in busy]).update(status="in_flight")

    # when: the claim, replayed under EXPLAIN ANALYZE (rolled back, the claimed rows put back first)
    claimed, steer, sql = _claim_sql(limit=5)
    Delivery.objects.filter(pk__in=claimed).update(status="pending", claimed_until=None)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(steer)
        cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}")
        plan = cursor.fetchone()[0]
        transaction.set_rollback(True)

    def nodes(node):
        yield node
        for child in node.get("Plans", []):
            yield from nodes(child)

    plan = plan if isinstance(plan, list) else json.loads(plan)
    locked = sum(n["Actual Rows"] * n["Actual Loops"] for n in nodes(plan[0]["Plan"]) if n["Node Type"] == "LockRows")

    # then: 5 claimed; the rows locked to choose them stay within the scan's bound (it locks 100:
    # every due row of every endpoint, each a tuple write and a WAL record, held until commit)
    assert len(claimed) == 5
    assert locked <= 4 * 5, f"the claim of 5 locked {locked} rows"
    assert "delivery_endpoint_due_idx" in json.dumps(plan)  # the per-endpoint statement was the one measured


@POSTGRESQL_ONLY
def test_setting_zero_picks_the_oldest_first_scan_after_a_claim_that_saw_no_active_endpoint(
        event_types, receiver, settings, monkeypatch):
    # given: a fresh process (no count yet) whose first claim saw no active endpoint, then an
    # active endpoint with a due delivery, and the setting at 0 (".env.example": beyond that many
    # active endpoints, all due deliveries oldest first; bench/paused_backlog.py: 0 picks the scan)
    monkeypatch.setattr(claim, "_active_endpoints_seen", (float("-inf"), 0))
    assert delivery_services.claim_due(limit=50) == []
    settings.WEBHOOK_CLAIM_PER_ENDPOINT_MAX_ENDPOINTS = 0
    [due] = due_deliveries([_endpoint(receiver, "one")], 1)

    # when
    claimed, _, sql = _claim_sql(limit=50)

    # then: the oldest-first scan ran (its window function), not the per-endpoint claim
    assert claimed == [due.pk]
    assert "ROW_NUMBER()" in sql and "CROSS JOIN LATERAL" not in sql
