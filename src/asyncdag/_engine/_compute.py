"""The part of running a solid that is the same in every process.

A launcher that runs a solid in this process and one that runs it on another
machine must agree on what the solid sees (its ``context``) and on what its
return value or yielded items mean (its outputs).  Both live here, as plain
functions over plain data, so a worker-side runner imports them and a solid
behaves the same wherever it runs.  Nothing here touches the event loop.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs

from .._definitions import DynamicOut, DynamicOutput, Out, Output, OutputError
from .._definitions._outputs import (
    check_mapping_key,
    check_outputs,
    outputs_from_return,
    resolve_output_name,
)
from ._context import SolidContext
from ._log import Emit, StepLog
from ._resources import Resources

__all__ = [
    "ContextData",
    "RemoteSolidContext",
    "check_outputs",
    "context_from_data",
    "outputs_from_value",
    "sort_item",
]

Outs = Mapping[str, Out | DynamicOut]


@attrs.frozen
class ContextData:
    """What a solid's ``context`` is made of, as plain data that pickles.

    ``trace_context`` carries the attempt's span in W3C trace-context form
    (``{"traceparent": ...}``; None when the run is not traced), so spans the
    solid starts elsewhere join the run's trace.
    """

    run_id: str
    pipeline_name: str
    step_key: str
    solid_name: str
    retry_number: int
    solid_config: Any
    tags: Mapping[str, str]
    run_config: Mapping[str, Any]
    mapping_key: str | None
    required_resources: frozenset[str]
    trace_context: Mapping[str, str] | None = None
    solid_tags: Mapping[str, str] = attrs.field(factory=dict)


class RemoteSolidContext(SolidContext):
    """A solid's ``context`` in another process: cancellation is a flag the launcher sets
    (a worker thread there is no anyio worker thread, so anyio cannot tell it)."""

    __slots__ = ("_cancel_requested",)

    def __init__(self, *, cancel_requested: Callable[[], bool], **fields: Any) -> None:
        super().__init__(**fields)
        self._cancel_requested = cancel_requested

    @property
    def is_cancel_requested(self) -> bool:
        return self._cancel_requested()

    def check_cancelled(self) -> None:
        if self._cancel_requested():
            from .._errors import StepCanceledError

            raise StepCanceledError(self.step_key)


def context_from_data(
    data: ContextData,
    *,
    emit: Emit,
    resources: Mapping[str, Any] | None = None,
    span: Any = None,
    cancel_requested: Callable[[], bool] | None = None,
) -> SolidContext:
    """The solid's ``context`` rebuilt from ``data`` where the solid runs.

    ``emit`` receives its log lines as LOG events (a worker forwards them to
    the run); ``resources`` holds the values of the resources it declared;
    ``cancel_requested`` answers ``context.is_cancel_requested`` (and makes
    ``context.check_cancelled()`` raise :class:`~asyncdag.StepCanceledError`).
    """
    fields = _context_fields(data, emit, resources, span)
    if cancel_requested is not None:
        return RemoteSolidContext(cancel_requested=cancel_requested, **fields)
    return SolidContext(**fields)


def _context_fields(
    data: ContextData, emit: Emit, resources: Mapping[str, Any] | None, span: Any
) -> dict[str, Any]:
    return dict(
        run_id=data.run_id,
        pipeline_name=data.pipeline_name,
        solid_name=data.solid_name,
        step_key=data.step_key,
        retry_number=data.retry_number,
        log=StepLog(emit, data.step_key, span, attempt=data.retry_number + 1),
        solid_config=data.solid_config,
        resources=Resources(
            resources if resources is not None else {},
            data.required_resources,
            f"solid {data.step_key!r}",
        ),
        tags=data.tags,
        run_config=data.run_config,
        span=span,
        mapping_key=data.mapping_key,
        solid_tags=data.solid_tags,
    )


def outputs_from_value(step_key: str, outs: Outs | None, value: Any) -> Any:
    """What a launcher returns for a solid that returned ``value``.

    With no ``outs`` (the single output ``result``) that is the value itself;
    otherwise ``{output name: value}``, checked against ``outs`` (a tuple in
    ``outs`` order, a dict by name, or an ``Output``), raising
    :class:`~asyncdag.OutputError` for what does not fit.
    """
    if outs is None:
        return value
    outputs = outputs_from_return(step_key, outs, value)
    check_outputs(step_key, outs, outputs)
    return outputs


def sort_item(
    step_key: str, outs: Outs, item: Any, outputs: dict[str, Any]
) -> tuple[str, str, Any] | None:
    """One item a generator solid yielded: an ``Output`` goes into ``outputs``; a
    ``DynamicOutput`` comes back as ``(output name, mapping key, value)`` for the
    engine to fan out; anything else is an :class:`~asyncdag.OutputError`.

    When the generator is done, ``check_outputs(step_key, outs, outputs)``
    tells whether it produced every required output.
    """
    if isinstance(item, DynamicOutput):
        name = resolve_output_name(step_key, outs, item.output_name, dynamic=True)
        return name, check_mapping_key(step_key, item.mapping_key), item.value
    if isinstance(item, Output):
        name = resolve_output_name(step_key, outs, item.output_name, dynamic=False)
        if name in outputs:
            raise OutputError(f"step {step_key!r} yielded output {name!r} twice")
        outputs[name] = item.value
        return None
    text = repr(item)
    raise OutputError(
        f"step {step_key!r} yielded {type(item).__name__} "
        f"{text if len(text) <= 40 else text[:37] + '...'}; a generator solid yields "
        "Output(value, name) or DynamicOutput(value, mapping_key=...)"
    )
