"""Text from run dirs made safe to show: control characters as visible escapes.

Names, paths, tags, notes and messages come from files anyone who can write to a
watched directory chose. Printed raw, a newline splits a row of ``labbook ls | awk``,
an escape sequence recolours, retitles or rewrites the reader's terminal, and a
bidi override reorders what they see. :func:`printable` shows each such character
as an escape (``\\n``, ``\\x1b``, ``\\u202e``) at every place text is printed for a
person; ``--json`` keeps the true value (:func:`json_text` escapes the same
characters as JSON ``\\uXXXX`` escapes, so the decoded value is unchanged).

No imports beyond ``re``: the CLI's piped ``ls`` and ``show`` load this, not rich.
Backslashes are not doubled: a name with a literal ``\\n`` in it looks like one
with a newline, as the store's own ``\\xNN`` for undecodable bytes does.
"""

from __future__ import annotations

import re

__all__ = ["json_text", "printable", "printable_lines"]

#: C0 controls (\n \r \t ESC …), DEL, C1 controls (U+0080–U+009F, NEL and CSI
#: included), the bidi embeddings/overrides (U+202A–U+202E) and isolates
#: (U+2066–U+2069), the Unicode line and paragraph separators (str.splitlines
#: splits on them) and lone surrogates (undecodable bytes of a file name).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
#: The same, without tab: for a line of a patch, where tabs are indentation.
_UNSAFE_NOTAB = re.compile(
    "[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)
#: The same, without newline and tab: for text that may span lines (notes, patches).
_UNSAFE_MULTILINE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)
#: What json.dumps(ensure_ascii=False) leaves raw but a terminal acts on.
_JSON_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(m: re.Match[str]) -> str:
    c = m.group()
    named = _NAMED.get(c)
    if named is not None:
        return named
    code = ord(c)
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape: the undecodable byte itself
        return f"\\x{code - 0xDC00:02x}"
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}"


def printable(text: object, *, tabs: bool = False) -> str:
    """``text`` on one line with every control, bidi and undecodable character escaped.

    ``tabs``: leave tabs as they are (a line of a patch, indented with tabs).
    """
    s = text if isinstance(text, str) else str(text)
    unsafe = _UNSAFE_NOTAB if tabs else _UNSAFE
    if unsafe.search(s) is None:
        return s
    return unsafe.sub(_escape, s)


def printable_lines(text: object) -> str:
    """Like :func:`printable` but keeps newlines and tabs (a multi-line note, a patch).

    A ``\\r\\n`` line end becomes ``\\n``; a lone ``\\r`` (which would let a line
    overwrite itself) is escaped.
    """
    s = text if isinstance(text, str) else str(text)
    if "\r\n" in s:
        s = s.replace("\r\n", "\n")
    if _UNSAFE_MULTILINE.search(s) is None:
        return s
    return _UNSAFE_MULTILINE.sub(_escape, s)


def json_text(text: str) -> str:
    """JSON text (from json.dumps) with DEL, C1, bidi and separator characters as ``\\uXXXX``.

    json.dumps escapes C0 controls even with ``ensure_ascii=False`` but leaves these
    raw; they only occur inside JSON strings, so escaping them keeps the value.
    """
    if _JSON_UNSAFE.search(text) is None:
        return text
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
