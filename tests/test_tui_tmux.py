"""End to end: `labbook tui` in a real tmux session, while another process adds runs.

Keys go in with ``tmux send-keys``; what the user sees comes back with
``tmux capture-pane``. Skipped where tmux is not installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from labbook.store import Store
from tests.conftest import REPO
from tests.test_tui_data import fill

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")

DEADLINE_S = 60.0


class Tmux:
    """One private tmux server (own socket) running one session."""

    def __init__(self, socket: Path) -> None:
        self.socket = socket
        self.name = "lb" + uuid.uuid4().hex[:6]

    def cmd(self, *args: str) -> str:
        return subprocess.run(
            ["tmux", "-S", str(self.socket), *args],
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout

    def keys(self, *keys: str) -> None:
        self.cmd("send-keys", "-t", self.name, *keys)

    def screen(self) -> str:
        return self.cmd("capture-pane", "-p", "-t", self.name)

    def wait_for(self, check: Callable[[str], bool], what: str) -> str:
        deadline = time.monotonic() + DEADLINE_S
        text = ""
        while time.monotonic() < deadline:
            text = self.screen()
            if check(text):
                return text
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}; the screen was:\n{text}")


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    t = Tmux(tmp_path / "tmux.sock")
    yield t
    subprocess.run(["tmux", "-S", str(t.socket), "kill-server"], capture_output=True, timeout=30)


def test_tui_in_tmux_with_a_writer(tmux: Tmux, tmp_path: Path) -> None:
    db = tmp_path / "labbook.db"
    fill(db, n=3)
    env = {
        **os.environ,
        "TERM": "xterm-256color",
        "TZ": "UTC",
        "PYTHONPATH": str(REPO),
        "TEXTUAL_ANIMATIONS": "none",
    }
    command = f"{sys.executable} -m labbook --db {db} tui"
    args = [
        f"{k}={v}"
        for k, v in env.items()
        if k in ("TERM", "TZ", "PYTHONPATH", "HOME", "TEXTUAL_ANIMATIONS")
    ]
    tmux.cmd(
        "new-session", "-d", "-s", tmux.name, "-x", "80", "-y", "24", "env", *args, *command.split()
    )
    tmux.wait_for(lambda s: "of 3 runs" in s, "the runs table")

    # another process records a run, as `labbook watch` would: polling shows it
    code = (
        "import sys; sys.path.insert(0, sys.argv[2])\n"
        "from pathlib import Path\n"
        "from labbook.store import Store\n"
        "from tests.test_tui_data import facts\n"
        "with Store.open(sys.argv[1]) as s:\n"
        "    s.save_run(facts(4, Path('/data/exp'), name='exp/live-run', started_at=2e9))\n"
    )
    subprocess.run(
        [sys.executable, "-c", code, str(db), str(REPO)], check=True, timeout=60, env=env
    )
    screen = tmux.wait_for(lambda s: "of 4 runs" in s and "exp/live-run" in s, "the new run")
    assert screen.index("exp/live-run") < screen.index("exp/run02")  # newest first

    # filter, open the run, read its code diff
    tmux.keys("/")
    tmux.keys("-l", "status=diverged")
    tmux.wait_for(lambda s: "of 1 runs" in s and "exp/run01" in s, "the filtered table")
    tmux.keys("Enter")  # leaves the filter bar
    time.sleep(0.3)
    tmux.keys("Enter")  # opens the run
    tmux.wait_for(lambda s: "Overview" in s and "nan at step 60" in s, "the run screen")
    tmux.keys("3")
    tmux.wait_for(lambda s: "+lr = 0.1" in s, "the code tab")

    # write a failure note, then find it again by search
    tmux.keys("f")
    tmux.wait_for(lambda s: "Failure reason" in s, "the note modal")
    tmux.keys("-l", "lr 0.1 blows up")
    tmux.keys("Enter")
    tmux.wait_for(lambda s: "Failure reason" not in s, "the modal to close")
    with Store.open(db) as s:
        rid = s.conn.execute("SELECT id FROM runs WHERE name = 'exp/run01'").fetchone()[0]
        assert [(n["kind"], n["text"]) for n in s.notes_of(rid)] == [("failure", "lr 0.1 blows up")]
    tmux.keys("1")
    tmux.wait_for(lambda s: "lr 0.1 blows up" in s, "the note in the overview")
    tmux.keys("s")
    tmux.wait_for(lambda s: "search notes" in s, "the search screen")
    tmux.keys("-l", "blows up")
    tmux.keys("Enter")
    tmux.wait_for(lambda s: rid in s and "result" in s, "the search hit")
    tmux.keys("Enter")
    tmux.wait_for(lambda s: "Overview" in s and "exp/run01" in s, "the run from the hit")
    tmux.keys("C-q")
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        alive = subprocess.run(
            ["tmux", "-S", str(tmux.socket), "has-session", "-t", tmux.name], capture_output=True
        )
        if alive.returncode != 0:
            break
        time.sleep(0.2)
    else:
        raise AssertionError("labbook tui did not quit on ctrl+q")
