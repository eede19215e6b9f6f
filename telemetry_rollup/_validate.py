"""What ``configure()`` refuses, in one pure function: a refusal means telemetry off for that app.

Cheap on purpose (``configure()`` runs in every short CLI): no ``re``, no ``urllib``, nothing
imported but the library's own small rule modules.
"""

from __future__ import annotations

from ._endpoint import endpoint_problem
from ._names import APP_RULE, is_app_name, is_env_prefix

TYPE_CHECKING = False  # no typing import at run time: configure() runs in every short CLI
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Callable


def configure_problem(app: object, *, default: object, env_prefix: object, endpoint: object = None) -> str | None:
    """Why these ``configure()`` arguments are refused, or None when they are acceptable.

    The reason never quotes a value that may hold a secret (the endpoint)."""
    if not is_app_name(app):
        return f"invalid app name {app!r}: {APP_RULE}"
    if default not in ("on", "local", "off"):
        return f"invalid default {default!r}: on, local or off"
    if env_prefix is not None and not is_env_prefix(env_prefix):
        return (
            f"invalid env_prefix {env_prefix!r}: letters, digits and '_', not starting with a digit"
            " (a POSIX shell must be able to set <PREFIX>_TELEMETRY)"
        )
    if endpoint is not None and endpoint != "":  # None or "": no endpoint, nothing is ever sent
        problem = endpoint_problem(endpoint)
        if problem is not None:
            return f"endpoint refused: {problem}"
    return None


def allow_matcher(allow: Iterable[str] | None) -> Callable[[str], bool] | None:
    """configure(allow=...) as a test of one name: exact names in a set, glob patterns with
    fnmatch (imported only when a pattern is given); None when every name is allowed."""
    if allow is None:
        return None
    exact = set()
    patterns = []
    for a in allow:
        if any(ch in a for ch in "*?["):
            patterns.append(a)
        else:
            exact.add(a)
    if not patterns:
        return exact.__contains__
    import fnmatch

    def allowed(name: str) -> bool:
        return name in exact or any(fnmatch.fnmatchcase(name, p) for p in patterns)

    return allowed
