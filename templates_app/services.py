"""Writes for payload templates (every change is a new ``TemplateVersion``), name resolution for
the delivery path, and rendering a version against an event envelope."""
import json
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from events.models import EventType
from templates_app import rendering
from templates_app.models import PayloadTemplate, TemplateVersion
from vocelio_webhooks.errors import Conflict, NotFound, ValidationFailed

DEFAULT_JSON_CONTENT_TYPE = "application/json"
DEFAULT_TEST_EVENT_TYPE = "lead.created"
# The stored template (body plus header templates, as JSON) may not exceed this many bytes.
MAX_TEMPLATE_SOURCE_BYTES = 65_536
_UNSET: Any = object()


@dataclass(frozen=True)
class RenderedPayload:
    """A rendered template: ``output`` is a JSON value (json form) or a string (text form);
    ``body`` is the exact bytes to send and sign (compact UTF-8 JSON, or the text as UTF-8)."""

    output: Any
    form: str
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def body(self) -> bytes:
        if self.form == TemplateVersion.Form.TEXT:
            return self.output.encode("utf-8")
        return json.dumps(self.output, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


@transaction.atomic
def create_template(
    *,
    name: str,
    form: str,
    body: Any,
    content_type: str | None = None,
    header_templates: dict[str, str] | None = None,
    description: str = "",
    author: str,
    note: str = "",
) -> PayloadTemplate:
    """Create a template and its version 1.

    ``form`` is ``json`` (``body`` a dict or list whose string leaves are Jinja2) or ``text``
    (``body`` one Jinja2 string; ``content_type`` required). ``content_type`` defaults to
    ``application/json`` for the json form. Syntax is checked here (STYLE 21). Raises
    ``ValidationFailed``: ``TEMPLATE_SYNTAX_ERROR`` with details ``{field, path, line, column}``, or
    ``VALIDATION_ERROR`` with per-field details; ``Conflict`` when the name is taken.
    """
    template = PayloadTemplate(name=name, description=description)
    _full_clean(template)
    if PayloadTemplate.objects.filter(name=name).exists():
        raise Conflict(f"A template named {name!r} already exists.", details={"fields": {"name": ["Already taken."]}})
    content = validate_content(form=form, body=body, content_type=content_type, header_templates=header_templates)
    try:
        with transaction.atomic():
            template.save()
    except IntegrityError as exc:
        raise Conflict(f"A template named {name!r} already exists.") from exc
    return _add_version(template=template, number=1, content=content, author=author, note=note)


@transaction.atomic
def update_template(
    *,
    template: PayloadTemplate,
    form: str = _UNSET,
    body: Any = _UNSET,
    content_type: str | None = _UNSET,
    header_templates: dict[str, str] | None = _UNSET,
    description: str = _UNSET,
    author: str,
    note: str = "",
) -> PayloadTemplate:
    """Change a template: fields left out keep the current version's values.

    A content change (form, body, content type, header templates) adds version n+1 with
    ``author`` and ``note`` and makes it current; content equal to the current version's adds
    nothing. Changing ``form`` without a ``content_type`` applies the new form's default (json:
    ``application/json``; text: required). ``description`` is not versioned. Raises
    ``ValidationFailed`` as ``create_template``.
    """
    template = (PayloadTemplate.objects.select_for_update(of=("self",)).select_related("current_version")
                .get(pk=template.pk))
    if description is not _UNSET:
        template.description = description
        _full_clean(template)
        template.save(update_fields=["description", "updated_at"])
    current = template.current_version
    form = current.form if form is _UNSET else form
    if content_type is _UNSET or content_type is None:
        # A form change without a content type takes the new form's default (or asks for one).
        content_type = current.content_type if form == current.form else None
    content = validate_content(
        form=form,
        body=current.body if body is _UNSET else body,
        content_type=content_type,
        header_templates=current.header_templates if header_templates is _UNSET else header_templates,
    )
    if content == _content_of(current):
        return template
    return _add_version(template=template, number=_next_number(template), content=content, author=author, note=note)


@transaction.atomic
def rollback(*, template: PayloadTemplate, version_number: int, author: str, note: str = "") -> PayloadTemplate:
    """Make an earlier version's content current again by adding a new version that copies it
    (history is never rewritten). ``note`` defaults to ``Rollback to version N``.

    Raises ``NotFound`` for an unknown version and ``ValidationFailed`` when it is already current
    or no longer passes the syntax check.
    """
    template = (PayloadTemplate.objects.select_for_update(of=("self",)).select_related("current_version")
                .get(pk=template.pk))
    source = _version_of(template, version_number)
    if template.current_version_id == source.pk:
        raise ValidationFailed(f"Version {version_number} is already the current version.",
                               details={"version": version_number})
    content = validate_content(form=source.form, body=source.body, content_type=source.content_type,
                                 header_templates=source.header_templates)
    return _add_version(template=template, number=_next_number(template), content=content, author=author,
                        note=note or f"Rollback to version {version_number}", restored_from=version_number)


def resolve(*, name: str, version: int | None = None) -> TemplateVersion:
    """The version an endpoint uses: the template's current version, or ``version`` when pinned.

    Raises ``NotFound`` for an unknown name or version.
    """
    template = PayloadTemplate.objects.select_related("current_version").filter(name=name).first()
    if template is None:
        raise NotFound(f"No template named {name!r}.", details={"name": name})
    found = template.current_version if version is None else _version_of(template, version)
    found.template = template
    return found


def render_version(*, version: TemplateVersion, envelope: dict) -> RenderedPayload:
    """Render ``version`` (body and header templates) against an event envelope (the seed's
    "Standard Payload Format"). Raises ``rendering.TemplateRenderError``; the delivery path
    records it on the attempt, the API turns it into a 400."""
    context = rendering.build_context(envelope)
    return RenderedPayload(output=_render_body(version, context), form=version.form,
                           content_type=version.content_type,
                           headers=rendering.render_headers(version.header_templates or {}, context))


def render_preview(
    *,
    template: PayloadTemplate,
    version_number: int | None = None,
    event_type: str = DEFAULT_TEST_EVENT_TYPE,
    data: dict | None = None,
    metadata: dict | None = None,
    event_id: str | None = None,
    timestamp: datetime | None = None,
) -> RenderedPayload:
    """Render a template for ``POST /templates/{id}/test``; nothing is stored or sent.

    ``data`` defaults to the event type's stored ``sample_data`` (the type must then exist);
    ``event_id`` to a fresh ``evt_test_…``, ``timestamp`` to now, and ``metadata`` to ours
    (``source_service``, ``version``, ``retry_count: 0``, ``test: true``) updated with the given one.
    Raises ``NotFound`` (version), ``ValidationFailed`` ``UNKNOWN_EVENT_TYPE`` or, on a render
    failure, ``TEMPLATE_RENDER_ERROR`` with details ``{field, path, line, column, version}``.
    """
    version = template.current_version if version_number is None else _version_of(template, version_number)
    if data is None:
        type_row = EventType.objects.filter(name=event_type).first()
        if type_row is None:
            raise ValidationFailed(
                f"Unknown event type {event_type!r}; send 'data' or use a type from GET /event-types.",
                details={"event_type": event_type}, code="UNKNOWN_EVENT_TYPE",
            )
        data = type_row.sample_data
    context = rendering.build_context({
        "event_type": event_type,
        "event_id": event_id or f"evt_test_{secrets.token_hex(8)}",
        "timestamp": timestamp or timezone.now(),
        "data": data,
        "metadata": {
            "source_service": settings.WEBHOOK_SOURCE_SERVICE,
            "version": settings.WEBHOOK_PAYLOAD_VERSION,
            "retry_count": 0,
            "test": True,
            **(metadata or {}),
        },
    })
    field_name = "body"
    try:
        output = _render_body(version, context)
        field_name = "header_templates"
        headers = rendering.render_headers(version.header_templates or {}, context)
    except rendering.TemplateRenderError as exc:
        raise ValidationFailed(
            f"The template failed to render: {exc.message}", code="TEMPLATE_RENDER_ERROR",
            details={"field": field_name, **exc.details, "version": version.number},
        ) from exc
    return RenderedPayload(output=output, form=version.form, content_type=version.content_type, headers=headers)


# --- helpers ------------------------------------------------------------------------------------
def validate_content(*, form: str, body: Any, content_type: str | None, header_templates: dict | None) -> dict:
    """Check a version's content (``form`` json|text, ``body``, ``content_type``, ``header_templates``:
    shape, size limit, header names, values that are header values (``header_value_problem``),
    Jinja2 syntax) and return it as a dict with
    defaults applied. Raises ``ValidationFailed`` (400). Public so the admin's form checks exactly
    what saving will check."""
    # endpoints.models imports this module lazily too: the rule lives with the endpoint's headers.
    from endpoints.models import header_value_problem

    if form not in TemplateVersion.Form.values:
        _invalid("form", f"Use one of {TemplateVersion.Form.values}.")
    if form == TemplateVersion.Form.JSON and not isinstance(body, (dict, list)):
        _invalid("body", "A json template is a JSON object or array whose string values are Jinja2 templates.")
    if form == TemplateVersion.Form.TEXT and not isinstance(body, str):
        _invalid("body", "A text template is one string.")
    if not content_type:
        if form == TemplateVersion.Form.TEXT:
            _invalid("content_type", "A text template needs a content type, e.g. application/x-www-form-urlencoded.")
        content_type = DEFAULT_JSON_CONTENT_TYPE
    if (not isinstance(content_type, str) or len(content_type) > 255
            or not rendering.CONTENT_TYPE_RE.match(content_type)):
        _invalid("content_type", "Not a media type such as 'application/xml; charset=utf-8'.")
    header_templates = {} if header_templates is None else header_templates
    if not isinstance(header_templates, dict):
        _invalid("header_templates", "Must be an object of header name to value template.")
    for name, value in header_templates.items():
        if isinstance(name, str) and len(name) > rendering.MAX_HEADER_NAME_LENGTH:
            _invalid("header_templates",
                     f"{name[:100]!r}… is longer than {rendering.MAX_HEADER_NAME_LENGTH} characters.")
        if not rendering.HEADER_NAME_RE.match(name):
            _invalid("header_templates", f"{name!r} is not a valid HTTP header name.")
        if rendering.is_reserved_header(name):
            _invalid("header_templates", f"{name!r} is set by the service and cannot be templated.")
        if not isinstance(value, str):
            _invalid("header_templates", f"The value of {name!r} must be a string.")
        problem = header_value_problem(value)
        if problem:
            # The source follows the rule every sent header value follows (as endpoint custom_headers
            # do, templated or not); rendering also strips what a rendered value may bring in.
            _invalid("header_templates", f"The value of {name!r} {problem}.")
    size = len(json.dumps([body, header_templates], ensure_ascii=False).encode("utf-8"))
    if size > MAX_TEMPLATE_SOURCE_BYTES:
        _invalid("body", f"The template is {size} bytes; the limit is {MAX_TEMPLATE_SOURCE_BYTES}.")
    _check_syntax("body", body, path=None)
    for name, value in header_templates.items():
        _check_syntax("header_templates", value, path=name)
    return {"form": form, "body": body, "content_type": content_type, "header_templates": header_templates}


def _check_syntax(field_name: str, source: Any, *, path: str | None) -> None:
    try:
        rendering.validate_template(source)
    except rendering.TemplateRenderError as exc:
        details = {"field": field_name, **exc.details}
        details["path"] = exc.path or path
        raise ValidationFailed(f"Template syntax error in {field_name}: {exc.message}", code="TEMPLATE_SYNTAX_ERROR",
                               details=details) from exc


def _content_of(version: TemplateVersion) -> dict:
    return {"form": version.form, "body": version.body, "content_type": version.content_type,
            "header_templates": version.header_templates}


def _add_version(*, template: PayloadTemplate, number: int, content: dict, author: str, note: str,
                 restored_from: int | None = None) -> PayloadTemplate:
    version = TemplateVersion.objects.create(template=template, number=number, author=author, note=note,
                                             restored_from=restored_from, **content)
    template.current_version = version
    template.save(update_fields=["current_version", "updated_at"])
    return template


def _next_number(template: PayloadTemplate) -> int:
    last = template.versions.order_by("-number").values_list("number", flat=True).first()
    return (last or 0) + 1


def _full_clean(template: PayloadTemplate) -> None:
    try:
        template.full_clean(exclude=["current_version"], validate_unique=False)
    except ValidationError as exc:
        raise ValidationFailed("The template is invalid.", details={"fields": exc.message_dict}) from exc


def _invalid(field_name: str, message: str) -> None:
    raise ValidationFailed(f"{field_name}: {message}", details={"fields": {field_name: [message]}})


def _render_body(version: TemplateVersion, context: dict) -> Any:
    if version.form == TemplateVersion.Form.JSON:
        return rendering.render_json_template(version.body, context)
    return rendering.render_text_template(version.body, context)


def _version_of(template: PayloadTemplate, number: int) -> TemplateVersion:
    version = template.versions.filter(number=number).first()
    if version is None:
        raise NotFound(f"Template {template.name!r} has no version {number}.",
                       details={"template_id": template.pk, "version": number})
    return version
