"""``asyncdag scheduler run``: run every schedule and sensor of some files until stopped.

The scheduler shares the run history with the CLI and the web UI (--storage URL,
else $ASYNCDAG_STORAGE_URL, else $ASYNCDAG_HOME/asyncdag.db: PostgreSQL when they
run on several hosts); several may run at once (here and in ``asyncdag ui``) and
each tick still runs once.
Ctrl-C (or SIGTERM) stops the loops and releases their leases, so another
process takes over at once; runs already started then finish
(``--on-stop wait``, the default; a second Ctrl-C cancels them) or are
cancelled at once (``--on-stop cancel``).  The exit code is ``128 + N`` for the signal N
that stopped it, the shell's convention (130 after Ctrl-C, 143 after SIGTERM).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Any

from asyncdag._workspace import UsageError, add_source_arguments, loaded_workspace

from ._app import EXIT_CANCELED
from ._common import (
    add_backend_argument,
    add_output_store_arguments,
    add_storage_argument,
    make_console,
    open_storage,
    output_store_from,
)

__all__ = ["register"]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run the schedules and sensors in -f/-m until stopped",
        description=__doc__.split("\n\n", 1)[1].replace("\n", " ") if __doc__ else None,
    )
    add_source_arguments(parser)
    parser.add_argument(
        "--on-stop",
        choices=("wait", "cancel"),
        default="wait",
        help="on Ctrl-C, let started runs finish (wait, the default) or cancel them",
    )
    parser.add_argument(
        "--lease-ttl",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how long a silent scheduler keeps its schedules before another takes over (30)",
    )
    add_backend_argument(parser)
    add_storage_argument(parser)
    add_output_store_arguments(parser, what="each scheduled run")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    import anyio

    from asyncdag.automation import Scheduler

    from ._display import install_log_handler

    if not args.lease_ttl > 0:
        raise UsageError(f"--lease-ttl must be > 0 seconds, got {args.lease_ttl}")
    workspace = loaded_workspace(args)
    definitions = workspace.automation
    if args.pipeline is not None:
        definitions = [d for d in definitions if d.pipeline.name == args.pipeline]
    if not definitions:
        raise UsageError(
            "no schedule or sensor to run; define one with @schedule or @sensor at the top "
            "level of the file"
        )
    console = make_console(stderr=True)
    install_log_handler(console)
    storage = open_storage(args.storage)
    try:
        scheduler = Scheduler(
            definitions,
            storage=storage,
            lease_ttl=args.lease_ttl,
            output_store=output_store_from(args),
        )
        schedules = sum(1 for d in definitions if d.name in workspace.schedules)
        console.print(
            f"asyncdag scheduler: running {schedules} schedule(s) and "
            f"{len(definitions) - schedules} sensor(s) as {scheduler.owner}; Ctrl-C stops",
            markup=False,
        )
        signum = anyio.run(_serve, scheduler, args.on_stop, console, backend=args.backend)
    finally:
        storage.close()
    return 128 + int(signum)


async def _serve(scheduler: Any, on_stop: str, console: Any) -> int:
    """Run until a signal; return the first signal's number."""
    import anyio

    stop = anyio.Event()
    first: list[int] = []
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with anyio.create_task_group() as tg:

            async def listen() -> None:
                count = 0
                async for signum in signals:
                    count += 1
                    name = signal.Signals(signum).name
                    if count == 1:
                        first.append(signum)
                        stop.set()
                    elif count == 2:
                        console.print(f"{name} again: cancelling the runs", markup=False)
                        scheduler.cancel_runs()
                    else:
                        sys.stderr.flush()
                        os._exit(EXIT_CANCELED)

            tg.start_soon(listen)
            async with scheduler.running(on_stop=on_stop):
                await stop.wait()
                running = scheduler.active_runs
                if running and on_stop == "wait":
                    console.print(
                        f"stopping: waiting for {len(running)} run(s) to finish "
                        "(Ctrl-C again cancels them)",
                        markup=False,
                    )
                else:
                    console.print("stopping", markup=False)
            tg.cancel_scope.cancel()
    return first[0]
