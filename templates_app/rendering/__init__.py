"""Payload rendering: pure functions over a Jinja2 sandbox (STYLE 21; NetBox's sandboxed webhook
bodies and CR/LF-stripped header values).

Two template forms:

* **JSON**: a dict or list whose string leaves are Jinja2 templates (the seed's "Payload
  Transformation", Slack and analytics examples). A leaf that is exactly one ``{{ expression }}``
  (whitespace around it allowed) keeps the value's JSON type: ``"{{ data.lead.score }}"`` gives the
  number 85 and ``"{{ data.lead }}"`` an object. Other string leaves render to strings; numbers,
  booleans and null pass through. Keys are not templated.
* **text**: one Jinja2 template rendered to a string and sent as is (form-encoded, XML, ...).

The context is the event envelope (``event_type``, ``event_id``, ``timestamp``, ``data``,
``metadata``). Helpers: the ``tojson`` filter (compact JSON), ``format_datetime(fmt)`` (ISO-8601
in, UTC out, default ``%Y-%m-%dT%H:%M:%SZ``), ``now_iso()``, and Jinja's own ``default``. An
undefined variable is an error, never an empty string. Limits: ``WEBHOOK_TEMPLATE_RENDER_TIMEOUT_MS``
(default 1000) and ``WEBHOOK_TEMPLATE_OUTPUT_LIMIT_BYTES`` (default 262144) per render; see
``sandbox`` for how they are enforced.

Every failure (syntax, undefined variable, sandbox refusal, limit, a Python error inside the
template) surfaces as ``TemplateRenderError`` with the line, column and, for JSON templates, the
dotted path of the leaf (``crm_lead.lead_score``, list items by index: ``attachments.0.color``).
"""
import functools
import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from jinja2 import Template, TemplateSyntaxError, nodes
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.runtime import Undefined

from templates_app.rendering.budget import (
    Budget,
    RenderLimitExceeded,
    TemplateUsageError,
    approximate_size,
    budgeted,
)
from templates_app.rendering.sandbox import GuardedSandbox

__all__ = [
    "CONTENT_TYPE_RE",
    "ENVELOPE_KEYS",
    "HEADER_NAME_RE",
    "MAX_HEADER_NAME_LENGTH",
    "MAX_HEADER_VALUE_LENGTH",
    "TemplateRenderError",
    "build_context",
    "is_reserved_header",
    "render_headers",
    "render_json_template",
    "render_text_template",
    "validate_template",
]

ENVELOPE_KEYS = ("event_type", "event_id", "timestamp", "data", "metadata")
# Headers the sender sets itself: framing (a second Content-Length or Transfer-Encoding would make
# the request ambiguous: request smuggling), routing (Host), content type (set by the template
# form) and every header receivers rely on for de-duplication and verification.
_RESERVED_HEADERS = frozenset({
    "content-length", "content-type", "host", "transfer-encoding", "connection", "keep-alive", "upgrade", "te",
    "trailer", "expect", "proxy-authorization", "proxy-connection",
})
_RESERVED_PREFIXES = ("x-vocelio-", "webhook-")
MAX_HEADER_VALUE_LENGTH = 8192


def is_reserved_header(name: str) -> bool:
    """True for a header name that custom or templated headers may not set (case-insensitive)."""
    lowered = name.lower()
    return lowered in _RESERVED_HEADERS or lowered.startswith(_RESERVED_PREFIXES)
# RFC 9110 "token": what an HTTP field name may contain.
HEADER_NAME_RE = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
# Saved header names (custom headers, header templates) are at most this long: RFC 9110 sets no
# limit, but servers refuse long header lines (nginx: 8 KiB per line by default) and the name is
# echoed in error messages. The sender does not apply it, so rows saved before still send.
MAX_HEADER_NAME_LENGTH = 256
# A media type, sent as the Content-Type header value (a named template's or an inline
# transformation's ``content_type``): type/subtype tokens, then parameters of visible ASCII with
# inner spaces and tabs (``endpoints.models.header_value_problem``, the rule for every header value).
CONTENT_TYPE_RE = re.compile(
    r"^[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+([ \t]*;([ \t]*[\x20-\x7e\t]*[\x21-\x7e])?)?\Z")
# CR, LF and every other control character, plus Unicode line/paragraph separators.
_HEADER_UNSAFE_RE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_TAG_START_RE = re.compile(r"\{\{|\{%|\{#")
_UNDEFINED_RES = (
    re.compile(r"^'(?P<name>[^']+)' is undefined$"),
    re.compile(r"has no attribute '(?P<name>[^']+)'$"),
    re.compile(r"has no element (?P<name>.+)$"),
)
MAX_JSON_DEPTH = 32
# Compiled leaves kept per process: compiling costs ~50x a render (DESIGN.md, "Scale").
COMPILED_CACHE_SIZE = 2048
_RESULT = "_vocelio_result"

_ENV = GuardedSandbox()


class TemplateRenderError(Exception):
    """A template could not be compiled or rendered.

    ``line`` and ``column`` are 1-based positions in the failing template string (``column`` is
    ``None`` when Jinja does not tell); ``path`` locates the string leaf in a JSON template
    (``crm_lead.lead_score``) or the header name, else ``None``.
    """

    def __init__(self, message: str, *, line: int | None = None, column: int | None = None, path: str | None = None):
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column
        self.path = path

    @property
    def details(self) -> dict[str, Any]:
        return {"line": self.line, "column": self.column, "path": self.path}

    def __str__(self) -> str:
        where = [f"{name} {value}" for name, value in (("path", self.path), ("line", self.line),
                                                        ("column", self.column)) if value is not None]
        return f"{self.message} ({', '.join(where)})" if where else self.message


def build_context(envelope: dict) -> dict:
    """The template context for an event envelope (the seed's "Standard Payload Format").

    Returns the five envelope keys; a missing ``data`` or ``metadata`` becomes ``{}``, a missing
    ``event_type``/``event_id``/``timestamp`` stays undefined (using it is an error), and a
    ``datetime`` timestamp becomes ``2025-08-05T17:30:00Z``. Helpers (``tojson``,
    ``format_datetime``, ``now_iso``, ``default``) live in the environment, so every template has them.
    """
    context = {key: envelope[key] for key in ENVELOPE_KEYS if key in envelope}
    context.setdefault("data", {})
    context.setdefault("metadata", {})
    if isinstance(context.get("timestamp"), datetime):
        moment = context["timestamp"]
        moment = moment.astimezone(UTC) if moment.tzinfo else moment
        text = moment.replace(tzinfo=None).isoformat(timespec="microseconds" if moment.microsecond else "seconds")
        context["timestamp"] = text + "Z"
    return context


def validate_template(template: Any) -> None:
    """Syntax-check a template without rendering it (NetBox's ``validate_jinja2_syntax``).

    ``template`` is a text template (``str``) or a JSON template (dict/list whose string leaves
    are templates). Unknown filters count as syntax errors. Raises ``TemplateRenderError`` with
    line, column and path; compiled leaves stay cached for rendering.
    """
    if isinstance(template, str):
        _compile_checked(template, native=False, path=None)
    elif isinstance(template, (dict, list)):
        for path, leaf in _walk(template):
            if isinstance(leaf, str):
                _compile_checked(leaf, native=True, path=path)
    else:
        raise TemplateRenderError("A template is a JSON object or array, or a text string.")


def render_json_template(template: dict | list, context: dict) -> Any:
    """Render a JSON template to a JSON value (see the module docstring for the rules).

    All leaves share one budget (time and output size). Raises ``TemplateRenderError``.
    """
    with budgeted() as budget:
        return _render_node(template, context, budget, path=None, depth=0)


def render_text_template(source: str, context: dict) -> str:
    """Render a text template to a string. Raises ``TemplateRenderError``."""
    with budgeted() as budget:
        return _render_leaf(source, context, budget, native=False, path=None)


def render_headers(headers: dict[str, str], context: dict) -> dict[str, str]:
    """Render header value templates; names are not templated and must be HTTP tokens.

    Each rendered value has CR, LF, every other control character and Unicode line separators
    removed, then surrounding whitespace trimmed, so a value can never start a new header; a value
    that is still not ASCII is refused (``urlencode`` it). Raises ``TemplateRenderError`` with
    ``path`` set to the header name.
    """
    rendered = {}
    with budgeted() as budget:
        for name, source in headers.items():
            if not isinstance(name, str) or not HEADER_NAME_RE.match(name):
                raise TemplateRenderError(f"{name!r} is not a valid HTTP header name.", path=str(name))
            if not isinstance(source, str):
                raise TemplateRenderError("A header value template must be a string.", path=name)
            value = _HEADER_UNSAFE_RE.sub("", _render_leaf(source, context, budget, native=False, path=name)).strip()
            if not value.isascii():
                raise TemplateRenderError(
                    f"Header {name!r} rendered non-ASCII text, which HTTP header values cannot carry; "
                    "encode it, e.g. with |urlencode.", path=name,
                )
            rendered[name] = value
    return rendered


# --- compiling --------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Compiled:
    template: Template
    native: bool  # the source is one ``{{ expression }}`` whose value keeps its type
    line: int


_NO_LOADER_NODES = (nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)


@functools.lru_cache(maxsize=COMPILED_CACHE_SIZE)
def _compile(source: str, native: bool) -> _Compiled:
    tree = _ENV.parse(source)
    for node in tree.find_all(_NO_LOADER_NODES):
        raise TemplateSyntaxError("include, import and extends are not available: a template is self-contained.",
                                  node.lineno)
    expression = _single_expression(tree) if native else None
    if expression is None:
        return _Compiled(template=_ENV.from_string(tree), native=False, line=1)
    body = nodes.Template([nodes.Assign(nodes.Name(_RESULT, "store"), expression, lineno=expression.lineno)],
                          lineno=1)
    body.set_environment(_ENV)
    return _Compiled(template=_ENV.from_string(body), native=True, line=expression.lineno)


def _single_expression(tree: nodes.Template) -> nodes.Expr | None:
    if len(tree.body) != 1 or not isinstance(tree.body[0], nodes.Output):
        return None
    parts = [part for part in tree.body[0].nodes
             if not (isinstance(part, nodes.TemplateData) and not part.data.strip())]
    if len(parts) == 1 and not isinstance(parts[0], nodes.TemplateData):
        return parts[0]
    return None


def _compile_checked(source: str, *, native: bool, path: str | None) -> _Compiled:
    try:
        return _compile(source, native)
    except Exception as exc:  # any compile failure is the template's fault
        raise _as_render_error(exc, source, path) from exc


# --- rendering --------------------------------------------------------------------------------
def _render_node(node: Any, context: dict, budget: Budget, *, path: str | None, depth: int) -> Any:
    if depth > MAX_JSON_DEPTH:
        raise TemplateRenderError(f"The template is nested deeper than {MAX_JSON_DEPTH} levels.", path=path)
    if isinstance(node, str):
        return _render_leaf(node, context, budget, native=True, path=path)
    if isinstance(node, dict):
        return {key: _render_node(value, context, budget, path=_join(path, key), depth=depth + 1)
                for key, value in node.items()}
    if isinstance(node, list):
        return [_render_node(value, context, budget, path=_join(path, index), depth=depth + 1)
                for index, value in enumerate(node)]
    if node is None or isinstance(node, (bool, int, float)):
        budget.emit(approximate_size(node, budget.output_limit))
        return node
    raise TemplateRenderError(f"A JSON template cannot contain a {type(node).__name__} value.", path=path)


def _render_leaf(source: str, context: dict, budget: Budget, *, native: bool, path: str | None) -> Any:
    compiled = _compile_checked(source, native=native, path=path)
    try:
        if compiled.native:
            return _to_json(_evaluate(compiled.template, context), budget)
        parts = []
        for chunk in compiled.template.generate(context):
            budget.emit(len(chunk.encode("utf-8", "surrogatepass")))
            parts.append(chunk)
        return "".join(parts)
    except Exception as exc:  # the sandbox's contract: the caller catches everything
        raise _as_render_error(exc, source, path, fallback_line=compiled.line) from exc


def _evaluate(template: Template, context: dict) -> Any:
    frame = template.new_context(context)
    try:
        for _ in template.root_render_func(frame):
            pass
    except Exception:  # noqa: BLE001
        template.environment.handle_exception()  # re-raises with template line numbers
    return frame.vars[_RESULT]


def _to_json(value: Any, budget: Budget) -> Any:
    budget.emit(approximate_size(value, budget.output_left))
    return _jsonable(value)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TemplateUsageError(f"The expression gives {value}, which is not a JSON number.")
        return value
    if isinstance(value, dict):
        return {_json_key(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    raise TemplateUsageError(
        f"The expression gives a {type(value).__name__} object, not a JSON value; add |list or |string."
    )


def _json_key(key: Any) -> str:
    if isinstance(key, str):
        return key
    if key is None or isinstance(key, (bool, int, float)):
        return json.dumps(key)  # as ``json.dumps`` would write the key: "1", "true", "null"
    raise TemplateUsageError(f"A {type(key).__name__} cannot be a JSON object key.")


def _walk(template: Any, path: str | None = None, depth: int = 0):
    """Yield ``(path, leaf)`` for every leaf of a JSON template; raises on non-JSON content."""
    if depth > MAX_JSON_DEPTH:
        raise TemplateRenderError(f"The template is nested deeper than {MAX_JSON_DEPTH} levels.", path=path)
    if isinstance(template, dict):
        for key, value in template.items():
            if not isinstance(key, str):
                raise TemplateRenderError("JSON template keys must be strings.", path=path)
            yield from _walk(value, _join(path, key), depth + 1)
    elif isinstance(template, list):
        for index, value in enumerate(template):
            yield from _walk(value, _join(path, index), depth + 1)
    elif template is None or isinstance(template, (str, bool, int, float)):
        yield path, template
    else:
        raise TemplateRenderError(f"A JSON template cannot contain a {type(template).__name__} value.", path=path)


def _join(path: str | None, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


# --- errors -----------------------------------------------------------------------------------
def _as_render_error(exc: Exception, source: str, path: str | None,
                     fallback_line: int | None = None) -> TemplateRenderError:
    if isinstance(exc, TemplateRenderError):
        return exc
    if isinstance(exc, TemplateSyntaxError):
        line = exc.lineno
        return TemplateRenderError(f"Syntax error: {exc.message}", line=line, column=_tag_column(source, line),
                                   path=path)
    line = _template_line(exc) or fallback_line
    column = _tag_column(source, line)
    if isinstance(exc, SecurityError):
        message = f"Refused by the sandbox: {exc}"
    elif isinstance(exc, UndefinedError):
        name = _undefined_name(str(exc))
        reference = _reference(source, line, name) if name else None
        message = f"Undefined variable: {reference or name}" if name else f"Undefined value: {exc}"
        column = _text_column(source, line, reference or name) or column
    elif isinstance(exc, (RenderLimitExceeded, TemplateUsageError)):
        message = str(exc)
    else:
        message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return TemplateRenderError(message, line=line, column=column, path=path)


def _template_line(exc: BaseException) -> int | None:
    line = None
    traceback = exc.__traceback__
    while traceback is not None:
        if traceback.tb_frame.f_code.co_filename == "<template>":
            line = traceback.tb_lineno
        traceback = traceback.tb_next
    return line


def _source_line(source: str, line: int | None) -> str | None:
    lines = source.splitlines()
    return lines[line - 1] if line and 0 < line <= len(lines) else None


def _tag_column(source: str, line: int | None) -> int | None:
    """The column of the only ``{{``/``{%``/``{#`` on ``line``, if it has exactly one."""
    text = _source_line(source, line)
    starts = [match.start() for match in _TAG_START_RE.finditer(text)] if text else []
    return starts[0] + 1 if len(starts) == 1 else None


def _text_column(source: str, line: int | None, needle: str | None) -> int | None:
    text = _source_line(source, line)
    position = text.find(needle) if text and needle else -1
    return position + 1 if position >= 0 else None


def _undefined_name(message: str) -> str | None:
    for pattern in _UNDEFINED_RES:
        match = pattern.search(message)
        if match:
            return match.group("name")
    return None


def _reference(source: str, line: int | None, name: str) -> str | None:
    """The dotted reference (``data.lead.scor``) on ``line`` whose last part is ``name``."""
    try:
        tree = _ENV.parse(source)
    except TemplateSyntaxError:
        return None
    found = set()
    for node in tree.find_all((nodes.Name, nodes.Getattr, nodes.Getitem)):
        if line is not None and node.lineno != line:
            continue
        if isinstance(node, nodes.Name):
            last = node.name
        elif isinstance(node, nodes.Getattr):
            last = node.attr
        elif isinstance(node.arg, nodes.Const):
            last = node.arg.value
        else:
            continue
        if last == name or repr(last) == name:
            dotted = _dotted(node)
            if dotted:
                found.add(dotted)
    return found.pop() if len(found) == 1 else None


def _dotted(node: nodes.Node) -> str | None:
    if isinstance(node, nodes.Name):
        return node.name
    if isinstance(node, nodes.Getattr):
        parent = _dotted(node.node)
        return parent and f"{parent}.{node.attr}"
    if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
        parent = _dotted(node.node)
        return parent and f"{parent}.{node.arg.value}"
    return None
