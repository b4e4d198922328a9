"""Byte framing the fuzzed readers expect, written independently of labbook's readers.

* TFRecord (TensorBoard event files): ``u64 length, u32 masked crc32c(length),
  data, u32 masked crc32c(data)``;
* the wandb transaction log: a 7-byte header, then LevelDB log chunks in 32 KiB
  blocks, each ``u32 crc32(type + payload), u16 length, u8 type`` then the payload.

Writing the checksums right around mutated payloads is what lets the fuzzer reach
the decoders instead of stopping at the checksum checks.
"""

from __future__ import annotations

import struct
import zlib

import google_crc32c

_MASK_DELTA = 0xA282EAD8


def masked_crc32c(data: bytes) -> int:
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def tfrecord(data: bytes) -> bytes:
    """One TFRecord with valid checksums around ``data``."""
    header = struct.pack("<Q", len(data))
    return (
        header
        + struct.pack("<I", masked_crc32c(header))
        + data
        + struct.pack("<I", masked_crc32c(data))
    )


def tfrecord_payloads(blob: bytes) -> list[bytes]:
    """The data of each complete record of an event file (checksums not checked)."""
    out = []
    p = 0
    while p + 12 <= len(blob):
        (n,) = struct.unpack_from("<Q", blob, p)
        if p + 16 + n > len(blob):
            break
        out.append(blob[p + 12 : p + 12 + n])
        p += 16 + n
    return out


WANDB_HEADER = struct.pack("<4sHB", b":W&B", 0xBEE1, 0)
WANDB_BLOCK = 32 * 1024
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def _chunk(kind: int, payload: bytes) -> bytes:
    crc = zlib.crc32(payload, zlib.crc32(bytes([kind])))
    return struct.pack("<IHB", crc, len(payload), kind) + payload


def wandb_log(payloads: list[bytes]) -> bytes:
    """A wandb transaction log holding ``payloads`` as records, split across blocks as LevelDB does."""
    out = bytearray(WANDB_HEADER)
    for payload in payloads:
        rest = payload
        first = True
        while True:
            room = WANDB_BLOCK - len(out) % WANDB_BLOCK
            if room < 7:
                out += b"\x00" * room
                room = WANDB_BLOCK
            piece, rest = rest[: room - 7], rest[room - 7 :]
            if first and not rest:
                kind = FULL
            elif first:
                kind = FIRST
            elif rest:
                kind = MIDDLE
            else:
                kind = LAST
            out += _chunk(kind, piece)
            first = False
            if not rest:
                break
    return bytes(out)


def wandb_payloads(blob: bytes) -> list[bytes]:
    """The records of a wandb log (torn or corrupt chunks end the list)."""
    out: list[bytes] = []
    pos, buf = len(WANDB_HEADER), b""
    while pos + 7 <= len(blob):
        room = WANDB_BLOCK - pos % WANDB_BLOCK
        if room < 7:
            pos += room
            continue
        _crc, n, kind = struct.unpack_from("<IHB", blob, pos)
        if kind == 0 and n == 0:
            pos += room
            continue
        payload = blob[pos + 7 : pos + 7 + n]
        if len(payload) < n or kind not in (FULL, FIRST, MIDDLE, LAST):
            break
        pos += 7 + n
        if kind == FULL:
            out.append(payload)
        elif kind == FIRST:
            buf = payload
        elif kind == MIDDLE:
            buf += payload
        else:
            out.append(buf + payload)
            buf = b""
    return out
