"""A run's steps as a person reads them: folded from its events, then a table or a summary.

Folding is incremental (:class:`StepFolder` takes events page by page), so
``asyncdag run show`` of a 100,000-step run never holds its event log at once.
A table of every step helps up to a few dozen steps; past :data:`TABLE_LIMIT`
the summary says how many steps ended how, lists those that did not succeed
and the slowest, and points at ``--json`` for every row.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from asyncdag._events import Event, EventType, StepStatus

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

__all__ = [
    "TABLE_LIMIT",
    "StepFolder",
    "StepRow",
    "format_duration",
    "print_steps",
    "step_rows",
    "steps_table",
]

#: Runs with at most this many steps get a table of every step; bigger ones a summary.
TABLE_LIMIT = 50
#: Rows of unsuccessful (and of slowest) steps a summary shows.
SHOWN = 20

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

_FINAL_STEP_EVENTS = {
    EventType.STEP_SUCCESS: StepStatus.SUCCESS,
    EventType.STEP_FAILURE: StepStatus.FAILURE,
    EventType.STEP_SKIPPED: StepStatus.SKIPPED,
    EventType.STEP_CANCELED: StepStatus.CANCELED,
}
#: The events that change a step's row: the only ones a reader needs to fetch to fold them.
STEP_EVENT_TYPES = frozenset(
    {EventType.STEP_START, EventType.STEP_UP_FOR_RETRY, *_FINAL_STEP_EVENTS}
)


@attrs.frozen
class StepRow:
    """One step as an event log tells it: the summary table's row."""

    key: str
    status: str
    attempts: int
    start: float | None
    end: float | None
    note: str = ""

    @property
    def duration(self) -> float | None:
        if self.start is None or self.end is None:
            return None
        return self.end - self.start


class StepFolder:
    """Folds events, in order and in as many calls as wanted, into one row per step."""

    def __init__(self) -> None:
        self._rows: dict[str, dict[str, Any]] = {}

    def add(self, events: Iterable[Event]) -> None:
        rows = self._rows
        for event in events:
            key = event.step_key
            if key is None or event.type not in STEP_EVENT_TYPES:
                continue
            row = rows.get(key)
            if row is None:
                row = rows[key] = {
                    "status": "PENDING",
                    "attempts": 0,
                    "start": None,
                    "end": None,
                    "note": "",
                }
            data = event.data if isinstance(event.data, dict) else {}
            if event.type is EventType.STEP_START:
                row["status"] = "RUNNING"
                attempt = data.get("attempt", row["attempts"] + 1)
                row["attempts"] = max(row["attempts"], attempt if isinstance(attempt, int) else 0)
                if row["start"] is None:
                    row["start"] = event.timestamp
            elif event.type is EventType.STEP_UP_FOR_RETRY:
                row["status"] = "RETRYING"
            else:
                row["status"] = _FINAL_STEP_EVENTS[event.type].value
                row["end"] = event.timestamp
                error = data.get("error")
                if isinstance(error, dict):
                    row["note"] = f"{error.get('type', 'error')}: {error.get('message', '')}"
                elif data.get("reason"):
                    row["note"] = str(data["reason"])

    def rows(self, *, run_finished: bool = False) -> list[StepRow]:
        """Per step: last status, attempts, first start to end, and why it failed or was skipped.

        ``run_finished``: a step still RUNNING then never ended (its process was
        killed), which the row says instead of pretending it goes on.
        """
        out = []
        for key, row in self._rows.items():
            note = row["note"]
            if run_finished and row["status"] in ("RUNNING", "RETRYING", "PENDING"):
                note = note or "never finished: the run ended first"
            out.append(StepRow(key=key, **{**row, "note": note}))
        return out


def step_rows(events: Iterable[Event], *, run_finished: bool = False) -> list[StepRow]:
    """Per step: last status, attempts, first start to end, and why it failed or was skipped."""
    folder = StepFolder()
    folder.add(events)
    return folder.rows(run_finished=run_finished)


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


def steps_table(rows: Sequence[StepRow]) -> Table:
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
            Text(row.key),
            Text(row.status, style=STATUS_STYLES.get(row.status, "")),
            str(row.attempts),
            format_duration(row.duration),
            Text(row.note),
        )
    return table


def print_steps(console: Console, rows: Sequence[StepRow], *, see_all: str) -> None:
    """Every step in a table, or past :data:`TABLE_LIMIT` a summary; ``see_all`` says how to
    see every row (a command)."""
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
