"""labbook.readers.logs: what a plain training log tells.

Tracebacks come from real child processes; the HF Trainer console text, the
Hydra log lines and the CUDA OOM message are verbatim real output.
"""

from __future__ import annotations

import logging
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from labbook.model import Failure
from labbook.readers import logs
from labbook.readers.logs import (
    LogFacts,
    classify_failure,
    clean_lines,
    find_traceback,
    parse_metric_line,
    read_log,
)

#: torch 2.5 on an 80 GB H100, verbatim, inside the traceback it came with.
CUDA_OOM_TRACEBACK = """\
Traceback (most recent call last):
  File "/home/user/proj/train.py", line 88, in <module>
    main()
  File "/home/user/proj/train.py", line 61, in main
    logits = model(x)
             ^^^^^^^^
  File "/opt/conda/lib/python3.11/site-packages/torch/nn/modules/module.py", line 1736, in _wrapped_call_impl
    return self._call_impl(*args, **kwargs)
           ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 MiB. GPU 0 has a total capacity of 79.15 GiB of which 6.62 MiB is free. Including non-PyTorch memory, this process has 79.13 GiB memory in use. Of the allocated memory 78.53 GiB is allocated by PyTorch, and 109.91 MiB is reserved by PyTorch but unallocated. If reserved but unallocated memory is large try setting PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid fragmentation.  See documentation for Memory Management  (https://pytorch.org/docs/stable/notes/cuda.html#environment-variables)
"""

SLURM_TIMEOUT = (
    "slurmstepd: error: *** JOB 123 ON node1 CANCELLED AT 2026-11-20T10:00:00 DUE TO TIME LIMIT ***"
)

#: transformers Trainer console output (tests/fixtures/hf_trainer), verbatim: tqdm
#: redraws with \r, cursor-up escapes, and the metric dicts it prints.
HF_CONSOLE = "".join(
    [
        "\r  0%|          | 0/8 [00:00<?, ?it/s]\r                                     \r{'loss': '0.6934', 'grad_norm': '0.184', 'learning_rate': '0.0004375', 'epoch': '0.5'}\n",
        "\r 25%|██▌       | 2/8 [00:00<00:00, 46.41it/s]\r                                             \r{'loss': '0.6933', 'grad_norm': '0.1809', 'learning_rate': '0.0003125', 'epoch': '1'}\n",
        "\r 50%|█████     | 4/8 [00:00<00:00, 71.89it/s]\n",
        "\rWriting model shards:   0%|          | 0/1 [00:00<?, ?it/s]\x1b[A\rWriting model shards: 100%|██████████| 1/1 [00:00<00:00, 437.13it/s]\n",
        "\n",
        "\r  0%|          | 0/2 [00:00<?, ?it/s]\x1b[A\r                                             \r\n",
        "\r                                     \r\x1b[A{'eval_loss': '0.6931', 'eval_runtime': '0.0068', 'eval_samples_per_second': '2338', 'eval_steps_per_second': '292.3', 'epoch': '1'}\n",
        "\r 50%|█████     | 4/8 [00:00<00:00, 25.51it/s]\n",
        "\r100%|██████████| 2/2 [00:00<00:00, 609.33it/s]\x1b[A\n",
        "\r                                              \x1b[A\r 62%|██████▎   | 5/8 [00:00<00:00, 30.65it/s]\r                                             \r{'loss': '0.6929', 'grad_norm': '0.1822', 'learning_rate': '0.0001875', 'epoch': '1.5'}\n",
        "\r 75%|███████▌  | 6/8 [00:00<00:00, 30.65it/s]\r                                             \r{'loss': '0.6928', 'grad_norm': '0.03036', 'learning_rate': '6.25e-05', 'epoch': '2'}\n",
        "\r100%|██████████| 8/8 [00:00<00:00, 30.65it/s]\n",
        "\r                                     \r\x1b[A{'eval_loss': '0.6931', 'eval_runtime': '0.0084', 'eval_samples_per_second': '1896', 'eval_steps_per_second': '237', 'epoch': '2'}\n",
        "\r100%|██████████| 2/2 [00:00<00:00, 464.36it/s]\x1b[A\n",
        "\r                                              \x1b[A\r                                             \r{'train_runtime': '0.213', 'train_samples_per_second': '300.4', 'train_steps_per_second': '37.55', 'train_loss': '0.6931', 'epoch': '2'}\n",
        "\r100%|██████████| 8/8 [00:00<00:00, 30.65it/s]\r100%|██████████| 8/8 [00:00<00:00, 37.80it/s]\n",
    ]
)

#: Hydra job log (tests/fixtures/hydra), verbatim.
HYDRA_LOG = """\
[2026-11-22 18:57:30,648][__main__][INFO] - seed=42 optimizer=sgd lr=0.001
[2026-11-22 18:57:30,648][__main__][INFO] - epoch=0 step=1 train_loss=1.9604 val_loss=2.0604
[2026-11-22 18:57:30,648][__main__][INFO] - epoch=0 step=2 train_loss=1.9216 val_loss=2.0216
[2026-11-22 18:57:30,648][__main__][INFO] - epoch=0 step=3 train_loss=1.8835 val_loss=1.9835
[2026-11-22 18:57:30,648][__main__][INFO] - epoch=0 step=4 train_loss=1.8462 val_loss=1.9462
[2026-11-22 18:57:30,649][__main__][INFO] - epoch=1 step=5 train_loss=1.6705 val_loss=1.7705
"""


def write(tmp_path: Path, text: str | bytes, name: str = "train.log") -> Path:
    p = tmp_path / name
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_bytes(text.encode("utf-8"))
    return p


def run_python(args: list[str], cwd: Path) -> str:
    """Run a real child Python and return what it printed (stdout and stderr together)."""
    proc = subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    return proc.stdout


@pytest.fixture
def warnings_(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.WARNING, logger="labbook")
    return caplog


def labbook_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "labbook"]


def assert_one_warning(caplog: pytest.LogCaptureFixture, path: Path, *words: str) -> None:
    msgs = labbook_warnings(caplog)
    assert len(msgs) == 1, msgs
    assert str(path) in msgs[0] and "\n" not in msgs[0]
    for w in words:
        assert w in msgs[0], msgs[0]


# --------------------------------------------------------------------------- metric lines


@pytest.mark.parametrize(
    ("line", "values", "step", "epoch"),
    [
        (
            "epoch=3 step=32 train_loss=0.067 val_loss=0.081",
            {"train_loss": 0.067, "val_loss": 0.081},
            32,
            3.0,
        ),
        (
            "[2026-11-22 18:57:30,648][__main__][INFO] - epoch=0 step=1 train_loss=1.9604 val_loss=2.0604",
            {"train_loss": 1.9604, "val_loss": 2.0604},
            1,
            0.0,
        ),
        (
            "step 100: train loss 2.31, val loss 2.40",
            {"train_loss": 2.31, "val_loss": 2.40},
            100,
            None,
        ),
        ("step 0 loss 1.25 acc 0.5", {"loss": 1.25, "acc": 0.5}, 0, None),
        ("loss: 0.23", {"loss": 0.23}, None, None),
        (
            "{'loss': 0.5, 'grad_norm': 1.2, 'learning_rate': 5e-05, 'epoch': 0.5}",
            {"loss": 0.5, "grad_norm": 1.2, "learning_rate": 5e-05},
            None,
            0.5,
        ),
        (
            "{'loss': '0.6934', 'grad_norm': '0.184', 'learning_rate': '0.0004375', 'epoch': '1'}",
            {"loss": 0.6934, "grad_norm": 0.184, "learning_rate": 0.0004375},
            None,
            1.0,
        ),
        ('{"step": 7, "loss": 0.25, "phase": "train"}', {"loss": 0.25}, 7, None),
        (
            "Epoch 2/10 - loss: 0.3412 - accuracy: 0.88",
            {"loss": 0.3412, "accuracy": 0.88},
            None,
            2.0,
        ),
        (
            "1875/1875 [==============================] - 5s 2ms/step - loss: 0.2604 - accuracy: 0.9253"
            " - val_loss: 0.1337 - val_accuracy: 0.9598",
            {"loss": 0.2604, "accuracy": 0.9253, "val_loss": 0.1337, "val_accuracy": 0.9598},
            None,
            None,
        ),
        ("Epoch [2/10], Step [100/600], Loss: 0.2345", {"Loss": 0.2345}, 100, 2.0),
        ("[Epoch 2/10][Step 100/500] loss: 0.3", {"loss": 0.3}, 100, 2.0),
        ("[2026-11-20 10:00:00] [Epoch 3] val loss 0.25", {"val_loss": 0.25}, None, 3.0),
        (
            "| epoch   1 |   200/ 2983 batches | lr 5.00 | ms/batch 17.09 | loss  7.59 | ppl  1982.95",
            {"lr": 5.0, "ms/batch": 17.09, "loss": 7.59, "ppl": 1982.95},
            None,
            1.0,
        ),
        (
            "iter 0: loss 4.2, time 1234.56ms, mfu -100.00%",
            {"loss": 4.2, "time": 1234.56, "mfu": -100.0},  # values with units: as printed
            0,
            None,
        ),
        ("2026-11-22 18:57:30,648 - __main__ - INFO - epoch=1 loss=0.3", {"loss": 0.3}, None, 1.0),
        ("INFO:root:step 5 loss 0.7", {"loss": 0.7}, 5, None),
        (
            "iteration 500/1000 | loss 2.31 | lr 3.0e-04 | 120.5 ms/iter",
            {"loss": 2.31, "lr": 3.0e-04},
            500,
            None,
        ),
        ("Train Loss: 0.23 | Val Acc: 0.91", {"Train_Loss": 0.23, "Val_Acc": 0.91}, None, None),
        (  # a tqdm postfix (set_postfix); v_num is a counter, not a metric
            "Epoch 0: 100%|██████████| 4/4 [00:00<00:00, 50.2it/s, v_num=0, train_loss=0.693]",
            {"train_loss": 0.693},
            None,
            0.0,
        ),
    ],
)
def test_metric_line_formats(
    line: str, values: dict[str, float], step: int | None, epoch: float | None
) -> None:
    assert parse_metric_line(line) == (values, step, epoch)


@pytest.mark.parametrize(
    ("line", "name", "kind"),
    [
        ("step 30: train loss nan", "train_loss", "nan"),
        ("[rank0]: step=7 loss=inf grad_norm=-inf", "loss", "inf"),
        ("step=7 loss=inf grad_norm=-inf", "grad_norm", "-inf"),
        ("{'loss': nan, 'grad_norm': nan, 'learning_rate': 5e-05, 'epoch': 0.5}", "loss", "nan"),
        ("loss: NaN", "loss", "nan"),
        ("epoch 3 loss: -Infinity", "loss", "-inf"),
    ],
)
def test_nonfinite_values_are_recorded(line: str, name: str, kind: str) -> None:
    parsed = parse_metric_line(line)
    assert parsed is not None
    value = parsed[0][name]
    assert (math.isnan(value) and kind == "nan") or str(value) == kind


@pytest.mark.parametrize(
    "line",
    [
        "loaded 50000 images in 3.2s",
        "Loaded 50000 images from /data/train (3.2 GB) in 12.5s",
        "Total params: 58",
        "Trainable params: 58                                                            ",
        "Modules in train mode: 4",
        "GPU available: False, used: False",
        "seed=42 optimizer=sgd lr=0.001",
        "seed=42 lr=0.001",
        "lr: 0.001",
        "batch_size: 32",
        "Using 8 workers for data loading, batch size 32",
        "Epoch 3: val_loss improved from 0.50000 to 0.40000, saving model to /tmp/x.h5",
        "Step 1000: saving checkpoint to ckpt/step_1000.pt",
        "best val loss so far: 0.32",
        "The loss at step 5 was 0.3",
        "epoch 3 took 12.5s",
        "Epoch 1/2  ━━━━━━━ 1/4 0:00:00 • -:--:-- 0.00it/s v_num: 1",
        "Downloading: 100%|██████████| 1.2G/1.2G [00:10<00:00, 120MB/s]",
        "Namespace(seed=3, lr=0.0003, steps=500, batch_size=32, loss_weight=0.5)",
        "W1122 19:01:50.413000 18255 torch/_export/non_strict_utils.py:656] dimension "
        "inputs['input'].shape[0] 0/1 specialized; Dim.AUTO was specified along with a "
        "sample input with hint = 1.",
        "/work/fxenv/lib/python3.11/site-packages/lightning/pytorch/utilities/_pytree.py:21: "
        "`isinstance(treespec, LeafSpec)` is deprecated",
        "Epoch 2/10",
        "{'lr': 0.1, 'batch_size': 32}",
        "{'input_ids': [101, 2023, 102], 'attention_mask': [1, 1, 1]}",
        "    loss = criterion(out, y)  # loss: 0.5",
        "accuracy went from 45/100 to 50/100",
    ],
)
def test_no_metrics_from_prose(line: str) -> None:
    assert parse_metric_line(line) is None


def test_prose_log_gives_no_metrics(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        "".join(
            [
                "Starting run on host gpu-01 with 8 GPUs\n",
                "loaded 50000 images in 3.2s\n",
                "Model has 124439808 parameters (124.4M)\n",
                "Saving checkpoint at step 1000 to ckpt/step_1000.pt\n",
                "Waiting 30 seconds for 2 workers\n",
                "done.\n",
            ]
        ),
    )
    facts = read_log(p)
    assert facts is not None
    assert facts.metrics == {} and facts.config == {} and facts.seed is None
    assert facts.failure is None and not facts.finished_marker


# --------------------------------------------------------------------------- steps


def test_steps_from_hydra_log(tmp_path: Path) -> None:
    facts = read_log(write(tmp_path, HYDRA_LOG))
    assert facts is not None
    assert [p.step for p in facts.metrics["train_loss"]] == [1, 2, 3, 4, 5]
    assert facts.metrics["val_loss"][-1].value == 1.7705
    assert sorted(facts.metrics) == ["train_loss", "val_loss"]  # seed/lr line is not metrics
    assert facts.seed is not None and facts.seed.value == 42 and facts.seed.source == "log:seed=42"


def test_steps_from_epoch_context_line(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        "".join(
            [
                "Epoch 1/3\n",
                "1875/1875 [==============================] - 5s 2ms/step - loss: 0.2604 - accuracy: 0.9253\n",
                "Epoch 2/3\n",
                "1875/1875 [==============================] - 4s 2ms/step - loss: 0.1109 - accuracy: 0.9666\n",
                "Epoch 3/3\n",
                "1875/1875 ━━━━━━━━━━━━━━━━━━━━ 3s 1ms/step - accuracy: 0.9771 - loss: 0.0764\n",
            ]
        ),
    )
    facts = read_log(p)
    assert facts is not None
    assert [(pt.step, pt.value) for pt in facts.metrics["loss"]] == [
        (1, 0.2604),
        (2, 0.1109),
        (3, 0.0764),
    ]


def test_steps_counter_and_carry_forward(tmp_path: Path) -> None:
    facts = read_log(write(tmp_path, "loss: 0.9\nloss: 0.8\nloss: 0.7\n", "a.log"))
    assert facts is not None and [p.step for p in facts.metrics["loss"]] == [0, 1, 2]
    facts = read_log(
        write(
            tmp_path, "step 100: train loss 2.3\nval loss: 2.5\nstep 200: train loss 2.1\n", "b.log"
        )
    )
    assert facts is not None
    assert [p.step for p in facts.metrics["train_loss"]] == [100, 200]
    assert [p.step for p in facts.metrics["val_loss"]] == [100]


def test_hf_console_with_progress_bars(tmp_path: Path) -> None:
    facts = read_log(write(tmp_path, HF_CONSOLE, "output.log"))
    assert facts is not None
    # Fractional epochs (0.5, 1.5) cannot be steps: a running counter of metric lines is used.
    assert [(p.step, p.value) for p in facts.metrics["loss"]] == [
        (0, 0.6934),
        (1, 0.6933),
        (3, 0.6929),
        (4, 0.6928),
    ]
    assert [p.step for p in facts.metrics["eval_loss"]] == [2, 5]
    assert facts.metrics["train_loss"][0].value == 0.6931
    assert "epoch" not in facts.metrics
    assert facts.finished_marker  # 'train_runtime' in the printed dict
    assert facts.failure is None
    assert "\r" not in facts.tail and "\x1b" not in facts.tail
    assert "{'train_runtime'" in facts.tail


def test_tqdm_carriage_returns(tmp_path: Path) -> None:
    text = (
        "\rEpoch 0:  10%|█         | 1/10 [00:00<00:01]\rEpoch 0:  20%|██        | 2/10\n"
        "\r 50%|█████     | 5/10\rstep 5: loss 0.5\n"
        "step 6: loss 0.4\r\n"
        "\r\r\n"
        "step 7: loss 0.3\n"
    )
    assert clean_lines(text) == [
        "Epoch 0:  20%|██        | 2/10",
        "step 5: loss 0.5",
        "step 6: loss 0.4",
        "",
        "step 7: loss 0.3",
    ]
    facts = read_log(write(tmp_path, text))
    assert facts is not None
    assert [(p.step, p.value) for p in facts.metrics["loss"]] == [(5, 0.5), (6, 0.4), (7, 0.3)]


# --------------------------------------------------------------------------- config and seed


@pytest.mark.parametrize(
    ("line", "config"),
    [
        (
            "Namespace(seed=3, lr=0.0003, steps=500, batch_size=32)",
            {"seed": 3, "lr": 0.0003, "steps": 500, "batch_size": 32},
        ),
        (
            "Namespace(lr=0.1, name='x', layers=[64, 64], device=device(type='cuda'), "
            "sub=Namespace(a=1), out=PosixPath('runs/x'))",
            {
                "lr": 0.1,
                "name": "x",
                "layers": [64, 64],
                "device": "device(type='cuda')",
                "sub.a": 1,
                "out": "PosixPath('runs/x')",
            },
        ),
        ("INFO:__main__:args: Namespace(lr=0.1, batch_size=32)", {"lr": 0.1, "batch_size": 32}),
        (
            "[2026-11-20 10:00:00,000][__main__][INFO] - config: {'lr': 0.1, 'model': {'hidden': 8}}",
            {"lr": 0.1, "model.hidden": 8},
        ),
        ("hparams = {'lr': 0.1}", {"lr": 0.1}),
        (
            '{"lr": 0.1, "optimizer": {"name": "adam", "betas": [0.9, 0.999]}}',
            {"lr": 0.1, "optimizer.name": "adam", "optimizer.betas": [0.9, 0.999]},
        ),
        ("{'lr': 0.1, 'batch_size': 32, 'name': 'x'}", {"lr": 0.1, "batch_size": 32, "name": "x"}),
    ],
)
def test_config_lines(tmp_path: Path, line: str, config: dict[str, object]) -> None:
    facts = read_log(write(tmp_path, line + "\nstep 1: loss 0.5\n"))
    assert facts is not None
    assert facts.config == config
    assert list(facts.metrics) == ["loss"]


@pytest.mark.parametrize(
    "line",
    [
        '{"time": "2026-11-22T19:18:53Z", "level": "INFO", "msg": "wandb-core", "pid": 7}',
        "{'loss': 0.5, 'grad_norm': 1.2, 'learning_rate': 5e-05, 'epoch': 0.5}",
        "{'name': 'x', 'mode': 'train'}",
        "the config is stored in config.yaml",
        "args: {not a dict}",
    ],
)
def test_not_config_lines(tmp_path: Path, line: str) -> None:
    facts = read_log(write(tmp_path, line + "\n"))
    assert facts is not None and facts.config == {}


def test_config_is_never_evaluated(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    line = f"Namespace(lr=0.1, x=__import__('os').system('touch {marker}'))"
    facts = read_log(write(tmp_path, line + "\n" + "config: {'a': __import__('os')}\n"))
    assert not marker.exists()
    assert facts is not None and facts.config["lr"] == 0.1
    assert facts.config["x"] == f"__import__('os').system('touch {marker}')"


def test_explicit_config_wins_over_bare_dict(tmp_path: Path) -> None:
    p = write(tmp_path, "{'a': 1, 'b': 2}\nNamespace(lr=0.1, seed=5)\n")
    facts = read_log(p)
    assert facts is not None and facts.config == {"lr": 0.1, "seed": 5}


@pytest.mark.parametrize(
    ("line", "value", "source"),
    [
        ("Seed set to 1234", 1234, "log:Seed set to 1234"),
        ("[rank: 0] Seed set to 7", 7, "log:Seed set to 7"),
        ("Global seed set to 1234", 1234, "log:Global seed set to 1234"),
        ("seed: 42", 42, "log:seed: 42"),
        ("seed=42", 42, "log:seed=42"),
        ("random seed 42", 42, "log:random seed 42"),
        ("Setting random seed to 3", 3, "log:random seed to 3"),
        ("Namespace(seed=3, lr=0.1)", 3, "log:seed=3"),
        ("config: {'seed': 11, 'lr': 0.1}", 11, "log:seed: 11"),
    ],
)
def test_seed_lines(tmp_path: Path, line: str, value: int, source: str) -> None:
    facts = read_log(write(tmp_path, line + "\n"))
    assert facts is not None and facts.seed is not None
    assert (facts.seed.value, facts.seed.source) == (value, source)


@pytest.mark.parametrize(
    "line",
    [
        "seeds: 5",
        "data_seed=3",
        "seed_everything(42)",
        "seed: 4.5",
        "using seed from config",
        "torch.manual_seed(0)",
    ],
)
def test_not_seed_lines(tmp_path: Path, line: str) -> None:
    facts = read_log(write(tmp_path, line + "\n"))
    assert facts is not None and facts.seed is None


def test_lightning_seed_line_beats_earlier_generic_one(tmp_path: Path) -> None:
    facts = read_log(write(tmp_path, "seed: 1\nSeed set to 2\n"))
    assert facts is not None and facts.seed is not None and facts.seed.value == 2


# --------------------------------------------------------------------------- markers, tail, truncation


@pytest.mark.parametrize(
    ("line", "finished"),
    [
        ("`Trainer.fit` stopped: `max_epochs=3` reached.", True),
        ("`Trainer.fit` stopped: `max_steps=1000` reached.", True),
        ("Training completed. Do not forget to share your model on huggingface.co/models =)", True),
        (
            "{'train_runtime': 2.016, 'train_samples_per_second': 31.75, 'train_loss': 0.6931, 'epoch': 2.0}",
            True,
        ),
        ("training complete", False),
        ("done.", False),
    ],
)
def test_finished_markers(tmp_path: Path, line: str, finished: bool) -> None:
    facts = read_log(write(tmp_path, "step 1: loss 0.5\n" + line + "\n"))
    assert facts is not None and facts.finished_marker is finished


def test_truncated_and_tail(tmp_path: Path) -> None:
    lines = [f"step {i}: loss {1 / i:.4f}" for i in range(1, 301)]
    facts = read_log(write(tmp_path, "\n".join(lines) + "\nstep 301: lo"))
    assert facts is not None
    assert facts.truncated
    assert len(facts.metrics["loss"]) == 300  # the partial last line is not a metric
    tail = facts.tail.split("\n")
    assert (
        len(tail) == logs.TAIL_LINES
        and tail[-1] == "step 301: lo"
        and tail[0] == "step 102: loss 0.0098"
    )
    whole = read_log(write(tmp_path, "\n".join(lines) + "\n", "whole.log"))
    assert whole is not None and not whole.truncated


def test_tail_is_size_capped(tmp_path: Path) -> None:
    facts = read_log(write(tmp_path, ("x" * 1000 + "\n") * 150))
    assert facts is not None
    assert 0 < len(facts.tail) <= logs.TAIL_CHARS
    assert set(facts.tail.split("\n")) == {"x" * 1000}


def test_non_utf8_bytes_are_replaced(tmp_path: Path, warnings_) -> None:
    p = write(tmp_path, b"step 1: loss 0.5\n\xff\xfe caf\xe9 \x80\x81\nstep 2: loss 0.4\n")
    facts = read_log(p)
    assert facts is not None
    assert [pt.value for pt in facts.metrics["loss"]] == [0.5, 0.4]
    assert "caf\ufffd" in facts.tail
    assert labbook_warnings(warnings_) == []


def test_utf16_log(tmp_path: Path) -> None:
    p = write(tmp_path, "Seed set to 9\r\nstep 1: loss 0.5\r\n".encode("utf-16"))
    facts = read_log(p)
    assert facts is not None and facts.seed is not None and facts.seed.value == 9
    assert facts.metrics["loss"][0].value == 0.5


def test_empty_log(tmp_path: Path, warnings_) -> None:
    facts = read_log(write(tmp_path, b""))
    assert facts == LogFacts()
    assert labbook_warnings(warnings_) == []


def test_binary_log(tmp_path: Path, warnings_) -> None:
    p = write(tmp_path, bytes(range(256)) * 64, "core.log")
    assert read_log(p) is None
    assert_one_warning(warnings_, p, "binary")


def test_unreadable_log(tmp_path: Path, warnings_) -> None:
    paths = []
    dangling = tmp_path / "dangling.log"
    dangling.symlink_to(tmp_path / "nowhere.log")
    paths.append(dangling)
    directory = tmp_path / "dir.log"
    directory.mkdir()
    paths.append(directory)
    locked = write(tmp_path, "step 1: loss 0.5\n", "locked.log")
    locked.chmod(0)
    try:
        with open(locked, "rb"):
            pass  # running as root: permissions do not deny reads
    except PermissionError:
        paths.append(locked)
    for p in paths:
        warnings_.clear()
        assert read_log(p) is None
        assert_one_warning(warnings_, p, "cannot read")


def test_large_log_reads_only_the_windows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 256 MiB log (sparse: a zero-filled middle) costs two 8 MiB windows, not a whole read."""
    size = 256 * 1024 * 1024
    head = "".join(
        ["Namespace(lr=0.1, batch_size=32)\n", "Seed set to 1234\n"]
        + [f"step {i}: train loss {2 - i / 1000:.4f}\n" for i in range(1, 501)]
    )
    tail = "".join(
        [f"step {i}: train loss {1 - i / 1e6:.4f}\n" for i in range(99_500, 99_601)]
        + [CUDA_OOM_TRACEBACK]
    )
    assert len(head) > 8192  # the binary sniff sees text
    p = tmp_path / "big.log"
    with open(p, "wb") as f:
        f.write(head.encode())
        f.seek(size - len(tail))
        f.write(tail.encode())
    assert p.stat().st_size == size

    read_bytes = 0
    real_read = os.read

    def counting_read(fd: int, n: int) -> bytes:
        nonlocal read_bytes
        data = real_read(fd, n)
        read_bytes += len(data)
        return data

    monkeypatch.setattr(os, "read", counting_read)
    started = time.perf_counter()
    facts = read_log(p)
    elapsed = time.perf_counter() - started
    monkeypatch.undo()

    assert facts is not None
    assert read_bytes <= logs.HEAD_BYTES + logs.TAIL_BYTES + 1
    assert elapsed < 10  # generous; typically well under a second
    assert facts.config == {"lr": 0.1, "batch_size": 32}
    assert facts.seed is not None and facts.seed.value == 1234
    steps = [pt.step for pt in facts.metrics["train_loss"]]
    assert steps[:2] == [1, 2] and steps[499] == 500  # head window
    assert steps[500] == 99_500 and steps[-1] == 99_600  # tail window: its first line is kept
    assert facts.failure is not None and facts.failure.kind == "cuda_oom"
    assert facts.traceback is not None and facts.traceback.startswith("Traceback")
    assert not facts.truncated


def test_small_windows_split_lines_cleanly(tmp_path: Path) -> None:
    lines = [f"step {i}: loss {i / 100:.2f}\n" for i in range(1000)]
    p = write(tmp_path, "".join(lines))
    facts = read_log(p, head_bytes=1000, tail_bytes=1000)
    assert facts is not None
    steps = [pt.step for pt in facts.metrics["loss"]]
    assert steps[0] == 0 and steps[-1] == 999
    assert 40 < len(steps) < 120  # only the two windows were parsed
    assert steps == sorted(steps) and all(f"step {s}: loss {s / 100:.2f}\n" in lines for s in steps)


# --------------------------------------------------------------------------- failures from real processes


USER_SCRIPT = """\
import json


def forward(batch):
    return json.loads(batch)


def main():
    print("Namespace(lr=0.1, batch_size=32, name='x')")
    print("Seed set to 1234")
    for step in range(1, 4):
        print(f"step {step}: train loss {1.0 / step:.4f}, val loss {1.1 / step:.4f}", flush=True)
    forward("{bad")


main()
"""


def test_read_log_of_a_real_crash(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(USER_SCRIPT)
    log = tmp_path / "train.log"
    with open(log, "wb") as f:
        proc = subprocess.run(
            [sys.executable, str(script)], stdout=f, stderr=subprocess.STDOUT, timeout=60
        )
    assert proc.returncode == 1
    facts = read_log(log)
    assert facts is not None
    assert facts.config == {"lr": 0.1, "batch_size": 32, "name": "x"}
    assert facts.seed is not None and facts.seed.source == "log:Seed set to 1234"
    assert [pt.step for pt in facts.metrics["train_loss"]] == [1, 2, 3]
    assert facts.failure == Failure(
        "exception",
        "json.decoder.JSONDecodeError: Expecting property name enclosed in double quotes: "
        "line 1 column 2 (char 1) (at train.py:5 in forward)",  # the stdlib frames are skipped
    )
    assert facts.traceback is not None
    assert facts.traceback.startswith("Traceback (most recent call last):")
    assert facts.traceback.endswith("line 1 column 2 (char 1)")
    assert 'File "' in facts.traceback and "json/decoder.py" in facts.traceback
    assert not facts.finished_marker


def test_classify_simple_exception(tmp_path: Path) -> None:
    out = run_python(["-c", "x = 1\nraise ValueError('bad value for lr')"], tmp_path)
    assert classify_failure(out) == Failure(
        "exception", "ValueError: bad value for lr (at <string>:2 in <module>)"
    )


def test_classify_chained_exceptions_use_the_last(tmp_path: Path) -> None:
    direct = run_python(
        [
            "-c",
            "try:\n    {}['k']\nexcept KeyError as e:\n    raise RuntimeError('wrapped') from e",
        ],
        tmp_path,
    )
    assert "The above exception was the direct cause" in direct
    assert classify_failure(direct) == Failure(
        "exception", "RuntimeError: wrapped (at <string>:4 in <module>)"
    )
    tb = find_traceback(direct)
    assert tb is not None and "KeyError: 'k'" in tb and tb.endswith("RuntimeError: wrapped")

    during = run_python(
        ["-c", "try:\n    1/0\nexcept ZeroDivisionError:\n    raise ValueError('during')"], tmp_path
    )
    assert "During handling of the above exception" in during
    assert classify_failure(during).message == "ValueError: during (at <string>:4 in <module>)"


def test_classify_innermost_user_frame(tmp_path: Path) -> None:
    (tmp_path / "model.py").write_text("def forward(x):\n    return x.missing\n")
    (tmp_path / "train.py").write_text(
        "import model\n\n\ndef main():\n    model.forward(3)\n\n\nmain()\n"
    )
    out = run_python(["train.py"], tmp_path)
    failure = classify_failure(out)
    assert failure == Failure(
        "exception",
        "AttributeError: 'int' object has no attribute 'missing' (at model.py:2 in forward)",
    )


def test_classify_keyboard_interrupt(tmp_path: Path) -> None:
    out = run_python(["-c", "raise KeyboardInterrupt"], tmp_path)
    assert classify_failure(out) == Failure("signal", "SIGINT (KeyboardInterrupt)")


def test_classify_rank_prefixed_traceback(tmp_path: Path) -> None:
    out = run_python(["-c", "def f():\n    raise OSError('disk full')\nf()"], tmp_path)
    prefixed = "".join(f"[rank0]: {line}\n" for line in out.splitlines())
    assert classify_failure(prefixed) == Failure(
        "exception", "OSError: disk full (at <string>:2 in f)"
    )


def test_classify_exception_named_killed_is_an_exception() -> None:
    text = (
        "Traceback (most recent call last):\n"
        '  File "/work/main/tests/fixtures/hf_trainer/make_fixture.py", line 62, in on_save\n'
        '    raise Killed(f"simulated kill after saving checkpoint-{state.global_step}")\n'
        "Killed: simulated kill after saving checkpoint-2\n"
        "\r 25%|██▌       | 2/8 [00:00<00:00,  6.67it/s]\n"
    )
    assert classify_failure(text) == Failure(
        "exception",
        "Killed: simulated kill after saving checkpoint-2 (at make_fixture.py:62 in on_save)",
    )


def test_classify_truncated_traceback() -> None:
    failure = classify_failure(
        "step 1 loss 0.5\nTraceback (most recent call last):\n"
        '  File "train.py", line 3, in <module>\n'
    )
    assert failure is not None and failure.kind == "exception"


# --------------------------------------------------------------------------- failure rules


def test_classify_cuda_oom() -> None:
    failure = classify_failure("step 1: loss 0.5\n" + CUDA_OOM_TRACEBACK)
    assert failure is not None and failure.kind == "cuda_oom"
    assert failure.message.startswith(
        "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 MiB."
    )
    assert len(failure.message) <= 300 and "\n" not in failure.message


@pytest.mark.parametrize(
    "line",
    [
        "torch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB",
        "RuntimeError: CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`",
        "RuntimeError: CUDA error: out of memory",
        "cudaErrorMemoryAllocation: out of memory",
    ],
)
def test_classify_cuda_oom_variants(line: str) -> None:
    failure = classify_failure(f"step 1 loss 0.5\n{line}\n")
    assert failure == Failure("cuda_oom", line)


def test_oom_caught_then_finished_is_not_a_failure(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        "step 1: loss 0.9\n"
        "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB\n"
        "Batch size 64 too large; retrying with 32\n"
        "step 2: loss 0.8\n"
        "`Trainer.fit` stopped: `max_epochs=3` reached.\n",
    )
    facts = read_log(p)
    assert facts is not None and facts.finished_marker and facts.failure is None


def test_classify_timeout() -> None:
    assert classify_failure(f"step 1 loss 0.5\n{SLURM_TIMEOUT}\n") == Failure(
        "timeout", SLURM_TIMEOUT
    )


@pytest.mark.parametrize(
    ("text", "exit_code", "signal_name", "expected"),
    [
        ("step 1 loss 0.5\nKilled\n", 137, None, "oom_killed"),
        ("step 1 loss 0.5\nKilled\n", None, "SIGKILL", "oom_killed"),
        ("step 1 loss 0.5\nKilled\n", None, None, "oom_killed"),
        (
            "/var/spool/slurmd/job123/slurm_script: line 5: 12345 Killed                  python train.py\n",
            137,
            None,
            "oom_killed",
        ),
        (
            "step 1 loss 0.5\n[1234.5] Out of memory: Killed process 4242 (python) total-vm:80000kB\n",
            None,
            None,
            "oom_killed",
        ),
        (
            "slurmstepd: error: Detected 1 oom-kill event(s) in StepId=123.batch. Some of your processes "
            "may have been killed by the cgroup out-of-memory handler.\n",
            None,
            None,
            "oom_killed",
        ),
        ("step 1 loss 0.5\nKilled\n", None, "SIGTERM", "signal"),
        ("step 1 loss 0.5\n", 137, None, "signal"),
    ],
)
def test_classify_killed(
    text: str, exit_code: int | None, signal_name: str | None, expected: str
) -> None:
    failure = classify_failure(text, exit_code=exit_code, signal_name=signal_name)
    assert failure is not None and failure.kind == expected


@pytest.mark.parametrize(
    ("line", "step"),
    [
        ("step 2 loss: nan", 2),
        ("step=30 loss=nan", 30),
        ("Loss is NaN, stopping training", None),
        ("[rank0]: step 3 loss became inf", 3),
        ("{'loss': nan, 'grad_norm': nan, 'learning_rate': 5e-05, 'epoch': 0.5}", None),
        ("step 40: train loss nan, val loss nan", 40),
        ("RuntimeError: Function 'MseLossBackward0' returned nan values in its 0th output.", None),
    ],
)
def test_classify_nan(line: str, step: int | None) -> None:
    failure = classify_failure(f"step 1: train loss 0.5\n{line}\n")
    assert failure is not None and failure.kind == "nan"
    assert failure.step == step
    assert failure.message == line.replace("[rank0]: ", "")


def test_read_log_nan_failure_step(tmp_path: Path) -> None:
    p = write(
        tmp_path, "step 10: train loss 0.5\nstep 20: train loss nan\nstep 30: train loss nan\n"
    )
    facts = read_log(p)
    assert facts is not None and facts.failure is not None
    assert (facts.failure.kind, facts.failure.step) == ("nan", 20)
    assert [math.isnan(pt.value) for pt in facts.metrics["train_loss"]] == [False, True, True]


@pytest.mark.parametrize(
    ("exit_code", "signal_name", "expected"),
    [
        (None, "SIGTERM", Failure("signal", "SIGTERM")),
        (-15, None, Failure("signal", "SIGTERM")),
        (130, None, Failure("signal", "SIGINT")),
        (1, None, Failure("exception", "exited with code 1")),
        (0, None, None),
        (None, None, None),
    ],
)
def test_classify_exit_status(
    exit_code: int | None, signal_name: str | None, expected: Failure | None
) -> None:
    assert (
        classify_failure("step 1: loss 0.5\ndone\n", exit_code=exit_code, signal_name=signal_name)
        == expected
    )


def test_rules_order_first_match_wins() -> None:
    # An OOM inside a traceback is cuda_oom, not a plain exception.
    assert classify_failure(CUDA_OOM_TRACEBACK).kind == "cuda_oom"
    # The time limit beats the traceback SLURM's SIGTERM may cause.
    text = (
        'Traceback (most recent call last):\n  File "t.py", line 1\nOSError: x\n'
        + SLURM_TIMEOUT
        + "\n"
    )
    assert classify_failure(text).kind == "timeout"
    # A non-finite loss beats the exception the script raises about it.
    text = (
        'step 5: loss nan\nTraceback (most recent call last):\n  File "t.py", line 9, in <module>\n'
        "ValueError: loss is not finite\n"
    )
    assert classify_failure(text).kind == "nan"
    assert classify_failure("all good\nstep 3: loss 0.1\n") is None
