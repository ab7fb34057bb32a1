"""``python manage.py validate_endpoints``: list the endpoints whose stored configuration the API
would refuse today, for instance rows saved before a validation rule was added (a header value
with surrounding whitespace, a control character in a name, an in-list over the cap).

Such an endpoint keeps delivering as before, but any edit of it answers 400 until the flagged
fields are fixed (through the API or the admin). Each line names the endpoint and the fields, never
their values (an ``api_key`` or a header can be a credential). Exit status 1 when any is found, so
a deploy script can stop on it; 0 when all are valid. Reads only.
"""
from django.core.management.base import BaseCommand, CommandError

from endpoints import services as endpoint_services
from endpoints.models import WebhookEndpoint
from vocelio_webhooks.errors import ValidationFailed


class Command(BaseCommand):
    help = "List endpoints whose stored configuration fails today's validation (field names only)."

    def handle(self, *args, **options):
        invalid = 0
        for endpoint in WebhookEndpoint.objects.order_by("pk").iterator(chunk_size=500):
            try:
                endpoint_services.validate_endpoint(endpoint)
            except ValidationFailed as exc:
                invalid += 1
                fields = sorted(exc.details.get("fields") or {str(exc.details.get("location") or "?"): []})
                self.stdout.write(f"endpoint {endpoint.pk} ({endpoint.environment}): {exc.code} in "
                                  f"{', '.join(str(f).split('.')[0] for f in fields)}")
        if invalid:
            raise CommandError(f"{invalid} endpoint(s) fail validation; fix the fields listed above.")
        self.stdout.write("Every endpoint passes validation.")
