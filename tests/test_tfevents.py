"""Tests for labbook.readers.tfevents, on files written by real TensorBoard writers.

Writers: tensorboardX's ``SummaryWriter`` (``simple_value`` scalars, text, hparams)
and TensorBoard's own TensorFlow-free writers (``tensorboard.summary.Writer`` for
tensor-encoded scalars, ``EventFileWriter`` for hand-built tensor encodings and the
hparams plugin's ``summary_v2``). torch's SummaryWriter is not installed here.
Every file is also decoded by a plain protobuf reference reader, to check that the
byte-template fast paths give exactly what protobuf gives.
"""

from __future__ import annotations

import logging
import math
import os
import random
import struct
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("tensorboardX")
pytest.importorskip("google_crc32c")

import google_crc32c
from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter
from tensorboardX import SummaryWriter

from labbook.model import Point
from labbook.readers import tfevents
from labbook.readers.tfevents import (
    EventBatch,
    file_fingerprint,
    is_event_file,
    read_events,
)

WALL = 1_700_000_000.0


# ---------------------------------------------------------------- helpers


def only_event_file(directory: Path) -> Path:
    (path,) = sorted(p for p in directory.iterdir() if is_event_file(p.name))
    return path


def masked_crc(data: bytes) -> int:
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def frame(data: bytes) -> bytes:
    """One TFRecord record holding ``data``."""
    header = struct.pack("<Q", len(data))
    return (
        header + struct.pack("<I", masked_crc(header)) + data + struct.pack("<I", masked_crc(data))
    )


def record_offsets(blob: bytes) -> list[int]:
    """Start offsets of the complete records in ``blob``."""
    offsets, at = [], 0
    while at + 12 <= len(blob):
        (length,) = struct.unpack_from("<Q", blob, at)
        if at + 16 + length > len(blob):
            break
        offsets.append(at)
        at += 16 + length
    return offsets


def key(point: Point) -> tuple[object, ...]:
    """A point as a comparable tuple (NaN equal to NaN)."""
    value = "nan" if math.isnan(point.value) else point.value
    return (point.step, value, point.wall_time)


def keys(batch: EventBatch) -> dict[str, list[tuple[object, ...]]]:
    return {tag: [key(p) for p in points] for tag, points in batch.scalars.items()}


def reference_scalars(path: Path) -> dict[str, list[tuple[object, ...]]]:
    """Scalars decoded record by record with protobuf only (no fast paths)."""
    blob = path.read_bytes()
    out: dict[str, list[tuple[object, ...]]] = {}
    for at in record_offsets(blob):
        (length,) = struct.unpack_from("<Q", blob, at)
        event = event_pb2.Event.FromString(blob[at + 12 : at + 12 + length])
        wall = event.wall_time or None
        for value in event.summary.value:
            if value.metadata.plugin_data.plugin_name in ("text", "hparams"):
                continue
            kind = value.WhichOneof("value")
            if kind == "simple_value":
                number = value.simple_value
            elif kind == "tensor" and value.tensor.dtype in (1, 2):
                tensor = value.tensor
                if tensor.tensor_content:
                    fmt = "<f" if tensor.dtype == 1 else "<d"
                    (number,) = struct.unpack(fmt, tensor.tensor_content)
                else:
                    number = (tensor.float_val or tensor.double_val)[0]
            else:
                continue
            out.setdefault(value.tag, []).append(key(Point(event.step, number, wall)))
    return out


def write_events(path: Path, events: list[event_pb2.Event], *, append: bool = False) -> None:
    with open(path, "ab" if append else "wb") as f:
        for event in events:
            f.write(frame(event.SerializeToString()))


def tb_writer_file(directory: Path, events: list[event_pb2.Event]) -> Path:
    """An event file written by TensorBoard's own EventFileWriter."""
    writer = EventFileWriter(str(directory))
    for event in events:
        writer.add_event(event)
    writer.close()
    return only_event_file(directory)


def tensor_event(
    step: int, tag: str, tensor: tensor_pb2.TensorProto, plugin: str = ""
) -> event_pb2.Event:
    value = summary_pb2.Summary.Value(tag=tag, tensor=tensor)
    if plugin:
        value.metadata.plugin_data.plugin_name = plugin
    return event_pb2.Event(
        wall_time=WALL + step, step=step, summary=summary_pb2.Summary(value=[value])
    )


def shape(*dims: int) -> tensor_shape_pb2.TensorShapeProto:
    return tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in dims]
    )


@pytest.fixture(autouse=True)
def _fresh_templates(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test learns its templates itself (they are cached process-wide)."""
    monkeypatch.setattr(tfevents, "_SIMPLE_TEMPLATES", {})
    monkeypatch.setattr(tfevents, "_TENSOR_TEMPLATES", {})


@pytest.fixture
def tbx_file(tmp_path: Path) -> Path:
    """tensorboardX: 3 tags x 300 steps (enough for the block decoder) plus text."""
    writer = SummaryWriter(str(tmp_path))
    for step in range(300):
        for i, tag in enumerate(("loss", "train/acc", "lr")):
            writer.add_scalar(tag, step * 0.5 + i, step, walltime=WALL + step + i / 10)
    writer.add_text("args", '{"lr": 0.1}', 0, walltime=WALL)
    writer.close()
    return only_event_file(tmp_path)


@pytest.fixture
def warnings(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.WARNING, logger="labbook")
    return caplog


def labbook_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "labbook"]


# ---------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("events.out.tfevents.1700000000.host", True),
        ("events.out.tfevents.1700000000.host.1234.0.v2", True),
        ("/runs/a/events.out.tfevents.1700000000.host", True),
        ("events.out.tfevents.1700000000.host.tmp", False),
        ("events.out.tfevents.1700000000.host.part", False),
        ("events.out.tfevents.", False),
        ("events.out.tfevent", False),
        ("my.events.out.tfevents.1", False),
        ("metrics.csv", False),
    ],
)
def test_is_event_file(name: str, expected: bool) -> None:
    assert is_event_file(name) is expected


# ---------------------------------------------------------------- writers


def test_tensorboardx_scalars_steps_and_wall_times(tbx_file: Path, warnings) -> None:
    batch = read_events(tbx_file)
    assert set(batch.scalars) == {"loss", "train/acc", "lr"}
    assert batch.scalars["loss"][:2] == [Point(0, 0.0, WALL), Point(1, 0.5, WALL + 1)]
    assert batch.scalars["lr"][-1] == Point(299, 151.5, WALL + 299 + 0.2)
    assert [p.step for p in batch.scalars["train/acc"]] == list(range(300))
    assert keys(batch) == reference_scalars(tbx_file)
    assert batch.texts == {"args": '{"lr": 0.1}'}
    assert batch.records == 1 + 900 + 1  # file_version, scalars, text
    assert batch.offset == tbx_file.stat().st_size
    assert not batch.truncated and not batch.reset
    assert batch.corrupt == 0 and batch.undecodable == 0
    assert batch.first_wall_time is not None and batch.last_wall_time == WALL  # the text
    assert batch.fingerprint == file_fingerprint(tbx_file) != ""
    assert labbook_warnings(warnings) == []


def test_tensorboard_writer_tensor_scalars(tmp_path: Path) -> None:
    from tensorboard.summary import Writer

    writer = Writer(str(tmp_path))
    for step in range(200):
        writer.add_scalar("loss", 1.0 / (step + 1), step, wall_time=WALL + step)
        writer.add_scalar("eval/acc", step / 200, step, wall_time=WALL + step + 0.5)
    writer.close()
    path = only_event_file(tmp_path)
    batch = read_events(path)
    assert batch.scalars["loss"][0] == Point(0, 1.0, WALL)
    assert batch.scalars["eval/acc"][100] == Point(100, 0.5, WALL + 100.5)
    assert len(batch.scalars["loss"]) == len(batch.scalars["eval/acc"]) == 200
    assert keys(batch) == reference_scalars(path)


def test_tensor_encodings_from_event_file_writer(tmp_path: Path) -> None:
    """Each way a scalar can be stored in a tensor, plus tensors that are not scalars."""
    half = struct.unpack("<H", struct.pack("<e", 1.5))[0]
    events = [
        tensor_event(
            1, "f32", tensor_pb2.TensorProto(dtype=1, tensor_shape=shape(), float_val=[0.25])
        ),
        tensor_event(
            2, "f64", tensor_pb2.TensorProto(dtype=2, tensor_shape=shape(), double_val=[0.1])
        ),
        tensor_event(
            3,
            "f32c",
            tensor_pb2.TensorProto(
                dtype=1, tensor_shape=shape(), tensor_content=struct.pack("<f", 2.5)
            ),
        ),
        tensor_event(
            4,
            "f64c",
            tensor_pb2.TensorProto(
                dtype=2, tensor_shape=shape(), tensor_content=struct.pack("<d", 0.1)
            ),
        ),
        tensor_event(
            5, "i64", tensor_pb2.TensorProto(dtype=9, tensor_shape=shape(), int64_val=[7])
        ),
        tensor_event(
            6, "half", tensor_pb2.TensorProto(dtype=19, tensor_shape=shape(), half_val=[half])
        ),
        # rank 1, one element: a scalar only for the scalars plugin
        tensor_event(
            7,
            "plugin",
            tensor_pb2.TensorProto(dtype=1, tensor_shape=shape(1), float_val=[3.0]),
            "scalars",
        ),
        tensor_event(
            8, "vector", tensor_pb2.TensorProto(dtype=1, tensor_shape=shape(1), float_val=[3.0])
        ),
        tensor_event(
            9, "pair", tensor_pb2.TensorProto(dtype=1, tensor_shape=shape(2), float_val=[1.0, 2.0])
        ),
        tensor_event(
            10, "string", tensor_pb2.TensorProto(dtype=7, tensor_shape=shape(), string_val=[b"x"])
        ),
    ]
    path = tb_writer_file(tmp_path, events)
    batch = read_events(path)
    assert keys(batch) == {
        "f32": [(1, 0.25, WALL + 1)],
        "f64": [(2, 0.1, WALL + 2)],
        "f32c": [(3, 2.5, WALL + 3)],
        "f64c": [(4, 0.1, WALL + 4)],
        "i64": [(5, 7.0, WALL + 5)],
        "half": [(6, 1.5, WALL + 6)],
        "plugin": [(7, 3.0, WALL + 7)],
    }


@pytest.mark.parametrize("encoding", ["float_val", "double_val", "tensor_content", "no_metadata"])
def test_tensor_scalar_fast_path_matches_protobuf(tmp_path: Path, encoding: str) -> None:
    """Long runs of each tensor encoding go through the block decoder; compare to protobuf."""
    events = []
    for step in range(0, 3000, 7):
        for tag in ("a", "bb"):
            value = step / 3 + len(tag)
            if encoding == "float_val" or encoding == "no_metadata":
                tensor = tensor_pb2.TensorProto(dtype=1, tensor_shape=shape(), float_val=[value])
            elif encoding == "double_val":
                tensor = tensor_pb2.TensorProto(dtype=2, tensor_shape=shape(), double_val=[value])
            else:
                tensor = tensor_pb2.TensorProto(
                    dtype=2, tensor_shape=shape(), tensor_content=struct.pack("<d", value)
                )
            plugin = "" if encoding == "no_metadata" else "scalars"
            events.append(tensor_event(step, tag, tensor, plugin))
    path = tb_writer_file(tmp_path, events)
    batch = read_events(path)
    assert len(batch.scalars["a"]) == len(batch.scalars["bb"]) == len(range(0, 3000, 7))
    assert keys(batch) == reference_scalars(path)
    assert batch.scalars["bb"][3] == Point(
        21, struct.unpack("<f", struct.pack("<f", 9.0))[0], WALL + 21
    )


def test_fast_path_matches_protobuf_across_step_sizes(tmp_path: Path) -> None:
    """Steps whose varints take 1 to 10 bytes (negative), step 0, tags of many lengths."""
    writer = SummaryWriter(str(tmp_path))
    steps = [
        *range(0, 200),
        *range(16_000, 16_800),
        *range(2_097_000, 2_097_300),
        *range(2**28 - 50, 2**28 + 50),
        *range(2**40, 2**40 + 40),
        -5,
        -1,
    ]
    rng = random.Random(1)
    for step in steps:
        writer.add_scalar("x", rng.random(), step, walltime=WALL + rng.random())
        writer.add_scalar("y" * rng.choice((1, 1, 1, 130)), rng.random(), step, walltime=WALL)
    writer.close()
    path = only_event_file(tmp_path)
    batch = read_events(path)
    assert [p.step for p in batch.scalars["x"]] == steps
    assert keys(batch) == reference_scalars(path)
    assert keys(read_events(path, verify=False)) == keys(batch)


class DecoderCalls:
    """Counts records decoded by protobuf and records decoded in blocks."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.slow = 0
        self.in_runs = 0
        slow, run = tfevents._Decoder._slow, tfevents._Decoder._run

        def counting_slow(decoder, *args):
            self.slow += 1
            return slow(decoder, *args)

        def counting_run(decoder, *args):
            before = decoder.records
            result = run(decoder, *args)
            self.in_runs += decoder.records - before
            return result

        monkeypatch.setattr(tfevents._Decoder, "_slow", counting_slow)
        monkeypatch.setattr(tfevents._Decoder, "_run", counting_run)


def test_fast_paths_decode_almost_every_record(tbx_file: Path, monkeypatch) -> None:
    calls = DecoderCalls(monkeypatch)
    batch = read_events(tbx_file)
    assert calls.slow == 5  # file_version, the first record of each tag, the text
    assert calls.in_runs > 800  # of 900 scalars
    assert keys(batch) == reference_scalars(tbx_file)


def test_templates_learned_by_one_read_serve_the_next(tmp_path: Path, monkeypatch) -> None:
    from tensorboard.summary import Writer

    writer = Writer(str(tmp_path))
    for step in range(3):
        writer.add_scalar("loss", step / 3, step, wall_time=WALL)
        writer.add_scalar("acc", step / 7, step, wall_time=WALL)
    writer.close()
    path = only_event_file(tmp_path)
    first = read_events(path)
    calls = DecoderCalls(monkeypatch)
    second = read_events(path)
    assert calls.slow == 1  # only the file_version record
    assert keys(second) == keys(first) == reference_scalars(path)


@pytest.mark.parametrize("varint_bytes", range(1, 10))
def test_block_decoder_for_each_step_varint_length(
    tmp_path: Path, monkeypatch, varint_bytes: int
) -> None:
    first = 0 if varint_bytes == 1 else 1 << (7 * (varint_bytes - 1))
    writer = SummaryWriter(str(tmp_path))
    for step in range(first, first + 100):
        for tag in ("loss", "learning_rate", "grad_norm"):
            writer.add_scalar(tag, step % 1000 / 7, step, walltime=WALL + step % 1000)
    writer.close()
    path = only_event_file(tmp_path)
    calls = DecoderCalls(monkeypatch)
    batch = read_events(path)
    assert [p.step for p in batch.scalars["grad_norm"]] == list(range(first, first + 100))
    assert keys(batch) == reference_scalars(path)
    assert (calls.in_runs > 250) is (varint_bytes < 9)


def test_fast_path_matches_protobuf_in_irregular_files(tmp_path: Path) -> None:
    """Tags in random order, eval metrics now and then, texts and tensors between."""
    from tensorboard.summary import Writer

    rng = random.Random(7)
    writer = SummaryWriter(str(tmp_path / "x"))
    tb_writer = Writer(str(tmp_path / "tb"))
    for step in range(600):
        tags = ["loss", "lr", "grad_norm", "epoch"]
        if rng.random() < 0.3:
            rng.shuffle(tags)
        for tag in tags:
            value = rng.choice([rng.random(), float("nan"), step])
            writer.add_scalar(tag, value, step, walltime=WALL + step)
            tb_writer.add_scalar(tag, value, step, wall_time=WALL + step)
        if step % 40 == 0:
            writer.add_scalar("eval/accuracy", rng.random(), step, walltime=WALL + step)
            writer.add_text("note", f"step {step}", step)
            tb_writer.add_scalar("eval/accuracy", rng.random(), step, wall_time=WALL + step)
    writer.close()
    tb_writer.close()
    for sub in ("x", "tb"):
        path = only_event_file(tmp_path / sub)
        batch = read_events(path)
        assert len(batch.scalars["loss"]) == 600
        assert keys(batch) == reference_scalars(path)
        assert keys(read_events(path, chunk_size=5000)) == keys(batch)


@pytest.mark.parametrize("chunk_size", [1, 13, 100, 4096, 65536])
def test_records_spanning_chunk_boundaries(tbx_file: Path, chunk_size: int, warnings) -> None:
    whole = read_events(tbx_file)
    chunked = read_events(tbx_file, chunk_size=chunk_size)
    assert keys(chunked) == keys(whole)
    assert chunked.texts == whole.texts
    assert (chunked.offset, chunked.records, chunked.truncated) == (
        whole.offset,
        whole.records,
        whole.truncated,
    )
    assert labbook_warnings(warnings) == []


def test_nan_and_inf_values(tmp_path: Path) -> None:
    from tensorboard.summary import Writer

    specials = [float("nan"), float("inf"), float("-inf"), 1.0]
    writer = SummaryWriter(str(tmp_path / "x"))
    tb_writer = Writer(str(tmp_path / "tb"))
    for step in range(40):  # long enough for the block decoder
        writer.add_scalar("v", specials[step % 4], step, walltime=WALL)
        tb_writer.add_scalar("v", specials[step % 4], step, wall_time=WALL)
    writer.close()
    tb_writer.close()
    for sub in ("x", "tb"):
        values = [p.value for p in read_events(only_event_file(tmp_path / sub)).scalars["v"]]
        assert len(values) == 40
        assert all(math.isnan(v) for v in values[0::4])
        assert values[1::4] == [math.inf] * 10
        assert values[2::4] == [-math.inf] * 10
        assert values[3::4] == [1.0] * 10


# ---------------------------------------------------------------- text and hparams


def test_tensorboardx_text_and_hparams(tmp_path: Path) -> None:
    writer = SummaryWriter(str(tmp_path))
    writer.add_text("args", '{"learning_rate": 0.001}', 0)
    writer.add_text("model_config", "first", 0)
    writer.add_text("model_config", "second", 1)
    writer.add_hparams(
        {"lr": 0.1, "optimizer": "adam", "use_amp": True, "layers": 4},
        {"hparam/accuracy": 0.9, "hparam/loss": 0.3},
    )
    writer.close()
    main = read_events(only_event_file(tmp_path))
    assert main.texts == {"args": '{"learning_rate": 0.001}', "model_config": "second"}
    # add_hparams writes into a sub-directory named after the time
    (sub,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    batch = read_events(only_event_file(sub))
    assert batch.hparams == {"lr": 0.1, "optimizer": "adam", "use_amp": True, "layers": 4.0}
    assert batch.hparam_metrics == ["hparam/accuracy", "hparam/loss"]
    assert batch.scalars["hparam/accuracy"][0].value == pytest.approx(0.9)


def test_tensorboard_hparams_summary_v2(tmp_path: Path) -> None:
    from tensorboard.plugins.hparams import summary_v2 as hp

    experiment = hp.hparams_config_pb(
        hparams=[hp.HParam("lr"), hp.HParam("opt")],
        metrics=[hp.Metric("val/loss"), hp.Metric("acc")],
    )
    session = hp.hparams_pb({"lr": 0.01, "opt": "sgd", "nesterov": False})
    events = [
        event_pb2.Event(wall_time=WALL, summary=experiment),
        event_pb2.Event(wall_time=WALL, summary=session),
        tensor_event(
            1, "val/loss", tensor_pb2.TensorProto(dtype=1, tensor_shape=shape(), float_val=[0.5])
        ),
    ]
    batch = read_events(tb_writer_file(tmp_path, events))
    assert batch.hparams == {"lr": 0.01, "opt": "sgd", "nesterov": False}
    assert batch.hparam_metrics == ["val/loss", "acc"]
    assert set(batch.scalars) == {"val/loss"}


# ---------------------------------------------------------------- incremental reading


def scalar_event(step: int, tag: str, value: float) -> event_pb2.Event:
    """What tensorboardX's and torch's add_scalar write: a simple_value."""
    return event_pb2.Event(
        wall_time=WALL + step,
        step=step,
        summary=summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=value)]),
    )


def test_incremental_read_of_a_live_writer(tmp_path: Path) -> None:
    # TensorBoard's EventFileWriter: its flush() waits for the queue (tensorboardX's does not).
    writer = EventFileWriter(str(tmp_path))
    for step in range(50):
        writer.add_event(scalar_event(step, "loss", step))
    writer.flush()
    path = only_event_file(tmp_path)
    first = read_events(path)
    assert [p.step for p in first.scalars["loss"]] == list(range(50))

    for step in range(50, 120):
        writer.add_event(scalar_event(step, "loss", step))
        text = tensor_event(
            step,
            "note/text_summary",
            tensor_pb2.TensorProto(dtype=7, string_val=[b"at %d" % step]),
            "text",
        )
        writer.add_event(text)
    writer.flush()
    second = read_events(path, offset=first.offset, fingerprint=first.fingerprint)
    assert not second.reset
    assert [p.step for p in second.scalars["loss"]] == list(range(50, 120))
    assert second.scalars["loss"][0] == Point(50, 50.0, WALL + 50)
    assert second.texts == {"note": "at 119"}
    assert second.records == 140
    assert second.offset == path.stat().st_size > first.offset
    assert second.fingerprint == first.fingerprint
    assert (second.first_wall_time, second.last_wall_time) == (WALL + 50, WALL + 119)

    again = read_events(path, offset=second.offset, fingerprint=second.fingerprint)
    assert (again.scalars, again.records, again.offset) == ({}, 0, second.offset)
    writer.close()


def test_incremental_read_seeks_instead_of_rereading(tbx_file: Path, monkeypatch) -> None:
    """Reading from an offset reads the head for the fingerprint and the new bytes only."""
    full = read_events(tbx_file)
    with open(tbx_file, "ab") as f:
        f.write(frame(event_pb2.Event(wall_time=WALL, step=5).SerializeToString()))
    reads: list[int] = []
    real_open = open

    class Counting:
        def __init__(self, raw):
            self.raw = raw

        def read(self, n: int = -1) -> bytes:
            data = self.raw.read(n)
            reads.append(len(data))
            return data

        def __getattr__(self, name):
            return getattr(self.raw, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.raw.close()

    monkeypatch.setattr("builtins.open", lambda *a, **k: Counting(real_open(*a, **k)))
    batch = read_events(tbx_file, offset=full.offset, fingerprint=full.fingerprint)
    monkeypatch.undo()
    assert batch.records == 1 and not batch.reset
    head = tfevents.FINGERPRINT_BYTES
    assert sum(reads) <= head + (tbx_file.stat().st_size - full.offset)


def test_rewritten_file_is_read_again_from_the_start(tmp_path: Path) -> None:
    from tensorboard.summary import Writer

    path = tmp_path / "events.out.tfevents.1.host"
    writer = SummaryWriter(str(tmp_path / "a"))
    for step in range(5):
        writer.add_scalar("old", step, step)
    writer.close()
    only_event_file(tmp_path / "a").rename(path)
    first = read_events(path)

    tb = Writer(str(tmp_path / "b"))  # a different writer: a different first record
    for step in range(20):
        tb.add_scalar("new", step, step)
    tb.close()
    os.replace(only_event_file(tmp_path / "b"), path)
    assert path.stat().st_size > first.offset

    batch = read_events(path, offset=first.offset, fingerprint=first.fingerprint)
    assert batch.reset
    assert set(batch.scalars) == {"new"} and len(batch.scalars["new"]) == 20
    assert batch.fingerprint != first.fingerprint
    assert batch.offset == path.stat().st_size


def test_file_shorter_than_offset_is_read_again(tbx_file: Path) -> None:
    full = read_events(tbx_file)
    blob = tbx_file.read_bytes()
    cut = record_offsets(blob)[100]
    tbx_file.write_bytes(blob[:cut])
    batch = read_events(tbx_file, offset=full.offset, fingerprint=full.fingerprint)
    assert batch.reset and batch.offset == cut and batch.records == 100


def test_fingerprint_is_stable_while_the_file_grows(tmp_path: Path) -> None:
    path = tmp_path / "events.out.tfevents.1.host"
    path.write_bytes(b"")
    assert file_fingerprint(path) == ""
    first = event_pb2.Event(wall_time=WALL, file_version="brain.Event:2").SerializeToString()
    path.write_bytes(frame(first)[:10])
    assert file_fingerprint(path) == ""
    path.write_bytes(frame(first))
    fingerprint = file_fingerprint(path)
    assert fingerprint
    write_events(path, [event_pb2.Event(wall_time=WALL, step=i) for i in range(500)], append=True)
    assert file_fingerprint(path) == fingerprint


# ---------------------------------------------------------------- damaged files


def test_truncated_file_keeps_earlier_points_and_resumes(tbx_file: Path, warnings) -> None:
    blob = tbx_file.read_bytes()
    offsets = record_offsets(blob)
    cut = offsets[500] + 20  # mid-record
    tbx_file.write_bytes(blob[:cut])
    batch = read_events(tbx_file)
    assert batch.truncated
    assert batch.offset == offsets[500]
    assert batch.records == 500
    assert sum(len(p) for p in batch.scalars.values()) == 499
    assert labbook_warnings(warnings) == []

    tbx_file.write_bytes(blob)  # the writer finishes the record and goes on
    rest = read_events(tbx_file, offset=batch.offset, fingerprint=batch.fingerprint)
    assert not rest.truncated and not rest.reset
    assert rest.records == len(offsets) - 500
    merged = {tag: batch.scalars.get(tag, []) + rest.scalars.get(tag, []) for tag in rest.scalars}
    assert {t: [key(p) for p in pts] for t, pts in merged.items()} == reference_scalars(tbx_file)


def test_partial_header_is_truncated(tbx_file: Path) -> None:
    blob = tbx_file.read_bytes()
    tbx_file.write_bytes(blob + b"\x05\x00\x00")
    batch = read_events(tbx_file)
    assert batch.truncated and batch.offset == len(blob)


@pytest.mark.parametrize("chunk_size", [tfevents.CHUNK_SIZE, 777])
def test_bad_data_checksum_skips_the_record_and_warns_once(
    tbx_file: Path, warnings, chunk_size: int
) -> None:
    blob = bytearray(tbx_file.read_bytes())
    offsets = record_offsets(bytes(blob))
    for index in (200, 400):  # inside runs of same-layout records
        blob[offsets[index] + 12 + 15] ^= 0x01  # a byte of the tag
    tbx_file.write_bytes(bytes(blob))
    batch = read_events(tbx_file, chunk_size=chunk_size)
    assert batch.corrupt == 2
    assert batch.records == len(offsets)
    assert sum(len(p) for p in batch.scalars.values()) == 900 - 2
    assert batch.offset == len(blob)
    messages = labbook_warnings(warnings)
    assert len(messages) == 1
    assert str(tbx_file) in messages[0] and "checksum" in messages[0]
    assert str(offsets[200]) in messages[0]


def test_bad_length_checksum_stops_there(tbx_file: Path, warnings) -> None:
    blob = bytearray(tbx_file.read_bytes())
    offsets = record_offsets(bytes(blob))
    blob[offsets[300] + 9] ^= 0xFF  # the length's CRC
    tbx_file.write_bytes(bytes(blob))
    batch = read_events(tbx_file)
    assert batch.offset == offsets[300]
    assert batch.records == 300
    assert sum(len(p) for p in batch.scalars.values()) == 299
    assert not batch.truncated
    messages = labbook_warnings(warnings)
    assert len(messages) == 1
    assert str(tbx_file) in messages[0] and f"byte {offsets[300]}" in messages[0]


def test_bad_length_bytes_stop_there(tbx_file: Path, warnings) -> None:
    """A corrupt length (not just its CRC) must not be trusted to frame the rest."""
    blob = bytearray(tbx_file.read_bytes())
    offsets = record_offsets(bytes(blob))
    blob[offsets[10] + 5] = 0x7F  # a length of many terabytes
    tbx_file.write_bytes(bytes(blob))
    batch = read_events(tbx_file)
    assert batch.offset == offsets[10] and batch.records == 10
    assert len(labbook_warnings(warnings)) == 1


def test_empty_file(tmp_path: Path, warnings) -> None:
    path = tmp_path / "events.out.tfevents.1.host"
    path.write_bytes(b"")
    batch = read_events(path)
    assert batch == EventBatch()
    assert labbook_warnings(warnings) == []


def test_garbage_file_warns_and_returns_nothing(tmp_path: Path, warnings) -> None:
    path = tmp_path / "events.out.tfevents.1.host"
    path.write_bytes(random.Random(0).randbytes(20_000))
    batch = read_events(path)
    assert batch.scalars == {} and batch.records == 0 and batch.offset == 0
    messages = labbook_warnings(warnings)
    assert len(messages) == 1 and str(path) in messages[0]


def test_garbage_without_checks_does_not_read_a_huge_length(tmp_path: Path) -> None:
    path = tmp_path / "events.out.tfevents.1.host"
    path.write_bytes(b"\xff" * 64)
    batch = read_events(path, verify=False)
    assert batch.records == 0 and batch.truncated


def test_valid_records_that_are_not_events(tmp_path: Path, warnings) -> None:
    path = tmp_path / "events.out.tfevents.1.host"
    write_events(path, [event_pb2.Event(wall_time=WALL, file_version="brain.Event:2")])
    with open(path, "ab") as f:
        f.write(frame(b"\xff\xff\xff not a protobuf"))
    write_events(
        path,
        [
            event_pb2.Event(
                wall_time=WALL,
                step=3,
                summary=summary_pb2.Summary(
                    value=[summary_pb2.Summary.Value(tag="t", simple_value=2.0)]
                ),
            )
        ],
        append=True,
    )
    batch = read_events(path)
    assert batch.undecodable == 1 and batch.corrupt == 0 and batch.records == 3
    assert keys(batch) == {"t": [(3, 2.0, WALL)]}
    messages = labbook_warnings(warnings)
    assert len(messages) == 1 and str(path) in messages[0]


def test_missing_file_warns_and_keeps_offset(tmp_path: Path, warnings) -> None:
    path = tmp_path / "events.out.tfevents.1.gone"
    batch = read_events(path, offset=1234, fingerprint="abc")
    assert batch.offset == 1234 and batch.fingerprint == "abc" and batch.scalars == {}
    assert file_fingerprint(path) == ""
    messages = labbook_warnings(warnings)
    assert len(messages) == 2 and all(str(path) in m for m in messages)


def test_directory_instead_of_a_file(tmp_path: Path, warnings) -> None:
    batch = read_events(tmp_path)
    assert batch.records == 0
    assert len(labbook_warnings(warnings)) == 1


def test_records_larger_than_the_limit_are_verified_and_skipped(
    tbx_file: Path, warnings, monkeypatch
) -> None:
    big = event_pb2.Event(wall_time=WALL, step=1, file_version="x" * 5000).SerializeToString()
    blob = tbx_file.read_bytes()
    offsets = record_offsets(blob)
    spliced = blob[: offsets[50]] + frame(big) + blob[offsets[50] :]
    tbx_file.write_bytes(spliced)
    monkeypatch.setattr(tfevents, "MAX_RECORD_BYTES", 1000)
    batch = read_events(tbx_file, chunk_size=700)
    assert batch.records == len(offsets) + 1 and batch.corrupt == 0
    assert keys(batch) == reference_scalars(tbx_file)

    damaged = bytearray(spliced)
    damaged[offsets[50] + 12 + 3000] ^= 0x10
    tbx_file.write_bytes(bytes(damaged))
    assert read_events(tbx_file, chunk_size=700).corrupt == 1
    tbx_file.write_bytes(spliced[: offsets[50] + 2000])  # ends inside the big record
    cut = read_events(tbx_file, chunk_size=700)
    assert cut.truncated and cut.offset == offsets[50]
    assert len(labbook_warnings(warnings)) == 1  # the corrupt one


def test_importing_does_not_import_tensorboard() -> None:
    code = (
        "import sys, labbook.readers.tfevents; "
        "assert 'tensorboard' not in sys.modules and 'tensorflow' not in sys.modules"
    )
    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)
