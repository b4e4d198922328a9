"""Tracebacks are never lost: ``labbook --debug`` / ``LABBOOK_DEBUG=1`` show the traceback
of an error labbook went on after; without them it is one line; strict mode re-raises.

The CLI tests break the environment for real: a ``google_crc32c`` on ``PYTHONPATH``
whose import raises (a broken install of a dependency), so that the TensorBoard
reader fails inside ``labbook import`` while a generic run beside it is recorded.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import pytest

from labbook.model import RunFacts
from labbook.recognisers import DirInfo, Recogniser
from labbook.sources.discover import discover
from labbook.warn import STRICT_ENV, strict, warn_exception
from tests.conftest import run_cli

BROKEN = "this google_crc32c install is broken"


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    """A TensorBoard run (written by tensorboardX) and a generic run."""
    from tensorboardX import SummaryWriter

    root = tmp_path / "runs"
    w = SummaryWriter(str(root / "tb"))
    for step in range(3):
        w.add_scalar("loss", 1.0 / (step + 1), step)
    w.close()
    generic = root / "generic"
    generic.mkdir()
    (generic / "config.json").write_text('{"lr": 0.1, "seed": 1}\n')
    (generic / "metrics.jsonl").write_text('{"step": 1, "loss": 0.5}\n')
    return root


@pytest.fixture
def broken_env(tmp_path: Path) -> dict[str, str]:
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "google_crc32c.py").write_text(f"raise RuntimeError({BROKEN!r})\n")
    return {"PYTHONPATH": str(shadow)}


def _warning_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("labbook: warning:")]


# The environment is broken on purpose: the import must warn and go on (as for a
# user), not re-raise, so these run without strict mode.
@pytest.mark.lenient
def test_without_debug_one_line(runs: Path, db_path: Path, broken_env: dict[str, str]) -> None:
    r = run_cli("import", str(runs), db=db_path, env=broken_env)
    assert r.returncode == 0, r.stderr
    assert "imported 1 run" in r.stdout
    (line,) = _warning_lines(r.stderr)
    assert line == (
        f"labbook: warning: {runs / 'tb'}: cannot read tensorboard run (RuntimeError: {BROKEN})"
    )
    assert "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [line]


@pytest.mark.lenient  # the environment is broken on purpose (see above)
@pytest.mark.parametrize("how", ["--debug", "LABBOOK_DEBUG=1"])
def test_debug_shows_the_traceback(
    runs: Path, db_path: Path, broken_env: dict[str, str], how: str
) -> None:
    if how == "--debug":
        r = run_cli("--debug", "import", str(runs), db=db_path, env=broken_env)
    else:
        r = run_cli("import", str(runs), db=db_path, env={**broken_env, "LABBOOK_DEBUG": "1"})
    assert r.returncode == 0, r.stderr
    assert "imported 1 run" in r.stdout  # the rest is recorded, as without --debug
    assert len(_warning_lines(r.stderr)) == 1
    lines = r.stderr.splitlines()
    debug = f"labbook: debug: {runs / 'tb'}: cannot read tensorboard run (RuntimeError: {BROKEN})"
    at = lines.index(debug)
    assert lines[at + 1] == "Traceback (most recent call last):"
    tail = lines[at + 1 :]
    assert any("labbook/readers/tfevents.py" in ln for ln in tail)  # where it failed
    assert any("google_crc32c.py" in ln for ln in tail)
    assert f"RuntimeError: {BROKEN}" in tail


def test_strict_mode_reaches_the_cli_child(
    runs: Path, db_path: Path, broken_env: dict[str, str]
) -> None:
    """The suite's strict mode (tests/conftest.py) is inherited by CLI children: the
    exception is not turned into a warning but ends the command with its traceback."""
    r = run_cli("import", str(runs), db=db_path, env=broken_env)
    assert r.returncode != 0
    assert "Traceback (most recent call last):" in r.stderr
    assert r.stderr.rstrip().endswith(f"RuntimeError: {BROKEN}")
    assert not _warning_lines(r.stderr)


def test_debug_changes_no_output(runs: Path, tmp_path: Path) -> None:
    """--debug adds debug lines on stderr; stdout and the warnings stay as they were."""
    plain = run_cli("import", str(runs / "generic"), db=tmp_path / "a.db")
    debug = run_cli("--debug", "import", str(runs / "generic"), db=tmp_path / "b.db")
    assert plain.returncode == debug.returncode == 0, debug.stderr
    assert plain.stdout == debug.stdout == "imported 1 run (1 new, 0 updated)\n"
    assert plain.stderr == ""
    assert not _warning_lines(debug.stderr)


# -- strict mode, in process ------------------------------------------------------------


class BuggyRecogniser(Recogniser):
    """A recogniser with a bug in ``match``: what strict mode is for."""

    framework = "buggy"

    def match(self, d: DirInfo) -> bool:
        return {"a": 1}["b"] == 1  # KeyError

    def read(self, d: DirInfo) -> Iterable[RunFacts]:
        return []


def test_strict_mode_reraises_a_recogniser_bug(tmp_path: Path) -> None:
    assert strict()  # set by tests/conftest.py for every test not marked lenient
    with pytest.raises(KeyError, match="'b'"):
        discover([tmp_path], recognisers=[BuggyRecogniser()])


@pytest.mark.lenient  # the recogniser raises on purpose: as for a user, one warning
def test_lenient_a_recogniser_bug_is_one_warning_and_a_debug_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert not strict()
    with caplog.at_level(logging.DEBUG, logger="labbook"):
        assert discover([tmp_path], recognisers=[BuggyRecogniser()]) == []
    warning, debug = caplog.records
    assert warning.levelno == logging.WARNING and warning.exc_info is None
    assert warning.getMessage() == f"{tmp_path}: buggy: cannot check (KeyError: 'b')"
    assert debug.levelno == logging.DEBUG
    assert debug.exc_info is not None and isinstance(debug.exc_info[1], KeyError)


def test_strict_mode_lets_environment_errors_through(caplog: pytest.LogCaptureFixture) -> None:
    """A file-system or database error is the machine's, not a bug: a warning even in
    strict mode; so is a class the caller names as expected."""
    import sqlite3

    assert strict()
    with caplog.at_level(logging.WARNING, logger="labbook"):
        warn_exception("/x", "cannot read", PermissionError(13, "Permission denied"))
        warn_exception(None, "cannot write", sqlite3.OperationalError("database is locked"))
        warn_exception(None, "cannot parse", ValueError("odd"), expected=(ValueError,))
        with pytest.raises(ValueError):
            warn_exception(None, "cannot parse", ValueError("odd"))
    assert [r.getMessage() for r in caplog.records] == [
        "/x: cannot read (PermissionError: [Errno 13] Permission denied)",
        "cannot write (OperationalError: database is locked)",
        "cannot parse (ValueError: odd)",
    ]


@pytest.mark.parametrize("value", ["", "0"])
def test_strict_mode_is_off_unless_set(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    """``labbook run`` and the daemon never stop for it: only the variable turns it on."""
    monkeypatch.delenv(STRICT_ENV)
    assert not strict()
    monkeypatch.setenv(STRICT_ENV, value)
    assert not strict()
    warn_exception(None, "went on", RuntimeError("a bug"))  # does not raise
