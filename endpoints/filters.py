r"""Subscription rules: which events an endpoint receives. Pure functions, no ORM.

``event_type_matches`` checks an endpoint's event-type patterns. The payload filter engine checks
``WebhookEndpoint.filters`` (issue 3): ``validate_filters`` runs when an endpoint is saved, and
``evaluate_filters`` decides whether one event passes.

Filter spec (the seed's "Event Filters" condition, combined as issue 3 describes)
* ``None`` or ``[]``: no filter, so every event matches.
* One condition: ``{"field_path": "data.lead.score", "operator": "greater_than", "value": 80,
  "case_sensitive": false}``. ``case_sensitive`` is optional (default ``true``). ``value`` is left
  out (or null) for ``exists`` / ``not_exists``. Any other key is an error.
* A list of conditions and groups: all of them must match.
* Groups ``{"all": [...]}`` and ``{"any": [...]}``. They nest at most 5 levels deep, hold at most
  50 conditions in total, and cannot be empty.

``field_path`` is dotted into the whole event envelope (``event_type``, ``event_id``,
``timestamp``, ``data``, ``metadata``), e.g. ``data.lead.score``, ``metadata.source_service`` or
``data.items.0.sku``, where a non-negative number indexes a list. Segments are ``[A-Za-z0-9_-]+``.

Semantics
* Missing or null fields: a field that is missing or null matches no operator except
  ``not_exists``. That includes ``not_equals``, ``not_contains`` and ``not_in``. ``exists`` means
  present and not null.
* Numbers: when one side is a number, a numeric string on the other side (``"85"``, ``"-1.5e3"``)
  compares as that number. So ``"85"`` is greater than 80 and equals 85. Booleans are never
  numbers. ``greater_than``, ``greater_than_or_equal``, ``less_than`` and ``less_than_or_equal``
  compare numbers only (their value must be a number or a numeric string).
* Case: with ``case_sensitive: false``, both sides are folded with ``str.casefold`` for equals /
  not_equals, contains / not_contains, starts_with / ends_with and the members of in / not_in.
  ``regex`` matches case-insensitively.
* Equality is otherwise strict about types: ``true`` is not ``1`` and ``"a"`` is not ``["a"]``.
  Lists and objects compare element by element. Values of different types are simply unequal, so
  ``not_equals`` and ``not_in`` do match them.
* Type mismatch means no match, never an exception. Some operators need a particular type: the
  four ordering operators need numbers; ``starts_with``, ``ends_with`` and ``regex`` need string
  fields; ``contains`` and ``not_contains`` need a list field or a string field with a string
  value. If the field has another type, these operators do not match (``not_contains`` included).
* ``contains`` on a list means it has a member equal to the value. ``in`` / ``not_in`` take a
  non-empty list of at most 500 values and ask whether the field equals one of its members; all
  the ``in`` / ``not_in`` lists of one filter hold at most 2,000 values together.
* ``regex`` searches with RE2 (google-re2), so it matches anywhere in the string (anchor with
  ``^`` and ``$``) in time linear in the string's length: no pattern can backtrack
  catastrophically. RE2 syntax is Python's without backreferences and lookaround (refused when
  the endpoint is saved). Patterns are limited to 256 characters; only strings of at most 10,000
  characters are searched (longer strings do not match). A pattern may compile to at most 1,000 RE2
  instructions and a filter may hold at most 10 regex conditions, which bounds one event's filter cost.
"""
import json
import math
import operator as _op
import re
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache

import re2


def event_type_matches(patterns: list[str], event_type: str) -> bool:
    """True when ``event_type`` (``"lead.created"``) matches any pattern in ``patterns``.

    Patterns: an exact type (``lead.created``), a prefix wildcard (``lead.*`` matches every type
    starting with ``lead.``, at any depth) or ``*`` (everything), as Svix and Convoy use them.
    """
    for pattern in patterns:
        if pattern == "*" or pattern == event_type:
            return True
        if pattern.endswith(".*") and event_type.startswith(pattern[:-1]):
            return True
    return False


# --- payload filters: public interface --------------------------------------------------------
OPERATORS: tuple[str, ...] = (
    "equals", "not_equals", "greater_than", "greater_than_or_equal", "less_than", "less_than_or_equal",
    "contains", "not_contains", "starts_with", "ends_with", "in", "not_in", "exists", "not_exists", "regex",
)
ENVELOPE_FIELDS = ("event_type", "event_id", "timestamp", "data", "metadata")
MAX_DEPTH = 5
MAX_CONDITIONS = 50
MAX_FIELD_PATH_LENGTH = 256
MAX_PATTERN_LENGTH = 256
# RE2 runs in O(program size × text length): these two caps bound the cost of one event's
# filters to a few tens of milliseconds, whatever the patterns.
MAX_REGEX_PROGRAM_SIZE = 1000
MAX_REGEX_CONDITIONS = 10
MAX_REGEX_SUBJECT_LENGTH = 10_000
# ``in`` / ``not_in`` compare the field with every member, one ``_equal`` call (~0.5 µs) each, on
# every publish of a subscribed type: 25 lists of 9,000 values made each such publish take
# 125-184 ms instead of 7-12 ms. 500 values per list is Saleor's cap on a webhook's filterable
# channel slugs and covers an allow/deny list of ids or area codes; 2,000 values per filter
# (all lists together) keeps one endpoint's filter under ~1 ms per event. Longer lists belong
# in a wildcard, a regex or a field the producer sets.
MAX_IN_VALUES = 500
MAX_IN_VALUES_TOTAL = 2_000


class FilterValidationError(ValueError):
    """A filter spec that cannot be saved.

    ``location`` names the bad part: ``"all[1].any[0]"`` for a condition or group inside the spec,
    ``"condition"`` when the spec is a single condition, ``"filters"`` for the spec as a whole.
    ``message`` says what is wrong.
    """

    def __init__(self, location: str, message: str):
        super().__init__(f"{location}: {message}")
        self.location = location
        self.message = message


@dataclass(frozen=True)
class FilterResult:
    """The outcome of ``evaluate_filters``. When ``matched`` is false, ``failed_condition`` is the
    first leaf condition (the dict as given) that made the spec fail, ``location`` is where it sits
    and ``reason`` says why in one sentence."""

    matched: bool
    failed_condition: dict | None
    location: str | None
    reason: str


def validate_filters(spec, *, limits: bool = True) -> None:
    """Check a filter spec (shapes in the module docstring) before it is saved.

    Raises ``FilterValidationError`` naming the first bad condition or group: for an unknown
    operator or key, a bad ``field_path``, a missing or ill-typed ``value``, a non-boolean
    ``case_sensitive``, empty or over-deep groups, too many conditions, an ``in`` / ``not_in`` list
    longer than ``MAX_IN_VALUES`` (or all of them together beyond ``MAX_IN_VALUES_TOTAL``), or a
    regex that does not compile, is too long or can backtrack catastrophically.
    """
    if spec is None or spec == []:
        return
    node, location = _root(spec)
    _validate_node(node, location, depth=0, counter=[0, 0, 0], limits=limits)


def evaluate_filters(spec, event: dict) -> FilterResult:
    """Does ``event`` (the envelope dict: ``event_type``, ``event_id``, ``timestamp``, ``data``,
    ``metadata``) pass ``spec``? Semantics are in the module docstring.

    The spec is validated first and raises ``FilterValidationError`` if it is invalid. Event data
    never raises: missing fields and type mismatches are reported as no match.
    """
    validate_filters(spec, limits=False)  # save-time caps (MAX_IN_VALUES*) never stop a stored filter
    if spec is None or spec == []:
        return FilterResult(True, None, None, "no filters")
    node, location = _root(spec)
    with shared_evaluation():
        return _evaluate(node, location, event)


@contextmanager
def shared_evaluation():
    """Make every ``evaluate_filters`` call inside share what it works out from the event's
    fields: a long list field's members indexed, a long string case-folded (``_memoised``). For
    many endpoints' filters over one event (a publish), each is then done once for all of them
    instead of once per endpoint. The event must not change inside. Nested uses share the
    outermost; outside one, each ``evaluate_filters`` call has its own."""
    if _MEMO.get() is not None:
        yield
        return
    token = _MEMO.set({})
    try:
        yield
    finally:
        _MEMO.reset(token)


# --- structure --------------------------------------------------------------------------------
_CONDITION_KEYS = frozenset({"field_path", "operator", "value", "case_sensitive"})
_PATH = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*")
_NUMERIC = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_MISSING = object()
_MATCHED = FilterResult(True, None, None, "matched")


def _is_group(node) -> bool:
    return isinstance(node, dict) and ("all" in node or "any" in node)


def _root(spec) -> tuple:
    """A top-level list is an implicit ``all`` group; a lone condition is located at "condition"."""
    if isinstance(spec, list):
        return {"all": spec}, ""
    if isinstance(spec, dict) and not _is_group(spec):
        return spec, "condition"
    return spec, ""


def _child(location: str, kind: str, index: int) -> str:
    return f"{location}.{kind}[{index}]" if location else f"{kind}[{index}]"


def _validate_node(node, location: str, *, depth: int, counter: list[int], limits: bool = True) -> None:
    where = location or "filters"
    if _is_group(node):
        if len(node) != 1:
            raise FilterValidationError(where, 'a group has exactly one key, "all" or "any"')
        ((kind, children),) = node.items()
        if depth >= MAX_DEPTH:
            raise FilterValidationError(where, f"groups nest at most {MAX_DEPTH} levels deep")
        if not isinstance(children, list) or not children:
            raise FilterValidationError(where, f'"{kind}" needs a non-empty list of conditions')
        for index, child in enumerate(children):
            _validate_node(child, _child(location, kind, index), depth=depth + 1, counter=counter, limits=limits)
    elif isinstance(node, dict):
        counter[0] += 1
        if counter[0] > MAX_CONDITIONS:
            raise FilterValidationError(where, f"at most {MAX_CONDITIONS} conditions in total")
        if node.get("operator") == "regex":
            counter[1] += 1
            if counter[1] > MAX_REGEX_CONDITIONS:
                raise FilterValidationError(where, f"at most {MAX_REGEX_CONDITIONS} regex conditions in total")
        _validate_condition(node, where, limits=limits)
        if limits and node.get("operator") in ("in", "not_in"):
            counter[2] += len(node["value"])
            if counter[2] > MAX_IN_VALUES_TOTAL:
                raise FilterValidationError(
                    where, f"the in / not_in lists of a filter hold at most {MAX_IN_VALUES_TOTAL} values in total")
    else:
        raise FilterValidationError(where, 'expected a condition object or an {"all": [...]} / {"any": [...]} group')


def _validate_condition(condition: dict, where: str, *, limits: bool = True) -> None:
    unknown = sorted(str(key) for key in condition if key not in _CONDITION_KEYS)
    if unknown:
        raise FilterValidationError(where, f"unknown key(s): {', '.join(unknown)}")
    operator = condition.get("operator")
    if not isinstance(operator, str) or operator not in OPERATORS:
        raise FilterValidationError(where, f"unknown operator {operator!r}; use one of: {', '.join(OPERATORS)}")
    path = condition.get("field_path")
    if not isinstance(path, str) or len(path) > MAX_FIELD_PATH_LENGTH or not _PATH.fullmatch(path):
        raise FilterValidationError(
            where, f"field_path {path!r} must be dotted segments of letters, digits, _ or -, "
                   f"at most {MAX_FIELD_PATH_LENGTH} characters")
    if path.split(".")[0] not in ENVELOPE_FIELDS:
        raise FilterValidationError(where, f"field_path {path!r} must start with one of: {', '.join(ENVELOPE_FIELDS)}")
    if not isinstance(condition.get("case_sensitive", True), bool):
        raise FilterValidationError(where, "case_sensitive must be true or false")
    value = condition.get("value")
    if operator in ("exists", "not_exists"):
        if value is not None:
            raise FilterValidationError(where, f"{operator} takes no value")
        return
    if value is None:
        raise FilterValidationError(
            where, f"{operator} needs a value (use exists / not_exists to test for a missing or null field)")
    if operator in _ORDERING and _number(value) is None:
        raise FilterValidationError(where, f"{operator} needs a number or a numeric string, not {_show(value)}")
    if operator in ("in", "not_in") and (not isinstance(value, list) or not value):
        raise FilterValidationError(where, f"{operator} needs a non-empty list, not {_show(value)}")
    if limits and operator in ("in", "not_in") and len(value) > MAX_IN_VALUES:
        raise FilterValidationError(
            where, f"{operator} takes at most {MAX_IN_VALUES} values, not {len(value)}")
    if operator in ("starts_with", "ends_with", "regex") and not isinstance(value, str):
        raise FilterValidationError(where, f"{operator} needs a string, not {_show(value)}")
    if operator in ("contains", "not_contains") and not isinstance(value, (str, int, float)):
        raise FilterValidationError(where, f"{operator} needs a string, number or boolean, not {_show(value)}")
    if operator == "regex":
        if len(value) > MAX_PATTERN_LENGTH:
            raise FilterValidationError(where, f"regex patterns are at most {MAX_PATTERN_LENGTH} characters")
        problem = _regex_problem(value)
        if problem:
            raise FilterValidationError(where, problem)


# --- evaluation -------------------------------------------------------------------------------
def _evaluate(node, location: str, event) -> FilterResult:
    if not _is_group(node):
        matched, reason = _check(node, event)
        return _MATCHED if matched else FilterResult(False, node, location, reason)
    ((kind, children),) = node.items()
    failures = []
    for index, child in enumerate(children):
        result = _evaluate(child, _child(location, kind, index), event)
        if kind == "all" and not result.matched:
            return result
        if kind == "any" and result.matched:
            return _MATCHED
        failures.append(result)
    if kind == "all":
        return _MATCHED
    first = failures[0]
    return FilterResult(False, first.failed_condition, first.location,
                        f"none of the {len(children)} conditions in {location or 'any'} matched; "
                        f"first: {first.reason}")


def _check(condition: dict, event) -> tuple[bool, str]:
    path, operator, expected = condition["field_path"], condition["operator"], condition.get("value")
    fold = not condition.get("case_sensitive", True)
    actual = _resolve(event, path)
    present = actual is not _MISSING and actual is not None
    if operator in ("exists", "not_exists"):
        if present == (operator == "exists"):
            return True, ""
        return False, f"{path} is {_describe(actual)}, so {operator} does not match"
    if not present:
        return False, f"{path} is {_describe(actual)}; only not_exists matches a missing or null field"
    if _OPERATIONS[operator](actual, expected, fold):
        return True, ""  # a match's reason is never read (``_evaluate``): spare the two ``_show``s
    reason = f"{path} is {_show(actual)}, not {operator} {_show(expected)}"
    if fold and operator not in _ORDERING:
        reason += " (case-insensitive)"
    return False, reason


def _resolve(event, path: str):
    """The value at a dotted path, ``_MISSING`` when any step is absent (or not a dict or list)."""
    value = event
    for segment in path.split("."):
        if isinstance(value, dict):
            value = value.get(segment, _MISSING)
        elif isinstance(value, list) and segment.isdigit() and int(segment) < len(value):
            value = value[int(segment)]
        else:
            return _MISSING
        if value is _MISSING:
            return value
    return value


def _describe(value) -> str:
    return "missing" if value is _MISSING else "null" if value is None else _show(value)


_SHOW_LENGTH = 80
# Not json.dumps: a reason shows 80 characters, and dumping a whole list field of a 2 MB event for
# each of 50 conditions took 1.7 s (the walk's 500,000-member list). ``iterencode`` without
# ``_one_shot`` is the pure-Python encoder, which yields as it goes, so only the start is encoded.
_SHOW_ENCODER = json.JSONEncoder(ensure_ascii=False, default=repr)


def _show(value) -> str:
    """``value`` as JSON, cut to 80 characters (79 and "…" when longer)."""
    if isinstance(value, str):
        value = value[:_SHOW_LENGTH + 1]  # escaping only lengthens: the first 81 characters suffice
    chunks, size = [], 0
    for chunk in _SHOW_ENCODER.iterencode(value):
        chunks.append(chunk)
        size += len(chunk)
        if size > _SHOW_LENGTH:
            break
    text = "".join(chunks)
    return text if len(text) <= _SHOW_LENGTH else text[:_SHOW_LENGTH - 1] + "…"


def _number(value) -> int | float | None:
    """A finite number from a number or a numeric string; ``None`` for anything else (bools too)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip()
        # The length cap keeps int() away from its 4,300-digit limit.
        if len(text) > 100 or not _NUMERIC.fullmatch(text):
            return None
        value = int(text) if text.lstrip("+-").isdigit() else float(text)
    if isinstance(value, int) or (isinstance(value, float) and math.isfinite(value)):
        return value
    return None


# One evaluation's memo (``shared_evaluation`` sets it; ``id`` -> (the object, what was worked out
# from it)): a list field's members are indexed and a long string is casefolded once, however many
# conditions (and, in a publish, endpoints) look at them. Found in a walk: 50 ``not_contains``
# conditions on a list of 500,000 numbers compared every member with every value in Python, 15-22 s
# of CPU for one publish (the request body limit allows such a list), and eight such publishes at
# once starved the web.
_MEMO: ContextVar[dict | None] = ContextVar("filter_memo", default=None)
_MEMO_MIN_LENGTH = 64  # below this, scanning is as cheap as indexing


def _memoised(value, build):
    """``build(value)``, worked out once per evaluation for the same object ``value``."""
    memo = _MEMO.get()
    if memo is None:
        return build(value)
    entry = memo.get(id(value))
    if entry is None or entry[0] is not value:
        entry = memo[id(value)] = (value, build(value))
    return entry[1]


def _fold(text: str, fold: bool) -> str:
    if not fold:
        return text
    return _memoised(text, str.casefold) if len(text) >= _MEMO_MIN_LENGTH else text.casefold()


class _Members:
    """The members of one list field, indexed for ``contains`` with the very meaning of
    ``_equal`` (a member equals the value), for the value types ``contains`` takes: a string, a
    number or a boolean (``_validate_condition``).

    - a number value equals a number member and a numeric-string member of the same value;
    - a string value equals a string member (folded or not) and, when it is a numeric string, a
      number member of its value (but not the numeric string ``"5.0"`` for ``"5"``: two strings
      compare as strings);
    - a boolean equals a boolean member only. Lists, objects and ``null`` members equal none of
      these values."""

    __slots__ = ("_folded", "booleans", "numbers", "numeric_strings", "strings")

    def __init__(self, items: list):
        self.numbers, self.numeric_strings, self.strings, self.booleans = set(), set(), set(), set()
        self._folded = None
        for item in items:
            if isinstance(item, str):
                self.strings.add(item)
                number = _number(item)
                if number is not None:
                    self.numeric_strings.add(number)
            elif isinstance(item, bool):
                self.booleans.add(item)
            elif isinstance(item, (int, float)):
                number = _number(item)  # None for NaN and infinities, which equal nothing
                if number is not None:
                    self.numbers.add(number)

    def has(self, expected, fold: bool) -> bool:
        if isinstance(expected, bool):
            return expected in self.booleans
        if _is_number(expected):
            number = _number(expected)
            return number is not None and (number in self.numbers or number in self.numeric_strings)
        if isinstance(expected, str):
            if fold:
                if self._folded is None:
                    self._folded = {member.casefold() for member in self.strings}
                found = expected.casefold() in self._folded
            else:
                found = expected in self.strings
            number = _number(expected)
            return found or (number is not None and number in self.numbers)
        return False


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _equal(actual, expected, fold: bool) -> bool:
    if _is_number(actual) or _is_number(expected):
        left, right = _number(actual), _number(expected)
        return left is not None and right is not None and left == right
    if isinstance(actual, str) and isinstance(expected, str):
        return _fold(actual, fold) == _fold(expected, fold)
    if isinstance(actual, list) and isinstance(expected, list):
        return len(actual) == len(expected) and all(_equal(a, e, fold) for a, e in zip(actual, expected))
    if isinstance(actual, dict) and isinstance(expected, dict):
        return actual.keys() == expected.keys() and all(_equal(actual[k], expected[k], fold) for k in actual)
    return type(actual) is type(expected) and actual == expected


def _containable(actual, expected) -> bool:
    return isinstance(actual, list) or (isinstance(actual, str) and isinstance(expected, str))


def _contains(actual, expected, fold: bool) -> bool:
    if isinstance(actual, list):
        if len(actual) >= _MEMO_MIN_LENGTH and isinstance(expected, (str, int, float)) and _MEMO.get() is not None:
            return _memoised(actual, _Members).has(expected, fold)
        return any(_equal(item, expected, fold) for item in actual)
    return _containable(actual, expected) and _fold(expected, fold) in _fold(actual, fold)


def _ordered(compare):
    def check(actual, expected, fold):
        left, right = _number(actual), _number(expected)
        return left is not None and right is not None and compare(left, right)
    return check


def _regex(actual, pattern: str, fold: bool) -> bool:
    return (isinstance(actual, str) and len(actual) <= MAX_REGEX_SUBJECT_LENGTH
            and _compiled(pattern, fold).search(actual) is not None)


_ORDERING = {"greater_than": _op.gt, "greater_than_or_equal": _op.ge, "less_than": _op.lt,
             "less_than_or_equal": _op.le}
# One function per operator (NetBox's conditions); each gets (actual, expected, fold) with a present,
# non-null actual and returns a bool.
_OPERATIONS = {
    "equals": _equal,
    "not_equals": lambda actual, expected, fold: not _equal(actual, expected, fold),
    **{name: _ordered(compare) for name, compare in _ORDERING.items()},
    "contains": _contains,
    "not_contains": lambda actual, expected, fold: (
        _containable(actual, expected) and not _contains(actual, expected, fold)),
    "starts_with": lambda actual, expected, fold: (
        isinstance(actual, str) and _fold(actual, fold).startswith(_fold(expected, fold))),
    "ends_with": lambda actual, expected, fold: (
        isinstance(actual, str) and _fold(actual, fold).endswith(_fold(expected, fold))),
    "in": lambda actual, expected, fold: any(_equal(actual, member, fold) for member in expected),
    "not_in": lambda actual, expected, fold: not any(_equal(actual, member, fold) for member in expected),
    "regex": _regex,
}


# --- regex ------------------------------------------------------------------------------------
# RE2 (google-re2) matches in time linear in the input, so no pattern can backtrack
# catastrophically; it refuses what needs backtracking (backreferences, lookaround) at save time.
def _re2_options(fold: bool) -> re2.Options:
    options = re2.Options()
    options.log_errors = False
    options.case_sensitive = not fold
    options.max_mem = 8 << 20  # bytes of compiled program per pattern
    return options


@lru_cache(maxsize=512)
def _compiled(pattern: str, fold: bool):
    return re2.compile(pattern, _re2_options(fold))


@lru_cache(maxsize=512)
def _regex_problem(pattern: str) -> str | None:
    """Why ``pattern`` is refused (RE2 cannot compile it), or ``None``."""
    try:
        compiled = _compiled(pattern, False)
    except (re2.error, UnicodeError) as exc:
        detail = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        return f"invalid regex: {detail} (RE2 syntax: no backreferences or lookaround)"
    if compiled.programsize > MAX_REGEX_PROGRAM_SIZE:
        return (f"regex too complex (RE2 program size {compiled.programsize} > {MAX_REGEX_PROGRAM_SIZE}); "
                "use smaller repetition counts")
    return None
