"""Configuring the OpenTelemetry SDK and its exporters (the code behind ``asyncdag.telemetry``)."""

from __future__ import annotations

import atexit
import json
import logging
import os
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final, cast

import attrs

from asyncdag._errors import AsyncdagError

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
    from opentelemetry.sdk.trace.sampling import Sampler

    from asyncdag.telemetry._jaeger_json import (
        JaegerJsonExporter,
        spans_to_jaeger_json,
        write_jaeger_json,
    )

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

DEFAULT_SERVICE_NAME: Final = "asyncdag"
#: Values accepted by ``exporter=`` and ``OTEL_TRACES_EXPORTER`` (comma-separated there).
#: ``otlp_proto_http`` / ``otlp_proto_grpc`` are the SDK's names that also fix the protocol.
EXPORTER_NAMES: Final = ("otlp", "otlp_proto_http", "otlp_proto_grpc", "console", "none")
#: Values accepted by ``otlp_protocol=`` and ``OTEL_EXPORTER_OTLP[_TRACES]_PROTOCOL``.
OTLP_PROTOCOLS: Final = ("http/protobuf", "grpc")

_INSTALL_HINT: Final = "pip install 'asyncdag[otel]'"
_ENDPOINT_VARS: Final = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
# Read here or by the SDK; part of a configuration's identity, so a changed environment is
# not mistaken for the same configuration.
_RELEVANT_ENV: Final = (
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_TRACES_EXPORTER",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    *_ENDPOINT_VARS,
)
_logger = logging.getLogger(__name__)


class TelemetryConfigError(AsyncdagError, ValueError):
    """Telemetry was asked for something that cannot be set up (an unknown name, a clash)."""


class TelemetryNotInstalledError(AsyncdagError, ImportError):
    """The OpenTelemetry SDK or an exporter is missing; the message says what to install."""


def configure(
    *,
    service_name: str | None = None,
    exporter: str | Sequence[str] | None = None,
    otlp_endpoint: str | None = None,
    otlp_protocol: str | None = None,
    trace_file: str | os.PathLike[str] | None = None,
    jaeger_json: str | os.PathLike[str] | None = None,
    console: bool | IO[str] = False,
    sampler: Sampler | None = None,
    batch: bool = True,
    set_global: bool = True,
) -> TracerProvider:
    """Install an SDK tracer provider that exports asyncdag's spans; return it.

    Call it once, early, in a program that wants traces (the CLI calls
    :func:`configure_from_env` for you). Every argument left out falls back to the
    standard variable:

    - ``service_name``: ``OTEL_SERVICE_NAME``, then ``service.name`` in
      ``OTEL_RESOURCE_ATTRIBUTES``, then ``"asyncdag"``. Other resource attributes come from
      ``OTEL_RESOURCE_ATTRIBUTES``.
    - ``exporter``: one of :data:`EXPORTER_NAMES` or a list of them; else the comma-separated
      ``OTEL_TRACES_EXPORTER``; else ``"otlp"``, except when ``console``, ``trace_file`` or
      ``jaeger_json`` are given and no OTLP endpoint or protocol is (by argument or variable):
      then those alone, so no collector is needed.
    - ``otlp_endpoint``: a base URL such as ``http://localhost:4318`` (``/v1/traces`` is
      added for HTTP) or ``http://localhost:4317`` for gRPC; else the SDK reads
      ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_ENDPOINT``.
    - ``otlp_protocol``: ``"http/protobuf"`` or ``"grpc"``; else
      ``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL``, ``OTEL_EXPORTER_OTLP_PROTOCOL``, then
      ``"http/protobuf"`` (the OTel default).
    - ``sampler``: else the SDK reads ``OTEL_TRACES_SAMPLER``.

    ``console`` may be an open text stream instead of ``True`` (stdout). ``batch=False`` exports
    each span as it ends (slower; handy in short scripts). Spans are flushed and exporters shut
    down at interpreter exit, or earlier by :func:`shutdown`.

    Calling it twice: with ``set_global=True`` (the default) there is one configuration per
    process, because OpenTelemetry allows the global tracer provider to be set only once. A
    second call with the same settings returns the same provider (nothing is added twice);
    a call with different settings raises :class:`TelemetryConfigError`, as does a call when
    something other than asyncdag already installed a global provider. With
    ``set_global=False`` every call builds a separate provider, which the caller passes to
    where spans are made.
    """
    settings = _resolve_settings(
        service_name=service_name,
        exporter=exporter,
        otlp_endpoint=otlp_endpoint,
        otlp_protocol=otlp_protocol,
        trace_file=trace_file,
        jaeger_json=jaeger_json,
        console=console,
        sampler=sampler,
        batch=batch,
    )
    with _state.lock:
        if set_global:
            existing = _check_global_slot(settings)
            if existing is not None:
                return existing
        provider = _build_provider(settings)
        if set_global:
            from opentelemetry import trace

            trace.set_tracer_provider(provider)
            _state.global_provider = provider
            _state.global_settings = settings
        _state.providers.append(provider)
        if not _state.atexit_registered:
            atexit.register(_shutdown_at_exit)
            _state.atexit_registered = True
    return provider


def configure_from_env() -> TracerProvider | None:
    """Configure from ``OTEL_*`` variables alone, if they ask for an exporter; else do nothing.

    For entry points such as the CLI: tracing stays off (and the SDK unimported) unless
    ``OTEL_TRACES_EXPORTER`` or an OTLP endpoint variable is set, ``OTEL_TRACES_EXPORTER=none``
    or ``OTEL_SDK_DISABLED=true`` switch it off, and a global provider already installed (by an
    earlier :func:`configure`, or by ``opentelemetry-instrument``) is left in place and returned.
    """
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    names = os.environ.get("OTEL_TRACES_EXPORTER", "").strip()
    wants_export = bool(names) or any(os.environ.get(var, "").strip() for var in _ENDPOINT_VARS)
    if not wants_export or _parse_exporter_names(names or "otlp", source="") == ():
        return None
    with _state.lock:
        if _state.global_provider is not None:
            return _state.global_provider
        from opentelemetry import trace

        current = trace.get_tracer_provider()
        if not isinstance(current, trace.ProxyTracerProvider):
            _logger.info("a global tracer provider is already installed; using it as it is")
            return cast("TracerProvider", current)
        return configure()


def force_flush(*, timeout_millis: int = 30_000) -> bool:
    """Export every finished span now; ``True`` if every provider flushed in time.

    Useful before handing a trace file to someone while the process keeps running.
    """
    with _state.lock:
        providers = list(_state.providers)
    return all([provider.force_flush(timeout_millis) for provider in providers])


def shutdown(*, timeout: float | None = None) -> list[str]:
    """Flush and close every provider :func:`configure` made; safe to call more than once.

    Registered with :mod:`atexit`, so a normal exit loses no span. After it, spans are no
    longer exported, and the global provider cannot be replaced within this process.

    ``timeout`` bounds the wait, in seconds: an unreachable OTLP collector would otherwise
    hold the caller for the exporter's whole retry schedule (10 s by default); the spans
    not exported by then are dropped.  Returns one line per problem (spans an exporter
    could not deliver, a flush cut short, an exporter that failed to close), empty when
    every span went out; the :mod:`atexit` hook logs them as warnings instead.
    """
    with _state.lock:
        providers, _state.providers = _state.providers, []
        watched, _state.watched = _state.watched, []
        _state.shut_down = _state.global_provider is not None
    problems: list[str] = []

    def close_all() -> None:
        for provider in providers:
            try:
                provider.shutdown()
            except Exception as error:  # one failing exporter must not stop the others flushing
                _logger.debug("shutting down a tracer provider failed", exc_info=True)
                problems.append(f"closing a trace exporter failed: {type(error).__name__}: {error}")

    if timeout is None:
        close_all()
        finished = True
    else:
        # A daemon thread: if the exporters are still retrying when the process exits,
        # nothing waits for them.
        closer = threading.Thread(target=close_all, name="asyncdag-telemetry-shutdown", daemon=True)
        closer.start()
        closer.join(timeout)
        finished = not closer.is_alive()
    for exporter in watched:
        problem = exporter.problem(cut_short=None if finished else timeout)
        if problem is not None:
            problems.append(problem)
    return list(problems)


def _shutdown_at_exit() -> None:
    for problem in shutdown():
        _logger.warning("%s", problem)


# -- settings ---------------------------------------------------------------------------


@attrs.frozen
class _Settings:
    """A configuration resolved from arguments and environment: what makes two calls equal."""

    service_name: str | None
    exporters: tuple[str, ...]
    otlp_protocol: str
    otlp_endpoint: str | None
    trace_file: Path | None
    jaeger_json: Path | None
    console: bool | IO[str] = attrs.field(eq=attrs.cmp_using(eq=lambda a, b: a is b))
    sampler: Any = attrs.field(eq=attrs.cmp_using(eq=lambda a, b: a is b))
    batch: bool = True
    environment: tuple[tuple[str, str], ...] = ()


def _resolve_settings(
    *,
    service_name: str | None,
    exporter: str | Sequence[str] | None,
    otlp_endpoint: str | None,
    otlp_protocol: str | None,
    trace_file: str | os.PathLike[str] | None,
    jaeger_json: str | os.PathLike[str] | None,
    console: bool | IO[str],
    sampler: Sampler | None,
    batch: bool,
) -> _Settings:
    if exporter is not None:
        names = _parse_exporter_names(exporter, source="exporter=")
    elif env_names := os.environ.get("OTEL_TRACES_EXPORTER", "").strip():
        names = _parse_exporter_names(env_names, source="OTEL_TRACES_EXPORTER")
    else:
        files_or_console = trace_file is not None or jaeger_json is not None or bool(console)
        otlp_asked = (
            otlp_endpoint is not None
            or otlp_protocol is not None
            or any(os.environ.get(var, "").strip() for var in _ENDPOINT_VARS)
        )
        names = ("otlp",) if otlp_asked or not files_or_console else ()

    protocol = _resolve_protocol(otlp_protocol)
    resolved: list[str] = []
    for name in names:
        if name == "otlp_proto_http":
            name, protocol = "otlp", "http/protobuf"
        elif name == "otlp_proto_grpc":
            name, protocol = "otlp", "grpc"
        if name not in resolved:
            resolved.append(name)
    if console is not False and "console" not in resolved:
        resolved.append("console")
    if console is True:
        console = sys.stdout

    return _Settings(
        service_name=service_name,
        exporters=tuple(resolved),
        otlp_protocol=protocol,
        otlp_endpoint=_normalise_endpoint(otlp_endpoint, protocol),
        trace_file=Path(trace_file) if trace_file is not None else None,
        jaeger_json=Path(jaeger_json) if jaeger_json is not None else None,
        console=console,
        sampler=sampler,
        batch=batch,
        environment=tuple((var, os.environ[var]) for var in _RELEVANT_ENV if var in os.environ),
    )


def _parse_exporter_names(value: str | Sequence[str], *, source: str) -> tuple[str, ...]:
    raw = value.split(",") if isinstance(value, str) else list(value)
    names = tuple(name.strip().lower() for name in raw if name.strip())
    for name in names:
        if name not in EXPORTER_NAMES:
            hint = ""
            if name == "jaeger":
                hint = " Jaeger v2 receives OTLP: use 'otlp' and point it at port 4318 (or 4317)."
            elif name in {"file", "jsonl", "json"}:
                hint = " For files, pass trace_file= (JSON lines) or jaeger_json= to configure()."
            where = f" in {source}" if source else ""
            raise TelemetryConfigError(
                f"unknown trace exporter {name!r}{where}; valid names are "
                f"{', '.join(EXPORTER_NAMES)} (comma-separated for several).{hint}"
            )
    # "none" means no named exporter, whatever else is listed with it.
    return () if "none" in names else names


def _resolve_protocol(argument: str | None) -> str:
    candidates = [(argument, "otlp_protocol=")]
    for var in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        candidates.append((os.environ.get(var), var))
    for value, source in candidates:
        if value is None or not value.strip():
            continue
        protocol = value.strip().lower()
        if protocol not in OTLP_PROTOCOLS:
            extra = (
                " (OpenTelemetry Python's exporters do not send OTLP/JSON)"
                if protocol == "http/json"
                else ""
            )
            raise TelemetryConfigError(
                f"unsupported OTLP protocol {value!r} in {source}{extra}; "
                f"use one of {', '.join(OTLP_PROTOCOLS)}"
            )
        return protocol
    return "http/protobuf"


def _normalise_endpoint(endpoint: str | None, protocol: str) -> str | None:
    if endpoint is None:
        return None
    endpoint = endpoint.strip()
    if "://" not in endpoint:
        # "localhost:4317" would otherwise be read as a scheme and get a TLS channel.
        endpoint = f"http://{endpoint}"
    if protocol == "http/protobuf" and not endpoint.rstrip("/").endswith("/v1/traces"):
        endpoint = f"{endpoint.rstrip('/')}/v1/traces"
    return endpoint


def _check_global_slot(settings: _Settings) -> TracerProvider | None:
    """Return the provider to reuse, ``None`` to build one, or raise on a clash."""
    if _state.global_settings is not None:
        if _state.shut_down:
            raise TelemetryConfigError(
                "telemetry was shut down in this process and OpenTelemetry lets the global "
                "tracer provider be set only once; configure it once, before any shutdown(), "
                "or pass set_global=False for a separate provider"
            )
        if _state.global_settings == settings:
            return _state.global_provider
        raise TelemetryConfigError(
            "telemetry is already configured in this process with different settings "
            f"(exporters: {', '.join(_state.global_settings.exporters) or 'none'}); "
            "call configure() once, or pass set_global=False for a separate provider"
        )
    from opentelemetry import trace

    current = trace.get_tracer_provider()
    if not isinstance(current, trace.ProxyTracerProvider):
        raise TelemetryConfigError(
            f"a global tracer provider ({type(current).__qualname__}) was installed by "
            "something other than asyncdag.telemetry; keep that one (asyncdag's spans go to it) "
            "or pass set_global=False"
        )
    return None


# -- building the provider ---------------------------------------------------------------


def _build_provider(settings: _Settings) -> TracerProvider:
    sdk_trace = _import_sdk_module("opentelemetry.sdk.trace")
    export = _import_sdk_module("opentelemetry.sdk.trace.export")

    jaeger_processor = None
    if settings.jaeger_json is not None:
        # First, so a file that cannot be added to fails before any exporter starts.
        _check_writable_file(settings.jaeger_json, "jaeger_json")
        jaeger = _import_sdk_module("asyncdag.telemetry._jaeger_json")
        try:
            exporter = jaeger.JaegerJsonExporter(settings.jaeger_json)
        except (ValueError, OSError) as error:
            raise TelemetryConfigError(f"jaeger_json: {error}") from error
        jaeger_processor = jaeger.JaegerJsonSpanProcessor(exporter)
    provider = sdk_trace.TracerProvider(
        resource=_resource(settings.service_name),
        sampler=settings.sampler,
        shutdown_on_exit=False,  # our own atexit hook shuts down every provider we made
    )
    processor = export.BatchSpanProcessor if settings.batch else export.SimpleSpanProcessor
    for span_exporter in _exporters(settings):
        provider.add_span_processor(processor(span_exporter))
    if jaeger_processor is not None:
        provider.add_span_processor(jaeger_processor)
    return cast("TracerProvider", provider)


def _resource(service_name: str | None) -> Any:
    resources = _import_sdk_module("opentelemetry.sdk.resources")
    if service_name is None:
        from_env = resources.OTELResourceDetector().detect().attributes.get("service.name")
        service_name = from_env or DEFAULT_SERVICE_NAME
    return resources.Resource.create({"service.name": service_name})


def _exporters(settings: _Settings) -> list[SpanExporter]:
    exporters: list[SpanExporter] = []
    for name in settings.exporters:
        if name == "otlp":
            exporters.append(_otlp_exporter(settings.otlp_protocol, settings.otlp_endpoint))
        elif name == "console":
            export = _import_sdk_module("opentelemetry.sdk.trace.export")
            out = settings.console if not isinstance(settings.console, bool) else sys.stdout
            exporters.append(export.ConsoleSpanExporter(out=out))
    if settings.trace_file is not None:
        exporters.append(cast("SpanExporter", _JsonLinesExporter(settings.trace_file)))
    return exporters


def _otlp_exporter(protocol: str, endpoint: str | None) -> SpanExporter:
    if protocol == "grpc":
        module = _import_sdk_module("opentelemetry.exporter.otlp.proto.grpc.trace_exporter")
    else:
        module = _import_sdk_module("opentelemetry.exporter.otlp.proto.http.trace_exporter")
    # Left as None, the endpoint comes from the OTEL_EXPORTER_OTLP_* variables (SDK's reading).
    exporter = _WatchedExporter(
        module.OTLPSpanExporter(endpoint=endpoint),
        f"the OTLP endpoint {endpoint or _endpoint_from_env(protocol)}",
    )
    with _state.lock:
        _state.watched.append(exporter)
    return cast("SpanExporter", exporter)


def _endpoint_from_env(protocol: str) -> str:
    for var in _ENDPOINT_VARS:
        if value := os.environ.get(var, "").strip():
            return value
    return "http://localhost:4317" if protocol == "grpc" else "http://localhost:4318/v1/traces"


class _WatchedExporter:
    """A span exporter that counts the spans it failed to deliver, so one line can say so.

    The OTLP exporters log every retry (several lines per batch) and then drop the
    batch; the count lets :func:`shutdown` report the outcome once, naming the endpoint.
    A SpanExporter by duck typing, like :class:`_JsonLinesExporter`.
    """

    def __init__(self, exporter: Any, label: str) -> None:
        self._exporter = exporter
        self.label = label
        self._lock = threading.Lock()
        self.failed = 0
        self.in_flight = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        from opentelemetry.sdk.trace.export import SpanExportResult

        with self._lock:
            self.in_flight += len(spans)
        result: Any = SpanExportResult.FAILURE
        try:
            result = self._exporter.export(spans)
        finally:
            with self._lock:
                self.in_flight -= len(spans)
                if result is not SpanExportResult.SUCCESS:
                    self.failed += len(spans)
        return cast("SpanExportResult", result)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return bool(self._exporter.force_flush(timeout_millis))

    def shutdown(self) -> None:
        self._exporter.shutdown()

    def problem(self, *, cut_short: float | None) -> str | None:
        """One line saying what was lost, or None when nothing was."""
        with self._lock:
            failed, in_flight = self.failed, self.in_flight
        if cut_short is not None and in_flight:
            return (
                f"{in_flight} span(s) were dropped: sending them to {self.label} had not "
                f"succeeded when the {cut_short:g}s allowed at exit ran out; is the collector "
                "running and reachable there?"
            )
        if failed:
            return (
                f"{failed} span(s) could not be exported to {self.label}; is the collector "
                "running and reachable there?"
            )
        return None


def _import_sdk_module(name: str) -> Any:
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError as error:
        raise TelemetryNotInstalledError(
            f"exporting traces needs the OpenTelemetry SDK and exporters, and importing "
            f"{name!r} failed ({error}); install them with: {_INSTALL_HINT}"
        ) from error


def _check_writable_file(path: Path, what: str) -> None:
    """Fail now, naming the path, rather than at exit when the spans are written."""
    if path.is_dir():
        raise TelemetryConfigError(
            f"{what} {str(path)!r} is a directory; name a file to write, such as "
            f"{str(path / 'trace.json')!r}"
        )
    import tempfile

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as error:
        raise TelemetryConfigError(
            f"cannot write {what} {str(path)!r}: {error.strerror or error}; "
            "name a file in a directory you can write to"
        ) from error


# -- JSON lines file ---------------------------------------------------------------------


class _JsonLinesExporter:
    """Append one JSON object per finished span to a file (a SpanExporter by duck typing).

    Plain class rather than an SDK subclass so this module stays importable without the SDK.
    Each line: name, trace_id (32 hex), span_id and parent_span_id (16 hex or null), kind,
    start/end times in Unix nanoseconds, attributes, status, events, links, resource, scope.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file: IO[str] | None = path.open("a", encoding="utf-8")
        except OSError as error:
            raise TelemetryConfigError(
                f"cannot open trace_file {str(path)!r} for appending: {error}"
            ) from error
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        from opentelemetry.sdk.trace.export import SpanExportResult

        with self._lock:
            if self._file is None:
                return SpanExportResult.FAILURE
            for span in spans:
                self._file.write(json.dumps(_span_record(span), default=str) + "\n")
            self._file.flush()
        return SpanExportResult.SUCCESS

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True

    def shutdown(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


def _span_record(span: ReadableSpan) -> dict[str, Any]:
    """One finished span as a plain JSON-ready dict (the ``trace_file`` line format)."""
    context = span.context
    parent = span.parent
    scope = span.instrumentation_scope
    return {
        "name": span.name,
        "trace_id": f"{context.trace_id:032x}",
        "span_id": f"{context.span_id:016x}",
        "parent_span_id": f"{parent.span_id:016x}" if parent is not None else None,
        "kind": span.kind.name,
        "start_time_unix_nano": span.start_time,
        "end_time_unix_nano": span.end_time,
        "attributes": dict(span.attributes or {}),
        "status": {
            "code": span.status.status_code.name,
            "description": span.status.description,
        },
        "events": [
            {
                "name": event.name,
                "time_unix_nano": event.timestamp,
                "attributes": dict(event.attributes or {}),
            }
            for event in span.events
        ],
        "links": [
            {
                "trace_id": f"{link.context.trace_id:032x}",
                "span_id": f"{link.context.span_id:016x}",
                "attributes": dict(link.attributes or {}),
            }
            for link in span.links
        ],
        "resource": dict(span.resource.attributes),
        "scope": {"name": scope.name, "version": scope.version} if scope else None,
    }


class _State:
    """What this process configured; guarded by ``lock``."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.providers: list[TracerProvider] = []
        self.watched: list[_WatchedExporter] = []
        self.global_provider: TracerProvider | None = None
        self.global_settings: _Settings | None = None
        self.shut_down = False
        self.atexit_registered = False


_state = _State()
