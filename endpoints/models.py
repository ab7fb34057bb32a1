"""Webhook endpoints: where we send, how we sign, which event types they subscribe to.

Field validators live here so the model, the API serializers and the admin share one set of
rules (NetBox's ``Webhook.clean`` is the model).
"""
import re
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxLengthValidator, MaxValueValidator, MinValueValidator
from django.db import models
from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

from events.models import Environment
from templates_app.rendering import CONTENT_TYPE_RE, HEADER_NAME_RE, MAX_HEADER_NAME_LENGTH, is_reserved_header
from vocelio_webhooks.crypto import EncryptedJSONField, EncryptedTextField
from vocelio_webhooks.fields import OrderedJSONField
from vocelio_webhooks.validators import (
    reject_control_characters,
    reject_control_characters_multiline,
    reject_nul_characters,
)

EVENT_PATTERN_RE = re.compile(r"^(\*|[a-z0-9_]+(\.[a-z0-9_]+)*(\.\*)?)\Z")
# Headers we set ourselves; letting custom headers replace them would break signing or framing.
RESERVED_HEADERS = frozenset(
    {"content-length", "host", "transfer-encoding", "connection", "webhook-id", "webhook-timestamp",
     "webhook-signature", "x-vocelio-signature", "x-vocelio-signature-previous", "x-vocelio-jwt-previous"}
)


def default_retry_policy() -> dict[str, Any]:
    """The seed's "Exponential Backoff Policy", exactly (keys, types and defaults); ``max_attempts``
    is ``WEBHOOK_DEAD_LETTER_THRESHOLD`` (the seed's ``dead_letter_threshold``, 5)."""
    from django.conf import settings

    return {
        "enabled": True,
        "max_attempts": settings.WEBHOOK_DEAD_LETTER_THRESHOLD,
        "initial_delay_seconds": 1,
        "max_delay_seconds": 300,
        "backoff_multiplier": 2.0,
        "retry_on_status_codes": [408, 429, 500, 502, 503, 504],
    }


# 300-599 holds 300 codes, of which about 40 are registered; 100 leaves room for private codes.
MAX_RETRY_STATUS_CODES = 100
RETRY_POLICY_BOUNDS = {
    "max_attempts": (1, 50),
    "initial_delay_seconds": (0, 86400),
    "max_delay_seconds": (0, 7 * 86400),
    "backoff_multiplier": (1.0, 10.0),
}


def validate_retry_policy(value: Any) -> None:
    """Check a retry policy has exactly the seed's keys, with types and bounds.

    Missing keys are allowed on input (``normalize_retry_policy`` fills defaults); unknown keys,
    wrong types and out-of-range numbers raise ``ValidationError``. ``retry_on_status_codes``
    holds at most ``MAX_RETRY_STATUS_CODES`` distinct codes from 300 to 599: a 2xx is a success
    and never retried, a 1xx is never a final response, and a code listed twice is refused rather
    than silently de-duplicated.
    """
    if not isinstance(value, dict):
        raise ValidationError("retry_policy must be an object.")
    unknown = set(value) - set(default_retry_policy())
    if unknown:
        raise ValidationError(f"Unknown retry_policy keys: {', '.join(sorted(unknown))}.")
    if "enabled" in value and not isinstance(value["enabled"], bool):
        raise ValidationError("retry_policy.enabled must be true or false.")
    for key, (low, high) in RETRY_POLICY_BOUNDS.items():
        if key not in value:
            continue
        number = value[key]
        integer_only = key != "backoff_multiplier"
        if isinstance(number, bool) or not isinstance(number, int if integer_only else (int, float)):
            raise ValidationError(f"retry_policy.{key} must be a{'n integer' if integer_only else ' number'}.")
        if not low <= number <= high:
            raise ValidationError(f"retry_policy.{key} must be between {low} and {high}.")
    merged = {**default_retry_policy(), **value}
    if merged["initial_delay_seconds"] > merged["max_delay_seconds"]:
        raise ValidationError("retry_policy.initial_delay_seconds must not exceed max_delay_seconds.")
    codes = value.get("retry_on_status_codes", [])
    if not isinstance(codes, list) or not all(isinstance(c, int) and not isinstance(c, bool) for c in codes):
        raise ValidationError("retry_policy.retry_on_status_codes must be a list of HTTP status codes.")
    if len(codes) > MAX_RETRY_STATUS_CODES:
        raise ValidationError(f"retry_policy.retry_on_status_codes may hold at most {MAX_RETRY_STATUS_CODES} codes.")
    for code in codes:
        if not 300 <= code <= 599:
            raise ValidationError(
                f"retry_policy.retry_on_status_codes holds {code}: retried status codes are 300 to 599 "
                "(a 2xx is a success, a 1xx never a final response).")
    duplicates = sorted({code for code in codes if codes.count(code) > 1})
    if duplicates:
        raise ValidationError(f"retry_policy.retry_on_status_codes lists {duplicates[0]} more than once.")


def normalize_retry_policy(value: dict[str, Any] | None) -> dict[str, Any]:
    """Return ``value`` with the seed's defaults filled in for missing keys."""
    return {**default_retry_policy(), **(value or {})}


def validate_webhook_url(value: str) -> None:
    """An absolute ``http``/``https`` URL with a host, no credentials, no fragment, ≤ 2048 chars."""
    if not isinstance(value, str) or len(value) > 2048:
        raise ValidationError("URL must be a string of at most 2048 characters.")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 — raises ValueError on a bad port
    except ValueError as exc:
        raise ValidationError(f"Invalid URL: {exc}.") from exc
    if parts.scheme not in ("http", "https"):
        raise ValidationError("URL scheme must be http or https.")
    if not parts.hostname:
        raise ValidationError("URL must include a host.")
    if parts.port == 0:
        raise ValidationError("URL port must be between 1 and 65535.")
    try:
        ipaddress_or_name = parts.hostname.strip("[]")
        if not any(ch == ":" for ch in ipaddress_or_name):
            ipaddress_or_name.encode("idna")  # each label 1-63 characters, valid IDNA
    except UnicodeError as exc:
        raise ValidationError(
            "URL host is not a valid host name (each dot-separated label is 1-63 characters).") from exc
    if parts.username or parts.password:
        raise ValidationError("URL must not contain credentials; use custom_headers or signature_method.")
    if parts.fragment:
        raise ValidationError("URL must not contain a fragment.")
    if any(ch.isspace() or ord(ch) < 32 for ch in value):
        raise ValidationError("URL must not contain spaces or control characters.")
    if ":" not in parts.hostname and not _sendable_host_name(parts.hostname):
        raise ValidationError(
            "URL host is not a valid host name (letters, digits, '-', '_' and '.'; a non-ASCII name must be "
            "valid IDNA 2008).")


# The ASCII characters of a host name as the sender connects to it: no percent-encoding, '\\', '<',
# '^', … Non-ASCII characters are judged by urllib3's IDNA 2008 encoder (``_sendable_host_name``):
# ``\w`` would refuse the combining vowel signs and viramas of Devanagari, Thai, Tamil, … names
# (categories Mn/Mc) and the ZWNJ of Persian ones, all valid IDNA 2008.
_HOST_NAME_ASCII_RE = re.compile(r"[A-Za-z0-9_.-]")


def _sendable_host_name(host: str) -> bool:
    """Whether the sender (``requests``/urllib3) connects to the host name ``host`` that
    ``urlsplit`` read, rather than to another one or to none.

    Found in a walk: ``urlsplit`` and urllib3 read some hosts differently, so endpoints were saved
    that could never be delivered to, and the save-time check of literal addresses looked at
    another host than the one connected to: ``http://a\\b.com/`` is sent to host ``a``,
    ``%31%36%39.254.169.254`` is the metadata address (refused only when connecting), ``a<b>.com``
    is sent percent-encoded, and ``⒈.com`` (U+2488; IDNA 2003 accepts it, urllib3's IDNA 2008
    does not) failed every delivery as ``invalid_request``. The non-ASCII labels are checked by
    urllib3's own parser, which encodes them when sending."""
    if any(ch.isascii() and not _HOST_NAME_ASCII_RE.fullmatch(ch) for ch in host):
        return False
    if host.isascii():
        return True
    try:
        parse_url(f"http://{host}/")
    except LocationParseError:
        return False
    return True


MAX_HEADER_VALUE_LENGTH = 8192
# An endpoint's description: several lines of notes (event types and templates take 300 and 500
# characters on one line).
MAX_DESCRIPTION_LENGTH = 2000


def header_value_problem(value: Any) -> str | None:
    """Why ``value`` cannot be sent as an HTTP header value, or ``None`` when it can.

    The rule for every user-supplied string that becomes an outgoing header value (custom header
    values, ``api_key`` sent as ``X-API-Key``, a transformation's ``content_type``): a string of
    at most 8192 characters of visible ASCII (U+0021-U+007E) with spaces and tabs allowed inside
    but not at either end, so no CR, LF, NUL or other control character. That is RFC 9110's
    ``field-value`` without ``obs-text`` (5.5), and what requests checks before sending
    (``InvalidHeader`` for leading whitespace or CR/LF; ``UnicodeEncodeError`` beyond Latin-1):
    refused here, at save, a bad value is a 400 instead of a delivery failing every time with an
    error message that quotes it. The problem text never quotes the value: it may be a credential.
    """
    if not isinstance(value, str):
        return "must have a string value"
    if len(value) > MAX_HEADER_VALUE_LENGTH:
        return f"is longer than {MAX_HEADER_VALUE_LENGTH} characters"
    for index, ch in enumerate(value):
        if "!" <= ch <= "~" or ch in " \t":
            continue
        if ord(ch) < 0x20 or ord(ch) == 0x7F:
            return f"contains CR, LF or another control character (U+{ord(ch):04X} at position {index})"
        return (f"must be ASCII (HTTP header values cannot carry other characters; U+{ord(ch):04X} at "
                f"position {index})")
    if value != value.strip(" \t"):
        return "starts or ends with a space or tab"
    return None


def validate_custom_headers(value: Any) -> None:
    """A flat object of header name → string value: RFC 9110 names of at most
    ``MAX_HEADER_NAME_LENGTH`` (256) characters, values that pass
    ``header_value_problem`` (templated values too: their source is checked here, their rendered
    text again when sending), none of the headers the sender sets itself."""
    if not isinstance(value, dict):
        raise ValidationError("custom_headers must be an object of header name to value.")
    if len(value) > 50:
        raise ValidationError("custom_headers may hold at most 50 headers.")
    for name, header_value in value.items():
        if len(name) > MAX_HEADER_NAME_LENGTH:
            raise ValidationError(f"Header name {name[:100]!r}… is longer than {MAX_HEADER_NAME_LENGTH} characters.")
        if not HEADER_NAME_RE.match(name):
            raise ValidationError(f"Invalid header name {name!r}.")
        if name.lower() in RESERVED_HEADERS or is_reserved_header(name):
            raise ValidationError(f"Header {name!r} is set by the service and cannot be overridden.")
        problem = header_value_problem(header_value)
        if problem:
            raise ValidationError(f"Header {name!r} {problem}.")


# Hook0 allows 1..100 event types per subscription; the seed's catalog has 30 types, and a
# category wildcard (``lead.*``) covers a whole category in one entry.
MAX_EVENT_PATTERNS = 100


def validate_event_patterns(value: Any) -> None:
    """A non-empty list of at most ``MAX_EVENT_PATTERNS`` distinct event types or wildcards:
    ``lead.created``, ``lead.*`` or ``*``. A pattern listed twice is refused rather than silently
    de-duplicated, so what is stored (and audited) is exactly what the client sent. Whether an
    exact type exists is checked with the database (``unknown_event_types``)."""
    if not isinstance(value, list) or not value:
        raise ValidationError("events must be a non-empty list of event types or wildcards (e.g. 'lead.*', '*').")
    if len(value) > MAX_EVENT_PATTERNS:
        raise ValidationError(f"events may hold at most {MAX_EVENT_PATTERNS} patterns (use a wildcard such as "
                              f"'lead.*'); got {len(value)}.")
    seen: set[str] = set()
    for pattern in value:
        if not isinstance(pattern, str) or len(pattern) > 100 or not EVENT_PATTERN_RE.match(pattern):
            shown = pattern if not isinstance(pattern, str) or len(pattern) <= 100 else pattern[:100] + "…"
            raise ValidationError(f"Invalid event pattern {shown!r}; use 'lead.created', 'lead.*' or '*'.")
        if pattern in seen:
            raise ValidationError(f"Event pattern {pattern!r} is listed more than once.")
        seen.add(pattern)


def unknown_event_types(patterns: Any, *, already_subscribed: Any = ()) -> list[str]:
    """The exact event type names in ``patterns`` (a list of strings; wildcards such as ``lead.*``
    and ``*`` are never unknown) that no ``EventType`` row has, in the order given.

    ``already_subscribed``: the endpoint's stored patterns; names in it are not checked again, so an
    endpoint saved before this rule (or whose type was removed since) can still be edited without
    re-sending its ``events``. One query. Svix refuses unknown event types in an endpoint's
    ``filterTypes`` the same way; an unknown name would otherwise never match anything."""
    from events.models import EventType

    if not isinstance(patterns, list):
        return []
    previous = set(already_subscribed or ())
    exact = [p for p in patterns if isinstance(p, str) and "*" not in p and p not in previous]
    if not exact:
        return []
    existing = set(EventType.objects.filter(name__in=exact).values_list("name", flat=True))
    return [name for name in exact if name not in existing]


def validate_ip_ranges(value: Any) -> None:
    """A list of CIDRs or single addresses (IPv4 or IPv6)."""
    import ipaddress

    if not isinstance(value, list):
        raise ValidationError("allowed_ip_ranges must be a list of CIDR ranges.")
    for item in value:
        try:
            ipaddress.ip_network(item, strict=False)
        except (TypeError, ValueError) as exc:
            raise ValidationError(f"Invalid IP range {item!r}.") from exc


CA_BUNDLE_MAX_CHARS = 262144
PEM_LABEL_RE = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----")


def validate_ca_bundle(value: Any) -> None:
    """PEM text of one or more X.509 certificates (``-----BEGIN CERTIFICATE-----`` blocks) that an
    endpoint trusts instead of the default store, at most 256 KiB. Each block must parse as a
    certificate (``cryptography``) and the whole must load into an ``ssl`` context; any other
    PEM block (a private key pasted by mistake) is refused."""
    import ssl

    from cryptography import x509

    if not isinstance(value, str) or len(value) > CA_BUNDLE_MAX_CHARS:
        raise ValidationError(f"ca_bundle must be PEM text of at most {CA_BUNDLE_MAX_CHARS} characters.")
    labels = PEM_LABEL_RE.findall(value)
    if not labels:
        raise ValidationError("ca_bundle must be PEM text: one or more '-----BEGIN CERTIFICATE-----' blocks.")
    others = sorted(set(labels) - {"CERTIFICATE"})
    if others:
        raise ValidationError(
            f"ca_bundle may only hold CERTIFICATE blocks, not {', '.join(others)}; never send a private key here."
        )
    try:
        certificates = x509.load_pem_x509_certificates(value.encode("ascii"))
        ssl.create_default_context(cadata=value)
    except (ValueError, UnicodeEncodeError, ssl.SSLError) as exc:
        raise ValidationError(f"ca_bundle does not parse as PEM certificates: {exc}") from exc
    if len(certificates) != len(labels):
        raise ValidationError("ca_bundle has a CERTIFICATE block that does not parse as a certificate.")


def validate_production_transport(*, url: str, field: str) -> dict[str, str]:
    """Errors (field → message) for a production endpoint's ``url``/``failover_url``: ``https``
    is required unless the destination is an internal receiver the deployment opened
    (``WEBHOOK_ALLOW_PRIVATE_NETWORKS`` / ``WEBHOOK_ALLOWED_PRIVATE_CIDRS``) or
    ``WEBHOOK_ALLOW_HTTP_IN_PRODUCTION`` is on (``endpoints.network.plain_http_allowed_in_production``)."""
    from endpoints import network

    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError:
        return {}  # the field validator reports the malformed URL
    if scheme != "http" or network.plain_http_allowed_in_production(url):
        return {}
    return {field: ("Production endpoints need an https URL; plain http is only for internal receivers "
                    "opened by WEBHOOK_ALLOW_PRIVATE_NETWORKS / WEBHOOK_ALLOWED_PRIVATE_CIDRS, or with "
                    "WEBHOOK_ALLOW_HTTP_IN_PRODUCTION=true.")}


TRANSFORMATION_TEMPLATE_KEYS = frozenset({"template", "template_version", "body", "content_type"})
TRANSFORMATION_KEYS = TRANSFORMATION_TEMPLATE_KEYS | {"enabled", "event_templates"}


def _validate_template_choice(spec: Any, where: str) -> None:
    if not isinstance(spec, dict):
        raise ValidationError(f"{where} must be an object.")
    allowed = TRANSFORMATION_TEMPLATE_KEYS | ({"enabled", "event_templates"} if where == "transformation" else set())
    unknown = set(spec) - allowed
    if unknown:
        raise ValidationError(f"Unknown {where} keys: {', '.join(sorted(map(str, unknown)))}.")
    template, body = spec.get("template"), spec.get("body")
    if (template is None) == (body is None):
        raise ValidationError(f"{where} needs exactly one of 'template' (a JSON template or a template name) "
                              "or 'body' (a text template).")
    if template is not None and not isinstance(template, (dict, list, str)):
        raise ValidationError(f"{where}.template must be a JSON object or list (inline) or a template name.")
    if isinstance(template, str) and not template:
        raise ValidationError(f"{where}.template must not be empty.")
    version = spec.get("template_version")
    if "template_version" in spec and (not isinstance(template, str) or isinstance(version, bool)
                                       or not isinstance(version, int) or version < 1):
        raise ValidationError(f"{where}.template_version pins a named template: a version number >= 1.")
    if body is not None and not isinstance(body, str):
        raise ValidationError(f"{where}.body must be a string (a text template).")
    content_type = spec.get("content_type")
    if content_type is not None and (not isinstance(content_type, str) or len(content_type) > 200
                                     or not CONTENT_TYPE_RE.match(content_type)):
        # Sent as the Content-Type header: a media type, as for a named template (one rule).
        raise ValidationError(f"{where}.content_type must be a media type such as 'application/xml' "
                              "(visible ASCII, at most 200 characters).")


def validate_transformation(value: Any) -> None:
    """Shape of ``WebhookEndpoint.transformation`` (the seed's "Payload Transformation", extended):

    ``{"enabled": true, "template": <inline JSON template> | "<template name>",
    "template_version": N (pins a named template), "body": "<text template>",
    "content_type": "application/xml" (for ``body``), "event_templates": {"lead.created": {…}}}``
    — exactly one of ``template``/``body`` per level; ``event_templates`` maps an event type to its
    own ``template``/``body`` and the top level is the default. ``null`` means no transformation.
    Template syntax and template names are checked by ``endpoints.services.validate_endpoint``.
    The whole object is limited like a named template (``validate_inline_template_size``).
    """
    if value is None:
        return
    if not isinstance(value, dict):
        raise ValidationError("transformation must be an object or null.")
    validate_inline_template_size(value)
    if "enabled" in value and not isinstance(value["enabled"], bool):
        raise ValidationError("transformation.enabled must be true or false.")
    event_templates = value.get("event_templates", {})
    if not isinstance(event_templates, dict):
        raise ValidationError("transformation.event_templates must map event types to templates.")
    if "template" in value or "body" in value or not event_templates:
        _validate_template_choice(value, "transformation")
    else:
        unknown = set(value) - TRANSFORMATION_KEYS
        if unknown:
            raise ValidationError(f"Unknown transformation keys: {', '.join(sorted(map(str, unknown)))}.")
    for event_type, spec in event_templates.items():
        if not EVENT_PATTERN_RE.match(str(event_type)) or "*" in str(event_type):
            raise ValidationError(f"transformation.event_templates key {event_type!r} must be an event type.")
        _validate_template_choice(spec, f"transformation.event_templates.{event_type}")


def validate_inline_template_size(value: Any) -> None:
    """Refuse an inline transformation larger than a named template may be: the whole object
    (every inline ``template``/``body`` with its ``event_templates``), measured as
    ``templates_app.services.validate_content`` measures a template version (UTF-8 bytes of its
    JSON), at most ``MAX_TEMPLATE_SOURCE_BYTES`` (64 KiB). Same message as ``POST /templates``.
    Without it, a 2 MB inline body was stored and compiled by every delivery."""
    import json

    from templates_app.services import MAX_TEMPLATE_SOURCE_BYTES

    size = len(json.dumps(value, ensure_ascii=False).encode("utf-8"))
    if size > MAX_TEMPLATE_SOURCE_BYTES:
        raise ValidationError(f"The template is {size} bytes; the limit is {MAX_TEMPLATE_SOURCE_BYTES}.")


def select_transformation(value: dict | None, event_type: str) -> dict | None:
    """The template spec that applies to ``event_type``: its ``event_templates`` entry, else the
    top-level one; ``None`` when there is no transformation, it is disabled, or only other event
    types have templates."""
    if not value or value.get("enabled", True) is False:
        return None
    specific = (value.get("event_templates") or {}).get(event_type)
    if specific is not None:
        return specific
    if value.get("template") is not None or value.get("body") is not None:
        return value
    return None


# Largest batch_max_events: keeps a batch request well under common receiver body limits (1-10 MB)
# for ~1 KB events, and the per-delivery attempt rows of one request bounded.
BATCH_MAX_EVENTS_LIMIT = 100


def _default_timeout() -> int:
    return settings.WEBHOOK_TIMEOUT_SECONDS


# Highest rate_limit_per_minute: 100,000 a minute (~1,700 a second) is beyond what one endpoint's
# lane delivers; Convoy's default is 5,000 a minute. Any higher number means "no limit": send null.
RATE_LIMIT_PER_MINUTE_MAX = 100_000


def number_ranges() -> dict[str, tuple[int, int, str]]:
    """The documented range of each integer endpoint field: ``{field: (low, high, message)}``.
    The one message is used for every value out of range, however far (0, -5, 10**30), by the API
    serializer and by ``WebhookEndpoint.clean`` (admin). The timeout's upper bound is the
    ``WEBHOOK_MAX_TIMEOUT_SECONDS`` setting (default 60)."""
    top = settings.WEBHOOK_MAX_TIMEOUT_SECONDS
    return {
        "timeout_seconds": (1, top, f"Must be between 1 and {top} seconds."),
        "rate_limit_per_minute": (1, RATE_LIMIT_PER_MINUTE_MAX,
                                  (f"Must be between 1 and {RATE_LIMIT_PER_MINUTE_MAX} requests per minute, "
                                   "or null for no limit.")),
        "batch_max_events": (1, BATCH_MAX_EVENTS_LIMIT, f"Must be between 1 and {BATCH_MAX_EVENTS_LIMIT} events."),
    }


class WebhookEndpoint(models.Model):
    """One receiver of webhooks (the seed's "webhook endpoint")."""

    class HttpMethod(models.TextChoices):
        GET = "GET"
        POST = "POST"
        PUT = "PUT"
        PATCH = "PATCH"
        DELETE = "DELETE"

    class SignatureMethod(models.TextChoices):
        NONE = "none"
        HMAC_SHA256 = "hmac_sha256"
        HMAC_SHA1 = "hmac_sha1"
        STANDARD_WEBHOOKS = "standard_webhooks"
        JWT = "jwt"
        API_KEY = "api_key"

    class Status(models.TextChoices):
        ACTIVE = "active"
        PAUSED = "paused"
        DISABLED = "disabled"

    # Names reach terminals (manage.py endpoint_health), logs and the admin: no control or bidi characters.
    name = models.CharField(max_length=200, validators=[reject_control_characters])
    # Notes for support staff (several lines allowed), returned in every endpoint list: bounded.
    description = models.TextField(blank=True, validators=[MaxLengthValidator(MAX_DESCRIPTION_LENGTH),
                                                            reject_control_characters_multiline])
    url = models.CharField(max_length=2048, validators=[validate_webhook_url])
    http_method = models.CharField(max_length=6, choices=HttpMethod.choices, default=HttpMethod.POST)
    events = models.JSONField(default=list, validators=[validate_event_patterns])
    # Encrypted at rest: custom headers often carry credentials (Authorization: Bearer …).
    custom_headers = EncryptedJSONField(default=dict, blank=True, validators=[validate_custom_headers])
    secret = EncryptedTextField(blank=True)
    signature_method = models.CharField(
        max_length=20, choices=SignatureMethod.choices, default=SignatureMethod.HMAC_SHA256
    )
    api_key = EncryptedTextField(blank=True)
    # Secret rotation: the previous secret keeps signing (second signature) until it expires.
    previous_secret = EncryptedTextField(blank=True)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)
    retry_policy = models.JSONField(default=default_retry_policy, validators=[validate_retry_policy])
    timeout_seconds = models.PositiveIntegerField(default=_default_timeout)
    rate_limit_per_minute = models.PositiveIntegerField(null=True, blank=True)
    environment = models.CharField(max_length=20, choices=Environment.choices, default=Environment.PRODUCTION)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE, db_index=True)
    status_reason = models.CharField(max_length=500, blank=True)
    failover_url = models.CharField(max_length=2048, blank=True, validators=[validate_webhook_url])
    allowed_ip_ranges = models.JSONField(default=list, blank=True, validators=[validate_ip_ranges])
    verify_ssl = models.BooleanField(default=True)
    # Send bodies gzip-compressed (Content-Encoding: gzip); the signature covers the uncompressed body.
    gzip_requests = models.BooleanField(default=False)
    # Batch delivery (issue 7): up to this many due events in one request, as a JSON array; 1 = off.
    batch_max_events = models.PositiveSmallIntegerField(
        default=1, validators=[MinValueValidator(1), MaxValueValidator(BATCH_MAX_EVENTS_LIMIT)])
    # PEM bundle of CA certificates to trust for this endpoint instead of the system store.
    ca_bundle = models.TextField(blank=True)
    owner_email = models.EmailField(blank=True)
    # Payload filters (endpoints.filters) and the payload transformation (templates_app).
    # jsonb cannot hold \u0000: refused here too, so the admin's form says so instead of a 500
    filters = models.JSONField(null=True, blank=True, validators=[reject_nul_characters])
    transformation = OrderedJSONField(null=True, blank=True, validators=[validate_transformation])
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["environment", "status"])]

    def __str__(self) -> str:
        return f"{self.name} → {self.url}"

    def clean(self) -> None:
        """Cross-field rules: number ranges (``number_ranges``), exact event types that exist
        (``unknown_event_types``; names already stored are not re-checked), secrets the signature method needs
        (``api_key`` must also be a valid header value, ``header_value_problem``), JWT vs a custom
        ``Authorization`` header, and TLS (issue 5): a ``ca_bundle`` must be PEM certificates;
        production endpoints always verify certificates and use ``https`` unless the destination
        is an internal receiver the deployment opened (``validate_production_transport``)."""
        errors: dict[str, str] = {}
        if self.ca_bundle:
            try:
                validate_ca_bundle(self.ca_bundle)
            except ValidationError as exc:
                errors["ca_bundle"] = exc.messages[0]
        if self.environment == Environment.PRODUCTION:
            if not self.verify_ssl:
                errors["verify_ssl"] = ("Production endpoints always verify TLS certificates; trust a private CA "
                                        "with ca_bundle instead, or use a development or staging endpoint.")
            for field in ("url", "failover_url"):
                if getattr(self, field):
                    errors.update(validate_production_transport(url=getattr(self, field), field=field))
        ranges = number_ranges()
        for field in ("timeout_seconds", "rate_limit_per_minute"):  # batch_max_events: its field validators
            low, high, message = ranges[field]
            value = getattr(self, field)
            if (value is not None or field == "timeout_seconds") and not low <= (value or 0) <= high:
                errors[field] = message
        stored_events = (type(self).objects.filter(pk=self.pk).values_list("events", flat=True).first()
                         if self.pk else None)
        unknown = unknown_event_types(self.events, already_subscribed=stored_events or ())
        if unknown:
            # The API answers UNKNOWN_EVENT_TYPE before this (EndpointSerializer.validate_events);
            # this is the admin's and any other full_clean caller's copy of the rule.
            errors["events"] = (f"Unknown event type(s): {', '.join(unknown)}. Create the type first "
                                "(POST /event-types) or use a wildcard such as 'lead.*'.")
        method = self.signature_method
        if self.secret and (len(self.secret) < 16 or len(self.secret) > 500
                            or any(not "!" <= ch <= "~" for ch in self.secret) or "***" in self.secret):
            errors["secret"] = ("A secret is 16 to 500 printable ASCII characters without spaces "
                                "(omit it to get one generated).")
        if method == self.SignatureMethod.STANDARD_WEBHOOKS and self.secret and "secret" not in errors:
            from endpoints.signing import parse_standard_secret

            try:
                parse_standard_secret(self.secret)
            except ValueError as exc:
                errors["secret"] = str(exc)
        if method == self.SignatureMethod.API_KEY and not self.api_key:
            errors["api_key"] = "signature_method 'api_key' needs an api_key to send as X-API-Key."
        api_key_problem = header_value_problem(self.api_key) if self.api_key else None
        if api_key_problem:
            # Sent as the X-API-Key header value; the message never quotes the key.
            errors["api_key"] = f"The api_key is sent as the X-API-Key header value: it {api_key_problem}."
        if method == self.SignatureMethod.JWT and any(
            name.lower() == "authorization" for name in (self.custom_headers or {})
        ):
            errors["custom_headers"] = ("signature_method 'jwt' sends Authorization: Bearer <jwt>; "
                                        "remove the custom Authorization header.")
        if errors:
            raise ValidationError(errors)

    def signing_secrets(self, *, now=None) -> list[str]:
        """Secrets that sign a delivery now, newest first: the current one, plus the previous one
        while its rotation overlap lasts."""
        from django.utils import timezone

        secrets_ = [self.secret] if self.secret else []
        now = now or timezone.now()
        if self.previous_secret and self.previous_secret_expires_at and self.previous_secret_expires_at > now:
            secrets_.append(self.previous_secret)
        return secrets_

    @property
    def effective_retry_policy(self) -> dict[str, Any]:
        """The retry policy with the seed's defaults filled in."""
        return normalize_retry_policy(self.retry_policy)


class EndpointHealth(models.Model):
    """Shared health state of one endpoint (circuit breaker, failure streak), read and written by
    every worker process: the rules are in ``endpoints.health``."""

    class CircuitState(models.TextChoices):
        CLOSED = "closed"
        OPEN = "open"
        HALF_OPEN = "half_open"

    endpoint = models.OneToOneField(WebhookEndpoint, on_delete=models.CASCADE, primary_key=True, related_name="health")
    circuit_state = models.CharField(max_length=10, choices=CircuitState.choices, default=CircuitState.CLOSED)
    consecutive_failures = models.PositiveIntegerField(default=0)
    reopen_count = models.PositiveIntegerField(default=0)
    next_probe_at = models.DateTimeField(null=True, blank=True)
    failing_since = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_failure_at = models.DateTimeField(null=True, blank=True)
    # Set when the service disabled the endpoint itself: the periodic probe may re-enable it.
    auto_disabled_at = models.DateTimeField(null=True, blank=True)
    last_owner_alert_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "endpoint health"

    def __str__(self) -> str:
        return f"{self.endpoint_id}: {self.circuit_state}"


class RateLimitWindow(models.Model):
    """Requests sent to one endpoint in one minute, counted atomically across workers
    (``rate_limit_per_minute``). Old windows are deleted by the sweep."""

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="+")
    window_start = models.DateTimeField()
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["endpoint", "window_start"], name="ratelimit_unique_window")]
