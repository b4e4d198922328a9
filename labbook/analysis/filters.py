"""Run filters as a person writes them, shared by the CLI and the Python API."""

from __future__ import annotations

from collections.abc import Iterable

from labbook.analysis.metrics import canonical_tags
from labbook.store.query import RunFilter, parse_since, parse_where


def user_filter(
    *,
    status: Iterable[str] = (),
    framework: Iterable[str] = (),
    tags: Iterable[str] = (),
    where: Iterable[str] = (),
    since: str | None = None,
    limit: int | None = None,
) -> RunFilter:
    """A strict :class:`RunFilter` (a key no run has, or a value that does not fit its
    key, is an error naming the nearest keys) that knows the metric vocabulary
    (``val_loss`` also finds ``val/loss``); ``limit`` 0 or None: all runs."""
    return RunFilter(
        status=list(status),
        framework=list(framework),
        tags=list(tags),
        where=parse_where(list(where)),
        since=parse_since(since) if since else None,
        limit=limit or None,
        strict=True,
        metric_names=canonical_tags,
    )
