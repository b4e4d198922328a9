"""Hypothesis profiles for the fuzz harness, its seed, and the executions report.

* ``ci`` (the default): a bounded number of examples per target, about a minute
  for the whole harness on a 2-core machine, a per-example deadline (a reader
  that takes seconds on a small file is a bug too), no example database;
* ``long``: many more examples and no deadline, with an example database in the
  temp dir so failures found are tried first next time.

Pick one with ``--hypothesis-profile=long`` (when running tests/fuzz) or
``LABBOOK_FUZZ_PROFILE=long``; ``LABBOOK_FUZZ_SECONDS=N`` runs the harness for
about N seconds in all instead (see tests/fuzz/README.md). The seed is printed
in the report header and can be set with ``LABBOOK_FUZZ_SEED``.
"""

from __future__ import annotations

import os
import random
import tempfile
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.configuration import set_hypothesis_home_dir
from hypothesis.database import DirectoryBasedExampleDatabase

from tests.fuzz import harness

# Hypothesis keeps caches in ./.hypothesis by default: keep the repo clean.
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "labbook-fuzz-hypothesis")

_SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]

settings.register_profile(
    "ci",
    max_examples=130,
    deadline=timedelta(seconds=3),
    database=None,
    derandomize=False,
    print_blob=True,
    suppress_health_check=_SLOW_OK,
)
settings.register_profile(
    "long",
    max_examples=5000,  # about 40x ci
    deadline=None,
    database=DirectoryBasedExampleDatabase(
        str(Path(tempfile.gettempdir()) / "labbook-fuzz-hypothesis-db")
    ),
    derandomize=False,
    print_blob=True,
    suppress_health_check=_SLOW_OK,
)


#: The seed CI uses (``CI`` set, ``LABBOOK_FUZZ_SEED`` not): the same ~6,400 inputs
#: every time. Runs elsewhere draw a new seed, so they keep exploring; whatever they
#: find is kept in tests/fixtures/fuzz and replayed by CI too.
CI_SEED = 20261203


def pytest_configure(config: pytest.Config) -> None:
    if not config.getoption("hypothesis_profile", None):
        settings.load_profile(os.environ.get("LABBOOK_FUZZ_PROFILE", "ci"))
    seed = os.environ.get("LABBOOK_FUZZ_SEED")
    if not seed and os.environ.get("CI"):
        seed = str(CI_SEED)  # CI replays the same inputs: a red build is a change's doing
    harness.SEED = int(seed) if seed else random.SystemRandom().randrange(2**32)


def pytest_report_header(config: pytest.Config) -> str:
    return (
        f"labbook fuzz: profile {settings.get_current_profile_name()}, "
        f"LABBOOK_FUZZ_SEED={harness.SEED}"
    )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not harness.COUNTS:
        return
    tr = terminalreporter
    tr.section("labbook fuzz: executions per target")
    for name, count in sorted(harness.COUNTS.items()):
        tr.write_line(f"{name:24} {count:7d}  ({harness.SECONDS[name]:.1f} s)")
    tr.write_line(f"{'total':24} {sum(harness.COUNTS.values()):7d}  (seed {harness.SEED})")
