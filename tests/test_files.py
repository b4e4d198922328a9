"""labbook.readers.files: safe loaders for configs and metric files.

Every bad input must give a result (None / what could be read) and exactly one
one-line warning naming the file, never an exception.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import threading
from pathlib import Path

import pytest
import yaml

from labbook.readers import files
from labbook.readers.files import (
    FINAL_STEP,
    load_config,
    load_json,
    load_toml,
    load_yaml,
    read_csv_metrics,
    read_json_metrics,
    read_jsonl_metrics,
    read_text,
)

BINARY = bytes(range(256)) * 8 + b"\x00\x00\x00garbage\x00"

#: Lightning CSVLogger output (tests/fixtures/lightning, version_0), verbatim.
LIGHTNING_CSV = """\
epoch,step,train_loss,val_acc,val_loss
0,0,0.7263726592063904,,
0,1,0.6994538903236389,,
0,2,0.6759700179100037,,
0,3,0.7001386880874634,,
0,3,,0.53125,0.6753058433532715
1,4,0.682007908821106,,
1,5,0.6857712864875793,,
1,6,0.621557891368866,,
1,7,0.5482009649276733,,
1,7,,0.71875,0.6024385094642639
2,8,0.56355881690979,,
2,9,0.60411536693573,,
2,10,0.514521598815918,,
2,11,0.5920489430427551,,
2,11,,0.84375,0.5396172404289246
"""


@pytest.fixture
def warnings_(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.WARNING, logger="labbook")
    return caplog


def labbook_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "labbook"]


def assert_one_warning(caplog: pytest.LogCaptureFixture, path: Path, *words: str) -> str:
    msgs = labbook_warnings(caplog)
    assert len(msgs) == 1, msgs
    msg = msgs[0]
    assert str(path) in msg
    assert "\n" not in msg
    for w in words:
        assert w in msg, msg
    return msg


def unreadable_paths(tmp_path: Path) -> list[Path]:
    """Paths that cannot be read as files: a dangling symlink, a directory, and — when
    permissions are enforced (not as root) — a chmod 000 file."""
    out = []
    dangling = tmp_path / "dangling.json"
    dangling.symlink_to(tmp_path / "missing-target.json")
    out.append(dangling)
    directory = tmp_path / "adir.json"
    directory.mkdir()
    out.append(directory)
    locked = tmp_path / "locked.json"
    locked.write_text('{"a": 1}')
    locked.chmod(0)
    try:
        with open(locked, "rb"):
            pass  # root (or a permissive filesystem): chmod does not deny reads
    except PermissionError:
        out.append(locked)
    return out


# --------------------------------------------------------------------------- read_text


def test_read_text_good_and_bom(tmp_path: Path, warnings_) -> None:
    p = tmp_path / "a.txt"
    p.write_bytes("\ufeffhéllo\n".encode())
    assert read_text(p) == "héllo\n"
    u16 = tmp_path / "u16.txt"
    u16.write_bytes("lr: 0.1\n".encode("utf-16"))  # with BOM, as PowerShell writes
    assert read_text(u16) == "lr: 0.1\n"
    assert labbook_warnings(warnings_) == []


def test_read_text_non_utf8_is_replaced_not_fatal(tmp_path: Path, warnings_) -> None:
    p = tmp_path / "latin1.yaml"
    p.write_bytes("name: caf\xe9\n".encode("latin-1"))
    assert read_text(p) == "name: caf\ufffd\n"
    assert load_yaml(p) == {"name": "caf\ufffd"}


def test_read_text_binary(tmp_path: Path, warnings_) -> None:
    p = tmp_path / "config.yaml"
    p.write_bytes(BINARY)
    assert read_text(p) is None
    assert_one_warning(warnings_, p, "binary")


def test_read_text_too_big(tmp_path: Path, warnings_) -> None:
    p = tmp_path / "big.txt"
    p.write_text("x" * 100)
    assert read_text(p, max_bytes=50) is None
    assert_one_warning(warnings_, p, "too large")
    assert read_text(p, max_bytes=100) == "x" * 100


def test_read_text_unreadable(tmp_path: Path, warnings_) -> None:
    for p in unreadable_paths(tmp_path):
        warnings_.clear()
        assert read_text(p) is None
        assert_one_warning(warnings_, p, "cannot read")


def test_fifo_does_not_block(tmp_path: Path, warnings_) -> None:
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs here")
    p = tmp_path / "config.json"
    os.mkfifo(p)
    result: list[object] = []
    t = threading.Thread(target=lambda: result.append(load_json(p)), daemon=True)
    t.start()
    t.join(5)
    assert not t.is_alive(), "reading a FIFO blocked"
    assert result == [None]
    assert_one_warning(warnings_, p, "not a regular file")


# --------------------------------------------------------------------------- JSON


def test_load_json_good(tmp_path: Path, warnings_) -> None:
    p = tmp_path / "config.json"
    p.write_text('{"seed": 22, "optimizer": {"name": "sgd"}, "x": NaN}')
    doc = load_json(p)
    assert doc["seed"] == 22 and doc["optimizer"] == {"name": "sgd"}
    assert math.isnan(doc["x"])
    assert labbook_warnings(warnings_) == []


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b'{"seed": 22, "lr": }', ("malformed JSON", "line 1")),
        (b'{"seed": 22,\n "lr": 0.1', ("malformed JSON",)),
        (b"", ("empty",)),
        (b"  \n\n", ("empty",)),
        (BINARY, ("binary",)),
        (b"[" * 100000 + b"]" * 100000, ("malformed JSON",)),
    ],
)
def test_load_json_bad(tmp_path: Path, warnings_, content: bytes, words: tuple[str, ...]) -> None:
    p = tmp_path / "config.json"
    p.write_bytes(content)
    assert load_json(p) is None
    assert_one_warning(warnings_, p, *words)


def test_load_json_unreadable(tmp_path: Path, warnings_) -> None:
    for p in unreadable_paths(tmp_path):
        warnings_.clear()
        assert load_json(p) is None
        assert_one_warning(warnings_, p)


def test_structured_cap_refuses_big_json(tmp_path: Path, warnings_, monkeypatch) -> None:
    monkeypatch.setattr(files, "MAX_STRUCTURED_BYTES", 1000)
    p = tmp_path / "metrics.json"
    p.write_text('{"loss": [' + ", ".join(["0.5"] * 500) + "]}")
    assert load_json(p) is None
    assert read_json_metrics(p) == {}
    msgs = labbook_warnings(warnings_)
    assert msgs and all("too large" in m and str(p) in m for m in msgs)


# --------------------------------------------------------------------------- YAML


def test_load_yaml_good(tmp_path: Path, warnings_) -> None:
    p = tmp_path / "config.yaml"
    p.write_text("lr: 0.05\noptimizer:\n  name: sgd\n  momentum: 0.9\ncrash_at_epoch: null\n")
    assert load_yaml(p) == {
        "lr": 0.05,
        "optimizer": {"name": "sgd", "momentum": 0.9},
        "crash_at_epoch": None,
    }
    assert labbook_warnings(warnings_) == []


def test_load_yaml_python_tags_are_plain_data(tmp_path: Path, warnings_) -> None:
    """What PyYAML's own dumper writes for tuples/objects (as in Lightning hparams.yaml)."""
    text = yaml.dump(
        {"shape": (3, 32, 32), "args": argparse.Namespace(lr=0.1, layers=[64, 64]), "act": len},
        Dumper=yaml.Dumper,
    )
    assert "!!python/tuple" in text and "!!python/object:argparse.Namespace" in text
    assert "!!python/name:" in text
    p = tmp_path / "hparams.yaml"
    p.write_text(text)
    doc = load_yaml(p)
    assert doc["shape"] == [3, 32, 32]
    assert doc["args"] == {"lr": 0.1, "layers": [64, 64]}
    assert doc["act"] == "builtins.len"
    assert labbook_warnings(warnings_) == []


def test_load_yaml_never_constructs_objects(tmp_path: Path, warnings_) -> None:
    marker = tmp_path / "pwned"
    p = tmp_path / "hparams.yaml"
    p.write_text(
        f"run: !!python/object/apply:os.system ['touch {marker}']\n"
        "obj: !!python/object/new:collections.OrderedDict [[[a, 1]]]\n"
        "cfg: !omegaconf.DictConfig {lr: 0.1}\n"
    )
    doc = load_yaml(p)
    assert not marker.exists()
    assert doc == {"run": [f"touch {marker}"], "obj": [[["a", 1]]], "cfg": {"lr": 0.1}}


def test_load_yaml_dates_stay_text(tmp_path: Path) -> None:
    p = tmp_path / "meta.yaml"
    p.write_text("start: 2026-11-20\nwhen: 2026-11-20T10:00:00Z\n")
    assert load_yaml(p) == {"start": "2026-11-20", "when": "2026-11-20T10:00:00Z"}


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"a: [1, 2\nb: 3\n", ("malformed YAML", "line")),
        (b"a: 1\n b: 2\n  - c\n", ("malformed YAML",)),
        (b"key: *undefined_alias\n", ("malformed YAML",)),
        (b"{1: [unhashable]}: 2\n", ("malformed YAML",)),
        (b"", ("empty",)),
        (b"# only a comment\n", ("empty",)),
        (BINARY, ("binary",)),
    ],
)
def test_load_yaml_bad(tmp_path: Path, warnings_, content: bytes, words: tuple[str, ...]) -> None:
    p = tmp_path / "config.yaml"
    p.write_bytes(content)
    assert load_yaml(p) is None
    assert_one_warning(warnings_, p, *words)


def test_load_yaml_alias_bomb_and_recursion(tmp_path: Path, warnings_) -> None:
    levels = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(8):
        prev, cur = chr(97 + i), chr(98 + i)
        levels.append(f"{cur}: &{cur} [" + ", ".join([f"*{prev}"] * 9) + "]")
    bomb = tmp_path / "config.yaml"
    bomb.write_text("\n".join(levels) + "\n")  # 9**9 values once expanded
    assert load_yaml(bomb) is None
    assert_one_warning(warnings_, bomb, "aliases")
    warnings_.clear()
    recursive = tmp_path / "r.yaml"
    recursive.write_text("a: &a [1, *a]\n")
    assert load_yaml(recursive) is None
    assert_one_warning(warnings_, recursive, "recursive")
    warnings_.clear()
    ok = tmp_path / "ok.yaml"
    ok.write_text("base: &b {lr: 0.1}\nrun: *b\nmerged:\n  <<: *b\n  seed: 1\n")
    assert load_yaml(ok) == {
        "base": {"lr": 0.1},
        "run": {"lr": 0.1},
        "merged": {"lr": 0.1, "seed": 1},
    }
    assert labbook_warnings(warnings_) == []


def test_load_yaml_several_documents(tmp_path: Path, warnings_) -> None:
    p = tmp_path / "config.yaml"
    p.write_text("a: 1\n---\nb: 2\n")
    assert load_yaml(p) == {"a": 1}
    assert_one_warning(warnings_, p, "first")


# --------------------------------------------------------------------------- TOML


def test_load_toml_good_and_bad(tmp_path: Path, warnings_) -> None:
    p = tmp_path / "config.toml"
    p.write_text('seed = 3\nstart = 2026-11-20\n[optimizer]\nname = "adam"\nbetas = [0.9, 0.999]\n')
    assert load_toml(p) == {
        "seed": 3,
        "start": "2026-11-20",
        "optimizer": {"name": "adam", "betas": [0.9, 0.999]},
    }
    assert labbook_warnings(warnings_) == []
    bad = tmp_path / "bad.toml"
    bad.write_text("seed = \n[optimizer\n")
    assert load_toml(bad) is None
    assert_one_warning(warnings_, bad, "malformed TOML")


def test_load_toml_empty_and_binary(tmp_path: Path, warnings_) -> None:
    for content, word in ((b"", "empty"), (BINARY, "binary")):
        warnings_.clear()
        p = tmp_path / f"c-{word}.toml"
        p.write_bytes(content)
        assert load_toml(p) is None
        assert_one_warning(warnings_, p, word)


# --------------------------------------------------------------------------- load_config


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("config.yaml", "lr: 0.1\nmodel: {hidden: 8}\n"),
        ("config.YML", "lr: 0.1\nmodel: {hidden: 8}\n"),
        ("config.json", '{"lr": 0.1, "model": {"hidden": 8}}'),
        ("config.toml", "lr = 0.1\n[model]\nhidden = 8\n"),
    ],
)
def test_load_config_by_extension(tmp_path: Path, name: str, text: str) -> None:
    p = tmp_path / name
    p.write_text(text)
    assert load_config(p) == {"lr": 0.1, "model": {"hidden": 8}}


def test_load_config_needs_a_mapping(tmp_path: Path, warnings_) -> None:
    for name, text in (("l.yaml", "- 1\n- 2\n"), ("s.json", "42"), ("t.yaml", "just text\n")):
        warnings_.clear()
        p = tmp_path / name
        p.write_text(text)
        assert load_config(p) is None
        assert_one_warning(warnings_, p, "not a mapping")


def test_load_config_unknown_extension_and_bad_files(tmp_path: Path, warnings_) -> None:
    p = tmp_path / "config.ini"
    p.write_text("[a]\nb=1\n")
    assert load_config(p) is None
    assert_one_warning(warnings_, p, "unknown config format")
    for name, content in (
        ("config.yaml", b"a: [1\n"),
        ("config.json", BINARY),
        ("config.toml", b""),
    ):
        warnings_.clear()
        q = tmp_path / name
        q.write_bytes(content)
        assert load_config(q) is None
        assert_one_warning(warnings_, q)


# --------------------------------------------------------------------------- JSONL


def test_jsonl_good(tmp_path: Path, warnings_) -> None:
    p = tmp_path / "metrics.jsonl"
    p.write_text(
        '{"step": 1, "train_loss": 2.77, "time": 1795373701.5}\n'
        '{"step": 2, "train_loss": 2.73, "val": {"loss": 2.9, "acc": 0.1}, "time": 1795373702.5}\n'
        "\n"
        '{"global_step": 3, "train_loss": NaN, "done": true, "phase": "train", "lr": "0.1"}\n'
        '{"epoch": 4, "train_loss": "Infinity", "time": 0.25}\n'
        '{"train_loss": 1.5}\n'
    )
    m, truncated = read_jsonl_metrics(p)
    assert not truncated
    loss = m["train_loss"]
    assert [pt.step for pt in loss] == [1, 2, 3, 4, 5]  # last one: 0-based line number
    assert loss[0].value == 2.77 and loss[0].wall_time == 1795373701.5
    assert math.isnan(loss[2].value) and math.isinf(loss[3].value)
    assert m["val/loss"][0].value == 2.9 and m["val/acc"][0].step == 2
    assert "done" not in m and "phase" not in m and "lr" not in m  # bool / strings
    assert "step" not in m and "global_step" not in m and "epoch" not in m
    assert m["time"][0].value == 0.25  # not a Unix time: a metric (seconds per step)
    assert labbook_warnings(warnings_) == []


def test_jsonl_truncated_last_line(tmp_path: Path, warnings_) -> None:
    p = tmp_path / "metrics.jsonl"
    p.write_text('{"step": 1, "loss": 0.5}\n{"step": 2, "loss": 0.4}\n{"step": 3, "lo')
    m, truncated = read_jsonl_metrics(p)
    assert truncated
    assert [pt.step for pt in m["loss"]] == [1, 2]
    assert labbook_warnings(warnings_) == []  # truncation is reported, not warned about


def test_jsonl_last_line_complete_without_newline(tmp_path: Path) -> None:
    p = tmp_path / "metrics.jsonl"
    p.write_text('{"step": 1, "loss": 0.5}\n{"step": 2, "loss": 0.4}')
    m, truncated = read_jsonl_metrics(p)
    assert not truncated and len(m["loss"]) == 2


def test_jsonl_malformed_lines_one_warning(tmp_path: Path, warnings_) -> None:
    p = tmp_path / "metrics.jsonl"
    p.write_bytes(
        b'{"step": 1, "loss": 0.5}\n'
        b'{"step": 2, "loss": \n'
        b"[1, 2, 3]\n"
        b"\xff\xfe not json\n"
        b'{"step": 5, "loss": 0.3}\n'
    )
    m, truncated = read_jsonl_metrics(p)
    assert not truncated
    assert [pt.step for pt in m["loss"]] == [1, 5]
    assert_one_warning(warnings_, p, "3 malformed", "line 2")


def test_jsonl_empty_binary_unreadable(tmp_path: Path, warnings_) -> None:
    empty = tmp_path / "metrics.jsonl"
    empty.write_bytes(b"")
    assert read_jsonl_metrics(empty) == ({}, False)
    assert labbook_warnings(warnings_) == []
    binary = tmp_path / "b.jsonl"
    binary.write_bytes(BINARY)
    assert read_jsonl_metrics(binary) == ({}, False)
    assert_one_warning(warnings_, binary, "binary")
    for p in unreadable_paths(tmp_path):
        warnings_.clear()
        assert read_jsonl_metrics(p) == ({}, False)
        assert_one_warning(warnings_, p)


def test_jsonl_is_streamed_past_the_structured_cap(tmp_path: Path, warnings_, monkeypatch) -> None:
    monkeypatch.setattr(files, "MAX_STRUCTURED_BYTES", 1000)
    monkeypatch.setattr(files, "MAX_LINE_BYTES", 200)
    p = tmp_path / "metrics.jsonl"
    with p.open("w") as f:
        for i in range(2000):
            f.write(f'{{"step": {i}, "loss": {1 / (i + 1)}}}\n')
            if i == 1000:
                f.write('{"step": -1, "pad": "' + "x" * 1000 + '"}\n')  # an overlong line
    assert p.stat().st_size > 20 * files.MAX_STRUCTURED_BYTES
    m, truncated = read_jsonl_metrics(p)
    assert not truncated
    assert len(m["loss"]) == 2000 and m["loss"][-1].step == 1999
    assert_one_warning(warnings_, p, "1 malformed")


# --------------------------------------------------------------------------- CSV


def test_csv_lightning(tmp_path: Path, warnings_) -> None:
    p = tmp_path / "metrics.csv"
    p.write_text(LIGHTNING_CSV)
    m, truncated = read_csv_metrics(p)
    assert not truncated
    assert sorted(m) == ["train_loss", "val_acc", "val_loss"]  # epoch/step are not metrics
    assert len(m["train_loss"]) == 12 and m["train_loss"][-1].step == 11
    assert [pt.step for pt in m["val_loss"]] == [3, 7, 11]  # empty cells are absent, not 0
    assert m["val_acc"][-1].value == 0.84375
    assert labbook_warnings(warnings_) == []


def test_csv_nonfinite_text_and_no_step(tmp_path: Path, warnings_) -> None:
    p = tmp_path / "metrics.csv"
    p.write_text(
        "loss,acc,note,flag,time\nnan,0.5,hello,True,1795373701\ninf,0.6,,False,1795373702\n"
        "-inf,,x,,1795373703\n"
    )
    m, truncated = read_csv_metrics(p)
    assert not truncated
    assert [pt.step for pt in m["loss"]] == [0, 1, 2]
    assert math.isnan(m["loss"][0].value) and m["loss"][1].value == math.inf
    assert m["loss"][2].value == -math.inf
    assert m["loss"][0].wall_time == 1795373701
    assert "note" not in m and "flag" not in m and "time" not in m
    assert len(m["acc"]) == 2


def test_csv_epoch_only_gives_steps(tmp_path: Path) -> None:
    p = tmp_path / "metrics.csv"
    p.write_text("epoch,loss\n0,1.0\n1,0.5\n")
    m, _ = read_csv_metrics(p)
    assert [(pt.step, pt.value) for pt in m["loss"]] == [(0, 1.0), (1, 0.5)]


def test_csv_truncated_and_malformed(tmp_path: Path, warnings_) -> None:
    p = tmp_path / "metrics.csv"
    p.write_text(
        "epoch,step,train_loss,val_loss\n0,1,2.6,\n0,2,2.5\n0,3,2.4,,extra\n0,4,2.3,\n0,5,2.2"
    )
    m, truncated = read_csv_metrics(p)
    assert truncated
    assert [pt.step for pt in m["train_loss"]] == [1, 4]
    assert_one_warning(warnings_, p, "2 malformed", "line 3")


def test_csv_complete_last_row_without_newline(tmp_path: Path) -> None:
    p = tmp_path / "metrics.csv"
    p.write_text("step,loss\n1,0.5\n2,0.4")
    m, truncated = read_csv_metrics(p)
    assert not truncated and [pt.step for pt in m["loss"]] == [1, 2]


def test_csv_empty_header_only_binary(tmp_path: Path, warnings_) -> None:
    empty = tmp_path / "metrics.csv"
    empty.write_text("")
    assert read_csv_metrics(empty) == ({}, False)
    header = tmp_path / "h.csv"
    header.write_text("epoch,step,loss\n")
    assert read_csv_metrics(header) == ({}, False)
    assert labbook_warnings(warnings_) == []
    binary = tmp_path / "bin.csv"
    binary.write_bytes(BINARY)
    assert read_csv_metrics(binary) == ({}, False)
    assert_one_warning(warnings_, binary, "binary")


def test_csv_non_utf8_cells(tmp_path: Path, warnings_) -> None:
    p = tmp_path / "metrics.csv"
    p.write_bytes(b"step,loss,caf\xe9\n1,0.5,0.1\n")
    m, _ = read_csv_metrics(p)
    assert m["loss"][0].value == 0.5 and m["caf\ufffd"][0].value == 0.1
    assert labbook_warnings(warnings_) == []


# --------------------------------------------------------------------------- metrics.json


def test_json_metrics_final_values(tmp_path: Path) -> None:
    p = tmp_path / "metrics.json"
    p.write_text(
        '{"train_loss": 1.6795, "val_acc": 0.4402, "ok": true, "name": "x", "test": {"acc": 0.9}}'
    )
    m = read_json_metrics(p)
    assert sorted(m) == ["test/acc", "train_loss", "val_acc"]
    assert m["train_loss"][0].step == FINAL_STEP == -1
    with_step = tmp_path / "m2.json"
    with_step.write_text('{"step": 40, "loss": 0.1}')
    assert read_json_metrics(with_step)["loss"][0].step == 40


def test_json_metrics_series_and_records(tmp_path: Path) -> None:
    p = tmp_path / "metrics.json"
    p.write_text(
        '{"loss": [0.5, 0.4, "nan", false], "acc": [{"step": 10, "value": 0.5}, '
        '{"step": 20, "value": 0.6, "wall_time": 1795373701}]}'
    )
    m = read_json_metrics(p)
    assert [pt.step for pt in m["loss"]] == [0, 1, 2] and math.isnan(m["loss"][2].value)
    assert [(pt.step, pt.value) for pt in m["acc"]] == [(10, 0.5), (20, 0.6)]
    assert m["acc"][1].wall_time == 1795373701
    records = tmp_path / "records.json"
    records.write_text('[{"step": 1, "loss": 0.5}, {"step": 2, "loss": 0.4}, "junk"]')
    assert [pt.step for pt in read_json_metrics(records)["loss"]] == [1, 2]


def test_json_metrics_bad(tmp_path: Path, warnings_) -> None:
    p = tmp_path / "metrics.json"
    p.write_text('{"loss": 0.5,')
    assert read_json_metrics(p) == {}
    assert_one_warning(warnings_, p, "malformed JSON")
    warnings_.clear()
    q = tmp_path / "scalar.json"
    q.write_text("0.5")
    assert read_json_metrics(q) == {}
    assert_one_warning(warnings_, q, "not an object")
