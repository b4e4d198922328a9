"""A fast, incremental, checksum-verifying reader of TensorBoard event files.

Event files (``events.out.tfevents.*``) are TFRecord files: a sequence of records,
each framed as::

    uint64  length            (little-endian)
    uint32  masked crc32c of the 8 length bytes
    bytes   data              (a serialized ``tensorboard.Event`` protobuf)
    uint32  masked crc32c of data

Why not TensorBoard's ``EventAccumulator``? Without TensorFlow it checks CRCs in
pure Python and builds a protobuf per record (tens of thousands of records a
second), it cannot resume from a byte offset we keep across processes, and it
does not tell us about partial or corrupt records. This reader:

* verifies both CRCs of every record with the ``google_crc32c`` C extension;
* decodes the overwhelmingly common record shapes (one scalar per event, as
  written by tensorboardX / torch ``add_scalar`` and by TensorBoard's own writer)
  without building a protobuf: the first record of each tag is parsed with the
  real protobuf classes and, if its bytes are the canonical encoding, remembered
  as a byte *template*; later records whose bytes equal the template everywhere
  except the value bytes are decoded with ``struct``. Anything else goes through
  ``Event.FromString``, so both paths give identical results;
* decodes runs of records that repeat a pattern of layouts (the same tags logged
  in the same order at every step, as training loops do) a block at a time, with
  C-level calls only: ``struct`` for the fields, tuple comparisons for the
  checks, one big-integer comparison for all the CRCs, ``map`` for the points;
* resumes from a byte offset (reads only the new bytes, in chunks) and notices
  a rewritten or truncated file through a fingerprint of the file's head;
* never raises on bad input: problems are reported through
  :func:`labbook.warn.warn` and the counters of :class:`EventBatch`.

TensorBoard's protobuf modules are imported lazily, so importing this module does
not import TensorBoard, and TensorFlow is never imported.
"""

from __future__ import annotations

import gc
import hashlib
import os
import re
import struct
import sys
from array import array
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any, BinaryIO

from labbook.model import Point
from labbook.readers.contain import outside
from labbook.warn import warn

__all__ = [
    "CHUNK_SIZE",
    "MAX_RECORD_BYTES",
    "EventBatch",
    "file_fingerprint",
    "is_event_file",
    "number_stepless",
    "read_events",
]

#: Bytes read from the file per read call; records may span chunk boundaries.
CHUNK_SIZE = 8 << 20
#: Records larger than this are checksummed while streaming and then skipped, not
#: decoded (such records are graphs or images, never scalars, texts or hparams).
MAX_RECORD_BYTES = 64 << 20
#: The fingerprint covers the file's first record, or this many bytes if it is longer.
FINGERPRINT_BYTES = 4096

_HEADER = 12  # uint64 length + uint32 masked crc of the length
_FOOTER = 4  # uint32 masked crc of the data
_MASK_DELTA = 0xA282EAD8
_U32 = 0xFFFFFFFF
_MAX_CACHED_HEADERS = 4096
_EVENT_FILE_PREFIX = "events.out.tfevents."
_IGNORED_SUFFIXES = (".tmp", ".temp", ".part", ".partial", ".crdownload", ".swp", ".lock", "~")
#: tensorboardX, torch and the HF Trainer's ``add_text(tag, ...)`` write ``tag/text_summary``.
_TEXT_SUFFIX = "/text_summary"

#: Records decoded together by _Decoder._run, at most.
_RUN_BLOCK = 4096
#: Longest repeating pattern of record layouts looked for (records per period).
_MAX_PERIOD = 64
#: Records decoded one by one after a failed attempt at a run, before the next
#: attempt; doubled after each failure, so irregular files cost little.
_MIN_BACKOFF = 8
_MAX_BACKOFF = 4096
#: Byte patterns of a sequence of varints of v bytes each (continuation bit set on
#: all but the last byte of each).
_VARINT_SHAPES = {
    v: re.compile(rb"(?:[\x80-\xff]{%d}[\x00-\x7f])*" % (v - 1)) for v in range(1, 10)
}

#: Templates learned so far in this process (see _Decoder._adopt): summary bytes
#: without the value -> tag (value: the last 4 bytes, float32), or -> (tag, value
#: position) for tensor scalars followed by metadata.
_SIMPLE_TEMPLATES: dict[bytes, str] = {}
_TENSOR_TEMPLATES: dict[bytes, tuple[str, int]] = {}
_MAX_TEMPLATES = 50_000

#: A record layout seen by the fast path: (12-byte header, data length, summary
#: offset in data, value offset in summary, value width, template key, points list).
_Layout = tuple[bytes, int, int, int, int, bytes, list[Point]]

_HEADER_STRUCT = struct.Struct("<QI")
_U32_STRUCT = struct.Struct("<I")
_F32_STRUCT = struct.Struct("<f")
_F64_STRUCT = struct.Struct("<d")

# Scan statuses: why _Decoder.scan stopped.
_NEED_MORE = 0  # the next record is not complete in the buffer
_BAD_LENGTH = 1  # the next record's length checksum is wrong
_BIG_RECORD = 2  # the next record is longer than MAX_RECORD_BYTES

# TensorProto dtype -> (repeated field holding the values, struct format of one
# element in tensor_content). Half and bfloat16 values are stored as bit patterns.
_DT_FLOAT, _DT_DOUBLE, _DT_BFLOAT16, _DT_HALF = 1, 2, 14, 19
_NUMERIC_DTYPES: dict[int, tuple[str, str]] = {
    _DT_FLOAT: ("float_val", "<f"),
    _DT_DOUBLE: ("double_val", "<d"),
    3: ("int_val", "<i"),  # DT_INT32
    4: ("int_val", "<B"),  # DT_UINT8
    5: ("int_val", "<h"),  # DT_INT16
    6: ("int_val", "<b"),  # DT_INT8
    9: ("int64_val", "<q"),  # DT_INT64
    _DT_BFLOAT16: ("half_val", "<H"),
    17: ("int_val", "<H"),  # DT_UINT16
    _DT_HALF: ("half_val", "<H"),
    22: ("uint32_val", "<I"),  # DT_UINT32
    23: ("uint64_val", "<Q"),  # DT_UINT64
}


@dataclass
class EventBatch:
    """What one :func:`read_events` call found in an event file.

    Pass ``offset`` and ``fingerprint`` back to the next call to read only what was
    appended since. When ``reset`` is true the file was rewritten or truncated and
    re-read from the start: discard what earlier batches of this file returned.
    """

    #: tag -> points in file order
    scalars: dict[str, list[Point]] = field(default_factory=dict)
    #: text-plugin summaries: tag (without tensorboardX's ``/text_summary``) -> last text
    texts: dict[str, str] = field(default_factory=dict)
    #: hparams plugin ``session_start_info.hparams``: name -> float, str, bool (or
    #: list/dict/None for the rare structured values)
    hparams: dict[str, object] = field(default_factory=dict)
    #: metric tags named by the hparams plugin's experiment summary, in order
    hparam_metrics: list[str] = field(default_factory=list)
    #: byte offset just after the last complete record read; resume from here
    offset: int = 0
    #: fingerprint of the file's head; "" while the file has no complete first record
    fingerprint: str = ""
    #: the file ends in a partial record (the writer died mid-write, or is writing)
    truncated: bool = False
    #: records skipped because their data checksum is wrong
    corrupt: int = 0
    first_wall_time: float | None = None
    last_wall_time: float | None = None
    #: complete records consumed by this call (including corrupt and undecodable ones)
    records: int = 0
    #: the file was re-read from offset 0 because it was rewritten or truncated
    reset: bool = False
    #: records with valid checksums that are not Event protobufs, skipped
    undecodable: int = 0


def is_event_file(name: str | os.PathLike[str]) -> bool:
    """Whether ``name`` (a file name or path) looks like a TensorBoard event file.

    Matches ``events.out.tfevents.*`` but not temporary or partial copies such as
    ``*.tmp``, which writers and sync tools rename into place when done.
    """
    base = os.path.basename(os.fspath(name))
    if not base.startswith(_EVENT_FILE_PREFIX) or len(base) == len(_EVENT_FILE_PREFIX):
        return False
    return not base.lower().endswith(_IGNORED_SUFFIXES)


def file_fingerprint(path: str | os.PathLike[str]) -> str:
    """Fingerprint of the head of the event file at ``path``.

    The fingerprint hashes the file's first record (the writer's ``file_version``
    event, which holds its start time), or its first ``FINGERPRINT_BYTES`` bytes if
    that record is longer. It does not change while the file grows, and changes when
    the file is replaced by another one. It is ``""`` when the file does not yet
    hold a complete first record, and when the file cannot be read (with a warning).
    """
    if outside(path):
        return ""
    try:
        with open(path, "rb", buffering=0) as f:
            return _fingerprint(f)
    except OSError as exc:
        warn(path, f"cannot read event file: {_os_reason(exc)}")
        return ""


def read_events(
    path: str | os.PathLike[str],
    offset: int = 0,
    fingerprint: str | None = None,
    *,
    verify: bool = True,
    chunk_size: int = CHUNK_SIZE,
) -> EventBatch:
    """Read the complete records of an event file from byte ``offset`` on.

    ``fingerprint`` is the one a previous call returned; if the file's fingerprint
    changed, or the file is now shorter than ``offset``, the file was rewritten and
    is read again from 0 (``reset`` is set). The cost is proportional to the bytes
    after ``offset``: only the fingerprint (the file's first record) is read from
    the head. With ``verify`` (the default) both checksums of every record are
    checked: a bad length checksum stops the read there (the following bytes cannot
    be framed safely) with a warning; a record with a bad data checksum is skipped
    and counted in ``corrupt``, with one warning per call. A partial last record
    sets ``truncated`` and is left for the next call. A file that cannot be read
    gives a warning and an empty batch with ``offset`` unchanged. Never raises on
    bad input. ``chunk_size`` is the read size (records may span chunks).
    """
    start = max(int(offset), 0)
    if outside(path):
        return EventBatch(offset=start, fingerprint=fingerprint or "")
    # Building millions of points would trigger the cyclic garbage collector over
    # and over, each pass scanning every point built so far (most of the time of
    # a large read). The reader creates no reference cycles, so pause it.
    collecting = gc.isenabled()
    gc.disable()
    try:
        with open(path, "rb", buffering=0) as f:
            return _read(f, path, start, fingerprint, verify, max(int(chunk_size), 1))
    except OSError as exc:
        warn(path, f"cannot read event file: {_os_reason(exc)}")
        return EventBatch(offset=start, fingerprint=fingerprint or "")
    finally:
        if collecting:
            gc.enable()


def number_stepless(scalars: dict[str, list[Point]], state: dict[str, int]) -> None:
    """Give step-less scalars their order of arrival as their step, in place.

    ``add_scalar(tag, value)`` without ``global_step`` writes no step field, and
    proto3 omits a step of 0 too, so all such points read step 0. TensorBoard's
    ``EventAccumulator`` returns them all at step 0, in file order (its charts
    draw them on one x). labbook numbers them in the same order: while every step
    of a tag in this file has been 0, each point's step is its index among the
    tag's points (0, 1, 2, …); from the first non-zero step on, steps are kept as
    written (so a series that starts at step 0 and goes on is unchanged).

    ``state`` (tag -> points numbered so far, or -1 once the tag has had a
    non-zero step) carries the numbering from one read of a file to the next, so
    that the full read (import) and the live tail (watch) give the same steps.
    Start each file, and each re-read from byte 0, with an empty ``state``.
    """
    for tag, points in scalars.items():
        n = state.get(tag, 0)
        if n < 0:
            continue
        for i, p in enumerate(points):
            if p.step != 0:
                n = -1
                break
            if n + i:
                points[i] = Point(n + i, p.value, p.wall_time)
        else:
            n += len(points)
        state[tag] = n


def _os_reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


def _masked_crc(crc: int) -> int:
    """TFRecord's CRC masking: rotate right by 15 bits and add a constant."""
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & _U32


def _fingerprint(f: BinaryIO) -> str:
    """Fingerprint of the open file ``f`` (see :func:`file_fingerprint`); moves its position."""
    f.seek(0)
    head = f.read(FINGERPRINT_BYTES)
    if len(head) < _HEADER:
        return ""
    (length,) = struct.unpack_from("<Q", head)
    want = _HEADER + length + _FOOTER
    if want > FINGERPRINT_BYTES:
        want = FINGERPRINT_BYTES
    if len(head) < want:
        return ""
    return hashlib.blake2b(head[:want], digest_size=12).hexdigest()


def _read(
    f: BinaryIO,
    path: str | os.PathLike[str],
    offset: int,
    fingerprint: str | None,
    verify: bool,
    chunk_size: int,
) -> EventBatch:
    """Body of :func:`read_events` on an open file."""
    size = os.fstat(f.fileno()).st_size
    current = _fingerprint(f)
    reset = False
    if offset and ((fingerprint is not None and fingerprint != current) or size < offset):
        offset, reset = 0, True
    f.seek(offset)

    dec = _Decoder(verify)
    buf = b""
    p = 0
    base = offset  # file offset of buf[0]
    truncated = False
    bad_length_at: int | None = None
    while True:
        p, status, arg = dec.scan(buf, p, base)
        if status == _BAD_LENGTH:
            bad_length_at = base + p
            break
        if status == _BIG_RECORD:
            if base + p + _HEADER + arg + _FOOTER > size:
                size = os.fstat(f.fileno()).st_size
                if base + p + _HEADER + arg + _FOOTER > size:
                    truncated = True
                    break
            rest = _skip_big_record(f, buf, p, arg, dec, chunk_size, base + p)
            if rest is None:
                truncated = True
                break
            base += p + _HEADER + arg + _FOOTER
            buf, p = rest, 0
            continue
        # _NEED_MORE: arg bytes from p make the next record.
        if base + p + arg > size:
            size = os.fstat(f.fileno()).st_size
            if base + p + arg > size:
                truncated = base + p < size
                break
        have = len(buf) - p
        # Never ask for more than the file holds: read() allocates what it is asked.
        chunk = f.read(min(max(chunk_size, arg - have), size - base - len(buf)))
        if not chunk:  # the file shrank while we read it
            truncated = have > 0
            break
        buf = buf[p:] + chunk if have else chunk
        base += p
        p = 0

    if bad_length_at is not None:
        warn(
            path,
            f"bad length checksum in the record at byte {bad_length_at}; stopped reading there",
        )
    if dec.corrupt:
        warn(
            path,
            f"skipped {dec.corrupt} record(s) with a bad data checksum "
            f"(the first at byte {dec.first_corrupt_at})",
        )
    if dec.undecodable:
        warn(
            path,
            f"skipped {dec.undecodable} record(s) that are not TensorBoard events "
            f"(the first at byte {dec.first_undecodable_at})",
        )
    if not current:  # the first record may have become complete while we read
        current = _fingerprint(f) if base + p > 0 else ""
    return EventBatch(
        scalars=dec.scalars,
        texts=dec.texts,
        hparams=dec.hparams,
        hparam_metrics=dec.hparam_metrics,
        offset=base + p,
        fingerprint=current,
        truncated=truncated,
        corrupt=dec.corrupt,
        first_wall_time=dec.first_wall,
        last_wall_time=dec.last_wall,
        records=dec.records,
        reset=reset,
        undecodable=dec.undecodable,
    )


def _skip_big_record(
    f: BinaryIO, buf: bytes, p: int, length: int, dec: _Decoder, chunk_size: int, at: int
) -> bytes | None:
    """Checksum and skip the record of ``length`` data bytes at ``buf[p]`` by streaming.

    Returns the bytes that follow the record (the rest of what was read), or None if
    the file ends first. Counts the record in ``dec`` (as corrupt if its checksum is
    wrong) without decoding it. ``at`` is the record's file offset, for the warning.
    """
    import google_crc32c

    pos = p + _HEADER
    piece = buf[pos : pos + length]
    crc = google_crc32c.extend(0, piece) if dec.verify else 0
    remaining = length - len(piece)
    tail = buf[pos + len(piece) :]
    while remaining > 0:
        piece = f.read(min(chunk_size, remaining))
        if not piece:
            return None
        if dec.verify:
            crc = google_crc32c.extend(crc, piece)
        remaining -= len(piece)
    while len(tail) < _FOOTER:
        more = f.read(chunk_size)
        if not more:
            return None
        tail += more
    dec.records += 1
    if dec.verify and _masked_crc(crc) != _U32_STRUCT.unpack_from(tail)[0]:
        dec.corrupt += 1
        if dec.first_corrupt_at is None:
            dec.first_corrupt_at = at
    return tail[_FOOTER:]


class _Decoder:
    """Frames, verifies and decodes records; accumulates what one read found.

    ``scan`` is the record loop. It decodes with two template tables, learned by
    ``_learn`` from records parsed with protobuf (see the module docstring) or
    adopted from earlier reads by ``_adopt``:

    * ``_simple``: summary bytes minus the last 4 -> the tag's point list, for
      records whose float32 value is the last 4 bytes (tensorboardX and torch
      ``simple_value``, and scalar tensors written without metadata);
    * ``_tensor``: summary bytes minus the value bytes -> (point list, value
      position), for scalar tensors followed by metadata (TensorBoard's writer).

    When the layouts of the records it decodes start repeating, ``scan`` hands the
    rest of the buffer to ``_run``, which decodes whole periods at a time.
    """

    def __init__(self, verify: bool) -> None:
        import google_crc32c
        from tensorboard.compat.proto import event_pb2

        self.verify = verify
        self._crc: Callable[[bytes], int] = google_crc32c.value
        self._event_from_string = event_pb2.Event.FromString
        self.scalars: dict[str, list[Point]] = {}
        self.texts: dict[str, str] = {}
        self.hparams: dict[str, object] = {}
        self.hparam_metrics: list[str] = []
        self.first_wall: float | None = None
        self.last_wall: float | None = None
        self.records = 0
        self.corrupt = 0
        self.first_corrupt_at: int | None = None
        self.undecodable = 0
        self.first_undecodable_at: int | None = None
        # Verified 12-byte record headers -> data length: most files use few lengths.
        self._headers: dict[bytes, int] = {}
        self._simple: dict[bytes, list[Point]] = {}
        self._tensor: dict[bytes, tuple[list[Point], int]] = {}
        self._structs: dict[tuple[str, int], struct.Struct] = {}
        self._patterns: dict[tuple[str, int], tuple[int, ...]] = {}

    def scan(self, buf: bytes, p: int, base: int) -> tuple[int, int, int]:
        """Consume the complete records of ``buf`` from ``p``.

        Returns ``(p, status, arg)``: ``p`` is where the first unconsumed record
        starts, ``status`` says why scanning stopped, and ``arg`` is the bytes from
        ``p`` needed to complete the next record (``_NEED_MORE``) or that record's
        data length (``_BIG_RECORD``). ``base`` is the file offset of ``buf[0]``.
        """
        end = len(buf)
        verify = self.verify
        crc = self._crc
        headers = self._headers
        header_length = headers.get
        simple = self._simple.get
        tensor = self._tensor
        tensor_get = tensor.get
        points: list[Point] | None
        unpack_u32 = _U32_STRUCT.unpack_from
        unpack_f32 = _F32_STRUCT.unpack_from
        unpack_f64 = _F64_STRUCT.unpack_from
        point = Point
        first_wall = self.first_wall
        last_wall = self.last_wall
        records = 0
        history: list[_Layout] = []  # layouts of the records just decoded
        seen: dict[bytes, int] = {}  # template key -> its latest index in history
        next_run = 0  # records to decode before trying a run again
        backoff = _MIN_BACKOFF
        retried = -1  # the record decoded again after adopting a template
        status = _NEED_MORE
        arg = _HEADER
        while True:
            if end - p < _HEADER:
                arg = _HEADER
                break
            header = buf[p : p + 12]
            n = header_length(header)
            if n is None:
                n, length_crc = _HEADER_STRUCT.unpack(header)
                if verify and _masked_crc(crc(header[:8])) != length_crc:
                    status = _BAD_LENGTH
                    break
                if n > MAX_RECORD_BYTES:
                    status, arg = _BIG_RECORD, n
                    break
                if len(headers) < _MAX_CACHED_HEADERS:
                    headers[header] = n
            q = p + 12 + n
            if q + 4 > end:
                arg = q + 4 - p
                break
            data = buf[p + 12 : q]
            records += 1
            if verify:
                c = crc(data)
                if (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF != unpack_u32(buf, q)[0]:
                    if self.first_corrupt_at is None:
                        self.first_corrupt_at = base + p
                    self.corrupt += 1
                    p = q + 4
                    continue
            at = base + p
            p = q + 4

            # Fast path: Event{wall_time (field 1), step (field 2), summary (field 5)}.
            k = 0
            if n >= 20 and data[0] == 0x09:
                b = data[9]
                if b == 0x10:  # step: a varint of at most 9 bytes (non-negative)
                    b = data[10]
                    if b < 0x80:
                        step = b
                        k = 11
                    else:
                        step = b & 0x7F
                        b = data[11]
                        if b < 0x80:
                            step |= b << 7
                            k = 12
                        else:
                            step |= (b & 0x7F) << 7
                            k = 12
                            shift = 14
                            while k < n and shift <= 56:
                                b = data[k]
                                k += 1
                                step |= (b & 0x7F) << shift
                                if b < 0x80:
                                    break
                                shift += 7
                            else:
                                k = 0  # too long (a negative step) or cut short
                elif b == 0x2A:  # no step field: step 0
                    step = 0
                    k = 9
                if k:
                    key = data[k:-4]
                    points = simple(key)
                    if points is not None:  # the value is the last 4 bytes
                        width = 4
                        a = n - 4 - k
                        value = unpack_f32(data, n - 4)[0]
                    elif tensor:
                        try:
                            # summary: 2a L 0a L 0a L tag 42 L <tensor: 08 dtype ... value> ...
                            tag_end = k + 6 + data[k + 5]
                            tensor_end = tag_end + 2 + data[tag_end + 1]
                            # The value must lie inside the record: a field that runs
                            # past it makes the record undecodable (see _slow).
                            if data[tag_end] == 0x42 and tensor_end <= n:
                                width = 4 if data[tag_end + 3] == _DT_FLOAT else 8
                                a = tensor_end - width
                                key = data[k:a] + data[tensor_end:]
                                hit = tensor_get(key)
                                if hit is not None and hit[1] == a - k:
                                    points = hit[0]
                                    unpack = unpack_f32 if width == 4 else unpack_f64
                                    value = unpack(data, a)[0]
                                    a -= k
                        except IndexError:
                            pass
                    if points is not None:
                        wall = unpack_f64(data, 1)[0] or None
                        if wall is not None:
                            if first_wall is None:
                                first_wall = wall
                            last_wall = wall
                        points.append(point(step, value, wall))
                        # Watch for a repeating sequence of record layouts (the same
                        # tags logged in the same order at every step) to decode a
                        # run of them in blocks.
                        if records < next_run:
                            continue
                        previous = seen.get(key)
                        seen[key] = len(history)
                        history.append((header, n, k, a, width, key, points))
                        if previous is not None:
                            unit = history[previous + 1 :]
                            self.first_wall, self.last_wall = first_wall, last_wall
                            q = self._run(buf, p, end, unit)
                            first_wall, last_wall = self.first_wall, self.last_wall
                            if q == p:  # not periodic here: back off
                                next_run = records + backoff
                                backoff = min(backoff * 2, _MAX_BACKOFF)
                            else:
                                backoff = _MIN_BACKOFF
                            p = q
                            history.clear()
                            seen.clear()
                        elif len(history) > _MAX_PERIOD:
                            history.clear()
                            seen.clear()
                        continue

            if k and at != retried and self._adopt(data, k):
                # A template learned by an earlier read fits: decode this record again.
                retried = at
                p = at - base
                records -= 1
                continue
            self.first_wall, self.last_wall = first_wall, last_wall
            try:
                self._slow(data, k, at)
            except (struct.error, IndexError, ValueError, OverflowError):
                # A field that protobuf accepts but whose contents do not fit
                # (a tensor_content of the wrong size, …): one undecodable record.
                self._undecodable(at)
            first_wall, last_wall = self.first_wall, self.last_wall
        self.first_wall, self.last_wall = first_wall, last_wall
        self.records += records
        return p, status, arg

    def _run(self, buf: bytes, p: int, end: int, unit: list[_Layout]) -> int:
        """Decode the records at ``buf[p:]`` that repeat the layouts in ``unit``.

        ``unit`` holds the layouts of the records just decoded, one period of a
        repeating pattern (often one record per tag logged at each step). A record
        repeats its slot's layout when it has the same 12-byte header (so the same
        length and length checksum), wall-time and step field tags, step varint
        length, and summary bytes except the value (the template key). A block of
        periods is decoded with C-level calls: one ``struct`` unpack for the fields
        of all its records, tuple comparisons to check them, one big-integer
        comparison for all the data checksums, ``map`` to build the points. Returns
        where the run ends (``p`` itself if fewer than two periods repeat); the
        record loop takes over there.
        """
        period = len(unit)
        if len({id(slot[6]) for slot in unit}) != period:
            return p  # a tag twice per period: blocks would reorder its points
        if max(slot[2] for slot in unit) > 18:
            return p  # a 9-byte step varint (steps from 2**56) does not fit a slot
        size = sum(slot[1] + 16 for slot in unit)
        if (end - p) // size < 2:
            return p
        at = p  # quick check: do the next two periods' headers repeat at all?
        for _ in range(2):
            for slot in unit:
                if buf[at : at + 12] != slot[0]:
                    return p
                at += slot[1] + 16

        field_units = []
        data_units = []
        slots = []
        per = 0  # fields per period
        for header, n, k, a, width, key, points in unit:
            v = max(k - 10, 0)  # step varint length; 0 (k == 9): no step field
            rest = n - k - a - width
            field_units.append(
                "13sd"  # header + wall-time field tag, wall time
                + (f"1s{v}s" if v > 0 else "")  # step field tag, step varint
                + f"{a}s"  # summary up to the value
                + ("f" if width == 4 else "d")
                + (f"{rest}s" if rest else "")  # summary after the value
                + "4x"
            )
            data_units.append(f"12x{n}sI")
            slots.append((per, v, rest, header + b"\x09", key, points))
            per += 4 + 2 * (v > 0) + (rest > 0)
        field_unit = "".join(field_units)
        data_unit = "".join(data_units)
        limit = max(_RUN_BLOCK // period, 2)
        while True:
            count = min((end - p) // size, limit)
            if count < 2:
                break
            fields = self._struct(field_unit, count).unpack_from(buf, p)
            last = count * per
            for base, v, rest, head, key, _ in slots:
                count = min(count, _leading_equal(fields[base:last:per], head))
                key_at = base + 2
                if v > 0:
                    key_at += 2
                    count = min(count, _leading_equal(fields[base + 2 : last : per], b"\x10"))
                    count = min(count, _leading_varints(fields[base + 3 : last : per], v))
                keys: Sequence[bytes] = fields[key_at:last:per]
                if rest:
                    keys = tuple(map(bytes.__add__, keys, fields[key_at + 2 : last : per]))
                count = min(count, _leading_equal(keys, key))
            if count < 2:
                break
            if self.verify:
                datas = self._struct(data_unit, count).unpack_from(buf, p)
                if not self._crcs_match(map(self._crc, datas[0::2]), datas[1::2], len(datas) // 2):
                    bad = next(
                        i
                        for i, (data, footer) in enumerate(
                            zip(datas[0::2], datas[1::2], strict=True)
                        )
                        if _masked_crc(self._crc(data)) != footer
                    )
                    count = bad // period
                    if count < 2:
                        break
            last = count * per
            walls_by_slot = []
            for base, v, _, _, _, points in slots:
                walls: Any = fields[base + 1 : last : per]
                if 0.0 in walls:
                    walls = [wall or None for wall in walls]
                walls_by_slot.append(walls)
                if v == 0:
                    steps: Any = repeat(0, count)
                    values = fields[base + 3 : last : per]
                else:
                    steps = self._steps(fields[base + 3 : last : per], v, count)
                    values = fields[base + 5 : last : per]
                points.extend(map(Point, steps, values, walls))
            self._note_walls(walls_by_slot, count)
            self.records += count * period
            p += count * size
            if count < limit:
                break
        return p

    def _note_walls(self, walls_by_slot: list[Any], count: int) -> None:
        """Update first/last wall time from a block's walls (slot-major, file order)."""
        if self.first_wall is None:
            for i in range(count):
                first = next((w[i] for w in walls_by_slot if w[i] is not None), None)
                if first is not None:
                    self.first_wall = first
                    break
        for i in range(count - 1, -1, -1):
            last = next((w[i] for w in reversed(walls_by_slot) if w[i] is not None), None)
            if last is not None:
                self.last_wall = last
                break

    def _struct(self, unit: str, count: int) -> struct.Struct:
        """A compiled little-endian struct for ``count`` repetitions of ``unit``."""
        compiled = self._structs.get((unit, count))
        if compiled is None:
            if len(self._structs) > 64:
                self._structs.clear()
            compiled = self._structs[unit, count] = struct.Struct("<" + unit * count)
        return compiled

    def _repeated(
        self, name: str, count: int, values: tuple[int, ...], width: int
    ) -> tuple[int, ...]:
        """Big integers holding each of ``values`` in every ``width``-byte slot of ``count``."""
        key = (name, count)
        found = self._patterns.get(key)
        if found is None:
            if len(self._patterns) > 64:
                self._patterns.clear()
            found = self._patterns[key] = tuple(
                int.from_bytes(value.to_bytes(width, "little") * count, "little")
                for value in values
            )
        return found

    def _crcs_match(self, crcs: Iterable[int], footers: Sequence[int], count: int) -> bool:
        """Whether the masked ``crcs`` equal the stored ``footers``, all at once.

        Each CRC sits in a 64-bit slot of one big integer, so that rotating and
        adding the mask constant slot by slot never carries into the next slot.
        """
        low17, high15, delta, low32 = self._repeated(
            "mask", count, (0x1FFFF, 0xFFFE0000, _MASK_DELTA, _U32), 8
        )
        order = sys.byteorder  # array stores native-endian values
        crc = int.from_bytes(array("Q", crcs), order)
        rotated = ((crc >> 15) & low17) | ((crc << 17) & high15)
        return ((rotated + delta) & low32) == int.from_bytes(array("Q", footers), order)

    def _steps(self, varints: Sequence[bytes], v: int, count: int) -> Sequence[int]:
        """Decode ``count`` step varints, each ``v`` (1 to 8) bytes long, all at once.

        The varints are joined into one big integer, each in a slot of 2, 4 or 8
        bytes; the 7-bit groups of every slot are then moved into place with one
        shift and mask per group, and the slots read back with struct.
        """
        if v == 1:
            return b"".join(varints)  # iterating bytes gives ints
        slot, code = (2, "H") if v == 2 else (4, "I") if v <= 4 else (8, "Q")
        pad = b"\x00" * (slot - v)
        joined = pad.join(varints) + pad
        number = int.from_bytes(joined, "little")
        masks = self._repeated(f"varint{v}", count, tuple(0x7F << (7 * i) for i in range(v)), slot)
        decoded = 0
        for i, mask in enumerate(masks):
            decoded |= (number >> i) & mask
        return struct.unpack(f"<{count}{code}", decoded.to_bytes(len(joined), "little"))

    def _series(self, tag: str) -> list[Point]:
        points = self.scalars.get(tag)
        if points is None:
            points = self.scalars[tag] = []
        return points

    def _adopt(self, data: bytes, k: int) -> bool:
        """Take a template for this record from those learned by earlier reads.

        Templates are facts about bytes (this summary encodes that tag's scalar), so
        they are kept process-wide; this saves tailing reads from parsing the first
        record of every tag with protobuf again. Returns whether one was adopted.
        """
        key = data[k:-4]
        tag = _SIMPLE_TEMPLATES.get(key)
        if tag is not None:
            self._simple[key] = self._series(tag)
            return True
        if not _TENSOR_TEMPLATES:
            return False
        try:
            tag_end = k + 6 + data[k + 5]
            tensor_end = tag_end + 2 + data[tag_end + 1]
            a = tensor_end - (4 if data[tag_end + 3] == _DT_FLOAT else 8)
        except IndexError:
            return False
        key = data[k:a] + data[tensor_end:]
        known = _TENSOR_TEMPLATES.get(key)
        if known is None or known[1] != a - k:
            return False
        self._tensor[key] = (self._series(known[0]), known[1])
        return True

    def _undecodable(self, at: int) -> None:
        self.undecodable += 1
        if self.first_undecodable_at is None:
            self.first_undecodable_at = at

    def _slow(self, data: bytes, k: int, at: int) -> None:
        """Decode one record with protobuf; learn a template from it when possible."""
        from google.protobuf.message import DecodeError

        try:
            event = self._event_from_string(data)
        except (DecodeError, ValueError, RuntimeError):
            self._undecodable(at)
            return
        wall = event.wall_time or None
        if wall is not None:
            if self.first_wall is None:
                self.first_wall = wall
            self.last_wall = wall
        if not event.HasField("summary"):
            return
        step = event.step
        values = event.summary.value
        scalar_tags = 0
        for value in values:
            plugin = value.metadata.plugin_data.plugin_name
            if plugin == "hparams":
                self._read_hparams(value.metadata.plugin_data.content)
                continue
            kind = value.WhichOneof("value")
            if kind == "simple_value":
                self._series(value.tag).append(Point(step, value.simple_value, wall))
                scalar_tags += 1
            elif kind == "tensor":
                if plugin == "text":
                    tag = value.tag
                    if tag.endswith(_TEXT_SUFFIX):
                        tag = tag[: -len(_TEXT_SUFFIX)]
                    self.texts[tag] = _tensor_text(value.tensor)
                else:
                    number = _tensor_scalar(value.tensor, plugin == "scalars")
                    if number is not None:
                        self._series(value.tag).append(Point(step, number, wall))
                        scalar_tags += 1
        # A template stands for this record's decision (a scalar), which depends
        # only on the bytes the template fixes (plugin, dtype, shape), not the value.
        if k and scalar_tags == 1 and len(values) == 1:
            self._learn(data[k:], values[0])

    def _learn(self, summary: bytes, value: Any) -> None:
        """Remember ``summary`` (an Event's summary field, bytes) as a template.

        Only when the bytes are exactly the canonical encoding of a single scalar
        value, rebuilt here from its known fields, so that any record equal to it
        except in the value bytes decodes to the same tag and that value.
        """
        from tensorboard.compat.proto import summary_pb2, tensor_pb2, tensor_shape_pb2

        tag = value.tag
        kind = value.WhichOneof("value")
        if kind == "simple_value":
            if value.HasField("metadata"):
                return
            rebuilt = summary_pb2.Summary.Value(tag=tag, simple_value=value.simple_value)
            if _summary_field(rebuilt) == summary:
                self._simple[summary[:-4]] = self._series(tag)
                _remember(_SIMPLE_TEMPLATES, summary[:-4], tag)
            return
        if kind != "tensor":
            return
        t = value.tensor
        dtype = t.dtype
        if dtype not in (_DT_FLOAT, _DT_DOUBLE) or t.tensor_shape.dim:
            return
        names = {desc.name for desc, _ in t.ListFields()}
        width = 4 if dtype == _DT_FLOAT else 8
        rebuilt_tensor = tensor_pb2.TensorProto(dtype=dtype)
        if t.HasField("tensor_shape"):
            rebuilt_tensor.tensor_shape.CopyFrom(tensor_shape_pb2.TensorShapeProto())
        value_field = "float_val" if dtype == _DT_FLOAT else "double_val"
        if names <= {"dtype", "tensor_shape", value_field} and len(getattr(t, value_field)) == 1:
            getattr(rebuilt_tensor, value_field).append(getattr(t, value_field)[0])
        elif (
            names <= {"dtype", "tensor_shape", "tensor_content"} and len(t.tensor_content) == width
        ):
            rebuilt_tensor.tensor_content = t.tensor_content
        else:
            return
        rebuilt = summary_pb2.Summary.Value(tag=tag, tensor=rebuilt_tensor)
        if value.HasField("metadata"):
            rebuilt.metadata.CopyFrom(value.metadata)
        if _summary_field(rebuilt) != summary:
            return
        # Find the value bytes the way scan does, and check they are the tensor's tail.
        tensor_bytes = rebuilt_tensor.SerializeToString()
        try:
            tag_end = 6 + summary[5]
            if summary[tag_end] != 0x42 or summary[tag_end + 2] != 0x08:
                return
            tensor_end = tag_end + 2 + summary[tag_end + 1]
            a = tensor_end - (4 if summary[tag_end + 3] == 1 else 8)
        except IndexError:
            return
        if (
            summary[tag_end + 2 : tensor_end] != tensor_bytes
            or tensor_end - a != width
            or a <= tag_end + 3
        ):
            return
        points = self._series(tag)
        key = summary[:a] + summary[tensor_end:]
        self._tensor[key] = (points, a)
        _remember(_TENSOR_TEMPLATES, key, (tag, a))
        if width == 4 and tensor_end == len(summary):
            self._simple[summary[:-4]] = points
            _remember(_SIMPLE_TEMPLATES, summary[:-4], tag)

    def _read_hparams(self, content: bytes) -> None:
        """Take hparams and metric tags from an hparams-plugin summary's content."""
        from google.protobuf.message import DecodeError
        from tensorboard.plugins.hparams import plugin_data_pb2

        try:
            data = plugin_data_pb2.HParamsPluginData.FromString(content)
        except (DecodeError, ValueError, RuntimeError):
            return
        which = data.WhichOneof("data")
        if which == "session_start_info":
            for name, proto_value in data.session_start_info.hparams.items():
                self.hparams[name] = _python_value(proto_value)
        elif which == "experiment":
            for info in data.experiment.metric_infos:
                if info.name.tag and info.name.tag not in self.hparam_metrics:
                    self.hparam_metrics.append(info.name.tag)


def _remember(templates: dict[bytes, Any], key: bytes, fact: Any) -> None:
    """Add a learned template to a process-wide table, bounded in size."""
    if len(templates) >= _MAX_TEMPLATES:
        templates.clear()
    templates[key] = fact


def _leading_equal(items: Sequence[object], expected: object) -> int:
    """How many of ``items``, from the first, equal ``expected``."""
    if items == (expected,) * len(items):  # the common case, compared in C
        return len(items)
    return next(i for i, item in enumerate(items) if item != expected)


def _leading_varints(varints: Sequence[bytes], v: int) -> int:
    """How many of ``varints``, from the first, are complete varints of ``v`` bytes."""
    pattern = _VARINT_SHAPES[v]
    if pattern.fullmatch(b"".join(varints)):
        return len(varints)
    return next(i for i, varint in enumerate(varints) if not pattern.fullmatch(varint))


def _summary_field(value: Any) -> bytes:
    """The bytes of an Event's ``summary`` field (1 value) after its tag and length."""
    from tensorboard.compat.proto import summary_pb2

    body = summary_pb2.Summary(value=[value]).SerializeToString(deterministic=True)
    return b"\x2a" + _varint(len(body)) + body


def _varint(number: int) -> bytes:
    out = bytearray()
    while number >= 0x80:
        out.append((number & 0x7F) | 0x80)
        number >>= 7
    out.append(number)
    return bytes(out)


def _tensor_scalar(t: Any, scalars_plugin: bool) -> float | None:
    """The number in a numeric tensor with one element, else None.

    A rank-0 numeric tensor is a scalar; with the ``scalars`` plugin any one-element
    tensor is. Values are read from the dtype's repeated field or, if set, from
    ``tensor_content`` (little-endian).
    """
    spec = _NUMERIC_DTYPES.get(t.dtype)
    if spec is None:
        return None
    elements = 1
    for dim in t.tensor_shape.dim:
        elements *= dim.size
    if elements != 1 or (t.tensor_shape.dim and not scalars_plugin):
        return None
    field_name, fmt = spec
    if t.tensor_content:
        if len(t.tensor_content) != struct.calcsize(fmt):
            return None
        raw = struct.unpack(fmt, t.tensor_content)[0]
    else:
        values = getattr(t, field_name)
        raw = values[0] if values else 0
    if t.dtype == _DT_HALF:
        return float(struct.unpack("<e", struct.pack("<H", raw & 0xFFFF))[0])
    if t.dtype == _DT_BFLOAT16:
        return float(struct.unpack("<f", struct.pack("<I", (raw & 0xFFFF) << 16))[0])
    return float(raw)


def _tensor_text(t: Any) -> str:
    """The text of a text-plugin tensor: its strings, joined by newlines."""
    return "\n".join(s.decode("utf-8", errors="replace") for s in t.string_val)


def _python_value(proto_value: Any) -> object:
    """A ``google.protobuf.Value`` as a plain Python value."""
    kind = proto_value.WhichOneof("kind")
    if kind == "number_value":
        return proto_value.number_value
    if kind == "string_value":
        return proto_value.string_value
    if kind == "bool_value":
        return proto_value.bool_value
    # Not json_format.MessageToDict: it raises on a NaN or an infinity in a list.
    if kind == "list_value":
        return [_python_value(v) for v in proto_value.list_value.values]
    if kind == "struct_value":
        return {k: _python_value(v) for k, v in proto_value.struct_value.fields.items()}
    return None
