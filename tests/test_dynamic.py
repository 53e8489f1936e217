"""Streaming fan-out: DynamicOut items mapped as they are yielded, then collected; asyncio and trio."""

from __future__ import annotations

import threading
from typing import Any

import anyio
import pytest

from asyncdag import (
    DefinitionError,
    DynamicOut,
    DynamicOutput,
    EventType,
    HookContext,
    OutputError,
    RetryPolicy,
    RunStatus,
    StepStatus,
    execute_pipeline_async,
    pipeline,
    solid,
    success_hook,
)

pytestmark = pytest.mark.anyio


@solid(outs={"items": DynamicOut()})
async def numbers(n: int = 4):
    for i in range(n):
        yield DynamicOutput(i, mapping_key=f"n{i}")


@solid(outs={"items": DynamicOut()})
def sync_numbers(n: int = 4):
    for i in range(n):
        yield DynamicOutput(i, mapping_key=f"n{i}")


@solid
async def square(x: int) -> int:
    return x * x


@solid
def add_one(x: int) -> int:
    return x + 1


@solid
def gather(values: list[int]) -> list[int]:
    return values


async def run(p, **kwargs):
    return await execute_pipeline_async(p, raise_on_error=False, **kwargs)


async def test_map_and_collect_from_async_and_sync_generators() -> None:
    @pipeline
    def p():
        gather(numbers().map(lambda x: add_one(square(x))).collect())
        gather.alias("from_sync")(sync_numbers().map(square).collect())
        gather.alias("raw")(numbers.alias("again")().collect())

    result = await run(p, max_concurrency=3)
    assert result.status is RunStatus.SUCCESS
    assert result.output_for_solid("gather") == [1, 2, 5, 10]
    assert result.output_for_solid("from_sync") == [0, 1, 4, 9]
    assert result.output_for_solid("raw") == [0, 1, 2, 3]
    assert result.step_results["square[n2]"].status is StepStatus.SUCCESS
    assert result.step_results["add_one[n3]"].status is StepStatus.SUCCESS


async def test_collect_is_in_mapping_key_order_not_yield_order() -> None:
    @solid(outs={"items": DynamicOut()})
    async def shuffled():
        for key in ["c", "a", "b"]:
            yield DynamicOutput(key.upper(), mapping_key=key)

    @pipeline
    def p():
        gather(shuffled().collect())

    result = await run(p)
    assert result.output_for_solid("gather") == ["A", "B", "C"]


async def test_empty_fan_out_collects_an_empty_list() -> None:
    @pipeline
    def p():
        gather(numbers().map(square).collect())

    result = await run(p, run_config={"solids": {"numbers": {"inputs": {"n": 0}}}})
    assert result.output_for_solid("gather") == []


def gated_producer(first_done: anyio.Event) -> Any:
    """A producer that yields item ``last`` only once ``first_done`` is set by a mapped step."""

    @solid(outs={"items": DynamicOut()})
    async def producer():
        yield DynamicOutput(1, mapping_key="first")
        await first_done.wait()  # only a streaming engine gets past this
        yield DynamicOutput(2, mapping_key="last")

    return producer


def finished_before_the_last_yield(result: Any, step_key: str) -> bool:
    events = [(e.type, e.step_key, (e.data or {}).get("mapping_key")) for e in result.events]
    return events.index((EventType.STEP_SUCCESS, step_key, None)) < events.index(
        (EventType.STEP_OUTPUT, "producer", "last")
    )


async def test_mapped_step_finishes_before_the_async_generator_yields_its_last_item() -> None:
    first_done = anyio.Event()
    producer = gated_producer(first_done)

    @solid
    async def consume(x: int) -> int:
        if x == 1:
            first_done.set()
        return x

    @pipeline
    def p():
        gather(producer().map(consume).collect())

    result = await run(p, max_concurrency=2)
    assert result.output_for_solid("gather") == [1, 2]
    assert finished_before_the_last_yield(result, "consume[first]")


async def test_mapped_step_finishes_before_the_sync_generator_yields_its_last_item() -> None:
    first_done = threading.Event()

    @solid(outs={"items": DynamicOut()})
    def producer():
        yield DynamicOutput(1, mapping_key="first")
        assert first_done.wait(timeout=60), "the mapped step did not run while the generator ran"
        yield DynamicOutput(2, mapping_key="last")

    @solid
    def consume(x: int) -> int:
        return x

    # A success hook runs after STEP_SUCCESS is emitted, so the generator's wait ends
    # only once the mapped step's success is in the event log.
    @success_hook
    def release(context: HookContext) -> None:
        if context.step_key == "consume[first]":
            first_done.set()

    @pipeline
    def p():
        gather(producer().map(lambda x: consume.with_hooks({release})(x)).collect())

    result = await run(p, max_concurrency=2)
    assert result.status is RunStatus.SUCCESS
    events = [(e.type, e.step_key, (e.data or {}).get("mapping_key")) for e in result.events]
    assert events.index((EventType.STEP_SUCCESS, "consume[first]", None)) < events.index(
        (EventType.STEP_OUTPUT, "producer", "last")
    )


@pytest.mark.parametrize("shape", ["tuple", "dict"])
async def test_a_map_body_returning_several_outputs_streams_each(shape: str) -> None:
    first_done = anyio.Event()
    producer = gated_producer(first_done)

    @solid
    async def negate(x: int) -> int:
        if x == 1:
            first_done.set()
        return -x

    def body(x):
        if shape == "tuple":
            return square(x), negate(x)
        return {"squared": square(x), "negated": negate(x)}

    @pipeline
    def p():
        squared, negated = producer().map(body)  # a dict's handles unpack in its order too
        gather(squared.collect())
        gather.alias("negatives")(negated.collect())

    result = await run(p, max_concurrency=3)
    assert result.output_for_solid("gather") == [1, 4]
    assert result.output_for_solid("negatives") == [-1, -2]
    assert finished_before_the_last_yield(result, "negate[first]")


async def test_mapped_steps_stay_within_the_run_bound() -> None:
    running = peak = 0

    @solid
    async def slow(x: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await anyio.sleep(0)
        await anyio.sleep(0)
        running -= 1
        return x

    @pipeline
    def p():
        gather(numbers().map(slow).collect())

    result = await run(
        p, max_concurrency=2, run_config={"solids": {"numbers": {"inputs": {"n": 20}}}}
    )
    # mapping-key order is string order: n0, n1, n10, n11, ..., n2, ...
    assert result.output_for_solid("gather") == sorted(range(20), key=lambda i: f"n{i}")
    assert 1 <= peak <= 2


async def test_duplicate_mapping_key_fails_the_producer_naming_both_items() -> None:
    @solid(outs={"items": DynamicOut()})
    async def clash():
        yield DynamicOutput("x", mapping_key="same")
        yield DynamicOutput("y", mapping_key="same")

    @pipeline
    def p():
        gather(clash().map(add_one).collect())

    result = await run(p)
    error = result.step_results["clash"].error
    assert result.step_results["clash"].status is StepStatus.FAILURE
    assert "'same' twice" in error.message and "'x'" in error.message and "'y'" in error.message
    assert result.step_results["gather"].status is StepStatus.SKIPPED


async def test_invalid_mapping_key_is_rejected() -> None:
    @solid(outs={"items": DynamicOut()})
    async def bad():
        yield DynamicOutput(1, mapping_key="has space")

    @pipeline
    def p():
        bad().map(add_one)

    result = await run(p)
    assert isinstance(result.exception_for_step("bad"), OutputError)
    assert "letters, digits and _" in result.step_results["bad"].error.message


async def test_a_failed_mapped_step_skips_the_collector_and_others_still_run() -> None:
    @solid
    def picky(x: int) -> int:
        if x == 2:
            raise ValueError("two")
        return x

    @pipeline
    def p():
        gather(numbers().map(picky).collect())

    result = await run(p)
    assert result.status is RunStatus.FAILURE
    assert result.step_results["picky[n2]"].status is StepStatus.FAILURE
    assert result.step_results["picky[n3]"].status is StepStatus.SUCCESS
    collector = result.step_results["gather"]
    assert collector.status is StepStatus.SKIPPED and "picky[n2]" in collector.skip_reason


async def test_a_producer_that_fails_after_yielding_is_not_retried() -> None:
    @solid(outs={"items": DynamicOut()}, retry_policy=RetryPolicy(max_retries=3))
    async def flaky():
        yield DynamicOutput(1, mapping_key="a")
        raise ConnectionError("lost")

    @pipeline
    def p():
        gather(flaky().map(add_one).collect())

    result = await run(p)
    flaky_result = result.step_results["flaky"]
    assert flaky_result.status is StepStatus.FAILURE and flaky_result.attempts == 1
    assert "not retried" in flaky_result.error.message
    assert result.step_results["add_one[a]"].status is StepStatus.SUCCESS
    assert result.step_results["gather"].status is StepStatus.SKIPPED


async def test_mapped_steps_take_static_inputs_and_config() -> None:
    @solid
    def offset() -> int:
        return 100

    @solid(config_schema={"factor": int})
    def combine(context, x: int, base: int) -> int:
        return base + x * context.solid_config["factor"]

    @pipeline
    def p():
        base = offset()
        gather(numbers().map(lambda x: combine(x, base)).collect())

    result = await run(p, run_config={"solids": {"combine": {"config": {"factor": 10}}}})
    assert result.output_for_solid("gather") == [100, 110, 120, 130]


async def test_mapped_step_spans_carry_the_mapping_key() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))

    @pipeline
    def p():
        numbers().map(square)

    await execute_pipeline_async(p, tracer_provider=provider)
    keys = {
        s.name: s.attributes.get("asyncdag.mapping_key")
        for s in exporter.get_finished_spans()
        if s.name.startswith("square")
    }
    assert keys == {f"square[n{i}]": f"n{i}" for i in range(4)}


def test_wiring_errors_for_fan_outs() -> None:
    with pytest.raises(DefinitionError, match=r"use \.map\(fn\)"):

        @pipeline
        def direct():
            add_one(numbers())

    with pytest.raises(DefinitionError, match="returned the fan-out of 'numbers_2', made once"):

        @pipeline
        def nested():
            numbers().map(lambda x: numbers(x).map(add_one))

    with pytest.raises(DefinitionError, match=r"called inside the \.map"):

        @pipeline
        def unrelated():
            other = sync_numbers()
            numbers().map(lambda x: other.map(add_one))

    with pytest.raises(DefinitionError, match="cannot be collected here"):

        @pipeline
        def collect_inside():
            items = numbers()
            items.map(lambda x: gather(items.collect()))

    with pytest.raises(DefinitionError, match="must be a generator"):

        @solid(outs={"items": DynamicOut()})
        def not_a_generator():
            return [1]


def _load_example(name: str):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"example_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_crawler_example_streams_and_summarizes() -> None:
    crawler = _load_example("crawler")
    with crawler.local_site(25) as base:
        result = await execute_pipeline_async(
            crawler.crawler,
            {"resources": {"site": {"config": {"base_url": base}}}},
            max_concurrency=4,
            concurrency_limits={"http": 3},
        )
    assert result.output_for_solid("summarize") == {
        "pages": 25,
        "ok": 25,
        "words": sum(n % 7 + 1 for n in range(25)),
    }
    assert result.step_results["fetch[000024]"].status is StepStatus.SUCCESS


async def test_crawler_example_serves_its_own_site_by_default() -> None:
    crawler = _load_example("crawler")
    result = await execute_pipeline_async(
        crawler.crawler, {"resources": {"site": {"config": {"pages": 12}}}}
    )
    assert result.output_for_solid("summarize")["pages"] == 12
    teardowns = [e for e in result.events if e.type is EventType.RESOURCE_TEARDOWN]
    assert [e.data["resource"] for e in teardowns if e.data] == ["site"]


async def test_branching_example_skips_the_branch_not_taken() -> None:
    branching = _load_example("branching")
    config = {"solids": {"order": {"config": {"amount": 50}}}}
    result = await execute_pipeline_async(branching.branching, config)
    assert result.output_for_solid("auto_approve") == "approved"
    assert result.step_results["manual_review"].status is StepStatus.SKIPPED


@solid(outs={"sites": DynamicOut()})
async def sites():
    for site in ("a", "b"):
        yield DynamicOutput(site, mapping_key=site)


@solid
def count(values: list[str]) -> int:
    return len(values)


@solid
def total(counts: list[int]) -> int:
    return sum(counts)


async def test_a_fan_out_inside_a_mapped_body_streams_and_collects_per_item() -> None:
    first_fetched = anyio.Event()

    @solid(outs={"links": DynamicOut()})
    async def crawl(site: str):
        yield DynamicOutput(f"{site}/0", mapping_key="l0")
        if site == "a":
            await first_fetched.wait()  # only a streaming engine gets past this
        yield DynamicOutput(f"{site}/1", mapping_key="l1")

    @solid
    async def fetch(context, link: str) -> str:
        if link == "a/0":
            first_fetched.set()
        return f"{context.get_mapping_key()}:{link}"

    @pipeline
    def p():
        total(sites().map(lambda site: count(crawl(site).map(fetch).collect())).collect())

    result = await run(p, max_concurrency=4)
    assert result.status is RunStatus.SUCCESS
    assert result.output_for_solid("total") == 4
    assert result.output_for_solid("fetch[b][l1]") == "l1:b/1"
    assert result.output_for_solid("fetch") == {
        "a": {"l0": "l0:a/0", "l1": "l1:a/1"},
        "b": {"l0": "l0:b/0", "l1": "l1:b/1"},
    }
    assert result.output_for_solid("count") == {"a": 2, "b": 2}
    events = [(e.type, e.step_key, (e.data or {}).get("mapping_key")) for e in result.events]
    assert events.index((EventType.STEP_SUCCESS, "fetch[a][l0]", None)) < events.index(
        (EventType.STEP_OUTPUT, "crawl[a]", "l1")
    )


async def test_steps_in_a_nested_fan_out_read_the_outer_item_and_its_steps() -> None:
    @solid(outs={"links": DynamicOut()})
    def crawl(site: str):  # a sync generator, drained in a thread
        for i in range(2):
            yield DynamicOutput(i, mapping_key=f"l{i}")

    @solid
    def upper(site: str) -> str:
        return site.upper()

    @solid
    def label(site: str, shouted: str, n: int) -> str:
        return f"{site}{shouted}{n}"

    @solid
    def join(labels: list[str]) -> str:
        return ",".join(labels)

    def per_site(site):
        shouted = upper(site)
        labels = crawl(site).map(lambda n: label(site, shouted, n))
        return join(labels.collect())

    @pipeline
    def p():
        join.alias("everything")(sites().map(per_site).collect())

    result = await run(p)
    assert result.output_for_solid("everything") == "aA0,aA1,bB0,bB1"
    assert result.output_for_solid("label[b][l0]") == "bB0"


async def test_a_failure_in_a_nested_fan_out_skips_only_its_items_collector() -> None:
    @solid(outs={"links": DynamicOut()})
    async def crawl(site: str):
        for i in range(2):
            yield DynamicOutput(f"{site}{i}", mapping_key=f"l{i}")

    @solid
    def fetch(link: str) -> str:
        if link == "a1":
            raise ConnectionError(link)
        return link

    @pipeline
    def p():
        total(sites().map(lambda site: count(crawl(site).map(fetch).collect())).collect())

    result = await run(p)
    assert result.status is RunStatus.FAILURE
    assert result.step_results["fetch[a][l1]"].status is StepStatus.FAILURE
    assert result.step_results["count[a]"].status is StepStatus.SKIPPED
    assert result.output_for_solid("count[b]") == 2
    assert result.output_for_solid("fetch") == {"a": {"l0": "a0"}, "b": {"l0": "b0", "l1": "b1"}}


def test_nested_fan_outs_are_mapped_and_collected_inside_their_outer_map() -> None:
    @solid(outs={"links": DynamicOut()})
    def crawl(site: str):
        yield DynamicOutput(site, mapping_key="x")

    with pytest.raises(DefinitionError, match="made once per item of 'sites'; map it inside"):

        @pipeline
        def mapped_outside():
            links = []
            sites().map(lambda site: links.append(crawl(site)))
            links[0].map(count)

    with pytest.raises(DefinitionError, match="cannot be collected here; collect it inside"):

        @pipeline
        def collected_outside():
            links = []
            sites().map(lambda site: links.append(crawl(site)))
            count(links[0].collect())


async def test_mapped_steps_keep_their_solids_priority() -> None:
    @solid(priority=5)
    async def urgent(x: int) -> int:
        return x

    @solid
    async def plain() -> None:
        pass

    @pipeline
    def p():
        numbers().map(urgent)  # its items are queued while the three plain steps wait
        for i in range(3):
            plain.alias(f"plain_{i}")()

    result = await run(p, max_concurrency=1)
    assert result.status is RunStatus.SUCCESS
    starts = [e.step_key for e in result.events if e.type is EventType.STEP_START]
    assert starts == [
        "numbers",
        *(f"urgent[n{i}]" for i in range(4)),
        *(f"plain_{i}" for i in range(3)),
    ]
