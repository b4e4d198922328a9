"""A run's status from what its files say.

In order: a failure read from the run's logs or framework (exception, CUDA OOM,
signal, …) decides; else a loss-like metric that turned non-finite makes the run
``diverged`` (first such step kept); else a framework end marker makes it
``finished``; else a file cut mid-record (the writer died) makes it ``killed``;
else it stays as the recogniser left it (``unknown`` by default). The daemon, which
sees the process, refines this with ``running`` and exit codes.
"""

from __future__ import annotations

import re

from labbook.model import Failure, RunFacts
from labbook.series import nonfinite_kind

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
