"""Finding runs: references (``k3f9``, a name, a path, ``@last``, ``@-2``) and filters.

Filters are what ``labbook ls`` takes: ``--status``, ``--framework``, ``--tag``,
``--since`` and ``--where`` expressions such as ``optimizer.lr>=0.01``,
``status=failed``, ``val/loss<0.3`` or ``name~resnet*``. Several expressions are
joined with AND (``a=1 and b>2`` or repeated ``--where``).

In a ``--where`` key, a run field (``status``, ``framework``, ``name``, ``host``,
``user``, ``seed``, ``started_at``, ``git.commit``, ``git.branch``, ``slurm.job``,
``slurm.task``, ``slurm.partition``, …) is matched
first (``seed=null`` finds runs whose seed is not set, ``seed=unknown`` those whose
seed could not be read); ``metrics.TAG`` / ``metric.TAG`` names a metric's last value explicitly;
anything else is a config key, or a metric tag when no run has such a config key.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from labbook.errors import AmbiguousRun, QueryError, RunNotFound, RunRemoved
from labbook.readers.values import parse_value
from labbook.store.codec import utc_iso

if TYPE_CHECKING:
    from labbook.store.sqlite import Store

RUN_FIELDS = {
    "id": "r.id",
    "name": "r.name",
    "status": "r.status",
    "framework": "r.framework",
    "host": "r.host",
    "user": 'r."user"',
    "path": "r.path",
    "seed": "r.seed_value",
    "started_at": "r.started_at",
    "ended_at": "r.ended_at",
    "git.commit": "r.git_commit",
    "git.branch": "r.git_branch",
    "git.root": "r.git_root",
    "failure": "r.failure_kind",
    "failure.kind": "r.failure_kind",
    # Slurm (labbook.capture.slurm; schema 0014_remote). Note for the dialect layer
    # ("reads"): all text columns but slurm_restarts (INTEGER / bigint).
    "slurm.cluster": "r.slurm_cluster",
    "slurm.job": "r.slurm_job",
    "slurm.array_job": "r.slurm_array_job",
    "slurm.array": "r.slurm_array_job",
    "slurm.task": "r.slurm_array_task",
    "slurm.array_task": "r.slurm_array_task",
    "slurm.restarts": "r.slurm_restarts",
    "slurm.nodes": "r.slurm_nodes",
    "slurm.partition": "r.slurm_partition",
    "slurm.account": "r.slurm_account",
}

_OPS = {"=": "=", "==": "=", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">=", "~": "GLOB"}
_EXPR = re.compile(
    r"^\s*(?P<key>[^\s=!<>~]+)\s*(?P<op>==|!=|<=|>=|=|<|>|~)\s*(?P<value>[^<>=!~\s].*?)\s*$"
)
_SINCE = re.compile(r"^(\d+)\s*([smhdw])$")

#: ``metric_names(tags, name)``: the tags among ``tags`` that stand for the metric
#: ``name``, the preferred first (``labbook.analysis.metrics.canonical_tags``).
MetricNames = Callable[[Iterable[str], str], list[str]]


@dataclass
class Condition:
    key: str
    op: str
    value: Any
    text: str = ""  # the expression as written, for error messages

    def __post_init__(self) -> None:
        if not self.text:
            self.text = f"{self.key}{self.op}{self.value}"


@dataclass
class RunFilter:
    status: list[str] = field(default_factory=list)
    framework: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    where: list[Condition] = field(default_factory=list)
    since: str | None = None  # ISO timestamp
    limit: int | None = 50
    include_deleted: bool = False
    #: Archived runs (``labbook archive``): "hide" (default listings), "only"
    #: (``ls --archived``) or "include" (``ls --all-runs``).
    archived: str = "hide"
    #: A key that no run has, or a value that does not fit its key's type, raises
    #: QueryError (the CLI); views that filter as one types leave it off.
    strict: bool = False
    #: How a metric name stands for several tags (``train_loss`` for ``train/loss``,
    #: ``Loss/train``, …): ``labbook.analysis.metrics.canonical_tags``; None: only tags.
    metric_names: MetricNames | None = None


_AND = re.compile(r"(?:^|\s+)and(?:\s+|$)", re.IGNORECASE)
_OR = re.compile(r"\s(?:or|\|\|)\s", re.IGNORECASE)
_EXAMPLE = "write KEY OP VALUE, e.g. optimizer.lr>=0.01, status=failed, name~'resnet*'"


def parse_where(expressions: list[str]) -> list[Condition]:
    """Parse ``--where`` expressions; ``and`` (any case) also separates conditions.

    Raises :class:`QueryError` (one line) for what cannot be a condition: no
    operator, no key or no value (``lr>``), an ``and`` with nothing on one side
    (``lr>0.05 and``), ``or`` (not supported).
    """
    out = []
    for expr in expressions:
        whole = expr.strip()
        if not whole:
            continue
        if _OR.search(f" {whole} "):
            raise QueryError(
                f"'or' is not supported in '{whole}': conditions are joined with 'and' "
                "(repeat --where for more)"
            )
        parts = _AND.split(whole)
        for part in parts:
            part = part.strip()
            if not part:
                raise QueryError(
                    f"incomplete condition '{whole}': 'and' needs a condition on both sides"
                )
            m = _EXPR.match(part)
            if m:
                out.append(Condition(m["key"], m["op"], parse_value(m["value"]), part))
                continue
            op = re.search(r"==|!=|<=|>=|=|<|>|~", part)
            if op and not part[: op.start()].strip():
                raise QueryError(f"incomplete condition '{part}': no key before '{op[0]}'")
            if op and not part[op.end() :].strip():
                raise QueryError(f"incomplete condition '{part}': no value after '{op[0]}'")
            raise QueryError(f"cannot read the condition '{part}': {_EXAMPLE}")
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


_ORDERING = ("<", "<=", ">", ">=")


def _distinct(store: Store, table: str, column: str) -> list[str]:
    """Every distinct ``column`` of ``table``: one index seek per value (a skip scan),
    not a walk over every row."""
    sql = (
        f"WITH RECURSIVE k(v) AS (SELECT min({column}) FROM {table} UNION ALL"
        f" SELECT (SELECT min({column}) FROM {table} WHERE {column} > k.v) FROM k"
        " WHERE k.v IS NOT NULL) SELECT v FROM k WHERE v IS NOT NULL"
    )
    return [str(row[0]) for row in store.conn.execute(sql)]


def _exists(store: Store, sql: str, args: Sequence[Any]) -> bool:
    return store.conn.execute(f"SELECT 1 FROM {sql} LIMIT 1", list(args)).fetchone() is not None


def _metric_group(store: Store, name: str, metric_names: MetricNames | None) -> list[str]:
    """The stored tags that the metric ``name`` stands for, the preferred first."""
    if metric_names is None:
        return []
    return metric_names(_distinct(store, "metrics", "tag"), name)


def _rank_case(column: str, tags: list[str]) -> tuple[str, list[Any]]:
    whens = " ".join("WHEN ? THEN ?" for _ in tags)
    args: list[Any] = []
    for i, t in enumerate(tags):
        args += [t, i]
    return f"(CASE {column} {whens} END)", args


def unknown_key(store: Store, key: str, *, metric: bool = False) -> QueryError:
    """``no run has 'lrr'; did you mean 'lr'?``: the nearest config keys, metric
    tags and run fields (difflib)."""
    import difflib

    tags = _distinct(store, "metrics", "tag")
    if metric:
        bare = key.split(".", 1)[1] if "." in key else key
        close = [f"metrics.{t}" for t in difflib.get_close_matches(bare, tags, n=3)]
        what = f"the metric '{bare}'"
    else:
        names = [*RUN_FIELDS, *_SORT_EXTRA, *_distinct(store, "params", "key"), *tags]
        close = difflib.get_close_matches(key, list(dict.fromkeys(names)), n=3)
        what = f"'{key}'"
    if not close:
        return QueryError(f"no run has {what} (no config key, metric or run field of that name)")
    quoted = [f"'{c}'" for c in close]
    alternatives = quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]
    return QueryError(f"no run has {what}; did you mean {alternatives}?")


def _resolve_key(
    store: Store, key: str, metric_names: MetricNames | None, *, strict: bool
) -> tuple[str, list[str]]:
    """What a ``--where``/``--sort`` key names: ``("field", [])``, ``("param", [])``,
    ``("metric", tags)`` (the preferred tag first) or, not strict, ``("param", [])``
    for a key that nothing has. Strict: a key that nothing has raises."""
    if key in RUN_FIELDS:
        return "field", []
    for prefix in ("metrics.", "metric.", "m:"):
        if key.startswith(prefix):
            tag = key[len(prefix) :]
            if _exists(store, "metrics WHERE tag = ?", [tag]):
                return "metric", [tag]
            group = _metric_group(store, tag, metric_names)
            if group:
                return "metric", group
            if strict:
                raise unknown_key(store, key, metric=True)
            return "metric", [tag]
    if _exists(store, "params WHERE key = ?", [key]):
        return "param", []
    group = _metric_group(store, key, metric_names)
    if group:
        return "metric", group
    if _exists(store, "metrics WHERE tag = ?", [key]):
        return "metric", [key]
    if strict:
        raise unknown_key(store, key)
    return "param", []


def _check_param_type(store: Store, cond: Condition) -> Any:
    """The value to compare ``cond``'s config key with; raises when an ordering
    compares numbers with text (every run's value is of the other kind)."""
    value = cond.value
    if cond.op not in _ORDERING or value is None or isinstance(value, bool):
        return value
    numbers = _exists(store, "params WHERE key = ? AND num IS NOT NULL", [cond.key])
    texts = _exists(store, "params WHERE key = ? AND num IS NULL", [cond.key])
    if isinstance(value, str):
        coerced = parse_value(value)
        if isinstance(coerced, (int, float)) and not isinstance(coerced, bool):
            return coerced if numbers else value  # lr>='0.1' on numbers: a number
        if numbers and not texts:
            raise QueryError(
                f"'{cond.key}' holds numbers, and '{value}' is not a number (in '{cond.text}')"
            )
    elif texts and not numbers:
        raise QueryError(
            f"'{cond.key}' holds text, not numbers: '{cond.text}' cannot compare it with {value}"
        )
    return value


def _condition_sql(
    store: Store,
    cond: Condition,
    *,
    all_rows: bool = False,
    strict: bool = False,
    metric_names: MetricNames | None = None,
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
                source = (
                    "r.seed_source IS NULL"
                    if value is None
                    else "coalesce(r.seed_source, '') = 'unknown'"
                )
                match = f"(r.seed_value IS NULL AND {source})"
                return (match if op == "=" else f"NOT {match}"), []
            import json

            return f"{col} {op} ?", [json.dumps(value)]
        if op == "GLOB":
            return store.dialect.glob(col), [store.dialect.glob_arg(str(value))]
        return f"{col} {op} ?", [store.dialect.text_arg(value)]
    kind, tags = _resolve_key(store, key, metric_names, strict=strict)
    if kind == "metric":
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            shown = "null" if value is None else value
            raise QueryError(
                f"metric '{tags[0] if len(tags) == 1 else key}' compares by number, and "
                f"'{shown}' is not a number (in '{cond.text}')"
            )
        if op == "GLOB":
            raise QueryError(
                f"metric '{key}' compares by number: '~' is for text (in '{cond.text}')"
            )
        if len(tags) == 1:
            table, where, args = "metrics", f"tag = ? AND last {op} ?", [tags[0], value]
        else:
            # the run's preferred tag of the group decides, as in the column ls shows
            marks = ",".join("?" for _ in tags)
            mine, mine_args = _rank_case("m.tag", tags)
            other, other_args = _rank_case("p.tag", tags)
            sql = (
                f"r.id IN (SELECT m.run_id FROM metrics m WHERE m.tag IN ({marks})"
                f" AND m.last {op} ? AND NOT EXISTS (SELECT 1 FROM metrics p"
                f" WHERE p.run_id = m.run_id AND p.tag IN ({marks}) AND {other} < {mine}))"
            )
            return sql, [*tags, value, *tags, *other_args, *mine_args]
    else:
        if strict:
            value = _check_param_type(store, cond)
        if isinstance(value, (int, float)) and op != "GLOB":
            table, where, args = "params", f"key = ? AND num {op} ?", [key, float(value)]
        elif op == "GLOB":
            d = store.dialect
            table, where = "params", f"key = ? AND {d.glob(d.json_text('value'))}"
            args = [key, d.glob_arg(str(value))]
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
        f"SELECT count(*) FROM (SELECT 1 FROM {table} WHERE {where} LIMIT {_MANY}) AS m", args
    ).fetchone()[0]
    if n < _MANY:
        return f"r.id IN (SELECT run_id FROM {table} WHERE {where})", args
    return f"EXISTS (SELECT 1 FROM {table} WHERE {table}.run_id = r.id AND {where})", args


def select_runs(store: Store, flt: RunFilter) -> list[dict[str, Any]]:
    """Rows of the runs matching ``flt``, newest first."""
    where, args = filter_sql(store, flt)
    sql = "SELECT r.* FROM runs r" + where
    sql += " ORDER BY " + store.dialect.newest_first("r.")
    if flt.limit:
        sql += f" LIMIT {int(flt.limit)}"
    cur = store.conn.execute(sql, args)
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, row, strict=False)) for row in cur.fetchall()]


#: The listing order, newest first; matches the ``runs_order`` index (schema 0002).

_RECENT = re.compile(r"^@(?:last|-(\d+))$")


def resolve(store: Store, ref: str, *, removed: bool = False) -> str:
    """Turn a run reference into a run id, or raise RunNotFound / AmbiguousRun.

    Accepted, in this order: ``@last`` and ``@-N`` (N-th newest, ``@-1`` is
    ``@last``), an exact id, an exact name, an id prefix, a path (a run dir or a
    file or directory inside one). A name wins over an id prefix: a run named
    ``b`` stays reachable as ``b`` whatever ids other runs were given.

    A run removed by ``labbook rm`` raises :class:`RunRemoved` (saying how to bring
    it back) unless ``removed`` (``rm --undo``: names of removed runs count too);
    a run merged into another (``labbook run`` joining a run dir) resolves to that one.
    """
    run_id = _resolve(store, ref, removed=removed)
    if removed:
        return run_id
    row = store.conn.execute(
        "SELECT deleted_at, source_key FROM runs WHERE id = ?", (run_id,)
    ).fetchone()
    if row is None or row[0] is None:
        return run_id
    key = str(row[1] or "")
    if key.startswith("merged:"):
        into = key.split(":", 2)[1]
        live = store.conn.execute(
            "SELECT 1 FROM runs WHERE id = ? AND deleted_at IS NULL", (into,)
        ).fetchone()
        if live:
            return into
    raise RunRemoved(
        f"run {run_id} was removed ({str(row[0])[:10]}, labbook rm)",
        hint=f"`labbook rm --undo {run_id}` brings it back",
    )


def _resolve(store: Store, ref: str, *, removed: bool) -> str:
    conn = store.conn
    m = _RECENT.match(ref)
    if m:
        n = int(m[1]) if m[1] else 1
        if n < 1:
            raise RunNotFound(f"'{ref}': use @-1 for the newest run, @-2 for the one before")
        row = conn.execute(
            f"SELECT id FROM runs WHERE {store.dialect.live()}"
            " ORDER BY " + store.dialect.newest_first() + " LIMIT 1 OFFSET ?",
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
        for r in conn.execute(
            "SELECT id FROM runs WHERE name = ? AND "
            + ("source_key NOT LIKE 'merged:%'" if removed else "deleted_at IS NULL"),
            (ref,),
        )
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


def _metric_window(
    store: Store,
    join: str,
    join_args: list[Any],
    where: str,
    args: list[Any],
    direction: str,
    offset: int,
    limit: int,
) -> list[str] | None:
    """A window sorted by one metric tag, read along the ``(tag, last)`` index (the
    lab's notebook: a million runs are never joined and sorted whole).

    Runs without the metric sort last, so when the runs that have it fill the
    window, the window is theirs: an inner join walked in index order (ties newest
    first, sorted a value at a time) and cut at the window. None when it does not
    fill it (the caller's outer join then reads past them)."""
    inner = join.replace(" LEFT JOIN ", " JOIN ", 1)
    rows = store.conn.execute(
        f"SELECT r.id FROM runs r{inner}{where} ORDER BY s.last {direction},"
        f" {store.dialect.newest_first('r.')} LIMIT ? OFFSET ?",
        [*join_args, *args, int(limit), max(0, int(offset))],
    ).fetchall()
    if len(rows) < limit:
        return None
    return [row[0] for row in rows]


#: Sort keys that are run columns, besides :data:`RUN_FIELDS`.
_SORT_EXTRA = {
    "duration": "(julianday(r.ended_at) - julianday(r.started_at))",
    "started": "coalesce(r.started_at, r.created_at)",
}


def filter_sql(store: Store, flt: RunFilter, *, all_rows: bool = False) -> tuple[str, list[Any]]:
    """The WHERE clause (or "") and its arguments for ``flt``, as :func:`select_runs` builds it."""
    clauses: list[str] = []
    args: list[Any] = []
    if not flt.include_deleted:
        clauses.append(store.dialect.live("r."))
    if flt.archived == "hide":
        clauses.append("r.archived_at IS NULL")
    elif flt.archived == "only":
        clauses.append("r.archived_at IS NOT NULL")
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
        sql, more = _condition_sql(
            store, cond, all_rows=all_rows, strict=flt.strict, metric_names=flt.metric_names
        )
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
    where, args = filter_sql(store, flt, all_rows=True)
    if cap is None:
        sql = f"SELECT count(*) FROM runs r{where}"
    else:
        sql = f"SELECT count(*) FROM (SELECT 1 FROM runs r{where} LIMIT {int(cap) + 1}) AS c"
    return int(store.conn.execute(sql, args).fetchone()[0])


def _sort_sql(
    store: Store, flt: RunFilter, sort: str, direction: str
) -> tuple[str, list[Any], str, list[Any]]:
    """(join, its arguments, ORDER BY keys, their arguments) that order runs by
    ``sort`` in ``direction`` (ASC or DESC), runs without a value last."""
    d = store.dialect
    if sort in RUN_FIELDS or sort in _SORT_EXTRA:
        if sort == "duration":
            expr = d.days("r.ended_at", "r.started_at")
        elif sort == "seed":
            expr = d.to_real("r.seed_value")
        elif sort == "started":
            expr = _SORT_EXTRA[sort]
        else:
            expr = RUN_FIELDS[sort]
            return "", [], f"{expr} IS NULL, {d.bytes_order(expr)} {direction}", []
        return "", [], f"({expr}) IS NULL, {expr} {direction}", []
    kind, tags = _resolve_key(store, sort, flt.metric_names, strict=flt.strict)
    if kind == "metric" and len(tags) == 1:
        join = " LEFT JOIN metrics s ON s.run_id = r.id AND s.tag = ?"
        return join, [tags[0]], f"s.last IS NULL, s.last {direction}", []
    if kind == "metric":  # the run's preferred tag of the group, as ls shows it
        marks = ",".join("?" for _ in tags)
        rank, rank_args = _rank_case("s.tag", tags)
        expr = (
            f"(SELECT s.last FROM metrics s WHERE s.run_id = r.id AND s.tag IN ({marks})"
            f" ORDER BY {rank} LIMIT 1)"
        )
        return "", [], f"({expr}) IS NULL, {expr} {direction}", [*tags, *rank_args] * 2
    join = " LEFT JOIN params s ON s.run_id = r.id AND s.key = ?"
    null, keys = d.param_order("s", direction)
    return join, [sort], f"{null}, {keys}", []


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
    ``duration``, ``metrics.TAG`` (last value) or a config key (a metric when no run
    has that config key; with ``flt.metric_names`` a metric name such as ``val_loss``
    sorts by each run's preferred tag for it; with ``flt.strict`` a key that nothing
    has raises QueryError); runs without a value sort last either way, ties newest
    first. A negative ``limit``: no limit. Only ids are sorted; the window's rows
    are read afterwards, so a sort by a metric never drags whole rows through it.
    """
    where, args = filter_sql(store, flt)
    join = ""
    join_args: list[Any] = []
    order = ""
    order_args: list[Any] = []
    ids: list[str] | None = None
    if sort:
        direction = "DESC" if descending else "ASC"
        join, join_args, order, order_args = _sort_sql(store, flt, sort, direction)
        if store.dialect.shared and join.startswith(" LEFT JOIN metrics s") and limit >= 0:
            ids = _metric_window(store, join, join_args, where, args, direction, offset, limit)
        order += ", "
    order += store.dialect.newest_first("r.")
    if ids is None:
        ids = [
            row[0]
            for row in store.conn.execute(
                f"SELECT r.id FROM runs r{join}{where} ORDER BY {order} LIMIT ? OFFSET ?",
                [
                    *join_args,
                    *args,
                    *order_args,
                    store.dialect.limit_arg(limit),
                    max(0, int(offset)),
                ],
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
