"""``labbook diff RUN --working [-- CMD]``: a past run against what would run now.

"What changed since my best run?" — before launching. The other side of the diff is
a record of a run that has not happened: what ``labbook run -- CMD`` would record at
launch in the current directory (:func:`labbook.sources.launch.launch_facts`: git
HEAD with the uncommitted patch and untracked files, the interpreter's packages,
the seed and config the command line states; redacted as the store redacts), plus
the config the command would read: the config files it names (``--config
cfg.yaml``, ``cfg=…``, a ``*.yaml`` argument; :func:`labbook.sources.replicate.config_files_in`),
overridden by its own arguments, as ``labbook check`` reads a command. Keys that
neither the command nor its files state (defaults the script fills in) are taken
from RUN: nothing is known of them until it runs. Data paths in that config are
fingerprinted now. Nothing is run.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from labbook.errors import UsageError
from labbook.model import RunRecord

if TYPE_CHECKING:
    from labbook.store import Store

#: The sections a working-tree diff has (nothing has run: no metrics, speed, outcome).
WORKING_SECTIONS = ("config", "seed", "code", "data", "env", "command")
#: The id the working side has in a diff.
WORKING_ID = "working"


def working_config(
    rec: RunRecord, old_argv: Sequence[str] | None, argv: Sequence[str], cwd: str
) -> dict[str, Any]:
    """The config ``argv`` would run with, as far as it can be known before it runs."""
    from labbook.analysis.check import config_from_argv, load_config_file, match_key
    from labbook.capture.redact import redact_config
    from labbook.sources.replicate import config_files_in

    config = dict(rec.get("config") or {})
    for key in config_from_argv(list(old_argv or [])):
        found = match_key(key, config)
        if found is not None:
            del config[found]
    stated: dict[str, Any] = {}
    for _, path in config_files_in(argv, cwd):
        stated.update(load_config_file(path))
    stated.update(config_from_argv(list(argv)))
    for key, value in redact_config(stated).items():
        config[match_key(key, config) or key] = value
    return config


def working_record(
    store: Store,
    rec: RunRecord,
    argv: Sequence[str] | None,
    *,
    cwd: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> RunRecord:
    """The ``--json``-shaped record of what ``labbook run -- ARGV`` would record now in
    ``cwd`` (see the module docstring); ``argv`` None: ``rec``'s own command."""
    from labbook.capture.data import fingerprint_paths
    from labbook.capture.redact import redact_facts
    from labbook.capture.seed import pick_seed, seed_from_config
    from labbook.sources.launch import launch_facts

    old_argv = rec.get("command")
    command = list(argv) if argv else list(old_argv or [])
    if not command:
        raise UsageError(
            f"run {rec.get('id')} has no recorded command; name the one to compare",
            hint=f"labbook diff {rec.get('id')} --working -- python train.py …",
        )
    work = os.path.abspath(cwd or os.getcwd())
    facts = launch_facts(
        command, cwd=work, environ=dict(os.environ if environ is None else environ)
    )
    facts.config = working_config(rec, old_argv, command, work)
    if facts.seed.value is None:
        facts.seed = pick_seed(seed_from_config(facts.config), facts.seed)
    facts.data = fingerprint_paths(facts.config, work)
    facts = redact_facts(facts)
    from labbook.store import now_iso

    now = now_iso()
    return {
        "id": WORKING_ID,
        "name": "the working tree" + (" (RUN's command)" if not argv else ""),
        "path": work,
        "host": facts.host,
        "user": facts.user,
        "framework": "command",
        "status": "unknown",  # it has not run
        "status_reason": None,
        "failure": None,
        "started_at": None,
        "ended_at": None,
        "command": facts.command,
        "pid": None,
        "seed": {"value": facts.seed.value, "source": facts.seed.source, "known": facts.seed.known},
        "config": facts.config,
        "metrics": {},
        "git": dataclasses.asdict(facts.git) if facts.git is not None else None,
        "env": dataclasses.asdict(facts.env) if facts.env is not None else None,
        "gpu": None,
        "data": facts.data,
        "tags": [],
        "notes": [],
        "missing": False,
        "archived_at": None,
        "created_at": now,
        "updated_at": now,
    }


def diff_working(
    store: Store,
    run_id: str,
    argv: Sequence[str] | None,
    *,
    sections: Sequence[str] | None = None,
    include_same: bool = False,
    cwd: str | None = None,
) -> tuple[dict[str, Any], RunRecord, RunRecord]:
    """``labbook diff RUN --working``: ``(diff, RUN's record, the working record)``."""
    from labbook.analysis.diff import diff_runs, git_commits_between, other_runs_files

    a = store.record(run_id, heavy=True)
    b = working_record(store, a, argv, cwd=cwd)
    wanted = [s for s in WORKING_SECTIONS if sections is None or s in sections]
    result = diff_runs(
        a,
        b,
        sections=wanted,
        include_same=include_same,
        commits=git_commits_between,
        ignore_untracked=other_runs_files(store, [a, b]),
    )
    return result, a, b
