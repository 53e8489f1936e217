"""Turning a finished suite into terminal tables (rich) and the JSON file."""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from _harness import ROOT

if TYPE_CHECKING:
    from run import Suite

__all__ = ["render", "save"]


def _fmt_s(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1e3:.1f} ms" if value < 10 else f"{value:.2f} s"


def _fmt_x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _goal_cell(row: dict[str, Any]) -> str:
    if "goal" not in row:
        return ""
    mark = "[green]met[/]" if row["goal_met"] else "[red]missed[/]"
    return f"{row['goal']}: {mark}"


def _table(title: str, columns: tuple[str, ...], *, left: tuple[str, ...] = ("goal",)) -> Any:
    """A rich table with ``columns``: numbers right-aligned, the ``left`` ones left-aligned."""
    from rich.table import Table

    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="left" if column in left else "right")
    return table


def render(suite: Suite) -> None:
    """Print one table per kind of figure, then notes and errors."""
    from rich.console import Console

    console = Console()
    if not console.is_terminal:
        console = Console(width=170)
    if suite.rows:
        table = _table(
            f"asyncdag vs raw anyio ({suite.profile.name})",
            (
                "workload",
                "backend",
                "steps",
                "raw (baseline)",
                "asyncdag",
                "ratio",
                "µs/step raw → dag",
                "vs ideal",
                "goal",
            ),
            left=("workload", "goal"),
        )
        for row in suite.rows:
            per_step = (
                f"{row['raw_us_per_step']:.1f} → {row['asyncdag_us_per_step']:.1f}"
                if "asyncdag_us_per_step" in row
                else (f"{row['extra_us_per_step']:+.1f}" if "extra_us_per_step" in row else "")
            )
            ideal = (
                f"raw {row['raw_over_ideal']:.2f}x / dag {row.get('asyncdag_over_ideal', 0):.2f}x"
                if "ideal_s" in row
                else ""
            )
            table.add_row(
                row["workload"],
                row["backend"],
                str(row["steps"]),
                f"{_fmt_s(row['raw_s'])} ({row['raw_baseline']})",
                _fmt_s(row.get("asyncdag_s")),
                _fmt_x(row.get("ratio")),
                per_step,
                ideal,
                _goal_cell(row),
            )
        console.print(table)
    stalled = [row for row in suite.rows if "stall_s" in row]
    if stalled:
        _render_stalls(console, stalled)
    if suite.scale:
        table = _table(
            "W5 scale: the W3 shape, fresh process per size (peak RSS delta)",
            (
                "backend",
                "nodes",
                "raw µs/node",
                "dag µs/node",
                "ratio",
                "dag build",
                "raw B/node",
                "dag B/node",
                "dag growth time / mem / build",
                "goal",
            ),
        )
        for row in suite.scale:
            raw, dag = row["raw"], row["asyncdag"]
            growth = (
                f"{dag['time_growth']:.1f}x / "
                + (f"{dag['memory_growth']:.1f}x" if dag["memory_growth"] else "-")
                + f" / {dag['build_growth']:.1f}x"
                if "time_growth" in dag
                else ""
            )
            table.add_row(
                row["backend"],
                f"{row['n']:,}",
                f"{raw['us_per_node']:.1f}",
                f"{dag['us_per_node']:.1f}",
                _fmt_x(row["ratio"]),
                _fmt_s(dag["build_s"]),
                f"{raw['bytes_per_node']:.0f}",
                f"{dag['bytes_per_node']:.0f}",
                growth,
                _goal_cell(row),
            )
        console.print(table)
    if suite.tracing:
        table = _table(
            "Tracing cost (asyncdag runs; ratio against no provider)",
            (
                "workload",
                "backend",
                "steps",
                "off",
                "no-op API",
                "SDK",
                "SDK µs/step",
                "spans",
            ),
            left=(),
        )
        for row in suite.tracing:
            table.add_row(
                row["workload"],
                row["backend"],
                str(row["size"]),
                _fmt_s(row["off_s"]),
                f"{_fmt_s(row['noop_s'])} ({_fmt_x(row['noop_ratio'])})",
                f"{_fmt_s(row['sdk_s'])} ({_fmt_x(row['sdk_ratio'])})",
                f"+{row['sdk_us_per_step']:.1f}",
                str(row["sdk_spans_exported"]),
            )
        console.print(table)
        floors = [row for row in suite.tracing if "floor_us_per_step" in row]
        if floors:
            _render_trace_floor(console, floors)
    if suite.imports:
        imp = suite.imports
        console.print(
            f"[bold]import[/] (median of {imp['rounds']}, minus bare python "
            f"{_fmt_s(imp['bare_python_s'])}): anyio {_fmt_s(imp['anyio_s'])}, "
            f"asyncdag {_fmt_s(imp['asyncdag_s'])}, ratio {_fmt_x(imp['ratio'])}  "
            f"{_goal_cell(imp)}"
        )
        console.print(
            "  what the hello world imports (from asyncdag import execute_pipeline, pipeline, "
            f"solid): {_fmt_s(imp['hello_world_imports_s'])}, "
            f"{_fmt_x(imp.get('hello_world_ratio'))} anyio"
        )
        heavy = ", ".join(
            f"{name} {us / 1e3:.1f} ms" for name, us in imp["heaviest_modules_us"][:5]
        )
        console.print(f"  heaviest modules the hello world imports (self time, one run): {heavy}")
    if suite.peers:
        _render_peers(console, suite.peers)
    if suite.dask:
        import bench_dask

        bench_dask.render(suite.dask)
    for note in suite.notes:
        console.print(f"[yellow]note:[/] {note}")
    for error in suite.errors:
        console.print(f"[red]error:[/] {error['workload']}: {error['error']}")


def _render_trace_floor(console: Any, rows: list[dict[str, Any]]) -> None:
    table = _table(
        "Tracing against the SDK floor (same spans started and ended by a bare loop; "
        "one process, alternated)",
        (
            "workload",
            "backend",
            "steps",
            "untraced",
            "traced",
            "added µs/step",
            "SDK floor µs/step",
            "added / floor",
            "goal",
        ),
    )
    for row in rows:
        mark = "[green]met[/]" if row["floor_goal_met"] else "[red]missed[/]"
        table.add_row(
            row["workload"],
            row["backend"],
            str(row["size"]),
            _fmt_s(row["sdk_untraced_s"]),
            _fmt_s(row["sdk_s"]),
            f"+{row['sdk_added_us_per_step']:.1f}",
            f"{row['floor_us_per_step']:.1f}",
            _fmt_x(row["added_over_floor"]),
            f"{row['floor_goal']}: {mark}",
        )
    console.print(table)


def _render_stalls(console: Any, rows: list[dict[str, Any]]) -> None:
    table = _table(
        "W9 many runs at once: time and loop stall (worst lateness of a 5 ms heartbeat)",
        (
            "backend",
            "runs",
            "steps",
            "raw",
            "asyncdag",
            "ratio",
            "stall raw → dag",
            "goal",
        ),
    )
    for row in rows:
        dag_stall = row.get("asyncdag_stall_s")
        stall = f"{_fmt_s(row['raw_stall_s'])} → {_fmt_s(dag_stall)}"
        if row.get("stall_ratio") is not None:
            stall += f" ({_fmt_x(row['stall_ratio'])})"
        table.add_row(
            row["backend"],
            str(row["size"]),
            str(row["steps"]),
            f"{_fmt_s(row['raw_s'])} ({row['raw_baseline']})",
            _fmt_s(row.get("asyncdag_s")),
            _fmt_x(row.get("ratio")),
            stall,
            _goal_cell(row),
        )
    console.print(table)


def _render_peers(console: Any, rows: list[dict[str, Any]]) -> None:
    table = _table(
        "Peers: µs/step, the peer, asyncdag and raw anyio alternated in one process (asyncio)",
        (
            "workload",
            "peer",
            "steps",
            "runs",
            "raw (baseline)",
            "asyncdag (vs raw)",
            "peer (vs raw)",
            "peer / asyncdag",
            "CPU µs/step raw / dag / peer",
            "peer server CPU µs/step",
        ),
        left=("workload", "peer"),
    )
    for row in rows:
        table.add_row(
            row["workload"],
            f"{row['peer']} {row['peer_version'] or ''}".strip(),
            str(row["steps"]),
            str(row["repeats"]),
            f"{row['raw_us_per_step']:.1f} ({row['raw_baseline']})",
            f"{row['asyncdag_us_per_step']:.1f} ({_fmt_x(row['asyncdag_ratio'])})",
            f"{row['peer_us_per_step']:,.0f} ({row['peer_ratio']:,.0f}x)",
            f"{row['peer_over_asyncdag']:,.0f}x",
            f"{row['raw_cpu_us_per_step']:.1f} / {row['asyncdag_cpu_us_per_step']:.1f} / "
            f"{row['peer_cpu_us_per_step']:,.0f}",
            "-"
            if row.get("peer_server_cpu_us_per_step") is None
            else f"{row['peer_server_cpu_us_per_step']:,.0f}",
        )
    console.print(table)
    for how in dict.fromkeys(f"{row['peer']}: {row['how']}" for row in rows):
        console.print(f"  {how}")


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip()


def save(
    suite: Suite, path: Path, *, only: list[str] | None, goals: dict[str, str], elapsed: float
) -> None:
    """Write every figure and sample, with what is needed to compare runs across machines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "meta": {
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "profile": suite.profile.name,
            "backends": list(suite.backends),
            "only": only,
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "anyio": _version("anyio"),
            "trio": _version("trio"),
            "git_commit": _git_commit(),
            "elapsed_s": elapsed,
        },
        "goals": goals,
        "results": suite.rows,
        "scale": suite.scale,
        "tracing": suite.tracing,
        "import": suite.imports,
        "peers": suite.peers,
        "dask": suite.dask,
        "notes": suite.notes,
        "errors": suite.errors,
    }
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None
