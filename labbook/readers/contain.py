"""Files are read only inside the run directory being read.

A run dir may hold a symlink that leads out of it (``train.log -> ~/.ssh/id_ed25519``,
a ``config.yaml`` pointing at another project's). Such a link is listed (one
warning naming it and its target) and never followed: nothing outside the run
dir is read or stored because of it. A link that stays inside the run dir is
followed as usual.

The run dir is set by :func:`run_root` around a recogniser's read (see
:class:`labbook.recognisers.base.Recogniser`) and the live tail; the readers'
openers call :func:`outside` before opening anything. Paths lexically outside
the run dir (a console log a recogniser looks for beside it on purpose) are not
this module's business.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextvars import ContextVar

from labbook.warn import warn

_root: ContextVar[str | None] = ContextVar("labbook_run_root", default=None)
#: (link, target) pairs already warned about in this process: a live run is re-read
#: every few seconds, and each link is listed once.
_warned: set[tuple[str, str]] = set()
_MAX_WARNED = 10_000


@contextlib.contextmanager
def run_root(path: str | os.PathLike[str]) -> Iterator[None]:
    """Within this block, files are read only inside ``path``."""
    token = _root.set(os.path.abspath(os.fspath(path)))
    try:
        yield
    finally:
        _root.reset(token)


def outside(path: str | os.PathLike[str], root: str | os.PathLike[str] | None = None) -> bool:
    """Whether ``path`` (inside the run dir) resolves, through a symlink, to outside it.

    If so, warns once, naming the link and its target. ``root`` defaults to the
    run dir set by :func:`run_root`; without one, nothing is outside.
    """
    base = os.path.abspath(os.fspath(root)) if root is not None else _root.get()
    if base is None:
        return False
    text = os.path.abspath(os.fspath(path))
    if not text.startswith(base.rstrip(os.sep) + os.sep):
        return False
    try:
        real = os.path.realpath(text)
        real_base = os.path.realpath(base)
    except (OSError, ValueError):
        return False
    if real == real_base or real.startswith(real_base.rstrip(os.sep) + os.sep):
        return False
    key = (text, real)
    if key not in _warned:
        if len(_warned) >= _MAX_WARNED:
            _warned.clear()
        _warned.add(key)
        warn(text, f"symlink to {real}, outside the run directory: listed, not followed")
    return True
