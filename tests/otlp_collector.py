"""An OTLP/HTTP receiver on loopback, standing in for an OpenTelemetry Collector.

It keeps every request body by path, and decodes them with ``opentelemetry-proto``, as a collector
would: what it returns is what an OTLP backend receives.
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, Span


class Collector:
    """The protobuf bodies posted to each path (``/v1/traces``, ``/v1/metrics``)."""

    def __init__(self) -> None:
        self.bodies: dict[str, list[bytes]] = {}
        self._lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                with collector._lock:
                    collector.bodies.setdefault(self.path, []).append(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"

    def _received(self, path: str) -> list[bytes]:
        with self._lock:
            return list(self.bodies.get(path, ()))

    def resource_spans(self) -> list[ResourceSpans]:
        request = ExportTraceServiceRequest()
        for body in self._received("/v1/traces"):
            request.MergeFromString(body)
        return list(request.resource_spans)

    def spans(self) -> list[Span]:
        return [span for rs in self.resource_spans() for ss in rs.scope_spans for span in ss.spans]

    def metric_names(self) -> set[str]:
        request = ExportMetricsServiceRequest()
        for body in self._received("/v1/metrics"):
            request.MergeFromString(body)
        return {
            metric.name for rm in request.resource_metrics for sm in rm.scope_metrics for metric in sm.metrics
        }


@pytest.fixture
def collector() -> Iterator[Collector]:
    made = Collector()
    thread = threading.Thread(target=made.server.serve_forever, daemon=True)
    thread.start()
    yield made
    made.server.shutdown()
    made.server.server_close()
    thread.join()
