"""Consent: which mode applies and why, and the one-line notice.

Precedence, first match wins: ``DO_NOT_TRACK`` (set and not ""/0/false) -> off;
``<PREFIX>_TELEMETRY`` (1/on/true/yes -> on, local -> local, any other non-empty value -> off);
the stored choice; the app's default. The app's variable fails closed: ``disabled``, ``none``,
``0ff`` are clear attempts to opt out, and a typo must never leave telemetry on.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs ~5 ms at ``import telemetry_rollup``; only mypy needs it here
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any, NamedTuple

    class Decision(NamedTuple):
        mode: str
        source: str  # "DO_NOT_TRACK", "<PREFIX>_TELEMETRY", "stored", or "default"

else:

    class Decision(tuple):  # not collections.namedtuple: collections costs a short CLI ~2 ms
        """(mode, source): which mode applies and why."""

        __slots__ = ()

        def __new__(cls, mode: str, source: str) -> Decision:
            return tuple.__new__(cls, (mode, source))

        def __getnewargs__(self) -> tuple[str, str]:
            return (self[0], self[1])

        def __repr__(self) -> str:
            return f"Decision(mode={self[0]!r}, source={self[1]!r})"

        @property
        def mode(self) -> str:
            return self[0]  # type: ignore[no-any-return]

        @property
        def source(self) -> str:
            return self[1]  # type: ignore[no-any-return]

MODES = ("on", "local", "off")
_OFF = {"0", "off", "false", "no"}
_ON = {"1", "on", "true", "yes"}


def env_mode(value: str | None) -> str | None:
    """The mode ``<PREFIX>_TELEMETRY`` asks for; None when unset or empty (no value at all).

    Fails closed: any value that is not a recognised "on" or "local" value means off."""
    if not value:
        return None
    v = value.strip().lower()
    if v in _ON:
        return "on"
    if v == "local":
        return "local"
    return "off"


def recognised(value: str) -> bool:
    """True when ``value`` is one of the documented spellings (the rest fail closed to off)."""
    v = value.strip().lower()
    return v in _ON or v in _OFF or v == "local"


def do_not_track(environ: Mapping[str, str]) -> bool:
    v = environ.get("DO_NOT_TRACK")
    return v is not None and v.strip().lower() not in ("", "0", "false")


def env_decision(environ: Mapping[str, str], prefix: str) -> Decision | None:
    """The decision the environment alone makes, if any."""
    if do_not_track(environ):
        return Decision("off", "DO_NOT_TRACK")
    var = f"{prefix}_TELEMETRY"
    mode = env_mode(environ.get(var))
    if mode is not None:
        return Decision(mode, var)
    return None


def resolve(environ: Mapping[str, str], prefix: str, stored: str | None, default: str) -> Decision:
    decided = env_decision(environ, prefix)
    if decided is not None:
        return decided
    if stored in MODES:
        return Decision(stored, "stored")
    return Decision(default, "default")


def parse_stored(obj: Any) -> str | None:
    """The mode in a parsed ``mode.json``, or None."""
    if isinstance(obj, dict) and obj.get("mode") in MODES:
        return str(obj["mode"])
    return None


def notice_text(app: str, prefix: str, text: str | None, url: str | None) -> str:
    if text:
        return text.replace("\n", " ")
    details = f" Details: {url}" if url else " Details: python -m telemetry_rollup status"
    return (
        f"{app} collects anonymous usage counts (which features are used, per day), never code, "
        f"paths or arguments. Turn off: {prefix}_TELEMETRY=0, DO_NOT_TRACK=1, or "
        f"`python -m telemetry_rollup off --app {app}`.{details}"
    )
