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
