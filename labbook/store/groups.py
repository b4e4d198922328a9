"""Seed groups and sweeps, as the store keeps them (schema step ``0013_groups``).

**A seed group** is the runs of one experiment apart from the seed: the same
repository (the git remote, else the main git work tree, else the directory the run
started in), the same entry point (:func:`labbook.capture.command.entry_point`;
a Hydra job by its file name, as Hydra records only the job name) and the same
config apart from seed-like and output-like keys (``runs.config_sig``,
:mod:`labbook.store.configsig`). :func:`group_key` is a digest of those three,
stored with each run (``runs.group_key``, indexed), so that the members of a
group, or the size of every group on a page, are one index lookup. A run with
neither a config nor a known entry point cannot be told apart from unrelated
runs: it is a group of its own (:func:`own_group_key`). A group's id, as the CLI
and ``--json`` show it, is ``g`` and the first 8 hex digits of its key.

**A sweep** is the runs launched together: a Hydra multirun directory
(``multirun/DATE/TIME``), a wandb sweep id, an MLflow parent run, or the replicas
``labbook replicate`` launched (``LABBOOK_SWEEP``). Each run has at most one,
``runs.sweep_kind`` (``hydra``, ``wandb``, ``mlflow``, ``replicate``) and
``runs.sweep_id`` (the directory, the sweep id, the parent's run id, the id
replicate chose), set by the recogniser or launch that recorded it. A sweep's id
as shown is ``s`` and 8 hex digits of a digest of both (:func:`sweep_short_id`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from labbook.capture.command import entry_point
from labbook.capture.git import main_worktree
from labbook.model import GroupRecord

if TYPE_CHECKING:
    from labbook.store.query import RunFilter
    from labbook.store.sqlite import Store

#: Kinds of sweep (``runs.sweep_kind``).
SWEEP_KINDS = ("hydra", "wandb", "mlflow", "replicate")
#: Digits of the key a group id shows.
SHORT = 8
_GROUP_ID = re.compile(r"^g([0-9a-f]{4,32})$")
_SWEEP_ID = re.compile(r"^s([0-9a-f]{4,16})$")


def _digest(*parts: Any) -> str:
    text = json.dumps(parts, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def group_key(
    *,
    framework: str | None,
    command: Sequence[str] | None,
    cwd: str | None,
    git_root: str | None,
    git_remote: str | None,
    config_sig: str | None,
) -> str | None:
    """The seed-group key of a run (see the module docstring); None: a group of its own."""
    entry = None
    if command:
        try:
            ep = entry_point(list(command), cwd, git_root or None)
        except Exception:  # an odd argv never stops a save
            ep = None
        if ep is not None:
            entry = os.path.basename(ep.key) if framework == "hydra" else ep.key
    if entry is None and config_sig is None:
        return None
    repo = git_remote or (main_worktree(git_root) if git_root else None) or cwd or None
    return _digest("seed", repo, entry, config_sig)


def own_group_key(run_id: str) -> str:
    """The key of a run that is a group of its own."""
    return _digest("run", run_id)


def row_group_key(row: dict[str, Any]) -> str:
    """:func:`group_key` of a ``runs`` row (its ``command`` JSON), else its own."""
    try:
        command = json.loads(row["command"]) if row.get("command") else None
    except ValueError:
        command = None
    key = group_key(
        framework=row.get("framework"),
        command=command if isinstance(command, list) else None,
        cwd=row.get("cwd"),
        git_root=row.get("git_root"),
        git_remote=row.get("git_remote"),
        config_sig=row.get("config_sig"),
    )
    return key or own_group_key(str(row["id"]))


def group_id(key: str | None) -> str | None:
    """The id a group is shown by: ``g`` + 8 hex digits of its key."""
    return "g" + key[:SHORT] if key else None


def sweep_short_id(kind: str | None, sweep: str | None) -> str | None:
    """The id a sweep is shown by: ``s`` + 8 hex digits of its kind and id."""
    if not kind or not sweep:
        return None
    return "s" + _digest("sweep", kind, sweep)[:SHORT]


def backfill(conn: Any) -> None:
    """Set ``group_key`` of every run that has none (the migration; idempotent)."""
    cur = conn.execute(
        "SELECT id, framework, command, cwd, git_root, git_remote, config_sig FROM runs"
        " WHERE group_key IS NULL"
    )
    cols = [d[0] for d in cur.description]
    updates = [(row_group_key(dict(zip(cols, r, strict=True))), r[0]) for r in cur.fetchall()]
    conn.executemany("UPDATE runs SET group_key = ? WHERE id = ?", updates)


# -- reads ----------------------------------------------------------------------------------

#: The columns a grouped listing reads of every matching run (not whole rows).
LIGHT = "r.id, r.group_key, r.sweep_kind, r.sweep_id, r.status"


def light_rows(store: Store, flt: RunFilter) -> list[tuple[str, str, str | None, str | None, str]]:
    """``(id, group_key, sweep_kind, sweep_id, status)`` of every run matching ``flt``
    (its limit ignored), newest first: one scan of the listing index."""
    from labbook.store.query import filter_sql

    where, args = filter_sql(store, flt)
    sql = f"SELECT {LIGHT} FROM runs r{where} ORDER BY " + store.dialect.newest_first("r.")
    return [
        (r[0], r[1] or own_group_key(r[0]), r[2], r[3], r[4]) for r in store.conn.execute(sql, args)
    ]


def group_sizes(store: Store, keys: Sequence[str]) -> dict[str, int]:
    """How many live runs each group of ``keys`` has (one indexed count per batch)."""
    out: dict[str, int] = {}
    keys = list(dict.fromkeys(k for k in keys if k))
    for i in range(0, len(keys), 500):
        part = keys[i : i + 500]
        marks = ",".join("?" for _ in part)
        for key, n in store.conn.execute(
            f"SELECT group_key, count(*) FROM runs r WHERE group_key IN ({marks})"
            f" AND {store.dialect.live('r.')} GROUP BY group_key",
            part,
        ):
            out[key] = int(n)
    return out


def sweep_sizes(store: Store, sweeps: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """How many live runs each ``(kind, id)`` sweep has."""
    out: dict[tuple[str, str], int] = {}
    for kind, sweep in dict.fromkeys(sweeps):
        row = store.conn.execute(
            "SELECT count(*) FROM runs r WHERE sweep_kind = ? AND sweep_id = ?"
            f" AND {store.dialect.live('r.')}",
            (kind, sweep),
        ).fetchone()
        out[(kind, sweep)] = int(row[0])
    return out


def member_ids(store: Store, key: str) -> list[str]:
    """The live runs of the group ``key``, newest first."""
    return [
        r[0]
        for r in store.conn.execute(
            f"SELECT r.id FROM runs r WHERE r.group_key = ? AND {store.dialect.live('r.')}"
            " ORDER BY " + store.dialect.newest_first("r."),
            (key,),
        )
    ]


def sweep_member_ids(store: Store, kind: str, sweep: str) -> list[str]:
    """The live runs of a sweep, newest first."""
    return [
        r[0]
        for r in store.conn.execute(
            "SELECT r.id FROM runs r WHERE r.sweep_kind = ? AND r.sweep_id = ?"
            f" AND {store.dialect.live('r.')} ORDER BY " + store.dialect.newest_first("r."),
            (kind, sweep),
        )
    ]


def resolve_group(store: Store, ref: str) -> str | None:
    """The key of the group ``ref`` names (``g`` + a prefix of its key), or None."""
    m = _GROUP_ID.match(ref.strip().lower())
    if not m:
        return None
    prefix = m[1]
    rows = [
        r[0]
        for r in store.conn.execute(
            "SELECT DISTINCT group_key FROM runs WHERE group_key >= ? AND group_key < ? LIMIT 2",
            (prefix, prefix + "g"),
        )
    ]
    if len(rows) > 1:
        from labbook.errors import UsageError

        raise UsageError(f"group id {ref} names more than one group", hint="give more digits")
    return rows[0] if rows else None


def sweeps(store: Store) -> list[tuple[str, str]]:
    """Every ``(kind, id)`` sweep with a live run, the newest sweep first."""
    seen: dict[tuple[str, str], None] = {}
    for kind, sweep in store.conn.execute(
        "SELECT r.sweep_kind, r.sweep_id FROM runs r WHERE r.sweep_id IS NOT NULL"
        f" AND {store.dialect.live('r.')} ORDER BY " + store.dialect.newest_first("r.")
    ):
        seen.setdefault((kind, sweep), None)
    return list(seen)


def resolve_sweep(store: Store, ref: str) -> tuple[str, str] | None:
    """The sweep ``ref`` names: its short id (``s…``), its own id (a wandb sweep id, a
    Hydra multirun directory, an MLflow parent run id, a replicate id); None: no sweep."""
    text = ref.strip()
    m = _SWEEP_ID.match(text.lower())
    all_sweeps = sweeps(store)
    if m:
        found = [s for s in all_sweeps if (sweep_short_id(*s) or "").startswith("s" + m[1])]
        if found:
            return found[0]
    for kind, sweep in all_sweeps:
        if text == sweep or (
            kind == "hydra" and os.path.normpath(os.path.abspath(text)) == os.path.normpath(sweep)
        ):
            return kind, sweep
    return None


def group_fields(
    store: Store, rows: Sequence[dict[str, Any]]
) -> dict[str, tuple[GroupRecord, GroupRecord | None]]:
    """``group`` and ``sweep`` of each run of ``rows`` as ``--json`` has them (run id ->
    both): a count per page of groups, one per sweep."""
    keys = {r["id"]: r.get("group_key") or own_group_key(r["id"]) for r in rows}
    sizes = group_sizes(store, list(keys.values()))
    pairs = [
        (r["sweep_kind"], r["sweep_id"]) for r in rows if r.get("sweep_kind") and r.get("sweep_id")
    ]
    swept = sweep_sizes(store, pairs) if pairs else {}
    out: dict[str, tuple[GroupRecord, GroupRecord | None]] = {}
    for r in rows:
        key = keys[r["id"]]
        group: GroupRecord = {"kind": "seed", "id": "g" + key[:SHORT], "size": sizes.get(key, 1)}
        sweep: GroupRecord | None = None
        kind, sid = r.get("sweep_kind"), r.get("sweep_id")
        if kind and sid:
            sweep = {
                "kind": kind,
                "id": sweep_short_id(kind, sid) or "",
                "size": swept.get((kind, sid), 1),
            }
        out[r["id"]] = (group, sweep)
    return out


def rows_by_ids(store: Store, ids: Sequence[str]) -> list[dict[str, Any]]:
    """Whole ``runs`` rows of ``ids``, in that order (missing ones left out)."""
    found: dict[str, dict[str, Any]] = {}
    for i in range(0, len(ids), 500):
        part = list(ids[i : i + 500])
        marks = ",".join("?" for _ in part)
        cur = store.conn.execute(f"SELECT r.* FROM runs r WHERE r.id IN ({marks})", part)
        cols = [d[0] for d in cur.description]
        for row in cur.fetchall():
            rec = dict(zip(cols, row, strict=False))
            found[rec["id"]] = rec
    return [found[i] for i in ids if i in found]


def group_keys(store: Store, ids: Sequence[str]) -> dict[str, str]:
    """Run id -> its group key (a run without one: its own)."""
    out: dict[str, str] = {}
    for i in range(0, len(ids), 500):
        part = list(ids[i : i + 500])
        marks = ",".join("?" for _ in part)
        for rid, key in store.conn.execute(
            f"SELECT id, group_key FROM runs WHERE id IN ({marks})", part
        ):
            out[rid] = key or own_group_key(rid)
    for rid in ids:
        out.setdefault(rid, own_group_key(rid))
    return out
