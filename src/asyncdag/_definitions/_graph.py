"""``@graph``: a reusable composition of solids (and graphs), used like a solid.

A graph is expanded where it is called: its body runs inside the caller's
builder with a namespace, so its solids become ordinary nodes whose names
carry the path (``outer.inner.solid``).  The engine, the plan and the event
log see only solids; run config for a graph's solids nests the same way
(``solids: {outer: {solids: {inner: {config: ...}}}}``) and is resolved to the
flattened names.  Flattening keeps every engine guarantee (bounds, pools,
retries, streaming) without a second kind of step.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, overload

import attrs

from .._errors import DefinitionError
from ._builder import _current_builder
from ._handles import CollectHandle, DynamicHandle, MultiOutputHandle, OutputHandle

__all__ = ["GraphDefinition", "graph"]

_HANDLES = (OutputHandle, DynamicHandle, CollectHandle, MultiOutputHandle)


@attrs.frozen(eq=False)
class GraphDefinition:
    """A function that wires solids; calling it inside a pipeline (or graph) body expands it."""

    fn: Callable[..., Any]
    name: str
    description: str | None = None
    input_names: tuple[str, ...] = ()

    def alias(self, name: str) -> _GraphCall:
        """Name this use of the graph (the step keys' prefix): ``sub.alias("left")(x)``."""
        return _GraphCall(self, name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _GraphCall(self, None)(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<GraphDefinition {self.name!r}>"


class _GraphCall:
    """One pending use of a graph (its alias, if any), expanded when called in a body."""

    __slots__ = ("alias", "graph")

    def __init__(self, graph: GraphDefinition, alias: str | None) -> None:
        self.graph = graph
        self.alias = alias

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        graph = self.graph
        builder = _current_builder.get()
        if builder is None:
            return graph.fn(*args, **kwargs)  # outside a body: the composed functions, directly
        try:
            bound = inspect.signature(graph.fn).bind(*args, **kwargs)
        except TypeError as exc:
            raise DefinitionError(
                f"graph {graph.name!r} takes inputs {list(graph.input_names)}: {exc}"
            ) from None
        bound.apply_defaults()
        namespace = builder.unique_name(graph.name, self.alias, what="graph")
        previous = builder.prefix
        builder.prefix = namespace + "."
        try:
            result = graph.fn(*bound.args, **bound.kwargs)
        finally:
            builder.prefix = previous
        return _outputs_of(namespace, result)


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


@overload
def graph(fn: Callable[..., Any], /) -> GraphDefinition: ...
@overload
def graph(
    *, name: str | None = None, description: str | None = None
) -> Callable[[Callable[..., Any]], GraphDefinition]: ...
def graph(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
) -> Any:
    """Declare a composition of solids with its own inputs (parameters) and outputs.

    Use it inside a pipeline body like a solid: pass handles or constants for
    its parameters; it returns what its body returns (a handle, or a dict of
    handles with attribute access).  Its solids' step keys are prefixed with
    the graph's name (or alias), nesting as deep as graphs are nested.
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
        return GraphDefinition(
            fn=func,
            name=graph_name,
            description=description if description is not None else inspect.getdoc(func),
            input_names=tuple(p.name for p in params),
        )

    if fn is not None:
        return decorate(fn)
    return decorate
