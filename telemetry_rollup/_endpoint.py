"""The endpoint rule, in one pure function: which URLs reports and deletion requests may go to.

- ``https://`` to any host; plain ``http://`` only to this machine's loopback address, spelled
  ``127.x.y.z``, ``[::1]`` or ``localhost`` (the demo, tests, a local relay). Anything else over
  plain http would carry the reports, and a tool's bearer header, readable by every hop.
- No ``user:password@``, no query string, no fragment. The endpoint is not a secret: it is written
  to ``config.json`` and ``forget.json`` and shown by ``status``, ``show`` and ``view``, and
  ``requests`` would turn URL credentials into an ``Authorization`` header TELEMETRY.md does not
  promise. Refusing them (rather than redacting) guarantees no secret is ever stored or printed;
  a tool that authenticates has ``configure(headers=...)``, kept in memory only.
- Printable ASCII only, at most 2048 characters, a host made of letters, digits, ``-`` and ``.``
  (or a bracketed IPv6 literal) and an optional numeric port: what every URL parser reads the same
  way, so the host checked here is the host connected to (no ``\\``, no ``@``, no ``%`` in the host).

``configure()`` calls :func:`endpoint_problem` (a refused endpoint means telemetry off for that
app, with one debug line), and the transport calls it again before every request, so a
``config.json`` edited by hand cannot bypass it. Cheap: no ``urllib``, no ``re``, no ``ipaddress``.
"""

from __future__ import annotations

MAX_LENGTH = 2048
_ALNUM = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_HOST_CHARS = _ALNUM | frozenset("-.")
_IPV6_CHARS = frozenset("0123456789abcdefABCDEF:.")
#: RFC 3986 path characters (unreserved, sub-delims, ":" and "/") and percent-escapes; no "@".
_PATH_CHARS = _ALNUM | frozenset("-._~!$&'()*+,;=:/%")

HTTP_RULE = "plain http is allowed only to this machine (127.0.0.1, [::1] or localhost): use https"
CREDENTIALS_RULE = "user:password@ is refused in the endpoint: send credentials with configure(headers=...)"
QUERY_RULE = (
    "a query string or fragment is refused in the endpoint (it could hold a secret): use configure(headers=...)"
)


def _is_loopback(host: str) -> bool:
    if host in ("localhost", "::1"):
        return True
    parts = host.split(".")
    return (
        len(parts) == 4
        and parts[0] == "127"
        and all(p.isdigit() and p.isascii() and len(p) <= 3 and int(p) <= 255 for p in parts)
    )


def endpoint_problem(url: object) -> str | None:
    """Why ``url`` is refused as an endpoint, or None when reports may be sent to it.

    The reason never quotes the URL (it may hold the very secret being refused)."""
    if not isinstance(url, str) or not url:
        return "the endpoint is not a non-empty string"
    if len(url) > MAX_LENGTH:
        return f"the endpoint is longer than {MAX_LENGTH} characters"
    if not all(" " < ch < "\x7f" for ch in url):
        return "the endpoint contains spaces, control or non-ASCII characters"
    if "@" in url:
        return CREDENTIALS_RULE
    if "?" in url or "#" in url:
        return QUERY_RULE
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in ("http", "https"):
        return "the endpoint is not an http:// or https:// URL"
    authority, _, path = rest.partition("/")
    if not _PATH_CHARS.issuperset(path):
        return "the endpoint's path has characters outside RFC 3986"
    if authority.startswith("["):
        end = authority.find("]")
        host, port = authority[1:end].lower(), authority[end + 1 :]
        if end < 0 or not host or not _IPV6_CHARS.issuperset(host) or ":" not in host:
            return "the endpoint's IPv6 address is malformed"
    else:
        host, colon, number = authority.partition(":")
        host, port = host.lower(), colon + number
        if not host or not _HOST_CHARS.issuperset(host) or host.startswith((".", "-")) or ".." in host:
            return "the endpoint's host is not a host name or address"
    if port and not (
        port[0] == ":" and port[1:].isdigit() and port[1:].isascii() and len(port) <= 6 and 0 < int(port[1:]) < 65536
    ):
        return "the endpoint's port is not a number from 1 to 65535"
    if scheme == "http" and not _is_loopback(host):
        return HTTP_RULE
    return None


def shown(url: object) -> str | None:
    """``url`` when it follows the rule, else None: what ``status``, ``show`` and ``view`` display
    (a ``config.json`` edited by hand may hold anything; only an acceptable endpoint is echoed)."""
    return url if isinstance(url, str) and endpoint_problem(url) is None else None
