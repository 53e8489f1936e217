"""The workloads, each as an asyncdag pipeline and as the raw anyio programs it is measured against.

A :class:`Case` holds zero-argument coroutine functions that each do one whole
run and return its result, plus the result they must return: every timed run
is checked, so a fast wrong answer can never look like a win.

asyncdag is imported lazily, inside the pipeline builders, so the raw
baselines and the harness run (and can be developed) without the engine.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import anyio
import attrs
import raw_anyio
from _harness import LoopStall
from raw_anyio import RawGraph

__all__ = [
    "MODULO",
    "Case",
    "DagRunner",
    "chain_case",
    "concurrent_runs_case",
    "dag_runner",
    "http_case",
    "random_dag",
    "random_dag_case",
    "sync_threads_case",
    "wide_case",
    "wide_sleep_case",
]

# Values in the random DAG are kept small so arithmetic stays a no-op.
MODULO = 1_000_003

Program = Callable[[], Awaitable[Any]]


@attrs.frozen
class Case:
    """One workload at one size: the programs to alternate and what they must all return.

    ``steps`` is the node count that per-step figures divide by; ``ideal_s``
    the makespan a perfect scheduler would reach (only for sleeping workloads).
    ``raw`` maps a baseline's name to its program; the fastest is the baseline.
    ``build_s`` is how long defining the asyncdag pipeline took (not timed in runs).
    ``stall``, when set, watched every program's runs with a heartbeat (W9's loop stall).
    """

    name: str
    size: int
    steps: int
    expected: Any
    raw: Mapping[str, Program]
    dag: Program | None
    ideal_s: float | None = None
    build_s: float | None = None
    dag_error: str | None = None
    stall: LoopStall | None = None


# --- asyncdag side ------------------------------------------------------------------------------


@attrs.frozen
class DagRunner:
    """Runs one pipeline and returns one solid's output, failing loudly on an unsuccessful run."""

    pipeline: Any
    output: str
    options: Mapping[str, Any]

    async def __call__(self, **extra: Any) -> Any:
        from asyncdag import execute_pipeline_async

        result = await execute_pipeline_async(
            self.pipeline, raise_on_error=True, **self.options, **extra
        )
        if not result.success:
            raise RuntimeError(f"pipeline {self.pipeline!r} did not succeed")
        return result.output_for_solid(self.output)


def dag_runner(build: Callable[[], Any], output: str, **options: Any) -> tuple[DagRunner, float]:
    """Build a pipeline (timed separately from runs) and wrap it for execution."""
    started = time.perf_counter()
    built = build()
    return DagRunner(built, output, options), time.perf_counter() - started


def _maybe_dag(
    with_dag: bool, build: Callable[[], Any], output: str, **options: Any
) -> tuple[Program | None, float | None, str | None]:
    """The asyncdag program and its build time, or why there is none (the raw side still runs)."""
    if not with_dag:
        return None, None, None
    try:
        runner, build_s = dag_runner(build, output, **options)
    except ImportError as exc:
        return None, None, f"asyncdag not importable: {exc}"
    return runner, build_s, None


# --- the no-op functions both sides share ----------------------------------------------------


async def _one() -> int:
    return 1


async def _zero() -> int:
    return 0


async def _inc(x: int) -> int:
    return x + 1


async def _total(xs: list[int]) -> int:
    return sum(xs)


async def _mix_async(xs: list[int]) -> int:
    return (sum(xs) + 1) % MODULO


def _mix_sync(xs: list[int]) -> int:
    return (sum(xs) + 1) % MODULO


def _source_sync() -> int:
    return 1


def _graph(
    fns: Sequence[Callable[..., Any]],
    parents: Sequence[Sequence[int]],
    fan_in: Sequence[bool],
    is_sync: Sequence[bool] | None = None,
) -> RawGraph:
    return RawGraph(
        fns=fns,
        parents=parents,
        fan_in=fan_in,
        is_sync=is_sync if is_sync is not None else [False] * len(fns),
        sink=len(fns) - 1,
    )


def _raw_dag_programs(graph: RawGraph, limit: int) -> dict[str, Program]:
    async def task_per_node() -> Any:
        return await raw_anyio.run_dag_task_per_node(graph, limit=limit)

    async def worker_pool() -> Any:
        return await raw_anyio.run_dag_worker_pool(graph, limit=limit)

    return {"task-per-node": task_per_node, "worker-pool": worker_pool}


# --- W1: wide I/O -------------------------------------------------------------------------------


def wide_sleep_case(
    n: int, *, delay: float, limit: int | None, with_dag: bool = True, name: str = "W1"
) -> Case:
    """W1: ``n`` independent ``anyio.sleep(delay)`` steps, at most ``limit`` at once (None: no
    bound, every sleep at once: W1U), one fan-in."""

    async def raw() -> int:
        return await raw_anyio.run_wide_sleep(n, delay=delay, limit=limit or n)

    async def nap() -> int:
        await anyio.sleep(delay)
        return 1

    return _timed_wide_case(
        name,
        n,
        step=nap,
        pipeline_name=f"w1_wide_io_{n}",
        delay=delay,
        limit=limit,
        raw=("task-per-node", raw),
        with_dag=with_dag,
    )


def _timed_wide_case(
    name: str,
    n: int,
    *,
    step: Callable[[], Any],
    pipeline_name: str,
    delay: float,
    limit: int | None,
    raw: tuple[str, Program],
    with_dag: bool,
) -> Case:
    """W1 and W7: ``n`` steps that each take ``delay`` and a fan-in; ideal is full waves of
    ``limit`` (one wave with no limit)."""
    dag, build_s, error = _maybe_dag(
        with_dag,
        lambda: build_wide_pipeline(n, step=step, name=pipeline_name),
        "total",
        max_concurrency=limit,
    )
    return Case(
        name=name,
        size=n,
        steps=n + 1,
        expected=n,
        raw=dict([raw]),
        dag=dag,
        ideal_s=-(-n // (limit or n)) * delay,
        build_s=build_s,
        dag_error=error,
    )


# --- W2: chain ----------------------------------------------------------------------------------


def chain_case(n: int, *, limit: int = 50, with_dag: bool = True) -> Case:
    """W2: ``n`` no-op async steps in a chain, each adding one to what it receives."""
    graph = _graph(
        fns=[_zero] + [_inc] * (n - 1),
        parents=[()] + [(i,) for i in range(n - 1)],
        fan_in=[False] * n,
    )

    def build() -> Any:
        from asyncdag import pipeline, solid

        start = solid(name="start")(_zero)
        inc = solid(name="inc")(_inc)

        @pipeline(name=f"w2_chain_{n}")
        def body() -> None:
            value = start.alias("s0")()
            for i in range(1, n):
                value = inc.alias(f"s{i}")(value)

        return body

    dag, build_s, error = _maybe_dag(with_dag, build, f"s{n - 1}", max_concurrency=limit)
    return Case(
        name="W2",
        size=n,
        steps=n,
        expected=n - 1,
        raw=_raw_dag_programs(graph, limit),
        dag=dag,
        build_s=build_s,
        dag_error=error,
    )


# --- W3 and W5: wide ----------------------------------------------------------------------------


def wide_graph(n: int) -> RawGraph:
    """``n`` independent no-op steps and one fan-in over all of them."""
    return _graph(
        fns=[_one] * n + [_total],
        parents=[()] * n + [tuple(range(n))],
        fan_in=[False] * n + [True],
    )


def build_wide_pipeline(n: int, *, step: Callable[..., Any] = _one, name: str | None = None) -> Any:
    """``n`` copies of ``step`` (nodes s0..s{n-1}) and one fan-in ``total``: the W1, W3 and W7 shape."""
    from asyncdag import pipeline, solid

    one = solid(name=step.__name__.lstrip("_"))(step)
    total = solid(name="total")(_total)

    @pipeline(name=name or f"w3_wide_{n}")
    def body() -> None:
        total.alias("total")([one.alias(f"s{i}")() for i in range(n)])

    return body


def wide_case(n: int, *, limit: int | None = 50, with_dag: bool = True, name: str = "W3") -> Case:
    """W3: ``n`` no-op async steps and one fan-in.  With no ``limit`` (W3U) asyncdag runs
    without ``max_concurrency`` against what a user writes then: a task per node."""
    dag, build_s, error = _maybe_dag(
        with_dag, lambda: build_wide_pipeline(n), "total", max_concurrency=limit
    )
    raw = _raw_dag_programs(wide_graph(n), limit or n + 1)
    if limit is None:
        raw = {"task-per-node": raw["task-per-node"]}
    return Case(
        name=name,
        size=n,
        steps=n + 1,
        expected=n,
        raw=raw,
        dag=dag,
        build_s=build_s,
        dag_error=error,
    )


# --- W4: random DAG -----------------------------------------------------------------------------


@attrs.frozen
class RandomDag:
    """Parents of each node (all earlier, so index order is topological) and which nodes are sync."""

    parents: tuple[tuple[int, ...], ...]
    is_sync: tuple[bool, ...]

    @property
    def sinks(self) -> tuple[int, ...]:
        has_child = {up for ups in self.parents for up in ups}
        return tuple(i for i in range(len(self.parents)) if i not in has_child)

    def expected(self) -> int:
        """The sink's value, computed sequentially: what both programs must return."""
        values: list[int] = []
        for ups in self.parents:
            values.append((sum(values[u] for u in ups) + 1) % MODULO if ups else 1)
        return sum(values[s] for s in self.sinks)


def random_dag(n: int, *, edges: int = 3, sync_share: float = 0.25, seed: int = 6) -> RandomDag:
    """A seeded random DAG: node i takes ``min(i, edges)`` distinct parents among nodes 0..i-1."""
    rng = random.Random(seed)
    parents = tuple(
        tuple(sorted(rng.sample(range(i), min(i, edges)))) if i else () for i in range(n)
    )
    is_sync = tuple(rng.random() < sync_share for _ in range(n))
    return RandomDag(parents=parents, is_sync=is_sync)


def random_dag_case(n: int, *, limit: int = 50, seed: int = 6, with_dag: bool = True) -> Case:
    """W4: ``n`` mixed sync/async no-op steps, ~3 edges each, plus a fan-in over the sinks."""
    spec = random_dag(n, seed=seed)
    sinks = spec.sinks
    fns: list[Callable[..., Any]] = []
    for i, ups in enumerate(spec.parents):
        if not ups:
            fns.append(_source_sync if spec.is_sync[i] else _one)
        else:
            fns.append(_mix_sync if spec.is_sync[i] else _mix_async)
    graph = _graph(
        fns=[*fns, _total],
        parents=[*spec.parents, sinks],
        fan_in=[bool(ups) for ups in spec.parents] + [True],
        is_sync=[*spec.is_sync, False],
    )

    def build() -> Any:
        from asyncdag import pipeline, solid

        source_a = solid(name="source_a")(_one)
        source_s = solid(name="source_s")(_source_sync)
        mix_a = solid(name="mix_a")(_mix_async)
        mix_s = solid(name="mix_s")(_mix_sync)
        total = solid(name="total")(_total)

        @pipeline(name=f"w4_random_{n}")
        def body() -> None:
            handles: list[Any] = []
            for i, ups in enumerate(spec.parents):
                sync = spec.is_sync[i]
                if not ups:
                    handles.append((source_s if sync else source_a).alias(f"n{i}")())
                else:
                    step = mix_s if sync else mix_a
                    handles.append(step.alias(f"n{i}")([handles[u] for u in ups]))
            total.alias("total")([handles[s] for s in sinks])

        return body

    dag, build_s, error = _maybe_dag(with_dag, build, "total", max_concurrency=limit)
    return Case(
        name="W4",
        size=n,
        steps=n + 1,
        expected=spec.expected(),
        raw=_raw_dag_programs(graph, limit),
        dag=dag,
        build_s=build_s,
        dag_error=error,
    )


# --- W6: real I/O -------------------------------------------------------------------------------


def _client_factory(base_url: str, limit: int) -> Callable[[], Any]:
    def make() -> Any:
        import httpx

        return httpx.AsyncClient(
            base_url=base_url,
            limits=httpx.Limits(max_connections=limit, max_keepalive_connections=limit),
            trust_env=False,
        )

    return make


def http_case(n: int, *, base_url: str, limit: int = 50, with_dag: bool = True) -> Case:
    """W6: GET ``n`` URLs from a local server through one shared httpx.AsyncClient, bound ``limit``."""
    paths = [f"/item/{i}" for i in range(n)]
    make_client = _client_factory(base_url, limit)

    async def raw() -> int:
        return await raw_anyio.run_http_fetch(make_client, paths, limit=limit)

    def build() -> Any:
        from asyncdag import pipeline, resource, solid

        @resource
        async def http_client() -> Any:
            async with make_client() as client:
                yield client

        @solid(pool="http", required_resources={"http"})
        async def fetch(context: Any, path: str) -> int:
            response = await context.resources.http.get(path)
            response.raise_for_status()
            if response.content != path.encode():
                raise RuntimeError(f"{path} answered {response.content[:40]!r}")
            return len(response.content)

        total = solid(name="total")(_total)

        @pipeline(name=f"w6_http_{n}", resources={"http": http_client})
        def body() -> None:
            total.alias("total")([fetch.alias(f"f{i}")(path) for i, path in enumerate(paths)])

        return body

    dag, build_s, error = _maybe_dag(
        with_dag, build, "total", max_concurrency=limit, concurrency_limits={"http": limit}
    )
    return Case(
        name="W6",
        size=n,
        steps=n + 1,
        expected=sum(len(p) for p in paths),
        raw={"task-per-node": raw},
        dag=dag,
        build_s=build_s,
        dag_error=error,
    )


# --- W7: sync steps in threads ------------------------------------------------------------------


def sync_threads_case(n: int, *, delay: float, limit: int, with_dag: bool = True) -> Case:
    """W7: ``n`` blocking ``time.sleep(delay)`` steps in worker threads, at most ``limit`` at once."""

    async def raw() -> int:
        return await raw_anyio.run_sync_threads(n, delay=delay, limit=limit)

    def block() -> int:
        time.sleep(delay)
        return 1

    return _timed_wide_case(
        "W7",
        n,
        step=block,
        pipeline_name=f"w7_sync_{n}",
        delay=delay,
        limit=limit,
        raw=("to_thread", raw),
        with_dag=with_dag,
    )


# --- W8: dynamic fan-out --------------------------------------------------------------------------

DYNAMIC_KEY = "k{:06d}"


def build_dynamic_pipeline(n: int) -> Any:
    """An async generator yields ``n`` items; each is mapped to a no-op as it is yielded; a sum collects."""
    from asyncdag import DynamicOut, DynamicOutput, pipeline, solid

    @solid(outs={"items": DynamicOut()})
    async def produce():  # type: ignore[no-untyped-def]
        for i in range(n):
            yield DynamicOutput(i, mapping_key=DYNAMIC_KEY.format(i))

    @solid
    async def work(x: int) -> int:
        return x + 1

    @solid
    def total(values: list[int]) -> int:
        return sum(values)

    @pipeline(name=f"w8_dynamic_{n}")
    def dynamic_bench() -> None:
        total(produce().map(work).collect())

    return dynamic_bench


async def run_dynamic_raw(n: int, *, limit: int) -> int:
    """The same generator feeding a bounded stream read by ``limit`` workers; results summed in key order."""
    import anyio.abc

    async def produce():  # type: ignore[no-untyped-def]
        for i in range(n):
            yield DYNAMIC_KEY.format(i), i

    results: dict[str, int] = {}
    send, receive = anyio.create_memory_object_stream[tuple[str, int]](limit)

    async def worker(items: anyio.abc.ObjectReceiveStream[tuple[str, int]]) -> None:
        async with items:
            async for key, value in items:
                results[key] = value + 1

    async with anyio.create_task_group() as tg:
        for _ in range(limit):
            tg.start_soon(worker, receive.clone())
        receive.close()
        async with send:
            async for item in produce():
                await send.send(item)
    return sum(results[k] for k in sorted(results))


def dynamic_case(n: int, *, limit: int = 50, with_dag: bool = True) -> Case:
    """W8: ``n`` dynamic items through map and collect, streaming, bound ``limit``."""
    dag, build_s, error = _maybe_dag(
        with_dag, lambda: build_dynamic_pipeline(n), "total", max_concurrency=limit
    )
    return Case(
        name="W8",
        size=n,
        steps=n + 2,
        expected=sum(range(1, n + 1)),
        raw={"stream-workers": lambda: run_dynamic_raw(n, limit=limit)},
        dag=dag,
        build_s=build_s,
        dag_error=error,
    )


# --- W9: many runs at once ------------------------------------------------------------------------

W9_WIDTH = 18  # parallel sleeps between the source and the merge: 20 steps a run


def concurrent_runs_case(
    runs: int, *, delay: float, width: int = W9_WIDTH, with_dag: bool = True
) -> Case:
    """W9: ``runs`` runs of source → ``width`` parallel ``anyio.sleep(delay)`` → merge, all at once.

    What a web service awaiting runs sees: the same pipeline started ``runs`` times in one
    event loop (one ``execute_pipeline_async`` per run in a task group, no bound), against
    the raw executors running the same graph as many times at once.  Every program runs
    beside a 5 ms heartbeat task; its worst lateness is the loop stall the runs cause.
    """

    async def nap(x: int) -> int:
        await anyio.sleep(delay)
        return x

    graph = _graph(
        fns=[_one] + [nap] * width + [_total],
        parents=[()] + [(0,)] * width + [tuple(range(1, width + 1))],
        fan_in=[False] * (width + 1) + [True],
    )

    def build() -> Any:
        from asyncdag import pipeline, solid

        source = solid(name="source")(_one)
        sleep = solid(name="nap")(nap)
        merge = solid(name="merge")(_total)

        @pipeline(name=f"w9_run_{width + 2}_steps")
        def body() -> None:
            value = source()
            merge([sleep.alias(f"nap{i}")(value) for i in range(width)])

        return body

    stall = LoopStall(0.005)

    def many(program: Program) -> Program:
        async def all_at_once() -> int:
            return sum(await raw_anyio.run_concurrently(program, runs))

        return all_at_once

    one_run = _raw_dag_programs(graph, limit=width + 2)
    raw = {name: stall.wrap(name, many(program)) for name, program in one_run.items()}
    dag, build_s, error = _maybe_dag(with_dag, build, "merge")
    return Case(
        name="W9",
        size=runs,
        steps=runs * (width + 2),
        expected=runs * width,
        raw=raw,
        dag=stall.wrap("asyncdag", many(dag)) if dag is not None else None,
        ideal_s=delay,
        build_s=build_s,
        dag_error=error,
        stall=stall,
    )
