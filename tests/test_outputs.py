"""Multiple and optional outputs, order-only dependencies, on asyncio and trio."""

from __future__ import annotations

import pytest

from asyncdag import (
    DefinitionError,
    EventType,
    Out,
    Output,
    OutputError,
    StepStatus,
    execute_pipeline_async,
    pipeline,
    solid,
)

pytestmark = pytest.mark.anyio


@solid
def seed() -> int:
    return 5


@solid(outs={"ok": Out(), "bad": Out(is_required=False)})
def split(x: int):
    if x > 0:
        return {"ok": x}
    return {"ok": 0, "bad": x}


@solid
async def plus_one(v: int) -> int:
    return v + 1


async def run(p, **kwargs):
    return await execute_pipeline_async(p, raise_on_error=False, **kwargs)


async def test_tuple_return_feeds_each_output_by_attribute_and_unpacking() -> None:
    @solid(outs={"a": Out(), "b": Out()})
    async def pair():
        return 1, 2

    @pipeline
    def p():
        res = pair()
        _first, second = pair.alias("again")()
        plus_one.alias("from_a")(res.a)
        plus_one.alias("from_b")(second)

    result = await run(p)
    assert result.success
    assert result.output_for_solid("from_a") == 2
    assert result.output_for_solid("from_b") == 3
    outputs = [
        e.data["output"]
        for e in result.events
        if e.type is EventType.STEP_OUTPUT and e.step_key == "pair"
    ]
    assert outputs == ["a", "b"]


async def test_generator_yields_named_outputs() -> None:
    @solid(outs={"x": Out(), "y": Out()})
    async def gen():
        yield Output(10, "y")
        yield Output(20, "x")

    @pipeline
    def p():
        x, y = gen()
        plus_one.alias("px")(x)
        plus_one.alias("py")(y)

    result = await run(p)
    assert (result.output_for_solid("px"), result.output_for_solid("py")) == (21, 11)


async def test_optional_output_not_produced_skips_its_dependents_only() -> None:
    @pipeline
    def p():
        ok, bad = split(seed())
        plus_one.alias("on_ok")(ok)
        plus_one.alias("on_bad")(bad)

    result = await run(p)
    assert result.success
    assert result.output_for_solid("on_ok") == 6
    skipped = result.step_results["on_bad"]
    assert skipped.status is StepStatus.SKIPPED
    assert "output 'bad' of step 'split' was not produced" in skipped.skip_reason


async def test_required_output_missing_fails_the_step_naming_it() -> None:
    @solid(outs={"ok": Out(), "other": Out()})
    def forgetful():
        return {"ok": 1}

    @pipeline
    def p():
        _ok, other = forgetful()
        plus_one(other)

    result = await run(p)
    assert result.step_results["forgetful"].status is StepStatus.FAILURE
    assert "required output 'other'" in result.step_results["forgetful"].error.message
    assert isinstance(result.exception_for_step("forgetful"), OutputError)
    assert result.step_results["plus_one"].status is StepStatus.SKIPPED


async def test_wrong_return_shape_is_a_clear_failure() -> None:
    @solid(outs={"a": Out(), "b": Out()})
    def three():
        return 1, 2, 3

    @pipeline
    def p():
        three()

    result = await run(p)
    assert "returns a tuple of 2 values" in result.step_results["three"].error.message


async def test_return_output_from_a_solid_without_outs_passes_on_its_value() -> None:
    @solid
    async def wrapped_async() -> Output:
        return Output(2)

    @solid
    def wrapped_sync() -> Output:
        return Output(3, "result")

    @solid
    def misnamed() -> Output:
        return Output(4, "total")

    @solid
    def add(a: int, b: int) -> int:
        return a + b

    @pipeline
    def p():
        add(wrapped_async(), wrapped_sync())
        plus_one(misnamed())

    result = await run(p)
    assert result.output_for_solid("wrapped_async") == 2
    assert result.output_for_solid("add") == 5
    assert result.step_results["misnamed"].status is StepStatus.FAILURE
    error = result.exception_for_step("misnamed")
    assert isinstance(error, OutputError)
    assert "returned Output(..., 'total') but has one output, 'result'" in str(error)


async def test_after_waits_without_taking_a_value() -> None:
    order: list[str] = []

    @solid
    async def first() -> None:
        order.append("first")

    @solid
    async def second(x: int) -> int:
        order.append("second")
        return x

    @pipeline
    def p():
        done = first()
        second.alias("named").after(done)(3)

    result = await run(p, max_concurrency=4)
    assert result.success and order == ["first", "second"]
    assert p.node("named").upstream == ("first",)


async def test_after_a_failed_step_skips() -> None:
    @solid
    def boom() -> None:
        raise ValueError("no")

    @pipeline
    def p():
        plus_one.after(boom())(1)

    result = await run(p)
    assert result.step_results["plus_one"].status is StepStatus.SKIPPED


def test_wiring_errors_name_the_problem() -> None:
    with pytest.raises(DefinitionError, match="no output named 'nope'"):

        @pipeline
        def p():
            plus_one(split(seed()).nope)

    with pytest.raises(DefinitionError, match="all outputs of a multi-output call"):

        @pipeline
        def q():
            plus_one(split(seed()))

    with pytest.raises(DefinitionError, match="not a valid identifier"):
        solid(outs={"not ok": Out()})(lambda: 1)
