"""One app's day as OpenTelemetry metrics, sent by the official OTLP/HTTP exporter (extra
``telemetry-rollup[otlp]``; the one module that imports OpenTelemetry).

The request holds one resource per app version that reported that day (``service.name`` = the
app, ``service.version`` = the app's version; without ``service.version`` for reports that gave
none), each with one scope (``telemetry_rollup``, with this package's version) and one metric,
``telemetry_rollup.count``: a monotonic sum with delta temporality, one point per counter
(attribute ``counter`` = its name) whose value is the day's total for that version, from the
day's start to its end (UTC). Summed over the versions, the points are the report's totals.
Built as the SDK's data classes directly: a MeterProvider would stamp its own clock's times, and
these points must carry the day's.

Sending the same day again sends the very same points (same stream, same start and end, same
value): see docs/server.md for what backends do with them.
"""

from __future__ import annotations

import logging

from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Metric,
    MetricExportResult,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from telemetry_rollup._version import __version__
from telemetry_rollup.server.export import AppDay, day_window

METRIC = "telemetry_rollup.count"
SCOPE = "telemetry_rollup"
#: The exporter's loggers (retries, failures): collected for our one-line error, not printed.
_LOGGER = "opentelemetry.exporter"


def metrics_data(item: AppDay) -> MetricsData:
    """The OTLP data of one app's day: one resource per app version. Pure."""
    start, end = day_window(item.day)
    resources = []
    for version, totals in item.versions():
        points = [
            NumberDataPoint(attributes={"counter": name}, start_time_unix_nano=start, time_unix_nano=end, value=total)
            for name, total in totals
        ]
        metric = Metric(
            name=METRIC,
            description="Daily total of a telemetry_rollup counter (one point per counter, app version and UTC day)",
            unit="{count}",
            data=Sum(data_points=points, aggregation_temporality=AggregationTemporality.DELTA, is_monotonic=True),
        )
        scope = ScopeMetrics(scope=InstrumentationScope(SCOPE, __version__), metrics=[metric], schema_url="")
        # Resource(...) rather than Resource.create(): exactly these attributes, nothing from the
        # environment (OTEL_RESOURCE_ATTRIBUTES) or the SDK.
        attributes = {"service.name": item.app}
        if version is not None:
            attributes["service.version"] = version
        resources.append(ResourceMetrics(resource=Resource(attributes), scope_metrics=[scope], schema_url=""))
    return MetricsData(resource_metrics=resources)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


class Sender:
    """The exporter for one endpoint. ``timeout`` bounds each request, its retries included
    (the exporter retries 429, 502, 503 and 504 with backoff, and connection errors)."""

    def __init__(self, url: str, timeout: float) -> None:
        # Headers (an API key), certificates and compression come from the exporter's usual
        # OTEL_EXPORTER_OTLP_* variables; the endpoint is the one given, as it is.
        self.exporter = OTLPMetricExporter(endpoint=url, timeout=timeout)
        self.timeout = timeout

    def send(self, item: AppDay) -> str:
        """Send one app's day; "" when the endpoint answered 2xx, else why not (one line)."""
        collect = _Collect()
        logger = logging.getLogger(_LOGGER)
        propagate = logger.propagate
        logger.addHandler(collect)
        logger.propagate = False
        try:
            result = self.exporter.export(metrics_data(item), timeout_millis=self.timeout * 1000)
        finally:
            logger.removeHandler(collect)
            logger.propagate = propagate
        if result is MetricExportResult.SUCCESS:
            return ""
        return collect.messages[-1] if collect.messages else "the exporter failed"

    def close(self) -> None:
        self.exporter.shutdown()


__all__ = ["METRIC", "SCOPE", "Sender", "metrics_data"]
