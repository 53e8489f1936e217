"""What a solid declares it produces, and what it yields while it runs.

A solid with no ``outs`` has one output, ``result``: the engine's hot path.
``outs`` names several (``Out``), marks some optional (the branching case),
or declares a ``DynamicOut`` whose items fan out to mapped steps as they are
yielded.  Plain data: nothing here knows about the builder or the engine.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import attrs

from .._errors import AsyncdagError, DefinitionError
from ._sources import DEFAULT_OUTPUT

__all__ = [
    "DynamicOut",
    "DynamicOutput",
    "Out",
    "Output",
    "OutputError",
    "check_mapping_key",
    "check_outputs",
    "outputs_from_return",
    "resolve_output_name",
    "single_output_value",
]

_MAPPING_KEY = re.compile(r"[A-Za-z0-9_]+")


class OutputError(AsyncdagError):
    """A solid produced its outputs wrongly: a missing required one, an unknown name, a key clash."""


def _check_serializer(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """A serializer is checked where it is declared, not when the first value fails to store."""
    if value is None:
        return
    if isinstance(value, type):
        raise DefinitionError(
            f"{type(instance).__name__}(serializer={value.__name__}) got the class; pass an "
            f"instance: serializer={value.__name__}()"
        )
    missing = [
        member
        for member, ok in (
            ("name", isinstance(getattr(value, "name", None), str) and bool(value.name)),
            ("extension", isinstance(getattr(value, "extension", None), str)),
            ("dump", callable(getattr(value, "dump", None))),
            ("load", callable(getattr(value, "load", None))),
        )
        if not ok
    ]
    if missing:
        raise DefinitionError(
            f"{type(instance).__name__}(serializer={value!r}) is not a serializer: it lacks "
            f"{', '.join(missing)}; pass an instance such as asyncdag.outputs.JsonSerializer(), "
            "or subclass asyncdag.outputs.Serializer"
        )


@attrs.frozen
class Out:
    """One named output of a solid.

    ``is_required=False`` makes it optional: when the solid does not produce
    it, the steps that take it are skipped rather than failed (branching).
    ``serializer`` says how the value is written when the run stores its
    outputs (None: pickle); see :mod:`asyncdag.outputs`.
    """

    is_required: bool = attrs.field(default=True, kw_only=True)
    description: str | None = attrs.field(default=None, kw_only=True)
    serializer: Any = attrs.field(default=None, kw_only=True, validator=_check_serializer)


@attrs.frozen
class DynamicOut:
    """An output produced as many items, each with a mapping key, fanned out by ``.map()``.

    ``serializer`` says how each item is written when the run stores its outputs.
    """

    description: str | None = attrs.field(default=None, kw_only=True)
    serializer: Any = attrs.field(default=None, kw_only=True, validator=_check_serializer)

    @property
    def is_required(self) -> bool:
        return False  # zero items is a valid fan-out


@attrs.frozen
class Output:
    """A value for one named output, yielded by a generator solid (or returned)."""

    value: Any
    # None: the solid's only (non-dynamic) output.
    output_name: str | None = None


@attrs.frozen
class DynamicOutput:
    """One item of a ``DynamicOut``: the mapped steps for ``mapping_key`` start when it is yielded."""

    value: Any
    mapping_key: str = attrs.field(kw_only=True)
    # None: the solid's only DynamicOut.
    output_name: str | None = attrs.field(default=None, kw_only=True)


def resolve_output_name(
    step_key: str, outs: Mapping[str, Any], name: str | None, *, dynamic: bool
) -> str:
    """The output an item goes to; without a name, the only one of its kind."""
    kind = "DynamicOut" if dynamic else "static"
    candidates = [n for n, o in outs.items() if isinstance(o, DynamicOut) == dynamic]
    if name is None:
        if len(candidates) == 1:
            return candidates[0]
        raise OutputError(
            f"step {step_key!r} yielded an item without an output name, but it has "
            f"{len(candidates)} {kind} outputs {candidates}; pass output_name"
        )
    if name not in candidates:
        raise OutputError(
            f"step {step_key!r} yielded an item for output {name!r}, which is not one of its "
            f"{kind} outputs {candidates}"
        )
    return name


def single_output_value(step_key: str, value: Output) -> Any:
    """``return Output(v)`` from a solid with no ``outs``: ``v``, the value of its one output."""
    if value.output_name is not None and value.output_name != DEFAULT_OUTPUT:
        raise OutputError(
            f"step {step_key!r} returned Output(..., {value.output_name!r}) but has one output, "
            f"{DEFAULT_OUTPUT!r}; declare outs={{{value.output_name!r}: Out()}} to name it"
        )
    return value.value


def check_mapping_key(step_key: str, key: Any) -> str:
    """Mapping keys end up in step keys (``process[page_3]``), so they are kept plain."""
    if not isinstance(key, str) or not _MAPPING_KEY.fullmatch(key):
        raise OutputError(
            f"step {step_key!r} yielded a DynamicOutput with mapping_key {key!r}; a mapping key "
            "must be a non-empty string of letters, digits and _ (e.g. f'item_{i}')"
        )
    return key


def outputs_from_return(step_key: str, outs: Mapping[str, Any], value: Any) -> dict[str, Any]:
    """A multi-output solid's return value as ``{output name: value}``.

    One static output takes the value whole; several take a tuple in ``outs``
    order or a dict by name (a dict may leave optional outputs out).
    """
    static = [name for name, out in outs.items() if not isinstance(out, DynamicOut)]
    if isinstance(value, Output):
        return {resolve_output_name(step_key, outs, value.output_name, dynamic=False): value.value}
    if len(static) == 1:
        return {static[0]: value}
    if isinstance(value, dict) and set(value) <= set(static):
        return dict(value)
    if isinstance(value, tuple) and len(value) == len(static):
        return dict(zip(static, value, strict=True))
    raise OutputError(
        f"step {step_key!r} returned {type(value).__name__} {_short(value)}; a solid with "
        f"outputs {static} returns a tuple of {len(static)} values in that order, or a dict "
        "keyed by output name (leaving optional ones out), or yields Output(value, name)"
    )


def check_outputs(step_key: str, outs: Mapping[str, Any], produced: dict[str, Any]) -> None:
    """Fail the step when it produced an unknown output or left a required one out."""
    for name in produced:
        out = outs.get(name)
        if out is None or isinstance(out, DynamicOut):
            raise OutputError(
                f"step {step_key!r} produced output {name!r}, which is not one of its "
                f"outputs {[n for n, o in outs.items() if not isinstance(o, DynamicOut)]}"
            )
    for name, out in outs.items():
        if out.is_required and name not in produced:
            raise OutputError(
                f"step {step_key!r} did not produce its required output {name!r}; produce it, "
                f"or declare it Out(is_required=False) so that its dependents are skipped"
            )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
