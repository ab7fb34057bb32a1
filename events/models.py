"""The event type catalog and published events."""
import re

from django.core.validators import RegexValidator
from django.db import models

from vocelio_webhooks.fields import OrderedJSONField
from vocelio_webhooks.validators import reject_control_characters


class Environment(models.TextChoices):
    """Deployment environments: an event only reaches endpoints of its own environment."""

    DEVELOPMENT = "development"
    STAGING = "staging"
    PRODUCTION = "production"


# The seed's shape (``category.action``): any other name could only be matched by the ``*``
# subscription and could not be addressed at ``/event-types/{name}``; it is also sent as the
# ``X-Vocelio-Event-Type`` header, so it must be plain ASCII.
EVENT_TYPE_NAME_RE = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_]+)+\Z")
EVENT_TYPE_NAME_MESSAGE = "Use a lowercase dotted name such as 'billing.invoice_paid' (letters, digits and '_')."


class EventType(models.Model):
    """A kind of event (``lead.created``). The seed's catalog is loaded by a data migration;
    ``sample_data`` is a realistic ``data`` object used for test sends and template tests."""

    name = models.CharField(max_length=100, unique=True,
                            validators=[RegexValidator(EVENT_TYPE_NAME_RE, EVENT_TYPE_NAME_MESSAGE)])
    category = models.CharField(max_length=50, db_index=True, validators=[reject_control_characters])
    description = models.CharField(max_length=300, blank=True, validators=[reject_control_characters])
    sample_data = OrderedJSONField(default=dict, blank=True)
    # High-priority types go to the ``priority`` queue, which workers serve before the others.
    is_high_priority = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["category", "name"]

    def __str__(self) -> str:
        return self.name


class Event(models.Model):
    """An immutable published fact. ``event_id`` is client-supplied (or generated ``evt_…``) and
    unique: publishing the same id again returns this row and creates nothing new.
    ``timestamp`` is when it happened (client's clock); ``received_at`` when we accepted it."""

    event_id = models.CharField(max_length=255, unique=True)
    event_type = models.ForeignKey(EventType, on_delete=models.PROTECT, related_name="events")
    timestamp = models.DateTimeField()
    data = OrderedJSONField(default=dict)
    metadata = OrderedJSONField(default=dict, blank=True)
    environment = models.CharField(max_length=20, choices=Environment.choices, db_index=True)
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-received_at", "-id"]

    def __str__(self) -> str:
        return f"{self.event_id} ({self.event_type_id})"
