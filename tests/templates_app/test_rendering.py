"""Rendering as a template author sees it: the seed's integration examples, both template forms,
header templates, errors with line/column/path, the sandbox and the render limits.

Pure functions: no database, no worker."""
import json
import time
from datetime import UTC, datetime, timedelta, timezone

import pytest

from templates_app import rendering
from templates_app.rendering import TemplateRenderError
from tests.templates_app.seed_examples import (
    ANALYTICS_TEMPLATE,
    CALL_ENDED,
    HEALTH_ALERT,
    LEAD_CREATED,
    SALESFORCE_OUTPUT,
    SALESFORCE_TEMPLATE,
    SLACK_TEMPLATE,
)


def _lead_context() -> dict:
    return rendering.build_context(LEAD_CREATED)


def _render_error(source: str, context: dict | None = None) -> TemplateRenderError:
    with pytest.raises(TemplateRenderError) as caught:
        rendering.render_text_template(source, _lead_context() if context is None else context)
    return caught.value


# --- the seed's examples ----------------------------------------------------------------------
def test_render_json_template_salesforce_example_keeps_lead_score_a_number():
    # given
    context = rendering.build_context(LEAD_CREATED)

    # when
    output = rendering.render_json_template(SALESFORCE_TEMPLATE, context)

    # then
    assert output == SALESFORCE_OUTPUT
    assert type(output["crm_lead"]["lead_score"]) is int
    assert json.dumps(output, separators=(",", ":")) == (
        '{"crm_lead":{"external_id":"lead_123","contact_name":"John Doe","email_address":"john.doe@example.com",'
        '"phone_number":"+1-555-0123","lead_score":85,"assigned_rep":"Sarah Johnson"},'
        '"timestamp":"2025-08-05T17:30:00Z","source":"vocelio_ai_platform"}'
    )


def test_render_json_template_slack_example_renders_nested_lists():
    # given
    context = rendering.build_context(HEALTH_ALERT)

    # when
    output = rendering.render_json_template(SLACK_TEMPLATE, context)

    # then
    assert output == {
        "text": "🚨 Alert: system.health_alert",
        "attachments": [{
            "color": "danger",
            "fields": [
                {"title": "Event", "value": "system.health_alert", "short": True},
                {"title": "Time", "value": "2025-08-05T20:15:00Z", "short": True},
            ],
        }],
    }


def test_render_json_template_analytics_example_on_a_call_event():
    # given
    context = rendering.build_context(CALL_ENDED)

    # when
    output = rendering.render_json_template(ANALYTICS_TEMPLATE, context)

    # then
    assert output == {
        "metric_type": "call.ended",
        "value": 1,
        "timestamp": "2025-08-05T18:00:00Z",
        "dimensions": {"agent_id": "agent_123", "source": "vocelio"},
    }


# --- JSON form ----------------------------------------------------------------------------------
def test_render_json_template_single_expression_keeps_the_json_type():
    # given
    template = {
        "object": "{{ data.agent }}",
        "spaced": "  {{ data.lead.score }}\n",
        "list": ["{{ [data.lead.score, true, none] }}"],
        "float": "{{ data.lead.score / 2 }}",
        "defaulted": "{{ data.lead.missing | default(0) }}",
        "json_text": "{{ data.agent | tojson }}",
    }

    # when
    output = rendering.render_json_template(template, _lead_context())

    # then
    assert output == {
        "object": {"id": "agent_456", "name": "Sarah Johnson", "email": "sarah@vocelio.com"},
        "spaced": 85,
        "list": [[85, True, None]],
        "float": 42.5,
        "defaulted": 0,
        "json_text": '{"id":"agent_456","name":"Sarah Johnson","email":"sarah@vocelio.com"}',
    }


def test_render_json_template_other_string_leaves_are_text():
    # given
    template = {"summary": "{{ data.lead.name }} scored {{ data.lead.score }}", "literal": "85",
                "two": "{{ data.lead.score }}{{ data.lead.score }}"}

    # when
    output = rendering.render_json_template(template, _lead_context())

    # then
    assert output == {"summary": "John Doe scored 85", "literal": "85", "two": "8585"}


def test_render_json_template_keys_are_literal_and_scalars_pass_through():
    # given
    template = {"{{ event_type }}": [1, 2.5, True, None, "{{ event_id }}"]}

    # when
    output = rendering.render_json_template(template, _lead_context())

    # then
    assert output == {"{{ event_type }}": [1, 2.5, True, None, "evt_123456789"]}


def test_render_json_template_mapping_key_wins_over_dict_method():
    # given
    context = rendering.build_context({**LEAD_CREATED, "data": {"items": [{"sku": "A-1"}], "keys": "k"}})

    # when
    output = rendering.render_json_template({"sku": "{{ data.items.0.sku }}", "keys": "{{ data.keys }}"}, context)

    # then
    assert output == {"sku": "A-1", "keys": "k"}


def test_render_json_template_refuses_a_value_that_is_not_json():
    # given
    template = {"names": "{{ data.agent.values() | map('upper') }}"}

    # when
    with pytest.raises(TemplateRenderError) as caught:
        rendering.render_json_template(template, _lead_context())

    # then
    assert caught.value.path == "names"
    assert "not a JSON value" in caught.value.message


# --- text form ----------------------------------------------------------------------------------
def test_render_text_template_form_encoded_body():
    # given
    source = ("lead_id={{ data.lead.id | urlencode }}&name={{ data.lead.name | urlencode }}"
              "&email={{ data.lead.email | urlencode }}&score={{ data.lead.score }}")

    # when
    output = rendering.render_text_template(source, _lead_context())

    # then
    assert output == "lead_id=lead_123&name=John%20Doe&email=john.doe%40example.com&score=85"


def test_render_text_template_xml_body_escapes_and_keeps_trailing_newline():
    # given
    source = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<lead id="{{ data.lead.id | e }}">\n'
        "  <name>{{ data.lead.name | e }}</name>\n"
        "  <score>{{ data.lead.score }}</score>\n"
        "  <created>{{ data.lead.created_at | format_datetime('%Y-%m-%d') }}</created>\n"
        "</lead>\n"
    )
    context = rendering.build_context({**LEAD_CREATED, "data": {"lead": {**LEAD_CREATED["data"]["lead"],
                                                                          "name": 'Tom & "Jerry" <Ltd>'}}})

    # when
    output = rendering.render_text_template(source, context)

    # then
    assert output == (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<lead id="lead_123">\n'
        "  <name>Tom &amp; &#34;Jerry&#34; &lt;Ltd&gt;</name>\n"
        "  <score>85</score>\n"
        "  <created>2025-08-05</created>\n"
        "</lead>\n"
    )


# --- headers ------------------------------------------------------------------------------------
def test_render_headers_strips_cr_lf_and_control_characters():
    # given
    context = rendering.build_context({**LEAD_CREATED, "data": {"lead": {"id": "lead_123\r\nX-Injected: yes"}}})
    headers = {"X-Lead-Id": "{{ data.lead.id }}", "X-Event": " {{ event_type }}\t\x00\u2028", "X-Static": "Vocelio"}

    # when
    output = rendering.render_headers(headers, context)

    # then
    assert output == {"X-Lead-Id": "lead_123X-Injected: yes", "X-Event": "lead.created", "X-Static": "Vocelio"}


def test_render_headers_refuses_an_invalid_header_name():
    # given
    headers = {"X-Bad\r\nName": "1"}

    # when
    with pytest.raises(TemplateRenderError) as caught:
        rendering.render_headers(headers, _lead_context())

    # then
    assert "not a valid HTTP header name" in caught.value.message


def test_render_headers_error_names_the_header():
    # given
    headers = {"X-Ok": "1", "X-Lead-Id": "{{ data.lead.identifier }}"}

    # when
    with pytest.raises(TemplateRenderError) as caught:
        rendering.render_headers(headers, _lead_context())

    # then
    assert caught.value.path == "X-Lead-Id"
    assert caught.value.message == "Undefined variable: data.lead.identifier"


# --- errors -------------------------------------------------------------------------------------
def test_render_json_template_undefined_variable_names_it_with_its_location():
    # given
    template = {"crm_lead": {"external_id": "{{ data.lead.id }}", "lead_score": "{{ data.lead.scor }}"}}

    # when
    with pytest.raises(TemplateRenderError) as caught:
        rendering.render_json_template(template, _lead_context())

    # then
    error = caught.value
    assert error.message == "Undefined variable: data.lead.scor"
    assert (error.path, error.line, error.column) == ("crm_lead.lead_score", 1, 4)


def test_render_text_template_undefined_variable_in_a_mixed_line_is_an_error_not_empty():
    # given
    source = "lead={{ data.lead.id }}\nrep={{ data.agent.name }}&region={{ data.agent.region }}"

    # when
    error = _render_error(source)

    # then
    assert error.message == "Undefined variable: data.agent.region"
    assert (error.line, error.column, error.path) == (2, 37, None)


def test_render_text_template_undefined_list_element_and_top_level_name():
    # given / when
    element = _render_error("{{ data['lead']['tags'][0] }}")
    top_level = _render_error("{{ lead.id }}")

    # then
    assert element.message.startswith("Undefined variable: data.lead.tags")
    assert top_level.message == "Undefined variable: lead"


def test_validate_template_syntax_error_has_line_column_and_path():
    # given
    template = {"text": "ok {{ event_type }}", "blocks": [{"body": "first line\nsecond {{ data.lead.name | }}"}]}

    # when
    with pytest.raises(TemplateRenderError) as caught:
        rendering.validate_template(template)

    # then
    error = caught.value
    assert error.message.startswith("Syntax error: ")
    assert (error.path, error.line, error.column) == ("blocks.0.body", 2, 8)


def test_validate_template_text_syntax_error_on_a_later_line():
    # given
    source = "a=1\nb={{ data.x }}\n{% for x in data.items %}{{ x }}"

    # when
    with pytest.raises(TemplateRenderError) as caught:
        rendering.validate_template(source)

    # then
    assert caught.value.line == 3
    assert caught.value.path is None
    assert "endfor" in caught.value.message


def test_validate_template_unknown_filter_is_a_syntax_error():
    # given / when
    with pytest.raises(TemplateRenderError) as caught:
        rendering.validate_template({"a": "{{ data | base64 }}"})

    # then
    assert caught.value.message == "Syntax error: No filter named 'base64'."
    assert caught.value.path == "a"


def test_validate_template_refuses_what_is_not_a_template():
    # given / when / then
    with pytest.raises(TemplateRenderError):
        rendering.validate_template(42)
    with pytest.raises(TemplateRenderError):
        rendering.validate_template({"a": {1, 2}})


def test_render_text_template_python_errors_become_render_errors():
    # given / when
    error = _render_error("{{ data.lead.score / 0 }}")

    # then
    assert error.message == "ZeroDivisionError: division by zero"
    assert error.line == 1


# --- sandbox ------------------------------------------------------------------------------------
@pytest.mark.parametrize("source", [
    "{{ ''.__class__.__mro__ }}",
    "{{ cycler.__init__.__globals__ }}",
    '{{ "{0.__class__}".format(data) }}',
    "{{ self._TemplateReference__context }}",
    "{{ ''.format_map }}",
    "{{ data.lead.update({'score': 0}) }}",
    "{{ dict.fromkeys(range(10)) }}",
    "{{ (1).to_bytes(10, 'big') }}",
])
def test_render_text_template_refuses_sandbox_escapes(source):
    # given / when
    error = _render_error(source)

    # then
    assert error.message.startswith("Refused by the sandbox: ")
    assert error.line == 1


def test_render_text_template_cannot_change_the_event_it_reads():
    # given
    context = _lead_context()

    # when
    _render_error("{% set tags = data.lead.setdefault('tags', []) %}{{ tags.append('x') }}", context)

    # then
    assert context["data"]["lead"] == LEAD_CREATED["data"]["lead"]


# --- limits -------------------------------------------------------------------------------------
def test_render_text_template_refuses_huge_loop_output():
    # given
    source = "{% for i in range(100000) %}xxxxxxxxxx{% endfor %}"

    # when
    error = _render_error(source)

    # then
    assert error.message == "The output exceeds the 262144-byte limit (WEBHOOK_TEMPLATE_OUTPUT_LIMIT_BYTES)."


@pytest.mark.parametrize("source", [
    "{{ 'a' * 100000000 }}",
    "{{ 'a' | center(1000000000) }}",
    "{{ 'a'.ljust(1000000000) }}",
    "{{ '{:>1000000000}'.format('a') }}",
    "{{ '%1000000000s' % 'a' }}",
    "{{ 'abc' | replace('', 'x' * 200000) }}",
    "{{ 'a\na' | indent(1000000000) }}",
    "{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
    "{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
    "{% set s = 'a' * 200000 %}{% set l = [s, s] %}{{ l }}",
    "{% set x %}{% for i in range(100000) %}{{ data.lead.email }}{% endfor %}{% endset %}{{ x | length }}",
    "{{ range(100000) | map('center', 200000) | list | length }}",
    "{{ [1] | batch(1000000000, 'x') | list }}",
    "{{ [0] * 1000000000 }}",
    "{{ 2 ** 100000 }}",
])
def test_render_text_template_refuses_values_beyond_the_limits(source):
    # given / when
    started = time.monotonic()
    error = _render_error(source)

    # then
    assert "limit" in error.message or "beyond" in error.message or "more than" in error.message
    assert time.monotonic() - started < 0.5


@pytest.mark.parametrize("source", [
    "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(40) }}",
])
def test_render_text_template_stops_at_the_time_limit(settings, source):
    # given
    settings.WEBHOOK_TEMPLATE_RENDER_TIMEOUT_MS = 50

    # when
    started = time.monotonic()
    error = _render_error(source)

    # then
    assert error.message == "Rendering took longer than 50 ms (WEBHOOK_TEMPLATE_RENDER_TIMEOUT_MS)."
    assert time.monotonic() - started < 0.5


def test_render_json_template_output_limit_counts_every_leaf(settings):
    # given
    settings.WEBHOOK_TEMPLATE_OUTPUT_LIMIT_BYTES = 100
    template = {f"k{i}": "{{ data.lead.email }}" for i in range(5)}  # 5 x 20 bytes fit, a 6th does not

    # when
    fits = rendering.render_json_template(template, _lead_context())
    with pytest.raises(TemplateRenderError) as caught:
        rendering.render_json_template({**template, "k5": "{{ data.lead.email }}"}, _lead_context())

    # then
    assert len(fits) == 5
    assert caught.value.path == "k5"
    assert "100-byte" in caught.value.message


def test_render_text_template_counts_output_in_utf8_bytes(settings):
    # given
    settings.WEBHOOK_TEMPLATE_OUTPUT_LIMIT_BYTES = 10

    # when
    fits = rendering.render_text_template("ééééé", {})  # 10 bytes
    error = _render_error("éééééé", {})  # 12 bytes

    # then
    assert fits == "ééééé"
    assert "10-byte" in error.message


# --- helpers and context -----------------------------------------------------------------------
def test_format_datetime_reads_iso_8601_and_writes_utc():
    # given
    context = rendering.build_context({**LEAD_CREATED, "data": {"at": "2025-08-05T19:30:00+02:00"}})

    # when
    output = rendering.render_json_template({
        "default": "{{ timestamp | format_datetime }}",
        "custom": "{{ timestamp | format_datetime('%d/%m/%Y %H:%M') }}",
        "offset": "{{ data.at | format_datetime }}",
        "epoch": "{{ 0 | format_datetime }}",
    }, context)

    # then
    assert output == {"default": "2025-08-05T17:30:00Z", "custom": "05/08/2025 17:30",
                      "offset": "2025-08-05T17:30:00Z", "epoch": "1970-01-01T00:00:00Z"}


def test_format_datetime_rejects_a_malformed_date():
    # given / when
    error = _render_error("{{ 'yesterday' | format_datetime }}")

    # then
    assert error.message.startswith("ValueError: Invalid isoformat string")


def test_now_iso_is_the_current_utc_second():
    # given / when
    output = rendering.render_text_template("{{ now_iso() }}", {})

    # then
    moment = datetime.strptime(output, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert abs(datetime.now(UTC) - moment) < timedelta(seconds=5)


def test_build_context_fills_the_envelope_defaults():
    # given
    envelope = {"event_type": "call.ended", "event_id": "call_789",
                "timestamp": datetime(2025, 8, 5, 20, 0, tzinfo=timezone(timedelta(hours=2))), "data": {"x": 1},
                "extra": "ignored"}

    # when
    context = rendering.build_context(envelope)

    # then
    assert context == {"event_type": "call.ended", "event_id": "call_789", "timestamp": "2025-08-05T18:00:00Z",
                       "data": {"x": 1}, "metadata": {}}


def test_render_json_template_reuses_compiled_templates():
    # given
    context = _lead_context()
    rendering.render_json_template(SALESFORCE_TEMPLATE, context)
    before = rendering._compile.cache_info()

    # when
    rendering.render_json_template(SALESFORCE_TEMPLATE, context)

    # then
    after = rendering._compile.cache_info()
    assert after.misses == before.misses
    assert after.hits == before.hits + 8


def test_render_headers_refuses_non_ascii_values_unless_encoded():
    # given
    context = rendering.build_context({**LEAD_CREATED, "data": {"agent": {"name": "José"}}})

    # when
    encoded = rendering.render_headers({"X-Agent": "{{ data.agent.name | urlencode }}"}, context)
    with pytest.raises(TemplateRenderError) as caught:
        rendering.render_headers({"X-Agent": "{{ data.agent.name }}"}, context)

    # then
    assert encoded == {"X-Agent": "Jos%C3%A9"}
    assert caught.value.path == "X-Agent"
    assert "non-ASCII" in caught.value.message


@pytest.mark.parametrize("source", ["{{ data.items }}", "x {{ data.lead.name.upper }} y", "{{ range }}"])
def test_render_text_template_refuses_to_print_a_function(source):
    # given: a template printing a method or function, not its result
    context = {"data": {"lead": {"name": "Ada"}}}

    # when
    with pytest.raises(TemplateRenderError) as refused:
        rendering.render_text_template(source, context)

    # then: the author is told, and no "<built-in method ... at 0x7f…>" (a memory address) is rendered
    assert "call it" in str(refused.value)
    assert "0x" not in str(refused.value)


def test_render_text_template_still_prints_the_result_of_a_call_and_fails_on_undefined():
    # given
    context = {"data": {"lead": {"name": "Ada"}}}

    # when / then
    assert rendering.render_text_template("{{ data.lead.name.upper() }}", context) == "ADA"
    with pytest.raises(TemplateRenderError):
        rendering.render_text_template("{{ data.nope }}", context)
