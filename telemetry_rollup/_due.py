"""Cheap checks for the exit hook and the flusher: is an automatic send worth starting?

Kept apart from ``_sender`` so a short CLI's exit pays for a few small reads, not for importing
the sender and its transport (or any JSON parser: the times come from ``schedule``).
"""

from __future__ import annotations

import os

from . import _fs
from ._days import today_iso

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from ._consent import Decision
    from ._store import AppStore

_CI_VARS = (
    "GITHUB_ACTIONS",
    "GITLAB_CI",
    "BUILDKITE",
    "CIRCLECI",
    "TF_BUILD",
    "JENKINS_URL",
    "TRAVIS",
    "TEAMCITY_VERSION",
)


def is_ci(environ: Mapping[str, str]) -> bool:
    ci = environ.get("CI", "").strip().lower()
    if ci and ci not in ("0", "false", "no"):
        return True
    return any(environ.get(v) for v in _CI_VARS)


def notice_time(store: AppStore) -> float | None:
    """When the notice was shown (the ``notice`` file's time), or None when it never was."""
    data = _fs.read_capped(store.notice_file, 32)
    if data is None:
        return None
    try:
        return float(data.strip() or b"x")
    except ValueError:
        try:
            return os.stat(store.notice_file).st_mtime
        except OSError:
            return None


def settled(shown: float | None, now: float) -> bool:
    """The notice rule, in time (not in runs): nothing is sent until the notice has been shown
    and the UTC day it was shown on is over, whichever process is running (a daemon that showed
    it sends from the next day on). ``shown``: the notice's time, None if it never was."""
    return shown is not None and today_iso(shown) < today_iso(now)


def notice_settled(store: AppStore, now: float) -> bool:
    """:func:`settled` for the notice file as it is now (the exit hook's check)."""
    return settled(notice_time(store), now)


def autosend_due(decision: Decision, options: Mapping[str, Any], store: AppStore, now: float) -> bool:
    """A running app's check (exit hook, flusher): on, with an endpoint, the notice rule met
    (nothing is sent before the notice was shown and its UTC day is over), and :func:`auto_due`."""
    if decision.mode != "on" or not options.get("endpoint"):
        return False
    if decision.source == "default" and not notice_settled(store, now):
        return False
    return auto_due(store, options["send_interval"], now)


def auto_due(store: AppStore, send_interval: float, now: float) -> bool:
    """May an automatic send be worth starting? Cheap: a few small reads, no roll-up."""
    next_attempt_at, last_auto_try_at = store.schedule()
    if now < next_attempt_at:
        return False
    if now - last_auto_try_at < send_interval:
        return False
    return has_due_data(store, now)


def claim_autosend(store: AppStore, send_interval: float, now: float) -> bool:
    """Exactly one exiting process per send interval starts the detached sender.

    When a hundred short CLIs exit together with reports due, each would otherwise spawn a sender
    (all but one then find the sender lock taken): a burst of interpreters on a small machine.
    The token ``autosend.<interval number>`` is created with O_EXCL; older tokens are removed.
    """
    name = _token(send_interval, now)
    try:
        fd = _fs.open_safe(os.path.join(store.dir, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    except OSError:
        return False
    os.close(fd)
    try:
        for entry in os.listdir(store.dir):
            if entry.startswith("autosend.") and entry != name:
                os.unlink(os.path.join(store.dir, entry))
    except OSError:
        pass
    return True


def release_autosend(store: AppStore, send_interval: float, now: float) -> None:
    """Give back this interval's token (the sender could not be started after all)."""
    try:
        os.unlink(os.path.join(store.dir, _token(send_interval, now)))
    except OSError:
        pass


def _token(send_interval: float, now: float) -> str:
    return f"autosend.{int(now // max(send_interval, 60.0))}"


def _first_day(data: bytes | None, *, sendable: bool = False) -> bytes | None:
    """The day of the first line; with ``sendable``, None when that line is a local-only one
    (``{"v":2,...,"local":true}``: the carry writes sendable lines first, so a carry that begins
    with one holds nothing to send, and must not start a sender every interval for 30 days)."""
    if not data or (sendable and data.startswith(b'{"v":2,')):
        return None
    if b'"d":"' in data:
        return data.split(b'"d":"', 1)[1][:10]
    return None


def has_due_data(store: AppStore, now: float) -> bool:
    """Pending reports, spill files, or a buffer or carry that begins with a completed day."""
    today = today_iso(now).encode()
    day = _first_day(_fs.read_capped(store.buffer, 64))
    if day is not None and day < today:
        return True
    if store.spill_files():
        return True
    current = _fs.read_capped(store.current, 128)
    if current:
        name = current.decode("ascii", "replace").strip()
        if not name.startswith("gen-") or "/" in name or "\\" in name:
            return False
        gen = os.path.join(store.outbox, name)
        if any(n.endswith(".json") for n in _fs.listdir(os.path.join(gen, "reports"))):
            return True
        day = _first_day(_fs.read_capped(os.path.join(gen, "carry.jsonl"), 64), sendable=True)
        if day is not None and day < today:
            return True
    return False
