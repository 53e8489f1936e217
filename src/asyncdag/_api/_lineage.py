"""What a new run inherits: its parent and root run, the steps it computes, and where the
pipeline came from.

Before a re-execution (``reexecute_from=``) or a run of a step selection
starts, this reads what it needs from run history (the parent's record and
events, and its parents' as long as the chain may hold values this run
reuses), checks it, and plans the subset (:func:`~asyncdag._plan.plan_subset`).
Every problem is a :class:`~asyncdag.ReexecutionError`, raised before
anything runs.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from .._errors import ReexecutionError
from .._events import EventType
from .._plan import RecordedRun, RunSubset, plan_subset, select_nodes
from ._options import RunOptions

if TYPE_CHECKING:
    from .._definitions import PipelineDefinition
    from ..storage import RunStorage

__all__ = ["Lineage", "pipeline_origin", "prepare_lineage"]

#: The events a recorded run is read from for re-execution (logs are not needed).
_READ = frozenset(
    {
        EventType.RUN_START,
        EventType.STEP_START,
        EventType.STEP_OUTPUT,
        EventType.STEP_SUCCESS,
        EventType.STEP_FAILURE,
        EventType.STEP_SKIPPED,
        EventType.STEP_CANCELED,
    }
)
#: At most this many ancestors are read: a longer chain is a loop in the records.
_MAX_CHAIN = 1000


@attrs.frozen
class Lineage:
    """A run's place among runs, and what it computes (None: everything)."""

    parent_run_id: str | None = None
    root_run_id: str | None = None
    subset: RunSubset | None = None
    run_config: Mapping[str, Any] | None = None
    tags: Mapping[str, str] | None = None
    from_failure: bool = False

    def run_start_data(self) -> dict[str, Any]:
        """What the run's RUN_START event records of it, for the runs that re-execute it."""
        data: dict[str, Any] = {}
        if self.parent_run_id is not None:
            data["parent_run_id"] = self.parent_run_id
            data["root_run_id"] = self.root_run_id
        if self.subset is not None:
            data["step_selection"] = self.subset.to_event_data()
            data["reused_steps"] = len(self.subset.reused)
        if self.from_failure:
            data["from_failure"] = True
        return data


async def prepare_lineage(
    pipeline: PipelineDefinition,
    run_config: Mapping[str, Any] | None,
    options: RunOptions,
) -> Lineage:
    """Read and check what ``options`` ask this run to inherit; plan its subset."""
    parent_id = options.reexecute_from
    selection = (
        select_nodes(pipeline, options.step_selection)
        if options.step_selection is not None
        else None
    )
    if parent_id is None:
        if options.from_failure:
            raise ReexecutionError(
                "from_failure=True needs the run to re-execute: pass reexecute_from=RUN_ID"
            )
        subset = plan_subset(pipeline, selection=selection) if selection is not None else None
        return Lineage(
            parent_run_id=options.parent_run_id,
            root_run_id=None,
            subset=subset,
            run_config=run_config,
            tags=options.tags,
        )
    if options.from_failure and selection is not None:
        raise ReexecutionError(
            "choose one of from_failure=True and step_selection=[...]: re-executing from "
            "failure selects the steps itself"
        )
    if options.parent_run_id is not None and options.parent_run_id != parent_id:
        raise ReexecutionError(
            f"parent_run_id={options.parent_run_id!r} and reexecute_from={parent_id!r} disagree; "
            "pass only reexecute_from"
        )
    storage = options.storage
    if storage is None:
        raise ReexecutionError(
            f"reexecute_from={parent_id!r} needs the run history that recorded it: pass "
            "storage=SqliteStorage() (where the CLI and UI record runs) or the storage it ran with"
        )
    parent = await storage.get_run(parent_id)
    if parent is None:
        raise ReexecutionError(
            f"no run {parent_id!r} in {storage!r}; `asyncdag run list` shows the recorded runs"
        )
    if parent.pipeline_name != pipeline.name:
        raise ReexecutionError(
            f"run {parent_id} is of pipeline {parent.pipeline_name!r}, not {pipeline.name!r}; "
            "re-execute it with its own pipeline"
        )
    if not parent.is_finished:
        raise ReexecutionError(
            f"run {parent_id} has not ended ({parent.status.value}); wait for it to end or "
            "cancel it, then re-execute it"
        )
    subset = None
    if options.from_failure or selection is not None:
        chain = await _chain(storage, parent_id)
        subset = plan_subset(
            pipeline, selection=selection, chain=chain, from_failure=options.from_failure
        )
    return Lineage(
        parent_run_id=parent_id,
        root_run_id=parent.root_run_id or parent.run_id,
        subset=subset,
        run_config=run_config if run_config is not None else parent.run_config,
        tags=options.tags if options.tags is not None else _inherited(parent.tags),
        from_failure=options.from_failure,
    )


def _inherited(tags: Mapping[str, str]) -> dict[str, str]:
    # A run key marks the one run a sensor asked for; the re-execution is another run.
    return {k: v for k, v in tags.items() if k != "asyncdag/run_key"}


async def _chain(storage: RunStorage, run_id: str) -> list[RecordedRun]:
    """The parent's record of its steps, then its parents', until a run that planned every step
    (beyond it no value could be reused: see ``plan_subset``)."""
    chain: list[RecordedRun] = []
    seen: set[str] = set()
    current: str | None = run_id
    while current is not None and current not in seen and len(chain) < _MAX_CHAIN:
        seen.add(current)
        record = await storage.get_run(current)
        if record is None:
            break  # an ancestor deleted from history: the chain ends there
        events = await storage.get_events(current, types=_READ)
        run = RecordedRun.from_events(current, events)
        chain.append(run)
        if run.selection is None:
            break
        current = record.parent_run_id
    return chain


def pipeline_origin(pipeline: PipelineDefinition) -> dict[str, str] | None:
    """Where ``pipeline`` can be loaded from again, found from its function: its module's name
    (when it may import by name) and file; a reader tries the name first, then the file."""
    module_name = getattr(pipeline.fn, "__module__", None)
    if not isinstance(module_name, str):
        return None
    module = sys.modules.get(module_name)
    path = getattr(module, "__file__", None)
    origin: dict[str, str] = {}
    if module_name != "__main__" and not module_name.startswith("_asyncdag_file_"):
        origin["module_name"] = module_name
    if isinstance(path, str):
        origin["python_file"] = os.path.abspath(path)
    return origin or None
