"""``asyncdag pipeline execute`` and ``asyncdag run reexecute``: run a pipeline (or re-execute a
recorded run), show it live, record it, exit with its fate.

Both store every step's outputs (``$ASYNCDAG_HOME/outputs`` unless told otherwise), so a
failed run can be re-executed from its failure.  Exit codes: 0 success, 1 the run
failed, 2 bad input (raised as AsyncdagError before anything runs, reported by
``main``; a run history that cannot record the run's start included), 3 the run
ended (its outcome printed) but the run history could not store all of it (one
line says what and why), 130/143 canceled by SIGINT/SIGTERM (see :mod:`._ending`).
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from asyncdag._workspace import UsageError, add_source_arguments, selected_pipeline_with_origin
from asyncdag._workspace._stop import STOP_SIGNALS, add_grace_period_argument, stop_on_signals

from ._app import EXIT_STORAGE, find_error
from ._common import add_run_arguments, add_storage_argument, make_console, open_storage, where
from ._ending import RunEnding

if TYPE_CHECKING:
    from rich.console import Console
    from rich.live import Live

    from asyncdag._api import PipelineRunResult
    from asyncdag._definitions import PipelineDefinition
    from asyncdag._events import Event

__all__ = ["add_execution_arguments", "reexecute_command", "register"]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "execute",
        help="run a pipeline and record it in the run history",
        description=(
            "Run a pipeline, showing progress and logs, and record it with every event in the "
            "run history (--storage, else $ASYNCDAG_STORAGE_URL, else $ASYNCDAG_HOME/asyncdag.db). "
            "Ctrl-C or SIGTERM cancels the run; a "
            "second signal, or the run still going after --grace-period, exits at once with "
            "the run recorded CANCELED. Exit code: 0 success, 1 failed, 2 bad input, "
            "3 the run ended but the run history could not store all of it, "
            "130 canceled by Ctrl-C (SIGINT), 143 canceled by SIGTERM. A reader of the output "
            "that leaves early (| head) does not stop the run or change its exit code."
        ),
    )
    add_source_arguments(parser)
    add_run_arguments(parser)
    add_execution_arguments(parser)
    parser.add_argument(
        "--steps",
        metavar="SELECTION",
        help="run only these solids, in Dagster's syntax (comma-separated: 'fetch*,+report'); "
        "inputs from other solids come from run config (solids.NAME.inputs)",
    )
    parser.add_argument(
        "--no-storage",
        action="store_true",
        help="do not record this run in the run history (nor store its outputs)",
    )
    parser.set_defaults(handler=execute_command)


def add_execution_arguments(parser: argparse.ArgumentParser, *, tags_help: str = "") -> None:
    """What every command that runs a pipeline here takes: bounds, tags, outputs, tracing, views."""
    parser.add_argument(
        "--max-concurrency", type=_positive_int, metavar="N", help="run at most N steps at once"
    )
    parser.add_argument(
        "--tag",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"tag the run (repeatable){tags_help}",
    )
    parser.add_argument(
        "--fail-fast", action="store_true", help="stop the whole run at the first failed step"
    )
    outputs = parser.add_argument_group(
        "stored outputs", "every step's outputs are stored, so the run can be re-executed"
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
        help="do not store outputs (the run then cannot be re-executed from its failure)",
    )
    add_storage_argument(parser)
    add_grace_period_argument(parser, what="a canceled run")
    where = parser.add_argument_group(
        "where steps run",
        "in this process (default), or on a Dask cluster (pip install 'asyncdag[dask]')",
    )
    where.add_argument(
        "--executor",
        choices=("in_process", "dask"),
        help="in_process, or dask: a local Dask cluster for the run, or the one --dask-address "
        "names (default: what the run config's execution section says, else in_process)",
    )
    where.add_argument(
        "--dask-address",
        metavar="URL",
        help="a running Dask scheduler, e.g. tcp://scheduler:8786 (with --executor dask)",
    )
    tracing = parser.add_argument_group(
        "tracing", "export OpenTelemetry spans (else OTEL_* variables decide)"
    )
    tracing.add_argument("--otlp-endpoint", metavar="URL", help="OTLP collector, e.g. Jaeger")
    tracing.add_argument("--trace-file", metavar="PATH", help="append spans as JSON lines")
    tracing.add_argument(
        "--jaeger-json",
        metavar="PATH",
        help="add the trace to a Jaeger UI JSON file (its other traces are kept)",
    )
    output = parser.add_mutually_exclusive_group()
    output.add_argument("-q", "--quiet", action="store_true", help="log lines only")
    output.add_argument(
        "--json", action="store_true", help="print every event as a JSON line on stdout"
    )


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
    where = f"run config file {path}"
    if not os.path.exists(path):
        raise UsageError(f"{where} not found; check the path given to -c")
    if os.path.isdir(path):
        raise UsageError(f"{where} is a directory; give -c a YAML file")
    if os.path.isfile(path):
        return os.path.abspath(path) if "\n" not in path else path
    try:
        with open(path, encoding="utf-8") as stream:
            return stream.read()
    except UnicodeDecodeError as exc:
        raise UsageError(f"{where} is not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except OSError as exc:
        raise UsageError(f"cannot read {where}: {exc.strerror or exc}") from exc


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
    tags: dict[str, str] | None
    fail_fast: bool
    backend: str
    origin: dict[str, str] | None = None
    output_store: Any = None
    reexecute_from: str | None = None
    from_failure: bool = False
    step_selection: tuple[str, ...] | None = None
    executor: Any = None


def _load_config(args: argparse.Namespace) -> dict[str, Any] | None:
    from asyncdag.config import load_run_config

    sources = [_config_source(path) for path in args.config]
    return load_run_config(*sources) if sources else None


def _selection(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    clauses = tuple(part.strip() for part in text.split(",") if part.strip())
    if not clauses:
        raise UsageError("--steps is empty; name solids, e.g. --steps 'fetch*,+report'")
    return clauses


def _output_store(args: argparse.Namespace) -> Any:
    if args.no_output_store:
        return None
    from asyncdag.outputs import FilesystemOutputStore

    return FilesystemOutputStore(args.output_store)


def execute_command(args: argparse.Namespace) -> int:
    """Load, check, configure, run, report: each step can stop with one clear line."""
    from asyncdag.config import resolve_run_config

    pipeline, origin = selected_pipeline_with_origin(args)
    run_config = _load_config(args)
    steps = _selection(args.steps)
    # Every config error now, before tracing or storage (a selection's is checked with it).
    resolved = resolve_run_config(pipeline, run_config) if steps is None else None
    options = _Options(
        max_concurrency=args.max_concurrency,
        tags=parse_tags(args.tag),
        fail_fast=args.fail_fast,
        backend=args.backend,
        origin=origin,
        output_store=None if args.no_storage else _output_store(args),
        step_selection=steps,
        executor=_executor(args, resolved.execution.dask if resolved is not None else None),
    )
    return _execute(
        args,
        pipeline,
        run_config,
        options,
        storage=None if args.no_storage else open_storage(args.storage),
    )


def reexecute_command(args: argparse.Namespace) -> int:
    """``asyncdag run reexecute RUN_ID``: the recorded run's pipeline, from where it was loaded
    (or ``-f/-m``), run again from its failure or for chosen steps, reusing the rest."""
    from ._common import call, resolve_run_id

    storage: Any = open_storage(args.storage)
    try:
        record = resolve_run_id(storage, args.run_id)
        starts = call(storage.get_events, record.run_id, types=[_RUN_START], limit=1)
    except BaseException:
        storage.close()
        raise
    origin = (starts[0].data or {}).get("origin") if starts else None
    try:
        pipeline, origin = _pipeline_of(args, record, origin)
        run_config = _load_config(args)
        options = _Options(
            max_concurrency=args.max_concurrency,
            tags=parse_tags(args.tag) if args.tag else None,
            fail_fast=args.fail_fast,
            backend=args.backend,
            origin=origin,
            output_store=_output_store(args),
            reexecute_from=record.run_id,
            from_failure=args.from_failure,
            step_selection=_selection(args.steps),
        )
    except BaseException:
        storage.close()
        raise
    return _execute(args, pipeline, run_config, options, storage=storage)


_RUN_START = "RUN_START"


def _pipeline_of(
    args: argparse.Namespace, record: Any, origin: Any
) -> tuple[PipelineDefinition, dict[str, str] | None]:
    """The pipeline a recorded run ran: from ``-f/-m`` when given, else from where it recorded
    it was loaded (its module by name, else its file)."""
    from asyncdag._workspace import LoadError

    name = args.pipeline or record.pipeline_name
    if args.files or args.modules:
        return selected_pipeline_with_origin(args, name=name)
    if not isinstance(origin, dict) or not origin:
        raise UsageError(
            f"run {record.run_id} does not say where pipeline {record.pipeline_name!r} was "
            "loaded from; point at it with -f FILE or -m MODULE"
        )
    tried: list[str] = []
    for kind, flag in (("module_name", "modules"), ("python_file", "files")):
        value = origin.get(kind)
        if not isinstance(value, str):
            continue
        source = argparse.Namespace(files=[], modules=[], pipeline=name)
        setattr(source, flag, [value])
        try:
            return selected_pipeline_with_origin(source, name=name)
        except LoadError as exc:
            tried.append(str(exc))
    raise UsageError(
        f"cannot load pipeline {record.pipeline_name!r} of run {record.run_id} from where it "
        f"was recorded ({'; '.join(tried) or origin}); if the code moved, point at it with "
        "-f FILE or -m MODULE"
    )


def _execute(
    args: argparse.Namespace,
    pipeline: PipelineDefinition,
    run_config: dict[str, Any] | None,
    options: _Options,
    *,
    storage: Any,
) -> int:
    try:
        telemetry = _configure_tracing(args)
        view = _make_view(args, pipeline)
    except BaseException:
        if storage is not None:
            storage.close()
        raise
    ending = RunEnding(view=view, storage=storage, telemetry=telemetry, grace=args.grace_period)
    try:
        result = view.run(functools.partial(_run, pipeline, run_config, options, ending))
    except Exception as exc:
        raise _storage_failure(exc, storage) from exc
    finally:
        ending.close()
    view.summarize(
        result,
        recorded_in=None if storage is None else where(storage),
        reexecutable=storage is not None and options.output_store is not None,
    )
    if ending.history_error is not None and storage is not None:
        # The run happened (its outcome is above); its history is incomplete: say so once.
        print(
            f"asyncdag: error: the run history {where(storage)} is incomplete: "
            f"{ending.history_error}",
            file=sys.stderr,
        )
        return ending.leave(EXIT_STORAGE)
    return ending.leave(ending.exit_code(result))


def _executor(args: argparse.Namespace, from_config: Any) -> Any:
    """``--executor``/``--dask-address``; None leaves it to the run config."""
    if args.dask_address is not None and args.executor != "dask":
        raise UsageError("--dask-address names a Dask scheduler; use it with --executor dask")
    if args.executor == "in_process":
        from asyncdag._engine import InProcessLauncher

        return InProcessLauncher()
    if args.executor != "dask":
        return None
    from asyncdag import DaskExecutor

    if args.dask_address is not None:
        return DaskExecutor(address=args.dask_address)
    if from_config is not None:  # the run config says which cluster
        return DaskExecutor.from_config(from_config)
    return DaskExecutor()


def _storage_failure(exc: Exception, storage: Any) -> Exception:
    """The run history's error, named with its path, when one is inside ``exc``; else ``exc``."""
    from asyncdag.storage import StorageError

    problem = find_error(exc, StorageError)
    if problem is None or storage is None:
        return exc
    return StorageError(f"the run history {where(storage)} failed during the run: {problem}")


def _configure_tracing(args: argparse.Namespace) -> Any:
    from asyncdag import telemetry

    if not args.verbose:
        # The exporters log each retry to an unreachable collector, several lines a batch;
        # the command says what was lost in one line at exit instead (RunEnding.close).
        # A level, not a handler: the library's loggers stay as the library made them.
        logging.getLogger("opentelemetry").setLevel(logging.CRITICAL)
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
    ending: RunEnding,
) -> PipelineRunResult:
    import anyio

    from asyncdag._api._options import RunOptions
    from asyncdag._api._run import run_with_options

    run_options = RunOptions(
        max_concurrency=options.max_concurrency,
        tags=options.tags,
        fail_fast=options.fail_fast,
        storage=ending.storage,
        listeners=[ending.view.on_event],
        origin=options.origin,
        output_store=options.output_store,
        reexecute_from=options.reexecute_from,
        from_failure=options.from_failure,
        step_selection=options.step_selection,
        executor=options.executor,
    )
    # The receiver is in place before the first event, so a Ctrl-C the moment a step
    # starts is a cancel, never a KeyboardInterrupt tearing through the engine.
    from asyncdag.storage import StorageError

    result = None
    with anyio.open_signal_receiver(*STOP_SIGNALS) as signals:
        try:
            async with (
                run_with_options(pipeline, run_config, run_options) as handle,
                anyio.create_task_group() as tg,
            ):
                tg.start_soon(
                    functools.partial(
                        stop_on_signals,
                        signals,
                        grace=ending.grace,
                        stop=functools.partial(ending.cancel, handle),
                        abandon=functools.partial(ending.abandon, handle),
                    )
                )
                result = await handle.result()
                tg.cancel_scope.cancel()
        except* StorageError as group:
            if result is None:
                raise  # the history could not record the run's start: nothing ran (exit 2)
            # The run ended; the recorder said what it could not store (exit 3).
            ending.history_error = find_error(group, StorageError)
    assert result is not None
    return result


# -- output modes ----------------------------------------------------------------------------


class _View:
    """How this run is shown; the base class is plain text (a pipe, a file, --quiet)."""

    def __init__(self, console: Console, *, summary: bool) -> None:
        from ._display import install_log_handler

        self.console = console
        self.show_summary = summary
        install_log_handler(console)

    def run(self, fn: Callable[[], Any]) -> PipelineRunResult:
        import anyio

        return anyio.run(fn, backend=self.backend)  # type: ignore[no-any-return]

    backend = "asyncio"

    def on_event(self, event: Event) -> None:
        pass

    def note(self, text: str) -> None:
        self.console.print(text, style="yellow", markup=False)

    def close_display(self) -> None:
        """End any live display now: the process is about to exit without unwinding."""

    def summarize(
        self, result: PipelineRunResult, *, recorded_in: str | None, reexecutable: bool = False
    ) -> None:
        if not self.show_summary:
            return
        from asyncdag._workspace import summarize_steps

        from ._display import STATUS_STYLES, format_duration, print_steps

        console = self.console
        console.print()
        see_all = (
            f"asyncdag run show {result.run_id[:8]} --json"
            if recorded_in
            else "--json prints every event"
        )
        print_steps(console, summarize_steps(result.events, run_finished=True), see_all=see_all)
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
        if reexecutable and result.status.value == "FAILURE":
            console.print(
                f"re-execute from the failure with: asyncdag run reexecute {result.run_id[:8]} "
                "--from-failure",
                style="dim",
                markup=False,
            )
        if result.trace_id:
            console.print(f"trace id {result.trace_id}", style="dim", markup=False)


class _LiveView(_View):
    """A terminal: log lines scrolling above a live progress line."""

    def __init__(self, console: Console, pipeline: PipelineDefinition) -> None:
        from ._display import RunProgress

        super().__init__(console, summary=True)
        self.progress = RunProgress(pipeline.name, len(pipeline.nodes))
        self._live: Live | None = None

    def run(self, fn: Callable[[], Any]) -> PipelineRunResult:
        from rich.live import Live

        with Live(
            self.progress,
            console=self.console,
            refresh_per_second=8,
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
        ) as live:
            self._live = live
            return super().run(fn)

    def on_event(self, event: Event) -> None:
        self.progress.on_event(event)

    def note(self, text: str) -> None:
        if self._live is None:
            super().note(text)
        else:
            self.progress.note(text)

    def close_display(self) -> None:
        live, self._live = self._live, None
        if live is not None:
            live.stop()  # gives the terminal its cursor back before an abrupt exit


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

    def summarize(
        self, result: PipelineRunResult, *, recorded_in: str | None, reexecutable: bool = False
    ) -> None:
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
