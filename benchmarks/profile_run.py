"""One workload's program in a loop, for a sampling profiler: where does a run's time go?

The suite says *how much* slower than raw anyio asyncdag is; this says *where*.  It
runs one program of one workload (asyncdag or a raw baseline) again and again and
prints, per run, wall time, CPU time and the share the cyclic garbage collector took
(``gc.callbacks``).  Run it under py-spy, which samples without slowing small calls
the way cProfile does::

    py-spy record -f raw -r 200 -o w9.txt -- .venv/bin/python benchmarks/profile_run.py W9
    .venv/bin/python benchmarks/profile_run.py W3 --program worker-pool --no-gc
    .venv/bin/python benchmarks/profile_run.py W3 --unbounded --program task-per-node
    .venv/bin/python benchmarks/profile_run.py W5 --size 100000 --memory

``--no-gc`` disables the collector during each run (it still collects between runs),
so samples land on the code that does the work instead of on whichever line
happened to trigger a collection.  ``--memory`` runs once under tracemalloc and
prints the bytes per node each source line still holds after the run (the result
kept alive, as a caller would), then the definition's own bytes per node.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from typing import Any

import anyio
from _harness import quiet_asyncdag_logging, use_working_tree

use_working_tree()

import raw_anyio  # noqa: E402  (after use_working_tree, like the suite's own modules)
import workloads  # noqa: E402

DEFAULT_SIZES = {"W2": 1_000, "W3": 10_000, "W5": 100_000, "W9": 300}


def _case(workload: str, size: int, *, unbounded: bool) -> workloads.Case:
    if workload == "W2":
        return workloads.chain_case(size)
    if workload == "W9":
        return workloads.concurrent_runs_case(size, delay=0.05)
    if workload not in ("W3", "W5"):
        raise SystemExit(f"unknown workload {workload!r}; choose W2, W3, W5 or W9")
    if not unbounded:
        return workloads.wide_case(size)
    # No bound on either side: asyncdag with max_concurrency=None, raw with one task per node.
    graph = workloads.wide_graph(size)
    runner, build_s = workloads.dag_runner(
        lambda: workloads.build_wide_pipeline(size), "total", max_concurrency=None
    )

    async def task_per_node() -> Any:
        return await raw_anyio.run_dag_task_per_node(graph, limit=size + 1)

    return workloads.Case(
        name=workload,
        size=size,
        steps=size + 1,
        expected=size,
        raw={"task-per-node": task_per_node},
        dag=runner,
        build_s=build_s,
    )


class GcClock:
    """Time the cyclic collector spends while ``running`` is set."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.collections = [0, 0, 0]
        self.running = False
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if not self.running:
            return
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started
            self.collections[info["generation"]] += 1


def loop(
    case: workloads.Case, program_name: str, *, seconds: float, no_gc: bool, backend: str
) -> None:
    program = case.dag if program_name == "asyncdag" else case.raw.get(program_name)
    if program is None:
        raise SystemExit(f"{case.name} has no program {program_name!r}; try {sorted(case.raw)}")
    clock = GcClock()
    gc.callbacks.append(clock)

    async def main() -> None:
        runs, wall, cpu = 0, 0.0, 0.0
        end = time.perf_counter() + seconds
        while runs == 0 or time.perf_counter() < end:
            gc.collect()
            if no_gc:
                gc.disable()
            clock.running = True
            cpu_started, started = time.process_time(), time.perf_counter()
            value = await program()
            wall += time.perf_counter() - started
            cpu += time.process_time() - cpu_started
            clock.running = False
            gc.enable()
            if value != case.expected:
                raise SystemExit(f"{program_name} returned {value!r}, expected {case.expected!r}")
            runs += 1
        print(
            f"{case.name} {program_name} size {case.size}: {runs} runs, per run "
            f"{wall / runs * 1e3:.1f} ms wall, {cpu / runs * 1e3:.1f} ms CPU "
            f"({cpu / runs / case.steps * 1e6:.1f} µs CPU a step); the collector "
            f"{clock.seconds / wall:.0%} of wall time, collections by generation "
            f"{[round(c / runs, 1) for c in clock.collections]} a run",
            file=sys.stderr,
        )

    anyio.run(main, backend=backend)


def memory(size: int, backend: str) -> None:
    """Bytes per node that each source line holds after one W3-shaped run, and the definition's."""
    import tracemalloc

    from asyncdag import execute_pipeline_async

    async def warm_up() -> None:  # the first run imports what runs need: not per-node memory
        await execute_pipeline_async(workloads.build_wide_pipeline(2), max_concurrency=50)

    anyio.run(warm_up, backend=backend)
    tracemalloc.start(1)
    before_build = tracemalloc.take_snapshot()
    pipeline = workloads.build_wide_pipeline(size)
    gc.collect()
    built = tracemalloc.take_snapshot()
    kept: dict[str, Any] = {}

    async def run() -> None:
        kept["result"] = await execute_pipeline_async(pipeline, max_concurrency=50)

    anyio.run(run, backend=backend)
    gc.collect()
    after = tracemalloc.take_snapshot()
    nodes = size + 1
    for title, new, old in (
        ("the run (result kept)", after, built),
        ("the definition", built, before_build),
    ):
        stats = new.compare_to(old, "lineno")
        total = sum(s.size_diff for s in stats)
        print(f"{title}: {total / nodes:.0f} B a node (Python's allocator, tracemalloc)")
        for stat in stats[:15]:
            frame = stat.traceback[0]
            where = frame.filename.split("/src/")[-1].split("/benchmarks/")[-1]
            print(
                f"  {stat.size_diff / nodes:7.0f} B {stat.count_diff / nodes:5.2f} blocks  "
                f"{where}:{frame.lineno}"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workload", choices=sorted(DEFAULT_SIZES))
    parser.add_argument("--program", default="asyncdag", help="asyncdag or a raw baseline's name")
    parser.add_argument("--size", type=int, help="nodes (runs for W9)")
    parser.add_argument("--seconds", type=float, default=20.0, help="keep running this long")
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    parser.add_argument("--unbounded", action="store_true", help="W3/W5 with no bound")
    parser.add_argument("--no-gc", action="store_true", help="no cyclic collection during runs")
    parser.add_argument("--memory", action="store_true", help="bytes per node, by source line")
    args = parser.parse_args(argv)
    quiet_asyncdag_logging()
    size = args.size or DEFAULT_SIZES[args.workload]
    if args.memory:
        memory(size, args.backend)
        return 0
    loop(
        _case(args.workload, size, unbounded=args.unbounded),
        args.program,
        seconds=args.seconds,
        no_gc=args.no_gc,
        backend=args.backend,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
