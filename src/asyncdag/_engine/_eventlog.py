"""A run's event log: every event in order, read as :class:`~asyncdag.Event` objects.

A run of 100,000 steps records 200,000 STEP_START and STEP_SUCCESS events,
and often nobody reads them while the run goes on (nobody listens at DEBUG).
Kept as event objects, they are 200,000 more objects that the cyclic garbage
collector walks again and again as the run goes on: at that size the
collector took a third of the run's time.  So the bus stores such an event
as a *compact record*, a plain tuple of atoms, which the collector stops
tracking the first time it sees it, and :class:`EventLog` turns it into its
event when it is read.  Any other event, and every event some listener was
handed as it happened, is stored as the event object itself.

A compact record is ``(succeeded, timestamp, step_key, attempt, since)``:
``succeeded`` is False for STEP_START and True for STEP_SUCCESS; ``since``
is when the step became ready (STEP_START) or when its attempt started
(STEP_SUCCESS); its sequence number is its position in the log.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any, overload

from .._events import Event, StepStartEvent, StepSuccessEvent

__all__ = ["EventLog", "step_event"]

_new = tuple.__new__
_DEBUG = logging.DEBUG


def step_event(run_id: str, seq: int, record: tuple[Any, ...]) -> Event:
    """The event a compact record stands for, as event number ``seq`` of run ``run_id``."""
    succeeded, timestamp, step_key, attempt, since = record
    kind = StepSuccessEvent if succeeded else StepStartEvent
    return _new(kind, (run_id, seq, timestamp, kind.TYPE, step_key, _DEBUG, attempt, since))  # type: ignore[no-any-return]


class EventLog(Sequence[Event]):
    """A run's events in order (live while the run goes on): a read-only list of events.

    Indexing, slicing (a list), iterating, ``len``, ``in``, ``index``, ``count``
    and ``==`` (against another log or a list of events) all see events; a
    compact record becomes a new event object at each read.
    """

    __slots__ = ("records", "run_id")

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        # Events, and compact records of step events (see the module's docstring); the bus
        # appends to it directly.
        self.records: list[Any] = []

    def __len__(self) -> int:
        return len(self.records)

    @overload
    def __getitem__(self, index: int) -> Event: ...

    @overload
    def __getitem__(self, index: slice) -> list[Event]: ...

    def __getitem__(self, index: int | slice) -> Event | list[Event]:
        records = self.records
        if isinstance(index, slice):
            return [self._event(seq, records[seq]) for seq in range(len(records))[index]]
        record = records[index]
        return self._event(index if index >= 0 else len(records) + index, record)

    def _event(self, seq: int, record: Any) -> Event:
        if record.__class__ is tuple:
            return step_event(self.run_id, seq, record)
        return record  # type: ignore[no-any-return]

    def __iter__(self) -> Iterator[Event]:
        event = self._event
        # A live log: events appended meanwhile are read too.
        for seq, record in enumerate(self.records):
            yield event(seq, record)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, EventLog | list | tuple):
            return len(self) == len(other) and all(
                a == b for a, b in zip(self, other, strict=False)
            )
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # as a list's

    def __repr__(self) -> str:
        return repr(list(self))

    def __reduce__(self) -> tuple[Any, ...]:
        return (list, (list(self),))  # a plain list of events, wherever it is unpickled
