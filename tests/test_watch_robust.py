"""kill -9 of a real daemon, again and again, while writers append; and the tmux pane.

After the last restart every run is recorded once and every metric point once:
points and file positions commit in one transaction, so a killed daemon either
recorded a batch with its position or neither.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from labbook.store import Store

WRITER = str(Path(__file__).with_name("watch_writer.py"))


def _daemon(db: Path, root: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "labbook",
            "--db",
            str(db),
            "watch",
            "--log",
            "--interval",
            "0.5",
            str(root),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_kill_9_mid_ingest_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    root.mkdir()
    db = tmp_path / "lab.db"
    n = 500
    writers = [
        subprocess.Popen(
            [sys.executable, WRITER, mode, str(root / mode), str(n), "100"],
            stdout=subprocess.DEVNULL,
        )
        for mode in ("jsonl", "tb")
    ]
    rng = random.Random(7)
    kills = 0
    try:
        while any(w.poll() is None for w in writers) or kills < 3:
            d = _daemon(db, root)
            time.sleep(rng.uniform(0.8, 2.0))
            d.send_signal(signal.SIGKILL)
            d.wait()
            kills += 1
    finally:
        for w in writers:
            w.wait(timeout=120)
    assert [w.returncode for w in writers] == [0, 0]
    p = subprocess.run(
        [sys.executable, "-m", "labbook", "--db", str(db), "watch", "--once", str(root)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    with Store.open(db) as s:
        assert s.count() == 2
        jsonl = s.record(s.id_for_source(str(root / "jsonl")) or "")
        tb = s.record(s.id_for_source(str(root / "tb")) or "")
    assert jsonl["metrics"]["loss"]["count"] == n, kills
    assert jsonl["metrics"]["loss"]["step"] == n - 1
    assert tb["metrics"]["train/loss"]["count"] == n, kills
    assert kills >= 3


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_watch_in_a_tmux_pane_shows_the_run(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    root.mkdir()
    db = tmp_path / "lab.db"
    sock = str(tmp_path / "tmux.sock")
    env = {**os.environ, "TERM": "xterm-256color"}
    cmd = f"{sys.executable} -m labbook --db {db} watch --interval 0.5 {root}"
    subprocess.run(
        ["tmux", "-S", sock, "new-session", "-d", "-x", "160", "-y", "40", cmd], check=True, env=env
    )
    try:

        def pane() -> str:
            return subprocess.run(
                ["tmux", "-S", sock, "capture-pane", "-p"], capture_output=True, text=True, env=env
            ).stdout

        deadline = time.monotonic() + 60
        while "active runs" not in pane() and time.monotonic() < deadline:
            time.sleep(0.1)
        w = subprocess.Popen(
            [sys.executable, WRITER, "jsonl", str(root / "tmuxrun"), "300", "50"],
            stdout=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 60
            while "tmuxrun" not in pane() and time.monotonic() < deadline:
                time.sleep(0.1)
            text = pane()
        finally:
            w.kill()
            w.wait()
        assert "tmuxrun" in text and "generic" in text, text
        subprocess.run(["tmux", "-S", sock, "send-keys", "C-c"], check=True, env=env)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            alive = subprocess.run(
                ["tmux", "-S", sock, "has-session"], capture_output=True, env=env
            )
            if alive.returncode != 0:
                break
            time.sleep(0.1)
    finally:
        subprocess.run(["tmux", "-S", sock, "kill-server"], capture_output=True, env=env)
    with Store.open(db) as s:
        assert s.count() == 1
