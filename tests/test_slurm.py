"""Slurm jobs (issue #13): columns from the process environment, ``--where slurm.…``,
``show``, a requeued job recorded as one run, and across nodes one row standing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from labbook.capture.slurm import from_environ
from tests.conftest import run_cli

JOB = {
    "SLURM_CLUSTER_NAME": "lab",
    "SLURM_JOB_ID": "4242",
    "SLURM_ARRAY_JOB_ID": "4240",
    "SLURM_ARRAY_TASK_ID": "2",
    "SLURM_RESTART_COUNT": "0",
    "SLURM_JOB_NODELIST": "gpu[01-02]",
    "SLURM_JOB_PARTITION": "a100",
    "SLURM_JOB_ACCOUNT": "vision",
}


def test_from_environ() -> None:
    assert from_environ({}) is None and from_environ({"SLURM_CLUSTER_NAME": "x"}) is None
    job = from_environ(JOB)
    assert job is not None
    assert job.columns()["slurm_array_task"] == "2" and job.restarts == 0
    assert job.key == "lab:4240_2"
    assert job.describe() == (
        "job 4240_2 on lab (partition a100, account vision, nodes gpu[01-02])"
    )
    old = from_environ({"SLURM_JOBID": "7", "SLURM_NODELIST": "n1", "SLURM_RESTART_COUNT": "x"})
    assert old is not None and old.job == "7" and old.nodes == "n1" and old.restarts == 0


def _run(db: Path, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_cli("run", "--", sys.executable, "-c", "print('loss 0.5')", db=db, cwd=cwd, env=env)


def test_run_records_the_job_and_a_requeue_is_one_run(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    r = _run(db, tmp_path, JOB)
    assert r.returncode == 0, r.stderr
    r = _run(db, tmp_path, {**JOB, "SLURM_RESTART_COUNT": "1", "SLURM_JOB_NODELIST": "gpu07"})
    assert r.returncode == 0, r.stderr
    runs = json.loads(run_cli("ls", "--json", db=db).stdout)
    assert len(runs) == 1
    slurm = runs[0]["slurm"]
    assert slurm["job"] == "4242" and slurm["restarts"] == 1 and slurm["nodes"] == "gpu07"
    # a different command in the same job is a run of its own
    r = run_cli("run", "--", sys.executable, "-c", "pass", db=db, cwd=tmp_path, env=JOB)
    assert r.returncode == 0, r.stderr
    # and outside Slurm every launch is its own run
    r = _run(db, tmp_path, {})
    assert len(json.loads(run_cli("ls", "--json", db=db).stdout)) == 3
    found = json.loads(run_cli("ls", "--json", "--where", "slurm.job=4242", db=db).stdout)
    assert len(found) == 2
    found = json.loads(
        run_cli(
            "ls", "--json", "--where", "slurm.task=2", "--where", "slurm.partition=a100", db=db
        ).stdout
    )
    assert len(found) == 2
    assert json.loads(run_cli("ls", "--json", "--where", "slurm.job=1", db=db).stdout) == []
    show = run_cli("show", runs[0]["id"], db=db)
    assert show.returncode == 0, show.stderr
    line = next(ln for ln in show.stdout.splitlines() if ln.strip().startswith("slurm"))
    assert "job 4240_2 on lab" in line and "restart 1" in line and "gpu07" in line


def test_watch_reads_a_writers_job(tmp_path: Path) -> None:
    """The environment of a process found by watch (labbook.capture.process) holds its
    SLURM_* variables, which give the job."""
    from labbook.capture.process import process_info

    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(30)"],
        env={**os.environ, **JOB},
    )
    try:
        info = None
        for _ in range(50):
            info = process_info(child.pid, with_packages=False)
            if info is not None and info.env_vars:
                break
            time.sleep(0.05)
        assert info is not None
        job = from_environ(info.env_vars)
        assert job is not None and job.key == "lab:4240_2" and job.account == "vision"
    finally:
        child.kill()
        child.wait()


def test_requeue_on_another_node_supersedes(pg_url: str, tmp_path: Path) -> None:
    """The requeued job ran on another node (its own store): the server keeps both rows
    and the earlier start is superseded by the later one."""
    r = run_cli("remote", "init", pg_url)
    assert r.returncode == 0, r.stderr
    envs: list[dict[str, Any]] = []
    for host, restarts in (("gpu01", "0"), ("gpu02", "1")):
        db = tmp_path / f"{host}.db"
        env = {**JOB, "SLURM_RESTART_COUNT": restarts, "LABBOOK_REMOTE_URL": pg_url}
        r = _run(db, tmp_path, env)
        assert r.returncode == 0, r.stderr
        r = run_cli("remote", "push", "--json", db=db, env=env)
        assert r.returncode == 0, r.stderr
        envs.append({"db": db, "env": env})
        time.sleep(1.1)  # started_at has second precision
    import psycopg

    with psycopg.connect(pg_url) as c:
        rows = c.execute(
            "SELECT slurm_restarts, superseded_by IS NOT NULL FROM labbook.runs ORDER BY 1"
        ).fetchall()
    assert rows == [(0, True), (1, False)]
