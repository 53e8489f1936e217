"""``@graph``: a reusable composition of solids (and graphs), used like a solid.

A graph is expanded where it is called: its body runs inside the caller's
builder with a namespace, so its solids become ordinary nodes whose names
carry the path (``outer.inner.solid``).  The engine, the plan and the event
log see only solids; run config for a graph's solids nests the same way
(``solids: {outer: {solids: {inner: {config: ...}}}}``) and is resolved to the
flattened names.  Flattening keeps every engine guarantee (bounds, pools,
retries, streaming) without a second kind of step.

What belongs to the graph use itself (its config mapping, the inputs its caller
left for run config) is kept beside the nodes as a :class:`GraphNode`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any, overload

import attrs

from .._errors import DefinitionError
from ._builder import GraphNode, _current_builder
from ._handles import (
    CollectHandle,
    DynamicHandle,
    GraphInputHandle,
    MultiOutputHandle,
    OutputHandle,
)
from ._hooks import HookDefinition
from ._solid import _check_hooks, copy_function_identity

__all__ = ["GraphDefinition", "graph"]

_HANDLES = (OutputHandle, DynamicHandle, CollectHandle, MultiOutputHandle)


# Not slotted, for the function's __name__, __doc__ and __wrapped__ (see SolidDefinition).
@attrs.frozen(eq=False, slots=False)
class GraphDefinition:
    """A function that wires solids; calling it inside a pipeline (or graph) body expands it."""

    fn: Callable[..., Any]
    name: str
    description: str | None = None
    input_names: tuple[str, ...] = ()
    # Config mapping: run config gives the graph ``config_schema``-shaped config, and
    # ``config_fn`` turns it into its solids' config ({solid: {"config": ...}}).
    config_schema: Any = None
    config_fn: Callable[[Any], Any] | None = None

    def __attrs_post_init__(self) -> None:
        copy_function_identity(self, self.fn)

    @property
    def maps_config(self) -> bool:
        """True when the graph takes one config of its own and maps it onto its solids."""
        return self.config_fn is not None

    def alias(self, name: str) -> _GraphCall:
        """Name this use of the graph (the step keys' prefix): ``sub.alias("left")(x)``."""
        return _GraphCall(self, name)

    def with_hooks(self, hooks: Iterable[HookDefinition]) -> _GraphCall:
        """Attach success/failure hooks to every solid of the next use of this graph."""
        return _GraphCall(self, None).with_hooks(hooks)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _GraphCall(self, None)(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<GraphDefinition {self.name!r}>"


@attrs.frozen
class _GraphCall:
    graph: GraphDefinition
    alias: str | None
    hooks: frozenset[HookDefinition] = frozenset()

    def with_hooks(self, hooks: Iterable[HookDefinition]) -> _GraphCall:
        return attrs.evolve(
            self, hooks=self.hooks | _check_hooks(f"graph {self.graph.name!r}", hooks)
        )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        graph = self.graph
        builder = _current_builder.get()
        if builder is None:
            return graph.fn(*args, **kwargs)  # outside a body: the composed functions, directly
        try:
            bound = inspect.signature(graph.fn).bind_partial(*args, **kwargs)
        except TypeError as exc:
            raise DefinitionError(
                f"graph {graph.name!r} takes inputs {list(graph.input_names)}: {exc}"
            ) from None
        bound.apply_defaults()
        namespace = builder.unique_name(graph.name, self.alias, what="graph")
        # An input the caller left unwired (and with no default) comes from run config.
        unwired = [name for name in graph.input_names if name not in bound.arguments]
        for name in unwired:
            bound.arguments[name] = GraphInputHandle(namespace, name)
        previous = builder.prefix, builder.hooks
        builder.prefix = namespace + "."
        builder.hooks = builder.hooks | self.hooks
        try:
            result = graph.fn(*bound.args, **bound.kwargs)
        finally:
            builder.prefix, builder.hooks = previous
        outputs = _outputs_of(namespace, result)
        builder.graphs[namespace] = GraphNode(
            name=namespace,
            graph=graph,
            config_inputs={
                name: tuple(builder.graph_input_uses.pop((namespace, name), ())) for name in unwired
            },
            outputs=_named_outputs(outputs),
        )
        return outputs


def _outputs_of(namespace: str, result: Any) -> Any:
    if result is None or isinstance(result, _HANDLES):
        return result
    if isinstance(result, Mapping):
        for key, value in result.items():
            if not isinstance(value, _HANDLES):
                raise DefinitionError(
                    f"graph {namespace!r} returned {value!r} for output {key!r}; a graph returns "
                    "solid handles (one, or a dict of them)"
                )
        return MultiOutputHandle(namespace, result)
    if isinstance(result, tuple) and all(isinstance(v, _HANDLES) for v in result):
        return MultiOutputHandle(namespace, {f"out_{i}": v for i, v in enumerate(result)})
    raise DefinitionError(
        f"graph {namespace!r} returned {result!r}; return a solid's handle, a dict of handles, "
        "or nothing"
    )


def _named_outputs(outputs: Any) -> dict[str, Any]:
    """The graph's outputs by name, each the handle of the solid output it stands for."""
    if outputs is None:
        return {}
    if isinstance(outputs, MultiOutputHandle):
        return {
            name: handle
            for name, handle in outputs._handles.items()
            if isinstance(handle, OutputHandle | DynamicHandle | CollectHandle)
        }
    return {"result": outputs}


@overload
def graph(fn: Callable[..., Any], /) -> GraphDefinition: ...
@overload
def graph(
    *,
    name: str | None = None,
    description: str | None = None,
    config_schema: Any = None,
    config_fn: Callable[[Any], Any] | None = None,
) -> Callable[[Callable[..., Any]], GraphDefinition]: ...
def graph(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    config_schema: Any = None,
    config_fn: Callable[[Any], Any] | None = None,
) -> Any:
    """Declare a composition of solids with its own inputs (parameters) and outputs.

    Use it inside a pipeline body like a solid: pass handles or constants for
    its parameters; it returns what its body returns (a handle, or a dict of
    handles with attribute access).  Its solids' step keys are prefixed with
    the graph's name (or alias), nesting as deep as graphs are nested.  A
    parameter the caller leaves out (and that has no default) is given by run
    config, ``solids.<graph>.inputs.<name>``.

    ``config_schema`` with ``config_fn`` make the graph take one small config
    (``solids.<graph>.config``) instead of one per solid: ``config_fn`` receives
    it, validated, and returns its solids' config as run config would give it
    (``{"fetch": {"config": {...}}}``), which is then checked against their schemas.
    """

    def decorate(func: Callable[..., Any]) -> GraphDefinition:
        graph_name = name or func.__name__
        if not graph_name.isidentifier():
            raise DefinitionError(
                f"graph name {graph_name!r} is not a valid identifier; use letters, digits and _"
            )
        params = list(inspect.signature(func).parameters.values())
        for param in params:
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise DefinitionError(
                    f"graph {graph_name!r}: parameter {param.name!r} is *args/**kwargs; a "
                    "graph's inputs must be named parameters"
                )
        if config_schema is not None and config_fn is None:
            raise DefinitionError(
                f"graph {graph_name!r}: config_schema= needs config_fn= to map the graph's "
                "config onto its solids' config"
            )
        if config_fn is not None and not callable(config_fn):
            raise DefinitionError(
                f"graph {graph_name!r}: config_fn must be a function of the graph's config, "
                f"got {config_fn!r}"
            )
        return GraphDefinition(
            fn=func,
            name=graph_name,
            description=description if description is not None else inspect.getdoc(func),
            input_names=tuple(p.name for p in params),
            config_schema=config_schema,
            config_fn=config_fn,
        )

    if fn is not None:
        return decorate(fn)
    return decorate
