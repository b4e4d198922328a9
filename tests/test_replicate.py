"""labbook replicate: real git repositories, real training scripts, real `labbook run` children."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.conftest import git, run_cli

#: A training script in the style of most: argparse flags, Hydra-style key=value
#: overrides, an optional YAML config, a run directory with its config and metrics.
TRAIN = """\
import argparse, json, os, random, sys

p = argparse.ArgumentParser()
p.add_argument("--seed", type=int, default=None)
p.add_argument("--lr", type=float, default=0.1)
p.add_argument("--config", default=None)
args, rest = p.parse_known_args()
cfg = {"lr": args.lr, "train": {"steps": 3}}
if args.config:
    import yaml
    with open(args.config) as f:
        cfg.update(yaml.safe_load(f))
for item in rest:  # Hydra-style overrides: seed=3, +trainer.seed=3
    key, _, value = item.lstrip("+").partition("=")
    node = cfg
    *parents, last = key.split(".")
    for k in parents:
        node = node.setdefault(k, {})
    node[last] = int(value) if value.lstrip("-").isdigit() else value
seed = args.seed if args.seed is not None else cfg.get("seed", cfg["train"].get("seed"))
if args.seed is not None:
    cfg["seed"] = args.seed
random.seed(seed)
if os.environ.get("SWEEP_LOG"):
    with open(os.environ["SWEEP_LOG"], "a") as f:
        f.write(f"{seed} {os.environ.get('LABBOOK_SWEEP')}\\n")
loss = 1.0
if os.environ.get("NO_RUN_DIR"):  # metrics on stdout only
    for step in range(cfg["train"]["steps"]):
        loss *= 0.5 + random.random() / 10
        print(f"step={step} loss={loss:.5f}")
    sys.exit(0)
out = os.path.join("runs", f"run-{seed}-{os.getpid()}")
os.makedirs(out)
with open(os.path.join(out, "config.json"), "w") as f:
    json.dump(cfg, f)
with open(os.path.join(out, "metrics.jsonl"), "w") as f:
    for step in range(cfg["train"]["steps"]):
        loss *= 0.5 + random.random() / 10
        f.write(json.dumps({"step": step, "loss": loss}) + "\\n")
print("final loss", loss)
"""

CFG = """\
# the experiment
lr: 0.1
train:
  steps: 3
  seed: 3   # change me
"""


def _project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "train.py").write_text(TRAIN)
    (root / "cfg.yaml").write_text(CFG)
    (root / ".gitignore").write_text("runs/\n")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "initial")
    return root


def _run(db: Path, root: Path, *argv: str, env: dict[str, str] | None = None) -> str:
    res = run_cli("run", "--", sys.executable, *argv, db=db, cwd=root, env=env)
    assert res.returncode == 0, res.stderr
    return _rows(db)[0]["id"]


def _rows(db: Path) -> list[dict]:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        rows = conn.execute(
            "SELECT id, seed_value, seed_source, config_sig, group_key, command FROM runs"
            " WHERE deleted_at IS NULL ORDER BY coalesce(started_at, created_at) DESC, rowid DESC"
        ).fetchall()
    finally:
        conn.close()
    return [dict(r) for r in rows]


def _seed(row: dict) -> object:
    return json.loads(row["seed_value"]) if row["seed_value"] is not None else None


def test_replicate_an_argv_seed_runs_new_seeds_in_the_same_seed_group(
    tmp_path: Path, db_path: Path
) -> None:
    root = _project(tmp_path)
    log = tmp_path / "sweep.log"
    env = {"SWEEP_LOG": str(log)}
    run_id = _run(db_path, root, "train.py", "--seed", "3", "--lr", "0.2", env=env)
    res = run_cli("replicate", run_id, "--seeds", "2", db=db_path, cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stderr
    assert "2 of 2 replicas exited 0" in res.stderr
    rows = _rows(db_path)
    assert len(rows) == 3
    original = next(r for r in rows if r["id"] == run_id)
    replicas = [r for r in rows if r["id"] != run_id]
    assert sorted(_seed(r) for r in replicas) == [4, 5]
    assert {r["config_sig"] for r in replicas} == {original["config_sig"]}  # one seed group
    for r in replicas:
        cmd = json.loads(r["command"])
        assert cmd[1:] == ["train.py", "--seed", str(_seed(r)), "--lr", "0.2"]
    # the children saw one sweep id, a new one
    lines = log.read_text().split("\n")[1:-1]
    assert [ln.split()[0] for ln in lines] == ["4", "5"]
    sweeps = {ln.split()[1] for ln in lines}
    assert len(sweeps) == 1 and sweeps.pop().startswith(f"rep-{run_id[:8]}")
    assert log.read_text().split("\n")[0].split()[1] == "None"  # the original had none

    # new seeds are distinct from every seed the group has, the replicas' too
    res = run_cli("replicate", run_id, "--seeds", "2", "--print", db=db_path, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"cd {root} && LABBOOK_SWEEP=rep-{run_id[:8]}")
    assert lines[0].endswith(f"run -- {sys.executable} train.py --seed 6 --lr 0.2")
    assert lines[1].endswith("--seed 7 --lr 0.2")
    assert len(_rows(db_path)) == 3  # --print runs nothing

    # a printed line runs as it is
    subprocess.run(
        ["bash", "-c", lines[0]],
        check=True,
        capture_output=True,
        timeout=120,
        env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"},
    )
    assert _seed(_rows(db_path)[0]) == 6


def test_replicate_an_inline_flag_and_parallel(tmp_path: Path, db_path: Path) -> None:
    # Metrics on stdout, no run directory: replicas running side by side in one
    # directory would otherwise join each other's run directories (labbook run).
    root = _project(tmp_path)
    env = {"NO_RUN_DIR": "1"}
    run_id = _run(db_path, root, "train.py", "--seed=10", env=env)
    res = run_cli("replicate", run_id, "--seeds", "3", "--parallel", "2", db=db_path, env=env)
    assert res.returncode == 0, res.stderr
    assert res.stderr.count("output: ") == 3  # each replica's output is in its log file
    rows = [r for r in _rows(db_path) if r["id"] != run_id]
    assert sorted(_seed(r) for r in rows) == [11, 12, 13]
    assert all(json.loads(r["command"])[2] == f"--seed={_seed(r)}" for r in rows)


def test_replicate_a_hydra_style_override(tmp_path: Path, db_path: Path) -> None:
    root = _project(tmp_path)
    env = {"NO_RUN_DIR": "1"}  # the seed as the command line states it, nowhere else
    run_id = _run(db_path, root, "train.py", "seed=3", "lr=0.5", env=env)
    original = _rows(db_path)[0]
    assert original["seed_source"] == "hydra:overrides"
    res = run_cli("replicate", run_id, "--seeds", "1", db=db_path, env=env)
    assert res.returncode == 0, res.stderr
    replica = _rows(db_path)[0]
    assert json.loads(replica["command"])[1:] == ["train.py", "seed=4", "lr=0.5"]
    assert _seed(replica) == 4 and replica["config_sig"] == original["config_sig"]

    # a nested, added override: +trainer.seed=3 -> +trainer.seed=N; the same seed
    # group as above (seed-like keys aside, the same config): 3 and 4 are taken
    run_id = _run(db_path, root, "train.py", "+trainer.seed=3", "lr=0.5", env=env)
    res = run_cli("replicate", run_id, "--seeds", "2", "--print", db=db_path, cwd=root)
    assert res.returncode == 0, res.stderr
    assert [ln.split(" -- ", 1)[1] for ln in res.stdout.splitlines()] == [
        f"{sys.executable} train.py +trainer.seed=5 lr=0.5",
        f"{sys.executable} train.py +trainer.seed=6 lr=0.5",
    ]


def test_replicate_a_config_file_key_through_a_copy(tmp_path: Path, db_path: Path) -> None:
    root = _project(tmp_path)
    before = (root / "cfg.yaml").read_bytes()
    run_id = _run(db_path, root, "train.py", "--config", "cfg.yaml")
    original = _rows(db_path)[0]
    assert (_seed(original), original["seed_source"]) == (3, "config:train.seed")
    res = run_cli("replicate", run_id, "--seeds", "2", db=db_path, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "the key train.seed of" in res.stderr
    assert (root / "cfg.yaml").read_bytes() == before  # the user's file, byte for byte
    replicas = [r for r in _rows(db_path) if r["id"] != run_id]
    assert sorted(_seed(r) for r in replicas) == [4, 5]
    assert {r["seed_source"] for r in replicas} == {"config:train.seed"}
    # the copy's path does not take the replicas out of the run's seed group
    assert {r["config_sig"] for r in replicas} == {original["config_sig"]}
    assert {r["group_key"] for r in replicas} == {original["group_key"]}
    for r in replicas:
        cmd = json.loads(r["command"])
        copy = Path(cmd[cmd.index("--config") + 1])
        assert copy.name == "cfg.yaml" and copy.parent.name == f"seed-{_seed(r)}"
        assert root not in copy.parents  # labbook's own directory, not the repository
        # only the value changed: comments and layout kept
        assert copy.read_text() == CFG.replace("seed: 3   #", f"seed: {_seed(r)}   #")
    assert git(root, "status", "--porcelain") == ""


def test_refuses_a_changed_working_tree_unless_here(tmp_path: Path, db_path: Path) -> None:
    root = _project(tmp_path)
    run_id = _run(db_path, root, "train.py", "--seed", "3")
    with open(root / "train.py", "a") as f:
        f.write("# tuned\n")
    res = run_cli("replicate", run_id, "--seeds", "2", "--print", db=db_path, cwd=root)
    assert res.returncode == 1
    assert res.stdout == ""
    assert res.stderr.splitlines() == [
        f"labbook: error: the working tree differs from {run_id}: 1 file changed (train.py);"
        " commit, or pass --here to use it as it is"
    ]
    git(root, "commit", "-qam", "tune")
    res = run_cli("replicate", run_id, "--seeds", "1", "--print", db=db_path, cwd=root)
    assert res.returncode == 1
    assert "HEAD is " in res.stderr and "1 file changed (train.py)" in res.stderr
    res = run_cli("replicate", run_id, "--seeds", "1", "--print", "--here", db=db_path, cwd=root)
    assert res.returncode == 0, res.stderr
    assert "running it as it is (--here)" in res.stderr
    assert res.stdout.strip().endswith("train.py --seed 4")


def test_a_seed_labbook_did_not_find_is_refused_with_seed_arg_as_the_way(
    tmp_path: Path, db_path: Path
) -> None:
    root = _project(tmp_path)
    run_id = _run(db_path, root, "train.py", "--lr", "0.3")
    res = run_cli("replicate", run_id, "--print", db=db_path, cwd=root)
    assert res.returncode == 1
    assert f"labbook: error: the seed of run {run_id} was not found" in res.stderr
    assert "--seed-arg" in res.stderr
    res = run_cli(
        "replicate", run_id, "--seeds", "2", "--print", "--seed-arg", "--seed", db=db_path, cwd=root
    )
    assert res.returncode == 0, res.stderr
    assert [ln.split(" -- ", 1)[1] for ln in res.stdout.splitlines()] == [
        f"{sys.executable} train.py --lr 0.3 --seed 1",
        f"{sys.executable} train.py --lr 0.3 --seed 2",
    ]
    res = run_cli("replicate", run_id, "--seeds", "1", "--print", "--seed-arg", "seed=", db=db_path)
    assert res.stdout.strip().endswith("train.py --lr 0.3 seed=1")
    res = run_cli("replicate", run_id, "--seed-arg", "nonsense", "--print", db=db_path)
    assert res.returncode == 2 and "expected --FLAG, KEY= or FILE:KEY" in res.stderr


def test_an_environment_seed(tmp_path: Path, db_path: Path) -> None:
    root = _project(tmp_path)
    run_id = _run(db_path, root, "train.py", env={"PL_GLOBAL_SEED": "7"})
    res = run_cli("replicate", run_id, "--seeds", "1", "--print", "--json", db=db_path, cwd=root)
    assert res.returncode == 0, res.stderr
    plan = json.loads(res.stdout)
    assert plan["seed_place"]["kind"] == "env"
    assert plan["replicas"][0]["env"]["PL_GLOBAL_SEED"] == "8"
    assert plan["replicas"][0]["command"][1:] == ["train.py"]


def test_sbatch_writes_an_array_job_that_picks_its_seed(tmp_path: Path, db_path: Path) -> None:
    root = _project(tmp_path)
    run_id = _run(db_path, root, "train.py", "--seed", "3", "--lr", "0.2")
    res = run_cli("replicate", run_id, "--seeds", "3", "--sbatch", db=db_path, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    script = Path(res.stdout.strip())
    text = script.read_text()
    assert text.startswith("#!/bin/bash\n")
    assert "#SBATCH --array=0-2\n" in text
    assert "\nseeds=(4 5 6)\n" in text
    assert 'seed="${seeds[${SLURM_ARRAY_TASK_ID:?not a Slurm array task}]}"' in text
    assert f"\ncd {root}\n" in text
    assert "export LABBOOK_SWEEP=rep-" in text
    assert f'run -- {sys.executable} train.py --seed "${{seed}}" --lr 0.2\n' in text
    assert len(_rows(db_path)) == 1  # nothing ran
    # the task with index 1 runs seed 5, through labbook run (no sbatch here)
    env = {**os.environ, "SLURM_ARRAY_TASK_ID": "1"}
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    proc = subprocess.run(
        ["bash", str(script)], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    row = _rows(db_path)[0]
    assert row["id"] != run_id and _seed(row) == 5
    assert json.loads(row["command"])[1:] == ["train.py", "--seed", "5", "--lr", "0.2"]
    # without a task id it says so and runs nothing
    env.pop("SLURM_ARRAY_TASK_ID")
    proc = subprocess.run(
        ["bash", str(script)], env=env, capture_output=True, text=True, check=False
    )
    assert proc.returncode != 0 and "not a Slurm array task" in proc.stderr
    assert len(_rows(db_path)) == 2


def test_sbatch_with_a_config_copy(tmp_path: Path, db_path: Path) -> None:
    root = _project(tmp_path)
    run_id = _run(db_path, root, "train.py", "--config", "cfg.yaml")
    res = run_cli("replicate", run_id, "--seeds", "2", "--sbatch", db=db_path, cwd=root)
    assert res.returncode == 0, res.stderr
    text = Path(res.stdout.strip()).read_text()
    assert '/seed-"${seed}"/cfg.yaml' in text
    assert "--name 'train config=cfg.yaml seed='\"${seed}\"" in text
    env = {**os.environ, "SLURM_ARRAY_TASK_ID": "0"}
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    proc = subprocess.run(
        ["bash", "-c", res.stdout.strip()], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert _seed(_rows(db_path)[0]) == 4
