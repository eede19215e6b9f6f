"""One send run for one app (``run``): decide (``_appfiles``), then drive the pipeline (``_pipeline``) under
``sender.lock``, and say what happened (``RunResult``). Also what a report's metadata holds
(``meta_for``) and the run's environment facts.

The pipeline's steps and their crash-safety argument are in ``_pipeline``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Mapping
from typing import Any, Callable, NamedTuple

from . import _appfiles
from ._appfiles import AppFiles
from ._days import today_iso
from ._endpoint import endpoint_problem
from ._pipeline import BuildStats, Pipeline
from ._sendstate import SendStats
from ._store import AppStore
from ._version import __version__


def run_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    """The machine facts of wire format v1: coarse tokens only (TELEMETRY.md)."""
    plat = sys.platform
    os_name = {"darwin": "macos", "win32": "windows", "cygwin": "windows"}.get(
        plat, plat.rstrip("0123456789") or "unknown"
    )
    import platform

    arch = "".join(ch for ch in platform.machine().lower() if ch.isalnum() or ch in "_.+-")[:32] or "unknown"
    return {
        "os": os_name,
        "arch": arch,
        "python": f"{sys.version_info[0]}.{sys.version_info[1]}",
        "ci": False,  # set per request from the reports' own _run:ci (request_bodies)
        "lib_version": __version__,
    }


#: Shown by ``show`` before the first send has made the machine's key and id.
NO_ID = "00000000-0000-4000-8000-000000000000"


def meta_for(
    store: AppStore, config: Mapping[str, Any], environ: Mapping[str, str], *, create_id: bool
) -> dict[str, Any]:
    """The envelope of a request; ``create_id`` makes the machine's key (under the sender lock)."""
    from . import _identity

    ident = _identity.load(store.dir, create=create_id)
    meta = run_environment(environ)
    meta.update(
        app=store.app,
        app_version=config.get("app_version") if isinstance(config.get("app_version"), str) else None,
        machine_id=ident.machine_id if ident else NO_ID,
        machine_key=ident.key if ident else "0" * 64,
    )
    return meta


class RunResult(NamedTuple):
    app: str
    mode: str
    busy: bool = False
    built: BuildStats | None = None
    sent: SendStats | None = None
    skipped: str = ""  # why nothing was sent, when nothing was


def run(
    store: AppStore,
    *,
    timeout: float,
    include_today: bool = False,
    force: bool = False,
    environ: Mapping[str, str] | None = None,
    now: Callable[[], float] = time.time,
    allow_send: bool = True,
    headers: dict[str, str] | None = None,
    files: AppFiles | None = None,
) -> RunResult:
    """One sender pass over an app: recover, claim, roll up, and send what is due.

    ``force`` (an explicit flush) waits for the sender lock and ignores the back-off; an
    automatic pass takes the lock only if it is free and respects it. Bounded by ``timeout``.
    ``files``: the app's small files as the caller read them (read here when not given); they
    are read once more under the sender lock, where a concurrent ``off`` must be seen.
    """
    env = os.environ if environ is None else environ
    deadline = time.monotonic() + timeout
    files = _appfiles.read(store) if files is None else files
    decision = _appfiles.decide(files, env)
    if decision.mode == "off":
        why = f": {files.unsafe}" if decision.source == "unsafe" else ""
        return RunResult(store.app, "off", skipped=f"off ({decision.source}{why})")
    from ._store import LockTimeout

    try:
        held = store.lock_sender(max(0.0, deadline - time.monotonic()) if force else 0.0)
    except LockTimeout:
        return RunResult(store.app, decision.mode, busy=True, skipped="another sender is running")
    with held:
        files = _appfiles.read(store)  # the truth under the lock (the mode decided above stands)
        if files.stored == "off":  # switched off while we waited: never recreate anything
            with contextlib.suppress(OSError):
                os.unlink(store.sender_lock)  # held: a lock file made after off's deletion goes too
            return RunResult(store.app, "off", skipped="off (stored)")
        pipe = Pipeline(store, now=now)
        gen = pipe.recover()
        try:
            pipe.claim(gen, timeout=max(0.05, min(1.0, deadline - time.monotonic())))
        except LockTimeout:
            pass  # appenders hold it; their lines wait for the next pass
        gen, built = pipe.build(gen, today=today_iso(now()), include_today=include_today)
        endpoint = files.endpoint
        why = ""
        if decision.mode != "on":
            why = f"mode is {decision.mode} ({decision.source})"
        elif not isinstance(endpoint, str) or not endpoint:
            why = "no endpoint configured"
        elif endpoint_problem(endpoint) is not None:
            why = f"the endpoint in config.json is refused ({endpoint_problem(endpoint)})"
        elif not allow_send:
            why = "the notice was shown in this run: nothing is sent before the user could say no"
        elif decision.source == "default" and not files.notice_settled(now()):
            why = (
                "the notice has not been shown yet"
                if files.notice_at is None
                else "the notice was shown today (UTC): nothing is sent before the next day"
            )
        elif not force and now() < float(store.state().get("next_attempt_at", 0) or 0):
            why = "backing off after a failed attempt"
        elif not pipe.pending_reports(gen):
            why = "nothing due"
        if why:
            return RunResult(store.app, decision.mode, built=built, skipped=why)
        if not force:
            pipe.note_try()
        meta = meta_for(store, files.config, env, create_id=True)
        keep_on_401 = bool(headers) or files.config.get("auth_headers") is True
        stats = pipe.send(
            gen, endpoint=str(endpoint), meta=meta, deadline=deadline, headers=headers, keep_on_401=keep_on_401
        )
        return RunResult(store.app, decision.mode, built=built, sent=stats)
