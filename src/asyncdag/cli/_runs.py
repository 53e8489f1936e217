"""``asyncdag run list | show | delete | gc | reexecute``: the run history, from the terminal.

Opening the storage marks FAILED the runs whose process died (SIGKILL, power
loss), so ``run list`` never shows a dead run as still going.  ``run show``
reads a run's events page by page: a 100,000-step run is summarised (how many
steps ended how, those that did not succeed, the slowest) and its first events
shown, with ``--events`` / ``--after`` / ``--step`` / ``--level`` to see more,
and ``--json`` streams every step and event without holding them all.  A run's stored
outputs go with it (``delete``), or with age (``gc --older-than 7d``).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from asyncdag._workspace import UsageError, add_source_arguments

from ._common import (
    add_run_arguments,
    add_storage_argument,
    call,
    make_console,
    open_storage,
    resolve_run_id,
)
from ._execute import add_execution_arguments, reexecute_command

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
        "--root",
        metavar="RUN_ID",
        help="only the runs of this run's re-execution chain (the root and its re-executions)",
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
        "delete",
        help="delete a run, its events and its stored outputs",
        description=_delete.__doc__,
    )
    delete.add_argument("run_id", metavar="RUN_ID", help="a run id or a unique prefix of one")
    delete.add_argument(
        "--force",
        action="store_true",
        help="delete the run even if it is still running (its later events are not stored)",
    )
    add_storage_argument(delete)
    delete.set_defaults(handler=_delete)

    gc = subparsers.add_parser(
        "gc", help="delete the stored outputs of old runs", description=_gc.__doc__
    )
    gc.add_argument(
        "--older-than",
        required=True,
        type=_age,
        metavar="AGE",
        help="runs whose whole re-execution chain started longer ago than this (30m, 12h, 7d, 2w)",
    )
    gc.add_argument(
        "--delete-runs", action="store_true", help="delete those runs from the history too"
    )
    gc.add_argument("--dry-run", action="store_true", help="say what would go, delete nothing")
    add_storage_argument(gc)
    gc.set_defaults(handler=_gc)

    reexecute = subparsers.add_parser(
        "reexecute",
        help="run a recorded run again, from its failure or for chosen steps",
        description=(
            "Re-execute a recorded run: its pipeline (loaded from where the run recorded it, "
            "or -f/-m when the code moved), its run config and tags unless given. "
            "--from-failure computes only what did not succeed and what depends on it; "
            "--steps only the selected solids; the other steps' outputs come from the stored "
            "outputs of the run (or of the run it took them from). Exit codes as for "
            "`pipeline execute`: 0 success, 1 failed, 2 bad input, 130/143 canceled."
        ),
    )
    reexecute.add_argument("run_id", metavar="RUN_ID", help="a run id or a unique prefix of one")
    which = reexecute.add_mutually_exclusive_group()
    which.add_argument(
        "--from-failure",
        action="store_true",
        help="only the steps that did not succeed, and what depends on them",
    )
    which.add_argument(
        "--steps",
        metavar="SELECTION",
        help="only these solids, in Dagster's syntax: 'fetch*', '+report', 'a+2' (comma-separated)",
    )
    add_source_arguments(reexecute)
    add_run_arguments(reexecute)
    add_execution_arguments(reexecute, tags_help="; without --tag the run's own tags")
    reexecute.set_defaults(handler=reexecute_command, no_storage=False)


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
        root = None if args.root is None else resolve_run_id(storage, args.root).run_id
        runs: list[RunRecord] = call(
            storage.list_runs,
            pipeline_name=args.pipeline,
            status=args.status,
            limit=args.limit,
            root_run_id=root,
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
    for column in ("run id", "pipeline", "status", "started", "duration", "parent"):
        table.add_column(column, no_wrap=True)
    table.add_column("reason", overflow="fold")
    for run in runs:
        table.add_row(
            run.run_id,
            Text(run.pipeline_name),
            Text(run.status.value, style=STATUS_STYLES.get(run.status.value, "")),
            _when(run.start_time),
            _duration(run),
            run.parent_run_id[:8] if run.parent_run_id else "",
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
    if record.root_run_id and record.root_run_id != record.parent_run_id:
        console.print(f"root      {record.root_run_id}", markup=False)
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
    """Delete a run, all of its events and its stored outputs.

    A run still going is refused unless --force: cancel it first (Ctrl-C where it
    runs, or Cancel in the UI), or force it, and its later events are not stored.
    Runs that re-executed it and reused its outputs keep their own history;
    re-executing them again needs the steps they reused to be selected.
    """
    from ._common import open_output_store

    with open_storage(args.storage) as storage:
        record = resolve_run_id(storage, args.run_id)
        if record.status.value == "STARTED" and not args.force:
            where = f" (pid {record.pid} on {record.hostname})" if record.pid else ""
            raise UsageError(
                f"run {record.run_id} is still running{where}; cancel it first (Ctrl-C where "
                "it runs, or Cancel in the UI), or delete it anyway with --force"
            )
        outputs = open_output_store()
        had_outputs = outputs.delete_run(record.run_id)
        call(storage.delete_run, record.run_id)
    also = f" and its stored outputs ({outputs.base})" if had_outputs else ""
    make_console().print(
        f"deleted run {record.run_id} ({record.pipeline_name}){also}", markup=False
    )
    return 0


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def _age(text: str) -> float:
    """``7d`` as seconds: a number and one of s, m, h, d, w."""
    value, unit = text.strip()[:-1], text.strip()[-1:].lower()
    try:
        amount = float(value)
    except ValueError:
        amount = -1.0
    if unit not in _UNITS or not amount >= 0 or amount == float("inf"):
        raise argparse.ArgumentTypeError(
            f"expected an age such as 30m, 12h, 7d or 2w, got {text!r}"
        )
    return amount * _UNITS[unit]


def _gc(args: argparse.Namespace) -> int:
    """Delete the stored outputs of runs older than --older-than.

    A run's outputs go only when its whole re-execution chain is that old (a
    newer re-execution may still reuse them) and no run of the chain is still
    going. Outputs of runs the history does not know (deleted, or run with
    --no-storage) go when their files are that old. With --delete-runs the
    runs leave the history too.
    """
    import time

    from ._common import open_output_store

    cutoff = time.time() - args.older_than
    with open_storage(args.storage) as storage:
        runs: list[RunRecord] = call(storage.list_runs)
        outputs = open_output_store()
        stored = set(outputs.run_ids())
        newest: dict[str, float] = {}
        busy: set[str] = set()
        for run in runs:
            chain = run.root_run_id or run.run_id
            when = run.start_time or 0.0
            newest[chain] = max(newest.get(chain, 0.0), when, run.end_time or 0.0)
            if not run.is_finished:
                busy.add(chain)
        known = {run.run_id for run in runs}
        expired = [
            run
            for run in runs
            if (chain := run.root_run_id or run.run_id) not in busy and newest[chain] < cutoff
        ]
        orphans = [
            run_id
            for run_id in sorted(stored - known)
            if (modified := outputs.last_modified(run_id)) is not None and modified < cutoff
        ]
        console = make_console()
        verb = "would delete" if args.dry_run else "deleted"
        removed = 0
        for run in expired:
            has_outputs = run.run_id in stored
            if not has_outputs and not args.delete_runs:
                continue
            if not args.dry_run:
                if has_outputs:
                    outputs.delete_run(run.run_id)
                if args.delete_runs:
                    call(storage.delete_run, run.run_id)
            what = "outputs and history" if args.delete_runs else "outputs"
            console.print(
                f"{verb} the {what} of run {run.run_id} ({run.pipeline_name})", markup=False
            )
            removed += 1
        for run_id in orphans:
            if not args.dry_run:
                outputs.delete_run(run_id)
            console.print(f"{verb} the outputs of run {run_id} (not in the history)", markup=False)
            removed += 1
    if not removed:
        console.print("nothing to delete", style="dim")
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
