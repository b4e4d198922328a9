"""Bad input, end to end: each case through the real ``labbook import`` in a child process.

Every case puts one damaged thing beside good runs and checks what the user sees:
the exit code, exactly one ``labbook: warning: <path>: …`` line on stderr naming
the damaged file (and nothing else there, never a traceback), and the good runs
recorded with their right values (read back with ``labbook ls/show --json``).
The readers' own behaviour on these files is tested in test_tfevents.py,
test_files.py, test_logs.py and test_capture_git.py; this file tests the import.

Cases the command line cannot set up (a run dir deleted mid-import) use the
library, :func:`labbook.sources.importer.import_paths`, with a real store and real files.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import git, run_cli

WARN = "labbook: warning: "


# --------------------------------------------------------------------------- helpers


def check(
    r: subprocess.CompletedProcess[str], *names: str | os.PathLike[str], rc: int = 0
) -> list[str]:
    """Assert ``r`` exited with ``rc``, printed no traceback, and one warning per name.

    Each warning line must start with ``labbook: warning: <path>: `` for its path,
    in order; stderr holds nothing but these lines. Returns the warning lines.
    """
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode == rc, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.splitlines()
    assert all(line.startswith(WARN) for line in lines), r.stderr
    assert len(lines) == len(names), r.stderr
    for line, name in zip(lines, names, strict=True):
        assert line.startswith(f"{WARN}{os.fspath(name)}: "), (line, name)
    return lines


def import_(db: Path, *paths: Path) -> subprocess.CompletedProcess[str]:
    return run_cli("import", *map(str, paths), db=db)


def ls(db: Path) -> dict[str, dict[str, Any]]:
    """``labbook ls --json`` by run path."""
    r = run_cli("ls", "--json", "--limit", "0", db=db)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    return {rec["path"]: rec for rec in json.loads(r.stdout)}


def show(db: Path, ref: str) -> dict[str, Any]:
    r = run_cli("show", ref, "--json", db=db)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    return json.loads(r.stdout)


LOSSES = [1.0, 0.5, 0.25, 0.125]


def write_generic(run: Path, *, lr: float = 0.01, seed: int = 3) -> Path:
    """A plain run dir: config.yaml and metrics.jsonl (loss halves each step)."""
    run.mkdir(parents=True, exist_ok=True)
    (run / "config.yaml").write_text(f"optimizer:\n  lr: {lr}\nseed: {seed}\n")
    with open(run / "metrics.jsonl", "w") as f:
        for step, loss in enumerate(LOSSES):
            f.write(json.dumps({"step": step, "loss": loss}) + "\n")
    return run


def assert_generic(rec: dict[str, Any], *, lr: float = 0.01, seed: int = 3) -> None:
    assert rec["framework"] == "generic"
    assert rec["config"]["optimizer.lr"] == lr
    assert rec["seed"] == {"value": seed, "source": "config:seed", "known": True}
    loss = rec["metrics"]["loss"]
    assert (loss["last"], loss["min"], loss["max"], loss["count"]) == (0.125, 0.125, 1.0, 4)
    assert loss["step"] == 3


def tbx_events(run: Path, steps: int = 50) -> Path:
    """An event file written by tensorboardX's SummaryWriter: ``loss`` = 1/(step+1)."""
    tbx = pytest.importorskip("tensorboardX")
    run.mkdir(parents=True, exist_ok=True)
    writer = tbx.SummaryWriter(str(run))
    for step in range(steps):
        writer.add_scalar("loss", 1.0 / (step + 1), step, walltime=1_700_000_000 + step)
    writer.close()
    (path,) = run.glob("events.out.tfevents.*")
    return path


def tb_events(run: Path, steps: int = 50) -> Path:
    """An event file written by TensorBoard's own writer (tensor-encoded scalars)."""
    pytest.importorskip("tensorboard")
    from tensorboard.summary import Writer

    run.mkdir(parents=True, exist_ok=True)
    writer = Writer(str(run))
    for step in range(steps):
        writer.add_scalar("loss", 1.0 / (step + 1), step, wall_time=1_700_000_000.0 + step)
    writer.close()
    (path,) = run.glob("events.out.tfevents.*")
    return path


def record_offsets(blob: bytes) -> list[int]:
    """Start offsets of the complete TFRecord records in ``blob``."""
    offsets, at = [], 0
    while at + 12 <= len(blob):
        (length,) = struct.unpack_from("<Q", blob, at)
        if at + 16 + length > len(blob):
            break
        offsets.append(at)
        at += 16 + length
    return offsets


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    """``runs/`` holding two good runs, ``good`` (plain files) and ``tb`` (tensorboardX)."""
    root = tmp_path / "runs"
    write_generic(root / "good")
    tbx_events(root / "tb", steps=20)
    return root


def assert_good_runs(db: Path, root: Path) -> dict[str, dict[str, Any]]:
    """The two good runs of :func:`runs` are recorded with their values; returns ls by path."""
    recs = ls(db)
    assert_generic(recs[str(root / "good")])
    tb = recs[str(root / "tb")]
    assert tb["framework"] == "tensorboard"
    assert tb["metrics"]["loss"]["count"] == 20
    assert tb["metrics"]["loss"]["last"] == pytest.approx(1 / 20)
    return recs


# --------------------------------------------------------------------------- event files


def test_event_file_with_a_bad_data_checksum(runs: Path, db_path: Path) -> None:
    path = tbx_events(runs / "bad", steps=50)
    blob = bytearray(path.read_bytes())
    offsets = record_offsets(bytes(blob))
    blob[offsets[10] + 12 + 5] ^= 0x01  # a payload byte of the 10th scalar (record 0 is the header)
    path.write_bytes(bytes(blob))

    (line,) = check(import_(db_path, runs), path)
    assert "checksum" in line
    recs = assert_good_runs(db_path, runs)
    bad = recs[str(runs / "bad")]["metrics"]["loss"]
    assert bad["count"] == 49 and bad["last"] == pytest.approx(1 / 50)


def test_event_file_with_a_bad_length_checksum(runs: Path, db_path: Path) -> None:
    path = tb_events(runs / "bad", steps=50)
    blob = bytearray(path.read_bytes())
    offsets = record_offsets(bytes(blob))
    blob[offsets[31] + 9] ^= 0xFF  # the length's CRC: nothing after it can be framed
    path.write_bytes(bytes(blob))

    (line,) = check(import_(db_path, runs), path)
    assert f"byte {offsets[31]}" in line
    recs = assert_good_runs(db_path, runs)
    assert recs[str(runs / "bad")]["metrics"]["loss"]["count"] == 30


@pytest.mark.parametrize("writer", [tbx_events, tb_events])
def test_event_file_with_a_partial_last_record(runs: Path, db_path: Path, writer: Any) -> None:
    path = writer(runs / "bad", steps=50)
    blob = path.read_bytes()
    path.write_bytes(blob[: record_offsets(blob)[-1] + 20])  # the writer died mid-record

    (line,) = check(import_(db_path, runs), path)
    assert "partial" in line
    recs = assert_good_runs(db_path, runs)
    bad = recs[str(runs / "bad")]
    assert bad["metrics"]["loss"]["count"] == 49
    assert bad["status"] == "killed"


def test_event_file_of_garbage(runs: Path, db_path: Path) -> None:
    bad = runs / "bad"
    bad.mkdir()
    path = bad / "events.out.tfevents.1700000000.host.1.0"
    path.write_bytes(random.Random(1).randbytes(5000))

    check(import_(db_path, runs), path)
    recs = assert_good_runs(db_path, runs)
    assert recs[str(bad)]["metrics"] == {}


def test_empty_event_file(runs: Path, db_path: Path) -> None:
    bad = runs / "bad"
    bad.mkdir()
    path = bad / "events.out.tfevents.1700000000.host.1.0"
    path.write_bytes(b"")

    (line,) = check(import_(db_path, runs), path)
    assert "empty" in line
    assert_good_runs(db_path, runs)


# --------------------------------------------------------------------------- config and metric files


@pytest.mark.parametrize(
    ("name", "content", "word"),
    [
        ("config.yaml", "optimizer:\n  lr: [0.1, 0.2\nseed: 1\n", "YAML"),
        ("config.json", '{"optimizer": {"lr": 0.1}, "seed": ', "JSON"),
        ("config.toml", "[optimizer]\nlr = = 0.1\n", "TOML"),
        ("config.yaml", "", "empty"),
        ("config.json", "  \n", "empty"),
    ],
)
def test_malformed_or_empty_config(
    runs: Path, db_path: Path, name: str, content: str, word: str
) -> None:
    bad = write_generic(runs / "bad")
    (bad / "config.yaml").unlink()
    (bad / name).write_text(content)

    (line,) = check(import_(db_path, runs), bad / name)
    assert word in line
    recs = assert_good_runs(db_path, runs)
    rec = recs[str(bad)]
    assert rec["config"] == {}
    assert rec["metrics"]["loss"]["count"] == 4  # the metrics beside it are kept


def test_binary_garbage_under_a_config_name(runs: Path, db_path: Path) -> None:
    bad = write_generic(runs / "bad")
    (bad / "config.yaml").write_bytes(random.Random(2).randbytes(4096) + b"\x00\x00")

    (line,) = check(import_(db_path, runs), bad / "config.yaml")
    assert "binary" in line
    recs = assert_good_runs(db_path, runs)
    assert recs[str(bad)]["metrics"]["loss"]["last"] == 0.125


def test_malformed_lines_in_metrics_csv(runs: Path, db_path: Path) -> None:
    bad = runs / "bad"
    bad.mkdir()
    (bad / "config.yaml").write_text("lr: 0.2\n")
    (bad / "metrics.csv").write_text(
        'step,loss,acc\n0,1.0,0.1\n1,0.5,"0.2\n2,0.25\n3,0.125,0.4\n4,0.0625,0.5,9\n5,0.03,0.6\n'
    )

    (line,) = check(import_(db_path, runs), bad / "metrics.csv")
    assert "malformed CSV" in line
    recs = assert_good_runs(db_path, runs)
    rec = recs[str(bad)]
    assert rec["config"] == {"lr": 0.2}
    assert rec["metrics"]["loss"]["count"] == 4  # rows 0, 1?, 3, 5: the good ones
    assert rec["metrics"]["loss"]["last"] == 0.03


def test_malformed_lines_in_metrics_jsonl(runs: Path, db_path: Path) -> None:
    bad = write_generic(runs / "bad")
    with open(bad / "metrics.jsonl", "a") as f:
        f.write('{"step": 4, "loss": \n["not", "a record"]\n{"step": 5, "loss": 0.01}\n')

    (line,) = check(import_(db_path, runs), bad / "metrics.jsonl")
    assert "2 malformed JSON lines" in line
    recs = assert_good_runs(db_path, runs)
    loss = recs[str(bad)]["metrics"]["loss"]
    assert (loss["count"], loss["last"], loss["step"]) == (5, 0.01, 5)


def test_empty_metrics_file(runs: Path, db_path: Path) -> None:
    bad = write_generic(runs / "bad", lr=0.3)
    (bad / "metrics.jsonl").write_bytes(b"")

    (line,) = check(import_(db_path, runs), bad / "metrics.jsonl")
    assert "empty" in line
    recs = assert_good_runs(db_path, runs)
    rec = recs[str(bad)]
    assert rec["config"]["optimizer.lr"] == 0.3 and rec["metrics"] == {}


# --------------------------------------------------------------------------- huge files


def _rchar() -> int:
    """Bytes this process has read through read() so far (Linux)."""
    with open("/proc/self/io") as f:
        for line in f:
            if line.startswith("rchar:"):
                return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


def sparse_log(path: Path, size: int) -> None:
    """A ``size``-byte log: real lines at both ends, a sparse (unwritten) middle."""
    with open(path, "wb") as f:
        f.write(b"config: {'lr': 0.4, 'seed': 11}\n")
        f.write(b"".join(f"step {s}: train loss {1 / (s + 1):.4f}\n".encode() for s in range(5)))
        f.truncate(size - 4096)
        f.seek(size - 4096)
        tail = b"".join(f"step {s}: train loss {1 / (s + 1):.4f}\n".encode() for s in (998, 999))
        f.write(tail.ljust(4096 - 1, b"\n") + b"\n")
    assert path.stat().st_size == size
    assert path.stat().st_blocks * 512 < 1 << 20  # really sparse: the disk holds almost nothing


def test_two_gigabyte_log_is_not_read_whole(runs: Path, db_path: Path) -> None:
    bad = runs / "bad"
    bad.mkdir()
    log = bad / "train.log"
    sparse_log(log, 2 << 30)

    (line,) = check(import_(db_path, runs), log)
    assert "GiB" in line or "large" in line
    recs = assert_good_runs(db_path, runs)
    rec = recs[str(bad)]
    assert rec["config"] == {"lr": 0.4, "seed": 11}
    loss = rec["metrics"]["train_loss"]
    assert loss["count"] == 7 and loss["step"] == 999  # the head's and the tail's lines


@pytest.mark.skipif(not os.path.exists("/proc/self/io"), reason="needs Linux /proc/self/io")
def test_two_gigabyte_files_cost_only_their_windows(tmp_path: Path, store: Any) -> None:
    """Through the library: what the import reads of 2 GiB files is counted by the kernel."""
    from labbook.sources.importer import import_paths

    run = tmp_path / "big"
    run.mkdir()
    sparse_log(run / "train.log", 2 << 30)
    with open(run / "config.json", "wb") as f:
        f.truncate(2 << 30)
    before = _rchar()
    report = import_paths(store, [run], git=False)
    read = _rchar() - before
    assert len(report.ids) == 1
    assert read < 64 << 20, f"read {read} bytes of 4 GiB"


def test_two_gigabyte_config_is_not_parsed(runs: Path, db_path: Path) -> None:
    bad = write_generic(runs / "bad")
    (bad / "config.yaml").unlink()
    with open(bad / "config.json", "wb") as f:
        f.truncate(2 << 30)

    (line,) = check(import_(db_path, runs), bad / "config.json")
    assert "too large" in line
    recs = assert_good_runs(db_path, runs)
    assert recs[str(bad)]["metrics"]["loss"]["count"] == 4


# --------------------------------------------------------------------------- file system oddities


@pytest.fixture
def world_dir() -> Iterator[Path]:
    """A temporary directory every user can reach (pytest's own tmp dirs are 0700)."""
    base = Path(tempfile.mkdtemp(prefix="labbook-bad-input-"))
    base.chmod(0o777)
    try:
        yield base
    finally:
        for dirpath, dirnames, _ in os.walk(base):
            for d in dirnames:
                os.chmod(os.path.join(dirpath, d), 0o755)
        shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def _owned(db: Path) -> Iterator[None]:
    """A database written by the unprivileged user, ours for a while (labbook refuses
    to use another user's database files)."""
    files = [f for f in db.parent.iterdir() if f.name.startswith(db.name)]
    owners = {f: (f.stat().st_uid, f.stat().st_gid) for f in files}
    for f in files:
        os.chown(f, os.getuid(), os.getgid())
    try:
        yield
    finally:
        for f, (uid, gid) in owners.items():
            os.chown(f, uid, gid)


def _unprivileged(base: Path) -> list[str]:
    """A command prefix under which file modes bind (root ignores them), or skip.

    As root, run as ``nobody``; if that user cannot run this Python (it may live
    under a 0700 home), stay root but drop the two capabilities that bypass file
    modes (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH) from the child's bounding set.
    """
    if os.geteuid() != 0:
        return []
    locked = base / "probe"
    locked.mkdir()
    locked.chmod(0)
    probe = (
        "import os, sys, labbook.cli\n"
        "try:\n    os.listdir(sys.argv[1])\nexcept PermissionError:\n    sys.exit(0)\n"
        "sys.exit(3)\n"
    )
    candidates: list[list[str]] = []
    setpriv = shutil.which("setpriv")
    if setpriv:
        candidates.append([setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"])
        candidates.append(
            [setpriv, "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search"]
        )
    try:
        for prefix in candidates:
            r = subprocess.run(
                [*prefix, sys.executable, "-c", probe, str(locked)],
                capture_output=True,
                cwd=base,
                timeout=60,
            )
            if r.returncode == 0:
                return prefix
    finally:
        locked.chmod(0o755)
        locked.rmdir()
    pytest.skip("cannot run a process that file modes bind (no setpriv, or no privilege)")


def test_unreadable_directory_and_file(world_dir: Path) -> None:
    root = world_dir / "runs"
    write_generic(root / "good")
    locked = write_generic(root / "locked")
    secret = write_generic(root / "secret", lr=0.5)
    for p in (root, root / "good", root / "secret"):
        p.chmod(0o777)
    for p in (root / "good", root / "secret"):
        for f in p.iterdir():
            f.chmod(0o666)
    (secret / "config.yaml").chmod(0)
    locked.chmod(0)
    db = world_dir / "db" / "labbook.db"
    db.parent.mkdir()
    db.parent.chmod(0o777)
    prefix = _unprivileged(world_dir)

    cmd = [*prefix, sys.executable, "-m", "labbook", "--db", str(db), "import", str(root)]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=world_dir, timeout=120)
    lines = check(r, locked, secret / "config.yaml")
    assert "Permission denied" in lines[0] and "Permission denied" in lines[1]
    with _owned(db):
        recs = ls(db)
    assert set(recs) == {str(root / "good"), str(secret)}
    assert_generic(recs[str(root / "good")])
    assert recs[str(secret)]["metrics"]["loss"]["count"] == 4  # only the config was lost

    # Only an unreadable directory below the path: nothing could be read, exit 1.
    only = world_dir / "only"
    only.mkdir()
    only.chmod(0o777)
    locked.rename(only / "locked")
    cmd = [*prefix, sys.executable, "-m", "labbook", "--db", str(db), "import", str(only)]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=world_dir, timeout=120)
    (warning, error) = r.stderr.splitlines()
    assert "Traceback" not in r.stderr and r.returncode == 1, r.stderr
    assert warning.startswith(f"{WARN}{only / 'locked'}: cannot list directory")
    assert error.startswith("labbook: error: nothing could be read")


def test_symlink_loops(runs: Path, db_path: Path) -> None:
    bad = write_generic(runs / "bad")
    (bad / "metrics.jsonl").unlink()
    (bad / "metrics.jsonl").symlink_to("metrics.jsonl")  # ELOOP when followed
    (bad / "up").symlink_to("..", target_is_directory=True)  # a cycle, never followed
    (runs / "good" / "sub").mkdir()
    (runs / "good" / "sub" / "again").symlink_to("../..", target_is_directory=True)

    (line,) = check(import_(db_path, runs), bad / "metrics.jsonl")
    assert "symbolic links" in line or "loop" in line
    recs = assert_good_runs(db_path, runs)
    assert recs[str(bad)]["config"]["optimizer.lr"] == 0.01
    assert set(recs) == {str(runs / "good"), str(runs / "tb"), str(bad)}


def test_non_utf8_file_names(runs: Path, db_path: Path) -> None:
    raw = os.fsencode(runs) + b"/r\xffn-\xe9"
    odd = Path(os.fsdecode(raw))
    write_generic(odd, lr=0.7)
    bad = Path(os.fsdecode(raw + b"/../bad-\xfe"))
    bad = write_generic(Path(os.path.normpath(bad)))
    (bad / "config.yaml").write_text("a: [\n")

    r = import_(db_path, runs)
    assert "Traceback" not in r.stderr and r.returncode == 0, r.stderr
    (line,) = r.stderr.splitlines()
    # The name's undecodable bytes are shown escaped, as the store shows them.
    assert line.startswith(f"{WARN}{runs}/bad-\\xfe/config.yaml: malformed YAML"), line
    recs = ls(db_path)
    assert len(recs) == 4
    assert_good_runs(db_path, runs)
    # Stored and shown with the undecodable bytes escaped (the store's safe_text).
    assert_generic(recs[f"{runs}/r\\xffn-\\xe9"], lr=0.7)
    assert recs[f"{runs}/bad-\\xfe"]["metrics"]["loss"]["count"] == 4


# --------------------------------------------------------------------------- git


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A real repository with a commit and two runs below it (untracked)."""
    root = tmp_path / "project"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "train.py").write_text("print('train')\n")
    git(root, "add", "train.py")
    git(root, "commit", "-q", "-m", "initial")
    write_generic(root / "runs" / "a", seed=1)
    write_generic(root / "runs" / "b", seed=2)
    return root


def assert_project_runs(db: Path, project: Path) -> list[dict[str, Any]]:
    """Both runs recorded with their values and the same git root (or none).

    Returns ``show --json`` of run ``a`` (the git state is one capture for both).
    """
    recs = ls(db)
    a, b = (recs[str(project / "runs" / n)] for n in ("a", "b"))
    assert_generic(a, seed=1)
    assert_generic(b, seed=2)
    assert a["git"] == b["git"]
    return [show(db, str(project / "runs" / "a"))]


def test_no_git_repository(runs: Path, db_path: Path) -> None:
    check(import_(db_path, runs))
    for rec in assert_good_runs(db_path, runs).values():
        assert rec["git"] is None


def test_no_git_executable(project: Path, db_path: Path, tmp_path: Path) -> None:
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    r = run_cli("import", str(project / "runs"), db=db_path, env={"PATH": str(empty_bin)})
    (line,) = check(r, project)
    assert "git is not available" in line
    for rec in assert_project_runs(db_path, project):
        assert rec["git"] is None


@pytest.mark.parametrize("breakage", ["garbage HEAD", "dangling .git file"])
def test_broken_dot_git(project: Path, db_path: Path, breakage: str) -> None:
    if breakage == "garbage HEAD":
        (project / ".git" / "HEAD").write_bytes(b"\x00\xffnot a ref\n")
    else:
        shutil.rmtree(project / ".git")
        (project / ".git").write_text("gitdir: ../nowhere/.git\n")

    (line,) = check(import_(db_path, project / "runs"), project)  # once for both runs
    assert "git state not recorded" in line
    for rec in assert_project_runs(db_path, project):
        assert rec["git"] is None


def test_detached_head(project: Path, db_path: Path) -> None:
    first = git(project, "rev-parse", "HEAD").strip()
    (project / "train.py").write_text("print('v2')\n")
    git(project, "commit", "-q", "-am", "second")
    git(project, "checkout", "-q", "--detach", first)

    check(import_(db_path, project / "runs"))  # a valid state: nothing to warn about
    for rec in assert_project_runs(db_path, project):
        g = rec["git"]
        assert (g["commit"], g["branch"], g["detached"], g["dirty"]) == (first, None, True, False)


def test_shallow_clone(project: Path, db_path: Path, tmp_path: Path) -> None:
    (project / "train.py").write_text("print('v2')\n")
    git(project, "commit", "-q", "-am", "second")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", "--depth", "1", f"file://{project}", str(clone))
    write_generic(clone / "runs" / "a", seed=1)
    write_generic(clone / "runs" / "b", seed=2)

    check(import_(db_path, clone / "runs"))
    for rec in assert_project_runs(db_path, clone):
        g = rec["git"]
        assert g["shallow"] is True and g["branch"] == "main"
        assert g["commit"] == git(project, "rev-parse", "HEAD").strip()
        assert g["remote"] == f"file://{project}"


def test_thousands_of_untracked_files(project: Path, db_path: Path) -> None:
    junk = project / "data"
    junk.mkdir()
    for i in range(3000):
        (junk / f"sample_{i:05d}.txt").write_text(f"{i}\n")

    (line,) = check(import_(db_path, project / "runs"), project)
    assert "untracked" in line
    for rec in assert_project_runs(db_path, project):
        g = rec["git"]
        assert g["untracked_truncated"] is True
        assert 0 < len(g["untracked"]) <= 1000
        assert len(json.dumps(g["untracked_contents"])) <= 3 << 20


# --------------------------------------------------------------------------- exit codes


def test_nothing_readable_exits_non_zero(tmp_path: Path, db_path: Path) -> None:
    r = import_(db_path, tmp_path / "no-such-dir")
    assert "Traceback" not in r.stderr and r.returncode != 0
    assert f"{WARN}{tmp_path / 'no-such-dir'}: " in r.stderr


def test_empty_directory_is_not_an_error(tmp_path: Path, db_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    check(import_(db_path, tmp_path / "empty"))


# --------------------------------------------------------------------------- deleted mid-import


class _Captured(logging.Handler):
    """Collects what the ``labbook`` logger warns (whatever its propagation)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def warnings_() -> Iterator[list[str]]:
    logger = logging.getLogger("labbook")
    handler = _Captured()
    logger.addHandler(handler)
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)


def test_run_dir_deleted_before_its_turn(tmp_path: Path, store: Any, warnings_: list[str]) -> None:
    """The progress hook fires before each run is read: delete the next one there."""
    from labbook.sources.importer import import_paths

    root = tmp_path / "runs"
    for i in range(6):
        write_generic(root / f"r{i}", seed=i)
    doomed = root / "r3"

    def progress(stage: str, done: int, total: int) -> None:
        if stage == "read" and done == 3 and doomed.exists():
            shutil.rmtree(doomed)

    report = import_paths(store, [root], progress=progress, git=False)
    messages = warnings_
    assert len(messages) == 1 and messages[0].startswith(f"{doomed}: "), messages
    assert report.failed == [str(doomed)]
    recorded = {store.record(i)["path"]: store.record(i) for i in report.ids}
    assert set(recorded) == {str(root / f"r{i}") for i in range(6) if i != 3}
    for i in (0, 1, 2, 4, 5):
        assert_generic(recorded[str(root / f"r{i}")], seed=i)


def test_run_dirs_deleted_while_a_large_import_runs(
    tmp_path: Path, store: Any, warnings_: list[str]
) -> None:
    """A second thread moves run dirs away (atomically) while the import reads them."""
    from labbook.sources.importer import import_paths

    root = tmp_path / "runs"
    trash = tmp_path / "trash"
    trash.mkdir()
    n = 300
    for i in range(n):
        write_generic(root / f"r{i:03d}", seed=i)
    doomed = [root / f"r{i:03d}" for i in range(n - 1, 0, -7)]  # from the end: some race
    started = threading.Event()
    deleted: list[Path] = []

    def deleter() -> None:
        started.wait(timeout=60)
        for d in doomed:
            os.rename(d, trash / d.name)
            deleted.append(d)

    def progress(stage: str, done: int, total: int) -> None:
        if stage == "read" and done == n // 2:
            started.set()

    thread = threading.Thread(target=deleter)
    thread.start()
    try:
        report = import_paths(store, [root], progress=progress, git=False)
    finally:
        started.set()
        thread.join(timeout=60)
    assert not thread.is_alive()
    messages = warnings_
    gone = {str(d) for d in deleted}
    recorded = {store.record(i)["path"]: store.record(i) for i in report.ids}
    # Every run that was not deleted is recorded, with its values.
    for i in range(n):
        path = str(root / f"r{i:03d}")
        if path not in gone:
            assert_generic(recorded[path], seed=i)
    # A deleted run is recorded whole (read before it went) or not at all with one warning.
    warned = [m.split(": ", 1)[0] for m in messages]
    assert len(warned) == len(set(warned)), messages
    for path in warned:
        assert path in gone and path not in recorded, messages
    for path in gone:
        assert (path in recorded) != (path in warned), (path, messages)
        if path in recorded:
            assert recorded[path]["metrics"]["loss"]["count"] == 4
