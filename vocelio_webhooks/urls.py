"""Root URLs: the REST API at the seed's paths (no ``/api`` prefix, as the seed lists them),
OpenAPI schema and Swagger UI at ``/docs``, the admin at ``/admin/``, liveness at ``/health``."""
from django.contrib import admin
from django.urls import include, path, register_converter
from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.routers import SimpleRouter
from rest_framework.views import APIView

from deliveries.views import (
    BulkDiscardView,
    BulkRetryView,
    DeadLetterListView,
    DeliveryDiscardView,
    DeliveryIdConverter,
    DeliveryRetryView,
    DeliveryViewSet,
    EndpointReplayView,
    EndpointTestView,
    EventReplayView,
    UnsavedEndpointTestView,
)
from endpoints.views import EndpointViewSet
from events.privacy_views import EraseSubjectView
from events.views import EventTypeViewSet, EventViewSet, PublishView
from vocelio_webhooks.monitoring_views import MetricsView, ReadinessView
from vocelio_webhooks.views import AuditLogViewSet

register_converter(DeliveryIdConverter, "delivery_id")
router = SimpleRouter(trailing_slash=False)
router.register("endpoints", EndpointViewSet, basename="endpoint")
router.register("deliveries", DeliveryViewSet, basename="delivery")
router.register("events", EventViewSet, basename="event")
router.register("event-types", EventTypeViewSet, basename="event-type")
router.register("audit-log", AuditLogViewSet, basename="audit-log")


class HealthView(APIView):
    """``GET /health``: liveness, no authentication (load balancers and orchestrators call it)."""

    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(responses={200: dict})
    def get(self, request):
        return Response({"status": "ok"})


urlpatterns = [
    path("admin/", admin.site.urls),
    path("health", HealthView.as_view(), name="health"),
    path("health/ready", ReadinessView.as_view(), name="health-ready"),
    path("metrics", MetricsView.as_view(), name="metrics"),
    path("schema", SpectacularAPIView.as_view(), name="schema"),
    path("docs", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("events/publish", PublishView.as_view(), name="event-publish"),
    path("privacy/erase", EraseSubjectView.as_view(), name="privacy-erase"),
    path("endpoints/test", UnsavedEndpointTestView.as_view(), name="endpoint-test-unsaved"),
    path("endpoints/<int:pk>/test", EndpointTestView.as_view(), name="endpoint-test"),
    path("deliveries/retry/<delivery_id:pk>", DeliveryRetryView.as_view(), name="delivery-retry"),
    path("deliveries/retry", BulkRetryView.as_view(), name="delivery-bulk-retry"),
    path("deliveries/dead-letters", DeadLetterListView.as_view(), name="delivery-dead-letters"),
    path("deliveries/discard", BulkDiscardView.as_view(), name="delivery-bulk-discard"),
    path("deliveries/<delivery_id:pk>/discard", DeliveryDiscardView.as_view(), name="delivery-discard"),
    path("events/<str:event_id>/replay", EventReplayView.as_view(), name="event-replay"),
    path("endpoints/<int:pk>/replay", EndpointReplayView.as_view(), name="endpoint-replay"),
    path("", include("templates_app.urls")),
    path("", include("analytics.urls")),
    path("", include(router.urls)),
]

handler400 = "vocelio_webhooks.api.json_400"
handler403 = "vocelio_webhooks.api.json_403"
handler404 = "vocelio_webhooks.api.json_404"
handler500 = "vocelio_webhooks.api.json_500"
