"""Where labbook keeps its files."""

from __future__ import annotations

import os
from pathlib import Path


def data_home() -> Path:
    """``$XDG_DATA_HOME``, by default ``~/.local/share``."""
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")


def config_home() -> Path:
    """``$XDG_CONFIG_HOME``, by default ``~/.config`` (systemd's user units live below it too)."""
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")


def data_dir() -> Path:
    """``$XDG_DATA_HOME/labbook``, by default ``~/.local/share/labbook``."""
    return data_home() / "labbook"


def config_dir() -> Path:
    """``$XDG_CONFIG_HOME/labbook``, by default ``~/.config/labbook``."""
    return config_home() / "labbook"


def default_db_path() -> Path:
    """The database path: ``LABBOOK_DB`` if set, else ``data_dir()/labbook.db``."""
    env = os.environ.get("LABBOOK_DB")
    if env:
        return Path(env).expanduser()
    return data_dir() / "labbook.db"
