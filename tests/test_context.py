"""The solid ``context``: logging, run identity, retries, config, tags, resources, cancellation."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import anyio
import anyio.from_thread
import attrs
import pytest

from asyncdag import (
    DynamicOut,
    DynamicOutput,
    EventType,
    RetryPolicy,
    RunStatus,
    StepStatus,
    execute_pipeline_async,
    open_run,
    pipeline,
    resource,
    solid,
)

pytestmark = pytest.mark.anyio


# --- context.log -------------------------------------------------------------------------------


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_log_methods_become_log_events_with_step_key_and_level(is_async: bool) -> None:
    def body(context: Any) -> None:
        context.log.debug("d %s", 1)
        context.log.info("i")
        context.log.warning("w")
        context.log.error("e")
        try:
            raise KeyError("missing")
        except KeyError:
            context.log.exception("x")

    if is_async:

        async def talk(context: Any) -> None:
            body(context)

    else:

        def talk(context: Any) -> None:
            body(context)

    talker = solid(name="talk")(talk)

    @pipeline
    def p() -> None:
        talker.alias("chatty")()

    result = await execute_pipeline_async(p)
    logs = [e for e in result.events if e.type is EventType.LOG]
    assert [(e.step_key, e.level, e.message) for e in logs] == [
        ("chatty", logging.DEBUG, "d 1"),
        ("chatty", logging.INFO, "i"),
        ("chatty", logging.WARNING, "w"),
        ("chatty", logging.ERROR, "e"),
        ("chatty", logging.ERROR, "x"),
    ]
    assert "traceback" not in (logs[3].data or {})
    traceback_text = logs[4].data["traceback"]  # type: ignore[index]
    assert "Traceback (most recent call last)" in traceback_text
    assert "KeyError: 'missing'" in traceback_text


# --- identity ---------------------------------------------------------------------------------


async def test_context_names_the_run_pipeline_solid_and_step() -> None:
    seen: list[tuple[str, str, str, str]] = []

    @solid
    def who(context: Any) -> None:
        seen.append((context.run_id, context.pipeline_name, context.solid_name, context.step_key))

    @pipeline(name="identity")
    def p() -> None:
        who()
        who.alias("again")()

    result = await execute_pipeline_async(p, run_id="run-42")
    assert result.run_id == "run-42"
    assert sorted(seen) == [
        ("run-42", "identity", "who", "again"),
        ("run-42", "identity", "who", "who"),
    ]


async def test_retry_number_counts_attempts_from_zero() -> None:
    seen: list[int] = []

    @solid(retry_policy=RetryPolicy(max_retries=3))
    def flaky(context: Any) -> int:
        seen.append(context.retry_number)
        if context.retry_number < 2:
            raise ConnectionError("try again")
        return context.retry_number

    @pipeline
    def p() -> None:
        flaky()

    result = await execute_pipeline_async(p)
    assert seen == [0, 1, 2]
    assert result.output_for_solid("flaky") == 2
    assert result.step_result("flaky").attempts == 3


# --- config, tags, run config, resources -------------------------------------------------------


@attrs.frozen
class Greeting:
    word: str
    times: int = 1


async def test_solid_config_is_the_validated_dict_or_attrs_instance() -> None:
    seen: dict[str, Any] = {}

    @solid(config_schema={"word": str, "loud": bool})
    def as_dict(context: Any) -> None:
        seen["dict"] = context.solid_config

    @solid(config_schema=Greeting)
    def as_attrs(context: Any) -> None:
        seen["attrs"] = context.solid_config

    @solid
    def no_schema(context: Any) -> None:
        seen["none"] = context.solid_config

    @pipeline
    def p() -> None:
        as_dict()
        as_attrs()
        no_schema()

    run_config = {
        "solids": {
            "as_dict": {"config": {"word": "hi", "loud": True}},
            "as_attrs": {"config": {"word": "hey"}},
        }
    }
    await execute_pipeline_async(p, run_config)
    assert seen == {
        "dict": {"word": "hi", "loud": True},
        "attrs": Greeting(word="hey", times=1),
        "none": None,
    }
    assert isinstance(seen["attrs"], Greeting)


async def test_tags_and_run_config_reach_the_context() -> None:
    seen: dict[str, Any] = {}

    @solid(config_schema={"n": int})
    def look(context: Any) -> None:
        seen["tags"] = context.tags
        seen["run_config"] = context.run_config

    @pipeline(
        tags={"team": "data", "env": "dev"}, config={"solids": {"look": {"config": {"n": 1}}}}
    )
    def p() -> None:
        look()

    run_config = {"solids": {"look": {"config": {"n": 2}}}, "execution": {"max_concurrency": 3}}
    await execute_pipeline_async(p, run_config, tags={"env": "prod", "who": "test"})
    assert seen["tags"] == {"team": "data", "env": "prod", "who": "test"}
    assert seen["run_config"]["solids"] == {"look": {"config": {"n": 2}}}
    assert seen["run_config"]["execution"] == {"max_concurrency": 3}


async def test_get_mapping_key_is_the_items_key_in_a_mapped_step_and_none_elsewhere() -> None:
    @solid(outs={"items": DynamicOut()})
    def items(context: Any):
        assert context.get_mapping_key() is None
        for key in ("a", "b"):
            yield DynamicOutput(key.upper(), mapping_key=key)

    @solid
    async def keyed(context: Any, item: str) -> tuple[str | None, str]:
        return context.get_mapping_key(), item

    @solid
    def static(context: Any, pairs: list[Any]) -> tuple[str | None, list[Any]]:
        return context.get_mapping_key(), pairs

    @pipeline
    def p() -> None:
        static(items().map(keyed).collect())

    result = await execute_pipeline_async(p)
    assert result.output_for_solid("keyed[b]") == ("b", "B")
    assert result.output_for_solid("static") == (None, [("a", "A"), ("b", "B")])


async def test_solid_tags_are_the_solids_overlaid_with_its_calls() -> None:
    @solid(tags={"team": "data", "tier": "1"})
    async def look(context: Any) -> dict[str, str]:
        return dict(context.solid_tags)

    @pipeline(tags={"run": "tag"})
    def p() -> None:
        look.tag({"tier": "2"})()
        look()

    result = await execute_pipeline_async(p)
    assert result.output_for_solid("look") == {"team": "data", "tier": "2"}
    assert result.output_for_solid("look_2") == {"team": "data", "tier": "1"}


async def test_resources_reach_sync_and_async_solids_by_attribute_and_key() -> None:
    @resource
    def greeting() -> Iterator[str]:
        yield "hello"

    @solid(required_resources={"greeting"})
    def sync_use(context: Any) -> str:
        return context.resources.greeting

    @solid(required_resources={"greeting"})
    async def async_use(context: Any) -> str:
        return context.resources["greeting"]

    @pipeline(resources={"greeting": greeting})
    def p() -> None:
        sync_use()
        async_use()

    result = await execute_pipeline_async(p)
    assert result.output_for_solid("sync_use") == "hello"
    assert result.output_for_solid("async_use") == "hello"


# --- cancellation seen from a sync solid --------------------------------------------------------


async def run_and_cancel_sync_solid(*, raise_in_thread: bool) -> tuple[Any, dict[str, Any]]:
    """Start a sync solid that loops until told the run is cancelled; cancel the run."""
    started = anyio.Event()
    seen: dict[str, Any] = {"checks_before_cancel": 0}
    stop = threading.Event()  # only a safety net so a broken engine cannot hang the suite

    @solid
    def busy(context: Any) -> str:
        seen["thread"] = threading.current_thread()
        seen["before"] = context.is_cancel_requested
        anyio.from_thread.run_sync(started.set)
        try:
            while not stop.is_set():
                if raise_in_thread:
                    context.check_cancelled()
                elif context.is_cancel_requested:
                    seen["saw_cancel"] = True
                    return "noticed"
                stop.wait(0.001)
            return "gave up"
        finally:
            seen["returned"] = True

    @pipeline
    def p() -> None:
        busy()

    try:
        with anyio.fail_after(30):  # a hang guard, not a timing assertion
            async with open_run(p) as run:
                await started.wait()
                run.cancel()
    finally:
        stop.set()
    return await run.result(), seen


@pytest.mark.parametrize("raise_in_thread", [False, True], ids=["poll", "check_cancelled"])
async def test_a_sync_solid_sees_run_cancellation_and_returns(raise_in_thread: bool) -> None:
    before = set(threading.enumerate())
    result, seen = await run_and_cancel_sync_solid(raise_in_thread=raise_in_thread)
    assert result.status is RunStatus.CANCELED
    assert seen["before"] is False
    assert seen.get("saw_cancel", False) is (not raise_in_thread)
    # The solid's function returned before the run ended, so no thread still runs it ...
    assert seen["returned"] is True
    # ... and the only thread the run may have added is the (now idle) pool worker it ran on.
    assert set(threading.enumerate()) - before <= {seen["thread"]}
    assert result.step_result("busy").status is StepStatus.CANCELED


async def test_a_sync_solid_that_returns_after_cancellation_ends_canceled() -> None:
    result, seen = await run_and_cancel_sync_solid(raise_in_thread=False)
    assert seen["saw_cancel"] is True
    assert result.step_result("busy").status is StepStatus.CANCELED


async def test_is_cancel_requested_is_false_in_async_solids_and_outside_threads() -> None:
    seen: list[bool] = []

    @solid
    async def quiet(context: Any) -> None:
        seen.append(context.is_cancel_requested)
        context.check_cancelled()  # a no-op on the loop: cancellation arrives at awaits

    @pipeline
    def p() -> None:
        quiet()

    await execute_pipeline_async(p)
    assert seen == [False]


async def test_a_sync_solid_sees_its_timeout_as_cancellation() -> None:
    seen: dict[str, Any] = {}
    stop = threading.Event()

    @solid(timeout=0.05)
    def slow(context: Any) -> None:
        while not stop.is_set():
            if context.is_cancel_requested:
                seen["saw_cancel"] = True
                return
            stop.wait(0.001)

    @pipeline
    def p() -> None:
        slow()

    try:
        with anyio.fail_after(30):  # a hang guard, not a timing assertion
            result = await execute_pipeline_async(p, raise_on_error=False)
    finally:
        stop.set()
    assert seen == {"saw_cancel": True}
    assert result.step_result("slow").status is StepStatus.FAILURE
    assert result.step_result("slow").error.type.endswith("StepTimeoutError")  # type: ignore[union-attr]
