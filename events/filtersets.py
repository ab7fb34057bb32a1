"""django-filter classes for the events API."""
import django_filters

from events.models import Event


class EventFilterSet(django_filters.FilterSet):
    event_type = django_filters.CharFilter(field_name="event_type__name")
    received_after = django_filters.IsoDateTimeFilter(field_name="received_at", lookup_expr="gte")
    received_before = django_filters.IsoDateTimeFilter(field_name="received_at", lookup_expr="lt")

    class Meta:
        model = Event
        fields = ["event_type", "environment", "received_after", "received_before"]
