"""Success and failure hooks on solid calls and on pipelines, on asyncio and trio."""

from __future__ import annotations

import pytest

from asyncdag import (
    EventType,
    HookContext,
    RunStatus,
    execute_pipeline_async,
    failure_hook,
    pipeline,
    solid,
    success_hook,
)

pytestmark = pytest.mark.anyio


@solid
def ok() -> int:
    return 1


@solid
def boom(x: int) -> int:
    raise ValueError(f"boom {x}")


async def test_success_hook_on_a_call_runs_for_that_step_only() -> None:
    seen: list[str] = []

    @success_hook
    async def record(context: HookContext) -> None:
        assert context.error is None
        seen.append(context.step_key)

    @pipeline
    def p():
        ok.with_hooks({record})()
        ok.alias("plain")()

    result = await execute_pipeline_async(p)
    assert seen == ["ok"]
    completed = [e for e in result.events if e.type is EventType.HOOK_COMPLETED]
    assert [(e.step_key, e.data["hook"]) for e in completed] == [("ok", "record")]


async def test_failure_hook_gets_the_error_and_pipeline_hooks_cover_every_step() -> None:
    failures: list[tuple[str, str]] = []
    successes: list[str] = []

    @failure_hook
    def on_failure(context: HookContext) -> None:  # sync: runs in a worker thread
        failures.append((context.step_key, str(context.error)))

    @success_hook
    def on_success(context: HookContext) -> None:
        successes.append(context.step_key)

    @pipeline(hooks={on_failure, on_success})
    def p():
        boom(ok())

    result = await execute_pipeline_async(p, raise_on_error=False)
    assert result.status is RunStatus.FAILURE
    assert failures == [("boom", "boom 1")]
    assert successes == ["ok"]


async def test_a_hook_that_raises_is_recorded_and_does_not_fail_the_run() -> None:
    @success_hook
    def broken(context: HookContext) -> None:
        raise RuntimeError("hook broke")

    @pipeline
    def p():
        ok.with_hooks([broken])()

    result = await execute_pipeline_async(p)
    assert result.status is RunStatus.SUCCESS
    errored = [e for e in result.events if e.type is EventType.HOOK_ERRORED]
    assert len(errored) == 1
    assert errored[0].data["error"]["message"] == "hook broke"
    assert errored[0].step_key == "ok"


def _raise_system_exit() -> None:
    raise SystemExit(2)


def _raise_generator_exit() -> None:
    raise GeneratorExit


@pytest.mark.parametrize("sync", [True, False], ids=["sync", "async"])
@pytest.mark.parametrize(
    "raiser", [_raise_system_exit, _raise_generator_exit], ids=["SystemExit", "GeneratorExit"]
)
async def test_a_hook_raising_a_base_exception_is_recorded_and_the_next_hook_runs(
    raiser: object, sync: bool
) -> None:
    ran: list[str] = []

    if sync:

        @success_hook(name="a_broken")
        def broken(context: HookContext) -> None:
            raiser()  # type: ignore[operator]

    else:

        @success_hook(name="a_broken")
        async def broken(context: HookContext) -> None:  # type: ignore[misc]
            raiser()  # type: ignore[operator]

    @success_hook(name="b_after")
    def after(context: HookContext) -> None:
        ran.append(context.hook_name)

    @pipeline
    def p():
        ok.with_hooks([broken, after])()

    result = await execute_pipeline_async(p)
    assert result.status is RunStatus.SUCCESS
    (errored,) = [e for e in result.events if e.type is EventType.HOOK_ERRORED]
    assert errored.data["hook"] == "a_broken"
    assert ran == ["b_after"]


def test_with_hooks_rejects_non_hooks() -> None:
    from asyncdag import DefinitionError

    with pytest.raises(DefinitionError, match="is not a hook"):
        ok.with_hooks({print})
    with pytest.raises(DefinitionError, match="exactly one parameter"):
        success_hook(lambda: None)
