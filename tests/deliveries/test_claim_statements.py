"""The claim's two statements on PostgreSQL (``deliveries.services.claim``): the per-endpoint claim
(up to ``WEBHOOK_CLAIM_PER_ENDPOINT_MAX_ENDPOINTS`` active endpoints) and the oldest-first scan
(beyond that, and for priority wake-ups): the same deliveries claimed, and what each reads."""
import json

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from deliveries import services as delivery_services
from deliveries.models import Delivery
from endpoints.models import WebhookEndpoint
from tests.conftest import due_deliveries

MODES = pytest.mark.parametrize("per_endpoint", [True, False], ids=["per-endpoint claim", "oldest-first scan"])


@pytest.fixture
def claim_mode(settings, request):
    """Pick the claim's statement: ``per_endpoint`` True or False (the test's parameter)."""
    settings.WEBHOOK_CLAIM_PER_ENDPOINT_MAX_ENDPOINTS = 1000 if request.node.callspec.params["per_endpoint"] else 0
    return settings


def _endpoint(receiver, name, **fields) -> WebhookEndpoint:
    return WebhookEndpoint.objects.create(name=name, url=receiver.url(f"/{name}"), events=["lead.*"],
                                          secret="whsec_claim_test_secret_0123456789", **fields)


def claim_and_explain(limit: int = 50) -> tuple[list[int], list[dict]]:
    """Claim (``claim_due``), then replay the claim's own statements under ``EXPLAIN ANALYZE``
    (rolled back; the claimed rows are put back first). Returns the claimed ids and every node
    of the plan (``Node Type``, ``Index Name``, ``Actual Rows``, …), depth first."""
    with CaptureQueriesContext(connection) as queries:
        claimed = delivery_services.claim_due(limit=limit)
    Delivery.objects.filter(pk__in=claimed).update(status="pending", claimed_until=None)
    steer, claim = [q["sql"] for q in queries.captured_queries if "advisory" in q["sql"] or "RETURNING" in q["sql"]]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(steer)
        cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {claim}")
        plan = cursor.fetchone()[0]
        transaction.set_rollback(True)

    def nodes(node):
        yield node
        for child in node.get("Plans", []):
            yield from nodes(child)

    plan = plan if isinstance(plan, list) else json.loads(plan)
    return claimed, list(nodes(plan[0]["Plan"]))


def index_scans(plan: list[dict]) -> list[dict]:
    """The plan's scans of a named index of the deliveries table (``Meta.indexes``, primary key)."""
    indexes = {index.name for index in Delivery._meta.indexes} | {"deliveries_delivery_pkey"}
    return [n for n in plan if n.get("Index Name") in indexes]


def rows_read(scans: list[dict], index: str) -> int:
    """Index entries a plan's scans of ``index`` read: those kept and those its filter removed."""
    return sum((n["Actual Rows"] + n.get("Rows Removed by Filter", 0)) * n["Actual Loops"]
               for n in scans if n["Index Name"] == index)


@pytest.mark.skipif("connection.vendor != 'postgresql'")
def test_per_endpoint_claim_reads_no_row_of_an_endpoint_at_its_cap(event_types, receiver, settings):
    # given: an endpoint at its in-flight cap (2) with 60 due deliveries, older than 2 of another
    # one, in a table never analyzed (the planner has no statistics to go by)
    settings.WEBHOOK_ENDPOINT_MAX_IN_FLIGHT = 2
    settings.WEBHOOK_CLAIM_PER_ENDPOINT_MAX_ENDPOINTS = 1000
    waiting = [d.pk for d in due_deliveries([_endpoint(receiver, "capped")], 62)]
    Delivery.objects.filter(pk__in=waiting).update(next_attempt_at=timezone.now() - timezone.timedelta(hours=1))
    Delivery.objects.filter(pk__in=waiting[:2]).update(status="in_flight",
                                                       claimed_until=timezone.now() + timezone.timedelta(minutes=5))
    free = [d.pk for d in due_deliveries([_endpoint(receiver, "free")], 2)]

    # when
    claimed, plan = claim_and_explain()
    scans = index_scans(plan)

    # then: the free endpoint's two rows were read, from the per-endpoint index, and nothing else
    # of the due rows (the oldest-first scan walks the 60 first)
    assert claimed == free
    assert rows_read(scans, "delivery_endpoint_due_idx") == 2
    assert all(n["Index Name"] in ("delivery_endpoint_due_idx", "deliveries_delivery_pkey")
               or "in_flight" in n.get("Index Cond", "") for n in scans)  # else only the in-flight count


@pytest.mark.skipif("connection.vendor != 'postgresql'")
@MODES
def test_claim_takes_the_oldest_due_deliveries_within_each_endpoints_cap(event_types, receiver, claim_mode,
                                                                       per_endpoint):
    # given: a cap of 3; endpoint a with 5 due deliveries (one already in flight), b with 2, c
    # paused with 2, d with one due only in an hour; ages interleaved
    claim_mode.WEBHOOK_ENDPOINT_MAX_IN_FLIGHT = 3
    a, b = _endpoint(receiver, "a"), _endpoint(receiver, "b")
    c, d = _endpoint(receiver, "c", status="paused"), _endpoint(receiver, "d")
    rows = due_deliveries([a, b, c], 2) + due_deliveries([a], 3) + due_deliveries([d], 1)
    now = timezone.now()
    for age, row in enumerate(reversed(rows)):
        Delivery.objects.filter(pk=row.pk).update(next_attempt_at=now - timezone.timedelta(seconds=age + 1))
    later = [r.pk for r in rows if r.endpoint_id == d.pk]
    Delivery.objects.filter(pk__in=later).update(next_attempt_at=now + timezone.timedelta(hours=1))
    of_a = [r.pk for r in rows if r.endpoint_id == a.pk]
    Delivery.objects.filter(pk=of_a[0]).update(status="in_flight", claimed_until=now + timezone.timedelta(minutes=5))

    # when
    first = delivery_services.claim_due(limit=50)
    second = delivery_services.claim_due(limit=50)

    # then: a's next 2 oldest (3 - 1 in flight) and both of b's, oldest first; nothing more
    assert first == sorted(of_a[1:3] + [r.pk for r in rows if r.endpoint_id == b.pk])
    assert second == []


@pytest.mark.skipif("connection.vendor != 'postgresql'")
@MODES
def test_claim_limit_keeps_the_oldest_across_endpoints(event_types, receiver, claim_mode, per_endpoint):
    # given: 3 endpoints with 4 due deliveries each, ages interleaved across them
    endpoints = [_endpoint(receiver, f"e{n}") for n in range(3)]
    rows = due_deliveries(endpoints, 4)
    now = timezone.now()
    for age, row in enumerate(reversed(rows)):
        Delivery.objects.filter(pk=row.pk).update(next_attempt_at=now - timezone.timedelta(seconds=age + 1))

    # when
    claimed = delivery_services.claim_due(limit=5)

    # then: the 5 oldest, whichever endpoint they belong to
    assert claimed == [r.pk for r in rows[:5]]
