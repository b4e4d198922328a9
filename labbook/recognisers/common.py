"""Reading helpers shared by the recognisers: event files, metric files, logs."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labbook.model import Point, RunFacts
from labbook.recognisers.base import SKIP_DIRS
from labbook.warn import warn_on_import

LOG_NAMES = ("train.log", "output.log", "stdout.log", "log.txt", "stdout.txt", "console.log")
#: Where a run keeps files worth scanning below it (bounded, for big run dirs).
MAX_SCAN_FILES = 5000
_HPARAMS_DIR = re.compile(r"^\d{9,}(\.\d+)?$")  # torch/tensorboardX add_hparams: time.time()


@dataclass
class EventSummary:
    metrics: dict[str, list[Point]] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)
    hparams: dict[str, Any] = field(default_factory=dict)
    truncated: bool = False
    first_wall_time: float | None = None
    last_wall_time: float | None = None
    files: list[str] = field(default_factory=list)


def files_below(root: Path, *, max_depth: int = 4) -> Iterable[Path]:
    """Regular files below ``root`` (not following symlinks), bounded in depth and count."""
    count = 0
    base_depth = len(root.parts)
    for dirpath, dirnames, filenames in os.walk(root, onerror=None, followlinks=False):
        depth = len(Path(dirpath).parts) - base_depth
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and depth < max_depth)
        for name in sorted(filenames):
            count += 1
            if count > MAX_SCAN_FILES:
                return
            yield Path(dirpath) / name


def dir_signature(run_dir: Path, extra: Iterable[str | os.PathLike[str]] = ()) -> str:
    """A digest of the names, sizes and mtimes of a run dir's files, and of ``extra``
    files read from elsewhere (a console log above it): equal digests, same files."""
    import hashlib

    h = hashlib.blake2b(digest_size=12)
    for p in [*files_below(run_dir), *(Path(e) for e in extra)]:
        try:
            st = p.stat()
        except OSError:
            h.update(f"{p}\0-\n".encode("utf-8", "surrogateescape"))
            continue
        h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def read_event_files(root: Path, *, max_depth: int = 4) -> EventSummary:
    """Merge every TensorBoard event file at or below ``root`` into one summary.

    Scalars from a sub-directory get the sub-directory as a tag prefix
    (``add_scalars("loss", {"train": …})`` writes ``loss_train/`` with tag ``loss``
    → ``loss_train/loss``), except ``add_hparams``' timestamp-named directories,
    whose tags are kept as written and whose hparams become config.
    """
    from labbook.readers.tfevents import is_event_file, number_stepless, read_events

    out = EventSummary()
    for path in files_below(root, max_depth=max_depth):
        if not is_event_file(path.name):
            continue
        batch = read_events(path)
        number_stepless(batch.scalars, {})
        out.files.append(str(path))
        if batch.truncated:
            warn_on_import(
                path,
                f"partial last record (the writer was stopped or is still writing); "
                f"read the {batch.records} complete records before it",
            )
        elif batch.records == 0 and batch.offset == 0 and _is_empty(path):
            warn_on_import(path, "empty event file (nothing written or flushed yet)")
        rel = path.parent.relative_to(root)
        prefix = "" if str(rel) == "." else rel.as_posix()
        in_hparams_dir = bool(rel.parts) and bool(_HPARAMS_DIR.match(rel.parts[-1]))
        for tag, points in batch.scalars.items():
            full = tag if (not prefix or in_hparams_dir) else f"{prefix}/{tag}"
            out.metrics.setdefault(full, []).extend(points)
        out.texts.update(batch.texts)
        out.hparams.update(batch.hparams)
        out.truncated = out.truncated or batch.truncated
        if batch.first_wall_time is not None:
            out.first_wall_time = min(
                x for x in (out.first_wall_time, batch.first_wall_time) if x is not None
            )
        if batch.last_wall_time is not None:
            out.last_wall_time = max(
                x for x in (out.last_wall_time, batch.last_wall_time) if x is not None
            )
    for points in out.metrics.values():
        points.sort(key=lambda p: (p.step, p.wall_time or 0.0))
    return out


def _is_empty(path: Path) -> bool:
    try:
        return os.stat(path).st_size == 0
    except OSError:
        return False


def has_event_file(d_files: Iterable[str]) -> bool:
    from labbook.readers.tfevents import is_event_file

    return any(is_event_file(n) for n in d_files)


#: Metric files that may sit beside event files, in order of precedence (the live
#: tail's order too: see labbook.sources.watch.tail.tail_files).
LINE_FILES = ("metrics.jsonl", "metrics.csv")


def read_line_files(run_dir: Path, facts: RunFacts) -> None:
    """Add the metrics of ``metrics.jsonl``/``metrics.csv`` directly in ``run_dir`` to ``facts``.

    A tag already in ``facts`` (from event files) keeps its points; the first
    line file that has a tag wins it over the next (see :func:`merge_metrics`).
    """
    from labbook.readers.files import read_csv_metrics, read_jsonl_metrics

    for name in LINE_FILES:
        path = run_dir / name
        if not path.is_file():
            continue
        read = read_jsonl_metrics if name.endswith(".jsonl") else read_csv_metrics
        more, truncated = read(path)
        merge_metrics(facts.metrics, more)
        facts.truncated = facts.truncated or truncated
        facts.files.append(str(path))
        note_epochs(facts, path)


#: How much of a metrics file's end is read for its last ``epoch`` value.
_EPOCH_TAIL_BYTES = 64 * 1024


def note_epochs(facts: RunFacts, path: Path) -> None:
    """Widen ``facts.epochs_seen`` with the first and last ``epoch`` of a metrics file.

    The readers use an ``epoch`` column as an index, not a metric (Lightning's
    CSVLogger writes ``epoch,step,…``); how far it got is status evidence. Reads
    the file's head and its last 64 KiB only; a file it cannot read adds nothing.
    """
    seen = _epoch_range(path)
    if seen is None:
        return
    if facts.epochs_seen is not None:
        seen = (min(seen[0], facts.epochs_seen[0]), max(seen[1], facts.epochs_seen[1]))
    facts.epochs_seen = seen


def _epoch_range(path: Path) -> tuple[float, float] | None:
    import csv
    import json
    import math

    from labbook.readers.values import finite_number

    def cell(text: str) -> float | None:
        try:
            v = float(text.strip())
        except ValueError:
            return None
        return v if math.isfinite(v) else None

    try:
        with open(path, "rb") as fh:
            head = fh.read(_EPOCH_TAIL_BYTES)
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - _EPOCH_TAIL_BYTES))
            tail = fh.read()
    except OSError:
        return None
    head_lines = head.decode("utf-8", "replace").splitlines()
    tail_lines = tail.decode("utf-8", "replace").splitlines()
    if size > _EPOCH_TAIL_BYTES and tail_lines:
        tail_lines = tail_lines[1:]  # the first may be cut
    if path.suffix == ".csv":
        if not head_lines:
            return None
        header = [c.strip().lower() for c in next(csv.reader([head_lines[0]]), [])]
        if "epoch" not in header:
            return None
        col = header.index("epoch")

        def value(line: str) -> float | None:
            row = next(csv.reader([line]), [])
            return cell(row[col]) if len(row) == len(header) else None

        rows_head, rows_tail = head_lines[1:], tail_lines
    else:

        def value(line: str) -> float | None:
            try:
                record = json.loads(line)
            except ValueError:
                return None
            return finite_number(record.get("epoch")) if isinstance(record, dict) else None

        rows_head, rows_tail = head_lines, tail_lines
    first = next((v for line in rows_head if (v := value(line)) is not None), None)
    last = next((v for line in reversed(rows_tail) if (v := value(line)) is not None), None)
    if first is None or last is None:
        return None
    return float(first), float(last)


def merge_metrics(into: dict[str, list[Point]], more: dict[str, list[Point]]) -> None:
    """Add tags from ``more`` that ``into`` lacks (the first source of a tag wins)."""
    for tag, points in more.items():
        if tag not in into and points:
            into[tag] = points


def find_logs(root: Path, names: Iterable[str] = LOG_NAMES) -> list[Path]:
    """Log files directly in ``root``: well-known names first, then other ``*.log``."""
    found: list[Path] = []
    for n in names:
        p = root / n
        if p.is_file():
            found.append(p)
    try:
        others = sorted(p for p in root.glob("*.log") if p.is_file() and p not in found)
    except OSError:
        others = []
    return found + others


def apply_log(facts: RunFacts, log_path: Path, *, metrics_from_log: bool) -> None:
    """Fill what ``facts`` lacks from a training log: config, seed, metrics, failure.

    Values are recorded only if the log holds them, and a structured source always
    wins over the log (``metrics_from_log`` is False when another source gave metrics).
    """
    from labbook.model import Seed
    from labbook.readers.logs import HEAD_BYTES, TAIL_BYTES, read_log

    lf = read_log(log_path)
    if lf is None:
        return
    try:
        size = os.stat(log_path).st_size
    except OSError:
        size = 0
    if size > HEAD_BYTES + TAIL_BYTES:
        warn_on_import(
            log_path,
            f"large log ({_size_text(size)}): only its first {_size_text(HEAD_BYTES)} "
            f"and last {_size_text(TAIL_BYTES)} were read",
        )
    facts.files.append(str(log_path))
    if not facts.config and lf.config:
        facts.config = dict(lf.config)
    if facts.seed.value is None and lf.seed is not None and lf.seed.value is not None:
        facts.seed = Seed(lf.seed.value, lf.seed.source)
    if metrics_from_log:
        for tag in lf.metrics:
            if tag not in facts.metrics:
                facts.metric_sources[tag] = "output"  # printed lines, not a metrics file
        merge_metrics(facts.metrics, lf.metrics)
    if facts.failure is None and lf.failure is not None:
        facts.failure = lf.failure
    facts.end_marker = facts.end_marker or lf.finished_marker
    if lf.truncated and not lf.finished_marker:
        facts.truncated = True
    if lf.tail:
        facts.log_tail = lf.tail if not facts.log_tail else facts.log_tail + "\n" + lf.tail


def _size_text(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}".replace(".0 ", " ")
    return f"{n} bytes"


def mtime_range(paths: Iterable[str | Path]) -> tuple[float | None, float | None]:
    lo = hi = None
    for p in paths:
        try:
            st = os.stat(p)
        except OSError:
            continue
        lo = st.st_mtime if lo is None else min(lo, st.st_mtime)
        hi = st.st_mtime if hi is None else max(hi, st.st_mtime)
    return lo, hi


def run_name(path: Path, depth: int = 2) -> str:
    """A readable default name: the last ``depth`` components of the run dir."""
    parts = path.parts[-depth:]
    return "/".join(parts)
