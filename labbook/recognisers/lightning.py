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

from labbook.capture.seed import pick_seed, seed_unreadable
from labbook.model import RunFacts, flatten
from labbook.readers.files import load_yaml
from labbook.recognisers.base import DirInfo, Recogniser
from labbook.recognisers.common import (
    apply_log,
    find_logs,
    has_event_file,
    mtime_range,
    read_event_files,
    read_line_files,
    run_name,
)

_CKPT_EPOCH = re.compile(r"epoch=(\d+)")
_VERSION = re.compile(r"^version_\d+$")
_VERSION_NUM = re.compile(r"^version_(\d+)$")
_V_NUM = re.compile(rb"v_num[:=]\s*(\d+)")
#: How much of a console log's end is searched for the progress bar's ``v_num``.
_TAIL_BYTES = 256 * 1024


def _printed_version(log: Path) -> int | None:
    """The last logger version (``v_num``) a console log's progress bar printed."""
    try:
        with open(log, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - _TAIL_BYTES))
            tail = fh.read()
    except OSError:
        return None
    found = _V_NUM.findall(tail)
    return int(found[-1]) if found else None


class Lightning(Recogniser):
    framework = "lightning"

    def match(self, d: DirInfo) -> bool:
        if "hparams.yaml" not in d.files:
            return False
        return (
            bool(_VERSION.match(d.path.name)) or "metrics.csv" in d.files or has_event_file(d.files)
        )

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
        facts.seed = pick_seed(facts.seed, seed_unreadable(d.path / "hparams.yaml", hp))
        facts.files.append(str(d.path / "hparams.yaml"))
        ev = read_event_files(d.path)
        facts.metrics = ev.metrics
        facts.files += ev.files
        facts.truncated = ev.truncated
        facts.started_at, facts.ended_at = ev.first_wall_time, ev.last_wall_time
        read_line_files(d.path, facts)
        if facts.started_at is None:
            facts.started_at, facts.ended_at = mtime_range(facts.files)
        for log in self._logs(d.path, facts):
            apply_log(facts, log, metrics_from_log=not facts.metrics)
            break
        self._end_marker(d.path, facts)
        yield facts

    def _logs(self, run_dir: Path, facts: RunFacts) -> list[Path]:
        """The run's own logs, else a console log kept beside ``lightning_logs/``.

        ``python train.py 2>&1 | tee train.log`` leaves the console log (the seed,
        any traceback, the "max_epochs reached" line) up to three levels above the
        version dir. Lightning's progress bar prints the logger version
        (``v_num: 3``), which ties a log to its run; a log without one is taken
        only if it was last written while the run was, by its mtime.
        """
        own = find_logs(run_dir)
        if own:
            return own
        version = _VERSION_NUM.match(run_dir.name)
        start, end = facts.started_at, facts.ended_at
        by_time: list[Path] = []
        for ancestor in list(run_dir.parents)[:3]:
            for log in find_logs(ancestor):
                printed = _printed_version(log)
                if printed is not None:
                    if version is not None and printed == int(version[1]):
                        return [log]
                    continue
                _lo, hi = mtime_range([log])
                if start is not None and hi is not None and start - 5 <= hi <= (end or start) + 300:
                    by_time.append(log)
        return by_time[:1]

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
