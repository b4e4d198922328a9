"""Curves drawn in the terminal with braille dots (2×4 dots per cell), no plotting library.

A braille cell packs 8 dots, so an 80-column terminal draws a curve 160 dots wide:
enough to see a loss curve, a divergence or the gap between two runs. Several
series share one pair of axes (diff overlay) and each keeps its own colour; where
two series cross in one cell, the one drawn last wins the colour.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from rich.console import RenderableType
from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from labbook.render.axis import fmt_axis, fmt_step
from labbook.textsafe import printable

#: Colours that read on dark and light backgrounds and exist in the 256-colour palette.
PALETTE = ("dodger_blue2", "dark_orange", "green3", "magenta", "gold3", "cyan")

# Dot bit for (x % 2, y % 4) within a braille cell (Unicode braille layout).
_DOTS = ((0x01, 0x02, 0x04, 0x40), (0x08, 0x10, 0x20, 0x80))


@dataclass
class Series:
    """One named curve: ``points`` are (step, value). Non-finite values (and, on a log
    scale, values ≤ 0) are not drawn as a line but marked where they occur."""

    label: str
    points: Sequence[tuple[float, float]]


#: How each kind of value off the scale is marked on the curve and named in the legend.
MARKS = {"inf": "▲", "-inf": "▼", "NaN": "×", "≤0": "▼"}
MARK_STYLE = "bold red"
#: At most this many stretches of off-scale values are named in one legend line.
MAX_BREAKS = 3


@dataclass
class Break:
    """A stretch of consecutive points that are not on the scale, all of one kind."""

    kind: str  # a key of MARKS
    first: float  # step
    last: float  # step
    #: the stretch runs to the series' last point
    to_end: bool

    def describe(self) -> str:
        if self.to_end and self.first != self.last:
            return f"{self.kind} from {fmt_step(self.first)}"
        if self.first == self.last:
            return f"{self.kind} at {fmt_step(self.first)}"
        return f"{self.kind} at {fmt_step(self.first)}–{fmt_step(self.last)}"


def _kind(y: float, log: bool) -> str | None:
    """Why ``y`` is off the scale (a key of MARKS), or None when it is on it."""
    if math.isnan(y):
        return "NaN"
    if math.isinf(y):
        return "inf" if y > 0 else "-inf"
    if log and y <= 0:
        return "≤0"
    return None


def breaks(points: Sequence[tuple[float, float]], log: bool = False) -> list[Break]:
    """The stretches of ``points`` off the scale: non-finite values, and values ≤ 0
    on a log scale (points with a non-finite step are left out)."""
    pts = [(x, y) for x, y in points if math.isfinite(x)]
    out: list[Break] = []
    for i, (x, y) in enumerate(pts):
        kind = _kind(y, log)
        if kind is None:
            continue
        last = out[-1] if out else None
        if last is not None and last.kind == kind and _kind(pts[i - 1][1], log) == kind:
            last.last = x
        else:
            out.append(Break(kind, x, x, False))
        out[-1].to_end = i == len(pts) - 1
    return out


def describe_breaks(found: Sequence[Break]) -> str:
    """``inf at 19, NaN from 21`` (the first MAX_BREAKS stretches, then how many more)."""
    text = ", ".join(b.describe() for b in found[:MAX_BREAKS])
    if len(found) > MAX_BREAKS:
        text += f", … {len(found) - MAX_BREAKS} more"
    return text


def render_plot(series: Sequence[Series], width: int, height: int, *, log: bool = False) -> Text:
    """Series → a Text of ``height`` lines, ``width`` cells wide, with axes and a legend.

    The x axis runs to the last step recorded, on the scale or not; values off the
    scale (inf, NaN, ≤ 0 on a log scale) are left out of the y range, break the line,
    and are marked where they start (▲ inf at the top, ▼ -inf at the bottom, × NaN
    where the curve was) and named in the legend (``× NaN from 21``)."""
    text = Text(no_wrap=True, overflow="crop")
    #: per series: its points as (step, y on the scale or None, why not on it)
    drawn: list[tuple[Series, list[tuple[float, float | None, str | None]], list[Break]]] = []
    for s in series:
        pts: list[tuple[float, float | None, str | None]] = []
        for x, y in s.points:
            if not math.isfinite(x):
                continue
            kind = _kind(y, log)
            pts.append((x, None if kind else (math.log10(y) if log else y), kind))
        if pts:
            drawn.append((s, pts, breaks(s.points, log)))
    ys = [y for _, pts, _ in drawn for _, y, _ in pts if y is not None]
    if not ys:
        msg = "no finite values to draw" + (" (log scale hides values ≤ 0)" if log else "")
        text.append(msg, style="dim")
        for s, _pts, found in drawn:
            if found:
                text.append("\n")
                text.append(f"{printable(s.label)}: {describe_breaks(found)}", style=MARK_STYLE)
        return text
    xs = [x for _, pts, _ in drawn for x, _, _ in pts]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if x1 == x0:
        x1 = x0 + 1
    if y1 == y0:
        y0, y1 = y0 - 0.5, y1 + 0.5
    with_breaks = any(found for _, _, found in drawn)
    legend_lines = len(drawn) if with_breaks else 1
    plot_h = max(2, height - 1 - legend_lines)  # one line of x labels, then the legend

    def label(v: float) -> str:
        return fmt_axis(10**v if log else v)

    labels = {0: label(y1), plot_h - 1: label(y0), plot_h // 2: label((y0 + y1) / 2)}
    axis_w = max(len(t) for t in labels.values()) + 2
    plot_w = max(4, width - axis_w)
    dots_w, dots_h = plot_w * 2, plot_h * 4
    # cell -> (bits, colour index of the last series drawn there)
    cells: dict[tuple[int, int], list[int]] = {}
    marks: dict[tuple[int, int], str] = {}

    def px_of(x: float) -> int:
        return round((x - x0) / (x1 - x0) * (dots_w - 1))

    def py_of(y: float) -> int:
        return round((y1 - y) / (y1 - y0) * (dots_h - 1))

    def mark_row(
        kind: str, level: int | None, rest: list[tuple[float, float | None, str | None]]
    ) -> int:
        """inf at the top, -inf and ≤ 0 at the bottom, NaN where the curve was (or goes on)."""
        if kind == "inf":
            return 0
        if kind in ("-inf", "≤0"):
            return plot_h - 1
        if level is not None:
            return level
        after = next((v for _, v, _ in rest if v is not None), None)
        return py_of(after) // 4 if after is not None else plot_h // 2

    def dot(px: int, py: int, colour: int) -> None:
        if 0 <= px < dots_w and 0 <= py < dots_h:
            key = (px // 2, py // 4)
            cell = cells.setdefault(key, [0, colour])
            cell[0] |= _DOTS[px % 2][py % 4]
            cell[1] = colour

    for index, (_s, pts, _found) in enumerate(drawn):
        colour = index % len(PALETTE)
        prev: tuple[int, int] | None = None
        level: int | None = None  # the row of the last value on the scale
        for i, (x, scaled, kind) in enumerate(pts):
            if scaled is None:
                if kind is not None and (i == 0 or pts[i - 1][2] != kind):
                    marks[(px_of(x) // 2, mark_row(kind, level, pts[i:]))] = MARKS[kind]
                prev = None  # the line breaks here
                continue
            px, py = px_of(x), py_of(scaled)
            level = py // 4
            if prev is None:
                dot(px, py, colour)
            else:
                # a straight segment: enough steps that no dot column is skipped
                steps = max(abs(px - prev[0]), abs(py - prev[1]), 1)
                for k in range(1, steps + 1):
                    dot(
                        prev[0] + round((px - prev[0]) * k / steps),
                        prev[1] + round((py - prev[1]) * k / steps),
                        colour,
                    )
            prev = (px, py)

    for row in range(plot_h):
        text.append(labels.get(row, "").rjust(axis_w - 2) + " ┤", style="dim")
        for col in range(plot_w):
            mark = marks.get((col, row))
            cell = cells.get((col, row))
            if mark is not None:
                text.append(mark, style=MARK_STYLE)
            elif cell is None:
                text.append(" ")
            else:
                text.append(chr(0x2800 + cell[0]), style=PALETTE[cell[1]])
        text.append("\n")
    left, right = fmt_step(x0), fmt_step(max(xs))
    gap = max(1, plot_w - len(left) - len(right))
    text.append(" " * axis_w + left + " " * gap + right, style="dim")
    for index, (s, _pts, found) in enumerate(drawn):
        if index == 0 or with_breaks:
            text.append("\n")
        text.append("━━ ", style=PALETTE[index % len(PALETTE)])
        text.append(printable(s.label) + "  ")  # a metric tag or run id: no raw controls
        if found:
            for k, b in enumerate(found[:MAX_BREAKS]):
                text.append(", " if k else "", style=MARK_STYLE)
                text.append(f"{MARKS[b.kind]} {b.describe()}", style=MARK_STYLE)
            if len(found) > MAX_BREAKS:
                text.append(f", … {len(found) - MAX_BREAKS} more", style=MARK_STYLE)
            text.append("  ")
    if log:
        text.append("(log scale)", style="dim")
    return text


class CurvePlot(Widget):
    """A widget that draws :class:`Series` to fit its size; ``log_scale`` switches the y scale."""

    DEFAULT_CSS = """
    CurvePlot { width: 1fr; height: 1fr; min-height: 6; }
    """

    log_scale: reactive[bool] = reactive(False)

    def __init__(
        self, series: Sequence[Series] = (), *, id: str | None = None, classes: str | None = None
    ) -> None:
        super().__init__(id=id, classes=classes)
        self._series: list[Series] = list(series)

    @property
    def series(self) -> list[Series]:
        return self._series

    def set_series(self, series: Sequence[Series]) -> None:
        self._series = list(series)
        self.refresh()

    def render(self) -> RenderableType:
        return render_plot(self._series, self.size.width, self.size.height, log=self.log_scale)
