"""``python manage.py create_api_key NAME``: create an API key and print it once, alone on the last line."""
from django.core.management.base import BaseCommand

from vocelio_webhooks import services as key_services


class Command(BaseCommand):
    help = "Create an API key. The key is printed once, alone on the last line; store it now."

    def add_arguments(self, parser):
        parser.add_argument("name", help="Who or what the key is for, e.g. 'crm-sync'.")

    def handle(self, *args, name: str, **options):
        created = key_services.create_api_key(name=name)
        self.stderr.write(f"Created API key '{name}' (prefix {created.api_key.prefix}). It will not be shown again:")
        self.stdout.write(created.raw_key)
