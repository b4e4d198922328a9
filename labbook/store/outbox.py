"""What this store has not yet pushed to the lab's notebook (issue #13): the outbox.

Schema step ``0014_remote`` adds

``meta(key, value)``
    ``origin``: this store's identity on the server, a uuid4 hex minted when the
    step runs (a new store, or an old one upgraded); ``origin_file``: the
    ``st_dev:st_ino`` of the database file when the origin was minted — a copied
    file (another node's store copied here, a restored backup) no longer matches,
    and :func:`origin` mints a new origin for it so that two stores never push as
    one; ``gen``: the generation counter that the dirty marks carry.

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
"""

from __future__ import annotations

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
        conn.execute(
            "INSERT OR REPLACE INTO meta(key, value) VALUES ('origin_file', ?)",
            (_file_id(path),),
        )
        # what is already here has never been pushed
        conn.execute(
            f"INSERT OR IGNORE INTO dirty(run_id, part, gen) SELECT id, '{ALL}', 1 FROM runs"
        )
    for statement in _triggers().splitlines():  # inside the migration's transaction
        conn.execute(statement)


def _file_id(path: Path | None) -> str:
    if path is None:
        return ""
    try:
        st = os.stat(path)
    except OSError:
        return ""
    return f"{st.st_dev}:{st.st_ino}"


def origin(conn: sqlite3.Connection, path: Path | None) -> str:
    """This store's origin; a copied database file (its (st_dev, st_ino) is not the one
    recorded) mints a new origin first and marks every run dirty (none of them is on
    the server under the new origin). Call outside a transaction."""
    rows = dict(conn.execute("SELECT key, value FROM meta WHERE key IN ('origin', 'origin_file')"))
    here = _file_id(path)
    current = rows.get("origin")
    if current and (not here or rows.get("origin_file") in (here, "", None)):
        if rows.get("origin_file") in ("", None) and here:
            with _write(conn):
                conn.execute(
                    "INSERT OR REPLACE INTO meta(key, value) VALUES ('origin_file', ?)", (here,)
                )
        return current
    new = uuid.uuid4().hex
    with _write(conn):
        conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('origin', ?)", (new,))
        conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('origin_file', ?)", (here,))
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
