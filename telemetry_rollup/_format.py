"""Pure text for the CLI: status dicts and request bodies in, lines out. No I/O, no clock."""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Mapping, Sequence
from typing import Any

_EIGHTHS = " ▏▎▍▌▋▊▉"
BAR_WIDTH = 20


def printable(text: str) -> str:
    """``text`` with every character a terminal could act on escaped as ``\\uXXXX``.

    The one helper through which the command line writes (``cli`` wraps its streams with it), so a
    value read from disk, a config file or the environment (a directory name, ``app_version``, a
    state file's detail, ``TELEMETRY_ROLLUP_HOME``) cannot retitle, recolour or clear the terminal,
    or reorder what it shows. Escaped: everything ``str.isprintable`` refuses but the newline
    (C0 and C1 controls, DEL, bidi and other format characters, line and paragraph separators,
    unusual spaces). The escape is JSON's, so ``show --raw`` stays valid JSON with the same values."""
    if all(line.isprintable() for line in text.split("\n")):  # the common case, at C speed
        return text
    out = []
    for ch in text:
        if ch == "\n" or ch.isprintable():
            out.append(ch)
            continue
        code = ord(ch)
        if code > 0xFFFF:  # a surrogate pair, as JSON writes it
            code -= 0x10000
            out.append(f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}")
        else:
            out.append(f"\\u{code:04x}")
    return "".join(out)


def bar(value: int, largest: int, width: int = BAR_WIDTH) -> str:
    """A unicode bar of ``width`` cells, ``value / largest`` full; any value above 0 shows."""
    if largest <= 0 or value <= 0:
        return " " * width
    eighths = max(1, round(value * width * 8 / largest))
    full, rest = divmod(min(eighths, width * 8), 8)
    text = "█" * full + (_EIGHTHS[rest] if rest else "")
    return text.ljust(width)


def size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    return f"{n / 1024:.1f} KiB"


def when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return _dt.datetime.fromtimestamp(ts, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _source(st: Mapping[str, Any]) -> str:
    src = st["source"]
    if src == "stored":
        at = f" on {st['stored_at'][:10]}" if st.get("stored_at") else ""
        return f"your stored choice{at}"
    if src == "default":
        return "the app's default; you have not chosen"
    if src == "unsafe":
        return f"its data directory is not used: {st.get('unsafe')}"
    value = st.get("env_value")
    if value is None:
        return f"{src} is set in this environment"
    from ._consent import recognised

    # Name the value read: "ACME_TELEMETRY=disabled" fails closed, and the user should see why.
    why = "" if src == "DO_NOT_TRACK" or recognised(value) else ": not a recognised value, so off"
    return f'{src}="{value}" is set in this environment{why}'


def status_text(st: Mapping[str, Any], now: float) -> str:
    """One app's status as the human ``status`` command prints it."""
    lines = [f"{st['app']}: {st['mode']} ({_source(st)})"]
    if st["source"] not in ("stored", "default") and st.get("stored"):
        lines.append(f"  stored choice      {st['stored']} (overridden by {st['source']})")
    lines.append(f"  machine id         {st['machine_id'] or '(none: made at the first send)'}")
    lines.append(f"  data directory     {st['data_dir']}")
    refused = st.get("endpoint_refused")
    shown = f"(refused: {refused})" if refused else "(none configured)"
    lines.append(f"  endpoint           {st['endpoint'] or shown}")
    buf = st["buffer"]
    spill = f", {buf['spill_files']} spill file(s)" if buf["spill_files"] else ""
    lines.append(f"  buffer             {size(buf['bytes'])} of {size(buf['cap'])}{spill}")
    pend = st["pending"]
    days = pend["days"]
    lines.append(
        f"  pending            {pend['counts']:,} count(s) over {len(days)} day(s), {pend['reports']} closed report(s)"
    )
    largest = max((d["counts"] for d in days), default=0)
    for d in days:
        lines.append(f"    {d['day']}  {bar(d['counts'], largest)} {d['counts']:>9,}  {day_note(d)}")
        lines.extend(f"                {chunk}" for chunk in _wrap(names_text(d.get("names") or {})))
    reserved = {k: v for k, v in st.get("reserved", {}).items() if v}
    if reserved:
        lines.append("  of which           " + ", ".join(f"{k} {v:,}" for k, v in sorted(reserved.items())))
    loc = st.get("local_only") or {}
    if loc.get("counts"):
        lines.append(
            f"  kept here only     {loc['counts']:,} count(s) recorded while local or before the notice,"
            f" never sent; deleted 30 days after their day (the last on {loc.get('until')})"
        )
    t = st["totals"]
    lines.append(
        f"  delivered so far   {t['reports_sent']} report(s), {t['counts_sent']:,} count(s);"
        f" rejected {t['reports_rejected']} report(s), {t['counts_rejected']:,} count(s);"
        f" counters refused {t['counters_refused']}"
    )
    last = st.get("last_attempt")
    if last:
        lines.append(
            f"  last attempt       {when(last.get('at'))}: {last.get('result')} ({last.get('detail')}),"
            f" sent {last.get('sent', 0)}, rejected {last.get('rejected', 0)}, kept {last.get('kept', 0)}"
        )
    else:
        lines.append("  last attempt       never")
    nxt = st["next_attempt"]
    at = nxt.get("at")
    if at is None:
        lines.append(f"  next attempt       none: {nxt['why']}")
    else:
        lines.append(f"  next attempt       {'now' if at <= now else 'not before ' + when(at)}, {nxt['why']}")
    for r in st.get("deletion_requests", []):
        tries = r.get("attempts") or 0
        last_r = f", last: {r['last_result']}" if r.get("last_result") else ""
        lines.append(
            f"  deletion request   for old id {r['machine_id']} to {r['endpoint'] or '(a refused endpoint)'}, since"
            f" {when(r.get('created_at'))}, {tries} attempt(s){last_r}; retried by `flush`"
        )
    return "\n".join(lines)


def day_note(d: Mapping[str, Any]) -> str:
    """What is open and what is closed of one pending day (a ``status --json`` day entry)."""
    counts, in_reports, reports = d["counts"], d["report_counts"], d["reports"]
    if not d["complete"]:
        if in_reports:
            return f"open: {in_reports:,} already in {reports} report(s), the rest still counting"
        return "open: still counting"
    if counts == in_reports:
        return f"closed: in {reports} report(s) waiting to be sent"
    if in_reports:
        return f"partly closed: {in_reports:,} in {reports} report(s), the rest closed at the next send"
    return "complete: closed into a report at the next send"


def names_text(names: Mapping[str, int]) -> str:
    """``build 280, lint 20``: counters by value (largest first), then name."""
    return ", ".join(f"{n} {c:,}" for n, c in sorted(names.items(), key=lambda kv: (-kv[1], kv[0])))


def _wrap(text: str, width: int = 84) -> list[str]:
    """Split a names line at its commas so each piece is at most ``width`` wide (where it can be)."""
    if not text:
        return []
    out: list[str] = []
    cur = ""
    for part in text.split(", "):
        piece = part if not cur else f"{cur}, {part}"
        if cur and len(piece) > width:
            out.append(cur + ",")
            cur = part
        else:
            cur = piece
    out.append(cur)
    return out


def pretty_body(body: bytes) -> str:
    """A request body pretty-printed (key order kept: json.loads preserves it)."""
    return json.dumps(json.loads(body), indent=2, ensure_ascii=False)


def show_text(app: str, bodies: Sequence[tuple[str, str | None, bytes]], notes: Sequence[str]) -> str:
    """``show``: each (what, url, body) under a ``#`` header line, then the notes."""
    lines: list[str] = []
    if not bodies:
        lines.append(f"# {app}: nothing would be sent")
    for i, (what, url, body) in enumerate(bodies, 1):
        where = url or "(no endpoint)"
        lines.append(f"# {app}: request {i} of {len(bodies)} ({what}), POST {where}, {len(body)} bytes")
        lines.append(pretty_body(body))
    lines.extend(f"# {n}" for n in notes)
    return "\n".join(lines)


def forget_text(res: Any) -> str:
    """``flush``'s line about the pending deletion requests (a ``_control.ForgetResult``)."""
    parts = [f"{res.app}: deletion request"]
    if res.acknowledged:
        parts.append(f"{res.acknowledged} acknowledged")
    if res.expired:
        parts.append(f"{res.expired} given up after 30 days")
    if res.kept:
        parts.append(f"{res.kept} kept ({res.skipped or res.detail or 'not due yet'})")
    return "; ".join(parts)


def flush_text(res: Any) -> str:
    """``flush``'s line about one app's send run (a ``_sender.RunResult``)."""
    parts = [f"{res.app}: mode {res.mode}"]
    if res.built is not None and res.built.new_reports:
        parts.append(f"{res.built.new_reports} new report(s)")
    if res.sent is not None:
        s = res.sent
        parts.append(f"sent {s.sent}, kept {s.kept}, rejected {s.rejected}")
        if s.outcome is not None and s.outcome.kind != "sent":
            parts.append(f"({s.outcome.detail})")
    elif res.skipped:
        parts.append(f"nothing sent: {res.skipped}")
    return "; ".join(parts)
