"""A scheduler process for the multi-process tests: ``python automation_proc.py URL CLOCK OWNER FILE``.

Not a test module.  Its clock is a file holding seconds since the epoch, which
the test rewrites to move time for every process at once (no test waits for
wall-clock ticks).  It prints ``ready`` once its loops run, and stops cleanly
on SIGTERM.  URL names the shared history, as `--storage` would (a SQLite file, PostgreSQL).
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import anyio

from asyncdag._workspace import load_workspace
from asyncdag.automation import Scheduler
from asyncdag.storage import open_storage

LEASE_TTL = 30.0


class FileClock:
    """Time read from a file; sleeping polls it (a few milliseconds of real time per poll)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def now(self) -> float:
        while True:
            text = self.path.read_text().strip()
            if text:  # the writer replaces the file atomically, but be safe
                return float(text)

    async def sleep_until(self, deadline: float) -> None:
        while self.now() < deadline:
            await anyio.sleep(0.005)


async def main(url: str, clock_file: str, owner: str, source: str) -> None:
    definitions = load_workspace(files=[source]).automation
    async with open_storage(url) as storage:
        scheduler = Scheduler(
            definitions,
            storage=storage,
            clock=FileClock(Path(clock_file)),
            owner=owner,
            lease_ttl=LEASE_TTL,
        )
        with anyio.open_signal_receiver(signal.SIGTERM) as signals:
            async with scheduler.running():
                print("ready", flush=True)
                async for _ in signals:
                    break


if __name__ == "__main__":
    anyio.run(main, *sys.argv[1:5])
