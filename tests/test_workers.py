"""The worker pool: its counters agree at every await, and it never exceeds its bound."""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable

import anyio
import anyio.lowlevel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asyncdag._engine._workers import PriorityQueue, WorkerPool, ready_queue


class Steps:
    """A stand-in for the engine: each step awaits a little, then releases a few more steps
    (its dependents) and is counted done; the pool's invariant is checked at every await."""

    def __init__(
        self,
        total: int,
        bound: int | None,
        awaits: list[int],
        fanout: list[int],
        *,
        dispatch: bool = True,
    ) -> None:
        self.total = total
        self.dispatch = dispatch
        self.awaits = awaits
        self.fanout = fanout
        self.released = 0
        self.items: list[int] = []  # the run's step list: grows as steps are released
        self.pool = WorkerPool(self.run_step, self.items, bound=bound)
        self.peak = 0
        self.broken: list[str] = []

    def release(self, count: int) -> None:
        for _ in range(min(count, self.total - self.released)):
            self.items.append(self.released)
            self.pool.ready.append(self.released)
            self.released += 1

    def check(self) -> None:
        pool = self.pool
        if pool.workers != pool.idle + pool.arriving + pool.running + pool.yielding:
            self.broken.append(
                f"workers={pool.workers} idle={pool.idle} arriving={pool.arriving} "
                f"running={pool.running} yielding={pool.yielding}"
            )
        if pool.workers > pool.bound:
            self.broken.append(f"workers={pool.workers} > bound={pool.bound}")
        self.peak = max(self.peak, pool.running)

    async def run_step(self, item: int) -> None:
        self.check()
        for _ in range(self.awaits[item % len(self.awaits)]):
            await anyio.lowlevel.checkpoint()
            self.check()
        # Its dependents become ready: the worker takes one itself; with `dispatch`, workers
        # are also started at once (as for a fan-out's mapped steps).
        self.release(self.fanout[item % len(self.fanout)])
        if self.dispatch:
            self.pool.spawn()
        self.pool.done += 1
        if self.pool.done == self.total:
            self.pool.last_step_done()


async def run_pool(total: int, bound: int | None, awaits: list[int], fanout: list[int]) -> Steps:
    steps = Steps(total, bound, awaits, fanout)
    async with anyio.create_task_group() as tg:
        steps.release(1)
        steps.pool.start(tg)
        # Keep the run alive until every step was released and done, as the engine's
        # step count does (a step releasing none could otherwise end the run early).
        while steps.pool.done < total:
            if not steps.pool.ready and steps.pool.running == 0:
                steps.release(1)
                steps.pool.spawn()
            await anyio.lowlevel.checkpoint()
            steps.check()
    return steps


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@settings(max_examples=40, deadline=None)
@given(
    total=st.integers(1, 150),
    bound=st.one_of(st.none(), st.integers(1, 20)),
    awaits=st.lists(st.integers(0, 3), min_size=1, max_size=5),
    fanout=st.lists(st.integers(0, 4), min_size=1, max_size=5),
)
def test_the_pool_counters_agree_and_respect_the_bound(
    backend: str, total: int, bound: int | None, awaits: list[int], fanout: list[int]
) -> None:
    steps = anyio.run(run_pool, total, bound, awaits, fanout, backend=backend)
    assert steps.broken == []
    assert steps.pool.done == total
    assert steps.pool.workers == 0  # every worker exited: the run is over
    if bound is not None:
        assert steps.peak <= bound


@pytest.mark.anyio
async def test_a_chain_of_steps_runs_on_one_worker() -> None:
    steps = Steps(50, None, [0, 1], [1], dispatch=False)
    async with anyio.create_task_group() as tg:
        steps.release(1)
        steps.pool.start(tg)
    assert steps.broken == []
    assert steps.pool.done == 50
    assert steps.peak == 1


class _Queued:
    """A stand-in step state: what a ready queue reads of it is ``step.priority``."""

    def __init__(self, priority: int, arrival: int) -> None:
        self.step = self
        self.priority = priority
        self.arrival = arrival


@given(st.lists(st.integers(min_value=-3, max_value=3), max_size=40))
def test_the_priority_queue_pops_highest_first_then_first_in_first_out(
    priorities: list[int],
) -> None:
    queue = PriorityQueue()
    for arrival, priority in enumerate(priorities):
        queue.append(_Queued(priority, arrival))
    assert len(queue) == len(priorities)
    popped = [queue.popleft() for _ in range(len(priorities))]
    assert not queue
    assert [(q.priority, q.arrival) for q in popped] == sorted(
        ((q.priority, q.arrival) for q in popped), key=lambda pa: (-pa[0], pa[1])
    )


def test_a_plan_without_priorities_gets_a_plain_deque() -> None:
    assert type(ready_queue(False)) is deque
    assert isinstance(ready_queue(True), PriorityQueue)


async def _run_ready(
    count: int, bound: int | None, run_step: Callable[[int], Awaitable[None]]
) -> tuple[WorkerPool, int]:
    """``count`` steps ready at once, run by a pool; returns it and its peak of workers."""
    items = list(range(count))
    peak = 0

    async def step(item: int) -> None:
        nonlocal peak
        peak = max(peak, pool.workers)
        await run_step(item)
        pool.done += 1
        if pool.done == count:
            pool.last_step_done()

    pool = WorkerPool(step, items, bound=bound)
    for item in items:
        pool.ready.append(item)
    with anyio.fail_after(30):  # a deadlock guard only
        async with anyio.create_task_group() as tg:
            pool.start(tg)
    return pool, peak


@pytest.mark.anyio
async def test_steps_that_never_await_run_on_two_workers_at_most() -> None:
    async def no_op(item: int) -> None:
        pass

    pool, peak = await _run_ready(1_000, None, no_op)
    assert pool.done == 1_000
    assert peak <= 2


@pytest.mark.anyio
@pytest.mark.parametrize("bound", [None, 64, 100])
async def test_steps_that_block_get_a_worker_each_up_to_the_bound(bound: int | None) -> None:
    """Every step waits until all of them (or as many as the bound allows) have started:
    the run only ends if the pool grows to that many workers while they block."""
    count = 100
    together = min(count, bound or count)
    started = 0
    all_in = anyio.Event()

    async def blocks(item: int) -> None:
        nonlocal started
        started += 1
        if started % together == 0:
            all_in.set()
        await all_in.wait()

    pool, peak = await _run_ready(count, bound, blocks)
    assert pool.done == count
    assert peak == together


@pytest.mark.anyio
async def test_workers_done_with_parallel_steps_exit_rather_than_wait_for_a_fan_in() -> None:
    """Ten steps block together, then one step depending on all of them becomes ready:
    one worker runs it, and the nine others exit instead of waiting to be woken."""
    count = 10
    items = list(range(count + 1))  # the ten and the fan-in
    all_in = anyio.Event()
    started = finished = most_idle = 0

    async def step(item: int) -> None:
        nonlocal started, finished, most_idle
        if item < count:
            started += 1
            if started == count:
                all_in.set()
            await all_in.wait()
            finished += 1
            if finished == count:
                pool.ready.append(count)  # the fan-in is ready once the last one is done
        most_idle = max(most_idle, pool.idle)
        pool.done += 1
        if pool.done == len(items):
            pool.last_step_done()

    pool = WorkerPool(step, items, bound=None)
    for item in range(count):
        pool.ready.append(item)
    with anyio.fail_after(30):  # a deadlock guard only
        async with anyio.create_task_group() as tg:
            pool.start(tg)
    assert pool.done == count + 1
    assert most_idle == 0
