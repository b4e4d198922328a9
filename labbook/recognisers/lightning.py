"""PyTorch Lightning: ``lightning_logs/version_N`` written by TensorBoardLogger or CSVLogger.

The directory holds ``hparams.yaml`` (``save_hyperparameters()``), event files
(TensorBoardLogger) and/or ``metrics.csv`` (CSVLogger), and ``checkpoints/``.
Lightning's console output (with "Seed set to N" and any traceback) is not kept
in the version directory; a ``*.log`` there, or a training log beside
``lightning_logs/`` written while the run was active, is read for it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from labbook.model import RunFacts, flatten
from labbook.readers.files import load_yaml, read_csv_metrics
from labbook.recognisers.base import DirInfo, Recogniser
from labbook.recognisers.common import (
    apply_log,
    find_logs,
    has_event_file,
    merge_metrics,
    mtime_range,
    read_event_files,
    run_name,
)

_CKPT_EPOCH = re.compile(r"epoch=(\d+)")
_VERSION = re.compile(r"^version_\d+$")


class Lightning(Recogniser):
    framework = "lightning"

    def match(self, d: DirInfo) -> bool:
        if "hparams.yaml" not in d.files:
            return False
        return bool(_VERSION.match(d.path.name)) or "metrics.csv" in d.files or has_event_file(d.files)

    def read(self, d: DirInfo) -> Iterable[RunFacts]:
        facts = RunFacts(
            path=str(d.path),
            framework=self.framework,
            source_key=str(d.path),
            name=run_name(d.path, 3),
        )
        hp = load_yaml(d.path / "hparams.yaml")
        if isinstance(hp, dict):
            facts.config = flatten(hp)
        facts.files.append(str(d.path / "hparams.yaml"))
        ev = read_event_files(d.path)
        facts.metrics = ev.metrics
        facts.files += ev.files
        facts.truncated = ev.truncated
        facts.started_at, facts.ended_at = ev.first_wall_time, ev.last_wall_time
        if "metrics.csv" in d.files:
            csv_metrics, truncated = read_csv_metrics(d.path / "metrics.csv")
            merge_metrics(facts.metrics, csv_metrics)
            facts.truncated = facts.truncated or truncated
            facts.files.append(str(d.path / "metrics.csv"))
        if facts.started_at is None:
            facts.started_at, facts.ended_at = mtime_range(facts.files)
        for log in self._logs(d.path, facts):
            apply_log(facts, log, metrics_from_log=not facts.metrics)
            break
        self._end_marker(d.path, facts)
        yield facts

    def _logs(self, run_dir: Path, facts: RunFacts) -> list[Path]:
        """The run's own logs, else a log beside ``lightning_logs/`` from the same time."""
        own = find_logs(run_dir)
        if own:
            return own
        start, end = facts.started_at, facts.ended_at
        for ancestor in (run_dir.parent.parent, run_dir.parent):
            for log in find_logs(ancestor):
                lo, hi = mtime_range([log])
                if start is None or hi is None:
                    continue
                # The log was last written during or shortly after this run.
                if start - 5 <= hi <= (end or start) + 300:
                    return [log]
        return []

    @staticmethod
    def _end_marker(run_dir: Path, facts: RunFacts) -> None:
        """The last epoch's checkpoint is Lightning's end marker when max_epochs is known."""
        max_epochs = None
        for key in ("max_epochs", "trainer.max_epochs", "epochs", "num_epochs"):
            value = facts.config.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                max_epochs = value
                break
        ckpt_dir = run_dir / "checkpoints"
        try:
            names = [p.name for p in ckpt_dir.iterdir()] if ckpt_dir.is_dir() else []
        except OSError:
            names = []
        epochs = [int(m[1]) for n in names if (m := _CKPT_EPOCH.search(n))]
        if max_epochs is not None and epochs and max(epochs) >= max_epochs - 1:
            facts.end_marker = True
