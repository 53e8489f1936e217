"""Makespan against concurrency as a picture: SVG drawn by hand, PNG through matplotlib.

The SVG needs nothing beyond the standard library; the PNG needs matplotlib
(``pip install 'asyncdag[plot]'``), imported only when a PNG is asked for.
Both draw the same things: the median makespan per bound with a min..max
whisker, one line per pool-limit setting when pools were swept, the critical
path as a dashed floor no bound can beat, and a y axis that fits the data,
labelled with its unit.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from xml.sax.saxutils import escape

import attrs

from ._stats import BenchError

__all__ = ["PlotPoint", "YAxis", "makespan_png", "makespan_svg", "y_axis"]

_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")
_PATH_COLOUR = "#7f7f7f"


@attrs.frozen(kw_only=True)
class PlotPoint:
    """Makespan at one bound: the median drawn as a point, min..max as a whisker.

    ``series`` names the pool limits of the setting (``http=4``), so each pool
    setting of a sweep is a line of its own; empty without a pool sweep.
    """

    concurrency: int
    median: float
    low: float
    high: float
    series: str = ""


@attrs.frozen(kw_only=True)
class YAxis:
    """The makespan axis: its range and ticks in seconds, and the unit its labels use."""

    low: float
    high: float
    ticks: tuple[float, ...]
    unit: str
    scale: float  # seconds * scale = a value in ``unit``

    def label(self, seconds: float) -> str:
        return f"{seconds * self.scale:.4g}"


def y_axis(values: Sequence[float]) -> YAxis:
    """An axis that fits ``values`` (seconds) with round ticks, in s, ms or µs as they need.

    It starts at zero when the smallest value is under a quarter of the largest
    (zero is then close enough to show honestly), else just below the data, so
    makespans of 1.00 s and 1.05 s do not sit as one flat line at the top.
    """
    low, high = min(values), max(values)
    if high <= 0:
        return YAxis(low=0.0, high=1.0, ticks=(0.0, 0.5, 1.0), unit="s", scale=1.0)
    unit, scale = ("s", 1.0) if high >= 1 else ("ms", 1e3) if high >= 1e-3 else ("µs", 1e6)
    if low < high / 4:
        low = 0.0
    spread = high - low or high * 0.1
    step = _nice(spread / 4)
    axis_low = math.floor(low / step) * step if low > 0 else 0.0
    if axis_low == low and axis_low > 0:
        axis_low -= step  # keep the lowest point off the axis line
    axis_high = math.ceil(high / step) * step
    if axis_high == high:
        axis_high += step
    count = round((axis_high - axis_low) / step)
    ticks = tuple(axis_low + i * step for i in range(count + 1))
    return YAxis(low=axis_low, high=axis_high, ticks=ticks, unit=unit, scale=scale)


def _nice(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 times a power of ten at or above ``value``."""
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * power >= value * (1 - 1e-9):
            return step * power
    return 10 * power


def _series(points: Sequence[PlotPoint]) -> dict[str, list[PlotPoint]]:
    lines: dict[str, list[PlotPoint]] = {}
    for p in points:
        lines.setdefault(p.series, []).append(p)
    for line in lines.values():
        line.sort(key=lambda p: p.concurrency)
    return lines


def _log_x(xs: Sequence[int]) -> bool:
    return min(xs) > 0 and max(xs) / min(xs) >= 8


def _path_label(critical_path: float, axis: YAxis) -> str:
    return f"critical path {axis.label(critical_path)} {axis.unit}: no bound beats it"


def makespan_svg(
    points: Sequence[PlotPoint], *, title: str, critical_path: float | None = None
) -> str:
    """A standalone SVG of makespan against concurrency, drawn by hand (no plotting library).

    The x axis is logarithmic (base 2) when the bounds span a factor of 8 or
    more, since bounds are usually chosen as powers; linear otherwise.
    ``critical_path`` (seconds) is drawn as a dashed horizontal line.
    """
    if not points:
        raise BenchError("nothing to plot: no concurrency bound was measured")
    width, height = 640, 400
    left, right, top, bottom = 70, 20, 40, 50
    plot_w, plot_h = width - left - right, height - top - bottom
    lines = _series(points)
    xs = sorted({p.concurrency for p in points})
    log_x = _log_x(xs)
    values = [v for p in points for v in (p.low, p.high, p.median)]
    if critical_path is not None:
        values.append(critical_path)
    axis = y_axis(values)

    def fx(value: float) -> float:
        lo, hi = (math.log2(min(xs)), math.log2(max(xs))) if log_x else (min(xs), max(xs))
        v = math.log2(value) if log_x else value
        inset = 20  # keep the end points off the axes
        span = plot_w - 2 * inset
        return left + inset + (span / 2 if hi == lo else (v - lo) / (hi - lo) * span)

    def fy(value: float) -> float:
        return top + plot_h - (value - axis.low) / (axis.high - axis.low) * plot_h

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="15">{escape(title)}</text>',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" '
        'stroke="black"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="black"/>',
    ]
    for value in axis.ticks:
        y = fy(value)
        out.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#ddd"/>'
        )
        out.append(
            f'<text class="y-tick" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{axis.label(value)}</text>"
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
        f'transform="rotate(-90 16 {top + plot_h / 2})">makespan ({axis.unit})</text>'
    )
    if critical_path is not None:
        y = fy(critical_path)
        out.append(
            f'<line class="critical-path" x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" '
            f'y2="{y:.1f}" stroke="{_PATH_COLOUR}" stroke-dasharray="6 4"/>'
        )
        out.append(
            f'<text x="{left + plot_w - 4}" y="{y - 5:.1f}" text-anchor="end" '
            f'fill="{_PATH_COLOUR}">{escape(_path_label(critical_path, axis))}</text>'
        )
    for i, (name, line) in enumerate(lines.items()):
        colour = _COLOURS[i % len(_COLOURS)]
        coords = " ".join(f"{fx(p.concurrency):.1f},{fy(p.median):.1f}" for p in line)
        out.append(
            f'<polyline class="series" points="{coords}" fill="none" stroke="{colour}" '
            f'stroke-width="2"><title>{escape(name or "makespan")}</title></polyline>'
        )
        for p in line:
            x = fx(p.concurrency)
            out.append(
                f'<line x1="{x:.1f}" y1="{fy(p.low):.1f}" x2="{x:.1f}" y2="{fy(p.high):.1f}" '
                f'stroke="{colour}"/>'
            )
            where = f"concurrency {p.concurrency}" + (f", {p.series}" if p.series else "")
            out.append(
                f'<circle cx="{x:.1f}" cy="{fy(p.median):.1f}" r="4" fill="{colour}">'
                f"<title>{escape(where)}: median {axis.label(p.median)} {axis.unit} "
                f"(min {axis.label(p.low)}, max {axis.label(p.high)})</title></circle>"
            )
        if name:
            y = top + 14 + 16 * i
            out.append(
                f'<line x1="{left + plot_w - 120}" y1="{y - 4}" x2="{left + plot_w - 100}" '
                f'y2="{y - 4}" stroke="{colour}" stroke-width="2"/>'
            )
            out.append(f'<text x="{left + plot_w - 96}" y="{y}">{escape(name)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def makespan_png(
    points: Sequence[PlotPoint],
    path: str | os.PathLike[str],
    *,
    title: str,
    critical_path: float | None = None,
) -> None:
    """The same plot as :func:`makespan_svg`, written as a PNG with matplotlib.

    Needs matplotlib (``pip install 'asyncdag[plot]'``).
    """
    if not points:
        raise BenchError("nothing to plot: no concurrency bound was measured")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = [v for p in points for v in (p.low, p.high, p.median)]
    if critical_path is not None:
        values.append(critical_path)
    axis = y_axis(values)
    figure, axes = plt.subplots(figsize=(6.4, 4))
    try:
        for i, (name, line) in enumerate(_series(points).items()):
            axes.errorbar(
                [p.concurrency for p in line],
                [p.median * axis.scale for p in line],
                yerr=[
                    [(p.median - p.low) * axis.scale for p in line],
                    [(p.high - p.median) * axis.scale for p in line],
                ],
                marker="o",
                capsize=3,
                color=_COLOURS[i % len(_COLOURS)],
                label=name or None,
            )
        if critical_path is not None:
            axes.axhline(
                critical_path * axis.scale,
                linestyle="--",
                color=_PATH_COLOUR,
                label=_path_label(critical_path, axis),
            )
        xs = sorted({p.concurrency for p in points})
        if _log_x(xs):
            axes.set_xscale("log", base=2)
        axes.set_xticks(xs, [str(x) for x in xs])
        axes.set_ylim(axis.low * axis.scale, axis.high * axis.scale)
        axes.set_xlabel("max concurrency")
        axes.set_ylabel(f"makespan ({axis.unit})")
        axes.set_title(title)
        if axes.get_legend_handles_labels()[1]:
            axes.legend(fontsize="small")
        figure.tight_layout()
        figure.savefig(os.fspath(path))
    finally:
        plt.close(figure)
