"""state.json: the sender's record of its sends, written under ``sender.lock``.

Totals (reports and counts sent and rejected, counters the receiver refused), the last
``HISTORY_LEN`` requests (what ``status`` shows), the last attempt, and the back-off after a failed
one (doubling from ``MIN_BACKOFF`` to ``MAX_BACKOFF``, with jitter, at least what a ``Retry-After``
asked). ``schedule`` mirrors its two times for the exit hook (``AppStore.write_state``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from . import _transport
from ._store import AppStore

HISTORY_LEN = 30
MIN_BACKOFF = 60.0
MAX_BACKOFF = 86400.0


class SendStats(NamedTuple):
    """What one send did, in reports (and counters the receiver refused), and its last outcome."""

    sent: int = 0
    kept: int = 0
    rejected: int = 0
    refused_counters: int = 0
    outcome: _transport.Outcome | None = None


def history_entry(body: bytes, outcome: _transport.Outcome, now: float) -> dict[str, Any]:
    """One request as ``status`` lists it: its result, and how many reports, days and counts it held."""
    import orjson

    obj = orjson.loads(body)
    reports = obj["reports"]
    return {
        "at": now,
        "result": outcome.kind,
        "status": outcome.status,
        "reports": len(reports),
        "days": sorted({r["day"] for r in reports}),
        "counts": sum(sum(r["counts"].values()) for r in reports),
    }


def record(store: AppStore, history: list[dict[str, Any]], stats: SendStats, now: float) -> None:
    """Add one send's requests and totals to state.json; set or clear the back-off."""
    state = store.state()
    raw_totals = state.get("totals")
    totals: dict[str, Any] = raw_totals if isinstance(raw_totals, dict) else {}
    for key, n in (
        ("reports_sent", stats.sent),
        ("reports_rejected", stats.rejected),
        ("counters_refused", stats.refused_counters),
    ):
        totals[key] = int(totals.get(key, 0) or 0) + n
    for h in history:
        key = "counts_sent" if h["result"] == "sent" else "counts_rejected"
        totals[key] = int(totals.get(key, 0) or 0) + h["counts"]
    state["totals"] = totals
    raw_history = state.get("history")
    old: list[Any] = raw_history if isinstance(raw_history, list) else []
    state["history"] = (old + history)[-HISTORY_LEN:]
    outcome = stats.outcome
    if outcome is not None:
        state["last_attempt"] = {
            "at": now,
            "result": outcome.kind,
            "status": outcome.status,
            "detail": outcome.detail,
            "sent": stats.sent,
            "rejected": stats.rejected,
            "kept": stats.kept,
        }
        if outcome.kind == "retry":
            prev = float(state.get("backoff_s", 0) or 0)
            backoff = MIN_BACKOFF if prev <= 0 else min(MAX_BACKOFF, prev * 2)
            import random

            delay = backoff * random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not crypto
            if outcome.retry_after is not None:
                delay = max(delay, min(outcome.retry_after, MAX_BACKOFF))
            state["backoff_s"] = backoff
            state["next_attempt_at"] = now + delay
        else:
            state["backoff_s"] = 0
            state["next_attempt_at"] = 0
    store.write_state(state)


def note_try(store: AppStore, now: float) -> None:
    """An automatic pass is about to send: the next automatic one waits a send interval."""
    state = store.state()
    state["last_auto_try_at"] = now
    store.write_state(state)
