"""The budget one render may spend (time, output bytes, intermediate values) and the checks
that keep a template from building anything bigger than it may print.

Jinja's sandbox stops attribute escapes but not resource exhaustion ("the caller has to ensure
that all exceptions are caught", Jinja docs, "Sandbox"; ``'a'|center(10**9)`` allocates a
gigabyte), so every amplifying operation asks the budget *before* it builds its result.
"""
import contextlib
import contextvars
import re
import string
import time
from collections.abc import ItemsView, Iterator, KeysView, ValuesView
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from jinja2.runtime import Namespace
from jinja2.sandbox import MAX_RANGE

DEFAULT_RENDER_TIMEOUT_MS = 1000
DEFAULT_OUTPUT_LIMIT_BYTES = 262_144
# Intermediate values may add up to this many times the output limit (memory, not output).
WORK_LIMIT_FACTOR = 16
# Integers beyond this many bits are refused (``10**10**9`` would run for hours).
MAX_INT_BITS = 8192

WIDTH_METHODS = frozenset({"center", "ljust", "rjust", "zfill"})
PRINTF_FIELD = re.compile(r"%(?:\([^)]*\))?[#0 +\-]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?[a-zA-Z%]")


class RenderLimitExceeded(Exception):
    """A render went over its time, size or work budget."""


class TemplateUsageError(Exception):
    """A template used a helper or produced a value in a way the renderer refuses; the message is
    meant for the template's author as is."""


@dataclass
class Budget:
    """What one render may still spend. ``output_limit`` is in bytes, ``work_left`` counts the
    characters (or list items) of intermediate values built so far."""

    timeout_ms: int
    deadline: float
    output_limit: int
    output_left: int
    work_left: int

    @classmethod
    def from_settings(cls) -> "Budget":
        timeout_ms = int(_setting("WEBHOOK_TEMPLATE_RENDER_TIMEOUT_MS", DEFAULT_RENDER_TIMEOUT_MS))
        limit = int(_setting("WEBHOOK_TEMPLATE_OUTPUT_LIMIT_BYTES", DEFAULT_OUTPUT_LIMIT_BYTES))
        return cls(timeout_ms=timeout_ms, deadline=time.monotonic() + timeout_ms / 1000, output_limit=limit,
                   output_left=limit, work_left=limit * WORK_LIMIT_FACTOR)

    def tick(self) -> None:
        if time.monotonic() > self.deadline:
            raise RenderLimitExceeded(
                f"Rendering took longer than {self.timeout_ms} ms (WEBHOOK_TEMPLATE_RENDER_TIMEOUT_MS)."
            )

    def check_size(self, size: int) -> None:
        """Refuse a value of ``size`` characters before it is built."""
        if size > self.output_limit:
            raise RenderLimitExceeded(
                f"A value of about {size} characters exceeds the {self.output_limit}-byte output limit "
                "(WEBHOOK_TEMPLATE_OUTPUT_LIMIT_BYTES)."
            )

    def check_items(self, count: int) -> None:
        if count > MAX_RANGE:
            raise RenderLimitExceeded(f"A sequence of {count} items exceeds the {MAX_RANGE}-item limit.")

    def spend(self, size: int) -> None:
        """Account for an intermediate value of ``size`` characters (or items) just built."""
        self.work_left -= size
        if self.work_left < 0:
            raise RenderLimitExceeded(
                f"The template builds more than {self.output_limit * WORK_LIMIT_FACTOR} characters of "
                "intermediate values."
            )

    def emit(self, size: int) -> None:
        """Account for ``size`` bytes of final output."""
        self.tick()
        self.output_left -= size
        if self.output_left < 0:
            raise RenderLimitExceeded(
                f"The output exceeds the {self.output_limit}-byte limit (WEBHOOK_TEMPLATE_OUTPUT_LIMIT_BYTES)."
            )


def _setting(name: str, default: int) -> int:
    return getattr(settings, name, default) if settings.configured else default


_BUDGET: contextvars.ContextVar[Budget | None] = contextvars.ContextVar("template_render_budget", default=None)


@contextlib.contextmanager
def budgeted() -> Iterator[Budget]:
    """Run one render (all the leaves of one template) under a fresh budget from settings."""
    budget = Budget.from_settings()
    token = _BUDGET.set(budget)
    try:
        yield budget
    finally:
        _BUDGET.reset(token)


def current_budget() -> Budget:
    # Outside ``budgeted()`` (Jinja folds constant filter calls at compile time) each guarded
    # operation gets its own fresh budget, so the per-value limits still apply.
    return _BUDGET.get() or Budget.from_settings()


def approximate_size(value: Any, limit: int) -> int:
    """Roughly ``len(str(value))`` without building it; stops counting once past ``limit``.

    Shared references count every time they appear, as they would when printed."""
    total = 0
    stack = [value]
    while stack and total <= limit:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item)
        elif item is None or isinstance(item, (bool, float)):
            total += 24
        elif isinstance(item, int):
            total += item.bit_length() // 3 + 2
        elif isinstance(item, dict):
            total += 2 + 4 * len(item)
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset, KeysView, ValuesView, ItemsView)):
            total += 2 + 2 * len(item)
            stack.extend(item)
        elif isinstance(item, Namespace):
            stack.append(item._Namespace__attrs)
        else:
            total += 32
    return total


def measure(budget: Budget, value: Any) -> int:
    size = len(value) if isinstance(value, str) else approximate_size(value, budget.output_limit)
    budget.check_size(size)
    return size


def charge(budget: Budget, result: Any) -> Any:
    if isinstance(result, str):
        budget.check_size(len(result))
        budget.spend(len(result))
    elif isinstance(result, (list, tuple, dict)):
        budget.spend(len(result))
    return result


def check_printf(budget: Budget, fmt: str, args: Any) -> None:
    for match in PRINTF_FIELD.finditer(fmt):
        for number in match.groups():
            if number == "*":
                raise RenderLimitExceeded("'*' widths are not allowed in % formatting.")
            if number:
                budget.check_size(int(number))
    measure(budget, args)


def check_format_string(budget: Budget, fmt: str) -> None:
    for _literal, field, spec, _conversion in string.Formatter().parse(fmt):
        if field is not None and spec:
            if "{" in spec:
                raise RenderLimitExceeded("Nested replacement fields in a format spec are not allowed.")
            for number in re.findall(r"\d+", spec):
                budget.check_size(int(number))


def replaced_size(text: str, old: Any, new: Any, count: Any = -1) -> int:
    if not isinstance(old, str) or not isinstance(new, str):
        return len(text)
    hits = text.count(old) if old else len(text) + 1
    if isinstance(count, int) and 0 <= count < hits:
        hits = count
    return len(text) + hits * (len(new) - len(old))


def check_str_method(budget: Budget, text: str, name: str, args: tuple, kwargs: dict) -> tuple:
    if name in WIDTH_METHODS:
        width = args[0] if args else kwargs.get("width", 0)
        if isinstance(width, int):
            budget.check_size(width)
    elif name == "replace":
        budget.check_size(replaced_size(text, *args[:3]))
    elif name == "join" and args:
        items = list(args[0])
        budget.check_items(len(items))
        budget.check_size(approximate_size(items, budget.output_limit) + len(text) * len(items))
        args = (items, *args[1:])
    return args
