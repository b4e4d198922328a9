"""The runs screen: filter bar, status line, the windowed runs table, footer."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Footer, Input, Static

from labbook.analysis.metrics import canonical_metric
from labbook.errors import LabbookError
from labbook_tui.fmt import safe, safe_lines
from labbook_tui.modals import ColumnsModal, SortModal
from labbook_tui.notebook import EMPTY_HINT
from labbook_tui.run_table import RunTable

if TYPE_CHECKING:
    from labbook_tui.app import LabbookApp


def sort_key(key: str | None) -> str | None:
    """The store's sort key for a column: a column of the metric vocabulary
    (``metrics.train_loss``) sorts by the bare name, so that each run is sorted by its
    own tag for it (``train/loss``, ``Loss/train``); ``metrics.TAG`` means that tag only."""
    if key is not None and key.startswith("metrics."):
        name = key.split(".", 1)[1]
        if canonical_metric(name) == name:
            return name
    return key


class RunsScreen(Screen[None]):
    """All runs, newest first, a window at a time; the app's home screen."""

    BINDINGS: ClassVar[list[BindingType]] = [
        # the filter bar itself says "/ filter": the footer has no room to repeat it
        Binding("slash", "focus_filter", "Filter", show=False),
        Binding("enter", "open_run", "Open", show=False),
        Binding("d", "diff", "Diff"),
        Binding("g", "group", "Group"),
        Binding("o", "sort", "Sort"),
        Binding("c", "columns", "Cols"),
        Binding("escape", "leave_filter", "Back", show=False),
        Binding("q", "app.quit", "Quit"),
    ]

    app: LabbookApp

    #: The message of the filter that could not be read (None when it could): shown
    #: under the filter bar while the table keeps the last good filter's rows.
    filter_error: str | None = None

    def compose(self) -> ComposeResult:
        notebook = self.app.notebook
        yield Input(
            placeholder="/ filter: optimizer.lr>=0.01 and status=failed · tag=good · name",
            id="filter",
            compact=True,
        )
        yield Static("", id="filter-error")
        yield Static("", id="status")
        yield Static("", id="empty")
        yield RunTable(notebook, tz=self.app.tz, clock=self.app.clock, id="runs")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.query_one("#filter", Input).cursor_blink = False
        self.refresh_data(initial=True)
        self.query_one(RunTable).focus()

    @property
    def table(self) -> RunTable:
        return self.query_one(RunTable)

    # -- data ------------------------------------------------------------------------

    def refresh_data(self, *, initial: bool = False) -> None:
        """Re-read the window (new runs from `labbook watch`, a new note, a new database)."""
        notebook = self.app.notebook
        empty = self.query_one("#empty", Static)
        if notebook.store is None:
            self.set_class(True, "-empty")
            empty.update(
                safe_lines(
                    f"{notebook.error or 'no database'}\n\nTo fill your lab notebook, {EMPTY_HINT}."
                )
            )
            self._status("")
            return
        if initial:
            self.table._load_around(0)
        else:
            self.table.reload()

    def on_run_table_window_loaded(self, event: RunTable.WindowLoaded) -> None:
        state = event.state
        empty = self.query_one("#empty", Static)
        if state.total == 0:
            self.set_class(True, "-empty")
            if self.table.query_state.text.strip():
                empty.update("No runs match this filter. Esc clears it.")
            else:
                empty.update(
                    Text.assemble(
                        safe(f"No runs yet in {self.app.notebook.path}."),
                        f"\n\nTo fill your lab notebook, {EMPTY_HINT}.",
                    )
                )
        else:
            self.set_class(False, "-empty")
        self._status_line()

    def on_run_table_marks_changed(self, event: RunTable.MarksChanged) -> None:
        self._status_line()

    def on_run_table_columns_moved(self, event: RunTable.ColumnsMoved) -> None:
        if self.app.notebook.store is not None:
            self._status_line()

    def _status_line(self) -> None:
        t = self.table
        q = t.query_state
        if t.grouped:
            n, runs = len(t.groups), t.group_runs
            parts = [
                f"grouped: {n:,} group{'s' if n != 1 else ''} of {runs:,} run{'s' if runs != 1 else ''}"
            ]
        elif t.total:
            of = f"{t.total:,}+" if t.more else f"{t.total:,}"
            parts = [f"{t.start + 1:,}–{t.start + len(t.records):,} of {of} runs"]
        else:
            parts = ["0 runs"]
        if q.sort:
            parts.append(f"sort {q.sort} {'▼' if q.descending else '▲'}")
        if t.marked:
            parts.append(f"{len(t.marked)} marked (d: diff)")
        hidden = t.hidden_columns() if t.total else 0
        if hidden:
            parts.append(f"←→ {hidden} more column{'s' if hidden > 1 else ''}")
        if self.filter_error is not None:
            shown = q.text.strip()
            parts.append(f"stale: the rows of {shown!r}" if shown else "stale: all runs")
        self._status(" · ".join(parts), error=self.filter_error is not None)

    def _status(self, text: str, *, error: bool = False) -> None:
        status = self.query_one("#status", Static)
        status.set_class(error, "-error")
        # one line, its size fixed by the stylesheet: a repaint, not a layout of the screen
        # (which costs more than the whole table's repaint, on every keystroke)
        status.update(safe(text), layout=False)

    # -- filter ----------------------------------------------------------------------

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id != "filter":
            return
        self.apply_filter(event.value)

    def apply_filter(self, text: str) -> bool:
        """Show the runs matching ``text``. A filter that cannot be read (the store's
        QueryError) says why under the filter bar and leaves the last good filter's
        rows in the table, marked stale, until the filter reads again."""
        notebook = self.app.notebook
        if notebook.store is None:
            return False
        table = self.table
        good = table.query_state.text
        try:
            notebook.filter_for(text)
            table.query_state.text = text
            table._load_around(0)
        except LabbookError as exc:
            table.query_state.text = good
            self._filter_failed(exc)
            return False
        self._filter_ok()
        return True

    def _filter_failed(self, exc: LabbookError) -> None:
        hint = f" — {exc.hint}" if exc.hint else ""
        self.filter_error = f"{exc}{hint}"
        box = self.query_one("#filter-error", Static)
        box.update(safe(f"✗ {self.filter_error}"))
        box.display = True
        self.query_one("#filter", Input).set_class(True, "-invalid")
        self.table.set_class(True, "-stale")
        self._status_line()

    def _filter_ok(self) -> None:
        if self.filter_error is None:
            return
        self.filter_error = None
        self.query_one("#filter-error", Static).display = False
        self.query_one("#filter", Input).set_class(False, "-invalid")
        self.table.set_class(False, "-stale")
        self._status_line()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter":
            self.table.focus()

    def action_focus_filter(self) -> None:
        self.query_one("#filter", Input).focus()

    def action_leave_filter(self) -> None:
        box = self.query_one("#filter", Input)
        if box.has_focus:
            self.table.focus()
        elif box.value:
            box.value = ""

    # -- actions -----------------------------------------------------------------------

    def current_run_id(self) -> str | None:
        return self.table.current_run_id()

    def on_run_table_row_selected(self, event: RunTable.RowSelected) -> None:
        self.action_open_run()

    def action_open_run(self) -> None:
        rid = self.current_run_id()
        if rid:
            self.app.open_run(rid)

    def action_group(self) -> None:
        """``g``: each seed group as one row (Enter shows its runs), or the runs again."""
        if self.app.notebook.store is None:
            return
        t = self.table
        try:
            t.set_grouped(not t.grouped)
        except LabbookError as exc:  # the filter reads but its query does not
            self._filter_failed(exc)
            return
        self._status_line()

    def action_diff(self) -> None:
        t = self.table
        ids = list(t.marked)
        cur = t.current_run_id()
        if len(ids) == 1 and cur and cur not in ids:
            ids.append(cur)
        if len(ids) != 2:
            self.app.notify("Mark two runs with space (or one, and put the cursor on another).")
            return
        self.app.open_diff(ids[0], ids[1])

    def action_sort(self) -> None:
        t = self.table
        cols = [(k, label) for k, label in t.columns_spec() if k != "mark"]

        def chosen(key: str | None) -> None:
            if key is None:
                return
            q = t.query_state
            if key == "__default__":
                self.sort_by(None)
            elif sort_key(key) == q.sort:
                self.sort_by(key, not q.descending)
            else:
                self.sort_by(key, key.startswith("metrics.") or key == "started")

        current = t.query_state.sort
        if current is not None and f"metrics.{current}" in dict(cols):
            current = f"metrics.{current}"
        self.app.push_screen(SortModal(cols, current), chosen)

    def sort_by(self, key: str | None, descending: bool = False) -> None:
        """Sort by ``key``: the cursor goes to the first row (the top of the new order)
        and the table scrolls sideways so the sorted column shows."""
        t = self.table
        q = t.query_state
        q.sort, q.descending = sort_key(key), descending
        t._load_around(0)
        if key is not None:
            t.show_column(key)
        self._status_line()

    def on_run_table_header_selected(self, event: RunTable.HeaderSelected) -> None:
        key = event.key
        if key == "mark":
            return
        q = self.table.query_state
        self.sort_by(key, not q.descending if q.sort == sort_key(key) else False)

    def action_columns(self) -> None:
        t = self.table

        def chosen(columns: list[str] | None) -> None:
            if columns is None:
                return
            t.query_state.extra_columns = columns
            t.reload()

        self.app.push_screen(ColumnsModal(t.query_state.extra_columns), chosen)
