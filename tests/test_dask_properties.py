"""The engine's random-DAG properties hold on Dask, with the same outputs as in process.

The same random DAGs as test_engine_properties (sync and async nodes, random
failures, random bounds) and the same random nested graphs with fan-outs as
test_composition_properties, run on a 2-process cluster: every node ends as
the sequential reference says, with the reference's value, the event log is
complete and ordered, and no step is recorded twice.  Fewer examples: each
run crosses processes.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import test_composition_properties as composition
from asyncdag import DaskExecutor, RunStatus, StepStatus, execute_pipeline_async, pipeline, solid
from test_engine_properties import check_event_log, dags, expected_outcome

pytest.importorskip("distributed")

BACKENDS = ["asyncio", "trio"]


def build(spec: dict[str, Any]) -> Any:
    """test_engine_properties' DAG without its in-process recorder: on Dask, the engine's
    events are the record (START after every input's SUCCESS, one end per step)."""
    names = [f"n{i}" for i in range(spec["n"])]

    def make(i: int) -> Any:
        fail = spec["fails"][i]
        yields = spec["yields"][i]
        if spec["is_sync"][i]:

            def body(context: Any, xs: list[int]) -> int:
                if fail:
                    raise ValueError(f"{context.step_key} fails")
                return 1 + sum(xs)

        else:

            async def body(context: Any, xs: list[int]) -> int:  # type: ignore[misc]
                for _ in range(yields):
                    await anyio.sleep(0)
                if fail:
                    raise ValueError(f"{context.step_key} fails")
                return 1 + sum(xs)

        return solid(name=f"node{i}")(body)

    solids = [make(i) for i in range(spec["n"])]

    @pipeline(name="random_dag")
    def p() -> None:
        handles: list[Any] = []
        for i in range(spec["n"]):
            handles.append(solids[i].alias(names[i])([handles[j] for j in spec["parents"][i]]))

    return p


def starts_after_inputs(result: Any, spec: dict[str, Any]) -> None:
    seq = {(e.type.value, e.step_key): e.seq for e in result.events if e.step_key}
    for i in range(spec["n"]):
        start = seq.get(("STEP_START", f"n{i}"))
        if start is None:
            continue
        for parent in spec["parents"][i]:
            assert seq[("STEP_SUCCESS", f"n{parent}")] < start


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=dags(max_nodes=25))
def test_random_dags_on_dask_match_the_in_process_outcome(
    dask_cluster: Any, backend: str, spec: dict[str, Any]
) -> None:
    p = build(spec)

    async def main() -> Any:
        return await execute_pipeline_async(
            p,
            max_concurrency=spec["bound"],
            raise_on_error=False,
            executor=DaskExecutor(cluster=dask_cluster),
        )

    result = anyio.run(main, backend=backend)
    expected = expected_outcome(spec)
    assert {k: s.status for k, s in result.step_results.items()} == expected
    for key, status in expected.items():
        assert result.step_results[key].attempts == (0 if status is StepStatus.SKIPPED else 1)
    failed = any(s is StepStatus.FAILURE for s in expected.values())
    assert result.status is (RunStatus.FAILURE if failed else RunStatus.SUCCESS)
    check_event_log(result)
    starts_after_inputs(result, spec)
    reference: dict[int, int] = {}
    for i in range(spec["n"]):
        reference[i] = 1 + sum(reference[p] for p in spec["parents"][i])
    for key, status in expected.items():
        if status is StepStatus.SUCCESS:
            assert result.output_for_solid(key) == reference[int(key[1:])]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    stages=st.lists(composition.stage, min_size=1, max_size=4),
    bound=st.sampled_from([2, None]),
    backend=st.sampled_from(BACKENDS),
)
def test_random_nested_graphs_and_fan_outs_on_dask_match_the_reference(
    dask_cluster: Any, stages: list[tuple[Any, ...]], bound: int | None, backend: str
) -> None:
    p = composition.build(stages)

    async def main() -> Any:
        return await execute_pipeline_async(
            p, max_concurrency=bound, executor=DaskExecutor(cluster=dask_cluster)
        )

    result = anyio.run(main, backend=backend)
    assert result.success
    assert result.output_for_solid("final") == composition.reference(7, stages)
