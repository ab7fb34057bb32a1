"""The Django admin's roles: the Support group (view, retry, no secrets, no edits), superusers,
and the read-only audit log and API key admin."""
import importlib

import pytest
from django.apps import apps as django_apps
from django.contrib.auth.models import Group, Permission, User
from django.test import Client
from django.utils import timezone

from deliveries.models import Delivery
from endpoints import services as endpoint_services
from events.models import Event, EventType
from vocelio_webhooks import services as key_services
from vocelio_webhooks.models import ApiKey, AuditLogEntry

support_migration = importlib.import_module("vocelio_webhooks.migrations.0005_support_group")


@pytest.fixture
def support_group(db, event_types) -> Group:
    """The group as the data migration makes it (run again: a transactional test's flush may
    have emptied the auth tables since the test database was migrated)."""
    support_migration.create_support_group(django_apps, None)
    return Group.objects.get(name="Support")


@pytest.fixture
def support_client(support_group) -> Client:
    user = User.objects.create_user("sam", "sam@example.com", "pw-sam-123", is_staff=True)
    user.groups.add(support_group)
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def endpoint():
    return endpoint_services.create_endpoint(data={
        "name": "CRM", "url": "https://crm.example.com/hooks", "events": ["lead.*"],
        "custom_headers": {"Authorization": "Bearer crm-token-abcdefghijkl", "X-Team": "sales"},
    })


def _dead_letter(endpoint, event_id: str = "evt_admin_1") -> Delivery:
    event = Event.objects.create(event_id=event_id, event_type=EventType.objects.get(name="lead.created"),
                                 timestamp=timezone.now(), data={}, environment=endpoint.environment)
    return Delivery.objects.create(event=event, endpoint=endpoint, status=Delivery.Status.DEAD_LETTERED,
                                   attempt_count=5)


def test_create_support_group_grants_view_and_retry_only(support_group):
    # given / when
    granted = support_group.permissions.select_related("content_type")
    perms = {f"{p.content_type.app_label}.{p.codename}" for p in granted}

    # then
    assert "deliveries.retry_delivery" in perms
    assert {"deliveries.view_delivery", "deliveries.view_deliveryattempt", "events.view_event",
            "endpoints.view_webhookendpoint"} <= perms
    assert all(p.split(".")[1].startswith("view_") or p == "deliveries.retry_delivery" for p in perms)


def test_create_support_group_is_idempotent(support_group):
    # given
    count = support_group.permissions.count()

    # when
    support_migration.create_support_group(django_apps, None)

    # then
    assert Group.objects.filter(name="Support").count() == 1
    assert Group.objects.get(name="Support").permissions.count() == count
    assert Permission.objects.filter(codename="retry_delivery").count() == 1


def test_support_user_views_endpoint_with_secrets_masked(support_client, endpoint):
    # given
    url = f"/admin/endpoints/webhookendpoint/{endpoint.pk}/change/"

    # when
    response = support_client.get(url)

    # then
    assert response.status_code == 200
    html = response.content.decode()
    assert endpoint.secret not in html
    assert "crm-token-abcdefghijkl" not in html
    assert "whsec_***" in html
    assert 'name="_save"' not in html  # view-only: no form to submit


def test_support_user_cannot_change_or_add_endpoints(support_client, endpoint):
    # given
    url = f"/admin/endpoints/webhookendpoint/{endpoint.pk}/change/"

    # when
    changed = support_client.post(url, {"name": "taken over"})
    added = support_client.get("/admin/endpoints/webhookendpoint/add/")
    deleted = support_client.post(f"/admin/endpoints/webhookendpoint/{endpoint.pk}/delete/", {"post": "yes"})

    # then
    assert (changed.status_code, added.status_code, deleted.status_code) == (403, 403, 403)
    endpoint.refresh_from_db()
    assert endpoint.name == "CRM"


def test_support_user_sees_deliveries_and_attempts(support_client, endpoint):
    # given
    delivery = _dead_letter(endpoint)

    # when
    listed = support_client.get("/admin/deliveries/delivery/")
    detail = support_client.get(f"/admin/deliveries/delivery/{delivery.pk}/change/")
    attempts = support_client.get("/admin/deliveries/deliveryattempt/")

    # then
    assert (listed.status_code, detail.status_code, attempts.status_code) == (200, 200, 200)
    assert "Retry selected deliveries" in listed.content.decode()


def test_retry_selected_action_retries_and_audits(support_client, endpoint):
    # given
    delivery = _dead_letter(endpoint)

    # when
    response = support_client.post("/admin/deliveries/delivery/", {
        "action": "retry_selected", "_selected_action": [str(delivery.pk)], "index": "0",
    })

    # then
    assert response.status_code == 302
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.RETRYING
    entry = AuditLogEntry.objects.get(action="retry")
    assert (entry.actor, entry.object_id) == ("user:sam", str(delivery.pk))
    assert entry.changes["status"] == {"old": "dead_lettered", "new": "retrying"}


def test_retry_selected_action_unavailable_without_retry_permission(db, event_types, endpoint):
    # given a staff user who may only view deliveries
    user = User.objects.create_user("viewer", "v@example.com", "pw-v-123", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_delivery"))
    client = Client()
    client.force_login(user)
    delivery = _dead_letter(endpoint)

    # when
    listed = client.get("/admin/deliveries/delivery/")
    client.post("/admin/deliveries/delivery/", {
        "action": "retry_selected", "_selected_action": [str(delivery.pk)], "index": "0",
    })

    # then
    assert listed.status_code == 200
    assert "Retry selected deliveries" not in listed.content.decode()
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.DEAD_LETTERED
    assert not AuditLogEntry.objects.exists()


def test_audit_log_admin_is_read_only_even_for_superusers(db):
    # given
    admin_user = User.objects.create_superuser("root", "root@example.com", "pw-root-123")
    client = Client()
    client.force_login(admin_user)
    entry = AuditLogEntry.objects.create(actor="user:x", action="update", object_type="endpoints.webhookendpoint",
                                         changes={"name": {"old": "a", "new": "b"}})

    # when
    listed = client.get("/admin/vocelio_webhooks/auditlogentry/")
    shown = client.get(f"/admin/vocelio_webhooks/auditlogentry/{entry.pk}/change/")
    added = client.get("/admin/vocelio_webhooks/auditlogentry/add/")
    deleted = client.post(f"/admin/vocelio_webhooks/auditlogentry/{entry.pk}/delete/", {"post": "yes"})

    # then
    assert (listed.status_code, shown.status_code) == (200, 200)
    assert "<td>b</td>" in shown.content.decode()
    assert (added.status_code, deleted.status_code) == (403, 403)
    assert AuditLogEntry.objects.filter(pk=entry.pk).exists()


def test_api_key_admin_revoke_action_revokes_and_audits(db):
    # given
    admin_user = User.objects.create_superuser("root", "root@example.com", "pw-root-123")
    client = Client()
    client.force_login(admin_user)
    key = key_services.create_api_key(name="crm").api_key

    # when
    response = client.post("/admin/vocelio_webhooks/apikey/", {
        "action": "revoke_selected", "_selected_action": [str(key.pk)], "index": "0",
    })

    # then
    assert response.status_code == 302
    key.refresh_from_db()
    assert key.revoked_at is not None and not key.is_active
    assert AuditLogEntry.objects.get(action="revoke").actor == "user:root"


def test_api_key_admin_never_shows_the_key_hash(db):
    # given
    admin_user = User.objects.create_superuser("root", "root@example.com", "pw-root-123")
    client = Client()
    client.force_login(admin_user)
    key = key_services.create_api_key(name="crm").api_key

    # when
    html = client.get(f"/admin/vocelio_webhooks/apikey/{key.pk}/change/").content.decode()

    # then
    assert key.prefix in html
    assert ApiKey.objects.get(pk=key.pk).key_hash not in html


def test_discard_selected_action_is_audited(support_client, endpoint):
    # given
    delivery = _dead_letter(endpoint)

    # when
    response = support_client.post("/admin/deliveries/delivery/", {
        "action": "discard_selected", "_selected_action": [str(delivery.pk)], "index": "0",
    })

    # then
    assert response.status_code == 302
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.CANCELLED
    entry = AuditLogEntry.objects.get(action="discard")
    assert entry.actor == "user:sam"
    assert entry.changes == {"deliveries": {"new": [delivery.pk]}}


def _changelists():
    from django.contrib import admin as django_admin

    return sorted(((model._meta.app_label, model._meta.model_name, model_admin)
                   for model, model_admin in django_admin.site._registry.items()), key=lambda row: row[:2])


def test_every_model_admin_checks_its_changelist_input():
    # given / when
    from analytics.admin_site import CheckedChangelistMixin

    unchecked = [f"{app}.{model}" for app, model, model_admin in _changelists()
                 if not isinstance(model_admin, CheckedChangelistMixin)]

    # then
    assert unchecked == []


@pytest.mark.parametrize(("app", "model"), [row[:2] for row in _changelists() if row[2].date_hierarchy])
def test_admin_changelist_out_of_range_date_drill_down_is_a_bad_filter_not_an_error(admin_client, event_types,
                                                                                     app, model):
    # given
    url = f"/admin/{app}/{model}/"
    field = next(ma.date_hierarchy for a, m, ma in _changelists() if (a, m) == (app, model))

    # when
    answers = [admin_client.get(f"{url}?{query}") for query in (
        f"{field}__year=99999999999", f"{field}__year=2024&{field}__month=99999999999",
        f"{field}__year=9999&{field}__month=12&{field}__day=31", f"{field}__year=9999")]

    # then
    assert [(a.status_code, a["Location"]) for a in answers] == [(302, f"{url}?e=1")] * 4


@pytest.mark.parametrize(("app", "model"), [row[:2] for row in _changelists()])
def test_admin_action_with_an_id_that_is_not_a_key_is_refused_not_an_error(admin_client, event_types, app, model):
    # given
    url = f"/admin/{app}/{model}/"
    action_form = admin_client.get(url).context["action_form"]
    actions = list(action_form.fields["action"].choices)[1:] if action_form else [("delete_selected", "")]

    # when
    answers = [admin_client.post(url, {"action": name, "_selected_action": ["abc"]}) for name, _ in actions]

    # then refused with a message (302), or ignored where the list has no such action (200)
    assert all(a.status_code == (302 if action_form else 200) for a in answers), [
        (name, a.status_code) for (name, _), a in zip(actions, answers, strict=True)]


def _delivery_ids(endpoint, count: int, *, status: str, attempt_count: int) -> list[str]:
    """``count`` events, each with one delivery to ``endpoint`` in ``status``; their ids as the
    admin's ``_selected_action`` takes them."""
    kind = EventType.objects.get(name="lead.created")
    events = Event.objects.bulk_create([Event(event_id=f"evt_many_{status}_{n}", event_type=kind,
                                              timestamp=timezone.now(), data={}, environment=endpoint.environment)
                                        for n in range(count)])
    deliveries = Delivery.objects.bulk_create([Delivery(event=e, endpoint=endpoint, attempt_count=attempt_count,
                                                        status=status) for e in events])
    return [str(d.pk) for d in deliveries]


def test_retry_selected_action_refuses_more_than_500_deliveries_and_changes_nothing(support_client, endpoint):
    # given: 501 dead letters (found by the operators' pass: "select all 20,000" took 5 minutes in
    # one request), and the largest selection the action takes, 500
    ids = _delivery_ids(endpoint, 501, status=Delivery.Status.DEAD_LETTERED, attempt_count=5)

    # when
    too_many = support_client.post("/admin/deliveries/delivery/",
                                   {"action": "retry_selected", "_selected_action": ids, "index": "0"}, follow=True)

    # then: an error naming the bulk tools, nothing retried, nothing audited
    page = too_many.content.decode()
    assert "501 rows selected: this action takes at most 500 at once. Nothing was done" in page
    assert "manage.py retry_deliveries" in page
    assert Delivery.objects.filter(status=Delivery.Status.DEAD_LETTERED).count() == 501
    assert not AuditLogEntry.objects.filter(action="retry").exists()

    # when: 500 of them
    support_client.post("/admin/deliveries/delivery/",
                        {"action": "retry_selected", "_selected_action": ids[:500], "index": "0"})

    # then
    assert Delivery.objects.filter(status=Delivery.Status.RETRYING).count() == 500


def test_replay_selected_deliveries_action_refuses_more_than_500_and_changes_nothing(support_client, endpoint):
    # given: 501 succeeded deliveries (the README: "The retry and replay actions take at most 500
    # rows at once"; the delivery list's replay action loaded every selected delivery with its
    # event and ran the endpoint's filters on each, in the web request)
    ids = _delivery_ids(endpoint, 501, status=Delivery.Status.SUCCEEDED, attempt_count=1)

    # when
    response = support_client.post("/admin/deliveries/delivery/",
                                    {"action": "replay_selected", "_selected_action": ids, "index": "0"}, follow=True)

    # then: an error naming the bulk tool, nothing replayed, nothing audited
    page = response.content.decode()
    assert "501 rows selected: this action takes at most 500 at once. Nothing was done" in page
    assert "manage.py replay_events" in page
    assert not Delivery.objects.filter(is_replay=True).exists()
    assert not AuditLogEntry.objects.filter(action="replay").exists()
