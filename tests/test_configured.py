"""``configured``: copies of solids and resources with their config given in code."""

from __future__ import annotations

from typing import Any

import pytest

from asyncdag import (
    ConfigError,
    DefinitionError,
    configured,
    execute_pipeline_async,
    graph,
    pipeline,
    resource,
    solid,
)
from asyncdag.config import Field, default_run_config, resolve_run_config, run_config_json_schema

pytestmark = pytest.mark.anyio


@solid(config_schema={"greeting": str, "times": Field(int, default=1)})
def greet(context: Any, name: str) -> str:
    config = context.solid_config
    return " ".join([f"{config['greeting']}, {name}!"] * config["times"])


@solid
def name() -> str:
    return "Kan"


def config_errors(p: Any, run_config: Any = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        resolve_run_config(p, run_config)
    return [str(e) for e in info.value.errors]


async def test_a_fixed_config_needs_no_run_config() -> None:
    hello = configured(greet, {"greeting": "Hello"}, name="hello")

    @pipeline
    def p():
        hello(name())

    result = await execute_pipeline_async(p)
    assert result.output_for_solid("hello") == "Hello, Kan!"  # the default of `times` applies
    assert hello.config_schema is None and greet.config_schema is not None  # original untouched


def test_run_config_cannot_give_config_to_a_fixed_copy() -> None:
    hello = configured(greet, {"greeting": "Hello"})

    @pipeline
    def p():
        hello(name())

    assert config_errors(p, {"solids": {"greet": {"config": {"greeting": "Hi"}}}}) == [
        "solids.greet.config: solid 'greet' has its config fixed in code by configured(); "
        "remove it here"
    ]
    assert (
        "config"
        not in run_config_json_schema(p)["properties"]["solids"]["properties"]["greet"][
            "properties"
        ]
    )


def test_a_fixed_config_that_does_not_fit_is_reported_with_its_path_before_running() -> None:
    broken = configured(greet, {"greeting": 5, "times": "x"}, name="broken")

    @pipeline
    def p():
        broken(name())

    assert config_errors(p) == [
        "solids.broken.config.greeting: expected str, got int "
        "(in the config configured() fixed for it)",
        "solids.broken.config.times: expected int, got str "
        "(in the config configured() fixed for it)",
    ]


async def test_a_config_function_maps_a_smaller_config_onto_the_originals() -> None:
    @configured(greet, config_schema={"loud": bool})
    def shout(config: dict[str, Any]) -> dict[str, Any]:
        return {"greeting": "HEY" if config["loud"] else "hey", "times": 2}

    assert shout.name == "shout"  # the decorator names the copy after the function

    @pipeline
    def p():
        shout(name())

    result = await execute_pipeline_async(p, {"solids": {"shout": {"config": {"loud": True}}}})
    assert result.output_for_solid("shout") == "HEY, Kan! HEY, Kan!"
    assert config_errors(p, {"solids": {"shout": {"config": {"loud": "yes"}}}}) == [
        "solids.shout.config.loud: expected bool, got str"
    ]
    assert default_run_config(p)["solids"] == {"shout": {"config": {"loud": False}}}


def test_what_a_config_function_returns_is_checked_against_the_originals_schema() -> None:
    wrong = configured(greet, lambda cfg: {"greeting": cfg}, config_schema=int, name="wrong")
    raising = configured(greet, lambda cfg: 1 / 0, name="raising")

    @pipeline
    def p():
        wrong(name())
        raising(name.alias("other")())

    assert config_errors(p, {"solids": {"wrong": {"config": 3}}}) == [
        "solids.wrong.config.greeting: expected str, got int (in what the config function "
        "given to configured() returned)",
        "solids.raising.config: the config function given to configured() for solid "
        "'raising' raised ZeroDivisionError: division by zero",
    ]


async def test_configured_copies_chain_outermost_first() -> None:
    base = configured(greet, lambda cfg: {"greeting": cfg["word"]}, config_schema={"word": str})
    fixed = configured(base, {"word": "Ahoy"}, name="ahoy")

    @pipeline
    def p():
        fixed(name())

    result = await execute_pipeline_async(p)
    assert result.output_for_solid("ahoy") == "Ahoy, Kan!"


async def test_the_original_and_a_named_copy_run_side_by_side() -> None:
    hello = configured(greet, {"greeting": "Hello"}, name="hello")

    @pipeline
    def p():
        greet(name())
        hello(name())

    result = await execute_pipeline_async(p, {"solids": {"greet": {"config": {"greeting": "Yo"}}}})
    assert (result.output_for_solid("greet"), result.output_for_solid("hello")) == (
        "Yo, Kan!",
        "Hello, Kan!",
    )


def test_the_original_and_an_unnamed_copy_in_one_pipeline_is_an_error() -> None:
    hello = configured(greet, {"greeting": "Hello"})

    with pytest.raises(DefinitionError, match=r"two different solids named 'greet'.*configured"):

        @pipeline
        def p():
            greet(name())
            hello(name())


async def test_a_resource_can_be_configured() -> None:
    @resource(config_schema={"url": str, "timeout": Field(float, default=5.0)})
    def client(init: Any) -> dict[str, Any]:
        return dict(init.resource_config)

    local = configured(client, {"url": "http://localhost"})

    @solid(required_resources={"client"})
    def use(context: Any) -> dict[str, Any]:
        return context.resources.client

    @pipeline(resources={"client": local})
    def p():
        use()

    result = await execute_pipeline_async(p)
    assert result.output_for_solid("use") == {"url": "http://localhost", "timeout": 5.0}
    assert config_errors(p, {"resources": {"client": {"config": {"url": "x"}}}}) == [
        "resources.client.config: resource 'client' has its config fixed in code by "
        "configured(); remove it here"
    ]


def test_configured_rejects_what_it_cannot_copy() -> None:
    @graph
    def g():
        name()

    with pytest.raises(DefinitionError, match="takes a solid or a resource"):
        configured(g, {})  # type: ignore[call-overload]
    with pytest.raises(DefinitionError, match="config_schema= describes the config a mapping"):
        configured(greet, {"greeting": "x"}, config_schema={"a": int})
    with pytest.raises(DefinitionError, match="must take one parameter"):
        configured(greet, lambda a, b: {})
    with pytest.raises(DefinitionError, match="not a valid identifier"):
        configured(greet, {"greeting": "x"}, name="two words")
