"""Payload filters (issue 3): the operators and their semantics, all/any groups, what a failed
match reports, and the validation that runs when an endpoint is saved. Pure functions: no database,
no network."""

import pytest

from endpoints.filters import (
    MAX_CONDITIONS,
    MAX_DEPTH,
    MAX_REGEX_SUBJECT_LENGTH,
    OPERATORS,
    FilterResult,
    FilterValidationError,
    evaluate_filters,
    validate_filters,
)

EVENT = {
    "event_type": "lead.created",
    "event_id": "evt_123",
    "timestamp": "2024-05-01T12:00:00Z",
    "data": {
        "lead": {"id": "L-42", "name": "Zoë Müller", "email": "zoe@Example.com", "score": 85,
                 "score_text": "85", "city": "Straße", "notes": None, "tags": ["vip", "Hot", 7],
                 "active": True},
        "items": [{"sku": "SKU-1", "qty": 2}, {"sku": "SKU-2", "qty": "3"}],
        "address": {"zip": "94103"},
    },
    "metadata": {"source_service": "voice-ai", "environment": "production"},
}


def _condition(path: str, operator: str, value=None, **extra) -> dict:
    condition = {"field_path": path, "operator": operator, **extra}
    if value is not None:
        condition["value"] = value
    return condition


def _matches(path: str, operator: str, value=None, event: dict = EVENT, **extra) -> bool:
    return evaluate_filters(_condition(path, operator, value, **extra), event).matched


# --- every operator, positive and negative ---------------------------------------------------
OPERATOR_CASES = [
    ("equals", "data.lead.id", "L-42", "L-43"),
    ("not_equals", "data.lead.id", "L-43", "L-42"),
    ("greater_than", "data.lead.score", 80, 85),
    ("greater_than_or_equal", "data.lead.score", 85, 86),
    ("less_than", "data.lead.score", 90, 85),
    ("less_than_or_equal", "data.lead.score", 85, 84),
    ("contains", "data.lead.email", "@Example", "@other"),
    ("not_contains", "data.lead.email", "@other", "@Example"),
    ("starts_with", "data.lead.email", "zoe@", "bob@"),
    ("ends_with", "data.lead.email", ".com", ".org"),
    ("in", "metadata.environment", ["staging", "production"], ["staging", "development"]),
    ("not_in", "metadata.environment", ["staging", "development"], ["staging", "production"]),
    ("exists", "data.lead.score", None, None),
    ("not_exists", "data.lead.missing", None, None),
    ("regex", "data.lead.id", r"^L-\d+$", r"^X-\d+$"),
]


def test_operator_cases_cover_every_operator():
    # given / when / then
    assert sorted(case[0] for case in OPERATOR_CASES) == sorted(OPERATORS)


@pytest.mark.parametrize(("operator", "path", "matching", "_"), OPERATOR_CASES, ids=[c[0] for c in OPERATOR_CASES])
def test_evaluate_filters_operator_matches(operator, path, matching, _):
    # given
    condition = _condition(path, operator, matching)

    # when
    result = evaluate_filters(condition, EVENT)

    # then
    assert result == FilterResult(True, None, None, "matched")


@pytest.mark.parametrize(("operator", "path", "_", "failing"), OPERATOR_CASES, ids=[c[0] for c in OPERATOR_CASES])
def test_evaluate_filters_operator_does_not_match(operator, path, _, failing):
    # given
    if operator == "exists":
        path = "data.lead.missing"
    if operator == "not_exists":
        path = "data.lead.score"
    condition = _condition(path, operator, failing)

    # when
    result = evaluate_filters(condition, EVENT)

    # then
    assert result.matched is False
    assert result.failed_condition is condition
    assert result.location == "condition"


def test_evaluate_filters_contains_on_a_list_means_membership():
    # given / when / then
    assert _matches("data.lead.tags", "contains", "vip")
    assert _matches("data.lead.tags", "contains", 7)
    assert not _matches("data.lead.tags", "contains", "vi")
    assert _matches("data.lead.tags", "not_contains", "cold")
    assert not _matches("data.lead.tags", "not_contains", "vip")


def test_evaluate_filters_equals_compares_lists_and_objects_strictly():
    # given / when / then
    assert _matches("data.address", "equals", {"zip": "94103"})
    assert not _matches("data.address", "equals", {"zip": "94103", "extra": 1})
    assert _matches("data.lead.tags", "equals", ["vip", "Hot", 7])
    assert not _matches("data.lead.tags", "equals", ["vip", "Hot"])


# --- numbers ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("operator", "value", "expected"),
    [("greater_than", 80, True), ("greater_than", 85, False), ("greater_than_or_equal", 85, True),
     ("less_than", 85.5, True), ("less_than_or_equal", 84.9, False), ("equals", 85, True),
     ("equals", 85.0, True), ("not_equals", 85, False), ("in", [1, 85], True), ("not_in", [1, 85], False)],
)
def test_evaluate_filters_numeric_string_field_compares_as_number(operator, value, expected):
    # given: "score_text" is "85", a string
    # when
    matched = _matches("data.lead.score_text", operator, value)

    # then
    assert matched is expected


def test_evaluate_filters_numeric_string_filter_value_compares_as_number():
    # given / when / then
    assert _matches("data.lead.score", "greater_than", "80")
    assert _matches("data.lead.score", "equals", "85")
    assert _matches("data.lead.score", "less_than", " 1e3 ")
    assert not _matches("data.lead.score", "greater_than", "85.0")


def test_evaluate_filters_two_strings_compare_as_strings():
    # given: both sides are strings, so "085" is not "85"
    event = {"data": {"code": "085"}}

    # when / then
    assert not _matches("data.code", "equals", "85", event=event)
    assert _matches("data.code", "equals", "085", event=event)


def test_evaluate_filters_booleans_are_not_numbers():
    # given
    event = {"data": {"flag": True, "one": 1}}

    # when / then
    assert not _matches("data.flag", "equals", 1, event=event)
    assert not _matches("data.one", "equals", True, event=event)
    assert not _matches("data.flag", "greater_than", 0, event=event)
    assert _matches("data.flag", "equals", True, event=event)
    assert not _matches("data.flag", "in", [1, 2], event=event)


def test_evaluate_filters_huge_integers_compare_exactly():
    # given: JSON allows integers beyond float range
    event = {"data": {"big": 10**400, "big_text": str(10**60)}}

    # when / then
    assert _matches("data.big", "greater_than", 1e300, event=event)
    assert _matches("data.big_text", "equals", 10**60, event=event)
    assert not _matches("data.big_text", "equals", 10**60 + 1, event=event)


def test_evaluate_filters_non_numeric_strings_never_order():
    # given
    event = {"data": {"score": "high", "inf": "inf", "nan": "nan", "huge": "9" * 5000}}

    # when / then
    assert not _matches("data.score", "greater_than", 1, event=event)
    assert not _matches("data.score", "less_than", 1, event=event)
    assert not _matches("data.inf", "greater_than", 1, event=event)
    assert not _matches("data.nan", "less_than", 1, event=event)
    assert not _matches("data.huge", "greater_than", 1, event=event)


# --- missing and null ------------------------------------------------------------------------
COMPARISONS = [
    ("equals", "x"), ("not_equals", "x"), ("greater_than", 1), ("greater_than_or_equal", 1),
    ("less_than", 1), ("less_than_or_equal", 1), ("contains", "x"), ("not_contains", "x"),
    ("starts_with", "x"), ("ends_with", "x"), ("in", ["x"]), ("not_in", ["x"]), ("regex", "x"),
]


@pytest.mark.parametrize(("operator", "value"), COMPARISONS, ids=[c[0] for c in COMPARISONS])
@pytest.mark.parametrize("path", ["data.lead.notes", "data.lead.missing", "data.nothing.deeper", "metadata.x"])
def test_evaluate_filters_missing_or_null_field_matches_no_comparison(path, operator, value):
    # given: notes is null, the others are absent
    # when
    result = evaluate_filters(_condition(path, operator, value), EVENT)

    # then
    assert result.matched is False
    assert "only not_exists matches a missing or null field" in result.reason


@pytest.mark.parametrize("path", ["data.lead.notes", "data.lead.missing", "data.items.9.sku"])
def test_evaluate_filters_not_exists_matches_missing_and_null(path):
    # given / when / then
    assert _matches(path, "not_exists")
    assert not _matches(path, "exists")


def test_evaluate_filters_exists_matches_falsy_values():
    # given
    event = {"data": {"zero": 0, "empty": "", "no": False, "none": []}}

    # when / then
    for path in ("data.zero", "data.empty", "data.no", "data.none"):
        assert _matches(path, "exists", event=event)
        assert not _matches(path, "not_exists", event=event)


# --- case folding ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "operator", "value"),
    [("data.lead.email", "equals", "ZOE@EXAMPLE.COM"), ("data.lead.email", "contains", "EXAMPLE"),
     ("data.lead.email", "starts_with", "ZOE"), ("data.lead.email", "ends_with", "EXAMPLE.COM"),
     ("data.lead.city", "equals", "STRASSE"), ("data.lead.tags", "contains", "hot"),
     ("metadata.environment", "in", ["PRODUCTION"]), ("data.lead.email", "regex", "^ZOE@"),
     ("data.lead.name", "equals", "ZOË MÜLLER")],
)
def test_evaluate_filters_case_insensitive_folds_both_sides(path, operator, value):
    # given / when / then
    assert _matches(path, operator, value, case_sensitive=False)
    assert not _matches(path, operator, value)


@pytest.mark.parametrize(
    ("path", "operator", "value"),
    [("data.lead.email", "not_equals", "ZOE@EXAMPLE.COM"), ("data.lead.email", "not_contains", "EXAMPLE"),
     ("metadata.environment", "not_in", ["PRODUCTION", "STAGING"]), ("data.lead.tags", "not_contains", "HOT")],
)
def test_evaluate_filters_case_insensitive_negations_fold_too(path, operator, value):
    # given / when / then
    assert not _matches(path, operator, value, case_sensitive=False)
    assert _matches(path, operator, value)


def test_evaluate_filters_reason_says_when_strings_were_folded():
    # given
    condition = _condition("data.lead.id", "equals", "l-43", case_sensitive=False)

    # when
    result = evaluate_filters(condition, EVENT)

    # then
    assert result.reason == 'data.lead.id is "L-42", not equals "l-43" (case-insensitive)'


def test_evaluate_filters_case_sensitive_true_is_the_default():
    # given / when / then
    assert _matches("data.lead.email", "equals", "zoe@Example.com", case_sensitive=True)
    assert not _matches("data.lead.email", "equals", "zoe@example.com", case_sensitive=True)


# --- type mismatches -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "operator", "value"),
    [("data.lead.name", "greater_than", 1), ("data.lead.tags", "less_than", 1), ("data.address", "greater_than", 1),
     ("data.lead.active", "less_than_or_equal", 5), ("data.lead.score", "starts_with", "8"),
     ("data.lead.score", "ends_with", "5"), ("data.lead.score", "contains", "8"),
     ("data.lead.score", "not_contains", "9"), ("data.lead.email", "contains", 5),
     ("data.lead.email", "not_contains", 5), ("data.address", "contains", "zip"),
     ("data.address", "not_contains", "zap"), ("data.lead.score", "regex", r"\d+"),
     ("data.lead.tags", "regex", "vip"), ("data.lead.tags", "in", ["vip"]),
     ("data.lead.score", "equals", "eighty-five")],
)
def test_evaluate_filters_type_mismatch_is_no_match(path, operator, value):
    # given / when
    result = evaluate_filters(_condition(path, operator, value), EVENT)

    # then
    assert result.matched is False


def test_evaluate_filters_values_of_another_type_are_not_equal():
    # given: a number is not equal to a non-numeric string, so not_equals / not_in hold
    # when / then
    assert _matches("data.lead.score", "not_equals", "high")
    assert _matches("data.lead.active", "not_equals", 1)
    assert _matches("data.lead.tags", "not_in", ["vip"])


def test_evaluate_filters_event_that_is_not_an_object_does_not_match():
    # given / when / then
    assert not evaluate_filters(_condition("data.x", "equals", 1), "not an event").matched
    assert evaluate_filters(_condition("data.x", "not_exists"), None).matched


# --- paths -----------------------------------------------------------------------------------
def test_evaluate_filters_list_index_in_path():
    # given / when / then
    assert _matches("data.items.0.sku", "equals", "SKU-1")
    assert _matches("data.items.1.qty", "greater_than", 2)
    assert _matches("data.lead.tags.1", "equals", "Hot")
    assert not _matches("data.items.2.sku", "exists")
    assert not _matches("data.items.-1.sku", "exists")
    assert not _matches("data.items.sku", "exists")


def test_evaluate_filters_digit_segment_is_a_key_on_objects():
    # given
    event = {"data": {"by_code": {"0": "zero"}}}

    # when / then
    assert _matches("data.by_code.0", "equals", "zero", event=event)


def test_evaluate_filters_paths_reach_the_whole_envelope():
    # given / when / then
    assert _matches("event_type", "starts_with", "lead.")
    assert _matches("event_id", "equals", "evt_123")
    assert _matches("timestamp", "starts_with", "2024-05")
    assert _matches("metadata.source_service", "equals", "voice-ai")
    assert not _matches("data.lead.email.domain", "exists")


# --- spec shapes and groups ------------------------------------------------------------------
@pytest.mark.parametrize("spec", [None, []])
def test_evaluate_filters_no_filters_match_everything(spec):
    # given / when
    result = evaluate_filters(spec, {})

    # then
    assert result == FilterResult(True, None, None, "no filters")


def test_evaluate_filters_list_requires_all_conditions():
    # given
    spec = [_condition("data.lead.score", "greater_than", 80),
            _condition("metadata.environment", "equals", "production")]

    # when / then
    assert evaluate_filters(spec, EVENT).matched
    assert not evaluate_filters([*spec, _condition("data.lead.id", "equals", "nope")], EVENT).matched


def test_evaluate_filters_any_group_needs_one_match():
    # given
    spec = {"any": [_condition("data.lead.score", "greater_than", 90), _condition("data.lead.tags", "contains", "vip")]}

    # when / then
    assert evaluate_filters(spec, EVENT).matched
    assert not evaluate_filters({"any": spec["any"][:1]}, EVENT).matched


def test_evaluate_filters_nested_any_inside_all():
    # given
    spec = {"all": [
        _condition("event_type", "equals", "lead.created"),
        {"any": [_condition("data.lead.score", "greater_than", 90),
                 {"all": [_condition("data.lead.tags", "contains", "vip"),
                          _condition("metadata.environment", "equals", "production")]}]},
    ]}

    # when
    matched = evaluate_filters(spec, EVENT)
    staging = evaluate_filters(spec, {**EVENT, "metadata": {"environment": "staging"}})

    # then
    assert matched.matched is True
    assert staging.matched is False
    assert staging.location == "all[1].any[0]"


def test_evaluate_filters_reports_first_failed_condition_with_location_and_reason():
    # given
    failing = _condition("data.lead.score", "greater_than", 90)
    spec = [_condition("event_type", "equals", "lead.created"), _condition("data.lead.score", "exists"), failing,
            _condition("data.lead.id", "equals", "nope")]

    # when
    result = evaluate_filters(spec, EVENT)

    # then
    assert result.matched is False
    assert result.failed_condition is failing
    assert result.location == "all[2]"
    assert result.reason == "data.lead.score is 85, not greater_than 90"


def test_evaluate_filters_reason_for_the_seed_example():
    # given: the seed's "Event Filters" condition
    condition = {"field_path": "data.lead.score", "operator": "greater_than", "value": 80, "case_sensitive": False}

    # when
    result = evaluate_filters(condition, {**EVENT, "data": {"lead": {"score": 70}}})

    # then
    assert result == FilterResult(False, condition, "condition",
                                  "data.lead.score is 70, not greater_than 80")


def test_evaluate_filters_reason_for_missing_field_and_failed_exists():
    # given / when
    missing = evaluate_filters(_condition("data.lead.owner", "not_equals", "x"), EVENT)
    null = evaluate_filters(_condition("data.lead.notes", "exists"), EVENT)
    present = evaluate_filters(_condition("data.lead.id", "not_exists"), EVENT)

    # then
    assert missing.reason == "data.lead.owner is missing; only not_exists matches a missing or null field"
    assert null.reason == "data.lead.notes is null, so exists does not match"
    assert present.reason == 'data.lead.id is "L-42", so not_exists does not match'


def test_evaluate_filters_any_failure_reports_its_first_condition():
    # given
    first = _condition("data.lead.score", "less_than", 10)
    spec = [_condition("event_type", "exists"), {"any": [first, _condition("data.lead.id", "equals", "x")]}]

    # when
    result = evaluate_filters(spec, EVENT)

    # then
    assert result.failed_condition is first
    assert result.location == "all[1].any[0]"
    assert result.reason == "none of the 2 conditions in all[1] matched; first: data.lead.score is 85, not less_than 10"


def test_evaluate_filters_rejects_an_invalid_spec():
    # given
    spec = _condition("data.lead.score", "bigger_than", 1)

    # when / then
    with pytest.raises(FilterValidationError):
        evaluate_filters(spec, EVENT)


def test_evaluate_filters_depth_limit_groups_still_evaluate():
    # given: MAX_DEPTH nested groups around one condition
    spec = _condition("data.lead.score", "equals", 85)
    for level in range(MAX_DEPTH):
        spec = {"any" if level % 2 else "all": [spec]}

    # when
    result = evaluate_filters(spec, EVENT)

    # then
    assert result.matched is True


# --- validation ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "spec",
    [None, [], _condition("data.lead.score", "greater_than", 80), _condition("data.lead.score", "greater_than", "80.5"),
     _condition("data.x", "exists"), {"field_path": "data.x", "operator": "exists", "value": None},
     _condition("data.items.0.sku-code", "equals", "A", case_sensitive=False), _condition("data.x", "equals", False),
     _condition("data.x", "equals", 0), _condition("data.x", "contains", True), _condition("data.x", "in", [None, 1]),
     [_condition("event_type", "exists")] * MAX_CONDITIONS],
)
def test_validate_filters_accepts_valid_specs(spec):
    # given / when / then (no exception)
    validate_filters(spec)


def _validation_error(spec) -> FilterValidationError:
    with pytest.raises(FilterValidationError) as caught:
        validate_filters(spec)
    return caught.value


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        (_condition("data.x", "bigger_than", 1), "unknown operator 'bigger_than'"),
        ({"field_path": "data.x", "value": 1}, "unknown operator None"),
        (_condition("data.x", ["equals"], 1), "unknown operator"),
        (_condition("", "equals", 1), "field_path '' must be dotted segments"),
        ({"operator": "equals", "value": 1}, "field_path None"),
        (_condition("data..x", "equals", 1), "must be dotted segments"),
        (_condition("data.x y", "equals", 1), "must be dotted segments"),
        (_condition("data.x.", "equals", 1), "must be dotted segments"),
        (_condition("data." + "x" * 300, "equals", 1), "at most 256 characters"),
        (_condition("lead.score", "equals", 1),
         "must start with one of: event_type, event_id, timestamp, data, metadata"),
        (_condition("data.x", "equals", 1, case_sensitive="no"), "case_sensitive must be true or false"),
        (_condition("data.x", "equals"), "equals needs a value"),
        ({"field_path": "data.x", "operator": "not_in", "value": None}, "not_in needs a value"),
        (_condition("data.x", "exists", True), "exists takes no value"),
        (_condition("data.x", "not_exists", "x"), "not_exists takes no value"),
        (_condition("data.x", "in", "production"), 'in needs a non-empty list, not "production"'),
        (_condition("data.x", "not_in", []), "not_in needs a non-empty list"),
        (_condition("data.x", "greater_than", "high"), 'greater_than needs a number or a numeric string, not "high"'),
        (_condition("data.x", "less_than", True), "less_than needs a number"),
        (_condition("data.x", "less_than_or_equal", [1]), "less_than_or_equal needs a number"),
        (_condition("data.x", "greater_than_or_equal", "1_000"), "needs a number"),
        (_condition("data.x", "starts_with", 5), "starts_with needs a string, not 5"),
        (_condition("data.x", "ends_with", ["a"]), "ends_with needs a string"),
        (_condition("data.x", "regex", 5), "regex needs a string"),
        (_condition("data.x", "contains", {"a": 1}), "contains needs a string, number or boolean"),
        ({**_condition("data.x", "equals", 1), "negate": True, "Value": 2}, "unknown key(s): Value, negate"),
    ],
)
def test_validate_filters_rejects_bad_condition(condition, message):
    # given / when
    error = _validation_error(condition)

    # then
    assert error.location == "condition"
    assert message in error.message
    assert str(error) == f"condition: {error.message}"


@pytest.mark.parametrize(
    ("spec", "location", "message"),
    [
        ("data.x equals 1", "filters", "expected a condition object"),
        (42, "filters", "expected a condition object"),
        ({"all": []}, "filters", '"all" needs a non-empty list'),
        ({"any": {"field_path": "data.x"}}, "filters", '"any" needs a non-empty list'),
        ({"all": [_condition("data.x", "exists")], "any": []}, "filters", "exactly one key"),
        ([_condition("data.x", "exists"), [_condition("data.y", "exists")]], "all[1]", "expected a condition object"),
        ([_condition("data.x", "exists"), {"any": [_condition("data.y", "exists"), _condition("data.z", "nope")]}],
         "all[1].any[1]", "unknown operator"),
        ([{"any": [{"all": []}]}], "all[0].any[0]", '"all" needs a non-empty list'),
        ({"any": [_condition("data.x", "exists"), {"all": [_condition("data.y", "exists"),
                                                            {**_condition("data.z", "exists"), "any": []}]}]},
         "any[1].all[1]", "exactly one key"),
    ],
)
def test_validate_filters_rejects_bad_structure_with_location(spec, location, message):
    # given / when
    error = _validation_error(spec)

    # then
    assert error.location == location
    assert message in error.message


def test_validate_filters_rejects_groups_nested_too_deep():
    # given: one level more than MAX_DEPTH
    spec = _condition("data.x", "exists")
    for _ in range(MAX_DEPTH + 1):
        spec = {"all": [spec]}

    # when
    error = _validation_error(spec)

    # then
    assert error.location == "all[0].all[0].all[0].all[0].all[0]"
    assert error.message == f"groups nest at most {MAX_DEPTH} levels deep"


def test_validate_filters_rejects_too_many_conditions():
    # given
    spec = [_condition("data.x", "exists")] * MAX_CONDITIONS + [{"any": [_condition("data.y", "exists")]}]

    # when
    error = _validation_error(spec)

    # then
    assert error.location == f"all[{MAX_CONDITIONS}].any[0]"
    assert error.message == f"at most {MAX_CONDITIONS} conditions in total"


# --- regex -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("(unclosed", "invalid regex: missing )"),
        ("a{2,1}", "invalid regex"),
        ("*lead", "invalid regex: no argument for repetition operator"),
        ("a" * 257, "regex patterns are at most 256 characters"),
        (r"(a)\1", "invalid regex: invalid escape sequence"),
        ("foo(?=bar)", "invalid regex"),
        ("(?<!x)y", "invalid regex"),
    ],
)
def test_validate_filters_rejects_bad_regex(pattern, message):
    # given / when
    error = _validation_error([_condition("event_type", "exists"), _condition("data.lead.id", "regex", pattern)])

    # then
    assert error.location == "all[1]"
    assert message in error.message


@pytest.mark.parametrize(
    "pattern",
    [r"^L-\d+$", r"(\d{1,3}\.){3}\d{1,3}", r"^[A-Z]+-\d+$", r"(foo|bar)+", r"(\w|\d)+", r"\w+@\w+\.\w+",
     ".*foo.*", ".*foo.*bar", r"^\s?-?\s?\d{1,3}\d{1,3}$", ".*x?", r"^\s*\S+\s*$", "(?i)^lead", r"^\+1\d{10}$",
     "", "[" + "a" * 254 + "]"],
)
def test_validate_filters_accepts_safe_regex(pattern):
    # given / when / then (no exception)
    validate_filters(_condition("data.lead.id", "regex", pattern))


def test_evaluate_filters_regex_searches_anywhere_in_the_string():
    # given / when / then
    assert _matches("data.lead.email", "regex", "Example")
    assert _matches("data.lead.email", "regex", ".*@.*")
    assert not _matches("data.lead.email", "regex", "^Example")


def test_evaluate_filters_regex_skips_strings_longer_than_the_limit():
    # given
    at_limit = {"data": {"text": "a" * (MAX_REGEX_SUBJECT_LENGTH - 1) + "!"}}
    over_limit = {"data": {"text": "a" * MAX_REGEX_SUBJECT_LENGTH + "!"}}

    # when / then
    assert _matches("data.text", "regex", "!$", event=at_limit)
    assert not _matches("data.text", "regex", "!$", event=over_limit)


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    ("pattern", "text"),
    [("(a+)+$", "a" * (MAX_REGEX_SUBJECT_LENGTH - 1) + "!"), ("(a|ab)*c", "ab" * (MAX_REGEX_SUBJECT_LENGTH // 2)),
     (r"^(\w+\s?)*$", "word " * (MAX_REGEX_SUBJECT_LENGTH // 5 - 1) + "!"), ("(.*a){20}", "a" * 19 + "b" * 9000),
     (r"\d+\d*x", "1" * MAX_REGEX_SUBJECT_LENGTH), ("a.*b.*c", "ab" * (MAX_REGEX_SUBJECT_LENGTH // 2))],
)
def test_evaluate_filters_catastrophic_regex_on_adversarial_input_returns(pattern, text):
    # given: patterns that make a backtracking engine run for hours on these inputs
    condition = _condition("data.text", "regex", pattern)

    # when (the timeout mark fails the test if RE2 were not linear)
    result = evaluate_filters(condition, {"data": {"text": text}})

    # then
    assert result.matched is False
