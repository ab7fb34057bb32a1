"""The audit log: entries written by the API, the admin and management commands, secrets masked,
and read back through ``GET /audit-log`` and the admin."""
import io
import json
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from deliveries.models import Delivery
from endpoints.models import WebhookEndpoint
from events.models import Event, EventType
from vocelio_webhooks import audit
from vocelio_webhooks import services as audit_services
from vocelio_webhooks.models import ApiKey, AuditLogEntry


def _create_endpoint(api, **fields) -> dict:
    body = {"name": "CRM", "url": "https://crm.example.com/hooks", "events": ["lead.*"], **fields}
    response = api.post("/endpoints", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def _row_text(entry: AuditLogEntry) -> str:
    return json.dumps({f.name: str(getattr(entry, f.name)) for f in entry._meta.fields} | {"changes": entry.changes})


# --- written by the API -----------------------------------------------------------------------
def test_record_audit_endpoint_create_through_api_masks_secrets(api):
    # given / when
    created = _create_endpoint(api, signature_method="api_key", api_key="key-1234567890-abcdefgh",
                               custom_headers={"Authorization": "Bearer top-secret-token-value"})

    # then
    entry = AuditLogEntry.objects.get(action="create", object_type="endpoints.webhookendpoint")
    assert entry.actor == "api-key:tests"
    assert entry.object_id == str(created["id"])
    assert entry.environment == "production"
    assert entry.changes["name"] == {"new": "CRM"}
    assert entry.changes["api_key"]["new"].startswith("***")
    text = _row_text(entry)
    assert "key-1234567890-abcdefgh" not in text
    assert "top-secret-token-value" not in text


def test_record_audit_endpoint_update_records_only_changed_fields(api):
    # given
    created = _create_endpoint(api)

    # when
    response = api.patch(f"/endpoints/{created['id']}", {"name": "CRM v2", "timeout_seconds": 20}, format="json",
                         HTTP_X_REQUEST_ID="req-42")

    # then
    assert response.status_code == 200, response.content
    entry = AuditLogEntry.objects.get(action="update")
    assert entry.changes == {"name": {"old": "CRM", "new": "CRM v2"}, "timeout_seconds": {"old": 15, "new": 20}}
    assert entry.request_id == "req-42"
    assert entry.ip_address == "127.0.0.1"


def test_record_audit_endpoint_delete_keeps_id_and_last_values(api):
    # given
    created = _create_endpoint(api)

    # when
    response = api.delete(f"/endpoints/{created['id']}")

    # then
    assert response.status_code == 204
    entry = AuditLogEntry.objects.get(action="delete")
    assert entry.object_id == str(created["id"])
    assert entry.changes["url"] == {"old": "https://crm.example.com/hooks"}
    assert created["secret"] not in _row_text(entry)


def test_record_audit_status_change_shows_old_and_new_status(api):
    # given
    created = _create_endpoint(api)

    # when
    api.put(f"/endpoints/{created['id']}/status", {"status": "paused", "reason": "maintenance"}, format="json")

    # then
    entry = AuditLogEntry.objects.get(action="status_change")
    assert entry.changes["status"] == {"old": "active", "new": "paused"}
    assert entry.changes["status_reason"] == {"old": "", "new": "maintenance"}


def test_record_audit_secret_rotation_masks_both_secrets(api):
    # given
    created = _create_endpoint(api)

    # when
    rotated = api.post(f"/endpoints/{created['id']}/rotate-secret", {}, format="json").json()

    # then
    entry = AuditLogEntry.objects.get(action="rotate_secret")
    assert set(entry.changes) >= {"secret", "previous_secret", "previous_secret_expires_at"}
    assert entry.changes["secret"]["old"].startswith("whsec_***")
    text = _row_text(entry)
    assert created["secret"] not in text
    assert rotated["secret"] not in text


def test_record_audit_retry_through_api(api):
    # given
    endpoint = WebhookEndpoint.objects.get(pk=_create_endpoint(api)["id"])
    event = Event.objects.create(event_id="evt_audit_retry", event_type=EventType.objects.get(name="lead.created"),
                                 timestamp=timezone.now(), data={}, environment="production")
    delivery = Delivery.objects.create(event=event, endpoint=endpoint, status=Delivery.Status.DEAD_LETTERED,
                                       attempt_count=5)

    # when
    response = api.post(f"/deliveries/retry/{delivery.pk}")

    # then
    assert response.status_code == 202, response.content
    entry = AuditLogEntry.objects.get(action="retry")
    assert (entry.object_type, entry.object_id) == ("deliveries.delivery", str(delivery.pk))
    assert entry.changes["status"] == {"old": "dead_lettered", "new": "retrying"}


def _dead_letter(api, event_id: str = "evt_audit_dl") -> Delivery:
    endpoint = WebhookEndpoint.objects.get(pk=_create_endpoint(api)["id"])
    event = Event.objects.create(event_id=event_id, event_type=EventType.objects.get(name="lead.created"),
                                 timestamp=timezone.now(), data={}, environment="production")
    return Delivery.objects.create(event=event, endpoint=endpoint, status=Delivery.Status.DEAD_LETTERED,
                                   attempt_count=5)


def test_record_audit_discard_through_api(api):
    # given
    delivery = _dead_letter(api)

    # when
    response = api.post(f"/deliveries/{delivery.pk}/discard")

    # then
    assert response.status_code == 200, response.content
    entry = AuditLogEntry.objects.get(action="discard")
    assert entry.changes["status"] == {"old": "dead_lettered", "new": "cancelled"}


def test_record_audit_bulk_retry_lists_the_deliveries_but_not_dry_runs(api):
    # given
    delivery = _dead_letter(api)

    # when
    dry = api.post("/deliveries/retry", {"dry_run": True}, format="json")
    real = api.post("/deliveries/retry", {}, format="json")

    # then
    assert (dry.status_code, real.status_code) == (200, 202), real.content
    entry = AuditLogEntry.objects.get(action="retry")
    assert entry.object_type == "deliveries.delivery"
    assert entry.changes["deliveries"] == {"new": [delivery.pk]}
    assert entry.changes["selection"]["new"]["status"] == ["dead_lettered"]


def test_record_audit_event_replay_through_api(api):
    # given
    delivery = _dead_letter(api, event_id="evt_audit_replay")

    # when
    response = api.post("/events/evt_audit_replay/replay", {}, format="json")

    # then
    assert response.status_code == 202, response.content
    entry = AuditLogEntry.objects.get(action="replay")
    assert (entry.object_type, entry.object_id) == ("events.event", str(delivery.event.pk))
    assert entry.changes["deliveries"] == {"new": response.json()["deliveries"]}
    assert entry.environment == "production"


def test_record_audit_template_create_and_update(api):
    # given
    created = api.post("/templates", {"name": "lead_min", "form": "json", "body": {"id": "{{ event_id }}"}},
                       format="json")

    # when
    updated = api.patch("/templates/lead_min", {"body": {"id": "{{ event_id }}", "v": 2}}, format="json")

    # then
    assert (created.status_code, updated.status_code) == (201, 200)
    actions = list(AuditLogEntry.objects.filter(object_type="templates_app.payloadtemplate")
                   .order_by("id").values_list("action", flat=True))
    assert actions == ["create", "update"]
    change = AuditLogEntry.objects.get(action="update").changes["current_version"]
    assert change["old"] != change["new"]


def test_record_audit_event_type_create(api):
    # given / when
    api.post("/event-types", {"name": "billing.invoice_paid", "category": "billing"}, format="json")

    # then
    entry = AuditLogEntry.objects.get(object_type="events.eventtype")
    assert (entry.action, entry.object_repr) == ("create", "billing.invoice_paid")


def test_record_audit_publishing_is_not_audited(api):
    # given / when
    api.post("/events/publish", {"event_type": "lead.created", "data": {}}, format="json")

    # then (events are their own record; auditing 6,000 publishes a minute would drown the log)
    assert AuditLogEntry.objects.count() == 0


# --- GET /audit-log ---------------------------------------------------------------------------
def test_audit_log_view_lists_newest_first_with_filters(api):
    # given
    first = _create_endpoint(api, name="A")
    _create_endpoint(api, name="B")
    api.patch(f"/endpoints/{first['id']}", {"name": "A2"}, format="json")
    AuditLogEntry.objects.create(actor="command:old", action="delete", object_type="endpoints.webhookendpoint",
                                 occurred_at=timezone.now() - timedelta(days=3))

    # when
    everything = api.get("/audit-log").json()
    updates = api.get("/audit-log", {"action": "update"}).json()
    by_actor = api.get("/audit-log", {"actor": "command:old"}).json()
    recent = api.get("/audit-log", {"occurred_after": (timezone.now() - timedelta(days=1)).isoformat()}).json()
    one = api.get(f"/audit-log/{updates['results'][0]['id']}")

    # then
    assert [e["action"] for e in everything["results"]] == ["update", "create", "create", "delete"]
    assert [e["object_id"] for e in updates["results"]] == [str(first["id"])]
    assert by_actor["count"] == 1
    assert recent["count"] == 3
    assert one.status_code == 200
    assert one.json()["changes"] == {"name": {"old": "A", "new": "A2"}}


@pytest.mark.django_db
def test_audit_log_view_needs_read_scope(event_types):
    # given
    client = APIClient()
    raw = audit_services.create_api_key(name="p", scopes=["events:publish"]).raw_key
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")

    # when
    response = client.get("/audit-log")

    # then
    assert response.status_code == 403


def test_audit_log_view_shows_limited_keys_only_their_environments(api):
    # given
    _create_endpoint(api, name="prod", environment="production")
    _create_endpoint(api, name="stage", environment="staging")
    client = APIClient()
    raw = audit_services.create_api_key(name="s", scopes=["read"], environments=["staging"]).raw_key
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")

    # when
    entries = client.get("/audit-log").json()["results"]

    # then
    assert [e["object_repr"].split(" ")[0] for e in entries] == ["stage"]


def test_audit_log_view_is_read_only(api):
    # given
    _create_endpoint(api)
    entry = AuditLogEntry.objects.get()

    # when
    posted = api.post("/audit-log", {"actor": "me"}, format="json")
    deleted = api.delete(f"/audit-log/{entry.pk}")

    # then
    assert (posted.status_code, deleted.status_code) == (405, 405)
    assert AuditLogEntry.objects.count() == 1


# --- written by the admin and by commands -------------------------------------------------------
@pytest.fixture
def admin_client(db):
    user = User.objects.create_superuser("alice", "alice@example.com", "pw-alice-123")
    client = Client()
    client.force_login(user)
    return client


def test_audited_admin_change_records_user_and_diff(api, admin_client):
    # given
    created = _create_endpoint(api, custom_headers={"X-Team": "sales"})
    endpoint = WebhookEndpoint.objects.get(pk=created["id"])
    url = f"/admin/endpoints/webhookendpoint/{endpoint.pk}/change/"
    form = admin_client.get(url).context["adminform"].form
    data = {name: form.initial.get(name) for name in form.fields}
    data.update({"name": "CRM (admin)", "secret": "", "api_key": "", "verify_ssl": "on", "events": '["lead.*"]',
                 "custom_headers": '{"X-Team": "sales"}', "retry_policy": json.dumps(endpoint.retry_policy),
                 "allowed_ip_ranges": "[]", "filters": "null", "transformation": "null"})
    data = {k: ("" if v is None else v) for k, v in data.items()}

    # when
    response = admin_client.post(url, data)

    # then
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else response
    entry = AuditLogEntry.objects.filter(action="update").get()
    assert entry.actor == "user:alice"
    assert entry.changes["name"] == {"old": "CRM", "new": "CRM (admin)"}
    assert "secret" not in entry.changes  # left empty: kept, so not changed
    assert created["secret"] not in _row_text(entry)


def _admin_change_data(admin_client, page: str, endpoint: WebhookEndpoint, **changes) -> dict:
    form = admin_client.get(page).context["adminform"].form
    data = {name: form.initial.get(name) for name in form.fields}
    data.update({"secret": "", "api_key": "", "verify_ssl": "on", "events": json.dumps(endpoint.events),
                 "custom_headers": json.dumps(endpoint.custom_headers),
                 "retry_policy": json.dumps(endpoint.retry_policy),
                 "allowed_ip_ranges": "[]", "filters": "null", "transformation": "null", **changes})
    return {k: ("" if v is None else v) for k, v in data.items()}


@pytest.mark.parametrize(("changes", "field"), [
    ({"filters": json.dumps([{"field_path": "data.x", "operator": "no_such_operator", "value": 1}])}, "filters"),
    ({"filters": json.dumps([{"field_path": "data.x", "operator": "in", "value": list(range(501))}])}, "filters"),
    ({"transformation": json.dumps({"body": "{{ data.x ", "content_type": "text/plain"})}, "transformation"),
    ({"url": "http://169.254.169.254/latest/meta-data"}, "url"),
], ids=["unknown-operator", "in-list-too-long", "template-syntax", "metadata-address"])
def test_admin_change_form_refuses_what_the_api_refuses(api, admin_client, changes, field):
    # given: an endpoint, and an edit the API would answer with 400
    created = _create_endpoint(api)
    endpoint = WebhookEndpoint.objects.get(pk=created["id"])
    page = f"/admin/endpoints/webhookendpoint/{endpoint.pk}/change/"

    # when
    response = admin_client.post(page, _admin_change_data(admin_client, page, endpoint, **changes))

    # then: the form comes back with the error on that field, and nothing changed
    assert response.status_code == 200
    assert response.context["adminform"].form.errors.get(field), response.context["adminform"].form.errors
    endpoint.refresh_from_db()
    assert (endpoint.filters, endpoint.transformation, endpoint.url) == (None, None, created["url"])
    assert not AuditLogEntry.objects.filter(action="update").exists()


def test_audited_admin_delete_records_each_object(api, admin_client):
    # given
    created = _create_endpoint(api)

    # when
    response = admin_client.post(f"/admin/endpoints/webhookendpoint/{created['id']}/delete/", {"post": "yes"})

    # then
    assert response.status_code == 302
    entry = AuditLogEntry.objects.get(action="delete")
    assert (entry.actor, entry.object_id) == ("user:alice", str(created["id"]))
    assert not WebhookEndpoint.objects.exists()


def test_admin_delete_selected_endpoints_keeps_their_deliveries_and_records_each(api, admin_client):
    # given: two endpoints, one with a delivery (history that must outlive it)
    from deliveries.models import Delivery

    first, second = _create_endpoint(api), _create_endpoint(api)
    published = api.post("/events/publish", {"event_type": "lead.created", "data": {}}, format="json")
    assert published.status_code == 202, published.content

    # when: "Delete selected" (each goes through endpoints.services.delete_endpoint)
    response = admin_client.post("/admin/endpoints/webhookendpoint/", {
        "action": "delete_selected", "_selected_action": [first["id"], second["id"]], "post": "yes"})

    # then
    assert response.status_code == 302
    assert not WebhookEndpoint.objects.exists()
    assert Delivery.objects.count() == 2 and set(Delivery.objects.values_list("endpoint_id", flat=True)) == {None}
    assert sorted(AuditLogEntry.objects.filter(action="delete").values_list("object_id", flat=True)) == sorted(
        [str(first["id"]), str(second["id"])])


@pytest.mark.django_db
def test_audited_admin_user_changes_mask_the_password_hash(admin_client):
    # given / when
    response = admin_client.post("/admin/auth/user/add/", {"username": "bob", "password1": "Xk9!long-pass-phrase",
                                                           "password2": "Xk9!long-pass-phrase",
                                                           "usable_password": "true"})

    # then
    assert response.status_code == 302
    entry = AuditLogEntry.objects.get(object_type="auth.user", action="create")
    assert entry.actor == "user:alice"
    assert User.objects.get(username="bob").password not in _row_text(entry)


@pytest.mark.django_db
def test_create_api_key_command_is_audited():
    # given / when
    call_command("create_api_key", "crm-sync", "--scopes", "read", stdout=io.StringIO(), stderr=io.StringIO())

    # then
    entry = AuditLogEntry.objects.get()
    key = ApiKey.objects.get()
    assert (entry.actor, entry.action, entry.object_id) == ("command:create_api_key", "create", str(key.pk))
    assert entry.changes["scopes"] == {"new": ["read"]}
    assert key.key_hash not in _row_text(entry)


@pytest.mark.django_db
def test_revoke_api_key_command_revokes_and_is_audited():
    # given
    key = audit_services.create_api_key(name="old").api_key

    # when
    out = io.StringIO()
    call_command("revoke_api_key", key.prefix, stdout=out)

    # then
    key.refresh_from_db()
    assert (key.is_active, key.revoked_at is not None) == (False, True)
    entry = AuditLogEntry.objects.get(action="revoke")
    assert entry.actor == "command:revoke_api_key"
    assert entry.changes["is_active"] == {"old": True, "new": False}
    assert "Revoked" in out.getvalue()


# --- diffs and masks ------------------------------------------------------------------------------
def test_diff_sees_a_changed_secret_even_when_both_masks_read_the_same():
    # given two short secrets whose masks are both "***"
    before = {"secret": audit.mask_value("short-one"), "name": "x"}
    after = {"secret": audit.mask_value("short-two"), "name": "x"}

    # when
    changes = audit.diff(before, after)

    # then
    assert changes == {"secret": {"old": "***", "new": "***"}}
    assert json.dumps(changes) == '{"secret": {"old": "***", "new": "***"}}'


def test_mask_changes_masks_secret_fields_and_credential_keys():
    # given
    changes = {"secret": {"old": "whsec_abcdefghijklmnopqrstuvwxyz", "new": "whsec_zyxwvutsrqponmlkjihgfedcba"},
               "custom_headers": {"new": {"Authorization": "Bearer abcdefghijklmnop", "X-Team": "sales"}},
               "name": "plain"}

    # when
    masked = audit.mask_changes(changes)

    # then
    assert masked["secret"] == {"old": "whsec_***wxyz", "new": "whsec_***dcba"}
    assert masked["custom_headers"]["new"]["X-Team"] == "sales"
    assert "abcdefghijklmnop" not in json.dumps(masked)
    assert masked["name"] == {"new": "plain"}
