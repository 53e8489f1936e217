"""Success and failure hooks on solid calls and on pipelines, on asyncio and trio."""

from __future__ import annotations

from typing import Any

import pytest

from asyncdag import (
    EventType,
    HookContext,
    Output,
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


async def test_pipeline_with_hooks_is_a_copy_whose_every_step_runs_them() -> None:
    failures: list[str] = []

    @failure_hook
    async def alert(context: HookContext) -> None:
        failures.append(context.step_key)

    @pipeline
    def p():
        boom(ok())

    alerted = p.with_hooks({alert})
    assert alerted is not p and alerted.name == p.name and alerted.nodes is p.nodes
    assert p.hook_defs == frozenset()
    await execute_pipeline_async(alerted, raise_on_error=False)
    assert failures == ["boom"]
    await execute_pipeline_async(p, raise_on_error=False)  # the original is unchanged
    assert failures == ["boom"]


def test_a_hooks_required_resources_must_be_bound_wherever_it_is_attached() -> None:
    from asyncdag import DefinitionError, resource
    from asyncdag._definitions import check_resources_bound

    @success_hook(required_resources={"slack"})
    def notify(context: HookContext) -> None:
        pass

    @resource
    def slack() -> str:
        return "client"

    assert notify.required_resources == frozenset({"slack"})
    message = r"hook 'notify' requires resource\(s\) \['slack'\] that pipeline 'p' does not bind"

    # Checked when a run starts, as a solid's needs are, since the run may give the key
    # (resources={"slack": client}): on a call, on the pipeline, and on a copy with more hooks.
    @pipeline
    def p():
        ok.with_hooks({notify})()

    @pipeline(hooks={notify})
    def p_hooked():
        ok()

    @pipeline
    def plain():
        ok()

    for hooked in (p, p_hooked.with_hooks(()), plain.with_hooks({notify})):
        with pytest.raises(DefinitionError, match=message.replace("'p'", f"'{hooked.name}'")):
            check_resources_bound(hooked, hooked.resource_defs)
        check_resources_bound(hooked, hooked.resource_defs, provided={"slack"})

    @pipeline(resources={"slack": slack}, hooks={notify})
    def bound():
        ok()

    assert notify in bound.hook_defs
    check_resources_bound(bound, bound.resource_defs)


async def test_an_unbound_hook_resource_fails_the_run_before_anything_runs() -> None:
    from asyncdag import DefinitionError

    ran: list[str] = []

    @solid
    def work() -> None:
        ran.append("work")

    @success_hook(required_resources={"slack"})
    def notify(context: HookContext) -> None:
        ran.append(context.resources.slack)

    @pipeline(hooks={notify})
    def p():
        work()

    with pytest.raises(DefinitionError, match=r"hook 'notify' requires resource\(s\) \['slack'\]"):
        await execute_pipeline_async(p)
    assert ran == []
    await execute_pipeline_async(p, resources={"slack": "client"})
    assert ran == ["work", "client"]


async def test_a_success_hook_sees_the_steps_output_values_dynamic_items_by_key() -> None:
    from asyncdag import DynamicOut, DynamicOutput, Out

    seen: dict[str, Any] = {}

    @success_hook
    def record(context: HookContext) -> None:
        seen[context.step_key] = context.solid_output_values

    @failure_hook
    def record_failure(context: HookContext) -> None:
        seen[context.step_key] = context.solid_output_values

    @solid(outs={"items": DynamicOut(), "count": Out()})
    async def fan():
        for i in range(2):
            yield DynamicOutput(i * 10, mapping_key=f"k{i}")
        yield Output(2, "count")

    @solid
    def double(x: int) -> int:
        return 2 * x

    @pipeline(hooks={record, record_failure})
    def p():
        items = fan().items
        items.map(double)
        boom(ok())

    await execute_pipeline_async(p, raise_on_error=False)
    assert seen["ok"] == {"result": 1}
    assert seen["fan"] == {"count": 2, "items": {"k0": 0, "k1": 10}}
    assert seen["double[k1]"] == {"result": 20}
    assert seen["boom"] == {}  # a failed step produced nothing


async def test_a_hooks_required_resources_are_set_up_and_in_its_context() -> None:
    from asyncdag import resource

    setups: list[str] = []
    messages: list[str] = []

    @resource
    def slack() -> list[str]:
        setups.append("slack")
        return messages

    @success_hook(required_resources={"slack"})
    async def notify(context: HookContext) -> None:
        context.resources.slack.append(f"{context.step_key} ok")

    @pipeline(resources={"slack": slack})
    def p():
        ok.with_hooks({notify})()  # the solid itself needs no resource

    result = await execute_pipeline_async(p)
    assert result.success
    assert setups == ["slack"] and messages == ["ok ok"]


async def test_a_hook_whose_resource_fails_to_set_up_is_recorded_and_the_run_stands() -> None:
    from asyncdag import resource

    @resource
    def broken() -> None:
        raise ConnectionError("no slack today")

    @success_hook(required_resources={"broken"})
    def notify(context: HookContext) -> None:
        raise AssertionError("must not run without its resource")

    @pipeline(resources={"broken": broken}, hooks={notify})
    def p():
        ok()

    result = await execute_pipeline_async(p)
    assert result.status is RunStatus.SUCCESS
    [errored] = [e for e in result.events if e.type is EventType.HOOK_ERRORED]
    assert errored.step_key == "ok" and "no slack today" in errored.data["error"]["message"]
