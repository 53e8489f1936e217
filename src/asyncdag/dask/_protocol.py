"""What the driver sends a Dask worker for one attempt, as plain picklable data.

Both sides import this module, and it imports no dask: the driver builds an
:class:`AttemptPayload`, Dask carries it (through the scheduler) to a worker,
and :func:`asyncdag.dask._worker.run_attempt` runs it there.

User code (the solid, its resources, input values that are not outputs of
other steps) travels as cloudpickle bytes, never as objects in the task: the
scheduler unpickles every task's arguments with plain pickle, and cannot
import a pipeline file that only the driver has (``asyncdag pipeline execute
-f my_pipeline.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from .._engine import ContextData

__all__ = ["AttemptPayload", "Source", "Upstream", "plain"]


@attrs.frozen
class Upstream:
    """An input read from the Dask task at ``index`` in the attempt's upstream futures:
    its output ``name`` (a step's outputs dict), or the whole value (``name`` None: a
    dynamic item)."""

    index: int
    name: str | None


#: An input's source: an upstream future, a constant (by position in the payload's
#: ``constants``), or a list of either (a fan-in or a collected fan-out).
Source = Upstream | int | tuple["Upstream | int", ...]


@attrs.frozen
class AttemptPayload:
    """One attempt of one step, for a worker: the first argument of its Dask task (the
    upstream futures follow, resolved to their values by Dask on the worker)."""

    context: ContextData
    key: str
    """The attempt's Dask key (unique per attempt; a retry gets a new one)."""
    topic: str
    """The run's Dask event topic: the worker's logs and events go there."""
    backend: str
    """The driver's anyio backend: async solids and resources run on a loop of the same kind."""
    inputs: Mapping[str, Source]
    code: bytes
    """cloudpickle of ``(solid, outs)``, the same bytes for every attempt of a solid."""
    resources: bytes
    """cloudpickle of ``(definitions, configs, given values)`` of the run's resources (b"": none
    needed)."""
    constants: bytes = b""
    """cloudpickle of the tuple of constant input values (b"": none)."""
    check_pickle: bool = True
    """Pickle each output on the worker before returning it (the only way to name the
    output that cannot leave it)."""

    def describe(self) -> str:
        return f"step {self.context.step_key!r} (attempt {self.context.retry_number + 1})"


def plain(value: Any, depth: int = 0) -> Any:
    """``value`` as msgpack-able data (Dask events must be): str, numbers, lists, dicts."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if depth > 8:
        return repr(value)
    if isinstance(value, Mapping):
        return {str(k): plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v, depth + 1) for v in value]
    return str(value)
