"""``python manage.py send_test_event ENDPOINT_ID [--event-type T] [--data JSON] [--dry-run]``: send
one signed test event to an endpoint and print the receiver's answer, as
``POST /endpoints/{id}/test`` does (the same service, ``deliveries.services.send_test``: a fresh
``evt_test_…`` id, ``metadata.test = true``, nothing stored, nothing retried, the SSRF guard and
the endpoint's timeout apply).

The send is synchronous (no queue, no worker), so the command always waits for the answer, up to
the endpoint's ``timeout_seconds``; there is no ``--wait``. It exits with status 1 when the
receiver did not answer 2xx, so it can gate a script (like ``curl --fail``).

``--dry-run`` builds and signs the same request and prints it (credential headers masked as in
stored attempts; signatures shown, they are not secrets) without sending anything.
"""
import json
import secrets

from django.core.management.base import CommandError
from django.utils import timezone

from deliveries import queries as delivery_queries
from deliveries import services as delivery_services
from endpoints.models import WebhookEndpoint
from events.models import Event
from vocelio_webhooks.commands import OperatorCommand, add_dry_run_argument, object_id

RESPONSE_EXCERPT_CHARS = 500


def _json_object(value: str) -> dict:
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise CommandError(f"--data: not valid JSON ({exc.msg} at character {exc.pos}).") from exc
    if not isinstance(parsed, dict):
        raise CommandError("--data must be a JSON object.")
    return parsed


class Command(OperatorCommand):
    help = ("Send one signed test event to an endpoint (as POST /endpoints/{id}/test) and print the answer: "
            "status code, duration, response body excerpt. Exit status 1 unless the answer is 2xx.")
    examples = """
python manage.py send_test_event 7
python manage.py send_test_event 7 --event-type call.ended --data '{"call": {"id": "c_1"}}'
python manage.py send_test_event 7 --dry-run     # print the signed request, send nothing
"""

    def add_arguments(self, parser):
        parser.add_argument("endpoint_id", type=object_id, help="The endpoint's id.")
        parser.add_argument("--event-type", help="Event type to send (default: the endpoint's first exact event "
                                                 "type, else lead.created).")
        parser.add_argument("--data", help="The event's data as a JSON object (default: the type's sample data).")
        add_dry_run_argument(parser, "Print the signed request (credentials masked) instead of sending it.")

    def handle(self, *args, endpoint_id: int, event_type: str | None, data: str | None, dry_run: bool, **options):
        endpoint = WebhookEndpoint.objects.filter(pk=endpoint_id).first()
        if endpoint is None:
            raise CommandError(f"Endpoint {endpoint_id} does not exist.")
        sample = _json_object(data) if data is not None else None
        chosen = delivery_queries.event_type_for_test_send(endpoint=endpoint, name=event_type)
        if chosen is None:
            raise CommandError(f"Unknown event type {event_type!r}." if event_type else
                               "The endpoint's default test event type does not exist; give --event-type.")
        if dry_run:
            self._print_request(endpoint, chosen, sample)
            return

        outcome = delivery_services.send_test(endpoint=endpoint, event_type=chosen, data=sample)
        result = outcome.result
        self.stdout.write(f"{outcome.request.method} {outcome.request.url}  ({chosen.name}, {outcome.event_id})")
        if result.body:
            excerpt = result.body[:RESPONSE_EXCERPT_CHARS]
            more = (f" … ({len(result.body) - RESPONSE_EXCERPT_CHARS} more characters)"
                    if len(result.body) > len(excerpt) else "")
            self.stdout.write(f"Response body: {excerpt}{more}")
        if result.error_message:
            self.stdout.write(f"Error: {result.error_class}: {result.error_message}")
        answer = f"HTTP {result.status_code}" if result.status_code is not None else (result.error_class or "no answer")
        summary = f"Test event to endpoint {endpoint.pk}: {answer} in {result.duration_ms} ms"
        if not outcome.success:
            raise CommandError(f"{summary} (not 2xx).")
        self.stdout.write(self.style.SUCCESS(f"{summary}."))

    def _print_request(self, endpoint: WebhookEndpoint, event_type, sample: dict | None) -> None:
        # The same test event send_test makes (id, metadata.test), built and signed but not sent.
        event = Event(
            event_id=f"evt_test_{secrets.token_hex(8)}", event_type=event_type, timestamp=timezone.now(),
            data=event_type.sample_data if sample is None else sample, metadata={"test": True},
        )
        try:
            request = delivery_services.build_request(
                endpoint=endpoint, event=event, delivery_public_id=f"dlv_test_{secrets.token_hex(6)}",
                attempt_number=1)
        except delivery_services.TransformationFailed as exc:
            raise CommandError(f"The payload cannot be built: {exc}") from exc
        except ValueError as exc:
            raise CommandError(f"The request cannot be signed: {exc}") from exc
        self.stdout.write(f"{request.method} {request.url}")
        for name, value in delivery_services.mask_headers(request.headers).items():
            self.stdout.write(f"{name}: {value}")
        self.stdout.write("")
        self.stdout.write((request.body or b"").decode("utf-8", errors="replace"))
        self.stdout.write(f"Would send a {event_type.name} test event to endpoint {endpoint.pk}; nothing was sent.")
