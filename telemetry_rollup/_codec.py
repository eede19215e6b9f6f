"""Bytes <-> buffer lines and reports, and the wire payload.

Buffer line (format version 1), one per (day, name), compact JSON exactly as orjson writes it::

    {"v":1,"d":"2026-11-21","n":"build","c":30}

Decoding never raises on a bad line: it is counted as corrupt. A line of a newer format version
is kept byte for byte (a newer library will read it), never discarded.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from . import _days
from ._line import encode_line_fast  # noqa: F401 - re-exported; the write side lives with the exit path
from ._names import CLAMPED, MAX_COUNT, is_wire_name

LINE_VERSION = 1
#: Wire format 2: format 1 plus ``machine_key``, the proof that the request comes from the
#: machine whose id it names (see _identity.py). Format 1 is only ever sent for a deletion
#: request of an id made by an older version (which has no key).
WIRE_SCHEMA = 2

#: (ISO day, name) -> count
Rollup = dict[tuple[str, str], int]


def add_count(rollup: Rollup, day: str, name: str, c: int) -> None:
    """``rollup[(day, name)] += c``, holding at most MAX_COUNT (see ``_names.MAX_COUNT``).

    The excess of an app's counter goes to ``(day, _clamped)``; a reserved counter saturates.
    Saturating addition is associative and commutative, so merge order never matters."""
    key = (day, name)
    total = rollup.get(key, 0) + c
    if total <= MAX_COUNT:
        rollup[key] = total
        return
    rollup[key] = MAX_COUNT
    if name[0] != "_":
        clamped = (day, CLAMPED)
        rollup[clamped] = min(MAX_COUNT, rollup.get(clamped, 0) + total - MAX_COUNT)


def _exact_count(line: bytes, c: Any) -> Any:
    """orjson reads integers past 2**64 as floats: re-read such a line with the stdlib parser to
    get the integer back (it is clamped anyway), so a huge value is never lost as corrupt."""
    if type(c) is not float or not c >= 2**64:
        return c
    import json

    try:
        obj = json.loads(line)
    except (ValueError, RecursionError):
        return c
    return obj.get("c") if isinstance(obj, dict) else c


class Decoded(NamedTuple):
    rollup: Rollup
    foreign: list[bytes]  # lines of a newer format version, kept verbatim
    corrupt: int


def encode_lines(rollup: Rollup) -> bytes:
    import orjson

    return b"".join(
        orjson.dumps({"v": LINE_VERSION, "d": d, "n": n, "c": c}) + b"\n" for (d, n), c in sorted(rollup.items())
    )


def _valid_day(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        _days.parse_iso(value)
    except ValueError:
        return False
    return True


def decode_lines(data: bytes) -> Decoded:
    """Parse buffer bytes into a rollup (lines of one (day, name) summed, clamped: ``add_count``)."""
    import orjson

    rollup: Rollup = {}
    foreign: list[bytes] = []
    corrupt = 0
    for raw in data.split(b"\n"):
        line = raw.strip()
        if not line:
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            corrupt += 1
            continue
        if not isinstance(obj, dict):
            corrupt += 1
            continue
        v = obj.get("v")
        if type(v) is int and v > LINE_VERSION:
            foreign.append(line)
            continue
        d, n, c = obj.get("d"), obj.get("n"), _exact_count(line, obj.get("c"))
        if (
            v != LINE_VERSION
            or type(c) is not int
            or c < 0
            or not isinstance(n, str)
            or not isinstance(d, str)
            or not is_wire_name(n)
            or not _valid_day(d)
        ):
            corrupt += 1
            continue
        add_count(rollup, d, n, c)
    return Decoded(rollup, foreign, corrupt)


def encode_report(report: dict[str, Any]) -> bytes:
    import orjson

    return orjson.dumps(report, option=orjson.OPT_SORT_KEYS)


def decode_report(data: bytes) -> dict[str, Any] | None:
    """A stored report, or None when the file is not a valid one."""
    import orjson

    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(obj, dict):
        return None
    rid, day, counts = obj.get("id"), obj.get("day"), obj.get("counts")
    if not isinstance(rid, str) or not _valid_day(day) or not isinstance(counts, dict):
        return None
    if not counts or not all(is_wire_name(k) and type(c) is int and c >= 0 for k, c in counts.items()):
        return None
    return {"id": rid, "day": day, "counts": counts}


def encode_payload(meta: dict[str, Any], reports: list[dict[str, Any]]) -> bytes:
    """The request body of wire format 2 (TELEMETRY.md documents every field)."""
    import orjson

    body = {
        "schema": WIRE_SCHEMA,
        "app": meta["app"],
        "app_version": meta["app_version"],
        "lib_version": meta["lib_version"],
        "machine_id": meta["machine_id"],
        "machine_key": meta["machine_key"],
        "os": meta["os"],
        "arch": meta["arch"],
        "python": meta["python"],
        "ci": meta["ci"],
        "reports": [{"id": r["id"], "day": r["day"], "counts": r["counts"]} for r in reports],
    }
    return orjson.dumps(body)


def encode_forget(app: str, machine_id: str, machine_key: str | None = None) -> bytes:
    """A deletion request: format 2 with the key; format 1 for an id of an older version."""
    import orjson

    if machine_key is None:
        return orjson.dumps({"schema": 1, "app": app, "machine_id": machine_id, "forget": True})
    return orjson.dumps(
        {"schema": WIRE_SCHEMA, "app": app, "machine_id": machine_id, "machine_key": machine_key, "forget": True}
    )
