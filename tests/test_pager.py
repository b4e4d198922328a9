"""A pager as git does it (issue 12, item 2): long `diff`/`compare` output goes through
$PAGER or less, with LESS=FRX when LESS is unset, in colour only where the pager
shows colour; --no-pager, NO_COLOR and --color.

End to end in a real tmux pane with the real `less`, PAGER and LESS unset (the
Debian default): what is on screen must be colour, never ``ESC[33m`` as text.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from labbook.cli.options import pager_command, pager_shows_color
from tests.conftest import run_cli
from tests.test_ls_width import clean_env, run_tty

#: A foreground colour as tmux writes it back (capture-pane -e).
FG = re.compile(r"\x1b\[(?:[0-9;]*;)?3[1-7](?:;[0-9;]*)?m")


@pytest.fixture
def two_runs(tmp_path: Path, db_path: Path) -> tuple[Path, str, str]:
    """Two recorded runs whose configs differ in 80 keys: a diff of ~90 lines."""
    runs = tmp_path / "runs"
    for name, scale in (("base", 1.0), ("wider", 2.0)):
        run = runs / name
        run.mkdir(parents=True)
        config = {f"model.layer{i:02d}.width": int(64 * scale) + i for i in range(80)}
        (run / "config.json").write_text(json.dumps({"seed": 1, **config}))
        (run / "metrics.jsonl").write_text(json.dumps({"step": 1, "val_loss": scale}) + "\n")
    done = run_cli("import", str(runs), db=db_path)
    assert done.returncode == 0, done.stderr
    ids = {
        r["name"].rsplit("/", 1)[-1]: r["id"]
        for r in json.loads(run_cli("ls", "--json", db=db_path).stdout)
    }
    return db_path, ids["base"], ids["wider"]


class Pane:
    """One private tmux server running one command in an 80x24 pane."""

    def __init__(self, tmp_path: Path) -> None:
        assert shutil.which("tmux"), "tmux is needed (.ci/run installs it)"
        self.tmux = ["tmux", "-S", str(tmp_path / "tmux.sock")]
        self.session = "lbpager"
        self.script = tmp_path / "cmd.sh"

    def start(self, command: str, *, unset: tuple[str, ...] = (), **env: str) -> None:
        full = clean_env(**env)
        self.script.write_text(f"{command}\necho __DONE__\nsleep 120\n")
        keep = ("TERM", "TZ", "PYTHONPATH", "HOME", *env)
        args = [f"{k}={full[k]}" for k in keep]
        drop = [a for k in ("PAGER", "LESS", "NO_COLOR", "COLUMNS", *unset) for a in ("-u", k)]
        start = ["new-session", "-d", "-s", self.session, "-x", "80", "-y", "24"]
        subprocess.run(
            [*self.tmux, *start, "env", *drop, *args, "sh", str(self.script)],
            check=True,
            timeout=30,
            env=full,
        )

    def screen(self, *, escapes: bool = False) -> str:
        flags = ["-p", "-e"] if escapes else ["-p"]
        return subprocess.run(
            [*self.tmux, "capture-pane", *flags, "-t", self.session],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout

    def keys(self, *keys: str) -> None:
        subprocess.run([*self.tmux, "send-keys", "-t", self.session, *keys], timeout=30)

    def wait_for(self, check: Callable[[str], bool], what: str) -> str:
        deadline = time.monotonic() + 60
        text = ""
        while time.monotonic() < deadline:
            text = self.screen()
            if check(text):
                return text
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}; the screen was:\n{text}")

    def close(self) -> None:
        subprocess.run([*self.tmux, "kill-server"], capture_output=True, timeout=30)


@pytest.fixture
def pane(tmp_path: Path) -> Iterator[Pane]:
    p = Pane(tmp_path)
    yield p
    p.close()


def _no_raw_escapes(screen: str) -> None:
    assert "ESC[" not in screen, screen
    assert "\\x1b[" not in screen and "\x1b" not in screen, screen
    assert not re.search(r"\[\d+(;\d+)*m", screen), screen  # no SGR text either


def test_long_diff_in_the_real_less_with_pager_and_less_unset(
    pane: Pane, two_runs: tuple[Path, str, str]
) -> None:
    assert shutil.which("less"), "less is needed (.ci/run installs it)"
    db, a, b = two_runs
    pane.start(f"{sys.executable} -m labbook --db {db} diff {a} {b}")
    screen = pane.wait_for(lambda s: "model.layer00.width" in s, "the diff in less")
    assert "__DONE__" not in screen  # taller than the pane: less waits
    _no_raw_escapes(screen)
    assert FG.search(pane.screen(escapes=True)), "the colour should survive the pager"
    assert screen.rstrip().endswith(":")  # less's prompt, on the last line
    pane.keys("G")  # to the end: the last changed key
    pane.wait_for(lambda s: "model.layer79.width" in s, "the end of the diff")
    _no_raw_escapes(pane.screen())
    pane.keys("q")
    pane.wait_for(lambda s: "__DONE__" in s, "less to quit")
    # LESS=FRX: -X leaves what was shown on the screen after quitting
    assert "model.layer79.width" in pane.screen()


def test_a_less_that_does_not_show_colour_gets_none(
    pane: Pane, two_runs: tuple[Path, str, str]
) -> None:
    """LESS set without -R: colour codes would show as ESC[…; they are not sent."""
    db, a, b = two_runs
    pane.start(f"{sys.executable} -m labbook --db {db} diff {a} {b}", LESS="-i")
    screen = pane.wait_for(lambda s: "model.layer00.width" in s, "the diff in less")
    _no_raw_escapes(screen)
    assert not FG.search(pane.screen(escapes=True))
    pane.keys("q")
    pane.wait_for(lambda s: "__DONE__" in s, "less to quit")


def test_no_pager_and_a_short_diff_print_directly(
    pane: Pane, two_runs: tuple[Path, str, str]
) -> None:
    db, a, b = two_runs
    pane.start(f"{sys.executable} -m labbook --db {db} diff --no-pager {a} {b}")
    screen = pane.wait_for(lambda s: "__DONE__" in s, "the diff without a pager")
    assert "model.layer79.width" in screen
    assert ":" not in screen.splitlines()[-1]
    _no_raw_escapes(screen)


def test_compare_pages_too_and_has_no_pager(pane: Pane, two_runs: tuple[Path, str, str]) -> None:
    db, a, b = two_runs
    pane.start(f"{sys.executable} -m labbook --db {db} compare {a} {b}", unset=("LV",))
    screen = pane.wait_for(lambda s: "model.layer00.width" in s, "compare in less")
    assert "__DONE__" not in screen
    _no_raw_escapes(screen)
    pane.keys("q")
    pane.wait_for(lambda s: "__DONE__" in s, "less to quit")


def test_colour_modes_of_diff(two_runs: tuple[Path, str, str]) -> None:
    db, a, b = two_runs
    # on a terminal: colour (no pager with --no-pager), none with NO_COLOR or never
    assert "\x1b[" in run_tty(["diff", "--no-pager", a, b], db, 100)
    assert "\x1b[" not in run_tty(["diff", "--no-pager", a, b], db, 100, NO_COLOR="1")
    assert "\x1b[" not in run_tty(["diff", "--no-pager", "--color", "never", a, b], db, 100)
    # NO_COLOR with an empty value does not count (no-color.org)
    assert "\x1b[" in run_tty(["diff", "--no-pager", a, b], db, 100, NO_COLOR="")
    # piped: plain, unless --color always
    assert "\x1b[" not in run_cli("diff", a, b, db=db, env=clean_env()).stdout
    assert "\x1b[" in run_cli("diff", "--color", "always", a, b, db=db, env=clean_env()).stdout
    assert "\x1b[" in run_cli("compare", "--color", "always", a, b, db=db).stdout
    # a pager that is `cat` is no pager: the text, in colour, straight to the terminal
    out = run_tty(["diff", a, b], db, 100, rows=10, PAGER="cat")
    assert "model.layer79.width" in out and "\x1b[" in out


def test_pager_command_as_git_finds_it(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PAGER", "LESS", "LV", "LABBOOK_PAGER"):
        monkeypatch.delenv(name, raising=False)
    found = pager_command()
    assert found is not None
    cmd, env = found
    assert cmd == "less" and env["LESS"] == "FRX" and env["LV"] == "-c"
    assert pager_shows_color(cmd, env)
    monkeypatch.setenv("LESS", "-i")
    cmd, env = pager_command() or ("", {})
    assert env["LESS"] == "-i" and not pager_shows_color(cmd, env)
    assert pager_shows_color("less -R", env)
    assert pager_shows_color("less", {"LESS": "--RAW-CONTROL-CHARS"})
    assert not pager_shows_color("less", {"LESS": "--quiet"})
    assert not pager_shows_color("more", env)
    monkeypatch.setenv("PAGER", "more")
    assert (pager_command() or ("",))[0] == "more"
    monkeypatch.setenv("LABBOOK_PAGER", "less -S")
    assert (pager_command() or ("",))[0] == "less -S"
    for none in ("", "cat", "no-such-pager-here"):
        monkeypatch.setenv("LABBOOK_PAGER", none)
        assert pager_command() is None
