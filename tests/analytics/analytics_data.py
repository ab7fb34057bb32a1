"""Datasets for the analytics tests: rows written straight into the tables with chosen times,
durations and outcomes, so every expected number can be computed by hand."""
import random
from datetime import UTC, datetime, timedelta

from deliveries.models import Delivery, DeliveryAttempt
from endpoints.models import EndpointHealth, WebhookEndpoint
from events.models import Event, EventType

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # a Monday, 10:00 UTC


def endpoint(name: str, environment: str = "production") -> WebhookEndpoint:
    return WebhookEndpoint.objects.create(name=name, url=f"https://{name}.example.com/hook", events=["*"],
                                          environment=environment)


def delivery(target: WebhookEndpoint | None, event_type: str, *, at: datetime, status: str,
             environment: str | None = None, is_replay: bool = False) -> Delivery:
    event = Event.objects.create(
        event_id=f"evt_{Event.objects.count() + 1}", event_type=EventType.objects.get(name=event_type),
        timestamp=at, data={}, environment=environment or target.environment,
    )
    row = Delivery.objects.create(event=event, endpoint=target, status=status, is_replay=is_replay)
    Delivery.objects.filter(pk=row.pk).update(created_at=at)
    return row


def attempt(of: Delivery, number: int, *, at: datetime, outcome: str, duration_ms: int,
            status_code: int | None = 200, error_class: str = "", error_message: str = "") -> DeliveryAttempt:
    row = DeliveryAttempt.objects.create(
        delivery=of, attempt_number=number, url="https://x.example.com/hook", http_method="POST",
        response_status_code=status_code, duration_ms=duration_ms, error_class=error_class,
        error_message=error_message, outcome=outcome, started_at=at,
    )
    DeliveryAttempt.objects.filter(pk=row.pk).update(created_at=at)
    return row


def known_dataset() -> dict:
    """Two endpoints, six deliveries in [T0, T0+1h), seven attempts, plus one delivery an hour
    before T0 that no T0 range may count:

    =====  ========  ==============  =============  =======================================
    dlv    endpoint  event type      status         attempts (minute after T0: outcome, code, ms)
    =====  ========  ==============  =============  =======================================
    d1     crm (A)   lead.created    succeeded      +1 retry 500 100; +2 succeeded 200 200
    d2     crm (A)   lead.created    succeeded      +5 succeeded 200 300
    d3     crm (A)   lead.created    dead_lettered  +10 retry 500 400; +20 retry timeout 5000
    d4     erp (B)   call.ended      failed         +30 failed 404 50
    d5     erp (B)   call.ended      pending        (none)
    d6     erp (B)   call.ended      succeeded      +45 succeeded 200 260 (a replay)
    d0     crm (A)   lead.created    succeeded      T0-1h succeeded 200 10 (outside every T0 range)
    =====  ========  ==============  =============  =======================================

    crm is production, erp staging; erp's circuit breaker is open.
    """
    crm, erp = endpoint("crm"), endpoint("erp", "staging")
    m = timedelta(minutes=1)
    d0 = delivery(crm, "lead.created", at=T0 - 60 * m, status="succeeded")
    attempt(d0, 1, at=T0 - 60 * m, outcome="succeeded", duration_ms=10)
    d1 = delivery(crm, "lead.created", at=T0, status="succeeded")
    attempt(d1, 1, at=T0 + m, outcome="retry", status_code=500, error_class="http_500", duration_ms=100,
            error_message="HTTP 500")
    attempt(d1, 2, at=T0 + 2 * m, outcome="succeeded", duration_ms=200)
    d2 = delivery(crm, "lead.created", at=T0 + 4 * m, status="succeeded")
    attempt(d2, 1, at=T0 + 5 * m, outcome="succeeded", duration_ms=300)
    d3 = delivery(crm, "lead.created", at=T0 + 9 * m, status="dead_lettered")
    a3 = attempt(d3, 1, at=T0 + 10 * m, outcome="retry", status_code=500, error_class="http_500", duration_ms=400,
                 error_message="HTTP 500: upstream down")
    a3b = attempt(d3, 2, at=T0 + 20 * m, outcome="retry", status_code=None, error_class="timeout", duration_ms=5000,
                  error_message="read timed out")
    d4 = delivery(erp, "call.ended", at=T0 + 29 * m, status="failed")
    a4 = attempt(d4, 1, at=T0 + 30 * m, outcome="failed", status_code=404, error_class="http_404", duration_ms=50)
    delivery(erp, "call.ended", at=T0 + 40 * m, status="pending")
    d6 = delivery(erp, "call.ended", at=T0 + 44 * m, status="succeeded", is_replay=True)
    attempt(d6, 1, at=T0 + 45 * m, outcome="succeeded", duration_ms=260)
    EndpointHealth.objects.create(endpoint=erp, circuit_state=EndpointHealth.CircuitState.OPEN,
                                  failing_since=T0 + 30 * m)
    return {"crm": crm, "erp": erp, "a3": a3, "a3b": a3b, "a4": a4}


def random_dataset(*, days: int = 3, deliveries: int = 150, seed: int = 7) -> None:
    """Deliveries and attempts at random seconds over ``days`` days from T0 - 1 day, with random
    durations, outcomes and endpoints (for raw-versus-roll-up comparisons)."""
    rng = random.Random(seed)
    targets = [endpoint("alpha"), endpoint("beta"), endpoint("gamma", "staging")]
    kinds = ["lead.created", "call.ended", "call.started"]
    span = days * 86400
    for _ in range(deliveries):
        at = T0 - timedelta(days=1) + timedelta(seconds=rng.randrange(span), microseconds=rng.randrange(10**6))
        row = delivery(rng.choice(targets), rng.choice(kinds), at=at, status=rng.choice(["succeeded", "failed"]),
                       is_replay=rng.random() < 0.1)
        for number in range(1, rng.randint(1, 3) + 1):
            outcome = rng.choice(["succeeded", "succeeded", "retry", "failed"])
            code = {"succeeded": 200, "retry": rng.choice([500, 503, None]), "failed": 400}[outcome]
            attempt(row, number, at=at + timedelta(seconds=rng.randrange(7200)), outcome=outcome,
                    duration_ms=int(rng.lognormvariate(5, 1.2)), status_code=code,
                    error_class="" if outcome == "succeeded" else ("timeout" if code is None else f"http_{code}"))
