"""The in-memory store's automation half: schedule and sensor state, ticks, run keys, leases.

A mixin of :class:`~asyncdag.storage.InMemoryStorage`, kept apart from its runs
and events.  One lock makes each method atomic, which is all the contract asks
within one process (an in-memory store is never shared across processes).
"""

from __future__ import annotations

import threading
from collections.abc import Collection

import attrs

from asyncdag._events import RunStatus
from asyncdag.storage._automation import (
    AutomationStorage,
    InstigatorState,
    InstigatorStatus,
    InstigatorType,
    Lease,
    TickRecord,
    TickStatus,
    _abandoned,
    _check_ttl,
    _tick_filter,
)

__all__ = ["InMemoryAutomation"]

_ACTIVE = frozenset({RunStatus.NOT_STARTED, RunStatus.STARTED})


@attrs.frozen
class _Registered:
    run_id: str
    run_key: str | None


class InMemoryAutomation(AutomationStorage):
    """Schedule and sensor state in dicts, behind one lock."""

    def __init__(self) -> None:
        super().__init__()
        self._automation_lock = threading.Lock()
        self._states: dict[str, InstigatorState] = {}
        self._ticks: dict[str, dict[float, TickRecord]] = {}
        self._instigator_runs: dict[str, dict[str, _Registered]] = {}
        self._leases: dict[str, Lease] = {}

    async def get_instigator_state(self, name: str) -> InstigatorState | None:
        with self._automation_lock:
            return self._states.get(name)

    async def list_instigator_states(self) -> list[InstigatorState]:
        with self._automation_lock:
            return [self._states[name] for name in sorted(self._states)]

    async def set_instigator_status(
        self,
        name: str,
        instigator_type: InstigatorType,
        status: InstigatorStatus,
        *,
        now: float,
        last_tick_time: float | None = None,
    ) -> InstigatorState:
        with self._automation_lock:
            state = self._state(name, instigator_type)
            state = attrs.evolve(
                state,
                status=InstigatorStatus(status),
                updated_at=now,
                last_tick_time=state.last_tick_time if last_tick_time is None else last_tick_time,
            )
            self._states[name] = state
            return state

    async def update_instigator_cursor(
        self,
        name: str,
        instigator_type: InstigatorType,
        *,
        last_tick_time: float,
        cursor: str | None = None,
        now: float,
    ) -> None:
        with self._automation_lock:
            state = self._state(name, instigator_type)
            stored = state.last_tick_time
            self._states[name] = attrs.evolve(
                state,
                last_tick_time=last_tick_time if stored is None else max(stored, last_tick_time),
                cursor=cursor,
                updated_at=now,
            )

    def _state(self, name: str, instigator_type: InstigatorType) -> InstigatorState:
        state = self._states.get(name)
        if state is None:
            return InstigatorState(name=name, instigator_type=instigator_type)
        return state

    async def claim_tick(self, tick: TickRecord) -> TickRecord:
        with self._automation_lock:
            ticks = self._ticks.setdefault(tick.instigator_name, {})
            stored = ticks.get(tick.tick_time)
            if stored is None:
                claimed = attrs.evolve(tick, status=TickStatus.STARTED)
            elif stored.status is TickStatus.STARTED and _abandoned(
                self._leases.get(tick.instigator_name), stored, tick
            ):
                claimed = attrs.evolve(stored, owner=tick.owner)
            else:
                return stored
            ticks[tick.tick_time] = claimed
            return claimed

    async def update_tick(self, tick: TickRecord) -> None:
        with self._automation_lock:
            self._ticks.setdefault(tick.instigator_name, {})[tick.tick_time] = tick

    async def list_ticks(
        self,
        name: str,
        *,
        limit: int | None = None,
        before: float | None = None,
        statuses: Collection[TickStatus] | None = None,
    ) -> list[TickRecord]:
        wanted = _tick_filter(limit, statuses)
        with self._automation_lock:
            ticks = list(self._ticks.get(name, {}).values())
        ticks.sort(key=lambda t: t.tick_time, reverse=True)
        found = [
            t
            for t in ticks
            if (before is None or t.tick_time < before) and (wanted is None or t.status in wanted)
        ]
        return found if limit is None else found[:limit]

    async def add_instigator_run(
        self,
        name: str,
        run_id: str,
        *,
        run_key: str | None,
        tick_time: float | None,
        now: float,
    ) -> str | None:
        with self._automation_lock:
            runs = self._instigator_runs.setdefault(name, {})
            if run_key is not None:
                for registered in runs.values():
                    if registered.run_key == run_key:
                        return registered.run_id
            runs.setdefault(run_id, _Registered(run_id, run_key))
            return None

    async def remove_instigator_run(self, name: str, run_id: str) -> None:
        with self._automation_lock:
            self._instigator_runs.get(name, {}).pop(run_id, None)

    async def active_instigator_runs(self, name: str) -> list[str]:
        with self._automation_lock:
            run_ids = list(self._instigator_runs.get(name, {}))
        active = []
        for run_id in run_ids:
            record = await self.get_run(run_id)  # type: ignore[attr-defined]
            if record is not None and record.status in _ACTIVE:
                active.append(run_id)
        return active

    async def acquire_lease(self, name: str, owner: str, *, now: float, ttl: float) -> Lease:
        _check_ttl(ttl)
        with self._automation_lock:
            lease = self._leases.get(name)
            if lease is None or lease.owner == owner or lease.expires_at <= now:
                lease = Lease(name=name, owner=owner, expires_at=now + ttl)
                self._leases[name] = lease
            return lease

    async def release_lease(self, name: str, owner: str) -> None:
        with self._automation_lock:
            lease = self._leases.get(name)
            if lease is not None and lease.owner == owner:
                del self._leases[name]
