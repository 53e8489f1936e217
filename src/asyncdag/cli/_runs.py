"""``asyncdag run list | show | delete``: the run history, from the terminal.

Opening the storage marks FAILED the runs whose process died (SIGKILL, power
loss), so ``run list`` never shows a dead run as still going.  ``run show``
reads a run's events page by page: a 100,000-step run is summarised (how many
steps ended how, those that did not succeed, the slowest) and its first events
shown, with ``--events`` / ``--after`` / ``--step`` / ``--level`` to see more,
and ``--json`` streams every step and event without holding them all.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from asyncdag._workspace import UsageError

from ._common import add_storage_argument, call, make_console, open_storage, resolve_run_id

if TYPE_CHECKING:
    from rich.console import Console

    from asyncdag._events import Event
    from asyncdag.storage import RunRecord, RunStorage

__all__ = ["register"]

_STATUSES = ("NOT_STARTED", "STARTED", "SUCCESS", "FAILURE", "CANCELED")
#: The largest --limit storage can take (SQLite's and PostgreSQL's 64-bit integers).
_MAX_LIMIT = 2**63 - 1
_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
#: Events shown by ``run show`` unless ``--events`` says otherwise.
DEFAULT_EVENTS = 200
#: Events read from storage at a time.
PAGE = 5000
#: ``--events all``.
ALL = -1


def register(subparsers: Any) -> None:
    listing = subparsers.add_parser(
        "list", help="list recorded runs, newest first", description=_list.__doc__
    )
    listing.add_argument("--pipeline", metavar="NAME", help="only runs of this pipeline")
    listing.add_argument(
        "--status",
        type=str.upper,
        choices=_STATUSES,
        metavar="STATUS",
        help=f"only runs with this status ({', '.join(_STATUSES)})",
    )
    listing.add_argument(
        "--limit", type=int, default=20, metavar="N", help="show at most N runs (default 20)"
    )
    listing.add_argument("--json", action="store_true", help="print the runs as a JSON array")
    add_storage_argument(listing)
    listing.set_defaults(handler=_list)

    show = subparsers.add_parser(
        "show", help="show a run: status, steps, timings, logs", description=_show.__doc__
    )
    show.add_argument("run_id", metavar="RUN_ID", help="a run id or a unique prefix of one")
    show.add_argument(
        "--events",
        type=_event_count,
        default=None,
        metavar="N|all",
        help=f"show at most N events (default {DEFAULT_EVENTS}; with --json every event), "
        "or all of them",
    )
    show.add_argument(
        "--after", type=int, default=-1, metavar="SEQ", help="only events after this seq"
    )
    show.add_argument("--step", metavar="KEY", help="only the events of this step")
    show.add_argument(
        "--level",
        type=str.upper,
        choices=_LEVELS,
        metavar="LEVEL",
        help=f"only events at this level or above ({', '.join(_LEVELS)})",
    )
    show.add_argument("--json", action="store_true", help="print the run and its events as JSON")
    add_storage_argument(show)
    show.set_defaults(handler=_show)

    delete = subparsers.add_parser(
        "delete", help="delete a run and its events", description=_delete.__doc__
    )
    delete.add_argument("run_id", metavar="RUN_ID", help="a run id or a unique prefix of one")
    delete.add_argument(
        "--force",
        action="store_true",
        help="delete the run even if it is still running (its later events are not stored)",
    )
    add_storage_argument(delete)
    delete.set_defaults(handler=_delete)


def _event_count(text: str) -> int:
    if text.strip().lower() == "all":
        return ALL
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'all', got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _list(args: argparse.Namespace) -> int:
    """List recorded runs, newest first, with their status, timing and why they failed."""
    if not 1 <= args.limit <= _MAX_LIMIT:
        raise UsageError(
            f"--limit must be a whole number from 1 to {_MAX_LIMIT} (2**63 - 1), got {args.limit}"
        )
    with open_storage(args.storage) as storage:
        runs: list[RunRecord] = call(
            storage.list_runs,
            pipeline_name=args.pipeline,
            status=args.status,
            limit=args.limit,
        )
    if args.json:
        from asyncdag.storage._codec import dumps

        print(dumps([r.to_dict() for r in runs], strict=True, indent=2))
        return 0
    console = make_console()
    if not runs:
        console.print("no runs recorded yet", style="dim")
        return 0
    from rich.table import Table
    from rich.text import Text

    from ._display import STATUS_STYLES

    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("run id", "pipeline", "status", "started", "duration"):
        table.add_column(column, no_wrap=True)
    table.add_column("reason", overflow="fold")
    for run in runs:
        table.add_row(
            run.run_id,
            Text(run.pipeline_name),
            Text(run.status.value, style=STATUS_STYLES.get(run.status.value, "")),
            _when(run.start_time),
            _duration(run),
            Text(run.failure_reason or run.note or ""),
        )
    console.print(table)
    return 0


def _show(args: argparse.Namespace) -> int:
    """Show one run: its status, config and tags, how its steps ended and took, and its events.

    A run of more than a few dozen steps is summarised; its events are read page
    by page, the first 200 shown unless --events says otherwise.
    """
    import anyio

    with open_storage(args.storage) as storage:
        record = resolve_run_id(storage, args.run_id)
        show = _show_json if args.json else _show_text
        anyio.run(show, storage, record, args)
    return 0


async def _pages(
    storage: RunStorage,
    run_id: str,
    *,
    after: int = -1,
    step: str | None = None,
    types: Any = None,
    keep: Callable[[Event], bool] | None = None,
    limit: int | None = None,
) -> AsyncIterator[list[Event]]:
    """The run's events in pages of at most :data:`PAGE`, at most ``limit`` of those kept."""
    left = limit
    cursor = after
    while left is None or left > 0:
        page = await storage.get_events(
            run_id, after_seq=cursor, limit=PAGE, step_key=step, types=types
        )
        if not page:
            return
        cursor = page[-1].seq
        kept = page if keep is None else [e for e in page if keep(e)]
        if left is not None:
            kept = kept[:left]
            left -= len(kept)
        if kept:
            yield kept
        if len(page) < PAGE:
            return


def _event_filter(args: argparse.Namespace) -> Callable[[Event], bool] | None:
    if args.level is None:
        return None
    floor = logging.getLevelName(args.level)
    return lambda event: event.level >= floor


async def _steps(storage: RunStorage, record: RunRecord) -> list[Any]:
    from asyncdag._workspace import STEP_SUMMARY_EVENTS, StepFolder

    folder = StepFolder()
    async for page in _pages(storage, record.run_id, types=STEP_SUMMARY_EVENTS):
        folder.add(page)
    return folder.summaries(run_finished=record.is_finished)


async def _show_json(storage: RunStorage, record: RunRecord, args: argparse.Namespace) -> None:
    """One JSON document, written as it is read: the run, every step, the events asked for."""
    from asyncdag.storage._codec import dumps

    rows = await _steps(storage, record)
    out = sys.stdout
    out.write('{\n  "run": ' + _indented(dumps(record.to_dict(), strict=True, indent=2)))
    out.write(',\n  "steps": [')
    for n, row in enumerate(rows):
        step = {
            "key": row.key,
            "status": row.status,
            "attempts": row.attempts,
            "start_time": row.start,
            "end_time": row.end,
            "duration": row.duration,
            "note": row.note or None,
        }
        out.write(("," if n else "") + "\n    " + dumps(step, strict=True))
    out.write('\n  ],\n  "events": [')
    first = True
    async for page in _pages(
        storage,
        record.run_id,
        after=args.after,
        step=args.step,
        keep=_event_filter(args),
        limit=None if args.events in (None, ALL) else args.events,
    ):
        for event in page:
            out.write(("" if first else ",") + "\n    " + dumps(event.to_dict(), strict=True))
            first = False
    out.write("\n  ]\n}\n")


def _indented(text: str) -> str:
    return text.replace("\n", "\n  ")


async def _show_text(storage: RunStorage, record: RunRecord, args: argparse.Namespace) -> None:
    from ._display import print_steps

    console = make_console()
    _print_header(console, record)
    console.print()
    rows = await _steps(storage, record)
    print_steps(console, rows, see_all=f"asyncdag run show {record.run_id} --json")
    console.print()
    total = await storage.count_events(record.run_id)
    limit = {None: DEFAULT_EVENTS, ALL: None}.get(args.events, args.events)
    shown = 0
    from rich.text import Text

    console.print(Text(f"events ({total:,}):", style="bold"))
    render = _event_printer(console)
    async for page in _pages(
        storage,
        record.run_id,
        after=args.after,
        step=args.step,
        keep=_event_filter(args),
        limit=limit,
    ):
        for event in page:
            render(event)
        shown += len(page)
    if shown < total:
        console.print(
            f"showed {shown:,} of {total:,} events; see others with --events N|all, "
            "--after SEQ, --step KEY or --level LEVEL",
            style="dim",
            markup=False,
        )


def _print_header(console: Console, record: RunRecord) -> None:
    from rich.text import Text

    from asyncdag.storage._codec import dumps

    from ._display import STATUS_STYLES

    status = record.status.value
    header = Text()
    header.append(f"run {record.run_id}", style="bold")
    header.append(f"  {record.pipeline_name}  ")
    header.append(status, style=STATUS_STYLES.get(status, ""))
    console.print(header)
    console.print(f"started   {_when(record.start_time)}", markup=False)
    console.print(f"ended     {_when(record.end_time)}", markup=False)
    console.print(f"duration  {_duration(record)}", markup=False)
    if record.failure_reason:
        console.print(f"reason    {record.failure_reason}", style="red", markup=False)
    if record.note:
        console.print(f"note      {record.note}", style="yellow", markup=False)
    if record.tags:
        tags = " ".join(f"{k}={v}" for k, v in record.tags.items())
        console.print(f"tags      {tags}", markup=False)
    if record.parent_run_id:
        console.print(f"parent    {record.parent_run_id}", markup=False)
    if record.run_config:
        console.print(f"config    {dumps(record.run_config, strict=True)}", markup=False)


def _event_printer(console: Console) -> Callable[[Event], None]:
    """Prints one stored event as the live run printed it, through the same log handler."""
    from ._display import ConsoleLogHandler

    handler = ConsoleLogHandler(console)

    def render(event: Event) -> None:
        record = logging.LogRecord("asyncdag", event.level, "", 0, event.message, (), None)
        record.created = event.timestamp
        record.step_key = event.step_key
        record.event_type = event.type.value if event.type.value != "LOG" else None
        record.asyncdag_event = event
        error = (event.data or {}).get("error") if isinstance(event.data, dict) else None
        if isinstance(error, dict) and event.level >= logging.ERROR:
            record.error_traceback = error.get("traceback")
        handler.emit(record)

    return render


def _delete(args: argparse.Namespace) -> int:
    """Delete a run and all of its events from the run history.

    A run still going is refused unless --force: cancel it first (Ctrl-C where it
    runs, or Cancel in the UI), or force it, and its later events are not stored.
    """
    with open_storage(args.storage) as storage:
        record = resolve_run_id(storage, args.run_id)
        if record.status.value == "STARTED" and not args.force:
            where = f" (pid {record.pid} on {record.hostname})" if record.pid else ""
            raise UsageError(
                f"run {record.run_id} is still running{where}; cancel it first (Ctrl-C where "
                "it runs, or Cancel in the UI), or delete it anyway with --force"
            )
        call(storage.delete_run, record.run_id)
    make_console().print(f"deleted run {record.run_id} ({record.pipeline_name})", markup=False)
    return 0


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))
    except (OverflowError, OSError, ValueError):
        return str(timestamp)


def _duration(record: RunRecord) -> str:
    from ._display import format_duration

    if record.start_time is None:
        return "-"
    if record.end_time is None:
        return "running" if record.status.value == "STARTED" else "-"
    return format_duration(record.end_time - record.start_time)
