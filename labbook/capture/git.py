"""The state of the git work tree that encloses a run: commit, branch, diff, untracked.

A run is reproducible only if the exact code is known, and training code is often
run with uncommitted edits.  :func:`capture_git` therefore records the commit *and*
``git diff <commit> --binary`` (staged and unstaged changes together, appliable with
``git apply``) and the names and small text contents of untracked files.

It costs three git subprocesses (``config``, ``status``, ``diff``), run through
GitPython with these precautions, because the repository may not be trusted:

* ``-c core.fsmonitor=false``, ``--no-ext-diff``, ``--no-textconv`` and, for
  clean/smudge filters defined in the repository's own config, empty commands:
  no program named by repository config is run (filters from the user's global
  or system config, e.g. git-lfs, are the user's own and left alone);
* ``--no-optional-locks``: nothing is written to the repository, so no
  ``post-index-change`` hook can run either;
* ``GIT_DIR``/``GIT_WORK_TREE`` are set explicitly, so a broken ``.git`` is
  reported rather than git walking further up to an enclosing repository, and
  variables inherited from a git hook (``GIT_INDEX_FILE`` …) cannot redirect it;
* ``GIT_NO_LAZY_FETCH=1``: a partial clone never goes to the network;
* the diff is read up to :data:`DIFF_MAX` and the process then stopped, so a huge
  binary change cannot fill memory.

Because ``GIT_DIR`` is explicit, git's ``safe.directory`` ownership check (which
applies to discovered repositories only) does not refuse a repository owned by a
colleague, e.g. under a shared experiments directory; the precautions above are
what keep its configuration from running anything.  Three calls in all, four when
the repository has per-worktree config.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

from labbook.model import GitState
from labbook.warn import warn, warn_exception, warn_on_import

#: Untracked file contents are kept only for text files smaller than this (bytes).
UNTRACKED_FILE_MAX = 256 * 1024
#: Total bytes of untracked file contents kept per run.
UNTRACKED_TOTAL_MAX = 2 * 1024 * 1024
#: At most this many untracked names are kept (``untracked_truncated=True`` beyond).
UNTRACKED_LIST_MAX = 1000
#: Diffs bigger than this (bytes) are cut at a line end (``diff_truncated=True``).
DIFF_MAX = 16 * 1024 * 1024

#: The empty tree, which a repository without commits is diffed against.
_EMPTY_TREE = {
    "sha1": "4b825dc642cb6eb9a060e54bf8d69288fbee4904",
    "sha256": "6ef19b41225c5369f1c104d45d8d85efa9b057b53b14b4b9b939dd74decc5321",
}
_OID = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
_CONFIG_KEYS = r"^(remote\..*\.url|filter\..*\.(clean|smudge|process)|extensions\.objectformat)$"
#: Inherited variables that would point git elsewhere (set by git hooks, for one).
_REDIRECTING_VARS = ("GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_COMMON_DIR")

_unavailable_warned = False


class _GitUnavailable(Exception):
    """No usable git executable."""


class _RepoError(Exception):
    """git refused the repository (broken ``.git``, dubious ownership, …)."""


def _git_errors() -> tuple[type[BaseException], ...]:
    """GitPython's errors (a git command that failed on this repository), when it is loaded:
    the repository's problem, not labbook's."""
    import sys

    module = sys.modules.get("git.exc")
    cls = getattr(module, "GitError", None)
    return (cls,) if isinstance(cls, type) else ()


def find_repo_root(path: str | os.PathLike[str]) -> str | None:
    """The work tree that encloses ``path``: the nearest ancestor holding ``.git``.

    ``path`` is typically a run directory and need not exist any more (a deleted
    run under a still existing repository still has its repository).  A ``.git``
    directory or ``.git`` file (worktree, submodule) both count; whether it is
    valid is for :func:`capture_git` to find out.  A run directory that the
    repository ignores is still inside it.  No subprocess is run.
    """
    try:
        current = os.path.abspath(os.fspath(path))
    except (TypeError, ValueError):
        return None
    while True:
        dotgit = os.path.join(current, ".git")
        try:
            if os.path.isdir(dotgit) or os.path.isfile(dotgit):
                return current
        except (OSError, ValueError):
            pass
        parent = os.path.dirname(current)
        if parent == current:
            return None
        current = parent


def redact_remote(url: str) -> str:
    """A remote URL without credentials.

    ``https://user:token@host/x.git`` -> ``https://host/x.git`` (any user info is
    dropped for non-ssh schemes, since ``https://TOKEN@host`` is common);
    ``ssh://git@host/x`` and scp-like ``git@host:o/r.git`` are kept, minus any
    password; query parameters that look secret (``?access_token=…``) are removed.
    """
    if not isinstance(url, str):
        return ""
    m = re.match(
        r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*)://(?P<netloc>[^/?#]*)(?P<rest>.*)$", url, re.S
    )
    if m is None:
        return url  # scp-like or a local path: no credentials possible but a user name
    scheme, netloc, rest = m.group("scheme"), m.group("netloc"), m.group("rest")
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        if "ssh" in scheme.lower():
            user = userinfo.split(":", 1)[0]
            netloc = f"{user}@{host}" if user else host
        else:
            netloc = host
    fragment = ""
    if "#" in rest:
        rest, fragment = rest.split("#", 1)
        fragment = "#" + fragment
    if "?" in rest:
        from labbook.capture.redact import SECRET_PATTERN, TOKEN_VALUE_PATTERN

        path, query = rest.split("?", 1)
        pairs = parse_qsl(query, keep_blank_values=True)
        kept = [
            (k, v)
            for k, v in pairs
            if not SECRET_PATTERN.search(k)
            and k.lower() not in ("sig", "signature", "pwd")
            and not TOKEN_VALUE_PATTERN.search(v)
        ]
        rest = path + ("?" + urlencode(kept) if kept else "")
    return f"{scheme}://{netloc}{rest}{fragment}"


@dataclass
class _Layout:
    gitdir: str
    commondir: str
    env: dict[str, str] = field(default_factory=dict)


def _layout(root: str) -> _Layout:
    """Where the repository's files are, found without git (for ``shallow``, env)."""
    dotgit = os.path.join(root, ".git")
    gitdir = dotgit
    if os.path.isfile(dotgit):
        try:
            with open(dotgit, encoding="utf-8", errors="replace") as fh:
                first = fh.readline().strip()
        except OSError:
            first = ""
        if first.startswith("gitdir:"):
            target = first[len("gitdir:") :].strip()
            gitdir = os.path.normpath(os.path.join(root, target))
    commondir = gitdir
    try:
        with open(os.path.join(gitdir, "commondir"), encoding="utf-8", errors="replace") as fh:
            commondir = os.path.normpath(os.path.join(gitdir, fh.readline().strip()))
    except OSError:
        pass
    env = {
        "GIT_DIR": dotgit,
        "GIT_WORK_TREE": root,
        "GIT_OPTIONAL_LOCKS": "0",
        "GIT_TERMINAL_PROMPT": "0",
        # never fetch missing objects of a partial clone (git >= 2.44; ignored before)
        "GIT_NO_LAZY_FETCH": "1",
    }
    for var in _REDIRECTING_VARS:
        if var in os.environ:
            env[var] = {
                "GIT_INDEX_FILE": os.path.join(gitdir, "index"),
                "GIT_OBJECT_DIRECTORY": os.path.join(commondir, "objects"),
                "GIT_COMMON_DIR": commondir,
            }[var]
    return _Layout(gitdir=gitdir, commondir=commondir, env=env)


def main_worktree(root: str) -> str:
    """The main work tree of the repository ``root`` belongs to (``root`` itself unless it
    is a linked ``git worktree``), read from its ``.git`` file without running git; so
    that a run in a worktree (``labbook reproduce`` makes one) counts as the same
    repository as its origin."""
    try:
        common = _layout(root).commondir
    except (OSError, ValueError):
        return root
    if os.path.basename(common) == ".git" and os.path.normpath(common) != os.path.normpath(
        os.path.join(root, ".git")
    ):
        return os.path.dirname(common)
    return root


def _first_line(text: Any) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    lines = [ln.strip() for ln in str(text or "").splitlines() if ln.strip()]
    return lines[0] if lines else "git failed"


class _Git:
    """A thin wrapper over GitPython's command runner with labbook's safety flags."""

    def __init__(self, root: str, layout: _Layout) -> None:
        try:
            import git  # lazy: GitPython imports a lot, and fails without a git executable
        except Exception as exc:  # ImportError when git is missing, or a broken install
            raise _GitUnavailable(_first_line(exc)) from exc
        self._git_module = git
        self._runner = git.Git(root)
        self._exe = str(getattr(git.Git, "GIT_PYTHON_GIT_EXECUTABLE", None) or "git")
        self._env = layout.env
        self.config_overrides: list[str] = []

    def _argv(self, args: list[str]) -> list[str]:
        argv = [self._exe, "--no-pager", "--no-optional-locks", "-c", "core.fsmonitor=false"]
        argv += ["-c", "core.safecrlf=false"]
        for item in self.config_overrides:
            argv += ["-c", item]
        return argv + args

    def run(self, args: list[str], ok_codes: tuple[int, ...] = (0,)) -> bytes:
        exc_mod = self._git_module.exc
        try:
            status, out, err = self._runner.execute(
                self._argv(args),
                with_extended_output=True,
                with_exceptions=False,
                stdout_as_string=False,
                strip_newline_in_stdout=False,
                env=self._env,
            )
        except exc_mod.GitCommandNotFound as exc:
            raise _GitUnavailable(_first_line(getattr(exc, "stderr", "") or exc)) from exc
        if status not in ok_codes:
            raise _RepoError(_first_line(err))
        return out if isinstance(out, bytes) else str(out).encode("utf-8", "surrogateescape")

    def run_limited(self, args: list[str], limit: int) -> tuple[bytes, bool]:
        """stdout of a command, at most ``limit`` bytes; (output, truncated)."""
        exc_mod = self._git_module.exc
        try:
            handle = self._runner.execute(self._argv(args), as_process=True, env=self._env)
        except exc_mod.GitCommandNotFound as exc:
            raise _GitUnavailable(_first_line(getattr(exc, "stderr", "") or exc)) from exc
        proc = handle.proc
        if proc is None or proc.stdout is None or proc.stderr is None:
            raise _RepoError("could not start git")
        stdout, stderr = proc.stdout, proc.stderr
        errors: list[bytes] = []
        # Drain stderr on the side so that a chatty git cannot block on a full pipe.
        drain = threading.Thread(target=lambda: errors.append(stderr.read()), daemon=True)
        drain.start()
        chunks: list[bytes] = []
        size = 0
        truncated = False
        at_eof = False
        try:
            while True:
                chunk = stdout.read(min(1 << 20, limit + 1 - size))
                if not chunk:
                    at_eof = True
                    break
                chunks.append(chunk)
                size += len(chunk)
                if size > limit:
                    truncated = True
                    break
        finally:
            if not at_eof:  # cut short (or interrupted): stop git rather than wait on it
                with contextlib.suppress(OSError):
                    proc.kill()
            status = proc.wait()
            drain.join(timeout=5)
            for stream in (stdout, stderr):
                with contextlib.suppress(Exception):
                    stream.close()
        if status != 0 and not truncated:
            raise _RepoError(_first_line(b"".join(errors)))
        out = b"".join(chunks)
        if truncated:
            out = out[:limit]
            cut = out.rfind(b"\n")
            out = out[: cut + 1] if cut >= 0 else out
        return out, truncated


def _decode_path(raw: bytes) -> tuple[str, str]:
    """(name to record, name to open) for a path git printed."""
    fs_name = raw.decode("utf-8", "surrogateescape")
    return raw.decode("utf-8", "replace"), fs_name


def _parse_config(out: bytes) -> tuple[str | None, list[str], str]:
    """(remote URL, repository-local filter keys, object format) from ``config -z``."""
    remotes: list[tuple[str, str]] = []
    filters: list[str] = []
    object_format = "sha1"
    for entry in out.split(b"\0"):
        if not entry:
            continue
        key_b, _, value_b = entry.partition(b"\n")
        key = key_b.decode("utf-8", "replace")
        value = value_b.decode("utf-8", "replace")
        if key.startswith("remote.") and key.endswith(".url"):
            remotes.append((key[len("remote.") : -len(".url")], value))
        elif key.startswith("filter."):
            filters.append(key)
        elif key == "extensions.objectformat":
            object_format = value.strip().lower() or "sha1"
    remote = None
    for name, url in remotes:
        if name == "origin":
            remote = url
            break
    if remote is None and remotes:
        remote = remotes[0][1]
    return remote, filters, object_format


def _parse_status(out: bytes) -> tuple[str | None, str | None, bool, bool, list[bytes], bool]:
    """(commit, branch, detached, dirty, untracked, untracked_truncated) from porcelain v2."""
    commit: str | None = None
    branch: str | None = None
    detached = False
    dirty = False
    untracked: list[bytes] = []
    untracked_truncated = False
    tokens = out.split(b"\0")
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        i += 1
        if not tok:
            continue
        if tok.startswith(b"# branch.oid "):
            oid = tok[len(b"# branch.oid ") :].decode("ascii", "replace").strip()
            commit = oid if _OID.match(oid) else None
        elif tok.startswith(b"# branch.head "):
            head = tok[len(b"# branch.head ") :].decode("utf-8", "replace").strip()
            if head == "(detached)":
                detached = True
            else:
                branch = head
        elif tok[:2] in (b"1 ", b"u "):
            dirty = True
        elif tok[:2] == b"2 ":
            dirty = True
            i += 1  # a rename/copy entry is followed by the original path
        elif tok[:2] == b"? ":
            if len(untracked) < UNTRACKED_LIST_MAX:
                untracked.append(tok[2:])
            else:
                untracked_truncated = True
    return commit, branch, detached, dirty, untracked, untracked_truncated


def _untracked_contents(root: str, names: list[tuple[str, str]]) -> dict[str, str]:
    """Contents of small UTF-8 text files, within :data:`UNTRACKED_TOTAL_MAX` in all.

    Symlinks, special files, files of :data:`UNTRACKED_FILE_MAX` bytes or more,
    and files with NUL bytes or invalid UTF-8 are skipped (their names are kept).
    Files whose names say they hold secrets (:func:`labbook.capture.redact.is_secret_file`:
    ``.env``, ``*.pem``, ``id_rsa``, ``*token*`` …) are never opened: their contents
    are recorded as ``"<redacted>"``, which marks them as skipped.
    """
    from labbook.capture.redact import REDACTED, is_secret_file

    contents: dict[str, str] = {}
    budget = UNTRACKED_TOTAL_MAX
    for shown, fs_name in names:
        if is_secret_file(shown) or is_secret_file(fs_name):
            contents[shown] = REDACTED
            continue
        if budget <= 0:
            continue
        full = os.path.join(root, fs_name)
        try:
            st = os.lstat(full)
        except (OSError, ValueError):
            continue
        if not stat.S_ISREG(st.st_mode) or st.st_size >= UNTRACKED_FILE_MAX or st.st_size > budget:
            continue
        try:
            with open(full, "rb") as fh:
                head = fh.read(8192)
                if b"\0" in head:
                    continue
                data = head + fh.read(UNTRACKED_FILE_MAX - len(head))
        except (OSError, ValueError):
            continue
        if b"\0" in data or len(data) >= UNTRACKED_FILE_MAX or len(data) > budget:
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            continue
        contents[shown] = text
        budget -= len(data)
    return contents


def _capture(root: str) -> GitState:
    layout = _layout(root)
    g = _Git(root, layout)

    # 1. Repository-local config: validates the repository (``--local`` fails outside
    #    one), and gives remotes, filters to neutralise and the object format.
    query = ["--includes", "-z", "--get-regexp", _CONFIG_KEYS]
    try:
        config_out = g.run(["config", "--local", *query], ok_codes=(0, 1))
    except _RepoError:
        # "--local can only be used inside a git repository" says little: ask why.
        g.run(["rev-parse", "--git-dir"])
        raise
    remote, filters, object_format = _parse_config(config_out)
    if os.path.isfile(os.path.join(layout.gitdir, "config.worktree")):
        # per-worktree config (extensions.worktreeConfig) may define filters too
        worktree_out = g.run(["config", "--worktree", *query], ok_codes=(0, 1))
        filters += _parse_config(worktree_out)[1]
    for key in dict.fromkeys(filters):
        g.config_overrides.append(f"{key}=")
    for name in dict.fromkeys(k.rsplit(".", 1)[0] for k in filters):
        g.config_overrides.append(f"{name}.required=false")

    # 2. Status: commit, branch, dirty and untracked names in one call.
    status_out = g.run(
        [
            "status",
            "--porcelain=v2",
            "--branch",
            "-z",
            "--untracked-files=all",
            "--ignore-submodules=dirty",
        ]
    )
    commit, branch, detached, dirty, untracked_raw, untracked_truncated = _parse_status(status_out)

    # 3. The diff of the work tree (staged and unstaged) against the commit.
    base = commit or _EMPTY_TREE.get(object_format, _EMPTY_TREE["sha1"])
    diff_out, diff_truncated = g.run_limited(
        [
            "diff",
            "--binary",
            "--no-ext-diff",
            "--no-textconv",
            "--no-color",
            "--no-relative",
            "--ignore-submodules=dirty",
            "--src-prefix=a/",
            "--dst-prefix=b/",
            base,
            "--",
        ],
        DIFF_MAX,
    )

    names = [_decode_path(raw) for raw in untracked_raw]
    return GitState(
        root=root,
        commit=commit,
        branch=None if detached else branch,
        remote=redact_remote(remote) if remote else None,
        dirty=dirty,
        diff=diff_out.decode("utf-8", "replace"),
        diff_truncated=diff_truncated,
        untracked=[shown for shown, _ in names],
        untracked_contents=_untracked_contents(root, names),
        untracked_truncated=untracked_truncated,
        shallow=os.path.isfile(os.path.join(layout.commondir, "shallow")),
        detached=detached,
    )


def capture_git(path: str | os.PathLike[str]) -> GitState | None:
    """The git state of the work tree enclosing ``path``; None when there is none.

    * not in a repository: None, silently (plenty of runs are not);
    * no usable git executable: None, with one warning per process;
    * a broken repository (garbage ``HEAD``, ``.git`` file pointing nowhere,
      unreadable): None, with a warning naming the repository.

    ``dirty`` is True when the index or the work tree differs from ``HEAD``
    (changes inside submodules' work trees are ignored; a moved submodule commit
    counts).  Untracked files alone do not make a tree dirty: they are listed in
    ``untracked`` (the first :data:`UNTRACKED_LIST_MAX`, in git's order) with
    contents of small text ones in ``untracked_contents``.  In a repository
    without commits, ``commit`` is None and ``diff`` is the index's files against
    the empty tree.  The diff is decoded as UTF-8 with replacement characters, so
    patches of files in other encodings may not apply byte for byte.
    """
    global _unavailable_warned
    try:
        root = find_repo_root(path)
    except Exception as exc:  # it catches what a path can raise: this is a bug
        warn_exception(path, "cannot look for a git repository", exc, quiet=True)
        return None
    if root is None:
        return None
    try:
        state = _capture(root)
    except _GitUnavailable as exc:
        if not _unavailable_warned:
            _unavailable_warned = True
            warn(root, f"git is not available, git state not recorded ({exc})")
        return None
    except _RepoError as exc:
        warn(root, f"not a usable git repository, git state not recorded: {exc}")
        return None
    except Exception as exc:  # never let a git problem stop an import
        warn_exception(root, "git state not recorded", exc, expected=_git_errors())
        return None
    if state.untracked_truncated:
        warn_on_import(
            root,
            f"more than {UNTRACKED_LIST_MAX} untracked files; the first "
            f"{UNTRACKED_LIST_MAX} names were recorded (a .gitignore entry would help)",
        )
    return state


def without_outputs(state: GitState, run_dirs: Iterable[str | os.PathLike[str]]) -> GitState:
    """``state`` without the untracked files that are runs' outputs.

    Run directories inside a repository whose outputs are not git-ignored would
    otherwise show up as "untracked code" — and differ from run to run.
    """
    import dataclasses

    root = os.path.realpath(state.root)
    prefixes = []
    for d in run_dirs:
        rel = os.path.relpath(os.path.realpath(d), root)
        if rel != "." and not rel.startswith(".."):
            prefixes.append(rel.replace(os.sep, "/").rstrip("/") + "/")
    if not prefixes or not state.untracked:
        return state
    keep = tuple(prefixes)

    def is_output(name: str) -> bool:
        return (name.rstrip("/") + "/").startswith(keep)

    return dataclasses.replace(
        state,
        untracked=[n for n in state.untracked if not is_output(n)],
        untracked_contents={k: v for k, v in state.untracked_contents.items() if not is_output(k)},
    )
