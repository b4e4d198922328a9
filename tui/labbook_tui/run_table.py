"""The runs table: a DataTable that holds a window of rows, never the whole store.

With 100,000 runs, building 100,000 DataTable rows costs seconds and memory; a
window of :attr:`RunTable.WINDOW` rows costs milliseconds. The cursor moves over
*absolute* positions: when it reaches the window's edge, the window is re-read
around it from SQLite (sorted and filtered there), so scrolling feels continuous.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import tzinfo
from typing import Any, ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import DataTable

from labbook_tui.fmt import (
    STATUS_STYLE,
    column_value,
    fmt_duration,
    fmt_time,
    fmt_value,
    key_metrics,
    seed_text,
    short,
)
from labbook_tui.notebook import Notebook, Query, Window

#: (key used for sorting, header label). Keys are the sort keys of select_runs_window.
BASE_COLUMNS: list[tuple[str, str]] = [
    ("mark", " "),
    ("id", "id"),
    ("name", "name"),
    ("status", "status"),
    ("started", "started"),
    ("duration", "time"),
    ("seed", "seed"),
]
#: After the metric and extra columns: useful, but the first to give way at 80 columns.
TAIL_COLUMNS: list[tuple[str, str]] = [("framework", "framework")]


@dataclass
class TableState:
    """What the table shows, for the status line."""

    offset: int
    count: int
    total: int


class RunTable(DataTable[Any]):
    """Runs in the order and filter of a :class:`Query`, a window at a time."""

    WINDOW: ClassVar[int] = 100

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("space", "toggle_mark", "Mark", show=True),
        Binding("g", "scroll_top", "Top", show=False),
        Binding("G", "scroll_bottom", "Bottom", show=False),
    ]

    class WindowLoaded(Message):
        """A new window was read (after a filter, sort, scroll or live update)."""

        def __init__(self, state: TableState) -> None:
            super().__init__()
            self.state = state

    class MarksChanged(Message):
        def __init__(self, marked: list[str]) -> None:
            super().__init__()
            self.marked = marked

    def __init__(
        self,
        notebook: Notebook,
        *,
        tz: tzinfo | None = None,
        clock: Callable[[], float] | None = None,
        id: str | None = None,
    ) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, id=id)
        self.notebook = notebook
        self.query_state = Query()
        self.tz = tz
        self.clock = clock
        self.start = 0
        self.total = 0
        self.more = False  # total is a lower bound (counting stopped)
        self.records: list[dict[str, Any]] = []
        self.marked: list[str] = []
        self.metric_columns: list[str] = []
        self._columns_sig: tuple[str, ...] = ()

    # -- loading -----------------------------------------------------------------

    def reload(self, *, keep_id: str | None = None, absolute: int | None = None) -> None:
        """Re-read the window; keep the cursor on ``keep_id`` (or at ``absolute``) if possible."""
        if absolute is None:
            current = self.current_run_id()
            keep_id = keep_id or current
            absolute = self.start + max(0, self.cursor_row)
            if keep_id is not None and self.records:
                # the run may have moved (new runs arrive on top): find it again
                pos = self.notebook.position_of(
                    self.query_state, keep_id, limit=self.start + 2 * self.WINDOW
                )
                if pos is not None:
                    absolute = pos
        self._load_around(absolute)

    def _load_around(self, absolute: int, *, exact: bool = False) -> None:
        start = max(0, absolute - self.WINDOW // 2)
        window = self.notebook.window(self.query_state, start, self.WINDOW, exact=exact)
        if exact and absolute >= window.total:
            absolute = window.total - 1
        self._show(window, absolute)

    def _show(self, window: Window, absolute: int) -> None:
        self.start, self.total, self.records = window.offset, window.total, window.records
        self.more = window.more
        if not self.metric_columns or self.start == 0:
            picked = key_metrics(self.records)
            if picked or not self.records:
                self.metric_columns = picked
        self._build_columns()
        self.clear()
        rows = [self._cells(rec) for rec in self.records]
        for rec, cells in zip(self.records, rows, strict=True):
            self.add_row(*cells, key=rec["id"])
        if self.records:
            row = min(max(0, absolute - self.start), len(self.records) - 1)
            self.move_cursor(row=row, animate=False)
        self.post_message(self.WindowLoaded(TableState(self.start, len(self.records), self.total)))

    def columns_spec(self) -> list[tuple[str, str]]:
        extra = [(f"metrics.{m}", m) for m in self.metric_columns]
        extra += [(c, c) for c in self.query_state.extra_columns if c not in self.metric_columns]
        return BASE_COLUMNS + extra + TAIL_COLUMNS

    def _build_columns(self) -> None:
        spec = self.columns_spec()
        sig = (*[k for k, _ in spec], str(self.query_state.sort), str(self.query_state.descending))
        if sig == self._columns_sig:
            return
        self._columns_sig = sig
        self.clear(columns=True)
        for key, label in spec:
            if key == self.query_state.sort or (key == f"metrics.{self.query_state.sort}"):
                label = f"{label} {'▼' if self.query_state.descending else '▲'}"
            # fixed widths: DataTable need not measure every cell of every window
            width = {
                "mark": 1,
                "id": 8,
                "name": 18,
                "status": 8,
                "started": 14,
                "duration": 6,
                "seed": 7,
                "framework": 11,
            }.get(key, max(8, min(len(label), 14)))
            self.add_column(label, key=key, width=width)

    def _cells(self, rec: dict[str, Any]) -> list[Any]:
        now = self.clock() if self.clock else None
        status = rec.get("status") or "unknown"
        seed = seed_text(rec)
        cells: list[Any] = [
            Text("●", style="bold yellow") if rec["id"] in self.marked else " ",
            rec["id"],
            short(rec.get("name") or "", 18),
            Text(status, style=STATUS_STYLE.get(status, "")),
            fmt_time(rec.get("started_at"), self.tz, short=True),
            fmt_duration(rec, now),
            Text(seed, style="yellow") if seed == "not set" else seed,
        ]
        for key, _label in self.columns_spec()[len(BASE_COLUMNS) : -len(TAIL_COLUMNS)]:
            cells.append(fmt_value(column_value(rec, key)))
        cells.append(rec.get("framework") or "")
        return cells

    # -- state -----------------------------------------------------------------

    def current_run_id(self) -> str | None:
        if not self.records or self.cursor_row < 0 or self.cursor_row >= len(self.records):
            return None
        return str(self.records[self.cursor_row]["id"])

    def current_record(self) -> dict[str, Any] | None:
        rid = self.current_run_id()
        return self.records[self.cursor_row] if rid else None

    @property
    def absolute(self) -> int:
        return self.start + max(0, self.cursor_row)

    # -- cursor over absolute positions ------------------------------------------------

    def _goto(self, absolute: int) -> None:
        if self.total == 0:
            return
        absolute = max(0, absolute if self.more else min(absolute, self.total - 1))
        inside = self.start <= absolute < self.start + len(self.records)
        at_edge = (
            absolute == self.start + len(self.records) - 1
            and (absolute < self.total - 1 or self.more)
        ) or (absolute == self.start and self.start > 0)
        if inside and not at_edge:
            self.move_cursor(row=absolute - self.start, animate=False)
        else:
            self._load_around(absolute)

    def _page(self) -> int:
        return max(1, self.scrollable_content_region.height - 2)

    def action_cursor_down(self) -> None:
        self._goto(self.absolute + 1)

    def action_cursor_up(self) -> None:
        self._goto(self.absolute - 1)

    def action_page_down(self) -> None:
        self._goto(self.absolute + self._page())

    def action_page_up(self) -> None:
        self._goto(self.absolute - self._page())

    def action_scroll_top(self) -> None:
        self._goto(0)

    def action_scroll_bottom(self) -> None:
        if self.more:  # the end is past where counting stopped: count it all, once
            self._load_around(self.total * 1_000_000, exact=True)
            return
        self._goto(self.total - 1)

    action_scroll_home = action_scroll_top
    action_scroll_end = action_scroll_bottom

    # -- marks ---------------------------------------------------------------------

    def action_toggle_mark(self) -> None:
        rid = self.current_run_id()
        if rid is None:
            return
        if rid in self.marked:
            self.marked.remove(rid)
        else:
            self.marked.append(rid)
        self.update_cell(rid, "mark", Text("●", style="bold yellow") if rid in self.marked else " ")
        self.post_message(self.MarksChanged(list(self.marked)))
        self._goto(self.absolute + 1)
