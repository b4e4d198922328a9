"""The spool's files (labbook/store/remote/spool.py) without a server: format, names,
atomic private writes, bad files set aside. Ingest into a real PostgreSQL is tested
in tests/test_remote_faults.py."""

from __future__ import annotations

import logging
import math
import os
import sqlite3
import stat
from pathlib import Path
from typing import Any

import pytest

from labbook.store.remote import spool


def sample_batch() -> dict[str, Any]:
    return {
        "origin": "a1b2c3",
        "gen": 7,
        "runs": [{"id": "0123456789ab", "name": "ünï 中文", "loss": float("nan"), "n": 3}],
        "blobs": {"ff00": b"\x00\x01\xffzlib"},
        "marks": [("0123456789ab", "run"), ("0123456789ab", "notes")],
        "by_key": {("r", 1): "tuple key", "$odd": 1},
    }


def test_batch_round_trips() -> None:
    batch = sample_batch()
    back = spool.decode_batch(spool.encode_batch(batch))
    assert math.isnan(back["runs"][0].pop("loss"))
    batch["runs"][0].pop("loss")
    assert back == batch
    assert back["marks"][0] == ("0123456789ab", "run")  # tuples stay tuples
    assert isinstance(back["blobs"]["ff00"], bytes)


def test_write_is_atomic_private_and_named_by_origin_and_gen(tmp_path: Path) -> None:
    directory = tmp_path / "home" / "spool"
    path = spool.write_file(directory, "a1b2c3", 7, sample_batch())
    assert path.name == "a1b2c3-000000000007.lbspool"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert os.listdir(directory) == [path.name]  # no temporary file left behind
    assert spool.read_file(path)["gen"] == 7
    # the same origin and generation is the same batch: written again, one file
    spool.write_file(directory, "a1b2c3", 7, sample_batch())
    assert os.listdir(directory) == [path.name]


def test_a_wide_open_spool_dir_is_made_private(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    directory.mkdir(mode=0o777)
    directory.chmod(0o777)
    spool.write_file(directory, "o", 1, {})
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700


def test_pending_files_skip_temporary_and_bad_and_sort_by_generation(tmp_path: Path) -> None:
    for gen in (10, 2):
        spool.write_file(tmp_path, "bbb", gen, {"gen": gen})
    spool.write_file(tmp_path, "aaa", 5, {})
    (tmp_path / ".bbb-000000000011.lbspool.123.tmp").write_bytes(b"half")
    (tmp_path / "bbb-000000000001.lbspool.bad").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("unrelated")
    names = [p.name for p in spool.pending_files(tmp_path)]
    assert names == [
        "aaa-000000000005.lbspool",
        "bbb-000000000002.lbspool",
        "bbb-000000000010.lbspool",
    ]
    assert spool.pending_files(tmp_path / "missing") == []


def test_origin_must_be_a_plain_name() -> None:
    with pytest.raises(ValueError):
        spool.spool_name("../etc", 1)


def real_conn(tmp_path: Path) -> sqlite3.Connection:
    """ingest_files only commits and rolls back itself; apply() does the SQL. A real
    SQLite connection stands in for the server's here (the PostgreSQL ingest is in
    tests/test_remote_faults.py)."""
    tmp_path.mkdir(exist_ok=True)
    conn = sqlite3.connect(tmp_path / "server.db")
    conn.execute("CREATE TABLE got (n INTEGER)")
    conn.commit()
    return conn


def test_ingest_commits_then_deletes_and_sets_bad_files_aside(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sp = tmp_path / "spool"
    good = spool.write_file(sp, "aaa", 1, {"runs": [1, 2]})
    trunc = spool.write_file(sp, "bbb", 1, {"runs": [1]})
    trunc.write_bytes(trunc.read_bytes()[:-5])
    alien = sp / "ccc-000000000001.lbspool"
    alien.write_bytes(b"PK\x03\x04 not ours")

    def apply(conn: Any, batch: Any) -> int:
        conn.executemany("INSERT INTO got VALUES (?)", [(n,) for n in batch["runs"]])
        return len(batch["runs"])

    conn = real_conn(tmp_path / "spool-srv")
    with caplog.at_level(logging.WARNING, logger="labbook"):
        result = spool.ingest_files(conn, sp, apply)
    assert (result.files, result.runs, result.bad) == (1, 2, 2)
    assert sqlite3.connect(tmp_path / "spool-srv" / "server.db").execute(
        "SELECT count(*) FROM got"
    ).fetchone() == (2,)  # committed
    assert not good.exists()
    assert sorted(p.name for p in sp.iterdir()) == [
        "bbb-000000000001.lbspool.bad",
        "ccc-000000000001.lbspool.bad",
    ]
    assert len([r for r in caplog.records if "kept as" in r.getMessage()]) == 2


def test_ingest_stops_and_keeps_the_file_when_the_server_fails(tmp_path: Path) -> None:
    sp = tmp_path / "spool"
    path = spool.write_file(sp, "aaa", 1, {"runs": []})

    class Down(Exception):
        pass

    def apply(conn: Any, batch: Any) -> int:
        raise Down("server went away")

    with pytest.raises(Down):
        spool.ingest_files(real_conn(tmp_path / "srv"), sp, apply)
    assert path.exists()
