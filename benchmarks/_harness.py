"""Timing and bookkeeping shared by run.py and the subprocess worker.

Programs are alternated (rotated each repeat) inside one event loop, so drift
on a shared machine (another process waking, CPU frequency) hits every side
alike; medians, not means, so one stall does not move the figure.  A garbage
collection runs before each timed run, and the collector stays enabled during
it: engines that allocate more pay for it, as they would in production.
"""

from __future__ import annotations

import gc
import logging
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

__all__ = [
    "BENCH_DIR",
    "ROOT",
    "SRC",
    "Around",
    "LoopStall",
    "WrongResultError",
    "alternate",
    "median",
    "quiet_asyncdag_logging",
    "use_working_tree",
]

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
SRC = ROOT / "src"

Program = Callable[[], Awaitable[Any]]


class WrongResultError(AssertionError):
    """A program returned something other than the workload's known answer."""


class Around(Protocol):
    """Work done before and after each run of a program, outside the timed region.

    The peers use it to let a server's backlog drain before the next run starts,
    so no run pays for the one before it.
    """

    async def before(self, name: str) -> None: ...

    async def after(self, name: str) -> None: ...


def use_working_tree() -> None:
    """Benchmark the asyncdag in this checkout, not whatever copy is installed."""
    for path in (str(SRC), str(BENCH_DIR)):
        if path not in sys.path:
            sys.path.insert(0, path)


def quiet_asyncdag_logging() -> None:
    """Keep the console event logger from printing, so printing is not what gets measured."""
    logging.getLogger("asyncdag").setLevel(logging.WARNING)


class LoopStall:
    """The worst lateness of a task that asks to wake every ``period``: how long the loop stalled.

    ``await watch(program)`` runs the heartbeat beside ``program`` in the same event loop
    and appends the worst lateness seen (seconds past the requested wake-up) to
    ``samples[name]``.  A loop busy with a long stretch of synchronous work (per-run setup,
    a burst of events, a garbage collection) wakes the heartbeat late by that much: it is
    what any other task of the application (a web request, say) waits on top of its own work.
    """

    def __init__(self, period: float = 0.005) -> None:
        self.period = period
        self.samples: dict[str, list[float]] = {}

    def wrap(self, name: str, program: Program) -> Program:
        """``program`` with the heartbeat beside it; each run adds one sample under ``name``."""
        self.samples.setdefault(name, [])

        async def watched() -> Any:
            return await self.watch(name, program)

        return watched

    async def watch(self, name: str, program: Program) -> Any:
        import anyio

        worst = 0.0

        async def beat(*, task_status: Any) -> None:
            nonlocal worst
            period = self.period
            task_status.started()  # the first wake-up is due before the program starts
            while True:
                due = anyio.current_time() + period
                await anyio.sleep(period)
                late = anyio.current_time() - due
                if late > worst:
                    worst = late

        async with anyio.create_task_group() as tg:
            await tg.start(beat)
            value = await program()
            tg.cancel_scope.cancel()
        self.samples.setdefault(name, []).append(worst)
        return value

    def timed_samples(self, name: str, runs: int) -> list[float]:
        """The last ``runs`` samples of ``name``: the timed runs, without the warm-up's."""
        return self.samples.get(name, [])[-runs:] if runs else []


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


async def _timed(name: str, program: Program, expected: Any, around: Around | None) -> float:
    if around is not None:
        await around.before(name)
    gc.collect()
    started = time.perf_counter()
    value = await program()
    elapsed = time.perf_counter() - started
    if around is not None:
        await around.after(name)
    if value != expected:
        raise WrongResultError(f"{name} returned {value!r}, expected {expected!r}")
    return elapsed


async def alternate(
    programs: Mapping[str, Program],
    *,
    expected: Any,
    repeats: int,
    warmup: int,
    budget_s: float,
    min_repeats: int = 1,
    around: Around | None = None,
) -> dict[str, list[float]]:
    """Run each program ``warmup`` times untimed, then ``repeats`` times each, rotating the order.

    Stops early once ``budget_s`` has been spent and every program has at least
    ``min_repeats`` samples, so one unexpectedly slow program cannot blow the
    suite's time limit; the JSON records how many samples each figure has.
    ``around``'s hooks run before and after every run (warm-up included), untimed.
    """
    names = list(programs)
    for _ in range(warmup):
        for name in names:
            await _timed(name, programs[name], expected, around)
    samples: dict[str, list[float]] = {name: [] for name in names}
    started = time.perf_counter()
    for rep in range(repeats):
        shift = rep % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(await _timed(name, programs[name], expected, around))
        if rep + 1 >= min_repeats and time.perf_counter() - started > budget_s:
            break
    return samples
