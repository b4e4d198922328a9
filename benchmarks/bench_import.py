#!/usr/bin/env python
"""Benchmark: ``labbook import`` of a tree of run directories, against MLflow logging the same runs.

What it does
------------
1. Generates N run directories (default 1,000; ``--quick``: 100) inside a real git
   repository (``git init``, one commit, then a small uncommitted edit and an untracked
   file; the run directories are git-ignored, as output directories usually are):

   * 3 in 4 are generic runs: ``config.yaml`` (nested, ~20 keys) + ``metrics.jsonl``
     (200 lines: ``train/loss`` and ``lr`` every step, ``val/loss`` and ``val/acc``
     every 10th) + ``train.log``;
   * 1 in 4 are TensorBoard runs written with tensorboardX: 500 scalars in one event
     file (``train/loss`` x 250, ``lr`` x 150, ``val/loss`` x 50, ``val/acc`` x 50),
     with a ``config.yaml`` beside it.

2. Times the import into a fresh database, in-process (``import_paths``) and as a CLI
   process (``python -m labbook --db DB import ROOT --json``), then a re-import of the
   unchanged tree into the same database (every run dir skipped: nothing is read
   again) and a ``--full`` re-import (every run updated, none new). Prints the ratio of
   the unchanged re-import to the fresh import (goal: at most 0.10).
   Prints runs/second (median of ``--repeat``). The files are in the page cache (they
   were just written): this is a warm-cache figure.

3. Peer: MLflow (``--mlflow-python PATH``, an interpreter with mlflow installed) logs
   the same runs — the same flattened params and the same metric histories, read from
   the generator, not from the files — into a fresh MLflow SQLite store with
   ``MlflowClient.create_run`` + ``log_batch`` (chunks of 1,000 metrics / 100 params) +
   ``set_terminated``: MLflow's fastest documented path. Only the logging loop is timed:
   not ``import mlflow``, not creating the store (both printed separately). labbook's
   figure, by contrast, includes finding the runs, reading and parsing the files,
   capturing git state and the environment. A small sample is also logged the way a
   training script does (``mlflow.start_run`` + ``log_params`` + ``log_metrics`` per step).
   MLflow has no idempotent re-import, so re-import has no peer figure.

Run:  python benchmarks/bench_import.py [--quick] [--mlflow-python /work/benchenv/bin/python]
This is a benchmark, not a test: it asserts nothing about time.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import datetime
from pathlib import Path
from typing import Any

FULL_RUNS = 1000
QUICK_RUNS = 100
JSONL_LINES = 200
TB_SCALARS = {"train/loss": 250, "lr": 150, "val/loss": 50, "val/acc": 50}  # 500 in all


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def rule(title: str) -> None:
    print()
    print(f"== {title} " + "=" * max(0, 86 - len(title)))


def loadavg() -> str:
    try:
        return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except OSError:
        return "load average unknown"


# -- the runs ---------------------------------------------------------------------------


def run_spec(i: int) -> dict[str, Any]:
    """Run number ``i``: config, metric histories, kind. Deterministic (own RNG)."""
    rng = random.Random(7919 * i + 17)
    lr = rng.choice((1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2))
    config = {
        "seed": rng.randrange(10_000),
        "optimizer": {
            "name": rng.choice(("adam", "adamw", "sgd")),
            "lr": lr,
            "weight_decay": rng.choice((0.0, 1e-4, 1e-2)),
            "momentum": 0.9,
        },
        "model": {
            "name": rng.choice(("resnet18", "resnet50", "vit-s")),
            "depth": rng.choice((18, 34, 50)),
            "width": rng.choice((256, 512)),
            "dropout": rng.choice((0.0, 0.1, 0.2)),
        },
        "data": {
            "dataset": rng.choice(("cifar10", "cifar100")),
            "batch_size": rng.choice((64, 128, 256)),
            "num_workers": 8,
            "augment": rng.random() < 0.5,
        },
        "trainer": {
            "max_epochs": rng.choice((10, 20)),
            "precision": "bf16-mixed",
            "grad_clip": 1.0,
        },
        "scheduler": {"name": "cosine", "warmup_steps": rng.choice((0, 500))},
    }
    kind = "tensorboard" if i % 4 == 3 else "generic"
    final = rng.uniform(0.1, 1.0)
    wall0 = 1_795_000_000.0 + i * 3600.0
    metrics: dict[str, list[tuple[int, float, float]]] = {}

    def curve(tag: str, k: int, n: int) -> float:
        frac = k / max(1, n - 1)
        if tag == "lr":
            return lr * 0.5 * (1 + math.cos(math.pi * frac))
        if tag == "val/acc":
            return min(0.99, 0.1 + (1.1 - final) * 0.8 * frac)
        base = 2.3 * math.exp(-4 * frac) + final * (1 - math.exp(-4 * frac))
        return base + (0.05 if tag == "val/loss" else rng.uniform(-0.02, 0.02))

    if kind == "generic":
        steps = range(1, JSONL_LINES + 1)
        for tag in ("train/loss", "lr"):
            metrics[tag] = [(s, curve(tag, k, JSONL_LINES), wall0 + s) for k, s in enumerate(steps)]
        vsteps = [s for s in steps if s % 10 == 0]
        for tag in ("val/loss", "val/acc"):
            metrics[tag] = [
                (s, curve(tag, k, len(vsteps)), wall0 + s) for k, s in enumerate(vsteps)
            ]
    else:
        for tag, count in TB_SCALARS.items():
            stride = 1000 // count
            metrics[tag] = [
                (k * stride, curve(tag, k, count), wall0 + k * stride) for k in range(count)
            ]
    return {"i": i, "kind": kind, "config": config, "metrics": metrics, "wall0": wall0}


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in obj.items():
        key = f"{prefix}.{k}" if prefix else k
        if isinstance(v, dict):
            out.update(flatten(v, key))
        else:
            out[key] = v
    return out


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
    )


def make_tree(root: Path, n: int) -> Path:
    """A git project with N run dirs under outputs/; returns the outputs dir."""
    import yaml

    root.mkdir(parents=True)
    _git(root, "init", "-q", "-b", "main")
    (root / ".gitignore").write_text("outputs/\n__pycache__/\n")
    (root / "train.py").write_text(
        "import yaml\n\n\ndef main():\n    cfg = yaml.safe_load(open('config.yaml'))\n"
        "    print('training', cfg)\n\n\nif __name__ == '__main__':\n    main()\n"
    )
    src = root / "src"
    src.mkdir()
    for k in range(20):
        (src / f"module_{k:02d}.py").write_text(
            "".join(f"def f{j}(x):\n    return x * {j} + {k}\n\n\n" for j in range(30))
        )
    (root / "README.md").write_text("# a project\n")
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "initial")
    # a small uncommitted edit and an untracked file
    with open(root / "train.py", "a") as f:
        f.write("\n# try a larger batch size\nBATCH = 256\n")
    (root / "notes.py").write_text("# scratch\nLR = 3e-4\n")

    outputs = root / "outputs"
    tb_specs = []
    for i in range(n):
        s = run_spec(i)
        d = outputs / f"exp{i % 20:02d}" / f"run-{i:05d}"
        d.mkdir(parents=True)
        with open(d / "config.yaml", "w") as f:
            yaml.safe_dump(s["config"], f, sort_keys=False)
        if s["kind"] == "generic":
            m = s["metrics"]
            val = {p[0]: (p, a) for p, a in zip(m["val/loss"], m["val/acc"], strict=True)}
            lines = []
            for (step, loss, wall), (_, lr, _) in zip(m["train/loss"], m["lr"], strict=True):
                row: dict[str, Any] = {"step": step, "train/loss": round(loss, 6), "lr": lr}
                if step in val:
                    row["val/loss"] = round(val[step][0][1], 6)
                    row["val/acc"] = round(val[step][1][1], 6)
                row["time"] = round(wall, 3)
                lines.append(json.dumps(row))
            (d / "metrics.jsonl").write_text("\n".join(lines) + "\n")
            log = [f"Namespace(seed={s['config']['seed']}, lr={s['config']['optimizer']['lr']})"]
            log += [
                f"step {step}: train loss {loss:.4f}"
                for step, loss, _ in m["train/loss"]
                if step % 20 == 0
            ]
            log.append("done. final metrics written")
            (d / "train.log").write_text("\n".join(log) + "\n")
        else:
            tb_specs.append((d, s))
    _write_tb(tb_specs)
    return outputs


def _write_tb(specs: list[tuple[Path, dict[str, Any]]]) -> None:
    from tensorboardX import SummaryWriter

    for d, s in specs:
        w = SummaryWriter(logdir=str(d), flush_secs=3600)
        for tag, pts in s["metrics"].items():
            for step, value, wall in pts:
                w.add_scalar(tag, value, step, walltime=wall)
        w.close()


# -- labbook ------------------------------------------------------------------------------


def fresh_db(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def import_in_process(db: Path, outputs: Path, *, full: bool = False) -> tuple[float, Any, int]:
    from labbook.sources.importer import import_paths
    from labbook.store import Store

    t = time.perf_counter()
    with Store.open(db) as store:
        report = import_paths(store, [outputs], full=full)
        count = store.count()
    return time.perf_counter() - t, report, count


def import_cli(db: Path, outputs: Path, *, full: bool = False) -> tuple[float, dict[str, Any]]:
    env = {k: v for k, v in os.environ.items() if k != "LABBOOK_DB"}
    argv = [sys.executable, "-m", "labbook", "--db", str(db), "import", str(outputs), "--json"]
    argv += ["--full"] if full else []
    t = time.perf_counter()
    p = subprocess.run(argv, capture_output=True, env=env)
    dt = time.perf_counter() - t
    if p.returncode != 0:
        sys.exit(f"labbook import failed ({p.returncode}):\n{p.stderr.decode()[-3000:]}")
    return dt, json.loads(p.stdout)


# -- MLflow -------------------------------------------------------------------------------

MLFLOW_HELPER = textwrap.dedent(
    r"""
    import json, sys, time

    cfg = json.loads(open(sys.argv[1]).read())
    runs = json.loads(open(cfg["runs"]).read())

    t = time.perf_counter()
    import mlflow
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag
    import_s = time.perf_counter() - t

    t = time.perf_counter()
    client = MlflowClient(tracking_uri=cfg["uri"])
    exp = client.create_experiment("bench-import")
    setup_s = time.perf_counter() - t

    def chunks(xs, n):
        for k in range(0, len(xs), n):
            yield xs[k:k + n]

    t = time.perf_counter()
    for r in runs:
        run = client.create_run(exp, run_name=r["name"], start_time=int(r["start"] * 1000))
        rid = run.info.run_id
        params = [Param(k, str(v)) for k, v in r["params"].items()]
        metrics = [Metric(tag, v, int(w * 1000), s)
                   for tag, pts in r["metrics"].items() for s, v, w in pts]
        for ps in chunks(params, 100):
            client.log_batch(rid, params=ps)
        for ms in chunks(metrics, 1000):
            client.log_batch(rid, metrics=ms)
        client.set_terminated(rid, "FINISHED", end_time=int(r["end"] * 1000))
    batch_s = time.perf_counter() - t

    # Sanity: everything is there.
    got = client.search_runs([exp], max_results=len(runs) + 10)
    n_runs = len(got)
    one = client.get_run(got[0].info.run_id)
    hist = client.get_metric_history(got[0].info.run_id, "train/loss")

    # A small sample logged the way a training script does (fluent API, one call per step).
    mlflow.set_tracking_uri(cfg["uri"])
    mlflow.set_experiment("bench-import-fluent")
    sample = runs[: cfg["fluent_runs"]]
    t = time.perf_counter()
    for r in sample:
        with mlflow.start_run(run_name=r["name"]):
            mlflow.log_params({k: str(v) for k, v in r["params"].items()})
            by_step = {}
            for tag, pts in r["metrics"].items():
                for s, v, w in pts:
                    by_step.setdefault(s, {})[tag] = v
            for s in sorted(by_step):
                mlflow.log_metrics(by_step[s], step=s)
    fluent_s = time.perf_counter() - t

    print(json.dumps({
        "version": mlflow.__version__, "import_s": import_s, "setup_s": setup_s,
        "batch_s": batch_s, "runs": n_runs, "params": len(one.data.params),
        "metrics": len(one.data.metrics), "history": len(hist),
        "fluent_s": fluent_s, "fluent_runs": len(sample),
    }))
    """
)


def mlflow_unavailable(py: str | None) -> str | None:
    if not py:
        return "no --mlflow-python given"
    if not Path(py).exists():
        return f"{py} does not exist"
    p = subprocess.run([py, "-c", "import mlflow"], capture_output=True, text=True)
    if p.returncode != 0:
        return f"mlflow is not importable by {py}: {p.stderr.strip().splitlines()[-1:]}"
    return None


def run_mlflow(py: str, work: Path, n: int, fluent_runs: int) -> dict[str, Any]:
    runs = []
    for i in range(n):
        s = run_spec(i)
        walls = [w for pts in s["metrics"].values() for _, _, w in pts]
        runs.append(
            {
                "name": f"exp{i % 20:02d}/run-{i:05d}",
                "params": flatten(s["config"]),
                "metrics": s["metrics"],
                "start": min(walls),
                "end": max(walls),
            }
        )
    runs_path = work / "mlflow_runs.json"
    runs_path.write_text(json.dumps(runs))
    mdir = work / "mlflow"
    shutil.rmtree(mdir, ignore_errors=True)
    mdir.mkdir()
    cfg = {
        "uri": f"sqlite:///{mdir / 'mlflow.db'}",
        "runs": str(runs_path),
        "fluent_runs": fluent_runs,
    }
    (work / "mlflow_cfg.json").write_text(json.dumps(cfg))
    (work / "mlflow_helper.py").write_text(MLFLOW_HELPER)
    p = subprocess.run(
        [py, str(work / "mlflow_helper.py"), str(work / "mlflow_cfg.json")],
        capture_output=True,
        text=True,
        cwd=mdir,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    if p.returncode != 0:
        sys.exit(f"mlflow helper failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


# -- main ---------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help=f"{QUICK_RUNS} runs, 1 repeat (< 1 min)")
    ap.add_argument("--runs", type=int, help=f"number of run dirs (default {FULL_RUNS:,})")
    ap.add_argument("--repeat", type=int, help="timed imports of each kind (default 3; --quick: 1)")
    ap.add_argument("--mlflow-python", help="interpreter with mlflow installed (the peer)")
    ap.add_argument(
        "--workdir", help="keep the tree and databases here (default: temp dir, removed)"
    )
    args = ap.parse_args()
    n = args.runs or (QUICK_RUNS if args.quick else FULL_RUNS)
    repeats = args.repeat or (1 if args.quick else 3)
    work = (
        Path(args.workdir)
        if args.workdir
        else Path(tempfile.mkdtemp(prefix="labbook-bench-import-"))
    )
    work.mkdir(parents=True, exist_ok=True)
    try:
        _bench(args, n, repeats, work)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


def _bench(args: argparse.Namespace, n: int, repeats: int, work: Path) -> None:
    print(f"labbook bench_import — {n:,} run directories, {repeats} timed import(s) of each kind")
    print(
        f"{datetime.now().strftime('%Y-%m-%d %H:%M')}, {platform.node()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; {loadavg()}"
    )
    project = work / "project"
    shutil.rmtree(project, ignore_errors=True)
    t = time.perf_counter()
    outputs = make_tree(project, n)
    n_tb = sum(1 for i in range(n) if run_spec(i)["kind"] == "tensorboard")
    size = sum(f.stat().st_size for f in outputs.rglob("*") if f.is_file())
    print(
        f"tree: {n - n_tb} generic (config.yaml + metrics.jsonl x {JSONL_LINES} lines + train.log), "
        f"{n_tb} TensorBoard (tensorboardX, {sum(TB_SCALARS.values())} scalars + config.yaml); "
        f"{size / 1e6:.1f} MB, in a git repo with an uncommitted edit; generated in "
        f"{time.perf_counter() - t:.1f} s"
    )

    db = work / "labbook.db"
    # re-import: unchanged run dirs are skipped (no-op); --full reads every one again
    kinds = ["import", "re-import (unchanged)", "re-import --full"]
    results: dict[str, list[float]] = {f"{w} {k}": [] for w in ("in-process", "CLI") for k in kinds}
    checks = []
    for _ in range(repeats):
        fresh_db(db)
        for kind, full in (("import", False), ("re-import (unchanged)", False), ("re-import --full", True)):
            dt, rep, count = import_in_process(db, outputs, full=full)
            results[f"in-process {kind}"].append(dt)
            checks.append((f"in-process {kind}", len(rep.created), len(rep.updated),
                           len(rep.unchanged), len(rep.failed), count))  # fmt: skip
    for _ in range(repeats):
        fresh_db(db)
        for kind, full in (("import", False), ("re-import (unchanged)", False), ("re-import --full", True)):
            dt, rep = import_cli(db, outputs, full=full)
            results[f"CLI {kind}"].append(dt)
            checks.append((f"CLI {kind}", len(rep["created"]), len(rep["updated"]),
                           len(rep["unchanged"]), len(rep["failed"]), None))  # fmt: skip

    rule(f"labbook import ({n:,} runs; median of {repeats}; warm page cache)")
    print(f"{'':34}{'median s':>10}{'min s':>8}{'max s':>8}{'runs/s':>10}")
    for label, ts in results.items():
        print(f"  {label:32}{median(ts):10.2f}{min(ts):8.2f}{max(ts):8.2f}{n / median(ts):10.1f}")
    for where in ("in-process", "CLI"):
        ratio = median(results[f"{where} re-import (unchanged)"]) / median(results[f"{where} import"])
        print(f"  {where}: unchanged re-import / fresh import = {ratio:.3f} (goal <= 0.10)")
    want = {"import": (n, 0, 0), "re-import (unchanged)": (0, 0, n), "re-import --full": (0, n, 0)}
    bad = [c for c in checks if (c[1], c[2], c[3]) != want[c[0].split(" ", 1)[1]] or c[4]]
    bad += [c for c in checks if c[5] is not None and c[5] != n]
    if bad:
        print("  CHECK FAILED (kind, created, updated, unchanged, failed, runs in store):")
        for c in bad:
            print(f"    {c}")
    else:
        print(
            f"  check: every import created {n} runs; every unchanged re-import read none again;"
            f" every --full re-import updated {n} (same runs, idempotent); no unreadable run"
        )

    rule("peer: MLflow logging the same runs into a SQLite store")
    why = mlflow_unavailable(args.mlflow_python)
    if why:
        print(f"  MLflow part skipped: {why}.")
        print(
            "  (create one: python3 -m venv /work/benchenv && /work/benchenv/bin/pip install mlflow)"
        )
        return
    fluent_runs = 3 if n <= QUICK_RUNS else 10
    m = run_mlflow(args.mlflow_python, work, n, fluent_runs)
    n_points = sum(len(p) for i in range(n) for p in run_spec(i)["metrics"].values())
    print(
        f"  MLflow {m['version']}: import mlflow {m['import_s']:.2f} s and store set-up "
        f"{m['setup_s']:.2f} s (both NOT timed below)"
    )
    print(
        f"  logged {n:,} runs, {n_points:,} metric points, with create_run + log_batch + set_terminated"
    )
    print(
        f"  check: search_runs finds {m['runs']:,} runs; one has {m['params']} params, "
        f"{m['metrics']} metrics, {m['history']} train/loss points"
    )
    print(f"{'':34}{'total s':>10}{'runs/s':>10}")
    print(f"  {'MLflow log_batch (1 run each)':32}{m['batch_s']:10.2f}{n / m['batch_s']:10.1f}")
    fl = m["fluent_s"]
    print(
        f"  {'MLflow fluent, per step (sample)':32}{fl:10.2f}{m['fluent_runs'] / fl:10.1f}"
        f"   ({m['fluent_runs']} runs)"
    )

    rule("ratio (runs/s; > 1 means labbook is faster)")
    lb_in = n / median(results["in-process import"])
    lb_cli = n / median(results["CLI import"])
    mb = n / m["batch_s"]
    print(
        f"  labbook in-process import / MLflow log_batch: {lb_in:8.1f} / {mb:.1f} = {lb_in / mb:.2f}x"
    )
    print(
        f"  labbook CLI import        / MLflow log_batch: {lb_cli:8.1f} / {mb:.1f} = {lb_cli / mb:.2f}x"
    )
    print(
        "  labbook's time includes discovery, parsing the files, git and environment capture\n"
        "  and (CLI) process start-up; MLflow's is the logging calls alone, after its import."
    )
    print(f"\n{loadavg()} at the end")


if __name__ == "__main__":
    main()
