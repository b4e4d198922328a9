"""``labbook watch --notify CMD|URL``: say so when a run fails, diverges or is killed.

On each configured event (``[notify] on``: failed, diverged, killed by default;
finished and unknown on request) the daemon builds one JSON object from the
*stored* record of the run — what the store keeps is already redacted, so a
notification carries no more than ``labbook show --json`` would — with a one-line
``text`` for chat::

    k3f9a2c1 diverged at step 212 (train/loss=nan) · lr 5 · lesson: "warm up first"

(the run's id and what happened, the config keys it changed against the run before
it in the same repository, its newest lesson note) and structured fields (id,
name, status, status_reason, failure, step, metrics' last values, host, path).

Delivery never blocks ingest: the consumer thread only builds the event and puts
it on a bounded queue; one worker thread delivers. A command (a shell command
line) gets the event in its environment (``LABBOOK_EVENT``, ``LABBOOK_RUN_ID``,
``LABBOOK_RUN_NAME``, ``LABBOOK_STATUS``, ``LABBOOK_MESSAGE``, ``LABBOOK_TEXT``,
``LABBOOK_PATH``) and as JSON on stdin; an ``http(s)://`` URL gets the JSON POSTed
(``urllib``, a few seconds' timeout) — the only network traffic labbook makes, and
only when configured. A failing hook (non-zero exit, timeout, HTTP error, refused
connection) is one warning line, never fatal.

Repeats are throttled: one event per run and status; beyond ``burst`` events in
``throttle_s`` seconds the rest are counted and sent as one summary
("… and 12 more: …") when the window ends.
"""

from __future__ import annotations

import json
import os
import queue
import shlex
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from labbook.warn import warn

#: Events a hook can be asked for: a run's final status (and diverged while it runs).
EVENTS = ("finished", "failed", "diverged", "killed", "unknown")
#: What goes wrong is worth an interruption; a run that finished is not, by default.
DEFAULT_ON = ("failed", "diverged", "killed")
DEFAULT_THROTTLE_S = 60.0
DEFAULT_BURST = 5
DEFAULT_TIMEOUT_S = 5.0
#: Events waiting for the worker; beyond, new ones are dropped (one warning).
QUEUE_SIZE = 64
#: At most this many seconds at exit for events still queued.
DRAIN_S = 10.0


@dataclass
class NotifyConfig:
    """``[notify]`` of config.toml, or ``watch --notify``."""

    target: str | None = None  # a command line, or an http(s) URL
    on: frozenset[str] = field(default_factory=lambda: frozenset(DEFAULT_ON))
    throttle_s: float = DEFAULT_THROTTLE_S
    burst: int = DEFAULT_BURST
    timeout_s: float = DEFAULT_TIMEOUT_S

    @property
    def is_url(self) -> bool:
        return bool(self.target) and self.target.split("://", 1)[0].lower() in ("http", "https")  # type: ignore[union-attr]


def load_notify(
    section: Mapping[str, Any],
    target: str | None = None,
    on: Iterable[str] | None = None,
    *,
    where: Any = None,
) -> NotifyConfig:
    """The notify config: ``target``/``on`` from the command line win over the
    section's ``command``/``url``/``on``; bad values are one warning each (naming
    ``where``, the config file) and the default applies."""
    cfg = NotifyConfig()
    raw = target or section.get("url") or section.get("command")
    if raw is not None and not isinstance(raw, str):
        warn(where, "[notify] url/command must be a string; notify is off")
        raw = None
    cfg.target = raw or None
    events = list(on) if on is not None else section.get("on")
    if events is not None:
        if isinstance(events, str):
            events = [e.strip() for e in events.split(",") if e.strip()]
        if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
            warn(where, "[notify] on must be a list of event names; using the default")
        else:
            bad = [e for e in events if e not in EVENTS]
            if bad:
                warn(where, f"[notify] unknown events {bad} (known: {', '.join(EVENTS)})")
            cfg.on = frozenset(e for e in events if e in EVENTS)
    for key, kind, low in (
        ("throttle_s", float, 0.0),
        ("timeout_s", float, 0.1),
        ("burst", int, 1),
    ):
        value = section.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < low:
            warn(where, f"[notify] {key} must be a number >= {low:g}; using the default")
            continue
        setattr(cfg, key, kind(value))
    return cfg


# -- the event ------------------------------------------------------------------------


def _short(key: str) -> str:
    """``optimizer.lr`` -> ``lr`` (the last part is what people call it)."""
    return key.rsplit(".", 1)[-1] or key


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, str):
        return value if len(value) <= 24 else value[:23] + "…"
    return json.dumps(value, default=str)[:24]


def changed_params(store: Any, rec: Mapping[str, Any], limit: int = 3) -> list[tuple[str, Any]]:
    """The config keys (and this run's values) that differ from the run before it in
    the same repository (``labbook diff RUN``'s baseline): what distinguishes it."""
    from labbook.analysis.diff import nearest_earlier
    from labbook.errors import LabbookError
    from labbook.store.configsig import outside_signature

    try:
        other = store.configs([nearest_earlier(store, rec["id"])])
    except LabbookError:
        return []
    before: dict[str, Any] = next(iter(other.values()), {})
    mine = rec.get("config") or {}
    out = [
        (k, v)
        for k, v in mine.items()
        if not outside_signature(k) and (k not in before or before[k] != v)
    ]
    out.sort(key=lambda kv: (len(kv[0]), kv[0]))
    return out[:limit]


def _lesson(rec: Mapping[str, Any]) -> str | None:
    notes = [n for n in rec.get("notes") or [] if n.get("kind") == "lesson"]
    if not notes:
        return None
    text = " ".join(str(notes[-1].get("text") or "").split())
    return text if len(text) <= 80 else text[:79] + "…"


def _what(rec: Mapping[str, Any], status: str, step: int | None) -> str:
    """``diverged at step 212 (train/loss=nan)``, ``failed at step 80: CUDA out of memory``."""
    failure = rec.get("failure") or {}
    step = failure.get("step") if failure.get("step") is not None else step
    what = status + (f" at step {step}" if step is not None else "")
    metrics = rec.get("metrics") or {}
    if status == "diverged":
        bad = [(t, m) for t, m in metrics.items() if m.get("nonfinite_step") is not None]
        if bad:
            tag, m = min(bad, key=lambda tm: tm[1]["nonfinite_step"])
            last = m.get("last")
            shown = last if isinstance(last, str) else "nan"
            return f"{what} ({tag}={shown})"
    if failure.get("message") and status != "finished":
        message = " ".join(str(failure["message"]).split())
        return f"{what}: {message[:100]}"
    if status == "finished":
        from labbook.analysis.metrics import key_metrics

        finals = []
        for tag in key_metrics([rec], limit=2):
            last = metrics[tag].get("last")
            if isinstance(last, (int, float)):
                finals.append(f"{tag} {last:.4g}")
        if finals:
            return f"{what} ({', '.join(finals)})"
    return what


def build_event(store: Any, run_id: str, status: str, *, step: int | None = None) -> dict[str, Any]:
    """The event's JSON object, from the stored (redacted) record of ``run_id``."""
    rec = store.record(run_id, heavy=False)
    params = changed_params(store, rec)
    lesson = _lesson(rec)
    parts = [f"{rec['id']} {_what(rec, status, step)}"]
    if params:
        parts.append(", ".join(f"{_short(k)} {_fmt(v)}" for k, v in params))
    if lesson:
        parts.append(f'lesson: "{lesson}"')
    metrics = rec.get("metrics") or {}
    return {
        "event": status,
        "text": " · ".join(parts),
        "id": rec["id"],
        "name": rec.get("name"),
        "status": rec.get("status"),
        "status_reason": rec.get("status_reason"),
        "failure": rec.get("failure"),
        "step": (rec.get("failure") or {}).get("step") or step,
        "metrics": {tag: m.get("last") for tag, m in metrics.items()},
        "params": dict(params),
        "lesson": lesson,
        "host": rec.get("host"),
        "user": rec.get("user"),
        "path": rec.get("path"),
        "started_at": rec.get("started_at"),
        "ended_at": rec.get("ended_at"),
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def summary_event(count: int, events: list[dict[str, Any]]) -> dict[str, Any]:
    """One event standing for ``count`` that the rate limit held back."""
    ids = [e["id"] for e in events]
    kinds: dict[str, int] = {}
    for e in events:
        kinds[e["event"]] = kinds.get(e["event"], 0) + 1
    what = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
    shown = ", ".join(ids[:10]) + (" …" if len(ids) > 10 else "")
    return {
        "event": "summary",
        "text": f"… and {count} more ({what}): {shown}",
        "count": count,
        "ids": ids,
        "events": kinds,
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


# -- delivery -----------------------------------------------------------------------


def hook_env(event: Mapping[str, Any]) -> dict[str, str]:
    """The variables a command hook gets (besides the daemon's own environment)."""
    failure = event.get("failure") or {}
    values = {
        "LABBOOK_EVENT": event.get("event"),
        "LABBOOK_RUN_ID": event.get("id") or ",".join(event.get("ids") or []),
        "LABBOOK_RUN_NAME": event.get("name"),
        "LABBOOK_STATUS": event.get("status") or event.get("event"),
        "LABBOOK_STATUS_REASON": event.get("status_reason"),
        "LABBOOK_MESSAGE": failure.get("message") or event.get("text"),
        "LABBOOK_TEXT": event.get("text"),
        "LABBOOK_STEP": event.get("step"),
        "LABBOOK_PATH": event.get("path"),
        "LABBOOK_HOST": event.get("host"),
    }
    return {k: str(v) for k, v in values.items() if v is not None}


def deliver(cfg: NotifyConfig, event: Mapping[str, Any]) -> str | None:
    """Send one event; None when it went out, else why not (one line)."""
    body = json.dumps(event, ensure_ascii=False, default=str).encode("utf-8")
    target = cfg.target or ""
    if cfg.is_url:
        import urllib.error
        import urllib.request

        request = urllib.request.Request(
            target,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "labbook-notify"},
        )
        try:
            with urllib.request.urlopen(request, timeout=cfg.timeout_s) as response:
                response.read(65536)
        except urllib.error.HTTPError as exc:
            return f"POST {_where(target)}: HTTP {exc.code} {exc.reason}"
        except urllib.error.URLError as exc:
            return f"POST {_where(target)}: {exc.reason}"
        except (OSError, ValueError) as exc:  # a timeout, a reset, a bad URL
            return f"POST {_where(target)}: {exc or type(exc).__name__}"
        return None
    try:
        proc = subprocess.run(
            target,
            shell=True,  # the user's own configured command line
            input=body,
            env={**os.environ, **hook_env(event)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=cfg.timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"command {_cmd(target)} timed out after {cfg.timeout_s:g} s"
    except OSError as exc:
        return f"command {_cmd(target)}: {exc.strerror or exc}"
    if proc.returncode != 0:
        said = " ".join(proc.stderr.decode("utf-8", "replace").split())[:120]
        return f"command {_cmd(target)} exited {proc.returncode}" + (f": {said}" if said else "")
    return None


def _where(url: str) -> str:
    """The URL without credentials or query (a webhook's token often sits there)."""
    from urllib.parse import urlsplit

    try:
        u = urlsplit(url)
        host = u.hostname or ""
        port = f":{u.port}" if u.port else ""
    except ValueError:
        return "the notify URL"
    return f"{u.scheme}://{host}{port}{u.path if len(u.path) <= 1 else '/…'}"


def _cmd(command: str) -> str:
    try:
        first = shlex.split(command)[0]
    except (ValueError, IndexError):
        first = command.split(" ", 1)[0]
    return f"'{first}'"


class Notifier:
    """Builds events on the caller's thread, delivers them on its own.

    ``event(kind, run_id, step)`` is called by the daemon's consumer thread (which
    owns the store); it filters, de-duplicates and rate-limits, reads the record and
    queues the event. ``tick()`` sends the summary of a window that held events
    back; ``close()`` delivers what is queued (within :data:`DRAIN_S`) and stops.
    """

    def __init__(
        self,
        cfg: NotifyConfig,
        store: Any,
        *,
        clock: Callable[[], float] = time.monotonic,
        send: Callable[[NotifyConfig, Mapping[str, Any]], str | None] = deliver,
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.clock = clock
        self.send = send
        self.queue: queue.Queue[Any] = queue.Queue(QUEUE_SIZE)
        self.fired: set[tuple[str, str]] = set()
        self.window_start = -1e18
        self.in_window = 0
        self.held: list[dict[str, Any]] = []
        self.sent = 0
        self.failed = 0
        self._dropped = 0
        self._thread = threading.Thread(target=self._work, name="labbook-notify", daemon=True)
        self._thread.start()

    def wants(self, kind: str) -> bool:
        return kind in self.cfg.on

    def event(self, kind: str, run_id: str, *, step: int | None = None) -> None:
        if kind not in self.cfg.on or not run_id or (run_id, kind) in self.fired:
            return
        self.fired.add((run_id, kind))
        try:
            event = build_event(self.store, run_id, kind, step=step)
        except Exception as exc:  # a record that cannot be read: say so, go on
            from labbook.warn import warn_exception

            warn_exception(None, f"notify: cannot describe run {run_id}", exc)
            return
        now = self.clock()
        self.tick(now)
        if now - self.window_start >= self.cfg.throttle_s:
            self.window_start, self.in_window = now, 0
        if self.in_window >= self.cfg.burst:
            self.held.append(event)
            return
        self.in_window += 1
        self._put(event)

    def tick(self, now: float | None = None) -> None:
        """At the end of a window that held events back, send their summary."""
        now = self.clock() if now is None else now
        if self.held and now - self.window_start >= self.cfg.throttle_s:
            held, self.held = self.held, []
            self.window_start, self.in_window = now, 1
            self._put(summary_event(len(held), held))

    def _put(self, event: dict[str, Any]) -> None:
        try:
            self.queue.put_nowait(event)
        except queue.Full:
            self._dropped += 1
            if self._dropped == 1:
                warn(None, "notify: hook too slow, events dropped (the queue is full)")

    def _work(self) -> None:
        while True:
            event = self.queue.get()
            if event is None:
                return
            try:
                why = self.send(self.cfg, event)
            except Exception as exc:  # the worker must outlive any one event
                why = f"{type(exc).__name__}: {exc}"
            if why is None:
                self.sent += 1
            else:
                self.failed += 1
                warn(None, f"notify failed: {why}")

    def close(self, drain_s: float = DRAIN_S) -> None:
        """Send what is held and queued (within ``drain_s``), then stop the worker."""
        if self.held:
            held, self.held = self.held, []
            self._put(summary_event(len(held), held))
        deadline = time.monotonic() + drain_s
        while True:
            try:
                self.queue.put(None, timeout=max(0.01, deadline - time.monotonic()))
                break
            except queue.Full:
                if time.monotonic() >= deadline:
                    break
        self._thread.join(max(0.0, deadline - time.monotonic()))
