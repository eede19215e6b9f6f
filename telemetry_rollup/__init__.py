"""telemetry_rollup: local-first, privacy-respecting usage counts, delivered once per day.

::

    import telemetry_rollup as tr
    tr.configure(app="acme", endpoint="https://telemetry.example.com/v1/rollups", app_version="1.4.0")
    tr.count("build")

Importing this package loads none of its dependencies and creates no file and no thread.
"""

from __future__ import annotations

from ._telemetry import Telemetry

TYPE_CHECKING = False  # no typing import at run time: ``import telemetry_rollup`` must stay cheap
if TYPE_CHECKING:
    import os
    from collections.abc import Iterable, Mapping
    from typing import Any, Callable

    from ._telemetry import SendResult
    from ._version import __version__
else:

    def __getattr__(name: str) -> Any:
        # Loaded at first use: importing the package loads the hot path only.
        if name == "SendResult":
            from . import _telemetry

            return _telemetry.SendResult
        if name == "__version__":
            from ._version import __version__

            return __version__
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = ["SendResult", "Telemetry", "__version__", "configure", "count", "flush", "send", "status", "timed"]

#: The module default instance: the only module-level mutable state.
_default = Telemetry()

#: ``count(name, n=1)``: add ``n`` to ``name`` for today (UTC). Never raises, never does I/O,
#: never prints. Bad names count under ``_invalid``, names outside the allowlist under ``_denied``.
count = _default.count


#: ``timed(name)``: count a block or a function (sync or async) with its outcome and duration
#: bucket (``with tr.timed("build"): ...`` or ``@tr.timed("deploy")``). Produces ``name``,
#: ``name:ok`` or ``name:error``, ``name:error:<ExceptionClass>`` and ``name:dur:<bucket>``; the
#: exception propagates unchanged. ``t.error("code")`` on the object ``with`` gives marks a
#: failure without raising. (The bound method itself: one call less on a path meant to be cheap.)
timed = _default.timed


def configure(
    app: str,
    *,
    endpoint: str | None = None,
    app_version: str | None = None,
    allow: Iterable[str] | None = None,
    default: str = "on",
    env_prefix: str | None = None,
    flush_interval: float = 60.0,
    send_interval: float = 3600.0,
    notice: str | None = None,
    notice_url: str | None = None,
    home: str | os.PathLike[str] | None = None,
    headers: Mapping[str, str] | Callable[[], Mapping[str, str] | None] | None = None,
) -> Telemetry:
    """Configure the default instance for ``app`` (see :meth:`Telemetry.configure`) and return it.

    Counts made before the call are kept and attributed to ``app``. The parameters are
    :meth:`Telemetry.configure`'s, spelled out so that a type checker catches a misspelled keyword
    or a wrong type in the host's code (tests/test_typing_users.py keeps the two identical).
    """
    _default.configure(
        app,
        endpoint=endpoint,
        app_version=app_version,
        allow=allow,
        default=default,
        env_prefix=env_prefix,
        flush_interval=flush_interval,
        send_interval=send_interval,
        notice=notice,
        notice_url=notice_url,
        home=home,
        headers=headers,
    )
    return _default


def flush() -> None:
    """Append the in-memory counts to the on-disk buffer now (what the exit hook does)."""
    _default.flush()


def send(timeout: float = 5.0) -> SendResult:
    """Flush, then deliver the reports that are due, bounded by ``timeout`` for the whole call."""
    return _default.send(timeout)


def status() -> dict[str, Any]:
    """The default app's status, as ``python -m telemetry_rollup status --json`` prints it."""
    if _default.app is None:
        return {}
    from ._status import app_status

    try:
        return app_status(_default._store)
    except Exception:
        return {}
