"""The event vocabulary: everything a run says about itself.

Events are the one channel between the engine and whoever listens (the console
logger, storage, live subscribers, the UI).  They are frozen, slotted and
JSON-serialisable through :meth:`Event.to_dict` / :meth:`Event.from_dict`, so a
stored event log comes back exactly as it was emitted.
"""

from __future__ import annotations

import enum
import logging
import sys
from collections.abc import Iterator
from typing import Any, NamedTuple, SupportsIndex

import attrs

__all__ = [
    "ErrorInfo",
    "Event",
    "EventType",
    "RunStatus",
    "StepStartEvent",
    "StepStatus",
    "StepSuccessEvent",
]


class EventType(enum.StrEnum):
    """What happened.  The string values are stable: storage and the UI key on them."""

    RUN_START = "RUN_START"
    RUN_SUCCESS = "RUN_SUCCESS"
    RUN_FAILURE = "RUN_FAILURE"
    RUN_CANCELING = "RUN_CANCELING"
    RUN_CANCELED = "RUN_CANCELED"

    RESOURCE_INIT_STARTED = "RESOURCE_INIT_STARTED"
    RESOURCE_INIT_SUCCESS = "RESOURCE_INIT_SUCCESS"
    RESOURCE_INIT_FAILURE = "RESOURCE_INIT_FAILURE"
    RESOURCE_TEARDOWN = "RESOURCE_TEARDOWN"
    RESOURCE_TEARDOWN_FAILURE = "RESOURCE_TEARDOWN_FAILURE"

    STEP_START = "STEP_START"
    STEP_OUTPUT = "STEP_OUTPUT"
    STEP_SUCCESS = "STEP_SUCCESS"
    STEP_FAILURE = "STEP_FAILURE"
    STEP_UP_FOR_RETRY = "STEP_UP_FOR_RETRY"
    STEP_SKIPPED = "STEP_SKIPPED"
    STEP_CANCELED = "STEP_CANCELED"

    HOOK_COMPLETED = "HOOK_COMPLETED"
    HOOK_ERRORED = "HOOK_ERRORED"

    LOG = "LOG"


class RunStatus(enum.StrEnum):
    """A run's state.  NOT_STARTED and STARTED appear only in storage."""

    NOT_STARTED = "NOT_STARTED"
    STARTED = "STARTED"
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    CANCELED = "CANCELED"


class StepStatus(enum.StrEnum):
    """A step's final (or, while a run goes on, current) state."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    RETRYING = "RETRYING"
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    SKIPPED = "SKIPPED"
    CANCELED = "CANCELED"


@attrs.frozen
class ErrorInfo:
    """An exception made serialisable: the live exception cannot cross storage or the wire."""

    type: str
    message: str
    traceback: str
    cause: ErrorInfo | None = None

    @classmethod
    def from_exception(cls, exc: BaseException) -> ErrorInfo:
        import traceback

        cause = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
        return cls(
            type=f"{type(exc).__module__}.{type(exc).__qualname__}".removeprefix("builtins."),
            message=str(exc),
            traceback="".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
            cause=cls.from_exception(cause) if cause is not None and cause is not exc else None,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "message": self.message,
            "traceback": self.traceback,
            "cause": self.cause.to_dict() if self.cause is not None else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ErrorInfo:
        cause = data.get("cause")
        return cls(
            type=data["type"],
            message=data["message"],
            traceback=data.get("traceback", ""),
            cause=cls.from_dict(cause) if cause else None,
        )


class Event(NamedTuple):
    """One thing that happened in a run.

    ``seq`` (also ``sequence``) numbers a run's events from 0 without gaps, so
    a reader can resume after the last one it saw.  ``type`` is also
    ``event_type``; ``attempt`` is the step attempt an event belongs to.
    ``data`` holds the type-specific details (``attempt``, ``duration``,
    ``error``...) and stays JSON-serialisable: an :class:`ErrorInfo` is stored
    in it as a dict.

    A named tuple rather than an attrs class: the engine makes two or more of
    these per step, and a tuple is built in half the time of a frozen attrs
    instance while being just as immutable.
    """

    run_id: str
    seq: int
    timestamp: float
    type: EventType
    step_key: str | None = None
    level: int = logging.DEBUG
    message: str = ""
    data: dict[str, Any] | None = None

    @property
    def event_type(self) -> EventType:
        """What happened (the same as ``type``)."""
        return self.type

    @property
    def sequence(self) -> int:
        """The event's number in its run, from 0 without gaps (the same as ``seq``)."""
        return self.seq

    @property
    def attempt(self) -> int | None:
        """For an event of a step's attempt (its start and end, its logs and outputs, a
        retry, its hooks), that attempt's number from 1; None for run and resource events
        and for a step that never started."""
        data = self.data
        if data is None or self.step_key is None:
            return None
        attempt = data.get("attempt")
        return attempt if type(attempt) is int and attempt > 0 else None

    @property
    def error(self) -> ErrorInfo | None:
        """The failure this event carries, if any."""
        if self.data is None or "error" not in self.data:
            return None
        return ErrorInfo.from_dict(self.data["error"])

    @property
    def level_name(self) -> str:
        return logging.getLevelName(self.level)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "seq": self.seq,
            "timestamp": self.timestamp,
            "type": self.type.value,
            "step_key": self.step_key,
            "level": self.level,
            "message": self.message,
            "data": self.data,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Event:
        return cls(
            run_id=data["run_id"],
            seq=data["seq"],
            timestamp=data["timestamp"],
            type=EventType(data["type"]),
            step_key=data.get("step_key"),
            level=data.get("level", logging.DEBUG),
            message=data.get("message", ""),
            data=data.get("data"),
        )


# --- the two events every step emits, with message and data built when read ----------------------


def _item(event: Event, index: int) -> Any:
    """Slot ``index`` of ``event`` as stored, past the overrides below."""
    return tuple.__getitem__(event, index)


class _StepTimingEvent(Event):
    """An event the engine emits for every step, whose message and data are built on read.

    A run of 100,000 steps emits 200,000 of these, and most of them are never read
    (nobody listens at DEBUG; the result keeps them for whoever asks).  So the tuple
    stores only what the text and the dict are made from: the attempt number where
    ``message`` sits and a reference time where ``data`` sits.  Read through the
    fields (``event.message``, ``event.data``, ``to_dict()``), by iteration or by
    index, compared, hashed, printed or pickled, such an event is the plain
    :class:`Event` with the same message and data, which it equals (pickling gives
    that plain event).  ``data`` is a new dict at every read.
    """

    __slots__ = ()

    @property
    def attempt(self) -> int | None:
        return _item(self, 6)  # type: ignore[no-any-return]

    def _values(self) -> tuple[Any, ...]:
        return (
            self.run_id,
            self.seq,
            self.timestamp,
            self.type,
            self.step_key,
            self.level,
            self.message,
            self.data,
        )

    def _plain(self) -> Event:
        return Event(*self._values())

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values())

    def __getitem__(self, index: Any) -> Any:
        return self._values()[index]

    def __eq__(self, other: object) -> bool:
        return self._values() == other

    def __ne__(self, other: object) -> bool:
        return self._values() != other

    def __lt__(self, other: object) -> bool:
        return self._values() < other  # type: ignore[operator]

    def __le__(self, other: object) -> bool:
        return self._values() <= other  # type: ignore[operator]

    def __gt__(self, other: object) -> bool:
        return self._values() > other  # type: ignore[operator]

    def __ge__(self, other: object) -> bool:
        return self._values() >= other  # type: ignore[operator]

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        return repr(self._plain())

    def __reduce__(self) -> tuple[Any, ...]:
        return (Event, self._values())

    def _asdict(self) -> dict[str, Any]:
        return self._plain()._asdict()

    def _replace(self, /, **changes: Any) -> Event:  # type: ignore[override]
        return self._plain()._replace(**changes)

    def count(self, value: Any, /) -> int:
        return self._values().count(value)

    def index(
        self, value: Any, start: SupportsIndex = 0, stop: SupportsIndex = sys.maxsize, /
    ) -> int:
        return self._values().index(value, start, stop)


class StepStartEvent(_StepTimingEvent):
    """STEP_START: ``Started execution of step 'key'.``, data ``attempt`` and ``waited``
    (seconds from ready to started).  Stored: the attempt and the time it became ready."""

    __slots__ = ()
    TYPE = EventType.STEP_START

    @property
    def message(self) -> str:  # type: ignore[override]
        return f"Started execution of step {self.step_key!r}."

    @property
    def data(self) -> dict[str, Any]:  # type: ignore[override]
        return {"attempt": _item(self, 6), "waited": self.timestamp - _item(self, 7)}


class StepSuccessEvent(_StepTimingEvent):
    """STEP_SUCCESS: ``Finished execution of step 'key' in 1.23ms.``, data ``attempt`` and
    ``duration`` (seconds of the attempt).  Stored: the attempt and the time it started."""

    __slots__ = ()
    TYPE = EventType.STEP_SUCCESS

    @property
    def message(self) -> str:  # type: ignore[override]
        return (
            f"Finished execution of step {self.step_key!r} in "
            f"{(self.timestamp - _item(self, 7)) * 1000:.2f}ms."
        )

    @property
    def data(self) -> dict[str, Any]:  # type: ignore[override]
        return {"attempt": _item(self, 6), "duration": self.timestamp - _item(self, 7)}
