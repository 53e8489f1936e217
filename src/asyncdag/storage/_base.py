"""The run storage contract: the record, the abstract storage, the errors, and the helpers every
backend shares so their semantics cannot drift apart."""

from __future__ import annotations

import abc
import os
import socket
from collections.abc import Collection, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import anyio
import attrs

from asyncdag._errors import AsyncdagError
from asyncdag._events import Event, EventType, RunStatus
from asyncdag.storage._automation import AutomationStorage

__all__ = [
    "RunNotFoundError",
    "RunRecord",
    "RunStorage",
    "StorageError",
    "StorageUnavailableError",
    "default_storage_path",
    "orphan_reason",
]


class StorageError(AsyncdagError):
    """Run storage could not do what was asked: a duplicate run, a closed store, a newer schema."""


class StorageUnavailableError(StorageError):
    """The storage cannot do it *now*: locked by another process, busy, a full disk, a lost
    connection.  The same call may succeed later, so :class:`RunRecorder` keeps retrying it
    with backoff while the run lives (and for a bounded time after), where any other
    :class:`StorageError` is final.  Backends raise it for every transient failure."""


class RunNotFoundError(StorageError, LookupError):
    """An operation named a run id the storage has never seen (or has deleted)."""

    def __init__(self, run_id: str, action: str) -> None:
        self.run_id = run_id
        super().__init__(
            f"cannot {action}: no run {run_id!r} in storage; create it with create_run() first "
            "(or check the run id: it may have been deleted)"
        )


def default_storage_path() -> Path:
    """Where the CLI and UI keep run history: ``$ASYNCDAG_HOME/asyncdag.db``, else ``~/.asyncdag/``.

    The directory is created when a :class:`SqliteStorage` opens, not here.
    """
    home = os.environ.get("ASYNCDAG_HOME")
    base = Path(home).expanduser() if home else Path.home() / ".asyncdag"
    return base / "asyncdag.db"


def _validate_tags(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise TypeError(f"RunRecord.tags must map str to str, got {value!r}")


def _validate_run_id(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"RunRecord.{attribute.name} must be a non-empty string, got {value!r}")


@attrs.frozen(kw_only=True)
class RunRecord:
    """One run as the history knows it; events are stored apart, keyed by ``run_id``.

    ``pid`` and ``hostname`` say which process ran it, so a run whose process
    died without finishing can be marked FAILED instead of staying STARTED forever.
    ``parent_run_id`` is the run this one re-executes (or re-runs), ``root_run_id``
    the first run of that chain (None for a run without a parent, which is its
    own root).

    ``note`` is never stored: a backend that could read only part of a stored
    run (a damaged row, a status written by a newer asyncdag) serves what it
    could read and says here what it could not, so one bad run never hides the
    others.
    """

    run_id: str = attrs.field(validator=_validate_run_id)
    pipeline_name: str = attrs.field(validator=attrs.validators.instance_of(str))
    status: RunStatus = attrs.field(default=RunStatus.NOT_STARTED, converter=RunStatus)
    run_config: dict[str, Any] = attrs.field(factory=dict)
    tags: dict[str, str] = attrs.field(factory=dict, validator=_validate_tags)
    start_time: float | None = None
    end_time: float | None = None
    parent_run_id: str | None = None
    pid: int | None = None
    hostname: str | None = None
    failure_reason: str | None = None
    root_run_id: str | None = None
    note: str | None = attrs.field(default=None, eq=False)

    @property
    def is_finished(self) -> bool:
        return self.status in _FINISHED

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the shape the web UI serves."""
        return {
            "run_id": self.run_id,
            "pipeline_name": self.pipeline_name,
            "status": self.status.value,
            "run_config": self.run_config,
            "tags": self.tags,
            "start_time": self.start_time,
            "end_time": self.end_time,
            "parent_run_id": self.parent_run_id,
            "pid": self.pid,
            "hostname": self.hostname,
            "failure_reason": self.failure_reason,
            "root_run_id": self.root_run_id,
            "note": self.note,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        return cls(
            run_id=data["run_id"],
            pipeline_name=data["pipeline_name"],
            status=RunStatus(data.get("status", RunStatus.NOT_STARTED)),
            run_config=data.get("run_config") or {},
            tags=data.get("tags") or {},
            start_time=data.get("start_time"),
            end_time=data.get("end_time"),
            parent_run_id=data.get("parent_run_id"),
            pid=data.get("pid"),
            hostname=data.get("hostname"),
            failure_reason=data.get("failure_reason"),
            root_run_id=data.get("root_run_id"),
            note=data.get("note"),
        )


_FINISHED = frozenset({RunStatus.SUCCESS, RunStatus.FAILURE, RunStatus.CANCELED})

#: How often a backend that is not told of writes lets a live reader look again (seconds).
_POLL_INTERVAL = 0.5


class RunStorage(AutomationStorage, abc.ABC):
    """Where runs and their event logs live.  Subclass it to add a backend.

    A backend also keeps what schedules and sensors need (their on/off state,
    ticks, run keys and leases): the abstract methods of
    :class:`~asyncdag.storage._automation.AutomationStorage`, which it inherits.

    Contract every implementation keeps (the tests hold both to it):
    ``list_runs`` returns newest first (by ``start_time``, then by creation,
    runs without a start time last); ``get_events`` returns a run's events in
    ``seq`` order, so ``after_seq`` is a cursor a live reader resumes from;
    ``(run_id, seq)`` is unique.  ``since`` is inclusive and ``until`` exclusive,
    both compared with ``start_time``.  ``root_run_id=R`` lists the runs of R's
    re-execution chain: R itself and every run whose ``root_run_id`` is R.
    both compared with ``start_time``.

    The history loses nothing, whatever a run hands it:

    * Any ``str`` is stored and comes back equal: lone surrogates (a non-UTF-8
      file name decoded by Python), NUL and other control characters, in event
      messages, step keys, failure reasons, tags, config and event data.  The
      identifiers (run id, pipeline name, parent run id, hostname) too, except
      that a backend whose keys other tools join on may refuse one it cannot
      store as plain text with a :class:`StorageError` naming it (PostgreSQL
      refuses NUL and lone surrogates there).
    * Run config and event data hold any value: JSON values (``NaN`` and the
      infinities included) come back equal; values JSON has no type for (a
      date under an ``Any`` config field, a set, an object) come back as the
      nearest JSON value (``asyncdag.storage._codec.dumps`` does this for a
      backend that stores JSON text).  A write never fails because of a value.
    * Reading never fails because of one stored run: a row that can only be
      read in part is served with what could be read and a ``note``.
    * A failure that may pass (a lock held by another process, a full disk, a
      lost connection) raises :class:`StorageUnavailableError`, which the
      recorder retries; other failures raise :class:`StorageError`.  Never a
      backend's own exception type.
    * ``recover_orphaned_runs`` ends an orphan at the time of its last event
      (its start when it has none), not at the time of recovery.
    """

    @abc.abstractmethod
    async def create_run(self, record: RunRecord) -> None:
        """Store a new run; a run id already stored raises :class:`StorageError`."""

    @abc.abstractmethod
    async def add_events(self, run_id: str, events: Sequence[Event]) -> None:
        """Append a batch of the run's events in one write (all or none)."""

    @abc.abstractmethod
    async def finish_run(
        self, run_id: str, status: RunStatus, *, end_time: float, failure_reason: str | None = None
    ) -> None:
        """Record a run's final status; write it only after the run's last events."""

    @abc.abstractmethod
    async def get_run(self, run_id: str) -> RunRecord | None: ...

    @abc.abstractmethod
    async def list_runs(
        self,
        *,
        pipeline_name: str | None = None,
        status: RunStatus | Collection[RunStatus] | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = None,
        offset: int = 0,
        root_run_id: str | None = None,
    ) -> list[RunRecord]: ...

    @abc.abstractmethod
    async def get_events(
        self,
        run_id: str,
        *,
        after_seq: int = -1,
        limit: int | None = None,
        step_key: str | None = None,
        types: Collection[EventType] | None = None,
    ) -> list[Event]: ...

    @abc.abstractmethod
    async def count_events(self, run_id: str) -> int: ...

    @abc.abstractmethod
    async def delete_run(self, run_id: str) -> bool:
        """Forget a run and its events; False when there was no such run."""

    @abc.abstractmethod
    async def recover_orphaned_runs(self) -> list[str]:
        """Mark FAILED the STARTED runs of this host whose process is gone; return their ids."""

    async def wait_for_events(self, run_id: str, *, after_seq: int, timeout: float) -> None:
        """Pause a live reader until ``run_id`` may have events after ``after_seq``, or a new status.

        A reader tailing a run alternates ``get_events(run_id, after_seq=cursor)``
        and this.  It returns after ``timeout`` seconds at the latest, and may
        return early with nothing new: read again after it, never assume.  This
        default polls (it sleeps ``min(timeout, 0.5)``); a backend that is told of
        writes, as PostgreSQL is through LISTEN/NOTIFY, returns as soon as one
        commits, whichever host wrote it.
        """
        await anyio.sleep(max(0.0, min(timeout, _POLL_INTERVAL)))

    def open(self) -> None:
        """Connect now rather than on first use (sync, so a CLI needs no event loop for it)."""

    def close(self) -> None:
        """Release files and connections from sync code.  Safe to call twice."""

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def aclose(self) -> None:
        """Release files and connections.  Safe to call twice."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


# -- helpers both implementations share, so their semantics cannot drift apart ------------


def _check_window(limit: int | None, offset: int) -> None:
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be None or >= 0, got {limit}")
    if offset < 0:
        raise ValueError(f"offset must be >= 0, got {offset}")


def _status_set(status: RunStatus | Collection[RunStatus] | None) -> frozenset[RunStatus] | None:
    if status is None:
        return None
    if isinstance(status, str):
        return frozenset({RunStatus(status)})
    return frozenset(RunStatus(s) for s in status)


def _type_set(types: Collection[EventType] | None) -> frozenset[EventType] | None:
    return None if types is None else frozenset(EventType(t) for t in types)


def _check_terminal(status: RunStatus) -> RunStatus:
    status = RunStatus(status)
    if status not in _FINISHED:
        raise ValueError(
            f"finish_run needs a final status (SUCCESS, FAILURE or CANCELED), got {status.value}"
        )
    return status


def _check_event_run_ids(run_id: str, events: Sequence[Event]) -> None:
    for event in events:
        if event.run_id != run_id:
            raise StorageError(
                f"event seq {event.seq} belongs to run {event.run_id!r}, not {run_id!r}; "
                "add each run's events under its own run id"
            )


_HOSTNAME = socket.gethostname()


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    if os.name != "posix":
        # os.kill(pid, 0) would terminate the process on Windows: never guess there.
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return True
    return True


def orphan_reason(record: RunRecord) -> str | None:
    """Why ``record`` is an orphan (STARTED, on this host, its process gone), or None.

    Cheap (one ``kill(pid, 0)``), so a reader such as the web UI can ask it of
    every STARTED run it shows and call :meth:`RunStorage.recover_orphaned_runs`
    only when one is dead.  Pid reuse can hide an orphan; it never invents one.
    """
    if record.status is not RunStatus.STARTED or record.pid is None:
        return None
    if record.hostname != _HOSTNAME or _pid_alive(record.pid):
        return None
    return f"process {record.pid} ended without finishing the run (killed?)"


_orphan_reason = orphan_reason


def _orphan_end(record: RunRecord, last_event_time: float | None, now: float) -> float:
    """When an orphan ended: its last event, else its start; never later than ``now``."""
    if last_event_time is not None:
        return min(last_event_time, now)
    if record.start_time is not None:
        return min(record.start_time, now)
    return now


def _orphan_event(run_id: str, seq: int, reason: str, end: float, now: float) -> Event:
    """The RUN_FAILURE that closes an orphan's log, so a tailing reader sees the run end.

    Stamped with the run's end (its last event), so the log's times stay those of
    the run; ``recovered_at`` says when the recovery happened.
    """
    return Event(
        run_id=run_id,
        seq=seq,
        timestamp=end,
        type=EventType.RUN_FAILURE,
        level=40,  # logging.ERROR
        message=reason,
        data={"orphaned": True, "recovered_at": now},
    )


def _duplicate_run_message(run_id: str) -> str:
    return f"a run with id {run_id!r} is already stored; give each run a fresh run_id"


def _duplicate_seq_message(run_id: str, seqs: Sequence[int]) -> str:
    span = f"{min(seqs)}..{max(seqs)}" if seqs else "?"
    return (
        f"run {run_id!r} already has an event with a seq in {span} (or the batch repeats one); "
        "each seq must be stored once: was this batch written twice?"
    )
