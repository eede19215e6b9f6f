"""Reading the data: a query layer returning plain data, and three formatters.

:func:`build_report` asks the store and returns a :class:`Report` of plain lists and dicts,
so a later dashboard can reuse it; :func:`format_table`, :func:`format_json` and
:func:`format_csv` only shape that data. Nothing here imports FastAPI or pydantic.
"""

from __future__ import annotations

import csv
import fnmatch
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import date, timedelta
from typing import Any

from telemetry_rollup.server.store import OTHER_APP, SQLStore

DIMENSIONS = ("app_version", "os", "python")
FORMATS = ("table", "json", "csv")
BAR_WIDTH = 20
_EIGHTHS = " ▏▎▍▌▋▊▉█"


@dataclass(frozen=True)
class Report:
    """Everything the report shows, for days ``since``..``until`` (UTC, inclusive)."""

    since: str
    until: str
    app: str | None
    counts: list[dict[str, Any]]  # app, day, name, total, machines
    machines: dict[str, list[dict[str, Any]]]  # dimension -> app, day, value, machines (distinct that day)
    refusals: list[dict[str, Any]]  # app, day, reason, n
    deletions: list[dict[str, Any]]  # app, day, n
    outcomes: list[dict[str, Any]]  # app, name, calls, ok, errors, error_rate, top_codes, durations
    name: str | None = None  # the counters shown: this name or glob (and what follows it), or all


#: The duration buckets timed() writes, in order (TELEMETRY.md documents the naming scheme).
DURATION_BUCKETS = ("lt10ms", "lt100ms", "lt1s", "lt10s", "lt1m", "ge1m")
TOP_CODES = 5


def base_name(name: str) -> str:
    """The operation a timed()/outcome counter belongs to (``build:dur:lt1s`` -> ``build``)."""
    if ":dur:" in name and name.rsplit(":dur:", 1)[1] in DURATION_BUCKETS:
        return name.rsplit(":dur:", 1)[0]
    if ":error:" in name:
        return name.rsplit(":error:", 1)[0]
    for suffix in (":error", ":ok"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def name_matches(pattern: str | None, name: str) -> bool:
    """The ``name`` filter of the report and the dashboard: the name or the operation it
    belongs to matches the exact name or glob (so ``build`` keeps ``build:ok``)."""
    if not pattern:
        return True
    return fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(base_name(name), pattern)


def outcomes(counts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Group the counters timed() and count(outcome=...) produce back into one row per name:
    calls, errors, error rate, the top error codes and a duration histogram. Pure."""
    per: dict[tuple[str, str], dict[str, Any]] = {}

    def row(app: str, base: str) -> dict[str, Any]:
        return per.setdefault(
            (app, base),
            {
                "app": app,
                "name": base,
                "calls": 0,
                "ok": 0,
                "errors": 0,
                "codes": {},
                "durations": dict.fromkeys(DURATION_BUCKETS, 0),
                "derived": False,
            },
        )

    for r in counts:
        app, name, total = r["app"], r["name"], int(r["total"])
        if ":error:" in name:
            base, code = name.rsplit(":error:", 1)
            codes = row(app, base)["codes"]
            codes[code] = codes.get(code, 0) + total
            row(app, base)["derived"] = True
        elif ":dur:" in name and name.rsplit(":dur:", 1)[1] in DURATION_BUCKETS:
            base, bucket = name.rsplit(":dur:", 1)
            row(app, base)["durations"][bucket] += total
            row(app, base)["derived"] = True
        elif name.endswith(":error"):
            row(app, name[: -len(":error")])["errors"] += total
            row(app, name[: -len(":error")])["derived"] = True
        elif name.endswith(":ok"):
            row(app, name[: -len(":ok")])["ok"] += total
            row(app, name[: -len(":ok")])["derived"] = True
        else:
            row(app, name)["calls"] += total
    out = []
    for (_, _), r in sorted(per.items()):
        if not r.pop("derived"):
            continue
        outcomes_seen = r["ok"] + r["errors"]
        r["error_rate"] = round(r["errors"] / outcomes_seen, 4) if outcomes_seen else 0.0
        r["top_codes"] = sorted(r.pop("codes").items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_CODES]
        out.append(r)
    return out


def _app_label(app: str) -> str:
    return "(apps not allowed)" if app == OTHER_APP else app


def build_report(
    store: SQLStore,
    app: str | None,
    days: int,
    today: date,
    *,
    since: str | None = None,
    until: str | None = None,
    name: str | None = None,
) -> Report:
    """Query days ``since``..``until`` (ISO, UTC; by default the last ``days`` days up to
    ``today``); ``app=None`` means every app. ``name`` (an exact name or glob) narrows the
    counters and outcomes; machines, refusals and deletions are not per counter and stay whole."""
    until = until or today.isoformat()
    since = since or (date.fromisoformat(until) - timedelta(days=days - 1)).isoformat()
    counts = [
        {"app": a, "day": d, "name": n, "total": t, "machines": m}
        for a, d, n, t, m in store.daily_counts(app, since, until)
        if name_matches(name, n)
    ]
    machines = {
        dim: [
            {"app": a, "day": d, "value": v, "machines": m} for a, d, v, m in store.machines_by(dim, app, since, until)
        ]
        for dim in DIMENSIONS
    }
    refusals = [
        {"app": _app_label(a), "day": d, "reason": r, "n": n} for a, d, r, n in store.refusals(app, since, until)
    ]
    deletions = [{"app": a, "day": d, "n": n} for a, d, n in store.deletions(app, since, until)]
    return Report(since, until, app, counts, machines, refusals, deletions, outcomes(counts), name)


def machine_days(rows: Iterable[tuple[str, str, str, int]]) -> list[tuple[str, str, int]]:
    """(app, value, machine-days) from per-day rows (app, day, value, machines), largest first per
    app: a machine counts once for each day it reported with that value. Pure."""
    sums: dict[tuple[str, str], int] = {}
    for app, _, value, machines in rows:
        sums[(app, value)] = sums.get((app, value), 0) + int(machines)
    return sorted(((a, v, n) for (a, v), n in sums.items()), key=lambda t: (t[0], -t[2], t[1]))


def bar(value: int, largest: int, width: int = BAR_WIDTH) -> str:
    """A bar of unicode eighth blocks, ``width`` cells for ``largest``; at least a sliver > 0."""
    if largest <= 0 or value <= 0:
        return ""
    eighths = max(1, round(value * width * 8 / largest))
    full, rest = divmod(eighths, 8)
    return "█" * full + (_EIGHTHS[rest] if rest else "")


def _table(headers: list[str], rows: list[list[Any]], bar_column: int | None) -> list[str]:
    if not rows:
        return ["  (none)"]
    largest = max(int(r[bar_column]) for r in rows) if bar_column is not None else 0
    cells = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    numeric = [all(isinstance(r[i], int) for r in rows) for i in range(len(headers))]

    def line(values: list[str]) -> str:
        parts = [v.rjust(widths[i]) if numeric[i] else v.ljust(widths[i]) for i, v in enumerate(values)]
        return "  " + "  ".join(parts)

    out = [line(headers), line(["-" * w for w in widths])]
    for raw, text in zip(rows, cells):
        suffix = "  " + bar(int(raw[bar_column]), largest) if bar_column is not None else ""
        out.append((line(text) + suffix).rstrip())
    return out


def format_table(report: Report) -> str:
    scope = report.app if report.app is not None else "all apps"
    narrowed = f", counters matching {report.name}" if report.name else ""
    out = [f"telemetry_rollup report: {scope}, {report.since} .. {report.until} (UTC){narrowed}", ""]
    out.append("Counts per day and name")
    out += _table(
        ["app", "day", "name", "total", "machines"],
        [[r["app"], r["day"], r["name"], r["total"], r["machines"]] for r in report.counts],
        3,
    )
    for dim in DIMENSIONS:
        out += ["", f"Machine-days per {dim.replace('_', ' ')} (a machine counts once per day it reported)"]
        days = machine_days((r["app"], r["day"], r["value"], r["machines"]) for r in report.machines[dim])
        out += _table(["app", dim, "machine-days"], [list(r) for r in days], 2)
    out += ["", "Counters refused, by reason"]
    out += _table(
        ["app", "day", "reason", "refused"],
        [[r["app"], r["day"], r["reason"], r["n"]] for r in report.refusals],
        3,
    )
    out += ["", "Outcomes and durations (from timed() and count(outcome=...))"]
    if not report.outcomes:
        out.append("  (none)")
    for r in report.outcomes:
        codes = ", ".join(f"{c} {n}" for c, n in r["top_codes"]) or "-"
        # "calls" counts every call of the name; only calls made with an outcome (timed(),
        # count(outcome=...)) are ok or errors, and the error rate is of those.
        out.append(
            f"  {r['app']} {r['name']}: {r['calls']} calls; {r['ok'] + r['errors']} with an outcome:"
            f" {r['ok']} ok, {r['errors']} errors ({r['error_rate'] * 100:.1f}%); top codes: {codes}"
        )
        largest = max(r["durations"].values())
        for bucket in DURATION_BUCKETS:
            n = r["durations"][bucket]
            out.append(f"    {bucket:>7}  {n:>8}  {bar(n, largest)}".rstrip())
    out += ["", "Deletion requests honoured"]
    out += _table(["app", "day", "deletions"], [[r["app"], r["day"], r["n"]] for r in report.deletions], 2)
    return "\n".join(out) + "\n"


def format_json(report: Report) -> str:
    # The fields are plain lists and dicts already: asdict()'s deep copy of them was half the
    # report's CPU time at a million machines (tens of thousands of rows over 30 days).
    return json.dumps({f.name: getattr(report, f.name) for f in fields(report)}, indent=2, sort_keys=True) + "\n"


CSV_COLUMNS = ("section", "app", "day", "key", "value", "machines")


def format_csv(report: Report) -> str:
    """One CSV table; ``section`` says which part of the report a row belongs to."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in report.counts:
        writer.writerow(["counts", r["app"], r["day"], r["name"], r["total"], r["machines"]])
    for dim in DIMENSIONS:
        for r in report.machines[dim]:
            writer.writerow([dim, r["app"], r["day"], r["value"], r["machines"], r["machines"]])
    for r in report.refusals:
        writer.writerow(["refusals", r["app"], r["day"], r["reason"], r["n"], ""])
    for r in report.deletions:
        writer.writerow(["deletions", r["app"], r["day"], "", r["n"], ""])
    for r in report.outcomes:
        writer.writerow(["calls", r["app"], "", r["name"], r["calls"], ""])
        writer.writerow(["errors", r["app"], "", r["name"], r["errors"], ""])
        writer.writerow(["error_rate", r["app"], "", r["name"], r["error_rate"], ""])
        for code, n in r["top_codes"]:
            writer.writerow(["error_code", r["app"], "", f"{r['name']}:{code}", n, ""])
        for bucket in DURATION_BUCKETS:
            writer.writerow(["duration", r["app"], "", f"{r['name']}:{bucket}", r["durations"][bucket], ""])
    return buf.getvalue()


FORMATTERS = {"table": format_table, "json": format_json, "csv": format_csv}
