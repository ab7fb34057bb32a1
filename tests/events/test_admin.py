"""The event admin: search by a customer's phone, and the replay action (the API's replay service)."""
import pytest
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
    Event.objects.create(event_id="evt_p2", event_type=kind, timestamp=timezone.now(),
                         data={"phone": "+44 20 7946 0000"}, environment="production")

    # when
    response = admin_client.get("/admin/events/event/", {"q": "(20) 7946-0958"})

    # then
    assert [row.pk for row in response.context["cl"].result_list] == [wanted.pk]


def test_event_admin_never_deletes_events_even_for_a_superuser(admin_client, event_types):
    # given an event with a delivery (deleting the event would delete the delivery too)
    endpoint = endpoint_services.create_endpoint(data={"name": "a", "url": "https://a.example.com/h",
                                                       "events": ["*"]})
    event = Event.objects.create(event_id="evt_keep", event_type=EventType.objects.get(name="lead.created"),
                                 timestamp=timezone.now(), data={}, environment="production")
    Delivery.objects.create(event=event, endpoint=endpoint, status=Delivery.Status.SUCCEEDED)

    # when
    bulk = admin_client.post("/admin/events/event/", {"action": "delete_selected", "_selected_action": [event.pk],
                                                      "post": "yes"})
    one = admin_client.post(f"/admin/events/event/{event.pk}/delete/", {"post": "yes"})

    # then
    assert bulk.status_code in (200, 302)
    assert one.status_code == 403
    assert Event.objects.filter(pk=event.pk).exists()
    assert Delivery.objects.filter(event=event).count() == 1


@pytest.mark.parametrize("query", ["received_at__year=99999999999", "received_at__year=9999&received_at__month=12",
                                   "timestamp__year=0"])
def test_event_admin_out_of_range_dates_in_the_query_string_show_the_unfiltered_list(admin_client, event_types,
                                                                                      query):
    # when
    response = admin_client.get(f"/admin/events/event/?{query}")

    # then
    assert (response.status_code, response["Location"]) == (302, "/admin/events/event/?e=1")
    assert admin_client.get(response["Location"]).status_code == 200


@pytest.mark.parametrize("name", ["commande.créée", "lead.\u001b[2Jx", "lead.\u202eevil", "Lead.Created", "lead"])
def test_event_type_admin_refuses_a_name_the_api_refuses(admin_client, event_types, name):
    # given: the add form, as a person fills it in
    form = {"name": name, "category": "lead", "description": "", "sample_data": "{}", "is_high_priority": ""}

    # when
    response = admin_client.post("/admin/events/eventtype/add/", form)

    # then: the form comes back with the API's message on the name, and nothing is created
    assert response.status_code == 200
    assert "lowercase dotted name" in str(response.context["adminform"].form.errors.get("name"))
    assert not EventType.objects.filter(name=name).exists()


def test_event_type_admin_adds_a_well_formed_name(admin_client, event_types):
    # when
    response = admin_client.post("/admin/events/eventtype/add/", {"name": "billing.invoice_paid", "category": "billing",
                                                                  "description": "", "sample_data": "{}"})

    # then
    assert response.status_code == 302
    assert EventType.objects.filter(name="billing.invoice_paid").exists()


def test_event_admin_replay_action_refuses_more_than_500_events(admin_client, event_types):
    # given
    kind = EventType.objects.get(name="lead.created")
    events = Event.objects.bulk_create([Event(event_id=f"evt_replay_many_{n}", event_type=kind,
                                              timestamp=timezone.now(), data={}, environment="production")
                                        for n in range(501)])

    # when
    response = admin_client.post("/admin/events/event/", {"action": "replay_to_matching_endpoints",
                                                          "_selected_action": [e.pk for e in events]}, follow=True)

    # then
    assert "501 rows selected: this action takes at most 500 at once" in response.content.decode()
    assert "manage.py replay_events" in response.content.decode()
    assert not Delivery.objects.filter(is_replay=True).exists()
