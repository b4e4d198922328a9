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
    key_columns,
    printable,
    seed_missing,
    seed_text,
    short_middle,
)
from labbook_tui.groups import (
    GROUP_ONLY,
    Group,
    GroupedRuns,
    Line,
    lines_of,
    sort_groups,
    worst_status,
)
from labbook_tui.notebook import Notebook, Query, Window

#: (key used for sorting, header label). Keys are the sort keys of select_runs_window.
#: These stay put when the table scrolls sideways: whichever columns show, each row
#: still says which run it is.
FROZEN_COLUMNS: list[tuple[str, str]] = [
    ("mark", " "),
    ("id", "id"),
    ("name", "name"),
]
#: The first scrolling column; the metric and extra columns come right after it, so
#: that at 80 columns a row shows its status and (at least) two metrics.
STATUS_COLUMNS: list[tuple[str, str]] = [("status", "status")]
#: After the metric and extra columns: a Right or two away at 80 columns.
TAIL_COLUMNS: list[tuple[str, str]] = [
    ("started", "started"),
    ("duration", "time"),
    ("seed", "seed"),
    ("framework", "framework"),
]
#: Kept for callers that list the table's own columns (before metrics).
BASE_COLUMNS = FROZEN_COLUMNS + STATUS_COLUMNS
#: Grouped (``g``): a group's size before its status breakdown, its best member after
#: the metrics (the metric columns then hold each group's mean ± std).
GROUP_N: list[tuple[str, str]] = [("n", "n")]
GROUP_BEST: list[tuple[str, str]] = [("best", "best")]

#: Fixed column widths (content, without the one-cell padding on each side): no column
#: is ever measured, so a window costs the same whatever its runs hold. The name's
#: width is chosen per window and terminal width (:meth:`RunTable.name_width`).
WIDTHS: dict[str, int] = {
    "mark": 1,
    "id": 8,
    "status": 8,
    "started": 14,
    "duration": 6,
    "seed": 7,
    "framework": 11,
}
#: The name column: never narrower than this, never wider than its longest name or
#: NAME_MAX; between those, what is left beside id, status and two metric columns.
NAME_MIN, NAME_MAX = 12, 40
#: Metric and extra columns: room for the label and a sort arrow, within these bounds.
METRIC_MIN, METRIC_MAX = 8, 16
#: How many metric columns the name leaves room for.
METRICS_IN_VIEW = 2
#: Blank space on each side of a cell's text.
PAD = 1
#: Grouped: the id column holds a group's id (``g`` + 8 digits) and its members' ids,
#: indented by :data:`INDENT`; the status breakdown is cut past STATUS_MAX.
GROUP_ID_WIDTH, INDENT, STATUS_MAX = 10, "  ", 22
#: The mark column of a group's row: expanded or not.
EXPANDED, COLLAPSED = "▾", "▸"

MARK = "●"
MARK_STYLE = "bold yellow"

#: One laid-out cell: its text, exactly the column's width, and its own style (or None).
Cell = tuple[str, Style | None]


def fit(text: str, width: int, *, middle: bool = False) -> str:
    """``text`` on one line, exactly ``width`` cells: padded, or cut with an ellipsis
    (at the end, or in the middle with ``middle``: a name keeps its distinguishing end).

    Control characters (a newline in a run name, an escape sequence), bidi overrides
    and undecodable bytes are shown escaped (``\\n``, ``\\x1b``), as ``labbook ls`` does.
    """
    text = printable(text)
    if cell_len(text) > width:
        if middle:
            return set_cell_size(short_middle(text, width), width)
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
    """One column: its key (the sort key), header label and content width.

    ``middle``: cut the cell text in the middle (names); ``label_middle``: cut the
    header label in the middle (metric tags, which differ at their end too)."""

    key: str
    label: str
    width: int
    middle: bool = False
    label_middle: bool = False

    @property
    def outer(self) -> int:
        """Cells on screen, padding included."""
        return self.width + 2 * PAD


#: A laid-out row: the cells of the frozen columns, then those of the scrolling ones.
Row = tuple[list[Cell], list[Cell]]


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
        Binding("space", "toggle_mark", "Mark", show=True),
        # a whole column a press; id and name stay put (the status line says when
        # columns are out of view, the header shows ◂ ▸ where they are)
        Binding("left", "scroll_left", "Scroll left", show=False),
        Binding("right", "scroll_right", "Scroll right", show=False),
        # (g groups the runs: the screen's key)
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

    class ColumnsMoved(Message):
        """Columns came into or went out of view (sideways scroll, resize, new columns)."""

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
        self._header: Row = ([], [])
        #: laid-out rows, each on first paint (None until then): a window costs what shows
        self._rows: list[Row | None] = []
        self._frozen_w = 0  # the frozen columns, padding included
        self._scroll_w = 0  # the scrolling columns, padding included
        self._laid_for = 0  # the widget width the columns were chosen for
        self._styles: tuple[Style, Style, Style] = (Style(), Style(), Style())
        #: grouped (``g``): the seed groups, sorted; the lines shown (a group's row,
        #: its members under it when expanded); how many runs the groups hold
        self.grouped = False
        self.groups: list[Group] = []
        self.expanded: set[str] = set()
        self.lines: list[Line] = []
        self.group_runs = 0
        #: grouped: the longest cell of each column over all groups (per read, not per relayout)
        self._measured: dict[str, int] = {}

    # -- loading -----------------------------------------------------------------

    def reload(self, *, keep_id: str | None = None, absolute: int | None = None) -> None:
        """Re-read the window; keep the cursor on ``keep_id`` (or at ``absolute``) if possible."""
        if self.grouped:
            self._load_groups(keep=self._line_key(), at=absolute)
            return
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
        if self.grouped:
            self._load_groups(at=absolute)
            return
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
            # by canonical name (train_loss for train/loss, Loss/train, …): every run's loss
            picked = key_columns(self.records)
            if picked or not self.records:
                self.metric_columns = picked
        self._relayout()
        self.cursor_row = min(max(0, absolute - self.start), max(0, len(self.records) - 1))
        self._scroll_cursor_into_view(line=line)
        self.post_message(self.WindowLoaded(TableState(self.start, len(self.records), self.total)))

    # -- grouped (g) ---------------------------------------------------------------------

    def set_grouped(self, on: bool) -> None:
        """Fold the runs into seed groups (the cursor's run's group under the cursor), or
        list the runs again (the cursor on the member it was on, else the top)."""
        if on == self.grouped:
            return
        rid = self.current_run_id()
        if on:
            view = self.notebook.groups(self.query_state)  # before any change: it may fail
            self.grouped = True
            self.records = []
            group = next((g.id for g in view.groups if any(m["id"] == rid for m in g.members)), "")
            self._show_groups(view, keep=(group, None) if group else None, at=0)
            return
        self.grouped = False
        self.groups, self.lines = [], []
        self.metric_columns = []
        if self.query_state.sort in GROUP_ONLY:
            self.query_state.sort, self.query_state.descending = None, False
        pos = self.notebook.position_of(self.query_state, rid) if rid else None
        self._load_around(pos or 0)

    def _load_groups(self, *, keep: tuple[str, str | None] | None = None, at: int | None) -> None:
        self._show_groups(self.notebook.groups(self.query_state), keep=keep, at=at)

    def _show_groups(
        self, view: GroupedRuns, *, keep: tuple[str, str | None] | None, at: int | None
    ) -> None:
        q = self.query_state
        self.groups = sort_groups(view.groups, q.sort, q.descending)
        self.group_runs = view.runs
        self.metric_columns = view.metrics
        ids = {g.id for g in self.groups}
        self.expanded &= ids
        self._measured = {}
        self._set_lines(keep=keep, at=at)

    def _set_lines(self, *, keep: tuple[str, str | None] | None, at: int | None = None) -> None:
        """Lay the groups out as lines again; the cursor on line ``keep`` (a group id
        and member id), else at ``at``, else where it was."""
        line = self.cursor_row - self.scroll_offset.y
        self.lines = lines_of(self.groups, self.expanded)
        self.start, self.total, self.more = 0, len(self.lines), False
        self._relayout()
        row = self.cursor_row if at is None else at
        if keep is not None:
            gid, rid = keep
            found = [i for i, (g, m) in enumerate(self.lines) if g.id == gid]
            member = [i for i in found if (m := self.lines[i][1]) is not None and m["id"] == rid]
            row = (member or found or [row])[0]
        self.cursor_row = min(max(0, row), max(0, len(self.lines) - 1))
        self._scroll_cursor_into_view(line=line)
        self.post_message(self.WindowLoaded(TableState(0, len(self.lines), len(self.lines))))

    def _line_key(self) -> tuple[str, str | None] | None:
        if not self.grouped or not 0 <= self.cursor_row < len(self.lines):
            return None
        group, member = self.lines[self.cursor_row]
        return group.id, member["id"] if member else None

    def current_group(self) -> Group | None:
        """Grouped: the group of the line under the cursor (its row or a member's)."""
        if not self.grouped or not 0 <= self.cursor_row < len(self.lines):
            return None
        return self.lines[self.cursor_row][0]

    def toggle_expanded(self) -> None:
        """Show or hide the members of the group under the cursor (the cursor on its row)."""
        group = self.current_group()
        if group is None:
            return
        if group.id in self.expanded:
            self.expanded.discard(group.id)
        else:
            self.expanded.add(group.id)
        self._set_lines(keep=(group.id, None))

    def _relayout(self) -> None:
        """Choose the columns for this window and width; rows are laid out again on paint."""
        self._laid_for = self.scrollable_content_region.width
        self._columns = self._make_columns()
        frozen = self._columns[: len(FROZEN_COLUMNS)]
        self._frozen_w = sum(c.outer for c in frozen)
        self._scroll_w = sum(c.outer for c in self._columns[len(FROZEN_COLUMNS) :])
        labels: list[tuple[str, str | None]] = [(c.label, None) for c in self._columns]
        self._header = self._layout(labels, header=True)
        self._rows = [None] * (len(self.lines) if self.grouped else len(self.records))
        # room to scroll until the last columns start at a column's edge (whole columns)
        view = self._laid_for - self._frozen_w
        wide = max(self._scroll_w, self._max_scroll_x() + view)
        self.virtual_size = Size(self._frozen_w + wide, len(self._rows) + 1)
        self.refresh()

    def columns_spec(self) -> list[tuple[str, str]]:
        extra = [(f"metrics.{m}", m) for m in self.metric_columns]
        extra += [(c, c) for c in self.query_state.extra_columns if c not in self.metric_columns]
        if self.grouped:
            return FROZEN_COLUMNS + GROUP_N + STATUS_COLUMNS + extra + GROUP_BEST + TAIL_COLUMNS
        return FROZEN_COLUMNS + STATUS_COLUMNS + extra + TAIL_COLUMNS

    def _names(self) -> list[str]:
        if not self.grouped:
            return [r.get("name") or "" for r in self.records]
        return [(m.get("name") if m else g.row.get("name")) or "" for g, m in self.lines]

    def _group_widths(self) -> dict[str, int]:
        """Grouped: the widths that differ from a runs table's (id, n, status breakdown)."""
        longest_n = self._longest("n", lambda g: str(g.row["size"]))
        status = self._longest("status", Group.status)
        return {
            "id": GROUP_ID_WIDTH,
            "n": max(1, longest_n),
            "status": max(WIDTHS["status"], min(status, STATUS_MAX)),
            "best": WIDTHS["id"],
        }

    def _longest(self, key: str, text: Callable[[Group], str]) -> int:
        """Grouped: the widest ``text`` of column ``key`` over the groups (measured once a read)."""
        if key not in self._measured:
            self._measured[key] = max((cell_len(text(g)) for g in self.groups), default=0)
        return self._measured[key]

    def _metric_width(self, key: str, label: str) -> int:
        """A metric or extra column's width: room for the label and a sort arrow; grouped,
        for its longest mean ± std too (within the same bounds)."""
        width = cell_len(label)
        if self.grouped and key.startswith("metrics."):
            width = max(width, self._longest(key, lambda g: g.cell(key)))
        return max(METRIC_MIN, min(width, METRIC_MAX))

    def name_width(self, columns: list[Column]) -> int:
        """The name column's width: its longest name in this window, as far as the
        terminal leaves room beside id, status and :data:`METRICS_IN_VIEW` metric columns."""
        longest = max((cell_len(printable(n)) for n in self._names()), default=0)
        beside = sum(c.outer for c in columns if c.key != "name")
        room = self._laid_for - beside - 2 * PAD
        return max(NAME_MIN, min(longest, NAME_MAX, room))

    def _make_columns(self) -> list[Column]:
        q = self.query_state
        columns = []
        fixed = {k for k, _ in FROZEN_COLUMNS + STATUS_COLUMNS + TAIL_COLUMNS}
        widths = dict(WIDTHS)
        if self.grouped:
            fixed |= set(GROUP_ONLY)
            widths.update(self._group_widths())
        for key, label in self.columns_spec():
            if key == q.sort or key == f"metrics.{q.sort}":
                label = f"{label} {'▼' if q.descending else '▲'}"
            if key in fixed:
                columns.append(Column(key, label, widths.get(key, 0), middle=key == "name"))
            else:
                columns.append(
                    Column(key, label, self._metric_width(key, label), label_middle=True)
                )
        name = next(c for c in columns if c.key == "name")
        first = len(FROZEN_COLUMNS) + len(STATUS_COLUMNS) + (len(GROUP_N) if self.grouped else 0)
        in_view = columns[:first] + columns[first : first + METRICS_IN_VIEW]
        name.width = self.name_width(in_view)
        return columns

    def _cells(self, rec: RunRecord) -> list[tuple[str, str | None]]:
        """One run's cells as (text, style) in column order (before fitting)."""
        now = self.clock() if self.clock else None
        status = rec.get("status") or "unknown"
        marked = rec["id"] in self.marked
        cells: list[tuple[str, str | None]] = [
            (MARK, MARK_STYLE) if marked else (" ", None),
            (rec["id"], None),
            (printable(rec.get("name") or ""), None),
            (status, STATUS_STYLE.get(status)),
        ]
        for column in self._middle():
            cells.append((fmt_value(column_value(rec, column.key)), None))
        cells += self._tail_cells(rec, now)
        return cells

    def _middle(self) -> list[Column]:
        """The metric and extra columns (between the status and the tail)."""
        first = len(BASE_COLUMNS) + (len(GROUP_N) if self.grouped else 0)
        last = len(self._columns) - len(TAIL_COLUMNS) - (len(GROUP_BEST) if self.grouped else 0)
        return self._columns[first:last]

    def _tail_cells(self, rec: RunRecord, now: float | None) -> list[tuple[str, str | None]]:
        seed = seed_text(rec)
        return [
            (fmt_time(rec.get("started_at"), self.tz, short=True), None),
            (fmt_duration(rec, now), None),
            (seed, "yellow" if seed_missing(rec) else None),
            (rec.get("framework") or "", None),
        ]

    def _cells_at(self, index: int) -> list[tuple[str, str | None]]:
        """The cells of line ``index``: a run, or (grouped) a group's row or a member's."""
        if not self.grouped:
            return self._cells(self.records[index])
        group, member = self.lines[index]
        if member is None:
            return self._group_cells(group)
        return self._member_cells(group, member)

    def _group_cells(self, group: Group) -> list[tuple[str, str | None]]:
        """A folded group: its id, name (the seed left out), n, status breakdown, each
        metric as mean ± std (extra config keys: its newest run's), its best member."""
        row = group.row
        newest = group.members[0] if group.members else None
        counts = row.get("statuses") or {}
        cells: list[tuple[str, str | None]] = [
            (EXPANDED if group.id in self.expanded else COLLAPSED, "dim"),
            (group.id, None),
            (printable(row.get("name") or ""), None),
            (str(row["size"]), None),
            (group.status(), STATUS_STYLE.get(worst_status(counts))),
        ]
        for column in self._middle():
            if column.key.startswith("metrics."):
                cells.append((group.cell(column.key), None))
            else:
                value = column_value(newest, column.key) if newest else None
                cells.append((fmt_value(value), None))
        cells += [
            (group.best_id or "—", None),
            (fmt_time(row.get("started_at"), self.tz, short=True), None),
            ("", None),
            ("", None),
            ((newest.get("framework") if newest else None) or "", None),
        ]
        return cells

    def _member_cells(self, group: Group, rec: RunRecord) -> list[tuple[str, str | None]]:
        """A member under its group's row: a run's cells, its id indented; ``best``
        when it is the group's best member."""
        cells = self._cells(rec)
        cells[1] = (INDENT + rec["id"], None)
        cells.insert(3, ("", None))
        best = rec["id"] == group.best_id
        cells.insert(-4, ("best", "bold") if best else ("", None))
        return cells

    def _layout(self, cells: list[tuple[str, str | None]], *, header: bool = False) -> Row:
        """Cells fitted to their columns and padded, runs of unstyled text merged;
        the frozen columns' cells apart from the scrolling ones'."""
        frozen = len(FROZEN_COLUMNS)
        parts: list[list[Cell]] = []
        for part in (slice(0, frozen), slice(frozen, None)):
            out: list[Cell] = []
            plain: list[str] = []
            for column, (text, style) in zip(self._columns[part], cells[part], strict=False):
                middle = column.label_middle if header else column.middle
                fitted = fit(str(text), column.width, middle=middle or column.middle)
                if style is None:
                    plain.append(" " * PAD + fitted + " " * PAD)
                    continue
                plain.append(" " * PAD)
                out.append(("".join(plain), None))
                out.append((fitted, Style.parse(style)))
                plain = [" " * PAD]
            if plain:
                out.append(("".join(plain), None))
            parts.append(out)
        return parts[0], parts[1]

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
        """Line ``y`` of the widget: the header, or a row of the window.

        The frozen columns (mark, id, name) are drawn at the left whatever the
        horizontal scroll; the other columns are cropped to the scroll position."""
        width = self.size.width
        scroll_x, scroll_y = self.scroll_offset
        base, header, cursor = self._styles
        on_cursor = False
        if y == 0:
            row: Row = self._header
            style = header
        else:
            index = y - 1 + scroll_y
            if index >= len(self._rows):
                return Strip.blank(width, base)
            laid = self._rows[index]
            if laid is None:
                laid = self._rows[index] = self._layout(self._cells_at(index))
            row = laid
            style = base
            on_cursor = index == self.cursor_row

        def segments(cells: list[Cell]) -> list[Segment]:
            if on_cursor:
                return [Segment(text, base + (cs + cursor if cs else cursor)) for text, cs in cells]
            return [Segment(text, style + cs if cs else style) for text, cs in cells]

        if on_cursor:
            style = base + cursor
        frozen_cells, scroll_cells = row
        frozen = Strip(segments(frozen_cells), self._frozen_w)
        if width <= self._frozen_w:
            return frozen.crop_extend(0, width, style)
        view = width - self._frozen_w
        rest = Strip(segments(scroll_cells), self._scroll_w).crop_extend(
            scroll_x, scroll_x + view, style
        )
        if y == 0:
            rest = self._scroll_hints(rest, scroll_x, view, style)
        return Strip.join([frozen, rest])

    def _scroll_hints(self, strip: Strip, scroll_x: int, view: int, style: Style) -> Strip:
        """The header says where more columns are: ◂ at its left edge, ▸ at its right."""
        left = scroll_x > 0
        right = scroll_x + view < self._scroll_w
        if not (left or right):
            return strip
        hint = style + Style(dim=True)
        pieces = []
        if left:
            pieces.append(Strip([Segment("◂", hint)], 1))
            strip = strip.crop(1, view)
        if right:
            strip = strip.crop(0, strip.cell_length - 1)
        pieces.append(strip)
        if right:
            pieces.append(Strip([Segment("▸", hint)], 1))
        return Strip.join(pieces)

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
        if self.scrollable_content_region.width != self._laid_for and self._columns:
            self._relayout()  # the name's width follows the terminal's
        self._scroll_cursor_into_view()
        self.post_message(self.ColumnsMoved())

    # -- sideways, a whole column at a time ---------------------------------------------

    def watch_scroll_x(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_x(old_value, new_value)
        if round(old_value) != round(new_value):
            self.post_message(self.ColumnsMoved())

    def _edges(self) -> list[int]:
        """Where each scrolling column starts, in the scrolled part's cells."""
        edges, x = [], 0
        for column in self._columns[len(FROZEN_COLUMNS) :]:
            edges.append(x)
            x += column.outer
        return edges

    def _max_scroll_x(self) -> int:
        """The first column edge from which all the remaining columns fit in view."""
        view = self._laid_for - self._frozen_w
        return next((e for e in self._edges() if self._scroll_w - e <= view), 0)

    def _scroll_x_to(self, x: int) -> None:
        x = max(0, min(x, self._max_scroll_x()))
        if x != self.scroll_offset.x:
            self.scroll_to(x=x, animate=False, force=True)
            self.refresh()

    def action_scroll_right(self) -> None:
        """The next column comes into view: the scrolling part starts one column further."""
        x = self.scroll_offset.x
        self._scroll_x_to(next((e for e in self._edges() if e > x), self._max_scroll_x()))

    def action_scroll_left(self) -> None:
        x = self.scroll_offset.x
        self._scroll_x_to(max((e for e in self._edges() if e < x), default=0))

    def hidden_columns(self) -> int:
        """How many columns are not wholly in view (scrolled off to either side)."""
        return len(self._columns) - len(self.visible_columns())

    def first_visible_column(self) -> str | None:
        """The key of the first scrolling column in view (after id and name)."""
        x = self.scroll_offset.x
        spec = self._columns[len(FROZEN_COLUMNS) :]
        for column, edge in zip(spec, self._edges(), strict=True):
            if edge + column.outer > x:
                return column.key
        return None

    def visible_columns(self) -> list[str]:
        """Keys of the columns wholly on screen: the frozen ones, then those scrolled to."""
        keys = [c.key for c in self._columns[: len(FROZEN_COLUMNS)]]
        x, view = self.scroll_offset.x, self.scrollable_content_region.width - self._frozen_w
        spec = self._columns[len(FROZEN_COLUMNS) :]
        for column, edge in zip(spec, self._edges(), strict=True):
            if edge >= x and edge + column.outer <= x + view:
                keys.append(column.key)
        return keys

    def show_column(self, key: str) -> None:
        """Scroll sideways as little as needed for column ``key`` to be wholly in view."""
        spec = self._columns[len(FROZEN_COLUMNS) :]
        keys = [c.key for c in spec]
        if key not in keys and f"metrics.{key}" in keys:
            key = f"metrics.{key}"
        if key not in keys:
            return  # a frozen column, or one not shown: nothing to scroll
        i = keys.index(key)
        start = self._edges()[i]
        end = start + spec[i].outer
        view = self.scrollable_content_region.width - self._frozen_w
        x = self.scroll_offset.x
        if start < x:
            x = start
        elif end > x + view:
            # whole columns off to the left, until this one fits
            x = next((e for e in self._edges() if end - e <= view), start)
        self._scroll_x_to(x)

    def move_cursor(self, *, row: int, animate: bool = False) -> None:
        """Put the cursor on row ``row`` of the window and scroll it into view."""
        row = min(max(0, row), max(0, len(self._rows) - 1))
        if row != self.cursor_row:
            self.cursor_row = row
            self.refresh()
        self._scroll_cursor_into_view()

    def action_select_cursor(self) -> None:
        if self.grouped and self.current_run_id() is None:
            self.toggle_expanded()  # a group's row: its members under it, or not
            return
        rid = self.current_run_id()
        if rid is not None:
            self.post_message(self.RowSelected(rid))

    def _column_at(self, x: int) -> str | None:
        """The key of the column at cell ``x`` of the widget (as it shows, scrolled)."""
        columns = self._columns
        if x >= self._frozen_w:
            x = x - self._frozen_w + self.scroll_offset.x
            columns = columns[len(FROZEN_COLUMNS) :]
        for column in columns:
            x -= column.outer
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
            key = self._column_at(offset.x)
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
        return [text for text, _style in self._cells_at(row)]

    def current_run_id(self) -> str | None:
        """The run under the cursor (grouped: a member's line; None on a group's row)."""
        if self.grouped:
            if not 0 <= self.cursor_row < len(self.lines):
                return None
            member = self.lines[self.cursor_row][1]
            return str(member["id"]) if member else None
        if not self.records or self.cursor_row < 0 or self.cursor_row >= len(self.records):
            return None
        return str(self.records[self.cursor_row]["id"])

    def current_record(self) -> RunRecord | None:
        rid = self.current_run_id()
        if self.grouped:
            return self.lines[self.cursor_row][1] if rid else None
        return self.records[self.cursor_row] if rid else None

    @property
    def absolute(self) -> int:
        return self.start + max(0, self.cursor_row)

    # -- cursor over absolute positions ------------------------------------------------

    def _goto(self, absolute: int) -> None:
        if self.total == 0:
            return
        absolute = max(0, absolute if self.more else min(absolute, self.total - 1))
        inside = self.start <= absolute < self.start + self.row_count
        at_edge = (
            absolute == self.start + self.row_count - 1 and (absolute < self.total - 1 or self.more)
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
