"""Metric summaries and downsampled series.

A run can log millions of points per tag. labbook keeps, per run and tag, a
summary (last, min, max, step, count, first non-finite step) and a series of at
most :data:`MAX_POINTS` points that is good enough to draw the curve: it always
keeps the first and last points, the minimum and maximum, and the first
non-finite point, and within evenly spaced buckets keeps each bucket's extremes.

Both can be updated with appended points only (the daemon's tailing), at a cost
proportional to what was appended plus the bounded series.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from labbook.model import Point

MAX_POINTS = 1000


def _finite(value: float) -> bool:
    return not (math.isnan(value) or math.isinf(value))


def nonfinite_kind(value: float | None) -> str | None:
    """'nan', 'inf', '-inf' for non-finite floats; None for finite ones and None."""
    if value is None or _finite(value):
        return None
    if math.isnan(value):
        return "nan"
    return "inf" if value > 0 else "-inf"


def from_kind(value: float | None, kind: str | None) -> float | None:
    """Inverse of storing ``(value, kind)``: SQLite turns NaN into NULL, so keep the kind."""
    if kind:
        return float(kind)
    return value


@dataclass
class Summary:
    """Running summary of one tag. ``min``/``max`` are over finite values only."""

    last: float | None = None
    min: float | None = None
    max: float | None = None
    step: int | None = None
    count: int = 0
    nonfinite_step: int | None = None
    first_step: int | None = None
    last_wall_time: float | None = None

    def update(self, points: Iterable[Point]) -> None:
        for p in points:
            v = p.value
            if self.first_step is None:
                self.first_step = p.step
            self.count += 1
            self.last = v
            self.step = p.step
            if p.wall_time is not None:
                self.last_wall_time = p.wall_time
            if _finite(v):
                if self.min is None or v < self.min:
                    self.min = v
                if self.max is None or v > self.max:
                    self.max = v
            elif self.nonfinite_step is None:
                self.nonfinite_step = p.step

    @classmethod
    def of(cls, points: Iterable[Point]) -> Summary:
        s = cls()
        s.update(points)
        return s


def downsample(points: Sequence[Point], limit: int = MAX_POINTS) -> list[Point]:
    """At most ``limit`` points keeping first, last, min, max, first non-finite.

    Buckets of equal index width each contribute their minimum and maximum (the
    M4 idea, without the bucket's first/last), so spikes survive downsampling.
    """
    n = len(points)
    if n <= limit:
        return list(points)
    keep: set[int] = {0, n - 1}
    lo_i = hi_i = None
    for i, p in enumerate(points):
        v = p.value
        if not _finite(v):
            keep.add(i)
            break
    for i, p in enumerate(points):
        v = p.value
        if _finite(v):
            if lo_i is None or v < points[lo_i].value:
                lo_i = i
            if hi_i is None or v > points[hi_i].value:
                hi_i = i
    keep.update(i for i in (lo_i, hi_i) if i is not None)
    # At most 5 essential points plus two per bucket: never more than ``limit``.
    buckets = max(1, (limit - 5) // 2)
    width = n / buckets
    for b in range(buckets):
        start, end = int(b * width), min(n, int((b + 1) * width))
        if start >= end:
            continue
        b_lo = b_hi = None
        for i in range(start, end):
            v = points[i].value
            if not _finite(v):
                continue
            if b_lo is None or v < points[b_lo].value:
                b_lo = i
            if b_hi is None or v > points[b_hi].value:
                b_hi = i
        if b_lo is None:
            keep.add(start)
        else:
            keep.add(b_lo)
            keep.add(b_hi)  # type: ignore[arg-type]
    return [points[i] for i in sorted(keep)]


def encode_points(points: Sequence[Point]) -> list[list[object]]:
    """JSON-safe rows ``[step, value, wall_time]``; non-finite values as strings."""
    out: list[list[object]] = []
    for p in points:
        kind = nonfinite_kind(p.value)
        out.append([p.step, kind if kind else p.value, p.wall_time])
    return out


def decode_points(rows: Iterable[Sequence[object]]) -> list[Point]:
    out = []
    for row in rows:
        step, value, wall = cast("tuple[Any, Any, Any]", ([*list(row), None, None, None])[:3])
        out.append(Point(int(step), float(value), float(wall) if wall is not None else None))
    return out
