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

from labbook_tui.fmt import fmt_value, metric_order, printable, safe
from labbook_tui.plot import CurvePlot, Series
from labbook_tui.run_screen import curves

if TYPE_CHECKING:
    from labbook_tui.app import LabbookApp


def _value(v: Any) -> str:
    """A value on one line, control characters escaped (never markup: cells are ``Text``)."""
    if isinstance(v, (dict, list)):
        return printable(json.dumps(v, ensure_ascii=False, default=str))
    return printable(fmt_value(v))


def _config_table(body: dict[str, Any]) -> Table:
    t = Table(box=None, show_header=False, pad_edge=False)
    t.add_column(no_wrap=True)
    t.add_column(overflow="fold")
    for key, (a, b) in sorted((body.get("changed") or {}).items()):
        t.add_row(safe(f"~ {key}", "yellow"), Text(f"{_value(a)} → {_value(b)}"))
    for key, b in sorted((body.get("added") or {}).items()):
        t.add_row(safe(f"+ {key}", "green"), Text(_value(b)))
    for key, a in sorted((body.get("removed") or {}).items()):
        t.add_row(safe(f"- {key}", "red"), Text(_value(a)))
    return t


def _metrics_table(body: dict[str, Any]) -> Table:
    from labbook.render.diff import noise_statement

    t = Table(box=None, pad_edge=False, header_style="bold")
    for col in ("metric", "A", "B", "Δ", "seed noise"):
        t.add_column(col, justify="left" if col in ("metric", "seed noise") else "right")
    for tag, entry in body.items():
        # The words are labbook diff's (one statement of seed noise); the colour the TUI's.
        statement = noise_statement(tag, entry)
        within = (entry.get("seed_noise") or {}).get("within")
        style = "dim" if within is None else ("green" if within else "bold")
        noise_text: Text | str = Text(statement, style=style) if statement else ""
        t.add_row(
            safe(tag),
            Text(_value(entry.get("a"))),
            Text(_value(entry.get("b"))),
            Text(_value(entry.get("delta"))),
            noise_text,
        )
    return t


def render_section(name: str, body: dict[str, Any]) -> RenderableType:
    """One section of the diff engine's result: config and metrics as tables, the
    others in the lines ``labbook diff`` prints (:func:`labbook.render.diff.section_text`)."""
    from labbook.render.diff import section_text

    title = safe(name, "bold underline")
    if name == "config":
        return Group(title, _config_table(body))
    if name == "metrics":
        return Group(title, _metrics_table(body))
    return Group(title, Text.from_ansi(section_text(name, body, color=True)))


#: The footer entry of [ and ] (the metric overlaid).
METRIC_KEYS = Binding.Group("Metric", compact=True)


class DiffScreen(Screen[None]):
    """Run A against run B. Annotations go to B, the run being explained."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
        Binding("q", "back", "Back", show=False),
        Binding("left_square_bracket", "tag(-1)", "Prev metric", group=METRIC_KEYS),
        Binding("right_square_bracket", "tag(1)", "Next metric", group=METRIC_KEYS),
        Binding("L", "log_scale", "Log"),
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
        yield Footer(compact=True, show_command_palette=False)

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
        except LookupError as exc:
            self.result = None
            body.append(safe(str(exc), "red"))
        if self.result is not None:
            from labbook.analysis.diff import SECTIONS

            sections = [k for k in SECTIONS if k in self.result]
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
