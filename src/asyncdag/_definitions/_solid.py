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

import functools
import inspect
import json
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, overload

import attrs

from .._errors import DefinitionError
from ._builder import _current_builder
from ._handles import CollectHandle, DynamicHandle, MultiOutputHandle, OutputHandle
from ._handles import _wrap_mapped as _wrap_mapped
from ._hooks import HookDefinition
from ._outputs import DynamicOut, Out
from ._resources import resource_keys
from ._retry import RetryPolicy
from ._sources import DEFAULT_OUTPUT
from ._sources import InputSource as InputSource

if TYPE_CHECKING:
    from ._configured import Configured

__all__ = [
    "DASK_RESOURCES_TAG",
    "EXECUTORS",
    "InputDefinition",
    "SolidDefinition",
    "annotation_name",
    "solid",
]

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
    if isinstance(annotation, type) and annotation.__module__ == "builtins":
        return annotation.__name__  # int, not <class 'int'>; list[int] is not a type
    return str(annotation).replace("typing.", "")


# --- solids ----------------------------------------------------------------------------------


def _freeze_tags(value: Mapping[str, Any] | None) -> Mapping[str, str]:
    """Tags are text; a mapping or list value (``{"dask/resources": {"GPU": 1}}``) becomes JSON."""
    return {
        str(k): json.dumps(v) if isinstance(v, Mapping | list | tuple) else str(v)
        for k, v in (value or {}).items()
    }


#: Where a solid may ask to run (``@solid(executor=...)``); None: wherever the run's steps run.
EXECUTORS = ("local",)
#: The tag a solid uses to ask for a Dask worker's abstract resources: {"GPU": 1}.
DASK_RESOURCES_TAG = "dask/resources"


def _check_executor(name: str, executor: str | None) -> None:
    if executor is not None and executor not in EXECUTORS:
        raise DefinitionError(
            f"solid {name!r}: executor={executor!r} is not known; use executor='local' to pin "
            "the solid to the driver process, or leave it out to run where the run's steps run"
        )


def _check_dask_resources(name: str, tags: Mapping[str, Any] | None) -> None:
    """``tags={"dask/resources": {"GPU": 1}}``: resource names to non-negative amounts."""
    wanted = (tags or {}).get(DASK_RESOURCES_TAG)
    if wanted is None:
        return
    if not isinstance(wanted, Mapping) or not all(
        isinstance(k, str)
        and isinstance(v, int | float)
        and not isinstance(v, bool)
        and v >= 0
        and v == v
        for k, v in wanted.items()
    ):
        raise DefinitionError(
            f"solid {name!r}: tag {DASK_RESOURCES_TAG!r} must map resource names to amounts "
            f'>= 0, like {{"GPU": 1}}; got {wanted!r}'
        )


def copy_function_identity(definition: Any, fn: Callable[..., Any]) -> None:
    """Give a definition its function's ``__name__``, ``__doc__``, ``__wrapped__``...

    What ``functools.update_wrapper`` does, for a frozen attrs instance (which refuses
    ``setattr``): docs tools, ``help()`` and ``inspect.signature`` then see the function.
    The function's ``__dict__`` is not copied: it could overwrite the definition's fields.
    """
    for attribute in functools.WRAPPER_ASSIGNMENTS:
        try:
            value = getattr(fn, attribute)
        except AttributeError:
            continue
        object.__setattr__(definition, attribute, value)
    object.__setattr__(definition, "__wrapped__", fn)


# Not slotted: the instance carries the function's __name__, __doc__ and __wrapped__, which
# slots cannot hold (__doc__ and __module__ would clash with the class's own).
@attrs.frozen(eq=False, slots=False)
class SolidDefinition:
    """A unit of computation: a function plus how it should be run.

    Calling it inside a ``@pipeline`` body adds a node; calling it anywhere
    else calls the function directly, so solids stay unit-testable: a solid
    taking a context is given one from ``build_solid_context(...)``.
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
    priority: int = 0
    tags: Mapping[str, str] = attrs.field(factory=dict, converter=_freeze_tags)
    config_schema: Any = None
    required_resources: frozenset[str] = attrs.field(factory=frozenset, converter=resource_keys)
    # None: the single output ``result`` (the common case, kept on the fast path).
    outs: Mapping[str, Out | DynamicOut] | None = None
    is_generator: bool = False
    is_async_generator: bool = False
    # None: wherever the run's steps run; "local": always in the process that drives the run.
    executor: str | None = None
    # Set on a copy made by ``configured()``: how its config becomes the original's.
    config_mapping: Configured | None = None

    def __attrs_post_init__(self) -> None:
        copy_function_identity(self, self.fn)

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

    def tag(self, tags: Mapping[str, Any]) -> _PendingInvocation:
        """Tag the next node made from this solid: ``fetch.tag({"team": "data"})(url)``.

        The call's tags overlay the solid's own (``@solid(tags=...)``) for that node only.
        """
        return _PendingInvocation(self).tag(tags)

    def with_retry_policy(self, policy: RetryPolicy) -> _PendingInvocation:
        """Give the next node made from this solid its own retry policy.

        It wins over the solid's ``retry_policy=`` and the pipeline's ``solid_retry_policy=``.
        """
        return _PendingInvocation(self).with_retry_policy(policy)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        builder = _current_builder.get()
        if builder is None:
            if self.takes_context:
                args, kwargs = self._with_bound_context(args, kwargs)
            return self.fn(*args, **kwargs)
        return _PendingInvocation(self)(*args, **kwargs)

    def _with_bound_context(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """A direct call's context, bound to this solid when it came from build_solid_context
        (its config checked, its resources those declared); anything else is passed as is."""
        if args:
            context = args[0]
        elif "context" in kwargs:
            context = kwargs["context"]
        else:
            raise DefinitionError(
                f"solid {self.name!r} takes a context: call it as "
                f"{self.name}(build_solid_context(...), ...) outside a pipeline"
            )
        bind = getattr(context, "_bind_to_solid", None)
        if bind is None:
            return args, kwargs
        if args:
            return (bind(self), *args[1:]), kwargs
        return args, {**kwargs, "context": bind(self)}

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
    tags: Mapping[str, str] | None = None
    retry_policy: RetryPolicy | None = None

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

    def tag(self, tags: Mapping[str, Any]) -> _PendingInvocation:
        if not isinstance(tags, Mapping):
            raise DefinitionError(
                f"solid {self.solid.name!r}: .tag() takes a dict of tags, got {tags!r}"
            )
        return attrs.evolve(self, tags={**(self.tags or {}), **_freeze_tags(tags)})

    def with_retry_policy(self, policy: RetryPolicy) -> _PendingInvocation:
        if not isinstance(policy, RetryPolicy):
            raise DefinitionError(
                f"solid {self.solid.name!r}: .with_retry_policy() takes a RetryPolicy, "
                f"got {policy!r}"
            )
        return attrs.evolve(self, retry_policy=policy)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        builder = _current_builder.get()
        if builder is None:
            raise DefinitionError(
                f"{self.solid.name}.alias/after/with_hooks/tag/with_retry_policy(...)(...) only "
                "makes sense inside a @pipeline body; call the solid directly to run its function"
            )
        return builder.add(
            self.solid,
            args,
            kwargs,
            alias=self.alias,
            after=self.after_nodes,
            hooks=self.hooks,
            tags=self.tags,
            retry_policy=self.retry_policy,
        )


def _resolved_annotations(fn: Callable[..., Any]) -> dict[str, Any]:
    """The function's annotations as types, also under ``from __future__ import annotations``.

    Such a module stores every annotation as a string; run config checks input
    values against their types, so they are resolved here, once, the way
    ``typing.get_type_hints`` does.  A name that cannot be resolved (imported only
    under ``TYPE_CHECKING``, defined after the solid) keeps its string: that input
    is then unchecked, as any input of a type config cannot describe.
    """
    try:
        return typing.get_type_hints(fn)
    except Exception:  # one unresolvable name fails them all: resolve one by one
        pass
    resolved: dict[str, Any] = {}
    namespace = getattr(fn, "__globals__", {})
    for key, annotation in getattr(fn, "__annotations__", {}).items():
        if isinstance(annotation, str):
            try:
                resolved[key] = eval(annotation, namespace)  # what get_type_hints does
                continue
            except Exception:
                pass  # unresolvable: keep the string
        resolved[key] = annotation
    return resolved


def _input_defs_of(fn: Callable[..., Any], name: str) -> tuple[bool, tuple[InputDefinition, ...]]:
    params = list(inspect.signature(fn).parameters.values())
    hints = _resolved_annotations(fn) if any(isinstance(p.annotation, str) for p in params) else {}
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
                annotation=hints.get(param.name, param.annotation),
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
    priority: int = 0,
    tags: Mapping[str, Any] | None = None,
    config_schema: Any = None,
    required_resources: Iterable[str] | None = None,
    outs: Mapping[str, Out | DynamicOut] | None = None,
    executor: str | None = None,
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
    priority: int = 0,
    tags: Mapping[str, Any] | None = None,
    config_schema: Any = None,
    required_resources: Iterable[str] | None = None,
    outs: Mapping[str, Out | DynamicOut] | None = None,
    executor: str | None = None,
) -> SolidDefinition | Callable[[F], SolidDefinition]:
    """Declare a unit of computation, sync or async.

    A first parameter named ``context`` receives the step's context; the
    others are inputs, wired by calling the solid inside a ``@pipeline`` body.
    ``timeout`` is in seconds per attempt; ``pool`` names a concurrency pool
    whose limit the run sets (``concurrency_limits={"http": 10}``).
    ``priority`` (an int, default 0) orders steps that are ready but waiting for a
    slot (the run's ``max_concurrency`` or their pool): higher starts first, equal
    ones in the order they became ready.  Give a critical-path step a priority so
    it is not queued behind 40 page fetches.

    ``outs`` declares named outputs (``{"ok": Out(), "bad": Out(is_required=False)}``):
    return a tuple in that order or a dict, or yield ``Output(value, name)`` from a
    (sync or async) generator.  A ``DynamicOut`` is fed by yielding
    ``DynamicOutput(value, mapping_key=...)``; each item's mapped steps start at once.

    ``executor="local"`` pins the solid to the process that drives the run, even
    when the run's other steps go to a Dask cluster (for something that only
    lives there: a GUI, a local file, an in-memory cache).  On Dask, a solid asks
    for worker resources with ``tags={"dask/resources": {"GPU": 1}}``.
    """

    def decorate(func: Callable[..., Any]) -> SolidDefinition:
        solid_name = name or func.__name__
        if not solid_name.isidentifier():
            raise DefinitionError(
                f"solid name {solid_name!r} is not a valid identifier; use letters, digits and _"
            )
        if timeout is not None and timeout <= 0:
            raise DefinitionError(f"solid {solid_name!r}: timeout must be > 0 seconds")
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise DefinitionError(
                f"solid {solid_name!r}: priority must be an int (higher starts first), "
                f"got {priority!r}"
            )
        if retry_policy is not None and not isinstance(retry_policy, RetryPolicy):
            raise DefinitionError(
                f"solid {solid_name!r}: retry_policy must be a RetryPolicy, got {retry_policy!r}"
            )
        _check_executor(solid_name, executor)
        _check_dask_resources(solid_name, tags)
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
            priority=priority,
            tags=tags,
            config_schema=config_schema,
            required_resources=required_resources,
            outs=checked_outs,
            is_generator=is_gen,
            is_async_generator=is_async_gen,
            executor=executor,
        )
        return definition

    if fn is not None:
        return decorate(fn)
    return decorate
