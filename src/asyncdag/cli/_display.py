"""What a person sees while a run goes on and after it: log lines, live progress, summaries.

Everything prints through one rich console, so log lines scroll above the live
progress line instead of tearing it.  On a terminal there is colour and a live
line; in a pipe or file the same information comes as plain text.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from asyncdag._events import Event, EventType, StepStatus
from asyncdag._workspace import FINAL_STEP_EVENTS, StepSummary

from .._api._console import LOGGER_NAME, console_level

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.table import Table

__all__ = [
    "STATUS_STYLES",
    "ConsoleLogHandler",
    "RunProgress",
    "format_duration",
    "install_log_handler",
    "print_steps",
    "silence_logs",
    "steps_table",
]


LEVEL_STYLES = {
    logging.DEBUG: "blue",
    logging.INFO: "green",
    logging.WARNING: "yellow",
    logging.ERROR: "red",
    logging.CRITICAL: "bold red",
}

STATUS_STYLES = {
    "SUCCESS": "green",
    "FAILURE": "red",
    "CANCELED": "yellow",
    "SKIPPED": "dim",
    "RUNNING": "cyan",
    "RETRYING": "yellow",
    "STARTED": "cyan",
    "PENDING": "dim",
    "NOT_STARTED": "dim",
}


# -- log lines ---------------------------------------------------------------------------


class ConsoleLogHandler(logging.Handler):
    """Prints ``asyncdag`` log records as one line each, the level coloured, on a rich console.

    In a pipe or a file (no terminal) the line is written as plain text without
    going through rich: the same characters, at a fraction of the cost, which
    is what lets a 100,000-step run log its 200,000 lines in seconds.
    """

    def __init__(self, console: Console) -> None:
        super().__init__()
        from rich.control import strip_control_codes

        self.console = console
        # Asked once: rich's is_terminal calls isatty() at every read, a system call a line.
        self._terminal = console.is_terminal
        self._strip = strip_control_codes
        self._second = -1
        self._stamp = ""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if self._terminal:
                self.console.print(self.render(record), soft_wrap=True)
                return
            line = "".join(text for text, _ in self._parts(record))
            self.console.file.write(self._strip(line) + "\n")
        except Exception:
            self.handleError(record)

    def render(self, record: logging.LogRecord) -> RenderableType:
        from rich.text import Text

        text = Text()
        for part, style in self._parts(record):
            text.append(part, style=style)
        return text

    def _parts(self, record: logging.LogRecord) -> list[tuple[str, str]]:
        second = int(record.created)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        parts = [
            (self._stamp, "dim"),
            (" ", ""),
            (f"{record.levelname:<7}", LEVEL_STYLES.get(record.levelno, "")),
        ]
        step_key = getattr(record, "step_key", None)
        if step_key:
            parts += [(" ", ""), (str(step_key), "cyan")]
        event_type = getattr(record, "event_type", None)
        if event_type:
            parts += [(" ", ""), (str(event_type), "dim")]
        elif not hasattr(record, "asyncdag_event") and record.name != LOGGER_NAME:
            parts.append((f" {record.name}", "dim"))
        parts.append((" - ", ""))
        parts.append((record.getMessage(), "red" if record.levelno >= logging.ERROR else ""))
        extra = getattr(record, "error_traceback", None)
        if not extra and record.exc_info:
            extra = logging.Formatter().formatException(record.exc_info)
        if extra:
            parts += [("\n", ""), (str(extra).rstrip(), "dim")]
        return parts


def _logger() -> logging.Logger:
    return logging.getLogger(LOGGER_NAME)


def _reset_handlers(logger: logging.Logger) -> None:
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    # The library installs its own stderr handler only when "asyncdag" has none; ours is it,
    # and not propagating keeps a root handler from printing every line a second time.
    logger.propagate = False


def install_log_handler(console: Console) -> ConsoleLogHandler:
    """Route the ``asyncdag`` logger (and its children) to ``console`` only."""
    logger = _logger()
    _reset_handlers(logger)
    handler = ConsoleLogHandler(console)
    logger.addHandler(handler)
    level = console_level()  # one reading of ASYNCDAG_LOG_LEVEL for the library and the CLI
    logger.setLevel(logging.DEBUG if level is None else level)
    return handler


def silence_logs() -> None:
    """For ``--json``: the events themselves are the output, so log lines would be noise."""
    logger = _logger()
    _reset_handlers(logger)
    logger.addHandler(logging.NullHandler())
    logger.disabled = True


# -- steps, from an event log ---------------------------------------------------------


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.2f}s"
    minutes, rest = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{rest:02d}s" if hours else f"{minutes}m{rest:02d}s"


def steps_table(rows: Sequence[StepSummary]) -> Table:
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("step")
    table.add_column("status")
    table.add_column("attempts", justify="right")
    table.add_column("duration", justify="right")
    table.add_column("note", overflow="fold")
    for row in rows:
        table.add_row(
            Text(row.key),  # Text, not markup: a step key or error may hold "[...]"
            Text(row.status, style=STATUS_STYLES.get(row.status, "")),
            str(row.attempts),
            format_duration(row.duration),
            Text(row.note),
        )
    return table


#: Runs with at most this many steps get a table of every step; bigger ones a summary.
TABLE_LIMIT = 50
#: Rows of unsuccessful (and of slowest) steps a summary shows.
SHOWN = 20


def print_steps(console: Console, rows: Sequence[StepSummary], *, see_all: str) -> None:
    """Every step in a table, or past :data:`TABLE_LIMIT` a summary: how many steps ended
    how, those that did not succeed and the slowest (a table of 100,000 rows took rich
    minutes and helped no one); ``see_all`` is the command that lists every step."""
    from collections import Counter

    from rich.text import Text

    if not rows:
        console.print(Text("no steps ran", style="dim"))
        return
    if len(rows) <= TABLE_LIMIT:
        console.print(steps_table(rows))
        return
    counts = Counter(row.status for row in rows)
    line = Text(f"{len(rows):,} steps: ")
    for n, (status, count) in enumerate(counts.most_common()):
        line.append(", " if n else "")
        line.append(f"{count:,} {status}", style=STATUS_STYLES.get(status, ""))
    console.print(line)
    unsuccessful = [row for row in rows if row.status != "SUCCESS"]
    if unsuccessful:
        console.print()
        console.print(Text("steps that did not succeed:", style="bold"))
        console.print(steps_table(unsuccessful[:SHOWN]))
        if len(unsuccessful) > SHOWN:
            console.print(f"... and {len(unsuccessful) - SHOWN:,} more", style="dim")
    timed = [row for row in rows if row.duration is not None]
    slowest = sorted(timed, key=lambda row: row.duration or 0.0, reverse=True)[:5]
    if slowest:
        console.print()
        console.print(Text("slowest steps:", style="bold"))
        console.print(steps_table(slowest))
    console.print(f"every step: {see_all}", style="dim", markup=False)


# -- live progress -----------------------------------------------------------------------


class RunProgress:
    """Counts steps as events arrive; renders one status line for rich's ``Live``.

    Events may arrive from worker threads (a sync solid logging), and rich
    refreshes from its own thread, so the counters sit behind a lock.
    """

    def __init__(self, pipeline_name: str, total: int) -> None:
        self.pipeline_name = pipeline_name
        self.total = total
        self._lock = threading.Lock()
        self._running: dict[str, None] = {}
        self._done = 0
        self._failed = 0
        self._skipped = 0
        self._canceled = 0
        self._started = time.monotonic()
        self._note = ""

    def on_event(self, event: Event) -> None:
        key = event.step_key
        with self._lock:
            if event.type is EventType.RUN_START:
                self.total = int((event.data or {}).get("step_count", self.total))
            elif event.type is EventType.STEP_START and key is not None:
                self._running[key] = None
            elif event.type in FINAL_STEP_EVENTS and key is not None:
                self._running.pop(key, None)
                status = FINAL_STEP_EVENTS[event.type]
                if status is StepStatus.SUCCESS:
                    self._done += 1
                elif status is StepStatus.FAILURE:
                    self._failed += 1
                elif status is StepStatus.SKIPPED:
                    self._skipped += 1
                else:
                    self._canceled += 1
            elif event.type is EventType.STEP_UP_FOR_RETRY and key is not None:
                self._running.pop(key, None)
            elif event.type is EventType.RUN_CANCELING:
                self._note = "canceling..."

    def note(self, text: str) -> None:
        with self._lock:
            self._note = text

    def __rich__(self) -> RenderableType:
        from rich.text import Text

        with self._lock:
            running = list(self._running)
            done, failed, skipped, canceled = (
                self._done,
                self._failed,
                self._skipped,
                self._canceled,
            )
            note = self._note
        elapsed = time.monotonic() - self._started
        text = Text()
        text.append(f"{self.pipeline_name} ", style="bold")
        text.append(f"{done}/{self.total} done", style="green")
        text.append(f"  {len(running)} running", style="cyan")
        text.append(f"  {failed} failed", style="red" if failed else "dim")
        if skipped:
            text.append(f"  {skipped} skipped", style="dim")
        if canceled:
            text.append(f"  {canceled} canceled", style="yellow")
        text.append(f"  {format_duration(elapsed)}", style="dim")
        if note:
            text.append(f"  {note}", style="yellow")
        if running:
            shown = ", ".join(running[:4]) + (f" +{len(running) - 4}" if len(running) > 4 else "")
            text.append(f"\n  running: {shown}", style="dim")
        return text
