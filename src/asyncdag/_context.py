"""The ``context`` a solid receives: its logger, config, resources and the run it belongs to."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Mapping
from typing import Any

from ._events import EventType
from ._resources import Resources

__all__ = ["SolidContext", "StepLog"]

Emit = Callable[[EventType, str | None, int, str, dict[str, Any] | None], Any]


class StepLog:
    """``context.log``: messages become LOG events of the step (and span events when traced).

    It mirrors :class:`logging.Logger`'s methods so a solid can be handed to
    code that expects a logger.
    """

    __slots__ = ("_emit", "_span", "_step_key")

    def __init__(self, emit: Emit, step_key: str | None, span: Any = None) -> None:
        self._emit = emit
        self._step_key = step_key
        self._span = span

    def log(self, level: int, msg: object, *args: object, exc_info: Any = None) -> None:
        message = str(msg) % args if args else str(msg)
        data: dict[str, Any] | None = None
        if exc_info:
            exc = exc_info if isinstance(exc_info, BaseException) else sys.exc_info()[1]
            if exc is not None:
                import traceback

                data = {"traceback": "".join(traceback.format_exception(exc))}
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
        self._emit(EventType.LOG, self._step_key, level, message, data)

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


class SolidContext:
    """What a solid's ``context`` parameter receives for one attempt of one step."""

    __slots__ = (
        "log",
        "pipeline_name",
        "resources",
        "retry_number",
        "run_config",
        "run_id",
        "solid_config",
        "solid_name",
        "span",
        "step_key",
        "tags",
    )

    def __init__(
        self,
        *,
        run_id: str,
        pipeline_name: str,
        solid_name: str,
        step_key: str,
        retry_number: int,
        log: StepLog,
        solid_config: Any = None,
        resources: Resources | None = None,
        tags: Mapping[str, str] | None = None,
        run_config: Mapping[str, Any] | None = None,
        span: Any = None,
    ) -> None:
        self.run_id = run_id
        self.pipeline_name = pipeline_name
        self.solid_name = solid_name
        self.step_key = step_key
        self.retry_number = retry_number
        self.log = log
        self.solid_config = solid_config
        self.resources = (
            resources
            if resources is not None
            else Resources({}, frozenset(), f"solid {solid_name!r}")
        )
        self.tags = dict(tags or {})
        self.run_config = dict(run_config or {})
        self.span = span

    @property
    def is_cancel_requested(self) -> bool:
        """True once the step is cancelled or timed out.

        A sync solid runs in a worker thread, which cannot be interrupted:
        long loops should check this (or call :meth:`check_cancelled`) and
        return early.  In an async solid cancellation arrives at the next
        ``await`` by itself and this is always False while the solid runs.
        """
        import anyio.from_thread  # only sync solids ask, from their worker thread

        try:
            anyio.from_thread.check_cancelled()
        except RuntimeError:
            return False  # not in a worker thread: the event loop delivers cancellation itself
        except BaseException:  # the backend's cancellation exception (not an Exception subclass)
            return True
        return False

    def check_cancelled(self) -> None:
        """In a sync solid, raise the cancellation exception if the step was cancelled or timed out."""
        import anyio.from_thread  # only sync solids ask, from their worker thread

        try:
            anyio.from_thread.check_cancelled()
        except RuntimeError:
            return

    def __repr__(self) -> str:
        return (
            f"<SolidContext step={self.step_key!r} run={self.run_id!r} retry={self.retry_number}>"
        )
