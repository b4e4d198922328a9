"""wandb's binary run log (tests/fixtures/wandb), read with labbook's own declarations."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys

import pytest

from labbook.readers.wandb_log import HEADER, read_wandb_log
from tests.conftest import FIXTURES

RUNS = FIXTURES / "wandb" / "wandb"


def _binary(name: str):
    for run in sorted(RUNS.glob("offline-run-*")):
        for f in run.glob("run-*.wandb"):
            log = read_wandb_log(f)
            if log is not None and log.name == name:
                return f
    raise AssertionError(f"no fixture run named {name}")


def test_finished_run_has_config_history_summary_exit():
    log = read_wandb_log(_binary("fx-ok"))
    assert log is not None and not log.truncated
    assert log.exit_code == 0
    assert log.config["seed"] == 5 and log.config["model"] == {"layers": 2, "hidden": 32}
    assert [p.step for p in log.history["loss"]][-1] == 29 and len(log.history["loss"]) == 30
    assert len(log.history["val/loss"]) == 3
    assert log.summary["best_acc"] == pytest.approx(0.93801)
    assert log.command and log.command[1].endswith("make_fixture.py")


def test_crashed_run_exit_code():
    log = read_wandb_log(_binary("fx-crash"))
    assert log is not None and log.exit_code == 1
    assert len(log.history["loss"]) == 12


def test_torn_tail_keeps_rows_before_it(tmp_path, caplog):
    src = _binary("fx-ok")
    data = src.read_bytes()
    for cut in (len(data) // 3, len(data) // 2, len(data) - 5):
        torn = tmp_path / f"run-{cut}.wandb"
        torn.write_bytes(data[:cut])
        log = read_wandb_log(torn)
        assert log is not None
        assert log.exit_code is None  # the exit record is the last thing written
        assert log.config["seed"] == 5
        assert len(log.history.get("loss", [])) <= 30
    mid_chunk = tmp_path / "run-mid.wandb"
    mid_chunk.write_bytes(data[:-5])
    assert read_wandb_log(mid_chunk).truncated


def test_corrupt_chunk_stops_with_warning(tmp_path, caplog):
    data = bytearray(_binary("fx-ok").read_bytes())
    data[-40] ^= 0xFF  # inside the last records (after history)
    bad = tmp_path / "run-bad.wandb"
    bad.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="labbook"):
        log = read_wandb_log(bad)
    assert log is not None and log.truncated and log.history


def test_not_a_wandb_log(tmp_path, caplog):
    junk = tmp_path / "run-x.wandb"
    junk.write_bytes(b"\x00garbage" * 100)
    with caplog.at_level(logging.WARNING, logger="labbook"):
        assert read_wandb_log(junk) is None
    assert "run-x.wandb" in caplog.text and "bad header" in caplog.text
    empty = tmp_path / "run-e.wandb"
    empty.write_bytes(HEADER)
    log = read_wandb_log(empty)
    assert log is not None and not log.history and log.exit_code is None


def test_without_wandb_the_binary_log_is_read(tmp_path):
    """With wandb not importable each run is recorded from run-<id>.wandb, seed and all."""
    copy = tmp_path / "wandb"
    shutil.copytree(FIXTURES / "wandb", copy, symlinks=True)
    db = tmp_path / "db.sqlite"
    code = "import sys; sys.modules['wandb'] = None; from labbook.cli import main; sys.exit(main())"
    base = [sys.executable, "-c", code, "--db", str(db)]
    subprocess.run([*base, "import", str(copy)], capture_output=True, text=True, check=True)
    out = subprocess.run([*base, "ls", "--json"], capture_output=True, text=True, check=True)
    runs = {r["name"]: r for r in json.loads(out.stdout)}
    assert set(runs) == {"fx-ok", "fx-crash"}
    assert runs["fx-ok"]["status"] == "finished"
    assert runs["fx-ok"]["seed"] == {"value": 5, "source": "config:seed", "known": True}
    assert runs["fx-crash"]["seed"]["value"] == 6
    crashed = runs["fx-crash"]
    assert crashed["status"] == "failed" and "simulated crash" in crashed["failure"]["message"]


def test_torn_before_the_run_record(tmp_path):
    """The init config is in the run record: a log torn before it says so."""
    data = _binary("fx-ok").read_bytes()
    torn = tmp_path / "run-t.wandb"
    torn.write_bytes(data[:80])
    log = read_wandb_log(torn)
    assert log is not None and log.truncated and not log.run_record and not log.config
    assert read_wandb_log(_binary("fx-ok")).run_record
