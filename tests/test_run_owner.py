"""A run's ``user`` is whoever wrote it, not whoever recorded it (issue 9, item 7).

``labbook import`` of a shared directory and ``labbook watch`` over it record runs
that other users wrote: the run dir's owner (the writer created it) is the run's
user. As root the tests make real other-user run dirs (``os.chown``) and run a real
writer process as another uid (``setpriv``); a uid without a passwd entry is shown
as the number.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from labbook.capture.owner import owner_of, user_name
from tests.conftest import run_cli

NOBODY = 65534
NO_SUCH_UID = 54321


def me() -> str:
    return pwd.getpwuid(os.getuid()).pw_name


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory every user can reach and write (pytest's tmp dirs are 0700)."""
    base = Path(tempfile.mkdtemp(prefix="labbook-owner-"))
    base.chmod(0o777)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def write_run(run: Path) -> None:
    run.mkdir(parents=True)
    (run / "config.json").write_text('{"lr": 0.1}')
    (run / "metrics.csv").write_text("step,loss\n1,2.0\n2,1.0\n")


def users_by_name(db: Path) -> dict[str, str]:
    r = run_cli("ls", "--json", db=db)
    assert r.returncode == 0, r.stderr
    return {os.path.basename(rec["path"]): rec["user"] for rec in json.loads(r.stdout)}


def test_owner_names() -> None:
    assert user_name(os.getuid()) == me()
    assert user_name(NO_SUCH_UID) == str(NO_SUCH_UID)  # no passwd entry: the number
    assert owner_of("/nonexistent/labbook/path") is None
    assert owner_of(None) is None
    assert owner_of(f"{os.getcwd()}#run-3") == me()  # a run kept inside a directory


def test_import_records_the_run_dirs_owner(shared_dir: Path, tmp_path: Path) -> None:
    runs = shared_dir / "runs"
    write_run(runs / "mine")
    write_run(runs / "theirs")
    write_run(runs / "nameless")
    expected = {"mine": me(), "theirs": me(), "nameless": me()}
    if os.geteuid() == 0:  # only root can give a directory away
        for name, uid in (("theirs", NOBODY), ("nameless", NO_SUCH_UID)):
            for p in (runs / name, *(runs / name).iterdir()):
                os.chown(p, uid, uid)
            expected[name] = user_name(uid)
        assert expected["theirs"] == pwd.getpwuid(NOBODY).pw_name
        assert expected["nameless"] == str(NO_SUCH_UID)
    db = tmp_path / "labbook.db"
    r = run_cli("import", str(runs), db=db)
    assert r.returncode == 0, r.stderr
    assert users_by_name(db) == expected


def test_watch_records_the_writer_not_the_daemon(shared_dir: Path, tmp_path: Path) -> None:
    """A process of another user writes a run under a watched root: it is theirs."""
    assert os.geteuid() == 0, "the test runs the writer as another user (needs root, as CI is)"
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) runs the writer as another uid"
    root = shared_dir / "root"
    root.mkdir()
    root.chmod(0o777)
    db = tmp_path / "labbook.db"
    log = tmp_path / "watch.log"
    with open(log, "w") as out:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "labbook", "--db", str(db), "watch", "--log", str(root)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    run = root / "nobodys-run"
    script = (
        f"mkdir {run} && echo '{{\"lr\": 0.3}}' > {run}/config.json"
        f" && printf 'step,loss\\n' > {run}/metrics.csv"
        f' && for i in 1 2 3 4 5 6; do echo "$i,0.$i" >> {run}/metrics.csv; sleep 0.3; done'
    )
    try:
        deadline = time.monotonic() + 60
        while "watching" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        as_nobody = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
        writer = subprocess.run(
            [*as_nobody, "/bin/sh", "-c", script],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert writer.returncode == 0, writer.stderr
        assert os.stat(run).st_uid == NOBODY
        deadline = time.monotonic() + 60
        while " started " not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        daemon.send_signal(signal.SIGINT)
        daemon.wait(timeout=60)
    assert "Traceback" not in log.read_text(), log.read_text()
    assert users_by_name(db) == {"nobodys-run": pwd.getpwuid(NOBODY).pw_name}
