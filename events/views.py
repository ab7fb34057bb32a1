"""Event API: publish, list and read events, list event types."""
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.response import Response
from rest_framework.views import APIView

from events import services as event_services
from events.filtersets import EventFilterSet
from events.models import Event, EventType
from events.serializers import EventSerializer, EventTypeSerializer, PublishInputSerializer, PublishOutputSerializer
from vocelio_webhooks.permissions import HasScope, PublishEnvironmentAllowed


class PublishView(APIView):
    """``POST /events/publish``: 202 with the new event and its deliveries; 200 with the first
    publication's when the ``event_id`` was published before (nothing new is created)."""

    permission_classes = [HasScope, PublishEnvironmentAllowed]
    required_scopes = ["events:publish"]

    @extend_schema(request=PublishInputSerializer,
                   responses={202: PublishOutputSerializer, 200: PublishOutputSerializer})
    def post(self, request):
        serializer = PublishInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        result = event_services.publish(**serializer.validated_data)
        body = {
            "event_id": result.event.event_id,
            "event_type": result.event.event_type.name,
            "environment": result.event.environment,
            "duplicate": not result.created,
            "matched_endpoints": result.matched_endpoints,
            "filtered_out": result.filtered_out,
            "deliveries": [{"id": d.pk, "endpoint_id": d.endpoint_id, "status": d.status} for d in result.deliveries],
        }
        return Response(body, status=status.HTTP_202_ACCEPTED if result.created else status.HTTP_200_OK)


class EventViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """``GET /events`` (filters: event_type, environment, received_after, received_before) and
    ``GET /events/{event_id}``."""

    queryset = Event.objects.select_related("event_type")
    serializer_class = EventSerializer
    filterset_class = EventFilterSet
    required_scopes = ["deliveries:retry"]
    lookup_field = "event_id"
    lookup_value_regex = r"[A-Za-z0-9_.:\-]+"


class EventTypeViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                       viewsets.GenericViewSet):
    """``GET /event-types`` (filter: category), ``GET /event-types/{name}``, and
    ``POST /event-types`` to add a custom type before publishing it."""

    queryset = EventType.objects.all()
    serializer_class = EventTypeSerializer
    filterset_fields = ["category"]
    lookup_field = "name"
    lookup_value_regex = r"[a-z0-9_.]+"
    pagination_class = None
    required_scopes = ["events:publish"]

    def perform_create(self, serializer):
        serializer.instance = event_services.create_event_type(data=serializer.validated_data, request=self.request)
