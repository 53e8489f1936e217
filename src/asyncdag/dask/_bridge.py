"""Where the Dask client lives: Dask's client is asyncio-only, the engine runs on anyio.

- On asyncio (``bridge="auto"`` or ``"loop"``) the client lives on the
  driver's own loop and its calls are plain awaits: nothing is added per step.
- On trio (``"auto"``) or when asked (``"thread"``), a thread runs an asyncio
  loop for the client (an anyio blocking portal) and the engine awaits
  ``portal.call_async(...)``: no thread is held per waiting step, and
  cancelling the caller cancels the call in the client's loop.  The hop costs
  a few milliseconds a step on a busy 2-core machine, hence "auto".

:meth:`ClientHost.wake` runs a function soon on the driver's loop from the
client's loop without blocking it (how worker events reach the engine).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread

__all__ = ["BRIDGES", "ClientHost"]

BRIDGES = ("auto", "loop", "thread")


class ClientHost:
    """The asyncio loop the client runs on, and how the driver's loop talks to it."""

    def __init__(self, bridge: str) -> None:
        self.bridge = bridge
        self.in_loop = False
        self._portal_cm: Any = None
        self._portal: Any = None
        self._call_soon: Callable[[Callable[[], None]], Any] | None = None
        self._background: set[Any] = set()

    async def __aenter__(self) -> ClientHost:
        native: Any = anyio.lowlevel.current_token().native_token
        on_asyncio = isinstance(native, asyncio.AbstractEventLoop)
        # asyncio's loop.call_soon_threadsafe, or trio's TrioToken.run_sync_soon.
        self._call_soon = native.call_soon_threadsafe if on_asyncio else native.run_sync_soon
        if self.bridge == "loop" and not on_asyncio:
            raise ValueError(
                "DaskExecutor(bridge='loop') needs an asyncio driver (Dask's client is "
                "asyncio-only); use bridge='auto' or 'thread' under trio"
            )
        self.in_loop = on_asyncio and self.bridge != "thread"
        if not self.in_loop:
            from anyio.from_thread import start_blocking_portal

            self._portal_cm = start_blocking_portal("asyncio", name="asyncdag-dask-client")
            self._portal = await anyio.to_thread.run_sync(self._portal_cm.__enter__)
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        cm, self._portal_cm = self._portal_cm, None
        if cm is not None:
            await anyio.to_thread.run_sync(cm.__exit__, None, None, None)

    async def call(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """``await fn(*args)`` on the client's loop; cancelling the caller cancels it there."""
        if self.in_loop:
            return await fn(*args)
        return await self._portal.call_async(fn, *args)

    def spawn(self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
        """From the driver's loop: start ``fn(*args)`` on the client's loop, without waiting."""
        if self.in_loop:
            task: Any = asyncio.get_running_loop().create_task(fn(*args))
        else:
            task = self._portal.start_task_soon(fn, *args)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def wake(self, fn: Callable[[], None]) -> None:
        """From the client's loop: run ``fn()`` soon on the driver's loop (never blocks)."""
        assert self._call_soon is not None
        self._call_soon(fn)
