#!/usr/bin/env python
"""Benchmark: querying a big labbook store (``labbook ls`` / ``labbook show``), against MLflow.

What it does
------------
1. Builds a labbook store of N runs (default 100,000; ``--quick``: 5,000), each with
   20 config params and 5 metrics (``train/loss``, ``val/loss``, ``val/acc``, ``lr``,
   ``epoch``; 5 points each, summary + downsampled series), git state, environment
   and a log tail. The schema is created by ``Store.open``; the rows are bulk-inserted
   with plain SQL in one transaction (``save_run`` 100,000 times would take minutes).
   No ``ANALYZE`` is run, because a store built by ``save_run`` has none either
   (``--analyze`` runs it, to see what statistics would change).
2. Times the CLI as a user runs it — a whole process each time,
   ``[sys.executable, "-m", "labbook", "--db", DB, ...]`` with stdout to a pipe —
   1 warm-up then the median (and p90) of ``--repeat`` runs (>= 7), against the goal
   of < 150 ms wall per command, start-up included. Also prints the start-up floor
   (``python -c pass`` and ``python -m labbook --help``).
3. Times the same queries in-process (``select_runs`` + ``Store.records``; ``resolve``
   + ``Store.record``), the like-for-like figure for a library comparison.
4. Peer: MLflow (``--mlflow-python PATH``, an interpreter with mlflow installed). The
   same N runs go into an MLflow SQLite store: mlflow creates the empty schema itself
   (``MlflowClient(...).search_experiments()``), then rows are bulk-inserted into its
   ``runs``, ``params``, ``metrics``, ``latest_metrics`` and ``tags`` tables, and
   ``mlflow.search_runs`` is checked to return them. In the mlflow interpreter it
   times ``import mlflow`` once, the first (cold) call, and then warm calls of
   ``mlflow.search_runs`` (pandas), ``MlflowClient.search_runs`` (entities) and
   ``MlflowClient.get_run``.

MLflow params are strings: a numeric ``optimizer.lr >= 0.01`` cannot be written as an
MLflow filter (params support only =, !=, LIKE, ILIKE, IS [NOT] NULL). The data is
made so that the largest learning rate is 0.01, so on this data labbook's
``optimizer.lr>=0.01`` and MLflow's ``params.`optimizer.lr` = '0.01'`` select the same
runs; the benchmark checks that both return the same 50 newest runs.

Run:  python benchmarks/bench_query.py [--quick] [--mlflow-python /work/benchenv/bin/python]
This is a benchmark, not a test: it asserts nothing about time.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import zlib
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

GOAL_MS = 150.0
FULL_RUNS = 100_000
QUICK_RUNS = 5_000

LRS = (1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2)  # max is 0.01: see the module docstring
METRIC_TAGS = ("train/loss", "val/loss", "val/acc", "lr", "epoch")
STEPS = (0, 250, 500, 750, 1000)
T0 = 1_700_000_000.0  # 2023-11-14, start of the first run
SPACING_S = 300.0  # one run every five minutes (distinct start times: a total order)

LABBOOK_FILTER = ["--where", "optimizer.lr>=0.01", "--where", "val/loss<0.5"]
MLFLOW_FILTER = "params.`optimizer.lr` = '0.01' and metrics.`val/loss` < 0.5"
MLFLOW_PARAM_FILTER = "params.`optimizer.lr` = '0.01'"


# -- statistics and printing --------------------------------------------------------


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def p90(xs: list[float]) -> float:
    s = sorted(xs)
    return s[max(0, math.ceil(0.9 * len(s)) - 1)]


def ms(x: float) -> str:
    return f"{x * 1000:8.1f}"


def loadavg() -> str:
    try:
        return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except OSError:
        return "load average unknown"


def rule(title: str = "") -> None:
    print()
    print(f"== {title} " + "=" * max(0, 86 - len(title)))


# -- the data -------------------------------------------------------------------------


def run_id(i: int) -> str:
    """8 hex characters, distinct for every i < 2**32 (an odd multiplier is a bijection)."""
    return f"{(i * 2654435761 + 0x5BD1E995) % 2**32:08x}"


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def run_spec(i: int) -> dict[str, Any]:
    """Run number ``i``, always the same (its own RNG): both stores get identical runs."""
    rng = random.Random(1_000_003 * 7 + i)
    start = T0 + i * SPACING_S + rng.uniform(0, SPACING_S / 2)
    dur = rng.uniform(60, 4 * 3600)
    optimizer = rng.choice(("adam", "adamw", "sgd", "lion"))
    lr = rng.choice(LRS)
    seed = rng.randrange(100_000)
    params: dict[str, Any] = {
        "optimizer.name": optimizer,
        "optimizer.lr": lr,
        "optimizer.weight_decay": rng.choice((0.0, 1e-4, 1e-2, 5e-2)),
        "optimizer.momentum": rng.choice((0.9, 0.95, 0.99)),
        "optimizer.betas": [0.9, rng.choice((0.98, 0.999))],
        "model.name": rng.choice(("resnet18", "resnet50", "vit-s", "vit-b", "convnext-t")),
        "model.depth": rng.choice((12, 18, 24, 34, 50)),
        "model.width": rng.choice((256, 384, 512, 768)),
        "model.dropout": rng.choice((0.0, 0.1, 0.2, 0.3)),
        "model.activation": rng.choice(("relu", "gelu", "silu")),
        "data.dataset": rng.choice(("cifar10", "cifar100", "imagenet-1k", "tiny-imagenet")),
        "data.batch_size": rng.choice((32, 64, 128, 256, 512)),
        "data.num_workers": rng.choice((4, 8, 16)),
        "data.augment": rng.random() < 0.7,
        "trainer.max_epochs": rng.choice((10, 20, 50, 100)),
        "trainer.precision": rng.choice(("32", "16-mixed", "bf16-mixed")),
        "trainer.grad_clip": rng.choice((None, 0.5, 1.0)),
        "scheduler.name": rng.choice(("cosine", "step", "linear", "onecycle")),
        "scheduler.warmup_steps": rng.choice((0, 500, 1000, 2000)),
        "seed": seed,
    }
    r = rng.random()
    status = "finished"
    failure = None
    if r < 0.08:
        status = "failed"
        failure = (
            "cuda_oom",
            "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB",
        )
    elif r < 0.10:
        status = "diverged"
        failure = ("nan", "train/loss is nan at step 750")
    elif r < 0.14:
        status = "killed"
        failure = ("signal", "killed by SIGTERM")
    final_val = rng.uniform(0.2, 1.2)
    metrics: dict[str, list[tuple[int, float, float]]] = {}
    for tag in METRIC_TAGS:
        pts = []
        for k, step in enumerate(STEPS):
            frac = k / (len(STEPS) - 1)
            wall = start + dur * frac
            if tag == "train/loss":
                v = 2.3 * (1 - frac) + (final_val - 0.1) * frac + rng.uniform(-0.02, 0.02)
                if status == "diverged" and step >= 750:
                    v = float("nan")
            elif tag == "val/loss":
                v = 2.4 * (1 - frac) + final_val * frac
            elif tag == "val/acc":
                v = min(0.99, 0.1 + (1.3 - final_val) * 0.7 * frac)
            elif tag == "lr":
                v = lr * (0.5 * (1 + math.cos(math.pi * frac)))
            else:
                v = float(k * params["trainer.max_epochs"] // 4)
            pts.append((step, v, wall))
        metrics[tag] = pts
    exp = f"exp{i % 200:03d}"
    return {
        "i": i,
        "id": run_id(i),
        "name": f"{exp}/run-{i:06d}",
        "path": f"/home/alice/proj/outputs/{exp}/run-{i:06d}",
        "framework": ("generic", "tensorboard", "lightning", "hydra")[i % 4],
        "status": status,
        "failure": failure,
        "started_at": start,
        "ended_at": start + dur,
        "params": params,
        "metrics": metrics,
        "seed": seed,
        "commit": hashlib.sha1(f"commit{i // 500}".encode()).hexdigest(),
        "dirty": rng.random() < 0.3,
        "diff_no": i % 50,
        "env_no": i % 5,
    }


# -- the labbook store ------------------------------------------------------------------


def _blob(raw: bytes) -> tuple[str, int, bytes]:
    return hashlib.sha256(raw).hexdigest(), len(raw), zlib.compress(raw, 6)


def _jsonv(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str, allow_nan=True)


def _num(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    return None


def _nonfinite(v: float) -> str | None:
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return None


def build_labbook(db: Path, n: int, *, analyze: bool) -> dict[str, Any]:
    """N runs into a fresh labbook store: schema by Store.open, rows by SQL, one transaction."""
    from labbook.store import Store

    t0 = time.perf_counter()
    Store.open(db).close()  # creates the schema (migrations), WAL, user_version
    conn = sqlite3.connect(str(db), isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA cache_size = -262144")
    conn.execute("BEGIN")
    blob_sql = "INSERT OR IGNORE INTO blobs (hash, size, data) VALUES (?, ?, ?)"
    packages = {f"package-{k:03d}": f"{k % 7}.{k % 13}.{k % 5}" for k in range(120)}
    env_hashes = []
    for e in range(5):
        raw = _jsonv(
            {
                "python": f"3.11.{e}",
                "platform": "Linux-6.8.0-x86_64-with-glibc2.39",
                "packages": {**packages, "torch": f"2.{e}.0"},
                "cuda": "12.4",
                "gpus": ["NVIDIA A100-SXM4-80GB"] * 4,
                "vars": {"CUDA_VISIBLE_DEVICES": "0,1,2,3"},
            }
        ).encode()
        b = _blob(raw)
        conn.execute(blob_sql, b)
        env_hashes.append(b[0])
    diff_hashes = []
    for d in range(50):
        raw = "".join(
            f"diff --git a/model_{d}.py b/model_{d}.py\n@@ -{k},3 +{k},3 @@\n-    x = {k}\n+    x = {k + d}\n"
            for k in range(40)
        ).encode()
        b = _blob(raw)
        conn.execute(blob_sql, b)
        diff_hashes.append(b[0])
    extra = _blob(
        _jsonv(
            {
                "untracked_contents": {},
                "untracked_truncated": False,
                "diff_truncated": False,
                "shallow": False,
                "detached": False,
            }
        ).encode()
    )
    conn.execute(blob_sql, extra)
    runs_sql = (
        "INSERT INTO runs (id, source_key, name, path, host, user, framework, status, failure_kind,"
        " failure_message, failure_step, started_at, ended_at, created_at, updated_at, command, pid,"
        " cwd, seed_value, seed_source, git_root, git_commit, git_branch, git_remote, git_dirty,"
        " git_diff, git_untracked, git_extra, env, env_source, gpu, log_tail, missing)"
        " VALUES (" + ",".join("?" * 33) + ")"
    )
    params_sql = "INSERT INTO params (run_id, key, value, num) VALUES (?, ?, ?, ?)"
    metrics_sql = (
        "INSERT INTO metrics (run_id, tag, last, last_kind, min, max, step, count, nonfinite_step,"
        " first_step, last_wall_time) VALUES (?,?,?,?,?,?,?,?,?,?,?)"
    )
    series_sql = "INSERT INTO series (run_id, tag, points) VALUES (?, ?, ?)"
    batch = 5000
    for lo in range(0, n, batch):
        runs, params, metrics, series, blobs = [], [], [], [], []
        for i in range(lo, min(n, lo + batch)):
            s = run_spec(i)
            rid = s["id"]
            log = (
                "\n".join(
                    f"epoch {k} step {k * 250} loss {s['metrics']['train/loss'][min(k, 4)][1]:.4f}"
                    for k in range(20)
                )
                + f"\nrun {s['name']} done\n"
            )
            lb = _blob(log.encode())
            blobs.append(lb)
            fk, fm = s["failure"] if s["failure"] else (None, None)
            cmd = [
                "python",
                "train.py",
                f"optimizer.lr={s['params']['optimizer.lr']}",
                f"seed={s['seed']}",
            ]
            runs.append(
                (
                    rid,
                    s["path"],
                    s["name"],
                    s["path"],
                    "gpu-node-07",
                    "alice",
                    s["framework"],
                    s["status"],
                    fk,
                    fm,
                    750 if fk else None,
                    iso(s["started_at"]),
                    iso(s["ended_at"]),
                    iso(s["ended_at"]),
                    iso(s["ended_at"]),
                    _jsonv(cmd),
                    None,
                    "/home/alice/proj",
                    _jsonv(s["seed"]),
                    "config:seed",
                    "/home/alice/proj",
                    s["commit"],
                    "main",
                    "git@example.invalid:alice/proj.git",
                    int(s["dirty"]),
                    diff_hashes[s["diff_no"]] if s["dirty"] else None,
                    "[]",
                    extra[0],
                    env_hashes[s["env_no"]],
                    "importer",
                    None,
                    lb[0],
                    0,
                )
            )
            for k, v in sorted(s["params"].items()):
                params.append((rid, k, _jsonv(v), _num(v)))
            for tag, pts in s["metrics"].items():
                finite = [v for _, v, _ in pts if _nonfinite(v) is None]
                last = pts[-1][1]
                kind = _nonfinite(last)
                nf = next((st for st, v, _ in pts if _nonfinite(v)), None)
                metrics.append(
                    (
                        rid,
                        tag,
                        None if kind else last,
                        kind,
                        min(finite) if finite else None,
                        max(finite) if finite else None,
                        pts[-1][0],
                        len(pts),
                        nf,
                        pts[0][0],
                        pts[-1][2],
                    )
                )
                enc = [[st, _nonfinite(v) or v, w] for st, v, w in pts]
                series.append((rid, tag, zlib.compress(json.dumps(enc).encode(), 6)))
        conn.executemany(blob_sql, blobs)
        conn.executemany(runs_sql, runs)
        conn.executemany(params_sql, params)
        conn.executemany(metrics_sql, metrics)
        conn.executemany(series_sql, series)
    conn.execute("COMMIT")
    if analyze:
        conn.execute("ANALYZE")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    built = time.perf_counter() - t0
    return {"seconds": built, "bytes": db.stat().st_size}


# -- timing processes -----------------------------------------------------------------------


def time_process(argv: list[str], repeats: int, env: dict[str, str]) -> tuple[list[float], bytes]:
    """1 warm-up, then ``repeats`` timed runs of a whole process; stdout to a pipe."""
    out = b""
    times = []
    for k in range(repeats + 1):
        t = time.perf_counter()
        p = subprocess.run(argv, capture_output=True, env=env)
        dt = time.perf_counter() - t
        if p.returncode != 0:
            sys.exit(f"command failed ({p.returncode}): {' '.join(argv)}\n{p.stderr.decode()}")
        if k:
            times.append(dt)
        out = p.stdout
    return times, out


def time_call(fn: Any, repeats: int) -> list[float]:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def slowest_sql(store: Any, fn: Any) -> tuple[int, float, str, list[str]]:
    """Run ``fn`` tracing its SQL; re-time each SELECT alone; the slowest with its plan."""
    stmts: list[str] = []
    store.conn.set_trace_callback(stmts.append)  # Python >= 3.11: SQL with values bound
    try:
        fn()
    finally:
        store.conn.set_trace_callback(None)
    timed = []
    for sql in stmts:
        if not sql.lstrip().upper().startswith("SELECT"):
            continue
        t = time.perf_counter()
        store.conn.execute(sql).fetchall()
        timed.append((time.perf_counter() - t, sql))
    if not timed:
        return len(stmts), 0.0, "", []
    dt, sql = max(timed)
    plan = [str(r[3]) for r in store.conn.execute("EXPLAIN QUERY PLAN " + sql)]
    return len(stmts), dt, sql, plan


# -- MLflow (in its own interpreter) ------------------------------------------------------------

MLFLOW_HELPER = textwrap.dedent(
    r"""
    import json, statistics, sys, time

    cfg = json.loads(open(sys.argv[1]).read())
    uri = cfg["uri"]
    if cfg["mode"] == "import":
        t = time.perf_counter()
        import mlflow  # noqa: F401
        print(json.dumps({"import_s": time.perf_counter() - t}))
        sys.exit(0)

    t = time.perf_counter()
    import mlflow
    from mlflow import MlflowClient
    import_s = time.perf_counter() - t

    if cfg["mode"] == "init":
        client = MlflowClient(tracking_uri=uri)
        client.search_experiments()  # creates the schema
        exp = client.create_experiment("bench")
        print(json.dumps({"experiment_id": exp, "version": mlflow.__version__}))
        sys.exit(0)

    mlflow.set_tracking_uri(uri)
    client = MlflowClient(tracking_uri=uri)
    exp = cfg["experiment_id"]
    out = {"import_s": import_s, "version": mlflow.__version__, "queries": {}}

    def names_df(df):
        return list(df["tags.mlflow.runName"]) if len(df) else []

    def names_runs(runs):
        return [r.info.run_name for r in runs]

    t = time.perf_counter()
    df = mlflow.search_runs(experiment_ids=[exp], filter_string=cfg["filter"], max_results=50)
    out["first_call_s"] = time.perf_counter() - t

    # validity check: the rows we inserted come back through mlflow's own API
    check = client.search_runs([exp], max_results=5)
    out["check"] = {"runs": len(check), "params": len(check[0].data.params) if check else 0,
                    "metrics": len(check[0].data.metrics) if check else 0}
    hist = client.get_metric_history(cfg["show_uuid"], "val/loss")
    out["check"]["history_points"] = len(hist)

    queries = {
        "filter_pandas": lambda: mlflow.search_runs(
            experiment_ids=[exp], filter_string=cfg["filter"], max_results=50),
        "filter_client": lambda: client.search_runs(
            [exp], filter_string=cfg["filter"], max_results=50),
        "param_pandas": lambda: mlflow.search_runs(
            experiment_ids=[exp], filter_string=cfg["param_filter"], max_results=50),
        "newest_pandas": lambda: mlflow.search_runs(experiment_ids=[exp], max_results=50),
        "newest_client": lambda: client.search_runs([exp], max_results=50),
        "get_run": lambda: client.get_run(cfg["show_uuid"]),
        "get_last": lambda: client.get_run(
            client.search_runs([exp], max_results=1)[0].info.run_id),
    }
    for name, fn in queries.items():
        t = time.perf_counter()
        res = fn()  # warm-up
        first = time.perf_counter() - t
        reps = cfg["repeats"] if first < cfg["slow_s"] else cfg["slow_repeats"]
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            res = fn()
            times.append(time.perf_counter() - t)
        if name.endswith("_pandas"):
            got = names_df(res)
        elif name.endswith("_client"):
            got = names_runs(res)
        else:
            got = [res.info.run_name]
        out["queries"][name] = {"times": times, "names": got}
        print(f"  mlflow {name}: median {statistics.median(times) * 1000:.1f} ms (n={reps})",
              file=sys.stderr, flush=True)
    print(json.dumps(out))
    """
)


def mlflow_available(py: str | None) -> str | None:
    """Why MLflow cannot be measured, or None when it can."""
    if not py:
        return "no --mlflow-python given"
    if not Path(py).exists():
        return f"{py} does not exist"
    p = subprocess.run([py, "-c", "import mlflow"], capture_output=True, text=True)
    if p.returncode != 0:
        return f"mlflow is not importable by {py}: {p.stderr.strip().splitlines()[-1:]}"
    return None


def mlflow_helper(py: str, work: Path, cfg: dict[str, Any]) -> dict[str, Any]:
    helper = work / "mlflow_helper.py"
    helper.write_text(MLFLOW_HELPER)
    cfg_path = work / f"mlflow_{cfg['mode']}.json"
    cfg_path.write_text(json.dumps(cfg))
    env = {**os.environ, "MLFLOW_TRACKING_URI": cfg["uri"], "PYTHONWARNINGS": "ignore"}
    p = subprocess.run(
        [py, str(helper), str(cfg_path)],
        capture_output=True,
        text=True,
        cwd=work,
        env=env,
    )
    if p.returncode != 0:
        sys.exit(f"mlflow helper ({cfg['mode']}) failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def mlflow_uuid(i: int) -> str:
    return f"{run_id(i)}{i:024x}"


MLFLOW_STATUS = {
    "finished": "FINISHED",
    "failed": "FAILED",
    "diverged": "FAILED",
    "killed": "KILLED",
}


def build_mlflow(db: Path, n: int, experiment_id: str, artifacts: Path) -> float:
    """Bulk-insert the N runs into mlflow's tables (schema already created by mlflow)."""
    t0 = time.perf_counter()
    conn = sqlite3.connect(str(db), isolation_level=None)
    have = {
        t: {r[1] for r in conn.execute(f"PRAGMA table_info({t})")}
        for t in ("runs", "params", "metrics", "latest_metrics", "tags")
    }
    need = {
        "runs": {
            "run_uuid",
            "name",
            "source_type",
            "source_name",
            "entry_point_name",
            "user_id",
            "status",
            "start_time",
            "end_time",
            "source_version",
            "lifecycle_stage",
            "artifact_uri",
            "experiment_id",
            "deleted_time",
        },
        "params": {"key", "value", "run_uuid"},
        "metrics": {"key", "value", "timestamp", "run_uuid", "step", "is_nan"},
        "latest_metrics": {"key", "value", "timestamp", "step", "is_nan", "run_uuid"},
        "tags": {"key", "value", "run_uuid"},
    }
    for t, cols in need.items():
        if not cols <= have[t]:
            sys.exit(f"mlflow's {t} table lacks {sorted(cols - have[t])}: schema changed?")
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA cache_size = -262144")
    conn.execute("BEGIN")
    exp = int(experiment_id)
    batch = 5000
    for lo in range(0, n, batch):
        runs, params, metrics, latest, tags = [], [], [], [], []
        for i in range(lo, min(n, lo + batch)):
            s = run_spec(i)
            u = mlflow_uuid(i)
            runs.append(
                (
                    u,
                    s["id"],
                    "LOCAL",
                    "train.py",
                    "",
                    "alice",
                    MLFLOW_STATUS[s["status"]],
                    int(s["started_at"] * 1000),
                    int(s["ended_at"] * 1000),
                    s["commit"],
                    "active",
                    f"{artifacts}/{exp}/{u}/artifacts",
                    exp,
                    None,
                )
            )
            for k, v in s["params"].items():
                params.append((k, str(v), u))  # mlflow.log_param stores str(value)
            for tag, pts in s["metrics"].items():
                for st, v, w in pts:
                    nan = math.isnan(v)
                    metrics.append((tag, 0.0 if nan else v, int(w * 1000), u, st, int(nan)))
                st, v, w = pts[-1]
                nan = math.isnan(v)
                latest.append((tag, 0.0 if nan else v, int(w * 1000), st, int(nan), u))
            tags += [
                ("mlflow.runName", s["id"], u),
                ("mlflow.user", "alice", u),
                ("mlflow.source.name", "train.py", u),
                ("mlflow.source.type", "LOCAL", u),
                ("mlflow.source.git.commit", s["commit"], u),
            ]
        conn.executemany(
            "INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name, user_id,"
            " status, start_time, end_time, source_version, lifecycle_stage, artifact_uri,"
            " experiment_id, deleted_time) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            runs,
        )
        conn.executemany('INSERT INTO params ("key", value, run_uuid) VALUES (?,?,?)', params)
        conn.executemany(
            'INSERT INTO metrics ("key", value, timestamp, run_uuid, step, is_nan) VALUES (?,?,?,?,?,?)',
            metrics,
        )
        conn.executemany(
            'INSERT INTO latest_metrics ("key", value, timestamp, step, is_nan, run_uuid)'
            " VALUES (?,?,?,?,?,?)",
            latest,
        )
        conn.executemany('INSERT INTO tags ("key", value, run_uuid) VALUES (?,?,?)', tags)
    conn.execute("COMMIT")
    conn.close()
    return time.perf_counter() - t0


# -- main ------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help=f"{QUICK_RUNS:,} runs (< 1 min)")
    ap.add_argument("--runs", type=int, help=f"number of runs (default {FULL_RUNS:,})")
    ap.add_argument("--repeat", type=int, default=7, help="timed runs per command (default 7)")
    ap.add_argument("--mlflow-python", help="interpreter with mlflow installed (the peer)")
    ap.add_argument("--analyze", action="store_true", help="run ANALYZE after the bulk insert")
    ap.add_argument("--workdir", help="keep the databases here (default: a temp dir, removed)")
    ap.add_argument(
        "--reuse",
        action="store_true",
        help="with --workdir: time against the labbook store already there (built by an "
        "earlier run with the same --runs) instead of building it again",
    )
    args = ap.parse_args()
    n = args.runs or (QUICK_RUNS if args.quick else FULL_RUNS)
    repeats = max(1, args.repeat)

    work = (
        Path(args.workdir)
        if args.workdir
        else Path(tempfile.mkdtemp(prefix="labbook-bench-query-"))
    )
    work.mkdir(parents=True, exist_ok=True)
    db = work / "labbook.db"
    if not (args.reuse and args.workdir and db.exists()):
        args.reuse = False
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
    try:
        _bench(args, n, repeats, work, db)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


def _bench(args: argparse.Namespace, n: int, repeats: int, work: Path, db: Path) -> None:
    py = sys.executable
    print(f"labbook bench_query — {n:,} runs (20 params, 5 metrics x {len(STEPS)} points each)")
    print(
        f"{datetime.now().strftime('%Y-%m-%d %H:%M')}, {platform.node()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}; {loadavg()}"
    )
    if args.reuse:
        from labbook.store import Store

        Store.open(db).close()  # bring its schema up to date before anything is timed
        print(f"labbook store reused from {db} ({db.stat().st_size / 1e6:.0f} MB)")
    else:
        info = build_labbook(db, n, analyze=args.analyze)
        print(
            f"labbook store built in {info['seconds']:.1f} s by bulk SQL "
            f"({info['bytes'] / 1e6:.0f} MB; {'with' if args.analyze else 'no'} ANALYZE, as "
            f"{'requested' if args.analyze else 'a store built by save_run'})"
        )

    show_i = n // 2
    show_id = run_id(show_i)
    env = {k: v for k, v in os.environ.items() if k != "LABBOOK_DB"}
    env["COLUMNS"] = "120"
    lb = [py, "-m", "labbook", "--db", str(db)]

    rule(f"start-up floor (whole process, median of {repeats} after 1 warm-up)")
    print(f"{'':44}{'median ms':>9}{'p90 ms':>9}")
    floors = {}
    for label, argv in (
        ("python -c pass", [py, "-c", "pass"]),
        ("python -m labbook --help", [py, "-m", "labbook", "--help"]),
    ):
        t, _ = time_process(argv, repeats, env)
        floors[label] = median(t)
        print(f"  {label:42}{ms(median(t))} {ms(p90(t))}")

    rule(
        f"labbook CLI, whole process (median of {repeats} after 1 warm-up), goal < {GOAL_MS:.0f} ms"
    )
    commands = [
        ("ls --where 'optimizer.lr>=0.01' --where 'val/loss<0.5'", ["ls", *LABBOOK_FILTER]),
        (
            "ls --where 'optimizer.lr>=0.01' --json",
            ["ls", "--where", "optimizer.lr>=0.01", "--json"],
        ),
        ("ls  (newest 50)", ["ls"]),
        (f"show {show_id}", ["show", show_id]),
        (f"show {show_id} --json", ["show", show_id, "--json"]),
        ("show @last", ["show", "@last"]),
    ]
    print(f"{'':58}{'median ms':>9}{'p90 ms':>9}{'stdout':>9}   goal")
    cli_times: dict[str, float] = {}
    failed = []
    for label, argv in commands:
        t, out = time_process(lb + argv, repeats, env)
        if "--json" in argv:
            obj = json.loads(out)
            size = f"{len(obj)} runs" if isinstance(obj, list) else "1 run"
        else:
            size = f"{len(out) // 1024} KiB" if len(out) >= 1024 else f"{len(out)} B"
        ok = median(t) * 1000 < GOAL_MS
        if not ok:
            failed.append(label)
        cli_times[label] = median(t)
        print(f"  {label:56}{ms(median(t))} {ms(p90(t))}{size:>9}   {'PASS' if ok else 'FAIL'}")
    print(
        f"  => {len(commands) - len(failed)}/{len(commands)} commands under {GOAL_MS:.0f} ms"
        + (f"; over: {', '.join(failed)}" if failed else "")
    )

    # -- in-process ---------------------------------------------------------------------------
    from labbook.store import Store
    from labbook.store.query import RunFilter, parse_where, resolve, select_runs

    store = Store.open(db, create=False)

    def q(where: list[str]) -> Any:
        return lambda: store.records(
            select_runs(store, RunFilter(where=parse_where(where))), heavy=False
        )

    inproc = {
        "filter": q(["optimizer.lr>=0.01", "val/loss<0.5"]),
        "filter_eq": q(["optimizer.lr=0.01", "val/loss<0.5"]),
        "param": q(["optimizer.lr>=0.01"]),
        "newest": q([]),
        "show": lambda: store.record(resolve(store, show_id)),
        "show_last": lambda: store.record(resolve(store, "@last")),
    }
    in_times = {k: time_call(fn, repeats) for k, fn in inproc.items()}
    lb_filter_ids = [r["id"] for r in inproc["filter"]()]
    lb_eq_ids = [r["id"] for r in inproc["filter_eq"]()]
    lb_param_ids = [r["id"] for r in inproc["param"]()]
    lb_newest_ids = [r["id"] for r in inproc["newest"]()]
    n_match = len(
        select_runs(
            store, RunFilter(where=parse_where(["optimizer.lr>=0.01", "val/loss<0.5"]), limit=None)
        )
    )
    plans = {k: slowest_sql(store, fn) for k, fn in inproc.items()}
    store.close()
    rule(f"labbook in-process (store open; warm; median of {repeats})")
    print(f"{'':58}{'median ms':>9}{'p90 ms':>9}")
    rows = [
        ("select_runs+records: lr>=0.01 & val/loss<0.5 (50)", "filter"),
        ("select_runs+records: lr=0.01 & val/loss<0.5 (50)", "filter_eq"),
        ("select_runs+records: lr>=0.01 (50)", "param"),
        ("select_runs+records: newest 50", "newest"),
        ("resolve+record (heavy): show <id>", "show"),
        ("resolve+record (heavy): show @last", "show_last"),
    ]
    for label, k in rows:
        print(f"  {label:56}{ms(median(in_times[k]))} {ms(p90(in_times[k]))}")
    print(f"  ({n_match:,} of {n:,} runs match lr>=0.01 & val/loss<0.5; ls shows the newest 50)")
    print("\n  the slowest SQL statement behind each (re-run alone) and its EXPLAIN QUERY PLAN:")
    for _label, k in rows:
        count, dt, _sql, plan = plans[k]
        print(f"  {k:10} {count:3} statements; slowest {dt * 1000:6.1f} ms: {' | '.join(plan)}")

    # -- MLflow ---------------------------------------------------------------------------------
    rule("peer: MLflow, SQLite store, the same runs")
    why = mlflow_available(args.mlflow_python)
    if why:
        print(f"  MLflow part skipped: {why}.")
        print(
            "  (create one: python3 -m venv /work/benchenv && /work/benchenv/bin/pip install mlflow)"
        )
        print(f"\n{loadavg()} at the end")
        return
    mpy = args.mlflow_python
    mdb = work / "mlflow.db"
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{mdb}{suffix}").unlink(missing_ok=True)
    uri = f"sqlite:///{mdb}"
    init = mlflow_helper(mpy, work, {"mode": "init", "uri": uri})
    exp = init["experiment_id"]
    bt = build_mlflow(mdb, n, exp, work / "mlruns")
    print(
        f"  MLflow {init['version']}: schema created by mlflow, {n:,} runs bulk-inserted in {bt:.1f} s "
        f"({mdb.stat().st_size / 1e6:.0f} MB)"
    )
    cfg = {
        "mode": "query",
        "uri": uri,
        "experiment_id": exp,
        "filter": MLFLOW_FILTER,
        "param_filter": MLFLOW_PARAM_FILTER,
        "show_uuid": mlflow_uuid(show_i),
        "repeats": repeats,
        "slow_s": 3.0,
        "slow_repeats": 3,
    }
    res = mlflow_helper(mpy, work, cfg)
    imports = [res["import_s"]]
    for _ in range(2):
        imports.append(mlflow_helper(mpy, work, {"mode": "import", "uri": uri})["import_s"])
    mq = res["queries"]
    chk = res["check"]
    print(
        f"  check: search_runs returned {chk['runs']} runs with {chk['params']} params and "
        f"{chk['metrics']} metrics each; get_metric_history gave {chk['history_points']} points"
    )
    same = {
        "filter": mq["filter_pandas"]["names"] == lb_filter_ids == mq["filter_client"]["names"],
        "param": mq["param_pandas"]["names"] == lb_param_ids,
        "newest": mq["newest_pandas"]["names"] == lb_newest_ids,
        "show": mq["get_run"]["names"] == [show_id],
        "last": mq["get_last"]["names"] == [lb_newest_ids[0]],
    }
    print(
        "  same runs returned as labbook: "
        + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in same.items())
        + f" (labbook lr>=0.01 vs lr=0.01 top 50 identical: {'yes' if lb_eq_ids == lb_filter_ids else 'NO'})"
    )
    print("  compared:")
    print(
        "    labbook  ls --where 'optimizer.lr>=0.01' --where 'val/loss<0.5'   (numeric >= on the param)"
    )
    print(f'    MLflow   search_runs(filter_string="{MLFLOW_FILTER}", max_results=50)')
    print("             (params are strings: no numeric >=; on this data 0.01 is the largest lr,")
    print("              so both select the same runs — checked above)")
    print(
        f"    labbook  ls --where 'optimizer.lr>=0.01' --json  vs  MLflow \"{MLFLOW_PARAM_FILTER}\""
    )
    print(
        "    labbook  ls (newest 50)  vs  search_runs(max_results=50) (ordered by start_time DESC)"
    )
    print("    labbook  show ID / @last  vs  MlflowClient.get_run(run_id) / get_run(newest)")
    imp = median(imports)
    print(
        f"\n  import mlflow: {imp:.2f} s (median of {len(imports)} processes; not in the query times)"
        f"\n  first search_runs in a process (store set-up, lazy imports): {res['first_call_s']:.2f} s"
    )
    print(f"\n{'':58}{'median ms':>9}{'p90 ms':>9}{'n':>4}")
    labels = [
        ("mlflow.search_runs param+metric filter (pandas)", "filter_pandas"),
        ("MlflowClient.search_runs param+metric filter", "filter_client"),
        ("mlflow.search_runs param filter (pandas)", "param_pandas"),
        ("mlflow.search_runs newest 50 (pandas)", "newest_pandas"),
        ("MlflowClient.search_runs newest 50", "newest_client"),
        ("MlflowClient.get_run(run_id)", "get_run"),
        ("MlflowClient.get_run(newest)", "get_last"),
    ]
    for label, k in labels:
        t = mq[k]["times"]
        print(f"  {label:56}{ms(median(t))} {ms(p90(t))}{len(t):>4}")

    rule("ratios (median / median; < 1 means labbook is faster)")
    pairs = [
        ("filter", commands[0][0], "filter_pandas", "filter"),
        ("param filter, --json", commands[1][0], "param_pandas", "param"),
        ("newest 50", commands[2][0], "newest_pandas", "newest"),
        ("show <id> --json", commands[4][0], "get_run", "show"),
        ("show @last", commands[5][0], "get_last", "show_last"),
    ]
    print(
        f"{'':24}{'labbook CLI':>12}{'MLflow q':>10}{'CLI/q':>8}"
        f"{'labbook lib':>13}{'lib/q':>8}{'CLI/(import+q)':>16}"
    )
    for label, cli_label, mk, ik in pairs:
        c = cli_times[cli_label]
        m = median(mq[mk]["times"])
        lib = median(in_times[ik])
        print(
            f"  {label:22}{c * 1000:10.1f}ms{m * 1000:8.1f}ms{c / m:8.3f}"
            f"{lib * 1000:11.1f}ms{lib / m:8.3f}{c / (imp + m):16.3f}"
        )
    print(
        "  CLI/q: labbook's whole process (interpreter start, imports, open, query, print) against\n"
        "  MLflow's warm in-process call alone — unfair to labbook on purpose: it is what a user\n"
        "  waits for at a prompt against the best case of a long-running MLflow session.\n"
        "  lib/q: like for like, both in-process and warm. CLI/(import+q): both pay their imports."
    )
    print(f"\n{loadavg()} at the end")


if __name__ == "__main__":
    main()
