"""One run's figures: step timings, the critical path, queueing and resource setup.

Pure functions over a run's event log and its plan's links: they take plain
data (events, step keys, upstream links, the resources each step needs), never
a clock or a live run, so the same numbers can be recomputed from a stored
event log and tested on schedules written by hand.

Terms used throughout:

- a step's *span* is from its first attempt's start to its last attempt's end
  (retry delays included): what it adds to a path through the graph;
- its *busy* time is the sum of its attempts' durations: what it occupied a
  concurrency slot for;
- *setup* is the part of a step's wait before its first start spent setting up
  the resources it needs (from RESOURCE_INIT_STARTED to the resource's
  RESOURCE_INIT_SUCCESS or _FAILURE): a client created lazily by the first
  step that needs it is setup, not queueing;
- *queued* is seconds from the moment the step's inputs were all done (the run's
  start, for a step without inputs; the moment its item was yielded, for a
  mapped step) to its first start, setup left out.  It is the sum of
- *pool wait*: waiting for a slot of the step's pool (``concurrency_limits``),
  and
- *waited*: the engine's measure (``STEP_START`` data) from being handed to the
  ready queue, pool slot held, to the start: waiting for the run's
  ``max_concurrency``; setup left out here too.
"""

from __future__ import annotations

import graphlib
import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

import attrs

from .._errors import AsyncdagError
from .._events import Event, EventType

__all__ = [
    "BenchError",
    "CriticalPath",
    "Distribution",
    "RunStats",
    "StepError",
    "StepTiming",
    "critical_path",
    "describe",
    "first_error",
    "parallelism",
    "percentile",
    "queued_times",
    "ready_times",
    "resource_setups",
    "run_stats",
    "setup_times",
    "step_timings",
    "template_of",
]

_ATTEMPT_ENDS = frozenset(
    {
        EventType.STEP_SUCCESS,
        EventType.STEP_FAILURE,
        EventType.STEP_UP_FOR_RETRY,
        EventType.STEP_CANCELED,
    }
)
_RUN_ENDS = frozenset({EventType.RUN_SUCCESS, EventType.RUN_FAILURE, EventType.RUN_CANCELED})
_RESOURCE_INIT = frozenset(
    {
        EventType.RESOURCE_INIT_STARTED,
        EventType.RESOURCE_INIT_SUCCESS,
        EventType.RESOURCE_INIT_FAILURE,
    }
)


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
    #: The engine's ``waited`` of the first attempt alone (``waited`` sums every attempt's).
    first_waited: float = 0.0

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
    first_waited: dict[str, float] = {}
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
            this_wait = float(data.get("waited", 0.0))
            waited[key] = waited.get(key, 0.0) + this_wait
            first_waited.setdefault(key, this_wait)
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
            first_waited=first_waited[key],
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


def template_of(key: str) -> str | None:
    """The mapped node a dynamic step's key names (``fetch`` for ``fetch[page_7]``), else None."""
    if not key.endswith("]"):
        return None
    cut = key.rfind("[")
    return key[:cut] if cut > 0 else None


def ready_times(
    timings: Mapping[str, StepTiming],
    upstream: Mapping[str, Sequence[str]],
    run_start: float,
    *,
    yielded: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """When each started step's inputs were all done.

    A step of the plan is ready when the last of its ``upstream`` steps ended
    (``run_start`` for a root).  A mapped step (``fetch[k]``, absent from the
    plan) is ready when its item ``k`` was yielded (``yielded``: mapping key ->
    time of its first STEP_OUTPUT), or at ``run_start`` when that is unknown.
    """
    yielded = yielded or {}
    ready: dict[str, float] = {}
    for key in timings:
        if key in upstream:
            ready[key] = max(
                (timings[up].end for up in upstream[key] if up in timings), default=run_start
            )
        elif template_of(key) is not None:
            ready[key] = yielded.get(key[len(template_of(key) or "") + 1 : -1], run_start)
        else:
            ready[key] = run_start
    return ready


def queued_times(
    timings: Mapping[str, StepTiming], upstream: Mapping[str, Sequence[str]], run_start: float
) -> dict[str, float]:
    """Seconds from "all inputs done" (``run_start`` for a root) to each started step's first start.

    Setup is not left out here; :func:`run_stats` does that.
    """
    ready = ready_times(timings, upstream, run_start)
    return {key: max(0.0, t.start - ready[key]) for key, t in timings.items()}


def resource_setups(events: Iterable[Event]) -> dict[str, tuple[float, float]]:
    """Each resource set up in the run: (start, end) of its setup, from its RESOURCE_INIT_* events.

    A setup that never ended (the run was cancelled meanwhile) is left out.
    """
    started: dict[str, float] = {}
    spans: dict[str, tuple[float, float]] = {}
    for event in events:
        if event.type not in _RESOURCE_INIT:
            continue
        key = (event.data or {}).get("resource")
        if not isinstance(key, str):
            continue
        if event.type is EventType.RESOURCE_INIT_STARTED:
            started.setdefault(key, event.timestamp)
        elif key in started and key not in spans:
            spans[key] = (started[key], event.timestamp)
    return spans


def setup_times(
    timings: Mapping[str, StepTiming],
    ready: Mapping[str, float],
    setups: Mapping[str, tuple[float, float]],
    needs: Mapping[str, Collection[str]],
) -> dict[str, float]:
    """Seconds of each step's wait (ready to first start) spent setting up resources it needs.

    ``needs`` maps a step key, or a mapped node's name, to the resources it
    needs, those resources' own dependencies included.  A step that waits while
    another step sets up a resource both need waits for that setup too, so the
    overlap with the resource's setup is counted whoever started it.
    """
    result: dict[str, float] = {}
    for key, timing in timings.items():
        wanted = needs.get(key)
        if wanted is None:
            wanted = needs.get(template_of(key) or "", ())
        windows = sorted(setups[r] for r in wanted if r in setups)
        result[key] = _overlap(ready.get(key, timing.start), timing.start, windows)
    return result


def _overlap(low: float, high: float, windows: Sequence[tuple[float, float]]) -> float:
    """Length of [low, high] covered by the union of sorted ``windows``."""
    total = 0.0
    cursor = low
    for start, end in windows:
        start, end = max(start, cursor), min(end, high)
        if end > start:
            total += end - start
            cursor = end
    return total


@attrs.frozen(kw_only=True)
class StepError:
    """The error a failed run is first known by, and the step it happened in."""

    step: str | None
    type: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)

    def __str__(self) -> str:
        where = f"step {self.step!r}" if self.step is not None else "the run"
        return f"{where}: {self.type}: {self.message}"


def first_error(events: Iterable[Event]) -> StepError | None:
    """The first failure of a run: a step's error, or a resource's that kept a step from starting.

    None when nothing failed (a cancelled run, say).
    """
    resource_errors: dict[str, tuple[str, str]] = {}
    for event in events:
        data = event.data or {}
        error = data.get("error")
        if event.type is EventType.RESOURCE_INIT_FAILURE and isinstance(error, dict):
            resource_errors[str(data.get("resource"))] = (error["type"], error["message"])
        elif event.type is EventType.STEP_FAILURE and isinstance(error, dict):
            return StepError(step=event.step_key, type=error["type"], message=error["message"])
        elif event.type is EventType.STEP_SKIPPED and data.get("resource") in resource_errors:
            kind, message = resource_errors[data["resource"]]
            return StepError(
                step=event.step_key, type=kind, message=f"resource {data['resource']!r}: {message}"
            )
    return None


@attrs.frozen(kw_only=True)
class RunStats:
    """One run, reduced to what a bench needs (see the module docstring for the terms)."""

    status: str
    makespan: float
    timings: Mapping[str, StepTiming]
    queued: Mapping[str, float]
    setup: Mapping[str, float] = attrs.field(factory=dict)
    pool_wait: Mapping[str, float] = attrs.field(factory=dict)
    #: Resource key -> seconds its setup took.
    resources: Mapping[str, float] = attrs.field(factory=dict)
    error: StepError | None = None

    @property
    def parallelism(self) -> float:
        return parallelism((t.busy for t in self.timings.values()), self.makespan)

    def waited(self, key: str) -> float:
        """The step's wait for the run's bound (every attempt), setup left out."""
        return max(0.0, self.timings[key].waited - self.setup.get(key, 0.0))


def run_stats(
    events: Sequence[Event],
    upstream: Mapping[str, Sequence[str]],
    *,
    needs: Mapping[str, Collection[str]] | None = None,
    pools: Mapping[str, str | None] | None = None,
) -> RunStats:
    """A run's makespan (RUN_START to its end event), step timings, setup and queueing.

    ``needs``: the resources each step (or mapped node) needs, with their own
    dependencies; without it no wait is taken for setup.  ``pools``: each step's
    (or mapped node's) pool; with it, a step in no pool has no pool wait (what
    the clocks disagree by is then bound wait), without it every step may.
    """
    start = next((e.timestamp for e in events if e.type is EventType.RUN_START), None)
    end_event = next((e for e in reversed(events) if e.type in _RUN_ENDS), None)
    if start is None or end_event is None:
        raise BenchError(
            "the event log has no RUN_START or no end of run; bench needs a finished run's events"
        )
    timings = step_timings(events)
    yielded: dict[str, float] = {}
    for event in events:
        if event.type is EventType.STEP_OUTPUT and event.data and "mapping_key" in event.data:
            yielded.setdefault(str(event.data["mapping_key"]), event.timestamp)
    ready = ready_times(timings, upstream, start, yielded=yielded)
    setups = resource_setups(events)
    setup = setup_times(timings, ready, setups, needs or {})
    raw = {key: max(0.0, t.start - ready[key]) for key, t in timings.items()}
    pooled = (
        (lambda key: True)
        if pools is None
        else (lambda key: bool(pools.get(key) or pools.get(template_of(key) or "")))
    )
    status = end_event.type.value.removeprefix("RUN_")
    return RunStats(
        status=status,
        makespan=end_event.timestamp - start,
        timings=timings,
        queued={key: max(0.0, raw[key] - setup[key]) for key in timings},
        setup=setup,
        pool_wait={
            key: max(0.0, raw[key] - t.first_waited) if pooled(key) else 0.0
            for key, t in timings.items()
        },
        resources={key: end - begin for key, (begin, end) in setups.items()},
        error=first_error(events) if status == "FAILURE" else None,
    )
