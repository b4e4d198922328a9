"""``labbook report``: Markdown and HTML reports of runs recorded by the real CLI.

The runs: two TensorBoard runs written by tensorboardX and recorded by ``labbook
import``; two ``labbook run`` launches of a script that prints its metrics in a
real git repository with an uncommitted change, one of them diverging to NaN
under a hostile name, with notes. The HTML is parsed by the standard library's
parser and opened in a real headless Chromium (skipped only where there is none).
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import textwrap
import zlib
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli

HOSTILE = "<script>alert(1)</script>"
NOTE = "trying <b>a big</b> lr | with a pipe"
LESSON = "warm up first\nthen raise lr"

TRAIN = """\
import sys
lr = float(sys.argv[sys.argv.index("--lr") + 1])
seed = int(sys.argv[sys.argv.index("--seed") + 1])
print(f"Namespace(lr={lr}, seed={seed}, epochs=20)", flush=True)
loss = 2.0
for step in range(1, 21):
    loss = loss * (1 - lr) if lr < 1 else loss * 10
    shown = float("nan") if lr >= 1 and step >= 12 else loss
    print(f"step {step}: loss {shown:.4f}, val acc {min(1.0, step / 20):.4f}", flush=True)
"""

TB = """\
import math, sys
from tensorboardX import SummaryWriter
for name, lr in (("lr0.1", 0.1), ("lr0.01", 0.01)):
    w = SummaryWriter(f"{sys.argv[1]}/{name}")
    for step in range(1, 101):
        w.add_scalar("train/loss", 2.0 * math.exp(-lr * step / 5) + 0.02 * math.sin(step), step)
        if step % 10 == 0:
            w.add_scalar("val/acc", 1 - math.exp(-lr * step / 8), step)
    w.close()
"""


def _env(home: Path) -> dict[str, str]:
    return {
        "HOME": str(home),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "LABBOOK_STRICT": "1",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "Test",
        "GIT_AUTHOR_EMAIL": "test@example.invalid",
        "GIT_COMMITTER_NAME": "Test",
        "GIT_COMMITTER_EMAIL": "test@example.invalid",
    }


def _ok(res: subprocess.CompletedProcess[str]) -> str:
    assert res.returncode == 0, res.stderr
    return res.stdout


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One database with four runs recorded by the real CLI (made once for the module)."""
    root = tmp_path_factory.mktemp("lab")
    home = root / "home"
    home.mkdir()
    env = _env(home)
    db = root / "labbook.db"
    # TensorBoard runs, as tensorboardX writes them
    subprocess.run(
        [sys.executable, "-c", TB, str(root / "tb")], check=True, env={**os.environ, **env}
    )
    _ok(run_cli("import", str(root / "tb"), db=db, env=env))
    # printed metrics, launched in a real repository with an uncommitted change
    repo = root / "project"
    repo.mkdir()
    (repo / "train.py").write_text(TRAIN)
    for args in (["init", "-q", "-b", "main"], ["add", "train.py"], ["commit", "-q", "-m", "init"]):
        subprocess.run(["git", *args], cwd=repo, check=True, env={**os.environ, **env})
    (repo / "train.py").write_text(TRAIN + "# tuned\n# twice\n")
    py = sys.executable
    _ok(run_cli("run", "--", py, "train.py", "--lr", "0.1", "--seed", "1",
                db=db, cwd=repo, env=env))  # fmt: skip
    _ok(run_cli("run", "--no-check", "--name", HOSTILE, "--note", NOTE, "--",
                py, "train.py", "--lr", "5", "--seed", "2", db=db, cwd=repo, env=env))  # fmt: skip
    _ok(run_cli("note", "@-2", "--lesson", LESSON, db=db, env=env))
    runs = json.loads(_ok(run_cli("ls", "--json", db=db, env=env)))
    by_name = {r["name"]: r for r in runs}
    assert by_name[HOSTILE]["status"] == "diverged"
    return {"db": db, "env": env, "root": root, "runs": runs, "by_name": by_name}


def _report(lab: dict[str, Any], *args: str) -> str:
    return _ok(run_cli("report", *args, db=lab["db"], env=lab["env"]))


# -- Markdown ---------------------------------------------------------------------------


def _cells(line: str) -> list[str]:
    """A GFM table line's cells: split at pipes that are not backslash-escaped."""
    body = line.strip()
    assert body.startswith("|") and body.endswith("|") and not body.endswith("\\|"), line
    return re.split(r"(?<!\\)\|", body[1:-1])


def _tables(md: str) -> list[list[list[str]]]:
    tables: list[list[list[str]]] = []
    current: list[list[str]] | None = None
    for line in md.splitlines():
        if line.startswith("|"):
            if current is None:
                current = []
                tables.append(current)
            current.append(_cells(line))
        else:
            current = None
    return tables


def test_markdown_report(lab: dict[str, Any]) -> None:
    md = _report(lab, "--since", "1d", "--format", "md")
    assert len(md) <= 65_536
    for run in lab["runs"]:
        assert f"`{run['id']}`" in md
    # sections, in order
    heads = [line for line in md.splitlines() if line.startswith("### ")]
    assert heads == [
        "### Runs",
        "### Config",
        "### Curves",
        "### Notes, lessons and failures",
        "### Code and environment",
    ]
    # every table parses: a header, a separator, rows of as many cells
    tables = _tables(md)
    assert len(tables) == 5  # runs, config, curves, git, env
    for table in tables:
        assert len(table) >= 3
        assert all(re.fullmatch(r"\s*-{3,}\s*", c) for c in table[1])
        assert {len(row) for row in table} == {len(table[0])}, table
    runs, config, curves, code, env = tables
    assert len(runs) == 2 + 4
    header = [c.strip() for c in runs[0]]
    assert header[:4] == ["id", "name", "status", "seed"]
    assert header[-3:] == ["duration", "commit", "host"]
    assert "train\\_loss last" in header and "train\\_loss best (min)" in header
    # the diverged run: status, its reason, NaN last; the hostile name as text
    row = next(r for r in runs if HOSTILE in html.unescape(r[1].replace("\\", "")))
    assert "**diverged**" in row[2] and "non-finite" in row[2]
    assert "nan" in [c.strip() for c in row]
    assert "<script" not in md and "&lt;script&gt;" in md
    assert "&lt;b&gt;a big&lt;/b&gt;" in md and "with a pipe" in md  # the note, escaped
    # the config keys that differ: lr differs, epochs (the same for all that have it) only
    # because the TensorBoard runs have no config
    keys = [r[0].strip() for r in config[2:]]
    assert "lr" in keys
    # curves: sparklines, NaN marked; charts in the HTML report
    assert "see the HTML report" in md
    nan_row = next(r for r in curves[2:] if "`" in r[1] and HOSTILE in html.unescape(r[1]))
    assert "×" in nan_row[2] and "NaN from 12" in nan_row[6]
    # notes and lessons with their kinds, the failure message
    assert "**lesson**" in md and "warm up first<br>then raise lr" in md
    assert "**failure**: nan at step 12" in md
    # code: commit, dirty, the patch's stat
    fields = {r[0].strip(): [c.strip() for c in r[1:]] for r in code[2:]}
    assert "yes" in fields["dirty"] and "1 file changed, +2 −0" in fields["patch"]
    assert {r[0].strip() for r in env[2:]} >= {"python", "host"}


def test_markdown_fits_a_github_comment(lab: dict[str, Any], tmp_path: Path) -> None:
    """Two runs whose configs differ in 4,000 keys: the config table is cut at a row,
    the report stays under GitHub's 65,536 characters and every table still parses."""
    for name, value in (("wide-a", 1), ("wide-b", 2)):
        d = tmp_path / "wide" / name
        d.mkdir(parents=True)
        cfg = {f"block{i // 100}.layer{i % 100}.width": value * 1000 + i for i in range(4000)}
        (d / "config.json").write_text(json.dumps(cfg))
        (d / "metrics.jsonl").write_text(
            "".join(json.dumps({"step": s, "loss": 1.0 / s}) + "\n" for s in range(1, 30))
        )
    db = tmp_path / "wide.db"
    _ok(run_cli("import", str(tmp_path / "wide"), db=db, env=lab["env"]))
    md = _ok(run_cli("report", "--since", "1d", db=db, env=lab["env"]))
    assert len(md) <= 65_536
    assert "left out to fit a GitHub comment" in md
    tables = _tables(md)
    assert all({len(r) for r in t} == {len(t[0])} for t in tables)
    assert "### Code and environment" in md  # later sections keep their share


def test_report_of_one_run_shows_its_config(lab: dict[str, Any]) -> None:
    run = lab["by_name"][HOSTILE]
    md = _report(lab, run["id"])
    assert md.startswith("## labbook report: &lt;script&gt;")
    config = _tables(md)[1]
    assert {r[0].strip(): r[1].strip() for r in config[2:]} == {
        "epochs": "20",
        "lr": "5",
        "seed": "2",
    }


def test_report_needs_runs(lab: dict[str, Any]) -> None:
    res = run_cli("report", db=lab["db"], env=lab["env"])
    assert res.returncode == 2
    assert res.stderr.startswith("labbook: error: report needs runs")
    res = run_cli("report", "--where", "lr>100", db=lab["db"], env=lab["env"])
    assert res.returncode == 2 and "no run matches" in res.stderr


# -- HTML -------------------------------------------------------------------------------

VOID = {"meta", "br", "hr", "img", "input", "link", "area", "base", "col", "wbr", "source"}
SVG_LEAVES = {"line", "polyline", "path", "circle", "rect"}


class Checker(HTMLParser):
    """Well-formed (every element closed, in order), and what it holds."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.tags: dict[str, int] = {}
        self.attrs: list[tuple[str, str, str | None]] = []
        self.text: list[str] = []
        self.where: list[list[str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] = self.tags.get(tag, 0) + 1
        self.attrs += [(tag, k, v) for k, v in attrs]
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] = self.tags.get(tag, 0) + 1
        self.attrs += [(tag, k, v) for k, v in attrs]

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
            return
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        self.where.append(list(self.stack))


def _check_html(page: str) -> Checker:
    checker = Checker()
    checker.feed(page)
    checker.close()
    assert not checker.errors, checker.errors[:5]
    assert checker.stack == [], checker.stack
    return checker


def _no_external(checker: Checker) -> None:
    assert "script" not in checker.tags
    for tag, key, value in checker.attrs:
        assert not key.startswith("on"), (tag, key)  # no event handlers
        if key in ("src", "href", "xlink:href", "action", "srcset", "poster", "data"):
            assert value is not None and value.startswith("#"), (tag, key, value)
        assert "url(http" not in (value or "") and "url(//" not in (value or "")


@pytest.fixture(scope="module")
def html_report(lab: dict[str, Any]) -> Path:
    out = lab["root"] / "report.html"
    res = run_cli("report", "--since", "1d", "-o", str(out), db=lab["db"], env=lab["env"])
    assert res.returncode == 0, res.stderr
    assert res.stdout == "" and f"wrote {out}" in res.stderr  # -o .html: html
    return out


def test_html_is_well_formed_and_self_contained(html_report: Path, lab: dict[str, Any]) -> None:
    page = html_report.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    checker = _check_html(page)
    _no_external(checker)
    assert "@import" not in page and "<link" not in page
    # the hostile name and note are text, never markup
    assert HOSTILE in checker.text and NOTE in checker.text
    assert "<b>" not in page
    # the runs table: a row per run; the charts: one svg per shared canonical metric
    assert checker.tags["svg"] == 2  # train_loss and val_acc: all four runs have them
    assert checker.tags["polyline"] >= 2 * 3  # the diverged run's loss: NaN from step 12
    assert checker.tags["details"] == 1  # one patch, the same in both launched runs
    assert "1 file changed, +2 −0" in "".join(checker.text)
    # the diverged run's NaN is marked on the chart and named in the legend
    assert any("NaN from 12" in t for t in checker.text)
    assert re.search(r'<path class="nan"', page)
    for kind in ("lesson", "note", "failure"):
        assert f'class="kind-{kind}"' in page


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None


CHROMIUM = _chromium()
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="needs Chromium (Debian's package chromium; .ci/run installs it)",
)


def _headless(profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", f"--user-data-dir={profile}", *args]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def _png_pixels(path: Path, rows: int) -> tuple[int, int, list[bytes]]:
    """Width, height and the first ``rows`` rows of an 8-bit RGB(A) PNG, unfiltered
    (the standard library's zlib and struct: no imaging package)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        chunk = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = chunk
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and colour in (2, 6) and interlace == 0, (depth, colour, interlace)
    bpp = 4 if colour == 6 else 3
    raw = zlib.decompress(idat)
    stride = width * bpp
    prev = bytearray(stride)
    out = []
    for y in range(min(rows, height)):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        if f == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 0xFF
        elif f == 2:
            line = bytearray((a + b) & 0xFF for a, b in zip(line, prev, strict=True))
        elif f == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xFF
        elif f == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b, c = prev[i], prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 0xFF
        out.append(bytes(line))
        prev = line
    return width, height, out


@needs_chromium
def test_html_in_headless_chromium(html_report: Path, lab: dict[str, Any], tmp_path: Path) -> None:
    url = html_report.as_uri()
    res = _headless(tmp_path / "profile-dom", "--dump-dom", url)
    assert res.returncode == 0, res.stderr[-2000:]
    dom = res.stdout
    checker = _check_html(dom.replace("<html", "<!DOCTYPE html><html", 1))
    # the rendered DOM: the runs table has a row per run, the chart its SVG elements
    runs_table = dom[dom.index('<section id="runs">') : dom.index('<section id="config">')]
    assert runs_table.count("<tr>") == 1 + 4
    for run in lab["runs"]:
        assert run["id"] in runs_table
    assert dom.count("<svg") == 2 and dom.count("<polyline") >= 6
    # the hostile name is text in the DOM, and no script element exists
    assert "script" not in checker.tags
    assert HOSTILE in checker.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom
    # a screenshot at 1200 px: the page is drawn (not one colour) and the run colours show
    shot = tmp_path / "r.png"
    res = _headless(
        tmp_path / "profile-shot", f"--screenshot={shot}", "--window-size=1200,900", url
    )
    assert res.returncode == 0 and shot.exists(), res.stderr[-2000:]
    width, height, rows = _png_pixels(shot, 400)
    assert (width, height) == (1200, 900)
    bpp = len(rows[0]) // width
    colours = {row[i : i + 3] for row in rows for i in range(0, len(row), bpp)}
    assert len(colours) > 20, len(colours)  # text, lines and swatches, not a blank page
    swatch = bytes.fromhex("0072b2")  # the first run's colour, in the runs table
    assert swatch in colours


def test_report_help_and_formats(lab: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "r.md"
    run = lab["runs"][0]["id"]
    res = run_cli("report", run, "-o", str(out), db=lab["db"], env=lab["env"])
    assert res.returncode == 0, res.stderr
    assert out.read_text(encoding="utf-8").startswith("## labbook report")
    page = _report(lab, run, "--format", "html")
    _no_external(_check_html(page))
    help_text = _ok(run_cli("report", "--help", db=lab["db"], env=lab["env"]))
    assert "--format [md|html]" in help_text and "--output" in help_text


def test_sparklines_and_patch_stat() -> None:
    from labbook.render.report import patch_stat, spark

    assert spark([(1, 1.0), (2, 2.0), (3, float("nan")), (4, float("inf"))]) == "▁█×▲"
    assert spark([(s, 1.0) for s in range(3)]) == "▅▅▅"
    long = [(s, float(s)) for s in range(100)] + [(100, float("nan"))]
    assert spark(long).endswith("×") and len(spark(long)) <= 24
    diff = textwrap.dedent(
        """\
        diff --git a/a.py b/a.py
        index 1..2 100644
        --- a/a.py
        +++ b/a.py
        @@ -1,2 +1,2 @@
        -x = 1
        +x = 2
        +y = 3
        diff --git a/b.bin b/b.bin
        Binary files a/b.bin and b/b.bin differ
        """
    )
    stat = patch_stat(diff)
    assert (stat.files, stat.added, stat.removed) == (2, 2, 1)
    assert stat.text() == "2 files changed, +2 −1"


def test_scale_keeps_healthy_runs_readable() -> None:
    """A diverging run beside healthy ones leaves the chart; alone, it gets a log scale."""
    from labbook.render.report import Chart, Curve, y_scale

    healthy = [Curve(0, "loss", [(float(s), 2.0 / s) for s in range(1, 50)])]
    healthy.append(Curve(1, "loss", [(float(s), 2.5 / s) for s in range(1, 50)]))
    wild = Curve(2, "loss", [(float(s), 10.0**s) for s in range(1, 40)] + [(40.0, float("nan"))])
    chart = y_scale(Chart("train_loss", [*healthy, wild]))
    assert chart.clipped == [2] and not chart.log
    assert (chart.lo, chart.hi) == (2.0 / 49, 2.5)
    alone = y_scale(Chart("train_loss", [wild]))
    assert alone.clipped == [] and alone.log and (alone.lo, alone.hi) == (1.0, 39.0)
    same = y_scale(Chart("val_acc", healthy))
    assert same.clipped == [] and not same.log
    # a healthy run on another scale is not clipped: both fit on a log scale
    big = Curve(3, "loss", [(float(s), 20000.0 / s) for s in range(1, 50)])
    scaled = y_scale(Chart("train_loss", [healthy[0], big]))
    assert scaled.clipped == [] and scaled.log
    # a run that failed is clipped like one with NaN
    failed = y_scale(Chart("train_loss", [healthy[0], big]), failed=[3])
    assert failed.clipped == [3] and not failed.log


def test_markdown_text_is_literal() -> None:
    from labbook.render.report import md_text

    assert md_text("[x](http://e.invalid) **b** `c` a|b <img src=x> &amp;") == (
        "\\[x\\](http://e.invalid) \\*\\*b\\*\\* \\`c\\` a\\|b &lt;img src=x&gt; &amp;amp;"
    )
    assert md_text("line\nbreak\x1b[31m") == "line\\\\nbreak\\\\x1b\\[31m"
