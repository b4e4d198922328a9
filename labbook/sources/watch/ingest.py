"""Ingest one run directory: recognise it, capture it at first sight, tail its metrics.

Called only from the daemon's consumer thread (it owns the store connection).

* **First sight** (a directory the daemon has not followed yet): the directory is
  recognised with the same recognisers as ``labbook import``; its git state is
  captured at once (before anything slow, so later edits to the working tree do
  not leak in), its writer process is looked up, then the run is saved.
* **Tail mode** (TensorBoard, Lightning and generic runs with event files or
  ``metrics.jsonl``/``metrics.csv``): metrics come only from appends to those
  files, committed together with the new file positions (so a ``kill -9`` loses
  and duplicates nothing). Config, logs and markers are re-read when they change,
  at most every few seconds, keeping the tailed metrics.
* **Snapshot mode** (everything else): the recogniser's full read replaces the
  run's metrics, throttled by how long the read takes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labbook.analysis.status import LOSS_LIKE
from labbook.model import Failure, GitState, Point, RunFacts
from labbook.recognisers import RECOGNISERS, Recogniser
from labbook.recognisers.base import DirInfo, claims, list_dir, read_or_warn
from labbook.recognisers.common import dir_signature
from labbook.sources.watch import lifecycle, procs
from labbook.sources.watch.tail import is_tail_candidate, read_appended, settle_tags, tail_files
from labbook.store import Store, safe_text

TAIL_FRAMEWORKS = frozenset({"tensorboard", "lightning", "generic"})
#: Columns captured at first sight that later re-reads must not overwrite.
KEEP_COLUMNS = (
    "git_root",
    "git_commit",
    "git_branch",
    "git_remote",
    "git_dirty",
    "git_diff",
    "git_untracked",
    "git_extra",
    "env",
    "env_source",
    "pid",
    "command",
    "cwd",
    "gpu",
    "created_at",
    "user",  # the run dir's owner at first sight, or the writer process's user
)
#: A metadata re-read waits at least this long, and this many times its own cost.
META_MIN_INTERVAL = 2.0
META_COST_FACTOR = 20.0
#: How long a run with no process found yet keeps being searched for one.
PROCESS_SEARCH_S = 30.0
PROCESS_RETRY_S = 3.0
#: At most this many /proc scans per tick (each costs tens of milliseconds).
MAX_SEARCHES_PER_TICK = 2
#: A run with no known process whose files say it ended (an end marker, a traceback)
#: is closed after this long without a change, not after the inactivity timeout.
END_SETTLE_S = 5.0
#: Git state captured for a repository is reused this long (a sweep starting many runs).
GIT_CACHE_S = 2.0

Emit = Callable[[str, "RunState", str], None]


@dataclass
class RunState:
    """What the daemon keeps in memory about a run directory it follows."""

    path: Path
    run_id: str
    name: str
    framework: str
    recogniser: Recogniser
    mode: str  # "tail" or "snapshot"
    tails: list[str] = field(default_factory=list)
    status: str = "running"
    failure: Failure | None = None
    reason: str | None = None
    active: bool = True
    #: the directory's signature when the run ended (late events for writes made
    #: before the end change nothing and must not reopen it)
    end_sig: str | None = None
    pid: int | None = None
    create_time: float | None = None
    started_at: float | None = None
    last_change: float = 0.0  # wall clock
    first_seen_mono: float = 0.0
    last_process_try: float = 0.0
    meta_dirty: bool = False
    last_meta: float = 0.0  # monotonic
    meta_cost: float = 0.0
    missing: bool = False
    step: int | None = None
    last_loss: float | None = None
    loss_tag: str | None = None
    facts: RunFacts | None = None
    multi: bool = False  # the directory holds several runs (an MLflow database)
    gpu: dict[str, Any] | None = None
    needs_process: bool = False  # look for the writer process at the next chance
    process_tries: int = 0
    #: the regular file the writer's stdout/stderr is (``python train.py > train.log``),
    #: read as the run's log; its (size, mtime) when last read
    output_log: str | None = None
    output_sig: tuple[int, float] | None = None


def match(d: DirInfo) -> tuple[Recogniser, bool] | None:
    """The recogniser that claims ``d`` (and whether the claim is weak), as discovery does."""
    for rec, weak in claims(d, RECOGNISERS):
        return rec, weak or not rec.owns_subtree
    return None


def locate(root: Path, path: Path) -> Path | None:
    """The run directory that ``path`` belongs to, looking from ``root`` down.

    The first directory (top-down) that a recogniser claims outright owns everything
    below it, as in ``labbook import``; a weak claim (a bare console log) yields
    to a run found further down.
    """
    try:
        rel = path.relative_to(root)
    except ValueError:
        return None
    chain = [root]
    for part in rel.parts:
        chain.append(chain[-1] / part)
    weak: Path | None = None
    for d_path in chain:
        if not d_path.is_dir():
            break
        d = list_dir(d_path)
        if d is None:
            break
        m = match(d)
        if m is None:
            continue
        if not m[1]:
            return d_path
        weak = weak or d_path
    return weak


def _db_text(path: str) -> str:
    """``path`` as the store keeps it: undecodable bytes of a file name escaped."""
    return safe_text(path) or path


def _output_file(pid: int) -> str | None:
    """The regular file ``pid``'s stdout/stderr is, or None (never raises)."""
    from labbook.capture.process import output_file
    from labbook.warn import warn_exception

    try:
        return output_file(pid)
    except Exception as exc:  # capture must never stop the daemon
        warn_exception(None, f"cannot look at the output of process {pid}", exc, quiet=True)
        return None


def _last_loss(metrics: dict[str, list[Point]]) -> tuple[str, float, int] | None:
    best: tuple[str, float, int] | None = None
    for tag, pts in metrics.items():
        if pts and LOSS_LIKE.search(tag) and (best is None or "val" not in tag):
            best = (tag, pts[-1].value, pts[-1].step)
    return best


class Ingestor:
    """Ingests run dirs into ``store``; ``emit(kind, state, detail)`` feeds the display."""

    def __init__(
        self,
        store: Store,
        *,
        emit: Emit | None = None,
        git: bool = True,
        inactivity_timeout: float = 600.0,
        wall: Callable[[], float] = time.time,
        mono: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.emit: Emit = emit or (lambda kind, state, detail: None)
        self.git = git
        self.inactivity_timeout = inactivity_timeout
        self.wall = wall
        self.mono = mono
        self.states: dict[Path, RunState] = {}
        self._git_cache: dict[str, tuple[float, GitState | None]] = {}
        #: Set during the catch-up scan: git state is shared per repository for the
        #: whole scan, and runs whose files are older than the inactivity timeout are
        #: not searched for a process (one scan of /proc per run would dominate).
        self.catching_up = False
        # WAL with synchronous=NORMAL survives a killed process (a power cut may lose
        # the last commits, never corrupt): one fsync per checkpoint, not per commit.
        store.conn.execute("PRAGMA synchronous = NORMAL")

    # -- lookup ------------------------------------------------------------------

    def owner(self, path: Path) -> RunState | None:
        """The followed run whose directory holds ``path``."""
        for p in (path, *path.parents):
            st = self.states.get(p)
            if st is not None:
                return st
        return None

    # -- capture -----------------------------------------------------------------

    def _capture_git(self, run_dir: Path) -> GitState | None:
        if not self.git:
            return None
        from labbook.capture.git import capture_git, find_repo_root, without_outputs

        root = find_repo_root(str(run_dir))
        if root is None:
            return None
        now = self.mono()
        hit = self._git_cache.get(root)
        if hit is not None and (self.catching_up or now - hit[0] < GIT_CACHE_S):
            return hit[1]
        state = capture_git(root)
        if state is not None:  # runs' outputs are not untracked code
            state = without_outputs(state, [run_dir, *self.states])
        self._git_cache[root] = (now, state)
        return state

    def _read(self, rec: Recogniser, d: DirInfo) -> list[RunFacts]:
        return read_or_warn(rec, d)

    def _complete(self, facts: RunFacts) -> None:
        from labbook.sources.discover import Completer

        had_env = facts.env
        Completer(git=False).complete(facts)
        if had_env is None and facts.env is not None and facts.env.source == "importer":
            facts.env = None  # the process's env is kept instead, if one was found

    # -- ingest --------------------------------------------------------------------

    def ingest(
        self, run_dir: Path, changed: Iterable[str] | None = None, *, live: bool = True
    ) -> None:
        """Bring the record of ``run_dir`` up to date with its files.

        ``changed`` are the paths events named (None: unknown, look at everything);
        ``live`` says the directory was seen changing now (not by the catch-up scan).
        One transaction: one commit per ingest, and a kill leaves all of it or none.
        """
        with self.store.transaction():
            self._ingest(run_dir, changed, live=live)

    def _ingest(self, run_dir: Path, changed: Iterable[str] | None, *, live: bool) -> None:
        st = self.states.get(run_dir)
        if st is not None and self._removed(st):
            return
        if not run_dir.is_dir():
            if st is not None and not st.missing:
                st.missing = True
                self.store.mark_missing(st.run_id)
                self.emit("missing", st, "run directory deleted; record kept")
            return
        if st is None:
            self._first_sight(run_dir, live=live)
            return
        if st.missing:
            st.missing = False
            self.store.mark_missing(st.run_id, False)
        if not st.active and st.end_sig is not None and dir_signature(run_dir) == st.end_sig:
            return  # events queued before the end, for files already read at the end
        changed_list = list(changed) if changed is not None else None
        if changed_list is None or any(not is_tail_candidate(p) for p in changed_list):
            st.meta_dirty = True
        if st.mode == "tail" and (
            changed_list is None
            or any(p not in st.tails for p in changed_list if is_tail_candidate(p))
        ):
            st.tails = tail_files(run_dir)
        moved = False
        if st.meta_dirty and self.mono() - st.last_meta >= max(
            META_MIN_INTERVAL, META_COST_FACTOR * st.meta_cost
        ):
            moved = self._read_meta(st)
        if st.mode == "tail":
            moved = self._tail(st) or moved
        if moved or changed_list:
            st.last_change = self.wall()
            if not st.active:
                self._reopen(st)
        self._check_divergence(st)
        self.store.set_watch_state(st.run_id, last_change=st.last_change)

    def _first_sight(self, run_dir: Path, *, live: bool) -> None:
        d = list_dir(run_dir)
        if d is None:
            return
        m = match(d)
        if m is None:
            return
        rec = m[0]
        key = str(run_dir)
        if self.store.removed_source(_db_text(key)):
            return  # removed with labbook rm: not recorded again (rm --undo, import --include-removed)
        run_id = self.store.id_for_source(_db_text(key))
        known = self.store.watch_state(run_id) if run_id else None
        git = self._capture_git(run_dir) if run_id is None else None
        t0 = self.mono()
        # The process is looked up after the run is saved (a /proc scan costs tens of
        # ms; the row should be visible first): see adopt_processes().
        proc = None
        facts_list = self._read(rec, d)
        cost = self.mono() - t0
        facts_list = [
            f for f in facts_list if not self.store.removed_source(_db_text(f.source_key))
        ]
        if not facts_list:
            return
        multi = len(facts_list) > 1 or facts_list[0].source_key != key
        if multi:
            for facts in facts_list:
                self._complete(facts)
                facts.git = facts.git or git
                self.store.save_run_keeping(facts, keep_metrics=False, keep_columns=KEEP_COLUMNS)
            # A database of runs (MLflow): re-read it as a whole when it changes.
        facts = facts_list[0]
        self._complete(facts)
        if git is not None and not (facts.git is not None and facts.git.diff):
            facts.git = git
        if proc is not None:
            facts.pid = proc.pid
            facts.command = facts.command or list(proc.argv)
            facts.cwd = facts.cwd or proc.cwd
            env = procs.env_for(proc)
            if env is not None and (facts.env is None or facts.env.source == "importer"):
                facts.env = env
            if facts.started_at is None and proc.create_time:
                facts.started_at = proc.create_time
        if facts.env is None:
            from labbook.capture.env import importer_env

            facts.env = importer_env()
        mode = "tail" if (not multi and rec.framework in TAIL_FRAMEWORKS) else "snapshot"
        tails = tail_files(run_dir) if mode == "tail" else []
        if mode == "tail" and not tails:
            mode = "snapshot"
        st = RunState(
            path=run_dir,
            run_id="",
            name=facts.name or run_dir.name,
            framework=facts.framework,
            recogniser=rec,
            mode=mode,
            tails=tails,
            pid=proc.pid if proc is not None else (known or {}).get("pid"),
            create_time=proc.create_time if proc is not None else (known or {}).get("create_time"),
            started_at=facts.started_at,
            first_seen_mono=self.mono(),
            last_process_try=self.mono(),
            needs_process=proc is None
            and (known or {}).get("pid") is None
            and (live or not self.catching_up or self._recent(d)),
            last_meta=self.mono(),
            meta_cost=cost,
            facts=facts,
            multi=multi,
        )
        newest = max((os.path.getmtime(f) for f in facts.files if os.path.exists(f)), default=0.0)
        st.last_change = (
            self.wall() if live else max(newest, (known or {}).get("last_change") or 0.0)
        )
        reset = known is None or known.get("mode") != mode
        with self.store.transaction():
            if not multi:
                run_id, created = self.store.save_run_keeping(
                    facts, keep_metrics=(mode == "tail"), keep_columns=KEEP_COLUMNS
                )
            else:
                run_id, created = self.store.id_for_source(_db_text(facts.source_key)) or "", False
            st.run_id = run_id
            if reset and mode == "tail" and run_id:
                self.store.reset_metrics(run_id)
            self.store.set_watch_state(
                run_id, mode=mode, pid=st.pid, create_time=st.create_time, active=1
            )
        if not run_id:
            return
        self.states[run_dir] = st
        alive = st.pid is not None and procs.is_alive(st.pid, st.create_time)
        recent = self.wall() - st.last_change < self.inactivity_timeout
        if created or alive or (live and recent) or (known or {}).get("active"):
            if alive or recent:
                # "started" first, then what the first read of its metrics says (diverged…).
                self.emit("started" if created else "resumed", st, self._describe(st, proc))
                if mode == "tail":
                    self._tail(st)
                self._set_running(st)
            else:
                self.finish(st, lifecycle.INACTIVE)
        else:
            self.finish(st, lifecycle.INACTIVE)
        self.store.set_watch_state(st.run_id, last_change=st.last_change)

    def _removed(self, st: RunState) -> bool:
        """Whether ``labbook rm`` removed (or purged) the run ``st`` follows; if so the
        daemon stops following it (its dir is not recorded again: see _first_sight)."""
        row = self.store.conn.execute(
            "SELECT deleted_at, source_key FROM runs WHERE id = ?", (st.run_id,)
        ).fetchone()
        if row is not None and (row[0] is None or str(row[1]).startswith("merged:")):
            return False  # live (or merged into a labbook run, which follows it as before)
        self.states.pop(st.path, None)
        self.emit("removed", st, "removed with labbook rm; no longer followed")
        return True

    def _recent(self, d: DirInfo) -> bool:
        """Whether a file directly in ``d`` changed within the inactivity timeout."""
        newest = 0.0
        for name in d.files:
            try:
                newest = max(newest, os.stat(d.path / name).st_mtime)
            except OSError:
                continue
        return self.wall() - newest < self.inactivity_timeout

    def _describe(self, st: RunState, proc: Any) -> str:
        bits = [st.framework]
        if proc is not None:
            bits.append(f"pid {proc.pid}")
        return ", ".join(bits) + f" — {st.path}"

    def _set_running(self, st: RunState) -> None:
        st.active = True
        diverged = self._diverged(st)
        v = lifecycle.running_verdict(st.facts, diverged)
        self._apply(st, v, ended_at=None)

    def _apply(self, st: RunState, v: lifecycle.Verdict, *, ended_at: float | None) -> None:
        changed = (v.status, v.failure) != (st.status, st.failure)
        st.status, st.failure, st.reason = v.status, v.failure, v.reason
        self.store.set_status(
            st.run_id, v.status, failure=v.failure, ended_at=ended_at, reason=v.reason
        )
        if changed and v.status == "diverged" and st.active:
            self.emit("diverged", st, v.failure.message if v.failure else "")

    def _reopen(self, st: RunState) -> None:
        st.active = True
        self.store.set_watch_state(st.run_id, active=1)
        self._set_running(st)
        self.emit("resumed", st, "files changed again")

    def _read_meta(self, st: RunState) -> bool:
        """Re-read config, logs and markers (and, in snapshot mode, metrics)."""
        d = list_dir(st.path)
        st.meta_dirty = False
        st.last_meta = self.mono()
        if d is None:
            return False
        m = match(d)
        rec = m[0] if m else st.recogniser
        t0 = self.mono()
        facts_list = self._read(rec, d)
        st.meta_cost = self.mono() - t0
        if not facts_list:
            return False
        printed: dict[str, list[Point]] = {}
        if st.output_log is not None and not st.multi:
            printed = self._apply_output_log(st, facts_list[0])
        for facts in facts_list:
            self._complete(facts)
            if not st.multi:
                facts.pid = facts.pid or st.pid
            self.store.save_run_keeping(
                facts, keep_metrics=(st.mode == "tail"), keep_columns=KEEP_COLUMNS
            )
        if printed and st.mode == "tail":
            self.store.replace_output_tags(st.run_id, printed)
        st.facts = facts_list[0]
        st.framework = st.facts.framework
        st.recogniser = rec
        if st.mode == "snapshot":
            found = _last_loss(st.facts.metrics)
            if found:
                st.loss_tag, st.last_loss, st.step = found
        # the save wrote the recogniser's status: put back the lifecycle's
        self.store.set_status(
            st.run_id,
            st.status,
            failure=st.failure,
            ended_at=None if st.active else st.last_change,
            reason=st.reason,
        )
        return True

    def _apply_output_log(self, st: RunState, facts: RunFacts) -> dict[str, list[Point]]:
        """Fill ``facts`` from the file the writer's output goes to (config, seed, failure,
        tail and the metrics no structured file gives); the printed curves it added."""
        from labbook.readers.logs import read_log

        path = st.output_log
        assert path is not None
        if path in facts.files:
            return {}  # the recogniser read it already (train.log in the run dir)
        try:
            s = os.stat(path)
            st.output_sig = (s.st_size, s.st_mtime)
        except OSError:
            return {}
        lf = read_log(path)
        if lf is None:
            return {}
        facts.files.append(path)
        if not facts.config and lf.config:
            facts.config = dict(lf.config)
        if facts.seed.value is None and lf.seed is not None:
            facts.seed = lf.seed
        if facts.failure is None and lf.failure is not None:
            facts.failure = lf.failure
        facts.end_marker = facts.end_marker or lf.finished_marker
        if lf.tail and not facts.log_tail:
            facts.log_tail = lf.tail
        printed = {t: p for t, p in lf.metrics.items() if p and t not in facts.metrics}
        for tag, points in printed.items():
            facts.metrics[tag] = points
            facts.metric_sources[tag] = "output"
        return printed

    def _output_changed(self, st: RunState) -> bool:
        if st.output_log is None:
            return False
        try:
            s = os.stat(st.output_log)
        except OSError:
            return False
        return (s.st_size, s.st_mtime) != st.output_sig

    def _tail(self, st: RunState) -> bool:
        """Read what was appended to the run's metric files; True if anything was."""
        # The store keys files by their path as text (undecodable bytes escaped).
        stored = self.store.file_states(st.run_id)
        positions = {
            path: found for path in st.tails if (found := stored.get(_db_text(path))) is not None
        }
        moved = False
        for path in list(st.tails):
            pos = positions.get(path)
            try:
                s = os.stat(path)  # before the read: a later append changes it again
            except OSError:
                continue
            if pos is not None and s.st_size == pos["size"] and s.st_mtime == pos["mtime"]:
                continue
            res = read_appended(st.path, path, pos)
            if res.reset:
                # Rewritten or truncated: forget everything tailed and read it all again.
                self.store.reset_metrics(st.run_id)
                st.step = st.last_loss = None
                self._tail(st)
                return True
            taken = settle_tags(st.path, path, res, positions)
            with self.store.transaction():
                for other, tags in taken.items():
                    self._forget_tags(st, other, tags, positions[other])
                self.store.tail_commit(
                    st.run_id,
                    _db_text(path),
                    res.metrics,
                    offset=res.offset,
                    fingerprint=res.fingerprint,
                    size=s.st_size,
                    mtime=s.st_mtime,
                    state=res.state,
                )
            positions[path] = {
                "offset": res.offset,
                "fingerprint": res.fingerprint,
                "size": s.st_size,
                "mtime": s.st_mtime,
                "state": res.state,
            }
            if res.metrics:
                moved = True
                self._note_points(st, res.metrics)
        return moved

    def _forget_tags(self, st: RunState, path: str, tags: set[str], pos: dict[str, Any]) -> None:
        """A better file has ``tags``: drop the points ``path`` gave them (see settle_tags)."""
        for tag in tags:
            self.store.conn.execute(
                "DELETE FROM metrics WHERE run_id = ? AND tag = ?", (st.run_id, tag)
            )
            self.store.conn.execute(
                "DELETE FROM series WHERE run_id = ? AND tag = ?", (st.run_id, tag)
            )
        state = dict(pos.get("state") or {})
        state["tags"] = sorted(set(state.get("tags") or []) - tags)
        pos["state"] = state
        self.store.tail_commit(
            st.run_id,
            _db_text(path),
            {},
            offset=pos["offset"],
            fingerprint=pos["fingerprint"],
            size=pos["size"],
            mtime=pos["mtime"],
            state=state,
        )

    def _note_points(self, st: RunState, metrics: dict[str, list[Point]]) -> None:
        for pts in metrics.values():
            if pts:
                st.step = max(st.step or pts[-1].step, pts[-1].step)
        found = _last_loss(metrics)
        if found and (st.loss_tag is None or found[0] == st.loss_tag or "val" not in found[0]):
            st.loss_tag, st.last_loss, _ = found

    def _diverged(self, st: RunState) -> Failure | None:
        if st.mode == "tail":
            return lifecycle.divergence(self.store.nonfinite_steps(st.run_id))
        if st.facts is not None:
            from labbook.analysis.status import first_divergence

            return first_divergence(st.facts)
        return None

    def _check_divergence(self, st: RunState) -> None:
        if st.active and st.status == "running":
            d = self._diverged(st)
            if d is not None:
                self._apply(st, lifecycle.Verdict("diverged", d), ended_at=None)

    # -- lifecycle -------------------------------------------------------------------

    def tick(self) -> None:
        """Follow active runs: find their processes, notice exits and inactivity."""
        now_mono = self.mono()
        now = self.wall()
        searches = 0
        for st in list(self.states.values()):
            if not st.active or self._removed(st):
                continue
            if st.pid is None:
                if (
                    searches < MAX_SEARCHES_PER_TICK
                    and now_mono - st.first_seen_mono < PROCESS_SEARCH_S
                    and now_mono - st.last_process_try
                    >= min(0.5 * 2**st.process_tries, PROCESS_RETRY_S)
                    and now - st.last_change < 2 * PROCESS_RETRY_S  # still being written
                    and not st.missing
                ):
                    searches += 1
                    st.process_tries += 1
                    st.last_process_try = now_mono
                    with self.store.transaction():  # its env blob and the run, together
                        self._adopt_process(st)
                if st.pid is None:
                    quiet = now - st.last_change
                    if quiet >= END_SETTLE_S and st.meta_dirty:
                        # Files changed after the last (throttled) read: read them now.
                        with self.store.transaction():
                            self._read_meta(st)
                    if quiet >= self.inactivity_timeout:
                        self.finish(st, lifecycle.INACTIVE)
                    elif quiet >= END_SETTLE_S and lifecycle.files_say_ended(st.facts):
                        self.finish(st, lifecycle.ENDED)
                    continue
            if not procs.is_alive(st.pid, st.create_time):
                self.finish(st, lifecycle.EXITED)
            elif self._output_changed(st) and now_mono - st.last_meta >= max(
                META_MIN_INTERVAL, META_COST_FACTOR * st.meta_cost
            ):
                with self.store.transaction():  # the writer printed more
                    self._read_meta(st)

    def adopt_processes(self) -> None:
        """Look up the writer process of runs first seen since the last call."""
        for st in list(self.states.values()):
            if st.needs_process:
                st.needs_process = False
                st.last_process_try = self.mono()
                if st.active and st.pid is None and st.path.is_dir():
                    with self.store.transaction():
                        self._adopt_process(st)

    def _adopt_process(self, st: RunState) -> None:
        proc = procs.find_writer(str(st.path))
        if proc is None:
            return
        st.pid, st.create_time = proc.pid, proc.create_time
        st.output_log = _output_file(proc.pid)
        if st.output_log is not None:
            st.meta_dirty = True  # read it at the next re-read
        fields: dict[str, Any] = {"pid": proc.pid}
        if getattr(proc, "username", None):
            fields["user"] = proc.username  # the writer's user, not the daemon's
        env = procs.env_for(proc)
        if env is not None:
            fields["env"] = self.store.put_env(env)
            fields["env_source"] = env.source
        if proc.argv:
            from labbook.store import dump_json

            fields["command"] = dump_json([_db_text(a) for a in proc.argv])
        self.store.update_run(st.run_id, **fields)
        self.store.set_watch_state(st.run_id, pid=proc.pid, create_time=proc.create_time)

    def finish(self, st: RunState, reason: str) -> None:
        """The run ended: read everything once more and record why it ended."""
        with self.store.transaction():
            self._finish(st, reason)

    def _finish(self, st: RunState, reason: str) -> None:
        if st.path.is_dir():
            st.meta_dirty = True
            st.last_meta = -1e18
            self._read_meta(st)
            if st.mode == "tail":
                self._tail(st)
        code = procs.exit_code(st.pid) if st.pid is not None else None
        v = lifecycle.end_verdict(st.facts, self._diverged(st), reason=reason, exit_code=code)
        st.active = False
        self._apply(st, v, ended_at=st.last_change or self.wall())
        sig = dir_signature(st.path) if st.path.is_dir() else None
        st.end_sig = sig
        self.store.set_watch_state(st.run_id, active=0, sig=sig, last_change=st.last_change)
        detail = v.failure.message if v.failure else ""
        self.emit(v.status, st, detail)

    def stop_all(self) -> None:
        """Flush: a last read of every active run (they stay active for the next daemon)."""
        for st in self.states.values():
            if st.active and st.path.is_dir():
                if st.meta_dirty:
                    st.last_meta = -1e18
                    self._read_meta(st)
                if st.mode == "tail":
                    self._tail(st)
