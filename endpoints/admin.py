from datetime import timedelta

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.actions import delete_selected as django_delete_selected
from django.contrib.admin.utils import model_ngettext
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Count, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.http import Http404
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext

from endpoints import services as endpoint_services
from endpoints.models import EndpointHealth, WebhookEndpoint
from endpoints.serializers import mask_custom_headers
from vocelio_webhooks.admin import AuditedAdminMixin
from vocelio_webhooks.audit import is_secret_field
from vocelio_webhooks.concurrency import Busy
from vocelio_webhooks.crypto import mask
from vocelio_webhooks.errors import ValidationFailed


class EndpointAdminForm(forms.ModelForm):
    """Secrets are write-only: the form shows them masked and keeps the stored value unless a
    new one is typed."""

    secret = forms.CharField(required=False, widget=forms.PasswordInput(render_value=False),
                             help_text="Leave empty to keep the current secret.")
    api_key = forms.CharField(required=False, widget=forms.PasswordInput(render_value=False),
                              help_text="Leave empty to keep the current API key.")

    class Meta:
        model = WebhookEndpoint
        fields = "__all__"

    def clean_secret(self):
        return self.cleaned_data["secret"] or (self.instance.secret if self.instance.pk else "")

    def clean_api_key(self):
        return self.cleaned_data["api_key"] or (self.instance.api_key if self.instance.pk else "")

    def _post_clean(self):
        """After the model's own validation, the rest of what the API checks
        (``endpoint_services.validate_endpoint``: filters, template syntax and limits, literal
        private addresses), so the admin cannot save an endpoint the API would refuse. Errors
        land on their field, or on the form when they name none."""
        super()._post_clean()
        if self.errors:
            return
        try:
            endpoint_services.validate_endpoint(self.instance)
        except ValidationFailed as exc:
            # Per-field details when the check gives them, else the field its location starts with
            # ("transformation.event_templates.x", "custom_headers.X-Team").
            location = str(exc.details.get("location") or "").split(".")[0].split("[")[0]
            fields = exc.details.get("fields") or {location or None: [exc.message]}
            for field, problems in fields.items():
                for problem in problems if isinstance(problems, list) else [problems]:
                    self.add_error(field if field in self.fields else None, str(problem))


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(AuditedAdminMixin, admin.ModelAdmin):
    """Support staff (view permission only) see the endpoint read-only with every secret field
    replaced by its mask; only users with the change permission get the form."""

    form = EndpointAdminForm
    list_display = ("name", "url", "environment", "status", "circuit", "consecutive_failures", "last_success",
                    "last_failure", "success_rate_24h", "signature_method", "secret_hint", "updated_at")
    list_filter = ("status", "environment", "signature_method", "http_method", "health__circuit_state")
    search_fields = ("name", "url", "owner_email")
    date_hierarchy = "created_at"

    # "delete_selected" replaces the admin site's action of that name (same place in the list).
    actions = ("delete_selected", "test_endpoint", "rotate_secret", "pause", "resume")
    readonly_fields = ("health_summary",)

    @admin.action(description="Send a test event (signed, not stored, not retried)", permissions=["change"])
    def test_endpoint(self, request, queryset):
        """Admin twin of ``POST /endpoints/{id}/test`` (``deliveries.services.send_test``): one
        signed test event of the endpoint's first exact event type with that type's sample data;
        the receiver's status, time and error are shown for each endpoint."""
        from deliveries import queries as delivery_queries
        from deliveries import services as delivery_services
        from vocelio_webhooks import services as audit_services

        for endpoint in queryset:
            # The API's rule (first exact type, else lead.created); the message names the type
            # looked for (it read exact[0], an IndexError for an endpoint with wildcards only).
            exact = [p for p in (endpoint.events or []) if "*" not in p]
            name = exact[0] if exact else "lead.created"
            event_type = delivery_queries.event_type_for_test_send(endpoint=endpoint, name=name)
            if event_type is None:
                self.message_user(request, f"{endpoint.name}: unknown event type {name!r}.", messages.ERROR)
                continue
            try:  # shares the API's bound on test sends in flight (WEBHOOK_MAX_CONCURRENT_TEST_SENDS)
                outcome = delivery_services.send_test_bounded(endpoint=endpoint, event_type=event_type)
            except Busy as exc:
                wait = exc.response_headers["Retry-After"]
                self.message_user(request, f"{endpoint.name}: not sent — {exc.message} ({wait} s)", messages.ERROR)
                continue
            result = outcome.result
            audit_services.record_audit(action="test_send", obj=endpoint, request=request,
                                        changes={"event_id": outcome.event_id, "status_code": result.status_code})
            if outcome.success:
                self.message_user(request, f"{endpoint.name}: test {event_type.name} answered {result.status_code} in "
                                  f"{result.duration_ms} ms.", messages.SUCCESS)
            else:
                answer = f"answered {result.status_code}" if result.status_code is not None else "did not answer"
                error = f" ({result.error_class}: {result.error_message})" if result.error_class else ""
                self.message_user(request, f"{endpoint.name}: test {event_type.name} failed — {answer} in "
                                  f"{result.duration_ms} ms{error}.", messages.ERROR)

    @admin.action(description="Rotate the secret (the old one keeps signing for the overlap period)",
                  permissions=["change"])
    def rotate_secret(self, request, queryset):
        """Admin twin of ``POST /endpoints/{id}/rotate-secret``: the new secret is shown once, in
        the confirmation message, to the user who rotated it."""
        from endpoints import services as endpoint_services
        from vocelio_webhooks import services as audit_services
        from vocelio_webhooks.errors import ValidationFailed

        for endpoint in queryset:
            try:
                rotated = endpoint_services.rotate_secret(endpoint=endpoint)
            except ValidationFailed as exc:
                self.message_user(request, f"{endpoint.name}: {exc.message}", level=messages.ERROR)
                continue
            audit_services.record_audit(action="rotate_secret", obj=rotated, request=request,
                                        changes={"secret": {"old": "***", "new": "***"}})
            self.message_user(request, f"{endpoint.name}: new secret {rotated.secret} — copy it now, it will not be "
                              "shown again; the old one keeps signing until "
                              f"{rotated.previous_secret_expires_at:%Y-%m-%d %H:%M} UTC.",
                              level=messages.WARNING)

    @admin.action(description="Pause (deliveries wait)", permissions=["change"])
    def pause(self, request, queryset):
        self._set_status(request, queryset, WebhookEndpoint.Status.PAUSED)

    @admin.action(description="Resume (waiting deliveries go out)", permissions=["change"])
    def resume(self, request, queryset):
        self._set_status(request, queryset, WebhookEndpoint.Status.ACTIVE)

    def _set_status(self, request, queryset, status: str) -> None:
        from endpoints import services as endpoint_services
        from vocelio_webhooks import services as audit_services

        for endpoint in queryset:
            before_status = endpoint.status
            endpoint_services.set_status(endpoint=endpoint, status=status, reason=f"Set in the admin by {request.user}")
            audit_services.record_audit(action="status_change", obj=endpoint, request=request,
                                        changes={"status": {"old": before_status, "new": status}})
        self.message_user(request, f"{queryset.count()} endpoint(s) set to {status}.")

    @admin.display(description="secret")
    def secret_hint(self, obj: WebhookEndpoint) -> str:
        return mask(obj.secret)

    @admin.display(description="circuit")
    def circuit(self, obj: WebhookEndpoint) -> str:
        health = getattr(obj, "health", None)
        if health is None or health.circuit_state == "closed":
            return "closed"
        return f"{health.circuit_state} ({health.consecutive_failures} failures, probe {health.next_probe_at:%H:%M:%S})"

    def log_deletions(self, request, queryset):
        """Nothing here: Django logs a deletion before it deletes, so an endpoint another delete
        removed meanwhile would get a second "delete" log and audit entry. ``_delete_logged``
        writes both with the delete itself, or neither."""
        return []

    def _delete_logged(self, request, endpoint: WebhookEndpoint) -> None:
        """Delete ``endpoint`` through ``endpoints.services.delete_endpoint``, as the API does (it
        locks the endpoint's row first, so a publish routing to it meanwhile cannot fail the
        delete at commit), with its admin log and audit entries in one savepoint. Raises
        ``NotFound`` when another delete committed first; nothing is then recorded."""
        from endpoints import services as endpoint_services

        with transaction.atomic():
            super().log_deletions(request, [endpoint])  # before the delete: it clears the pk
            endpoint_services.delete_endpoint(endpoint=endpoint)

    def delete_model(self, request, obj):
        """The single delete: a 404 page when another delete committed first."""
        from vocelio_webhooks.errors import NotFound

        try:
            self._delete_logged(request, obj)
        except NotFound as exc:
            raise Http404(exc.message) from exc

    def delete_queryset(self, request, queryset) -> tuple[list[WebhookEndpoint], list[WebhookEndpoint]]:
        """Each endpoint as ``delete_model``; one deleted by someone else meanwhile is skipped (it
        is gone, which is what was asked) and recorded by nobody here. Returns ``(deleted,
        skipped)``, the endpoints of ``queryset`` in each group."""
        from vocelio_webhooks.errors import NotFound

        deleted, skipped = [], []
        for endpoint in queryset:
            try:
                self._delete_logged(request, endpoint)
            except NotFound:
                skipped.append(endpoint)
                continue
            deleted.append(endpoint)
        return deleted, skipped

    @admin.action(permissions=["delete"], description=django_delete_selected.short_description)
    def delete_selected(self, request, queryset):
        """Django's "Delete selected" (same confirmation page, permissions and protected-object
        refusal), whose message counts what ``delete_queryset`` really deleted. Django's own counts
        the selection it read before deleting, so an endpoint another delete removed between that
        read and ours was reported deleted by this user too, and one removed between the
        confirmation page and the confirm vanished from the count unexplained. Both are named as
        skipped (deleted by someone else), in a warning."""
        if not request.POST.get("post"):
            return django_delete_selected(self, request, queryset)  # the confirmation page
        _, _, perms_needed, protected = self.get_deleted_objects(queryset, request)
        if protected:
            return django_delete_selected(self, request, queryset)  # Django's "Cannot delete" page
        if perms_needed:
            raise PermissionDenied
        endpoints = list(queryset)
        listed = {endpoint.pk for endpoint in endpoints}  # before the deletes, which clear the pks
        deleted, skipped = self.delete_queryset(request, endpoints)
        skipped_names = [f"{endpoint.name} (#{endpoint.pk})" for endpoint in skipped]
        if not request.POST.get("select_across"):
            # Selected on the confirmation page, but gone from the table by the time of the confirm.
            # Compared as numbers, as the changelist filtered them ("01" is endpoint 1, found in review).
            selected = {int(pk) for pk in request.POST.getlist(helpers.ACTION_CHECKBOX_NAME) if pk.strip().isdigit()}
            absent = selected - listed
            still_there = set(WebhookEndpoint.objects.filter(pk__in=absent).values_list("pk", flat=True))
            skipped_names += [f"#{pk}" for pk in sorted(absent - still_there)]
        if not deleted and not skipped_names:
            return None
        # Django's own wording (and translation) for the count.
        message = gettext("Successfully deleted %(count)d %(items)s.") % {
            "count": len(deleted), "items": model_ngettext(self.opts, len(deleted))}
        if skipped_names:
            message += (f" Skipped {len(skipped_names)} that someone else deleted meanwhile (nothing recorded "
                        f"for {'it' if len(skipped_names) == 1 else 'them'} here): {', '.join(skipped_names)}.")
        self.message_user(request, message, messages.WARNING if skipped_names else messages.SUCCESS)
        return None

    def get_queryset(self, request):
        """Health in one query: the health row joined, and the last 24 hours' attempt counts as
        two subqueries (indexed on ``created_at``), not one query per endpoint."""
        from deliveries.models import DeliveryAttempt

        since = timezone.now() - timedelta(hours=24)
        recent = DeliveryAttempt.objects.filter(delivery__endpoint=OuterRef("pk"), created_at__gte=since)
        counted = recent.values("delivery__endpoint").annotate(n=Count("pk")).values("n")
        succeeded = recent.filter(outcome=DeliveryAttempt.Outcome.SUCCEEDED)
        succeeded_count = succeeded.values("delivery__endpoint").annotate(n=Count("pk")).values("n")
        return super().get_queryset(request).select_related("health").annotate(
            attempts_24h=Coalesce(Subquery(counted), 0), succeeded_24h=Coalesce(Subquery(succeeded_count), 0),
        )

    @admin.display(description="health")
    def health_summary(self, obj: WebhookEndpoint):
        health = getattr(obj, "health", None)
        rows = [
            ("circuit", self.circuit(obj)),
            ("failures in a row", self.consecutive_failures(obj)),
            ("last success", self.last_success(obj)),
            ("last failure", self.last_failure(obj)),
            ("failing since", health.failing_since if health and health.failing_since else "—"),
            ("disabled automatically at", health.auto_disabled_at if health and health.auto_disabled_at else "—"),
            ("success rate, last 24 hours", self.success_rate_24h(obj)),
        ]
        return format_html('<table class="endpoint-health">{}</table>',
                           format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", rows))

    @admin.display(description="failures in a row", ordering="health__consecutive_failures")
    def consecutive_failures(self, obj: WebhookEndpoint) -> int:
        health = getattr(obj, "health", None)
        return health.consecutive_failures if health else 0

    @admin.display(description="last success", ordering="health__last_success_at")
    def last_success(self, obj: WebhookEndpoint):
        health = getattr(obj, "health", None)
        return health.last_success_at if health and health.last_success_at else "—"

    @admin.display(description="last failure", ordering="health__last_failure_at")
    def last_failure(self, obj: WebhookEndpoint):
        health = getattr(obj, "health", None)
        return health.last_failure_at if health and health.last_failure_at else "—"

    @admin.display(description="success (24 h)", ordering="succeeded_24h")
    def success_rate_24h(self, obj: WebhookEndpoint) -> str:
        attempts = getattr(obj, "attempts_24h", 0)
        if not attempts:
            return "no attempts"
        return f"{100 * obj.succeeded_24h / attempts:.1f}% of {attempts}"

    @admin.display(description="custom headers")
    def custom_headers_masked(self, obj: WebhookEndpoint) -> dict:
        return mask_custom_headers(obj.custom_headers)

    def get_fields(self, request, obj=None):
        # The previous secret still signs during a rotation's overlap: never shown, only rotated.
        fields = [f for f in super().get_fields(request, obj) if f != "previous_secret"]
        if obj is not None and not self.has_change_permission(request, obj):
            secret_fields = {f.name for f in WebhookEndpoint._meta.concrete_fields if is_secret_field(f)}
            secret_fields.add("custom_headers")
            return [f for f in fields if f not in secret_fields] + ["secret_hint", "custom_headers_masked"]
        return fields


@admin.register(EndpointHealth)
class EndpointHealthAdmin(admin.ModelAdmin):
    """Circuit breaker and failure streak of each endpoint (written by the workers; read-only)."""

    list_display = ("endpoint", "circuit_state", "consecutive_failures", "next_probe_at", "failing_since",
                    "auto_disabled_at", "last_success_at")
    list_filter = ("circuit_state",)
    readonly_fields = tuple(f.name for f in EndpointHealth._meta.fields)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
