from django.contrib import admin

from deliveries.models import Delivery, DeliveryAttempt


class DeliveryAttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    extra = 0
    can_delete = False
    fields = ("attempt_number", "started_at", "url", "response_status_code", "duration_ms", "error_class",
              "outcome")
    readonly_fields = fields
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    """Delivery history is read-only (attempts are append-only)."""

    list_display = ("id", "event", "endpoint", "status", "attempt_count", "last_status_code", "next_attempt_at",
                    "created_at")
    list_filter = ("status", "event__event_type", "endpoint")
    search_fields = ("event__event_id", "=id")
    date_hierarchy = "created_at"
    list_select_related = ("event__event_type", "endpoint")
    inlines = [DeliveryAttemptInline]
    readonly_fields = [f.name for f in Delivery._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(DeliveryAttempt)
class DeliveryAttemptAdmin(admin.ModelAdmin):
    list_display = ("delivery", "attempt_number", "response_status_code", "outcome", "duration_ms", "error_class",
                    "created_at")
    list_filter = ("outcome", "error_class")
    search_fields = ("delivery__event__event_id", "url")
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in DeliveryAttempt._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
