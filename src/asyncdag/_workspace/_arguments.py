"""``-f FILE`` / ``-m MODULE`` / ``-p NAME``: how every command (CLI and ``asyncdag ui``) is
told where its pipelines are, and the one error for a command line that is wrong."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from asyncdag._errors import AsyncdagError

if TYPE_CHECKING:
    from asyncdag._definitions import PipelineDefinition

    from ._loader import Workspace

__all__ = [
    "UsageError",
    "add_source_arguments",
    "loaded_pipelines",
    "loaded_workspace",
    "selected_pipeline",
    "selected_pipeline_with_origin",
]


class UsageError(AsyncdagError):
    """The command line itself is wrong (a malformed --tag, an ambiguous run id)."""


def add_source_arguments(parser: argparse.ArgumentParser, *, require_name: bool = False) -> None:
    """``-f FILE`` / ``-m MODULE`` (repeatable, at least one) and ``-p NAME``."""
    source = parser.add_argument_group("pipeline source")
    source.add_argument(
        "-f",
        "--python-file",
        dest="files",
        action="append",
        default=[],
        metavar="FILE",
        help="a Python file defining pipelines (repeatable)",
    )
    source.add_argument(
        "-m",
        "--module-name",
        dest="modules",
        action="append",
        default=[],
        metavar="MODULE",
        help="an importable module defining pipelines (repeatable)",
    )
    source.add_argument(
        "-p",
        "--pipeline",
        dest="pipeline",
        required=require_name,
        metavar="NAME",
        help="which pipeline, when the source defines several",
    )


def loaded_pipelines(args: argparse.Namespace) -> dict[str, PipelineDefinition]:
    from ._loader import load_pipelines

    if not args.files and not args.modules:
        raise UsageError("say where the pipeline is: -f FILE or -m MODULE")
    return load_pipelines(files=args.files, modules=args.modules)


def loaded_workspace(args: argparse.Namespace) -> Workspace:
    """The pipelines, schedules and sensors ``-f/-m`` point at."""
    from ._loader import load_workspace

    if not args.files and not args.modules:
        raise UsageError("say where the definitions are: -f FILE or -m MODULE")
    return load_workspace(files=args.files, modules=args.modules)


def selected_pipeline(args: argparse.Namespace) -> PipelineDefinition:
    """The pipeline ``-f/-m`` and ``-p`` point at, or :class:`~asyncdag._workspace.LoadError`."""
    from ._loader import select_pipeline

    return select_pipeline(loaded_pipelines(args), args.pipeline)


def selected_pipeline_with_origin(
    args: argparse.Namespace, *, name: str | None = None
) -> tuple[PipelineDefinition, dict[str, str] | None]:
    """The pipeline ``-f/-m`` and ``-p`` (or ``name``) point at, and where it was loaded from,
    for the run to record (so ``asyncdag run reexecute`` finds it again without ``-f``)."""
    from ._loader import select_pipeline

    workspace = loaded_workspace(args)
    pipeline = select_pipeline(workspace.pipelines, name if name is not None else args.pipeline)
    return pipeline, workspace.origins.get(pipeline.name)
