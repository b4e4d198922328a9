"""``[remote]`` in config.toml: where the lab's notebook is and how to use it.

::

    [remote]
    url = "postgresql://db.lab.example/labbook"   # no password: ~/.pgpass or PGPASSFILE
    push = true                # push this node's runs (labbook watch, labbook remote push)
    read = "local"             # or "remote": ls/show/search/... read the lab's notebook
    push_interval = 10         # seconds between push rounds of labbook watch
    curves_interval = 60       # seconds between pushes of curves (series) of live runs
    connect_timeout = 3        # seconds
    statement_timeout = 60     # seconds one push batch may wait for the server's answer
    spool_dir = "~/.local/share/labbook/spool"

Environment overrides: ``LABBOOK_REMOTE_URL`` (the url), ``LABBOOK_REMOTE=1`` (read
remote; ``0`` reads local), ``LABBOOK_SPOOL`` (the spool directory).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from labbook.config import config_file, read_section
from labbook.paths import data_home
from labbook.warn import warn

ReadFrom = Literal["local", "remote"]


def default_spool_dir() -> Path:
    """``~/.local/share/labbook/spool``: under the home, which a cluster shares over NFS."""
    return data_home() / "labbook" / "spool"


@dataclass
class RemoteConfig:
    url: str | None = None
    push: bool = True
    read: ReadFrom = "local"
    push_interval_s: float = 10.0
    curves_interval_s: float = 60.0
    connect_timeout_s: float = 3.0
    statement_timeout_s: float = 60.0  # one remote exchange (a push batch); faults' watchdog
    spool_dir: Path = field(default_factory=default_spool_dir)

    @property
    def enabled(self) -> bool:
        """A remote is configured."""
        return bool(self.url)

    @classmethod
    def load(
        cls, env: Mapping[str, str] | None = None, *, path: Path | None = None
    ) -> RemoteConfig:
        """The ``[remote]`` section of config.toml with the environment's overrides."""
        env = os.environ if env is None else env
        section = read_section("remote", path)
        cfg = cls()
        where = path or config_file()

        url = section.get("url")
        if isinstance(url, str) and url.strip():
            cfg.url = url.strip()
        elif url is not None:
            warn(where, "[remote] url is not a string; ignored")
        push = section.get("push", True)
        if isinstance(push, bool):
            cfg.push = push
        read = section.get("read", "local")
        if read in ("local", "remote"):
            cfg.read = read
        else:
            warn(where, f"[remote] read = {read!r}: expected 'local' or 'remote'; reading local")
        for key, attr in (
            ("push_interval", "push_interval_s"),
            ("curves_interval", "curves_interval_s"),
            ("connect_timeout", "connect_timeout_s"),
            ("statement_timeout", "statement_timeout_s"),
        ):
            value = section.get(key, section.get(attr))
            if value is None:
                continue
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
                setattr(cfg, attr, float(value))
            else:
                warn(where, f"[remote] {key} = {value!r}: expected a positive number; ignored")
        spool = section.get("spool_dir")
        if isinstance(spool, str) and spool:
            cfg.spool_dir = Path(os.path.expanduser(spool))

        if env.get("LABBOOK_REMOTE_URL"):
            cfg.url = env["LABBOOK_REMOTE_URL"]
        flag = env.get("LABBOOK_REMOTE")
        if flag is not None and flag != "":
            cfg.read = "local" if flag.lower() in ("0", "false", "no", "off", "local") else "remote"
        if env.get("LABBOOK_SPOOL"):
            cfg.spool_dir = Path(os.path.expanduser(env["LABBOOK_SPOOL"]))
        return cfg

    def toml_block(self) -> str:
        """The ``[remote]`` block for config.toml (the url without any password)."""
        return f'[remote]\nurl = "{strip_password(self.url or "")}"\n'


def url_has_password(url: str) -> bool:
    """Whether a ``postgresql://user:password@host/db`` URL (or ``password=`` query) holds one."""
    parts = urlsplit(url)
    if parts.password:
        return True
    return any(kv.split("=", 1)[0].lower() == "password" for kv in parts.query.split("&") if kv)


def strip_password(url: str) -> str:
    """The URL without its password (for printing and for config.toml)."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}@{hostport}" if user else hostport
    query = "&".join(
        kv for kv in parts.query.split("&") if kv and kv.split("=", 1)[0].lower() != "password"
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def describe_url(url: str) -> str:
    """``HOST:PORT/DB`` for messages (never the password)."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    host = parts.hostname or "localhost"
    query: dict[str, Any] = dict(kv.split("=", 1) for kv in parts.query.split("&") if "=" in kv)
    if not parts.hostname and query.get("host"):
        host = str(query["host"])
    db = parts.path.lstrip("/") or str(query.get("dbname", ""))
    return f"{host}:{port or 5432}/{db}"
