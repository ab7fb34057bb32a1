"""django-filter classes for the deliveries API."""
import django_filters
from django.db.models import QuerySet

from deliveries.models import Delivery
from deliveries.services.replay import event_type_q
from events.filtersets import validate_event_type_patterns


class DeliveryFilterSet(django_filters.FilterSet):
    """``GET /deliveries``. ``event_type`` takes the same comma-separated patterns as
    ``GET /events`` (``?event_type=lead.*,call.ended``), with the same validation."""

    status = django_filters.MultipleChoiceFilter(choices=Delivery.Status.choices)
    event_type = django_filters.CharFilter(method="filter_event_type", validators=[validate_event_type_patterns])
    event_id = django_filters.CharFilter(field_name="event__event_id")
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Delivery
        fields = ["status", "endpoint", "event_type", "event_id", "created_after", "created_before", "is_replay"]

    def filter_event_type(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(event_type_q(value, "event__event_type__name"))


class DeadLetterFilterSet(django_filters.FilterSet):
    """``GET /deliveries/dead-letters``: ``endpoint``, ``event_type`` (comma-separated patterns
    as for ``GET /deliveries``, same validation), ``created_after``/``created_before`` and ``updated_after``/``updated_before``
    (ISO-8601; ``*_after`` inclusive, ``*_before`` exclusive)."""

    event_type = django_filters.CharFilter(method="filter_event_type", validators=[validate_event_type_patterns])
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")
    updated_after = django_filters.IsoDateTimeFilter(field_name="updated_at", lookup_expr="gte")
    updated_before = django_filters.IsoDateTimeFilter(field_name="updated_at", lookup_expr="lt")

    class Meta:
        model = Delivery
        fields = ["endpoint", "event_type", "created_after", "created_before", "updated_after", "updated_before"]

    def filter_event_type(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(event_type_q(value, "event__event_type__name"))
