"""django-filter classes for the events API."""
import re

import django_filters
from django.core.exceptions import ValidationError
from django.db.models import QuerySet

from deliveries.services.replay import event_type_q
from events.models import Event

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


class EventFilterSet(django_filters.FilterSet):
    """``event_type`` takes patterns (``?event_type=lead.*,call.ended``), as subscriptions do."""

    event_type = django_filters.CharFilter(method="filter_event_type", validators=[validate_event_type_patterns])
    received_after = django_filters.IsoDateTimeFilter(field_name="received_at", lookup_expr="gte")
    received_before = django_filters.IsoDateTimeFilter(field_name="received_at", lookup_expr="lt")

    class Meta:
        model = Event
        fields = ["event_type", "environment", "received_after", "received_before"]

    def filter_event_type(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(event_type_q(value, "event_type__name"))
