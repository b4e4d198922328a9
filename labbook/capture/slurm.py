"""Slurm: which job, array task and restart a run is, from its process environment.

Slurm sets these in every job's environment (``sbatch``, ``srun``, ``salloc``);
``labbook run`` reads its own, ``labbook watch`` the writer process's (the SLURM_*
variables are among those :mod:`labbook.capture.env` keeps). They become columns of
``runs`` (``slurm_cluster``, ``slurm_job``, …; ``--where slurm.job=…``) and identify a
run across a requeue: the requeued job has the same cluster, job id (array job and
task id) and a higher ``SLURM_RESTART_COUNT``, and records into the same run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: Environment variable -> column of ``runs``.
VARS = {
    "SLURM_CLUSTER_NAME": "slurm_cluster",
    "SLURM_JOB_ID": "slurm_job",
    "SLURM_ARRAY_JOB_ID": "slurm_array_job",
    "SLURM_ARRAY_TASK_ID": "slurm_array_task",
    "SLURM_RESTART_COUNT": "slurm_restarts",
    "SLURM_JOB_NODELIST": "slurm_nodes",
    "SLURM_JOB_PARTITION": "slurm_partition",
    "SLURM_JOB_ACCOUNT": "slurm_account",
}
#: Older Slurm and ``srun`` outside a batch job set these instead.
FALLBACKS = {"SLURM_JOBID": "SLURM_JOB_ID", "SLURM_NODELIST": "SLURM_JOB_NODELIST"}

#: The ``--where`` names (``slurm.job``) of the columns.
WHERE_NAMES = {col.removeprefix("slurm_"): col for col in VARS.values()}
WHERE_NAMES["task"] = "slurm_array_task"
WHERE_NAMES["array"] = "slurm_array_job"


@dataclass(frozen=True)
class SlurmJob:
    job: str
    cluster: str | None = None
    array_job: str | None = None
    array_task: str | None = None
    restarts: int = 0
    nodes: str | None = None
    partition: str | None = None
    account: str | None = None

    def columns(self) -> dict[str, Any]:
        """The ``runs`` columns."""
        return {
            "slurm_cluster": self.cluster,
            "slurm_job": self.job,
            "slurm_array_job": self.array_job,
            "slurm_array_task": self.array_task,
            "slurm_restarts": self.restarts,
            "slurm_nodes": self.nodes,
            "slurm_partition": self.partition,
            "slurm_account": self.account,
        }

    def record(self) -> dict[str, Any]:
        """The ``slurm`` object of a run's ``--json``."""
        return {
            "cluster": self.cluster,
            "job": self.job,
            "array_job": self.array_job,
            "array_task": self.array_task,
            "restarts": self.restarts,
            "nodes": self.nodes,
            "partition": self.partition,
            "account": self.account,
        }

    @property
    def key(self) -> str:
        """The job across requeues: ``cluster:job`` or ``cluster:arrayjob_task``."""
        if self.array_job and self.array_task is not None:
            return f"{self.cluster or ''}:{self.array_job}_{self.array_task}"
        return f"{self.cluster or ''}:{self.job}"

    def describe(self) -> str:
        """``job 1234_7 on cluster (partition gpu, account lab, nodes gpu[01-02], restart 1)``."""
        job = f"{self.array_job}_{self.array_task}" if self.array_job else self.job
        out = f"job {job}"
        if self.cluster:
            out += f" on {self.cluster}"
        extra = [
            f"{k} {v}"
            for k, v in (
                ("partition", self.partition),
                ("account", self.account),
                ("nodes", self.nodes),
            )
            if v
        ]
        if self.restarts:
            extra.append(f"restart {self.restarts}")
        return out + (f" ({', '.join(extra)})" if extra else "")


def _clean(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value or None


def from_environ(environ: Mapping[str, str] | None) -> SlurmJob | None:
    """The job of a process environment (its SLURM_* variables), or None outside Slurm."""
    if not environ:
        return None
    env = dict(environ)
    for old, new in FALLBACKS.items():
        if new not in env and old in env:
            env[new] = env[old]
    job = _clean(env.get("SLURM_JOB_ID"))
    if job is None:
        return None
    try:
        restarts = int(env.get("SLURM_RESTART_COUNT") or 0)
    except ValueError:
        restarts = 0
    return SlurmJob(
        job=job,
        cluster=_clean(env.get("SLURM_CLUSTER_NAME")),
        array_job=_clean(env.get("SLURM_ARRAY_JOB_ID")),
        array_task=_clean(env.get("SLURM_ARRAY_TASK_ID")),
        restarts=max(restarts, 0),
        nodes=_clean(env.get("SLURM_JOB_NODELIST")),
        partition=_clean(env.get("SLURM_JOB_PARTITION")),
        account=_clean(env.get("SLURM_JOB_ACCOUNT")),
    )


def from_record(rec: Mapping[str, Any] | None) -> SlurmJob | None:
    """The job of a run's ``slurm`` object (:meth:`SlurmJob.record`), or None."""
    if not rec or not rec.get("job"):
        return None
    return SlurmJob(**{k: rec.get(k) for k in SlurmJob.__dataclass_fields__})  # type: ignore[arg-type]


def from_row(row: Mapping[str, Any]) -> SlurmJob | None:
    """The job recorded in a ``runs`` row, or None."""
    if not row.get("slurm_job"):
        return None
    return SlurmJob(
        job=str(row["slurm_job"]),
        cluster=row.get("slurm_cluster"),
        array_job=row.get("slurm_array_job"),
        array_task=row.get("slurm_array_task"),
        restarts=int(row.get("slurm_restarts") or 0),
        nodes=row.get("slurm_nodes"),
        partition=row.get("slurm_partition"),
        account=row.get("slurm_account"),
    )


def launch_source_key(
    job: SlurmJob, argv: Sequence[str], cwd: str, environ: Mapping[str, str] | None = None
) -> str:
    """The source key of ``labbook run`` inside a job: the same command in the same
    directory of the same job (array task), job step and task (``SLURM_STEP_ID``,
    ``SLURM_PROCID``: srun's ranks) is one run across requeues. Several runs of it in
    one start of the job are told apart by ``labbook run`` (see
    :func:`labbook.sources.launch.slurm_run`)."""
    parts = [cwd, *argv]
    for var in ("SLURM_STEP_ID", "SLURM_PROCID"):
        value = (environ or {}).get(var)
        if value:
            parts.append(f"{var}={value}")
    digest = hashlib.sha1("\0".join(parts).encode("utf-8", "surrogateescape")).hexdigest()
    return f"slurm:{job.key}:{digest[:12]}"
