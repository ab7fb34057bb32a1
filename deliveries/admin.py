from datetime import timedelta

from django.contrib import admin, messages
from django.utils import timezone

from deliveries import services as delivery_services
from deliveries.models import Delivery, DeliveryAttempt
from vocelio_webhooks import services as audit_services
from vocelio_webhooks.admin import AuditedAdminMixin
from vocelio_webhooks.audit import snapshot
from vocelio_webhooks.errors import ServiceError


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


class DeadLetterFilter(admin.SimpleListFilter):
    """The admin's dead-letter view: dead-lettered deliveries, all or by when they died."""

    title = "dead letters"
    parameter_name = "dead_letter"
    _windows = {"24h": timedelta(hours=24), "7d": timedelta(days=7)}

    def lookups(self, request, model_admin):
        return [("all", "All dead letters"), ("24h", "Dead-lettered in the last 24 hours"),
                ("7d", "Dead-lettered in the last 7 days")]

    def queryset(self, request, queryset):
        if self.value() not in ("all", *self._windows):
            return queryset
        queryset = queryset.filter(status=Delivery.Status.DEAD_LETTERED)
        if self.value() in self._windows:
            queryset = queryset.filter(completed_at__gte=timezone.now() - self._windows[self.value()])
        return queryset


def _audit_many(request, *, action: str, delivery_ids: list[int]) -> None:
    if delivery_ids:
        audit_services.record_audit(request=request, action=action, object_type="deliveries.delivery",
                                    object_repr=f"{len(delivery_ids)} deliveries", changes={"deliveries": delivery_ids})


@admin.action(permissions=["retry"], description="Discard selected dead-lettered or failed deliveries")
def discard_selected(modeladmin, request, queryset):
    """``deliveries.services.discard_many`` (as ``POST /deliveries/discard``): dead-lettered and
    failed deliveries become ``cancelled``, "Discarded by user:<username>"; others are skipped."""
    ids = list(queryset.values_list("pk", flat=True))
    discarded = delivery_services.discard_many(delivery_ids=ids, actor=f"user:{request.user.get_username()}")
    _audit_many(request, action="discard", delivery_ids=discarded)
    if discarded:
        modeladmin.message_user(request, f"Discarded {len(discarded)} delivery(ies).", messages.SUCCESS)
    if len(discarded) < len(ids):
        modeladmin.message_user(request, f"Skipped {len(ids) - len(discarded)} that are not dead-lettered or failed.",
                                messages.WARNING)


@admin.action(permissions=["retry"], description="Replay selected deliveries (a new delivery of the same event)")
def replay_selected(modeladmin, request, queryset):
    """``deliveries.services.replay_deliveries``: a new delivery (a replay, same ``event_id``) of
    each selected delivery's event to its endpoint, when that endpoint would receive it now."""
    ids = list(queryset.values_list("pk", flat=True))
    result = delivery_services.replay_deliveries(delivery_ids=ids)
    _audit_many(request, action="replay", delivery_ids=result.delivery_ids)
    if result.replayed:
        modeladmin.message_user(request, f"Created {result.replayed} replay delivery(ies).", messages.SUCCESS)
    if result.replayed < len(ids):
        modeladmin.message_user(
            request, f"Skipped {len(ids) - result.replayed}: endpoint deleted or disabled, the endpoint would not "
                     "receive the event now, or the same event and endpoint were selected twice.", messages.WARNING,
        )


@admin.register(Delivery)
class DeliveryAdmin(AuditedAdminMixin, admin.ModelAdmin):
    """Delivery history is read-only (attempts are append-only). Users with the
    ``deliveries.retry_delivery`` permission (the Support group) may retry deliveries."""

    list_display = ("id", "event", "endpoint", "status", "attempt_count", "last_status_code", "next_attempt_at",
                    "created_at", "is_replay", "last_error_summary")
    list_filter = ("status", "event__event_type", "endpoint", DeadLetterFilter, "is_replay")
    search_fields = ("event__event_id", "=id")
    date_hierarchy = "created_at"
    list_select_related = ("event__event_type", "endpoint")
    inlines = [DeliveryAttemptInline]
    readonly_fields = [f.name for f in Delivery._meta.fields]
    actions = ["retry_selected", discard_selected, replay_selected]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.display(description="last error")
    def last_error_summary(self, obj) -> str:
        return obj.last_error if len(obj.last_error) <= 80 else obj.last_error[:79] + "…"

    def has_retry_permission(self, request) -> bool:
        return request.user.has_perm("deliveries.retry_delivery")

    @admin.action(permissions=["retry"], description="Retry selected deliveries")
    def retry_selected(self, request, queryset):
        """``deliveries.services.retry_now`` for each selected delivery (as ``POST
        /deliveries/retry/{id}``), audited; those that cannot be retried are reported."""
        retried, refused = 0, []
        for delivery in queryset:
            before = snapshot(delivery)
            try:
                delivery = delivery_services.retry_now(delivery=delivery)
            except ServiceError as exc:
                refused.append(f"{delivery.public_id}: {exc.message}")
                continue
            audit_services.record_audit(request=request, action="retry", obj=delivery, before=before)
            retried += 1
        if retried:
            self.message_user(request, f"Queued {retried} delivery(ies) for an attempt now.", messages.SUCCESS)
        if refused:
            self.message_user(request, "Not retried: " + "; ".join(refused), messages.WARNING)


@admin.register(DeliveryAttempt)
class DeliveryAttemptAdmin(AuditedAdminMixin, admin.ModelAdmin):
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
