"""``asyncdag pipeline execute``: run one pipeline, show it live, record it, exit with its fate.

Exit codes: 0 success, 1 the run failed, 130 canceled (Ctrl-C), 2 bad input
(raised as AsyncdagError before anything runs, reported by ``main``, unusable run
storage included), 3 the run ended (its outcome is printed) but the run history
could not store all of it (one line on stderr says what and why).
"""

from __future__ import annotations

import argparse
import functools
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from ._app import EXIT_CANCELED, EXIT_FAILURE, EXIT_OK, EXIT_STORAGE
from ._common import (
    UsageError,
    add_run_arguments,
    add_source_arguments,
    make_console,
    open_storage,
    selected_pipeline,
)

if TYPE_CHECKING:
    from rich.console import Console

    from asyncdag._api import PipelineRunResult
    from asyncdag._definitions import PipelineDefinition
    from asyncdag._events import Event
    from asyncdag.storage import StorageError

__all__ = ["register"]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "execute",
        help="run a pipeline and record it in the run history",
        description=(
            "Run a pipeline, showing progress and logs, and record it with every event in the "
            "run history ($ASYNCDAG_HOME/asyncdag.db). Ctrl-C cancels the run; a second Ctrl-C "
            "exits at once. Exit code: 0 success, 1 failed, 130 canceled, 2 bad input (or unusable "
            "run storage), 3 the run ended but its history could not be stored in full."
        ),
    )
    add_source_arguments(parser)
    add_run_arguments(parser)
    parser.add_argument(
        "--max-concurrency", type=_positive_int, metavar="N", help="run at most N steps at once"
    )
    parser.add_argument(
        "--tag",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="tag the run (repeatable)",
    )
    parser.add_argument(
        "--fail-fast", action="store_true", help="stop the whole run at the first failed step"
    )
    parser.add_argument(
        "--no-storage", action="store_true", help="do not record this run in the run history"
    )
    tracing = parser.add_argument_group(
        "tracing", "export OpenTelemetry spans (else OTEL_* variables decide)"
    )
    tracing.add_argument("--otlp-endpoint", metavar="URL", help="OTLP collector, e.g. Jaeger")
    tracing.add_argument("--trace-file", metavar="PATH", help="append spans as JSON lines")
    tracing.add_argument("--jaeger-json", metavar="PATH", help="write a Jaeger UI JSON trace")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("-q", "--quiet", action="store_true", help="log lines only")
    output.add_argument(
        "--json", action="store_true", help="print every event as a JSON line on stdout"
    )
    parser.set_defaults(handler=execute_command)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _config_source(path: str) -> str:
    """A path load_run_config will open; the text itself for a pipe such as ``-c <(...)``."""
    if os.path.isfile(path):
        return os.path.abspath(path) if "\n" not in path else path
    with open(path, encoding="utf-8") as stream:
        return stream.read()


def parse_tags(pairs: list[str]) -> dict[str, str]:
    tags: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--tag {pair!r} is not KEY=VALUE; write it as --tag team=data")
        tags[key.strip()] = value
    return tags


@attrs.frozen(kw_only=True)
class _Options:
    max_concurrency: int | None
    tags: dict[str, str]
    fail_fast: bool
    backend: str


def execute_command(args: argparse.Namespace) -> int:
    """Load, check, configure, run, report: each step can stop with one clear line."""
    from asyncdag.config import load_run_config, resolve_run_config

    pipeline = selected_pipeline(args)
    for path in args.config:
        if not os.path.exists(path):
            raise UsageError(f"run config file {path} not found; check the path given to -c")
    run_config = load_run_config(*map(_config_source, args.config)) if args.config else None
    resolve_run_config(pipeline, run_config)  # every config error now, before tracing or storage
    options = _Options(
        max_concurrency=args.max_concurrency,
        tags=parse_tags(args.tag),
        fail_fast=args.fail_fast,
        backend=args.backend,
    )
    telemetry = _configure_tracing(args)
    storage = None if args.no_storage else open_storage()
    try:
        view = _make_view(args, pipeline)
        outcome: tuple[PipelineRunResult, StorageError | None] = view.run(
            functools.partial(_run, pipeline, run_config, options, storage, view)
        )
    finally:
        if storage is not None:
            storage.close()  # type: ignore[attr-defined]
        if telemetry is not None:
            telemetry.shutdown()
    result, history_error = outcome
    view.summarize(result, recorded_in=None if storage is None else str(storage.path))  # type: ignore[attr-defined]
    if history_error is not None:
        # The run happened (its outcome is above); its history is incomplete: say so once.
        print(f"asyncdag: error: {history_error}", file=sys.stderr)
        return EXIT_STORAGE
    return _exit_code(result)


def _exit_code(result: PipelineRunResult) -> int:
    from asyncdag._events import RunStatus

    return {RunStatus.SUCCESS: EXIT_OK, RunStatus.CANCELED: EXIT_CANCELED}.get(
        result.status, EXIT_FAILURE
    )


def _configure_tracing(args: argparse.Namespace) -> Any:
    from asyncdag import telemetry

    if args.otlp_endpoint or args.trace_file or args.jaeger_json:
        telemetry.configure(
            otlp_endpoint=args.otlp_endpoint,
            trace_file=args.trace_file,
            jaeger_json=args.jaeger_json,
        )
        return telemetry
    return telemetry if telemetry.configure_from_env() is not None else None


# -- the run itself ------------------------------------------------------------------------


async def _run(
    pipeline: PipelineDefinition,
    run_config: dict[str, Any] | None,
    options: _Options,
    storage: Any,
    view: _View,
) -> tuple[PipelineRunResult, StorageError | None]:
    """The run's result, and what kept its history from being stored in full (if anything)."""
    import anyio

    from asyncdag._api import open_run
    from asyncdag.storage import StorageError

    result = history_error = None
    # The receiver is in place before the first event, so a Ctrl-C the moment a step
    # starts is a cancel, never a KeyboardInterrupt tearing through the engine.
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        try:
            async with (
                open_run(
                    pipeline,
                    run_config,
                    max_concurrency=options.max_concurrency,
                    tags=options.tags,
                    fail_fast=options.fail_fast,
                    storage=storage,
                    listeners=[view.on_event],
                ) as handle,
                anyio.create_task_group() as tg,
            ):
                tg.start_soon(_cancel_on_signals, signals, handle, view)
                result = await handle.result()
                tg.cancel_scope.cancel()
        except* StorageError as group:
            history_error = _first_leaf(group)
    if result is None:
        # The history could not even record the run's start: nothing ran.  One line, exit 2.
        assert history_error is not None
        raise history_error
    return result, history_error


def _first_leaf(group: BaseExceptionGroup[Any]) -> Any:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first


async def _cancel_on_signals(signals: Any, handle: Any, view: _View) -> None:
    first = True
    async for signum in signals:
        if first:
            first = False
            view.note(f"{signal.Signals(signum).name}: canceling the run (again to exit at once)")
            handle.cancel()
            continue
        # The user insists: leave now.  The run stays STARTED in storage until the next
        # command opens it and marks it FAILED, its process being gone.
        view.note(f"{signal.Signals(signum).name} again: exiting without waiting")
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_CANCELED)


# -- output modes ----------------------------------------------------------------------------


class _View:
    """How this run is shown; the base class is plain text (a pipe, a file, --quiet)."""

    def __init__(self, console: Console, *, summary: bool) -> None:
        from ._display import install_log_handler

        self.console = console
        self.show_summary = summary
        install_log_handler(console)

    def run(self, fn: Callable[[], Any]) -> Any:
        import anyio

        return anyio.run(fn, backend=self.backend)

    backend = "asyncio"

    def on_event(self, event: Event) -> None:
        pass

    def note(self, text: str) -> None:
        self.console.print(text, style="yellow", markup=False)

    def summarize(self, result: PipelineRunResult, *, recorded_in: str | None) -> None:
        if not self.show_summary:
            return
        from ._display import STATUS_STYLES, format_duration
        from ._steps import print_steps, step_rows

        console = self.console
        console.print()
        rows = step_rows(result.events, run_finished=True)
        see_all = (
            f"asyncdag run show {result.run_id[:8]} --json"
            if recorded_in
            else "--json prints every event"
        )
        print_steps(console, rows, see_all=see_all)
        console.print()
        status = result.status.value
        duration = format_duration(result.end_time - result.start_time)
        console.print(
            f"Run [bold]{result.run_id}[/] of [bold]{result.pipeline_name}[/]: "
            f"[{STATUS_STYLES.get(status, '')}]{status}[/] in {duration}"
        )
        where = (
            f"recorded in {recorded_in}; see it with: asyncdag run show {result.run_id[:8]}"
            if recorded_in
            else "not recorded (--no-storage)"
        )
        console.print(where, style="dim", markup=False)
        if result.trace_id:
            console.print(f"trace id {result.trace_id}", style="dim", markup=False)


class _LiveView(_View):
    """A terminal: log lines scrolling above a live progress line."""

    def __init__(self, console: Console, pipeline: PipelineDefinition) -> None:
        from ._display import RunProgress

        super().__init__(console, summary=True)
        self.progress = RunProgress(pipeline.name, len(pipeline.nodes))

    def run(self, fn: Callable[[], Any]) -> Any:
        from rich.live import Live

        with Live(
            self.progress,
            console=self.console,
            refresh_per_second=8,
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
        ):
            return super().run(fn)

    def on_event(self, event: Event) -> None:
        self.progress.on_event(event)

    def note(self, text: str) -> None:
        self.progress.note(text)


class _JsonView(_View):
    """``--json``: one event per line on stdout, flushed at once so a script can react to it.

    Strict JSON any reader takes: NaN and infinities as strings, text ASCII-escaped.
    """

    def __init__(self) -> None:
        from asyncdag.storage._codec import dumps

        from ._display import silence_logs

        self._dumps = dumps

        silence_logs()
        self._lock = threading.Lock()
        self._out = sys.stdout

    def on_event(self, event: Event) -> None:
        line = self._dumps(event.to_dict(), strict=True)
        with self._lock:
            self._out.write(line + "\n")
            self._out.flush()

    def note(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    def summarize(self, result: PipelineRunResult, *, recorded_in: str | None) -> None:
        pass


def _make_view(args: argparse.Namespace, pipeline: PipelineDefinition) -> _View:
    view: _View
    if args.json:
        view = _JsonView()
    elif args.quiet:
        view = _View(make_console(), summary=False)
    elif sys.stdout.isatty():
        view = _LiveView(make_console(), pipeline)
    else:
        view = _View(make_console(), summary=True)
    view.backend = args.backend
    return view
