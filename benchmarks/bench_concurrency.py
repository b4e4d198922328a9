"""How recording N simultaneous ``labbook run`` starts grows with N (issue #9).

For each N (default 10, 50, 200) in a fresh database:

* the floor: N bare commands (the same child, no labbook) started back to back,
  from the first start until all have ended;
* labbook: N ``labbook run -- <child>`` started back to back, until all have
  ended and every run is recorded (a run left in the journal counts as recorded
  only once a later command has written it, and that time is included).

It prints, per N: both times, their ratio, the time per start, how many launches
had to use the journal, lock errors (must be 0), wrong exit codes (must be 0),
and runs recorded (must be N, each once). On a 2-core machine the time is mostly
Python start-up shared by N processes, so it grows about linearly in N.

    python benchmarks/bench_concurrency.py            # N = 10, 50, 200
    python benchmarks/bench_concurrency.py --n 10 50  # other sizes
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests import stress


def bare(n: int, work: Path) -> float:
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    procs = [
        subprocess.Popen([sys.executable, "-c", stress.CHILD, str(work / f"bare-{i}"), str(i % 4)])
        for i in range(n)
    ]
    for p in procs:
        p.wait()
    return time.monotonic() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, nargs="+", default=[10, 50, 200])
    args = ap.parse_args()
    print(f"{'N':>5} {'bare s':>8} {'labbook s':>10} {'ratio':>6} {'ms/start':>9}"
          f" {'journal':>8} {'locks':>6} {'bad exit':>9} {'recorded':>9}")  # fmt: skip
    for n in args.n:
        with tempfile.TemporaryDirectory(prefix="labbook-bench-conc-") as tmp:
            base = Path(tmp)
            db = base / "lab.db"
            floor = bare(n, base / "bare")
            subprocess.run([*stress.LABBOOK, "--db", str(db), "import", str(base / "bare")],
                           capture_output=True, check=False)  # fmt: skip
            t0 = time.monotonic()
            out = stress.simultaneous_runs(db, n, base / "work", tag=f"n{n}")
            if out.journaled:
                subprocess.run([*stress.LABBOOK, "--db", str(db), "ls"], capture_output=True)
            took = time.monotonic() - t0
            counts = stress.command_runs(db, f"n{n}")
            once = sum(1 for c in counts.values() if c == 1)
            print(f"{n:>5} {floor:>8.2f} {took:>10.2f} {took / floor:>6.1f} {1000 * took / n:>9.1f}"
                  f" {out.journaled:>8} {len(out.lock_errors):>6} {len(out.wrong_exit):>9}"
                  f" {once:>5}/{n:<3}")  # fmt: skip
            if out.tracebacks:
                print("  tracebacks:", *out.tracebacks[:3], sep="\n  ")


if __name__ == "__main__":
    main()
