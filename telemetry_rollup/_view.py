"""``view``: one self-contained HTML page of what is recorded on this machine, per app.

Pure: status documents (``_status.app_status``), the request bodies ``show`` computes, and
``state.json``'s history in, HTML out. Nothing here reads the network or writes a file; the
page loads nothing (no script, no external URL, a CSP that forbids it).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._format import _source, day_note, pretty_body, status_text, when
from ._html import Chart, chart_html, esc, page, table
from ._view_pages import PAGE_PREFIX, remember


@dataclass(frozen=True)
class AppView:
    """Everything the page shows for one app."""

    status: Mapping[str, Any]
    bodies: Sequence[tuple[str, str | None, bytes]]  # (what, url, body), as ``show`` computes them
    notes: Sequence[str]
    history: Sequence[Mapping[str, Any]]  # state.json "history": at, result, status, reports, days, counts


def next_counts(bodies: Sequence[tuple[str, str | None, bytes]]) -> dict[str, int]:
    """Counts per counter name over every report the next send would POST."""
    totals: dict[str, int] = {}
    for what, _, body in bodies:
        if what != "reports":
            continue
        for report in json.loads(body).get("reports", []):
            for name, n in report.get("counts", {}).items():
                totals[name] = totals.get(name, 0) + int(n)
    return totals


def pending_counts(days: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Every pending counter by name over all pending days, today's (still open) included."""
    totals: dict[str, int] = {}
    for d in days:
        for name, n in (d.get("names") or {}).items():
            totals[name] = totals.get(name, 0) + int(n)
    return totals


def charts(v: AppView) -> list[Chart]:
    """What each chart of one app is fed, in page order. Pure."""
    days = v.status["pending"]["days"]
    nxt = next_counts(v.bodies)
    recorded = tuple(sorted(pending_counts(days).items(), key=lambda kv: (-kv[1], kv[0])))
    sent = [h for h in v.history if isinstance(h, Mapping)]
    ranked = tuple(sorted(nxt.items(), key=lambda kv: (-kv[1], kv[0])))
    per_day = tuple((str(d["day"]), int(d["counts"])) for d in days)
    return [
        Chart("pending_days", "Counts not yet sent, per day (UTC)", per_day, empty="(nothing)"),
        Chart(
            "pending_counts",
            "Recorded, not yet sent, per counter (today's too)",
            recorded,
            "hbars",
            empty="(nothing)",
        ),
        Chart("next_counts", "In the next send, per counter (closed days)", ranked, "hbars", empty="(nothing)"),
        Chart(
            "history",
            "Counts in each earlier request",
            tuple((f"{when(h.get('at'))[:16]} {h.get('result', '')}", int(h.get("counts", 0) or 0)) for h in sent),
            "hbars",
            empty="(nothing sent yet)",
        ),
    ]


def _section(v: AppView, now: float) -> str:
    st = v.status
    app = str(st["app"])
    mode = str(st["mode"])
    nxt = st["next_attempt"]
    at = nxt.get("at")
    if at is None:
        when_next = f"none: {nxt['why']}"
    else:
        when_next = f"{'now' if at <= now else 'not before ' + when(at)}, {nxt['why']}"
    pending = int(st["pending"]["counts"])
    parts = [
        f'<section class="app" data-app="{esc(app)}"><h2>{esc(app)}</h2>',
        f'<p class="mode" data-mode="{esc(mode)}"><strong>Mode: {esc(mode)}</strong>'
        f" ({esc(_source(st))})."
        f" Change it with <code>python -m telemetry_rollup on|local|off --app {esc(app)}</code>"
        f" or <code>{esc(st['env_var'])}=on|local|off</code>.</p>",
        f'<p class="next">Pending: {pending:,} count(s); next send: {esc(when_next)}.</p>',
        *(
            [
                f'<p class="local-only" data-value="{loc["counts"]}">Kept on this machine only, never sent:'
                f" {loc['counts']:,} count(s) recorded while local or before the notice was shown;"
                f" deleted 30 days after their day (the last on {esc(str(loc['until']))}).</p>"
            ]
            if (loc := st.get("local_only") or {}).get("counts")
            else []
        ),
        '<div class="grid">',
        *(chart_html(c) for c in charts(v)),
        "</div>",
        "<h3>Recorded on this machine, not yet sent: every counter, per day</h3>",
        "<p>A day is <em>open</em> while it lasts (UTC): its counts grow and nothing of it is sent;"
        " once over it is <em>complete</em>, closed into a report at the next send; a <em>closed</em>"
        " day waits in reports.</p>",
        table(
            ["day", "state", "counter", "count"],
            [
                [str(d["day"]), day_note(d), name, int(n)]
                for d in st["pending"]["days"]
                for name, n in (d.get("names") or {}).items()
            ],
            "pending-names",
        ),
        "<h3>Exactly what the next send would POST</h3>",
    ]
    if not v.bodies:
        parts.append('<p class="empty">Nothing would be sent.</p>')
    for i, (what, url, body) in enumerate(v.bodies, 1):
        parts.append(
            f"<p>Request {i} of {len(v.bodies)} ({esc(what)}): POST {esc(url or '(no endpoint)')},"
            f" {len(body)} bytes</p>"
            f'<pre class="payload">{esc(pretty_body(body))}</pre>'
        )
    parts.extend(f'<p class="note">{esc(n)}</p>' for n in v.notes)
    parts.append("<h3>Sent before</h3>")
    parts.append(
        table(
            ["when", "result", "HTTP", "reports", "days", "counts"],
            [
                [
                    when(h.get("at")),
                    str(h.get("result", "")),
                    str(h.get("status", "")),
                    int(h.get("reports", 0) or 0),
                    ", ".join(h.get("days", []) or []),
                    int(h.get("counts", 0) or 0),
                ]
                for h in v.history
                if isinstance(h, Mapping)
            ],
            "history",
        )
    )
    parts.append(f"<h3>Status</h3><pre>{esc(status_text(st, now))}</pre></section>")
    return "\n".join(parts)


def render(views: Sequence[AppView], data_root: str, now: float) -> str:
    """The whole page."""
    head = [
        "<h1>telemetry_rollup: what this machine records</h1>",
        f'<p class="muted">Data directory {esc(data_root)}; made {esc(when(now))}. This page is a local file:'
        " it loads nothing and sends nothing.</p>",
    ]
    if not views:
        head.append('<p class="empty">No app has recorded anything here.</p>')
    return page("telemetry_rollup: what this machine records", "\n".join(head + [_section(v, now) for v in views]))


def collect(app: str | None) -> tuple[list[AppView], str]:
    """Read every app's (or one app's) status, next request bodies and history. Sends nothing."""
    import os

    from . import _paths
    from ._show import app_stores_for, show_bodies
    from ._status import app_status

    views = []
    for store in app_stores_for(app):
        bodies, notes = show_bodies(store, os.environ)
        history = store.state().get("history") if store.exists() else None
        views.append(AppView(app_status(store), bodies, notes, history if isinstance(history, list) else []))
    return views, str(_paths.data_root())


def write_view(app: str | None, out: str | None, *, open_browser: bool) -> tuple[str, bool]:
    """Write the page (to ``out`` or a new temp file); open it when a browser is available.
    Returns (path, opened)."""
    import os
    import tempfile
    import time
    from pathlib import Path

    from . import _fs

    views, root = collect(app)
    text = render(views, root, time.time())
    if out is None:
        fd, name = tempfile.mkstemp(prefix=PAGE_PREFIX, suffix=".html")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        path = Path(name)
        remember(views, str(path))
    else:
        path = Path(out).resolve()
        _fs.atomic_write(path, text.encode("utf-8"))
    opened = False
    if open_browser:
        import webbrowser

        try:
            webbrowser.get()  # raises when no browser is registered (no display, no console browser)
            opened = bool(webbrowser.open(path.as_uri()))
        except webbrowser.Error:
            opened = False
    return str(path), opened
