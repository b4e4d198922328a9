"""Two runs side by side: the diff engine's sections and both runs' curves overlaid."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, ClassVar

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static

from labbook_tui.fmt import fmt_value, metric_order, printable, safe, safe_lines
from labbook_tui.plot import CurvePlot, Series
from labbook_tui.run_screen import curves

if TYPE_CHECKING:
    from labbook_tui.app import LabbookApp

#: Sections in the order the diff engine documents them (issue 5); others follow.
SECTION_ORDER = ("outcome", "config", "seed", "code", "data", "env", "command", "metrics", "speed")


def _value(v: Any) -> str:
    """A value on one line, control characters escaped (never markup: cells are ``Text``)."""
    if isinstance(v, (dict, list)):
        return printable(json.dumps(v, ensure_ascii=False, default=str))
    return printable(fmt_value(v))


def render_section(name: str, body: Any) -> RenderableType:
    """One section of ``diff_runs``'s result, whatever its exact shape (it may grow)."""
    title = safe(name, "bold underline")
    if name == "config" and isinstance(body, dict):
        t = Table(box=None, show_header=False, pad_edge=False)
        t.add_column(no_wrap=True)
        t.add_column(overflow="fold")
        for key, (a, b) in sorted((body.get("changed") or {}).items()):
            t.add_row(safe(f"~ {key}", "yellow"), Text(f"{_value(a)} → {_value(b)}"))
        for key, b in sorted((body.get("added") or {}).items()):
            t.add_row(safe(f"+ {key}", "green"), Text(_value(b)))
        for key, a in sorted((body.get("removed") or {}).items()):
            t.add_row(safe(f"- {key}", "red"), Text(_value(a)))
        return Group(title, t)
    if name == "metrics" and isinstance(body, dict):
        t = Table(box=None, pad_edge=False, header_style="bold")
        for col in ("metric", "A", "B", "Δ", "seed noise"):
            t.add_column(col, justify="left" if col in ("metric", "seed noise") else "right")
        for tag, entry in sorted(body.items()):
            if not isinstance(entry, dict):
                t.add_row(safe(tag), Text(_value(entry)), "", "", "")
                continue
            noise = entry.get("seed_noise") or {}
            noise_text: Text | str = ""
            if noise:
                verdict = "within" if noise.get("within") else "outside"
                noise_text = Text(
                    f"{verdict} σ {fmt_value(noise.get('std'))} (n {noise.get('n')})",
                    style="green" if noise.get("within") else "bold",
                )
            t.add_row(
                safe(tag),
                Text(_value(entry.get("a"))),
                Text(_value(entry.get("b"))),
                Text(_value(entry.get("delta"))),
                noise_text,
            )
        return Group(title, t)
    if isinstance(body, dict):
        t = Table(box=None, show_header=False, pad_edge=False)
        t.add_column(style="bold", no_wrap=True)
        t.add_column(overflow="fold")
        for key, value in body.items():
            if isinstance(value, str) and "\n" in value:
                t.add_row(safe(key), safe_lines(value))
            elif isinstance(value, (list, tuple)) and len(value) == 2 and name != "code":
                t.add_row(safe(key), Text(f"{_value(value[0])} → {_value(value[1])}"))
            else:
                t.add_row(safe(key), Text(_value(value)))
        return Group(title, t)
    if isinstance(body, list):
        return Group(title, *[Text(_value(item)) for item in body])
    return Group(title, Text(_value(body)))


class DiffScreen(Screen[None]):
    """Run A against run B. Annotations go to B, the run being explained."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
        Binding("q", "back", "Back", show=False),
        Binding("left_square_bracket", "tag(-1)", "Prev metric"),
        Binding("right_square_bracket", "tag(1)", "Next metric"),
        Binding("L", "log_scale", "Log scale"),
    ]

    app: LabbookApp

    def __init__(self, a: str, b: str) -> None:
        super().__init__()
        self.a, self.b = a, b
        self.tags: list[str] = []
        self.tag: str | None = None
        self.result: dict[str, Any] | None = None
        self.series_a: dict[str, Any] = {}
        self.series_b: dict[str, Any] = {}

    def compose(self) -> ComposeResult:
        yield Static("", id="title")
        with Vertical(id="diff-body"):
            with VerticalScroll(id="sections"):
                yield Static("", id="sections-body")
            yield CurvePlot(id="overlay")
        yield Footer()

    def on_mount(self) -> None:
        self.refresh_data()

    def current_run_id(self) -> str | None:
        return self.b

    def refresh_data(self) -> None:
        notebook = self.app.notebook
        self.query_one("#title", Static).update(
            Text.assemble(
                ("A ", "bold"),
                safe(self.a, "dodger_blue2"),
                ("  vs  ", "dim"),
                ("B ", "bold"),
                safe(self.b, "dark_orange"),
                ("   (notes go to B)", "dim"),
            )
        )
        body: list[RenderableType] = []
        try:
            self.result = notebook.diff(self.a, self.b)
        except ImportError:
            self.result = None
            body.append(
                Text(
                    "Diff engine not available (labbook.analysis.diff is missing): curves only.",
                    style="yellow",
                )
            )
        except LookupError as exc:
            self.result = None
            body.append(safe(str(exc), "red"))
        if self.result is not None:
            sections = [k for k in SECTION_ORDER if k in self.result]
            sections += [k for k in self.result if k not in SECTION_ORDER and k not in ("a", "b")]
            if not sections:
                body.append(Text("No differences.", style="green"))
            for name in sections:
                body.append(render_section(name, self.result[name]))
                body.append(Text(""))
        self.query_one("#sections-body", Static).update(Group(*body))
        self.series_a = notebook.series(self.a)
        self.series_b = notebook.series(self.b)
        self.tags = metric_order([t for t in self.series_a if t in self.series_b])
        if self.tag not in self.tags:
            self.tag = self.tags[0] if self.tags else None
        self._draw()

    def _draw(self) -> None:
        plot = self.query_one("#overlay", CurvePlot)
        if self.tag is None:
            plot.set_series([])
            return
        plot.set_series(
            [
                Series(f"A {self.a} {self.tag}", curves(self.series_a[self.tag])),
                Series(f"B {self.b}", curves(self.series_b[self.tag])),
            ]
        )

    def action_tag(self, step: int) -> None:
        if not self.tags:
            return
        i = self.tags.index(self.tag) if self.tag in self.tags else 0
        self.tag = self.tags[(i + step) % len(self.tags)]
        self._draw()

    def action_log_scale(self) -> None:
        plot = self.query_one("#overlay", CurvePlot)
        plot.log_scale = not plot.log_scale

    def action_back(self) -> None:
        self.app.pop_screen()
