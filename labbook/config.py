"""labbook's configuration file, ``config.toml`` in :func:`labbook.paths.config_dir`.

One loader for every section (``[watch]``, ``[remote]``, …): a missing file is an
empty configuration; a file that cannot be read or parsed is one warning naming it,
and the defaults apply. The sections' meanings live with their users
(``labbook.sources.watch.config``, ``labbook.store.remote.config``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from labbook.paths import config_dir
from labbook.warn import warn

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10: the tomli backport
    import tomli as tomllib


def config_file() -> Path:
    """``config_dir()/config.toml`` (``$XDG_CONFIG_HOME`` aware)."""
    return config_dir() / "config.toml"


def read_config(path: Path | None = None) -> dict[str, Any]:
    """The whole file as a dict; ``{}`` if it is missing or unreadable (one warning)."""
    path = path or config_file()
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        warn(path, f"cannot read config ({exc}); using defaults")
        return {}


def read_section(name: str, path: Path | None = None) -> dict[str, Any]:
    """One ``[name]`` table of the config file; ``{}`` if absent or not a table."""
    section = read_config(path).get(name, {})
    return section if isinstance(section, dict) else {}
