"""One run, in tabs: overview, config tree, code patch, environment, metrics, GPU, log."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar

from rich.console import Group, RenderableType
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Input, OptionList, Static, TabbedContent, TabPane, Tree
from textual.widgets.option_list import Option

from labbook.capture.slurm import from_record as slurm_from_record
from labbook.model import RunRecord
from labbook_tui.fmt import (
    STATUS_STYLE,
    fmt_duration,
    fmt_time,
    fmt_value,
    log_text,
    metric_order,
    printable,
    safe,
    safe_lines,
    seed_missing,
    seed_text,
)
from labbook_tui.plot import MARK_STYLE, CurvePlot, Series

if TYPE_CHECKING:
    from labbook_tui.app import LabbookApp

TABS = ("overview", "config", "code", "env", "metrics", "gpu", "log")
#: Tab labels carry the key that opens them.
TAB_LABELS = {
    name: f"{i + 1} {label}"
    for i, (name, label) in enumerate(
        zip(TABS, ("Overview", "Config", "Code", "Env", "Metrics", "GPU", "Log"), strict=True)
    )
}
#: Footer entries of the metrics keys ([ ] and L), shown on the tabs with curves.
TAG_KEYS = Binding.Group("Tag", compact=True)
#: A patch longer than this is cut for display (the whole one stays in the database).
MAX_PATCH_LINES = 4000


def _kv_table() -> Table:
    table = Table(box=None, show_header=False, pad_edge=False, expand=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    return table


def overview(rec: RunRecord, tz: Any, now: float | None) -> RenderableType:
    """The overview tab: what a user wants first — outcome, how it was run, notes."""
    t = _kv_table()
    status = rec.get("status") or "unknown"
    t.add_row("run", Text.assemble(safe(rec["id"], "bold"), "  ", safe(rec.get("name"))))
    t.add_row(
        "status",
        Text.assemble(
            safe(status, STATUS_STYLE.get(status, "")),
            safe(f"  {rec['status_reason']}" if rec.get("status_reason") else "", "dim"),
        ),
    )
    failure = rec.get("failure")
    if failure:
        where = f" at step {failure['step']}" if failure.get("step") is not None else ""
        t.add_row(
            "failure", safe(f"{failure['kind']}{where}: {failure.get('message') or ''}", "red")
        )
    t.add_row(
        "time",
        f"{fmt_time(rec.get('started_at'), tz)} → {fmt_time(rec.get('ended_at'), tz)}"
        f"  ({fmt_duration(rec, now)})",
    )
    t.add_row("framework", safe(rec.get("framework") or "—"))
    t.add_row("path", safe(rec.get("path") or "—"))
    if rec.get("command"):
        t.add_row("command", safe(" ".join(rec["command"] or [])))
    seed = seed_text(rec)
    source = (rec.get("seed") or {}).get("source")
    t.add_row(
        "seed",
        Text(seed, style="bold yellow")
        if seed_missing(rec)
        else safe(f"{seed}  ({source or '?'})"),
    )
    git = rec.get("git")
    if git:
        commit = (git.get("commit") or "?")[:10]
        dirty = "  + uncommitted changes" if git.get("dirty") else ""
        t.add_row("git", safe(f"{commit} on {git.get('branch') or '?'}{dirty}"))
        if git.get("remote"):
            t.add_row("", safe(git["remote"]))
    else:
        t.add_row("git", Text("not recorded", "dim"))
    t.add_row("host", safe(f"{rec.get('host') or '?'} ({rec.get('user') or '?'})"))
    job = slurm_from_record(rec.get("slurm"))
    if job is not None:
        t.add_row("slurm", safe(job.describe()))
    t.add_row("gpu", gpu_summary(rec))
    t.add_row("tags", safe(", ".join(rec.get("tags") or [])) or Text("none (t adds)", "dim"))
    notes = rec.get("notes") or []
    parts: list[RenderableType] = [t, Text("")]
    if notes:
        parts.append(Text("Notes", style="bold underline"))
        for n in notes:
            kind = n.get("kind") or "note"
            style = {"failure": "red", "lesson": "green"}.get(kind, "cyan")
            parts.append(
                Text.assemble(
                    safe(f"{kind:8}", style),
                    " ",
                    (fmt_time(n.get("at"), tz), "dim"),
                    "  ",
                    safe_lines(str(n["text"]).strip()),
                )
            )
    else:
        parts.append(Text("No notes yet: n note · f failure reason · l lesson", style="dim"))
    return Group(*parts)


def gpu_summary(rec: RunRecord | None) -> Text | str:
    gpu = rec["gpu"] if rec else None
    env = (rec["env"] if rec else None) or {}
    if not gpu:
        names = env.get("gpus") or []
        return safe(", ".join(names)) if names else Text("no GPU readings", "dim")
    bits = []
    if gpu.get("mean_util_pct") is not None:
        bits.append(f"mean util {gpu['mean_util_pct']:.0f}%")
    if gpu.get("peak_memory_mib") is not None:
        bits.append(f"peak memory {gpu['peak_memory_mib']:,.0f} MiB")
    devices = gpu.get("devices") or []
    if devices:
        bits.append(f"{len(devices)} device(s)")
    return " · ".join(bits) or "recorded"


def environment(rec: RunRecord) -> RenderableType:
    env = rec.get("env")
    if not env:
        return Text("No environment recorded for this run.", style="dim")
    t = _kv_table()
    for key in ("source", "python", "platform", "cuda"):
        t.add_row(key, safe(fmt_value(env.get(key))))
    t.add_row("gpus", safe(", ".join(env.get("gpus") or []) or "none"))
    parts: list[RenderableType] = [t, Text("")]
    variables = env.get("vars") or {}
    parts.append(Text(f"Variables ({len(variables)})", style="bold underline"))
    vt = _kv_table()
    for k in sorted(variables):
        vt.add_row(safe(k), safe(variables[k]))
    parts += [vt, Text("")]
    packages = env.get("packages") or {}
    parts.append(Text(f"Packages ({len(packages)})", style="bold underline"))
    pt = _kv_table()
    for k in sorted(packages, key=str.lower):
        pt.add_row(safe(k), safe(packages[k]))
    parts.append(pt)
    return Group(*parts)


def code(rec: RunRecord, dark: bool) -> RenderableType:
    git = rec.get("git")
    if not git:
        return Text("No git state recorded for this run.", style="dim")
    parts: list[RenderableType] = []
    diff = git.get("diff") or ""
    head = f"{(git.get('commit') or '?')[:10]} on {git.get('branch') or '?'}"
    parts.append(safe(head, "bold"))
    if diff.strip():
        lines = diff.splitlines()
        shown = "\n".join(printable(line, tabs=True) for line in lines[:MAX_PATCH_LINES])
        # ANSI themes use the terminal's own palette: right in 256 colours, light or dark
        parts.append(Syntax(shown, "diff", theme="ansi_dark" if dark else "ansi_light"))
        if len(lines) > MAX_PATCH_LINES:
            parts.append(Text(f"… {len(lines) - MAX_PATCH_LINES:,} more lines", style="dim"))
        if git.get("diff_truncated"):
            parts.append(Text("(the patch was truncated when it was recorded)", style="yellow"))
    else:
        parts.append(Text("No uncommitted changes.", style="dim"))
    untracked = git.get("untracked") or []
    parts.append(Text(""))
    parts.append(Text(f"Untracked files ({len(untracked)})", style="bold underline"))
    contents = git.get("untracked_contents") or {}
    for path in untracked:
        parts.append(safe(f"  {path}"))
        body = contents.get(path)
        if body:
            shown = "\n".join(printable(line, tabs=True) for line in body[:4000].splitlines())
            parts.append(Syntax(shown, _lexer(path), theme="ansi_dark" if dark else "ansi_light"))
    if git.get("untracked_truncated"):
        parts.append(Text("(more untracked files than the size budget kept)", style="yellow"))
    return Group(*parts)


def _lexer(path: str) -> str:
    return {"py": "python", "yaml": "yaml", "yml": "yaml", "json": "json", "sh": "bash"}.get(
        path.rsplit(".", 1)[-1], "text"
    )


def curves(points: Any) -> list[tuple[float, float]]:
    return [(float(p.step), float(p.value)) for p in points]


def not_finite(points: Any) -> bool:
    """Whether a curve has an inf or NaN value."""
    return any(not math.isfinite(p.value) for p in points)


def tag_label(tag: str, broken: bool) -> Text:
    """A metric tag in the tags list; × (as on the chart) when it has inf or NaN values."""
    label = safe(tag)
    if broken:
        label.append(" ×", style=MARK_STYLE)
    return label


def gpu_tags(tags: list[str]) -> list[str]:
    return [t for t in tags if "gpu" in t.lower()]


class RunScreen(Screen[None]):
    """Everything about one run; annotations keep it open and refresh it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
        Binding("q", "back", "Back", show=False),
        # the tab labels say their keys ("1 Overview"): not repeated in the footer
        *[Binding(str(i + 1), f"tab('{name}')", name, show=False) for i, name in enumerate(TABS)],
        Binding("left_square_bracket", "tag(-1)", "Prev tag", group=TAG_KEYS),
        Binding("right_square_bracket", "tag(1)", "Next tag", group=TAG_KEYS),
        Binding("L", "log_scale", "Log"),
    ]

    app: LabbookApp

    def __init__(self, run_id: str) -> None:
        super().__init__()
        self.run_id = run_id
        self.record: RunRecord | None = None
        self.series: dict[str, Any] = {}
        self.tag: str | None = None

    def compose(self) -> ComposeResult:
        yield Static("", id="title")
        with TabbedContent(id="tabs", initial="overview"):
            with TabPane(TAB_LABELS["overview"], id="overview"), VerticalScroll():
                yield Static("", id="overview-body")
            with TabPane(TAB_LABELS["config"], id="config"), Vertical():
                yield Input(placeholder="search keys and values", id="config-search", compact=True)
                yield Tree("config", id="config-tree")
            with TabPane(TAB_LABELS["code"], id="code"), VerticalScroll():
                yield Static("", id="code-body")
            with TabPane(TAB_LABELS["env"], id="env"), VerticalScroll():
                yield Static("", id="env-body")
            with TabPane(TAB_LABELS["metrics"], id="metrics"), Horizontal():
                yield OptionList(id="metric-tags")
                yield CurvePlot(id="metric-plot")
            with TabPane(TAB_LABELS["gpu"], id="gpu"), Vertical():
                yield Static("", id="gpu-body")
                yield CurvePlot(id="gpu-plot")
            with TabPane(TAB_LABELS["log"], id="log"), VerticalScroll(id="log-scroll"):
                yield Static("", id="log-body")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.query_one("#config-search", Input).cursor_blink = False
        self.refresh_data()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """The footer shows the keys of the tab in view: [ ] only with the metrics,
        L with the metrics' or the GPU's curves."""
        active = self.query_one(TabbedContent).active if self.is_mounted else "overview"
        if action == "tag":
            return active == "metrics"
        if action == "log_scale":
            return active in ("metrics", "gpu")
        return True

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        self.refresh_bindings()

    def current_run_id(self) -> str | None:
        return self.run_id

    def refresh_data(self) -> None:
        """(Re)read the run: after a note is added, or when `labbook watch` updated it."""
        notebook = self.app.notebook
        rec = notebook.record(self.run_id)
        if rec is None:
            self.query_one("#title", Static).update(safe(f"run {self.run_id} is gone"))
            return
        self.record = rec
        now = self.app.clock() if self.app.clock else None
        status = rec.get("status") or "unknown"
        self.query_one("#title", Static).update(
            Text.assemble(
                safe(rec["id"], "bold"),
                "  ",
                safe(rec.get("name")),
                "  ",
                safe(status, STATUS_STYLE.get(status, "")),
            )
        )
        self.query_one("#overview-body", Static).update(overview(rec, self.app.tz, now))
        self.query_one("#code-body", Static).update(code(rec, self.app.current_theme.dark))
        self.query_one("#env-body", Static).update(environment(rec))
        self._fill_config(self.query_one("#config-search", Input).value)
        self.series = notebook.series(self.run_id)
        tags = metric_order(list(self.series))
        broken = [t for t in tags if not_finite(self.series[t])]
        options = self.query_one("#metric-tags", OptionList)
        highlighted = self.tag
        options.clear_options()
        options.add_options([Option(tag_label(t, t in broken), id=t) for t in tags])
        if tags:
            # a run that blew up opens on a curve that shows where
            first = broken[0] if broken else tags[0]
            self.tag = highlighted if highlighted in tags else first
            options.highlighted = tags.index(self.tag)
        self._draw_metric()
        self._draw_gpu(tags)
        log = notebook.log_tail(self.run_id)
        self.query_one("#log-body", Static).update(
            log_text(log) if log else Text("No log recorded for this run.", style="dim")
        )

    # -- config tree ---------------------------------------------------------------------

    def _fill_config(self, needle: str) -> None:
        tree: Tree[Any] = self.query_one("#config-tree", Tree)
        tree.clear()
        tree.show_root = False
        config = self.record["config"] if self.record else {}
        low = needle.lower().strip()
        nodes: dict[str, Any] = {}
        shown = 0
        for key in sorted(config):
            value = fmt_value(config[key])
            if low and low not in key.lower() and low not in value.lower():
                continue
            shown += 1
            parts = key.split(".")
            parent = tree.root
            for depth in range(1, len(parts)):
                prefix = ".".join(parts[:depth])
                if prefix not in nodes:
                    nodes[prefix] = parent.add(safe(parts[depth - 1]), expand=True)
                parent = nodes[prefix]
            label = Text.assemble(safe(parts[-1], "bold"), " = ", safe(value))
            parent.add_leaf(label, data=key)
        if not shown:
            tree.root.add_leaf(Text("no matching keys" if low else "no config recorded", "dim"))
        tree.root.expand()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "config-search":
            self._fill_config(event.value)

    # -- metrics ----------------------------------------------------------------------------

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        if event.option_list.id == "metric-tags" and event.option.id:
            self.tag = event.option.id
            self._draw_metric()

    def _draw_metric(self) -> None:
        plot = self.query_one("#metric-plot", CurvePlot)
        if self.tag and self.tag in self.series:
            plot.set_series([Series(self.tag, curves(self.series[self.tag]))])
        else:
            plot.set_series([])

    def _draw_gpu(self, tags: list[str]) -> None:
        rec = self.record
        body = self.query_one("#gpu-body", Static)
        plot = self.query_one("#gpu-plot", CurvePlot)
        wanted = gpu_tags(tags)
        series = [Series(t, curves(self.series[t])) for t in wanted]
        gpu = (rec["gpu"] if rec else None) or {}
        lines = Text.assemble(("GPU  ", "bold"), gpu_summary(rec))
        if not series and not gpu:
            lines.append("\nNo GPU utilisation or memory was recorded for this run.", style="dim")
        body.update(lines)
        plot.set_series(series)
        plot.display = bool(series)

    def action_tag(self, step: int) -> None:
        tags = metric_order(list(self.series))
        if not tags:
            return
        i = tags.index(self.tag) if self.tag in tags else 0
        self.tag = tags[(i + step) % len(tags)]
        self.query_one("#metric-tags", OptionList).highlighted = tags.index(self.tag)
        self._draw_metric()

    def action_log_scale(self) -> None:
        for plot in self.query(CurvePlot):
            plot.log_scale = not plot.log_scale

    # -- navigation --------------------------------------------------------------------------

    def action_tab(self, name: str) -> None:
        self.query_one(TabbedContent).active = name
        if name == "log":
            self.query_one("#log-scroll", VerticalScroll).scroll_end(animate=False)

    def action_back(self) -> None:
        self.app.pop_screen()
