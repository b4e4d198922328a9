"""One daemon per database: an ``flock`` on a lock file beside the database.

The kernel drops the lock when its holder dies, even by ``kill -9``, so a stale
lock file never blocks a restart. The holder's pid is written into the file so a
second ``labbook watch`` can say who holds it.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from labbook.errors import DaemonRunning, StoreError


def lock_path(db_path: str | os.PathLike[str]) -> Path:
    p = Path(db_path)
    return p.with_name(p.name + ".watch.lock")


class DaemonLock:
    """Held while the daemon runs. Use as a context manager or acquire()/release()."""

    def __init__(self, db_path: str | os.PathLike[str]) -> None:
        self.path = lock_path(db_path)
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StoreError(
                f"cannot create the watch lock {self.path}: {exc.strerror or exc}",
                hint="`labbook watch` keeps a lock file beside the database; --db picks another",
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f"pid {holder}" if holder else "another process"
            raise DaemonRunning(
                f"another `labbook watch` ({who}) is already recording into "
                f"{self.path.with_name(self.path.name.removesuffix('.watch.lock'))}",
                hint="stop it first, or use --db for a separate database",
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> DaemonLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def holder_pid(db_path: str | os.PathLike[str]) -> int | None:
    """The pid written by the daemon holding the lock (None if none is written)."""
    try:
        fd = os.open(lock_path(db_path), os.O_RDONLY)
    except OSError:
        return None
    try:
        return _read_pid(fd)
    finally:
        os.close(fd)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode().strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None
