import json
from datetime import timedelta
from typing import ClassVar

from django.contrib import admin, messages
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from deliveries import services as delivery_services
from deliveries.models import Delivery, DeliveryAttempt
from events.admin import events_mentioning
from events.models import Event
from vocelio_webhooks import services as audit_services
from vocelio_webhooks.admin import AuditedAdminMixin, refuse_large_selection
from vocelio_webhooks.audit import snapshot
from vocelio_webhooks.errors import ServiceError

_STATUS_COLOURS = {"succeeded": "#009E73", "failed": "#D55E00", "dead_lettered": "#B00020", "retrying": "#E69F00",
                   "in_flight": "#0072B2", "pending": "#555", "cancelled": "#777"}


def _pretty(value) -> str:
    """JSON (headers) indented, a JSON body re-indented, any other text as it is."""
    if isinstance(value, (dict, list)):
        return json.dumps(value, indent=2, ensure_ascii=False)
    try:
        parsed = json.loads(value)
    except (TypeError, ValueError):
        return value or ""
    return json.dumps(parsed, indent=2, ensure_ascii=False) if isinstance(parsed, (dict, list)) else value


def _block(summary: str, text: str):
    return format_html('<details><summary>{}</summary><pre style="white-space:pre-wrap;max-width:60em;'
                       'max-height:30em;overflow:auto">{}</pre></details>', summary, text)


class DeliveryAttemptInline(admin.TabularInline):
    """Every HTTP try of the delivery with what was sent (credentials were masked before the
    headers were stored) and what came back, each folded in a ``<details>`` block."""

    model = DeliveryAttempt
    extra = 0
    can_delete = False
    fields = ("attempt_number", "started_at", "outcome", "response_status_code", "duration_ms", "error",
              "request", "response")
    readonly_fields = fields
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="error")
    def error(self, obj: DeliveryAttempt) -> str:
        return f"{obj.error_class}: {obj.error_message}" if obj.error_class else "—"

    @admin.display(description="request")
    def request(self, obj: DeliveryAttempt):
        headers = _pretty(obj.request_headers)
        body = _pretty(obj.request_body)
        size = (f"{obj.request_body_size} bytes, sha256 {obj.request_body_sha256[:12]}…"
                if obj.request_body_sha256 else "")
        return format_html("{}{}", _block(f"{obj.http_method} {obj.url}", headers),
                           _block(f"body ({size})" if size else "body", body))

    @admin.display(description="response")
    def response(self, obj: DeliveryAttempt):
        status = obj.response_status_code if obj.response_status_code is not None else "no answer"
        return format_html("{}{}", _block(f"headers ({status})", _pretty(obj.response_headers)),
                           _block("body", _pretty(obj.response_body)))


class DeadLetterFilter(admin.SimpleListFilter):
    """The admin's dead-letter view: dead-lettered deliveries, all or by when they died."""

    title = "dead letters"
    parameter_name = "dead_letter"
    _windows: ClassVar = {"24h": timedelta(hours=24), "7d": timedelta(days=7)}

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
    each selected delivery's event to its endpoint, when that endpoint would receive it now. At
    most ``ADMIN_ACTION_MAX_ROWS`` at once (``refuse_large_selection``)."""
    if refuse_large_selection(modeladmin, request, queryset, bulk="manage.py replay_events"):
        return
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
    """Delivery history is read-only and never deleted here (attempts are append-only; only the
    retention purge removes old rows). Users with the
    ``deliveries.retry_delivery`` permission (the Support group) may retry deliveries."""

    list_display = ("id", "event_id_link", "event_type", "endpoint_link", "status_badge", "attempt_count",
                    "last_status_code", "next_attempt_at", "created_at", "is_replay", "last_error_summary")
    list_filter = ("status", "event__event_type", "endpoint", DeadLetterFilter, "is_replay")
    search_fields = ("=id", "event__event_id", "endpoint__name", "endpoint__url")
    search_help_text = ("A delivery id (123 or dlv_123), an event id, an endpoint name or URL, or a customer's "
                        "phone number or email (found inside the event payload).")
    date_hierarchy = "created_at"
    list_select_related = ("event__event_type", "endpoint")
    inlines = (DeliveryAttemptInline,)
    readonly_fields = (*(f.name for f in Delivery._meta.fields), "payload")
    actions = ("retry_selected", discard_selected, replay_selected)
    list_per_page = 50

    def get_search_results(self, request, queryset, search_term):
        """Besides ``search_fields``: ``dlv_<id>`` (the id receivers see) and a customer's phone
        number or email anywhere in the event payload (``events.admin.events_mentioning``)."""
        term = search_term.strip()
        if term.startswith("dlv_") and term[4:].isdigit():
            return queryset.filter(pk=int(term[4:])), False
        found, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        if term:
            event_pks = events_mentioning(term, Event.objects.filter(pk__in=queryset.values("event_id")))
            if event_pks:
                found = found | queryset.filter(event_id__in=event_pks)
        return found, may_have_duplicates

    @admin.display(description="event id", ordering="event__event_id")
    def event_id_link(self, obj: Delivery):
        url = reverse("admin:events_event_change", args=[obj.event_id])
        return format_html('<a href="{}">{}</a>', url, obj.event.event_id)

    @admin.display(description="event type", ordering="event__event_type__name")
    def event_type(self, obj: Delivery) -> str:
        return obj.event.event_type.name

    @admin.display(description="endpoint", ordering="endpoint__name")
    def endpoint_link(self, obj: Delivery):
        if obj.endpoint is None:
            return "(deleted)"
        url = reverse("admin:endpoints_webhookendpoint_change", args=[obj.endpoint_id])
        return format_html('<a href="{}" title="{}">{}</a>', url, obj.endpoint.url, obj.endpoint.name)

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: Delivery):
        return format_html('<strong class="delivery-status" data-status="{}" style="color:{}">{}</strong>', obj.status,
                           _STATUS_COLOURS.get(obj.status, "#333"), obj.get_status_display())

    @admin.display(description="event payload")
    def payload(self, obj: Delivery):
        return format_html('<pre style="white-space:pre-wrap">{}</pre>', _pretty(obj.event.data))

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        # History is read-only: deliveries change through the actions (services), never the form.
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        # Delivery history is never deleted by hand (README, "Deliveries"): only the retention
        # purge removes old rows. This also removes Django's "Delete selected" action.
        return False

    @admin.display(description="last error")
    def last_error_summary(self, obj) -> str:
        return obj.last_error if len(obj.last_error) <= 80 else obj.last_error[:79] + "…"

    def has_retry_permission(self, request) -> bool:
        return request.user.has_perm("deliveries.retry_delivery")

    @admin.action(permissions=["retry"], description="Retry selected deliveries")
    def retry_selected(self, request, queryset):
        """``deliveries.services.retry_now`` for each selected delivery (as ``POST
        /deliveries/retry/{id}``), audited; those that cannot be retried are reported. At most
        ``ADMIN_ACTION_MAX_ROWS`` at once (``refuse_large_selection``)."""
        if refuse_large_selection(self, request, queryset, bulk="manage.py retry_deliveries or POST /deliveries/retry"):
            return
        retried, refused = 0, []
        for delivery in queryset:
            before = snapshot(delivery)
            try:
                queued = delivery_services.retry_now(delivery=delivery)
            except ServiceError as exc:
                refused.append(f"{delivery.public_id}: {exc.message}")
                continue
            audit_services.record_audit(request=request, action="retry", obj=queued, before=before)
            retried += 1
        if retried:
            self.message_user(request, f"Queued {retried} delivery(ies) for an attempt now.", messages.SUCCESS)
        if refused:
            self.message_user(request, "Not retried: " + "; ".join(refused), messages.WARNING)


@admin.register(DeliveryAttempt)
class DeliveryAttemptAdmin(AuditedAdminMixin, admin.ModelAdmin):
    """Every HTTP try, read-only: attempts are append-only and only the retention purge deletes them."""

    list_display = ("delivery", "attempt_number", "response_status_code", "outcome", "duration_ms", "error_class",
                    "created_at")
    list_filter = ("outcome", "error_class")
    search_fields = ("delivery__event__event_id", "url")
    date_hierarchy = "created_at"
    readonly_fields = tuple(f.name for f in DeliveryAttempt._meta.fields)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        # Attempts are append-only; only the retention purge removes them.
        return False
