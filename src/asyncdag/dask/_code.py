"""Shipping a solid's code to the workers as cloudpickle bytes.

Dask pickles a task's arguments with plain pickle, *by reference*, and the
scheduler unpickles them: a solid from a pipeline file only the driver has
(``asyncdag pipeline execute -f my_pipeline.py``) would fail there with "No
module named 'my_pipeline'".  So a solid (with its outputs' declarations) and
the run's resource definitions travel as cloudpickle bytes, made once per
solid per run, and modules that are not installed in the Python environment
(the user's own files, wherever they are imported from, and the ones of their
own they import in turn) are pickled *by value*.  Code installed in the
environment (site-packages, the standard library, asyncdag itself) travels by
reference, and must be installed on the workers too, as Dask always requires.
"""

from __future__ import annotations

import sys
import sysconfig
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = ["CodeShipper"]


def _installed_roots() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    roots = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    roots |= {sys.prefix, sys.base_prefix, sys.exec_prefix}
    return tuple(str(Path(root).resolve()) for root in roots)


class CodeShipper:
    """cloudpickle bytes of what a run sends its workers, cached by object identity."""

    def __init__(self) -> None:
        self._cache: dict[int, tuple[Any, bytes]] = {}
        self._seen: set[str] = set()
        self._roots = _installed_roots()

    def dumps(self, key: Any, value: Any, functions: Iterable[Any]) -> bytes:
        """cloudpickle of ``value``, once per ``key`` object; the modules of
        ``functions`` that are the user's own go by value."""
        cached = self._cache.get(id(key))
        if cached is not None and cached[0] is key:
            return cached[1]
        import cloudpickle

        for fn in functions:
            self._register(getattr(fn, "__module__", None))
        blob = cloudpickle.dumps(value)
        self._cache[id(key)] = (key, blob)
        return blob

    def _register(self, name: str | None) -> None:
        """Pickle module ``name`` by value if it is the user's own, and so the user's own
        modules it refers to (``import helpers``, ``from helpers import f``)."""
        if name is None or name in self._seen or name == "__main__":
            return
        self._seen.add(name)
        module = sys.modules.get(name)
        file = getattr(module, "__file__", None)
        if module is None or file is None or name.split(".")[0] == "asyncdag":
            return
        resolved = str(Path(file).resolve())
        if any(resolved.startswith(root + "/") for root in self._roots):
            return  # installed: the workers import it
        import cloudpickle

        cloudpickle.register_pickle_by_value(module)
        for value in list(vars(module).values()):
            if isinstance(value, ModuleType):
                self._register(value.__name__)
            else:
                owner = getattr(value, "__module__", None)
                if isinstance(owner, str):
                    self._register(owner)
