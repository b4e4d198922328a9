"""Which of a run's metrics matter most (for columns and diffs)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

_KEY_METRIC_HINTS = ("val", "eval", "test", "loss", "acc")


def key_metrics(records: Sequence[Mapping[str, Any]], limit: int = 3) -> list[str]:
    """The metric tags most worth a column: common to most runs, validation and loss first."""
    counts: dict[str, int] = {}
    for r in records:
        for tag in r.get("metrics", {}):
            counts[tag] = counts.get(tag, 0) + 1

    def score(tag: str) -> tuple[int, int, str]:
        low = tag.lower()
        hint = next(
            (i for i, h in enumerate(_KEY_METRIC_HINTS) if h in low), len(_KEY_METRIC_HINTS)
        )
        return (-counts[tag], hint, tag)

    return sorted(counts, key=score)[:limit]
