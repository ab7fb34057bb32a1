"""Writes for webhook endpoints. Each service validates the whole row (``full_clean``) and
raises ``vocelio_webhooks.errors.ValidationFailed`` with per-field details on bad input."""
import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.utils import timezone

from endpoints import network
from endpoints.filters import FilterValidationError, validate_filters
from endpoints.models import WebhookEndpoint, normalize_retry_policy
from endpoints.signing import generate_secret
from vocelio_webhooks.crypto import mask
from vocelio_webhooks.errors import NotFound, ValidationFailed

SECRET_METHODS = {"hmac_sha256", "hmac_sha1", "standard_webhooks", "jwt"}
WRITE_ONLY_SECRETS = ("secret", "api_key")


def validate_endpoint(endpoint: WebhookEndpoint) -> None:
    """Validate a whole endpoint (saved or not); raises ``ValidationFailed`` with per-field details."""
    try:
        endpoint.full_clean()
    except ValidationError as exc:
        raise ValidationFailed(
            "The endpoint configuration is invalid.", details={"fields": exc.message_dict}
        ) from exc
    try:
        validate_filters(endpoint.filters)
    except FilterValidationError as exc:
        raise ValidationFailed(
            f"Invalid filter at {exc.location}: {exc.message}",
            details={"location": exc.location, "fields": {"filters": [f"{exc.location}: {exc.message}"]}},
            code="INVALID_FILTER",
        ) from exc
    _validate_templates(endpoint)
    for field in ("url", "failover_url"):
        value = getattr(endpoint, field)
        if not value:
            continue
        try:
            # Names are resolved again before every attempt; here only literal addresses are
            # checked so an endpoint can be created before its DNS exists.
            network.check_destination(value, allowed_ip_ranges=endpoint.allowed_ip_ranges, resolve=False)
        except network.BlockedDestination as exc:
            raise ValidationFailed(str(exc), details={"fields": {field: [str(exc)]}}, code="URL_NOT_ALLOWED") from exc


def _template_error(exc, where: str) -> ValidationFailed:
    return ValidationFailed(
        f"{where}: {exc.message}",
        details={"location": where, "line": exc.line, "column": exc.column, "path": exc.path},
        code="TEMPLATE_SYNTAX_ERROR",
    )


def _validate_templates(endpoint: WebhookEndpoint) -> None:
    """Jinja2 syntax of inline templates and templated header values, and existence of named
    templates (and pinned versions), so a bad template is a 400 at save, not a failed delivery."""
    from templates_app import rendering
    from templates_app.models import PayloadTemplate, TemplateVersion

    for name, value in (endpoint.custom_headers or {}).items():
        if "{{" in value or "{%" in value:
            try:
                rendering.validate_template(value)
            except rendering.TemplateRenderError as exc:
                raise _template_error(exc, f"custom_headers.{name}") from exc
    spec = endpoint.transformation or {}
    specs = [("transformation", spec)] + [
        (f"transformation.event_templates.{event_type}", sub)
        for event_type, sub in (spec.get("event_templates") or {}).items()
    ]
    for where, item in specs:
        template, body = item.get("template"), item.get("body")
        if isinstance(template, str):
            named = PayloadTemplate.objects.filter(name=template).first()
            if named is None:
                raise ValidationFailed(f"{where}.template: no template named {template!r}.",
                                       details={"location": where, "template": template}, code="UNKNOWN_TEMPLATE")
            version = item.get("template_version")
            if version is not None and not TemplateVersion.objects.filter(template=named, number=version).exists():
                raise ValidationFailed(f"{where}.template_version: template {template!r} has no version {version}.",
                                       details={"location": where, "template": template, "version": version},
                                       code="UNKNOWN_TEMPLATE")
            continue
        for source in (template, body):
            if source is not None:
                try:
                    rendering.validate_template(source)
                except rendering.TemplateRenderError as exc:
                    raise _template_error(exc, where) from exc


@transaction.atomic
def create_endpoint(*, data: dict[str, Any]) -> WebhookEndpoint:
    """Create an endpoint from validated serializer ``data`` (model field names).

    A secret is generated (``whsec_…``) when the signature method needs one and none is given;
    the caller shows it once. The retry policy gets the seed's defaults for missing keys.
    """
    endpoint = WebhookEndpoint(**data)
    endpoint.retry_policy = normalize_retry_policy(endpoint.retry_policy)
    if endpoint.signature_method in SECRET_METHODS and not endpoint.secret:
        endpoint.secret = generate_secret()
    validate_endpoint(endpoint)
    endpoint.save()
    return endpoint


@transaction.atomic
def update_endpoint(*, endpoint: WebhookEndpoint, data: dict[str, Any]) -> WebhookEndpoint:
    """Apply ``data`` (full or partial) to ``endpoint``.

    Write-only secrets: a value equal to the masked form shown by the API (``whsec_***Ab9=``) or an
    empty string for ``secret`` leaves the stored secret unchanged.
    """
    endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
    for field, given in data.items():
        if field in WRITE_ONLY_SECRETS:
            current = getattr(endpoint, field)
            if given == mask(current) or (field == "secret" and given == ""):
                continue
        value = given
        if field == "retry_policy":
            value = normalize_retry_policy(given)
        if field == "custom_headers":
            value = _keep_masked_headers(new=given, current=endpoint.custom_headers or {})
        setattr(endpoint, field, value)
    if endpoint.signature_method in SECRET_METHODS and not endpoint.secret:
        endpoint.secret = generate_secret()
    validate_endpoint(endpoint)
    endpoint.save()
    return endpoint


def _keep_masked_headers(*, new: dict[str, str], current: dict[str, str]) -> dict[str, str]:
    """A custom header sent back in its masked form (as the API shows credential headers) keeps
    its stored value."""
    from endpoints.serializers import mask_custom_headers

    shown = mask_custom_headers(current)
    return {name: current[name] if name in current and value == shown.get(name) != current[name] else value
            for name, value in new.items()}


def set_status(*, endpoint: WebhookEndpoint, status: str, reason: str = "") -> WebhookEndpoint:
    """Set ``active``, ``paused`` or ``disabled`` (with an optional ``reason``).

    Paused and disabled endpoints keep their waiting deliveries; they go out within one sweep
    interval of the endpoint becoming active again.
    """
    if status not in WebhookEndpoint.Status.values:
        raise ValidationFailed(
            f"Unknown status {status!r}.",
            details={"fields": {"status": [f"Use one of {WebhookEndpoint.Status.values}."]}},
        )
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(status=status, status_reason=reason[:500])
    endpoint.refresh_from_db()
    return endpoint


def delete_endpoint(*, endpoint: WebhookEndpoint) -> None:
    """Delete an endpoint. Its deliveries and attempts stay as history (endpoint set to null);
    those not yet final are cancelled by the next sweep or attempt. Raises ``NotFound`` (404)
    when the endpoint no longer exists: another delete committed first.

    One transaction that first locks the endpoint's row (``FOR UPDATE``; PostgreSQL), then
    detaches its deliveries and deletes it. A publish routing to the endpoint meanwhile waits at
    its foreign-key check (``FOR KEY SHARE`` on that row) until the delete commits, then fails it
    and routes again without the endpoint (``events.services.publish``); a replay takes the same
    lock before it inserts and then finds the endpoint gone (``deliveries.services.replay``), or, when
    it locked first, the delete waits for it and detaches its new delivery too. Without the lock,
    a delivery committed between the detach and the delete failed the delete's own foreign-key
    check at commit: a 500, and the endpoint stayed (found by the README walk, 3 deletes in 6
    during a publish burst).

    The lock also finds a concurrent delete of the same endpoint: the one that waited gets no row
    once the first commits, and refuses instead of "deleting" it a second time (found in review:
    both answered 204 and the audit log said the endpoint was deleted twice)."""
    with transaction.atomic():
        if not list(WebhookEndpoint.objects.select_for_update().filter(pk=endpoint.pk).values_list("pk", flat=True)):
            raise NotFound(f"Endpoint {endpoint.pk} does not exist (it was deleted meanwhile).",
                           details={"endpoint_id": endpoint.pk})
        endpoint.delete()


@transaction.atomic
def rotate_secret(*, endpoint: WebhookEndpoint, new_secret: str | None = None,
                  overlap_seconds: int | None = None) -> WebhookEndpoint:
    """Issue a new signing secret (``new_secret`` or a generated ``whsec_…``) and keep the
    current one valid for ``overlap_seconds`` (default ``WEBHOOK_SECRET_ROTATION_OVERLAP_SECONDS``,
    24 h; at most 7 days — Svix's defaults): until then every delivery carries a signature from
    each (``endpoints.signing.signature_headers``). ``overlap_seconds=0`` drops the old secret at
    once. Raises ``ValidationFailed`` for a bad secret or overlap, or when the endpoint's
    signature method uses no secret. The caller shows the new secret once.
    """
    endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
    if endpoint.signature_method not in SECRET_METHODS:
        raise ValidationFailed(
            f"signature_method '{endpoint.signature_method}' uses no secret to rotate.",
            details={"signature_method": endpoint.signature_method}, code="NOTHING_TO_ROTATE",
        )
    overlap = settings.WEBHOOK_SECRET_ROTATION_OVERLAP_SECONDS if overlap_seconds is None else overlap_seconds
    if not 0 <= overlap <= 7 * 86400:
        raise ValidationFailed("overlap_seconds must be between 0 and 604800 (7 days).",
                               details={"fields": {"overlap_seconds": ["Between 0 and 604800."]}})
    old = endpoint.secret
    endpoint.secret = new_secret or generate_secret()
    if overlap and old:
        endpoint.previous_secret = old
        endpoint.previous_secret_expires_at = timezone.now() + timedelta(seconds=overlap)
    else:
        endpoint.previous_secret = ""
        endpoint.previous_secret_expires_at = None
    # Only the secret changes: a field saved before a later validation rule (a header value, a
    # retry code, an in-list) must not block rotating a leaked secret (validate_endpoints lists those).
    try:
        endpoint.clean_fields(exclude=[f.name for f in endpoint._meta.fields if f.name not in ROTATED_FIELDS])
        endpoint.clean()
    except ValidationError as exc:
        problems = {name: errors for name, errors in exc.message_dict.items() if name in ROTATED_FIELDS}
        if problems:
            raise ValidationFailed("The endpoint configuration is invalid.", details={"fields": problems}) from exc
    endpoint.save()
    return endpoint


ROTATED_FIELDS = ("secret", "previous_secret", "previous_secret_expires_at")


# --- health: circuit breaker, rate limit, auto-disable -------------------------------------------
def _circuit_config():
    from endpoints import health

    return health.CircuitConfig(
        failure_threshold=settings.WEBHOOK_CIRCUIT_FAILURE_THRESHOLD,
        cooldown_seconds=settings.WEBHOOK_CIRCUIT_COOLDOWN_SECONDS,
        max_cooldown_seconds=settings.WEBHOOK_CIRCUIT_MAX_COOLDOWN_SECONDS,
        probe_deadline_seconds=settings.WEBHOOK_MAX_TIMEOUT_SECONDS + settings.WEBHOOK_CLAIM_MARGIN_SECONDS,
    )


def _as_value(row):
    from endpoints import health

    return health.Health(
        circuit_state=row.circuit_state, consecutive_failures=row.consecutive_failures,
        reopen_count=row.reopen_count, next_probe_at=row.next_probe_at, failing_since=row.failing_since,
    )


def check_circuit(*, endpoint_id: int):
    """May an attempt go to this endpoint's primary URL now? Returns an ``endpoints.health.Gate``.

    Closed circuit: one indexed read, no write. Open circuit past its cool-down: the caller becomes
    the one half-open trial only if its conditional UPDATE wins (so exactly one trial is sent
    whatever the number of workers); everyone else waits until ``retry_at``.
    """
    from endpoints import health
    from endpoints.models import EndpointHealth

    now = timezone.now()
    row = EndpointHealth.objects.filter(pk=endpoint_id).first()
    if row is None:
        return health.Gate("send")
    verdict = health.gate(_as_value(row), now=now)
    if verdict.decision != "probe":
        return verdict
    probing = health.start_probe(_as_value(row), now=now, config=_circuit_config())
    won = EndpointHealth.objects.filter(
        pk=endpoint_id, circuit_state=row.circuit_state, next_probe_at=row.next_probe_at,
    ).update(circuit_state=probing.circuit_state, next_probe_at=probing.next_probe_at, updated_at=now)
    return verdict if won else _gate_after_lost_probe(endpoint_id=endpoint_id, now=now)


def _gate_after_lost_probe(*, endpoint_id: int, now: datetime):
    """The gate for a caller whose bid to send the trial lost to another worker's: as the health
    row stands now. Usually that is "wait until the trial's deadline", and it must be the deadline
    the winner stored, not one computed here: when the trial closes the circuit, the deliveries
    held until exactly that moment are released (``deliveries.services.health._release_held``);
    a later time of our own would leave ours waiting out the deadline (found in review)."""
    from endpoints import health
    from endpoints.models import EndpointHealth

    row = EndpointHealth.objects.filter(pk=endpoint_id).first()
    if row is None:
        return health.Gate("send")
    verdict = health.gate(_as_value(row), now=now)
    # "probe" again means the row moved on past another trial's deadline meanwhile: wait for it too.
    return verdict if verdict.decision != "probe" else health.Gate("wait", retry_at=row.next_probe_at)


@dataclass(frozen=True)
class HealthChange:
    """What one attempt did to an endpoint's health: ``opened``/``closed`` the circuit, and whether
    the endpoint was ``disabled`` (auto-disable or 410). ``held_until``, when the circuit closed:
    the moment until which the open circuit held deliveries back (its last ``next_probe_at``: the
    cool-down's end, or the trial's deadline while the trial was in flight)."""

    opened: bool = False
    closed: bool = False
    disabled: bool = False
    held_until: datetime | None = None


logger = logging.getLogger(__name__)

# A success on a healthy endpoint changes nothing of its circuit, so it is not written at every
# delivery (one more write per delivery, issue 7); its time is noted at most this often per
# endpoint and process, like an API key's last_used_at (``vocelio_webhooks.api``). Found in a
# walk: ``health.last_success_at`` stayed null on an endpoint that had only ever succeeded.
LAST_SUCCESS_GRANULARITY_SECONDS = 60
_successes_noted: dict[int, float] = {}  # endpoint id -> time.monotonic() of this process's last note
_successes_noted_lock = threading.Lock()


def note_successes(*, endpoint_ids: Iterable[int]) -> None:
    """Set ``EndpointHealth.last_success_at`` to now for ``endpoint_ids`` (ids of endpoints that
    just had a successful attempt at their primary URL and whose health it does not otherwise
    change), each at most once per ``LAST_SUCCESS_GRANULARITY_SECONDS`` in this process: one
    upsert of only that column for all of them, creating missing health rows, in id order. So
    the field lags a healthy endpoint's newest success by at most a minute. Never raises a
    database error (logged): the attempts it follows are stored already. An endpoint deleted
    meanwhile is skipped."""
    now_monotonic = time.monotonic()
    with _successes_noted_lock:
        due = sorted(endpoint_id for endpoint_id in set(endpoint_ids) if now_monotonic
                     - _successes_noted.get(endpoint_id, -math.inf) >= LAST_SUCCESS_GRANULARITY_SECONDS)
        for endpoint_id in due:
            _successes_noted[endpoint_id] = now_monotonic
    if not due:
        return
    from endpoints.models import EndpointHealth

    now = timezone.now()
    health_table = connection.ops.quote_name(EndpointHealth._meta.db_table)
    endpoint_table = connection.ops.quote_name(WebhookEndpoint._meta.db_table)
    # One statement (PostgreSQL and SQLite): a missing health row is created with the defaults of
    # a healthy endpoint, an existing one gets only this column; selecting from the endpoints
    # skips one deleted meanwhile. bulk_create(update_conflicts=True) cannot skip it, and a
    # SELECT first cost three more statements (with the transaction) on the batch engine's path.
    # A time is never moved back (a process that stalled between its send and this statement).
    sql = (f"INSERT INTO {health_table} (endpoint_id, circuit_state, consecutive_failures, reopen_count, "
           f"last_success_at, updated_at) SELECT id, %s, 0, 0, %s, %s FROM {endpoint_table} "
           f"WHERE id IN ({', '.join(['%s'] * len(due))}) ORDER BY id "
           f"ON CONFLICT (endpoint_id) DO UPDATE SET last_success_at = excluded.last_success_at "
           f"WHERE {health_table}.last_success_at IS NULL OR {health_table}.last_success_at < excluded.last_success_at")
    # Inside a caller's transaction, a savepoint: a failure here must not abort the caller's work.
    scope = transaction.atomic() if connection.in_atomic_block else contextlib.nullcontext()
    try:
        with scope, connection.cursor() as cursor:
            stamp = connection.ops.adapt_datetimefield_value(now)  # stored as the ORM stores it
            cursor.execute(sql, [EndpointHealth.CircuitState.CLOSED.value, stamp, stamp, *due])
    except (DatabaseError, IntegrityError):
        logger.warning("Noting the last success of endpoints %s failed", due, exc_info=True)
        with _successes_noted_lock:
            for endpoint_id in due:
                _successes_noted.pop(endpoint_id, None)


def record_health(*, endpoint_id: int, status_code: int | None, error_class: str,
                  on_disabled: Callable[[], None] | None = None) -> HealthChange:
    """Apply one attempt's outcome to the endpoint's shared health (row-locked), and disable the
    endpoint on ``410 Gone`` or after ``WEBHOOK_AUTO_DISABLE_AFTER_SECONDS`` of uninterrupted
    failure. A success on a healthy endpoint only notes its time (``note_successes``, at most once
    a minute). ``on_disabled`` is passed to
    ``disable_automatically`` (runs in the disable's transaction)."""
    from endpoints import health
    from endpoints.models import EndpointHealth

    now = timezone.now()
    if status_code == 410:
        disabled = disable_automatically(endpoint_id=endpoint_id, reason="The receiver answered 410 Gone.",
                                        on_disabled=on_disabled)
        return HealthChange(disabled=disabled)
    verdict = health.counts_for_health(status_code=status_code, error_class=error_class)
    if verdict is None:
        return HealthChange()
    if verdict and not EndpointHealth.objects.filter(pk=endpoint_id).exclude(
        circuit_state=EndpointHealth.CircuitState.CLOSED, consecutive_failures=0
    ).exists():
        note_successes(endpoint_ids=[endpoint_id])
        return HealthChange()
    with transaction.atomic():
        row, _ = EndpointHealth.objects.select_for_update().get_or_create(pk=endpoint_id)
        before = _as_value(row)
        after = health.record(before, success=verdict, now=now, config=_circuit_config())
        row.circuit_state, row.consecutive_failures, row.reopen_count = (
            after.circuit_state, after.consecutive_failures, after.reopen_count)
        row.next_probe_at, row.failing_since = after.next_probe_at, after.failing_since
        if verdict:
            row.last_success_at = now
        else:
            row.last_failure_at = now
        row.save()
    closed = before.circuit_state != health.CLOSED and after.circuit_state == health.CLOSED
    change = HealthChange(opened=before.circuit_state != health.OPEN and after.circuit_state == health.OPEN,
                          closed=closed, held_until=before.next_probe_at if closed else None)
    if not verdict and health.should_auto_disable(after, now=now,
                                                  disable_after_seconds=settings.WEBHOOK_AUTO_DISABLE_AFTER_SECONDS):
        since = after.failing_since.isoformat() if after.failing_since else ""
        disabled = disable_automatically(endpoint_id=endpoint_id, reason=f"Failing without a success since {since}.",
                                         on_disabled=on_disabled)
        return HealthChange(opened=change.opened, disabled=disabled)
    return change


# The event type of the disable and re-enable alerts (deliveries.services.health).
HEALTH_ALERT_EVENT_TYPE = "system.health_alert"


def lock_endpoints(*, endpoint_ids: Iterable[int]) -> dict[int, str]:
    """The status of each endpoint of ``endpoint_ids`` that still exists, keyed by id. On
    PostgreSQL their rows are locked ``FOR KEY SHARE``, in id order (two callers cannot deadlock
    on them), until the caller's transaction ends; call it inside ``transaction.atomic``.

    Why (``deliveries.services.replay``, where it was first needed): a replay's deliveries
    reference their endpoint, and a foreign key is checked only at commit. Without this lock, a
    replay racing ``delete_endpoint`` always lost at that check, with an ``IntegrityError`` (a 500)
    after its work was done (found in review). With it, whichever comes first wins: a delete
    already under way (``FOR UPDATE``) makes this wait and then leaves its endpoint out; else the
    delete waits for the replay to commit and detaches the replay's deliveries like the endpoint's
    others. ``KEY SHARE`` is the lock the foreign-key check takes anyway: it does not wait for
    plain status or health updates, publishes or other replays; ``FOR UPDATE`` readers of the
    endpoint (an API ``PUT``/``PATCH``, a secret rotation) wait for the replay's commit. SQLite has
    one writer at a time: a plain read is enough."""
    ids = sorted(set(endpoint_ids))
    if not ids:
        return {}
    if connection.vendor != "postgresql":
        return dict(WebhookEndpoint.objects.filter(pk__in=ids).values_list("pk", "status"))
    meta, quote = WebhookEndpoint._meta, connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {quote(meta.pk.column)}, {quote(meta.get_field('status').column)} FROM {quote(meta.db_table)} "
            f"WHERE {quote(meta.pk.column)} = ANY(%s) ORDER BY 1 FOR KEY SHARE", [ids])
        return dict(cursor.fetchall())


def _lock_health_alert_recipients() -> None:
    """Lock ``FOR KEY SHARE`` (``lock_endpoints``) every endpoint a ``system.health_alert`` is
    routed to now, in any environment: call first thing in a transaction that changes an
    endpoint's status and publishes that alert (``on_disabled`` / ``on_reenabled``).

    Why: the status ``UPDATE`` takes the routing-version row (its trigger, ``endpoints.routing``),
    and the alert's deliveries take ``KEY SHARE`` on their endpoints at commit (the foreign-key
    check). ``delete_endpoint`` and ``update_endpoint`` take the same two locks the other way
    round (their endpoint ``FOR UPDATE``, then the version row), so the two deadlocked, and
    PostgreSQL aborted one: a rolled-back disable, or a 500 for the person deleting (found in
    review). Taking the recipients' lock before the version row gives every such transaction one
    order. An endpoint subscribed after this snapshot is not locked; that leaves a window of one
    transaction for a subscription created and deleted meanwhile."""
    from endpoints import routing

    if connection.vendor != "postgresql":
        return  # SQLite: one writer at a time, no row locks
    config = routing.current()
    ids = {route.id for environment in config.endpoints
           for route in config.subscribed(environment=environment, event_type=HEALTH_ALERT_EVENT_TYPE)}
    lock_endpoints(endpoint_ids=ids)


def disable_automatically(*, endpoint_id: int, reason: str, on_disabled: Callable[[], None] | None = None) -> bool:
    """Disable an active or paused endpoint on the service's own initiative; the periodic probe
    may re-enable it. Returns True when this call changed the status.

    ``on_disabled``, when this call changed the status, runs inside the same transaction (the
    caller publishes its ``system.health_alert`` there, so the disable and its alert event commit
    together or not at all); whatever it raises rolls the disable back and propagates. The alert's
    recipients are locked first (``_lock_health_alert_recipients``)."""
    from endpoints.models import EndpointHealth

    now = timezone.now()
    with transaction.atomic():
        if on_disabled is not None:
            _lock_health_alert_recipients()
        changed = WebhookEndpoint.objects.filter(
            pk=endpoint_id, status__in=[WebhookEndpoint.Status.ACTIVE, WebhookEndpoint.Status.PAUSED]
        ).update(status=WebhookEndpoint.Status.DISABLED, status_reason=f"Automatically disabled: {reason}"[:500],
                 updated_at=now)
        if changed:
            EndpointHealth.objects.update_or_create(pk=endpoint_id, defaults={"auto_disabled_at": now})
            if on_disabled is not None:
                on_disabled()
    return bool(changed)


def reenable_automatically(*, endpoint_id: int, on_reenabled: Callable[[], None] | None = None) -> bool:
    """Re-enable an endpoint the service disabled (after a successful probe); clears its health.
    Endpoints disabled by a person are never re-enabled. Returns True when the status changed.
    ``on_reenabled`` runs as ``disable_automatically``'s ``on_disabled`` does: in the same
    transaction, only when the status changed."""
    from endpoints.models import EndpointHealth

    with transaction.atomic():
        if not EndpointHealth.objects.filter(pk=endpoint_id, auto_disabled_at__isnull=False).exists():
            return False
        if on_reenabled is not None:
            _lock_health_alert_recipients()
        changed = WebhookEndpoint.objects.filter(pk=endpoint_id, status=WebhookEndpoint.Status.DISABLED).update(
            status=WebhookEndpoint.Status.ACTIVE, status_reason="Re-enabled automatically: the probe succeeded.",
            updated_at=timezone.now())
        EndpointHealth.objects.filter(pk=endpoint_id).update(
            auto_disabled_at=None, circuit_state=EndpointHealth.CircuitState.CLOSED, consecutive_failures=0,
            reopen_count=0, next_probe_at=None, failing_since=None)
        if changed and on_reenabled is not None:
            on_reenabled()
    return bool(changed)


def take_rate_limit_slot(*, endpoint_id: int, limit_per_minute: int | None):
    """Take one send slot of ``rate_limit_per_minute`` in the current minute, atomically across
    workers (a conditional ``UPDATE … SET count = count + 1 WHERE count < limit``). Returns
    ``None`` when a slot was taken (or there is no limit), else the time the next minute starts."""
    from django.db import IntegrityError
    from django.db.models import F

    from endpoints.models import RateLimitWindow

    if not limit_per_minute:
        return None
    now = timezone.now()
    window = now.replace(second=0, microsecond=0)
    for _ in range(2):
        taken = RateLimitWindow.objects.filter(
            endpoint_id=endpoint_id, window_start=window, count__lt=limit_per_minute
        ).update(count=F("count") + 1)
        if taken:
            return None
        if RateLimitWindow.objects.filter(endpoint_id=endpoint_id, window_start=window).exists():
            return window + timedelta(minutes=1)
        try:
            with transaction.atomic():
                RateLimitWindow.objects.create(endpoint_id=endpoint_id, window_start=window, count=0)
        except IntegrityError:
            pass  # another worker created it; take the slot in the next loop
    return window + timedelta(minutes=1)
