"""Pieces several commands share: ``-f/-m/-p``, consoles, storage, run id prefixes.

A command module added later (``pipeline bench``, ``ui``) uses these so that it
reads its pipeline source and reports problems exactly as the others do.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from asyncdag._errors import AsyncdagError

if TYPE_CHECKING:
    from rich.console import Console

    from asyncdag._definitions import PipelineDefinition
    from asyncdag.storage import RunRecord, RunStorage

__all__ = [
    "UsageError",
    "add_source_arguments",
    "add_storage_argument",
    "call",
    "make_console",
    "open_storage",
    "resolve_run_id",
    "selected_pipeline",
]

T = TypeVar("T")


class UsageError(AsyncdagError):
    """The command line itself is wrong (a malformed --tag, an ambiguous run id)."""


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """``-c YAML`` (repeatable) and ``--backend``: what every command that runs a pipeline takes."""
    parser.add_argument(
        "-c",
        "--config",
        action="append",
        default=[],
        metavar="YAML",
        help="run config file (repeatable; later files override earlier ones key by key)",
    )
    parser.add_argument(
        "--backend",
        choices=("asyncio", "trio"),
        default="asyncio",
        help="the event loop to run on (default: asyncio)",
    )


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
    from asyncdag._workspace import load_pipelines

    if not args.files and not args.modules:
        raise UsageError("say where the pipeline is: -f FILE or -m MODULE")
    return load_pipelines(files=args.files, modules=args.modules)


def selected_pipeline(args: argparse.Namespace) -> PipelineDefinition:
    """The pipeline ``-f/-m`` and ``-p`` point at, or :class:`~asyncdag._workspace.LoadError`."""
    from asyncdag._workspace import select_pipeline

    return select_pipeline(loaded_pipelines(args), args.pipeline)


def make_console(*, stderr: bool = False, force_plain: bool = False) -> Console:
    """A rich console: colour and live updates on a terminal, plain text in a pipe or file."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    if force_plain or not stream.isatty():
        return Console(
            file=stream,
            color_system=None,
            force_terminal=False,
            highlight=False,
            soft_wrap=True,
            width=_env_width() or 120,
        )
    return Console(file=stream, highlight=False)


def _env_width() -> int:
    try:
        return int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        return 0


def add_storage_argument(parser: argparse.ArgumentParser) -> None:
    """``--storage URL``: which run history a command reads or writes."""
    parser.add_argument(
        "--storage",
        metavar="URL",
        default=None,
        help="run history: postgresql://user@host/db, sqlite:///path/file.db, a file path or "
        "memory:// (default: $ASYNCDAG_STORAGE_URL, else $ASYNCDAG_HOME/asyncdag.db)",
    )


def open_storage(url: str | None = None) -> RunStorage:
    """The run history ``url`` names (else ``$ASYNCDAG_STORAGE_URL``, else the shared SQLite file).

    Opened now, so a bad path or an unreachable server fails here, naming it.
    """
    from asyncdag.storage import open_storage as storage_for_url

    storage = storage_for_url(url)
    storage.open()
    return storage


def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """One storage coroutine from sync code (the run commands need no long-lived loop)."""
    import anyio

    return anyio.run(functools.partial(fn, *args, **kwargs))


def resolve_run_id(storage: RunStorage, given: str) -> RunRecord:
    """The run whose id is ``given`` or starts with it; ambiguity and absence are errors."""
    record = call(storage.get_run, given)
    if record is not None:
        return record  # type: ignore[no-any-return]
    matches: Sequence[RunRecord] = [
        r for r in call(storage.list_runs) if r.run_id.startswith(given)
    ]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise UsageError(
            f"no run with id {given!r} (or starting with it); `asyncdag run list` shows the runs"
        )
    shown = ", ".join(r.run_id for r in matches[:5])
    more = f" and {len(matches) - 5} more" if len(matches) > 5 else ""
    raise UsageError(
        f"run id prefix {given!r} matches {len(matches)} runs ({shown}{more}); give more of the id"
    )
