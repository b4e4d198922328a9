"""labbook rm / archive / gc on real stores filled by the real CLI (import of generated
run dirs, `labbook run`), checked through the real CLI: nothing that was not asked
for is ever lost, removed runs vanish everywhere and come back whole, purge asks on a
terminal, gc keeps every run a concurrent writer saves, watch skips removed dirs."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import random
import sqlite3
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli

REPO = Path(__file__).resolve().parents[1]


def cli(db: Path, *args: str, ok: bool = True, **kw: Any) -> subprocess.CompletedProcess[str]:
    r = run_cli(*args, db=db, **kw)
    if ok:
        assert r.returncode == 0, (args, r.stdout, r.stderr)
    return r


def ids(db: Path, *args: str) -> set[str]:
    return set(cli(db, "ls", "-q", "-n", "0", *args).stdout.split())


def write_run(root: Path, name: str, lr: float, bs: int, *, nan: bool = False) -> Path:
    d = root / name
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"lr": lr, "batch_size": bs, "seed": 1}))
    rows = [
        {"step": i, "loss": (float("nan") if nan and i == 3 else 1.0 / (i + 1))} for i in range(5)
    ]
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (d / "train.log").write_text(f"run {name}\n" + "x" * 200 + "\ndone\n")
    return d


@pytest.fixture
def filled(tmp_path: Path, db_path: Path) -> tuple[Path, Path, dict[str, dict[str, Any]]]:
    """30 imported runs with lr in {0.001, 0.01, 0.1}, batch sizes and a few NaN ones."""
    rnd = random.Random(15)
    root = tmp_path / "runs"
    for i in range(30):
        write_run(root, f"r{i:02d}", rnd.choice([0.001, 0.01, 0.1]), rnd.choice([16, 32, 64]))
    cli(db_path, "import", str(root))
    runs = {r["id"]: r for r in json.loads(cli(db_path, "ls", "-n", "0", "--json").stdout)}
    assert len(runs) == 30
    return root, db_path, runs


def test_rm_never_loses_a_run_that_was_not_asked_for(filled: Any) -> None:
    _root, db, runs = filled
    rnd = random.Random(4)
    live = set(runs)
    removed: set[str] = set()
    purged: set[str] = set()
    for round_ in range(8):
        choice = rnd.choice(["ids", "where", "undo", "purge"])
        if choice == "ids" and live:
            picked = set(rnd.sample(sorted(live), min(len(live) - 1, rnd.randint(1, 4))))
            if not picked:
                continue
            out = json.loads(cli(db, "rm", "--json", *sorted(picked)).stdout)
            assert set(out["removed"]) == picked
            live -= picked
            removed |= picked
        elif choice == "where" and live:
            lr = rnd.choice([0.001, 0.01, 0.1])
            bs = rnd.choice([16, 32, 64])
            want = {
                i
                for i in live
                if runs[i]["config"]["lr"] == lr and runs[i]["config"]["batch_size"] >= bs
            }
            r = cli(db, "rm", "--json", "-w", f"lr={lr}", "-w", f"batch_size>={bs}", ok=False)
            if not want:
                assert r.returncode == 1 and "no run matches" in r.stderr
                continue
            if want == live and len(want) > 1:
                assert r.returncode == 2 and "--all" in r.stderr
                continue
            assert r.returncode == 0, r.stderr
            assert set(json.loads(r.stdout)["removed"]) == want
            live -= want
            removed |= want
        elif choice == "undo" and removed:
            back = set(rnd.sample(sorted(removed), min(len(removed), 3)))
            cli(db, "rm", "--undo", *sorted(back))
            removed -= back
            live |= back
        elif choice == "purge" and removed:
            gone = set(rnd.sample(sorted(removed), min(len(removed), 2)))
            cli(db, "rm", "--purge", "-y", *sorted(gone))
            removed -= gone
            purged |= gone
        assert ids(db) == live, round_
    # whatever happened, the runs not asked for are whole (same record as before)
    after = {r["id"]: r for r in json.loads(cli(db, "ls", "-n", "0", "--json").stdout)}
    for rid in live:
        before = dict(runs[rid])
        now = dict(after[rid])
        for volatile in ("updated_at", "group", "sweep"):  # group sizes count live peers
            before.pop(volatile, None)
            now.pop(volatile, None)
        assert now == before
    # removed runs come back whole
    if removed:
        cli(db, "rm", "--undo", *sorted(removed))
        assert ids(db) == live | removed
        for rid in removed:
            assert (
                json.loads(cli(db, "show", rid, "--json").stdout)["metrics"] == runs[rid]["metrics"]
            )
    with sqlite3.connect(db) as conn:
        left = {r[0] for r in conn.execute("SELECT id FROM runs")}
        assert not (left & purged)
        for table in ("params", "metrics", "series", "tags", "notes", "files", "search_docs"):
            stray = conn.execute(
                f"SELECT count(*) FROM {table} WHERE run_id NOT IN (SELECT id FROM runs)"
            ).fetchone()[0]
            assert stray == 0, table


def test_empty_and_everything_selections_are_refused(filled: Any) -> None:
    _, db, runs = filled
    r = cli(db, "rm", ok=False)
    assert r.returncode == 2 and r.stderr.startswith("labbook: error: rm needs RUN")
    r = cli(db, "rm", "-w", "lr>100", ok=False)
    assert r.returncode == 1 and "no run matches the filter" in r.stderr
    r = cli(db, "rm", "-w", "lr>0", ok=False)
    assert r.returncode == 2 and "matches every run (30)" in r.stderr
    assert len(ids(db)) == 30
    r = cli(db, "rm", "r01", "-w", "lr>0", ok=False)
    assert r.returncode == 2 and "not both" in r.stderr
    dry = cli(db, "rm", "--dry-run", "-w", "lr>0", "--all")
    assert dry.stdout.startswith("would remove 30 runs:") and len(ids(db)) == 30
    cli(db, "rm", "-w", "lr>0", "--all")
    assert ids(db) == set()
    cli(db, "rm", "--undo", "--all")
    assert ids(db) == set(runs)


def test_a_removed_run_vanishes_everywhere_and_show_says_how_to_undo(filled: Any) -> None:
    root, db, runs = filled
    victim = next(i for i, r in runs.items() if r["name"].endswith("r07"))
    cli(db, "note", victim, "--lesson", "warm up first")
    assert victim in cli(db, "search", "warm up").stdout
    cli(db, "rm", victim)
    assert victim not in ids(db)
    assert victim not in cli(db, "search", "warm up").stdout
    assert victim not in cli(db, "compare", "-w", "lr>0", "--json").stdout
    r = cli(db, "show", victim, ok=False)
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        f"labbook: error: run {victim} was removed ({time.strftime('%Y-%m-%d', time.gmtime())}, labbook rm)",
        f"hint: `labbook rm --undo {victim}` brings it back",
    ]
    r = cli(db, "note", victim[:6], "again", ok=False)
    assert r.returncode == 1 and "was removed" in r.stderr
    # import does not record it again, unless asked
    out = json.loads(cli(db, "import", str(root), "--json").stdout)
    assert out["removed"] == [str(root / "r07")] and victim not in ids(db)
    cli(db, "import", str(root), "--include-removed")
    assert victim in ids(db)
    assert (
        json.loads(cli(db, "show", victim, "--json").stdout)["notes"][0]["text"] == "warm up first"
    )


def test_purged_run_dir_is_not_imported_again_until_undone(filled: Any) -> None:
    root, db, runs = filled
    victim = next(i for i, r in runs.items() if r["name"].endswith("r03"))
    cli(db, "rm", "--purge", "-y", victim)
    assert "no run matches" in cli(db, "show", victim, ok=False).stderr
    cli(db, "import", str(root), "--full")
    assert len(ids(db)) == 29
    cli(db, "rm", "--undo", str(root / "r03"))
    cli(db, "import", str(root))
    assert len(ids(db)) == 30 and victim not in ids(db)  # a new run: the old one is gone


def test_archive_hides_from_default_listings_only(filled: Any) -> None:
    _, db, runs = filled
    some = sorted(runs)[:5]
    out = cli(db, "archive", *some)
    assert out.stdout.startswith("archived 5 runs")
    assert ids(db) == set(runs) - set(some)
    assert ids(db, "--archived") == set(some)
    assert ids(db, "--all-runs") == set(runs)
    rec = json.loads(cli(db, "show", some[0], "--json").stdout)
    assert rec["archived_at"] is not None  # show still shows it
    cli(db, "archive", "--undo", some[0])
    assert ids(db, "--archived") == set(some[1:])
    # rm's filters select what ls lists: archived runs only when asked
    cli(db, "rm", "--all")
    assert ids(db, "--all-runs") == set(some[1:])
    cli(db, "rm", "--all", "--archived")
    assert ids(db, "--all-runs") == set()


def run_tty(args: list[str], db: Path, answer: bytes | None) -> tuple[int, str]:
    """`labbook ARGS` with stdin, stdout and stderr on a real pseudo-terminal."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "labbook", "--db", str(db), *args],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env={**os.environ, "TERM": "dumb", "PYTHONPATH": str(REPO)},
    )
    os.close(slave)
    out = b""
    sent = False
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
        if answer is not None and not sent and b"[y/N]" in out:
            os.write(master, answer)
            sent = True
    proc.wait(timeout=60)
    os.close(master)
    return proc.returncode, out.decode().replace("\r\n", "\n")


def test_purge_asks_on_a_terminal_and_refuses_without_one(filled: Any) -> None:
    _, db, runs = filled
    two = sorted(runs)[:2]
    rc, out = run_tty(["rm", "--purge", *two], db, b"n\n")
    assert "delete 2 runs for good? [y/N]" in out and rc == 1 and "nothing deleted" in out
    assert set(two) <= ids(db)
    r = cli(db, "rm", "--purge", *two, ok=False)  # stdin is not a terminal
    assert r.returncode == 2
    assert r.stderr.strip() == (
        "labbook: error: delete 2 runs for good: not asking without a terminal; add -y"
    )
    assert set(two) <= ids(db)
    rc, out = run_tty(["rm", "--purge", *two], db, b"y\n")
    assert rc == 0 and "deleted 2 runs for good" in out
    assert not set(two) & ids(db)


def test_labbook_run_runs_can_be_removed_and_restored(tmp_path: Path, db_path: Path) -> None:
    for i in range(3):
        cli(
            db_path, "run", "--", sys.executable, "-c", f"print('loss={1 / (i + 1)}')", cwd=tmp_path
        )
    runs = ids(db_path)
    last = cli(db_path, "ls", "-q", "-n", "1").stdout.strip()
    cli(db_path, "rm", "@last")
    assert ids(db_path) == runs - {last}
    cli(db_path, "rm", "--undo", last)
    assert ids(db_path) == runs


def _blob_count(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT count(*) FROM blobs").fetchone()[0])


def test_gc_frees_what_purged_runs_left_and_keeps_removed_ones(filled: Any) -> None:
    _root, db, runs = filled
    # orphans as an older labbook or a crash would leave them
    with sqlite3.connect(db) as conn:
        for i in range(50):
            data = os.urandom(2000)
            conn.execute(
                "INSERT INTO blobs (hash, size, data) VALUES (?, ?, ?)", (f"{i:064x}", 2000, data)
            )
        conn.execute("INSERT INTO series (run_id, tag, points) VALUES ('gone', 'loss', x'00')")
    removed = sorted(runs)[:3]
    cli(db, "rm", *removed)
    dry = json.loads(cli(db, "gc", "--dry-run", "--json").stdout)
    assert dry["blobs"] == 50 and dry["series"] == 1 and _blob_count(db) >= 50
    text = cli(db, "gc").stdout
    assert text.startswith("freed 0.1 MB: 50 blobs, 1 series")
    again = json.loads(cli(db, "gc", "--json").stdout)
    assert again["blobs"] == again["series"] == again["rows"] == 0
    # removed runs keep their blobs (log tails, envs): undo brings them back whole
    cli(db, "rm", "--undo", *removed)
    for rid in removed:
        assert cli(db, "show", rid, "--json").stdout
        with sqlite3.connect(db) as conn:
            tail = conn.execute("SELECT log_tail FROM runs WHERE id = ?", (rid,)).fetchone()[0]
            assert conn.execute("SELECT 1 FROM blobs WHERE hash = ?", (tail,)).fetchone()
    assert ids(db) == set(runs)


SAVER = r"""
import json, sys, time
from labbook.model import RunFacts, GitState
from labbook.store import Store
db, n = sys.argv[1], int(sys.argv[2])
s = Store.open(db)
saved = []
for i in range(n):
    f = RunFacts(source_key=f"/saver/run{i}", framework="generic", name=f"saver-{i}",
                 path=f"/saver/run{i}", config={"lr": i, "seed": 1}, log_tail=f"log of {i} " * 50)
    f.git = GitState(root="/saver", commit="0" * 40, diff=f"diff {i}\n" * 30)
    rid, _ = s.save_run(f)
    saved.append(rid)
    if i == 0:
        print("ready", flush=True)
print(json.dumps(saved), flush=True)
"""


def test_gc_with_a_concurrent_writer_keeps_every_run_it_saved(filled: Any, tmp_path: Path) -> None:
    _root, db, runs = filled
    cli(db, "rm", "--purge", "-y", *sorted(runs)[:10])  # orphans for gc to collect
    script = tmp_path / "saver.py"
    script.write_text(SAVER)
    saver = subprocess.Popen(
        [sys.executable, str(script), str(db), "400"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert saver.stdout is not None
    assert saver.stdout.readline().strip() == "ready"
    rounds = 0
    while saver.poll() is None or rounds == 0:
        r = cli(db, "gc", "--json", ok=False)
        assert r.returncode == 0, r.stderr
        rounds += 1
    saved = json.loads(saver.stdout.readline())
    assert saver.wait() == 0 and len(saved) == 400
    cli(db, "gc")
    for rid in saved[::37] + saved[-3:]:
        rec = json.loads(cli(db, "show", rid, "--json").stdout)
        assert rec["git"]["diff"].startswith("diff ")
    with sqlite3.connect(db) as conn:
        dangling = conn.execute(
            "SELECT count(*) FROM runs r WHERE (r.log_tail IS NOT NULL AND r.log_tail NOT IN"
            " (SELECT hash FROM blobs)) OR (r.git_diff IS NOT NULL AND r.git_diff NOT IN"
            " (SELECT hash FROM blobs)) OR (r.env IS NOT NULL AND r.env NOT IN (SELECT hash FROM blobs))"
        ).fetchone()[0]
        assert dangling == 0
        assert (
            conn.execute("SELECT count(*) FROM runs WHERE name LIKE 'saver-%'").fetchone()[0] == 400
        )
    assert rounds >= 1
    assert ids(db) >= set(saved) | (set(runs) - set(sorted(runs)[:10]))


def test_watch_does_not_record_a_removed_dir_again(tmp_path: Path, db_path: Path) -> None:
    root = tmp_path / "runs"
    keep = write_run(root, "keep", 0.1, 16)
    gone = write_run(root, "gone", 0.2, 16)
    purged = write_run(root, "purged", 0.3, 16)
    watch = ("watch", "--once", str(root))
    assert "3 runs seen" in cli(db_path, *watch).stdout
    by_name = {r["name"]: r["id"] for r in json.loads(cli(db_path, "ls", "--json").stdout)}
    cli(db_path, "rm", by_name["runs/gone"])
    cli(db_path, "rm", "--purge", "-y", by_name["runs/purged"])
    for d in (keep, gone, purged):  # the runs write more
        with open(d / "metrics.jsonl", "a") as f:
            f.write(json.dumps({"step": 5, "loss": 0.1}) + "\n")
    assert "1 run seen" in cli(db_path, *watch).stdout
    assert ids(db_path) == {by_name["runs/keep"]}
    cli(db_path, "rm", "--undo", by_name["runs/gone"])
    cli(db_path, *watch)
    assert ids(db_path) == {by_name["runs/keep"], by_name["runs/gone"]}
    rec = json.loads(cli(db_path, "show", by_name["runs/gone"], "--json").stdout)
    assert rec["metrics"]["loss"]["count"] == 6  # caught up with what it wrote meanwhile


def test_a_daemon_stops_following_a_run_removed_while_it_runs(
    tmp_path: Path, db_path: Path
) -> None:
    from tests.test_watch_daemon import record_of, start_daemon, wait_for, writer

    root = tmp_path / "runs"
    root.mkdir()
    d, out = start_daemon(db_path, root)
    try:
        w = writer("jsonl", root / "busy", 60, 20)  # 3 s of writing
        rec = wait_for(lambda: record_of(db_path, root / "busy"), what="the run to appear")
        cli(db_path, "rm", rec["id"])
        assert w.wait(timeout=90) == 0
        wait_for(lambda: "no longer followed" in out.getvalue(), what="the daemon to let go")
        other = writer("jsonl", root / "other", 5, 50)
        assert other.wait(timeout=90) == 0
        wait_for(lambda: record_of(db_path, root / "other"), what="the next run to appear")
    finally:
        d.stop()
    with sqlite3.connect(db_path) as conn:
        rows = conn.execute(
            "SELECT id, deleted_at FROM runs WHERE path = ?", (str(root / "busy"),)
        ).fetchall()
    assert len(rows) == 1 and rows[0][0] == rec["id"] and rows[0][1] is not None
    assert rec["id"] not in ids(db_path)
