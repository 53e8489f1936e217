"""Bench statistics on hand-built graphs and schedules, and ``asyncdag pipeline bench`` end to end.

The statistics take events and timings written here by hand, so every figure
is known exactly; the command's tests check shapes and counts, never timings.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asyncdag import Event, EventType
from asyncdag.bench import (
    NO_POOL,
    BenchError,
    BoundSummary,
    PlotPoint,
    RunStats,
    StepError,
    StepTiming,
    critical_path,
    describe,
    enough,
    first_error,
    makespan_png,
    makespan_svg,
    parallelism,
    percentile,
    pool_waits,
    queued_times,
    run_stats,
    step_table,
    step_timings,
    step_waits,
    summarize_bound,
    y_axis,
)

ROOT = Path(__file__).parent.parent
EXAMPLES = ROOT / "examples"
SVG = "{http://www.w3.org/2000/svg}"

# --- helpers: schedules by hand ----------------------------------------------------------------


class Log:
    """Builds a run's event log in order, numbering events as the bus would."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def add(self, t: float, kind: EventType, key: str | None = None, **data: Any) -> Log:
        self.events.append(
            Event(
                run_id="r",
                seq=len(self.events),
                timestamp=t,
                type=kind,
                step_key=key,
                data=data or None,
            )
        )
        return self

    def step(self, key: str, start: float, end: float, *, waited: float = 0.0) -> Log:
        self.add(start, EventType.STEP_START, key, attempt=1, waited=waited)
        return self.add(end, EventType.STEP_SUCCESS, key, attempt=1, duration=end - start)


def timing(key: str, start: float, end: float, *, waited: float = 0.0) -> StepTiming:
    return StepTiming(
        key=key,
        status="SUCCESS",
        attempts=1,
        start=start,
        end=end,
        busy=end - start,
        waited=waited,
    )


DIAMOND = {"a": (), "b": ("a",), "c": ("a",), "d": ("b", "c")}
# a -> b -> c -> d, and a side branch b -> x that nothing reads.
CHAIN_WITH_SIDE = {"a": (), "b": ("a",), "c": ("b",), "d": ("c",), "x": ("b",)}


# --- percentiles -------------------------------------------------------------------------------


def test_percentile_interpolates_between_ranks() -> None:
    values = [4.0, 1.0, 3.0, 2.0]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 50) == 2.5
    assert percentile(values, 95) == pytest.approx(3.85)
    assert percentile(values, 100) == 4.0


def test_percentile_of_one_value_is_that_value() -> None:
    assert percentile([0.25], 95) == 0.25


def test_percentile_of_nothing_is_an_error() -> None:
    with pytest.raises(BenchError, match="no values"):
        percentile([], 50)


def test_percentile_out_of_range_is_an_error() -> None:
    with pytest.raises(BenchError, match="between 0 and 100"):
        percentile([1.0], 101)


@given(
    st.lists(st.floats(0, 1e6), min_size=1, max_size=50),
    st.floats(0, 100),
    st.floats(0, 100),
)
def test_percentile_is_monotone_and_within_the_values(
    values: list[float], q1: float, q2: float
) -> None:
    low, high = sorted((q1, q2))
    assert min(values) <= percentile(values, low) <= percentile(values, high) <= max(values)


def test_describe_reports_count_p50_p95_max_and_none_for_nothing() -> None:
    d = describe([float(i) for i in range(1, 21)])
    assert d is not None
    assert (d.count, d.p50, d.max) == (20, 10.5, 20.0)
    assert d.p95 == pytest.approx(19.05)
    assert describe([]) is None


# --- critical path -----------------------------------------------------------------------------


def test_critical_path_of_a_diamond_takes_the_heavier_branch() -> None:
    path = critical_path(DIAMOND, {"a": 1.0, "b": 5.0, "c": 2.0, "d": 1.0})
    assert path.steps == ("a", "b", "d")
    assert path.length == 7.0
    path = critical_path(DIAMOND, {"a": 1.0, "b": 2.0, "c": 5.0, "d": 1.0})
    assert path.steps == ("a", "c", "d")
    assert path.length == 7.0


def test_critical_path_of_a_chain_ignores_a_light_side_branch() -> None:
    weights = {"a": 1.0, "b": 1.0, "c": 2.0, "d": 3.0, "x": 4.0}
    path = critical_path(CHAIN_WITH_SIDE, weights)
    assert path.steps == ("a", "b", "c", "d")
    assert path.length == 7.0


def test_critical_path_of_a_chain_ends_in_a_heavy_side_branch() -> None:
    weights = {"a": 1.0, "b": 1.0, "c": 2.0, "d": 3.0, "x": 6.0}
    path = critical_path(CHAIN_WITH_SIDE, weights)
    assert path.steps == ("a", "b", "x")
    assert path.length == 8.0


def test_critical_path_weighs_steps_that_never_ran_as_zero() -> None:
    # d was skipped: it adds nothing, so the path stops where the time was spent.
    path = critical_path(DIAMOND, {"a": 1.0, "b": 2.0, "c": 3.0})
    assert path.steps == ("a", "c")
    assert path.length == 4.0


def test_critical_path_of_no_steps_is_empty() -> None:
    path = critical_path({}, {})
    assert (path.steps, path.length) == ((), 0.0)


def test_critical_path_rejects_a_cycle_and_an_unknown_step() -> None:
    with pytest.raises(BenchError, match="cycle"):
        critical_path({"a": ("b",), "b": ("a",)}, {})
    with pytest.raises(BenchError, match="'ghost'"):
        critical_path({"a": ("ghost",)}, {})


@given(st.data())
def test_critical_path_is_a_chain_no_shorter_than_any_single_step(data: st.DataObject) -> None:
    n = data.draw(st.integers(1, 12))
    upstream = {
        f"s{i}": tuple(
            f"s{j}"
            for j in data.draw(st.sets(st.integers(0, i - 1), max_size=3) if i else st.just(set()))
        )
        for i in range(n)
    }
    weights = {key: data.draw(st.floats(0, 10)) for key in upstream}
    path = critical_path(upstream, weights)
    assert path.length == pytest.approx(sum(weights[k] for k in path.steps))
    assert path.length >= max(weights.values()) - 1e-9
    for earlier, later in zip(path.steps, path.steps[1:], strict=False):
        assert earlier in upstream[later]


# --- timings, parallelism, queueing --------------------------------------------------------------


def test_step_timings_add_up_retried_attempts() -> None:
    log = (
        Log()
        .add(10.0, EventType.STEP_START, "s", attempt=1, waited=0.5)
        .add(11.0, EventType.STEP_UP_FOR_RETRY, "s", attempt=1, delay=2.0)
        .add(13.0, EventType.STEP_START, "s", attempt=2, waited=0.25)
        .add(14.5, EventType.STEP_SUCCESS, "s", attempt=2, duration=1.5)
    )
    t = step_timings(log.events)["s"]
    assert (t.attempts, t.status, t.start, t.end) == (2, "SUCCESS", 10.0, 14.5)
    assert t.busy == 2.5
    assert t.span == 4.5
    assert t.waited == 0.75


def test_step_timings_leave_out_steps_that_never_started() -> None:
    log = Log().step("a", 0.0, 1.0).add(1.0, EventType.STEP_SKIPPED, "b", reason="upstream")
    assert list(step_timings(log.events)) == ["a"]


def test_parallelism_of_a_known_schedule() -> None:
    # a and b overlap for 2s, c runs alone for 1s, then 1s of run teardown: busy 5s over 4s.
    log = (
        Log()
        .add(0.0, EventType.RUN_START)
        .step("a", 0.0, 2.0)
        .step("b", 0.0, 2.0)
        .step("c", 2.0, 3.0)
        .add(4.0, EventType.RUN_SUCCESS)
    )
    stats = run_stats(log.events, {"a": (), "b": (), "c": ("a", "b")})
    assert stats.status == "SUCCESS"
    assert stats.makespan == 4.0
    assert stats.parallelism == 1.25
    assert parallelism([1.0, 1.0], 0.0) == 0.0


def test_run_stats_needs_a_finished_run() -> None:
    with pytest.raises(BenchError, match="RUN_START"):
        run_stats(Log().add(0.0, EventType.RUN_START).events, {})


def test_queued_counts_from_the_last_input_done_or_the_run_start() -> None:
    timings = {
        "a": timing("a", 1.0, 2.0),
        "b": timing("b", 0.5, 4.0),
        "c": timing("c", 6.0, 7.0),
    }
    queued = queued_times(timings, {"a": (), "b": (), "c": ("a", "b")}, run_start=0.0)
    assert queued == {"a": 1.0, "b": 0.5, "c": 2.0}


def test_pool_waits_aggregate_per_pool_over_runs() -> None:
    pools = {"f1": "http", "f2": "http", "db": "db", "x": None}

    def run(f1: float, f2: float, db: float) -> RunStats:
        timings = {
            "f1": timing("f1", 0, 1, waited=f1 / 2),
            "f2": timing("f2", 0, 1, waited=f2 / 2),
            "db": timing("db", 0, 1, waited=db),
            "x": timing("x", 0, 1),
        }
        return RunStats(
            status="SUCCESS",
            makespan=1.0,
            timings=timings,
            queued={"f1": f1, "f2": f2, "db": db, "x": 0.0},
        )

    waits = pool_waits([run(1.0, 3.0, 0.5), run(2.0, 1.0, 0.5)], pools)
    assert [w.pool for w in waits] == ["http", "db", NO_POOL]
    http, db, none = waits
    assert (http.steps, http.runs) == (2, 2)
    assert http.queued_total == 7.0
    assert http.queued_per_run == 3.5
    assert http.queued_max == 3.0
    assert http.waited_total == 3.5
    assert http.worst_step == "f2"  # 4.0 queued over both runs, against f1's 3.0
    assert (db.steps, db.queued_total, db.waited_max) == (1, 1.0, 0.5)
    assert (none.steps, none.queued_total) == (1, 0.0)


def test_summarize_bound_reduces_repeats() -> None:
    upstream = {"a": (), "b": ("a",), "c": ("a",)}

    def run(makespan: float, b: float, c: float, status: str = "SUCCESS") -> RunStats:
        timings = {"a": timing("a", 0, 1), "b": timing("b", 1, 1 + b), "c": timing("c", 1, 1 + c)}
        return RunStats(status=status, makespan=makespan, timings=timings, queued={})

    runs = [run(4.0, 3.0, 1.0), run(2.0, 1.0, 0.5, "FAILURE"), run(3.0, 2.0, 4.0)]
    s = summarize_bound(8, runs, upstream=upstream, pools=dict.fromkeys(upstream))
    assert (s.concurrency, s.runs, s.failed_runs) == (8, 3, 1)
    assert (s.makespan_median, s.makespan_min, s.makespan_max) == (3.0, 2.0, 4.0)
    assert s.steps_per_run == 3.0
    assert s.throughput == 1.0
    assert s.step_duration is not None and s.step_duration.count == 9
    # median spans: b 2.0, c 1.0, so the path goes through b.
    assert s.critical_path.steps == ("a", "b")
    assert s.critical_path.length == 3.0
    as_json = json.loads(json.dumps(s.to_dict()))
    assert as_json["makespan"] == {"median": 3.0, "min": 2.0, "max": 4.0}


def test_summarize_bound_keeps_the_first_error_of_a_failed_run() -> None:
    error = StepError(step="boom", type="ValueError", message="bad")
    ok = RunStats(status="SUCCESS", makespan=1.0, timings={"a": timing("a", 0, 1)}, queued={})
    failed = RunStats(
        status="FAILURE", makespan=1.0, timings={"a": timing("a", 0, 1)}, queued={}, error=error
    )
    s = summarize_bound(2, [ok, failed], upstream={"a": ()}, pools={"a": None})
    assert (s.failed_runs, s.first_error) == (1, error)
    assert s.to_dict()["first_error"] == {"step": "boom", "type": "ValueError", "message": "bad"}


def test_summarize_bound_needs_runs() -> None:
    with pytest.raises(BenchError, match="concurrency 4"):
        summarize_bound(4, [], upstream={}, pools={})


# --- resource setup, pool waits, first errors ----------------------------------------------------


def _setup_log() -> Log:
    """http is set up from 0.1 to 0.6 by `a`, the first step needing it; `b` needs it too and
    waits on it; `c` needs nothing.  Every step's inputs are done at 0.0 (the run's start)."""
    return (
        Log()
        .add(0.0, EventType.RUN_START)
        .add(0.1, EventType.RESOURCE_INIT_STARTED, resource="http")
        .add(0.6, EventType.RESOURCE_INIT_SUCCESS, resource="http")
        .step("a", 0.7, 1.0, waited=0.7)
        .step("b", 0.8, 1.0, waited=0.8)
        .step("c", 0.0, 1.0, waited=0.0)
        .add(1.0, EventType.RUN_SUCCESS)
    )


def test_resource_setup_is_taken_out_of_the_queueing_of_the_steps_that_need_it() -> None:
    needs = {"a": {"http"}, "b": {"http"}, "c": set()}
    stats = run_stats(_setup_log().events, dict.fromkeys("abc", ()), needs=needs)
    assert stats.resources == {"http": pytest.approx(0.5)}
    assert stats.setup == {"a": pytest.approx(0.5), "b": pytest.approx(0.5), "c": 0.0}
    assert stats.queued == {"a": pytest.approx(0.2), "b": pytest.approx(0.3), "c": 0.0}
    assert stats.waited("a") == pytest.approx(0.2)


def test_without_needs_resource_setup_counts_as_queueing() -> None:
    stats = run_stats(_setup_log().events, dict.fromkeys("abc", ()))
    assert stats.setup == {"a": 0.0, "b": 0.0, "c": 0.0}
    assert stats.queued["a"] == pytest.approx(0.7)


def test_a_resource_needed_through_another_counts_for_the_step() -> None:
    # `needs` is the closure: a step that needs "db", which needs "http", waits on both setups.
    log = (
        Log()
        .add(0.0, EventType.RUN_START)
        .add(0.0, EventType.RESOURCE_INIT_STARTED, resource="http")
        .add(0.2, EventType.RESOURCE_INIT_SUCCESS, resource="http")
        .add(0.3, EventType.RESOURCE_INIT_STARTED, resource="db")
        .add(0.4, EventType.RESOURCE_INIT_SUCCESS, resource="db")
        .step("a", 0.5, 1.0, waited=0.5)
        .add(1.0, EventType.RUN_SUCCESS)
    )
    stats = run_stats(log.events, {"a": ()}, needs={"a": {"db", "http"}})
    assert stats.setup["a"] == pytest.approx(0.3)
    assert stats.queued["a"] == pytest.approx(0.2)


def test_pool_wait_is_the_queueing_before_the_step_held_its_pool_slot() -> None:
    # b's input (a) is done at 1.0; it got its pool slot at 3.0 (waited 0.5 from then to 3.5).
    log = (
        Log()
        .add(0.0, EventType.RUN_START)
        .step("a", 0.0, 1.0)
        .step("b", 3.5, 4.0, waited=0.5)
        .add(4.0, EventType.RUN_SUCCESS)
    )
    upstream = {"a": (), "b": ("a",)}
    stats = run_stats(log.events, upstream, pools={"a": None, "b": "db"})
    assert stats.queued["b"] == pytest.approx(2.5)
    assert stats.pool_wait["b"] == pytest.approx(2.0)
    (wait, _) = step_waits([stats])
    assert (wait.step, wait.queued, wait.pool_wait, wait.waited) == (
        "b",
        pytest.approx(2.5),
        pytest.approx(2.0),
        pytest.approx(0.5),
    )
    # A step in no pool has no pool wait: all of its queueing is the bound's.
    unpooled = run_stats(log.events, upstream, pools={"a": None, "b": None})
    assert unpooled.pool_wait["b"] == 0.0


def test_a_mapped_step_is_ready_when_its_item_is_yielded() -> None:
    log = (
        Log()
        .add(0.0, EventType.RUN_START)
        .add(0.0, EventType.STEP_START, "discover", attempt=1, waited=0.0)
        .add(2.0, EventType.STEP_OUTPUT, "discover", output="urls", mapping_key="k7")
        .add(2.5, EventType.STEP_START, "fetch[k7]", attempt=1, waited=0.1)
        .add(3.0, EventType.STEP_SUCCESS, "fetch[k7]", attempt=1, duration=0.5)
        .add(3.0, EventType.STEP_SUCCESS, "discover", attempt=1, duration=3.0)
        .add(3.0, EventType.RUN_SUCCESS)
    )
    stats = run_stats(log.events, {"discover": ()}, pools={"discover": None, "fetch": "http"})
    assert stats.queued["fetch[k7]"] == pytest.approx(0.5)
    assert stats.pool_wait["fetch[k7]"] == pytest.approx(0.4)
    (http, _) = pool_waits([stats], {"discover": None, "fetch": "http"})
    assert (http.pool, http.steps) == ("http", 1)


def test_first_error_names_the_step_and_its_error() -> None:
    error = {"type": "ValueError", "message": "bad input", "traceback": "", "cause": None}
    log = (
        Log()
        .add(0.0, EventType.RUN_START)
        .add(0.5, EventType.STEP_FAILURE, "parse", error=error)
        .add(0.6, EventType.STEP_FAILURE, "later", error={**error, "message": "second"})
        .add(1.0, EventType.RUN_FAILURE)
    )
    assert first_error(log.events) == StepError(
        step="parse", type="ValueError", message="bad input"
    )
    stats = run_stats(log.events, {"parse": (), "later": ()})
    assert stats.error is not None and stats.error.step == "parse"
    assert str(stats.error) == "step 'parse': ValueError: bad input"


def test_first_error_of_a_resource_that_failed_names_the_step_it_kept_from_starting() -> None:
    error = {"type": "OSError", "message": "no route", "traceback": "", "cause": None}
    log = (
        Log()
        .add(0.0, EventType.RESOURCE_INIT_FAILURE, resource="http", error=error)
        .add(0.0, EventType.STEP_SKIPPED, "fetch", reason="resource failed", resource="http")
    )
    assert first_error(log.events) == StepError(
        step="fetch", type="OSError", message="resource 'http': no route"
    )
    assert first_error(Log().step("a", 0, 1).events) is None


def test_step_table_lists_the_slowest_steps_by_p50_then_p95() -> None:
    def run(a: float, b: float, c: float) -> RunStats:
        timings = {"a": timing("a", 0, a), "b": timing("b", 0, b), "c": timing("c", 0, c)}
        return RunStats(
            status="SUCCESS",
            makespan=3.0,
            timings=timings,
            queued={"a": 0.4, "b": 0.0, "c": 0.0},
            pool_wait={"a": 0.1},
            setup={"a": 0.2},
        )

    rows = step_table([run(1.0, 2.0, 1.0), run(1.0, 2.0, 3.0), run(1.0, 2.0, 1.0)], top=2)
    assert [r.step for r in rows] == ["b", "c"]
    assert (rows[0].p50, rows[0].p95, rows[0].runs) == (2.0, 2.0, 3)
    assert rows[1].p95 == pytest.approx(2.8)
    (a,) = [r for r in step_table([run(1.0, 2.0, 1.0)], top=3) if r.step == "a"]
    assert (a.setup, a.pool_wait, a.waited) == (0.2, 0.1, pytest.approx(0.3))


# --- which setting is enough ---------------------------------------------------------------------


def _summary(bound: int | None, makespan: float, *, failed: int = 0, **pools: int) -> BoundSummary:
    run = RunStats(
        status="FAILURE" if failed else "SUCCESS", makespan=makespan, timings={}, queued={}
    )
    return summarize_bound(bound, [run], upstream={}, pools={}, pool_limits=pools)


def test_enough_is_the_smallest_bound_within_five_percent_of_the_best() -> None:
    summaries = [_summary(1, 10.0), _summary(8, 2.08), _summary(32, 2.0), _summary(128, 2.02)]
    chosen = enough(summaries)
    assert chosen is not None and chosen.concurrency == 8
    assert enough([_summary(1, 10.0), _summary(8, 2.2), _summary(32, 2.0)]).concurrency == 32  # type: ignore[union-attr]


def test_enough_never_picks_a_setting_whose_runs_failed() -> None:
    chosen = enough([_summary(1, 1.0, failed=1), _summary(4, 2.0)])
    assert chosen is not None and chosen.concurrency == 4
    assert enough([_summary(1, 1.0, failed=1)]) is None


def test_enough_prefers_the_smaller_bound_then_the_smaller_pool_limits() -> None:
    summaries = [
        _summary(8, 1.0, net=16),
        _summary(8, 1.02, net=4),
        _summary(4, 2.0, net=16),
        _summary(8, 3.0, net=1),
    ]
    chosen = enough(summaries)
    assert chosen is not None
    assert (chosen.concurrency, dict(chosen.pool_limits)) == (8, {"net": 4})
    assert chosen.label == "bound 8, net=4"


# --- the plot ------------------------------------------------------------------------------------


def test_makespan_svg_is_valid_svg_with_a_point_per_bound() -> None:
    points = [
        PlotPoint(concurrency=c, median=m, low=m * 0.9, high=m * 1.1)
        for c, m in ((1, 4.0), (8, 1.0), (32, 0.5))
    ]
    root = ET.fromstring(makespan_svg(points, title="p <&> q"))
    assert root.tag == f"{SVG}svg"
    assert len(root.findall(f"{SVG}circle")) == 3
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "p <&> q" in texts
    assert "max concurrency (log scale)" in texts


def test_makespan_svg_needs_points() -> None:
    with pytest.raises(BenchError, match="nothing to plot"):
        makespan_svg([], title="t")


def test_y_axis_fits_close_makespans_instead_of_starting_at_zero() -> None:
    axis = y_axis([1.00, 1.02, 1.05])
    assert axis.unit == "s"
    assert 0.9 <= axis.low < 1.00
    assert 1.05 < axis.high <= 1.1
    assert axis.ticks[0] == axis.low and axis.ticks[-1] == pytest.approx(axis.high)
    assert len(axis.ticks) >= 3


def test_y_axis_starts_at_zero_for_spread_values_and_picks_a_unit() -> None:
    axis = y_axis([0.002, 0.040])
    assert (axis.low, axis.unit, axis.scale) == (0.0, "ms", 1e3)
    assert axis.high >= 0.040
    assert axis.label(0.040) == "40"
    assert y_axis([3e-5, 4e-5]).unit == "µs"


def test_makespan_svg_labels_its_unit_and_draws_the_critical_path() -> None:
    points = [PlotPoint(concurrency=c, median=m, low=m, high=m) for c, m in ((1, 0.5), (4, 0.2))]
    root = ET.fromstring(makespan_svg(points, title="t", critical_path=0.15))
    texts = [t.text or "" for t in root.iter(f"{SVG}text")]
    assert "makespan (ms)" in texts
    assert any(t.startswith("critical path 150 ms") for t in texts)
    assert len([e for e in root.iter(f"{SVG}line") if e.get("class") == "critical-path"]) == 1
    ticks = [float(t.text or "") for t in root.iter(f"{SVG}text") if t.get("class") == "y-tick"]
    assert min(ticks) <= 150 and max(ticks) >= 500


def test_makespan_svg_draws_one_line_per_pool_setting() -> None:
    points = [
        PlotPoint(concurrency=c, median=1.0, low=1.0, high=1.0, series=s)
        for c in (1, 8)
        for s in ("net=1", "net=4")
    ]
    root = ET.fromstring(makespan_svg(points, title="t"))
    series = [e for e in root.iter(f"{SVG}polyline") if e.get("class") == "series"]
    assert len(series) == 2
    assert {t.text for t in root.iter(f"{SVG}text")} >= {"net=1", "net=4"}


def test_makespan_png_is_written_with_matplotlib(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    points = [PlotPoint(concurrency=c, median=m, low=m, high=m) for c, m in ((1, 0.5), (8, 0.1))]
    path = tmp_path / "plot.png"
    makespan_png(points, path, title="t", critical_path=0.05)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- the command -------------------------------------------------------------------------------


def _bench(
    tmp_path: Path, *args: str, env_extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("OTEL_") and k not in ("ASYNCDAG_LOG_LEVEL", "COLUMNS")
    }
    env["ASYNCDAG_HOME"] = str(home)
    env.update(env_extra or {})
    return subprocess.run(
        [str(Path(sys.executable).parent / "asyncdag"), "pipeline", "bench", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )


@pytest.mark.slow
def test_bench_command_reports_every_bound_as_json_and_plots_svg(tmp_path: Path) -> None:
    plot = tmp_path / "out.svg"
    done = _bench(
        tmp_path,
        "-f",
        str(EXAMPLES / "hello_world.py"),
        "--concurrency",
        "1,4",
        "--repeat",
        "2",
        "--json",
        "--plot",
        str(plot),
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["pipeline"], report["steps"], report["repeat"]) == ("hey_pipeline", 2, 2)
    assert [b["concurrency"] for b in report["bounds"]] == [1, 4]
    for bound in report["bounds"]:
        assert (bound["runs"], bound["failed_runs"], bound["steps_per_run"]) == (2, 0, 2)
        assert set(bound["makespan"]) == {"median", "min", "max"}
        assert bound["makespan"]["min"] <= bound["makespan"]["median"] <= bound["makespan"]["max"]
        assert bound["step_duration"]["count"] == 4
        assert bound["critical_path"]["steps"] == ["get_name", "hey"]
        assert [(p["pool"], p["steps"], p["runs"]) for p in bound["pools"]] == [(NO_POOL, 2, 2)]
    assert not (tmp_path / "home" / "asyncdag.db").exists()  # nothing recorded
    root = ET.parse(plot).getroot()
    assert root.tag == f"{SVG}svg"
    assert len(root.findall(f"{SVG}circle")) == 2


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.py")))
def test_bench_command_runs_every_example(tmp_path: Path, example: str, backend: str) -> None:
    # Every example runs as it is: the two that fetch URLs serve a local site from a resource.
    done = _run_example_bench(tmp_path, example, [], backend)
    assert done.returncode == 0, done.stderr
    assert "Critical path at bound" in done.stdout
    lines = done.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("bound  makespan"))
    assert [line.split()[0] for line in lines[header + 1 : header + 3]] == ["1", "2"]


def _run_example_bench(
    tmp_path: Path, example: str, extra: list[str], backend: str
) -> subprocess.CompletedProcess[str]:
    return _bench(
        tmp_path,
        "-f",
        str(EXAMPLES / example),
        *extra,
        "--concurrency",
        "1,2",
        "--repeat",
        "1",
        "--warmup",
        "0",
        "--backend",
        backend,
    )


@pytest.mark.slow
def test_bench_command_exits_1_when_a_run_fails(tmp_path: Path) -> None:
    failing = ROOT / "tests" / "pipelines" / "failing.py"
    done = _bench(tmp_path, "-f", str(failing), "--concurrency", "2", "--repeat", "2", "--json")
    assert done.returncode == 1, done.stderr
    (bound,) = json.loads(done.stdout)["bounds"]
    assert (bound["runs"], bound["failed_runs"]) == (2, 2)
    assert bound["first_error"] == {
        "step": "boom",
        "type": "ValueError",
        "message": "the input was bad",
    }


@pytest.mark.slow
def test_bench_command_refuses_png_without_matplotlib_before_running(tmp_path: Path) -> None:
    # A `matplotlib` that cannot be imported stands in for one that is not installed.
    blocker = tmp_path / "no_matplotlib" / "matplotlib"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('matplotlib is not installed')\n")
    done = _bench(
        tmp_path,
        "-f",
        str(EXAMPLES / "hello_world.py"),
        "--plot",
        "out.png",
        env_extra={"PYTHONPATH": str(blocker.parent)},
    )
    assert done.returncode == 2
    assert "matplotlib" in done.stderr and ".svg" in done.stderr
    assert "asyncdag[plot]" in done.stderr
    assert not (tmp_path / "out.png").exists()


@pytest.mark.slow
def test_bench_command_writes_a_png_plot(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    plot = tmp_path / "out.png"
    done = _bench(
        tmp_path,
        "-f",
        str(EXAMPLES / "hello_world.py"),
        "--concurrency",
        "1,2",
        "--repeat",
        "1",
        "--warmup",
        "0",
        "--plot",
        str(plot),
    )
    assert done.returncode == 0, done.stderr
    assert plot.read_bytes()[:4] == b"\x89PNG"


POOLED = ROOT / "tests" / "pipelines" / "pooled.py"


@pytest.mark.slow
def test_bench_command_sweeps_pool_limits_with_every_bound(tmp_path: Path) -> None:
    done = _bench(
        tmp_path,
        "-f",
        str(POOLED),
        "--concurrency",
        "1,4",
        "--pool",
        "net=1,2",
        "--repeat",
        "2",
        "--warmup",
        "0",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    settings = [(b["concurrency"], b["pool_limits"]) for b in report["bounds"]]
    assert settings == [(1, {"net": 1}), (1, {"net": 2}), (4, {"net": 1}), (4, {"net": 2})]
    assert report["enough"] in [{"concurrency": c, "pool_limits": p} for c, p in settings]
    for bound in report["bounds"]:
        (http,) = bound["resources"]
        assert (http["resource"], http["runs"]) == ("http", 2)
        assert {row["step"] for row in bound["steps"]} <= {f"fetch_{i}" for i in range(4)} | {
            "total"
        }
        assert len(bound["steps"]) == 5
        pools = {p["pool"]: p["steps"] for p in bound["pools"]}
        assert pools == {"net": 4, NO_POOL: 1}


@pytest.mark.slow
def test_bench_command_prints_the_step_table_waits_and_the_bound_that_is_enough(
    tmp_path: Path,
) -> None:
    done = _bench(
        tmp_path, "-f", str(POOLED), "--concurrency", "1,4", "--repeat", "1", "--top", "2"
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert re.search(r"^Enough: bound (1|4), the smallest setting within 5% of the best", out, re.M)
    assert "Resource setup per run" in out
    lines = out.splitlines()
    head = lines.index(next(line for line in lines if line.startswith("Slowest steps")))
    assert lines[head + 1].split() == [
        "setting",
        "step",
        "p50",
        "p95",
        "pool",
        "wait",
        "queue",
        "wait",
        "setup",
    ]
    assert [line.split()[0] for line in lines[head + 2 : head + 6]] == ["1", "1", "4", "4"]
    assert any(line.startswith("Steps that queued longest") for line in lines)


@pytest.mark.slow
def test_bench_command_rejects_a_pool_the_pipeline_does_not_use(tmp_path: Path) -> None:
    done = _bench(tmp_path, "-f", str(POOLED), "--pool", "db=1,2")
    assert done.returncode == 2
    assert "'db'" in done.stderr and "its pools: net" in done.stderr
    done = _bench(tmp_path, "-f", str(POOLED), "--pool", "net")
    assert done.returncode == 2
    assert "like http=1,4,16" in done.stderr


@pytest.mark.slow
def test_bench_command_prints_a_failed_runs_first_error_and_step(tmp_path: Path) -> None:
    failing = ROOT / "tests" / "pipelines" / "failing.py"
    done = _bench(tmp_path, "-f", str(failing), "--concurrency", "2", "--repeat", "1")
    assert done.returncode == 1, done.stderr
    assert (
        "bound 2: 1 of 1 runs failed; first error in step 'boom': ValueError: the input was bad"
        in done.stdout
    )


def test_bench_help_says_what_it_does() -> None:
    from asyncdag.cli._app import build_parser

    # The command's own parser (loaded) and its slot's placeholder (not loaded) say the same.
    for argv in (["pipeline", "bench"], []):
        group = build_parser(argv)._subparsers._group_actions[0].choices["pipeline"]  # type: ignore[union-attr]
        text = " ".join(group.format_help().split())
        assert (
            "bench run a pipeline at several concurrency bounds and report where time goes" in text
        )
        assert "overhead" not in text


@pytest.mark.slow
def test_bench_command_rejects_a_bad_bound(tmp_path: Path) -> None:
    done = _bench(tmp_path, "-f", str(EXAMPLES / "hello_world.py"), "--concurrency", "1,0")
    assert done.returncode == 2
    assert "at least 1" in done.stderr
