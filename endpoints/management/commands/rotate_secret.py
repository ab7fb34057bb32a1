"""``python manage.py rotate_secret ENDPOINT_ID [--grace-hours N] [--dry-run]``: give an endpoint a
new signing secret, as ``POST /endpoints/{id}/rotate-secret`` does (the same service, the same
audit entry with actor ``command:rotate_secret``).

The old secret keeps signing (a second signature on every delivery) for the grace period
(default ``WEBHOOK_SECRET_ROTATION_OVERLAP_SECONDS``, 24 h; at most 7 days, Svix's defaults), so
receivers can switch without dropping a delivery. The new secret is printed once, alone on the
last line of stdout; everything else goes to stderr, so ``SECRET=$(... rotate_secret 7)`` works.
It is never logged. There is no option to pass a chosen secret: a command line ends up in shell
history and ``ps``; use the API's ``secret`` field for that.
"""
from django.core.management.base import CommandError

from endpoints import services as endpoint_services
from endpoints.models import WebhookEndpoint
from vocelio_webhooks import services as audit_services
from vocelio_webhooks.audit import snapshot
from vocelio_webhooks.commands import (
    OperatorCommand,
    add_dry_run_argument,
    bounded_float,
    call_service,
    note,
    object_id,
)

# The service's limit on the overlap, 7 days (604,800 s; Svix's maximum), in the option's unit, so
# ``--grace-hours 169`` is refused in hours and by the option's name.
MAX_GRACE_HOURS = 7 * 24
grace_hours_type = bounded_float(0, MAX_GRACE_HOURS, " hours")


class Command(OperatorCommand):
    help = ("Rotate an endpoint's signing secret. The old secret stays valid for the grace period; the new one "
            "is printed once, alone on the last line of stdout.")
    examples = """
python manage.py rotate_secret 7 --dry-run
python manage.py rotate_secret 7 --grace-hours 48
SECRET=$(python manage.py rotate_secret 7 --grace-hours 0)   # drop the old secret at once
"""

    def add_arguments(self, parser):
        parser.add_argument("endpoint_id", type=object_id, help="The endpoint's id.")
        parser.add_argument("--grace-hours", type=grace_hours_type, default=None, metavar="H",
                            help="Hours the old secret stays valid beside the new one (default: "
                                 "WEBHOOK_SECRET_ROTATION_OVERLAP_SECONDS, 24 h; 0 drops it now; at most 168).")
        add_dry_run_argument(parser, "Check the rotation and say what it would do; change nothing, show no secret.")

    def handle(self, *args, endpoint_id: int, grace_hours: float | None, dry_run: bool, **options):
        endpoint = WebhookEndpoint.objects.filter(pk=endpoint_id).first()
        if endpoint is None:
            raise CommandError(f"Endpoint {endpoint_id} does not exist.")
        overlap_seconds = None if grace_hours is None else round(grace_hours * 3600)
        before = snapshot(endpoint)

        def rotate() -> WebhookEndpoint:
            return endpoint_services.rotate_secret(endpoint=endpoint, overlap_seconds=overlap_seconds)

        rotated = call_service(rotate, dry_run=dry_run)

        label = f"endpoint {endpoint.pk} '{endpoint.name}' ({endpoint.signature_method})"
        if rotated.previous_secret_expires_at:
            old = f"the current secret stays valid until {rotated.previous_secret_expires_at:%Y-%m-%d %H:%M:%S} UTC"
        else:
            old = "the current secret stops working at once"
        if dry_run:
            self.stdout.write(f"Would rotate the signing secret of {label}; {old}. Nothing was changed.")
            return
        audit_services.record_audit(actor=audit_services.command_actor("rotate_secret"), action="rotate_secret",
                                    obj=rotated, before=before)
        note(self, f"Rotated the signing secret of {label}; {old}. The new secret will not be shown again:")
        self.stdout.write(rotated.secret)
