"""What a finished run hands back: status, per-step results, outputs and the full event log."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import attrs

from .._definitions import CollectHandle, OutputHandle
from .._engine import StoredValue
from .._errors import AsyncdagError
from .._events import ErrorInfo, Event, RunStatus, StepStatus

__all__ = [
    "LazyMapping",
    "PipelineRunResult",
    "RunSteps",
    "StepOutputs",
    "StepResult",
    "StepResults",
    "mapped_outputs",
]


class LazyMapping(Mapping[str, Any]):
    """A mapping built on first use.

    A run of 100,000 steps should not pay for 100,000 result objects that a
    caller awaiting one output never looks at.
    """

    __slots__ = ("_data", "_factory")

    def __init__(self, factory: Callable[[], dict[str, Any]]) -> None:
        self._factory: Callable[[], dict[str, Any]] | None = factory
        self._data: dict[str, Any] | None = None

    def _load(self) -> dict[str, Any]:
        if self._data is None:
            assert self._factory is not None
            self._data = self._factory()
            self._factory = None
        return self._data

    def __getitem__(self, key: str) -> Any:
        return self._load()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())

    def __repr__(self) -> str:
        return repr(self._load())


@attrs.frozen
class StepResult:
    """One step's outcome: final status, how many attempts it took, when it ran."""

    key: str
    solid_name: str
    status: StepStatus
    attempts: int
    start_time: float | None
    end_time: float | None
    error: ErrorInfo | None = None
    skip_reason: str | None = None

    @property
    def success(self) -> bool:
        return self.status is StepStatus.SUCCESS

    @property
    def duration(self) -> float | None:
        """Seconds from the first attempt's start to the end, retries and their waits included."""
        if self.start_time is None or self.end_time is None:
            return None
        return self.end_time - self.start_time


class RunSteps:
    """A finished run's step states, found by step key without building anything per step.

    Static steps are found through the plan's index; steps made while the run went on
    (a fan-out's mapped steps) through an index of their own, built on the first lookup
    that needs it.
    """

    __slots__ = ("_by_key", "_dynamic", "_runtime", "_static_count", "states")

    def __init__(self, states: Sequence[Any], by_key: Mapping[str, Any], dynamic: Any) -> None:
        self.states = states
        self._by_key = by_key  # static step key -> Step, whose index is its state's position
        self._static_count = len(by_key)
        self._runtime: dict[str, Any] | None = None
        self._dynamic = dynamic

    def get(self, key: str) -> Any:
        """The state of step ``key``, or None."""
        step = self._by_key.get(key)
        if step is not None:
            return self.states[step.index]
        if len(self.states) == self._static_count:
            return None
        if self._runtime is None:
            self._runtime = {s.step.key: s for s in self.states[self._static_count :]}
        return self._runtime.get(key)

    def outputs_of(self, state: Any) -> dict[str, Any] | None:
        """What ``state``'s step produced by output name; a producer's dynamic outputs as
        its items by mapping key."""
        outputs = state.outputs
        dynamic = self._dynamic
        if outputs is not None and dynamic is not None and state.step.index in dynamic.by_producer:
            outputs = {**outputs, **dynamic.items_of(state.step.index)}
        return outputs  # type: ignore[no-any-return]


class StepOutputs(Mapping[str, Mapping[str, Any]]):
    """Step key -> what the step produced, read from the run's states on lookup.

    Only the steps that produced outputs are keys.  Looking one up builds its
    outputs alone: a caller awaiting one output of a 100,000-step run pays for one.
    """

    __slots__ = ("_steps",)

    def __init__(self, steps: RunSteps) -> None:
        self._steps = steps

    def __getitem__(self, key: str) -> Mapping[str, Any]:
        state = self._steps.get(key)
        outputs = None if state is None else self._steps.outputs_of(state)
        if outputs is None:
            raise KeyError(key)
        return outputs

    def __iter__(self) -> Iterator[str]:
        return (s.step.key for s in self._steps.states if s.outputs is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return repr(dict(self))


class StepResults(Mapping[str, "StepResult"]):
    """Step key -> :class:`StepResult`, each built on first lookup (and then kept)."""

    __slots__ = ("_built", "_steps")

    def __init__(self, steps: RunSteps) -> None:
        self._steps = steps
        self._built: dict[str, StepResult] = {}

    def __getitem__(self, key: str) -> StepResult:
        result = self._built.get(key)
        if result is None:
            state = self._steps.get(key)
            if state is None:
                raise KeyError(key)
            step = state.step
            result = self._built[key] = StepResult(
                key=step.key,
                solid_name=step.solid.name,
                status=state.status,
                attempts=state.attempts,
                start_time=state.start,
                end_time=state.end,
                error=state.error,
                skip_reason=state.skip_reason,
            )
        return result

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._steps.get(key) is not None

    def __iter__(self) -> Iterator[str]:
        return (s.step.key for s in self._steps.states)

    def __len__(self) -> int:
        return len(self._steps.states)

    def __repr__(self) -> str:
        return repr(dict(self))


@attrs.frozen(eq=False)
class PipelineRunResult:
    """The result of one run.  ``events`` is the complete, ordered event log."""

    run_id: str
    pipeline_name: str
    status: RunStatus
    events: Sequence[Event]
    step_results: Mapping[str, StepResult]
    start_time: float
    end_time: float
    trace_id: str | None = None
    _outputs: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict, alias="outputs")
    _exceptions: Mapping[str, BaseException] = attrs.field(factory=dict, alias="exceptions")
    # Node made inside .map() -> {mapping key: that item's step's outputs} (nested per level).
    _mapped: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict, alias="mapped")
    # Graph use ("outer", "outer.inner") -> what it returned, by output name.
    _graphs: Mapping[str, Any] = attrs.field(factory=dict, alias="graphs")
    _run_exception: BaseException | None = attrs.field(default=None, alias="run_exception")

    @property
    def success(self) -> bool:
        return self.status is RunStatus.SUCCESS

    @property
    def duration(self) -> float:
        return self.end_time - self.start_time

    def output_for_solid(self, name: str, output_name: str = "result") -> Any:
        """The value solid ``name`` returned (its ``output_name`` output, for multi-output solids).

        ``name`` is a step key (``"fetch"``, ``"parse[page_3]"``), or as in Dagster:
        a node made inside ``.map()`` (``"parse"``) gives ``{mapping_key: value}`` over
        its steps that produced the output; a dynamic output gives its items the same
        way; a graph's name (``"outer"``, ``"outer.inner"``) gives what the graph
        returned (its ``output_name``, for a graph returning a dict or tuple).
        For a step a re-execution reused rather than computed, the value is read
        from the output store on first access (a blocking read).
        """
        outputs = self._outputs.get(name)
        if outputs is not None:  # the common case, first: no StepResult is built for it
            try:
                value = outputs[output_name]
            except KeyError:
                raise AsyncdagError(
                    f"step {name!r} has no output named {output_name!r}; it produced "
                    f"{list(outputs)}"
                ) from None
            return _loaded(value)
        step = self.step_results.get(name)
        if step is None:
            mapped = self._mapped.get(name)
            if mapped is not None:
                return _by_mapping_key(mapped, output_name)
            graph = self._graphs.get(name)
            if graph is not None:
                return self._graph_output(name, graph, output_name)
            raise AsyncdagError(
                f"run {self.run_id} has no step {name!r}; steps are {list(self.step_results)}"
            )
        raise AsyncdagError(
            f"step {name!r} has no output: it ended {step.status.value}"
            + (f" ({step.error.type}: {step.error.message})" if step.error else "")
        )

    def _graph_output(self, name: str, graph: Any, output_name: str) -> Any:
        handle = graph.outputs.get(output_name)
        if handle is None:
            raise AsyncdagError(
                f"graph {name!r} has no output named {output_name!r}; it returned "
                f"{list(graph.outputs) or 'nothing'}"
            )
        if isinstance(handle, OutputHandle):  # one solid output
            return self.output_for_solid(handle.node, handle.output)
        if handle.node == handle.producer:  # a fan-out's own items
            items = self.output_for_solid(handle.producer, handle.producer_output)
        else:  # a node mapped over a fan-out
            items = self.output_for_solid(handle.node, handle.output)
        if isinstance(handle, CollectHandle):  # gathered: a list in mapping-key order
            return [items[key] for key in sorted(items)]
        return items

    @property
    def failed_steps(self) -> list[StepResult]:
        return [s for s in self.step_results.values() if s.status is StepStatus.FAILURE]

    def exception_for_step(self, key: str) -> BaseException | None:
        """The live exception a failed step raised (not stored: only for this process)."""
        return self._exceptions.get(key)

    @property
    def run_exception(self) -> BaseException | None:
        """Why the run failed when no step did: its executor could not start (say, no
        Dask scheduler at the address given).  None otherwise."""
        return self._run_exception

    def step_result(self, key: str) -> StepResult:
        try:
            return self.step_results[key]
        except KeyError:
            raise AsyncdagError(
                f"run {self.run_id} has no step {key!r}; steps are {list(self.step_results)}"
            ) from None

    def __repr__(self) -> str:
        return (
            f"<PipelineRunResult {self.pipeline_name!r} {self.status.value} run_id={self.run_id} "
            f"steps={len(self.step_results)}>"
        )


def _by_mapping_key(mapped: Mapping[str, Any], output_name: str) -> dict[str, Any]:
    """One output of a mapped node's steps, by mapping key; steps that did not produce it
    (failed, skipped, an optional output left out) are left out, as ``.collect()`` does."""
    values: dict[str, Any] = {}
    for key, outputs in mapped.items():
        if isinstance(outputs, _Nested):
            values[key] = _by_mapping_key(outputs, output_name)
        elif output_name in outputs:
            values[key] = _loaded(outputs[output_name])
    return values


def _loaded(value: Any) -> Any:
    """A reused step's output (or a reused producer's items) is read from the output store
    when it is asked for."""
    if type(value) is StoredValue:
        return value.load()
    if type(value) is dict and any(type(v) is StoredValue for v in value.values()):
        return {key: _loaded(item) for key, item in value.items()}
    return value


class _Nested(dict[str, Any]):
    """A level of mapping keys inside a nested fan-out (as opposed to one step's outputs)."""


def mapped_outputs(pipeline: Any, states: Sequence[Any]) -> dict[str, Any]:
    """Each node made inside ``.map()``: its steps' outputs by mapping key, a nested fan-out's
    by its outer keys first (``{"a": {"x": ...}}``).  Every mapped node has an entry, an
    empty one when its fan-out yielded nothing."""
    mapped: dict[str, Any] = {
        name: _Nested() for name, node in pipeline.nodes.items() if node.dynamic is not None
    }
    for state in states:
        step = state.step
        path = step.mapping_path
        if not path or state.outputs is None:
            continue
        level = mapped[step.node.name]
        for key in path[:-1]:
            level = level.setdefault(key, _Nested())
        level[path[-1]] = state.outputs
    return mapped
