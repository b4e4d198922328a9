"""``labbook check`` measured: a labelled set of commands against real recorded runs.

The store is built once for the module, in a real git repository, by real launches
(``labbook.sources.launch.launch``, the code behind ``labbook run``; one run through
the real ``labbook run`` CLI) of small scripts, and by ``labbook import`` of run
directories (two ``labbook.json`` markers of torchrun / accelerate runs and one
directory written by ``examples/train.py`` run without labbook). Each case then asks
:func:`labbook.analysis.check.check` (the function ``labbook check``, ``labbook run``
and the shell hook call) about one command and compares the warnings with the
expected ones: which past run, and whether *same* or *close* (see the definitions in
:mod:`labbook.analysis.check`). Precision and recall are over warnings: a warning is
right when its run and its kind are expected.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from labbook.analysis.check import check, load_config_file, split_line
from labbook.capture.git import find_repo_root
from labbook.sources.launch import launch
from labbook.store import Store
from tests.conftest import REPO, git

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")

OTHER_PY = """\
import argparse, sys
p = argparse.ArgumentParser()
p.add_argument("--lr", type=float, default=0.1)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--epochs", type=int, default=10)
p.add_argument("--batch-size", type=int, default=32)
a, _ = p.parse_known_args()
if a.batch_size >= 256:
    print("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB", file=sys.stderr)
    sys.exit(1)
print("ok")
"""
PKG_TRAIN_PY = """\
import argparse
p = argparse.ArgumentParser()
p.add_argument("--lr", type=float, default=0.1)
p.add_argument("--epochs", type=int, default=10)
p.add_argument("--batch-size", type=int, default=32)
a = p.parse_args()
if a.batch_size > 100:
    raise ValueError("batch too large for the sampler")
"""
HYDRA_PY = """\
import sys
cfg = dict(a.lstrip("+").split("=", 1) for a in sys.argv[1:] if "=" in a)
if int(cfg.get("model.depth", 18)) > 100:
    print("RuntimeError: CUDA out of memory. Tried to allocate 8.00 GiB", file=sys.stderr)
    sys.exit(1)
"""
NOARGS_PY = "raise RuntimeError('no data under ./data')\n"
CFG_PY = """\
import argparse, sys
p = argparse.ArgumentParser()
p.add_argument("--config")
p.add_argument("--lr", type=float, default=0.1)
a = p.parse_args()
if "big" in a.config:
    print("torch.OutOfMemoryError: CUDA out of memory.", file=sys.stderr)
    sys.exit(1)
"""


@dataclass
class Lab:
    repo: Path
    other_repo: Path
    db: Path
    #: label -> run id
    ids: dict[str, str]


def _launch(store: Store, repo: Path, *args: str) -> str:
    return launch(store, [sys.executable, *args], cwd=str(repo), use_pty=False).run_id


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """The past runs (label: command → how it ended), recorded for real."""
    base = tmp_path_factory.mktemp("labelled")
    home = base / "home"
    with pytest.MonkeyPatch.context() as mp:
        for key, value in {
            "HOME": str(home),
            "XDG_DATA_HOME": str(home / ".local" / "share"),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_AUTHOR_NAME": "Test",
            "GIT_AUTHOR_EMAIL": "test@example.invalid",
            "GIT_COMMITTER_NAME": "Test",
            "GIT_COMMITTER_EMAIL": "test@example.invalid",
        }.items():
            mp.setenv(key, value)
        mp.delenv("LABBOOK_DB", raising=False)
        yield _build(base)


def _build(base: Path) -> Lab:
    repo = base / "project"
    (repo / "src").mkdir(parents=True)
    (repo / "pkg").mkdir()
    (repo / "configs").mkdir()
    shutil.copy(REPO / "examples" / "train.py", repo / "train.py")
    shutil.copy(REPO / "examples" / "train.py", repo / "src" / "train.py")
    (repo / "other.py").write_text(OTHER_PY)
    (repo / "pkg" / "__init__.py").write_text("")
    (repo / "pkg" / "train.py").write_text(PKG_TRAIN_PY)
    (repo / "hydra_train.py").write_text(HYDRA_PY)
    (repo / "noargs.py").write_text(NOARGS_PY)
    (repo / "cfg_train.py").write_text(CFG_PY)
    (repo / "configs" / "big.yaml").write_text("model:\n  width: 8192\n")
    (repo / "configs" / "small.yaml").write_text("model:\n  width: 64\n")
    (repo / ".gitignore").write_text("runs/\nimported/\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "scripts")
    other_repo = base / "elsewhere"
    other_repo.mkdir()
    shutil.copy(REPO / "examples" / "train.py", other_repo / "train.py")
    git(other_repo, "init", "-q", "-b", "main")
    git(other_repo, "add", ".")
    git(other_repo, "commit", "-q", "-m", "a copy")
    db = base / "labbook.db"
    ids: dict[str, str] = {}
    t = "train.py"
    with Store.open(db) as store:
        ids["d1"] = _launch(store, repo, t, "--lr", "5", "--seed", "1", "--epochs", "15",
                            "--out", "runs/d1")  # fmt: skip
        store.add_note(ids["d1"], "lr 5 blows up; keep lr <= 0.5", kind="lesson")
        ids["g1"] = _launch(store, repo, t, "--lr", "0.02", "--seed", "11", "--epochs", "30",
                            "--batch-size", "4", "--out", "runs/g1")  # fmt: skip
        ids["f1"] = _launch(store, repo, t, "--lr", "0.1", "--seed", "5", "--epochs", "8",
                            "--batch-size", "32", "--out", "runs/f1")  # fmt: skip
        store.add_note(ids["f1"], "eval used the train split", kind="failure")
        ids["d3"] = _launch(store, repo, t, "--lr", "4", "--seed", "7", "--epochs", "50",
                            "--batch-size", "32", "--out", "runs/d3")  # fmt: skip
        ids["oom"] = _launch(store, repo, "other.py", "--lr", "0.01", "--seed", "1",
                             "--epochs", "15", "--batch-size", "512")  # fmt: skip
        ids["g2"] = _launch(store, repo, "other.py", "--lr", "0.01", "--seed", "1",
                            "--epochs", "15", "--batch-size", "32")  # fmt: skip
        ids["src"] = _launch(store, repo, "src/train.py", "--lr", "8", "--seed", "3",
                             "--epochs", "10", "--batch-size", "8", "--out", "runs/src")  # fmt: skip
        ids["mod"] = _launch(store, repo, "-m", "pkg.train", "--lr", "0.1", "--batch-size",
                             "128", "--epochs", "5")  # fmt: skip
        ids["hyd"] = _launch(store, repo, "hydra_train.py", "model.depth=152",
                             "optimizer.lr=0.1", "trainer.devices=8", "seed=0")  # fmt: skip
        ids["noa"] = _launch(store, repo, "noargs.py")
        ids["cfg"] = _launch(store, repo, "cfg_train.py", "--config", "configs/big.yaml",
                             "--lr", "0.1")  # fmt: skip
    # one run through the real `labbook run`, one import through the real `labbook import`
    env = {**os.environ, "LABBOOK_DB": str(db)}
    res = subprocess.run(
        [sys.executable, "-m", "labbook", "run", "--no-check", "--", sys.executable, t, "--lr",
         "6", "--seed", "2", "--epochs", "60", "--batch-size", "64", "--out", "runs/cli"],
        cwd=repo, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    imported = repo / "imported"
    _marker(imported / "tr", "failed", {"lr": 0.3, "seed": 1, "epochs": 40, "batch_size": 64},
            ["torchrun", "--nproc_per_node", "8", t, "--lr", "0.3", "--seed", "1",
             "--epochs", "40", "--batch-size", "64"])  # fmt: skip
    _marker(imported / "acc", "failed", {"lr": 0.2, "seed": 2, "warmup": 100},
            ["accelerate", "launch", "--num_processes", "2", "--mixed_precision", "fp16", t,
             "--lr", "0.2", "--seed", "2", "--warmup", "100"])  # fmt: skip
    subprocess.run(
        [sys.executable, str(repo / t), "--lr", "5", "--seed", "4", "--epochs", "20",
         "--out", str(imported / "imp")],
        cwd=base, capture_output=True, check=True, timeout=60,
    )  # fmt: skip
    res = subprocess.run([sys.executable, "-m", "labbook", "import", str(imported)], cwd=repo,
                         env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert res.returncode == 0, res.stderr
    with Store.open(db) as store:
        for rid, path in store.conn.execute("SELECT id, path FROM runs"):
            if path and os.path.basename(path) in ("cli", "tr", "acc", "imp"):
                ids[os.path.basename(path)] = rid
        status = {k: store.record(v)["status"] for k, v in ids.items()}
        assert store.record(ids["imp"])["command"] is None  # run without labbook
    assert status == {
        "d1": "diverged", "g1": "finished", "f1": "finished", "d3": "diverged",
        "oom": "failed", "g2": "finished", "src": "diverged", "mod": "failed", "hyd": "failed",
        "noa": "failed", "cfg": "failed", "cli": "diverged", "tr": "failed",
        "acc": "failed", "imp": "diverged",
    }  # fmt: skip
    (repo / "exp5.yaml").write_text("optimizer:\n  lr: 5\nseed: 1\nepochs: 15\n")
    return Lab(repo, other_repo, db, ids)


def _marker(path: Path, status: str, config: dict[str, object], command: list[str]) -> None:
    path.mkdir(parents=True)
    marker = {"config": config, "command": command, "status": status,
              "metrics": {"loss": [2.0, 1.5]}}  # fmt: skip
    (path / "labbook.json").write_text(json.dumps(marker))


#: (command line or "--config FILE [-- line]", cwd below the repo, expected warnings).
#: Expected: {past run label: "same" | "close"}; {} is no warning.
CASES: list[tuple[str, str, dict[str, str]]] = [
    # the false positive of issue 11: another script, one key in common
    ("python anything.py --lr 0.01", ".", {}),
    ("python other.py --lr 0.01 --seed 1 --epochs 15 --batch-size 512", ".", {"oom": "same"}),
    ("python other.py --lr 0.01", ".", {}),  # one key of the four that run stated
    # another script with the same keys (and values) as the OOM run
    ("python train.py --lr 0.01 --seed 9 --epochs 3 --batch-size 512", ".", {}),
    ("python train.py --lr 5 --seed 1 --epochs 15", ".", {"d1": "same"}),
    ("python train.py --lr 5 --seed 1 --epochs 15 --out runs/other", ".", {"d1": "same"}),
    ("python train.py --lr 5 --seed 2 --epochs 15", ".", {"d1": "close"}),  # seed only
    ("python train.py --lr=5 --seed=1 --epochs=15", ".", {"d1": "same"}),
    ("python train.py optimizer.lr=5 seed=1 epochs=15", ".", {"d1": "same"}),  # nested names
    ("python train.py --lr 5 --seed 1 --epochs 15 --batch-size 16", ".", {"d1": "same"}),
    ("python train.py --lr 5 --seed 1", ".", {"d1": "same"}),  # 2 of its 3 keys
    ("python train.py --lr 5", ".", {}),  # 1 of its 3 keys: not enough
    ("python train.py --lr 0.05 --seed 1 --epochs 15", ".", {"d1": "close"}),
    # a repeat of a run that finished well: nothing to warn about
    ("python train.py --lr 0.02 --seed 11 --epochs 30 --batch-size 4", ".", {}),
    ("python train.py --lr 0.1 --seed 5 --epochs 8 --batch-size 32", ".", {"f1": "same"}),
    ("python train.py --lr 4 --seed 7 --epochs 50 --batch-size 64", ".", {"d3": "close"}),
    ("python train.py --lr 6 --seed 2 --epochs 60 --batch-size 64", ".", {"cli": "same"}),
    # the entry point is the path in the repository, not the file name
    ("python src/train.py --lr 8 --seed 3 --epochs 10 --batch-size 8", ".", {"src": "same"}),
    ("python train.py --lr 8 --seed 3 --epochs 10 --batch-size 8", ".", {}),
    ("python train.py --lr 8 --seed 3 --epochs 10 --batch-size 8", "src", {"src": "same"}),
    ("python ../train.py --lr 5 --seed 1 --epochs 15", "src", {"d1": "same"}),
    ("python ./train.py --lr 5 --seed 1 --epochs 15", ".", {"d1": "same"}),
    ("python {repo}/train.py --lr 5 --seed 1 --epochs 15", ".", {"d1": "same"}),
    # launchers
    (
        "torchrun --nproc_per_node 8 train.py --lr 0.3 --seed 1 --epochs 40 --batch-size 64",
        ".",
        {"tr": "same"},
    ),
    ("python train.py --lr 0.3 --seed 1 --epochs 40 --batch-size 64", ".", {"tr": "same"}),
    (
        "torchrun --nproc_per_node=4 train.py --lr 0.3 --seed 1 --epochs 40 --batch-size 32",
        ".",
        {"tr": "close"},
    ),
    (
        "torchrun --nproc_per_node 8 other.py --lr 0.3 --seed 1 --epochs 40 --batch-size 64",
        ".",
        {},
    ),
    (
        "accelerate launch --num_processes 2 train.py --lr 0.2 --seed 2 --warmup 100",
        ".",
        {"acc": "same"},
    ),
    ("accelerate launch train.py --lr 0.2 --seed 2 --warmup 50", ".", {"acc": "close"}),
    (
        "accelerate launch --config_file acc.yaml other.py --lr 0.2 --seed 2 --warmup 100",
        ".",
        {},
    ),
    (
        "python -m accelerate.commands.launch train.py --lr 0.2 --seed 2 --warmup 100",
        ".",
        {"acc": "same"},
    ),
    # modules
    ("python -m pkg.train --lr 0.1 --batch-size 128 --epochs 5", ".", {"mod": "same"}),
    ("python pkg/train.py --lr 0.1 --batch-size 128 --epochs 5", ".", {"mod": "same"}),
    ("python -m pkg.other --lr 0.1 --batch-size 128 --epochs 5", ".", {}),
    ("python -m pkg.train --lr 0.1 --batch-size 64 --epochs 5", ".", {"mod": "close"}),
    (
        "torchrun --standalone --nproc_per_node 2 -m pkg.train --lr 0.1 --batch-size 128"
        " --epochs 5",
        ".",
        {"mod": "same"},
    ),
    (
        "CUDA_VISIBLE_DEVICES=0 python -u train.py --lr 5 --seed 1 --epochs 15",
        ".",
        {"d1": "same"},
    ),
    ("nohup python train.py --lr 5 --seed 1 --epochs 15 --out runs/n", ".", {"d1": "same"}),
    # Hydra-style key=value
    (
        "python hydra_train.py model.depth=152 optimizer.lr=0.1 trainer.devices=8 seed=0",
        ".",
        {"hyd": "same"},
    ),
    (
        "python hydra_train.py +model.depth=152 optimizer.lr=0.1 trainer.devices=8 seed=0"
        " hydra.run.dir=outputs/x",
        ".",
        {"hyd": "same"},
    ),
    (
        "python hydra_train.py model.depth=152 optimizer.lr=0.1 trainer.devices=8 seed=1",
        ".",
        {"hyd": "close"},
    ),
    ("python hydra_train.py optimizer.lr=0.1", ".", {}),
    ("python hydra_train.py model.depth=50 optimizer.lr=0.01 trainer.devices=1 seed=0", ".", {}),
    ("python other.py model.depth=152 optimizer.lr=0.1 trainer.devices=8 seed=0", ".", {}),
    # no config at all
    ("python noargs.py", ".", {"noa": "same"}),
    ("python noargs.py --fast", ".", {}),
    ("python anything.py", ".", {}),
    ("python train.py", ".", {}),
    ('python -c "import train"', ".", {}),
    # config files
    ("python cfg_train.py --config configs/big.yaml --lr 0.1", ".", {"cfg": "same"}),
    ("python cfg_train.py --config configs/small.yaml --lr 0.1", ".", {}),
    ("python cfg_train.py --lr 0.1", ".", {}),
    # a run recorded without its command (run without labbook, then imported)
    ("python train.py --lr 5 --seed 4 --epochs 20", ".", {}),
    # labbook check --config FILE: alone it compares with every run; with a command,
    # with that entry point's runs only
    ("--config exp5.yaml", ".", {"d1": "same", "oom": "close"}),
    ("--config exp5.yaml -- python train.py", ".", {"d1": "same"}),
    # names and places are not compared; new flags the old run never had are one-sided
    (
        "python train.py --lr 5 --seed 1 --epochs 15 --resume ckpt.pt --run-name again",
        ".",
        {"d1": "same"},
    ),
    ("python train.py --lr 5 --seed 1 --epochs 15 --amp", ".", {"d1": "same"}),
    ("python train.py --lr 5 --seed 9 --epochs 3 --batch-size 2", ".", {}),  # most keys differ
    ("python other.py --lr 0.01 --seed 1 --epochs 15 --batch-size 32", ".", {"oom": "close"}),
    # `labbook run` checks by itself; the hook stays quiet
    ("labbook run -- python train.py --lr 5 --seed 1 --epochs 15", ".", {}),
    # another repository: none of these runs
    ("python train.py --lr 5 --seed 1 --epochs 15", "@elsewhere", {}),
]


def _ask(lab: Lab, line: str, where: str) -> list[tuple[str, str]]:
    """What ``labbook check`` says (as ``check_before`` calls it): [(run id, kind)]."""
    cwd = str(lab.other_repo if where == "@elsewhere" else (lab.repo / where).resolve())
    line = line.replace("{repo}", str(lab.repo))
    config: dict[str, object] = {}
    argv = split_line(line)
    if argv[:1] == ["--config"]:
        config = load_config_file(os.path.join(cwd, argv[1]))
        argv = argv[3:] if argv[2:3] == ["--"] else argv[2:]
    with Store.open(lab.db, create=False) as store:
        warnings = check(store, repo_root=find_repo_root(cwd), config=config, argv=argv, cwd=cwd)
    return [(w.run_id, w.match) for w in warnings]


def test_precision_and_recall_over_the_labelled_set(lab: Lab) -> None:
    assert len(CASES) >= 40
    label = {v: k for k, v in lab.ids.items()}
    expected_n = issued = right = exact = 0
    wrong: list[str] = []
    for line, where, expected in CASES:
        got = {label.get(rid, rid): kind for rid, kind in _ask(lab, line, where)}
        expected_n += len(expected)
        issued += len(got)
        hits = sum(1 for k, v in got.items() if expected.get(k) == v)
        right += hits
        exact += got == expected
        if got != expected:
            wrong.append(f"  {line!r} in {where}: expected {expected}, got {got}")
    precision = right / issued if issued else 1.0
    recall = right / expected_n if expected_n else 1.0
    print(
        f"\nlabbook check over {len(CASES)} labelled cases: {issued} warnings issued,"
        f" {expected_n} expected, {right} right; precision {precision:.1%},"
        f" recall {recall:.1%}; {exact}/{len(CASES)} cases exactly right"
    )
    print("\n".join(wrong) or "  (no case wrong)")
    assert precision >= 0.9 and recall >= 0.9, "\n".join(wrong)


def _cli(lab: Lab, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "labbook", *args],
        cwd=cwd or lab.repo,
        env={**os.environ, "LABBOOK_DB": str(lab.db), "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_cli_and_the_hook_say_the_same(lab: Lab) -> None:
    """The real CLI, the hook's fast path and `labbook run` agree with the cases."""
    line = "python anything.py --lr 0.01"  # issue 11's false positive
    assert _cli(lab, "check", "--hook", "--line", line).stdout == ""
    res = _cli(lab, "check", "--", *split_line(line))
    assert res.returncode == 0 and res.stdout == ""
    assert "no past runs like this one went wrong" in res.stderr
    res = _cli(
        lab, "check", "--json", "--", *split_line("python train.py --lr 5 --seed 1 --epochs 15")
    )
    out = json.loads(res.stdout)
    assert [(w["id"], w["match"], w["entry_point"]) for w in out] == [
        (lab.ids["d1"], "same", "train.py")
    ]
    # the hook's fast path: the same warning as lines
    res = _cli(lab, "check", "--hook", "--line", "python train.py --lr 0.05 --seed 1 --epochs 15")
    assert res.returncode == 0 and res.stderr == ""
    lines = res.stdout.splitlines()
    assert lines[0].startswith(
        f"labbook: a config close to run {lab.ids['d1']} (runs/d1) of train.py,"
    )
    assert "which ended diverged: nan" in lines[0]
    assert lines[1] == "  that run diverged with lr 5.0; yours is 0.05"
    assert lines[2] == "  same: seed=1, epochs=15"
    assert "lesson" in lines[3] and "lr 5 blows up" in lines[3]
    res = _cli(lab, "check", "--hook", "--line", "python other.py --lr 0.01 --seed 1 --epochs 15"
               " --batch-size 32")  # fmt: skip
    assert "  that run failed with batch_size 512; yours is 32" in res.stdout.splitlines()
    res = _cli(lab, "check", "--hook", "--line", "python train.py --lr 5 --seed 2 --epochs 15")
    assert "  that run diverged with seed 1; yours is 2 (only the seed differs)" in res.stdout
    res = _cli(lab, "check", "--hook", "--line", "python train.py --lr 5 --seed 1 --amp")
    out_lines = res.stdout.splitlines()
    assert "  that run also set epochs 15; yours leaves it to the default" in out_lines
    assert "  yours also sets amp true; that run has no record of it" in out_lines
    # the same from a subdirectory, through ../
    res = _cli(lab, "check", "--hook", "--line", "python ../train.py --lr 5 --seed 1 --epochs 15",
               cwd=lab.repo / "src")  # fmt: skip
    assert f"the same config as run {lab.ids['d1']}" in res.stdout
    # labbook run warns first with the same lines, and --strict refuses an exact repeat
    res = _cli(lab, "run", "--strict", "--", sys.executable, "train.py", "--lr", "5", "--seed",
               "1", "--epochs", "15", "--out", "runs/again")  # fmt: skip
    assert res.returncode == 1 and f"the same config as run {lab.ids['d1']}" in res.stderr
    assert not (lab.repo / "runs" / "again").exists()
