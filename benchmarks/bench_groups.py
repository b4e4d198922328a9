#!/usr/bin/env python
"""Benchmark: ``labbook ls --group`` against plain ``labbook ls`` over 20,000 runs.

What it does
------------
1. Builds a store (``Store.open`` creates the schema) with N runs (default 20,000;
   ``--quick``: 5,000) bulk-inserted with SQL in one transaction: 4,000 seed groups
   of 5 seeds (``runs.group_key`` as ``Store.save_run`` computes it: repository,
   entry point, config signature), 5 params and 3 metric summaries each; every
   tenth group is a point of a 10-point sweep.
2. Times the CLI as a user runs it — a whole process each time, stdout to a pipe —
   1 warm-up then the median of ``--repeat`` runs: ``ls`` (the newest 50 runs),
   ``ls --group`` (the newest 50 groups: a scan of every run's group key, then the
   250 members' records), ``ls --group --json``, ``ls --group -n 0`` (all 4,000
   groups: every run read), ``ls --sweep`` (the newest 50 sweeps), and prints each
   one's ratio to plain ``ls``.

Run:  python benchmarks/bench_groups.py [--quick] [--repeat 7] [--workdir DIR]
This is a benchmark, not a test: it asserts nothing about time.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = "/bench/project"
SEEDS = 5


def build(db: Path, n: int) -> None:
    from labbook.store import Store
    from labbook.store.configsig import signature_hash
    from labbook.store.groups import group_key

    rng = random.Random(1)
    with Store.open(db) as store:
        conn = store.conn
        conn.execute("BEGIN")
        runs, params, metrics = [], [], []
        for i in range(n):
            g, seed = divmod(i, SEEDS)
            rid = f"f{i:011x}"
            started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(1_600_000_000 + i * 60))
            config = {
                "optimizer.lr": [1e-4, 1e-3, 1e-2][g % 3],
                "model.depth": [18, 34, 50, 101][g % 4],
                "data.batch_size": 32 + g,
                "optimizer.name": "adam",
                "seed": seed,
            }
            command = ["python", "train.py", "--seed", str(seed), "--batch-size", str(32 + g)]
            sig = signature_hash(config)
            key = group_key(
                framework="command",
                command=command,
                cwd=ROOT,
                git_root=ROOT,
                git_remote=None,
                config_sig=sig,
            )
            sweep = f"bench-sweep-{g // 10}"  # 10 points (groups) a sweep
            runs.append(
                (rid, f"command:{rid}", f"train bs={32 + g} seed={seed}", ROOT, "finished",
                 started, started, started, ROOT, ROOT, json.dumps(command), sig, key,
                 "replicate" if sweep else None, sweep)
            )  # fmt: skip
            for k, v in config.items():
                num = float(v) if isinstance(v, (int, float)) else None
                params.append((rid, k, json.dumps(v), num))
            for tag in ("train/loss", "val/loss", "val/acc"):
                metrics.append((rid, tag, rng.random(), None, 0.0, 1.0, 1000, 11, None))
        conn.executemany(
            "INSERT INTO runs (id, source_key, name, path, status, started_at, created_at,"
            " updated_at, git_root, cwd, command, config_sig, group_key, sweep_kind, sweep_id)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            runs,
        )
        conn.executemany("INSERT INTO params (run_id, key, value, num) VALUES (?,?,?,?)", params)
        conn.executemany(
            "INSERT INTO metrics (run_id, tag, last, last_kind, min, max, step, count,"
            " nonfinite_step) VALUES (?,?,?,?,?,?,?,?,?)",
            metrics,
        )
        conn.execute("COMMIT")
        conn.execute("ANALYZE")


def time_cli(db: Path, args: list[str], repeat: int) -> float:
    cmd = [sys.executable, "-m", "labbook", "--db", str(db), *args]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)  # warm-up
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="5,000 runs")
    ap.add_argument("--runs", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--workdir", type=Path, default=None)
    a = ap.parse_args()
    n = a.runs or (5_000 if a.quick else 20_000)
    work = a.workdir or Path(tempfile.mkdtemp(prefix="bench-groups-"))
    work.mkdir(parents=True, exist_ok=True)
    db = work / "labbook.db"
    if db.exists():
        db.unlink()
    t = time.perf_counter()
    build(db, n)
    print(
        f"{n:,} runs, {n // SEEDS:,} seed groups of {SEEDS}: built in {time.perf_counter() - t:.1f} s"
    )
    base = time_cli(db, ["ls"], a.repeat)
    print(f"{'ls':<28} {base * 1000:8.1f} ms  (the peer: 1.00x)")
    for args in (
        ["ls", "--group"],
        ["ls", "--group", "--json"],
        ["ls", "--group", "--wide"],
        ["ls", "--group", "-n", "0"],
        ["ls", "--sweep"],
    ):
        t = time_cli(db, args, a.repeat)
        print(f"{' '.join(args):<28} {t * 1000:8.1f} ms  {t / base:5.2f}x plain ls")
    if a.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
