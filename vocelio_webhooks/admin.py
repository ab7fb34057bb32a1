from django.contrib import admin

from .models import ApiKey


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """API keys are created with ``manage.py create_api_key``; the admin can only revoke them."""

    list_display = ("name", "prefix", "is_active", "created_at", "last_used_at")
    list_filter = ("is_active",)
    search_fields = ("name", "prefix")
    readonly_fields = ("name", "prefix", "key_hash", "created_at", "last_used_at")
    fields = ("name", "prefix", "is_active", "scopes", "created_at", "last_used_at")

    def has_add_permission(self, request) -> bool:
        return False
