"""Hugging Face Trainer output directories.

``trainer_state.json`` (at the top once training ends, in each ``checkpoint-N/``
before that) holds ``log_history`` — every logged dict, the last one with
``train_runtime`` when training completed — plus ``global_step`` and
``max_steps``. ``all_results.json`` / ``train_results.json`` / ``eval_results.json``
hold final metrics. The TensorBoard directory it writes has an ``args`` text
summary: the TrainingArguments as JSON, which is where the config and seed come
from. ``training_args.bin`` is a pickle and is never loaded.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeGuard

from labbook.model import Point, RunFacts, Seed, flatten
from labbook.readers.files import load_json
from labbook.readers.values import BadValues, as_float, bad_step, shown_value, without_surrogates
from labbook.recognisers.base import DirInfo, Recogniser
from labbook.recognisers.common import (
    apply_log,
    find_logs,
    merge_metrics,
    mtime_range,
    read_event_files,
    run_name,
)

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
_RESULT_FILES = ("all_results.json", "train_results.json", "eval_results.json", "test_results.json")
_NOT_METRICS = {"step", "epoch", "total_flos", "train_steps_per_second", "train_samples_per_second"}


def _checkpoints(d: DirInfo) -> list[tuple[int, Path]]:
    out = []
    for name in d.dirs:
        m = _CHECKPOINT.match(name)
        if m and (d.path / name / "trainer_state.json").is_file():
            out.append((int(m[1]), d.path / name))
    return sorted(out)


class HFTrainer(Recogniser):
    framework = "hf-trainer"

    def match(self, d: DirInfo) -> bool:
        if d.has_any("trainer_state.json", "all_results.json", "train_results.json"):
            return True
        return bool(_checkpoints(d)) and not _CHECKPOINT.match(d.path.name)

    def read(self, d: DirInfo) -> Iterable[RunFacts]:
        facts = RunFacts(
            path=str(d.path),
            framework=self.framework,
            source_key=str(d.path),
            name=run_name(d.path),
        )
        state_path = d.path / "trainer_state.json"
        if not state_path.is_file():
            ckpts = _checkpoints(d)
            state_path = ckpts[-1][1] / "trainer_state.json" if ckpts else state_path
        state = load_json(state_path) if state_path.is_file() else None
        if isinstance(state, dict):
            facts.files.append(str(state_path))
            self._read_state(state, facts, state_path)
        final_step = 0
        if isinstance(state, dict):
            final_step = _step(state.get("global_step")) or 0
        for name in _RESULT_FILES:
            if name in d.files:
                bad = BadValues()
                res = load_json(d.path / name)
                facts.files.append(str(d.path / name))
                if isinstance(res, dict):
                    if "train_runtime" in res:
                        facts.end_marker = True
                    for key, value in res.items():
                        if (
                            _is_number(value)
                            and key not in _NOT_METRICS
                            and key not in facts.metrics
                        ):
                            number = as_float(value)
                            if number is None:
                                bad.add(key, f"{shown_value(value)} is too large for a float")
                                continue
                            facts.metrics[key] = [Point(final_step, number)]
                bad.report(d.path / name)
        ev = read_event_files(d.path)
        facts.files += ev.files
        args = _json_text(ev.texts.get("args"), d.path)
        if isinstance(args, dict):
            facts.config = flatten(args)
            if args.get("seed") is not None:
                facts.seed = Seed(args["seed"], "hf-args:seed")
        model_cfg = _json_text(ev.texts.get("model_config"), d.path)
        if isinstance(model_cfg, dict):
            facts.config.update(flatten(model_cfg, "model"))
        if not facts.metrics:
            merge_metrics(facts.metrics, ev.metrics)
        if "config.json" in d.files and not any(k.startswith("model.") for k in facts.config):
            mc = load_json(d.path / "config.json")
            if isinstance(mc, dict):
                facts.config.update(flatten(mc, "model"))
        for log in find_logs(d.path)[:1]:
            apply_log(facts, log, metrics_from_log=not facts.metrics)
        facts.started_at, facts.ended_at = ev.first_wall_time, ev.last_wall_time
        if facts.started_at is None:
            facts.started_at, facts.ended_at = mtime_range(facts.files)
        yield facts

    @staticmethod
    def _read_state(state: dict[str, Any], facts: RunFacts, path: Path) -> None:
        bad = BadValues()
        history = state.get("log_history")
        if history is None:
            history = []
        elif not isinstance(history, list):
            bad.add("log_history", f"{shown_value(history)} is not a list; ignored")
            history = []
        for index, entry in enumerate(history):
            if not isinstance(entry, dict):
                continue
            where = f"in log_history[{index}]"
            raw_step = entry.get("step")
            why = bad_step(raw_step) if _is_number(raw_step) else None
            if why is not None:
                bad.add("step", f"{why}; entry skipped", where)
                continue
            step = _step(raw_step) or 0
            if "train_runtime" in entry:
                facts.end_marker = True
            for key, value in entry.items():
                if key in _NOT_METRICS or not _is_number(value):
                    continue
                number = as_float(value)
                if number is None:
                    bad.add(key, f"{shown_value(value)} is too large for a float; skipped", where)
                    continue
                facts.metrics.setdefault(key, []).append(Point(step, number))
        bad.report(path)
        max_steps, global_step = state.get("max_steps"), state.get("global_step")
        if (
            not facts.end_marker
            and _is_number(max_steps)
            and _is_number(global_step)
            and global_step < max_steps
        ):
            # Stopped before max_steps with no final log: the process did not end cleanly.
            facts.truncated = True
            facts.status_reason = (
                f"killed: last checkpoint at step {global_step} of max_steps={max_steps}, "
                "no final trainer state"
            )
        for key in (
            "train_batch_size",
            "num_train_epochs",
            "max_steps",
            "eval_steps",
            "save_steps",
        ):
            if key in state and key not in facts.config:
                facts.config[key] = state[key]


def _step(value: Any) -> int | None:
    """A step from trainer_state.json (an int, or a float such as 10.0); None if none fits."""
    if not _is_number(value) or bad_step(value) is not None:
        return None
    try:
        return int(value)
    except (OverflowError, ValueError):
        return None


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _json_text(text: str | None, where: Path) -> Any:
    """A JSON text summary (``args``); keys that are no valid text (``\\ud800``) dropped, with
    one warning naming ``where``."""
    if not text:
        return None
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        return None
    bad = BadValues()
    doc = without_surrogates(doc, bad)
    bad.report(where)
    return doc
