"""Payload templates in the admin: edited through ``templates_app.services`` (every save is a new
version, syntax-checked, as ``PUT /templates/{id}``), rolled back (a new version copying an old
one), and tried out with a live "test with sample data" preview that renders the unsaved text in
the same Jinja2 sandbox as deliveries (``services.render_preview``) without saving anything."""
import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseNotAllowed, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html

from events.models import EventType
from templates_app import rendering
from templates_app import services as template_services
from templates_app.models import PayloadTemplate, TemplateVersion
from vocelio_webhooks import services as audit_services
from vocelio_webhooks.admin import AuditedAdminMixin, _pending_snapshots
from vocelio_webhooks.audit import snapshot
from vocelio_webhooks.errors import ServiceError, ValidationFailed


def parse_content(*, form: str, body: str, content_type: str, header_templates: str) -> dict[str, Any]:
    """The admin form's text fields as service arguments: a json template's ``body`` is JSON
    text, a text template's is used as typed; ``header_templates`` is a JSON object (may be
    empty). Raises ``ValidationFailed`` with ``details["fields"]`` naming the field."""
    def invalid(field_name: str, message: str) -> ValidationFailed:
        return ValidationFailed(f"{field_name}: {message}", details={"fields": {field_name: [message]}})

    if form == TemplateVersion.Form.JSON:
        try:
            parsed_body = json.loads(body)
        except ValueError as exc:
            raise invalid("body", f"Not valid JSON: {exc}.") from exc
    else:
        parsed_body = body
    try:
        headers = json.loads(header_templates) if header_templates.strip() else {}
    except ValueError as exc:
        raise invalid("header_templates", f"Not valid JSON: {exc}.") from exc
    if not isinstance(headers, dict):
        raise invalid("header_templates", "Must be a JSON object of header name to value template.")
    return {"form": form, "body": parsed_body, "content_type": content_type.strip() or None,
            "header_templates": headers}


def check_content(content: dict[str, Any]) -> None:
    """Syntax-check the body and header templates without saving (what the save will check);
    raises ``ValidationFailed`` with the line and column of a Jinja2 error."""
    body = content["body"]
    if content["form"] == TemplateVersion.Form.JSON and not isinstance(body, (dict, list)):
        raise ValidationFailed("body: a json template is a JSON object or array.",
                               details={"fields": {"body": ["A JSON object or array."]}})
    if content["form"] == TemplateVersion.Form.TEXT and not content["content_type"]:
        raise ValidationFailed("content_type: a text template needs a content type.",
                               details={"fields": {"content_type": ["Required for a text template."]}})
    for field_name, source in [("body", body), *(("header_templates", v) for v in content["header_templates"].values())]:
        try:
            rendering.validate_template(source)
        except rendering.TemplateRenderError as exc:
            raise ValidationFailed(f"Template syntax error in {field_name}: {exc}", code="TEMPLATE_SYNTAX_ERROR",
                                   details={"field": field_name, **exc.details}) from exc
    for name in content["header_templates"]:
        if not rendering.HEADER_NAME_RE.match(name) or rendering.is_reserved_header(name):
            raise ValidationFailed(f"header_templates: {name!r} cannot be templated.",
                                   details={"fields": {"header_templates": [f"{name!r} is not allowed."]}})


class PayloadTemplateForm(forms.ModelForm):
    """Name and description of the template plus the content of its next version."""

    form = forms.ChoiceField(choices=TemplateVersion.Form.choices, initial=TemplateVersion.Form.JSON)
    body = forms.CharField(widget=forms.Textarea(attrs={"rows": 16, "cols": 90, "class": "vLargeTextField",
                                                        "spellcheck": "false"}),
                           help_text="JSON form: a JSON object whose string values are Jinja2 templates. "
                                     "Text form: one Jinja2 template.")
    content_type = forms.CharField(required=False, max_length=255, help_text="Default for JSON: application/json.")
    header_templates = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3, "cols": 90}),
                                       help_text='A JSON object, e.g. {"X-Lead-Source": "{{ metadata.source_service }}"}.')
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
        if self.instance.pk:
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
            field_name = next(iter((exc.details or {}).get("fields", {})), None) or (exc.details or {}).get("field")
            self.add_error(field_name if field_name in self.fields else None, exc.message)
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
        template = get_object_or_404(PayloadTemplate, pk=object_id)
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
            content = parse_content(form=request.POST.get("form", "json"), body=request.POST.get("body", ""),
                                    content_type=request.POST.get("content_type", ""),
                                    header_templates=request.POST.get("header_templates", ""))
            check_content(content)
            raw_data = request.POST.get("data", "").strip()
            data = json.loads(raw_data) if raw_data else None
            if data is not None and not isinstance(data, dict):
                raise ValidationFailed("data: sample data must be a JSON object.",
                                       details={"fields": {"data": ["A JSON object."]}})
            version = TemplateVersion(number=0, content_type=content["content_type"] or "application/json",
                                      form=content["form"], body=content["body"],
                                      header_templates=content["header_templates"])
            rendered = template_services.render_preview(
                template=PayloadTemplate(name="preview", current_version=version),
                event_type=request.POST.get("event_type") or template_services.DEFAULT_TEST_EVENT_TYPE, data=data,
            )
        except ValueError as exc:
            return JsonResponse({"ok": False, "error": {"code": "VALIDATION_ERROR", "message": f"data: not valid JSON: {exc}",
                                                        "details": {"field": "data"}}})
        except ServiceError as exc:
            return JsonResponse({"ok": False, "error": {"code": exc.code, "message": exc.message,
                                                        "details": exc.details or {}}})
        return JsonResponse({"ok": True, "output": rendered.output, "body": rendered.body.decode("utf-8"),
                             "content_type": rendered.content_type, "headers": rendered.headers})

    def get_urls(self):
        own = [
            path("preview/", self.admin_site.admin_view(self.preview_view), name="templates_app_payloadtemplate_preview"),
            path("<path:object_id>/rollback/<int:number>/", self.admin_site.admin_view(self.rollback_view),
                 name="templates_app_payloadtemplate_rollback"),
        ]
        return own + super().get_urls()

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        context["preview_url"] = reverse("admin:templates_app_payloadtemplate_preview")
        context["preview_event_types"] = list(EventType.objects.order_by("name").values_list("name", flat=True))
        context["preview_default_event_type"] = template_services.DEFAULT_TEST_EVENT_TYPE
        return super().render_change_form(request, context, add=add, change=change, form_url=form_url, obj=obj)
