"""Sweeps: a Hydra multirun (the repository's fixture, and a real short training script
that writes the multirun layout), wandb runs of one sweep (real offline runs), an
MLflow parent run, and ``labbook ls --sweep``: the swept keys as columns, a row per
point folded over its seeds."""

from __future__ import annotations

import csv
import io
import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, run_cli

SWEEP_SCRIPT = """\
# A training script that writes what a Hydra multirun writes, one job per (lr, seed):
# multirun/DATE/TIME/N/.hydra/{config,hydra,overrides}.yaml and metrics.csv.
import os, random, sys
root = sys.argv[1]
sweep = os.path.join(root, "multirun", "2026-12-01", "10-00-00")
os.makedirs(sweep, exist_ok=True)
open(os.path.join(sweep, "multirun.yaml"), "w").write("hydra:\\n  mode: MULTIRUN\\n")
n = 0
for lr in (0.3, 0.05):
    for seed in (1, 2, 3):
        job = os.path.join(sweep, str(n))
        os.makedirs(os.path.join(job, ".hydra"))
        open(os.path.join(job, ".hydra", "config.yaml"), "w").write(
            f"seed: {seed}\\nlr: {lr}\\nepochs: 4\\nmodel:\\n  hidden: 16\\n"
        )
        open(os.path.join(job, ".hydra", "overrides.yaml"), "w").write(
            f"- lr={lr}\\n- seed={seed}\\n"
        )
        open(os.path.join(job, ".hydra", "hydra.yaml"), "w").write(
            "hydra:\\n  mode: MULTIRUN\\n  sweep:\\n    dir: multirun/2026-12-01/10-00-00\\n"
            f"    subdir: ${{hydra.job.num}}\\n  job:\\n    name: train\\n    num: {n}\\n"
            f"  runtime:\\n    cwd: {root}\\n    output_dir: {job}\\n"
        )
        rng = random.Random(seed)
        w = 0.0
        with open(os.path.join(job, "metrics.csv"), "w") as f:
            f.write("step,val_loss\\n")
            for step in range(1, 5):
                w += lr * (3.0 - w) + rng.gauss(0, 0.02)
                f.write(f"{step},{(3.0 - w) ** 2:.6f}\\n")
        n += 1
"""


def _ok(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_hydra_fixture_is_one_sweep_of_one_point(tmp_path: Path, db_path: Path) -> None:
    src = tmp_path / "hydra"
    shutil.copytree(FIXTURES / "hydra" / "multirun", src / "multirun")
    _ok(run_cli("import", str(src), db=db_path))
    recs = json.loads(_ok(run_cli("ls", "--json", db=db_path)))
    assert len(recs) == 3
    sweep = {json.dumps(r["sweep"], sort_keys=True) for r in recs}
    assert len(sweep) == 1
    s = recs[0]["sweep"]
    assert s["kind"] == "hydra" and s["size"] == 3 and s["id"].startswith("s")
    assert {r["group"]["size"] for r in recs} == {3}  # seeds 1, 2, 3 of one config
    view = json.loads(_ok(run_cli("ls", "--sweep", "--json", db=db_path)))
    assert len(view) == 1 and view[0]["swept"] == [] and view[0]["kind"] == "hydra"
    assert view[0]["source"] == str(src / "multirun" / "2026-11-20" / "11-00-00")
    assert [p["size"] for p in view[0]["points"]] == [3]
    text = _ok(run_cli("ls", "--sweep", s["id"], "--format", "plain", db=db_path))
    assert "no key varies but the seed" in text and "3 finished" in text


def test_swept_parameters_as_columns(tmp_path: Path, db_path: Path) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    (root / "sweep.py").write_text(SWEEP_SCRIPT)
    subprocess.run([sys.executable, "sweep.py", str(root)], cwd=root, check=True)
    _ok(run_cli("import", str(root), db=db_path))
    recs = json.loads(_ok(run_cli("ls", "-n", "0", "--json", db=db_path)))
    assert len(recs) == 6 and {r["sweep"]["size"] for r in recs} == {6}
    views = json.loads(_ok(run_cli("ls", "--sweep", "--json", db=db_path)))
    assert len(views) == 1
    view = views[0]
    assert view["swept"] == ["lr"]  # seed varies too, but it is the seed
    points = {p["params"]["lr"]: p for p in view["points"]}
    assert set(points) == {0.3, 0.05}
    for lr, p in points.items():
        members = [r for r in recs if r["config"]["lr"] == lr]
        values = [r["metrics"]["val_loss"]["last"] for r in members]
        assert p["size"] == 3 and sorted(p["members"]) == sorted(r["id"] for r in members)
        stat = p["metrics"]["val_loss"]
        assert stat["mean"] == pytest.approx(statistics.mean(values), rel=1e-12)
        assert stat["std"] == pytest.approx(statistics.stdev(values), rel=1e-12)
    assert view["best_point"] == points[0.3]["id"]  # the lower mean loss
    text = _ok(run_cli("ls", "--sweep", view["id"], "--format", "plain", db=db_path))
    lines = text.splitlines()
    assert "swept: lr" in lines[0]
    assert lines[1].split()[:3] == ["lr", "n", "status"]
    assert any(ln.split()[0] == "0.3" and " 3 " in ln for ln in lines[2:4])
    assert lines[-1].startswith("best val_loss: lr=0.3")
    rows = list(
        csv.DictReader(io.StringIO(_ok(run_cli("ls", "--sweep", "--format", "csv", db=db_path))))
    )
    assert sorted(float(r["config.lr"]) for r in rows) == [0.05, 0.3]
    # a run of the sweep names it too
    again = json.loads(_ok(run_cli("ls", "--sweep", recs[0]["id"], "--json", db=db_path)))
    assert again[0]["id"] == view["id"]
    # ls --group folds the same seeds
    groups = json.loads(_ok(run_cli("ls", "--group", "--json", db=db_path)))
    assert sorted(g["size"] for g in groups) == [3, 3]


def test_sweep_errors(tmp_path: Path, db_path: Path) -> None:
    src = tmp_path / "hydra"
    shutil.copytree(FIXTURES / "hydra" / "multirun", src / "multirun")
    _ok(run_cli("import", str(src), db=db_path))
    r = run_cli("ls", "--sweep", "nosuchthing", db=db_path)
    assert r.returncode == 1 and r.stderr.startswith("labbook: error: no sweep or run nosuchthing")
    r = run_cli("ls", "--group", "--sweep", db=db_path)
    assert r.returncode == 2 and "two views" in r.stderr


def test_wandb_sweep_id(tmp_path: Path, db_path: Path) -> None:
    pytest.importorskip("wandb")
    script = tmp_path / "t.py"
    script.write_text(
        "import sys, wandb\n"
        "run = wandb.init(project='sw', mode='offline', config={'lr': 0.1, 'seed': int(sys.argv[1])})\n"
        "for i in range(3):\n"
        "    run.log({'loss': 1.0 / (i + 1 + int(sys.argv[1]))})\n"
        "run.finish()\n"
    )
    for seed in (1, 2):
        subprocess.run(
            [sys.executable, str(script), str(seed)],
            cwd=tmp_path,
            check=True,
            capture_output=True,
            env={**__import__("os").environ, "WANDB_SWEEP_ID": "abc123sw", "WANDB_SILENT": "true"},
            timeout=120,
        )
    _ok(run_cli("import", str(tmp_path / "wandb"), db=db_path))
    recs = json.loads(_ok(run_cli("ls", "--json", db=db_path)))
    assert len(recs) == 2
    assert {r["sweep"]["kind"] for r in recs} == {"wandb"}
    assert {r["sweep"]["size"] for r in recs} == {2}
    view = json.loads(_ok(run_cli("ls", "--sweep", "abc123sw", "--json", db=db_path)))
    assert view[0]["source"] == "abc123sw" and view[0]["size"] == 2


def test_mlflow_parent_run(tmp_path: Path, db_path: Path) -> None:
    """Two runs of the MLflow file-store fixture made children of one parent (the tag
    MLflow writes for a nested run: tags/mlflow.parentRunId)."""
    exp = FIXTURES / "mlflow" / "file_store" / "mlruns" / "178489019516624687"
    dst = tmp_path / "mlruns" / exp.name
    shutil.copytree(exp, dst)
    for run in [p for p in dst.iterdir() if (p / "meta.yaml").is_file() and (p / "tags").is_dir()]:
        (run / "tags" / "mlflow.parentRunId").write_text("0123456789abcdef0123456789abcdef")
    _ok(run_cli("import", str(tmp_path / "mlruns"), db=db_path))
    recs = json.loads(_ok(run_cli("ls", "--json", db=db_path)))
    assert len(recs) == 2
    assert {(r["sweep"]["kind"], r["sweep"]["size"]) for r in recs} == {("mlflow", 2)}
    assert not any(t.startswith("mlflow.") for r in recs for t in r["tags"])


def test_migration_backfills_group_keys(store) -> None:  # type: ignore[no-untyped-def]
    from labbook.model import RunFacts
    from labbook.store.groups import backfill

    ids = [
        store.save_run(
            RunFacts(
                path=f"/p/{s}",
                framework="command",
                source_key=f"k{s}",
                command=["python", "train.py", "--seed", str(s)],
                cwd="/p",
                config={"seed": s, "lr": 0.1},
            )
        )[0]
        for s in (1, 2)
    ]
    keys = [store.run_row(i)["group_key"] for i in ids]
    assert keys[0] == keys[1] is not None
    with store.transaction():
        store.conn.execute("UPDATE runs SET group_key = NULL")
        backfill(store.conn)
    assert [store.run_row(i)["group_key"] for i in ids] == keys
