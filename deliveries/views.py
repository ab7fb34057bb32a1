"""Delivery API (the seed's "Webhook Delivery Management" routes) and endpoint test sends."""
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.response import Response
from rest_framework.views import APIView

from deliveries import services as delivery_services
from deliveries.filtersets import DeliveryFilterSet
from deliveries.models import Delivery
from deliveries.serializers import (
    DeliveryDetailSerializer, DeliverySerializer, TestSendInputSerializer, TestSendResultSerializer,
    UnsavedEndpointTestSerializer,
)
from endpoints.models import WebhookEndpoint
from endpoints.services import SECRET_METHODS, validate_endpoint
from events.models import EventType
from vocelio_webhooks.errors import ValidationFailed


class DeliveryViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """``GET /deliveries`` (filters: status (repeatable), endpoint, event_type, event_id,
    created_after, created_before) and ``GET /deliveries/{id}`` with every attempt."""

    queryset = Delivery.objects.select_related("event__event_type")
    filterset_class = DeliveryFilterSet

    def get_serializer_class(self):
        return DeliveryDetailSerializer if self.action == "retrieve" else DeliverySerializer

    def get_queryset(self):
        queryset = super().get_queryset()
        return queryset.prefetch_related("attempts") if self.action == "retrieve" else queryset


class DeliveryRetryView(APIView):
    """``POST /deliveries/retry/{id}``: 202 and the delivery, queued for an attempt now;
    409 if it already succeeded or is in flight."""

    @extend_schema(request=None, responses={202: DeliverySerializer})
    def post(self, request, pk: int):
        delivery = get_object_or_404(Delivery, pk=pk)
        delivery = delivery_services.retry_now(delivery=delivery)
        return Response(DeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)


def _event_type_for(name: str | None, endpoint: WebhookEndpoint) -> EventType:
    if name is None:
        exact = [p for p in (endpoint.events or []) if "*" not in p]
        name = exact[0] if exact else "lead.created"
    event_type = EventType.objects.filter(name=name).first()
    if event_type is None:
        raise ValidationFailed(f"Unknown event type {name!r}.", details={"event_type": name}, code="UNKNOWN_EVENT_TYPE")
    return event_type


def _test_response(outcome) -> Response:
    result, req = outcome.result, outcome.request
    body = {
        "success": outcome.success,
        "event_id": outcome.event_id,
        "status_code": result.status_code,
        "duration_ms": result.duration_ms,
        "error_class": result.error_class,
        "error_message": result.error_message,
        "response_headers": result.headers,
        "response_body": result.body,
        "request": {
            "method": req.method, "url": req.url, "headers": req.headers,
            "body": (req.body or b"").decode("utf-8", errors="replace"),
        },
    }
    return Response(body)


class EndpointTestView(APIView):
    """``POST /endpoints/{id}/test``: send one signed test event (optional ``event_type`` and
    ``data``; default the endpoint's first exact event type and its sample data) and return the
    receiver's answer. Always 200: ``success`` says whether the receiver answered 2xx."""

    @extend_schema(request=TestSendInputSerializer, responses=TestSendResultSerializer)
    def post(self, request, pk: int):
        endpoint = get_object_or_404(WebhookEndpoint, pk=pk)
        serializer = TestSendInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        event_type = _event_type_for(serializer.validated_data.get("event_type"), endpoint)
        outcome = delivery_services.send_test(
            endpoint=endpoint, event_type=event_type, data=serializer.validated_data.get("data")
        )
        return _test_response(outcome)


class UnsavedEndpointTestView(APIView):
    """``POST /endpoints/test``: the same as ``/endpoints/{id}/test`` for a configuration that is
    not saved (``url`` required; every endpoint field accepted; nothing stored)."""

    @extend_schema(request=UnsavedEndpointTestSerializer, responses=TestSendResultSerializer)
    def post(self, request):
        serializer = UnsavedEndpointTestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        event_type_name = data.pop("event_type", None)
        sample = data.pop("data", None)
        data.setdefault("name", "unsaved endpoint test")
        data.setdefault("events", ["*"])
        endpoint = WebhookEndpoint(**data)
        if endpoint.signature_method in SECRET_METHODS and not endpoint.secret:
            raise ValidationFailed(
                f"signature_method '{str(endpoint.signature_method)}' needs a 'secret' for a test of an unsaved endpoint.",
                details={"fields": {"secret": ["Required for this signature_method."]}},
            )
        validate_endpoint(endpoint)
        outcome = delivery_services.send_test(
            endpoint=endpoint, event_type=_event_type_for(event_type_name, endpoint), data=sample
        )
        return _test_response(outcome)
