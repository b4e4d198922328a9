"""Finding runs: references (``k3f9``, a name, a path, ``@last``, ``@-2``) and filters.

Filters are what ``labbook ls`` takes: ``--status``, ``--framework``, ``--tag``,
``--since`` and ``--where`` expressions such as ``optimizer.lr>=0.01``,
``status=failed``, ``val/loss<0.3`` or ``name~resnet*``. Several expressions are
joined with AND (``a=1 and b>2`` or repeated ``--where``).

In a ``--where`` key, a run field (``status``, ``framework``, ``name``, ``host``,
``user``, ``seed``, ``started_at``, ``git.commit``, ``git.branch``) is matched
first (``seed=null`` finds runs whose seed is not set, ``seed=unknown`` those whose
seed could not be read); ``metrics.TAG`` / ``metric.TAG`` names a metric's last value explicitly;
anything else is a config key, or a metric tag when no run has such a config key.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from labbook.errors import AmbiguousRun, QueryError, RunNotFound
from labbook.readers.values import parse_value
from labbook.store.codec import NEWEST_FIRST, utc_iso

if TYPE_CHECKING:
    from labbook.store.sqlite import Store

RUN_FIELDS = {
    "id": "r.id",
    "name": "r.name",
    "status": "r.status",
    "framework": "r.framework",
    "host": "r.host",
    "user": "r.user",
    "path": "r.path",
    "seed": "r.seed_value",
    "started_at": "r.started_at",
    "ended_at": "r.ended_at",
    "git.commit": "r.git_commit",
    "git.branch": "r.git_branch",
    "git.root": "r.git_root",
    "failure": "r.failure_kind",
    "failure.kind": "r.failure_kind",
}

_OPS = {"=": "=", "==": "=", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">=", "~": "GLOB"}
_EXPR = re.compile(
    r"^\s*(?P<key>[^\s=!<>~]+)\s*(?P<op>==|!=|<=|>=|=|<|>|~)\s*(?P<value>[^<>=!~\s].*?)\s*$"
)
_SINCE = re.compile(r"^(\d+)\s*([smhdw])$")


@dataclass
class Condition:
    key: str
    op: str
    value: Any


@dataclass
class RunFilter:
    status: list[str] = field(default_factory=list)
    framework: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    where: list[Condition] = field(default_factory=list)
    since: str | None = None  # ISO timestamp
    limit: int | None = 50
    include_deleted: bool = False


def parse_where(expressions: list[str]) -> list[Condition]:
    """Parse ``--where`` expressions; ``and`` (any case) also separates conditions."""
    out = []
    for expr in expressions:
        for part in re.split(r"\s+and\s+", expr.strip(), flags=re.IGNORECASE):
            if not part.strip():
                continue
            m = _EXPR.match(part)
            if not m:
                raise QueryError(
                    f"cannot read the condition '{part}'",
                    hint="write KEY OP VALUE, e.g. optimizer.lr>=0.01, status=failed, name~'resnet*'",
                )
            out.append(Condition(m["key"], m["op"], parse_value(m["value"])))
    return out


def parse_since(text: str) -> str:
    """``30d``, ``12h``, ``2w`` or an ISO date → an ISO UTC timestamp."""

    m = _SINCE.match(text.strip())
    if m:
        n, unit = int(m[1]), m[2]
        seconds = n * {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[unit]
        return utc_iso(time.time() - seconds)  # type: ignore[return-value]
    if re.match(r"^\d{4}-\d{2}-\d{2}", text):
        return text if "T" in text else text + "T00:00:00Z"
    raise QueryError(f"cannot read the time '{text}'", hint="use e.g. 30d, 12h, 2w or 2026-11-01")


def _condition_sql(
    store: Store, cond: Condition, *, all_rows: bool = False
) -> tuple[str, list[Any]]:
    op = _OPS[cond.op]
    value = cond.value
    key = cond.key
    if key in RUN_FIELDS:
        col = RUN_FIELDS[key]
        if key == "seed":
            # seed=null: not set (a NULL value, a NULL source); seed=unknown: a file that
            # could hold the seed could not be read (NULL value, source 'unknown').
            if value is None or (value == "unknown" and op in ("=", "!=")):
                source = "r.seed_source IS NULL" if value is None else "r.seed_source IS 'unknown'"
                match = f"(r.seed_value IS NULL AND {source})"
                return (match if op == "=" else f"NOT {match}"), []
            import json

            return f"{col} {op} ?", [json.dumps(value)]
        return f"{col} {op} ?", [value]
    metric = None
    for prefix in ("metrics.", "metric.", "m:"):
        if key.startswith(prefix):
            metric = key[len(prefix) :]
    if (
        metric is None
        and not store.conn.execute("SELECT 1 FROM params WHERE key = ? LIMIT 1", (key,)).fetchone()
        and store.conn.execute("SELECT 1 FROM metrics WHERE tag = ? LIMIT 1", (key,)).fetchone()
    ):
        metric = key
    if metric is not None:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise QueryError(f"metric '{metric}' can only be compared with a number")
        table, where, args = "metrics", f"tag = ? AND last {op} ?", [metric, value]
    elif isinstance(value, (int, float)) and op != "GLOB":
        table, where, args = "params", f"key = ? AND num {op} ?", [key, float(value)]
    elif op == "GLOB":
        table, where = "params", "key = ? AND json_extract(value, '$') GLOB ?"
        args = [key, str(value)]
    else:
        import json

        table, where, args = "params", f"key = ? AND value {op} ?", [key, json.dumps(value)]
    if all_rows:  # a count visits every match anyway: the subquery form is the fast one
        return f"r.id IN (SELECT run_id FROM {table} WHERE {where})", args
    return _membership(store, table, where, args)


#: Above this many matching rows a condition is tested run by run (see _membership).
_MANY = 2000


def _membership(store: Store, table: str, where: str, args: list[Any]) -> tuple[str, list[Any]]:
    """SQL for "the run has a ``table`` row matching ``where``", in the form that is fast.

    Few matches: ``r.id IN (subquery)`` — SQLite reads the matches from the index and
    fetches those runs. Many: a correlated ``EXISTS`` probe of the table's
    (run_id, key) primary key while walking the newest-first index, which stops as
    soon as the page is full. Each form is ~100x slower than the other in the other
    case (measured over 100,000 runs), and SQLite without statistics cannot tell
    which case it is in, so a capped count of the matches decides.
    """
    n = store.conn.execute(
        f"SELECT count(*) FROM (SELECT 1 FROM {table} WHERE {where} LIMIT {_MANY})", args
    ).fetchone()[0]
    if n < _MANY:
        return f"r.id IN (SELECT run_id FROM {table} WHERE {where})", args
    return f"EXISTS (SELECT 1 FROM {table} WHERE {table}.run_id = r.id AND {where})", args


def select_runs(store: Store, flt: RunFilter) -> list[dict[str, Any]]:
    """Rows of the runs matching ``flt``, newest first."""
    where, args = _filter_sql(store, flt)
    sql = "SELECT r.* FROM runs r" + where
    sql += " ORDER BY " + NEWEST_FIRST.replace("{t}", "r.")
    if flt.limit:
        sql += f" LIMIT {int(flt.limit)}"
    cur = store.conn.execute(sql, args)
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, row, strict=False)) for row in cur.fetchall()]


#: The listing order, newest first; matches the ``runs_order`` index (schema 0002).

_RECENT = re.compile(r"^@(?:last|-(\d+))$")


def resolve(store: Store, ref: str) -> str:
    """Turn a run reference into a run id, or raise RunNotFound / AmbiguousRun.

    Accepted, in this order: ``@last`` and ``@-N`` (N-th newest, ``@-1`` is
    ``@last``), an exact id, an exact name, an id prefix, a path (a run dir or a
    file or directory inside one). A name wins over an id prefix: a run named
    ``b`` stays reachable as ``b`` whatever ids other runs were given.
    """
    conn = store.conn
    m = _RECENT.match(ref)
    if m:
        n = int(m[1]) if m[1] else 1
        if n < 1:
            raise RunNotFound(f"'{ref}': use @-1 for the newest run, @-2 for the one before")
        row = conn.execute(
            "SELECT id FROM runs WHERE deleted_at IS NULL"
            " ORDER BY " + NEWEST_FIRST.replace("{t}", "") + " LIMIT 1 OFFSET ?",
            (n - 1,),
        ).fetchone()
        if not row:
            raise RunNotFound(f"'{ref}': there are fewer than {n} runs")
        return str(row[0])
    is_hex = re.fullmatch(r"[0-9a-f]{1,16}", ref) is not None
    if is_hex and conn.execute("SELECT 1 FROM runs WHERE id = ?", (ref,)).fetchone():
        return ref
    rows = [
        r[0]
        for r in conn.execute("SELECT id FROM runs WHERE name = ? AND deleted_at IS NULL", (ref,))
    ]
    if len(rows) == 1:
        return str(rows[0])
    if len(rows) > 1:
        raise AmbiguousRun(ref, _describe(store, rows))
    if is_hex:
        rows = [
            r[0]
            for r in conn.execute(
                "SELECT id FROM runs WHERE id >= ? AND id < ? ORDER BY id", (ref, ref + "g")
            ).fetchall()
        ]
        if len(rows) == 1:
            return str(rows[0])
        if len(rows) > 1:
            raise AmbiguousRun(ref, _describe(store, rows))
    path = os.path.abspath(os.path.expanduser(ref))
    probe = path
    while True:
        rows = [r[0] for r in conn.execute("SELECT id FROM runs WHERE path = ?", (probe,))]
        if len(rows) == 1:
            return str(rows[0])
        if len(rows) > 1:
            raise AmbiguousRun(ref, _describe(store, rows))
        parent = os.path.dirname(probe)
        if parent == probe or not os.path.exists(path):
            break
        probe = parent
    raise RunNotFound(f"no run matches '{ref}'", hint="see `labbook ls` for ids and names")


def _describe(store: Store, ids: list[str]) -> list[str]:
    out = []
    for rid in ids:
        row = store.conn.execute(
            "SELECT name, status, started_at, path FROM runs WHERE id = ?", (rid,)
        ).fetchone()
        out.append(f"{rid}  {row[0] or ''}  {row[1]}  {row[2] or ''}  {row[3] or ''}")
    return out


# -- paged listing (for views that show a window of a large store, e.g. the TUI) -----

#: Sort keys that are run columns, besides :data:`RUN_FIELDS`.
_SORT_EXTRA = {
    "duration": "(julianday(r.ended_at) - julianday(r.started_at))",
    "started": "coalesce(r.started_at, r.created_at)",
}


def _filter_sql(store: Store, flt: RunFilter, *, all_rows: bool = False) -> tuple[str, list[Any]]:
    """The WHERE clause (or "") and its arguments for ``flt``, as :func:`select_runs` builds it."""
    clauses: list[str] = []
    args: list[Any] = []
    if not flt.include_deleted:
        clauses.append("r.deleted_at IS NULL")
    if flt.status:
        clauses.append(f"r.status IN ({','.join('?' for _ in flt.status)})")
        args += flt.status
    if flt.framework:
        clauses.append(f"r.framework IN ({','.join('?' for _ in flt.framework)})")
        args += flt.framework
    for tag in flt.tags:
        clauses.append("r.id IN (SELECT run_id FROM tags WHERE tag = ?)")
        args.append(tag)
    if flt.since:
        clauses.append("coalesce(r.started_at, r.created_at) >= ?")
        args.append(flt.since)
    for cond in flt.where:
        sql, more = _condition_sql(store, cond, all_rows=all_rows)
        clauses.append(sql)
        args += more
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), args


def count_runs(store: Store, flt: RunFilter, *, cap: int | None = None) -> int:
    """How many runs match ``flt`` (its ``limit`` is ignored): one ``count(*)``.

    With ``cap``, counting stops past ``cap`` (the result is then ``cap + 1``): a
    view that says "10,000+ runs" need not visit 100,000 rows on every keystroke.
    """
    # The subquery form even with a cap: a probe per run would have to walk past
    # ~cap/density runs to find cap matches (545 ms vs 58 ms for a 14% filter).
    where, args = _filter_sql(store, flt, all_rows=True)
    if cap is None:
        sql = f"SELECT count(*) FROM runs r{where}"
    else:
        sql = f"SELECT count(*) FROM (SELECT 1 FROM runs r{where} LIMIT {int(cap) + 1})"
    return int(store.conn.execute(sql, args).fetchone()[0])


def select_runs_window(
    store: Store,
    flt: RunFilter,
    *,
    offset: int = 0,
    limit: int = 100,
    sort: str | None = None,
    descending: bool = False,
) -> list[dict[str, Any]]:
    """Rows ``offset .. offset+limit`` of the runs matching ``flt`` (its ``limit`` is ignored).

    Views of 100,000 runs show a window and page through it instead of loading all.
    ``sort`` is None (newest first), a run field (``name``, ``status``, ``seed``, …),
    ``duration``, ``metrics.TAG`` (last value) or a config key; runs without a value
    sort last either way, ties newest first. Only ids are sorted; the window's rows
    are read afterwards, so a sort by a metric never drags whole rows through it.
    """
    where, args = _filter_sql(store, flt)
    join = ""
    join_args: list[Any] = []
    order = ""
    if sort:
        direction = "DESC" if descending else "ASC"
        if sort in RUN_FIELDS or sort in _SORT_EXTRA:
            expr = _SORT_EXTRA.get(sort) or RUN_FIELDS[sort]
            if sort == "seed":
                expr = "CAST(r.seed_value AS REAL)"
        elif sort.startswith(("metrics.", "metric.")):
            join = " LEFT JOIN metrics s ON s.run_id = r.id AND s.tag = ?"
            join_args = [sort.split(".", 1)[1]]
            expr = "s.last"
        else:
            join = " LEFT JOIN params s ON s.run_id = r.id AND s.key = ?"
            join_args = [sort]
            expr = "coalesce(s.num, s.value)"
        order = f"({expr}) IS NULL, {expr} {direction}, "
    order += NEWEST_FIRST.replace("{t}", "r.")
    ids = [
        row[0]
        for row in store.conn.execute(
            f"SELECT r.id FROM runs r{join}{where} ORDER BY {order} LIMIT ? OFFSET ?",
            [*join_args, *args, int(limit), max(0, int(offset))],
        )
    ]
    if not ids:
        return []
    marks = ",".join("?" for _ in ids)
    cur = store.conn.execute(f"SELECT r.* FROM runs r WHERE r.id IN ({marks})", ids)
    cols = [d[0] for d in cur.description]
    found = (dict(zip(cols, row, strict=False)) for row in cur.fetchall())
    by_id = {row["id"]: row for row in found}
    return [by_id[i] for i in ids if i in by_id]
