"""Calling a solid directly with build_solid_context(...), as Dagster users unit-test ops."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from asyncdag import (
    ConfigError,
    DefinitionError,
    UnknownResourceError,
    build_solid_context,
    configured,
    pipeline,
    resource,
    solid,
)
from asyncdag.config import Field

pytestmark = pytest.mark.anyio


def test_a_solid_called_with_a_built_context_gets_its_config_defaulted_and_its_resources() -> None:
    @solid(config_schema={"n": int, "scale": Field(int, default=10)}, required_resources={"db"})
    def compute(context: Any, x: int) -> tuple[Any, ...]:
        return (
            context.solid_config,
            context.resources.db,
            hasattr(context.resources, "cache"),  # given to the context, not declared
            context.solid_name,
            context.get_mapping_key(),
            x,
        )

    context = build_solid_context(resources={"db": "fake-db", "cache": {}}, solid_config={"n": 2})
    assert compute(context, x=1) == ({"n": 2, "scale": 10}, "fake-db", False, "compute", None, 1)
    assert compute(context=context, x=3)[-1] == 3  # the context by keyword too


def test_a_directly_called_solid_gets_config_errors_and_missing_resources_named() -> None:
    @solid(config_schema={"n": int}, required_resources={"db"})
    def compute(context: Any) -> int:
        return context.solid_config["n"]

    with pytest.raises(ConfigError, match=r"config\.n: expected int, got str"):
        compute(build_solid_context(resources={"db": 1}, solid_config={"n": "two"}))
    with pytest.raises(DefinitionError, match=r"solid 'compute' requires resource\(s\) \['db'\]"):
        compute(build_solid_context(solid_config={"n": 2}))
    with pytest.raises(DefinitionError, match=r"takes a context: call it as compute\("):
        compute()


def test_a_directly_called_solid_sees_only_the_resources_it_declared() -> None:
    @solid
    def nosy(context: Any) -> Any:
        return context.resources.db

    with pytest.raises(UnknownResourceError, match="used resource 'db' without declaring it"):
        nosy(build_solid_context(resources={"db": 1}))


def test_a_configured_copy_called_directly_gets_its_mapped_config() -> None:
    @solid(config_schema={"greeting": str})
    def hello(context: Any) -> str:
        return context.solid_config["greeting"]

    loud = configured(hello, lambda cfg: {"greeting": cfg.upper()}, config_schema=str, name="loud")
    assert loud(build_solid_context(solid_config="hi")) == "HI"
    fixed = configured(hello, {"greeting": "hey"}, name="fixed")
    assert fixed(build_solid_context()) == "hey"


async def test_an_async_solid_called_directly_returns_its_coroutine() -> None:
    @solid
    async def fetch(context: Any, url: str) -> str:
        context.log.info("fetching %s", url)
        return f"{context.get_mapping_key()}:{url}"

    assert await fetch(build_solid_context(mapping_key="p1"), "u") == "p1:u"


def test_a_directly_called_solid_logs_to_the_asyncdag_logger(
    caplog: pytest.LogCaptureFixture,
) -> None:
    @solid
    def chatty(context: Any) -> None:
        context.log.warning("careful: %d", 3)

    with caplog.at_level(logging.DEBUG, logger="asyncdag"):
        chatty(build_solid_context())
    [record] = [r for r in caplog.records if r.name == "asyncdag"]
    assert (record.levelno, record.getMessage(), record.step_key) == (  # type: ignore[attr-defined]
        logging.WARNING,
        "careful: 3",
        "chatty",
    )


def test_a_solid_without_context_and_a_call_in_a_pipeline_body_are_unchanged() -> None:
    @solid
    def add(a: int, b: int) -> int:
        return a + b

    assert add(2, 3) == 5

    @pipeline
    def p():
        add(1, 2)

    assert list(p.nodes) == ["add"]


def test_resource_definitions_are_refused_with_what_to_give_instead() -> None:
    @resource
    def db() -> str:
        return "real"

    with pytest.raises(DefinitionError, match="'db' is the resource definition"):
        build_solid_context(resources={"db": db})
