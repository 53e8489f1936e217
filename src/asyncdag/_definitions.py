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
from ._retry import RetryPolicy

__all__ = [
    "Constant",
    "FanIn",
    "FromOutput",
    "InputDefinition",
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


InputSource = FromOutput | Constant | FanIn


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

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.input_defs)

    def alias(self, name: str) -> _PendingInvocation:
        """Name the next node made from this solid explicitly: ``add.alias("total")(x, y)``."""
        return _PendingInvocation(self, alias=name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        builder = _current_builder.get()
        if builder is None:
            return self.fn(*args, **kwargs)
        return _PendingInvocation(self)(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<SolidDefinition {self.name!r}>"


@attrs.frozen
class _PendingInvocation:
    solid: SolidDefinition
    alias: str | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> OutputHandle:
        builder = _current_builder.get()
        if builder is None:
            raise DefinitionError(
                f"{self.solid.name}.alias({self.alias!r})(...) only makes sense inside a "
                "@pipeline body; call the solid directly to run its function"
            )
        return builder.add(self.solid, args, kwargs, alias=self.alias)


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
) -> SolidDefinition | Callable[[F], SolidDefinition]:
    """Declare a unit of computation, sync or async.

    A first parameter named ``context`` receives the step's context; the
    others are inputs, wired by calling the solid inside a ``@pipeline`` body.
    ``timeout`` is in seconds per attempt; ``pool`` names a concurrency pool
    whose limit the run sets (``concurrency_limits={"http": 10}``).
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

    @property
    def upstream(self) -> tuple[str, ...]:
        """Names of the nodes whose outputs feed this one, without repeats, in input order."""
        seen: dict[str, None] = {}
        for source in self.inputs.values():
            if isinstance(source, FromOutput):
                seen[source.node] = None
            elif isinstance(source, FanIn):
                for item in source.sources:
                    if isinstance(item, FromOutput):
                        seen[item.node] = None
        return tuple(seen)


_current_builder: contextvars.ContextVar[_GraphBuilder | None] = contextvars.ContextVar(
    "asyncdag_graph_builder", default=None
)


class _GraphBuilder:
    """Collects nodes while a pipeline body runs."""

    def __init__(self, pipeline_name: str) -> None:
        self.pipeline_name = pipeline_name
        self.nodes: dict[str, Node] = {}
        self._uses: dict[str, int] = {}

    def _unique_name(self, solid_def: SolidDefinition, alias: str | None) -> str:
        if alias is not None:
            if not alias.isidentifier():
                raise DefinitionError(
                    f"pipeline {self.pipeline_name!r}: alias {alias!r} for solid "
                    f"{solid_def.name!r} is not a valid identifier"
                )
            if alias in self.nodes:
                raise DefinitionError(
                    f"pipeline {self.pipeline_name!r}: two nodes are named {alias!r}; "
                    "give each .alias() a distinct name"
                )
            return alias
        count = self._uses.get(solid_def.name, 0)
        while True:
            count += 1
            candidate = solid_def.name if count == 1 else f"{solid_def.name}_{count}"
            if candidate not in self.nodes:
                self._uses[solid_def.name] = count
                return candidate

    def _source(self, node_name: str, input_name: str, value: Any) -> InputSource:
        if isinstance(value, OutputHandle):
            return FromOutput(value.node, value.output)
        if isinstance(value, (list, tuple)) and any(isinstance(v, OutputHandle) for v in value):
            return FanIn(
                tuple(
                    FromOutput(v.node, v.output) if isinstance(v, OutputHandle) else Constant(v)
                    for v in value
                )
            )
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
    ) -> OutputHandle:
        node_name = self._unique_name(solid_def, alias)
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
        self.nodes[node_name] = Node(name=node_name, solid=solid_def, inputs=inputs)
        return OutputHandle(node_name)


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
    for key, resource_def in resource_defs.items():
        for dep in sorted(getattr(resource_def, "required_resources", ())):
            if dep not in resource_defs:
                raise DefinitionError(
                    f"resource {key!r} requires resource {dep!r} that pipeline {name!r} does not bind"
                )


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
) -> PipelineDefinition | Callable[[Callable[[], Any]], PipelineDefinition]:
    """Declare a pipeline whose body wires solids by calling them.

    The body runs once, at decoration time, to record the graph; it never
    runs again, so it must not do work itself.  ``resources`` binds resource
    definitions by key; ``config`` is a default run config that a run's own
    config overrides key by key.
    """

    def decorate(func: Callable[[], Any]) -> PipelineDefinition:
        return _build_pipeline(
            func,
            name=name or func.__name__,
            description=description,
            resources=resources,
            config=config,
            tags=tags,
        )

    if fn is not None:
        return decorate(fn)
    return decorate
