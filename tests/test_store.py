from __future__ import annotations

import math
import os
import sqlite3
import stat

import pytest

from labbook.errors import StoreError
from labbook.model import GitState, Point, RunFacts, Seed
from labbook.series import MAX_POINTS
from labbook.store import Store
from labbook.store.schema import SCHEMA_VERSION


def facts(path: str = "/runs/a", **kw) -> RunFacts:
    base = dict(path=path, framework="generic", source_key=path, name=os.path.basename(path))
    base.update(kw)
    return RunFacts(**base)


def test_new_database_is_private_wal_and_migrated(db_path):
    with Store.open(db_path) as s:
        s.save_run(facts())
    mode = stat.S_IMODE(os.stat(db_path).st_mode)
    assert mode == 0o600
    conn = sqlite3.connect(db_path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    applied = [r[0] for r in conn.execute("SELECT name FROM _sqlite_migrations")]
    assert len(applied) == SCHEMA_VERSION and applied[0] == "0001_initial"


def test_database_of_an_older_schema_is_migrated_in_place(db_path):
    """A database made by the first release (schema step 1 only) opens and upgrades."""
    import sqlite_utils

    from labbook.store.schema import migrations

    steps = migrations()
    old = sqlite_utils.Database(db_path)
    steps.apply(old, stop_before="0002_runs_order")
    old.execute("PRAGMA user_version = 1")
    old.conn.commit()
    old.close()
    with Store.open(db_path) as s:
        run_id, _ = s.save_run(facts())
        assert s.record(run_id)["id"] == run_id
        assert s.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        names = [r[0] for r in s.conn.execute("SELECT name FROM sqlite_master WHERE type='index'")]
        assert "runs_order" in names
        applied = [r[0] for r in s.conn.execute("SELECT name FROM _sqlite_migrations")]
        assert len(applied) == SCHEMA_VERSION


def test_default_path_is_under_xdg_data_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    with Store.open() as s:
        assert s.path == tmp_path / "xdg" / "labbook" / "labbook.db"
    assert stat.S_IMODE(os.stat(tmp_path / "xdg" / "labbook").st_mode) == 0o700


def test_labbook_db_env_overrides_default(tmp_path, monkeypatch):
    monkeypatch.setenv("LABBOOK_DB", str(tmp_path / "elsewhere.db"))
    with Store.open() as s:
        assert s.path == tmp_path / "elsewhere.db"


def test_missing_database_without_create_says_what_to_do(tmp_path):
    with pytest.raises(StoreError) as info:
        Store.open(tmp_path / "nope.db", create=False)
    assert "labbook import" in (info.value.hint or "")


def test_garbage_database_file_is_a_clear_error(tmp_path):
    p = tmp_path / "bad.db"
    p.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError):
        Store.open(p)


def test_save_is_idempotent_and_keeps_id(store):
    rid, created = store.save_run(facts(config={"lr": 0.1}))
    rid2, created2 = store.save_run(facts(config={"lr": 0.2}))
    assert created and not created2 and rid == rid2
    assert store.count() == 1
    assert store.record(rid)["config"] == {"lr": 0.2}


def test_record_matches_json_contract(store):
    f = facts(
        config={"optimizer.lr": 0.1, "layers": [1, 2], "name": "x"},
        seed=Seed(42, "config:seed"),
        metrics={"val/loss": [Point(0, 2.3), Point(10, 0.29), Point(20, 0.31)]},
        git=GitState(
            root="/p",
            commit="a" * 40,
            branch="main",
            dirty=True,
            diff="diff --git",
            untracked=["n.py"],
        ),
        command=["python", "train.py"],
        status="finished",
        started_at=1763806408.0,
    )
    rid, _ = store.save_run(f)
    rec = store.record(rid)
    for key in (
        "id",
        "name",
        "path",
        "host",
        "user",
        "framework",
        "status",
        "failure",
        "started_at",
        "ended_at",
        "command",
        "pid",
        "seed",
        "config",
        "metrics",
        "git",
        "env",
        "gpu",
        "tags",
        "notes",
    ):
        assert key in rec
    assert rec["started_at"] == "2025-11-22T10:13:28Z"
    assert rec["seed"] == {"value": 42, "source": "config:seed", "known": True}
    assert rec["metrics"]["val/loss"] == {
        "last": 0.31,
        "min": 0.29,
        "max": 2.3,
        "step": 20,
        "count": 3,
        "nonfinite_step": None,
        "source": "file",
    }
    assert rec["git"]["diff"] == "diff --git" and rec["git"]["untracked"] == ["n.py"]
    light = store.records([store.run_row(rid)], heavy=False)[0]
    assert "diff" not in light["git"]


def test_nan_is_stored_explicitly(store):
    pts = [Point(0, 1.0), Point(1, 0.5), Point(2, math.nan), Point(3, math.nan)]
    rid, _ = store.save_run(facts(metrics={"loss": pts}))
    m = store.record(rid)["metrics"]["loss"]
    assert m["last"] == "nan" and m["nonfinite_step"] == 2 and m["min"] == 0.5
    series = store.series(rid)["loss"]
    assert math.isnan(series[2].value)


def test_series_downsampled_keeps_extremes_and_first_nonfinite(store):
    n = 100_000
    pts = [Point(i, math.sin(i / 1000)) for i in range(n)]
    pts[777] = Point(777, -50.0)
    pts[60_000] = Point(60_000, math.inf)
    rid, _ = store.save_run(facts(metrics={"x": pts}))
    series = store.series(rid)["x"]
    assert len(series) <= MAX_POINTS
    steps = [p.step for p in series]
    assert steps[0] == 0 and steps[-1] == n - 1
    assert 777 in steps and 60_000 in steps
    assert steps == sorted(steps)
    m = store.record(rid)["metrics"]["x"]
    assert m["count"] == n and m["min"] == -50.0 and m["nonfinite_step"] == 60_000


def test_append_metrics_matches_full_summary(store):
    pts = [Point(i, 1.0 / (i + 1)) for i in range(3000)]
    rid, _ = store.save_run(facts(metrics={"loss": pts[:1000]}))
    store.append_metrics(rid, {"loss": pts[1000:2000]})
    store.append_metrics(rid, {"loss": pts[2000:]})
    m = store.record(rid)["metrics"]["loss"]
    assert m["count"] == 3000 and m["step"] == 2999 and m["max"] == 1.0
    assert len(store.series(rid)["loss"]) <= MAX_POINTS


def test_blobs_are_shared_by_content(store):
    env_diff = "x" * 100_000
    g = GitState(root="/p", commit="b" * 40, diff=env_diff)
    store.save_run(facts("/r/1", git=g))
    store.save_run(facts("/r/2", git=g))
    n, total = store.conn.execute(
        "SELECT count(*), sum(length(data)) FROM blobs WHERE size = 100000"
    ).fetchone()
    assert n == 1 and total < 2000  # stored once, compressed


def test_notes_and_tags_survive_reimport(store):
    rid, _ = store.save_run(facts())
    store.add_note(rid, "lr too high, diverged", kind="failure")
    store.add_tags(rid, ["baseline"])
    store.save_run(facts())
    rec = store.record(rid)
    assert rec["tags"] == ["baseline"]
    assert (
        rec["notes"][0]["text"] == "lr too high, diverged" and rec["notes"][0]["kind"] == "failure"
    )


def test_non_utf8_path_is_stored(store):
    odd = os.fsdecode(b"/runs/caf\xe9")
    rid, _ = store.save_run(facts(odd))
    assert store.record(rid)["path"] == "/runs/caf\\xe9"


def test_data_version_changes_on_other_connection_commit(db_path):
    with Store.open(db_path) as a, Store.open(db_path) as b:
        before = a.data_version()
        b.save_run(facts())
        assert a.data_version() != before


def test_processes_creating_one_database_at_once(tmp_path):
    """Several processes opening a new database together: one migrates, none fails."""
    import subprocess
    import sys

    db = tmp_path / "new.db"
    code = "import sys; from labbook.store import Store; Store.open(sys.argv[1]).close()"
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(db)], stderr=subprocess.PIPE, text=True)
        for _ in range(6)
    ]
    errors = [p.communicate(timeout=60)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, errors
    conn = sqlite3.connect(db)
    applied = [r[0] for r in conn.execute("SELECT name FROM _sqlite_migrations")]
    assert len(applied) == len(set(applied)) == SCHEMA_VERSION


@pytest.mark.parametrize(("repo_root", "index"), [("/work/proj", "runs_git"), (None, "runs_cwd")])
def test_check_finds_past_runs_of_its_place_by_an_index(db_path, repo_root, index):
    """`labbook check` (the shell hooks' path) looks up the runs of one repository, or
    outside a work tree of one directory, with an index, not a scan of every run."""
    from labbook.analysis.check import check, split_line

    with Store.open(db_path) as s:
        for i in range(3):
            s.save_run(facts(f"/runs/{i}", status="failed", cwd="/work/other"))
        statements: list[str] = []
        s.conn.set_trace_callback(statements.append)
        check(s, repo_root=repo_root, config={}, argv=split_line("python train.py --lr 5"),
              cwd="/work/proj")  # fmt: skip
        s.conn.set_trace_callback(None)
        lookup = [q for q in statements if "FROM runs r" in q]
        assert lookup, statements
        plan = " ".join(row[3] for row in s.conn.execute("EXPLAIN QUERY PLAN " + lookup[0]))
        assert f"SEARCH r USING INDEX {index}" in plan, plan
