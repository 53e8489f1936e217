"""DASK: what running steps on a Dask cluster buys, and what it costs per step.

Two measurements, each against a baseline measured in the same run:

- **CPU-bound speed-up.**  16 independent pure-Python steps of ~0.2 s each
  (a calibrated loop that holds the GIL): in process, sync solids run in
  threads and the GIL serialises them; on a ``LocalCluster`` of 2 worker
  processes x 1 thread they run two at a time.  Reported: in-process time /
  Dask time (close to 2x on 2 idle cores), and the cores the steps kept busy
  (the CPU seconds they got over the run's wall time: about 1 in threads, 2 on
  Dask), which says the same when other processes share the cores.
- **Per-step overhead.**  A chain of no-op steps, each taking the previous
  output, run by the engine on Dask, against hand-written Dask code doing the
  same work on the same cluster: ``client.submit`` of each step once the
  previous one finished (an engine decides each step when its inputs are
  ready; goal <= 1.3x), and, for scale, the eager chain where Dask resolves
  every dependency itself (the floor no step-by-step scheduler reaches).

    .venv/bin/python benchmarks/bench_dask.py           # 16 x 0.2 s, a chain of 200
    .venv/bin/python benchmarks/run.py --only DASK      # the same, in the suite's tables

Needs ``pip install 'asyncdag[dask]'``; the suite skips it with a note otherwise.
"""

from __future__ import annotations

import logging
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import quiet_asyncdag_logging, use_working_tree

use_working_tree()

__all__ = ["dask_available", "measure"]


def dask_available() -> str | None:
    """None when the Dask extra is installed, else why not."""
    try:
        import cloudpickle  # noqa: F401
        import distributed  # noqa: F401
    except ImportError as exc:
        return f"DASK skipped: {exc} (pip install 'asyncdag[dask]')"
    return None


# --- the work ---------------------------------------------------------------------------------


def spin(iterations: int) -> int:
    """Pure-Python work that holds the GIL the whole time."""
    total = 0
    for i in range(iterations):
        total += i % 7
    return total


def calibrate(seconds: float) -> int:
    """Iterations of :func:`spin` that take about ``seconds`` on this machine now."""
    n = 100_000
    while True:
        started = time.perf_counter()
        spin(n)
        took = time.perf_counter() - started
        if took > 0.05:
            return max(1, int(n * seconds / took))
        n *= 4


def noop(previous: Any = None) -> int:
    return 1


def cpu_pipeline(steps: int, iterations: int) -> Any:
    from asyncdag import pipeline, solid

    @solid
    def burn(i: int) -> float:
        started = time.thread_time()
        spin(iterations)
        return time.thread_time() - started  # CPU seconds this step got

    @solid
    def total(cpu: list[float]) -> float:
        return sum(cpu)

    @pipeline(name="cpu_bound")
    def p() -> None:
        total([burn.alias(f"burn{i}")(i) for i in range(steps)])

    return p


def chain_pipeline(length: int) -> Any:
    from asyncdag import pipeline, solid

    @solid
    def first() -> int:
        return 1

    @solid
    def link(previous: int) -> int:
        return 1

    @pipeline(name="chain")
    def p() -> None:
        value = first()
        for i in range(length - 1):
            value = link.alias(f"link{i}")(value)

    return p


# --- running ----------------------------------------------------------------------------------


async def _run_pipeline(p: Any, executor: Any, max_concurrency: int | None) -> float:
    return (await _run_cpu(p, executor, max_concurrency))[0]


async def _run_cpu(p: Any, executor: Any, max_concurrency: int | None) -> tuple[float, float]:
    """Wall seconds of a run, and (for the CPU pipeline) the CPU seconds its steps got."""
    from asyncdag import execute_pipeline_async

    started = time.perf_counter()
    result = await execute_pipeline_async(
        p, executor=executor, max_concurrency=max_concurrency, tracing=False
    )
    took = time.perf_counter() - started
    assert result.success, result
    cpu = result.output_for_solid("total") if p.name == "cpu_bound" else 0.0
    return took, cpu


async def _handwritten(address: str, length: int, eager: bool) -> float:
    """The same chain written directly against Dask's async client, connecting and closing
    as a run does (the engine's time includes its connection and teardown too)."""
    from distributed import Client
    from distributed.client import _wait

    started = time.perf_counter()
    async with Client(address, asynchronous=True, set_as_default=False) as client:
        future = client.submit(noop, pure=False)
        for _ in range(length - 1):
            if not eager:
                await _wait([future])  # the value stays on its worker, as the engine's does
            future = client.submit(noop, future, pure=False)
        assert await future == 1
    return time.perf_counter() - started


def measure(
    *,
    cpu_steps: int = 16,
    cpu_seconds: float = 0.2,
    chain: int = 200,
    repeats: int = 3,
    backends: tuple[str, ...] = ("asyncio", "trio"),
) -> dict[str, Any]:
    """Both measurements; medians of ``repeats`` alternated runs, per backend."""
    from distributed import LocalCluster

    from asyncdag import DaskExecutor

    quiet_asyncdag_logging()
    iterations = calibrate(cpu_seconds)
    cpu = cpu_pipeline(cpu_steps, iterations)
    links = chain_pipeline(chain)
    load = os.getloadavg()[0]
    started = time.perf_counter()
    cluster = LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",
        silence_logs=logging.CRITICAL,
    )
    startup = time.perf_counter() - started
    try:
        address = cluster.scheduler_address
        executor = DaskExecutor(cluster=cluster)
        # Warm the workers (imports, code caches) before anything is timed.
        for backend in backends:
            anyio.run(_run_pipeline, chain_pipeline(3), executor, None, backend=backend)
        samples: dict[str, list[float]] = {}

        def sample(name: str, seconds: float) -> None:
            samples.setdefault(name, []).append(seconds)

        for _ in range(repeats):
            for backend in backends:
                for name, where, bound in (("threads", None, cpu_steps), ("dask", executor, None)):
                    wall, used = anyio.run(_run_cpu, cpu, where, bound, backend=backend)
                    sample(f"cpu_{name}[{backend}]", wall)
                    # Cores the steps kept busy: about 1 in threads (the GIL), 2 on 2 workers.
                    sample(f"cores_{name}[{backend}]", used / wall)
                sample(f"chain_dask[{backend}]", anyio.run(
                    _run_pipeline, links, executor, None, backend=backend
                ))  # fmt: skip
            sample("chain_handwritten", anyio.run(_handwritten, address, chain, False))
            sample("chain_eager", anyio.run(_handwritten, address, chain, True))
    finally:
        cluster.close()
    med = {name: statistics.median(values) for name, values in samples.items()}
    hand = med["chain_handwritten"]
    rows = []
    for backend in backends:
        threads, dask = med[f"cpu_threads[{backend}]"], med[f"cpu_dask[{backend}]"]
        engine = med[f"chain_dask[{backend}]"]
        rows.append(
            {
                "backend": backend,
                "cpu_threads_s": threads,
                "cpu_dask_s": dask,
                "cpu_speedup": threads / dask,
                "cores_busy_threads": med[f"cores_threads[{backend}]"],
                "cores_busy_dask": med[f"cores_dask[{backend}]"],
                "chain_engine_ms_per_step": engine / chain * 1e3,
                "chain_handwritten_ms_per_step": hand / chain * 1e3,
                "chain_eager_ms_per_step": med["chain_eager"] / chain * 1e3,
                "overhead_ratio": engine / hand,
                "overhead_goal": "≤ 1.3x hand-written",
                "overhead_goal_met": engine / hand <= 1.3,
            }
        )
    return {
        "cpu_steps": cpu_steps,
        "cpu_seconds": cpu_seconds,
        "chain": chain,
        "repeats": repeats,
        "cluster": "LocalCluster(n_workers=2, threads_per_worker=1, processes=True)",
        "cluster_startup_s": startup,
        "loadavg_1m_at_start": load,
        "loadavg_1m_at_end": os.getloadavg()[0],
        "rows": rows,
        "samples_s": samples,
    }


def render(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=(
            f"DASK on {result['cluster']} (load {result['loadavg_1m_at_start']:.1f}→"
            f"{result['loadavg_1m_at_end']:.1f}, median of {result['repeats']})"
        )
    )
    for column in (
        "backend",
        f"{result['cpu_steps']} CPU steps: threads → Dask",
        "speed-up",
        "cores busy: threads → Dask",
        f"chain of {result['chain']}: engine / hand-written / eager (ms/step)",
        "overhead",
    ):
        table.add_column(column, justify="right")
    for row in result["rows"]:
        mark = "[green]met[/]" if row["overhead_goal_met"] else "[red]missed[/]"
        table.add_row(
            row["backend"],
            f"{row['cpu_threads_s']:.2f} s → {row['cpu_dask_s']:.2f} s",
            f"{row['cpu_speedup']:.2f}x",
            f"{row['cores_busy_threads']:.2f} → {row['cores_busy_dask']:.2f}",
            f"{row['chain_engine_ms_per_step']:.1f} / {row['chain_handwritten_ms_per_step']:.1f}"
            f" / {row['chain_eager_ms_per_step']:.1f}",
            f"{row['overhead_ratio']:.2f}x ({row['overhead_goal']}: {mark})",
        )
    Console().print(table)


def main() -> int:
    skipped = dask_available()
    if skipped is not None:
        print(skipped)
        return 0
    render(measure())
    return 0


if __name__ == "__main__":
    sys.exit(main())
