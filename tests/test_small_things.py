"""Issue 12.7, the small things: ls/search say what a limit cut, note ids in show,
the demo in its own database, show --patch, the search index kept at write time,
whole words ranked first, shell completion. Through the real CLI and real SQLite."""

from __future__ import annotations

import json
import os
import pty
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from labbook.model import GitState, RunFacts
from labbook.store import Store
from tests.conftest import run_cli

PATCH = (
    "diff --git a/train.py b/train.py\n"
    "index 1111111..2222222 100644\n"
    "--- a/train.py\n"
    "+++ b/train.py\n"
    "@@ -1,2 +1,2 @@\n"
    " import torch\n"
    "-lr = 0.1\n"
    "+lr = 0.05\n"
)


def _save(store: Store, key: str, **kw: object) -> str:
    facts = RunFacts(path=f"/runs/{key}", framework="generic", source_key=f"/runs/{key}")
    facts.name = key
    for k, v in kw.items():
        setattr(facts, k, v)
    return store.save_run(facts)[0]


def _many(db: Path, n: int) -> None:
    with Store.open(db) as store:
        for i in range(n):
            _save(store, f"run-{i:03d}", config={"lr": 0.1, "i": i})


def _on_pty(args: list[str], env: dict[str, str] | None = None, rows: int = 40) -> tuple[str, str]:
    """The real CLI with stderr (and stdout) on a terminal: (stdout, stderr)."""
    import fcntl
    import struct
    import termios

    out_master, out_slave = pty.openpty()
    err_master, err_slave = pty.openpty()
    for fd in (out_slave, err_slave):
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, 120, 0, 0))
    full_env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "120", **(env or {})}
    full_env.pop("NO_COLOR", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "labbook", *args],
        stdin=subprocess.DEVNULL,
        stdout=out_slave,
        stderr=err_slave,
        env=full_env,
    )
    os.close(out_slave)
    os.close(err_slave)
    chunks: dict[int, bytes] = {out_master: b"", err_master: b""}
    import select

    open_fds = [out_master, err_master]
    while open_fds:
        ready, _, _ = select.select(open_fds, [], [], 60)
        if not ready:
            break
        for fd in ready:
            try:
                data = os.read(fd, 65536)
            except OSError:
                data = b""
            if not data:
                open_fds.remove(fd)
            else:
                chunks[fd] += data
    proc.wait(timeout=60)
    os.close(out_master)
    os.close(err_master)
    return (
        chunks[out_master].decode(errors="replace").replace("\r\n", "\n"),
        chunks[err_master].decode(errors="replace").replace("\r\n", "\n"),
    )


# -- "showing 50 of 1,234 runs" ---------------------------------------------------------


def test_ls_and_search_say_what_the_limit_left_out(db_path: Path) -> None:
    _many(db_path, 12)
    _, err = _on_pty(["--db", str(db_path), "ls", "-n", "5"])
    assert "showing 5 of 12 runs (-n 0 for all)" in err
    _, err = _on_pty(["--db", str(db_path), "search", "-n", "3", "lr"])
    assert "showing 3 of 12 runs (-n 0 for all)" in err
    # nothing cut: nothing said; piped stderr: nothing said either
    _, err = _on_pty(["--db", str(db_path), "ls", "-n", "0"])
    assert "showing" not in err
    _, err = _on_pty(["--db", str(db_path), "ls", "-n", "12"])
    assert "showing" not in err
    r = run_cli("ls", "-n", "5", db=db_path)
    assert r.returncode == 0 and "showing" not in r.stderr and len(r.stdout.splitlines()) == 6


def test_limit_note_counts_with_a_cap() -> None:
    from labbook.render.runs import limit_note

    assert limit_note(50, 1234, cap=10_000) == "showing 50 of 1,234 runs (-n 0 for all)"
    assert limit_note(50, 10_001, cap=10_000) == "showing 50 of 10,000+ runs (-n 0 for all)"
    assert limit_note(50, 50, cap=10_000) is None


# -- note ids ------------------------------------------------------------------------


def test_show_and_json_carry_note_ids_that_delete_takes(db_path: Path) -> None:
    with Store.open(db_path) as store:
        _save(store, "baseline")
    first = run_cli("note", "baseline", "lr too high", db=db_path)
    second = run_cli("note", "baseline", "--lesson", "halve it", db=db_path)
    assert first.returncode == 0 and second.returncode == 0
    shown = run_cli("show", "baseline", db=db_path).stdout
    notes = json.loads(run_cli("show", "baseline", "--json", db=db_path).stdout)["notes"]
    assert [n["text"] for n in notes] == ["lr too high", "halve it"]
    ids = [n["id"] for n in notes]
    assert all(isinstance(i, int) for i in ids)
    for note_id, text in zip(ids, ["lr too high", "halve it"], strict=True):
        line = next(ln for ln in shown.splitlines() if text in ln)
        assert f"#{note_id} " in line
    listed = json.loads(run_cli("ls", "--json", db=db_path).stdout)[0]["notes"]
    assert [n["id"] for n in listed] == ids
    r = run_cli("note", "--delete", str(ids[0]), db=db_path)
    assert r.returncode == 0, r.stderr
    notes = json.loads(run_cli("show", "baseline", "--json", db=db_path).stdout)["notes"]
    assert [n["id"] for n in notes] == ids[1:]
    # on a terminal too
    out, _ = _on_pty(["--db", str(db_path), "show", "baseline"])
    assert f"#{ids[1]} " in out


# -- the demo ------------------------------------------------------------------------


def test_demo_never_writes_into_the_users_database(tmp_path: Path) -> None:
    mine = tmp_path / "mine.db"
    with Store.open(mine) as store:
        _save(store, "my-own-run")
    before = mine.read_bytes()
    tmp = {"TMPDIR": str(tmp_path)}
    for r in (
        run_cli("demo", env={**tmp, "LABBOOK_DB": str(mine)}),
        run_cli("demo", db=mine, env=tmp),
    ):
        assert r.returncode == 0, r.stderr
        assert "imported 3 runs" in r.stdout and "lr-too-high" in r.stdout
        line = next(ln for ln in r.stdout.splitlines() if ln.startswith("demo database: "))
        demo_db = Path(line.split(": ", 1)[1].split(" (")[0])
        assert demo_db.exists() and demo_db != mine and str(demo_db).startswith(str(tmp_path))
        assert f"labbook --db {demo_db} ls" in r.stdout
        assert len(json.loads(run_cli("ls", "--json", db=demo_db).stdout)) == 3
    assert mine.read_bytes() == before
    assert [r["name"] for r in json.loads(run_cli("ls", "--json", db=mine).stdout)] == [
        "my-own-run"
    ]


# -- show --patch --------------------------------------------------------------------


def _with_patch(db: Path) -> None:
    with Store.open(db) as store:
        git = GitState(root="/src", commit="a" * 40, branch="main", dirty=True, diff=PATCH)
        _save(store, "patched", git=git)
        _save(store, "clean", git=GitState(root="/src", commit="b" * 40, branch="main"))
        _save(store, "nogit")


def test_show_patch_piped_is_the_plain_diff(db_path: Path) -> None:
    _with_patch(db_path)
    r = run_cli("show", "patched", "--patch", db=db_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout == PATCH and "\x1b[" not in r.stdout
    shown = run_cli("show", "patched", db=db_path).stdout
    assert "labbook show --patch" in shown
    r = run_cli("show", "clean", "-p", db=db_path)
    assert r.returncode == 0 and r.stdout == ""
    assert "no uncommitted changes (at commit bbbbbbbbbbbb)" in r.stderr
    r = run_cli("show", "nogit", "--patch", db=db_path)
    assert r.returncode == 0 and "no git state was recorded" in r.stderr
    r = run_cli("show", "patched", "--patch", "--color", "always", db=db_path)
    assert "\x1b[32m+lr = 0.05" in r.stdout and "\x1b[31m-lr = 0.1" in r.stdout


def test_show_patch_on_a_terminal_goes_through_the_pager_in_colour(
    db_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _with_patch(db_path)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    paged = tmp_path / "paged.txt"
    pager = bindir / "less"  # a pager named less, shown colour by LESS=FRX, as git sets it
    pager.write_text(f'#!/bin/sh\necho "LESS=$LESS" > {paged}.env\ncat > {paged}\n')
    pager.chmod(0o755)
    for name in ("PAGER", "LABBOOK_PAGER", "LESS"):
        monkeypatch.delenv(name, raising=False)
    env = {"PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}
    out, err = _on_pty(["--db", str(db_path), "show", "patched", "--patch"], env=env, rows=5)
    assert err == ""
    text = paged.read_text()
    assert "\x1b[32m+lr = 0.05" in text and "\x1b[36m@@ -1,2 +1,2 @@" in text
    assert Path(f"{paged}.env").read_text().strip() == "LESS=FRX"
    assert "+lr" not in out  # all of it went to the pager
    paged.unlink()
    out, _ = _on_pty(
        ["--db", str(db_path), "show", "patched", "--patch", "--no-pager"],
        env=env,
        rows=5,
    )
    assert not paged.exists() and "\x1b[32m+lr = 0.05" in out


# -- the search index at write time --------------------------------------------------


def test_saves_keep_the_config_index_current(db_path: Path) -> None:
    with Store.open(db_path) as store:
        rid = _save(store, "a", config={"optimizer.name": "adamw", "lr": 0.1})
        _save(store, "b", config={"optimizer.name": "sgd"})
        conn = store.conn
        assert conn.execute("SELECT count(*) FROM search_dirty").fetchone()[0] == 0
        doc = conn.execute(
            "SELECT text FROM search_docs WHERE run_id = ? AND field = 'config'", (rid,)
        ).fetchone()[0]
        assert doc == "lr = 0.1; optimizer.name = adamw"
        # saved again with another config: the document follows, in the same save
        _save(store, "a", config={"optimizer.name": "lion"})
        assert conn.execute("SELECT count(*) FROM search_dirty").fetchone()[0] == 0
        # saved without config: no document
        _save(store, "b", config={})
        docs = conn.execute(
            "SELECT run_id, text FROM search_docs WHERE field = 'config'"
        ).fetchall()
        assert docs == [(rid, "optimizer.name = lion")]
    assert json.loads(run_cli("search", "lion", "--json", db=db_path).stdout)[0]["id"] == rid
    assert json.loads(run_cli("search", "adamw", "--json", db=db_path).stdout) == []
    assert json.loads(run_cli("search", "sgd", "--json", db=db_path).stdout) == []


def test_params_written_by_an_older_version_are_still_indexed_on_search(db_path: Path) -> None:
    """An older labbook wrote params and left the run in search_dirty: search rebuilds it."""
    with Store.open(db_path) as store:
        rid = _save(store, "old", config={"lr": 0.1})
    conn = sqlite3.connect(db_path)
    with conn:
        conn.execute("DELETE FROM params WHERE run_id = ?", (rid,))
        conn.execute(
            "INSERT INTO params (run_id, key, value, num) VALUES (?, 'scheduler', '\"cosine\"', NULL)",
            (rid,),
        )
    assert conn.execute("SELECT run_id FROM search_dirty").fetchall() == [(rid,)]
    conn.close()
    hits = json.loads(run_cli("search", "cosine", "--json", db=db_path).stdout)
    assert [h["id"] for h in hits] == [rid]


# -- whole words first ---------------------------------------------------------------


def test_whole_word_matches_rank_above_substrings(db_path: Path) -> None:
    with Store.open(db_path) as store:
        oom = _save(store, "oom-run")
        store.add_note(oom, "CUDA OOM at step 40, batch 512")
        boom = _save(store, "boom-run")  # newer: it would win a tie
        store.add_note(boom, "loss went boom at step 40, batch 512")
        lr = _save(store, "lr-run", config={"optimizer.lr": 0.1})
        _save(store, "clr-run", config={"clr": 0.1})
    hits = json.loads(run_cli("search", "oom", "--json", db=db_path).stdout)
    assert [h["id"] for h in hits][:2] == [oom, boom]
    assert hits[0]["search"]["score"] > hits[1]["search"]["score"]
    hits = json.loads(run_cli("search", "lr", "--json", db=db_path).stdout)
    assert hits[0]["id"] == lr


# -- shell completion ----------------------------------------------------------------


def _complete(words: str, db: Path | None = None) -> list[str]:
    env = {
        **os.environ,
        "_LABBOOK_COMPLETE": "bash_complete",
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1)),
    }
    if db is not None:
        env["LABBOOK_DB"] = str(db)
    labbook = shutil.which("labbook", path=str(Path(sys.executable).parent))
    assert labbook is not None
    r = subprocess.run([labbook], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return [line.split(",", 1)[1] for line in r.stdout.splitlines() if line]


def test_completion_of_commands_options_and_runs(db_path: Path) -> None:
    with Store.open(db_path) as store:
        a = _save(store, "sweep/lr0.1")
        _save(store, "sweep/lr0.2")
        _save(store, "baseline")
    assert {"show", "search", "ls"} <= set(_complete("labbook s", db_path)) | {"ls"}
    assert "--patch" in _complete("labbook show --p", db_path)
    assert _complete("labbook show sweep/", db_path) == ["sweep/lr0.2", "sweep/lr0.1"]
    assert _complete("labbook note base", db_path) == ["baseline"]
    assert _complete(f"labbook tag {a[:6]}", db_path) == [a]
    assert _complete("labbook show @", db_path) == ["@last"]
    # --db on the line is the store completed from
    assert _complete(f"labbook --db {db_path} show ba") == ["baseline"]
    # no database: nothing, and no error
    assert _complete("labbook show ba", db_path.with_name("none.db")) == []


def test_completion_in_a_real_bash(db_path: Path) -> None:
    bash = shutil.which("bash")
    assert bash is not None
    with Store.open(db_path) as store:
        _save(store, "sweep/lr0.1")
    bindir = str(Path(sys.executable).parent)
    script = (
        'eval "$(_LABBOOK_COMPLETE=bash_source labbook)"\n'
        "COMP_WORDS=(labbook show swe); COMP_CWORD=2\n"
        "_labbook_completion labbook\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
        "COMPREPLY=(); COMP_WORDS=(labbook sh); COMP_CWORD=1\n"
        "_labbook_completion labbook\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}
    env["LABBOOK_DB"] = str(db_path)
    r = subprocess.run(
        [bash, "--norc", "--noprofile", "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["sweep/lr0.1", "show"]


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_completion_scripts_are_offered(shell: str) -> None:
    labbook = shutil.which("labbook", path=str(Path(sys.executable).parent))
    assert labbook is not None
    r = subprocess.run(
        [labbook],
        env={**os.environ, "_LABBOOK_COMPLETE": f"{shell}_source"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0 and "_labbook_completion" in r.stdout


# -- ls -n 0 streams -----------------------------------------------------------------


def test_ls_all_streams_in_windows_with_the_same_rows(db_path: Path) -> None:
    from labbook.cli.runs import STREAM_WINDOW

    n = 2 * STREAM_WINDOW + 7
    with Store.open(db_path) as store:
        for i in range(n):
            config = {"lr": 0.1}
            if i == 0:
                config["late_field"] = "only-the-oldest-run"  # read in the last window
            _save(store, f"run-{i:04d}", config=config)
    streamed = run_cli("ls", "-n", "0", db=db_path)
    whole = run_cli("ls", "-n", str(n), db=db_path)
    assert streamed.returncode == 0, streamed.stderr
    assert streamed.stdout == whole.stdout
    lines = streamed.stdout.splitlines()
    assert len(lines) == n + 1 and lines[1].split()[1] == f"run-{n - 1:04d}"
    assert len({ln.split()[0] for ln in lines[1:]}) == n  # no run twice
    # the terminal layout (forced by --color always), also in windows
    streamed = run_cli("ls", "-n", "0", "--color", "always", db=db_path)
    whole = run_cli("ls", "-n", str(n), "--color", "always", db=db_path)
    assert streamed.stdout == whole.stdout and "\x1b[" in streamed.stdout
    # a column that only a run in a later window has
    r = run_cli("ls", "-n", "0", "-c", "name,late_field", db=db_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1].split() == ["run-0000", "only-the-oldest-run"]
    r = run_cli("ls", "-n", "0", "-c", "name,nokey", db=db_path)
    assert r.returncode == 2 and "no run has 'nokey'" in r.stderr
    # piped into a reader that stops early: no error
    proc = subprocess.run(
        f"{sys.executable} -m labbook --db {db_path} ls -n 0 | head -3",
        shell=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert len(proc.stdout.splitlines()) == 3 and "Traceback" not in proc.stderr
