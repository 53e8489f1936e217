"""Pieces several CLI commands share: ``-c/--backend``, consoles, storage, run id prefixes.

``-f/-m/-p`` and loading pipelines are shared with the web UI's command, so they
live below both, in :mod:`asyncdag._workspace`.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from asyncdag._workspace import UsageError

if TYPE_CHECKING:
    from rich.console import Console

    from asyncdag.outputs import FilesystemOutputStore
    from asyncdag.storage import RunRecord, RunStorage

__all__ = [
    "add_backend_argument",
    "add_output_store_arguments",
    "add_run_arguments",
    "add_storage_argument",
    "call",
    "make_console",
    "open_output_store",
    "open_storage",
    "output_store_from",
    "resolve_run_id",
    "where",
]

T = TypeVar("T")


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
    add_backend_argument(parser)


def add_backend_argument(parser: argparse.ArgumentParser) -> None:
    """``--backend``: the event loop, for every command that runs one (pipelines, the scheduler)."""
    parser.add_argument(
        "--backend",
        choices=("asyncio", "trio"),
        default="asyncio",
        help="the event loop to run on (default: asyncio)",
    )


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


def add_output_store_arguments(parser: argparse.ArgumentParser, *, what: str = "the run") -> None:
    """``--output-store URL`` / ``--no-output-store``: where ``what`` stores step outputs."""
    outputs = parser.add_argument_group(
        "stored outputs", f"every step's outputs of {what} are stored, so it can be re-executed"
    )
    outputs.add_argument(
        "--output-store",
        metavar="URL",
        help="where: a directory or an fsspec URL such as s3://bucket/path (default: "
        "$ASYNCDAG_OUTPUT_STORE, else $ASYNCDAG_HOME/outputs)",
    )
    outputs.add_argument(
        "--no-output-store",
        action="store_true",
        help="do not store outputs (a run then cannot be re-executed from its failure)",
    )


def output_store_from(args: argparse.Namespace) -> FilesystemOutputStore | None:
    """The output store ``add_output_store_arguments`` asked for (None: none)."""
    if args.no_output_store:
        return None
    from asyncdag.outputs import FilesystemOutputStore

    return FilesystemOutputStore(args.output_store)


def open_output_store() -> FilesystemOutputStore:
    """The output store the CLI and UI share (``$ASYNCDAG_OUTPUT_STORE``, else beside the history)."""
    from asyncdag.outputs import FilesystemOutputStore

    return FilesystemOutputStore()


def where(storage: RunStorage) -> str:
    """How messages name a run history: its file, else what the storage says it is."""
    return str(getattr(storage, "path", storage))


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
