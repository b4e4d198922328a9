"""Finding the process behind a run dir, and what it ran with: real child processes."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import pwd
import signal
import subprocess
import sys
import time
import venv
import zipfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from labbook.capture import process as capproc
from labbook.capture.env import REDACTED, normalize_name, site_packages_of
from labbook.capture.process import (
    env_for_process,
    exit_status,
    find_writer,
    is_alive,
    packages_of,
    process_info,
)

HF = "hf_" + "AbCdEfGhIjKlMnOpQrStUvWxYz012345"
DEADLINE = 30.0

# A child that runs a snippet, says "ready", then waits for its stdin to close.
_CHILD = """
import os, sys
{setup}
print('ready', flush=True)
sys.stdin.read()
"""


class Children:
    """Starts real child processes and always ends them."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def python(
        self,
        setup: str = "",
        *,
        args: tuple[str, ...] = (),
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        exe: str = sys.executable,
    ) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [exe, "-c", _CHILD.format(setup=setup), *args],
            cwd=cwd,
            env=env if env is not None else {**os.environ},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self.procs.append(proc)
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n"
        return proc

    def start(self, argv: list[str], **kwargs: object) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, **kwargs)  # type: ignore[call-overload]
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.procs:
            if proc.stdin is not None and not proc.stdin.closed:
                proc.stdin.close()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
            if proc.stdout is not None:
                proc.stdout.close()


@pytest.fixture
def children() -> Iterator[Children]:
    c = Children()
    yield c
    c.close()


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    d = tmp_path / "runs" / "exp1"
    d.mkdir(parents=True)
    return d


# --- find_writer ----------------------------------------------------------------------


def test_finds_writer_by_open_file(children: Children, run_dir: Path) -> None:
    log = run_dir / "events.log"
    writer = children.python(f"fh = open({str(log)!r}, 'a')")
    info = find_writer(str(run_dir))
    assert info is not None
    assert info.pid == writer.pid
    assert info.matched_by == "open-write"
    assert info.ppid == os.getpid()
    assert info.argv[0] == sys.executable and info.argv[1] == "-c"
    assert info.exe is not None and os.path.realpath(info.exe) == os.path.realpath(sys.executable)
    assert info.create_time == pytest.approx(psutil.Process(writer.pid).create_time())
    assert info.username == psutil.Process().username()
    assert info.python_version == platform.python_version()
    assert "pytest" in info.packages


def test_psutil_scan_agrees_with_proc_scan(children: Children, run_dir: Path) -> None:
    """The psutil path (no /proc: macOS) finds what the /proc path finds."""
    writer = children.python(f"fh = open({str(run_dir / 'a.log')!r}, 'w')")
    cwd_proc = children.python("", cwd=run_dir)
    args = (str(run_dir), [str(run_dir)], {os.getpid()}, os.getuid())
    by_proc, parents_proc = capproc._candidates_proc(*args)
    by_psutil, parents_psutil = capproc._candidates_psutil(*args)
    summary = sorted((c.pid, c.matched_by()) for c in by_proc)
    assert summary == sorted((c.pid, c.matched_by()) for c in by_psutil)
    assert summary == sorted([(writer.pid, "open-write"), (cwd_proc.pid, "cwd")])
    assert parents_proc[writer.pid] == parents_psutil[writer.pid] == os.getpid()
    chosen = capproc._choose(by_psutil, parents_psutil)
    assert chosen is not None and chosen.pid == writer.pid


def test_writer_preferred_over_readers_and_shells(children: Children, run_dir: Path) -> None:
    log = run_dir / "train.log"
    log.write_text("step 1\n")
    # a reader of the same file, a shell sitting in the run dir, then the writer
    children.python(f"fh = open({str(log)!r}, 'r')")
    shell = children.start(["sh", "-c", "read x"], cwd=run_dir)
    writer = children.python(f"fh = open({str(log)!r}, 'a')")
    info = find_writer(str(run_dir))
    assert info is not None and shell.pid != info.pid
    assert info.pid == writer.pid


def test_topmost_of_a_tree_holding_the_file(children: Children, run_dir: Path) -> None:
    """A DataLoader-like worker inherits the writer's fd: the parent is the writer."""
    log = run_dir / "metrics.jsonl"
    setup = (
        "import subprocess\n"
        f"fh = open({str(log)!r}, 'a')\n"
        "w = subprocess.Popen([sys.executable, '-c', 'import sys; print(1, flush=True); "
        "sys.stdin.read()'], stdin=subprocess.PIPE, stdout=subprocess.PIPE, "
        "pass_fds=(fh.fileno(),))\n"
        "w.stdout.readline()\n"
    )
    parent = children.python(setup)
    kids = psutil.Process(parent.pid).children()
    assert kids, "the worker runs"
    info = find_writer(str(run_dir))
    assert info is not None and info.pid == parent.pid


def test_finds_writer_by_deepest_cwd(children: Children, run_dir: Path) -> None:
    deep = run_dir / ".hydra" / "job"
    deep.mkdir(parents=True)
    children.python("", cwd=run_dir)
    deeper = children.python("", cwd=deep)
    info = find_writer(str(run_dir))
    assert info is not None
    assert info.pid == deeper.pid and info.matched_by == "cwd"
    assert info.cwd == str(deep)


def test_finds_writer_by_argv_and_hint(children: Children, run_dir: Path, tmp_path: Path) -> None:
    proc = children.python("", args=("--output_dir", str(run_dir)))
    info = find_writer(str(run_dir))
    assert info is not None and info.pid == proc.pid and info.matched_by == "argv"

    other = tmp_path / "runs" / "exp2"
    other.mkdir()
    config = tmp_path / "configs" / "exp2.yaml"
    config.parent.mkdir()
    config.write_text("lr: 0.1\n")
    # relative path, resolved against the child's cwd
    hinted = children.python("", args=("--config=configs/exp2.yaml",), cwd=tmp_path)
    assert find_writer(str(other)) is None
    info2 = find_writer(str(other), hint_paths=[str(config)])
    assert info2 is not None and info2.pid == hinted.pid


def test_excluded_and_own_process_not_chosen(children: Children, run_dir: Path) -> None:
    with open(run_dir / "mine.log", "a"):  # labbook's own open file
        assert find_writer(str(run_dir)) is None
        writer = children.python(f"fh = open({str(run_dir / 'x.log')!r}, 'a')")
        assert find_writer(str(run_dir), exclude_pids=[writer.pid]) is None


@pytest.mark.skipif(not hasattr(os, "getuid") or os.getuid() != 0, reason="needs root")
def test_other_users_processes_not_matched(children: Children, run_dir: Path) -> None:
    """A process of user nobody holding a file open in the run dir is not ours."""
    with open(run_dir / "shared.log", "a") as fh:
        other = children.start(["sleep", "60"], user="nobody", pass_fds=(fh.fileno(),), cwd="/")
    nobody_uid = pwd.getpwnam("nobody").pw_uid
    deadline = time.monotonic() + DEADLINE
    proc = psutil.Process(other.pid)
    # until it has switched user *and* exec'd sleep: before the exec the child still
    # holds subprocess's error pipe, whose fd vanishes under a reader's feet
    while proc.uids().real != nobody_uid or proc.cmdline() != ["sleep", "60"]:
        assert time.monotonic() < deadline

    def fd_target(fd: str) -> str:
        try:
            return os.readlink(f"/proc/{other.pid}/fd/{fd}")
        except FileNotFoundError:
            return ""

    assert any(fd_target(fd).startswith(str(run_dir)) for fd in os.listdir(f"/proc/{other.pid}/fd"))
    assert find_writer(str(run_dir)) is None
    other.kill()


def test_nothing_found_and_bad_input(tmp_path: Path) -> None:
    assert find_writer(str(tmp_path / "nobody-writes-here")) is None
    assert find_writer("") is None


# --- environment and redaction -------------------------------------------------------------


def test_env_vars_selected_and_secrets_redacted(children: Children, run_dir: Path) -> None:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "WANDB_API_KEY": "abc",
        "HF_TOKEN": HF,
        "WANDB_MODE": "offline",
        "CUDA_VISIBLE_DEVICES": "1,0",
        "PL_GLOBAL_SEED": "1234",
        "RANK": "0",
        "WORLD_SIZE": "2",
        "NCCL_DEBUG": "INFO",
        "SLURM_JOB_ID": "77",
        "TOKENIZERS_PARALLELISM": "false",
        "AWS_SECRET_ACCESS_KEY": "s3cr3t-value",
        "HOME": "/home/someone",
    }
    proc = children.python(
        f"fh = open({str(run_dir / 'log')!r}, 'w')",
        args=("--api-key", "abc123def", "--lr", "0.1"),
        env=env,
    )
    assert psutil.Process(proc.pid).environ()["WANDB_API_KEY"] == "abc"  # really there
    info = find_writer(str(run_dir))
    assert info is not None and info.pid == proc.pid
    assert info.env_vars == {
        "CUDA_VISIBLE_DEVICES": "1,0",
        "HF_TOKEN": REDACTED,
        "NCCL_DEBUG": "INFO",
        "PL_GLOBAL_SEED": "1234",
        "RANK": "0",
        "SLURM_JOB_ID": "77",
        "TOKENIZERS_PARALLELISM": "false",
        "WANDB_API_KEY": REDACTED,
        "WANDB_MODE": "offline",
        "WORLD_SIZE": "2",
    }
    assert "abc123def" not in " ".join(info.argv)
    assert info.argv[-2:] == ["--lr", "0.1"]
    text = repr(info.as_dict())
    assert HF not in text and "s3cr3t" not in text and "'abc'" not in text

    env_info = env_for_process(info)
    assert env_info.source == "process"
    assert env_info.vars == info.env_vars
    assert env_info.packages == info.packages and "pytest" in env_info.packages
    assert env_info.python == platform.python_version()


def test_process_info_of_non_python_and_gone(children: Children) -> None:
    proc = children.start(["sh", "-c", "read x"])
    deadline = time.monotonic() + DEADLINE
    info = process_info(proc.pid)
    while info is None or not info.argv or info.argv[0] != "sh":  # until exec is done
        assert time.monotonic() < deadline
        info = process_info(proc.pid)
    assert info.packages == {} and info.python_version is None
    assert proc.stdin is not None
    proc.stdin.close()
    proc.wait(timeout=10)
    assert process_info(proc.pid) is None


# --- lifecycle ----------------------------------------------------------------------------


def _spawn(code: str) -> int:
    """A child not owned by a Popen object (the test reaps it at the end)."""
    return os.posix_spawn(sys.executable, [sys.executable, "-c", code], dict(os.environ))


def _until_exited(pid: int) -> None:
    deadline = time.monotonic() + DEADLINE
    while True:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        assert time.monotonic() < deadline


def test_is_alive_and_exit_status() -> None:
    pid = _spawn("raise SystemExit(3)")
    created = psutil.Process(pid).create_time()
    _until_exited(pid)
    assert not is_alive(pid, created)  # a zombie is not alive
    assert exit_status(pid) == 3
    assert exit_status(pid) == 3  # remembered
    assert not is_alive(pid, created)
    assert os.waitpid(pid, 0)[1] >> 8 == 3  # not reaped by exit_status: its owner still can


def test_exit_status_leaves_a_popen_child_to_its_owner() -> None:
    """The daemon may look at a process that some Popen started; Popen still gets its code."""
    import subprocess

    p = subprocess.Popen([sys.executable, "-c", "raise SystemExit(5)"])
    _until_exited(p.pid)
    assert exit_status(p.pid) == 5
    assert p.wait(timeout=DEADLINE) == 5


def test_exit_status_of_killed_child_and_running_child() -> None:
    pid = _spawn("import time\nwhile True: time.sleep(1)")
    try:
        created = psutil.Process(pid).create_time()
        assert is_alive(pid, created)
        assert is_alive(pid, None)
        assert not is_alive(pid, created + 100)  # a reused pid started later
        assert exit_status(pid) is None  # still running
    finally:
        os.kill(pid, signal.SIGKILL)
    _until_exited(pid)
    assert exit_status(pid) == -signal.SIGKILL
    os.waitpid(pid, 0)


def test_exit_status_of_non_child() -> None:
    assert exit_status(1) is None
    assert not is_alive(2**22 + 12345, None)


# --- packages ------------------------------------------------------------------------------


def _write_wheel(path: Path, name: str, version: str) -> Path:
    """A real (tiny, pure-Python) wheel file."""
    dist = f"{name}-{version}"
    wheel = path / f"{dist}-py3-none-any.whl"
    files = {
        f"{name}/__init__.py": f"__version__ = {version!r}\n",
        f"{dist}.dist-info/METADATA": (
            f"Metadata-Version: 2.1\nName: {name.replace('_', '-').title()}\n"
            f"Version: {version}\nSummary: tiny\n\nA long description.\nVersion: 0.0.0\n"
        ),
        f"{dist}.dist-info/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: labbook-tests\nRoot-Is-Purelib: true\n"
            "Tag: py3-none-any\n"
        ),
    }
    record = [f"{n},," for n in files] + [f"{dist}.dist-info/RECORD,,"]
    with zipfile.ZipFile(wheel, "w") as zf:
        for n, text in files.items():
            zf.writestr(n, text)
        zf.writestr(f"{dist}.dist-info/RECORD", "\n".join(record) + "\n")
    return wheel


def test_packages_of_real_venv(tmp_path: Path) -> None:
    root = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False, symlinks=True).create(root)
    python = root / "bin" / "python"
    wheel = _write_wheel(tmp_path, "tiny_pkg", "0.3.1")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "--disable-pip-version-check",
            "--no-input",
            "-q",
            "install",
            "--no-index",
            "--no-deps",
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    first = packages_of(str(python))
    assert first == {"tiny-pkg": "0.3.1"}
    assert "pytest" not in first

    # installing another distribution changes the directory: the cache notices
    site = Path(site_packages_of(str(python))[0])
    extra = site / "other_dist-2.0.dist-info"
    extra.mkdir()
    (extra / "METADATA").write_text("Metadata-Version: 2.1\nName: other_dist\nVersion: 2.0\n")
    assert packages_of(str(python)) == {"tiny-pkg": "0.3.1", "other-dist": "2.0"}

    # a child really running that interpreter reports the same packages
    info_env = {"PATH": str(root / "bin")}
    proc = subprocess.Popen(
        [str(python), "-c", "import sys, tiny_pkg; print('ok', flush=True); sys.stdin.read()"],
        env=info_env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"ok\n"
        info = process_info(proc.pid)
    finally:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.close()
        proc.wait(timeout=10)
        proc.stdout.close()
    assert info is not None
    assert info.packages == {"tiny-pkg": "0.3.1", "other-dist": "2.0"}
    assert info.exe == str(python)


def test_packages_of_current_interpreter_matches_importlib_metadata() -> None:
    ours = packages_of(sys.executable)
    sites = {os.path.realpath(d) for d in site_packages_of(sys.executable)}
    theirs: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        location = os.path.realpath(str(dist.locate_file("")))
        if location in sites:
            theirs.setdefault(normalize_name(dist.metadata["Name"]), dist.version)
    assert len(theirs) > 10
    assert ours == theirs


def test_packages_of_nonsense(tmp_path: Path) -> None:
    assert packages_of(str(tmp_path / "no-such-python")) == {}
    assert packages_of("") == {}


def test_packages_of_is_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    packages_of(sys.executable)
    calls: list[object] = []
    monkeypatch.setattr(capproc.capenv, "read_packages", lambda dirs: calls.append(dirs) or {})
    assert "pytest" in packages_of(sys.executable)
    assert calls == []
