"""``labbook watch``: the command line of the daemon (see :mod:`labbook.sources.watch`).

Only click is imported at module level: ``labbook --help`` lists this command
without loading watchdog, psutil or NVML.
"""

from __future__ import annotations

import sys

import click


@click.command("watch")
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--log", "log_mode", is_flag=True, help="Plain line output (no live pane).")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    default=2.0,
    show_default=True,
    help="Seconds between GPU samples (and between polls of polled roots).",
)
@click.option("--poll", is_flag=True, help="Poll every root instead of using inotify.")
@click.option(
    "--ignore", multiple=True, metavar="GLOB", help="Also ignore files matching GLOB (repeatable)."
)
@click.option("--once", is_flag=True, help="Catch-up scan only, then exit (for cron and tests).")
@click.option(
    "--notify",
    metavar="CMD|URL",
    help="When a run fails, diverges or is killed: run CMD (the event in LABBOOK_* "
    "variables and as JSON on stdin) or POST the JSON to an http(s) URL.",
)
@click.option(
    "--notify-on",
    metavar="EVENTS",
    help="Comma-separated events to notify: finished, failed, diverged, killed, unknown "
    "(default: failed,diverged,killed, or `on` of [notify]).",
)
@click.pass_context
def watch_cmd(
    ctx: click.Context,
    paths: tuple[str, ...],
    log_mode: bool,
    interval: float,
    poll: bool,
    ignore: tuple[str, ...],
    once: bool,
    notify: str | None,
    notify_on: str | None,
) -> None:
    """Record every run below PATHS as it is written, until Ctrl-C.

    PATHS default to the `roots` of [watch] in ~/.config/labbook/config.toml, else
    the current directory. A catch-up scan first records what changed while no
    daemon ran; then new runs are captured at first sight (git state, process,
    environment), their metrics tailed live, and their end status recorded. One
    daemon per database. On a terminal a live pane shows active runs, events and
    GPUs; --log prints one line per event instead. --notify (or [notify] in
    config.toml) tells a command or a URL when a run goes wrong; nothing else
    ever leaves the machine.
    """
    from labbook.errors import UsageError
    from labbook.sources.watch.config import load_config, notify_config
    from labbook.sources.watch.daemon import DaemonOptions, run_daemon
    from labbook.sources.watch.display import LiveDisplay, LogDisplay
    from labbook.sources.watch.notify import EVENTS

    config = load_config(paths, ignore)
    live_pane = not log_mode and not once and sys.stdout.isatty()
    display = LiveDisplay() if live_pane else LogDisplay()
    on = [e.strip() for e in notify_on.split(",") if e.strip()] if notify_on else None
    bad = [e for e in on or [] if e not in EVENTS]
    if bad:
        raise UsageError(f"--notify-on: unknown event {bad[0]!r} (known: {', '.join(EVENTS)})")
    options = DaemonOptions(interval=interval, poll=poll, notify=notify_config(notify, on))
    from labbook.store.remote.config import RemoteConfig

    options.remote = RemoteConfig.load()  # [remote]: a push thread when a url is set
    if not once:
        roots = ", ".join(str(r) for r in config.roots)
        display.message(f"watching {roots} (Ctrl-C to stop)")
    daemon = run_daemon(ctx.obj["db"], config, display=display, options=options, once=once)
    ing = daemon.ingestor
    if once and ing is not None:
        n = len(ing.states)
        click.echo(f"caught up: {n} run{'s' if n != 1 else ''} seen")
    elif not once:
        display.message("stopped; everything recorded")
