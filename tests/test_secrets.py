"""Secrets never stored: one redaction (labbook.capture.redact) on every path into the store.

The end-to-end tests plant secrets everywhere a run can carry them -- command-line
flags, environment, printed output, a run directory's config and log, a patch,
untracked files -- record the runs through the real CLI (``labbook run`` and
``labbook import``), then grep the whole database: the raw bytes of the file and
of its ``-wal`` (kept whole by a reader that holds its snapshot), every column of
every table, and every blob decompressed.
"""

from __future__ import annotations

import contextlib
import sqlite3
import sys
import zlib
from pathlib import Path

import pytest

from labbook.capture.redact import (
    REDACTED,
    is_secret_file,
    redact_argv,
    redact_config,
    redact_facts,
    redact_patch,
    redact_text,
)
from labbook.model import EnvInfo, Failure, GitState, RunFacts
from labbook.store import Store
from tests.conftest import git, run_cli

# --- every token format ---------------------------------------------------------------

JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJsYWJib29rLXRlc3QtdXNlciJ9"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
TOKENS = {
    "huggingface": "hf_" + "AbCdEfGhIjKlMnOpQrStUv12",
    "openai": "sk-" + "proj-AbCdEfGhIjKlMnOpQrStUv12",
    "anthropic": "sk-" + "ant-api03-AbCdEfGhIjKlMnOpQrSt",
    "stripe": "sk_" + "live_AbCdEfGhIjKlMnOp12",
    "github": "ghp_" + "AbCdEfGhIjKlMnOpQrStUv1234",
    "github-fine-grained": "github_pat_" + "11AbCdEfGhIjKlMnOpQrStUv",
    "gitlab": "glpat-" + "AbCdEfGhIjKlMnOpQrStUv",
    "slack": "xoxb-" + "123456789012-AbCdEfGhIj",
    "aws": "AKIA" + "IOSFODNN7EXAMPLE",
    "google": "AIza" + "SyAbCdEfGhIjKlMnOpQrStUvWxYz0123456",
    "google-oauth": "ya29." + "AbCdEfGhIjKlMnOpQrStUv",
    "groq": "gsk_" + "AbCdEfGhIjKlMnOpQrStUv12",
    "replicate": "r8_" + "AbCdEfGhIjKlMnOpQrStUv12",
    "npm": "npm_" + "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
    "pypi": "pypi-" + "AgEIcHlwaS5vcmcCJGFiY2RlZmdoLWlqa2wtbW5vcC1xcnN0LXV2d3h5ejAxMjM0",
    "jwt": JWT,
}


@pytest.mark.parametrize("kind", sorted(TOKENS))
def test_every_token_format_is_redacted_anywhere(kind: str) -> None:
    token = TOKENS[kind]
    for text in (f"using {token} now", f"x={token}", f'"{token}"', f"+    KEY_{kind} = {token}"):
        out = redact_text(text)
        assert token not in out and REDACTED in out, (kind, text, out)
        assert token not in redact_text(text, code=True)


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("postgres://dbuser:pgPassw0rd@db.example.com/prod", "pgPassw0rd"),
        ("https://u:p@ss@w0rd@host/x", "ss@w0rd"),
        ('curl -H "Authorization: Bearer abcdefghijkl123"', "abcdefghijkl123"),
        ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA=="),
        ("password: hunter2xyz", "hunter2xyz"),
        ("DB_PASSWORD=hunter3xyz", "hunter3xyz"),
        ('{"api_key": "jsonKeyValue1"}', "jsonKeyValue1"),
        ("python t.py --token cliTok --lr 0.1", "cliTok"),
        ("python t.py --password=cliPw --lr 0.1", "cliPw"),
        ('run --cmd "python x.py --api-key nestedK" --lr 1', "nestedK"),
        ("?access_token=qsTok&a=1", "qsTok"),
        ("secret: 'quoted secret value'", "quoted secret value"),
        ('password: "unclosed quote runs on', "unclosed quote"),
    ],
)
def test_urls_headers_flags_and_keys(text: str, secret: str) -> None:
    out = redact_text(text)
    assert secret not in out, out
    assert redact_text(out) == out  # idempotent


def test_private_key_blocks_lose_their_body_not_their_lines() -> None:
    body = "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW"
    pem = f"-----BEGIN OPENSSH PRIVATE KEY-----\n{body}\n{body[::-1]}\n-----END OPENSSH PRIVATE KEY-----\n"
    out = redact_text("before\n" + pem + "after\n")
    assert body not in out and body[::-1] not in out
    assert out.count("\n") == pem.count("\n") + 2
    assert "-----BEGIN OPENSSH PRIVATE KEY-----" in out and "after" in out


@pytest.mark.parametrize(
    "text",
    [
        "train --max-tokens 512 --tokenizer gpt2 --keys 5 --lr 0.01 --seed 7",
        "num_keys=3 key_frames=4 num_key_value_heads=8 pad_token_id=0 eos_token: </s>",
        "max_new_tokens=128 tokens_per_batch=4096 token_type_ids=None author: me",
        "the monkey ate a keyboard; hotkeys: on",
        "step 10 loss=0.25 lr=0.001 tokens/s=51234 https://wandb.ai/team/proj/runs/abc",
        "pre-training data with seed=3",
    ],
)
def test_ordinary_words_and_hyperparameters_stay(text: str) -> None:
    assert redact_text(text) == text


def test_source_code_keeps_type_hints_and_expressions() -> None:
    code = (
        "def f(token: str, key: int = 3) -> None:\n"
        "    key = jax.random.PRNGKey(0)\n"
        "    password = os.environ['PW']\n"
        '    print("password: hunter2Code")\n'
        "    api_key = 'codeKeyLiteral'\n"
        "    # token: commentTok\n"
    )
    out = redact_text(code, code=True)
    assert out.splitlines()[:3] == code.splitlines()[:3]
    for secret in ("hunter2Code", "codeKeyLiteral", "commentTok"):
        assert secret not in out


def test_patch_rules_by_file_kind() -> None:
    diff = (
        "diff --git a/train.py b/train.py\n"
        "--- a/train.py\n+++ b/train.py\n@@ -1,2 +1,3 @@\n"
        " def f(token: str):\n"
        f'+    OPENAI = "{TOKENS["openai"]}"\n'
        "-    pass\n"
        "diff --git a/conf.yaml b/conf.yaml\n"
        "--- a/conf.yaml\n+++ b/conf.yaml\n@@ -1 +1,2 @@\n"
        " lr: 0.01\n"
        "+password: yamlPw7\n"
        "diff --git a/.env b/.env\n"
        "--- a/.env\n+++ b/.env\n@@ -1 +1 @@\n"
        "-PLAIN=oldEnvValue\n"
        "+PLAIN=newEnvValue\n"
    )
    out = redact_patch(diff)
    assert out.count("\n") == diff.count("\n")
    assert " def f(token: str):\n" in out and " lr: 0.01\n" in out
    for secret in (TOKENS["openai"], "yamlPw7", "oldEnvValue", "newEnvValue"):
        assert secret not in out
    assert f"-{REDACTED}\n+{REDACTED}\n" in out
    assert redact_patch(out) == out


def test_argv_config_and_env() -> None:
    argv = ["python", "t.py", "--token", "T1", "--password=P1", "--api-key", "K1",
            "--max-tokens", "512", "--keys", "5", "--lr", "0.01", "db.password=P2"]  # fmt: skip
    assert redact_argv(argv) == [
        "python", "t.py", "--token", REDACTED, "--password=" + REDACTED, "--api-key", REDACTED,
        "--max-tokens", "512", "--keys", "5", "--lr", "0.01", "db.password=" + REDACTED,
    ]  # fmt: skip
    config = {
        "api_key": TOKENS["openai"],
        "model.password": 1234,
        "db_url": "postgres://u:pw9@h/db",
        "notes": f"uses {TOKENS['github']}",
        "args": ["--token", "T3", "--lr", "1"],
        "use_auth_token": True,
        "hub_private_repo": False,
        "hub_token": None,
        "num_key_value_heads": 8,
        "tokenizer.pad_token": "<pad>",
        "lr": 0.01,
        "seed": 7,
    }
    assert redact_config(config) == {
        "api_key": REDACTED,
        "model.password": REDACTED,
        "db_url": "postgres://<redacted>@h/db",
        "notes": f"uses {REDACTED}",
        "args": ["--token", REDACTED, "--lr", "1"],
        "use_auth_token": True,
        "hub_private_repo": False,
        "hub_token": None,
        "num_key_value_heads": 8,
        "tokenizer.pad_token": "<pad>",
        "lr": 0.01,
        "seed": 7,
    }


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        (".env", True), (".env.local", True), ("prod.env", True), ("deploy/id_rsa", True),
        ("id_ed25519.pub", True), ("server.pem", True), ("tls/server.key", True),
        ("cert.p12", True), (".netrc", True), (".pgpass", True), (".git-credentials", True),
        ("secrets/db.yaml", True), ("hf_token.txt", True), ("credentials.json", True),
        ("tokenizer.json", False), ("special_tokens_map.json", False), ("train.py", False),
        ("environment.yml", False), ("keyframes.py", False), ("notes.md", False),
    ],
)  # fmt: skip
def test_secret_file_names(name: str, secret: bool) -> None:
    assert is_secret_file(name) is secret


def test_redact_facts_copies_and_covers_every_stored_field() -> None:
    tok = TOKENS["huggingface"]
    facts = RunFacts(
        path="/r",
        framework="generic",
        source_key="/r",
        name="run",
        command=["python", "t.py", "--token", "T"],
        config={"api_key": "K", "lr": 0.1},
        log_tail=f"login {tok}\nloss=0.1",
        failure=Failure("exception", f"HTTPError: bad token {tok}"),
        git=GitState(
            root="/r",
            remote="https://u:p@host/x.git",
            diff=f"diff --git a/a.py b/a.py\n+X = '{tok}'\n",
            untracked=[".env", "notes.md"],
            untracked_contents={".env": "A=1", "notes.md": f"password: pw {tok}"},
        ),
        env=EnvInfo(source="process", vars={"HF_TOKEN": tok, "WANDB_NOTES": tok, "RANK": "0"}),
        data={"data.url": {"path": "s3://k:s@b/x"}},
    )
    out = redact_facts(facts)
    assert facts.command == ["python", "t.py", "--token", "T"]  # the input is left alone
    assert tok not in repr(out) and "'K'" not in repr(out) and "k:s@" not in repr(out)
    assert out.git is not None and out.env is not None and out.failure is not None
    assert out.git.untracked == [".env", "notes.md"]
    assert out.git.untracked_contents[".env"] == REDACTED
    assert out.env.vars == {"HF_TOKEN": REDACTED, "WANDB_NOTES": REDACTED, "RANK": "0"}
    assert out.config["lr"] == 0.1 and out.log_tail.endswith("loss=0.1")
    assert out.failure.message == f"HTTPError: bad token {REDACTED}"


def test_redaction_is_cheap_on_big_inputs() -> None:
    lines = [
        f"+    x{i} = model.layer{i % 7}(key_{i}, weight)  # lr 0.1 tokens" for i in range(60000)
    ]
    patch = "diff --git a/m.py b/m.py\n@@ -0,0 +1 @@\n" + "\n".join(lines) + "\n"
    import time

    t0 = time.process_time()
    assert redact_patch(patch) == patch
    assert time.process_time() - t0 < 5.0  # ~4 MB; typically well under a second


# --- end to end: the real CLI, a real repository, the whole database file ----------------

TRAIN_PY = """\
import os, sys
print("printed-marker-line")
print("logged in with hf_PrintedHfTokenAbcdefghij12345")
print("password: hunter2PrintedXY")
if "--write-dir" in sys.argv:
    d = os.path.join("runs", "exp1")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.yaml"), "w") as f:
        f.write("lr: 0.01\\nseed: 7\\nmax_tokens: 512\\n")
        f.write("api_key: sk-ConfigKeyAbcdefghij0123456789\\n")
        f.write("db_url: postgres://dbuser:pgPassw0rdQ@db.example.com/prod\\n")
    with open(os.path.join(d, "train.log"), "w") as f:
        f.write("step 1 loss=0.5\\n")
        f.write("auth header eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJsYWJib29rLXRlc3QtdXNlciJ9.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c\\n")
        f.write("step 2 loss=0.25\\n")
    raise SystemExit("HTTP 401: token hf_FailureMsgTokenAbcdefghij12345 rejected")
"""

PLANTED = [
    # command line
    "cliTok3nVALUEzz91",
    "cliPassw0rdQQ17",
    "cliApiK3yWW55",
    # environment
    "hf_EnvTokenAbcdefghij0123456789",
    "envWandbKey0123456789abcdef",
    "ghp_EnvNotesGithubTokenAbcdefghij12",
    # printed output and the failure it caused
    "hf_PrintedHfTokenAbcdefghij12345",
    "hunter2PrintedXY",
    "hf_FailureMsgTokenAbcdefghij12345",
    # run directory: config and log
    "sk-ConfigKeyAbcdefghij0123456789",
    "pgPassw0rdQ",
    "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
    # the patch
    "sk-DiffSecretAbcdefghij0123456789",
    "yamlDiffPw77",
    # untracked files
    "dotenvSecretValue42",
    "dotenvPlainContent8",
    "sshKeyBodyLineUniqueAAAA1234",
    "notesApiKeyVal9",
    # the imported run directory
    "importedPw55",
    "sk-ImportedKeyAbcdefghij0123456789",
    "importedLogSecret31",
]


def _repo(root: Path) -> None:
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.email", "t@example.com")
    git(root, "config", "user.name", "t")
    (root / ".gitignore").write_text("runs/\nimported/\n")
    (root / "train.py").write_text(TRAIN_PY)
    (root / "conf.yaml").write_text("lr: 0.01\npassword: placeholder\n")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "init")
    # uncommitted edits: a token in code, a password in a config
    (root / "train.py").write_text(TRAIN_PY + 'OPENAI_KEY = "sk-DiffSecretAbcdefghij0123456789"\n')
    (root / "conf.yaml").write_text("lr: 0.01\npassword: yamlDiffPw77\n")
    # untracked files: secret ones are named only, others are kept redacted
    (root / ".env").write_text("DB_PASSWORD=dotenvSecretValue42\nPLAIN=dotenvPlainContent8\n")
    (root / "id_rsa").write_text(
        "-----BEGIN OPENSSH PRIVATE KEY-----\nsshKeyBodyLineUniqueAAAA1234\n"
        "-----END OPENSSH PRIVATE KEY-----\n"
    )
    (root / "notes.md").write_text("notes about lr\napi_key: notesApiKeyVal9\n")


def _texts_in_database(db: Path) -> tuple[bytes, str]:
    """(raw bytes of the file and its -wal, every value of every table as text)."""
    raw = db.read_bytes()
    wal = db.with_name(db.name + "-wal")
    if wal.exists():
        raw += wal.read_bytes()
    conn = sqlite3.connect(db)
    texts: list[str] = []
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for row in conn.execute(f'SELECT * FROM "{table}"'):
                for value in row:
                    if isinstance(value, bytes):
                        with contextlib.suppress(zlib.error):
                            value = zlib.decompress(value)
                        texts.append(value.decode("utf-8", "replace"))
                    elif value is not None:
                        texts.append(str(value))
    finally:
        conn.close()
    return raw, "\n".join(texts)


def test_no_planted_secret_reaches_the_database(tmp_path: Path) -> None:
    root = tmp_path / "project"
    _repo(root)
    db = tmp_path / "notebook.db"
    env = {
        "LABBOOK_DB": str(db),
        "HF_TOKEN": "hf_EnvTokenAbcdefghij0123456789",
        "WANDB_API_KEY": "envWandbKey0123456789abcdef",
        "WANDB_NOTES": "ghp_EnvNotesGithubTokenAbcdefghij12",
        "WANDB_PROJECT": "secrets-test",
    }
    Store.open(db).close()  # the database, in WAL mode, with its schema
    # A reader holding its snapshot keeps checkpoints from resetting the WAL, so
    # every page version written below is still in the -wal file when it is read.
    reader = sqlite3.connect(db, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM runs").fetchone()
    try:
        secret_args = ["--token", "cliTok3nVALUEzz91", "--password=cliPassw0rdQQ17",
                       "--api-key", "cliApiK3yWW55", "--max-tokens", "512", "--lr", "0.01"]  # fmt: skip
        res = run_cli("run", "--name", "with-dir", "--", sys.executable, "train.py",
                      "--write-dir", *secret_args, env=env, cwd=root)  # fmt: skip
        assert res.returncode == 1, res.stderr
        assert "hunter2PrintedXY" in res.stdout  # the terminal sees everything
        res = run_cli("run", "--name", "printing", "--", sys.executable, "train.py",
                      *secret_args, env=env, cwd=root)  # fmt: skip
        assert res.returncode == 0, res.stderr
        imported = root / "imported" / "exp2"
        imported.mkdir(parents=True)
        (imported / "config.yaml").write_text(
            "lr: 0.02\nseed: 8\ndb:\n  password: importedPw55\n"
            "openai_api_key: sk-ImportedKeyAbcdefghij0123456789\n"
        )
        (imported / "train.log").write_text(
            "step 1 loss=0.4\nexport SECRET_THING=importedLogSecret31\nstep 2 loss=0.3\n"
        )
        res = run_cli("import", str(imported), env=env, cwd=root)
        assert res.returncode == 0, res.stderr
        assert db.with_name(db.name + "-wal").stat().st_size > 100_000  # every write is there
        raw, text = _texts_in_database(db)
    finally:
        reader.close()
    assert b"SQLite format 3" in raw and b"--max-tokens" in raw
    for secret in PLANTED:
        assert secret.encode() not in raw, f"{secret} in the database file"
        assert secret not in text, f"{secret} in a table or blob"
    # what is not secret is all there
    for kept in ("printed-marker-line", "--max-tokens", "512", "0.01", "0.02", "notes about lr",
                 "step 2 loss=0.25", "secrets-test", ".env", "id_rsa", "db.example.com"):  # fmt: skip
        assert kept in text, kept
    assert REDACTED in text
    ls = run_cli("ls", "--json", env=env)
    assert ls.returncode == 0 and ls.stdout.count('"id"') >= 3, ls.stdout
    # and search finds the runs by their ordinary words, not by a secret
    found = run_cli("search", "max-tokens", env=env)
    assert found.returncode == 0 and "with-dir" in found.stdout
    missing = run_cli("search", "cliTok3nVALUEzz91", env=env)
    assert "with-dir" not in missing.stdout


def test_untracked_secret_files_are_never_opened(tmp_path: Path) -> None:
    from labbook.capture.git import capture_git

    root = tmp_path / "repo"
    _repo(root)
    (root / "api_secrets.txt").write_text("plainSecretFileBody\n")
    state = capture_git(root)
    assert state is not None
    assert {".env", "id_rsa", "notes.md", "api_secrets.txt"} <= set(state.untracked)
    for name in (".env", "id_rsa", "api_secrets.txt"):  # named, marked, never read
        assert state.untracked_contents[name] == REDACTED
    assert state.untracked_contents["notes.md"].startswith("notes about lr")
