"""Flat JSON objects read and written without importing ``json`` or ``orjson``.

A short CLI reads ``mode.json`` at ``configure()`` and compares ``config.json`` at exit; ``json``
costs it ~3 ms (it loads ``re``) and orjson ~8 ms. The files on that path are flat objects, so:

- :func:`loads` reads an object whose values are strings, numbers, ``true``, ``false`` or
  ``null``, exactly as ``json.loads`` would; anything else (nesting, NaN, bad syntax) returns
  None and the caller falls back to the full parser. Hypothesis pins it to ``json.loads``.
- :func:`dumps` writes such an object (lists of strings allowed) byte for byte as
  ``orjson.dumps(obj, option=OPT_SORT_KEYS | OPT_INDENT_2)`` does, so a file written by either
  compares equal and is not rewritten.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_WS = " \t\n\r"
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_DIGITS = "0123456789"
_WORDS = {"true": True, "false": False, "null": None}


class _NotFlat(Exception):
    pass


def loads(data: bytes) -> dict[str, Any] | None:
    """The flat object in ``data``, or None (not flat, or not JSON)."""
    try:
        s = data.decode("utf-8")
        if s.startswith("\ufeff"):
            return None  # json.loads refuses a BOM in a str
        i = _skip(s, 0)
        if s[i] != "{":
            return None
        out: dict[str, Any] = {}
        i = _skip(s, i + 1)
        if s[i] == "}":
            return out if _skip(s, i + 1) == len(s) else None
        while True:
            if s[i] != '"':
                return None
            key, i = _string(s, i + 1)
            i = _skip(s, i)
            if s[i] != ":":
                return None
            out[key], i = _value(s, _skip(s, i + 1))
            i = _skip(s, i)
            if s[i] == "}":
                return out if _skip(s, i + 1) == len(s) else None
            if s[i] != ",":
                return None
            i = _skip(s, i + 1)
    except (IndexError, ValueError, UnicodeDecodeError, _NotFlat):
        return None


def _skip(s: str, i: int) -> int:
    n = len(s)
    while i < n and s[i] in _WS:
        i += 1
    return i


def _string(s: str, i: int) -> tuple[str, int]:
    """The string starting after its opening quote at ``i``; returns it and the index after it."""
    parts = []
    while True:
        j = i
        while s[j] != '"' and s[j] != "\\":
            if s[j] < " ":
                raise ValueError("control character in a string")
            j += 1
        parts.append(s[i:j])
        if s[j] == '"':
            return "".join(parts), j + 1
        esc = s[j + 1]
        if esc == "u":
            code = _hex4(s, j + 2)
            i = j + 6
            if 0xD800 <= code < 0xDC00 and s[i : i + 2] == "\\u":
                low = _hex4(s, i + 2)
                if 0xDC00 <= low < 0xE000:
                    code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                    i += 6
            parts.append(chr(code))
        else:
            if esc not in _ESCAPES:
                raise ValueError("bad escape")
            parts.append(_ESCAPES[esc])
            i = j + 2


def _hex4(s: str, i: int) -> int:
    h = s[i : i + 4]
    if len(h) != 4 or not all(c in "0123456789abcdefABCDEF" for c in h):
        raise ValueError("bad \\u escape")
    return int(h, 16)


def _value(s: str, i: int) -> tuple[Any, int]:
    c = s[i]
    if c == '"':
        return _string(s, i + 1)
    if c in "{[":
        raise _NotFlat
    for word, value in _WORDS.items():
        if s.startswith(word, i):
            return value, i + len(word)
    return _number(s, i)


def _number(s: str, i: int) -> tuple[int | float, int]:
    start = i
    if s[i] == "-":
        i += 1
    if s[i] == "0":
        i += 1
    elif s[i] in _DIGITS:
        while i < len(s) and s[i] in _DIGITS:
            i += 1
    else:
        raise ValueError("not a number")
    is_float = False
    if i < len(s) and s[i] == ".":
        is_float = True
        i += 1
        if s[i] not in _DIGITS:
            raise ValueError("bad fraction")
        while i < len(s) and s[i] in _DIGITS:
            i += 1
    if i < len(s) and s[i] in "eE":
        is_float = True
        i += 1
        if s[i] in "+-":
            i += 1
        if s[i] not in _DIGITS:
            raise ValueError("bad exponent")
        while i < len(s) and s[i] in _DIGITS:
            i += 1
    text = s[start:i]
    return (float(text) if is_float else int(text)), i


# -- writing ---------------------------------------------------------------------------------------
_SHORT = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _str(text: str) -> str:
    out = []
    for ch in text:
        if ch in _SHORT:
            out.append(_SHORT[ch])
        elif ch < " " or "\ud800" <= ch <= "\udfff":  # a lone surrogate cannot be UTF-8: escape it
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        if not -1e309 < value < 1e309:  # NaN and the infinities
            return "null"  # as orjson writes them
        r = repr(value)
        if "e" in r:  # orjson writes 1.5e-7 where repr gives 1.5e-07
            mant, exp = r.split("e")
            sign = exp[0] if exp[0] in "+-" else ""
            r = f"{mant}e{sign}{exp.lstrip('+-').lstrip('0') or '0'}"
        return r
    return _str(value if isinstance(value, str) else str(value))


def dumps(obj: dict[str, Any]) -> bytes:
    """``obj`` (string keys; scalar values or lists of scalars) as sorted, 2-space indented JSON."""
    if not obj:
        return b"{}"
    lines = []
    for key in sorted(obj):
        value = obj[key]
        if isinstance(value, (list, tuple)):
            text = "[]" if not value else "[\n" + ",\n".join(f"    {_scalar(v)}" for v in value) + "\n  ]"
        else:
            text = _scalar(value)
        lines.append(f"  {_str(key)}: {text}")
    return ("{\n" + ",\n".join(lines) + "\n}").encode("utf-8")
