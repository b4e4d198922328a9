"""`labbook diff` / `labbook compare` on real runs: each pair differs in one aspect only.

Runs are made the real way: the example training script (examples/train.py) or small
run directories (config.yaml + metrics.jsonl + train.log) in a real git repository,
recorded with the real `labbook import` (in-process for speed, as a child process
where the CLI itself is under test). Each run is imported right after it is made, as
`labbook watch` would, so its git state is the work tree's at that moment.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from labbook.analysis.diff import SECTIONS, diff_store, nearest_earlier, seed_peers, unified_diff
from labbook.capture.data import fingerprint_paths
from labbook.store import Store
from tests.conftest import REPO, git, run_cli

EXAMPLE = REPO / "examples" / "train.py"
ANSI = re.compile(r"\x1b\[")


# -- making runs -------------------------------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A git project with the example script; data/ is ignored, runs/ is not (on purpose)."""
    root = tmp_path / "project"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    shutil.copy(EXAMPLE, root / "train.py")
    (root / ".gitignore").write_text("data/\n")
    git(root, "add", "train.py", ".gitignore")
    git(root, "commit", "-q", "-m", "example training script")
    return root


def import_run(db: Path, path: Path) -> str:
    """`labbook import PATH` (the real command, in this process); the new run's id."""
    from labbook.cli import cli

    cli.main(["--db", str(db), "import", str(path), "--json"], standalone_mode=False)
    with Store.open(db) as store:
        from labbook.store.query import resolve

        return resolve(store, str(path))


def train(project: Path, db: Path, name: str, *args: str) -> str:
    out = project / "runs" / name
    subprocess.run(
        [sys.executable, "train.py", *args, "--out", str(out)],
        check=True,
        capture_output=True,
        cwd=project,
    )
    return import_run(db, out)


def write_run(project: Path, name: str, config: str, metrics: list[dict[str, float]]) -> Path:
    """A plain run directory as many scripts write it."""
    out = project / "runs" / name
    out.mkdir(parents=True)
    (out / "config.yaml").write_text(config)
    (out / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
    (out / "train.log").write_text("starting\ndone\n")
    return out


METRICS = [{"step": s, "loss": 1.0 / s, "val/acc": 0.5 + s / 100} for s in range(1, 11)]


def diff(db: Path, a: str, b: str, **kw: Any) -> dict[str, Any]:
    with Store.open(db) as store:
        return diff_store(store, a, b, **kw)[0]


def sections(d: dict[str, Any]) -> set[str]:
    return set(d) - {"a", "b"}


# -- one aspect at a time --------------------------------------------------------------------------


def test_identical_runs_have_an_empty_diff(project: Path, db_path: Path):
    a = train(project, db_path, "first", "--lr", "0.05", "--seed", "1")
    b = train(project, db_path, "again", "--lr", "0.05", "--seed", "1")
    d = diff(db_path, a, b)
    assert d == {"a": a, "b": b}  # runs/first's files are not "untracked code" of runs/again


def test_config_change_shows_config_only(project: Path, db_path: Path):
    a = import_run(db_path, write_run(project, "a", "lr: 0.1\nlayers: 2\nseed: 1\n", METRICS))
    b = import_run(db_path, write_run(project, "b", "lr: 0.2\nlayers: 2\nseed: 1\n", METRICS))
    d = diff(db_path, a, b)
    assert sections(d) == {"config"}
    assert d["config"] == {"changed": {"lr": [0.1, 0.2]}}


def test_config_added_and_removed_keys(project: Path, db_path: Path):
    a = import_run(db_path, write_run(project, "a", "lr: 0.1\nold: x\n", METRICS))
    b = import_run(db_path, write_run(project, "b", "lr: 0.1\nnew: [1, 2]\n", METRICS))
    assert diff(db_path, a, b)["config"] == {"added": {"new": [1, 2]}, "removed": {"old": "x"}}


def test_config_change_of_a_real_run_shows_config_and_its_effect(project: Path, db_path: Path):
    a = train(project, db_path, "lr05", "--lr", "0.05", "--seed", "1")
    b = train(project, db_path, "lr01", "--lr", "0.01", "--seed", "1")
    d = diff(db_path, a, b)
    assert sections(d) == {"config", "metrics"}  # metrics are the outcome, not a cause
    assert d["config"] == {"changed": {"optimizer.lr": [0.05, 0.01]}}


def test_seed_only(project: Path, db_path: Path):
    a = import_run(db_path, write_run(project, "a", "lr: 0.1\nseed: 1\n", METRICS))
    b = import_run(db_path, write_run(project, "b", "lr: 0.1\nseed: 2\n", METRICS))
    d = diff(db_path, a, b)
    assert sections(d) == {"seed"}
    assert d["seed"]["a"] == {"value": 1, "source": "config:seed", "known": True}
    assert d["seed"]["b"]["value"] == 2

    c = train(project, db_path, "s1", "--lr", "0.05", "--seed", "1")
    e = train(project, db_path, "s2", "--lr", "0.05", "--seed", "2")
    assert sections(diff(db_path, c, e)) == {"seed", "metrics"}


def test_code_edit(project: Path, db_path: Path):
    a = train(project, db_path, "before", "--seed", "1")
    with open(project / "train.py", "a") as f:
        f.write("# try a schedule next\n")
    b = train(project, db_path, "after", "--seed", "1")
    d = diff(db_path, a, b)
    assert sections(d) == {"code"}
    patch = d["code"]["patch"]
    assert patch["files_b_only"] == ["train.py"] and patch["files_changed"] == []
    assert "++# try a schedule next" in patch["diff"]  # a diff of the diffs
    assert "commits" not in d["code"]


def test_commits_between_runs_and_a_vanished_repository(project: Path, db_path: Path):
    a = train(project, db_path, "v1", "--seed", "1")
    (project / "README").write_text("notes\n")
    git(project, "add", "README")
    git(project, "commit", "-q", "-m", "Add a README")
    b = train(project, db_path, "v2", "--seed", "1")
    d = diff(db_path, a, b)
    assert sections(d) == {"code"}
    commits = d["code"]["commits"]
    assert commits["available"] is True
    assert [c["subject"] for c in commits["a_to_b"]] == ["Add a README"]
    assert commits["b_to_a"] == []

    shutil.rmtree(project / ".git")
    gone = diff(db_path, a, b)["code"]["commits"]
    assert gone["available"] is False and "no longer" in gone["note"]


def test_untracked_file(project: Path, db_path: Path):
    a = train(project, db_path, "a", "--seed", "1")
    (project / "notes.py").write_text("LR = 0.1\n")
    b = train(project, db_path, "b", "--seed", "1")
    d = diff(db_path, a, b)
    assert sections(d) == {"code"}
    assert d["code"]["untracked"] == {"added": ["notes.py"]}

    (project / "notes.py").write_text("LR = 0.2\n")
    c = train(project, db_path, "c", "--seed", "1")
    changed = diff(db_path, b, c)["code"]["untracked"]
    assert changed["changed"] == ["notes.py"] and "+LR = 0.2" in changed["diff"]


def _save_with_packages(store: Store, run_dir: Path, packages: dict[str, str]) -> str:
    """Record a run through the real recogniser + capture, with a given package set."""
    from labbook.sources.discover import Completer, discover

    [(rec, info)] = discover([run_dir])
    [facts] = list(rec.read(info))
    Completer().complete(facts)
    assert facts.env is not None
    facts.env.packages = dict(packages)
    return store.save_run(facts)[0]


def test_package_version(project: Path, db_path: Path):
    base = {"numpy": "1.26.4", "torch": "2.3.0"}
    with Store.open(db_path) as store:
        a = _save_with_packages(store, write_run(project, "a", "lr: 0.1\n", METRICS), base)
        b = _save_with_packages(
            store,
            write_run(project, "b", "lr: 0.1\n", METRICS),
            {**base, "torch": "2.4.1", "einops": "0.8.0"},
        )
    d = diff(db_path, a, b)
    assert sections(d) == {"env"}
    assert d["env"] == {
        "packages": {"changed": {"torch": ["2.3.0", "2.4.1"]}, "added": {"einops": "0.8.0"}}
    }


def test_data_file_changed(project: Path, db_path: Path):
    data = project / "data" / "train"
    data.mkdir(parents=True)
    for i in range(3):
        (data / f"part-{i}.csv").write_text(f"x,y\n{i},{i * 2}\n")
    config = "data:\n  train: data/train\n  test: data/missing\nlr: 0.1\n"
    a = import_run(db_path, write_run(project, "a", config, METRICS))
    (data / "part-1.csv").write_text("x,y\n1,3\n")  # same size, other content
    b = import_run(db_path, write_run(project, "b", config, METRICS))
    d = diff(db_path, a, b)
    assert sections(d) == {"data"}
    change = d["data"]["changed"]["data.train"]
    assert "content" in change["what"] and "size" not in change["what"]
    assert change["b"]["files"] == 3 and change["b"]["path"] == str(data)

    with Store.open(db_path) as store:
        assert set(store.record(a)["data"]) == {"data.train"}  # data/missing does not exist

    text = run_cli("diff", a, b, db=db_path).stdout
    assert "data.train" in text and "changed between the runs" in text


def test_outcome_and_speed_thresholds(project: Path, db_path: Path):
    a = train(project, db_path, "ok", "--lr", "0.05", "--seed", "1")
    b = train(project, db_path, "boom", "--lr", "5", "--seed", "1")
    d = diff(db_path, a, b)
    assert d["outcome"]["status"] == ["finished", "diverged"]
    assert "speed" not in d  # runs of a second are too short to compare speed
    assert "speed" in diff(db_path, a, b, include_same=True)


# -- seed noise -------------------------------------------------------------------------------------


#: Student's t 97.5% quantile with 2 degrees of freedom (any printed table).
T975_DF2 = 4.3027


def test_seed_noise_over_five_seeds(project: Path, db_path: Path):
    ids = [
        train(project, db_path, f"seed{s}", "--lr", "0.05", "--seed", str(s)) for s in range(1, 6)
    ]
    others = [
        train(project, db_path, f"slow{s}", "--lr", "0.002", "--seed", str(s)) for s in (1, 2, 3)
    ]
    with Store.open(db_path) as store:
        peers = seed_peers(store, store.record(ids[0]))
        assert sorted(p["id"] for p in peers) == sorted(ids[1:])  # not "slow": another config
        finals = [store.record(i)["metrics"]["val_loss"]["last"] for i in ids]
        slow = [store.record(i)["metrics"]["val_loss"]["last"] for i in others]

    # Two seeds of one config: the noise is the spread of the three other seeds.
    d = diff(db_path, ids[0], ids[1])
    entry = d["metrics"]["val_loss"]
    noise = entry["seed_noise"]
    sample = finals[2:]
    assert noise["n"] == 3 and noise["df"] == 2 and noise["test"] == "pair"
    assert math.isclose(noise["mean"], statistics.mean(sample))
    assert math.isclose(noise["std"], statistics.stdev(sample))
    interval = T975_DF2 * statistics.stdev(sample) * math.sqrt(2)
    assert math.isclose(noise["interval"], interval, rel_tol=1e-4)
    t = abs(entry["delta"]) / (statistics.stdev(sample) * math.sqrt(2))
    assert math.isclose(noise["p"], 1 - t / math.sqrt(2 + t * t))  # t with 2 df, closed form
    assert noise["within"] is (abs(entry["delta"]) <= noise["interval"])
    assert noise["within"] is True  # two seeds of one config differ by seed noise

    # Against another config with three seeds: Welch's test of the two groups' means.
    far = diff(db_path, ids[0], others[0])["metrics"]["val_loss"]["seed_noise"]
    assert far["test"] == "welch" and far["n"] == 8 and far["within"] is False
    assert far["groups"]["a"]["n"] == 5 and far["groups"]["b"]["n"] == 3
    assert math.isclose(far["difference"], statistics.mean(slow) - statistics.mean(finals))
    assert far["p"] < 0.05 and far["interval"] < abs(far["difference"])

    text = run_cli("diff", ids[0], ids[1], db=db_path).stdout
    shown = f"{noise['interval']:.2g}"
    assert re.search(
        rf"Δ val_loss [+-]\S+ is within seed noise \(±{re.escape(shown)} at 95%, n 3\)", text
    )
    far_text = run_cli("diff", ids[0], others[0], db=db_path).stdout
    assert re.search(
        r"exceeds seed noise: the seeds' means differ by .*Welch p .*n 5 \+ 3", far_text
    )


# -- the CLI ---------------------------------------------------------------------------------------


def test_cli_plain_json_stat_only_and_errors(project: Path, db_path: Path):
    a = train(project, db_path, "a", "--lr", "0.05", "--seed", "1")
    b = train(project, db_path, "b", "--lr", "0.1", "--seed", "2")

    plain = run_cli("diff", "runs/a", "runs/b", db=db_path)
    assert plain.returncode == 0, plain.stderr
    assert not ANSI.search(plain.stdout)  # piped: no colour, no pager
    assert "optimizer.lr  0.05 → 0.1" in plain.stdout and "1 (config:seed) → 2" in plain.stdout

    js = json.loads(run_cli("diff", a, b, "--json", db=db_path).stdout)
    assert js["a"] == a and js["b"] == b and set(js) - {"a", "b"} <= set(SECTIONS)
    assert js["config"]["changed"] == {"optimizer.lr": [0.05, 0.1]}
    assert set(js["metrics"]["val_loss"]) >= {"a", "b", "delta"}

    stat = run_cli("diff", a, b, "--stat", db=db_path).stdout
    assert re.search(r"config\s+1 changed, 0 added, 0 removed", stat)

    only = json.loads(run_cli("diff", a, b, "--only", "seed", "--json", db=db_path).stdout)
    assert set(only) == {"a", "b", "seed"}

    every = json.loads(run_cli("diff", a, b, "--all", "--json", db=db_path).stdout)
    assert set(every) == {"a", "b", *SECTIONS} and every["code"]["same"] is True

    alone = json.loads(run_cli("diff", "runs/b", "--json", db=db_path).stdout)
    assert (alone["a"], alone["b"]) == (a, b)  # nearest earlier run of the repository

    unknown = run_cli("diff", a, "nope", db=db_path)
    assert unknown.returncode != 0 and unknown.stdout == ""
    errors = [ln for ln in unknown.stderr.splitlines() if ln.startswith("labbook: error:")]
    assert errors == ["labbook: error: no run matches 'nope'"] and "Traceback" not in unknown.stderr

    bad = run_cli("diff", a, b, "--only", "colour", db=db_path)
    assert bad.returncode == 2 and "unknown section 'colour'" in bad.stderr

    first = run_cli("diff", "runs/a", db=db_path)
    assert first.returncode != 0 and "no run earlier than" in first.stderr


def test_compare_shows_only_differing_params(project: Path, db_path: Path):
    ids = [
        train(project, db_path, "a", "--lr", "0.05", "--seed", "1"),
        train(project, db_path, "b", "--lr", "0.1", "--seed", "1"),
        train(project, db_path, "c", "--lr", "0.05", "--seed", "2"),
    ]
    js = json.loads(run_cli("compare", *ids, "--json", db=db_path).stdout)
    assert [r["id"] for r in js["runs"]] == ids
    assert js["params"] == {"seed": [1, 1, 2], "optimizer.lr": [0.05, 0.1, 0.05]}
    assert "val_loss" in js["metrics"] and len(js["metrics"]["val_loss"]) == 3

    text = run_cli("compare", *ids, db=db_path).stdout
    assert "optimizer.lr" in text and "epochs" not in text and not ANSI.search(text)
    assert run_cli("compare", ids[0], db=db_path).returncode == 2


def test_nearest_earlier_is_in_the_same_repository(project: Path, db_path: Path, tmp_path: Path):
    a = train(project, db_path, "a", "--seed", "1")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    git(elsewhere, "init", "-q", "-b", "main")
    x = import_run(db_path, write_run(elsewhere, "x", "lr: 1\n", METRICS))
    b = train(project, db_path, "b", "--seed", "1")
    with Store.open(db_path) as store:
        assert nearest_earlier(store, b) == a
        assert x != a


# -- pieces ---------------------------------------------------------------------------------------


def _apply(a: list[str], patch: list[str]) -> list[str]:
    """Apply a unified diff (as unified_diff writes it) to lines ``a``."""
    out: list[str] = []
    pos = 0
    for line in patch[2:]:
        if line.startswith("@@"):
            start = int(re.match(r"@@ -(\d+)", line).group(1))  # type: ignore[union-attr]
            count = re.match(r"@@ -\d+(?:,(\d+))?", line).group(1)  # type: ignore[union-attr]
            begin = start - 1 if count != "0" else start
            out += a[pos:begin]
            pos = begin
        elif line.startswith(" "):
            out.append(a[pos])
            pos += 1
        elif line.startswith("-"):
            pos += 1
        elif line.startswith("+"):
            out.append(line[1:])
    return out + a[pos:]


@pytest.mark.parametrize("seed", range(12))
def test_unified_diff_applies(seed: int):
    import random

    rng = random.Random(seed)
    a = [f"line {rng.randint(0, 30)}\n" for _ in range(rng.randint(0, 60))]
    b = list(a)
    for _ in range(rng.randint(1, 6)):
        op = rng.choice(("ins", "del", "rep"))
        i = rng.randint(0, len(b))
        if op == "ins" or not b:
            b.insert(i, f"new {rng.random()}\n")
        elif op == "del":
            del b[min(i, len(b) - 1)]
        else:
            b[min(i, len(b) - 1)] = "changed\n"
    patch = unified_diff(a, b, "A", "B")
    assert _apply(a, patch) == b
    assert unified_diff(a, a, "A", "B") == []


def test_fingerprints_sample_big_files_and_skip_outputs(tmp_path: Path):
    run_dir = tmp_path / "runs" / "r1"
    run_dir.mkdir(parents=True)
    big = tmp_path / "big.bin"
    with open(big, "wb") as f:
        f.truncate(64 * 1024 * 1024)  # sparse: never read whole
    (tmp_path / "small.txt").write_text("hello\n")
    config = {
        "data.big": "big.bin",
        "data.small": str(tmp_path / "small.txt"),
        "output_dir": "elsewhere",
        "trainer.default_root_dir": str(tmp_path / "runs"),
        "url": "https://example.invalid/x",
        "name": "small.txt",  # no path hint in the key: not checked
        "resume": "runs/r1",  # the run directory itself
    }
    (tmp_path / "elsewhere").mkdir()
    fps = fingerprint_paths(config, str(tmp_path), skip=[str(run_dir)])
    assert set(fps) == {"data.big", "data.small"}
    assert fps["data.big"]["size"] == 64 * 1024 * 1024 and fps["data.big"]["complete"] is False
    assert fps["data.small"]["complete"] is True

    cache: dict[str, Any] = {}
    before = fingerprint_paths(config, str(tmp_path), skip=[str(run_dir)], cache=cache)
    with open(big, "r+b") as f:
        f.write(b"changed head")
    assert fingerprint_paths(config, str(tmp_path), cache=cache)["data.big"] == before["data.big"]
    after = fingerprint_paths(config, str(tmp_path), skip=[str(run_dir)])
    assert after["data.big"]["fingerprint"] != before["data.big"]["fingerprint"]
    assert os.path.getsize(big) == after["data.big"]["size"]
