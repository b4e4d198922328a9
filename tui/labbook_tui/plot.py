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

from labbook.textsafe import printable

#: Colours that read on dark and light backgrounds and exist in the 256-colour palette.
PALETTE = ("dodger_blue2", "dark_orange", "green3", "magenta", "gold3", "cyan")

# Dot bit for (x % 2, y % 4) within a braille cell (Unicode braille layout).
_DOTS = ((0x01, 0x02, 0x04, 0x40), (0x08, 0x10, 0x20, 0x80))
_AXIS_W = 9


@dataclass
class Series:
    """One named curve: ``points`` are (step, value); non-finite values are skipped."""

    label: str
    points: Sequence[tuple[float, float]]


def _finite(points: Sequence[tuple[float, float]], log: bool) -> list[tuple[float, float]]:
    out = []
    for x, y in points:
        if not (math.isfinite(x) and math.isfinite(y)):
            continue
        if log:
            if y <= 0:
                continue
            y = math.log10(y)
        out.append((x, y))
    return out


def _fmt(v: float, log: bool) -> str:
    if log:
        v = 10**v
    return f"{v:.3g}"


def render_plot(series: Sequence[Series], width: int, height: int, *, log: bool = False) -> Text:
    """Series → a Text of ``height`` lines, ``width`` cells wide, with axes and a legend."""
    text = Text(no_wrap=True, overflow="crop")
    data = [(s, _finite(s.points, log)) for s in series]
    usable = [(s, pts) for s, pts in data if pts]
    plot_w = max(4, width - _AXIS_W)
    plot_h = max(2, height - 2)  # one line of x labels, one of legend
    if not usable:
        msg = "no finite values to draw" + (" (log scale hides values ≤ 0)" if log else "")
        text.append(msg, style="dim")
        return text
    xs = [x for _, pts in usable for x, _ in pts]
    ys = [y for _, pts in usable for _, y in pts]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if x1 == x0:
        x1 = x0 + 1
    if y1 == y0:
        y0, y1 = y0 - 0.5, y1 + 0.5
    dots_w, dots_h = plot_w * 2, plot_h * 4
    # cell -> (bits, colour index of the last series drawn there)
    cells: dict[tuple[int, int], list[int]] = {}

    def dot(px: int, py: int, colour: int) -> None:
        if 0 <= px < dots_w and 0 <= py < dots_h:
            key = (px // 2, py // 4)
            cell = cells.setdefault(key, [0, colour])
            cell[0] |= _DOTS[px % 2][py % 4]
            cell[1] = colour

    for index, (_s, pts) in enumerate(usable):
        colour = index % len(PALETTE)
        prev: tuple[int, int] | None = None
        for x, y in pts:
            px = round((x - x0) / (x1 - x0) * (dots_w - 1))
            py = round((y1 - y) / (y1 - y0) * (dots_h - 1))
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
        if row == 0:
            label = _fmt(y1, log)
        elif row == plot_h - 1:
            label = _fmt(y0, log)
        elif row == plot_h // 2:
            label = _fmt((y0 + y1) / 2, log)
        else:
            label = ""
        text.append(label.rjust(_AXIS_W - 2)[: _AXIS_W - 2] + " ┤", style="dim")
        for col in range(plot_w):
            cell = cells.get((col, row))
            if cell is None:
                text.append(" ")
            else:
                text.append(chr(0x2800 + cell[0]), style=PALETTE[cell[1]])
        text.append("\n")
    left, right = f"{x0:g}", f"{x1:g}"
    gap = max(1, plot_w - len(left) - len(right))
    text.append(" " * _AXIS_W + left + " " * gap + right + "\n", style="dim")
    for index, (s, _pts) in enumerate(usable):
        text.append("━━ ", style=PALETTE[index % len(PALETTE)])
        text.append(printable(s.label) + "  ")  # a metric tag or run id: no raw controls
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
