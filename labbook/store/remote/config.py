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

import json
import os
import re
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
        # a TOML basic string is escaped as JSON escapes (a keyword/value string has quotes)
        return f"[remote]\nurl = {json.dumps(strip_password(self.url or ''), ensure_ascii=False)}\n"


_URL_SCHEMES = ("postgresql://", "postgres://")
#: ``user:password@`` in a URL, whatever else is wrong with it.
_URL_PASSWORD = re.compile(r"(://[^:/@?#]*):[^@/?#]*@")
#: ``password=VALUE`` in a URL's query or a keyword/value string (quoted or not).
_KV_PASSWORD = re.compile(r"(?i)(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]*)")
#: In a string that is neither form: whatever follows the word ``password``.
_LOOSE_PASSWORD = re.compile(r"(?i)(\bpassword\b[\s=:]*)('(?:[^'\\]|\\.)*'|\S+)")


def _kv_pairs(conninfo: str) -> dict[str, str] | None:
    """A keyword/value connection string (``host=h dbname=d``) as a dict, or None when it
    is not one (libpq's rules: values may be single-quoted with backslash escapes)."""
    out: dict[str, str] = {}
    i, n = 0, len(conninfo)
    while i < n:
        while i < n and conninfo[i].isspace():
            i += 1
        if i >= n:
            break
        j = conninfo.find("=", i)
        if j < 0:
            return None
        key = conninfo[i:j].strip()
        if not key or any(c.isspace() for c in key):
            return None
        i = j + 1
        while i < n and conninfo[i].isspace():
            i += 1
        value = []
        if i < n and conninfo[i] == "'":
            i += 1
            while i < n and conninfo[i] != "'":
                if conninfo[i] == "\\" and i + 1 < n:
                    i += 1
                value.append(conninfo[i])
                i += 1
            i += 1  # the closing quote
        else:
            while i < n and not conninfo[i].isspace():
                value.append(conninfo[i])
                i += 1
        out[key.lower()] = "".join(value)
    return out


def _split(url: str) -> Any:
    """``urlsplit`` of a URL, or None when it cannot be read (an unclosed ``[``)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a bad port)
    except ValueError:
        return None
    return parts


def url_has_password(url: str) -> bool:
    """Whether a connection string holds a password: ``postgresql://user:pw@host/db``,
    ``?password=``, or ``password=`` in a keyword/value string."""
    if url.startswith(_URL_SCHEMES):
        parts = _split(url)
        if parts is not None and parts.password:
            return True
        return bool(_URL_PASSWORD.search(url) or _KV_PASSWORD.search(url))
    pairs = _kv_pairs(url)
    if pairs is not None:
        return "password" in pairs
    return bool(_LOOSE_PASSWORD.search(url))


def strip_password(url: str) -> str:
    """The connection string without its password (for printing and for config.toml),
    in either form, and even when it is malformed."""
    if url.startswith(_URL_SCHEMES):
        parts = _split(url)
        if parts is None:
            return _KV_PASSWORD.sub(r"\1<redacted>", _URL_PASSWORD.sub(r"\1@", url))
        netloc = parts.netloc
        if parts.password is not None:
            userinfo, _, hostport = netloc.rpartition("@")
            user = userinfo.split(":", 1)[0]
            netloc = f"{user}@{hostport}" if user else hostport
        query = "&".join(
            kv for kv in parts.query.split("&") if kv and kv.split("=", 1)[0].lower() != "password"
        )
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    pairs = _kv_pairs(url)
    if pairs is None:
        return _LOOSE_PASSWORD.sub(r"\1<redacted>", url)
    return " ".join(f"{k}={_kv_quote(v)}" for k, v in pairs.items() if k != "password")


def _kv_quote(value: str) -> str:
    if value and not any(c.isspace() or c in "'\\" for c in value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def scrub(text: str, url: str) -> str:
    """``text`` (an error message) without the password ``url`` holds, if it shows it."""
    secrets = set()
    parts = _split(url) if url.startswith(_URL_SCHEMES) else None
    if parts is not None and parts.password:
        secrets.add(parts.password)
    pairs = None if url.startswith(_URL_SCHEMES) else _kv_pairs(url)
    if pairs and pairs.get("password"):
        secrets.add(pairs["password"])
    for m in _KV_PASSWORD.finditer(url):
        secrets.add(m.group(2).strip("'"))
    if pairs is None and parts is None:  # neither form: whatever follows "password"
        secrets.update(m.group(2).strip("'") for m in _LOOSE_PASSWORD.finditer(url))
    for m in _URL_PASSWORD.finditer(url):
        secrets.add(m.group(0)[len(m.group(1)) + 1 : -1])
    # a quoted password with spaces may be quoted back in pieces
    secrets |= {part for s in secrets for part in s.split() if len(part) >= 4}
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, "<redacted>")
    return text


def describe_url(url: str) -> str:
    """``HOST:PORT/DB`` for messages (never the password), from either form."""
    if not url.startswith(_URL_SCHEMES):
        pairs = _kv_pairs(url)
        if pairs is None:
            return "the lab's notebook (an unreadable connection string)"
        host = pairs.get("host") or pairs.get("hostaddr") or "localhost"
        return f"{host}:{pairs.get('port') or 5432}/{pairs.get('dbname', '')}"
    parts = _split(url)
    if parts is None:
        return "the lab's notebook (an unreadable URL)"
    port = parts.port
    host = parts.hostname or "localhost"
    query: dict[str, Any] = dict(kv.split("=", 1) for kv in parts.query.split("&") if "=" in kv)
    if not parts.hostname and query.get("host"):
        host = str(query["host"])
    db = parts.path.lstrip("/") or str(query.get("dbname", ""))
    return f"{host}:{port or 5432}/{db}"
