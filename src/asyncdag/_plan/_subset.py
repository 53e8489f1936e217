"""Which steps a run computes and which it takes from earlier runs: re-execution planned.

A run normally computes every step.  A *subset* run computes only the
selected solids; of the others, those whose outputs a selected solid reads
are either *reused* from a parent run's output store (re-execution) or, with
no parent, fed from run config (``solids.<name>.inputs``).  Solids downstream
of the selection that nothing selected reads are left out, since their stored
values would no longer match.

What a run stored is known from its events (:class:`RecordedRun`): each
STEP_OUTPUT event of a run with an output store says where the output went
(``path``, ``size``, ``serializer``), and a reused step's events say which run
computed it (``loaded_from``), so a chain of re-executions always points at
the run that holds the value, back to the root.  :func:`plan_subset` turns a
selection (or "from failure") and that chain into a :class:`RunSubset` that
:meth:`~asyncdag._plan.ExecutionPlan.build` makes steps of.  Pure functions of
data: no storage, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from .._definitions import Collect, FanIn, FromOutput, Node, PipelineDefinition
from .._errors import ReexecutionError
from .._events import Event, EventType
from ._selection import NodeGraph

__all__ = ["RecordedOutput", "RecordedRun", "ReusedStep", "RunSubset", "plan_subset"]


@attrs.frozen
class RecordedOutput:
    """One output (or fan-out item) a run stored: which run holds it, and where."""

    run_id: str
    step_key: str
    output: str
    mapping_key: str | None = None
    location: str | None = None
    size: int | None = None
    serializer: str | None = None


@attrs.frozen
class ReusedStep:
    """A step this run does not compute: its outputs (and fan-out items) come from ``run_id``."""

    key: str
    run_id: str
    outputs: Mapping[str, RecordedOutput] = attrs.field(factory=dict)
    items: tuple[RecordedOutput, ...] = ()


class _StepRecord:
    __slots__ = ("items", "origin", "outputs", "status", "unstored")

    def __init__(self) -> None:
        self.status = ""
        self.origin: str | None = None
        self.outputs: dict[str, RecordedOutput] = {}
        self.items: list[RecordedOutput] = []
        self.unstored = False


class RecordedRun:
    """What one recorded run says about its steps: which succeeded, and where their outputs are.

    Built from the run's events (:meth:`from_events`), so it works with any run storage.
    """

    def __init__(
        self,
        run_id: str,
        *,
        selection: frozenset[str] | None,
        outputs_stored: bool,
        steps: dict[str, _StepRecord],
    ) -> None:
        self.run_id = run_id
        #: The solids the run computed, when it was a subset (None: all of them).
        self.selection = selection
        self.outputs_stored = outputs_stored
        self._steps = steps

    @classmethod
    def from_events(cls, run_id: str, events: Iterable[Event]) -> RecordedRun:
        steps: dict[str, _StepRecord] = {}
        selection: frozenset[str] | None = None
        stored = False
        for event in events:
            data = event.data or {}
            if event.type is EventType.RUN_START:
                if data.get("step_selection") is not None:
                    selection = frozenset(data["step_selection"])
                stored = bool(data.get("outputs_stored"))
                continue
            key = event.step_key
            if key is None:
                continue
            record = steps.get(key)
            if record is None:
                record = steps[key] = _StepRecord()
            kind = event.type
            if kind is EventType.STEP_START:
                # A new attempt: what an earlier one produced is not what succeeded.
                record.outputs, record.items, record.unstored = {}, [], False
                record.status = "RUNNING"
            elif kind is EventType.STEP_OUTPUT:
                if "path" not in data:
                    record.unstored = True
                    continue
                output = RecordedOutput(
                    run_id=str(data.get("loaded_from") or run_id),
                    step_key=key,
                    output=str(data.get("output", "result")),
                    mapping_key=data.get("mapping_key"),
                    location=data.get("path"),
                    size=data.get("size"),
                    serializer=data.get("serializer"),
                )
                if output.mapping_key is None:
                    record.outputs[output.output] = output
                else:
                    record.items.append(output)
            elif kind is EventType.STEP_SUCCESS:
                record.status = "SUCCESS"
                record.origin = str(data.get("loaded_from") or run_id)
            elif kind in (EventType.STEP_FAILURE, EventType.STEP_SKIPPED, EventType.STEP_CANCELED):
                record.status = kind.value.removeprefix("STEP_")
        return cls(run_id, selection=selection, outputs_stored=stored, steps=steps)

    def succeeded(self, key: str) -> bool:
        record = self._steps.get(key)
        return record is not None and record.status == "SUCCESS"

    def reusable(self, key: str) -> ReusedStep | None:
        """``key``'s outputs as this run recorded them, if it succeeded and they were stored."""
        record = self._steps.get(key)
        if record is None or record.status != "SUCCESS" or record.unstored:
            return None
        if not self.outputs_stored and record.origin == self.run_id:
            return None  # no output store: a step with no STEP_OUTPUT may have had outputs
        return ReusedStep(
            key=key,
            run_id=record.origin or self.run_id,
            outputs=dict(record.outputs),
            items=tuple(record.items),
        )

    def why_not(self, key: str) -> str:
        """Why ``key`` cannot be reused from this run, for messages."""
        record = self._steps.get(key)
        if record is None:
            return f"run {self.run_id} has no record of it"
        if record.status != "SUCCESS":
            status = (record.status or "never finished").lower()
            return f"it did not succeed in run {self.run_id} ({status})"
        return f"run {self.run_id} did not store its outputs (it ran without an output store)"

    def planned(self, key: str) -> bool:
        """Whether computing (or reusing) ``key`` was part of this run."""
        if key in self._steps or self.selection is None:
            return True
        node = key.partition("[")[0]
        return node in self.selection

    def item_keys(self, producer: str, output: str) -> list[str]:
        record = self._steps.get(producer)
        if record is None:
            return []
        return [i.mapping_key for i in record.items if i.output == output and i.mapping_key]


@attrs.frozen
class RunSubset:
    """What a subset run computes, reuses, and feeds from run config.

    ``computed``: the solids that run (a mapped solid: its items, except the
    ones in ``reused``).  ``reused``: by step key (``fetch`` or ``fetch[k]``),
    the steps whose outputs come from an earlier run.  ``in_run``: every solid
    with steps in this run.  ``cut``: by solid, the inputs whose source is not
    in the run, which run config must feed.
    """

    computed: frozenset[str]
    reused: Mapping[str, ReusedStep] = attrs.field(factory=dict)
    in_run: frozenset[str] = frozenset()
    cut: Mapping[str, frozenset[str]] = attrs.field(factory=dict)

    def to_event_data(self) -> list[str]:
        return sorted(self.computed)


def plan_subset(
    pipeline: PipelineDefinition,
    *,
    selection: frozenset[str] | None = None,
    chain: Sequence[RecordedRun] = (),
    from_failure: bool = False,
) -> RunSubset:
    """Decide what a run computes and what it reuses.

    ``chain``: the parent run first, then its parent, back to the root (empty:
    no parent, so what is not selected is fed from run config).
    ``from_failure``: select what did not succeed in the parent, and what
    depends on it.  Raises :class:`~asyncdag.ReexecutionError` (naming every
    problem) when a value a selected solid reads cannot be had.
    """
    graph = NodeGraph(pipeline)
    nodes = pipeline.nodes
    parent = chain[0] if chain else None
    if from_failure:
        if parent is None:
            raise ReexecutionError("from_failure needs the run to re-execute: pass reexecute_from")
        selection = _not_succeeded(pipeline, graph, parent)
    elif selection is None:
        selection = frozenset(nodes)
    below = graph.descendants(selection)
    above = graph.ancestors(selection)

    def read_by_selected(name: str) -> bool:
        return any(name in graph.upstream[d] for d in graph.downstream[name] if d in selection)

    reused: dict[str, ReusedStep] = {}
    kept: set[str] = set(selection)
    problems: list[str] = []
    for name, node in nodes.items():
        if node.dynamic is not None:
            continue
        if name in selection or (name in below and name not in above) or not chain:
            continue
        found, why = _find(chain, name)
        if found is not None:
            reused[name] = found
            kept.add(name)
        elif read_by_selected(name):
            problems.append(f"solid {name!r} cannot be reused: {why}; select it too")
    # Mapped solids, producers before what is mapped over their items (nested fan-outs).
    reused_items: dict[str, list[str]] = {}  # a wholly reused mapped solid: its steps' keys
    for name in sorted((n for n in nodes if nodes[n].dynamic is not None), key=_depth(nodes)):
        producer, output = nodes[name].dynamic  # type: ignore[misc]
        if producer in selection:
            if name not in selection and name in above:
                problems.append(
                    f"mapped solid {name!r} cannot be reused while its producer {producer!r} "
                    "runs again (its items may change); select it too"
                )
            continue
        producers = (
            ([producer] if producer in reused else None)
            if nodes[producer].dynamic is None
            else reused_items.get(producer)
        )
        if producers is None:
            if name in selection:
                problems.append(
                    f"mapped solid {name!r} needs the items of {producer!r}, which this run "
                    f"neither computes nor reuses; select {producer!r} too"
                    + ("" if chain else ", or re-execute from a run that stored them")
                )
            continue
        instances = [
            f"{name}{key[len(producer) :]}[{item.mapping_key}]"
            for key in producers
            for item in reused[key].items
            if item.output == output and item.mapping_key is not None
        ]
        if name in selection:
            if from_failure and parent is not None:
                for step_key in instances:
                    again = parent.reusable(step_key)
                    if again is not None:
                        reused[step_key] = again
            continue
        if name in below and name not in above:
            continue
        found_all: dict[str, ReusedStep] = {}
        lacking: list[str] = []
        for step_key in instances:
            found, why = _find(chain, step_key)
            if found is None:
                lacking.append(f"{step_key!r} ({why})")
            else:
                found_all[step_key] = found
        if not lacking:
            reused.update(found_all)
            reused_items[name] = instances
            kept.add(name)
        elif read_by_selected(name):
            problems.append(
                f"mapped solid {name!r} cannot be reused: item steps {', '.join(lacking)}; "
                "select it too"
            )
    if problems:
        raise ReexecutionError(
            f"pipeline {pipeline.name!r}: the selected steps read values this run cannot have:\n"
            + "\n".join(f"  - {p}" for p in problems)
        )
    in_run = frozenset(kept)
    cut = {
        name: frozenset(
            input_name
            for input_name, source in nodes[name].inputs.items()
            if not _fed_within(source, in_run)
        )
        for name in selection
    }
    return RunSubset(
        computed=frozenset(selection),
        reused=reused,
        in_run=in_run,
        cut={name: inputs for name, inputs in cut.items() if inputs},
    )


def _find(chain: Sequence[RecordedRun], key: str) -> tuple[ReusedStep | None, str]:
    """The nearest run of the chain that can give ``key``'s outputs, or why none can."""
    why = f"no run recorded it (run {chain[0].run_id} and its parents)" if chain else ""
    for index, run in enumerate(chain):
        found = run.reusable(key)
        if found is not None:
            return found, ""
        if index == 0:
            why = run.why_not(key)
        if run.planned(key):
            break  # it was this run's to compute: an older value would not match its inputs
    return None, why


def _not_succeeded(
    pipeline: PipelineDefinition, graph: NodeGraph, parent: RecordedRun
) -> frozenset[str]:
    nodes = pipeline.nodes
    planned = [n for n in (parent.selection or nodes) if n in nodes]

    def made(name: str) -> tuple[list[str], list[str]]:
        """The parent's steps of mapped solid ``name``, and of what produced its items."""
        producer, output = nodes[name].dynamic  # type: ignore[misc]
        producers = [producer] if nodes[producer].dynamic is None else made(producer)[0]
        steps = [
            f"{name}{key[len(producer) :]}[{item}]"
            for key in producers
            for item in parent.item_keys(key, output)
        ]
        return steps, producers

    failed: set[str] = set()
    for name in planned:
        if nodes[name].dynamic is None:
            if not parent.succeeded(name):
                failed.add(name)
            continue
        steps, producers = made(name)
        if not all(parent.succeeded(key) for key in (*producers, *steps)):
            failed.add(name)
    selection = (failed | graph.descendants(failed)) & set(planned)
    if not selection:
        raise ReexecutionError(
            f"run {parent.run_id} has nothing to re-execute from failure: every step it ran "
            "succeeded; re-execute it whole, or choose steps with step_selection"
        )
    return frozenset(selection)


def _depth(nodes: Mapping[str, Node]) -> Any:
    """How deep a mapped solid is nested: 0 over a static producer's items, 1 inside that..."""

    def depth(name: str) -> int:
        level = 0
        while (dynamic := nodes[name].dynamic) is not None:
            name = dynamic[0]
            level += 1
        return level

    return depth


def _fed_within(source: Any, in_run: frozenset[str]) -> bool:
    if isinstance(source, FromOutput):
        return source.node in in_run
    if isinstance(source, FanIn):
        return all(part.node in in_run for part in source.sources if isinstance(part, FromOutput))
    if isinstance(source, Collect):
        return source.producer in in_run and source.node in in_run
    return True
