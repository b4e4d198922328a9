"""Runs as data: rows for ``--format csv|tsv|md|jsonl`` (``ls``, ``search``, ``compare``, ``show``).

A run is one flat row: the run fields (:data:`RUN_FIELDS`), then any fields the
command adds (``search.score`` …), then its config as ``config.KEY`` (keys sorted),
then each metric's ``metrics.TAG.last``, ``.min``, ``.max`` (tags sorted). CSV and
TSV are data, written as they are: only the ``csv`` module's quoting, no terminal
escaping. Markdown is for reading: pipes escaped, control characters shown escaped.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from labbook.textsafe import printable

#: The run fields, in the order they lead every row.
RUN_FIELDS = (
    "id",
    "name",
    "status",
    "framework",
    "seed",
    "git.commit",
    "started_at",
    "ended_at",
    "duration_s",
    "host",
    "user",
    "path",
    "tags",
)

#: Each metric's columns, in this order.
METRIC_STATS = ("last", "min", "max")


def _duration(rec: Mapping[str, Any]) -> float | None:
    from datetime import datetime

    start, end = rec.get("started_at"), rec.get("ended_at")
    if not isinstance(start, str) or not isinstance(end, str):
        return None
    try:
        a = datetime.fromisoformat(start.replace("Z", "+00:00"))
        b = datetime.fromisoformat(end.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (b - a).total_seconds()


def run_row(
    rec: Mapping[str, Any],
    *,
    extra: Mapping[str, Any] | None = None,
    config_keys: Iterable[str] | None = None,
    metric_tags: Iterable[str] | None = None,
) -> dict[str, Any]:
    """One run's flat row. ``config_keys``/``metric_tags``: only these (default: all it has)."""
    seed = rec.get("seed")
    git = rec.get("git")
    row: dict[str, Any] = {
        "id": rec.get("id"),
        "name": rec.get("name"),
        "status": rec.get("status"),
        "framework": rec.get("framework"),
        "seed": seed.get("value") if isinstance(seed, Mapping) else seed,
        "git.commit": git.get("commit") if isinstance(git, Mapping) else None,
        "started_at": rec.get("started_at"),
        "ended_at": rec.get("ended_at"),
        "duration_s": _duration(rec),
        "host": rec.get("host"),
        "user": rec.get("user"),
        "path": rec.get("path"),
        "tags": rec.get("tags") or [],
    }
    row.update(extra or {})
    config = rec.get("config") or {}
    for key in sorted(config) if config_keys is None else config_keys:
        row[f"config.{key}"] = config.get(key)
    metrics = rec.get("metrics") or {}
    for tag in sorted(metrics) if metric_tags is None else metric_tags:
        m = metrics.get(tag) or {}
        for stat in METRIC_STATS:
            row[f"metrics.{tag}.{stat}"] = m.get(stat)
    return row


def _order(key: str) -> tuple[Any, ...]:
    if key in RUN_FIELDS:
        return (0, RUN_FIELDS.index(key))
    if key.startswith("config."):
        return (2, key[len("config.") :])
    if key.startswith("metrics.") and "." in key[len("metrics.") :]:
        tag, stat = key[len("metrics.") :].rsplit(".", 1)
        if stat in METRIC_STATS:
            return (3, tag, METRIC_STATS.index(stat))
    return (1,)  # the command's own fields, in the order they came


def columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every key of ``rows``: run fields, the command's fields, config keys sorted,
    metrics sorted (no row: the run fields)."""
    seen: dict[str, None] = dict.fromkeys(RUN_FIELDS)
    for row in rows:
        seen.update(dict.fromkeys(row))
    return sorted(seen, key=_order)  # stable: the command's fields keep their order


def cell(value: Any) -> str:
    """A value as text: None empty, booleans ``true``/``false``, floats exactly (``nan``,
    ``inf``, ``-inf`` when not finite), lists and objects as JSON."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, (int, str)):
        return str(value)
    return json.dumps(value, ensure_ascii=False, default=str, allow_nan=True)


def delimited(
    rows: Sequence[Mapping[str, Any]], cols: Sequence[str] | None = None, *, delimiter: str = ","
) -> str:
    """CSV (or TSV with ``delimiter="\\t"``): a header row, then a row per run; fields
    with the delimiter, quotes or line breaks quoted, as the ``csv`` module reads them."""
    cols = list(cols) if cols is not None else columns(rows)
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\n")
    writer.writerow(cols)
    for row in rows:
        writer.writerow([cell(row.get(c)) for c in cols])
    return out.getvalue()


def _md_cell(value: Any) -> str:
    text = printable(cell(value))  # one line: newlines, tabs, controls as escapes
    return text.replace("\\", "\\\\").replace("|", "\\|")


def markdown(rows: Sequence[Mapping[str, Any]], cols: Sequence[str] | None = None) -> str:
    """A GitHub-flavoured Markdown table: a row per run, pipes and backslashes escaped."""
    cols = list(cols) if cols is not None else columns(rows)
    lines = [
        "| " + " | ".join(_md_cell(c) for c in cols) + " |",
        "|" + "|".join(" --- " for _ in cols) + "|",
    ]
    lines += ["| " + " | ".join(_md_cell(row.get(c)) for c in cols) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def jsonl(objects: Iterable[Any], *, escape: Callable[[str], str] = str) -> str:
    """One JSON object a line (``escape``: applied to each line, e.g. textsafe.json_text)."""
    return "".join(
        escape(json.dumps(o, ensure_ascii=False, default=str, allow_nan=True)) + "\n"
        for o in objects
    )
