"""Argument parsing and dispatch: the one place that turns errors into exit codes.

Adding a command from another module
------------------------------------
A command module exposes ``register(subparsers)``: it calls
``subparsers.add_parser(name, help=...)``, adds its arguments (use
:func:`asyncdag._workspace.add_source_arguments` for ``-f/-m/-p``) and sets
``handler=`` to a function ``(argparse.Namespace) -> int`` returning the exit
code.  Keep ``register`` light (argparse only) and import heavy things inside
the handler, so ``asyncdag --help`` stays quick.  A handler raises
:class:`~asyncdag.AsyncdagError` for bad input: :func:`main` prints its message
as one line on stderr and exits 2 (``--verbose`` shows the traceback).

Built-in commands are listed in ``_BUILTIN``.  Commands owned by other parts of
the package are *slots* in ``_SLOTS``: their module is imported only when that
command is the one being run, and a missing module is reported as such.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from asyncdag._errors import AsyncdagError
from asyncdag._workspace import find_error

__all__ = [
    "EXIT_CANCELED",
    "EXIT_FAILURE",
    "EXIT_OK",
    "EXIT_STORAGE",
    "EXIT_USAGE",
    "build_parser",
    "find_error",
    "main",
    "warn",
]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
#: The run ended (its outcome printed) but the run history could not store all of it.
EXIT_STORAGE = 3
EXIT_CANCELED = 130

Register = Callable[[Any], None]

# (group, module): group None is top level, else the name of a command group.
_BUILTIN: tuple[tuple[str | None, str], ...] = (
    ("pipeline", "asyncdag.cli._execute"),
    ("pipeline", "asyncdag.cli._pipelines"),
    ("run", "asyncdag.cli._runs"),
    ("scheduler", "asyncdag.cli._scheduler"),
    ("schedule", "asyncdag.cli._schedules"),
    ("sensor", "asyncdag.cli._sensors"),
)

# Commands other engineers own: (group, command name) -> (module, help shown meanwhile).
_SLOTS: dict[tuple[str | None, str], tuple[str, str]] = {
    ("pipeline", "bench"): (
        "asyncdag.cli._bench",
        "run a pipeline at several concurrency bounds and report where time goes",
    ),
    (None, "ui"): ("asyncdag.ui._command", "serve the web UI (graph, config playground, runs)"),
}

_GROUPS = {
    "pipeline": "load, inspect and execute pipelines",
    "run": "browse and delete recorded runs",
    "scheduler": "run schedules and sensors until stopped",
    "schedule": "list, start, stop and preview schedules",
    "sensor": "list, start and stop sensors",
}


def _verbose_parent() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show tracebacks for errors",
    )
    return parent


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The full parser; ``argv`` only decides which slot modules are imported."""
    verbose = _verbose_parent()
    parser = argparse.ArgumentParser(
        prog="asyncdag",
        description="Run asyncdag pipelines and browse their run history.",
        parents=[verbose],
    )
    parser.set_defaults(verbose=False, handler=None)
    top = parser.add_subparsers(dest="command", metavar="COMMAND")
    groups: dict[str | None, Any] = {None: top}
    group_parsers: dict[str, argparse.ArgumentParser] = {}
    for name, help_text in _GROUPS.items():
        group = top.add_parser(name, help=help_text, description=help_text, parents=[verbose])
        group.set_defaults(handler=None, group_parser=group)
        groups[name] = group.add_subparsers(dest=f"{name}_command", metavar="COMMAND")
        group_parsers[name] = group
    for group_name, module in _BUILTIN:
        _register(importlib.import_module(module), groups[group_name], verbose)
    wanted = _command_path(argv)
    for (group_name, command), (module, help_text) in _SLOTS.items():
        path = (command,) if group_name is None else (group_name, command)
        if wanted[: len(path)] == path:
            loaded = _import_slot(module)
            if loaded is not None:
                _register(loaded, groups[group_name], verbose)
                continue
        _add_placeholder(groups[group_name], command, module, help_text, path)
    return parser


class _Subcommands:
    """What ``register`` receives: argparse's subparsers, each new parser taking ``--verbose``."""

    def __init__(self, action: Any, verbose: argparse.ArgumentParser) -> None:
        self._action = action
        self._verbose = verbose

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        kwargs["parents"] = [*kwargs.get("parents", ()), self._verbose]
        parser: argparse.ArgumentParser = self._action.add_parser(name, **kwargs)
        return parser


def _register(module: Any, subparsers: Any, verbose: argparse.ArgumentParser) -> None:
    module.register(_Subcommands(subparsers, verbose))


def _import_slot(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module.startswith(exc.name):
            return None
        raise AsyncdagError(
            f"{module} needs the module {exc.name!r}, which is not installed; install it "
            "(for the web UI: pip install 'asyncdag[ui]')"
        ) from exc


def _command_path(argv: Sequence[str]) -> tuple[str, ...]:
    words = [a for a in argv if not a.startswith("-")]
    return tuple(words[:2])


def _add_placeholder(
    subparsers: Any, command: str, module: str, help_text: str, path: tuple[str, ...]
) -> None:
    # No option prefix: every word after the command, "-f" included, is taken as is, so the
    # user hears that the command is missing rather than that its options are unknown.
    placeholder = subparsers.add_parser(command, help=help_text, add_help=False, prefix_chars="\0")
    placeholder.add_argument("rest", nargs="*", help=argparse.SUPPRESS)

    def missing(args: argparse.Namespace) -> int:
        raise AsyncdagError(
            f"`asyncdag {' '.join(path)}` is not available in this install: its module "
            f"{module} is missing (install asyncdag with the extra it needs, or upgrade)"
        )

    placeholder.set_defaults(handler=missing)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code.

    0 ok, 1 run failed, 2 bad input, 3 the run ended but the run history could not store all
    of it, 130 or 143 stopped by SIGINT or SIGTERM.  A reader of
    stdout that leaves early (``| head``) changes nothing: see :mod:`._streams`.
    """
    from ._streams import guarded_stdio

    with guarded_stdio():
        return _main(list(sys.argv[1:] if argv is None else argv))


def _main(args_list: list[str]) -> int:
    verbose = "-v" in args_list or "--verbose" in args_list
    _printable_streams()
    try:
        parser = build_parser(args_list)
        args = parser.parse_args(args_list)
        verbose = bool(getattr(args, "verbose", False))
        handler = args.handler
        if handler is None:
            group_parser = getattr(args, "group_parser", parser)
            group_parser.print_help(sys.stderr)
            return EXIT_USAGE
        return int(handler(args))
    except KeyboardInterrupt:
        print("asyncdag: interrupted", file=sys.stderr)
        return EXIT_CANCELED
    except AsyncdagError as exc:
        _report(exc, verbose=verbose)
        return EXIT_USAGE
    except BrokenPipeError:
        # `asyncdag run list | head`: the reader left; nothing more to say.
        sys.stderr.close()
        return EXIT_OK
    except Exception as exc:
        # An error from inside a task group arrives wrapped; the one it wraps is the news.
        error = find_error(exc, AsyncdagError)
        if error is not None:
            _report(error, verbose=verbose)
            return EXIT_USAGE
        _report(exc, verbose=verbose, unexpected=True)
        return EXIT_FAILURE


def _printable_streams() -> None:
    """Print any text: a lone surrogate in a log line (a non-UTF-8 file name) comes out as
    ``\\udce9`` instead of a UnicodeEncodeError in the middle of a run."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            with contextlib.suppress(ValueError, OSError):  # a closed or odd stream: as it is
                reconfigure(errors="backslashreplace")


def warn(message: str) -> None:
    """Something the user should know that does not change the exit code, as one line."""
    print(f"asyncdag: warning: {message}", file=sys.stderr)


def _report(exc: BaseException, *, verbose: bool, unexpected: bool = False) -> None:
    if verbose:
        traceback.print_exception(exc, file=sys.stderr)
    message = str(exc) or type(exc).__name__
    if unexpected:
        message = f"unexpected {type(exc).__name__}: {message}"
    hint = "" if verbose else " (run with --verbose for the traceback)"
    lines = message.splitlines() or [message]
    lines[0] += hint if unexpected else ""
    print(f"asyncdag: error: {lines[0]}", file=sys.stderr)
    for line in lines[1:]:
        print(line, file=sys.stderr)
