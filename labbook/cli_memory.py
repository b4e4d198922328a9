"""The commands that remember mistakes: ``run``, ``note``, ``tag``, ``search``, ``check``, ``hooks``.

Each is a thin layer over the library (:mod:`labbook.launch`, :mod:`labbook.search`,
:mod:`labbook.check`, the store's notes and tags). Installing the shell hooks is
plain file editing (one marked block in the rc file) and lives here.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import click

from labbook.cli import _echo_json, _filter_options, _store, json_option
from labbook.errors import LabbookError, StoreError, UsageError
from labbook.textsafe import printable

# --------------------------------------------------------------------------- #
# run
# --------------------------------------------------------------------------- #


def _print_warnings(warnings: list[Any], *, err: bool) -> None:
    from labbook.check import format_warning

    for w in warnings:
        for i, line in enumerate(format_warning(w)):
            click.secho(line, err=err, fg="yellow" if i == 0 else None, bold=i == 0)


def _db_path(ctx: click.Context) -> Any:
    from labbook.paths import default_db_path

    db = ctx.obj.get("db")
    return Path(db).expanduser() if db else default_db_path()


def _launch_store(ctx: click.Context) -> Any:
    """The store for ``labbook run``, or None (one line said) when it cannot be opened:
    the command runs all the same and its record waits in the journal."""
    from labbook.warn import warn

    try:
        return _store(ctx)
    except Exception as exc:
        reason = exc.message if isinstance(exc, LabbookError) else f"{type(exc).__name__}: {exc}"
        warn(None, f"cannot open the notebook ({reason}); the run is kept in the journal")
        return None


def _check_before(ctx: click.Context, argv: list[str], config: dict[str, Any]) -> list[Any]:
    """Warnings for ``argv`` (empty when there is no database yet)."""
    from labbook.capture.git import find_repo_root
    from labbook.check import check

    try:
        store = _store(ctx, create=False)
    except StoreError:
        return []
    with store:
        store.set_busy_timeout(0.2)  # reads only; never wait long before the command
        return check(
            store,
            repo_root=find_repo_root(os.getcwd()),
            config=config,
            argv=argv,
            cwd=os.getcwd(),
        )


@click.command(
    "run",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.option("--name", help="Name of the run (default: the run directory's or none).")
@click.option("--tag", "-t", "tags", multiple=True, help="Tag the run (repeatable).")
@click.option("--note", help="A note to attach to the run at launch.")
@click.option("--no-check", is_flag=True, help="Do not look for past runs like this one first.")
@click.option(
    "--strict", is_flag=True, help="Do not start an exact repeat of a config that failed (exit 1)."
)
@click.option("--no-git", is_flag=True, help="Do not record git state.")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_context
def run_cmd(
    ctx: click.Context,
    name: str | None,
    tags: tuple[str, ...],
    note: str | None,
    no_check: bool,
    strict: bool,
    no_git: bool,
    command: tuple[str, ...],
) -> None:
    """Run COMMAND and record it as a run: labbook run [OPTIONS] -- CMD ARGS...

    Records argv, cwd, git state, environment (secrets redacted), packages and
    seed at launch; passes the terminal through (a pty when stdout is a
    terminal); keeps the head and tail of the output; records the exit code or
    signal, the duration and why it failed; and joins the run directory the
    command writes, so both are one run. Exits with the command's exit code.
    Past runs like this one that went wrong are shown first (see `labbook check`).
    """
    from labbook.launch import launch

    argv = list(command)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise UsageError("no command to run", hint="labbook run -- python train.py --lr 0.1")
    if not no_check:
        try:
            warnings = _check_before(ctx, argv, {})
        except Exception as exc:  # a broken check must not stop the command
            from labbook.warn import warn

            warn(None, f"cannot check past runs ({type(exc).__name__}: {exc})")
            warnings = []
        _print_warnings(warnings, err=True)
        if strict and any(w.repeat_of_failure for w in warnings):
            raise StrictRepeat()
    store = _launch_store(ctx)
    try:
        result = launch(
            store,
            argv,
            name=name,
            tags=tags,
            note=note,
            git=not no_git,
            db_path=_db_path(ctx),
        )
    finally:
        if store is not None:
            store.close()
    if result.journal:
        click.echo(
            f"labbook: the notebook was busy; run {result.run_id} is kept in {result.journal}"
            " and will be recorded by the next labbook command",
            err=True,
        )
    how = "finished" if result.failure is None and result.exit_code == 0 else "ended"
    detail = (
        printable(f"{result.failure.kind}: {result.failure.message}") if result.failure else "ok"
    )
    click.echo(
        f"labbook: run {result.run_id} {how} ({detail}; exit {result.exit_code},"
        f" {result.duration:.1f} s)",
        err=True,
    )
    ctx.exit(result.exit_code)


class StrictRepeat(LabbookError):
    """``--strict``: the config is an exact repeat of one that failed."""

    def __init__(self) -> None:
        super().__init__(
            "this is an exact repeat of a config that failed (--strict)",
            hint="change the config, or run without --strict",
        )


# --------------------------------------------------------------------------- #
# note, tag
# --------------------------------------------------------------------------- #


@click.command("note")
@click.argument("run", required=False)
@click.argument("text", required=False)
@click.option("--failure", "kind", flag_value="failure", help="TEXT says why the run failed.")
@click.option("--lesson", "kind", flag_value="lesson", help="TEXT says what to do differently.")
@click.option("--delete", "delete_id", type=int, help="Delete note NOTE_ID (a tombstone stays).")
@click.option("--author", help="Author (default: your user name).")
@click.pass_context
def note_cmd(
    ctx: click.Context,
    run: str | None,
    text: str | None,
    kind: str | None,
    delete_id: int | None,
    author: str | None,
) -> None:
    """Attach a note to RUN: labbook note RUN TEXT (or TEXT on stdin).

    Notes are appended with time and author and never edited; --failure marks a
    reason for a failure, --lesson what to do differently next time (both are
    shown by `labbook check`). --delete NOTE_ID hides a note, keeping a tombstone.
    """
    from labbook.query import resolve

    if delete_id is not None:
        with _store(ctx, create=False) as store:
            note = store.note(delete_id)
            if note is None or note["deleted_at"] is not None:
                raise UsageError(f"no note {delete_id}")
            store.delete_note(delete_id)
        click.echo(f"deleted note {delete_id} of run {note['run_id']}")
        return
    if run is None:
        raise UsageError("which run?", hint="labbook note RUN TEXT")
    if text is None or text == "-":
        if sys.stdin is None or sys.stdin.isatty():
            raise UsageError("no note text", hint="labbook note RUN TEXT, or pipe the text in")
        text = sys.stdin.read()
    text = text.strip()
    if not text:
        raise UsageError("the note is empty")
    with _store(ctx, create=False) as store:
        run_id = resolve(store, run)
        note_id = store.add_note(run_id, text, kind=kind or "note", author=author)
    click.echo(f"note {note_id} ({kind or 'note'}) added to run {run_id}")


@click.command("tag")
@click.argument("run")
@click.argument("tags", nargs=-1, required=True)
@click.option("--remove", is_flag=True, help="Remove the tags instead.")
@click.pass_context
def tag_cmd(ctx: click.Context, run: str, tags: tuple[str, ...], remove: bool) -> None:
    """Tag RUN with TAGS (or --remove them)."""
    from labbook.query import resolve

    bad = [t for t in tags if not t.strip() or any(c.isspace() for c in t)]
    if bad:
        raise UsageError(f"a tag cannot be empty or contain spaces: {bad[0]!r}")
    with _store(ctx, create=False) as store:
        run_id = resolve(store, run)
        if remove:
            store.remove_tags(run_id, tags)
        else:
            store.add_tags(run_id, tags)
        now = store.tags_of([run_id])[run_id]
    click.echo(f"{run_id}: {printable(' '.join(now)) if now else '(no tags)'}")


# --------------------------------------------------------------------------- #
# search
# --------------------------------------------------------------------------- #


@click.command("search")
@click.argument("query", nargs=-1, required=True)
@_filter_options
@json_option
@click.pass_context
def search_cmd(
    ctx: click.Context,
    query: tuple[str, ...],
    status: tuple[str, ...],
    framework: tuple[str, ...],
    tag: tuple[str, ...],
    where: tuple[str, ...],
    since: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Full-text search over notes, failures, commands, tags, config and run names.

    Every word must occur in the run (in any of those); "double quotes" keep a
    phrase. Matching is by substring and case-insensitive, in any script (Chinese
    included). Takes the same filters as `labbook ls`.
    """
    from labbook.query import RunFilter, parse_since, parse_where
    from labbook.search import MARK_END, MARK_START, search

    flt = RunFilter(
        status=list(status),
        framework=list(framework),
        tags=list(tag),
        where=parse_where(list(where)),
        since=parse_since(since) if since else None,
        limit=None,
    )
    with _store(ctx, create=False) as store:
        hits = search(store, " ".join(query), flt, limit=limit or 0)
        rows = {r: store.run_row(r) for r in (h.run_id for h in hits)}
        records = {
            r["id"]: r
            for r in store.records([row for row in rows.values() if row is not None], heavy=False)
        }
    if as_json:
        out = []
        for h in hits:
            rec = dict(records.get(h.run_id, {"id": h.run_id}))
            rec["search"] = {"score": h.score, "field": h.field, "snippet": h.snippet}
            out.append(rec)
        _echo_json(out)
        return
    if not hits:
        click.echo("no runs match", err=True)
        return
    mark = re.compile(re.escape(MARK_START) + "(.*?)" + re.escape(MARK_END))
    for h in hits:
        rec = records.get(h.run_id, {})
        head = f"{h.run_id}  {rec.get('name') or ''}  {rec.get('status', '')}".rstrip()
        click.secho(printable(head), bold=True)
        snippet = mark.sub(
            lambda m: click.style(m.group(1), fg="yellow", bold=True), printable(h.snippet)
        )
        click.echo(f"  {printable(h.field)}: {snippet}")


# --------------------------------------------------------------------------- #
# check
# --------------------------------------------------------------------------- #


@click.command(
    "check",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.option(
    "--config", "config_file", type=click.Path(dir_okay=False), help="The config the run will use."
)
@click.option("--strict", is_flag=True, help="Exit 1 on an exact repeat of a failed config.")
@click.option("--line", hidden=True, help="The command as one shell line (for the shell hooks).")
@click.option("--hook", is_flag=True, hidden=True, help="Quiet mode for the shell hooks.")
@json_option
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def check_cmd(
    ctx: click.Context,
    config_file: str | None,
    strict: bool,
    line: str | None,
    hook: bool,
    as_json: bool,
    command: tuple[str, ...],
) -> None:
    """Before a run: show past runs like it that failed, diverged or have lessons.

    labbook check [--config FILE] [-- CMD ARGS...]

    Looks at runs of the same git repository (else the same directory) whose
    config is the same as or close to this one (from FILE, Hydra key=value args
    and --key value args); prints how they ended, what differed and their notes.
    Exits 0 with warnings; --strict exits 1 on an exact repeat of a failed config.
    """
    from labbook.check import load_config_file, split_line

    argv = list(command)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if line is not None:
        argv = split_line(line)
    try:
        config = load_config_file(config_file) if config_file else {}
        warnings = _check_before(ctx, argv, config)
    except LabbookError:
        if hook:
            return  # a shell hook never complains
        raise
    if as_json:
        _echo_json([w.to_json() for w in warnings])
    elif warnings:
        _print_warnings(warnings, err=False)
    elif not hook:
        click.echo("labbook: no past runs like this one went wrong", err=True)
    if strict and any(w.repeat_of_failure for w in warnings):
        ctx.exit(1)


# --------------------------------------------------------------------------- #
# hooks
# --------------------------------------------------------------------------- #

BLOCK_BEGIN = "# >>> labbook hooks >>>"
BLOCK_END = "# <<< labbook hooks <<<"
_BLOCK = re.compile(re.escape(BLOCK_BEGIN) + r".*?" + re.escape(BLOCK_END) + r"\n?", re.DOTALL)
SYSTEMD_UNIT = "labbook-watch.service"


def _hooks_source() -> Path:
    """The ``hooks/`` folder shipped with labbook."""
    import importlib.util

    here = Path(__file__).resolve().parent
    spec = importlib.util.find_spec("labbook_hooks")  # installed from the repo's hooks/
    shipped = [Path(spec.origin).parent] if spec and spec.origin else []
    for cand in (*shipped, here.parent / "hooks"):
        if (cand / "labbook.bash").is_file():
            return cand
    raise LabbookError(
        "the shell hook files are not part of this installation",
        hint="install labbook from its source tree (pip install -e .)",
    )


def _data_home() -> Path:
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")


def _config_home() -> Path:
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")


def _rc_file(shell: str) -> Path:
    if shell == "zsh":
        return Path(os.environ.get("ZDOTDIR") or Path.home()) / ".zshrc"
    return Path.home() / ".bashrc"


def _default_shell() -> str:
    name = os.path.basename(os.environ.get("SHELL", ""))
    return name if name in ("bash", "zsh") else "bash"


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def install_hooks(shell: str, *, systemd: bool = False) -> list[str]:
    """Install (or refresh) the shell hook; return what was done, one line each.

    The hook script is copied to ``$XDG_DATA_HOME/labbook/hooks/`` and the rc file
    gets one marked block that sources it; an existing block is replaced in place.
    """
    src = _hooks_source()
    done: list[str] = []
    dest_dir = _data_home() / "labbook" / "hooks"
    dest_dir.mkdir(parents=True, exist_ok=True)
    script = dest_dir / f"labbook.{shell}"
    shutil.copyfile(src / f"labbook.{shell}", script)
    done.append(f"wrote {script}")
    # Split on spaces by the hook (it may be "python -m labbook"): no quoting inside.
    # `python -m labbook.check` is the hooks' fast path (no click, no CLI: ~half the start-up).
    labbook_cmd = f"{sys.executable} -m labbook.check"
    block = (
        f"{BLOCK_BEGIN}\n"
        "# Added by `labbook hooks install`; `labbook hooks uninstall` removes this block.\n"
        f': "${{LABBOOK_HOOK_CMD:={labbook_cmd}}}"\n'
        f"[ -f {_quote(str(script))} ] && . {_quote(str(script))}\n"
        f"{BLOCK_END}\n"
    )
    rc = _rc_file(shell)
    old = rc.read_text(encoding="utf-8") if rc.exists() else ""
    if _BLOCK.search(old):
        new = _BLOCK.sub(lambda _: block, old, count=1)
    else:
        new = old + ("" if not old or old.endswith("\n") else "\n") + block
    if new != old:
        rc.parent.mkdir(parents=True, exist_ok=True)
        rc.write_text(new, encoding="utf-8")
        done.append(f"updated {rc}")
    else:
        done.append(f"{rc} already has the labbook block")
    if systemd:
        unit_dir = _config_home() / "systemd" / "user"
        unit_dir.mkdir(parents=True, exist_ok=True)
        text = (src / SYSTEMD_UNIT).read_text(encoding="utf-8")
        text = text.replace("@LABBOOK@", f"{sys.executable} -m labbook")
        (unit_dir / SYSTEMD_UNIT).write_text(text, encoding="utf-8")
        done.append(f"wrote {unit_dir / SYSTEMD_UNIT}")
        done.append(f"start it with: systemctl --user enable --now {SYSTEMD_UNIT}")
    return done


def uninstall_hooks(shell: str, *, systemd: bool = False) -> list[str]:
    """Remove the marked block from the rc file and the copied hook script."""
    done: list[str] = []
    rc = _rc_file(shell)
    if rc.exists():
        old = rc.read_text(encoding="utf-8")
        new = _BLOCK.sub("", old)
        if new != old:
            rc.write_text(new, encoding="utf-8")
            done.append(f"removed the labbook block from {rc}")
    script = _data_home() / "labbook" / "hooks" / f"labbook.{shell}"
    if script.exists():
        script.unlink()
        done.append(f"removed {script}")
    if systemd:
        unit = _config_home() / "systemd" / "user" / SYSTEMD_UNIT
        if unit.exists():
            unit.unlink()
            done.append(
                f"removed {unit} (stop it with: systemctl --user disable --now {SYSTEMD_UNIT})"
            )
    if not done:
        done.append("nothing to remove")
    return done


@click.group("hooks")
def hooks_cmd() -> None:
    """Shell integration: warn before a training command repeats a past mistake."""


_shell_option = click.option(
    "--shell",
    type=click.Choice(["bash", "zsh"]),
    help="The shell (default: from $SHELL, else bash).",
)


@hooks_cmd.command("install")
@_shell_option
@click.option(
    "--systemd", is_flag=True, help="Also install a systemd user unit for `labbook watch`."
)
def hooks_install_cmd(shell: str | None, systemd: bool) -> None:
    """Add the preexec hook to your shell's rc file (idempotent).

    Before a command that looks like training (python …train….py, torchrun,
    accelerate launch, deepspeed, python -m …train…, sbatch; set
    LABBOOK_HOOK_PATTERN to change) the hook runs `labbook check` for at most
    LABBOOK_HOOK_TIMEOUT seconds (0.3) and prints its warnings.
    """
    for line in install_hooks(shell or _default_shell(), systemd=systemd):
        click.echo(line)


@hooks_cmd.command("uninstall")
@_shell_option
@click.option("--systemd", is_flag=True, help="Also remove the systemd user unit.")
def hooks_uninstall_cmd(shell: str | None, systemd: bool) -> None:
    """Remove the labbook block from your shell's rc file."""
    for line in uninstall_hooks(shell or _default_shell(), systemd=systemd):
        click.echo(line)
