"""Printing a run's events to the terminal, the way Dagster's console logger does.

Events go through the standard :mod:`logging` logger ``"asyncdag"``, so
applications route, filter or silence them as they do any other library's
logs (``logging.getLogger("asyncdag").setLevel(logging.WARNING)``).  When the
application has configured no logging at all, we install one stderr handler so
that ``python hello_world.py`` shows what happened; the level then comes from
``ASYNCDAG_LOG_LEVEL`` (default DEBUG, Dagster's default).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable

from .._events import Event, EventType

__all__ = ["ConsoleFormatter", "console_listener", "install_default_handler"]

LOGGER_NAME = "asyncdag"

_COLORS = {
    logging.DEBUG: "\x1b[34m",
    logging.INFO: "\x1b[32m",
    logging.WARNING: "\x1b[33m",
    logging.ERROR: "\x1b[31m",
    logging.CRITICAL: "\x1b[1;31m",
}
_RESET = "\x1b[0m"

_installed = False


class ConsoleFormatter(logging.Formatter):
    """``time - asyncdag - LEVEL - pipeline - run_id - step - EVENT_TYPE - message``."""

    def __init__(self, *, color: bool = False) -> None:
        super().__init__()
        self.color = color

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(record.created))
        level = record.levelname
        if self.color:
            level = f"{_COLORS.get(record.levelno, '')}{level}{_RESET}"
        parts = [stamp, record.name.split(".")[0], level]
        for attr in ("pipeline_name", "run_id", "step_key", "event_type"):
            value = getattr(record, attr, None)
            if value is not None:
                parts.append(str(value))
        line = " - ".join([*parts, record.getMessage()])
        if record.exc_text:
            line = f"{line}\n{record.exc_text}"
        traceback_text = getattr(record, "error_traceback", None)
        if traceback_text:
            line = f"{line}\n{traceback_text.rstrip()}"
        return line


def install_default_handler() -> None:
    """Give the ``asyncdag`` logger a stderr handler unless the application set up logging."""
    global _installed
    if _installed:
        return
    _installed = True
    logger = logging.getLogger(LOGGER_NAME)
    if logger.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(ConsoleFormatter(color=sys.stderr.isatty()))
    logger.addHandler(handler)
    logger.propagate = False
    if logger.level == logging.NOTSET:
        level = os.environ.get("ASYNCDAG_LOG_LEVEL", "DEBUG").upper()
        logger.setLevel(logging.getLevelName(level) if level.isalpha() else int(level))


def console_listener(pipeline_name: str) -> tuple[Callable[[Event], None], int] | None:
    """A bus listener that logs events, and the lowest level it wants; None when the logger is silent.

    The bus skips events below that level without calling the listener, so a
    quiet logger costs the engine nothing per step.
    """
    logger = logging.getLogger(LOGGER_NAME)
    if logger.disabled or not logger.isEnabledFor(logging.CRITICAL):
        return None
    min_level = logger.getEffectiveLevel()
    is_enabled = logger.isEnabledFor
    make_record = logger.makeRecord
    handle = logger.handle

    def listener(event: Event) -> None:
        level = event.level
        if not is_enabled(level):
            return
        data = event.data or {}
        extra = {
            "pipeline_name": pipeline_name,
            "run_id": event.run_id,
            "step_key": event.step_key,
            "event_type": event.type.value if event.type is not EventType.LOG else None,
            "asyncdag_event": event,
            "trace_id": data.get("trace_id"),
            "span_id": data.get("span_id"),
        }
        error = data.get("error")
        if error and level >= logging.ERROR:
            extra["error_traceback"] = error.get("traceback")
        elif "traceback" in data:
            extra["error_traceback"] = data["traceback"]
        record = make_record(
            LOGGER_NAME, level, "asyncdag", 0, event.message, (), None, extra=extra
        )
        record.created = event.timestamp
        handle(record)

    return listener, min_level
