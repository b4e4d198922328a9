"""Seed groups and sweeps folded into rows, and two seed groups compared.

A *seed group* is the runs of one experiment apart from the seed (the same
repository, entry point and config apart from seed-like and output-like keys:
:mod:`labbook.store.groups`); a *sweep* is the runs launched together (a Hydra
multirun, a wandb sweep, an MLflow parent run, ``labbook replicate``), whose
*points* are the seed groups among its runs.

**Folding** (:func:`fold`) a group gives its size ``n``, its status breakdown and,
per metric, the ``n``, ``mean``, ``std`` (sample, n - 1), ``min`` and ``max`` of the
members' final values, and the best member by the *primary* metric (the first
key metric, :func:`labbook.analysis.metrics.key_columns`; lower is better for
losses, higher for accuracies: :func:`labbook.analysis.metrics.metric_direction`).
Only members that finished (or whose status is unknown) count in the statistics,
as for the seed noise of ``labbook diff``: a failed, diverged or killed run's
last value says how it broke, a running one's is not final. Non-finite values
do not count either.

**Comparing** (:func:`compare_groups`) two groups is Welch's t-test per metric,
as ``labbook diff`` sets a delta against two seed groups
(:func:`labbook.analysis.diff.welch_noise`): the difference of the means (B - A),
the half-width of its 95% interval, ``p`` and the degrees of freedom. The verdict
(:func:`verdict`) is ``"b"`` or ``"a"`` (that group is better: the interval
leaves out 0, in the metric's direction), ``"higher"``/``"lower"`` (B's mean is,
for a metric without a direction), ``"noise"`` (not distinguishable from seed
noise), ``"constant"`` or ``"too_few"`` (a group with fewer than 2 values).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from labbook.analysis.diff import UNCOUNTED, replicate_hint, verdict, welch_noise
from labbook.analysis.metrics import key_columns, metric_column, metric_direction
from labbook.model import STATUSES, RunRecord
from labbook.readers.values import finite_number
from labbook.store.configsig import outside_signature

if TYPE_CHECKING:
    from labbook.store import Store
    from labbook.store.query import RunFilter


def counted(records: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The members whose final values count (see the module docstring)."""
    return [r for r in records if r.get("status") not in UNCOUNTED]


def finals(records: Sequence[Mapping[str, Any]], column: str) -> list[tuple[str, float]]:
    """``(run id, final value)`` of ``column`` (a metric name or tag) over the counted
    members that have a finite one."""
    out = []
    for r in counted(records):
        found = metric_column(r.get("metrics") or {}, column)
        value = finite_number(found[1].get("last")) if found else None
        if value is not None:
            out.append((str(r["id"]), value))
    return out


def summary(values: Sequence[float]) -> dict[str, Any]:
    """``n``, ``mean``, ``std`` (None below 2 values), ``min``, ``max`` of ``values``."""
    if not values:
        return {"n": 0, "mean": None, "std": None, "min": None, "max": None}
    # Two passes in floats (math.fsum), not statistics.stdev: that one computes in exact
    # fractions, and folding 4,000 groups spent half its time there.
    n = len(values)
    mean = math.fsum(values) / n
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
    return {
        "n": n,
        "mean": mean,
        "std": std,
        "min": min(values),
        "max": max(values),
    }


def statuses(records: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """How many members have each status, in the order of :data:`labbook.model.STATUSES`."""
    counts: dict[str, int] = {}
    for r in records:
        counts[str(r.get("status"))] = counts.get(str(r.get("status")), 0) + 1
    order = {s: i for i, s in enumerate(STATUSES)}
    return dict(sorted(counts.items(), key=lambda kv: (order.get(kv[0], 99), kv[0])))


def status_text(counts: Mapping[str, int]) -> str:
    """``"3 finished, 2 diverged"``."""
    return ", ".join(f"{n} {s}" for s, n in counts.items())


def metric_columns(records: Sequence[Mapping[str, Any]], limit: int = 6) -> list[str]:
    """The metrics a folded row shows: the key metrics of the members (canonical names)."""
    return key_columns(records, limit=limit)


def group_name(rec: Mapping[str, Any]) -> str | None:
    """A group's name: its newest run's, the seed left out (``train seed=5 lr=0.1`` is
    ``train lr=0.1``)."""
    name = rec.get("name")
    seed = (rec.get("seed") or {}).get("value")
    if not name or seed is None:
        return name
    pattern = rf"[\s_,-]*\b(?:random_|data_)?seed[=:_-]?{re.escape(str(seed))}\b"
    return re.sub(pattern, "", name, flags=re.I).strip(" _,-") or name


def _best(records: Sequence[Mapping[str, Any]], column: str | None) -> dict[str, Any] | None:
    if column is None:
        return None
    direction = metric_direction(column)
    values = finals(records, column)
    if not values or direction is None:
        return None
    pick = min if direction == "min" else max
    rid, value = pick(values, key=lambda iv: iv[1])
    name = next((r.get("name") for r in records if r["id"] == rid), None)
    return {"id": rid, "name": name, "metric": column, "value": value}


def fold(
    records: Sequence[RunRecord],
    *,
    kind: str,
    group_id: str,
    columns: Sequence[str] | None = None,
) -> dict[str, Any]:
    """One group as one row (the ``ls --group --json`` object); ``records``: its
    members, newest first; ``columns``: the metrics to summarise (default: theirs)."""
    cols = list(columns) if columns is not None else metric_columns(records)
    primary = next((c for c in cols if metric_direction(c)), cols[0] if cols else None)
    newest = records[0] if records else None
    return {
        "kind": kind,
        "id": group_id,
        "size": len(records),
        "name": group_name(newest) if newest else None,
        "statuses": statuses(records),
        "started_at": newest.get("started_at") if newest else None,
        "metrics": {c: summary([v for _, v in finals(records, c)]) for c in cols},
        "primary": primary,
        "direction": metric_direction(primary) if primary else None,
        "best": _best(records, primary),
        "members": [r["id"] for r in records],
    }


# -- sweeps ---------------------------------------------------------------------------------


def swept_keys(points: Sequence[Sequence[Mapping[str, Any]]]) -> list[str]:
    """The config keys whose values differ across the points of a sweep (each point a
    list of member records), seed-like and output-like keys left out, in the order
    they first appear."""
    seen: dict[str, set[str]] = {}
    order: list[str] = []
    for members in points:
        config = (members[0].get("config") or {}) if members else {}
        for key in config:
            if outside_signature(key):
                continue
            if key not in seen:
                seen[key] = set()
                order.append(key)
    for key in order:
        for members in points:
            config = (members[0].get("config") or {}) if members else {}
            seen[key].add(repr(config.get(key, _MISSING)))
    return [k for k in order if len(seen[k]) > 1]


_MISSING = object()


def sweep_view(
    points: Sequence[tuple[str, Sequence[RunRecord]]],
    *,
    kind: str,
    sweep_id: str,
    source: str,
    columns: Sequence[str] | None = None,
) -> dict[str, Any]:
    """A sweep as a table (the ``ls --sweep --json`` object): its swept keys, and one
    row per point (a seed group among its runs: ``(group id, members)``), folded."""
    everyone = [r for _, members in points for r in members]
    cols = list(columns) if columns is not None else metric_columns(everyone, limit=4)
    keys = swept_keys([m for _, m in points])
    rows = []
    for gid, members in points:
        row = fold(members, kind="seed", group_id=gid, columns=cols)
        config = (members[0].get("config") or {}) if members else {}
        row["params"] = {k: config.get(k) for k in keys}
        rows.append(row)
    primary = next((c for c in cols if metric_direction(c)), cols[0] if cols else None)
    best = None
    if primary is not None and metric_direction(primary):
        scored = [r for r in rows if r["metrics"][primary]["mean"] is not None]
        if scored:
            pick = min if metric_direction(primary) == "min" else max
            best = pick(scored, key=lambda r: r["metrics"][primary]["mean"])["id"]
    return {
        "kind": kind,
        "id": sweep_id,
        "source": source,
        "size": len(everyone),
        "swept": keys,
        "metrics": cols,
        "primary": primary,
        "best_point": best,
        "points": rows,
    }


# -- two groups compared ------------------------------------------------------------------------


def compare_metric(a: Sequence[float], b: Sequence[float], direction: str | None) -> dict[str, Any]:
    """One metric of two groups (final values ``a`` and ``b``): both groups' summaries,
    the Welch test of B - A when each has 2 values, and the verdict."""
    out: dict[str, Any] = {"direction": direction, "a": summary(a), "b": summary(b)}
    if len(a) >= 2 and len(b) >= 2:
        noise = welch_noise(list(a), list(b))
        out.update(
            difference=noise.get("difference"),
            interval=noise.get("interval"),
            p=noise.get("p"),
            df=noise.get("df"),
            test="welch",
        )
        out["verdict"] = verdict(noise, direction)
    else:
        ma, mb = out["a"]["mean"], out["b"]["mean"]
        out.update(
            difference=mb - ma if ma is not None and mb is not None else None,
            interval=None,
            p=None,
            df=None,
            test=None,
            verdict="too_few",
        )
    return out


def compare_groups(
    a: Mapping[str, Any],
    b: Mapping[str, Any],
    a_members: Sequence[RunRecord],
    b_members: Sequence[RunRecord],
    *,
    metrics: Sequence[str] | None = None,
) -> dict[str, Any]:
    """``labbook compare --group A B --json``: ``a`` and ``b`` (``{kind, id, size, ref,
    statuses, members}``) and ``metrics`` (name -> :func:`compare_metric` and ``hint``,
    the replicate commands that would decide a verdict of noise or too few)."""
    if metrics is None:
        both = [*a_members, *b_members]
        names = key_columns(both, limit=1000)
        have_a = {n for n in names if finals(a_members, n)}
        have_b = {n for n in names if finals(b_members, n)}
        metrics = [n for n in names if n in have_a and n in have_b]
    out_metrics: dict[str, Any] = {}
    for name in metrics:
        va = [v for _, v in finals(a_members, name)]
        vb = [v for _, v in finals(b_members, name)]
        entry = compare_metric(va, vb, metric_direction(name))
        hints = []
        if entry["verdict"] in ("noise", "too_few"):
            hints = [
                h
                for h in (
                    replicate_hint(str(a["ref"]), len(va)),
                    replicate_hint(str(b["ref"]), len(vb)),
                )
                if h
            ]
        entry["hint"] = hints
        out_metrics[name] = entry
    return {
        "a": {**a, "statuses": statuses(a_members), "members": [r["id"] for r in a_members]},
        "b": {**b, "statuses": statuses(b_members), "members": [r["id"] for r in b_members]},
        "metrics": out_metrics,
    }


# -- the store side -------------------------------------------------------------------------


def records_of(store: Store, ids: Sequence[str]) -> list[RunRecord]:
    """The light records of ``ids``, in that order."""
    from labbook.store.groups import rows_by_ids

    return store.records(rows_by_ids(store, ids), heavy=False)


def grouped(
    store: Store, flt: RunFilter, *, group: str | None = None
) -> tuple[list[tuple[str, list[RunRecord]]], int]:
    """The seed groups of the runs matching ``flt`` (each ``(group id, members)``, the
    group with the newest run first, members newest first), at most ``flt.limit``
    groups, and how many groups match in all. ``group``: only that group's key."""
    from labbook.store.groups import group_id, light_rows

    by_key: dict[str, list[str]] = {}
    for rid, key, _kind, _sweep, _status in light_rows(store, flt):
        if group is None or key == group:
            by_key.setdefault(key, []).append(rid)
    keys = list(by_key)
    total = len(keys)
    if flt.limit:
        keys = keys[: flt.limit]
    ids = [rid for k in keys for rid in by_key[k]]
    recs = {r["id"]: r for r in records_of(store, ids)}
    return [(group_id(k) or "", [recs[i] for i in by_key[k] if i in recs]) for k in keys], total


def sweep_points(
    store: Store, kind: str, sweep: str, ids: Sequence[str] | None = None
) -> list[tuple[str, list[RunRecord]]]:
    """The points of a sweep: its runs (``ids``, newest first, when given) by seed
    group, in the order the points were first run."""
    from labbook.store.groups import group_id, sweep_member_ids

    if ids is None:
        ids = sweep_member_ids(store, kind, sweep)
    recs = records_of(store, ids)
    keys = dict(zip(ids, _keys_of(store, ids), strict=True))
    points: dict[str, list[RunRecord]] = {}
    for r in reversed(recs):  # oldest first: the order the sweep ran them
        points.setdefault(keys[r["id"]], []).insert(0, r)
    return [(group_id(k) or "", members) for k, members in points.items()]


def _keys_of(store: Store, ids: Sequence[str]) -> list[str]:
    from labbook.store.groups import group_keys

    found = group_keys(store, ids)
    return [found[i] for i in ids]


def group_members(store: Store, ref: str) -> tuple[str, str, list[RunRecord]]:
    """``(group id, the run or group id it was named by, members)`` of the seed group
    ``ref`` names: a group id (``g…``) or a run (its seed group)."""
    from labbook.errors import RunNotFound
    from labbook.store.groups import group_id, member_ids, resolve_group
    from labbook.store.query import resolve

    key = resolve_group(store, ref)
    named: str | None = None
    if key is None:
        try:
            named = resolve(store, ref)
        except RunNotFound as exc:
            raise RunNotFound(f"no run or group {ref}", hint=exc.hint) from None
        key = _keys_of(store, [named])[0]
    members = records_of(store, member_ids(store, key))
    if named is None:  # replicate takes a run: the group's newest stands for it
        named = members[0]["id"] if members else ref
    return group_id(key) or "", named, members
