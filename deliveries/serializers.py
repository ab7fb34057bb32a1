"""API shapes for deliveries, attempts and test sends."""
from rest_framework import serializers

from deliveries.models import Delivery, DeliveryAttempt
from deliveries.services.selection import DISCARDABLE_STATUSES, MAX_BULK, RETRYABLE_STATUSES, DeliverySelection
from endpoints.models import WebhookEndpoint
from endpoints.serializers import EndpointSerializer
from events.filtersets import validate_event_type_selection
from events.serializers import StringField


class DeliveryAttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = DeliveryAttempt
        fields = [
            "id", "attempt_number", "url", "http_method", "request_headers", "request_body",
            "request_body_sha256", "request_body_size", "response_status_code", "response_headers",
            "response_body", "duration_ms", "error_class", "error_message", "outcome", "started_at", "created_at",
        ]
        read_only_fields = fields


class DeliverySerializer(serializers.ModelSerializer):
    event_id = serializers.CharField(source="event.event_id", read_only=True)
    event_type = serializers.CharField(source="event.event_type.name", read_only=True)
    delivery_id = serializers.CharField(source="public_id", read_only=True)

    class Meta:
        model = Delivery
        fields = [
            "id", "delivery_id", "event_id", "event_type", "endpoint", "status", "attempt_count",
            "next_attempt_at", "last_attempt_at", "last_status_code", "last_error", "completed_at",
            "created_at", "updated_at", "is_replay", "replay_of",
        ]
        read_only_fields = fields


class DeliveryDetailSerializer(DeliverySerializer):
    attempts = DeliveryAttemptSerializer(many=True, read_only=True)

    class Meta(DeliverySerializer.Meta):
        fields = [*DeliverySerializer.Meta.fields, "attempts"]
        read_only_fields = fields


class TestSendInputSerializer(serializers.Serializer):
    """Optional body of ``POST /endpoints/{id}/test``: which event type to send and its data."""

    event_type = serializers.CharField(required=False, max_length=100)
    data = serializers.JSONField(required=False)

    def validate_data(self, value):
        if not isinstance(value, dict):
            raise serializers.ValidationError("Must be a JSON object.")
        return value


class UnsavedEndpointTestSerializer(EndpointSerializer):
    """``POST /endpoints/test``: an endpoint configuration that is not saved, plus what to send."""

    event_type = serializers.CharField(required=False, max_length=100)
    data = serializers.JSONField(required=False)

    class Meta(EndpointSerializer.Meta):
        fields = [*EndpointSerializer.Meta.fields, "event_type", "data"]
        extra_kwargs = {"name": {"required": False}, "events": {"required": False}}


class TestSendResultSerializer(serializers.Serializer):
    success = serializers.BooleanField()
    event_id = serializers.CharField()
    status_code = serializers.IntegerField(allow_null=True)
    duration_ms = serializers.IntegerField()
    error_class = serializers.CharField()
    error_message = serializers.CharField()
    response_headers = serializers.DictField()
    response_body = serializers.CharField()
    request = serializers.DictField()


# --- dead letters, bulk retry / discard, replay (deliveries.services.replay) -------------------
class DeadLetterSerializer(serializers.ModelSerializer):
    """One row of ``GET /deliveries/dead-letters``: the delivery, where it was going and why it
    stopped (``last_error``, ``last_status_code``, the last attempt's ``last_error_class``)."""

    delivery_id = serializers.CharField(source="public_id", read_only=True)
    event_id = serializers.CharField(source="event.event_id", read_only=True)
    event_type = serializers.CharField(source="event.event_type.name", read_only=True)
    endpoint_name = serializers.CharField(source="endpoint.name", read_only=True, allow_null=True)
    endpoint_url = serializers.CharField(source="endpoint.url", read_only=True, allow_null=True)
    last_error_class = serializers.CharField(read_only=True, allow_null=True)
    dead_lettered_at = serializers.DateTimeField(source="completed_at", read_only=True)

    class Meta:
        model = Delivery
        fields = [
            "id", "delivery_id", "event_id", "event_type", "endpoint", "endpoint_name", "endpoint_url", "status",
            "attempt_count", "last_status_code", "last_error", "last_error_class", "last_attempt_at",
            "dead_lettered_at", "is_replay", "replay_of", "created_at", "updated_at",
        ]
        read_only_fields = fields


class _StatusListField(serializers.ListField):
    """A list of statuses; a single string is taken as a list of one."""

    def to_internal_value(self, data):
        return super().to_internal_value([data] if isinstance(data, str) else data)


class _RejectUnknownKeys:
    """A misspelled filter key must not widen a bulk operation to everything: unknown keys are a
    400 naming them."""

    def to_internal_value(self, data):
        unknown = sorted(set(data) - set(self.fields)) if isinstance(data, dict) else []
        if unknown:
            raise serializers.ValidationError({key: ["Unknown field."] for key in unknown})
        return super().to_internal_value(data)


class _BulkSelectionSerializer(_RejectUnknownKeys, serializers.Serializer):
    """Filter body shared by ``POST /deliveries/retry`` and ``POST /deliveries/discard``."""

    allowed_statuses: tuple[str, ...] = ()

    endpoint = serializers.IntegerField(required=False, min_value=1)
    event_type = StringField(required=False, max_length=1000, validators=[validate_event_type_selection],
                                       help_text="comma-separated patterns: exact name, 'lead.*' or '*'")
    created_after = serializers.DateTimeField(required=False)
    created_before = serializers.DateTimeField(required=False)
    dry_run = serializers.BooleanField(required=False, default=False)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=MAX_BULK, default=MAX_BULK)

    def get_fields(self):
        fields = super().get_fields()
        fields["status"] = _StatusListField(
            child=serializers.ChoiceField(choices=list(self.allowed_statuses)), required=False, allow_empty=False,
            default=[Delivery.Status.DEAD_LETTERED.value],
        )
        return fields

    def validate(self, attrs):
        after, before = attrs.get("created_after"), attrs.get("created_before")
        if after and before and before <= after:
            raise serializers.ValidationError({"created_before": ["Must be later than created_after."]})
        return attrs

    def selection(self, *, environments=()) -> DeliverySelection:
        data = self.validated_data
        return DeliverySelection(
            statuses=tuple(data["status"]), endpoint_id=data.get("endpoint"), event_type=data.get("event_type"),
            created_after=data.get("created_after"), created_before=data.get("created_before"),
            environments=tuple(environments),
        )


class BulkRetryInputSerializer(_BulkSelectionSerializer):
    """``POST /deliveries/retry``: ``status`` among dead_lettered, failed, cancelled."""

    allowed_statuses = tuple(s.value for s in RETRYABLE_STATUSES)


class BulkDiscardInputSerializer(_BulkSelectionSerializer):
    """``POST /deliveries/discard``: ``status`` among dead_lettered, failed."""

    allowed_statuses = tuple(s.value for s in DISCARDABLE_STATUSES)


class BulkRetryResultSerializer(serializers.Serializer):
    matched = serializers.IntegerField()
    retried = serializers.IntegerField()
    dry_run = serializers.BooleanField()


class BulkDiscardResultSerializer(serializers.Serializer):
    matched = serializers.IntegerField()
    discarded = serializers.IntegerField()
    dry_run = serializers.BooleanField()


class EventReplayInputSerializer(_RejectUnknownKeys, serializers.Serializer):
    """``POST /events/{event_id}/replay``: optional ``endpoint`` (id) to replay to only it."""

    endpoint = serializers.PrimaryKeyRelatedField(queryset=WebhookEndpoint.objects.all(), required=False)


class EndpointReplayInputSerializer(_RejectUnknownKeys, serializers.Serializer):
    """``POST /endpoints/{id}/replay``: events received in ``[since, until)``."""

    since = serializers.DateTimeField()
    until = serializers.DateTimeField(required=False)
    event_type = StringField(required=False, max_length=1000, validators=[validate_event_type_selection],
                                       help_text="comma-separated patterns: exact name, 'lead.*' or '*'")
    only_failed = serializers.BooleanField(required=False, default=False)
    dry_run = serializers.BooleanField(required=False, default=False)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=MAX_BULK, default=MAX_BULK)

    def validate(self, attrs):
        if attrs.get("until") and attrs["until"] <= attrs["since"]:
            raise serializers.ValidationError({"until": ["Must be later than since."]})
        return attrs


class ReplayResultSerializer(serializers.Serializer):
    replayed = serializers.IntegerField()
    matched = serializers.IntegerField()
    deliveries = serializers.ListField(child=serializers.IntegerField())
    dry_run = serializers.BooleanField()
    limit_reached = serializers.BooleanField()
