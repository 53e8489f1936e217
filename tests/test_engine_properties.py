"""Properties of the engine over random DAGs, on asyncio and trio.

For any DAG (random sync/async nodes, random failures, random bound):
- each node runs at most once, and exactly once when no upstream failed;
- no node starts before all of its inputs finished;
- the number of nodes running at once never exceeds the bound;
- the event log is complete and ordered: contiguous sequence numbers, one
  terminal event per step, START before its end, RUN_START first and the
  run's end last;
- a node downstream of a failure is SKIPPED, every other node SUCCEEDS.
And cancelling at any moment leaves nothing running.
"""

from __future__ import annotations

import threading
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asyncdag import (
    EventType,
    RunStatus,
    StepStatus,
    execute_pipeline_async,
    open_run,
    pipeline,
    solid,
)

BACKENDS = ["asyncio", "trio"]
TERMINAL = {
    EventType.STEP_SUCCESS,
    EventType.STEP_FAILURE,
    EventType.STEP_SKIPPED,
    EventType.STEP_CANCELED,
}


@st.composite
def dags(draw: st.DrawFn, max_nodes: int = 60) -> dict[str, Any]:
    n = draw(st.integers(min_value=1, max_value=max_nodes))
    parents = []
    for i in range(n):
        if i == 0:
            parents.append([])
            continue
        k = draw(st.integers(min_value=0, max_value=min(3, i)))
        parents.append(sorted(draw(st.sets(st.integers(0, i - 1), min_size=k, max_size=k))))
    is_sync = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    fails = draw(st.lists(st.integers(0, 9).map(lambda v: v == 0), min_size=n, max_size=n))
    yields = draw(st.lists(st.integers(0, 2), min_size=n, max_size=n))
    bound = draw(st.one_of(st.none(), st.integers(1, 8)))
    return {
        "n": n,
        "parents": parents,
        "is_sync": is_sync,
        "fails": fails,
        "yields": yields,
        "bound": bound,
    }


class Recorder:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started: list[str] = []
        self.finished: set[str] = set()
        self.running = 0
        self.peak = 0
        self.violations: list[str] = []

    def enter(self, key: str, inputs: list[str]) -> None:
        with self.lock:
            missing = [i for i in inputs if i not in self.finished]
            if missing:
                self.violations.append(f"{key} started before {missing}")
            self.started.append(key)
            self.running += 1
            self.peak = max(self.peak, self.running)

    def leave(self, key: str) -> None:
        with self.lock:
            self.running -= 1
            self.finished.add(key)


def build(spec: dict[str, Any], recorder: Recorder) -> Any:
    names = [f"n{i}" for i in range(spec["n"])]

    def make(i: int) -> Any:
        inputs = [names[p] for p in spec["parents"][i]]
        fail = spec["fails"][i]
        yields = spec["yields"][i]

        if spec["is_sync"][i]:

            def body(context, xs: list[int]) -> int:
                recorder.enter(context.step_key, inputs)
                try:
                    if fail:
                        raise ValueError(f"{context.step_key} fails")
                    return 1 + sum(xs)
                finally:
                    recorder.leave(context.step_key)

        else:

            async def body(context, xs: list[int]) -> int:  # type: ignore[misc]
                recorder.enter(context.step_key, inputs)
                try:
                    for _ in range(yields):
                        await anyio.sleep(0)
                    if fail:
                        raise ValueError(f"{context.step_key} fails")
                    return 1 + sum(xs)
                finally:
                    recorder.leave(context.step_key)

        return solid(name=f"node{i}")(body)

    solids = [make(i) for i in range(spec["n"])]

    @pipeline(name="random_dag")
    def p():
        handles: list[Any] = []
        for i in range(spec["n"]):
            handles.append(solids[i].alias(names[i])([handles[j] for j in spec["parents"][i]]))

    return p


def expected_outcome(spec: dict[str, Any]) -> dict[str, StepStatus]:
    outcome: dict[str, StepStatus] = {}
    for i in range(spec["n"]):
        ups = [outcome[f"n{p}"] for p in spec["parents"][i]]
        if any(u is not StepStatus.SUCCESS for u in ups):
            outcome[f"n{i}"] = StepStatus.SKIPPED
        elif spec["fails"][i]:
            outcome[f"n{i}"] = StepStatus.FAILURE
        else:
            outcome[f"n{i}"] = StepStatus.SUCCESS
    return outcome


def check_event_log(result: Any) -> None:
    events = result.events
    assert [e.seq for e in events] == list(range(len(events)))
    assert events[0].type is EventType.RUN_START
    assert events[-1].type in {EventType.RUN_SUCCESS, EventType.RUN_FAILURE, EventType.RUN_CANCELED}
    terminal: dict[str, int] = {}
    started: dict[str, int] = {}
    for event in events[1:-1]:
        assert event.type not in {EventType.RUN_START, EventType.RUN_SUCCESS, EventType.RUN_FAILURE}
        key = event.step_key
        if event.type is EventType.STEP_START:
            assert key not in terminal, f"{key} started after it ended"
            started.setdefault(key, event.seq)
        elif event.type in TERMINAL:
            assert key not in terminal, f"{key} ended twice"
            terminal[key] = event.seq
    assert set(terminal) == set(result.step_results)
    for key, seq in started.items():
        assert seq < terminal[key]


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=dags())
def test_random_dags_run_each_node_once_in_order_within_bound(backend: str, spec: dict) -> None:
    recorder = Recorder()
    p = build(spec, recorder)

    async def main() -> Any:
        return await execute_pipeline_async(p, max_concurrency=spec["bound"], raise_on_error=False)

    result = anyio.run(main, backend=backend)
    expected = expected_outcome(spec)

    assert recorder.violations == []
    assert len(recorder.started) == len(set(recorder.started))  # at most once
    if spec["bound"] is not None:
        assert recorder.peak <= spec["bound"]
    assert {k: s.status for k, s in result.step_results.items()} == expected
    ran = {k for k, status in expected.items() if status is not StepStatus.SKIPPED}
    assert set(recorder.started) == ran  # exactly the nodes with no failed upstream ran
    for key, status in expected.items():
        attempts = result.step_results[key].attempts
        assert attempts == (0 if status is StepStatus.SKIPPED else 1)
    failed = any(s is StepStatus.FAILURE for s in expected.values())
    assert result.status is (RunStatus.FAILURE if failed else RunStatus.SUCCESS)
    check_event_log(result)
    # Values: each node returns 1 + the sum of its inputs; compare with a sequential evaluation.
    reference: dict[int, int] = {}
    for i in range(spec["n"]):
        reference[i] = 1 + sum(reference[p] for p in spec["parents"][i])
    for key, status in expected.items():
        if status is StepStatus.SUCCESS:
            assert result.output_for_solid(key) == reference[int(key[1:])]


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=dags(max_nodes=40), cancel_after=st.integers(min_value=0, max_value=60))
def test_cancelling_at_any_moment_leaves_nothing_running(
    backend: str, spec: dict, cancel_after: int
) -> None:
    spec = {**spec, "fails": [False] * spec["n"], "yields": [2] * spec["n"]}
    recorder = Recorder()
    p = build(spec, recorder)

    async def main() -> Any:
        async with open_run(p, max_concurrency=spec["bound"]) as run:
            async for event in run.events():
                if event.seq >= cancel_after:
                    run.cancel()
                    break
        return await run.result()

    result = anyio.run(main, backend=backend)
    assert recorder.running == 0  # every started solid body has returned
    assert result.status in {RunStatus.CANCELED, RunStatus.SUCCESS}
    check_event_log(result)
    for step in result.step_results.values():
        assert step.status in {StepStatus.SUCCESS, StepStatus.CANCELED}
        if result.status is RunStatus.SUCCESS:
            assert step.status is StepStatus.SUCCESS
