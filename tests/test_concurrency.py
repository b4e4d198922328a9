"""Jobs that start together all run and are recorded (issue #9).

A Slurm array or a sweep launcher starts dozens of jobs within a second, each
under ``labbook run``, while ``labbook watch`` records what other jobs write and
imports run beside them. Every command must run with its own exit code, every
run must be recorded exactly once, and no writer may see "database is locked".
Real processes throughout (see tests/stress.py); bounded to a few tens of seconds.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from labbook.model import RunFacts
from labbook.store import Store
from labbook.store.journal import Journal, facts_to_json, journal_dir, pending_files
from tests import stress
from tests.conftest import run_cli

N_RUNS = 50
N_WRITERS = 50
N_TREE = 300


def _wait(cond, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_fifty_runs_and_fifty_writers_under_a_daemon(tmp_path: Path) -> None:
    db = tmp_path / "lab.db"
    root = tmp_path / "experiments"
    root.mkdir()
    run_cli("import", str(root), db=db)  # create the database (nothing to import yet)
    daemon = subprocess.Popen(
        [*stress.LABBOOK, "watch", "--log", str(root)],
        env=stress.env_for(db),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert daemon.stdout is not None
        first = daemon.stdout.readline()
        assert "watching" in first, first
        writers = stress.start_writers(root, N_WRITERS)
        outcome = stress.simultaneous_runs(db, N_RUNS, tmp_path / "work", tag="array")
        for w in writers:
            _, err = w.communicate(timeout=120)
            assert w.returncode == 0, err

        # every command ran, with its own exit code, and said nothing of locks
        # all started back to back (under a second on an idle machine; this 2-core one
        # may be busy with other tests): they overlap, each start-up taking longer
        assert outcome.started_in_s < 5.0, outcome.started_in_s
        assert outcome.did_not_run == []
        assert outcome.wrong_exit == []
        assert outcome.tracebacks == []
        assert outcome.lock_errors == []
        # every launch recorded exactly once, at once or from its journal
        run_cli("ls", db=db)  # a later command writes what a journal kept
        counts = stress.command_runs(db, "array")
        assert len(counts) == N_RUNS and set(counts.values()) == {1}, counts
        statuses = stress.recorded(
            db,
            "SELECT r.status, count(*) FROM runs r JOIN tags t ON t.run_id = r.id"
            " WHERE t.tag = 'array' GROUP BY r.status",
        )
        assert dict(statuses) == {"finished": N_RUNS // 4 + 1, "failed": N_RUNS - N_RUNS // 4 - 1}
        assert pending_files(db) == []

        # every writer's run dir recorded once by the daemon
        def writer_runs() -> list[tuple[object, ...]]:
            return stress.recorded(
                db,
                "SELECT path, count(*) FROM runs WHERE path LIKE ? AND deleted_at IS NULL"
                " GROUP BY path",
                (f"{root}/w%",),
            )

        rows = _wait(lambda: len(writer_runs()) == N_WRITERS and writer_runs(), 120, "writers")
        assert {c for _, c in rows} == {1}
        counts_ok = stress.recorded(
            db,
            "SELECT count(*) FROM metrics m JOIN runs r ON r.id = m.run_id"
            " WHERE r.path LIKE ? AND m.tag = 'loss' AND m.count = 20",
            (f"{root}/w%",),
        )
        _wait(
            lambda: (
                stress.recorded(
                    db,
                    "SELECT count(*) FROM metrics m JOIN runs r ON r.id = m.run_id"
                    " WHERE r.path LIKE ? AND m.tag = 'loss' AND m.count = 20",
                    (f"{root}/w%",),
                )[0][0]
                == N_WRITERS
            ),
            60,
            f"all writers' metrics (had {counts_ok})",
        )
    finally:
        daemon.send_signal(signal.SIGINT)
        log, _ = daemon.communicate(timeout=60)
    assert not any(w in log for w in stress.LOCK_WORDS), log
    assert "Traceback" not in log, log


def test_three_imports_of_one_tree_record_each_run_once(tmp_path: Path) -> None:
    db = tmp_path / "lab.db"
    tree = tmp_path / "tree"
    stress.make_tree(tree, N_TREE)
    codes, errs, _ = stress.concurrent_imports(db, tree, 3)
    assert codes == [0, 0, 0], errs
    assert not any(w in e for e in errs for w in stress.LOCK_WORDS), errs
    assert not any("Traceback" in e for e in errs), errs
    rows = stress.recorded(db, "SELECT count(*), count(DISTINCT source_key) FROM runs")
    assert rows == [(N_TREE, N_TREE)]
    assert stress.recorded(db, "SELECT count(*) FROM metrics WHERE count = 10") == [(N_TREE,)]


def test_reimport_of_an_unchanged_tree_reads_nothing_again(tmp_path: Path) -> None:
    db = tmp_path / "lab.db"
    tree = tmp_path / "tree"
    stress.make_tree(tree, 40)
    r = run_cli("import", "--json", str(tree), db=db)
    assert r.returncode == 0, r.stderr
    (tree / "r00003" / "metrics.jsonl").write_text('{"step": 0, "loss": 5.0}\n')
    (tree / "r00007" / "notes.txt").write_text("a new file is a change too\n")
    import json

    again = json.loads(run_cli("import", "--json", str(tree), db=db).stdout)
    assert len(again["unchanged"]) == 38 and len(again["updated"]) == 2
    with Store.open(db) as s:
        rid = s.id_for_source(str(tree / "r00003"))
        assert rid is not None
        assert s.record(rid)["metrics"]["loss"]["last"] == 5.0


def test_run_starts_the_command_when_the_store_is_locked(tmp_path: Path) -> None:
    """Another process holds the write lock for longer than the launch waits: the command
    still starts at once, and its run is recorded from the journal afterwards."""
    db = tmp_path / "lab.db"
    run_cli("import", str(tmp_path / "nothing"), db=db)  # creates the db
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("CREATE TABLE IF NOT EXISTS _hold (x)")
    mark = tmp_path / "ran"
    t0 = time.monotonic()
    child = [sys.executable, "-c", stress.CHILD, str(mark), "3"]
    r = subprocess.run(
        [*stress.LABBOOK, "run", "--no-check", "--no-git", "-t", "held", "--", *child],
        env=stress.env_for(db),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    took = time.monotonic() - t0
    assert r.returncode == 3, r.stderr
    assert mark.exists()
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("labbook:")]
    assert any("busy" in ln and "journal" in ln for ln in lines), r.stderr
    assert took < 1.0 + 0.25 + 5.0 + 5.0, took  # before + during + after budgets, + start-up
    assert len(pending_files(db)) == 1
    holder.execute("ROLLBACK")
    holder.close()
    r = run_cli("ls", "--json", "-t", "held", db=db)
    assert r.returncode == 0, r.stderr
    import json

    runs = json.loads(r.stdout)
    assert len(runs) == 1 and runs[0]["status"] == "failed"
    assert pending_files(db) == []


def test_run_starts_the_command_when_the_store_cannot_be_opened(tmp_path: Path) -> None:
    db = tmp_path / "newer.db"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA user_version = 9999")  # written by a newer labbook
    conn.close()
    mark = tmp_path / "ran"
    child = [sys.executable, "-c", stress.CHILD, str(mark), "0"]
    r = subprocess.run(
        [*stress.LABBOOK, "run", "--no-check", "--no-git", "--", *child],
        env=stress.env_for(db),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0 and mark.exists(), r.stderr
    assert "Traceback" not in r.stderr
    assert "newer labbook" in r.stderr
    assert len(pending_files(db)) == 1  # kept until a labbook that can write it


def test_a_journal_left_by_a_killed_launch_is_written_by_the_daemon(tmp_path: Path) -> None:
    db = tmp_path / "lab.db"
    root = tmp_path / "root"
    root.mkdir()
    run_cli("import", str(root), db=db)
    facts = RunFacts(
        path=str(tmp_path),
        framework="command",
        source_key="command:left-behind",
        status="running",
        command=["python", "train.py"],
    )
    j = Journal(db)
    j.append({"op": "save_run", "run_id": "0badcafe", "facts": facts_to_json(facts)})
    j.append(
        {
            "op": "note",
            "run_id": "0badcafe",
            "text": "from the journal",
            "at": "2026-12-01T00:00:00Z",
        }
    )
    j._fd is not None and os.close(j._fd)  # the launch died: its lock is gone
    assert journal_dir(db).stat().st_mode & 0o777 == 0o700
    r = run_cli("watch", "--once", str(root), db=db)
    assert r.returncode == 0, r.stderr
    with Store.open(db) as s:
        rec = s.record("0badcafe")
        assert [n["text"] for n in rec["notes"]] == ["from the journal"]
    assert pending_files(db) == []


@pytest.mark.parametrize("n", [5])
def test_run_through_the_cli_records_each_of_a_few_at_once(tmp_path: Path, n: int) -> None:
    outcome = stress.simultaneous_runs(tmp_path / "lab.db", n, tmp_path / "w", tag="few")
    assert outcome.wrong_exit == [] and outcome.did_not_run == [] and outcome.lock_errors == []
    counts = stress.command_runs(tmp_path / "lab.db", "few")
    assert len(counts) == n and set(counts.values()) == {1}
