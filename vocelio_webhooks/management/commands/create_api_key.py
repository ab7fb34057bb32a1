"""``python manage.py create_api_key NAME [--scopes ...] [--environments ...] [--expires-in-days N] [--dry-run]``:
create an API key and print it once, alone on the last line.

``--dry-run`` runs the real service inside a transaction that is rolled back, so bad scopes or
environments fail exactly as they would for real, and no key (nor audit entry) is kept or shown."""
from datetime import timedelta

from django.core.management.base import CommandError
from django.utils import timezone

from vocelio_webhooks import services as key_services
from vocelio_webhooks.commands import (
    OperatorCommand,
    add_dry_run_argument,
    call_service,
    note,
    positive_days,
)
from vocelio_webhooks.models import Scope


def _csv(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


class Command(OperatorCommand):
    help = ("Create an API key. The key is printed once, alone on the last line of stdout (the summary goes "
            "to stderr); store it now.")
    examples = """
python manage.py create_api_key crm-sync --scopes events:publish --environments production
python manage.py create_api_key ci --scopes read --expires-in-days 90 --dry-run
KEY=$(python manage.py create_api_key dashboard --scopes read)
"""

    def add_arguments(self, parser):
        parser.add_argument("name", help="Who or what the key is for, e.g. 'crm-sync'.")
        parser.add_argument(
            "--scopes", type=_csv, default=None,
            help=f"Comma-separated scopes (default: '*', everything). One of: {', '.join(Scope.values)}; "
                 "'admin' means '*'.",
        )
        parser.add_argument(
            "--environments", type=_csv, default=None,
            help="Comma-separated environments the key is limited to (default: all), e.g. 'staging'.",
        )
        parser.add_argument("--expires-in-days", type=positive_days, default=None, metavar="N",
                            help="Days until the key stops working, 1 to 36,500 (default: never).")
        add_dry_run_argument(parser, "Validate the options and show the key that would be created; create nothing.")

    def handle(self, *args, name: str, scopes, environments, expires_in_days, dry_run: bool = False, **options):
        if scopes is not None and not scopes:
            raise CommandError("--scopes needs at least one scope.")
        expires_at = timezone.now() + timedelta(days=expires_in_days) if expires_in_days else None
        def create():
            return key_services.create_api_key(
                name=name, scopes=scopes, environments=environments, expires_at=expires_at,
                actor=key_services.command_actor("create_api_key"),
            )

        created = call_service(create, dry_run=dry_run)
        key = created.api_key
        limits = [f"scopes {', '.join(key.scopes)}",
                  f"environments {', '.join(key.environments) if key.environments else 'all'}",
                  f"expires {key.expires_at:%Y-%m-%d %H:%M} UTC" if key.expires_at else "never expires"]
        if dry_run:
            self.stdout.write(f"Would create API key '{name}' ({'; '.join(limits)}). Nothing was created.")
            return
        note(self, f"Created API key '{name}' (prefix {key.prefix}; {'; '.join(limits)}). "
             "It will not be shown again:")
        self.stdout.write(created.raw_key)
