"""The engine's spans: one per run and one per step attempt, as Jaeger will show them.

Every test builds its own SDK ``TracerProvider`` with an ``InMemorySpanExporter`` behind a
``SimpleSpanProcessor`` and hands it to the run with ``tracer_provider=``: OpenTelemetry lets
the *global* provider be set once per process, so the global path is covered in a fresh
interpreter by ``test_tracing_otlp.py``.  User code in the solids takes its tracer from the
same provider; what is under test is that the engine's span is the *current* one there.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from asyncdag import (
    EventType,
    PipelineDefinition,
    PipelineRunResult,
    RetryPolicy,
    RunStatus,
    StepStatus,
    execute_pipeline,
    execute_pipeline_async,
    open_run,
    pipeline,
    resource,
    solid,
)
from asyncdag._engine import _tracing, run_tracer
from asyncdag._plan import ExecutionPlan


@attrs.frozen
class Traced:
    """A provider whose finished spans the test can read."""

    provider: TracerProvider
    exporter: InMemorySpanExporter

    @property
    def tracer(self) -> trace.Tracer:
        return self.provider.get_tracer("user.code")

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def run_span(self) -> ReadableSpan:
        (span,) = [s for s in self.spans() if s.kind is SpanKind.SERVER]
        return span

    def step_spans(self, key: str | None = None) -> list[ReadableSpan]:
        """Step spans in start order (attempt order for one step)."""
        spans = [
            s
            for s in self.spans()
            if s.attributes is not None and "asyncdag.step_key" in s.attributes
        ]
        if key is not None:
            spans = [s for s in spans if s.name == key]
        return sorted(spans, key=lambda s: (s.start_time or 0, attr(s, "asyncdag.attempt")))


@pytest.fixture
def traced() -> Iterator[Traced]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield Traced(provider, exporter)
    provider.shutdown()


def attr(span: ReadableSpan, name: str) -> Any:
    assert span.attributes is not None
    return span.attributes[name]


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


def trace_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.trace_id


async def run(traced: Traced, p: PipelineDefinition, **kwargs: Any) -> PipelineRunResult:
    kwargs.setdefault("raise_on_error", False)
    return await execute_pipeline_async(p, tracer_provider=traced.provider, **kwargs)


# --- shape ---------------------------------------------------------------------------------------


@solid
def source() -> int:
    return 1


@solid
async def double(x: int) -> int:
    return x * 2


@solid
def add(a: int, b: int) -> int:
    return a + b


@pipeline(tags={"team": "data"})
def diamond() -> None:
    one = source()
    add(double(one), double(one))


@pytest.mark.anyio
async def test_run_span_is_a_server_root_with_one_internal_child_per_step(traced: Traced) -> None:
    result = await run(traced, diamond)

    assert result.status is RunStatus.SUCCESS
    run_span = traced.run_span()
    assert run_span.name == "run diamond"
    assert run_span.parent is None
    steps = traced.step_spans()
    assert sorted(s.name for s in steps) == ["add", "double", "double_2", "source"]
    assert len(traced.spans()) == 5
    for step in steps:
        assert step.kind is SpanKind.INTERNAL
        assert parent_id(step) == span_id(run_span)
        assert trace_id(step) == trace_id(run_span)
    assert result.trace_id == format(trace_id(run_span), "032x")


@pytest.mark.anyio
async def test_step_spans_start_after_their_upstream_spans_end(traced: Traced) -> None:
    await run(traced, diamond)

    by_name = {s.name: s for s in traced.step_spans()}
    run_span = traced.run_span()
    assert by_name["source"].end_time <= by_name["double"].start_time  # type: ignore[operator]
    assert by_name["double_2"].end_time <= by_name["add"].start_time  # type: ignore[operator]
    for step in by_name.values():
        assert run_span.start_time <= step.start_time  # type: ignore[operator]
        assert step.end_time <= run_span.end_time  # type: ignore[operator]


@pytest.mark.anyio
async def test_run_span_attributes_name_the_pipeline_run_and_result(traced: Traced) -> None:
    result = await run(traced, diamond, tags={"who": "test"})

    run_span = traced.run_span()
    assert attr(run_span, "cicd.pipeline.name") == "diamond"
    assert attr(run_span, "cicd.pipeline.run.id") == result.run_id
    assert attr(run_span, "cicd.pipeline.result") == "success"
    assert attr(run_span, "asyncdag.tag.team") == "data"
    assert attr(run_span, "asyncdag.tag.who") == "test"
    assert run_span.status.status_code is StatusCode.OK


@solid(
    pool="db",
    timeout=30,
    retry_policy=RetryPolicy(max_retries=3, delay=0.0, retry_on=(OSError,)),
)
async def query(table: str, limit: int) -> str:
    return f"{table}:{limit}"


@pipeline
def aliased() -> None:
    query.alias("users")("users", 10)
    query("orders", 5)


@pytest.mark.anyio
async def test_step_span_attributes_describe_the_solid_pool_attempt_retry_and_inputs(
    traced: Traced,
) -> None:
    result = await run(traced, aliased, concurrency_limits={"db": 1})

    assert result.status is RunStatus.SUCCESS
    users, orders = traced.step_spans("users")[0], traced.step_spans("query")[0]
    for span, key in ((users, "users"), (orders, "query")):
        assert attr(span, "cicd.pipeline.task.name") == key
        assert attr(span, "cicd.pipeline.task.run.id") == f"{result.run_id}:{key}:1"
        assert attr(span, "cicd.pipeline.run.id") == result.run_id
        assert attr(span, "cicd.pipeline.task.run.result") == "success"
        assert attr(span, "asyncdag.step_key") == key
        assert attr(span, "asyncdag.solid") == "query"
        assert attr(span, "asyncdag.pool") == "db"
        assert attr(span, "asyncdag.attempt") == 1
        assert attr(span, "asyncdag.timeout") == 30
        assert attr(span, "asyncdag.inputs") == ("table", "limit")
        assert attr(span, "asyncdag.retry_policy.max_retries") == 3
        assert attr(span, "asyncdag.retry_policy.delay") == 0.0
        assert attr(span, "asyncdag.retry_policy.retry_on") == ("OSError",)
        assert span.status.status_code is StatusCode.OK


# --- failure, skip, retry -----------------------------------------------------------------------


class Boom(Exception):
    pass


@solid
def explode(x: int) -> int:
    raise Boom(f"no {x}")


@pipeline
def failing() -> None:
    double(explode(source()))


@pytest.mark.anyio
async def test_failed_step_span_is_error_with_error_type_and_exception_event(
    traced: Traced,
) -> None:
    result = await run(traced, failing)

    assert result.status is RunStatus.FAILURE
    (span,) = traced.step_spans("explode")
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "Boom: no 1"
    assert attr(span, "cicd.pipeline.task.run.result") == "failure"
    assert attr(span, "error.type") == f"{__name__}.Boom"
    (event,) = [e for e in span.events if e.name == "exception"]
    assert event.attributes is not None
    assert event.attributes["exception.type"] == f"{__name__}.Boom"
    assert event.attributes["exception.message"] == "no 1"
    assert "Traceback" in str(event.attributes["exception.stacktrace"])

    run_span = traced.run_span()
    assert attr(run_span, "cicd.pipeline.result") == "failure"
    assert run_span.status.status_code is StatusCode.ERROR


class Outer:
    class Failure(Exception):
        """Raised by a script run as ``__main__``: its module shows in every error type."""


Outer.Failure.__module__ = "__main__"


@solid
def explode_in_main() -> None:
    raise Outer.Failure("from a script")


@pipeline
def failing_in_main() -> None:
    explode_in_main()


@pytest.mark.anyio
async def test_error_type_is_the_exception_events_type_and_the_stored_one(traced: Traced) -> None:
    result = await run(traced, failing_in_main)

    (span,) = traced.step_spans("explode_in_main")
    (event,) = [e for e in span.events if e.name == "exception"]
    assert event.attributes is not None
    (failure,) = [e for e in result.events if e.type is EventType.STEP_FAILURE]
    assert failure.error is not None
    assert attr(span, "error.type") == "__main__.Outer.Failure"
    assert event.attributes["exception.type"] == "__main__.Outer.Failure"
    assert failure.error.type == "__main__.Outer.Failure"


@pytest.mark.anyio
async def test_skipped_step_gets_a_skip_span_under_the_run(traced: Traced) -> None:
    result = await run(traced, failing)

    assert result.step_results["double"].status is StepStatus.SKIPPED
    (span,) = traced.step_spans("double")
    assert parent_id(span) == span_id(traced.run_span())
    assert attr(span, "cicd.pipeline.task.run.result") == "skip"
    assert attr(span, "asyncdag.attempt") == 0
    assert "explode" in attr(span, "asyncdag.skip_reason")
    assert span.status.status_code is StatusCode.UNSET
    assert not span.events


@solid
async def slow() -> None:
    await anyio.sleep_forever()


@pipeline
def fail_fast_pipeline() -> None:
    explode(source())
    slow()
    double.alias("later")(explode.alias("after")(source.alias("src2")()))


@pytest.mark.anyio
async def test_fail_fast_cancels_running_steps_and_skips_pending_ones_in_spans(
    traced: Traced,
) -> None:
    result = await run(traced, fail_fast_pipeline, fail_fast=True, max_concurrency=2)

    assert result.status is RunStatus.FAILURE
    results = {
        s.name: attr(s, "cicd.pipeline.task.run.result")
        for s in traced.step_spans()
        if s.name in result.step_results
    }
    statuses = {key: r.status for key, r in result.step_results.items()}
    expected = {
        StepStatus.SUCCESS: "success",
        StepStatus.FAILURE: "failure",
        StepStatus.SKIPPED: "skip",
        StepStatus.CANCELED: "cancellation",
    }
    assert results == {key: expected[status] for key, status in statuses.items()}
    # ``slow`` never ends by itself, and ``later`` waits on a step that cannot have finished.
    assert set(results.values()) == {"success", "failure", "cancellation", "skip"}


flaky_calls: dict[str, int] = {}


@solid(retry_policy=RetryPolicy(max_retries=2))
def flaky(context: Any) -> str:
    calls = flaky_calls[context.run_id] = flaky_calls.get(context.run_id, 0) + 1
    if calls < 3:
        raise ConnectionError(f"try {calls}")
    return "ok"


@pipeline
def retried() -> None:
    flaky()


@pytest.mark.anyio
async def test_each_retry_attempt_is_its_own_span_and_failed_tries_show_failure(
    traced: Traced,
) -> None:
    result = await run(traced, retried)

    assert result.status is RunStatus.SUCCESS
    first, second, third = traced.step_spans("flaky")
    assert [attr(s, "asyncdag.attempt") for s in (first, second, third)] == [1, 2, 3]
    assert len({attr(s, "cicd.pipeline.task.run.id") for s in (first, second, third)}) == 3
    for failed, message in ((first, "try 1"), (second, "try 2")):
        assert attr(failed, "cicd.pipeline.task.run.result") == "failure"
        assert failed.status.status_code is StatusCode.ERROR
        assert attr(failed, "error.type") == "ConnectionError"
        assert attr(failed, "asyncdag.retry.will_retry") is True
        (event,) = [e for e in failed.events if e.name == "exception"]
        assert event.attributes is not None
        assert event.attributes["exception.message"] == message
    assert attr(third, "cicd.pipeline.task.run.result") == "success"
    assert third.status.status_code is StatusCode.OK
    assert "asyncdag.retry.will_retry" not in (third.attributes or {})
    # The attempts follow one another: the gap between them is the retry wait.
    assert first.end_time <= second.start_time  # type: ignore[operator]
    assert second.end_time <= third.start_time  # type: ignore[operator]
    run_span = traced.run_span()
    assert {parent_id(s) for s in (first, second, third)} == {span_id(run_span)}
    assert attr(run_span, "cicd.pipeline.result") == "success"


# --- timeout, cancellation, errors ----------------------------------------------------------------


@solid(timeout=0.01)
async def hangs() -> None:
    await anyio.sleep_forever()


@solid(timeout=0.01, retry_policy=RetryPolicy(max_retries=1))
async def hangs_twice() -> None:
    await anyio.sleep_forever()


@pipeline
def timing_out() -> None:
    hangs()
    hangs_twice()


@pytest.mark.anyio
async def test_timed_out_attempts_say_timeout_even_when_retried(traced: Traced) -> None:
    result = await run(traced, timing_out)

    assert result.step_results["hangs"].status is StepStatus.FAILURE
    spans = traced.step_spans("hangs") + traced.step_spans("hangs_twice")
    assert [attr(s, "asyncdag.attempt") for s in spans] == [1, 1, 2]
    for span in spans:
        assert attr(span, "cicd.pipeline.task.run.result") == "timeout"
        assert attr(span, "error.type") == "asyncdag.StepTimeoutError"
        assert span.status.status_code is StatusCode.ERROR
        assert [e.name for e in span.events] == ["exception"]


started_events: dict[str, anyio.Event] = {}


@solid
async def waits_forever(context: Any) -> None:
    started_events[context.run_id].set()
    await anyio.sleep_forever()


@pipeline
def cancellable() -> None:
    double(waits_forever())


@pytest.mark.anyio
async def test_cancelled_run_marks_running_and_pending_steps_cancellation(
    traced: Traced,
) -> None:
    async with open_run(cancellable, tracer_provider=traced.provider) as handle:
        started = started_events[handle.run_id] = anyio.Event()
        await started.wait()
        handle.cancel()
    result = await handle.result()

    assert result.status is RunStatus.CANCELED
    (running,) = traced.step_spans("waits_forever")
    assert attr(running, "cicd.pipeline.task.run.result") == "cancellation"
    assert attr(running, "asyncdag.attempt") == 1
    assert running.status.status_code is StatusCode.ERROR
    assert not [e for e in running.events if e.name == "exception"]
    (pending,) = traced.step_spans("double")
    assert attr(pending, "cicd.pipeline.task.run.result") == "cancellation"
    assert attr(pending, "asyncdag.attempt") == 0
    run_span = traced.run_span()
    assert attr(run_span, "cicd.pipeline.result") == "cancellation"
    assert run_span.status.status_code is StatusCode.ERROR
    assert run_span.end_time is not None


@pytest.mark.anyio
async def test_the_cancel_is_error_run_option_leaves_a_cancelled_runs_spans_unset(
    traced: Traced,
) -> None:
    async with open_run(
        cancellable, tracer_provider=traced.provider, cancel_is_error=False
    ) as handle:
        started = started_events[handle.run_id] = anyio.Event()
        await started.wait()
        handle.cancel()
    result = await handle.result()

    assert result.status is RunStatus.CANCELED
    spans = traced.spans()
    assert sorted(s.name for s in spans) == ["double", "run cancellable", "waits_forever"]
    for span in spans:
        assert span.status.status_code is StatusCode.UNSET, span.name
    assert attr(traced.run_span(), "cicd.pipeline.result") == "cancellation"


@pytest.mark.anyio
async def test_execute_pipeline_async_passes_cancel_is_error_to_the_runs_tracer(
    traced: Traced,
) -> None:
    started = started_events["cancelled-by-its-caller"] = anyio.Event()

    async def cancel_once_started(scope: anyio.CancelScope) -> None:
        await started.wait()
        scope.cancel()

    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(cancel_once_started, scope)
            await execute_pipeline_async(
                cancellable,
                run_id="cancelled-by-its-caller",
                tracer_provider=traced.provider,
                cancel_is_error=False,
            )
    assert scope.cancelled_caught
    assert len(traced.spans()) == 3
    assert {s.status.status_code for s in traced.spans()} == {StatusCode.UNSET}


def _cancelled_run_spans(traced: Traced, *, cancel_is_error: bool) -> list[ReadableSpan]:
    """What the engine does for a run cancelled with one step running and one pending."""
    tracer = run_tracer(tracer_provider=traced.provider, cancel_is_error=cancel_is_error)
    assert tracer is not None
    running, pending = ExecutionPlan.for_pipeline(cancellable).steps
    tracer.start_run(pipeline_name="cancellable", run_id="r1", tags={})
    span = tracer.start_step(running, run_id="r1", attempt=1)
    tracer.end_step(span, _tracing.CANCELLATION)
    tracer.unstarted_step(pending, run_id="r1", result=_tracing.CANCELLATION)
    tracer.end_run(_tracing.CANCELLATION)
    return traced.spans()


def test_cancel_is_error_false_leaves_cancelled_spans_unset(traced: Traced) -> None:
    spans = _cancelled_run_spans(traced, cancel_is_error=False)
    assert len(spans) == 3
    for span in spans:
        assert span.status.status_code is StatusCode.UNSET, span.name
        assert "error.type" not in (span.attributes or {})
    by_name = {s.name: s for s in spans}
    assert attr(by_name["run cancellable"], "cicd.pipeline.result") == "cancellation"
    assert attr(by_name["waits_forever"], "cicd.pipeline.task.run.result") == "cancellation"


def test_cancelled_spans_are_errors_by_default(traced: Traced) -> None:
    spans = _cancelled_run_spans(traced, cancel_is_error=True)
    assert {s.status.status_code for s in spans} == {StatusCode.ERROR}


def test_cancel_is_error_false_still_marks_failures(traced: Traced) -> None:
    tracer = run_tracer(tracer_provider=traced.provider, cancel_is_error=False)
    assert tracer is not None
    (step, _) = ExecutionPlan.for_pipeline(cancellable).steps
    tracer.start_run(pipeline_name="cancellable", run_id="r1", tags={})
    tracer.end_step(tracer.start_step(step, run_id="r1", attempt=1), _tracing.FAILURE, Boom("x"))
    tracer.end_run(_tracing.FAILURE)
    assert {s.status.status_code for s in traced.spans()} == {StatusCode.ERROR}


class ResourceDown(Exception):
    pass


@resource
def database() -> Any:
    raise ResourceDown("database unreachable")


@solid(required_resources={"db"})
def uses_db(context: Any) -> None:
    pass


@pipeline(resources={"db": database})
def needs_db() -> None:
    uses_db()


@pytest.mark.anyio
async def test_step_whose_resource_fails_gets_an_error_span(traced: Traced) -> None:
    result = await run(traced, needs_db)

    assert result.status is RunStatus.FAILURE
    (span,) = traced.step_spans("uses_db")
    assert attr(span, "cicd.pipeline.task.run.result") == "error"
    assert attr(span, "asyncdag.attempt") == 0
    assert attr(span, "error.type") == "asyncdag.ResourceInitError"
    assert span.status.status_code is StatusCode.ERROR
    assert [e.name for e in span.events] == ["exception"]


# --- logs and current span ----------------------------------------------------------------------


@solid
async def logs_async(context: Any) -> int:
    context.log.info("async says %s", "hi")
    context.log.warning("careful")
    return 1


@solid
def logs_sync(context: Any, x: int) -> int:
    context.log.info(f"sync got {x}")
    return x


@pipeline
def logging_pipeline() -> None:
    logs_sync(logs_async())


@pytest.mark.anyio
async def test_context_log_messages_are_span_events_and_log_events_carry_ids(
    traced: Traced,
) -> None:
    result = await run(traced, logging_pipeline)

    expected = {"logs_async": ["async says hi", "careful"], "logs_sync": ["sync got 1"]}
    for key, messages in expected.items():
        (span,) = traced.step_spans(key)
        log_events = [e for e in span.events if e.name == "log"]
        assert [e.attributes["log.message"] for e in log_events] == messages  # type: ignore[index]
        logs = [e for e in result.events if e.type is EventType.LOG and e.step_key == key]
        assert [e.message for e in logs] == messages
        for event in logs:
            assert event.data is not None
            assert event.data["trace_id"] == format(trace_id(span), "032x")
            assert event.data["span_id"] == format(span_id(span), "016x")
    (async_span,) = traced.step_spans("logs_async")
    severities = [e.attributes["log.severity"] for e in async_span.events]  # type: ignore[index]
    assert severities == ["INFO", "WARNING"]


def make_nesting_pipeline(traced: Traced, seen: dict[str, Any]) -> PipelineDefinition:
    tracer = traced.tracer

    @solid
    async def async_user_code(context: Any) -> int:
        seen["async_current"] = trace.get_current_span()
        seen["async_context_span"] = context.span
        with tracer.start_as_current_span("http GET"):
            await anyio.sleep(0)
            with tracer.start_as_current_span("parse"):
                pass
        return 1

    @solid
    def sync_user_code(context: Any, x: int) -> int:
        seen["thread"] = threading.get_ident()
        seen["sync_current"] = trace.get_current_span()
        seen["sync_context_span"] = context.span
        with tracer.start_as_current_span("db query"):
            pass
        return x

    @pipeline(name="nesting")
    def nesting() -> None:
        sync_user_code(async_user_code())

    return nesting


@pytest.mark.anyio
async def test_user_spans_nest_under_the_step_span_in_async_and_sync_solids(
    traced: Traced,
) -> None:
    seen: dict[str, Any] = {}
    await run(traced, make_nesting_pipeline(traced, seen))

    (async_step,) = traced.step_spans("async_user_code")
    (sync_step,) = traced.step_spans("sync_user_code")
    by_name = {s.name: s for s in traced.spans()}
    assert parent_id(by_name["http GET"]) == span_id(async_step)
    assert parent_id(by_name["parse"]) == span_id(by_name["http GET"])
    assert parent_id(by_name["db query"]) == span_id(sync_step)
    assert seen["thread"] != threading.get_ident()  # the sync solid really ran in a thread
    for kind, step in (("async", async_step), ("sync", sync_step)):
        assert seen[f"{kind}_current"].get_span_context().span_id == span_id(step)
        assert seen[f"{kind}_context_span"].get_span_context().span_id == span_id(step)


@pytest.mark.anyio
async def test_run_started_inside_a_request_span_is_its_child(traced: Traced) -> None:
    # What a FastAPI/Starlette handler instrumented by OpenTelemetry looks like to us.
    tracer = traced.tracer
    with tracer.start_as_current_span("POST /runs", kind=SpanKind.SERVER) as request:
        await run(traced, diamond)
        assert trace.get_current_span() is request  # the run restored the caller's context

    by_name = {s.name: s for s in traced.spans()}
    run_span = by_name["run diamond"]
    assert parent_id(run_span) == span_id(by_name["POST /runs"])
    assert trace_id(run_span) == trace_id(by_name["POST /runs"])
    assert {trace_id(s) for s in traced.spans()} == {trace_id(run_span)}


@pytest.mark.anyio
async def test_run_started_inside_a_span_of_this_process_is_internal(traced: Traced) -> None:
    # The request's span is the SERVER one; a run awaited inside it is part of its work.
    with traced.tracer.start_as_current_span("POST /runs", kind=SpanKind.SERVER):
        await run(traced, diamond)
    kinds = {s.name: s.kind for s in traced.spans()}
    assert kinds["POST /runs"] is SpanKind.SERVER
    assert kinds["run diamond"] is SpanKind.INTERNAL


@pytest.mark.anyio
async def test_run_under_a_parent_from_another_process_is_server(traced: Traced) -> None:
    # A traceparent taken from an incoming message: the run starts this process's part.
    remote = trace.SpanContext(
        trace_id=0x1234, span_id=0x5678, is_remote=True, trace_flags=trace.TraceFlags(1)
    )
    token = otel_context.attach(trace.set_span_in_context(trace.NonRecordingSpan(remote)))
    try:
        await run(traced, diamond)
    finally:
        otel_context.detach(token)
    run_span = traced.run_span()
    assert run_span.kind is SpanKind.SERVER
    assert (trace_id(run_span), parent_id(run_span)) == (0x1234, 0x5678)


@pytest.mark.anyio
async def test_no_step_span_leaks_into_the_callers_context(traced: Traced) -> None:
    before = trace.get_current_span()
    await run(traced, retried)
    assert trace.get_current_span() is before


# --- off switches -------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_tracing_false_records_nothing(traced: Traced) -> None:
    result = await run(traced, diamond, tracing=False)

    assert result.status is RunStatus.SUCCESS
    assert traced.spans() == []
    assert result.trace_id is None


@pytest.mark.parametrize(
    "make_provider",
    [
        pytest.param(trace.NoOpTracerProvider, id="noop"),
        pytest.param(lambda: TracerProvider(shutdown_on_exit=False), id="sdk"),
    ],
)
def test_run_tracer_is_none_only_when_spans_would_go_nowhere(
    make_provider: Callable[[], Any],
) -> None:
    provider = make_provider()
    tracer = run_tracer(tracer_provider=provider)
    assert (tracer is None) == isinstance(provider, trace.NoOpTracerProvider)
    assert run_tracer(enabled=False, tracer_provider=provider) is None


def test_run_tracer_is_none_for_a_disabled_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert run_tracer(tracer_provider=TracerProvider(shutdown_on_exit=False)) is None


def test_noop_provider_run_has_no_trace_id() -> None:
    result = execute_pipeline(diamond, tracer_provider=trace.NoOpTracerProvider())
    assert result.status is RunStatus.SUCCESS
    assert result.trace_id is None


# --- property: every step accounted for ---------------------------------------------------------

RESULT_OF = {
    StepStatus.SUCCESS: "success",
    StepStatus.FAILURE: "failure",
    StepStatus.SKIPPED: "skip",
}


@st.composite
def dags(draw: st.DrawFn) -> tuple[list[list[int]], set[int]]:
    """Node i depends on a subset of nodes < i; some nodes fail."""
    size = draw(st.integers(min_value=1, max_value=12))
    ups = [
        sorted(draw(st.sets(st.integers(min_value=0, max_value=i - 1), max_size=3))) if i else []
        for i in range(size)
    ]
    failing = draw(st.sets(st.integers(min_value=0, max_value=size - 1), max_size=3))
    return ups, failing


def build_dag(ups: list[list[int]], failing: set[int]) -> PipelineDefinition:
    @solid
    def node(context: Any, inputs: list[int]) -> int:
        if int(context.step_key[1:]) in failing:
            raise Boom(context.step_key)
        return 1 + sum(inputs)

    @pipeline(name="random_dag")
    def random_dag() -> None:
        handles: list[Any] = []
        for i, deps in enumerate(ups):
            handles.append(node.alias(f"n{i}")([handles[d] for d in deps]))

    return random_dag


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(dag=dags())
@pytest.mark.anyio
async def test_every_step_has_exactly_one_final_span_matching_its_status(
    traced: Traced, dag: tuple[list[list[int]], set[int]]
) -> None:
    traced.exporter.clear()
    ups, failing = dag
    result = await run(traced, build_dag(ups, failing))

    run_span = traced.run_span()
    steps = traced.step_spans()
    assert len(steps) == len(ups)  # no retries here: one span per step
    assert {s.name: attr(s, "cicd.pipeline.task.run.result") for s in steps} == {
        key: RESULT_OF[r.status] for key, r in result.step_results.items()
    }
    assert {parent_id(s) for s in steps} == {span_id(run_span)}
    expected_run = "failure" if failing else "success"
    assert attr(run_span, "cicd.pipeline.result") == expected_run
