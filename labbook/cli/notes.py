"""``labbook note`` and ``labbook tag``: what people add to runs."""

from __future__ import annotations

import sys

import click

from labbook.cli.complete import complete_run
from labbook.cli.options import open_store, remote_option
from labbook.errors import UsageError
from labbook.textsafe import printable


@click.command("note")
@click.argument("run", required=False, shell_complete=complete_run)
@click.argument("text", required=False)
@click.option("--failure", "kind", flag_value="failure", help="TEXT says why the run failed.")
@click.option("--lesson", "kind", flag_value="lesson", help="TEXT says what to do differently.")
@click.option("--delete", "delete_id", type=int, help="Delete note NOTE_ID (a tombstone stays).")
@click.option("--author", help="Author (default: your user name).")
@remote_option(writes=True)
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
    from labbook.store.query import resolve

    if delete_id is not None:
        with open_store(ctx, create=False) as store:
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
    with open_store(ctx, create=False) as store:
        run_id = resolve(store, run)
        note_id = store.add_note(run_id, text, kind=kind or "note", author=author)
    click.echo(f"note {note_id} ({kind or 'note'}) added to run {run_id}")


@click.command("tag")
@click.argument("run", shell_complete=complete_run)
@click.argument("tags", nargs=-1, required=True)
@click.option("--remove", is_flag=True, help="Remove the tags instead.")
@remote_option(writes=True)
@click.pass_context
def tag_cmd(ctx: click.Context, run: str, tags: tuple[str, ...], remove: bool) -> None:
    """Tag RUN with TAGS (or --remove them)."""
    from labbook.store.query import resolve

    bad = [t for t in tags if not t.strip() or any(c.isspace() for c in t)]
    if bad:
        raise UsageError(f"a tag cannot be empty or contain spaces: {bad[0]!r}")
    with open_store(ctx, create=False) as store:
        run_id = resolve(store, run)
        if remove:
            store.remove_tags(run_id, tags)
        else:
            store.add_tags(run_id, tags)
        now = store.tags_of([run_id])[run_id]
    click.echo(f"{run_id}: {printable(' '.join(now)) if now else '(no tags)'}")
