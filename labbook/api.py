"""labbook's Python API: the library the ``labbook`` command is a façade over.

::

    import labbook

    with labbook.open() as nb:  # $LABBOOK_DB, else ~/.local/share/labbook/labbook.db
        for run in nb.runs(where=["optimizer.lr>=0.01"], status="finished", limit=10):
            print(run["id"], run["name"], run["metrics"].get("val/loss"))
        last = nb.run("@last")
        curves = nb.curves([last["id"]], "val_loss")

A notebook is read-only unless opened with ``writable=True`` (the SQLite file is
opened with ``mode=ro``); only then do :meth:`Notebook.note` and
:meth:`Notebook.tag` write. Queries are :mod:`labbook.store.query`'s, exactly as
``labbook ls`` and ``labbook show`` run them; records are the ``--json`` shape
(:class:`labbook.model.RunRecord`).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

from labbook.errors import LabbookError, StoreError, UsageError
from labbook.model import Point, RunRecord

if TYPE_CHECKING:
    from labbook.store import Store

__all__ = ["Notebook", "ReadOnlyNotebook", "open"]

#: What a run may be given as: a reference (id, id prefix, name, path, ``@last``,
#: ``@-N``) or a record from :meth:`Notebook.runs` / :meth:`Notebook.run`.
RunRef = str | RunRecord

NOTE_KINDS = ("note", "failure", "lesson")


class ReadOnlyNotebook(StoreError):
    """A write was asked of a notebook opened read-only."""


def open(path: str | os.PathLike[str] | None = None, *, writable: bool = False) -> Notebook:
    """Open the labbook database as the CLI finds it: ``path`` (the CLI's ``--db``),
    else ``$LABBOOK_DB``, else ``$XDG_DATA_HOME/labbook/labbook.db``.

    Read-only by default; ``writable=True`` allows :meth:`Notebook.note` and
    :meth:`Notebook.tag`. A database that does not exist is an error
    (:class:`~labbook.errors.StoreError`), never created here.
    """
    from labbook.store import Store

    if writable:
        from labbook.store.journal import replay_all

        store = Store.open(path, create=False)
        try:
            replay_all(store)  # as the CLI's open_store: writes `labbook run` journalled
        except Exception as exc:
            from labbook.warn import warn_exception

            warn_exception(None, "cannot write the journal", exc, expected=(LabbookError,))
        return Notebook(store, writable=True)
    return Notebook(_open_read_only(path), writable=False)


def _open_read_only(path: str | os.PathLike[str] | None) -> Store:
    """The store over a ``mode=ro`` connection. A database of an older schema is
    upgraded first (through :meth:`Store.open`), as any labbook command would."""
    from labbook.paths import default_db_path
    from labbook.store import Store
    from labbook.store.schema import SCHEMA_VERSION

    db_path = Path(path).expanduser() if path is not None else default_db_path()
    _exists(db_path)
    conn, version = _connect_read_only(db_path)
    if version < SCHEMA_VERSION:
        conn.close()
        Store.open(db_path, create=False).close()
        conn, version = _connect_read_only(db_path)
    if version != SCHEMA_VERSION:
        conn.close()
        raise StoreError(
            f"{db_path} was written by a newer labbook (schema {version})",
            hint="upgrade labbook",
        )
    return Store(conn, db_path)


def _connect_read_only(db_path: Path) -> tuple[sqlite3.Connection, int]:
    from urllib.parse import quote

    try:
        conn = sqlite3.connect(
            f"file:{quote(str(db_path.absolute()))}?mode=ro",
            uri=True,
            check_same_thread=False,
            isolation_level=None,
        )
        conn.execute("PRAGMA busy_timeout = 10000")
        return conn, int(conn.execute("PRAGMA user_version").fetchone()[0])
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"cannot open {db_path}: {exc}") from exc


def _exists(db_path: Path) -> None:
    try:
        exists = db_path.exists()
    except OSError as exc:
        raise StoreError(f"cannot open {db_path}: {exc.strerror or exc}") from exc
    if not exists:
        raise StoreError(
            f"no labbook database at {db_path}",
            hint="start `labbook watch` or run `labbook import PATH` first",
        )
    if db_path.is_dir():
        raise StoreError(f"{db_path} is a directory, not a labbook database")


def _strings(value: str | Iterable[str] | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return list(value)


class Notebook:
    """An open labbook database. Use as a context manager, or call :meth:`close`."""

    def __init__(self, store: Store, *, writable: bool = False) -> None:
        self.store = store
        self.writable = writable

    @property
    def path(self) -> Path:
        return self.store.path

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Notebook:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "writable" if self.writable else "read-only"
        return f"<labbook.Notebook {str(self.path)!r} ({mode})>"

    # -- reading -------------------------------------------------------------------

    def runs(
        self,
        *,
        where: str | Iterable[str] | None = None,
        status: str | Iterable[str] | None = None,
        tag: str | Iterable[str] | None = None,
        framework: str | Iterable[str] | None = None,
        since: str | None = None,
        limit: int | None = None,
    ) -> list[RunRecord]:
        """The runs that match, newest first, as ``labbook ls --json`` has them.

        ``where``: conditions as ``--where`` takes them (``"optimizer.lr>=0.01"``,
        ``"val_loss<0.3"``, ``"name~resnet*"``), all must hold; ``status``, ``tag``,
        ``framework``: one or several (any of them); ``since``: ``"30d"``, ``"12h"``,
        an ISO date; ``limit``: at most this many (None or 0: all). A key that no
        run has is a :class:`~labbook.errors.QueryError` naming the nearest keys.
        """
        from labbook.store.query import select_runs

        rows = select_runs(self.store, self._filter(where, status, tag, framework, since, limit))
        return self.store.records(rows, heavy=False)

    def _filter(
        self,
        where: str | Iterable[str] | None,
        status: str | Iterable[str] | None,
        tag: str | Iterable[str] | None,
        framework: str | Iterable[str] | None,
        since: str | None,
        limit: int | None,
    ) -> Any:
        """The RunFilter the CLI builds too (:func:`labbook.analysis.filters.user_filter`)."""
        from labbook.analysis.filters import user_filter

        if limit is not None and limit < 0:
            raise UsageError(f"limit must be 0 (all) or more, not {limit}")
        return user_filter(
            status=_strings(status),
            framework=_strings(framework),
            tags=_strings(tag),
            where=_strings(where),
            since=since,
            limit=limit,
        )

    def resolve(self, ref: RunRef) -> str:
        """The run id of ``ref``: an id or id prefix, a name, a path, ``@last``,
        ``@-N`` (the N-th newest), or a record."""
        from labbook.store.query import resolve

        if isinstance(ref, dict):
            return ref["id"]
        if not isinstance(ref, str):
            raise UsageError(f"a run is a reference string or a run record, not {ref!r}")
        return resolve(self.store, ref)

    def run(self, ref: RunRef, *, heavy: bool = True) -> RunRecord:
        """Everything recorded about one run, as ``labbook show --json`` has it
        (``heavy=False``: without the git diff and the package list)."""
        return self.store.record(self.resolve(ref), heavy=heavy)

    def curves(
        self,
        runs: RunRef | Sequence[RunRef],
        tags: str | Iterable[str] | None = None,
        *,
        full: bool = False,
    ) -> dict[str, dict[str, list[Point]]]:
        """The metric curves of ``runs``: ``{run_id: {tag: [Point(step, value, wall_time), …]}}``,
        as ``labbook export --curves`` writes them.

        ``tags``: the tags or metric names wanted (``"val_loss"`` also gives
        ``val/loss``, ``eval_loss``, … as the run recorded it); None: every curve.
        ``full=False``: the stored curves, downsampled for drawing (at most 1,000
        points a tag); ``full=True``: every point, read again from each run's files
        (a run whose files are gone gives its stored curves, with a warning).
        """
        from labbook.render.export import run_curves

        # a RunRecord is a dict at runtime (a TypedDict does not narrow by isinstance)
        refs = [runs] if isinstance(runs, str | dict) else cast("Sequence[RunRef]", runs)
        wanted = _strings(tags) if tags is not None else None
        return {
            run_id: run_curves(self.store, run_id, wanted, full=full)
            for run_id in (self.resolve(ref) for ref in refs)
        }

    def to_pandas(
        self,
        records: Iterable[RunRecord] | None = None,
        **filters: Any,
    ) -> Any:
        """The runs as a ``pandas.DataFrame``, one row per run: id, name, status,
        framework, started_at, ended_at, path, tags, then ``config.KEY`` and
        ``metrics.TAG`` (the last value) columns. ``records``: these runs; else
        those of :meth:`runs` with ``filters``. Needs pandas (``pip install pandas``
        or ``pip install labbook[pandas]``)."""
        try:
            import pandas
        except ImportError:
            raise LabbookError(
                "pandas is not installed; pip install pandas",
                hint="or: pip install 'labbook[pandas]'",
            ) from None
        rows = list(records) if records is not None else self.runs(**filters)
        flat = []
        for r in rows:
            row: dict[str, Any] = {
                "id": r["id"],
                "name": r["name"],
                "status": r["status"],
                "framework": r["framework"],
                "started_at": r["started_at"],
                "ended_at": r["ended_at"],
                "path": r["path"],
                "tags": list(r["tags"]),
            }
            row.update({f"config.{k}": v for k, v in r["config"].items()})
            row.update({f"metrics.{k}": m["last"] for k, m in r["metrics"].items()})
            flat.append(row)
        return pandas.DataFrame(flat)

    # -- writing -------------------------------------------------------------------

    def _check_writable(self, what: str) -> None:
        if not self.writable:
            raise ReadOnlyNotebook(
                f"cannot {what}: {self.path} is open read-only",
                hint="labbook.open(writable=True)",
            )

    def note(self, run: RunRef, text: str, *, kind: str = "note", author: str | None = None) -> int:
        """Attach a note to ``run`` (``kind``: note, failure or lesson, as
        ``labbook note --failure/--lesson``); returns the note's id."""
        self._check_writable("add a note")
        if kind not in NOTE_KINDS:
            raise UsageError(f"a note's kind is one of {', '.join(NOTE_KINDS)}, not {kind!r}")
        text = text.strip()
        if not text:
            raise UsageError("the note is empty")
        return self.store.add_note(self.resolve(run), text, kind=kind, author=author)

    def tag(self, run: RunRef, *tags: str, remove: bool = False) -> list[str]:
        """Tag ``run`` with ``tags`` (``remove=True``: remove them); returns its tags now."""
        self._check_writable("tag a run")
        if not tags:
            raise UsageError("no tags given")
        bad = [t for t in tags if not t.strip() or any(c.isspace() for c in t)]
        if bad:
            raise UsageError(f"a tag cannot be empty or contain spaces: {bad[0]!r}")
        run_id = self.resolve(run)
        if remove:
            self.store.remove_tags(run_id, tags)
        else:
            self.store.add_tags(run_id, tags)
        return self.store.tags_of([run_id])[run_id]
