"""Incremental readers of metric files: read what was appended since the last position.

A position is ``{"offset", "fingerprint", "state"}`` as stored by
:meth:`labbook.store.Store.tail_commit`. Each reader returns the new points and
the next position, and says ``reset`` when the file was rewritten or truncated
(its fingerprint changed or it shrank): the caller then forgets what it had from
the file and reads it again from 0. Only complete records are consumed: a
partial last line or event stays for the next read, so nothing is read twice.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labbook.model import Point
from labbook.readers import files as metric_files
from labbook.readers.contain import outside, run_root
from labbook.readers.tfevents import is_event_file, number_stepless, read_events
from labbook.warn import warn

#: Line files are fingerprinted on their first bytes, at most this many.
LINE_FINGERPRINT_BYTES = 1024
#: At most this much is read per call (the rest next time), so one huge append
#: never stalls the consumer for long.
MAX_READ_BYTES = 64 << 20
_HPARAMS_DIR = re.compile(r"^\d{9,}(\.\d+)?$")
LINE_FILES = ("metrics.jsonl", "metrics.csv")


@dataclass
class TailResult:
    metrics: dict[str, list[Point]] = field(default_factory=dict)
    offset: int = 0
    fingerprint: str = ""
    state: dict[str, Any] = field(default_factory=dict)
    reset: bool = False
    truncated: bool = False


def tail_files(run_dir: Path) -> list[str]:
    """The files whose appends carry a run's metrics: its event files, then metrics.jsonl/csv.

    All of them, as the full read reads them all (one run, all series); a tag that
    several have is settled by :func:`settle_tags`.
    """
    from labbook.recognisers.common import files_below

    events = sorted(str(p) for p in files_below(run_dir) if is_event_file(p.name))
    return events + [str(run_dir / n) for n in LINE_FILES if (run_dir / n).is_file()]


def source_rank(path: str) -> int:
    """Precedence of a run's metric file for a tag that several have (lower wins).

    Event files first, then ``metrics.jsonl``, then ``metrics.csv``: the order in
    which the recognisers' full read merges them (the first source of a tag wins).
    """
    name = os.path.basename(path)
    return 1 + LINE_FILES.index(name) if name in LINE_FILES else 0


def file_tags(run_dir: Path, path: str, state: dict[str, Any]) -> set[str]:
    """The tags a tailed file has committed so far, from its stored reader state."""
    if is_event_file(path):
        prefix = tag_prefix(run_dir, path)
        return {prefix + tag for tag in state.get("stepless") or {}}
    return set(state.get("tags") or [])


def settle_tags(
    run_dir: Path, path: str, res: TailResult, positions: dict[str, dict[str, Any]]
) -> dict[str, set[str]]:
    """Give each tag to the best file that has it, whatever order the appends came in.

    ``positions`` holds the other files' stored positions (path -> {"state", …}).
    Tags of ``res`` that a better file has are dropped from it; the tags it takes
    from worse files are returned (path -> tags): the caller forgets their points
    and removes them from those files' states. ``res.state`` records the tags
    this file keeps, so that the full read and the tail agree (one run, all
    series; where two files have a tag, the one the full read prefers).
    """
    rank = source_rank(path)
    others = [
        (source_rank(p), p, file_tags(run_dir, p, pos.get("state") or {}))
        for p, pos in positions.items()
        if p != path
    ]
    taken: dict[str, set[str]] = {}
    if not any(r != rank for r, _, _ in others):
        if not is_event_file(path):
            res.state["tags"] = sorted(file_tags(run_dir, path, res.state) | set(res.metrics))
        return taken
    for tag in list(res.metrics):
        for other_rank, other, tags in others:
            if tag not in tags:
                continue
            if other_rank < rank:
                del res.metrics[tag]
                break
            if other_rank > rank:
                taken.setdefault(other, set()).add(tag)
    if not is_event_file(path):
        res.state["tags"] = sorted(file_tags(run_dir, path, res.state) | set(res.metrics))
    return taken


def is_tail_candidate(path: str) -> bool:
    return is_event_file(path) or os.path.basename(path) in LINE_FILES


def tag_prefix(run_dir: Path, path: str) -> str:
    """The tag prefix of an event file's scalars (as :func:`read_event_files` gives them)."""
    rel = Path(path).parent.relative_to(run_dir)
    if str(rel) == "." or _HPARAMS_DIR.match(rel.parts[-1]):
        return ""
    return rel.as_posix() + "/"


def read_appended(run_dir: Path, path: str, pos: dict[str, Any] | None) -> TailResult:
    """What was appended to ``path`` since ``pos`` (None: from the start)."""
    with run_root(run_dir):
        return _read_appended(run_dir, path, pos)


def _read_appended(run_dir: Path, path: str, pos: dict[str, Any] | None) -> TailResult:
    if is_event_file(path):
        return _tail_events(run_dir, path, pos)
    if path.endswith(".csv"):
        return _tail_lines(path, pos, csv=True)
    return _tail_lines(path, pos, csv=False)


def _tail_events(run_dir: Path, path: str, pos: dict[str, Any] | None) -> TailResult:
    offset = int(pos["offset"]) if pos else 0
    fingerprint = pos.get("fingerprint") if pos else None
    batch = read_events(path, offset, fingerprint or None)
    # Step-less tags are numbered per file, as the full read numbers them.
    state: dict[str, Any] = {} if batch.reset or not pos else dict(pos.get("state") or {})
    stepless = dict(state.get("stepless") or {})
    number_stepless(batch.scalars, stepless)
    state["stepless"] = stepless
    prefix = tag_prefix(run_dir, path)
    metrics = {prefix + tag: pts for tag, pts in batch.scalars.items()}
    return TailResult(
        metrics=metrics,
        offset=batch.offset,
        fingerprint=batch.fingerprint,
        state=state,
        reset=batch.reset,
        truncated=batch.truncated,
    )


def _head_hash(f: Any, n: int) -> str:
    f.seek(0)
    return f"{n}:" + hashlib.blake2b(f.read(n), digest_size=12).hexdigest()


def _tail_lines(path: str, pos: dict[str, Any] | None, *, csv: bool) -> TailResult:
    offset = int(pos["offset"]) if pos else 0
    fingerprint = (pos.get("fingerprint") or "") if pos else ""
    state: dict[str, Any] = dict(pos.get("state") or {}) if pos else {}
    out = TailResult(offset=offset, fingerprint=fingerprint, state=state)
    if outside(path):
        return out
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        warn(path, f"cannot read: {exc.strerror or exc}")
        return out
    with f:
        size = os.fstat(f.fileno()).st_size
        if offset:
            n = int(fingerprint.split(":", 1)[0]) if ":" in fingerprint else 0
            if size < offset or not fingerprint or _head_hash(f, n) != fingerprint:
                offset, state, out.reset = 0, {}, True
        f.seek(offset)
        data = f.read(min(size - offset, MAX_READ_BYTES)) if size > offset else b""
        end = data.rfind(b"\n")
        complete = data[: end + 1] if end >= 0 else b""
        out.truncated = len(complete) < len(data)
        new_offset = offset + len(complete)
        lines = metric_files.MetricLines(path, csv=csv, state=state)
        # Lines end at b"\n" only, as the full read's readline() has them.
        for raw in complete.split(b"\n")[:-1]:
            if len(raw) + 1 > metric_files.MAX_LINE_BYTES:
                lines.overlong()
            else:
                lines.line(raw + b"\n", out.metrics)
        lines.report()
        kept = state.get("tags")
        state = lines.state()
        if kept:
            state["tags"] = kept  # see settle_tags
        out.offset = new_offset
        out.state = state
        out.fingerprint = _head_hash(f, min(new_offset, LINE_FINGERPRINT_BYTES))
    return out
