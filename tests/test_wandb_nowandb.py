"""wandb's binary log read without wandb: labbook's own message declarations.

The fixtures (tests/fixtures/wandb, made by make_fixture.py with wandb 0.31) are
offline runs whose config, history, summary and exit code are only in the binary
``run-<id>.wandb``. They are imported through the real CLI in child processes,
once with wandb importable and once with every ``wandb`` import refused by a
meta-path finder: the records must be the same, and right. The declarations in
labbook.readers.wandb_proto are checked against wandb's own descriptors, and
every record of the fixtures is decoded by both and compared field by field.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.message import Message

from labbook.readers.wandb_log import chunks, read_wandb_log
from labbook.readers.wandb_proto import ENUMS, MESSAGES, PACKAGE, record_class
from tests.conftest import FIXTURES
from tests.fuzz import framing

RUNS = FIXTURES / "wandb" / "wandb"
EXPECTED = json.loads((FIXTURES / "wandb" / "expected.json").read_text())["runs"]

#: Runs labbook's CLI (``python -c`` + runpy) with ``wandb`` and its submodules
#: refused at import, or not; prints on exit how many wandb modules were loaded.
_WRAPPER = """
import atexit, runpy, sys
if sys.argv[1] == "block":
    class NoWandb:
        def find_spec(self, name, path=None, target=None):
            if name == "wandb" or name.startswith("wandb."):
                raise ImportError(f"{name} is not installed here (blocked by the test)")
            return None
    sys.meta_path.insert(0, NoWandb())
atexit.register(lambda: sys.stderr.write(
    "wandb modules loaded: %d\\n" % sum(m.split(".")[0] == "wandb" for m in sys.modules)))
sys.argv = ["labbook", *sys.argv[2:]]
runpy.run_module("labbook", run_name="__main__", alter_sys=True)
"""


def _labbook(mode: str, db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(
        [sys.executable, "-c", _WRAPPER, mode, "--db", str(db), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "wandb modules loaded: 0" in out.stderr  # never imported, even where it could be
    return out


def _records(mode: str, tree: Path, db: Path) -> dict[str, dict[str, Any]]:
    _labbook(mode, db, "import", str(tree))
    listed = json.loads(_labbook(mode, db, "ls", "--json").stdout)
    shown = {}
    for rec in listed:
        full = json.loads(_labbook(mode, db, "show", rec["id"], "--json").stdout)
        shown[Path(full["path"]).name] = full
    return shown


def test_blocked_wandb_cannot_be_imported() -> None:
    """The wrapper really takes wandb away (and wandb really is there without it)."""
    probe = "import wandb.proto.wandb_internal_pb2"
    blocked = _WRAPPER.split("atexit.register")[0].replace("sys.argv[1]", '"block"')
    out = subprocess.run(
        [sys.executable, "-c", blocked + probe], capture_output=True, text=True, timeout=60
    )
    assert out.returncode != 0 and "blocked by the test" in out.stderr
    assert subprocess.run([sys.executable, "-c", probe], timeout=60).returncode == 0


def test_same_runs_with_and_without_wandb(tmp_path: Path) -> None:
    tree = tmp_path / "fx"
    shutil.copytree(FIXTURES / "wandb" / "wandb", tree / "wandb", symlinks=True)
    with_wandb = _records("allow", tree, tmp_path / "with.db")
    without = _records("block", tree, tmp_path / "without.db")
    assert set(with_wandb) == set(without) == {Path(k).name for k in EXPECTED}
    volatile = ("id", "created_at", "updated_at")
    for name, rec in without.items():
        other = with_wandb[name]
        assert {k: v for k, v in rec.items() if k not in volatile} == {
            k: v for k, v in other.items() if k not in volatile
        }
        want = EXPECTED[f"wandb/{name}"]
        # the config, the seed and the status come from run-<id>.wandb only
        assert rec["config"] == want["config"]
        assert rec["seed"] == {
            "value": want["seed"]["value"],
            "source": "config:seed",
            "known": True,
        }
        assert rec["status"] == want["status"]
        assert rec["name"] == want["run_name"]
        for tag, m in want["metrics"].items():
            got = rec["metrics"][tag]
            assert (got["count"], got["step"]) == (m["count"], m["step"])
            assert got["last"] == pytest.approx(m["last"])
        for key, value in want.get("summary", {}).items():  # summary-only values are metrics too
            assert rec["metrics"][key]["last"] == pytest.approx(value)
        assert rec["command"] and rec["command"][1].endswith("make_fixture.py")
    crashed = [r for r in without.values() if r["status"] == "failed"]
    assert len(crashed) == 1 and crashed[0]["failure"]["message"]


# --------------------------------------------------------------------------- against wandb's classes


def _wandb_pb() -> Any:
    from wandb.proto import wandb_internal_pb2  # a dev dependency: compared against, never used

    return wandb_internal_pb2


def test_declarations_match_wandbs_descriptors() -> None:
    pool = _wandb_pb().Record.DESCRIPTOR.file.pool
    wellknown = {"Timestamp": "google.protobuf.Timestamp", "NullValue": "google.protobuf.NullValue"}
    for name, fields in MESSAGES.items():
        theirs = pool.FindMessageTypeByName(wellknown.get(name, f"{PACKAGE}.{name}"))
        for fname, number, _kind, repeated, type_name, oneof in fields:
            f = theirs.fields_by_number[number]
            assert f.name == fname, (name, number)
            assert f.is_repeated == repeated, (name, fname)
            sub = f.message_type or f.enum_type
            if type_name is None:
                assert sub is None, (name, fname)
            else:
                assert sub.full_name == wellknown.get(type_name, f"{PACKAGE}.{type_name}")
            assert (f.containing_oneof.name if f.containing_oneof else None) == oneof
    mine = record_class().DESCRIPTOR.file.pool
    for name in MESSAGES:
        ours = mine.FindMessageTypeByName(f"{PACKAGE}.{name}")
        theirs = pool.FindMessageTypeByName(wellknown.get(name, f"{PACKAGE}.{name}"))
        for f in ours.fields:  # the built classes: same wire types as wandb's
            assert f.type == theirs.fields_by_number[f.number].type, (name, f.name)
    null = pool.FindEnumTypeByName("google.protobuf.NullValue")
    assert [(v.name, v.number) for v in null.values] == ENUMS["NullValue"]


def _same(ours: Message, theirs: Message, where: str) -> None:
    """Every field labbook declares holds the same in both decodings."""
    for oneof in ours.DESCRIPTOR.oneofs:
        mine = ours.WhichOneof(oneof.name)
        other = theirs.WhichOneof(oneof.name)
        declared = {f.name for f in oneof.fields}
        assert mine == (other if other in declared else None), where
    for f in ours.DESCRIPTOR.fields:
        a, b = getattr(ours, f.name), getattr(theirs, f.name)
        at = f"{where}.{f.name}"
        if f.message_type is not None and f.is_repeated:
            assert len(a) == len(b), at
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                _same(x, y, f"{at}[{i}]")
        elif f.message_type is not None:
            assert ours.HasField(f.name) == theirs.HasField(f.name), at
            _same(a, b, at)
        elif f.is_repeated:
            assert list(a) == list(b), at
        elif isinstance(a, float):
            assert a == b or (math.isnan(a) and math.isnan(b)), at
        else:
            assert a == b and type(a) is type(b), at


def _fixture_payloads() -> list[tuple[str, bytes]]:
    out = []
    for path in sorted(RUNS.glob("offline-run-*/run-*.wandb")):
        out += [(f"{path.name}#{i}", p) for i, p in enumerate(chunks(path.read_bytes()))]
    return out


def test_every_fixture_record_decodes_as_wandb_decodes_it() -> None:
    pb, ours = _wandb_pb(), record_class()
    payloads = _fixture_payloads()
    kinds = set()
    for where, payload in payloads:
        theirs = pb.Record.FromString(payload)
        mine = ours.FromString(payload)
        _same(mine, theirs, where)
        kinds.add(mine.WhichOneof("record_type"))
        # what labbook does not declare is kept, not lost: the bytes come back whole
        assert pb.Record.FromString(mine.SerializeToString()) == theirs, where
    assert {"run", "config", "history", "summary", "environment", "exit"} <= kinds
    assert len(payloads) > 200


def _synthetic_records() -> list[bytes]:
    """Records with the fields the fixtures leave empty, made with wandb's classes."""
    pb = _wandb_pb()
    recs = []
    r = pb.Record()
    r.run.run_id, r.run.display_name, r.run.host = "abc", "synthetic", "gpu-box"
    r.run.tags.extend(["a", "b"])
    r.run.start_time.seconds, r.run.start_time.nanos = 1_700_000_000, 250_000_000
    r.run.git.commit, r.run.git.remote_url = "deadbeef", "https://example.org/x.git"
    u = r.run.config.update.add()
    u.nested_key.extend(["trainer", "seed"])
    u.value_json = "11"
    recs.append(r)
    for fill in (
        lambda i: setattr(i, "integer", -(2**62)),
        lambda i: setattr(i, "number", 0.125),
        lambda i: setattr(i, "boolean", True),
        lambda i: setattr(i, "text", "nan"),
        lambda i: setattr(i, "none", 0),
        lambda i: setattr(i, "json", "3.5"),
        lambda i: setattr(i, "value_json", "7"),
    ):
        r = pb.Record()
        item = r.history.item.add()
        item.key = "v"
        fill(item)
        r.history.step.num = len(recs)
        recs.append(r)
    r = pb.Record()
    env = r.environment
    env.python, env.os, env.program, env.cuda_version = "3.11.7", "Linux", "train.py", "12.4"
    env.args.extend(["--seed", "9"])
    env.gpu_type, env.gpu_count, env.cpu_count = "NVIDIA H100", 2, 32
    for _ in range(2):
        g = env.gpu_nvidia.add()
        g.name, g.memory_total, g.architecture = "NVIDIA H100", 85_000_000_000, "Hopper"
    env.gpu_amd.add().model = "MI300X"
    env.apple.name = "M3"
    env.email = "someone@example.org"  # not declared by labbook: never read
    recs.append(r)
    r = pb.Record()
    r.summary.update.add(key="best", value_json="0.5")
    r.summary.remove.add(key="gone")
    r.config.update.add(key="lr", value_json="0.1")  # a oneof: the summary is dropped
    recs.append(r)
    r = pb.Record()
    r.exit.exit_code, r.exit.runtime = -9, 12
    recs.append(r)
    r = pb.Record()
    r.stats.stats_type = 0  # a record type labbook does not declare
    r.stats.item.add(key="gpu.0.temp", value_json="60")
    recs.append(r)
    return [x.SerializeToString() for x in recs]


def test_synthetic_records_decode_as_wandb_decodes_them(tmp_path: Path) -> None:
    pb, ours = _wandb_pb(), record_class()
    payloads = _synthetic_records()
    for i, payload in enumerate(payloads):
        mine = ours.FromString(payload)
        _same(mine, pb.Record.FromString(payload), f"synthetic#{i}")
        assert "someone@" not in str(mine)  # the e-mail address stays an unknown field
    path = tmp_path / "run-abc.wandb"
    path.write_bytes(framing.wandb_log(payloads))
    log = read_wandb_log(path)
    assert log is not None and not log.truncated and log.run_record
    assert log.config == {"trainer.seed": 11, "lr": 0.1}
    assert (log.name, log.host, log.tags) == ("synthetic", "gpu-box", ["a", "b"])
    assert log.started_at == pytest.approx(1_700_000_000.25)
    assert (log.git_commit, log.git_remote) == ("deadbeef", "https://example.org/x.git")
    values = [p.value for p in log.history["v"]]
    assert values[:2] == [float(-(2**62)), 0.125] and math.isnan(values[2])
    assert values[3:] == [3.5, 7.0]  # boolean and none are no metric values
    assert log.command == ["python", "train.py", "--seed", "9"]
    assert log.metadata["gpu_nvidia"][0]["name"] == "NVIDIA H100"
    assert log.metadata["cuda_version"] == "12.4" and "email" not in log.metadata
    assert log.exit_code == -9
    assert log.summary == {}


def test_reader_never_imports_wandb(tmp_path: Path) -> None:
    """In-process too: reading a log leaves sys.modules without wandb."""
    code = (
        "import sys; sys.modules['wandb'] = None\n"
        "from labbook.readers.wandb_log import read_wandb_log\n"
        "from pathlib import Path\n"
        f"log = read_wandb_log(Path({str(next(RUNS.glob('offline-run-*/run-*.wandb')))!r}))\n"
        "print(log.config['seed'], log.exit_code, len(log.history['loss']))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    seed, exit_code, rows = out.stdout.split()
    assert (int(seed), int(exit_code)) in ((5, 0), (6, 1)) and int(rows) in (30, 12)
