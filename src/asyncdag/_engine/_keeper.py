"""Outputs that outlive the run: storing what steps produce, reusing what an earlier run stored.

The engine knows nothing of files or buckets.  A run that keeps its outputs
hands the executor an :class:`OutputIO` (the API layer's adapter over an
output store), and the executor calls it through one :class:`OutputKeeper`:

* after a computed step's attempt returned, :meth:`OutputKeeper.save` writes
  each output (in a worker thread) before the step counts as succeeded; a
  value that cannot be written fails the attempt like any error of the solid.
  An item a generator yields is written in the background while its mapped
  steps already run, and the producer succeeds only once all of its items
  are written.
* a *reused* step (``step.reuse``: a re-execution did not select it) never
  runs: its outputs are :class:`StoredValue` handles, loaded only when a
  computed step reads them (:meth:`OutputKeeper.resolve`), so re-executing
  the last of fifty steps reads the one value it needs, not forty-nine.

A run without an output store has no keeper: the step's path pays one ``is
None`` test.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import anyio.to_thread

from .._events import EventType
from .._plan import CollectInput, FanInInput

if TYPE_CHECKING:
    from .._plan import RecordedOutput, Step
    from ._log import Emit
    from ._state import StepState

__all__ = ["OutputIO", "OutputKeeper", "StoredValue", "describe_size"]

DEBUG = logging.DEBUG


class OutputIO(Protocol):
    """Where a run's outputs go and come from.  Blocking methods: the engine calls them in
    worker threads.  Each ``save*`` returns the data its STEP_OUTPUT event carries:
    ``path`` (where it went), ``size`` (bytes) and ``serializer`` (its name)."""

    def save(
        self, run_id: str, step: Step, outputs: Mapping[str, Any]
    ) -> dict[str, dict[str, Any]]:
        """Store a computed step's outputs; by output name, what each event says."""
        ...

    def save_item(
        self, run_id: str, step: Step, output: str, mapping_key: str, value: Any
    ) -> dict[str, Any]:
        """Store one item a generator step yielded on a dynamic output."""
        ...

    def load(self, record: RecordedOutput, spec: Any) -> Any:
        """The value ``record`` names; ``spec`` is the output's ``Out``/``DynamicOut`` (or None)."""
        ...


class StoredValue:
    """An output an earlier run stored, standing in for its value until a step reads it.

    A reused step's outputs are these; :meth:`load` reads the value once (it is
    then kept for the run's other readers).
    """

    __slots__ = ("_io", "_loaded", "_value", "record", "spec")

    def __init__(self, record: RecordedOutput, spec: Any, io: OutputIO) -> None:
        self.record = record
        self.spec = spec
        self._io = io
        self._loaded = False
        self._value: Any = None

    def load(self) -> Any:
        """The value (blocking: call it in a worker thread from async code)."""
        if not self._loaded:
            self._value = self._io.load(self.record, self.spec)
            self._loaded = True
        return self._value

    def __repr__(self) -> str:
        record = self.record
        item = f"[{record.mapping_key}]" if record.mapping_key is not None else ""
        return f"<StoredValue {record.step_key}.{record.output}{item} of run {record.run_id}>"


def describe_size(size: Any) -> str:
    if not isinstance(size, int):
        return "? bytes"
    for unit in ("bytes", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1000  # type: ignore[assignment]
    return f"{size} bytes"  # unreachable


class _Pending:
    """The items of one producer still being written."""

    __slots__ = ("count", "done", "errors")

    def __init__(self) -> None:
        self.count = 0
        self.done = anyio.Event()
        self.errors: list[BaseException] = []


class OutputKeeper:
    """One run's writes to, and reads from, its output store (see the module docstring)."""

    def __init__(self, io: OutputIO, *, run_id: str, emit: Emit, reads: bool) -> None:
        self.io = io
        self.run_id = run_id
        self.emit = emit
        #: True when some step of the run is reused, so inputs may hold StoredValues.
        self.reads = reads
        self._pending: dict[int, _Pending] = {}
        self.task_group: anyio.abc.TaskGroup | None = None
        #: The launcher's ``values_of`` when its outputs are handles of its own (a Dask future):
        #: what is stored is the value behind the handle, fetched for the store alone.
        self.fetch: Callable[[Any], Awaitable[Any]] | None = None

    # --- computed steps ------------------------------------------------------------------------

    async def save(self, state: StepState, value: Any) -> dict[str, dict[str, Any]]:
        """Write a computed step's outputs (after its yielded items are written)."""
        step = state.step
        pending = self._pending.pop(step.index, None)
        if pending is not None:
            while pending.count:
                await pending.done.wait()
            if pending.errors:
                raise pending.errors[0]
        if self.fetch is not None:
            value = await self.fetch(value)
        outputs = {"result": value} if step.outs is None else value
        return await anyio.to_thread.run_sync(self.io.save, self.run_id, step, outputs)

    def save_item(self, state: StepState, output: str, mapping_key: str, value: Any) -> None:
        """Write one yielded item in the background; its STEP_OUTPUT event follows the write."""
        assert self.task_group is not None, "items are yielded only while the run's steps run"
        pending = self._pending.get(state.step.index)
        if pending is None:
            pending = self._pending[state.step.index] = _Pending()
        pending.count += 1
        self.task_group.start_soon(
            self._write_item, state, pending, output, mapping_key, value, state.attempts
        )

    async def _write_item(
        self,
        state: StepState,
        pending: _Pending,
        output: str,
        mapping_key: str,
        value: Any,
        attempt: int,
    ) -> None:
        step = state.step
        try:
            if self.fetch is not None:
                value = await self.fetch(value)
            stored = await anyio.to_thread.run_sync(
                self.io.save_item, self.run_id, step, output, mapping_key, value
            )
        except Exception as exc:
            pending.errors.append(exc)
        else:
            self.emit(
                EventType.STEP_OUTPUT,
                step_key=step.key,
                level=DEBUG,
                message=f"Yielded output {output!r} item {mapping_key!r}, stored at "
                f"{stored.get('path')} ({describe_size(stored.get('size'))}).",
                data={"output": output, "mapping_key": mapping_key, "attempt": attempt, **stored},
            )
        finally:
            pending.count -= 1
            if not pending.count:
                pending.done.set()
                pending.done = anyio.Event()

    # --- reading what earlier runs stored -------------------------------------------------------

    def handle(self, record: RecordedOutput, spec: Any) -> StoredValue:
        return StoredValue(record, spec, self.io)

    async def resolve(self, state: StepState) -> None:
        """Replace the StoredValues among a computed step's inputs by their values."""
        inputs = state.inputs
        for name, source in state.step.inputs:
            value = inputs[name]
            if type(value) is StoredValue:
                inputs[name] = await _load(value)
            elif isinstance(source, FanInInput | CollectInput) and any(
                type(v) is StoredValue for v in value
            ):
                inputs[name] = [await _load(v) if type(v) is StoredValue else v for v in value]


async def _load(value: StoredValue) -> Any:
    return await anyio.to_thread.run_sync(value.load)
