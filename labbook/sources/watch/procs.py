"""The daemon's one door to process and GPU capture (labbook.capture.process / .gpu).

Everything the daemon asks about processes and GPUs goes through here, so that
the capture modules can change shape (or be missing in a trimmed build) with one
place to adapt.
"""

from __future__ import annotations

from typing import Any

from labbook.model import EnvInfo


def find_writer(run_dir: str) -> Any | None:
    """The process writing ``run_dir`` (a ProcInfo: pid, argv, cwd, create_time, …) or None."""
    try:
        from labbook.capture.process import find_writer as _find
    except ImportError:
        return None
    try:
        return _find(run_dir)
    except Exception as exc:  # capture must never stop the daemon
        _warn_once(f"process capture failed ({type(exc).__name__}: {exc})")
        return None


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    from labbook.warn import warn

    if message not in _warned:
        _warned.add(message)
        warn(None, message)


def is_alive(pid: int, create_time: float | None) -> bool:
    try:
        from labbook.capture.process import is_alive as _alive
    except ImportError:
        import psutil

        return bool(psutil.pid_exists(pid))
    return bool(_alive(pid, create_time))


def exit_code(pid: int) -> int | None:
    """The exit code when ``pid`` was labbook's own child, else None."""
    try:
        from labbook.capture.process import exit_status
    except ImportError:
        return None
    try:
        return exit_status(pid)
    except Exception:
        return None


def env_for(info: Any) -> EnvInfo | None:
    try:
        from labbook.capture.process import env_for_process
    except ImportError:
        return None
    try:
        return env_for_process(info)
    except Exception:
        return None


def open_gpu() -> tuple[Any | None, str]:
    """(NVML backend, "") or (None, why GPU monitoring is off)."""
    try:
        from labbook.capture import gpu
    except ImportError:
        return None, "labbook.capture.gpu is not available in this build"
    try:
        backend, reason = gpu.open_backend()
    except Exception as exc:
        return None, f"NVML failed to start ({type(exc).__name__}: {exc})"
    return backend, reason or ""
