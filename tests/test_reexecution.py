"""Re-execution from failure and of chosen steps, on asyncio and trio.

A step fails through a flag file; with the flag removed, re-executing from the
failure runs only the failed step and what depends on it (the events say so),
and the final outputs equal a clean run's.  Over random DAGs with random
failures, re-executing until success gives a sequential evaluation's values,
each step succeeding exactly once across the chain of runs.
"""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asyncdag import (
    ConfigError,
    DynamicOut,
    DynamicOutput,
    EventType,
    Out,
    ReexecutionError,
    RunStatus,
    StepStatus,
    execute_pipeline_async,
    pipeline,
    solid,
)
from asyncdag.outputs import FilesystemOutputStore, JsonSerializer
from asyncdag.storage import InMemoryStorage

pytestmark = pytest.mark.anyio


class Runs:
    """One run history and one output store, shared by a chain of runs and re-executions."""

    def __init__(self, tmp_path: Path | None = None, *, store: Any = None) -> None:
        assert tmp_path is not None or store is not None
        self.store = store if store is not None else FilesystemOutputStore(tmp_path / "outputs")  # type: ignore[operator]
        self.storage = InMemoryStorage()

    async def run(self, pipeline: Any, run_config: Any = None, **options: Any) -> Any:
        return await execute_pipeline_async(
            pipeline, run_config, output_store=self.store, storage=self.storage, **options
        )

    async def again(self, pipeline: Any, parent: Any, *args: Any, **options: Any) -> Any:
        """Re-execute ``parent`` (a result)."""
        return await self.run(pipeline, *args, reexecute_from=parent.run_id, **options)


def started(result: Any) -> set[str]:
    return {e.step_key for e in result.events if e.type is EventType.STEP_START}


def computed_successes(result: Any) -> set[str]:
    return {
        e.step_key
        for e in result.events
        if e.type is EventType.STEP_SUCCESS and "loaded_from" not in (e.data or {})
    }


class Flags:
    """Files whose presence makes a step fail: the flag-file the issue describes."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def set(self, name: str) -> None:
        (self.root / name).write_text("fail")

    def clear(self, name: str) -> None:
        (self.root / name).unlink()

    def check(self, name: str) -> None:
        if (self.root / name).exists():
            raise RuntimeError(f"flag {name} is set")


def chain_pipeline(flags: Flags) -> Any:
    @solid
    def load() -> list[int]:
        return [1, 2, 3]

    @solid
    def clean(rows: list[int]) -> list[int]:
        return [r * 10 for r in rows]

    @solid
    def enrich(rows: list[int]) -> list[int]:
        flags.check("enrich")
        return [r + 1 for r in rows]

    @solid
    def report(rows: list[int]) -> str:
        flags.check("report")
        return ",".join(map(str, rows))

    @solid
    def audit(rows: list[int]) -> int:
        return len(rows)

    @solid
    async def side() -> str:
        return "independent"

    @pipeline(name="etl")
    def etl() -> None:
        cleaned = clean(load())
        report(enrich(cleaned))
        audit(cleaned)
        side()

    return etl


def all_outputs(result: Any) -> dict[str, Any]:
    return {key: result.output_for_solid(key) for key in result.step_results}


async def test_reexecute_from_failure_runs_only_the_failed_step_and_its_dependents(
    tmp_path: Path,
) -> None:
    flags = Flags(tmp_path)
    etl = chain_pipeline(flags)
    runs = Runs(tmp_path)
    flags.set("enrich")
    first = await runs.run(etl, raise_on_error=False)
    assert first.status is RunStatus.FAILURE
    assert first.step_results["enrich"].status is StepStatus.FAILURE
    assert first.step_results["report"].status is StepStatus.SKIPPED

    flags.clear("enrich")
    second = await runs.again(etl, first, from_failure=True)
    assert second.status is RunStatus.SUCCESS
    assert started(second) == {"enrich", "report"}
    assert computed_successes(first) | computed_successes(second) == set(etl.nodes)
    clean_run = await execute_pipeline_async(etl)
    assert all_outputs(second) == all_outputs(clean_run)
    record = await runs.storage.get_run(second.run_id)
    assert record is not None
    assert (record.parent_run_id, record.root_run_id) == (first.run_id, first.run_id)


async def test_reused_steps_say_where_their_outputs_come_from(tmp_path: Path) -> None:
    flags = Flags(tmp_path)
    etl = chain_pipeline(flags)
    runs = Runs(tmp_path)
    flags.set("report")
    first = await runs.run(etl, raise_on_error=False)
    flags.clear("report")
    second = await runs.again(etl, first, from_failure=True)
    reused = {
        e.step_key: e.data
        for e in second.events
        if e.type is EventType.STEP_OUTPUT and "loaded_from" in (e.data or {})
    }
    assert set(reused) == {"load", "clean", "enrich", "audit", "side"}
    assert all(data["loaded_from"] == first.run_id for data in reused.values())
    assert all(Path(data["path"]).exists() and data["size"] > 0 for data in reused.values())
    step = second.step_results["clean"]
    assert (step.status, step.attempts, step.start_time) == (StepStatus.SUCCESS, 0, None)


async def test_a_chain_of_reexecutions_reads_each_value_from_the_run_that_computed_it(
    tmp_path: Path,
) -> None:
    flags = Flags(tmp_path)
    etl = chain_pipeline(flags)
    runs = Runs(tmp_path)
    flags.set("enrich")
    flags.set("report")
    run1 = await runs.run(etl, raise_on_error=False)
    flags.clear("enrich")
    run2 = await runs.again(etl, run1, from_failure=True, raise_on_error=False)
    assert started(run2) == {"enrich", "report"}
    assert run2.step_results["report"].status is StepStatus.FAILURE
    flags.clear("report")
    run3 = await runs.again(etl, run2, from_failure=True)
    assert started(run3) == {"report"}
    origin = {
        e.step_key: e.data["loaded_from"]
        for e in run3.events
        if e.type is EventType.STEP_SUCCESS and "loaded_from" in (e.data or {})
    }
    assert origin == {
        "load": run1.run_id,
        "clean": run1.run_id,
        "audit": run1.run_id,
        "side": run1.run_id,
        "enrich": run2.run_id,
    }
    assert run3.output_for_solid("report") == "11,21,31"
    chain = await runs.storage.list_runs(root_run_id=run1.run_id)
    assert {r.run_id for r in chain} == {run1.run_id, run2.run_id, run3.run_id}
    assert {r.root_run_id for r in chain} == {None, run1.run_id}


async def test_a_step_selection_computes_only_the_selected_steps(tmp_path: Path) -> None:
    flags = Flags(tmp_path)
    etl = chain_pipeline(flags)
    runs = Runs(tmp_path)
    first = await runs.run(etl)
    second = await runs.again(etl, first, step_selection=["enrich+"])
    assert started(second) == {"enrich", "report"}
    assert second.output_for_solid("report") == first.output_for_solid("report")
    third = await runs.again(etl, first, step_selection=["*audit"])
    assert started(third) == {"load", "clean", "audit"}
    # Downstream of the selection and read by nothing selected: left out, not reused stale.
    assert "enrich" not in third.step_results and "report" not in third.step_results
    assert "side" in third.step_results  # unrelated to the selection: reused


async def test_the_parents_config_and_tags_are_reused_unless_given(tmp_path: Path) -> None:
    @solid(config_schema={"factor": int})
    def scale(context: Any) -> int:
        return 2 * context.solid_config["factor"]

    @solid
    def show(context: Any, value: int) -> str:
        return f"{value} {context.tags.get('team')}"

    @pipeline
    def configured() -> None:
        show(scale())

    runs = Runs(tmp_path)
    config = {"solids": {"scale": {"config": {"factor": 21}}}}
    first = await runs.run(configured, config, tags={"team": "data"})
    again = await runs.again(configured, first)
    assert again.output_for_solid("show") == "42 data"
    record = await runs.storage.get_run(again.run_id)
    assert record is not None and record.run_config == config and record.tags == {"team": "data"}
    other = await runs.again(
        configured, first, {"solids": {"scale": {"config": {"factor": 1}}}}, tags={"team": "ops"}
    )
    assert other.output_for_solid("show") == "2 ops"


def fan_pipeline(count: int, calls: list[str], flags: Flags) -> Any:
    """A producer yielding ``count`` items, each squared by a mapped step, collected and summed."""

    @solid(outs={"items": DynamicOut()})
    async def discover() -> Any:
        for i in range(count):
            yield DynamicOutput(i, mapping_key=f"k{i}")

    @solid
    def work(context: Any, i: int) -> int:
        calls.append(context.step_key)
        flags.check(context.step_key)
        return i * i

    @solid
    def total(values: list[int]) -> int:
        return sum(values)

    @pipeline
    def fan() -> None:
        total(discover().map(work).collect())

    return fan


async def test_only_the_failed_mapped_items_run_again(tmp_path: Path) -> None:
    flags = Flags(tmp_path)
    calls: list[str] = []
    fan = fan_pipeline(5, calls, flags)
    runs = Runs(tmp_path)
    flags.set("work[k3]")
    first = await runs.run(fan, raise_on_error=False)
    assert first.step_results["total"].status is StepStatus.SKIPPED
    flags.clear("work[k3]")
    calls.clear()
    second = await runs.again(fan, first, from_failure=True)
    assert started(second) == {"work[k3]", "total"}
    assert calls == ["work[k3]"]
    assert second.output_for_solid("total") == sum(i * i for i in range(5))
    items = [
        e.data["mapping_key"]
        for e in second.events
        if e.type is EventType.STEP_OUTPUT and e.step_key == "discover"
    ]
    assert sorted(items) == [f"k{i}" for i in range(5)]


def adding_pipeline(ran: list[str]) -> Any:
    @solid
    def source() -> int:
        ran.append("source")
        return 1

    @solid
    def add(x: int, y: int) -> int:
        ran.append("add")
        return x + y

    @pipeline
    def small() -> None:
        add(source(), source.alias("other")())

    return small


async def test_a_subset_without_a_parent_takes_its_inputs_from_run_config() -> None:
    ran: list[str] = []
    small = adding_pipeline(ran)
    result = await execute_pipeline_async(
        small, {"solids": {"add": {"inputs": {"x": 2, "y": 3}}}}, step_selection=["add"]
    )
    assert ran == ["add"] and result.output_for_solid("add") == 5
    assert set(result.step_results) == {"add"}


async def test_a_subset_without_a_parent_names_every_missing_input_before_running() -> None:
    ran: list[str] = []
    small = adding_pipeline(ran)
    with pytest.raises(ConfigError) as caught:
        await execute_pipeline_async(small, step_selection=["add"])
    message = str(caught.value)
    assert "solids.add.inputs.x" in message and "solids.add.inputs.y" in message
    assert "comes from solid 'source'" in message and "'other'" in message
    assert ran == []


async def test_outputs_declared_json_are_stored_as_json_and_reused(tmp_path: Path) -> None:
    flags = Flags(tmp_path)

    @solid(outs={"result": Out(serializer=JsonSerializer())})
    def doc() -> dict[str, int]:
        return {"n": 1}

    @solid
    def use(d: dict[str, int]) -> int:
        flags.check("use")
        return d["n"] + 1

    @pipeline
    def jsonish() -> None:
        use(doc())

    runs = Runs(tmp_path)
    flags.set("use")
    first = await runs.run(jsonish, raise_on_error=False)
    stored = next(e.data for e in first.events if e.type is EventType.STEP_OUTPUT)
    assert stored["serializer"] == "json" and stored["path"].endswith("doc/result.json")
    flags.clear("use")
    second = await runs.again(jsonish, first, from_failure=True)
    assert second.output_for_solid("use") == 2


async def test_selecting_a_mapped_solid_computes_all_of_its_items(tmp_path: Path) -> None:
    calls: list[str] = []
    fan = fan_pipeline(3, calls, Flags(tmp_path))
    runs = Runs(tmp_path)
    first = await runs.run(fan)
    calls.clear()
    again = await runs.again(fan, first, step_selection=["work"])
    assert sorted(calls) == ["work[k0]", "work[k1]", "work[k2]"]
    assert "discover" not in started(again) and "total" not in again.step_results
    collected = await runs.again(fan, first, step_selection=["total"])
    assert started(collected) == {"total"}
    assert collected.output_for_solid("total") == 0 + 1 + 4


async def test_every_stored_output_event_says_where_and_how_big(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASYNCDAG_OUTPUT_STORE", str(tmp_path / "default"))
    etl = chain_pipeline(Flags(tmp_path))
    result = await execute_pipeline_async(etl, persist_outputs=True)
    stored = {e.step_key: e.data for e in result.events if e.type is EventType.STEP_OUTPUT}
    assert set(stored) == set(etl.nodes)
    for key, data in stored.items():
        path = Path(data["path"])
        assert path == tmp_path / "default" / result.run_id / key / "result.pkl"
        assert data["size"] == path.stat().st_size > 0 and data["serializer"] == "pickle"
    start = result.events[0].data or {}
    assert start["outputs_stored"] is True and "python_file" in start["origin"]


async def test_without_an_output_store_single_outputs_emit_no_event(tmp_path: Path) -> None:
    etl = chain_pipeline(Flags(tmp_path))
    result = await execute_pipeline_async(etl)
    assert not any(e.type is EventType.STEP_OUTPUT for e in result.events)
    assert "outputs_stored" not in (result.events[0].data or {})


# --- what cannot be re-executed is said before anything runs ---------------------------------


async def test_an_unknown_parent_is_an_error() -> None:
    etl = chain_pipeline(Flags(Path("/nonexistent")))
    with pytest.raises(ReexecutionError, match="no run 'nope'"):
        await execute_pipeline_async(etl, storage=InMemoryStorage(), reexecute_from="nope")


async def test_reexecution_needs_the_history_that_recorded_the_parent() -> None:
    etl = chain_pipeline(Flags(Path("/nonexistent")))
    with pytest.raises(ReexecutionError, match="pass storage="):
        await execute_pipeline_async(etl, reexecute_from="some-run")


async def test_a_successful_run_has_nothing_to_reexecute_from_failure(tmp_path: Path) -> None:
    etl = chain_pipeline(Flags(tmp_path))
    runs = Runs(tmp_path)
    first = await runs.run(etl)
    with pytest.raises(ReexecutionError, match="nothing to re-execute from failure"):
        await runs.again(etl, first, from_failure=True)


async def test_from_failure_and_a_selection_together_are_refused(tmp_path: Path) -> None:
    etl = chain_pipeline(Flags(tmp_path))
    runs = Runs(tmp_path)
    first = await runs.run(etl)
    with pytest.raises(ReexecutionError, match="choose one of from_failure"):
        await execute_pipeline_async(
            etl,
            storage=runs.storage,
            reexecute_from=first.run_id,
            from_failure=True,
            step_selection=["report"],
        )


async def test_a_parent_of_another_pipeline_is_refused(tmp_path: Path) -> None:
    etl = chain_pipeline(Flags(tmp_path))

    @solid
    def one() -> int:
        return 1

    @pipeline
    def other() -> None:
        one()

    storage = InMemoryStorage()
    first = await execute_pipeline_async(other, storage=storage)
    with pytest.raises(ReexecutionError, match="is of pipeline 'other', not 'etl'"):
        await execute_pipeline_async(etl, storage=storage, reexecute_from=first.run_id)


async def test_a_parent_that_stored_no_outputs_names_the_steps_it_cannot_reuse(
    tmp_path: Path,
) -> None:
    flags = Flags(tmp_path)
    etl = chain_pipeline(flags)
    storage = InMemoryStorage()
    flags.set("report")
    first = await execute_pipeline_async(etl, storage=storage, raise_on_error=False)
    flags.clear("report")
    with pytest.raises(ReexecutionError) as caught:
        await execute_pipeline_async(
            etl,
            storage=storage,
            output_store=FilesystemOutputStore(tmp_path / "outputs"),
            reexecute_from=first.run_id,
            from_failure=True,
        )
    assert "solid 'enrich' cannot be reused" in str(caught.value)
    assert "did not store its outputs" in str(caught.value)


# --- a store that fails -----------------------------------------------------------------------


async def test_a_value_that_cannot_be_stored_fails_its_step_and_nothing_else(
    tmp_path: Path,
) -> None:
    @solid
    def fine() -> int:
        return 1

    @solid
    def lock() -> Any:
        return threading.Lock()

    @solid
    def after(value: Any) -> int:
        return 1

    @pipeline
    def mixed() -> None:
        fine()
        after(lock())

    runs = Runs(tmp_path)
    result = await runs.run(mixed, raise_on_error=False)
    failed = result.step_results["lock"]
    assert failed.status is StepStatus.FAILURE and failed.error is not None
    assert "step 'lock' output 'result'" in failed.error.message
    assert "_thread.lock" in failed.error.message
    assert result.step_results["after"].status is StepStatus.SKIPPED
    assert result.step_results["fine"].status is StepStatus.SUCCESS
    stored = await runs.storage.get_events(result.run_id)
    assert [e.seq for e in stored] == list(range(len(result.events)))
    from asyncdag.outputs import OutputKey

    assert runs.store.get(OutputKey(result.run_id, "fine", "result")) == 1


async def test_a_full_disk_fails_the_step_clearly_and_keeps_the_rest(tmp_path: Path) -> None:
    import errno

    from test_output_store import _refusing  # the same simulated full disk

    @solid
    def small() -> int:
        return 1

    @solid
    def big() -> str:
        return "x" * 100_000

    @pipeline
    def sizes() -> None:
        small()
        big()

    full = OSError(errno.ENOSPC, "No space left on device")
    runs = Runs(store=_refusing(tmp_path, full, after_bytes=1000))
    result = await runs.run(sizes, raise_on_error=False)
    error = result.step_results["big"].error
    assert error is not None and "No space left on device" in error.message
    assert "step 'big' output 'result'" in error.message
    assert result.step_results["small"].status is StepStatus.SUCCESS
    assert len(await runs.storage.get_events(result.run_id)) == len(result.events)
    leftovers = [p.name for p in (tmp_path / "outputs").rglob("*") if p.is_file()]
    assert leftovers == ["result.pkl"]  # small's output, and no half-written file of big


# --- the property: random DAGs, random failures, re-executed until success --------------------


@st.composite
def failing_dags(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(min_value=1, max_value=10))
    parents = [
        sorted(draw(st.sets(st.integers(0, i - 1), max_size=min(3, i)))) if i else []
        for i in range(n)
    ]
    failures = draw(st.lists(st.integers(0, 2), min_size=n, max_size=n))
    return {"n": n, "parents": parents, "failures": failures}


def flaky_pipeline(spec: dict[str, Any], remaining: dict[str, int]) -> Any:
    @solid
    async def node(context: Any, xs: list[int]) -> int:
        key = context.step_key
        if remaining[key] > 0:
            remaining[key] -= 1
            raise RuntimeError(f"{key} fails this time")
        return (int(key[1:]) * 31 + sum(xs)) % 1_000_003

    @pipeline(name="flaky")
    def flaky() -> None:
        handles: list[Any] = []
        for i in range(spec["n"]):
            handles.append(node.alias(f"n{i}")([handles[p] for p in spec["parents"][i]]))

    return flaky


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=failing_dags())
def test_reexecuting_random_failures_until_success_gives_the_sequential_values(
    backend: str, spec: dict[str, Any]
) -> None:
    names = [f"n{i}" for i in range(spec["n"])]
    remaining = dict(zip(names, spec["failures"], strict=True))
    flaky = flaky_pipeline(spec, remaining)
    runs = Runs(store=FilesystemOutputStore(f"memory://reexec-{uuid.uuid4().hex}"))

    async def until_success() -> list[Any]:
        results = [await runs.run(flaky, raise_on_error=False)]
        while results[-1].status is not RunStatus.SUCCESS:
            # Each run either ends the chain or spends at least one of the planned failures.
            assert len(results) <= sum(spec["failures"]) + 1
            results.append(
                await runs.again(flaky, results[-1], from_failure=True, raise_on_error=False)
            )
        return results

    results = anyio.run(until_success, backend=backend)
    reference: dict[str, int] = {}
    for i, name in enumerate(names):
        reference[name] = (
            i * 31 + sum(reference[names[p]] for p in spec["parents"][i])
        ) % 1_000_003
    final = results[-1]
    assert {name: final.output_for_solid(name) for name in names} == reference
    successes = [key for r in results for key in computed_successes(r)]
    assert sorted(successes) == sorted(names)  # each step succeeded exactly once, across runs
    assert all(count == 0 for count in remaining.values())


def line_pipeline() -> Any:
    @solid
    def a() -> int:
        return 1

    @solid
    def step(x: int) -> int:
        return x + 1

    @pipeline(name="line")
    def line() -> None:
        step.alias("d")(step.alias("c")(step.alias("b")(a())))

    return line


async def test_a_step_between_two_selected_steps_is_reused(tmp_path: Path) -> None:
    line = line_pipeline()
    runs = Runs(tmp_path)
    first = await runs.run(line)
    again = await runs.again(line, first, step_selection=["b", "d"])
    assert started(again) == {"b", "d"}
    reused = {e.step_key for e in again.events if e.type is EventType.STEP_SUCCESS} - {"b", "d"}
    assert reused == {"a", "c"}
    assert again.output_for_solid("d") == 4


async def test_what_a_subset_parent_left_out_comes_from_its_own_parent(tmp_path: Path) -> None:
    line = line_pipeline()
    runs = Runs(tmp_path)
    run1 = await runs.run(line)
    run2 = await runs.again(line, run1, step_selection=["b"])
    assert set(run2.step_results) == {"a", "b"}  # c and d: downstream of b, left out
    run3 = await runs.again(line, run2, step_selection=["d"])
    origin = {
        e.step_key: (e.data or {}).get("loaded_from")
        for e in run3.events
        if e.type is EventType.STEP_SUCCESS
    }
    assert origin == {"a": run1.run_id, "b": run2.run_id, "c": run1.run_id, "d": None}
    record = await runs.storage.get_run(run3.run_id)
    assert record is not None and record.root_run_id == run1.run_id


async def test_only_the_failed_item_of_a_nested_fan_out_runs_again(tmp_path: Path) -> None:
    flags = Flags(tmp_path)

    @solid(outs={"sites": DynamicOut()})
    def sites() -> Any:
        for site in ("a", "b"):
            yield DynamicOutput(site, mapping_key=site)

    @solid(outs={"links": DynamicOut()})
    async def crawl(site: str) -> Any:
        for i in range(2):
            yield DynamicOutput(f"{site}{i}", mapping_key=f"l{i}")

    @solid
    def fetch(context: Any, link: str) -> str:
        flags.check(context.step_key)
        return link.upper()

    @solid
    def count(values: list[str]) -> int:
        return len(values)

    @solid
    def total(counts: list[int]) -> int:
        return sum(counts)

    @pipeline
    def crawler() -> None:
        total(sites().map(lambda site: count(crawl(site).map(fetch).collect())).collect())

    runs = Runs(tmp_path)
    flags.set("fetch[a][l1]")
    first = await runs.run(crawler, raise_on_error=False)
    assert first.step_results["count[a]"].status is StepStatus.SKIPPED
    flags.clear("fetch[a][l1]")
    second = await runs.again(crawler, first, from_failure=True)
    assert started(second) == {"fetch[a][l1]", "count[a]", "total"}
    assert second.output_for_solid("total") == 4
    assert second.output_for_solid("fetch") == {
        "a": {"l0": "A0", "l1": "A1"},
        "b": {"l0": "B0", "l1": "B1"},
    }
