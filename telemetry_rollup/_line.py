"""The buffer's line format (version 1, the write side) and its size cap.

Kept apart from ``_codec`` (the reading side, which needs orjson and ``typing``) because every
short CLI's exit hook writes lines and must load nothing heavy to do it.
"""

from __future__ import annotations

from ._days import iso

#: The buffer file never grows beyond this many bytes (older days are dropped under ``_dropped``).
BUFFER_CAP = 256 * 1024


def encode_line_fast(day: str, name: str, n: int) -> bytes:
    """One buffer line without orjson, for the exit hook of a short CLI.

    Valid names and ISO days contain no character JSON escapes, so this is byte-identical to
    ``orjson.dumps({"v": 1, "d": day, "n": name, "c": n}) + b"\\n"`` (a property test pins it).
    """
    return b'{"v":1,"d":"%s","n":"%s","c":%d}\n' % (day.encode(), name.encode(), n)


def encode_snapshot(snapshot: dict[tuple[int, str], int]) -> tuple[bytes, dict[tuple[str, str], int]]:
    """Counters keyed by (day number, name) -> the lines to append (one per day x name, sorted)
    and the same counts keyed by ISO day."""
    rollup: dict[tuple[str, str], int] = {}
    for (day, name), c in snapshot.items():
        if c > 0:
            key = (iso(day), name)
            rollup[key] = rollup.get(key, 0) + c
    return b"".join(encode_line_fast(d, n, c) for (d, n), c in sorted(rollup.items())), rollup


#: A line exactly as :func:`encode_line_fast` writes it, as (day and name, count): a valid wire
#: name (``_names.is_wire_name``: a test pins the two together) and a count a JSON reader takes as
#: an integer (at most 18 digits).
_NAME = rb"(?:[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}|_[A-Za-z0-9_.:-]{1,63})"
_OWN_LINE = rb'^\{"v":1,"d":"(\d{4}-\d\d-\d\d","n":"' + _NAME + rb')","c":(0|[1-9][0-9]{0,17})\}$'
_LIMIT = 1 << 62  # sums stay far below what any JSON reader takes as an integer


def split_own(data: bytes) -> tuple[dict[tuple[str, str], int], bytes]:
    """Read the lines :func:`encode_line_fast` writes without a JSON parser: their counts summed
    per (day, name), and every other line as it was (for ``_codec.decode_lines`` to judge).

    For compacting a full buffer (the exit hook's worst case): one regular-expression pass in C
    instead of parsing and validating each of ~6,000 lines (about 3x faster here), and no orjson
    import (~8 ms in a fresh process) when every line is ours. ``decode_lines(data)`` equals this
    rollup plus ``decode_lines(rest)`` (a property test pins it); when a day is not a calendar
    date or a sum grows past 2**62, everything is left to the codec.
    """
    import re  # only here: compaction is rare, and re costs a short CLI ~3 ms to import

    matches = re.findall(_OWN_LINE, data, re.MULTILINE)
    sums: dict[bytes, int] = {}
    get = sums.get
    for head, count in matches:
        sums[head] = get(head, 0) + int(count)
    from ._days import parse_iso

    rollup: dict[tuple[str, str], int] = {}
    checked: set[bytes] = set()
    for head, n in sums.items():
        day = head[:10]
        if day not in checked:
            try:
                parse_iso(day.decode())
            except ValueError:
                return {}, data  # a malformed date is the codec's to count as corrupt, line by line
            checked.add(day)
        if n >= _LIMIT:
            return {}, data
        rollup[(day.decode(), head[17:].decode())] = n  # head: <day>","n":"<name>
    lines = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
    if len(matches) == lines:
        return rollup, b""  # every line was ours
    return rollup, re.sub(_OWN_LINE, b"", data, flags=re.MULTILINE)
