"""The TUI's one door to the data: labbook's public Store and query API, nothing else.

Screens never touch SQL or the connection; they ask a :class:`Notebook` for a
window of runs, one run's record, its curves, and to save a note. Keeping this in
one place makes the TUI a pure view and lets tests swap the database path freely.

All reads are short and run on the UI thread: a window is at most a few hundred
rows and a record is one run, so they take milliseconds even at 100,000 runs
(measured by benchmarks/bench_tui.py). The only writes are one note or one set of
tags, each its own short transaction (``Store.add_note`` / ``Store.add_tags``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labbook.errors import LabbookError
from labbook.model import Point, RunRecord
from labbook.store import Store

if TYPE_CHECKING:
    from labbook_tui.groups import GroupedRuns

#: What to tell someone whose notebook is empty or missing.
EMPTY_HINT = "start `labbook watch` or run `labbook import PATH`"

_HAS_OP = re.compile(r"(==|!=|<=|>=|=|<|>|~)")


@dataclass
class Window:
    """One window of the runs list: ``records`` are rows ``offset .. offset+len`` of ``total``."""

    offset: int
    total: int
    records: list[RunRecord]
    #: ``total`` is a lower bound: counting stopped there (see Notebook.window)
    more: bool = False


@dataclass
class Query:
    """What the runs screen shows: filter text (``--where`` syntax) and sort order."""

    text: str = ""
    sort: str | None = None
    descending: bool = False
    extra_columns: list[str] = field(default_factory=list)


def parse_filter(text: str) -> Any:
    """Filter-bar text → a ``RunFilter``; raises ``LabbookError`` (e.g. QueryError) if unreadable.

    The syntax is ``labbook ls --where``'s (``optimizer.lr>=0.01 and status=failed``),
    plus two conveniences for typing: ``tag=NAME`` filters on a tag, and words
    without an operator match the run name (``resnet`` → ``name~*resnet*``).
    """
    from labbook.analysis.metrics import canonical_tags
    from labbook.store.query import RunFilter, parse_where

    # metric names as the columns show them: train_loss<0.5 and a sort by train_loss
    # read each run's own tag for it (train/loss, Loss/train, …)
    flt = RunFilter(limit=None, metric_names=canonical_tags)
    parts = [p for p in re.split(r"\s+and\s+", text.strip(), flags=re.IGNORECASE) if p.strip()]
    where: list[str] = []
    for part in parts:
        part = part.strip()
        m = re.fullmatch(r"tags?\s*=\s*(\S+)", part)
        if m:
            flt.tags.append(m[1].strip("'\""))
        elif not _HAS_OP.search(part):
            where.append(f"name~*{part}*")
        else:
            where.append(part)
    flt.where = parse_where(where) if where else []
    return flt


class Notebook:
    """An open (or not yet existing) labbook database, read through the public API.

    ``path`` may name a file that does not exist yet: the notebook is then empty and
    :meth:`poll` opens it as soon as ``labbook watch`` or ``labbook import`` creates it.
    """

    def __init__(
        self, path: str | Path | None, *, opener: Callable[[], Store] | None = None
    ) -> None:
        from labbook.paths import default_db_path

        self.path = Path(path).expanduser() if path else default_db_path()
        #: Opens the store instead of the file at ``path`` (``labbook tui --remote``:
        #: the lab's notebook, ``labbook.store.remote.read.open_remote``).
        self.opener = opener
        self.store: Store | None = None
        self.error: str | None = None
        self._version: int | None = None
        self._filter_cache: tuple[str, Any] | None = None
        #: the last :meth:`groups` and what it was read for (filter, columns, data version)
        self._groups_cache: tuple[tuple[Any, ...], GroupedRuns] | None = None
        self.open()

    # -- opening and change detection --------------------------------------------

    def open(self) -> bool:
        """Open the database if it exists (never create it: the TUI only reads and annotates)."""
        if self.store is not None:
            return True
        if self.opener is not None:
            try:
                self.store = self.opener()
            except LabbookError as exc:
                self.error = str(exc)
                return False
            self.path = Path(str(getattr(self.store, "where", self.path)))
            self.error = None
            self._version = self.store.data_version()
            return True
        if not self.path.exists():
            self.error = f"no labbook database at {self.path}"
            return False
        try:
            self.store = Store.open(self.path, create=False)
        except LabbookError as exc:
            self.error = exc.message if hasattr(exc, "message") else str(exc)
            return False
        self.error = None
        self._version = self.store.data_version()
        return True

    def close(self) -> None:
        self._groups_cache = None
        if self.store is not None:
            self.store.close()
            self.store = None

    def poll(self) -> bool:
        """True when another process committed since the last poll (``PRAGMA data_version``)."""
        if self.store is None:
            return self.open()
        version = self.store.data_version()
        changed = version != self._version
        self._version = version
        return changed

    # -- reading -----------------------------------------------------------------

    def filter_for(self, text: str) -> Any:
        """Parsed filter for ``text``, cached: typing re-parses only what changed."""
        if self._filter_cache is None or self._filter_cache[0] != text:
            self._filter_cache = (text, parse_filter(text))
        return self._filter_cache[1]

    #: Counting stops past this many matches (or twice the position asked for): typing
    #: a filter over 100,000 runs must not count them all on every keystroke.
    COUNT_CAP = 10_000

    def window(self, query: Query, offset: int, limit: int, *, exact: bool = False) -> Window:
        """Rows ``offset .. offset+limit`` for ``query`` as ``--json`` records (light).

        ``total`` is exact up to :attr:`COUNT_CAP` (or ``exact``); beyond, the window
        says ``more`` and ``total`` is where counting stopped.
        """
        if self.store is None:
            return Window(0, 0, [])
        from labbook.store.query import count_runs, select_runs_window

        store = self.store
        flt = self.filter_for(query.text)

        def rows_at(offset: int, limit: int) -> list[dict[str, Any]]:
            return select_runs_window(
                store,
                flt,
                offset=offset,
                limit=limit,
                sort=query.sort,
                descending=query.descending,
            )

        if offset <= 0:
            # The first window (every filter keystroke), read first: a filter that
            # matches less than a window (a name, a tag) then needs no count, which
            # would scan the whole table once more for those few matches. (Not
            # ``limit + 1`` rows to tell "exactly a window": proving there is no
            # next match costs that same full scan.)
            rows = rows_at(0, limit)
            if len(rows) < limit:
                return Window(0, len(rows), store.records(rows, heavy=False))
        cap = None if exact else max(self.COUNT_CAP, 2 * (offset + limit))
        total = count_runs(store, flt, cap=cap)
        more = cap is not None and total > cap
        total = min(total, cap) if cap is not None else total
        if offset > 0:
            offset = max(0, min(offset, max(0, total - limit)))
            rows = rows_at(offset, limit)
        else:
            offset = 0
        return Window(offset, total, store.records(rows, heavy=False), more)

    def groups(self, query: Query) -> GroupedRuns:
        """The runs matching ``query``'s filter by seed group, each folded by the core
        (:func:`labbook.analysis.groups.grouped` and :func:`~labbook.analysis.groups.fold`,
        as ``labbook ls --group -n 0``): the group with the newest run first. Every
        matching run is read (light records) and folded; the result is kept until the
        filter, the extra columns or the data change (a new sort, an expanded group,
        a repaint read nothing)."""
        from labbook_tui.groups import Group, GroupedRuns

        if self.store is None:
            return GroupedRuns([], [], 0)
        from labbook.analysis.groups import fold, grouped, metric_columns

        key = (query.text, tuple(query.extra_columns), self.store.data_version())
        if self._groups_cache is not None and self._groups_cache[0] == key:
            return self._groups_cache[1]
        flt = self.filter_for(query.text)
        found, _ = grouped(self.store, flt)
        everyone = [r for _, members in found for r in members]
        metrics = metric_columns(everyone)
        # extra metric columns (c: metrics.TAG) are summarised too; config keys are
        # the same across a group but for the seed: its newest run's value shows
        extra = [
            c.split(".", 1)[1]
            for c in query.extra_columns
            if c.startswith("metrics.") and c.split(".", 1)[1] not in metrics
        ]
        groups = [
            Group(fold(members, kind="seed", group_id=gid, columns=metrics + extra), members)
            for gid, members in found
        ]
        view = GroupedRuns(groups, metrics, len(everyone), extra)
        self._groups_cache = (key, view)
        return view

    def position_of(self, query: Query, run_id: str, limit: int = 5000) -> int | None:
        """Index of ``run_id`` among the first ``limit`` rows of ``query`` (to keep a cursor)."""
        if self.store is None:
            return None
        from labbook.store.query import select_runs_window

        rows = select_runs_window(
            self.store,
            self.filter_for(query.text),
            limit=limit,
            sort=query.sort,
            descending=query.descending,
        )
        for i, row in enumerate(rows):
            if row["id"] == run_id:
                return i
        return None

    def record(self, run_id: str) -> RunRecord | None:
        """The whole ``--json`` record of one run (with diff and packages), or None if gone."""
        if self.store is None:
            return None
        try:
            return self.store.record(run_id, heavy=True)
        except LabbookError:
            return None

    def series(self, run_id: str) -> dict[str, list[Point]]:
        return self.store.series(run_id) if self.store is not None else {}

    def log_tail(self, run_id: str) -> str | None:
        return self.store.log_tail(run_id) if self.store is not None else None

    def resolve(self, ref: str) -> str | None:
        """A run reference (id prefix, name, ``@last``…) → id, or None."""
        if self.store is None:
            return None
        from labbook.store.query import resolve

        try:
            return resolve(self.store, ref)
        except LabbookError:
            return None

    def find_runs(self, text: str, limit: int = 20) -> list[dict[str, Any]]:
        """Runs whose id starts with, or whose name contains, ``text`` (command palette)."""
        if self.store is None:
            return []
        from labbook.store.query import RunFilter, parse_where, select_runs_window

        safe = text.replace("'", "").strip()
        flt = (
            RunFilter(limit=None, where=parse_where([f"name~'*{safe}*'"])) if safe else RunFilter()
        )
        rows = select_runs_window(self.store, flt, limit=limit)
        if re.fullmatch(r"[0-9a-f]{1,8}", safe):
            by_id = select_runs_window(
                self.store, RunFilter(limit=None, where=parse_where([f"id~'{safe}*'"])), limit=limit
            )
            seen = {r["id"] for r in by_id}
            rows = by_id + [r for r in rows if r["id"] not in seen]
        return rows[:limit]

    def search(self, text: str, limit: int = 50) -> list[Any]:
        """Full-text search over notes and failures (``labbook.store.search``)."""
        from labbook.store.search import search

        if self.store is None:
            return []
        return list(search(self.store, text, limit=limit))

    def diff(self, a: str, b: str) -> dict[str, Any]:
        """``labbook diff A B``'s result (:func:`labbook.analysis.diff.diff_store`): seed
        peers, the commits between the runs, untracked files that are other runs' outputs
        left out. LookupError if a run is gone."""
        from labbook.analysis.diff import diff_store

        if self.store is None:
            raise LookupError("one of the runs is gone")
        try:
            result, _, _ = diff_store(self.store, a, b)
        except LabbookError as exc:
            raise LookupError(exc.message) from exc
        return result

    # -- writing (one short transaction each) ----------------------------------------

    def add_note(self, run_id: str, text: str, kind: str) -> None:
        if self.store is None:
            return
        self._groups_cache = None  # our own commits leave data_version as it is
        self.store.add_note(run_id, text, kind=kind)

    def set_tags(self, run_id: str, add: list[str], remove: list[str]) -> None:
        if self.store is None:
            return
        self._groups_cache = None
        if add:
            self.store.add_tags(run_id, add)
        if remove:
            self.store.remove_tags(run_id, remove)

    @property
    def empty(self) -> bool:
        return self.store is None


Clock = Callable[[], float]
