"""``asyncdag pipeline bench``: run a pipeline at several concurrency bounds and say where time goes.

For users tuning their own I/O pipelines: which bound stops paying off, how
much of the run is the critical path (no bound can beat it), and which pool
makes steps queue.  Runs are not recorded and log nothing to the console; the
figures come from the runs' own events (see :mod:`asyncdag.bench`).

Exit codes: 0 every run succeeded, 1 some run failed (figures still shown),
2 bad input.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
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
    from asyncdag.bench import BoundSummary, RunStats

__all__ = ["register"]

DEFAULT_BOUNDS = "1,8,32,128"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="run a pipeline at several concurrency bounds and report where time goes",
        description=(
            "Run a pipeline --repeat times at each --concurrency bound (not recorded, no console "
            "logs) and report per bound: makespan, throughput, step durations, achieved "
            "parallelism, the critical path, and where steps queued. Exit code: 0 all runs "
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
        "--repeat", type=_count(1), default=3, metavar="N", help="measured runs per bound (3)"
    )
    parser.add_argument(
        "--warmup",
        type=_count(0),
        default=1,
        metavar="N",
        help="unmeasured runs before each bound's measured ones (1)",
    )
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    parser.add_argument(
        "--plot", metavar="PATH", help="write makespan against concurrency to PATH (.svg or .png)"
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
    """What the statistics need from the plan, by step key."""

    upstream: dict[str, tuple[str, ...]]
    pools: dict[str, str | None]


def bench_command(args: argparse.Namespace) -> int:
    """Check everything first, then run every bound in one event loop, then report."""
    import anyio

    from asyncdag._plan import ExecutionPlan
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
    steps = plan.steps
    graph = _Graph(
        upstream={s.key: tuple(steps[i].key for i in s.upstream) for s in steps},
        pools={s.key: s.pool for s in steps},
    )
    silence_logs()
    stderr = make_console(stderr=True)
    with contextlib.ExitStack() as stack:
        progress = (
            stack.enter_context(stderr.status("starting", spinner="dots"))
            if stderr.is_terminal
            else None
        )
        summaries: list[BoundSummary] = anyio.run(
            _bench_all, pipeline, run_config, args, graph, progress, backend=args.backend
        )
    report = {
        "pipeline": pipeline.name,
        "backend": args.backend,
        "repeat": args.repeat,
        "warmup": args.warmup,
        "steps": len(steps),
        "bounds": [s.to_dict() for s in summaries],
    }
    if plot is not None:
        _write_plot(plot, pipeline.name, summaries)
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        _print_report(make_console(), pipeline.name, args, len(steps), summaries)
        if plot is not None:
            make_console().print(f"plot written to {plot}", style="dim", markup=False)
    return EXIT_FAILURE if any(s.failed_runs for s in summaries) else EXIT_OK


async def _bench_all(
    pipeline: PipelineDefinition,
    run_config: dict[str, Any] | None,
    args: argparse.Namespace,
    graph: _Graph,
    progress: Status | None,
) -> list[BoundSummary]:
    from asyncdag import execute_pipeline_async
    from asyncdag.bench import run_stats, summarize_bound

    summaries = []
    for bound in args.concurrency:
        for _ in range(args.warmup):
            await execute_pipeline_async(
                pipeline, run_config, max_concurrency=bound, raise_on_error=False
            )
        runs: list[RunStats] = []
        for i in range(args.repeat):
            if progress is not None:
                progress.update(f"concurrency {bound}: run {i + 1} of {args.repeat}")
            result = await execute_pipeline_async(
                pipeline, run_config, max_concurrency=bound, raise_on_error=False
            )
            runs.append(run_stats(result.events, graph.upstream))
        summaries.append(summarize_bound(bound, runs, upstream=graph.upstream, pools=graph.pools))
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

    console.print(
        f"[bold]{name}[/]: {step_count} steps, {args.repeat} runs per bound after "
        f"{args.warmup} warm-up, on {args.backend}"
    )
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in (
        "bound",
        "makespan",
        "min",
        "max",
        "steps/s",
        "step p50",
        "p95",
        "max",
        "parallelism",
        "critical path",
        "failed",
    ):
        table.add_column(column, justify="left" if column == "critical path" else "right")
    for s in summaries:
        d = s.step_duration
        table.add_row(
            str(s.concurrency),
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
    best = min(summaries, key=lambda s: s.makespan_median)
    path = best.critical_path
    console.print()
    console.print(
        f"Critical path at bound {best.concurrency} ({_fmt(path.length)}, "
        f"{_share(path.length, best.makespan_median)} of the makespan): " + " → ".join(path.steps),
        markup=False,
    )
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


def _print_waits(console: Console, summaries: list[BoundSummary]) -> None:
    from rich.table import Table

    table = Table(
        title="Queued per run (inputs done → start; 'waited' is the ready-queue part)",
        title_justify="left",
        box=None,
        pad_edge=False,
        header_style="bold",
    )
    for column in ("bound", "pool", "steps", "queued", "max", "waited", "max", "worst step"):
        table.add_column(column, justify="left" if column in ("pool", "worst step") else "right")
    for s in summaries:
        for w in s.pools:
            table.add_row(
                str(s.concurrency),
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
                "write an SVG instead (--plot out.svg) or pip install matplotlib"
            ) from None
    elif suffix != ".svg":
        raise UsageError(f"--plot {given}: the file name must end in .svg or .png")
    if not path.parent.is_dir():
        raise UsageError(f"--plot {given}: directory {path.parent} does not exist")
    return path


def _write_plot(path: Path, name: str, summaries: list[BoundSummary]) -> None:
    from asyncdag.bench import PlotPoint, makespan_svg

    points = [
        PlotPoint(
            concurrency=s.concurrency or 0,
            median=s.makespan_median,
            low=s.makespan_min,
            high=s.makespan_max,
        )
        for s in summaries
    ]
    title = f"{name}: makespan against max concurrency"
    if path.suffix.lower() == ".svg":
        path.write_text(makespan_svg(points, title=title), encoding="utf-8")
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6.4, 4))
    xs = [p.concurrency for p in points]
    medians = [p.median for p in points]
    axes.errorbar(
        xs,
        medians,
        yerr=[[p.median - p.low for p in points], [p.high - p.median for p in points]],
        marker="o",
        capsize=3,
    )
    if min(xs) > 0 and max(xs) / min(xs) >= 8:
        axes.set_xscale("log", base=2)
    axes.set_xlabel("max concurrency")
    axes.set_ylabel("makespan (s)")
    axes.set_ylim(bottom=0)
    axes.set_title(title)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
