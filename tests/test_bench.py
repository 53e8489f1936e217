"""Bench statistics on hand-built graphs and schedules, and ``asyncdag pipeline bench`` end to end.

The statistics take events and timings written here by hand, so every figure
is known exactly; the command's tests check shapes and counts, never timings.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
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
    PlotPoint,
    RunStats,
    StepTiming,
    critical_path,
    describe,
    makespan_svg,
    parallelism,
    percentile,
    pool_waits,
    queued_times,
    run_stats,
    step_timings,
    summarize_bound,
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


def test_summarize_bound_needs_runs() -> None:
    with pytest.raises(BenchError, match="concurrency 4"):
        summarize_bound(4, [], upstream={}, pools={})


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


# --- the command -------------------------------------------------------------------------------


def _bench(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("OTEL_") and k not in ("ASYNCDAG_LOG_LEVEL", "COLUMNS")
    }
    env["ASYNCDAG_HOME"] = str(home)
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
    extra: list[str] = []
    if example == "fetch_urls.py":
        # The example's script fills in base_url; here a closed port: fetches fail and are logged.
        config = tmp_path / "base.yaml"
        config.write_text("resources:\n  http:\n    config:\n      base_url: http://127.0.0.1:9\n")
        extra = ["-c", str(EXAMPLES / "fetch_urls.yaml"), "-c", str(config)]
    site = contextlib.nullcontext()
    if example == "crawler.py":
        # The crawler's script serves its own local site; here the test serves it.
        spec = importlib.util.spec_from_file_location("crawler_example", EXAMPLES / example)
        assert spec is not None and spec.loader is not None
        crawler = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(crawler)
        site = crawler.local_site(12)
    with site as base_url:
        if base_url is not None:
            config = tmp_path / "site.yaml"
            config.write_text(f"solids:\n  discover:\n    config:\n      base_url: {base_url}\n")
            extra = ["-c", str(config)]
        done = _run_example_bench(tmp_path, example, extra, backend)
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


@pytest.mark.slow
def test_bench_command_refuses_png_without_matplotlib_before_running(tmp_path: Path) -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("matplotlib is installed, so PNG plots work")
    done = _bench(tmp_path, "-f", str(EXAMPLES / "hello_world.py"), "--plot", "out.png")
    assert done.returncode == 2
    assert "matplotlib" in done.stderr and ".svg" in done.stderr
    assert not (tmp_path / "out.png").exists()


@pytest.mark.slow
def test_bench_command_rejects_a_bad_bound(tmp_path: Path) -> None:
    done = _bench(tmp_path, "-f", str(EXAMPLES / "hello_world.py"), "--concurrency", "1,0")
    assert done.returncode == 2
    assert "at least 1" in done.stderr
