"""A real PostgreSQL for the remote tests: a throwaway cluster made by ``initdb``.

tests/conftest.py imports both fixtures, so every test module can ask for them:

* ``pg_server`` (session scope): the cluster, started once. ``.url(db)``, ``.host``,
  ``.port``, ``.socket_dir``, ``.stop(mode="fast"|"immediate")``, ``.start()``,
  ``.admin()`` (an autocommit psycopg connection to ``postgres``), ``.create_db(...)``.
* ``pg_url`` (function scope): a fresh empty database per test, its URL
  ``postgresql://postgres@127.0.0.1:PORT/t_<hex>``.

Also here (for the convergence checks of the fault tests, helper "faults"):
``server_snapshot(conn)`` and ``local_snapshot(store)`` return comparable sets of
records (see their docstrings); ``union`` of the nodes' local snapshots must equal
the server's.

The cluster listens on 127.0.0.1 (a free port) and on a unix socket in its temp dir,
with trust authentication. As root, initdb and postgres refuse to run: they run as
the ``postgres`` system user (Debian's package makes it) with the dir chown'ed to it.
Skips with a clear reason only if the binaries or psycopg are missing.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

NOT_INSTALLED = "PostgreSQL is not installed: apt-get install postgresql"


def pg_bindir() -> Path | None:
    """The newest ``/usr/lib/postgresql/*/bin`` with initdb (or ``LABBOOK_PG_BIN``)."""
    env = os.environ.get("LABBOOK_PG_BIN")
    if env and (Path(env) / "initdb").exists():
        return Path(env)
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0,
    )
    if found:
        return Path(found[-1]).parent
    which = shutil.which("initdb")
    return Path(which).parent if which else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgServer:
    """One throwaway cluster."""

    def __init__(self, bindir: Path, base: Path) -> None:
        self.bindir = bindir
        self.base = base
        self.datadir = base / "data"
        self.socket_dir = base / "sock"
        self.logfile = base / "server.log"
        self.host = "127.0.0.1"
        self.port = _free_port()
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            runuser = shutil.which("runuser") or shutil.which("setpriv")
            if runuser is None:
                pytest.skip("running as root without runuser/setpriv to start PostgreSQL")
            if runuser.endswith("runuser"):
                self._as_user = [runuser, "-u", "postgres", "--"]
            else:
                import pwd

                pw = pwd.getpwnam("postgres")
                self._as_user = [
                    runuser,
                    f"--reuid={pw.pw_uid}",
                    f"--regid={pw.pw_gid}",
                    "--init-groups",
                    "--",
                ]

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, LC_ALL="C.UTF-8", LANG="C.UTF-8")
        return subprocess.run(
            [*self._as_user, *args],
            check=check,
            capture_output=True,
            text=True,
            env=env,
            cwd=str(self.base),
            timeout=120,
        )

    def init(self) -> None:
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        if self._as_user:
            shutil.chown(self.base, "postgres", "postgres")
            shutil.chown(self.socket_dir, "postgres", "postgres")
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.datadir),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
        )
        with open(self.datadir / "postgresql.conf", "a") as f:
            f.write(
                f"\nlisten_addresses = '{self.host}'\nport = {self.port}\n"
                f"unix_socket_directories = '{self.socket_dir}'\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                "max_connections = 200\nshared_buffers = 128MB\n"
            )

    def start(self) -> None:
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.datadir),
            "-l",
            str(self.logfile),
            "-w",
            "-t",
            "60",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.datadir),
            "-m",
            mode,
            "-w",
            "stop",
            check=False,
        )

    def url(self, db: str = "postgres") -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/{db}"

    def admin(self) -> Any:
        import psycopg

        return psycopg.connect(self.url("postgres"), autocommit=True)

    def create_db(self, name: str | None = None, *, extra: str = "") -> str:
        """A new empty database (``extra``: e.g. ``LC_CTYPE 'C' LC_COLLATE 'C' TEMPLATE
        template0``); returns its URL."""
        name = name or f"t_{uuid.uuid4().hex[:12]}"
        with self.admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}" {extra}')
        return self.url(name)

    def drop_db(self, name: str) -> None:
        with self.admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed: pip install 'labbook[remote]'")
    bindir = pg_bindir()
    if bindir is None:
        pytest.skip(NOT_INSTALLED)
    base = Path(tempfile.mkdtemp(prefix="labbook-pg-"))
    os.chmod(base, 0o755)
    server = PgServer(bindir, base)
    try:
        server.init()
        server.start()
    except subprocess.CalledProcessError as exc:
        log = server.logfile.read_text() if server.logfile.exists() else ""
        shutil.rmtree(base, ignore_errors=True)
        raise RuntimeError(f"cannot start PostgreSQL: {exc.stderr}\n{log}") from exc
    try:
        yield server
    finally:
        server.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    url = pg_server.create_db(name)
    yield url
    # the server may have been stopped by the test; the cluster goes at the end anyway
    with contextlib.suppress(Exception):
        pg_server.drop_db(name)


# --- convergence snapshots -------------------------------------------------------------
#
# A record is a hashable tuple (table, key..., value...). Local records are keyed by
# (origin, local id) and the server's by (origin, local_id), so the union of the nodes'
# local snapshots equals the server snapshot exactly when nothing was lost or duplicated.
# Timestamps of pushes (pushed_at) and server-only bookkeeping (version, superseded_by)
# are left out; notes are compared by (origin, local note id, run, text, deleted).
# A removed run (``labbook rm``: a tombstone) is a record on both sides, flagged
# removed, with all its rows; a purged one (``rm --purge``) is none: the server keeps a
# tombstone row (``source_key`` ``purged:…``, emptied) that is left out here, though
# other origins' notes and tags on it are not.

_RUN_COLS = ("name", "path", "host", "status", "failure_kind", "started_at", "ended_at")


def _curve(points: bytes | memoryview | None) -> str:
    if points is None:
        return ""
    return zlib.crc32(bytes(points)).to_bytes(4, "big").hex()


#: A server row that is the tombstone of a run purged in its store.
PURGED = "coalesce(source_key LIKE 'purged:%', false)"


def local_snapshot(store: Any) -> set[tuple[Any, ...]]:
    """The records of one local store (``labbook.store.sqlite.Store`` or a path to one)."""
    import sqlite3

    path = getattr(store, "path", store)
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        origin = conn.execute("SELECT value FROM meta WHERE key = 'origin'").fetchone()[0]
        out: set[tuple[Any, ...]] = set()
        cols = ", ".join(f'"{c}"' for c in _RUN_COLS)
        for row in conn.execute(f"SELECT id, {cols}, deleted_at IS NOT NULL FROM runs"):
            out.add(("run", origin, row[0], *row[1:-1], bool(row[-1])))
        live = "(SELECT id FROM runs)"
        for row in conn.execute(f"SELECT run_id, key, value FROM params WHERE run_id IN {live}"):
            out.add(("param", origin, *row))
        for row in conn.execute(
            f"SELECT run_id, tag, last, step, count FROM metrics WHERE run_id IN {live}"
        ):
            out.add(("metric", origin, *row))
        for rid, tag, points in conn.execute(
            f"SELECT run_id, tag, points FROM series WHERE run_id IN {live}"
        ):
            out.add(("series", origin, rid, tag, _curve(points)))
        for row in conn.execute(f"SELECT run_id, tag FROM tags WHERE run_id IN {live}"):
            out.add(("tag", origin, *row))
        for row in conn.execute(
            f"SELECT id, run_id, text, deleted_at IS NOT NULL FROM notes WHERE run_id IN {live}"
        ):
            out.add(("note", origin, row[0], row[1], row[2], bool(row[3])))
        return out
    finally:
        conn.close()


def server_snapshot(conn: Any) -> set[tuple[Any, ...]]:
    """The server's records (a psycopg connection to the lab's database), in the same
    shape as :func:`local_snapshot`: run ids are the origin's local ids."""
    out: set[tuple[Any, ...]] = set()
    cols = ", ".join(f'r."{c}"' for c in _RUN_COLS)
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT r.origin, r.local_id, {cols}, r.deleted_at IS NOT NULL FROM labbook.runs r"
            f" WHERE NOT {PURGED}"
        )
        for row in cur.fetchall():
            out.add(("run", *row[:-1], bool(row[-1])))
        cur.execute(
            "SELECT r.origin, r.local_id, p.key, p.value FROM labbook.params p"
            " JOIN labbook.runs r ON r.id = p.run_id"
        )
        out.update(("param", *row) for row in cur.fetchall())
        cur.execute(
            "SELECT r.origin, r.local_id, m.tag, m.last, m.step, m.count FROM labbook.metrics m"
            " JOIN labbook.runs r ON r.id = m.run_id"
        )
        out.update(("metric", *row) for row in cur.fetchall())
        cur.execute(
            "SELECT r.origin, r.local_id, s.tag, s.points FROM labbook.series s"
            " JOIN labbook.runs r ON r.id = s.run_id"
        )
        out.update(("series", o, rid, tag, _curve(p)) for o, rid, tag, p in cur.fetchall())
        cur.execute(
            "SELECT t.origin, r.local_id, t.tag FROM labbook.tags t"
            " JOIN labbook.runs r ON r.id = t.run_id"
        )
        out.update(("tag", *row) for row in cur.fetchall())
        cur.execute(
            "SELECT n.origin, n.id, r.local_id, n.text, n.deleted_at IS NOT NULL"
            " FROM labbook.notes n JOIN labbook.runs r ON r.id = n.run_id"
        )
        out.update(("note", o, nid, rid, text, bool(d)) for o, nid, rid, text, d in cur.fetchall())
    conn.rollback()
    return out


def union(*snapshots: set[tuple[Any, ...]]) -> set[tuple[Any, ...]]:
    out: set[tuple[Any, ...]] = set()
    for s in snapshots:
        out |= s
    return out


def server_counts(conn: Any) -> dict[str, int]:
    """Row counts of the server's tables (duplicates show here where sets hide them);
    ``runs`` leaves the tombstones of purged runs out (``purged`` counts them)."""
    counts = {}
    with conn.cursor() as cur:
        for table in ("runs", "params", "metrics", "series", "tags", "notes", "blobs"):
            where = f" WHERE NOT {PURGED}" if table == "runs" else ""
            cur.execute(f"SELECT count(*) FROM labbook.{table}{where}")
            counts[table] = int(cur.fetchone()[0])
        cur.execute(f"SELECT count(*) FROM labbook.runs WHERE {PURGED}")
        counts["purged"] = int(cur.fetchone()[0])
    conn.rollback()
    return counts


__all__ = [
    "PgServer",
    "local_snapshot",
    "pg_server",
    "pg_url",
    "server_counts",
    "server_snapshot",
    "union",
]
