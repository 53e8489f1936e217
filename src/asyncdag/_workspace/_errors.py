"""Finding the error that matters inside an exception group, for the CLI and the UI alike.

A run's task group reports a failing recorder (a run history locked, damaged or
gone) as an exception group; both shells answer it the same way, with one line
(exit 2 or 3, a 503), so both look for it the same way.
"""

from __future__ import annotations

from typing import TypeVar

__all__ = ["find_error"]

E = TypeVar("E", bound=BaseException)


def find_error(exc: BaseException, kind: type[E]) -> E | None:
    """``exc`` if it is a ``kind``, else the first ``kind`` inside it (an exception group)."""
    if isinstance(exc, kind):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = find_error(inner, kind)
            if found is not None:
                return found
    return None
