"""API shapes for deliveries, attempts and test sends."""
from rest_framework import serializers

from deliveries.models import Delivery, DeliveryAttempt
from endpoints.serializers import EndpointSerializer


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
            "created_at", "updated_at",
        ]
        read_only_fields = fields


class DeliveryDetailSerializer(DeliverySerializer):
    attempts = DeliveryAttemptSerializer(many=True, read_only=True)

    class Meta(DeliverySerializer.Meta):
        fields = DeliverySerializer.Meta.fields + ["attempts"]
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
        fields = EndpointSerializer.Meta.fields + ["event_type", "data"]
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
