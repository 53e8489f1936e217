"""Solids: what a user declares, before anything runs.

A pipeline is built by calling solids inside its body, as in Dagster.  While
the body runs, a :class:`_GraphBuilder` is current (a context variable); each
solid call adds a :class:`Node` to it and returns an :class:`OutputHandle`
standing for the value that node will produce.  Passing a handle to another
call wires an edge.  Nothing here imports anyio: definitions are plain data.

``@pipeline`` is ``_pipeline``; input sources (``_sources``), handles
(``_handles``) and the graph builder (``_builder``) have modules of their own.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar, overload

import attrs

from .._errors import DefinitionError
from ._builder import _current_builder
from ._handles import CollectHandle, DynamicHandle, MultiOutputHandle, OutputHandle
from ._handles import _wrap_mapped as _wrap_mapped
from ._hooks import HookDefinition
from ._outputs import DynamicOut, Out
from ._retry import RetryPolicy
from ._sources import DEFAULT_OUTPUT
from ._sources import InputSource as InputSource

__all__ = ["InputDefinition", "SolidDefinition", "annotation_name", "solid"]

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
        """A readable name for the input's type: ``int``, ``list[str]``, ``Any`` when unannotated."""
        return annotation_name(self.annotation)


def annotation_name(annotation: Any) -> str:
    """A readable name for a type annotation (``Any`` when there is none)."""
    if annotation is inspect.Parameter.empty or annotation is inspect.Signature.empty:
        return "Any"
    if isinstance(annotation, str):
        return annotation
    if getattr(annotation, "__module__", None) == "builtins":
        return str(annotation.__name__)
    return str(annotation).replace("typing.", "")


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
