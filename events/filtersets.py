"""django-filter classes for the events API."""
import re

import django_filters
from django import forms
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django_filters.constants import EMPTY_VALUES

from deliveries.services.selection import event_type_q
from events.models import Event
from vocelio_webhooks.filtersets import StrictFilterSet

MAX_EVENT_TYPE_PATTERNS = 100
EVENT_TYPE_PATTERN_RE = re.compile(r"^(\*|[a-z0-9_]+(\.[a-z0-9_]+)*(\.\*)?)\Z")


def validate_event_type_patterns(value: str) -> None:
    """Raise ``ValidationError`` (a 400 from the API) unless ``value`` is at most
    ``MAX_EVENT_TYPE_PATTERNS`` comma-separated patterns, each ``*``, a lowercase dotted name
    (event type names are lowercase) or such a name followed by ``.*``. The cap keeps the query's
    OR-tree bounded (SQLite refuses an expression deeper than 1,000)."""
    items = [item.strip() for item in value.split(",") if item.strip()]
    if len(items) > MAX_EVENT_TYPE_PATTERNS:
        raise ValidationError(f"At most {MAX_EVENT_TYPE_PATTERNS} event type patterns, got {len(items)}.")
    bad = [item for item in items if not EVENT_TYPE_PATTERN_RE.match(item)]
    if bad:
        # django-filter %-formats the message with params: the user's text must go in params.
        raise ValidationError("Not an event type pattern: %(item)r. Use e.g. 'lead.created', 'lead.*' or '*'.",
                              params={"item": bad[0][:100]})


def validate_event_type_selection(value: str) -> None:
    """``validate_event_type_patterns``, and at least one pattern: for what acts on deliveries
    (bulk retry and discard, replays), where ``","`` reading as "everything" would act on all of
    them; ``*`` says so on purpose. Raises ``ValidationError``."""
    validate_event_type_patterns(value)
    if not any(item.strip() for item in value.split(",")):
        raise ValidationError("Give at least one event type pattern; '*' selects every type.")


class _PatternListInput(forms.TextInput):
    """Reads every ``?event_type=`` of the query string, joined by commas: a repeated parameter
    selects any of its values, as a repeated ``?status=`` does (a plain ``CharFilter`` keeps only
    the last one, so ``?event_type=a&event_type=b`` silently meant ``b``)."""

    def value_from_datadict(self, data, files, name):
        if hasattr(data, "getlist"):
            values = data.getlist(name)
            return ",".join(values) if values else None
        return super().value_from_datadict(data, files, name)


class EventTypePatternsFilter(django_filters.CharFilter):
    """An ``event_type`` query parameter: comma-separated patterns (``lead.*,call.ended``; ``*``
    for all), repeatable (``?event_type=lead.*&event_type=call.ended`` is the same list), checked
    by ``validate_event_type_patterns`` (400 ``VALIDATION_ERROR`` otherwise). ``field_name`` is
    the path to the event type's name, e.g. ``event__event_type__name``. An empty value filters
    nothing."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("validators", [validate_event_type_patterns])
        kwargs.setdefault("widget", _PatternListInput)
        super().__init__(*args, **kwargs)

    def filter(self, qs: QuerySet, value: str) -> QuerySet:
        if value in EMPTY_VALUES:
            return qs
        return qs.filter(event_type_q(value, self.field_name))


class EventFilterSet(StrictFilterSet):
    """``event_type`` takes patterns (``?event_type=lead.*,call.ended``), as subscriptions do."""

    event_type = EventTypePatternsFilter(field_name="event_type__name")
    received_after = django_filters.IsoDateTimeFilter(field_name="received_at", lookup_expr="gte")
    received_before = django_filters.IsoDateTimeFilter(field_name="received_at", lookup_expr="lt")

    class Meta:
        model = Event
        fields = ["event_type", "environment", "received_after", "received_before"]
