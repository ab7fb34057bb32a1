from django.contrib import admin

from events.models import Event, EventType
from vocelio_webhooks.admin import AuditedAdminMixin


@admin.register(EventType)
class EventTypeAdmin(AuditedAdminMixin, admin.ModelAdmin):
    list_display = ("name", "category", "description")
    list_filter = ("category",)
    search_fields = ("name", "description")


@admin.register(Event)
class EventAdmin(AuditedAdminMixin, admin.ModelAdmin):
    """Events are immutable published facts: read-only here."""

    list_display = ("event_id", "event_type", "environment", "timestamp", "received_at")
    list_filter = ("environment", "event_type__category", "event_type")
    search_fields = ("event_id",)
    date_hierarchy = "received_at"
    list_select_related = ("event_type",)

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_add_permission(self, request) -> bool:
        return False
