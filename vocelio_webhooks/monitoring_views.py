"""``GET /health/ready`` (readiness) and ``GET /metrics`` (Prometheus). ``GET /health``
(liveness) stays in ``vocelio_webhooks/urls.py``."""
import hmac
from dataclasses import dataclass

from django.conf import settings
from django.http import HttpResponse
from django.utils.log import log_response
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.permissions import AllowAny, BasePermission
from rest_framework.response import Response
from rest_framework.views import APIView

from . import metrics, monitoring
from .api import ApiKeyAuthentication
from .errors import Forbidden, ServiceUnavailable
from .models import Scope
from .permissions import HasScope, key_environments


class _IgnoreAccept(BaseContentNegotiation):
    """Probes and Prometheus send their own ``Accept``; answer JSON (errors, readiness) or the
    exposition format regardless, instead of DRF's 406."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None


class ReadinessView(APIView):
    """``GET /health/ready``: 200 ``{"status": "ready", "checks": {...}}`` when the database, the
    broker, a worker and beat are all fine; otherwise 503 ``NOT_READY`` with the same checks as
    ``details``. No authentication (orchestrators call it); reveals no URL or secret.

    A 503 is logged by ``django.request`` at WARNING, not ERROR: "not ready" is an expected answer
    while a worker restarts, and a probe every few seconds would flood error logs and error
    trackers with it."""

    authentication_classes = []
    permission_classes = [AllowAny]
    throttle_classes = []
    content_negotiation_class = _IgnoreAccept

    @extend_schema(responses={200: dict, 503: OpenApiResponse(description="NOT_READY, details = the checks")})
    def get(self, request):
        readiness = monitoring.check_readiness()
        if not readiness.ready:
            failing = sorted(name for name, check in readiness.checks.items() if check["status"] != monitoring.OK)
            raise ServiceUnavailable(f"Not ready: {', '.join(failing)}.", code="NOT_READY", details=readiness.checks)
        return Response({"status": "ready", "checks": readiness.checks})

    def handle_exception(self, exc):
        response = super().handle_exception(exc)
        if response is not None and response.status_code == 503:
            # Django's handler logs every 5xx at ERROR unless the response says it was logged;
            # log_response marks it so, after logging it once with the usual message and extras.
            log_response("%s: %s", response.reason_phrase, self.request.path, response=response,
                         request=self.request, level="warning")
        return response


@dataclass(frozen=True)
class MetricsScraper:
    """``request.user`` when the caller presented ``WEBHOOK_METRICS_TOKEN``: may read metrics only
    (this principal exists only on ``/metrics``)."""

    scopes: tuple[str, ...] = (Scope.READ.value,)
    environments: tuple[str, ...] = ()
    is_authenticated = True
    is_anonymous = False

    def __str__(self) -> str:
        return "metrics-token"


class MetricsTokenAuthentication(BaseAuthentication):
    """``Authorization: Bearer <WEBHOOK_METRICS_TOKEN>`` (Prometheus ``authorization``
    credentials), compared in constant time. Any other bearer value is left to the API-key
    authentication that follows, which answers 401 for unknown keys."""

    def authenticate(self, request):
        token = settings.WEBHOOK_METRICS_TOKEN
        parts = get_authorization_header(request).split()
        if not token or len(parts) != 2 or parts[0].lower() != b"bearer":
            return None
        if hmac.compare_digest(parts[1], token.encode("utf-8")):
            return MetricsScraper(), None
        return None

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="api"'


class MetricsTokenAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "vocelio_webhooks.monitoring_views.MetricsTokenAuthentication"
    name = "MetricsToken"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "WEBHOOK_METRICS_TOKEN (GET /metrics only)"}


class AllEnvironmentsOnly(BasePermission):
    """Metrics count every environment; a key limited to some environments may not read them."""

    def has_permission(self, request, view) -> bool:
        allowed = key_environments(request)
        if allowed:
            raise Forbidden("Metrics cover every environment; use a key without an environment limit.",
                            code="ENVIRONMENT_FORBIDDEN", details={"key_environments": list(allowed)})
        return True


class MetricsView(APIView):
    """``GET /metrics``: Prometheus text exposition (``vocelio_webhooks.metrics``). Needs
    ``Bearer <WEBHOOK_METRICS_TOKEN>`` or an API key with the ``read`` scope and no environment
    limit. No or an unknown credential: 401 ``UNAUTHENTICATED``; a key without the ``read`` scope:
    403 ``INSUFFICIENT_SCOPE``; a key limited to some environments: 403 ``ENVIRONMENT_FORBIDDEN``."""

    authentication_classes = [MetricsTokenAuthentication, ApiKeyAuthentication]
    permission_classes = [HasScope, AllEnvironmentsOnly]
    throttle_classes = []
    content_negotiation_class = _IgnoreAccept

    @extend_schema(responses={(200, "text/plain"): OpenApiResponse(description="Prometheus text exposition format")})
    def get(self, request):
        body, content_type = metrics.render_latest()
        return HttpResponse(body, content_type=content_type)
