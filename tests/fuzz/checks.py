"""One check per reader: feed it bytes, let nothing but warnings out, assert the invariants.

A check is the whole contract of a reader on one input:

* no exception escapes (bad input is reported by :func:`labbook.warn.warn` as
  one-line warnings, and the reader returns what it could read);
* what comes back is storable: metric values are floats (NaN and infinities
  allowed), steps are ints that fit SQLite's int64, wall times floats or None,
  tags and config keys are ``str`` that encode to UTF-8;
* where a reader has a live tail, reading the bytes in pieces (as the watch
  daemon does while a file grows) gives what one full read gives.

The checks take the raw file bytes (a run directory as ``{path: bytes}``), so the
fuzz targets and the regression replay (tests/fixtures/fuzz) run the same code.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from labbook.model import FAILURE_KINDS, Point, RunFacts

INT64 = (-(2**63), 2**63 - 1)
_WORK = Path(tempfile.mkdtemp(prefix="labbook-fuzz-"))


def workdir(name: str) -> Path:
    """A fresh, empty directory for one example (the same path each time: cheap)."""
    d = _WORK / name
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    return d


def write(d: Path, name: str, data: bytes) -> Path:
    p = d / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


# --------------------------------------------------------------------------- invariants


def check_text(what: str, text: Any) -> None:
    assert isinstance(text, str), f"{what}: {type(text).__name__}, not str: {text!r}"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise AssertionError(f"{what} {text!r} cannot be stored as UTF-8: {exc}") from None


def check_point(where: str, p: Any) -> None:
    assert type(p) is Point, f"{where}: {p!r} is not a Point"
    assert type(p.step) is int, f"{where}: step {p.step!r} is {type(p.step).__name__}, not int"
    assert INT64[0] <= p.step <= INT64[1], f"{where}: step {p.step} does not fit in int64"
    assert type(p.value) is float, f"{where}: value {p.value!r} is {type(p.value).__name__}"
    if p.wall_time is not None:
        assert type(p.wall_time) is float, f"{where}: wall time {p.wall_time!r} is not a float"


def check_metrics(where: str, metrics: Any) -> None:
    assert isinstance(metrics, dict), f"{where}: metrics are a {type(metrics).__name__}"
    for tag, points in metrics.items():
        check_text(f"{where}: tag", tag)
        assert isinstance(points, list), f"{where}: {tag!r} points are {type(points).__name__}"
        for p in points:
            check_point(f"{where}: {tag!r}", p)


def check_config(where: str, config: Any) -> None:
    assert isinstance(config, dict), f"{where}: config is a {type(config).__name__}"
    for key, value in config.items():
        check_text(f"{where}: config key", key)
        text = json.dumps(value, ensure_ascii=False, default=str, allow_nan=True)
        check_text(f"{where}: config value of {key!r}", text)


def check_facts(facts: Any) -> None:
    assert isinstance(facts, RunFacts), f"a recogniser gave {type(facts).__name__}"
    where = f"{facts.framework} run {facts.path}"
    check_metrics(where, facts.metrics)
    check_config(where, facts.config)
    for name in ("name", "cwd", "host", "user", "log_tail"):
        value = getattr(facts, name)
        if value is not None:
            check_text(f"{where}: {name}", _safe(value))
    for arg in facts.command or []:
        check_text(f"{where}: command", _safe(arg))
    for tag in facts.tags:
        check_text(f"{where}: tag", tag)
    for t in (facts.started_at, facts.ended_at):
        assert t is None or isinstance(t, (int, float)), f"{where}: time {t!r}"
    if facts.failure is not None:
        assert facts.failure.kind in FAILURE_KINDS, f"{where}: failure {facts.failure!r}"
        check_text(f"{where}: failure message", facts.failure.message)
    json.dumps(facts.seed.value, allow_nan=True, default=str)
    if facts.env is not None:
        for value in (facts.env.python, facts.env.platform, facts.env.cuda, *facts.env.gpus):
            if value is not None:
                check_text(f"{where}: env", value)
    if facts.git is not None:
        for value in (facts.git.root, facts.git.commit, facts.git.remote, facts.git.diff):
            if value is not None:
                check_text(f"{where}: git", _safe(value))
    # The end of the road: the store records the run (a run lost here is lost).
    _store().save_run(facts)


_STORE: list[Any] = []


def _store() -> Any:
    """One real store for the whole fuzz session, in the temp dir."""
    if not _STORE:
        from labbook.store import Store

        _STORE.append(Store.open(_WORK / "labbook.db"))
    return _STORE[0]


def _safe(text: Any) -> Any:
    """What the store does to names and paths before storing them."""
    from labbook.store import safe_text

    return safe_text(text) if isinstance(text, str) else text


def same_points(a: list[Point], b: list[Point]) -> bool:
    """Equal point lists, NaN equal to NaN."""
    return len(a) == len(b) and all(_key(p) == _key(q) for p, q in zip(a, b, strict=True))


def _key(p: Point) -> tuple[Any, ...]:
    v = "nan" if math.isnan(p.value) else p.value
    w = "nan" if p.wall_time is not None and math.isnan(p.wall_time) else p.wall_time
    return (p.step, v, w)


def assert_same_metrics(
    what: str, full: dict[str, list[Point]], parts: dict[str, list[Point]]
) -> None:
    full = {k: v for k, v in full.items() if v}
    parts = {k: v for k, v in parts.items() if v}
    assert full.keys() == parts.keys(), f"{what}: tags differ: {sorted(full)} vs {sorted(parts)}"
    for tag in full:
        assert same_points(full[tag], parts[tag]), f"{what}: {tag!r}: {full[tag]} vs {parts[tag]}"


def cut_points(size: int, drawn: Iterable[int] | None) -> list[int]:
    """Where to split a file for a tail check: those drawn, or (replay) a spread of all."""
    if drawn is not None:
        return sorted({min(max(c, 0), size) for c in drawn})
    step = max(1, size // 64)
    return sorted({*range(0, size + 1, step), size})


# --------------------------------------------------------------------------- readers


def tfevents(data: bytes, cuts: Iterable[int] | None = None) -> None:
    """read_events: full read, small read chunks, a scalar oracle, and the resumed (tail) read."""
    from labbook.readers.tfevents import file_fingerprint, read_events

    d = workdir("tfevents")
    path = write(d, "events.out.tfevents.1.host", data)
    full = read_events(path)
    check_batch(full, len(data))
    file_fingerprint(path)
    chunked = read_events(path, chunk_size=7)
    assert_same_metrics("chunk_size=7 vs whole", full.scalars, chunked.scalars)
    assert chunked.offset == full.offset and chunked.records == full.records
    oracle_scalars(data, full.scalars)
    # The live tail: the file as it grows, read from where the last read stopped.
    for cut in cut_points(len(data), cuts):
        path.write_bytes(data[:cut])
        first = read_events(path)
        with open(path, "ab") as f:
            f.write(data[cut:])
        second = read_events(path, first.offset, first.fingerprint or None)
        joined: dict[str, list[Point]] = (
            {} if second.reset else {k: list(v) for k, v in first.scalars.items()}
        )
        for tag, points in second.scalars.items():
            joined.setdefault(tag, []).extend(points)
        assert_same_metrics(f"tail split at byte {cut} vs whole", full.scalars, joined)
        assert second.offset == full.offset, (cut, second.offset, full.offset)


def check_batch(batch: Any, size: int) -> None:
    check_metrics("events", batch.scalars)
    for tag, text in batch.texts.items():
        check_text("text tag", tag)
        check_text("text", text)
    for name in batch.hparams:
        check_text("hparam", name)
    json.dumps(batch.hparams, allow_nan=True, default=str)
    for tag in batch.hparam_metrics:
        check_text("hparam metric", tag)
    assert 0 <= batch.offset <= size, (batch.offset, size)
    for t in (batch.first_wall_time, batch.last_wall_time):
        assert t is None or type(t) is float, t


def oracle_scalars(data: bytes, got: dict[str, list[Point]]) -> None:
    """The values the fast paths decode equal protobuf's, record by record.

    Framing and decoding here are independent of the reader: every record with
    valid checksums is parsed with ``Event.FromString``. Only values and wall
    times are compared (how step-less and repeated steps are numbered is the
    reader's business); steps are compared when the file's steps strictly increase.
    """
    import struct

    from google.protobuf.message import DecodeError
    from tensorboard.compat.proto import event_pb2

    from tests.fuzz.framing import masked_crc32c

    want: dict[str, list[tuple[int, float, float | None]]] = {}
    p = 0
    while p + 12 <= len(data):
        n, length_crc = struct.unpack_from("<QI", data, p)
        if masked_crc32c(data[p : p + 8]) != length_crc:
            break
        if n > 64 << 20 or p + 16 + n > len(data):
            break
        payload = data[p + 12 : p + 12 + n]
        (data_crc,) = struct.unpack_from("<I", data, p + 12 + n)
        p += 16 + n
        if masked_crc32c(payload) != data_crc:
            continue
        try:
            ev = event_pb2.Event.FromString(payload)
        except (DecodeError, ValueError, RuntimeError):
            continue
        for v in ev.summary.value:
            plugin = v.metadata.plugin_data.plugin_name
            if plugin == "hparams":
                continue
            if v.WhichOneof("value") == "simple_value":
                value: float | None = v.simple_value
            elif v.WhichOneof("value") == "tensor" and plugin != "text":
                value = _oracle_tensor(v.tensor, plugin == "scalars")
            else:
                value = None
            if value is not None:
                want.setdefault(v.tag, []).append((ev.step, value, ev.wall_time or None))
    assert {k for k, v in got.items() if v} == set(want), (sorted(got), sorted(want))
    for tag, points in want.items():
        steps = [s for s, _, _ in points]
        compare_steps = all(a < b for a, b in itertools.pairwise(steps)) and steps[0] > 0
        mine = [(s if compare_steps else None, v, w) for s, v, w in points]
        theirs = [(p.step if compare_steps else None, p.value, p.wall_time) for p in got[tag]]
        assert _nan_safe(mine) == _nan_safe(theirs), f"{tag!r}: protobuf {mine} vs reader {theirs}"


def _nan_safe(items: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return [tuple("nan" if isinstance(x, float) and math.isnan(x) else x for x in t) for t in items]


def _oracle_tensor(t: Any, scalars_plugin: bool) -> float | None:
    """A one-element numeric tensor's value (the reader's documented rule, written again)."""
    import struct

    fmts = {1: ("float_val", "<f"), 2: ("double_val", "<d"), 3: ("int_val", "<i"),
            4: ("int_val", "<B"), 5: ("int_val", "<h"), 6: ("int_val", "<b"),
            9: ("int64_val", "<q"), 14: ("half_val", "<H"), 17: ("int_val", "<H"),
            19: ("half_val", "<H"), 22: ("uint32_val", "<I"), 23: ("uint64_val", "<Q")}  # fmt: skip
    if t.dtype not in fmts:
        return None
    dims = [d.size for d in t.tensor_shape.dim]
    if math.prod(dims) != 1 or (dims and not scalars_plugin):
        return None
    name, fmt = fmts[t.dtype]
    if t.tensor_content:
        if len(t.tensor_content) != struct.calcsize(fmt):
            return None
        raw = struct.unpack(fmt, t.tensor_content)[0]
    else:
        values = getattr(t, name)
        raw = values[0] if values else 0
    if t.dtype == 19:
        return float(struct.unpack("<e", struct.pack("<H", raw & 0xFFFF))[0])
    if t.dtype == 14:
        return float(struct.unpack("<f", struct.pack("<I", (raw & 0xFFFF) << 16))[0])
    return float(raw)


def tfevents_tail(data: bytes, cuts: Iterable[int] | None = None) -> None:
    """labbook.sources.watch.tail on a growing event file in a sub-directory (tag prefixes)."""
    from labbook.recognisers.common import read_event_files
    from labbook.sources.watch.tail import read_appended, tail_files

    d = workdir("tfevents_tail")
    path = write(d, "loss_train/events.out.tfevents.2.host", data)
    assert tail_files(d) == [str(path)]
    full = read_event_files(d)
    check_metrics("read_event_files", full.metrics)
    for cut in cut_points(len(data), cuts):
        path.write_bytes(data[:cut])
        first = read_appended(d, str(path), None)
        with open(path, "ab") as f:
            f.write(data[cut:])
        pos = {"offset": first.offset, "fingerprint": first.fingerprint, "state": first.state}
        second = read_appended(d, str(path), pos)
        got: dict[str, list[Point]] = (
            {} if second.reset else {k: list(v) for k, v in first.metrics.items()}
        )
        for tag, points in second.metrics.items():
            got.setdefault(tag, []).extend(points)
        check_metrics("tail", got)
        for points in got.values():
            points.sort(key=lambda p: (p.step, p.wall_time or 0.0))
        assert_same_metrics(f"tail split at byte {cut} vs import", full.metrics, got)


def wandb_log(data: bytes) -> None:
    from labbook.readers.wandb_log import WandbLog, read_wandb_log

    d = workdir("wandb")
    log = read_wandb_log(write(d, "run-abc.wandb", data))
    if log is None:
        return
    assert isinstance(log, WandbLog)
    check_metrics("wandb history", log.history)
    check_config("wandb config", log.config)
    check_config("wandb summary", log.summary)
    assert log.exit_code is None or type(log.exit_code) is int
    assert log.started_at is None or type(log.started_at) is float
    for value in (log.name, log.host, log.user, log.cwd, log.git_commit, *(log.command or [])):
        if value is not None:
            check_text("wandb field", value)
    for tag in log.tags:
        check_text("wandb tag", tag)


def config_file(data: bytes, suffix: str) -> None:
    """load_config (and the loader for the suffix) on a config file."""
    from labbook.model import flatten
    from labbook.readers.files import load_config

    d = workdir("config")
    cfg = load_config(write(d, "config" + suffix, data))
    if cfg is None:
        return
    assert isinstance(cfg, dict)
    check_config("flattened config", flatten(cfg))


def json_metrics(data: bytes) -> None:
    from labbook.readers.files import load_json, read_json_metrics

    d = workdir("json")
    path = write(d, "metrics.json", data)
    check_metrics("metrics.json", read_json_metrics(path))
    doc = load_json(path)
    json.dumps(doc, allow_nan=True)


def jsonl_metrics(data: bytes) -> None:
    line_file(data, "metrics.jsonl")


def csv_metrics(data: bytes) -> None:
    line_file(data, "metrics.csv")


def line_file(data: bytes, name: str, cuts: Iterable[int] | None = None) -> None:
    """The full read of metrics.jsonl/csv, and the live tail over the same bytes."""
    from labbook.readers.files import read_csv_metrics, read_jsonl_metrics
    from labbook.sources.watch.tail import read_appended

    read = read_csv_metrics if name.endswith(".csv") else read_jsonl_metrics
    d = workdir("lines")
    path = write(d, name, data)
    metrics, truncated = read(path)
    check_metrics(name, metrics)
    assert isinstance(truncated, bool)
    if not data.endswith(b"\n"):
        # The tail waits for the newline the writer has yet to write; so does the comparison.
        data += b"\n"
        path.write_bytes(data)
        metrics, _ = read(path)
    for cut in cut_points(len(data), cuts):
        path.write_bytes(data[:cut])
        first = read_appended(d, str(path), None)
        with open(path, "ab") as f:
            f.write(data[cut:])
        pos = {"offset": first.offset, "fingerprint": first.fingerprint, "state": first.state}
        second = read_appended(d, str(path), pos)
        json.dumps(second.state)  # positions are stored as JSON
        joined: dict[str, list[Point]] = (
            {} if second.reset else {k: list(v) for k, v in first.metrics.items()}
        )
        for tag, points in second.metrics.items():
            joined.setdefault(tag, []).extend(points)
        check_metrics(f"{name} tail", joined)
        assert_same_metrics(f"{name}: tail split at byte {cut} vs full read", metrics, joined)


def log_file(data: bytes) -> None:
    """read_log with its default windows and with tiny ones (head and tail both cut)."""
    from labbook.readers.logs import classify_failure, read_log

    d = workdir("log")
    path = write(d, "train.log", data)
    for head, tail in ((8 << 20, 8 << 20), (64, 48), (7, 300)):
        facts = read_log(path, head_bytes=head, tail_bytes=tail)
        if facts is None:
            continue
        check_metrics("log", facts.metrics)
        check_config("log config", facts.config)
        check_text("log tail", facts.tail)
        if facts.traceback is not None:
            check_text("traceback", facts.traceback)
        if facts.failure is not None:
            assert facts.failure.kind in FAILURE_KINDS
            check_text("failure", facts.failure.message)
            assert "\n" not in facts.failure.message
            assert facts.failure.step is None or type(facts.failure.step) is int
        if facts.seed is not None:
            json.dumps(facts.seed.value)
    text = data.decode("utf-8", "replace")
    for code in (None, 1, -9, 137):
        failure = classify_failure(text, exit_code=code)
        assert failure is None or failure.kind in FAILURE_KINDS


def run_dir(tree: dict[str, bytes]) -> None:
    """Every recogniser that matches a directory of the tree reads it; every run is storable."""
    from labbook.recognisers import RECOGNISERS, walk
    from labbook.sources.discover import discover

    root = workdir("tree")
    for rel, data in tree.items():
        write(root, rel, data)
    for d in walk(root, lambda d: True):
        for rec in RECOGNISERS:
            if rec.match(d):
                for facts in rec.read(d):
                    check_facts(facts)
    discover([root])


def tree_from_dir(d: Path) -> dict[str, bytes]:
    return {
        p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()
    }


# --------------------------------------------------------------------------- registry

#: reader name -> check on the bytes of one input file (regression fixtures are
#: replayed through these: tests/fixtures/fuzz/<reader>/<name>.bin).
CHECKS: dict[str, Callable[[bytes], None]] = {
    "tfevents": tfevents,
    "tfevents_tail": tfevents_tail,
    "wandb": wandb_log,
    "json_config": lambda data: config_file(data, ".json"),
    "yaml_config": lambda data: config_file(data, ".yaml"),
    "toml_config": lambda data: config_file(data, ".toml"),
    "json_metrics": json_metrics,
    "jsonl": jsonl_metrics,
    "csv": csv_metrics,
    "log": log_file,
}

FIXTURE_ROOT = Path(__file__).resolve().parent.parent / "fixtures" / "fuzz"


def save_crash(reader: str, data: Any) -> Path:
    """Keep a failing input where the report points at it (not in the repo: copy it there).

    Tail inputs are ``(bytes, split points)``: the bytes are kept (a replay tries many splits).
    """
    import hashlib

    if isinstance(data, tuple):
        data = data[0]

    crash_dir = Path(
        os.environ.get(
            "LABBOOK_FUZZ_CRASH_DIR", Path(tempfile.gettempdir()) / "labbook-fuzz-crashes"
        )
    )
    if isinstance(data, dict):
        digest = hashlib.sha1(repr(sorted(data.items())).encode()).hexdigest()[:10]
        out = crash_dir / reader / f"crash-{digest}"
        for rel, blob in data.items():
            write(out, rel, blob)
        return out
    digest = hashlib.sha1(data).hexdigest()[:10]
    out = crash_dir / reader / f"crash-{digest}.bin"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    return out


def quiet() -> Any:
    """Silence labbook's warnings (expected on every bad input) during an example."""
    logger = logging.getLogger("labbook")

    class _Quiet:
        def __enter__(self) -> None:
            self.level = logger.level
            self.propagate = logger.propagate
            logger.setLevel(logging.CRITICAL)
            logger.propagate = False

        def __exit__(self, *exc: object) -> None:
            logger.setLevel(self.level)
            logger.propagate = self.propagate

    return _Quiet()
