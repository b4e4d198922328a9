"""``labbook run -- CMD ARGS…``: launch a command and record it as a run.

The launch is recorded *before* the child starts (argv, cwd, git state, the
environment with secrets redacted, the interpreter's packages, the seed from argv
or environment), as a run with framework ``command`` and status ``running``. The
terminal is passed through untouched:

* when stdout is a terminal the child gets its own pseudo-terminal (so it still
  sees a tty: colours, progress bars and ``isatty()`` checks behave as without
  labbook), our stdin is put in raw mode and forwarded, so Ctrl-C travels as a
  byte to the child's terminal and its line discipline signals the child, exactly
  as it would without labbook; window-size changes are forwarded;
* otherwise the child's stdout and stderr are pipes, tee'd to ours byte for byte.

A size-capped copy of the output (the first :data:`HEAD_BYTES` and the last
:data:`TAIL_BYTES`) is kept for failure classification and the run's log. At the
end the exit code or signal and the duration are recorded, and the failure is
classified (:mod:`labbook.analysis.status`).

Joining run directories: training code usually writes a run directory of its own
(``lightning_logs/version_3``, ``outputs/DATE/TIME``, ``runs/x`` with a config and
metrics). While the child runs (at growing intervals) and once it has ended, the
directories below the cwd that a recogniser accepts and that were created or
changed since the launch are read and saved *under the launch's run id*
(:meth:`labbook.store.Store.adopt_source` makes the directory's source key point at
the launch's run), with the launch's facts merged in (command, pid, cwd, git state
and environment at launch time): ``labbook run`` plus its run directory are one
run, and a later import or the daemon updates that same run.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import select
import shutil
import signal
import socket
import sys
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING, Any

from labbook.errors import LabbookError, UsageError
from labbook.model import EnvInfo, Failure, Point, RunFacts
from labbook.warn import strict, warn, warn_exception

if TYPE_CHECKING:
    from labbook.store import Store

#: Bytes of the start of the output kept.
HEAD_BYTES = 256 * 1024
#: Bytes of the end of the output kept.
TAIL_BYTES = 1024 * 1024
#: Bytes read from the child at a time.
READ_CHUNK = 1 << 16
#: Seconds between looks for new run directories while the child runs (doubling).
JOIN_FIRST_S = 2.0
JOIN_MAX_S = 60.0
#: A look for run directories that takes longer than this stops the looks during the run.
JOIN_BUDGET_S = 1.0
#: Bytes of a config file the command names that are read at launch (its contents
#: become the run's config, :func:`config_file_contents`); a larger file is left out.
CONFIG_FILE_MAX_BYTES = 1024 * 1024
#: Environment variable the child sees, naming its run.
RUN_ID_VAR = "LABBOOK_RUN_ID"
#: Set by ``labbook replicate`` for each replica it launches: the replicas' sweep id
#: (recorded as the run's sweep, kind "replicate"; labbook.store.groups).
SWEEP_VAR = "LABBOOK_SWEEP"
#: Set by ``labbook replicate`` for a replica that reads a copy of the run's config
#: file (the seed changed in the copy): a JSON list of ``[copy token, original token]``
#: pairs of argv words, so that the replica's recorded config names the file as the
#: original did and the replica stays in its run's seed group.
REPLICA_ARGS_VAR = "LABBOOK_REPLICA_ARGS"


def _as_written(argv: Sequence[str], environ: Mapping[str, str]) -> list[str]:
    """argv with a replica's config-file copy named as the original run named its file."""
    raw = environ.get(REPLICA_ARGS_VAR)
    if not raw:
        return list(argv)
    try:
        pairs = {str(a): str(b) for a, b in json.loads(raw)}
    except (ValueError, TypeError):
        return list(argv)  # not ours to judge: the config is then as the argv says
    return [pairs.get(word, word) for word in argv]


class HeadTail:
    """Keeps the first ``head`` and the last ``tail`` bytes of a stream, and its size."""

    def __init__(self, head: int = HEAD_BYTES, tail: int = TAIL_BYTES) -> None:
        self.head_limit = head
        self.tail_limit = tail
        self.head = bytearray()
        self._tail: deque[bytes] = deque()
        self._tail_size = 0
        self.total = 0
        #: Fed every byte as well (an OutputReader only buffers what it is fed).
        self.reader: Any = None

    def write(self, data: bytes) -> None:
        self.total += len(data)
        if self.reader is not None:
            self.reader.feed(data)
        room = self.head_limit - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if not data or self.tail_limit <= 0:
            return
        if len(data) >= self.tail_limit:
            self._tail.clear()
            self._tail.append(bytes(data[-self.tail_limit :]))
            self._tail_size = self.tail_limit
            return
        self._tail.append(bytes(data))
        self._tail_size += len(data)
        while self._tail_size - len(self._tail[0]) >= self.tail_limit:
            self._tail_size -= len(self._tail.popleft())

    @property
    def omitted(self) -> int:
        """Bytes between the kept head and the kept tail."""
        return max(0, self.total - len(self.head) - min(self._tail_size, self.tail_limit))

    def tail_bytes(self) -> bytes:
        data = b"".join(self._tail)
        return data[-self.tail_limit :] if self.tail_limit else b""

    def text(self) -> str:
        """Head and tail as text, with a line saying how much was left out between them."""
        head = bytes(self.head).decode("utf-8", "replace")
        tail = self.tail_bytes().decode("utf-8", "replace")
        if self.omitted:
            return f"{head}\n[labbook: {self.omitted} bytes of output not kept]\n{tail}"
        return head + tail


@dataclass
class LaunchResult:
    """What came of a launch."""

    run_id: str
    #: The exit status as a shell reports it (128+N for signal N); 127: could not start.
    exit_code: int
    signal_name: str | None
    duration: float
    failure: Failure | None
    #: Run directories joined to the run (their source keys).
    joined: list[str] = field(default_factory=list)
    #: Ids of runs saved for further run directories the command wrote.
    other_runs: list[str] = field(default_factory=list)
    #: A journal file left with writes the store could not take yet (recorded later).
    journal: str | None = None


# --------------------------------------------------------------------------- #
# What is known at launch
# --------------------------------------------------------------------------- #


def _interpreter_of(argv: Sequence[str]) -> str | None:
    """The Python interpreter the command runs, if any (``python …`` or a script
    whose ``#!`` line names one, as ``torchrun`` and ``accelerate`` are)."""
    exe = shutil.which(argv[0]) if argv else None
    if exe is None:
        return None
    name = os.path.basename(exe)
    if name.startswith(("python", "pypy")):
        return exe
    try:
        with open(exe, "rb") as f:
            first = f.readline(256)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    parts = first[2:].decode("utf-8", "replace").split()
    if not parts:
        return None
    if os.path.basename(parts[0]) == "env" and len(parts) > 1:
        return shutil.which(parts[1])
    return parts[0] if os.path.basename(parts[0]).startswith(("python", "pypy")) else None


def launch_env(argv: Sequence[str], environ: dict[str, str]) -> EnvInfo:
    """The environment the child starts with (``source="process"``): variables
    selected and redacted, the packages and version of its interpreter."""
    from labbook.capture.env import interpreter_env

    return interpreter_env(_interpreter_of(argv), environ)


def _arg_key(argv: Sequence[str], index: int) -> str | None:
    """The config key (as :func:`labbook.analysis.check.config_from_argv` names it) whose
    value is ``argv[index]``: ``--config=F`` / ``cfg=F`` -> its name, ``--config F`` ->
    the flag's; a bare argument: None."""
    tok = argv[index]
    if "=" in tok and not tok.startswith("~"):
        name = tok.split("=", 1)[0].lstrip("-")
    elif index > 0 and argv[index - 1].startswith("--"):
        name = argv[index - 1][2:]
    else:
        return None
    return name.strip().lstrip("+~").replace("-", "_") or None


def config_file_contents(
    argv: Sequence[str], written: Sequence[str], cwd: str, stated: Mapping[str, Any]
) -> dict[str, Any]:
    """The contents of the config files a command names, flattened, each key under the
    argument that names the file (``--config cfg.yaml`` -> ``config.optimizer.lr``):
    what the run's config is, not just the file's name. Read from ``argv`` (a replica
    reads its copy); named as ``written`` and ``stated`` (the config the command line
    states) name them. A file over :data:`CONFIG_FILE_MAX_BYTES` or unreadable: one
    warning and left out; a file of another format (``--config cfg.py``): left out."""
    from labbook.analysis.check import load_config_file
    from labbook.sources.replicate import CONFIG_SUFFIXES, config_files_in

    out: dict[str, Any] = {}
    try:
        found = config_files_in(argv, cwd)
    except Exception as exc:  # an odd argv never stops a launch
        warn_exception(None, "cannot look for the config files the command names", exc)
        return out
    for index, path in found:
        key = _arg_key(written, index) if len(written) == len(argv) else None
        if key is None or key not in stated or not path.lower().endswith(CONFIG_SUFFIXES):
            continue
        try:
            size = os.path.getsize(path)
            if size > CONFIG_FILE_MAX_BYTES:
                warn(
                    path,
                    f"config file of {size} bytes not recorded"
                    f" (over {CONFIG_FILE_MAX_BYTES} bytes); the run records its name",
                )
                continue
            loaded = load_config_file(path)
        except LabbookError:
            continue  # the reader has said why, once
        except Exception as exc:
            warn_exception(path, "cannot read the config file; the run records its name", exc)
            continue
        for sub, value in loaded.items():
            out[f"{key}.{sub}"] = value
    return out


def launch_facts(
    argv: Sequence[str],
    *,
    cwd: str,
    environ: dict[str, str],
    name: str | None = None,
    tags: Sequence[str] = (),
    git: bool = True,
) -> RunFacts:
    """The facts of a launch before the child starts (status ``running``)."""
    from labbook.analysis.check import config_from_argv
    from labbook.capture.owner import current_user
    from labbook.capture.seed import pick_seed, seed_from_argv, seed_from_env
    from labbook.capture.slurm import from_environ as slurm_job
    from labbook.capture.slurm import launch_source_key
    from labbook.sources.names import command_name

    written = _as_written(argv, environ)
    facts = RunFacts(
        path=cwd,
        framework="command",
        source_key=f"command:{uuid.uuid4()}",
        name=name or command_name(argv),
        status="running",
        started_at=time.time(),
        command=list(argv),
        cwd=cwd,
        seed=pick_seed(seed_from_argv(list(argv)), seed_from_env(environ)),
        config=config_from_argv(written),
        tags=list(tags),
        host=socket.gethostname(),
    )
    facts.config.update(config_file_contents(argv, written, cwd, facts.config))
    facts.user = current_user()
    sweep = environ.get(SWEEP_VAR, "").strip()
    if sweep:  # one of the replicas `labbook replicate` launched together
        facts.sweep_kind, facts.sweep_id = "replicate", sweep
    if git:
        from labbook.capture.git import capture_git

        facts.git = capture_git(cwd)
    facts.env = launch_env(argv, environ)
    job = slurm_job(environ)
    if job is not None:  # a requeued job records into the run its first start made
        facts.source_key = launch_source_key(job, list(argv), cwd, environ)
    return facts


# --------------------------------------------------------------------------- #
# Writing without standing in the way
# --------------------------------------------------------------------------- #

#: Seconds a write may wait for the store before the command starts, while it runs
#: (the output is pumped between writes) and after it has ended.
BUSY_BEFORE_S = 1.0
BUSY_DURING_S = 0.25
BUSY_AFTER_S = 5.0
#: Seconds between tries to write the journal while the command runs (doubling).
RETRY_FIRST_S = 1.0
RETRY_MAX_S = 30.0


def slurm_run(store: Store | None, source_key: str, restarts: int) -> tuple[str | None, str]:
    """``(run id, source key)`` of a launch in a Slurm job: the run an earlier start of
    the job recorded when this is a requeue (its ``slurm_restarts`` is lower than
    ``restarts``, the job's ``SLURM_RESTART_COUNT`` now), else no id and a key no run
    has. The same command run again in one start of the job (a loop over seeds) is a
    run of its own, keyed ``KEY:2``, ``KEY:3`` …; a requeue, rerunning the job's
    script, meets them in the same order and records into each."""
    if store is None or not source_key.startswith("slurm:"):
        return None, source_key
    key, n = source_key, 1
    try:
        while True:
            known = store.id_for_source(key)
            if known is None:
                return None, key
            row = store.run_row(known) or {}
            if int(row.get("slurm_restarts") or 0) < restarts:
                return known, key
            n += 1
            key = f"{source_key}:{n}"
    except Exception:  # a busy or broken store: a new run, as without Slurm
        return None, f"command:{uuid.uuid4()}"


class Recorder:
    """The launch's writes: to the store when it takes them within a short wait, else
    to the local journal (:mod:`labbook.store.journal`), written later.

    Nothing here raises: a busy, missing or broken store costs the record a delay,
    never the command. Writes keep their order: once something is journaled, later
    writes go to the journal too until it has been written to the store.
    """

    def __init__(self, store: Store | None, db_path: str | os.PathLike[str] | None) -> None:
        from labbook.store.journal import Journal

        self.store = store
        self.journal = Journal(db_path) if db_path is not None else None
        self.said = False
        self.retry_at = 0.0
        self.retry_interval = RETRY_FIRST_S
        self.set_budget(BUSY_BEFORE_S)

    def set_budget(self, seconds: float) -> None:
        if self.store is not None:
            with contextlib.suppress(Exception):
                self.store.set_busy_timeout(seconds)

    @property
    def pending(self) -> bool:
        return self.journal is not None and self.journal.pending > 0

    def write(self, direct: Callable[[Store], Any], op: Callable[[], dict[str, Any]]) -> Any:
        """``direct(store)`` now if it can be done, else append ``op()`` to the journal."""
        if self.store is not None and self._catch_up():
            try:
                return direct(self.store)
            except Exception as exc:  # busy, disk full, a bug: the command goes on
                self._say(exc)
        if self.journal is not None:
            try:
                entry = op()
            except Exception as exc:
                warn_exception(None, "cannot journal a write", exc)
                return None
            self.journal.append(entry)
        return None

    def try_write(self, direct: Callable[[Store], Any]) -> bool:
        """``direct(store)`` if the store takes it now (nothing journaled before it);
        False, with nothing journaled, if not: for writes that can simply wait."""
        if self.store is None or self.pending:
            return False
        try:
            direct(self.store)
        except Exception as exc:  # busy, disk full, a bug: the command goes on
            self._say(exc)
            return False
        return True

    def _catch_up(self) -> bool:
        """Write the journal first (keeping order); whether the store is writable now."""
        if not self.pending:
            return True
        if time.monotonic() < self.retry_at:
            return False
        try:
            assert self.journal is not None and self.store is not None
            self.journal.flush(self.store)
        except Exception as exc:  # busy or full: try again later
            what = "cannot write the journal now"
            warn_exception(None, what, exc, expected=(LabbookError,), quiet=True)
            self.retry_at = time.monotonic() + self.retry_interval
            self.retry_interval = min(self.retry_interval * 2, RETRY_MAX_S)
            return False
        self.retry_interval = RETRY_FIRST_S
        return True

    def retry(self) -> None:
        """While the command runs: write the journal when its next try is due."""
        if self.pending and self.store is not None and time.monotonic() >= self.retry_at:
            self._catch_up()

    def _say(self, exc: Exception) -> None:
        """A delayed write is not worth a warning (:meth:`finish` says what is left over);
        why it was delayed is logged at debug level, with the traceback."""
        if self.said and not strict():
            return
        self.said = True
        what = "cannot record now; kept in the journal"
        warn_exception(None, what, exc, expected=(LabbookError,), quiet=True)

    def finish(self) -> str | None:
        """After the command: a last try; a one-line note when something is left over."""
        self.set_budget(BUSY_AFTER_S)
        self.retry_at = 0.0
        left = None
        if self.pending and not self._catch_up():
            assert self.journal is not None
            left = str(self.journal.path)
        if self.journal is not None:
            self.journal.close()
        return left


# --------------------------------------------------------------------------- #
# Joining run directories
# --------------------------------------------------------------------------- #


def _touched_since(path: Any, files: set[str], since: float) -> bool:
    """Whether a directory or a file directly in it changed at or after ``since``."""
    try:
        if os.stat(path).st_mtime >= since:
            return True
    except OSError:
        return False
    for name in files:
        with contextlib.suppress(OSError):
            if os.stat(os.path.join(path, name)).st_mtime >= since:
                return True
    return False


def run_dirs(cwd: str) -> list[Any]:
    """Every (recogniser, DirInfo) pair below ``cwd`` (see :func:`labbook.sources.importer.discover`)."""
    from labbook.sources.discover import discover

    return discover([cwd])


def new_run_dirs(cwd: str, since: float, existing: set[str]) -> list[Any]:
    """Run directories below ``cwd`` that this launch wrote.

    A directory not in ``existing`` (the run directories there at launch) is new;
    one that was there counts only when it or a file directly in it changed at or
    after ``since`` (a resumed run) — :class:`_Joiner` then also checks that no
    other live run owns it.
    """
    return [
        (rec, d)
        for rec, d in run_dirs(cwd)
        if str(d.path) not in existing or _touched_since(d.path, d.files, since)
    ]


def _merge(dir_facts: RunFacts, launch: RunFacts, *, name: str | None) -> RunFacts:
    """A run directory's facts with what the launch knows put in."""
    dir_facts.command = launch.command
    dir_facts.pid = launch.pid
    dir_facts.cwd = launch.cwd
    dir_facts.started_at = launch.started_at
    if launch.ended_at is not None:
        dir_facts.ended_at = launch.ended_at
    if launch.git is not None:
        dir_facts.git = launch.git
    if launch.env is not None:
        dir_facts.env = launch.env
    if dir_facts.seed.value is None:
        from labbook.capture.seed import pick_seed

        dir_facts.seed = pick_seed(launch.seed, dir_facts.seed)  # unknown stays unknown
    from labbook.analysis.check import match_key

    for key, value in launch.config.items():
        if match_key(key, dir_facts.config) is None:
            dir_facts.config[key] = value
    dir_facts.tags = sorted(set(dir_facts.tags) | set(launch.tags))
    if launch.sweep_id:  # launched by `labbook replicate`: its sweep wins
        dir_facts.sweep_kind, dir_facts.sweep_id = launch.sweep_kind, launch.sweep_id
    # What the command printed fills in what its run directory lacks: a structured
    # metric wins its tag over the printed one.
    for tag, points in launch.metrics.items():
        if points and tag not in dir_facts.metrics:
            dir_facts.metrics[tag] = points
            dir_facts.metric_sources[tag] = launch.metric_sources.get(tag, "output")
    if name:
        dir_facts.name = name
    dir_facts.host = launch.host
    dir_facts.user = launch.user
    return dir_facts


class _Joiner:
    """Finds the run directories a launch writes and saves them as the launch's run."""

    def __init__(self, rec: Recorder, run_id: str, launch: RunFacts, name: str | None) -> None:
        self.rec = rec
        self.run_id = run_id
        self.launch = launch
        self.name = name
        self.primary: str | None = None  # source key joined to run_id
        self.others: dict[str, str] = {}  # source key -> run id
        self.next_at = time.monotonic() + JOIN_FIRST_S
        self.interval = JOIN_FIRST_S
        self.enabled = True
        self.saved_final = False
        #: tags the joined run directory has from structured files (they win)
        self.structured: set[str] = set()
        self.saves = 0  # saves of the primary run directory
        t0 = time.monotonic()
        try:
            self.existing = {str(d.path) for _, d in run_dirs(launch.cwd or ".")}
        except Exception as exc:
            warn_exception(launch.cwd, "cannot look for run directories", exc)
            self.existing = set()
        if time.monotonic() - t0 > JOIN_BUDGET_S:
            self.enabled = False  # a huge cwd: look once more at the end only

    def due(self) -> bool:
        return self.enabled and time.monotonic() >= self.next_at

    def look(
        self, *, final: bool, failure: Failure | None = None, status: str | None = None
    ) -> None:
        """Discover, read and save; while running, cheaply and at growing intervals."""
        from labbook.recognisers.base import read_or_warn
        from labbook.sources.discover import Completer

        t0 = time.monotonic()
        assert self.launch.started_at is not None
        try:
            found = new_run_dirs(self.launch.cwd or ".", self.launch.started_at, self.existing)
        except Exception as exc:  # discovery must never end a launch
            warn_exception(self.launch.cwd, "cannot look for run directories", exc)
            found = []
        completer = Completer(git=False)
        for rec, d in found:
            for facts in read_or_warn(rec, d):
                if str(d.path) in self.existing and self._owned_elsewhere(facts.source_key):
                    continue
                self._save(facts, completer, final=final, failure=failure, status=status)
        spent = time.monotonic() - t0
        if not final:
            if spent > JOIN_BUDGET_S:
                self.enabled = False  # a huge cwd: look once more at the end only
            self.interval = min(self.interval * 2, JOIN_MAX_S)
            self.next_at = time.monotonic() + self.interval

    def _owned_elsewhere(self, source_key: str) -> bool:
        """Whether another run that is still running owns this (pre-existing) directory."""
        from labbook.store import safe_text

        store = self.rec.store
        if store is None:
            return False
        try:
            other = store.id_for_source(safe_text(source_key) or source_key)
            if other is None or other == self.run_id or other in self.others.values():
                return False
            row = store.run_row(other)
        except Exception as exc:  # a broken store: take the directory as this launch's
            what = f"cannot tell who owns {source_key}"
            warn_exception(None, what, exc, expected=(LabbookError,), quiet=True)
            return False
        return row is not None and row["status"] == "running"

    def _save(
        self,
        facts: RunFacts,
        completer: Any,
        *,
        final: bool,
        failure: Failure | None,
        status: str | None,
    ) -> None:
        from labbook.store import safe_text

        key = safe_text(facts.source_key) or facts.source_key
        if self.primary in (None, key):
            self.structured = {
                t for t in facts.metrics if facts.metric_sources.get(t, "file") != "output"
            }
            self.saves += 1
        _merge(facts, self.launch, name=self.name if self.primary in (None, key) else None)
        try:
            completer.complete(facts)
        except Exception as exc:
            warn_exception(facts.path, "cannot complete run", exc)
        if not final:
            facts.status = "running" if facts.status in ("unknown", "finished") else facts.status
        elif status is not None:
            if failure is not None or facts.failure is None:
                facts.failure = failure
                facts.status = status
            if facts.status == "unknown":
                facts.status = status
            if facts.status == status:
                facts.status_reason = self.launch.status_reason
        if facts.log_tail is None:
            facts.log_tail = self.launch.log_tail
        from labbook.store import new_run_id
        from labbook.store.journal import facts_to_json

        if self.primary is None or self.primary == key:
            run_id = self.run_id

            def primary(store: Store) -> None:
                with store.transaction():
                    store.adopt_source(run_id, key)
                    store.save_run(facts, run_id=run_id)

            self.rec.write(
                primary,
                lambda: {
                    "op": "adopt_and_save",
                    "run_id": run_id,
                    "source_key": key,
                    "facts": facts_to_json(facts),
                },
            )
            self.primary = key
            self.saved_final = final
        else:
            rid = self.others.setdefault(key, new_run_id())
            self.rec.write(
                lambda store: store.save_run(facts, run_id=rid),
                lambda: {"op": "save_run", "run_id": rid, "facts": facts_to_json(facts)},
            )


# --------------------------------------------------------------------------- #
# Metrics from the output
# --------------------------------------------------------------------------- #

#: Seconds between reads of the output for metric lines while the command runs.
OUTPUT_EVERY_S = 1.0
#: Seconds the output pump may spend on one such read (the rest waits for the next).
OUTPUT_BUDGET_S = 0.05
#: Points kept per tag for the run's curve; beyond, the kept curve is downsampled
#: (the store keeps at most :data:`labbook.series.MAX_POINTS` anyway).
OUTPUT_KEEP_POINTS = 20_000


class _Output:
    """Metric curves, config and seed read from the command's output, as it runs.

    The pump feeds every byte (:class:`labbook.readers.logs.OutputReader` only
    buffers it); at most every :data:`OUTPUT_EVERY_S` the buffered lines are read
    for at most :data:`OUTPUT_BUDGET_S`, and new points are appended to the run
    through the :class:`Recorder` without journaling (a busy store: they wait for
    the next try). Tags a joined run directory has in a structured file are not
    written from here: the file wins. Every save of the run (the launch's, the
    joiner's) carries the curves kept here (``facts.metrics``, source "output").
    """

    def __init__(self, rec: Recorder, run_id: str, facts: RunFacts) -> None:
        from labbook.readers.logs import OutputReader

        self.rec = rec
        self.run_id = run_id
        self.facts = facts
        self.reader = OutputReader()
        self.unsent: dict[str, list[Point]] = {}
        #: tags a joined run directory gives from a structured file
        self.structured: set[str] = set()
        self.next_at = time.monotonic() + OUTPUT_EVERY_S
        self.saved = False  # the run row exists in the store (appends may go there)

    def due(self) -> bool:
        return time.monotonic() >= self.next_at

    def tick(self) -> None:
        self.next_at = time.monotonic() + OUTPUT_EVERY_S
        self._read(OUTPUT_BUDGET_S, final=False)
        self.tick_writes()

    def tick_writes(self) -> None:
        if not self.saved:  # the launch's save waits in the journal: appends wait too
            self.saved = self.rec.store is not None and not self.rec.pending
        if self.unsent and self.saved:
            new = {t: p for t, p in self.unsent.items() if t not in self.structured}
            if not new or self.rec.try_write(
                lambda s: s.append_metrics(self.run_id, new, source="output")
            ):
                self.unsent = {}

    def finish(self) -> None:
        """The command ended: read the rest of its output (all of it)."""
        self._read(None, final=True)

    def saved_whole(self) -> None:
        """A save of the run carried every curve kept here: nothing is left to append."""
        self.unsent = {}

    def append_rest(self) -> None:
        """Append what no save carried (the run directory went away before the end)."""
        if self.unsent:
            self.tick_writes()

    def _read(self, budget: float | None, *, final: bool) -> None:
        from labbook.analysis.check import match_key
        from labbook.series import downsample

        try:
            self.reader.parse(budget, final=final)
            new = self.reader.take()
        except Exception as exc:  # a reader bug must not cost the command anything
            warn_exception(None, "cannot read metrics from the output", exc)
            return
        for tag, points in new.items():
            kept = self.facts.metrics.setdefault(tag, [])
            kept += points
            if len(kept) > OUTPUT_KEEP_POINTS:
                self.facts.metrics[tag] = downsample(kept, OUTPUT_KEEP_POINTS // 2)
            self.facts.metric_sources[tag] = "output"
            self.unsent.setdefault(tag, []).extend(points)
        if self.reader.seed is not None and self.facts.seed.value is None:
            from labbook.model import Seed

            source = (self.reader.seed.source or "").replace("log:", "output:", 1)
            self.facts.seed = Seed(self.reader.seed.value, source)
        for key, value in self.reader.config.items():
            if match_key(key, self.facts.config) is None:
                self.facts.config[key] = value


# --------------------------------------------------------------------------- #
# Running the child
# --------------------------------------------------------------------------- #


def _write_all(fd: int, data: bytes) -> bool:
    """Write all of ``data``; False when the reader has gone (EPIPE)."""
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except InterruptedError:
            continue
        except BlockingIOError:
            select.select([], [fd], [], 1.0)
            continue
        except BrokenPipeError:
            return False
        except OSError as exc:
            if exc.errno in (errno.EPIPE, errno.EIO, errno.EBADF):
                return False
            raise
        view = view[n:]
    return True


def _terminal_signals_child() -> bool:
    """Whether a Ctrl-C at our terminal also reaches a child in our process group."""
    try:
        fd = os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY)
    except OSError:
        return False
    try:
        return os.tcgetpgrp(fd) == os.getpgrp()
    except OSError:
        return False
    finally:
        os.close(fd)


class _Signals:
    """Forward SIGINT/SIGTERM/SIGHUP/SIGQUIT to the child while it runs."""

    FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)

    def __init__(self, send: Callable[[int], None], *, skip_int: bool) -> None:
        self.send = send
        self.skip_int = skip_int
        self.old: dict[int, Any] = {}

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT and self.skip_int:
            return  # the terminal sent it to the child as well
        with contextlib.suppress(ProcessLookupError, PermissionError):
            self.send(signum)

    def __enter__(self) -> _Signals:
        for s in self.FORWARDED:
            with contextlib.suppress(ValueError, OSError):  # not the main thread
                self.old[s] = signal.signal(s, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        for s, h in self.old.items():
            signal.signal(s, h)


def _copy_winsize(src: int, dst: int) -> None:
    import fcntl
    import termios

    with contextlib.suppress(OSError):
        size = fcntl.ioctl(src, termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(dst, termios.TIOCSWINSZ, size)


def _spawn_pty(
    argv: Sequence[str], cwd: str, env: dict[str, str], stdin_fd: int, stdout_fd: int
) -> tuple[int, int]:
    """Fork the child on a new pseudo-terminal (its controlling tty); (pid, master fd)."""
    import fcntl
    import termios

    master, slave = os.openpty()
    tty_src = stdin_fd if os.isatty(stdin_fd) else stdout_fd
    with contextlib.suppress(termios.error, OSError):
        termios.tcsetattr(slave, termios.TCSANOW, termios.tcgetattr(tty_src))
    _copy_winsize(stdout_fd, slave)
    pid = os.fork()
    if pid == 0:  # the child: no Python clean-up may run here
        try:
            os.close(master)
            os.setsid()
            fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
            for fd in (0, 1, 2):
                os.dup2(slave, fd)
            if slave > 2:
                os.close(slave)
            for s in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM):
                signal.signal(s, signal.SIG_DFL)
            os.chdir(cwd)
            os.execvpe(argv[0], list(argv), env)
        except OSError as exc:
            msg = f"labbook: cannot run {argv[0]}: {exc.strerror or exc}\n"
            with contextlib.suppress(OSError):
                os.write(2, msg.encode("utf-8", "replace"))
        os._exit(127)
    os.close(slave)
    return pid, master


def _run_pty(
    argv: Sequence[str],
    cwd: str,
    env: dict[str, str],
    capture: HeadTail,
    on_start: Callable[[int], None],
    tick: Callable[[], None],
) -> int:
    """Run on a pty, pumping both ways; return the raw wait status."""
    import termios
    import tty

    stdin_fd, stdout_fd = sys.stdin.fileno(), sys.stdout.fileno()
    pid, master = _spawn_pty(argv, cwd, env, stdin_fd, stdout_fd)
    on_start(pid)
    raw_saved = None
    if os.isatty(stdin_fd):
        with contextlib.suppress(termios.error):
            raw_saved = termios.tcgetattr(stdin_fd)
            tty.setraw(stdin_fd, termios.TCSANOW)
    old_winch = signal.signal(signal.SIGWINCH, lambda *_: _copy_winsize(stdout_fd, master))
    read_stdin = True
    forward_out = True
    status: int | None = None
    try:
        with _Signals(lambda s: os.killpg(pid, s), skip_int=False):
            while True:
                fds = [master] + ([stdin_fd] if read_stdin else [])
                try:
                    ready, _, _ = select.select(fds, [], [], 0.2)
                except InterruptedError:
                    ready = []
                if master in ready:
                    try:
                        data = os.read(master, READ_CHUNK)
                    except OSError:  # EIO: every slave end closed
                        data = b""
                    if not data:
                        break
                    capture.write(data)
                    if forward_out:
                        forward_out = _write_all(stdout_fd, data)
                if read_stdin and stdin_fd in ready:
                    try:
                        data = os.read(stdin_fd, READ_CHUNK)
                    except OSError:
                        data = b""
                    if data:
                        _write_all(master, data)
                    else:
                        read_stdin = False
                        if raw_saved is None:
                            _write_all(master, b"\x04")  # EOF for the child's reads
                if status is None:
                    done, st = os.waitpid(pid, os.WNOHANG)
                    if done:
                        status = st
                        # A grandchild may keep the pty open: drain what is there, then stop.
                        _drain(master, capture, stdout_fd if forward_out else None)
                        break
                tick()
    finally:
        signal.signal(signal.SIGWINCH, old_winch)
        if raw_saved is not None:
            with contextlib.suppress(termios.error):
                termios.tcsetattr(stdin_fd, termios.TCSAFLUSH, raw_saved)
        os.close(master)
    if status is None:
        _, status = os.waitpid(pid, 0)
    return status


def _drain(fd: int, capture: HeadTail, out_fd: int | None, quiet_s: float = 0.05) -> None:
    while True:
        ready, _, _ = select.select([fd], [], [], quiet_s)
        if not ready:
            return
        try:
            data = os.read(fd, READ_CHUNK)
        except OSError:
            return
        if not data:
            return
        capture.write(data)
        if out_fd is not None and not _write_all(out_fd, data):
            out_fd = None


def _run_pipes(
    argv: Sequence[str],
    cwd: str,
    env: dict[str, str],
    capture: HeadTail,
    on_start: Callable[[int], None],
    tick: Callable[[], None],
) -> int:
    """Run with stdout/stderr as pipes tee'd to ours; return ``Popen.returncode``."""
    import subprocess

    try:
        proc = subprocess.Popen(
            list(argv), cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0
        )
    except OSError as exc:
        sys.stderr.write(f"labbook: cannot run {argv[0]}: {exc.strerror or exc}\n")
        sys.stderr.flush()
        return 127
    on_start(proc.pid)
    assert proc.stdout is not None and proc.stderr is not None
    outs = {proc.stdout.fileno(): sys.stdout.fileno(), proc.stderr.fileno(): sys.stderr.fileno()}
    with contextlib.suppress(AttributeError, ValueError):
        sys.stdout.flush()
        sys.stderr.flush()
    open_fds = set(outs)
    broken: set[int] = set()
    with _Signals(proc.send_signal, skip_int=_terminal_signals_child()):
        while open_fds:
            try:
                ready, _, _ = select.select(list(open_fds), [], [], 0.2)
            except InterruptedError:
                ready = []
            for fd in ready:
                data = os.read(fd, READ_CHUNK)
                if not data:
                    open_fds.discard(fd)
                    continue
                capture.write(data)
                if fd not in broken and not _write_all(outs[fd], data):
                    # Our reader went away (`labbook run … | head`): stop reading, so
                    # that the child gets SIGPIPE as it would without labbook.
                    broken.add(fd)
                    open_fds.discard(fd)
                    os.close(fd)
            if proc.poll() is not None:
                for fd in list(open_fds):
                    _drain(fd, capture, outs[fd])
                break
            tick()
        rc = proc.wait()
    for f in (proc.stdout, proc.stderr):
        with contextlib.suppress(OSError):
            f.close()
    return rc


def _stdout_is_tty() -> bool:
    try:
        return os.isatty(sys.stdout.fileno())
    except (AttributeError, ValueError, OSError):
        return False


def launch(
    store: Store | None,
    argv: Sequence[str],
    *,
    name: str | None = None,
    tags: Sequence[str] = (),
    note: str | None = None,
    cwd: str | None = None,
    use_pty: bool | None = None,
    git: bool = True,
    join: bool = True,
    db_path: str | os.PathLike[str] | None = None,
) -> LaunchResult:
    """Run ``argv`` as a recorded run (see the module docstring); return what came of it.

    ``use_pty`` None means "a pty when stdout is a terminal". The child's exit code
    (128+N for signal N, 127 when it cannot start) is in the result.

    The command starts whatever the store does: ``store`` may be None (it could not
    be opened) or busy; what cannot be written within a short wait goes to the
    journal beside ``db_path`` (default: the store's path) and is written later
    (:class:`Recorder`). ``LaunchResult.journal`` names a journal left over.
    """
    from labbook.analysis.status import classify, exit_status, status_for, status_reason_for
    from labbook.readers.logs import clean_lines
    from labbook.store import new_run_id, now_iso
    from labbook.store.journal import facts_to_json

    if not argv:
        raise UsageError("no command to run", hint="labbook run -- python train.py --lr 0.1")
    work = os.path.abspath(cwd or os.getcwd())
    environ = dict(os.environ)
    rec = Recorder(store, db_path if db_path is not None else (store.path if store else None))
    try:
        facts = launch_facts(argv, cwd=work, environ=environ, name=name, tags=tags, git=git)
    except Exception as exc:  # capture must never stop the command
        warn_exception(work, "cannot capture the launch", exc)
        facts = RunFacts(
            path=work,
            framework="command",
            source_key=f"command:{uuid.uuid4()}",
            name=name,
            status="running",
            started_at=time.time(),
            command=list(argv),
            cwd=work,
            tags=list(tags),
        )
    from labbook.capture.slurm import from_environ as slurm_job

    job = slurm_job(environ)
    known, facts.source_key = slurm_run(store, facts.source_key, job.restarts if job else 0)
    run_id = known or new_run_id()

    def save_launch() -> None:
        rec.write(
            lambda s: s.save_run(facts, run_id=run_id),
            lambda: {"op": "save_run", "run_id": run_id, "facts": facts_to_json(facts)},
        )

    save_launch()
    if note:
        at = now_iso()
        rec.write(
            lambda s: s.add_note(run_id, note, at=at),
            lambda: {"op": "note", "run_id": run_id, "text": note, "at": at},
        )
    rec.set_budget(BUSY_DURING_S)
    child_env = {**environ, RUN_ID_VAR: run_id}
    joiner = _Joiner(rec, run_id, facts, name) if join else None
    capture = HeadTail()
    output = _Output(rec, run_id, facts)
    output.saved = not rec.pending and store is not None
    capture.reader = output.reader

    def on_start(pid: int) -> None:
        facts.pid = pid
        rec.write(
            lambda s: s.update_run(run_id, pid=pid),
            lambda: {"op": "update_run", "run_id": run_id, "fields": {"pid": pid}},
        )

    def tick() -> None:
        rec.retry()
        if output.due():
            output.tick()
        if joiner is not None and joiner.due():
            saves = joiner.saves
            joiner.look(final=False)
            output.structured = joiner.structured
            if joiner.saves != saves:
                output.saved_whole()

    pty_mode = _stdout_is_tty() if use_pty is None else use_pty
    t0 = time.monotonic()
    runner = _run_pty if pty_mode else _run_pipes
    raw = runner(argv, work, child_env, capture, on_start, tick)
    duration = time.monotonic() - t0
    rec.set_budget(BUSY_AFTER_S)
    if pty_mode:
        if os.WIFSIGNALED(raw):
            returncode = -os.WTERMSIG(raw)
        else:
            returncode = os.WEXITSTATUS(raw) if os.WIFEXITED(raw) else 1
    else:
        returncode = raw
    exit_code, signal_name = exit_status(returncode)
    assert exit_code is not None
    failure: Failure | None = None
    status = "unknown"
    joined: list[str] = []
    others: list[str] = []
    try:
        output.finish()
        text = capture.text()
        log_text = "\n".join(clean_lines(text))
        facts.ended_at = (facts.started_at or time.time()) + duration
        facts.log_tail = log_text
        if exit_code != 127 or facts.pid is not None:
            failure = classify(
                exit_code=exit_code,
                signal_name=signal_name,
                log_text=log_text,
                pid=facts.pid,
                started_at=facts.started_at,
            )
        else:
            failure = Failure("exception", f"could not start {argv[0]}")
        status = status_for(failure, exit_code)
        facts.failure = failure
        facts.status = status
        facts.status_reason = status_reason_for(failure, exit_code)
        if joiner is not None:
            joiner.look(final=True, failure=failure, status=status)
            if joiner.primary is not None:
                joined.append(joiner.primary)
                joined += list(joiner.others)
                others = list(joiner.others.values())
        if not joined:
            save_launch()
        elif not joiner or not joiner.saved_final:
            output.structured = joiner.structured if joiner else set()
            output.append_rest()
            # the run directory went away before the end: record at least how it ended
            fields = {
                "status": status,
                "status_reason": facts.status_reason,
                "failure_kind": failure.kind if failure else None,
                "failure_message": failure.message if failure else None,
                "failure_step": failure.step if failure else None,
                "ended_at": _iso(facts.ended_at),
            }
            rec.write(
                lambda s: s.update_run(run_id, **fields),
                lambda: {"op": "update_run", "run_id": run_id, "fields": fields},
            )
    except Exception as exc:  # the command has ended: its exit code is what matters
        warn_exception(work, "cannot record how the run ended", exc, expected=(LabbookError,))
    left = rec.finish()
    return LaunchResult(
        run_id, exit_code, signal_name, duration, failure, joined, others, journal=left
    )


def _iso(ts: float | None) -> str | None:
    from labbook.store import utc_iso

    return utc_iso(ts)
