"""Small modal screens: a note, tags, sort order, extra columns, and the key help.

Each returns its answer through ``dismiss`` (None when cancelled with Escape), so
the caller decides what to write; a modal itself never touches the database.
"""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from labbook_tui.fmt import safe

NOTE_TITLES = {
    "note": "Note",
    "failure": "Failure reason",
    "lesson": "Lesson learned",
}


class NoteModal(ModalScreen[str | None]):
    """One line of text for a note, failure reason or lesson; Enter saves, Escape cancels."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, kind: str, run_label: str) -> None:
        super().__init__()
        self.kind = kind
        self.run_label = run_label

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(
                safe(f"{NOTE_TITLES.get(self.kind, 'Note')} for {self.run_label}"), classes="title"
            )
            yield Input(placeholder="type, then Enter to save", id="text")
            yield Label("Enter save · Esc cancel", classes="hint")

    def on_mount(self) -> None:
        self.query_one(Input).cursor_blink = False

    def on_input_submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        self.dismiss(text or None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class TagsModal(ModalScreen[tuple[list[str], list[str]] | None]):
    """Tags to add (``a b``) or remove (``-c``); returns (add, remove)."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, run_label: str, current: list[str]) -> None:
        super().__init__()
        self.run_label = run_label
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(safe(f"Tags for {self.run_label}"), classes="title")
            now = ", ".join(self.current) if self.current else "none"
            yield Label(safe(f"now: {now}"), classes="hint")
            yield Input(placeholder="baseline good  -bad   (a leading - removes)", id="text")
            yield Label("Enter save · Esc cancel", classes="hint")

    def on_mount(self) -> None:
        self.query_one(Input).cursor_blink = False

    def on_input_submitted(self, event: Input.Submitted) -> None:
        words = event.value.replace(",", " ").split()
        add = [w for w in words if not w.startswith("-")]
        remove = [w[1:] for w in words if w.startswith("-") and len(w) > 1]
        self.dismiss((add, remove) if add or remove else None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class SortModal(ModalScreen[str | None]):
    """Pick a column to sort by; picking the current one again flips the direction."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, columns: list[tuple[str, str]], current: str | None) -> None:
        super().__init__()
        self.columns = columns
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Sort by", classes="title")
            yield OptionList(
                Option("newest first (default)", id="__default__"),
                *[
                    Option(label + ("  (current: flip)" if key == self.current else ""), id=key)
                    for key, label in self.columns
                    if key != "mark"
                ],
                id="options",
            )

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ColumnsModal(ModalScreen[list[str] | None]):
    """Extra columns: config keys or ``metrics.TAG``, separated by spaces or commas."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, current: list[str]) -> None:
        super().__init__()
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Extra columns", classes="title")
            yield Input(value=" ".join(self.current), placeholder="optimizer.lr metrics.val/acc")
            yield Label("config keys or metrics.TAG · Enter apply · Esc cancel", classes="hint")

    def on_mount(self) -> None:
        self.query_one(Input).cursor_blink = False

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.replace(",", " ").split())

    def action_cancel(self) -> None:
        self.dismiss(None)


HELP = [
    ("Runs", "↑↓ PgUp PgDn Home End", "move (the table reads a window at a time)"),
    ("Runs", "Enter", "open the run"),
    ("Runs", "g", "seed groups as rows (mean ± std); Enter: its runs"),
    ("Runs", "/", "filter: optimizer.lr>=0.01 and status=failed, tag=good, or a name"),
    ("Runs", "space", "mark a run; d diffs two marked runs (or marked + cursor)"),
    ("Runs", "← →", "columns sideways, a whole column a press (id and name stay)"),
    ("Runs", "o / c", "sort by a column (the cursor goes to the top) / extra columns"),
    ("Anywhere", "n f l t", "add a note, failure reason, lesson, tags to the current run"),
    ("Anywhere", "s", "search notes and failures"),
    ("Anywhere", "ctrl+p", "command palette"),
    ("Anywhere", "ctrl+t", "light / dark theme"),
    ("Anywhere", "? / esc / q", "this help / back / quit"),
    ("Run", "1-7 or ←→", "tabs: overview config code env metrics gpu log"),
    ("Run", "[ ] / L", "metrics: previous/next tag, log scale (▲ inf, × NaN, ▼ ≤ 0)"),
    ("Diff", "[ ] / L", "previous/next overlaid metric, log scale"),
]


class HelpScreen(ModalScreen[None]):
    """The keys, grouped by screen."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close"),
        Binding("question_mark", "close", "Close", show=False),
        Binding("q", "close", "Close", show=False),
    ]

    def compose(self) -> ComposeResult:
        table = Table(box=None, show_header=False, pad_edge=False)
        table.add_column(style="dim")
        table.add_column(style="bold")
        table.add_column()
        for where, keys, what in HELP:
            table.add_row(where, keys, what)
        with Vertical(classes="dialog wide"):
            yield Label("labbook keys", classes="title")
            with VerticalScroll():
                yield Static(table)
            yield Label(Text("Esc close"), classes="hint")

    def action_close(self) -> None:
        self.dismiss(None)
