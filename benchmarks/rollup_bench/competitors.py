"""The SDKs users would otherwise pick, behind one interface.

A competitor is one :class:`Competitor` in :data:`COMPETITORS`: the modules that must import for it
to be measured (the first is the one the import figure times), the script of a whole short CLI run
(20 events against the endpoint given as ``sys.argv[1]``), and how to call its counter or event in a
hot loop (:class:`Micro`, run inside the micro-benchmark's child). Leave out what an SDK has no
equivalent for; a figure lists only the competitors that have its part, and one whose modules do not
import is skipped with a note in the table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rollup_bench.harness import have

#: fills the micro-benchmark's ``timeit`` globals (inside the child); ``a`` holds ``home`` and ``url``
Setup = Callable[[dict[str, Any], dict[str, Any]], None]


@dataclass(frozen=True)
class Micro:
    """One call of the SDK in a hot loop, timed next to ``count()``."""

    position: int  # where it runs in each round and where it appears in the table's row
    stmt: str  # timed with ``timeit``; ``k`` is the event name
    note: str  # what the statement is, in the SDK's words
    setup: Setup


@dataclass(frozen=True)
class Competitor:
    name: str
    modules: tuple[str, ...]
    cli: str | None = None
    micro: Micro | None = None

    @property
    def module(self) -> str:
        return self.modules[0]


def _otel_setup(g: dict[str, Any], a: dict[str, Any]) -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    g["otel"] = provider.get_meter("bench").create_counter("uses")
    g["attrs"] = {"name": g["k"]}


GLEAN_METRICS = """---
$schema: moz://mozilla.org/schemas/glean/metrics/2-0-0
bench:
  uses:
    type: counter
    description: A benchmark counter.
    bugs: [https://example.com/1]
    data_reviews: [https://example.com/1]
    notification_emails: [nobody@example.com]
    expires: never
    lifetime: ping
    send_in_pings: [metrics]
"""


def _glean_setup(g: dict[str, Any], a: dict[str, Any]) -> None:
    from glean import Configuration, Glean, load_metrics

    yaml = Path(a["home"]) / "metrics.yaml"
    yaml.write_text(GLEAN_METRICS)
    metrics = load_metrics(str(yaml))
    Glean.initialize(
        application_id="bench",
        application_version="1.0",
        upload_enabled=True,
        data_dir=Path(a["home"]) / "glean",
        configuration=Configuration(server_endpoint=a["url"]),
    )
    g["glean"] = metrics.bench.uses


def _posthog_setup(g: dict[str, Any], a: dict[str, Any]) -> None:
    from posthog import Posthog

    g["ph"] = Posthog("phc_bench", host=a["url"], max_queue_size=10**6)


COMPETITORS: tuple[Competitor, ...] = (
    Competitor(
        "posthog",
        ("posthog",),
        cli="""
import sys
from posthog import Posthog
ph = Posthog("phc_bench", host=sys.argv[1])
for i in range(20):
    ph.capture("build" if i % 2 else f"cmd.{i % 5}", distinct_id="machine")
""",
        micro=Micro(
            3, "ph.capture(k, distinct_id='machine')", "Client.capture(event, distinct_id=...)", _posthog_setup
        ),
    ),
    Competitor(
        "OpenTelemetry",
        # the CLI run exports over OTLP/HTTP, so the exporter must import too
        ("opentelemetry.sdk.metrics", "opentelemetry.exporter.otlp.proto.http"),
        cli="""
import sys
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=sys.argv[1] + "/v1/metrics"))
counter = MeterProvider(metric_readers=[reader]).get_meter("bench").create_counter("uses")
for i in range(20):
    counter.add(1, {"name": "build" if i % 2 else f"cmd.{i % 5}"})
""",
        micro=Micro(1, "otel.add(1, attrs)", "Counter.add(1, {name}) on an SDK MeterProvider", _otel_setup),
    ),
    Competitor(
        "sentry-sdk",
        ("sentry_sdk",),
        cli="""
import sys
import sentry_sdk
sentry_sdk.init(dsn="http://public@" + sys.argv[1].split("//", 1)[1] + "/1")
for i in range(20):
    sentry_sdk.capture_message("build" if i % 2 else f"cmd.{i % 5}")
""",
    ),
    Competitor(
        "segment",
        ("segment.analytics",),
        cli="""
import sys
import segment.analytics as analytics
analytics.write_key = "bench"
analytics.host = sys.argv[1]
for i in range(20):
    analytics.track("machine", "build" if i % 2 else f"cmd.{i % 5}")
""",
    ),
    Competitor(
        "Glean",  # no whole-CLI-run script: measured in the hot loop and at import
        ("glean",),
        micro=Micro(2, "glean.add(1)", "CounterMetricType.add(1)", _glean_setup),
    ),
)


def by_name(name: str) -> Competitor:
    return next(c for c in COMPETITORS if c.name == name)


def with_cli() -> list[Competitor]:
    return [c for c in COMPETITORS if c.cli is not None]


def with_micro() -> list[Competitor]:
    return sorted((c for c in COMPETITORS if c.micro is not None), key=lambda c: c.micro.position if c.micro else 0)


def installed(quick: bool) -> dict[str, bool]:
    """Which competitors this run measures (none with --quick; the check imports in a child)."""
    return {c.name: (False if quick else all(have(m) for m in c.modules)) for c in COMPETITORS}
