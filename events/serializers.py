"""API shapes for events and event types."""
from typing import Any, ClassVar

from rest_framework import serializers

from events.models import EVENT_TYPE_NAME_MESSAGE, EVENT_TYPE_NAME_RE, Environment, Event, EventType
from vocelio_webhooks.validators import reject_nul_characters


class StringOnlyMixin:
    """For DRF character fields: refuse a JSON value that is not a string (DRF turns ``123`` and
    ``1.5`` into ``"123"`` and ``"1.5"``). An id sent as a number would be stored as a string that
    the sender never wrote, and ``1.0`` and ``1`` would become different ids; Stripe and Svix take
    ids and idempotency keys as strings only."""

    default_error_messages: ClassVar[dict[str, str]] = {"not_a_string": "Must be a JSON string, not {kind}."}

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("not_a_string", kind=_json_kind(data))
        return super().to_internal_value(data)


def _json_kind(value: Any) -> str:
    """The JSON name of ``value``'s type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


class StringField(StringOnlyMixin, serializers.CharField):
    """``CharField`` that accepts only JSON strings."""


class StringRegexField(StringOnlyMixin, serializers.RegexField):
    """``RegexField`` that accepts only JSON strings."""


class EventTypeSerializer(serializers.ModelSerializer):
    """A duplicate ``name`` is not a validation error here: ``events.services.create_event_type``
    answers it with 409 ``CONFLICT``, as a duplicate template name does."""

    name = serializers.CharField(max_length=100)  # declared: the model's unique=True would add a 400 validator

    class Meta:
        model = EventType
        fields = ["name", "category", "description", "sample_data", "created_at"]
        read_only_fields = ["created_at"]

    def validate_name(self, value: str) -> str:
        if not EVENT_TYPE_NAME_RE.match(value):
            raise serializers.ValidationError(EVENT_TYPE_NAME_MESSAGE)
        return value

    def validate_sample_data(self, value):
        # It stands in for an event's ``data``, which publishing requires to be an object.
        if not isinstance(value, dict):
            raise serializers.ValidationError("Must be a JSON object.")
        reject_nul_characters(value)  # the audit entry of the creation is jsonb on PostgreSQL
        return value


class EventSerializer(serializers.ModelSerializer):
    event_type = serializers.SlugRelatedField(slug_field="name", read_only=True)
    delivery_count = serializers.SerializerMethodField()

    class Meta:
        model = Event
        fields = ["event_id", "event_type", "timestamp", "data", "metadata", "environment", "received_at",
                  "delivery_count"]
        read_only_fields = fields

    def get_delivery_count(self, event: Event) -> int:
        return getattr(event, "delivery_total", None) or event.deliveries.count()


MAX_JSON_DEPTH = 64  # levels of nesting in data/metadata; deeper documents are refused (400)


def _depth(value, level: int = 0) -> int:
    if level > MAX_JSON_DEPTH:
        return level
    if isinstance(value, dict):
        return max((_depth(v, level + 1) for v in value.values()), default=level + 1)
    if isinstance(value, list):
        return max((_depth(v, level + 1) for v in value), default=level + 1)
    return level


class PublishInputSerializer(serializers.Serializer):
    """``POST /events/publish`` body: the seed's ``event_type`` + ``payload`` (or ``data``)."""

    # Ids are exact strings: " evt_1 " is refused, not trimmed into another publication's id.
    event_type = StringField(max_length=100, trim_whitespace=False)
    payload = serializers.JSONField(required=False)
    data = serializers.JSONField(required=False)
    event_id = StringRegexField(
        r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,254}\Z", max_length=255, required=False, trim_whitespace=False,
        error_messages={"invalid": "Use 1-255 characters: letters, digits, '_', '.', ':' or '-' (not first)."},
    )
    timestamp = serializers.DateTimeField(required=False)
    metadata = serializers.JSONField(required=False)
    environment = serializers.ChoiceField(choices=Environment.choices, required=False)

    def validate(self, attrs):
        for name in ("payload", "data", "metadata"):
            if name in attrs and _depth(attrs[name]) > MAX_JSON_DEPTH:
                raise serializers.ValidationError({name: [f"Nested deeper than {MAX_JSON_DEPTH} levels."]})
        if "payload" in attrs and "data" in attrs and attrs["payload"] != attrs["data"]:
            raise serializers.ValidationError({"data": ["Send either 'payload' or 'data', not both."]})
        body = attrs.pop("payload", None)
        body = attrs.get("data", body)
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise serializers.ValidationError({"data": ["Must be a JSON object."]})
        attrs["data"] = body
        if "metadata" in attrs and not isinstance(attrs["metadata"], dict):
            raise serializers.ValidationError({"metadata": ["Must be a JSON object."]})
        return attrs


class PublishedDeliverySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    endpoint_id = serializers.IntegerField(allow_null=True)
    status = serializers.CharField()


class PublishOutputSerializer(serializers.Serializer):
    event_id = serializers.CharField()
    event_type = serializers.CharField()
    environment = serializers.CharField()
    duplicate = serializers.BooleanField()
    matched_endpoints = serializers.IntegerField()
    filtered_out = serializers.IntegerField()
    deliveries = PublishedDeliverySerializer(many=True)
