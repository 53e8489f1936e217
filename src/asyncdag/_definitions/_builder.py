"""Recording the graph while a pipeline (or graph) body runs.

A pipeline body is ordinary Python that calls solids; while it runs, a
:class:`_GraphBuilder` is current (a context variable) and each call adds a
:class:`Node` to it: the solid plus where each input comes from.  This is the
one place that turns handles into input sources and checks the wiring, so the
rules for edges, fan-outs and naming sit together rather than among the
declarations in ``_definitions``.
"""

from __future__ import annotations

import contextvars
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .._errors import DefinitionError
from ._handles import CollectHandle, DynamicHandle, MultiOutputHandle, OutputHandle
from ._hooks import HookDefinition
from ._outputs import DynamicOut
from ._sources import Collect, Constant, FanIn, FromOutput, InputSource

if TYPE_CHECKING:
    from ._solid import SolidDefinition

__all__ = ["Node", "_GraphBuilder", "_current_builder"]


class Node:
    """One use of a solid in a pipeline: the solid plus where each of its inputs comes from.

    A plain slotted class rather than an attrs one: it is internal, compared by identity,
    never changed after the builder makes it, and one is made per node, so it costs
    neither class generation at import nor attrs' frozen ``__init__`` per node.
    """

    __slots__ = ("after", "dynamic", "hooks", "inputs", "name", "solid")

    def __init__(
        self,
        name: str,
        solid: SolidDefinition,
        inputs: Mapping[str, InputSource],
        # Nodes this one waits for without taking a value (``.after(...)``).
        after: tuple[str, ...] = (),
        hooks: frozenset[HookDefinition] = frozenset(),
        # (producer node, dynamic output) for a node made inside ``.map()``: a template
        # instantiated once per yielded item; None for an ordinary node.
        dynamic: tuple[str, str] | None = None,
    ) -> None:
        self.name = name
        self.solid = solid
        self.inputs = inputs
        self.after = after
        self.hooks = hooks
        self.dynamic = dynamic

    def __repr__(self) -> str:
        return f"<Node {self.name!r} of solid {self.solid.name!r}>"

    @property
    def upstream(self) -> tuple[str, ...]:
        """Names of the nodes this one waits for, without repeats, inputs first, then ``after``."""
        seen: dict[str, None] = {}
        for source in self.inputs.values():
            if isinstance(source, FromOutput | Collect):
                seen[source.node] = None
            elif isinstance(source, FanIn):
                for item in source.sources:
                    if isinstance(item, FromOutput):
                        seen[item.node] = None
        for name in self.after:
            seen[name] = None
        return tuple(seen)


_current_builder: contextvars.ContextVar[_GraphBuilder | None] = contextvars.ContextVar(
    "asyncdag_graph_builder", default=None
)


class _GraphBuilder:
    """Collects nodes while a pipeline body runs.

    ``prefix`` is the namespace of the ``@graph`` being expanded (``outer.inner.``);
    ``map_group`` is the fan-out whose ``.map()`` function is running, if any.
    """

    def __init__(self, pipeline_name: str) -> None:
        self.pipeline_name = pipeline_name
        self.nodes: dict[str, Node] = {}
        self._uses: dict[str, int] = {}
        # Every graph namespace in use ("outer", "outer.inner"): a name may be neither a
        # node nor a namespace.  A set, so naming stays O(1) per node, not O(nodes).
        self._namespaces: set[str] = set()
        self.prefix = ""
        self.map_group: tuple[str, str] | None = None

    def unique_name(self, base: str, alias: str | None, *, what: str) -> str:
        """A node (or graph) name unused in the current namespace, with the namespace prefix."""
        prefix = self.prefix
        if alias is not None:
            if not alias.isidentifier():
                raise DefinitionError(
                    f"pipeline {self.pipeline_name!r}: alias {alias!r} for {what} "
                    f"{base!r} is not a valid identifier"
                )
            full = prefix + alias
            if full in self.nodes or full in self._namespaces:
                raise DefinitionError(
                    f"pipeline {self.pipeline_name!r}: two nodes are named {full!r}; "
                    "give each .alias() a distinct name"
                )
            return full
        count = self._uses.get(prefix + base, 0)
        while True:
            count += 1
            candidate = prefix + (base if count == 1 else f"{base}_{count}")
            if candidate not in self.nodes and candidate not in self._namespaces:
                self._uses[prefix + base] = count
                return candidate

    def _group_of(self, node: str, output: str) -> tuple[str, str] | None:
        """The fan-out a handle belongs to, or None for an ordinary (static) value."""
        target = self.nodes.get(node)
        if target is None:
            return None
        if target.dynamic is not None:
            return target.dynamic
        outs = target.solid.outs
        if outs is not None and isinstance(outs.get(output), DynamicOut):
            return (node, output)
        return None

    def _ref(self, node_name: str, input_name: str, handle: OutputHandle) -> FromOutput:
        group = self._group_of(handle.node, handle.output)
        if group is not None and group != self.map_group:
            if self.map_group is None:
                raise DefinitionError(
                    f"solid {node_name!r} input {input_name!r} was given the output of "
                    f"{handle.node!r}, which has one value per item yielded by {group[0]!r}; "
                    "process each item inside .map(fn), or pass .collect() to gather them"
                )
            raise DefinitionError(
                f"solid {node_name!r} input {input_name!r} mixes the items of {group[0]!r} "
                f"with the fan-out of {self.map_group[0]!r}; one .map() covers one fan-out"
            )
        return FromOutput(handle.node, handle.output)

    def _source(self, node_name: str, input_name: str, value: Any) -> InputSource:
        if isinstance(value, OutputHandle):
            return self._ref(node_name, input_name, value)
        if isinstance(value, DynamicHandle):
            raise DefinitionError(
                f"solid {node_name!r} input {input_name!r} was given the fan-out of "
                f"{value.node!r}; use .map(fn) to process each item or .collect() to gather them"
            )
        if isinstance(value, CollectHandle):
            if self.map_group is not None:
                raise DefinitionError(
                    f"solid {node_name!r} input {input_name!r}: .collect() cannot be used "
                    "inside .map(); collect outside the mapped function"
                )
            return Collect(value.node, value.output, value.producer, value.producer_output)
        if isinstance(value, MultiOutputHandle):
            raise DefinitionError(
                f"solid {node_name!r} input {input_name!r} was given all outputs of a "
                f"multi-output call; pick one (result.name) or unpack them"
            )
        if isinstance(value, (list, tuple)) and any(
            isinstance(v, OutputHandle | DynamicHandle | CollectHandle) for v in value
        ):
            items: list[FromOutput | Constant] = []
            for v in value:
                if isinstance(v, OutputHandle):
                    items.append(self._ref(node_name, input_name, v))
                elif isinstance(v, DynamicHandle | CollectHandle):
                    raise DefinitionError(
                        f"solid {node_name!r} input {input_name!r}: a fan-out or collected "
                        "list cannot be an item of a fan-in list; pass .collect() on its own"
                    )
                else:
                    items.append(Constant(v))
            return FanIn(tuple(items))
        # Imported here: _definitions imports this module, and is loaded by call time.
        from ._solid import SolidDefinition, _PendingInvocation

        if isinstance(value, SolidDefinition | _PendingInvocation):
            raise DefinitionError(
                f"solid {node_name!r} input {input_name!r} was given the solid itself; "
                "call it to use its output: pass `other()` rather than `other`"
            )
        return Constant(value)

    def add(
        self,
        solid_def: SolidDefinition,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        alias: str | None,
        after: tuple[str, ...] = (),
        hooks: frozenset[HookDefinition] = frozenset(),
    ) -> Any:
        node_name = self.unique_name(solid_def.name, alias, what="solid")
        names = solid_def.input_names
        if len(args) > len(names):
            raise DefinitionError(
                f"solid {node_name!r} takes {len(names)} input(s) {list(names)} but was called "
                f"with {len(args)} positional arguments in pipeline {self.pipeline_name!r}"
            )
        inputs: dict[str, InputSource] = {}
        for input_name, value in zip(names, args, strict=False):
            inputs[input_name] = self._source(node_name, input_name, value)
        for input_name, value in kwargs.items():
            if input_name not in names:
                hint = f"; its inputs are {list(names)}" if names else "; it takes no inputs"
                raise DefinitionError(
                    f"solid {node_name!r} has no input named {input_name!r}{hint}"
                )
            if input_name in inputs:
                raise DefinitionError(
                    f"solid {node_name!r} input {input_name!r} was given twice "
                    "(positionally and by keyword)"
                )
            inputs[input_name] = self._source(node_name, input_name, value)
        for up in after:
            group = self._group_of(up, "")
            if group is not None and self.nodes[up].dynamic is not None and group != self.map_group:
                raise DefinitionError(
                    f"solid {node_name!r} cannot wait .after() the mapped solid {up!r} outside "
                    "its .map(); wait for a step that takes its .collect() instead"
                )
        if self.map_group is not None and solid_def.has_dynamic_output:
            raise DefinitionError(
                f"solid {node_name!r} has a DynamicOut but is called inside .map(); nested "
                "fan-outs are not supported"
            )
        parts = node_name.split(".")
        for depth in range(1, len(parts)):
            self._namespaces.add(".".join(parts[:depth]))
        self.nodes[node_name] = Node(
            name=node_name,
            solid=solid_def,
            inputs=inputs,
            after=after,
            hooks=hooks,
            dynamic=self.map_group,
        )
        outs = solid_def.outs
        if outs is None:
            return OutputHandle(node_name)
        handles: dict[str, Any] = {}
        for out_name, out in outs.items():
            if isinstance(out, DynamicOut):
                handles[out_name] = DynamicHandle(node_name, out_name, node_name, out_name)
            else:
                handles[out_name] = OutputHandle(node_name, out_name)
        if len(handles) == 1:
            return next(iter(handles.values()))
        return MultiOutputHandle(node_name, handles)
