"""``python manage.py revoke_api_key PREFIX_OR_ID``: revoke an API key for good."""
from django.core.management.base import BaseCommand, CommandError

from vocelio_webhooks import services as key_services
from vocelio_webhooks.commands import MAX_ID
from vocelio_webhooks.models import ApiKey


class Command(BaseCommand):
    help = "Revoke an API key (by its id or the prefix shown at creation, e.g. vwk_AbCd1234). Final."

    def add_arguments(self, parser):
        parser.add_argument("key", help="The key's id or prefix (its first 12 characters).")

    def handle(self, *args, key: str, **options):
        # An id is ASCII digits within bigint ("²".isdigit() is true; 10**30 overflows SQLite's driver);
        # anything else is looked up as a prefix and simply matches nothing.
        if key.isascii() and key.isdigit() and len(key) <= len(str(MAX_ID)) and int(key) <= MAX_ID:
            matches = list(ApiKey.objects.filter(pk=int(key)))
        else:
            matches = list(ApiKey.objects.filter(prefix=key[:12]))
        if not matches:
            raise CommandError(f"No API key with id or prefix {key!r}.")
        if len(matches) > 1:
            raise CommandError(f"{len(matches)} keys share the prefix {key!r}; revoke by id instead.")
        api_key = matches[0]
        if api_key.revoked_at is not None:
            self.stdout.write(f"API key '{api_key.name}' ({api_key.prefix}) was already revoked "
                              f"at {api_key.revoked_at:%Y-%m-%d %H:%M} UTC.")
            return
        key_services.revoke_api_key(api_key=api_key, actor=key_services.command_actor("revoke_api_key"))
        self.stdout.write(f"Revoked API key '{api_key.name}' ({api_key.prefix}).")
