"""``asyncdag ui``: serve the web UI for the pipelines in some files or modules.

Registered by :mod:`asyncdag.cli` as the ``ui`` command; ``register`` stays
light (argparse only) and the handler imports uvicorn and starlette.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["main", "register", "serve"]


def register(subparsers: Any) -> None:
    from asyncdag.cli._common import add_source_arguments

    parser = subparsers.add_parser(
        "ui",
        help="serve the web UI (graph, config playground, runs)",
        description="Serve the web UI for the pipelines in -f FILE / -m MODULE on "
        "http://HOST:PORT: graphs, a config playground, launching runs and watching them live.",
    )
    add_source_arguments(parser)
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="interface to bind (default 127.0.0.1: this machine only)",
    )
    parser.add_argument("--port", type=int, default=3000, help="port to bind (default 3000)")
    parser.add_argument(
        "--storage",
        metavar="URL",
        default=None,
        help="run history: postgresql://user@host/db (shared with other hosts), "
        "sqlite:///path/file.db or a file path, memory:// (default: $ASYNCDAG_STORAGE_URL, "
        "else the SQLite file the CLI shares, under $ASYNCDAG_HOME)",
    )
    parser.add_argument(
        "--jaeger-url",
        metavar="URL",
        default=None,
        help="link trace ids to this Jaeger UI (default $ASYNCDAG_JAEGER_URL)",
    )
    parser.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    from asyncdag.cli._common import loaded_pipelines

    pipelines = loaded_pipelines(args)
    if args.pipeline is not None:
        from asyncdag._workspace import select_pipeline

        pipelines = {args.pipeline: select_pipeline(pipelines, args.pipeline)}
    serve(
        pipelines,
        host=args.host,
        port=args.port,
        storage_url=args.storage,
        jaeger_url=args.jaeger_url,
    )
    return 0


def serve(
    pipelines: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 3000,
    storage_url: str | None = None,
    jaeger_url: str | None = None,
    storage_path: str | None = None,
) -> None:
    """Serve the UI with uvicorn until interrupted, on the run history the CLI shares.

    ``storage_url`` is any storage URL or path (see :func:`asyncdag.storage.open_storage`);
    without it, ``$ASYNCDAG_STORAGE_URL``, else the CLI's SQLite file.  ``storage_path``
    is its older name.
    """
    import uvicorn

    from asyncdag import telemetry
    from asyncdag._errors import AsyncdagError
    from asyncdag.storage import open_storage

    from ._app import create_app

    storage = open_storage(storage_url or storage_path)
    storage.open()  # a bad URL or a server that does not answer fails now, naming it
    try:
        telemetry.configure_from_env()
    except AsyncdagError as exc:  # tracing is optional: a bad OTEL_* setting must not stop the UI
        print(f"asyncdag ui: tracing not configured: {exc}", file=sys.stderr)
    app = create_app(pipelines, storage=storage, jaeger_url=jaeger_url)
    shown = "localhost" if host in ("127.0.0.1", "::1") else host
    print(
        f"asyncdag ui: serving {len(pipelines)} pipeline(s) on http://{shown}:{port}, "
        f"runs in {storage}",
        file=sys.stderr,
    )
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=3)
    finally:
        storage.close()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m asyncdag.ui.cli -f FILE``: the ``ui`` command on its own."""
    parser = argparse.ArgumentParser(prog="asyncdag")
    subparsers = parser.add_subparsers(dest="command", required=True)
    register(subparsers)
    args = parser.parse_args(["ui", *(sys.argv[1:] if argv is None else argv)])
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
