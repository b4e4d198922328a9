"""Shell hooks: installed by `labbook hooks install`, run in a real bash (and zsh)."""

from __future__ import annotations

import os
import pty
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from labbook.model import Failure, GitState, RunFacts
from labbook.store import Store
from tests.conftest import REPO, run_cli

BLOCK_BEGIN = "# >>> labbook hooks >>>"

TRAINING = [
    "python train.py --lr 5",
    "python3 -u scripts/train_gpt.py",
    "CUDA_VISIBLE_DEVICES=0 python pretrain.py",
    "python -m pkg.train --seed 1",
    "torchrun --nproc_per_node 8 main.py",
    "accelerate launch run.py",
    "deepspeed ds.py",
    "sbatch job.sh",
    "cd x && python train.py",
]
NOT_TRAINING = [
    "python eval.py",
    "ls -la",
    "echo python train.py",  # a word in an argument still matches: see below
    "vim train.py",
    "pip install torch",
    "git commit -m train",
]


def _home() -> Path:
    return Path(os.environ["HOME"])


def test_install_is_idempotent_and_uninstall_removes_only_the_block() -> None:
    rc = _home() / ".bashrc"
    rc.write_text("export KEEP=1\n# my own stuff\n")
    for _ in range(2):
        res = run_cli("hooks", "install", "--shell", "bash")
        assert res.returncode == 0, res.stderr
    text = rc.read_text()
    assert text.startswith("export KEEP=1\n# my own stuff\n")
    assert text.count(BLOCK_BEGIN) == 1
    script = _home() / ".local" / "share" / "labbook" / "hooks" / "labbook.bash"
    assert script.is_file() and str(script) in text
    res = run_cli("hooks", "install", "--shell", "bash")
    assert "already has the labbook block" in res.stdout
    res = run_cli("hooks", "uninstall", "--shell", "bash")
    assert res.returncode == 0, res.stderr
    assert rc.read_text() == "export KEEP=1\n# my own stuff\n"
    assert not script.exists()
    res = run_cli("hooks", "uninstall", "--shell", "bash")
    assert "nothing to remove" in res.stdout


def test_zsh_rc_and_systemd_unit() -> None:
    res = run_cli("hooks", "install", "--shell", "zsh", "--systemd")
    assert res.returncode == 0, res.stderr
    assert BLOCK_BEGIN in (_home() / ".zshrc").read_text()
    unit = _home() / ".config" / "systemd" / "user" / "labbook-watch.service"
    text = unit.read_text()
    assert f"ExecStart={sys.executable} -m labbook watch" in text
    assert "Restart=on-failure" in text
    res = run_cli("hooks", "uninstall", "--shell", "zsh", "--systemd")
    assert not unit.exists() and BLOCK_BEGIN not in (_home() / ".zshrc").read_text()


def test_default_pattern_in_real_bash() -> None:
    script = REPO / "hooks" / "labbook.bash"
    lines = "\n".join(TRAINING + NOT_TRAINING)
    prog = (
        f". {script}\n"
        "while IFS= read -r line; do\n"
        '  if [[ $line =~ $LABBOOK_HOOK_PATTERN ]]; then echo "yes:$line"; else echo "no:$line"; fi\n'
        "done\n"
    )
    out = subprocess.run(
        ["bash", "-c", prog], input=lines + "\n", capture_output=True, text=True, timeout=60
    ).stdout.splitlines()
    said = dict(line.split(":", 1)[::-1] for line in out)
    for cmd in TRAINING:
        assert said[cmd] == "yes", cmd
    for cmd in NOT_TRAINING:
        expected = "yes" if cmd.startswith("echo") else "no"
        assert said[cmd] == expected, cmd


@pytest.fixture
def bad_history(repo: Path, db_path: Path) -> str:
    """A diverged run of `python train.py --lr 5 --seed 1` in ``repo``, with a lesson."""
    (repo / "train.py").write_text("print('TRAIN-OUTPUT')\n")
    with Store.open(db_path) as store:
        rid, _ = store.save_run(
            RunFacts(
                path=str(repo / "runs" / "bad"),
                framework="command",
                source_key="command:test",
                status="diverged",
                failure=Failure("nan", "loss became nan at step 40", 40),
                command=["python", "train.py", "--lr", "5", "--seed", "1"],
                config={"lr": 5, "seed": 1},
                git=GitState(root=str(repo), commit="0" * 40),
            )
        )
        store.add_note(rid, "lr 5 diverges, use 0.5", kind="lesson")
    return rid


class Shell:
    """An interactive shell on a real pty."""

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(
            argv, stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=env,
            start_new_session=True,
        )  # fmt: skip
        os.close(slave)
        self.buf = b""

    def read_until(self, needle: bytes, timeout: float = 60) -> bytes:
        deadline = time.monotonic() + timeout
        start = len(self.buf)
        while needle not in self.buf[start:]:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {needle!r} in {self.buf[-3000:]!r}")
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                self.buf += chunk
        return self.buf[start:]

    def send(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\n")

    def close(self) -> None:
        try:
            self.send("exit")
            self.proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        finally:
            os.close(self.master)


def _shell_env(db_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LABBOOK_HOOK", "PS1"))}
    env.update(
        {
            "LABBOOK_DB": str(db_path),
            "TERM": "dumb",
            "HISTFILE": str(_home() / ".history"),
            "LABBOOK_HOOK_TIMEOUT": "30",  # generous on a loaded CI machine; see the budget test
            **extra,
        }
    )
    return env


def _install(shell: str) -> None:
    rc = _home() / (".bashrc" if shell == "bash" else ".zshrc")
    rc.write_text("PS1='PROMPT> '\nPROMPT='PROMPT> '\n")
    res = run_cli("hooks", "install", "--shell", shell)
    assert res.returncode == 0, res.stderr


SHELLS = [
    pytest.param(["bash", "--noprofile", "-i"], id="bash"),
    pytest.param(
        ["zsh", "-i"],
        id="zsh",
        marks=pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed"),
    ),
]


@pytest.mark.parametrize("argv", SHELLS)
def test_hook_warns_before_the_command_output(
    argv: list[str], bad_history: str, repo: Path, db_path: Path
) -> None:
    _install(argv[0])
    env = _shell_env(db_path, ZDOTDIR=str(_home()), HISTCONTROL="ignoreboth")
    sh = Shell(argv, repo, env)
    try:
        sh.read_until(b"PROMPT> ")
        sh.send("python train.py --lr 5 --seed 1")
        out = sh.read_until(b"TRAIN-OUTPUT")
        text = out.decode("utf-8", "replace")
        assert bad_history in text and "lr 5 diverges, use 0.5" in text
        assert text.index(bad_history) < text.index("TRAIN-OUTPUT")
        sh.read_until(b"PROMPT> ")
        sh.send("python train.py --lr 5 --seed 1")  # again: HISTCONTROL=ignoreboth drops it
        assert bad_history.encode() in sh.read_until(b"TRAIN-OUTPUT")
        sh.read_until(b"PROMPT> ")
        sh.send(" echo hidden-from-history")
        assert bad_history.encode() not in sh.read_until(b"PROMPT> ")
        sh.send("echo plain; python train.py --lr 0.5 --seed 2")
        out = sh.read_until(b"TRAIN-OUTPUT")
        assert bad_history.encode() not in out  # both values differ: not close
        sh.read_until(b"PROMPT> ")
        sh.send("echo plain; python train.py --lr 5 --seed 2")
        out = sh.read_until(b"TRAIN-OUTPUT")
        assert b"close to run " + bad_history.encode() in out  # the whole line is checked
    finally:
        sh.close()


@pytest.mark.parametrize("argv", SHELLS)
def test_hook_never_blocks_longer_than_its_budget(
    argv: list[str], bad_history: str, repo: Path, db_path: Path, tmp_path: Path
) -> None:
    _install(argv[0])
    seen = tmp_path / "seen.txt"
    slow = tmp_path / "slow-labbook"
    slow.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {seen}\nsleep 30\necho SLOW-WARNING\n')
    slow.chmod(0o755)
    env = _shell_env(db_path, ZDOTDIR=str(_home()), LABBOOK_HOOK_CMD=str(slow))
    env["LABBOOK_HOOK_TIMEOUT"] = "0.3"
    sh = Shell(argv, repo, env)
    try:
        sh.read_until(b"PROMPT> ")
        sh.send("echo not-training")
        sh.read_until(b"PROMPT> ")
        t0 = time.monotonic()
        sh.send("python train.py --lr 5")
        out = sh.read_until(b"TRAIN-OUTPUT")
        elapsed = time.monotonic() - t0
        assert b"SLOW-WARNING" not in out
        # 0.3 s budget plus a python start-up for train.py; generous for a loaded machine
        assert elapsed < 10, elapsed
        sh.read_until(b"PROMPT> ")
    finally:
        sh.close()
    lines = seen.read_text().splitlines()
    assert lines == ["check --hook --line python train.py --lr 5"]
