"""Writes and side effects for deliveries (HackSoft's services package: ``services/__init__``
re-exports, so callers keep ``from deliveries import services as delivery_services``).

* ``building`` — the envelope, transformation, headers and signature of one request;
* ``attempts`` — claim, send, record, schedule the retry; manual retry, cancel, test sends;
* ``batch`` — the batch worker: claim many due deliveries, send concurrently, store in bulk;
  its parts ``claim`` (the claim) and ``sending`` (the sending pool, the sends, the bulk store);
* ``sweep`` — the beat sweep that re-enqueues what the broker lost.
"""
from deliveries.services.attempts import (  # noqa: F401
    AttemptOutcome,
    TestSendResult,
    _enqueue,
    attempt_delivery,
    cancel,
    enqueue_on_commit,
    enqueue_wakeup,
    record_attempt,
    retry_now,
    send_request,
    send_test,
)
from deliveries.services.building import (  # noqa: F401
    HEADER_PREFIX,
    ResolvedTransformation,
    TransformationFailed,
    WebhookRequest,
    build_envelope,
    build_request,
    encode_body,
    format_timestamp,
    mask_headers,
    render_payload,
    resolve_transformation,
)
from deliveries.services.batch import (  # noqa: F401
    BatchResult, deliver_due_batch, enqueue_wakeups_on_commit, run_wakeup,
)
from deliveries.services.claim import claim_due  # noqa: F401
from deliveries.services.sweep import SweepResult, sweep_due_deliveries  # noqa: F401
from deliveries.services.replay import (  # noqa: F401
    MAX_BULK, Acceptance, BulkResult, DeliverySelection, ReplayPlan, ReplayResult, ReplayTarget, bulk_discard,
    bulk_retry, candidate_events, create_replays, discard, discard_many, endpoint_accepts, plan_replay,
    replay_deliveries, replay_endpoint, replay_event, retry_many, select_deliveries,
)
from deliveries.services.retention import PurgeResult, purge_expired_data  # noqa: F401
from deliveries.services.health import (  # noqa: F401,E402
    ProbeResult, after_attempt, gate_delivery, probe_disabled_endpoints, record_endpoint_outcome,
)
