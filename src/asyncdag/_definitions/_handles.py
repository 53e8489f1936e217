"""What a solid call returns inside a pipeline (or graph) body.

While the body runs nothing has a value yet, so each call hands back a handle
naming the output it stands for.  Handles exist to be passed to other calls,
which is how edges are wired, and to fail loudly when the body treats them as
values (``if``, iteration).  They live apart from the builder that makes them
so the objects a user touches read on their own; ``DynamicHandle.map`` reaches
the current builder at call time, when every module is loaded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs

from .._errors import DefinitionError
from ._sources import DEFAULT_OUTPUT

__all__ = [
    "CollectHandle",
    "DynamicHandle",
    "GraphInputHandle",
    "MultiOutputHandle",
    "OutputHandle",
    "_wrap_mapped",
]


@attrs.frozen(eq=False)
class OutputHandle:
    """Stands for a node's output while the pipeline body runs; pass it to another solid."""

    node: str
    output: str = DEFAULT_OUTPUT

    def __bool__(self) -> bool:
        raise DefinitionError(
            f"the output of solid {self.node!r} has no value while the pipeline is being "
            "defined, so it cannot be used in an if/while; branch inside a solid instead"
        )

    def __iter__(self) -> Any:
        raise DefinitionError(
            f"the output of solid {self.node!r} cannot be iterated while the pipeline is "
            "being defined; pass it whole to another solid"
        )

    def map(self, fn: Callable[[OutputHandle], Any]) -> Any:
        """Not a fan-out: say how to declare one instead of a bare AttributeError."""
        raise DefinitionError(self._not_dynamic("map"))

    def collect(self) -> Any:
        """Not a fan-out: say how to declare one instead of a bare AttributeError."""
        raise DefinitionError(self._not_dynamic("collect"))

    def _not_dynamic(self, method: str) -> str:
        from ._builder import _current_builder

        builder = _current_builder.get()
        if builder is not None and builder.group_of(self.node, self.output) is not None:
            return (
                f"output {self.output!r} of solid {self.node!r} inside .map() is one item, "
                f"so it has no .{method}(); pass it to a solid, and give that solid a "
                "DynamicOut to fan out again"
            )
        return (
            f"output {self.output!r} of solid {self.node!r} is not dynamic, so it has no "
            f".{method}(); declare it with @solid(outs={{{self.output!r}: DynamicOut()}}) "
            "and yield DynamicOutput(value, mapping_key=...) for each item"
        )


class MultiOutputHandle:
    """The outputs of a multi-output solid (or a graph) call: ``res.ok`` or ``ok, bad = res``."""

    __slots__ = ("_handles", "_owner")

    def __init__(self, owner: str, handles: Mapping[str, Any]) -> None:
        self._owner = owner
        self._handles = dict(handles)

    def __getattr__(self, name: str) -> Any:
        try:
            return self._handles[name]
        except KeyError:
            raise DefinitionError(
                f"{self._owner!r} has no output named {name!r}; its outputs are "
                f"{list(self._handles)}"
            ) from None

    def __getitem__(self, name: str) -> Any:
        return self.__getattr__(name)

    def __iter__(self) -> Any:
        return iter(self._handles.values())

    def __len__(self) -> int:
        return len(self._handles)

    def __bool__(self) -> bool:
        raise DefinitionError(
            f"the outputs of {self._owner!r} have no value while the pipeline is being defined; "
            "branch inside a solid (optional outputs) instead"
        )


@attrs.frozen(eq=False)
class DynamicHandle:
    """A fan-out: one value per yielded item.  ``.map(fn)`` processes each, ``.collect()`` gathers."""

    node: str
    output: str
    producer: str
    producer_output: str

    def map(self, fn: Callable[[OutputHandle], Any]) -> Any:
        """Run ``fn``'s solids once per item; each starts as soon as its item is yielded.

        ``fn`` receives a handle for one item and calls solids on it, like a
        pipeline body; what it returns (a handle, or several) becomes a new
        fan-out over the same items.
        """
        # Imported here: the builder module imports this one to make handles.
        from ._builder import _current_builder

        builder = _current_builder.get()
        if builder is None:
            raise DefinitionError(
                f"{self.node}(...).map() only makes sense inside a @pipeline or @graph body"
            )
        group = (self.producer, self.producer_output)
        previous = builder.map_group
        parent = builder.parent_of(group)
        if parent != previous:
            if parent is not None:
                raise DefinitionError(
                    f"the fan-out of {self.producer!r} is made once per item of {parent[0]!r}; "
                    f"map it inside the .map() over {parent[0]!r}"
                )
            inside = previous[0] if previous is not None else "another fan-out"
            raise DefinitionError(
                f".map() over the items of {self.producer!r} was called inside the .map() over "
                f"{inside!r}; one .map() covers one fan-out: map {self.producer!r} outside it"
            )
        builder.map_group = group
        try:
            result = fn(OutputHandle(self.node, self.output))
        finally:
            builder.map_group = previous
        return _wrap_mapped(result, group)

    def collect(self) -> CollectHandle:
        """All items' values as one list (in mapping-key order), for a fan-in solid."""
        return CollectHandle(self.node, self.output, self.producer, self.producer_output)

    def __bool__(self) -> bool:
        raise DefinitionError(
            f"the fan-out of {self.node!r} has no value while the pipeline is being defined"
        )

    def __iter__(self) -> Any:
        raise DefinitionError(
            f"the fan-out of {self.node!r} cannot be iterated while the pipeline is being "
            "defined; use .map(fn) to process each item or .collect() to gather them"
        )


def _wrap_mapped(result: Any, group: tuple[str, str]) -> Any:
    if result is None:
        return None
    if isinstance(result, DynamicHandle | CollectHandle):
        raise DefinitionError(
            f"the function given to .map() over {group[0]!r} returned the fan-out of "
            f"{result.producer!r}, made once per item: gather it inside the function "
            "(pass .collect() to a solid) and return that solid's output"
        )
    if isinstance(result, OutputHandle):
        return DynamicHandle(result.node, result.output, *group)
    if isinstance(result, MultiOutputHandle):
        return MultiOutputHandle(
            "mapped outputs", {k: _wrap_mapped(v, group) for k, v in result._handles.items()}
        )
    if isinstance(result, Mapping):
        return MultiOutputHandle(
            "mapped outputs", {k: _wrap_mapped(v, group) for k, v in result.items()}
        )
    if isinstance(result, tuple):  # unpacks in order: ``doubled, negated = items.map(fn)``
        return MultiOutputHandle(
            "mapped outputs", {f"out_{i}": _wrap_mapped(v, group) for i, v in enumerate(result)}
        )
    raise DefinitionError(
        f"the function given to .map() returned {result!r}; return a solid's output handle, "
        "a tuple or dict of them, or None"
    )


@attrs.frozen(eq=False)
class CollectHandle:
    """A fan-out gathered into one list; pass it to a solid outside ``.map()``."""

    node: str
    output: str
    producer: str
    producer_output: str


@attrs.frozen(eq=False)
class GraphInputHandle:
    """A graph input its caller left unwired: run config gives it (``solids.<graph>.inputs``).

    Passed to a solid inside the graph, it leaves that solid's input to run config,
    under the graph's name rather than the solid's.
    """

    graph: str
    name: str

    def __bool__(self) -> bool:
        raise DefinitionError(
            f"input {self.name!r} of graph {self.graph!r} comes from run config and has no "
            "value while the pipeline is being defined; branch inside a solid instead"
        )

    def __iter__(self) -> Any:
        raise DefinitionError(
            f"input {self.name!r} of graph {self.graph!r} cannot be iterated while the "
            "pipeline is being defined; pass it whole to a solid"
        )
