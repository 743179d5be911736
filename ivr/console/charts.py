"""Charts drawn on the server as SVG markup, put in the page as it is (no JavaScript library).

The console's Content-Security-Policy allows no inline ``style``: colours come from classes
(``svg.chart .bar``... in console.css), sizes and positions from SVG attributes. Every bar is a
``<rect class="bar ...">`` with ``data-label`` and ``data-value`` (what a test or a script
reads) and a ``<title>`` (the tooltip). Every label is escaped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH = 640
ROW = 22
"""Height of one horizontal bar's row."""
LABEL = 150
"""Width of the labels' column of horizontal bars."""
VALUE = 70
"""Width of the values' column after horizontal bars."""
PLOT_HEIGHT = 160
"""Height of the plot of vertical bars (the labels go below it)."""


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    text: str = ""
    """The value as shown (by default the number)."""
    kind: str = ""
    """A class added to the bar: 'ok', 'warn', 'bad', 'none'."""
    part: float = 0.0
    """A share of the bar drawn darker (the funnel's callers who left at this node)."""
    part_text: str = ""


def _num(x: float) -> str:
    return f"{x:.1f}".rstrip("0").rstrip(".")


def _data(x: float) -> str:
    """A value for ``data-value``: exact enough to compare."""
    return f"{x:.6g}"


def _shown(bar: Bar) -> str:
    return bar.text or _num(bar.value)


def _svg(kind: str, height: float, title: str, body: list[str]) -> Markup:
    return Markup(
        f'<svg class="chart {escape(kind)}" xmlns="http://www.w3.org/2000/svg" role="img" '
        f'viewBox="0 0 {WIDTH} {_num(height)}" width="{WIDTH}" height="{_num(height)}" '
        f'preserveAspectRatio="xMinYMin meet" aria-label="{escape(title)}">'
        f"<title>{escape(title)}</title>{''.join(body)}</svg>")


def hbars(bars: Sequence[Bar], title: str, kind: str = "hbars",
          maximum: float | None = None) -> Markup:
    """One horizontal bar per item, its label on the left and its value on the right. With
    ``part`` set, that share of the bar is drawn as a second, darker ``rect class="part"``."""
    top = maximum if maximum is not None else max((b.value for b in bars), default=0.0)
    span = WIDTH - LABEL - VALUE
    height = max(1, len(bars)) * ROW + 4
    body: list[str] = []
    for i, bar in enumerate(bars):
        y = 2 + i * ROW
        w = span * bar.value / top if top > 0 else 0.0
        tip = f"{bar.label}: {_shown(bar)}"
        body.append(
            f'<text x="{LABEL - 6}" y="{y + ROW * 0.68:.1f}" text-anchor="end">'
            f"{escape(bar.label)}</text>"
            f'<rect class="bar {escape(bar.kind)}" x="{LABEL}" y="{y + 3}" '
            f'width="{w:.1f}" height="{ROW - 6}" data-label="{escape(bar.label)}" '
            f'data-value="{_data(bar.value)}"><title>{escape(tip)}</title></rect>')
        if bar.part > 0 and top > 0:
            pw = span * min(bar.part, bar.value) / top
            body.append(
                f'<rect class="part" x="{LABEL + w - pw:.1f}" y="{y + 3}" width="{pw:.1f}" '
                f'height="{ROW - 6}" data-label="{escape(bar.label)}" '
                f'data-value="{_data(bar.part)}"><title>{escape(bar.part_text or tip)}'
                f"</title></rect>")
        body.append(f'<text x="{LABEL + w + 6:.1f}" y="{y + ROW * 0.68:.1f}">'
                    f"{escape(_shown(bar))}</text>")
    return _svg(kind, height, title, body)


def columns(bars: Sequence[Bar], title: str, kind: str = "columns", maximum: float = 1.0,
            target: float | None = None, target_text: str = "") -> Markup:
    """One vertical bar per item (hours of the day...), from 0 to *maximum*, with a dashed
    ``line class="target"`` at *target*. A bar whose value is unknown has ``kind`` 'none' and
    no height."""
    n = max(1, len(bars))
    left, bottom = 36, 34
    step = (WIDTH - left - 4) / n
    height = PLOT_HEIGHT + bottom
    body: list[str] = []
    for tick in (0.0, 0.5, 1.0):  # the scale, as the maximum's share
        y = PLOT_HEIGHT * (1 - tick) + 4
        body.append(f'<line class="grid" x1="{left}" x2="{WIDTH - 4}" y1="{y:.1f}" '
                    f'y2="{y:.1f}"/><text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">'
                    f"{escape(_tick(tick * maximum, maximum))}</text>")
    for i, bar in enumerate(bars):
        x = left + i * step
        h = PLOT_HEIGHT * min(bar.value, maximum) / maximum if maximum > 0 else 0.0
        tip = f"{bar.label}: {_shown(bar)}"
        body.append(
            f'<rect class="bar {escape(bar.kind)}" x="{x + step * 0.12:.1f}" '
            f'y="{PLOT_HEIGHT - h + 4:.1f}" width="{step * 0.76:.1f}" height="{h:.1f}" '
            f'data-label="{escape(bar.label)}" data-value="{_data(bar.value)}">'
            f"<title>{escape(tip)}</title></rect>")
        if n <= 24 or i % max(1, n // 12) == 0:
            body.append(f'<text x="{x + step / 2:.1f}" y="{PLOT_HEIGHT + 20}" '
                        f'text-anchor="middle">{escape(bar.label)}</text>')
    if target is not None and maximum > 0:
        y = PLOT_HEIGHT * (1 - min(target, maximum) / maximum) + 4
        body.append(f'<line class="target" x1="{left}" x2="{WIDTH - 4}" y1="{y:.1f}" '
                    f'y2="{y:.1f}" data-value="{_data(target)}"><title>{escape(target_text)}'
                    f"</title></line>")
    return _svg(kind, height, title, body)


def _tick(value: float, maximum: float) -> str:
    return f"{value:.0%}" if maximum == 1.0 else _num(value)
