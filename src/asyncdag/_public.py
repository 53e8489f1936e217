"""Making re-exported names report the public module they are used from.

A class defined in ``asyncdag._errors`` and re-exported as ``asyncdag.ConfigError``
should say so: its ``__module__`` shows in reprs, tracebacks, stored error types
(``ErrorInfo.type``) and span attributes, which must never carry private paths
that change whenever the internals move.  Pickling still works, because the
public module holds the same object under the same name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["publish"]


def publish(module: str, namespace: Mapping[str, Any], names: Iterable[str]) -> None:
    """Set ``__module__`` of each class and function in ``names`` to ``module``.

    Only objects defined inside asyncdag's private modules are touched, so a
    re-exported third-party object keeps its own module.
    """
    for name in names:
        obj = namespace.get(name)  # names a module loads lazily are not there yet
        own = getattr(obj, "__module__", None)
        if isinstance(own, str) and own.startswith("asyncdag.") and _private(own):
            try:
                obj.__module__ = module
            except (AttributeError, TypeError):  # an object that does not allow it
                continue


def _private(module: str) -> bool:
    return any(part.startswith("_") for part in module.split("."))
