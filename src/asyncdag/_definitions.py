"""Solids and pipelines: what a user declares, before anything runs.

A pipeline is built by calling solids inside its body, as in Dagster.  While
the body runs, a :class:`_GraphBuilder` is current (a context variable); each
solid call adds a :class:`Node` to it and returns an :class:`OutputHandle`
standing for the value that node will produce.  Passing a handle to another
call wires an edge.  Nothing here imports anyio: definitions are plain data.
"""

from __future__ import annotations

import contextvars
import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar, overload

import attrs

from ._errors import DefinitionError
from ._hooks import HookDefinition
from ._outputs import DynamicOut, Out
from ._retry import RetryPolicy

__all__ = [
    "Collect",
    "CollectHandle",
    "Constant",
    "DynamicHandle",
    "FanIn",
    "FromOutput",
    "InputDefinition",
    "MultiOutputHandle",
    "Node",
    "OutputHandle",
    "PipelineDefinition",
    "SolidDefinition",
    "pipeline",
    "solid",
]

DEFAULT_OUTPUT = "result"

F = TypeVar("F", bound=Callable[..., Any])


@attrs.frozen
class InputDefinition:
    """One parameter of a solid function, other than ``context``."""

    name: str
    annotation: Any = inspect.Parameter.empty
    has_default: bool = False
    default: Any = None

    @property
    def type_name(self) -> str:
        if self.annotation is inspect.Parameter.empty:
            return "Any"
        return getattr(self.annotation, "__name__", None) or repr(self.annotation)


# --- where an input's value comes from -------------------------------------------------------


@attrs.frozen
class FromOutput:
    """The value of another node's output."""

    node: str
    output: str = DEFAULT_OUTPUT


@attrs.frozen
class Constant:
    """A value written into the pipeline body itself."""

    value: Any


@attrs.frozen
class FanIn:
    """A list input gathered from several outputs (and constants), in the order given."""

    sources: tuple[FromOutput | Constant, ...]


@attrs.frozen
class Collect:
    """Every item of a fan-out, as a list in mapping-key order.

    ``node``/``output`` is what is gathered: a mapped (template) node's output,
    or the producer's dynamic output itself; ``producer``/``producer_output``
    name the fan-out it belongs to.
    """

    node: str
    output: str
    producer: str
    producer_output: str


InputSource = FromOutput | Constant | FanIn | Collect


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
        builder = _current_builder.get()
        if builder is None:
            raise DefinitionError(
                f"{self.node}(...).map() only makes sense inside a @pipeline or @graph body"
            )
        group = (self.producer, self.producer_output)
        previous = builder.map_group
        if previous is not None:
            raise DefinitionError(
                f".map() over the items of {self.producer!r} was called inside another .map(); "
                "nested fan-outs are not supported: map once and call several solids in fn"
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
    raise DefinitionError(
        f"the function given to .map() returned {result!r}; return a solid's output handle, "
        "a dict of them, or None"
    )


@attrs.frozen(eq=False)
class CollectHandle:
    """A fan-out gathered into one list; pass it to a solid outside ``.map()``."""

    node: str
    output: str
    producer: str
    producer_output: str


# --- solids ----------------------------------------------------------------------------------


def _normalize_resources(value: Iterable[str] | None) -> frozenset[str]:
    if value is None:
        return frozenset()
    if isinstance(value, str):
        return frozenset((value,))
    return frozenset(value)


def _freeze_tags(value: Mapping[str, Any] | None) -> Mapping[str, str]:
    return {str(k): str(v) for k, v in (value or {}).items()}


@attrs.frozen(eq=False)
class SolidDefinition:
    """A unit of computation: a function plus how it should be run.

    Calling it inside a ``@pipeline`` body adds a node; calling it anywhere
    else calls the function directly, so solids stay unit-testable.
    """

    fn: Callable[..., Any]
    name: str
    description: str | None = None
    input_defs: tuple[InputDefinition, ...] = ()
    takes_context: bool = False
    is_async: bool = False
    retry_policy: RetryPolicy | None = None
    timeout: float | None = None
    pool: str | None = None
    tags: Mapping[str, str] = attrs.field(factory=dict, converter=_freeze_tags)
    config_schema: Any = None
    required_resources: frozenset[str] = attrs.field(
        factory=frozenset, converter=_normalize_resources
    )
    # None: the single output ``result`` (the common case, kept on the fast path).
    outs: Mapping[str, Out | DynamicOut] | None = None
    is_generator: bool = False
    is_async_generator: bool = False

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.input_defs)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(self.outs) if self.outs is not None else (DEFAULT_OUTPUT,)

    @property
    def has_dynamic_output(self) -> bool:
        return self.outs is not None and any(isinstance(o, DynamicOut) for o in self.outs.values())

    def alias(self, name: str) -> _PendingInvocation:
        """Name the next node made from this solid explicitly: ``add.alias("total")(x, y)``."""
        return _PendingInvocation(self, alias=name)

    def after(self, *handles: Any) -> _PendingInvocation:
        """Make the next node wait for other solids without taking their values."""
        return _PendingInvocation(self).after(*handles)

    def with_hooks(self, hooks: Iterable[HookDefinition]) -> _PendingInvocation:
        """Attach success/failure hooks to the next node made from this solid."""
        return _PendingInvocation(self).with_hooks(hooks)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        builder = _current_builder.get()
        if builder is None:
            return self.fn(*args, **kwargs)
        return _PendingInvocation(self)(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<SolidDefinition {self.name!r}>"


def _check_hooks(owner: str, hooks: Iterable[HookDefinition]) -> frozenset[HookDefinition]:
    hooks = frozenset(hooks)
    for hook in hooks:
        if not isinstance(hook, HookDefinition):
            raise DefinitionError(
                f"{owner}: {hook!r} is not a hook; decorate it with @success_hook or @failure_hook"
            )
    return hooks


@attrs.frozen
class _PendingInvocation:
    solid: SolidDefinition
    alias: str | None = None
    after_nodes: tuple[str, ...] = ()
    hooks: frozenset[HookDefinition] = frozenset()

    def after(self, *handles: Any) -> _PendingInvocation:
        """Wait for these solids' steps (handles of their calls) without taking their values."""
        names = list(self.after_nodes)
        for handle in handles:
            if isinstance(handle, OutputHandle | DynamicHandle | CollectHandle):
                names.append(handle.node)
            elif isinstance(handle, MultiOutputHandle):
                names.extend(h.node for h in handle)
            else:
                raise DefinitionError(
                    f"{self.solid.name}.after() takes the handles returned by solid calls, "
                    f"got {handle!r}"
                )
        return attrs.evolve(self, after_nodes=tuple(dict.fromkeys(names)))

    def with_hooks(self, hooks: Iterable[HookDefinition]) -> _PendingInvocation:
        return attrs.evolve(
            self, hooks=self.hooks | _check_hooks(f"solid {self.solid.name!r}", hooks)
        )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        builder = _current_builder.get()
        if builder is None:
            raise DefinitionError(
                f"{self.solid.name}.alias/after/with_hooks(...)(...) only makes sense inside a "
                "@pipeline body; call the solid directly to run its function"
            )
        return builder.add(
            self.solid,
            args,
            kwargs,
            alias=self.alias,
            after=self.after_nodes,
            hooks=self.hooks,
        )


def _input_defs_of(fn: Callable[..., Any], name: str) -> tuple[bool, tuple[InputDefinition, ...]]:
    params = list(inspect.signature(fn).parameters.values())
    takes_context = bool(params) and params[0].name == "context"
    if takes_context:
        params = params[1:]
    defs = []
    for param in params:
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise DefinitionError(
                f"solid {name!r}: parameter {param.name!r} is *args/**kwargs; a solid's inputs "
                "must be named parameters so they can be wired"
            )
        if param.name == "context":
            raise DefinitionError(
                f"solid {name!r}: 'context' must be the first parameter when the solid takes one"
            )
        has_default = param.default is not param.empty
        defs.append(
            InputDefinition(
                name=param.name,
                annotation=param.annotation,
                has_default=has_default,
                default=param.default if has_default else None,
            )
        )
    return takes_context, tuple(defs)


def _check_outs(
    name: str, outs: Mapping[str, Out | DynamicOut] | None
) -> dict[str, Out | DynamicOut] | None:
    if outs is None:
        return None
    if not outs:
        raise DefinitionError(f"solid {name!r}: outs is empty; leave it out for one output")
    checked: dict[str, Out | DynamicOut] = {}
    for out_name, out in outs.items():
        if not isinstance(out_name, str) or not out_name.isidentifier():
            raise DefinitionError(
                f"solid {name!r}: output name {out_name!r} is not a valid identifier"
            )
        if not isinstance(out, Out | DynamicOut):
            raise DefinitionError(
                f"solid {name!r}: outs[{out_name!r}] must be Out() or DynamicOut(), got {out!r}"
            )
        checked[out_name] = out
    return checked


@overload
def solid(fn: F, /) -> SolidDefinition: ...


@overload
def solid(
    *,
    name: str | None = None,
    description: str | None = None,
    retry_policy: RetryPolicy | None = None,
    timeout: float | None = None,
    pool: str | None = None,
    tags: Mapping[str, Any] | None = None,
    config_schema: Any = None,
    required_resources: Iterable[str] | None = None,
    outs: Mapping[str, Out | DynamicOut] | None = None,
) -> Callable[[F], SolidDefinition]: ...


def solid(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    retry_policy: RetryPolicy | None = None,
    timeout: float | None = None,
    pool: str | None = None,
    tags: Mapping[str, Any] | None = None,
    config_schema: Any = None,
    required_resources: Iterable[str] | None = None,
    outs: Mapping[str, Out | DynamicOut] | None = None,
) -> SolidDefinition | Callable[[F], SolidDefinition]:
    """Declare a unit of computation, sync or async.

    A first parameter named ``context`` receives the step's context; the
    others are inputs, wired by calling the solid inside a ``@pipeline`` body.
    ``timeout`` is in seconds per attempt; ``pool`` names a concurrency pool
    whose limit the run sets (``concurrency_limits={"http": 10}``).

    ``outs`` declares named outputs (``{"ok": Out(), "bad": Out(is_required=False)}``):
    return a tuple in that order or a dict, or yield ``Output(value, name)`` from a
    (sync or async) generator.  A ``DynamicOut`` is fed by yielding
    ``DynamicOutput(value, mapping_key=...)``; each item's mapped steps start at once.
    """

    def decorate(func: Callable[..., Any]) -> SolidDefinition:
        solid_name = name or func.__name__
        if not solid_name.isidentifier():
            raise DefinitionError(
                f"solid name {solid_name!r} is not a valid identifier; use letters, digits and _"
            )
        if timeout is not None and timeout <= 0:
            raise DefinitionError(f"solid {solid_name!r}: timeout must be > 0 seconds")
        if retry_policy is not None and not isinstance(retry_policy, RetryPolicy):
            raise DefinitionError(
                f"solid {solid_name!r}: retry_policy must be a RetryPolicy, got {retry_policy!r}"
            )
        takes_context, input_defs = _input_defs_of(func, solid_name)
        checked_outs = _check_outs(solid_name, outs)
        is_async_gen = inspect.isasyncgenfunction(func)
        is_gen = is_async_gen or inspect.isgeneratorfunction(func)
        if checked_outs is not None and not is_gen:
            dynamic = [n for n, o in checked_outs.items() if isinstance(o, DynamicOut)]
            if dynamic:
                raise DefinitionError(
                    f"solid {solid_name!r}: output {dynamic[0]!r} is a DynamicOut, so the solid "
                    "must be a generator that yields DynamicOutput(value, mapping_key=...)"
                )
        definition = SolidDefinition(
            fn=func,
            name=solid_name,
            description=description if description is not None else inspect.getdoc(func),
            input_defs=input_defs,
            takes_context=takes_context,
            is_async=inspect.iscoroutinefunction(func),
            retry_policy=retry_policy,
            timeout=timeout,
            pool=pool,
            tags=tags,
            config_schema=config_schema,
            required_resources=required_resources,
            outs=checked_outs,
            is_generator=is_gen,
            is_async_generator=is_async_gen,
        )
        return definition

    if fn is not None:
        return decorate(fn)
    return decorate


# --- building the graph ----------------------------------------------------------------------


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


# --- pipelines -------------------------------------------------------------------------------


def _check_resources(
    name: str, nodes: Mapping[str, Node], resource_defs: Mapping[str, Any]
) -> None:
    for node in nodes.values():
        missing = sorted(node.solid.required_resources - resource_defs.keys())
        if missing:
            bound = sorted(resource_defs) or "none"
            raise DefinitionError(
                f"solid {node.name!r} requires resource(s) {missing} that pipeline {name!r} does "
                f"not bind (bound: {bound}); add them with @pipeline(resources={{...}})"
            )
    from ._resources import check_resource_graph

    check_resource_graph(f"pipeline {name!r}", resource_defs)


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
    _check_resources(name, builder.nodes, resource_defs)
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
    definitions by key; ``config`` is a default run config that a run's own
    config overrides key by key.  ``hooks`` (from ``@success_hook`` /
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
