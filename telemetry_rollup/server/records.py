"""What the store is given and gives back: plain records, and the one-way tag of a report.

Pure and import-free, so the policy (``ingest.py``), the writes (``store_write.py``), the
store's interface (``store.py``) and the fleet benchmark share them without importing each other.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

#: A forgotten machine id is refused for this long, then forgotten itself.
FORGET_SECONDS = 30 * 86400
#: Refusals for apps outside the allowlist are stored under this app, never the client's name.
OTHER_APP = ""


@dataclass(frozen=True)
class Environment:
    """What a rollup says about the machine, stored with each of its reports."""

    app_version: str | None
    lib_version: str
    os: str
    arch: str
    python: str
    ci: bool


@dataclass(frozen=True)
class ReportRows:
    """One report as the store sees it: counts already filtered by the allowlist."""

    id: str
    day: str
    counts: dict[str, int]
    refused: dict[str, int] = field(default_factory=dict)  # reason -> counters refused


@dataclass(frozen=True)
class Ingest:
    """One request's reports. ``env=None`` stores no machine: only ``seen`` tags and refusals."""

    app: str
    machine_id: str
    env: Environment | None
    reports: Sequence[ReportRows]


@dataclass(frozen=True)
class IngestResult:
    stored: int
    duplicates: int
    #: The sum of the counter values stored (the server's metrics count it per app).
    values: int = 0


def seen_tag(machine_id: str, report_id: str) -> str:
    """The one-way tag a report stored without its machine keeps: equal for a resend of the
    same report by the same machine, and telling nothing about the machine by itself."""
    return hashlib.sha256(f"{machine_id}/{report_id}".encode()).hexdigest()[:32]
