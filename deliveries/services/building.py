"""Building one webhook request: the seed's envelope, the endpoint's transformation (templates),
custom headers and signature headers, over the exact bytes sent. No writes."""
import gzip
import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings
from django.utils import timezone

from endpoints import signing
from endpoints.models import WebhookEndpoint
from events.models import Event
from vocelio_webhooks.crypto import is_credential_header

logger = logging.getLogger(__name__)

HEADER_PREFIX = "X-Vocelio-"


@dataclass(frozen=True)
class WebhookRequest:
    """One ready-to-send request: ``body`` is the exact bytes sent (``None`` for GET).
    ``signed_body`` is the uncompressed body the signature covers when the endpoint asked for gzip
    (``body`` is then its gzip encoding), else ``None`` (``body`` is what was signed)."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None
    signed_body: bytes | None = None


def format_timestamp(value: datetime) -> str:
    """ISO-8601 in UTC with a ``Z`` suffix, as in the seed's payloads (``2025-08-05T17:30:00Z``)."""
    value = value.astimezone(UTC) if timezone.is_aware(value) else value
    text = value.replace(tzinfo=None).isoformat(timespec="microseconds" if value.microsecond else "seconds")
    return text + "Z"


def build_envelope(*, event: Event, retry_count: int) -> dict:
    """The seed's "Standard Payload Format": ``event_type``, ``event_id``, ``timestamp``, ``data``
    and ``metadata`` (``source_service`` and ``version`` default to ours unless the publisher set
    them; ``retry_count`` is the number of earlier attempts of this delivery)."""
    metadata = {
        "source_service": settings.WEBHOOK_SOURCE_SERVICE,
        "version": settings.WEBHOOK_PAYLOAD_VERSION,
        **(event.metadata or {}),
        "retry_count": retry_count,
    }
    return {
        "event_type": event.event_type.name,
        "event_id": event.event_id,
        "timestamp": format_timestamp(event.timestamp),
        "data": event.data,
        "metadata": metadata,
    }


def encode_body(envelope: dict) -> bytes:
    """Compact UTF-8 JSON: the bytes that are signed are the bytes that are sent."""
    return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class TransformationFailed(Exception):
    """The endpoint's payload or header template could not be rendered for this event; the
    message says where (line, column, JSON path) and why. No request is sent."""


@dataclass(frozen=True)
class ResolvedTransformation:
    """A template ready to render: ``form`` is ``"json"`` (``body`` a JSON structure) or
    ``"text"`` (``body`` a string sent with ``content_type``)."""

    form: str
    body: object
    content_type: str
    header_templates: dict[str, str]


def resolve_transformation(*, spec: dict) -> ResolvedTransformation:
    """Turn one selected template spec (``endpoints.models.select_transformation``) into what to
    render: an inline JSON template, an inline text ``body``, or a named ``PayloadTemplate``
    (its current version, or ``template_version`` when pinned). Raises ``TransformationFailed``
    when a named template or version no longer exists."""
    from templates_app.models import PayloadTemplate

    template = spec.get("template")
    if isinstance(template, str):
        named = PayloadTemplate.objects.select_related("current_version").filter(name=template).first()
        if named is None:
            raise TransformationFailed(f"Template {template!r} does not exist.")
        version = named.current_version
        if spec.get("template_version") is not None:
            version = named.versions.filter(number=spec["template_version"]).first()
        if version is None:
            raise TransformationFailed(f"Template {template!r} has no version {spec.get('template_version')}.")
        return ResolvedTransformation(
            form=version.form, body=version.body, content_type=version.content_type or "application/json",
            header_templates=dict(version.header_templates or {}),
        )
    if template is not None:
        return ResolvedTransformation(form="json", body=template, content_type="application/json", header_templates={})
    return ResolvedTransformation(
        form="text", body=spec["body"], content_type=spec.get("content_type") or "text/plain; charset=utf-8",
        header_templates={},
    )


def _templated(value: str) -> bool:
    return "{{" in value or "{%" in value


def render_payload(*, endpoint: WebhookEndpoint, envelope: dict) -> tuple[bytes, str, dict[str, str]]:
    """Body bytes, content type and custom headers for one event at one endpoint.

    Without a transformation the body is the standard envelope as compact JSON. With one, it is
    the rendered JSON template (compact JSON) or text template (sent as is, with its
    ``content_type``). Custom header values (and a named template's header templates) that
    contain Jinja2 are rendered with the same context. Raises ``TransformationFailed``.
    """
    from endpoints.models import select_transformation
    from templates_app import rendering

    spec = select_transformation(endpoint.transformation, envelope["event_type"])
    headers = dict(endpoint.custom_headers or {})
    if spec is None and not any(_templated(v) for v in headers.values()):
        return encode_body(envelope), "application/json", headers
    context = rendering.build_context(envelope)
    try:
        if spec is None:
            body, content_type = encode_body(envelope), "application/json"
        else:
            resolved = resolve_transformation(spec=spec)
            headers = {**resolved.header_templates, **headers}
            if resolved.form == "json":
                body = encode_body(rendering.render_json_template(resolved.body, context))
                content_type = "application/json"
            else:
                body = rendering.render_text_template(resolved.body, context).encode("utf-8")
                content_type = resolved.content_type
        if any(_templated(v) for v in headers.values()):
            headers = rendering.render_headers(headers, context)
            for name, value in headers.items():
                if not value.isascii():
                    raise TransformationFailed(f"Header {name!r} rendered to non-ASCII text, which HTTP cannot carry.")
                if len(value) > rendering.MAX_HEADER_VALUE_LENGTH:
                    raise TransformationFailed(
                        f"Header {name!r} rendered to more than {rendering.MAX_HEADER_VALUE_LENGTH} characters.")
        reserved = sorted(name for name in headers if rendering.is_reserved_header(name))
        if reserved:
            # Stored before this rule existed: never let them replace the sender's own headers.
            raise TransformationFailed(
                f"Header(s) {', '.join(reserved)} are set by the service and cannot be templated.")
    except rendering.TemplateRenderError as exc:
        where = ", ".join(
            part for part in (
                f"path {exc.path}" if exc.path else "", f"line {exc.line}" if exc.line else "",
                f"column {exc.column}" if exc.column else "",
            ) if part
        )
        raise TransformationFailed(f"Template error{' at ' + where if where else ''}: {exc.message}") from exc
    return body, content_type, headers


def build_request(
    *, endpoint: WebhookEndpoint, event: Event, delivery_public_id: str, attempt_number: int, url: str | None = None,
    is_replay: bool = False,
) -> WebhookRequest:
    """Build the signed request for one attempt.

    Headers: ``Content-Type``, ``User-Agent``, ``X-Vocelio-Event-Type``, ``-Event-Id``,
    ``-Delivery-Id``, ``-Timestamp`` (Unix seconds of this attempt), ``-Attempt`` (and
    ``-Replay: true`` for a replayed delivery, ``is_replay``), then the
    endpoint's custom headers (rendered when templated), then the signature headers
    (``endpoints.signing``), computed over the exact body sent (transformed or not); with
    ``gzip_requests`` the body is then sent gzip-compressed (``Content-Encoding: gzip``) and the
    signature covers the uncompressed body. GET requests
    carry no body; their signature covers the empty body. Raises ``ValueError`` when the
    endpoint's signature method lacks its secret and ``TransformationFailed`` when a template
    cannot be rendered.
    """
    envelope = build_envelope(event=event, retry_count=attempt_number - 1)
    body, content_type, custom_headers = render_payload(endpoint=endpoint, envelope=envelope)
    send_body = None if endpoint.http_method == WebhookEndpoint.HttpMethod.GET else body
    now = int(time.time())
    headers = {
        "User-Agent": settings.WEBHOOK_USER_AGENT,
        f"{HEADER_PREFIX}Event-Type": event.event_type.name,
        f"{HEADER_PREFIX}Event-Id": event.event_id,
        f"{HEADER_PREFIX}Delivery-Id": delivery_public_id,
        f"{HEADER_PREFIX}Timestamp": str(now),
        f"{HEADER_PREFIX}Attempt": str(attempt_number),
    }
    if is_replay:
        headers[f"{HEADER_PREFIX}Replay"] = "true"
    if send_body is not None:
        headers["Content-Type"] = content_type
    headers.update(custom_headers)
    headers.update(
        signing.signature_headers(
            method=endpoint.signature_method,
            secrets_=endpoint.signing_secrets(),
            api_key=endpoint.api_key,
            msg_id=event.event_id,
            delivery_id=delivery_public_id,
            event_id=event.event_id,
            event_type=event.event_type.name,
            timestamp=now,
            body=send_body or b"",
            jwt_ttl_seconds=settings.WEBHOOK_JWT_TTL_SECONDS,
        )
    )
    if send_body and endpoint.gzip_requests:
        # Content-Encoding is transport: proxies and frameworks often decode it before the
        # application reads the body, so the signature covers the uncompressed bytes.
        headers["Content-Encoding"] = "gzip"
        return WebhookRequest(method=endpoint.http_method, url=url or endpoint.url, headers=headers,
                              body=gzip.compress(send_body, compresslevel=6, mtime=0), signed_body=send_body)
    return WebhookRequest(method=endpoint.http_method, url=url or endpoint.url, headers=headers, body=send_body)


def mask_headers(headers: dict[str, str]) -> dict[str, str]:
    """Copy of ``headers`` with credentials masked (``Authorization: Bearer ***``), for storage."""
    masked = {}
    for name, value in headers.items():
        if is_credential_header(name):
            scheme = value.split(" ", 1)[0] if " " in value else ""
            masked[name] = f"{scheme} ***".strip()
        else:
            masked[name] = value
    return masked



@dataclass(frozen=True)
class BatchPart:
    """One event's element of a batch request: its rendered JSON ``body`` (exactly what a single
    request would carry) and the ids it belongs to."""

    delivery_public_id: str
    event_id: str
    event_type: str
    body: bytes


def batch_id(*, delivery_public_ids: list[str]) -> str:
    """A batch request's id, derived from its deliveries (``bat_`` + 24 hex digits): the same set
    of deliveries sent again gets the same id, a different set (a split half) a different one."""
    import hashlib

    digest = hashlib.sha256(",".join(sorted(delivery_public_ids)).encode("ascii")).hexdigest()
    return f"bat_{digest[:24]}"


def build_batch_request(
    *, endpoint: WebhookEndpoint, parts: list[BatchPart], custom_headers: dict[str, str], url: str,
    split_from: str = "",
) -> WebhookRequest:
    """Build one signed request carrying several events as a JSON array (batch delivery, issue 7).

    The body is ``[`` + the parts' bodies joined by ``,`` + ``]``: each element is byte for byte
    what a single request for that event would carry (envelope or JSON template output). Headers:
    ``Content-Type: application/json``, ``User-Agent``, ``X-Vocelio-Batch-Id``,
    ``X-Vocelio-Batch-Size``, ``X-Vocelio-Timestamp``, ``X-Vocelio-Event-Type`` (only when all
    elements share one type), ``X-Vocelio-Batch-Split-From`` (the id of the batch this one is
    half of, after a ``413`` answer: ``split_from``), the endpoint's ``custom_headers`` (already rendered, identical for
    every part), then the signature headers over the array bytes, with the batch id as the
    message id (Standard Webhooks ``webhook-id``, JWT ``delivery_id``/``event_id``). With
    ``gzip_requests`` the array is sent gzip-compressed, signed uncompressed. Pure computation (no
    database), so the sending threads call it when they split a batch. Raises ``ValueError``
    when the signature method lacks its secret.
    """
    body = b"[" + b",".join(part.body for part in parts) + b"]"
    ident = batch_id(delivery_public_ids=[part.delivery_public_id for part in parts])
    types = {part.event_type for part in parts}
    now = int(time.time())
    headers = {
        "User-Agent": settings.WEBHOOK_USER_AGENT,
        f"{HEADER_PREFIX}Batch-Id": ident,
        f"{HEADER_PREFIX}Batch-Size": str(len(parts)),
        f"{HEADER_PREFIX}Timestamp": str(now),
        "Content-Type": "application/json",
    }
    if len(types) == 1:
        headers[f"{HEADER_PREFIX}Event-Type"] = next(iter(types))
    if split_from:
        headers[f"{HEADER_PREFIX}Batch-Split-From"] = split_from
    headers.update(custom_headers)
    headers.update(
        signing.signature_headers(
            method=endpoint.signature_method, secrets_=endpoint.signing_secrets(), api_key=endpoint.api_key,
            msg_id=ident, delivery_id=ident, event_id=ident,
            event_type=next(iter(types)) if len(types) == 1 else "batch",
            timestamp=now, body=body, jwt_ttl_seconds=settings.WEBHOOK_JWT_TTL_SECONDS,
        )
    )
    if endpoint.gzip_requests:
        headers["Content-Encoding"] = "gzip"
        return WebhookRequest(method=endpoint.http_method, url=url, headers=headers,
                              body=gzip.compress(body, compresslevel=6, mtime=0), signed_body=body)
    return WebhookRequest(method=endpoint.http_method, url=url, headers=headers, body=body)
