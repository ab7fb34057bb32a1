"""``python manage.py rotate_encryption_keys``: re-encrypt every stored endpoint secret with the
newest key of ``WEBHOOK_ENCRYPTION_KEYS``.

Key rotation: put a new Fernet key first in ``WEBHOOK_ENCRYPTION_KEYS`` (keep the old ones after
it), restart, run this command, then remove the old keys. Values are read with any configured key
and written with the first. ``--dry-run`` only counts.
"""
from django.core.management.base import BaseCommand
from django.db import transaction

from endpoints.models import WebhookEndpoint
from vocelio_webhooks import services as audit_services
from vocelio_webhooks.commands import batch_size as batch_size_type

ENCRYPTED_FIELDS = ("secret", "api_key", "previous_secret", "custom_headers")


class Command(BaseCommand):
    help = "Re-encrypt endpoint secrets, API keys and custom headers with the newest encryption key."

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="Count what would be re-encrypted; write nothing.")
        # Bounded: 0 would crash range() and a negative size would silently re-encrypt nothing.
        parser.add_argument("--batch-size", type=batch_size_type, default=500, metavar="N",
                            help="Endpoints per transaction, 1 to 10,000 (default 500).")

    def handle(self, *args, dry_run: bool, batch_size: int, **options):
        total = 0
        ids = list(WebhookEndpoint.objects.order_by("pk").values_list("pk", flat=True))
        for start in range(0, len(ids), batch_size):
            with transaction.atomic():
                batch = WebhookEndpoint.objects.select_for_update().filter(pk__in=ids[start:start + batch_size])
                for endpoint in batch:
                    total += 1
                    if not dry_run:
                        # Loading decrypted with any key; saving encrypts with the first.
                        endpoint.save(update_fields=list(ENCRYPTED_FIELDS))
        if not dry_run:
            audit_services.record_audit(
                actor=audit_services.command_actor("rotate_encryption_keys"), action="update",
                object_type="endpoints.webhookendpoint", object_repr=f"{total} endpoint(s) re-encrypted",
                changes={"encryption_key": {"old": "***", "new": "***"}},
            )
        verb = "Would re-encrypt" if dry_run else "Re-encrypted"
        self.stdout.write(f"{verb} {total} endpoint(s).")
