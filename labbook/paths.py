"""Where labbook keeps its files."""

from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    """``$XDG_DATA_HOME/labbook``, by default ``~/.local/share/labbook``."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "share"
    )
    return Path(base) / "labbook"


def config_dir() -> Path:
    """``$XDG_CONFIG_HOME/labbook``, by default ``~/.config/labbook``."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "labbook"


def default_db_path() -> Path:
    """The database path: ``LABBOOK_DB`` if set, else ``data_dir()/labbook.db``."""
    env = os.environ.get("LABBOOK_DB")
    if env:
        return Path(env).expanduser()
    return data_dir() / "labbook.db"
