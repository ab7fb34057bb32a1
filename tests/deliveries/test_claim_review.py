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
import pytest
from django.db import connection

from deliveries import services as delivery_services
from deliveries.models import Delivery
from deliveries.services import claim
from endpoints.models import WebhookEndpoint
from tests.conftest import due_deliveries
from tests.deliveries.test_claim_statements import claim_and_explain

POSTGRESQL_ONLY = pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL only")


def _endpoint(receiver, name, **fields) -> WebhookEndpoint:
    return WebhookEndpoint.objects.create(name=name, url=receiver.url(f"/{name}"), events=["lead.*"],
                                          secret="whsec_claim_review_secret_0123456789", **fields)


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
    claimed, plan = claim_and_explain(limit=5)
    locked = sum(n["Actual Rows"] * n["Actual Loops"] for n in plan if n["Node Type"] == "LockRows")

    # then: 5 claimed; the rows locked to choose them stay within the scan's bound (it locks 100:
    # every due row of every endpoint, each a tuple write and a WAL record, held until commit)
    assert len(claimed) == 5
    assert locked <= 4 * 5, f"the claim of 5 locked {locked} rows"
    assert any(n.get("Index Name") == "delivery_endpoint_due_idx" for n in plan)  # the per-endpoint statement


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
    # (lead) and an endpoint at its cap, the case where the per-endpoint claim would be chosen
    settings.WEBHOOK_ENDPOINT_MAX_IN_FLIGHT = 1
    [busy] = due_deliveries([_endpoint(receiver, "busy")], 1)
    Delivery.objects.filter(pk=busy.pk).update(status="in_flight")

    # when
    claimed, plan = claim_and_explain(limit=50)

    # then: the oldest-first scan ran (its window function), not the per-endpoint claim
    assert claimed == [due.pk]
    assert any(n["Node Type"] == "WindowAgg" for n in plan)
    assert not any(n.get("Index Name") == "delivery_endpoint_due_idx" for n in plan)
