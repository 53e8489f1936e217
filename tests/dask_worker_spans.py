"""Spans recorded inside the Dask worker processes, for the tracing test.

A module of its own, imported only inside that test: test modules' globals are the
user's own code, which the Dask executor ships *by value*, and a copy shipped by
value would hold a registry of its own in every task.  Imported by reference, this
module is one per worker process, like the worker-side code of a real deployment.
"""

from __future__ import annotations

from typing import Any

_EXPORTER: Any = None


def install_exporter(dask_worker: Any = None) -> bool:
    """Give this worker process an SDK tracer provider with an in-memory exporter."""
    global _EXPORTER
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    if _EXPORTER is None:
        _EXPORTER = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
        trace.set_tracer_provider(provider)
    _EXPORTER.clear()
    return True


def worker_spans(dask_worker: Any = None) -> list[dict[str, Any]]:
    if _EXPORTER is None:
        return []
    return [
        {
            "name": s.name,
            "trace_id": s.context.trace_id,
            "span_id": s.context.span_id,
            "parent": s.parent.span_id if s.parent else None,
        }
        for s in _EXPORTER.get_finished_spans()
    ]
