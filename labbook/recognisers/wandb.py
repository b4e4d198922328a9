"""wandb run directories: ``wandb/run-*`` and ``wandb/offline-run-*``.

Plain files, where the wandb version writes them: ``files/config.yaml`` (each key
as ``{value: …}``), ``files/wandb-summary.json`` (final values and ``_step``),
``files/wandb-metadata.json`` (python, os, host, program, args, git, GPUs),
``files/output.log`` (console) and ``files/diff.patch``. Recent versions write
offline runs mostly into the binary ``run-<id>.wandb`` log, read by
:mod:`labbook.readers.wandb_log` (labbook's own protobuf declarations: wandb need
not be installed) for the full history, config, summary and exit code.

When a file that could hold the seed cannot be read — ``config.yaml`` unreadable
or corrupt, the binary log unreadable or torn before its ``run`` record, the
metadata holding the command line unreadable — and no other place gives it, the
seed is *unknown*, not *not set*.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from labbook.capture.env import env_from_wandb_metadata
from labbook.capture.seed import pick_seed, seed_from_argv, seed_from_config, seed_unreadable
from labbook.model import Failure, GitState, Point, RunFacts, Seed, flatten
from labbook.readers.files import load_json, load_yaml, read_text
from labbook.readers.values import as_float
from labbook.readers.wandb_log import WandbLog, read_wandb_log
from labbook.recognisers.base import DirInfo, Recogniser
from labbook.recognisers.common import apply_log, merge_metrics

_RUN_DIR = re.compile(r"^(offline-)?run-\d{8}_\d{6}-(?P<id>[a-z0-9]+)$")


class Wandb(Recogniser):
    framework = "wandb"

    def match(self, d: DirInfo) -> bool:
        m = _RUN_DIR.match(d.path.name)
        if not m:
            return False
        return "files" in d.dirs or any(n.endswith(".wandb") for n in d.files)

    def read(self, d: DirInfo) -> Iterable[RunFacts]:
        m = _RUN_DIR.match(d.path.name)
        run_id = m["id"] if m else d.path.name
        files = d.path / "files"
        facts = RunFacts(
            path=str(d.path),
            framework=self.framework,
            source_key=str(d.path),
            name=f"{d.path.parent.parent.name}/{run_id}",
        )
        cfg = load_yaml(files / "config.yaml") if (files / "config.yaml").is_file() else None
        if isinstance(cfg, dict):
            facts.config = _unwrap_config(cfg)
            facts.files.append(str(files / "config.yaml"))
        # Places that could hold the seed but could not be read (None: read, or absent).
        unread = [seed_unreadable(files / "config.yaml", cfg)]
        binary = next((d.path / n for n in sorted(d.files) if n.endswith(".wandb")), None)
        exit_code = None
        config_read = isinstance(cfg, dict)
        if binary is not None:
            facts.files.append(str(binary))
            log = read_wandb_log(binary)
            if log is not None:
                exit_code = log.exit_code
                self._read_binary(log, facts, has_summary=(files / "wandb-summary.json").is_file())
            if log is not None and log.run_record:
                config_read = True
            elif not config_read:
                unread.append(Seed.unknown())  # unreadable, or torn before the init config
        if config_read:
            unread = []  # one copy of the config was read: the other's loss hides nothing
        summary = (
            load_json(files / "wandb-summary.json")
            if (files / "wandb-summary.json").is_file()
            else None
        )
        if isinstance(summary, dict):
            facts.files.append(str(files / "wandb-summary.json"))
            _summary_points(facts, summary)
        meta = (
            load_json(files / "wandb-metadata.json")
            if (files / "wandb-metadata.json").is_file()
            else None
        )
        if isinstance(meta, dict):
            self._read_metadata(meta, facts)
        elif facts.command is None:  # the command line (--seed …) was there
            unread.append(seed_unreadable(files / "wandb-metadata.json", meta))
        patch = files / "diff.patch"
        if patch.is_file() and facts.git is not None:
            facts.git.diff = read_text(patch) or ""
            facts.git.dirty = bool(facts.git.diff.strip())
        out_log = files / "output.log"
        if out_log.is_file():
            apply_log(facts, out_log, metrics_from_log=not facts.metrics)
        if exit_code is not None:
            if exit_code == 0:
                facts.end_marker = True
            elif facts.failure is None:
                facts.failure = Failure("exception", f"exited with code {exit_code}")
        facts.seed = pick_seed(
            facts.seed,
            seed_from_config(facts.config),
            seed_from_argv(facts.command or []),
            *unread,
        )
        yield facts

    @staticmethod
    def _read_binary(log: WandbLog, facts: RunFacts, *, has_summary: bool) -> None:
        if not facts.config and log.config:
            facts.config = _unwrap_config(log.config)
        merge_metrics(facts.metrics, log.history)
        if log.summary and not has_summary:
            _summary_points(facts, log.summary)
        # A torn tail without an exit record is a run that is writing or was killed.
        facts.truncated = facts.truncated or (log.truncated and log.exit_code is None)
        facts.started_at = log.started_at or facts.started_at
        facts.name = log.name or facts.name
        facts.tags += [t for t in log.tags if t not in facts.tags]
        facts.host = log.host or facts.host
        if log.sweep_id:
            facts.sweep_kind, facts.sweep_id = "wandb", log.sweep_id
        facts.user = log.user or facts.user
        facts.command = log.command or facts.command
        facts.cwd = log.cwd or facts.cwd
        if log.metadata and facts.env is None:
            facts.env = env_from_wandb_metadata(log.metadata)
        if log.git_commit:
            from labbook.capture.git import redact_remote

            facts.git = GitState(
                root=log.cwd or "",
                commit=log.git_commit,
                remote=redact_remote(log.git_remote) if log.git_remote else None,
            )

    @staticmethod
    def _read_metadata(meta: dict[str, Any], facts: RunFacts) -> None:
        facts.env = env_from_wandb_metadata(meta)
        program = meta.get("program") or meta.get("codePath")
        args = meta.get("args")
        if program:
            args = args if isinstance(args, list) else []
            facts.command = ["python", str(program), *[str(a) for a in args]]
        git = meta.get("git")
        if isinstance(git, dict) and git.get("commit") and isinstance(git["commit"], str):
            from labbook.capture.git import redact_remote

            remote = git.get("remote")
            facts.git = GitState(
                root=str(meta.get("root") or ""),
                commit=git["commit"],
                remote=redact_remote(remote) if remote and isinstance(remote, str) else None,
            )
        host, user = meta.get("host"), meta.get("username")
        facts.host = host if host and isinstance(host, str) else facts.host
        facts.user = user if user and isinstance(user, str) else facts.user
        started = meta.get("startedAt")
        if isinstance(started, str) and facts.started_at is None:
            with contextlib.suppress(ValueError):
                facts.started_at = datetime.fromisoformat(
                    started.replace("Z", "+00:00")
                ).timestamp()
        if meta.get("cwd") and not facts.cwd:
            facts.cwd = str(meta["cwd"])


def _unwrap_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """wandb stores each config key as ``{"value": …, "desc": …}``; drop its own ``_wandb``."""
    plain = {}
    for key, value in cfg.items():
        if str(key).startswith("_wandb") or key == "wandb_version":
            continue
        if isinstance(value, dict) and "value" in value:
            value = value["value"]
        plain[key] = value
    return flatten(plain)


def _summary_points(facts: RunFacts, summary: dict[str, Any]) -> None:
    """Final values from the summary, for tags the history did not give."""
    step = summary.get("_step")
    step = int(step) if isinstance(step, (int, float)) and math.isfinite(step) else 0
    for key, value in flatten(summary).items():
        if key.startswith("_") or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        number = as_float(value)  # None for a 400-digit integer
        if key not in facts.metrics and number is not None:
            facts.metrics[key] = [Point(step, number)]
    runtime = summary.get("_runtime")
    if (
        isinstance(runtime, (int, float))
        and as_float(runtime) is not None
        and facts.started_at is not None
        and facts.ended_at is None
    ):
        facts.ended_at = facts.started_at + float(runtime)
