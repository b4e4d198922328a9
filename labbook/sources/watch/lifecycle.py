"""How a followed run's status moves: ``running`` until it ends, then why it ended.

A run is ``running`` while its process lives, or (no process known) while its
files keep changing. It ends when the process exits or, without a process, after
``inactivity_timeout`` seconds without a change. Its end status then comes, in
order, from: a failure in its logs (traceback, CUDA OOM, a signal line), a
loss-like metric that turned non-finite (the first such step is kept; this also
marks a run ``diverged`` while it still runs), the exit code when labbook started
the process, a framework end marker, a file cut mid-record. A process that exited
with none of these said is taken as ``finished`` (scripts that log to TensorBoard
leave no end marker); a run that merely went quiet is ``finished`` when its
metrics reached its configured length (``epochs``, ``max_steps``, …), else it
stays ``unknown``. Each verdict says why (``Verdict.reason``, stored as the run's
``status_reason``: "daemon: process exited 0", "reached epochs=5", …).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from labbook.analysis.status import FAILURE_STATUS, LOSS_LIKE, failure_reason, infer_status
from labbook.model import Failure, RunFacts

#: Why a run ended.
EXITED = "exited"
INACTIVE = "inactive"
#: No process known, and the files say the run is over (end marker or traceback).
ENDED = "ended"


def files_say_ended(facts: RunFacts | None) -> bool:
    """Whether a run's files alone show that it is over: an end marker or a failure."""
    if facts is None:
        return False
    return facts.end_marker or (facts.failure is not None and facts.failure.kind != "nan")


def divergence(nonfinite_steps: Mapping[str, int]) -> Failure | None:
    """The first non-finite step among loss-like tags (from the store's summaries)."""
    best: tuple[int, str] | None = None
    for tag, step in nonfinite_steps.items():
        if LOSS_LIKE.search(tag) and (best is None or step < best[0]):
            best = (step, tag)
    if best is None:
        return None
    return Failure("nan", f"{best[1]} became non-finite at step {best[0]}", best[0])


@dataclass
class Verdict:
    status: str
    failure: Failure | None = None
    #: why (``RunFacts.status_reason``): "daemon: process exited 0", "reached epochs=5", …
    reason: str | None = None


def running_verdict(facts: RunFacts | None, diverged: Failure | None) -> Verdict:
    """Status while the run goes on: ``running``, unless it already failed or diverged."""
    if diverged is not None:
        return Verdict("diverged", diverged, failure_reason(diverged))
    if facts is not None and facts.failure is not None and facts.failure.kind != "nan":
        # A traceback while the process lives: a caught error, or it is dying now.
        return Verdict("running", reason="daemon: process running (a traceback was printed)")
    if facts is not None and facts.pid is not None:
        return Verdict("running", reason=f"daemon: process {facts.pid} running")
    return Verdict("running", reason="daemon: files changing")


def end_verdict(
    facts: RunFacts | None,
    diverged: Failure | None,
    *,
    reason: str,
    exit_code: int | None = None,
) -> Verdict:
    """The status of a run that ended (see the module docstring for the order)."""
    if facts is not None:
        if facts.status == "running":
            facts.status, facts.status_reason = "unknown", None
        infer_status(facts)
        if facts.failure is not None and facts.failure.kind != "nan":
            return Verdict(
                FAILURE_STATUS.get(facts.failure.kind, "failed"),
                facts.failure,
                facts.status_reason or failure_reason(facts.failure),
            )
    if diverged is not None:
        return Verdict("diverged", diverged, failure_reason(diverged))
    if facts is not None and facts.status == "diverged":
        return Verdict("diverged", facts.failure, facts.status_reason)
    if exit_code is not None:
        said = f"daemon: process exited {exit_code}"
        if exit_code == 0:
            return Verdict("finished", reason=said)
        if exit_code < 0:
            failure = Failure("signal", f"killed by signal {-exit_code}")
            return Verdict("killed", failure, f"daemon: process killed by signal {-exit_code}")
        return Verdict("failed", Failure("exception", f"exited with code {exit_code}"), said)
    if facts is not None and facts.status in ("finished", "killed", "failed"):
        return Verdict(facts.status, facts.failure, facts.status_reason)
    if reason == EXITED:
        return Verdict("finished", reason="daemon: process exited, no failure in its files")
    why = facts.status_reason if facts is not None else None
    if why and reason == INACTIVE:
        why = why.replace("no end marker, no process,", "no end marker, no process, went quiet;")
    return Verdict("unknown", reason=why or "daemon: went quiet, no end marker")
