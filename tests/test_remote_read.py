"""Reads across the lab (#13): ls/show/search/diff/compare/check/tui ``--remote`` over a
real PostgreSQL (tests/pg.py) that two nodes' stores pushed to with the real push.

Each node is its own SQLite store; the lab's notebook must answer as the union of
them: the same ids, the same records (apart from the fields only the server has),
the same search hits, the same warnings.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from labbook.model import Failure, RunFacts
from labbook.store import Store
from labbook.store.dialect import POSTGRES, SQLITE, glob_regex
from tests.conftest import run_cli
from tests.test_tui_data import T0, facts

pytest.importorskip("psycopg")


def _node(db: Path, root: str, host: str, n: int, *, notes: dict[int, str]) -> list[str]:
    with Store.open(db) as store:
        ids = []
        for i in range(n):
            f = facts(i, Path(root), host=host)
            f.config["node"] = host  # every config its own: groups stay per node
            ids.append(store.save_run(f)[0])
        for i, text in notes.items():
            store.add_note(ids[i], text, kind="lesson")
        return ids


def _push(db: Path, url: str) -> None:
    from labbook.store.remote.config import RemoteConfig
    from labbook.store.remote.push import push_round

    with Store.open(db) as store:
        push_round(store, RemoteConfig(url=url))


@pytest.fixture
def lab(tmp_path: Path, pg_url: str) -> dict[str, Any]:
    """Two nodes (gpu1, gpu3), each with its own store, both pushed to one server."""
    import psycopg

    from labbook.store.remote.schema import create_schema

    with psycopg.connect(pg_url) as conn:
        create_schema(conn)
    a, b = tmp_path / "gpu1.db", tmp_path / "gpu3.db"
    ids_a = _node(a, "/data/gpu1", "gpu1", 6, notes={1: "lr 0.1 diverged, use warmup"})
    ids_b = _node(
        b,
        "/data/gpu3",
        "gpu3",
        5,
        notes={2: "显存不足：batch 128 在 24G 卡上 OOM，改成 64", 0: "学习率太高导致发散"},
    )
    _push(a, pg_url)
    _push(b, pg_url)
    env = {"LABBOOK_REMOTE_URL": pg_url}
    return {"a": a, "b": b, "ids_a": ids_a, "ids_b": ids_b, "url": pg_url, "env": env}


def _json(*args: str, db: Path, env: dict[str, str], ok: bool = True) -> Any:
    out = run_cli(*args, db=db, env=env)
    assert out.returncode == 0 or not ok, out.stderr
    return json.loads(out.stdout)


def _strip_origin(rec: dict[str, Any]) -> dict[str, Any]:
    rec = dict(rec)
    rec.pop("origin", None)
    rec["notes"] = [{k: v for k, v in n.items() if k != "origin"} for n in rec["notes"]]
    return rec


def test_ls_remote_is_the_union_of_both_nodes(lab: dict[str, Any]) -> None:
    env = lab["env"]
    remote = _json("ls", "--json", "--remote", "-n", "0", db=lab["a"], env=env)
    assert {r["id"] for r in remote} == set(lab["ids_a"]) | set(lab["ids_b"])
    assert {r["host"] for r in remote} == {"gpu1", "gpu3"}
    local = _json("ls", "--json", "-n", "0", db=lab["a"], env=env)
    assert {r["id"] for r in local} == set(lab["ids_a"])
    # LABBOOK_REMOTE=1 is --remote; --local wins over it
    via_env = _json("ls", "--json", "-n", "0", db=lab["a"], env={**env, "LABBOOK_REMOTE": "1"})
    assert {r["id"] for r in via_env} == {r["id"] for r in remote}
    forced = _json(
        "ls", "--json", "--local", "-n", "0", db=lab["a"], env={**env, "LABBOOK_REMOTE": "1"}
    )
    assert {r["id"] for r in forced} == set(lab["ids_a"])
    # host and user: filters and columns
    gpu3 = _json("ls", "--json", "--remote", "-w", "host=gpu3", "-n", "0", db=lab["a"], env=env)
    assert {r["id"] for r in gpu3} == set(lab["ids_b"])
    table = run_cli("ls", "--remote", "--columns", "id,host,user", "-n", "3", db=lab["a"], env=env)
    assert table.returncode == 0, table.stderr
    assert table.stdout.split("\n")[0].split() == ["id", "host", "user"]


def test_ls_remote_filters_and_sorts_as_local_over_the_union(lab: dict[str, Any]) -> None:
    """The same query code on both dialects: every filter and sort gives, over the
    server, what it gives over each node's store, merged."""
    env = lab["env"]
    queries = [
        ["-w", "optimizer.lr>=0.01", "-w", "val_loss<5"],  # param + metric
        ["-s", "failed"],
        ["-w", "name~exp/run0*"],  # a glob
        ["-w", "optimizer.name~ad?m"],  # a glob on a config value
        ["-w", "seed=null"],
        ["--since", "2020-01-01"],
    ]
    for q in queries:
        remote = _json("ls", "--json", "--remote", "-n", "0", *q, db=lab["a"], env=env)
        both = [_json("ls", "--json", "-n", "0", *q, db=db, env=env) for db in (lab["a"], lab["b"])]
        assert sorted(r["id"] for r in remote) == sorted(r["id"] for x in both for r in x), q
    for key in ("val_loss", "optimizer.lr", "duration", "seed", "name"):
        remote = _json("ls", "--json", "--remote", "--sort", key, "-n", "0", db=lab["a"], env=env)
        values = [_sort_value(r, key) for r in remote]
        present = [v for v in values if v is not None]
        assert present == sorted(present), key
        assert values[len(present) :] == [None] * (len(values) - len(present)), key


def _sort_value(rec: dict[str, Any], key: str) -> Any:
    if key == "val_loss":
        m = rec["metrics"].get("val/loss") or rec["metrics"].get("val_loss")
        return m["last"] if m else None
    if key == "duration":
        return rec["ended_at"]  # started an hour apart, each a minute longer
    if key == "seed":
        return rec["seed"]["value"]
    if key == "name":
        return rec["name"]
    return rec["config"].get(key)


def test_show_remote_equals_show_on_its_own_node(lab: dict[str, Any]) -> None:
    env = lab["env"]
    for db, ids in ((lab["a"], lab["ids_a"]), (lab["b"], lab["ids_b"])):
        for rid in ids[:3]:
            local = _json("show", "--json", rid, db=db, env=env)
            remote = _json("show", "--json", "--remote", rid, db=lab["a"], env=env)
            assert remote["origin"]
            assert _strip_origin(remote) == _strip_origin(local)
    # a prefix and a name resolve on the server too
    rid = lab["ids_b"][2]
    assert _json("show", "--json", "--remote", rid[:7], db=lab["a"], env=env)["id"] == rid


def test_search_remote_english_and_chinese(lab: dict[str, Any]) -> None:
    env = lab["env"]
    for query in ("out of memory", "warmup", "显存", "发散", "学习率太高", "OOM 显存"):
        remote = _json("search", "--json", "--remote", query, db=lab["a"], env=env)
        local = [
            h
            for db in (lab["a"], lab["b"])
            for h in _json("search", "--json", query, db=db, env=env)
        ]
        assert local, query
        assert sorted(h["id"] for h in remote) == sorted(h["id"] for h in local), query
    (hit,) = _json("search", "--json", "--remote", "显存", db=lab["a"], env=env)
    assert hit["id"] == lab["ids_b"][2]
    assert "«显存»" in hit["search"]["snippet"]


def test_diff_and_compare_remote(lab: dict[str, Any]) -> None:
    env = lab["env"]
    a1, b2 = lab["ids_a"][1], lab["ids_b"][2]
    for x, y, db in ((lab["ids_a"][0], lab["ids_a"][3], lab["a"]), (a1, b2, None)):
        remote = _json("diff", "--json", "--remote", x, y, db=lab["a"], env=env)
        assert remote["a"] == x and remote["b"] == y
        if db is not None:  # both on one node: the same diff as that node's
            assert remote == _json("diff", "--json", x, y, db=db, env=env)
    across = _json("diff", "--json", "--remote", a1, b2, db=lab["a"], env=env)
    assert "gpu3" in json.dumps(across)  # the config key node: gpu1 vs gpu3
    out = run_cli("compare", "--remote", "--json", a1, b2, db=lab["a"], env=env)
    assert out.returncode == 0, out.stderr
    runs = json.loads(out.stdout)["runs"]
    assert {r if isinstance(r, str) else r["id"] for r in runs} == {a1, b2}


def test_check_remote_warns_of_another_nodes_failure(lab: dict[str, Any], tmp_path: Path) -> None:
    """A failure recorded on gpu3 warns on gpu1, where the local store knows nothing of it."""
    env = lab["env"]
    work = tmp_path / "work"
    work.mkdir()
    with Store.open(lab["b"]) as store:
        f = RunFacts(path=str(work / "oom"), framework="generic", source_key=str(work / "oom"))
        f.status, f.cwd, f.host = "failed", str(work), "gpu3"
        f.failure = Failure("cuda_oom", "CUDA out of memory")
        f.command = ["python", "train.py", "--lr", "0.3"]
        f.config = {"lr": 0.3}
        f.started_at = T0
        rid = store.save_run(f)[0]
    _push(lab["b"], lab["url"])
    args = ("check", "--json", "--", "python", "train.py", "--lr", "0.3")
    local = run_cli(*args, db=lab["a"], env=env, cwd=work)
    assert json.loads(local.stdout) == []
    remote = run_cli(args[0], "--remote", *args[1:], db=lab["a"], env=env, cwd=work)
    assert remote.returncode == 0, remote.stderr
    assert [w["id"] for w in json.loads(remote.stdout)] == [rid]
    # the shell hook reads the lab's notebook too (a budget this busy test machine meets)
    hook = run_cli(
        "check", "--hook", "--line", "python train.py --lr 0.3", cwd=work,
        env={**env, "LABBOOK_REMOTE": "1", "LABBOOK_DB": str(lab["a"]),
             "LABBOOK_REMOTE_BUDGET_MS": "10000"},
    )  # fmt: skip
    assert rid in hook.stdout and hook.stderr == ""


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again: nothing listens there


def test_check_falls_back_to_local_when_the_server_is_unreachable(
    tmp_path: Path,
    pg_server: Any,
) -> None:
    db = tmp_path / "node.db"
    work = tmp_path / "work"
    work.mkdir()
    with Store.open(db) as store:
        f = RunFacts(path=str(work / "r"), framework="generic", source_key=str(work / "r"))
        f.status, f.cwd = "failed", str(work)
        f.failure = Failure("nan", "loss is nan")
        f.command = ["python", "train.py", "--lr", "0.5"]
        f.config = {"lr": 0.5}
        rid = store.save_run(f)[0]
    env = {"LABBOOK_REMOTE_URL": f"postgresql://postgres@127.0.0.1:{_dead_port()}/lab"}
    t0 = time.monotonic()
    out = run_cli("check", "--remote", "--json", "--", "python", "train.py", "--lr", "0.5",
                  db=db, env=env, cwd=work)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert [w["id"] for w in json.loads(out.stdout)] == [rid]
    (line,) = out.stderr.splitlines()
    assert line.startswith(
        "labbook: checking this node's runs only: cannot reach the lab's notebook"
    )
    hook = run_cli("check", "--hook", "--line", "python train.py --lr 0.5", db=db,
                   env={**env, "LABBOOK_REMOTE": "1"}, cwd=work)  # fmt: skip
    assert rid in hook.stdout
    (line,) = hook.stderr.splitlines()
    assert line.startswith("labbook: checking this node's runs only:")
    assert time.monotonic() - t0 < 30  # a guard against a hang, not a speed goal


def test_hook_gives_up_on_a_server_that_never_answers(tmp_path: Path) -> None:
    """A blackholed server (accepts, never speaks): the hook's budget, then local."""
    db = tmp_path / "node.db"
    Store.open(db).close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        env = {"LABBOOK_REMOTE_URL": f"postgresql://u@127.0.0.1:{s.getsockname()[1]}/lab"}
        hooks = [  # through the CLI, and the hooks' fast path (python -m labbook check --hook)
            run_cli("check", "--hook", "--line", "python train.py", db=db,
                    env={**env, "LABBOOK_REMOTE": "1"}),
            run_cli("check", "--hook", "--line", "python train.py",
                    env={**env, "LABBOOK_REMOTE": "1", "LABBOOK_DB": str(db)}),
        ]  # fmt: skip
    for hook in hooks:
        assert hook.returncode == 0
        (line,) = hook.stderr.splitlines()
        assert "did not answer within 150 ms" in line


def test_note_and_tag_remote_under_this_nodes_origin(lab: dict[str, Any]) -> None:
    env = lab["env"]
    theirs, mine = lab["ids_b"][1], lab["ids_a"][0]
    out = run_cli("note", "--remote", theirs, "same OOM here with bs 256", db=lab["a"], env=env)
    assert out.returncode == 0, out.stderr
    rec = _json("show", "--json", "--remote", theirs, db=lab["a"], env=env)
    texts = [n["text"] for n in rec["notes"]]
    assert "same OOM here with bs 256" in texts
    assert _json("search", "--json", "--remote", "bs 256", db=lab["a"], env=env)[0]["id"] == theirs
    assert run_cli("tag", "--remote", theirs, "oom", db=lab["a"], env=env).returncode == 0
    assert "oom" in _json("show", "--json", "--remote", theirs, db=lab["a"], env=env)["tags"]
    # node gpu3's own store is untouched (the note is gpu1's, on the server)
    assert "same OOM" not in json.dumps(_json("show", "--json", theirs, db=lab["b"], env=env))
    # a re-push of gpu3 keeps gpu1's note and tag
    with Store.open(lab["b"]) as store:
        store.add_tags(theirs, ["seen"])
    _push(lab["b"], lab["url"])
    rec = _json("show", "--json", "--remote", theirs, db=lab["a"], env=env)
    assert "same OOM here with bs 256" in [n["text"] for n in rec["notes"]]
    assert {"oom", "seen"} <= set(rec["tags"])
    # on a run of this node: into its own store, on the server with the next push
    assert run_cli("note", "--remote", mine, "mine", db=lab["a"], env=env).returncode == 0
    assert "mine" in [
        n["text"] for n in _json("show", "--json", mine, db=lab["a"], env=env)["notes"]
    ]
    _push(lab["a"], lab["url"])
    remote = _json("show", "--json", "--remote", mine, db=lab["a"], env=env)
    assert [n["text"] for n in remote["notes"]].count("mine") == 1


def test_superseded_rows_are_hidden_and_their_notes_merged(tmp_path: Path, pg_url: str) -> None:
    """One NFS run dir recorded by two nodes: listed once, its notes from both."""
    import psycopg

    from labbook.store.remote.schema import create_schema

    with psycopg.connect(pg_url) as conn:
        create_schema(conn)
    shared = "/nfs/home/alice/runs/r1"
    dbs = [tmp_path / "n1.db", tmp_path / "n2.db"]
    ids = []
    for k, db in enumerate(dbs):
        with Store.open(db) as store:
            f = RunFacts(path=shared, framework="generic", source_key=shared, name="r1")
            f.started_at, f.host = T0, f"gpu{k}"  # one NFS dir: one start
            rid = store.save_run(f, run_id=("a" * 12, "b" * 12)[k])[0]
            store.add_note(rid, f"note from gpu{k}")
            ids.append(rid)
        _push(db, pg_url)
    env = {"LABBOOK_REMOTE_URL": pg_url}
    listed = _json("ls", "--json", "--remote", db=dbs[0], env=env)
    assert [r["id"] for r in listed] == [ids[1]]  # the newer row stands
    rec = _json("show", "--json", "--remote", ids[1], db=dbs[0], env=env)
    assert sorted(n["text"] for n in rec["notes"]) == ["note from gpu0", "note from gpu1"]


def test_remote_store_is_read_only(lab: dict[str, Any]) -> None:
    from labbook.store.remote.read import RemoteReadOnly, RemoteStore

    with RemoteStore.connect(lab["url"]) as store:
        with pytest.raises(RemoteReadOnly, match="read-only"):
            store.save_run(RunFacts(path="/x", framework="generic", source_key="/x"))
        with pytest.raises(RemoteReadOnly):
            store.update_run(lab["ids_a"][0], status="failed")
        assert store.count() == 11


def test_dialect_fragments() -> None:
    assert (
        POSTGRES.sql("a = ? AND b LIKE '%?%' AND c = ?") == "a = %s AND b LIKE '%%?%%' AND c = %s"
    )
    assert SQLITE.sql("a = ?") == "a = ?"
    assert glob_regex("res*net?[0-9]") == "^res.*net.[0-9]$"
    assert glob_regex("a.b[^x]") == r"^a\.b[^x]$"
    assert glob_regex("[") == r"^\[$"
    assert POSTGRES.live("r.") == "r.deleted_at IS NULL AND r.superseded_by IS NULL"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_tui_on_the_remote_store(lab: dict[str, Any]) -> None:
    """The real app, driven by Textual's Pilot, over the lab's notebook: both nodes'
    runs, the server named where the path would be, a sort by a metric."""
    pytest.importorskip("textual")
    from labbook_tui.app import make_app
    from labbook_tui.run_table import RunTable
    from textual.widgets import OptionList

    from labbook.store.remote.read import RemoteStore

    app = make_app(None, poll_interval=None, opener=lambda: RemoteStore.connect(lab["url"]))
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.pause()
        table = app.screen.query_one(RunTable)
        assert {r["id"] for r in table.records} == set(lab["ids_a"]) | set(lab["ids_b"])
        await pilot.press("o")
        options = app.screen.query_one(OptionList)
        keys = [options.get_option_at_index(i).id for i in range(options.option_count)]
        options.highlighted = keys.index("metrics.val_loss")
        await pilot.press("enter")
        await pilot.pause()
        table = app.screen.query_one(RunTable)
        losses = [(r["metrics"].get("val/loss") or {}).get("last") for r in table.records]
        present = [v for v in losses if v is not None]
        assert len(set(present)) > 1
        assert present in (sorted(present), sorted(present, reverse=True))


def _reference_hits(conn: Any, terms: list[str]) -> list[tuple[str, float]]:
    """What search over the lab's notebook must give, read the long way: every
    document of every listed run, each term matched by ILIKE, scored as
    store.search scores a server match (field weight, doubled for a whole word);
    best first, newest first among equals."""
    from labbook.store.search import FIELD_WEIGHT, WORD_BOOST, _word_pattern

    runs = [
        r[0]
        for r in conn.execute(
            "SELECT id FROM runs WHERE deleted_at IS NULL AND superseded_by IS NULL"
            " AND archived_at IS NULL ORDER BY coalesce(started_at, created_at) DESC,"
            " created_at DESC, id DESC"
        )
    ]
    docs: dict[str, list[tuple[str, str]]] = {}
    for rid, field, text in conn.execute("SELECT run_id, field, text FROM search_docs"):
        docs.setdefault(rid, []).append((field, text))
    out = []
    for rid in runs:
        total = 0.0
        for term in terms:
            pattern = _word_pattern(term)
            scores = [
                FIELD_WEIGHT.get(field, 1.0)
                * (WORD_BOOST if pattern is not None and pattern.search(text) else 1.0)
                for field, text in docs.get(rid, [])
                if term.lower() in text.lower()
            ]
            if not scores:
                break
            total += max(scores)
        else:
            out.append((rid, round(total, 6)))
    out.sort(key=lambda h: -h[1])  # stable: newest first among equals
    return out


def test_search_planner_on_the_server_equals_reading_every_document(
    lab: dict[str, Any],
) -> None:
    """The server's planner (indexed terms first, later terms among the candidates
    only or settled from the documents in hand, pages read a score at a time) gives
    what reading every document gives, short terms and small pages included."""
    from labbook.store.remote.read import RemoteStore
    from labbook.store.search import search, search_counted, split_query

    with RemoteStore.connect(lab["url"]) as store:
        for query in ("lr 0.1 diverged", "out of memory", "run 0", "显存 OOM", "exp lr", "x"):
            want = _reference_hits(store.conn, split_query(query))
            assert want or query == "x", query  # the fixture's failures and lessons
            got = [(h.run_id, h.score) for h in search(store, query, limit=0)]
            assert got == want, query
            for limit in (1, 2, 3):
                page = [(h.run_id, h.score) for h in search(store, query, limit=limit)]
                assert page == want[:limit], (query, limit)
                hits, total = search_counted(store, query, limit=limit)
                assert ([h.run_id for h in hits], total) == (
                    [r for r, _ in want[:limit]],
                    len(want),
                )


def test_metric_sort_window_on_the_server_equals_the_whole_sort(lab: dict[str, Any]) -> None:
    """A window sorted by a metric, read along the (tag, last) index, is the same
    slice of the whole sort (runs without the metric last, ties newest first)."""
    from labbook.store.query import RunFilter, select_runs_window
    from labbook.store.remote.read import RemoteStore

    with RemoteStore.connect(lab["url"]) as store:
        flt = RunFilter(limit=None)
        for key, desc in (("metrics.val/loss", False), ("metrics.val/loss", True)):
            whole = [
                r["id"] for r in select_runs_window(store, flt, sort=key, descending=desc, limit=-1)
            ]
            assert len(whole) == 11
            for offset in range(0, 12, 2):
                for limit in (1, 3, 5):
                    window = select_runs_window(
                        store, flt, sort=key, descending=desc, offset=offset, limit=limit
                    )
                    assert [r["id"] for r in window] == whole[offset : offset + limit]
