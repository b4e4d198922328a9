"""The one redaction labbook applies to everything on its way into the store.

A lab notebook is shared, so tokens, passwords and keys must never be recorded.
:func:`redact_facts` is called by :meth:`labbook.store.Store.save_run` on every
run, whichever path it came by (``labbook run``, ``labbook import``, the daemon),
and applies the rules below to every field that is stored:

* **names** that look secret (:data:`SECRET_PATTERN`: ``token``, ``password``,
  ``api_key``, ``secret``, ``credential``, ``auth``, …): their values are replaced
  by :data:`REDACTED` -- a ``--flag value`` or ``--flag=value`` on a command line
  (:func:`redact_argv`), a config key (:func:`redact_config`), an environment
  variable (:func:`redact_env_vars`), and ``key=value``, ``key: value``,
  ``"key": "value"`` in free text (:func:`redact_text`);
* **values** that look like tokens whatever their name
  (:data:`TOKEN_VALUE_PATTERN`: provider key prefixes such as ``hf_``, ``sk-``,
  ``ghp_``, ``AKIA``, JWTs), ``Bearer``/``Basic`` credentials and private-key
  blocks, anywhere in free text: logs, patches, untracked files;
* **URLs** have their ``user:password@`` replaced by ``<redacted>@``;
* **files** whose names say they hold secrets (:func:`is_secret_file`: ``.env*``,
  ``*.pem``, ``*.key``, ``id_rsa``, ``*secret*``, ``*token*``, ``.netrc``, …) are
  named but their contents are never read (:mod:`labbook.capture.git`) nor kept
  (their lines in a patch become ``<redacted>``).

What is redacted is replaced by ``<redacted>``, so one can see that something was
there. Over-redaction is preferred to a leak, but names that only resemble secret
ones are left alone: ``--max-tokens``, ``tokenizer``, ``pad_token_id``,
``num_keys``, ``key_frames``, ``num_key_value_heads``, ``author``. A boolean or
``None`` under a secret-looking config key (``use_auth_token: true``,
``hub_private_repo: false``) is kept: it cannot be a secret.

In source code (``.py`` and other code files, in patches and untracked files) an
unquoted value of a secret-looking name is redacted only inside a string or a
comment, so ``token: str`` in a type hint or ``key = jax.random.PRNGKey(0)``
survive while ``"password: x"`` and ``api_key = "x"`` do not; token formats are
redacted everywhere. No rule changes the number of lines of a text, so a patch keeps its shape.

Cost: a fast pre-check finds the lines that could hold a secret (a substring
search of the lower-cased text for a few dozen words); only those lines go
through the regular expressions: about 30 ms of CPU per MB of text without such
words, 60 ms per MB for a patch of real Python sources, 150 ms per MB for a log
whose every line holds one (``tokens/s=``). Texts of 64 KiB and more are
remembered (a few of them), since a launch and the daemon save the same patch
and log several times.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

from labbook.model import Failure, RunFacts
from labbook.warn import warn_exception

__all__ = [
    "REDACTED",
    "SECRET_PATTERN",
    "TOKEN_VALUE_PATTERN",
    "is_code_file",
    "is_secret_file",
    "is_secret_name",
    "redact_argv",
    "redact_config",
    "redact_env_vars",
    "redact_facts",
    "redact_patch",
    "redact_text",
    "redact_value",
]

#: What a redacted value is replaced with.
REDACTED = "<redacted>"

#: Names (of variables, flags, config keys) that look like they hold a secret.
#: Matched case-insensitively anywhere in the name, so ``WANDB_API_KEY``,
#: ``AWS_SECRET_ACCESS_KEY``, ``HF_TOKEN``, ``hub_token`` and ``MY_PASSWORD`` all
#: match. Not secrets, and excluded: ``TOKENIZER…``, ``…TOKENS`` (``--max-tokens``),
#: ``…TOKEN_ID(S)``/``TOKEN_TYPE`` and special tokens (``pad_token``, ``eos_token``),
#: ``AUTHOR`` (but not ``AUTHORIZATION``), and ``key`` inside a word or followed
#: by more of the name (``monkey``, ``keys``, ``key_frames``, ``num_key_value_heads``)
#: unless it is an ``api``/``access``/``secret``/``private``… key.
SECRET_PATTERN = re.compile(
    r"(?<!PAD_)(?<!EOS_)(?<!BOS_)(?<!UNK_)(?<!SEP_)(?<!CLS_)(?<!MASK_)"
    r"TOKEN(?!IZER|S(?![A-Za-z])|_?IDS?(?![A-Za-z])|_?TYPE)"
    r"|SECRET|PASSWORD|PASSWD|PASSPHRASE|CREDENTIAL"
    r"|(?:API|ACCESS|SECRET|PRIVATE|AUTH|MASTER|SIGNING|LICENSE|ENCRYPTION|CLIENT|SSH|DEPLOY)"
    r"[_\-.]?KEYS?(?![A-Za-z])"
    r"|(?<![A-Za-z0-9])KEY(?![A-Za-z0-9_])"
    r"|AUTH(?!OR(?!IZ))|COOKIE|SESSION|PRIVATE",
    re.IGNORECASE,
)

#: Values that look like tokens whatever the name they are stored under: Hugging
#: Face ``hf_…``, OpenAI/Anthropic ``sk-…``, Stripe ``sk_live_…``, GitHub
#: ``ghp_…``/``github_pat_…``, GitLab ``glpat-…``, Slack ``xox?-…``, AWS access key
#: ids ``AKIA…``/``ASIA…``, Google ``AIza…``/``ya29.…``, Groq ``gsk_…``, Replicate
#: ``r8_…``, npm, PyPI and JWTs.
TOKEN_VALUE_PATTERN = re.compile(
    r"(?<![A-Za-z0-9])(?:"
    r"hf_[A-Za-z0-9]{20,}"
    r"|sk-[A-Za-z0-9_\-]{20,}"
    r"|[sr]k_(?:live|test)_[A-Za-z0-9]{16,}"
    r"|gh[pousr]_[A-Za-z0-9]{20,}"
    r"|github_pat_[A-Za-z0-9_]{20,}"
    r"|glpat-[A-Za-z0-9_\-]{20,}"
    r"|xox[abposr]-[A-Za-z0-9\-]{10,}"
    r"|(?:AKIA|ASIA)[0-9A-Z]{16}"
    r"|AIza[0-9A-Za-z_\-]{35}"
    r"|ya29\.[0-9A-Za-z_\-]{20,}"
    r"|gsk_[A-Za-z0-9]{20,}"
    r"|r8_[A-Za-z0-9]{20,}"
    r"|npm_[A-Za-z0-9]{36}"
    r"|pypi-[A-Za-z0-9_\-]{50,}"
    r"|eyJ[A-Za-z0-9_\-]{10,}\.eyJ[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]*"
    r")"
)

#: Lower-case substrings of which a line must hold one to need a closer look: each
#: rule below needs one of its group (secret names, token prefixes, URLs, headers).
_NAME_TRIGGERS = (
    "token",
    "secret",
    "passw",
    "passphrase",
    "key",
    "credential",
    "auth",
    "cookie",
    "session",
    "private",
)
_TOKEN_TRIGGERS = (
    "hf_",
    "sk-",
    "sk_live_",
    "sk_test_",
    "rk_live_",
    "rk_test_",
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "github_pat_",
    "glpat-",
    "xox",
    "akia",
    "asia",
    "aiza",
    "ya29.",
    "gsk_",
    "r8_",
    "npm_",
    "pypi-",
    "eyj",
)
_BEARER_TRIGGERS = ("bearer", "basic")
_TRIGGERS: tuple[str, ...] = ("://", *_BEARER_TRIGGERS, *_NAME_TRIGGERS, *_TOKEN_TRIGGERS)
_TRIGGER_RE = re.compile("|".join(re.escape(t) for t in _TRIGGERS), re.IGNORECASE)
# the same on lower-cased text: many times faster than IGNORECASE
_TRIGGER_LOW = re.compile("|".join(re.escape(t) for t in _TRIGGERS))
_NAME_LOW = re.compile("|".join(re.escape(t) for t in _NAME_TRIGGERS))
_TOKEN_LOW = re.compile("|".join(re.escape(t) for t in _TOKEN_TRIGGERS))

_SECRET_WORD = SECRET_PATTERN.pattern
# scheme://user:password@  ->  scheme://<redacted>@   (the password may itself hold an "@")
_URL_CREDENTIALS = re.compile(
    r"(?P<scheme>(?<![A-Za-z0-9+.\-])[A-Za-z][A-Za-z0-9+.\-]*://)[^\s/:@?#]*:[^\s/?#]*@"
)
# Authorization header values
_BEARER = re.compile(r"\b(?P<kind>Bearer|Basic)\s+[A-Za-z0-9._~+/=\-]{8,}", re.IGNORECASE)
# -x VALUE, --flag VALUE, --flag=VALUE: every one is matched (cheap: no lazy search
# for a secret word inside the pattern) and the callback redacts the secret ones.
# A value starting with "-" is the next flag, not a value.
_FLAG = re.compile(
    r"(?<![\w\-])(?P<flag>--?[\w\-.]+)"
    r"(?P<sep>=|[ \t]+)(?P<value>\"[^\"\n]*\"|'[^'\n]*'|[^\s\-][^\s]*)"
)
_KEY = r"(?<![\w.\-])(?P<q>[\"']?)(?P<key>[\w.\-]+)"
_SEP = r"(?P=q)(?P<sep>[ \t]*[=:][ \t]*)(?!(?i:bearer|basic)\s)"
# key=VALUE, "key": "VALUE", key: VALUE, ?key=VALUE& (the callback redacts secret
# keys); an unclosed quote runs to the end of the line
_KEY_VALUE = re.compile(
    _KEY + _SEP + r"(?P<value>\"[^\"\n]*\"|'[^'\n]*'|[\"'][^\n]*|[^\s,;&\"'}\]]+)"
)
# in source code a value ends at a quote or bracket, and an unquoted one counts only
# inside a string or a comment (``token: str`` is a type hint, ``"password: x"`` is not)
_KEY_VALUE_CODE = re.compile(
    _KEY + _SEP + r"(?P<value>[rbuf]?\"[^\"\n]*\"|[rbuf]?'[^'\n]*'|[^\s,;&\"'}\])(]+)"
)
_FLAG_CODE = re.compile(
    r"(?<![\w\-])(?P<flag>--?[\w\-.]+)"
    r"(?P<sep>=|[ \t]+)(?P<value>\"[^\"\n]*\"|'[^'\n]*'|[^\s\-\"'][^\s\"',)\]]*)"
)
# the base64 body of a private key block; the BEGIN/END lines are kept
_PEM_BLOCK = re.compile(
    r"(?P<begin>-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----)(?P<body>.*?)"
    r"(?P<end>-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|\Z)",
    re.DOTALL,
)
_PEM_DATA = re.compile(r"[A-Za-z0-9+/=:\-]{8,}")
# a whole value that is a long random-looking string: upper, lower and digits mixed
# (hex ids, UUIDs and paths are not matched)
HIGH_ENTROPY = re.compile(r"^(?=.*[a-z])(?=.*[A-Z])(?=.*[0-9])[A-Za-z0-9+/=_\-]{32,}$")

#: Texts at least this long are remembered (a launch saves the same patch and log
#: several times; the daemon re-saves a run whose patch has not changed).
_CACHE_MIN = 64 * 1024


# --- names -----------------------------------------------------------------------------


def is_secret_name(name: str) -> bool:
    """Whether a variable, flag or config key name looks like it holds a secret."""
    return isinstance(name, str) and SECRET_PATTERN.search(name) is not None


_SECRET_FILE = re.compile(
    r"^(?:\.env(?:\..*)?|.*\.env|.*\.(?:pem|key|p12|pfx|jks|keystore|keytab|kdbx|ppk|gpg|asc)"
    r"|id_(?:rsa|dsa|ecdsa|ed25519)(?:.*)?|id_[a-z0-9]+|\.netrc|_netrc|\.pgpass|\.htpasswd"
    r"|\.npmrc|\.pypirc|\.git-credentials|\.dockercfg|credentials|authorized_keys|known_hosts)$",
    re.IGNORECASE,
)
_SECRET_PART = re.compile(
    r"secret|credential|passw|api[_\-.]?key|private[_\-.]?key"
    r"|(?<!pad_)(?<!eos_)(?<!bos_)(?<!unk_)(?<!sep_)(?<!cls_)(?<!mask_)"
    r"token(?!izer|s(?![a-z])|_?ids?(?![a-z])|_?type)",
    re.IGNORECASE,
)


def is_secret_file(path: str) -> bool:
    """Whether a file's (relative) path says it holds secrets, so it is never read.

    ``.env``, ``.env.local``, ``prod.env``, ``*.pem``, ``*.key``, ``*.p12``, ssh keys
    (``id_rsa``, ``id_ed25519``…), ``.netrc``, ``.pgpass``, ``.git-credentials``,
    ``.pypirc``, and any path with ``secret``, ``token``, ``credential``,
    ``password``, ``api_key`` in it (``tokenizer.json`` and
    ``special_tokens_map.json`` are not secret).
    """
    if not isinstance(path, str) or not path:
        return False
    norm = path.replace("\\", "/").rstrip("/")
    base = norm.rsplit("/", 1)[-1]
    return bool(_SECRET_FILE.match(base) or _SECRET_PART.search(norm))


_CODE_EXTENSIONS = frozenset(
    [
        ".py",
        ".pyi",
        ".pyx",
        ".pxd",
        ".ipynb",
        ".js",
        ".jsx",
        ".ts",
        ".tsx",
        ".mjs",
        ".cjs",
        ".c",
        ".cc",
        ".cpp",
        ".cxx",
        ".h",
        ".hh",
        ".hpp",
        ".cu",
        ".cuh",
        ".rs",
        ".go",
        ".java",
        ".kt",
        ".kts",
        ".scala",
        ".swift",
        ".jl",
        ".r",
        ".lua",
        ".rb",
        ".php",
        ".cs",
        ".m",
        ".mm",
        ".hs",
        ".ml",
        ".ex",
        ".exs",
        ".clj",
        ".dart",
        ".zig",
        ".nim",
    ]
)


def is_code_file(path: str) -> bool:
    """Whether a path names source code (so only quoted secret values are redacted)."""
    if not isinstance(path, str):
        return False
    return os.path.splitext(path)[1].lower() in _CODE_EXTENSIONS


# --- free text -------------------------------------------------------------------------


def _redacted_value(value: str) -> str:
    """REDACTED, inside the value's quotes when it had them (``r"…"`` too)."""
    if len(value) >= 2 and value[-1] in "\"'":
        if value[0] == value[-1]:
            return value[0] + REDACTED + value[0]
        if value[0] in "rbufRBUF" and value[1] == value[-1] and len(value) >= 3:
            return value[:2] + REDACTED + value[-1]
    return REDACTED


def _flag_in(pattern: re.Pattern[str]) -> Any:
    def sub(m: re.Match[str]) -> str:
        if SECRET_PATTERN.search(m.group("flag")):
            return m.group("flag") + m.group("sep") + _redacted_value(m.group("value"))
        value = m.group("value")
        if "-" in value:  # a quoted command line: --cmd "python x.py --token X"
            value = pattern.sub(sub, value)
        return m.group("flag") + m.group("sep") + value

    return sub


def _in_string_or_comment(m: re.Match[str]) -> bool:
    """Whether a match in source code starts inside a string literal or a comment."""
    text = m.string
    line = text[text.rfind("\n", 0, m.start()) + 1 : m.start()]
    return line.count('"') % 2 == 1 or line.count("'") % 2 == 1 or "#" in line or "//" in line


def _key_value_in(pattern: re.Pattern[str], code: bool) -> Any:
    def sub(m: re.Match[str]) -> str:
        head = m.group("q") + m.group("key") + m.group("q") + m.group("sep")
        value = m.group("value")
        if SECRET_PATTERN.search(m.group("key")):
            quoted = value[-1:] in "\"'" and len(value) >= 2
            if not code or quoted or _in_string_or_comment(m):
                return head + _redacted_value(value)
            return m.group(0)
        if "=" in value or ":" in value:  # x=token=abc, a: "password: b"
            value = pattern.sub(sub, value)
        return head + value

    return sub


_flag = _flag_in(_FLAG)
_flag_code = _flag_in(_FLAG_CODE)
_key_value = _key_value_in(_KEY_VALUE, False)
_key_value_code = _key_value_in(_KEY_VALUE_CODE, True)


def _redact_pem(text: str) -> str:
    def body(m: re.Match[str]) -> str:
        return m.group("begin") + _PEM_DATA.sub(REDACTED, m.group("body")) + m.group("end")

    return _PEM_BLOCK.sub(body, text)


def _redact_lines(text: str, code: bool) -> str:
    """Every rule on ``text`` (the lines that the pre-check picked), each rule only
    where one of its trigger words occurs."""
    low = text.lower()
    if "://" in low:
        text = _URL_CREDENTIALS.sub(lambda m: f"{m.group('scheme')}{REDACTED}@", text)
    if "bearer" in low or "basic" in low:
        text = _BEARER.sub(lambda m: f"{m.group('kind')} {REDACTED}", text)
    if _NAME_LOW.search(low):
        if code:
            if "-" in text:
                text = _FLAG_CODE.sub(_flag_code, text)
            text = _KEY_VALUE_CODE.sub(_key_value_code, text)
        else:
            if "-" in text:
                text = _FLAG.sub(_flag, text)
            text = _KEY_VALUE.sub(_key_value, text)
    if _TOKEN_LOW.search(low):
        text = TOKEN_VALUE_PATTERN.sub(REDACTED, text)
    return text


#: Hot lines closer than this (characters) are redacted in one go.
_SPAN_GAP = 256


def _hot_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of the runs of lines that hold a trigger, in order; runs fewer
    than :data:`_SPAN_GAP` characters apart are merged."""
    # U+0130 is the one character that lower() turns into two: keep offsets aligned
    low = (text.replace("\u0130", "i") if "\u0130" in text else text).lower()
    spans: list[tuple[int, int]] = []
    pos = 0
    while (m := _TRIGGER_LOW.search(low, pos)) is not None:
        start = low.rfind("\n", 0, m.start()) + 1
        end = low.find("\n", m.end())
        end = len(low) if end < 0 else end
        if spans and start <= spans[-1][1] + _SPAN_GAP:  # one call for nearby lines
            spans[-1] = (spans[-1][0], end)
        else:
            spans.append((start, end))
        pos = end + 1
    return spans


def _apply(
    text: str, lo: int, hi: int, spans: list[tuple[int, int]], code: bool, first: int = 0
) -> str:
    """``text[lo:hi]`` with the parts of ``spans[first:]`` (sorted, absolute) in it redacted."""
    parts: list[str] = []
    pos = lo
    for k in range(first, len(spans)):
        start, end = spans[k]
        if start >= hi:
            break
        start, end = max(start, lo), min(end, hi)
        if start >= end:
            continue
        parts.append(text[pos:start])
        parts.append(_redact_lines(text[start:end], code))
        pos = end
    parts.append(text[pos:hi])
    return "".join(parts)


def _redact_text(text: str, code: bool) -> str:
    if "-----BEGIN" in text:
        text = _redact_pem(text)
    spans = _hot_spans(text)
    if not spans:
        return text
    return _apply(text, 0, len(text), spans, code)


@functools.lru_cache(maxsize=8)
def _redact_text_cached(text: str, code: bool) -> str:
    return _redact_text(text, code)


def redact_text(text: Any, *, code: bool = False) -> str:
    """Redact secrets in free text: a log, a command line, a config file, a patch.

    Removes ``user:password@`` from URLs and replaces with :data:`REDACTED` the
    values of secret-looking flags (``--api-key XYZ``, ``--token=XYZ``) and keys
    (``token=XYZ``, ``"api_key": "XYZ"``, ``password: XYZ``, ``API_KEY=XYZ``),
    ``Bearer``/``Basic`` credentials, private-key blocks and anything matching
    :data:`TOKEN_VALUE_PATTERN`. ``code=True`` (source code) leaves unquoted values
    outside strings and comments alone (``token: str``, ``key = f(x)``). The number of lines never changes, and
    redacting twice gives the same text.
    """
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    if not text:
        return text
    if len(text) >= _CACHE_MIN:
        return _redact_text_cached(text, code)
    return _redact_text(text, code)


_DIFF_HEADER = re.compile(r"^diff --git ", re.MULTILINE)
_DIFF_PATH = re.compile(r"^diff --git (?:\"?a/.*?\"?) \"?b/(?P<path>.*?)\"?$", re.MULTILINE)


def _redact_secret_file_section(section: str) -> str:
    """A secret file's part of a patch: headers kept, every content line redacted."""
    out: list[str] = []
    in_hunk = False
    binary = False
    for line in section.splitlines(keepends=True):
        body = line.rstrip("\r\n")
        nl = line[len(body) :]
        if body.startswith("@@"):
            in_hunk = True
            out.append(line)
        elif body.startswith("GIT binary patch"):
            binary = True
            out.append(line)
        elif binary:
            out.append(
                (REDACTED if body and not body.startswith(("literal", "delta")) else body) + nl
            )
        elif in_hunk and body[:1] in ("+", "-", " "):
            out.append(body[:1] + REDACTED + nl)
        elif in_hunk and body.startswith("\\"):
            out.append(line)  # "\ No newline at end of file"
        else:
            out.append(line)
    return "".join(out)


def _redact_patch(diff: str) -> str:
    starts = [m.start() for m in _DIFF_HEADER.finditer(diff)]
    if not starts:
        return _redact_text(diff, False)
    spans = _hot_spans(diff)  # once for the whole patch, then cut at the files
    first = 0
    parts = [_apply(diff, 0, starts[0], spans, False)] if starts[0] else []
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else len(diff)
        while first < len(spans) and spans[first][1] <= start:
            first += 1
        m = _DIFF_PATH.match(diff, start, end)
        path = m.group("path") if m else ""
        if is_secret_file(path):
            parts.append(_redact_secret_file_section(diff[start:end]))
        elif diff.find("-----BEGIN", start, end) >= 0:
            parts.append(_redact_text(diff[start:end], is_code_file(path)))
        else:
            parts.append(_apply(diff, start, end, spans, is_code_file(path), first))
    return "".join(parts)


@functools.lru_cache(maxsize=4)
def _redact_patch_cached(diff: str) -> str:
    return _redact_patch(diff)


def redact_patch(diff: Any) -> str:
    """Redact a ``git diff``: each file's part by the rules for its kind.

    Source files (:func:`is_code_file`) get ``code=True``; the content lines of a
    file whose name says it holds secrets (:func:`is_secret_file`) become
    ``+<redacted>`` whatever they say (binary data too); headers are kept.
    """
    if not isinstance(diff, str):
        diff = "" if diff is None else str(diff)
    if not diff:
        return diff
    if len(diff) >= _CACHE_MIN:
        return _redact_patch_cached(diff)
    return _redact_patch(diff)


# --- structured values -------------------------------------------------------------------


def redact_argv(argv: Sequence[str]) -> list[str]:
    """A command line with secrets redacted, element by element.

    :func:`redact_text` sees one element at a time, so the value after a separate
    secret-looking flag (``--api-key XYZ``) is redacted here.
    """
    out: list[str] = []
    secret_next = False
    for arg in argv:
        arg = arg if isinstance(arg, str) else str(arg)
        if secret_next and not arg.startswith("-"):
            out.append(REDACTED)
            secret_next = False
            continue
        secret_next = arg.startswith("-") and "=" not in arg and is_secret_name(arg)
        out.append(redact_text(arg))
    return out


def redact_value(value: Any) -> Any:
    """A value (string, list, dict, number) with secrets in it redacted.

    Strings go through :func:`redact_text`, lists of strings through
    :func:`redact_argv` (``["--token", "X"]``), dicts through :func:`redact_config`.
    """
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, (list, tuple)):
        if all(isinstance(v, str) for v in value):
            return redact_argv(value)
        return [redact_value(v) for v in value]
    if isinstance(value, dict):
        return redact_config(value)
    return value


def _secret_value(value: Any) -> Any:
    """What a value under a secret-looking name is stored as."""
    if value is None or isinstance(value, bool) or value == "" or value == REDACTED:
        return value  # cannot be a secret (``use_auth_token: true``)
    return REDACTED


def redact_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A config with secrets redacted.

    A key that looks secret (:data:`SECRET_PATTERN`) has its value replaced by
    :data:`REDACTED` (booleans, ``None`` and empty strings are kept); other values
    go through :func:`redact_value`, so a token-looking value or a URL with a
    password is redacted under any key. Keys holding a token are redacted too.
    """
    out: dict[str, Any] = {}
    try:
        items = list(config.items())
    except Exception as exc:  # a broken mapping: nothing rather than a leak
        warn_exception(None, "config not recorded", exc, quiet=True)
        return out
    for key, value in items:
        name = key if isinstance(key, str) else str(key)
        if _TRIGGER_RE.search(name):
            name = TOKEN_VALUE_PATTERN.sub(
                REDACTED, _URL_CREDENTIALS.sub(rf"\g<scheme>{REDACTED}@", name)
            )
            out[name] = _secret_value(value) if is_secret_name(name) else redact_value(value)
        else:
            out[name] = redact_value(value)
    return out


def redact_env_vars(env_vars: Mapping[str, str]) -> dict[str, str]:
    """Environment variables with secrets redacted (names kept, in their order).

    A secret-looking name (``HF_TOKEN``, ``WANDB_API_KEY``) or a long random-looking
    value is recorded as :data:`REDACTED`, so one can still see it was set; other
    values go through :func:`redact_text` (URLs lose their ``user:password@``).
    """
    out: dict[str, str] = {}
    for name, value in env_vars.items():
        value = value if isinstance(value, str) else str(value)
        if is_secret_name(name) or HIGH_ENTROPY.match(value):
            out[name] = REDACTED
        else:
            out[name] = redact_text(value)
    return out


def _redact_git(git: Any) -> Any:
    contents: dict[str, str] = {}
    for name, text in git.untracked_contents.items():
        shown = redact_text(name)
        if is_secret_file(name):
            contents[shown] = REDACTED
        else:
            contents[shown] = redact_text(text, code=is_code_file(name))
    return dataclasses.replace(
        git,
        remote=redact_text(git.remote) if git.remote else git.remote,
        diff=redact_patch(git.diff),
        untracked=[redact_text(n) for n in git.untracked],
        untracked_contents=contents,
    )


def redact_facts(facts: RunFacts) -> RunFacts:
    """A copy of ``facts`` with every stored field redacted (``facts`` is not changed).

    The command (:func:`redact_argv`), config (:func:`redact_config`), name, log
    tail, failure message and status reason (:func:`redact_text`), git remote, patch
    (:func:`redact_patch`), untracked names and contents (a secret file's contents
    become :data:`REDACTED`), environment variables (:func:`redact_env_vars`) and
    data fingerprints. Metrics, paths, tags and the seed are kept as they are.
    """
    failure = facts.failure
    if failure is not None:
        failure = Failure(failure.kind, redact_text(failure.message), failure.step)
    env = facts.env
    if env is not None:
        env = dataclasses.replace(env, vars=redact_env_vars(env.vars))
    return dataclasses.replace(
        facts,
        name=redact_text(facts.name) if facts.name else facts.name,
        command=redact_argv(facts.command) if facts.command is not None else None,
        config=redact_config(facts.config),
        log_tail=redact_text(facts.log_tail) if facts.log_tail else facts.log_tail,
        failure=failure,
        status_reason=redact_text(facts.status_reason) if facts.status_reason else None,
        git=_redact_git(facts.git) if facts.git is not None else None,
        env=env,
        data=redact_config(facts.data) if facts.data else facts.data,
    )
