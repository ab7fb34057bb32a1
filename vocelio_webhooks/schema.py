"""The OpenAPI schema's error answers: every operation lists the error statuses it can give, each
with the seed's envelope ``{"error": {"code", "message", "details"}}`` as the shared component
``Error`` (``vocelio_webhooks.api.error_body`` builds it; ``exception_handler`` maps every error to it).

``ErrorResponsesAutoSchema`` is drf-spectacular's ``AutoSchema`` (``REST_FRAMEWORK["DEFAULT_SCHEMA_CLASS"]``)
with the error answers added to each operation after drf-spectacular has built it. Where it can,
it derives them from what the view is configured with, so a new view gets them without a
decorator:

* 401 ``UNAUTHENTICATED``: the view authenticates and does not ``AllowAny`` (``HasScope`` refuses a
  request without a key, and DRF answers 401 because an authenticator exists).
* 403 ``INSUFFICIENT_SCOPE``: ``HasScope`` is among its permissions; ``ENVIRONMENT_FORBIDDEN`` where
  an environment permission (``vocelio_webhooks.permissions``) applies to this method and action.
* 429 ``RATE_LIMITED``: ``ApiKeyRateThrottle`` applies and the view needs a key (the throttle counts
  keys only).
* 404 ``NOT_FOUND``: the path has a parameter (every such view looks its object up and answers 404
  for a missing one or one of another environment).
* 400: ``VALIDATION_ERROR`` for an operation with a request body or documented query parameters
  (filters, ``limit``/``offset``: ``vocelio_webhooks.api.Pagination`` and the strict filtersets),
  ``INVALID_REQUEST_BODY`` for one with a body (``parsers.StrictJSONParser``).
* 411/413/415/501 for an operation with a body: ``vocelio_webhooks.chunked`` (411
  ``LENGTH_REQUIRED``, 413 and 501 ``NOT_IMPLEMENTED``), Django's size limit (413
  ``PAYLOAD_TOO_LARGE``), DRF's media type check (415 ``UNSUPPORTED_MEDIA_TYPE``) and
  ``parsers.check_content_encoding`` (415 ``UNSUPPORTED_CONTENT_ENCODING``).

What only a view's code or its services raise (a 409, ``QUEUE_FULL``, ``TEST_SEND_BUSY``, a
400 with a domain code) is listed in ``OPERATION_ERRORS`` by operation id, read from that code;
``tests/test_openapi_errors.py`` checks every id there names an operation of the schema.

Not listed: 500 ``INTERNAL_ERROR`` (any operation, never intended), 405 (a method the path does
not have is no operation), Django's 400 ``BAD_REQUEST`` for a ``Host`` outside
``DJANGO_ALLOWED_HOSTS``, and gunicorn's own HTML answers (414, malformed framing), which are not
the envelope. An undocumented query parameter that a filterset knows (``GET /deliveries/1?status=x``)
also gives 400 on a read of one object; only documented parameters are counted.
"""
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import ResolvedComponent
from rest_framework.permissions import SAFE_METHODS, AllowAny

from .permissions import AllEnvironmentsForWrites, EndpointEnvironmentAllowed, HasScope, PublishEnvironmentAllowed
from .throttling import ApiKeyRateThrottle

ERROR_COMPONENT = "Error"

# The seed's error document, as vocelio_webhooks.api.error_body builds it.
ERROR_SCHEMA = {
    "type": "object",
    "description": "Every API error: a stable UPPER_SNAKE `code`, a human-readable `message` and "
                   "code-specific `details` (`details.fields` per field for VALIDATION_ERROR).",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "string", "example": "VALIDATION_ERROR"},
                "message": {"type": "string", "example": "The request is invalid: event_type: This field is required."},
                "details": {"type": "object", "additionalProperties": {}},
            },
            "required": ["code", "message", "details"],
        },
    },
    "required": ["error"],
}

# What each status means here, the start of its response description.
STATUS_MEANINGS = {
    400: "The request is invalid",
    401: "No API key, or an unknown, revoked or expired one",
    403: "The API key may not do this",
    404: "No such object (or one outside the API key's environments)",
    409: "The request clashes with the object's current state",
    411: "A chunked request body the server cannot frame; send a Content-Length",
    413: "The request body is larger than WEBHOOK_MAX_REQUEST_BODY_BYTES",
    415: "The request body is not JSON, or is sent with a Content-Encoding",
    429: "Too many requests; wait for Retry-After seconds",
    501: "A Transfer-Encoding other than chunked alone",
    503: "The service cannot take this request now",
}

# Headers the error answers carry (vocelio_webhooks.api.exception_handler, concurrency.Busy).
STATUS_HEADERS = {
    401: {"WWW-Authenticate": {"description": 'Bearer realm="api"', "schema": {"type": "string"}}},
    429: {"Retry-After": {"description": "Seconds to wait before trying again.", "schema": {"type": "integer"}}},
}

# Codes raised by a view's own code or the services it calls, beyond what the view's
# configuration shows (see the module docstring). Keys are operation ids; source in the comments.
# An endpoint configuration: EndpointSerializer.validate_events, endpoints.services.validate_endpoint.
_ENDPOINT_CONFIG_CODES = ("UNKNOWN_EVENT_TYPE", "INVALID_FILTER", "URL_NOT_ALLOWED", "TEMPLATE_SYNTAX_ERROR",
                          "UNKNOWN_TEMPLATE")
OPERATION_ERRORS: dict[str, dict[int, tuple[str, ...]]] = {
    # events.services.publish: unknown type (400), event_id of another environment (409), back-pressure (503).
    "events_publish_create": {400: ("UNKNOWN_EVENT_TYPE",), 409: ("EVENT_ID_CONFLICT",), 503: ("QUEUE_FULL",)},
    "event_types_create": {409: ("CONFLICT",)},  # events.services.create_event_type: name taken
    "endpoints_create": {400: _ENDPOINT_CONFIG_CODES},
    "endpoints_update": {400: _ENDPOINT_CONFIG_CODES},
    "endpoints_partial_update": {400: _ENDPOINT_CONFIG_CODES},
    "endpoints_rotate_secret_create": {400: ("NOTHING_TO_ROTATE",)},  # endpoints.services.rotate_secret
    # deliveries.views._event_type_for; deliveries.services.send_test_bounded (concurrency.Slots, Retry-After).
    "endpoints_test_create": {400: ("UNKNOWN_EVENT_TYPE",), 429: ("TEST_SEND_BUSY",)},
    "endpoints_test_unsaved_create": {400: _ENDPOINT_CONFIG_CODES, 429: ("TEST_SEND_BUSY",)},
    # deliveries.services.retry_now: succeeded or in flight, or its endpoint deleted.
    "deliveries_retry_create": {409: ("DELIVERY_NOT_RETRYABLE", "ENDPOINT_DELETED")},
    "deliveries_discard_create": {409: ("DELIVERY_NOT_DISCARDABLE",)},  # deliveries.services.discard
    # deliveries.services.replay_event / replay_endpoint (_check_endpoint_accepts).
    "events_replay_create": {409: ("ENDPOINT_DISABLED", "ENDPOINT_NOT_MATCHING")},
    "endpoints_replay_create": {409: ("ENDPOINT_DISABLED",)},
    # templates_app.services: create_template (name taken), validate_content, render_preview.
    "templates_create": {400: ("TEMPLATE_SYNTAX_ERROR",), 409: ("CONFLICT",)},
    "templates_update": {400: ("TEMPLATE_SYNTAX_ERROR",)},
    "templates_partial_update": {400: ("TEMPLATE_SYNTAX_ERROR",)},
    "templates_test_create": {400: ("UNKNOWN_EVENT_TYPE", "TEMPLATE_RENDER_ERROR")},
    "privacy_erase_create": {403: ("ENVIRONMENT_FORBIDDEN",)},  # events.privacy_views.EraseSubjectView
    "health_ready_retrieve": {503: ("NOT_READY",)},  # monitoring_views.ReadinessView
}

_BODY_ERRORS = {
    400: ("VALIDATION_ERROR", "INVALID_REQUEST_BODY"),
    411: ("LENGTH_REQUIRED",),
    413: ("PAYLOAD_TOO_LARGE",),
    415: ("UNSUPPORTED_MEDIA_TYPE", "UNSUPPORTED_CONTENT_ENCODING"),
    501: ("NOT_IMPLEMENTED",),
}


class ErrorResponsesAutoSchema(AutoSchema):
    """drf-spectacular's ``AutoSchema`` whose operations also list their error answers (module
    docstring). Success answers and error answers a view declares itself are kept as they are; a
    declared error answer without a body gets the ``Error`` body."""

    def get_operation(self, path, path_regex, path_prefix, method, registry):
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is None:
            return None
        errors = self.error_codes(operation)
        if not errors:
            return operation
        component = ResolvedComponent(name=ERROR_COMPONENT, type=ResolvedComponent.SCHEMA, object=ERROR_COMPONENT,
                                      schema=ERROR_SCHEMA)
        registry.register_on_missing(component)
        responses = operation.setdefault("responses", {})
        for status_code, codes in sorted(errors.items()):
            response = responses.setdefault(str(status_code), {"description": _description(status_code, codes)})
            response.setdefault("content", {"application/json": {"schema": component.ref}})
            if status_code in STATUS_HEADERS:
                response.setdefault("headers", STATUS_HEADERS[status_code])
        return operation

    def error_codes(self, operation: dict) -> dict[int, list[str]]:
        """The error codes this operation (drf-spectacular's ``operation`` dict, for the view
        ``self.view`` and method ``self.method``) can answer, by HTTP status. Codes keep their
        first-seen order; an operation without any gets ``{}``."""
        errors: dict[int, list[str]] = {}

        def add(status_code: int, *codes: str) -> None:
            listed = errors.setdefault(status_code, [])
            listed.extend(code for code in codes if code not in listed)

        permissions = self.view.get_permissions()
        needs_key = bool(self.view.get_authenticators()) and not any(isinstance(p, AllowAny) for p in permissions)
        if needs_key:
            add(401, "UNAUTHENTICATED")
        if any(isinstance(p, HasScope) for p in permissions):
            add(403, "INSUFFICIENT_SCOPE")
        if any(self._environment_check_applies(p) for p in permissions):
            add(403, "ENVIRONMENT_FORBIDDEN")
        if needs_key and any(isinstance(t, ApiKeyRateThrottle) for t in self.view.get_throttles()):
            add(429, "RATE_LIMITED")
        parameters = operation.get("parameters", ())
        if any(p.get("in") == "path" for p in parameters):
            add(404, "NOT_FOUND")
        if any(p.get("in") == "query" for p in parameters):
            add(400, "VALIDATION_ERROR")
        if operation.get("requestBody"):
            for status_code, codes in _BODY_ERRORS.items():
                add(status_code, *codes)
        for status_code, codes in OPERATION_ERRORS.get(operation.get("operationId"), {}).items():
            add(status_code, *codes)
        return errors

    def _environment_check_applies(self, permission) -> bool:
        """Whether ``permission`` can refuse this method and action with 403 ``ENVIRONMENT_FORBIDDEN``
        (the rules of the classes in ``vocelio_webhooks.permissions`` and ``monitoring_views``)."""
        writes = self.method not in SAFE_METHODS
        if isinstance(permission, (PublishEnvironmentAllowed, EndpointEnvironmentAllowed)):
            action = getattr(self.view, "action", None)
            return writes and (action is None or action in permission.checked_actions)
        if isinstance(permission, AllEnvironmentsForWrites):
            return writes
        # Imported here: view modules import this one (extend_schema reads DEFAULT_SCHEMA_CLASS).
        from .monitoring_views import AllEnvironmentsOnly

        return isinstance(permission, AllEnvironmentsOnly)


def _description(status_code: int, codes: list[str]) -> str:
    meaning = STATUS_MEANINGS.get(status_code, "Error")
    return f"{meaning}. Error codes: {', '.join(codes)}."
