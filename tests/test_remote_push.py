"""Pushing node stores into the lab's notebook: a real PostgreSQL (tests/pg.py), real
SQLite stores, nodes as separate ``labbook`` processes with their own stores and
hostnames (issue #13). The fault/convergence cases (SIGKILL, proxy, stop -m
immediate) are in the "faults" helper's tests; these are the push's own."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from labbook.model import Failure, Point, RunFacts
from labbook.store import Store
from labbook.store.remote.config import RemoteConfig
from tests.conftest import run_cli
from tests.pg import (
    local_snapshot,
    server_counts,
    server_snapshot,
    union,
)


def facts(path: str, *, name: str | None = None, steps: int = 20, **kw: Any) -> RunFacts:
    f = RunFacts(
        path=path,
        framework="generic",
        source_key=kw.pop("source_key", path),
        name=name or Path(path).name,
        status=kw.pop("status", "completed"),
        started_at=kw.pop("started_at", 1_790_000_000.0),
        ended_at=kw.pop("ended_at", 1_790_000_600.0),
        command=["python", "train.py", "--lr", "0.1"],
        config={"lr": 0.1, "model": "vit", "optimizer.name": "adam", "seed": 1},
        metrics={"loss": [Point(i, 1.0 / (i + 1)) for i in range(steps)]},
        log_tail="epoch 1 loss 0.5\nCUDA out of memory\n",
        **kw,
    )
    return f


def connect(url: str) -> Any:
    import psycopg

    return psycopg.connect(url)


def cfg_for(url: str) -> RemoteConfig:
    return RemoteConfig(url=url)


def init(url: str) -> None:
    r = run_cli("remote", "init", url)
    assert r.returncode == 0, r.stderr
    assert "[remote]" in r.stdout and url in r.stdout


def node_env(db: Path, url: str, host: str) -> dict[str, str]:
    return {"LABBOOK_DB": str(db), "LABBOOK_REMOTE_URL": url, "HOSTNAME": host}


def test_init_prints_config_without_password_and_is_rerunnable(pg_url: str) -> None:
    with_pw = pg_url.replace("postgres@", "postgres:s3cret@")
    r = run_cli("remote", "init", with_pw)
    assert r.returncode == 0, r.stderr
    assert "s3cret" not in r.stdout + r.stderr
    assert f'url = "{pg_url}"' in r.stdout
    assert ".pgpass" in r.stdout + r.stderr
    r = run_cli("remote", "init", pg_url)  # idempotent
    assert r.returncode == 0, r.stderr
    with connect(pg_url) as c:
        assert c.execute("SELECT extname FROM pg_extension WHERE extname = 'pg_trgm'").fetchone()
        assert c.execute("SELECT value FROM labbook.meta WHERE key = 'schema_version'").fetchone()


def test_init_write_config(pg_url: str, tmp_path: Path) -> None:
    cfgdir = Path(os.environ["XDG_CONFIG_HOME"]) / "labbook"
    cfgdir.mkdir(parents=True, exist_ok=True)
    (cfgdir / "config.toml").write_text('[watch]\nroots = ["/x"]\n\n[remote]\nurl = "old"\n')
    r = run_cli("remote", "init", "--write-config", pg_url)
    assert r.returncode == 0, r.stderr
    text = (cfgdir / "config.toml").read_text()
    assert 'roots = ["/x"]' in text and f'url = "{pg_url}"' in text and '"old"' not in text
    assert RemoteConfig.load(env={}).url == pg_url


def test_init_refuses_c_ctype(pg_server: Any) -> None:
    url = pg_server.create_db(extra="LC_CTYPE 'C' LC_COLLATE 'C' TEMPLATE template0")
    r = run_cli("remote", "init", url)
    assert r.returncode == 1
    err = r.stderr.strip().splitlines()
    assert err[0].startswith("labbook: error: database ") and "LC_CTYPE C" in err[0]
    assert "Traceback" not in r.stderr
    with connect(url) as c:
        assert c.execute("SELECT to_regclass('labbook.runs')").fetchone()[0] is None


def test_unreachable_is_one_line(tmp_path: Path) -> None:
    r = run_cli(
        "remote",
        "push",
        env={"LABBOOK_REMOTE_URL": "postgresql://u:pw@127.0.0.1:1/x"},
        db=tmp_path / "a.db",
    )
    assert r.returncode == 1
    assert r.stderr.startswith("labbook: error: cannot reach the lab's notebook at 127.0.0.1:1/x")
    assert "pw" not in r.stderr.replace("postgresql", "")


def test_push_idempotent_and_changes_survive(pg_url: str, tmp_path: Path) -> None:
    init(pg_url)
    cfg = cfg_for(pg_url)
    from labbook.store.remote.push import push_round

    with Store.open(tmp_path / "a.db") as st:
        ids = [st.save_run(facts(str(tmp_path / f"runs/r{i}")))[0] for i in range(5)]
        st.add_note(ids[0], "lr too high: diverged")
        st.add_tags(ids[1], ["baseline"])
        assert all(len(i) == 12 for i in ids)
        res = push_round(st, cfg)
        assert res.pushed == 5 and res.pending == 0
        with connect(pg_url) as c:
            assert server_snapshot(c) == local_snapshot(st)
            before = server_counts(c)
            xmin = c.execute("SELECT sum(xmin::text::bigint) FROM labbook.runs").fetchone()
        # an unchanged re-push writes nothing
        res = push_round(st, cfg)
        assert res.pushed == 0 and res.cleared == 0
        with connect(pg_url) as c:
            assert server_counts(c) == before
            assert c.execute("SELECT sum(xmin::text::bigint) FROM labbook.runs").fetchone() == xmin
        # a change made while a push is under way (after its claim) survives it
        from labbook.store import outbox

        claimed = outbox.claim(st.conn)
        st.add_note(ids[2], "made during the push")
        outbox.clear(st.conn, [(ids[2], "notes")], claimed)
        assert outbox.pending(st.conn) >= 1
        res = push_round(st, cfg)
        assert res.pushed >= 1
        with connect(pg_url) as c:
            assert server_snapshot(c) == local_snapshot(st)
            notes = c.execute("SELECT text FROM labbook.notes ORDER BY text").fetchall()
        assert [n[0] for n in notes] == ["lr too high: diverged", "made during the push"]
        # a removal (rm: a tombstone) reaches the server as one: the row, hidden
        assert st.set_removed([ids[4]]) == [ids[4]]
        res = push_round(st, cfg)
        assert res.pushed == 1 and res.deleted == 0
        with connect(pg_url) as c:
            assert server_snapshot(c) == local_snapshot(st)
            assert server_counts(c)["runs"] == 5
            (gone,) = c.execute(
                "SELECT deleted_at FROM labbook.runs WHERE local_id = %s", (ids[4],)
            ).fetchone()
            assert gone is not None
        # a purge empties the server's row into a tombstone: none of its facts stay
        assert st.purge_runs([ids[4]]) == 1
        res = push_round(st, cfg)
        assert res.deleted == 1
        with connect(pg_url) as c:
            assert server_snapshot(c) == local_snapshot(st)
            counts = server_counts(c)
            assert counts["runs"] == 4 and counts["purged"] == 1
            row = c.execute(
                "SELECT source_key, name, path, command, env, deleted_at IS NOT NULL"
                " FROM labbook.runs WHERE local_id = %s",
                (ids[4],),
            ).fetchone()
            assert row == (f"purged:{ids[4]}", None, None, None, None, True)


def test_all_rebuilds_a_dropped_schema(pg_url: str, tmp_path: Path) -> None:
    init(pg_url)
    db = tmp_path / "a.db"
    with Store.open(db) as st:
        rid = st.save_run(facts(str(tmp_path / "r0")))[0]
        st.add_note(rid, "keep me")
    env = node_env(db, pg_url, "gpu01")
    r = run_cli("remote", "push", "--json", env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["pushed"] == 1
    with connect(pg_url) as c:
        c.execute("DROP SCHEMA labbook CASCADE")
        c.commit()
    r = run_cli("remote", "push", env=env)
    assert r.returncode == 1 and "remote init" in r.stderr
    init(pg_url)
    r = run_cli("remote", "push", env=env)  # nothing is dirty: nothing is pushed
    assert r.returncode == 0 and r.stdout.startswith("pushed 0 runs"), r.stdout
    r = run_cli("remote", "push", "--all", env=env)
    assert r.returncode == 0 and r.stdout.startswith("pushed 1 run"), r.stdout
    with connect(pg_url) as c, Store.open(db) as st:
        assert server_snapshot(c) == local_snapshot(st)
        assert server_counts(c)["blobs"] >= 1


NODE = textwrap.dedent(
    """
    import sys
    from labbook.model import Point, RunFacts
    from labbook.store import Store
    from labbook.store.remote.config import RemoteConfig
    from labbook.store.remote.push import push_round

    db, url, root, n, shared = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
    with Store.open(db) as st:
        for i in range(n):
            f = RunFacts(path=f"{root}/r{i}", framework="generic", source_key=f"{root}/r{i}",
                         name=f"r{i}", status="completed", started_at=1.79e9 + i,
                         config={"lr": 0.1 * i, "seed": i}, log_tail=shared,
                         metrics={"loss": [Point(s, 1.0 / (s + 1)) for s in range(50)]})
            rid, _ = st.save_run(f)
            if i == 0:
                st.add_note(rid, "note from " + root)
        res = push_round(st, RemoteConfig(url=url), limit=int(sys.argv[6]) if len(sys.argv) > 6 else 300)
        print(res.pushed, res.blobs)
    """
)


def test_two_nodes_share_blobs_and_see_each_other(pg_url: str, tmp_path: Path) -> None:
    init(pg_url)
    script = tmp_path / "node.py"
    script.write_text(NODE)
    shared = "the same log tail on both nodes\n" * 50
    procs = []
    for host in ("gpu01", "gpu02"):
        env = {**os.environ, "HOSTNAME": host, "LABBOOK_STRICT": "1"}
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    str(script),
                    str(tmp_path / f"{host}.db"),
                    pg_url,
                    str(tmp_path / host),
                    "30",
                    shared,
                    "7",
                ],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert out.split()[0] == "30"
    with connect(pg_url) as c:
        snaps = [local_snapshot(tmp_path / f"{h}.db") for h in ("gpu01", "gpu02")]
        assert server_snapshot(c) == union(*snaps)
        counts = server_counts(c)
        assert counts["runs"] == 60 and counts["notes"] == 2
        assert counts["blobs"] == 1  # one log tail, uploaded once (maybe by both)
        assert c.execute("SELECT count(*) FROM labbook.origins").fetchone()[0] == 2
    # both nodes' runs, from either node's status
    r = run_cli("remote", "status", "--json", env=node_env(tmp_path / "gpu01.db", pg_url, "gpu01"))
    assert r.returncode == 0, r.stderr
    st = json.loads(r.stdout)
    assert st["reachable"] and st["pending"] == 0
    assert sorted(o["runs"] for o in st["origins"]) == [30, 30]
    assert all(o["pending"] == 0 and o["lag_s"] is not None for o in st["origins"])


def test_same_dir_from_two_origins_is_kept_once(pg_url: str, tmp_path: Path) -> None:
    """An NFS run dir watched by two nodes: both rows kept, the older superseded; the
    notes of both origins stay on their rows."""
    init(pg_url)
    cfg = cfg_for(pg_url)
    from labbook.store.remote.push import push_round

    run_dir = str(tmp_path / "nfs/run1")
    with Store.open(tmp_path / "a.db") as a, Store.open(tmp_path / "b.db") as b:
        ra = a.save_run(
            facts(run_dir, started_at=1_790_000_000.0, host="gpu01"), run_id="aaaaaaaaaaaa"
        )[0]
        a.add_note(ra, "from a")
        push_round(a, cfg)
        rb = b.save_run(
            facts(run_dir, started_at=1_790_000_000.0, host="gpu02"), run_id="bbbbbbbbbbbb"
        )[0]
        b.add_note(rb, "from b")
        res = push_round(b, cfg)
        assert res.superseded == 1
        with connect(pg_url) as c:
            rows = dict(c.execute("SELECT local_id, superseded_by FROM labbook.runs").fetchall())
            assert rows == {ra: rb, rb: None}
            merged = c.execute(
                "SELECT n.origin, n.text FROM labbook.notes n JOIN labbook.runs r ON r.id = n.run_id"
                " WHERE r.id = %s OR r.superseded_by = %s ORDER BY n.text",
                (rb, rb),
            ).fetchall()
            assert [t for _, t in merged] == ["from a", "from b"]
            assert len({o for o, _ in merged}) == 2
            assert server_snapshot(c) == union(local_snapshot(a), local_snapshot(b))
        # re-pushing either changes nothing
        assert push_round(a, cfg).pushed == 0 and push_round(b, cfg).superseded == 0
        r = run_cli("remote", "status", "--json", env=node_env(tmp_path / "a.db", pg_url, "x"))
        by = {o["origin"]: o for o in json.loads(r.stdout)["origins"]}
        assert sorted(o["superseded"] for o in by.values()) == [0, 1]


def test_removing_one_origins_row_of_a_shared_dir_keeps_the_others(
    pg_url: str, tmp_path: Path
) -> None:
    """The same run dir recorded by two nodes: the newer row removed (rm) on its node,
    the older (the other node's record) stands again; undone, the newer stands; purged,
    the older stands and the tombstone is in no group."""
    init(pg_url)
    cfg = cfg_for(pg_url)
    from labbook.store.remote.push import push_round

    run_dir = str(tmp_path / "nfs/run1")

    def rows() -> dict[str, str | None]:
        with connect(pg_url) as c:
            return dict(c.execute("SELECT local_id, superseded_by FROM labbook.runs").fetchall())

    with Store.open(tmp_path / "a.db") as a, Store.open(tmp_path / "b.db") as b:
        ra = a.save_run(
            facts(run_dir, started_at=1_790_000_000.0, host="gpu01"), run_id="aaaaaaaaaaaa"
        )[0]
        push_round(a, cfg)
        rb = b.save_run(
            facts(run_dir, started_at=1_790_000_000.0, host="gpu02"), run_id="bbbbbbbbbbbb"
        )[0]
        push_round(b, cfg)
        assert rows() == {ra: rb, rb: None}
        b.set_removed([rb])
        push_round(b, cfg)
        assert rows() == {ra: None, rb: ra}  # a's record is a's: it stands again
        b.set_removed([rb], removed=False)
        push_round(b, cfg)
        assert rows() == {ra: rb, rb: None}
        assert b.purge_runs([rb]) == 1
        push_round(b, cfg)
        assert rows() == {ra: None, rb: None}
        with connect(pg_url) as c:
            assert server_snapshot(c) == union(local_snapshot(a), local_snapshot(b))


def test_legacy_id_held_by_another_origin(pg_url: str, tmp_path: Path) -> None:
    init(pg_url)
    cfg = cfg_for(pg_url)
    from labbook.store.remote.push import push_round

    with Store.open(tmp_path / "a.db") as a, Store.open(tmp_path / "b.db") as b:
        a.save_run(facts(str(tmp_path / "a/r"), source_key="a"), run_id="abcd1234")
        b.save_run(facts(str(tmp_path / "b/r"), source_key="b"), run_id="abcd1234")
        push_round(a, cfg)
        push_round(b, cfg)
        origin_b = b.conn.execute("SELECT value FROM meta WHERE key = 'origin'").fetchone()[0]
        with connect(pg_url) as c:
            ids = sorted(r[0] for r in c.execute("SELECT id FROM labbook.runs").fetchall())
            assert ids == sorted(["abcd1234", "abcd1234" + origin_b[:4]])
            assert server_snapshot(c) == union(local_snapshot(a), local_snapshot(b))


def test_copied_store_mints_a_new_origin(tmp_path: Path) -> None:
    import shutil

    from labbook.store import outbox

    with Store.open(tmp_path / "a.db") as a:
        a.save_run(facts(str(tmp_path / "r")))
        first = outbox.origin(a.conn, a.path)
        assert outbox.origin(a.conn, a.path) == first
    shutil.copy(tmp_path / "a.db", tmp_path / "b.db")
    with Store.open(tmp_path / "b.db") as b:
        assert outbox.origin(b.conn, b.path) != first
        assert outbox.pending(b.conn) == 1


def test_dirty_marks(tmp_path: Path) -> None:
    """Triggers mark the parts; params once per save; an old 8-hex id still resolves."""
    from labbook.store.query import resolve

    with Store.open(tmp_path / "a.db") as st:
        st.conn.execute("DELETE FROM dirty")
        big = facts(str(tmp_path / "r"))
        big.config = {f"k{i}": i for i in range(2000)}
        rid = st.save_run(big)[0]
        parts = dict(st.conn.execute("SELECT part, count(*) FROM dirty GROUP BY part").fetchall())
        assert parts == {"run": 1, "params": 1, "metrics": 1, "series": 1}
        st.add_note(rid, "x")
        st.add_tags(rid, ["t"])
        got = {p for (p,) in st.conn.execute("SELECT part FROM dirty WHERE run_id = ?", (rid,))}
        assert {"notes", "tags"} <= got
        old = st.save_run(facts(str(tmp_path / "old"), source_key="old"), run_id="0123abcd")[0]
        assert resolve(st, "0123abcd") == old == resolve(st, "0123")


def test_curves_wait_for_their_interval(pg_url: str, tmp_path: Path) -> None:
    init(pg_url)
    cfg = cfg_for(pg_url)
    from labbook.store.remote.push import push_round

    with Store.open(tmp_path / "a.db") as st:
        rid = st.save_run(facts(str(tmp_path / "r"), status="running", ended_at=None))[0]
        res = push_round(st, cfg, curves=False)
        assert res.pushed == 1 and res.curves_deferred == 1 and res.pending == 1
        with connect(pg_url) as c:
            assert server_counts(c)["series"] == 0 and server_counts(c)["metrics"] == 1
        st.set_status(rid, "completed") if hasattr(st, "set_status") else None
        st.conn.execute("UPDATE runs SET status = 'completed' WHERE id = ?", (rid,))
        res = push_round(st, cfg, curves=False)  # it ended: its curves go now
        assert res.pending == 0
        with connect(pg_url) as c:
            assert server_counts(c)["series"] == 1
            assert server_snapshot(c) == local_snapshot(st)


def test_text_with_nul_and_failure(pg_url: str, tmp_path: Path) -> None:
    init(pg_url)
    from labbook.store.remote.push import push_round

    with Store.open(tmp_path / "a.db") as st:
        f = facts(str(tmp_path / "r"), status="failed")
        f.failure = Failure(kind="oom", message="CUDA out of memory\x00 at step 3", step=3)
        st.save_run(f)
        push_round(st, cfg_for(pg_url))
        with connect(pg_url) as c:
            msg = c.execute("SELECT failure_message FROM labbook.runs").fetchone()[0]
            assert msg.startswith("CUDA out of memory") and "\x00" not in msg
            docs = c.execute("SELECT field FROM labbook.search_docs ORDER BY field").fetchall()
            assert ("failure",) in docs and ("config",) in docs


def test_status_without_server(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    with Store.open(db) as st:
        st.save_run(facts(str(tmp_path / "r")))
    r = run_cli("remote", "status", env=node_env(db, "postgresql://127.0.0.1:1/x", "n"))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("this node: 1 run not pushed yet")
    assert lines[1].startswith("lab notebook: unreachable: cannot reach") and len(lines) == 2
    st_json = json.loads(
        run_cli(
            "remote", "status", "--json", env=node_env(db, "postgresql://127.0.0.1:1/x", "n")
        ).stdout
    )
    assert st_json["pending"] == 1 and st_json["reachable"] is False


def test_local_store_holds_no_dirty_for_readonly(tmp_path: Path) -> None:
    """A store from before step 0014 opened for reading still counts nothing pending."""
    from labbook.store import outbox

    conn = sqlite3.connect(":memory:")
    assert outbox.pending(conn) == 0


def test_watch_pushes_from_a_thread_and_recovers(pg_server: Any, tmp_path: Path) -> None:
    """``labbook watch`` with a remote that is not there yet: ingest goes on, one line
    says pushing fails; once the database exists the next round catches up and one
    line says so; stopping pushes what is left."""
    import signal
    import time
    import uuid

    name = f"t_{uuid.uuid4().hex[:12]}"
    url = pg_server.url(name)
    root = tmp_path / "runs"
    run = root / "r1"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("lr: 1\n")
    (run / "metrics.jsonl").write_text('{"step": 0, "loss": 1.0}\n')
    db = tmp_path / "a.db"
    env = {**os.environ, "LABBOOK_REMOTE_URL": url, "LABBOOK_DB": str(db)}
    p = subprocess.Popen(
        [sys.executable, "-m", "labbook", "watch", "--log", str(root)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if db.exists():
                with Store.open(db) as st:
                    if st.count():
                        break
            time.sleep(0.2)
        else:
            raise AssertionError("watch recorded nothing")
        time.sleep(1.0)  # the first round (fails: no database yet)
        pg_server.create_db(name)
        init(url)
        deadline = time.monotonic() + 30
        found = 0
        while time.monotonic() < deadline and not found:
            with connect(url) as c:
                found = c.execute("SELECT count(*) FROM labbook.runs").fetchone()[0]
            time.sleep(0.3)
        assert found == 1
        (run / "metrics.jsonl").write_text('{"step": 0, "loss": 1.0}\n{"step": 1, "loss": 0.5}\n')
        time.sleep(1.5)
    finally:
        p.send_signal(signal.SIGINT)
        _out, err = p.communicate(timeout=60)
    failing = [ln for ln in err.splitlines() if "push to the lab's notebook failing" in ln]
    recovered = [ln for ln in err.splitlines() if "recovered" in ln]
    assert len(failing) == 1 and "does not exist" in failing[0], err
    assert len(recovered) == 1, err
    with connect(url) as c, Store.open(db) as st:
        assert server_snapshot(c) == local_snapshot(st)
        assert c.execute("SELECT step FROM labbook.metrics").fetchone()[0] == 1
    pg_server.drop_db(name)


def test_two_nodes_pushing_one_dir_at_once_keep_one_row_standing(
    pg_url: str, tmp_path: Path
) -> None:
    """An NFS tree watched by two nodes, both pushing at the same time: every run dir
    has exactly one row standing, the other superseded by it."""
    init(pg_url)
    script = tmp_path / "node.py"
    script.write_text(NODE)
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(script),
                str(tmp_path / f"{h}.db"),
                pg_url,
                str(tmp_path / "nfs"),
                "40",
                "log",
                "9",
            ],
            env={**os.environ, "HOSTNAME": h},
            stderr=subprocess.PIPE,
            text=True,
        )
        for h in ("gpu01", "gpu02")
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    with connect(pg_url) as c:
        rows = c.execute(
            "SELECT path, count(*), count(*) FILTER (WHERE superseded_by IS NULL),"
            " count(DISTINCT origin) FROM labbook.runs GROUP BY path"
        ).fetchall()
        dangling = c.execute(
            "SELECT count(*) FROM labbook.runs r WHERE superseded_by IS NOT NULL AND NOT EXISTS"
            " (SELECT 1 FROM labbook.runs s WHERE s.id = r.superseded_by"
            " AND s.superseded_by IS NULL)"
        ).fetchone()[0]
    assert len(rows) == 40 and all(r[1:] == (2, 1, 2) for r in rows), rows
    assert dangling == 0
