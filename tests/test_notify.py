"""labbook watch --notify: a real `labbook watch` process, real writer processes, a real
HTTP server on 127.0.0.1 and real hook commands. Waits poll with deadlines."""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from labbook.sources.watch.notify import Notifier, NotifyConfig, build_event, load_notify
from labbook.store import Store
from tests.conftest import run_cli

REPO = Path(__file__).resolve().parents[1]
WRITER = str(Path(__file__).with_name("watch_writer.py"))
DEADLINE = 90.0


def wait_for(cond: Callable[[], Any], timeout: float = DEADLINE, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class Hooks:
    """An HTTP server on 127.0.0.1 that keeps what is POSTed to it."""

    def __init__(self, status: int = 200) -> None:
        received: list[dict[str, Any]] = []
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append(
                    {
                        "path": self.path,
                        "type": self.headers["Content-Type"],
                        "json": json.loads(body),
                    }
                )
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook/s3cr3t-token"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hooks() -> Iterator[Hooks]:
    h = Hooks()
    yield h
    h.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Watch:
    """`labbook watch --log --notify …` as a child process."""

    def __init__(self, db: Path, root: Path, *args: str) -> None:
        self.err_path = root.parent / f"watch-{time.monotonic_ns()}.err"
        self.err = open(self.err_path, "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "labbook", "--db", str(db), "watch", "--log", *args, str(root)],
            stdout=subprocess.PIPE,
            stderr=self.err,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert "watching" in line, line

    def stderr(self) -> str:
        return self.err_path.read_text()

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=60)
        self.err.close()
        assert self.proc.returncode == 0, self.stderr()
        return out


def writer(mode: str, run_dir: Path, n: int, rate: float) -> subprocess.Popen[str]:
    p = subprocess.Popen(
        [sys.executable, WRITER, mode, str(run_dir), str(n), str(rate)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert p.stdout is not None
    assert p.stdout.readline().strip() == "ready"
    return p


def ended(db: Path, run_dir: Path) -> dict[str, Any] | None:
    if not db.exists():
        return None
    with Store.open(db) as s:
        rid = s.id_for_source(str(run_dir))
        rec = s.record(rid) if rid else None
    return rec if rec and rec["ended_at"] else None


@pytest.fixture
def config_home() -> Path:
    """The isolated home's config.toml: a short inactivity timeout for the daemon."""
    cfg = Path(os.environ["XDG_CONFIG_HOME"]) / "labbook"
    cfg.mkdir(parents=True, exist_ok=True)
    (cfg / "config.toml").write_text("[watch]\ninactivity_timeout = 5\n")
    return cfg


def test_http_hook_fires_once_per_event(
    tmp_path: Path, db_path: Path, hooks: Hooks, config_home: Path
) -> None:
    root = tmp_path / "runs"
    root.mkdir()
    w = Watch(db_path, root, "--notify", hooks.url, "--notify-on", "finished,failed,diverged")
    try:
        # long enough for the daemon to find the writers' processes (their exit codes)
        a = writer("nan", root / "nan", 40, 20)
        b = writer("jsonl", root / "ok", 80, 20)
        assert a.wait(timeout=DEADLINE) == 0 and b.wait(timeout=DEADLINE) == 0
        ra = wait_for(lambda: ended(db_path, root / "nan"), what="the NaN run to end")
        rb = wait_for(lambda: ended(db_path, root / "ok"), what="the good run to end")
        wait_for(lambda: len(hooks.received) >= 2, what="two notifications")
        # the diverged run ends diverged a second time (at its end): still one event
        time.sleep(1.5)
    finally:
        out = w.stop()
    assert ra["status"] == "diverged" and rb["status"] == "finished", out
    events = sorted((h["json"] for h in hooks.received), key=lambda e: e["event"])
    assert [e["event"] for e in events] == ["diverged", "finished"], hooks.received
    assert all(
        h["type"] == "application/json" and h["path"] == "/hook/s3cr3t-token"
        for h in hooks.received
    )
    div, fin = events
    assert div["id"] == ra["id"] and div["status"] == "diverged" and div["step"] == 20
    assert div["text"] == f"{ra['id']} diverged at step 20 (loss=nan)"
    assert div["path"] == str(root / "nan") and div["host"] == ra["host"]
    assert div["failure"]["kind"] == "nan"
    assert fin["id"] == rb["id"] and fin["text"].startswith(f"{rb['id']} finished")
    assert math.isclose(fin["metrics"]["loss"], 1 / 80)
    assert "notify failed" not in w.stderr()


def test_command_hook_gets_the_event_in_env_and_stdin(
    tmp_path: Path, db_path: Path, config_home: Path
) -> None:
    root = tmp_path / "runs"
    root.mkdir()
    log = tmp_path / "events.jsonl"
    script = tmp_path / "hook.py"
    script.write_text(
        "import json, os, sys\n"
        "env = {k: v for k, v in os.environ.items() if k.startswith('LABBOOK_')}\n"
        f"with open({str(log)!r}, 'a') as f:\n"
        "    f.write(json.dumps({'env': env, 'stdin': json.load(sys.stdin)}) + '\\n')\n"
    )
    w = Watch(db_path, root, "--notify", f"{sys.executable} {script}")
    try:
        p = writer("fail", root / "boom", 10, 50)
        assert p.wait(timeout=DEADLINE) == 1
        rec = wait_for(lambda: ended(db_path, root / "boom"), what="the failed run to end")
        wait_for(log.exists, what="the hook to run")
        time.sleep(1.0)
    finally:
        w.stop()
    lines = log.read_text().splitlines()
    assert len(lines) == 1, lines
    got = json.loads(lines[0])
    env, event = got["env"], got["stdin"]
    assert env["LABBOOK_EVENT"] == "failed" and env["LABBOOK_STATUS"] == "failed"
    assert env["LABBOOK_RUN_ID"] == rec["id"] == event["id"]
    assert env["LABBOOK_PATH"] == str(root / "boom")
    assert "bad batch" in env["LABBOOK_MESSAGE"] and env["LABBOOK_TEXT"] == event["text"]
    assert (
        event["text"].startswith(f"{rec['id']} failed") and "ValueError: bad batch" in event["text"]
    )
    assert event["failure"]["kind"] == "exception"


@pytest.mark.parametrize("hook", ["refused", "http-500", "exit-3", "timeout"])
def test_a_failing_hook_is_reported_and_watch_goes_on(
    tmp_path: Path, db_path: Path, config_home: Path, hook: str
) -> None:
    root = tmp_path / "runs"
    root.mkdir()
    server = None
    if hook == "refused":
        target, said = f"http://127.0.0.1:{free_port()}/x", "Connection refused"
    elif hook == "http-500":
        server = Hooks(status=500)
        target, said = server.url, "HTTP 500"
    elif hook == "exit-3":
        target, said = "echo nope >&2; exit 3", "exited 3: nope"
    else:
        (config_home / "config.toml").write_text(
            "[watch]\ninactivity_timeout = 5\n[notify]\ntimeout_s = 0.5\n"
        )
        target, said = "sleep 5", "timed out after 0.5 s"
    w = Watch(db_path, root, "--notify", target)
    try:
        first = writer("fail", root / "one", 5, 50)
        assert first.wait(timeout=DEADLINE) == 1
        wait_for(lambda: ended(db_path, root / "one"), what="the first run to end")
        wait_for(lambda: "notify failed" in w.stderr(), what="the failure to be reported")
        second = writer("nan", root / "two", 10, 50)  # watch goes on recording
        assert second.wait(timeout=DEADLINE) == 0
        rec = wait_for(lambda: ended(db_path, root / "two"), what="the second run to end")
        assert w.proc.poll() is None
    finally:
        w.stop()
        if server is not None:
            server.close()
    assert rec["status"] == "diverged"
    lines = [ln for ln in w.stderr().splitlines() if "notify failed" in ln]
    assert len(lines) == 2 and all(
        ln.startswith("labbook: warning: notify failed: ") for ln in lines
    )
    assert said in lines[0], lines
    assert "s3cr3t" not in w.stderr()  # the URL's path (a webhook token) is not printed


def _import_runs(tmp_path: Path, db: Path) -> dict[str, str]:
    root = tmp_path / "exp"
    for name, lr, nan in (("base", 0.1, False), ("hot", 5, True)):
        d = root / name
        d.mkdir(parents=True)
        (d / "config.json").write_text(json.dumps({"optimizer": {"lr": lr}, "seed": 3}))
        rows = [
            {"step": i, "loss": float("nan") if nan and i >= 212 else 1 / (i + 1)}
            for i in range(220)
        ]
        (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        os.utime(d / "metrics.jsonl", (1000 + lr, 1000 + lr))
    assert run_cli("import", str(root), db=db).returncode == 0
    runs = json.loads(run_cli("ls", "--json", db=db).stdout)
    return {r["name"].rsplit("/", 1)[-1]: r["id"] for r in runs}


def test_event_text_names_what_changed_and_the_lesson(tmp_path: Path, db_path: Path) -> None:
    ids = _import_runs(tmp_path, db_path)
    hot = ids["hot"]
    assert run_cli("note", hot, "--lesson", "warm up first", db=db_path).returncode == 0
    with Store.open(db_path) as s:
        event = build_event(s, hot, "diverged")
    assert (
        event["text"] == f'{hot} diverged at step 212 (loss=nan) · lr 5 · lesson: "warm up first"'
    )
    assert event["params"] == {"optimizer.lr": 5} and event["lesson"] == "warm up first"
    assert event["status"] == "diverged" and event["step"] == 212


def test_repeats_are_throttled_and_a_storm_is_summarised(tmp_path: Path, db_path: Path) -> None:
    ids = _import_runs(tmp_path, db_path)
    now = [0.0]
    sent: list[dict[str, Any]] = []
    with Store.open(db_path) as s:
        cfg = NotifyConfig(target="unused", on=frozenset({"failed"}), throttle_s=60, burst=2)
        n = Notifier(cfg, s, clock=lambda: now[0], send=lambda c, e: sent.append(dict(e)))
        try:
            for _ in range(3):
                n.event("failed", ids["base"])  # the same run and status: once
            n.event("finished", ids["base"])  # not asked for
            for i in range(5):
                now[0] = i
                n.event("failed", ids["hot"])
            now[0] = 61
            n.tick()  # nothing was held back: no summary
        finally:
            n.close()
    assert [e["event"] for e in sent] == ["failed", "failed"], sent
    assert {e["id"] for e in sent} == {ids["base"], ids["hot"]}


def test_a_storm_beyond_the_burst_is_one_summary(tmp_path: Path, db_path: Path) -> None:
    root = tmp_path / "many"
    for i in range(8):
        d = root / f"r{i}"
        d.mkdir(parents=True)
        (d / "config.json").write_text(json.dumps({"lr": i}))
        (d / "metrics.jsonl").write_text(json.dumps({"step": 0, "loss": 1.0}) + "\n")
    assert run_cli("import", str(root), db=db_path).returncode == 0
    runs = [r["id"] for r in json.loads(run_cli("ls", "--json", db=db_path).stdout)]
    now = [0.0]
    sent: list[dict[str, Any]] = []
    with Store.open(db_path) as s:
        cfg = NotifyConfig(target="unused", on=frozenset({"failed"}), throttle_s=60, burst=3)
        n = Notifier(cfg, s, clock=lambda: now[0], send=lambda c, e: sent.append(dict(e)))
        try:
            for i, rid in enumerate(runs):
                now[0] = i
                n.event("failed", rid)
            now[0] = 30
            n.tick()  # the window is not over: nothing yet
            assert wait_for(lambda: len(sent) == 3, what="the burst")
            now[0] = 61
            n.tick()
            wait_for(lambda: len(sent) == 4, what="the summary")
        finally:
            n.close()
    summary = sent[-1]
    assert summary["event"] == "summary" and summary["count"] == 5
    assert summary["text"].startswith("… and 5 more (5 failed): ")
    assert summary["ids"] == runs[3:]


def test_config_section_and_bad_values(tmp_path: Path) -> None:
    cfg = load_notify({"url": "https://example.org/h", "on": ["finished"], "throttle_s": 5})
    assert cfg.is_url and cfg.on == {"finished"} and cfg.throttle_s == 5
    assert load_notify({}).target is None and load_notify({}).on == {"failed", "diverged", "killed"}
    cli_wins = load_notify({"command": "x"}, "https://a/b", ["killed"])
    assert cli_wins.target == "https://a/b" and cli_wins.on == {"killed"}
    bad = load_notify({"command": 3, "on": "nope", "throttle_s": "soon"})
    assert bad.target is None and bad.on == frozenset() and bad.throttle_s == 60
