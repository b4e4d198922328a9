"""Turns a check and a strategy into a fuzz target: a pytest test bounded in examples or time.

Every example runs with labbook's warnings captured (each must be one line, with
no traceback attached). When hypothesis has shrunk a failure to its minimal
input, that input is saved (see :func:`tests.fuzz.checks.save_crash`) and the
failure says where, so that it can be kept as a regression fixture under
tests/fixtures/fuzz/<target>/.
"""

from __future__ import annotations

import logging
import os
import time
import zlib
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import example, given, seed, settings
from hypothesis import strategies as st
from hypothesis.control import current_build_context

from tests.fuzz import checks

#: The session's seed (set by conftest); each target and batch derives its own from it.
SEED = 0
#: Examples run per target, and seconds spent, for the closing summary.
COUNTS: Counter[str] = Counter()
SECONDS: Counter[str] = Counter()
#: Number of targets, to split LABBOOK_FUZZ_SECONDS between them.
TARGETS: list[str] = []


class _Warnings(logging.Handler):
    """Collects labbook's warnings; each must be one line and carry no traceback."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.bad: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info or "\n" in text or "Traceback" in text:
            self.bad.append(text)


def _budget() -> float | None:
    total = os.environ.get("LABBOOK_FUZZ_SECONDS")
    return float(total) / max(len(TARGETS), 1) if total else None


def target(
    name: str,
    strategy: st.SearchStrategy[Any],
    check: Callable[[Any], None],
    *,
    weight: float = 1.0,
    examples: list[Any] | None = None,
) -> Callable[[], None]:
    """A pytest test fuzzing ``check`` with inputs from ``strategy``.

    ``weight`` scales the profile's ``max_examples`` for this target (slow checks
    get fewer). ``examples`` are always run first (kept crash inputs).
    """
    TARGETS.append(name)
    logger = logging.getLogger("labbook")

    def body(data: Any) -> None:
        COUNTS[name] += 1
        handler = _Warnings()
        old = (logger.level, logger.propagate)
        logger.addHandler(handler)
        logger.setLevel(logging.WARNING)
        logger.propagate = False
        try:
            check(data)
            assert not handler.bad, f"warnings not on one line: {handler.bad}"
        except BaseException as exc:
            if current_build_context().is_final:
                where = checks.save_crash(name, data)
                exc.add_note(
                    f"fuzz target {name!r} (LABBOOK_FUZZ_SEED={SEED}): input saved as {where}; "
                    f"keep it as a regression: copy it to tests/fixtures/fuzz/{name}/"
                )
            raise
        finally:
            logger.removeHandler(handler)
            logger.setLevel(old[0])
            logger.propagate = old[1]

    def test() -> None:
        profile = settings.default
        n = max(1, int(profile.max_examples * weight))
        budget = _budget()
        start = time.monotonic()
        batch = 0
        try:
            while True:

                def one(data: Any) -> None:
                    body(data)

                run = given(strategy)(settings(profile, max_examples=n)(one))
                for ex in reversed(examples or [] if batch == 0 else []):
                    run = example(ex)(run)
                seed(SEED + zlib.crc32(name.encode()) + batch)(run)
                run()
                batch += 1
                if budget is None or time.monotonic() - start >= budget:
                    break
        finally:
            SECONDS[name] += time.monotonic() - start

    test.__name__ = f"test_fuzz_{name}"
    test.__qualname__ = test.__name__
    test.__doc__ = f"Fuzz target {name!r}: {check.__doc__ or ''}".strip()
    if _budget() is not None or settings.get_current_profile_name() != "ci":
        test = pytest.mark.timeout(0)(test)  # long runs: bounded by their own budget
    return test
