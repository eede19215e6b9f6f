"""The usage dashboard: store rows -> per-app page data -> chart data -> one self-contained page.

Pure layers, each tested on its own: :func:`parse_query` (query parameters -> :class:`Query`),
:func:`shape_app` (one app's rows -> :class:`AppData`, the part of them one page shows),
:func:`app_charts` (what every chart of one app is fed) and :func:`render` (the page, inline SVG
from :mod:`telemetry_rollup._html`, no script, no request to any other host). :func:`load` is the
only part that reads the store. Served as ``GET /dashboard`` (see ``dashboard_http.py``; off
unless the config has a ``dashboard`` section) and written by ``report --format html``.

A page stays small whatever is stored: at most :data:`PAGE_APPS` app sections, and per app the
:data:`PAGE_NAMES` counters and :data:`PAGE_OPERATIONS` operations of its page (largest first,
with links to the next page), the :data:`TOP_VALUES` most common app versions, OSes and Python
versions (the rest summed as one bar). The store sums per name in SQL, so memory follows the
number of distinct names (capped per app and day at ingest), never the number of reports.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from typing import Any
from urllib.parse import urlencode

from telemetry_rollup._html import Chart, chart_html, esc, page, table
from telemetry_rollup.server.report import (
    DIMENSIONS,
    DURATION_BUCKETS,
    base_name,
    machine_days,
    name_matches,
    outcomes,
)
from telemetry_rollup.server.store import OTHER_APP, SQLStore

DEFAULT_DAYS = 30
MAX_DAYS = 3660
#: Page sizes: app sections per all-apps page, counters and operations per app page.
PAGE_APPS = 10
PAGE_NAMES = 20
PAGE_OPERATIONS = 10
#: Values shown per "machines by" chart; the rest are one bar.
TOP_VALUES = 10
MAX_PAGE = 100_000
_DIM_TITLES = {"app_version": "app version", "os": "OS", "python": "Python"}
#: The first day the dashboard can show: date arithmetic before it is meaningless here.
FIRST_DAY = date(2000, 1, 1)


class QueryError(ValueError):
    """A query parameter is not of the documented shape (the server answers 400)."""


@dataclass(frozen=True)
class Query:
    """What the page shows: one app or all, days ``since``..``until`` (UTC), counters matching
    ``name``, and which ``page`` (of apps, or of one app's counters)."""

    app: str | None
    since: str
    until: str
    name: str | None = None  # an exact name or an fnmatch glob ("cmd.*")
    page: int = 1

    def params(self) -> dict[str, str]:
        out = {"since": self.since, "until": self.until}
        if self.app is not None:
            out["app"] = self.app
        if self.name:
            out["name"] = self.name
        if self.page != 1:
            out["page"] = str(self.page)
        return out


def _day(text: str, what: str) -> date:
    try:
        value = date.fromisoformat(text)
    except ValueError:
        raise QueryError(f"{what} must be a date YYYY-MM-DD") from None
    if value < FIRST_DAY:
        raise QueryError(f"{what} must be a date from {FIRST_DAY.isoformat()} on")
    return value


def _int(text: str, what: str, low: int, high: int) -> int:
    if not (text.isascii() and text.isdigit()) or not low <= int(text) <= high:
        raise QueryError(f"{what} must be {low}..{high}")
    return int(text)


def parse_query(params: Mapping[str, str], today: date) -> Query:
    """``app``, ``days`` (default 30) or ``since``/``until`` (ISO days, UTC), ``name``, ``page``."""
    until = _day(params["until"], "until") if params.get("until") else today
    if params.get("since"):
        since = _day(params["since"], "since")
    else:
        days = _int(params.get("days") or str(DEFAULT_DAYS), "days", 1, MAX_DAYS)
        since = until - timedelta(days=days - 1)
        if since < FIRST_DAY:
            raise QueryError(f"the range must start on {FIRST_DAY.isoformat()} or later")
    if since > until:
        raise QueryError("since is after until")
    if (until - since).days >= MAX_DAYS:
        raise QueryError(f"at most {MAX_DAYS} days")
    app = params.get("app") or None
    name = params.get("name") or None
    if (app is not None and len(app) > 200) or (name is not None and len(name) > 200):
        raise QueryError("app and name are at most 200 characters")
    page_no = _int(params.get("page") or "1", "page", 1, MAX_PAGE)
    return Query(app, since.isoformat(), until.isoformat(), name, page_no)


def is_derived(name: str) -> bool:
    """A counter timed()/count(outcome=...) writes next to the plain one (shown as outcomes)."""
    return base_name(name) != name


@dataclass(frozen=True)
class AppData:
    """What one app's section shows: the page's part of its rows, and how much more there is."""

    app: str
    totals: tuple[tuple[str, int], ...]  # plain counters on this page, largest first
    names_total: int  # plain counters matching the query, on every page
    daily: Mapping[str, Mapping[str, int]]  # counter on this page -> day -> total
    machines: Mapping[str, int]  # day -> distinct machines
    by: Mapping[str, tuple[tuple[str, int], ...]]  # dimension -> top values (the rest as one)
    operations: tuple[dict[str, Any], ...]  # outcome rows on this page (report.outcomes' shape)
    operations_total: int
    refusals: Mapping[str, int]  # reason -> counters refused or folded
    deletions: tuple[tuple[str, int], ...]  # (day, deletion requests honoured)
    page: int = 1

    @property
    def pages(self) -> int:
        return max(1, -(-self.names_total // PAGE_NAMES), -(-self.operations_total // PAGE_OPERATIONS))


def _top_values(rows: Sequence[tuple[str, int]]) -> tuple[tuple[str, int], ...]:
    ranked = sorted(rows, key=lambda kv: (-kv[1], kv[0]))
    if len(ranked) <= TOP_VALUES:
        return tuple(ranked)
    rest = ranked[TOP_VALUES - 1 :]
    return (*ranked[: TOP_VALUES - 1], (f"({len(rest)} others)", sum(n for _, n in rest)))


def shape_app(
    app: str,
    name_totals: Sequence[tuple[str, int]],
    query: Query,
    page_no: int,
    *,
    daily: Sequence[tuple[str, str, int]] = (),
    machines: Sequence[tuple[str, int]] = (),
    by: Mapping[str, Sequence[tuple[str, int]]] | None = None,
    refusals: Sequence[tuple[str, int]] = (),
    deletions: Sequence[tuple[str, int]] = (),
) -> AppData:
    """One app's page from its rows (pure): ``name_totals`` (name, total over the days) picks the
    page's counters and operations; ``daily`` (name, day, total) feeds their per-day charts."""
    matching = [(n, t) for n, t in name_totals if name_matches(query.name, n)]
    plain = sorted(((n, t) for n, t in matching if not is_derived(n)), key=lambda kv: (-kv[1], kv[0]))
    first = (page_no - 1) * PAGE_NAMES
    on_page = tuple(plain[first : first + PAGE_NAMES])
    ops = outcomes([{"app": app, "name": n, "total": t} for n, t in matching])
    ops.sort(key=lambda o: (-(o["calls"] + o["ok"] + o["errors"]), o["name"]))
    first_op = (page_no - 1) * PAGE_OPERATIONS
    page_names = {n for n, _ in on_page}
    per_name: dict[str, dict[str, int]] = {n: {} for n, _ in on_page}
    for name, day, total in daily:
        if name in page_names:
            per_name[name][day] = per_name[name].get(day, 0) + total
    reasons: dict[str, int] = {}
    for reason, n in refusals:
        reasons[reason] = reasons.get(reason, 0) + n
    return AppData(
        app=app,
        totals=on_page,
        names_total=len(plain),
        daily=per_name,
        machines=dict(machines),
        by={dim: _top_values((by or {}).get(dim, ())) for dim in DIMENSIONS},
        operations=tuple(ops[first_op : first_op + PAGE_OPERATIONS]),
        operations_total=len(ops),
        refusals=reasons,
        deletions=tuple(deletions),
        page=page_no,
    )


@dataclass(frozen=True)
class Page:
    """Everything one page shows."""

    query: Query
    apps: tuple[AppData, ...]
    apps_total: int  # apps with anything in the range (the all-apps view pages through them)
    app_names: tuple[str, ...] = field(default_factory=tuple)  # the apps on this page, for links

    @property
    def app_pages(self) -> int:
        return max(1, -(-self.apps_total // PAGE_APPS))


def load_app(store: SQLStore, app: str, query: Query, page_no: int) -> AppData:
    """Read one app's page from the store: per-name sums in SQL, daily rows for the page only."""
    totals = [(n, t) for _, n, t in store.name_totals(app, query.since, query.until)]
    shaped = shape_app(app, totals, query, page_no)
    names = [n for n, _ in shaped.totals]
    daily = [(n, d, t) for _, d, n, t, _ in store.daily_counts(app, query.since, query.until, names=names)]
    by = functools.partial(store.machines_by, app=app, since=query.since, until=query.until)
    return shape_app(
        app,
        totals,
        query,
        page_no,
        daily=daily,
        machines=[(d, m) for _, d, m in store.machines_per_day(app, query.since, query.until)],
        by={dim: [(v, n) for _, v, n in machine_days(by(dim))] for dim in DIMENSIONS},
        refusals=[(r, n) for _, _, r, n in store.refusals(app, query.since, query.until)],
        deletions=[(d, n) for _, d, n in store.deletions(app, query.since, query.until)],
    )


def load(store: SQLStore, query: Query) -> Page:
    """Read what ``query`` shows from the store."""
    if query.app is not None:
        return Page(query, (load_app(store, query.app, query, query.page),), 1, (query.app,))
    apps = store.apps(query.since, query.until)
    first = (query.page - 1) * PAGE_APPS
    on_page = apps[first : first + PAGE_APPS]
    return Page(query, tuple(load_app(store, a, query, 1) for a in on_page), len(apps), tuple(on_page))


def _days(query: Query) -> list[str]:
    start, end = date.fromisoformat(query.since), date.fromisoformat(query.until)
    return [(start + timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]


def app_charts(data: AppData, query: Query) -> list[Chart]:
    """What each chart of one app's section is fed, in page order. Pure."""
    days = _days(query)
    charts = [
        Chart("totals", "Total counts per counter", data.totals, "hbars"),
        Chart("machines", "Distinct machines per day", tuple((d, data.machines.get(d, 0)) for d in days)),
    ]
    for name, _ in data.totals:
        daily = data.daily.get(name, {})
        charts.append(Chart(f"counts:{name}", f"{name}: total per day", tuple((d, daily.get(d, 0)) for d in days)))
    for dim in DIMENSIONS:
        title = f"Machine-days by {_DIM_TITLES[dim]} (a machine counts once a day)"
        charts.append(Chart(f"by:{dim}", title, data.by.get(dim, ()), "hbars"))
    ops = data.operations
    charts.append(
        Chart(
            "error_rate",
            "Error rate per operation (errors / (ok + errors))",
            tuple((o["name"], round(o["error_rate"] * 100, 1)) for o in ops),
            "hbars",
            "%",
        )
    )
    for o in ops:
        charts.append(Chart(f"codes:{o['name']}", f"{o['name']}: top error codes", tuple(o["top_codes"]), "hbars"))
        charts.append(
            Chart(
                f"durations:{o['name']}",
                f"{o['name']}: durations",
                tuple((b, o["durations"][b]) for b in DURATION_BUCKETS),
            )
        )
    reasons = tuple(sorted(data.refusals.items()))
    charts.append(Chart("refusals", "Counters refused or folded, by reason", reasons, "hbars"))
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


def _label(app: str) -> str:
    return "(apps not allowed)" if app == OTHER_APP else app


def _pager(query: Query, current: int, pages: int, extra: Mapping[str, str], what: str, links: bool) -> str:
    if pages <= 1:
        return ""
    parts = [f"{what} page {current} of {pages}"]
    if links:
        if current > 1:
            prev = {**extra, **replace(query, page=current - 1).params()}
            parts.append(f'<a rel="prev" href="{esc(_link(prev))}">previous</a>')
        if current < pages:
            nxt = {**extra, **replace(query, page=current + 1).params()}
            parts.append(f'<a rel="next" href="{esc(_link(nxt))}">next</a>')
    return f'<p class="pager">{" · ".join(parts)}</p>'


def _section(data: AppData, query: Query, extra: Mapping[str, str], links: bool) -> str:
    label = _label(data.app)
    parts = [f'<section class="app" data-app="{esc(data.app)}"><h2>{esc(label)}</h2>']
    shown = len(data.totals)
    if data.names_total > shown or data.operations_total > len(data.operations):
        more = (
            f"{data.names_total:,} counters and {data.operations_total:,} operations match;"
            f" this page shows {shown} and {len(data.operations)}, largest first."
        )
        if links and query.app is None:
            app_link = esc(_link({**extra, **replace(query, app=data.app, page=1).params()}))
            more += f' <a class="more" href="{app_link}">more of {esc(label)}</a>'
        parts.append(f'<p class="more">{more}</p>')
    if query.app is not None:
        parts.append(_pager(query, data.page, data.pages, extra, "counters", links))
    parts.append('<div class="grid">')
    parts.extend(chart_html(c) for c in app_charts(data, query))
    parts.append("</div>")
    if data.operations:
        parts.append("<h3>Outcomes</h3>")
        parts.append(
            table(
                ["operation", "calls", "ok", "errors", "error rate"],
                [
                    [o["name"], o["calls"], o["ok"], o["errors"], f"{o['error_rate'] * 100:.1f}%"]
                    for o in data.operations
                ],
            )
        )
    parts.append("<h3>Deletion requests honoured</h3>" + table(["day", "deletions"], [list(d) for d in data.deletions]))
    parts.append("</section>")
    return "\n".join(parts)


def render(
    result: Page,
    *,
    extra_params: Mapping[str, str] | None = None,
    form: bool = True,
    footer: str = "",
) -> str:
    """The whole page. ``extra_params`` are carried in links and the form (the dashboard's ?token=);
    ``form=False`` (a file written by ``report``) also leaves out every link."""
    query = result.query
    extra = dict(extra_params or {})
    scope = query.app or "all apps"
    name = f", counters {query.name}" if query.name else ""
    parts = [
        f"<h1>telemetry_rollup usage: {esc(scope)}</h1>",
        f'<p class="muted">{esc(query.since)} .. {esc(query.until)} (UTC days){esc(name)}. '
        "Counts are what clients sent; machines are distinct machine ids.</p>",
    ]
    if form:
        parts.append(_form(query, extra))
    if query.app is None and result.app_names and form:
        links = "".join(
            f'<a href="{esc(_link({**extra, **replace(query, app=a, page=1).params()}))}">{esc(_label(a))}</a>'
            for a in result.app_names
        )
        parts.append(f"<nav>apps: {links}</nav>")
    if query.app is None:
        parts.append(_pager(query, query.page, result.app_pages, extra, "apps", form))
    if not result.apps:
        parts.append('<p class="empty">Nothing stored for this range.</p>')
    parts.extend(_section(data, query, extra, form) for data in result.apps)
    if footer:
        parts.append(f'<p class="muted footer">{esc(footer)}</p>')
    return page(f"telemetry_rollup usage: {scope}", "\n".join(parts))


def html_report(store: SQLStore, query: Query) -> str:
    """``report --format html``: the page, without the filter form or links (a file has no server)."""
    return render(load(store, query), form=False)


__all__ = [
    "AppData",
    "Page",
    "Query",
    "QueryError",
    "app_charts",
    "html_report",
    "load",
    "parse_query",
    "render",
    "shape_app",
]
