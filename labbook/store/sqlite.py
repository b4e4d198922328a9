"""The SQLite store: one file, WAL, busy timeout, migrations, private to its user.

Writes go through :class:`Store` methods; reads return plain dicts in the shape of
the ``--json`` contract (see ``DESIGN.md`` and the README). Views never write SQL
of their own.

Reads use the standard library's ``sqlite3`` only; sqlite-utils (used for the
schema migrations and upserts) is imported the first time something is written,
which keeps ``labbook ls`` and ``labbook show`` fast to start.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import socket
import sqlite3
import stat
import time
import zlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from labbook.capture.owner import current_user, user_name
from labbook.capture.slurm import from_environ as slurm_job
from labbook.capture.slurm import from_row as slurm_of_row
from labbook.errors import StoreBusy, StoreError
from labbook.model import (
    EnvInfo,
    MetricSummary,
    NoteRecord,
    Point,
    RunFacts,
    RunRecord,
    SeedRecord,
)
from labbook.paths import default_db_path
from labbook.readers.values import sql_number
from labbook.series import (
    MAX_POINTS,
    Summary,
    decode_points,
    downsample,
    encode_points,
    from_kind,
    nonfinite_kind,
)
from labbook.store.codec import (
    dump_json,
    json_float,
    loads_or_text,
    new_run_id,
    now_iso,
    safe_text,
    utc_iso,
)
from labbook.store.dialect import SQLITE, Dialect
from labbook.store.outbox import mark as mark_dirty
from labbook.store.schema import SCHEMA_VERSION
from labbook.store.search import refresh_run_config_doc

if TYPE_CHECKING:
    from sqlite_utils import Database

BUSY_TIMEOUT_S = 10.0


class Store:
    """A labbook database. Open with :meth:`open`; use as a context manager."""

    #: The SQL its read paths speak (``labbook.store.dialect``); the lab's notebook
    #: (``labbook.store.remote.read.RemoteStore``) reads through the same methods.
    dialect: Dialect = SQLITE

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path
        self._db: Database | None = None
        self._savepoints = 0
        #: seconds a write waits for the write lock, in all (see :meth:`transaction`)
        self.busy_timeout = BUSY_TIMEOUT_S

    # -- opening -----------------------------------------------------------------

    @classmethod
    def open(cls, path: str | os.PathLike[str] | None = None, *, create: bool = True) -> Store:
        """Open (and create or migrate) the database at ``path`` or the default path.

        A new database file is created with mode 0600 in a 0700 directory, so other
        users on a shared machine cannot read configs, diffs or environments.
        """
        db_path = Path(path).expanduser() if path is not None else default_db_path()
        try:
            exists = db_path.exists()
        except OSError as exc:
            raise StoreError(f"cannot open {db_path}: {exc.strerror or exc}") from exc
        if not exists:
            if not create:
                raise StoreError(
                    f"no labbook database at {db_path}",
                    hint="start `labbook watch` or run `labbook import PATH` first",
                )
            try:
                db_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                fd = os.open(db_path, os.O_CREAT | os.O_RDWR, 0o600)
                os.close(fd)
            except OSError as exc:
                raise StoreError(f"cannot create database {db_path}: {exc.strerror}") from exc
        elif db_path.is_dir():
            raise StoreError(f"{db_path} is a directory, not a labbook database")
        _make_private(db_path)
        try:
            # Autocommit mode: no implicit (deferred) transactions. Every write goes
            # through :meth:`transaction`, which begins IMMEDIATE so that the busy
            # timeout applies to taking the write lock (a deferred transaction that
            # read first gets SQLITE_BUSY_SNAPSHOT at once, whatever the timeout).
            conn = sqlite3.connect(
                str(db_path),
                timeout=BUSY_TIMEOUT_S,
                check_same_thread=False,
                isolation_level=None,
            )
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open {db_path}: {exc}") from exc
        store = cls(conn, db_path)
        if version != SCHEMA_VERSION:
            if version > SCHEMA_VERSION:
                conn.close()
                raise StoreError(
                    f"{db_path} was written by a newer labbook (schema {version})",
                    hint="upgrade labbook",
                )
            store._migrate()
        return store

    def set_busy_timeout(self, seconds: float) -> None:
        """How long a write waits for another writer before :class:`StoreBusy`."""
        self.busy_timeout = seconds
        self.conn.execute(f"PRAGMA busy_timeout = {max(0, int(seconds * 1000))}")

    def _migrate(self) -> None:
        """Create or upgrade the schema; one process at a time (others wait, then find it done)."""
        import fcntl

        from labbook.store.schema import migrations

        lock_path = self.path.with_name(self.path.name + ".migrate.lock")
        try:
            fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o600)
        except OSError:
            fd = None  # a read-only directory: go on without the lock
        try:
            if fd is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            if self.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
                return  # another process migrated it while this one waited
            self.conn.execute("PRAGMA journal_mode = WAL")
            migrations().apply(self.db)
            self.conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot set up database {self.path}: {exc}") from exc
        finally:
            if fd is not None:
                os.close(fd)  # closing drops the flock

    @property
    def db(self) -> Database:
        """The sqlite-utils view of the same connection (imported on first use)."""
        if self._db is None:
            from sqlite_utils import Database

            self._db = Database(self.conn, execute_plugins=False)
        return self._db

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction; nested blocks are savepoints.

        The outermost block begins ``IMMEDIATE``: it takes the write lock first,
        waiting for other writers up to the busy timeout, so what it reads stays
        true until it commits. A lock that is still held after that is retried
        with backoff until :attr:`busy_timeout` has passed in all, then
        :class:`~labbook.errors.StoreBusy` is raised (nothing was written).
        """
        conn = self.conn
        if conn.in_transaction:
            self._savepoints += 1
            name = f"labbook_{self._savepoints}"
            conn.execute(f"SAVEPOINT {name}")
            try:
                yield
            except BaseException:
                if conn.in_transaction:
                    conn.execute(f"ROLLBACK TO SAVEPOINT {name}")
                    conn.execute(f"RELEASE SAVEPOINT {name}")
                raise
            else:
                conn.execute(f"RELEASE SAVEPOINT {name}")
            finally:
                self._savepoints -= 1
            return
        self._retry_busy("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise
        try:
            self._retry_busy("COMMIT")
        except BaseException:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise

    def _retry_busy(self, sql: str) -> None:
        """Run ``sql`` (BEGIN IMMEDIATE or COMMIT), retrying while the database is locked."""
        deadline = time.monotonic() + self.busy_timeout
        delay = 0.005
        while True:
            try:
                self.conn.execute(sql)
                return
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    raise StoreError(f"cannot write to {self.path}: {exc}") from exc
                left = deadline - time.monotonic()
                if left <= 0:
                    raise StoreBusy(
                        f"{self.path} is busy: another labbook held it for {self.busy_timeout:g} s",
                        hint="try again; `labbook watch` or a long import may be writing",
                    ) from exc
                time.sleep(min(left, delay * (0.5 + random.random())))
                delay = min(delay * 2, 0.25)

    def data_version(self) -> int:
        """Changes when another connection commits (for views that poll)."""
        return int(self.conn.execute("PRAGMA data_version").fetchone()[0])

    # -- blobs -------------------------------------------------------------------

    def put_blob(self, data: str | bytes | None) -> str | None:
        """Store text or bytes once by content hash, zlib-compressed; return the hash."""
        prepared = _prepare_blob(data)
        if prepared is None:
            return None
        self.conn.execute(
            "INSERT OR IGNORE INTO blobs (hash, size, data) VALUES (?, ?, ?)", prepared
        )
        return prepared[0]

    def put_env(self, env: EnvInfo) -> str | None:
        """Store an environment (shared by every run of one interpreter) as a blob."""
        return self.put_blob(_env_json(env))

    def get_blob(self, digest: str | None) -> bytes | None:
        if not digest:
            return None
        row = self.conn.execute("SELECT data FROM blobs WHERE hash = ?", (digest,)).fetchone()
        return zlib.decompress(row[0]) if row else None

    def get_text(self, digest: str | None) -> str | None:
        raw = self.get_blob(digest)
        return raw.decode("utf-8", "replace") if raw is not None else None

    def get_json_blob(self, digest: str | None) -> Any:
        text = self.get_text(digest)
        return json.loads(text) if text else None

    # -- writing runs ---------------------------------------------------------------

    def _new_id(self) -> str:
        while True:
            run_id = new_run_id()
            if not self.conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone():
                return run_id

    def id_for_source(self, source_key: str) -> str | None:
        row = self.conn.execute(
            "SELECT id FROM runs WHERE source_key = ?", (source_key,)
        ).fetchone()
        return row[0] if row else None

    def save_run(self, facts: RunFacts, *, run_id: str | None = None) -> tuple[str, bool]:
        """Insert or update the run for ``facts.source_key``; return ``(id, created)``.

        Re-saving the same source replaces what was read from its files (config,
        metrics, git, env) and keeps what people added (notes, manual tags). A new
        run gets ``run_id`` when given and free, else a new random id. Secrets are
        redacted first (:func:`labbook.capture.redact.redact_facts`): nothing else reaches the store.
        """
        from labbook.capture.redact import redact_facts

        facts = redact_facts(facts)
        # Everything that costs CPU (JSON, compression, summaries, downsampling) is
        # done before the write lock is taken: the transaction only inserts.
        blobs: list[tuple[str, int, bytes]] = []

        def blob(data: str | bytes | None) -> str | None:
            prepared = _prepare_blob(data)
            if prepared is None:
                return None
            blobs.append(prepared)
            return prepared[0]

        git = facts.git
        env = facts.env
        row: dict[str, Any] = {
            "source_key": safe_text(facts.source_key),
            "name": safe_text(facts.name),
            "path": safe_text(facts.path),
            "host": facts.host or socket.gethostname(),
            "user": facts.user or current_user(),
            "framework": facts.framework,
            "status": facts.status,
            "status_reason": safe_text(facts.status_reason),
            "failure_kind": facts.failure.kind if facts.failure else None,
            "failure_message": facts.failure.message if facts.failure else None,
            "failure_step": facts.failure.step if facts.failure else None,
            "started_at": utc_iso(facts.started_at),
            "ended_at": utc_iso(facts.ended_at),
            "command": dump_json([safe_text(a) for a in facts.command])
            if facts.command is not None
            else None,
            "pid": facts.pid,
            "cwd": safe_text(facts.cwd),
            "seed_value": dump_json(facts.seed.value) if facts.seed.value is not None else None,
            "seed_source": facts.seed.source
            if facts.seed.value is not None
            else (None if facts.seed.known else SEED_UNKNOWN),
            "git_root": git.root if git else None,
            "git_commit": git.commit if git else None,
            "git_branch": git.branch if git else None,
            "git_remote": git.remote if git else None,
            "git_dirty": int(git.dirty) if git else None,
            "git_diff": blob(git.diff) if git else None,
            "git_untracked": dump_json(git.untracked) if git else None,
            "git_extra": blob(
                dump_json(
                    {
                        "untracked_contents": git.untracked_contents,
                        "untracked_truncated": git.untracked_truncated,
                        "diff_truncated": git.diff_truncated,
                        "shallow": git.shallow,
                        "detached": git.detached,
                    }
                )
            )
            if git
            else None,
            "env": blob(_env_json(env)) if env else None,
            "env_source": env.source if env else None,
            "log_tail": blob(facts.log_tail),
            "data": blob(dump_json(facts.data)) if facts.data else None,
            "missing": 0,
            "config_sig": _config_sig(facts.config),
            "sweep_kind": facts.sweep_kind if facts.sweep_id else None,
            "sweep_id": safe_text(facts.sweep_id) if facts.sweep_kind else None,
        }
        row["group_key"] = _group_key(facts, row)
        job = slurm_job(env.vars) if env else None
        if job is not None:  # Slurm job, array task, restarts (kept when a re-read has no env)
            row.update(job.columns())
        params = [(k, dump_json(v), sql_number(v)) for k, v in facts.config.items()]
        tags = [
            _tag_rows(tag, Summary.of(pts), downsample(pts), facts.metric_sources.get(tag, FILE))
            for tag, pts in facts.metrics.items()
            if pts
        ]
        wanted = run_id
        with self.transaction():
            run_id = self.id_for_source(safe_text(facts.source_key))  # type: ignore[arg-type]
            created = run_id is None
            if run_id is None:
                free = (
                    wanted is not None
                    and not self.conn.execute(
                        "SELECT 1 FROM runs WHERE id = ?", (wanted,)
                    ).fetchone()
                )
                run_id = wanted if wanted is not None and free else self._new_id()
            self.conn.executemany(
                "INSERT OR IGNORE INTO blobs (hash, size, data) VALUES (?, ?, ?)", blobs
            )
            now = now_iso()
            row["updated_at"] = now
            if row["group_key"] is None:  # a group of its own (labbook.store.groups)
                from labbook.store.groups import own_group_key

                row["group_key"] = own_group_key(run_id)
            if created:
                row = {"id": run_id, **row, "created_at": now}
                cols = ", ".join(row)
                marks = ", ".join("?" for _ in row)
                self.conn.execute(f"INSERT INTO runs ({cols}) VALUES ({marks})", list(row.values()))
            else:
                sets = ", ".join(f"{k} = ?" for k in row)
                self.conn.execute(f"UPDATE runs SET {sets} WHERE id = ?", [*row.values(), run_id])
            self.conn.execute("DELETE FROM params WHERE run_id = ?", (run_id,))
            self.conn.executemany(
                "INSERT INTO params (run_id, key, value, num) VALUES (?, ?, ?, ?)",
                [(run_id, *p) for p in params],
            )
            mark_dirty(self.conn, [run_id], "params")  # once per save (labbook.store.outbox)
            refresh_run_config_doc(self.conn, run_id)  # the search index, current at commit
            self._write_tags(run_id, tags, replace=True)
            if facts.tags:
                self.conn.executemany(
                    "INSERT OR IGNORE INTO tags (run_id, tag) VALUES (?, ?)",
                    [(run_id, t) for t in facts.tags],
                )
        return run_id, created

    def replace_metrics(
        self, run_id: str, metrics: dict[str, list[Point]], *, source: str = "file"
    ) -> None:
        """Replace all metric summaries and series of a run with ``metrics``."""
        tags = [
            _tag_rows(tag, Summary.of(pts), downsample(pts), source)
            for tag, pts in metrics.items()
            if pts
        ]
        with self.transaction():
            self._write_tags(run_id, tags, replace=True)

    def replace_output_tags(self, run_id: str, metrics: dict[str, list[Point]]) -> None:
        """Write ``metrics`` (read from printed output) as whole curves, source "output",
        except for tags the run already has from a structured file (those win)."""
        with self.transaction():
            taken = {
                tag
                for (tag,) in self.conn.execute(
                    "SELECT tag FROM metrics WHERE run_id = ? AND coalesce(source, 'file') != ?",
                    (run_id, OUTPUT),
                )
            }
            tags = [
                _tag_rows(tag, Summary.of(pts), downsample(pts), OUTPUT)
                for tag, pts in metrics.items()
                if pts and tag not in taken
            ]
            self._write_tags(run_id, tags)

    def _write_tags(self, run_id: str, tags: list[_TagRows], *, replace: bool = False) -> None:
        if replace:
            self.conn.execute("DELETE FROM metrics WHERE run_id = ?", (run_id,))
            self.conn.execute("DELETE FROM series WHERE run_id = ?", (run_id,))
        self.conn.executemany(
            "INSERT OR REPLACE INTO metrics (run_id, tag, last, last_kind, min, max, step, count,"
            " nonfinite_step, first_step, last_wall_time, source)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            [(run_id, *summary) for summary, _ in tags],
        )
        self.conn.executemany(
            "INSERT OR REPLACE INTO series (run_id, tag, points) VALUES (?, ?, ?)",
            [(run_id, summary[0], payload) for summary, payload in tags],
        )

    def append_metrics(
        self, run_id: str, metrics: dict[str, list[Point]], *, source: str | None = None
    ) -> None:
        """Add newly read points to a run's summaries and series (tailing).

        Costs O(appended + MAX_POINTS) per tag, whatever the run's length. A tag keeps
        the source it has; a new one gets ``source`` (default "file").
        """
        with self.transaction():
            for tag, points in metrics.items():
                if not points:
                    continue
                summary, series, had = self._read_tag(run_id, tag)
                summary.update(points)
                merged = series + list(points)
                if len(merged) > MAX_POINTS:
                    merged = downsample(merged)
                self._write_tag(run_id, tag, summary, merged, had or source or FILE)

    def _read_tag(self, run_id: str, tag: str) -> tuple[Summary, list[Point], str | None]:
        row = self.conn.execute(
            "SELECT last, last_kind, min, max, step, count, nonfinite_step, first_step,"
            " last_wall_time, source FROM metrics WHERE run_id = ? AND tag = ?",
            (run_id, tag),
        ).fetchone()
        if row is None:
            return Summary(), [], None
        summary = Summary(
            last=from_kind(row[0], row[1]),
            min=row[2],
            max=row[3],
            step=row[4],
            count=row[5],
            nonfinite_step=row[6],
            first_step=row[7],
            last_wall_time=row[8],
        )
        blob = self.conn.execute(
            "SELECT points FROM series WHERE run_id = ? AND tag = ?", (run_id, tag)
        ).fetchone()
        points = decode_points(json.loads(zlib.decompress(blob[0]))) if blob else []
        return summary, points, row[9]

    def _write_tag(
        self, run_id: str, tag: str, s: Summary, points: Sequence[Point], source: str
    ) -> None:
        self._write_tags(run_id, [_tag_rows(tag, s, points, source)])

    def update_run(self, run_id: str, **fields: Any) -> None:
        """Set plain columns of a run (status, ended_at, missing, …)."""
        if not fields:
            return
        fields["updated_at"] = now_iso()
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self.transaction():
            self.conn.execute(f"UPDATE runs SET {sets} WHERE id = ?", [*fields.values(), run_id])

    # -- tailing positions --------------------------------------------------------

    def file_positions(self, run_id: str) -> dict[str, dict[str, Any]]:
        rows = self.conn.execute(
            "SELECT path, offset, fingerprint, size, mtime FROM files WHERE run_id = ?", (run_id,)
        ).fetchall()
        return {
            r[0]: {"offset": r[1], "fingerprint": r[2], "size": r[3], "mtime": r[4]} for r in rows
        }

    def set_file_position(
        self, run_id: str, path: str, offset: int, fingerprint: str | None, size: int, mtime: float
    ) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO files (path, run_id, offset, fingerprint, size, mtime)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (path, run_id, offset, fingerprint, size, mtime),
        )

    # -- labbook import: unchanged run dirs -----------------------------------------

    def import_state(self, path: str, framework: str) -> tuple[str, list[str], list[str]] | None:
        """(signature, files read from outside the dir, run ids) of the last import of
        a run dir, or None when it was never imported or one of its runs is gone."""
        row = self.conn.execute(
            "SELECT sig, outside, run_ids FROM import_dirs WHERE path = ? AND framework = ?",
            (path, framework),
        ).fetchone()
        if row is None:
            return None
        run_ids = json.loads(row[2])
        if not run_ids:
            return None
        marks = ",".join("?" for _ in run_ids)
        live = self.conn.execute(
            f"SELECT count(*) FROM runs WHERE id IN ({marks}) AND deleted_at IS NULL", run_ids
        ).fetchone()[0]
        if live != len(run_ids):
            return None
        return row[0], json.loads(row[1] or "[]"), run_ids

    def set_import_state(
        self, path: str, framework: str, sig: str, outside: Sequence[str], run_ids: Sequence[str]
    ) -> None:
        with self.transaction():
            self.conn.execute(
                "INSERT OR REPLACE INTO import_dirs (path, framework, sig, outside, run_ids, at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    path,
                    framework,
                    sig,
                    dump_json(list(outside)),
                    dump_json(list(run_ids)),
                    now_iso(),
                ),
            )

    # -- tags and notes ------------------------------------------------------------

    def add_tags(self, run_id: str, tags: Iterable[str]) -> None:
        with self.transaction():
            self.conn.executemany(
                "INSERT OR IGNORE INTO tags (run_id, tag) VALUES (?, ?)",
                [(run_id, t) for t in tags],
            )

    def remove_tags(self, run_id: str, tags: Iterable[str]) -> None:
        with self.transaction():
            self.conn.executemany(
                "DELETE FROM tags WHERE run_id = ? AND tag = ?", [(run_id, t) for t in tags]
            )

    def add_note(
        self,
        run_id: str,
        text: str,
        kind: str = "note",
        author: str | None = None,
        *,
        at: str | None = None,
    ) -> int:
        """Append a note; with ``at`` given, a note of the same run, time, kind and
        text already there is not added twice (a journal replayed again)."""
        with self.transaction():
            if at is not None:
                row = self.conn.execute(
                    "SELECT id FROM notes WHERE run_id = ? AND at = ? AND kind = ? AND text = ?",
                    (run_id, at, kind, text),
                ).fetchone()
                if row:
                    return int(row[0])
            cur = self.conn.execute(
                "INSERT INTO notes (run_id, at, author, kind, text) VALUES (?, ?, ?, ?, ?)",
                (run_id, at or now_iso(), author or current_user(), kind, text),
            )
        return int(cur.lastrowid or 0)

    # -- reading -----------------------------------------------------------------

    def count(self) -> int:
        return int(
            self.conn.execute("SELECT count(*) FROM runs WHERE deleted_at IS NULL").fetchone()[0]
        )

    def run_row(self, run_id: str) -> dict[str, Any] | None:
        cur = self.conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,))
        row = cur.fetchone()
        if row is None:
            return None
        return dict(zip([d[0] for d in cur.description], row, strict=False))

    def config(self, run_id: str) -> dict[str, Any]:
        rows = self.conn.execute(
            "SELECT key, value FROM params WHERE run_id = ? ORDER BY key", (run_id,)
        ).fetchall()
        return {k: json.loads(v) if v is not None else None for k, v in rows}

    def metric_summaries(self, run_ids: Sequence[str]) -> dict[str, dict[str, MetricSummary]]:
        out: dict[str, dict[str, MetricSummary]] = {rid: {} for rid in run_ids}
        for chunk in _chunks(list(run_ids), 500):
            marks = ",".join("?" for _ in chunk)
            for r in self.conn.execute(
                "SELECT run_id, tag, last, last_kind, min, max, step, count, nonfinite_step,"
                f" source FROM metrics WHERE run_id IN ({marks}) ORDER BY tag",
                chunk,
            ):
                out[r[0]][r[1]] = {
                    "last": json_float(from_kind(r[2], r[3])),
                    "min": r[4],
                    "max": r[5],
                    "step": r[6],
                    "count": r[7],
                    "nonfinite_step": r[8],
                    "source": r[9],
                }
        return out

    def series(self, run_id: str, tag: str | None = None) -> dict[str, list[Point]]:
        """Downsampled curves of a run, for drawing."""
        sql = "SELECT tag, points FROM series WHERE run_id = ?"
        args: list[Any] = [run_id]
        if tag is not None:
            sql += " AND tag = ?"
            args.append(tag)
        return {
            t: decode_points(json.loads(zlib.decompress(blob)))
            for t, blob in self.conn.execute(sql + " ORDER BY tag", args)
        }

    def tags_of(self, run_ids: Sequence[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {rid: [] for rid in run_ids}
        for chunk in _chunks(list(run_ids), 500):
            marks = ",".join("?" for _ in chunk)
            for rid, tag in self.conn.execute(
                f"SELECT run_id, tag FROM tags WHERE run_id IN ({marks}) ORDER BY tag", chunk
            ):
                out[rid].append(tag)
        return out

    def notes_of(self, run_id: str) -> list[dict[str, Any]]:
        return [
            {"id": i, "at": at, "author": author, "kind": kind, "text": text}
            for i, at, author, kind, text in self.conn.execute(
                "SELECT id, at, author, kind, text FROM notes"
                " WHERE run_id = ? AND deleted_at IS NULL ORDER BY id",
                (run_id,),
            )
        ]

    def notes_by_run(self, run_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        """:meth:`notes_of` of many runs (run id -> its notes), a few queries in all."""
        keys = ("id", "at", "author", "kind", "text")  # notes_of's order, then any other
        return {
            rid: [{k: n[k] for k in keys} | dict(n) for n in notes]  # type: ignore[literal-required]
            for rid, notes in self._notes(run_ids).items()
        }

    def record(self, run_id: str, *, heavy: bool = True) -> RunRecord:
        """The run as the ``--json`` contract object (``heavy=False`` omits diff/packages)."""
        row = self.run_row(run_id)
        if row is None:
            from labbook.errors import RunNotFound

            raise RunNotFound(f"no run with id {run_id}")
        return self._records([row], heavy=heavy)[0]

    def records(self, rows: Sequence[dict[str, Any]], *, heavy: bool = False) -> list[RunRecord]:
        return self._records(rows, heavy=heavy)

    def _records(self, rows: Sequence[dict[str, Any]], *, heavy: bool) -> list[RunRecord]:
        ids = [r["id"] for r in rows]
        metrics = self.metric_summaries(ids)
        tags = self.tags_of(ids)
        configs = self.configs(ids)
        notes = self._notes(ids)
        envs: dict[str, Any] = {}  # runs of one interpreter share one env blob: decode it once
        from labbook.store.groups import group_fields

        grouped = group_fields(self, rows)
        out = []
        for r in rows:
            rid = r["id"]
            rec: RunRecord = {
                "id": rid,
                "name": r["name"],
                "path": r["path"],
                "host": r["host"],
                "user": r["user"],
                "framework": r["framework"],
                "status": r["status"],
                "status_reason": r.get("status_reason"),
                "failure": {
                    "kind": r["failure_kind"],
                    "message": r["failure_message"],
                    "step": r["failure_step"],
                }
                if r["failure_kind"]
                else None,
                "started_at": r["started_at"],
                "ended_at": r["ended_at"],
                "command": json.loads(r["command"]) if r["command"] else None,
                "pid": r["pid"],
                "seed": _seed_record(r["seed_value"], r["seed_source"]),
                "config": configs.get(rid, {}),
                "metrics": metrics.get(rid, {}),
                "git": self._git(r, heavy=heavy),
                "env": self._env(r, heavy=heavy, cache=envs),
                "gpu": json.loads(r["gpu"]) if r["gpu"] else None,
                "data": (self.get_json_blob(r["data"]) or {}) if r.get("data") else {},
                "tags": tags.get(rid, []),
                "notes": notes.get(rid, []),
                "missing": bool(r["missing"]),
                "archived_at": r.get("archived_at"),
                "created_at": r["created_at"],
                "updated_at": r["updated_at"],
            }
            rec["group"], rec["sweep"] = grouped[rid]
            job = slurm_of_row(r)
            rec["slurm"] = job.record() if job is not None else None
            out.append(rec)
        return out

    def configs(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The configs of the runs ``ids`` (flattened keys), a few queries in all."""
        out: dict[str, dict[str, Any]] = {rid: {} for rid in ids}
        for chunk in _chunks(list(ids), 500):
            marks = ",".join("?" for _ in chunk)
            rows = self.conn.execute(
                f"SELECT run_id, key, value FROM params WHERE run_id IN ({marks}) ORDER BY key",
                chunk,
            ).fetchall()
            # One json.loads of all values (as a JSON array) instead of one per key:
            # configs of 10,000 keys decode ~5x faster.
            try:
                values = json.loads("[" + ",".join(v or "null" for _, _, v in rows) + "]")
            except ValueError:  # a value that is not JSON (written by hand?): one by one
                values = [loads_or_text(v) for _, _, v in rows]
            for (rid, key, _), value in zip(rows, values, strict=True):
                out[rid][key] = value
        return out

    def _notes(self, ids: Sequence[str]) -> dict[str, list[NoteRecord]]:
        out: dict[str, list[NoteRecord]] = {}
        for chunk in _chunks(list(ids), 500):
            marks = ",".join("?" for _ in chunk)
            for nid, rid, at, author, kind, text in self.conn.execute(
                f"SELECT id, run_id, at, author, kind, text FROM notes WHERE run_id IN ({marks})"
                " AND deleted_at IS NULL ORDER BY id",
                chunk,
            ):
                out.setdefault(rid, []).append(
                    {"id": nid, "at": at, "kind": kind, "text": text, "author": author}
                )
        return out

    def _git(self, r: dict[str, Any], *, heavy: bool) -> dict[str, Any] | None:
        if not r["git_root"]:
            return None
        git: dict[str, Any] = {
            "root": r["git_root"],
            "commit": r["git_commit"],
            "branch": r["git_branch"],
            "remote": r["git_remote"],
            "dirty": bool(r["git_dirty"]),
            "untracked": json.loads(r["git_untracked"]) if r["git_untracked"] else [],
        }
        if heavy:
            git["diff"] = self.get_text(r["git_diff"]) or ""
            extra = self.get_json_blob(r["git_extra"]) or {}
            git.update(extra)
        return git

    def _env(
        self, r: dict[str, Any], *, heavy: bool, cache: dict[str, Any] | None = None
    ) -> dict[str, Any] | None:
        if not r["env"]:
            return None
        if cache is not None and r["env"] in cache:
            decoded = cache[r["env"]]
        else:
            decoded = self.get_json_blob(r["env"]) or {}
            if cache is not None:
                cache[r["env"]] = decoded
        env = dict(decoded)
        env["source"] = r["env_source"]
        if not heavy:
            env.pop("packages", None)
        return cast("dict[str, Any]", env)

    def log_tail(self, run_id: str) -> str | None:
        row = self.conn.execute("SELECT log_tail FROM runs WHERE id = ?", (run_id,)).fetchone()
        return self.get_text(row[0]) if row else None

    # -- labbook watch (the daemon) -------------------------------------------------

    def save_run_keeping(
        self, facts: RunFacts, *, keep_metrics: bool, keep_columns: Sequence[str] = ()
    ) -> tuple[str, bool]:
        """:meth:`save_run`, but an existing run keeps its metrics and the given columns.

        The daemon re-reads a run's config and logs while tailing its metric files
        into the same run: the tailed summaries and series must survive that save,
        and so must what was captured at first sight (git state, the process's
        environment), which today's working tree and process table no longer know.
        A kept column keeps its old value only where it had one.
        """
        with self.transaction():
            run_id = self.id_for_source(safe_text(facts.source_key))  # type: ignore[arg-type]
            old = self.run_row(run_id) if run_id else None
            metric_rows: list[Any] = []
            series_rows: list[Any] = []
            if run_id and keep_metrics:
                metric_rows = self.conn.execute(
                    "SELECT run_id, tag, last, last_kind, min, max, step, count, nonfinite_step,"
                    " first_step, last_wall_time, source FROM metrics WHERE run_id = ?",
                    (run_id,),
                ).fetchall()
                series_rows = self.conn.execute(
                    "SELECT run_id, tag, points FROM series WHERE run_id = ?", (run_id,)
                ).fetchall()
            saved = facts.metrics
            if run_id and keep_metrics:
                facts.metrics = {}
            try:
                new_id, created = self.save_run(facts)
            finally:
                facts.metrics = saved
            if metric_rows:
                self.conn.executemany(
                    "INSERT OR REPLACE INTO metrics (run_id, tag, last, last_kind, min, max, step,"
                    " count, nonfinite_step, first_step, last_wall_time, source)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                    metric_rows,
                )
                self.conn.executemany(
                    "INSERT OR REPLACE INTO series (run_id, tag, points) VALUES (?, ?, ?)",
                    series_rows,
                )
            if old is not None:
                kept = {c: old[c] for c in keep_columns if c in old and old[c] is not None}
                if kept:
                    sets = ", ".join(f"{c} = ?" for c in kept)
                    self.conn.execute(
                        f"UPDATE runs SET {sets} WHERE id = ?", [*kept.values(), new_id]
                    )
        return new_id, created

    def file_states(self, run_id: str) -> dict[str, dict[str, Any]]:
        """Tail positions of a run's files, with the reader state (CSV header, lines read)."""
        rows = self.conn.execute(
            "SELECT path, offset, fingerprint, size, mtime, state FROM files WHERE run_id = ?",
            (run_id,),
        ).fetchall()
        return {
            r[0]: {
                "offset": r[1],
                "fingerprint": r[2],
                "size": r[3],
                "mtime": r[4],
                "state": json.loads(r[5]) if r[5] else {},
            }
            for r in rows
        }

    def tail_commit(
        self,
        run_id: str,
        path: str,
        metrics: dict[str, list[Point]],
        *,
        offset: int,
        fingerprint: str | None,
        size: int,
        mtime: float,
        state: dict[str, Any] | None = None,
    ) -> None:
        """Append what was read from ``path`` and move its position, in one transaction.

        Points and position commit together, so a daemon killed at any moment either
        has both or neither: on restart it re-reads exactly what was not recorded.
        """
        with self.transaction():
            self.append_metrics(run_id, metrics)
            self.conn.execute(
                "INSERT OR REPLACE INTO files (path, run_id, offset, fingerprint, size, mtime,"
                " state) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (path, run_id, offset, fingerprint, size, mtime, dump_json(state or {})),
            )

    def reset_metrics(self, run_id: str) -> None:
        """Forget a run's metrics and tail positions (a tailed file was rewritten)."""
        with self.transaction():
            self.conn.execute("DELETE FROM metrics WHERE run_id = ?", (run_id,))
            self.conn.execute("DELETE FROM series WHERE run_id = ?", (run_id,))
            self.conn.execute("DELETE FROM files WHERE run_id = ?", (run_id,))

    def nonfinite_steps(self, run_id: str) -> dict[str, int]:
        """Tag -> first step at which it became NaN or infinite, for tags that did."""
        return {
            tag: int(step)
            for tag, step in self.conn.execute(
                "SELECT tag, nonfinite_step FROM metrics"
                " WHERE run_id = ? AND nonfinite_step IS NOT NULL",
                (run_id,),
            )
        }

    def last_values(self, run_id: str) -> dict[str, tuple[float | None, int | None]]:
        """Tag -> (last value, its step), for the daemon's live display."""
        return {
            tag: (from_kind(last, kind), step)
            for tag, last, kind, step in self.conn.execute(
                "SELECT tag, last, last_kind, step FROM metrics WHERE run_id = ?", (run_id,)
            )
        }

    def set_status(
        self,
        run_id: str,
        status: str,
        *,
        failure: Any = None,
        ended_at: float | None = None,
        reason: str | None = None,
    ) -> None:
        """Set a run's status, its failure (a :class:`~labbook.model.Failure` or None), its
        end, and why it has that status (``reason``)."""
        from labbook.capture.redact import redact_text  # a failure message quotes the log

        self.update_run(
            run_id,
            status=status,
            status_reason=redact_text(reason) if reason else None,
            failure_kind=failure.kind if failure else None,
            failure_message=redact_text(failure.message) if failure else None,
            failure_step=failure.step if failure else None,
            ended_at=utc_iso(ended_at),
        )

    def mark_missing(self, run_id: str, missing: bool = True) -> None:
        """The run's directory is gone (or back): the record stays either way."""
        self.update_run(run_id, missing=int(missing))

    def set_gpu(self, run_id: str, gpu: dict[str, Any] | None) -> None:
        """The run's ``gpu`` object of the --json contract (peak memory, mean use, devices)."""
        self.update_run(run_id, gpu=dump_json(gpu) if gpu is not None else None)

    def watch_state(self, run_id: str) -> dict[str, Any] | None:
        """The daemon's state for a run (see :meth:`set_watch_state`), or None."""
        cur = self.conn.execute(
            "SELECT run_id, sig, mode, pid, create_time, last_change, active"
            " FROM watch_runs WHERE run_id = ?",
            (run_id,),
        )
        row = cur.fetchone()
        return dict(zip([d[0] for d in cur.description], row, strict=False)) if row else None

    def set_watch_state(self, run_id: str, **fields: Any) -> None:
        """Upsert the daemon's state for a run: sig, mode, pid, create_time, last_change, active."""
        allowed = {"sig", "mode", "pid", "create_time", "last_change", "active"}
        bad = set(fields) - allowed
        if bad:
            raise ValueError(f"unknown watch state fields: {sorted(bad)}")
        with self.transaction():
            self.conn.execute("INSERT OR IGNORE INTO watch_runs (run_id) VALUES (?)", (run_id,))
            if fields:
                sets = ", ".join(f"{k} = ?" for k in fields)
                self.conn.execute(
                    f"UPDATE watch_runs SET {sets} WHERE run_id = ?", [*fields.values(), run_id]
                )

    def watch_signatures(self) -> dict[str, tuple[str, str | None, int]]:
        """source_key -> (run id, files signature, active) for every run the daemon knows."""
        return {
            key: (rid, sig, int(active or 0))
            for key, rid, sig, active in self.conn.execute(
                "SELECT r.source_key, r.id, w.sig, w.active FROM runs r"
                " LEFT JOIN watch_runs w ON w.run_id = r.id WHERE r.deleted_at IS NULL"
            )
        }

    def active_watch_runs(self) -> list[dict[str, Any]]:
        """Runs the daemon was following when it stopped (to pick up after a restart)."""
        cur = self.conn.execute(
            "SELECT r.id, r.path, r.source_key, r.status, w.pid, w.create_time, w.last_change"
            " FROM watch_runs w JOIN runs r ON r.id = w.run_id WHERE w.active = 1"
        )
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=False)) for row in cur.fetchall()]

    # -- notes, merging (labbook run) -------------------------------------------------

    def note(self, note_id: int) -> dict[str, Any] | None:
        """One note by id, tombstoned ones included (``deleted_at`` says so)."""
        row = self.conn.execute(
            "SELECT id, run_id, at, author, kind, text, deleted_at FROM notes WHERE id = ?",
            (note_id,),
        ).fetchone()
        if row is None:
            return None
        keys = ("id", "run_id", "at", "author", "kind", "text", "deleted_at")
        return dict(zip(keys, row, strict=True))

    def delete_note(self, note_id: int) -> bool:
        """Tombstone a note: it stays in the table with ``deleted_at`` set, hidden from
        records and search. False when there is no such (live) note."""
        with self.transaction():
            cur = self.conn.execute(
                "UPDATE notes SET deleted_at = ? WHERE id = ? AND deleted_at IS NULL",
                (now_iso(), note_id),
            )
        return cur.rowcount > 0

    def adopt_source(self, run_id: str, source_key: str) -> None:
        """Make ``source_key`` identify the run ``run_id`` (``labbook run`` joining a run dir).

        After this, :meth:`save_run` of facts with that source key updates ``run_id``.
        If another run already had the key (the daemon saw the directory first), its
        notes, tags, tail positions and, when ``run_id`` has none, its metrics move to
        ``run_id``; the other run is tombstoned (``deleted_at``; its id is never
        reused) under the source key ``merged:<run_id>:<its id>``.

        An other run that had ended before ``run_id`` started is not the daemon's or
        an import's record of this launch but a run of its own (an earlier launch, a
        replica, a resumed run writing into the same directory): it keeps everything
        and gives up only the key, as ``superseded:<run_id>:<key>``.
        """
        key = safe_text(source_key)
        with self.transaction():
            other = self.id_for_source(key)  # type: ignore[arg-type]
            if other == run_id:
                return
            self.conn.execute("DELETE FROM removed_sources WHERE source_key = ?", (key,))
            if other is not None and self._ended_before(other, run_id):
                self.conn.execute(
                    "UPDATE runs SET source_key = ?, updated_at = ? WHERE id = ?",
                    (f"superseded:{run_id}:{key}", now_iso(), other),
                )
                other = None
            gone = (
                other is not None
                and self.conn.execute(
                    "SELECT 1 FROM runs WHERE id = ? AND deleted_at IS NOT NULL", (other,)
                ).fetchone()
            )
            if gone:
                # A run dir whose run was removed (labbook rm), run again: the new run
                # takes the dir; the removed one keeps its own notes and metrics.
                self.conn.execute(
                    "UPDATE runs SET source_key = ? WHERE id = ?",
                    (f"removed:{other}:{key}", other),
                )
                other = None
            if other is not None:
                c = self.conn
                c.execute("UPDATE notes SET run_id = ? WHERE run_id = ?", (run_id, other))
                c.execute(
                    "INSERT OR IGNORE INTO tags (run_id, tag) SELECT ?, tag FROM tags"
                    " WHERE run_id = ?",
                    (run_id, other),
                )
                c.execute("DELETE FROM tags WHERE run_id = ?", (other,))
                c.execute("DELETE FROM files WHERE run_id = ?", (run_id,))
                c.execute("UPDATE files SET run_id = ? WHERE run_id = ?", (run_id, other))
                has_metrics = c.execute(
                    "SELECT 1 FROM metrics WHERE run_id = ? LIMIT 1", (run_id,)
                ).fetchone()
                if has_metrics:
                    c.execute("DELETE FROM metrics WHERE run_id = ?", (other,))
                    c.execute("DELETE FROM series WHERE run_id = ?", (other,))
                else:
                    c.execute("UPDATE metrics SET run_id = ? WHERE run_id = ?", (run_id, other))
                    c.execute("UPDATE series SET run_id = ? WHERE run_id = ?", (run_id, other))
                c.execute("DELETE FROM params WHERE run_id = ?", (other,))
                if c.execute(
                    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'watch_runs'"
                ).fetchone():
                    c.execute("DELETE FROM watch_runs WHERE run_id = ?", (run_id,))
                    c.execute("UPDATE watch_runs SET run_id = ? WHERE run_id = ?", (run_id, other))
                c.execute(
                    "UPDATE runs SET source_key = ?, deleted_at = ?, updated_at = ? WHERE id = ?",
                    (f"merged:{run_id}:{other}", now_iso(), now_iso(), other),
                )
            self.conn.execute(
                "UPDATE runs SET source_key = ?, updated_at = ? WHERE id = ?",
                (key, now_iso(), run_id),
            )

    def _ended_before(self, other: str, run_id: str) -> bool:
        """Whether run ``other`` had ended (not running, an end time) before ``run_id`` started."""
        rows = {
            r[0]: r[1:]
            for r in self.conn.execute(
                "SELECT id, status, started_at, ended_at, pid FROM runs WHERE id IN (?, ?)",
                (other, run_id),
            )
        }
        if other not in rows or run_id not in rows:
            return False
        status, _, ended, pid = rows[other]
        started, mine = rows[run_id][1], rows[run_id][3]
        if status == "running" or not ended or not started:
            return False
        if pid is not None and pid == mine:  # the daemon saw this launch's process
            return False
        from datetime import datetime

        try:
            return datetime.fromisoformat(str(ended)) <= datetime.fromisoformat(str(started))
        except ValueError:
            return False

    def runs_with_config_sig(self, digest: str, *, limit: int = 200) -> list[dict[str, Any]]:
        """Rows of runs whose config signature is ``digest`` (see labbook.store.configsig), newest first."""
        cur = self.conn.execute(
            f"SELECT * FROM runs WHERE config_sig = ? AND {self.dialect.live()} ORDER BY "
            + self.dialect.newest_first()
            + " LIMIT ?",
            (digest, int(limit)),
        )
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, row, strict=False)) for row in cur.fetchall()]

    # -- housekeeping: labbook rm, archive, gc -------------------------------------------

    def set_removed(self, run_ids: Sequence[str], removed: bool = True) -> list[str]:
        """Tombstone runs (``labbook rm``: ``deleted_at`` set, hidden everywhere, kept
        whole) or, with ``removed=False``, bring tombstoned ones back. Runs merged into
        another (``merged:`` source keys) are never brought back. Returns the ids changed."""
        changed: list[str] = []
        now = now_iso()
        with self.transaction():
            for chunk in _chunks(list(dict.fromkeys(run_ids)), 500):
                marks = ",".join("?" for _ in chunk)
                if removed:
                    where = f"id IN ({marks}) AND deleted_at IS NULL"
                else:
                    where = (
                        f"id IN ({marks}) AND deleted_at IS NOT NULL"
                        " AND source_key NOT LIKE 'merged:%'"
                    )
                ids = [r[0] for r in self.conn.execute(f"SELECT id FROM runs WHERE {where}", chunk)]
                if not ids:
                    continue
                idm = ",".join("?" for _ in ids)
                self.conn.execute(
                    f"UPDATE runs SET deleted_at = ?, updated_at = ? WHERE id IN ({idm})",
                    [now if removed else None, now, *ids],
                )
                if not removed:
                    self._reattach_sources(ids)
                changed += ids
        return changed

    def _reattach_sources(self, run_ids: list[str]) -> None:
        """Runs restored whose run dir a later ``labbook run`` took over (source key
        ``removed:<id>:<key>``) get their key back where no other run holds it."""
        marks = ",".join("?" for _ in run_ids)
        for rid, key in self.conn.execute(
            f"SELECT id, source_key FROM runs WHERE id IN ({marks}) AND source_key LIKE 'removed:%'",
            run_ids,
        ).fetchall():
            original = str(key).split(":", 2)[2]
            if self.id_for_source(original) is None:
                self.conn.execute("UPDATE runs SET source_key = ? WHERE id = ?", (original, rid))

    def set_archived(self, run_ids: Sequence[str], archived: bool = True) -> list[str]:
        """Archive runs (``labbook archive``: out of the default listings, in
        ``ls --archived``) or bring them back; returns the ids changed."""
        changed: list[str] = []
        now = now_iso()
        with self.transaction():
            for chunk in _chunks(list(dict.fromkeys(run_ids)), 500):
                marks = ",".join("?" for _ in chunk)
                test = "IS NULL" if archived else "IS NOT NULL"
                ids = [
                    r[0]
                    for r in self.conn.execute(
                        f"SELECT id FROM runs WHERE id IN ({marks}) AND archived_at {test}", chunk
                    )
                ]
                if ids:
                    idm = ",".join("?" for _ in ids)
                    self.conn.execute(
                        f"UPDATE runs SET archived_at = ?, updated_at = ? WHERE id IN ({idm})",
                        [now if archived else None, now, *ids],
                    )
                    changed += ids
        return changed

    def _run_tables(self) -> list[str]:
        """The tables whose rows belong to one run (:data:`RUN_TABLES`) that this
        database has. Queues kept by triggers (the remote push's ``dirty``) are not
        among them: their triggers see a run go and say so themselves."""
        have = {
            str(name)
            for (name,) in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        return [t for t in RUN_TABLES if t in have]

    def _blob_refs(self) -> list[tuple[str, str]]:
        """(table, column) of every column that references ``blobs(hash)``."""
        out = []
        for (name,) in self.conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        ).fetchall():
            for fk in self.conn.execute(f'PRAGMA foreign_key_list("{name}")'):
                if fk[2] == "blobs" and fk[4] in (None, "hash"):
                    out.append((str(name), str(fk[3])))
        return out

    def _unreferenced_blobs(self, candidates: Sequence[str] | None = None) -> str:
        """SQL (no arguments) selecting the blobs nothing references; ``candidates``
        narrows it to those hashes (passed as SQL literals: hex digests only)."""
        refs = " UNION ".join(
            f'SELECT "{c}" FROM "{t}" WHERE "{c}" IS NOT NULL' for t, c in self._blob_refs()
        )
        sql = "SELECT hash FROM blobs"
        conds = []
        if refs:
            conds.append(f"hash NOT IN ({refs})")
        if candidates is not None:
            hexes = [h for h in candidates if h and all(ch in "0123456789abcdef" for ch in h)]
            conds.append(f"hash IN ({','.join(repr(h) for h in hexes) or 'NULL'})")
        return sql + (" WHERE " + " AND ".join(conds) if conds else "")

    def purge_runs(self, run_ids: Sequence[str]) -> int:
        """Delete runs for good (``labbook rm --purge``): their rows in every table that
        belongs to a run, their search documents, the import states that name them and
        the blobs only they referenced. Each run dir's source key goes to
        ``removed_sources``, so that watch and import do not record it again. One
        transaction; returns how many runs were deleted."""
        ids = list(dict.fromkeys(run_ids))
        if not ids:
            return 0
        refs = self._blob_refs()
        deleted = 0
        with self.transaction():
            tables = self._run_tables()
            for chunk in _chunks(ids, 500):
                marks = ",".join("?" for _ in chunk)
                rows = self.conn.execute(
                    f"SELECT id, source_key, name, path FROM runs WHERE id IN ({marks})", chunk
                ).fetchall()
                if not rows:
                    continue
                live = [r[0] for r in rows]
                idm = ",".join("?" for _ in live)
                blobs: set[str] = set()
                for table, col in refs:
                    if table == "runs":
                        blobs.update(
                            str(h)
                            for (h,) in self.conn.execute(
                                f'SELECT "{col}" FROM runs WHERE id IN ({idm})', live
                            )
                            if h
                        )
                now = now_iso()
                self.conn.executemany(
                    "INSERT OR REPLACE INTO removed_sources"
                    " (source_key, run_id, name, path, removed_at) VALUES (?, ?, ?, ?, ?)",
                    [
                        (_source_of(key), rid, name, path, now)
                        for rid, key, name, path in rows
                        if not str(key).startswith(("merged:", "command:"))
                    ],
                )
                for table in tables:
                    self.conn.execute(f'DELETE FROM "{table}" WHERE run_id IN ({idm})', live)
                self.conn.execute(f"DELETE FROM runs WHERE id IN ({idm})", live)
                deleted += len(live)
                if blobs:
                    self.conn.execute(
                        f"DELETE FROM blobs WHERE hash IN ({self._unreferenced_blobs(sorted(blobs))})"
                    )
            gone = set(ids)
            for path, framework, run_ids_json in self.conn.execute(
                "SELECT path, framework, run_ids FROM import_dirs"
            ).fetchall():
                if gone.intersection(json.loads(run_ids_json or "[]")):
                    self.conn.execute(
                        "DELETE FROM import_dirs WHERE path = ? AND framework = ?",
                        (path, framework),
                    )
        return deleted

    def removed_source(self, source_key: str) -> str | None:
        """Whether ``labbook rm`` took the run of ``source_key`` away: "removed" (a
        tombstone), "purged" (deleted), or None."""
        key = safe_text(source_key) or source_key
        row = self.conn.execute(
            "SELECT deleted_at, source_key FROM runs WHERE source_key = ?", (key,)
        ).fetchone()
        if row is not None:
            return "removed" if row[0] is not None else None
        found = self.conn.execute(
            "SELECT 1 FROM removed_sources WHERE source_key = ?", (key,)
        ).fetchone()
        return "purged" if found else None

    def purged_sources(self, prefix: str | None = None) -> list[dict[str, Any]]:
        """The ``removed_sources`` rows (run dirs of purged runs), optionally those below
        the path ``prefix``."""
        sql = "SELECT source_key, run_id, name, path, removed_at FROM removed_sources"
        args: list[Any] = []
        if prefix is not None:
            sql += " WHERE source_key = ? OR substr(source_key, 1, ?) = ?"
            base = prefix.rstrip("/") + "/"
            args = [prefix, len(base), base]
        cur = self.conn.execute(sql + " ORDER BY source_key", args)
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]

    def include_source(self, source_key: str) -> str | None:
        """Let watch and import record ``source_key`` again (``import --include-removed``):
        a tombstoned run of it is brought back (its id returned), a purged one forgotten."""
        key = safe_text(source_key) or source_key
        with self.transaction():
            self.conn.execute("DELETE FROM removed_sources WHERE source_key = ?", (key,))
            row = self.conn.execute(
                "SELECT id FROM runs WHERE source_key = ? AND deleted_at IS NOT NULL", (key,)
            ).fetchone()
            if row is None:
                return None
            self.set_removed([row[0]], removed=False)
            return str(row[0])

    def forget_purged(self, source_keys: Sequence[str]) -> int:
        """Drop ``removed_sources`` rows (``labbook rm --undo PATH`` of a purged run dir)."""
        with self.transaction():
            n = 0
            for key in source_keys:
                n += self.conn.execute(
                    "DELETE FROM removed_sources WHERE source_key = ?", (key,)
                ).rowcount
        return n

    def gc(self, *, dry_run: bool = False) -> dict[str, Any]:
        """Drop what no run references (``labbook gc``) and give the space back.

        In one IMMEDIATE write transaction (so a run saved meanwhile either committed
        before the scan, and its blobs are referenced, or waits until the delete is
        done): blobs no column that references ``blobs`` names, series whose run or
        metric is gone, other rows of runs that no longer exist. Then, when that or
        the free pages give space back, ``VACUUM`` (the file shrinks; writers wait
        meanwhile) and a WAL checkpoint. Returns counts and
        bytes; ``dry_run`` only counts.
        """
        size_before = self._file_size()
        report: dict[str, Any] = {"dry_run": dry_run, "database_before": size_before}
        with self.transaction():
            orphans = self._unreferenced_blobs()
            n, size = self.conn.execute(
                f"SELECT count(*), coalesce(sum(length(data)), 0) FROM blobs WHERE hash IN ({orphans})"
            ).fetchone()
            report["blobs"], report["blob_bytes"] = int(n), int(size)
            stale_series = (
                "(series.run_id NOT IN (SELECT id FROM runs) OR NOT EXISTS (SELECT 1 FROM"
                " metrics m WHERE m.run_id = series.run_id AND m.tag = series.tag))"
            )
            n, size = self.conn.execute(
                "SELECT count(*), coalesce(sum(length(points)), 0) FROM series"
                f" WHERE {stale_series}"
            ).fetchone()
            report["series"], report["series_bytes"] = int(n), int(size)
            rows = 0
            others = [t for t in self._run_tables() if t != "series"]
            for table in others:
                rows += self.conn.execute(
                    f'SELECT count(*) FROM "{table}" WHERE run_id NOT IN (SELECT id FROM runs)'
                ).fetchone()[0]
            report["rows"] = int(rows)
            if not dry_run:
                self.conn.execute(f"DELETE FROM blobs WHERE hash IN ({orphans})")
                self.conn.execute(f"DELETE FROM series WHERE {stale_series}")
                for table in others:
                    self.conn.execute(
                        f'DELETE FROM "{table}" WHERE run_id NOT IN (SELECT id FROM runs)'
                    )
            free_pages = self.conn.execute("PRAGMA freelist_count").fetchone()[0]
            page_size = self.conn.execute("PRAGMA page_size").fetchone()[0]
            report["free_bytes"] = int(free_pages) * int(page_size)
        dropped = report["blobs"] + report["series"] + report["rows"]
        # VACUUM rewrites the whole file: only when it gives something back (rows
        # dropped now, or free pages worth it, as rm --purge leaves them).
        if not dry_run and (dropped or report["free_bytes"] > max(1 << 20, size_before // 20)):
            self._vacuum()
        report["database_after"] = self._file_size() if not dry_run else size_before
        report["freed_bytes"] = report["blob_bytes"] + report["series_bytes"]
        return report

    def _vacuum(self) -> None:
        """VACUUM (auto_vacuum is off in labbook's stores), waiting for other writers
        as a write transaction does, then a checkpoint that truncates the WAL."""
        deadline = time.monotonic() + max(self.busy_timeout, 30.0)
        delay = 0.05
        while True:
            try:
                self.conn.execute("VACUUM")
                break
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or time.monotonic() > deadline:
                    raise StoreError(f"cannot vacuum {self.path}: {exc}") from exc
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
        with contextlib.suppress(sqlite3.OperationalError):
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def _file_size(self) -> int:
        """Bytes the database takes: its pages (the WAL aside)."""
        pages = self.conn.execute("PRAGMA page_count").fetchone()[0]
        page_size = self.conn.execute("PRAGMA page_size").fetchone()[0]
        return int(pages) * int(page_size)


#: Tables of rows that belong to one run (by ``run_id``): what ``rm --purge`` deletes
#: with a run and what ``gc`` drops when their run is gone.
RUN_TABLES = (
    "params",
    "metrics",
    "series",
    "tags",
    "notes",
    "files",
    "watch_runs",
    "search_docs",
    "search_dirty",
)


#: A metric's row of ``metrics`` (without the run id; the tag first) and its
#: compressed ``series`` points.
_TagRows = tuple[tuple[Any, ...], bytes]


#: A metric's ``source``: a structured metrics file, or lines the run printed.
FILE = "file"
OUTPUT = "output"


def _tag_rows(tag: str, s: Summary, points: Sequence[Point], source: str) -> _TagRows:
    kind = nonfinite_kind(s.last)
    summary = (
        tag,
        None if kind else s.last,
        kind,
        s.min,
        s.max,
        s.step,
        s.count,
        s.nonfinite_step,
        s.first_step,
        s.last_wall_time,
        source,
    )
    return summary, zlib.compress(json.dumps(encode_points(points)).encode(), 6)


def _prepare_blob(data: str | bytes | None) -> tuple[str, int, bytes] | None:
    """(hash, size, compressed bytes) of a blob to store, or None."""
    if data is None:
        return None
    raw = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
    return hashlib.sha256(raw).hexdigest(), len(raw), zlib.compress(raw, 6)


def _env_json(env: EnvInfo) -> str:
    return dump_json(
        {
            "python": env.python,
            "platform": env.platform,
            "packages": env.packages,
            "cuda": env.cuda,
            "gpus": env.gpus,
            "vars": env.vars,
        }
    )


def _group_key(facts: RunFacts, row: dict[str, Any]) -> str | None:
    """The run's seed-group key (labbook.store.groups); None: a group of its own."""
    from labbook.store.groups import group_key

    return group_key(
        framework=facts.framework,
        command=facts.command,
        cwd=row["cwd"],
        git_root=row["git_root"],
        git_remote=row["git_remote"],
        config_sig=row["config_sig"],
    )


def _config_sig(config: dict[str, Any]) -> str | None:
    from labbook.store.configsig import signature_hash

    return signature_hash(config)


def _source_of(key: str) -> str:
    """The run dir's own source key of a run whose dir ``labbook run`` took over."""
    return key.split(":", 2)[2] if key.startswith("removed:") else key


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    """Whether an error means another connection holds a lock (worth retrying)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED (any extended code)
    text = str(exc)
    return "locked" in text or "busy" in text


def _make_private(db_path: Path) -> None:
    """The database and its ``-wal``/``-shm``/journal are the user's own and private.

    A file of this user's with group or other permission bits is made 0600. A file
    owned by another user is refused: in a shared directory another user could
    create ``labbook.db-wal`` first and read everything written through it. The
    ``-wal`` and ``-shm`` files are created private before SQLite opens them, so
    nobody can slip one in between.
    """
    uid = os.getuid()
    for suffix in ("", "-wal", "-shm"):
        p = db_path.with_name(db_path.name + suffix)
        try:
            st = os.lstat(p)
        except FileNotFoundError:
            if suffix:
                with contextlib.suppress(OSError):  # a read-only directory: SQLite decides
                    os.close(os.open(p, os.O_CREAT | os.O_EXCL | os.O_RDWR | os.O_NOFOLLOW, 0o600))
            continue
        except OSError as exc:
            raise StoreError(f"cannot open {p}: {exc.strerror or exc}") from exc
        if stat.S_ISLNK(st.st_mode) and suffix:
            raise StoreError(f"{p} is a symbolic link; refusing to use it", hint="remove it")
        if st.st_uid != uid:
            raise StoreError(
                f"{p} belongs to {_user_name(st.st_uid)}, not to you; refusing to use it",
                hint="use your own database (--db or LABBOOK_DB), or remove that file",
            )
        if st.st_mode & 0o077 and st.st_uid == uid and stat.S_ISREG(st.st_mode):
            with contextlib.suppress(OSError):
                os.chmod(p, 0o600)


def _user_name(uid: int) -> str:
    name = user_name(uid)
    return f"uid {uid}" if name == str(uid) else f"user {name}"


#: ``runs.seed_source`` of a run whose seed is unknown (``seed_value`` NULL): a file that
#: could hold it could not be read. NULL value and NULL source: not set.
SEED_UNKNOWN = "unknown"


def _seed_record(value: str | None, source: str | None) -> SeedRecord:
    """The ``seed`` of the --json record: value, source, and whether it is known."""
    if value is None:
        return {"value": None, "source": None, "known": source != SEED_UNKNOWN}
    return {"value": json.loads(value), "source": source, "known": True}
