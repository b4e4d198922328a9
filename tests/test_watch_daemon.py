"""The daemon end to end, in-process: a real watchdog observer, real writer processes,
a real SQLite file. Waits poll with deadlines (never fixed sleeps) and no thread leaks."""

from __future__ import annotations

import io
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from labbook.sources.watch.config import WatchConfig
from labbook.sources.watch.daemon import Daemon, DaemonOptions
from labbook.sources.watch.debounce import Debouncer
from labbook.sources.watch.display import LogDisplay
from labbook.store import Store

WRITER = str(Path(__file__).with_name("watch_writer.py"))
DEADLINE = 90.0


@pytest.fixture(autouse=True)
def _no_thread_leaks() -> Iterator[None]:
    before = threading.active_count()
    yield
    deadline = time.monotonic() + 10
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() == before, [t.name for t in threading.enumerate()]


def wait_for(cond: Callable[[], Any], timeout: float = DEADLINE, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def record_of(db: Path, path: Path) -> dict[str, Any] | None:
    if not db.exists():
        return None
    with Store.open(db) as s:
        rid = s.id_for_source(str(path))
        return s.record(rid) if rid else None


def start_daemon(
    db: Path, root: Path, *, inactivity: float = 5.0, **opts: Any
) -> tuple[Daemon, io.StringIO]:
    out = io.StringIO()
    options = DaemonOptions(
        tick=0.2,
        interval=0.3,
        gpu=opts.pop("gpu", False),
        debounce=Debouncer(quiet=0.1, max_wait=0.5, first_quiet=0.02),
        **opts,
    )
    d = Daemon(
        db,
        WatchConfig(roots=[root], inactivity_timeout=inactivity),
        display=LogDisplay(out),
        options=options,
    )
    d.start()
    return d, out


def writer(
    mode: str, run_dir: Path, n: int, rate: float, cwd: Path | None = None
) -> subprocess.Popen[str]:
    p = subprocess.Popen(
        [sys.executable, WRITER, mode, str(run_dir), str(n), str(rate)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=cwd,
    )
    assert p.stdout is not None
    assert p.stdout.readline().strip() == "ready"
    return p


def test_tensorboard_run_is_captured_live_with_git_process_and_end(
    repo: Path, db_path: Path
) -> None:
    root = repo / "runs"
    root.mkdir()
    d, out = start_daemon(db_path, root)
    try:
        run = root / "exp1"
        w = writer("tb", run, 120, 40, cwd=repo)
        rec = wait_for(lambda: record_of(db_path, run), what="the run to appear")
        # an edit after launch must not leak into the recorded diff
        (repo / "train.py").write_text("print('edited after launch')\n")
        assert w.wait(timeout=DEADLINE) == 0
        rec = wait_for(
            lambda: (r := record_of(db_path, run)) and r["ended_at"] and r,
            what="the run to end",
        )
    finally:
        d.stop()
    assert rec["framework"] == "tensorboard"
    assert rec["status"] == "finished", out.getvalue()
    assert rec["metrics"]["train/loss"]["count"] == 120
    assert rec["metrics"]["train/loss"]["step"] == 119
    assert rec["git"]["commit"] and "edited after launch" not in rec["git"]["diff"]
    assert rec["pid"] == w.pid and rec["command"] and WRITER in rec["command"]
    assert rec["env"]["source"] == "process"
    assert "started" in out.getvalue() and "finished" in out.getvalue()


def test_divergence_and_failure_are_recorded(tmp_path: Path, db_path: Path) -> None:
    root = tmp_path / "runs"
    root.mkdir()
    d, out = start_daemon(db_path, root)
    try:
        a = writer("nan", root / "nan", 20, 50)
        b = writer("fail", root / "fail", 10, 50)
        assert a.wait(timeout=DEADLINE) == 0 and b.wait(timeout=DEADLINE) == 1
        ra = wait_for(lambda: (r := record_of(db_path, root / "nan")) and r["ended_at"] and r)
        rb = wait_for(lambda: (r := record_of(db_path, root / "fail")) and r["ended_at"] and r)
    finally:
        d.stop()
    assert ra["status"] == "diverged" and ra["failure"]["step"] == 10
    assert ra["metrics"]["loss"]["count"] == 20 and ra["seed"]["value"] == 7
    assert rb["status"] == "failed" and "bad batch" in rb["failure"]["message"]
    assert "diverged" in out.getvalue()


def test_inotify_exhaustion_falls_back_to_polling(tmp_path: Path, db_path: Path) -> None:
    root = tmp_path / "runs"
    for i in range(4):
        (root / f"old{i}").mkdir(parents=True)
    d, out = start_daemon(db_path, root, max_watches=2, watches_in_use=0)
    try:
        assert d.polled_roots == [root]
        assert "inotify" in out.getvalue() and "polling" in out.getvalue()
        run = root / "new"
        run.mkdir()
        (run / "config.yaml").write_text("lr: 1\n")
        (run / "metrics.jsonl").write_text('{"step": 0, "loss": 1.0}\n')
        rec = wait_for(lambda: record_of(db_path, run), what="the polled run")
    finally:
        d.stop()
    assert rec["metrics"]["loss"]["count"] == 1


def test_network_fs_root_is_polled(tmp_path: Path, db_path: Path) -> None:
    root = tmp_path / "nfs"
    root.mkdir()
    mounts = tmp_path / "mounts"
    mounts.write_text(f"/dev/sda1 / ext4 rw 0 0\nsrv:/x {root} nfs4 rw 0 0\n")
    d, out = start_daemon(db_path, root, mounts_path=str(mounts))
    try:
        assert d.polled_roots == [root] and "nfs4" in out.getvalue()
        run = root / "r"
        run.mkdir()
        (run / "labbook.json").write_text('{"name": "on-nfs"}')
        rec = wait_for(lambda: record_of(db_path, run))
    finally:
        d.stop()
    assert rec["name"] == "on-nfs"


def test_run_dir_deleted_while_running_keeps_the_record(tmp_path: Path, db_path: Path) -> None:
    import shutil

    root = tmp_path / "runs"
    root.mkdir()
    d, _ = start_daemon(db_path, root)
    try:
        run = root / "doomed"
        w = writer("jsonl", run, 400, 50)
        wait_for(lambda: (r := record_of(db_path, run)) and r["metrics"].get("loss"))
        shutil.rmtree(run)
        rec = wait_for(lambda: (r := record_of(db_path, run)) and r["missing"] and r)
        w.kill()
        w.wait()
    finally:
        d.stop()
    assert rec["id"] and rec["metrics"]["loss"]["count"] >= 1


def test_readers_are_not_blocked_while_the_daemon_ingests(tmp_path: Path, db_path: Path) -> None:
    root = tmp_path / "runs"
    root.mkdir()
    d, _ = start_daemon(db_path, root)
    try:
        ws = [writer("jsonl", root / f"r{i}", 300, 200) for i in range(3)]
        wait_for(lambda: record_of(db_path, root / "r0"))
        for _ in range(5):
            t0 = time.monotonic()
            p = subprocess.run(
                [sys.executable, "-m", "labbook", "--db", str(db_path), "ls", "--json"],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert p.returncode == 0, p.stderr
            assert "locked" not in p.stderr
            assert time.monotonic() - t0 < 10  # the busy timeout; in practice far less
        for w in ws:
            w.wait(timeout=DEADLINE)
    finally:
        d.stop()


def test_second_daemon_on_the_same_db_says_who_holds_it(tmp_path: Path, db_path: Path) -> None:
    root = tmp_path / "runs"
    root.mkdir()
    d, _ = start_daemon(db_path, root)
    try:
        p = subprocess.run(
            [sys.executable, "-m", "labbook", "--db", str(db_path), "watch", "--log", str(root)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        d.stop()
    assert p.returncode != 0
    import os

    assert f"pid {os.getpid()}" in p.stderr and "already" in p.stderr


def test_gpu_samples_are_attributed_to_the_run(tmp_path: Path, db_path: Path) -> None:
    from labbook.capture.gpu import GpuProcess, GpuReading, ReplayBackend

    root = tmp_path / "runs"
    root.mkdir()
    backend = ReplayBackend()
    d, _ = start_daemon(db_path, root, gpu=True, gpu_backend=backend)
    try:
        run = root / "g"
        w = writer("jsonl", run, 100, 50)
        wait_for(lambda: (r := record_of(db_path, run)) and r["pid"] == w.pid)
        gpu = GpuReading(0, "GPU-abc", "Fake H200", 87.0, 1000.0, 143000.0, 400.0, 60.0)
        backend.push([gpu], [GpuProcess(w.pid, 0, 2048.0)])
        assert w.wait(timeout=DEADLINE) == 0
        rec = wait_for(lambda: (r := record_of(db_path, run)) and r["ended_at"] and r)
    finally:
        d.stop()
    assert rec["gpu"]["peak_memory_mib"] == 2048.0
    assert rec["gpu"]["mean_util_pct"] == 87.0
    assert rec["gpu"]["names"] == ["Fake H200"]


def test_catch_up_then_once_is_idempotent(tmp_path: Path, db_path: Path) -> None:
    root = tmp_path / "runs"
    run = root / "a"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("lr: 1\n")
    (run / "metrics.jsonl").write_text("".join(f'{{"step": {i}, "loss": 1}}\n' for i in range(5)))
    for _ in range(3):
        p = subprocess.run(
            [sys.executable, "-m", "labbook", "--db", str(db_path), "watch", "--once", str(root)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert p.returncode == 0, p.stderr
    with Store.open(db_path) as s:
        assert s.count() == 1
    rec = record_of(db_path, run)
    assert rec is not None and rec["metrics"]["loss"]["count"] == 5


def test_short_run_with_an_end_marker_ends_without_waiting_for_the_timeout(
    repo: Path, db_path: Path
) -> None:
    """A run over before its process was found: its files (metrics.json) say it ended."""
    from tests.conftest import REPO

    root = repo / "runs"
    root.mkdir()
    d, out = start_daemon(db_path, root, inactivity=600.0)
    try:
        script = REPO / "examples" / "train.py"
        for name, lr in (("ok", "0.05"), ("too-high", "5")):
            subprocess.run(
                [sys.executable, str(script), "--lr", lr, "--seed", "3", "--out", str(root / name)],
                check=True,
                capture_output=True,
            )
        ok = wait_for(lambda: (r := record_of(db_path, root / "ok")) and r["ended_at"] and r, 30)
        bad = wait_for(
            lambda: (r := record_of(db_path, root / "too-high")) and r["ended_at"] and r, 30
        )
    finally:
        d.stop()
    assert ok["status"] == "finished" and ok["seed"]["value"] == 3
    assert bad["status"] == "diverged" and bad["failure"]["kind"] == "nan"
    log = out.getvalue()
    assert log.index("started") < log.index("diverged")
