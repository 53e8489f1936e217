"""The event contract: every event says its type, its sequence number and, for a step's
attempt, which attempt it belongs to."""

from __future__ import annotations

from typing import Any

import pytest

from asyncdag import (
    Event,
    EventType,
    Out,
    RetryPolicy,
    execute_pipeline_async,
    pipeline,
    resource,
    solid,
    success_hook,
)

pytestmark = pytest.mark.anyio


@solid
async def one() -> int:
    return 1


@pipeline
def single() -> None:
    one()


async def test_events_carry_event_type_and_sequence_as_attributes() -> None:
    result = await execute_pipeline_async(single)
    assert [e.sequence for e in result.events] == list(range(len(result.events)))
    for event in result.events:
        assert event.event_type is event.type
        assert event.sequence == event.seq


async def test_each_event_of_a_step_names_the_attempt_it_belongs_to() -> None:
    tries = {"n": 0}

    @resource
    def db() -> str:
        return "db"

    @success_hook
    def done(context: Any) -> None:
        pass

    @solid(
        retry_policy=RetryPolicy(max_retries=1),
        outs={"a": Out(), "b": Out()},
        required_resources={"db"},
    )
    def flaky(context: Any) -> tuple[int, int]:
        tries["n"] += 1
        context.log.info("try %d", tries["n"])
        if tries["n"] == 1:
            raise ConnectionError("once")
        return 1, 2

    @solid
    async def never(x: int) -> None:
        raise ValueError("no")

    @solid
    async def after(y: None) -> None:
        pass

    @pipeline(resources={"db": db})
    def p() -> None:
        a, _ = flaky.with_hooks({done})()
        after(never(a))

    result = await execute_pipeline_async(p, raise_on_error=False)
    flaky_events = [(e.type, e.attempt) for e in result.events if e.step_key == "flaky"]
    assert flaky_events == [
        (EventType.STEP_START, 1),
        (EventType.LOG, 1),
        (EventType.STEP_UP_FOR_RETRY, 1),
        (EventType.STEP_START, 2),
        (EventType.LOG, 2),
        (EventType.STEP_OUTPUT, 2),
        (EventType.STEP_OUTPUT, 2),
        (EventType.STEP_SUCCESS, 2),
        (EventType.HOOK_COMPLETED, 2),
    ]
    # Run and resource events belong to no attempt; nor does a step that never started.
    for event in result.events:
        if event.step_key is None:
            assert event.attempt is None
    (skipped,) = [e for e in result.events if e.type is EventType.STEP_SKIPPED]
    assert skipped.step_key == "after" and skipped.attempt is None


async def test_the_attempt_survives_a_round_trip_through_a_dict() -> None:
    result = await execute_pipeline_async(single)
    for event in result.events:
        again = Event.from_dict(event.to_dict())
        assert (again.event_type, again.sequence, again.attempt) == (
            event.event_type,
            event.sequence,
            event.attempt,
        )
    assert [e.attempt for e in result.events if e.step_key == "one"] == [1, 1]


async def test_a_step_event_reads_as_the_plain_event_it_stands_for() -> None:
    """STEP_START and STEP_SUCCESS build their message and data when read; whatever way
    they are read, they are the plain Event with that message and data."""
    import copy
    import pickle

    result = await execute_pipeline_async(single)
    start, success = [e for e in result.events if e.step_key == "one"]
    assert start.message == "Started execution of step 'one'."
    assert (
        success.message
        == f"Finished execution of step 'one' in {success.data['duration'] * 1000:.2f}ms."
    )
    assert start.data == {"attempt": 1, "waited": start.data["waited"]}
    assert set(success.data) == {"attempt", "duration"} and success.data["duration"] >= 0
    for event in (start, success):
        plain = Event.from_dict(event.to_dict())
        assert type(plain) is Event
        assert event == plain and plain == event
        assert (event != plain) is False
        assert (
            tuple(event) == tuple(plain) and event[6] == plain.message and event[-1] == plain.data
        )
        assert list(event._asdict().items()) == list(plain._asdict().items())
        assert repr(event) == repr(plain)
        assert pickle.loads(pickle.dumps(event)) == plain
        assert type(copy.copy(event)) is Event
        assert event._replace(seq=99) == plain._replace(seq=99)


async def test_a_step_event_s_duration_is_the_time_between_its_attempt_s_start_and_end() -> None:
    result = await execute_pipeline_async(single)
    start, success = [e for e in result.events if e.step_key == "one"]
    step = result.step_result("one")
    assert (start.timestamp, success.timestamp) == (step.start_time, step.end_time)
    assert success.data["duration"] == step.end_time - step.start_time
    assert [e.timestamp for e in result.events] == sorted(e.timestamp for e in result.events)
