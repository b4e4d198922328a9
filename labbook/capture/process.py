"""The process behind a run: who is writing a run directory, and what it ran with.

The daemon sees files appear; to record *how* a run was started it needs the
process that writes them.  :func:`find_writer` looks through the user's own
processes (same real uid as labbook) for one that

* holds a file open inside the run directory (read from ``/proc/PID/fd`` links,
  with the open mode from ``/proc/PID/fdinfo`` so a writer is told from a
  ``tail -f`` or a TensorBoard reading the same files),
* has its working directory inside it (Hydra's old ``chdir``, ``cd run && python``),
* or names it, or one of the ``hint_paths``, in its command line
  (``--output_dir runs/x``).

When several match, the writer is chosen by, in order: not being a shell, pager,
editor or viewer (:data:`NOT_WRITERS`); holding a file open *for writing* in the
run directory; naming it in its argv or working in it; holding a file open for
reading; the deepest working directory.  Among processes that rank equal, the
topmost of a process tree wins (a training script, not its DataLoader workers,
which inherit its open files), then the oldest.

Everything is read once per call (processes, parents, fds), so one call costs a
scan of ``/proc`` (about four reads per process, straight from ``/proc`` rather than
through psutil, which needs twice as many): measured at 0.1-0.5 ms per process on a
busy 2-core machine (``benchmarks/bench_packages.py``), so ~50-200 ms with a few
hundred processes, inside the daemon's one-second capture budget.  Processes that vanish, are
zombies, or are not readable are skipped silently: a process table changes while
it is read, and that is normal.

:class:`ProcInfo` then carries what is recorded: pid, argv (secrets in it
redacted), cwd, executable, start time, user, the environment variables worth
keeping (secrets redacted with :mod:`labbook.capture.env`'s rules) and the packages
of its interpreter, read from its ``site-packages`` metadata by
:func:`packages_of` -- never by running pip.

Containers: pids here are those of labbook's own pid namespace, which is also
where the writer runs when both are in the same container (the usual case).
NVML's host pids are dealt with in :mod:`labbook.capture.gpu`.
"""

from __future__ import annotations

import contextlib
import os
import platform
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from labbook.capture import env as capenv
from labbook.capture.redact import redact_argv
from labbook.model import EnvInfo
from labbook.warn import warn_exception

#: Programs that often sit in or read from a run directory without writing it: a
#: match by one of these ranks below any other process.  Compared with the
#: basename of the executable and of ``argv[0]``.
NOT_WRITERS: frozenset[str] = frozenset(
    {
        "sh",
        "bash",
        "zsh",
        "fish",
        "dash",
        "ksh",
        "tcsh",
        "csh",
        "tmux",
        "tmux: server",
        "screen",
        "less",
        "more",
        "most",
        "tail",
        "head",
        "cat",
        "tee",
        "watch",
        "vi",
        "vim",
        "nvim",
        "emacs",
        "nano",
        "tensorboard",
        "ssh",
        "sshd",
        "mosh-server",
        "rsync",
        "find",
        "du",
        "ls",
        "git",
        "labbook",
    }
)

#: Variables recorded beyond :data:`labbook.capture.env.KEPT_VARS`: they change
#: what a run does too (Lightning's seed, torchrun's layout).
EXTRA_VARS: frozenset[str] = frozenset(
    {
        "PL_GLOBAL_SEED",
        "PL_SEED_WORKERS",
        "LOCAL_WORLD_SIZE",
        "GROUP_RANK",
        "NODE_RANK",
        "TF_CPP_MIN_LOG_LEVEL",
        "XLA_FLAGS",
        "JAX_PLATFORMS",
        "KMP_AFFINITY",
        "OPENBLAS_NUM_THREADS",
        "TOKENIZERS_PARALLELISM",
    }
)

# O_ACCMODE bits of the "flags:" line of /proc/PID/fdinfo/FD (octal).
_O_ACCMODE = 0o3
_O_RDONLY = 0o0


@dataclass
class ProcInfo:
    """A process as labbook records it.

    ``create_time`` is epoch seconds (psutil's), kept with the pid so that a
    later :func:`is_alive` is not fooled by a reused pid.  ``env_vars`` holds only
    the variables worth recording, secrets already redacted; ``argv`` is redacted
    the same way (``--api-key XYZ``).  ``matched_by`` says why this process was
    chosen: ``"open-write"``, ``"open-read"``, ``"argv"``, ``"cwd"`` or ``"pid"``
    (built from a known pid).
    """

    pid: int
    ppid: int | None = None
    argv: list[str] = field(default_factory=list)
    cwd: str | None = None
    exe: str | None = None
    create_time: float | None = None
    username: str | None = None
    env_vars: dict[str, str] = field(default_factory=dict)
    python_version: str | None = None
    packages: dict[str, str] = field(default_factory=dict)
    matched_by: str = "pid"

    def as_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (packages included) for storing or printing."""
        return {
            "pid": self.pid,
            "ppid": self.ppid,
            "argv": list(self.argv),
            "cwd": self.cwd,
            "exe": self.exe,
            "create_time": self.create_time,
            "username": self.username,
            "env_vars": dict(self.env_vars),
            "python_version": self.python_version,
            "packages": dict(self.packages),
            "matched_by": self.matched_by,
        }


# --- paths ---------------------------------------------------------------------------


def _norm(path: str) -> str:
    """Absolute, symlink-free path: ``/proc`` links are resolved, so compare resolved."""
    return os.path.realpath(os.path.abspath(path))


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _arg_paths(arg: str) -> list[str]:
    """Path-like pieces of one argv entry: the entry itself and a ``--flag=VALUE`` value."""
    pieces = [arg]
    if arg.startswith("-") and "=" in arg:
        pieces.append(arg.split("=", 1)[1])
    return [p for p in pieces if p and not p.startswith("-")]


def _argv_names(argv: Sequence[str], cwd: str | None, targets: Sequence[str]) -> bool:
    """Whether an argv entry resolves (relative to ``cwd``) to a target or inside one."""
    # a relative argument of a process working inside a target says nothing more
    relative_ok = cwd is not None and not any(_inside(cwd, t) for t in targets)
    for arg in argv[1:]:
        for piece in _arg_paths(arg):
            if not os.path.isabs(piece) and not relative_ok:
                continue
            cand = piece if os.path.isabs(piece) else os.path.join(cwd or "/", piece)
            # realpath only when the lexical form is not enough: it stats the path
            lexical = os.path.normpath(cand)
            if any(_inside(lexical, t) for t in targets):
                return True
            if os.path.exists(lexical) and any(_inside(_norm(lexical), t) for t in targets):
                return True
    return False


# --- /proc reading ------------------------------------------------------------------


def _open_files_in(pid: int, root: str) -> tuple[int, int]:
    """(files open for writing, files open for reading only) inside ``root``.

    Reads ``/proc/PID/fd`` links directly: psutil's ``open_files()`` also reads
    every fd's ``fdinfo``, which costs more on processes with thousands of fds,
    while only the few that point into the run dir need their mode here.
    """
    fd_dir = f"/proc/{pid}/fd"
    writes = reads = 0
    try:
        fds = os.listdir(fd_dir)
    except OSError:
        return 0, 0
    for fd in fds:
        try:
            target = os.readlink(f"{fd_dir}/{fd}")
        except OSError:
            continue
        if not target.startswith("/") or not _inside(target, root):
            continue
        mode = _fd_mode(pid, fd)
        if mode is None or (mode & _O_ACCMODE) != _O_RDONLY:
            writes += 1
        else:
            reads += 1
    return writes, reads


def output_file(pid: int) -> str | None:
    """The regular file a process's stdout (else stderr) is, if it is one
    (``python train.py > train.log``, ``nohup``): read from ``/proc/PID/fd/1`` and
    ``2``. None for terminals, pipes, sockets, ``/dev/null``, or where there is no /proc."""
    import stat as _stat

    for fd in (1, 2):
        link = f"/proc/{pid}/fd/{fd}"
        try:
            target = os.readlink(link)
            st = os.stat(link)  # the open file itself, even if renamed since
        except OSError:
            continue
        if (
            target.startswith("/")
            and _stat.S_ISREG(st.st_mode)
            and not target.endswith(" (deleted)")
        ):
            return target
    return None


def _fd_mode(pid: int, fd: str) -> int | None:
    try:
        with open(f"/proc/{pid}/fdinfo/{fd}", "rb") as fh:
            for line in fh:
                if line.startswith(b"flags:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        return None
    return None


def _open_files_psutil(proc: Any, root: str) -> tuple[int, int]:
    """The same as :func:`_open_files_in` where there is no ``/proc`` (macOS)."""
    import psutil  # lazy

    writes = reads = 0
    try:
        files = proc.open_files()
    except (psutil.Error, OSError):  # it ended, or is not ours to look at
        return 0, 0
    for f in files:
        path = getattr(f, "path", "")
        if not path or not _inside(_norm(path), root):
            continue
        mode = getattr(f, "mode", None)
        if mode == "r":
            reads += 1
        else:
            writes += 1
    return writes, reads


def _is_not_writer(argv: Sequence[str], name: str) -> bool:
    names = {name}
    if argv:
        names.add(os.path.basename(argv[0]))
        # "python -m tensorboard.main", "python .../bin/tensorboard --logdir"
        names.update(os.path.basename(a).split(".")[0] for a in argv[1:3] if "tensorboard" in a)
    return any(n.lstrip("-") in NOT_WRITERS for n in names if n)


@dataclass
class _Candidate:
    pid: int
    ppid: int
    name: str
    argv: list[str]
    cwd: str | None
    create_time: float
    writes: int = 0
    reads: int = 0
    argv_match: bool = False
    cwd_depth: int = -1
    viewer: bool = False

    def key(self) -> tuple[int, int, int, int, int]:
        return (
            0 if self.viewer else 1,
            1 if self.writes else 0,
            1 if (self.argv_match or self.cwd_depth >= 0) else 0,
            1 if self.reads else 0,
            self.cwd_depth,
        )

    def matched_by(self) -> str:
        if self.writes:
            return "open-write"
        if self.argv_match:
            return "argv"
        if self.cwd_depth >= 0:
            return "cwd"
        return "open-read"


def _match(cand: _Candidate, root: str, targets: Sequence[str], opened: tuple[int, int]) -> bool:
    """Fill in how ``cand`` relates to the run dir; whether it relates at all."""
    cwd = cand.cwd
    if cwd and _inside(cwd, root):
        cand.cwd_depth = cwd.rstrip(os.sep).count(os.sep)
    cand.argv_match = _argv_names(cand.argv, cwd, targets)
    cand.writes, cand.reads = opened
    if cand.writes or cand.reads or cand.argv_match or cand.cwd_depth >= 0:
        cand.viewer = _is_not_writer(cand.argv, cand.name)
        return True
    return False


def _read_stat(pid: str) -> tuple[str, str, int, float] | None:
    """(comm, state, ppid, start ticks) from ``/proc/PID/stat``."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    head, _, tail = data.rpartition(b")")  # comm may itself hold ") "
    fields = tail.split()
    try:
        comm = head.partition(b"(")[2].decode("utf-8", "replace")
        return comm, fields[0].decode("ascii", "replace"), int(fields[1]), float(fields[19])
    except (IndexError, ValueError):
        return None


def _candidates_proc(
    root: str, targets: Sequence[str], exclude: set[int], uid: int | None
) -> tuple[list[_Candidate], dict[int, int]]:
    """:func:`_candidates` read straight from ``/proc`` (Linux).

    About four reads per process (``stat``, ``cmdline``, the ``cwd`` link, the ``fd``
    links), half of what going through psutil costs: on a busy machine with a few
    hundred processes this is what keeps a capture well under a second.  The start
    time is in clock ticks here: it only orders candidates.
    """
    parents: dict[int, int] = {}
    found: list[_Candidate] = []
    try:
        entries = [e for e in os.scandir("/proc") if e.name.isdigit()]
    except OSError:
        return found, parents
    for entry in entries:
        stat = _read_stat(entry.name)
        if stat is None:
            continue
        comm, state, ppid, start = stat
        pid = int(entry.name)
        parents[pid] = ppid
        if pid in exclude or state == "Z":
            continue
        try:
            if uid is not None and entry.stat().st_uid != uid:
                continue
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                raw = fh.read()
        except OSError:
            continue
        if not raw:  # kernel threads, or a process being torn down
            continue
        argv = [a.decode("utf-8", "surrogateescape") for a in raw.rstrip(b"\0").split(b"\0")]
        try:
            cwd: str | None = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            cwd = None
        cand = _Candidate(pid, ppid, comm, argv, cwd, start)
        if _match(cand, root, targets, _open_files_in(pid, root)):
            found.append(cand)
    return found, parents


def _candidates(
    root: str, targets: Sequence[str], exclude: set[int], uid: int | None
) -> tuple[list[_Candidate], dict[int, int]]:
    """Every matching process, and the pid -> ppid map of the processes seen."""
    if os.path.isdir("/proc/self/fd"):
        return _candidates_proc(root, targets, exclude, uid)
    return _candidates_psutil(root, targets, exclude, uid)


def _candidates_psutil(
    root: str, targets: Sequence[str], exclude: set[int], uid: int | None
) -> tuple[list[_Candidate], dict[int, int]]:
    """:func:`_candidates` through psutil, where there is no ``/proc`` (macOS, BSD)."""
    import psutil  # lazy: heavy-ish, and only the daemon needs it

    parents: dict[int, int] = {}
    found: list[_Candidate] = []
    for proc in psutil.process_iter():
        pid = proc.pid
        try:
            with proc.oneshot():
                ppid = proc.ppid()
                parents[pid] = ppid
                if pid in exclude:
                    continue
                if uid is not None and proc.uids().real != uid:
                    continue
                if proc.status() == psutil.STATUS_ZOMBIE:
                    continue
                argv = proc.cmdline()
                if not argv:  # kernel threads
                    continue
                try:
                    cwd: str | None = proc.cwd()
                except (psutil.AccessDenied, OSError):
                    cwd = None
                name = proc.name()
                create_time = proc.create_time()
        except (psutil.Error, OSError):
            continue
        cand = _Candidate(pid, ppid, name, argv, cwd, create_time)
        if _match(cand, root, targets, _open_files_psutil(proc, root)):
            found.append(cand)
    return found, parents


def _choose(cands: list[_Candidate], parents: Mapping[int, int]) -> _Candidate | None:
    if not cands:
        return None
    best_key = max(c.key() for c in cands)
    top = [c for c in cands if c.key() == best_key]
    pids = {c.pid for c in top}

    def has_ancestor_in_top(c: _Candidate) -> bool:
        seen: set[int] = set()
        p = parents.get(c.pid, c.ppid)
        while p and p not in seen:
            if p in pids:
                return True
            seen.add(p)
            p = parents.get(p, 0)
        return False

    roots = [c for c in top if not has_ancestor_in_top(c)] or top
    return min(roots, key=lambda c: (c.create_time, c.pid))


def find_writer(
    run_dir: str,
    *,
    hint_paths: Iterable[str] = (),
    exclude_pids: Iterable[int] = (),
    with_packages: bool = True,
) -> ProcInfo | None:
    """The process of this user that is most likely writing ``run_dir``, or None.

    ``hint_paths`` are other paths that identify the run when named in a command
    line (a config file, a log file outside the run dir).  ``exclude_pids`` are
    never chosen (labbook's own process always is excluded).  See the module
    docstring for how candidates are ranked.  ``with_packages=False`` skips
    reading the interpreter's packages (they are cached, but the first read of a
    large environment costs a few milliseconds more).
    """
    try:
        path = os.fspath(run_dir)
        if not path:
            return None
        root = _norm(path)
    except (TypeError, ValueError):
        return None
    targets = [root]
    for hint in hint_paths:
        with contextlib.suppress(TypeError, ValueError):
            targets.append(_norm(os.fspath(hint)))
    exclude = {os.getpid(), *(int(p) for p in exclude_pids)}
    uid = os.getuid() if hasattr(os, "getuid") else None
    try:
        cands, parents = _candidates(root, targets, exclude, uid)
    except Exception as exc:  # /proc unreadable (OSError) or psutil's: no process, no failure
        warn_exception(
            root,
            "cannot look for the writing process",
            exc,
            quiet=True,
            expected=capenv.psutil_errors(),
        )
        return None
    chosen = _choose(cands, parents)
    if chosen is None:
        return None
    info = process_info(chosen.pid, with_packages=with_packages)
    if info is not None:
        info.matched_by = chosen.matched_by()
    return info


# --- one process ---------------------------------------------------------------------


def _keep_var(name: str) -> bool:
    return capenv.is_kept_var(name) or name in EXTRA_VARS


def select_vars(environ: Mapping[str, str]) -> dict[str, str]:
    """The variables worth recording, secrets redacted.

    :func:`labbook.capture.env.select_env_vars` for its :data:`KEPT_VARS`, plus
    :data:`EXTRA_VARS` redacted by the same rules (they are passed through
    ``select_env_vars`` under a kept prefix, so there is one redaction rule).
    """
    kept = capenv.select_env_vars(environ)
    prefix = "SLURM_LABBOOK_EXTRA__"  # a kept prefix, to reuse the same redaction
    extra = {prefix + k: v for k, v in environ.items() if k in EXTRA_VARS}
    for k, v in capenv.select_env_vars(extra).items():
        kept[k[len(prefix) :]] = v
    return dict(sorted(kept.items()))


def process_info(pid: int, *, with_packages: bool = True) -> ProcInfo | None:
    """A :class:`ProcInfo` for a live process (any user whose details are readable).

    None when the process is gone, a zombie or not readable at all; a field that
    alone is unreadable (another user's ``environ``) stays empty.
    """
    try:
        import psutil  # lazy
    except ImportError:
        return None
    try:
        proc = psutil.Process(int(pid))
        with proc.oneshot():
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
            info = ProcInfo(pid=proc.pid, ppid=proc.ppid(), create_time=proc.create_time())
            info.argv = redact_argv(proc.cmdline())
            with contextlib.suppress(psutil.AccessDenied, OSError):
                info.cwd = proc.cwd()
            with contextlib.suppress(psutil.AccessDenied, OSError):
                info.username = proc.username()
            environ: dict[str, str] = {}
            with contextlib.suppress(psutil.AccessDenied, OSError):
                environ = proc.environ()
            exe = ""
            with contextlib.suppress(psutil.AccessDenied, OSError):
                exe = proc.exe()
    except (psutil.Error, OSError, ValueError, TypeError, OverflowError):
        return None
    info.env_vars = select_vars(environ)
    # the path it was invoked as (a venv's bin/python is a symlink to the base one)
    exe = capenv.invoked_path(proc, exe, environ) if exe else exe
    info.exe = exe or None
    if exe and capenv.looks_like_python(exe):
        info.python_version = capenv.python_version_of(exe)
        if with_packages:
            info.packages = packages_of(exe)
    return info


# --- packages -------------------------------------------------------------------------

_CACHE_LOCK = threading.Lock()
_SITE_CACHE: dict[tuple[str, int, int], list[str]] = {}
_PACKAGES_CACHE: dict[tuple[tuple[str, int], ...], dict[str, str]] = {}


def _mtime_ns(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return -1


def _site_dirs(executable: str) -> list[str]:
    """site-packages of an interpreter, cached by the executable's path and inode/mtime."""
    try:
        st = os.stat(executable)
        key = (executable, st.st_ino, st.st_mtime_ns)
    except OSError:
        return []
    with _CACHE_LOCK:
        if key in _SITE_CACHE:
            return list(_SITE_CACHE[key])
    dirs = capenv.site_packages_of(executable)
    with _CACHE_LOCK:
        _SITE_CACHE[key] = list(dirs)
    return dirs


def packages_of(executable: str) -> dict[str, str]:
    """Distributions installed for the interpreter ``executable``: normalised name -> version.

    Its ``site-packages`` are found from the files next to it
    (:func:`labbook.capture.env.site_packages_of`: ``pyvenv.cfg``, or
    ``lib/pythonX.Y/site-packages`` beside ``bin/``; the interpreter is run only
    when none of that works), then ``*.dist-info/METADATA`` and ``*.egg-info``
    headers are read (:func:`labbook.capture.env.read_packages`).  The result is
    cached by (directories, their mtimes): installing or removing a distribution
    changes its directory's mtime, so the cache never goes stale, and a second
    call costs a few ``stat``\\ s.
    """
    try:
        exe = os.fspath(executable)
    except TypeError:
        return {}
    if not exe:
        return {}
    dirs = _site_dirs(exe)
    key = tuple((d, _mtime_ns(d)) for d in dirs)
    with _CACHE_LOCK:
        cached = _PACKAGES_CACHE.get(key)
    if cached is not None:
        return dict(cached)
    packages = capenv.read_packages(dirs)
    with _CACHE_LOCK:
        if len(_PACKAGES_CACHE) > 64:  # a daemon sees few interpreters; bound it anyway
            _PACKAGES_CACHE.clear()
        _PACKAGES_CACHE[key] = packages
    return dict(packages)


# --- lifecycle --------------------------------------------------------------------------

#: Seconds of slack when comparing start times: psutil derives them from boot time
#: plus clock ticks, stable to well under this; a reused pid starts much later.
CREATE_TIME_SLACK = 0.5

_EXIT_CODES: dict[int, int] = {}


def is_alive(pid: int, create_time: float | None) -> bool:
    """Whether the process ``pid`` that started at ``create_time`` still runs.

    A pid reused by a later process is not alive (its start time differs); a
    zombie is not alive.  With ``create_time=None`` only the pid is checked.
    """
    try:
        import psutil  # lazy
    except ImportError:
        return False
    try:
        proc = psutil.Process(int(pid))
        with proc.oneshot():
            if proc.status() == psutil.STATUS_ZOMBIE:
                return False
            started = proc.create_time()
    except (psutil.Error, OSError, ValueError, TypeError, OverflowError):
        return False
    return create_time is None or abs(started - float(create_time)) <= CREATE_TIME_SLACK


def exit_status(pid: int) -> int | None:
    """The exit code of a child process of labbook, once it has ended.

    A negative number is the signal that killed it (as :mod:`subprocess` does).
    None while it runs, or when ``pid`` is not a child of this process (then only
    logs and end markers can tell how it ended).  The child is *not* reaped
    (``waitid`` with ``WNOWAIT``): whoever started it — a ``subprocess.Popen``, a
    shell — still collects its status. The code is remembered for later calls.
    """
    if pid in _EXIT_CODES:
        return _EXIT_CODES[pid]
    try:
        info = os.waitid(os.P_PID, int(pid), os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except (ChildProcessError, OSError, ValueError, OverflowError):
        return None
    if info is None or info.si_pid == 0:
        return None  # still running
    if info.si_code == os.CLD_EXITED:
        code = info.si_status
    elif info.si_code in (os.CLD_KILLED, os.CLD_DUMPED):
        code = -info.si_status
    else:
        return None
    _EXIT_CODES[pid] = code
    return code


def env_for_process(info: ProcInfo) -> EnvInfo:
    """labbook's :class:`~labbook.model.EnvInfo` for a process (``source="process"``).

    CUDA version and GPU names come from NVML (cached per labbook process), the
    GPUs restricted by the process's ``CUDA_VISIBLE_DEVICES``.
    """
    cuda, gpus = capenv.nvml_info()
    return EnvInfo(
        source="process",
        python=info.python_version,
        platform=platform.platform(),
        packages=dict(info.packages),
        cuda=cuda,
        gpus=capenv.visible_gpus(gpus, info.env_vars.get("CUDA_VISIBLE_DEVICES")),
        vars=dict(info.env_vars),
    )
