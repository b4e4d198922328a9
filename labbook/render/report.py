"""``labbook report``: runs as one self-contained file, Markdown or HTML.

A report has five parts, in this order:

* **Runs**: one row per run — id, name, status and why, seed, each key metric's
  last and best value, duration, git commit, host;
* **Config**: only the keys whose values differ between the runs
  (:func:`labbook.analysis.diff.compare_runs`, as ``labbook compare`` finds them);
  with one run, its whole config;
* **Curves**: one chart per canonical metric (:mod:`labbook.analysis.metrics`)
  that every run has, one line per run, on one scale;
* **Notes**: each run's failure, then its notes and lessons, with their kinds;
* **Code and environment**: commit, branch, dirty and the patch's stat; python,
  platform, CUDA, GPUs and the key packages (HTML: each patch, collapsed).

**HTML** is one file with nothing outside it: the style is inline, the charts are
inline SVG drawn here, there is no script, font or image to fetch (a
Content-Security-Policy forbids them too), so it opens from ``scp`` with no
server. Values off a chart's scale are marked as the TUI marks them: the line
breaks, ``▲`` marks inf at the top, ``▼`` -inf at the bottom, ``×`` NaN at the
height where the curve was, at the first step of each stretch; the legend names
the stretches (``× NaN from 168``). A run that went wrong (NaN or inf in its
curve; failed, diverged, killed) and whose values run far beyond the others'
leaves the chart at its edge (``↑``, named in the legend) instead of flattening
the other curves; a chart whose positive values span :data:`LOG_SPAN` or more is
drawn on a log scale.

**Markdown** fits a pull-request comment: GitHub-flavoured tables, at most
:data:`MD_LIMIT` characters (GitHub's limit for a comment) — when longer, the
largest parts are cut at a row, with a note saying so. GitHub strips inline
SVG, so the curves are sparklines (``▁▂▃▄▅▆▇█``, ``×`` NaN, ``▲`` inf, ``▼``
-inf) and a pointer to the HTML report.

Everything recorded is hostile input: a name, a note, a config value or a patch
is shown as text — control characters escaped (:mod:`labbook.textsafe`), then
HTML-escaped (HTML) or with Markdown's punctuation escaped (Markdown). Only the
store's data is used, so only what was redacted when it was saved appears.
"""

from __future__ import annotations

import html
import math
import re
import shlex
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from labbook.analysis.diff import compare_runs
from labbook.analysis.metrics import canonical_metric, canonical_metrics, key_columns
from labbook.model import Point, RunRecord
from labbook.render.axis import fmt_axis, fmt_step
from labbook.render.formats import cell
from labbook.render.runs import duration, fmt_time, seed_text
from labbook.textsafe import printable, printable_lines

if TYPE_CHECKING:
    from labbook.store import Store

#: GitHub's limit on the length of a comment (characters).
MD_LIMIT = 65_536
#: At most this many charts (the rest are named under the last one).
MAX_CHARTS = 12
#: At most this many key metrics in the runs table.
KEY_METRICS = 3
#: A chart whose positive values span this ratio (max / min) or more has a log scale.
LOG_SPAN = 1e4
#: A run whose values go this many times the others' span beyond their range is
#: drawn off the chart's edge instead of setting the scale (see :func:`y_scale`).
OUTLIER = 100.0
#: A patch longer than this (characters) is cut in the HTML report.
PATCH_MAX = 200_000
#: Packages shown under "environment", when a run has them.
KEY_PACKAGES = (
    "torch",
    "torchvision",
    "lightning",
    "pytorch-lightning",
    "transformers",
    "accelerate",
    "datasets",
    "deepspeed",
    "jax",
    "jaxlib",
    "flax",
    "tensorflow",
    "keras",
    "numpy",
    "scikit-learn",
)
#: Line colours (Okabe–Ito, readable by most colour-blind readers), then repeated.
PALETTE = ("#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#999933", "#555555")
#: The colour of the marks for values off the scale.
MARK_COLOUR = "#d62728"
#: How values off the scale are marked (as the TUI's chart marks them).
MARKS = {"inf": "▲", "-inf": "▼", "NaN": "×", "above": "↑", "below": "↓"}
#: Sparkline levels (Markdown).
SPARKS = "▁▂▃▄▅▆▇█"
SPARK_WIDTH = 24

_WENT_WRONG = ("failed", "diverged", "killed")
_LOWER_BETTER = {"loss", "ppl", "wer", "cer", "mae", "mse", "rmse"}
_HIGHER_BETTER = {
    "acc",
    "acc5",
    "f1",
    "auc",
    "bleu",
    "precision",
    "recall",
    "iou",
    "miou",
    "dice",
}


# -- the data ---------------------------------------------------------------------------


@dataclass
class Curve:
    """One run's curve of a chart: the tag it was recorded as and its points."""

    run: int  # index into Report.records
    tag: str
    points: list[tuple[float, float]]


@dataclass
class Chart:
    """A canonical metric that the runs share, with each run's curve, and its y scale
    (:func:`y_scale`): ``lo``..``hi`` (log10 of the values when ``log``); values of
    ``clipped`` runs beyond it are drawn off the chart's edge."""

    name: str
    curves: list[Curve]
    log: bool = False
    lo: float = 0.0
    hi: float = 1.0
    clipped: list[int] = field(default_factory=list)


@dataclass
class Report:
    records: list[RunRecord]
    #: canonical names (or tags) of the key metrics, for the runs table
    metrics: list[str]
    #: config key -> value per run (only keys that differ; one run: all of its config)
    config: dict[str, list[Any]]
    charts: list[Chart]
    #: canonical metrics not charted: (name, why)
    not_charted: list[tuple[str, str]] = field(default_factory=list)
    #: each run's untracked files, without the files of runs (output, not code)
    untracked: list[list[str]] = field(default_factory=list)
    generated_at: str = ""
    version: str = ""


def metric_goal(name: str) -> str | None:
    """``"min"`` when lower is better (a loss, perplexity, error), ``"max"`` when
    higher is (accuracy, F1, BLEU …), None when labbook cannot tell (lr, grad_norm)."""
    canonical = canonical_metric(name) or name
    quantity = canonical.partition("_")[2] if "_" in canonical else canonical
    if canonical_metric(name) is None:
        low = name.lower()
        if "loss" in low or "err" in low:
            return "min"
        if "acc" in low:
            return "max"
        return None
    if quantity in _LOWER_BETTER:
        return "min"
    if quantity in _HIGHER_BETTER:
        return "max"
    return None


def _metric_of(rec: Mapping[str, Any], name: str) -> tuple[str, Mapping[str, Any]] | None:
    metrics = rec.get("metrics") or {}
    if name in metrics:
        return name, metrics[name]
    tag = canonical_metrics(metrics).get(name)
    return (tag, metrics[tag]) if tag is not None else None


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if value in ("nan", "inf", "-inf"):
        return float(value)
    return None


def _chart_order(records: Sequence[RunRecord], names: Iterable[str]) -> list[str]:
    """``names`` in the order ``labbook ls`` would pick them as columns."""
    ranked = key_columns(records, limit=10**6)
    rank = {n: i for i, n in enumerate(ranked)}
    return sorted(names, key=lambda n: (rank.get(n, len(rank)), n))


def build_report(
    store: Store,
    run_ids: Sequence[str],
    metrics: Sequence[str] | None = None,
) -> Report:
    """The report of ``run_ids`` (in this order): heavy records, config differences,
    curves. ``metrics``: the metrics for the runs table and the charts (default:
    the key metrics, and a chart for every canonical metric the runs share)."""
    from labbook import __version__

    records = [store.record(i, heavy=True) for i in run_ids]
    key = list(metrics) if metrics else key_columns(records, limit=KEY_METRICS)
    if len(records) == 1:
        config = {k: [v] for k, v in sorted((records[0].get("config") or {}).items())}
    else:
        config = compare_runs(records, [])["params"]
    # charts: the canonical metrics that every run has a curve of
    per_run: list[dict[str, str]] = []
    series: list[dict[str, list[Point]]] = []
    for rec in records:
        s = store.series(rec["id"])
        series.append(s)
        per_run.append(canonical_metrics(s))
    shared = set(per_run[0]) if per_run else set()
    for names in per_run[1:]:
        shared &= set(names)
    wanted = list(dict.fromkeys(metrics)) if metrics else _chart_order(records, shared)
    charts: list[Chart] = []
    not_charted: list[tuple[str, str]] = []
    for name in wanted:
        curves = []
        for i, (s, names) in enumerate(zip(series, per_run, strict=True)):
            tag = name if name in s else names.get(name)
            if tag is None:
                continue
            pts = [(float(p.step), float(p.value)) for p in s[tag] if p.step is not None]
            curves.append(Curve(i, tag, pts))
        if not curves:
            not_charted.append((name, "no run has it"))
            continue
        if len(charts) >= MAX_CHARTS:
            not_charted.append((name, f"more than {MAX_CHARTS} charts"))
            continue
        failed = [i for i, r in enumerate(records) if r["status"] in _WENT_WRONG]
        charts.append(y_scale(Chart(name, curves), failed))
    if len(records) > 1 and not metrics:
        everywhere = {n for names in per_run for n in names}
        for name in _chart_order(records, everywhere - shared):
            n = sum(name in names for names in per_run)
            not_charted.append((name, f"only {n} of {len(records)} runs have it"))
    from labbook.analysis.diff import other_runs_files

    output = other_runs_files(store, records)
    untracked = [
        [f for f in ((r.get("git") or {}).get("untracked") or []) if not output(f)] for r in records
    ]
    return Report(
        records=records,
        untracked=untracked,
        metrics=key,
        config=config,
        charts=charts,
        not_charted=not_charted,
        generated_at=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        version=__version__,
    )


def _finite_range(curves: Iterable[Curve]) -> tuple[float, float] | None:
    ys = [y for c in curves for _, y in c.points if math.isfinite(y)]
    return (min(ys), max(ys)) if ys else None


def y_scale(chart: Chart, failed: Iterable[int] = ()) -> Chart:
    """Choose ``chart``'s y scale. A run that went wrong (its curve has NaN or inf, or
    its index is in ``failed``: failed, diverged, killed) and whose values go
    :data:`OUTLIER` times the other runs' span beyond their range (a diverging loss
    next to healthy ones) does not set the scale: the others' curves stay readable
    and its line leaves the chart, named in the legend. Positive values spanning
    :data:`LOG_SPAN` or more (max / min) are drawn on a log scale."""
    bad = set(failed)
    suspects = {
        c.run
        for c in chart.curves
        if c.run in bad or any(not math.isfinite(y) for _, y in c.points)
    }
    core = _finite_range(c for c in chart.curves if c.run not in suspects)
    clipped: list[int] = []
    if core is not None:
        span = (core[1] - core[0]) or abs(core[1]) or 1.0
        for c in chart.curves:
            own = _finite_range([c])
            if c.run not in suspects or own is None:
                continue
            if own[1] > core[1] + OUTLIER * span or own[0] < core[0] - OUTLIER * span:
                clipped.append(c.run)
    kept = _finite_range(c for c in chart.curves if c.run not in clipped)
    lo, hi = kept if kept is not None else (0.0, 1.0)
    log = lo > 0 and hi / lo >= LOG_SPAN
    if log:
        lo, hi = math.log10(lo), math.log10(hi)
    chart.log, chart.lo, chart.hi, chart.clipped = log, lo, hi, clipped
    return chart


# -- numbers and small texts -----------------------------------------------------------


def fmt_metric(value: Any) -> str:
    """A metric value in a table: 4 significant digits, ``nan``/``inf`` as themselves."""
    f = _as_float(value)
    if f is None:
        return "—" if value is None else str(value)
    if math.isnan(f):
        return "nan"
    if math.isinf(f):
        return "inf" if f > 0 else "-inf"
    return f"{f:.4g}"


def _last_best(rec: RunRecord, name: str) -> tuple[str, str]:
    found = _metric_of(rec, name)
    if found is None:
        return "—", "—"
    _tag, m = found
    goal = metric_goal(name)
    best = m.get(goal) if goal else None
    return fmt_metric(m.get("last")), fmt_metric(best) if goal else "—"


def _run_label(rec: RunRecord) -> str:
    return rec.get("name") or rec["id"]


def _commit(rec: RunRecord) -> str:
    git = rec.get("git") or {}
    commit = git.get("commit")
    return commit[:8] if isinstance(commit, str) else "—"


def status_line(rec: RunRecord) -> str:
    reason = rec.get("status_reason")
    return f"{rec['status']} — {reason}" if reason else rec["status"]


@dataclass
class PatchStat:
    files: int
    added: int
    removed: int
    per_file: list[tuple[str, int, int]]

    def text(self) -> str:
        s = "" if self.files == 1 else "s"
        return f"{self.files} file{s} changed, +{self.added} −{self.removed}"


_DIFF_FILE = re.compile(r"^diff --git a/(.*?) b/(.*)$")


def patch_stat(diff: str) -> PatchStat:
    """``git diff --stat`` of a recorded patch: files changed, lines added and removed."""
    per_file: list[tuple[str, int, int]] = []
    name, added, removed = None, 0, 0
    in_hunk = False
    for line in diff.splitlines():
        m = _DIFF_FILE.match(line)
        if m:
            if name is not None:
                per_file.append((name, added, removed))
            name, added, removed, in_hunk = m.group(2), 0, 0, False
            continue
        if line.startswith("@@"):
            in_hunk = True
        elif in_hunk and line.startswith("+"):
            added += 1
        elif in_hunk and line.startswith("-"):
            removed += 1
        elif line.startswith("Binary files"):
            in_hunk = False
    if name is not None:
        per_file.append((name, added, removed))
    return PatchStat(
        len(per_file), sum(a for _, a, _ in per_file), sum(r for _, _, r in per_file), per_file
    )


def _code_rows(report: Report) -> list[tuple[str, list[str]]]:
    records = report.records
    rows: dict[str, list[str]] = {
        k: [] for k in ("commit", "branch", "dirty", "patch", "untracked", "remote")
    }
    for i, rec in enumerate(records):
        git = rec.get("git")
        if not git:
            for v in rows.values():
                v.append("—")
            continue
        rows["commit"].append((git.get("commit") or "—")[:12])
        rows["branch"].append(git.get("branch") or ("detached" if git.get("detached") else "—"))
        rows["dirty"].append("yes" if git.get("dirty") else "no")
        diff = git.get("diff") or ""
        stat = patch_stat(diff).text() if diff else "none"
        if git.get("diff_truncated"):
            stat += " (truncated when recorded)"
        rows["patch"].append(stat)
        untracked = report.untracked[i] if i < len(report.untracked) else []
        rows["untracked"].append(
            ", ".join(untracked[:5])
            + (f" … {len(untracked) - 5} more" if len(untracked) > 5 else "")
            if untracked
            else "none"
        )
        rows["remote"].append(git.get("remote") or "—")
    if all(v == "—" for v in rows["remote"]):
        del rows["remote"]
    return list(rows.items())


def _env_rows(records: Sequence[RunRecord]) -> list[tuple[str, list[str]]]:
    rows: dict[str, list[str]] = {
        k: [] for k in ("host", "python", "platform", "cuda", "gpus", "gpu use", "command")
    }
    pkgs: dict[str, list[str]] = {}
    for rec in records:
        env = rec.get("env") or {}
        gpu = rec.get("gpu") or {}
        rows["host"].append(f"{rec.get('user') or '?'}@{rec.get('host') or '?'}")
        python = env.get("python") or "—"
        if env.get("source") == "importer":
            python += " (the importing interpreter's, not the run's)"
        rows["python"].append(python)
        rows["platform"].append(env.get("platform") or "—")
        rows["cuda"].append(env.get("cuda") or "—")
        rows["gpus"].append(", ".join(env.get("gpus") or []) or "none")
        if gpu:
            rows["gpu use"].append(
                f"peak {fmt_metric(gpu.get('peak_memory_mib'))} MiB, "
                f"mean util {fmt_metric(gpu.get('mean_util_pct'))} %"
            )
        else:
            rows["gpu use"].append("—")
        cmd = rec.get("command")
        rows["command"].append(shlex.join(cmd) if cmd else "—")
    for name in KEY_PACKAGES:
        values = [((r.get("env") or {}).get("packages") or {}).get(name) for r in records]
        if any(values):
            pkgs[name] = [v or "—" for v in values]
    out = [(k, v) for k, v in rows.items() if any(x not in ("—", "none") for x in v)]
    return out + list(pkgs.items())


NO_GIT = "No git state was recorded (not in a git repository, or recorded with --no-git)."


def _config_note(report: Report) -> str:
    n = len(report.records)
    if not any(r.get("config") for r in report.records):
        return "No config was recorded." if n == 1 else "No config was recorded for these runs."
    if n == 1:
        return "The run's config."
    if not report.config:
        return "The runs have the same config."
    return "Only the keys whose values differ between the runs."


def _failure_text(rec: RunRecord) -> str | None:
    failure = rec.get("failure")
    if not failure:
        return None
    step = f" at step {failure['step']}" if failure.get("step") is not None else ""
    message = f": {failure['message']}" if failure.get("message") else ""
    return f"{failure['kind']}{step}{message}"


# -- the charts' geometry -----------------------------------------------------------------


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About ``count`` round values (1, 2, 5 × 10^k apart) from ≤ lo to ≥ hi."""
    if hi <= lo:
        hi = lo + 1
    raw = (hi - lo) / max(1, count - 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks = []
    k = 0
    while True:
        v = start + k * step
        ticks.append(0.0 if abs(v) < step * 1e-9 else v)
        if v >= hi - step * 1e-9:
            break
        k += 1
    return ticks


@dataclass
class Stretch:
    """Consecutive points off the scale, all of one kind (a key of MARKS)."""

    kind: str
    first: float
    last: float
    to_end: bool
    #: index of the first point of the stretch
    index: int

    def describe(self) -> str:
        kind = f"{self.kind} the scale" if self.kind in ("above", "below") else self.kind
        if self.to_end and self.first != self.last:
            return f"{kind} from {fmt_step(self.first)}"
        if self.first == self.last:
            return f"{kind} at {fmt_step(self.first)}"
        return f"{kind} at {fmt_step(self.first)}–{fmt_step(self.last)}"


def _kind(y: float) -> str | None:
    if math.isnan(y):
        return "NaN"
    if math.isinf(y):
        return "inf" if y > 0 else "-inf"
    return None


def stretches(points: Sequence[tuple[float, float]]) -> list[Stretch]:
    """The stretches of ``points`` whose values are not finite."""
    return _runs_of(points, _kind)


def _runs_of(
    points: Sequence[tuple[float, float]], kind_of: Callable[[float], str | None]
) -> list[Stretch]:
    """The stretches of consecutive ``points`` whose value ``kind_of`` gives one kind."""
    out: list[Stretch] = []
    prev: str | None = None
    for i, (x, y) in enumerate(points):
        kind = kind_of(y)
        if kind is not None:
            if out and prev == kind:
                out[-1].last = x
            else:
                out.append(Stretch(kind, x, x, False, i))
            out[-1].to_end = i == len(points) - 1
        prev = kind
    return out


def describe_stretches(found: Sequence[Stretch], limit: int = 3) -> str:
    text = ", ".join(f"{MARKS[s.kind]} {s.describe()}" for s in found[:limit])
    if len(found) > limit:
        text += f", … {len(found) - limit} more"
    return text


class _Scale:
    """The chart's axes: data → pixels, with round ticks (the y range is the chart's)."""

    def __init__(self, chart: Chart, box: tuple[float, float, float, float]) -> None:
        self.left, self.top, self.right, self.bottom = box
        self.log = chart.log
        xs = [x for c in chart.curves for x, _ in c.points if math.isfinite(x)]
        self.empty = not any(math.isfinite(y) for c in chart.curves for _, y in c.points)
        x0, x1 = (min(xs), max(xs)) if xs else (0.0, 1.0)
        if x1 == x0:
            x0, x1 = x0 - 0.5, x1 + 0.5
        self.x0, self.x1 = x0, x1
        self.xticks = [t for t in nice_ticks(x0, x1, 6) if x0 <= t <= x1]
        y0, y1 = chart.lo, chart.hi
        if y1 == y0:
            pad = abs(y0) * 0.05 or 0.5
            y0, y1 = y0 - pad, y1 + pad
        if self.log:
            lo, hi = math.floor(y0), math.ceil(y1)
            every = max(1, math.ceil((hi - lo) / 6))
            self.yticks = [float(v) for v in range(lo, hi + 1, every)]
            if self.yticks[-1] < y1:
                self.yticks.append(self.yticks[-1] + every)
        else:
            self.yticks = nice_ticks(y0, y1, 5)
        self.y0, self.y1 = self.yticks[0], self.yticks[-1]

    def t(self, y: float) -> float:
        """``y`` on the scale's axis (log10 on a log scale)."""
        return math.log10(y) if self.log and y > 0 else y

    def on_scale(self, y: float) -> bool:
        return math.isfinite(y) and not (self.log and y <= 0)

    def inside(self, y: float) -> bool:
        """On the scale and within its range (not drawn off the chart's edge)."""
        if not self.on_scale(y):
            return False
        t = self.t(y)
        eps = (self.y1 - self.y0) * 1e-9
        return self.y0 - eps <= t <= self.y1 + eps

    def px(self, x: float) -> float:
        return self.left + (x - self.x0) / (self.x1 - self.x0) * (self.right - self.left)

    def py(self, y: float) -> float:
        """The pixel row of ``y``, kept within a chart's height beyond the edges (the
        plot is clipped there, so a line that leaves the range leaves the chart)."""
        frac = (self.t(y) - self.y0) / (self.y1 - self.y0)
        h = self.bottom - self.top
        return min(self.bottom + h, max(self.top - h, self.bottom - frac * h))

    def ylabel(self, t: float) -> str:
        return fmt_axis(10**t) if self.log else fmt_axis(t)


def off_range(points: Sequence[tuple[float, float]], scale: _Scale) -> list[Stretch]:
    """The stretches of finite ``points`` above or below the chart's range."""

    def side(y: float) -> str | None:
        if scale.on_scale(y) and not scale.inside(y):
            return "above" if scale.t(y) > scale.y1 else "below"
        return None

    return _runs_of(points, side)


def _esc(text: object) -> str:
    """One line of recorded text, safe inside HTML (text and attribute values)."""
    return html.escape(printable(text), quote=True)


def _esc_lines(text: object) -> str:
    return html.escape(printable_lines(text), quote=True)


def _colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


#: After the palette's colours come its colours dashed, then dotted.
_DASHES = ("", "7 4", "2 3")
_SWATCH_STYLES = ("solid", "dashed", "dotted")


def _dash(i: int) -> str:
    return _DASHES[(i // len(PALETTE)) % len(_DASHES)]


def _swatch(i: int) -> str:
    """The run's line as a legend key: its colour, solid, dashed or dotted as its line."""
    style = _SWATCH_STYLES[(i // len(PALETTE)) % len(_SWATCH_STYLES)]
    return f'<span class="swatch" style="border-top:3px {style} {_colour(i)}"></span>'


def _n(v: float) -> str:
    return f"{v:.1f}".rstrip("0").rstrip(".")


def svg_chart(
    chart: Chart, records: Sequence[RunRecord], *, uid: str = "c", width: int = 560
) -> str:
    """One chart as an inline ``<svg>``: axes with 3-significant-digit labels, a
    polyline per run, broken where values are not finite and the breaks marked
    (``uid``: unique in the page, for the clip path)."""
    height = 300
    scale = _Scale(chart, (64.0, 12.0, width - 16.0, height - 36.0))
    out = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}"'
        f' role="img" aria-label="{_esc(chart.name)} over steps"'
        ' xmlns="http://www.w3.org/2000/svg">'
    ]
    clip = f"clip-{uid}"
    out.append(
        f'<defs><clipPath id="{clip}"><rect x="{_n(scale.left)}" y="{_n(scale.top - 1)}"'
        f' width="{_n(scale.right - scale.left + 1)}" height="{_n(scale.bottom - scale.top + 2)}"/>'
        "</clipPath></defs>"
    )

    def row(t: float) -> float:
        return scale.bottom - (t - scale.y0) / (scale.y1 - scale.y0) * (scale.bottom - scale.top)

    out.append('<g class="grid">')
    for t in scale.yticks:
        y = row(t)
        out.append(
            f'<line x1="{_n(scale.left)}" x2="{_n(scale.right)}" y1="{_n(y)}" y2="{_n(y)}"/>'
        )
    for t in scale.xticks:
        x = scale.px(t)
        out.append(
            f'<line x1="{_n(x)}" x2="{_n(x)}" y1="{_n(scale.top)}" y2="{_n(scale.bottom)}"/>'
        )
    out.append("</g>")
    out.append(
        f'<path class="axis" d="M{_n(scale.left)} {_n(scale.top)}V{_n(scale.bottom)}'
        f'H{_n(scale.right)}"/>'
    )
    out.append('<g class="ylabels">')
    for t in scale.yticks:
        out.append(
            f'<text x="{_n(scale.left - 6)}" y="{_n(row(t) + 4)}" text-anchor="end">'
            f"{_esc(scale.ylabel(t))}</text>"
        )
    out.append('</g><g class="xlabels">')
    for t in scale.xticks:
        out.append(
            f'<text x="{_n(scale.px(t))}" y="{_n(scale.bottom + 16)}" text-anchor="middle">'
            f"{_esc(fmt_step(t))}</text>"
        )
    out.append(
        f'<text class="xname" x="{_n(scale.right)}" y="{_n(scale.bottom + 31)}"'
        ' text-anchor="end">step</text>'
    )
    out.append("</g>")
    if scale.empty:
        out.append(
            f'<text class="empty" x="{_n((scale.left + scale.right) / 2)}"'
            f' y="{_n((scale.top + scale.bottom) / 2)}" text-anchor="middle">'
            "no finite values to draw</text>"
        )
    marks: list[str] = []
    out.append(f'<g clip-path="url(#{clip})">')
    for curve in chart.curves:
        colour = _colour(curve.run)
        label = _esc(_run_label(records[curve.run]))
        segments: list[list[tuple[float, float]]] = [[]]
        level: float | None = None  # the height of the last value on the scale
        pts = [(x, y) for x, y in curve.points if math.isfinite(x)]
        starts = {s.index: s for s in stretches(pts)}
        for i, (x, y) in enumerate(pts):
            if scale.on_scale(y):
                level = scale.py(y)
                segments[-1].append((scale.px(x), level))
                continue
            if segments[-1]:
                segments.append([])  # the line breaks here
            s = starts.get(i)
            if s is None:
                continue
            if s.kind == "inf":
                my = scale.top
            elif s.kind == "-inf":
                my = scale.bottom
            elif level is not None:
                my = level
            else:
                after = next((v for _, v in pts[i:] if scale.on_scale(v)), None)
                my = scale.py(after) if after is not None else (scale.top + scale.bottom) / 2
            my = min(scale.bottom, max(scale.top, my))
            marks.append(_mark(s, scale.px(x), my, label))
        if curve.run in chart.clipped:
            for s in off_range(pts, scale):
                edge = scale.top + 1 if s.kind == "above" else scale.bottom - 1
                marks.append(_arrow(s, scale.px(pts[s.index][0]), edge, label, colour))
        dash = f' stroke-dasharray="{_dash(curve.run)}"' if _dash(curve.run) else ""
        out.append(f'<g class="run" stroke="{colour}" fill="{colour}"{dash}><title>{label}</title>')
        for seg in segments:
            if len(seg) == 1:
                out.append(f'<circle cx="{_n(seg[0][0])}" cy="{_n(seg[0][1])}" r="2.5"/>')
            elif seg:
                pts_text = " ".join(f"{_n(x)},{_n(y)}" for x, y in seg)
                out.append(f'<polyline fill="none" points="{pts_text}"/>')
        out.append("</g>")
    out.append("</g>")
    if marks:
        out.append(f'<g class="marks" fill="{MARK_COLOUR}" stroke="{MARK_COLOUR}">')
        out += marks
        out.append("</g>")
    out.append("</svg>")
    return "".join(out)


def _arrow(s: Stretch, x: float, y: float, label: str, colour: str) -> str:
    """↑ (↓): where a run's line leaves the chart above (below) its range."""
    dy = 1 if s.kind == "above" else -1
    d = f"M{_n(x)} {_n(y)}l-5 {8 * dy}m5 {-8 * dy}l5 {8 * dy}m-5 {-8 * dy}v{14 * dy}"
    return (
        f'<path class="off" d="{d}" fill="none" stroke="{colour}" stroke-width="2">'
        f"<title>{label}: {_esc(s.describe())}</title></path>"
    )


def _mark(s: Stretch, x: float, y: float, label: str) -> str:
    """▲ (inf, at the top), ▼ (-inf, at the bottom), × (NaN, where the curve was)."""
    title = f"<title>{label}: {_esc(s.describe())}</title>"
    if s.kind == "inf":
        d = f"M{_n(x)} {_n(y)}l5 9h-10z"
    elif s.kind == "-inf":
        d = f"M{_n(x)} {_n(y)}l5 -9h-10z"
    else:
        return (
            f'<path class="nan" d="M{_n(x - 5)} {_n(y - 5)}l10 10M{_n(x + 5)} {_n(y - 5)}'
            f'l-10 10" fill="none">{title}</path>'
        )
    return f'<path class="{s.kind}" d="{d}">{title}</path>'


# -- HTML -------------------------------------------------------------------------------

_CSS = """
:root { --fg: #1f2328; --dim: #59636e; --line: #d1d9e0; --bg: #ffffff; --soft: #f6f8fa;
  --ok: #1a7f37; --bad: #cf222e; --run: #0969da; --warn: #9a6700; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg);
  font: 14px/1.5 -apple-system, BlinkMacSystemFont, "Segoe UI", "Noto Sans", Helvetica, Arial,
  sans-serif; }
main { max-width: 1160px; margin: 0 auto; padding: 24px 20px 48px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 32px 0 10px; padding-bottom: 6px; border-bottom: 1px solid var(--line); }
h3 { font-size: 15px; margin: 18px 0 6px; }
.meta, .note, .legend .breaks, .dim { color: var(--dim); }
.meta { margin: 0; }
nav { margin: 10px 0 0; font-size: 13px; }
nav a { color: var(--run); text-decoration: none; margin-right: 14px; }
code, .mono, pre { font-family: ui-monospace, SFMono-Regular, "SF Mono", Menlo, Consolas,
  "Liberation Mono", monospace; font-size: 12.5px; }
.scroll { overflow-x: auto; border: 1px solid var(--line); border-radius: 6px; }
table { border-collapse: collapse; width: 100%; }
th, td { padding: 6px 10px; text-align: left; vertical-align: top; border-bottom: 1px solid var(--line); }
tr:last-child td { border-bottom: none; }
th { background: var(--soft); font-weight: 600; white-space: nowrap; }
.nowrap { white-space: nowrap; }
table.runs th { vertical-align: bottom; }
th.num { text-align: right; }
table.runs .sub { display: block; font-weight: 400; font-size: 12px; color: var(--dim); }
table.runs td.status-cell { min-width: 15em; max-width: 26em; overflow-wrap: anywhere; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.name { min-width: 8em; max-width: 22em; overflow-wrap: anywhere; }
td.wrap { min-width: 16em; max-width: 34em; overflow-wrap: anywhere; }
td.key { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12.5px;
  white-space: nowrap; }
tr.differs td.key { font-weight: 600; }
tr.differs td { background: #fff8c5; }
.status { font-weight: 600; white-space: nowrap; }
.status-finished { color: var(--ok); }
.status-failed, .status-diverged, .status-killed { color: var(--bad); }
.status-running { color: var(--run); }
.status-unknown { color: var(--dim); }
.reason { display: block; color: var(--dim); font-size: 12.5px; overflow-wrap: anywhere; }
.swatch { display: inline-block; width: 16px; height: 0;
  vertical-align: middle; margin-right: 6px; }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(min(100%, 520px), 1fr));
  gap: 16px; }
figure { margin: 0; border: 1px solid var(--line); border-radius: 6px; padding: 10px 12px; }
figcaption { font-weight: 600; margin-bottom: 4px; overflow-wrap: anywhere; }
figcaption .dim { font-weight: 400; font-size: 12.5px; }
svg.chart { display: block; width: 100%; height: auto; }
svg.chart .grid line { stroke: #eaeef2; stroke-width: 1; }
svg.chart .axis { stroke: #8c959f; fill: none; stroke-width: 1; }
svg.chart text { font-size: 11px; fill: var(--dim); font-family: inherit; }
svg.chart .run polyline { stroke-width: 1.8; stroke-linejoin: round; stroke-linecap: round; }
svg.chart .marks .nan { stroke-width: 2.2; }
.legend { list-style: none; margin: 6px 0 0; padding: 0; font-size: 12.5px; }
.legend li { overflow-wrap: anywhere; }
.legend.shared { display: flex; flex-wrap: wrap; gap: 2px 18px; margin: 0 0 12px; }
.legend .breaks { color: var(--bad); }
.notes { list-style: none; margin: 0; padding: 0; }
.notes li { border-left: 3px solid var(--line); padding: 4px 10px; margin: 6px 0; }
.notes li.kind-lesson { border-color: var(--warn); }
.notes li.kind-failure { border-color: var(--bad); }
.kind { font-weight: 600; text-transform: uppercase; font-size: 11px; letter-spacing: .04em;
  margin-right: 6px; }
.text { white-space: pre-wrap; overflow-wrap: anywhere; }
details { margin: 8px 0; border: 1px solid var(--line); border-radius: 6px; }
summary { cursor: pointer; padding: 6px 10px; background: var(--soft); overflow-wrap: anywhere; }
pre.patch { margin: 0; padding: 8px 10px; overflow-x: auto; line-height: 1.4; }
pre.patch .add { color: #116329; background: #dafbe1; display: inline-block; min-width: 100%; }
pre.patch .del { color: #82071e; background: #ffebe9; display: inline-block; min-width: 100%; }
pre.patch .hunk { color: #0550ae; }
pre.patch .file { font-weight: 700; }
@media (max-width: 600px) {
  main { padding: 14px 10px 32px; }
  h1 { font-size: 20px; }
  th, td { padding: 5px 7px; }
  td.wrap { min-width: 12em; }
  table.runs td.status-cell { min-width: 12em; }
  figure { padding: 8px 6px; }
  svg.chart text { font-size: 17px; }
}
footer { margin-top: 28px; }
@media print { .scroll { overflow: visible; } details { break-inside: avoid; } }
"""


def _status_html(rec: RunRecord) -> str:
    status = rec["status"]
    parts = [f'<span class="status status-{_esc(status)}">{_esc(status)}</span>']
    if rec.get("status_reason"):
        parts.append(f'<span class="reason">{_esc(rec["status_reason"])}</span>')
    return "".join(parts)


def _run_head_html(rec: RunRecord, index: int) -> str:
    return (
        f'{_swatch(index)}{_esc(_run_label(rec))} <span class="dim mono">{_esc(rec["id"])}</span>'
    )


def _transposed_html(
    rows: Sequence[tuple[str, Sequence[str]]],
    records: Sequence[RunRecord],
    *,
    key_header: str,
    mark_differences: bool = True,
) -> str:
    head = "".join(f"<th>{_run_head_html(r, i)}</th>" for i, r in enumerate(records))
    body = []
    for key, values in rows:
        differs = mark_differences and len(records) > 1 and len(set(values)) > 1
        cls = ' class="differs"' if differs else ""
        cells = "".join(f'<td class="mono wrap">{_esc(v)}</td>' for v in values)
        body.append(f'<tr{cls}><td class="key">{_esc(key)}</td>{cells}</tr>')
    return (
        f'<div class="scroll"><table><thead><tr><th>{_esc(key_header)}</th>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _patch_html(diff: str) -> str:
    lines = []
    cut = len(diff) > PATCH_MAX
    for line in (diff[:PATCH_MAX] if cut else diff).splitlines():
        text = html.escape(printable(line, tabs=True), quote=True)
        if line.startswith(("diff --git", "+++ ", "--- ", "index ", "new file", "deleted file")):
            lines.append(f'<span class="file">{text}</span>')
        elif line.startswith("@@"):
            lines.append(f'<span class="hunk">{text}</span>')
        elif line.startswith("+"):
            lines.append(f'<span class="add">{text}</span>')
        elif line.startswith("-"):
            lines.append(f'<span class="del">{text}</span>')
        else:
            lines.append(text)
    if cut:
        lines.append(
            f'<span class="dim">… cut at {PATCH_MAX:,} of {len(diff):,} characters'
            " (labbook show RUN --patch has all of it)</span>"
        )
    return '<pre class="patch">' + "\n".join(lines) + "</pre>"


def render_html(report: Report) -> str:
    """The report as one self-contained HTML document."""
    recs = report.records
    n = len(recs)
    title = f"labbook report: {_run_label(recs[0])}" if n == 1 else f"labbook report: {n} runs"
    out: list[str] = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        # nothing to fetch, nothing to run: the report is text, style and inline SVG
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; img-src data:\">",
        '<meta name="generator" content="labbook">',
        f"<title>{_esc(title)}</title>",
        f"<style>{_CSS}</style>",
        "</head><body><main>",
        f"<header><h1>{_esc(title)}</h1>",
        f'<p class="meta">generated by labbook {_esc(report.version)} on '
        f"{_esc(report.generated_at)} · {n} run{'s' if n != 1 else ''}</p>",
        '<nav><a href="#runs">Runs</a><a href="#config">Config</a><a href="#curves">Curves</a>'
        '<a href="#notes">Notes</a><a href="#code">Code and environment</a></nav></header>',
    ]
    # runs
    out.append(
        '<section id="runs"><h2>Runs</h2><div class="scroll"><table class="runs"><thead><tr>'
    )
    out += [f"<th>{h}</th>" for h in ("id", "name", "status", "seed")]
    for m in report.metrics:
        goal = metric_goal(m)
        best = f"best ({goal})" if goal else "best"
        out.append(f'<th class="num">{_esc(m)}<span class="sub">last · {best}</span></th>')
    out += [f"<th>{h}</th>" for h in ("duration", "commit", "host")]
    out.append("</tr></thead><tbody>")
    for i, rec in enumerate(recs):
        cells = [
            f'<td class="mono nowrap">{_swatch(i)}{_esc(rec["id"])}</td>',
            f'<td class="name">{_esc(rec.get("name") or "—")}</td>',
            f'<td class="status-cell">{_status_html(rec)}</td>',
            f'<td class="num">{_esc(seed_text(rec))}</td>',
        ]
        for m in report.metrics:
            last, best = _last_best(rec, m)
            sub = f'<span class="sub">{_esc(best)}</span>' if best != "—" else ""
            cells.append(f'<td class="num">{_esc(last)}{sub}</td>')
        cells += [
            f'<td class="num">{_esc(duration(rec))}</td>',
            f'<td class="mono">{_esc(_commit(rec))}</td>',
            f'<td class="mono">{_esc(rec.get("host") or "—")}</td>',
        ]
        out.append(f"<tr>{''.join(cells)}</tr>")
    out.append("</tbody></table></div></section>")
    # config
    out.append('<section id="config"><h2>Config</h2>')
    out.append(f'<p class="note">{_esc(_config_note(report))}</p>')
    if report.config:
        rows = [
            (k, [cell(v) if v is not None else "—" for v in vs]) for k, vs in report.config.items()
        ]
        out.append(_transposed_html(rows, recs, key_header="key", mark_differences=False))
    out.append("</section>")
    # curves
    out.append('<section id="curves"><h2>Curves</h2>')
    if report.charts:
        if n > SHARED_LEGEND:
            items = "".join(_legend_item(r, i) for i, r in enumerate(recs))
            out.append(f'<ul class="legend shared">{items}</ul>')
        out.append('<div class="charts">')
        for k, chart in enumerate(report.charts):
            out.append(_figure_html(chart, recs, f"c{k}"))
        out.append("</div>")
    else:
        out.append(
            '<p class="note">No metric curve '
            + ("was recorded." if n == 1 else "is shared by all the runs.")
            + "</p>"
        )
    if report.not_charted:
        items = "; ".join(f"{_esc(name)} ({_esc(why)})" for name, why in report.not_charted[:30])
        more = f"; … {len(report.not_charted) - 30} more" if len(report.not_charted) > 30 else ""
        out.append(f'<p class="note">Not charted: {items}{more}.</p>')
    out.append("</section>")
    # notes
    out.append('<section id="notes"><h2>Notes, lessons and failures</h2>')
    any_notes = False
    for i, rec in enumerate(recs):
        failure = _failure_text(rec)
        notes = rec.get("notes") or []
        if not failure and not notes:
            continue
        any_notes = True
        out.append(f'<h3>{_run_head_html(rec, i)}</h3><ul class="notes">')
        if failure:
            out.append(
                '<li class="kind-failure"><span class="kind">failure</span>'
                f'<span class="text">{_esc_lines(failure)}</span></li>'
            )
        for note in notes:
            kind = str(note.get("kind") or "note")
            who = " · ".join(x for x in (fmt_time(note.get("at")), note.get("author") or "") if x)
            out.append(
                f'<li class="kind-{_esc(kind)}"><span class="kind">{_esc(kind)}</span>'
                f'<span class="dim">{_esc(who)}</span><br>'
                f'<span class="text">{_esc_lines(str(note.get("text") or "").strip())}</span></li>'
            )
        out.append("</ul>")
    if not any_notes:
        out.append('<p class="note">No notes, lessons or failures.</p>')
    out.append("</section>")
    # code and environment
    out.append('<section id="code"><h2>Code and environment</h2>')
    out.append("<h3>Code</h3>")
    if any(r.get("git") for r in recs):
        out.append(_transposed_html(_code_rows(report), recs, key_header="git"))
    else:
        out.append(f'<p class="note">{NO_GIT}</p>')
    seen: dict[str, str] = {}
    for rec in recs:
        diff = (rec.get("git") or {}).get("diff") or ""
        if not diff:
            continue
        stat = patch_stat(diff)
        label = f"{_run_label(rec)} ({rec['id']})"
        if diff in seen:
            out.append(
                f'<p class="note">Patch of {_esc(label)}: the same as {_esc(seen[diff])}.</p>'
            )
            continue
        seen[diff] = label
        files = ", ".join(f"{f} +{a} −{r}" for f, a, r in stat.per_file[:8])
        if len(stat.per_file) > 8:
            files += f", … {len(stat.per_file) - 8} more"
        out.append(
            f"<details><summary>Patch of {_esc(label)}: {_esc(stat.text())}"
            f' <span class="dim">({_esc(files)})</span></summary>{_patch_html(diff)}</details>'
        )
    out.append("<h3>Environment</h3>")
    out.append(_transposed_html(_env_rows(recs), recs, key_header="env"))
    out.append("</section>")
    out.append(
        '<footer><p class="meta">Only what labbook stored is shown (secrets were redacted'
        " when it was recorded).</p></footer>"
    )
    out.append("</main></body></html>\n")
    return "\n".join(out)


#: With more runs than this, the curves share one legend (each chart's own names
#: only the runs with values off its scale).
SHARED_LEGEND = 4


def _legend_item(rec: RunRecord, index: int, breaks: str = "") -> str:
    return (
        f"<li>{_swatch(index)}"
        f'{_esc(_run_label(rec))} <span class="dim mono">{_esc(rec["id"])}</span>{breaks}</li>'
    )


def _figure_html(chart: Chart, recs: Sequence[RunRecord], uid: str) -> str:
    scale = _Scale(chart, (0.0, 0.0, 1.0, 1.0))
    tags = sorted({c.tag for c in chart.curves} - {chart.name})
    sub = []
    if tags:
        sub.append("recorded as " + ", ".join(tags))
    if chart.log:
        sub.append("log scale")
    caption = _esc(chart.name) + (
        f' <span class="dim">({_esc("; ".join(sub))})</span>' if sub else ""
    )
    legend = []
    for c in chart.curves:
        rec = recs[c.run]
        pts = [(x, y) for x, y in c.points if math.isfinite(x)]
        found = stretches(pts) + (off_range(pts, scale) if c.run in chart.clipped else [])
        found.sort(key=lambda s: s.index)
        breaks = f' <span class="breaks">{_esc(describe_stretches(found))}</span>' if found else ""
        if found or len(recs) <= SHARED_LEGEND:
            legend.append(_legend_item(rec, c.run, breaks))
    missing = len(recs) - len(chart.curves)
    if missing and len(recs) > SHARED_LEGEND:
        legend.append(f'<li class="dim">{missing} of the runs have no {_esc(chart.name)}</li>')
    return (
        f"<figure><figcaption>{caption}</figcaption>{svg_chart(chart, recs, uid=uid)}"
        f'<ul class="legend">{"".join(legend)}</ul></figure>'
    )


# -- Markdown ---------------------------------------------------------------------------

#: Characters with an inline meaning in GitHub-flavoured Markdown (code, emphasis,
#: links and images, strikethrough, table cells), escaped with a backslash. Text is
#: never put at the start of a line, so block syntax (``#``, ``-``, ``1.``) needs none.
_MD_PUNCT = re.compile(r"([\\`*_\[\]|~])")


def md_text(text: object, limit: int | None = None) -> str:
    """Recorded text as literal Markdown on one line: control characters escaped,
    ``&<>`` as entities (no raw HTML), Markdown punctuation backslash-escaped (no
    links, emphasis or table cells of its own), at most ``limit`` characters."""
    s = printable(text)
    if limit is not None and len(s) > limit:
        s = s[: limit - 1] + "…"
    s = html.escape(s, quote=False)
    return _MD_PUNCT.sub(r"\\\1", s)


def _md_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """Rows of cells that are already Markdown (escaped); one table line each."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _md_run_head(rec: RunRecord) -> str:
    name = rec.get("name")
    head = f"`{rec['id']}`"
    return f"{md_text(name, 40)} {head}" if name else head


def spark(points: Sequence[tuple[float, float]], width: int = SPARK_WIDTH) -> str:
    """A curve as ``width`` characters at most, on its own scale (log when its positive
    values span :data:`LOG_SPAN`): ``▁``–``█``, and ``×`` NaN, ``▲`` inf, ``▼`` -inf at
    the first point of each such stretch (kept even when points are left out)."""
    pts = [(x, y) for x, y in points if math.isfinite(x)]
    if len(pts) > width:
        idx = [round(k * (len(pts) - 1) / (width - 1)) for k in range(width)]
        for first in (s.index for s in stretches(pts)):
            if first not in idx:  # a divergence must show
                nearest = min(range(len(idx)), key=lambda k: abs(idx[k] - first))
                idx[nearest] = first
        pts = [pts[i] for i in sorted(set(idx))]
    ys = [y for _, y in pts if math.isfinite(y)]
    lo, hi = (min(ys), max(ys)) if ys else (0.0, 1.0)
    log = lo > 0 and hi / lo >= LOG_SPAN
    if log:
        lo, hi = math.log10(lo), math.log10(hi)
    chars = []
    for _, y in pts:
        kind = _kind(y)
        if kind is not None:
            chars.append(MARKS[kind])
            continue
        t = math.log10(y) if log else y
        level = len(SPARKS) // 2 if hi == lo else round((t - lo) / (hi - lo) * (len(SPARKS) - 1))
        chars.append(SPARKS[max(0, min(len(SPARKS) - 1, level))])
    return "".join(chars)


def _md_curves(report: Report) -> list[str]:
    lines = [
        "*Charts: see the HTML report (`labbook report … --format html`); GitHub does not"
        " show inline SVG. Here each curve is a sparkline on its own scale"
        " (× NaN, ▲ inf, ▼ -inf).*",
        "",
    ]
    if not report.charts:
        lines.append("No metric curve is shared by all the runs.")
        return lines
    rows = []
    for chart in report.charts:
        for c in chart.curves:
            rec = report.records[c.run]
            pts = [(x, y) for x, y in c.points if math.isfinite(x)]
            found = stretches(pts)
            rows.append(
                [
                    md_text(chart.name),
                    _md_run_head(rec),
                    f"`{spark(pts)}`" if pts else "",
                    f"{fmt_step(pts[0][0])}–{fmt_step(pts[-1][0])}" if pts else "—",
                    fmt_metric(pts[0][1]) if pts else "—",
                    fmt_metric(pts[-1][1]) if pts else "—",
                    md_text(describe_stretches(found)) if found else "",
                ]
            )
    lines += _md_table(["metric", "run", "curve", "steps", "first", "last", "non-finite"], rows)
    if report.not_charted:
        items = "; ".join(f"{md_text(n)} ({md_text(w)})" for n, w in report.not_charted[:30])
        lines += ["", f"Not charted: {items}."]
    return lines


def render_markdown(report: Report, limit: int = MD_LIMIT) -> str:
    """The report as GitHub-flavoured Markdown of at most ``limit`` characters."""
    recs = report.records
    n = len(recs)
    title = (
        f"labbook report: {md_text(_run_label(recs[0]), 80)}"
        if n == 1
        else f"labbook report: {n} runs"
    )
    head = [
        f"## {title}",
        "",
        f"<sub>generated by labbook {md_text(report.version)} on {md_text(report.generated_at)}"
        f" · {n} run{'s' if n != 1 else ''} · charts and patches: see the HTML report</sub>",
    ]
    sections: list[list[str]] = []
    # runs
    header = ["id", "name", "status", "seed"]
    for m in report.metrics:
        goal = metric_goal(m)
        header += [f"{md_text(m)} last", f"{md_text(m)} best" + (f" ({goal})" if goal else "")]
    header += ["duration", "commit", "host"]
    rows = []
    for rec in recs:
        status = f"**{md_text(rec['status'])}**"
        if rec.get("status_reason"):
            status += f" — {md_text(rec['status_reason'], 200)}"
        row = [
            f"`{rec['id']}`",
            md_text(rec.get("name") or "—", 80),
            status,
            md_text(seed_text(rec)),
        ]
        for m in report.metrics:
            last, best = _last_best(rec, m)
            row += [md_text(last), md_text(best)]
        row += [md_text(duration(rec)), f"`{_commit(rec)}`", md_text(rec.get("host") or "—")]
        rows.append(row)
    sections.append(["### Runs", "", *_md_table(header, rows)])
    # config
    lines = ["### Config", "", md_text(_config_note(report))]
    if report.config:
        rows = [
            [md_text(k, 80)] + [md_text(cell(v) if v is not None else "—", 120) for v in vs]
            for k, vs in report.config.items()
        ]
        lines += ["", *_md_table(["key", *[_md_run_head(r) for r in recs]], rows)]
    sections.append(lines)
    # curves
    sections.append(["### Curves", "", *_md_curves(report)])
    # notes
    lines = ["### Notes, lessons and failures", ""]
    any_notes = False
    for rec in recs:
        failure = _failure_text(rec)
        notes = rec.get("notes") or []
        if not failure and not notes:
            continue
        any_notes = True
        lines.append(f"**{_md_run_head(rec)}**")
        lines.append("")
        if failure:
            lines.append(f"- **failure**: {md_text(failure, 500)}")
        for note in notes:
            who = " · ".join(
                md_text(x) for x in (fmt_time(note.get("at")), note.get("author") or "") if x
            )
            text = "<br>".join(
                md_text(line, 500) for line in str(note.get("text") or "").strip().splitlines()
            )
            lines.append(f"- **{md_text(note.get('kind') or 'note')}** ({who}): {text}")
        lines.append("")
    if not any_notes:
        lines.append("No notes, lessons or failures.")
    sections.append(lines)
    # code and environment
    run_heads = [_md_run_head(r) for r in recs]
    lines = ["### Code and environment", ""]
    if any(r.get("git") for r in recs):
        lines += _md_table(
            ["git", *run_heads],
            ([md_text(k)] + [md_text(v, 120) for v in vs] for k, vs in _code_rows(report)),
        )
    else:
        lines.append(md_text(NO_GIT))
    lines.append("")
    lines += _md_table(
        ["env", *run_heads],
        ([md_text(k)] + [md_text(v, 120) for v in vs] for k, vs in _env_rows(recs)),
    )
    sections.append(lines)
    return _fit(head, sections, limit)


def _cut_note(left: int) -> str:
    return (
        f"*… {left} more line{'s' if left != 1 else ''} left out to fit a GitHub comment"
        " (`--format html` has everything).*"
    )


def _fit(head: list[str], sections: list[list[str]], limit: int) -> str:
    """Join the parts; when longer than ``limit``, cut the largest sections at a line
    (a table at a row) so that each gets a fair share, each cut saying so."""

    def size(lines: Sequence[str]) -> int:
        return sum(len(line) + 1 for line in lines)

    head_text = "\n".join(head) + "\n\n"
    sizes = [size(s) + 1 for s in sections]
    budget = limit - len(head_text) - 1
    if sum(sizes) <= budget:
        return head_text + "\n".join("\n".join(s) + "\n" for s in sections)
    reserve = len(_cut_note(10**9)) + 2
    shares = [0] * len(sections)
    left = budget
    order = sorted(range(len(sections)), key=lambda i: sizes[i])
    for k, i in enumerate(order):
        fair = left // (len(order) - k)
        shares[i] = min(sizes[i], fair)
        left -= shares[i]
    parts = []
    for i, lines in enumerate(sections):
        if sizes[i] <= shares[i]:
            parts.append("\n".join(lines) + "\n")
            continue
        kept: list[str] = []
        used = reserve + 1
        for line in lines:
            if used + len(line) + 1 > shares[i]:
                break
            kept.append(line)
            used += len(line) + 1
        # a cut table must end before the note: a blank line separates them
        kept += ["", _cut_note(len(lines) - len(kept))]
        parts.append("\n".join(kept) + "\n")
    text = head_text + "\n".join(parts)
    return text[:limit] if len(text) > limit else text
