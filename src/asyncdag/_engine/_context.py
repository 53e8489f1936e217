"""The ``context`` a solid receives: its logger, config, resources and the run it belongs to."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._log import StepLog
from ._resources import Resources

__all__ = ["HookContext", "SolidContext"]


class SolidContext:
    """What a solid's ``context`` parameter receives for one attempt of one step."""

    __slots__ = (
        "log",
        "mapping_key",
        "pipeline_name",
        "resources",
        "retry_number",
        "run_config",
        "run_id",
        "solid_config",
        "solid_name",
        "solid_tags",
        "span",
        "step_key",
        "tags",
    )

    def __init__(
        self,
        *,
        run_id: str,
        pipeline_name: str,
        solid_name: str,
        step_key: str,
        retry_number: int,
        log: StepLog,
        solid_config: Any = None,
        resources: Resources | None = None,
        tags: Mapping[str, str] | None = None,
        run_config: Mapping[str, Any] | None = None,
        span: Any = None,
        mapping_key: str | None = None,
        solid_tags: Mapping[str, str] | None = None,
    ) -> None:
        self.run_id = run_id
        self.pipeline_name = pipeline_name
        self.solid_name = solid_name
        self.step_key = step_key
        self.retry_number = retry_number
        self.log = log
        self.solid_config = solid_config
        self.resources = (
            resources
            if resources is not None
            else Resources({}, frozenset(), f"solid {solid_name!r}")
        )
        self.tags = dict(tags or {})
        self.run_config = dict(run_config or {})
        self.span = span
        # The key of the dynamic item this step was made for (None outside a fan-out).
        self.mapping_key = mapping_key
        # This node's tags: the solid's (@solid(tags=)) overlaid with its call's .tag({...}).
        self.solid_tags = solid_tags if solid_tags is not None else {}

    def get_mapping_key(self) -> str | None:
        """The mapping key of the dynamic item this step was made for (``fetch[page_3]``:
        ``"page_3"``); None for a step outside a ``.map()``.  Dagster's name for it."""
        return self.mapping_key

    @property
    def is_cancel_requested(self) -> bool:
        """True once the step is cancelled or timed out.

        A sync solid runs in a worker thread, which cannot be interrupted:
        long loops should check this (or call :meth:`check_cancelled`) and
        return early.  In an async solid cancellation arrives at the next
        ``await`` by itself and this is always False while the solid runs.
        """
        import anyio.from_thread  # only sync solids ask, from their worker thread

        try:
            anyio.from_thread.check_cancelled()
        except RuntimeError:
            return False  # not in a worker thread: the event loop delivers cancellation itself
        except BaseException:  # the backend's cancellation exception (not an Exception subclass)
            return True
        return False

    def check_cancelled(self) -> None:
        """In a sync solid, raise the cancellation exception if the step was cancelled or timed out."""
        import anyio.from_thread  # only sync solids ask, from their worker thread

        try:
            anyio.from_thread.check_cancelled()
        except RuntimeError:
            return

    def __repr__(self) -> str:
        return (
            f"<SolidContext step={self.step_key!r} run={self.run_id!r} retry={self.retry_number}>"
        )


class HookContext(SolidContext):
    """What a hook receives: the step's context, its ``hook_name``, ``error`` for a failure
    hook, and ``solid_output_values`` for a success hook.

    ``resources`` holds the step's resources and those the hook declared
    (``@success_hook(required_resources={"slack"})``).
    """

    __slots__ = ("error", "hook_name", "solid_output_values")

    def __init__(
        self,
        *,
        hook_name: str,
        error: BaseException | None,
        solid_output_values: Mapping[str, Any] | None = None,
        **step: Any,
    ) -> None:
        super().__init__(**step)
        self.hook_name = hook_name
        self.error = error
        # What the step produced, by output name; a dynamic output's items as
        # {mapping_key: value}.  Empty after a failure.
        self.solid_output_values = solid_output_values if solid_output_values is not None else {}

    def __repr__(self) -> str:
        return f"<HookContext {self.hook_name!r} step={self.step_key!r}>"
