"""A run's outcome: its status, and why it failed, in one place.

**Status from what the files say** (:func:`infer_status`). In order: a failure
read from the run's logs or framework (exception, CUDA OOM, signal, …) decides;
else a loss-like metric that turned non-finite makes the run ``diverged`` (first
such step kept); else a framework end marker makes it ``finished``; else a file
cut mid-record (the writer died) makes it ``killed``; else metrics that reached
the run's configured length (:func:`length_evidence`: ``epochs``, ``max_steps``,
… at any depth of the config) make it ``finished``; else it stays ``unknown``.
Every status comes with its reason (``RunFacts.status_reason``: "reached
epochs=5", "no end marker, no process, metrics stop at epoch 2 of 5"). The
daemon, which sees the process, refines this with ``running`` and exit codes.

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
from itertools import pairwise

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
    "length_evidence",
    "status_for",
    "status_reason_for",
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
    """Set ``facts.status`` and ``facts.status_reason`` (and ``facts.failure`` for
    divergence) from the facts. A reason already given to a status a framework
    recorded (MLflow's, an end marker) is kept."""
    diverged = first_divergence(facts)
    given = facts.status_reason
    if facts.failure is not None and facts.failure.kind != "nan":
        facts.status = FAILURE_STATUS.get(facts.failure.kind, "failed")
        facts.status_reason = failure_reason(facts.failure)
    elif diverged is not None:
        facts.status = "diverged"
        facts.failure = diverged
        facts.status_reason = failure_reason(diverged)
    elif facts.failure is not None:
        facts.status = "diverged"
        facts.status_reason = failure_reason(facts.failure)
    elif facts.status in ("failed", "killed", "running"):
        # said explicitly by the framework (MLflow's run status, a marker)
        facts.status_reason = given or f"{facts.framework} recorded the run as {facts.status}"
    elif facts.end_marker:
        facts.status = "finished"
        facts.status_reason = given or f"end marker ({facts.framework})"
    elif facts.truncated:
        facts.status = "killed"
        facts.status_reason = given or "killed: a file was cut mid-record (the writer died)"
    elif facts.status == "finished":
        facts.status_reason = given or f"{facts.framework} recorded the run as finished"
    else:
        reached, why = length_evidence(facts)
        facts.status = "finished" if reached else "unknown"
        facts.status_reason = why if reached else f"no end marker, no process, {why}"


_EXCEPTION_NAME = re.compile(r"[A-Za-z_][\w.]*(?:Error|Exception|Interrupt|Exit|Failure)\b")


def failure_reason(failure: Failure) -> str:
    """The reason a failure gives its run's status, in one line."""
    if failure.kind == "nan":
        where = f" at step {failure.step}" if failure.step is not None else ""
        if failure.step is not None and f"step {failure.step}" in failure.message:
            where = ""
        return one_line(f"non-finite loss{where}: {failure.message}")
    if failure.kind == "exception" and _EXCEPTION_NAME.match(failure.message):
        return one_line(f"traceback: {failure.message}")
    return one_line(failure.message)


def status_reason_for(failure: Failure | None, exit_code: int | None) -> str:
    """The reason for :func:`status_for`'s status of a process ``labbook run`` started."""
    code = "no exit code" if exit_code is None else f"exit code {exit_code}"
    if failure is None:
        return f"labbook run: {code}"
    return f"labbook run: {code}; {failure_reason(failure)}"


# -- length evidence: metrics that reached the configured length -----------------------

#: Config keys (the last part of a dotted key) that give a run's length in epochs ...
EPOCH_LENGTH_KEYS = (
    "max_epochs",
    "epochs",
    "num_epochs",
    "n_epochs",
    "num_train_epochs",
    "train_epochs",
    "total_epochs",
)
#: ... in steps (iterations) ...
STEP_LENGTH_KEYS = (
    "max_steps",
    "steps",
    "num_steps",
    "n_steps",
    "total_steps",
    "train_steps",
    "num_train_steps",
    "training_steps",
    "max_iters",
    "max_iter",
    "max_iterations",
    "num_iters",
    "num_iterations",
    "iterations",
    "iters",
)
#: ... and the steps in one epoch (epochs × this = a length in steps).
STEPS_PER_EPOCH_KEYS = (
    "steps_per_epoch",
    "iters_per_epoch",
    "batches_per_epoch",
    "num_batches_per_epoch",
    "limit_train_batches",
)
#: Metric tags (last ``/`` or ``.`` part) that count epochs.
_EPOCH_TAG = re.compile(r"(?:^|[/.])epochs?$", re.IGNORECASE)
#: How far below a fractional epoch count (HF's ``epoch: 1.9999``) still reaches it.
_EPOCH_SLACK = 0.01


def _length(config: dict[str, object], names: tuple[str, ...]) -> tuple[str, float] | None:
    """The shallowest config key whose last part is in ``names`` with a positive number."""
    best: tuple[int, int, str, float] | None = None
    for key, value in config.items():
        last = key.rsplit(".", 1)[-1].lower()
        if last not in names or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if not value > 0 or value != value or value == float("inf"):
            continue
        rank = (key.count("."), names.index(last))
        if best is None or rank < best[:2]:
            best = (*rank, key, float(value))
    return None if best is None else (best[2], best[3])


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _epochs_reached(first: float, last: float, epochs: float) -> bool:
    """Whether epoch values running ``first``..``last`` reached ``epochs``.

    A count that starts at 0 (Lightning's ``epoch``) reaches ``epochs - 1`` in its
    last epoch; one that starts above 0 counts from 1, or counts progress (HF's
    ``epoch: 2.0`` after two epochs), and reaches ``epochs``.
    """
    if last >= epochs - _EPOCH_SLACK:
        return True
    return first == 0 and float(last).is_integer() and last >= epochs - 1


def _last_epoch_complete(points: list[Point]) -> bool:
    """For a per-step epoch count: the last epoch has as many points as the one before."""
    counts: dict[float, int] = {}
    for p in points:
        counts[p.value] = counts.get(p.value, 0) + 1
    values = sorted(counts)
    if len(values) < 2:
        return True
    return counts[values[-1]] >= counts[values[-2]]


def _step_axis(facts: RunFacts) -> tuple[int, int, int] | None:
    """(first step, last step, logging interval) of the metrics, or None without any."""
    first = last = None
    interval = 1
    for points in facts.metrics.values():
        steps = [p.step for p in points if p.step >= 0]  # -1: a final value, step unknown
        if not steps:
            continue
        first = steps[0] if first is None else min(first, steps[0])
        if last is None or steps[-1] > last:
            last = steps[-1]
            gaps = sorted(b - a for a, b in pairwise(steps) if b > a)
            interval = gaps[len(gaps) // 2] if gaps else 1
    if first is None or last is None:
        return None
    return first, last, interval


def _steps_reached(axis: tuple[int, int, int], total: float) -> bool:
    """Whether the last logged step is the last one a run of ``total`` steps logs.

    Steps counted from 0 end at ``total - 1``, from 1 at ``total``; a run that logs
    every k steps reached its end when its next log would be past it.
    """
    first, last, interval = axis
    end = total - 1 if first == 0 else total
    return last + interval > end


def length_evidence(facts: RunFacts) -> tuple[bool, str]:
    """Whether the metrics reached the run's configured length, and why (or why not).

    The length is a config key at any depth (``epochs``, ``trainer.max_epochs``,
    ``max_steps``, ``max_iters``, …; see the ``*_KEYS`` above). Epochs are compared
    with, in order: an ``epoch`` column of a metrics file (``facts.epochs_seen``),
    an ``epoch`` metric, the last step against epochs × ``steps_per_epoch``, or
    the steps themselves where they count epochs (no more steps than epochs).
    Steps are compared with the last logged step. Either length reached is enough
    (a trainer stops at the first).
    """
    epochs = _length(facts.config, EPOCH_LENGTH_KEYS)
    steps = _length(facts.config, STEP_LENGTH_KEYS)
    if epochs is None and steps is None:
        return False, "no length configured"
    axis = _step_axis(facts)
    if axis is None and facts.epochs_seen is None:
        key, value = epochs or steps  # type: ignore[misc]
        return False, f"no metrics to compare {key}={_num(value)} with"
    why_not: list[str] = []
    if steps is not None and axis is not None:
        key, total = steps
        if _steps_reached(axis, total):
            return True, f"reached {key}={_num(total)}"
        why_not.append(f"metrics stop at step {axis[1]} of {_num(total)}")
    if epochs is not None:
        reached, why = _epoch_evidence(facts, epochs, axis)
        if reached:
            return True, why
        why_not.append(why)
    return False, "; ".join(why_not)


def _epoch_evidence(
    facts: RunFacts, epochs: tuple[str, float], axis: tuple[int, int, int] | None
) -> tuple[bool, str]:
    key, count = epochs
    stated = f"{key}={_num(count)}"
    if facts.epochs_seen is not None:
        first, last = facts.epochs_seen
        if _epochs_reached(first, last, count):
            return True, f"reached {stated}"
        return False, f"metrics stop at epoch {_num(last)} of {_num(count)}"
    tags = sorted(t for t in facts.metrics if _EPOCH_TAG.search(t) and facts.metrics[t])
    if tags:
        points = [p for p in facts.metrics[tags[0]] if p.value == p.value]
        if points:
            first, last = points[0].value, max(p.value for p in points)
            if _epochs_reached(first, last, count) and (
                last >= count - _EPOCH_SLACK or _last_epoch_complete(points)
            ):
                return True, f"reached {stated}"
            return False, f"metrics stop at epoch {_num(last)} of {_num(count)}"
    per_epoch = _length(facts.config, STEPS_PER_EPOCH_KEYS)
    if axis is not None and per_epoch is not None:
        total = count * per_epoch[1]
        product = f"{stated} × {per_epoch[0]}={_num(per_epoch[1])}"
        if _steps_reached(axis, total):
            return True, f"reached {product} ({_num(total)} steps)"
        return False, f"metrics stop at step {axis[1]} of {_num(total)} ({product})"
    if axis is not None and axis[1] <= count:
        # No more steps than epochs: the steps count epochs (add_scalar(tag, v, epoch)).
        first, last, _ = axis
        if _epochs_reached(first, last, count):
            return True, f"reached {stated} (steps {first}..{last} read as epochs)"
        return False, f"metrics stop at epoch {last} of {_num(count)}"
    last_step = f" (last step {axis[1]})" if axis is not None else ""
    return False, f"no epoch in the metrics to compare {stated} with{last_step}"


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
