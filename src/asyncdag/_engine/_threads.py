"""Calling user code in a worker thread, so that whatever it raises comes back intact.

A sync solid or hook may raise anything, ``GeneratorExit`` and ``SystemExit``
included.  On asyncio, a thread's exception reaches the awaiting task through a
future, and asyncio throws a future's ``GeneratorExit`` into the task's
coroutines with ``close()``'s meaning, which would end them instead of letting
the step record a failure.  So a call returns a ``BaseException`` that is not
an ``Exception`` as a value, and :meth:`ThreadCall.run` raises it again on the
event loop, where it is an ordinary exception in the step's own frame.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio.to_thread

if TYPE_CHECKING:
    import anyio

__all__ = ["ThreadCall"]


class ThreadCall:
    """One call in a worker thread, and whether it is still running there."""

    __slots__ = ("call", "error", "state")

    def __init__(self, call: Callable[[], Any]) -> None:
        self.call = call
        self.state = 0  # 0: not started, 1: running, 2: returned or raised
        self.error: BaseException | None = None

    def __call__(self) -> Any:
        self.state = 1
        try:
            return self.call()
        except Exception:
            raise
        except BaseException as exc:  # carried back as a value: see the module's doc
            self.error = exc
            return None
        finally:
            self.state = 2

    def still_running(self) -> bool:
        return self.state == 1

    async def run(self, *, limiter: anyio.CapacityLimiter | None, abandon_on_cancel: bool) -> Any:
        """Run the call in a worker thread; raise what it raised, whatever it was."""
        value = await anyio.to_thread.run_sync(
            self, abandon_on_cancel=abandon_on_cancel, limiter=limiter
        )
        if self.error is not None:
            raise self.error
        return value
