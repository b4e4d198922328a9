"""Names, paths, tags and notes reach the terminal escaped, never raw (issue 9, item 6).

Run directories are named by whoever can write to the experiments directory. A
newline in a name must not split a row of ``labbook ls | awk``; an escape sequence
must not recolour, retitle or rewrite the reader's terminal; a bidi override must not
reorder what they read. Everything goes through the real CLI (``python -m labbook``)
on a real SQLite file, the daemon is the real ``labbook watch --log`` process, and the
TUI is driven by Textual's Pilot. ``--json`` keeps the true values, JSON-escaped.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from labbook.textsafe import json_text, printable, printable_lines
from tests.conftest import git, run_cli

#: Run dir names (their last part) that a hostile or careless writer could choose.
NASTY = {
    "newline": "new\nline",
    "sgr": "esc\x1b[31mred",
    "osc": "osc\x1b]0;title\x07",
    "cr": "cr\rret",
    "bidi": "bidi\u202eevil",
    "markup": "[red]mark[bold]up",
    "c1": "c1\x9b2Jdel\x7f",
}
BAD_BYTES = b"bad\xff\xfename"

#: Characters no human-facing output may contain raw: C0 controls but newline
#: (and tab), DEL, C1, bidi embeddings/overrides/isolates, line/paragraph separators.
RAW = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def assert_clean(text: str, what: str) -> None:
    """No raw control character, escape or bidi override in ``text``."""
    found = RAW.search(text)
    assert found is None, f"{what}: raw {found.group()!r} in {text!r}"


def write_run(path: bytes | str, *, lr: float = 0.1, diverge: bool = False) -> None:
    """A plain config + metrics run dir at ``path`` (bytes: a name that is not UTF-8)."""
    os.makedirs(path)
    base = os.fsencode(path)
    with open(base + b"/config.json", "w") as f:
        json.dump({"lr": lr, "opt\x1b[2Jim": f"sgd\u202e{lr:g}"}, f)
    with open(base + b"/metrics.csv", "w") as f:
        f.write("step,loss\n1,2.0\n2,nan\n" if diverge else "step,loss\n1,2.0\n2,1.0\n")


@pytest.fixture
def nasty(tmp_path: Path) -> dict[str, Any]:
    """A git project whose runs have hostile names, imported through the CLI."""
    project = tmp_path / "project"
    project.mkdir()
    git(project, "init", "-q", "-b", "main")
    (project / "train.py").write_text("print('train')\n")
    git(project, "add", "train.py")
    git(project, "commit", "-q", "-m", "initial")
    runs = project / "runs"
    for i, name in enumerate(NASTY.values()):
        write_run(str(runs / name), lr=0.1 + i / 100, diverge=name == NASTY["sgr"])
    write_run(os.fsencode(runs) + b"/" + BAD_BYTES)
    db = tmp_path / "labbook.db"
    r = run_cli("import", str(runs), env={"LABBOOK_DB": str(db)}, cwd=project)
    assert r.returncode == 0, r.stderr
    assert_clean(r.stdout + r.stderr, "import")
    recs = json.loads(cli(db, "ls", "--json").stdout)
    by_name = {os.path.basename(rec["path"]): rec for rec in recs}
    return {"db": db, "project": project, "runs": runs, "by_name": by_name}


def cli(db: Path, *args: str, cwd: Path | None = None, ok: bool = True) -> Any:
    r = run_cli(*args, env={"LABBOOK_DB": str(db), "NO_COLOR": "1"}, cwd=cwd)
    if ok:
        assert r.returncode == 0, (args, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    return r


def run_id(nasty: dict[str, Any], key: str) -> str:
    return str(nasty["by_name"][NASTY[key]]["id"])


# -- the one function -----------------------------------------------------------------


def test_printable_escapes_every_kind_of_control() -> None:
    assert printable("plain ünïcödé 中文 name") == "plain ünïcödé 中文 name"
    assert printable("a\nb\rc\td") == "a\\nb\\rc\\td"
    assert printable("\x1b[31mred\x1b]0;t\x07") == "\\x1b[31mred\\x1b]0;t\\x07"
    assert printable("\x7f\x85\x9b") == "\\x7f\\x85\\x9b"
    assert printable("x\u202ey\u2066z\u2069\u2028") == "x\\u202ey\\u2066z\\u2069\\u2028"
    assert printable(os.fsdecode(BAD_BYTES)) == "bad\\xff\\xfename"
    assert printable("in\tdent", tabs=True) == "in\tdent"
    assert printable(printable("\x1b\n")) == printable("\x1b\n")  # idempotent
    assert printable_lines("one\r\ntwo\nthree\rfour\x1b") == "one\ntwo\nthree\\rfour\\x1b"
    # JSON: the true value, every terminal-active character as a \\u escape
    text = json_text(json.dumps({"n": "\x7f\x85\u202e\u2028\x1b"}, ensure_ascii=False))
    assert_clean(text, "json")
    assert json.loads(text) == {"n": "\x7f\x85\u202e\u2028\x1b"}


# -- ls, show, search, diff, compare, check: piped --------------------------------------


def test_ls_piped_one_line_per_run_and_json_true_names(nasty: dict[str, Any]) -> None:
    db = nasty["db"]
    r = cli(db, "ls")
    assert_clean(r.stdout, "ls")
    assert b"\x1b" not in r.stdout.encode()
    lines = r.stdout.splitlines()
    assert len(lines) == 1 + len(NASTY) + 1  # header, one per run
    for name in NASTY.values():
        assert sum(printable(name) in line for line in lines) == 1, name
    assert sum("bad\\xff\\xfename" in line for line in lines) == 1
    # --json: the true names, JSON-escaped, and no raw DEL, C1 or bidi character
    out = cli(db, "ls", "--json").stdout
    assert_clean(out, "ls --json")
    names = {os.path.basename(rec["path"]) for rec in json.loads(out)}
    assert set(NASTY.values()) <= names
    assert "bad\\xff\\xfename" in names  # the store keeps undecodable bytes as \\xNN


def test_show_search_diff_compare_piped(nasty: dict[str, Any]) -> None:
    db = nasty["db"]
    sgr, nl, bidi = run_id(nasty, "sgr"), run_id(nasty, "newline"), run_id(nasty, "bidi")
    cli(db, "tag", sgr, "ta\x1b[31mg\u202e")
    cli(db, "note", sgr, "first line\nsecond \x1b]0;pwned\x07 line\u202e\r\nthird")
    for rec in nasty["by_name"].values():
        out = cli(db, "show", rec["id"]).stdout
        assert_clean(out, "show")
        assert printable(os.path.basename(rec["path"])) in out
    out = cli(db, "show", sgr).stdout
    assert "ta\\x1b[31mg\\u202e" in out and "opt\\x1b[2Jim" in out and "sgd\\u202e" in out
    # a multi-line note keeps its lines, indented under the first, escapes shown
    note = out[out.index("\nnotes\n") :].splitlines()
    assert note[2].endswith("first line")
    assert note[3] == "    second \\x1b]0;pwned\\x07 line\\u202e" and note[4] == "    third"
    shown = json.loads(cli(db, "show", sgr, "--json").stdout)
    assert shown["name"].endswith(NASTY["sgr"]) and "ta\x1b[31mg\u202e" in shown["tags"]
    assert shown["notes"][0]["text"].startswith("first line\nsecond \x1b]0;pwned\x07")

    for query in ("pwned", "esc", "bidi", "mark"):
        r = cli(db, "search", query)
        assert_clean(r.stdout + r.stderr, f"search {query}")
        assert r.stdout.strip()
        assert_clean(cli(db, "search", query, "--json").stdout, "search --json")
    for args in (
        ("diff", sgr, nl),
        ("diff", sgr, nl, "--stat"),
        ("diff", sgr, bidi, "--all"),
        ("compare", sgr, nl, bidi, run_id(nasty, "osc"), run_id(nasty, "c1")),
    ):
        out = cli(db, *args).stdout
        assert_clean(out, " ".join(args))
        assert printable(NASTY["sgr"]) in out
        assert_clean(cli(db, *args, "--json").stdout, f"{args} --json")


def test_check_and_ambiguous_errors_escaped(nasty: dict[str, Any]) -> None:
    db, project = nasty["db"], nasty["project"]
    sgr = run_id(nasty, "sgr")
    cli(db, "note", sgr, "--failure", "lr \x1b[2J too high\nreally \u202e")
    (project / "c.json").write_text(json.dumps({"lr": 0.11, "opt\x1b[2Jim": "sgd\u202e0.11"}))
    r = cli(db, "check", "--config", "c.json", cwd=project)
    assert "diverged" in r.stdout and printable(NASTY["sgr"]) in r.stdout
    assert "lr \\x1b[2J too high really \\u202e" in r.stdout
    assert_clean(r.stdout + r.stderr, "check")
    assert_clean(cli(db, "check", "--config", "c.json", "--json", cwd=project).stdout, "json")
    # the shell hooks' fast path prints the same lines
    hook = subprocess.run(
        [sys.executable, "-m", "labbook.analysis.check", "--line", "python train.py --lr 0.11"],
        env={**os.environ, "LABBOOK_DB": str(db)},
        capture_output=True,
        text=True,
        cwd=project,
        timeout=120,
    )
    assert_clean(hook.stdout + hook.stderr, "check hook")
    # an error names runs: one line per candidate, each escaped
    r = cli(db, "show", "project/runs/", ok=False)
    assert r.returncode != 0
    assert_clean(r.stderr, "error")


# -- a terminal: rich output -------------------------------------------------------------


def on_a_terminal(db: Path, *args: str) -> str:
    """What ``labbook ARGS`` writes when its stdout is a terminal (a real pty)."""
    master, slave = pty.openpty()
    env = {**os.environ, "LABBOOK_DB": str(db), "COLUMNS": "250", "LINES": "200"}
    env.pop("NO_COLOR", None)
    p = subprocess.Popen(
        [sys.executable, "-m", "labbook", *args],
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=subprocess.PIPE,
        env=env,
    )
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif p.poll() is not None:
            break
    os.close(master)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 0 and b"Traceback" not in err, err
    return b"".join(chunks).decode("utf-8").replace("\r\n", "\n")


#: The colour and style codes rich writes itself (SGR); nothing else may be left.
_SGR = re.compile("\x1b\\[[0-9;]*m")


def test_ls_and_show_on_a_terminal(nasty: dict[str, Any]) -> None:
    db = nasty["db"]
    out = on_a_terminal(db, "ls")
    assert "\x1b[" in out  # rich's own colours: this really was terminal rendering
    text = _SGR.sub("", out)
    assert_clean(text, "ls on a terminal")
    for name in NASTY.values():
        assert printable(name) in text, name  # [red] shown as text, not as markup
    assert len(text.strip().splitlines()) == 1 + len(NASTY) + 1
    sgr = run_id(nasty, "sgr")
    cli(db, "note", sgr, "one\ntwo \x1b]0;pwned\x07\u202e")
    text = _SGR.sub("", on_a_terminal(db, "show", sgr))
    assert_clean(text, "show on a terminal")
    assert printable(NASTY["sgr"]) in text and "opt\\x1b[2Jim" in text
    assert "    two \\x1b]0;pwned\\x07\\u202e" in text
    text = _SGR.sub("", on_a_terminal(db, "show", run_id(nasty, "markup")))
    assert "[red]mark[bold]up" in text
    text = _SGR.sub("", on_a_terminal(db, "diff", sgr, run_id(nasty, "osc"), "--no-pager"))
    assert_clean(text, "diff on a terminal")
    assert printable(NASTY["osc"]) in text


# -- warnings and the daemon ---------------------------------------------------------------


def test_warnings_name_files_escaped(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    bad = runs / "w\x1b]0;x\x07\nrun\u202e"
    write_run(str(bad))
    (bad / "config.json").write_text("{not json")
    db = tmp_path / "labbook.db"
    r = cli(db, "import", str(runs))
    warnings = [line for line in r.stderr.splitlines() if line]
    assert warnings and all(line.startswith("labbook: warning: ") for line in warnings)
    assert printable(str(bad / "config.json")) in r.stderr
    assert_clean(r.stderr, "warnings")


def test_watch_log_lines_escaped(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    db = tmp_path / "labbook.db"
    log = tmp_path / "watch.log"
    with open(log, "w") as out:
        p = subprocess.Popen(
            [sys.executable, "-m", "labbook", "--db", str(db), "watch", "--log", str(root)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while "watching" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        run = root / "w\x1b]0;T\x07\nx\u202e"
        write_run(str(run), diverge=True)
        (run / "train.log").write_text("ValueError: bad \x1b[31m thing\u202e\n")
        deadline = time.monotonic() + 90
        while "diverged" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        p.send_signal(signal.SIGINT)
        p.wait(timeout=60)
    text = log.read_text()
    assert "Traceback" not in text, text
    assert_clean(text, "watch --log")
    events = [line for line in text.splitlines() if printable(run.name) in line]
    assert any(" started " in line for line in events), text
    assert any(" diverged " in line for line in events), text


# -- the TUI ---------------------------------------------------------------------------


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_tui_shows_names_escaped(nasty: dict[str, Any]) -> None:
    pytest.importorskip("textual")
    from labbook_tui.app import make_app
    from labbook_tui.run_table import RunTable
    from rich.console import Console
    from textual.widgets import Static

    def plain(renderable: Any) -> str:
        import io

        console = Console(width=300, file=io.StringIO(), record=True, color_system=None)
        console.print(renderable)
        return console.export_text()

    db = nasty["db"]
    sgr = run_id(nasty, "sgr")
    cli(db, "note", sgr, "one\ntwo \x1b]0;pwned\x07\u202e")
    app = make_app(db, poll_interval=None)
    async with app.run_test(size=(200, 40)) as pilot:
        await pilot.pause()
        table = app.screen.query_one(RunTable)
        rows = {rec["id"]: table.render_line(1 + i).text for i, rec in enumerate(table.records)}
        for key in ("newline", "sgr", "cr", "bidi", "c1"):
            row = rows[run_id(nasty, key)]
            assert printable(NASTY[key])[:10] in row, (key, row)
            assert_clean(row, "runs table row")
        assert "[red]mark" in rows[run_id(nasty, "markup")]
        # the run screen: title, overview (name, path, config keys, the note)
        table.cursor_row = [r["id"] for r in table.records].index(sgr)
        await pilot.press("enter")
        await pilot.pause()
        screen = app.screen
        for selector in ("#title", "#overview-body", "#env-body", "#code-body"):
            text = plain(screen.query_one(selector, Static).content)
            assert_clean(text, selector)
        overview = plain(screen.query_one("#overview-body", Static).content)
        assert printable(NASTY["sgr"]) in overview
        assert "two \\x1b]0;pwned\\x07\\u202e" in overview
        await pilot.press("escape")
        await pilot.pause()
        # the diff screen of two marked runs
        table = app.screen.query_one(RunTable)
        for rid in (sgr, run_id(nasty, "osc")):
            table.cursor_row = [r["id"] for r in table.records].index(rid)
            await pilot.press("space")
        await pilot.press("d")
        await pilot.pause()
        assert type(app.screen).__name__ == "DiffScreen"
        body = plain(app.screen.query_one("#sections-body", Static).content)
        assert_clean(body, "diff screen")
        assert "opt\\x1b[2Jim" in body and "sgd\\u202e" in body


def test_piped_ls_and_show_do_not_import_rich(nasty: dict[str, Any]) -> None:
    """Escaping costs no start-up: the piped paths load labbook.textsafe, not rich."""
    probe = (
        "import sys\n"
        "from labbook.cli import main\n"
        "try:\n"
        "    main()\n"
        "except SystemExit:\n"
        "    pass\n"
        "sys.stderr.write('rich loaded' if 'rich' in sys.modules else 'no rich')\n"
    )
    for args in (["ls"], ["show", run_id(nasty, "sgr")]):
        r = subprocess.run(
            [sys.executable, "-c", probe, *args],
            env={**os.environ, "LABBOOK_DB": str(nasty["db"])},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.stderr.endswith("no rich"), (args, r.stderr)
        assert_clean(r.stdout, " ".join(args))
