"""TensorBoard run directories: event files from torch, tensorboardX or tensorboard.

A directory holding ``events.out.tfevents.*`` files is a run. Its sub-directories
belong to it: ``add_scalars`` writes one per series and ``add_hparams`` writes a
timestamp-named one holding the hparams (which become the run's config). A
``config.*`` file beside the event files is read as config too, and
``metrics.jsonl``/``metrics.csv`` beside them add the tags the event files lack.
"""

from __future__ import annotations

from collections.abc import Iterable

from labbook.capture.seed import pick_seed, seed_unreadable
from labbook.model import RunFacts, flatten
from labbook.readers.files import load_config
from labbook.recognisers.base import DirInfo, Recogniser
from labbook.recognisers.common import (
    apply_log,
    find_logs,
    has_event_file,
    read_event_files,
    read_line_files,
    run_name,
)


class TensorBoard(Recogniser):
    framework = "tensorboard"

    def match(self, d: DirInfo) -> bool:
        return has_event_file(d.files)

    def read(self, d: DirInfo) -> Iterable[RunFacts]:
        ev = read_event_files(d.path)
        facts = RunFacts(
            path=str(d.path),
            framework=self.framework,
            source_key=str(d.path),
            name=run_name(d.path),
            config=flatten(ev.hparams),
            metrics=ev.metrics,
            started_at=ev.first_wall_time,
            ended_at=ev.last_wall_time,
            truncated=ev.truncated,
            files=list(ev.files),
        )
        read_line_files(d.path, facts)
        cfg_path = d.first("config.yaml", "config.yml", "config.json", "config.toml")
        if cfg_path is not None:
            cfg = load_config(cfg_path)
            if cfg:
                facts.config = {**flatten(cfg), **facts.config}
            facts.seed = pick_seed(facts.seed, seed_unreadable(cfg_path, cfg))
            facts.files.append(str(cfg_path))
        for log in find_logs(d.path)[:1]:
            apply_log(facts, log, metrics_from_log=not facts.metrics)
        yield facts
