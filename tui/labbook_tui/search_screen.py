"""Past mistakes: search notes, failures and logs; a result opens its run."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Static

from labbook.errors import LabbookError
from labbook_tui.fmt import printable, safe, short

if TYPE_CHECKING:
    from labbook_tui.app import LabbookApp


def snippet_text(snippet: str, width: int = 200) -> Text:
    """A search snippet with its «marked» matches shown bold and reversed."""
    from labbook.store.search import MARK_END, MARK_START

    flat = short(" ".join(snippet.split()), width)
    text = Text()
    marked = False
    for part in flat.replace(MARK_END, MARK_START).split(MARK_START):
        text.append(printable(part), style="bold reverse" if marked else "")
        marked = not marked
    return text


class SearchScreen(Screen[None]):
    """A query box and its hits, best first (run, where it matched, the matching text).

    The engine's scores order the hits but are not shown: they are relative, and a
    number without a scale tells the reader nothing.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
        Binding("slash", "focus_query", "Query", show=False),
    ]

    app: LabbookApp

    def __init__(self, text: str = "") -> None:
        super().__init__()
        self.initial = text
        self.hits: list[Any] = []

    def compose(self) -> ComposeResult:
        yield Input(
            value=self.initial,
            placeholder="search notes and failures: cuda oom, lr too high, …",
            id="query",
            compact=True,
        )
        yield Static("Type a query, Enter to search.", id="status")
        yield DataTable(cursor_type="row", id="hits")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        box = self.query_one("#query", Input)
        box.cursor_blink = False
        table = self.query_one("#hits", DataTable)
        table.add_column("run", key="run", width=8)
        table.add_column("field", key="field", width=8)
        table.add_column("match", key="snippet")
        box.focus()
        if self.initial:
            self.run_search(self.initial)

    def current_run_id(self) -> str | None:
        table = self.query_one("#hits", DataTable)
        if not self.hits or table.cursor_row < 0 or table.cursor_row >= len(self.hits):
            return None
        return str(self.hits[table.cursor_row].run_id)

    def refresh_data(self) -> None:
        value = self.query_one("#query", Input).value
        if value.strip() and self.hits:
            self.run_search(value)

    def run_search(self, text: str) -> None:
        status = self.query_one("#status", Static)
        table = self.query_one("#hits", DataTable)
        table.clear()
        self.hits = []
        if not text.strip():
            status.update("Type a query, Enter to search.")
            return
        try:
            self.hits = self.app.notebook.search(text)
        except LabbookError as exc:
            status.update(safe(exc.message, "red"))
            return
        for i, hit in enumerate(self.hits):
            table.add_row(
                safe(hit.run_id),
                safe(hit.field),
                snippet_text(str(hit.snippet)),
                key=str(i),
            )
        status.update(
            f"{len(self.hits)} result(s) · Enter opens a run" if self.hits else "No results."
        )
        if self.hits:
            table.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.run_search(event.value)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        rid = self.current_run_id()
        if rid:
            self.app.open_run(rid)

    def action_focus_query(self) -> None:
        self.query_one("#query", Input).focus()

    def action_back(self) -> None:
        self.app.pop_screen()
