"""``asyncdag pipeline bench``: run a pipeline at several settings and say where time goes.

For users tuning their own I/O pipelines: which bound (and which pool limits,
with ``--pool``) is enough, how much of the run is the critical path (no bound
can beat it), which steps are slowest and where they waited (for a pool slot,
for the run's bound, or for a resource's setup), and the first error of a
failed run.  Runs are not recorded and log nothing to the console; the figures
come from the runs' own events (see :mod:`asyncdag.bench`).

Exit codes: 0 every run succeeded, 1 some run failed (figures still shown),
2 bad input.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from asyncdag._workspace import UsageError, add_source_arguments, selected_pipeline

from ._app import EXIT_FAILURE, EXIT_OK
from ._common import add_run_arguments, make_console

if TYPE_CHECKING:
    from rich.console import Console
    from rich.status import Status

    from asyncdag._definitions import PipelineDefinition
    from asyncdag._plan import ExecutionPlan
    from asyncdag.bench import BoundSummary, RunStats

__all__ = ["register"]

DEFAULT_BOUNDS = "1,8,32,128"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="run a pipeline at several concurrency bounds and report where time goes",
        description=(
            "Run a pipeline --repeat times at each --concurrency bound (and each --pool limit, "
            "when given; not recorded, no console logs) and report per setting: makespan, "
            "throughput, step durations, achieved parallelism, the critical path, the slowest "
            "steps, where steps queued, resource setup, the first error of a failed run, and "
            "the smallest setting within 5% of the best makespan. Exit code: 0 all runs "
            "succeeded, 1 some run failed, 2 bad input."
        ),
    )
    add_source_arguments(parser)
    add_run_arguments(parser)
    parser.add_argument(
        "--concurrency",
        type=_bounds,
        default=_bounds(DEFAULT_BOUNDS),
        metavar="N,N,...",
        help=f"max concurrency bounds to try, comma-separated (default: {DEFAULT_BOUNDS})",
    )
    parser.add_argument(
        "--pool",
        type=_pool_sweep,
        action="append",
        default=[],
        metavar="NAME=N,N,...",
        help="also sweep this pool's limit (repeatable; every combination with every bound runs)",
    )
    parser.add_argument(
        "--repeat", type=_count(1), default=3, metavar="N", help="measured runs per setting (3)"
    )
    parser.add_argument(
        "--warmup",
        type=_count(0),
        default=1,
        metavar="N",
        help="unmeasured runs before each setting's measured ones (1)",
    )
    parser.add_argument(
        "--top", type=_count(1), default=5, metavar="N", help="steps shown per setting (5)"
    )
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    parser.add_argument(
        "--plot",
        metavar="PATH",
        help="write makespan against concurrency to PATH (.svg; .png needs asyncdag[plot])",
    )
    parser.set_defaults(handler=bench_command)


def _bounds(text: str) -> tuple[int, ...]:
    bounds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        try:
            value = int(part)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected whole numbers separated by commas, like 1,8,32; got {text!r}"
            ) from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"every bound must be at least 1, got {value}")
        if value not in bounds:
            bounds.append(value)
    return tuple(bounds)


def _pool_sweep(text: str) -> tuple[str, tuple[int, ...]]:
    name, sep, values = text.partition("=")
    name = name.strip()
    if not sep or not name:
        raise argparse.ArgumentTypeError(
            f"expected a pool name and its limits, like http=1,4,16; got {text!r}"
        )
    return name, _bounds(values)


def _count(minimum: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


@attrs.frozen(kw_only=True)
class _Graph:
    """What the statistics need from the plan, by step key (and by mapped node name)."""

    upstream: dict[str, tuple[str, ...]]
    pools: dict[str, str | None]
    needs: dict[str, frozenset[str]]

    @classmethod
    def of(cls, pipeline: PipelineDefinition, plan: ExecutionPlan) -> _Graph:
        steps = plan.steps
        solids = {s.key: s.solid for s in steps}
        for group in plan.groups:
            for node in group.templates:
                solids.setdefault(node.name, node.solid)
        resources = pipeline.resource_defs

        def closure(keys: frozenset[str]) -> frozenset[str]:
            seen: set[str] = set()
            todo = list(keys)
            while todo:
                key = todo.pop()
                if key not in seen:
                    seen.add(key)
                    definition = resources.get(key)
                    if definition is not None:
                        todo.extend(definition.required_resources)
            return frozenset(seen)

        return cls(
            upstream={s.key: tuple(steps[i].key for i in s.upstream) for s in steps},
            pools={key: solid.pool for key, solid in solids.items()},
            needs={
                key: closure(frozenset(solid.required_resources)) for key, solid in solids.items()
            },
        )


@attrs.frozen(kw_only=True)
class _Setting:
    bound: int
    pools: Mapping[str, int]

    @property
    def label(self) -> str:
        limits = "".join(f", {k}={v}" for k, v in self.pools.items())
        return f"concurrency {self.bound}{limits}"


def _settings(args: argparse.Namespace, graph: _Graph, pipeline_name: str) -> list[_Setting]:
    """Every bound with every combination of the swept pools' limits."""
    sweeps: dict[str, tuple[int, ...]] = {}
    known = sorted({p for p in graph.pools.values() if p is not None})
    for name, values in args.pool:
        if name not in known:
            have = ", ".join(known) if known else "none"
            raise UsageError(
                f"--pool {name}=...: no solid of pipeline {pipeline_name!r} runs in pool "
                f"{name!r} (its pools: {have}); name one of those"
            )
        sweeps[name] = tuple(dict.fromkeys(sweeps.get(name, ()) + values))
    names = sorted(sweeps)
    return [
        _Setting(bound=bound, pools=dict(zip(names, combo, strict=True)))
        for bound in args.concurrency
        for combo in itertools.product(*(sweeps[n] for n in names))
    ]


def bench_command(args: argparse.Namespace) -> int:
    """Check everything first, then run every setting in one event loop, then report."""
    import anyio

    from asyncdag._plan import ExecutionPlan
    from asyncdag.bench import enough
    from asyncdag.config import load_run_config, resolve_run_config

    from ._display import silence_logs

    plot = _plot_path(args.plot)
    pipeline = selected_pipeline(args)
    for path in args.config:
        if not os.path.exists(path):
            raise UsageError(f"run config file {path} not found; check the path given to -c")
    run_config = load_run_config(*map(os.path.abspath, args.config)) if args.config else None
    resolve_run_config(pipeline, run_config)  # every config error now, before the first run
    plan = ExecutionPlan.for_pipeline(pipeline)
    graph = _Graph.of(pipeline, plan)
    settings = _settings(args, graph, pipeline.name)
    silence_logs()
    stderr = make_console(stderr=True)
    with contextlib.ExitStack() as stack:
        progress = (
            stack.enter_context(stderr.status("starting", spinner="dots"))
            if stderr.is_terminal
            else None
        )
        summaries: list[BoundSummary] = anyio.run(
            _bench_all, pipeline, run_config, args, graph, settings, progress, backend=args.backend
        )
    chosen = enough(summaries)
    report = {
        "pipeline": pipeline.name,
        "backend": args.backend,
        "repeat": args.repeat,
        "warmup": args.warmup,
        "steps": len(plan.steps),
        "bounds": [s.to_dict() for s in summaries],
        "enough": None
        if chosen is None
        else {"concurrency": chosen.concurrency, "pool_limits": dict(chosen.pool_limits)},
    }
    if plot is not None:
        _write_plot(plot, pipeline.name, summaries)
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        _print_report(make_console(), pipeline.name, args, len(plan.steps), summaries)
        if plot is not None:
            make_console().print(f"plot written to {plot}", style="dim", markup=False)
    return EXIT_FAILURE if any(s.failed_runs for s in summaries) else EXIT_OK


async def _bench_all(
    pipeline: PipelineDefinition,
    run_config: dict[str, Any] | None,
    args: argparse.Namespace,
    graph: _Graph,
    settings: list[_Setting],
    progress: Status | None,
) -> list[BoundSummary]:
    from asyncdag import execute_pipeline_async
    from asyncdag.bench import run_stats, summarize_bound

    async def once(setting: _Setting) -> Any:
        return await execute_pipeline_async(
            pipeline,
            run_config,
            max_concurrency=setting.bound,
            concurrency_limits=dict(setting.pools) or None,
            raise_on_error=False,
        )

    summaries = []
    for setting in settings:
        for _ in range(args.warmup):
            await once(setting)
        runs: list[RunStats] = []
        for i in range(args.repeat):
            if progress is not None:
                progress.update(f"{setting.label}: run {i + 1} of {args.repeat}")
            result = await once(setting)
            runs.append(
                run_stats(result.events, graph.upstream, needs=graph.needs, pools=graph.pools)
            )
        summaries.append(
            summarize_bound(
                setting.bound,
                runs,
                upstream=graph.upstream,
                pools=graph.pools,
                pool_limits=setting.pools,
                top=args.top,
            )
        )
    return summaries


# -- output ------------------------------------------------------------------------------------


def _print_report(
    console: Console,
    name: str,
    args: argparse.Namespace,
    step_count: int,
    summaries: list[BoundSummary],
) -> None:
    from rich.table import Table

    from asyncdag.bench import ENOUGH_TOLERANCE, enough

    console.print(
        f"[bold]{name}[/]: {step_count} steps, {args.repeat} runs per setting after "
        f"{args.warmup} warm-up, on {args.backend}"
    )
    swept = sorted({k for s in summaries for k in s.pool_limits})
    table = Table(box=None, pad_edge=False, header_style="bold")
    columns = ["bound", *swept, "makespan", "min", "max", "steps/s", "step p50", "p95", "max"]
    for column in (*columns, "parallelism", "critical path", "failed"):
        table.add_column(column, justify="left" if column == "critical path" else "right")
    for s in summaries:
        d = s.step_duration
        table.add_row(
            str(s.concurrency),
            *(str(s.pool_limits.get(pool, "")) for pool in swept),
            _fmt(s.makespan_median),
            _fmt(s.makespan_min),
            _fmt(s.makespan_max),
            f"{s.throughput:,.1f}",
            _fmt(d.p50 if d else None),
            _fmt(d.p95 if d else None),
            _fmt(d.max if d else None),
            f"{s.parallelism:.2f}",
            _path_cell(s.critical_path.length, len(s.critical_path.steps)),
            f"{s.failed_runs}/{s.runs}" if s.failed_runs else "",
        )
    console.print()
    console.print(table)
    _print_failures(console, summaries)
    console.print()
    chosen = enough(summaries)
    ok = [s for s in summaries if not s.failed_runs] or summaries
    best = min(ok, key=lambda s: s.makespan_median)
    if chosen is not None:
        ratio = chosen.makespan_median / best.makespan_median if best.makespan_median else 1.0
        console.print(
            f"Enough: {chosen.label}, the smallest setting within {ENOUGH_TOLERANCE:.0%} of the "
            f"best makespan ({_fmt(chosen.makespan_median)}, {ratio:.2f} times the best, "
            f"{_fmt(best.makespan_median)} at {best.label}).",
            markup=False,
        )
    path = best.critical_path
    console.print(
        f"Critical path at {best.label} ({_fmt(path.length)}, "
        f"{_share(path.length, best.makespan_median)} of the makespan): " + " → ".join(path.steps),
        markup=False,
    )
    _print_resources(console, summaries)
    _print_steps(console, summaries)
    _print_step_waits(console, summaries)
    _print_waits(console, summaries)


def _fmt(seconds: float | None) -> str:
    """Durations to three significant figures: bench figures are often well under a millisecond."""
    if seconds is None:
        return "-"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.3g}µs" if seconds else "0"
    if seconds < 1:
        return f"{seconds * 1e3:.3g}ms"
    return f"{seconds:.3g}s"


def _path_cell(length: float, steps: int) -> str:
    return f"{_fmt(length)} ({steps} step{'' if steps == 1 else 's'})"


def _share(part: float, whole: float) -> str:
    return f"{part / whole:.0%}" if whole > 0 else "-"


def _setting_cell(s: BoundSummary) -> str:
    return s.label.removeprefix("bound ")


def _print_failures(console: Console, summaries: list[BoundSummary]) -> None:
    for s in summaries:
        if not s.failed_runs:
            continue
        error = s.first_error
        why = f"first error in {error}" if error is not None else "no step failed (cancelled?)"
        console.print(
            f"{s.label}: {s.failed_runs} of {s.runs} runs failed; {why}",
            markup=False,
            style="red",
        )


def _table(title: str, columns: tuple[str, ...], left: tuple[str, ...]) -> Any:
    from rich.table import Table

    table = Table(title=title, title_justify="left", box=None, pad_edge=False, header_style="bold")
    for column in columns:
        table.add_column(column, justify="left" if column in left else "right")
    return table


def _print_resources(console: Console, summaries: list[BoundSummary]) -> None:
    if not any(s.resources for s in summaries):
        return
    table = _table(
        "Resource setup per run (its steps' wait for it is setup, not queueing)",
        ("setting", "resource", "median", "max"),
        ("setting", "resource"),
    )
    for s in summaries:
        for r in s.resources:
            table.add_row(_setting_cell(s), r.resource, _fmt(r.median), _fmt(r.max))
    console.print()
    console.print(table)


def _print_steps(console: Console, summaries: list[BoundSummary]) -> None:
    rows = [
        (s, r.step, r.p50, r.p95, r.pool_wait, r.waited, r.setup)
        for s in summaries
        for r in s.steps
    ]
    _print_step_rows(
        console,
        "Slowest steps (span p50/p95 over the runs; waits are means per run)",
        ("p50", "p95", "pool wait", "queue wait", "setup"),
        rows,
    )


def _print_step_waits(console: Console, summaries: list[BoundSummary]) -> None:
    rows = [
        (s, w.step, w.queued, w.pool_wait, w.waited, w.setup)
        for s in summaries
        for w in s.top_waits
        if w.queued > 0
    ]
    if rows:
        _print_step_rows(
            console,
            "Steps that queued longest (mean per run: inputs done → start, setup apart)",
            ("queued", "pool wait", "queue wait", "setup"),
            rows,
        )


def _print_step_rows(
    console: Console, title: str, figures: tuple[str, ...], rows: list[tuple[Any, ...]]
) -> None:
    """A table of (setting, step, seconds...) rows: the per-step tables' one shape."""
    table = _table(title, ("setting", "step", *figures), ("setting", "step"))
    for summary, step, *seconds in rows:
        table.add_row(_setting_cell(summary), step, *(_fmt(v) for v in seconds))
    console.print()
    console.print(table)


def _print_waits(console: Console, summaries: list[BoundSummary]) -> None:
    table = _table(
        "Queued per run, by pool (inputs done → start; 'waited' is the ready-queue part)",
        ("setting", "pool", "steps", "queued", "max", "waited", "max", "worst step"),
        ("setting", "pool", "worst step"),
    )
    for s in summaries:
        for w in s.pools:
            table.add_row(
                _setting_cell(s),
                w.pool,
                str(w.steps),
                _fmt(w.queued_per_run),
                _fmt(w.queued_max),
                _fmt(w.waited_per_run),
                _fmt(w.waited_max),
                w.worst_step if w.worst_step and w.queued_total > 0 else "",
            )
    console.print()
    console.print(table)


def _plot_path(given: str | None) -> Path | None:
    """Check --plot before any run, so a long bench never ends on an unwritable format."""
    if given is None:
        return None
    path = Path(given)
    suffix = path.suffix.lower()
    if suffix == ".png":
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise UsageError(
                f"--plot {given}: writing PNG needs matplotlib, which is not installed; "
                "write an SVG instead (--plot out.svg) or pip install 'asyncdag[plot]'"
            ) from None
    elif suffix != ".svg":
        raise UsageError(f"--plot {given}: the file name must end in .svg or .png")
    if not path.parent.is_dir():
        raise UsageError(f"--plot {given}: directory {path.parent} does not exist")
    return path


def _write_plot(path: Path, name: str, summaries: list[BoundSummary]) -> None:
    from asyncdag.bench import PlotPoint, makespan_png, makespan_svg

    points = [
        PlotPoint(
            concurrency=s.concurrency or 0,
            median=s.makespan_median,
            low=s.makespan_min,
            high=s.makespan_max,
            series=", ".join(f"{k}={v}" for k, v in sorted(s.pool_limits.items())),
        )
        for s in summaries
    ]
    best = min(summaries, key=lambda s: s.makespan_median)
    title = f"{name}: makespan against max concurrency"
    critical = best.critical_path.length if best.critical_path.steps else None
    if path.suffix.lower() == ".svg":
        path.write_text(makespan_svg(points, title=title, critical_path=critical), encoding="utf-8")
    else:
        makespan_png(points, path, title=title, critical_path=critical)
