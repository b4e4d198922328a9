"""Fuzz targets: every reader, the live tails, and each recogniser on a fuzzed run directory.

Each target draws inputs from tests/fuzz/inputs.py and runs the reader's check
from tests/fuzz/checks.py (no exception but one-line warnings; storable values;
tail reads agree with full reads). Inputs that once failed are kept under
tests/fixtures/fuzz/<target>/ and are run first, as explicit examples, by the
target (and by test_fuzz_regressions.py, without hypothesis).
"""

from __future__ import annotations

from hypothesis import strategies as st

from tests.fuzz import checks, inputs
from tests.fuzz.harness import target


def kept(name: str) -> list[object]:
    """The regression inputs kept for target ``name``: files, or run directories as trees."""
    d = checks.FIXTURE_ROOT / name
    if not d.is_dir():
        return []
    out: list[object] = []
    for p in sorted(d.iterdir()):
        if p.is_dir():
            out.append(checks.tree_from_dir(p))
        elif p.suffix == ".bin":
            out.append(p.read_bytes())
    return out


def _tail_input(files: st.SearchStrategy[bytes]) -> st.SearchStrategy[tuple[bytes, list[int]]]:
    return files.flatmap(
        lambda b: st.tuples(st.just(b), st.lists(st.integers(0, len(b)), min_size=1, max_size=3))
    )


def _with_cuts(check):  # (bytes, cuts) inputs; kept fixtures are plain bytes (every cut tried)
    def run(data: bytes | tuple[bytes, list[int]]) -> None:
        if isinstance(data, tuple):
            check(data[0], data[1])
        else:
            check(data)

    run.__doc__ = check.__doc__
    return run


test_fuzz_tfevents = target(
    "tfevents",
    _tail_input(inputs.event_file()),
    _with_cuts(checks.tfevents),
    weight=4.0,
    examples=kept("tfevents"),
)
test_fuzz_tfevents_tail = target(
    "tfevents_tail",
    _tail_input(inputs.event_file()),
    _with_cuts(checks.tfevents_tail),
    weight=2.5,
    examples=kept("tfevents_tail"),
)
test_fuzz_wandb = target(
    "wandb", inputs.wandb_file(), checks.wandb_log, weight=2.5, examples=kept("wandb")
)
test_fuzz_json_config = target(
    "json_config",
    inputs.json_document(),
    checks.CHECKS["json_config"],
    weight=3.5,
    examples=kept("json_config"),
)
test_fuzz_yaml_config = target(
    "yaml_config",
    inputs.yaml_document(),
    checks.CHECKS["yaml_config"],
    weight=5.0,
    examples=kept("yaml_config"),
)
test_fuzz_toml_config = target(
    "toml_config",
    inputs.toml_document(),
    checks.CHECKS["toml_config"],
    weight=5.0,
    examples=kept("toml_config"),
)
test_fuzz_json_metrics = target(
    "json_metrics",
    inputs.json_document(),
    checks.json_metrics,
    weight=3.0,
    examples=kept("json_metrics"),
)


def _lines(name: str):
    def run(data: bytes | tuple[bytes, list[int]]) -> None:
        if isinstance(data, tuple):
            checks.line_file(data[0], name, data[1])
        else:
            checks.line_file(data, name)

    return run


test_fuzz_jsonl = target(
    "jsonl",
    _tail_input(inputs.jsonl_document()),
    _lines("metrics.jsonl"),
    weight=1.5,
    examples=kept("jsonl"),
)
test_fuzz_csv = target(
    "csv",
    _tail_input(inputs.csv_document()),
    _lines("metrics.csv"),
    weight=3.5,
    examples=kept("csv"),
)
test_fuzz_log = target(
    "log", inputs.log_document(), checks.log_file, weight=6.0, examples=kept("log")
)


def _recogniser_target(layout: str, weight: float):
    return target(
        f"recogniser_{layout}",
        inputs.run_tree(layout),
        checks.run_dir,
        weight=weight,
        examples=kept(f"recogniser_{layout}"),
    )


test_fuzz_recogniser_generic = _recogniser_target("generic", 2.5)
test_fuzz_recogniser_hf_trainer = _recogniser_target("hf_trainer", 1.0)
test_fuzz_recogniser_lightning = _recogniser_target("lightning", 2.0)
test_fuzz_recogniser_hydra = _recogniser_target("hydra", 2.0)
test_fuzz_recogniser_wandb = _recogniser_target("wandb", 0.8)
test_fuzz_recogniser_mlflow = _recogniser_target("mlflow", 1.5)
test_fuzz_recogniser_mlflow_db = _recogniser_target("mlflow_db", 1.0)
test_fuzz_recogniser_tensorboard = _recogniser_target("tensorboard", 1.8)
