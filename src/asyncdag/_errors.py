"""One exception hierarchy, rooted at :class:`AsyncdagError`.

Messages name the solid, input or config path involved and say what to do,
because the person reading them is usually looking at a pipeline they wrote
minutes ago.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "AsyncdagError",
    "ConfigError",
    "ConfigErrorItem",
    "DefinitionError",
    "EventLoopError",
    "PipelineRunCanceled",
    "ReexecutionError",
    "ResourceInitError",
    "RetryRequested",
    "StepCanceledError",
    "StepTimeoutError",
    "UnknownResourceError",
]


class AsyncdagError(Exception):
    """Base of every error asyncdag raises itself."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Subclasses take their own __init__ arguments, which Exception's default pickling
        # does not know: rebuild from the message and attributes instead, so errors survive
        # crossing a process (a Dask worker, a multiprocessing pool) intact.
        return (_rebuild, (type(self), self.args, self.__dict__))


def _rebuild(cls: type[AsyncdagError], args: tuple[Any, ...], state: dict[str, Any]) -> Any:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


class DefinitionError(AsyncdagError):
    """A solid, pipeline or resource is defined or wired wrongly; nothing has run."""


class UnknownResourceError(DefinitionError, AttributeError):
    """A step reached for a resource it did not declare, or one not set up.

    An AttributeError too, so ``hasattr(context.resources, "db")`` and
    ``getattr(context.resources, "db", None)`` work as they do on any object.
    """


class EventLoopError(AsyncdagError, RuntimeError):
    """A blocking entry point was called from inside a running event loop."""


class ConfigErrorItem:
    """One config problem: where it is (a dotted path) and what is wrong there."""

    __slots__ = ("message", "path")

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message

    def __repr__(self) -> str:
        return f"ConfigErrorItem(path={self.path!r}, message={self.message!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ConfigErrorItem):
            return NotImplemented
        return (self.path, self.message) == (other.path, other.message)

    def __hash__(self) -> int:
        return hash((self.path, self.message))


class ConfigError(AsyncdagError):
    """Run config does not fit the schema.  Carries every problem found, not just the first."""

    def __init__(self, errors: Sequence[ConfigErrorItem], *, subject: str = "run config") -> None:
        self.errors = list(errors)
        lines = "\n".join(f"  - {error}" for error in self.errors)
        count = len(self.errors)
        noun = "error" if count == 1 else "errors"
        super().__init__(f"{subject} has {count} {noun}; nothing ran:\n{lines}")


class ResourceInitError(AsyncdagError):
    """A resource's setup raised; the run fails and the steps that need it never start."""

    def __init__(self, resource_key: str, cause: BaseException) -> None:
        self.resource_key = resource_key
        super().__init__(
            f"resource {resource_key!r} failed during setup: {type(cause).__name__}: {cause}"
        )


class StepTimeoutError(AsyncdagError, TimeoutError):
    """A step attempt ran longer than its solid's ``timeout=``."""

    def __init__(self, step_key: str, timeout: float) -> None:
        self.step_key = step_key
        self.timeout = timeout
        super().__init__(
            f"step {step_key!r} timed out after {timeout:g}s; raise the solid's timeout= "
            "or give it a RetryPolicy to try again"
        )


class ReexecutionError(AsyncdagError):
    """A re-execution or a step selection cannot run as asked; nothing has run.

    The parent run is unknown or of another pipeline, a selection names no
    step, a step to reuse has no stored outputs, or there is nothing to
    re-execute from failure.  The message says which run, step or selection
    clause, and what to do.
    """


class StepCanceledError(AsyncdagError):
    """Raised by ``context.check_cancelled()`` in a solid running in another process (a Dask
    worker) once its attempt was cancelled: the run has stopped waiting for it."""

    def __init__(self, step_key: str) -> None:
        self.step_key = step_key
        super().__init__(f"step {step_key!r} was cancelled; its result is no longer wanted")


class PipelineRunCanceled(AsyncdagError):
    """Raised by ``raise_on_error=True`` when a run ended CANCELED rather than by a step error.

    ``await run.result()`` of ``open_run(..., raise_on_error=True)`` raises it
    after ``run.cancel()``; ``run_id`` names the run.  (When the *caller* of
    ``execute_pipeline_async`` is cancelled, the run ends CANCELED and that
    cancellation propagates instead, as a cancelled call's must.)
    """

    def __init__(self, message: str, *, run_id: str | None = None) -> None:
        super().__init__(message)
        self.run_id = run_id


class RetryRequested(AsyncdagError):
    """Raise from a solid to ask for another attempt.

    ``max_retries`` and ``seconds_to_wait`` override the solid's retry policy
    for this request, as in Dagster.
    """

    def __init__(self, max_retries: int = 1, seconds_to_wait: float = 0.0) -> None:
        self.max_retries = max_retries
        self.seconds_to_wait = seconds_to_wait
        super().__init__(
            f"retry requested (max_retries={max_retries}, seconds_to_wait={seconds_to_wait})"
        )
