"""A real OTLP receiver on loopback, so export tests check what actually went over the wire.

It speaks OTLP/HTTP (``POST /v1/traces``, ``application/x-protobuf``, optionally gzip or
deflate encoded) and OTLP/gRPC, decodes requests with the official protobuf classes and keeps
each span as a plain dict::

    {"name", "trace_id" (32 hex), "span_id" (16 hex), "parent_span_id" (16 hex or None),
     "kind" ("INTERNAL", "SERVER", ...), "start_time_unix_nano", "end_time_unix_nano",
     "attributes" (python values), "status_code" ("UNSET", "OK", "ERROR"), "status_message",
     "events": [{"name", "time_unix_nano", "attributes"}], "links": [{"trace_id", "span_id"}],
     "resource" (python values, e.g. resource["service.name"]), "scope" (name), "transport"}

Use the ``otlp_receiver`` fixture (import it into a conftest or test module)::

    def test_x(otlp_receiver):
        ...point OTEL_EXPORTER_OTLP_ENDPOINT at otlp_receiver.http_endpoint...
        spans = otlp_receiver.wait_for_spans(3)
"""

from __future__ import annotations

import gzip
import http.server
import threading
import zlib
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

__all__ = ["OtlpReceiver", "otlp_receiver"]

_TRACES_PATH = "/v1/traces"
# A liveness bound for waiting on an exporter in another process, not a performance claim.
DEFAULT_WAIT = 60.0


class OtlpReceiver:
    """Collect spans sent over OTLP/HTTP and OTLP/gRPC to 127.0.0.1 on free ports."""

    def __init__(self, *, grpc: bool = True) -> None:
        self._spans: list[dict[str, Any]] = []
        self._errors: list[str] = []
        self._requests = 0
        self._encodings: list[str] = []
        self._changed = threading.Condition()
        self._http = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._http.daemon_threads = True
        self._http_thread = threading.Thread(
            target=self._http.serve_forever, name="otlp-receiver-http", daemon=True
        )
        self._grpc_server: Any = None
        self._grpc_port: int | None = None
        if grpc:
            self._start_grpc()

    # -- endpoints --------------------------------------------------------------------

    @property
    def http_endpoint(self) -> str:
        """Base URL for ``OTEL_EXPORTER_OTLP_ENDPOINT`` with http/protobuf (no path)."""
        host, port = self._http.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def traces_url(self) -> str:
        """Full URL for ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` (used as given, path included)."""
        return self.http_endpoint + _TRACES_PATH

    @property
    def grpc_endpoint(self) -> str:
        """``http://127.0.0.1:PORT`` for protocol grpc (``http`` means no TLS)."""
        if self._grpc_port is None:
            raise RuntimeError("this receiver was started with grpc=False")
        return f"http://127.0.0.1:{self._grpc_port}"

    # -- what arrived -----------------------------------------------------------------

    @property
    def spans(self) -> list[dict[str, Any]]:
        with self._changed:
            return list(self._spans)

    @property
    def errors(self) -> list[str]:
        """Requests the receiver rejected, as messages; a passing test expects none."""
        with self._changed:
            return list(self._errors)

    @property
    def content_encodings(self) -> list[str]:
        """The Content-Encoding of each HTTP request ("" when none), in arrival order."""
        with self._changed:
            return list(self._encodings)

    @property
    def request_count(self) -> int:
        with self._changed:
            return self._requests

    def wait_for_spans(self, n: int, timeout: float = DEFAULT_WAIT) -> list[dict[str, Any]]:
        """Block until at least ``n`` spans arrived; return all of them.

        Raises AssertionError naming what did arrive (and any rejected request) on timeout.
        """
        with self._changed:
            arrived = self._changed.wait_for(lambda: len(self._spans) >= n, timeout)
            if not arrived:
                names = [span["name"] for span in self._spans]
                raise AssertionError(
                    f"expected {n} spans within {timeout}s, got {len(names)}: {names}; "
                    f"rejected requests: {self._errors}"
                )
            return list(self._spans)

    def clear(self) -> None:
        with self._changed:
            self._spans.clear()
            self._errors.clear()
            self._requests = 0
            self._encodings.clear()

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> OtlpReceiver:
        self._http_thread.start()
        if self._grpc_server is not None:
            self._grpc_server.start()
        return self

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._http_thread.join()
        if self._grpc_server is not None:
            self._grpc_server.stop(grace=None).wait()

    def __enter__(self) -> OtlpReceiver:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- internals --------------------------------------------------------------------

    def _start_grpc(self) -> None:
        import grpc

        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_GrpcServicer(self), server)
        self._grpc_port = server.add_insecure_port("127.0.0.1:0")
        self._grpc_server = server

    def _accept(self, request: trace_service_pb2.ExportTraceServiceRequest, transport: str) -> None:
        spans = list(_decode(request, transport))
        with self._changed:
            self._requests += 1
            self._spans.extend(spans)
            self._changed.notify_all()

    def _reject(self, message: str) -> None:
        with self._changed:
            self._requests += 1
            self._errors.append(message)
            self._changed.notify_all()


@pytest.fixture
def otlp_receiver() -> Iterator[OtlpReceiver]:
    """A started :class:`OtlpReceiver` (HTTP and gRPC), stopped after the test."""
    with OtlpReceiver() as receiver:
        yield receiver


def _make_handler(receiver: OtlpReceiver) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the exporter's session expects

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            if self.path != _TRACES_PATH:
                self._reply_error(404, f"POST to {self.path!r}, expected {_TRACES_PATH!r}")
                return
            content_type = self.headers.get("Content-Type", "").split(";")[0].strip()
            if content_type != "application/x-protobuf":
                self._reply_error(415, f"unsupported Content-Type {content_type!r}")
                return
            encoding = self.headers.get("Content-Encoding", "").strip().lower()
            with receiver._changed:
                receiver._encodings.append(encoding)
            try:
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                elif encoding not in {"", "identity"}:
                    self._reply_error(415, f"unsupported Content-Encoding {encoding!r}")
                    return
                request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
            except Exception as error:
                self._reply_error(400, f"undecodable body: {error!r}")
                return
            receiver._accept(request, "http")
            self._reply(200, trace_service_pb2.ExportTraceServiceResponse().SerializeToString())

        def _reply_error(self, status: int, message: str) -> None:
            receiver._reject(message)
            self._reply(status, message.encode())

        def _reply(self, status: int, payload: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output quiet; rejected requests are kept in receiver.errors

    return Handler


class _GrpcServicer(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, receiver: OtlpReceiver) -> None:
        self._receiver = receiver

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        self._receiver._accept(request, "grpc")
        return trace_service_pb2.ExportTraceServiceResponse()


def _decode(
    request: trace_service_pb2.ExportTraceServiceRequest, transport: str
) -> Iterator[dict[str, Any]]:
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                yield {
                    "name": span.name,
                    "trace_id": span.trace_id.hex(),
                    "span_id": span.span_id.hex(),
                    "parent_span_id": span.parent_span_id.hex() or None,
                    "kind": trace_pb2.Span.SpanKind.Name(span.kind).removeprefix("SPAN_KIND_"),
                    "start_time_unix_nano": span.start_time_unix_nano,
                    "end_time_unix_nano": span.end_time_unix_nano,
                    "attributes": _attributes(span.attributes),
                    "status_code": trace_pb2.Status.StatusCode.Name(span.status.code).removeprefix(
                        "STATUS_CODE_"
                    ),
                    "status_message": span.status.message,
                    "events": [
                        {
                            "name": event.name,
                            "time_unix_nano": event.time_unix_nano,
                            "attributes": _attributes(event.attributes),
                        }
                        for event in span.events
                    ],
                    "links": [
                        {"trace_id": link.trace_id.hex(), "span_id": link.span_id.hex()}
                        for link in span.links
                    ],
                    "resource": resource,
                    "scope": scope_spans.scope.name,
                    "transport": transport,
                }


def _attributes(key_values: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in key_values}


def _value(value: common_pb2.AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [_value(item) for item in value.array_value.values]
    if which == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    return getattr(value, which)
