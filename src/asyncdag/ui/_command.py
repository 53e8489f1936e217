"""``asyncdag ui``: serve the web UI for the pipelines in some files or modules.

Registered by :mod:`asyncdag.cli` as the ``ui`` command; ``register`` stays
light (argparse only) and the handler imports uvicorn and starlette.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["TOKEN_ENV", "main", "register", "serve"]

#: The environment variable ``asyncdag ui`` reads its access token from.
TOKEN_ENV = "ASYNCDAG_UI_TOKEN"


def register(subparsers: Any) -> None:
    from asyncdag._workspace import add_source_arguments
    from asyncdag._workspace._stop import add_grace_period_argument

    parser = subparsers.add_parser(
        "ui",
        help="serve the web UI (graph, config playground, runs)",
        description="Serve the web UI for the pipelines in -f FILE / -m MODULE on "
        "http://HOST:PORT: graphs, a config playground, launching runs and watching them live. "
        "Ctrl-C or SIGTERM stops it, canceling the runs it launched; a second signal, or "
        "runs still going after --grace-period, exits at once with them recorded CANCELED. "
        "Exit code 130 after Ctrl-C (SIGINT), 143 after SIGTERM, 2 bad input.",
    )
    add_source_arguments(parser)
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="interface to bind (default 127.0.0.1: this machine only)",
    )
    parser.add_argument(
        "--port", type=int, default=3000, help="port to bind (default 3000; 0 picks a free one)"
    )
    add_grace_period_argument(parser, what="the runs still going")
    parser.add_argument(
        "--storage",
        metavar="URL",
        default=None,
        help="run history: postgresql://user@host/db (shared with other hosts), "
        "sqlite:///path/file.db or a file path, memory:// (default: $ASYNCDAG_STORAGE_URL, "
        "else the SQLite file the CLI shares, under $ASYNCDAG_HOME)",
    )
    parser.add_argument(
        "--allowed-host",
        dest="allowed_hosts",
        metavar="HOST",
        action="append",
        default=[],
        help="also answer to this Host name or address (repeatable; '*.example.com' for a "
        "domain). By default only localhost, 127.0.0.1, [::1] and the --host address, "
        "against DNS rebinding",
    )
    parser.add_argument(
        "--auth-token",
        metavar="TOKEN",
        default=None,
        help="require this access token, 16+ URL-safe characters (default $ASYNCDAG_UI_TOKEN); "
        "needed when --host is not a loopback address. The URL printed at startup carries it",
    )
    parser.add_argument(
        "--no-schedules",
        action="store_true",
        help="list the schedules and sensors of -f/-m, but do not run them here",
    )
    parser.add_argument(
        "--jaeger-url",
        metavar="URL",
        default=None,
        help="link trace ids to this Jaeger UI (default $ASYNCDAG_JAEGER_URL)",
    )
    parser.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    from asyncdag._workspace import loaded_workspace

    auth_token = _auth_token(args)
    workspace = loaded_workspace(args)
    pipelines = workspace.pipelines
    automation = workspace.automation
    if args.pipeline is not None:
        from asyncdag._workspace import select_pipeline

        pipelines = {args.pipeline: select_pipeline(pipelines, args.pipeline)}
        automation = [d for d in automation if d.pipeline.name == args.pipeline]
    return serve(
        pipelines,
        host=args.host,
        port=args.port,
        storage_url=args.storage,
        jaeger_url=args.jaeger_url,
        grace_period=args.grace_period,
        allowed_hosts=args.allowed_hosts,
        auth_token=auth_token,
        automation=automation,
        run_schedules=not args.no_schedules,
    )


def _auth_token(args: argparse.Namespace) -> str | None:
    """--auth-token or $ASYNCDAG_UI_TOKEN, checked; required to serve beyond this machine."""
    from asyncdag._errors import AsyncdagError
    from asyncdag._workspace import UsageError

    from ._guard import TOKEN_HINT, check_token, is_loopback

    token = args.auth_token or os.environ.get(TOKEN_ENV) or None
    if token is None and not is_loopback(args.host):
        raise UsageError(
            f"--host {args.host} serves other machines and the UI runs code, so it needs an "
            f"access token: pass --auth-token TOKEN or set ${TOKEN_ENV} ({TOKEN_HINT})"
        )
    try:
        return check_token(token)
    except AsyncdagError as exc:
        raise UsageError(f"--auth-token: {exc}") from None


def serve(
    pipelines: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 3000,
    storage_url: str | None = None,
    jaeger_url: str | None = None,
    grace_period: float = 10.0,
    allowed_hosts: Sequence[str] = (),
    auth_token: str | None = None,
    automation: Any = (),
    run_schedules: bool = True,
    storage_path: str | None = None,
) -> int:
    """Serve the UI with uvicorn until a signal stops it, on the run history the CLI shares.

    ``storage_url`` is any storage URL or path (see :func:`asyncdag.storage.open_storage`);
    without it, ``$ASYNCDAG_STORAGE_URL``, else the CLI's SQLite file.  ``storage_path``
    is its older name.

    It answers only to the localhost names, the bound address and ``allowed_hosts``,
    and with ``auth_token`` only to requests that carry it.  ``automation`` (schedules
    and sensors) runs in the server unless ``run_schedules`` is false.

    Returns the exit code: 130 or 143 once SIGINT or SIGTERM stopped it (see
    :mod:`asyncdag.ui._server`).
    """
    from asyncdag import telemetry
    from asyncdag._api._console import install_console_handler
    from asyncdag._errors import AsyncdagError
    from asyncdag.storage import open_storage

    from ._app import create_app
    from ._guard import hosts_for_bind, page_url
    from ._server import bind, run_server

    sock = bind(host, port)  # a bad or busy port is reported before anything else starts
    try:
        port = sock.getsockname()[1]
        storage = open_storage(storage_url or storage_path)
        storage.open()  # a bad URL or a server that does not answer fails now, naming it
        # The command is the application here: the runs it starts print their events on
        # stderr as `pipeline execute` does (the library alone installs no handler).
        install_console_handler()
        try:
            telemetry.configure_from_env()
        except AsyncdagError as exc:  # tracing is optional: a bad OTEL_* setting must not stop it
            print(f"asyncdag ui: tracing not configured: {exc}", file=sys.stderr)
        from asyncdag.automation._definitions import ScheduleDefinition

        schedules = [d for d in automation if isinstance(d, ScheduleDefinition)]
        sensors = [d for d in automation if not isinstance(d, ScheduleDefinition)]
        app = create_app(
            pipelines,
            storage=storage,
            jaeger_url=jaeger_url,
            allowed_hosts=hosts_for_bind(host, allowed_hosts),
            auth_token=auth_token,
            schedules=schedules,
            sensors=sensors,
            run_schedules=run_schedules,
        )
        url = page_url(host, port, auth_token)
        running = ""
        if automation:
            verb = "running" if run_schedules else "listing (--no-schedules)"
            running = f", {verb} {len(schedules)} schedule(s) and {len(sensors)} sensor(s)"
        banner = (
            f"asyncdag ui: serving {len(pipelines)} pipeline(s){running}, runs in {storage}, "
            f"on {url}"  # the URL last: a terminal makes it a link, a script takes the tail
        )
        try:
            return run_server(app, sock, grace=grace_period, banner=banner)
        finally:
            storage.close()
    finally:
        sock.close()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m asyncdag.ui._command -f FILE``: the ``ui`` command on its own."""
    parser = argparse.ArgumentParser(prog="asyncdag")
    subparsers = parser.add_subparsers(dest="command", required=True)
    register(subparsers)
    args = parser.parse_args(["ui", *(sys.argv[1:] if argv is None else argv)])
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
