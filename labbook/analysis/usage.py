"""``labbook usage``: what runs did with their GPUs, from what ``labbook watch`` recorded.

A run's ``gpu`` record (:class:`labbook.capture.gpu.GpuAccumulator`'s summary, with its
per-GPU series) gives, per GPU it held: its name, capacity, the run's peak memory
there, its mean utilisation and power, and the utilisation samples (at most
:data:`labbook.series.MAX_POINTS` a GPU). From them, per group of runs:

* **GPU-hours**: the run's wall time (``ended_at - started_at``; a run without an
  end, running or not: until its last GPU sample, so a run left "running" after its
  node died stops adding hours; a running run with no sample time: until now) times
  the GPUs it held, summed;
* **lost**: the GPU-hours of runs that ended failed, diverged or killed;
* **median utilisation**: the utilisation below which half the GPU time was spent:
  each recorded sample stands for an equal share of its GPU's hours (a GPU without
  samples: its mean, for all its hours);
* **peak memory** against capacity: the largest memory one run held on one GPU, and
  that GPU's memory (``31 of 80 GiB``);
* **energy** (kWh): each GPU's mean power times its hours, over GPUs whose NVML gave
  power (None when none did);
* **idle**: runs that held a GPU at a mean utilisation under :data:`IDLE_PCT` percent
  (any of their GPUs), counted and named, the most GPU-hours so held first;
* runs with no GPU samples (no GPU, or not watched) are counted apart.

Pure over run rows (the store's, or ``--json`` records): it never writes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

#: What ``--by`` groups by.
GROUPINGS = ("user", "host", "repo", "status", "gpu")
#: Statuses whose GPU-hours count as lost.
LOST_STATUSES = ("failed", "diverged", "killed")
#: A run whose GPUs' mean utilisation is under this (percent) held them idle.
IDLE_PCT = 10.0
#: Idle runs named per group.
TOP_IDLE = 3
#: The key of the total.
TOTAL = "(total)"
#: The key of a run without the field grouped by.
NONE_KEY = "(none)"


@dataclass
class DeviceUsage:
    """One GPU as one run held it."""

    name: str
    hours: float
    util_samples: list[float]
    mean_util_pct: float | None
    peak_memory_mib: float | None
    memory_total_mib: float | None
    mean_power_w: float | None


@dataclass
class RunUsage:
    """One run's GPU use (``devices`` empty: no GPU samples)."""

    id: str
    status: str
    keys: dict[str, str]
    wall_hours: float
    devices: list[DeviceUsage]

    @property
    def gpu_hours(self) -> float:
        return sum(d.hours for d in self.devices)


@dataclass
class Group:
    """What a group of runs did with GPUs; :meth:`as_dict` is its ``--format json`` object."""

    key: str
    run_ids: set[str] = field(default_factory=set)
    without_gpu: int = 0
    gpu_hours: float = 0.0
    lost_gpu_hours: float = 0.0
    energy_kwh: float | None = None
    peak_memory_mib: float | None = None
    memory_total_mib: float | None = None
    #: (utilisation, GPU-hours it stands for)
    util: list[tuple[float, float]] = field(default_factory=list)
    #: run id -> (GPU-hours, mean utilisation) of the GPUs a run held under IDLE_PCT
    idle: dict[str, tuple[float, float]] = field(default_factory=dict)

    def add(self, run: RunUsage, devices: list[DeviceUsage]) -> None:
        if not devices:
            self.without_gpu += 1
            return
        self.run_ids.add(run.id)
        hours = sum(d.hours for d in devices)
        self.gpu_hours += hours
        if run.status in LOST_STATUSES:
            self.lost_gpu_hours += hours
        for d in devices:
            if d.mean_power_w is not None:
                self.energy_kwh = (self.energy_kwh or 0.0) + d.mean_power_w * d.hours / 1000.0
            if d.peak_memory_mib is not None and (
                self.peak_memory_mib is None or d.peak_memory_mib > self.peak_memory_mib
            ):
                self.peak_memory_mib = d.peak_memory_mib
                self.memory_total_mib = d.memory_total_mib
            if d.util_samples:
                share = d.hours / len(d.util_samples)
                self.util.extend((u, share) for u in d.util_samples)
            elif d.mean_util_pct is not None:
                self.util.append((d.mean_util_pct, d.hours))
        idle = [d for d in devices if d.mean_util_pct is not None and d.mean_util_pct < IDLE_PCT]
        if idle:
            least = min(d.mean_util_pct for d in idle if d.mean_util_pct is not None)
            old_hours, old_least = self.idle.get(run.id, (0.0, least))
            self.idle[run.id] = (old_hours + sum(d.hours for d in idle), min(least, old_least))

    @property
    def median_util_pct(self) -> float | None:
        return weighted_median(self.util)

    def idle_ids(self, n: int | None = TOP_IDLE) -> list[str]:
        """The idle runs, the most GPU-hours first (``n``: at most this many)."""
        ranked = sorted(self.idle, key=lambda r: (-self.idle[r][0], r))
        return ranked if n is None else ranked[:n]

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "runs": len(self.run_ids),
            "runs_without_gpu_samples": self.without_gpu,
            "gpu_hours": self.gpu_hours,
            "lost_gpu_hours": self.lost_gpu_hours,
            "median_util_pct": self.median_util_pct,
            "peak_memory_mib": self.peak_memory_mib,
            "memory_total_mib": self.memory_total_mib,
            "energy_kwh": self.energy_kwh,
            "idle_runs": len(self.idle),
            "idle_run_ids": self.idle_ids(None),
        }


@dataclass
class Usage:
    """The groups (in order: most GPU-hours first) and the total of them all."""

    by: str | None
    groups: list[Group]
    total: Group
    since: str | None = None


def weighted_median(values: Iterable[tuple[float, float]]) -> float | None:
    """The smallest value at or below which half the weight lies (None: no weight)."""
    pairs = sorted((v, w) for v, w in values if w > 0)
    if not pairs:
        pairs = sorted((v, 1.0) for v, _ in values)  # all zero weight: plain median
        if not pairs:
            return None
    half = sum(w for _, w in pairs) / 2.0
    acc = 0.0
    for v, w in pairs:
        acc += w
        if acc >= half - 1e-12 * half:
            return v
    return pairs[-1][0]


def _epoch(value: Any) -> float | None:
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _repo(row: Mapping[str, Any]) -> str | None:
    git = row.get("git")
    if isinstance(git, Mapping):
        remote, root = git.get("remote"), git.get("root")
    else:
        remote, root = row.get("git_remote"), row.get("git_root")
    if remote:
        text = str(remote).rstrip("/")
        return text[:-4] if text.endswith(".git") else text
    return str(root) if root else None


def run_usage(row: Mapping[str, Any], *, now: float | None = None) -> RunUsage:
    """One run's GPU use, from its store row or its ``--json`` record."""
    raw = row.get("gpu")
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raw = None
    gpu: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    status = str(row.get("status") or "unknown")
    start = _epoch(row.get("started_at"))
    if start is None:
        start = _epoch(gpu.get("first_at"))
    end = _epoch(row.get("ended_at"))
    if end is None:
        # A run with no end: its last GPU sample (the daemon samples a live run every
        # few seconds, so a run left "running" after its node died stops counting
        # there); a running run not sampled yet: until now.
        end = _epoch(gpu.get("last_at"))
    if end is None and status == "running":
        end = now if now is not None else time.time()
    wall = max(0.0, end - start) / 3600.0 if start is not None and end is not None else 0.0
    found = gpu.get("series")
    series: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
    devices = []
    for d in gpu.get("devices") or []:
        if not isinstance(d, Mapping):
            continue
        index = d.get("index")
        rows = series.get(f"gpu{index}/util_pct") or []
        samples = [
            float(r[1]) for r in rows if isinstance(r, list | tuple) and len(r) > 1 and _num(r[1])
        ]
        devices.append(
            DeviceUsage(
                name=str(d.get("name") or f"GPU {index}"),
                hours=wall,
                util_samples=samples,
                mean_util_pct=_float(d.get("mean_util_pct")),
                peak_memory_mib=_float(d.get("peak_memory_mib")),
                memory_total_mib=_float(d.get("memory_total_mib")),
                mean_power_w=_float(d.get("mean_power_w")),
            )
        )
    keys = {
        "user": row.get("user"),
        "host": row.get("host"),
        "repo": _repo(row),
        "status": status,
    }
    return RunUsage(
        id=str(row.get("id")),
        status=status,
        keys={k: str(v) if v else NONE_KEY for k, v in keys.items()},
        wall_hours=wall,
        devices=devices,
    )


def _num(v: Any) -> bool:
    return (
        isinstance(v, int | float) and not isinstance(v, bool) and v == v and abs(v) != float("inf")
    )


def _float(v: Any) -> float | None:
    return float(v) if _num(v) else None


def usage(
    rows: Iterable[Mapping[str, Any]],
    by: str | None = None,
    *,
    now: float | None = None,
    since: str | None = None,
) -> Usage:
    """What ``rows`` (runs) did with GPUs, grouped ``by`` one of :data:`GROUPINGS`
    (None: the total only). ``gpu`` groups each GPU's hours by its name (a run on two
    kinds of GPU is in both groups, once in the total)."""
    if by is not None and by not in GROUPINGS:
        raise ValueError(by)
    total = Group(TOTAL)
    groups: dict[str, Group] = {}
    for row in rows:
        run = run_usage(row, now=now)
        total.add(run, run.devices)
        if by is None:
            continue
        if by == "gpu":
            if not run.devices:
                continue  # no GPU to group it by: in the total's count only
            names: dict[str, list[DeviceUsage]] = {}
            for d in run.devices:
                names.setdefault(d.name, []).append(d)
            for name, devices in names.items():
                groups.setdefault(name, Group(name)).add(run, devices)
        else:
            key = run.keys[by]
            groups.setdefault(key, Group(key)).add(run, run.devices)
    ordered = sorted(groups.values(), key=lambda g: (-g.gpu_hours, g.key))
    return Usage(by=by, groups=ordered, total=total, since=since)


def store_usage(
    store: Any, flt: Any, by: str | None = None, *, window: int = 500, since: str | None = None
) -> Usage:
    """:func:`usage` of the runs matching ``flt`` (a RunFilter), read ``window`` runs
    at a time in one read transaction (a GPU record carries its series: 10,000 runs
    are never all in memory at once)."""
    from labbook.store.query import select_runs_window

    def rows() -> Iterable[Mapping[str, Any]]:
        offset = 0
        while True:
            part = select_runs_window(store, flt, offset=offset, limit=window)
            yield from part
            if len(part) < window:
                return
            offset += len(part)

    store.conn.execute("BEGIN")
    try:
        return usage(rows(), by, since=since)
    finally:
        store.conn.execute("COMMIT")
