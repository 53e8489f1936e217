"""The worker tasks that run ready steps, grown as real concurrency needs, up to the run's bound.

Spawning a task costs more than running a no-op step, so spawn cost is paid
per unit of *parallelism*, not per node: a chain of 10,000 steps runs on one
worker, and so do 10,000 independent steps that never await (their worker
yields to the loop every few steps, and one more worker takes turns with it).
While work waits and no worker is free to come back for it, the pool starts
one more worker, a probe; if that probe, a loop tick later, finds every other
worker blocked inside a step (awaiting I/O, a thread, a sleep), the steps are
the kind that wait, and it starts a worker for everything still queued at
once, so steps that await start one tick later than a task of their own
would, not several.  A worker that finds the ready queue empty waits to be
woken rather than exiting and being spawned again.  Everything here runs on
the event loop's thread between awaits, so it needs no locks.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import deque
from collections.abc import Awaitable, Callable, Sized
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import anyio.lowlevel

if TYPE_CHECKING:
    import anyio.abc

__all__ = ["PriorityQueue", "ReadyQueue", "WorkerPool", "ready_queue"]

# A worker yields to the event loop at least this often, even when its steps never await.
_STEPS_PER_CHECKPOINT = 32
# Workers that find no work wait for more, up to this many; the rest exit.  Waking a
# waiting worker is cheaper than spawning one, but thousands of idle workers cost memory
# and a thundering herd at the end of the run.  A worker also exits when the steps left
# to start are no more than the workers still inside steps: each of those takes one when
# it is done (a fan-in after parallel steps needs one worker, not a dozen waiting).
_MAX_IDLE_WORKERS = 16


class ReadyQueue(Protocol):
    """What the engine needs of a queue of steps: a deque's ``append``/``popleft``/``len``."""

    def append(self, item: Any, /) -> None: ...
    def popleft(self) -> Any: ...
    def __len__(self) -> int: ...


class PriorityQueue:
    """Steps by priority, highest first; equal priorities first in, first out.

    Used only for plans where some solid has a priority: a heap costs more per
    step than a deque, and the order it buys matters only then.
    """

    __slots__ = ("_heap", "_order")

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, Any]] = []
        self._order = itertools.count()  # ties go in arrival order; states never compare

    def append(self, state: Any, /) -> None:
        heapq.heappush(self._heap, (-state.step.priority, next(self._order), state))

    def popleft(self) -> Any:
        return heapq.heappop(self._heap)[2]

    def __len__(self) -> int:
        return len(self._heap)


def ready_queue(prioritized: bool) -> ReadyQueue:
    """A queue for ready steps: a plain deque unless the plan has priorities."""
    return PriorityQueue() if prioritized else deque()


class WorkerPool:
    """Runs what the ready queue holds on at most ``bound`` worker tasks.

    The engine appends steps to :attr:`ready`, calls :meth:`spawn` when it did
    so outside a worker, counts :attr:`done` once per step that reached a
    final state, and calls :meth:`last_step_done` when that count reaches the
    length of the run's step list (which grows while a fan-out yields): idle
    workers then exit and the task group can close.
    """

    __slots__ = (
        "_run_step",
        "_steps",
        "_tg",
        "_wake",
        "arriving",
        "bound",
        "done",
        "idle",
        "ready",
        "running",
        "workers",
        "yielding",
    )

    def __init__(
        self,
        run_step: Callable[[Any], Awaitable[None]],
        steps: Sized,
        *,
        bound: int | None,
        ready: ReadyQueue | None = None,
    ) -> None:
        self._run_step = run_step
        self._steps = steps
        self.bound = bound if bound else math.inf
        self.ready: ReadyQueue = ready if ready is not None else deque()
        self._wake: anyio.Event | None = None  # made by the first worker to wait
        self._tg: anyio.abc.TaskGroup | None = None
        # The counters, and how they agree at every await (when no worker is executing):
        #   workers == idle + arriving + running + yielding <= bound
        #   done <= len(steps), and the run is over when they are equal
        # idle: waiting for `_wake`.  arriving: spawned or woken but not yet at the ready
        # queue; each will take one item, so `spawn` starts no second worker for it.
        # running: inside a step (its whole life: resources, attempt, hooks); while any
        # other code runs, these are all blocked on an await.  yielding: between steps, at
        # the checkpoint every few steps, and back soon for more.  The worker executing
        # code between two steps counts in none of them.  done: steps in a final state,
        # counted by the engine in one place (a step is done once, whichever worker,
        # retry or skip ended it).
        self.workers = 0
        self.idle = 0
        self.arriving = 0
        self.running = 0
        self.yielding = 0
        self.done = 0

    def start(self, tg: anyio.abc.TaskGroup) -> None:
        """Start workers for what is ready, in ``tg``, which lives as long as the run."""
        self._tg = tg
        self.spawn()

    def spawn(self, freeing: int = 0) -> None:
        """Wake idle workers for what the ready queue holds, and grow if work still waits.

        ``freeing`` is 1 when called by a worker about to take an item itself.
        Workers are started only when none is free to come back for the work
        (idle, arriving, or yielding between steps): one, a probe, when no other
        worker is inside a step; and a worker for every queued item when every
        other worker is blocked inside one (see the module's docstring).
        """
        backlog = len(self.ready) - freeing - self.arriving
        if backlog <= 0:
            return
        if self.idle:
            backlog -= self.idle
            self._wake_idle()
        if backlog <= 0 or self.arriving or self.yielding or self.workers >= self.bound:
            return  # those arriving or yielding take the work, or decide when they come
        tg = self._tg
        assert tg is not None, "spawn() before start()"
        grow = int(min(backlog if self.running else 1, self.bound - self.workers))
        self.workers += grow
        self.arriving += grow
        for _ in range(grow):
            tg.start_soon(self._worker)

    def last_step_done(self) -> None:
        """Every step reached a final state: let idle workers see the run is over and exit."""
        if self.idle:
            self._wake_idle()

    def _wake_idle(self) -> None:
        # Woken workers stop counting as idle now, not when they next run, so that
        # a second call before they run does not count on them twice.
        self.arriving += self.idle
        self.idle = 0
        wake = self._wake
        assert wake is not None, "idle workers wait on it"
        self._wake = None
        wake.set()

    async def _worker(self) -> None:
        ready = self.ready
        steps = self._steps  # grows while a fan-out yields: compare with its length
        run_step = self._run_step
        streak = 0
        self.arriving -= 1
        try:
            while True:
                if ready:
                    self.spawn(1)  # before taking the item: the step may block
                    self.running += 1
                    try:
                        await run_step(ready.popleft())
                    finally:
                        self.running -= 1
                    streak += 1
                    if streak >= _STEPS_PER_CHECKPOINT:
                        # Steps that never await would otherwise hold the loop for the whole
                        # run; a checkpoint lets other tasks (and cancellation) in.
                        streak = 0
                        self.yielding += 1
                        try:
                            await anyio.lowlevel.checkpoint()
                        finally:
                            self.yielding -= 1
                    continue
                unfinished = len(steps) - self.done
                if (
                    unfinished - self.running <= self.running  # those still in steps suffice
                    or self.idle >= _MAX_IDLE_WORKERS
                ):
                    return
                self.idle += 1
                wake = self._wake
                if wake is None:
                    wake = self._wake = anyio.Event()
                try:
                    await wake.wait()
                except BaseException:
                    if not wake.is_set():
                        self.idle -= 1
                    raise
                self.arriving -= 1
        finally:
            self.workers -= 1
