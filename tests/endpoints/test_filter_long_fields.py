"""Payload filters on long fields (found in a walk: 50 ``not_contains`` conditions on a list of
500,000 members took 15-22 s of CPU per publish). A long list's members are now indexed once per
evaluation and a failure's reason encodes only the start of the field; these tests pin that the
answers and reasons are exactly what they were. The cost itself is measured, not tested (README,
"Filters and transformations"). Pure functions: no database, no network."""
import json
import math

import pytest

from endpoints.filters import evaluate_filters

# Members and values chosen around the equality rules: numbers against numeric strings (with
# spaces, exponents, signs), "5" against "5.0" (two strings compare as strings), booleans against
# 1 and 0, case folding (ß folds to ss), NaN and infinities, nulls, nested lists and objects.
MEMBERS = [5, 5.0, -0.0, 0, 1, True, False, None, "5", " 5 ", "5.0", "-1.5e3", "1e999", "abc", "ABC", "Straße",
           "STRASSE", "", float("nan"), float("inf"), 10**30, [5], {"a": 5}, [], {}, "true", "null"]
VALUES = [5, 5.0, 0, -0.0, 1, 1.0, True, False, "5", "5.0", " 5 ", "-1500", -1500, "abc", "Abc", "strasse",
          "straße", "", "true", 10**30, 1e30, "x", 2.5, float("inf")]
FILLER = [{"filler": n} for n in range(100)]  # equal to no value a contains condition may take


def _contains(members: list, value, operator: str = "contains", case_sensitive: bool = True) -> bool:
    condition = {"field_path": "data.items", "operator": operator, "value": value, "case_sensitive": case_sensitive}
    return evaluate_filters(condition, {"data": {"items": members}}).matched


@pytest.mark.parametrize("case_sensitive", [True, False], ids=["case-sensitive", "case-insensitive"])
@pytest.mark.parametrize("operator", ["contains", "not_contains"])
def test_contains_on_a_long_list_answers_as_on_a_one_member_list(operator, case_sensitive):
    # given: every member alone (a short list), and the same member among 100 fillers (a long one)
    for member in MEMBERS:
        for value in VALUES:
            # when
            short = _contains([member], value, operator, case_sensitive)
            long = _contains([*FILLER[:50], member, *FILLER[50:]], value, operator, case_sensitive)

            # then
            assert long == short, (member, value)


def test_contains_on_a_long_list_finds_members_by_the_equality_rules():
    # given: 1,000 members, among them the numeric string " 42 ", the number 7 and "Straße"
    members = [f"member-{n}" for n in range(997)] + [" 42 ", 7, "Straße"]

    # then: a number finds a numeric string and a number; a string finds an equal string, or a
    # number of its value; a string does not find an unequal numeric string; case folding applies
    assert _contains(members, 42) and _contains(members, 42.0) and _contains(members, 7.0)
    assert _contains(members, "7") and _contains(members, " 42 ")
    assert not _contains(members, "42") and not _contains(members, "7.5") and not _contains(members, True)
    assert _contains(members, "STRASSE", case_sensitive=False) and not _contains(members, "STRASSE")
    assert _contains(members, "member-996") and not _contains(members, "member-997")
    assert not _contains(members, "member-5", "not_contains") and _contains(members, "member-x", "not_contains")


def test_many_conditions_on_one_long_list_in_one_filter():
    # given: 50 conditions, mixed contains / not_contains, over one list of 10,000 members
    members = list(range(10_000))
    spec = {"all": [{"field_path": "data.items", "operator": "contains", "value": n * 200} for n in range(25)]
            + [{"field_path": "data.items", "operator": "not_contains", "value": f"x{n}"} for n in range(24)]
            + [{"field_path": "data.items", "operator": "contains", "value": 10_000}]}

    # when
    result = evaluate_filters(spec, {"data": {"items": members}})

    # then: the last condition fails, and says so
    assert not result.matched
    assert result.location == "all[49]"


@pytest.mark.parametrize("field", [
    list(range(5000)),
    ["é" * 50, "x"],
    "\"quoted\" \\ and\nnewline " * 1000,
    "ü" * 10_000,
    {"key": list(range(3000)), "other": "v" * 500},
    [[[["deep"] * 30] * 30] * 30],
    [math.pi] * 100,
    "short",
    [],
], ids=["long list", "unicode", "escapes", "long unicode", "object", "nested", "floats", "short", "empty"])
def test_a_failed_condition_shows_the_start_of_the_field_as_json(field):
    # when
    condition = {"field_path": "data.f", "operator": "equals", "value": "nothing"}
    result = evaluate_filters(condition, {"data": {"f": field}})

    # then: the field as JSON, cut at 80 characters (79 and an ellipsis), as before
    text = json.dumps(field, ensure_ascii=False)
    shown = text if len(text) <= 80 else text[:79] + "…"
    assert result.reason == f'data.f is {shown}, not equals "nothing"'
