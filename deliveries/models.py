"""Deliveries (one event to one endpoint: the state machine) and their attempts (one HTTP try).

State machine (DESIGN.md): ``pending → in_flight → succeeded``; ``in_flight → retrying →
in_flight …``; ``in_flight → failed`` (an answer the retry policy does not retry);
``in_flight → dead_lettered`` (attempts exhausted); any non-final → ``cancelled``.
"""
from django.db import models

from endpoints.models import WebhookEndpoint
from events.models import Event


class Delivery(models.Model):
    """One event to one endpoint. The row says what must happen next and when
    (``next_attempt_at``); the broker only carries wake-ups."""

    class Status(models.TextChoices):
        PENDING = "pending"
        IN_FLIGHT = "in_flight"
        RETRYING = "retrying"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        DEAD_LETTERED = "dead_lettered"
        CANCELLED = "cancelled"

    FINAL_STATUSES = frozenset({Status.SUCCEEDED, Status.FAILED, Status.DEAD_LETTERED, Status.CANCELLED})
    DUE_STATUSES = (Status.PENDING, Status.RETRYING)

    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="deliveries")
    # Deleting an endpoint keeps its delivery history; waiting deliveries are then cancelled.
    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.SET_NULL, null=True, blank=True, related_name="deliveries"
    )
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    attempt_count = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # While in_flight: the moment after which the claim is considered abandoned (worker died).
    claimed_until = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    # Set by the beat sweep while the endpoint is paused or disabled (deliveries.services.sweep,
    # hold_and_release): a held row leaves the claim's index, so a paused endpoint's backlog,
    # which grows with traffic for as long as it is paused, is not walked by every claim. Cleared
    # by the sweep once the endpoint is active again, and by a retry or a claim. The database
    # default serves rows inserted without the column (a release before it, during a rolling upgrade).
    held = models.BooleanField(default=False, db_default=False)
    # Replays (deliveries.services.replay) are new rows; the original delivery and its attempts stay.
    is_replay = models.BooleanField(default=False)
    replay_of = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="replays"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "deliveries"
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="delivery_due_idx"),
            # The claim's scan (deliveries.services.claim.claim_due): due rows oldest first, read
            # in index order and stopped after a few batches' worth, instead of sorting the whole
            # backlog at every claim (11.7 ms with 10,000 due rows, 3.2 ms with it; issue 7). The
            # claim steers the planner to it when statistics would not (see claim_due). Held rows
            # (paused endpoints) are not in it: 100,000 of them older than the active ones made
            # every claim walk them, 91 ms a claim instead of 3 (bench/paused_backlog.py).
            # Its condition's attempt_count >= 0 is always true (a CHECK constraint) and is only
            # stated by the oldest-first scan (claim._claim_sql) and the sweep: the per-endpoint
            # claim, which does not state it, can then never walk this index instead of its own.
            models.Index(fields=["next_attempt_at", "id"], name="delivery_claim_order_idx",
                         condition=models.Q(status__in=["pending", "retrying"], held=False, attempt_count__gte=0)),
            models.Index(fields=["endpoint", "status"], name="delivery_endpoint_status_idx"),
            # One endpoint's due rows oldest first: the per-endpoint claim (claim._per_endpoint_claim_sql)
            # and the sweep's hold read the rows not held, the sweep's release the held ones.
            models.Index(fields=["endpoint", "next_attempt_at", "id"], name="delivery_endpoint_due_idx",
                         condition=models.Q(status__in=["pending", "retrying"], held=False)),
            models.Index(fields=["endpoint", "next_attempt_at", "id"], name="delivery_endpoint_held_idx",
                         condition=models.Q(status__in=["pending", "retrying"], held=True)),
        ]

    def __str__(self) -> str:
        return f"delivery {self.pk} ({self.status})"

    @property
    def public_id(self) -> str:
        """The id receivers see in ``X-Vocelio-Delivery-Id`` and the JWT ``jti``: ``dlv_<id>``."""
        return f"dlv_{self.pk}"

    @property
    def is_final(self) -> bool:
        return self.status in self.FINAL_STATUSES


class DeliveryAttempt(models.Model):
    """One HTTP try of a delivery. Append-only: replays and manual retries add rows.

    Request headers are stored with credentials masked; the request body is stored up to
    ``WEBHOOK_REQUEST_BODY_STORE_LIMIT_BYTES`` with its full SHA-256 and size; the response body
    up to ``WEBHOOK_RESPONSE_BODY_LIMIT_BYTES``.
    """

    class Outcome(models.TextChoices):
        SUCCEEDED = "succeeded"
        RETRY = "retry"
        FAILED = "failed"

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempts")
    attempt_number = models.PositiveIntegerField()
    url = models.CharField(max_length=2048)
    http_method = models.CharField(max_length=6)
    request_headers = models.JSONField(default=dict)
    request_body = models.TextField(blank=True)
    request_body_sha256 = models.CharField(max_length=64, blank=True)
    request_body_size = models.PositiveIntegerField(default=0)
    response_status_code = models.PositiveIntegerField(null=True, blank=True)
    response_headers = models.JSONField(default=dict, blank=True)
    response_body = models.TextField(blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    error_class = models.CharField(max_length=100, blank=True)
    error_message = models.TextField(blank=True)
    outcome = models.CharField(max_length=20, choices=Outcome.choices)
    started_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["delivery_id", "attempt_number", "id"]

    def __str__(self) -> str:
        return f"attempt {self.attempt_number} of delivery {self.delivery_id}"
