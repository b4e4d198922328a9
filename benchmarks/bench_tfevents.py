#!/usr/bin/env python
"""Benchmark: reading TensorBoard event files, labbook's reader against TensorBoard's.

What it does
------------
1. Writes an event file of N scalars (default 1,000,000; ``--quick``: 50,000): 5 tags
   of different lengths (``train/loss``, ``train/learning_rate``, ``train/grad_norm``,
   ``train/epoch``, ``eval/loss``) x N/5 steps, logged in the same order at every
   step as training loops do. The records are tensorboardX ``Event`` protos
   (``simple_value`` summaries, as ``SummaryWriter.add_scalar`` and torch write them)
   framed by tensorboardX's own ``RecordWriter``; only its pure-Python CRC is swapped
   for ``google_crc32c`` while generating (same bytes, 10x faster to write), and the
   writer's thread and queue are skipped (``SummaryWriter`` needs over a minute for
   1M scalars). A second file has the same scalars with the tag order shuffled at
   every step: the irregular worst case for labbook's block decoder.
2. Full read, the median of ``--repeat`` runs (EventAccumulator: at most 3, it is
   slow): (a) ``EventAccumulator(path, size_guidance={"scalars": 0}).Reload()`` and
   ``Scalars(tag)`` for every tag, TensorBoard's way without TensorFlow (it then checks
   CRCs in pure Python); (b) ``labbook.readers.tfevents.read_events(path)``, which
   checks both CRCs of every record too. Both must return the same scalars. Prints
   scalars/s and the ratio, against the goal of labbook >= 8x faster.
3. Incremental tailing: for files of 10,000 and N events, ``--rounds`` times: append
   100 events (and flush), then time ``read_events(path, offset, fingerprint)`` from
   the previous result, and ``EventAccumulator.Reload()`` on an accumulator that has
   already loaded the file (it also reads only the new records). Prints the median
   µs per appended event.

Run:  python benchmarks/bench_tfevents.py [--quick] [--scalars N] [--repeat R]
This is a benchmark, not a test: it asserts nothing about time (it does check that
both readers return the same scalars).
"""

from __future__ import annotations

import argparse
import functools
import gc
import logging
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from labbook.readers.tfevents import EventBatch, read_events

TAGS = ("train/loss", "train/learning_rate", "train/grad_norm", "train/epoch", "eval/loss")
APPEND = 100  # events appended per tailing round
SMALL = 10_000  # events in the small tailing file


class EventFile:
    """An event file being written with tensorboardX's RecordWriter (kept open to append)."""

    def __init__(self, path: Path) -> None:
        import google_crc32c
        import tensorboardX.record_writer as record_writer
        from tensorboardX.proto import event_pb2, summary_pb2

        # Same masked CRC, computed by the C extension instead of pure Python.
        record_writer.crc32c = google_crc32c.value  # type: ignore[attr-defined]
        self.path = path
        self._event = event_pb2.Event
        self._summary = summary_pb2.Summary
        self._value = summary_pb2.Summary.Value
        self._writer = record_writer.RecordWriter(str(path))
        self._writer.write(
            event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2").SerializeToString()
        )
        self.events = 0
        self.step = 0

    def write_steps(self, steps: int, rng: random.Random | None = None) -> None:
        """Write ``steps`` steps of one scalar per tag (shuffled per step if ``rng``)."""
        write = self._writer.write
        event, summary, value = self._event, self._summary, self._value
        tags = list(TAGS)
        for step in range(self.step, self.step + steps):
            if rng is not None:
                rng.shuffle(tags)
            for i, tag in enumerate(tags):
                number = 1.0 / (1 + step) + i
                write(
                    event(
                        wall_time=time.time(),
                        step=step,
                        summary=summary(value=[value(tag=tag, simple_value=number)]),
                    ).SerializeToString()
                )
        self.step += steps
        self.events += steps * len(TAGS)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


def timed(function: Callable[[], Any]) -> tuple[float, Any]:
    gc.collect()
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def accumulator_read(path: Path) -> tuple[Any, dict[str, list[tuple[int, float]]]]:
    """TensorBoard's way: load with EventAccumulator and read every scalar back."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(path), size_guidance={"scalars": 0})
    accumulator.Reload()
    scalars = {
        tag: [(e.step, e.value) for e in accumulator.Scalars(tag)]
        for tag in accumulator.Tags()["scalars"]
    }
    return accumulator, scalars


def as_pairs(batch: EventBatch) -> dict[str, list[tuple[int, float]]]:
    return {tag: [(p.step, p.value) for p in points] for tag, points in batch.scalars.items()}


def full_read(path: Path, scalars: int, repeat: int) -> tuple[float, float, Any]:
    """Median seconds for EventAccumulator and for read_events; returns the last accumulator."""
    accumulator_times, labbook_times = [], []
    accumulator = reference = None
    for _ in range(min(repeat, 3)):
        accumulator = reference = None
        seconds, (accumulator, reference) = timed(lambda: accumulator_read(path))
        accumulator_times.append(seconds)
    for _ in range(repeat):
        seconds, batch = timed(lambda: read_events(path))
        labbook_times.append(seconds)
        count = sum(len(points) for points in batch.scalars.values())
        if count != scalars:
            raise SystemExit(f"read_events returned {count} scalars, expected {scalars}")
        if as_pairs(batch) != reference:
            raise SystemExit("read_events and EventAccumulator disagree")
        del batch
    return statistics.median(accumulator_times), statistics.median(labbook_times), accumulator


def labbook_only(path: Path, scalars: int, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        seconds, batch = timed(lambda: read_events(path))
        times.append(seconds)
        if sum(len(points) for points in batch.scalars.values()) != scalars:
            raise SystemExit("read_events lost scalars in the irregular file")
        del batch
    return statistics.median(times)


def tail(file: EventFile, accumulator: Any, rounds: int) -> tuple[float, float]:
    """Median µs per appended event: (read_events from the last offset, Reload())."""
    previous = read_events(file.path)
    labbook_us, accumulator_us = [], []
    for _ in range(rounds):
        file.write_steps(APPEND // len(TAGS))
        seconds, batch = timed(
            functools.partial(read_events, file.path, previous.offset, previous.fingerprint)
        )
        if batch.records != APPEND or batch.reset:
            raise SystemExit(f"tail read {batch.records} records, expected {APPEND}")
        labbook_us.append(seconds / APPEND * 1e6)
        seconds, _ = timed(accumulator.Reload)
        accumulator_us.append(seconds / APPEND * 1e6)
        previous = batch
    return statistics.median(labbook_us), statistics.median(accumulator_us)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scalars", type=int, default=1_000_000, help="scalars in the big file")
    parser.add_argument("--quick", action="store_true", help="50,000 scalars, fewer repeats")
    parser.add_argument("--repeat", type=int, default=5, help="full reads per reader (median)")
    parser.add_argument("--rounds", type=int, default=7, help="tailing rounds (median)")
    args = parser.parse_args(argv)
    if args.quick:
        args.scalars, args.repeat, args.rounds = 50_000, 3, 5
    steps = max(args.scalars // len(TAGS), 1)
    scalars = steps * len(TAGS)
    logging.getLogger("tensorboard").setLevel(logging.ERROR)

    import google.protobuf
    import tensorboard

    with tempfile.TemporaryDirectory(prefix="bench_tfevents.") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        big = EventFile(root / "events.out.tfevents.1.big")
        big.write_steps(steps)
        irregular = EventFile(root / "events.out.tfevents.1.irregular")
        irregular.write_steps(steps, random.Random(0))
        irregular.close()
        small = EventFile(root / "events.out.tfevents.1.small")
        small.write_steps(SMALL // len(TAGS))
        generated = time.perf_counter() - started

        size_mb = big.path.stat().st_size / 1e6
        print(
            f"labbook tfevents benchmark: {scalars:,} scalars ({len(TAGS)} tags x {steps:,} steps),"
            f" {size_mb:.1f} MB, written in {generated:.1f} s"
        )
        print(
            f"Python {platform.python_version()}, tensorboard {tensorboard.__version__},"
            f" protobuf {google.protobuf.__version__}, {os.cpu_count()} CPUs, {platform.machine()}"
        )
        print()

        accumulator_s, labbook_s, accumulator = full_read(big.path, scalars, args.repeat)
        irregular_s = labbook_only(irregular.path, scalars, args.repeat)
        rows = [
            ("EventAccumulator Reload + Scalars", accumulator_s),
            ("labbook read_events (CRCs verified)", labbook_s),
            ("labbook read_events, tags shuffled", irregular_s),
        ]
        print(f"Full read, median of {args.repeat} (EventAccumulator: {min(args.repeat, 3)})")
        print(f"  {'reader':<40}{'seconds':>10}{'scalars/s':>14}")
        for name, seconds in rows:
            print(f"  {name:<40}{seconds:>10.3f}{scalars / seconds:>14,.0f}")
        ratio = accumulator_s / labbook_s
        verdict = "met" if ratio >= 8 else "NOT met"
        print(
            f"ratio: labbook is {ratio:.1f}x faster than EventAccumulator"
            f" ({accumulator_s / irregular_s:.1f}x with shuffled tags); goal >= 8x: {verdict}"
        )
        print()

        print(
            f"Incremental tail: append {APPEND} events, read them; median of {args.rounds} rounds"
        )
        print(
            f"  {'file':<22}{'labbook µs/event':>18}{'EventAccumulator µs/event':>28}{'ratio':>8}"
        )
        small_accumulator, _ = accumulator_read(small.path)
        for name, file, loaded in (
            (f"{SMALL:,} events", small, small_accumulator),
            (f"{big.events:,} events", big, accumulator),
        ):
            ours, theirs = tail(file, loaded, args.rounds)
            print(f"  {name:<22}{ours:>18.1f}{theirs:>28.1f}{theirs / ours:>7.1f}x")
        big.close()
        small.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
