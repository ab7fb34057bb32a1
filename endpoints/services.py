"""Writes for webhook endpoints. Each service validates the whole row (``full_clean``) and
raises ``vocelio_webhooks.errors.ValidationFailed`` with per-field details on bad input."""
from typing import Any

from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from endpoints import network
from endpoints.filters import FilterValidationError, validate_filters
from endpoints.models import WebhookEndpoint, normalize_retry_policy
from endpoints.signing import generate_secret
from vocelio_webhooks.crypto import mask
from vocelio_webhooks.errors import ValidationFailed

SECRET_METHODS = {"hmac_sha256", "hmac_sha1", "standard_webhooks", "jwt"}
WRITE_ONLY_SECRETS = ("secret", "api_key")


def validate_endpoint(endpoint: WebhookEndpoint) -> None:
    """Validate a whole endpoint (saved or not); raises ``ValidationFailed`` with per-field details."""
    try:
        endpoint.full_clean()
    except ValidationError as exc:
        raise ValidationFailed(
            "The endpoint configuration is invalid.", details={"fields": exc.message_dict}
        ) from exc
    try:
        validate_filters(endpoint.filters)
    except FilterValidationError as exc:
        raise ValidationFailed(
            f"Invalid filter at {exc.location}: {exc.message}",
            details={"location": exc.location, "fields": {"filters": [f"{exc.location}: {exc.message}"]}},
            code="INVALID_FILTER",
        ) from exc
    _validate_templates(endpoint)
    for field in ("url", "failover_url"):
        value = getattr(endpoint, field)
        if not value:
            continue
        try:
            # Names are resolved again before every attempt; here only literal addresses are
            # checked so an endpoint can be created before its DNS exists.
            network.check_destination(value, allowed_ip_ranges=endpoint.allowed_ip_ranges, resolve=False)
        except network.BlockedDestination as exc:
            raise ValidationFailed(str(exc), details={"fields": {field: [str(exc)]}}, code="URL_NOT_ALLOWED") from exc


def _template_error(exc, where: str) -> ValidationFailed:
    return ValidationFailed(
        f"{where}: {exc.message}",
        details={"location": where, "line": exc.line, "column": exc.column, "path": exc.path},
        code="TEMPLATE_SYNTAX_ERROR",
    )


def _validate_templates(endpoint: WebhookEndpoint) -> None:
    """Jinja2 syntax of inline templates and templated header values, and existence of named
    templates (and pinned versions), so a bad template is a 400 at save, not a failed delivery."""
    from templates_app import rendering
    from templates_app.models import PayloadTemplate, TemplateVersion

    for name, value in (endpoint.custom_headers or {}).items():
        if "{{" in value or "{%" in value:
            try:
                rendering.validate_template(value)
            except rendering.TemplateRenderError as exc:
                raise _template_error(exc, f"custom_headers.{name}") from exc
    spec = endpoint.transformation or {}
    specs = [("transformation", spec)] + [
        (f"transformation.event_templates.{event_type}", sub) for event_type, sub in (spec.get("event_templates") or {}).items()
    ]
    for where, item in specs:
        template, body = item.get("template"), item.get("body")
        if isinstance(template, str):
            named = PayloadTemplate.objects.filter(name=template).first()
            if named is None:
                raise ValidationFailed(f"{where}.template: no template named {template!r}.",
                                       details={"location": where, "template": template}, code="UNKNOWN_TEMPLATE")
            version = item.get("template_version")
            if version is not None and not TemplateVersion.objects.filter(template=named, number=version).exists():
                raise ValidationFailed(f"{where}.template_version: template {template!r} has no version {version}.",
                                       details={"location": where, "template": template, "version": version},
                                       code="UNKNOWN_TEMPLATE")
            continue
        for source in (template, body):
            if source is not None:
                try:
                    rendering.validate_template(source)
                except rendering.TemplateRenderError as exc:
                    raise _template_error(exc, where) from exc


@transaction.atomic
def create_endpoint(*, data: dict[str, Any]) -> WebhookEndpoint:
    """Create an endpoint from validated serializer ``data`` (model field names).

    A secret is generated (``whsec_…``) when the signature method needs one and none is given;
    the caller shows it once. The retry policy gets the seed's defaults for missing keys.
    """
    endpoint = WebhookEndpoint(**data)
    endpoint.retry_policy = normalize_retry_policy(endpoint.retry_policy)
    if endpoint.signature_method in SECRET_METHODS and not endpoint.secret:
        endpoint.secret = generate_secret()
    validate_endpoint(endpoint)
    endpoint.save()
    return endpoint


@transaction.atomic
def update_endpoint(*, endpoint: WebhookEndpoint, data: dict[str, Any]) -> WebhookEndpoint:
    """Apply ``data`` (full or partial) to ``endpoint``.

    Write-only secrets: a value equal to the masked form shown by the API (``whsec_***Ab9=``) or an
    empty string for ``secret`` leaves the stored secret unchanged.
    """
    endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
    for field, value in data.items():
        if field in WRITE_ONLY_SECRETS:
            current = getattr(endpoint, field)
            if value == mask(current) or (field == "secret" and value == ""):
                continue
        if field == "retry_policy":
            value = normalize_retry_policy(value)
        if field == "custom_headers":
            value = _keep_masked_headers(new=value, current=endpoint.custom_headers or {})
        setattr(endpoint, field, value)
    if endpoint.signature_method in SECRET_METHODS and not endpoint.secret:
        endpoint.secret = generate_secret()
    validate_endpoint(endpoint)
    endpoint.save()
    return endpoint


def _keep_masked_headers(*, new: dict[str, str], current: dict[str, str]) -> dict[str, str]:
    """A custom header sent back in its masked form (as the API shows credential headers) keeps
    its stored value."""
    from endpoints.serializers import mask_custom_headers

    shown = mask_custom_headers(current)
    return {name: current[name] if name in current and value == shown.get(name) != current[name] else value
            for name, value in new.items()}


def set_status(*, endpoint: WebhookEndpoint, status: str, reason: str = "") -> WebhookEndpoint:
    """Set ``active``, ``paused`` or ``disabled`` (with an optional ``reason``).

    Paused and disabled endpoints keep their waiting deliveries; they go out within one sweep
    interval of the endpoint becoming active again.
    """
    if status not in WebhookEndpoint.Status.values:
        raise ValidationFailed(
            f"Unknown status {status!r}.", details={"fields": {"status": [f"Use one of {WebhookEndpoint.Status.values}."]}}
        )
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(status=status, status_reason=reason[:500])
    endpoint.refresh_from_db()
    return endpoint


def delete_endpoint(*, endpoint: WebhookEndpoint) -> None:
    """Delete an endpoint. Its deliveries and attempts stay as history (endpoint set to null);
    those not yet final are cancelled by the next sweep or attempt."""
    endpoint.delete()


@transaction.atomic
def rotate_secret(*, endpoint: WebhookEndpoint, new_secret: str | None = None,
                  overlap_seconds: int | None = None) -> WebhookEndpoint:
    """Issue a new signing secret (``new_secret`` or a generated ``whsec_…``) and keep the
    current one valid for ``overlap_seconds`` (default ``WEBHOOK_SECRET_ROTATION_OVERLAP_SECONDS``,
    24 h; at most 7 days — Svix's defaults): until then every delivery carries a signature from
    each (``endpoints.signing.signature_headers``). ``overlap_seconds=0`` drops the old secret at
    once. Raises ``ValidationFailed`` for a bad secret or overlap, or when the endpoint's
    signature method uses no secret. The caller shows the new secret once.
    """
    endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
    if endpoint.signature_method not in SECRET_METHODS:
        raise ValidationFailed(
            f"signature_method '{endpoint.signature_method}' uses no secret to rotate.",
            details={"signature_method": endpoint.signature_method}, code="NOTHING_TO_ROTATE",
        )
    overlap = settings.WEBHOOK_SECRET_ROTATION_OVERLAP_SECONDS if overlap_seconds is None else overlap_seconds
    if not 0 <= overlap <= 7 * 86400:
        raise ValidationFailed("overlap_seconds must be between 0 and 604800 (7 days).",
                               details={"fields": {"overlap_seconds": ["Between 0 and 604800."]}})
    old = endpoint.secret
    endpoint.secret = new_secret or generate_secret()
    if overlap and old:
        endpoint.previous_secret = old
        endpoint.previous_secret_expires_at = timezone.now() + timedelta(seconds=overlap)
    else:
        endpoint.previous_secret = ""
        endpoint.previous_secret_expires_at = None
    validate_endpoint(endpoint)
    endpoint.save()
    return endpoint
