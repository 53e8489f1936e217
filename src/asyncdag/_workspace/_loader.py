"""Finding the pipelines a user points at: ``-f file.py`` or ``-m package.module``.

The CLI and the web UI both start from "run the pipeline in this file", so both
load through here and report the same problems the same way: one
:class:`LoadError` line that names the file (and line) and says what to do.
The original exception stays attached as ``__cause__`` for ``--verbose``.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import os
import sys
import traceback
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import ModuleType

import attrs

from .._definitions import PipelineDefinition
from .._errors import AsyncdagError
from ..automation._definitions import ScheduleDefinition, SensorDefinition

__all__ = ["LoadError", "Workspace", "load_pipelines", "load_workspace", "select_pipeline"]


class LoadError(AsyncdagError):
    """A pipeline file or module could not be loaded, or held no (or no such) pipeline."""


@attrs.frozen
class Workspace:
    """Everything a file or module defines at its top level: pipelines, schedules and sensors, by name."""

    pipelines: dict[str, PipelineDefinition]
    schedules: dict[str, ScheduleDefinition] = attrs.field(factory=dict)
    sensors: dict[str, SensorDefinition] = attrs.field(factory=dict)
    #: By pipeline name, where it was loaded from, as a run records it so that a later
    #: command can load it again: ``{"python_file": absolute path}`` or ``{"module_name": name}``.
    origins: dict[str, dict[str, str]] = attrs.field(factory=dict)

    @property
    def automation(self) -> list[ScheduleDefinition | SensorDefinition]:
        """The schedules and sensors together, the way a scheduler takes them."""
        return [*self.schedules.values(), *self.sensors.values()]


def load_pipelines(
    *,
    files: Iterable[str | os.PathLike[str]] = (),
    modules: Iterable[str] = (),
) -> dict[str, PipelineDefinition]:
    """Import each file and module and collect every pipeline defined at its top level, by name.

    A file's directory is put on ``sys.path`` (as ``python file.py`` would), so
    it can import its siblings; modules are imported from the current
    directory too, as ``python -m`` does.  Raises :class:`LoadError` when
    anything fails to import or when nothing defines a pipeline.
    """
    return load_workspace(files=files, modules=modules).pipelines


def load_workspace(
    *,
    files: Iterable[str | os.PathLike[str]] = (),
    modules: Iterable[str] = (),
) -> Workspace:
    """Like :func:`load_pipelines`, with the schedules and sensors found beside the pipelines.

    A schedule's or sensor's pipeline counts as found even when the file only
    imports it.  Names are unique across schedules and sensors.
    """
    files = [Path(f) for f in files]
    modules = list(modules)
    if not files and not modules:
        raise LoadError("no pipeline source given; pass a file with -f FILE or a module with -m")
    found: dict[str, PipelineDefinition] = {}
    origin: dict[str, str] = {}
    automation: dict[str, ScheduleDefinition | SensorDefinition] = {}
    loaded_from: dict[str, dict[str, str]] = {}
    for path in files:
        module = _import_file(Path(path))
        _collect(module, str(path), found, origin)
        _collect_automation(module, str(path), automation, origin)
        where = {"python_file": str(Path(path).resolve())}
        loaded_from.update(dict.fromkeys((n for n, s in origin.items() if s == str(path)), where))
    for name in modules:
        module = _import_module(name)
        _collect(module, name, found, origin)
        _collect_automation(module, name, automation, origin)
        where = {"module_name": name}
        loaded_from.update(dict.fromkeys((n for n, s in origin.items() if s == name), where))
    for definition in automation.values():
        found.setdefault(definition.pipeline.name, definition.pipeline)
    if not found:
        sources = ", ".join([*map(str, files), *modules])
        raise LoadError(
            f"{sources} defines no pipeline; decorate a function with @pipeline at the top "
            "level of the file (pipelines built inside functions are not found)"
        )
    return Workspace(
        pipelines=found,
        schedules={n: d for n, d in automation.items() if isinstance(d, ScheduleDefinition)},
        sensors={n: d for n, d in automation.items() if isinstance(d, SensorDefinition)},
        origins={name: loaded_from[name] for name in found if name in loaded_from},
    )


def select_pipeline(
    pipelines: Mapping[str, PipelineDefinition], name: str | None
) -> PipelineDefinition:
    """The pipeline called ``name``, or the only one when ``name`` is None.

    Several pipelines and no name is an error that lists them, and an unknown
    name suggests the nearest, so the user's next command is the right one.
    """
    if name is None:
        if len(pipelines) == 1:
            return next(iter(pipelines.values()))
        if not pipelines:
            raise LoadError("no pipeline was loaded; pass a file with -f FILE or a module with -m")
        names = ", ".join(sorted(pipelines))
        raise LoadError(f"found several pipelines ({names}); choose one with -p NAME")
    try:
        return pipelines[name]
    except KeyError:
        pass
    close = difflib.get_close_matches(name, list(pipelines), n=1, cutoff=0.5)
    hint = f"did you mean {close[0]!r}? " if close else ""
    names = ", ".join(sorted(pipelines)) or "none"
    raise LoadError(f"no pipeline named {name!r}; {hint}pipelines found: {names}")


# -- importing ---------------------------------------------------------------------------


def _import_file(path: Path) -> ModuleType:
    if not path.exists():
        raise LoadError(f"{path}: no such file; check the path given to -f")
    if path.is_dir():
        raise LoadError(f"{path} is a directory; pass a Python file to -f, or a package to -m")
    resolved = path.resolve()
    module_name = _module_name_for(resolved)
    spec = importlib.util.spec_from_file_location(module_name, resolved)
    if spec is None or spec.loader is None:
        raise LoadError(f"{path} cannot be imported as Python; pass a .py file to -f")
    module = importlib.util.module_from_spec(spec)
    directory = str(resolved.parent)
    if directory not in sys.path:
        sys.path.insert(0, directory)
    # Registered before running, so dataclasses, pickling and typing find the module.
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:
        sys.modules.pop(module_name, None)
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise _import_failure(exc, str(path), resolved) from exc
    return module


def _module_name_for(path: Path) -> str:
    """The file's stem, unless that would shadow a module already imported (``json.py``)."""
    stem = path.stem if path.stem.isidentifier() else "pipeline_file"
    existing = sys.modules.get(stem)
    if existing is None or getattr(existing, "__file__", None) == str(path):
        return stem
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:8]
    return f"_asyncdag_file_{stem}_{digest}"


def _import_module(name: str) -> ModuleType:
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
            raise LoadError(
                f"no module named {name!r}; check the name given to -m and that it is "
                "importable from the current directory or PYTHONPATH"
            ) from exc
        raise _import_failure(exc, name, None) from exc
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        raise _import_failure(exc, name, None) from exc


def _import_failure(exc: BaseException, source: str, path: Path | None) -> LoadError:
    if isinstance(exc, SyntaxError):
        where = exc.filename or source
        line = f":{exc.lineno}" if exc.lineno else ""
        return LoadError(f"{where}{line}: syntax error: {exc.msg}")
    where = source
    frames = traceback.extract_tb(exc.__traceback__)
    in_source = [f for f in frames if path is not None and Path(f.filename) == path]
    frame = in_source[-1] if in_source else (frames[-1] if frames else None)
    if frame is not None and frame.lineno is not None and not _is_import_machinery(frame):
        where = f"{_short(frame.filename)}:{frame.lineno}"
    if isinstance(exc, AsyncdagError):
        return LoadError(f"{where}: {exc}")
    if isinstance(exc, SystemExit):
        return LoadError(
            f"{where}: the {'file' if path is not None else 'module'} called "
            f"sys.exit({exc.code!r}) while being imported; keep "
            'script code under `if __name__ == "__main__":` so loading the pipelines runs none'
        )
    kind = "import error" if isinstance(exc, ImportError) else type(exc).__name__
    message = str(exc) or type(exc).__name__
    return LoadError(f"{where}: loading {source} failed with {kind}: {message}")


def _is_import_machinery(frame: traceback.FrameSummary) -> bool:
    return frame.filename.startswith("<frozen importlib")


def _short(filename: str) -> str:
    try:
        return os.path.relpath(filename)
    except ValueError:  # another drive on Windows
        return filename


def _collect(
    module: ModuleType,
    source: str,
    found: dict[str, PipelineDefinition],
    origin: dict[str, str],
) -> None:
    for value in list(vars(module).values()):
        if not isinstance(value, PipelineDefinition):
            continue
        previous = found.get(value.name)
        if previous is value:
            continue
        if previous is not None and origin[value.name] != source:
            raise LoadError(
                f"two pipelines are named {value.name!r} (in {origin[value.name]} and "
                f"{source}); give one of them another name with @pipeline(name=...)"
            )
        if previous is not None:
            # Same file, same name, different objects: a re-decorated pipeline; keep the last.
            pass
        found[value.name] = value
        origin[value.name] = source


def _collect_automation(
    module: ModuleType,
    source: str,
    found: dict[str, ScheduleDefinition | SensorDefinition],
    origin: dict[str, str],
) -> None:
    for value in list(vars(module).values()):
        if not isinstance(value, ScheduleDefinition | SensorDefinition):
            continue
        previous = found.get(value.name)
        if previous is not None and previous is not value:
            where = origin.get(f"automation:{value.name}", source)
            raise LoadError(
                f"two schedules or sensors are named {value.name!r} (in {where} and {source}); "
                "names are unique across schedules and sensors: pass name=... to one of them"
            )
        found[value.name] = value
        origin[f"automation:{value.name}"] = source
