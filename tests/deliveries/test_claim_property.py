"""The claim's rule against a model of it, on random small scenarios (``deliveries.services.claim``,
PostgreSQL only: elsewhere there is one statement, which the other claim tests cover).

The rule (README "How deliveries are sent", step 2): the oldest due deliveries (``pending`` or
``retrying``, not ``held``, ``next_attempt_at <= now``) of ``active`` endpoints, at most
``WEBHOOK_ENDPOINT_MAX_IN_FLIGHT`` × ``batch_max_events`` minus the endpoint's ``in_flight`` rows per
endpoint, at most ``limit`` in all, ordered by ``(next_attempt_at, id)``. The per-endpoint statement
(run while some endpoint is at its cap and there are at most ``WEBHOOK_CLAIM_PER_ENDPOINT_MAX_ENDPOINTS``
active endpoints) claims exactly that; the oldest-first scan reads only the oldest 4 × ``limit`` due
rows of endpoints not at their cap, so it claims the oldest part of that answer: all of it unless
one endpoint's rows fill its window (the documented difference).

Each seed builds one scenario and claims twice with each statement, rolled back in between, each
claim checked against the model of the table as it is just before it. A failure names its seed and
data; its test id reruns it alone (``…::test_claim_agrees_with_the_rule_on_random_scenarios[seed-17]``)."""
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from deliveries import services as delivery_services
from deliveries.models import Delivery
from deliveries.services import claim
from endpoints.models import WebhookEndpoint
from events.models import Event, EventType

# 150 scenarios x 3 settings x 2 claims = 900 claims, ~10 s. Counted when the file was written:
# 361 claims ran the per-endpoint statement (in 117 scenarios), 489 claimed something, 165 had
# more due rows than the scan's window, and 4 (seeds 20 and 61) saw the scan claim fewer than the rule.
SEEDS = range(150)
# The oldest-first scan reads at most this many times ``limit`` due rows (README, step 2: "the
# scan stops after four batches' worth"; ``"scan": limit * 4`` in ``claim._claim``).
SCAN_WINDOW = 4
PER_ENDPOINT, SCAN = "per-endpoint claim", "oldest-first scan"
DUE_STATUSES = {Delivery.Status.PENDING, Delivery.Status.RETRYING}


@dataclass(frozen=True)
class Row:
    id: int
    endpoint_id: int | None
    status: str
    next_attempt_at: datetime | None
    held: bool


@dataclass(frozen=True)
class Table:
    """The deliveries and endpoints a claim sees, and the settings it runs with."""
    rows: tuple[Row, ...]
    endpoints: dict[int, tuple[str, int]]  # id: (status, batch_max_events)
    cap: int
    limit: int
    now: datetime

    def in_flight(self, endpoint_id: int | None = None) -> set[int]:
        return {r.id for r in self.rows if r.status == Delivery.Status.IN_FLIGHT
                and (endpoint_id is None or r.endpoint_id == endpoint_id)}

    def room(self, endpoint_id: int) -> int:
        return self.cap * self.endpoints[endpoint_id][1] - len(self.in_flight(endpoint_id))

    def due(self, endpoint_ids) -> list[Row]:
        """The due rows of ``endpoint_ids``, in claim order (``next_attempt_at``, then ``id``)."""
        return sorted((r for r in self.rows if r.endpoint_id in endpoint_ids and r.status in DUE_STATUSES
                       and not r.held and r.next_attempt_at is not None and r.next_attempt_at <= self.now),
                      key=lambda r: (r.next_attempt_at, r.id))

    def active(self) -> list[int]:
        return [pk for pk, (status, _) in self.endpoints.items() if status == WebhookEndpoint.Status.ACTIVE]

    def some_endpoint_at_its_cap(self) -> bool:
        """Whatever its status, as ``claim.endpoints_at_cap_sql`` counts it."""
        return any(self.room(pk) <= 0 for pk in self.endpoints)

    def rule(self) -> list[int]:
        """The ids the rule claims, in claim order."""
        candidates = []
        for pk in self.active():
            candidates += self.due({pk})[:max(self.room(pk), 0)]
        return [r.id for r in sorted(candidates, key=lambda r: (r.next_attempt_at, r.id))][:self.limit]

    def scan(self) -> list[int]:
        """The ids the oldest-first scan claims, in claim order: the rule applied to the oldest
        ``SCAN_WINDOW`` × ``limit`` due rows of active endpoints with room."""
        window = self.due({pk for pk in self.active() if self.room(pk) > 0})[:SCAN_WINDOW * self.limit]
        taken: dict[int, int] = {}
        claimed = []
        for row in window:
            taken[row.endpoint_id] = taken.get(row.endpoint_id, 0) + 1
            if taken[row.endpoint_id] <= self.room(row.endpoint_id):
                claimed.append(row.id)
        return claimed[:self.limit]

    def describe(self) -> str:
        """The scenario, for a failure message: settings, then each endpoint with its rows."""
        def row(r: Row) -> str:
            at = "-" if r.next_attempt_at is None else f"{(r.next_attempt_at - self.now).total_seconds():+.0f}s"
            return f"{r.id}:{r.status}@{at}{':held' if r.held else ''}"

        lines = [f"cap={self.cap} limit={self.limit}"]
        for pk, (status, batch) in [*self.endpoints.items(), (None, ("deleted", 0))]:
            lines.append(f"  endpoint {pk} {status} batch_max_events={batch}: "
                         + " ".join(row(r) for r in self.rows if r.endpoint_id == pk))
        return "\n".join(lines)


def table(*, cap: int, limit: int) -> Table:
    rows = tuple(Row(*values) for values in Delivery.objects.order_by("id").values_list(
        "id", "endpoint_id", "status", "next_attempt_at", "held"))
    endpoints = {pk: (status, batch) for pk, status, batch in
                 WebhookEndpoint.objects.values_list("id", "status", "batch_max_events")}
    return Table(rows=rows, endpoints=endpoints, cap=cap, limit=limit, now=timezone.now())


def build_scenario(seed: int) -> tuple[int, int]:
    """Store scenario ``seed``: 1-5 endpoints (some paused or disabled), each with 0 to
    cap × batch_max_events + 1 deliveries in flight (so some are at or over their cap) and up to 8
    waiting ones (some held, some due only in an hour or never scheduled, due times within 5 s of
    each other so they tie; a quarter of the endpoints have 6-16, 10 minutes older, so that their
    rows fill the scan's window), a few finished ones, a few of deleted endpoints; inserted in random
    order so ids do not follow due times. Returns ``(cap, limit)``."""
    rng = random.Random(seed)
    cap, limit = rng.randint(1, 3), rng.choice([1, 1, 2, 2, 3, 4, 6, 10])
    event_type, _ = EventType.objects.get_or_create(name="lead.created", defaults={"category": "lead"})
    now = timezone.now()
    event = Event.objects.create(event_id=f"evt_prop_{seed}", event_type=event_type, timestamp=now, data={})
    past = now - timedelta(hours=1)
    endpoints = [WebhookEndpoint.objects.create(
        name=f"prop{n}", url=f"http://127.0.0.1:9/prop{n}", events=["lead.*"],
        secret="whsec_claim_test_secret_0123456789", batch_max_events=rng.choice([1, 1, 2, 3]),
        status=rng.choice(["active"] * 4 + ["paused", "disabled"])) for n in range(rng.randint(1, 5))]
    rows = []
    for endpoint in [*endpoints, None]:
        full = cap * endpoint.batch_max_events if endpoint else 2
        # a quarter of the endpoints have a backlog older than everybody else's (a slow receiver)
        slow = endpoint is not None and rng.random() < 0.25
        oldest = past - timedelta(minutes=10 if slow else 0)
        for _ in range(rng.choice([0, 0, 0, 1, full - 1, full, full + 1])):
            rows.append(Delivery(event=event, endpoint=endpoint, status="in_flight", attempt_count=rng.randint(0, 2),
                                 next_attempt_at=past, claimed_until=now + timedelta(minutes=5)))
        for _ in range(rng.randint(6, 16) if slow else rng.randint(0, 8 if endpoint else 2)):
            when = rng.random()
            rows.append(Delivery(
                event=event, endpoint=endpoint, status=rng.choice(["pending", "pending", "retrying"]),
                attempt_count=rng.randint(0, 2), held=rng.random() < 0.15,
                next_attempt_at=(now + timedelta(hours=1) if when < 0.1 else None if when < 0.15
                                 else oldest + timedelta(seconds=rng.randint(0, 4)))))
        for _ in range(rng.randint(0, 2)):
            rows.append(Delivery(event=event, endpoint=endpoint, next_attempt_at=past,
                                 status=rng.choice(["succeeded", "failed", "dead_lettered", "cancelled"])))
    rng.shuffle(rows)
    Delivery.objects.bulk_create(rows)
    return cap, limit


def claim_and_name(limit: int) -> tuple[list[int], str]:
    """``claim_due`` (the count of active endpoints that picks the statement counted afresh, not
    taken from an earlier scenario) and which of the two statements it ran."""
    claim._active_endpoints_seen = (float("-inf"), 0)
    with CaptureQueriesContext(connection) as queries:
        claimed = delivery_services.claim_due(limit=limit)
    [statement] = [q["sql"] for q in queries.captured_queries if "RETURNING" in q["sql"]]
    return claimed, PER_ENDPOINT if "LATERAL" in statement else SCAN


@pytest.mark.skipif("connection.vendor != 'postgresql'")
@pytest.mark.parametrize("seed", SEEDS, ids=[f"seed-{seed}" for seed in SEEDS])
def test_claim_agrees_with_the_rule_on_random_scenarios(db, settings, monkeypatch, seed):
    # given: scenario `seed`
    monkeypatch.setattr(claim, "_active_endpoints_seen", claim._active_endpoints_seen)  # restored after
    cap, limit = build_scenario(seed)
    settings.WEBHOOK_ENDPOINT_MAX_IN_FLIGHT = cap
    active = WebhookEndpoint.objects.filter(status="active").count()
    # the per-endpoint statement allowed, not allowed, and allowed up to a count near the scenario's
    for most_endpoints in (1000, 0, random.Random(f"{seed}-most-endpoints").randint(1, 5)):
        settings.WEBHOOK_CLAIM_PER_ENDPOINT_MAX_ENDPOINTS = most_endpoints
        with transaction.atomic():
            claimed_so_far: set[int] = set()
            for claim_number in (1, 2):
                before = table(cap=cap, limit=limit)
                expected_statement = (PER_ENDPOINT if before.some_endpoint_at_its_cap()
                                      and 0 < active <= most_endpoints else SCAN)
                rule = before.rule()

                # when
                claimed, statement = claim_and_name(limit)

                # then
                case = (f"seed {seed}, claim {claim_number}, WEBHOOK_CLAIM_PER_ENDPOINT_MAX_ENDPOINTS="
                        f"{most_endpoints}, {statement}, rule {rule}, claimed {claimed}\n{before.describe()}")
                assert statement == expected_statement, case
                # the per-endpoint claim: exactly the rule; the scan: the oldest part of the rule's
                # answer, all of it unless one endpoint's rows fill its window
                assert claimed == sorted(rule if statement == PER_ENDPOINT else before.scan()), case
                assert set(claimed) <= set(rule), case
                assert sorted(claimed, key=rule.index) == rule[:len(claimed)], case
                if len(before.due({pk for pk in before.active() if before.room(pk) > 0})) <= SCAN_WINDOW * limit:
                    assert set(claimed) == set(rule), case
                # no row claimed twice, and the claimed rows (only they) are now in flight
                assert not claimed_so_far & set(claimed), case
                after = table(cap=cap, limit=limit)
                assert after.in_flight() == before.in_flight() | set(claimed), case
                claimed_so_far |= set(claimed)
            transaction.set_rollback(True)
