"""Every error is one line (issue 9, item 7): bad ``--db`` paths, file modes, the watch lock.

Each case runs the real CLI in a child process and expects a non-zero exit, no
traceback, and on stderr exactly one ``labbook: error: …`` line (and at most a
``hint: …`` after it). File modes only bind a process without CAP_DAC_OVERRIDE: as
root, the child runs with those capabilities dropped from its bounding set
(``setpriv``), as a user's shell would.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import run_cli


def without_dac() -> list[str]:
    """A command prefix under which file modes bind (nothing for a non-root user)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is needed to drop root's file-mode override"
    return [setpriv, "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search"]


def labbook(*args: str, env: dict[str, str] | None = None, prefix: list[str] | None = None):
    return subprocess.run(
        [*(prefix or []), sys.executable, "-m", "labbook", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def assert_one_line_error(r: subprocess.CompletedProcess[str], *fragments: str) -> str:
    assert r.returncode != 0, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.splitlines()
    assert lines and lines[0].startswith("labbook: error: "), r.stderr
    assert len(lines) == 1 or (len(lines) == 2 and lines[1].startswith("hint: ")), r.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


@pytest.fixture
def imported(tmp_path: Path) -> Path:
    """A database with one run in it."""
    run = tmp_path / "runs" / "r1"
    run.mkdir(parents=True)
    (run / "config.json").write_text('{"lr": 0.1}')
    (run / "metrics.csv").write_text("step,loss\n1,2.0\n2,1.0\n")
    db = tmp_path / "db" / "labbook.db"
    r = run_cli("import", str(run.parent), db=db)
    assert r.returncode == 0, r.stderr
    return db


@pytest.fixture
def restore_modes() -> Iterator[list[Path]]:
    """Paths whose modes a test took away, given back afterwards (so tmp can be removed)."""
    paths: list[Path] = []
    yield paths
    for p in paths:
        os.chmod(p, 0o700 if p.is_dir() else 0o600)


def test_db_that_is_no_database(tmp_path: Path) -> None:
    garbage = tmp_path / "notes.txt"
    garbage.write_text("this is not SQLite\n" * 100)
    for args in (["ls"], ["show", "x"], ["import", str(tmp_path)], ["search", "x"]):
        assert_one_line_error(labbook("--db", str(garbage), *args), str(garbage))
    assert_one_line_error(labbook("--db", "/dev/null", "ls"), "/dev/null")
    assert_one_line_error(labbook("--db", str(tmp_path), "ls"), "is a directory")
    assert_one_line_error(labbook("--db", str(tmp_path) + "/", "import", str(tmp_path)))
    assert_one_line_error(labbook("ls", env={"LABBOOK_DB": str(tmp_path)}), "is a directory")
    # an empty LABBOOK_DB means the default database (none here): one line and a hint
    assert_one_line_error(labbook("ls", env={"LABBOOK_DB": ""}), "no labbook database")


def test_db_without_permission(imported: Path, restore_modes: list[Path]) -> None:
    prefix = without_dac()
    # a file without read permission
    imported.chmod(0)
    restore_modes.append(imported)
    for args in (["ls"], ["show", "@last"], ["import", str(imported.parent.parent / "runs")]):
        assert_one_line_error(labbook("--db", str(imported), *args, prefix=prefix), str(imported))
    imported.chmod(0o600)
    # a directory without search permission on the way to it
    imported.parent.chmod(0)
    restore_modes.append(imported.parent)
    runs = str(imported.parent.parent / "runs")
    for args in (["ls"], ["note", "@last", "x"], ["watch", "--once", runs]):
        line = assert_one_line_error(labbook("--db", str(imported), *args, prefix=prefix))
        assert "Permission denied" in line and str(imported) in line
    new = imported.parent / "new.db"
    assert_one_line_error(labbook("--db", str(new), "import", "/nonexistent", prefix=prefix))
    imported.parent.chmod(0o700)


def test_read_only_db_refuses_writes_in_one_line(imported: Path, restore_modes: list[Path]) -> None:
    prefix = without_dac()
    imported.chmod(0o400)
    restore_modes.append(imported)
    r = labbook("--db", str(imported), "ls", prefix=prefix)
    assert r.returncode == 0 and "r1" in r.stdout, r.stderr  # reading still works
    for args in (["note", "@last", "a note"], ["tag", "@last", "good"]):
        assert_one_line_error(
            labbook("--db", str(imported), *args, prefix=prefix), str(imported), "readonly"
        )


def test_watch_lock_errors_are_one_line(imported: Path, tmp_path: Path) -> None:
    # the lock file cannot be created (here: a directory is in its place)
    lock = imported.with_name(imported.name + ".watch.lock")
    lock.mkdir()
    r = labbook("--db", str(imported), "watch", "--once", str(tmp_path / "runs"))
    assert_one_line_error(r, "watch lock", str(lock))
    lock.rmdir()
    # another daemon holds it
    log = tmp_path / "watch.log"
    with open(log, "w") as out:
        first = subprocess.Popen(
            [sys.executable, "-m", "labbook", "--db", str(imported), "watch", "--log"],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tmp_path / "runs",
        )
    try:
        deadline = time.monotonic() + 60
        while "watching" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "watching" in log.read_text(), log.read_text()
        r = labbook("--db", str(imported), "watch", "--once", str(tmp_path / "runs"))
        assert_one_line_error(r, "already recording", f"pid {first.pid}")
    finally:
        first.send_signal(signal.SIGINT)
        first.wait(timeout=60)
    assert "Traceback" not in log.read_text()


def test_usage_errors_are_one_line_and_say_where_to_look(tmp_path: Path) -> None:
    """Click's own errors (unknown command or option, bad or missing value) are one
    `labbook: error:` line and a hint naming the command's --help, exit 2."""
    db = tmp_path / "lab.db"
    cases = [
        (["ls", "--bogus"], "No such option '--bogus'", "labbook ls --help"),
        (["frobnicate"], "No such command 'frobnicate'", "labbook --help"),
        (["ls", "--color", "purple"], "Invalid value for '--color'", "labbook ls --help"),
        (["show"], "Missing argument 'RUN'", "labbook show --help"),
    ]
    for args, message, where in cases:
        r = run_cli(*args, db=db)
        assert r.returncode == 2, (args, r.stderr)
        lines = r.stderr.splitlines()
        assert lines[0].startswith("labbook: error: ") and message in lines[0], (args, r.stderr)
        assert lines[1:] == [f"hint: see '{where}'"], (args, r.stderr)
        assert "Usage:" not in r.stderr and "Traceback" not in r.stderr
