"""stdout and stderr whose reader may leave: ``asyncdag pipeline execute ... | head -1``.

A closed pipe is the reader's business, never the run's.  :func:`guarded_stdio`
puts a :class:`ReaderSafeStream` in front of ``sys.stdout`` and ``sys.stderr``
for the length of a command: the first write that finds the pipe closed points
the file descriptor at ``/dev/null`` (the recipe of Python's ``signal``
documentation), so that write and every later one (ours, rich's live display,
a log line, a solid's ``print``) succeeds and goes nowhere, and the run carries
on to its true end and is recorded with it.  The command's exit code is then
the one it would have had (0 success, 1 failed, 130/143 canceled): the run,
not the reader, decides it.  Nothing is printed about the closed pipe, as a
shell tool would not.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator
from typing import IO, Any

__all__ = ["ReaderSafeStream", "guarded_stdio"]


class ReaderSafeStream:
    """A text stream that turns a vanished reader into a silent sink instead of an error."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self.reader_left = False

    @property
    def wrapped(self) -> IO[str]:
        return self._stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._discard()
            return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._discard()
        except ValueError:  # flushed after the stream was closed: nothing left to say
            pass

    def _discard(self) -> None:
        with self._lock:
            if self.reader_left:
                return
            self.reader_left = True
            with contextlib.suppress(OSError, ValueError):
                devnull = os.open(os.devnull, os.O_WRONLY)
                try:
                    os.dup2(devnull, self._stream.fileno())
                finally:
                    os.close(devnull)
        # What the failed write left in the buffer now goes to /dev/null.
        with contextlib.suppress(OSError, ValueError):
            self._stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextlib.contextmanager
def guarded_stdio() -> Iterator[None]:
    """Guard ``sys.stdout`` and ``sys.stderr`` while the block runs; restore them after."""
    saved = sys.stdout, sys.stderr
    if not isinstance(sys.stdout, ReaderSafeStream):
        sys.stdout = ReaderSafeStream(sys.stdout)  # type: ignore[assignment]
    if not isinstance(sys.stderr, ReaderSafeStream):
        sys.stderr = ReaderSafeStream(sys.stderr)  # type: ignore[assignment]
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved
