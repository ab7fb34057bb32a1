"""Two deletes of one endpoint at the same time (PostgreSQL, two sessions): the first answers 204
and writes the audit entry, the second answers 404 in the seed's error format and writes nothing,
as for any deleted resource (GitHub, Stripe). Found in review: both answered 204 and two audit
entries said the endpoint was deleted twice."""
import pytest
from django.db import connection
from rest_framework.test import APIClient

from endpoints.models import WebhookEndpoint
from tests.conftest import assert_seed_error
from tests.races import hold_in_transaction
from vocelio_webhooks import services as key_services
from vocelio_webhooks.models import AuditLogEntry


@pytest.fixture(autouse=True)
def _postgresql_only(transactional_db):
    if connection.vendor != "postgresql":
        pytest.skip("needs row locks and two concurrent writers (SQLite has one writer at a time)")


def test_second_of_two_concurrent_deletes_of_an_endpoint_answers_404_and_writes_no_audit_entry(api):
    # given: a first DELETE has gone through its work, not yet committed
    api.raise_request_exception = False
    endpoint = WebhookEndpoint.objects.create(name="crm", url="https://crm.example.com/hook", events=["lead.*"])

    # Another key: the first request's transaction also holds its key's row (last use), which
    # would queue the second request before it even reads the endpoint.
    other_key = key_services.create_api_key(name="other", scopes=["*"]).raw_key

    def first_delete() -> int:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {other_key}")
        return client.delete(f"/endpoints/{endpoint.pk}").status_code

    held = hold_in_transaction(first_delete)

    # when: a second DELETE of the same endpoint comes in meanwhile
    second = api.delete(f"/endpoints/{endpoint.pk}")
    outcome = held.join()

    # then
    assert "error" not in outcome and outcome["blocked"], outcome
    assert outcome["result"] == 204
    assert_seed_error(second, 404, "NOT_FOUND")
    assert not WebhookEndpoint.objects.filter(pk=endpoint.pk).exists()
    assert AuditLogEntry.objects.filter(action="delete", object_type="endpoints.webhookendpoint",
                                        object_id=str(endpoint.pk)).count() == 1


def test_admin_delete_of_an_endpoint_deleted_meanwhile_answers_404_and_records_nothing(admin_client, event_types):
    # given: a delete of the endpoint (through the API or another admin) is under way, not yet committed
    from endpoints import services as endpoint_services

    endpoint = WebhookEndpoint.objects.create(name="crm", url="https://crm.example.com/hook", events=["lead.*"])
    held = hold_in_transaction(
        lambda: endpoint_services.delete_endpoint(endpoint=WebhookEndpoint.objects.get(pk=endpoint.pk)))

    # when: an admin confirms the delete of the same endpoint meanwhile
    response = admin_client.post(f"/admin/endpoints/webhookendpoint/{endpoint.pk}/delete/", {"post": "yes"})
    outcome = held.join()

    # then: the admin's delete view is one transaction: its log and audit entries rolled back
    assert "error" not in outcome and outcome["blocked"], outcome
    assert response.status_code == 404
    assert not WebhookEndpoint.objects.filter(pk=endpoint.pk).exists()
    assert not AuditLogEntry.objects.filter(action="delete").exists()


def test_admin_bulk_delete_skips_an_endpoint_deleted_meanwhile_and_records_only_its_own(admin_client, event_types):
    # given: two endpoints; a delete of the first (through the API or another admin) is under way
    from django.contrib.admin.models import DELETION, LogEntry

    from endpoints import services as endpoint_services

    first = WebhookEndpoint.objects.create(name="a", url="https://a.example.com/hook", events=["lead.*"])
    second = WebhookEndpoint.objects.create(name="b", url="https://b.example.com/hook", events=["lead.*"])
    held = hold_in_transaction(
        lambda: endpoint_services.delete_endpoint(endpoint=WebhookEndpoint.objects.get(pk=first.pk)))

    # when: an admin runs "Delete selected" on both meanwhile
    response = admin_client.post("/admin/endpoints/webhookendpoint/",
                                 {"action": "delete_selected", "_selected_action": [first.pk, second.pk],
                                  "post": "yes"})
    outcome = held.join()

    # then: both are gone; the admin recorded (log and audit) only the delete it did
    assert "error" not in outcome and outcome["blocked"], outcome
    assert response.status_code == 302
    assert not WebhookEndpoint.objects.exists()
    assert list(AuditLogEntry.objects.filter(action="delete").values_list("object_id", flat=True)) == [str(second.pk)]
    assert list(LogEntry.objects.filter(action_flag=DELETION).values_list("object_id", flat=True)) == [str(second.pk)]
