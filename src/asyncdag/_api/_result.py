"""What a finished run hands back: status, per-step results, outputs and the full event log."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import attrs

from .._errors import AsyncdagError
from .._events import ErrorInfo, Event, RunStatus, StepStatus

__all__ = ["LazyMapping", "PipelineRunResult", "StepResult"]


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
    _run_exception: BaseException | None = attrs.field(default=None, alias="run_exception")

    @property
    def success(self) -> bool:
        return self.status is RunStatus.SUCCESS

    @property
    def duration(self) -> float:
        return self.end_time - self.start_time

    def output_for_solid(self, name: str, output_name: str = "result") -> Any:
        """The value solid ``name`` returned (its ``output_name`` output, for multi-output solids)."""
        step = self.step_results.get(name)
        if step is None:
            raise AsyncdagError(
                f"run {self.run_id} has no step {name!r}; steps are {list(self.step_results)}"
            )
        outputs = self._outputs.get(name)
        if outputs is None:
            raise AsyncdagError(
                f"step {name!r} has no output: it ended {step.status.value}"
                + (f" ({step.error.type}: {step.error.message})" if step.error else "")
            )
        try:
            return outputs[output_name]
        except KeyError:
            raise AsyncdagError(
                f"step {name!r} has no output named {output_name!r}; it produced {list(outputs)}"
            ) from None

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
