"""Hydra: ``outputs/DATE/TIME/`` and each job ``multirun/DATE/TIME/N/`` of a sweep.

A job directory holds ``.hydra/config.yaml`` (the composed config),
``.hydra/overrides.yaml`` (the command-line overrides) and ``.hydra/hydra.yaml``
(Hydra's own settings: job name, mode, sweep number), plus ``<job>.log``. The
sweep directory (with ``multirun.yaml``) is not a run. What the job's code wrote
below the job directory (TensorBoard, Lightning, CSV metrics) feeds the same run.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from labbook.capture.seed import (
    pick_seed,
    seed_from_config,
    seed_from_overrides,
    seed_unreadable,
)
from labbook.model import RunFacts, flatten
from labbook.readers.files import load_yaml, read_csv_metrics, read_jsonl_metrics
from labbook.recognisers.base import DirInfo, Recogniser
from labbook.recognisers.common import (
    apply_log,
    files_below,
    find_logs,
    merge_metrics,
    mtime_range,
    note_epochs,
    read_event_files,
    run_name,
)


class Hydra(Recogniser):
    framework = "hydra"

    def match(self, d: DirInfo) -> bool:
        return ".hydra" in d.dirs and (d.path / ".hydra" / "config.yaml").is_file()

    def read(self, d: DirInfo) -> Iterable[RunFacts]:
        hdir = d.path / ".hydra"
        facts = RunFacts(
            path=str(d.path),
            framework=self.framework,
            source_key=str(d.path),
            name=run_name(d.path, 3),
        )
        cfg = load_yaml(hdir / "config.yaml")
        if isinstance(cfg, dict):
            facts.config = flatten(cfg)
        overrides = (
            load_yaml(hdir / "overrides.yaml") if (hdir / "overrides.yaml").is_file() else None
        )
        hydra_cfg = load_yaml(hdir / "hydra.yaml") if (hdir / "hydra.yaml").is_file() else None
        job_name = None
        if isinstance(hydra_cfg, dict):
            h = _mapping(hydra_cfg.get("hydra"))
            job_name = _mapping(h.get("job")).get("name")
            if not isinstance(job_name, str):
                job_name = None
            cwd = _mapping(h.get("runtime")).get("cwd")
            facts.cwd = cwd if isinstance(cwd, str) else None
            if h.get("mode") == "MULTIRUN":
                facts.sweep_kind, facts.sweep_id = "hydra", _sweep_dir(d.path, h)
            if job_name:
                facts.command = [
                    "python",
                    f"{job_name}.py",
                    *[str(o) for o in (overrides if isinstance(overrides, list) else [])],
                ]
        facts.files += [str(hdir / n) for n in ("config.yaml", "overrides.yaml", "hydra.yaml")]
        if isinstance(overrides, list):
            facts.seed = pick_seed(
                seed_from_overrides([str(o) for o in overrides]), seed_from_config(facts.config)
            )
        if not isinstance(cfg, dict):  # config.yaml holds the overrides applied; without it:
            facts.seed = pick_seed(
                facts.seed,
                seed_unreadable(hdir / "config.yaml", cfg),
                seed_unreadable(hdir / "overrides.yaml", overrides),
            )
        ev = read_event_files(d.path)
        facts.metrics = ev.metrics
        facts.files += ev.files
        facts.truncated = ev.truncated
        for path in files_below(d.path):
            if path.name == "metrics.csv":
                more, truncated = read_csv_metrics(path)
            elif path.name == "metrics.jsonl":
                more, truncated = read_jsonl_metrics(path)
            else:
                continue
            merge_metrics(facts.metrics, more)
            facts.truncated = facts.truncated or truncated
            facts.files.append(str(path))
            note_epochs(facts, path)
        logs = find_logs(d.path, names=(f"{job_name}.log",) if job_name else ())
        for log in logs[:1]:
            apply_log(facts, log, metrics_from_log=not facts.metrics)
        facts.started_at, facts.ended_at = mtime_range(facts.files)
        yield facts


def _sweep_dir(job: Path, h: dict[Any, Any]) -> str:
    """The multirun directory a job belongs to: ``hydra.sweep.dir`` (relative to the
    job's cwd) when it holds the job, else the job directory's parent
    (``multirun/DATE/TIME/N``: the sweep is ``multirun/DATE/TIME``)."""
    sweep = _mapping(h.get("sweep")).get("dir")
    cwd = _mapping(h.get("runtime")).get("cwd")
    if isinstance(sweep, str) and sweep:
        full = Path(sweep) if Path(sweep).is_absolute() else Path(str(cwd or "")) / sweep
        try:
            job.relative_to(full)
            if full != job:
                return str(full)
        except ValueError:
            pass
    return str(job.parent)


def _mapping(value: object) -> dict[Any, Any]:
    """``value`` if it is a mapping, else {} (a hand-edited hydra.yaml may hold anything)."""
    return value if isinstance(value, dict) else {}
