"""The facts labbook records about a run, independent of where they came from.

Recognisers, capture and the importer produce these plain dataclasses; the store
persists them; views read them back. Nothing here does I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, TypedDict

#: Statuses a run can have, in the order a run usually moves through them.
STATUSES = ("running", "finished", "failed", "diverged", "killed", "unknown")

#: Kinds of failure (``Failure.kind``).
FAILURE_KINDS = ("cuda_oom", "oom_killed", "nan", "exception", "signal", "timeout")

#: Frameworks a run can come from (``RunFacts.framework``).
FRAMEWORKS = (
    "lightning",
    "hf-trainer",
    "hydra",
    "tensorboard",
    "wandb",
    "mlflow",
    "generic",
    "command",
)


@dataclass
class Failure:
    """Why a run did not finish: a kind from FAILURE_KINDS and a one-line message."""

    kind: str
    message: str
    step: int | None = None


@dataclass
class Seed:
    """The seed a run used and where it was found.

    ``value is None`` means *not set* (every place that could hold a seed was read
    and none did), unless ``known`` is False: *unknown*, a file that could hold it
    could not be read (unreadable, corrupt, or a log torn before its config). An
    unknown seed has no value and no source; :meth:`unknown` makes one.
    """

    value: Any = None
    source: str | None = None
    known: bool = True

    @classmethod
    def unknown(cls) -> Seed:
        return cls(value=None, source=None, known=False)


@dataclass
class Point:
    """One scalar observation. ``value`` may be NaN or infinite."""

    step: int
    value: float
    wall_time: float | None = None


@dataclass
class GitState:
    root: str
    commit: str | None = None
    branch: str | None = None
    remote: str | None = None
    dirty: bool = False
    diff: str = ""
    diff_truncated: bool = False
    untracked: list[str] = field(default_factory=list)
    #: path -> contents of small untracked text files (within the size budget)
    untracked_contents: dict[str, str] = field(default_factory=dict)
    untracked_truncated: bool = False
    shallow: bool = False
    detached: bool = False


@dataclass
class EnvInfo:
    """The environment a run ran in.

    ``source`` says where it came from: ``"framework:wandb-metadata"`` when a
    framework recorded it, ``"process"`` when read from the run's own process, or
    ``"importer"`` when it describes the interpreter that imported the run (a guess,
    and marked as one).
    """

    source: str
    python: str | None = None
    platform: str | None = None
    packages: dict[str, str] = field(default_factory=dict)
    cuda: str | None = None
    gpus: list[str] = field(default_factory=list)
    vars: dict[str, str] = field(default_factory=dict)


@dataclass
class RunFacts:
    """Everything a recogniser (plus capture) learned about one run."""

    path: str
    framework: str
    #: Key that identifies the run's source across re-imports (abs path, plus
    #: ``#inner-id`` when one file holds several runs, as an MLflow database does).
    source_key: str
    name: str | None = None
    status: str = "unknown"
    #: Why the run has its status ("reached epochs=5", "exit code 1", …), in one line.
    status_reason: str | None = None
    failure: Failure | None = None
    started_at: float | None = None  # unix seconds, UTC
    ended_at: float | None = None
    command: list[str] | None = None
    pid: int | None = None
    cwd: str | None = None
    seed: Seed = field(default_factory=Seed)
    config: dict[str, Any] = field(default_factory=dict)  # flattened, dotted keys
    #: tag -> points in step order (may be long; the store summarises and downsamples)
    metrics: dict[str, list[Point]] = field(default_factory=dict)
    #: tag -> where its points came from: "output" (lines the run printed: the
    #: output of ``labbook run``, a console log); tags not named here: "file".
    metric_sources: dict[str, str] = field(default_factory=dict)
    git: GitState | None = None
    env: EnvInfo | None = None
    tags: list[str] = field(default_factory=list)
    #: Free text from logs kept for failure search and the TUI (tail of the log).
    log_tail: str | None = None
    #: Whether a framework end marker says the run completed.
    end_marker: bool = False
    #: Whether a file ended mid-record (a sign the writer died).
    truncated: bool = False
    #: (first, last) value of an ``epoch`` index column of a metrics file, which
    #: is not kept as a metric: how far the run got (status evidence).
    epochs_seen: tuple[float, float] | None = None
    host: str | None = None
    user: str | None = None
    #: Files this run was read from (absolute paths), for tailing and the daemon.
    files: list[str] = field(default_factory=list)
    #: Fingerprints of data that config values point at: config key -> size, file
    #: count, newest mtime and a sampled content hash (labbook.capture.data).
    data: dict[str, Any] = field(default_factory=dict)
    #: The sweep the run was launched in (labbook.store.groups): kind ("hydra",
    #: "wandb", "mlflow", "replicate") and id (the multirun dir, the wandb sweep id,
    #: the MLflow parent run id, the id ``labbook replicate`` gave); None: none.
    sweep_kind: str | None = None
    sweep_id: str | None = None


def is_finite(value: float) -> bool:
    return not (math.isnan(value) or math.isinf(value))


def flatten(obj: Any, prefix: str = "", out: dict[str, Any] | None = None) -> dict[str, Any]:
    """Flatten nested dicts into dotted keys; lists and scalars are kept as values.

    >>> flatten({"optimizer": {"lr": 0.1}, "layers": [1, 2]})
    {'optimizer.lr': 0.1, 'layers': [1, 2]}
    """
    if out is None:
        out = {}
    if isinstance(obj, dict):
        if not obj and prefix:
            out[prefix] = {}
        for key, value in obj.items():
            full = f"{prefix}.{key}" if prefix else str(key)
            flatten(value, full, out)
    elif prefix:
        out[prefix] = obj
    return out


# -- the --json record ---------------------------------------------------------------------
# What ``labbook show RUN --json`` prints (README, "The --json contract"), as
# ``Store.record`` builds it and render, analysis and the TUI read it. Fields are
# added over time, never renamed or removed.


class FailureRecord(TypedDict):
    kind: str
    message: str | None
    step: int | None


class _SeedKnown(TypedDict, total=False):
    #: False: a file that could hold the seed could not be read (the value is unknown)
    known: bool


class SeedRecord(_SeedKnown):
    #: ``None`` when the run set no seed that labbook could find
    value: Any
    #: where it was found: ``config:KEY``, ``argv:--seed``, ``env:PL_GLOBAL_SEED``, …
    source: str | None


class MetricSummary(TypedDict):
    #: final value; not finite: the strings ``"nan"``, ``"inf"``, ``"-inf"`` (JSON has no NaN)
    last: float | str | None
    min: float | None
    max: float | None
    step: int | None
    count: int
    nonfinite_step: int | None
    #: "file" (a structured metrics file) or "output" (printed lines: the output of
    #: ``labbook run``, a console log); None for metrics recorded before schema 10
    source: str | None


class NoteRecord(TypedDict):
    id: int  # what `labbook note --delete ID` takes
    at: str
    kind: str
    text: str
    author: str | None


class GroupRecord(TypedDict):
    """A run's seed group or sweep in ``--json`` (labbook.store.groups)."""

    #: "seed" for the seed group; "hydra", "wandb", "mlflow", "replicate" for a sweep
    kind: str
    #: ``g…`` (a seed group) or ``s…`` (a sweep): what ``ls --group ID``/``--sweep ID`` take
    id: str
    #: how many runs it has (the run included)
    size: int


class _RunRecordGroups(TypedDict, total=False):
    #: the run's seed group (every run has one; size 1: no seed peer)
    group: GroupRecord
    #: the sweep the run was launched in; None: none
    sweep: GroupRecord | None


class _RunRecordSlurm(TypedDict, total=False):
    #: cluster, job, array_job, array_task, restarts, nodes, partition, account
    #: (labbook.capture.slurm); None: not a Slurm job
    slurm: dict[str, Any] | None


class RunRecord(_RunRecordGroups, _RunRecordSlurm):
    """One run as the ``--json`` contract has it (``Store.record``, ``labbook show --json``)."""

    id: str
    name: str | None
    path: str | None
    host: str | None
    user: str | None
    framework: str | None
    status: str
    #: why the run has its status ("reached epochs=5", "exit code 1", …); None: not known
    status_reason: str | None
    failure: FailureRecord | None
    started_at: str | None
    ended_at: str | None
    command: list[str] | None
    pid: int | None
    seed: SeedRecord
    #: flattened with dotted keys; values keep their JSON types
    config: dict[str, Any]
    metrics: dict[str, MetricSummary]
    #: root, commit, branch, remote, dirty, untracked (heavy: diff and untracked contents)
    git: dict[str, Any] | None
    #: source, python, platform, packages (heavy only), cuda, gpus, vars, …
    env: dict[str, Any] | None
    gpu: dict[str, Any] | None
    #: config key -> fingerprint of the file or directory it named
    data: dict[str, Any]
    tags: list[str]
    notes: list[NoteRecord]
    missing: bool
    #: when ``labbook archive`` archived it (out of default listings); None: not archived
    archived_at: str | None
    created_at: str
    updated_at: str
