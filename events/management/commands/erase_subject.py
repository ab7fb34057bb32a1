"""``python manage.py erase_subject --email ... --phone ... [--dry-run]``: redact one person's data
in stored events and delivery attempts (GDPR article 17, CCPA right to delete) and print a JSON
report of what changed."""
import json

from django.core.management.base import BaseCommand, CommandError

from events import privacy
from events.management.commands._subject import add_subject_arguments, progress_bar
from vocelio_webhooks import services as audit_services
from vocelio_webhooks.errors import ServiceError


class Command(BaseCommand):
    help = ("Replace every stored value that contains the email or phone number (and the personal fields "
            "beside it) with \"[redacted]\" in events and delivery attempts; prints a JSON report.")

    def add_arguments(self, parser):
        add_subject_arguments(parser)
        parser.add_argument("--dry-run", action="store_true", help="Report what would change; write nothing.")

    def handle(self, *args, email, phone, dry_run, chunk_size, no_progress, **options):
        if chunk_size < 1:
            raise CommandError("--chunk-size must be at least 1.")
        def audit(report: privacy.ErasureReport) -> None:
            # Before the first write, so that an erasure stopped part-way is on record too. The
            # subject's email and phone are not written to the audit log: only what changes.
            audit_services.record_audit(
                actor=audit_services.command_actor("erase_subject"), action="update", object_type="events.event",
                object_repr="subject erasure (GDPR/CCPA)", changes={"erasure": {"old": None, "new": report.as_dict()}},
            )

        try:
            report = privacy.erase_subject(email=email, phone=phone, dry_run=dry_run, chunk_size=chunk_size,
                                           progress=progress_bar(self, enabled=not no_progress), before_write=audit)
        except ServiceError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(json.dumps(report.as_dict(), indent=2))
