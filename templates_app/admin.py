"""Payload templates in the admin: edited through ``templates_app.services`` (every save is a new
version, syntax-checked, as ``PUT /templates/{id}``), rolled back (a new version copying an old
one), and tried out with a live "test with sample data" preview that renders the unsaved text in
the same Jinja2 sandbox as deliveries (``services.render_preview``) without saving anything."""
import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import (
    Http404,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
    JsonResponse,
)
from django.urls import path, reverse
from django.utils.html import format_html

from events.models import EventType
from templates_app import services as template_services
from templates_app.models import PayloadTemplate, TemplateVersion
from vocelio_webhooks import services as audit_services
from vocelio_webhooks.admin import AuditedAdminMixin, _pending_snapshots
from vocelio_webhooks.audit import snapshot
from vocelio_webhooks.errors import ServiceError, ValidationFailed


def load_json(field_name: str, text: str) -> Any:
    """``text`` parsed as JSON by the API's rules (``vocelio_webhooks.parsers.StrictJSONParser`` and
    the API's exception handler): invalid JSON, JSON nested deeper than Python can parse
    (``RecursionError`` → the API's ``INVALID_REQUEST_BODY`` "nested too deeply") and lone UTF-16
    surrogates (cannot be stored or signed as UTF-8) are refused. Raises ``ValidationFailed``
    with ``details["fields"]`` naming ``field_name``."""
    try:
        value = json.loads(text)
    except RecursionError as exc:
        raise too_deep(field_name) from exc
    except ValueError as exc:
        raise _invalid(field_name, f"Not valid JSON: {exc}.") from exc
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except RecursionError as exc:
        raise too_deep(field_name) from exc
    except UnicodeEncodeError as exc:
        raise _invalid(field_name, "Contains a lone UTF-16 surrogate (invalid Unicode).") from exc
    return value


def too_deep(field_name: str) -> ValidationFailed:
    """The API's answer to JSON nested too deeply (``vocelio_webhooks.api.exception_handler``)."""
    message = "The JSON is nested too deeply."
    return ValidationFailed(f"{field_name}: {message}", code="INVALID_REQUEST_BODY",
                            details={"fields": {field_name: [message]}})


def _invalid(field_name: str, message: str) -> ValidationFailed:
    return ValidationFailed(f"{field_name}: {message}", details={"fields": {field_name: [message]}})


def parse_content(*, form: str, body: str, content_type: str, header_templates: str) -> dict[str, Any]:
    """The admin form's text fields as service arguments: a json template's ``body`` is JSON
    text, a text template's is used as typed; ``header_templates`` is a JSON object (may be
    empty). Raises ``ValidationFailed`` with ``details["fields"]`` naming the field."""
    if form not in TemplateVersion.Form.values:
        raise _invalid("form", f"Use one of {TemplateVersion.Form.values}.")
    parsed_body = load_json("body", body) if form == TemplateVersion.Form.JSON else body
    headers = load_json("header_templates", header_templates) if header_templates.strip() else {}
    if not isinstance(headers, dict):
        raise _invalid("header_templates", "Must be a JSON object of header name to value template.")
    return {"form": form, "body": parsed_body, "content_type": content_type.strip() or None,
            "header_templates": headers}


def check_content(content: dict[str, Any]) -> dict[str, Any]:
    """Every check the save will make (form, body type, content type, header names and value
    types, the size limit, Jinja2 syntax), without saving: the service's own validation
    (``templates_app.services.validate_content``), so the admin cannot accept what the save
    refuses. Returns the content with the service's defaults applied; raises ``ValidationFailed``
    (``TEMPLATE_SYNTAX_ERROR`` with line and column, or per-field details)."""
    try:
        return template_services.validate_content(**content)
    except RecursionError as exc:  # json.dumps / the syntax walk on a structure nested too deeply
        raise too_deep("body") from exc


def error_field(exc: ValidationFailed) -> str | None:
    """The form field a ``ValidationFailed`` from ``parse_content`` / ``check_content`` is about."""
    details = exc.details or {}
    return next(iter(details.get("fields") or {}), None) or details.get("field")


def error_message(exc: ValidationFailed, field_name: str | None) -> str:
    """The per-field message when there is one (the field is shown next to it), else the whole message."""
    messages_for_field = ((exc.details or {}).get("fields") or {}).get(field_name) or []
    return " ".join(str(m) for m in messages_for_field) if messages_for_field else exc.message


class PayloadTemplateForm(forms.ModelForm):
    """Name and description of the template plus the content of its next version."""

    form = forms.ChoiceField(choices=TemplateVersion.Form.choices, initial=TemplateVersion.Form.JSON)
    body = forms.CharField(widget=forms.Textarea(attrs={"rows": 16, "cols": 90, "class": "vLargeTextField",
                                                        "spellcheck": "false"}),
                           help_text="JSON form: a JSON object whose string values are Jinja2 templates. "
                                     "Text form: one Jinja2 template.")
    content_type = forms.CharField(required=False, max_length=255, help_text="Default for JSON: application/json.")
    header_templates = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3, "cols": 90}),
                                       help_text='A JSON object, e.g. '
                                                 '{"X-Lead-Source": "{{ metadata.source_service }}"}.')
    note = forms.CharField(required=False, max_length=500, help_text="Why this version (kept in the history).")

    class Meta:
        model = PayloadTemplate
        fields = ("name", "description")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        version = self.instance.current_version if self.instance.pk else None
        if version is not None:
            self.fields["form"].initial = version.form
            self.fields["body"].initial = (version.body if version.form == TemplateVersion.Form.TEXT
                                           else json.dumps(version.body, indent=2, ensure_ascii=False))
            self.fields["content_type"].initial = version.content_type
            self.fields["header_templates"].initial = json.dumps(version.header_templates or {}, ensure_ascii=False)
        # A view-only user's form has no fields (Django shows them read-only instead).
        if self.instance.pk and "name" in self.fields:
            self.fields["name"].disabled = True
            self.fields["name"].help_text = "Endpoints refer to templates by name: it cannot change."

    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned
        try:
            content = parse_content(form=cleaned["form"], body=cleaned["body"], content_type=cleaned["content_type"],
                                    header_templates=cleaned.get("header_templates") or "")
            check_content(content)
        except ValidationFailed as exc:
            field_name = error_field(exc)
            if field_name in self.fields:
                self.add_error(field_name, error_message(exc, field_name))
            else:
                self.add_error(None, exc.message)
            return cleaned
        cleaned["content"] = content
        return cleaned


class TemplateVersionInline(admin.TabularInline):
    """Version history is append-only: shown, never edited here; each older version has a
    "Roll back to this version" button."""

    model = TemplateVersion
    fk_name = "template"
    extra = 0
    can_delete = False
    fields = ("number", "form", "content_type", "author", "note", "restored_from", "created_at", "body",
              "header_templates", "rollback_button")
    readonly_fields = fields
    ordering = ("-number",)

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def get_fields(self, request, obj=None):
        # The rollback button posts to a view that needs the template's change permission.
        if request.user.has_perm("templates_app.change_payloadtemplate"):
            return self.fields
        return tuple(name for name in self.fields if name != "rollback_button")

    @admin.display(description="rollback")
    def rollback_button(self, obj: TemplateVersion):
        if obj.template.current_version_id == obj.pk:
            return "current"
        url = reverse("admin:templates_app_payloadtemplate_rollback", args=[obj.template_id, obj.number])
        # formaction: the button posts the change form (with its CSRF token) to the rollback view.
        return format_html('<button type="submit" class="button rollback-button" formaction="{}" formmethod="post" '
                           'formnovalidate>Roll back to v{}</button>', url, obj.number)


@admin.action(permissions=["change"], description="Roll back to the previous version")
def rollback_to_previous(modeladmin, request, queryset):
    """``templates_app.services.rollback`` to the version before the current one, audited as
    the API's ``POST /templates/{id}/rollback``."""
    for template in queryset.select_related("current_version"):
        number = template.current_version.number - 1 if template.current_version else 0
        modeladmin.rollback_template(request, template, number)


@admin.register(PayloadTemplate)
class PayloadTemplateAdmin(AuditedAdminMixin, admin.ModelAdmin):
    """Every save goes through ``templates_app.services`` (a new version, syntax-checked);
    the change form has a live preview rendered in the sandbox with sample data."""

    form = PayloadTemplateForm
    list_display = ("name", "current_version_number", "current_form", "description", "updated_at")
    search_fields = ("name", "description")
    date_hierarchy = "updated_at"
    list_select_related = ("current_version",)
    fieldsets = (
        (None, {"fields": ("name", "description")}),
        ("Content of the next version", {"fields": ("form", "body", "content_type", "header_templates", "note")}),
    )
    inlines = (TemplateVersionInline,)
    actions = (rollback_to_previous,)
    change_form_template = "admin/templates_app/payloadtemplate/change_form.html"

    @admin.display(description="version")
    def current_version_number(self, obj: PayloadTemplate) -> int | None:
        return obj.current_version.number if obj.current_version else None

    @admin.display(description="form")
    def current_form(self, obj: PayloadTemplate) -> str:
        return obj.current_version.form if obj.current_version else "—"

    @admin.display(description="content type")
    def current_content_type(self, obj: PayloadTemplate) -> str:
        return obj.current_version.content_type if obj.current_version else "—"

    @admin.display(description="body")
    def current_body(self, obj: PayloadTemplate):
        version = obj.current_version
        if version is None:
            return "—"
        text = version.body if version.form == TemplateVersion.Form.TEXT else json.dumps(version.body, indent=2,
                                                                                         ensure_ascii=False)
        return format_html('<pre style="white-space:pre-wrap">{}</pre>', text)

    @admin.display(description="header templates")
    def current_header_templates(self, obj: PayloadTemplate) -> str:
        if not obj.current_version:
            return "—"
        return json.dumps(obj.current_version.header_templates or {}, ensure_ascii=False)

    def get_fieldsets(self, request, obj=None):
        """Users who may not change the template (the Support group) see the current version
        read-only: the editing fields (``form``, ``body``…) exist only on the form, so Django
        could not show them as read-only fields."""
        if obj is not None and not self.has_change_permission(request, obj):
            return ((None, {"fields": ("name", "description")}),
                    ("Current version", {"fields": ("current_version_number", "current_form", "current_content_type",
                                                    "current_body", "current_header_templates")}))
        return super().get_fieldsets(request, obj)

    def save_model(self, request, obj, form, change):
        content = form.cleaned_data["content"]
        note = form.cleaned_data.get("note", "")
        author = f"user:{request.user.get_username()}"
        if change:
            _pending_snapshots(request)[(obj._meta.label_lower, obj.pk)] = snapshot(
                PayloadTemplate.objects.get(pk=obj.pk))
            saved = template_services.update_template(template=obj, description=obj.description, author=author,
                                                      note=note, **content)
        else:
            saved = template_services.create_template(name=obj.name, description=obj.description, author=author,
                                                      note=note, **content)
        obj.pk, obj.current_version, obj.updated_at = saved.pk, saved.current_version, saved.updated_at
        obj.created_at = saved.created_at

    def rollback_template(self, request, template: PayloadTemplate, number: int) -> bool:
        before = snapshot(template)
        try:
            template = template_services.rollback(template=template, version_number=number,
                                                  author=f"user:{request.user.get_username()}")
        except ServiceError as exc:
            self.message_user(request, f"{template.name}: {exc.message}", messages.ERROR)
            return False
        audit_services.record_audit(request=request, action="update", obj=template, before=before)
        self.message_user(request, f"{template.name}: version {number} is current again as version "
                                   f"{template.current_version.number}.", messages.SUCCESS)
        return True

    def rollback_view(self, request, object_id: str, number: int):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        # get_object (as Django's change view) answers None for an id that is not a valid key ("abc").
        template = self.get_object(request, unquote(object_id))
        if template is None:
            raise Http404(f"No payload template with id {object_id!r}.")
        if not self.has_change_permission(request, template):
            raise PermissionDenied
        self.rollback_template(request, template, number)
        return HttpResponseRedirect(reverse("admin:templates_app_payloadtemplate_change", args=[template.pk]))

    def preview_view(self, request):
        """``POST`` the unsaved form fields (``form``, ``body``, ``content_type``,
        ``header_templates``) plus ``event_type`` and optional ``data`` (JSON; default the type's
        sample data). Answers JSON ``{"ok": true, "output", "body", "content_type", "headers"}``
        or ``{"ok": false, "error": {"code", "message", "details"}}``. Nothing is saved."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not (self.has_change_permission(request) or self.has_add_permission(request)):
            raise PermissionDenied
        try:
            content = check_content(parse_content(
                form=request.POST.get("form", "json"), body=request.POST.get("body", ""),
                content_type=request.POST.get("content_type", ""),
                header_templates=request.POST.get("header_templates", "")))
            raw_data = request.POST.get("data", "").strip()
            data = load_json("data", raw_data) if raw_data else None
            if data is not None and not isinstance(data, dict):
                raise ValidationFailed("data: sample data must be a JSON object.",
                                       details={"fields": {"data": ["A JSON object."]}})
            version = TemplateVersion(number=0, content_type=content["content_type"], form=content["form"],
                                      body=content["body"], header_templates=content["header_templates"])
            try:
                rendered = template_services.render_preview(
                    template=PayloadTemplate(name="preview", current_version=version),
                    event_type=request.POST.get("event_type") or template_services.DEFAULT_TEST_EVENT_TYPE, data=data,
                )
                answer = {"ok": True, "output": rendered.output, "body": rendered.body.decode("utf-8"),
                          "content_type": rendered.content_type, "headers": rendered.headers}
                return JsonResponse(answer)
            except RecursionError as exc:  # data that parsed but is too deep to render or encode
                raise too_deep("data") from exc
        except ServiceError as exc:
            return JsonResponse({"ok": False, "error": {"code": exc.code, "message": exc.message,
                                                        "details": exc.details or {}}})

    def get_urls(self):
        own = [
            path("preview/", self.admin_site.admin_view(self.preview_view),
                 name="templates_app_payloadtemplate_preview"),
            path("<path:object_id>/rollback/<int:number>/", self.admin_site.admin_view(self.rollback_view),
                 name="templates_app_payloadtemplate_rollback"),
        ]
        return own + super().get_urls()

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if self.has_change_permission(request, obj) if change else self.has_add_permission(request):
            # The preview panel only for users who can use it (the preview view checks the same).
            context["preview_url"] = reverse("admin:templates_app_payloadtemplate_preview")
        context["preview_event_types"] = list(EventType.objects.order_by("name").values_list("name", flat=True))
        context["preview_default_event_type"] = template_services.DEFAULT_TEST_EVENT_TYPE
        return super().render_change_form(request, context, add=add, change=change, form_url=form_url, obj=obj)
