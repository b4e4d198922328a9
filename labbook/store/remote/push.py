"""One push round: this store's dirty runs into the lab's notebook.

1. **Claim** a generation (:func:`labbook.store.outbox.claim`): marks made from now
   on carry a newer one and survive this round.
2. **Snapshot** up to ``limit`` dirty runs in one local read transaction: for each,
   its row and the parts marked dirty (params, metrics, series, tags, notes; ``all``:
   every part), its search documents (the local index's own rows, so no document
   logic is written twice) and the blobs the server lacks. The snapshot is a plain
   :class:`Batch` (lists of tuples), which the spool can write to a file as it is.
3. **Apply** it in one remote transaction (:func:`apply_batch`): an advisory lock per
   origin; blobs by content hash (``ON CONFLICT DO NOTHING``: two nodes uploading one
   blob both succeed); the run rows upserted only where the server's version is not
   newer; this origin's child rows replaced per dirty part; the same run dir or
   Slurm job recorded by another origin marked superseded; the origin's row in
   ``origins``. **Commit.**
4. **Clear** the pushed marks whose generation is ``<= claimed``.

A crash anywhere leaves the runs dirty and the next round pushes them again to the
same result (notes are keyed ``(origin, id)``, child rows are replaced, not added).
Curves (``series``) of running runs go at most every ``curves_interval_s`` (the
caller says when: ``curves=True``); a run that ended, ``--all`` and
``labbook remote push`` always send them.

Test fault points: ``LABBOOK_PUSH_FAULT=before-commit|after-commit|after-clear``
SIGKILLs the pushing process there; ``sleep-before-commit:S`` sleeps S seconds
before the remote commit.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from labbook.store import outbox
from labbook.store.codec import now_iso
from labbook.store.remote.config import RemoteConfig
from labbook.store.remote.conn import SCHEMA, RemoteUnavailable, connect
from labbook.store.remote.schema import (
    SERVER_RUN_COLUMNS,
    RemoteSchemaError,
    ensure_run_columns,
    q,
    schema_exists,
    supersede_groups,
)
from labbook.store.remote.schema import group_expr as _group_expr
from labbook.store.remote.watchdog import Watchdog

if TYPE_CHECKING:
    from labbook.store import Store

#: Blob columns of ``runs`` (content hashes into ``blobs``).
BLOB_COLUMNS = ("git_diff", "git_extra", "env", "log_tail", "data")
#: Local-only columns never pushed.
LOCAL_ONLY = ("id",)

Batch = dict[str, Any]
Progress = Callable[[int, int], None]


@dataclass
class PushResult:
    pushed: int = 0  # runs upserted
    blobs: int = 0  # blobs sent
    cleared: int = 0  # dirty marks cleared
    pending: int = 0  # runs still dirty after the round
    seconds: float = 0.0
    deleted: int = 0  # runs removed on the server (removed locally)
    superseded: int = 0  # rows newly marked superseded
    batches: int = 0
    spooled: int = 0  # runs ingested from spool files
    curves_deferred: int = 0  # runs whose curves wait for the next curves round
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "pushed": self.pushed,
            "deleted": self.deleted,
            "blobs": self.blobs,
            "cleared": self.cleared,
            "pending": self.pending,
            "superseded": self.superseded,
            "spooled": self.spooled,
            "curves_deferred": self.curves_deferred,
            "seconds": round(self.seconds, 3),
        }


# --- test fault points -------------------------------------------------------------


def fault(point: str) -> None:
    """``LABBOOK_PUSH_FAULT``: die (SIGKILL) or sleep at a named point of a push."""
    want = os.environ.get("LABBOOK_PUSH_FAULT")
    if not want:
        return
    if want == point:
        os.kill(os.getpid(), signal.SIGKILL)
    if want.startswith("sleep-" + point + ":"):
        with contextlib.suppress(ValueError):
            time.sleep(float(want.rsplit(":", 1)[1]))


# --- snapshot (local) ----------------------------------------------------------------


@contextlib.contextmanager
def _read(conn: sqlite3.Connection) -> Iterator[None]:
    """One read transaction (a consistent WAL snapshot) on an autocommit connection."""
    if conn.in_transaction:
        yield
        return
    conn.execute("BEGIN")
    try:
        yield
    finally:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("COMMIT")


def _in(ids: list[str]) -> str:
    return ",".join("?" for _ in ids)


def _chunks(items: list[Any], n: int = 500) -> Iterator[list[Any]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def select_dirty(
    conn: sqlite3.Connection, claimed: int, limit: int, *, curves: bool
) -> tuple[list[str], int]:
    """Up to ``limit`` run ids with marks ``<= claimed`` (oldest marks first) and how
    many runs only wait for their curves (running, curves not due)."""
    if curves:
        rows = conn.execute(
            "SELECT run_id FROM dirty WHERE gen <= ? GROUP BY run_id ORDER BY min(gen), run_id"
            " LIMIT ?",
            (claimed, limit),
        ).fetchall()
        return [r[0] for r in rows], 0
    running = "(SELECT id FROM runs WHERE status = 'running')"
    rows = conn.execute(
        "SELECT run_id FROM dirty WHERE gen <= ?"
        f" AND (part != 'series' OR run_id NOT IN {running})"
        " GROUP BY run_id ORDER BY min(gen), run_id LIMIT ?",
        (claimed, limit),
    ).fetchall()
    deferred = conn.execute(
        f"SELECT count(DISTINCT run_id) FROM dirty WHERE part = 'series' AND run_id IN {running}"
    ).fetchone()[0]
    return [r[0] for r in rows], int(deferred)


def _columns(conn: sqlite3.Connection, table: str) -> list[tuple[str, str]]:
    return [(r[1], r[2]) for r in conn.execute(f"PRAGMA table_info({table})")]


def snapshot(
    store: Store,
    *,
    origin: str,
    claimed: int,
    run_ids: list[str],
    curves: bool = True,
    have_blobs: Callable[[list[str]], set[str]] | None = None,
) -> Batch:
    """The batch of ``run_ids`` as of one local read transaction.

    ``have_blobs(hashes)`` says which blobs the server already holds (they are left
    out); without it, every blob the runs reference is included (a spool file)."""
    conn = store.conn
    batch: Batch = {
        "format": 1,
        "origin": origin,
        "gen": claimed,
        "host": socket.gethostname(),
        "user": _user(),
        "labbook_version": _version(),
        "at": now_iso(),
    }
    with _read(conn):
        marks: list[tuple[str, str]] = []
        parts: dict[str, set[str]] = {}
        for chunk in _chunks(run_ids):
            for rid, part in conn.execute(
                f"SELECT run_id, part FROM dirty WHERE gen <= ? AND run_id IN ({_in(chunk)})",
                (claimed, *chunk),
            ):
                parts.setdefault(rid, set()).add(part)
        running: set[str] = set()
        cols = [c for c, _ in _columns(conn, "runs")]
        batch["column_types"] = dict(_columns(conn, "runs"))
        batch["columns"] = cols
        rows: dict[str, tuple[Any, ...]] = {}
        for chunk in _chunks(run_ids):
            for row in conn.execute(
                f"SELECT * FROM runs WHERE id IN ({_in(chunk)})", chunk
            ).fetchall():
                rows[row[0]] = tuple(row)
        status_at = cols.index("status")
        live: list[str] = []
        deleted: list[str] = []
        for rid in run_ids:
            row = rows.get(rid)
            if row is None:  # purged here (rm --purge): gone from this store
                deleted.append(rid)
            else:  # a tombstone (rm) goes as it is, deleted_at and all: undo can follow
                live.append(rid)
                if row[status_at] == "running":
                    running.add(rid)
        want: dict[str, set[str]] = {}
        for rid in live:
            p = parts.get(rid, set())
            w = set(outbox.PARTS) if outbox.ALL in p else set(p) - {outbox.ALL}
            if not curves and rid in running and outbox.ALL not in p:
                w.discard("series")
            want[rid] = w
        for rid in run_ids:
            p = parts.get(rid, set())
            for part in p:
                if part == "series" and rid in want and "series" not in want[rid]:
                    continue  # waits for a curves round
                marks.append((rid, part))
        batch["runs"] = [rows[rid] for rid in live]
        batch["deleted"] = deleted
        batch["parts"] = {rid: sorted(w) for rid, w in want.items()}

        def of(part: str) -> list[str]:
            return [rid for rid in live if part in want[rid]]

        def fetch(sql: str, ids: list[str]) -> list[tuple[Any, ...]]:
            out: list[tuple[Any, ...]] = []
            for chunk in _chunks(ids):
                out += [tuple(r) for r in conn.execute(sql.format(marks=_in(chunk)), chunk)]
            return out

        batch["params"] = fetch(
            "SELECT run_id, key, value, num FROM params WHERE run_id IN ({marks})", of("params")
        )
        mcols = [c for c, _ in _columns(conn, "metrics")]
        batch["metric_columns"] = mcols
        batch["metrics"] = fetch("SELECT * FROM metrics WHERE run_id IN ({marks})", of("metrics"))
        batch["series"] = fetch(
            "SELECT run_id, tag, points FROM series WHERE run_id IN ({marks})", of("series")
        )
        batch["tags"] = fetch("SELECT run_id, tag FROM tags WHERE run_id IN ({marks})", of("tags"))
        batch["notes"] = fetch(
            "SELECT id, run_id, at, author, kind, text, deleted_at FROM notes"
            " WHERE run_id IN ({marks})",
            of("notes"),
        )
        batch["docs"] = fetch(
            "SELECT run_id, field, ref, text FROM search_docs WHERE run_id IN ({marks})", live
        )
        hashes: set[str] = set()
        blob_at = [cols.index(c) for c in BLOB_COLUMNS if c in cols]
        for rid in live:
            for i in blob_at:
                h = rows[rid][i]
                if isinstance(h, str) and h:
                    hashes.add(h)
        needed = sorted(hashes)
        if have_blobs is not None and needed:
            held = have_blobs(needed)
            needed = [h for h in needed if h not in held]
        batch["blobs"] = fetch("SELECT hash, size, data FROM blobs WHERE hash IN ({marks})", needed)
        batch["marks"] = marks
    return batch


def _user() -> str:
    from labbook.capture.owner import current_user

    return current_user()


def _version() -> str:
    from labbook import __version__

    return __version__


# --- apply (remote) -----------------------------------------------------------------


def _text(v: Any) -> Any:
    """A value PostgreSQL's text accepts: no NUL characters; bytes as text."""
    if isinstance(v, (bytes, bytearray, memoryview)):
        v = bytes(v).decode("utf-8", "backslashreplace")
    if isinstance(v, str) and "\x00" in v:
        return v.replace("\x00", "\ufffd")
    return v


def _int(v: Any) -> Any:
    if v is None or isinstance(v, bool):
        return None if v is None else int(v)
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        return int(v) if v.is_integer() else None
    try:
        return int(str(v))
    except ValueError:
        return None


def _real(v: Any) -> Any:
    if v is None or isinstance(v, float):
        return v
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _convert(kind: str) -> Callable[[Any], Any]:
    k = (kind or "").upper()
    if "INT" in k:
        return _int
    if "REAL" in k or "FLOA" in k or "DOUB" in k:
        return _real
    if "BLOB" in k:
        return lambda v: bytes(v) if v is not None else None
    return _text


def _bytes(v: Any) -> bytes:
    return bytes(v) if not isinstance(v, bytes) else v


def lock_origin(conn: Any, origin: str) -> None:
    conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", ("labbook push " + origin,))


def server_ids(conn: Any, origin: str, local_ids: list[str]) -> dict[str, str]:
    """The server id of each local id: the one already there for this origin, else the
    local id, else (held by another origin: a legacy 8-hex id) ``local_id`` + the first
    4 hex of the origin."""
    if not local_ids:
        return {}
    rows = conn.execute(
        f"SELECT id, origin, local_id FROM {SCHEMA}.runs"
        " WHERE (origin = %s AND local_id = ANY(%s)) OR id = ANY(%s)",
        (origin, local_ids, local_ids),
    ).fetchall()
    mine = {lid: sid for sid, o, lid in rows if o == origin}
    taken = {sid for sid, o, _ in rows if o != origin}
    out = {}
    for lid in local_ids:
        if lid in mine:
            out[lid] = mine[lid]
        elif lid in taken:
            out[lid] = lid + origin[:4]
        else:
            out[lid] = lid
    return out


def _copy(conn: Any, table: str, cols: list[str], rows: list[tuple[Any, ...]]) -> None:
    if not rows:
        return
    names = ", ".join(q(c) for c in cols)
    with conn.cursor() as cur, cur.copy(f"COPY {table} ({names}) FROM STDIN") as cp:
        for row in rows:
            cp.write_row(row)


def apply_batch(conn: Any, batch: Batch, *, server_cols: set[str] | None = None) -> int:
    """Write one batch in the caller's remote transaction (no commit); return the runs
    written. Idempotent: a batch applied twice, or after a newer one of its origin,
    changes nothing (the version guard) or rewrites the same rows."""
    origin: str = batch["origin"]
    gen: int = int(batch["gen"])
    cols: list[str] = list(batch["columns"])
    types: dict[str, str] = dict(batch.get("column_types") or {})
    lock_origin(conn, origin)
    if server_cols is None:
        server_cols = ensure_run_columns(conn, {c: types.get(c, "TEXT") for c in cols})
        lock_origin(conn, origin)  # ensure_run_columns ended the transaction
    push_cols = [c for c in cols if c in server_cols and c not in LOCAL_ONLY + SERVER_RUN_COLUMNS]
    idx = {c: i for i, c in enumerate(cols)}
    conv = {c: _convert(types.get(c, "TEXT")) for c in push_cols}
    runs: list[tuple[Any, ...]] = [tuple(r) for r in batch["runs"]]
    live = [str(r[0]) for r in runs]
    deleted = [str(r) for r in batch["deleted"]]
    now = now_iso()

    # blobs first (runs reference them by hash)
    blobs = [(h, _int(size), _bytes(data)) for h, size, data in batch["blobs"]]
    if blobs:
        with conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO {SCHEMA}.blobs (hash, size, data) VALUES (%s, %s, %s)"
                " ON CONFLICT (hash) DO NOTHING",
                blobs,
            )

    if deleted:
        purge_rows(conn, origin, deleted, gen, now)

    ids = server_ids(conn, origin, live)
    if runs:
        conn.execute(
            f"CREATE TEMP TABLE push_runs (LIKE {SCHEMA}.runs INCLUDING DEFAULTS) ON COMMIT DROP"
        )
        all_cols = ["id", "origin", "local_id", "version", "pushed_at", *push_cols]
        rows = [
            (ids[str(r[0])], origin, str(r[0]), gen, now, *(conv[c](r[idx[c]]) for c in push_cols))
            for r in runs
        ]
        _copy(conn, "push_runs", all_cols, rows)
        names = ", ".join(q(c) for c in all_cols)
        sets = ", ".join(f"{q(c)} = excluded.{q(c)}" for c in all_cols if c != "id")
        conn.execute(
            f"INSERT INTO {SCHEMA}.runs ({names}) SELECT {names} FROM push_runs"
            f" ON CONFLICT (id) DO UPDATE SET {sets}"
            f" WHERE {SCHEMA}.runs.origin = excluded.origin"
            f" AND {SCHEMA}.runs.version <= excluded.version"
        )
        # rows the guard kept (a newer version is there): their children stay as well
        stale = {
            r[0]
            for r in conn.execute(
                f"SELECT local_id FROM {SCHEMA}.runs WHERE origin = %s AND local_id = ANY(%s)"
                " AND version > %s",
                (origin, live, gen),
            ).fetchall()
        }
    else:
        stale = set()

    parts: dict[str, list[str]] = batch["parts"]

    def sids(part: str) -> list[str]:
        return [ids[r] for r in live if r not in stale and part in parts.get(r, ())]

    def rows_of(key: str, part: str) -> list[tuple[Any, ...]]:
        keep = {r for r in live if r not in stale and part in parts.get(r, ())}
        return [tuple(x) for x in batch[key] if x[0] in keep]

    p_ids = sids("params")
    if p_ids:
        conn.execute(f"DELETE FROM {SCHEMA}.params WHERE run_id = ANY(%s)", (p_ids,))
        _copy(
            conn,
            f"{SCHEMA}.params",
            ["run_id", "key", "value", "num"],
            [(ids[r], _text(k), _text(v), _real(n)) for r, k, v, n in rows_of("params", "params")],
        )
    m_ids = sids("metrics")
    if m_ids:
        mcols: list[str] = list(batch["metric_columns"])
        known = {
            "run_id",
            "tag",
            "last",
            "last_kind",
            "min",
            "max",
            "step",
            "count",
            "nonfinite_step",
            "first_step",
            "last_wall_time",
            "source",
        }
        use = [c for c in mcols if c in known]
        at = [mcols.index(c) for c in use]
        mconv = {
            "last": _real,
            "min": _real,
            "max": _real,
            "last_wall_time": _real,
            "step": _int,
            "count": _int,
            "nonfinite_step": _int,
            "first_step": _int,
        }
        conn.execute(f"DELETE FROM {SCHEMA}.metrics WHERE run_id = ANY(%s)", (m_ids,))
        out = []
        for x in rows_of("metrics", "metrics"):
            vals = [x[i] for i in at]
            vals[0] = ids[x[0]]
            out.append(
                tuple(
                    mconv.get(c, _text)(v) if c != "run_id" else v
                    for c, v in zip(use, vals, strict=True)
                )
            )
        _copy(conn, f"{SCHEMA}.metrics", use, out)
    s_ids = sids("series")
    if s_ids:
        conn.execute(f"DELETE FROM {SCHEMA}.series WHERE run_id = ANY(%s)", (s_ids,))
        _copy(
            conn,
            f"{SCHEMA}.series",
            ["run_id", "tag", "points"],
            [(ids[r], _text(t), _bytes(p)) for r, t, p in rows_of("series", "series")],
        )
    t_ids = sids("tags")
    if t_ids:
        conn.execute(
            f"DELETE FROM {SCHEMA}.tags WHERE origin = %s AND run_id = ANY(%s)", (origin, t_ids)
        )
        _copy(
            conn,
            f"{SCHEMA}.tags",
            ["run_id", "tag", "origin"],
            sorted({(ids[r], _text(t), origin) for r, t in rows_of("tags", "tags")}),
        )
    n_ids = sids("notes")
    if n_ids:
        keep = {r for r in live if r not in stale and "notes" in parts.get(r, ())}
        notes = [n for n in batch["notes"] if n[1] in keep]
        conn.execute(
            f"DELETE FROM {SCHEMA}.notes WHERE origin = %s AND (run_id = ANY(%s) OR id = ANY(%s))",
            (origin, n_ids, [_int(n[0]) for n in notes]),
        )
        _copy(
            conn,
            f"{SCHEMA}.notes",
            ["origin", "id", "run_id", "at", "author", "kind", "text", "deleted_at"],
            [
                (origin, _int(i), ids[r], _text(at), _text(a), _text(k), _text(t), _text(d))
                for i, r, at, a, k, t, d in notes
            ],
        )
    d_ids = [ids[r] for r in live if r not in stale]
    if d_ids:
        conn.execute(
            f"DELETE FROM {SCHEMA}.search_docs WHERE origin = %s AND run_id = ANY(%s)",
            (origin, d_ids),
        )
        keep = set(live) - stale
        _copy(
            conn,
            f"{SCHEMA}.search_docs",
            ["run_id", "field", "ref", "text", "origin"],
            [
                (ids[r], _text(f), _text(ref), _text(t), origin)
                for r, f, ref, t in batch["docs"]
                if r in keep
            ],
        )
    superseded = mark_superseded(conn, [ids[r] for r in live]) if live else 0
    batch["_superseded"] = superseded
    conn.execute(
        f'INSERT INTO {SCHEMA}.origins AS o (origin, host, "user", first_push, last_push,'
        " last_gen, pending, labbook_version)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
        ' ON CONFLICT (origin) DO UPDATE SET host = excluded.host, "user" = excluded."user",'
        " last_push = excluded.last_push,"
        " last_gen = greatest(o.last_gen, excluded.last_gen),"
        " pending = CASE WHEN excluded.last_gen >= coalesce(o.last_gen, 0)"
        " THEN excluded.pending ELSE o.pending END,"
        " labbook_version = excluded.labbook_version",
        (
            origin,
            batch.get("host"),
            batch.get("user"),
            now,
            now,
            gen,
            int(batch.get("pending", 0)),
            batch.get("labbook_version"),
        ),
    )
    conn.execute(
        f"UPDATE {SCHEMA}.origins SET conflicts = (SELECT count(*) FROM {SCHEMA}.runs"
        " WHERE origin = %s AND superseded_by IS NOT NULL) WHERE origin = %s",
        (origin, origin),
    )
    return len(live) - len(stale)


#: Columns a purged run's tombstone keeps (the rest of its row is emptied).
_PURGE_KEEPS = {
    *SERVER_RUN_COLUMNS,
    "id",
    "created_at",
    "updated_at",
    "deleted_at",
    "source_key",
    "status",
    "missing",
}


def purge_rows(conn: Any, origin: str, local_ids: list[str], gen: int, now: str) -> int:
    """Runs of ``origin`` deleted for good in their store (``labbook rm --purge``).

    What this origin wrote goes: the run's params, metrics and curves (only the run's
    own origin writes those), this origin's tags, notes and search documents on it,
    and the content of its row. The row itself stays as a **tombstone**: ``deleted_at``
    set (hidden from every listing, as ``rm`` hides a run), ``source_key``
    ``purged:<local id>``, every other fact emptied. Other origins' notes and tags on
    the run (``note --remote`` from another node) are theirs and stay, attached to
    that tombstone: the rows keep their foreign key (no dangling run ids), the id is
    not taken by another run, and a later push of this origin with the same id (the
    run recorded again) revives the row in place. Guarded by the version like an
    upsert: an older batch (a late spool file) cannot purge a newer row, and cannot
    revive a purged one. Returns how many rows became tombstones."""
    g = _group_expr()
    gone = conn.execute(
        f"SELECT id, {g} FROM {SCHEMA}.runs WHERE origin = %s AND local_id = ANY(%s)"
        " AND version <= %s",
        (origin, local_ids, gen),
    ).fetchall()
    if not gone:
        return 0
    ids = [r[0] for r in gone]
    groups = sorted({r[1] for r in gone if r[1] is not None})
    for table in ("params", "metrics", "series"):
        conn.execute(f"DELETE FROM {SCHEMA}.{table} WHERE run_id = ANY(%s)", (ids,))
    for table in ("tags", "notes", "search_docs"):
        conn.execute(
            f"DELETE FROM {SCHEMA}.{table} WHERE origin = %s AND run_id = ANY(%s)", (origin, ids)
        )
    empty = [
        r[0]
        for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = %s"
            " AND table_name = 'runs' AND is_nullable = 'YES'",
            (SCHEMA,),
        ).fetchall()
        if r[0] not in _PURGE_KEEPS
    ]
    sets = "".join(f", {q(c)} = NULL" for c in sorted(empty))
    conn.execute(
        f"UPDATE {SCHEMA}.runs SET version = %s, pushed_at = %s, updated_at = %s,"
        " deleted_at = coalesce(deleted_at, %s), source_key = 'purged:' || local_id,"
        f" status = 'unknown', missing = 0, superseded_by = NULL{sets} WHERE id = ANY(%s)",
        (gen, now, now, now, ids),
    )
    if groups:  # the rows it superseded (another node's record of the same dir) stand again
        supersede_groups(conn, groups)
    return len(ids)


def mark_superseded(conn: Any, run_ids: list[str]) -> int:
    """For the groups (same Slurm job or run dir) of ``run_ids`` that rows of several
    origins share: the newest row stands, the others get ``superseded_by`` = its id.
    Returns how many rows changed. Serialised per group across pushers (advisory
    locks) so that two origins pushing one group at once cannot both miss the other."""
    g = _group_expr()
    groups = [
        r[0]
        for r in conn.execute(
            f"SELECT DISTINCT {g} FROM {SCHEMA}.runs WHERE id = ANY(%s) AND {g} IS NOT NULL",
            (run_ids,),
        ).fetchall()
    ]
    if not groups:
        return 0
    return supersede_groups(conn, groups)


# --- the round ------------------------------------------------------------------------


def _has_dirty(conn: sqlite3.Connection) -> bool:
    try:
        return conn.execute("SELECT 1 FROM dirty LIMIT 1").fetchone() is not None
    except sqlite3.OperationalError:
        return False


def push_round(
    store: Store,
    cfg: RemoteConfig,
    *,
    limit: int = 300,
    all: bool = False,
    conn: Any = None,
    curves: bool = True,
    progress: Progress | None = None,
    max_batches: int | None = None,
    lazy: bool = False,
) -> PushResult:
    """Push this store's dirty runs, ``limit`` runs per remote transaction, until
    none with a mark as old as this round's claim is left (or ``max_batches``).

    ``all``: mark every run dirty first (rebuild a lost server; curves included).
    ``curves``: send the curves of running runs too (``labbook watch`` passes it every
    ``cfg.curves_interval_s``; runs that ended always send theirs).
    ``conn``: an open connection to use (left open); else one is made and closed.
    Raises :class:`RemoteUnavailable` when the server cannot be reached: nothing
    local changed but the claimed generation.
    """
    t0 = time.monotonic()
    result = PushResult()
    local = store.conn
    origin = outbox.origin(local, store.path)
    if all:
        outbox.mark_all(local)
        curves = True
    beat = _HEARTBEATS.get(str(store.path), -1e9)
    if (
        lazy
        and conn is None
        and time.monotonic() - beat < HEARTBEAT_S
        and not _has_dirty(local)
        and not _spool_waiting(cfg)
    ):
        result.seconds = time.monotonic() - t0
        return result
    own = conn is None
    if conn is None:
        conn = connect(cfg)
    # faults: a server that stops answering fails the round instead of hanging it
    # (labbook.store.remote.watchdog; armed again for every batch below)
    dog = Watchdog(conn, cfg.statement_timeout_s)
    dog.arm()
    try:
        _ingest_spool(conn, cfg, result, store)
        if not schema_exists(conn):
            raise RemoteSchemaError(
                "the lab's notebook has no labbook schema yet",
                hint="run 'labbook remote init URL' once (or 'labbook remote push --all'"
                " after init to rebuild a lost server)",
            )
        if not _has_dirty(local):
            _touch_origin(conn, origin, pending=0)
            _HEARTBEATS[str(store.path)] = time.monotonic()
            result.seconds = time.monotonic() - t0
            return result
        claimed = outbox.claim(local)
        total = _count_dirty(local, claimed)
        server_cols: set[str] | None = None
        while max_batches is None or result.batches < max_batches:
            run_ids, deferred = select_dirty(local, claimed, limit, curves=curves)
            result.curves_deferred = deferred
            if not run_ids:
                break
            dog.arm()

            def have(hashes: list[str]) -> set[str]:
                rows = conn.execute(
                    f"SELECT hash FROM {SCHEMA}.blobs WHERE hash = ANY(%s)", (hashes,)
                ).fetchall()
                return {r[0] for r in rows}

            batch = snapshot(
                store,
                origin=origin,
                claimed=claimed,
                run_ids=run_ids,
                curves=curves,
                have_blobs=have,
            )
            batch["pending"] = max(outbox.pending(local) - len(run_ids), 0)
            if server_cols is None:
                conn.rollback()
                server_cols = ensure_run_columns(conn, dict(batch["column_types"]))
            written = apply_batch(conn, batch, server_cols=server_cols)
            fault("before-commit")
            conn.commit()
            fault("after-commit")
            result.cleared += outbox.clear(local, [tuple(m) for m in batch["marks"]], claimed)
            fault("after-clear")
            result.pushed += written
            result.deleted += len(batch["deleted"])
            result.blobs += len(batch["blobs"])
            result.superseded += int(batch.get("_superseded", 0))
            result.batches += 1
            if progress is not None:
                progress(result.pushed + result.deleted, total)
            if len(run_ids) < limit:
                break
        result.pending = outbox.pending(local)
        _touch_origin(conn, origin, pending=result.pending)
    except BaseException as exc:
        with contextlib.suppress(Exception):
            conn.rollback()
        if dog.fired:
            raise RemoteUnavailable(dog.message()) from None
        lost = _lost_connection(exc)
        if lost is not None:
            raise lost from None
        raise
    finally:
        dog.stop()
        if own:
            with contextlib.suppress(Exception):
                conn.close()
    _HEARTBEATS[str(store.path)] = time.monotonic()
    result.seconds = time.monotonic() - t0
    return result


def _lost_connection(exc: BaseException) -> RemoteUnavailable | None:
    """The server went away mid-round (stopped, a reset, a timeout) as one line."""
    try:
        import psycopg
    except ImportError:  # pragma: no cover - push needs it anyway
        return None
    if isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)):
        text = str(exc).strip().splitlines()
        return RemoteUnavailable(
            "lost the connection to the lab's notebook: "
            + (text[0] if text else type(exc).__name__)
        )
    return None


def _count_dirty(conn: sqlite3.Connection, claimed: int) -> int:
    return int(
        conn.execute(
            "SELECT count(DISTINCT run_id) FROM dirty WHERE gen <= ?", (claimed,)
        ).fetchone()[0]
    )


#: Seconds between the heartbeats of an idle ``labbook watch`` (its ``last_push``).
HEARTBEAT_S = 60.0
_HEARTBEATS: dict[str, float] = {}


def _spool_waiting(cfg: RemoteConfig) -> bool:
    """Whether a spool file may be waiting (a cheap look at the spool directory)."""
    try:
        with os.scandir(cfg.spool_dir) as it:
            return any(e.name.endswith(".lbspool") for e in it)
    except OSError:
        return False


def _touch_origin(conn: Any, origin: str, *, pending: int) -> None:
    """This origin was here now (``remote status``'s lag), with ``pending`` runs left."""
    conn.execute(
        f'INSERT INTO {SCHEMA}.origins (origin, host, "user", first_push, last_push, pending,'
        " labbook_version) VALUES (%s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (origin) DO UPDATE SET last_push = excluded.last_push,"
        " pending = excluded.pending",
        (origin, socket.gethostname(), _user(), now_iso(), now_iso(), pending, _version()),
    )
    conn.commit()


def _ingest_spool(
    conn: Any, cfg: RemoteConfig, result: PushResult, store: Store | None = None
) -> None:
    """Batches spooled by ephemeral nodes (labbook.store.remote.spool, helper "faults").

    A file of this store's own origin (``labbook run`` spools before its detached push)
    clears, once the server committed it, the marks it carried, as a push of that
    batch would: what it held is not sent a second time by this round. Marks made
    after it was written carry a newer generation and stay."""
    try:
        from labbook.store.remote import spool
    except ImportError:
        return
    ingest = getattr(spool, "ingest_all", None)
    if ingest is None:
        return
    committed = None
    if store is not None:
        local = store.conn
        mine = outbox.origin(local, store.path)

        def committed(batch: Any) -> None:
            if isinstance(batch, dict) and batch.get("origin") == mine:
                marks = [tuple(m) for m in batch.get("marks") or ()]
                result.cleared += outbox.clear(local, marks, int(batch["gen"]))

    # faults: apply_batch is passed in so that spool does not import push (no cycle)
    got = ingest(conn, cfg, apply_batch, committed)
    result.spooled += int(getattr(got, "runs", 0) or 0)


__all__ = [
    "Batch",
    "PushResult",
    "RemoteUnavailable",
    "apply_batch",
    "fault",
    "mark_superseded",
    "push_round",
    "select_dirty",
    "server_ids",
    "snapshot",
]
