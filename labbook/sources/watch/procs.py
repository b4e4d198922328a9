"""The daemon's one door to process and GPU capture (labbook.capture.process / .gpu).

Everything the daemon asks about processes and GPUs goes through here, so that
the capture modules can change shape with one place to adapt, and so that a
capture problem never stops the daemon: it is one line (once) and its traceback
at debug level (:func:`labbook.warn.warn_exception`).
"""

from __future__ import annotations

from typing import Any

from labbook.capture import gpu
from labbook.capture import process as capproc
from labbook.model import EnvInfo
from labbook.warn import warn_exception


def _process_errors() -> tuple[type[BaseException], ...]:
    """What a process that ends or hides while it is looked at raises: not a bug."""
    import psutil  # lazy, as in labbook.capture.process

    return (psutil.Error,)


def find_writer(run_dir: str) -> Any | None:
    """The process writing ``run_dir`` (a ProcInfo: pid, argv, cwd, create_time, …) or None."""
    try:
        return capproc.find_writer(run_dir)
    except Exception as exc:  # capture must never stop the daemon
        _warn_once("process capture failed", exc)
        return None


_warned: set[str] = set()


def _warn_once(what: str, exc: Exception) -> None:
    message = f"{what} ({type(exc).__name__}: {exc})"
    warn_exception(None, what, exc, expected=_process_errors(), quiet=message in _warned)
    _warned.add(message)


def is_alive(pid: int, create_time: float | None) -> bool:
    return bool(capproc.is_alive(pid, create_time))


def exit_code(pid: int) -> int | None:
    """The exit code when ``pid`` was labbook's own child, else None."""
    try:
        return capproc.exit_status(pid)
    except Exception as exc:
        warn_exception(None, f"exit code of {pid} unknown", exc, quiet=True)
        return None


def env_for(info: Any) -> EnvInfo | None:
    try:
        return capproc.env_for_process(info)
    except Exception as exc:
        what = f"environment of process {getattr(info, 'pid', '?')} not recorded"
        warn_exception(None, what, exc, expected=_process_errors(), quiet=True)
        return None


def open_gpu() -> tuple[Any | None, str]:
    """(NVML backend, "") or (None, why GPU monitoring is off)."""
    try:
        backend, reason = gpu.open_backend()
    except Exception as exc:
        warn_exception(None, "NVML failed to start", exc, quiet=True)
        return None, f"NVML failed to start ({type(exc).__name__}: {exc})"
    return backend, reason or ""
