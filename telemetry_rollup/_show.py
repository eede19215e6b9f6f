"""What ``show`` and ``view`` present: the app stores a command applies to, and the request
bodies the next send would POST. Read-only on the pipeline: nothing here claims, rolls up,
commits or sends.

Imported by ``cli`` and ``_view`` (both above it); it never imports either.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ._cli_args import UsageError

if TYPE_CHECKING:
    from ._store import AppStore


def one_store(app: str | None) -> AppStore:
    if app is None:
        raise UsageError("--app is required")
    return app_stores_for(app)[0]


def app_stores_for(app: str | None) -> list[AppStore]:
    from . import _paths
    from ._names import APP_RULE, is_app_name
    from ._store import AppStore, app_stores

    root = _paths.data_root()
    if app is not None:
        if not is_app_name(app):
            raise UsageError(f"invalid app name {app!r}: {APP_RULE}")
        return [AppStore(os.path.join(root, app))]
    # Only app directories: anything else under the data root (a planted "\x1b]0;..." or "con",
    # a directory of an older rule) is not listed, switched off or sent from.
    return [s for s in app_stores(root) if is_app_name(s.app)]


def shown_id(store: AppStore) -> str | None:
    """The machine id as people see it (never the key it is derived from)."""
    from ._identity import current_id

    return current_id(store.dir)


#: show's note on what it does not print as sent.
REDACTED_NOTE = "machine_key (the proof that a request comes from this machine) is sent but never shown"


def show_bodies(
    store: AppStore, env: Any, include_today: bool = False
) -> tuple[list[tuple[str, str | None, bytes]], list[str]]:
    """What ``show`` prints for one app: the (what, url, body) requests the next send would
    POST, with the machine key redacted, and notes on why less or nothing is sent. Writes
    nothing: the reports the send will make are computed, not made."""
    import time
    from pathlib import Path

    from ._appfiles import decide, read
    from ._control import forget_body, forget_requests, opted_out_by_env
    from ._days import today_iso
    from ._endpoint import endpoint_problem, shown
    from ._pipeline import Pipeline
    from ._sender import meta_for

    bodies: list[tuple[str, str | None, bytes]] = []
    notes: list[str] = []
    if not store.exists():
        notes.append(f"{store.app} has recorded nothing on this machine")
        return bodies, notes
    files = read(store)
    opt_out = opted_out_by_env(files.prefix, env)
    if opt_out is not None:
        notes.append(f"{opt_out.source} is set: nothing at all is sent from this environment")
        return bodies, notes
    from ._identity import redact

    for r in forget_requests(store):
        bodies.append(("deletion request for an old machine id", shown(r["endpoint"]), redact(forget_body(store, r))))
    decision = decide(files, env)
    endpoint = files.endpoint
    url = shown(endpoint)  # a refused endpoint (config.json edited by hand) is never echoed
    refused = endpoint_problem(endpoint) if endpoint not in (None, "") else None
    if decision.mode == "off":
        notes.append(f"mode is off ({decision.source}): no report is kept or sent")
        return bodies, notes
    # Read-only on the pipeline: nothing is claimed, rolled up or committed, so looking (today
    # included) never changes what will be sent or when. The sender lock only keeps the view
    # consistent with a send in progress.
    with store.lock_sender(10.0):
        files = read(store)  # as the sender sees it under the lock
        if files.stored == "off":
            notes.append("mode is off: no report is kept or sent")
        else:
            pipe = Pipeline(store)
            pending = pipe.preview(today=today_iso(time.time()), include_today=include_today)
            meta = meta_for(store, files.config, env, create_id=False)
            for _, body in pipe.request_bodies(Path(store.outbox), meta, pending):
                bodies.append(("reports", url, redact(body)))
            if shown_id(store) is None and any(w == "reports" for w, _, _ in bodies):
                notes.append(
                    "no machine id exists yet: the first send makes a random one in place of " + str(meta["machine_id"])
                )
    if decision.mode == "local":
        notes.append(f"mode is local ({decision.source}): this is what would be sent; nothing is")
    elif refused is not None:
        notes.append(f"the endpoint in config.json is refused ({refused}): nothing is sent")
    elif url is None:
        notes.append("no endpoint is configured: nothing is sent")
    elif decision.source == "default" and not files.notice_settled(time.time()):
        notes.append("nothing is sent before the notice has been shown once and its UTC day is over")
    from ._status import local_only

    loc = local_only(store)
    if loc["counts"]:
        notes.append(
            f"{loc['counts']} count(s) recorded while local or before the notice are kept on this machine"
            f" only and never sent (deleted by {loc['until']})"
        )
    return bodies, notes
