"""What the file system under a watched root can do: network mounts and inotify limits.

inotify only sees writes made through this kernel: on NFS, Lustre, GPFS, CIFS,
sshfs, BeeGFS or Ceph another host's writes never raise an event, so such roots
are polled. A database on such a file system is refused: SQLite's locking (and
WAL's shared memory) is not safe there.

Running out of inotify watches is silent (watchdog's ``start()`` succeeds and some
directories simply never report), so :func:`inotify_shortfall` counts the
directories a root would need before it is watched.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from labbook.errors import DatabaseOnNetworkFS
from labbook.sources.watch.config import IGNORED_DIRS

#: File system types whose remote writes inotify cannot see.
NETWORK_FS = frozenset(
    {
        "nfs",
        "nfs4",
        "lustre",
        "gpfs",
        "cifs",
        "smb3",
        "smbfs",
        "fuse.sshfs",
        "sshfs",
        "beegfs",
        "ceph",
        "fuse.ceph",
        "fuse.ceph-fuse",
        "glusterfs",
        "fuse.glusterfs",
        "9p",
        "afs",
    }
)

PROC_MOUNTS = "/proc/mounts"
MAX_WATCHES_FILE = "/proc/sys/fs/inotify/max_user_watches"


@dataclass(frozen=True)
class Mount:
    point: str
    fstype: str
    source: str


def _unescape(field: str) -> str:
    """/proc/mounts escapes space, tab, newline and backslash as octal (\\040)."""
    out = []
    i = 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def read_mounts(path: str = PROC_MOUNTS) -> list[Mount]:
    """The mount table (``/proc/mounts`` format); empty when it cannot be read."""
    mounts = []
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3:
                    mounts.append(Mount(_unescape(parts[1]), parts[2], _unescape(parts[0])))
    except OSError:
        return []
    return mounts


def mount_of(path: str | os.PathLike[str], mounts: list[Mount]) -> Mount | None:
    """The mount holding ``path``: the longest mount point that is a prefix of its real path."""
    real = os.path.realpath(os.fspath(path))
    best: Mount | None = None
    best_len = -1
    for m in mounts:
        point = m.point if m.point == "/" else m.point.rstrip("/")
        inside = point == "/" or real == point or real.startswith(point + "/")
        if inside and len(point) >= best_len:  # later entries over-mount earlier ones
            best, best_len = m, len(point)
    return best


def network_fs_type(path: str | os.PathLike[str], mounts_path: str = PROC_MOUNTS) -> str | None:
    """The network file system type holding ``path`` (``"nfs4"``, …), or None if local."""
    m = mount_of(path, read_mounts(mounts_path))
    if m is None:
        return None
    return m.fstype if m.fstype in NETWORK_FS else None


def check_db_local(db_path: str | os.PathLike[str], mounts_path: str = PROC_MOUNTS) -> None:
    """Refuse a database on a network file system, naming a local path to use instead."""
    target = Path(db_path)
    probe = target if target.exists() else target.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    fstype = network_fs_type(probe, mounts_path)
    if fstype is None:
        return
    raise DatabaseOnNetworkFS(
        f"the database {target} is on a network file system ({fstype}); SQLite's locking "
        "is not safe there and the daemon would corrupt it or stall",
        hint=f"use a local path, e.g. `labbook --db {suggest_local_db(mounts_path)} watch`",
    )


def suggest_local_db(mounts_path: str = PROC_MOUNTS) -> str:
    """A database path on a local file system: the XDG default if local, else /var/tmp or /tmp."""
    from labbook.capture.owner import current_user
    from labbook.paths import data_dir

    user = current_user()
    candidates = [
        data_dir(),
        Path("/var/tmp") / f"labbook-{user}",
        Path("/tmp") / f"labbook-{user}",
    ]
    for c in candidates:
        probe = c
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        if network_fs_type(probe, mounts_path) is None:
            return str(c / "labbook.db")
    return str(candidates[-1] / "labbook.db")


# -- inotify -------------------------------------------------------------------------


def max_user_watches(path: str = MAX_WATCHES_FILE) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def inotify_watches_in_use() -> int:
    """inotify watches held by this user's processes (those whose fdinfo we can read)."""
    total = 0
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return 0
    for pid in pids:
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"{fd_dir}/{fd}") != "anon_inode:inotify":
                    continue
                with open(f"/proc/{pid}/fdinfo/{fd}", "rb") as f:
                    total += sum(1 for line in f if line.startswith(b"inotify wd:"))
            except OSError:
                continue
    return total


def iter_dirs(root: Path, limit: int) -> Iterator[str]:
    """Directories below ``root`` (itself included) that a recursive watch would cover.

    Stops after ``limit`` (the caller only needs to know whether it is exceeded).
    Ignored directories are skipped, as the observer's handler ignores their events
    (inotify would still watch them: the count is a lower bound).
    """
    count = 0
    stack = [str(root)]
    while stack:
        d = stack.pop()
        yield d
        count += 1
        if count >= limit:
            return
        try:
            with os.scandir(d) as it:
                for e in it:
                    try:
                        if e.is_dir(follow_symlinks=False) and e.name not in IGNORED_DIRS:
                            stack.append(e.path)
                    except OSError:
                        continue
        except OSError:
            continue


def inotify_shortfall(
    root: str | os.PathLike[str],
    *,
    max_watches: int | None = None,
    in_use: int | None = None,
    reserve: int = 1024,
) -> str | None:
    """Why ``root`` cannot be watched with inotify, or None if it can.

    ``max_watches`` (default: ``fs.inotify.max_user_watches``) and ``in_use``
    (default: counted from ``/proc``) can be given, which is how tests simulate
    exhaustion. ``reserve`` watches are left for new directories and other programs.
    """
    limit = max_user_watches() if max_watches is None else max_watches
    if limit is None:
        return None  # not Linux, or unreadable: nothing to check against
    used = inotify_watches_in_use() if in_use is None else in_use
    available = limit - used - (reserve if max_watches is None else 0)
    needed = sum(1 for _ in iter_dirs(Path(root), max(available, 0) + 1))
    if needed <= available:
        return None
    return (
        f"{root}: needs more than {max(available, 0)} inotify watches "
        f"(fs.inotify.max_user_watches = {limit}, {used} in use); polling this root instead. "
        "Raise it with `sudo sysctl fs.inotify.max_user_watches=524288`"
    )
