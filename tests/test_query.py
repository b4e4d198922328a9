from __future__ import annotations

import pytest

from labbook.errors import AmbiguousRun, QueryError, RunNotFound
from labbook.model import Point, RunFacts
from labbook.store.query import RunFilter, parse_where, resolve, select_runs


def add(store, name, started, **kw):
    f = RunFacts(
        path=f"/runs/{name}",
        framework=kw.pop("framework", "generic"),
        source_key=f"/runs/{name}",
        name=name,
        started_at=started,
        **kw,
    )
    return store.save_run(f)[0]


@pytest.fixture
def runs(store):
    ids = {
        "a": add(
            store,
            "a",
            100.0,
            config={"optimizer.lr": 0.1, "model": "resnet18"},
            status="finished",
            metrics={"val/loss": [Point(1, 0.5)]},
        ),
        "b": add(
            store,
            "b",
            200.0,
            config={"optimizer.lr": 0.001, "model": "resnet50"},
            status="failed",
            metrics={"val/loss": [Point(1, 0.2)]},
        ),
        "c": add(
            store,
            "c",
            300.0,
            config={"optimizer.lr": 1.0, "model": "vit"},
            status="diverged",
            framework="lightning",
        ),
    }
    store.add_tags(ids["a"], ["baseline"])
    return ids


def names(store, **kw):
    return [r["name"] for r in select_runs(store, RunFilter(**kw))]


def test_newest_first(store, runs):
    assert names(store) == ["c", "b", "a"]


def test_where_numeric_and_text(store, runs):
    assert names(store, where=parse_where(["optimizer.lr>=0.01"])) == ["c", "a"]
    assert names(store, where=parse_where(["model=resnet50"])) == ["b"]
    assert names(store, where=parse_where(["model~resnet*"])) == ["b", "a"]
    assert names(store, where=parse_where(["optimizer.lr>0.01 and model!=vit"])) == ["a"]


def test_where_metric_and_fields(store, runs):
    assert names(store, where=parse_where(["val/loss<0.3"])) == ["b"]
    assert names(store, where=parse_where(["metrics.val/loss>0.3"])) == ["a"]
    assert names(store, where=parse_where(["status=failed"])) == ["b"]


def test_status_framework_tag_limit(store, runs):
    assert names(store, status=["finished", "failed"]) == ["b", "a"]
    assert names(store, framework=["lightning"]) == ["c"]
    assert names(store, tags=["baseline"]) == ["a"]
    assert names(store, limit=1) == ["c"]


def test_bad_where_is_a_usage_error():
    with pytest.raises(QueryError):
        parse_where(["lr >>> 3"])


def test_resolve_forms(store, runs, tmp_path):
    assert resolve(store, "@last") == runs["c"]
    assert resolve(store, "@-2") == runs["b"]
    assert resolve(store, runs["a"]) == runs["a"]
    assert resolve(store, runs["a"][:6]) == runs["a"]
    assert resolve(store, "b") == runs["b"]
    assert resolve(store, "/runs/a") == runs["a"]
    with pytest.raises(RunNotFound):
        resolve(store, "@-9")
    with pytest.raises(RunNotFound):
        resolve(store, "nothing-like-this")


def test_a_name_wins_over_an_id_prefix(store, runs):
    """A run named like the start of another run's id is reached by its name."""
    prefix = runs["c"][:3]
    named = add(store, prefix, 400.0, config={}, status="finished", metrics={})
    assert resolve(store, prefix) == named
    assert resolve(store, runs["c"]) == runs["c"]  # the exact id still wins
    assert resolve(store, runs["c"][:6]) == runs["c"]


def test_resolve_path_inside_run_dir(store, tmp_path):
    run_dir = tmp_path / "exp"
    (run_dir / "sub").mkdir(parents=True)
    rid = store.save_run(RunFacts(path=str(run_dir), framework="generic", source_key=str(run_dir)))[
        0
    ]
    assert resolve(store, str(run_dir / "sub")) == rid


def test_ambiguous_prefix_lists_candidates(store):
    ids = [
        store.save_run(RunFacts(path=f"/r/{i}", framework="generic", source_key=f"/r/{i}"))[0]
        for i in range(40)
    ]
    by_first = {}
    for rid in ids:
        by_first.setdefault(rid[0], []).append(rid)
    prefix, group = max(by_first.items(), key=lambda kv: len(kv[1]))
    assert len(group) > 1
    with pytest.raises(AmbiguousRun) as info:
        resolve(store, prefix)
    assert set(info.value.candidates[0].split()[:1]) <= set(group)


def test_count_runs_can_stop_counting(store):
    from labbook.model import RunFacts
    from labbook.store.query import RunFilter, count_runs

    for i in range(7):
        store.save_run(RunFacts(path=f"/r/{i}", source_key=f"/r/{i}", framework="generic"))
    assert count_runs(store, RunFilter()) == 7
    assert count_runs(store, RunFilter(), cap=3) == 4  # "more than 3"
    assert count_runs(store, RunFilter(), cap=10) == 7
