"""capture_git on real repositories made with the git CLI in tmp_path."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from labbook.capture import git as capgit
from labbook.capture.git import capture_git, find_repo_root, redact_remote

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs the git CLI")

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def git_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Isolate git from the machine's config: no system config, an empty HOME."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.delenv("GIT_CONFIG_GLOBAL", raising=False)
    for var in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_CEILING_DIRECTORIES"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Test")
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "test@example.invalid")
    monkeypatch.setenv("GIT_COMMITTER_NAME", "Test")
    monkeypatch.setenv("GIT_COMMITTER_EMAIL", "test@example.invalid")


def git(cwd: Path, *args: str) -> str:
    proc = subprocess.run(
        ["git", "-c", "init.defaultBranch=main", "-c", "commit.gpgsign=false", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    return proc.stdout.strip()


def make_repo(path: Path, files: dict[str, str | bytes] | None = None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q")
    for name, content in (files or {"train.py": "print('hello')\n"}).items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "initial")
    return path


def apply_to_clone(repo: Path, diff: str, dest: Path) -> Path:
    """Clone ``repo`` at HEAD into ``dest`` and apply a captured diff there."""
    git(repo.parent, "clone", "-q", str(repo), str(dest))
    subprocess.run(
        ["git", "apply", "--binary", "-"],
        cwd=dest,
        input=diff.encode(),
        check=True,
        capture_output=True,
    )
    return dest


def test_clean_repo(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    repo = make_repo(tmp_path / "repo")
    head = git(repo, "rev-parse", "HEAD")
    state = capture_git(repo / "runs" / "exp1")
    assert state is not None
    assert state.root == str(repo)
    assert state.commit == head and len(head) == 40
    assert state.branch == "main"
    assert state.dirty is False
    assert state.diff == ""
    assert state.untracked == [] and state.untracked_contents == {}
    assert state.detached is False and state.shallow is False
    assert state.remote is None
    assert not caplog.records


def test_staged_and_unstaged_edits_both_in_diff(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"model.py": "a = 1\nb = 2\n", "data.py": "x = 1\n"})
    (repo / "model.py").write_text("a = 1\nb = 2\nstaged = True\n")
    git(repo, "add", "model.py")
    (repo / "data.py").write_text("x = 2  # unstaged\n")
    state = capture_git(repo)
    assert state is not None
    assert state.dirty is True
    assert "+staged = True" in state.diff
    assert "+x = 2  # unstaged" in state.diff
    assert state.diff_truncated is False
    clone = apply_to_clone(repo, state.diff, tmp_path / "clone")
    assert (clone / "model.py").read_text() == (repo / "model.py").read_text()
    assert (clone / "data.py").read_text() == (repo / "data.py").read_text()


def test_binary_change_diff_applies(tmp_path: Path) -> None:
    old = bytes(range(256)) * 40
    repo = make_repo(tmp_path / "repo", {"weights.bin": old})
    new = bytes(reversed(range(256))) * 40 + b"\0\1\2"
    (repo / "weights.bin").write_bytes(new)
    state = capture_git(repo)
    assert state is not None and state.dirty
    assert "GIT binary patch" in state.diff
    clone = apply_to_clone(repo, state.diff, tmp_path / "clone")
    assert (clone / "weights.bin").read_bytes() == new


def test_untracked_files_with_contents(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    (repo / "notes.txt").write_text("lr sweep idea\n")
    (repo / "sub").mkdir()
    (repo / "sub" / "my file ü.py").write_text("print('ü')\n")
    (repo / "blob.bin").write_bytes(b"\x00\x01binary")
    (repo / "big.txt").write_text("x" * (capgit.UNTRACKED_FILE_MAX + 10))
    state = capture_git(repo)
    assert state is not None
    assert state.dirty is False, "untracked files alone do not make the tree dirty"
    assert set(state.untracked) == {"notes.txt", "sub/my file ü.py", "blob.bin", "big.txt"}
    assert state.untracked_contents == {
        "notes.txt": "lr sweep idea\n",
        "sub/my file ü.py": "print('ü')\n",
    }
    assert state.untracked_truncated is False


def test_untracked_total_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(capgit, "UNTRACKED_TOTAL_MAX", 25)
    repo = make_repo(tmp_path / "repo")
    for name in ("a.txt", "b.txt", "c.txt"):
        (repo / name).write_text("0123456789\n")
    state = capture_git(repo)
    assert state is not None
    assert len(state.untracked) == 3
    assert sum(len(v) for v in state.untracked_contents.values()) <= 25
    assert len(state.untracked_contents) == 2


def test_thousands_of_untracked_files_fast_and_truncated(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    many = repo / "outputs"
    many.mkdir()
    for i in range(3000):
        (many / f"f{i:05d}.txt").write_text("x\n")
    start = time.perf_counter()
    state = capture_git(repo)
    elapsed = time.perf_counter() - start
    assert state is not None
    assert len(state.untracked) == capgit.UNTRACKED_LIST_MAX
    assert state.untracked_truncated is True
    assert state.untracked[0] == "outputs/f00000.txt"
    assert elapsed < 5.0, elapsed


def test_detached_head(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    first = git(repo, "rev-parse", "HEAD")
    (repo / "train.py").write_text("print('v2')\n")
    git(repo, "commit", "-q", "-am", "v2")
    git(repo, "checkout", "-q", "--detach", first)
    state = capture_git(repo)
    assert state is not None
    assert state.detached is True
    assert state.branch is None
    assert state.commit == first
    assert state.dirty is False


def test_shallow_clone(tmp_path: Path) -> None:
    src = make_repo(tmp_path / "src")
    (src / "train.py").write_text("print('v2')\n")
    git(src, "commit", "-q", "-am", "v2")
    dst = tmp_path / "shallow"
    git(tmp_path, "clone", "-q", "--depth", "1", f"file://{src}", str(dst))
    state = capture_git(dst / "runs")
    assert state is not None
    assert state.shallow is True
    assert state.commit == git(src, "rev-parse", "HEAD")
    assert state.remote == f"file://{src}"
    assert capture_git(src).shallow is False  # type: ignore[union-attr]


def test_no_commits_yet(tmp_path: Path) -> None:
    repo = tmp_path / "fresh"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "train.py").write_text("print('first')\n")
    git(repo, "add", "train.py")
    (repo / "later.txt").write_text("not added\n")
    state = capture_git(repo)
    assert state is not None
    assert state.commit is None
    assert state.branch == "main"
    assert state.detached is False
    assert state.dirty is True
    assert "+print('first')" in state.diff
    assert "new file mode" in state.diff
    assert state.untracked == ["later.txt"]


def test_broken_head_warns_and_returns_none(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    repo = make_repo(tmp_path / "repo")
    (repo / ".git" / "HEAD").write_text("garbage\n")
    with caplog.at_level(logging.WARNING, logger="labbook"):
        assert capture_git(repo / "runs" / "a") is None
    assert len(caplog.records) == 1
    assert str(repo) in caplog.records[0].getMessage()


def test_broken_repo_inside_a_good_one_is_not_mistaken_for_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    outer = make_repo(tmp_path / "outer")
    inner = outer / "inner"
    inner.mkdir()
    (inner / ".git").mkdir()
    (inner / ".git" / "HEAD").write_text("garbage\n")
    with caplog.at_level(logging.WARNING, logger="labbook"):
        assert capture_git(inner) is None
    assert str(inner) in caplog.text


def test_dotgit_file_pointing_nowhere(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    repo = tmp_path / "wt"
    repo.mkdir()
    (repo / ".git").write_text(f"gitdir: {tmp_path / 'missing' / '.git'}\n")
    with caplog.at_level(logging.WARNING, logger="labbook"):
        assert capture_git(repo) is None
    assert len(caplog.records) == 1
    assert str(repo) in caplog.records[0].getMessage()


def test_linked_worktree(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    wt = tmp_path / "wt"
    git(repo, "worktree", "add", "-q", "-b", "feature", str(wt))
    (wt / "train.py").write_text("print('feature')\n")
    state = capture_git(wt)
    assert state is not None
    assert state.root == str(wt)
    assert state.branch == "feature"
    assert state.dirty is True
    assert "+print('feature')" in state.diff


def test_not_in_a_repo(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    if find_repo_root(tmp_path) is not None:
        pytest.skip("tmp_path is inside a git work tree on this machine")
    run_dir = tmp_path / "runs" / "exp"
    run_dir.mkdir(parents=True)
    with caplog.at_level(logging.WARNING, logger="labbook"):
        assert capture_git(run_dir) is None
    assert find_repo_root(run_dir) is None
    assert not caplog.records


def test_ignored_and_deleted_run_dir_still_in_enclosing_repo(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {".gitignore": "runs/\n", "train.py": "x\n"})
    run_dir = repo / "runs" / "2024-01-01" / "exp"
    run_dir.mkdir(parents=True)
    (run_dir / "events.out").write_text("data")
    assert find_repo_root(run_dir) == str(repo)
    state = capture_git(run_dir)
    assert state is not None and state.root == str(repo)
    assert state.untracked == []  # ignored files are not untracked
    assert find_repo_root(repo / "runs" / "gone" / "deeper") == str(repo)
    assert capture_git(repo / "runs" / "gone") is not None


def test_remote_credentials_removed(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    git(repo, "remote", "add", "upstream", "git@github.com:other/r.git")
    git(
        repo,
        "remote",
        "add",
        "origin",
        "https://user:ghp_abcdefghijklmnopqrstuvwxyz0123@github.com/o/r.git",
    )
    state = capture_git(repo)
    assert state is not None
    assert state.remote == "https://github.com/o/r.git"
    assert "ghp_" not in json.dumps(vars(state))


def test_first_remote_when_no_origin(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    git(repo, "remote", "add", "upstream", "git@github.com:other/r.git")
    state = capture_git(repo)
    assert state is not None and state.remote == "git@github.com:other/r.git"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://user:token@host/x.git", "https://host/x.git"),
        ("https://ghp_abcdefghijklmnopqrstuvwxyz0123@github.com/o/r", "https://github.com/o/r"),
        ("https://github.com/o/r.git", "https://github.com/o/r.git"),
        ("ssh://git@github.com/o/r.git", "ssh://git@github.com/o/r.git"),
        ("ssh://git:pw@host:2222/r.git", "ssh://git@host:2222/r.git"),
        ("git@github.com:o/r.git", "git@github.com:o/r.git"),
        ("/srv/git/r.git", "/srv/git/r.git"),
        ("https://host/r.git?private_token=abc&ref=main", "https://host/r.git?ref=main"),
        ("https://host/r.git?access_token=abc", "https://host/r.git"),
    ],
)
def test_redact_remote(url: str, expected: str) -> None:
    assert redact_remote(url) == expected


def test_diff_truncated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = make_repo(tmp_path / "repo", {"big.txt": "".join(f"line {i}\n" for i in range(5000))})
    (repo / "big.txt").write_text("".join(f"changed {i}\n" for i in range(5000)))
    monkeypatch.setattr(capgit, "DIFF_MAX", 4096)
    state = capture_git(repo)
    assert state is not None
    assert state.diff_truncated is True
    assert 0 < len(state.diff.encode()) <= 4096
    assert state.diff.endswith("\n")
    assert state.diff.startswith("diff --git a/big.txt b/big.txt")


def test_no_repo_programs_are_run(tmp_path: Path) -> None:
    """Filters, fsmonitor, external diff, textconv and hooks from repo config stay idle."""
    repo = make_repo(
        tmp_path / "repo", {"data.txt": "one\n", ".gitattributes": "*.txt filter=evil diff=evil\n"}
    )
    marker = tmp_path / "ran"
    script = tmp_path / "evil.sh"
    script.write_text(f"#!/bin/sh\necho \"$0 $*\" >> '{marker}'\ncat\n")
    script.chmod(0o755)
    for key, value in [
        ("filter.evil.clean", str(script)),
        ("filter.evil.smudge", str(script)),
        ("filter.evil.process", str(script)),
        ("core.fsmonitor", str(script)),
        ("diff.external", str(script)),
        ("diff.evil.textconv", str(script)),
        ("diff.evil.command", str(script)),
        ("core.pager", str(script)),
    ]:
        git(repo, "config", key, value)
    hook = repo / ".git" / "hooks" / "post-index-change"
    hook.write_text(f"#!/bin/sh\necho hook >> '{marker}'\n")
    hook.chmod(0o755)
    (repo / "data.txt").write_text("two\n")
    state = capture_git(repo)
    assert state is not None and state.dirty
    assert "+two" in state.diff
    assert not marker.exists(), marker.read_text()


def test_worktree_config_filters_are_neutralised(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"notes.md": "one\n", ".gitattributes": "*.md filter=wt\n"})
    marker = tmp_path / "ran"
    script = tmp_path / "evil.sh"
    script.write_text(f"#!/bin/sh\necho ran >> '{marker}'\ncat\n")
    script.chmod(0o755)
    git(repo, "config", "extensions.worktreeConfig", "true")
    git(repo, "config", "--worktree", "filter.wt.clean", str(script))
    (repo / "notes.md").write_text("two\n")
    state = capture_git(repo)
    assert state is not None and "+two" in state.diff
    assert not marker.exists()


def test_repository_owned_by_someone_else(tmp_path: Path) -> None:
    """A colleague's repository is read (explicit GIT_DIR), with the same precautions."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("needs root to hand the repository to another user")
    repo = make_repo(tmp_path / "repo")
    (repo / "train.py").write_text("print('edited')\n")
    subprocess.run(["chown", "-R", "65534:65534", str(repo)], check=True)
    state = capture_git(repo)
    assert state is not None and state.dirty and "+print('edited')" in state.diff


def _run_without_git(
    repo: Path, tmp_path: Path, refresh_mode: str | None
) -> subprocess.CompletedProcess[str]:
    empty_bin = tmp_path / "empty-bin"
    empty_bin.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_PYTHON")}
    env["PATH"] = str(empty_bin)
    env["PYTHONPATH"] = str(PROJECT_ROOT)
    if refresh_mode is not None:
        env["GIT_PYTHON_REFRESH"] = refresh_mode
    code = (
        "import logging, sys\n"
        "logging.basicConfig(stream=sys.stderr, format='WARN %(message)s')\n"
        "from labbook.capture.git import capture_git\n"
        f"print(capture_git({str(repo)!r}), capture_git({str(repo)!r}))\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("refresh_mode", [None, "quiet"])
def test_no_git_executable(tmp_path: Path, refresh_mode: str | None) -> None:
    repo = make_repo(tmp_path / "repo")
    proc = _run_without_git(repo, tmp_path, refresh_mode)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "None None"
    warnings = [ln for ln in proc.stderr.splitlines() if ln.startswith("WARN ")]
    assert len(warnings) == 1, proc.stderr
    assert "git is not available" in warnings[0]
    assert "Traceback" not in proc.stderr
