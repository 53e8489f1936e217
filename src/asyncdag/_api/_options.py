"""A run's options as one frozen value.

``execute_pipeline``, ``execute_pipeline_async`` and ``open_run`` keep their
explicit keyword-only signatures (so editors and ``help()`` show every option),
and each builds one :class:`RunOptions` that travels down from there: a new
option is added here and to those signatures, nowhere else.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

    from .._engine import Listener, StepExecutor, StepLauncher
    from ..outputs import OutputStore
    from ..storage import RunStorage

__all__ = ["RunOptions"]


def _listeners(value: Iterable[Listener]) -> tuple[Listener, ...]:
    return tuple(value)


def _selection(value: Iterable[str] | str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    return (value,) if isinstance(value, str) else tuple(value)


@attrs.frozen(kw_only=True)
class RunOptions:
    """Everything a caller may say about one run besides the pipeline and its run config.

    The public entry points document each option; ``launcher`` (where steps
    run; None: in this process, unless ``executor`` or the run config's
    ``execution`` section names another place) and ``origin`` (where the
    pipeline was loaded from, as the CLI and UI know it: ``{"python_file": path}``
    or ``{"module_name": name}``; None: found from the pipeline's function) are
    internal for now.
    """

    max_concurrency: int | None = None
    concurrency_limits: Mapping[str, int] | None = None
    raise_on_error: bool = False
    tags: Mapping[str, str] | None = None
    fail_fast: bool = False
    storage: RunStorage | None = None
    run_id: str | None = None
    parent_run_id: str | None = None
    tracing: bool = True
    tracer_provider: TracerProvider | None = None
    listeners: tuple[Listener, ...] = attrs.field(default=(), converter=_listeners)
    resources: Mapping[str, Any] | None = None
    console: bool | None = None
    cancel_is_error: bool = True
    launcher: StepLauncher | None = None
    output_store: OutputStore | None = None
    persist_outputs: bool = False
    reexecute_from: str | None = None
    from_failure: bool = False
    step_selection: tuple[str, ...] | None = attrs.field(default=None, converter=_selection)
    origin: Mapping[str, str] | None = None
    executor: StepExecutor | None = None
