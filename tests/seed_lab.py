"""Seed groups recorded by real short training runs, for the tests that need them
(tests/test_groups.py, tests/test_tui_groups.py). It holds no tests itself.

:func:`record_lab` makes a real git repository holding a training script, then runs
it through the real ``labbook run`` CLI (a child process each) once per entry of a
plan, in a home of its own: the runs, their seeds, metrics and statuses are what
labbook recorded, not written by the test.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from tests.conftest import git, run_cli

#: One run of a plan: (label, the script's arguments but the seed, the seed).
Planned = tuple[str, Sequence[str], int]


def lab_env(home: Path) -> dict[str, str]:
    """An environment with a home and git identity of its own."""
    return {
        "HOME": str(home),
        "XDG_DATA_HOME": str(home / "share"),
        "XDG_CONFIG_HOME": str(home / "config"),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "T",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "T",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
    }


def record_lab(tmp: Path, script: str, plan: Sequence[Planned]) -> dict[str, object]:
    """``{"db", "env", "runs", "root"}``: a repository under ``tmp`` whose one commit
    holds ``script`` as train.py, and a store at ``tmp/labbook.db`` with one run of
    ``labbook run -- python train.py --seed SEED ARGS…`` per entry of ``plan``
    (in that order); ``runs``: label -> the ids of its runs, in plan order."""
    env = lab_env(tmp / "home")
    root = tmp / "project"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "train.py").write_text(script)
    git(root, "add", "train.py")
    git(root, "commit", "-q", "-m", "train")
    db = tmp / "labbook.db"
    runs: dict[str, list[str]] = {}
    for label, args, seed in plan:
        r = run_cli(
            "run", "--", "python", "train.py", "--seed", str(seed), *args, db=db, cwd=root, env=env
        )
        assert r.returncode == 0, r.stderr
        last = json.loads(run_cli("show", "@last", "--json", db=db, env=env).stdout)
        runs.setdefault(label, []).append(last["id"])
    return {"db": db, "env": env, "runs": runs, "root": root}
