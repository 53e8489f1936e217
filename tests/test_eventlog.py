"""A run's event log: a step's own events, kept compact until read, read exactly as the
events they stand for, whichever way they are read."""

from __future__ import annotations

import gc
import logging
import pickle
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any
from unittest import mock

import anyio
import pytest

from asyncdag import (
    Event,
    EventType,
    RetryPolicy,
    execute_pipeline_async,
    open_run,
    pipeline,
    solid,
)
from asyncdag._engine import _bus
from asyncdag._engine._bus import EventBus
from asyncdag._engine._eventlog import EventLog
from asyncdag._engine._log import formatting_emit_step
from asyncdag._events import StepStartEvent, StepSuccessEvent
from asyncdag.storage import InMemoryStorage

pytestmark = pytest.mark.anyio


@solid
async def one() -> int:
    return 1


@solid
async def add(x: int) -> int:
    return x + 1


@pipeline
def two_steps() -> None:
    add(one())


def plain(events: list[Event]) -> list[Event]:
    return [Event.from_dict(e.to_dict()) for e in events]


async def test_a_log_nobody_listened_to_reads_as_the_events_of_the_run() -> None:
    result = await execute_pipeline_async(two_steps)
    log = result.events
    assert isinstance(log, EventLog)
    events = list(log)
    assert [e.seq for e in events] == list(range(len(log)))
    assert [e.type for e in events if e.step_key == "add"] == [
        EventType.STEP_START,
        EventType.STEP_SUCCESS,
    ]
    assert log == plain(events) and plain(events) == list(log)
    assert log[1:3] == events[1:3] and log[::-1] == events[::-1]
    assert log[-1] == events[-1] and log[-1].seq == len(log) - 1
    assert log[-2].seq == len(log) - 2
    assert events[2] in log and log.index(events[2]) == 2 and log.count(events[2]) == 1
    assert repr(log) == repr(events)
    again = pickle.loads(pickle.dumps(log))
    assert type(again) is list and again == events


async def test_a_step_s_events_are_kept_compact_only_when_no_listener_wants_them() -> None:
    heard: list[Event] = []
    result = await execute_pipeline_async(two_steps, listeners=[heard.append])
    assert list(result.events) == heard
    # What the listener was handed is what the log keeps: the same objects.
    assert all(a is b for a, b in zip(result.events, heard, strict=True))
    assert any(isinstance(e, StepSuccessEvent) for e in heard)


async def test_compact_records_hold_nothing_the_collector_must_track() -> None:
    bus = EventBus("r")
    bus.emit_step(StepStartEvent, "s", 1.0, 1, 0.5)
    bus.emit_step(StepSuccessEvent, "s", 2.0, 1, 1.0)
    gc.collect()
    assert [gc.is_tracked(record) for record in bus.events.records] == [False, False]
    start, success = bus.events
    assert (start.type, start.seq, start.data) == (
        EventType.STEP_START,
        0,
        {"attempt": 1, "waited": 0.5},
    )
    assert (success.type, success.seq, success.data["duration"]) == (EventType.STEP_SUCCESS, 1, 1.0)


# --- compact and eager records of the same emits are the same events -----------------------------


def _emit_the_same(bus: EventBus) -> None:
    """A fixed mix of plain events and step events, with fixed times."""
    bus.emit(EventType.RUN_START, message="run starts")
    bus.emit_step(StepStartEvent, "a", 10.0, 1, 9.5)
    bus.emit_step(StepStartEvent, "b", 10.25, 1, 9.5)
    bus.emit(EventType.STEP_OUTPUT, step_key="a", level=logging.INFO, message="out", data={"k": 1})
    bus.emit_step(StepSuccessEvent, "a", 11.5, 1, 10.0)
    bus.emit_step(StepStartEvent, "b", 12.0, 2, 11.0)
    bus.emit_step(StepSuccessEvent, "b", 12.125, 2, 12.0)


def _compact_and_eager() -> tuple[EventBus, EventBus, list[Event]]:
    """The same emits on a bus nobody hears at DEBUG and on one a DEBUG listener hears,
    with the bus's clock (for the plain events) fixed."""
    compact = EventBus("run")
    eager = EventBus("run")
    heard: list[Event] = []
    eager.add_listener(heard.append, min_level=logging.DEBUG)
    with mock.patch.object(_bus, "time", SimpleNamespace(time=lambda: 5.0)):
        _emit_the_same(compact)
        _emit_the_same(eager)
    return compact, eager, heard


def test_compact_records_read_as_the_events_an_eager_log_holds() -> None:
    compact, eager, heard = _compact_and_eager()
    tuples = [r for r in compact.events.records if r.__class__ is tuple]
    assert len(tuples) == 5  # every step event was kept compact
    assert not any(r.__class__ is tuple for r in eager.events.records)
    assert heard == list(eager.events.records)
    read = list(compact.events)
    for got, want in zip(read, eager.events.records, strict=True):
        assert type(got) is type(want)
        assert (got.run_id, got.seq, got.timestamp, got.type, got.step_key, got.level) == (
            want.run_id,
            want.seq,
            want.timestamp,
            want.type,
            want.step_key,
            want.level,
        )
        assert got.message == want.message and got.data == want.data
        assert getattr(got, "attempt", None) == getattr(want, "attempt", None)
        assert got.to_dict() == want.to_dict()
        assert got == want
    assert compact.events == eager.events
    assert [(e.type, e.data) for e in read if e.step_key == "b"] == [
        (EventType.STEP_START, {"attempt": 1, "waited": 0.75}),
        (EventType.STEP_START, {"attempt": 2, "waited": 1.0}),
        (EventType.STEP_SUCCESS, {"attempt": 2, "duration": 0.125}),
    ]
    assert read[4].message == "Finished execution of step 'a' in 1500.00ms."
    assert read[1].message == "Started execution of step 'a'."


def test_compact_records_read_as_what_an_emit_of_formatted_events_gives() -> None:
    """The executor's fallback without a bus formats eagerly: same type, message and data."""
    compact = EventBus("run")
    formatted = EventBus("run")
    emit_step = formatting_emit_step(formatted.emit)
    compact.emit_step(StepStartEvent, "a", 10.0, 3, 9.0)
    compact.emit_step(StepSuccessEvent, "a", 10.5, 3, 10.0)
    emit_step(StepStartEvent, "a", 10.0, 3, 9.0)
    emit_step(StepSuccessEvent, "a", 10.5, 3, 10.0)
    for got, want in zip(compact.events, formatted.events, strict=True):
        assert type(want) is Event
        assert (got.seq, got.type, got.step_key, got.level, got.message, got.data) == (
            want.seq,
            want.type,
            want.step_key,
            want.level,
            want.message,
            want.data,
        )


def test_a_listener_above_debug_leaves_step_events_compact_and_never_hears_them() -> None:
    bus = EventBus("run")
    heard: list[Event] = []
    bus.add_listener(heard.append, min_level=logging.INFO)
    _emit_the_same(bus)
    assert [e.type for e in heard] == [EventType.STEP_OUTPUT]
    assert sum(r.__class__ is tuple for r in bus.events.records) == 5


@pytest.mark.parametrize("index", [0, 1, 2, 3, 4, 5, 6, -1, -2, -5, -6, -7], ids=lambda i: f"[{i}]")
def test_indexing_reads_the_event_at_that_position(index: int) -> None:
    compact, eager, _ = _compact_and_eager()
    got = compact.events[index]
    assert got == eager.events.records[index]
    assert got.seq == eager.events.records[index].seq


@pytest.mark.parametrize("index", [7, -8])
def test_indexing_past_either_end_raises_index_error(index: int) -> None:
    compact, _, _ = _compact_and_eager()
    with pytest.raises(IndexError):
        compact.events[index]


@pytest.mark.parametrize(
    "cut",
    [
        slice(None),
        slice(1, 3),
        slice(2, None),
        slice(None, -2),
        slice(-3, None),
        slice(-5, -1),
        slice(None, None, 2),
        slice(None, None, -1),
        slice(5, 1, -2),
        slice(4, 4),
        slice(100, None),
    ],
    ids=str,
)
def test_slicing_reads_a_list_of_the_events_in_that_slice(cut: slice) -> None:
    compact, eager, _ = _compact_and_eager()
    got = compact.events[cut]
    want = eager.events.records[cut]
    assert type(got) is list
    assert got == want
    assert [e.seq for e in got] == [e.seq for e in want]


def test_len_contains_and_reversed_see_every_event() -> None:
    compact, eager, _ = _compact_and_eager()
    log = compact.events
    assert len(log) == len(eager.events) == 7
    assert all(event in log for event in eager.events.records)
    assert list(reversed(log)) == eager.events.records[::-1]
    assert log != eager.events.records[:-1]


def test_iterating_a_log_that_grows_meanwhile_reads_the_new_events_too() -> None:
    bus = EventBus("run")
    bus.emit_step(StepStartEvent, "a", 1.0, 1, 0.5)
    seen: list[Event] = []
    for event in bus.events:
        seen.append(event)
        if len(seen) == 1:
            bus.emit_step(StepSuccessEvent, "a", 2.0, 1, 1.0)
            bus.emit(EventType.RUN_SUCCESS)
    assert [(e.seq, e.type) for e in seen] == [
        (0, EventType.STEP_START),
        (1, EventType.STEP_SUCCESS),
        (2, EventType.RUN_SUCCESS),
    ]


# --- the same through runs: readers, listeners and storage -------------------------------------


@solid
async def first() -> int:
    return 1


@solid(retry_policy=RetryPolicy(max_retries=2))
def flaky(context: Any, x: int) -> int:
    if context.retry_number == 0:
        raise ConnectionError("once")
    return x + 1


@pipeline
def with_a_retry() -> None:
    flaky(first())


def _shape(events: Sequence[Event]) -> list[tuple[Any, ...]]:
    """What two runs of the same pipeline share: everything but times and run ids."""
    return [(e.seq, e.type, e.step_key, e.level, getattr(e, "attempt", None)) for e in events]


async def test_a_run_s_log_reads_as_the_log_of_the_same_run_heard_at_debug() -> None:
    quiet = await execute_pipeline_async(with_a_retry)
    heard: list[Event] = []
    loud = await execute_pipeline_async(with_a_retry, listeners=[heard.append])
    assert any(r.__class__ is tuple for r in quiet.events.records)  # type: ignore[attr-defined]
    assert not any(r.__class__ is tuple for r in loud.events.records)  # type: ignore[attr-defined]
    assert _shape(quiet.events) == _shape(loud.events) == _shape(heard)
    assert [e.data["attempt"] for e in quiet.events if e.step_key == "flaky" and e.data] == [
        e.data["attempt"] for e in loud.events if e.step_key == "flaky" and e.data
    ]
    for events in (quiet.events, loud.events):
        flaky_events = [e for e in events if e.step_key == "flaky"]
        starts = [e for e in flaky_events if e.type is EventType.STEP_START]
        success = next(e for e in flaky_events if e.type is EventType.STEP_SUCCESS)
        assert [e.data["attempt"] for e in starts] == [1, 2]
        assert success.data == {"attempt": 2, "duration": success.timestamp - starts[1].timestamp}
        assert success.message.startswith("Finished execution of step 'flaky' in ")
        times = [e.timestamp for e in events]
        assert times == sorted(times)


async def test_a_listener_at_debug_hears_full_step_events_as_they_happen() -> None:
    heard: list[tuple[EventType, str, dict[str, Any] | None]] = []

    def listener(event: Event) -> None:
        heard.append((event.type, event.message, event.data))

    result = await execute_pipeline_async(with_a_retry, listeners=[listener])
    assert heard == [(e.type, e.message, e.data) for e in result.events]
    steps = [h for h in heard if h[0] in (EventType.STEP_START, EventType.STEP_SUCCESS)]
    assert len(steps) == 5  # first: start, success; flaky: start, start, success
    assert all(message and data and "attempt" in data for _, message, data in steps)


async def test_readers_streaming_a_run_read_the_events_of_its_log() -> None:
    gate = anyio.Event()

    @solid
    async def waits(x: int) -> int:
        await gate.wait()
        return x

    @pipeline
    def p() -> None:
        waits(first())

    streamed: list[Event] = []
    late: list[Event] = []
    with anyio.fail_after(60):  # a hang guard, not a timing assertion
        async with open_run(p) as run:

            async def read_all() -> None:
                async for event in run.events():
                    streamed.append(event)
                    if event.type is EventType.STEP_START and event.step_key == "waits":
                        gate.set()

            async with anyio.create_task_group() as tg:
                tg.start_soon(read_all)
            async for event in run.events(after=2):
                late.append(event)
        result = await run.result()
    log = result.events
    assert any(r.__class__ is tuple for r in log.records)  # type: ignore[attr-defined]
    assert streamed == list(log) and _shape(streamed) == _shape(log)
    assert late == list(log)[3:] and late[0].seq == 3
    assert all(type(a) is type(b) for a, b in zip(streamed, log, strict=True))


async def test_storage_keeps_every_event_of_the_run_in_full() -> None:
    storage = InMemoryStorage()
    result = await execute_pipeline_async(with_a_retry, storage=storage)
    stored = await storage.get_events(result.run_id)
    assert [e.to_dict() for e in stored] == [e.to_dict() for e in result.events]
    assert {EventType.STEP_START, EventType.STEP_SUCCESS} <= {e.type for e in stored}


def test_the_history_builds_each_step_events_message_and_data_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Encoding a batch read step events field by field, which built their message and
    # data seven times each: SQLite storage cost three times what it did before.
    from asyncdag._events import EventType, StepSuccessEvent
    from asyncdag.storage._sqlite_rows import decode_batch, encode_batch

    built = {"message": 0, "data": 0}
    message, data = StepSuccessEvent.message, StepSuccessEvent.data

    def counted(name: str, prop: property) -> property:
        def read(self: StepSuccessEvent) -> object:
            built[name] += 1
            return prop.fget(self)  # type: ignore[misc]

        return property(read)

    monkeypatch.setattr(StepSuccessEvent, "message", counted("message", message))
    monkeypatch.setattr(StepSuccessEvent, "data", counted("data", data))
    events = [
        tuple.__new__(
            StepSuccessEvent,
            ("run", seq, 10.0 + seq, EventType.STEP_SUCCESS, f"s{seq}", 10, 1, 9.5 + seq),
        )
        for seq in range(5)
    ]
    batch = encode_batch(events)
    assert built == {"message": 5, "data": 5}
    stored = decode_batch("run", batch.first_seq, batch.last_seq, batch.blob)
    assert [e.message for e in stored] == [
        f"Finished execution of step 's{n}' in 500.00ms." for n in range(5)
    ]
    assert [e.data for e in stored] == [{"attempt": 1, "duration": 0.5}] * 5
