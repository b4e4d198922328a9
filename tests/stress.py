"""Many writers at once, for tests/test_concurrency.py and benchmarks/bench_concurrency.py.

Everything is real: ``labbook run`` and ``labbook import`` as child processes of
the installed command, writer processes that write run dirs under a root a real
``labbook watch`` follows, one SQLite file. Nothing waits a fixed time: the
commands are started back to back (well within one second) and awaited.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

LABBOOK = [sys.executable, "-m", "labbook"]

#: What each `labbook run` runs: leave a mark that it ran, exit with a given code.
CHILD = "import sys; open(sys.argv[1], 'w').close(); sys.exit(int(sys.argv[2]))"

#: A training script's run dir (generic layout: a config and a metrics file).
WRITER = """
import json, os, sys
out, seed = sys.argv[1], int(sys.argv[2])
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, "config.yaml"), "w") as f:
    f.write(f"lr: 0.01\\nseed: {seed}\\nbatch_size: 32\\n")
with open(os.path.join(out, "metrics.jsonl"), "w") as f:
    for step in range(20):
        f.write(json.dumps({"step": step, "loss": 1.0 / (step + 1 + seed)}) + "\\n")
"""

LOCK_WORDS = ("database is locked", "database is busy", "SQLITE_BUSY")


def env_for(db: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABBOOK_")}
    env["LABBOOK_DB"] = str(db)
    env["PYTHONWARNINGS"] = "ignore"
    return env


@dataclass
class Outcome:
    """What came of one batch of simultaneous commands."""

    n: int
    started_in_s: float = 0.0  # from the first start to the last
    elapsed_s: float = 0.0  # from the first start until all had ended
    wrong_exit: list[str] = field(default_factory=list)
    did_not_run: list[int] = field(default_factory=list)
    lock_errors: list[str] = field(default_factory=list)
    tracebacks: list[str] = field(default_factory=list)
    journaled: int = 0  # launches that said their record waits in the journal


def _stderr_problems(out: Outcome, label: str, stderr: str) -> None:
    if "Traceback" in stderr:
        out.tracebacks.append(f"{label}: {stderr.strip()[-400:]}")
    if any(w in stderr for w in LOCK_WORDS):
        out.lock_errors.append(f"{label}: {stderr.strip()[-400:]}")


def simultaneous_runs(db: Path, n: int, work: Path, *, tag: str = "stress") -> Outcome:
    """Start ``n`` ``labbook run`` back to back; wait for all; check what they did."""
    work.mkdir(parents=True, exist_ok=True)
    env = env_for(db)
    procs: list[tuple[int, subprocess.Popen[str]]] = []
    t0 = time.monotonic()
    for i in range(n):
        mark = work / f"ran-{tag}-{i}"
        cmd = [*LABBOOK, "run", "--no-check", "--no-git", "-t", tag, "--"]
        cmd += [sys.executable, "-c", CHILD, str(mark), str(i % 4)]
        p = subprocess.Popen(
            cmd,
            cwd=work,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        procs.append((i, p))
    out = Outcome(n=n, started_in_s=time.monotonic() - t0)
    for i, p in procs:
        _, stderr = p.communicate(timeout=300)
        if p.returncode != i % 4:
            out.wrong_exit.append(f"run {i}: exit {p.returncode}, wanted {i % 4}: {stderr[-300:]}")
        if not (work / f"ran-{tag}-{i}").exists():
            out.did_not_run.append(i)
        _stderr_problems(out, f"run {i}", stderr)
        if "kept in" in stderr and "journal" in stderr:
            out.journaled += 1
    out.elapsed_s = time.monotonic() - t0
    return out


def start_writers(root: Path, n: int) -> list[subprocess.Popen[str]]:
    """Start ``n`` writer processes, each writing its own run dir ``root/w<i>``."""
    return [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(root / f"w{i}"), str(i)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(n)
    ]


def concurrent_imports(db: Path, tree: Path, k: int) -> tuple[list[int], list[str], float]:
    """``k`` ``labbook import`` of the same tree at once: exit codes, stderrs, seconds."""
    env = env_for(db)
    t0 = time.monotonic()
    procs = [
        subprocess.Popen(
            [*LABBOOK, "import", "--no-git", str(tree)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(k)
    ]
    results = [p.communicate(timeout=600) for p in procs]
    return [p.returncode for p in procs], [e for _, e in results], time.monotonic() - t0


def make_tree(root: Path, n: int) -> None:
    """``n`` generic run dirs below ``root`` (written in-process: fast)."""
    for i in range(n):
        d = root / f"r{i:05d}"
        d.mkdir(parents=True)
        (d / "config.yaml").write_text(f"lr: {0.001 * (i % 7 + 1)}\nseed: {i}\n")
        lines = [json.dumps({"step": s, "loss": 1.0 / (s + 1)}) for s in range(10)]
        (d / "metrics.jsonl").write_text("\n".join(lines) + "\n")


def recorded(db: Path, sql: str, args: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """Rows of a read-only query on the database."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def command_runs(db: Path, tag: str) -> dict[str, int]:
    """Mark file -> how many runs recorded that command (tagged ``tag``)."""
    counts: dict[str, int] = {}
    for (command,) in recorded(
        db,
        "SELECT r.command FROM runs r JOIN tags t ON t.run_id = r.id"
        " WHERE t.tag = ? AND r.deleted_at IS NULL",
        (tag,),
    ):
        argv = json.loads(str(command))
        counts[argv[-2]] = counts.get(argv[-2], 0) + 1
    return counts
