"""Pipelines: a named graph of solid calls, built by running the pipeline's body once.

While the body runs, a :class:`_GraphBuilder` is current (a context variable);
each solid call adds a :class:`Node` to it and returns a handle standing for
the value that node will produce.  Passing a handle to another call wires an
edge.  Nothing here imports anyio: definitions are plain data.
"""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any, overload

import attrs

from .._errors import DefinitionError
from ._builder import Node, _current_builder, _GraphBuilder
from ._handles import _wrap_mapped as _wrap_mapped
from ._hooks import HookDefinition
from ._solid import _check_hooks, _freeze_tags
from ._sources import InputSource as InputSource

__all__ = ["PipelineDefinition", "check_resources_bound", "pipeline"]

# --- pipelines -------------------------------------------------------------------------------


def check_resources_bound(
    pipeline: PipelineDefinition,
    definitions: Mapping[str, Any],
    provided: Collection[str] = (),
) -> None:
    """Raise :class:`DefinitionError` unless every resource a solid requires is bound by
    ``definitions`` or ``provided`` as a ready value.

    Checked when a run starts, not when the pipeline is defined: the run may be
    given the resources its host owns (``resources={"http": client}``).  What
    resources require of each other is :func:`check_resource_graph`'s.
    """
    missing_any = _resource_needs(pipeline) - definitions.keys() - set(provided)
    if not missing_any:
        return
    for node in pipeline.nodes.values():
        missing = sorted(node.solid.required_resources & missing_any)
        if missing:
            bound = sorted({*definitions, *provided}) or "none"
            raise DefinitionError(
                f"solid {node.name!r} requires resource(s) {missing} that pipeline "
                f"{pipeline.name!r} does not bind (bound: {bound}); add them with "
                "@pipeline(resources={...}) or pass them to the run (resources={...})"
            )


def _resource_needs(pipeline: PipelineDefinition) -> frozenset[str]:
    """Every resource key a solid of ``pipeline`` requires, computed once per pipeline."""
    needs = _needs_cache.get(pipeline)
    if needs is None:
        needs = _needs_cache[pipeline] = frozenset().union(
            *(node.solid.required_resources for node in pipeline.nodes.values())
        )
    return needs


@attrs.frozen(eq=False)
class PipelineDefinition:
    """A named graph of solid nodes, with the resources and default config its runs use."""

    name: str
    nodes: Mapping[str, Node]
    description: str | None = None
    resource_defs: Mapping[str, Any] = attrs.field(factory=dict)
    default_config: dict[str, Any] | None = None
    tags: Mapping[str, str] = attrs.field(factory=dict, converter=_freeze_tags)
    fn: Callable[..., Any] | None = None
    hook_defs: frozenset[HookDefinition] = frozenset()

    @property
    def solid_names(self) -> list[str]:
        return list(self.nodes)

    def node(self, name: str) -> Node:
        try:
            return self.nodes[name]
        except KeyError:
            raise DefinitionError(
                f"pipeline {self.name!r} has no solid named {name!r}; it has {list(self.nodes)}"
            ) from None

    def __repr__(self) -> str:
        return f"<PipelineDefinition {self.name!r} ({len(self.nodes)} solids)>"


def _build_pipeline(
    fn: Callable[[], Any],
    *,
    name: str,
    description: str | None,
    resources: Mapping[str, Any] | None,
    config: dict[str, Any] | None,
    tags: Mapping[str, Any] | None,
    hooks: Iterable[HookDefinition] | None = None,
) -> PipelineDefinition:
    params = [
        p for p in inspect.signature(fn).parameters.values() if p.default is inspect.Parameter.empty
    ]
    if params:
        raise DefinitionError(
            f"pipeline {name!r}: the body takes no arguments; feed inputs from solids or from "
            f"run config (solids.<name>.inputs), not {[p.name for p in params]}"
        )
    builder = _GraphBuilder(name)
    token = _current_builder.set(builder)
    try:
        fn()
    finally:
        _current_builder.reset(token)
    if not builder.nodes:
        raise DefinitionError(
            f"pipeline {name!r} has no solids: its body must call at least one solid"
        )
    resource_defs = dict(resources or {})
    from ._resources import check_resource_graph

    # Unbound keys are found when a run starts (check_resources_bound): a run may give them.
    check_resource_graph(f"pipeline {name!r}", resource_defs, provided=None)
    return PipelineDefinition(
        name=name,
        nodes=builder.nodes,
        description=description if description is not None else inspect.getdoc(fn),
        resource_defs=resource_defs,
        default_config=config,
        tags=tags,
        fn=fn,
        hook_defs=_check_hooks(f"pipeline {name!r}", hooks or ()),
    )


@overload
def pipeline(fn: Callable[[], Any], /) -> PipelineDefinition: ...


@overload
def pipeline(
    *,
    name: str | None = None,
    description: str | None = None,
    resources: Mapping[str, Any] | None = None,
    config: dict[str, Any] | None = None,
    tags: Mapping[str, Any] | None = None,
    hooks: Iterable[HookDefinition] | None = None,
) -> Callable[[Callable[[], Any]], PipelineDefinition]: ...


def pipeline(
    fn: Callable[[], Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    resources: Mapping[str, Any] | None = None,
    config: dict[str, Any] | None = None,
    tags: Mapping[str, Any] | None = None,
    hooks: Iterable[HookDefinition] | None = None,
) -> PipelineDefinition | Callable[[Callable[[], Any]], PipelineDefinition]:
    """Declare a pipeline whose body wires solids by calling them.

    The body runs once, at decoration time, to record the graph; it never
    runs again, so it must not do work itself.  ``resources`` binds resource
    definitions by key (a key a solid requires may instead be given by each run,
    ``resources={"http": client}``, checked when the run starts); ``config`` is
    a default run config that a run's own config overrides key by key.  ``hooks`` (from ``@success_hook`` /
    ``@failure_hook``) run after every step of the pipeline.
    """

    def decorate(func: Callable[[], Any]) -> PipelineDefinition:
        return _build_pipeline(
            func,
            name=name or func.__name__,
            description=description,
            resources=resources,
            config=config,
            tags=tags,
            hooks=hooks,
        )

    if fn is not None:
        return decorate(fn)
    return decorate


_needs_cache: weakref.WeakKeyDictionary[PipelineDefinition, frozenset[str]] = (
    weakref.WeakKeyDictionary()
)
