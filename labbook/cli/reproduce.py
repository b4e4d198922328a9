"""``labbook reproduce RUN``: rebuild a run in a git worktree (:mod:`labbook.sources.reproduce`)."""

from __future__ import annotations

import shlex

import click

from labbook.cli.complete import complete_run
from labbook.cli.options import echo_json, open_store
from labbook.textsafe import printable


@click.command("reproduce")
@click.argument("run", shell_complete=complete_run)
@click.option(
    "--dir",
    "dest",
    type=click.Path(file_okay=False),
    help="Where to build it (new or empty). Default: ~/.local/share/labbook/reproduce/RUN.",
)
@click.option(
    "--repo",
    type=click.Path(file_okay=False, exists=True),
    help="The repository to take the commit from (default: the run's own).",
)
@click.option("--exec", "run_it", is_flag=True, help="Then run it, through `labbook run`.")
@click.option("--json", "as_json", is_flag=True, help="Print what was built as JSON.")
@click.pass_context
def reproduce_cmd(
    ctx: click.Context, run: str, dest: str | None, repo: str | None, run_it: bool, as_json: bool
) -> None:
    """Rebuild RUN's code, environment and command in a git worktree.

    A git worktree at RUN's commit with its uncommitted patch applied and its kept
    untracked files written back; requirements.txt of its interpreter's packages;
    env.sh of its recorded variables (secrets were never recorded and are not
    written); run.sh, its exact command with its seed. What cannot be restored —
    data whose fingerprint differs now, another CUDA driver or GPU, packages missing
    or at other versions here — is said first. --exec then runs it through
    `labbook run`, so that `labbook diff RUN @last` compares the two.
    """
    from labbook.sources.reproduce import execute, reproduce
    from labbook.store.query import resolve

    with open_store(ctx, create=False) as store:
        run_id = resolve(store, run)
        rep = reproduce(store, run_id, dest=dest, repo=repo)
        rec = store.record(run_id, heavy=False)
    if as_json:
        echo_json(rep.to_json())
    else:
        say = click.echo
        say(
            f"reproduce  {printable(run_id)}"
            + (f" ({printable(rep.run_name)})" if rep.run_name else "")
        )
        say(f"dir        {printable(str(rep.dir))}")
        code = f"commit {rep.commit[:12]}"
        if rep.patch_files:
            code += (
                f" + patch ({len(rep.patch_files)} file{'s' if len(rep.patch_files) != 1 else ''})"
            )
        if rep.restored:
            code += f" + {len(rep.restored)} untracked file{'s' if len(rep.restored) != 1 else ''}"
        say(f"code       {printable(code)}  in {printable(str(rep.tree))}")
        if rep.argv:
            say(f"command    {printable(' '.join(shlex.quote(a) for a in rep.argv))}")
        say(f"run it     {printable(str(rep.dir / 'run.sh'))}")
        for note in rep.notes:
            say(f"note       {printable(note)}")
        if rep.cannot:
            say("cannot be restored:")
            for line in rep.cannot:
                say(f"  - {printable(line)}")
        else:
            say("everything recorded was restored")
    if run_it:
        click.echo(
            f"labbook: running {run_id}'s command in {printable(str(rep.workdir))}", err=True
        )
        ctx.exit(execute(rep, rec, db=ctx.obj.get("db")))
