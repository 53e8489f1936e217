"""Measurements that need a process of their own; run.py starts one per measurement.

* ``scale`` (W5): peak memory is the kernel's resident-set high-water mark
  (``VmHWM`` in /proc/self/status), reset through /proc/self/clear_refs just
  before the graph is built, so the figure is the peak minus the RSS at that
  moment: the graph, the plan and the run, not the imports.  Each size and
  program gets a fresh process so one run's peak cannot hide another's.
  Chosen over tracemalloc because tracemalloc hooks every allocation (runs get
  several times slower, so time and memory could not come from the same run)
  and sees only Python's allocator, not thread stacks or C buffers.  Not
  ``getrusage().ru_maxrss`` alone: on Linux a child started by fork+exec
  inherits its parent's high-water mark (measured here: a constant 80 MB from
  the suite's own process), so it is only the fallback where /proc is missing.
* ``trace``: a process may set the global OpenTelemetry tracer provider only
  once, so each tracing mode (none, no-op API provider, SDK) gets a process.
  The SDK process also measures the *SDK floor*: the same spans (names, kinds,
  attributes, parent, status), copied from a run asyncdag traced into memory,
  started and ended by a plain loop through the same provider and processor,
  alternated with asyncdag traced and untraced (``tracing=False``).  asyncdag's
  added cost (traced minus untraced) divided by that floor is what tracing
  costs beyond what the SDK itself must spend on those spans.

Usage: ``python _worker.py '<json request>'``; the last stdout line is the JSON answer.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from collections.abc import Sequence
from typing import Any

import anyio
from _harness import alternate, median, quiet_asyncdag_logging, use_working_tree


def _proc_status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _current_rss() -> int:
    kib = _proc_status_kib("VmRSS")
    return kib * 1024 if kib is not None else _ru_maxrss()


def _ru_maxrss() -> int:
    # Linux reports ru_maxrss in KiB (macOS in bytes; this suite targets Linux).
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _reset_peak_rss() -> bool:
    """Make VmHWM start again from the current RSS (Linux >= 4.0); False where it cannot."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True


def _peak_rss() -> int:
    kib = _proc_status_kib("VmHWM")
    return kib * 1024 if kib is not None else _ru_maxrss()


def scale(impl: str, n: int, backend: str, time_runs: int) -> dict[str, Any]:
    """Build the W3 shape at size ``n``, run it once (peak memory), then time ``time_runs`` runs."""
    import raw_anyio
    import workloads

    # Load everything either side needs (asyncdag, the backend's modules, the event
    # loop machinery) first, so the RSS delta is the graph and the run, not imports.
    import asyncdag  # noqa: F401

    async def settle() -> None:
        await anyio.sleep(0)

    anyio.run(settle, backend=backend)
    peak_reset = _reset_peak_rss()
    rss_before = _current_rss()
    started = time.perf_counter()
    if impl == "raw":
        graph = workloads.wide_graph(n)

        async def program() -> Any:
            return await raw_anyio.run_dag_worker_pool(graph, limit=50)

    else:
        program, _ = workloads.dag_runner(
            lambda: workloads.build_wide_pipeline(n), "total", max_concurrency=50
        )
    build_s = time.perf_counter() - started

    async def measure() -> tuple[float, list[float]]:
        first = time.perf_counter()
        value = await program()
        first_s = time.perf_counter() - first
        if value != n:
            raise AssertionError(f"{impl} wide({n}) returned {value!r}")
        if not time_runs:
            return first_s, []
        samples = await alternate(
            {impl: program}, expected=n, repeats=time_runs, warmup=0, budget_s=float("inf")
        )
        return first_s, samples[impl]

    first_s, runs = anyio.run(measure, backend=backend)
    peak = _peak_rss()
    return {
        "impl": impl,
        "n": n,
        "backend": backend,
        "build_s": build_s,
        "first_run_s": first_s,
        "run_s": median(runs) if runs else first_s,
        "runs": runs,
        "rss_before": rss_before,
        "peak_rss": peak,
        "peak_delta_bytes": max(0, peak - rss_before),
        "peak_source": "VmHWM after clear_refs" if peak_reset else "VmHWM or ru_maxrss (not reset)",
    }


def _set_tracing(mode: str) -> Any:
    """Install the provider for ``mode``; return the dropping exporter for the SDK mode."""
    if mode == "off":
        return None
    from opentelemetry import trace

    if mode == "noop":
        trace.set_tracer_provider(trace.NoOpTracerProvider())
        return None
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    class DroppingExporter(SpanExporter):
        """Counts and forgets spans: the cost measured is making and batching them, not I/O."""

        def __init__(self) -> None:
            self.exported = 0

        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            self.exported += len(spans)
            return SpanExportResult.SUCCESS

    exporter = DroppingExporter()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return exporter


def _recorded_spans(dag: Any, backend: str) -> list[Any]:
    """The spans one asyncdag run makes, recorded in memory through a provider of its own."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    anyio.run(lambda: dag(tracer_provider=provider), backend=backend)
    provider.shutdown()
    return list(memory.get_finished_spans())


def sdk_floor(recorded: list[Any], expected: Any) -> Any:
    """A program that starts and ends ``recorded``'s spans through the global provider, no engine.

    Each step span gets its recorded name, kind and final attributes at start, the run span
    as parent, and its recorded status: the least the SDK must do to produce the same trace
    (attributes given at start are the cheapest way to set them).  The run span wraps them.
    """
    from opentelemetry import trace

    tracer = trace.get_tracer("asyncdag-sdk-floor")
    runs = [span for span in recorded if span.parent is None]
    if len(runs) != 1:
        raise RuntimeError(f"expected one run span among the recorded spans, got {len(runs)}")
    run = runs[0]
    steps = [
        (span.name, span.kind, dict(span.attributes or {}), span.status.status_code)
        for span in recorded
        if span.parent is not None
    ]
    run_attributes = dict(run.attributes or {})
    status_ok = trace.Status(trace.StatusCode.OK)
    statuses = {code: trace.Status(code) for _, _, _, code in steps}

    async def floor() -> Any:
        run_span = tracer.start_span(run.name, kind=run.kind, attributes=run_attributes)
        parent = trace.set_span_in_context(run_span)
        for name, kind, attributes, code in steps:
            span = tracer.start_span(name, context=parent, kind=kind, attributes=attributes)
            span.set_status(statuses[code])
            span.end()
        run_span.set_status(status_ok)
        run_span.end()
        return expected

    return floor, len(steps)


def traced(
    mode: str, backend: str, sizes: dict[str, int], repeats: int, warmup: int
) -> dict[str, Any]:
    """Time W2 and W3 under one tracing mode; with the SDK, count the spans that reached export.

    With the SDK, asyncdag untraced and the SDK floor are alternated with the traced runs.
    """
    exporter = _set_tracing(mode)
    import workloads

    cases = [workloads.chain_case(sizes["W2"]), workloads.wide_case(sizes["W3"])]
    out: dict[str, Any] = {"mode": mode, "backend": backend}
    for case in cases:
        dag = case.dag
        if dag is None:
            raise RuntimeError(case.dag_error or "asyncdag pipeline missing")
        programs: dict[str, Any] = {"asyncdag": dag}
        floor_spans = None
        if exporter is not None:
            floor, floor_spans = sdk_floor(_recorded_spans(dag, backend), case.expected)
            programs["untraced"] = lambda dag=dag: dag(tracing=False)
            programs["sdk-floor"] = floor
        samples = anyio.run(
            lambda case=case, programs=programs: alternate(
                programs,
                expected=case.expected,
                repeats=repeats,
                warmup=warmup,
                budget_s=float("inf"),
            ),
            backend=backend,
        )
        out[case.name] = {"size": case.size, "steps": case.steps, "runs": samples["asyncdag"]}
        out[case.name]["median_s"] = median(samples["asyncdag"])
        if floor_spans is not None:
            out[case.name]["floor_step_spans"] = floor_spans
            out[case.name]["untraced_runs"] = samples["untraced"]
            out[case.name]["untraced_median_s"] = median(samples["untraced"])
            out[case.name]["floor_runs"] = samples["sdk-floor"]
            out[case.name]["floor_median_s"] = median(samples["sdk-floor"])
    if exporter is not None:
        from opentelemetry import trace

        trace.get_tracer_provider().shutdown()  # type: ignore[attr-defined]
        out["spans_exported"] = exporter.exported
    return out


def main(argv: list[str]) -> int:
    use_working_tree()
    quiet_asyncdag_logging()
    request = json.loads(argv[1])
    task = request.pop("task")
    if task == "scale":
        answer = scale(**request)
    elif task == "trace":
        answer = traced(**request)
    else:
        raise SystemExit(f"unknown task {task!r}")
    print(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
