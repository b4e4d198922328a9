"""Connection strings in both of libpq's forms never show their password: not in what
``remote init`` prints or writes, not in an error line; a malformed one is one line."""

from __future__ import annotations

import sys
from pathlib import Path

from labbook.store.remote.config import describe_url, scrub, strip_password, url_has_password
from tests.conftest import run_cli

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the backport labbook depends on there
    import tomli as tomllib

SECRET = "s3cretPw-zz9"


def test_both_forms_and_malformed_ones_lose_their_password() -> None:
    cases = {
        f"postgresql://alice:{SECRET}@db.lab:5433/lab?sslmode=require": "db.lab:5433/lab",
        f"postgresql://alice@db.lab/lab?password={SECRET}": "db.lab:5432/lab",
        f"host=db.lab port=5433 user=alice password={SECRET} dbname=lab": "db.lab:5433/lab",
        f"host=db.lab password='{SECRET} x\\'y' dbname=lab": "db.lab:5432/lab",
        f"postgresql://alice:{SECRET}@[::1/lab": "the lab's notebook (an unreadable URL)",
        f"password {SECRET}": "the lab's notebook (an unreadable connection string)",
    }
    for url, where in cases.items():
        assert url_has_password(url), url
        assert SECRET not in strip_password(url), url
        assert describe_url(url) == where
        assert SECRET not in scrub(f'missing "=" after "{SECRET}" in it', url)
    assert not url_has_password("postgresql://alice@db.lab/lab")
    assert strip_password("host=db.lab dbname=lab") == "host=db.lab dbname=lab"


def test_remote_init_with_a_keyword_string_prints_and_writes_no_password(
    pg_server: object, pg_url: str, tmp_path: Path
) -> None:
    from urllib.parse import urlsplit

    parts = urlsplit(pg_url)
    conninfo = (
        f"host={parts.hostname} port={parts.port} user={parts.username}"
        f" password={SECRET} dbname={parts.path.lstrip('/')}"
    )
    env = {"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    res = run_cli("remote", "init", conninfo, "--write-config", env=env)
    assert res.returncode == 0, res.stderr
    assert SECRET not in res.stdout + res.stderr
    assert "the password was left out" in res.stderr
    written = (tmp_path / "cfg" / "labbook" / "config.toml").read_text()
    assert SECRET not in written
    url = tomllib.loads(written)["remote"]["url"]
    assert "password" not in url and f"port={parts.port}" in url
    # the written string connects (trust auth here): the notebook answers
    res = run_cli("remote", "status", env=env)
    assert res.returncode == 0, res.stderr


def test_a_malformed_url_is_one_line_without_its_password(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    for url in (f"postgresql://u:{SECRET}@[::1/db", f"password {SECRET}"):
        res = run_cli("remote", "init", url, env=env)
        assert res.returncode != 0
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("labbook: error: "), res.stderr
        assert SECRET not in res.stderr + res.stdout
        res = run_cli("remote", "push", env={**env, "LABBOOK_REMOTE_URL": url})
        assert "Traceback" not in res.stderr and SECRET not in res.stderr + res.stdout
