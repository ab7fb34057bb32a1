"""Analytics API (issue 6): ``GET /analytics/overview`` and ``GET /analytics/trends``. Thin: the
numbers come from ``analytics.queries``. Reading needs the ``read`` scope; an API key limited to
some environments sees only their numbers."""
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from analytics import queries
from analytics.serializers import AnalyticsQuerySerializer, TrendsQuerySerializer
from vocelio_webhooks.permissions import key_environments


def _environments(request) -> tuple[str, ...] | None:
    return key_environments(request) or None


class AnalyticsOverviewView(APIView):
    """``GET /analytics/overview``: deliveries, attempts, success and error rates, response times
    (avg, p50, p95, p99), per-endpoint and per-event-type breakdowns, error analysis, and the
    current queue, dead letters and open circuits."""

    @extend_schema(parameters=[AnalyticsQuerySerializer], responses={200: OpenApiTypes.OBJECT})
    def get(self, request):
        params = AnalyticsQuerySerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        return Response(queries.overview(**params.validated_data, environments=_environments(request)))


class AnalyticsTrendsView(APIView):
    """``GET /analytics/trends``: the overview's measures per minute, hour or day bucket, and a
    forecast of volume and failure rate for the next buckets with its backtest error."""

    @extend_schema(parameters=[TrendsQuerySerializer], responses={200: OpenApiTypes.OBJECT})
    def get(self, request):
        params = TrendsQuerySerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        data = dict(params.validated_data)
        data["forecast_buckets"] = data.pop("forecast")
        return Response(queries.trends(**data, environments=_environments(request)))
