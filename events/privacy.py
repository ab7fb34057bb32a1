"""Data-subject requests (GDPR articles 15 and 17, CCPA "right to know" and "right to delete"):
find, export and erase one person's data in stored events and delivery attempts.

A person is identified by an email address and/or a phone number:

* an email matches wherever it appears in a string, case-insensitively (``%40`` for ``@`` too);
* a phone number matches by its digits only, so ``+1-555-0123``, ``+1 (555) 0123`` and
  ``15550123`` are one number; a number written without its country code also matches when the
  shorter one has at least 7 digits and ends the longer one (``555-0123`` ↔ ``+1-555-0123``).

Erasure replaces each matching string (or number) with ``"[redacted]"`` in ``Event.data`` and
``Event.metadata`` at any depth, and in the same object also redacts the personal-data fields
listed in ``WEBHOOK_LOG_MASK_FIELDS`` (so the lead's ``name`` goes with its email). In attempts,
JSON bodies and headers are redacted the same way; a body that is not JSON (a text template, a
body cut at the store limit) is replaced whole. ``url`` and ``error_message`` are replaced whole
when they match. Redacted request bodies no longer match their stored SHA-256, and a delivery
still waiting is sent with the redacted data.

Tables are read in primary-key order in chunks (``.iterator(chunk_size=...)``) and written in
batches of the same size, one transaction per batch.
"""
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet

from deliveries.models import Delivery, DeliveryAttempt
from events.models import Event
from vocelio_webhooks.errors import ValidationFailed
from vocelio_webhooks.logs import EMAIL_RE

REDACTED = "[redacted]"
EVENT_JSON_FIELDS = ("data", "metadata")
ATTEMPT_JSON_FIELDS = ("request_headers", "response_headers")
ATTEMPT_BODY_FIELDS = ("request_body", "response_body")
ATTEMPT_WHOLE_FIELDS = ("url", "error_message")
MIN_PHONE_DIGITS = 7

_DIGIT_SEPARATORS_RE = re.compile(r"(?<=\d)[\s().\-/]{1,3}(?=\d)")
_DIGIT_RUN_RE = re.compile(r"\d+")

# A progress wrapper: (iterable, total, label) -> the same items (a tqdm bar in the commands).
Progress = Callable[[Iterable, int, str], Iterable]


def _no_progress(items: Iterable, total: int, label: str) -> Iterable:
    return items


@dataclass(frozen=True)
class Subject:
    """Who to look for: a lowercased email and/or the digits of a phone number."""

    email: str | None
    phone_digits: str | None

    def _phone_matches(self, digits: str) -> bool:
        if digits == self.phone_digits:
            return True
        shorter, longer = sorted((digits, self.phone_digits), key=len)
        return len(shorter) >= MIN_PHONE_DIGITS and longer.endswith(shorter)

    def matches_text(self, text: str) -> bool:
        """True when ``text`` contains the email or the phone number."""
        if self.email and ("@" in text or "%40" in text):
            for found in EMAIL_RE.finditer(text):
                if found.group(0).replace("%40", "@").lower() == self.email:
                    return True
        if self.phone_digits:
            joined = _DIGIT_SEPARATORS_RE.sub("", text)
            return any(self._phone_matches(run) for run in _DIGIT_RUN_RE.findall(joined))
        return False

    def matches_leaf(self, value: Any) -> bool:
        """True for a string that mentions the subject, or a number that is their phone."""
        if isinstance(value, str):
            return self.matches_text(value)
        if self.phone_digits and isinstance(value, int) and not isinstance(value, bool):
            return self._phone_matches(str(abs(value)))
        return False


def subject(*, email: str | None = None, phone: str | None = None) -> Subject:
    """Validate and normalise a data subject. Raises ``ValidationFailed`` (400) when neither is
    given, the email is not an address, or the phone has fewer than 7 or more than 15 digits
    (a shorter number would match unrelated values)."""
    email = (email or "").strip() or None
    phone = (phone or "").strip() or None
    if not email and not phone:
        raise ValidationFailed("Give an email, a phone number, or both.", code="VALIDATION_ERROR",
                               details={"fields": {"email": ["Give an email, a phone number, or both."]}})
    # The details name the field only: an error body (or a log of it) must not repeat the data.
    if email and ("@" not in email or not EMAIL_RE.fullmatch(email)):
        raise ValidationFailed("email is not an email address.", code="VALIDATION_ERROR",
                               details={"fields": {"email": ["Not an email address."]}})
    digits = re.sub(r"\D", "", phone) if phone else None
    if phone and not MIN_PHONE_DIGITS <= len(digits) <= 15:
        raise ValidationFailed(
            f"phone must have {MIN_PHONE_DIGITS} to 15 digits (E.164).", code="VALIDATION_ERROR",
            details={"fields": {"phone": [f"{MIN_PHONE_DIGITS} to 15 digits (E.164)."]}}
        )
    return Subject(email=email.lower() if email else None, phone_digits=digits)


def _redact_json(value: Any, who: Subject, fields: frozenset[str]) -> tuple[Any, int]:
    """Return ``(redacted copy, number of values replaced)``."""
    if isinstance(value, dict):
        result, count, leaf_matched = {}, 0, False
        for key, item in value.items():
            if isinstance(item, (dict, list)):
                result[key], found = _redact_json(item, who, fields)
            elif who.matches_leaf(item):
                result[key], found, leaf_matched = REDACTED, 1, True
            else:
                result[key], found = item, 0
            count += found
        if leaf_matched:
            for key, item in result.items():
                if (str(key).lower() in fields and item not in (None, "", REDACTED)
                        and not isinstance(item, (dict, list))):
                    result[key] = REDACTED
                    count += 1
        return result, count
    if isinstance(value, list):
        result, count = [], 0
        for item in value:
            redacted, found = _redact_json(item, who, fields)
            result.append(redacted)
            count += found
        return result, count
    if who.matches_leaf(value):
        return REDACTED, 1
    return value, 0


def _redact_body(text: str, who: Subject, fields: frozenset[str]) -> tuple[str, int]:
    if not text or not who.matches_text(text):
        return text, 0
    try:
        parsed = json.loads(text)
    except ValueError:
        return REDACTED, 1
    if isinstance(parsed, (dict, list)):
        redacted, count = _redact_json(parsed, who, fields)
        encoded = json.dumps(redacted, separators=(",", ":"), ensure_ascii=False)
        if count and not who.matches_text(encoded):
            return encoded, count
    return REDACTED, 1


def _redact_event(event: Event, who: Subject, fields: frozenset[str]) -> dict[str, Any]:
    """The changed fields of ``event`` with their redacted values, and ``"_count"``."""
    changes: dict[str, Any] = {"_count": 0}
    for name in EVENT_JSON_FIELDS:
        redacted, count = _redact_json(getattr(event, name), who, fields)
        if count:
            changes[name] = redacted
            changes["_count"] += count
    return changes


def _redact_attempt(attempt: DeliveryAttempt, who: Subject, fields: frozenset[str]) -> dict[str, Any]:
    changes: dict[str, Any] = {"_count": 0}
    for name in ATTEMPT_JSON_FIELDS:
        redacted, count = _redact_json(getattr(attempt, name), who, fields)
        if count:
            changes[name], changes["_count"] = redacted, changes["_count"] + count
    for name in ATTEMPT_BODY_FIELDS:
        redacted, count = _redact_body(getattr(attempt, name), who, fields)
        if count:
            changes[name], changes["_count"] = redacted, changes["_count"] + count
    for name in ATTEMPT_WHOLE_FIELDS:
        if who.matches_text(getattr(attempt, name) or ""):
            changes[name], changes["_count"] = REDACTED, changes["_count"] + 1
    return changes


def _scan(queryset: QuerySet, fields: tuple[str, ...], chunk_size: int, progress: Progress, label: str) -> Iterator:
    rows = queryset.only("pk", *fields).order_by("pk")
    return iter(progress(rows.iterator(chunk_size=chunk_size), rows.count(), label))


@dataclass
class TableReport:
    """Per table: rows read, rows that mention the subject, values replaced (or to be replaced)."""

    scanned: int = 0
    matched: int = 0
    values_redacted: int = 0
    ids: list = field(default_factory=list)


@dataclass
class ErasureReport:
    """What ``erase_subject`` changed (or, with ``dry_run``, would change)."""

    dry_run: bool
    events: TableReport
    attempts: TableReport

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"dry_run", "events": {"scanned", "matched", "values_redacted",
        "event_ids"}, "attempts": {"scanned", "matched", "values_redacted", "attempt_ids"}}``."""
        def table(report: TableReport, ids_key: str) -> dict[str, Any]:
            return {"scanned": report.scanned, "matched": report.matched,
                    "values_redacted": report.values_redacted, ids_key: report.ids}

        return {"dry_run": self.dry_run, "events": table(self.events, "event_ids"),
                "attempts": table(self.attempts, "attempt_ids")}


def _write(model, changes: dict[int, dict[str, Any]], batch_size: int) -> None:
    pks = sorted(changes)
    for start in range(0, len(pks), batch_size):
        batch = pks[start:start + batch_size]
        rows = list(model.objects.filter(pk__in=batch))
        names: set[str] = set()
        for row in rows:
            for name, value in changes[row.pk].items():
                setattr(row, name, value)
                names.add(name)
        with transaction.atomic():
            model.objects.bulk_update(rows, sorted(names), batch_size=batch_size)


def erase_subject(
    *,
    email: str | None = None,
    phone: str | None = None,
    dry_run: bool = False,
    chunk_size: int = 1000,
    progress: Progress | None = None,
    before_write: Callable[[ErasureReport], None] | None = None,
) -> ErasureReport:
    """Redact one person's email/phone (and personal fields beside them) in every stored event
    and attempt. Inputs as ``subject``; ``dry_run`` reports without writing; ``progress`` wraps
    each table scan (a progress bar); ``before_write`` is called with the finished report once the
    scans are done and before the first write (not for a dry run): the command's audit entry, so
    an erasure stopped part-way (Ctrl-C, a database error; its batches commit one by one) is on
    record all the same, and running it again finishes it. Returns an ``ErasureReport`` (event ids
    are the public ``event_id``s). Raises ``ValidationFailed`` for a bad subject.
    """
    who = subject(email=email, phone=phone)
    progress = progress or _no_progress
    fields = frozenset(f.lower() for f in settings.WEBHOOK_LOG_MASK_FIELDS)
    report = ErasureReport(dry_run=dry_run, events=TableReport(), attempts=TableReport())

    event_changes: dict[int, dict[str, Any]] = {}
    for event in _scan(Event.objects.all(), ("event_id", *EVENT_JSON_FIELDS), chunk_size, progress, "events"):
        report.events.scanned += 1
        changes = _redact_event(event, who, fields)
        count = changes.pop("_count")
        if count:
            event_changes[event.pk] = changes
            report.events.ids.append(event.event_id)
            report.events.values_redacted += count
    report.events.matched = len(event_changes)

    attempt_changes: dict[int, dict[str, Any]] = {}
    scanned_fields = ATTEMPT_JSON_FIELDS + ATTEMPT_BODY_FIELDS + ATTEMPT_WHOLE_FIELDS
    for attempt in _scan(DeliveryAttempt.objects.all(), scanned_fields, chunk_size, progress, "attempts"):
        report.attempts.scanned += 1
        changes = _redact_attempt(attempt, who, fields)
        count = changes.pop("_count")
        if count:
            attempt_changes[attempt.pk] = changes
            report.attempts.ids.append(attempt.pk)
            report.attempts.values_redacted += count
    report.attempts.matched = len(attempt_changes)

    if not dry_run:
        if before_write is not None:
            before_write(report)
        _write(Event, event_changes, chunk_size)
        _write(DeliveryAttempt, attempt_changes, chunk_size)
    return report


def _iso(value) -> str | None:
    return value.isoformat() if value else None


def export_subject(
    *,
    email: str | None = None,
    phone: str | None = None,
    chunk_size: int = 1000,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Everything stored that mentions one person (GDPR article 15 / CCPA "right to know").

    Returns a JSON-ready dict: ``subject`` (as given), ``events`` (each with its ``data``,
    ``metadata`` and the ``deliveries`` made of it), ``attempts`` (every attempt whose URL,
    headers, bodies or error mention the subject, in full) and ``counts``. Nothing is written.
    Raises ``ValidationFailed`` for a bad subject.
    """
    who = subject(email=email, phone=phone)
    progress = progress or _no_progress

    event_pks = [
        event.pk
        for event in _scan(Event.objects.all(), EVENT_JSON_FIELDS, chunk_size, progress, "events")
        if any(_redact_json(getattr(event, name), who, frozenset())[1] for name in EVENT_JSON_FIELDS)
    ]
    scanned_fields = ATTEMPT_JSON_FIELDS + ATTEMPT_BODY_FIELDS + ATTEMPT_WHOLE_FIELDS
    attempt_pks = [
        attempt.pk
        for attempt in _scan(DeliveryAttempt.objects.all(), scanned_fields, chunk_size, progress, "attempts")
        if _redact_attempt(attempt, who, frozenset())["_count"]
    ]

    deliveries_by_event: dict[int, list[dict[str, Any]]] = {}
    for delivery in Delivery.objects.filter(event_id__in=event_pks).order_by("pk"):
        deliveries_by_event.setdefault(delivery.event_id, []).append({
            "id": delivery.pk, "endpoint_id": delivery.endpoint_id, "status": delivery.status,
            "attempt_count": delivery.attempt_count, "created_at": _iso(delivery.created_at),
            "completed_at": _iso(delivery.completed_at),
        })
    events = [
        {
            "event_id": event.event_id, "event_type": event.event_type.name, "environment": event.environment,
            "timestamp": _iso(event.timestamp), "received_at": _iso(event.received_at),
            "data": event.data, "metadata": event.metadata, "deliveries": deliveries_by_event.get(event.pk, []),
        }
        for event in Event.objects.filter(pk__in=event_pks).select_related("event_type").order_by("pk")
    ]
    attempt_rows = DeliveryAttempt.objects.filter(pk__in=attempt_pks).select_related("delivery__event").order_by("pk")
    attempts = [
        {
            "id": attempt.pk, "delivery_id": attempt.delivery_id, "event_id": attempt.delivery.event.event_id,
            "attempt_number": attempt.attempt_number, "url": attempt.url, "http_method": attempt.http_method,
            "request_headers": attempt.request_headers, "request_body": attempt.request_body,
            "response_status_code": attempt.response_status_code, "response_headers": attempt.response_headers,
            "response_body": attempt.response_body, "error_class": attempt.error_class,
            "error_message": attempt.error_message, "outcome": attempt.outcome,
            "started_at": _iso(attempt.started_at), "created_at": _iso(attempt.created_at),
        }
        for attempt in attempt_rows
    ]
    return {
        "subject": {"email": email or None, "phone": phone or None},
        "events": events,
        "attempts": attempts,
        "counts": {"events": len(events), "attempts": len(attempts)},
    }
