"""Server-rendered SVG charts for the admin dashboard: pure functions from numbers to markup.

Why SVG from the server and not a JavaScript chart library: the admin must work without any CDN
(the issue), the charts must be testable as bytes (``<polyline>``, ``data-value``), and the page
re-fetches a fragment of ready-made markup to refresh itself, so no chart code runs in the browser.

Every function returns a ``SafeString`` (all labels are escaped here) holding one ``<svg>``
element with ``role="img"``, a ``<title>`` and ``<desc>`` for screen readers, and a
``data-chart`` attribute naming the chart kind. Values may be ``None`` (no data in a bucket): a
line is then broken there instead of dropping to zero.
"""
import math
from collections.abc import Sequence
from dataclasses import dataclass

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

# Colour-blind-safe palette (Okabe & Ito), in the order series are usually given:
# total / succeeded / failed / forecast or p50 / p95 / p99.
PALETTE = ("#0072B2", "#009E73", "#D55E00", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
GRID = "#d9d9d9"
TEXT = "#333333"
FONT = "font-family=\"-apple-system,Segoe UI,Roboto,Helvetica,Arial,sans-serif\" font-size=\"11\""


@dataclass(frozen=True)
class Series:
    """One line: ``values`` are aligned with the chart's ``labels``; ``dashed`` for forecasts."""

    name: str
    values: Sequence[float | int | None]
    color: str | None = None
    dashed: bool = False


def format_number(value: float | None, unit: str = "") -> str:
    """``1234`` → ``"1,234"``, ``99.5`` → ``"99.5"``, ``None`` → ``"–"``; ``unit`` is appended
    (``"%"`` directly, anything else after a space)."""
    if value is None:
        return "–"
    if isinstance(value, float) and not value.is_integer():
        text = f"{value:,.1f}" if abs(value) < 1000 else f"{value:,.0f}"
    else:
        text = f"{int(value):,}"
    if not unit:
        return text
    return f"{text}{unit}" if unit == "%" else f"{text} {unit}"


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 × 10^k that is ≥ ``value`` (a readable axis maximum);
    1 for zero or negative values."""
    if value <= 0:
        return 1
    exponent = math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        candidate = step * 10 ** exponent
        if candidate >= value:
            return candidate
    return 10 ** (exponent + 1)


def _svg_open(kind: str, title: str, desc: str, width: int, height: int) -> list[str]:
    return [
        (f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" data-chart="{kind}" role="img" '
         f'viewBox="0 0 {width} {height}" width="100%" preserveAspectRatio="xMidYMid meet" {FONT}>'),
        f"<title>{escape(title)}</title>",
        f"<desc>{escape(desc)}</desc>",
    ]


def _empty(kind: str, title: str, width: int, height: int, message: str) -> SafeString:
    parts = _svg_open(kind, title, message, width, height)
    parts.append(f'<text x="{width / 2:.0f}" y="{height / 2:.0f}" text-anchor="middle" fill="#777" '
                 f'class="chart-empty">{escape(message)}</text></svg>')
    return mark_safe("".join(parts))


def line_chart(
    *,
    title: str,
    labels: Sequence[str],
    series: Sequence[Series],
    unit: str = "",
    y_max: float | None = None,
    width: int = 640,
    height: int = 240,
    max_x_labels: int = 6,
) -> SafeString:
    """A multi-line chart over time buckets.

    ``labels`` are the x-axis labels (one per bucket, e.g. ``"14:05"``); each ``Series`` has one
    value per label (``None`` breaks the line). ``y_max`` fixes the axis top (100 for rates),
    otherwise it is the next readable number above the largest value. Each point is a
    ``<circle data-series=… data-value=…>`` with a tooltip ``<title>``; each line a
    ``<polyline data-series=…>``. Returns an empty-state SVG when there are no labels or no values.
    """
    present = [v for s in series for v in s.values if v is not None]
    if not labels or not present:
        return _empty("line", title, width, height, "No data in this period")
    left, right, top, bottom = 52, 12, 12, 46
    plot_w, plot_h = width - left - right, height - top - bottom
    top_value = y_max if y_max is not None else nice_ceiling(max(present))
    count = len(labels)

    def x_of(index: int) -> float:
        return left + (plot_w * index / (count - 1) if count > 1 else plot_w / 2)

    def y_of(value: float) -> float:
        return top + plot_h - plot_h * min(max(value, 0), top_value) / top_value

    desc = "; ".join(f"{s.name}: latest {format_number(_last(s.values), unit)}" for s in series)
    parts = _svg_open("line", title, desc, width, height)
    for tick in range(5):
        value = top_value * tick / 4
        y = y_of(value)
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" fill="{TEXT}">'
                     f"{escape(format_number(value, unit if unit == '%' else ''))}</text>")
    step = max(1, math.ceil(count / max_x_labels))
    for index in range(0, count, step):
        parts.append(f'<text x="{x_of(index):.1f}" y="{top + plot_h + 16}" text-anchor="middle" fill="{TEXT}" '
                     f'class="x-label">{escape(labels[index])}</text>')
    for number, line in enumerate(series):
        color = line.color or PALETTE[number % len(PALETTE)]
        name = escape(line.name)
        dash = ' stroke-dasharray="5 4"' if line.dashed else ""
        for run in _runs(line.values):
            points = " ".join(f"{x_of(i):.1f},{y_of(v):.1f}" for i, v in run)
            parts.append(f'<polyline data-series="{name}" fill="none" stroke="{color}" stroke-width="2"{dash} '
                         f'points="{points}"/>')
        radius = 2.5 if count <= 60 else 1.5
        for index, value in enumerate(line.values):
            if value is None:
                continue
            parts.append(
                f'<circle data-series="{name}" data-value="{value}" cx="{x_of(index):.1f}" cy="{y_of(value):.1f}" '
                f'r="{radius}" fill="{color}"><title>{escape(labels[index])} · {name}: '
                f"{escape(format_number(value, unit))}</title></circle>"
            )
    parts.extend(_legend(series, x=left, y=height - 10))
    parts.append("</svg>")
    return mark_safe("".join(parts))


def bar_chart(
    *,
    title: str,
    items: Sequence[tuple[str, float | int | None]],
    unit: str = "",
    notes: Sequence[str] | None = None,
    color: str = PALETTE[2],
    width: int = 640,
    bar_height: int = 22,
    label_width: int = 220,
    empty_message: str = "Nothing to show",
) -> SafeString:
    """Horizontal bars, one per ``(label, value)`` in the given order, each a
    ``<rect data-label=… data-value=…>`` with the value (and ``notes[i]``, if given) written at
    its end. Long labels are cut to 32 characters (the full label is in the tooltip)."""
    if not items:
        return _empty("bar", title, width, 2 * bar_height + 20, empty_message)
    gap = 6
    height = len(items) * (bar_height + gap) + gap
    largest = max((value or 0) for _, value in items)
    top_value = largest if largest > 0 else 1
    plot_w = width - label_width - 140
    desc = "; ".join(f"{label}: {format_number(value, unit)}" for label, value in items)
    parts = _svg_open("bar", title, desc, width, height)
    for index, (label, value) in enumerate(items):
        y = gap + index * (bar_height + gap)
        shown = label if len(label) <= 32 else label[:31] + "…"
        bar_w = max(plot_w * (value or 0) / top_value, 1 if value else 0)
        note = f" · {notes[index]}" if notes and index < len(notes) and notes[index] else ""
        parts.append(f'<text x="{label_width - 8}" y="{y + bar_height * 0.7:.1f}" text-anchor="end" fill="{TEXT}">'
                     f"<title>{escape(label)}</title>{escape(shown)}</text>")
        parts.append(f'<rect data-label="{escape(label)}" data-value="{value if value is not None else ""}" '
                     f'x="{label_width}" y="{y}" width="{bar_w:.1f}" height="{bar_height}" rx="3" fill="{color}">'
                     f"<title>{escape(label)}: {escape(format_number(value, unit))}{escape(note)}</title></rect>")
        parts.append(f'<text x="{label_width + bar_w + 6:.1f}" y="{y + bar_height * 0.7:.1f}" fill="{TEXT}">'
                     f"{escape(format_number(value, unit))}{escape(note)}</text>")
    parts.append("</svg>")
    return mark_safe("".join(parts))


def _last(values: Sequence[float | int | None]) -> float | int | None:
    return next((v for v in reversed(values) if v is not None), None)


def _runs(values: Sequence[float | int | None]) -> list[list[tuple[int, float]]]:
    """Consecutive non-None stretches as ``[(index, value), …]`` lists (a line breaks at gaps)."""
    runs: list[list[tuple[int, float]]] = []
    current: list[tuple[int, float]] = []
    for index, value in enumerate(values):
        if value is None:
            if current:
                runs.append(current)
            current = []
        else:
            current.append((index, value))
    if current:
        runs.append(current)
    return runs


def _legend(series: Sequence[Series], *, x: int, y: int) -> list[str]:
    parts = []
    for number, line in enumerate(series):
        color = line.color or PALETTE[number % len(PALETTE)]
        dash = ' stroke-dasharray="5 4"' if line.dashed else ""
        parts.append(f'<line x1="{x}" x2="{x + 18}" y1="{y - 4}" y2="{y - 4}" '
                     f'stroke="{color}" stroke-width="2"{dash}/>')
        parts.append(f'<text x="{x + 22}" y="{y}" fill="{TEXT}" class="legend">{escape(line.name)}</text>')
        x += 34 + 7 * len(line.name)
    return parts
