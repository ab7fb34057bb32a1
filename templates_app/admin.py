from django.contrib import admin

from templates_app.models import PayloadTemplate, TemplateVersion
from vocelio_webhooks.admin import AuditedAdminMixin


class TemplateVersionInline(admin.TabularInline):
    """Version history is append-only: shown, never edited here."""

    model = TemplateVersion
    fk_name = "template"
    extra = 0
    can_delete = False
    fields = ("number", "form", "content_type", "author", "note", "restored_from", "created_at", "body",
              "header_templates")
    readonly_fields = fields
    ordering = ("-number",)

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(PayloadTemplate)
class PayloadTemplateAdmin(AuditedAdminMixin, admin.ModelAdmin):
    """Read-only: templates change through the API (``PUT /templates/{id}``, rollback), which
    checks syntax and records a version."""

    list_display = ("name", "current_version_number", "description", "updated_at")
    search_fields = ("name", "description")
    date_hierarchy = "updated_at"
    list_select_related = ("current_version",)
    readonly_fields = ("name", "description", "current_version", "created_at", "updated_at")
    inlines = [TemplateVersionInline]

    @admin.display(description="version")
    def current_version_number(self, obj: PayloadTemplate) -> int | None:
        return obj.current_version.number if obj.current_version else None

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
