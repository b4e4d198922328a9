#!/usr/bin/env python
"""Benchmark: ``labbook watch`` — detection latency, tailing lag, idle cost.

What it does (the daemon runs as a real ``labbook watch --log`` process):
1. Creates N existing run dirs (default 10,000; ``--quick``: 1,000) under a root,
   starts the daemon (its catch-up scan records them), then creates K new runs
   (config.yaml + metrics.jsonl) one at a time and measures, from the first file's
   creation to the run's row being visible to another SQLite connection, the
   detection latency: p50 and p99 against the goals p50 < 100 ms, p99 < 1 s.
2. Idle: with those N run dirs watched, the daemon's CPU time over ``--idle`` seconds
   (default 60; quick: 10), as % of one core (goal < 1%), and its RSS (goal < 150 MB).
3. A writer logging ``--rate`` scalars/s (default 2,000) for ``--duration`` seconds
   (default 60; quick: 10) into metrics.jsonl (20 tags per line): once a second the
   steps recorded in the database are compared with the steps written; the lag (in
   seconds of writing) should stay flat: the first and last thirds' means are printed.

There is no peer for a live recorder of run directories (TensorBoard's own
reloader re-reads whole files each poll); the figures are printed against the goals.
Run:  python benchmarks/bench_watch.py [--quick] [--runs N] [--idle S] [--duration S]
This is a benchmark, not a test: it asserts nothing about time.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WRITER = r"""
import json, os, sys, time
run, rate, duration, tags = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
os.makedirs(run, exist_ok=True)
open(os.path.join(run, "config.yaml"), "w").write("lr: 0.1\n")
lines_per_s = rate / tags
t0 = time.monotonic()
step = 0
with open(os.path.join(run, "metrics.jsonl"), "a") as f:
    while time.monotonic() - t0 < duration:
        due = int((time.monotonic() - t0) * lines_per_s) + 1
        while step < due:
            rec = {"step": step, "t": time.time()}
            rec.update({f"m{k}": 1.0 / (step + k + 1) for k in range(tags)})
            f.write(json.dumps(rec) + "\n")
            step += 1
        f.flush()
        print(step, time.monotonic() - t0, flush=True)
        time.sleep(0.05)
"""


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q / 100 * (len(s) - 1)))]


def visible(conn: sqlite3.Connection, key: str) -> bool:
    try:
        return (
            conn.execute("SELECT 1 FROM runs WHERE source_key = ?", (key,)).fetchone() is not None
        )
    except sqlite3.OperationalError:
        return False


def wait_visible(conn: sqlite3.Connection, key: str, timeout: float = 30.0) -> float | None:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if visible(conn, key):
            return time.perf_counter() - t0
        time.sleep(0.002)
    return None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--runs", type=int)
    ap.add_argument("--new", type=int, default=50)
    ap.add_argument("--idle", type=float)
    ap.add_argument("--rate", type=float, default=2000)
    ap.add_argument("--duration", type=float)
    ap.add_argument("--workdir")
    a = ap.parse_args()
    n_runs = a.runs or (1000 if a.quick else 10000)
    idle_s = a.idle or (10.0 if a.quick else 60.0)
    duration = a.duration or (10.0 if a.quick else 60.0)
    import psutil

    work = Path(a.workdir or tempfile.mkdtemp(prefix="bench-watch-"))
    root = work / "root"
    db = work / "lab.db"
    print(f"load average at start: {os.getloadavg()}")
    t0 = time.perf_counter()
    old = time.time() - 86400
    for i in range(n_runs):
        run = root / f"group{i // 100}" / f"run{i}"
        run.mkdir(parents=True, exist_ok=True)
        (run / "config.yaml").write_text(f"lr: {i}\n")
        (run / "metrics.jsonl").write_text('{"step": 0, "loss": 1.0}\n')
        for f in (run / "config.yaml", run / "metrics.jsonl"):
            os.utime(f, (old, old))  # existing runs: last written a day ago
    print(f"created {n_runs} run dirs in {time.perf_counter() - t0:.1f} s")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # catch-up first (as a restart would), so the live daemon starts on a known tree
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "labbook", "--db", str(db), "watch", "--once", str(root)],
        check=True,
        capture_output=True,
        env=env,
    )
    print(f"first catch-up scan ({n_runs} new runs): {time.perf_counter() - t0:.1f} s")
    daemon = subprocess.Popen(
        [sys.executable, "-m", "labbook", "--db", str(db), "watch", "--log", str(root)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        assert daemon.stdout is not None
        t0 = time.perf_counter()
        while "watching" not in (daemon.stdout.readline() or "watching"):
            pass
        conn = sqlite3.connect(str(db), timeout=10)
        # the consumer is ready once a probe run shows up
        probe = root / "probe"
        probe.mkdir()
        (probe / "labbook.json").write_text("{}")
        wait_visible(conn, str(probe), timeout=600)
        print(f"daemon start-up with {n_runs} unchanged runs: {time.perf_counter() - t0:.1f} s")

        lat: list[float] = []
        for k in range(a.new):
            run = root / "new" / f"r{k}"
            run.mkdir(parents=True)
            (run / "config.yaml").write_text("lr: 1\n")
            (run / "metrics.jsonl").write_text('{"step": 0, "loss": 1.0}\n')
            got = wait_visible(conn, str(run))
            if got is not None:
                lat.append(got)
            time.sleep(0.05)
        print(f"\ndetection latency over {len(lat)}/{a.new} new runs ({n_runs} existing):")
        p50, p99 = pct(lat, 50) * 1000, pct(lat, 99) * 1000
        print(f"  p50 {p50:7.1f} ms   goal < 100 ms   ratio {p50 / 100:.2f}")
        print(f"  p99 {p99:7.1f} ms   goal < 1000 ms  ratio {p99 / 1000:.2f}")

        proc = psutil.Process(daemon.pid)
        time.sleep(2.0)
        c0 = sum(proc.cpu_times()[:2])
        t0 = time.perf_counter()
        time.sleep(idle_s)
        cpu = (sum(proc.cpu_times()[:2]) - c0) / (time.perf_counter() - t0) * 100
        rss = proc.memory_info().rss / 2**20
        print(f"\nidle over {idle_s:.0f} s with {n_runs} watched run dirs:")
        print(f"  CPU {cpu:6.2f} % of a core   goal < 1 %     ratio {cpu / 1:.2f}")
        print(f"  RSS {rss:6.1f} MB            goal < 150 MB  ratio {rss / 150:.2f}")

        tags = 20
        run = root / "busy"
        w = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(run), str(a.rate), str(duration), str(tags)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert w.stdout is not None
        lags: list[tuple[float, float]] = []
        lines_per_s = a.rate / tags
        last_check = 0.0
        for line in w.stdout:
            written, elapsed = line.split()
            if float(elapsed) - last_check < 1.0:
                continue
            last_check = float(elapsed)
            try:
                row = conn.execute(
                    "SELECT m.step FROM metrics m JOIN runs r ON r.id = m.run_id"
                    " WHERE r.source_key = ? AND m.tag = 'm0'",
                    (str(run),),
                ).fetchone()
            except sqlite3.OperationalError:
                row = None
            recorded = (row[0] + 1) if row and row[0] is not None else 0
            lags.append((float(elapsed), (int(written) - recorded) / lines_per_s))
        w.wait()
        if lags:
            third = max(1, len(lags) // 3)
            first = statistics.mean(lag for _, lag in lags[:third])
            last = statistics.mean(lag for _, lag in lags[-third:])
            print(f"\nwriter at {a.rate:.0f} scalars/s for {duration:.0f} s ({tags} tags/line):")
            print("  lag (s of writing) per second: " + " ".join(f"{lag:.2f}" for _, lag in lags))
            print(
                f"  mean lag first third {first:.2f} s, last third {last:.2f} s "
                f"(ratio {last / first if first else float('nan'):.2f}; flat ≈ 1)"
            )
        deadline = time.monotonic() + 30
        count = 0
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT m.count FROM metrics m JOIN runs r ON r.id = m.run_id"
                " WHERE r.source_key = ? AND m.tag = 'm0'",
                (str(run),),
            ).fetchone()
            count = row[0] if row else 0
            if lags and count >= int(lags[-1][0] * lines_per_s) - 1:
                break
            time.sleep(0.1)
        print(f"  points recorded for m0 at the end: {count}")
    finally:
        daemon.terminate()
        daemon.wait(timeout=60)
    print(f"load average at end: {os.getloadavg()}")
    if not a.workdir:
        import shutil

        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
