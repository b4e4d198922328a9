"""Terminal text for ``labbook diff`` and ``labbook compare``: only formatting, no queries.

Text is built as one string so that the CLI can decide where it goes: straight to
stdout (piped: plain, no colour), or through a pager when it is longer than the
terminal (as git does). Colour is ANSI through ``click.style`` and only added when
``color=True``.

Recorded text (names, paths, keys, values, commit subjects, patches) is shown through
:func:`labbook.textsafe.printable` where it is put into a line; and every line is
passed through it again as it is added (plain), or all of it but the colour codes
that :meth:`_Out.style` made (``color=True``), so no control character or escape
sequence from a run reaches the terminal.
"""

from __future__ import annotations

import re
import shlex
from datetime import datetime, timezone
from typing import Any

import click

from labbook.analysis.diff import SECTIONS
from labbook.model import RunRecord
from labbook.render.runs import fmt_seconds, fmt_value
from labbook.textsafe import printable as _p

_SECTION_STYLE: dict[str, Any] = {"bold": True, "fg": "cyan"}
#: The SGR (colour) sequences click.style writes; nothing else in a line is left raw.
_SGR = re.compile(r"(\x1b\[[0-9;]*m)")


class _Out:
    """Lines with optional colour."""

    def __init__(self, color: bool) -> None:
        self.color = color
        self.lines: list[str] = []

    def style(self, text: str, **kw: Any) -> str:
        return click.style(_p(text, tabs=True), **kw) if self.color else _p(text, tabs=True)

    def add(self, text: str = "") -> None:
        if not self.color:
            self.lines.append(_p(text, tabs=True))
        else:
            parts = _SGR.split(text)  # odd parts are the colour codes
            self.lines.append(
                "".join(p if i % 2 else _p(p, tabs=True) for i, p in enumerate(parts))
            )

    def section(self, name: str, note: str = "") -> None:
        if self.lines:
            self.add()
        self.add(
            self.style(name, **_SECTION_STYLE) + (f"  {self.style(note, dim=True)}" if note else "")
        )

    def text(self) -> str:
        return "\n".join(self.lines)


def _v(value: Any) -> str:
    return "(unset)" if value is None else _p(fmt_value(value))


def _signed(x: float) -> str:
    return f"{x:+.4g}"


def _size(n: Any) -> str:
    if not isinstance(n, (int, float)):
        return "?"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(size) < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} PB"


def _when(ts: Any) -> str:
    if not isinstance(ts, (int, float)):
        return "?"
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def _run_label(rec: RunRecord) -> str:
    name = rec.get("name") or ""
    return _p(f"{rec['id']}  {name}".rstrip())


def _g(x: float) -> str:
    return f"{x:.2g}"


def noise_statement(tag: str, entry: dict[str, Any]) -> str | None:
    """What seed noise says of a metric's delta, or None without seed noise.

    'Δ val/acc +0.42 is within seed noise (±0.61 at 95%, n 5)' for one pair;
    'Δ val/acc +0.42 exceeds seed noise: the seeds' means differ by +0.4 (±0.2 at
    95%, Welch p 0.001, n 5 + 5)' for two seed groups; 'constant across seeds (n 4)';
    'no seed-noise verdict: …' with the reason.
    """
    noise = entry.get("seed_noise")
    delta = entry.get("delta")
    if not noise or delta is None:
        return None
    if noise.get("constant"):
        return f"constant across seeds (n {noise['n']})"
    if noise.get("within") is None:
        return f"no seed-noise verdict: {_p(noise.get('reason') or 'unknown')}"
    verdict = "is within" if noise["within"] else "exceeds"
    head = f"Δ {_p(tag)} {_signed(delta)} {verdict} seed noise"
    if noise.get("test") == "welch":
        ga, gb = noise["groups"]["a"], noise["groups"]["b"]
        text = (
            f"{head}: the seeds' means differ by {_signed(noise['difference'])} "
            f"(±{_g(noise['interval'])} at 95%, Welch p {_g(noise['p'])}, "
            f"n {ga['n']} + {gb['n']})"
        )
        return text + _group_verdict(tag, noise)
    return f"{head} (±{_g(noise['interval'])} at 95%, n {noise['n']})"


def _group_verdict(tag: str, noise: dict[str, Any]) -> str:
    """What ``compare --group`` would say of the two seed groups, after a dash."""
    v = noise.get("verdict")
    if v in ("a", "b", "higher", "lower"):
        who = "A" if v == "a" else "B"
        return f" — {who} is {'better' if v in ('a', 'b') else v} on {_p(tag)}"
    if v == "noise" and noise.get("hint"):
        return " — " + " and ".join(f"`{_p(h)}`" for h in noise["hint"])
    return ""


def _noise_colour(entry: dict[str, Any]) -> str | None:
    within = (entry.get("seed_noise") or {}).get("within")
    return None if within is None else ("green" if within else "yellow")


# -- sections -------------------------------------------------------------------------------


def _config(o: _Out, d: dict[str, Any]) -> None:
    rows: list[tuple[str, str, str]] = []
    for k, (va, vb) in d.get("changed", {}).items():
        rows.append(("~", _p(k), f"{_v(va)} → {_v(vb)}"))
    for k, v in d.get("added", {}).items():
        rows.append(("+", _p(k), _v(v)))
    for k, v in d.get("removed", {}).items():
        rows.append(("-", _p(k), _v(v)))
    rows.sort(key=lambda r: r[1])
    width = min(max((len(r[1]) for r in rows), default=0), 40)
    colours = {"~": "yellow", "+": "green", "-": "red"}
    for mark, key, text in rows:
        o.add(f"  {o.style(mark, fg=colours[mark])} {key.ljust(width)}  {text}")


def _seed_text(s: dict[str, Any]) -> str:
    if s.get("value") is None:
        return "not set" if s.get("known", True) else "unknown"
    return _p(f"{s['value']} ({s.get('source') or '?'})")


def _seed(o: _Out, d: dict[str, Any]) -> None:
    o.add(f"  {_seed_text(d['a'])} → {_seed_text(d['b'])}")
    for k, (va, vb) in d.get("config", {}).items():
        o.add(f"  {_p(k)}: {_v(va)} → {_v(vb)}")


def _diff_lines(o: _Out, text: str, indent: str = "    ") -> None:
    for line in text.splitlines():
        if line.startswith(("+++", "---")):
            o.add(indent + o.style(line, bold=True))
        elif line.startswith("@@"):
            o.add(indent + o.style(line, fg="cyan"))
        elif line.startswith("+"):
            o.add(indent + o.style(line, fg="green"))
        elif line.startswith("-"):
            o.add(indent + o.style(line, fg="red"))
        else:
            o.add(indent + _p(line, tabs=True))


def _code(o: _Out, d: dict[str, Any], stat: bool) -> None:
    ca, cb = d.get("commit", [None, None])
    if d.get("note"):
        o.add(f"  {_p(d['note'])}")
    commits = d.get("commits")
    if commits is None:
        o.add(f"  same commit {_p((ca or 'none')[:12])}")
    else:
        o.add(f"  commit {_p((ca or 'none')[:12])} → {_p((cb or 'none')[:12])}")
        if not commits.get("available"):
            o.add(f"    {o.style(commits.get('note') or 'commits unknown', fg='yellow')}")
        for key, label in (("a_to_b", "in B, not in A"), ("b_to_a", "in A, not in B")):
            entries = commits.get(key) or []
            if entries:
                more = "+" if commits.get("truncated") else ""
                o.add(f"    {len(entries)}{more} commit{'s' if len(entries) != 1 else ''} {label}:")
                if not stat:
                    for e in entries:
                        o.add(f"      {o.style(e['commit'][:10], fg='yellow')} {_p(e['subject'])}")
    if d.get("root"):
        o.add(f"  repositories: {_p(d['root'][0])} → {_p(d['root'][1])}")
    patch = d.get("patch")
    if patch:
        parts = []
        for key, label in (
            ("files_changed", "edited differently"),
            ("files_b_only", "edited in B only"),
            ("files_a_only", "edited in A only"),
        ):
            if patch.get(key):
                parts.append(f"{label}: {_p(', '.join(patch[key]))}")
        o.add("  uncommitted changes differ" + (f" ({'; '.join(parts)})" if parts else ""))
        if not stat and patch.get("diff"):
            _diff_lines(o, patch["diff"])
    untracked = d.get("untracked")
    if untracked:
        for key, mark, colour in (
            ("added", "+", "green"),
            ("removed", "-", "red"),
            ("changed", "~", "yellow"),
        ):
            names = untracked.get(key) or []
            if names:
                o.add(
                    f"  untracked {key}: " + ", ".join(o.style(mark + n, fg=colour) for n in names)
                )
        if not stat and untracked.get("diff"):
            _diff_lines(o, untracked["diff"])


def _fp(f: dict[str, Any]) -> str:
    return f"{_size(f.get('size'))}, {f.get('files')} file{'s' if f.get('files') != 1 else ''}"


def _data(o: _Out, d: dict[str, Any]) -> None:
    for key, ch in d.get("changed", {}).items():
        fa, fb = ch["a"], ch["b"]
        what = ch["what"]
        bits = []
        if "path" in what:
            bits.append(f"path {_p(fa.get('path'))} → {_p(fb.get('path'))}")
        if "size" in what or "files" in what:
            bits.append(f"{_fp(fa)} → {_fp(fb)}")
        if "content" in what:
            bits.append("content differs")
        if "mtime" in what:
            bits.append(f"modified {_when(fa.get('mtime'))} → {_when(fb.get('mtime'))}")
        verdict = (
            "changed between the runs"
            if set(what) - {"mtime"}
            else "touched (same size and sampled content)"
        )
        o.add(f"  {o.style(key, fg='yellow')} ({_p(fb.get('path'))}) {verdict}: " + "; ".join(bits))
    for key, f in d.get("added", {}).items():
        o.add(f"  {o.style('+' + key, fg='green')} ({_p(f.get('path'))}): {_fp(f)}")
    for key, f in d.get("removed", {}).items():
        o.add(f"  {o.style('-' + key, fg='red')} ({_p(f.get('path'))}): {_fp(f)}")


def _env(o: _Out, d: dict[str, Any], stat: bool) -> None:
    if "recorded" in d:
        ra, rb = d["recorded"]
        o.add(f"  environment recorded: {'yes' if ra else 'no'} → {'yes' if rb else 'no'}")
    for key in ("python", "platform", "cuda", "driver", "gpus", "host"):
        if key in d:
            va, vb = d[key]
            o.add(f"  {key}: {_v(va)} → {_v(vb)}")
    pk = d.get("packages")
    if pk:
        counts = ", ".join(
            f"{len(pk[k])} {k}" for k in ("changed", "added", "removed") if pk.get(k)
        )
        o.add(f"  packages: {counts}")
        if not stat:
            for n, (va, vb) in pk.get("changed", {}).items():
                o.add(f"    {o.style('~', fg='yellow')} {_p(n)} {_p(va)} → {_p(vb)}")
            for n, v in pk.get("added", {}).items():
                o.add(f"    {o.style('+', fg='green')} {_p(n)} {_p(v)}")
            for n, v in pk.get("removed", {}).items():
                o.add(f"    {o.style('-', fg='red')} {_p(n)} {_p(v)}")
    for k, (va, vb) in (d.get("vars") or {}).items():
        o.add(f"  ${_p(k)}: {_v(va)} → {_v(vb)}")


def _command(o: _Out, d: dict[str, Any]) -> None:
    for mark, argv, colour in (("-", d.get("a"), "red"), ("+", d.get("b"), "green")):
        text = shlex.join(argv) if argv is not None else "(not recorded)"
        o.add("  " + o.style(f"{mark} {text}", fg=colour))


def _metrics(o: _Out, d: dict[str, Any], stat: bool) -> None:
    rows = [
        (
            _p(tag),
            _v(e.get("a")),
            _v(e.get("b")),
            _signed(e["delta"]) if e.get("delta") is not None else "",
        )
        for tag, e in d.items()
    ]
    widths = [max(len(r[i]) for r in [("metric", "A", "B", "Δ"), *rows]) for i in range(4)]
    o.add(
        "  "
        + o.style(
            "  ".join(
                h.ljust(w) for h, w in zip(("metric", "A", "B", "Δ"), widths, strict=True)
            ).rstrip(),
            dim=True,
        )
    )
    for (tag, va, vb, delta), entry in zip(rows, d.values(), strict=True):
        line = "  ".join(
            (tag.ljust(widths[0]), va.rjust(widths[1]), vb.rjust(widths[2]), delta.rjust(widths[3]))
        )
        statement = noise_statement(tag, entry)
        if statement and not stat:
            colour = _noise_colour(entry)
            look: dict[str, Any] = {"fg": colour} if colour else {"dim": True}
            line += "  " + o.style(statement, **look)
        o.add("  " + line.rstrip())


def _speed(o: _Out, d: dict[str, Any]) -> None:
    labels = {
        "wall_s": ("wall time", fmt_seconds),
        "steps_per_s": ("steps/s", lambda x: fmt_value(x) if x is not None else "—"),
        "gpu_util_pct": ("GPU utilisation %", lambda x: fmt_value(x) if x is not None else "—"),
        "peak_memory_mib": ("GPU memory MiB", lambda x: fmt_value(x) if x is not None else "—"),
    }
    for key, (label, fmt) in labels.items():
        if key in d:
            va, vb = d[key]["a"], d[key]["b"]
            ratio = f" ({(vb / va - 1) * 100:+.0f}%)" if va and vb is not None else ""
            o.add(f"  {label}: {fmt(va)} → {fmt(vb)}{ratio}")


def _failure(f: dict[str, Any] | None) -> str:
    if not f:
        return "none"
    step = f" at step {f['step']}" if f.get("step") is not None else ""
    return _p(f"{f.get('kind')}{step}: {f.get('message')}")


def _outcome(o: _Out, d: dict[str, Any]) -> None:
    if "status" in d:
        o.add(f"  status: {_p(d['status'][0])} → {_p(d['status'][1])}")
    if "failure" in d:
        o.add(f"  failure: {_failure(d['failure'][0])} → {_failure(d['failure'][1])}")


def _stat_line(section: str, d: dict[str, Any]) -> str:
    if section == "config":
        return ", ".join(f"{len(d.get(k, {}))} {k}" for k in ("changed", "added", "removed"))
    if section == "metrics":
        noisy = sum(1 for e in d.values() if (e.get("seed_noise") or {}).get("within"))
        return f"{len(d)} differ" + (f", {noisy} within seed noise" if noisy else "")
    if section == "seed":
        return f"{_seed_text(d['a'])} → {_seed_text(d['b'])}"
    if section == "code":
        parts = [k for k in ("commits", "patch", "untracked") if k in d]
        return ", ".join(parts) or _p(d.get("note", ""))
    keys = [k for k in d if k not in ("a", "b")]
    return ", ".join(keys) if keys else "differs"


# -- entry points -----------------------------------------------------------------------------


def render_diff(
    d: dict[str, Any],
    a: RunRecord,
    b: RunRecord,
    *,
    color: bool = False,
    stat: bool = False,
) -> str:
    """The text of ``labbook diff`` (``stat``: one line per section)."""
    o = _Out(color)
    o.add(f"A  {_run_label(a)}")
    o.add(f"B  {_run_label(b)}")
    shown = [s for s in SECTIONS if s in d]
    if not shown:
        o.add()
        o.add("no differences")
        return o.text()
    if stat:
        o.add()
        width = max(len(s) for s in shown)
        for s in shown:
            body = d[s]
            line = "same" if body.get("same") else _stat_line(s, body)
            o.add(f"{o.style(s.ljust(width), **_SECTION_STYLE)}  {line}")
        return o.text()
    for s in shown:
        body = d[s]
        if body.get("same"):
            detail = ", ".join(f"{_p(k)} {_v(v)}" for k, v in body.items() if k != "same")
            o.section(s, "same" + (f" ({detail})" if detail else ""))
            continue
        o.section(s)
        _section(o, s, body, stat)
    return o.text()


def _section(o: _Out, s: str, body: dict[str, Any], stat: bool) -> None:
    """The lines of section ``s`` of a diff (without its title)."""
    if s == "config":
        _config(o, body)
    elif s == "seed":
        _seed(o, body)
    elif s == "code":
        _code(o, body, stat)
    elif s == "data":
        _data(o, body)
    elif s == "env":
        _env(o, body, stat)
    elif s == "command":
        _command(o, body)
    elif s == "metrics":
        _metrics(o, body, stat)
    elif s == "speed":
        _speed(o, body)
    elif s == "outcome":
        _outcome(o, body)


def section_text(s: str, body: dict[str, Any], *, color: bool = False) -> str:
    """One section of a diff as ``labbook diff`` shows it, without its title (the TUI's
    diff shows the same lines)."""
    o = _Out(color)
    _section(o, s, body, False)
    return o.text()


def render_compare(table: dict[str, Any], *, color: bool = False) -> str:
    """The text of ``labbook compare``: a row per differing param and key metric, a column per run."""
    o = _Out(color)
    runs = table["runs"]
    header = ["", *[_p(r["id"]) for r in runs]]
    names = ["name", *[_p(r.get("name") or "") for r in runs]]
    rows: list[tuple[str, list[str]]] = [("head", header), ("head", names)]
    for key, values in table["params"].items():
        rows.append(("param", [_p(key), *[_v(v) for v in values]]))
    if not table["params"]:
        rows.append(("note", ["(no param differs)", *["" for _ in runs]]))
    for tag, values in table["metrics"].items():
        rows.append(("metric", [_p(tag), *[_v(v) for v in values]]))
    widths = [max(len(r[1][i]) for r in rows) for i in range(len(header))]
    for kind, cells in rows:
        text = "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()
        if kind == "head":
            text = o.style(text, bold=True)
        elif kind == "metric":
            first, rest = text[: widths[0]], text[widths[0] :]
            text = o.style(first, fg="cyan") + rest
        o.add(text)
    return o.text()


def needs_pager(text: str, height: int) -> bool:
    """Whether text is taller than the terminal (then it goes through a pager, as git's does)."""
    return text.count("\n") + 1 > max(height - 1, 1)
