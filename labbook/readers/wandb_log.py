"""wandb's binary transaction log, ``run-<id>.wandb``.

Recent wandb versions (wandb-core) write an offline run almost only into this
file: config, history rows, summary, environment and the exit record. Its
framing is the LevelDB log format behind a 7-byte W&B header: 32 KiB blocks of
chunks, each ``<crc32 u32><length u16><type u8>`` then the payload; a record is
one FULL chunk or FIRST, MIDDLE…, LAST. Each record is a protobuf
``wandb_internal.Record``, decoded with labbook's own declarations of the few
messages it reads (:mod:`labbook.readers.wandb_proto`): wandb need not be
installed where labbook runs, and is never imported.

A run that is still writing, or was killed, ends in a torn chunk: reading stops
there and the run is marked truncated; everything before it is kept. The init
config (and so, usually, the seed) is in the ``run`` record near the start:
:attr:`WandbLog.run_record` says whether it was read.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labbook.model import Point
from labbook.readers.contain import outside
from labbook.readers.values import json_number, number
from labbook.warn import warn, warn_exception

HEADER = struct.pack("<4sHB", b":W&B", 0xBEE1, 0)
BLOCK = 32 * 1024
_CHUNK = struct.Struct("<IHB")
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4
#: Larger logs are read only up to this many bytes (a run that logged gigabytes of media).
MAX_BYTES = 512 * 1024 * 1024


@dataclass
class WandbLog:
    config: dict[str, Any] = field(default_factory=dict)
    history: dict[str, list[Point]] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    exit_code: int | None = None
    truncated: bool = False
    started_at: float | None = None
    name: str | None = None
    tags: list[str] = field(default_factory=list)
    host: str | None = None
    user: str | None = None
    command: list[str] | None = None
    cwd: str | None = None
    git_commit: str | None = None
    git_remote: str | None = None
    #: the sweep the run belongs to (``wandb agent``, ``WANDB_SWEEP_ID``)
    sweep_id: str | None = None
    #: the environment records as wandb-metadata.json would have held them
    metadata: dict[str, Any] = field(default_factory=dict)
    #: whether the ``run`` record (the init config) was read; False when the log is
    #: torn or damaged before it, so what the config holds (the seed) is unknown
    run_record: bool = False


def chunks(data: bytes) -> Iterator[bytes]:
    """The records' payloads; stops at the first torn or corrupt chunk."""
    pos, buf = len(HEADER), b""
    while pos + _CHUNK.size <= len(data):
        room = BLOCK - pos % BLOCK
        if room < _CHUNK.size:  # block trailer: zero padding
            pos += room
            continue
        crc, n, kind = _CHUNK.unpack_from(data, pos)
        start = pos + _CHUNK.size
        payload = data[start : start + n]
        if kind == 0 and n == 0 and crc == 0:  # zero padding to the end of a block
            pos += room
            continue
        if kind not in (FULL, FIRST, MIDDLE, LAST) or len(payload) < n:
            raise _Torn(pos)
        if zlib.crc32(payload, zlib.crc32(bytes([kind]))) != crc:
            raise _Torn(pos)
        pos = start + n
        if kind == FULL:
            yield payload
        elif kind == FIRST:
            buf = payload
        elif kind == MIDDLE:
            buf += payload
        else:
            yield buf + payload
            buf = b""


class _Torn(Exception):
    def __init__(self, offset: int) -> None:
        super().__init__(offset)
        self.offset = offset


def _item(item: Any) -> tuple[str, Any]:
    """A ConfigItem / SummaryItem / HistoryItem as (dotted key, value)."""
    key = item.key or ".".join(item.nested_key)
    oneofs = item.DESCRIPTOR.oneofs_by_name
    kind = item.WhichOneof("value") if "value" in oneofs else None
    if kind in (None, "value_json", "json"):
        raw = getattr(item, kind or "value_json")
        try:
            return key, json.loads(raw) if raw else None
        except ValueError:
            return key, raw
    if kind == "none":
        return key, None
    return key, getattr(item, kind)


def read_wandb_log(path: Path) -> WandbLog | None:
    """Read ``path``; None (with one warning) when it cannot be read or is no wandb log."""
    if outside(path):
        return None
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_BYTES)
    except OSError as exc:
        warn(path, f"cannot read ({exc.strerror or exc})")
        return None
    if not data.startswith(HEADER):
        warn(path, "not a wandb transaction log (bad header)")
        return None
    from google.protobuf.message import DecodeError

    from labbook.readers.wandb_proto import record_class

    record_cls = record_class()
    out = WandbLog()
    step_of_row = 0
    try:
        for payload in chunks(data):
            try:
                rec = record_cls.FromString(payload)
            except (DecodeError, ValueError, RecursionError):  # bad bytes in the file
                out.truncated = True
                warn(path, "undecodable record; stopped reading there")
                break
            except Exception as exc:  # not bad input: a bug (strict mode raises it)
                out.truncated = True
                warn_exception(path, "undecodable record; stopped reading there", exc)
                break
            step_of_row = _apply(out, rec, step_of_row)
    except _Torn as torn:
        # A run still writing, or killed, ends torn; after the exit record it is damage.
        out.truncated = True
        if out.exit_code is not None:
            warn(path, f"corrupt chunk at byte {torn.offset}; read what came before")
    if len(data) >= MAX_BYTES:
        out.truncated = True
        warn(path, f"larger than {MAX_BYTES >> 20} MiB; read the first part only")
    return out


def _apply(out: WandbLog, rec: Any, next_step: int) -> int:
    kind = rec.WhichOneof("record_type")
    if kind == "run":
        run = rec.run
        out.run_record = True
        out.config.update(_item(u) for u in run.config.update)
        out.name = run.display_name or out.name
        out.tags = list(run.tags) or out.tags
        out.host = run.host or out.host
        out.sweep_id = run.sweep_id or out.sweep_id
        if run.HasField("start_time"):
            out.started_at = run.start_time.seconds + run.start_time.nanos / 1e9
        if run.git.commit:
            out.git_commit = run.git.commit
            out.git_remote = run.git.remote_url or None
    elif kind == "config":
        out.config.update(_item(u) for u in rec.config.update)
        for r in rec.config.remove:
            out.config.pop(r.key or ".".join(r.nested_key), None)
    elif kind == "history":
        row = dict(_item(i) for i in rec.history.item)
        step = row.get("_step")
        if not isinstance(step, (int, float)) or isinstance(step, bool):
            step = rec.history.step.num if rec.history.HasField("step") else next_step
        wall = row.get("_timestamp")
        wall = number(wall)
        for key, value in row.items():
            if key.startswith("_"):
                continue
            v = json_number(value)  # None for an integer too large for a float, too
            if v is not None:
                out.history.setdefault(key, []).append(Point(int(step), v, wall))
        return int(step) + 1
    elif kind == "summary":
        out.summary.update(_item(u) for u in rec.summary.update)
        for r in rec.summary.remove:
            out.summary.pop(r.key or ".".join(r.nested_key), None)
    elif kind == "environment":
        env = rec.environment
        if env.program:
            out.command = ["python", env.program, *env.args]
        out.cwd = env.root or out.cwd
        out.host = env.host or out.host
        out.user = env.username or out.user
        if env.HasField("git") and env.git.commit:
            out.git_commit = env.git.commit
            out.git_remote = env.git.remote_url or out.git_remote
        from google.protobuf.json_format import MessageToDict

        meta = MessageToDict(env, preserving_proto_field_name=True)
        if "gpu_type" in meta:
            meta.setdefault("gpu", meta["gpu_type"])
        out.metadata.update(meta)
    elif kind == "exit":
        out.exit_code = int(rec.exit.exit_code)
    return next_step
