"""``configured``: a copy of a solid or resource whose config is given in code.

Library solids and resources take config (a URL, a bucket, a batch size); a
pipeline that always uses the same values should not make every run's config
repeat them.  ``configured(s3, {"bucket": "prod"})`` is a copy whose config is
fixed: run config gives it none.  With a function instead of a value, the copy
takes a config of its own (``config_schema=``, usually smaller) and the function
maps it onto the original's.

This module only records the mapping, as plain data.  Run config applies it and
checks the result against the original's schema (``asyncdag.config``) when a
run's config is resolved, as Dagster does; so a fixed config that does not fit
is reported with its path before anything runs, by every run of the pipeline.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar, overload

import attrs

from .._errors import DefinitionError
from ._resources import ResourceDefinition
from ._solid import SolidDefinition

__all__ = ["Configured", "configured"]

D = TypeVar("D", SolidDefinition, ResourceDefinition)


@attrs.frozen(eq=False)
class Configured:
    """How a configured copy's config becomes the config of the definition it was made from.

    ``config_fn`` maps the copy's (validated) config onto the original's; without
    one, ``value`` is the original's config, fixed.  ``original_schema`` is what
    the result must fit, and ``original_mapping`` the original's own mapping when
    it was itself a configured copy (the chain is applied outermost first).
    """

    original_schema: Any
    original_mapping: Configured | None
    config_fn: Callable[[Any], Any] | None = None
    value: Any = None

    @property
    def is_fixed(self) -> bool:
        """True when the copy takes no config at all: its original's is given in code."""
        return self.config_fn is None


class _NotGiven:
    def __repr__(self) -> str:
        return "<config not given>"


_NOT_GIVEN: Any = _NotGiven()


@overload
def configured(
    definition: D,
    config: Any,
    /,
    *,
    config_schema: Any = None,
    name: str | None = None,
    description: str | None = None,
) -> D: ...


@overload
def configured(
    definition: D,
    /,
    *,
    config_schema: Any = None,
    name: str | None = None,
    description: str | None = None,
) -> Callable[[Callable[[Any], Any]], D]: ...


def configured(
    definition: Any,
    config: Any = _NOT_GIVEN,
    /,
    *,
    config_schema: Any = None,
    name: str | None = None,
    description: str | None = None,
) -> Any:
    """A copy of a solid or resource with its config given here rather than by each run.

    ``configured(fetch, {"retries": 3}, name="fetch_thrice")`` fixes the config:
    the copy takes none from run config, and the value must fit the original's
    schema.  ``configured(fetch, lambda cfg: {"retries": cfg["n"]}, config_schema={"n": int})``
    maps a config of the copy's own onto the original's.  Used as a decorator
    (``@configured(fetch, config_schema={"n": int})`` on the mapping function),
    a solid copy is named after the function, as in Dagster.

    A solid copy keeps the original's name unless ``name=`` is given, so using both
    the original and the copy in one pipeline needs a ``name``: two different solids
    may not share one.  Config is checked when a run's config is resolved, before
    anything runs; ``config_schema`` only goes with a function.
    """
    if not isinstance(definition, SolidDefinition | ResourceDefinition):
        raise DefinitionError(
            f"configured() takes a solid or a resource, got {definition!r}; for a graph, give "
            "@graph(config_schema=..., config_fn=...)"
        )
    if config is _NOT_GIVEN:

        def decorate(fn: Callable[[Any], Any]) -> Any:
            own_name = name
            if own_name is None and isinstance(definition, SolidDefinition):
                own_name = getattr(fn, "__name__", None)
            return _copy(
                definition, fn, config_schema=config_schema, name=own_name, description=description
            )

        return decorate
    return _copy(
        definition, config, config_schema=config_schema, name=name, description=description
    )


def _copy(
    definition: SolidDefinition | ResourceDefinition,
    config: Any,
    *,
    config_schema: Any,
    name: str | None,
    description: str | None,
) -> Any:
    kind = "solid" if isinstance(definition, SolidDefinition) else "resource"
    owner = f"configured({kind} {definition.name!r})"
    if callable(config):
        _check_config_fn(owner, config)
        mapping = Configured(definition.config_schema, definition.config_mapping, config_fn=config)
    else:
        if config_schema is not None:
            raise DefinitionError(
                f"{owner}: config_schema= describes the config a mapping function takes; with "
                "a fixed config the copy takes none, so leave config_schema out (or pass a "
                "function of the copy's config)"
            )
        mapping = Configured(definition.config_schema, definition.config_mapping, value=config)
    changes: dict[str, Any] = {"config_schema": config_schema, "config_mapping": mapping}
    if description is not None:
        changes["description"] = description
    if name is not None:
        if not name.isidentifier():
            raise DefinitionError(
                f"{owner}: name {name!r} is not a valid identifier; use letters, digits and _"
            )
        changes["name"] = name
    return attrs.evolve(definition, **changes)


def _check_config_fn(owner: str, fn: Callable[..., Any]) -> None:
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return  # a builtin or C callable: trust it
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in positional if p.default is p.empty]
    if len(required) > 1 or not positional:
        raise DefinitionError(
            f"{owner}: the config function {getattr(fn, '__name__', fn)!r} must take one "
            f"parameter (the copy's config), not {len(params)}"
        )
