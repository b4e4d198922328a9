"""labbook run: real child processes, a real pty, real run directories."""

from __future__ import annotations

import json
import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from labbook.sources.launch import HeadTail
from labbook.store import Store
from tests.conftest import REPO, git, run_cli


def _record(db: Path, ref: str = "@last") -> dict:
    res = run_cli("show", ref, "--json", db=db)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def _count(db: Path) -> int:
    res = run_cli("ls", "--json", "-n", "0", db=db)
    assert res.returncode == 0, res.stderr
    return len(json.loads(res.stdout))


def test_head_tail_keeps_both_ends() -> None:
    cap = HeadTail(head=10, tail=10)
    for i in range(1000):
        cap.write(f"{i:04d}\n".encode())
    assert cap.total == 5000
    assert bytes(cap.head) == b"0000\n0001\n"
    assert cap.tail_bytes() == b"0998\n0999\n"
    assert cap.omitted == 4980
    assert "4980 bytes of output not kept" in cap.text()
    small = HeadTail(head=10, tail=10)
    small.write(b"hello")
    assert small.text() == "hello" and small.omitted == 0
    big = HeadTail(head=2, tail=3)
    big.write(b"abcdefghij")
    assert bytes(big.head) == b"ab" and big.tail_bytes() == b"hij"


def test_exit_code_is_passed_on_and_recorded(tmp_path: Path, db_path: Path) -> None:
    code = "import sys; print('out line'); print('err line', file=sys.stderr); sys.exit(3)"
    res = run_cli("run", "--name", "three", "--tag", "t1", "--", sys.executable, "-c", code,
                  db=db_path, cwd=tmp_path)  # fmt: skip
    assert res.returncode == 3
    assert "out line" in res.stdout and "err line" in res.stderr
    rec = _record(db_path, "three")
    assert rec["framework"] == "command"
    assert rec["status"] == "failed"
    assert rec["failure"]["message"] == "exited with code 3"
    assert rec["command"] == [sys.executable, "-c", code]
    assert rec["pid"] and rec["ended_at"] and rec["tags"] == ["t1"]
    assert rec["env"]["source"] == "process"
    assert rec["env"]["packages"]  # the child's interpreter's packages


def test_signals_are_recorded(tmp_path: Path, db_path: Path) -> None:
    code = "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"
    res = run_cli("run", "--", sys.executable, "-c", code, db=db_path, cwd=tmp_path)
    assert res.returncode == 128 + signal.SIGTERM
    rec = _record(db_path)
    assert rec["status"] == "killed"
    assert rec["failure"] == {"kind": "signal", "message": "SIGTERM (terminated)", "step": None}


def test_a_missing_command_exits_127(tmp_path: Path, db_path: Path) -> None:
    res = run_cli("run", "--", "no-such-command-labbook", db=db_path, cwd=tmp_path)
    assert res.returncode == 127
    assert "cannot run no-such-command-labbook" in res.stderr
    assert _record(db_path)["status"] == "failed"


def test_the_launch_is_recorded_before_the_child_starts(tmp_path: Path, db_path: Path) -> None:
    code = (
        "import os, sqlite3, sys\n"
        "rid = os.environ['LABBOOK_RUN_ID']\n"
        f"row = sqlite3.connect({str(db_path)!r}).execute("
        "'SELECT status, command, env FROM runs WHERE id = ?', (rid,)).fetchone()\n"
        "print('SEEN', row[0], 'train.py' in row[1], row[2] is not None)\n"
    )
    env = {"HF_TOKEN": "hf_" + "a" * 30, "CUDA_VISIBLE_DEVICES": "1"}
    res = run_cli("run", "--", sys.executable, "-c", code, "train.py", "--seed", "7",
                  db=db_path, cwd=tmp_path, env=env)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "SEEN running True True" in res.stdout
    rec = _record(db_path)
    assert rec["status"] == "finished"
    assert rec["seed"] == {"value": 7, "source": "argv:--seed", "known": True}
    assert rec["env"]["vars"]["HF_TOKEN"] == "<redacted>"
    assert rec["env"]["vars"]["CUDA_VISIBLE_DEVICES"] == "1"
    assert "hf_aaaa" not in json.dumps(rec)


def test_a_child_printing_100_mb(tmp_path: Path, db_path: Path) -> None:
    code = (
        "import sys\n"
        "w = sys.stdout.buffer.write\n"
        "w(b'FIRST LINE\\n')\n"
        "line = b'x' * 1023 + b'\\n'\n"
        "block = line * 1024\n"
        "for _ in range(100):\n"
        "    w(block)\n"
        "w(b'LAST LINE\\n')\n"
    )
    cmd = [sys.executable, "-m", "labbook", "--db", str(db_path), "run", "--",
           sys.executable, "-c", code]  # fmt: skip
    out = tmp_path / "out.bin"
    with open(out, "wb") as f:
        proc = subprocess.run(cmd, cwd=tmp_path, stdout=f, stderr=subprocess.PIPE, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert out.stat().st_size == 100 * 1024 * 1024 + len(b"FIRST LINE\nLAST LINE\n")
    with Store.open(db_path) as store:
        rid = store.conn.execute("SELECT id FROM runs").fetchone()[0]
        tail = store.log_tail(rid) or ""
    assert tail.startswith("FIRST LINE")
    assert tail.rstrip().endswith("LAST LINE")
    assert "bytes of output not kept" in tail
    assert len(tail) < 2 * 1024 * 1024


def _read_until(fd: int, needle: bytes, deadline: float) -> bytes:
    buf = b""
    while needle not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"did not see {needle!r} in {buf[-2000:]!r}")
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        buf += chunk
    return buf


def test_pty_child_sees_a_terminal_and_ctrl_c_reaches_it(tmp_path: Path, db_path: Path) -> None:
    child = tmp_path / "child.py"
    child.write_text(
        "import sys, time\n"
        "print('TTY', sys.stdout.isatty(), sys.stdin.isatty())\n"
        "print('\\x1b[31mRED\\x1b[0m', flush=True)\n"
        "print('READY', flush=True)\n"
        "time.sleep(60)\n"
    )
    master, slave = pty.openpty()
    env = {**os.environ, "LABBOOK_DB": str(db_path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "labbook", "run", "--", sys.executable, str(child)],
        stdin=slave, stdout=slave, stderr=slave, cwd=tmp_path, env=env, start_new_session=True,
    )  # fmt: skip
    os.close(slave)
    try:
        out = _read_until(master, b"READY", time.monotonic() + 60)
        assert b"TTY True True" in out
        assert b"\x1b[31mRED\x1b[0m" in out  # colours pass through untouched
        os.write(master, b"\x03")  # Ctrl-C, typed
        out += _read_until(master, b"labbook: run", time.monotonic() + 60)
        assert proc.wait(timeout=60) == 128 + signal.SIGINT
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    rec = _record(db_path)
    assert rec["status"] == "killed"
    assert rec["failure"]["kind"] == "signal"
    assert "KeyboardInterrupt" in rec["failure"]["message"] or "SIGINT" in rec["failure"]["message"]


def test_sigterm_to_labbook_is_forwarded(tmp_path: Path, db_path: Path) -> None:
    child = tmp_path / "child.py"
    child.write_text("import time\nprint('READY', flush=True)\ntime.sleep(60)\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "labbook", "--db", str(db_path), "run", "--",
         sys.executable, str(child)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, cwd=tmp_path,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        _read_until(proc.stdout.fileno(), b"READY", time.monotonic() + 60)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for f in (proc.stdout, proc.stderr):
            if f:
                f.close()
    assert _record(db_path)["failure"]["message"] == "SIGTERM (terminated)"


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_joins_the_run_dir_the_command_writes(repo: Path, db_path: Path) -> None:
    shutil.copy(REPO / "examples" / "train.py", repo / "train.py")
    git(repo, "add", "train.py")
    git(repo, "commit", "-q", "-m", "example")
    head = git(repo, "rev-parse", "HEAD").strip()
    res = run_cli("run", "--note", "trying a big lr", "--", sys.executable, "train.py",
                  "--lr", "5", "--seed", "1", "--epochs", "15", "--out", "runs/too-high",
                  db=db_path, cwd=repo)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert _count(db_path) == 1  # the launch and its run directory are one run
    rec = _record(db_path)
    assert rec["framework"] == "generic"
    assert rec["path"] == str(repo / "runs" / "too-high")
    assert rec["command"][1:3] == ["train.py", "--lr"]
    assert rec["git"]["commit"] == head and rec["git"]["dirty"] is False
    assert rec["status"] == "diverged" and rec["failure"]["kind"] == "nan"
    assert rec["config"]["optimizer.lr"] == 5
    assert "lr" not in rec["config"]  # the argv key is the config's optimizer.lr
    assert rec["seed"]["value"] == 1
    assert [n["text"] for n in rec["notes"]] == ["trying a big lr"]
    # Importing the directory later updates the same run.
    res = run_cli("import", str(repo / "runs"), db=db_path)
    assert res.returncode == 0, res.stderr
    assert _count(db_path) == 1
    assert _record(db_path)["id"] == rec["id"]
    # A second launch writing another directory is a second run; the first stays put.
    res = run_cli("run", "--", sys.executable, "train.py", "--epochs", "2", "--out", "runs/ok",
                  db=db_path, cwd=repo)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert _count(db_path) == 2
    assert _record(db_path)["status"] == "finished"
    assert _record(db_path, rec["id"])["path"] == str(repo / "runs" / "too-high")


def test_joins_the_run_dir_while_the_command_runs(tmp_path: Path, db_path: Path) -> None:
    child = tmp_path / "child.py"
    child.write_text(
        "import os, time\n"
        "os.makedirs('runs/live', exist_ok=True)\n"
        "open('runs/live/config.yaml', 'w').write('lr: 0.1\\nseed: 4\\n')\n"
        "open('runs/live/metrics.jsonl', 'w').write('{\"step\": 1, \"loss\": 1.0}\\n')\n"
        "print('READY', flush=True)\n"
        "deadline = time.time() + 90\n"
        "while not os.path.exists('go') and time.time() < deadline:\n"
        "    time.sleep(0.05)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "labbook", "--db", str(db_path), "run", "--",
         sys.executable, str(child)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, cwd=tmp_path,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        seen = None
        while time.monotonic() < deadline:
            row = _poll_runs(db_path)
            if len(row) == 1 and row[0][1] == str(tmp_path / "runs" / "live"):
                seen = row[0]
                break
            select.select([], [], [], 0.2)  # the poll interval
        assert seen is not None, "the run dir was not joined while the command ran"
        assert seen[2] == "running" and seen[3] == "generic" and seen[4]
        (tmp_path / "go").write_text("")
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for f in (proc.stdout, proc.stderr):
            if f:
                f.close()
    rec = _record(db_path)
    assert rec["id"] == seen[0] and rec["status"] == "finished"
    assert rec["config"] == {"lr": 0.1, "seed": 4} and rec["seed"]["value"] == 4
    assert _count(db_path) == 1


def _poll_runs(db: Path) -> list[tuple]:
    """Runs in ``db`` read without migrating it (labbook may be creating it right now)."""
    import sqlite3

    if not db.exists():
        return []
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return conn.execute(
                "SELECT id, path, status, framework, pid FROM runs WHERE deleted_at IS NULL"
            ).fetchall()
        finally:
            conn.close()
    except sqlite3.Error:
        return []


NO_NOTEBOOK = """
import sys
from labbook.cli import cli
try:
    cli.main(args=sys.argv[1:], prog_name="labbook")
except SystemExit as exc:
    code = exc.code
print("psycopg" in sys.modules, "labbook.store.remote.lastpush" in sys.modules)
sys.exit(code)
"""


def test_no_lab_notebook_no_spool_no_push(tmp_path: Path, db_path: Path) -> None:
    """With no lab notebook configured, the end of ``labbook run`` costs nothing: no
    psycopg imported, no spool written, no background push started."""
    env = {k: v for k, v in os.environ.items() if k != "LABBOOK_REMOTE_URL"}
    res = subprocess.run(
        [sys.executable, "-c", NO_NOTEBOOK, "--db", str(db_path), "run", "--no-git",
         "--no-check", "--", sys.executable, "-c", "pass"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["False", "False"], res.stdout
    assert not (Path(os.environ["XDG_DATA_HOME"]) / "labbook" / "spool").exists()
    assert not db_path.with_name(db_path.name + ".push.log").exists()
