"""What tracing costs per step, against the same pipeline run untraced, in one process.

Modes, each timed on the same pipelines in alternated order (so drift in a shared
machine's load lands on every mode alike), reported as medians:

- ``untraced``: ``tracing=False``: the baseline.
- ``off``: tracing on, but no tracer provider configured (the global proxy): what every
  user who never configured OpenTelemetry pays.
- ``noop``: tracing on with the API's ``NoOpTracerProvider``.
- ``api-spans``: a provider whose tracer hands out the API's non-recording spans, so the
  engine makes every span call but nothing records them: what the short-circuit in
  ``asyncdag._engine._tracing.run_tracer`` saves the two modes above.
- ``sdk-batch``: the SDK's ``TracerProvider`` with a ``BatchSpanProcessor`` feeding an
  exporter that drops everything: span creation, attributes and queueing, not I/O.  The
  processor's queue is flushed after each run, outside the timed region.

Providers are passed per run with ``tracer_provider=``; the global provider is never set,
so ``off`` really is "nothing configured".

    PYTHONPATH=src python benchmarks/bench_tracing.py [--repeats 7] [--backend asyncio]
"""

from __future__ import annotations

import argparse
import gc
import logging
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import anyio
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from asyncdag import PipelineDefinition, execute_pipeline_async, pipeline, solid

CHAIN = 1_000
WIDE = 10_000
CHAIN_REPEAT_FACTOR = 5


@solid
async def inc(x: int) -> int:
    return x + 1


@solid
async def leaf() -> int:
    return 1


@pipeline(name="chain_1000")
def chain() -> None:
    value = inc(0)
    for _ in range(CHAIN - 1):
        value = inc(value)


@pipeline(name="wide_10000")
def wide() -> None:
    for _ in range(WIDE):
        leaf()


class DropExporter(SpanExporter):
    """Accepts every batch and keeps nothing, so export I/O is not what gets measured."""

    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


class ApiSpansProvider(trace.TracerProvider):
    """Non-recording spans from a tracer the engine cannot recognise as a no-op."""

    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        return ApiSpansTracer()


class ApiSpansTracer(trace.Tracer):
    def start_span(self, name: str, context: Any = None, *args: Any, **kwargs: Any) -> trace.Span:
        parent = trace.get_current_span(context).get_span_context()
        return trace.NonRecordingSpan(parent if parent.is_valid else trace.INVALID_SPAN_CONTEXT)

    def start_as_current_span(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError


def make_sdk_provider(exporter: DropExporter) -> tuple[TracerProvider, BatchSpanProcessor]:
    provider = TracerProvider(shutdown_on_exit=False)
    # Queue room for a whole run, so what is timed is enqueueing, not dropping on a full queue.
    processor = BatchSpanProcessor(exporter, max_queue_size=WIDE * 2, max_export_batch_size=512)
    provider.add_span_processor(processor)
    return provider, processor


async def measure(
    backend_repeats: int, pipelines: Sequence[PipelineDefinition]
) -> dict[tuple[str, str], list[float]]:
    exporter = DropExporter()
    sdk_provider, processor = make_sdk_provider(exporter)
    modes: dict[str, tuple[dict[str, Any], Callable[[], object]]] = {
        "untraced": ({"tracing": False}, lambda: None),
        "off": ({}, lambda: None),
        "noop": ({"tracer_provider": trace.NoOpTracerProvider()}, lambda: None),
        "api-spans": ({"tracer_provider": ApiSpansProvider()}, lambda: None),
        "sdk-batch": ({"tracer_provider": sdk_provider}, lambda: processor.force_flush()),
    }
    names = list(modes)
    sdk_steps = 0
    samples: dict[tuple[str, str], list[float]] = {}
    for p in pipelines:  # warm-up: plan caches, imports, first-span costs
        for kwargs, after in modes.values():
            result = await execute_pipeline_async(p, **kwargs)
            after()
            sdk_steps += (
                len(result.step_results) if kwargs.get("tracer_provider") is sdk_provider else 0
            )
    for repeat in range(backend_repeats * CHAIN_REPEAT_FACTOR):
        for p in pipelines:
            if len(p.nodes) > CHAIN and repeat % CHAIN_REPEAT_FACTOR:
                continue  # the short pipeline gets more samples: its runs are short and noisy
            order = names[repeat % len(names) :] + names[: repeat % len(names)]
            for mode in order:
                kwargs, after = modes[mode]
                gc.collect()
                start = time.perf_counter()
                result = await execute_pipeline_async(p, **kwargs)
                elapsed = time.perf_counter() - start
                after()
                steps = len(result.step_results)
                if mode == "sdk-batch":
                    sdk_steps += steps
                samples.setdefault((p.name, mode), []).append(elapsed / steps * 1e6)
    sdk_provider.shutdown()
    # A check that the SDK mode really traced: one span per step plus one per run.
    if exporter.spans < sdk_steps:
        print(f"warning: the SDK exported {exporter.spans} spans for {sdk_steps} steps")
    return samples


def render(backend: str, samples: dict[tuple[str, str], list[float]], repeats: int) -> str:
    lines = [
        f"backend {backend}: median (and minimum) µs per step over alternated runs "
        f"({repeats * CHAIN_REPEAT_FACTOR} of the chain, {repeats} of the wide pipeline)",
        f"{'pipeline':<12} {'mode':<10} {'µs/step':>9} {'x untraced':>11} {'+µs/step':>9} "
        f"{'min':>8} {'min x':>7}",
    ]
    pipelines = dict.fromkeys(name for name, _ in samples)
    for name in pipelines:
        base = statistics.median(samples[(name, "untraced")])
        base_min = min(samples[(name, "untraced")])
        for (pname, mode), values in samples.items():
            if pname != name:
                continue
            median = statistics.median(values)
            lines.append(
                f"{name:<12} {mode:<10} {median:>9.2f} {median / base:>11.3f} "
                f"{median - base:>+9.2f} {min(values):>8.2f} {min(values) / base_min:>7.3f}"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--backend", action="append", choices=["asyncio", "trio"], help="default: both"
    )
    args = parser.parse_args(argv)
    logging.getLogger("asyncdag").setLevel(logging.CRITICAL + 1)
    print(f"python {sys.version.split()[0]}, chain of {CHAIN} steps, {WIDE} independent steps")
    for backend in args.backend or ["asyncio", "trio"]:
        samples = anyio.run(measure, args.repeats, [chain, wide], backend=backend)
        print()
        print(render(backend, samples, args.repeats))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
