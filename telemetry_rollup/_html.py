"""Self-contained HTML with inline SVG charts: no script, no external request, works offline.

Shared by the local ``view`` page and the server's dashboard (the server imports this module;
this module imports nothing from the server). Pure functions returning strings.

Every chart is ``<figure class="chart" data-chart="ID">`` holding one ``<svg>``; each bar has a
``<text class="label">`` (its category) and a ``<text class="value">`` (its number, as printed
by :func:`number`), so a reader, a screen reader and a test all see the same numbers.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass

#: Width of one chart in CSS pixels.
WIDTH = 440
_PALETTE = ("#3b6fb6", "#d9822b", "#3a9a5b", "#b4414f", "#7b5ea7", "#8c6d46", "#c9569e", "#6f7f8f")

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:1.5em auto;
max-width:1000px;padding:0 1em;color:#1d2329;background:#fff}
h1{font-size:1.5em;margin-bottom:.2em}h2{border-bottom:1px solid #d5dbe1;padding-bottom:.2em;margin-top:1.6em}
h3{font-size:1em;margin:1.2em 0 .3em}.muted{color:#5b6670}
.grid{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start}
figure.chart{margin:0 0 1em 0;border:1px solid #e1e6eb;border-radius:6px;padding:.5em;background:#fbfcfd}
figcaption{font-weight:600;margin-bottom:.3em}svg text{font-size:11px;fill:#1d2329}
svg text.value{font-weight:600}table{border-collapse:collapse;margin:.4em 0}
td,th{border:1px solid #d5dbe1;padding:.2em .6em;text-align:left;font-size:.9em}
td.num{text-align:right;font-variant-numeric:tabular-nums}pre{background:#f3f5f7;padding:.8em;overflow:auto;
font-size:.85em;border-radius:6px}nav a{margin-right:1em}.empty{color:#5b6670;font-style:italic}
form label{margin-right:1em}
"""


@dataclass(frozen=True)
class Chart:
    """What one chart is fed: an id, a title, and (label, value) pairs in display order."""

    id: str
    title: str
    items: tuple[tuple[str, float], ...]
    kind: str = "bars"  # "bars" (vertical, e.g. days) or "hbars" (horizontal, categories)
    unit: str = ""  # appended to the printed values, e.g. "%"
    empty: str = "(nothing in this range)"  # shown instead of an empty chart


def esc(text: object) -> str:
    """HTML-escape any value for text and attribute positions. Characters a browser would act on
    beyond markup (bidi overrides and isolates, other format characters, controls, line
    separators) are shown as ``\\uXXXX``, as on the terminal (``_format.printable``): a value read
    from disk or sent by a client must not reorder what the page shows."""
    from ._format import printable

    return html.escape(printable(str(text)), quote=True)


def number(value: float, unit: str = "") -> str:
    """How a chart prints a value: integers with thousands separators, else one decimal."""
    if float(value).is_integer():
        return f"{int(value):,}{unit}"
    return f"{value:,.1f}{unit}"


def _color(i: int) -> str:
    return _PALETTE[i % len(_PALETTE)]


def _vbars(chart: Chart) -> str:
    n = len(chart.items)
    top, bottom, left = 18, 34, 8
    plot_h = 140
    height = top + plot_h + bottom
    slot = (WIDTH - 2 * left) / max(n, 1)
    bar_w = max(2.0, min(48.0, slot * 0.7))
    largest = max((v for _, v in chart.items), default=0) or 1
    parts = [f'<line x1="{left}" y1="{top + plot_h}" x2="{WIDTH - left}" y2="{top + plot_h}" stroke="#9aa5b1"/>']
    every = max(1, (n + 11) // 12)  # at most ~12 category labels under the axis
    for i, (label, value) in enumerate(chart.items):
        h = plot_h * value / largest if value > 0 else 0
        h = max(h, 1.0) if value > 0 else 0
        x = left + slot * i + (slot - bar_w) / 2
        y = top + plot_h - h
        cx = x + bar_w / 2
        parts.append(
            f'<g class="bar" data-label="{esc(label)}" data-value="{esc(value)}">'
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" fill="{_color(0)}">'
            f"<title>{esc(label)}: {esc(number(value, chart.unit))}</title></rect>"
            f'<text class="value" x="{cx:.1f}" y="{y - 4:.1f}" text-anchor="middle">'
            f"{esc(number(value, chart.unit))}</text>"
        )
        shown = "" if i % every else esc(label[5:] if len(label) == 10 and label[4] == "-" else label)
        parts.append(
            f'<text class="label" x="{cx:.1f}" y="{top + plot_h + 14}" text-anchor="middle"'
            f' data-full="{esc(label)}">{shown}</text></g>'
        )
    return _svg(chart, height, "".join(parts))


def _hbars(chart: Chart) -> str:
    row, label_w, top = 22, 150, 4
    height = top + row * max(len(chart.items), 1) + 4
    largest = max((v for _, v in chart.items), default=0) or 1
    room = WIDTH - label_w - 70
    parts = []
    for i, (label, value) in enumerate(chart.items):
        w = room * value / largest if value > 0 else 0
        w = max(w, 1.0) if value > 0 else 0
        y = top + row * i
        short = label if len(label) <= 26 else label[:25] + "…"
        parts.append(
            f'<g class="bar" data-label="{esc(label)}" data-value="{esc(value)}">'
            f'<text class="label" x="{label_w - 6}" y="{y + 15}" text-anchor="end" data-full="{esc(label)}">'
            f"{esc(short)}</text>"
            f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row - 6}" fill="{_color(i)}">'
            f"<title>{esc(label)}: {esc(number(value, chart.unit))}</title></rect>"
            f'<text class="value" x="{label_w + w + 5:.1f}" y="{y + 15}">{esc(number(value, chart.unit))}</text></g>'
        )
    return _svg(chart, height, "".join(parts))


def _svg(chart: Chart, height: int, inner: str) -> str:
    return (
        f'<svg width="{WIDTH}" height="{height}"'
        f' viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{esc(chart.title)}">{inner}</svg>'
    )


def chart_html(chart: Chart) -> str:
    """One chart as a ``<figure>``; an empty chart says so instead of drawing an empty axis."""
    head = f'<figure class="chart" data-chart="{esc(chart.id)}"><figcaption>{esc(chart.title)}</figcaption>'
    if not chart.items:
        return head + f'<p class="empty">{esc(chart.empty)}</p></figure>'
    body = _hbars(chart) if chart.kind == "hbars" else _vbars(chart)
    return head + body + "</figure>"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], cls: str = "") -> str:
    """A plain table; numeric cells are right-aligned."""
    if not rows:
        return '<p class="empty">(none)</p>'
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{esc(number(c))}</td>'
            if isinstance(c, (int, float)) and not isinstance(c, bool)
            else f"<td>{esc(c)}</td>"
            for c in r
        )
        + "</tr>"
        for r in rows
    )
    attr = f' class="{esc(cls)}"' if cls else ""
    return f"<table{attr}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def page(title: str, body: str) -> str:
    """A complete document: inline CSS, no script, and a CSP that forbids loading anything."""
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline';"
        " img-src data:; form-action 'self'\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head>\n<body>\n{body}\n</body></html>\n"
    )
