"""django-filter classes for the deliveries API."""
import django_filters

from deliveries.models import Delivery


class DeliveryFilterSet(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=Delivery.Status.choices)
    event_type = django_filters.CharFilter(field_name="event__event_type__name")
    event_id = django_filters.CharFilter(field_name="event__event_id")
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Delivery
        fields = ["status", "endpoint", "event_type", "event_id", "created_after", "created_before"]
