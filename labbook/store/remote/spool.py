"""Ephemeral nodes: a batch that could not be pushed waits in a file under the home.

A Slurm job on a node that will never run labbook again ends while the lab's
notebook is unreachable: its last push fails, and the node's local store (on the
node's own disk) may be gone tomorrow. So the batch that push would have sent is
written to the **spool**, a directory under the (cluster-shared, NFS) home
(``[remote] spool_dir``, ``LABBOOK_SPOOL``; default ``~/.local/share/labbook/spool``),
and any later push round on any node ingests every spool file it finds.

* **One writer per file.** A file is named by its origin and the generation its
  batch was claimed at (``<origin>-<gen>.lbspool``); it is written under a temporary
  name in the same directory, flushed, and renamed into place, so a reader sees a
  whole file or none (a rename within one directory is atomic on NFS too). Files are
  private (0600) in a private directory (0700): they hold the user's runs.
* **Idempotent ingest.** A batch goes through the same remote upsert as a push
  (guarded by ``(origin, version)``), so ingesting a file twice, from two nodes at
  once, or after the origin itself pushed something newer changes nothing. A file
  is deleted only after the server committed it.
* **Bad files cost nothing.** A file that cannot be read (truncated, not ours) is
  renamed to ``*.bad`` with one warning naming it, and kept for a person to look at.

The file format: one header line ``labbook-spool 1\\n``, then zlib-compressed JSON of
the batch, with bytes as ``{"$b": base64}`` and tuples as ``{"$t": [...]}``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import sys
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labbook.store.remote.config import RemoteConfig
from labbook.warn import warn

MAGIC = b"labbook-spool 1\n"
SUFFIX = ".lbspool"
_NAME = re.compile(r"^(?P<origin>[0-9A-Za-z_-]+)-(?P<gen>\d+)\.lbspool$")


#: Spool files one push round ingests at most.
FILES_PER_ROUND = 50


class SpoolFileError(ValueError):
    """A spool file that cannot be read as a batch."""


# --- the batch as bytes ------------------------------------------------------------


def _enc(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$b": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, tuple):
        return {"$t": [_enc(v) for v in value]}
    if isinstance(value, list):
        return [_enc(v) for v in value]
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("$") for k in value):
            return {k: _enc(v) for k, v in value.items()}
        return {"$d": [[_enc(k), _enc(v)] for k, v in value.items()]}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"a spool batch cannot hold {type(value).__name__}")


def _dec(value: Any) -> Any:
    if isinstance(value, list):
        return [_dec(v) for v in value]
    if isinstance(value, dict):
        if len(value) == 1:
            ((key, inner),) = value.items()
            if key == "$b":
                return base64.b64decode(inner)
            if key == "$t":
                return tuple(_dec(v) for v in inner)
            if key == "$d":
                return {_hashable(_dec(k)): _dec(v) for k, v in inner}
        return {k: _dec(v) for k, v in value.items()}
    return value


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def encode_batch(batch: Any) -> bytes:
    """The bytes of a spool file holding ``batch`` (dicts, lists, tuples, bytes, scalars)."""
    text = json.dumps(_enc(batch), ensure_ascii=False, allow_nan=True, separators=(",", ":"))
    return MAGIC + zlib.compress(text.encode("utf-8"), 6)


def decode_batch(data: bytes) -> Any:
    """The batch in a spool file's bytes; :class:`SpoolFileError` when they are not one."""
    if not data.startswith(MAGIC):
        raise SpoolFileError("not a labbook spool file")
    try:
        return _dec(json.loads(zlib.decompress(data[len(MAGIC) :]).decode("utf-8")))
    except (zlib.error, UnicodeDecodeError, ValueError) as exc:
        raise SpoolFileError(f"unreadable spool file ({type(exc).__name__})") from None


# --- files ----------------------------------------------------------------------------


def spool_name(origin: str, gen: int) -> str:
    if not re.fullmatch(r"[0-9A-Za-z_-]+", origin):
        raise ValueError(f"origin {origin!r} cannot name a spool file")
    return f"{origin}-{int(gen):012d}{SUFFIX}"


def parse_name(name: str) -> tuple[str, int] | None:
    """(origin, gen) of a spool file's name, or None when it is not one."""
    m = _NAME.match(name)
    return (m["origin"], int(m["gen"])) if m else None


def _private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(OSError):  # a dir another user made stays theirs
        if path.stat().st_mode & 0o077:
            path.chmod(0o700)
    return path


def write_file(spool_dir: Path, origin: str, gen: int, batch: Any) -> Path:
    """Write ``batch`` as ``<origin>-<gen>.lbspool`` in ``spool_dir``, atomically (a
    temporary name, fsync, rename), private (0600). An existing file of the same name
    (the same origin and generation: the same batch) is replaced."""
    directory = _private_dir(Path(spool_dir))
    final = directory / spool_name(origin, gen)
    tmp = directory / f".{final.name}.{os.getpid()}.tmp"
    data = encode_batch(batch)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    with contextlib.suppress(OSError):  # the rename itself on disk (not possible everywhere)
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    return final


def read_file(path: Path) -> Any:
    """The batch in one spool file (:class:`SpoolFileError` when it is not one)."""
    return decode_batch(Path(path).read_bytes())


def pending_files(spool_dir: Path) -> list[Path]:
    """The spool files waiting in ``spool_dir``, oldest generation first per origin
    (temporary and ``.bad`` files are not among them)."""
    try:
        names = os.listdir(spool_dir)
    except OSError:
        return []
    found = []
    for name in names:
        m = _NAME.match(name)
        if m:
            found.append((m["origin"], int(m["gen"]), name))
    return [Path(spool_dir) / name for _, _, name in sorted(found)]


def _set_aside(path: Path, why: str) -> None:
    warn(path, f"not a spool batch labbook can read ({why}); kept as {path.name}.bad")
    with contextlib.suppress(OSError):
        os.replace(path, path.with_name(path.name + ".bad"))


@dataclass
class IngestResult:
    files: int = 0  # spool files ingested (and deleted)
    runs: int = 0  # runs they held
    bad: int = 0  # files set aside as .bad
    names: list[str] = field(default_factory=list)


def ingest_files(
    conn: Any,
    spool_dir: Path,
    apply: Callable[[Any, Any], int],
    *,
    limit: int | None = None,
    committed: Callable[[Any], None] | None = None,
) -> IngestResult:
    """Ingest the spool files in ``spool_dir`` through ``apply(conn, batch) -> runs``,
    one remote transaction per file: apply, commit, then delete the file (and call
    ``committed(batch)``). An error from the server (unreachable, a conflict) stops the
    ingest and propagates: the file stays for the next round."""
    result = IngestResult()
    for path in pending_files(spool_dir)[:limit]:
        try:
            batch = read_file(path)
        except FileNotFoundError:
            continue  # another node ingested it meanwhile
        except (SpoolFileError, OSError) as exc:
            _set_aside(path, str(exc))
            result.bad += 1
            continue
        try:
            runs = apply(conn, batch)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            # the file is a spool file but not a batch this version understands
            conn.rollback()
            _set_aside(path, f"{type(exc).__name__}: {exc}")
            result.bad += 1
            continue
        conn.commit()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        if committed is not None:
            committed(batch)
        result.files += 1
        result.runs += runs
        result.names.append(path.name)
    return result


def ingest_all(
    conn: Any,
    cfg: RemoteConfig,
    apply_batch: Callable[[Any, Any], int] | None = None,
    committed: Callable[[Any], None] | None = None,
) -> IngestResult:
    """Ingest every spool file in ``cfg.spool_dir`` into the lab's notebook (called by
    ``push_round`` first, with its open connection and its ``apply_batch``, the same
    upsert a push makes; passed in so that this module does not import the push,
    which imports it). Cheap when the spool is empty (one directory listing). A file the server rejects as data (not as a lost
    connection) is set aside as ``.bad``; a lost connection propagates and the files
    stay for the next round."""
    directory = spool_dir_of(cfg)
    if not pending_files(directory):
        return IngestResult()
    import psycopg

    from labbook.store.remote.schema import schema_exists

    if not schema_exists(conn):
        return IngestResult()  # push_round says what to do about a missing schema
    if apply_batch is None:
        # called as ingest_all(conn, cfg) by the push round: the push module is loaded
        # (it is the caller); looked up, not imported, so the two do not import each other
        push = sys.modules.get("labbook.store.remote.push")
        if push is None:
            return IngestResult()
        apply_batch = push.apply_batch
    upsert: Callable[[Any, Any], int] = apply_batch

    def apply(c: Any, batch: Any) -> int:
        if not isinstance(batch, dict) or batch.get("format") != 1:
            raise ValueError("a batch of another format")
        try:
            return upsert(c, batch)
        except psycopg.OperationalError:
            raise  # the server went away: keep the file
        except psycopg.Error as exc:
            raise ValueError(str(exc).strip().splitlines()[0]) from None

    # a bounded share of each round (the rest waits for the next): the round's own
    # push and its watchdog's deadline stay in reach however full the spool is
    return ingest_files(conn, directory, apply, limit=FILES_PER_ROUND, committed=committed)


def iter_batches(spool_dir: Path) -> Iterator[tuple[Path, Any]]:
    """(path, batch) of every readable spool file (for ``remote status`` and tests)."""
    for path in pending_files(spool_dir):
        with contextlib.suppress(SpoolFileError, OSError):
            yield path, read_file(path)


def spool_dir_of(cfg: RemoteConfig) -> Path:
    return Path(cfg.spool_dir)
