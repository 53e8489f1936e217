"""``asyncdag schedule list | start | stop | preview``: schedules from the terminal.

Their on/off state lives in the run history the UI and ``asyncdag scheduler
run`` share, so ``schedule stop nightly`` here stops it there too (at its next
tick).  ``preview`` needs no history: it prints the next tick times in the
schedule's own time zone.  The sensor commands (``_sensors``) share the
listing and toggling below.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import TYPE_CHECKING, Any

from asyncdag._workspace import UsageError, add_source_arguments, loaded_workspace

from ._common import add_storage_argument, call, make_console, open_storage

if TYPE_CHECKING:
    from asyncdag.automation._definitions import AutomationDefinition

__all__ = ["add_toggle_commands", "register"]


def register(subparsers: Any) -> None:
    add_toggle_commands(subparsers, kind="schedule")
    preview = subparsers.add_parser(
        "preview",
        help="print a schedule's next tick times in its time zone",
        description=_preview.__doc__,
    )
    preview.add_argument("name", metavar="NAME", help="the schedule")
    add_source_arguments(preview)
    preview.add_argument(
        "-n", type=int, default=5, metavar="N", help="how many tick times (default 5)"
    )
    preview.set_defaults(handler=_preview)


def add_toggle_commands(subparsers: Any, *, kind: str) -> None:
    """``list``, ``start NAME`` and ``stop NAME`` for schedules or sensors."""
    listing = subparsers.add_parser(
        "list",
        help=f"list the {kind}s in -f/-m with their state, next and last tick",
        description=f"List the {kind}s defined in -f FILE / -m MODULE: on or off, next ticks, "
        "the last tick's outcome.",
    )
    add_source_arguments(listing)
    listing.add_argument("--json", action="store_true", help=f"print the {kind}s as JSON")
    add_storage_argument(listing)
    listing.set_defaults(handler=_list, kind=kind)
    for verb, running in (("start", True), ("stop", False)):
        parser = subparsers.add_parser(
            verb,
            help=f"turn a {kind} {'on' if running else 'off'} (in the shared run history)",
            description=f"Turn a {kind} {'on' if running else 'off'}; every scheduler sharing "
            "the run history (asyncdag scheduler run, asyncdag ui) follows at its next tick."
            + (" Ticks missed while it was stopped are not caught up." if running else ""),
        )
        parser.add_argument("name", metavar="NAME", help=f"the {kind}")
        add_source_arguments(parser)
        add_storage_argument(parser)
        parser.set_defaults(handler=_toggle, kind=kind, running=running)


def _definitions(args: argparse.Namespace) -> dict[str, AutomationDefinition]:
    workspace = loaded_workspace(args)
    found: dict[str, AutomationDefinition] = dict(
        workspace.schedules if args.kind == "schedule" else workspace.sensors
    )
    if args.pipeline is not None:
        found = {n: d for n, d in found.items() if d.pipeline.name == args.pipeline}
    return found


def _named(args: argparse.Namespace) -> AutomationDefinition:
    from asyncdag.automation._status import UnknownInstigatorError, lookup

    definitions = _definitions(args)
    try:
        return lookup(definitions, args.name)
    except UnknownInstigatorError as exc:
        raise UsageError(str(exc).replace("schedule or sensor", args.kind)) from None


def _list(args: argparse.Namespace) -> int:
    from asyncdag.automation._status import describe

    definitions = _definitions(args)
    now = time.time()
    with open_storage(args.storage) as storage:
        rows = [call(describe, d, storage, now=now, next_ticks=1) for d in definitions.values()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    console = make_console()
    if not rows:
        console.print(f"no {args.kind}s defined", style="dim")
        return 0
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for column in ("NAME", "STATUS", "WHEN", "PIPELINE", "NEXT TICK", "LAST TICK"):
        table.add_column(column)
    for row in rows:
        when = (
            f"{row['cron_schedule']} ({row['execution_timezone']})"
            if args.kind == "schedule"
            else f"every {row['minimum_interval_seconds']:g}s"
        )
        nxt = row["next_ticks"][0]["local"] if row["next_ticks"] else "-"
        last = row["last_tick"]
        last_text = f"{last['status']} {last['local']}" if last else "-"
        style = "green" if row["status"] == "RUNNING" else "dim"
        table.add_row(
            row["name"], row["status"], when, row["pipeline"], nxt, last_text, style=style
        )
    console.print(table)
    return 0


def _toggle(args: argparse.Namespace) -> int:
    from asyncdag.automation._status import set_running

    definition = _named(args)
    with open_storage(args.storage) as storage:
        state = call(set_running, storage, definition, args.running, now=time.time())
    print(f"{args.kind} {definition.name!r} is now {state.status.value}")
    return 0


def _preview(args: argparse.Namespace) -> int:
    """Print a schedule's next tick times, in its own time zone (daylight saving included)."""
    if args.n < 1:
        raise UsageError(f"-n must be 1 or more, got {args.n}")
    args.kind = "schedule"
    definition = _named(args)
    cron = definition.cron  # type: ignore[union-attr]
    for t in cron.next_ticks(time.time(), args.n):
        local = cron.localize(t)
        print(f"{local.strftime('%Y-%m-%d %H:%M:%S')} {local.tzname()} ({local.isoformat()})")
    return 0
