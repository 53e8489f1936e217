"""A run's events as :mod:`logging` records, and the Dagster-style console when one is asked for.

asyncdag is a library first: a run logs to the ``asyncdag`` logger and installs
no handler, so a web service awaiting a hundred runs keeps its stderr to itself
(the convention of the :mod:`logging` HOWTO's "Configuring Logging for a
Library").  Applications route, filter or silence the events as they do any
other library's logs (``logging.getLogger("asyncdag").setLevel(logging.INFO)``
plus a handler of theirs).

A console is asked for with the run option ``console=True`` (the blocking
``execute_pipeline``'s default, so ``python hello_world.py`` shows what happened),
or for every run of a process with the environment variable
``ASYNCDAG_LOG_LEVEL`` (``DEBUG``, ``INFO``, ``WARNING``, ``ERROR`` or a number),
which also sets the console's level (default DEBUG, Dagster's).  The console
prints on stderr only when the application configured no logging for
``asyncdag`` (no handler on it or its ancestors): otherwise the events go to
the application's handlers alone, never twice.

Nothing is built for an event no handler would print: which handlers exist and
their levels are looked up once when the run starts, and the event bus skips
events below that level without calling the listener, so a quiet run costs the
engine nothing per step.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable

from .._errors import AsyncdagError
from .._events import Event, EventType

__all__ = [
    "LEVEL_VARIABLE",
    "LOGGER_NAME",
    "ConsoleFormatter",
    "console_level",
    "install_console_handler",
    "run_log_listener",
]

LOGGER_NAME = "asyncdag"
LEVEL_VARIABLE = "ASYNCDAG_LOG_LEVEL"

_COLORS = {
    logging.DEBUG: "\x1b[34m",
    logging.INFO: "\x1b[32m",
    logging.WARNING: "\x1b[33m",
    logging.ERROR: "\x1b[31m",
    logging.CRITICAL: "\x1b[1;31m",
}
_RESET = "\x1b[0m"


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


def console_level() -> int | None:
    """The level ``ASYNCDAG_LOG_LEVEL`` asks for; None when it is unset or empty."""
    raw = os.environ.get(LEVEL_VARIABLE, "").strip()
    if not raw:
        return None
    if raw.isdigit():
        return int(raw)
    level = logging.getLevelName(raw.upper())
    if not isinstance(level, int):
        raise AsyncdagError(
            f"{LEVEL_VARIABLE}={raw!r} is not a logging level; use DEBUG, INFO, WARNING, "
            "ERROR, CRITICAL or a number, or unset it for no console"
        )
    return level


def _stderr_handler() -> logging.Handler:
    # sys.stderr as it is now, not at import: a test's capture, a host that redirected it.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(ConsoleFormatter(color=sys.stderr.isatty()))
    return handler


def install_console_handler(level: int | None = None) -> None:
    """Give the ``asyncdag`` logger the Dagster-style stderr console, for a process we own.

    For shells that are the application (``asyncdag ui``), never called by a run.
    Does nothing when the application already set up logging for ``asyncdag``.
    ``level``: default ``ASYNCDAG_LOG_LEVEL``, else DEBUG.
    """
    logger = logging.getLogger(LOGGER_NAME)
    if _handler_level(logger) is not None:
        return
    logger.addHandler(_stderr_handler())
    # Our handler is the one that prints: a root handler added later must not print twice.
    logger.propagate = False
    if logger.level == logging.NOTSET:
        env = console_level()
        logger.setLevel(level if level is not None else env if env is not None else logging.DEBUG)


def _handler_level(logger: logging.Logger) -> int | None:
    """The lowest level a handler of ``logger`` or its ancestors prints; None: no such handler.

    ``NullHandler`` prints nothing and does not count; nor does :data:`logging.lastResort`,
    which would print a library's warnings to a host that configured nothing.
    """
    lowest: int | None = None
    current: logging.Logger | None = logger
    while current is not None:
        for handler in current.handlers:
            if isinstance(handler, logging.NullHandler):
                continue
            lowest = handler.level if lowest is None else min(lowest, handler.level)
        if not current.propagate:
            break
        current = current.parent
    return lowest


def _logger_level(logger: logging.Logger) -> int | None:
    """The lowest level at which a record of ``logger`` reaches a handler that prints."""
    if logger.disabled:
        return None
    lowest = _handler_level(logger)
    if lowest is None:
        return None
    level = max(lowest, logger.getEffectiveLevel(), logger.manager.disable + 1)
    return level if level <= logging.CRITICAL else None


def run_log_listener(
    pipeline_name: str, *, console: bool | None
) -> tuple[Callable[[Event], None], int] | None:
    """A bus listener turning a run's events into log records, and the lowest level it wants.

    None when nothing would print them, so the run pays nothing per event.
    ``console``: True prints on stderr when the application configured no logging;
    None does so only when ``ASYNCDAG_LOG_LEVEL`` is set; False never does.
    """
    logger = logging.getLogger(LOGGER_NAME)
    routed = _logger_level(logger)
    handle: Callable[[logging.LogRecord], object]
    is_enabled: Callable[[int], bool] | None
    if routed is not None:
        # The application's handlers decide; a level raised mid-run is honoured below.
        min_level = routed
        handle = logger.handle
        is_enabled = logger.isEnabledFor
    else:
        env_level = console_level() if console is not False else None
        if not console and env_level is None:
            return None
        min_level = env_level if env_level is not None else logging.DEBUG
        handle = _stderr_handler().handle
        is_enabled = None
    make_record = logger.makeRecord

    def listener(event: Event) -> None:
        level = event.level
        if is_enabled is not None and not is_enabled(level):
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
