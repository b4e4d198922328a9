"""``labbook replicate RUN --seeds N``: rerun a run with new seeds (:mod:`labbook.sources.replicate`)."""

from __future__ import annotations

import click

from labbook.cli.complete import complete_run
from labbook.cli.options import echo_json, open_store
from labbook.errors import UsageError
from labbook.textsafe import printable


@click.command("replicate")
@click.argument("run", shell_complete=complete_run)
@click.option(
    "--seeds",
    "n",
    type=click.IntRange(min=1, max=10_000),
    default=3,
    show_default=True,
    help="How many replicas, each with a new seed.",
)
@click.option(
    "--parallel",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Run K replicas at a time (their output goes to log files).",
)
@click.option("--print", "print_only", is_flag=True, help="Print the commands; run nothing.")
@click.option(
    "--sbatch", is_flag=True, help="Write a Slurm array job script instead, and print its path."
)
@click.option(
    "--here", is_flag=True, help="Run from the working tree as it is, even where it differs."
)
@click.option(
    "--seed-arg",
    metavar="PLACE",
    help="Where the seed goes: --FLAG, KEY= (an override) or FILE:KEY (a config file key).",
)
@click.option("--json", "as_json", is_flag=True, help="With --print or --sbatch: the plan as JSON.")
@click.pass_context
def replicate_cmd(
    ctx: click.Context,
    run: str,
    n: int,
    parallel: int,
    print_only: bool,
    sbatch: bool,
    here: bool,
    seed_arg: str | None,
    as_json: bool,
) -> None:
    """Rerun RUN with new seeds, to tell a real gain from seed noise.

    Launches N reruns through `labbook run`, in RUN's directory, each with a seed
    no run of its seed group has; the seed is changed where labbook found it (a
    --seed argument, a Hydra override, a config file key — through a copy of the
    file, never the file itself). The replicas share RUN's seed group and form a
    sweep of their own. The working tree must hold the code RUN ran (its commit,
    patch and kept untracked files) unless --here is given. --print shows the
    commands instead; --sbatch writes one Slurm array job.
    """
    from labbook.sources.replicate import launch_replicas, plan_replicas, write_sbatch
    from labbook.store.query import resolve

    if print_only and sbatch:
        raise UsageError("--print and --sbatch do not go together")
    if as_json and not (print_only or sbatch):
        raise UsageError(
            "--json goes with --print or --sbatch", hint="labbook replicate RUN --print --json"
        )
    db = ctx.obj.get("db")
    with open_store(ctx, create=False) as store:
        run_id = resolve(store, run)
        plan = plan_replicas(store, run_id, n, here=here, seed_arg=seed_arg)
    for note in plan.notes:
        click.echo(f"labbook: {printable(note)}", err=True)
    if sbatch:
        path = write_sbatch(plan, db)
        if as_json:
            echo_json({**plan.to_json(), "sbatch": str(path)})
        else:
            click.echo(printable(str(path)))
            click.echo(
                f"labbook: {len(plan.replicas)} seeds ({_seeds(plan.seeds)}) through"
                f" {printable(plan.place.describe())}; submit with: sbatch {printable(str(path))}",
                err=True,
            )
        return
    if print_only:
        from labbook.sources.replicate import command_line

        if as_json:
            echo_json(plan.to_json())
            return
        for r in plan.replicas:
            click.echo(printable(command_line(plan, r, db)))
        return
    click.echo(
        f"labbook: {len(plan.replicas)} replicas of {run_id} (seeds {_seeds(plan.seeds)},"
        f" through {printable(plan.place.describe())}), sweep {plan.sweep}",
        err=True,
    )
    results = launch_replicas(
        plan, db=db, parallel=parallel, say=lambda line: click.echo(printable(line), err=True)
    )
    failed = [seed for seed, rc, _ in results if rc != 0]
    click.echo(
        f"labbook: {len(results) - len(failed)} of {len(results)} replicas exited 0"
        + (f"; seeds {_seeds(failed)} did not" if failed else "")
        + f" (sweep {plan.sweep})",
        err=True,
    )
    ctx.exit(1 if failed else 0)


def _seeds(seeds: list[int]) -> str:
    return ", ".join(str(s) for s in seeds)
