import json
import re

from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected as django_delete_selected
from django.db.models import Count, Q, QuerySet
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.html import format_html

from events import privacy, service_types
from events.models import Event, EventType
from vocelio_webhooks import services as audit_services
from vocelio_webhooks.admin import AuditedAdminMixin, refuse_large_selection
from vocelio_webhooks.errors import ValidationFailed

# Characters privacy.py accepts between the digits of one phone number ("+1 (555) 012-3456").
_PHONE_TERM_RE = re.compile(r"^\+?[\d\s().\-/]{7,30}$")
_DB_SEPARATORS = "[- ()./]{0,3}"


def events_mentioning(term: str, events: QuerySet | None = None) -> list[int]:
    """Primary keys of the events (of ``events``, default all) whose ``data`` or ``metadata``
    mention the customer ``term`` — a phone number (7–15 digits, any formatting) or an email —
    by the same rules as the GDPR erasure (``events.privacy.Subject``: a phone matches by its
    digits, a number without its country code matches the full one). ``[]`` when ``term`` is
    neither a phone number nor an email.

    Payloads are JSON text in the database: a regular expression on the last 7 digits (or a
    substring match of the email) narrows the rows there, then ``privacy.Subject`` confirms each,
    so the admin search scans only the few rows that can match.
    """
    term = term.strip()
    try:
        if "@" in term:
            who = privacy.subject(email=term)
            narrowed = Q(data__icontains=who.email) | Q(metadata__icontains=who.email)
        elif _PHONE_TERM_RE.match(term):
            who = privacy.subject(phone=term)
            pattern = _DB_SEPARATORS.join(who.phone_digits[-privacy.MIN_PHONE_DIGITS:])
            narrowed = Q(data__regex=pattern) | Q(metadata__regex=pattern)
        else:
            return []
    except ValidationFailed:
        return []
    events = Event.objects.all() if events is None else events
    return [
        pk
        for pk, data, metadata in events.filter(narrowed).values_list("pk", "data", "metadata").iterator(chunk_size=500)
        if any(who.matches_text(json.dumps(value, ensure_ascii=False)) for value in (data, metadata))
    ]


@admin.register(EventType)
class EventTypeAdmin(AuditedAdminMixin, admin.ModelAdmin):
    """The catalogue. The types the service publishes itself (``events.service_types``) cannot be
    deleted here, alone or in a bulk delete (an error message, nothing deleted), and show their
    ``name`` and ``category`` read-only; the module docstring there says why."""

    list_display = ("name", "category", "is_high_priority", "description")
    list_filter = ("category", "is_high_priority")
    search_fields = ("name", "description")
    actions = ("delete_selected",)

    def get_readonly_fields(self, request, obj=None):
        fields = tuple(super().get_readonly_fields(request, obj))
        if obj is not None and service_types.is_service_event_type(obj.name):
            fields += tuple(field for field in service_types.PROTECTED_FIELDS if field not in fields)
        return fields

    def has_delete_permission(self, request, obj=None) -> bool:
        # False hides the change form's "Delete" link; delete_view explains a direct visit.
        if obj is not None and service_types.is_service_event_type(obj.name):
            return False
        return super().has_delete_permission(request, obj)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        obj = self.get_object(request, admin.utils.unquote(object_id))
        if request.method == "GET" and obj is not None and service_types.is_service_event_type(obj.name):
            self.message_user(request, service_types.refusal(obj.name) + " Its description, sample data and "
                              "priority can be changed.", messages.INFO)
        return super().change_view(request, object_id, form_url, extra_context)

    def delete_view(self, request, object_id, extra_context=None):
        obj = self.get_object(request, admin.utils.unquote(object_id))
        if obj is not None and service_types.is_service_event_type(obj.name):
            self.message_user(request, service_types.refusal(obj.name), messages.ERROR)
            return redirect(reverse("admin:events_eventtype_change", args=[obj.pk]))
        return super().delete_view(request, object_id, extra_context)

    @admin.action(permissions=["delete"], description=django_delete_selected.short_description)
    def delete_selected(self, request, queryset):
        """Django's "Delete selected", refused as a whole (an error message, nothing deleted) when
        the selection holds a type the service publishes itself, rather than deleting the rest:
        the person chose all of them, and a partial delete would need a second look to notice."""
        kept = sorted(name for name in queryset.values_list("name", flat=True)
                      if service_types.is_service_event_type(name))
        if kept:
            self.message_user(request, " ".join(service_types.refusal(name) for name in kept)
                              + " Nothing was deleted.", messages.ERROR)
            return None
        return django_delete_selected(self, request, queryset)


@admin.action(permissions=["retry"], description="Replay to all matching endpoints (a new delivery each)")
def replay_to_matching_endpoints(modeladmin, request, queryset):
    """``deliveries.services.replay_event`` (as ``POST /events/{event_id}/replay``) for each
    selected event: a new delivery, marked as a replay, to every endpoint that would receive the
    event if it were published now; audited like the API's replay. At most
    ``ADMIN_ACTION_MAX_ROWS`` events at once (``refuse_large_selection``)."""
    from deliveries import services as delivery_services

    if refuse_large_selection(modeladmin, request, queryset, bulk="manage.py replay_events"):
        return
    created = 0
    for event in queryset.select_related("event_type"):
        result = delivery_services.replay_event(event=event)
        if result.replayed:
            audit_services.record_audit(request=request, action="replay", obj=event,
                                        changes={"deliveries": result.delivery_ids})
        created += result.replayed
    level = messages.SUCCESS if created else messages.WARNING
    modeladmin.message_user(request, f"Created {created} replay delivery(ies) for {queryset.count()} event(s).", level)


@admin.register(Event)
class EventAdmin(AuditedAdminMixin, admin.ModelAdmin):
    """Events are immutable published facts: read-only and never deleted here. Search by ``event_id`` or by a
    customer's phone number or email inside the payload."""

    list_display = ("event_id", "event_type", "environment", "timestamp", "received_at", "deliveries_link")
    list_filter = ("environment", "event_type__category", "event_type")
    search_fields = ("event_id",)
    search_help_text = "An event id, or a customer's phone number or email (found inside the payload)."
    date_hierarchy = "received_at"
    list_select_related = ("event_type",)
    readonly_fields = ("deliveries_link",)
    actions = (replay_to_matching_endpoints,)

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(delivery_count=Count("deliveries"))

    def get_search_results(self, request, queryset, search_term):
        found, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        mentioning = events_mentioning(search_term, queryset) if search_term else []
        if mentioning:
            found = found | queryset.filter(pk__in=mentioning)
        return found, may_have_duplicates

    @admin.display(description="deliveries", ordering="delivery_count")
    def deliveries_link(self, obj: Event) -> str:
        count = getattr(obj, "delivery_count", None)
        if count is None:
            count = obj.deliveries.count()
        url = reverse("admin:deliveries_delivery_changelist") + f"?event__id__exact={obj.pk}"
        return format_html('<a href="{}">{} deliver{}</a>', url, count, "y" if count == 1 else "ies")

    def has_retry_permission(self, request) -> bool:
        return request.user.has_perm("deliveries.retry_delivery")

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        # Deleting an event would delete its deliveries (CASCADE): history is removed only by the
        # retention purge (the GDPR erasure redacts values, it deletes nothing), never by hand here.
        return False
