"""Folding a run's events into one summary per step, for the CLI's tables and the UI alike."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs

from asyncdag._events import ErrorInfo, Event, EventType, StepStatus

__all__ = [
    "FINAL_STEP_EVENTS",
    "STEP_SUMMARY_EVENTS",
    "StepFolder",
    "StepSummary",
    "summarize_steps",
]

#: The events that end a step, and the status each one ends it with.
FINAL_STEP_EVENTS = {
    EventType.STEP_SUCCESS: StepStatus.SUCCESS,
    EventType.STEP_FAILURE: StepStatus.FAILURE,
    EventType.STEP_SKIPPED: StepStatus.SKIPPED,
    EventType.STEP_CANCELED: StepStatus.CANCELED,
}
#: Every event :func:`summarize_steps` reads: a reader may fetch only these (logs aside).
STEP_SUMMARY_EVENTS = frozenset(
    {
        *FINAL_STEP_EVENTS,
        EventType.STEP_START,
        EventType.STEP_UP_FOR_RETRY,
        EventType.RESOURCE_INIT_FAILURE,
    }
)


@attrs.frozen
class StepSummary:
    """One step as its events tell it: last status, attempts, first start to end, and why."""

    key: str
    status: str
    attempts: int
    start: float | None
    end: float | None
    note: str = ""
    #: Why it failed: its own error, or for a step skipped because a resource it needs
    #: failed to set up, that resource's error.
    error: ErrorInfo | None = None

    @property
    def duration(self) -> float | None:
        if self.start is None or self.end is None:
            return None
        return self.end - self.start

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: what the web UI's ``/api/runs/{id}/steps`` serves."""
        return {
            "key": self.key,
            "status": self.status,
            "attempts": self.attempts,
            "start": self.start,
            "end": self.end,
            "duration": self.duration,
            "note": self.note,
            "error": self.error.to_dict() if self.error is not None else None,
        }


def summarize_steps(events: Iterable[Event], *, run_finished: bool = False) -> list[StepSummary]:
    """Per step: last status, attempts, first start to end, and why it failed or was skipped.

    ``run_finished``: a step still RUNNING then never ended (its process was killed),
    which the row says instead of pretending it goes on.
    """
    folder = StepFolder()
    folder.add(events)
    return folder.summaries(run_finished=run_finished)


class StepFolder:
    """:func:`summarize_steps` a page at a time: ``add`` events in order, as many times as
    needed, then ``summaries``.  Holds one row per step, never the events, so a reader of
    a 100,000-step run (``asyncdag run show``) can page through its events."""

    def __init__(self) -> None:
        self._rows: dict[str, dict[str, Any]] = {}
        self._resource_errors: dict[Any, ErrorInfo] = {}

    def add(self, events: Iterable[Event]) -> None:
        rows, resource_errors = self._rows, self._resource_errors
        for event in events:
            key = event.step_key
            kind = event.type
            if kind is EventType.RESOURCE_INIT_FAILURE and event.error is not None:
                resource_errors[(event.data or {}).get("resource")] = event.error
                continue
            if key is None or not kind.value.startswith("STEP_"):
                continue
            row = rows.setdefault(
                key,
                {
                    "status": "PENDING",
                    "attempts": 0,
                    "start": None,
                    "end": None,
                    "note": "",
                    "error": None,
                },
            )
            # A step's events build their data when read (asyncdag._events): read it only
            # where it is needed, once.
            if kind is EventType.STEP_START:
                row["status"] = "RUNNING"
                attempt = event.attempt
                row["attempts"] = max(
                    row["attempts"], attempt if attempt is not None else row["attempts"] + 1
                )
                if row["start"] is None:
                    row["start"] = event.timestamp
            elif kind is EventType.STEP_UP_FOR_RETRY:
                row["status"] = "RETRYING"
            elif kind in FINAL_STEP_EVENTS:
                row["status"] = FINAL_STEP_EVENTS[kind].value
                row["end"] = event.timestamp
                data = event.data or {}
                error = ErrorInfo.from_dict(data["error"]) if "error" in data else None
                if error is None and data.get("resource") in resource_errors:
                    error = resource_errors[data["resource"]]
                    row["note"] = str(data.get("reason") or f"{error.type}: {error.message}")
                elif error is not None:
                    row["note"] = f"{error.type}: {error.message}"
                elif data.get("reason"):
                    row["note"] = str(data["reason"])
                elif data.get("loaded_from"):
                    row["note"] = f"reused: outputs of run {str(data['loaded_from'])[:8]}"
                row["error"] = error

    def summaries(self, *, run_finished: bool = False) -> list[StepSummary]:
        out = []
        for key, row in self._rows.items():
            note = row["note"]
            if run_finished and row["status"] in ("RUNNING", "RETRYING", "PENDING"):
                note = note or "never finished: the run ended first"
            out.append(StepSummary(key=key, **{**row, "note": note}))
        return out
