"""The SQLite store: one file, WAL, busy timeout, migrations, private to its user.

Writes go through :class:`Store` methods; reads return plain dicts in the shape of
the ``--json`` contract (see ``DESIGN.md`` and the README). Views never write SQL
of their own.

Reads use the standard library's ``sqlite3`` only; sqlite-utils (used for the
schema migrations and upserts) is imported the first time something is written,
which keeps ``labbook ls`` and ``labbook show`` fast to start.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import secrets
import socket
import sqlite3
import time
import zlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from labbook.errors import StoreError
from labbook.model import Point, RunFacts
from labbook.paths import default_db_path
from labbook.schema import SCHEMA_VERSION
from labbook.series import (
    MAX_POINTS,
    Summary,
    decode_points,
    downsample,
    encode_points,
    from_kind,
    nonfinite_kind,
)

if TYPE_CHECKING:
    from sqlite_utils import Database

BUSY_TIMEOUT_S = 10.0
ID_BYTES = 4  # 8 hex characters


def utc_iso(ts: float | None) -> str | None:
    """Unix seconds to ``2026-11-22T10:13:28Z`` (UTC, second precision)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_iso() -> str:
    return utc_iso(time.time())  # type: ignore[return-value]


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str, allow_nan=True)


def safe_text(text: str | None) -> str | None:
    """Text SQLite can store: undecodable bytes of a file name (surrogate escapes) as \\xNN."""
    if text is None:
        return None
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    return None


class Store:
    """A labbook database. Open with :meth:`open`; use as a context manager."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path
        self._db: Database | None = None

    # -- opening -----------------------------------------------------------------

    @classmethod
    def open(cls, path: str | os.PathLike[str] | None = None, *, create: bool = True) -> Store:
        """Open (and create or migrate) the database at ``path`` or the default path.

        A new database file is created with mode 0600 in a 0700 directory, so other
        users on a shared machine cannot read configs, diffs or environments.
        """
        db_path = Path(path).expanduser() if path is not None else default_db_path()
        exists = db_path.exists()
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
        try:
            conn = sqlite3.connect(str(db_path), timeout=BUSY_TIMEOUT_S, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open {db_path}: {exc}") from exc
        store = cls(conn, db_path)
        if version != SCHEMA_VERSION:
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{db_path} was written by a newer labbook (schema {version})",
                    hint="upgrade labbook",
                )
            store._migrate()
        return store

    def _migrate(self) -> None:
        from labbook.schema import migrations

        try:
            self.conn.execute("PRAGMA journal_mode = WAL")
            migrations().apply(self.db)
            self.conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            self.conn.commit()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot set up database {self.path}: {exc}") from exc

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
        with self.db.atomic():
            yield

    def data_version(self) -> int:
        """Changes when another connection commits (for views that poll)."""
        return int(self.conn.execute("PRAGMA data_version").fetchone()[0])

    # -- blobs -------------------------------------------------------------------

    def put_blob(self, data: str | bytes | None) -> str | None:
        """Store text or bytes once by content hash, zlib-compressed; return the hash."""
        if data is None:
            return None
        raw = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
        digest = hashlib.sha256(raw).hexdigest()
        self.conn.execute(
            "INSERT OR IGNORE INTO blobs (hash, size, data) VALUES (?, ?, ?)",
            (digest, len(raw), zlib.compress(raw, 6)),
        )
        return digest

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
            run_id = secrets.token_hex(ID_BYTES)
            if not self.conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone():
                return run_id

    def id_for_source(self, source_key: str) -> str | None:
        row = self.conn.execute(
            "SELECT id FROM runs WHERE source_key = ?", (source_key,)
        ).fetchone()
        return row[0] if row else None

    def save_run(self, facts: RunFacts) -> tuple[str, bool]:
        """Insert or update the run for ``facts.source_key``; return ``(id, created)``.

        Re-saving the same source replaces what was read from its files (config,
        metrics, git, env) and keeps what people added (notes, manual tags).
        """
        with self.transaction():
            run_id = self.id_for_source(safe_text(facts.source_key))  # type: ignore[arg-type]
            created = run_id is None
            if run_id is None:
                run_id = self._new_id()
            now = now_iso()
            git = facts.git
            env = facts.env
            row: dict[str, Any] = {
                "id": run_id,
                "source_key": safe_text(facts.source_key),
                "name": safe_text(facts.name),
                "path": safe_text(facts.path),
                "host": facts.host or socket.gethostname(),
                "user": facts.user or _current_user(),
                "framework": facts.framework,
                "status": facts.status,
                "failure_kind": facts.failure.kind if facts.failure else None,
                "failure_message": facts.failure.message if facts.failure else None,
                "failure_step": facts.failure.step if facts.failure else None,
                "started_at": utc_iso(facts.started_at),
                "ended_at": utc_iso(facts.ended_at),
                "updated_at": now,
                "command": _json([safe_text(a) for a in facts.command])
                if facts.command is not None
                else None,
                "pid": facts.pid,
                "cwd": safe_text(facts.cwd),
                "seed_value": _json(facts.seed.value) if facts.seed.value is not None else None,
                "seed_source": facts.seed.source if facts.seed.value is not None else None,
                "git_root": git.root if git else None,
                "git_commit": git.commit if git else None,
                "git_branch": git.branch if git else None,
                "git_remote": git.remote if git else None,
                "git_dirty": int(git.dirty) if git else None,
                "git_diff": self.put_blob(git.diff) if git else None,
                "git_untracked": _json(git.untracked) if git else None,
                "git_extra": self.put_blob(
                    _json(
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
                "env": self.put_blob(
                    _json(
                        {
                            "python": env.python,
                            "platform": env.platform,
                            "packages": env.packages,
                            "cuda": env.cuda,
                            "gpus": env.gpus,
                            "vars": env.vars,
                        }
                    )
                )
                if env
                else None,
                "env_source": env.source if env else None,
                "log_tail": self.put_blob(facts.log_tail),
                "missing": 0,
            }
            if created:
                row["created_at"] = now
                cols = ", ".join(row)
                marks = ", ".join("?" for _ in row)
                self.conn.execute(f"INSERT INTO runs ({cols}) VALUES ({marks})", list(row.values()))
            else:
                sets = ", ".join(f"{k} = ?" for k in row if k != "id")
                values = [v for k, v in row.items() if k != "id"]
                self.conn.execute(f"UPDATE runs SET {sets} WHERE id = ?", [*values, run_id])
            self._replace_params(run_id, facts.config)
            self.replace_metrics(run_id, facts.metrics)
            if facts.tags:
                self.conn.executemany(
                    "INSERT OR IGNORE INTO tags (run_id, tag) VALUES (?, ?)",
                    [(run_id, t) for t in facts.tags],
                )
        return run_id, created

    def _replace_params(self, run_id: str, config: dict[str, Any]) -> None:
        self.conn.execute("DELETE FROM params WHERE run_id = ?", (run_id,))
        self.conn.executemany(
            "INSERT INTO params (run_id, key, value, num) VALUES (?, ?, ?, ?)",
            [(run_id, k, _json(v), _number(v)) for k, v in config.items()],
        )

    def replace_metrics(self, run_id: str, metrics: dict[str, list[Point]]) -> None:
        """Replace all metric summaries and series of a run with ``metrics``."""
        self.conn.execute("DELETE FROM metrics WHERE run_id = ?", (run_id,))
        self.conn.execute("DELETE FROM series WHERE run_id = ?", (run_id,))
        for tag, points in metrics.items():
            if points:
                self._write_tag(run_id, tag, Summary.of(points), downsample(points))

    def append_metrics(self, run_id: str, metrics: dict[str, list[Point]]) -> None:
        """Add newly read points to a run's summaries and series (tailing).

        Costs O(appended + MAX_POINTS) per tag, whatever the run's length.
        """
        with self.transaction():
            for tag, points in metrics.items():
                if not points:
                    continue
                summary, series = self._read_tag(run_id, tag)
                summary.update(points)
                merged = series + list(points)
                if len(merged) > MAX_POINTS:
                    merged = downsample(merged)
                self._write_tag(run_id, tag, summary, merged)

    def _read_tag(self, run_id: str, tag: str) -> tuple[Summary, list[Point]]:
        row = self.conn.execute(
            "SELECT last, last_kind, min, max, step, count, nonfinite_step, first_step,"
            " last_wall_time FROM metrics WHERE run_id = ? AND tag = ?",
            (run_id, tag),
        ).fetchone()
        if row is None:
            return Summary(), []
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
        return summary, points

    def _write_tag(self, run_id: str, tag: str, s: Summary, points: Sequence[Point]) -> None:
        kind = nonfinite_kind(s.last)
        self.conn.execute(
            "INSERT OR REPLACE INTO metrics (run_id, tag, last, last_kind, min, max, step, count,"
            " nonfinite_step, first_step, last_wall_time) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                run_id,
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
            ),
        )
        payload = zlib.compress(json.dumps(encode_points(points)).encode(), 6)
        self.conn.execute(
            "INSERT OR REPLACE INTO series (run_id, tag, points) VALUES (?, ?, ?)",
            (run_id, tag, payload),
        )

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
        self, run_id: str, text: str, kind: str = "note", author: str | None = None
    ) -> int:
        with self.transaction():
            cur = self.conn.execute(
                "INSERT INTO notes (run_id, at, author, kind, text) VALUES (?, ?, ?, ?, ?)",
                (run_id, now_iso(), author or _current_user(), kind, text),
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

    def metric_summaries(self, run_ids: Sequence[str]) -> dict[str, dict[str, dict[str, Any]]]:
        out: dict[str, dict[str, dict[str, Any]]] = {rid: {} for rid in run_ids}
        for chunk in _chunks(list(run_ids), 500):
            marks = ",".join("?" for _ in chunk)
            for r in self.conn.execute(
                "SELECT run_id, tag, last, last_kind, min, max, step, count, nonfinite_step"
                f" FROM metrics WHERE run_id IN ({marks}) ORDER BY tag",
                chunk,
            ):
                out[r[0]][r[1]] = {
                    "last": _json_float(from_kind(r[2], r[3])),
                    "min": r[4],
                    "max": r[5],
                    "step": r[6],
                    "count": r[7],
                    "nonfinite_step": r[8],
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

    def record(self, run_id: str, *, heavy: bool = True) -> dict[str, Any]:
        """The run as the ``--json`` contract object (``heavy=False`` omits diff/packages)."""
        row = self.run_row(run_id)
        if row is None:
            from labbook.errors import RunNotFound

            raise RunNotFound(f"no run with id {run_id}")
        return self._records([row], heavy=heavy)[0]

    def records(
        self, rows: Sequence[dict[str, Any]], *, heavy: bool = False
    ) -> list[dict[str, Any]]:
        return self._records(rows, heavy=heavy)

    def _records(self, rows: Sequence[dict[str, Any]], *, heavy: bool) -> list[dict[str, Any]]:
        ids = [r["id"] for r in rows]
        metrics = self.metric_summaries(ids)
        tags = self.tags_of(ids)
        configs = self._configs(ids)
        notes = self._notes(ids)
        envs: dict[str, Any] = {}  # runs of one interpreter share one env blob: decode it once
        out = []
        for r in rows:
            rid = r["id"]
            rec: dict[str, Any] = {
                "id": rid,
                "name": r["name"],
                "path": r["path"],
                "host": r["host"],
                "user": r["user"],
                "framework": r["framework"],
                "status": r["status"],
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
                "seed": {
                    "value": json.loads(r["seed_value"]) if r["seed_value"] is not None else None,
                    "source": r["seed_source"],
                },
                "config": configs.get(rid, {}),
                "metrics": metrics.get(rid, {}),
                "git": self._git(r, heavy=heavy),
                "env": self._env(r, heavy=heavy, cache=envs),
                "gpu": json.loads(r["gpu"]) if r["gpu"] else None,
                "tags": tags.get(rid, []),
                "notes": notes.get(rid, []),
                "missing": bool(r["missing"]),
                "created_at": r["created_at"],
                "updated_at": r["updated_at"],
            }
            out.append(rec)
        return out

    def _configs(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {rid: {} for rid in ids}
        for chunk in _chunks(list(ids), 500):
            marks = ",".join("?" for _ in chunk)
            for rid, key, value in self.conn.execute(
                f"SELECT run_id, key, value FROM params WHERE run_id IN ({marks}) ORDER BY key",
                chunk,
            ):
                out[rid][key] = json.loads(value) if value is not None else None
        return out

    def _notes(self, ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for chunk in _chunks(list(ids), 500):
            marks = ",".join("?" for _ in chunk)
            for rid, at, author, kind, text in self.conn.execute(
                f"SELECT run_id, at, author, kind, text FROM notes WHERE run_id IN ({marks})"
                " AND deleted_at IS NULL ORDER BY id",
                chunk,
            ):
                out.setdefault(rid, []).append(
                    {"at": at, "kind": kind, "text": text, "author": author}
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


def _json_float(value: float | None) -> float | str | None:
    """JSON has no NaN: non-finite values are written as the strings 'nan', 'inf', '-inf'."""
    kind = nonfinite_kind(value)
    return kind if kind else value


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _current_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return str(os.getuid())
