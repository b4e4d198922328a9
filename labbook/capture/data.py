"""Fingerprints of the data a run read: config values that name existing paths.

"Did the data change between these two runs?" can only be answered if something
about the data was written down when the run was recorded: the files may be
rewritten or gone by the time someone asks. For each config value that names an
existing file or directory (``data.train: data/train``, ``dataset_path: /scratch/x``)
labbook keeps, at capture time:

* ``size`` (bytes, all files), ``files`` (file count) and ``mtime`` (the newest
  modification time, unix seconds);
* ``fingerprint``: a SHA-256 (16 hex digits) over the sorted listing (relative
  path and size of every file seen) and a *bounded sample* of contents — the head,
  middle and tail of up to :data:`SAMPLE_FILES` files spread over the listing.
  Nothing is ever read whole unless it is small (``complete`` says whether every
  byte was hashed), so a 2 TB dataset costs a directory walk and a few MB of reads;
* ``truncated``: the walk stopped after :data:`WALK_MAX` entries, so ``size`` and
  ``files`` are lower bounds.

What is not data: paths that are the run directory itself, inside it or above it
(an ``output_dir`` pointing at the run, ``.`` for the project root), and keys named
like outputs (``output_dir``, ``logging_dir``, ``save_dir``, …): they change with
every run and would make every diff say "data changed".

A fingerprint of a path that cannot be read is skipped with one warning naming it.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Iterable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

from labbook.warn import warn

if TYPE_CHECKING:
    from labbook.model import RunFacts

#: At most this many directory entries are looked at per path (``truncated`` beyond).
WALK_MAX = 50_000
#: Contents of at most this many files are sampled per path.
SAMPLE_FILES = 32
#: Bytes read from each of the head, middle and tail of a sampled file.
SAMPLE_BYTES = 64 * 1024
#: At most this many config values are fingerprinted per run.
MAX_PATHS = 64
#: Longer strings are not paths worth checking.
_MAX_VALUE_LEN = 4096

#: Key words that hint at a path even without a slash (``data.train: train.csv``).
_PATH_HINT = re.compile(r"(path|dir|file|data|root|dataset|folder|csv|json|parquet)", re.I)
#: Last key components that name outputs, not inputs: skipped.
_OUTPUT_KEY = re.compile(
    r"(^|[_\-])(out|outs|output|outputs|log|logs|logging|save|saving|wandb|tensorboard|tb)"
    r"([_\-]|$)|^(default_root_dir|dirpath|run_dir|exp_dir|experiment_dir)$",
    re.I,
)


def data_base_dir(facts: RunFacts) -> str:
    """The directory relative config paths are resolved against.

    The run's own working directory when known, else the root of its git work tree
    (scripts are usually started there), else the run directory.
    """
    if facts.cwd:
        return facts.cwd
    if facts.git is not None and facts.git.root:
        return facts.git.root
    return facts.path.split("#", 1)[0]


def candidate_path(key: str, value: Any, base_dir: str) -> str | None:
    """The absolute path a config value names, if it looks like one (existence unchecked)."""
    if not isinstance(value, str) or not value or len(value) > _MAX_VALUE_LEN:
        return None
    if "\n" in value or "\0" in value or "://" in value:
        return None
    last = key.rsplit(".", 1)[-1]
    if _OUTPUT_KEY.search(last):
        return None
    looks = (
        os.path.isabs(value)
        or value.startswith(("~", "./", "../"))
        or "/" in value
        or os.sep in value
        or bool(_PATH_HINT.search(key))
    )
    if not looks:
        return None
    expanded = os.path.expanduser(value)
    return os.path.normpath(os.path.join(base_dir, expanded))


def _related(path: str, others: Iterable[str]) -> bool:
    """Whether ``path`` is one of ``others``, inside one, or above one."""
    for other in others:
        if path == other:
            return True
        common = os.path.commonpath([path, other]) if os.path.isabs(other) else ""
        if common in (path, other):
            return True
    return False


def _sample_file(path: str, size: int, h: Any) -> bool:
    """Hash the head, middle and tail of a file into ``h``; True when all bytes were read."""
    with open(path, "rb") as fh:
        if size <= 3 * SAMPLE_BYTES:
            h.update(fh.read(3 * SAMPLE_BYTES))
            return True
        for offset in (0, size // 2 - SAMPLE_BYTES // 2, size - SAMPLE_BYTES):
            fh.seek(offset)
            h.update(fh.read(SAMPLE_BYTES))
    return False


def _walk(root: str) -> tuple[list[tuple[str, int, float]], bool]:
    """(relative path, size, mtime) of regular files below ``root``, sorted; truncated?

    Directory symlinks are not followed (no loops, no walking half a filesystem);
    file symlinks are (a dataset of links into shared storage is common).
    """
    files: list[tuple[str, int, float]] = []
    seen = 0
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        try:
            with os.scandir(os.path.join(root, rel_dir) if rel_dir else root) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            continue
        subdirs = []
        for entry in entries:
            seen += 1
            if seen > WALK_MAX:
                files.sort()
                return files, True
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            try:
                if entry.is_dir(follow_symlinks=False):
                    subdirs.append(rel)
                    continue
                st = entry.stat(follow_symlinks=True)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                files.append((rel, st.st_size, st.st_mtime))
        stack.extend(reversed(subdirs))
    files.sort()
    return files, False


def fingerprint_path(path: str) -> dict[str, Any]:
    """The fingerprint of one existing file or directory (see the module docstring).

    Raises OSError when the path cannot be read.
    """
    st = os.stat(path)
    h = hashlib.sha256()
    if stat.S_ISDIR(st.st_mode):
        listing, truncated = _walk(path)
        for rel, size, _ in listing:
            h.update(f"{rel}\0{size}\n".encode("utf-8", "surrogateescape"))
        count = len(listing)
        step = max(1, count // SAMPLE_FILES) if count else 1
        picked = listing[::step][:SAMPLE_FILES]
        complete = not truncated and len(picked) == count
        for rel, size, _ in picked:
            h.update(rel.encode("utf-8", "surrogateescape") + b"\0")
            try:
                complete = _sample_file(os.path.join(path, rel), size, h) and complete
            except OSError:
                complete = False
        return {
            "path": path,
            "kind": "dir",
            "size": sum(s for _, s, _ in listing),
            "files": count,
            "mtime": max((m for _, _, m in listing), default=st.st_mtime),
            "fingerprint": h.hexdigest()[:16],
            "complete": complete,
            "truncated": truncated,
        }
    if not stat.S_ISREG(st.st_mode):
        raise OSError(f"{path} is neither a file nor a directory")
    h.update(f"{st.st_size}\n".encode())
    complete = _sample_file(path, st.st_size, h)
    return {
        "path": path,
        "kind": "file",
        "size": st.st_size,
        "files": 1,
        "mtime": st.st_mtime,
        "fingerprint": h.hexdigest()[:16],
        "complete": complete,
        "truncated": False,
    }


def fingerprint_paths(
    config: Mapping[str, Any],
    base_dir: str,
    *,
    skip: Iterable[str] = (),
    cache: MutableMapping[str, dict[str, Any] | None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Config key -> fingerprint, for each config value that names an existing path.

    Relative values are resolved against ``base_dir``. Paths equal to, inside or
    above one of ``skip`` (the run directory) are left out, and so are the project
    root and keys named like outputs. ``cache`` (path -> fingerprint) lets the
    many runs of one import that share a dataset cost one walk.
    """
    skipped = [os.path.abspath(p) for p in skip if p]
    out: dict[str, dict[str, Any]] = {}
    for key, value in config.items():
        if len(out) >= MAX_PATHS:
            break
        path = candidate_path(str(key), value, base_dir)
        if path is None or _related(path, skipped):
            continue
        if cache is not None and path in cache:
            found = cache[path]
        else:
            found = None
            try:
                if os.path.exists(path):
                    found = fingerprint_path(path)
            except (OSError, ValueError) as exc:
                warn(
                    path, f"data fingerprint not recorded ({getattr(exc, 'strerror', None) or exc})"
                )
            if cache is not None:
                cache[path] = found
        if found is not None:
            out[str(key)] = dict(found)
    return out
