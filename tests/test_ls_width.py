"""`labbook ls` on a terminal fits its width; --columns, --sort/-r, --wide, colour; the
metric vocabulary (issue 12, items 1 and 3).

Runs come from real files (generic run dirs, tensorboardX event files, the
framework fixtures) through the real `labbook import`; the terminal is a real
pseudo-terminal of a given size, and at the end a real tmux pane of 80 columns.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import shutil
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
import tensorboardX

from labbook.analysis.metrics import canonical_metric, canonical_metrics, key_columns
from labbook.render.runs import cells, fmt_number, shorten_middle
from tests.conftest import FIXTURES, REPO, run_cli

#: Long names whose distinguishing part is their end.
LONG = [
    "sweep/resnet50-imagenet-cosine-warmup5-lr0.1-bs256-wd5e-4-seed1",
    "sweep/resnet50-imagenet-cosine-warmup5-lr0.1-bs256-wd5e-4-seed2",
    "sweep/vit-b16-imagenet21k-finetune-mixup0.8-cutmix1.0-ema-seed7",
]
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def clean_env(**more: str) -> dict[str, str]:
    """The environment without what would decide colour, width or paging for us."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("COLUMNS", "LINES", "NO_COLOR", "PAGER", "LESS", "LABBOOK_PAGER")
    }
    env.update({"TERM": "xterm-256color", "TZ": "UTC", "PYTHONPATH": str(REPO)})
    env.update(more)
    return env


def write_generic(root: Path, name: str, rows: list[dict[str, float]], seed: int = 1) -> None:
    run = root / name
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(f"seed: {seed}\nlr: {0.1 * seed}\nbatch_size: 256\n")
    with open(run / "metrics.jsonl", "w") as f:
        for i, row in enumerate(rows):
            f.write(json.dumps({"step": i + 1, **row}) + "\n")


def write_tb(root: Path, name: str, scalars: dict[str, list[float]]) -> None:
    writer = tensorboardX.SummaryWriter(str(root / name))
    for tag, values in scalars.items():
        for step, v in enumerate(values):
            writer.add_scalar(tag, v, step)
    writer.close()


@pytest.fixture
def many(tmp_path: Path, db_path: Path) -> Path:
    """Long names and many metrics, spelled as different frameworks spell them."""
    runs = tmp_path / "runs"
    for i, name in enumerate(LONG):
        write_generic(
            runs,
            name,
            [
                {
                    "train_loss": 0.82031 + 0.1 * i - 0.01 * s,
                    "val_loss": 0.91234 + 0.1 * i,
                    "val_acc": 0.5 + 0.01 * i,
                    "test_acc": 0.4,
                    "val_ppl": 12345.678,
                    "grad_norm": 1.5,
                }
                for s in range(3)
            ],
            seed=i + 1,
        )
    write_tb(
        runs,
        "tb/pytorch-tutorial-style-Loss-train-order-long-name-diverged",
        {"Loss/train": [1.0, 0.5, float("nan")], "Loss/validation": [1.1, 0.9]},
    )
    write_tb(
        runs, "tb/lightning-style", {"train_loss_step": [0.7, 0.6], "train_loss_epoch": [0.65]}
    )
    done = run_cli("import", str(runs), db=db_path)
    assert done.returncode == 0, done.stderr
    return db_path


def run_tty(args: list[str], db: Path, cols: int, rows: int = 40, **env: str) -> str:
    """`labbook ARGS` with stdout on a real pseudo-terminal of ``cols`` x ``rows``."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "labbook", "--db", str(db), *args],
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=subprocess.PIPE,
        env=clean_env(**env),
    )
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    proc.wait(timeout=60)
    os.close(master)
    assert proc.returncode == 0, proc.stderr.read().decode()
    return out.decode().replace("\r\n", "\n")


def lines_of(text: str) -> list[str]:
    return [ln for ln in ANSI.sub("", text).split("\n") if ln]


@pytest.mark.parametrize("cols", [60, 80, 120])
def test_every_run_on_one_line_that_fits(many: Path, cols: int) -> None:
    out = run_tty(["ls"], many, cols)
    lines = lines_of(out)
    assert len(lines) == 1 + 5, out  # a header and one line per run
    assert all(cells(ln) <= cols for ln in lines), out
    header = lines[0].split()
    assert header[:3] == ["id", "name", "status"]
    assert "train_loss" in header  # the first metric column is always there
    for name, line in zip(reversed(LONG), lines[-3:], strict=True):
        assert line.split()[2] == "unknown"
        assert line.rstrip().split()[1].endswith(name[-7:]) or name in line  # the end stays
    # numbers are whole: four significant digits, never split over lines
    for line in lines[1:]:
        for word in line.split():
            assert not re.fullmatch(r"\d\.\d{5,}", word)
    assert re.search(r"\b0\.8003\b", out)  # the first run's train_loss, 0.80031


def test_at_80_columns_the_name_is_cut_in_the_middle(many: Path) -> None:
    lines = lines_of(run_tty(["ls"], many, 80))
    names = [ln.split()[1] for ln in lines[1:]]
    for full in LONG:
        short = next(n for n in names if n.endswith(full[-5:]))
        assert "…" in short and full.startswith(short.split("…")[0])
        assert full.endswith(short.split("…")[1])


def test_wide_has_no_width_limit(many: Path) -> None:
    lines = lines_of(run_tty(["ls", "--wide"], many, 60))
    assert any(cells(ln) > 60 for ln in lines)
    for name in LONG:
        assert any(name in ln for ln in lines)  # names in full
    assert "started" in lines[0] and "framework" in lines[0]


def test_piped_output_is_plain_and_unlimited(many: Path) -> None:
    done = run_cli("ls", db=many, env=clean_env(COLUMNS="40"))
    assert done.returncode == 0
    assert "\x1b[" not in done.stdout
    header = done.stdout.splitlines()[0].split()
    assert header == [
        "id",
        "name",
        "status",
        "framework",
        "started",
        "time",
        "seed",
        "train_loss",
        "val_loss",
        "val_acc",
    ]
    for name in LONG:
        assert name in done.stdout


def test_columns_choose_and_order(many: Path) -> None:
    done = run_cli("ls", "--columns", "name,val_loss,lr,metrics.grad_norm", db=many)
    assert done.returncode == 0, done.stderr
    rows = [ln.split() for ln in done.stdout.splitlines()]
    assert rows[0] == ["name", "val_loss", "lr", "grad_norm"]
    by_name = {r[0]: r[1:] for r in rows[1:]}
    assert by_name[LONG[0]] == ["0.9123", "0.1", "1.5"]
    # the Loss/validation tag of a TensorBoard run is its val_loss
    tb = next(v for k, v in by_name.items() if "Loss-train-order" in k)
    assert tb == ["0.9", "—", "—"]


def test_columns_on_a_narrow_terminal_drop_from_the_end(many: Path) -> None:
    master_out = run_tty(["ls", "--columns", "id,name,started,framework,val_loss"], many, 40)
    lines = lines_of(master_out)
    assert all(cells(ln) <= 40 for ln in lines)
    assert lines[0].split()[:2] == ["id", "name"]


def test_unknown_column_is_a_usage_error(many: Path) -> None:
    done = run_cli("ls", "--columns", "id,val_los", db=many)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("labbook: error: --columns: no run has 'val_los'; did you mean")
    assert "'val_loss'" in lines[0]


def test_sort_by_metric_config_and_field(many: Path) -> None:
    def names(*args: str) -> list[str]:
        done = run_cli("ls", "--columns", "name", *args, db=many)
        assert done.returncode == 0, done.stderr
        return done.stdout.splitlines()[1:]

    # val_loss: the generic runs' val_loss and the TensorBoard run's Loss/validation
    by_loss = names("--sort", "val_loss")
    assert by_loss[:4] == [
        "tb/pytorch-tutorial-style-Loss-train-order-long-name-diverged",
        LONG[0],
        LONG[1],
        LONG[2],
    ]
    assert by_loss[-1] == "tb/lightning-style"  # no val_loss: last
    assert names("--sort", "val_loss", "-r")[:3] == [LONG[2], LONG[1], LONG[0]]
    assert names("--sort", "val_loss", "-r")[-1] == "tb/lightning-style"  # still last
    assert names("--sort", "lr", "-r")[:3] == [LONG[2], LONG[1], LONG[0]]  # a config key
    assert names("--sort", "name")[0] == LONG[0]
    assert names("--sort", "metrics.val_acc", "-n", "1") == [LONG[0]]
    newest = names()
    assert names("-r") == list(reversed(newest))
    # the canonical train_loss of the Lightning-style run is its per-epoch value
    done = run_cli("ls", "--columns", "name,train_loss", "--sort", "train_loss", db=many)
    assert re.search(r"^tb/lightning-style +0\.65$", done.stdout, re.MULTILINE)


def test_sort_by_an_unknown_key(many: Path) -> None:
    done = run_cli("ls", "--sort", "val_los", db=many)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "no run has 'val_los'; did you mean 'val_loss'" in lines[0]


def test_colour_on_a_terminal_and_never_or_no_color(many: Path) -> None:
    assert "\x1b[" in run_tty(["ls"], many, 100)
    assert "\x1b[" not in run_tty(["ls"], many, 100, NO_COLOR="1")
    assert "\x1b[" not in run_tty(["ls", "--color", "never"], many, 100)
    assert "\x1b[" in run_tty(["ls", "--color", "always"], many, 100, NO_COLOR="1")
    piped = run_cli("ls", "--color", "always", db=many, env=clean_env())
    assert piped.returncode == 0 and "\x1b[" in piped.stdout
    assert "\x1b[" not in run_cli("ls", db=many, env=clean_env()).stdout


@pytest.mark.parametrize("command", [["show", "@last"], ["search", "seed"], ["check", "--", "x"]])
def test_colour_options_everywhere(many: Path, command: list[str]) -> None:
    for mode in ("auto", "always", "never"):
        done = run_cli(*command[:1], "--color", mode, *command[1:], db=many, env=clean_env())
        assert done.returncode == 0, done.stderr
        if mode != "always":
            assert "\x1b[" not in done.stdout + done.stderr
    assert "\x1b[" in run_tty(["show", "@last"], many, 100)
    assert "\x1b[" not in run_tty(["show", "@last"], many, 100, NO_COLOR="1")
    assert "\x1b[" in run_cli("show", "--color", "always", "@last", db=many).stdout


# -- formatting helpers --------------------------------------------------------------


def test_shorten_middle_keeps_the_end() -> None:
    name = "sweep/resnet50-imagenet-cosine-lr0.1-seed3"
    short = shorten_middle(name, 20)
    assert cells(short) == 20 and short.endswith("lr0.1-seed3") and short.startswith("sweep")
    assert shorten_middle("short", 20) == "short"
    assert cells(shorten_middle("実験" * 10, 9)) <= 9


def test_fmt_number_fits() -> None:
    assert fmt_number(0.8203125) == "0.8203"
    assert fmt_number(12345.678) == "1.235e+04"
    assert fmt_number(123456) == "123456"
    assert fmt_number(12345678901) == "1.235e+10"
    assert fmt_number(float("nan")) == "nan"
    assert fmt_number(None) == "—"


# -- the metric vocabulary -----------------------------------------------------------

#: Real tag names from tests/fixtures (the expected.json files and printed/ logs) and
#: from the frameworks' own conventions, with the canonical column each belongs to.
VOCABULARY = {
    # generic, hydra, lightning, mlflow fixtures
    "train_loss": "train_loss",
    "val_loss": "val_loss",
    "val_acc": "val_acc",
    # torch_tb fixture
    "train/loss": "train_loss",
    "val/loss": "val_loss",
    "val/acc": "val_acc",
    # wandb fixture
    "loss": "train_loss",
    "acc": "train_acc",
    # hf_trainer fixture
    "eval_loss": "val_loss",
    "learning_rate": "lr",
    # printed logs: keras, imagenet, timm, fairseq, run_clm_no_trainer, slashes_and_words
    "accuracy": "train_acc",
    "val_accuracy": "val_acc",
    "Loss": "train_loss",
    "Acc@1": "train_acc",
    "Acc@5": "train_acc5",
    "LR": "lr",
    "ppl": "train_ppl",
    "perplexity": "train_ppl",
    "valid_loss": "val_loss",
    "valid_ppl": "val_ppl",
    "test_ppl": "test_ppl",
    "train/acc": "train_acc",
    "Accuracy": "train_acc",
    "test/Loss": "test_loss",
    "test/Acc@1": "test_acc",
    "test/Acc@5": "test_acc5",
    "total_loss": "train_loss",
    "Average_loss": "train_loss",
    # the PyTorch tutorials' order, Lightning's suffixes, other spellings
    "Loss/train": "train_loss",
    "Loss/validation": "val_loss",
    "validation/loss": "val_loss",
    "train_loss_epoch": "train_loss",
    "train_loss_step": "train_loss",
    "val_loss_epoch": "val_loss",
    "test-acc": "test_acc",
    "eval.accuracy": "val_acc",
    "valLoss": "val_loss",
    "top5_acc": "train_acc5",
    # different quantities: no canonical name
    "loss_cls": None,
    "loss_box_reg": None,
    "best_acc": None,
    "hparam/final_loss": None,
    "grad_norm": None,
    "epoch": None,
    "hp_metric": None,
    "ms/batch": None,
    "lr_groups_encoder/lr_groups": None,
}


@pytest.mark.parametrize(("tag", "name"), VOCABULARY.items())
def test_vocabulary(tag: str, name: str | None) -> None:
    assert canonical_metric(tag) == name


def test_vocabulary_covers_the_fixture_tags() -> None:
    """Every loss or accuracy tag that the fixtures' expected.json name is in the table."""
    tags: set[str] = set()

    def walk(x: object) -> None:
        if isinstance(x, dict):
            for k, v in x.items():
                if k == "metrics" and isinstance(v, dict):
                    tags.update(v)
                else:
                    walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    for path in FIXTURES.glob("*/expected.json"):
        walk(json.loads(path.read_text()))
    for path in (FIXTURES / "printed").glob("*.expected.json"):
        tags.update(t for t, _, _ in json.loads(path.read_text()))
    lossy = {t for t in tags if re.search(r"loss|acc|ppl|perplexity", t, re.IGNORECASE)}
    assert lossy and lossy <= set(VOCABULARY)


def test_one_run_picks_one_tag_per_name() -> None:
    assert canonical_metrics(["loss", "train_loss", "eval_loss", "grad_norm"]) == {
        "train_loss": "train_loss",
        "val_loss": "eval_loss",
        "grad_norm": "grad_norm",
    }
    assert canonical_metrics(["train_loss_step", "train_loss_epoch"]) == {
        "train_loss": "train_loss_epoch"
    }
    assert key_columns(
        [{"metrics": {"Loss/train": {}, "grad_norm": {}, "val/acc": {}}}], limit=2
    ) == ["train_loss", "val_acc"]


def test_every_fixture_run_with_a_loss_shows_it(tmp_path: Path, db_path: Path) -> None:
    """The framework fixtures through the real import: in ls, every run that logged a
    loss under any name has a train_loss or val_loss; show and --json keep the tags."""
    root = tmp_path / "fixtures"
    for name in ("torch_tb", "wandb", "hf_trainer", "lightning", "generic", "mlflow"):
        shutil.copytree(FIXTURES / name, root / name, symlinks=True)
    done = run_cli("import", str(root), db=db_path)
    assert done.returncode == 0, done.stderr
    records = json.loads(run_cli("ls", "-n", "0", "--json", db=db_path).stdout)
    listed = run_cli("ls", "-n", "0", "--columns", "id,train_loss,val_loss", db=db_path).stdout
    cells_by_id = {ln.split()[0]: ln.split()[1:] for ln in listed.splitlines()[1:]}
    with_loss = [r for r in records if any("loss" in t.lower() for t in r["metrics"])]
    assert {r["framework"] for r in with_loss} >= {"tensorboard", "wandb", "hf-trainer"}
    for r in with_loss:
        assert cells_by_id[r["id"]] != ["—", "—"], r["name"]
    tb = next(r for r in records if r["name"].endswith("runs/exp1"))
    assert "train/loss" in tb["metrics"] and "train_loss" not in tb["metrics"]
    shown = run_cli("show", tb["id"], db=db_path).stdout
    assert "train/loss" in shown


# -- end to end: a real tmux pane of 80 columns --------------------------------------


def test_ls_in_an_80_column_tmux_pane(many: Path, tmp_path: Path) -> None:
    assert shutil.which("tmux"), "tmux is needed (.ci/run installs it)"
    socket = tmp_path / "tmux.sock"
    session = "lbls"
    env = clean_env()
    script = tmp_path / "ls.sh"
    script.write_text(f"{sys.executable} -m labbook --db {many} ls\necho __DONE__\nsleep 120\n")
    args = [f"{k}={env[k]}" for k in ("TERM", "TZ", "PYTHONPATH", "HOME")]
    tmux = ["tmux", "-S", str(socket)]
    command = ["env", "-u", "COLUMNS", "-u", "NO_COLOR", *args, "sh", str(script)]
    try:
        subprocess.run(
            [*tmux, "new-session", "-d", "-s", session, "-x", "80", "-y", "30", *command],
            check=True,
            timeout=30,
            env=env,
        )
        deadline = time.monotonic() + 60
        screen = ""
        while time.monotonic() < deadline:
            screen = subprocess.run(
                [*tmux, "capture-pane", "-p", "-t", session],
                capture_output=True,
                text=True,
                timeout=30,
            ).stdout
            if "__DONE__" in screen:
                break
            time.sleep(0.2)
        assert "__DONE__" in screen, screen
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True, timeout=30)
    lines = [ln for ln in screen.split("\n")[: screen.split("\n").index("__DONE__")] if ln]
    assert len(lines) == 6, screen  # header + 5 runs: nothing wrapped
    assert lines[0].split()[:3] == ["id", "name", "status"]
    for line in lines[1:]:
        assert cells(line) <= 80
        assert re.match(r"^[0-9a-f]{8}  ", line), screen
    for full in LONG:
        assert any(full[-6:] in ln for ln in lines), screen  # each name's end is on screen
    assert "0.8003" in screen and "0.9123" in screen
