"""The server's config file: per-app allowlists and rate limits.

The file is TOML (``*.toml``, read with :mod:`tomllib`, so Python 3.11+) or JSON (any other
name, every Python). Both spell the same structure::

    [limits]
    per_machine = 60        # requests per window per machine id
    per_address = 600       # requests per window per client address (held in memory only)
    window_seconds = 60
    names_per_app_day = 1000  # distinct counter names stored per app and UTC day
    connections = 1000      # open connections per process (never within 64 of the fd limit)
    connections_per_address = 32  # per client address (IPv6: per /64); proxies exempt
    request_seconds = 10    # a request must arrive complete within this, or it is closed

    [proxy]                 # behind a reverse proxy: its addresses (or networks), trusted
    trusted = ["127.0.0.1"] # for X-Forwarded-For, so limits apply per real client

    [apps.acme]             # once any [apps.*] is given, other apps are refused
    counters = ["build", "lint", "cmd.*", "_*"]   # exact names or fnmatch globs; omit = all
    min_version = "1.2.0"   # reports from older (or unknown) app versions are refused

    [retention]             # absent = raw rows are kept for ever
    days = 90               # the server deletes raw rows older than this (at least 40), hourly;
                            # the daily totals are kept (store.prune)

    [dashboard]             # GET /dashboard; absent = the dashboard is off (404)
    token = "long-random-string"          # Authorization: Bearer <token> (or ?token=)
    # user = "ops"; password = "..."      # and/or HTTP basic auth

    [metrics]               # GET /metrics (Prometheus); absent = off (404)
    token = "another-long-string"         # Authorization: Bearer <token>; its own, not the dashboard's
    apps = ["acme"]         # apps labelled by name besides [apps.*]'s; the rest count as "(other)"

Unknown keys are errors: a typo must not silently open or close the allowlist.
``parse_config`` is pure; ``load_config`` reads a file and calls it.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import json
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from telemetry_rollup.server.store import MIN_RETENTION_DAYS

#: The shortest token or password the config accepts (a long random one is what to use).
MIN_SECRET = 8
#: The fixed list of reasons a refusal is stored under; never a name the client chose.
REASONS = ("app_not_allowed", "app_version_too_old", "counter_not_allowed", "names_over_cap")


class ConfigError(ValueError):
    """The config file is missing, unreadable, or not of the documented shape."""


def _listed(patterns: tuple[str, ...], name: str) -> bool:
    # fnmatchcase: the same answer on every OS (fnmatch would fold case on Windows).
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


@dataclass(frozen=True)
class AppRule:
    """What one app may send. ``counters=None`` allows every well-formed name."""

    counters: tuple[str, ...] | None = None
    min_version: tuple[int, ...] | None = None

    def allows_counter(self, name: str) -> bool:
        """Whether the list allows ``name``: the name matches an entry, or the part before its
        first ``:`` does, so ``build`` also allows what ``timed("build")`` and
        ``count("build", outcome=...)`` derive from it (``build:ok``, ``build:error:E42``,
        ``build:dur:lt1s``). The library's own ``allow=`` applies the same rule
        (``_counters.py``): a counter the client sends is one the server keeps."""
        if self.counters is None:
            return True
        return _listed(self.counters, name) or (":" in name and _listed(self.counters, name.split(":", 1)[0]))

    def version_ok(self, app_version: str | None) -> bool:
        if self.min_version is None:
            return True
        parsed = parse_version(app_version) if app_version is not None else None
        return parsed is not None and _padded(parsed, self.min_version) >= _padded(self.min_version, parsed)


@dataclass(frozen=True)
class Limits:
    per_machine: int = 60
    per_address: int = 600
    window_seconds: float = 60.0
    #: Distinct counter names stored per app and UTC day; later names are folded (store.py).
    names_per_app_day: int = 1000
    #: Connection limits per process (protocol.py).
    connections: int = 1000
    connections_per_address: int = 32
    request_seconds: float = 10.0


@dataclass(frozen=True)
class DashboardAccess:
    """Who may read ``GET /dashboard``: a bearer token, basic-auth credentials, or both."""

    token: str | None = None
    user: str | None = None
    password: str | None = None


@dataclass(frozen=True)
class MetricsAccess:
    """``GET /metrics``: the bearer token a scraper sends, and the apps with a label of their own
    (besides those of the allowlist; every other app is counted as one)."""

    token: str
    apps: tuple[str, ...] = ()


@dataclass(frozen=True)
class Config:
    """``apps=None`` means every app is accepted with every counter; ``dashboard=None``: no
    dashboard; ``metrics=None``: no ``/metrics``."""

    limits: Limits = field(default_factory=Limits)
    apps: dict[str, AppRule] | None = None
    dashboard: DashboardAccess | None = None
    #: Reverse proxies whose X-Forwarded-For is believed (addresses or networks).
    trusted_proxies: tuple[str, ...] = ()
    #: Raw rows older than this many days are pruned by the server (None: kept for ever).
    retention_days: int | None = None
    metrics: MetricsAccess | None = None

    def metrics_apps(self) -> tuple[str, ...]:
        """The apps ``/metrics`` labels by name: the allowlist's and ``[metrics] apps``."""
        named = set(self.apps or ()) | set(self.metrics.apps if self.metrics else ())
        return tuple(sorted(named))

    def rule_for(self, app: str) -> AppRule | None:
        """The app's rule, or None when the app is not allowed at all."""
        if self.apps is None:
            return AppRule()
        return self.apps.get(app)


_VERSION = re.compile(r"[0-9]+(?:\.[0-9]+)*")


def parse_version(text: str) -> tuple[int, ...] | None:
    """The leading numeric release of a version: ``"1.4.0rc1"`` -> ``(1, 4, 0)``.

    Pre-release and local suffixes are ignored, so ``1.2.0rc1`` passes a minimum of
    ``1.2.0``; an allowlist that must exclude pre-releases names the next release.
    """
    match = _VERSION.match(text)
    if match is None:
        return None
    return tuple(int(part) for part in match.group(0).split("."))


def _padded(version: tuple[int, ...], other: tuple[int, ...]) -> tuple[int, ...]:
    return version + (0,) * max(0, len(other) - len(version))


def _expect(value: object, kind: type, where: str) -> Any:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{where}: expected {kind.__name__}")
    return value


def _check_keys(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}")


def parse_config(data: Mapping[str, Any]) -> Config:
    """Build a :class:`Config` from decoded TOML/JSON, or raise :class:`ConfigError`."""
    _expect(data, dict, "config")
    _check_keys(data, {"limits", "apps", "dashboard", "proxy", "retention", "metrics"}, "config")
    limits = Limits()
    if "limits" in data:
        raw = _expect(data["limits"], dict, "limits")
        integers = ("per_machine", "per_address", "names_per_app_day", "connections", "connections_per_address")
        seconds_keys = ("window_seconds", "request_seconds")
        _check_keys(raw, {*integers, *seconds_keys}, "limits")
        values: dict[str, Any] = {}
        for key in integers:
            if key in raw:
                values[key] = _expect(raw[key], int, f"limits.{key}")
                if values[key] < 1:
                    raise ConfigError(f"limits.{key}: must be at least 1")
        for key in seconds_keys:
            if key in raw:
                seconds = raw[key]
                if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds <= 0:
                    raise ConfigError(f"limits.{key}: expected a positive number")
                values[key] = float(seconds)
        limits = Limits(**values)
    apps: dict[str, AppRule] | None = None
    if "apps" in data:
        apps = {}
        for name, raw_rule in _expect(data["apps"], dict, "apps").items():
            where = f"apps.{name}"
            rule = _expect(raw_rule, dict, where)
            _check_keys(rule, {"counters", "min_version"}, where)
            counters: tuple[str, ...] | None = None
            if "counters" in rule:
                items = _expect(rule["counters"], list, f"{where}.counters")
                counters = tuple(_expect(p, str, f"{where}.counters") for p in items)
            min_version = None
            if "min_version" in rule:
                text = _expect(rule["min_version"], str, f"{where}.min_version")
                min_version = parse_version(text)
                if min_version is None:
                    raise ConfigError(f"{where}.min_version: not a version")
            apps[name] = AppRule(counters=counters, min_version=min_version)
    dashboard = _parse_dashboard(data["dashboard"]) if "dashboard" in data else None
    metrics = _parse_metrics(data["metrics"]) if "metrics" in data else None
    return Config(
        limits=limits,
        apps=apps,
        dashboard=dashboard,
        trusted_proxies=_parse_proxy(data.get("proxy")),
        retention_days=_parse_retention(data["retention"]) if "retention" in data else None,
        metrics=metrics,
    )


def _parse_retention(raw_section: object) -> int:
    raw = _expect(raw_section, dict, "retention")
    _check_keys(raw, {"days"}, "retention")
    if "days" not in raw:
        raise ConfigError("retention: give days")
    days = int(_expect(raw["days"], int, "retention.days"))
    if days < MIN_RETENTION_DAYS:
        raise ConfigError(f"retention.days: at least {MIN_RETENTION_DAYS} (reports may arrive 35 days late)")
    return days


#: At most this many apps in ``[metrics] apps``: each is a few series more.
MAX_METRICS_APPS = 1000


def _parse_metrics(raw_section: object) -> MetricsAccess:
    raw = _expect(raw_section, dict, "metrics")
    _check_keys(raw, {"token", "apps"}, "metrics")
    if "token" not in raw:
        raise ConfigError("metrics.token: required (the scraper's bearer token)")
    token = _expect(raw["token"], str, "metrics.token")
    if len(token) < MIN_SECRET:
        raise ConfigError(f"metrics.token: at least {MIN_SECRET} characters")
    apps = tuple(_expect(a, str, "metrics.apps") for a in _expect(raw.get("apps", []), list, "metrics.apps"))
    if len(apps) > MAX_METRICS_APPS:
        raise ConfigError(f"metrics.apps: at most {MAX_METRICS_APPS}")
    return MetricsAccess(token=token, apps=apps)


def _parse_proxy(raw_section: object) -> tuple[str, ...]:
    if raw_section is None:
        return ()
    raw = _expect(raw_section, dict, "proxy")
    _check_keys(raw, {"trusted"}, "proxy")
    items = _expect(raw.get("trusted", []), list, "proxy.trusted")
    out = []
    for item in items:
        text = _expect(item, str, "proxy.trusted")
        try:
            ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise ConfigError(f"proxy.trusted: not an address or network: {text!r}") from None
        out.append(text)
    return tuple(out)


def _parse_dashboard(raw_section: object) -> DashboardAccess:
    raw = _expect(raw_section, dict, "dashboard")
    _check_keys(raw, {"token", "user", "password"}, "dashboard")
    values = {k: _expect(raw[k], str, f"dashboard.{k}") for k in ("token", "user", "password") if k in raw}
    for key in ("token", "password"):
        if key in values and len(values[key]) < MIN_SECRET:
            raise ConfigError(f"dashboard.{key}: at least {MIN_SECRET} characters")
    if "user" in values and not values["user"]:
        raise ConfigError("dashboard.user: must not be empty")
    if ("user" in values) != ("password" in values):
        raise ConfigError("dashboard: user and password go together")
    if not values:
        raise ConfigError("dashboard: give a token, or a user and password")
    return DashboardAccess(**values)


def _load_toml(raw: bytes) -> Any:
    if sys.version_info >= (3, 11):
        import tomllib

        return tomllib.loads(raw.decode("utf-8"))
    raise ConfigError("a TOML config needs Python 3.11+; use a .json file")


def load_config(path: Path | None) -> Config:
    """Read and parse a config file; ``None`` gives the defaults."""
    if path is None:
        return Config()
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    try:
        data: Any = _load_toml(raw) if path.suffix == ".toml" else json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config {path} is not valid: {exc}") from None
    return parse_config(data)
