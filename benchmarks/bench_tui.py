#!/usr/bin/env python
"""Benchmark: the labbook TUI over a big store — first paint, and filter keystroke to table.

What it does
------------
1. Builds a store of N runs (default 100,000; ``--quick``: 5,000) with
   ``bench_query.build_labbook`` (20 params, 5 metrics, git, env, log per run; bulk SQL,
   ~1 min at 100,000), or reuses ``--db``.
2. **Time to first paint, in-process**: ``make_app`` → Textual headless app running →
   runs screen mounted, first window read and the screen painted (``run_test`` +
   ``pilot.pause()``). Median of ``--repeat``. Goal: < 1 s.
3. **Time to first paint, whole process** (when tmux is installed): ``python -m labbook
   --db DB tui`` in a real 120×40 tmux pane, from spawning the process to
   ``capture-pane`` first showing "of 100,000 runs" (polled every 10 ms), imports and
   Python start-up included. Goal: < 1 s.
4. **Filter keystroke → repainted table**: with the filter bar focused, one
   keystroke that completes a filter (``status=failed``, ``optimizer.lr>=0.01``,
   ``val/loss<0.5``, a name word, clearing it). Two figures: the work the keystroke
   causes (parse, ``count_runs``, ``select_runs_window``, ``Store.records`` of the
   window, table rebuild: ``RunsScreen.apply_filter``) and ``pilot.press`` of the last
   character until the app is idle again with the table repainted; the latter
   includes Pilot's own overhead, printed as the floor (a keystroke that changes
   nothing). Goal: < 100 ms.

There is no peer TUI to run against the same data, so the ratio printed is to the
goal (figure / goal; < 1 meets it). This is a benchmark, not a test: it asserts
nothing about time.

Run:  python benchmarks/bench_tui.py [--quick] [--db EXISTING.db] [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

PAINT_GOAL_S = 1.0
KEY_GOAL_S = 0.100
FILTERS = [
    ("status=failed", "status=faile", "d"),
    ("optimizer.lr>=0.01", "optimizer.lr>=0.0", "1"),
    ("val/loss<0.5", "val/loss<0.", "5"),
    ("name word 'run-0999'", "run-099", "9"),
    ("clear (all runs)", "x", "backspace"),
]


def loadavg() -> str:
    try:
        return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except OSError:
        return "load average unknown"


def row(name: str, times: list[float], goal: float) -> None:
    med = statistics.median(times)
    print(
        f"  {name:<44} {med * 1000:9.1f} ms  (min {min(times) * 1000:7.1f})"
        f"   {med / goal:5.2f} x goal  {'pass' if med < goal else 'FAIL'}"
    )


async def empty_app_paint() -> float:
    """The floor: a Textual app with one Static, started and painted the same way."""
    from textual.app import App, ComposeResult
    from textual.widgets import Footer, Static

    class Empty(App[None]):
        def compose(self) -> ComposeResult:
            yield Static("hello")
            yield Footer()

    t0 = time.perf_counter()
    async with Empty().run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        return time.perf_counter() - t0


async def first_paint(db: Path) -> tuple[float, int]:
    from labbook_tui.app import make_app
    from labbook_tui.run_table import RunTable

    t0 = time.perf_counter()
    app = make_app(db, poll_interval=None)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        table = app.screen.query_one(RunTable)
        elapsed = time.perf_counter() - t0
        return elapsed, table.total


def process_paint(db: Path, n: int) -> float | None:
    if shutil.which("tmux") is None:
        return None
    sock = Path(tempfile.mkdtemp()) / "tmux.sock"
    name = "bench" + uuid.uuid4().hex[:6]
    from labbook_tui.notebook import Notebook

    cap = Notebook.COUNT_CAP
    want = f"of {min(n, cap):,}{'+' if n > cap else ''} runs"
    tmux = ["tmux", "-S", str(sock)]
    try:
        t0 = time.perf_counter()
        subprocess.run(
            [
                *tmux,
                "new-session",
                "-d",
                "-s",
                name,
                "-x",
                "120",
                "-y",
                "40",
                "env",
                "TERM=xterm-256color",
                f"PYTHONPATH={REPO}",
                sys.executable,
                "-m",
                "labbook",
                "--db",
                str(db),
                "tui",
            ],
            check=True,
        )
        deadline = t0 + 30
        while time.perf_counter() < deadline:
            out = subprocess.run(
                [*tmux, "capture-pane", "-p", "-t", name], capture_output=True, text=True
            ).stdout
            if want in out:
                return time.perf_counter() - t0
            time.sleep(0.01)
        return float("nan")
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)
        shutil.rmtree(sock.parent, ignore_errors=True)


async def keystrokes(db: Path, repeat: int) -> dict[str, tuple[list[float], list[float]]]:
    from labbook_tui.app import make_app
    from labbook_tui.run_table import RunTable
    from labbook_tui.runs_screen import RunsScreen
    from textual.widgets import Input

    out: dict[str, tuple[list[float], list[float]]] = {}
    app = make_app(db, poll_interval=None)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, RunsScreen)
        box = screen.query_one("#filter", Input)
        table = screen.query_one(RunTable)
        box.focus()
        await pilot.pause()
        floor = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            await pilot.press("end")  # a key that changes nothing
            floor.append(time.perf_counter() - t0)
        out["floor: a keystroke that changes nothing"] = ([0.0], floor)
        for label, prefix, last in FILTERS:
            work, press = [], []
            for _ in range(repeat):
                with app.batch_update():
                    box.value = prefix
                await pilot.pause()
                full = prefix[:-1] if last == "backspace" else prefix + last
                t0 = time.perf_counter()
                screen.apply_filter(full)
                work.append(time.perf_counter() - t0)
                with app.batch_update():
                    box.value = prefix
                await pilot.pause()
                box.cursor_position = len(prefix)
                t0 = time.perf_counter()
                await pilot.press(last)
                press.append(time.perf_counter() - t0)
                assert box.value == full, (box.value, full)
            out[f"{label} → {table.total:,} runs"] = (work, press)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="5,000 runs")
    ap.add_argument("--runs", type=int)
    ap.add_argument("--db", help="use this existing store instead of building one")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    n = args.runs or (5_000 if args.quick else 100_000)
    work = Path(tempfile.mkdtemp(prefix="labbook-bench-tui-"))
    try:
        if args.db:
            db = Path(args.db)
        else:
            from bench_query import build_labbook

            db = work / "labbook.db"
            t0 = time.perf_counter()
            build_labbook(db, n, analyze=False)
            print(f"built {n:,} runs in {time.perf_counter() - t0:.1f} s ({db})")
        _bench(db, max(1, args.repeat))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _bench(db: Path, repeat: int) -> None:
    import platform

    from labbook_tui.notebook import Notebook

    from labbook.store import Store

    with Store.open(db) as s:
        n = s.count()
    print(
        f"labbook bench_tui — {n:,} runs, {platform.node()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {loadavg()}"
    )
    paints: list[float] = []
    for _ in range(repeat):
        elapsed, total = asyncio.run(first_paint(db))
        assert total == min(n, Notebook.COUNT_CAP), (total, n)  # counting stops at the cap
        paints.append(elapsed)
    floor = [asyncio.run(empty_app_paint()) for _ in range(repeat)]
    print("\nTime to first paint (goal < 1 s)")
    row("floor: an empty Textual app, same way", floor, PAINT_GOAL_S)
    row("in-process: make_app → painted runs table", paints, PAINT_GOAL_S)
    procs = [p for p in (process_paint(db, n) for _ in range(repeat)) if p is not None]
    if procs:
        row("whole process in tmux: spawn → table on screen", procs, PAINT_GOAL_S)
    else:
        print("  (tmux not installed: whole-process figure skipped)")
    print("\nFilter keystroke → repainted table (goal < 100 ms)")
    results: Any = asyncio.run(keystrokes(db, repeat))
    for label, (work, press) in results.items():
        if label.startswith("floor"):
            row(f"pilot.press floor ({label[7:]})", press, KEY_GOAL_S)
            continue
        row(f"{label[:34]}: work", work, KEY_GOAL_S)
        row(f"{label[:34]}: press→idle", press, KEY_GOAL_S)
    print(f"\n{loadavg()}")


if __name__ == "__main__":
    main()
