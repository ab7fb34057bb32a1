"""``python manage.py export_subject --email ... --phone ... [--output FILE]``: print as JSON
everything stored that mentions one person (GDPR article 15, CCPA right to know)."""
import json

from django.core.management.base import BaseCommand, CommandError

from events import privacy
from events.management.commands._subject import add_subject_arguments, progress_bar
from vocelio_webhooks.errors import ServiceError


class Command(BaseCommand):
    help = ("Print as JSON every stored event and delivery attempt that mentions the email or phone number, "
            "with the deliveries of those events.")

    def add_arguments(self, parser):
        add_subject_arguments(parser)
        parser.add_argument("--output", help="Write the JSON to this file instead of standard output.")

    def handle(self, *args, email, phone, chunk_size, no_progress, output, **options):
        if chunk_size < 1:
            raise CommandError("--chunk-size must be at least 1.")
        try:
            export = privacy.export_subject(email=email, phone=phone, chunk_size=chunk_size,
                                            progress=progress_bar(self, enabled=not no_progress))
        except ServiceError as exc:
            raise CommandError(exc.message) from exc
        text = json.dumps(export, indent=2, ensure_ascii=False)
        if output:
            with open(output, "w", encoding="utf-8") as handle:
                handle.write(text + "\n")
            self.stderr.write(f"Wrote {export['counts']['events']} events and {export['counts']['attempts']} "
                              f"attempts to {output}.")
        else:
            self.stdout.write(text)
