"""One read of an app directory's small files, for a command to decide from.

A command (``flush``, ``show``, ``status``, ``on``/``off``, ``reset-id``) used to re-read
config.json, mode.json and the notice piecemeal, in whichever module needed a value, and two
modules computed the effective mode each in their own way. Now it reads :class:`AppFiles` once
and passes it down; :func:`decide` is the one place that turns it and the environment into a
:class:`~telemetry_rollup._consent.Decision`. A sender reads it once more after taking
``sender.lock``: a concurrent ``off`` stores its choice first, and must be seen there.

Not on the exit hook's path: ``Telemetry`` decides at ``configure()`` and re-checks only the stored
choice at each persist (``_telemetry``), which costs a short CLI one small read.
"""

from __future__ import annotations

from ._consent import MODES, Decision, parse_stored, resolve
from ._due import notice_time, settled
from ._names import env_prefix_for

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from ._store import AppStore


class AppFiles:
    """What config.json, mode.json and the notice said when they were read: a value, never
    re-read. ``unsafe``: why the directory must not be used (then everything decides off)."""

    __slots__ = ("app", "config", "mode_file", "notice_at", "unsafe")

    def __init__(
        self, app: str, config: dict[str, Any], mode_file: Any, notice_at: float | None, unsafe: str | None
    ) -> None:
        self.app = app
        self.config = config
        self.mode_file = mode_file  # mode.json as parsed: the choice, and when it was stored
        self.notice_at = notice_at
        self.unsafe = unsafe

    @property
    def stored(self) -> str | None:
        """The user's stored choice (mode.json), or None."""
        return parse_stored(self.mode_file)

    @property
    def stored_at(self) -> str | None:
        at = self.mode_file.get("at") if isinstance(self.mode_file, dict) else None
        return at if isinstance(at, str) else None

    @property
    def prefix(self) -> str:
        """The environment variables' prefix: the app's own (config.json) or its default."""
        p = self.config.get("env_prefix")
        return p if isinstance(p, str) and p else env_prefix_for(self.app)

    @property
    def default(self) -> str:
        d = self.config.get("default")
        return d if d in MODES else "on"

    @property
    def endpoint(self) -> Any:
        """config.json's endpoint as written (check it with ``_endpoint`` before any use)."""
        return self.config.get("endpoint")

    def notice_settled(self, now: float) -> bool:
        """The notice rule in time (``_due.settled``): shown, and its UTC day over."""
        return settled(self.notice_at, now)


def read(store: AppStore) -> AppFiles:
    """config.json, mode.json and the notice's time, read now; creates nothing."""
    config = store.config()
    return AppFiles(store.app, config, store.read_json(store.mode_file), notice_time(store), store.unsafe())


def decide(files: AppFiles, environ: Mapping[str, str]) -> Decision:
    """The mode that applies and why: an unsafe directory is off; then ``_consent``'s precedence
    (``DO_NOT_TRACK``, ``<PREFIX>_TELEMETRY``, the stored choice, the app's default)."""
    if files.unsafe is not None:
        return Decision("off", "unsafe")
    return resolve(environ, files.prefix, files.stored, files.default)
