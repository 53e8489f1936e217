"""Send asyncdag's spans somewhere: configuring the OpenTelemetry SDK and its exporters.

The engine makes one span per run and per step with ``opentelemetry-api`` alone, which costs
nothing until a tracer provider is installed. :func:`configure` installs one (the SDK is an
extra: ``pip install 'asyncdag[otel]'``) with any of these sinks:

- OTLP, for Jaeger v2 or any collector: HTTP/protobuf (port 4318, ``/v1/traces``) by default,
  gRPC (port 4317) with ``otlp_protocol="grpc"``;
- the console (the SDK's JSON rendering, one span at a time);
- ``trace_file="spans.jsonl"``: one JSON object per span per line, appended;
- ``jaeger_json="trace.json"``: Jaeger's own trace format, written at flush and at exit, that
  Jaeger UI's "Upload JSON" opens with no backend running; traces already in the file are
  kept (a file holds several traces), so each run adds its trace to it.

The standard ``OTEL_*`` variables apply whenever the matching argument is not given; the SDK's
exporters read endpoints, headers, timeouts, compression and certificates themselves.
Importing this module does not import the SDK.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._configure import (
    DEFAULT_SERVICE_NAME,
    EXPORTER_NAMES,
    OTLP_PROTOCOLS,
    TelemetryConfigError,
    TelemetryNotInstalledError,
    _import_sdk_module,
    configure,
    configure_from_env,
    force_flush,
    shutdown,
)

if TYPE_CHECKING:
    from ._jaeger_json import JaegerJsonExporter, spans_to_jaeger_json, write_jaeger_json

__all__ = [
    "DEFAULT_SERVICE_NAME",
    "EXPORTER_NAMES",
    "OTLP_PROTOCOLS",
    "JaegerJsonExporter",
    "TelemetryConfigError",
    "TelemetryNotInstalledError",
    "configure",
    "configure_from_env",
    "force_flush",
    "shutdown",
    "spans_to_jaeger_json",
    "write_jaeger_json",
]

from asyncdag._public import publish

publish(__name__, globals(), __all__)

_LAZY = {
    "JaegerJsonExporter": "JaegerJsonExporter",
    "spans_to_jaeger_json": "spans_to_jaeger_json",
    "write_jaeger_json": "write_jaeger_json",
}


def __getattr__(name: str) -> Any:
    # The Jaeger helpers subclass the SDK's SpanExporter; load them (and the SDK) on first use.
    if name in _LAZY:
        module = _import_sdk_module("asyncdag.telemetry._jaeger_json")
        publish(__name__, vars(module), _LAZY)
        return getattr(module, _LAZY[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
