"""labbook reproduce: a real git repository, a real run, a real worktree and a real rerun."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from labbook.sources.reproduce import gpu_checks, package_checks
from tests.conftest import git, run_cli

TRAIN = """\
import argparse, json, os, random

from extra import scale  # an untracked helper module

p = argparse.ArgumentParser()
p.add_argument("--seed", type=int, default=0)
p.add_argument("--lr", type=float, default=0.1)
p.add_argument("--data", default="data.csv")
args = p.parse_args()
random.seed(args.seed)
rows = open(args.data).read().split()
out = os.path.join("runs", f"run-{args.seed}-{os.getpid()}")
os.makedirs(out)
with open(os.path.join(out, "config.json"), "w") as f:
    json.dump({"seed": args.seed, "lr": args.lr, "data": args.data}, f)
loss = 1.0
with open(os.path.join(out, "metrics.jsonl"), "w") as f:
    for step in range(4):
        loss *= scale(0.5 + random.random() / 10) + len(rows) * 0
        f.write(json.dumps({"step": step, "loss": loss}) + "\\n")
print("final loss", loss)
"""


def _files(root: Path) -> dict[str, bytes]:
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and rel != ".git" and not rel.startswith((".git/", "runs/")):
            out[rel] = p.read_bytes()
    return out


def test_reproduce_round_trip(tmp_path: Path, db_path: Path) -> None:
    root = tmp_path / "project"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "train.py").write_text(TRAIN)
    (root / ".gitignore").write_text("runs/\n")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "initial")
    commit = git(root, "rev-parse", "HEAD").strip()
    # the run's code: the commit, an uncommitted edit, an untracked module; and a big
    # untracked file that labbook lists but does not keep
    (root / "train.py").write_text(TRAIN.replace("default=0.1", "default=0.2"))
    (root / "extra.py").write_text("def scale(x):\n    return x * 0.99\n")
    (root / "weights.txt").write_text("0.5\n" * 100_000)
    data = tmp_path / "data" / "train.csv"
    data.parent.mkdir()
    data.write_text("1\n2\n3\n")
    expected = _files(root)
    del expected["weights.txt"]
    env = {"OMP_NUM_THREADS": "3", "HF_TOKEN": "hf_abcdefghijklmnopqrstuvwx12345"}
    res = run_cli(
        "run", "--", sys.executable, "train.py", "--seed", "3", "--data", str(data),
        db=db_path, cwd=root, env=env,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    run = json.loads(run_cli("show", "@last", "--json", db=db_path).stdout)
    assert run["git"]["commit"] == commit and run["data"]["data"]["path"] == str(data)
    # afterwards: the code moves on, the data changes
    git(root, "commit", "-qam", "later")
    (root / "train.py").write_text(TRAIN.replace("range(4)", "range(5)"))
    data.write_text("1\n2\n3\n4\n")

    dest = tmp_path / "repro"
    res = run_cli("reproduce", run["id"], "--dir", str(dest), "--json", db=db_path, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    built = json.loads(res.stdout)
    tree = dest / "tree"
    # the worktree holds the run's commit + its patch + its untracked files, nothing else
    assert _files(tree) == expected
    assert git(tree, "rev-parse", "HEAD").strip() == commit
    assert built["untracked_restored"] == ["extra.py"] and built["patch_files"] == ["train.py"]
    cannot = built["cannot_restore"]
    assert any("weights.txt" in line and "not kept" in line for line in cannot), cannot
    assert any(line.startswith(f"data 'data': {data} changed since the run") for line in cannot), (
        cannot
    )
    # the environment, secrets left out
    env_sh = (dest / "env.sh").read_text()
    assert "export OMP_NUM_THREADS=3\n" in env_sh
    assert "# HF_TOKEN was set; its value was a secret" in env_sh
    assert "hf_abc" not in env_sh
    from importlib.metadata import version

    assert f"click=={version('click')}" in (dest / "requirements.txt").read_text().splitlines()
    run_sh = (dest / "run.sh").read_text()
    assert run_sh.splitlines()[-1] == f"exec {sys.executable} train.py --seed 3 --data {data}"
    # the user's repository is as it was (a worktree more, nothing else)
    assert (root / "train.py").read_text() == TRAIN.replace("range(4)", "range(5)")
    assert str(tree) in git(root, "worktree", "list")

    # a directory that is not empty is not overwritten
    res = run_cli("reproduce", run["id"], "--dir", str(dest), db=db_path)
    assert res.returncode == 1 and "exists and is not empty" in res.stderr

    # --exec: says what cannot be restored, then runs it through labbook run
    dest2 = tmp_path / "repro2"
    res = run_cli("reproduce", run["id"], "--dir", str(dest2), "--exec", db=db_path, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert out.index("cannot be restored:") < out.index("final loss")
    assert "weights.txt" in out and "changed since the run" in out
    rerun = json.loads(run_cli("show", "@last", "--json", db=db_path).stdout)
    assert rerun["id"] != run["id"] and rerun["git"]["root"] == str(dest2 / "tree")
    diff = json.loads(run_cli("diff", run["id"], "@last", "--json", db=db_path).stdout)
    # the same config, seed and command; the same commit and patch; what differs is
    # what the test changed (the data) and the file labbook did not keep
    for section in ("config", "seed", "command"):
        assert section not in diff, diff.get(section)
    code = diff["code"]
    assert code["commit"] == [commit, commit] and "commits" not in code and "patch" not in code
    assert code["untracked"] == {"removed": ["weights.txt"]}
    assert "content" in diff["data"]["changed"]["data"]["what"]
    assert rerun["seed"]["value"] == 3 and rerun["config"]["lr"] == 0.2


def test_reproduce_refuses_what_it_cannot_rebuild(tmp_path: Path, db_path: Path) -> None:
    work = tmp_path / "nogit"
    work.mkdir()
    (work / "t.py").write_text("print('loss=1')\n")
    res = run_cli("run", "--", sys.executable, "t.py", db=db_path, cwd=work)
    assert res.returncode == 0, res.stderr
    res = run_cli("reproduce", "@last", db=db_path)
    assert res.returncode == 1
    assert "has no recorded git state" in res.stderr


def test_what_cannot_be_restored_here() -> None:
    rec = {
        "env": {
            "source": "process",
            "python": "2.7.18",
            "cuda": "12.4",
            "gpus": ["NVIDIA H100 80GB HBM3", "NVIDIA H100 80GB HBM3"],
            "packages": {"torch": "2.3.1", "numpy": "1.26.4", "click": "8.1.7"},
        }
    }
    lines = package_checks(rec, here={"numpy": "2.0.0", "click": "8.1.7"})
    assert "python: the run had 2.7.18, here " in lines[0]
    assert "packages: 1 missing here (torch 2.3.1)" in lines
    assert "packages: 1 at other versions here (numpy 1.26.4, here 2.0.0)" in lines
    # this machine has no NVIDIA driver: NVML cannot say, and that is what is said
    (line,) = gpu_checks(rec)
    assert line.startswith("GPU: the run had CUDA driver 12.4 on 2× NVIDIA H100 80GB HBM3")
    assert "unknown here" in line
    assert gpu_checks({"env": {"cuda": None, "gpus": []}}) == []


def test_exec_then_diff_shows_no_difference_in_code_config_seed(
    tmp_path: Path, db_path: Path
) -> None:
    root = tmp_path / "project"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "train.py").write_text(TRAIN)
    (root / "data.csv").write_text("1\n2\n")
    (root / ".gitignore").write_text("runs/\n")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "initial")
    (root / "train.py").write_text(TRAIN.replace("range(4)", "range(3)"))
    (root / "extra.py").write_text("def scale(x):\n    return x\n")
    res = run_cli("run", "--", sys.executable, "train.py", "--seed", "7", db=db_path, cwd=root)
    assert res.returncode == 0, res.stderr
    first = json.loads(run_cli("show", "@last", "--json", db=db_path).stdout)["id"]
    git(root, "add", "extra.py")
    git(root, "commit", "-qam", "moved on")  # HEAD moves; the rebuild does not
    res = run_cli("reproduce", first, "--dir", str(tmp_path / "r"), "--exec", db=db_path)
    assert res.returncode == 0, res.stderr
    assert "everything recorded was restored" in res.stdout
    diff = json.loads(run_cli("diff", first, "@last", "--json", db=db_path).stdout)
    for section in ("code", "config", "seed", "command", "env"):
        assert section not in diff, diff.get(section)
    # the data file is the worktree's own copy: only its path and time differ
    assert set(diff["data"]["changed"]["data"]["what"]) <= {"path", "mtime"}
    # the rebuilt run is in the original's seed group: the worktree is the same repository
    shown = [json.loads(run_cli("show", r, "--json", db=db_path).stdout) for r in (first, "@last")]
    assert shown[0]["group"]["id"] == shown[1]["group"]["id"]
    assert shown[1]["group"]["size"] == 2
