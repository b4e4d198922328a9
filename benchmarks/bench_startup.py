#!/usr/bin/env python
"""Benchmark: how fast labbook starts — whole processes, against ``python -c pass``.

What it does
------------
Times each command as a user runs it: a whole process each time, stdout and stderr
to pipes, environment without ``LABBOOK_DB``, ``COLUMNS=120``. The commands are run
round-robin (one of each per round, ``--repeat`` rounds after one warm-up round), so
a busy neighbour on a shared machine slows all of them alike; medians and p90s are
printed, with the start-up floor ``python -c pass`` measured in the same rounds.

===========================================  ============================================
figure                                       goal
===========================================  ============================================
``labbook --help``                           median <= floor + 60 ms
``labbook ls`` (100,000-run store)           median <= 150 ms wall
``labbook check --hook --line LINE``         median <= 100 ms wall (the shell hooks' path,
                                             ``python -m labbook check --hook``)
``labbook diff A B`` (bench_diff's pair)     median <= 300 ms wall
===========================================  ============================================

Each is measured as ``python -m labbook …`` (the interpreter given, default this
one). ``--help`` and ``ls`` are also measured through the ``labbook`` console script
next to the interpreter, when there is one (pip's wrapper: ``from labbook.cli import
main``; some pip versions' wrappers import ``importlib.metadata`` instead).

The stores
----------
Building them takes minutes, so they are cached under ``--workdir`` (default
``/tmp/labbook-bench-startup``) and reused by later runs (``--rebuild`` builds them
again; delete the directory to free the ~800 MB):

* ``WORKDIR/query/labbook.db``: 100,000 runs by ``bench_query.build_labbook`` — the
  same layout as ``bench_query.py --workdir WORKDIR/query --reuse``;
* ``WORKDIR/diff/bench.db``: ``bench_diff.py``'s 100,000 fillers plus the big pair
  A/B (10,000 config keys, 5 MB patches) and A's seed peers — the same layout as
  ``bench_diff.py --workdir WORKDIR/diff``.

``--quick`` uses 5,000 / 10,000 runs in ``WORKDIR/quick-*`` (the goals are for the
full sizes). Byte-code for labbook and the TUI is compiled first, as an installed
labbook has it (``--no-compile``: measure the tree as found). The hook is timed against the 100,000-run store twice: run inside a git
work tree (``WORKDIR/repo``: an indexed lookup of its runs, of which there are none)
and outside any (``WORKDIR/norepo``: runs started in that directory, a scan).

Run:  python benchmarks/bench_startup.py [--quick] [--repeat 15] [--importtime]
This is a benchmark, not a test: it asserts nothing about time.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

HELP_MARGIN_MS = 60.0
LS_GOAL_MS = 150.0
HOOK_GOAL_MS = 100.0
DIFF_GOAL_MS = 300.0
HOOK_LINE = "python train.py --lr 5"


def p90(xs: list[float]) -> float:
    s = sorted(xs)
    return s[max(0, math.ceil(0.9 * len(s)) - 1)]


def loadavg() -> str:
    try:
        return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except OSError:
        return "load average unknown"


def query_store(work: Path, n: int, rebuild: bool) -> Path:
    import bench_query

    db = work / "labbook.db"
    if rebuild or not db.exists():
        work.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        print(f"building {n:,} runs in {db} (bench_query's builder; cached for later runs) …")
        info = bench_query.build_labbook(db, n, analyze=False)
        print(f"  built in {info['seconds']:.0f} s, {info['bytes'] / 1e6:.0f} MB")
    else:
        from labbook.store import Store

        Store.open(db).close()  # bring its schema up to date before anything is timed
        print(f"reusing {db} ({db.stat().st_size / 1e6:.0f} MB)")
    return db


def compile_bytecode(py: str, cwd: Path) -> None:
    """Byte-code for labbook and the TUI, as ``pip install .`` writes it; without it (an
    editable install under PYTHONDONTWRITEBYTECODE=1, as in this sandbox) every process
    compiles labbook's modules again, ~20 ms of each figure."""
    code = (
        "import compileall, importlib.util, sys\n"
        "for name in ('labbook', 'labbook_tui'):\n"
        "    spec = importlib.util.find_spec(name)\n"
        "    for d in (spec.submodule_search_locations or []) if spec else []:\n"
        "        compileall.compile_dir(d, quiet=1)\n"
        "        print(d)\n"
    )
    dirs = subprocess.run(
        [py, "-c", code], capture_output=True, text=True, check=True, cwd=cwd
    ).stdout  # the cwd of the timed commands: they import the same labbook
    print(f"byte-code compiled in {', '.join(dirs.split())} (--no-compile: as found)")


def diff_store(work: Path, n: int, rebuild: bool) -> tuple[Path, str, str]:
    import bench_diff

    from labbook.store import Store

    db = work / "bench.db"
    if rebuild or not db.exists():
        work.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        print(f"building {n:,} fillers + the big pair in {db} (bench_diff's builder) …")
        t0 = time.perf_counter()
        bench_diff.build_fillers(db, n)
        bench_diff.build_pair(db)
        print(f"  built in {time.perf_counter() - t0:.0f} s, {db.stat().st_size / 1e6:.0f} MB")
    else:
        print(f"reusing {db} ({db.stat().st_size / 1e6:.0f} MB)")
    with Store.open(db) as store:
        a = store.id_for_source("/bench/project/runs/A")
        b = store.id_for_source("/bench/project/runs/B")
    if not a or not b:
        sys.exit(f"{db} has no runs A and B: run again with --rebuild")
    return db, a, b


def importtime(py: str, argv: list[str], env: dict[str, str], cwd: Path, top: int = 12) -> None:
    """The ``top`` imports by cumulative time (``-X importtime``), top-level ones marked."""
    p = subprocess.run([py, "-X", "importtime", *argv], capture_output=True, text=True, env=env,
                       cwd=cwd)  # fmt: skip
    rows = []
    for line in p.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, self_us, cum_us, name = (part.strip() for part in line.replace(":", "|", 1).split("|"))
        if not cum_us.isdigit():
            continue
        rows.append((int(cum_us), int(self_us), name))
    print(f"\n-X importtime {' '.join(argv)}: top {top} by cumulative µs")
    for cum, self_us, name in sorted(rows, reverse=True)[:top]:
        print(f"  {cum:>8} {self_us:>8}  {name}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small stores (5,000 / 10,000 runs)")
    ap.add_argument("--repeat", type=int, default=15, help="timed rounds (default 15)")
    ap.add_argument("--workdir", default="/tmp/labbook-bench-startup", help="the cached stores")
    ap.add_argument("--rebuild", action="store_true", help="build the cached stores again")
    ap.add_argument("--python", default=sys.executable, help="interpreter to time")
    ap.add_argument("--importtime", action="store_true", help="also print -X importtime tops")
    ap.add_argument(
        "--no-compile", action="store_true", help="do not compile labbook's byte-code first"
    )
    args = ap.parse_args()
    py = args.python
    work = Path(args.workdir)
    nq, nd = (5_000, 10_000) if args.quick else (100_000, 100_000)
    prefix = "quick-" if args.quick else ""
    print(f"labbook bench_startup — {py} (Python {sys.version.split()[0]}), "
          f"{os.cpu_count()} cores; {loadavg()}")  # fmt: skip
    work.mkdir(parents=True, exist_ok=True)
    if not args.no_compile:
        compile_bytecode(py, work)
    qdb = query_store(work / f"{prefix}query", nq, args.rebuild)
    ddb, a, b = diff_store(work / f"{prefix}diff", nd, args.rebuild)
    repo = work / "repo"
    (repo / ".git").mkdir(parents=True, exist_ok=True)  # find_repo_root looks for .git only
    norepo = work / "norepo"
    norepo.mkdir(exist_ok=True)

    env = {k: v for k, v in os.environ.items() if k != "LABBOOK_DB"}
    env["COLUMNS"] = "120"
    script = Path(py).parent / "labbook"
    lb = [py, "-m", "labbook"]
    # as the shell hooks run it: the store from $LABBOOK_DB (or the default), no --db
    hook = [*lb, "check", "--hook", "--line", HOOK_LINE]
    hook_env = {**env, "LABBOOK_DB": str(qdb)}
    # label, argv, cwd, goal kind, goal ms
    cases: list[tuple[str, list[str], Path, str, float]] = [
        ("python -c pass (floor)", [py, "-c", "pass"], work, "", 0.0),
        ("python -m labbook --help", [*lb, "--help"], work, "margin", HELP_MARGIN_MS),
        ("python -m labbook ls", [*lb, "--db", str(qdb), "ls"], work, "wall", LS_GOAL_MS),
        ("python -m labbook check --hook (in a repo)", hook, repo, "wall", HOOK_GOAL_MS),
        ("python -m labbook check --hook (no repo)", hook, norepo, "wall", HOOK_GOAL_MS),
        ("python -m labbook diff A B", [*lb, "--db", str(ddb), "diff", a, b], work, "wall",
         DIFF_GOAL_MS),
    ]  # fmt: skip
    if script.exists():
        cases += [
            ("labbook --help (console script)", [str(script), "--help"], work, "margin",
             HELP_MARGIN_MS),
            ("labbook ls (console script)", [str(script), "--db", str(qdb), "ls"], work, "wall",
             LS_GOAL_MS),
        ]  # fmt: skip
        head = script.read_text(errors="replace").splitlines()[:6]
        wrapper = next((ln for ln in head if "import" in ln and "labbook" in ln), "?")
        print(f"console script {script}: {wrapper.strip()}")

    times: dict[str, list[float]] = {label: [] for label, *_ in cases}
    sizes: dict[str, int] = {}
    for rnd in range(args.repeat + 1):
        for label, argv, cwd, _, _ in cases:
            t0 = time.perf_counter()
            p = subprocess.run(argv, capture_output=True, cwd=cwd,
                               env=hook_env if argv is hook else env)  # fmt: skip
            dt = time.perf_counter() - t0
            if p.returncode != 0:
                sys.exit(f"failed ({p.returncode}): {' '.join(argv)}\n{p.stderr.decode()}")
            if rnd:  # round 0 is the warm-up
                times[label].append(dt)
            sizes[label] = len(p.stdout)
    print(f"\nwhole processes, median of {args.repeat} rounds after 1 warm-up; {loadavg()}")
    floor = statistics.median(times[cases[0][0]]) * 1000
    print(f"{'command':46}{'median ms':>10}{'p90 ms':>8}{'- floor':>9}{'ratio':>7}"
          f"{'stdout B':>9}  goal")  # fmt: skip
    for label, _, _, kind, goal in cases:
        med = statistics.median(times[label]) * 1000
        if kind == "margin":
            verdict = f"floor + {goal:.0f} ms: {'pass' if med - floor <= goal else 'FAIL'}"
        elif kind == "wall":
            verdict = f"<= {goal:.0f} ms: {'pass' if med <= goal else 'FAIL'}"
        else:
            verdict = ""
        print(f"{label:46}{med:>10.1f}{p90(times[label]) * 1000:>8.1f}{med - floor:>+9.1f}"
              f"{med / floor:>7.2f}{sizes[label]:>9}  {verdict}")  # fmt: skip
    if args.importtime:
        importtime(py, ["-m", "labbook", "--help"], env, work)
        importtime(py, hook[1:], hook_env, repo)
        importtime(py, ["-m", "labbook", "--db", str(qdb), "ls"], env, work)
    print(f"\n{loadavg()}")


if __name__ == "__main__":
    main()
