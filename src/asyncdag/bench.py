"""Statistics for benchmarking a pipeline: pure functions over a run's event log and its plan.

``asyncdag pipeline bench`` runs a pipeline several times per concurrency bound
and reports what these functions compute.  They take plain data (events, step
keys, upstream links, pools), never a clock or a live run, so the same numbers
can be recomputed from a stored event log and tested on schedules written by
hand.

Terms used throughout:

- a step's *span* is from its first attempt's start to its last attempt's end
  (retry delays included): what it adds to a path through the graph;
- its *busy* time is the sum of its attempts' durations: what it occupied a
  concurrency slot for;
- *waited* is the engine's measure (``STEP_START`` data): seconds from a step
  being handed to the ready queue (its pool slot already held) to its start,
  including any lazy setup of the resources it needs;
- *queued* is seconds from the moment the step's inputs were all done (the run's
  start, for a step without inputs) to its first start: it also counts time
  spent waiting for a slot of the step's pool.
"""

from __future__ import annotations

import graphlib
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from xml.sax.saxutils import escape

import attrs

from ._errors import AsyncdagError
from ._events import Event, EventType

__all__ = [
    "NO_POOL",
    "BenchError",
    "BoundSummary",
    "CriticalPath",
    "Distribution",
    "PlotPoint",
    "PoolWait",
    "RunStats",
    "StepTiming",
    "critical_path",
    "describe",
    "makespan_svg",
    "parallelism",
    "percentile",
    "pool_waits",
    "queued_times",
    "run_stats",
    "step_timings",
    "step_waits",
    "summarize_bound",
]

NO_POOL = "(no pool)"

_ATTEMPT_ENDS = frozenset(
    {
        EventType.STEP_SUCCESS,
        EventType.STEP_FAILURE,
        EventType.STEP_UP_FOR_RETRY,
        EventType.STEP_CANCELED,
    }
)
_RUN_ENDS = frozenset({EventType.RUN_SUCCESS, EventType.RUN_FAILURE, EventType.RUN_CANCELED})


class BenchError(AsyncdagError):
    """The data given to a statistic cannot answer it (no values, a cycle, an unknown step)."""


# --- plain statistics ------------------------------------------------------------------------


def percentile(values: Iterable[float], q: float) -> float:
    """The ``q``-th percentile (0..100), interpolated linearly between ranks like numpy's default.

    Linear interpolation keeps p95 of a handful of repeats meaningful instead of
    snapping to the maximum.
    """
    ordered = sorted(values)
    if not ordered:
        raise BenchError(f"percentile {q} of no values; measure at least one step first")
    if not 0 <= q <= 100:
        raise BenchError(f"percentile must be between 0 and 100, got {q}")
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@attrs.frozen(kw_only=True)
class Distribution:
    """p50/p95/max of some durations, with how many there were."""

    count: int
    p50: float
    p95: float
    max: float

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


def describe(values: Iterable[float]) -> Distribution | None:
    """The distribution of ``values``, or None when there are none (every step skipped)."""
    ordered = sorted(values)
    if not ordered:
        return None
    return Distribution(
        count=len(ordered),
        p50=percentile(ordered, 50),
        p95=percentile(ordered, 95),
        max=ordered[-1],
    )


def parallelism(busy: Iterable[float], makespan: float) -> float:
    """Average number of steps running at once: their summed busy time over the makespan.

    1.0 is a sequential run; the concurrency bound is the ceiling.  A zero
    makespan (nothing measured) gives 0.0 rather than dividing by zero.
    """
    total = sum(busy)
    return total / makespan if makespan > 0 else 0.0


# --- one run -----------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class StepTiming:
    """One step as its events tell it (see the module docstring for span/busy/waited)."""

    key: str
    status: str
    attempts: int
    start: float
    end: float
    busy: float
    waited: float

    @property
    def span(self) -> float:
        return self.end - self.start


def step_timings(events: Iterable[Event]) -> dict[str, StepTiming]:
    """Each step that started at least once, from its attempts' start and end events.

    An attempt ends with STEP_SUCCESS, STEP_FAILURE, STEP_CANCELED (their
    ``duration`` is the attempt's) or STEP_UP_FOR_RETRY (no duration: its
    timestamp ends the attempt).  Steps that never started (skipped) are absent.
    """
    started: dict[str, float] = {}
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    busy: dict[str, float] = {}
    waited: dict[str, float] = {}
    attempts: dict[str, int] = {}
    status: dict[str, str] = {}
    for event in events:
        key = event.step_key
        if key is None:
            continue
        data = event.data or {}
        if event.type is EventType.STEP_START:
            started[key] = event.timestamp
            first.setdefault(key, event.timestamp)
            attempts[key] = attempts.get(key, 0) + 1
            waited[key] = waited.get(key, 0.0) + float(data.get("waited", 0.0))
            status[key] = "RUNNING"
        elif event.type in _ATTEMPT_ENDS and key in started:
            begun = started.pop(key)
            duration = data.get("duration")
            took = float(duration) if duration is not None else event.timestamp - begun
            busy[key] = busy.get(key, 0.0) + took
            last[key] = max(event.timestamp, begun + took)
            status[key] = _status_after(event.type)
    return {
        key: StepTiming(
            key=key,
            status=status[key],
            attempts=attempts[key],
            start=first[key],
            end=last.get(key, first[key]),
            busy=busy.get(key, 0.0),
            waited=waited[key],
        )
        for key in first
    }


def _status_after(kind: EventType) -> str:
    return {
        EventType.STEP_SUCCESS: "SUCCESS",
        EventType.STEP_FAILURE: "FAILURE",
        EventType.STEP_UP_FOR_RETRY: "RETRYING",
        EventType.STEP_CANCELED: "CANCELED",
    }[kind]


@attrs.frozen(kw_only=True)
class CriticalPath:
    """The heaviest chain of steps through the graph, and its total weight in seconds."""

    steps: tuple[str, ...]
    length: float

    def to_dict(self) -> dict[str, Any]:
        return {"steps": list(self.steps), "length": self.length}


def critical_path(
    upstream: Mapping[str, Sequence[str]], weights: Mapping[str, float]
) -> CriticalPath:
    """The longest path through the DAG ``upstream`` (step -> the steps it reads from).

    A path's length is the sum of its steps' ``weights`` (measured durations);
    a step with no weight (it never ran) weighs 0.  Linear in steps + edges.
    Ties go to the step listed first, so the answer is deterministic.
    """
    order = _topological(upstream)
    best: dict[str, float] = {}
    via: dict[str, str | None] = {}
    for key in order:
        parent: str | None = None
        reach = 0.0
        for up in upstream[key]:
            if parent is None or best[up] > reach:
                parent, reach = up, best[up]
        best[key] = reach + weights.get(key, 0.0)
        via[key] = parent
    if not best:
        return CriticalPath(steps=(), length=0.0)
    end = order[0]
    for key in order:
        if best[key] > best[end]:
            end = key
    path: list[str] = []
    node: str | None = end
    while node is not None:
        path.append(node)
        node = via[node]
    return CriticalPath(steps=tuple(reversed(path)), length=best[end])


def _topological(upstream: Mapping[str, Sequence[str]]) -> list[str]:
    for key, ups in upstream.items():
        for up in ups:
            if up not in upstream:
                raise BenchError(
                    f"step {key!r} reads from {up!r}, which is not a step of this graph; "
                    "pass every step's upstream links"
                )
    try:
        return list(graphlib.TopologicalSorter(upstream).static_order())
    except graphlib.CycleError as exc:
        cycle = exc.args[1]
        raise BenchError(
            f"the step graph has a cycle through {cycle}; a critical path needs a DAG"
        ) from None


def queued_times(
    timings: Mapping[str, StepTiming], upstream: Mapping[str, Sequence[str]], run_start: float
) -> dict[str, float]:
    """Seconds from "all inputs done" (``run_start`` for a root) to each started step's first start."""
    queued: dict[str, float] = {}
    for key, timing in timings.items():
        ready = max(
            (timings[up].end for up in upstream.get(key, ()) if up in timings), default=run_start
        )
        queued[key] = max(0.0, timing.start - ready)
    return queued


@attrs.frozen(kw_only=True)
class RunStats:
    """One run, reduced to what a bench needs."""

    status: str
    makespan: float
    timings: Mapping[str, StepTiming]
    queued: Mapping[str, float]

    @property
    def parallelism(self) -> float:
        return parallelism((t.busy for t in self.timings.values()), self.makespan)


def run_stats(events: Sequence[Event], upstream: Mapping[str, Sequence[str]]) -> RunStats:
    """A run's makespan (RUN_START to its end event), step timings and queueing."""
    start = next((e.timestamp for e in events if e.type is EventType.RUN_START), None)
    end_event = next((e for e in reversed(events) if e.type in _RUN_ENDS), None)
    if start is None or end_event is None:
        raise BenchError(
            "the event log has no RUN_START or no end of run; bench needs a finished run's events"
        )
    timings = step_timings(events)
    return RunStats(
        status=end_event.type.value.removeprefix("RUN_"),
        makespan=end_event.timestamp - start,
        timings=timings,
        queued=queued_times(timings, upstream, start),
    )


# --- waiting, per pool ---------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class PoolWait:
    """How long steps of one pool waited, summed over the runs given and per run."""

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
        for key, timing in run.timings.items():
            pool = pools.get(key) or NO_POOL
            entry = per_pool.setdefault(pool, {}).setdefault(key, [0.0, 0.0, 0.0, 0.0])
            queued = run.queued.get(key, 0.0)
            entry[0] += timing.waited
            entry[1] = max(entry[1], timing.waited)
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


def step_waits(runs: Sequence[RunStats], *, top: int = 5) -> list[tuple[str, float, float]]:
    """The ``top`` steps by mean queued time per run: (key, mean queued, mean waited)."""
    queued: dict[str, float] = {}
    waited: dict[str, float] = {}
    for run in runs:
        for key, timing in run.timings.items():
            queued[key] = queued.get(key, 0.0) + run.queued.get(key, 0.0)
            waited[key] = waited.get(key, 0.0) + timing.waited
    n = max(len(runs), 1)
    ranked = sorted(queued, key=lambda k: (-queued[k], k))[:top]
    return [(key, queued[key] / n, waited[key] / n) for key in ranked]


# --- one concurrency bound, several runs ---------------------------------------------------------


@attrs.frozen(kw_only=True)
class BoundSummary:
    """Every figure the bench reports for one concurrency bound."""

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
    top_waits: tuple[tuple[str, float, float], ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "concurrency": self.concurrency,
            "runs": self.runs,
            "failed_runs": self.failed_runs,
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
            "top_waits": [
                {"step": key, "queued": queued, "waited": waited}
                for key, queued, waited in self.top_waits
            ],
        }


def summarize_bound(
    concurrency: int | None,
    runs: Sequence[RunStats],
    *,
    upstream: Mapping[str, Sequence[str]],
    pools: Mapping[str, str | None],
) -> BoundSummary:
    """Reduce the repeats at one bound.

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
    return BoundSummary(
        concurrency=concurrency,
        runs=len(runs),
        failed_runs=sum(1 for r in runs if r.status != "SUCCESS"),
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
    )


# --- the plot ------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class PlotPoint:
    """Makespan at one bound: the median drawn as a point, min..max as a whisker."""

    concurrency: int
    median: float
    low: float
    high: float


def makespan_svg(points: Sequence[PlotPoint], *, title: str) -> str:
    """A standalone SVG of makespan against concurrency, drawn by hand (no plotting library).

    The x axis is logarithmic (base 2) when the bounds span a factor of 8 or
    more, since bounds are usually chosen as powers; linear otherwise.
    """
    if not points:
        raise BenchError("nothing to plot: no concurrency bound was measured")
    width, height = 640, 400
    left, right, top, bottom = 70, 20, 40, 50
    plot_w, plot_h = width - left - right, height - top - bottom
    ordered = sorted(points, key=lambda p: p.concurrency)
    xs = [p.concurrency for p in ordered]
    log_x = min(xs) > 0 and max(xs) / min(xs) >= 8

    def fx(value: float) -> float:
        lo, hi = (math.log2(min(xs)), math.log2(max(xs))) if log_x else (min(xs), max(xs))
        v = math.log2(value) if log_x else value
        inset = 20  # keep the end points off the axes
        span = plot_w - 2 * inset
        return left + inset + (span / 2 if hi == lo else (v - lo) / (hi - lo) * span)

    y_max = _nice_ceiling(max(p.high for p in ordered))

    def fy(value: float) -> float:
        return top + plot_h - value / y_max * plot_h

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="15">{escape(title)}</text>',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" '
        'stroke="black"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="black"/>',
    ]
    for i in range(5):
        value = y_max * i / 4
        y = fy(value)
        out.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#ddd"/>'
        )
        out.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{_seconds(value)}</text>'
        )
    for x_value in xs:
        x = fx(x_value)
        out.append(
            f'<line x1="{x:.1f}" y1="{top + plot_h}" x2="{x:.1f}" y2="{top + plot_h + 5}" '
            'stroke="black"/>'
        )
        out.append(
            f'<text x="{x:.1f}" y="{top + plot_h + 18}" text-anchor="middle">{x_value}</text>'
        )
    scale = " (log scale)" if log_x else ""
    out.append(
        f'<text x="{left + plot_w / 2}" y="{height - 10}" text-anchor="middle">'
        f"max concurrency{scale}</text>"
    )
    out.append(
        f'<text x="16" y="{top + plot_h / 2}" text-anchor="middle" '
        f'transform="rotate(-90 16 {top + plot_h / 2})">makespan</text>'
    )
    line = " ".join(f"{fx(p.concurrency):.1f},{fy(p.median):.1f}" for p in ordered)
    out.append(f'<polyline points="{line}" fill="none" stroke="#1f77b4" stroke-width="2"/>')
    for p in ordered:
        x = fx(p.concurrency)
        out.append(
            f'<line x1="{x:.1f}" y1="{fy(p.low):.1f}" x2="{x:.1f}" y2="{fy(p.high):.1f}" '
            'stroke="#1f77b4"/>'
        )
        out.append(
            f'<circle cx="{x:.1f}" cy="{fy(p.median):.1f}" r="4" fill="#1f77b4">'
            f"<title>concurrency {p.concurrency}: median {_seconds(p.median)} "
            f"(min {_seconds(p.low)}, max {_seconds(p.high)})</title></circle>"
        )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 times a power of ten at or above ``value`` (1.0 for 0)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * power >= value:
            return step * power
    return 10 * power


def _seconds(value: float) -> str:
    if value == 0:
        return "0"
    if value < 1:
        return f"{value * 1000:.3g}ms"
    return f"{value:.3g}s"
