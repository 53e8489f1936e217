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

import attrs

from .._errors import DefinitionError
from ._handles import (
    CollectHandle,
    DynamicHandle,
    GraphInputHandle,
    MultiOutputHandle,
    OutputHandle,
)
from ._hooks import HookDefinition
from ._outputs import DynamicOut
from ._retry import RetryPolicy
from ._sources import Collect, Constant, FanIn, FromOutput, InputSource

if TYPE_CHECKING:
    from ._graph import GraphDefinition
    from ._solid import SolidDefinition

__all__ = ["GraphNode", "Node", "_GraphBuilder", "_current_builder"]


@attrs.frozen(eq=False)
class Node:
    """One use of a solid in a pipeline: the solid plus where each of its inputs comes from."""

    name: str
    solid: SolidDefinition
    inputs: Mapping[str, InputSource]
    # Nodes this one waits for without taking a value (``.after(...)``).
    after: tuple[str, ...] = ()
    hooks: frozenset[HookDefinition] = frozenset()
    # (producer node, dynamic output) for a node made inside ``.map()``: a template
    # instantiated once per yielded item; None for an ordinary node.
    dynamic: tuple[str, str] | None = None
    # The solid's tags overlaid with this call's ``.tag({...})``.
    tags: Mapping[str, str] = attrs.field(factory=dict)
    # The one that applies: this call's ``.with_retry_policy()``, else the solid's, else the
    # pipeline's ``solid_retry_policy``.
    retry_policy: RetryPolicy | None = None

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


@attrs.frozen(eq=False)
class GraphNode:
    """One use of a ``@graph`` in a pipeline: what run config needs to know about it.

    The graph's solids are flattened into ordinary nodes named ``<name>.<solid>``;
    this keeps the graph itself, for its config mapping (``config_schema``/``config_fn``)
    and for the inputs its caller left unwired, which run config then gives
    (``solids.<name>.inputs``).
    """

    name: str
    graph: GraphDefinition
    # Each unwired input, and the (node, input) pairs its value feeds.
    config_inputs: Mapping[str, tuple[tuple[str, str], ...]] = attrs.field(factory=dict)
    # What the graph returned, by output name ("result" for a single handle; a tuple's
    # items are out_0, out_1...): the solid output (or fan-out, or collected list) it is.
    outputs: Mapping[str, OutputHandle | DynamicHandle | CollectHandle] = attrs.field(factory=dict)


_current_builder: contextvars.ContextVar[_GraphBuilder | None] = contextvars.ContextVar(
    "asyncdag_graph_builder", default=None
)


class _GraphBuilder:
    """Collects nodes while a pipeline body runs.

    ``prefix`` is the namespace of the ``@graph`` being expanded (``outer.inner.``);
    ``map_group`` is the fan-out whose ``.map()`` function is running, if any;
    ``hooks`` are those of the graph calls being expanded, given to every node inside.
    """

    def __init__(
        self, pipeline_name: str, *, default_retry_policy: RetryPolicy | None = None
    ) -> None:
        self.pipeline_name = pipeline_name
        self.nodes: dict[str, Node] = {}
        self.graphs: dict[str, GraphNode] = {}
        # (graph, input) -> the (node, input) pairs an unwired graph input feeds.
        self.graph_input_uses: dict[tuple[str, str], list[tuple[str, str]]] = {}
        self.hooks: frozenset[HookDefinition] = frozenset()
        self.default_retry_policy = default_retry_policy
        # Solid name -> the definition using it: two different solids may not share a name.
        self._definitions: dict[str, SolidDefinition] = {}
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

    def _check_one_definition_per_name(self, solid_def: SolidDefinition) -> None:
        """The same solid called twice is fine (``add``, ``add_2``); two solids named alike are not.

        Run config, the UI and step keys address solids by name, so two different
        definitions under one name would make ``solids.add.config`` ambiguous.
        """
        known = self._definitions.setdefault(solid_def.name, solid_def)
        if known is not solid_def:
            raise DefinitionError(
                f"pipeline {self.pipeline_name!r} uses two different solids named "
                f"{solid_def.name!r}: {_origin(known)} and {_origin(solid_def)}; give one "
                "of them another name (@solid(name=...), or configured(..., name=...))"
            )

    def group_of(self, node: str, output: str) -> tuple[str, str] | None:
        """The fan-out a handle belongs to, or None for an ordinary (static) value.

        A node's dynamic output is a fan-out of its own, nested in the node's fan-out
        when the node was itself made inside ``.map()``.
        """
        target = self.nodes.get(node)
        if target is None:
            return None
        outs = target.solid.outs
        if outs is not None and isinstance(outs.get(output), DynamicOut):
            return (node, output)
        return target.dynamic

    def parent_of(self, group: tuple[str, str]) -> tuple[str, str] | None:
        """The fan-out whose items ``group`` is made for each of (None: it is made once)."""
        return self.nodes[group[0]].dynamic if group[0] in self.nodes else None

    def in_scope(self, group: tuple[str, str] | None) -> bool:
        """Whether a value of fan-out ``group`` is one value here: ``group`` is the fan-out
        being mapped, or one it is nested in (or None, a value made once)."""
        current = self.map_group
        while current is not None:
            if current == group:
                return True
            current = self.parent_of(current)
        return group is None

    def _ref(self, node_name: str, input_name: str, handle: OutputHandle) -> FromOutput:
        group = self.group_of(handle.node, handle.output)
        if not self.in_scope(group):
            assert group is not None
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

    def _source(self, node_name: str, input_name: str, value: Any) -> InputSource | None:
        """Where an input's value comes from; None when run config gives it (a graph input)."""
        if isinstance(value, GraphInputHandle):
            uses = self.graph_input_uses.setdefault((value.graph, value.name), [])
            uses.append((node_name, input_name))
            return None
        if isinstance(value, OutputHandle):
            return self._ref(node_name, input_name, value)
        if isinstance(value, DynamicHandle):
            raise DefinitionError(
                f"solid {node_name!r} input {input_name!r} was given the fan-out of "
                f"{value.node!r}; use .map(fn) to process each item or .collect() to gather them"
            )
        if isinstance(value, CollectHandle):
            # A fan-out is collected where it is made once: outside any .map(), or inside the
            # .map() over the items it is nested in (once per such item).
            if self.parent_of((value.producer, value.producer_output)) != self.map_group:
                where = (
                    "outside the mapped function"
                    if self.map_group is not None
                    else "inside the .map() it is made in, once per item"
                )
                raise DefinitionError(
                    f"solid {node_name!r} input {input_name!r}: the fan-out of "
                    f"{value.producer!r} cannot be collected here; collect it {where}"
                )
            return Collect(value.node, value.output, value.producer, value.producer_output)
        if isinstance(value, MultiOutputHandle):
            raise DefinitionError(
                f"solid {node_name!r} input {input_name!r} was given all outputs of a "
                f"multi-output call; pick one (result.name) or unpack them"
            )
        if isinstance(value, (list, tuple)) and any(
            isinstance(v, OutputHandle | DynamicHandle | CollectHandle | GraphInputHandle)
            for v in value
        ):
            items: list[FromOutput | Constant] = []
            for v in value:
                if isinstance(v, OutputHandle):
                    items.append(self._ref(node_name, input_name, v))
                elif isinstance(v, GraphInputHandle):
                    raise DefinitionError(
                        f"solid {node_name!r} input {input_name!r}: graph input {v.name!r} of "
                        f"{v.graph!r} is given by run config, so it cannot be an item of a "
                        "fan-in list; wire it in the calling body, or pass it on its own"
                    )
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
        tags: Mapping[str, str] | None = None,
        retry_policy: RetryPolicy | None = None,
    ) -> Any:
        self._check_one_definition_per_name(solid_def)
        node_name = self.unique_name(solid_def.name, alias, what="solid")
        names = solid_def.input_names
        if len(args) > len(names):
            raise DefinitionError(
                f"solid {node_name!r} takes {len(names)} input(s) {list(names)} but was called "
                f"with {len(args)} positional arguments in pipeline {self.pipeline_name!r}"
            )
        inputs: dict[str, InputSource] = {}
        given = dict(zip(names, args, strict=False))
        for input_name, value in kwargs.items():
            if input_name not in names:
                hint = f"; its inputs are {list(names)}" if names else "; it takes no inputs"
                raise DefinitionError(
                    f"solid {node_name!r} has no input named {input_name!r}{hint}"
                )
            if input_name in given:
                raise DefinitionError(
                    f"solid {node_name!r} input {input_name!r} was given twice "
                    "(positionally and by keyword)"
                )
            given[input_name] = value
        for input_name, value in given.items():
            source = self._source(node_name, input_name, value)
            if source is not None:
                inputs[input_name] = source
        for up in after:
            group = self.group_of(up, "")
            if self.nodes[up].dynamic is not None and not self.in_scope(group):
                raise DefinitionError(
                    f"solid {node_name!r} cannot wait .after() the mapped solid {up!r} outside "
                    "its .map(); wait for a step that takes its .collect() instead"
                )
        parts = node_name.split(".")
        for depth in range(1, len(parts)):
            self._namespaces.add(".".join(parts[:depth]))
        self.nodes[node_name] = Node(
            name=node_name,
            solid=solid_def,
            inputs=inputs,
            after=after,
            hooks=hooks | self.hooks if self.hooks else hooks,
            dynamic=self.map_group,
            tags={**solid_def.tags, **tags} if tags else solid_def.tags,
            retry_policy=retry_policy or solid_def.retry_policy or self.default_retry_policy,
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


def _origin(solid_def: SolidDefinition) -> str:
    """Where a solid was defined, to tell two same-named solids apart in a message."""
    fn = solid_def.fn
    where = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"
    code = getattr(fn, "__code__", None)
    if code is not None:
        where += f" ({code.co_filename}:{code.co_firstlineno})"
    if solid_def.config_mapping is not None:
        where = f"a configured() copy of {where}"
    return where
