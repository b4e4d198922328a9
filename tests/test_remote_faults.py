"""Several nodes, one lab notebook, and the faults between them (issue #13 item 7).

Nodes are separate ``labbook`` processes with their own SQLite stores and (where the
machine lets us make a UTS namespace) their own host names, recording with the real
CLI (import, note, tag, run) and pushing with ``labbook remote push`` to one real
PostgreSQL (tests/pg.py). Faults: SIGKILL at the push's named points
(``LABBOOK_PUSH_FAULT``), ``pg_ctl stop -m immediate`` in the middle of a push, and a
partition through a TCP proxy (tests/tcpproxy.py: delay, reset, blackhole). Every case
ends with a clean push and a convergence check: the server's records equal the union
of the nodes' (tests/pg.py snapshots), with nothing duplicated (row counts).

The figures (per case: runs/notes/tags on the server against the union, duplicates,
catch-up times) are printed (``pytest -s``) and, with ``LABBOOK_FAULT_FIGURES=FILE``,
written there as JSON lines.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.pg import (
    PgServer,
    local_snapshot,
    server_counts,
    server_snapshot,
    union,
)
from tests.tcpproxy import TcpProxy

#: Never wait longer than this for anything (a hang fails the test, it does not stall CI).
DEADLINE = 60.0


# --- nodes ------------------------------------------------------------------------------


@functools.cache
def _uts_namespaces() -> bool:
    """Whether ``unshare --uts`` works here (root in a sandbox that allows it)."""
    if not shutil.which("unshare") or os.geteuid() != 0:
        return False
    r = subprocess.run(
        ["unshare", "--uts", "sh", "-c", "hostname labbook-probe && hostname"],
        capture_output=True,
        text=True,
        timeout=10,
    )
    return r.returncode == 0 and r.stdout.strip() == "labbook-probe"


#: Runs several labbook commands in one process, each as ``python -m labbook`` would.
MANY = textwrap.dedent(
    """
    import json, sys
    from labbook.cli import cli
    for args in json.loads(sys.argv[1]):
        try:
            cli.main(args=args, prog_name="labbook")
        except SystemExit as exc:
            if exc.code not in (0, None):
                sys.exit(f"labbook {' '.join(args)}: exit {exc.code}")
    """
)


class Node:
    """One machine of the lab: its own store, its host name, the shared home."""

    def __init__(self, base: Path, name: str, url: str) -> None:
        self.name = name
        self.dir = base / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.db = self.dir / "labbook.db"
        self.url = url
        self.runs = self.dir / "runs"
        self.made = 0

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            **os.environ,
            "LABBOOK_DB": str(self.db),
            "LABBOOK_REMOTE_URL": self.url,
            "HOSTNAME": self.name,
        }
        env.pop("LABBOOK_PUSH_FAULT", None)
        env.update(extra)
        return env

    def argv(self, *args: str) -> list[str]:
        if args[:1] == ("--x-many",):
            cmd = [sys.executable, "-c", MANY, args[1]]
        else:
            cmd = [sys.executable, "-m", "labbook", *args]
        if _uts_namespaces():
            # a host name of its own: sh sets it, then becomes labbook (same pid)
            return [
                "unshare",
                "--uts",
                "sh",
                "-c",
                f'hostname {self.name} && exec "$@"',
                "sh",
                *cmd,
            ]
        return cmd

    def popen(self, *args: str, fault: str | None = None, **extra: str) -> subprocess.Popen[str]:
        env = self.env(**extra)
        if fault:
            env["LABBOOK_PUSH_FAULT"] = fault
        return subprocess.Popen(
            self.argv(*args),
            env=env,
            cwd=self.dir,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def cli(
        self, *args: str, fault: str | None = None, ok: bool = True, timeout: float = DEADLINE
    ) -> subprocess.CompletedProcess[str]:
        p = self.popen(*args, fault=fault)
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
            raise AssertionError(f"{self.name}: labbook {' '.join(args)} hung: {err}") from None
        r = subprocess.CompletedProcess(p.args, p.returncode, out, err)
        if ok:
            assert r.returncode == 0, f"{self.name}: labbook {' '.join(args)}: {err}"
        return r

    def many(self, *commands: list[str | Path]) -> None:
        """Several ``labbook`` commands in one process of this node (the real CLI, its
        group and error rendering, as ``python -m labbook`` runs it; one interpreter
        start instead of one per command: this machine has two cores)."""
        r = self.cli("--x-many", json.dumps([list(map(str, c)) for c in commands]))
        assert r.returncode == 0, r.stderr

    def write_runs(self, n: int, *, status: str = "finished") -> list[Path]:
        """``n`` new small run dirs (config + curves) for ``labbook import``."""
        out = []
        for _ in range(n):
            i = self.made
            self.made += 1
            d = self.runs / f"{self.name}-r{i:03d}"
            d.mkdir(parents=True)
            losses = [round(1.0 / (k + 1 + i), 6) for k in range(12)]
            (d / "labbook.json").write_text(
                json.dumps(
                    {
                        "name": d.name,
                        "config": {"lr": 0.1 / (i + 1), "model": "vit", "seed": i},
                        "status": status,
                        "metrics": {
                            "train/loss": losses,
                            "val/acc": [0.5 + k / 40 for k in range(12)],
                        },
                    }
                )
            )
            out.append(d)
        return out

    def import_(self, n: int) -> list[Path]:
        """Write ``n`` new run dirs and ``labbook import`` them."""
        dirs = self.write_runs(n)
        self.many(["import", "--no-git", self.runs])
        return dirs

    def ids(self) -> list[str]:
        import sqlite3

        with sqlite3.connect(self.db) as c:
            return [r[0] for r in c.execute("SELECT id FROM runs ORDER BY name")]

    def push(
        self, *, fault: str | None = None, ok: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return self.cli("remote", "push", "--json", fault=fault, ok=ok)

    def snapshot(self) -> set[tuple[Any, ...]]:
        return local_snapshot(self.db)


def connect(url: str) -> Any:
    import psycopg

    return psycopg.connect(url, connect_timeout=5)


def init_server(url: str) -> None:
    from labbook.store.remote.schema import create_schema

    with connect(url) as c:
        c.execute("SET search_path = labbook, public")
        create_schema(c)


@pytest.fixture
def lab(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Path]:
    """A fresh lab notebook (schema made) and where the nodes live."""
    url: str = request.getfixturevalue("pg_url")
    init_server(url)
    return url, tmp_path / "nodes"


@pytest.fixture
def server(request: pytest.FixtureRequest) -> PgServer:
    """The cluster itself (to stop and start it, to put a proxy in front)."""
    return request.getfixturevalue("pg_server")


def write_config(**remote: Any) -> None:
    """``[remote]`` in the shared home's config.toml (the URL comes from each node's env)."""
    cfgdir = Path(os.environ["XDG_CONFIG_HOME"]) / "labbook"
    cfgdir.mkdir(parents=True, exist_ok=True)
    body = "".join(f"{k} = {json.dumps(v)}\n" for k, v in remote.items())
    (cfgdir / "config.toml").write_text("[remote]\n" + body)


def spool_dir() -> Path:
    return Path(os.environ["XDG_DATA_HOME"]) / "labbook" / "spool"


# --- convergence ----------------------------------------------------------------------

FIGURES: list[dict[str, Any]] = []


def figure(case: str, **values: Any) -> None:
    row = {"case": case, **values}
    FIGURES.append(row)
    print(f"\n[faults] {json.dumps(row)}")
    target = os.environ.get("LABBOOK_FAULT_FIGURES")
    if target:
        with open(target, "a") as f:
            f.write(json.dumps(row) + "\n")


def kinds(records: set[tuple[Any, ...]], kind: str) -> int:
    return sum(1 for r in records if r[0] == kind)


def converge(
    case: str,
    url: str,
    nodes: list[Node],
    *,
    push: bool = True,
    server_only: set[tuple[Any, ...]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A clean push from every node (``push=False``: the caller's last pushes were),
    then: server == union of the nodes (and ``server_only``: records written straight
    to the server, ``note --remote``), and no row twice (the server's row counts equal
    the union's record counts)."""
    for node in nodes if push else []:
        r = node.push()
        assert json.loads(r.stdout)["pending"] == 0, r.stdout
    local = union(*(n.snapshot() for n in nodes), server_only or set())
    with connect(url) as c:
        server = server_snapshot(c)
        counts = server_counts(c)
    missing, extra_rows = local - server, server - local
    assert not missing and not extra_rows, (sorted(missing)[:5], sorted(extra_rows)[:5])
    dup = {
        "runs": counts["runs"] - kinds(local, "run"),
        "notes": counts["notes"] - kinds(local, "note"),
        "tags": counts["tags"] - kinds(local, "tag"),
        "params": counts["params"] - kinds(local, "param"),
        "metrics": counts["metrics"] - kinds(local, "metric"),
    }
    assert all(v == 0 for v in dup.values()), dup
    out = {
        "runs": f"{counts['runs']}/{kinds(local, 'run')}",
        "notes": f"{counts['notes']}/{kinds(local, 'note')}",
        "tags": f"{counts['tags']}/{kinds(local, 'tag')}",
        "duplicates": sum(dup.values()),
        **extra,
    }
    figure(case, **out)
    return out


def server_state(url: str) -> tuple[set[tuple[Any, ...]], dict[str, int]]:
    with connect(url) as c:
        return server_snapshot(c), server_counts(c)


def one_line_error(r: subprocess.CompletedProcess[str]) -> str:
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert len(lines) == 1 and lines[0].startswith("labbook: error: "), r.stderr
    assert "Traceback" not in r.stderr
    return lines[0]


# --- the cases --------------------------------------------------------------------------

RUN_OK = "import sys; print('step 1 loss 0.5'); sys.exit(0)"


def launch(
    node: Node, *opts: str, code: str = RUN_OK, fault: str | None = None
) -> subprocess.Popen[str]:
    """``labbook run [opts] -- python -c CODE`` on ``node`` (no daemon: at its end it
    spools, then hands the push to a detached ``labbook remote push``)."""
    return node.popen(
        "run", "--no-git", "--no-check", *opts, "--", sys.executable, "-c", code, fault=fault
    )


def quiet_end(r: subprocess.CompletedProcess[str]) -> None:
    """The run's end said nothing about the lab's notebook (its own line only)."""
    said = [line for line in r.stderr.splitlines() if line.startswith("labbook: ")]
    assert len(said) == 1 and said[0].startswith("labbook: run "), r.stderr
    assert "Traceback" not in r.stderr


def push_log(node: Node) -> Path:
    return node.db.with_name(node.db.name + ".push.log")


def detached(node: Node) -> tuple[int, list[str]]:
    """The detached pushes ``labbook run`` started on ``node``, and the outcome line of
    each that ended (``pushed …`` or ``labbook: error: …``), from the store's push log."""
    try:
        lines = push_log(node).read_text().splitlines()
    except FileNotFoundError:
        return 0, []
    started = sum(1 for line in lines if " pushing in the background (pid " in line)
    ended = [line for line in lines if line and " pushing in the background (pid " not in line]
    return started, ended


def wait_detached(node: Node, n: int, timeout: float = DEADLINE) -> list[str]:
    """Until ``n`` detached pushes of ``node`` have ended; their outcome lines."""
    until(lambda: len(detached(node)[1]) >= n, f"{node.name}'s detached push", timeout)
    started, ended = detached(node)
    assert started == n and len(ended) == n, (started, ended)
    return ended


def origin_of(node: Node) -> str:
    import sqlite3

    with sqlite3.connect(node.db) as c:
        return str(c.execute("SELECT value FROM meta WHERE key = 'origin'").fetchone()[0])


def own_spool(node: Node) -> list[Path]:
    """The spool files of ``node``'s origin."""
    return sorted(spool_dir().glob(f"{origin_of(node)}-*.lbspool"))


def wait(p: subprocess.Popen[str], timeout: float = DEADLINE) -> subprocess.CompletedProcess[str]:
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        raise AssertionError(f"{p.args!r} hung: {err}") from None
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


def test_nodes_record_with_the_cli_and_converge(lab: tuple[str, Path]) -> None:
    url, base = lab
    nodes = [Node(base, f"gpu{i:02d}", url) for i in range(1, 4)]
    for node in nodes:  # each node records on its own: import, notes, tags
        d = node.write_runs(4)
        node.many(
            ["import", "--no-git", node.runs],
            ["note", d[0], f"lr too high on {node.name}"],
            ["note", "--lesson", d[1], "warm up first"],
            ["tag", d[2], "baseline", "sweep-a"],
        )
    # a launched run on every node at once, each pushing at its end
    procs = [launch(n, "--tag", "launched", "--note", f"on {n.name}") for n in nodes]
    for r in [wait(p) for p in procs]:
        assert r.returncode == 0, r.stderr
        quiet_end(r)
    # each run's detached push lands everything its node recorded, its spool file gone
    for n in nodes:
        (line,) = wait_detached(n, 1)
        assert line.startswith("pushed "), line  # (from the spool: its own file, or others')
        assert not own_spool(n)
    assert count_server(url) == 15
    # and every node pushes at once: the clean push of the check
    procs = [n.popen("remote", "push", "--json") for n in nodes]
    for r in [wait(p) for p in procs]:
        assert r.returncode == 0 and json.loads(r.stdout)["pending"] == 0, r.stderr
    got = converge("three nodes, CLI", url, nodes, push=False)
    assert (got["runs"], got["notes"], got["tags"]) == ("15/15", "9/9", "9/9")
    with connect(url) as c:
        hosts = {h for (h,) in c.execute("SELECT DISTINCT host FROM labbook.runs")}
        origins = c.execute("SELECT count(*) FROM labbook.origins").fetchone()[0]
    assert origins == 3
    if _uts_namespaces():
        assert hosts == {"gpu01", "gpu02", "gpu03"}


def test_sigkill_at_each_point_then_repush_is_identical(lab: tuple[str, Path]) -> None:
    url, base = lab
    a, b = Node(base, "gpu01", url), Node(base, "gpu02", url)
    d = a.write_runs(3)
    a.many(["import", "--no-git", a.runs], ["note", d[0], "first note"])
    b.import_(2)
    a.push()
    b.push()
    for point in ("before-commit", "after-commit", "after-clear"):
        # a changes: a new run, a second note on an old run, a note on the new run, a tag
        runs_before = kinds(server_state(url)[0], "run")
        new = a.write_runs(1)
        a.many(
            ["import", "--no-git", a.runs],
            ["note", d[0], f"note before {point}"],
            ["note", new[0], "a note on a new run"],
            ["tag", d[1], f"tag-{point}"],
        )
        r = a.push(fault=point, ok=False)
        assert r.returncode == -signal.SIGKILL, (r.returncode, r.stderr)
        before, counts_before = server_state(url)
        if point == "before-commit":
            assert kinds(before, "run") == runs_before  # nothing of the killed push is there
        else:
            assert kinds(before, "run") == runs_before + 1
        # the re-push (the clean push): the same server state where it had committed
        a.push()
        after, counts_after = server_state(url)
        if point != "before-commit":
            assert (after, counts_after) == (before, counts_before)
        got = converge(f"SIGKILL {point}, re-push", url, [a, b], push=False)
        assert got["duplicates"] == 0
    a.push()  # and once more: nothing changes
    assert server_state(url) == (after, counts_after)


def wait_for_open_push(url: str) -> None:
    """Until a labbook push holds a transaction open on the server (before its commit)."""
    with connect(url) as c:
        c.autocommit = True
        end = time.monotonic() + DEADLINE
        while time.monotonic() < end:
            (n,) = c.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'labbook'"
                " AND state = 'idle in transaction'"
            ).fetchone()
            if n:
                return
            time.sleep(0.05)
    raise AssertionError("the push never reached its commit")


def test_server_stopped_mid_push_local_work_goes_on_then_catches_up(
    lab: tuple[str, Path], server: PgServer
) -> None:
    url, base = lab
    a, b = Node(base, "gpu01", url), Node(base, "gpu02", url)
    a.import_(3)
    b.import_(3)
    b.push()
    a.import_(30)  # 33 runs not pushed on a
    pusher = a.popen("remote", "push", fault="sleep-before-commit:20")
    try:
        wait_for_open_push(url)
        server.stop("immediate")
        down_at = time.monotonic()
        # local work goes on while the server is down
        t0 = time.monotonic()
        d = b.write_runs(2)
        b.many(
            ["import", "--no-git", b.runs],
            ["note", d[0], "written while the server was down"],
            ["tag", d[1], "outage"],
        )
        local_s = time.monotonic() - t0
        t0 = time.monotonic()
        r = wait(launch(b, code="import sys; sys.exit(3)"))
        run_s = time.monotonic() - t0
        assert r.returncode == 3, r.stderr  # the command's own exit code
        quiet_end(r)
        assert len(own_spool(b)) == 1  # spooled before the run's exit
        (line,) = wait_detached(b, 1)  # its detached push cannot reach the server
        assert line.startswith("labbook: error: cannot reach the lab's notebook"), line
        assert len(own_spool(b)) == 1  # and leaves the spool file
        assert "cannot reach the lab's notebook" in one_line_error(b.push(ok=False))
        # the push whose server died: it fails, one line, when its sleep ends; a node
        # that dies instead is the SIGKILL case: here it is let go
        pusher.send_signal(signal.SIGKILL)
        wait(pusher)
    finally:
        server.start()
    outage_s = time.monotonic() - down_at
    # catch-up after restart: the first push of each node is the clean push
    t0 = time.monotonic()
    ra = json.loads(a.push().stdout)
    catch_a = time.monotonic() - t0
    t0 = time.monotonic()
    rb = json.loads(b.push().stdout)
    catch_b = time.monotonic() - t0
    assert ra["pushed"] == 33 and ra["pending"] == 0
    assert ra["spooled"] == 3  # b's spool (its 3 dirty runs), ingested by a's push
    assert rb["pushed"] == 3 and rb["spooled"] == 0
    assert not list(spool_dir().glob("*.lbspool"))
    converge(
        "pg_ctl stop -m immediate mid-push",
        url,
        [a, b],
        push=False,
        outage_s=round(outage_s, 2),
        local_import_note_tag_during_outage_s=round(local_s, 2),
        labbook_run_during_outage_s=round(run_s, 2),
        catch_up_process_s={
            "a: 33 runs + b's spool": round(catch_a, 2),
            "b: 3 runs": round(catch_b, 2),
        },
        catch_up_round_s={"a": ra["seconds"], "b": rb["seconds"]},
    )


def test_partition_through_a_proxy(lab: tuple[str, Path], server: PgServer) -> None:
    url, base = lab
    write_config(connect_timeout=2)  # libpq's least: it reads 1 as 2
    db = url.rsplit("/", 1)[1]
    with TcpProxy(server.host, server.port) as proxy:
        via = f"postgresql://postgres@127.0.0.1:{proxy.port}/{db}"
        a, b = Node(base, "gpu01", via), Node(base, "gpu02", url)
        a.import_(4)
        b.import_(2)
        t0 = time.monotonic()
        a.push()
        times: dict[str, Any] = {"pass push_s": round(time.monotonic() - t0, 2)}

        # delay: still succeeds, slower
        a.import_(2)
        proxy.set_mode("delay", 30)
        t0 = time.monotonic()
        assert json.loads(a.push().stdout)["pushed"] == 2
        times["delay 30ms push_s"] = round(time.monotonic() - t0, 2)

        # reset: fails at once (well under the connect timeout), in one line
        proxy.set_mode("reset")
        a.import_(1)
        t0 = time.monotonic()
        line = one_line_error(a.push(ok=False))
        times["reset push_s"] = round(time.monotonic() - t0, 2)
        assert "cannot reach the lab's notebook" in line

        # blackhole: the push gives up within the connect timeout and never hangs; a
        # `labbook run` exits with its command's code at once, its batch spooled, its
        # push (detached) giving up within the connect timeout
        proxy.set_mode("blackhole")
        t0 = time.monotonic()
        line = one_line_error(a.push(ok=False))
        times["blackhole push_s"] = round(time.monotonic() - t0, 2)
        assert "cannot reach the lab's notebook" in line
        assert times["blackhole push_s"] < 2 + 10  # connect_timeout = 2, plus a loaded start
        t0 = time.monotonic()
        r = wait(launch(a, code="import sys; sys.exit(7)"))
        times["blackhole labbook run_s"] = round(time.monotonic() - t0, 2)
        assert r.returncode == 7, r.stderr
        quiet_end(r)
        assert len(own_spool(a)) == 1
        (line,) = wait_detached(a, 1)
        assert line.startswith("labbook: error: cannot reach the lab's notebook"), line
        b.many(["note", b.runs / "gpu02-r000", "b works on during the partition"])
        rb = json.loads(b.push().stdout)  # b reaches the server: it ingests a's spool
        assert rb["spooled"] == 2

        # heal: pass again, and everything converges
        proxy.set_mode("pass")
        got = converge("partition: delay, reset, blackhole, heal", url, [a, b], **times)
    assert got["runs"] == "10/10"


def test_labbook_run_does_not_wait_for_a_blackholed_notebook(
    lab: tuple[str, Path], server: PgServer
) -> None:
    """The server is blackholed for the whole run: ``labbook run`` exits with its
    command's code while its push is still stuck (nothing on the server, the batch in
    the spool, the detached push not ended); only after the partition heals does that
    push land. Events in order, no timing threshold: had the run waited for its push
    (or kept its pipes open in it), ``wait`` would not return before the heal."""
    url, base = lab
    # a connect timeout far beyond anything the run may take: the detached push is
    # still connecting when the partition heals, then goes on through
    write_config(connect_timeout=DEADLINE, statement_timeout=DEADLINE)
    db = url.rsplit("/", 1)[1]
    with TcpProxy(server.host, server.port, mode="blackhole") as proxy:
        node = Node(base, "gpu05", f"postgresql://postgres@127.0.0.1:{proxy.port}/{db}")
        t0 = time.monotonic()
        r = wait(launch(node, "--note", "during the partition", code="import sys; sys.exit(4)"))
        run_s = time.monotonic() - t0
        assert r.returncode == 4, r.stderr
        quiet_end(r)
        # the run has exited; the partition is still on
        assert proxy.mode == "blackhole"
        assert len(own_spool(node)) == 1
        until(lambda: proxy.open_connections > 0, "the detached push to connect")
        started, ended = detached(node)
        assert started == 1 and ended == [], ended  # its push is stuck, not ended
        assert count_server(url) == 0
        proxy.set_mode("pass")  # heal
        (line,) = wait_detached(node, 1)
        # its own spool file carried the run; the round cleared its marks: no re-send
        assert line.startswith("pushed 0 runs, 1 from the spool"), line
        assert count_server(url) == 1 and not own_spool(node)
        got = converge(
            "labbook run while blackholed: exit first, push after the heal",
            url,
            [node],
            labbook_run_s=round(run_s, 2),
            connect_timeout_s=DEADLINE,
        )
    assert got["runs"] == "1/1" and got["notes"] == "1/1"


def test_a_spool_that_cannot_be_written_is_one_line(lab: tuple[str, Path]) -> None:
    """The home is not writable where the spool goes: the run ends with its command's
    code and one line; the run stays dirty in the node's store for its next push."""
    url, base = lab
    blocker = base / "not-a-dir"
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("a file where the spool directory should be\n")
    write_config(spool_dir=str(blocker / "spool"))
    node = Node(base, "gpu06", "postgresql://postgres@127.0.0.1:1/nowhere")
    r = wait(launch(node, code="import sys; sys.exit(5)"))
    assert r.returncode == 5, r.stderr
    said = [line for line in r.stderr.splitlines() if line.startswith("labbook: ")]
    assert len(said) == 2 and "Traceback" not in r.stderr, r.stderr
    assert said[0].startswith("labbook: cannot spool the run for the lab's notebook ("), said
    assert said[0].endswith("it stays in this node's store for the next push"), said
    (line,) = wait_detached(node, 1)  # the push was tried all the same
    assert "cannot reach the lab's notebook" in line, line
    node.url = url
    assert json.loads(node.push().stdout)["pushed"] == 1  # still dirty here: pushed now
    converge("spool not writable: the run waits in its store", url, [node], push=False)


def test_blackhole_in_the_middle_of_a_push_does_not_hang(
    lab: tuple[str, Path], server: PgServer
) -> None:
    """The partition starts after the push connected: its commit is never answered."""
    url, base = lab
    write_config(connect_timeout=2, statement_timeout=3)
    db = url.rsplit("/", 1)[1]
    with TcpProxy(server.host, server.port) as proxy:
        a = Node(base, "gpu01", f"postgresql://postgres@127.0.0.1:{proxy.port}/{db}")
        a.import_(3)
        p = a.popen("remote", "push", fault="sleep-before-commit:1")
        wait_for_open_push(url)  # connected, batch sent, sleeping before its commit
        proxy.set_mode("blackhole")
        t0 = time.monotonic()
        r = wait(p, timeout=30)
        gave_up = time.monotonic() - t0
        assert "stopped answering (no reply in 3 s)" in one_line_error(r)
        assert gave_up < 3 + 5  # the statement timeout from the batch's start, at most
        proxy.set_mode("pass")
        converge("blackhole mid-push", url, [a], gave_up_s=round(gave_up, 2))


def count_local(db: Path) -> int:
    import sqlite3

    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as c:
            return int(c.execute("SELECT count(*) FROM runs").fetchone()[0])
    except sqlite3.OperationalError:
        return 0  # not created yet


def count_server(url: str) -> int:
    with connect(url) as c:
        return int(c.execute("SELECT count(*) FROM labbook.runs").fetchone()[0])


def until(cond: Any, what: str, timeout: float = DEADLINE) -> float:
    """Poll ``cond`` until true; the seconds it took (a hang fails, after ``timeout``)."""
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)
    return time.monotonic() - t0


def test_watch_records_while_blackholed_and_its_push_thread_catches_up(
    lab: tuple[str, Path], server: PgServer
) -> None:
    url, base = lab
    write_config(push_interval=1, connect_timeout=1, statement_timeout=2)
    db = url.rsplit("/", 1)[1]
    with TcpProxy(server.host, server.port, mode="blackhole") as proxy:
        node = Node(base, "gpu01", f"postgresql://postgres@127.0.0.1:{proxy.port}/{db}")
        node.runs.mkdir(parents=True)
        watch = node.popen("watch", "--log", "--poll", "--interval", "0.2", str(node.runs))
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(watch.stderr or ()), daemon=True)
        reader.start()
        try:
            node.write_runs(3)
            # ingest goes on: the runs appear locally while every push is swallowed
            local_s = until(lambda: count_local(node.db) == 3, "the runs recorded locally")
            until(lambda: any("failing" in line for line in lines), "a push round to fail")
            assert watch.poll() is None and count_server(url) == 0
            # the partition heals: the push thread catches up after its backoff (5 s)
            proxy.set_mode("pass")
            healed = time.monotonic()
            until(lambda: count_server(url) == 3, "the push thread to catch up", timeout=30)
            catch_up_s = time.monotonic() - healed
            node.write_runs(1)  # and keeps pushing
            until(lambda: count_server(url) == 4, "the next round")
        finally:
            watch.send_signal(signal.SIGINT)
            watch.wait(timeout=DEADLINE)
            reader.join(timeout=DEADLINE)
        assert watch.returncode in (0, 130), lines
        err = "".join(lines)
        assert "push to the lab's notebook failing" in err and "recovered" in err, err
        assert "Traceback" not in err
        got = converge(
            "watch: blackholed, then healed",
            url,
            [node],
            recorded_locally_while_blackholed_s=round(local_s, 2),
            push_thread_catch_up_after_heal_s=round(catch_up_s, 2),
        )
    assert got["runs"] == "4/4"


def test_watch_stopping_while_unreachable_spools(lab: tuple[str, Path]) -> None:
    url, base = lab
    write_config(push_interval=1, connect_timeout=1)
    node = Node(base, "gpu08", "postgresql://postgres@127.0.0.1:1/nowhere")
    node.write_runs(2)
    watch = node.popen("watch", "--log", "--poll", "--interval", "0.2", str(node.runs))
    try:
        until(lambda: count_local(node.db) == 2, "the runs recorded locally")
    finally:
        watch.send_signal(signal.SIGINT)
        r = wait(watch)
    assert "spooled to" in r.stderr, r.stderr
    assert len(list(spool_dir().glob("*.lbspool"))) == 1
    other = Node(base, "gpu01", url)
    other.import_(1)
    assert json.loads(other.push().stdout)["spooled"] == 2
    node.url = url
    converge("watch stopped while unreachable: spool", url, [node, other])


SPOOL_RUN = textwrap.dedent(
    """
    import json, os
    os.makedirs("out", exist_ok=True)
    json.dump({"config": {"lr": 0.01, "seed": 3}, "metrics": {"loss": [1.0, 0.5, 0.25]}},
              open("out/labbook.json", "w"))
    print("loss 0.25")
    """
)


def test_spool_from_an_ephemeral_node_is_ingested_by_another_idempotently(
    lab: tuple[str, Path],
) -> None:
    url, base = lab
    # the ephemeral node cannot reach the server: nobody listens on its port
    eph = Node(base, "gpu07", "postgresql://postgres@127.0.0.1:1/nowhere")
    other = Node(base, "gpu01", url)
    other.import_(2)
    r = wait(launch(eph, "--tag", "ephemeral", "--note", "spot node", code=SPOOL_RUN))
    assert r.returncode == 0, r.stderr
    quiet_end(r)
    assert len(own_spool(eph)) == 1  # spooled before the run's exit
    d = eph.write_runs(2)  # more work before the job ends, then its last run
    eph.many(["import", "--no-git", eph.runs], ["note", d[0], "imported on the spot node"])
    r = wait(launch(eph))
    assert r.returncode == 0, r.stderr
    quiet_end(r)
    # both detached pushes failed (nobody listens), the spool stays
    for line in wait_detached(eph, 2):
        assert line.startswith("labbook: error: cannot reach the lab's notebook"), line
    # each exit spooled what no spool file held yet: the first run, then the imports
    # and the last run (an exit never rewrites the backlog already spooled)
    files = sorted(spool_dir().glob("*.lbspool"))
    assert len(files) == 2, files
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600
    assert stat.S_IMODE(spool_dir().stat().st_mode) == 0o700
    kept = {f: f.read_bytes() for f in files}

    res = json.loads(other.push().stdout)  # any later push on any node ingests them
    assert res["spooled"] == 4, res
    assert not any(f.exists() for f in files)
    state = server_state(url)
    assert kinds(state[0], "run") == 6
    assert state[0] >= eph.snapshot()  # all of the ephemeral node's records
    # ingesting the same files again changes nothing, even by two nodes at once
    for f, data in kept.items():
        f.write_bytes(data)
    third = Node(base, "gpu02", url)
    procs = [n.popen("remote", "push", "--json") for n in (other, third)]
    both = [wait(p) for p in procs]
    assert all(r.returncode == 0 for r in both), [r.stderr for r in both]
    assert sum(json.loads(r.stdout)["spooled"] for r in both) in (4, 8)  # one or both read it
    assert server_state(url) == state
    # the node comes back, notes a run and pushes itself; then the old file turns up
    # again (a slow NFS client): older than the server's rows, it changes nothing
    eph.url = url
    eph.many(["note", d[1], "after the job"])
    eph.push()
    newer = server_state(url)
    assert newer != state
    for f, data in kept.items():
        f.write_bytes(data)
    assert json.loads(other.push().stdout)["spooled"] == 0  # ingested: no run was newer
    assert server_state(url) == newer
    assert not list(spool_dir().glob("*.lbspool"))
    converge(
        "spool: ingested by another node, again (two at once), and late", url, [eph, other, third]
    )


# --- removal -----------------------------------------------------------------------------


def remote_ids(node: Node) -> set[str]:
    """The run ids ``ls --remote`` lists from ``node`` (the lab's notebook)."""
    r = node.cli("ls", "--remote", "--json", "-n", "0")
    return {run["id"] for run in json.loads(r.stdout)}


def remote_notes(url: str, run_id: str) -> list[tuple[str, str]]:
    """(origin, text) of the live notes on the server's run ``run_id``."""
    with connect(url) as c:
        rows = c.execute(
            "SELECT origin, text FROM labbook.notes WHERE run_id = %s AND deleted_at IS NULL"
            " ORDER BY origin, text",
            (run_id,),
        ).fetchall()
    return [(str(o), str(t)) for o, t in rows]


def test_rm_undo_purge_keep_other_nodes_notes(lab: tuple[str, Path]) -> None:
    """gpu01 removes a run that gpu02 noted and tagged in the lab's notebook: after
    both push, gpu02's note and tag are still on the server and the run is hidden
    from ``ls --remote``; ``rm --undo`` brings it back; ``rm --purge`` removes the
    run's own rows (its row emptied into a tombstone, its params, metrics, curves,
    gpu01's notes and tags) and nothing of gpu02's."""
    url, base = lab
    a, b = Node(base, "gpu01", url), Node(base, "gpu02", url)
    d = a.write_runs(2)
    a.many(["import", "--no-git", a.runs], ["note", d[0], "a's own note"], ["tag", d[0], "a-tag"])
    b.import_(1)
    a.push()
    b.push()
    rid = a.ids()[0]  # d[0]'s run (ids() goes by name)
    assert rid in remote_ids(b)
    b.many(["note", "--remote", rid, "b saw this diverge too"], ["tag", "--remote", rid, "b-tag"])
    ob, oa = origin_of(b), origin_of(a)
    with connect(url) as c:
        nid = c.execute(
            "SELECT id FROM labbook.notes WHERE origin = %s AND run_id = %s", (ob, rid)
        ).fetchone()[0]
    # what only the server holds: b's note and tag on a's run (keyed by a's local id)
    b_wrote = {("note", ob, nid, rid, "b saw this diverge too", False), ("tag", ob, rid, "b-tag")}
    both = [(oa, "a's own note"), (ob, "b saw this diverge too")]
    assert remote_notes(url, rid) == sorted(both)

    # rm: hidden everywhere, b's note and tag kept
    a.many(["rm", rid])
    a.push()
    b.push()
    assert rid not in remote_ids(b) and rid not in remote_ids(a)
    assert remote_notes(url, rid) == sorted(both)
    converge("rm on one node, noted by another", url, [a, b], server_only=b_wrote)

    # rm --undo: listed again, with both nodes' notes
    a.many(["rm", "--undo", rid])
    a.push()
    assert rid in remote_ids(b)
    assert remote_notes(url, rid) == sorted(both)
    converge("rm --undo", url, [a, b], server_only=b_wrote)

    # rm --purge: a's rows of the run go, b's stay (on the run's tombstone)
    a.many(["rm", "--purge", "--yes", rid])
    res = json.loads(a.push().stdout)
    assert res["deleted"] == 1, res
    b.push()
    assert rid not in remote_ids(b)
    assert remote_notes(url, rid) == [(ob, "b saw this diverge too")]
    with connect(url) as c:
        own = {
            t: c.execute(f"SELECT count(*) FROM labbook.{t} WHERE run_id = %s", (rid,)).fetchone()[
                0
            ]
            for t in ("params", "metrics", "series")
        }
        tags = c.execute(
            "SELECT origin, tag FROM labbook.tags WHERE run_id = %s", (rid,)
        ).fetchall()
        row = c.execute(
            "SELECT origin, source_key, name, path, deleted_at IS NOT NULL FROM labbook.runs"
            " WHERE id = %s",
            (rid,),
        ).fetchone()
    assert own == {"params": 0, "metrics": 0, "series": 0}, own
    assert tags == [(ob, "b-tag")]
    assert row == (oa, f"purged:{rid}", None, None, True)
    got = converge("rm --purge", url, [a, b], server_only=b_wrote)
    assert got["runs"] == "2/2"  # a's other run and b's; the tombstone is no run
    # the other run of a is untouched throughout
    assert set(a.ids()) <= remote_ids(b)


# --- secrets ----------------------------------------------------------------------------

HF = "hf_" + "abcdefghijklmnopqrstuvwxyzABCDEFGH"  # 34 letters
PASSWORD = "hunter2xyz"

SECRET_RUN = textwrap.dedent(
    f"""
    import json, os, sys
    os.makedirs("secret_run", exist_ok=True)
    json.dump({{"config": {{"lr": 0.1, "hf_token": "{HF}", "db_password": "{PASSWORD}"}},
               "metrics": {{"loss": [1.0, 0.5]}}}}, open("secret_run/labbook.json", "w"))
    print("using token", os.environ.get("HF_TOKEN"))
    """
)


def _all_server_text(url: str) -> Iterator[tuple[str, str, str]]:
    """(table, column, text) of every text and bytea value of every server table; bytea
    decompressed as the store writes it (zlib, labbook/store/sqlite.py), else raw."""
    with connect(url) as c:
        cols = c.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = 'labbook'"
            " AND data_type IN ('text', 'bytea', 'character varying', 'json', 'jsonb')"
        ).fetchall()
        for table, col, kind in cols:
            for (value,) in c.execute(f'SELECT "{col}" FROM labbook."{table}"'):
                if value is None:
                    continue
                if kind == "bytea":
                    raw = bytes(value)
                    with contextlib.suppress(zlib.error):
                        raw = zlib.decompress(raw)
                    yield table, col, raw.decode("utf-8", "replace")
                else:
                    yield table, col, str(value)


def test_no_secret_reaches_the_server(lab: tuple[str, Path]) -> None:
    url, base = lab
    node = Node(base, "gpu01", url)
    d = node.runs / "with-secret"
    d.mkdir(parents=True)
    (d / "config.yaml").write_text(f"lr: 0.1\napi_key: {HF}\npassword: {PASSWORD}\n")
    (d / "metrics.csv").write_text("step,loss\n0,1.0\n1,0.5\n")
    node.many(["import", "--no-git", node.runs], ["note", d, "see config"])
    p = node.popen(
        "run",
        "--no-git",
        "--no-check",
        "--",
        sys.executable,
        "-c",
        SECRET_RUN,
        "--password",
        PASSWORD,
        f"--token={HF}",
        HF_TOKEN=HF,
    )
    r = wait(p)
    assert r.returncode == 0, r.stderr
    quiet_end(r)
    (line,) = wait_detached(node, 1)  # the run's detached push
    assert line.startswith("pushed "), line
    checked = 0
    for table, col, text in _all_server_text(url):
        checked += 1
        assert HF not in text, f"{table}.{col} holds the token"
        assert PASSWORD not in text, f"{table}.{col} holds the password"
    assert checked > 50
    with connect(url) as c:
        cmds = [
            r[0] for r in c.execute("SELECT command FROM labbook.runs WHERE command IS NOT NULL")
        ]
        keys = {k for (k,) in c.execute("SELECT key FROM labbook.params")}
    assert any("--password" in c for c in cmds), cmds  # the command line is there, not its secrets
    assert {"api_key", "password", "hf_token", "db_password"} <= keys  # keys kept, values not
    converge("secrets", url, [node], columns_checked=checked)
