"""A run's identity across stores (issue #13): which rows of several origins are one run
recorded twice (the older hidden as superseded) and which are distinct runs, and a
store's own origin across copies, moves and in-place replaces. Real PostgreSQL
(tests/pg.py), real SQLite stores, the real ``labbook`` CLI."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from labbook.capture.slurm import SlurmJob, launch_source_key
from labbook.model import Point, RunFacts
from labbook.store import Store, outbox
from labbook.store.remote.config import RemoteConfig
from labbook.store.remote.push import push_round
from tests.conftest import run_cli


def facts(path: str, *, started_at: float = 1_790_000_000.0, **kw: Any) -> RunFacts:
    return RunFacts(
        path=path,
        framework="generic",
        source_key=kw.pop("source_key", path),
        name=Path(path).name,
        status="completed",
        started_at=started_at,
        ended_at=started_at + 600,
        command=kw.pop("command", ["python", "train.py"]),
        metrics={"loss": [Point(i, 1.0 / (i + 1)) for i in range(5)]},
        **kw,
    )


def init(url: str) -> RemoteConfig:
    r = run_cli("remote", "init", url)
    assert r.returncode == 0, r.stderr
    return RemoteConfig(url=url)


def standing(url: str) -> dict[str, str | None]:
    import psycopg

    with psycopg.connect(url) as c:
        return dict(c.execute("SELECT local_id, superseded_by FROM labbook.runs").fetchall())


def in_job(store: Store, run_id: str, job: SlurmJob) -> None:
    store.conn.execute(
        "UPDATE runs SET slurm_cluster = ?, slurm_job = ?, slurm_array_job = ?,"
        " slurm_array_task = ? WHERE id = ?",
        (job.cluster, job.job, job.array_job, job.array_task, run_id),
    )


def test_two_commands_in_one_slurm_job_are_two_runs(pg_url: str, tmp_path: Path) -> None:
    """Two ``labbook run`` commands in one job (two nodes of it, two stores): both
    listed; the same command requeued on another node is one run (the newer stands)."""
    cfg = init(pg_url)
    job = SlurmJob(job="4242", cluster="lab")
    cwd = str(tmp_path / "w")
    train = launch_source_key(job, ["python", "train.py"], cwd)
    evals = launch_source_key(job, ["python", "eval.py"], cwd)
    with Store.open(tmp_path / "a.db") as a, Store.open(tmp_path / "b.db") as b:
        ra = a.save_run(facts(cwd, source_key=train), run_id="aaaaaaaaaaaa")[0]
        in_job(a, ra, job)
        rb = b.save_run(facts(cwd, source_key=evals, started_at=1_790_000_050.0))[0]
        in_job(b, rb, job)
        push_round(a, cfg)
        push_round(b, cfg)
        assert standing(pg_url) == {ra: None, rb: None}
        r = run_cli(
            "ls",
            "--remote",
            "--json",
            env={"LABBOOK_DB": str(tmp_path / "a.db"), "LABBOOK_REMOTE_URL": pg_url},
        )
        assert r.returncode == 0, r.stderr
        assert len(json.loads(r.stdout)) == 2
    with Store.open(tmp_path / "c.db") as c:  # train.py requeued onto another node
        rc = c.save_run(facts(cwd, source_key=train, started_at=1_790_000_900.0))[0]
        in_job(c, rc, job)
        push_round(c, cfg)
    assert standing(pg_url) == {ra: rc, rb: None, rc: None}


def test_unrelated_dirs_of_one_path_on_two_nodes_are_two_runs(pg_url: str, tmp_path: Path) -> None:
    """``/workspace/runs/x`` on each node's own disk (different files, different start):
    two runs; the same NFS dir read by both nodes (same start) stays one."""
    cfg = init(pg_url)
    with Store.open(tmp_path / "a.db") as a, Store.open(tmp_path / "b.db") as b:
        ra = a.save_run(facts("/workspace/runs/x", started_at=1_790_000_000.0))[0]
        rb = b.save_run(facts("/workspace/runs/x", started_at=1_790_003_000.0))[0]
        na = a.save_run(facts("/nfs/runs/y"))[0]
        nb = b.save_run(facts("/nfs/runs/y"))[0]
        push_round(a, cfg)
        push_round(b, cfg)
    rows = standing(pg_url)
    assert rows[ra] is None and rows[rb] is None
    assert sorted([rows[na], rows[nb]], key=str) == sorted([None, na if rows[nb] else nb], key=str)


def test_remote_init_regroups_a_server_of_the_old_key(pg_url: str, tmp_path: Path) -> None:
    """A server whose rows were hidden by the old key (job alone, path alone): rerunning
    ``remote init`` recomputes them by the new one."""
    import psycopg

    cfg = init(pg_url)
    with Store.open(tmp_path / "a.db") as a, Store.open(tmp_path / "b.db") as b:
        ra = a.save_run(facts("/workspace/runs/x", started_at=1_790_000_000.0))[0]
        rb = b.save_run(facts("/workspace/runs/x", started_at=1_790_003_000.0))[0]
        push_round(a, cfg)
        push_round(b, cfg)
    with psycopg.connect(pg_url) as c:  # as the old key left it
        c.execute("UPDATE labbook.runs SET superseded_by = %s WHERE local_id = %s", (rb, ra))
        c.execute("CREATE INDEX runs_group_key ON labbook.runs (path)")
    init(pg_url)
    assert standing(pg_url) == {ra: None, rb: None}


def _origin(db: Path) -> tuple[str, int]:
    with Store.open(db) as st:
        return outbox.origin(st.conn, st.path), outbox.pending(st.conn)


def test_a_replaced_or_moved_store_keeps_its_origin_and_pushes_nothing_twice(
    pg_url: str, tmp_path: Path
) -> None:
    """``cp db t && mv t db`` (a new inode) and a move with its sidecar keep the origin:
    the next push pushes nothing and the server holds each run once."""
    import psycopg

    init(pg_url)
    db = tmp_path / "nodeA.db"
    env = {"LABBOOK_DB": str(db), "LABBOOK_REMOTE_URL": pg_url}
    with Store.open(db) as st:
        for i in range(4):
            st.save_run(facts(str(tmp_path / f"r{i}")))
    r = run_cli("remote", "push", env=env)
    assert r.returncode == 0, r.stderr
    first, _ = _origin(db)
    assert (db.with_name("nodeA.db.origin").stat().st_mode & 0o777) == 0o600
    shutil.copy(db, tmp_path / "t")
    os.replace(tmp_path / "t", db)
    assert _origin(db) == (first, 0)
    r = run_cli("remote", "push", env=env)
    assert r.returncode == 0, r.stderr
    assert "pushed 4" not in r.stdout + r.stderr
    moved = tmp_path / "mnt2"
    moved.mkdir()
    for name in ("nodeA.db", "nodeA.db.origin"):
        os.replace(tmp_path / name, moved / name)
    assert _origin(moved / "nodeA.db") == (first, 0)
    with psycopg.connect(pg_url) as c:
        assert c.execute(
            "SELECT count(*), count(DISTINCT origin) FROM labbook.runs"
        ).fetchone() == (
            4,
            1,
        )


def test_a_deleted_sidecar_or_an_upgrade_keeps_the_origin(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    with Store.open(db) as st:
        st.save_run(facts(str(tmp_path / "r")))
        first = outbox.origin(st.conn, st.path)
        outbox.clear(
            st.conn, [(r, p) for r, p in st.conn.execute("SELECT run_id, part FROM dirty")], 10**9
        )
    db.with_name("a.db.origin").unlink()
    assert _origin(db) == (first, 0)
    assert db.with_name("a.db.origin").read_text().strip()
    with Store.open(db) as st:  # a store of the inode rule: no token, no sidecar
        st.conn.execute("DELETE FROM meta WHERE key IN ('origin_token', 'origin_path')")
    db.with_name("a.db.origin").unlink()
    assert _origin(db) == (first, 0)
    assert _origin(db) == (first, 0)


def test_a_copy_without_its_sidecar_or_over_another_store_is_a_new_origin(tmp_path: Path) -> None:
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    with Store.open(a) as st:
        st.save_run(facts(str(tmp_path / "r")))
        first = outbox.origin(st.conn, st.path)
    with Store.open(b) as st:
        other = outbox.origin(st.conn, st.path)
    shutil.copy(a, tmp_path / "c.db")  # elsewhere, no sidecar
    copied, pending = _origin(tmp_path / "c.db")
    assert copied not in (first, other) and pending == 1
    assert _origin(tmp_path / "c.db")[0] == copied  # and it stays that one
    shutil.copy(a, b)  # over another store: b's sidecar holds b's token
    over, pending = _origin(b)
    assert over not in (first, other, copied) and pending == 1
    assert _origin(a)[0] == first


def test_labbook_run_spools_only_its_run_and_keeps_the_backlogs_files(
    pg_url: str, tmp_path: Path
) -> None:
    """With a backlog and the notebook unreachable, ``labbook run``'s exit spools the
    one run it recorded (not the backlog again) and keeps the older spool file of its
    origin; a later push ingests both files: every run once, as in the store."""
    from labbook.store.remote import spool
    from labbook.store.remote.lastpush import write_batch

    db, sp = tmp_path / "node.db", tmp_path / "spool"
    down = RemoteConfig(url="postgresql://postgres@127.0.0.1:1/x", spool_dir=sp)
    with Store.open(db) as st:
        for i in range(3):
            st.save_run(facts(str(tmp_path / f"r{i}")))
        old = write_batch(st, down)  # a watch that stopped while unreachable
        mine = outbox.origin(st.conn, st.path)
    assert old is not None
    env = {"LABBOOK_DB": str(db), "LABBOOK_REMOTE_URL": down.url or "", "LABBOOK_SPOOL": str(sp)}
    r = run_cli("run", "--", sys.executable, "-c", "print(1)", env=env)
    assert r.returncode == 0, r.stderr
    files = sorted(sp.glob(f"{mine}-*.lbspool"))
    assert old in files and len(files) == 2, files
    assert len(spool.read_file(old)["runs"]) == 3
    assert len(spool.read_file(files[-1])["runs"]) == 1  # its own run only
    # a second exit spools its own run, not the first exit's again
    r = run_cli("run", "--", sys.executable, "-c", "print(2)", env=env)
    assert r.returncode == 0, r.stderr
    files = sorted(sp.glob(f"{mine}-*.lbspool"))
    assert len(files) == 3 and len(spool.read_file(files[-1])["runs"]) == 1
    cfg = init(pg_url)
    with Store.open(db) as st:
        push_round(st, RemoteConfig(url=pg_url, spool_dir=sp))
        push_round(st, RemoteConfig(url=pg_url, spool_dir=sp))
        assert outbox.pending(st.conn) == 0
    assert cfg.url and len(standing(pg_url)) == 5
    assert not list(sp.glob("*.lbspool"))
