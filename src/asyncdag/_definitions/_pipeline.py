"""Pipelines: a named graph of solid calls, built by running the pipeline's body once.

While the body runs, a :class:`_GraphBuilder` is current (a context variable);
each solid call adds a :class:`Node` to it and returns a handle standing for
the value that node will produce.  Passing a handle to another call wires an
edge.  Nothing here imports anyio: definitions are plain data.
"""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from typing import Any, overload

import attrs

from .._errors import DefinitionError
from ._builder import GraphNode, Node, _current_builder, _GraphBuilder
from ._handles import _wrap_mapped as _wrap_mapped
from ._hooks import HookDefinition
from ._retry import RetryPolicy
from ._solid import _check_hooks, _freeze_tags
from ._sources import InputSource as InputSource

__all__ = ["PipelineDefinition", "check_resources_bound", "pipeline"]

# --- pipelines -------------------------------------------------------------------------------


def check_resources_bound(
    pipeline: PipelineDefinition,
    definitions: Mapping[str, Any],
    provided: Collection[str] = (),
) -> None:
    """Raise :class:`DefinitionError` unless every resource a solid or hook requires is bound
    by ``definitions`` or ``provided`` as a ready value.

    Checked when a run starts, not when the pipeline is defined: the run may be
    given the resources its host owns (``resources={"http": client}``).  What
    resources require of each other is :func:`check_resource_graph`'s.
    """
    missing_any = _resource_needs(pipeline) - definitions.keys() - set(provided)
    if not missing_any:
        return
    bound = sorted({*definitions, *provided}) or "none"
    for who, needs in _needers(pipeline):
        missing = sorted(needs & missing_any)
        if missing:
            raise DefinitionError(
                f"{who} requires resource(s) {missing} that pipeline "
                f"{pipeline.name!r} does not bind (bound: {bound}); add them with "
                "@pipeline(resources={...}) or pass them to the run (resources={...})"
            )


def _needers(pipeline: PipelineDefinition) -> Iterator[tuple[str, frozenset[str]]]:
    """Each solid and hook of ``pipeline`` with the resource keys it requires."""
    hooks: set[HookDefinition] = set(pipeline.hook_defs)
    for node in pipeline.nodes.values():
        yield f"solid {node.name!r}", node.solid.required_resources
        hooks.update(node.hooks)
    for hook in sorted(hooks, key=lambda h: h.name):
        yield f"hook {hook.name!r}", hook.required_resources


def _resource_needs(pipeline: PipelineDefinition) -> frozenset[str]:
    """Every resource key a solid or hook of ``pipeline`` requires, computed once per pipeline."""
    needs = _needs_cache.get(pipeline)
    if needs is None:
        needs = _needs_cache[pipeline] = frozenset().union(
            *(needs for _, needs in _needers(pipeline))
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
    # Every use of a @graph, by its namespace ("outer", "outer.inner").
    graphs: Mapping[str, GraphNode] = attrs.field(factory=dict)
    solid_retry_policy: RetryPolicy | None = None

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

    def with_hooks(self, hooks: Iterable[HookDefinition]) -> PipelineDefinition:
        """A copy of this pipeline whose every step also runs ``hooks``.

        For adding alerting to a pipeline defined elsewhere (a library's, a test's)
        without touching its body.  The copy has the same name, nodes and resources.
        """
        added = _check_hooks(f"pipeline {self.name!r}", hooks)
        # Resources the hooks require are checked when a run starts, as the solids' are.
        return attrs.evolve(self, hook_defs=self.hook_defs | added)

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
    solid_retry_policy: RetryPolicy | None = None,
) -> PipelineDefinition:
    params = [
        p for p in inspect.signature(fn).parameters.values() if p.default is inspect.Parameter.empty
    ]
    if params:
        raise DefinitionError(
            f"pipeline {name!r}: the body takes no arguments; feed inputs from solids or from "
            f"run config (solids.<name>.inputs), not {[p.name for p in params]}"
        )
    if solid_retry_policy is not None and not isinstance(solid_retry_policy, RetryPolicy):
        raise DefinitionError(
            f"pipeline {name!r}: solid_retry_policy must be a RetryPolicy, "
            f"got {solid_retry_policy!r}"
        )
    hook_defs = _check_hooks(f"pipeline {name!r}", hooks or ())
    builder = _GraphBuilder(name, default_retry_policy=solid_retry_policy)
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
        hook_defs=hook_defs,
        graphs=builder.graphs,
        solid_retry_policy=solid_retry_policy,
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
    solid_retry_policy: RetryPolicy | None = None,
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
    solid_retry_policy: RetryPolicy | None = None,
) -> PipelineDefinition | Callable[[Callable[[], Any]], PipelineDefinition]:
    """Declare a pipeline whose body wires solids by calling them.

    The body runs once, at decoration time, to record the graph; it never
    runs again, so it must not do work itself.  ``resources`` binds resource
    definitions by key (a key a solid requires may instead be given by each run,
    ``resources={"http": client}``, checked when the run starts); ``config`` is
    a default run config that a run's own config overrides key by key.  ``hooks``
    (from ``@success_hook`` / ``@failure_hook``) run after every step of the
    pipeline.  ``solid_retry_policy`` is the retry policy of every solid that has
    none of its own (``@solid(retry_policy=)``) or from its call
    (``.with_retry_policy()``).
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
            solid_retry_policy=solid_retry_policy,
        )

    if fn is not None:
        return decorate(fn)
    return decorate


_needs_cache: weakref.WeakKeyDictionary[PipelineDefinition, frozenset[str]] = (
    weakref.WeakKeyDictionary()
)
