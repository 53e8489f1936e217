"""The automation part of the storage contract: schedule and sensor state, ticks, run keys, leases.

Schedules and sensors keep everything that must survive a restart in the run
storage, beside the runs they start, so that any process sharing the history
(the web UI, ``asyncdag scheduler run``, a second host on PostgreSQL) sees the
same state and none fires a tick twice.  The guarantees live here, as atomic
storage operations, not in the loop that uses them:

* **A tick is claimed once.**  :meth:`AutomationStorage.claim_tick` inserts the
  row keyed by ``(instigator_name, tick_time)`` or finds it stored; two
  processes racing for one tick cannot both win.  A claim whose owner lost
  the instigator's lease to the claimant is *abandoned* (its process died)
  and passes to the lease holder, so no tick is lost either.
* **A run key starts one run.**  :meth:`AutomationStorage.add_instigator_run`
  refuses a ``(instigator_name, run_key)`` already stored.
* **One evaluator at a time.**  :meth:`AutomationStorage.acquire_lease` hands an
  instigator's lease to one owner until it expires; a dead owner's lease
  passes on once ``expires_at`` is past.

Every time is a float of seconds since the epoch *passed in by the caller*
(from the scheduler's injectable clock), never read from the system clock
here, so tests can drive time.

The record types are frozen attrs classes; the abstract methods are mixed into
:class:`~asyncdag.storage.RunStorage`, so a backend implements runs and
automation together and the shared test suite holds each to both.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Collection
from typing import Any

import attrs

from asyncdag._events import ErrorInfo

__all__ = [
    "AutomationStorage",
    "InstigatorState",
    "InstigatorStatus",
    "InstigatorType",
    "Lease",
    "TickRecord",
    "TickStatus",
]


class InstigatorType(enum.StrEnum):
    """What starts runs by itself: a schedule (a cron clock) or a sensor (a polled function)."""

    SCHEDULE = "SCHEDULE"
    SENSOR = "SENSOR"


class InstigatorStatus(enum.StrEnum):
    """Whether a schedule or sensor is on.  Stored only once someone turns it on or off."""

    RUNNING = "RUNNING"
    STOPPED = "STOPPED"


class TickStatus(enum.StrEnum):
    """A tick's outcome, Dagster's vocabulary: STARTED while it is being evaluated."""

    STARTED = "STARTED"
    SUCCESS = "SUCCESS"  # it started at least one run
    SKIPPED = "SKIPPED"
    FAILURE = "FAILURE"


_FINAL_TICKS = frozenset({TickStatus.SUCCESS, TickStatus.SKIPPED, TickStatus.FAILURE})


def _str_tuple(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value)


@attrs.frozen(kw_only=True)
class InstigatorState:
    """What storage knows of one schedule or sensor, by name.

    ``status`` is None until someone starts or stops it (the definition's
    default applies meanwhile).  ``last_tick_time`` is the scheduler's cursor:
    for a schedule the newest scheduled time already handled (or the moment
    it was started), for a sensor the time of its last evaluation.  ``cursor``
    is a sensor's own cursor (``context.update_cursor``).
    """

    name: str
    instigator_type: InstigatorType = attrs.field(converter=InstigatorType)
    status: InstigatorStatus | None = attrs.field(
        default=None, converter=attrs.converters.optional(InstigatorStatus)
    )
    last_tick_time: float | None = None
    cursor: str | None = None
    updated_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "instigator_type": self.instigator_type.value,
            "status": None if self.status is None else self.status.value,
            "last_tick_time": self.last_tick_time,
            "cursor": self.cursor,
            "updated_at": self.updated_at,
        }


@attrs.frozen(kw_only=True)
class TickRecord:
    """One evaluation of a schedule (at its scheduled time) or a sensor (at its evaluation time).

    ``owner`` is the process that claimed it; ``run_ids`` the runs it
    started; ``skip_reason`` or ``error`` say why it started none.  For a
    sensor, ``cursor`` is the cursor the evaluation left.
    """

    instigator_name: str
    instigator_type: InstigatorType = attrs.field(converter=InstigatorType)
    tick_time: float
    status: TickStatus = attrs.field(default=TickStatus.STARTED, converter=TickStatus)
    owner: str
    start_time: float
    end_time: float | None = None
    run_ids: tuple[str, ...] = attrs.field(default=(), converter=_str_tuple)
    run_keys: tuple[str, ...] = attrs.field(default=(), converter=_str_tuple)
    skip_reason: str | None = None
    error: ErrorInfo | None = None
    cursor: str | None = None

    @property
    def is_finished(self) -> bool:
        return self.status in _FINAL_TICKS

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the shape the web UI serves."""
        return {
            "instigator_name": self.instigator_name,
            "instigator_type": self.instigator_type.value,
            "tick_time": self.tick_time,
            "status": self.status.value,
            "owner": self.owner,
            "start_time": self.start_time,
            "end_time": self.end_time,
            "run_ids": list(self.run_ids),
            "run_keys": list(self.run_keys),
            "skip_reason": self.skip_reason,
            "error": None if self.error is None else self.error.to_dict(),
            "cursor": self.cursor,
        }


@attrs.frozen(kw_only=True)
class Lease:
    """Who may evaluate an instigator, until when (seconds since the epoch)."""

    name: str
    owner: str
    expires_at: float

    def held_by(self, owner: str, now: float) -> bool:
        return self.owner == owner and self.expires_at > now


class AutomationStorage(abc.ABC):
    """The storage operations schedules and sensors need; every run storage implements them.

    Contract (the shared suite in ``tests/test_storage_automation.py`` holds
    each backend to it): ``list_ticks`` is newest first by ``tick_time``;
    ``(instigator_name, tick_time)`` identifies a tick and
    ``(instigator_name, run_key)`` a keyed run; names are unique across
    schedules and sensors.  Each method is one atomic operation, safe when
    several processes share the storage.
    """

    # -- on/off state and cursors --------------------------------------------------------

    @abc.abstractmethod
    async def get_instigator_state(self, name: str) -> InstigatorState | None:
        """The stored state of the schedule or sensor ``name``, or None if never stored."""

    @abc.abstractmethod
    async def list_instigator_states(self) -> list[InstigatorState]:
        """Every stored state, by name."""

    @abc.abstractmethod
    async def set_instigator_status(
        self,
        name: str,
        instigator_type: InstigatorType,
        status: InstigatorStatus,
        *,
        now: float,
        last_tick_time: float | None = None,
    ) -> InstigatorState:
        """Turn a schedule or sensor on or off (creating its state), and return the new state.

        ``last_tick_time``, when given, moves the cursor too: starting a schedule
        passes ``now`` so the ticks it missed while stopped are never caught up.
        """

    @abc.abstractmethod
    async def update_instigator_cursor(
        self,
        name: str,
        instigator_type: InstigatorType,
        *,
        last_tick_time: float,
        cursor: str | None = None,
        now: float,
    ) -> None:
        """Record how far the scheduler got (creating the state, status left as it is).

        ``last_tick_time`` never moves backwards: a smaller value than the one
        stored is ignored, so a slow process cannot rewind a faster one.
        ``cursor`` replaces the sensor cursor (None clears it).
        """

    # -- ticks ---------------------------------------------------------------------------

    @abc.abstractmethod
    async def claim_tick(self, tick: TickRecord) -> TickRecord:
        """Store ``tick`` (status STARTED) unless its ``(instigator_name, tick_time)`` is stored.

        Returns the tick as stored afterwards.  The caller owns it when the
        returned ``owner`` is ``tick.owner`` and its status is STARTED.  A
        stored STARTED tick is *abandoned* when, at ``tick.start_time``, the
        claimant holds the instigator's lease and the stored owner does not
        (its process died or stalled past its lease): it is handed to the
        claimant, keeping its original ``start_time``.  Without the lease a
        stored tick is never taken, so two claimants racing cannot both own
        it.  A finished tick is returned as is.
        """

    @abc.abstractmethod
    async def update_tick(self, tick: TickRecord) -> None:
        """Replace the stored tick with the same ``(instigator_name, tick_time)``: its outcome."""

    @abc.abstractmethod
    async def list_ticks(
        self,
        name: str,
        *,
        limit: int | None = None,
        before: float | None = None,
        statuses: Collection[TickStatus] | None = None,
    ) -> list[TickRecord]:
        """A schedule's or sensor's ticks, newest first; ``before`` (exclusive) pages back."""

    # -- runs the instigators started ----------------------------------------------------

    @abc.abstractmethod
    async def add_instigator_run(
        self,
        name: str,
        run_id: str,
        *,
        run_key: str | None,
        tick_time: float | None,
        now: float,
    ) -> str | None:
        """Register ``run_id`` as started by ``name``, before it is launched.

        Returns None when registered.  When ``run_key`` is already used by
        ``name``, nothing is stored and the run id that used it is returned: a
        run key never starts a second run.  Registering the same run id twice
        is harmless (the first registration is kept).
        """

    @abc.abstractmethod
    async def remove_instigator_run(self, name: str, run_id: str) -> None:
        """Forget a registration whose launch failed, freeing its run key."""

    @abc.abstractmethod
    async def active_instigator_runs(self, name: str) -> list[str]:
        """Run ids started by ``name`` whose run is stored and not finished (NOT_STARTED, STARTED)."""

    # -- leases --------------------------------------------------------------------------

    @abc.abstractmethod
    async def acquire_lease(self, name: str, owner: str, *, now: float, ttl: float) -> Lease:
        """Take or renew the lease on ``name`` for ``ttl`` seconds, if free, expired or ours.

        Returns the lease as stored afterwards: the caller holds it when its
        ``owner`` is the caller's.
        """

    @abc.abstractmethod
    async def release_lease(self, name: str, owner: str) -> None:
        """Give the lease up if ``owner`` holds it (a clean shutdown), so another takes over at once."""


def _abandoned(lease: Lease | None, stored: TickRecord, claimant: TickRecord) -> bool:
    """Whether ``claimant`` may take the STARTED tick ``stored``: it holds the lease, the owner not."""
    now = claimant.start_time
    return (
        lease is not None
        and stored.owner != claimant.owner
        and lease.held_by(claimant.owner, now)
        and not lease.held_by(stored.owner, now)
    )


def _check_ttl(ttl: float) -> None:
    if not ttl > 0:
        raise ValueError(f"a lease needs a ttl > 0 seconds, got {ttl!r}")


def _check_limit(limit: int | None) -> None:
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be None or >= 0, got {limit}")


def _tick_filter(
    limit: int | None, statuses: Collection[TickStatus] | None
) -> frozenset[TickStatus] | None:
    """``list_ticks``' arguments checked, and the statuses it keeps (None: any status).

    The one prologue of every backend's ``list_ticks``, so all refuse the same arguments.
    """
    _check_limit(limit)
    return None if statuses is None else frozenset(TickStatus(s) for s in statuses)
