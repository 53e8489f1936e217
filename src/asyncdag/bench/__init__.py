"""Statistics for benchmarking a pipeline: pure functions over runs' event logs and their plan.

``asyncdag pipeline bench`` runs a pipeline several times per setting (a
concurrency bound, and pool limits when they are swept) and reports what these
functions compute: :mod:`._stats` reduces one run (timings, critical path,
queueing, resource setup, its first error), :mod:`._summary` the repeats at a
setting (and which setting is enough), :mod:`._plot` draws makespan against
concurrency.  See :mod:`asyncdag.bench._stats` for the terms (span, busy,
setup, queued, pool wait, waited).
"""

from __future__ import annotations

from ._plot import PlotPoint, YAxis, makespan_png, makespan_svg, y_axis
from ._stats import (
    BenchError,
    CriticalPath,
    Distribution,
    RunStats,
    StepError,
    StepTiming,
    critical_path,
    describe,
    first_error,
    parallelism,
    percentile,
    queued_times,
    ready_times,
    resource_setups,
    run_stats,
    setup_times,
    step_timings,
    template_of,
)
from ._summary import (
    ENOUGH_TOLERANCE,
    NO_POOL,
    BoundSummary,
    PoolWait,
    ResourceSetup,
    StepRow,
    StepWait,
    enough,
    pool_of,
    pool_waits,
    resource_setup,
    step_table,
    step_waits,
    summarize_bound,
)

__all__ = [
    "ENOUGH_TOLERANCE",
    "NO_POOL",
    "BenchError",
    "BoundSummary",
    "CriticalPath",
    "Distribution",
    "PlotPoint",
    "PoolWait",
    "ResourceSetup",
    "RunStats",
    "StepError",
    "StepRow",
    "StepTiming",
    "StepWait",
    "YAxis",
    "critical_path",
    "describe",
    "enough",
    "first_error",
    "makespan_png",
    "makespan_svg",
    "parallelism",
    "percentile",
    "pool_of",
    "pool_waits",
    "queued_times",
    "ready_times",
    "resource_setup",
    "resource_setups",
    "run_stats",
    "setup_times",
    "step_table",
    "step_timings",
    "step_waits",
    "summarize_bound",
    "template_of",
    "y_axis",
]

from asyncdag._public import publish

publish(__name__, globals(), __all__)
