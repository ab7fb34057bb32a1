"""The guarded Jinja2 sandbox behind ``templates_app.rendering``.

Every render runs under a ``budget.Budget`` (deadline, output limit, cap on intermediate values),
checked:

* between loop iterations (``visit_For`` wraps every ``for`` iterable) and on every call, filter
  and intercepted operator (``+``, ``*``, ``**``, ``%``), so a loop or recursion that prints
  nothing still stops at the deadline;
* *before* each operation that can amplify its input (``*``, ``+``, ``%``, ``~``, ``str.format``,
  ``center``/``ljust``/``rjust``/``zfill``, ``replace``, ``join``, ``indent``, ``wordwrap``,
  ``batch``, ``slice``), from the size the result would have;
* on everything printed or stringified (``finalize``, ``~``, block captures), with a bounded walk
  that gives up as soon as a value is known to be too big.

The environment is the *immutable* sandbox (templates cannot mutate the event they read), method
access on builtin values is limited to an allow-list (no ``format_map``, ``translate``,
``to_bytes``, ``dict.fromkeys``...), ``lipsum`` is removed, and on a mapping a key wins over a
method of the same name (``data.items`` is the event's ``items`` field, not ``dict.items``).
"""
import functools
import math
import types
from collections.abc import Iterator
from typing import Any

from jinja2 import StrictUndefined, Undefined, nodes
from jinja2.compiler import CodeGenerator, optimizeconst
from jinja2.sandbox import ImmutableSandboxedEnvironment

from templates_app.rendering.budget import (
    MAX_INT_BITS,
    Budget,
    RenderLimitExceeded,
    TemplateUsageError,
    approximate_size,
    charge,
    check_format_string,
    check_printf,
    check_str_method,
    current_budget,
    measure,
    replaced_size,
)
from templates_app.rendering.helpers import format_datetime, now_iso, tojson

_SAFE_METHODS: dict[type, frozenset[str]] = {
    str: frozenset({
        "capitalize", "casefold", "center", "count", "endswith", "find", "format", "index", "isalnum",
        "isalpha", "isascii", "isdecimal", "isdigit", "isidentifier", "islower", "isnumeric",
        "isprintable", "isspace", "istitle", "isupper", "join", "ljust", "lower", "lstrip", "partition",
        "removeprefix", "removesuffix", "replace", "rfind", "rindex", "rjust", "rpartition", "rsplit",
        "rstrip", "split", "splitlines", "startswith", "strip", "swapcase", "title", "upper", "zfill",
    }),
    dict: frozenset({"get", "items", "keys", "values"}),
    list: frozenset({"count", "index"}),
    tuple: frozenset({"count", "index"}),
    bool: frozenset(),
    int: frozenset({"bit_length", "conjugate", "denominator", "imag", "numerator", "real"}),
    float: frozenset({"conjugate", "imag", "is_integer", "real"}),
}
_STRINGIFYING_FILTERS = frozenset({
    "capitalize", "center", "e", "escape", "forceescape", "format", "indent", "lower", "pprint",
    "replace", "string", "striptags", "title", "tojson", "trim", "truncate", "upper", "urlencode",
    "urlize", "wordcount", "wordwrap", "xmlattr",
})


# --- filter guards: ``precheck(budget, value, *args, **kwargs) -> value`` ------------------------
def _pre_center(budget: Budget, value: Any, width: Any = 80) -> Any:
    if isinstance(width, int):
        budget.check_size(width)
    return value


def _pre_indent(budget: Budget, value: Any, width: Any = 4, *args: Any, **kwargs: Any) -> Any:
    text_size = measure(budget, value)
    lines = value.count("\n") + 1 if isinstance(value, str) else text_size
    step = width if isinstance(width, int) else approximate_size(width, budget.output_limit)
    budget.check_size(text_size + lines * max(step, 0))
    return value


def _pre_wordwrap(budget: Budget, value: Any, width: Any = 79, break_long_words: Any = True,
                  wrapstring: Any = None, *args: Any, **kwargs: Any) -> Any:
    wrapstring = kwargs.get("wrapstring", wrapstring)
    text_size = measure(budget, value)
    step = len(wrapstring) if isinstance(wrapstring, str) else 2
    lines = text_size // width + 1 if isinstance(width, int) and width > 0 else text_size + 1
    budget.check_size(text_size + lines * step)
    return value


def _pre_replace(budget: Budget, value: Any, old: Any = "", new: Any = "", count: Any = None) -> Any:
    measure(budget, value)
    text = value if isinstance(value, str) else str(value)
    budget.check_size(replaced_size(text, old, new, -1 if count is None else count))
    return value


def _pre_format(budget: Budget, value: Any, *args: Any, **kwargs: Any) -> Any:
    if isinstance(value, str):
        check_printf(budget, value, (args, kwargs))
    return value


def _pre_join(budget: Budget, value: Any, d: Any = "", attribute: Any = None) -> Any:
    items = list(value)
    budget.check_items(len(items))
    separator = len(d) if isinstance(d, str) else approximate_size(d, budget.output_limit)
    budget.check_size(approximate_size(items, budget.output_limit) + separator * len(items))
    return items


def _pre_count_arg(budget: Budget, value: Any, count: Any = 0, *args: Any, **kwargs: Any) -> Any:
    if isinstance(count, int):
        budget.check_items(count)
    return value


def _pre_sum(budget: Budget, value: Any, attribute: Any = None, start: Any = 0) -> Any:
    if isinstance(start, bool) or not isinstance(start, (int, float)):
        raise TemplateUsageError("The sum filter only adds numbers (start must be a number).")
    return value


_FILTER_PRECHECKS = {
    "center": _pre_center, "indent": _pre_indent, "wordwrap": _pre_wordwrap, "replace": _pre_replace,
    "format": _pre_format, "join": _pre_join, "batch": _pre_count_arg, "slice": _pre_count_arg, "sum": _pre_sum,
}


def _guard_filter(name: str, func: Any) -> Any:
    precheck = _FILTER_PRECHECKS.get(name)
    stringifies = name in _STRINGIFYING_FILTERS
    skip = 1 if getattr(func, "jinja_pass_arg", None) is not None else 0

    @functools.wraps(func)  # keeps ``jinja_pass_arg`` (context/environment passing)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        budget = current_budget()
        budget.tick()
        if len(args) > skip:
            value = args[skip]
            if stringifies:
                measure(budget, value)
                measure(budget, (args[skip + 1:], kwargs))
            if precheck is not None:
                args = (*args[:skip], precheck(budget, value, *args[skip + 1:], **kwargs), *args[skip + 1:])
        return charge(budget, func(*args, **kwargs))

    return guarded


def _finalize(value: Any) -> Any:
    if callable(value) and not isinstance(value, Undefined):
        # str() of a method is "<built-in method items of dict object at 0x7f…>": a memory address
        # in a payload, and never what the author meant.
        raise TemplateUsageError("A function or method was printed, not its result: call it, e.g. data.items().")
    budget = current_budget()
    budget.tick()
    budget.spend(measure(budget, value))
    return value


# --- the environment ------------------------------------------------------------------------
class GuardedCodeGenerator(CodeGenerator):
    """Routes ``~`` through the size check and makes every ``for`` loop check the deadline."""

    @optimizeconst
    def visit_Concat(self, node: nodes.Concat, frame: Any) -> None:
        self.write("environment.guarded_concat((")
        for argument in node.nodes:
            self.visit(argument, frame)
            self.write(", ")
        self.write("))")

    def visit_For(self, node: nodes.For, frame: Any) -> None:
        node.iter = nodes.Call(nodes.EnvironmentAttribute("guarded_iter"), [node.iter], [], None, None,
                               lineno=node.iter.lineno)
        super().visit_For(node, frame)


class _StrictUndefined(StrictUndefined):
    """Also fails when printed inside a container: ``{{ [data.nope] }}`` must not send
    ``[Undefined]`` (StrictUndefined alone only fails on ``str()``, not on ``repr()``)."""

    __repr__ = StrictUndefined._fail_with_undefined_error


class GuardedSandbox(ImmutableSandboxedEnvironment):
    """``ImmutableSandboxedEnvironment`` + ``StrictUndefined`` + the budget checks above."""

    intercepted_binops = frozenset({"+", "*", "**", "%"})
    code_generator_class = GuardedCodeGenerator

    def __init__(self) -> None:
        # A text body is sent as is, so its trailing newline is kept.
        # optimized=False: Jinja's optimizer folds constant expressions while *compiling*,
        # outside the render budget, so a 500-byte template could take minutes to save.
        super().__init__(undefined=_StrictUndefined, autoescape=False, finalize=_finalize,
                         keep_trailing_newline=True, optimized=False)
        self.globals.pop("lipsum", None)  # generates text of any size in one call
        self.globals["now_iso"] = now_iso
        filters = {**self.filters, "tojson": tojson, "format_datetime": format_datetime}
        self.filters = {name: _guard_filter(name, func) for name, func in filters.items()}

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if isinstance(obj, type) or not super().is_safe_attribute(obj, attr, value):
            return False
        allowed = _SAFE_METHODS.get(type(obj))
        if allowed is None:
            allowed = next((names for kind, names in _SAFE_METHODS.items() if isinstance(obj, kind)), None)
        return allowed is None or attr in allowed

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, dict) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def wrap_str_format(self, value: Any) -> Any:
        wrapper = super().wrap_str_format(value)
        if wrapper is None or value.__name__ != "format":
            return None  # ``format_map`` is then refused by ``is_safe_attribute``
        fmt = value.__self__

        @functools.wraps(wrapper)
        def guarded(*args: Any, **kwargs: Any) -> str:
            budget = current_budget()
            budget.tick()
            check_format_string(budget, fmt)
            measure(budget, (args, kwargs))
            return charge(budget, wrapper(*args, **kwargs))

        return guarded

    def call(self, context: Any, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        # Positional-only (as Jinja's own double-underscore names): a template's call may pass
        # keyword arguments named context, obj or self.
        budget = current_budget()
        budget.tick()
        owner = getattr(obj, "__self__", None)
        if isinstance(owner, str) and isinstance(obj, types.BuiltinMethodType):
            args = check_str_method(budget, owner, obj.__name__, args, kwargs)
        return charge(budget, super().call(context, obj, *args, **kwargs))

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        budget = current_budget()
        budget.tick()
        if operator == "+":
            if isinstance(left, str) and isinstance(right, str):
                budget.check_size(len(left) + len(right))
            elif isinstance(left, (list, tuple)) and isinstance(right, (list, tuple)):
                budget.check_items(len(left) + len(right))
        elif operator == "*":
            sequence, count = (left, right) if isinstance(right, int) else (right, left)
            if isinstance(sequence, str) and isinstance(count, int):
                budget.check_size(len(sequence) * count)
            elif isinstance(sequence, (list, tuple)) and isinstance(count, int):
                budget.check_items(len(sequence) * count)
            elif (isinstance(left, int) and isinstance(right, int)
                    and left.bit_length() + right.bit_length() > MAX_INT_BITS):
                raise RenderLimitExceeded(f"An integer product beyond {MAX_INT_BITS} bits is not allowed.")
        elif operator == "**":
            if (isinstance(left, int) and isinstance(right, int) and abs(left) > 1
                    and (right > MAX_INT_BITS or right * math.log2(abs(left)) > MAX_INT_BITS)):
                raise RenderLimitExceeded(f"A power beyond {MAX_INT_BITS} bits is not allowed.")
        elif operator == "%" and isinstance(left, str):
            check_printf(budget, left, right)
        return charge(budget, super().call_binop(context, operator, left, right))

    def guarded_concat(self, values: tuple) -> str:
        """``a ~ b``: every operand is measured before it is stringified."""
        budget = current_budget()
        budget.tick()
        budget.check_size(sum(measure(budget, value) for value in values))
        return charge(budget, "".join(map(str, values)))

    def concat(self, parts: Any) -> str:  # replaces ``"".join`` for captured blocks and macros
        parts = list(parts)
        budget = current_budget()
        budget.tick()
        budget.check_size(sum(map(len, parts)))
        return charge(budget, "".join(parts))

    def guarded_iter(self, iterable: Any) -> Iterator[Any]:
        """Every ``for`` loop iterates through this, so a loop that prints nothing still stops."""
        budget = current_budget()
        for item in iterable:
            budget.tick()
            yield item
