"""Writes and side effects for deliveries (HackSoft's services package: ``services/__init__``
re-exports, so callers keep ``from deliveries import services as delivery_services``).

* ``building`` — the envelope, transformation, headers and signature of one request;
* ``attempts`` — claim, send, record, schedule the retry; manual retry, cancel, test sends;
  its parts ``recording`` (an attempt's next state, storing attempts) and ``wakeups`` (the
  ``deliver``/``deliver_due`` wake-ups, their queues and the count of those waiting);
* ``batch`` — the batch worker: claim many due deliveries, send concurrently, store in bulk;
  its parts ``claim`` (the claim) and ``sending`` (the sending pool, the sends, the bulk store);
* ``replay`` — bulk retry and discard of dead letters, replays; its read side in ``selection``;
* ``sweep`` — the beat sweep that re-enqueues what the broker lost.
"""
from deliveries.services.attempts import (  # noqa: F401
    TestSendResult,
    attempt_delivery,
    cancel,
    record_attempt,
    retry_now,
    send_request,
    send_test,
    send_test_bounded,
)
from deliveries.services.batch import (  # noqa: F401
    BatchResult,
    deliver_due_batch,
    enqueue_wakeups_on_commit,
    run_wakeup,
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
from deliveries.services.claim import claim_due  # noqa: F401
from deliveries.services.health import (  # noqa: F401
    ProbeResult,
    after_attempt,
    gate_delivery,
    probe_disabled_endpoints,
    record_endpoint_outcome,
)
from deliveries.services.recording import AttemptOutcome  # noqa: F401
from deliveries.services.replay import (  # noqa: F401
    BulkResult,
    ReplayResult,
    bulk_discard,
    bulk_retry,
    create_replays,
    discard,
    discard_many,
    replay_deliveries,
    replay_endpoint,
    replay_event,
    retry_many,
)
from deliveries.services.retention import PurgeResult, purge_expired_data  # noqa: F401
from deliveries.services.selection import (  # noqa: F401
    MAX_BULK,
    Acceptance,
    DeliverySelection,
    ReplayPlan,
    ReplayTarget,
    candidate_events,
    endpoint_accepts,
    plan_replay,
    select_deliveries,
)
from deliveries.services.sweep import SweepResult, hold_and_release, sweep_due_deliveries  # noqa: F401
from deliveries.services.wakeups import enqueue_delivery, enqueue_on_commit, enqueue_wakeup  # noqa: F401
