"""Domain exceptions raised by services and mapped by ``vocelio_webhooks.api`` to the seed's
error format ``{"error": {"code", "message", "details"}}``."""
from typing import Any


class ServiceError(Exception):
    """Base class: ``code`` is an UPPER_SNAKE error code, ``http_status`` the API status."""

    code = "SERVICE_ERROR"
    http_status = 400

    def __init__(self, message: str, *, details: dict[str, Any] | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.details = details or {}
        if code:
            self.code = code


class ValidationFailed(ServiceError):
    code = "VALIDATION_ERROR"
    http_status = 400


class NotFound(ServiceError):
    code = "NOT_FOUND"
    http_status = 404


class Conflict(ServiceError):
    code = "CONFLICT"
    http_status = 409


class ServiceUnavailable(ServiceError):
    code = "SERVICE_UNAVAILABLE"
    http_status = 503


class Forbidden(ServiceError):
    """The caller is known but may not do this (missing scope, another environment)."""

    code = "FORBIDDEN"
    http_status = 403
