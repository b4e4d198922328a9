"""labbook diff RUN --working: a recorded run against the working tree and a command, before it runs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.conftest import git, run_cli

TRAIN = """\
import argparse, json, os

import yaml

p = argparse.ArgumentParser()
p.add_argument("--config")
p.add_argument("--seed", type=int, default=0)
p.add_argument("--lr", type=float, default=0.1)
args = p.parse_args()
cfg = {"epochs": 2}
cfg.update(yaml.safe_load(open(args.config)))
cfg.update(seed=args.seed, lr=args.lr)
out = os.path.join("runs", f"run-{os.getpid()}")
os.makedirs(out)
json.dump(cfg, open(os.path.join(out, "config.json"), "w"))
with open(os.path.join(out, "metrics.jsonl"), "w") as f:
    for step in range(cfg["epochs"]):
        f.write(json.dumps({"step": step, "loss": 1.0 / (step + 1)}) + "\\n")
"""


def _diff(db: Path, cwd: Path, *args: str) -> dict:
    res = run_cli("diff", "--json", *args, db=db, cwd=cwd)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_diff_working_after_editing_code_and_config(tmp_path: Path, db_path: Path) -> None:
    root = tmp_path / "project"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "train.py").write_text(TRAIN)
    (root / "cfg.yaml").write_text("layers: 2\nwidth: 64\n")
    (root / ".gitignore").write_text("runs/\n")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "initial")
    cmd = [sys.executable, "train.py", "--config", "cfg.yaml", "--seed", "3"]
    res = run_cli("run", "--", *cmd, db=db_path, cwd=root)
    assert res.returncode == 0, res.stderr
    run = json.loads(run_cli("show", "@last", "--json", db=db_path).stdout)
    assert run["config"]["layers"] == 2 and run["config"]["epochs"] == 2

    # nothing changed yet: no difference
    assert set(_diff(db_path, root, run["id"], "--working")) == {"a", "b"}

    # edit the code and a config value
    (root / "train.py").write_text(TRAIN.replace('"epochs": 2', '"epochs": 4'))
    (root / "cfg.yaml").write_text("layers: 3\nwidth: 64\n")
    d = _diff(db_path, root, run["id"], "--working")
    assert d["b"] == "working"
    assert d["config"] == {"changed": {"layers": [2, 3]}}
    assert d["code"]["commit"] == [run["git"]["commit"]] * 2
    assert d["code"]["patch"]["files_b_only"] == ["cfg.yaml", "train.py"]
    assert '+    cfg = {"epochs": 4}' not in d["code"]["patch"]["diff"]  # a diff of patches
    assert '+cfg = {"epochs": 4}' in d["code"]["patch"]["diff"]
    assert "command" not in d and "seed" not in d and "metrics" not in d
    assert len(json.loads(run_cli("ls", "--json", db=db_path).stdout)) == 1  # nothing ran

    # another command: its seed and arguments
    d = _diff(db_path, root, run["id"], "--working", "--", *cmd[:-1], "4", "--lr", "0.5")
    assert d["seed"]["a"]["value"] == 3 and d["seed"]["b"]["value"] == 4
    assert d["config"]["changed"] == {"layers": [2, 3], "lr": [0.1, 0.5]}
    assert d["command"]["b"][-2:] == ["--lr", "0.5"]

    # the text: B is the working tree
    res = run_cli("diff", run["id"], "--working", "--only", "config", db=db_path, cwd=root)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[1] == "B  working  the working tree (RUN's command)"
    assert "layers  2 → 3" in res.stdout

    # a command without --working is a usage error
    res = run_cli("diff", run["id"], "@last", "python", db=db_path, cwd=root)
    assert res.returncode == 2 and "at most two runs" in res.stderr
