"""What ``configure()`` refuses, in one pure function: a refusal means telemetry off for that app.

Cheap on purpose (``configure()`` runs in every short CLI): no ``re``, no ``urllib``, nothing
imported but the library's own small rule modules.
"""

from __future__ import annotations

from ._endpoint import endpoint_problem
from ._names import APP_RULE, is_app_name, is_env_prefix


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
