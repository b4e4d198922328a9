"""The daemon: sources -> one queue -> one consumer thread that owns the database.

Sources never parse and never touch SQLite: watchdog observers put
:class:`~labbook.sources.watch.handler.PathEvent`\\ s on the queue (through
:class:`~labbook.sources.watch.handler.EventEnqueuer`), the GPU sampler puts samples.
The consumer thread does a catch-up scan first (what changed while no daemon
ran), then debounces events into "ingest this run dir now", ingests, and once a
tick follows the lifecycle of active runs and refreshes the display. Stopping
(Ctrl-C, SIGTERM, :meth:`Daemon.stop`) stops the sources, then the consumer
drains the queue, ingests everything pending, and closes the database.
"""

from __future__ import annotations

import contextlib
import errno
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labbook.errors import LabbookError
from labbook.sources.watch import fs, procs
from labbook.sources.watch.config import PathFilter, WatchConfig
from labbook.sources.watch.debounce import Debouncer
from labbook.sources.watch.handler import EventEnqueuer, PathEvent, event_filter
from labbook.sources.watch.ingest import Ingestor, RunState, dir_signature, locate
from labbook.sources.watch.lock import DaemonLock
from labbook.store import Store, safe_text
from labbook.warn import warn, warn_exception

_STOP = object()
#: At most this many changed paths are remembered per pending run (then: "look at all").
MAX_CHANGED = 256
#: GPU summaries are written at most this often per run (and when it ends).
GPU_SAVE_S = 10.0
#: A failed ingest is tried again after this many seconds, doubling up to the max.
RETRY_FIRST_S = 1.0
RETRY_MAX_S = 60.0
#: Tries of an ingest that fails for another reason than a busy store (a file
#: caught mid-write, a reader bug) before it waits for the run dir's next change.
RETRY_OTHER = 3
#: Seconds between looks for journals that ``labbook run`` left for the store.
JOURNAL_S = 5.0


@dataclass
class DaemonOptions:
    interval: float = 2.0  # GPU sampling and polling interval
    tick: float = 1.0  # lifecycle checks and display refresh
    poll: bool = False  # poll every root
    git: bool = True
    mounts_path: str = fs.PROC_MOUNTS
    max_watches: int | None = None  # tests: simulate a small fs.inotify.max_user_watches
    watches_in_use: int | None = None
    gpu_backend: Any = None  # tests: a ReplayBackend; None: NVML if available
    gpu: bool = True
    debounce: Debouncer = field(default_factory=Debouncer)
    #: watch --notify / [notify]: a NotifyConfig (labbook.sources.watch.notify); None: off
    notify: Any = None
    #: [remote] (labbook.store.remote.config.RemoteConfig): push to the lab's notebook
    #: from a thread (labbook.sources.watch.push) when it has a url and push is on
    remote: Any = None


class Daemon:
    """One ``labbook watch``. ``start()`` returns once the catch-up scan is done."""

    def __init__(
        self,
        db_path: str | os.PathLike[str] | None,
        config: WatchConfig,
        *,
        display: Any = None,
        options: DaemonOptions | None = None,
    ) -> None:
        from labbook.paths import default_db_path

        self.db_path = Path(db_path).expanduser() if db_path else default_db_path()
        self.config = config
        self.options = options or DaemonOptions()
        if display is None:
            from labbook.sources.watch.display import LogDisplay

            display = LogDisplay()
        self.display = display
        self.queue: queue.Queue[Any] = queue.Queue()
        self.ready = threading.Event()
        self.stopped = threading.Event()
        self.polled_roots: list[Path] = []
        self.messages: list[str] = []
        self._lock = DaemonLock(self.db_path)
        self._observers: list[Any] = []
        self._consumer: threading.Thread | None = None
        self._gpu_thread: threading.Thread | None = None
        self._gpu_stop = threading.Event()
        self._gpu_backend: Any = None
        self._gpu_lines: list[str] = []
        self._gpu_acc: dict[str, Any] = {}
        self._gpu_saved: dict[str, float] = {}
        self._error: BaseException | None = None
        self.ingestor: Ingestor | None = None
        self._retries: dict[Any, int] = {}
        self._changed: dict[Any, set[str] | None] = {}
        self._journal_at = 0.0
        self.notifier: Any = None
        self.pusher: Any = None
        self._was_active: set[str] = set()

    # -- messages --------------------------------------------------------------------

    def _say(self, text: str) -> None:
        self.messages.append(text)
        self.display.message(text)

    def _emit(self, kind: str, st: RunState, detail: str) -> None:
        """An event of a run: to the display, and to the notify hook if it wants it
        (not for runs the catch-up scan finds quiet for longer than the inactivity
        timeout, unless the last daemon was following them)."""
        self.display.event(kind, st, detail)
        notifier = self.notifier
        if notifier is None or not notifier.wants(kind):
            return
        ing = self.ingestor
        if (
            ing is not None
            and ing.catching_up
            and st.run_id not in self._was_active
            and time.time() - st.last_change >= ing.inactivity_timeout
        ):
            return  # an end long past, found by the catch-up scan: old news
        try:
            notifier.event(kind, st.run_id, step=st.step)
        except Exception as exc:  # a notification never stops the daemon
            warn_exception(None, "notify failed", exc)

    # -- starting ----------------------------------------------------------------------

    def start(self, *, live: bool = True) -> None:
        """Check the database, take the lock, start sources and the consumer."""
        fs.check_db_local(self.db_path, self.options.mounts_path)
        self._lock.acquire()
        try:
            store = Store.open(self.db_path)
        except BaseException:
            self._lock.release()
            raise
        self.display.start()
        cfg = self.options.notify
        if cfg is not None and cfg.target:
            from labbook.sources.watch.notify import Notifier

            self.notifier = Notifier(cfg, store)
            # Runs the last daemon followed: an end found by the catch-up scan is news.
            self._was_active = {row["id"] for row in store.active_watch_runs()}
        self.ingestor = Ingestor(
            store,
            emit=self._emit,
            git=self.options.git,
            inactivity_timeout=self.config.inactivity_timeout,
        )
        try:
            if live:
                self._start_observers()
                self._start_gpu()
        except BaseException:
            self._stop_sources()
            store.close()
            self._lock.release()
            raise
        self._consumer = threading.Thread(
            target=self._run, args=(live,), name="labbook-watch-consumer", daemon=True
        )
        self._consumer.start()
        self.ready.wait()
        remote = self.options.remote
        if live and remote is not None and remote.url and remote.push:
            from labbook.sources.watch.push import Pusher

            self.pusher = Pusher(self.db_path, remote)
            self.pusher.start()

    def _start_observers(self) -> None:
        from watchdog.observers import Observer
        from watchdog.observers.polling import PollingObserver

        exclude = [str(self.db_path) + s for s in ("", "-wal", "-shm", "-journal")]
        exclude.append(str(self._lock.path))
        handler = EventEnqueuer(self.queue.put, PathFilter(self.config.ignore), exclude)
        inotify: Any = None
        for root in self.config.roots:
            if not root.is_dir():
                warn(root, "not a directory; not watched")
                continue
            reason = None
            if self.options.poll:
                reason = "--poll"
            else:
                fstype = fs.network_fs_type(root, self.options.mounts_path)
                if fstype:
                    reason = f"on {fstype}: other hosts' writes raise no inotify events"
                else:
                    short = fs.inotify_shortfall(
                        root,
                        max_watches=self.options.max_watches,
                        in_use=self.options.watches_in_use,
                    )
                    if short:
                        self._say(short)
                        reason = "not enough inotify watches"
            if reason is None:
                try:
                    if inotify is None:
                        inotify = Observer()
                    inotify.schedule(
                        handler, str(root), recursive=True, event_filter=event_filter()
                    )
                    continue
                except OSError as exc:
                    if exc.errno not in (errno.ENOSPC, errno.EMFILE):
                        raise
                    self._say(f"{root}: inotify watch limit reached; polling this root instead")
                    reason = "inotify watch limit reached"
            poller = PollingObserver(timeout=self.options.interval)
            poller.schedule(handler, str(root), recursive=True)
            self._observers.append(poller)
            self.polled_roots.append(root)
            self._say(f"polling {root} every {self.options.interval:g} s ({reason})")
        if inotify is not None:
            self._observers.insert(0, inotify)
        for obs in self._observers:
            try:
                obs.start()
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EMFILE):
                    raise RuntimeError(
                        "inotify watch limit reached while starting; run with --poll"
                    ) from exc
                raise

    def _start_gpu(self) -> None:
        if not self.options.gpu:
            return
        backend = self.options.gpu_backend
        if backend is None:
            backend, reason = procs.open_gpu()
            if reason:
                self._say(reason)
        if backend is None:
            return
        from labbook.capture.gpu import sample_forever

        self._gpu_backend = backend

        def put(sample: Any) -> None:
            self.queue.put(sample)

        self._gpu_thread = threading.Thread(
            target=sample_forever,
            args=(backend, self.options.interval),
            kwargs={"stop": self._gpu_stop, "on_sample": put},
            name="labbook-watch-gpu",
            daemon=True,
        )
        self._gpu_thread.start()

    # -- stopping ------------------------------------------------------------------------

    def _stop_sources(self) -> None:
        self._gpu_stop.set()
        for obs in self._observers:
            with contextlib.suppress(Exception):
                obs.stop()
        for obs in self._observers:
            if obs.is_alive():
                obs.join(timeout=10)
        self._observers.clear()
        if self._gpu_thread is not None:
            self._gpu_thread.join(timeout=10)
            self._gpu_thread = None
        if self._gpu_backend is not None and self.options.gpu_backend is None:
            with contextlib.suppress(Exception):
                self._gpu_backend.close()

    def stop(self) -> None:
        """Stop the sources, flush everything pending, close the database, drop the lock."""
        if self._consumer is None:
            return
        self._stop_sources()
        self.queue.put(_STOP)
        self._consumer.join()
        self._consumer = None
        if self.pusher is not None:  # after the consumer wrote everything: a last round
            self.pusher.stop()
            self.pusher = None
        self.display.stop()
        self._lock.release()
        self.stopped.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the consumer ends (after --once, or a stop)."""
        if self._consumer is not None:
            self._consumer.join(timeout)
            return not self._consumer.is_alive()
        return True

    # -- the consumer ------------------------------------------------------------------------

    def _run(self, live: bool) -> None:
        ing = self.ingestor
        assert ing is not None
        deb = self.options.debounce
        changed = self._changed
        try:
            self._replay_journal(ing)
            try:
                ing.catching_up = True
                self._catch_up(ing)
            except Exception as exc:
                warn_exception(None, "catch-up scan failed", exc)
            finally:
                ing.catching_up = False
            self.ready.set()
            if not live:
                return
            next_tick = time.monotonic()
            stopping = False
            while not stopping:
                now = time.monotonic()
                due_at = deb.next_due()
                wake = min(next_tick, due_at) if due_at is not None else next_tick
                try:
                    items = [self.queue.get(timeout=max(0.0, wake - now))]
                except queue.Empty:
                    items = []
                while len(items) < 10000:
                    try:
                        items.append(self.queue.get_nowait())
                    except queue.Empty:
                        break
                now = time.monotonic()
                for item in items:
                    if item is _STOP:
                        stopping = True
                    elif isinstance(item, PathEvent):
                        self._note(ing, deb, changed, item, now)
                    else:
                        self._gpu_sample(ing, item)
                keys = deb.drain() if stopping else deb.due(time.monotonic())
                for key in keys:
                    self._process(ing, key, changed.pop(key, None))
                if self.queue.empty():
                    try:
                        ing.adopt_processes()
                    except Exception as exc:
                        warn_exception(None, "process lookup failed", exc)
                if stopping:
                    break
                if time.monotonic() >= next_tick:
                    self._tick(ing)
                    next_tick = time.monotonic() + self.options.tick
            ing.stop_all()
            self._save_gpu(ing, force=True)
        except BaseException as exc:  # the loop must never die silently
            self._error = exc
            # the last net, even in strict mode (the bug below was raised to here)
            warn_exception(None, "watch consumer stopped", exc, expected=(BaseException,))
        finally:
            self.ready.set()
            if self.notifier is not None:
                self.notifier.close()
            ing.store.close()

    def _note(
        self,
        ing: Ingestor,
        deb: Debouncer,
        changed: dict[Any, set[str] | None],
        ev: PathEvent,
        now: float,
    ) -> None:
        path = Path(ev.path)
        if ev.kind == "deleted" and ev.is_dir:
            for gone in ing.states.values():
                if gone.path == path or path in gone.path.parents:
                    deb.note(gone.path, now)
                    changed[gone.path] = None
        st = ing.owner(path)
        if st is not None:
            deb.note(st.path, now)
            if st.path not in changed:
                changed[st.path] = set()
            paths = changed[st.path]
            if paths is not None:
                paths.add(ev.path)
                if len(paths) > MAX_CHANGED:
                    changed[st.path] = None  # too many to list: look at everything
            return
        if ev.kind == "deleted":
            return
        where = path if ev.is_dir else path.parent
        deb.note(("locate", where), now, first_sight=True)

    def _process(self, ing: Ingestor, key: Any, paths: set[str] | None) -> None:
        try:
            if isinstance(key, tuple):
                where = key[1]
                st = ing.owner(where)
                if st is not None:
                    ing.ingest(st.path, None)
                    return
                for root in self.config.roots:
                    run_dir = locate(root, where)
                    if run_dir is not None:
                        ing.ingest(run_dir, None)
                        return
                return
            ing.ingest(key, paths)
        except Exception as exc:
            self._failed(key, exc)
            return
        self._retries.pop(key, None)

    def _failed(self, key: Any, exc: Exception) -> None:
        """Try a failed ingest again later: a busy store always (with backoff), anything
        else :data:`RETRY_OTHER` times; one warning for the first failure and one if
        it gives up (the run dir's next change tries again)."""
        import sqlite3

        from labbook.errors import StoreError

        where = key if not isinstance(key, tuple) else key[1]
        reason = exc.message if isinstance(exc, LabbookError) else f"{type(exc).__name__}: {exc}"
        busy = isinstance(exc, (StoreError, sqlite3.OperationalError))
        n = self._retries.get(key, 0) + 1
        if not busy and n > RETRY_OTHER:
            self._retries.pop(key, None)
            warn(where, f"cannot ingest ({reason}); gave up until it changes again")
            return
        self._retries[key] = n
        if n == 1 and (busy or isinstance(exc, LabbookError)):
            warn(where, f"cannot ingest now ({reason}); will retry")
        elif n == 1:  # not the store: a bug, whose traceback --debug shows
            warn_exception(where, "cannot ingest now; will retry", exc)
        delay = min(RETRY_FIRST_S * 2 ** (n - 1), RETRY_MAX_S)
        self.options.debounce.note(key, time.monotonic() + delay)
        self._changed[key] = None  # look at everything again

    def _tick(self, ing: Ingestor) -> None:
        try:
            ing.tick()
        except Exception as exc:
            warn_exception(None, "lifecycle check failed", exc)
        if self.notifier is not None:
            self.notifier.tick()
        if time.monotonic() >= self._journal_at:
            self._replay_journal(ing)
        self._save_gpu(ing)
        active = [st for st in ing.states.values() if st.active]
        self.display.refresh(active, self._gpu_lines)

    def _replay_journal(self, ing: Ingestor) -> None:
        """Write what launches left in the journal (at start, then every few seconds)."""
        from labbook.store.journal import replay_all

        self._journal_at = time.monotonic() + JOURNAL_S
        try:
            replay_all(ing.store)
        except Exception as exc:
            warn_exception(None, "cannot write the journal", exc, expected=(LabbookError,))

    # -- catch-up -----------------------------------------------------------------------------

    def _catch_up(self, ing: Ingestor) -> None:
        """Ingest what appeared or changed while no daemon ran; pick up runs it was following."""
        from labbook.sources.discover import discover

        known = ing.store.watch_signatures()
        roots = [r for r in self.config.roots if r.exists()]
        flt = PathFilter(self.config.ignore)
        seen: set[str] = set()
        for _rec, d in discover(roots):
            key = safe_text(str(d.path)) or str(d.path)  # as the store keeps source keys
            if flt.ignored(key):
                continue
            seen.add(key)
            entry = known.get(key)
            if (
                entry is not None
                and not entry[2]
                and entry[1]
                and entry[1] == dir_signature(d.path)
            ):
                continue  # recorded, finished, unchanged
            try:
                ing.ingest(d.path, None, live=False)
            except Exception as exc:
                self._failed(d.path, exc)
        for row in ing.store.active_watch_runs():
            path = Path(row["path"] or "")
            if row["source_key"] in seen or path in ing.states:
                continue
            if not path.exists():
                ing.store.mark_missing(row["id"])
                if row["status"] == "running":
                    ing.store.set_status(row["id"], "unknown", reason="daemon: run dir gone")
                ing.store.set_watch_state(row["id"], active=0)

    # -- GPUs ------------------------------------------------------------------------------------

    def _gpu_sample(self, ing: Ingestor, sample: Any) -> None:
        from labbook.capture.gpu import GpuAccumulator, attribute, device_line

        try:
            self._gpu_lines = [device_line(g) for g in sample.gpus]
            roots = {st.run_id: st.pid for st in ing.states.values() if st.active and st.pid}
            shares = attribute(sample, roots)
            by_id = {st.run_id: st for st in ing.states.values()}
            for run_id, share in shares.items():
                acc = self._gpu_acc.get(run_id)
                if acc is None:
                    acc = self._gpu_acc[run_id] = GpuAccumulator()
                acc.add(share)
                st = by_id.get(run_id)
                if st is not None:
                    mems = [d.memory_mib for d in share.devices if d.memory_mib is not None]
                    utils = [
                        d.reading.util_pct for d in share.devices if d.reading.util_pct is not None
                    ]
                    st.gpu = {
                        "memory_mib": sum(mems) if mems else None,
                        "util_pct": sum(utils) / len(utils) if utils else None,
                    }
        except Exception as exc:
            warn_exception(None, "GPU sample not recorded", exc, expected=(LabbookError,))

    def _save_gpu(self, ing: Ingestor, *, force: bool = False) -> None:
        now = time.monotonic()
        by_id = {st.run_id: st for st in ing.states.values()}
        for run_id, acc in list(self._gpu_acc.items()):
            st = by_id.get(run_id)
            ended = st is None or not st.active
            if not force and not ended and now - self._gpu_saved.get(run_id, 0.0) < GPU_SAVE_S:
                continue
            summary = acc.summary()
            if summary is not None:
                summary["series"] = acc.encoded_series()
                ing.store.set_gpu(run_id, summary)
            self._gpu_saved[run_id] = now
            if ended:
                del self._gpu_acc[run_id]


def run_daemon(
    db_path: str | os.PathLike[str] | None,
    config: WatchConfig,
    *,
    display: Any = None,
    options: DaemonOptions | None = None,
    once: bool = False,
    on_ready: Callable[[Daemon], None] | None = None,
) -> Daemon:
    """Run until Ctrl-C or SIGTERM (or, with ``once``, until the catch-up scan is done)."""
    daemon = Daemon(db_path, config, display=display, options=options)
    if once:
        daemon.start(live=False)
        daemon.wait()
        daemon.stop()
        return daemon
    stop = threading.Event()
    previous: Any = None
    in_main = threading.current_thread() is threading.main_thread()
    if in_main:
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        daemon.start()
        if on_ready:
            on_ready(daemon)
        try:
            while not stop.wait(0.5):
                if not daemon.wait(0):
                    continue
                break  # the consumer ended by itself (an error)
        except KeyboardInterrupt:
            pass
    finally:
        daemon.stop()
        if in_main:
            signal.signal(signal.SIGTERM, previous)
    return daemon


def active_runs(daemon: Daemon) -> Sequence[RunState]:
    ing = daemon.ingestor
    return [st for st in ing.states.values() if st.active] if ing else []
