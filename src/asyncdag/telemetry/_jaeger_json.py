"""Finished spans as Jaeger's own JSON trace format, the file Jaeger UI's "Upload JSON" opens.

A run's trace can then be looked at without any tracing backend: write the file, open
Jaeger UI (or its "JSON file" search tab) and drop it in. The shape follows Jaeger's
``model/json`` (what ``/api/traces`` returns) and the OTLP→Jaeger mapping the collector
uses: span kind as the ``span.kind`` tag, status as ``otel.status_code`` (plus
``error=true`` on ERROR), events as logs carrying an ``event`` field, the parent as a
``CHILD_OF`` reference and links as ``FOLLOWS_FROM`` references.  The instrumentation
scope goes in as ``otel.scope.name``/``.version`` and, for the Jaeger UI versions that
read only those, as ``otel.library.name``/``.version`` too.

A file is a collection of traces (``{"data": [trace, ...]}``), so writing adds to it:
traces already in the file are kept, and a trace written again (same trace id) is
merged span by span.  Each run of ``asyncdag pipeline execute --jaeger-json FILE``
therefore adds its trace to FILE, as ``--trace-file`` appends its spans.

This module imports the OpenTelemetry SDK; :mod:`asyncdag.telemetry` loads it lazily.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import stat
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, StatusCode

__all__ = [
    "JaegerJsonExporter",
    "merge_traces",
    "read_jaeger_json",
    "spans_to_jaeger_json",
    "write_jaeger_json",
]

_SPAN_KIND_TAG = {
    SpanKind.INTERNAL: "internal",
    SpanKind.SERVER: "server",
    SpanKind.CLIENT: "client",
    SpanKind.PRODUCER: "producer",
    SpanKind.CONSUMER: "consumer",
}


def spans_to_jaeger_json(spans: Iterable[ReadableSpan]) -> dict[str, Any]:
    """Group finished spans into Jaeger traces: ``{"data": [trace, ...]}``, one per trace id.

    Traces come in order of their earliest span, spans within a trace by start time, so
    the output is stable for the same input.
    """
    by_trace: dict[int, list[ReadableSpan]] = {}
    for span in spans:
        by_trace.setdefault(span.context.trace_id, []).append(span)
    traces = [_trace(trace_id, trace_spans) for trace_id, trace_spans in by_trace.items()]
    traces.sort(key=lambda trace: min((s["startTime"] for s in trace["spans"]), default=0))
    return {"data": traces}


def write_jaeger_json(
    spans: Iterable[ReadableSpan], path: str | os.PathLike[str], *, merge: bool = False
) -> Path:
    """Write ``spans`` to ``path`` in Jaeger's JSON format, replacing the file atomically.

    With ``merge=True`` the traces already in the file are kept and the new ones added
    (a trace present in both is merged span by span), so several runs share one file.
    A file there that is not a Jaeger JSON document is never overwritten:
    :class:`ValueError` says so. Atomic so that a reader (or a crash mid-write) never
    sees half a document; a new file gets the usual permissions (0666 less the umask),
    a replaced one keeps its own.
    """
    target = Path(path)
    document = spans_to_jaeger_json(spans)
    if merge:
        document = {"data": merge_traces(read_jaeger_json(target), document["data"])}
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    # os.open with 0o666 lets the umask decide, as open() would; mkstemp would force 0600.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(document, out, indent=1)
            out.write("\n")
        with contextlib.suppress(FileNotFoundError):  # no file yet: the umask's mode stands
            os.chmod(tmp, stat.S_IMODE(target.stat().st_mode))
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def read_jaeger_json(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The traces in a Jaeger JSON file; none for a missing or empty file.

    Raises :class:`ValueError` naming the file when it holds something else, so a
    file given by mistake (a config, another tool's output) is left as it is.
    """
    target = Path(path)
    try:
        text = target.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    if not text.strip():
        return []
    try:
        document = json.loads(text)
    except ValueError:
        document = None
    data = document.get("data") if isinstance(document, dict) else None
    if not isinstance(data, list) or not all(
        isinstance(t, dict) and isinstance(t.get("spans"), list) for t in data
    ):
        raise ValueError(
            f"{target} is not a Jaeger JSON trace file (no {{'data': [traces]}}); asyncdag adds "
            "traces to such files only: give another path, or remove this file"
        )
    return data


def merge_traces(
    old: Sequence[dict[str, Any]], new: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Traces of ``old`` then those of ``new``; one trace in both becomes one, span by span.

    Within a merged trace a span written again replaces its earlier copy, and processes
    are renumbered so two files' ``p1`` never get mixed up.
    """
    merged: dict[str, dict[str, Any]] = {}
    for trace in [*old, *new]:
        trace_id = str(trace.get("traceID", ""))
        if trace_id in merged:
            merged[trace_id] = _merge_trace(merged[trace_id], trace)
        else:
            merged[trace_id] = trace
    return list(merged.values())


def _merge_trace(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    processes: dict[str, dict[str, Any]] = {}
    ids: dict[str, str] = {}  # json of a process -> its id in the merged trace

    def renumber(trace: dict[str, Any]) -> dict[str, str]:
        mapping = {}
        for old_id, process in (trace.get("processes") or {}).items():
            key = json.dumps(process, sort_keys=True)
            if key not in ids:
                ids[key] = f"p{len(ids) + 1}"
                processes[ids[key]] = process
            mapping[old_id] = ids[key]
        return mapping

    spans: dict[str, dict[str, Any]] = {}
    for trace in (first, second):
        mapping = renumber(trace)
        for span in trace["spans"]:
            process_id = span.get("processID")
            spans[str(span.get("spanID"))] = {
                **span,
                "processID": mapping.get(process_id, process_id),
            }
    ordered = sorted(spans.values(), key=lambda s: (s.get("startTime", 0), s.get("spanID", "")))
    return {**first, "spans": ordered, "processes": processes}


class JaegerJsonExporter(SpanExporter):
    """Collect finished spans in memory and add them to one Jaeger JSON file.

    The file is rewritten on ``force_flush()`` and on ``shutdown()``: the traces it held
    before, plus every span seen so far (see :func:`write_jaeger_json` with ``merge``), so
    it always is one complete document and several runs or processes add to it in turn.
    Memory grows with the spans collected: meant for a run or a session, not a
    long-lived server (use OTLP there). Pair it with :class:`JaegerJsonSpanProcessor`
    so ``provider.force_flush()`` writes too. A file that is not a Jaeger JSON document
    raises :class:`ValueError` here, before any span is collected.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        read_jaeger_json(self.path)  # refuse a foreign file now, not at exit
        self._spans: list[ReadableSpan] = []
        self._lock = threading.Lock()
        self._shut_down = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self._lock:
            if self._shut_down:
                return SpanExportResult.FAILURE
            self._spans.extend(spans)
        return SpanExportResult.SUCCESS

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        with self._lock:
            write_jaeger_json(list(self._spans), self.path, merge=True)
        return True

    def shutdown(self) -> None:
        with self._lock:
            if self._shut_down:
                return
            self._shut_down = True
            write_jaeger_json(list(self._spans), self.path, merge=True)


class JaegerJsonSpanProcessor(SimpleSpanProcessor):
    """Hand each ended span to a :class:`JaegerJsonExporter`; flushing writes the file.

    The SDK's processors never call their exporter's ``force_flush``; this one does, so
    ``TracerProvider.force_flush()`` leaves an up-to-date file. Export is an in-memory
    append, so batching would buy nothing.
    """

    def __init__(self, exporter: JaegerJsonExporter) -> None:
        super().__init__(exporter)
        self._jaeger_exporter = exporter

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._jaeger_exporter.force_flush(timeout_millis)


def _trace(trace_id: int, spans: list[ReadableSpan]) -> dict[str, Any]:
    process_ids: dict[tuple[str, str], str] = {}
    processes: dict[str, dict[str, Any]] = {}
    jaeger_spans = []
    for span in sorted(spans, key=lambda s: (s.start_time or 0, s.context.span_id)):
        process = _process(span.resource.attributes)
        process_key = (process["serviceName"], json.dumps(process["tags"], sort_keys=True))
        process_id = process_ids.get(process_key)
        if process_id is None:
            process_id = process_ids[process_key] = f"p{len(process_ids) + 1}"
            processes[process_id] = process
        jaeger_spans.append(_span(span, process_id))
    return {
        "traceID": _trace_id_hex(trace_id),
        "spans": jaeger_spans,
        "processes": processes,
        "warnings": None,
    }


def _span(span: ReadableSpan, process_id: str) -> dict[str, Any]:
    context = span.context
    trace_id = _trace_id_hex(context.trace_id)
    references = []
    if span.parent is not None and span.parent.span_id:
        references.append(
            {
                "refType": "CHILD_OF",
                "traceID": _trace_id_hex(span.parent.trace_id),
                "spanID": _span_id_hex(span.parent.span_id),
            }
        )
    for link in span.links:
        references.append(
            {
                "refType": "FOLLOWS_FROM",
                "traceID": _trace_id_hex(link.context.trace_id),
                "spanID": _span_id_hex(link.context.span_id),
            }
        )
    start = span.start_time or 0
    warnings = None
    if span.end_time is None:
        warnings = ["span had not ended when it was exported; duration is 0"]
    end = span.end_time if span.end_time is not None else start
    return {
        "traceID": trace_id,
        "spanID": _span_id_hex(context.span_id),
        # Jaeger's flag bits: 1 sampled, 2 debug; W3C's other bits (such as "random") differ.
        "flags": 1 if context.trace_flags.sampled else 0,
        "operationName": span.name,
        "references": references,
        "startTime": start // 1000,
        "duration": max(0, end - start) // 1000,
        "tags": _span_tags(span),
        "logs": [
            {
                "timestamp": event.timestamp // 1000,
                "fields": [
                    _key_value("event", event.name),
                    *_key_values(event.attributes or {}),
                ],
            }
            for event in span.events
        ],
        "processID": process_id,
        "warnings": warnings,
    }


def _span_tags(span: ReadableSpan) -> list[dict[str, Any]]:
    tags = _key_values(span.attributes or {})
    scope = span.instrumentation_scope
    if scope is not None and scope.name:
        tags.append(_key_value("otel.scope.name", scope.name))
        tags.append(_key_value("otel.library.name", scope.name))  # what Jaeger UI shows
        if scope.version:
            tags.append(_key_value("otel.scope.version", scope.version))
            tags.append(_key_value("otel.library.version", scope.version))
    kind = _SPAN_KIND_TAG.get(span.kind)
    if kind is not None:
        tags.append(_key_value("span.kind", kind))
    status = span.status
    if status.status_code is StatusCode.ERROR:
        tags.append(_key_value("otel.status_code", "ERROR"))
        tags.append(_key_value("error", True))
        if status.description:
            tags.append(_key_value("otel.status_description", status.description))
    elif status.status_code is StatusCode.OK:
        tags.append(_key_value("otel.status_code", "OK"))
    return tags


def _process(resource_attributes: Mapping[str, Any]) -> dict[str, Any]:
    service_name = str(resource_attributes.get("service.name", "unknown_service"))
    tags = _key_values(
        {key: value for key, value in resource_attributes.items() if key != "service.name"}
    )
    return {"serviceName": service_name, "tags": tags}


def _key_values(attributes: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [_key_value(key, value) for key, value in attributes.items()]


def _key_value(key: str, value: Any) -> dict[str, Any]:
    # bool before int: bool is an int subclass.
    if isinstance(value, bool):
        return {"key": key, "type": "bool", "value": value}
    if isinstance(value, int):
        return {"key": key, "type": "int64", "value": value}
    if isinstance(value, float):
        return {"key": key, "type": "float64", "value": value}
    if isinstance(value, bytes):
        return {"key": key, "type": "binary", "value": base64.b64encode(value).decode("ascii")}
    if isinstance(value, str):
        return {"key": key, "type": "string", "value": value}
    if isinstance(value, Sequence):
        # Jaeger has no array type; the collector's mapping renders arrays as JSON strings.
        return {"key": key, "type": "string", "value": json.dumps(list(value), default=str)}
    return {"key": key, "type": "string", "value": str(value)}


def _trace_id_hex(trace_id: int) -> str:
    return f"{trace_id:032x}"


def _span_id_hex(span_id: int) -> str:
    return f"{span_id:016x}"
