"""asyncdag's benchmark suite: every workload against a hand-written raw anyio program.

    python benchmarks/run.py                  # the whole suite (< 10 min on 2 cores)
    python benchmarks/run.py --quick          # smaller sizes, fewer repeats (< 1 min)
    python benchmarks/run.py --smoke          # every workload at tiny size; exit 1 on any error
    python benchmarks/run.py --only W2,W3 --backend trio

Prints tables and writes benchmarks/results/latest.json (smoke runs write only
with --json).  Goals are printed next to the figures and never asserted: the
exit status says only whether every workload ran and returned the right answer.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import attrs

sys.path.insert(0, str(Path(__file__).resolve().parent))

import workloads
from _harness import (  # after the sys.path line above
    BENCH_DIR,
    ROOT,
    SRC,
    alternate,
    median,
    quiet_asyncdag_logging,
    use_working_tree,
)
from _report import render, save
from peers import run_peers

use_working_tree()

ALL = (
    "W1",
    "W1U",
    "W2",
    "W3",
    "W3U",
    "W4",
    "W5",
    "W6",
    "W7",
    "W8",
    "W9",
    "TRACE",
    "IMPORT",
    "STORAGE",
    "OUTPUTS",
    "POSTGRES",
    "DASK",
    "PEERS",
)
BACKENDS = ("asyncio", "trio")


@attrs.frozen
class Profile:
    """Sizes and repeats for one kind of run."""

    name: str
    repeats: int
    warmup: int
    budget_s: float  # per workload and backend; repeats stop early past it
    w1: tuple[int, float, int]  # steps, sleep, bound
    w2: int
    w3: int
    w4: int
    w5: tuple[int, ...]
    w5_processes: int  # fresh processes per size and program
    w5_time_runs: int  # timed runs in each process after the first (memory) run
    w6: int
    w7: tuple[int, float, int]
    w8: int  # dynamic items through map and collect
    w9: tuple[int, ...]  # concurrent runs of 20 steps each
    w9_delay: float  # each of a run's 18 parallel steps sleeps this long
    trace_w2: int
    trace_w3: int
    trace_repeats: int
    storage: int
    import_rounds: int
    dask: tuple[int, float, int, int]  # CPU steps, seconds each, chain length, repeats


PROFILES = {
    "full": Profile(
        name="full",
        repeats=7,
        warmup=1,
        budget_s=25.0,
        w1=(200, 0.05, 50),
        w2=1_000,
        w3=10_000,
        w4=10_000,
        w5=(1_000, 10_000, 100_000),
        w5_processes=2,
        w5_time_runs=2,
        w6=500,
        w7=(200, 0.01, 20),
        w8=5_000,
        w9=(100, 300),
        w9_delay=0.05,
        trace_w2=1_000,
        trace_w3=10_000,
        trace_repeats=5,
        storage=10_000,
        import_rounds=9,
        dask=(16, 0.2, 200, 5),
    ),
    "quick": Profile(
        name="quick",
        repeats=3,
        warmup=1,
        budget_s=3.0,
        w1=(200, 0.05, 50),
        w2=1_000,
        w3=2_000,
        w4=2_000,
        w5=(1_000, 10_000),
        w5_processes=1,
        w5_time_runs=1,
        w6=100,
        w7=(200, 0.01, 20),
        w8=1_000,
        w9=(100, 300),
        w9_delay=0.05,
        trace_w2=500,
        trace_w3=2_000,
        trace_repeats=3,
        storage=2_000,
        import_rounds=3,
        dask=(16, 0.2, 100, 1),
    ),
    "smoke": Profile(
        name="smoke",
        repeats=1,
        warmup=0,
        budget_s=1.0,
        w1=(20, 0.002, 5),
        w2=20,
        w3=20,
        w4=30,
        w5=(50, 100),
        w5_processes=1,
        w5_time_runs=1,
        w6=10,
        w7=(10, 0.001, 3),
        w8=20,
        w9=(3, 5),
        w9_delay=0.002,
        trace_w2=20,
        trace_w3=20,
        trace_repeats=1,
        storage=20,
        import_rounds=1,
        dask=(4, 0.01, 10, 1),
    ),
}

GOALS = {
    "W1": ("makespan ≤ 1.05x ideal", 1.05),
    "W1U": ("makespan ≤ 1.05x ideal", 1.05),
    "W2": ("≤ 1.5x raw", 1.5),
    "W3": ("≤ 1.5x raw", 1.5),
    "W3U": ("≤ 1.0x raw task per node", 1.0),
    "W5": ("time growth 10k→100k ≤ 11x", 11.0),
    "W9": ("≤ 1.1x raw, loop stall ≤ 1.5x raw's", 1.1),
    "IMPORT": ("≤ 2x anyio", 2.0),
}


class Suite:
    """Collects rows, notes and errors while workloads run; renders and saves them at the end."""

    def __init__(self, profile: Profile, backends: tuple[str, ...]) -> None:
        self.profile = profile
        self.backends = backends
        self.rows: list[dict[str, Any]] = []
        self.scale: list[dict[str, Any]] = []
        self.tracing: list[dict[str, Any]] = []
        self.imports: dict[str, Any] = {}
        self.peers: list[dict[str, Any]] = []
        self.dask: dict[str, Any] = {}
        self.notes: list[str] = []
        self.errors: list[dict[str, str]] = []

    @contextlib.contextmanager
    def guard(self, what: str) -> Iterator[None]:
        """Record a workload's exception and go on with the next one."""
        try:
            yield
        except Exception as exc:
            self.errors.append(
                {"workload": what, "error": repr(exc), "traceback": traceback.format_exc()}
            )
            print(f"!! {what} failed: {exc!r}", file=sys.stderr)


# --- in-process comparisons (W1-W4, W6, W7, storage) ---------------------------------------------


def _case_row(
    case: workloads.Case, backend: str, samples: dict[str, list[float]]
) -> dict[str, Any]:
    raw_medians = {name: median(samples[name]) for name in case.raw}
    best = min(raw_medians, key=raw_medians.__getitem__)
    raw_s = raw_medians[best]
    row: dict[str, Any] = {
        "workload": case.name,
        "backend": backend,
        "size": case.size,
        "steps": case.steps,
        "repeats": min(len(v) for v in samples.values()),
        "raw_baseline": best,
        "raw_s": raw_s,
        "raw_medians_s": raw_medians,
        "raw_us_per_step": raw_s / case.steps * 1e6,
        "samples_s": samples,
        "build_s": case.build_s,
    }
    if case.ideal_s is not None:
        row["ideal_s"] = case.ideal_s
        row["raw_over_ideal"] = raw_s / case.ideal_s
    if "asyncdag" in samples:
        dag_s = median(samples["asyncdag"])
        row["asyncdag_s"] = dag_s
        row["ratio"] = dag_s / raw_s
        row["ratio_by_baseline"] = {name: dag_s / s for name, s in raw_medians.items()}
        row["asyncdag_us_per_step"] = dag_s / case.steps * 1e6
        row["extra_us_per_step"] = (dag_s - raw_s) / case.steps * 1e6
        if case.ideal_s is not None:
            row["asyncdag_over_ideal"] = dag_s / case.ideal_s
    if case.stall is not None:
        _add_stall(row, case.stall, samples)
    if "asyncdag" in samples:
        _judge(row)
    return row


W9_STALL_GOAL = 1.5  # the loop stall under asyncdag, against the raw program's


def _add_stall(row: dict[str, Any], stall: Any, samples: dict[str, list[float]]) -> None:
    """Loop-stall medians (the timed runs only) for every program, and asyncdag's against raw."""
    stalls = {name: median(stall.timed_samples(name, len(runs))) for name, runs in samples.items()}
    row["stall_s"] = stalls
    row["stall_samples_s"] = {
        name: stall.timed_samples(name, len(runs)) for name, runs in samples.items()
    }
    row["raw_stall_s"] = stalls[row["raw_baseline"]]
    if "asyncdag" in stalls:
        row["asyncdag_stall_s"] = stalls["asyncdag"]
        row["stall_ratio"] = stalls["asyncdag"] / row["raw_stall_s"] if row["raw_stall_s"] else None


def _judge(row: dict[str, Any]) -> None:
    goal = GOALS.get(row["workload"])
    if goal is None:
        return
    text, limit = goal
    value = row["asyncdag_over_ideal"] if row["workload"] in ("W1", "W1U") else row["ratio"]
    row["goal"] = text
    row["goal_met"] = value <= limit
    if row["workload"] == "W9":
        stall_ratio = row.get("stall_ratio")
        row["goal_met"] = row["goal_met"] and (
            stall_ratio is not None and stall_ratio <= W9_STALL_GOAL
        )


def _compare(suite: Suite, make_case: Callable[[], workloads.Case]) -> None:
    case = make_case()
    programs = {**case.raw}
    if case.dag is not None:
        programs["asyncdag"] = case.dag
    p = suite.profile
    for backend in suite.backends:
        with suite.guard(f"{case.name}[{backend}]"):
            samples = anyio.run(
                lambda: alternate(
                    programs,
                    expected=case.expected,
                    repeats=p.repeats,
                    warmup=p.warmup,
                    budget_s=p.budget_s,
                    min_repeats=min(3, p.repeats),
                ),
                backend=backend,
            )
            suite.rows.append(_case_row(case, backend, samples))
    if case.dag_error:
        # The raw side ran and is reported; the missing engine still fails the suite.
        raise RuntimeError(case.dag_error)


def run_concurrent_runs(suite: Suite) -> None:
    """W9 at each size: one size's failure (or a missing engine) still lets the next one run."""
    p = suite.profile
    for runs in p.w9:
        with suite.guard(f"W9 {runs} runs"):
            _compare(
                suite, lambda runs=runs: workloads.concurrent_runs_case(runs, delay=p.w9_delay)
            )


def run_storage(suite: Suite) -> None:
    """W3 with run history in SQLite against no storage argument at all."""
    try:
        from asyncdag.storage import SqliteStorage
    except ImportError as exc:
        suite.notes.append(f"STORAGE skipped: SqliteStorage not importable ({exc})")
        return
    with tempfile.TemporaryDirectory(prefix="asyncdag-bench-") as tmp:
        storage = SqliteStorage(Path(tmp) / "runs.db")
        with storage if hasattr(storage, "__enter__") else contextlib.nullcontext(storage):
            _compare_storage(suite, "STORAGE", {"sqlite": storage}, [("sqlite", "no storage")])


def run_postgres(suite: Suite) -> None:
    """W3 with run history in PostgreSQL, against SQLite and against no storage, alternated."""
    try:
        from asyncdag.storage import PostgresStorage, SqliteStorage
    except ImportError as exc:
        suite.notes.append(f"POSTGRES skipped: PostgresStorage not importable ({exc})")
        return
    from postgres_server import NoServerError, bench_database

    try:
        with (
            bench_database() as url,
            tempfile.TemporaryDirectory(prefix="asyncdag-bench-") as tmp,
            SqliteStorage(Path(tmp) / "runs.db") as sqlite,
            PostgresStorage(url) as postgres,
        ):
            _compare_storage(
                suite,
                "POSTGRES",
                {"sqlite": sqlite, "postgres": postgres},
                [("postgres", "no storage"), ("postgres", "sqlite")],
            )
    except NoServerError as exc:
        suite.notes.append(f"POSTGRES skipped: {exc}")


def run_outputs(suite: Suite) -> None:
    """W3 with every step's output stored on the local filesystem against no output store."""
    try:
        from asyncdag.outputs import FilesystemOutputStore
    except ImportError as exc:
        suite.notes.append(f"OUTPUTS skipped: asyncdag.outputs not importable ({exc})")
        return
    with tempfile.TemporaryDirectory(prefix="asyncdag-bench-outputs-") as tmp:
        _compare_storage(
            suite,
            "OUTPUTS",
            {"outputs": FilesystemOutputStore(tmp)},
            [("outputs", "no output store")],
            option="output_store",
            without="no output store",
        )


def _compare_storage(
    suite: Suite,
    workload: str,
    stores: dict[str, Any],
    rows: list[tuple[str, str]],
    *,
    option: str = "storage",
    without: str = "no storage",
) -> None:
    """W3 under each store (passed as ``option``) and under none, alternated; one row per
    (measured, baseline) pair."""
    n = suite.profile.storage
    runner, build_s = workloads.dag_runner(
        lambda: workloads.build_wide_pipeline(n), "total", max_concurrency=50
    )
    p = suite.profile
    programs: dict[str, Callable[[], Any]] = {without: runner}
    for name, store in stores.items():
        programs[name] = functools.partial(runner, **{option: store})
    for backend in suite.backends:
        with suite.guard(f"{workload}[{backend}]"):
            try:
                samples = anyio.run(
                    lambda: alternate(
                        programs,
                        expected=n,
                        repeats=p.repeats,
                        warmup=p.warmup,
                        budget_s=p.budget_s,
                        min_repeats=min(3, p.repeats),
                    ),
                    backend=backend,
                )
            except TypeError as exc:
                if option not in str(exc):
                    raise
                suite.notes.append(f"{workload} skipped: execute_pipeline_async: {exc}")
                return
            for measured, baseline in rows:
                base, value = median(samples[baseline]), median(samples[measured])
                suite.rows.append(
                    {
                        "workload": workload,
                        "backend": backend,
                        "size": n,
                        "steps": n + 1,
                        "repeats": len(samples[measured]),
                        "raw_baseline": f"asyncdag, {baseline}",
                        "raw_s": base,
                        "asyncdag_s": value,
                        "ratio": value / base,
                        "extra_us_per_step": (value - base) / (n + 1) * 1e6,
                        "samples_s": {k: samples[k] for k in (baseline, measured)},
                        "build_s": build_s,
                    }
                )


def run_http(suite: Suite) -> None:
    from http_server import running_server

    with running_server() as base_url:
        _compare(suite, lambda: workloads.http_case(suite.profile.w6, base_url=base_url))


# --- subprocess measurements (W5, tracing, import) -----------------------------------------------


def _subprocess_json(request: dict[str, Any], *, timeout: float = 300) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, str(BENCH_DIR / "_worker.py"), json.dumps(request)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"worker {request} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_scale(suite: Suite) -> None:
    p = suite.profile
    for backend in suite.backends:
        with suite.guard(f"W5[{backend}]"):
            by_size: dict[int, dict[str, list[dict[str, Any]]]] = {}
            for n in p.w5:
                by_size[n] = {"raw": [], "asyncdag": []}
                for rep in range(p.w5_processes):
                    order = ("raw", "asyncdag") if rep % 2 == 0 else ("asyncdag", "raw")
                    for impl in order:
                        by_size[n][impl].append(
                            _subprocess_json(
                                {
                                    "task": "scale",
                                    "impl": impl,
                                    "n": n,
                                    "backend": backend,
                                    "time_runs": p.w5_time_runs,
                                }
                            )
                        )
            suite.scale.extend(_scale_rows(backend, by_size))


def _scale_rows(
    backend: str, by_size: dict[int, dict[str, list[dict[str, Any]]]]
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    previous: dict[str, Any] | None = None
    for n, impls in sorted(by_size.items()):
        row: dict[str, Any] = {"backend": backend, "n": n}
        for impl, runs in impls.items():
            run_s = median([r["run_s"] for r in runs])
            mem = median([r["peak_delta_bytes"] for r in runs])
            row[impl] = {
                "run_s": run_s,
                "us_per_node": run_s / (n + 1) * 1e6,
                "build_s": median([r["build_s"] for r in runs]),
                "peak_delta_bytes": mem,
                "bytes_per_node": mem / (n + 1),
                "processes": runs,
            }
        row["ratio"] = row["asyncdag"]["run_s"] / row["raw"]["run_s"]
        if previous is not None:
            factor = n / previous["n"]
            row["growth_from"] = previous["n"]
            for impl in ("raw", "asyncdag"):
                row[impl]["time_growth"] = row[impl]["run_s"] / previous[impl]["run_s"]
                row[impl]["build_growth"] = row[impl]["build_s"] / previous[impl]["build_s"]
                row[impl]["memory_growth"] = (
                    row[impl]["peak_delta_bytes"] / previous[impl]["peak_delta_bytes"]
                    if previous[impl]["peak_delta_bytes"]
                    else None
                )
            # The goal is stated for 10x steps (10k -> 100k): allow 1.1x the size factor.
            row["goal"] = f"time growth ≤ {1.1 * factor:g}x for {factor:g}x nodes"
            row["goal_met"] = row["asyncdag"]["time_growth"] <= 1.1 * factor
        rows.append(row)
        previous = row
    return rows


def run_tracing(suite: Suite) -> None:
    p = suite.profile
    for backend in suite.backends:
        with suite.guard(f"TRACE[{backend}]"):
            modes = {}
            for mode in ("off", "noop", "sdk"):
                modes[mode] = _subprocess_json(
                    {
                        "task": "trace",
                        "mode": mode,
                        "backend": backend,
                        "sizes": {"W2": p.trace_w2, "W3": p.trace_w3},
                        "repeats": p.trace_repeats,
                        "warmup": p.warmup,
                    }
                )
            for workload in ("W2", "W3"):
                off = modes["off"][workload]["median_s"]
                suite.tracing.append(
                    {
                        "workload": workload,
                        "backend": backend,
                        "size": modes["off"][workload]["size"],
                        "off_s": off,
                        "noop_s": modes["noop"][workload]["median_s"],
                        "sdk_s": modes["sdk"][workload]["median_s"],
                        "noop_ratio": modes["noop"][workload]["median_s"] / off,
                        "sdk_ratio": modes["sdk"][workload]["median_s"] / off,
                        "sdk_spans_exported": modes["sdk"].get("spans_exported"),
                        "sdk_us_per_step": (modes["sdk"][workload]["median_s"] - off)
                        / modes["off"][workload]["steps"]
                        * 1e6,
                        "runs": {mode: modes[mode][workload]["runs"] for mode in modes},
                        **_sdk_floor(modes["sdk"][workload]),
                    }
                )
            if not modes["sdk"].get("spans_exported"):
                suite.notes.append(
                    f"TRACE[{backend}]: the SDK exporter received no spans: "
                    "the engine emitted none, so the SDK column measures nothing"
                )


def run_dask(suite: Suite) -> None:
    """CPU-bound steps in threads vs on 2 Dask worker processes; per-step cost on Dask vs
    hand-written client.submit calls (benchmarks/bench_dask.py)."""
    import bench_dask

    skipped = bench_dask.dask_available()
    if skipped is not None:
        suite.notes.append(skipped)
        return
    steps, seconds, chain, repeats = suite.profile.dask
    suite.dask = bench_dask.measure(
        cpu_steps=steps,
        cpu_seconds=seconds,
        chain=chain,
        repeats=repeats,
        backends=suite.backends,
    )


TRACE_FLOOR_GOAL = 1.3  # asyncdag's added tracing cost against the SDK's own floor


def _sdk_floor(sdk: dict[str, Any]) -> dict[str, Any]:
    """The SDK-floor columns: the floor per step and asyncdag's added cost (same process) over it."""
    if "floor_median_s" not in sdk:
        return {}
    steps = sdk["steps"]
    added = (sdk["median_s"] - sdk["untraced_median_s"]) / steps * 1e6
    floor = sdk["floor_median_s"] / steps * 1e6
    ratio = added / floor if floor > 0 else None
    return {
        "sdk_untraced_s": sdk["untraced_median_s"],
        "sdk_added_us_per_step": added,
        "floor_s": sdk["floor_median_s"],
        "floor_us_per_step": floor,
        "floor_step_spans": sdk["floor_step_spans"],
        "added_over_floor": ratio,
        "floor_goal": f"added cost ≤ {TRACE_FLOOR_GOAL:g}x the SDK floor",
        "floor_goal_met": ratio is not None and ratio <= TRACE_FLOOR_GOAL,
        "floor_runs": sdk["floor_runs"],
        "untraced_runs": sdk["untraced_runs"],
    }


def run_imports(suite: Suite) -> None:
    """Wall time of ``python -c "import X"`` minus ``python -c pass``, interleaved, medians."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")])),
    }
    # Both sides from bytecode, as users get them: anyio's was compiled when pip installed it,
    # but an editable asyncdag under PYTHONDONTWRITEBYTECODE=1 (set on these machines) would
    # otherwise be compiled from source in every process, which no user pays.
    import compileall

    compileall.compile_dir(str(SRC / "asyncdag"), quiet=1)
    commands = {
        "bare": "pass",
        "anyio": "import anyio",
        "asyncdag": "import asyncdag",
        "hello": "from asyncdag import execute_pipeline, pipeline, solid",
    }
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(suite.profile.import_rounds):
        for name, code in commands.items():
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], env=env, check=True, cwd=ROOT)
            samples[name].append(time.perf_counter() - started)
    bare = median(samples["bare"])
    anyio_s = median(samples["anyio"]) - bare
    dag_s = median(samples["asyncdag"]) - bare
    hello_s = median(samples["hello"]) - bare
    heavy = _heavy_imports(env, commands["hello"])
    suite.imports = {
        "rounds": suite.profile.import_rounds,
        "bare_python_s": bare,
        "anyio_s": anyio_s,
        "asyncdag_s": dag_s,
        "hello_world_imports_s": hello_s,
        "hello_world_ratio": hello_s / anyio_s if anyio_s > 0 else None,
        "ratio": dag_s / anyio_s if anyio_s > 0 else None,
        "goal": GOALS["IMPORT"][0],
        "goal_met": anyio_s > 0 and dag_s / anyio_s <= GOALS["IMPORT"][1],
        "heaviest_modules_us": heavy,
        "samples_s": samples,
    }


def _heavy_imports(env: dict[str, str], code: str) -> list[tuple[str, int]]:
    """The slowest modules (self time, µs) that ``code`` imports, from ``-X importtime``."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    entries: list[tuple[str, int]] = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, _cumulative, name = line.removeprefix("import time:").split("|", 2)
        entries.append((name.strip(), int(self_us)))
    return sorted(entries, key=lambda e: -e[1])[:8]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    size.add_argument(
        "--smoke", action="store_true", help="tiny sizes, one repeat; exit 1 on any error"
    )
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(ALL)}")
    parser.add_argument("--backend", choices=BACKENDS, help="one backend instead of both")
    parser.add_argument("--json", type=Path, help="where to write results")
    args = parser.parse_args(argv)
    if args.only:
        wanted = [w.strip().upper() for w in args.only.split(",") if w.strip()]
        unknown = sorted(set(wanted) - set(ALL))
        if unknown:
            parser.error(f"--only: unknown workload(s) {unknown}; choose from {','.join(ALL)}")
        args.only = wanted
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    profile = PROFILES["smoke" if args.smoke else "quick" if args.quick else "full"]
    backends = (args.backend,) if args.backend else BACKENDS
    selected = args.only or list(ALL)
    quiet_asyncdag_logging()
    suite = Suite(profile, backends)
    p = profile
    steps: dict[str, Callable[[], None]] = {
        "W1": lambda: _compare(
            suite, lambda: workloads.wide_sleep_case(p.w1[0], delay=p.w1[1], limit=p.w1[2])
        ),
        "W1U": lambda: _compare(
            suite,
            lambda: workloads.wide_sleep_case(p.w1[0], delay=p.w1[1], limit=None, name="W1U"),
        ),
        "W2": lambda: _compare(suite, lambda: workloads.chain_case(p.w2)),
        "W3": lambda: _compare(suite, lambda: workloads.wide_case(p.w3)),
        "W3U": lambda: _compare(suite, lambda: workloads.wide_case(p.w3, limit=None, name="W3U")),
        "W4": lambda: _compare(suite, lambda: workloads.random_dag_case(p.w4)),
        "W5": lambda: run_scale(suite),
        "W6": lambda: run_http(suite),
        "W7": lambda: _compare(
            suite, lambda: workloads.sync_threads_case(p.w7[0], delay=p.w7[1], limit=p.w7[2])
        ),
        "W8": lambda: _compare(suite, lambda: workloads.dynamic_case(p.w8)),
        "W9": lambda: run_concurrent_runs(suite),
        "TRACE": lambda: run_tracing(suite),
        "IMPORT": lambda: run_imports(suite),
        "STORAGE": lambda: run_storage(suite),
        "OUTPUTS": lambda: run_outputs(suite),
        "POSTGRES": lambda: run_postgres(suite),
        "DASK": lambda: run_dask(suite),
        "PEERS": lambda: run_peers(suite, alone=selected == ["PEERS"]),
    }
    started = time.perf_counter()
    for name in ALL:
        if name in selected:
            print(f"-- {name} ({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)
            with suite.guard(name):
                steps[name]()
    elapsed = time.perf_counter() - started
    render(suite)
    print(f"suite took {elapsed:.0f} s", file=sys.stderr)
    target = args.json or (None if args.smoke else BENCH_DIR / "results" / "latest.json")
    if target is not None:
        save(
            suite,
            target,
            only=args.only,
            goals={k: v[0] for k, v in GOALS.items()},
            elapsed=elapsed,
        )
        print(f"results written to {target}", file=sys.stderr)
    return 1 if suite.errors else 0


if __name__ == "__main__":
    sys.exit(main())
