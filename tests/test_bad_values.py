"""Bad values cost only themselves, end to end (issue 9, item 4; the readers' part of item 7).

Each case goes through the real ``labbook import`` in a child process and checks
that one warning line names the file and the bad field, and that the rest of the
run (its other points, its config) is recorded. Where import and ``labbook watch``
must agree, the same directory is also recorded by the real daemon (in-process,
a real observer, real writer processes, as in test_watch_daemon.py) and the two
databases are compared point by point.

Step-less TensorBoard scalars: ``add_scalar(tag, v)`` without ``global_step``
(and step 0 repeated, which proto3 writes the same way) read step 0 for every
point. TensorBoard's EventAccumulator returns them all at step 0, in file
order; labbook keeps that order and numbers them 0, 1, 2, … (the arrival
index), per tag and event file, in the full read and the live tail alike.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path
from typing import Any

import pytest

from labbook.store import Store, safe_text
from tests.test_bad_input import WARN, check, import_, show
from tests.test_watch_daemon import start_daemon, wait_for

tbx = pytest.importorskip("tensorboardX")


# --------------------------------------------------------------------------- helpers


def recorded(db: Path, path: Path) -> dict[str, tuple[Any, list[tuple[int, float]]]]:
    """tag -> ((count, last, min, max, step), series points as (step, value)) from the db."""
    with Store.open(db) as s:
        rid = s.id_for_source(safe_text(str(path)) or str(path))
        assert rid, f"{path} not recorded"
        out: dict[str, tuple[Any, list[tuple[int, float]]]] = {}
        for tag, count, last, lo, hi, step in s.conn.execute(
            "SELECT tag, count, last, min, max, step FROM metrics WHERE run_id = ?", (rid,)
        ):
            (blob,) = s.conn.execute(
                "SELECT points FROM series WHERE run_id = ? AND tag = ?", (rid, tag)
            ).fetchone()
            points = [(int(p[0]), float(p[1])) for p in json.loads(zlib.decompress(blob))]
            out[tag] = ((count, last, lo, hi, step), points)
    return out


def record_of(db: Path, path: Path) -> dict[str, Any] | None:
    if not db.exists():
        return None
    with Store.open(db) as s:
        rid = s.id_for_source(safe_text(str(path)) or str(path))
        return s.record(rid) if rid else None


def watched(tmp_path: Path, root: Path, script: str, run: Path) -> Path:
    """Run the writer ``script`` under a live daemon watching ``root``; the daemon's db."""
    db = tmp_path / "watch.db"
    d, out = start_daemon(db, root, inactivity=4.0)
    try:
        w = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(script), os.fsencode(run)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert w.returncode == 0, w.stderr
        wait_for(lambda: (r := record_of(db, run)) and r["ended_at"] and r, what="the run to end")
    finally:
        d.stop()
    assert "Traceback" not in out.getvalue(), out.getvalue()
    return db


def imported(tmp_path: Path, path: Path) -> tuple[Path, subprocess.CompletedProcess[str]]:
    db = tmp_path / "import.db"
    return db, import_(db, path)


def stepless_events(run: Path, values: list[float], *, zero: bool = False) -> Path:
    w = tbx.SummaryWriter(str(run))
    for i, v in enumerate(values):
        if zero:
            w.add_scalar("loss", v, 0, walltime=1_700_000_000 + i)
        else:
            w.add_scalar("loss", v, walltime=1_700_000_000 + i)
        w.add_scalar("lr", 0.1, i, walltime=1_700_000_000 + i)
    w.close()
    (path,) = run.glob("events.out.tfevents.*")
    return path


# --------------------------------------------------------------------------- step-less scalars

VALUES = [1.0, 0.5, 0.25, 0.125, 0.0625]


@pytest.mark.parametrize("zero", [False, True], ids=["no-step", "step-0-repeated"])
def test_stepless_tensorboard_scalars_are_read_in_arrival_order(
    tmp_path: Path, db_path: Path, zero: bool
) -> None:
    run = tmp_path / "runs" / "tb"
    stepless_events(run, VALUES, zero=zero)
    check(import_(db_path, run))
    rec = show(db_path, "@last")
    assert rec["metrics"]["loss"]["count"] == 5 and rec["metrics"]["loss"]["step"] == 4
    assert rec["metrics"]["lr"]["count"] == 5  # a stepped tag beside it is untouched
    _, points = recorded(db_path, run)["loss"]
    assert points == list(enumerate(VALUES))

    # TensorBoard shows the same values in the same order, all at step 0.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run))
    acc.Reload()
    shown = acc.Scalars("loss")
    assert [e.step for e in shown] == [0] * 5
    assert [e.value for e in shown] == [v for _, v in points]


STEPLESS_WRITER = """
    import sys, time, os
    from tensorboardX import SummaryWriter
    w = SummaryWriter(os.fsdecode(sys.argv[1]), flush_secs=1)
    for i in range(40):
        w.add_scalar("loss", 1.0 / (i + 1))
        w.add_scalar("acc", i / 40, i)
        if i % 8 == 7:
            w.flush()
            time.sleep(0.4)
    w.close()
"""


def test_stepless_scalars_watch_agrees_with_import(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    root.mkdir()
    run = root / "tb"
    wdb = watched(tmp_path, root, STEPLESS_WRITER, run)
    idb, r = imported(tmp_path, run)
    check(r)
    live, full = recorded(wdb, run), recorded(idb, run)
    assert live == full
    assert full["loss"][1] == [(i, pytest.approx(1.0 / (i + 1))) for i in range(40)]


# --------------------------------------------------------------------------- one bad value


def generic(run: Path, lines: list[str]) -> Path:
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("lr: 0.1\nseed: 3\n")
    (run / "metrics.jsonl").write_text("".join(line + "\n" for line in lines))
    return run / "metrics.jsonl"


@pytest.mark.parametrize(
    ("bad_line", "field", "what"),
    [
        ('{"step": 9223372036854775808, "loss": 0.5}', "'step' on line 2", "out of range"),
        ('{"step": 1e300, "loss": 0.5}', "'step' on line 2", "out of range"),
        ('{"step": Infinity, "loss": 0.5}', "'step' on line 2", "not a finite step"),
        ('{"step": 1, "loss": %s}' % ("9" * 400), "'loss' on line 2", "400-digit"),
        ('{"step": 1, "lo\\ud800ss": 0.5}', "'lo\\ud800ss' on line 2", "not valid text"),
    ],
    ids=["step-2**63", "step-1e300", "step-infinity", "400-digit-loss", "surrogate-key"],
)
def test_one_bad_value_in_metrics_jsonl(
    tmp_path: Path, db_path: Path, bad_line: str, field: str, what: str
) -> None:
    path = generic(
        tmp_path / "runs" / "r",
        ['{"step": 0, "loss": 1.0, "acc": 0.1}', bad_line, '{"step": 2, "loss": 0.25}'],
    )
    (line,) = check(import_(db_path, path.parent), path)
    assert f"field {field}" in line and what in line, line
    rec = show(db_path, "@last")
    assert rec["config"] == {"lr": 0.1, "seed": 3}
    assert rec["metrics"]["loss"]["count"] == 2 and rec["metrics"]["loss"]["last"] == 0.25
    assert rec["metrics"]["acc"]["count"] == 1
    assert rec["metrics"]["loss"]["step"] == 2


def hf_run(run: Path, state: dict[str, Any] | str) -> Path:
    run.mkdir(parents=True)
    text = state if isinstance(state, str) else json.dumps(state)
    (run / "trainer_state.json").write_text(text)
    (run / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 8}))
    return run / "trainer_state.json"


@pytest.mark.parametrize(
    ("history", "field", "what", "losses"),
    [
        (
            '[{"step": 1, "loss": 1.0}, {"step": Infinity, "loss": 0.5}, {"step": 3, "loss": 0.2}]',
            "'step' in log_history[1]",
            "not a finite step",
            2,
        ),
        (
            '[{"step": 1, "loss": 1.0}, {"step": 18446744073709551616, "loss": 0.5},'
            ' {"step": 3, "loss": 0.2}]',
            "'step' in log_history[1]",
            "out of range",
            2,
        ),
        (
            '[{"step": 1, "loss": 1.0}, {"step": 2, "loss": %s}, {"step": 3, "loss": 0.2}]'
            % ("7" * 400),
            "'loss' in log_history[1]",
            "400-digit",
            2,
        ),
        (
            '[{"step": 1, "loss": 1.0}, {"step": 2, "lo\\ud800ss": 0.5}, {"step": 3, "loss": 0.2}]',
            "'log_history[1].lo\\ud800ss'",
            "not valid text",
            3 - 1,
        ),
        ("5", "'log_history'", "not a list", 0),
    ],
    ids=["step-infinity", "step-2**64", "400-digit-loss", "surrogate-key", "log-history-5"],
)
def test_one_bad_value_in_trainer_state(
    tmp_path: Path, db_path: Path, history: str, field: str, what: str, losses: int
) -> None:
    text = (
        '{"global_step": 3, "max_steps": 3, "train_batch_size": 8, "log_history": ' + history + "}"
    )
    path = hf_run(tmp_path / "runs" / "hf", text)
    (line,) = check(import_(db_path, path.parent), path)
    assert f"field {field}" in line and what in line, line
    rec = show(db_path, "@last")
    assert rec["framework"] == "hf-trainer"
    assert rec["config"]["train_batch_size"] == 8 and rec["config"]["model.hidden_size"] == 8
    if losses:
        assert rec["metrics"]["loss"]["count"] == losses
        assert rec["metrics"]["loss"]["last"] == 0.2
    else:
        assert "loss" not in rec["metrics"]


def test_surrogate_key_and_huge_int_in_a_config(tmp_path: Path, db_path: Path) -> None:
    run = tmp_path / "runs" / "c"
    run.mkdir(parents=True)
    (run / "config.json").write_text(
        '{"lr": 0.1, "na\\ud800me": 1, "note": "a\\udc00b", "big": %s}' % ("7" * 400)
    )
    (run / "metrics.jsonl").write_text('{"step": 0, "loss": 1.0}\n{"step": 1, "loss": 0.5}\n')
    first, second = check(import_(db_path, run), run / "config.json", run)
    assert "field 'na\\ud800me'" in first
    assert "field 'big'" in second and "400-digit" in second
    rec = show(db_path, "@last")
    assert rec["config"] == {"lr": 0.1, "note": "a\ufffdb"}
    assert rec["metrics"]["loss"]["count"] == 2


def _record(data: bytes) -> bytes:
    import google_crc32c

    from labbook.readers.tfevents import _masked_crc

    head = struct.pack("<Q", len(data))
    return (
        head
        + struct.pack("<I", _masked_crc(google_crc32c.value(head)))
        + data
        + struct.pack("<I", _masked_crc(google_crc32c.value(data)))
    )


def test_protobuf_field_running_past_its_record(tmp_path: Path, db_path: Path) -> None:
    """A CRC-valid record whose tensor field runs past the record: one undecodable record."""
    from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2

    def event(step: int) -> bytes:
        tensor = tensor_pb2.TensorProto(dtype=2, double_val=[1.0 / (step + 1)])  # DT_DOUBLE
        value = summary_pb2.Summary.Value(tag="loss", tensor=tensor)
        return event_pb2.Event(
            wall_time=1.7e9 + step, step=step, summary=summary_pb2.Summary(value=[value])
        ).SerializeToString()

    run = tmp_path / "runs" / "tb"
    run.mkdir(parents=True)
    datas = [event(s) for s in range(6)]
    datas[3] = datas[3][:-3]  # the double's last bytes are gone, its lengths unchanged
    path = run / "events.out.tfevents.1700000000.host"
    path.write_bytes(b"".join(map(_record, datas)))
    (line,) = check(import_(db_path, run), path)
    assert "1 record(s) that are not TensorBoard events" in line
    rec = show(db_path, "@last")
    assert rec["metrics"]["loss"]["count"] == 5 and rec["metrics"]["loss"]["step"] == 5


# --------------------------------------------------------------------------- line files beside events

MIXED_WRITER = """
    import json, os, sys, time
    from tensorboardX import SummaryWriter
    run = os.fsdecode(sys.argv[1])
    os.makedirs(run)
    with open(os.path.join(run, "metrics.jsonl"), "a") as f:
        for i in range(5):  # the line file first: the daemon follows it alone for a while
            f.write(json.dumps({"step": i, "eval/acc": i / 10, "train/loss": 99.0}) + "\\n")
            f.flush()
            time.sleep(0.2)
        time.sleep(1.0)
        w = SummaryWriter(run, flush_secs=1)
        for i in range(30):
            w.add_scalar("train/loss", 1.0 / (i + 1), i)
            if i % 10 == 9:
                w.flush()
                f.write(json.dumps({"step": 5 + i, "eval/acc": 0.9, "train/loss": 99.0}) + "\\n")
                f.flush()
                time.sleep(0.3)
        w.close()
"""


def test_metrics_jsonl_beside_an_event_file_import_and_watch_agree(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    root.mkdir()
    run = root / "mixed"
    wdb = watched(tmp_path, root, MIXED_WRITER, run)
    idb, r = imported(tmp_path, run)
    check(r)
    full = recorded(idb, run)
    # One run, all series; the event file's train/loss wins over the line file's.
    assert set(full) == {"train/loss", "eval/acc"}
    assert full["train/loss"][0][0] == 30 and full["eval/acc"][0][0] == 8
    assert 99.0 not in [v for _, v in full["train/loss"][1]]
    assert recorded(wdb, run) == full


# --------------------------------------------------------------------------- import and watch alike

NON_UTF8_WRITER = """
    import json, os, sys, time
    run = os.fsdecode(sys.argv[1])
    os.makedirs(run)
    with open(os.path.join(run, "config.yaml"), "w") as f:
        f.write("lr: 0.1\\n")
    with open(os.path.join(run, "metrics.jsonl"), "a") as f:
        for i in range(20):
            f.write(json.dumps({"step": i, "loss": 1.0 / (i + 1)}) + "\\n")
            f.flush()
            time.sleep(0.05)
"""


def test_non_utf8_directory_name_in_watch_as_in_import(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    root.mkdir()
    run = Path(os.fsdecode(os.fsencode(root) + b"/r\xffn-\xe9"))
    wdb = watched(tmp_path, root, NON_UTF8_WRITER, run)
    idb, r = imported(tmp_path, run)
    check(r)
    full = recorded(idb, run)
    assert full["loss"][0][0] == 20
    assert recorded(wdb, run) == full


NUL_CSV_WRITER = """
    import os, sys, time
    run = os.fsdecode(sys.argv[1])
    os.makedirs(run)
    with open(os.path.join(run, "config.yaml"), "w") as f:
        f.write("lr: 0.1\\n")
    with open(os.path.join(run, "metrics.csv"), "ab") as f:
        f.write(b"step,loss\\n")
        for i in range(12):
            if i == 6:  # a zero-filled block, as a crash can leave one
                f.write(b"\\x00" * 40 + b"\\n" + b"3,\\x000.5\\n")
            f.write(b"%d,%f\\n" % (i, 1.0 / (i + 1)))
            f.flush()
            time.sleep(0.05)
"""


def test_nul_bytes_in_a_csv_are_treated_alike(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    root.mkdir()
    run = root / "csv"
    wdb = watched(tmp_path, root, NUL_CSV_WRITER, run)
    idb, r = imported(tmp_path, run)
    (line,) = check(r, run / "metrics.csv")
    assert "2 malformed CSV lines skipped (first at line 8)" in line and "NUL" in line
    full = recorded(idb, run)
    assert full["loss"][0][0] == 12
    assert recorded(wdb, run) == full


# --------------------------------------------------------------------------- symlinks and stderr


def test_symlinks_leaving_the_run_dir_are_listed_not_followed(
    tmp_path: Path, db_path: Path
) -> None:
    secret = tmp_path / "home" / ".ssh"
    secret.mkdir(parents=True)
    (secret / "id_test").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nloss=0.5 step=1\n")
    (secret / "cfg.yaml").write_text("token: hunter2\n")
    run = tmp_path / "runs" / "r"
    generic(run, ['{"step": 0, "loss": 1.0}', '{"step": 1, "loss": 0.5}'])
    (run / "config.yaml").unlink()
    (run / "config.yaml").symlink_to(secret / "cfg.yaml")
    (run / "train.log").symlink_to(secret / "id_test")
    (run / "inside.log").symlink_to("metrics.jsonl")  # stays inside: followed as usual
    lines = check(import_(db_path, run), run / "config.yaml", run / "train.log")
    assert all("outside the run directory: listed, not followed" in x for x in lines)
    assert str(secret / "cfg.yaml") in lines[0]
    rec = show(db_path, "@last")
    assert rec["metrics"]["loss"]["count"] == 2
    assert rec["config"] == {}
    with Store.open(db_path) as s:
        dump = "\n".join(s.conn.iterdump())
    assert "PRIVATE KEY" not in dump and "hunter2" not in dump


def test_printed_config_parsing_writes_no_python_warnings(tmp_path: Path, db_path: Path) -> None:
    run = tmp_path / "runs" / "log"
    run.mkdir(parents=True)
    (run / "train.log").write_text(
        "Namespace(lr=0.1, warmup=1if 1else 2, path='C:\\data\\d')\n"
        "config: {'lr': 0.1, 'x': 0x1for}\n"
        "epoch 1 loss=0.5\n"
    )
    r = subprocess.run(
        [
            sys.executable,
            "-W",
            "default",
            "-m",
            "labbook",
            "--db",
            str(db_path),
            "import",
            str(run),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    check(r)
    assert "Warning" not in r.stderr, r.stderr
    rec = show(db_path, "@last")
    assert rec["config"]["lr"] == 0.1 and rec["metrics"]["loss"]["count"] == 1
    assert WARN not in r.stderr
