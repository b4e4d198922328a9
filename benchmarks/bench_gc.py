"""`labbook gc` on a store with many orphaned blobs and series (whole process).

Builds a store of N runs through ``Store.save_run`` (each with its own log tail, git
diff and untracked-files record, as real runs have: three blobs a run, ~40 KB
compressed in all, plus 5 curves of 1,000 points), purges half of them
(``Store.purge_runs`` drops the blobs only those runs referenced, as ``rm --purge``
does) and then leaves orphans the way an older labbook, a crash or a hand-edited
database would: blobs and series that nothing references. Then times the real
``labbook gc`` (scan and delete in one write transaction, then VACUUM) and prints
what it freed, the database size before and after and the time of a second,
no-op ``gc``. There is no peer: MLflow and TensorBoard have no such command
(``mlflow gc`` deletes runs' artifacts and rows, not unreferenced blobs).

usage: python benchmarks/bench_gc.py [--quick] [--runs N] [--orphans K] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from labbook.model import GitState, Point, RunFacts  # noqa: E402
from labbook.store import Store  # noqa: E402


def build(db: Path, runs: int, orphans: int, seed: int = 1) -> list[str]:
    rnd = random.Random(seed)
    ids = []
    with Store.open(db) as s:
        for i in range(runs):
            noise = "".join(rnd.choice("abcdefghij ") for _ in range(12000))
            facts = RunFacts(
                path=f"/bench/run{i}",
                framework="generic",
                source_key=f"/bench/run{i}",
                name=f"run{i}",
                config={"lr": rnd.choice([0.1, 0.01]), "seed": i},
                log_tail=f"epoch {i}\n" + noise,
                metrics={
                    f"m{k}": [Point(step=j, value=rnd.random()) for j in range(1000)]
                    for k in range(5)
                },
            )
            facts.git = GitState(
                root="/bench", commit="0" * 40, diff=f"--- a\n+++ b\n{noise[::-1]}"
            )
            ids.append(s.save_run(facts)[0])
        s.purge_runs(ids[::2])
    conn = sqlite3.connect(db)
    with conn:
        for i in range(orphans):
            data = os.urandom(256) + bytes(rnd.randrange(256) for _ in range(3000))
            conn.execute(
                "INSERT INTO blobs (hash, size, data) VALUES (?, ?, ?)", (f"{i:064x}", 3256, data)
            )
            if i % 4 == 0:
                conn.execute(
                    "INSERT INTO series (run_id, tag, points) VALUES (?, ?, ?)",
                    (f"gone{i}", "loss", data),
                )
    conn.close()
    return ids[1::2]


def labbook(db: Path, *args: str) -> tuple[float, str]:
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "labbook", "--db", str(db), *args],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    ).stdout
    return time.perf_counter() - t0, out.strip()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--runs", type=int)
    ap.add_argument("--orphans", type=int)
    ap.add_argument("--workdir")
    a = ap.parse_args()
    runs = a.runs or (400 if a.quick else 2000)
    orphans = a.orphans or (2000 if a.quick else 20000)
    work = Path(a.workdir) if a.workdir else Path(tempfile.mkdtemp(prefix="bench-gc-"))
    work.mkdir(parents=True, exist_ok=True)
    db = work / "gc.db"
    for p in work.glob("gc.db*"):
        p.unlink()
    print(f"load average {os.getloadavg()[0]:.2f}; {runs} runs (half purged), {orphans} orphans")
    t0 = time.perf_counter()
    kept = build(db, runs, orphans)
    print(f"built in {time.perf_counter() - t0:.1f} s: {db.stat().st_size / 1e6:.1f} MB")
    dry_s, dry = labbook(db, "gc", "--dry-run")
    print(f"gc --dry-run  {dry_s * 1000:7.0f} ms  {dry}")
    gc_s, out = labbook(db, "gc")
    print(f"gc            {gc_s * 1000:7.0f} ms  {out}")
    again_s, again = labbook(db, "gc")
    print(f"gc (again)    {again_s * 1000:7.0f} ms  {again}")
    with Store.open(db) as s:
        assert s.count() == len(kept)
        assert all(s.log_tail(rid) for rid in kept[:: max(1, len(kept) // 50)])
    print(f"load average {os.getloadavg()[0]:.2f}; every kept run readable")
    if not a.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
