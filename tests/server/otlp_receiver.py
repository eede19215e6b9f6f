"""A real OTLP/HTTP metrics endpoint on 127.0.0.1 for the export tests: every request is decoded
with the official protobuf definitions (``opentelemetry-proto``) and kept; answers can be
scripted (a status per request, a delay, a hook that runs before the answer)."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality


@dataclass(frozen=True)
class Point:
    """One data point as a backend receives it, with everything that identifies its stream."""

    resource: tuple[tuple[str, str], ...]
    scope: str
    scope_version: str
    metric: str
    attributes: tuple[tuple[str, str], ...]
    start: int
    end: int
    value: int
    delta: bool
    monotonic: bool

    @property
    def app(self) -> str:
        return dict(self.resource)["service.name"]

    @property
    def version(self) -> str | None:
        """The app version (``service.version``), None when the reports gave none."""
        return dict(self.resource).get("service.version")

    @property
    def counter(self) -> str:
        return dict(self.attributes)["counter"]


def _attrs(kvs: Any) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((kv.key, kv.value.string_value) for kv in kvs))


def points_of(request: ExportMetricsServiceRequest) -> list[Point]:
    out = []
    for rm in request.resource_metrics:
        resource = _attrs(rm.resource.attributes)
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                assert metric.WhichOneof("data") == "sum", metric
                s = metric.sum
                for p in s.data_points:
                    out.append(
                        Point(
                            resource=resource,
                            scope=sm.scope.name,
                            scope_version=sm.scope.version,
                            metric=metric.name,
                            attributes=_attrs(p.attributes),
                            start=p.start_time_unix_nano,
                            end=p.time_unix_nano,
                            value=p.as_int,
                            delta=s.aggregation_temporality == AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA,
                            monotonic=s.is_monotonic,
                        )
                    )
    return out


class Receiver:
    def __init__(self) -> None:
        self.requests: list[ExportMetricsServiceRequest] = []
        self.paths: list[str] = []
        self.headers: list[dict[str, str]] = []
        self.statuses: list[int] = []  # answered in turn; 200 once empty
        self.delay = 0.0
        self.before_answer: Callable[[], None] | None = None
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                assert self.headers["Content-Type"] == "application/x-protobuf"
                request = ExportMetricsServiceRequest.FromString(body)
                with receiver.lock:
                    receiver.requests.append(request)
                    receiver.paths.append(self.path)
                    receiver.headers.append({k.lower(): v for k, v in self.headers.items()})
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                if receiver.delay:
                    threading.Event().wait(receiver.delay)
                if receiver.before_answer is not None:
                    receiver.before_answer()
                payload = ExportMetricsServiceResponse().SerializeToString()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def points(self) -> list[Point]:
        with self.lock:
            return [p for r in self.requests for p in points_of(r)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
