"""Endpoint API (the seed's "Webhook Endpoint Management" routes). Test sends live in
``deliveries.views`` because they use the delivery path (dependencies point one way)."""
from drf_spectacular.utils import extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from endpoints import services as endpoint_services
from endpoints.filtersets import EndpointFilterSet
from endpoints.models import WebhookEndpoint
from endpoints.serializers import EndpointSerializer, EndpointStatusSerializer


class EndpointViewSet(viewsets.ModelViewSet):
    """``GET/POST /endpoints``, ``GET/PUT/PATCH/DELETE /endpoints/{id}``, ``PUT /endpoints/{id}/status``.

    The create response is the only one that shows the secret in full.
    """

    queryset = WebhookEndpoint.objects.all()
    serializer_class = EndpointSerializer
    filterset_class = EndpointFilterSet

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        endpoint = endpoint_services.create_endpoint(data=serializer.validated_data)
        body = EndpointSerializer(endpoint, context={"reveal_secret": True}).data
        return Response(body, status=status.HTTP_201_CREATED)

    def perform_update(self, serializer):
        serializer.instance = endpoint_services.update_endpoint(
            endpoint=serializer.instance, data=serializer.validated_data
        )

    def perform_destroy(self, instance):
        endpoint_services.delete_endpoint(endpoint=instance)

    @extend_schema(request=EndpointStatusSerializer, responses=EndpointSerializer)
    @action(detail=True, methods=["put"], url_path="status")
    def set_status(self, request, pk=None):
        serializer = EndpointStatusSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        endpoint = endpoint_services.set_status(
            endpoint=self.get_object(), status=serializer.validated_data["status"],
            reason=serializer.validated_data["reason"],
        )
        return Response(EndpointSerializer(endpoint).data)
