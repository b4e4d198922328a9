"""Unit tests of the daemon's pure parts: debounce (fake clock), handler dispatch, fs, lock,
tailing, lifecycle verdicts. No sleeps, no threads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from watchdog.events import (
    DirModifiedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileOpenedEvent,
)

from labbook.errors import DaemonRunning, DatabaseOnNetworkFS, LabbookError
from labbook.model import Failure, RunFacts
from labbook.sources.watch import fs, lifecycle
from labbook.sources.watch.config import PathFilter, load_config
from labbook.sources.watch.debounce import Debouncer
from labbook.sources.watch.handler import EventEnqueuer, PathEvent
from labbook.sources.watch.lock import DaemonLock, holder_pid
from labbook.sources.watch.tail import read_appended

# -- debounce ------------------------------------------------------------------------


def test_debounce_coalesces_a_burst_until_quiet() -> None:
    d = Debouncer(quiet=0.25, max_wait=1.0, first_quiet=0.02)
    for t in (0.0, 0.1, 0.2):
        d.note("run", t)
    assert d.due(0.3) == []
    assert d.next_due() == pytest.approx(0.45)
    assert d.due(0.45) == ["run"]
    assert d.due(10.0) == [] and len(d) == 0


def test_debounce_max_wait_bounds_a_writer_that_never_pauses() -> None:
    d = Debouncer(quiet=0.25, max_wait=1.0)
    fired = []
    for ms in range(0, 3000, 100):  # an event every 100 ms, for 3 s
        t = ms / 1000
        d.note("run", t)
        fired += [t for _ in d.due(t)]
    assert fired == [1.0, 2.1]


def test_debounce_first_sight_is_fast_and_order_is_oldest_first() -> None:
    d = Debouncer(quiet=0.25, max_wait=1.0, first_quiet=0.02)
    d.note("old", 0.0)
    d.note(("locate", "/new"), 0.01, first_sight=True)
    assert d.due(0.03) == [("locate", "/new")]
    d.note("b", 1.0)
    d.note("a", 1.1)
    assert d.drain() == ["old", "b", "a"]


# -- handler -------------------------------------------------------------------------


def _handler(globs: tuple[str, ...] = ()) -> tuple[EventEnqueuer, list[PathEvent]]:
    got: list[PathEvent] = []
    return EventEnqueuer(
        got.append, PathFilter([*list(globs), "*.ckpt", "*.tmp"]), ["/x/lab.db"]
    ), got


def test_handler_enqueues_file_events() -> None:
    h, got = _handler()
    h.dispatch(FileCreatedEvent("/r/run/events.out.tfevents.1"))
    h.dispatch(FileModifiedEvent("/r/run/metrics.jsonl"))
    h.dispatch(FileClosedEvent("/r/run/train.log"))
    h.dispatch(FileDeletedEvent("/r/run/old.txt"))
    assert got == [
        PathEvent("created", "/r/run/events.out.tfevents.1"),
        PathEvent("modified", "/r/run/metrics.jsonl"),
        PathEvent("modified", "/r/run/train.log"),
        PathEvent("deleted", "/r/run/old.txt"),
    ]


def test_handler_filters_ignored_and_noise() -> None:
    h, got = _handler(("*.npy",))
    h.dispatch(FileModifiedEvent("/r/run/model.ckpt"))
    h.dispatch(FileModifiedEvent("/r/run/x.npy"))
    h.dispatch(FileCreatedEvent("/r/.git/index"))
    h.dispatch(FileCreatedEvent("/r/venv/lib/site-packages/a.py"))
    h.dispatch(FileModifiedEvent("/x/lab.db"))
    h.dispatch(DirModifiedEvent("/r/run"))
    h.dispatch(FileOpenedEvent("/r/run/a.txt"))
    assert got == []


def test_handler_splits_moves() -> None:
    h, got = _handler()
    h.dispatch(FileMovedEvent("/r/run/metrics.tmp", "/r/run/metrics.json"))
    assert got == [PathEvent("created", "/r/run/metrics.json")]  # *.tmp is ignored
    got.clear()
    h.dispatch(FileMovedEvent("/r/a/x.log", "/r/b/x.log"))
    assert got == [PathEvent("deleted", "/r/a/x.log"), PathEvent("created", "/r/b/x.log")]


# -- config --------------------------------------------------------------------------


def test_config_roots_from_xdg_config(tmp_path: Path) -> None:
    cfg = Path(os.environ["XDG_CONFIG_HOME"]) / "labbook"
    cfg.mkdir(parents=True)
    (cfg / "config.toml").write_text(
        '[watch]\nroots = ["~/exp", "/abs/runs"]\nignore = ["*.npy"]\ninactivity_timeout = 30\n'
    )
    c = load_config([], ["*.bak"], cwd=str(tmp_path))
    assert c.roots == [Path(os.path.expanduser("~/exp")), Path("/abs/runs")]
    assert "*.npy" in c.ignore and "*.bak" in c.ignore and "*.ckpt" in c.ignore
    assert c.inactivity_timeout == 30
    assert load_config(["sub"], cwd=str(tmp_path)).roots == [tmp_path / "sub"]


def test_config_defaults_to_cwd(tmp_path: Path) -> None:
    assert load_config([], cwd=str(tmp_path)).roots == [tmp_path]


# -- fs: network file systems, inotify ----------------------------------------------------


def _mounts(tmp_path: Path, lines: list[str]) -> str:
    p = tmp_path / "mounts"
    p.write_text("\n".join(lines) + "\n")
    return str(p)


@pytest.mark.parametrize(
    "fstype", ["nfs", "nfs4", "lustre", "gpfs", "cifs", "smb3", "fuse.sshfs", "beegfs", "ceph"]
)
def test_network_fs_detected_from_mounts(tmp_path: Path, fstype: str) -> None:
    root = tmp_path / "shared" / "runs"
    root.mkdir(parents=True)
    mounts = _mounts(
        tmp_path,
        [
            "/dev/sda1 / ext4 rw 0 0",
            f"server:/export {tmp_path / 'shared'} {fstype} rw 0 0",
        ],
    )
    assert fs.network_fs_type(root, mounts) == fstype
    assert fs.network_fs_type(tmp_path, mounts) is None


def test_mount_points_with_spaces_are_unescaped(tmp_path: Path) -> None:
    root = tmp_path / "my runs"
    root.mkdir()
    escaped = str(root).replace(" ", "\\040")
    mounts = _mounts(tmp_path, ["/dev/sda1 / ext4 rw 0 0", f"srv:/x {escaped} nfs4 rw 0 0"])
    assert fs.network_fs_type(root / "a", mounts) == "nfs4"


def test_database_on_network_fs_is_refused_with_a_local_path(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    mounts = _mounts(tmp_path, ["/dev/sda1 / ext4 rw 0 0", f"srv:/home {shared} nfs4 rw 0 0"])
    with pytest.raises(DatabaseOnNetworkFS) as info:
        fs.check_db_local(shared / "labbook.db", mounts)
    assert isinstance(info.value, LabbookError)
    assert "nfs4" in info.value.message
    assert info.value.hint and "--db " in info.value.hint and str(shared) not in info.value.hint
    fs.check_db_local(tmp_path / "local.db", mounts)  # local: fine


def test_inotify_shortfall_with_a_tiny_limit(tmp_path: Path) -> None:
    for i in range(5):
        (tmp_path / f"run{i}").mkdir()
    msg = fs.inotify_shortfall(tmp_path, max_watches=3, in_use=0)
    assert msg is not None and "inotify" in msg and "max_user_watches" in msg
    assert fs.inotify_shortfall(tmp_path, max_watches=100, in_use=0) is None
    assert fs.inotify_shortfall(tmp_path, max_watches=100, in_use=99) is not None


# -- lock -------------------------------------------------------------------------------


def test_lock_is_exclusive_and_names_the_holder(tmp_path: Path) -> None:
    db = tmp_path / "lab.db"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys,time; from labbook.sources.watch.lock import DaemonLock; "
            f"l=DaemonLock({str(db)!r}); l.acquire(); print('ok', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ok"
        assert holder_pid(db) == holder.pid
        with pytest.raises(DaemonRunning) as info:
            DaemonLock(db).acquire()
        assert f"pid {holder.pid}" in info.value.message
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)
    with DaemonLock(db):  # released by the holder's exit
        pass


# -- tailing -------------------------------------------------------------------------------


def test_jsonl_tail_reads_only_complete_appended_lines(tmp_path: Path) -> None:
    f = tmp_path / "metrics.jsonl"
    f.write_text('{"step": 0, "loss": 1.0}\n{"loss": 0.9}\n{"step": 2, "lo')
    r1 = read_appended(tmp_path, str(f), None)
    assert [(p.step, p.value) for p in r1.metrics["loss"]] == [(0, 1.0), (1, 0.9)]
    assert r1.truncated
    with open(f, "a") as fh:
        fh.write('ss": 0.8}\n')
    pos = {"offset": r1.offset, "fingerprint": r1.fingerprint, "state": r1.state}
    r2 = read_appended(tmp_path, str(f), pos)
    assert [(p.step, p.value) for p in r2.metrics["loss"]] == [(2, 0.8)]
    assert not r2.reset
    f.write_text('{"loss": 5.0}\n')  # rewritten (shorter)
    r3 = read_appended(
        tmp_path, str(f), {"offset": r2.offset, "fingerprint": r2.fingerprint, "state": r2.state}
    )
    assert r3.reset and [(p.step, p.value) for p in r3.metrics["loss"]] == [(0, 5.0)]


def test_csv_tail_keeps_the_header_in_its_state(tmp_path: Path) -> None:
    f = tmp_path / "metrics.csv"
    f.write_text("step,train_loss,val_acc\n0,1.5,\n")
    r1 = read_appended(tmp_path, str(f), None)
    assert [(p.step, p.value) for p in r1.metrics["train_loss"]] == [(0, 1.5)]
    with open(f, "a") as fh:
        fh.write("1,nan,0.7\n")
    r2 = read_appended(
        tmp_path, str(f), {"offset": r1.offset, "fingerprint": r1.fingerprint, "state": r1.state}
    )
    assert r2.metrics["val_acc"][0].value == 0.7
    assert str(r2.metrics["train_loss"][0].value) == "nan"


# -- lifecycle -------------------------------------------------------------------------------


def test_end_verdicts() -> None:
    def facts(**kw: object) -> RunFacts:
        return RunFacts(path="/r", framework="generic", source_key="/r", **kw)  # type: ignore[arg-type]

    tb = Failure("exception", "ValueError: x")
    assert lifecycle.end_verdict(facts(failure=tb), None, reason="exited").status == "failed"
    nan = lifecycle.divergence({"train/loss": 12, "acc": 3, "val_loss": 20})
    assert nan is not None and nan.step == 12
    assert lifecycle.end_verdict(facts(), nan, reason="exited").status == "diverged"
    assert lifecycle.end_verdict(facts(), None, reason="exited", exit_code=0).status == "finished"
    assert lifecycle.end_verdict(facts(), None, reason="exited", exit_code=-9).status == "killed"
    assert lifecycle.end_verdict(facts(), None, reason="exited", exit_code=2).status == "failed"
    assert (
        lifecycle.end_verdict(facts(end_marker=True), None, reason="inactive").status == "finished"
    )
    assert lifecycle.end_verdict(facts(truncated=True), None, reason="exited").status == "killed"
    assert lifecycle.end_verdict(facts(), None, reason="exited").status == "finished"
    assert lifecycle.end_verdict(facts(), None, reason="inactive").status == "unknown"
    assert lifecycle.running_verdict(facts(), nan).status == "diverged"
    assert lifecycle.running_verdict(facts(), None).status == "running"
