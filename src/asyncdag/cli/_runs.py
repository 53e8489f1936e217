"""``asyncdag run list | show | delete``: the run history, from the terminal.

Opening the storage marks FAILED the runs whose process died (SIGKILL, power
loss), so ``run list`` never shows a dead run as still going.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import TYPE_CHECKING, Any

from asyncdag._workspace import UsageError

from ._common import add_storage_argument, call, make_console, open_storage, resolve_run_id

if TYPE_CHECKING:
    from asyncdag.storage import RunRecord

__all__ = ["register"]

_STATUSES = ("NOT_STARTED", "STARTED", "SUCCESS", "FAILURE", "CANCELED")
#: The largest --limit storage can take (SQLite's and PostgreSQL's 64-bit integers).
_MAX_LIMIT = 2**63 - 1


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
    show.add_argument("--json", action="store_true", help="print the run and its events as JSON")
    add_storage_argument(show)
    show.set_defaults(handler=_show)

    delete = subparsers.add_parser(
        "delete", help="delete a run and its events", description=_delete.__doc__
    )
    delete.add_argument("run_id", metavar="RUN_ID", help="a run id or a unique prefix of one")
    add_storage_argument(delete)
    delete.set_defaults(handler=_delete)


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
        print(json.dumps([r.to_dict() for r in runs], indent=2))
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
            run.pipeline_name,
            Text(run.status.value, style=STATUS_STYLES.get(run.status.value, "")),
            _when(run.start_time),
            _duration(run),
            run.failure_reason or "",
        )
    console.print(table)
    return 0


def _show(args: argparse.Namespace) -> int:
    """Show one run: its status, config and tags, each step's outcome and timing, and its logs."""
    from asyncdag._workspace import summarize_steps

    with open_storage(args.storage) as storage:
        record = resolve_run_id(storage, args.run_id)
        events = call(storage.get_events, record.run_id)
    rows = summarize_steps(events, run_finished=record.is_finished)
    if args.json:
        document = {
            "run": record.to_dict(),
            "steps": [
                {
                    "key": row.key,
                    "status": row.status,
                    "attempts": row.attempts,
                    "start_time": row.start,
                    "end_time": row.end,
                    "duration": row.duration,
                    "note": row.note or None,
                }
                for row in rows
            ],
            "events": [event.to_dict() for event in events],
        }
        print(json.dumps(document, indent=2, default=str))
        return 0
    _print_run(record, rows, events)
    return 0


def _print_run(record: RunRecord, rows: list[Any], events: list[Any]) -> None:
    import logging

    from rich.text import Text

    from ._display import STATUS_STYLES, ConsoleLogHandler, steps_table

    console = make_console()
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
    if record.tags:
        tags = " ".join(f"{k}={v}" for k, v in record.tags.items())
        console.print(f"tags      {tags}", markup=False)
    if record.parent_run_id:
        console.print(f"parent    {record.parent_run_id}", markup=False)
    if record.run_config:
        console.print(f"config    {json.dumps(record.run_config)}", markup=False)
    console.print()
    console.print(steps_table(rows) if rows else Text("no steps ran", style="dim"))
    console.print()
    console.print(Text(f"events ({len(events)}):", style="bold"))
    handler = ConsoleLogHandler(console)
    for event in events:
        record_ = logging.LogRecord("asyncdag", event.level, "", 0, event.message, (), None)
        record_.created = event.timestamp
        record_.step_key = event.step_key
        record_.event_type = event.type.value if event.type.value != "LOG" else None
        record_.asyncdag_event = event
        error = (event.data or {}).get("error")
        if error and event.level >= logging.ERROR:
            record_.error_traceback = error.get("traceback")
        console.print(handler.render(record_), soft_wrap=True)


def _delete(args: argparse.Namespace) -> int:
    """Delete a run and all of its events from the run history."""
    with open_storage(args.storage) as storage:
        record = resolve_run_id(storage, args.run_id)
        call(storage.delete_run, record.run_id)
    make_console().print(f"deleted run {record.run_id} ({record.pipeline_name})", markup=False)
    return 0


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def _duration(record: RunRecord) -> str:
    from ._display import format_duration

    if record.start_time is None:
        return "-"
    if record.end_time is None:
        return "running" if record.status.value == "STARTED" else "-"
    return format_duration(record.end_time - record.start_time)
