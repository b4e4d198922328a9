"""Hypothesis strategies: structurally valid inputs for every reader, then mutated.

Each strategy draws the bytes of one file (or a whole run directory, as
``{relative path: bytes}``). Inputs start from what real writers produce — real
``Event``/``Record`` protobufs, JSON/YAML/TOML/CSV documents, log lines in the
shapes training scripts print, and the real writers' files kept in
tests/fixtures — and are then mutated at the level where the reader is weakest:
event and wandb payloads are mutated *inside* valid checksums, text documents
with format-specific tokens, and any file with byte flips, splices and cuts.
"""

from __future__ import annotations

import json
import math
import struct
from functools import cache
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from tests.fuzz import framing

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"

# --------------------------------------------------------------------------- bytes


#: Bytes that tend to matter to parsers: varint continuation, sign bits, NUL, newline.
_MAGIC_BYTES = (0x00, 0x01, 0x7F, 0x80, 0xFF, 0x0A, 0x0D, 0x22, 0x5C)


@st.composite
def mutated(
    draw: st.DrawFn, data: bytes, tokens: tuple[bytes, ...] = (), max_ops: int = 4
) -> bytes:
    """``data`` after a few byte-level edits (flips, inserts, deletes, splices, tokens, a cut)."""
    buf = bytearray(data)
    for _ in range(draw(st.integers(0, max_ops))):
        op = draw(st.sampled_from(("flip", "magic", "insert", "delete", "dup", "token", "cut")))
        pos = draw(st.integers(0, len(buf))) if buf else 0
        if op == "flip" and pos < len(buf):
            buf[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "magic" and pos < len(buf):
            buf[pos] = draw(st.sampled_from(_MAGIC_BYTES))
        elif op == "insert":
            buf[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del buf[pos : pos + draw(st.integers(1, 16))]
        elif op == "dup" and buf:
            end = min(len(buf), pos + draw(st.integers(1, 64)))
            buf[end:end] = buf[pos:end] * draw(st.integers(1, 3))
        elif op == "token" and tokens:
            buf[pos:pos] = draw(st.sampled_from(tokens))
        elif op == "cut":
            del buf[pos:]
    return bytes(buf)


def maybe_mutated(
    base: st.SearchStrategy[bytes], tokens: tuple[bytes, ...] = (), max_ops: int = 4
) -> st.SearchStrategy[bytes]:
    """Draws from ``base``, unchanged or mutated (hypothesis shrinks towards unchanged)."""
    return base.flatmap(lambda b: st.one_of(st.just(b), mutated(b, tokens, max_ops)))


# --------------------------------------------------------------------------- numbers and names

_BIG_INTS = st.sampled_from(
    [0, 1, -1, 127, 128, 16383, 16384, 2**31 - 1, 2**31, 2**32, 2**53 + 1, 2**56, 2**62,
     2**63 - 1, 2**63, 2**64, -(2**63), -(2**63) - 1, 10**400, -(10**400)]
)  # fmt: skip
INTS = st.one_of(st.integers(-1000, 10**6), _BIG_INTS)
STEPS_INT64 = st.one_of(
    st.integers(0, 10_000),
    st.sampled_from([127, 128, 16383, 16384, 2**21 - 1, 2**28, 2**35, 2**49, 2**56 - 1, 2**56,
                     2**62, 2**63 - 1, -1, -(2**63)]),
    st.integers(-(2**63), 2**63 - 1),
)  # fmt: skip
FLOATS = st.floats(allow_nan=True, allow_infinity=True)
FLOATS32 = st.floats(width=32, allow_nan=True, allow_infinity=True)
METRIC_NAMES = st.sampled_from(
    ["loss", "train/loss", "val/loss", "acc", "lr", "step", "global_step", "epoch", "iter",
     "time", "timestamp", "_timestamp", "wall_time", "_step", "_runtime", "train_loss",
     "eval_loss", "grad_norm", "learning_rate", "Loss", "val acc", "a.b", ""]
)  # fmt: skip
ODD_TEXT = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12
)  # any encodable text, control characters included
NAMES = st.one_of(METRIC_NAMES, ODD_TEXT)


def _json_scalars() -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), st.booleans(), INTS, FLOATS, ODD_TEXT,
                     st.sampled_from(["nan", "inf", "-inf", "Infinity", "NaN", "1e999", "0.5"]))  # fmt: skip


JSON_VALUES = st.recursive(
    _json_scalars(),
    lambda kids: st.one_of(st.lists(kids, max_size=4), st.dictionaries(NAMES, kids, max_size=4)),
    max_leaves=12,
)


def metric_record() -> st.SearchStrategy[dict[str, Any]]:
    """One logged record: step/time keys and metrics, with odd values now and then."""
    return st.dictionaries(NAMES, JSON_VALUES, max_size=6)


def json_text(doc: Any, ascii_only: bool) -> str:
    return json.dumps(doc, allow_nan=True, ensure_ascii=ascii_only)


JSON_TOKENS = tuple(
    t.encode()
    for t in ('NaN', 'Infinity', '-Infinity', '1e999', '"\\ud800"', '"\\udcff"', '"\\u0000"',
              '{', '}', '[', ']', ',', ':', '"', '\\', '9' * 400, '"step": ', '"loss": ',
              '[' * 50, 'true', 'null', '\ufeff', '\n', '\r')
)  # fmt: skip

# --------------------------------------------------------------------------- JSON / JSONL / CSV


@st.composite
def json_document(draw: st.DrawFn) -> bytes:
    doc = draw(
        st.one_of(
            st.dictionaries(NAMES, JSON_VALUES, max_size=6),
            st.lists(metric_record(), max_size=5),
            st.dictionaries(NAMES, st.lists(st.one_of(FLOATS, INTS, metric_record()), max_size=5)),
            JSON_VALUES,
        )
    )
    text = json_text(doc, draw(st.booleans()))
    data = text.encode("utf-8", "surrogatepass")
    if draw(st.booleans()):
        data = draw(mutated(data, JSON_TOKENS))
    return data


@st.composite
def jsonl_document(draw: st.DrawFn) -> bytes:
    lines = []
    for rec in draw(st.lists(st.one_of(metric_record(), JSON_VALUES), max_size=8)):
        lines.append(json_text(rec, draw(st.booleans())).encode("utf-8", "surrogatepass"))
    sep = draw(st.sampled_from([b"\n", b"\r\n", b"\n\n"]))
    data = sep.join(lines) + (sep if draw(st.booleans()) else b"")
    if draw(st.booleans()):
        data = draw(mutated(data, (*JSON_TOKENS, b"\n", b"\r", b"\x0b", b"\x85", b"\x00")))
    return data


def _csv_cell(value: Any) -> str:
    text = "" if value is None else str(value)
    if any(c in text for c in ',"\n\r'):
        text = '"' + text.replace('"', '""') + '"'
    return text


CSV_CELLS = st.one_of(st.none(), INTS, FLOATS, ODD_TEXT,
                      st.sampled_from(["nan", "inf", "-inf", "True", "1e999", "1_000", " 3 "]))  # fmt: skip


@st.composite
def csv_document(draw: st.DrawFn) -> bytes:
    header = draw(st.lists(NAMES, min_size=1, max_size=5))
    rows = draw(
        st.lists(
            st.lists(CSV_CELLS, min_size=len(header) - 1, max_size=len(header) + 1), max_size=8
        )
    )
    eol = draw(st.sampled_from(["\n", "\r\n"]))
    text = eol.join(",".join(_csv_cell(c) for c in row) for row in [header, *rows])
    data = (text + (eol if draw(st.booleans()) else "")).encode("utf-8")
    if draw(st.booleans()):
        data = draw(mutated(data, (b",", b'"', b"\n", b"\r", b"\x00", b"nan", b"\xff", b"\x0c")))
    return data


# --------------------------------------------------------------------------- YAML / TOML

YAML_TOKENS = tuple(
    t.encode()
    for t in ("&a ", "*a", "<<: *a\n", "!!python/tuple ", "!!python/object:argparse.Namespace ",
              "!!python/name:torch.nn.ReLU ''", "!!binary ", "!!set ", "!!omap ", "!!timestamp ",
              "!!float ", "!!int ", "? ", "- ", ": ", "\t", "---\n", "...\n", "%YAML 1.1\n",
              "2001-12-14t21:59:43.10-05:00", ".inf", ".nan", "0x1F", "0o17", "1_000", "~",
              '"\\ud800"', '"\\x00"', "{", "[", "|\n", ">\n", "a: &a [*a]\n", "\n  ")
)  # fmt: skip


@st.composite
def yaml_document(draw: st.DrawFn) -> bytes:
    import yaml

    doc = draw(st.one_of(st.dictionaries(NAMES, JSON_VALUES, max_size=6), JSON_VALUES))
    text = yaml.safe_dump(
        doc, allow_unicode=draw(st.booleans()), default_flow_style=draw(st.booleans())
    )
    data = text.encode("utf-8", "surrogatepass")
    if draw(st.booleans()):
        data = draw(mutated(data, YAML_TOKENS))
    return data


_TOML_SCALARS = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    ODD_TEXT,
    st.sampled_from(["1979-05-27T07:32:00Z", "1979-05-27", "07:32:00", "inf", "nan", "0x1F"]),
)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, str) and value[:4].isdigit() and "-" in value:
        return value  # a bare date/time
    return json.dumps(value)  # a basic string: JSON escapes are TOML escapes


@st.composite
def toml_document(draw: st.DrawFn) -> bytes:
    tables = draw(
        st.dictionaries(
            NAMES,
            st.dictionaries(NAMES, st.one_of(_TOML_SCALARS, st.lists(_TOML_SCALARS, max_size=3)),
                            max_size=4),
            max_size=3,
        )
    )  # fmt: skip
    lines = []
    for table, values in tables.items():
        lines.append(f"[{json.dumps(table)}]")
        lines += [f"{json.dumps(k)} = {_toml_value(v)}" for k, v in values.items()]
    data = "\n".join(lines).encode("utf-8")
    tokens = tuple(
        t.encode() for t in ("[", "]", "[[", "=", '"', "'''", '"""', "{", "}", ".", "\n")
    )
    if draw(st.booleans()):
        data = draw(mutated(data, tokens))
    return data


# --------------------------------------------------------------------------- logs

_NUMBER_TEXT = st.one_of(
    FLOATS.map(repr),
    INTS.map(str),
    st.sampled_from(["nan", "NaN", "inf", "-inf", "1e400", "9" * 400, "0x1f", "1_000", "1.",
                     ".5", "-0", "1e-400", "٣", "1,5"]),
)  # fmt: skip


@st.composite
def log_line(draw: st.DrawFn) -> str:
    n = lambda: draw(_NUMBER_TEXT)  # noqa: E731
    name = lambda: draw(METRIC_NAMES) or "loss"  # noqa: E731
    shape = draw(st.integers(0, 17))
    if shape == 0:
        return f"step {n()}: train loss {n()}, val loss {n()}"
    if shape == 1:
        return f"epoch={n()} step={n()} {name()}={n()} {name()}={n()}"
    if shape == 2:
        return f"Epoch {n()}/{n()} - {name()}: {n()} - accuracy: {n()}"
    if shape == 3:
        return "{" + ", ".join(f"'{name()}': {n()}" for _ in range(draw(st.integers(0, 4)))) + "}"
    if shape == 4:
        return f"Namespace(lr={n()}, seed={n()}, name='{draw(ODD_TEXT)}', layers=[{n()}, {n()}])"
    if shape == 5:
        return (
            draw(st.sampled_from(["Seed set to ", "seed=", "random seed ", "Global seed set to "]))
            + n()
        )
    if shape == 6:
        return (
            "Traceback (most recent call last):\n"
            f'  File "/home/u/train.py", line {n()}, in main\n'
            "    loss.backward()\n"
            + draw(st.sampled_from(["RuntimeError: CUDA out of memory. Tried to allocate 2 GiB",
                                    "KeyboardInterrupt", "ValueError: " + draw(ODD_TEXT),
                                    "torch.OutOfMemoryError: CUDA out of memory"]))
        )  # fmt: skip
    if shape == 7:
        return draw(st.sampled_from(["Killed", "Terminated", "`Trainer.fit` stopped: `max_epochs=3` reached.",
                                     "slurmstepd: error: *** JOB 1 ON n1 CANCELLED AT 2026 DUE TO TIME LIMIT ***",
                                     "Out of memory: Killed process 12", "Training completed.", "Loss is NaN"]))  # fmt: skip
    if shape == 8:  # a tqdm progress bar redrawn in place
        return "\r".join(
            f"Epoch {n()}: {i}%|###| {n()}/{n()} [loss={n()}, v_num={n()}]" for i in range(3)
        )
    if shape == 9:
        return f"\x1b[32mINFO\x1b[0m {name()}: {n()}"
    if shape == 10:
        return f"2026-11-20 10:00:00,123 - INFO - {name()}={n()}, {name()}={n()}"
    if shape == 11:
        return f"[rank0]: iter {n()} | {name()} {n()} | {name()} {n()}"
    if shape == 12:
        return "config: " + json_text(draw(JSON_VALUES), True)
    if shape == 13:
        return f"{{'loss': {n()}, 'grad_norm': {n()}, 'learning_rate': {n()}, 'epoch': {n()}}}"
    if shape == 14:
        return "\x00" * draw(st.integers(1, 100))
    return draw(ODD_TEXT)


LOG_TOKENS = (b"\r", b"\n", b"\x1b[", b"\x08", b"\x00" * 70, b"\xff\xfe", b"\xef\xbb\xbf",
              b"Traceback (most recent call last):\n", b": nan", b"=", b"{", b"}", b"(", b")")  # fmt: skip


@st.composite
def log_document(draw: st.DrawFn) -> bytes:
    text = "\n".join(draw(st.lists(log_line(), max_size=12)))
    if draw(st.booleans()):
        text += "\n"
    codec = draw(st.sampled_from(["utf-8", "utf-8", "utf-8", "utf-16", "latin-1"]))
    data = text.encode(codec, "replace")
    if draw(st.booleans()):
        data = draw(mutated(data, LOG_TOKENS))
    return data


# --------------------------------------------------------------------------- TensorBoard events

_DTYPES = (1, 2, 3, 4, 5, 6, 7, 9, 14, 17, 19, 22, 23, 0, 8, 99)  # numeric, string, unknown


@st.composite
def summary_value(draw: st.DrawFn, tag: str | None = None) -> Any:
    from tensorboard.compat.proto import summary_pb2, tensor_pb2

    tag = draw(NAMES) if tag is None else tag
    kind = draw(st.sampled_from(("simple", "simple", "tensor", "text", "hparams", "other")))
    value = summary_pb2.Summary.Value(tag=tag)
    if kind == "simple":
        value.simple_value = draw(FLOATS32)
        return value
    if kind == "other":
        value.histo.min = draw(FLOATS)
        return value
    t = tensor_pb2.TensorProto()
    if kind == "text":
        value.metadata.plugin_data.plugin_name = "text"
        t.dtype = 7
        t.string_val.extend(draw(st.lists(st.binary(max_size=12), max_size=3)))
        if draw(st.booleans()):
            value.tag = tag + "/text_summary"
    elif kind == "hparams":
        value.metadata.plugin_data.plugin_name = "hparams"
        value.metadata.plugin_data.content = draw(hparams_content())
        t.dtype = 1
        t.float_val.append(0.0)
    else:
        if draw(st.booleans()):
            value.metadata.plugin_data.plugin_name = draw(st.sampled_from(["scalars", "", "x"]))
        t.dtype = draw(st.sampled_from(_DTYPES))
        for _ in range(draw(st.integers(0, 2))):
            t.tensor_shape.dim.add(size=draw(st.sampled_from([1, 1, 0, 2, -1, 2**40])))
        if draw(st.booleans()):
            t.tensor_content = draw(st.binary(max_size=9))
        else:
            count = draw(st.integers(0, 2))
            t.float_val.extend(draw(st.lists(FLOATS32, min_size=count, max_size=count)))
            t.double_val.extend(draw(st.lists(FLOATS, min_size=count, max_size=count)))
            t.int_val.extend(draw(st.lists(st.integers(-(2**31), 2**31 - 1), max_size=count)))
            t.int64_val.extend(draw(st.lists(st.integers(-(2**63), 2**63 - 1), max_size=count)))
            t.half_val.extend(draw(st.lists(st.integers(0, 2**31 - 1), max_size=count)))
            t.uint32_val.extend(draw(st.lists(st.integers(0, 2**32 - 1), max_size=count)))
            t.uint64_val.extend(draw(st.lists(st.integers(0, 2**64 - 1), max_size=count)))
    value.tensor.CopyFrom(t)
    return value


@st.composite
def hparams_content(draw: st.DrawFn) -> bytes:
    from tensorboard.plugins.hparams import plugin_data_pb2

    data = plugin_data_pb2.HParamsPluginData()
    if draw(st.booleans()):
        for name in draw(st.lists(NAMES, max_size=3)):
            v = data.session_start_info.hparams[name]
            which = draw(st.integers(0, 3))
            if which == 0:
                v.number_value = draw(FLOATS)
            elif which == 1:
                v.string_value = draw(ODD_TEXT)
            elif which == 2:
                v.bool_value = draw(st.booleans())
            else:
                v.list_value.values.add().number_value = draw(FLOATS)
    else:
        for name in draw(st.lists(NAMES, max_size=3)):
            data.experiment.metric_infos.add().name.tag = name
    raw = data.SerializeToString()
    return draw(st.one_of(st.just(raw), mutated(raw)))


@st.composite
def event(draw: st.DrawFn) -> Any:
    from tensorboard.compat.proto import event_pb2

    ev = event_pb2.Event()
    if draw(st.booleans()):
        ev.wall_time = draw(st.one_of(st.floats(1.7e9, 1.8e9), FLOATS))
    which = draw(st.integers(0, 5))
    if which == 0:
        ev.file_version = draw(st.sampled_from(["brain.Event:2", ""])) or draw(ODD_TEXT)
        return ev
    ev.step = draw(STEPS_INT64)
    for _ in range(draw(st.integers(0 if which == 1 else 1, 3))):
        ev.summary.value.append(draw(summary_value()))
    return ev


@st.composite
def training_loop(draw: st.DrawFn) -> list[bytes]:
    """Records as a training loop writes them: the same tags, in the same order, every step.

    These take the reader's fast paths (templates, and whole periods decoded in
    blocks), including steps whose varint grows a byte mid-run.
    """
    from tensorboard.compat.proto import event_pb2

    tags = draw(st.lists(NAMES, min_size=1, max_size=3, unique=True))
    protos = [draw(summary_value(tag)) for tag in tags]
    start = draw(st.sampled_from([0, 1, 120, 16380, 2**21 - 3, 2**28 - 2, 2**56 - 2, 2**62]))
    stride = draw(st.sampled_from([1, 1, 2, 0, 1000]))
    wall = draw(st.one_of(st.just(0.0), st.floats(1.7e9, 1.8e9)))
    out = []
    for i in range(draw(st.integers(2, 24))):
        for proto in protos:
            ev = event_pb2.Event(wall_time=wall + i if wall else 0.0, step=start + i * stride)
            v = ev.summary.value.add()
            v.CopyFrom(proto)
            if v.WhichOneof("value") == "simple_value":
                v.simple_value = draw(FLOATS32)
            elif v.WhichOneof("value") == "tensor" and len(v.tensor.float_val) == 1:
                v.tensor.float_val[0] = draw(FLOATS32)
            out.append(ev.SerializeToString())
    return out


@cache
def fixture_files(pattern: str) -> tuple[bytes, ...]:
    """The bytes of files the real writers left in tests/fixtures (seeds for mutation)."""
    return tuple(p.read_bytes() for p in sorted(FIXTURES.rglob(pattern)) if "fuzz" not in p.parts)


@st.composite
def event_file(draw: st.DrawFn) -> bytes:
    """An event file: real and synthetic records, some payloads mutated inside valid CRCs,
    some framing damaged, maybe cut short."""
    source = draw(st.integers(0, 2))
    if source == 0:
        payloads = [draw(event()).SerializeToString() for _ in range(draw(st.integers(0, 6)))]
    elif source == 1:
        payloads = draw(training_loop())
    else:
        payloads = framing.tfrecord_payloads(
            draw(st.sampled_from(fixture_files("events.out.tfevents.*")))
        )
    records = []
    for data in payloads:
        fate = draw(
            st.sampled_from(("keep",) * 6 + ("mutate", "mutate", "bad_crc", "bad_length", "random"))
        )
        if fate == "mutate":
            records.append(framing.tfrecord(draw(mutated(data, max_ops=3))))
        elif fate == "random":
            records.append(framing.tfrecord(draw(st.binary(max_size=40))))
        elif fate == "bad_crc":
            rec = bytearray(framing.tfrecord(data))
            rec[-1] ^= 0x55
            records.append(bytes(rec))
        elif fate == "bad_length":
            rec = bytearray(framing.tfrecord(data))
            rec[8] ^= 0x55
            records.append(bytes(rec))
        else:
            records.append(framing.tfrecord(data))
    blob = b"".join(records)
    if blob and draw(st.integers(0, 5)) == 0:
        blob = blob[: draw(st.integers(0, len(blob)))]
    if draw(st.integers(0, 7)) == 0:
        blob = draw(mutated(blob, max_ops=2))  # raw damage, checksums and all
    return blob


# --------------------------------------------------------------------------- wandb


def _wandb_pb() -> Any:
    from wandb.proto import wandb_internal_pb2

    return wandb_internal_pb2


@st.composite
def wandb_record(draw: st.DrawFn) -> bytes:
    pb = _wandb_pb()
    rec = pb.Record()
    kind = draw(
        st.sampled_from(("history", "history", "config", "summary", "run", "exit", "environment"))
    )

    def item(into: Any) -> None:
        if draw(st.booleans()):
            into.key = draw(NAMES)
        else:
            into.nested_key.extend(draw(st.lists(NAMES, max_size=3)))
        into.value_json = draw(
            st.one_of(JSON_VALUES.map(lambda v: json_text(v, True)), ODD_TEXT, st.just(""))
        )

    if kind == "history":
        for _ in range(draw(st.integers(0, 4))):
            item(rec.history.item.add())
        if draw(st.booleans()):
            rec.history.step.num = draw(STEPS_INT64)
    elif kind == "config":
        for _ in range(draw(st.integers(0, 3))):
            item(rec.config.update.add())
        for _ in range(draw(st.integers(0, 1))):
            rec.config.remove.add().key = draw(NAMES)
    elif kind == "summary":
        for _ in range(draw(st.integers(0, 3))):
            item(rec.summary.update.add())
    elif kind == "run":
        rec.run.display_name = draw(ODD_TEXT)
        rec.run.tags.extend(draw(st.lists(ODD_TEXT, max_size=2)))
        rec.run.start_time.seconds = draw(st.integers(-(2**40), 2**40))
        rec.run.start_time.nanos = draw(st.integers(-(10**9), 10**9))
        rec.run.git.commit = draw(st.sampled_from(["", "abc123"]))
        for _ in range(draw(st.integers(0, 2))):
            item(rec.run.config.update.add())
    elif kind == "exit":
        rec.exit.exit_code = draw(st.integers(-(2**31), 2**31 - 1))
    else:
        rec.environment.program = draw(ODD_TEXT)
        rec.environment.args.extend(draw(st.lists(ODD_TEXT, max_size=2)))
        rec.environment.host = draw(ODD_TEXT)
    return rec.SerializeToString()


@st.composite
def wandb_file(draw: st.DrawFn) -> bytes:
    if draw(st.booleans()):
        payloads = draw(st.lists(wandb_record(), max_size=8))
        if draw(st.integers(0, 6)) == 0:  # one record spanning blocks (FIRST/MIDDLE/LAST)
            pb = _wandb_pb()
            big = pb.Record()
            it = big.history.item.add()
            it.key = "big"
            it.value_json = json.dumps("x" * draw(st.integers(32_000, 70_000)))
            payloads.insert(draw(st.integers(0, len(payloads))), big.SerializeToString())
    else:
        payloads = framing.wandb_payloads(draw(st.sampled_from(fixture_files("*.wandb"))))
    payloads = [
        draw(st.one_of(st.just(p), mutated(p, max_ops=3))) if draw(st.integers(0, 3)) == 0 else p
        for p in payloads
    ]
    blob = framing.wandb_log(payloads)
    fate = draw(st.integers(0, 7))
    if fate == 0:
        blob = blob[: draw(st.integers(0, len(blob)))]
    elif fate == 1:
        blob = draw(mutated(blob, max_ops=2))
    return blob


# --------------------------------------------------------------------------- documents with known keys


def keyed(*keys: str) -> st.SearchStrategy[dict[str, Any]]:
    """A JSON object using the keys a reader looks for, with values of any type."""
    known = st.sampled_from(keys)
    values = st.one_of(JSON_VALUES, st.dictionaries(known, JSON_VALUES, max_size=3))
    return st.dictionaries(st.one_of(known, known, NAMES), values, max_size=len(keys) + 2)


@st.composite
def keyed_json(draw: st.DrawFn, *keys: str) -> bytes:
    data = json_text(draw(keyed(*keys)), draw(st.booleans())).encode("utf-8", "surrogatepass")
    return draw(st.one_of(st.just(data), st.just(data), mutated(data, JSON_TOKENS, 2)))


@st.composite
def keyed_yaml(draw: st.DrawFn, *keys: str) -> bytes:
    import yaml

    doc = draw(keyed(*keys))
    wrapped = {
        k: ({"value": v, "desc": None} if draw(st.booleans()) else v) for k, v in doc.items()
    }
    data = yaml.safe_dump(wrapped, allow_unicode=True).encode("utf-8", "surrogatepass")
    return draw(st.one_of(st.just(data), st.just(data), mutated(data, YAML_TOKENS, 2)))


MLFLOW_TAGS = ("mlflow.runName", "mlflow.user", "mlflow.source.git.commit", "mlflow.source.name")
MARKER_KEYS = ("name", "config", "seed", "tags", "command", "status", "metrics")
SUMMARY_KEYS = ("_step", "_runtime", "_timestamp", "loss", "acc", "_wandb")
METADATA_KEYS = ("python", "os", "platform", "cuda", "cudaVersion", "gpu", "gpu_count",
                 "gpuCount", "gpu_nvidia", "gpu_devices", "gpu_apple", "program", "codePath",
                 "args", "git", "commit", "remote", "host", "username", "startedAt", "cwd", "root",
                 "name", "memory_total")  # fmt: skip
WANDB_CONFIG_KEYS = ("_wandb", "wandb_version", "lr", "seed", "model", "value")
RESULT_KEYS = ("train_runtime", "train_loss", "eval_loss", "epoch", "global_step", "total_flos")
HPARAM_KEYS = ("max_epochs", "trainer.max_epochs", "epochs", "num_epochs", "seed", "lr")

# --------------------------------------------------------------------------- run directories

Tree = dict[str, bytes]

_EMPTY = st.just(b"")


def _numbers_dict(draw: st.DrawFn) -> dict[str, Any]:
    return draw(st.dictionaries(NAMES, st.one_of(INTS, FLOATS, ODD_TEXT, st.none()), max_size=5))


@st.composite
def hf_trainer_state(draw: st.DrawFn) -> bytes:
    state = {
        "log_history": draw(
            st.one_of(
                st.lists(st.one_of(metric_record(), JSON_VALUES), max_size=6),
                JSON_VALUES,
            )
        ),
        "global_step": draw(st.one_of(INTS, FLOATS, JSON_VALUES)),
        "max_steps": draw(st.one_of(INTS, FLOATS, JSON_VALUES)),
        **_numbers_dict(draw),
    }
    data = json_text(state, True).encode()
    return draw(st.one_of(st.just(data), mutated(data, JSON_TOKENS)))


@st.composite
def hf_args_events(draw: st.DrawFn) -> bytes:
    """HF Trainer's TensorBoard file: an ``args`` text summary (TrainingArguments as JSON)."""
    from tensorboard.compat.proto import event_pb2

    ev = event_pb2.Event(wall_time=1.79e9, step=0)
    v = ev.summary.value.add(tag="args/text_summary")
    v.metadata.plugin_data.plugin_name = "text"
    v.tensor.dtype = 7
    args = draw(st.one_of(st.dictionaries(NAMES, JSON_VALUES, max_size=5), JSON_VALUES))
    v.tensor.string_val.append(draw(mutated(json_text(args, True).encode(), JSON_TOKENS, 2)))
    return framing.tfrecord(ev.SerializeToString()) + draw(event_file())


def _mlflow_db(draw: st.DrawFn) -> bytes:
    """An MLflow SQLite store with MLflow's tables, holding odd values (SQLite keeps any type)."""
    import os
    import sqlite3
    import tempfile

    fd, path = tempfile.mkstemp(suffix=".db")
    os.close(fd)
    try:
        conn = sqlite3.connect(path)
        conn.executescript(
            "CREATE TABLE runs (run_uuid VARCHAR(32) NOT NULL PRIMARY KEY, name VARCHAR(250),"
            " status VARCHAR(9), start_time BIGINT, end_time BIGINT,"
            " lifecycle_stage VARCHAR(32), artifact_uri VARCHAR(200));"
            "CREATE TABLE params (key VARCHAR(250) NOT NULL, value VARCHAR(8000) NOT NULL,"
            " run_uuid VARCHAR(32) NOT NULL);"
            "CREATE TABLE tags (key VARCHAR(250) NOT NULL, value VARCHAR(5000),"
            " run_uuid VARCHAR(32) NOT NULL);"
            "CREATE TABLE metrics (key VARCHAR(250) NOT NULL, value FLOAT NOT NULL,"
            " timestamp BIGINT NOT NULL, run_uuid VARCHAR(32) NOT NULL,"
            " step BIGINT DEFAULT '0' NOT NULL, is_nan BOOLEAN DEFAULT '0' NOT NULL);"
        )
        cell = st.one_of(INTS.filter(lambda i: -(2**63) <= i < 2**63), st.floats(allow_nan=False), ODD_TEXT,
                         st.binary(max_size=4))  # fmt: skip
        for i in range(draw(st.integers(0, 2))):
            uuid = f"run{i}"
            conn.execute(
                "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?)",
                (uuid, draw(st.one_of(st.none(), ODD_TEXT)),
                 draw(st.sampled_from(["FINISHED", "FAILED", "RUNNING", "x", None])),
                 draw(st.one_of(st.none(), cell)), draw(st.one_of(st.none(), cell)),
                 draw(st.sampled_from(["active", "deleted", None])), "file:///tmp"),
            )  # fmt: skip
            for _ in range(draw(st.integers(0, 3))):
                conn.execute(
                    "INSERT INTO metrics VALUES (?, ?, ?, ?, ?, ?)",
                    (draw(NAMES), draw(cell), draw(cell), uuid, draw(cell), draw(cell)),
                )
            for table in ("params", "tags"):
                for _ in range(draw(st.integers(0, 2))):
                    conn.execute(
                        f"INSERT INTO {table} VALUES (?, ?, ?)",
                        (
                            draw(st.one_of(NAMES, st.sampled_from(MLFLOW_TAGS))),
                            draw(st.one_of(ODD_TEXT, cell)),
                            uuid,
                        ),
                    )
        conn.commit()
        conn.close()
        data = Path(path).read_bytes()
    finally:
        os.unlink(path)
    if draw(st.integers(0, 4)) == 0:
        data = draw(mutated(data, max_ops=2))
    return data


@st.composite
def run_tree(draw: st.DrawFn, layout: str) -> Tree:
    """The files of one run directory of ``layout``, as its writer lays them out, contents fuzzed."""
    files: Tree = {}
    if layout == "generic":
        cfg = draw(st.sampled_from(["config.yaml", "config.json", "config.toml", "config.yml"]))
        files[cfg] = draw(
            {"config.json": json_document()}.get(
                cfg, toml_document() if cfg.endswith("toml") else yaml_document()
            )
        )
        for name, strategy in (("metrics.jsonl", jsonl_document()), ("metrics.csv", csv_document()),
                               ("metrics.json", json_document()), ("train.log", log_document()),
                               ("labbook.json", keyed_json(*MARKER_KEYS))):  # fmt: skip
            if draw(st.booleans()):
                files[name] = draw(st.one_of(strategy, _EMPTY))
    elif layout == "hf_trainer":
        files["trainer_state.json"] = draw(hf_trainer_state())
        if draw(st.booleans()):
            files["checkpoint-4/trainer_state.json"] = draw(hf_trainer_state())
        for name in ("all_results.json", "train_results.json", "config.json"):
            if draw(st.booleans()):
                files[name] = draw(st.one_of(json_document(), keyed_json(*RESULT_KEYS)))
        files["runs/Nov22_19-18-41_vm/events.out.tfevents.1795375121.vm.1.0"] = draw(
            hf_args_events()
        )
        if draw(st.booleans()):
            files["train.log"] = draw(log_document())
    elif layout == "lightning":
        v = "lightning_logs/version_0/"
        files[v + "hparams.yaml"] = draw(st.one_of(yaml_document(), keyed_yaml(*HPARAM_KEYS)))
        if draw(st.booleans()):
            files[v + "metrics.csv"] = draw(csv_document())
        if draw(st.booleans()):
            files[v + "events.out.tfevents.1795375104.vm.1.0"] = draw(event_file())
        if draw(st.booleans()):
            files[
                v
                + "checkpoints/epoch="
                + draw(st.sampled_from(["2", "9" * 30, "x"]))
                + "-step=9.ckpt"
            ] = b""
        if draw(st.booleans()):
            files["train.log"] = draw(log_document())
    elif layout == "hydra":
        files[".hydra/config.yaml"] = draw(yaml_document())
        files[".hydra/overrides.yaml"] = draw(yaml_document())
        job = draw(st.sampled_from(["train", "", "a/b", "x" * 200]))
        hydra = {
            "hydra": {
                "job": {"name": job},
                "runtime": {"cwd": draw(st.one_of(ODD_TEXT, JSON_VALUES))},
            }
        }
        files[".hydra/hydra.yaml"] = draw(
            st.one_of(st.just(json_text(hydra, True).encode()), yaml_document())
        )
        files[(job.replace("/", "_") or "train") + ".log"] = draw(log_document())
        if draw(st.booleans()):
            files["metrics.csv"] = draw(csv_document())
        if draw(st.booleans()):
            files["tb/events.out.tfevents.1.vm"] = draw(event_file())
    elif layout == "wandb":
        run = "wandb/offline-run-20261122_191851-fo7090ag/"
        for name, strategy in (("files/config.yaml", keyed_yaml(*WANDB_CONFIG_KEYS)),
                               ("files/wandb-summary.json", keyed_json(*SUMMARY_KEYS)),
                               ("files/wandb-metadata.json", keyed_json(*METADATA_KEYS)),
                               ("files/output.log", log_document()),
                               ("files/diff.patch", log_document())):  # fmt: skip
            if draw(st.booleans()):
                files[run + name] = draw(strategy)
        files[run + "run-fo7090ag.wandb"] = draw(wandb_file())
    elif layout == "mlflow":
        run = "mlruns/0/0123456789abcdef/"
        meta = {"run_id": "0123456789abcdef", "run_name": draw(st.one_of(ODD_TEXT, JSON_VALUES)),
                "status": draw(st.one_of(st.integers(0, 6), JSON_VALUES)),
                "start_time": draw(st.one_of(INTS, FLOATS, JSON_VALUES)),
                "end_time": draw(st.one_of(INTS, FLOATS, JSON_VALUES))}  # fmt: skip
        files[run + "meta.yaml"] = draw(
            st.one_of(st.just(json_text(meta, True).encode()), yaml_document())
        )
        for sub in ("params", "metrics", "tags"):
            for name in draw(st.lists(st.sampled_from(["lr", "loss", "val/loss", "mlflow.runName", "seed"]),
                                      max_size=2, unique=True)):  # fmt: skip
                lines = draw(
                    st.lists(st.tuples(_NUMBER_TEXT, _NUMBER_TEXT, _NUMBER_TEXT), max_size=4)
                )
                text = "\n".join(" ".join(t) for t in lines) if sub == "metrics" else draw(ODD_TEXT)
                files[f"{run}{sub}/{name}"] = draw(maybe_mutated(st.just(text.encode())))
    elif layout == "mlflow_db":
        files["mlflow.db"] = _mlflow_db(draw)
    elif layout == "tensorboard":
        files["events.out.tfevents.1795374911.vm.1.0"] = draw(event_file())
        if draw(st.booleans()):
            files["loss_train/events.out.tfevents.1795374911.vm.1.1"] = draw(event_file())
        if draw(st.booleans()):
            files["1795374911.204394/events.out.tfevents.1795374911.vm.1.2"] = draw(event_file())
        if draw(st.booleans()):
            files["config.yaml"] = draw(yaml_document())
        if draw(st.booleans()):
            files["train.log"] = draw(log_document())
    else:
        raise ValueError(layout)
    return files


LAYOUTS = (
    "generic",
    "hf_trainer",
    "lightning",
    "hydra",
    "wandb",
    "mlflow",
    "mlflow_db",
    "tensorboard",
)


def f32(x: float) -> float:
    """``x`` rounded to float32, as a simple_value holds it."""
    return struct.unpack("<f", struct.pack("<f", x))[0]
