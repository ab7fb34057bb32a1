"""The helpers every template has besides Jinja's builtins: ``tojson``, ``format_datetime`` and
``now_iso()``."""
import json
from datetime import UTC, date, datetime
from typing import Any

from jinja2.runtime import Undefined

from templates_app.rendering.budget import TemplateUsageError, current_budget

DEFAULT_DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def tojson(value: Any) -> str:
    """Compact JSON (``{"a":1}``), UTF-8 characters kept, mapping order kept."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()
    raise TemplateUsageError(f"tojson cannot encode a {type(value).__name__} object.")


def format_datetime(value: Any, fmt: str = DEFAULT_DATETIME_FORMAT) -> str:
    """Format an ISO-8601 string (``2025-08-05T17:30:00Z``), datetime, date or Unix timestamp in
    UTC with ``strftime`` codes; naive values are taken as UTC. Raises ``TemplateUsageError`` for
    other types and ``ValueError`` for a malformed string."""
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()
    if isinstance(value, str):
        moment = datetime.fromisoformat(value.strip())
    elif isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day, tzinfo=UTC)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        moment = datetime.fromtimestamp(value, tz=UTC)
    else:
        raise TemplateUsageError(f"format_datetime expects an ISO-8601 string, not a {type(value).__name__}.")
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    current_budget().check_size(len(fmt) * 32)
    return moment.strftime(fmt)


def now_iso() -> str:
    """The current UTC time as ``2025-08-05T17:30:00Z``."""
    return datetime.now(UTC).strftime(DEFAULT_DATETIME_FORMAT)
