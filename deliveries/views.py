"""Delivery API (the seed's "Webhook Delivery Management" routes) and endpoint test sends."""
from django.db.models import OuterRef, Subquery
from django.http import Http404
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.generics import ListAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from deliveries import queries as delivery_queries
from deliveries import services as delivery_services
from deliveries.filtersets import DeadLetterFilterSet, DeliveryFilterSet
from deliveries.models import Delivery, DeliveryAttempt
from deliveries.serializers import (
    BulkDiscardInputSerializer,
    BulkDiscardResultSerializer,
    BulkRetryInputSerializer,
    BulkRetryResultSerializer,
    DeadLetterSerializer,
    DeliveryDetailSerializer,
    DeliverySerializer,
    EndpointReplayInputSerializer,
    EventReplayInputSerializer,
    ReplayResultSerializer,
    TestSendInputSerializer,
    TestSendResultSerializer,
    UnsavedEndpointTestSerializer,
)
from endpoints.models import WebhookEndpoint
from endpoints.services import SECRET_METHODS, validate_endpoint
from events.models import Event, EventType
from vocelio_webhooks import services as audit_services
from vocelio_webhooks.audit import snapshot
from vocelio_webhooks.errors import ValidationFailed
from vocelio_webhooks.permissions import EndpointEnvironmentAllowed, HasScope, object_in_key_environments


class DeliveryIdConverter:
    """URL converter for a delivery's id: ``123`` or ``dlv_123`` (``Delivery.public_id``, what
    receivers see in ``X-Vocelio-Delivery-Id`` and the JWT ``jti``), both to the integer ``123``;
    the admin's search takes both forms as well."""

    regex = r"(?:dlv_)?[0-9]{1,19}"  # a bigint has at most 19 digits; int() refuses over 4,300

    def to_python(self, value: str) -> int:
        return int(value.removeprefix("dlv_"))

    def to_url(self, value: int | str) -> str:
        return str(value)


class DeliveryViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """``GET /deliveries`` (filters: status (repeatable), endpoint, event_type, event_id,
    created_after, created_before) and ``GET /deliveries/{id}`` with every attempt."""

    queryset = Delivery.objects.select_related("event__event_type")
    filterset_class = DeliveryFilterSet
    required_scopes = ["deliveries:retry"]
    # ``123`` or ``dlv_123``: the id receivers see in X-Vocelio-Delivery-Id works here too.
    lookup_value_regex = DeliveryIdConverter.regex

    def get_object(self):
        self.kwargs[self.lookup_field] = DeliveryIdConverter().to_python(self.kwargs[self.lookup_field])
        return super().get_object()

    def get_serializer_class(self):
        return DeliveryDetailSerializer if self.action == "retrieve" else DeliverySerializer

    def get_queryset(self):
        queryset = super().get_queryset()
        return queryset.prefetch_related("attempts") if self.action == "retrieve" else queryset


class DeliveryRetryView(APIView):
    """``POST /deliveries/retry/{id}``: 202 and the delivery, queued for an attempt now;
    409 if it already succeeded or is in flight."""

    permission_classes = [HasScope, object_in_key_environments("deliveries.Delivery")]
    required_scopes = ["deliveries:retry"]

    @extend_schema(request=None, responses={202: DeliverySerializer})
    def post(self, request, pk: int):
        delivery = get_object_or_404(Delivery, pk=pk)
        before = snapshot(delivery)
        delivery = delivery_services.retry_now(delivery=delivery)
        audit_services.record_audit(request=request, action="retry", obj=delivery, before=before)
        return Response(DeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)


def _event_type_for(name: str | None, endpoint: WebhookEndpoint) -> EventType:
    event_type = delivery_queries.event_type_for_test_send(endpoint=endpoint, name=name)
    if event_type is None:
        message = (f"Unknown event type {name!r}." if name else
                   "The endpoint's default test event type does not exist; give an event_type.")
        raise ValidationFailed(message, details={"event_type": name}, code="UNKNOWN_EVENT_TYPE")
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


# Test sends in flight in this process (both test views share the bound).
class EndpointTestView(APIView):
    """``POST /endpoints/{id}/test``: send one signed test event (optional ``event_type`` and
    ``data``; default the endpoint's first exact event type and its sample data) and return the
    receiver's answer. Always 200: ``success`` says whether the receiver answered 2xx."""

    permission_classes = [HasScope, object_in_key_environments("endpoints.WebhookEndpoint")]
    required_scopes = ["endpoints:manage"]

    @extend_schema(request=TestSendInputSerializer, responses=TestSendResultSerializer)
    def post(self, request, pk: int):
        endpoint = get_object_or_404(WebhookEndpoint, pk=pk)
        serializer = TestSendInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        event_type = _event_type_for(serializer.validated_data.get("event_type"), endpoint)
        outcome = delivery_services.send_test_bounded(endpoint=endpoint, event_type=event_type,
                                                      data=serializer.validated_data.get("data"))
        return _test_response(outcome)


class UnsavedEndpointTestView(APIView):
    """``POST /endpoints/test``: the same as ``/endpoints/{id}/test`` for a configuration that is
    not saved (``url`` required; every endpoint field accepted; nothing stored)."""

    permission_classes = [HasScope, EndpointEnvironmentAllowed]
    required_scopes = ["endpoints:manage"]

    @extend_schema(request=UnsavedEndpointTestSerializer, responses=TestSendResultSerializer,
                   operation_id="endpoints_test_unsaved_create")
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
                f"signature_method '{endpoint.signature_method!s}' needs a 'secret' for a test of an unsaved endpoint.",
                details={"fields": {"secret": ["Required for this signature_method."]}},
            )
        validate_endpoint(endpoint)
        outcome = delivery_services.send_test_bounded(
            endpoint=endpoint, event_type=_event_type_for(event_type_name, endpoint), data=sample)
        return _test_response(outcome)


# --- dead letters, bulk retry and discard, replay (issue 4) ------------------------------------
def _key_environments(request) -> tuple[str, ...]:
    """The environments the caller's API key is limited to (empty: all)."""
    return tuple(getattr(request.user, "environments", None) or ())


def _actor(request) -> str:
    return str(request.user)


class DeadLetterListView(ListAPIView):
    """``GET /deliveries/dead-letters``: dead-lettered deliveries, most recently dead-lettered
    first, with the endpoint, the event type, the last error and the last attempt's error class.
    Filters: ``endpoint``, ``event_type``, ``created_after``/``_before``, ``updated_after``/``_before``."""

    queryset = (
        Delivery.objects.filter(status=Delivery.Status.DEAD_LETTERED)
        .select_related("event__event_type", "endpoint")
        .annotate(last_error_class=Subquery(
            DeliveryAttempt.objects.filter(delivery=OuterRef("pk")).order_by("-attempt_number", "-id")
            .values("error_class")[:1]
        ))
        .order_by("-completed_at", "-id")
    )
    serializer_class = DeadLetterSerializer
    filterset_class = DeadLetterFilterSet


class BulkRetryView(APIView):
    """``POST /deliveries/retry``: retry every delivery matching the filter body (``endpoint``,
    ``event_type``, ``status`` (default ``["dead_lettered"]``; also ``failed``, ``cancelled``),
    ``created_after``, ``created_before``, ``dry_run``, ``limit`` ≤ 10000). 202
    ``{"matched", "retried", "dry_run"}`` (200 for a dry run)."""

    required_scopes = ["deliveries:retry"]

    @extend_schema(request=BulkRetryInputSerializer, responses={202: BulkRetryResultSerializer,
                                                                200: BulkRetryResultSerializer},
                   operation_id="deliveries_bulk_retry")
    def post(self, request):
        serializer = BulkRetryInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        result = delivery_services.bulk_retry(
            selection=serializer.selection(environments=_key_environments(request)),
            dry_run=serializer.validated_data["dry_run"], limit=serializer.validated_data["limit"],
        )
        _audit_bulk(request, action="retry", result=result, selection=serializer.validated_data)
        body = {"matched": result.matched, "retried": result.changed, "dry_run": result.dry_run}
        return Response(body, status=status.HTTP_200_OK if result.dry_run else status.HTTP_202_ACCEPTED)


class DeliveryDiscardView(APIView):
    """``POST /deliveries/{id}/discard``: a dead-lettered or failed delivery becomes
    ``cancelled`` with ``last_error`` "Discarded by <caller>"; 409 ``DELIVERY_NOT_DISCARDABLE``
    otherwise."""

    permission_classes = [HasScope, object_in_key_environments("deliveries.Delivery")]
    required_scopes = ["deliveries:retry"]

    @extend_schema(request=None, responses={200: DeliverySerializer})
    def post(self, request, pk: int):
        delivery = get_object_or_404(Delivery, pk=pk)
        before = snapshot(delivery)
        delivery = delivery_services.discard(delivery=delivery, actor=_actor(request))
        audit_services.record_audit(request=request, action="discard", obj=delivery, before=before)
        return Response(DeliverySerializer(delivery).data)


class BulkDiscardView(APIView):
    """``POST /deliveries/discard``: discard every delivery matching the filter body (as
    ``POST /deliveries/retry``; ``status`` among ``dead_lettered`` (default) and ``failed``).
    200 ``{"matched", "discarded", "dry_run"}``."""

    required_scopes = ["deliveries:retry"]

    @extend_schema(request=BulkDiscardInputSerializer, responses=BulkDiscardResultSerializer,
                   operation_id="deliveries_bulk_discard")
    def post(self, request):
        serializer = BulkDiscardInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        result = delivery_services.bulk_discard(
            selection=serializer.selection(environments=_key_environments(request)), actor=_actor(request),
            dry_run=serializer.validated_data["dry_run"], limit=serializer.validated_data["limit"],
        )
        _audit_bulk(request, action="discard", result=result, selection=serializer.validated_data)
        return Response({"matched": result.matched, "discarded": result.changed, "dry_run": result.dry_run})


def _audit_bulk(request, *, action: str, result, selection: dict) -> None:
    if not result.dry_run and result.changed:
        audit_services.record_audit(
            request=request, action=action, object_type="deliveries.delivery",
            object_repr=f"{result.changed} deliveries",
            changes={"deliveries": result.delivery_ids, "selection": selection},
        )


def _audit_replay(request, *, obj, result, selection: dict | None = None) -> None:
    if not result.dry_run and result.replayed:
        changes = {"deliveries": result.delivery_ids, **({"selection": selection} if selection else {})}
        audit_services.record_audit(request=request, action="replay", obj=obj, changes=changes)


def _replay_response(result) -> Response:
    body = {"replayed": result.replayed, "matched": result.matched, "deliveries": result.delivery_ids,
            "dry_run": result.dry_run, "limit_reached": result.limit_reached}
    return Response(body, status=status.HTTP_200_OK if result.dry_run else status.HTTP_202_ACCEPTED)


class EventReplayView(APIView):
    """``POST /events/{event_id}/replay`` (``{"endpoint"?: id}``): a new delivery of the event
    (same ``event_id``, marked as a replay) to every endpoint that would receive it if it were
    published now, or to the one named; 409 if that one is disabled or would not receive it."""

    required_scopes = ["deliveries:retry"]

    @extend_schema(request=EventReplayInputSerializer, responses={202: ReplayResultSerializer})
    def post(self, request, event_id: str):
        event = get_object_or_404(Event.objects.select_related("event_type"), event_id=event_id)
        allowed = _key_environments(request)
        if allowed and event.environment not in allowed:
            raise Http404
        serializer = EventReplayInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        result = delivery_services.replay_event(event=event, endpoint=serializer.validated_data.get("endpoint"))
        _audit_replay(request, obj=event, result=result)
        return _replay_response(result)


class EndpointReplayView(APIView):
    """``POST /endpoints/{id}/replay``: replay to this endpoint every event received since
    ``since`` (until ``until``) that it would receive now; ``event_type``, ``only_failed`` (skip
    events it received or is about to receive), ``dry_run``, ``limit`` ≤ 10000. 202
    ``{"replayed", "deliveries", ...}`` (200 for a dry run); 409 for a disabled endpoint."""

    permission_classes = [HasScope, object_in_key_environments("endpoints.WebhookEndpoint")]
    required_scopes = ["deliveries:retry"]

    @extend_schema(request=EndpointReplayInputSerializer, responses={202: ReplayResultSerializer,
                                                                     200: ReplayResultSerializer})
    def post(self, request, pk: int):
        endpoint = get_object_or_404(WebhookEndpoint, pk=pk)
        serializer = EndpointReplayInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        result = delivery_services.replay_endpoint(endpoint=endpoint, environments=_key_environments(request),
                                                   **serializer.validated_data)
        _audit_replay(request, obj=endpoint, result=result, selection=serializer.validated_data)
        return _replay_response(result)
