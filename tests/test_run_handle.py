"""``open_run``'s handle: ``raise_on_error`` decides whether ``await run.result()`` raises."""

from __future__ import annotations

import anyio
import pytest

from asyncdag import (
    PipelineRunCanceled,
    RunStatus,
    open_run,
    pipeline,
    solid,
)

pytestmark = pytest.mark.anyio


class Boom(Exception):
    pass


@solid
async def fails() -> None:
    raise Boom("no")


@solid
async def fine() -> str:
    return "ok"


@pipeline
def failing() -> None:
    fails()
    fine()


@pipeline
def succeeding() -> None:
    fine()


async def test_by_default_result_returns_whatever_the_outcome() -> None:
    async with open_run(failing) as run:
        pass
    result = await run.result()
    assert result.status is RunStatus.FAILURE


async def test_raise_on_error_makes_result_raise_the_failed_steps_own_exception() -> None:
    async with open_run(failing, raise_on_error=True) as run:
        pass  # leaving the block does not raise for the run's outcome
    with pytest.raises(Boom, match="no"):
        await run.result()
    assert run.status is RunStatus.FAILURE


async def test_raise_on_error_returns_the_result_of_a_run_that_succeeded() -> None:
    async with open_run(succeeding, raise_on_error=True) as run:
        pass
    result = await run.result()
    assert result.output_for_solid("fine") == "ok"


async def test_raise_on_error_makes_result_raise_pipeline_run_canceled_after_cancel() -> None:
    started = anyio.Event()

    @solid
    async def waits() -> None:
        started.set()
        await anyio.sleep_forever()

    @pipeline
    def p() -> None:
        waits()

    with anyio.fail_after(60):  # a hang guard, not a timing assertion
        async with open_run(p, raise_on_error=True) as run:
            await started.wait()
            run.cancel()
    with pytest.raises(PipelineRunCanceled) as caught:
        await run.result()
    assert caught.value.run_id == run.run_id
    assert run.status is RunStatus.CANCELED
