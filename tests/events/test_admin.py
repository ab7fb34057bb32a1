"""The event admin: search by a customer's phone, and the replay action (the API's replay service)."""
from django.utils import timezone

from deliveries.models import Delivery
from endpoints import services as endpoint_services
from events.models import Event, EventType
from vocelio_webhooks.models import AuditLogEntry


def test_event_admin_replay_action_creates_a_replay_per_matching_endpoint(admin_client, event_types):
    # given two endpoints that take lead.created, one that does not
    for name, events in (("a", ["lead.*"]), ("b", ["*"]), ("c", ["call.ended"])):
        endpoint_services.create_endpoint(data={"name": name, "url": f"https://{name}.example.com/h", "events": events})
    event = Event.objects.create(event_id="evt_replay_admin", event_type=EventType.objects.get(name="lead.created"),
                                 timestamp=timezone.now(), data={}, environment="production")

    # when
    response = admin_client.post("/admin/events/event/", {"action": "replay_to_matching_endpoints",
                                                          "_selected_action": [event.pk]}, follow=True)

    # then
    replays = Delivery.objects.filter(event=event, is_replay=True)
    assert sorted(replays.values_list("endpoint__name", flat=True)) == ["a", "b"]
    assert "Created 2 replay delivery(ies) for 1 event(s)." in response.content.decode()
    assert AuditLogEntry.objects.get(action="replay", object_id=str(event.pk)).changes["deliveries"]["new"] == sorted(
        replays.values_list("pk", flat=True))


def test_event_admin_search_by_phone(admin_client, event_types):
    # given
    kind = EventType.objects.get(name="lead.created")
    wanted = Event.objects.create(event_id="evt_p1", event_type=kind, timestamp=timezone.now(),
                                  data={"phone": "+44 20 7946 0958"}, environment="production")
    Event.objects.create(event_id="evt_p2", event_type=kind, timestamp=timezone.now(), data={"phone": "+44 20 7946 0000"},
                         environment="production")

    # when
    response = admin_client.get("/admin/events/event/", {"q": "(20) 7946-0958"})

    # then
    assert [row.pk for row in response.context["cl"].result_list] == [wanted.pk]
