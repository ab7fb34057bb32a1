"""Query-string input of the analytics API (``GET /analytics/overview`` and ``/analytics/trends``).
Invalid input answers 400 ``VALIDATION_ERROR`` with the field errors in ``details.fields``."""
from datetime import timedelta

from django.utils import timezone
from rest_framework import serializers

from analytics.queries import BUCKETS
from events.models import Environment

OVERVIEW_DEFAULT_RANGE = timedelta(hours=24)
TRENDS_DEFAULT_RANGE = timedelta(days=7)
MAX_FORECAST_BUCKETS = 500


class AnalyticsQuerySerializer(serializers.Serializer):
    """``start``/``end`` (ISO 8601; without an offset they are UTC; default: the last
    ``default_range`` up to now), ``endpoint_id``, ``event_type`` (a name such as
    ``lead.created``), ``environment``."""

    default_range = OVERVIEW_DEFAULT_RANGE

    start = serializers.DateTimeField(required=False)
    end = serializers.DateTimeField(required=False)
    endpoint_id = serializers.IntegerField(required=False, min_value=1, max_value=2**63 - 1)
    event_type = serializers.CharField(required=False, max_length=100)
    environment = serializers.ChoiceField(required=False, choices=Environment.choices)

    def validate(self, attrs: dict) -> dict:
        end = attrs.get("end") or timezone.now()
        start = attrs.get("start") or end - self.default_range
        if start >= end:
            raise serializers.ValidationError({"start": ["Must be before end."]})
        return {**attrs, "start": start, "end": end}


class TrendsQuerySerializer(AnalyticsQuerySerializer):
    """The overview's parameters plus ``bucket`` (``minute``, ``hour`` — the default — or
    ``day``) and ``forecast`` (future buckets to forecast, 0–500, default 6)."""

    default_range = TRENDS_DEFAULT_RANGE

    bucket = serializers.ChoiceField(required=False, choices=BUCKETS, default="hour")
    forecast = serializers.IntegerField(required=False, min_value=0, max_value=MAX_FORECAST_BUCKETS, default=6)
