#!/usr/bin/env python
"""Benchmark: ``labbook export --curves --format csv`` against TensorBoard's own route.

What it does
------------
1. Writes RUNS TensorBoard run directories (default 2,000; ``--quick``: 200), each one
   event file of 3 tags (``train/loss``, ``train/lr``, ``val/loss``) x STEPS steps
   (default 200), one ``simple_value`` scalar per event as ``add_scalar`` writes them
   (tensorboardX's ``RecordWriter``, its pure-Python CRC swapped for google_crc32c
   while generating: same bytes, faster to write). Records them with ``labbook
   import`` (in-process, not timed).
2. Times, each the median of ``--repeat`` runs:
   (a) ``labbook export --curves --format csv -o FILE``, the real CLI in a child
       process (start-up included): the stored curves, from SQLite;
   (b) ``labbook export --curves --full --format csv -o FILE``: every point read
       again from the event files by labbook's reader;
   (c) TensorBoard's route, in-process (imports not timed): for each run directory
       ``EventAccumulator(dir, size_guidance={"scalars": 0}).Reload()``, then every
       ``Scalars(tag)`` through ``csv.writer`` (run, tag, step, value, wall_time).
   All three must write the same number of rows (STEPS <= 1,000: the stored curves
   are every point). Prints rows/s and the ratios (c)/(a) and (c)/(b).

Run:  python benchmarks/bench_export.py [--quick] [--runs N] [--steps S] [--repeat R]
A benchmark, not a test: it asserts nothing about time.
"""

from __future__ import annotations

import argparse
import csv
import gc
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TAGS = ("train/loss", "train/lr", "val/loss")


def write_runs(root: Path, runs: int, steps: int) -> None:
    import tensorboardX.record_writer as record_writer
    from tensorboardX.proto import event_pb2, summary_pb2

    try:
        import google_crc32c

        record_writer.crc32c = google_crc32c.value
    except ImportError:
        pass
    event, summary, value = event_pb2.Event, summary_pb2.Summary, summary_pb2.Summary.Value
    t0 = 1_790_000_000.0
    for r in range(runs):
        d = root / f"run{r:05d}"
        d.mkdir(parents=True)
        w = record_writer.RecordWriter(str(d / f"events.out.tfevents.{int(t0)}.bench.{r}"))
        w.write(event(wall_time=t0, file_version="brain.Event:2").SerializeToString())
        for step in range(steps):
            for i, tag in enumerate(TAGS):
                w.write(
                    event(
                        wall_time=t0 + step * 0.1 + i * 0.01,
                        step=step,
                        summary=summary(
                            value=[value(tag=tag, simple_value=(r + 1) / (step + 1) + i)]
                        ),
                    ).SerializeToString()
                )
        w.close()


def timed(function: Callable[[], Any]) -> tuple[float, Any]:
    gc.collect()
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def labbook_export(db: Path, out: Path, *extra: str) -> int:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "labbook",
            "--db",
            str(db),
            "export",
            "--curves",
            *extra,
            "--format",
            "csv",
            "-o",
            str(out),
        ],
        check=True,
    )
    with open(out) as f:
        return sum(1 for _ in f) - 1


def tensorboard_export(root: Path, out: Path) -> int:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    n = 0
    with open(out, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(("run", "tag", "step", "value", "wall_time"))
        for d in sorted(root.iterdir()):
            acc = EventAccumulator(str(d), size_guidance={"scalars": 0})
            acc.Reload()
            for tag in acc.Tags()["scalars"]:
                events = acc.Scalars(tag)
                writer.writerows((d.name, tag, e.step, e.value, e.wall_time) for e in events)
                n += len(events)
    return n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--quick", action="store_true", help="200 runs")
    ap.add_argument("--runs", type=int, default=None)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    runs = args.runs or (200 if args.quick else 2000)
    logging.getLogger("tensorboard").setLevel(logging.ERROR)
    import tensorboard.backend.event_processing.event_accumulator  # noqa: F401 (import not timed)

    from labbook.sources.importer import import_paths
    from labbook.store import Store

    with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
        root, db = Path(tmp) / "runs", Path(tmp) / "labbook.db"
        seconds, _ = timed(lambda: write_runs(root, runs, args.steps))
        print(f"{runs:,} runs x {len(TAGS)} tags x {args.steps:,} steps written in {seconds:.1f} s")
        with Store.open(db) as store:
            seconds, report = timed(lambda: import_paths(store, [root], git=False))
        print(f"imported {len(report.ids):,} runs in {seconds:.1f} s")
        results: dict[str, list[float]] = {"stored": [], "full": [], "tensorboard": []}
        rows: dict[str, int] = {}
        for _ in range(args.repeat):
            for name, fn in (
                ("stored", lambda: labbook_export(db, Path(tmp) / "a.csv")),
                ("full", lambda: labbook_export(db, Path(tmp) / "b.csv", "--full")),
                ("tensorboard", lambda: tensorboard_export(root, Path(tmp) / "c.csv")),
            ):
                seconds, n = timed(fn)
                results[name].append(seconds)
                rows[name] = n
        expected = runs * len(TAGS) * args.steps
        for name, n in rows.items():
            if n != expected:
                print(f"error: {name} wrote {n:,} rows, not {expected:,}", file=sys.stderr)
                return 1
        med = {k: statistics.median(v) for k, v in results.items()}
        print(
            f"rows: {expected:,} each; medians of {args.repeat} (machine: {os.cpu_count()} cores)"
        )
        labels = {
            "stored": "labbook export --curves (stored, CLI incl. start-up)",
            "full": "labbook export --curves --full (event files, CLI)",
            "tensorboard": "EventAccumulator + csv.writer (in-process)",
        }
        for name, label in labels.items():
            print(f"  {label:<55} {med[name]:7.2f} s  {expected / med[name]:>10,.0f} rows/s")
        print(f"ratio tensorboard/stored: {med['tensorboard'] / med['stored']:.1f}x")
        print(f"ratio tensorboard/full:   {med['tensorboard'] / med['full']:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
