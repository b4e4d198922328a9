"""What this store has not yet pushed to the lab's notebook (issue #13): the outbox.

Schema step ``0014_remote`` adds

``meta(key, value)``
    ``origin``: this store's identity on the server, a uuid4 hex minted when the
    step runs (a new store, or an old one upgraded); ``origin_token`` and
    ``origin_path``: see *Copies* below; ``gen``: the generation counter that the
    dirty marks carry.

``dirty(run_id, part, gen)``
    A run's parts that changed since they were last pushed: ``run`` (its row),
    ``params``, ``metrics``, ``series``, ``tags``, ``notes`` and ``all`` (everything:
    a store that never pushed, ``labbook remote push --all``). Triggers on runs,
    metrics, series, tags and notes keep it, so every writer marks what it changes
    without knowing about it; ``params`` is marked once per save by
    ``Store.save_run`` (a per-key trigger doubled the cost of re-saving a large
    config).

A push *claims* a generation (:func:`claim`: the counter moves on, so a change
made while the push runs carries a newer generation), snapshots, commits on the
server, then :func:`clear` removes only the marks with ``gen <= claimed``: a change
during a push survives it; a crash anywhere leaves the runs dirty.

Copies (:func:`origin`): two stores must never push as one origin, and one store must
never become two. The file's inode is no witness (NFS gives a new ``st_dev`` per
client and remount; ``cp db t && mv t db`` is a new inode of the same store), so the
store holds a random token, in its ``meta`` (``origin_token``, with ``origin_path``,
the database's path when the token was last confirmed) and in a sidecar file beside
it, ``<db>.origin`` (mode 0600). The rule:

* sidecar token = meta token: the same store (also moved or remounted with its
  sidecar; ``origin_path`` follows it);
* a sidecar with a *different* token: a copy of another store placed beside that
  store's sidecar — or a copy over this one — mints a new origin;
* no sidecar, the database where ``origin_path`` says: the sidecar was deleted (or
  never written: an upgrade from the inode rule): written again, origin kept;
* no sidecar, the database elsewhere than ``origin_path``: a copy made without its
  sidecar (another node's store copied here, a restored backup): a new origin;
* a store with no token yet (an upgrade) mints one and keeps its origin.

A copy that takes its sidecar along (``cp -a`` of the directory) to another path is
taken for a move: the same origin. A new origin marks every run dirty (none of them
is on the server under it). A sidecar that cannot be written (a read-only directory)
keeps the origin.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import uuid
from pathlib import Path

PARTS = ("run", "params", "metrics", "series", "tags", "notes")
ALL = "all"

_GEN = "(SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'gen')"


def _mark(run_id: str, part: str) -> str:
    return (
        f"INSERT INTO dirty(run_id, part, gen) VALUES ({run_id}, '{part}', {_GEN})"
        " ON CONFLICT(run_id, part) DO UPDATE SET gen = excluded.gen;"
    )


def _triggers() -> str:
    out = []
    for table, part, col in (
        ("runs", "run", "id"),
        ("metrics", "metrics", "run_id"),
        ("series", "series", "run_id"),
        ("tags", "tags", "run_id"),
        ("notes", "notes", "run_id"),
    ):
        out.append(
            f"CREATE TRIGGER IF NOT EXISTS dirty_{table}_ai AFTER INSERT ON {table} BEGIN "
            f"{_mark('new.' + col, part)} END;"
        )
        out.append(
            f"CREATE TRIGGER IF NOT EXISTS dirty_{table}_au AFTER UPDATE ON {table} BEGIN "
            f"{_mark('new.' + col, part)} END;"
        )
        out.append(  # a row moved to another run (adopt_source moves notes and metrics)
            f"CREATE TRIGGER IF NOT EXISTS dirty_{table}_mv AFTER UPDATE OF {col} ON {table}"
            f" WHEN old.{col} IS NOT new.{col} BEGIN {_mark('old.' + col, part)} END;"
        )
        out.append(
            f"CREATE TRIGGER IF NOT EXISTS dirty_{table}_ad AFTER DELETE ON {table} BEGIN "
            f"{_mark('old.' + col, part)} END;"
        )
    return "\n".join(out)


#: The Slurm columns of ``runs`` (labbook.capture.slurm), local and on the server.
SLURM_COLUMNS = (
    ("slurm_cluster", "TEXT"),
    ("slurm_job", "TEXT"),
    ("slurm_array_job", "TEXT"),
    ("slurm_array_task", "TEXT"),
    ("slurm_restarts", "INTEGER"),
    ("slurm_nodes", "TEXT"),
    ("slurm_partition", "TEXT"),
    ("slurm_account", "TEXT"),
)


def create(conn: sqlite3.Connection) -> None:
    """Schema step 0014_remote (idempotent), inside the migration's transaction."""
    row = conn.execute("PRAGMA database_list").fetchone()
    path = Path(row[2]) if row and row[2] else None
    cols = {row[1] for row in conn.execute("PRAGMA table_info(runs)")}
    for name, kind in SLURM_COLUMNS:
        if name not in cols:
            conn.execute(f"ALTER TABLE runs ADD COLUMN {name} {kind}")
    conn.execute(
        "CREATE INDEX IF NOT EXISTS runs_slurm ON runs(slurm_cluster, slurm_job, slurm_array_task)"
    )
    conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS dirty (run_id TEXT NOT NULL, part TEXT NOT NULL,"
        " gen INTEGER NOT NULL, PRIMARY KEY (run_id, part)) WITHOUT ROWID"
    )
    conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('gen', '1')")
    if conn.execute("SELECT 1 FROM meta WHERE key = 'origin'").fetchone() is None:
        conn.execute("INSERT INTO meta(key, value) VALUES ('origin', ?)", (uuid.uuid4().hex,))
        _set_token(conn, path)
        # what is already here has never been pushed
        conn.execute(
            f"INSERT OR IGNORE INTO dirty(run_id, part, gen) SELECT id, '{ALL}', 1 FROM runs"
        )
    for statement in _triggers().splitlines():  # inside the migration's transaction
        conn.execute(statement)


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".origin")


def _read_sidecar(path: Path) -> str | None:
    try:
        return _sidecar(path).read_text(encoding="ascii").strip() or None
    except (OSError, UnicodeError):
        return None


def _write_sidecar(path: Path, token: str) -> None:
    """Best effort (0600, atomic): a sidecar that cannot be written keeps the origin."""
    side = _sidecar(path)
    tmp = side.with_name(f"{side.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(token + "\n")
        os.replace(tmp, side)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _set_token(conn: sqlite3.Connection, path: Path | None) -> None:
    """A new token in meta and in the sidecar (inside the caller's transaction)."""
    token = uuid.uuid4().hex
    where = os.path.abspath(path) if path is not None else ""
    conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('origin_token', ?)", (token,))
    conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('origin_path', ?)", (where,))
    if path is not None:
        _write_sidecar(path, token)


def origin(conn: sqlite3.Connection, path: Path | None) -> str:
    """This store's origin; a copied database file (the module's rule: a sidecar with
    another token, or none while the file is not where its token was confirmed) mints
    a new origin first and marks every run dirty. Call outside a transaction."""
    keys = ("origin", "origin_token", "origin_path")
    marks = ", ".join("?" * len(keys))
    rows = dict(conn.execute(f"SELECT key, value FROM meta WHERE key IN ({marks})", keys))
    current = rows.get("origin")
    if current and path is None:
        return current
    token, recorded = rows.get("origin_token"), rows.get("origin_path")
    here = os.path.abspath(path) if path is not None else ""
    side = _read_sidecar(path) if path is not None else None
    if current and (not token or side == token or (side is None and recorded == here)):
        if not token:  # an upgrade: a token from now on (once, if two race)
            with _write(conn):
                if conn.execute("SELECT 1 FROM meta WHERE key = 'origin_token'").fetchone() is None:
                    _set_token(conn, path)
        elif side is None and path is not None:  # a deleted sidecar
            _write_sidecar(path, token)
        elif recorded != here:  # moved (or remounted elsewhere) with its sidecar
            with _write(conn):
                conn.execute(
                    "INSERT OR REPLACE INTO meta(key, value) VALUES ('origin_path', ?)", (here,)
                )
        return current
    new = uuid.uuid4().hex
    with _write(conn):
        conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('origin', ?)", (new,))
        conn.execute("DELETE FROM meta WHERE key = 'origin_file'")
        _set_token(conn, path)
        conn.execute(
            f"INSERT OR REPLACE INTO dirty(run_id, part, gen) SELECT id, '{ALL}', {_GEN} FROM runs"
        )
    return new


class _write:
    """BEGIN IMMEDIATE … COMMIT on an autocommit connection (or a savepoint inside one)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.nested = conn.in_transaction

    def __enter__(self) -> None:
        self.conn.execute("SAVEPOINT outbox" if self.nested else "BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        if self.nested:
            if exc_type is not None:
                self.conn.execute("ROLLBACK TO SAVEPOINT outbox")
            self.conn.execute("RELEASE SAVEPOINT outbox")
        elif exc_type is not None:
            self.conn.execute("ROLLBACK")
        else:
            self.conn.execute("COMMIT")


def mark(conn: sqlite3.Connection, run_ids: list[str], part: str) -> None:
    """Mark parts dirty (``Store.save_run`` marks ``params``; ``--all`` marks ``all``)."""
    conn.executemany(
        f"INSERT INTO dirty(run_id, part, gen) VALUES (?, ?, {_GEN})"
        " ON CONFLICT(run_id, part) DO UPDATE SET gen = excluded.gen",
        [(r, part) for r in run_ids],
    )


def mark_all(conn: sqlite3.Connection) -> int:
    """Every run dirty, wholly (``labbook remote push --all``: rebuild a lost server)."""
    with _write(conn):
        cur = conn.execute(
            f"INSERT INTO dirty(run_id, part, gen) SELECT id, '{ALL}', {_GEN} FROM runs WHERE true"
            " ON CONFLICT(run_id, part) DO UPDATE SET gen = excluded.gen"
        )
    return cur.rowcount


def claim(conn: sqlite3.Connection) -> int:
    """Claim the current generation: marks made from now on carry a newer one."""
    with _write(conn):
        gen = int(conn.execute("SELECT value FROM meta WHERE key = 'gen'").fetchone()[0])
        conn.execute("UPDATE meta SET value = ? WHERE key = 'gen'", (str(gen + 1),))
    return gen


def clear(conn: sqlite3.Connection, marks: list[tuple[str, str]], claimed: int) -> int:
    """Remove the pushed marks ``(run_id, part)`` whose generation is ``<= claimed``."""
    with _write(conn):
        before = conn.total_changes
        conn.executemany(
            "DELETE FROM dirty WHERE run_id = ? AND part = ? AND gen <= ?",
            [(r, p, claimed) for r, p in marks],
        )
        return conn.total_changes - before


def pending(conn: sqlite3.Connection) -> int:
    """Runs with something not yet pushed."""
    try:
        return int(conn.execute("SELECT count(DISTINCT run_id) FROM dirty").fetchone()[0])
    except sqlite3.OperationalError:  # a store from before step 0014 (read-only open)
        return 0
