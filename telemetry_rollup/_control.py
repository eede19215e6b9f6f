"""The user's controls: store a mode, delete everything on ``off``, the deletion request, a new id.

Nothing here prints; :mod:`telemetry_rollup.cli` turns the results into text.

``off`` writes ``mode.json`` first, so every process that checks the stored choice stops
(appenders re-check it under the buffer lock, senders under the sender lock), then takes both
locks and deletes everything in the app directory but ``mode.json`` (and a pending deletion
request). A deletion request (Mozilla Glean's deletion-request ping) is the only request ever
made while off: one POST of exactly ``{"schema": 2, "app": ..., "machine_id": ...,
"machine_key": ..., "forget": true}`` (the key proves the request comes from the machine; an
id made by a version before the key gets the format-1 request, without one), kept in
``forget.json`` and retried by later ``flush`` runs until a 2xx answer or 30 days.
An environment opt-out (``DO_NOT_TRACK``, ``<PREFIX>_TELEMETRY=0``) sends nothing at all,
a pending deletion request included.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import time
from collections.abc import Mapping
from typing import Any, Callable, NamedTuple

from . import _transport
from ._appfiles import decide, read
from ._codec import encode_forget
from ._consent import MODES, Decision, env_decision
from ._endpoint import shown
from ._log import log  # not logging: the detached sender (flush --if-due) pays ~10 ms for it
from ._store import AppStore, LockTimeout

#: A deletion request not acknowledged within this many seconds is given up.
FORGET_MAX_AGE = 30 * 86400.0
FORGET_MIN_BACKOFF = 60.0
FORGET_MAX_BACKOFF = 86400.0
SENDER_LOCK_WAIT = 20.0  # a flush in progress may hold it for its whole timeout
BUFFER_LOCK_WAIT = 5.0
DEFAULT_TIMEOUT = 5.0


class SwitchResult(NamedTuple):
    app: str
    mode: str  # the stored choice now
    previous: str | None  # the stored choice before
    effective: Decision  # what applies in this environment (an env variable may override)
    deleted: list[str]  # names removed from the app directory (off)
    forget: str  # what happened to the deletion request: "" when none was due
    busy: bool = False  # off: another process held a lock too long; mode is off, not all deleted


class ForgetResult(NamedTuple):
    app: str
    acknowledged: int = 0
    kept: int = 0
    expired: int = 0
    skipped: str = ""  # why nothing was tried
    detail: str = ""


def effective(store: AppStore, environ: Mapping[str, str]) -> Decision:
    """What applies now, the app's small files read afresh (a result reports the state after a change)."""
    return decide(read(store), environ)


def _now_iso(now: float) -> str:
    return _dt.datetime.fromtimestamp(now, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_mode(store: AppStore, mode: str, now: float) -> None:
    store.write_json(store.mode_file, {"mode": mode, "at": _now_iso(now)})


def set_mode(
    store: AppStore,
    mode: str,
    *,
    keep_remote: bool = False,
    environ: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    now: Callable[[], float] = time.time,
    sender_wait: float = SENDER_LOCK_WAIT,
) -> SwitchResult:
    """Store ``mode`` for the app; ``off`` also deletes its data and asks the receiver to forget."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}")
    env = os.environ if environ is None else environ
    files = read(store)
    previous = files.stored
    if mode != "off":
        write_mode(store, mode, now())
        return SwitchResult(store.app, mode, previous, effective(store, env), [], "")
    prefix = files.prefix
    endpoint = shown(files.endpoint)  # None when absent or refused (hand-edited)
    from . import _fs

    existed = set(_fs.listdir(store.dir))  # the locks off takes below are not "deleted data"
    # Stored first: from here on no process that honours the stored choice writes anything.
    write_mode(store, "off", now())
    try:
        with store.lock_sender(sender_wait):
            with store.lock_buffer(BUFFER_LOCK_WAIT):
                old_ids = _ids_to_forget(store)
                from ._view_pages import remove_pages

                pages = remove_pages(store.dir)  # they hold the machine id and request bodies
                gone = store.delete_data(keep=("mode.json", "forget.json"))
                deleted = [n for n in gone if n in existed] + pages
            forget = ""
            if not keep_remote and old_ids and endpoint is not None:
                for old_id, key in old_ids:
                    _add_forget(store, old_id, endpoint, prefix, now(), key)
                forget = "pending"
                res = _retry_forget_locked(store, env, timeout=timeout, force=True, now=now)
                forget = _forget_summary(res)
            elif keep_remote and old_ids:
                forget = "skipped (--keep-remote)"
            _unlink_quiet(store.sender_lock)  # held: off leaves no lock file behind
    except LockTimeout:
        return SwitchResult(store.app, "off", previous, effective(store, env), [], "", busy=True)
    return SwitchResult(store.app, "off", previous, effective(store, env), deleted, forget)


def _ids_to_forget(store: AppStore) -> list[tuple[str, str | None]]:
    """(machine id, its key or None) for every id this app sent under: the key's, and a
    random id of an older version that the key replaced."""
    from . import _identity

    ident = _identity.load(store.dir, create=False)
    if ident is None:
        legacy = _identity.current_id(store.dir)  # an older version's id, no key made yet
        return [(legacy, None)] if legacy else []
    out: list[tuple[str, str | None]] = [(ident.machine_id, ident.key)]
    if ident.legacy_id:
        out.append((ident.legacy_id, None))
    return out


def _forget_summary(res: ForgetResult) -> str:
    if res.acknowledged:
        return "acknowledged"
    if res.skipped:
        return f"kept: {res.skipped}"
    return f"kept for a later flush ({res.detail or 'no answer'})"


def _unlink_quiet(path: Any) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


# -- the deletion request ---------------------------------------------------------------------
def forget_requests(store: AppStore) -> list[dict[str, Any]]:
    """The pending deletion requests of ``forget.json`` (well-formed entries only)."""
    obj = store.read_json(store.forget_file)
    raw = obj.get("requests") if isinstance(obj, dict) else None
    out = []
    for r in raw if isinstance(raw, list) else []:
        if (
            isinstance(r, dict)
            and isinstance(r.get("machine_id"), str)
            and isinstance(r.get("endpoint"), str)
            and isinstance(r.get("created_at"), (int, float))
        ):
            out.append(r)
    return out


def forget_body(store: AppStore, request: Mapping[str, Any]) -> bytes:
    """Exactly the bytes POSTed for a deletion request (with the key when there is one)."""
    from ._identity import is_key

    key = request.get("machine_key")
    return encode_forget(store.app, str(request["machine_id"]), key if is_key(key) else None)


def _write_forget(store: AppStore, requests: list[dict[str, Any]]) -> None:
    if requests:
        store.write_json(store.forget_file, {"schema": 1, "requests": requests})
    else:
        _unlink_quiet(store.forget_file)


def _add_forget(
    store: AppStore, machine_id: str, endpoint: str, prefix: str, now: float, key: str | None = None
) -> None:
    requests = [r for r in forget_requests(store) if r["machine_id"] != machine_id]
    requests.append(
        {
            "machine_id": machine_id,
            "machine_key": key,  # forget.json is 0600, like the key file it outlives
            "endpoint": endpoint,
            "env_prefix": prefix,
            "created_at": now,
            "attempts": 0,
            "next_attempt_at": 0,
            "last_result": None,
        }
    )
    _write_forget(store, requests)


def opted_out_by_env(prefix: str, environ: Mapping[str, str]) -> Decision | None:
    """The environment opt-out in force, if any: then nothing at all is sent."""
    decided = env_decision(environ, prefix)
    return decided if decided is not None and decided.mode == "off" else None


def retry_forget(
    store: AppStore,
    *,
    environ: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    force: bool = True,
    now: Callable[[], float] = time.time,
) -> ForgetResult:
    """Send the pending deletion requests (a ``flush`` step). Creates no file when none is pending."""
    env = os.environ if environ is None else environ
    if not os.path.lexists(store.forget_file):
        return ForgetResult(store.app)
    try:
        with store.lock_sender(timeout if force else 0.0):
            res = _retry_forget_locked(store, env, timeout=timeout, force=force, now=now)
            if store.stored_mode() == "off":
                _unlink_quiet(store.sender_lock)
            return res
    except LockTimeout:
        return ForgetResult(store.app, kept=len(forget_requests(store)), skipped="another sender is running")


def _retry_forget_locked(
    store: AppStore, environ: Mapping[str, str], *, timeout: float, force: bool, now: Callable[[], float]
) -> ForgetResult:
    requests = forget_requests(store)
    if not requests:
        _unlink_quiet(store.forget_file)
        return ForgetResult(store.app)
    app_prefix = read(store).prefix
    for r in requests:
        prefix = r.get("env_prefix")
        opt_out = opted_out_by_env(prefix if isinstance(prefix, str) and prefix else app_prefix, environ)
        if opt_out is not None:
            # An environment opt-out sends nothing, not even this: it waits for a run without it.
            return ForgetResult(store.app, kept=len(requests), skipped=f"{opt_out.source} is set")
    deadline = time.monotonic() + timeout
    keep: list[dict[str, Any]] = []
    acknowledged = expired = 0
    detail = ""
    for r in requests:
        t = now()
        if t - float(r["created_at"]) > FORGET_MAX_AGE:
            expired += 1
            continue
        if not force and t < float(r.get("next_attempt_at", 0) or 0):
            keep.append(r)
            continue
        body = forget_body(store, r)
        log.debug("deletion request for %s", store.app)
        outcome = _transport.post(str(r["endpoint"]), body, timeout=deadline - time.monotonic())
        detail = outcome.detail
        if outcome.kind == "sent":
            acknowledged += 1
            continue
        attempts = int(r.get("attempts", 0) or 0) + 1
        backoff = min(FORGET_MAX_BACKOFF, FORGET_MIN_BACKOFF * 2 ** min(attempts - 1, 20))
        r.update(attempts=attempts, next_attempt_at=t + backoff, last_result=outcome.detail, last_attempt_at=t)
        keep.append(r)
    _write_forget(store, keep)
    return ForgetResult(store.app, acknowledged, len(keep), expired, "", detail)


# -- a new machine id -------------------------------------------------------------------------
def reset_id(
    store: AppStore,
    *,
    timeout: float = SENDER_LOCK_WAIT,
    request_timeout: float = DEFAULT_TIMEOUT,
    environ: Mapping[str, str] | None = None,
    now: Callable[[], float] = time.time,
) -> tuple[str, str]:
    """Replace the machine's key, so its id, and ask the receiver to forget the old id, as
    ``off`` does: the deletion request for the old id, signed with the OLD key, is stored in
    ``forget.json`` before that key is discarded, then tried at once (later ``flush`` runs retry
    it). Reports carry no id on disk (they are stamped at send time), so every pending report
    goes out under the new id. Returns (new id, what happened to the deletion request)."""
    from . import _identity

    env = os.environ if environ is None else environ
    files = read(store)
    endpoint = shown(files.endpoint)
    with store.lock_sender(timeout):
        old_ids = _ids_to_forget(store)
        if old_ids and endpoint is not None:
            for old_id, key in old_ids:
                _add_forget(store, old_id, endpoint, files.prefix, now(), key)
        new = _identity.reset(store.dir).machine_id
        forget = ""
        if old_ids and endpoint is not None:
            forget = _forget_summary(_retry_forget_locked(store, env, timeout=request_timeout, force=True, now=now))
        return new, forget
