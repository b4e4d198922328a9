"""Reading the lab's notebook: :class:`RemoteStore`, the store's read interface over
PostgreSQL.

``RemoteStore`` *is* a :class:`~labbook.store.sqlite.Store`: ``ls``, ``show``,
``search``, ``diff``, ``compare``, ``check``, the TUI and the Python API call the same
methods and the same query code (``store.query``, ``store.search``) as on a node's
own store; the differences are the dialect's (:mod:`labbook.store.dialect`) and the
few reads where the shared notebook has more to say:

* runs pushed by several nodes carry an ``origin``; a run recorded twice (an NFS run
  dir watched by two nodes, a requeued Slurm job) keeps both rows, the older marked
  ``superseded_by`` the newer: listings hide it (``dialect.live``) and the newer
  run's record merges its notes and tags;
* notes are per origin (primary key ``(origin, id)``), tags too: a run's tags are
  the union of every origin's.

It is read-only: a write raises :class:`RemoteReadOnly`, except notes and tags
(``labbook note --remote``, ``labbook tag --remote``), written under this node's
own origin — on a run this node recorded, into its own store (the next push
carries them); on another node's run, straight to the server with a negative id
(a node's own note ids are positive, so the two never collide).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labbook.errors import StoreError
from labbook.model import NoteRecord, RunRecord
from labbook.store.dialect import POSTGRES, Dialect
from labbook.store.sqlite import Store

if TYPE_CHECKING:
    from labbook.store.remote.config import RemoteConfig


class RemoteReadOnly(StoreError):
    """A write other than a note or a tag, asked of the lab's notebook."""


class PgConnection:
    """A psycopg connection that runs the store's SQL (SQLite's, ``?`` placeholders):
    each statement goes through :meth:`Dialect.sql` first."""

    def __init__(self, raw: Any, where: str = "", dialect: Dialect = POSTGRES) -> None:
        self.raw = raw
        self.where = where
        self.dialect = dialect

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        import psycopg

        try:
            # Always a parameter list, even empty: psycopg then reads '%%' as '%'.
            return self.raw.execute(self.dialect.sql(sql), list(params or ()))
        except psycopg.Error as exc:
            raise self._error(exc) from None

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        import psycopg

        try:
            with self.raw.cursor() as cur:
                cur.executemany(self.dialect.sql(sql), [list(r) for r in rows])
        except psycopg.Error as exc:
            raise self._error(exc) from None

    def _error(self, exc: Exception) -> StoreError:
        """A psycopg error as one line: the server gone is RemoteUnavailable."""
        import psycopg

        from labbook.store.remote.conn import RemoteUnavailable

        lines = str(exc).strip().splitlines()
        first = lines[0] if lines else type(exc).__name__
        if isinstance(exc, psycopg.OperationalError) and not isinstance(
            exc, psycopg.errors.QueryCanceled
        ):
            return RemoteUnavailable(f"lost the lab's notebook at {self.where}: {first}")
        if isinstance(exc, psycopg.errors.QueryCanceled):
            return StoreError(f"the lab's notebook at {self.where} took too long: {first}")
        return StoreError(f"the lab's notebook at {self.where} cannot answer: {first}")

    @property
    def in_transaction(self) -> bool:
        import psycopg

        return bool(self.raw.info.transaction_status != psycopg.pq.TransactionStatus.IDLE)

    def commit(self) -> None:
        self.raw.commit()

    def rollback(self) -> None:
        self.raw.rollback()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.raw.close()


class RemoteStore(Store):
    """The lab's notebook on PostgreSQL, read through the store's own read methods."""

    dialect: Dialect = POSTGRES

    def __init__(
        self,
        conn: PgConnection,
        where: str,
        *,
        local: Store | None = None,
        origin: str | None = None,
    ) -> None:
        super().__init__(conn, Path(where))  # type: ignore[arg-type]
        self.where = where
        #: This node's own store (for notes and tags on its own runs), if open.
        self.local = local
        #: This node's origin: what its notes and tags are written under.
        self.origin = origin

    # -- opening -----------------------------------------------------------------

    @classmethod
    def connect(
        cls,
        cfg: RemoteConfig | str,
        *,
        timeout: float | None = None,
        local: Store | None = None,
    ) -> RemoteStore:
        """Connect to the lab's notebook (``cfg``: the ``[remote]`` config or a URL).

        Raises ``RemoteUnavailable`` / ``RemoteMissing`` / ``RemoteNotConfigured``
        (one line each), or :class:`StoreError` when the database has no labbook
        schema (``labbook remote init`` makes it).
        """
        from labbook.store.remote.config import RemoteConfig, describe_url
        from labbook.store.remote.conn import connect

        raw = connect(cfg, timeout=timeout)
        raw.autocommit = True  # reads: no transaction left open between statements
        url = cfg.url if isinstance(cfg, RemoteConfig) else cfg
        where = describe_url(url or "")
        conn = PgConnection(raw, where)
        try:
            ok = conn.execute("SELECT to_regclass('runs') IS NOT NULL").fetchone()[0]
        except Exception as exc:
            conn.close()
            raise StoreError(f"cannot read the lab's notebook at {where}: {exc}") from None
        if not ok:
            conn.close()
            raise StoreError(
                f"the lab's notebook at {where} has no labbook tables",
                hint="run `labbook remote init URL` once (or push from a node)",
            )
        origin = None
        if local is not None:
            origin = _local_origin(local)
        return cls(conn, where, local=local, origin=origin)

    def close(self) -> None:
        self.conn.close()
        if self.local is not None:
            self.local.close()
            self.local = None

    def set_busy_timeout(self, seconds: float) -> None:
        """Reads give up after ``seconds`` (``statement_timeout``)."""
        self.busy_timeout = seconds
        self.conn.execute(f"SET statement_timeout = {max(1, int(seconds * 1000))}")

    def data_version(self) -> int:
        """Changes when a node pushes (the views that poll, e.g. the TUI)."""
        row = self.conn.execute(
            "SELECT coalesce(max(last_push), '') || ':' || count(*) FROM origins"
        ).fetchone()
        return int.from_bytes(hashlib.sha1(str(row[0]).encode()).digest()[:7], "big")

    # -- writes: read-only, notes and tags aside -----------------------------------

    def _read_only(self, what: str = "write") -> RemoteReadOnly:
        return RemoteReadOnly(
            f"the lab's notebook at {self.where} is read-only here: cannot {what}",
            hint="record and change runs on their node; only notes and tags are written with --remote",
        )

    @contextmanager
    def transaction(self) -> Iterator[None]:
        raise self._read_only()
        yield  # pragma: no cover

    def put_blob(self, data: str | bytes | None) -> str | None:
        raise self._read_only("store files")

    def set_file_position(self, *args: Any, **kwargs: Any) -> None:
        raise self._read_only("tail files")

    def save_run(self, *args: Any, **kwargs: Any) -> tuple[str, bool]:
        raise self._read_only("record runs")

    def update_run(self, run_id: str, **fields: Any) -> None:
        raise self._read_only("change runs")

    # -- reads where the shared notebook says more ----------------------------------

    def count(self) -> int:
        return int(
            self.conn.execute(f"SELECT count(*) FROM runs WHERE {self.dialect.live()}").fetchone()[
                0
            ]
        )

    def _family(self, ids: Sequence[str]) -> dict[str, str]:
        """Run id -> the listed run it belongs to, for ``ids`` and the rows they
        superseded (a requeued job's earlier row's notes show on the newer one)."""
        out = {rid: rid for rid in ids}
        if ids:
            frontier = list(ids)
            for _ in range(8):  # a chain of requeues; 8 is plenty
                rows = self.conn.execute(
                    "SELECT id, superseded_by FROM runs WHERE superseded_by = ANY(?)",
                    [frontier],
                ).fetchall()
                rows = [(a, b) for a, b in rows if a not in out]
                if not rows:
                    break
                for old, new in rows:
                    out[old] = out[new]
                frontier = [old for old, _ in rows]
        return out

    def tags_of(self, run_ids: Sequence[str]) -> dict[str, list[str]]:
        out: dict[str, set[str]] = {rid: set() for rid in run_ids}
        family = self._family(list(run_ids))
        for rid, tag in self.conn.execute(
            "SELECT run_id, tag FROM tags WHERE run_id = ANY(?)", [list(family)]
        ):
            out[family[rid]].add(tag)
        return {rid: sorted(tags) for rid, tags in out.items()}

    def _notes(self, ids: Sequence[str]) -> dict[str, list[NoteRecord]]:
        out: dict[str, list[NoteRecord]] = {}
        family = self._family(list(ids))
        for nid, rid, at, author, kind, text, origin in self.conn.execute(
            "SELECT id, run_id, at, author, kind, text, origin FROM notes"
            " WHERE run_id = ANY(?) AND deleted_at IS NULL ORDER BY at, origin, id",
            [list(family)],
        ):
            note: NoteRecord = {"id": nid, "at": at, "kind": kind, "text": text, "author": author}
            note["origin"] = origin  # type: ignore[typeddict-unknown-key]
            out.setdefault(family[rid], []).append(note)
        return out

    def notes_of(self, run_id: str) -> list[dict[str, Any]]:
        return [dict(n) for n in self._notes([run_id]).get(run_id, [])]

    def _records(self, rows: Sequence[dict[str, Any]], *, heavy: bool) -> list[RunRecord]:
        out = super()._records(rows, heavy=heavy)
        for rec, row in zip(out, rows, strict=True):
            rec["origin"] = row.get("origin")  # type: ignore[typeddict-unknown-key]
        return out

    def note(self, note_id: int) -> dict[str, Any] | None:
        """One note of this node's origin by id (``note --delete`` takes only those)."""
        cur = self.conn.execute(
            "SELECT id, run_id, at, author, kind, text, deleted_at FROM notes"
            " WHERE id = ? AND origin = ?",
            (note_id, self.origin),
        )
        row = cur.fetchone()
        if row is None:
            return None
        keys = ("id", "run_id", "at", "author", "kind", "text", "deleted_at")
        return dict(zip(keys, row, strict=True))

    # -- notes and tags with --remote -------------------------------------------------

    def _own_run(self, run_id: str) -> str | None:
        """The local id of ``run_id`` when this node recorded it (its store has it)."""
        if self.local is None or self.origin is None:
            return None
        row = self.conn.execute(
            "SELECT local_id FROM runs WHERE id = ? AND origin = ?", (run_id, self.origin)
        ).fetchone()
        if row is None:
            return None
        local_id = str(row[0] or run_id)
        return local_id if self.local.run_row(local_id) is not None else None

    def _writer(self) -> str:
        if self.origin is None:
            raise StoreError(
                "cannot write to the lab's notebook without this node's own store",
                hint="run `labbook import` or `labbook watch` once on this node",
            )
        return self.origin

    @contextmanager
    def _write(self) -> Iterator[None]:
        """One server transaction (the connection reads in autocommit)."""
        raw = self.conn.raw  # type: ignore[attr-defined]
        with raw.transaction():
            yield

    def add_note(
        self,
        run_id: str,
        text: str,
        kind: str = "note",
        author: str | None = None,
        *,
        at: str | None = None,
    ) -> int:
        from labbook.capture.owner import current_user
        from labbook.capture.redact import redact_text
        from labbook.store.codec import now_iso

        local_id = self._own_run(run_id)
        if local_id is not None and self.local is not None:
            return self.local.add_note(local_id, text, kind, author, at=at)
        origin = self._writer()
        text = redact_text(text)
        with self._write():
            self.conn.execute("SELECT pg_advisory_xact_lock(hashtext(?))", (f"notes:{origin}",))
            nid = int(
                self.conn.execute(
                    "SELECT least(coalesce(min(id), 0), 0) - 1 FROM notes WHERE origin = ?",
                    (origin,),
                ).fetchone()[0]
            )
            self.conn.execute(
                "INSERT INTO notes (origin, id, run_id, at, author, kind, text)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (origin, nid, run_id, at or now_iso(), author or current_user(), kind, text),
            )
            self.conn.execute(  # searchable at once, as a pushed note is
                "INSERT INTO search_docs (run_id, field, ref, text, origin)"
                " VALUES (?, 'note', ?, ?, ?) ON CONFLICT DO NOTHING",
                (run_id, str(nid), text, origin),
            )
        return nid

    def delete_note(self, note_id: int) -> bool:
        from labbook.store.codec import now_iso

        origin = self._writer()
        if note_id > 0 and self.local is not None:
            return self.local.delete_note(note_id)
        with self._write():
            cur = self.conn.execute(
                "UPDATE notes SET deleted_at = ? WHERE origin = ? AND id = ?"
                " AND deleted_at IS NULL",
                (now_iso(), origin, note_id),
            )
            self.conn.execute(
                "DELETE FROM search_docs WHERE origin = ? AND field = 'note' AND ref = ?",
                (origin, str(note_id)),
            )
        return bool(cur.rowcount)

    def add_tags(self, run_id: str, tags: Iterable[str]) -> None:
        local_id = self._own_run(run_id)
        if local_id is not None and self.local is not None:
            self.local.add_tags(local_id, tags)
            return
        origin = self._writer()
        with self._write():
            for tag in tags:
                self.conn.execute(
                    "INSERT INTO tags (run_id, tag, origin) VALUES (?, ?, ?)"
                    " ON CONFLICT DO NOTHING",
                    (run_id, tag, origin),
                )
                self.conn.execute(
                    "INSERT INTO search_docs (run_id, field, ref, text, origin)"
                    " VALUES (?, 'tag', ?, ?, ?) ON CONFLICT DO NOTHING",
                    (run_id, tag, tag, origin),
                )

    def remove_tags(self, run_id: str, tags: Iterable[str]) -> None:
        """Remove this node's own tags (another node's tags are that node's to remove)."""
        tags = list(tags)
        local_id = self._own_run(run_id)
        if local_id is not None and self.local is not None:
            self.local.remove_tags(local_id, tags)
        origin = self._writer()
        with self._write():
            self.conn.execute(
                "DELETE FROM tags WHERE run_id = ? AND origin = ? AND tag = ANY(?)",
                (run_id, origin, tags),
            )
            self.conn.execute(
                "DELETE FROM search_docs WHERE run_id = ? AND origin = ? AND field = 'tag'"
                " AND ref = ANY(?)",
                (run_id, origin, tags),
            )
        others = self.conn.execute(
            "SELECT DISTINCT tag FROM tags WHERE run_id = ? AND tag = ANY(?) AND origin != ?",
            (run_id, tags, origin),
        ).fetchall()
        if others and local_id is None:
            from labbook.warn import warn

            shown = ", ".join(sorted(t for (t,) in others))
            warn(None, f"{shown}: tagged by another node; only that node can remove it")


def _local_origin(store: Store) -> str | None:
    """This node's origin (``meta.origin`` of its own store), if its store has one."""
    import sqlite3

    try:
        from labbook.store import outbox

        return outbox.origin(store.conn, store.path)
    except (ImportError, sqlite3.Error, AttributeError):
        return None


def open_remote(
    cfg: RemoteConfig | None = None,
    *,
    local: Store | None = None,
    timeout: float | None = None,
) -> RemoteStore:
    """The lab's notebook as ``[remote]`` in config.toml (or ``cfg``) says."""
    from labbook.store.remote.config import RemoteConfig

    cfg = cfg or RemoteConfig.load()
    return RemoteStore.connect(cfg, local=local, timeout=timeout)


def open_remote_within(
    budget_s: float, cfg: RemoteConfig | None = None, *, local: Store | None = None
) -> RemoteStore:
    """:func:`open_remote`, giving up after ``budget_s`` seconds (``check`` and the shell
    hook have a time budget; libpq's own connect timeout counts in whole seconds).
    Reads then give up at the same budget (``statement_timeout``). Raises
    ``RemoteUnavailable`` (or what :func:`open_remote` raises) in time."""
    import threading
    import time

    from labbook.store.remote.config import RemoteConfig, describe_url
    from labbook.store.remote.conn import RemoteUnavailable

    cfg = cfg or RemoteConfig.load()
    t0 = time.monotonic()
    box: dict[str, Any] = {}

    def attempt() -> None:
        try:
            box["store"] = RemoteStore.connect(cfg, local=local, timeout=max(1.0, budget_s))
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc
        if box.get("late"):  # the caller went on without it
            with contextlib.suppress(Exception):
                box["store"].close()

    thread = threading.Thread(target=attempt, name="labbook-remote-connect", daemon=True)
    thread.start()
    thread.join(budget_s)
    if thread.is_alive():
        box["late"] = True
        raise RemoteUnavailable(
            f"the lab's notebook at {describe_url(cfg.url or '')} did not answer within"
            f" {budget_s * 1000:.0f} ms"
        )
    if "error" in box:
        raise box["error"]
    store: RemoteStore = box["store"]
    left = budget_s - (time.monotonic() - t0)
    store.set_busy_timeout(max(0.05, left))
    return store
