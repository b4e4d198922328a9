"""labbook search: FTS5 (trigram) over names, commands, failures, notes, tags, config."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from labbook.model import Failure, RunFacts
from labbook.store import Store
from labbook.store.query import RunFilter
from labbook.store.search import MARK_END, MARK_START, highlight, search, split_query
from tests.conftest import run_cli

REAL_CUDA_OOM = (
    "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 MiB. GPU 0 has a total "
    "capacity of 79.15 GiB of which 3.56 MiB is free. Including non-PyTorch memory, this process "
    "has 79.14 GiB memory in use."
)


def _run(store: Store, key: str, **kw: object) -> str:
    facts = RunFacts(path=f"/runs/{key}", framework="generic", source_key=f"/runs/{key}")
    for k, v in kw.items():
        setattr(facts, k, v)
    return store.save_run(facts)[0]


def _ids(hits: list) -> list[str]:
    return [h.run_id for h in hits]


def test_out_of_memory_finds_oom_runs_without_notes(store: Store) -> None:
    cuda = _run(store, "a", status="failed", failure=Failure("cuda_oom", REAL_CUDA_OOM))
    killed = _run(
        store,
        "b",
        status="killed",
        failure=Failure("oom_killed", "Killed (SIGKILL, most likely the out-of-memory killer)"),
    )
    _run(store, "c", status="finished", config={"optimizer.lr": 0.1})
    hits = search(store, "out of memory")
    assert set(_ids(hits)) == {cuda, killed}
    by_id = {h.run_id: h for h in hits}
    assert by_id[cuda].field == "failure"
    assert f"{MARK_START}out of memory{MARK_END}" in by_id[cuda].snippet


def test_chinese_notes_long_and_short_terms(store: Store) -> None:
    rid = _run(store, "zh", name="基线实验")
    other = _run(store, "en", name="baseline")
    store.add_note(rid, "学习率太高导致发散，下次用 0.01", kind="lesson")
    store.add_note(other, "diverged because the learning rate was too high", kind="lesson")
    for query in ("发散", "学习率", "导致发散", "基线", "学习率 发散"):
        hits = search(store, query)
        assert _ids(hits) == [rid], query
    hit = search(store, "发散")[0]
    assert hit.field == "note"
    assert f"{MARK_START}发散{MARK_END}" in hit.snippet
    assert search(store, "发散 baseline") == []  # every term must match


def test_fields_commands_tags_config_and_case(store: Store) -> None:
    rid = _run(
        store,
        "x",
        name="resnet-sweep",
        command=["python", "train.py", "--lr", "0.1"],
        config={"optimizer.name": "AdamW", "model.depth": 50},
        tags=["ablation"],
    )
    assert _ids(search(store, "train.py")) == [rid]
    assert search(store, "train.py")[0].field == "command"
    assert search(store, "adamw")[0].field == "config"
    assert "optimizer.name = «AdamW»" in search(store, "adamw")[0].snippet
    assert _ids(search(store, "model.depth")) == [rid]
    assert search(store, "ABLATION")[0].field == "tag"
    assert _ids(search(store, "lr")) == [rid]  # a two-letter term: LIKE fallback
    assert search(store, "") == []
    assert search(store, '"resnet sweep"') == []
    assert _ids(search(store, '"resnet-sweep"')) == [rid]


def test_ranking_prefers_notes_over_config(store: Store) -> None:
    in_config = _run(store, "cfg", config={"scheduler": "warmup cosine"})
    in_note = _run(store, "note")
    store.add_note(in_note, "the cosine schedule made it worse", kind="failure")
    hits = search(store, "cosine")
    assert _ids(hits) == [in_note, in_config]
    assert hits[0].score > hits[1].score > 0


def test_index_follows_every_change(store: Store) -> None:
    rid = _run(store, "r", name="first-name", config={"optimizer.lr": 0.5}, tags=["keep"])
    note = store.add_note(rid, "mysterious spike at step 300")
    assert _ids(search(store, "mysterious")) == [rid]
    assert store.delete_note(note)
    assert search(store, "mysterious") == []
    assert not store.delete_note(note)  # already a tombstone
    assert store.note(note)["deleted_at"] is not None  # type: ignore[index]

    store.remove_tags(rid, ["keep"])
    assert search(store, "keep") == []
    store.add_tags(rid, ["again"])
    assert _ids(search(store, "again")) == [rid]

    # re-saving the source replaces what was read: old config and name vanish
    _run(store, "r", name="second-name", config={"optimizer.lr": 0.25})
    assert search(store, "first-name") == []
    assert _ids(search(store, "second-name")) == [rid]
    assert _ids(search(store, "0.25")) == [rid]
    assert search(store, "0.5") == []
    store.update_run(rid, failure_kind="exception", failure_message="ValueError: shapes differ")
    assert _ids(search(store, "shapes differ")) == [rid]


def test_filters_and_limit(store: Store) -> None:
    failed = _run(store, "f", status="failed", name="alpha run")
    done = _run(store, "d", status="finished", name="alpha other")
    assert set(_ids(search(store, "alpha"))) == {failed, done}
    assert _ids(search(store, "alpha", RunFilter(status=["failed"]))) == [failed]
    assert len(search(store, "alpha", limit=1)) == 1
    store.update_run(done, deleted_at="2026-01-01T00:00:00Z")
    assert _ids(search(store, "alpha")) == [failed]


def test_merged_run_keeps_notes_searchable(store: Store) -> None:
    launch = _run(store, "launch")
    daemon = _run(store, "dir", config={"seed": 3})
    store.add_note(daemon, "written while the daemon had it")
    store.adopt_source(launch, "/runs/dir")
    assert store.id_for_source("/runs/dir") == launch
    assert _ids(search(store, "daemon had")) == [launch]
    assert [n["text"] for n in store.notes_of(launch)] == ["written while the daemon had it"]


def test_split_query_and_highlight() -> None:
    assert split_query('out of memory "loss: nan" OUT') == ["out", "of", "memory", "loss: nan"]
    text = "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"
    assert highlight(text, ["out", "of", "memory"]) == (
        "RuntimeError: CUDA «out of memory». Tried to allocate 2.00 GiB"
    )
    long = "x" * 200 + " needle " + "y" * 200
    cut = highlight(long, ["needle"])
    assert cut.startswith("…") and cut.endswith("…") and "«needle»" in cut


def test_schema_has_triggers_for_other_writers(store: Store, db_path: Path) -> None:
    """A plain sqlite3 connection (no labbook code) keeps the index current."""
    rid = _run(store, "plain")
    conn = sqlite3.connect(db_path)
    conn.execute(
        "INSERT INTO notes (run_id, at, author, kind, text) VALUES (?, 'now', 'x', 'note', ?)",
        (rid, "written by another tool"),
    )
    conn.commit()
    conn.close()
    assert _ids(search(store, "another tool")) == [rid]


def test_cli_search_json_and_filters(db_path: Path) -> None:
    with Store.open(db_path) as s:
        oom = _run(s, "a", status="failed", failure=Failure("cuda_oom", REAL_CUDA_OOM))
        _run(s, "b", status="finished", name="fine")
        s.add_note(oom, "批大小 64 会爆显存", kind="lesson")
    res = run_cli("search", "out of memory", "--json", db=db_path)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert [r["id"] for r in out] == [oom]
    assert out[0]["status"] == "failed"
    assert out[0]["search"]["field"] == "failure"
    res = run_cli("search", "显存", "--status", "failed", db=db_path)
    assert res.returncode == 0 and oom in res.stdout and "显存" in res.stdout
    res = run_cli("search", "显存", "--status", "finished", db=db_path)
    assert res.returncode == 0 and res.stdout == "" and "no runs match" in res.stderr


def test_migration_indexes_what_is_already_there(db_path: Path) -> None:
    import sqlite_utils

    from labbook.store.schema import migrations

    old = sqlite_utils.Database(db_path)
    migrations().apply(old, stop_before="0004_search")
    old.execute(
        "INSERT INTO runs (id, source_key, name, status, created_at, updated_at, command,"
        " failure_kind, failure_message) VALUES ('abcd1234', '/r', 'old run', 'failed', 'x', 'x',"
        " '[\"python\", \"train.py\"]', 'cuda_oom', 'CUDA out of memory')"
    )
    old.execute(
        "INSERT INTO notes (run_id, at, kind, text) VALUES ('abcd1234', 'x', 'lesson', '显存不够')"
    )
    old.execute("INSERT INTO params (run_id, key, value) VALUES ('abcd1234', 'model', '\"vit\"')")
    old.execute("INSERT INTO tags (run_id, tag) VALUES ('abcd1234', 'legacy')")
    old.execute("PRAGMA user_version = 4")
    old.conn.commit()
    old.close()
    with Store.open(db_path) as s:
        for query in ("out of memory", "显存", "vit", "legacy", "train.py", "old run"):
            assert _ids(search(s, query)) == ["abcd1234"], query


def test_cli_notes_and_tags(db_path: Path) -> None:
    with Store.open(db_path) as s:
        rid = _run(s, "n", name="notes-run")
    res = run_cli("note", "notes-run", "--failure", "dataloader deadlock at epoch 2", db=db_path)
    assert res.returncode == 0, res.stderr
    note_id = int(res.stdout.split()[1])
    res = run_cli("note", rid, "--lesson", db=db_path, input="use num_workers=0 来调试\n")
    assert res.returncode == 0, res.stderr
    res = run_cli("note", rid, "--author", "ana", "plain remark", db=db_path)
    assert res.returncode == 0, res.stderr
    rec = json.loads(run_cli("show", rid, "--json", db=db_path).stdout)
    assert [(n["kind"], n["text"]) for n in rec["notes"]] == [
        ("failure", "dataloader deadlock at epoch 2"),
        ("lesson", "use num_workers=0 来调试"),
        ("note", "plain remark"),
    ]
    assert rec["notes"][2]["author"] == "ana" and rec["notes"][0]["at"].endswith("Z")
    assert _ids_cli(db_path, "来调试") == [rid]
    res = run_cli("note", "--delete", str(note_id), db=db_path)
    assert res.returncode == 0, res.stderr
    assert _ids_cli(db_path, "deadlock") == []
    with Store.open(db_path) as s:
        assert s.note(note_id)["text"] == "dataloader deadlock at epoch 2"  # type: ignore[index]
    res = run_cli("note", "--delete", str(note_id), db=db_path)
    assert res.returncode != 0 and "no note" in res.stderr
    res = run_cli("tag", rid, "keep", "best", db=db_path)
    assert res.returncode == 0 and res.stdout.strip() == f"{rid}: best keep"
    res = run_cli("tag", rid, "--remove", "keep", db=db_path)
    assert res.stdout.strip() == f"{rid}: best"
    assert _ids_cli(db_path, "best") == [rid]
    res = run_cli("note", "no-such-run", "text", db=db_path)
    assert res.returncode != 0 and "no run matches" in res.stderr


def _ids_cli(db: Path, query: str) -> list[str]:
    res = run_cli("search", query, "--json", db=db)
    assert res.returncode == 0, res.stderr
    return [r["id"] for r in json.loads(res.stdout)]
