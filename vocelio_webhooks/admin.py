"""Admin for API keys and the audit log, and ``AuditedAdminMixin``, which every ModelAdmin of the
project uses so that admin changes reach the audit log.

How admin changes are audited: ``save_model`` keeps a snapshot of the row as it is in the
database before the save; ``log_addition`` / ``log_change`` (called by Django after the object
and its many-to-many fields are saved, where the admin writes its own ``LogEntry``) record the
audit entry with the diff; ``log_deletions`` (called before objects are deleted, by the delete
view and the "delete selected" action) records one entry per object with its last values.
"""
import json

from django.contrib import admin, messages
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group, User
from django.utils.html import format_html, format_html_join

from . import audit
from . import services as audit_services
from .models import ApiKey, AuditLogEntry

# An admin action runs in the web request: one retry or replay (with its audit entry and wake-up)
# per selected row took 5 minutes for "select all 20,000" (the operators' pass), far past a proxy's
# timeout. Larger selections belong to the bulk tools, which work in batches.
ADMIN_ACTION_MAX_ROWS = 500


def refuse_large_selection(model_admin, request, queryset, *, bulk: str) -> bool:
    """True (and an error message naming ``bulk``, the command or API call for more) when
    ``queryset`` holds more than ``ADMIN_ACTION_MAX_ROWS`` rows: the action then does nothing."""
    count = queryset.count()
    if count <= ADMIN_ACTION_MAX_ROWS:
        return False
    model_admin.message_user(
        request, f"{count} rows selected: this action takes at most {ADMIN_ACTION_MAX_ROWS} at once. Nothing was "
                 f"done; narrow the selection with the filters, or use {bulk}.", messages.ERROR)
    return True


class AuditedAdminMixin:
    """Put before ``admin.ModelAdmin`` in the bases: every add, change and delete made in this
    admin is written to the audit log as ``user:<username>``, secrets masked."""

    def save_model(self, request, obj, form, change):
        if change and obj.pk is not None:
            current = type(obj)._default_manager.filter(pk=obj.pk).first()
            if current is not None:
                _pending_snapshots(request)[(obj._meta.label_lower, obj.pk)] = audit.snapshot(current)
        super().save_model(request, obj, form, change)

    def log_addition(self, request, obj, message):
        entry = super().log_addition(request, obj, message)
        audit_services.record_audit(request=request, action=AuditLogEntry.Action.CREATE, obj=obj)
        return entry

    def log_change(self, request, obj, message):
        entry = super().log_change(request, obj, message)
        before = _pending_snapshots(request).pop((obj._meta.label_lower, obj.pk), None)
        # Without a snapshot (a change made outside save_model, e.g. the password form) the admin's
        # own message says which fields changed.
        audit_services.record_audit(request=request, action=AuditLogEntry.Action.UPDATE, obj=obj,
                                    before=before, changes=None if before is not None else {"admin_message": message})
        return entry

    def log_deletions(self, request, queryset):
        entries = super().log_deletions(request, queryset)
        for obj in queryset:
            audit_services.record_audit(request=request, action=AuditLogEntry.Action.DELETE, obj=obj)
        return entries


def _shown(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _pending_snapshots(request) -> dict:
    if not hasattr(request, "_audit_snapshots"):
        request._audit_snapshots = {}
    return request._audit_snapshots


@admin.register(ApiKey)
class ApiKeyAdmin(AuditedAdminMixin, admin.ModelAdmin):
    """API keys are created with ``manage.py create_api_key`` (the raw key is shown once there).
    Here their scopes, environments and expiry can be changed, and keys revoked (an action:
    revocation is final)."""

    list_display = ("name", "prefix", "scopes", "environments", "is_active", "expires_at", "revoked_at",
                    "created_at", "last_used_at")
    list_filter = ("is_active",)
    search_fields = ("name", "prefix")
    readonly_fields = ("prefix", "is_active", "revoked_at", "created_at", "last_used_at")
    fields = ("name", "prefix", "scopes", "environments", "expires_at", "is_active", "revoked_at", "created_at",
              "last_used_at")
    actions = ("revoke_selected",)

    def has_add_permission(self, request) -> bool:
        return False

    @admin.action(permissions=["change"], description="Revoke selected API keys")
    def revoke_selected(self, request, queryset):
        actor = audit_services.actor_for_request(request)
        revoked = 0
        for key in queryset:
            if key.revoked_at is None:
                audit_services.revoke_api_key(api_key=key, actor=actor, request=request)
                revoked += 1
        self.message_user(request, f"Revoked {revoked} API key(s).", messages.SUCCESS)


@admin.register(AuditLogEntry)
class AuditLogEntryAdmin(admin.ModelAdmin):
    """The audit log is append-only: nobody adds, changes or deletes entries here."""

    list_display = ("occurred_at", "actor", "action", "object_type", "object_id", "object_repr", "environment")
    list_filter = ("action", "object_type", "environment")
    search_fields = ("actor", "object_id", "object_repr", "request_id")
    date_hierarchy = "occurred_at"
    fields = ("occurred_at", "actor", "action", "object_type", "object_id", "object_repr", "environment",
              "changes_table", "request_id", "ip_address")
    readonly_fields = fields

    @admin.display(description="changes")
    def changes_table(self, obj: AuditLogEntry):
        changes = [(name, change) for name, change in (obj.changes or {}).items() if isinstance(change, dict)]
        if not changes:
            return "—"
        rows = format_html_join(
            "", "<tr><th>{}</th><td>{}</td><td>{}</td></tr>",
            ((name, _shown(change.get("old")), _shown(change.get("new"))) for name, change in changes),
        )
        return format_html("<table><tr><th>field</th><th>old</th><th>new</th></tr>{}</table>", rows)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


# Users, their groups and permissions decide who may do what in the admin: audit them too.
admin.site.unregister(User)
admin.site.unregister(Group)


@admin.register(User)
class AuditedUserAdmin(AuditedAdminMixin, UserAdmin):
    pass


@admin.register(Group)
class AuditedGroupAdmin(AuditedAdminMixin, GroupAdmin):
    pass
