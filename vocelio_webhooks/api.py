"""API authentication and the one exception handler that gives every error the seed's shape:
``{"error": {"code": "...", "message": "...", "details": {...}}}``."""
import logging
import re
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.db.models import Q
from django.http import Http404, JsonResponse
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions, status
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response

from .errors import ServiceError
from .models import ApiKey, hash_api_key

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ApiPrincipal:
    """The caller behind a valid API key (``request.user`` in API views)."""

    api_key_id: int
    name: str
    scopes: tuple[str, ...]
    environments: tuple[str, ...] = ()  # empty: every environment
    prefix: str = ""

    is_authenticated = True
    is_anonymous = False

    def __str__(self) -> str:
        return f"api-key:{self.name}"


class ApiKeyAuthentication(BaseAuthentication):
    """``Authorization: Bearer <key>``. Keys are compared by SHA-256 hash; inactive, revoked and
    expired keys fail with 401. What the key may do is checked afterwards by
    ``vocelio_webhooks.permissions.HasScope``. ``last_used_at`` is updated at most once a minute
    per key (``LAST_USED_GRANULARITY``)."""

    keyword = b"bearer"

    def authenticate(self, request):
        auth = get_authorization_header(request).split()
        if not auth or auth[0].lower() != self.keyword:
            return None
        if len(auth) != 2:
            raise exceptions.AuthenticationFailed("Malformed Authorization header; use 'Bearer <key>'.")
        try:
            raw = auth[1].decode("ascii")
        except UnicodeDecodeError as exc:
            raise exceptions.AuthenticationFailed("Invalid API key.") from exc
        key = ApiKey.objects.filter(key_hash=hash_api_key(raw)).first()
        if key is None:
            raise exceptions.AuthenticationFailed("Invalid API key.")
        if key.revoked_at is not None or not key.is_active:
            raise exceptions.AuthenticationFailed("This API key was revoked.")
        if key.is_expired:
            raise exceptions.AuthenticationFailed("This API key has expired.")
        _touch(key)
        principal = ApiPrincipal(
            api_key_id=key.pk, name=key.name, scopes=tuple(key.scopes or ()),
            environments=tuple(key.environments or ()), prefix=key.prefix,
        )
        return principal, key

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="api"'


# ``ApiKey.last_used_at`` is accurate to this much: a key in constant use is written once a minute,
# not on every request (a second fsync per publish otherwise, issue 7). GitHub shows a token's
# "last used" with similar granularity.
LAST_USED_GRANULARITY = timedelta(seconds=60)


def _touch(key: ApiKey) -> None:
    """Record that ``key`` was used, at most once per ``LAST_USED_GRANULARITY``. The UPDATE is
    conditional, so when many processes see the same stale value only the first one writes."""
    now = timezone.now()
    stale_before = now - LAST_USED_GRANULARITY
    if key.last_used_at is not None and key.last_used_at >= stale_before:
        return
    ApiKey.objects.filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lt=stale_before), pk=key.pk
    ).update(last_used_at=now)


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "vocelio_webhooks.api.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer"}


_DRF_CODES = {
    exceptions.ValidationError: "VALIDATION_ERROR",
    exceptions.ParseError: "INVALID_REQUEST_BODY",
    exceptions.NotAuthenticated: "UNAUTHENTICATED",
    exceptions.AuthenticationFailed: "UNAUTHENTICATED",
    exceptions.PermissionDenied: "FORBIDDEN",
    exceptions.NotFound: "NOT_FOUND",
    exceptions.MethodNotAllowed: "METHOD_NOT_ALLOWED",
    exceptions.NotAcceptable: "NOT_ACCEPTABLE",
    exceptions.UnsupportedMediaType: "UNSUPPORTED_MEDIA_TYPE",
    exceptions.Throttled: "RATE_LIMITED",
}


def error_body(code: str, message: str, details: dict | None = None) -> dict:
    """Build the seed's error document."""
    return {"error": {"code": code, "message": message, "details": details or {}}}


def exception_handler(exc, context):
    """DRF exception handler: domain ``ServiceError``s and DRF errors → seed error format.

    Unknown exceptions are logged and answered with a 500 ``INTERNAL_ERROR`` (no traceback leaks).
    """
    if isinstance(exc, ServiceError):
        return Response(error_body(exc.code, exc.message, exc.details), status=exc.http_status,
                        headers=getattr(exc, "response_headers", None))
    if isinstance(exc, RequestDataTooBig):
        return Response(error_body("PAYLOAD_TOO_LARGE", "The request body is larger than the service accepts.",
                                   {"max_bytes": settings.DATA_UPLOAD_MAX_MEMORY_SIZE}), status=413)
    if isinstance(exc, OverflowError):
        # A query-string date near year 1 or 9999 with a UTC offset cannot be converted.
        return Response(error_body("VALIDATION_ERROR", "A date or number in the request is out of range.",
                                   {"fields": {}}), status=400)
    if isinstance(exc, RecursionError):
        return Response(error_body("INVALID_REQUEST_BODY", "The JSON body is nested too deeply."), status=400)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    if isinstance(exc, exceptions.APIException):
        code = next((c for cls, c in _DRF_CODES.items() if isinstance(exc, cls)), "API_ERROR")
        headers = {}
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = exc.auth_header
        if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
            headers["Retry-After"] = str(int(exc.wait) + 1)
        if isinstance(exc, exceptions.ValidationError):
            detail = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
            message = "The request is invalid: " + _first_message(detail)
            return Response(error_body(code, message, {"fields": detail}), status=exc.status_code)
        if isinstance(exc, (exceptions.NotAuthenticated, exceptions.AuthenticationFailed)):
            response = Response(error_body(code, str(exc.detail)), status=status.HTTP_401_UNAUTHORIZED)
            response["WWW-Authenticate"] = 'Bearer realm="api"'
            return response
        return Response(error_body(code, str(exc.detail)), status=exc.status_code, headers=headers)
    # DRF calls this handler inside its own `except`; exc_info=exc names the exception explicitly.
    logger.error("Unhandled API error in %s", context.get("view").__class__.__name__, exc_info=exc)
    return Response(error_body("INTERNAL_ERROR", "An internal error occurred."), status=500)


def _first_message(detail) -> str:
    if isinstance(detail, dict):
        for key, value in detail.items():
            inner = _first_message(value)
            return f"{key}: {inner}" if key != "non_field_errors" else inner
    if isinstance(detail, list) and detail:
        return _first_message(detail[0])
    return str(detail)


class Pagination(LimitOffsetPagination):
    """``?limit=&offset=`` pagination. ``limit`` is an integer from 1 to ``max_limit`` (default
    ``PAGE_SIZE``), ``offset`` one from 0 to ``max_offset`` (default 0); anything else (``0``,
    ``-1``, ``abc``, ``1.5``, a number past the maximum) is 400 ``VALIDATION_ERROR`` naming the
    parameter in ``details.fields``, as a bad filter value is, instead of a silent default that
    gives the caller another page than asked (Stripe answers 400 for an invalid ``limit`` too). An
    empty value counts as absent, as django-filter treats an empty filter. ``max_offset`` keeps the
    number inside the database's 64-bit range."""

    max_limit = 500
    max_offset = 2**62

    def get_limit(self, request) -> int:
        value = _bounded_int(request, self.limit_query_param, 1, self.max_limit)
        return self.default_limit if value is None else value

    def get_offset(self, request) -> int:
        value = _bounded_int(request, self.offset_query_param, 0, self.max_offset)
        return 0 if value is None else value


_DIGITS = re.compile(r"[0-9]{1,30}")


def _bounded_int(request, name: str, low: int, high: int) -> int | None:
    """The query parameter ``name`` as an integer in ``low..high``; ``None`` when absent or empty.
    Raises ``ValidationError`` (400, ``details.fields.<name>``) otherwise: only ASCII digits are
    taken (``int()`` would also take ``+5``, `` 5``, ``5_0`` and other scripts' digits)."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    if not _DIGITS.fullmatch(raw) or not low <= int(raw) <= high:
        raise exceptions.ValidationError({name: [f"Must be an integer from {low} to {high}."]})
    return int(raw)


def json_400(request, exception=None):
    """Django ``handler400`` (e.g. a disallowed Host header) in the seed's error format."""
    return JsonResponse(error_body("BAD_REQUEST", "Bad request."), status=400)


def json_403(request, exception=None):
    """Django ``handler403`` in the seed's error format."""
    return JsonResponse(error_body("FORBIDDEN", "Forbidden."), status=403)


def json_404(request, exception=None):
    """Django ``handler404`` in the seed's error format."""
    return JsonResponse(error_body("NOT_FOUND", "No such route."), status=404)


def json_500(request):
    """Django ``handler500`` in the seed's error format."""
    return JsonResponse(error_body("INTERNAL_ERROR", "An internal error occurred."), status=500)
