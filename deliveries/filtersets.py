"""django-filter classes for the deliveries API."""
import django_filters

from deliveries.models import Delivery
from events.filtersets import EventTypePatternsFilter
from vocelio_webhooks.filtersets import StrictFilterSet


class DeliveryFilterSet(StrictFilterSet):
    """``GET /deliveries``. ``event_type`` takes the same comma-separated patterns as
    ``GET /events`` (``?event_type=lead.*,call.ended``), with the same validation."""

    status = django_filters.MultipleChoiceFilter(choices=Delivery.Status.choices)
    event_type = EventTypePatternsFilter(field_name="event__event_type__name")
    event_id = django_filters.CharFilter(field_name="event__event_id")
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Delivery
        fields = ["status", "endpoint", "event_type", "event_id", "created_after", "created_before", "is_replay"]


class DeadLetterFilterSet(StrictFilterSet):
    """``GET /deliveries/dead-letters``: ``endpoint``, ``event_type`` (comma-separated patterns
    as for ``GET /deliveries``, same validation), ``created_after``/``created_before`` and
    ``updated_after``/``updated_before`` (ISO-8601; ``*_after`` inclusive, ``*_before`` exclusive)."""

    event_type = EventTypePatternsFilter(field_name="event__event_type__name")
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")
    updated_after = django_filters.IsoDateTimeFilter(field_name="updated_at", lookup_expr="gte")
    updated_before = django_filters.IsoDateTimeFilter(field_name="updated_at", lookup_expr="lt")

    class Meta:
        model = Delivery
        fields = ["endpoint", "event_type", "created_after", "created_before", "updated_after", "updated_before"]
