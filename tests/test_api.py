"""The Python API (labbook.open): a real store filled through the real CLI, then read
and written through the library, and the writes seen through `labbook show --json`."""

from __future__ import annotations

import importlib.util
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import labbook
from labbook.errors import LabbookError, QueryError, RunNotFound, StoreError
from tests.conftest import REPO


def cli(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "labbook", "--db", str(db), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )


def short(record: object) -> str:
    """A run's name without the import root's folder (the CLI names runs by their path)."""
    assert isinstance(record, dict)
    return str(record["name"]).rsplit("/", 1)[-1]


def write_run(root: Path, name: str, lr: float, status: str, losses: list[float]) -> None:
    d = root / name
    d.mkdir(parents=True)
    (d / "labbook.json").write_text(
        json.dumps(
            {
                "name": name,
                "config": {"optimizer": {"lr": lr}},
                "status": status,
                "metrics": {"val/loss": losses, "train/loss": [x + 1 for x in losses]},
            }
        )
    )


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("api")
    runs = root / "runs"
    write_run(runs, "alpha", 0.1, "finished", [0.9, 0.5, 0.3])
    write_run(runs, "beta", 0.01, "failed", [1.0, 0.8])
    write_run(runs, "gamma", 0.001, "finished", [0.7, 0.4, 0.2, 0.1])
    db = root / "labbook.db"
    out = cli(db, "import", "--no-git", str(runs))
    assert out.returncode == 0, out.stderr
    return db


@pytest.fixture
def db(filled: Path, tmp_path: Path) -> Path:
    """A copy per test, so writes stay in their test."""
    copy = tmp_path / "labbook.db"
    copy.write_bytes(filled.read_bytes())
    return copy


def test_runs_where_status_limit(db: Path) -> None:
    with labbook.open(db) as nb:
        assert sorted(short(r) for r in nb.runs()) == ["alpha", "beta", "gamma"]
        assert sorted(short(r) for r in nb.runs(where="optimizer.lr>=0.01")) == ["alpha", "beta"]
        assert [short(r) for r in nb.runs(where=["optimizer.lr>=0.01"], status="failed")] == [
            "beta"
        ]
        finished = nb.runs(status=["finished"])
        assert sorted(short(r) for r in finished) == ["alpha", "gamma"]
        assert len(nb.runs(limit=2)) == 2
        # the metric vocabulary, as --where has it: val_loss finds val/loss
        assert [short(r) for r in nb.runs(where="val_loss<0.15")] == ["gamma"]
        rec = finished[0]
        assert rec["metrics"]["val/loss"]["last"] in (0.3, 0.1)
        assert rec["config"]["optimizer.lr"] in (0.1, 0.001)
        with pytest.raises(QueryError):
            nb.runs(where="no_such_key>1")


def test_runs_is_what_ls_json_prints(db: Path) -> None:
    out = cli(db, "ls", "--json", "-n", "0", "--where", "optimizer.lr>=0.01")
    assert out.returncode == 0, out.stderr
    with labbook.open(db) as nb:
        assert json.loads(json.dumps(nb.runs(where="optimizer.lr>=0.01"))) == json.loads(out.stdout)


def test_run_references(db: Path) -> None:
    with labbook.open(db) as nb:
        newest = nb.runs(limit=1)[0]
        last = nb.run("@last")
        assert last["id"] == newest["id"]
        assert nb.run(last["id"][:8])["id"] == last["id"]
        assert short(nb.run("runs/beta")) == "beta"
        assert short(nb.run(nb.run("runs/alpha"))) == "alpha"
        with pytest.raises(RunNotFound):
            nb.run("no-such-run")
    show = cli(db, "show", "--json", "@last")
    assert json.loads(show.stdout)["id"] == last["id"]


def test_curves(db: Path) -> None:
    with labbook.open(db) as nb:
        gamma = nb.run("runs/gamma")
        curves = nb.curves("runs/gamma", "val/loss")
        assert list(curves) == [gamma["id"]]
        assert [p.value for p in curves[gamma["id"]]["val/loss"]] == [0.7, 0.4, 0.2, 0.1]
        # a metric name gives the run's tag for it; None gives every curve
        by_name = nb.curves([gamma, "runs/alpha"], ["val_loss"])
        assert set(by_name[gamma["id"]]) == {"val/loss"}
        assert [p.value for p in by_name[nb.run("runs/alpha")["id"]]["val/loss"]] == [0.9, 0.5, 0.3]
        assert set(nb.curves("runs/beta")[nb.run("runs/beta")["id"]]) == {"val/loss", "train/loss"}


def test_read_only_refuses_writes(db: Path) -> None:
    before = db.read_bytes()
    with labbook.open(db) as nb:
        assert not nb.writable
        with pytest.raises(StoreError, match="read-only"):
            nb.note("@last", "hello")
        with pytest.raises(StoreError, match="read-only"):
            nb.tag("@last", "x")
        # not even the store underneath can write: the file is opened mode=ro
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            nb.store.add_tags(nb.run("@last")["id"], ["sneaky"])
    assert db.read_bytes() == before


def test_writable_note_and_tag_show_in_cli(db: Path) -> None:
    with labbook.open(db, writable=True) as nb:
        note_id = nb.note("runs/beta", "lr too low", kind="failure")
        assert nb.tag("runs/beta", "baseline", "keep") == ["baseline", "keep"]
        assert nb.tag("runs/beta", "keep", remove=True) == ["baseline"]
        with pytest.raises(LabbookError):
            nb.note("runs/beta", "x", kind="rant")
        with pytest.raises(LabbookError):
            nb.tag("runs/beta", "two words")
    show = cli(db, "show", "--json", "runs/beta")
    assert show.returncode == 0, show.stderr
    rec = json.loads(show.stdout)
    assert rec["tags"] == ["baseline"]
    assert [(n["id"], n["kind"], n["text"]) for n in rec["notes"]] == [
        (note_id, "failure", "lr too low")
    ]


def test_default_db_from_environment(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABBOOK_DB", str(db))
    with labbook.open() as nb:
        assert nb.path == db
        assert len(nb.runs()) == 3
    monkeypatch.delenv("LABBOOK_DB")
    xdg = Path(os.environ["XDG_DATA_HOME"]) / "labbook" / "labbook.db"
    with pytest.raises(StoreError, match="no labbook database"):
        labbook.open()
    assert not xdg.exists()  # opening never creates a database


def test_to_pandas(db: Path) -> None:
    """A DataFrame where pandas is installed; else the one clear error (this venv
    has no pandas: labbook does not depend on it)."""
    with labbook.open(db) as nb:
        if importlib.util.find_spec("pandas") is None:
            with pytest.raises(LabbookError) as err:
                nb.to_pandas()
            assert str(err.value) == "pandas is not installed; pip install pandas"
            return
        frame = nb.to_pandas(status="finished")
    assert sorted(frame["name"]) == ["alpha", "gamma"]
    assert "config.optimizer.lr" in frame.columns
    assert "metrics.val/loss" in frame.columns


def test_import_labbook_stays_cheap() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import labbook, sys; print('labbook.api' in sys.modules, 'labbook.store' in sys.modules)"
            "; labbook.open; print('labbook.api' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    )
    assert out.stdout.split() == ["False", "False", "True"]
