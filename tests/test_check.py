"""labbook check over a sequence of real runs made in a real git repository."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from labbook.analysis.check import check, compare, config_from_argv, entry_point, match_key
from labbook.sources.launch import launch
from labbook.store import Store
from tests.conftest import REPO, git, run_cli

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def _train(lr: str, seed: str, out: str) -> list[str]:
    return [sys.executable, "train.py", "--lr", lr, "--seed", seed, "--epochs", "15", "--out", out]


@pytest.fixture
def history(repo: Path, db_path: Path) -> dict[str, str]:
    """A baseline, a diverged run with a lesson, an OOM-like crash: real launches."""
    shutil.copy(REPO / "examples" / "train.py", repo / "train.py")
    git(repo, "add", "train.py")
    git(repo, "commit", "-q", "-m", "example")
    ids: dict[str, str] = {}
    with Store.open(db_path) as store:
        ids["baseline"] = launch(store, _train("0.05", "1", "runs/base"), cwd=str(repo)).run_id
        bad = launch(store, _train("5", "1", "runs/bad"), cwd=str(repo))
        assert bad.exit_code == 0
        ids["diverged"] = bad.run_id
        store.add_note(bad.run_id, "lr 5 blows up by epoch 3; keep lr ≤ 0.5", kind="lesson")
        crash = launch(
            store,
            [sys.executable, "-c", "raise MemoryError('boom')", "train.py", "--lr", "0.3"],
            cwd=str(repo),
        )
        ids["crash"] = crash.run_id
        assert store.record(ids["diverged"])["status"] == "diverged"
        assert store.record(ids["baseline"])["status"] == "finished"
    return ids


def test_exact_repeat_of_a_diverged_config(
    history: dict[str, str], repo: Path, db_path: Path
) -> None:
    with Store.open(db_path) as store:
        warnings = check(store, repo_root=str(repo), config={}, argv=_train("5", "1", "runs/x"))
    assert [w.run_id for w in warnings] == [history["diverged"]]
    w = warnings[0]
    assert w.match == "same" and w.repeat_of_failure
    assert w.matched == {"optimizer.lr": 5, "seed": 1, "epochs": 15}
    assert w.status == "diverged" and w.failure and w.failure["kind"] == "nan"
    assert [n["kind"] for n in w.notes] == ["lesson"]


def test_close_configs_say_what_differed(
    history: dict[str, str], repo: Path, db_path: Path
) -> None:
    with Store.open(db_path) as store:
        other_seed = check(store, repo_root=str(repo), config={}, argv=_train("5", "2", "o"))
        fixed_lr = check(store, repo_root=str(repo), config={}, argv=_train("0.05", "1", "o"))
        far = check(
            store, repo_root=str(repo), config={},
            argv=[sys.executable, "train.py", "--lr", "0.05", "--seed", "9", "--epochs", "3"],
        )  # fmt: skip
    assert [w.run_id for w in other_seed] == [history["diverged"]]
    assert other_seed[0].match == "close" and not other_seed[0].repeat_of_failure
    assert other_seed[0].differed == {"seed": (1, 2)}
    # The baseline finished and has no notes: never a warning. The diverged run is
    # close (only lr differs, of lr, seed and epochs).
    assert [w.run_id for w in fixed_lr] == [history["diverged"]]
    assert fixed_lr[0].differed == {"optimizer.lr": (5, 0.05)}
    assert far == []


def test_config_file_and_hydra_args(history: dict[str, str], repo: Path, db_path: Path) -> None:
    cfg = repo / "exp.yaml"
    cfg.write_text("optimizer:\n  lr: 5\nseed: 1\nepochs: 15\n")
    res = run_cli("check", "--config", str(cfg), db=db_path, cwd=repo)
    assert res.returncode == 0, res.stderr
    assert history["diverged"] in res.stdout and "lesson" in res.stdout
    res = run_cli("check", "--", "python", "train.py", "optimizer.lr=5", "seed=1", "epochs=15",
                  db=db_path, cwd=repo)  # fmt: skip
    assert history["diverged"] in res.stdout and "the same config as" in res.stdout


def test_strict_exits_1_only_on_an_exact_repeat(
    history: dict[str, str], repo: Path, db_path: Path
) -> None:
    res = run_cli("check", "--strict", "--", *_train("5", "1", "x"), db=db_path, cwd=repo)
    assert res.returncode == 1
    assert "lr 5 blows up" in res.stdout
    res = run_cli("check", "--strict", "--", *_train("5", "2", "x"), db=db_path, cwd=repo)
    assert res.returncode == 0 and "close to" in res.stdout
    res = run_cli("check", "--json", "--", *_train("5", "1", "x"), db=db_path, cwd=repo)
    import json

    out = json.loads(res.stdout)
    assert out[0]["id"] == history["diverged"] and out[0]["repeat_of_failure"] is True
    assert out[0]["notes"][0]["text"].startswith("lr 5 blows up")


def test_labbook_run_warns_first_and_strict_refuses(
    history: dict[str, str], repo: Path, db_path: Path
) -> None:
    res = run_cli("run", "--strict", "--", *_train("5", "1", "runs/again"), db=db_path, cwd=repo)
    assert res.returncode == 1
    assert "lr 5 blows up" in res.stderr and "exact repeat" in res.stderr
    assert not (repo / "runs" / "again").exists()  # it never started


def test_other_repositories_and_failure_notes(
    history: dict[str, str], repo: Path, db_path: Path, tmp_path: Path
) -> None:
    with Store.open(db_path) as store:
        assert check(store, repo_root=str(tmp_path / "elsewhere"), config={},
                     argv=_train("5", "1", "x")) == []  # fmt: skip
        # A finished run with a failure note is recalled too.
        store.add_note(history["baseline"], "results were wrong: eval used train split",
                       kind="failure")  # fmt: skip
        warnings = check(store, repo_root=str(repo), config={}, argv=_train("0.05", "1", "x"))
    assert warnings[0].run_id == history["baseline"] and warnings[0].match == "same"
    assert not warnings[0].repeat_of_failure  # it finished


def test_no_database_means_no_warnings(tmp_path: Path) -> None:
    res = run_cli("check", "--hook", "--line", "python train.py --lr 5", db=tmp_path / "none.db")
    assert res.returncode == 0 and res.stdout == "" and res.stderr == ""
    assert not (tmp_path / "none.db").exists()


def test_argv_parsing() -> None:
    assert config_from_argv(
        ["torchrun", "--nproc_per_node", "8", "train.py", "--lr=0.1", "--batch-size", "32",
         "--amp", "model.depth=50", "+trainer.devices=2", "~foo", "-v"]
    ) == {"lr": 0.1, "batch_size": 32, "amp": True, "model.depth": 50, "trainer.devices": 2}  # fmt: skip
    assert config_from_argv(["python", "-m", "pkg.train", "--seed", "-3"]) == {"seed": -3}
    acc = entry_point(["accelerate", "launch", "scripts/train_gpt.py", "--x", "1"], "/r", "/r")
    assert acc is not None and acc.key == "scripts/train_gpt.py"
    assert acc.same_as(entry_point(["python", "-u", "./scripts/train_gpt.py"], "/r", "/r"))  # type: ignore[arg-type]
    assert entry_point(["python", "-m", "pkg.train"], "/r", "/r").key == "pkg/train.py"  # type: ignore[union-attr]
    assert entry_point(["python", "../train.py"], "/r/src", "/r").key == "train.py"  # type: ignore[union-attr]
    assert entry_point(["python", "-c", "pass"], "/r", "/r") is None
    assert match_key("lr", {"optimizer.lr": 1, "model.depth": 2}) == "optimizer.lr"
    assert match_key("lr", {"optimizer.lr": 1, "scheduler.lr": 2}) is None
    assert match_key("batch-size", {"batch_size": 1}) == "batch_size"


def test_compare_definitions() -> None:
    old = {"optimizer.lr": 0.1, "seed": 1, "epochs": 10, "model": "resnet"}
    stated = ["lr", "seed"]  # what the old command said; the rest its script wrote
    assert compare({"lr": "0.1", "seed": 1.0}, old, old_stated=stated).kind == "same"
    assert compare({"lr": 0.1, "seed": 1, "epochs": 10}, old, old_stated=stated).kind == "same"
    # one value differs, the other agrees: close; both differ: neither
    assert compare({"lr": 0.2, "seed": 1}, old, old_stated=stated).kind == "close"
    assert compare({"lr": 0.2, "seed": 2}, old, old_stated=stated).kind is None
    # a single shared key is not enough when the old command said more (or the new)
    assert compare({"lr": 0.1}, old, old_stated=["lr", "seed", "epochs"]).kind is None
    assert compare({"lr": 0.1, "warmup": 5, "dropout": 0.1}, old, old_stated=stated).kind is None
    # ... unless it is all either says
    assert compare({"lr": 0.1}, old, old_stated=["lr"]).kind == "same"
    assert compare({}, old, old_stated=stated).kind is None
    # nested and flat names name the same key, both ways
    assert compare({"optimizer.lr": 0.1, "seed": 1}, {"lr": 0.1, "seed": 1}).kind == "same"
    # close needs more agreeing than differing or one-sided keys
    c = compare({"lr": 5, "seed": 2, "epochs": 15}, {"lr": 0.2, "seed": 2, "warmup": 100})
    assert c.kind is None and c.only_then == {"warmup": 100} and c.only_now == {"epochs": 15}
    # another config file is another config
    assert compare({"config": "a.yaml", "lr": 1}, {"config": "b.yaml", "lr": 1}).kind is None
    assert compare({"config": "./c/a.yaml", "lr": 1}, {"config": "c/a.yaml", "lr": 1}).kind == (
        "same"
    )
    # output locations and run names are not compared; optimizer.name is
    assert compare({"lr": 1, "out": "x", "run_name": "a"}, {"lr": 1, "out": "y"}).kind == "same"
    assert compare({"optimizer.name": "adam", "lr": 1, "seed": 1},
                   {"optimizer.name": "sgd", "lr": 1, "seed": 1}).kind == "close"  # fmt: skip


def test_fast_path_for_the_hooks(history: dict[str, str], repo: Path, db_path: Path) -> None:
    import subprocess

    line = "python train.py --lr 5 --seed 1 --epochs 15"
    cmd = [sys.executable, "-m", "labbook", "check", "--hook", "--line", line]
    res = subprocess.run([*cmd, "--db", str(db_path)], cwd=repo, capture_output=True, text=True,
                         timeout=60)  # fmt: skip
    assert res.returncode == 0 and history["diverged"] in res.stdout
    res = subprocess.run([*cmd, "--db", str(repo / "none.db")], cwd=repo, capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    assert (res.returncode, res.stdout, res.stderr) == (0, "", "")


def test_a_shell_line_is_the_command_that_runs_a_script() -> None:
    """The hooks pass the whole line: the simple command that runs a script is checked."""
    from labbook.analysis.check import split_line

    train = ["python", "train.py", "--lr", "5"]
    assert split_line("echo plain; python train.py --lr 5") == train
    assert split_line("python train.py --lr 5 > out.log 2>&1") == train
    assert split_line("python train.py --lr 5 | tee log && echo done") == train
    assert split_line("python train.py --lr 5 &") == train
    assert split_line("python train.py --epochs 2 >log") == ["python", "train.py", "--epochs", "2"]
    assert split_line("python train.py --name 'a b'") == ["python", "train.py", "--name", "a b"]
    assert split_line("make train") == ["make", "train"]
    assert split_line('python train.py --lr "5') == ["python", "train.py", "--lr", '"5']
