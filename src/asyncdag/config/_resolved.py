"""What resolving a run's config gives the engine: per-solid config and inputs, resources, execution."""

from __future__ import annotations

from typing import Any

import attrs


@attrs.frozen
class SolidRunConfig:
    """One node's validated config and the input values run config gives it."""

    config: Any = None
    inputs: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class ExecutionConfig:
    """How many steps may run at once, overall and per concurrency key (``None``: unbounded),
    and where they run: ``dask`` is the validated ``execution.dask`` section
    (``{"cluster": {"existing": {...}}}`` or ``{"cluster": {"local": {...}}}``), None
    for this process."""

    max_concurrency: int | None = None
    concurrency_limits: dict[str, int] = attrs.field(factory=dict)
    dask: dict[str, Any] | None = None


@attrs.frozen
class ResolvedRunConfig:
    """A run config checked against its pipeline: what the plan and engine consume.

    ``solids`` has an entry for every node; ``raw`` is the merged config as the
    user gave it (pipeline default overlaid by the run's own), for storage.
    """

    solids: dict[str, SolidRunConfig]
    resources: dict[str, Any]
    execution: ExecutionConfig
    raw: dict[str, Any]
    #: The nodes whose entry in ``solids`` says something (config or inputs), in node
    #: order: what a run reads, without walking every node of a big pipeline.
    configured: tuple[str, ...] = attrs.field(default=(), eq=False)
