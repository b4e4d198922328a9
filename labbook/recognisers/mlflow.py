"""MLflow: the file store (``mlruns/<exp>/<run>/``) and the SQLite store (``mlflow.db``).

File store: a run directory holds ``meta.yaml`` (with ``run_id``/``run_uuid``,
``status``, ``start_time``/``end_time`` in ms) and ``params/``, ``metrics/``
(one file per metric, lines ``timestamp value step``; names with ``/`` are
sub-directories) and ``tags/``. Experiment directories and logged-model
directories (``models/``, whose meta.yaml has a ``model_id``) are not runs.

SQLite store: MLflow's default backend; read as a database (read-only), one run
per row of ``runs``.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from labbook.capture.seed import pick_seed, seed_from_config
from labbook.model import GitState, Point, RunFacts
from labbook.readers.files import load_yaml, read_text
from labbook.recognisers.base import DirInfo, Recogniser
from labbook.recognisers.common import run_name
from labbook.warn import warn

#: MLflow's RunStatus numbers (file store) and names (SQL store) → labbook status.
_STATUS = {
    1: "running",
    2: "running",
    3: "finished",
    4: "failed",
    5: "killed",
    "RUNNING": "running",
    "SCHEDULED": "running",
    "FINISHED": "finished",
    "FAILED": "failed",
    "KILLED": "killed",
}


def _apply_tags(facts: RunFacts, tags: dict[str, str]) -> None:
    tags = {str(k): v for k, v in tags.items() if isinstance(v, str)}  # a database holds any type
    if tags.get("mlflow.runName"):
        facts.name = tags["mlflow.runName"]
    if tags.get("mlflow.source.git.commit"):
        facts.git = GitState(
            root=tags.get("mlflow.source.name", ""), commit=tags["mlflow.source.git.commit"]
        )
    if tags.get("mlflow.user"):
        facts.user = tags["mlflow.user"]
    if tags.get("mlflow.parentRunId"):  # a nested run: its parent is its sweep
        facts.sweep_kind, facts.sweep_id = "mlflow", tags["mlflow.parentRunId"]
    facts.tags += [f"{k}={v}" for k, v in sorted(tags.items()) if not k.startswith("mlflow.")]


def _apply_status(facts: RunFacts, status: Any, start_ms: Any, end_ms: Any) -> None:
    mapped = _STATUS.get(status) if isinstance(status, int | str) else None
    if mapped == "finished":
        facts.end_marker = True
    elif mapped is not None:
        facts.status = mapped
    if mapped == "failed":
        from labbook.model import Failure

        facts.failure = Failure("exception", "MLflow run ended with status FAILED")
    started, ended = _seconds(start_ms), _seconds(end_ms)
    if started is not None:
        facts.started_at = started
    if ended is not None:
        facts.ended_at = ended


def _seconds(ms: Any) -> float | None:
    """A time in milliseconds as Unix seconds; None for what is no number (or too large)."""
    if not isinstance(ms, (int, float)) or isinstance(ms, bool):
        return None
    try:
        return ms / 1000
    except OverflowError:
        return None


class MLflowFileStore(Recogniser):
    framework = "mlflow"

    def match(self, d: DirInfo) -> bool:
        if "meta.yaml" not in d.files or not ({"params", "metrics", "tags"} & d.dirs):
            return False
        meta = load_yaml(d.path / "meta.yaml")
        return isinstance(meta, dict) and bool(meta.get("run_id") or meta.get("run_uuid"))

    def read(self, d: DirInfo) -> Iterable[RunFacts]:
        meta = load_yaml(d.path / "meta.yaml")
        if not isinstance(meta, dict):
            meta = {}
        name = meta.get("run_name")
        facts = RunFacts(
            path=str(d.path),
            framework=self.framework,
            source_key=str(d.path),
            name=name if isinstance(name, str) and name else run_name(d.path),
            files=[str(d.path / "meta.yaml")],
        )
        facts.config = {k: _param_value(v) for k, v in _read_tree(d.path / "params").items()}
        tags = _read_tree(d.path / "tags")
        _apply_tags(facts, tags)
        for name, path in _tree_files(d.path / "metrics"):
            facts.metrics[name] = _read_metric_file(path)
            facts.files.append(str(path))
        _apply_status(facts, meta.get("status"), meta.get("start_time"), meta.get("end_time"))
        facts.seed = pick_seed(seed_from_config(facts.config))
        yield facts


def _tree_files(root: Path) -> list[tuple[str, Path]]:
    out: list[tuple[str, Path]] = []
    if not root.is_dir():
        return out
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            out.append((p.relative_to(root).as_posix(), p))
    return sorted(out)


def _read_tree(root: Path) -> dict[str, str]:
    out = {}
    for name, path in _tree_files(root):
        text = read_text(path, max_bytes=1024 * 1024)
        if text is not None:
            out[name] = text
    return out


def _param_value(text: str) -> Any:
    from labbook.readers.values import parse_value

    value = parse_value(text)
    return value


def _read_metric_file(path: Path) -> list[Point]:
    points: list[Point] = []
    text = read_text(path) or ""
    bad = 0
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        try:
            ts, value = float(parts[0]), float(parts[1])
            step = int(parts[2]) if len(parts) > 2 else len(points)
        except ValueError:
            bad += 1
            continue
        points.append(Point(step, value, ts / 1000))
    if bad:
        warn(path, f"skipped {bad} malformed line(s)")
    # MLflow orders a metric by (step, timestamp) and may append a line it already
    # wrote (same timestamp, value and step): keep that order, drop exact repeats.
    unique = {(p.step, p.wall_time, repr(p.value)): p for p in points}
    return sorted(unique.values(), key=lambda p: (p.step, p.wall_time or 0.0))


class MLflowSQLite(Recogniser):
    """MLflow's SQLite tracking store. It sits beside other files, so it owns nothing below."""

    framework = "mlflow"
    owns_subtree = False
    db_names = ("mlflow.db",)

    def match(self, d: DirInfo) -> bool:
        return d.has_any(*self.db_names)

    def read(self, d: DirInfo) -> Iterable[RunFacts]:
        for name in self.db_names:
            if name in d.files:
                yield from read_mlflow_db(d.path / name)


def read_mlflow_db(db_path: Path) -> list[RunFacts]:
    """Every run in an MLflow SQLite store (opened read-only; never written)."""
    try:
        conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as exc:
        warn(db_path, f"not a readable MLflow database ({exc})")
        return []
    if not {"runs", "params", "metrics", "tags"} <= tables:
        warn(db_path, "not an MLflow tracking database (no runs/params/metrics/tags tables)")
        conn.close()
        return []
    out = []
    try:
        runs = conn.execute(
            "SELECT run_uuid, name, status, start_time, end_time, lifecycle_stage, artifact_uri"
            " FROM runs"
        ).fetchall()
        for run_uuid, name, status, start, end, stage, _artifact_uri in runs:
            if stage == "deleted":
                continue
            facts = RunFacts(
                path=f"{db_path}#{run_uuid}",
                framework="mlflow",
                source_key=f"{db_path}#{run_uuid}",
                name=name if isinstance(name, str) and name else str(run_uuid)[:8],
                files=[str(db_path)],
            )
            facts.config = {
                k: _param_value(v)
                for k, v in conn.execute(
                    "SELECT key, value FROM params WHERE run_uuid = ?", (run_uuid,)
                )
            }
            tags = dict(conn.execute("SELECT key, value FROM tags WHERE run_uuid = ?", (run_uuid,)))
            _apply_tags(facts, tags)
            bad = 0
            for key, value, ts, step, is_nan in conn.execute(
                "SELECT key, value, timestamp, step, is_nan FROM metrics WHERE run_uuid = ?"
                " ORDER BY key, step, timestamp",
                (run_uuid,),
            ):
                try:  # SQLite keeps whatever was written: text in a FLOAT column, say
                    v = float("nan") if is_nan else float(value)
                    point = Point(int(step), v, float(ts) / 1000 if ts else None)
                except (TypeError, ValueError, OverflowError):
                    bad += 1
                    continue
                facts.metrics.setdefault(str(key), []).append(point)
            if bad:
                warn(db_path, f"run {run_uuid}: skipped {bad} metric row(s) that are not numbers")
            _apply_status(facts, status, start, end)
            facts.seed = pick_seed(seed_from_config(facts.config))
            out.append(facts)
    except sqlite3.DatabaseError as exc:
        warn(db_path, f"cannot read MLflow database ({exc})")
    finally:
        conn.close()
    return out
