"""The runs table: a line-based widget that holds a window of rows, never the whole store.

With 100,000 runs, building 100,000 rows costs seconds and memory; a window of
:attr:`RunTable.WINDOW` rows costs milliseconds. The cursor moves over *absolute*
positions: when it reaches the window's edge, the window is re-read around it from
SQLite (sorted and filtered there), so scrolling feels continuous.

Why not Textual's ``DataTable``: it renders every visible cell through Rich's
console pipeline (padding, styling, wrapping, measuring) and re-measures every
cell of every new row, which cost 150–200 ms per filter keystroke at 120×40 —
more than the whole keystroke budget (benchmarks/bench_tui.py). Here every column
has a fixed width, so a row is laid out once, as plain ``(text, style)`` pieces,
when its window is read, and painting a line only joins those pieces into a
:class:`~textual.strip.Strip` and crops it to the horizontal scroll position.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import tzinfo
from typing import ClassVar

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from labbook.model import RunRecord
from labbook_tui.fmt import (
    STATUS_STYLE,
    column_value,
    fmt_duration,
    fmt_time,
    fmt_value,
    key_metrics,
    printable,
    seed_missing,
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

#: Fixed column widths (content, without the one-cell padding on each side): no column
#: is ever measured, so a window costs the same whatever its runs hold.
WIDTHS: dict[str, int] = {
    "mark": 1,
    "id": 8,
    "name": 18,
    "status": 8,
    "started": 14,
    "duration": 6,
    "seed": 7,
    "framework": 11,
}
#: Blank space on each side of a cell's text.
PAD = 1

MARK = "●"
MARK_STYLE = "bold yellow"

#: One laid-out cell: its text, exactly the column's width, and its own style (or None).
Cell = tuple[str, Style | None]


def fit(text: str, width: int) -> str:
    """``text`` on one line, exactly ``width`` cells: padded, or cut with an ellipsis.

    Control characters (a newline in a run name, an escape sequence), bidi overrides
    and undecodable bytes are shown escaped (``\\n``, ``\\x1b``), as ``labbook ls`` does.
    """
    text = printable(text)
    if cell_len(text) > width:
        return set_cell_size(text, max(0, width - 1)) + "…" if width else ""
    return set_cell_size(text, width)


@dataclass
class TableState:
    """What the table shows, for the status line."""

    offset: int
    count: int
    total: int


@dataclass
class Column:
    """One column: its key (the sort key), header label and content width."""

    key: str
    label: str
    width: int


class RunTable(ScrollView, can_focus=True):
    """Runs in the order and filter of a :class:`Query`, a window at a time.

    Line 0 is the header (it never scrolls away); line ``1 + i`` is row ``i`` of the
    window. The row cursor is :attr:`cursor_row`, an index into :attr:`records`.
    """

    WINDOW: ClassVar[int] = 100

    BINDINGS: ClassVar[list[BindingType]] = [
        # hidden, as DataTable's was: the footer keeps the screen's other keys in view
        Binding("enter", "select_cursor", "Open", show=False),
        Binding("up", "cursor_up", "Cursor up", show=False),
        Binding("down", "cursor_down", "Cursor down", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("home,ctrl+home", "scroll_top", "Top", show=False),
        Binding("end,ctrl+end", "scroll_bottom", "Bottom", show=False),
        Binding("left", "scroll_left", "Scroll left", show=False),
        Binding("right", "scroll_right", "Scroll right", show=False),
        Binding("space", "toggle_mark", "Mark", show=True),
        Binding("g", "scroll_top", "Top", show=False),
        Binding("G", "scroll_bottom", "Bottom", show=False),
    ]

    COMPONENT_CLASSES: ClassVar[set[str]] = {"runtable--header", "runtable--cursor"}

    # The look of Textual's DataTable (header bar, block cursor, tint when focused).
    DEFAULT_CSS = """
    RunTable {
        background: $surface;
        color: $foreground;
        &:focus {
            background-tint: $foreground 5%;
            & > .runtable--cursor {
                background: $block-cursor-background;
                color: $block-cursor-foreground;
                text-style: $block-cursor-text-style;
            }
            & > .runtable--header {
                background-tint: $foreground 5%;
            }
        }
        & > .runtable--header {
            text-style: bold;
            background: $panel;
            color: $foreground;
        }
        &:ansi > .runtable--header {
            background: ansi_bright_blue;
            color: ansi_default;
        }
        & > .runtable--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: $block-cursor-blurred-text-style;
        }
    }
    """

    class WindowLoaded(Message):
        """A new window was read (after a filter, sort, scroll or live update)."""

        def __init__(self, state: TableState) -> None:
            super().__init__()
            self.state = state

    class MarksChanged(Message):
        def __init__(self, marked: list[str]) -> None:
            super().__init__()
            self.marked = marked

    class RowSelected(Message):
        """The row under the cursor was clicked again: open it."""

        def __init__(self, run_id: str) -> None:
            super().__init__()
            self.run_id = run_id

    class HeaderSelected(Message):
        """A column header was clicked: sort by ``key``."""

        def __init__(self, key: str) -> None:
            super().__init__()
            self.key = key

    def __init__(
        self,
        notebook: Notebook,
        *,
        tz: tzinfo | None = None,
        clock: Callable[[], float] | None = None,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        self.notebook = notebook
        self.query_state = Query()
        self.tz = tz
        self.clock = clock
        self.start = 0
        self.total = 0
        self.more = False  # total is a lower bound (counting stopped)
        self.records: list[RunRecord] = []
        self.marked: list[str] = []
        self.metric_columns: list[str] = []
        self.cursor_row = 0
        self._columns: list[Column] = []
        self._header: list[Cell] = []
        #: laid-out rows, each on first paint (None until then): a window costs what shows
        self._rows: list[list[Cell] | None] = []
        self._width = 0  # of the whole table, padding included
        self._styles: tuple[Style, Style, Style] = (Style(), Style(), Style())

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
        # the cursor's line on screen: the new window puts it back there (continuous paging)
        line = self.cursor_row - self.scroll_offset.y
        self.start, self.total, self.records = window.offset, window.total, window.records
        self.more = window.more
        if not self.metric_columns or self.start == 0:
            picked = key_metrics(self.records)
            if picked or not self.records:
                self.metric_columns = picked
        self._columns = self._make_columns()
        self._width = sum(c.width + 2 * PAD for c in self._columns)
        self._header = self._layout([(c.label, None) for c in self._columns])
        self._rows = [None] * len(self.records)
        self.cursor_row = min(max(0, absolute - self.start), max(0, len(self.records) - 1))
        self.virtual_size = Size(self._width, len(self._rows) + 1)
        self._scroll_cursor_into_view(line=line)
        self.refresh()
        self.post_message(self.WindowLoaded(TableState(self.start, len(self.records), self.total)))

    def columns_spec(self) -> list[tuple[str, str]]:
        extra = [(f"metrics.{m}", m) for m in self.metric_columns]
        extra += [(c, c) for c in self.query_state.extra_columns if c not in self.metric_columns]
        return BASE_COLUMNS + extra + TAIL_COLUMNS

    def _make_columns(self) -> list[Column]:
        q = self.query_state
        columns = []
        for key, label in self.columns_spec():
            width = WIDTHS.get(key, max(8, min(len(label), 14)))
            if key == q.sort or key == f"metrics.{q.sort}":
                label = f"{label} {'▼' if q.descending else '▲'}"
            columns.append(Column(key, label, width))
        return columns

    def _cells(self, rec: RunRecord) -> list[tuple[str, str | None]]:
        """One run's cells as (text, style) in column order."""
        now = self.clock() if self.clock else None
        status = rec.get("status") or "unknown"
        seed = seed_text(rec)
        marked = rec["id"] in self.marked
        cells: list[tuple[str, str | None]] = [
            (MARK, MARK_STYLE) if marked else (" ", None),
            (rec["id"], None),
            (short(printable(rec.get("name") or ""), 18), None),
            (status, STATUS_STYLE.get(status)),
            (fmt_time(rec.get("started_at"), self.tz, short=True), None),
            (fmt_duration(rec, now), None),
            (seed, "yellow" if seed_missing(rec) else None),
        ]
        for column in self._columns[len(BASE_COLUMNS) : -len(TAIL_COLUMNS)]:
            cells.append((fmt_value(column_value(rec, column.key)), None))
        cells.append((rec.get("framework") or "", None))
        return cells

    def _layout(self, cells: list[tuple[str, str | None]]) -> list[Cell]:
        """Cells fitted to their columns and padded, runs of unstyled text merged."""
        out: list[Cell] = []
        plain: list[str] = []
        for column, (text, style) in zip(self._columns, cells, strict=False):
            fitted = fit(str(text), column.width)
            if style is None:
                plain.append(" " * PAD + fitted + " " * PAD)
                continue
            plain.append(" " * PAD)
            out.append(("".join(plain), None))
            out.append((fitted, Style.parse(style)))
            plain = [" " * PAD]
        if plain:
            out.append(("".join(plain), None))
        return out

    # -- painting --------------------------------------------------------------------

    def render_lines(self, crop: Region) -> list[Strip]:
        # the styles once per paint, not once per line
        base = self.rich_style
        self._styles = (
            base,
            base + self.get_component_rich_style("runtable--header"),
            self.get_component_rich_style("runtable--cursor"),
        )
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        """Line ``y`` of the widget: the header, or a row of the window."""
        width = self.size.width
        scroll_x, scroll_y = self.scroll_offset
        base, header, cursor = self._styles
        if y == 0:
            cells = self._header
            style = header
        else:
            row = y - 1 + scroll_y
            if row >= len(self._rows):
                return Strip.blank(width, base)
            laid = self._rows[row]
            if laid is None:
                laid = self._rows[row] = self._layout(self._cells(self.records[row]))
            cells = laid
            style = base
            if row == self.cursor_row:
                segments = [
                    Segment(text, style + (cs + cursor if cs else cursor)) for text, cs in cells
                ]
                strip = Strip(segments, self._width)
                return strip.crop_extend(scroll_x, scroll_x + width, style + cursor)
        segments = [Segment(text, style + cs if cs else style) for text, cs in cells]
        return Strip(segments, self._width).crop_extend(scroll_x, scroll_x + width, style)

    def _body_height(self) -> int:
        """Rows that fit under the header."""
        return self.scrollable_content_region.height - 1

    def _scroll_cursor_into_view(self, *, line: int | None = None) -> None:
        """Scroll so the cursor row shows (at screen row ``line`` when given and possible)."""
        body = self._body_height()
        if body <= 0:
            return
        top = self.scroll_offset.y if line is None else self.cursor_row - line
        top = max(min(top, self.cursor_row), self.cursor_row - body + 1)
        top = max(0, min(top, len(self._rows) - body))
        if top != self.scroll_offset.y:
            self.scroll_to(y=top, animate=False, force=True)

    def on_resize(self, event: events.Resize) -> None:
        self._scroll_cursor_into_view()

    def move_cursor(self, *, row: int, animate: bool = False) -> None:
        """Put the cursor on row ``row`` of the window and scroll it into view."""
        row = min(max(0, row), max(0, len(self._rows) - 1))
        if row != self.cursor_row:
            self.cursor_row = row
            self.refresh()
        self._scroll_cursor_into_view()

    def action_select_cursor(self) -> None:
        rid = self.current_run_id()
        if rid is not None:
            self.post_message(self.RowSelected(rid))

    def _column_at(self, x: int) -> str | None:
        for column in self._columns:
            x -= column.width + 2 * PAD
            if x < 0:
                return column.key
        return None

    def on_click(self, event: events.Click) -> None:
        """Header: sort by that column. A row: put the cursor there; the cursor's row: open it."""
        offset = event.get_content_offset(self)
        if offset is None:
            return
        event.stop()
        if offset.y == 0:
            key = self._column_at(offset.x + self.scroll_offset.x)
            if key is not None:
                self.post_message(self.HeaderSelected(key))
            return
        row = offset.y - 1 + self.scroll_offset.y
        if not 0 <= row < len(self._rows):
            return
        if row == self.cursor_row:
            self.action_select_cursor()
        else:
            self.move_cursor(row=row)

    # -- state -----------------------------------------------------------------

    @property
    def row_count(self) -> int:
        return len(self._rows)

    def get_row_at(self, row: int) -> list[str]:
        """The cell texts of row ``row`` of the window (before fitting to the columns)."""
        return [text for text, _style in self._cells(self.records[row])]

    def current_run_id(self) -> str | None:
        if not self.records or self.cursor_row < 0 or self.cursor_row >= len(self.records):
            return None
        return str(self.records[self.cursor_row]["id"])

    def current_record(self) -> RunRecord | None:
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
        self._rows[self.cursor_row] = None  # laid out again, with or without the mark
        self.refresh()
        self.post_message(self.MarksChanged(list(self.marked)))
        self._goto(self.absolute + 1)
