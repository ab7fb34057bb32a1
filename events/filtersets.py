"""django-filter classes for the events API."""
import django_filters
from django.db.models import Q, QuerySet

from events.models import Event


def event_type_q(patterns: str) -> Q:
    """A ``Q`` on ``event_type__name`` for a comma-separated list of event-type patterns, with the
    meaning endpoint subscriptions give them (``endpoints.filters.event_type_matches``): an exact
    type (``lead.created``), a prefix wildcard (``lead.*``: every type starting with ``lead.``) or
    ``*`` (everything). Blank items are ignored; a list of blanks matches everything."""
    query = Q()
    for pattern in filter(None, (item.strip() for item in patterns.split(","))):
        if pattern == "*":
            return Q()
        if pattern.endswith(".*"):
            query |= Q(event_type__name__startswith=pattern[:-1])
        else:
            query |= Q(event_type__name=pattern)
    return query


class EventFilterSet(django_filters.FilterSet):
    """``event_type`` takes patterns (``?event_type=lead.*,call.ended``), as subscriptions do."""

    event_type = django_filters.CharFilter(method="filter_event_type")
    received_after = django_filters.IsoDateTimeFilter(field_name="received_at", lookup_expr="gte")
    received_before = django_filters.IsoDateTimeFilter(field_name="received_at", lookup_expr="lt")

    class Meta:
        model = Event
        fields = ["event_type", "environment", "received_after", "received_before"]

    def filter_event_type(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(event_type_q(value))
