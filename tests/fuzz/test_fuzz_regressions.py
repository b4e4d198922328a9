"""Every input the fuzz harness ever failed on, replayed through its check (no hypothesis).

Kept under tests/fixtures/fuzz/<target>/: ``<name>.bin`` files (the bytes of the
one file the target reads; tail targets try a spread of split points), and for
the recogniser targets ``<name>/`` directories (a run directory as written).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fuzz import checks

CASES = sorted(
    p
    for d in checks.FIXTURE_ROOT.iterdir()
    if d.is_dir()
    for p in d.iterdir()
    if p.suffix == ".bin" or p.is_dir()
)


def _check(target: str):
    if target.startswith("recogniser_"):
        return lambda p: checks.run_dir(checks.tree_from_dir(p))
    check = checks.CHECKS[target]
    return lambda p: check(p.read_bytes())


def test_every_target_has_a_home():
    """Fixture folders are named after fuzz targets (a typo would skip its cases)."""
    from tests.fuzz import harness, test_fuzz_readers  # noqa: F401 - registers the targets

    assert {d.name for d in checks.FIXTURE_ROOT.iterdir() if d.is_dir()} <= set(harness.TARGETS)


@pytest.mark.parametrize("case", CASES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_kept_crash_input(case: Path) -> None:
    _check(case.parent.name)(case)
