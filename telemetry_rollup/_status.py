"""What is recorded about this machine, per app, as one JSON-ready dict. Reads only; creates nothing.

The shape (``python -m telemetry_rollup status --json`` prints ``{"schema": 1, "data_root": ...,
"apps": [<app status>, ...]}``; TELEMETRY.md documents it, and keys are only ever added)::

    {
      "app": "acme",
      "mode": "on" | "local" | "off",          # what applies in this environment
      "source": "DO_NOT_TRACK" | "ACME_TELEMETRY" | "stored" | "default",
      "env_var": "ACME_TELEMETRY",             # the app's own variable
      "env_value": "disabled" | null,          # the value of the variable that decided, as read
      "stored": "on" | "local" | "off" | null, # the choice in mode.json
      "stored_at": "2026-11-21T10:00:00Z" | null,
      "default": "on",
      "endpoint": "https://..." | null,        # null too when config.json holds a refused one
      "endpoint_refused": "plain http is ..." | null,  # why config.json's endpoint is refused
      "machine_id": "uuid" | null,             # derived from the machine's key (never shown)
      "data_dir": "/home/u/.local/state/telemetry-rollup/acme",
      "unsafe": "... is writable by group or others" | null,  # then mode is off, source "unsafe"
      "notice_shown": true,
      "buffer": {"bytes": 1234, "cap": 262144, "spill_files": 0},
      "pending": {
        "reports": 2,                          # closed reports waiting in the outbox
        "counts": 345,                         # every count on this machine not yet delivered
        "days": [{"day": "2026-11-20", "counts": 300, "reports": 1, "report_counts": 300,
                  "complete": true,            # report_counts: the part already in reports
                  "state": "open" | "complete" | "closed",
                  "names": {"build": 280, "lint": 20}}, ...]  # every pending counter, today's too
      },
      "local_only": {"counts": 12, "days": {"2026-11-19": 12},  # kept here, never sent
                     "until": "2026-12-19" | null},
      "reserved": {"_dropped": 0, ...},        # reserved counters among the pending counts
      "totals": {"reports_sent": 0, "counts_sent": 0, "reports_rejected": 0,
                 "counts_rejected": 0, "counters_refused": 0},
      "last_attempt": {"at": 1763719200.0, "result": "sent"|"rejected"|"retry", "status": 200,
                       "detail": "HTTP 200", "sent": 1, "rejected": 0, "kept": 0} | null,
      "next_attempt": {"at": 1763722800.0 | null, "why": "..."},
      "deletion_requests": [{"machine_id": ..., "endpoint": ..., "created_at": ..., "attempts": 0,
                             "last_result": null}]
    }
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import _days, _fs
from ._codec import decode_lines, decode_report
from ._endpoint import endpoint_problem, shown
from ._line import BUFFER_CAP
from ._names import CLAMPED, CORRUPT, DENIED, DROPPED, INVALID, OVERFLOW
from ._rollup import MAX_REPORT_AGE_DAYS
from ._store import MAX_BUFFER_READ, AppStore

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ._appfiles import AppFiles

SCHEMA = 1
RESERVED = (DROPPED, INVALID, DENIED, CORRUPT, OVERFLOW, CLAMPED)
_FORGET_KEYS = ("machine_id", "endpoint", "created_at", "attempts", "last_result")
TOTAL_KEYS = ("reports_sent", "counts_sent", "reports_rejected", "counts_rejected", "counters_refused")


def _committed_gen(store: AppStore) -> Path | None:
    data = _fs.read_capped(store.current, 128)
    if not data:
        return None
    name = data.decode("ascii", "replace").strip()
    gen = Path(store.outbox) / name
    if not name.startswith("gen-") or "/" in name or not gen.is_dir():
        return None
    return gen


def _files(directory: Path, suffix: str) -> list[Path]:
    try:
        return sorted(p for p in directory.iterdir() if p.name.endswith(suffix) and not p.name.startswith("."))
    except OSError:
        return []


def pending(store: AppStore, today: str) -> tuple[dict[str, Any], dict[str, int]]:
    """Per day: the counts in closed reports, plus those still in the buffer, spill files,
    claimed inputs and the carry (not yet rolled up). Read without locks: a snapshot."""
    days: dict[str, dict[str, int]] = {}
    reserved = dict.fromkeys(RESERVED, 0)
    n_reports = 0

    names: dict[str, dict[str, int]] = {}

    def add(day: str, name: str, c: int, in_report: bool) -> None:
        d = days.setdefault(day, {"counts": 0, "reports": 0, "report_counts": 0})
        d["counts"] += c
        if in_report:
            d["report_counts"] += c
        if name in reserved:
            reserved[name] += c
        per_name = names.setdefault(day, {})
        per_name[name] = per_name.get(name, 0) + c

    raw: list[Path] = [Path(store.buffer), *map(Path, store.spill_files())]
    gen = _committed_gen(store)
    if gen is not None:
        for p in _files(gen / "reports", ".json"):
            r = decode_report(_fs.read_capped(p, MAX_BUFFER_READ, links_ok=True) or b"")
            if r is None:
                continue
            n_reports += 1
            days.setdefault(r["day"], {"counts": 0, "reports": 0, "report_counts": 0})["reports"] += 1
            for name, c in r["counts"].items():
                add(r["day"], name, c, True)
        raw += [*_files(gen / "inputs", ".jsonl"), gen / "carry.jsonl"]
    for p in raw:
        data = _fs.read_capped(p, MAX_BUFFER_READ)
        if data:
            for (day, name), c in decode_lines(data).rollup.items():
                add(day, name, c, False)
    out_days = [
        {
            "day": d,
            **v,
            "complete": d < today,
            "state": day_state(d < today, v["counts"], v["report_counts"]),
            "names": dict(sorted(names.get(d, {}).items(), key=lambda kv: (-kv[1], kv[0]))),
        }
        for d, v in sorted(days.items())
    ]
    return {
        "reports": n_reports,
        "counts": sum(v["counts"] for v in days.values()),
        "days": out_days,
    }, reserved


def local_only(store: AppStore) -> dict[str, Any]:
    """The counts kept on this machine only (recorded while local, before the notice was shown,
    or just before a switch to on): never sent. Each day's are deleted once 30 days old (at the
    next roll-up or compaction), so the last are kept until ``until``."""
    days: dict[str, int] = {}
    raw: list[Path] = [Path(store.buffer), *map(Path, store.spill_files())]
    gen = _committed_gen(store)
    if gen is not None:
        raw += [*_files(gen / "inputs", ".jsonl"), gen / "carry.jsonl"]
    for p in raw:
        data = _fs.read_capped(p, MAX_BUFFER_READ)
        if data:
            for (day, _), c in decode_lines(data).local.items():
                days[day] = days.get(day, 0) + c
    until = None
    if days:
        until = _days.iso(_days.parse_iso(max(days)) + MAX_REPORT_AGE_DAYS)
    return {"counts": sum(days.values()), "days": dict(sorted(days.items())), "until": until}


def day_state(complete: bool, counts: int, report_counts: int) -> str:
    """The state of a pending day: "open" (today, or later after a clock jump: still counting),
    "closed" (all of it in reports waiting to be sent) or "complete" (over; closed into a report
    at the next send, in part or whole)."""
    if not complete:
        return "open"
    return "closed" if counts == report_counts else "complete"


def _next_attempt(
    files: AppFiles,
    mode: str,
    source: str,
    endpoint: Any,
    refused: str | None,
    state: Mapping[str, Any],
    pend: Mapping[str, Any],
    now: float,
) -> dict[str, Any]:
    if mode != "on":
        return {"at": None, "why": f"mode is {mode}: nothing is sent"}
    if refused is not None:
        return {"at": None, "why": f"the endpoint is refused ({refused}): nothing is sent"}
    if not isinstance(endpoint, str) or not endpoint:
        return {"at": None, "why": "no endpoint configured"}
    if source == "default":
        shown_at = files.notice_at
        if shown_at is None:
            return {"at": None, "why": "not before the notice has been shown, and its UTC day is over"}
        next_day = float((_days.day_of(shown_at) + 1) * _days.SECONDS_PER_DAY)
        if next_day > now:
            return {"at": next_day, "why": "not before the UTC day the notice was shown on is over"}
    if not pend["days"]:
        return {"at": None, "why": "nothing pending"}
    interval = files.config.get("send_interval", 3600.0)
    interval = float(interval) if isinstance(interval, (int, float)) else 3600.0
    at = max(
        float(state.get("next_attempt_at", 0) or 0),
        float(state.get("last_auto_try_at", 0) or 0) + interval,
    )
    if not pend["reports"] and not any(d["complete"] for d in pend["days"]):
        first = min(d["day"] for d in pend["days"])
        at = max(at, float((_days.parse_iso(first) + 1) * _days.SECONDS_PER_DAY))
        why = "when the app runs after the day is over (UTC)"
    elif float(state.get("next_attempt_at", 0) or 0) > now:
        why = "backing off after a failed attempt; when the app next runs after that"
    else:
        why = "when the app next runs"
    return {"at": max(at, now), "why": why}


def app_status(store: AppStore, environ: Mapping[str, str] | None = None, now: float | None = None) -> dict[str, Any]:
    """The status of one app (the shape above). Creates no file and sends nothing."""
    import time

    from ._appfiles import decide, read
    from ._control import forget_requests

    env = os.environ if environ is None else environ
    t = time.time() if now is None else now
    today = _days.iso(_days.day_of(t))
    files = read(store)
    config = files.config
    state = store.state()
    decision = decide(files, env)
    # Only an endpoint that follows the rule is echoed: a hand-edited config.json may hold a secret.
    raw_endpoint = config.get("endpoint")
    endpoint = shown(raw_endpoint)
    refused = endpoint_problem(raw_endpoint) if raw_endpoint not in (None, "") else None
    pend, reserved = pending(store, today)
    raw_totals = state.get("totals")
    totals = raw_totals if isinstance(raw_totals, dict) else {}
    last = state.get("last_attempt")
    return {
        "app": store.app,
        "mode": decision.mode,
        "source": decision.source,
        "env_var": f"{files.prefix}_TELEMETRY",
        "env_value": env.get(decision.source) if decision.source not in ("stored", "default") else None,
        "stored": files.stored,
        "stored_at": files.stored_at,
        "default": files.default,
        "endpoint": endpoint,
        "endpoint_refused": refused,
        "machine_id": _machine_id(store),
        "data_dir": str(store.dir),
        "unsafe": files.unsafe,
        "notice_shown": files.notice_at is not None,
        "buffer": {"bytes": _fs.file_size(store.buffer), "cap": BUFFER_CAP, "spill_files": len(store.spill_files())},
        "pending": pend,
        "local_only": local_only(store),
        "reserved": reserved,
        "totals": {k: int(totals.get(k, 0) or 0) for k in TOTAL_KEYS},
        "last_attempt": last if isinstance(last, dict) else None,
        "next_attempt": _next_attempt(files, decision.mode, decision.source, endpoint, refused, state, pend, t),
        "deletion_requests": [
            {k: shown(r.get(k)) if k == "endpoint" else r.get(k) for k in _FORGET_KEYS} for r in forget_requests(store)
        ],
    }


def _machine_id(store: AppStore) -> str | None:
    """The id people see; the key it is derived from is never part of the status."""
    from ._identity import current_id

    return current_id(store.dir)


def status_all(stores: list[AppStore], root: str, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The document ``status --json`` prints."""
    return {"schema": SCHEMA, "data_root": str(root), "apps": [app_status(s, environ) for s in stores]}
