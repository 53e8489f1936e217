"""Run storage keeps whatever a run hands it: any text, NaN, values JSON has no type for.

A hostile day's values (a non-UTF-8 file name decoded into lone surrogates, a
``.nan`` in a YAML config, a date under an ``Any`` field) once made a run's whole
event batch unstorable, or the run list unreadable.  Each backend must store and
read back every one of them.
"""

from __future__ import annotations

import datetime
import math
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asyncdag import execute_pipeline_async, pipeline, solid
from asyncdag._events import Event, EventType, RunStatus
from asyncdag.storage import InMemoryStorage, RunRecord, RunStorage, SqliteStorage
from asyncdag.storage._codec import dumps

SURROGATE_NAME = b"report-\xe9t\xe9.csv".decode("utf-8", "surrogateescape")  # 'report-\udce9t...'


def same(a: Any, b: Any) -> bool:
    """Equal, where NaN equals NaN (and tuples equal lists, as JSON has only lists)."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


# -- through the engine: nothing a solid says can cost the run its history ---------------


@solid
def read_file(context: Any) -> str:
    context.log.info(f"reading {SURROGATE_NAME}")
    return SURROGATE_NAME


@solid
def parse(context: Any, name: str) -> None:
    raise ValueError(f"cannot parse {name}")


@pipeline
def surrogate_pipeline() -> None:
    parse(read_file())


@pytest.mark.anyio
async def test_a_lone_surrogate_in_a_log_line_or_an_error_loses_no_event(
    storage: RunStorage,
) -> None:
    result = await execute_pipeline_async(surrogate_pipeline, storage=storage, raise_on_error=False)
    assert result.status is RunStatus.FAILURE  # the solid's own failure, not storage's
    stored = await storage.get_events(result.run_id)
    assert stored == result.events
    assert any(SURROGATE_NAME in e.message for e in stored if e.type is EventType.LOG)
    run = await storage.get_run(result.run_id)
    assert run is not None and run.status is RunStatus.FAILURE
    failure = next(e for e in stored if e.type is EventType.STEP_FAILURE)
    assert failure.error is not None and SURROGATE_NAME in failure.error.message


@solid(config_schema={"when": Any})
def scheduled(context: Any) -> str:
    return str(context.solid_config["when"])


@pipeline
def dated_pipeline() -> None:
    scheduled()


@pytest.mark.anyio
async def test_a_config_value_json_has_no_type_for_does_not_make_the_run_unstorable(
    storage: RunStorage,
) -> None:
    when = datetime.date(2024, 2, 29)  # what YAML makes of `when: 2024-02-29`
    result = await execute_pipeline_async(
        dated_pipeline, {"solids": {"scheduled": {"config": {"when": when}}}}, storage=storage
    )
    assert result.success
    run = await storage.get_run(result.run_id)
    assert run is not None and run.status is RunStatus.SUCCESS
    assert run.run_config["solids"]["scheduled"]["config"]["when"] in (when, "2024-02-29")
    assert await storage.get_events(result.run_id) == result.events


# -- the storage API itself --------------------------------------------------------------


@pytest.mark.anyio
async def test_non_finite_config_values_are_stored_and_read_back(storage: RunStorage) -> None:
    config = {"solids": {"a": {"config": {"x": math.nan, "hi": math.inf, "lo": -math.inf}}}}
    await storage.create_run(RunRecord(run_id="r1", pipeline_name="p", run_config=config))
    (listed,) = await storage.list_runs()
    fetched = await storage.get_run("r1")
    assert fetched is not None
    assert same(listed.run_config, config) and same(fetched.run_config, config)


ODD = f"{SURROGATE_NAME}\x00\x1b[31m\udfff\U0001f600"


@pytest.mark.anyio
async def test_text_with_lone_surrogates_and_nul_comes_back_equal_everywhere(
    storage: RunStorage,
) -> None:
    record = RunRecord(run_id="r1", pipeline_name="p", status=RunStatus.STARTED, tags={ODD: ODD})
    await storage.create_run(record)
    events = [Event("r1", 0, 1.0, EventType.LOG, step_key=ODD, message=ODD, data={ODD: ODD})]
    await storage.add_events("r1", events)
    await storage.finish_run("r1", RunStatus.FAILURE, end_time=2.0, failure_reason=ODD)
    assert await storage.get_events("r1") == events
    assert await storage.get_events("r1", step_key=ODD) == events
    assert await storage.count_events("r1") == 1
    fetched = await storage.get_run("r1")
    assert fetched is not None
    assert (fetched.tags, fetched.failure_reason) == ({ODD: ODD}, ODD)


@pytest.mark.anyio
@pytest.mark.parametrize("backend", ["memory", "sqlite"])
async def test_identifiers_and_huge_levels_come_back_equal(backend: str, tmp_path: Path) -> None:
    # PostgreSQL refuses these in its keys, and levels past 64 bits, with a StorageError.
    storage = InMemoryStorage() if backend == "memory" else SqliteStorage(tmp_path / "a.db")
    async with storage:
        record = RunRecord(
            run_id=f"r-{ODD}",
            pipeline_name=ODD,
            status=RunStatus.STARTED,
            parent_run_id=ODD,
            hostname=ODD,
        )
        await storage.create_run(record)
        huge = Event(record.run_id, 0, 1.0, EventType.LOG, level=2**70)  # past 64 bits too
        await storage.add_events(record.run_id, [huge])
        assert await storage.get_events(record.run_id) == [huge]
        fetched = await storage.get_run(record.run_id)
        assert fetched == record
        assert [r.run_id for r in await storage.list_runs(pipeline_name=ODD)] == [record.run_id]
        assert await storage.count_events(record.run_id) == 1
        assert await storage.delete_run(record.run_id)
        assert await storage.get_run(record.run_id) is None


@pytest.mark.anyio
async def test_a_nan_timestamp_comes_back_nan(storage: RunStorage) -> None:
    await storage.create_run(RunRecord(run_id="r1", pipeline_name="p"))
    odd = Event("r1", 0, math.nan, EventType.LOG, level=2**62, message="x")
    plain = Event("r1", 1, 2.0, EventType.LOG, message="y")
    await storage.add_events("r1", [odd, plain])
    first, second = await storage.get_events("r1")
    assert math.isnan(first.timestamp) and first.level == 2**62
    assert second == plain


def test_the_encoder_keeps_what_json_cannot_say_as_the_nearest_json_value() -> None:
    circular: list[Any] = []
    circular.append(circular)
    deep: list[Any] = []
    node = deep
    for _ in range(5000):
        node.append([])
        node = node[0]
    assert dumps({"when": datetime.datetime(2024, 2, 29, 12, 30)}) == (
        '{"when":"2024-02-29T12:30:00"}'
    )
    assert dumps({(1, 2): {3}}) == '{"(1, 2)":[3]}'
    assert dumps(circular) == '["<circular reference: not stored>"]'
    assert "nested deeper than" in dumps(deep)
    assert dumps({"x": math.nan}) == '{"x":NaN}'
    assert dumps({"x": math.nan, "y": -math.inf}, strict=True) == '{"x":null,"y":null}'
    assert dumps(SURROGATE_NAME).isascii()


# -- reading never fails because of one run ----------------------------------------------


@pytest.mark.anyio
async def test_a_damaged_run_row_is_served_in_part_with_a_note(tmp_path: Path) -> None:
    path = tmp_path / "asyncdag.db"
    async with SqliteStorage(path) as storage:
        await storage.create_run(RunRecord(run_id="good", pipeline_name="p", start_time=1.0))
        await storage.create_run(RunRecord(run_id="bad", pipeline_name="p", start_time=2.0))
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(
        "UPDATE runs SET status = 'QUEUED', run_config = '{oops', tags = '[1]', start_time = 'x' "
        "WHERE run_id = 'bad'"
    )
    conn.close()
    async with SqliteStorage(path) as storage:
        runs = {r.run_id: r for r in await storage.list_runs()}
        assert set(runs) == {"good", "bad"}
        assert runs["good"].note is None
        bad = runs["bad"]
        assert bad.run_config == {} and bad.tags == {} and bad.start_time is None
        assert bad.note is not None
        for what in ("run config", "tags", "QUEUED", "start time"):
            assert what in bad.note
        assert "note" in bad.to_dict()


# -- properties: random hostile values in, the same values out ---------------------------

hostile_text = st.text(
    st.characters(blacklist_categories=(), codec=None)  # every code point: surrogates, C0, C1
)
hostile_numbers = st.floats() | st.integers(min_value=-(2**70), max_value=2**70)
hostile_json = st.recursive(
    st.none() | st.booleans() | hostile_numbers | hostile_text,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(hostile_text, children, max_size=4)
    ),
    max_leaves=20,
)
hostile_events = st.lists(
    st.fixed_dictionaries(
        {
            "type": st.sampled_from(EventType),
            "step_key": st.none() | hostile_text,
            "message": hostile_text,
            "data": st.none() | st.dictionaries(hostile_text, hostile_json, max_size=4),
        }
    ),
    max_size=8,
)


@pytest.mark.anyio
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    config=st.dictionaries(hostile_text, hostile_json, max_size=4),
    tags=st.dictionaries(hostile_text, hostile_text, max_size=4),
    name=st.text(st.characters(blacklist_characters="\x00"), min_size=1, max_size=20),
    reason=st.none() | hostile_text,
    fields=hostile_events,
)
async def test_hostile_text_numbers_and_nesting_are_stored_and_read_back(
    storage: RunStorage,
    config: dict[str, Any],
    tags: dict[str, str],
    name: str,
    reason: str | None,
    fields: list[dict[str, Any]],
) -> None:
    run_id = uuid.uuid4().hex
    record = RunRecord(
        run_id=run_id,
        pipeline_name=name,
        status=RunStatus.STARTED,
        run_config=config,
        tags=tags,
        start_time=1.0,
    )
    await storage.create_run(record)
    events = [Event(run_id, seq, 1.0 + seq, level=20, **f) for seq, f in enumerate(fields)]
    await storage.add_events(run_id, events)
    await storage.finish_run(run_id, RunStatus.SUCCESS, end_time=9.0, failure_reason=reason)

    stored = await storage.get_events(run_id)
    assert len(stored) == len(events)
    for got, sent in zip(stored, events, strict=True):
        assert same(got._replace(data=None), sent._replace(data=None))
        assert same(got.data, sent.data)
    (listed,) = [r for r in await storage.list_runs() if r.run_id == run_id]
    for fetched in (listed, await storage.get_run(run_id)):
        assert fetched is not None and fetched.note is None
        assert (fetched.pipeline_name, fetched.tags, fetched.failure_reason) == (name, tags, reason)
        assert fetched.status is RunStatus.SUCCESS
        assert same(fetched.run_config, config)
