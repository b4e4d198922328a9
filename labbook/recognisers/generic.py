"""Plain run directories: a config file with metrics and/or a log, or a ``labbook.json`` marker.

A directory is a run when it holds ``config.{yaml,yml,json,toml}`` together with
``metrics.{json,jsonl,csv}`` or a ``*.log``; or a ``labbook.json`` marker; or only
a training log (``train.log``, …) in which a config or metric lines are found.

``labbook.json`` is a marker any script may drop into its output directory. Every
key is optional::

    {"name": "resnet-lr0.1", "config": {"lr": 0.1}, "seed": 42, "tags": ["baseline"],
     "command": ["python", "train.py"], "status": "finished",
     "metrics": {"val/acc": 0.91, "loss": [2.3, 1.1, 0.4]}}
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from labbook.capture.seed import pick_seed, seed_from_argv, seed_from_config, seed_unreadable
from labbook.model import STATUSES, Point, RunFacts, Seed, flatten
from labbook.readers.files import (
    load_config,
    load_json,
    read_csv_metrics,
    read_json_metrics,
    read_jsonl_metrics,
)
from labbook.readers.values import number
from labbook.recognisers.base import DirInfo, Recogniser
from labbook.recognisers.common import (
    LOG_NAMES,
    apply_log,
    find_logs,
    merge_metrics,
    mtime_range,
    run_name,
)
from labbook.warn import warn_on_import

CONFIG_NAMES = ("config.yaml", "config.yml", "config.json", "config.toml")
METRIC_NAMES = ("metrics.jsonl", "metrics.csv", "metrics.json")
MARKER = "labbook.json"


class Generic(Recogniser):
    framework = "generic"

    def match(self, d: DirInfo) -> bool:
        if MARKER in d.files:
            return True
        has_log = any(n.endswith(".log") for n in d.files)
        if d.has_any(*CONFIG_NAMES) and (d.has_any(*METRIC_NAMES) or has_log):
            return True
        return d.has_any(*LOG_NAMES)

    def weak(self, d: DirInfo) -> bool:
        """A log-only match: a project dir whose console log belongs to runs below it.

        ``python train.py | tee train.log`` beside ``lightning_logs/`` is such a log.
        The walk goes on below a weak match, and drops it if it finds runs there.
        """
        return MARKER not in d.files and not d.has_any(*CONFIG_NAMES)

    def read(self, d: DirInfo) -> Iterable[RunFacts]:
        facts = RunFacts(
            path=str(d.path),
            framework=self.framework,
            source_key=str(d.path),
            name=run_name(d.path),
        )
        cfg_path = d.first(*CONFIG_NAMES)
        if cfg_path is not None:
            cfg = load_config(cfg_path)
            facts.files.append(str(cfg_path))
            facts.seed = pick_seed(facts.seed, seed_unreadable(cfg_path, cfg))
            if cfg:
                facts.config = flatten(cfg)
        for name in METRIC_NAMES:
            if name not in d.files:
                continue
            path = d.path / name
            facts.files.append(str(path))
            if _is_empty(path):
                warn_on_import(path, "empty metrics file")
                continue
            if name == "metrics.json":
                # Written once, at the end: its presence is the end marker.
                more = read_json_metrics(path)
                facts.end_marker = facts.end_marker or bool(more)
                truncated = False
            elif name == "metrics.csv":
                more, truncated = read_csv_metrics(path)
            else:
                more, truncated = read_jsonl_metrics(path)
            merge_metrics(facts.metrics, more)
            facts.truncated = facts.truncated or truncated
        if MARKER in d.files:
            self._read_marker(d, facts)
        # Structured sources first: a log's seed is used only when they have none.
        facts.seed = pick_seed(
            facts.seed,  # a seed already found, or unknown: an unreadable file
            seed_from_config(facts.config),
            seed_from_argv(facts.command or []),
        )
        for log in find_logs(d.path)[:1]:
            apply_log(facts, log, metrics_from_log=not facts.metrics)
        if (
            cfg_path is None
            and MARKER not in d.files
            and not (facts.config or facts.metrics or facts.failure)
        ):
            return  # a log that tells nothing: not a run
        facts.started_at, facts.ended_at = mtime_range(facts.files)
        yield facts

    @staticmethod
    def _read_marker(d: DirInfo, facts: RunFacts) -> None:
        marker = load_json(d.path / MARKER)
        facts.files.append(str(d.path / MARKER))
        if not isinstance(marker, dict):
            facts.seed = pick_seed(facts.seed, seed_unreadable(d.path / MARKER, marker))
            return
        if isinstance(marker.get("name"), str):
            facts.name = marker["name"]
        if isinstance(marker.get("config"), dict):
            facts.config.update(flatten(marker["config"]))
        if marker.get("seed") is not None:
            facts.seed = Seed(marker["seed"], "labbook.json:seed")
        if isinstance(marker.get("tags"), list):
            facts.tags += [str(t) for t in marker["tags"]]
        if isinstance(marker.get("command"), list) and marker["command"]:
            facts.command = [str(a) for a in marker["command"]]
        if marker.get("status") in STATUSES:
            if marker["status"] == "finished":
                facts.end_marker = True
            else:
                facts.status = marker["status"]
        metrics = marker.get("metrics")
        if isinstance(metrics, dict):
            for tag, value in metrics.items():
                points = _marker_points(value)
                if points:
                    facts.metrics[str(tag)] = points


def _is_empty(path: Path) -> bool:
    try:
        return os.stat(path).st_size == 0
    except OSError:
        return False


def _marker_points(value: Any) -> list[Point]:
    if isinstance(value, list):
        numbers = [(i, number(v)) for i, v in enumerate(value)]
        return [Point(i, v) for i, v in numbers if v is not None]
    v = number(value)
    return [] if v is None else [Point(0, v)]
