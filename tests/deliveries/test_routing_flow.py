"""Routing end to end (issue 3): payload filters decide which endpoints get a delivery, templates
decide the bytes that arrive. The seed's three integration examples are created through the API as
the README shows them and checked byte for byte at a real receiver, with signatures over the
transformed bytes."""
import hashlib
import hmac
import json

from deliveries.models import Delivery
from tests.conftest import wait_until
from tests.templates_app.seed_examples import (
    ANALYTICS_TEMPLATE,
    CALL_ENDED,
    HEALTH_ALERT,
    LEAD_CREATED,
    SALESFORCE_OUTPUT,
    SALESFORCE_TEMPLATE,
    SLACK_TEMPLATE,
)


def compact(value) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def publish(api, envelope, **extra):
    body = {key: envelope[key] for key in ("event_type", "event_id", "timestamp", "data") if key in envelope}
    if "metadata" in envelope:
        body["metadata"] = {k: v for k, v in envelope["metadata"].items() if k != "retry_count"}
    response = api.post("/events/publish", {**body, **extra}, format="json")
    assert response.status_code == 202, response.content
    return response.json()


def create_endpoint(api, **fields):
    response = api.post("/endpoints", {"name": "x", "events": ["*"], **fields}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def test_salesforce_named_template_delivers_exact_bytes_signed(api, receiver, worker):
    # given: the seed's "CRM Integration", with its named template created first
    created = api.post("/templates", {"name": "salesforce_lead_template", "form": "json", "body": SALESFORCE_TEMPLATE},
                       format="json")
    assert created.status_code == 201, created.content
    create_endpoint(
        api, name="Salesforce Lead Sync", url=receiver.url("/salesforce"),
        events=["lead.created", "lead.updated", "lead.converted"], http_method="POST",
        secret="salesforce_webhook_secret", signature_method="hmac_sha256",
        custom_headers={"Authorization": "Bearer sf_token_123", "X-Source": "Vocelio"},
        transformation={"enabled": True, "template": "salesforce_lead_template"},
    )

    # when
    publish(api, LEAD_CREATED)

    # then
    request = receiver.wait_for(1, path="/salesforce")[0]
    assert request.body == compact(SALESFORCE_OUTPUT)
    expected = "sha256=" + hmac.new(b"salesforce_webhook_secret", request.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(request.header("X-Vocelio-Signature"), expected)
    assert request.header("Authorization") == "Bearer sf_token_123"
    assert request.header("X-Source") == "Vocelio"
    assert request.header("Content-Type") == "application/json"


def test_slack_inline_template_delivers_exact_bytes(api, receiver, worker):
    # given: the seed's "Slack Notifications"
    create_endpoint(api, name="Slack Alerts", url=receiver.url("/slack"),
                    events=["system.health_alert", "system.error"],
                    transformation={"enabled": True, "template": SLACK_TEMPLATE})

    # when
    publish(api, HEALTH_ALERT)

    # then
    request = receiver.wait_for(1, path="/slack")[0]
    assert request.body == compact({
        "text": "🚨 Alert: system.health_alert",
        "attachments": [{"color": "danger", "fields": [
            {"title": "Event", "value": "system.health_alert", "short": True},
            {"title": "Time", "value": "2025-08-05T20:15:00Z", "short": True},
        ]}],
    })


def test_analytics_dashboard_template_delivers_exact_bytes(api, receiver, worker):
    # given: the seed's "Analytics Dashboard"
    create_endpoint(api, name="Analytics Dashboard", url=receiver.url("/analytics"),
                    events=["call.ended", "lead.converted", "appointment.completed"], rate_limit_per_minute=100,
                    transformation={"enabled": True, "template": ANALYTICS_TEMPLATE})

    # when
    publish(api, CALL_ENDED)

    # then
    request = receiver.wait_for(1, path="/analytics")[0]
    assert request.body == compact({"metric_type": "call.ended", "value": 1, "timestamp": "2025-08-05T18:00:00Z",
                                    "dimensions": {"agent_id": "agent_123", "source": "vocelio"}})


def test_text_template_and_header_template_are_sent_as_rendered(api, receiver, worker):
    # given
    create_endpoint(
        api, url=receiver.url("/form"), custom_headers={"X-Lead-Id": "{{ data.lead.id }}"},
        transformation={"body": "lead_id={{ data.lead.id | urlencode }}&score={{ data.lead.score }}",
                        "content_type": "application/x-www-form-urlencoded"},
    )

    # when
    publish(api, LEAD_CREATED)

    # then
    request = receiver.wait_for(1, path="/form")[0]
    assert request.body == b"lead_id=lead_123&score=85"
    assert request.header("Content-Type") == "application/x-www-form-urlencoded"
    assert request.header("X-Lead-Id") == "lead_123"


def test_event_specific_template_wins_over_the_default(api, receiver, worker):
    # given
    create_endpoint(api, url=receiver.url("/per-type"), transformation={
        "template": {"kind": "default", "type": "{{ event_type }}"},
        "event_templates": {"call.ended": {"template": {"kind": "call", "seconds": "{{ data.call.duration }}"}}},
    })

    # when
    publish(api, CALL_ENDED)
    publish(api, LEAD_CREATED)

    # then
    bodies = sorted(r.body for r in receiver.wait_for(2, path="/per-type"))
    assert bodies == sorted([compact({"kind": "call", "seconds": 450}),
                             compact({"kind": "default", "type": "lead.created"})])


def test_named_template_followed_or_pinned_across_a_new_version(api, receiver, worker):
    # given: two endpoints on one template, one following it and one pinned to version 1
    template = api.post("/templates",
                        {"name": "lead_min", "form": "json", "body": {"v": 1, "id": "{{ data.lead.id }}"}},
                        format="json").json()
    create_endpoint(api, url=receiver.url("/follow"), transformation={"template": "lead_min"})
    create_endpoint(api, url=receiver.url("/pinned"), transformation={"template": "lead_min", "template_version": 1})
    updated = api.patch(f"/templates/{template['id']}", {"body": {"v": 2, "id": "{{ data.lead.id }}"}, "note": "v2"},
                      format="json")
    assert updated.status_code == 200, updated.content

    # when
    publish(api, LEAD_CREATED)

    # then
    assert receiver.wait_for(1, path="/follow")[0].body == compact({"v": 2, "id": "lead_123"})
    assert receiver.wait_for(1, path="/pinned")[0].body == compact({"v": 1, "id": "lead_123"})


def test_template_failing_at_delivery_fails_without_request_or_retry(api, receiver, worker):
    # given: valid syntax, but the variable is missing from this event
    endpoint = create_endpoint(api, url=receiver.url("/broken"),
                               transformation={"template": {"x": "{{ data.lead.nope }}"}})

    # when
    published = publish(api, LEAD_CREATED)

    # then
    delivery_id = published["deliveries"][0]["id"]
    detail = wait_until(lambda: (d := api.get(f"/deliveries/{delivery_id}").json())["status"] == "failed" and d)
    assert detail["attempt_count"] == 1
    assert detail["attempts"][0]["error_class"] == "template_error"
    assert "data.lead.nope" in detail["last_error"]
    assert receiver.for_path("/broken") == []
    listed = api.get("/deliveries", {"endpoint": endpoint["id"], "status": "failed"}).json()["results"]
    assert [d["id"] for d in listed] == [delivery_id]


def test_filters_with_wildcards_and_environments_decide_who_gets_a_delivery(api, receiver, worker):
    # given
    hot = {"field_path": "data.lead.score", "operator": "greater_than", "value": 80}
    create_endpoint(api, url=receiver.url("/hot"), events=["lead.*"], filters=[hot])
    create_endpoint(api, url=receiver.url("/hot-staging"), events=["lead.*"], filters=[hot], environment="staging")
    create_endpoint(api, url=receiver.url("/web"), events=["*"], filters={"any": [
        {"field_path": "data.lead.source", "operator": "equals", "value": "WEBSITE", "case_sensitive": False},
        {"field_path": "metadata.source_service", "operator": "equals", "value": "campaigns"},
    ]})
    cold = {**LEAD_CREATED, "event_id": "evt_cold", "data": {**LEAD_CREATED["data"],
                                                            "lead": {**LEAD_CREATED["data"]["lead"], "score": "70"}}}

    # when
    first = publish(api, cold)
    second = publish(api, LEAD_CREATED)

    # then
    assert (first["matched_endpoints"], first["filtered_out"]) == (1, 1)
    assert (second["matched_endpoints"], second["filtered_out"]) == (2, 0)
    assert [r.json()["event_id"] for r in receiver.wait_for(1, path="/hot")] == ["evt_123456789"]
    assert len(receiver.wait_for(2, path="/web")) == 2
    wait_until(lambda: Delivery.objects.filter(status="succeeded").count() == 3)
    assert receiver.for_path("/hot-staging") == []
    assert Delivery.objects.count() == 3
