"""Data-loss regressions: a launch writing into a run directory another launch recorded
(``labbook replicate`` of a run with ``--out``), and several runs in one Slurm job."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.conftest import git, run_cli

#: A script that writes its run directory where --out says.
TRAIN = """\
import argparse, json, os

p = argparse.ArgumentParser()
p.add_argument("--seed", type=int, default=0)
p.add_argument("--lr", type=float, default=0.1)
p.add_argument("--out", default="runs/default")
args = p.parse_args()
os.makedirs(args.out, exist_ok=True)
with open(os.path.join(args.out, "config.json"), "w") as f:
    json.dump({"lr": args.lr, "seed": args.seed, "out": args.out}, f)
with open(os.path.join(args.out, "metrics.jsonl"), "w") as f:
    for step in range(3):
        f.write(json.dumps({"step": step, "loss": 1.0 / (step + 1 + args.seed)}) + "\\n")
print("done", args.out)
"""


def _project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "train.py").write_text(TRAIN)
    (root / ".gitignore").write_text("runs/\n")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "initial")
    return root


def _ls(db: Path) -> list[dict]:
    res = run_cli("ls", "--json", db=db)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def _launch(db: Path, root: Path, *argv: str) -> None:
    res = run_cli("run", "--", sys.executable, *argv, db=db, cwd=root)
    assert res.returncode == 0, res.stderr


def test_replicate_keeps_the_run_and_gives_each_replica_its_own_output(
    tmp_path: Path, db_path: Path
) -> None:
    root = _project(tmp_path)
    for s in (1, 2, 3):
        _launch(db_path, root, "train.py", "--lr", "0.1", "--seed", str(s), "--out", f"runs/b{s}")
    before = {r["id"]: r for r in _ls(db_path)}
    assert len(before) == 3
    res = run_cli("replicate", "runs/b2", "--seeds", "3", "--here", db=db_path, cwd=root)
    assert res.returncode == 0, res.stderr
    assert "3 of 3 replicas exited 0" in res.stderr
    runs = _ls(db_path)
    assert len(runs) == 6
    assert set(before) <= {r["id"] for r in runs}  # the originals are all there
    for s in (4, 5, 6):  # each replica wrote into a directory of its own
        assert (root / f"runs/b2-seed{s}" / "metrics.jsonl").is_file()
    # the seed-2 run still has its metrics
    b2 = next(r for r in runs if r["id"] in before and "b2" in json.dumps(r))
    show = run_cli("show", b2["id"], "--json", db=db_path)
    assert show.returncode == 0, show.stderr
    assert "loss" in show.stdout
    groups = run_cli("ls", "--group", "--json", db=db_path)
    assert groups.returncode == 0, groups.stderr
    assert '"n": 6' in groups.stdout.replace(" ", "").replace('"n":6', '"n": 6')


def test_a_second_launch_into_an_ended_runs_directory_is_a_run_of_its_own(
    tmp_path: Path, db_path: Path
) -> None:
    root = _project(tmp_path)
    _launch(db_path, root, "train.py", "--seed", "1", "--out", "runs/same")
    _launch(db_path, root, "train.py", "--seed", "2", "--out", "runs/same")
    runs = _ls(db_path)
    assert len(runs) == 2
    for r in runs:
        show = run_cli("show", r["id"], "--json", db=db_path)
        assert show.returncode == 0, show.stderr
        assert "loss" in show.stdout


def test_replicate_refuses_when_the_run_dir_is_not_on_the_command_line(
    tmp_path: Path, db_path: Path
) -> None:
    root = _project(tmp_path)
    _launch(db_path, root, "train.py", "--seed", "1")  # writes runs/default
    res = run_cli("replicate", "runs/default", "--seeds", "2", db=db_path, cwd=root)
    assert res.returncode != 0
    assert "runs/default" in res.stderr and "Traceback" not in res.stderr
    assert len(_ls(db_path)) == 1


def test_runs_in_one_slurm_job_are_runs_of_their_own_but_a_requeue_is_not(
    tmp_path: Path, db_path: Path
) -> None:
    (tmp_path / "envseed.py").write_text("import os\nprint('loss', os.environ['PL_GLOBAL_SEED'])\n")
    job = {"SLURM_JOB_ID": "777", "SLURM_CLUSTER_NAME": "c"}
    ids = []
    for s in (1, 2, 3):
        env = {**job, "PL_GLOBAL_SEED": str(s)}
        res = run_cli("run", "--", sys.executable, "envseed.py", db=db_path, cwd=tmp_path, env=env)
        assert res.returncode == 0, res.stderr
        ids.append(_ls(db_path)[0]["id"])
    assert len(set(ids)) == 3
    # a requeue (the restart count goes up) records into the run its first start made
    env = {**job, "PL_GLOBAL_SEED": "3", "SLURM_RESTART_COUNT": "1"}
    res = run_cli("run", "--", sys.executable, "envseed.py", db=db_path, cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stderr
    assert len(_ls(db_path)) == 3
    # srun ranks of one step are runs of their own
    for rank in ("0", "1"):
        env = {**job, "SLURM_JOB_ID": "778", "SLURM_STEP_ID": "0", "SLURM_PROCID": rank}
        env["PL_GLOBAL_SEED"] = "1"
        res = run_cli("run", "--", sys.executable, "envseed.py", db=db_path, cwd=tmp_path, env=env)
        assert res.returncode == 0, res.stderr
    assert len(_ls(db_path)) == 5
