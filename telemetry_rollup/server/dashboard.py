"""The usage dashboard: a :class:`Report` -> chart data -> one self-contained HTML page.

Three pure layers, so each is tested on its own: :func:`parse_query` (query parameters ->
:class:`Query`), :func:`app_charts` (what every chart of one app is fed) and :func:`render`
(the page, inline SVG from :mod:`telemetry_rollup._html`, no script, no request to any other
host). :func:`load` is the only part that reads the store. Served as ``GET /dashboard`` (see
``app.py``; off unless the config has a ``dashboard`` section) and written by
``report --format html``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date, timedelta
from urllib.parse import urlencode

from telemetry_rollup._html import Chart, chart_html, esc, page, table
from telemetry_rollup.server.report import DIMENSIONS, DURATION_BUCKETS, Report, build_report, outcomes
from telemetry_rollup.server.store import SQLStore

DEFAULT_DAYS = 30
MAX_DAYS = 3660
_DIM_TITLES = {"app_version": "app version", "os": "OS", "python": "Python"}


#: (app, day, distinct machines) rows, from ``SQLStore.machines_per_day``.
MachinesPerDay = list[tuple[str, str, int]]


class QueryError(ValueError):
    """A query parameter is not of the documented shape (the server answers 400)."""


@dataclass(frozen=True)
class Query:
    """What the page shows: one app or all, days ``since``..``until`` (UTC), counters matching ``name``."""

    app: str | None
    since: str
    until: str
    name: str | None = None  # an exact name or an fnmatch glob ("cmd.*")

    def params(self) -> dict[str, str]:
        out = {"since": self.since, "until": self.until}
        if self.app is not None:
            out["app"] = self.app
        if self.name:
            out["name"] = self.name
        return out


def _day(text: str, what: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise QueryError(f"{what} must be a date YYYY-MM-DD") from None


def parse_query(params: Mapping[str, str], today: date) -> Query:
    """``app``, ``days`` (default 30) or ``since``/``until`` (ISO days, UTC), ``name``."""
    until = _day(params["until"], "until") if params.get("until") else today
    if params.get("since"):
        since = _day(params["since"], "since")
    else:
        raw = params.get("days") or str(DEFAULT_DAYS)
        if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_DAYS:
            raise QueryError(f"days must be 1..{MAX_DAYS}")
        since = until - timedelta(days=int(raw) - 1)
    if since > until:
        raise QueryError("since is after until")
    if (until - since).days >= MAX_DAYS:
        raise QueryError(f"at most {MAX_DAYS} days")
    app = params.get("app") or None
    name = params.get("name") or None
    if (app is not None and len(app) > 200) or (name is not None and len(name) > 200):
        raise QueryError("app and name are at most 200 characters")
    return Query(app, since.isoformat(), until.isoformat(), name)


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


def _name_ok(query: Query, name: str) -> bool:
    if not query.name:
        return True
    return fnmatch.fnmatchcase(name, query.name) or fnmatch.fnmatchcase(base_name(name), query.name)


def narrow(report: Report, machines: MachinesPerDay, query: Query) -> tuple[Report, MachinesPerDay]:
    """The report and machines-per-day cut to ``query`` (the store reads only ``day >= since``)."""
    counts = [r for r in report.counts if r["day"] <= query.until and _name_ok(query, r["name"])]
    return (
        replace(
            report,
            until=query.until,
            counts=counts,
            refusals=[r for r in report.refusals if r["day"] <= query.until],
            deletions=[r for r in report.deletions if r["day"] <= query.until],
            outcomes=outcomes(counts),
        ),
        [m for m in machines if m[1] <= query.until],
    )


def load(store: SQLStore, query: Query) -> tuple[Report, MachinesPerDay]:
    """Read what ``query`` shows from the store."""
    since, until = date.fromisoformat(query.since), date.fromisoformat(query.until)
    report = build_report(store, query.app, (until - since).days + 1, until)
    return narrow(report, store.machines_per_day(query.app, query.since), query)


def _days(query: Query) -> list[str]:
    start, end = date.fromisoformat(query.since), date.fromisoformat(query.until)
    return [(start + timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]


def is_derived(name: str) -> bool:
    """A counter timed()/count(outcome=...) writes next to the plain one (shown as outcomes)."""
    return base_name(name) != name


def apps_in(report: Report) -> list[str]:
    """Every app the report has rows for, sorted."""
    found = {r["app"] for r in report.counts} | {r["app"] for r in report.refusals}
    for rows in report.machines.values():
        found |= {r["app"] for r in rows}
    return sorted(found)


def app_charts(report: Report, machines: MachinesPerDay, app: str, query: Query) -> list[Chart]:
    """What each chart of ``app``'s section is fed, in page order. Pure."""
    days = _days(query)
    rows = [r for r in report.counts if r["app"] == app]
    plain = sorted({r["name"] for r in rows if not is_derived(r["name"])})
    charts: list[Chart] = []
    totals = {n: sum(r["total"] for r in rows if r["name"] == n) for n in plain}
    ranked = tuple(sorted(totals.items(), key=lambda kv: (-kv[1], kv[0])))
    charts.append(Chart("totals", "Total counts per counter", ranked, "hbars"))
    per_day = {(m[1]): m[2] for m in machines if m[0] == app}
    charts.append(Chart("machines", "Distinct machines per day", tuple((d, per_day.get(d, 0)) for d in days)))
    for n in plain:
        daily = {r["day"]: r["total"] for r in rows if r["name"] == n}
        charts.append(Chart(f"counts:{n}", f"{n}: total per day", tuple((d, daily.get(d, 0)) for d in days)))
    for dim in DIMENSIONS:
        items = tuple((r["value"], r["machines"]) for r in report.machines[dim] if r["app"] == app)
        charts.append(Chart(f"by:{dim}", f"Machines by {_DIM_TITLES[dim]}", items, "hbars"))
    outs = [o for o in report.outcomes if o["app"] == app]
    charts.append(
        Chart(
            "error_rate",
            "Error rate per operation (errors / (ok + errors))",
            tuple((o["name"], round(o["error_rate"] * 100, 1)) for o in outs),
            "hbars",
            "%",
        )
    )
    for o in outs:
        charts.append(Chart(f"codes:{o['name']}", f"{o['name']}: top error codes", tuple(o["top_codes"]), "hbars"))
        charts.append(
            Chart(
                f"durations:{o['name']}",
                f"{o['name']}: durations",
                tuple((b, o["durations"][b]) for b in DURATION_BUCKETS),
            )
        )
    reasons: dict[str, int] = {}
    for r in report.refusals:
        if r["app"] == app:
            reasons[r["reason"]] = reasons.get(r["reason"], 0) + r["n"]
    charts.append(Chart("refusals", "Counters refused, by reason", tuple(sorted(reasons.items())), "hbars"))
    return charts


def _link(params: Mapping[str, str]) -> str:
    return "?" + urlencode(sorted(params.items()))


def _form(query: Query, extra: Mapping[str, str]) -> str:
    hidden = "".join(f'<input type="hidden" name="{esc(k)}" value="{esc(v)}">' for k, v in extra.items())
    fields = (
        f'<label>app <input name="app" value="{esc(query.app or "")}" size="12"></label>'
        f'<label>since <input name="since" value="{esc(query.since)}" size="10"></label>'
        f'<label>until <input name="until" value="{esc(query.until)}" size="10"></label>'
        f'<label>name <input name="name" value="{esc(query.name or "")}" size="12"'
        ' placeholder="build or cmd.*"></label>'
    )
    return f'<form method="get" action="">{hidden}{fields}<button type="submit">show</button></form>'


def render(
    report: Report,
    machines: MachinesPerDay,
    query: Query,
    *,
    extra_params: Mapping[str, str] | None = None,
    form: bool = True,
) -> str:
    """The whole page. ``extra_params`` are carried in links and the form (the dashboard's ?token=)."""
    extra = dict(extra_params or {})
    apps = apps_in(report)
    scope = query.app or "all apps"
    name = f", counters {query.name}" if query.name else ""
    parts = [
        f"<h1>telemetry_rollup usage: {esc(scope)}</h1>",
        f'<p class="muted">{esc(query.since)} .. {esc(query.until)} (UTC days){esc(name)}. '
        "Counts are what clients sent; machines are distinct random machine ids.</p>",
    ]
    if form:
        parts.append(_form(query, extra))
    if len(apps) > 1 or (query.app is None and apps):
        links = "".join(
            f'<a href="{esc(_link({**extra, **replace(query, app=a).params()}))}">{esc(a or "(apps not allowed)")}</a>'
            for a in apps
        )
        parts.append(f"<nav>apps: {links}</nav>")
    if not apps:
        parts.append('<p class="empty">Nothing stored for this range.</p>')
    for app in apps:
        label = app or "(apps not allowed)"
        parts.append(f'<section class="app" data-app="{esc(app)}"><h2>{esc(label)}</h2>')
        parts.append('<div class="grid">')
        parts.extend(chart_html(c) for c in app_charts(report, machines, app, query))
        parts.append("</div>")
        outs = [o for o in report.outcomes if o["app"] == app]
        if outs:
            parts.append("<h3>Outcomes</h3>")
            parts.append(
                table(
                    ["operation", "calls", "ok", "errors", "error rate"],
                    [[o["name"], o["calls"], o["ok"], o["errors"], f"{o['error_rate'] * 100:.1f}%"] for o in outs],
                )
            )
        dels = [[r["day"], r["n"]] for r in report.deletions if r["app"] == app]
        parts.append("<h3>Deletion requests honoured</h3>" + table(["day", "deletions"], dels))
        parts.append("</section>")
    return page(f"telemetry_rollup usage: {scope}", "\n".join(parts))


def html_report(store: SQLStore, query: Query) -> str:
    """``report --format html``: the page, without the filter form (a file has no server)."""
    report, machines = load(store, query)
    return render(report, machines, query, form=False)


__all__ = ["Query", "QueryError", "app_charts", "html_report", "load", "narrow", "parse_query", "render"]
