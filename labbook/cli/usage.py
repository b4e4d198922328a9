"""``labbook usage``: GPU-hours and how well they were used, by user, host, repo, status or GPU."""

from __future__ import annotations

import click

from labbook.cli.options import (
    DATA_FORMATS,
    echo_data,
    echo_json,
    format_options,
    open_store,
    output_format,
)


@click.command("usage")
@click.option(
    "--since",
    default="30d",
    show_default=True,
    help="Runs started within this time (30d, 12h, 2026-11-01), or 'all'.",
)
@click.option(
    "--by",
    type=click.Choice(("user", "host", "repo", "status", "gpu")),
    help="A row per user, host, repository (its remote, else its root), status or "
    "GPU model (default: the total only).",
)
@format_options
@click.pass_context
def usage_cmd(
    ctx: click.Context, since: str, by: str | None, fmt: str | None, as_json: bool
) -> None:
    """GPU-hours of recent runs: lost, utilisation, memory, energy.

    From the GPU samples `labbook watch` records (NVML): GPU-hours (wall time x
    GPUs held), those lost to failed, diverged and killed runs, the median
    utilisation over the GPU time, the peak memory one run held on one GPU against
    that GPU's capacity, energy where NVML reported power, and the runs that held a
    GPU under 10% utilisation. Runs without GPU samples are counted apart.
    """
    import shutil
    import sys

    from labbook.analysis.filters import user_filter
    from labbook.analysis.usage import store_usage
    from labbook.render import usage as render

    out = output_format(fmt, as_json)
    window = None if since.strip().lower() in ("all", "0") else since
    flt = user_filter(since=window)
    with open_store(ctx, create=False) as store:
        result = store_usage(store, flt, by, since=flt.since)
    if out == "json":
        echo_json(render.as_json(result))
        return
    if out in DATA_FORMATS:
        rows = render.data_rows(result)
        cols = [render.key_field(result), *render.DATA_FIELDS]
        echo_data(out, rows, rows, cols)
        return
    width = None
    if out == "table" or (out != "plain" and sys.stdout.isatty()):
        width = shutil.get_terminal_size().columns
    click.echo("\n".join(render.table_lines(result, width=width)))
