"""Shared fixtures: an isolated HOME/XDG for every test, a fresh database, run helpers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# The real PostgreSQL of the shared-notebook tests (a throwaway cluster; they skip
# only where PostgreSQL cannot be found), for every test module that asks for it.
from tests.pg import pg_server, pg_url  # noqa: F401

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parent.parent


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "lenient: the test injects a failure into code that guards against it, so "
        "LABBOOK_STRICT is off (the handler must warn, not re-raise); say why at the marker",
    )


@pytest.fixture(autouse=True)
def _strict(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Strict mode (labbook.warn.strict): an exception that a handler would only warn
    about is re-raised, so that a bug in a reader or recogniser fails its test instead
    of becoming a warning. Child processes (the CLI through run_cli) inherit it.
    Tests marked ``lenient`` run as users do."""
    monkeypatch.delenv("LABBOOK_DEBUG", raising=False)
    if request.node.get_closest_marker("lenient") is None:
        monkeypatch.setenv("LABBOOK_STRICT", "1")
    else:
        monkeypatch.delenv("LABBOOK_STRICT", raising=False)


@pytest.fixture(autouse=True)
def _isolated_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No test reads or writes the real ~/.local/share/labbook or git config."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local" / "share"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.delenv("LABBOOK_DB", raising=False)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Test")
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "test@example.invalid")
    monkeypatch.setenv("GIT_COMMITTER_NAME", "Test")
    monkeypatch.setenv("GIT_COMMITTER_EMAIL", "test@example.invalid")


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "labbook.db"


@pytest.fixture
def store(db_path: Path):
    from labbook.store import Store

    s = Store.open(db_path)
    yield s
    s.close()


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A real git repository with one commit."""
    root = tmp_path / "project"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "train.py").write_text("print('train')\n")
    git(root, "add", "train.py")
    git(root, "commit", "-q", "-m", "initial")
    return root


def run_cli(
    *args: str,
    db: Path | None = None,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the real `labbook` command in a child process."""
    full_env = {**os.environ, **(env or {})}
    cmd = [sys.executable, "-m", "labbook"]
    if db is not None:
        cmd += ["--db", str(db)]
    return subprocess.run(
        cmd + list(args),
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        input=input,
        timeout=120,
    )
