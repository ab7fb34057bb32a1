"""django-filter classes for the endpoints API."""
import django_filters

from endpoints.models import WebhookEndpoint
from vocelio_webhooks.filtersets import StrictFilterSet


class EndpointFilterSet(StrictFilterSet):
    name = django_filters.CharFilter(lookup_expr="icontains")
    url = django_filters.CharFilter(lookup_expr="icontains")
    event_type = django_filters.CharFilter(method="filter_event_type", label="Subscribed to this event type")

    class Meta:
        model = WebhookEndpoint
        fields = ["status", "environment", "signature_method", "http_method", "name", "url", "event_type"]

    def filter_event_type(self, queryset, name, value):
        from endpoints.filters import event_type_matches

        ids = [e.pk for e in queryset.select_related(None).only("id", "events") if event_type_matches(e.events, value)]
        return queryset.filter(pk__in=ids)
