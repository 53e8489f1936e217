"""Several runs at one setting reduced to a bench's figures, and which setting is enough.

A *setting* is a ``max_concurrency`` bound and, when a sweep asks for it, a
limit per pool (``concurrency_limits``).  :func:`summarize_bound` reduces the
repeats at one setting: makespan, throughput, the critical path, where steps
waited (per pool, per step) and what resource setup cost.  :func:`enough`
picks the cheapest setting that is nearly as fast as the best one.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from ._stats import (
    BenchError,
    CriticalPath,
    Distribution,
    RunStats,
    StepError,
    critical_path,
    describe,
    percentile,
    template_of,
)

__all__ = [
    "ENOUGH_TOLERANCE",
    "NO_POOL",
    "BoundSummary",
    "PoolWait",
    "ResourceSetup",
    "StepRow",
    "StepWait",
    "enough",
    "pool_of",
    "pool_waits",
    "resource_setup",
    "step_table",
    "step_waits",
    "summarize_bound",
]

NO_POOL = "(no pool)"
#: A setting within this share of the best median makespan is "enough".
ENOUGH_TOLERANCE = 0.05


def pool_of(key: str, pools: Mapping[str, str | None]) -> str:
    """The pool of a step, or of the mapped node a dynamic step comes from; NO_POOL if none."""
    if key in pools:
        return pools[key] or NO_POOL
    return pools.get(template_of(key) or "") or NO_POOL


# --- waiting, per pool ---------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class PoolWait:
    """How long steps of one pool waited, summed over the runs given and per run.

    ``queued`` counts from inputs done to start (pool wait and bound wait);
    ``waited`` is the part spent holding a pool slot, waiting for the bound.
    Neither counts resource setup.
    """

    pool: str
    steps: int
    runs: int
    waited_total: float
    waited_max: float
    queued_total: float
    queued_max: float
    worst_step: str | None

    @property
    def waited_per_run(self) -> float:
        return self.waited_total / self.runs if self.runs else 0.0

    @property
    def queued_per_run(self) -> float:
        return self.queued_total / self.runs if self.runs else 0.0

    def to_dict(self) -> dict[str, Any]:
        data = attrs.asdict(self)
        data["waited_per_run"] = self.waited_per_run
        data["queued_per_run"] = self.queued_per_run
        return data


def pool_waits(runs: Sequence[RunStats], pools: Mapping[str, str | None]) -> list[PoolWait]:
    """Waiting aggregated per pool (steps without one under ``NO_POOL``), most queued first.

    ``worst_step`` is the step of the pool that queued longest in total, the
    first place to look for a pool limit that is too tight.
    """
    per_pool: dict[str, dict[str, list[float]]] = {}
    for run in runs:
        for key in run.timings:
            pool = pool_of(key, pools)
            entry = per_pool.setdefault(pool, {}).setdefault(key, [0.0, 0.0, 0.0, 0.0])
            queued = run.queued.get(key, 0.0)
            waited = run.waited(key)
            entry[0] += waited
            entry[1] = max(entry[1], waited)
            entry[2] += queued
            entry[3] = max(entry[3], queued)
    result = []
    for pool, steps in per_pool.items():
        worst = max(steps, key=lambda k: steps[k][2]) if steps else None
        result.append(
            PoolWait(
                pool=pool,
                steps=len(steps),
                runs=len(runs),
                waited_total=sum(v[0] for v in steps.values()),
                waited_max=max(v[1] for v in steps.values()),
                queued_total=sum(v[2] for v in steps.values()),
                queued_max=max(v[3] for v in steps.values()),
                worst_step=worst,
            )
        )
    result.sort(key=lambda w: (-w.queued_total, w.pool))
    return result


# --- per step ------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class StepWait:
    """One step's waits, mean per run: queued = pool_wait + waited (setup apart)."""

    step: str
    queued: float
    pool_wait: float
    waited: float
    setup: float

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


def _wait_sums(runs: Sequence[RunStats]) -> dict[str, list[float]]:
    """Per step, summed over the runs it ran in: [runs, queued, pool wait, waited, setup]."""
    sums: dict[str, list[float]] = {}
    for run in runs:
        for key in run.timings:
            queued = run.queued.get(key, 0.0)
            pool = min(run.pool_wait.get(key, 0.0), queued)
            entry = sums.setdefault(key, [0.0, 0.0, 0.0, 0.0, 0.0])
            entry[0] += 1
            entry[1] += queued
            entry[2] += pool
            entry[3] += queued - pool
            entry[4] += run.setup.get(key, 0.0)
    return sums


def step_waits(runs: Sequence[RunStats], *, top: int = 5) -> list[StepWait]:
    """The ``top`` steps by mean queued time per run (a step that did not run counts 0)."""
    sums = _wait_sums(runs)
    n = max(len(runs), 1)
    ranked = sorted(sums, key=lambda k: (-sums[k][1], k))[:top]
    return [
        StepWait(
            step=key,
            queued=sums[key][1] / n,
            pool_wait=sums[key][2] / n,
            waited=sums[key][3] / n,
            setup=sums[key][4] / n,
        )
        for key in ranked
    ]


@attrs.frozen(kw_only=True)
class StepRow:
    """One step across the runs it ran in: its span's p50/p95 and its mean waits."""

    step: str
    runs: int
    p50: float
    p95: float
    setup: float
    pool_wait: float
    waited: float

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


def step_table(runs: Sequence[RunStats], *, top: int = 10) -> list[StepRow]:
    """The ``top`` slowest steps by p50 span (then p95), with where they waited."""
    spans: dict[str, list[float]] = {}
    for run in runs:
        for key, timing in run.timings.items():
            spans.setdefault(key, []).append(timing.span)
    sums = _wait_sums(runs)
    rows = []
    for key, values in spans.items():
        ran, _, pool, waited, setup = sums[key]
        rows.append(
            StepRow(
                step=key,
                runs=len(values),
                p50=percentile(values, 50),
                p95=percentile(values, 95),
                setup=setup / ran,
                pool_wait=pool / ran,
                waited=waited / ran,
            )
        )
    rows.sort(key=lambda r: (-r.p50, -r.p95, r.step))
    return rows[:top]


@attrs.frozen(kw_only=True)
class ResourceSetup:
    """What setting up one resource took, over the runs that set it up."""

    resource: str
    runs: int
    median: float
    max: float

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


def resource_setup(runs: Sequence[RunStats]) -> list[ResourceSetup]:
    """Each resource's setup time across runs, slowest first."""
    seconds: dict[str, list[float]] = {}
    for run in runs:
        for key, value in run.resources.items():
            seconds.setdefault(key, []).append(value)
    result = [
        ResourceSetup(resource=key, runs=len(v), median=statistics.median(v), max=max(v))
        for key, v in seconds.items()
    ]
    result.sort(key=lambda r: (-r.median, r.resource))
    return result


# --- one setting, several runs -------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class BoundSummary:
    """Every figure the bench reports for one setting (bound, and pool limits when swept)."""

    concurrency: int | None
    runs: int
    failed_runs: int
    steps_per_run: float
    makespan_median: float
    makespan_min: float
    makespan_max: float
    throughput: float
    step_duration: Distribution | None
    parallelism: float
    critical_path: CriticalPath
    pools: tuple[PoolWait, ...]
    top_waits: tuple[StepWait, ...]
    pool_limits: Mapping[str, int] = attrs.field(factory=dict)
    steps: tuple[StepRow, ...] = ()
    resources: tuple[ResourceSetup, ...] = ()
    #: The first error of the first failed run, if any run failed.
    first_error: StepError | None = None

    @property
    def label(self) -> str:
        """``bound 8`` or ``bound 8, http=4``: how the report names this setting."""
        limits = ", ".join(f"{k}={v}" for k, v in sorted(self.pool_limits.items()))
        bound = "none" if self.concurrency is None else str(self.concurrency)
        return f"bound {bound}" + (f", {limits}" if limits else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "concurrency": self.concurrency,
            "pool_limits": dict(self.pool_limits),
            "runs": self.runs,
            "failed_runs": self.failed_runs,
            "first_error": None if self.first_error is None else self.first_error.to_dict(),
            "steps_per_run": self.steps_per_run,
            "makespan": {
                "median": self.makespan_median,
                "min": self.makespan_min,
                "max": self.makespan_max,
            },
            "throughput": self.throughput,
            "step_duration": None if self.step_duration is None else self.step_duration.to_dict(),
            "parallelism": self.parallelism,
            "critical_path": self.critical_path.to_dict(),
            "pools": [p.to_dict() for p in self.pools],
            "top_waits": [w.to_dict() for w in self.top_waits],
            "steps": [s.to_dict() for s in self.steps],
            "resources": [r.to_dict() for r in self.resources],
        }


def summarize_bound(
    concurrency: int | None,
    runs: Sequence[RunStats],
    *,
    upstream: Mapping[str, Sequence[str]],
    pools: Mapping[str, str | None],
    pool_limits: Mapping[str, int] | None = None,
    top: int = 10,
) -> BoundSummary:
    """Reduce the repeats at one setting.

    Throughput is steps started per run over the median makespan; the critical
    path weighs each step by its median span across the repeats, so one noisy
    run does not redraw it.
    """
    if not runs:
        raise BenchError(f"no runs at concurrency {concurrency}; --repeat must be at least 1")
    makespans = [r.makespan for r in runs]
    median = statistics.median(makespans)
    steps = statistics.fmean(len(r.timings) for r in runs)
    spans: dict[str, list[float]] = {}
    for run in runs:
        for key, timing in run.timings.items():
            spans.setdefault(key, []).append(timing.span)
    weights = {key: statistics.median(values) for key, values in spans.items()}
    failed = [r for r in runs if r.status != "SUCCESS"]
    return BoundSummary(
        concurrency=concurrency,
        pool_limits=dict(pool_limits or {}),
        runs=len(runs),
        failed_runs=len(failed),
        first_error=next((r.error for r in failed if r.error is not None), None),
        steps_per_run=steps,
        makespan_median=median,
        makespan_min=min(makespans),
        makespan_max=max(makespans),
        throughput=steps / median if median > 0 else 0.0,
        step_duration=describe(t.span for r in runs for t in r.timings.values()),
        parallelism=statistics.median(r.parallelism for r in runs),
        critical_path=critical_path(upstream, weights),
        pools=tuple(pool_waits(runs, pools)),
        top_waits=tuple(step_waits(runs)),
        steps=tuple(step_table(runs, top=top)),
        resources=tuple(resource_setup(runs)),
    )


def enough(
    summaries: Sequence[BoundSummary], *, tolerance: float = ENOUGH_TOLERANCE
) -> BoundSummary | None:
    """The cheapest setting whose median makespan is within ``tolerance`` of the best one.

    Cheapest: the smallest bound, then the smallest pool limits (compared pool
    by pool, in name order); no bound counts as infinite.  Settings where a run
    failed are never enough.  None when every setting had a failure.
    """
    ok = [s for s in summaries if not s.failed_runs]
    if not ok:
        return None
    best = min(s.makespan_median for s in ok)
    near = [s for s in ok if s.makespan_median <= best * (1 + tolerance)]
    return min(near, key=_cost)


def _cost(s: BoundSummary) -> tuple[float, tuple[int, ...]]:
    bound = math.inf if s.concurrency is None else float(s.concurrency)
    return bound, tuple(v for _, v in sorted(s.pool_limits.items()))
