"""Running the UI app under uvicorn in this process: the listening socket, signals, the exit.

The socket is bound here, before uvicorn starts, so a port out of range or in
use, or a host that is not this machine's, is one clear line (uvicorn would
print a traceback, or log and exit 1).

Signals are ours, not uvicorn's: uvicorn's shutdown waits for the app's
lifespan to end, and the lifespan waits for the runs it launched, so a run
whose sync solid never returns kept the server alive through any number of
Ctrl-Cs.  Here, as in ``pipeline execute`` (:mod:`asyncdag._workspace._stop`),
the first SIGINT or SIGTERM shuts the server down gracefully (runs still going
are canceled and recorded CANCELED), and a second signal, or the shutdown
still going after the grace period, records the runs of this process still
going as CANCELED and exits at once.  Either way the exit code is 130 after
SIGINT and 143 after SIGTERM (``128 + N``, as for ``pipeline execute``).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import signal
import socket
import sys
from collections.abc import Iterator
from typing import Any, NoReturn

import anyio
import uvicorn

from asyncdag._events import RunStatus
from asyncdag._workspace import UsageError, summarize_steps
from asyncdag._workspace._stop import (
    STOP_SIGNALS,
    exit_code_for,
    exit_now,
    leave,
    record_canceled,
    stop_on_signals,
)

__all__ = ["bind", "run_server"]

_PROG = "asyncdag ui"


def bind(host: str, port: int) -> socket.socket:
    """A socket listening on ``host:port``, or a :class:`UsageError` saying what to change."""
    if not 0 <= port <= 65535:
        raise UsageError(
            f"--port {port} is not a TCP port; use one from 1 to 65535 (0 picks a free one)"
        )
    family = socket.AF_INET6 if ":" in host else socket.AF_INET  # as uvicorn decides
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise UsageError(_bind_problem(host, port, exc)) from exc
    sock.set_inheritable(True)
    return sock


def _bind_problem(host: str, port: int, exc: OSError) -> str:
    if isinstance(exc, socket.gaierror):
        return f"--host {host!r} is not a host name or address this machine knows ({exc.strerror})"
    if exc.errno == errno.EADDRINUSE:
        return (
            f"port {port} on {host} is already in use (another asyncdag ui?); "
            "choose another with --port"
        )
    if exc.errno == errno.EACCES:
        return f"not allowed to listen on port {port}; choose a port above 1023 with --port"
    if exc.errno == errno.EADDRNOTAVAIL:
        return (
            f"--host {host} is not an address of this machine; use 127.0.0.1 (this machine "
            "only) or one of its own addresses"
        )
    return f"cannot listen on {host}:{port}: {exc.strerror or exc}"


class _Server(uvicorn.Server):
    """uvicorn's server without its signal handlers: :func:`_serve` takes the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def run_server(app: Any, sock: socket.socket, *, grace: float, banner: str) -> int:
    """Serve ``app`` on ``sock`` until a signal stops it; return the exit code (see the module).

    ``banner`` is printed on stderr once the signals are ours (the socket already
    listens), so whoever waits for it may send a signal from then on.
    """
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=3)
    server = _Server(config)
    stopped_by = anyio.run(
        functools.partial(_serve, server, app, sock, grace, banner), backend="asyncio"
    )
    return leave(exit_code_for(stopped_by) if stopped_by else 0, prog=_PROG)


async def _serve(
    server: _Server, app: Any, sock: socket.socket, grace: float, banner: str
) -> signal.Signals | None:
    stopped_by: list[signal.Signals] = []

    def shut_down(sig: signal.Signals) -> None:
        stopped_by.append(sig)
        print(
            f"{_PROG}: {sig.name}: shutting down, canceling the runs still going (a second "
            f"signal, or the shutdown still going {grace:g}s from now, exits at once)",
            file=sys.stderr,
            flush=True,
        )
        server.should_exit = True

    with anyio.open_signal_receiver(*STOP_SIGNALS) as signals:
        print(banner, file=sys.stderr, flush=True)
        async with anyio.create_task_group() as tg:
            tg.start_soon(
                functools.partial(
                    stop_on_signals,
                    signals,
                    grace=grace,
                    stop=shut_down,
                    abandon=functools.partial(_abandon, app),
                )
            )
            await server.serve(sockets=[sock])
            tg.cancel_scope.cancel()
    return stopped_by[0] if stopped_by else None


async def _abandon(app: Any, sig: signal.Signals, when: str) -> NoReturn:
    """Record the runs this process still runs as CANCELED, then leave without them."""
    storage = app.state.storage
    live = app.state.live
    with anyio.move_on_after(10):
        mine = [
            record
            for record in await storage.list_runs(status=RunStatus.STARTED)
            if record.pid == os.getpid() and record.hostname == socket.gethostname()
        ]
        for record in mine:
            handle = live.handle(record.run_id)
            events = handle.event_log if handle is not None else []
            running = [
                row.key for row in summarize_steps(events) if row.status in ("RUNNING", "RETRYING")
            ]
            steps = ", ".join(running) or "none"
            await record_canceled(
                storage,
                record.run_id,
                events,
                reason=f"canceled when the UI server stopped; it exited {when} without "
                f"waiting for the steps still running: {steps}",
            )
    print(f"{_PROG}: exiting {when} without waiting for the runs still going", file=sys.stderr)
    exit_now(exit_code_for(sig))
