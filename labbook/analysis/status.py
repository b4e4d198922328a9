"""A run's outcome: its status, and why it failed, in one place.

**Status from what the files say** (:func:`infer_status`). In order: a failure
read from the run's logs or framework (exception, CUDA OOM, signal, …) decides;
else a loss-like metric that turned non-finite makes the run ``diverged`` (first
such step kept); else a framework end marker makes it ``finished``; else a file
cut mid-record (the writer died) makes it ``killed``; else it stays as the
recogniser left it (``unknown`` by default). The daemon, which sees the process,
refines this with ``running`` and exit codes.

**Why a run failed** (:func:`classify`), from everything labbook saw: exit status,
output and metrics. The log rules live in
:func:`labbook.readers.logs.classify_failure` (CUDA OOM, SLURM time limit, kernel
OOM lines, "loss: nan", the last traceback, signals): they say what a log says. This
adds what only a launcher or a daemon knows:

* the **exit status** of the process (a code, or the signal that ended it);
* **kernel OOM evidence** for a SIGKILL: the kernel log (``dmesg``, else
  ``journalctl -k``) naming the process as killed by the out-of-memory killer —
  read only where the user may read it, never as a requirement;
* **metrics**: a loss-like metric that turned NaN or infinite
  (:func:`labbook.analysis.status.first_divergence`) makes the failure ``nan`` even when
  the script printed nothing about it;
* the **exception details** (type, message, innermost frame of the user's own
  code, skipping site-packages and the standard library) for displays.

Precedence, first match wins: kernel-OOM SIGKILL → ``oom_killed``; the log's
``cuda_oom``/``timeout``/``oom_killed``/``nan``; non-finite loss metrics →
``nan``; the log's ``exception``; then ``signal`` and a bare non-zero exit. An exit
status of 0 can only give ``nan`` (a run that diverged and went on to the end);
tracebacks a script caught and printed do not make it a failure.
"""

from __future__ import annotations

import re
import shutil
import signal as _signal
import subprocess
import time
from dataclasses import dataclass

from labbook.model import Failure, Point, RunFacts
from labbook.readers.logs import (
    classify_failure,
    clean_lines,
    is_user_file,
    last_traceback,
    one_line,
)
from labbook.series import nonfinite_kind

__all__ = [
    "FAILURE_STATUS",
    "LOSS_LIKE",
    "ExceptionInfo",
    "classify",
    "exception_info",
    "exit_status",
    "first_divergence",
    "infer_status",
    "kernel_oom_evidence",
    "status_for",
]

LOSS_LIKE = re.compile(r"loss|nll|perplexity|ppl|objective", re.IGNORECASE)

#: Which status a failure kind gives.
FAILURE_STATUS = {
    "cuda_oom": "failed",
    "exception": "failed",
    "timeout": "failed",
    "nan": "diverged",
    "signal": "killed",
    "oom_killed": "killed",
}


def first_divergence(facts: RunFacts) -> Failure | None:
    """The earliest step at which a loss-like metric became NaN or infinite."""
    best: Failure | None = None
    for tag, points in facts.metrics.items():
        if not LOSS_LIKE.search(tag):
            continue
        for p in points:
            kind = nonfinite_kind(p.value)
            if kind:
                if best is None or (best.step is not None and p.step < best.step):
                    best = Failure("nan", f"{tag} became {kind} at step {p.step}", p.step)
                break
    return best


def infer_status(facts: RunFacts) -> None:
    """Set ``facts.status`` (and ``facts.failure`` for divergence) from the facts."""
    diverged = first_divergence(facts)
    if facts.failure is not None and facts.failure.kind != "nan":
        facts.status = FAILURE_STATUS.get(facts.failure.kind, "failed")
    elif diverged is not None:
        facts.status = "diverged"
        facts.failure = diverged
    elif facts.failure is not None:
        facts.status = "diverged"
    elif facts.status in ("failed", "killed", "running"):
        pass  # said explicitly by the framework (MLflow's run status, a marker)
    elif facts.end_marker:
        facts.status = "finished"
    elif facts.truncated:
        facts.status = "killed"


#: Seconds a kernel-log reader may take before it is given up.
KERNEL_LOG_TIMEOUT_S = 2.0

_SIGNAL_WORDS = {
    "SIGINT": "interrupted",
    "SIGTERM": "terminated",
    "SIGKILL": "killed",
    "SIGHUP": "hang-up",
    "SIGQUIT": "quit",
    "SIGABRT": "aborted",
    "SIGSEGV": "segmentation fault",
    "SIGBUS": "bus error",
}


@dataclass
class ExceptionInfo:
    """The exception that ended a run, and where in the user's code it was raised."""

    type: str
    message: str
    #: Innermost frame in the user's own code (not site-packages, not the stdlib).
    file: str | None = None
    line: int | None = None
    func: str | None = None


def exception_info(text: str) -> ExceptionInfo | None:
    """The last exception in ``text`` (a log or captured output), or None."""
    tb = last_traceback(clean_lines(text))
    if tb is None or tb.exc_type is None:
        return None
    info = ExceptionInfo(tb.exc_type, tb.exc_msg)
    for file, line, func in reversed(tb.frames):
        if is_user_file(file):
            info.file, info.line, info.func = file, line, func or None
            break
    return info


def exit_status(returncode: int | None) -> tuple[int | None, str | None]:
    """``Popen.returncode``/``waitstatus`` style code → (exit code, signal name).

    A negative return code (Python's way of saying "killed by signal N") gives the
    signal's name and the shell's exit code 128+N.
    """
    if returncode is None:
        return None, None
    if returncode < 0:
        number = -returncode
        try:
            name = _signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        return 128 + number, name
    return returncode, None


def _oom_lines_for(text: str, pid: int | None) -> str | None:
    """The kernel OOM-kill line about ``pid`` (any OOM kill when pid is None)."""
    found: str | None = None
    for line in text.splitlines():
        if not re.search(r"Out of memory: Kill|oom-kill:|Memory cgroup out of memory", line):
            continue
        if pid is None or re.search(rf"(?:Killed process |[,\s]pid=){pid}\b", line):
            found = line.strip()
    return found


def _read_command(argv: list[str]) -> str | None:
    if shutil.which(argv[0]) is None:
        return None
    try:
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=KERNEL_LOG_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout if proc.returncode == 0 else None


def kernel_oom_evidence(
    pid: int | None, since: float | None = None, *, kernel_log: str | None = None
) -> str | None:
    """A kernel log line saying the OOM killer killed ``pid``, or None.

    ``kernel_log`` is the text to search (for callers that already have it);
    otherwise ``dmesg`` is read, and where it is restricted
    (``kernel.dmesg_restrict``) ``journalctl -k`` since ``since``. Unreadable logs
    mean "no evidence", never an error.
    """
    if kernel_log is not None:
        return _oom_lines_for(kernel_log, pid)
    text = _read_command(["dmesg"])
    if text:
        hit = _oom_lines_for(text, pid)
        if hit:
            return hit
    args = ["journalctl", "-k", "-q", "--no-pager", "-o", "short"]
    if since is not None:
        args += ["--since", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since - 1))]
    text = _read_command(args)
    return _oom_lines_for(text, pid) if text else None


def _signal_failure(name: str) -> Failure:
    word = _SIGNAL_WORDS.get(name)
    return Failure("signal", f"{name} ({word})" if word else name)


def classify(
    *,
    exit_code: int | None,
    signal_name: str | None = None,
    log_text: str = "",
    metrics: dict[str, list[Point]] | None = None,
    pid: int | None = None,
    started_at: float | None = None,
    kernel_log: str | None = None,
) -> Failure | None:
    """The failure of a finished process, or None when it succeeded.

    ``exit_code`` is the exit status (128+N for signal N, as a shell reports it);
    ``signal_name`` the signal that ended it, when known; ``log_text`` the end of
    its output or log; ``metrics`` what it logged; ``pid`` and ``started_at`` let
    a SIGKILL be matched to the kernel's OOM killer (``kernel_log``: the kernel log
    text, read from the system when None). See the module docstring for the order.
    """
    if signal_name is None and exit_code is not None and 128 < exit_code <= 128 + 64:
        _, signal_name = exit_status(-(exit_code - 128))
    succeeded = exit_code == 0 and signal_name is None
    diverged = (
        first_divergence(RunFacts(path="", framework="command", source_key="", metrics=metrics))
        if metrics
        else None
    )
    if succeeded:
        text_failure = classify_failure(log_text, exit_code=0) if log_text else None
        if text_failure is not None and text_failure.kind == "nan":
            return text_failure
        return diverged
    if signal_name == "SIGKILL" and pid is not None:
        evidence = kernel_oom_evidence(pid, started_at, kernel_log=kernel_log)
        if evidence:
            return Failure(
                "oom_killed", one_line(f"SIGKILL by the kernel's out-of-memory killer: {evidence}")
            )
    found = classify_failure(log_text, exit_code=exit_code, signal_name=signal_name)
    if found is not None and found.kind in ("cuda_oom", "timeout", "oom_killed", "nan"):
        if found.kind == "oom_killed" and signal_name not in (None, "SIGKILL"):
            pass  # "Killed" printed by someone else; the process ended otherwise
        else:
            return found
    if diverged is not None:
        return diverged
    if found is not None and found.kind == "exception" and not found.message.startswith("exited"):
        return found
    if signal_name:
        return _signal_failure(signal_name)
    if found is not None:
        return found
    return Failure("exception", f"exited with code {exit_code}") if exit_code else None


def status_for(failure: Failure | None, exit_code: int | None) -> str:
    """The run status a failure gives (``finished`` for none and exit code 0)."""
    if failure is not None:
        return FAILURE_STATUS.get(failure.kind, "failed")
    return "finished" if exit_code == 0 else "failed"
