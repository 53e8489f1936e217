"""``context.log``: a logger-shaped facade whose messages become the run's LOG events.

Solids and resources both log through it; a resource's messages carry
``data["resource"]`` so a reader can tell them from a step's, and a step's
carry ``data["attempt"]``.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Protocol

from .._events import EventType, StepStartEvent, StepSuccessEvent

__all__ = ["Emit", "EmitStep", "StepLog", "formatting_emit_step"]


class Emit(Protocol):
    """How the engine records an event: :meth:`~asyncdag._engine.EventBus.emit`'s shape."""

    def __call__(
        self,
        type: EventType,
        /,
        *,
        step_key: str | None = None,
        level: int = logging.DEBUG,
        message: str = "",
        data: dict[str, Any] | None = None,
    ) -> Any: ...


class EmitStep(Protocol):
    """How the engine records the two events of every step attempt that succeeds
    (:meth:`~asyncdag._engine.EventBus.emit_step`'s shape): ``kind`` builds the
    message and data from ``attempt`` and ``since`` when they are read."""

    def __call__(
        self,
        kind: type[StepStartEvent] | type[StepSuccessEvent],
        step_key: str,
        timestamp: float,
        attempt: int,
        since: float,
    ) -> Any: ...


def formatting_emit_step(emit: Emit) -> EmitStep:
    """An :class:`EmitStep` for an ``emit`` that takes only formatted messages and data."""

    def emit_step(
        kind: type[StepStartEvent] | type[StepSuccessEvent],
        step_key: str,
        timestamp: float,
        attempt: int,
        since: float,
    ) -> None:
        event = kind("", 0, timestamp, kind.TYPE, step_key, logging.DEBUG, attempt, since)  # type: ignore[arg-type]
        emit(
            kind.TYPE,
            step_key=step_key,
            level=logging.DEBUG,
            message=event.message,
            data=event.data,
        )

    return emit_step


class StepLog:
    """``context.log``: messages become LOG events of the step (and span events when traced).

    It mirrors :class:`logging.Logger`'s methods so a solid can be handed to
    code that expects a logger.
    """

    __slots__ = ("_emit", "_extra", "_span", "_step_key")

    def __init__(
        self,
        emit: Emit,
        step_key: str | None,
        span: Any = None,
        *,
        attempt: int | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self._emit = emit
        self._step_key = step_key
        self._span = span
        if attempt is not None:
            extra = {"attempt": attempt, **(extra or {})}
        self._extra = extra

    def log(self, level: int, msg: object, *args: object, exc_info: Any = None) -> None:
        data: dict[str, Any] | None = dict(self._extra) if self._extra else None
        try:
            message = str(msg) % args if args else str(msg)
        except Exception as error:
            # As the logging module does with a record it cannot format: say so, with the
            # raw message and arguments, and let the step go on.
            level = max(level, logging.WARNING)
            message, data = _formatting_error(error, msg, args, data)
        if exc_info:
            exc = exc_info if isinstance(exc_info, BaseException) else sys.exc_info()[1]
            if exc is not None:
                import traceback

                data = dict(data or {})
                data["traceback"] = "".join(traceback.format_exception(exc))
        span = self._span
        if span is not None:
            ctx = span.get_span_context()
            data = dict(data or {})
            data["trace_id"] = format(ctx.trace_id, "032x")
            data["span_id"] = format(ctx.span_id, "016x")
            span.add_event(
                "log",
                {"log.severity": logging.getLevelName(level), "log.message": message},
            )
        self._emit(EventType.LOG, step_key=self._step_key, level=level, message=message, data=data)

    def debug(self, msg: object, *args: object) -> None:
        self.log(logging.DEBUG, msg, *args)

    def info(self, msg: object, *args: object) -> None:
        self.log(logging.INFO, msg, *args)

    def warning(self, msg: object, *args: object) -> None:
        self.log(logging.WARNING, msg, *args)

    warn = warning

    def error(self, msg: object, *args: object, exc_info: Any = None) -> None:
        self.log(logging.ERROR, msg, *args, exc_info=exc_info)

    def exception(self, msg: object, *args: object) -> None:
        self.log(logging.ERROR, msg, *args, exc_info=True)

    def critical(self, msg: object, *args: object) -> None:
        self.log(logging.CRITICAL, msg, *args)


def _formatting_error(
    exc: Exception, msg: object, args: tuple[object, ...], data: dict[str, Any] | None
) -> tuple[str, dict[str, Any]]:
    """The LOG event for a log call whose message could not be formatted."""
    from .._events import ErrorInfo

    raw_args = [_safe_repr(arg) for arg in args]
    message = (
        f"Logging error: {type(exc).__name__}: {_safe_str(exc)} "
        f"(message: {_safe_repr(msg)}, arguments: ({', '.join(raw_args)}{',' if len(raw_args) == 1 else ''}))"
    )
    data = dict(data or {})
    data["log_error"] = {
        "msg": _safe_repr(msg),
        "args": raw_args,
        "error": ErrorInfo.from_exception(exc).to_dict(),
    }
    return message, data


def _safe_repr(value: object) -> str:
    try:
        return repr(value)
    except Exception as exc:
        return f"<{type(value).__name__} whose repr raised {type(exc).__name__}>"


def _safe_str(value: object) -> str:
    try:
        return str(value)
    except Exception:
        return _safe_repr(value)
