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
from typing import Any

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
#: Answers worth another try. The exporter's own retries differ by version (those that still
#: install on Python 3.9 retry 502-504 but not 429), so the session retries these itself.
RETRY_STATUSES = (429, 502, 503, 504)


def _session() -> Any:
    """A session that retries a transient answer up to 3 times after 0, 1 and 2 s. Only
    answers: a connection error or a timeout is left to the exporter, whose deadline bounds it.
    Retry-After is not followed: a receiver's long wait must not stall the export.
    requests is imported here, when an exporter is made for a send, not at import."""
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.util.retry import Retry

    retry = Retry(
        total=3,
        connect=0,
        read=0,
        other=0,
        status=3,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=None,  # OTLP/HTTP is a POST; the same points may be sent again
        backoff_factor=0.5,
        respect_retry_after_header=False,
        raise_on_status=False,
    )
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


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
    (429, 502, 503 and 504 are retried with backoff whatever the exporter's version)."""

    def __init__(self, url: str, timeout: float) -> None:
        # Headers (an API key), certificates and compression come from the exporter's usual
        # OTEL_EXPORTER_OTLP_* variables; the endpoint is the one given, as it is.
        self.exporter = OTLPMetricExporter(endpoint=url, timeout=timeout, session=_session())
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
