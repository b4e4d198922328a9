"""The lab's notebook on PostgreSQL: tables in schema ``labbook``.

The tables mirror the local SQLite store (same names, columns and value encodings:
ISO-8601 text times, JSON text, zlib-compressed blobs under the same content hash),
so that one query layer reads both. What only the server has:

* ``runs.origin`` (the pushing store's origin), ``runs.local_id`` (the id in that
  store), ``runs.version`` (the origin's generation at push: an upsert only wins
  if it is not older), ``runs.superseded_by`` (the newer row of the same run dir
  or Slurm job, recorded by another origin), ``runs.pushed_at``;
* ``tags.origin`` and ``notes.origin``: each origin writes its own rows;
* ``search_docs.origin``: each origin's documents for a run (notes and tags of
  several origins on one run);
* ``origins``: each node's host, user, last push, pending count and conflicts
  (``labbook remote status``);
* ``meta``: the schema version.

Child rows reference their run with ``ON DELETE CASCADE``; a push never deletes a
run row: a run removed locally (``labbook rm``) is pushed as it is, ``deleted_at``
set (hidden from listings, back with ``rm --undo``), and a purged one becomes an
emptied tombstone row (:func:`labbook.store.remote.push.purge_rows`) that keeps
other origins' notes and tags on it.
"""

from __future__ import annotations

from typing import Any

from labbook.errors import StoreError
from labbook.store.outbox import SLURM_COLUMNS
from labbook.store.remote.conn import SCHEMA

#: Bump with every change below (stored in labbook.meta).
SERVER_SCHEMA_VERSION = 1

#: The local columns of ``runs`` with their PostgreSQL types (INTEGER → bigint,
#: REAL → double precision, TEXT → text). Columns added locally later are added on
#: the server by :func:`ensure_run_columns` as a push meets them.
RUN_COLUMNS: tuple[tuple[str, str], ...] = (
    ("source_key", "text"),
    ("name", "text"),
    ("path", "text"),
    ("host", "text"),
    ("user", "text"),
    ("framework", "text"),
    ("status", "text NOT NULL DEFAULT 'unknown'"),
    ("failure_kind", "text"),
    ("failure_message", "text"),
    ("failure_step", "bigint"),
    ("started_at", "text"),
    ("ended_at", "text"),
    ("created_at", "text NOT NULL"),
    ("updated_at", "text NOT NULL"),
    ("command", "text"),
    ("pid", "bigint"),
    ("cwd", "text"),
    ("seed_value", "text"),
    ("seed_source", "text"),
    ("git_root", "text"),
    ("git_commit", "text"),
    ("git_branch", "text"),
    ("git_remote", "text"),
    ("git_dirty", "bigint"),
    ("git_diff", "text"),
    ("git_untracked", "text"),
    ("git_extra", "text"),
    ("env", "text"),
    ("env_source", "text"),
    ("gpu", "text"),
    ("log_tail", "text"),
    ("missing", "bigint NOT NULL DEFAULT 0"),
    ("deleted_at", "text"),
    ("data", "text"),
    ("config_sig", "text"),
    ("status_reason", "text"),
    ("archived_at", "text"),
    *((name, "bigint" if kind == "INTEGER" else "text") for name, kind in SLURM_COLUMNS),
)

#: Columns of ``runs`` that only the server has (never pushed as local facts).
SERVER_RUN_COLUMNS = ("origin", "local_id", "version", "superseded_by", "pushed_at")


#: A run's identity beyond one store: rows of several origins with one key are one
#: run recorded twice (the newest stands: superseded_by). A Slurm row: the same
#: launch, i.e. the same job (array task) on the same cluster AND the same source key
#: (``labbook run`` in a job keys on the job and a digest of its directory and
#: command, so a requeue is one run and two commands of one job are two); a row
#: recorded from a directory (its source key is its path): the same directory seen
#: twice, i.e. the same path AND the same start time (both nodes watching one NFS
#: dir read the same files, so their start agrees; two unrelated ``/workspace/runs/x``
#: on two nodes' own disks do not).
_GROUP = (
    "(CASE WHEN {t}slurm_job IS NOT NULL THEN 'slurm:' || coalesce({t}slurm_cluster, '') || ':'"
    " || coalesce({t}slurm_array_job, {t}slurm_job) || ':' || coalesce({t}slurm_array_task, '')"
    " || ' @' || coalesce({t}source_key, '')"
    " WHEN {t}path IS NOT NULL AND {t}source_key = {t}path THEN 'dir:' || {t}path"
    " || ' @' || coalesce({t}started_at, '') END)"
)

#: The index of :data:`_GROUP` as it was before the key held the source key and the
#: start (dropped by :func:`create_schema`, which then recomputes ``superseded_by``).
_OLD_GROUP_INDEX = "runs_group_key"


def group_expr(t: str = "") -> str:
    """The SQL of a run's group key (indexed on the server as ``runs_launch_key``)."""
    return _GROUP.format(t=t)


def q(name: str) -> str:
    """A quoted identifier (``user`` is a reserved word in PostgreSQL)."""
    return '"' + name.replace('"', '""') + '"'


def pg_type(sqlite_type: str) -> str:
    t = (sqlite_type or "").upper()
    if "INT" in t:
        return "bigint"
    if "REAL" in t or "FLOA" in t or "DOUB" in t:
        return "double precision"
    if "BLOB" in t:
        return "bytea"
    return "text"


def _ddl() -> list[str]:
    cols = ",\n    ".join(f"{q(n)} {t}" for n, t in RUN_COLUMNS)
    s = SCHEMA
    return [
        f"CREATE SCHEMA IF NOT EXISTS {s}",
        f"CREATE TABLE IF NOT EXISTS {s}.meta (key text PRIMARY KEY, value text)",
        f"""CREATE TABLE IF NOT EXISTS {s}.origins (
    origin text PRIMARY KEY,
    host text,
    "user" text,
    first_push text,
    last_push text,
    last_gen bigint,
    pending bigint,
    conflicts bigint NOT NULL DEFAULT 0,
    labbook_version text
)""",
        f"""CREATE TABLE IF NOT EXISTS {s}.blobs (
    hash text PRIMARY KEY,
    size bigint NOT NULL,
    data bytea NOT NULL
)""",
        f"""CREATE TABLE IF NOT EXISTS {s}.runs (
    id text PRIMARY KEY,
    origin text NOT NULL,
    local_id text NOT NULL,
    version bigint NOT NULL DEFAULT 0,
    superseded_by text,
    pushed_at text,
    {cols},
    UNIQUE (origin, local_id)
)""",
        f"CREATE INDEX IF NOT EXISTS runs_order ON {s}.runs"
        " ((coalesce(started_at, created_at)), created_at)",
        f"CREATE INDEX IF NOT EXISTS runs_status_order ON {s}.runs"
        " (status, (coalesce(started_at, created_at)), created_at)",
        f"CREATE INDEX IF NOT EXISTS runs_name ON {s}.runs (name)",
        f"CREATE INDEX IF NOT EXISTS runs_path ON {s}.runs (path)",
        f"CREATE INDEX IF NOT EXISTS runs_git ON {s}.runs (git_root, started_at)",
        f"CREATE INDEX IF NOT EXISTS runs_cwd ON {s}.runs (cwd, started_at)",
        f"CREATE INDEX IF NOT EXISTS runs_config_sig ON {s}.runs (config_sig)",
        f"CREATE INDEX IF NOT EXISTS runs_host ON {s}.runs (host)",
        f'CREATE INDEX IF NOT EXISTS runs_user ON {s}.runs ("user")',
        f"CREATE INDEX IF NOT EXISTS runs_slurm ON {s}.runs"
        " (slurm_cluster, slurm_job, slurm_array_task)",
        f"CREATE INDEX IF NOT EXISTS runs_superseded ON {s}.runs (origin, superseded_by)"
        " WHERE superseded_by IS NOT NULL",
        f"CREATE INDEX IF NOT EXISTS runs_launch_key ON {s}.runs ({group_expr()})"
        f" WHERE {group_expr()} IS NOT NULL",
        f"""CREATE TABLE IF NOT EXISTS {s}.params (
    run_id text NOT NULL REFERENCES {s}.runs(id) ON DELETE CASCADE,
    key text NOT NULL,
    value text,
    num double precision,
    PRIMARY KEY (run_id, key)
)""",
        f"CREATE INDEX IF NOT EXISTS params_key_num ON {s}.params (key, num)",
        f"CREATE INDEX IF NOT EXISTS params_key_value ON {s}.params (key, value)",
        f"""CREATE TABLE IF NOT EXISTS {s}.metrics (
    run_id text NOT NULL REFERENCES {s}.runs(id) ON DELETE CASCADE,
    tag text NOT NULL,
    last double precision,
    last_kind text,
    min double precision,
    max double precision,
    step bigint,
    count bigint NOT NULL,
    nonfinite_step bigint,
    first_step bigint,
    last_wall_time double precision,
    source text,
    PRIMARY KEY (run_id, tag)
)""",
        f"CREATE INDEX IF NOT EXISTS metrics_tag_last ON {s}.metrics (tag, last)",
        f"""CREATE TABLE IF NOT EXISTS {s}.series (
    run_id text NOT NULL REFERENCES {s}.runs(id) ON DELETE CASCADE,
    tag text NOT NULL,
    points bytea NOT NULL,
    PRIMARY KEY (run_id, tag)
)""",
        f"""CREATE TABLE IF NOT EXISTS {s}.tags (
    run_id text NOT NULL REFERENCES {s}.runs(id) ON DELETE CASCADE,
    tag text NOT NULL,
    origin text NOT NULL,
    PRIMARY KEY (run_id, tag, origin)
)""",
        f"CREATE INDEX IF NOT EXISTS tags_tag ON {s}.tags (tag)",
        f"""CREATE TABLE IF NOT EXISTS {s}.notes (
    origin text NOT NULL,
    id bigint NOT NULL,
    run_id text NOT NULL REFERENCES {s}.runs(id) ON DELETE CASCADE,
    at text NOT NULL,
    author text,
    kind text NOT NULL DEFAULT 'note',
    text text NOT NULL,
    deleted_at text,
    PRIMARY KEY (origin, id)
)""",
        f"CREATE INDEX IF NOT EXISTS notes_run ON {s}.notes (run_id)",
        f"""CREATE TABLE IF NOT EXISTS {s}.search_docs (
    id bigserial PRIMARY KEY,
    run_id text NOT NULL REFERENCES {s}.runs(id) ON DELETE CASCADE,
    field text NOT NULL,
    ref text NOT NULL DEFAULT '',
    text text NOT NULL,
    origin text NOT NULL DEFAULT ''
)""",
        f"CREATE UNIQUE INDEX IF NOT EXISTS search_docs_key ON {s}.search_docs"
        " (run_id, field, ref, origin)",
    ]


class RemoteSchemaError(StoreError):
    """The server's database cannot hold the lab's notebook as it is."""


#: Text whose trigrams ``pg_trgm`` must see for Chinese search to work.
CTYPE_PROBE = "中文检索"


def check_ctype(conn: Any) -> None:
    """Refuse a database whose ``LC_CTYPE`` makes ``pg_trgm`` see no Chinese characters
    (``C``/``POSIX``: every non-ASCII character is a separator, so Chinese text has no
    trigrams and is silently never found). Needs ``pg_trgm`` created."""
    db, ctype = conn.execute(
        "SELECT current_database(), datctype FROM pg_database WHERE datname = current_database()"
    ).fetchone()
    trigrams = conn.execute("SELECT show_trgm(%s)", (CTYPE_PROBE,)).fetchone()[0]
    if not trigrams:
        raise RemoteSchemaError(
            f"database {db} has LC_CTYPE {ctype}: pg_trgm makes no trigrams of Chinese"
            " text there, so it could never be searched",
            hint=f"create it with a UTF-8 locale: CREATE DATABASE {db} LC_CTYPE 'C.UTF-8'"
            " LC_COLLATE 'C.UTF-8' TEMPLATE template0 (or en_US.UTF-8)",
        )


def create_schema(conn: Any) -> None:
    """Create (or complete) the schema, ``pg_trgm`` and the search indexes; commits.

    Refuses (RemoteSchemaError) a database whose ctype cannot index Chinese, before
    creating anything but the extension."""
    import psycopg

    try:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except psycopg.Error as exc:
        conn.rollback()
        raise RemoteSchemaError(
            f"cannot create the pg_trgm extension: {str(exc).strip().splitlines()[0]}",
            hint="install PostgreSQL's contrib package, or ask the database's owner to"
            " run CREATE EXTENSION pg_trgm",
        ) from None
    check_ctype(conn)
    # one creator at a time (two nodes running remote init at once)
    conn.execute("SELECT pg_advisory_xact_lock(hashtext('labbook schema'))")
    regroup = (
        schema_exists_in(conn)
        and conn.execute("SELECT to_regclass(%s)", (f"{SCHEMA}.{_OLD_GROUP_INDEX}",)).fetchone()[0]
        is not None
    )
    for stmt in _ddl():
        conn.execute(stmt)
    if regroup:  # a server of the old key: rows it hid as superseded may be other runs
        _regroup(conn)
    try:
        from labbook.store.remote import search_schema  # owned by the reads helper
    except ImportError:
        search_schema = None  # type: ignore[assignment]
    if search_schema is not None:
        search_schema.create(conn)
    conn.execute(
        f"INSERT INTO {SCHEMA}.meta (key, value) VALUES ('schema_version', %s)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (str(SERVER_SCHEMA_VERSION),),
    )
    conn.commit()


def schema_exists_in(conn: Any) -> bool:
    """Whether ``runs`` exists (inside the caller's transaction)."""
    row = conn.execute("SELECT to_regclass(%s)", (f"{SCHEMA}.runs",)).fetchone()
    return row is not None and row[0] is not None


def _regroup(conn: Any) -> None:
    """Drop the old group index and recompute every ``superseded_by`` by the new key."""
    conn.execute(f"DROP INDEX IF EXISTS {SCHEMA}.{_OLD_GROUP_INDEX}")
    conn.execute(f"UPDATE {SCHEMA}.runs SET superseded_by = NULL WHERE superseded_by IS NOT NULL")
    g = group_expr()
    groups = [
        r[0]
        for r in conn.execute(
            f"SELECT {g} FROM {SCHEMA}.runs WHERE {g} IS NOT NULL GROUP BY 1 HAVING count(*) > 1"
        ).fetchall()
    ]
    if groups:
        supersede_groups(conn, groups)


def schema_exists(conn: Any) -> bool:
    row = conn.execute("SELECT to_regclass(%s)", (f"{SCHEMA}.runs",)).fetchone()
    conn.rollback()
    return row is not None and row[0] is not None


def server_run_columns(conn: Any) -> set[str]:
    """The columns of the server's ``runs`` table."""
    rows = conn.execute(
        "SELECT column_name FROM information_schema.columns"
        " WHERE table_schema = %s AND table_name = 'runs'",
        (SCHEMA,),
    ).fetchall()
    return {r[0] for r in rows}


def ensure_run_columns(conn: Any, local: dict[str, str]) -> set[str]:
    """Add to the server's ``runs`` the local columns it lacks (a newer labbook's
    column); return the server's columns. Commits; a server that refuses keeps its
    columns (the push then leaves those out)."""
    import psycopg

    have = server_run_columns(conn)
    missing = [c for c in local if c not in have]
    for col in missing:
        try:
            conn.execute(
                f"ALTER TABLE {SCHEMA}.runs ADD COLUMN IF NOT EXISTS {q(col)} {pg_type(local[col])}"
            )
            conn.commit()
            have.add(col)
        except psycopg.Error:
            conn.rollback()
    conn.rollback()
    return have


def supersede_groups(conn: Any, groups: list[str]) -> int:
    """Recompute ``superseded_by`` in ``groups`` (group keys): a row not removed
    stands over removed ones (``labbook rm`` on one node takes that node's record
    away, not another node's record of the same run dir or job), then the newest."""
    g = group_expr()
    # one lock per group, taken in one order (no deadlock): pushers of other groups
    # never wait; a second pusher of the same group waits for the first to commit,
    # then sees its row
    conn.execute(
        "SELECT count(pg_advisory_xact_lock(h)) FROM (SELECT DISTINCT hashtext('labbook group '"
        " || g) AS h FROM unnest(%s::text[]) AS g ORDER BY h) AS locks",
        (groups,),
    )
    cur = conn.execute(
        f"""
        WITH members AS (
            SELECT id, origin, {g} AS grp, superseded_by,
                   row_number() OVER w AS n, first_value(id) OVER w AS top
            FROM {SCHEMA}.runs WHERE {g} = ANY(%s)
            WINDOW w AS (PARTITION BY {g} ORDER BY (deleted_at IS NOT NULL),
                coalesce(started_at, created_at) DESC, created_at DESC, id DESC)
        )
        UPDATE {SCHEMA}.runs r
        SET superseded_by = CASE WHEN m.n = 1 THEN NULL ELSE m.top END
        FROM members m
        WHERE r.id = m.id
          AND r.superseded_by IS DISTINCT FROM
              (CASE WHEN m.n = 1 THEN NULL ELSE m.top END)
        """,
        (groups,),
    )
    return max(cur.rowcount, 0)
