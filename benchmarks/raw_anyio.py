"""The baselines: hand-written anyio programs that do what each workload's pipeline does.

They are the physical limit for an engine built on anyio: a task group, a
CapacityLimiter, values passed by hand and dependency counting, with nothing
else (no events, no context, no plan objects).  An asyncdag run is reported as
a ratio against them, measured in the same process and event loop, alternated.

Two DAG executors are here because either could be the faster one on a given
backend: one task per node (what most people write first) and a fixed pool of
workers fed by a ready queue (spawn cost paid per worker, not per node).  The
suite measures both and takes the faster as the baseline, so a ratio is always
against the best hand-written program, never a strawman.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import anyio
import anyio.to_thread
import attrs

__all__ = [
    "RawGraph",
    "run_concurrently",
    "run_dag_task_per_node",
    "run_dag_worker_pool",
    "run_http_fetch",
    "run_sync_threads",
    "run_wide_sleep",
]


@attrs.frozen
class RawGraph:
    """A DAG for the raw executors, as plain lists indexed by node.

    ``parents[i]`` are the nodes whose results node ``i`` receives, in order.
    When ``fan_in[i]`` is true node ``i`` gets them as one list (asyncdag's
    fan-in input); otherwise as positional arguments.  ``is_sync[i]`` sends the
    node to a worker thread, as asyncdag does with a sync solid.  ``sink`` is
    the node whose result the program returns.
    """

    fns: Sequence[Callable[..., Any]]
    parents: Sequence[Sequence[int]]
    fan_in: Sequence[bool]
    is_sync: Sequence[bool]
    sink: int


def _children(graph: RawGraph) -> tuple[list[list[int]], list[int]]:
    children: list[list[int]] = [[] for _ in graph.fns]
    for node, ups in enumerate(graph.parents):
        for up in ups:
            children[up].append(node)
    return children, [len(ups) for ups in graph.parents]


async def _call(graph: RawGraph, node: int, results: list[Any]) -> Any:
    ups = graph.parents[node]
    args = [[results[u] for u in ups]] if graph.fan_in[node] else [results[u] for u in ups]
    fn = graph.fns[node]
    if graph.is_sync[node]:
        return await anyio.to_thread.run_sync(fn, *args)
    return await fn(*args)


async def run_dag_task_per_node(graph: RawGraph, *, limit: int) -> Any:
    """One task per node, started when its last parent finishes; the limiter bounds running nodes."""
    children, waiting = _children(graph)
    results: list[Any] = [None] * len(graph.fns)
    limiter = anyio.CapacityLimiter(limit)

    async with anyio.create_task_group() as tg:

        async def run(node: int) -> None:
            async with limiter:
                results[node] = await _call(graph, node, results)
            for child in children[node]:
                waiting[child] -= 1
                if waiting[child] == 0:
                    tg.start_soon(run, child)

        for node, count in enumerate(list(waiting)):
            if count == 0:
                tg.start_soon(run, node)
    return results[graph.sink]


async def run_dag_worker_pool(graph: RawGraph, *, limit: int) -> Any:
    """``limit`` workers take ready nodes from a deque; an Event wakes idle workers.

    The bound is the number of workers, so no limiter is needed.  A worker that
    finds the deque empty parks on the current Event until a finishing node
    readies more work (or the last node finishes).
    """
    children, waiting = _children(graph)
    results: list[Any] = [None] * len(graph.fns)
    ready = [node for node, count in enumerate(waiting) if count == 0]
    ready.reverse()  # pop() from the end takes nodes in index order
    left = len(graph.fns)
    wake = anyio.Event()

    async def worker() -> None:
        nonlocal left, wake
        while left:
            if not ready:
                await wake.wait()
                continue
            node = ready.pop()
            results[node] = await _call(graph, node, results)
            left -= 1
            readied = False
            for child in children[node]:
                waiting[child] -= 1
                if waiting[child] == 0:
                    ready.append(child)
                    readied = True
            if readied or not left:
                wake.set()
                wake = anyio.Event()

    async with anyio.create_task_group() as tg:
        for _ in range(min(limit, len(graph.fns))):
            tg.start_soon(worker)
    return results[graph.sink]


async def run_concurrently(program: Callable[[], Any], n: int) -> list[Any]:
    """W9: ``n`` runs of ``program`` started at once in one task group; their results in order.

    Both sides of W9 use it (asyncdag's ``execute_pipeline_async`` or a raw executor as
    ``program``), so the only difference between them is what one run costs.
    """
    results: list[Any] = [None] * n

    async def one(i: int) -> None:
        results[i] = await program()

    async with anyio.create_task_group() as tg:
        for i in range(n):
            tg.start_soon(one, i)
    return results


async def run_wide_sleep(n: int, *, delay: float, limit: int) -> int:
    """W1: ``n`` independent sleeps under a limiter, then a sum of their results."""
    results = [0] * n
    limiter = anyio.CapacityLimiter(limit)

    async def step(i: int) -> None:
        async with limiter:
            await anyio.sleep(delay)
            results[i] = 1

    async with anyio.create_task_group() as tg:
        for i in range(n):
            tg.start_soon(step, i)
    return sum(results)


async def run_sync_threads(n: int, *, delay: float, limit: int) -> int:
    """W7: ``n`` blocking sleeps in worker threads, at most ``limit`` at a time, then a sum."""
    results = [0] * n
    limiter = anyio.CapacityLimiter(limit)

    def block() -> int:
        time.sleep(delay)
        return 1

    async def step(i: int) -> None:
        results[i] = await anyio.to_thread.run_sync(block, limiter=limiter)

    async with anyio.create_task_group() as tg:
        for i in range(n):
            tg.start_soon(step, i)
    return sum(results)


async def run_http_fetch(
    make_client: Callable[[], Any],
    paths: Sequence[str],
    *,
    limit: int,
) -> int:
    """W6: GET every path through one shared client, at most ``limit`` in flight; total bytes."""
    sizes = [0] * len(paths)
    limiter = anyio.CapacityLimiter(limit)
    async with make_client() as client:

        async def fetch(i: int) -> None:
            async with limiter:
                response = await client.get(paths[i])
            response.raise_for_status()
            if response.content != paths[i].encode():
                raise RuntimeError(f"{paths[i]} answered {response.content[:40]!r}")
            sizes[i] = len(response.content)

        async with anyio.create_task_group() as tg:
            for i in range(len(paths)):
                tg.start_soon(fetch, i)
    return sum(sizes)
