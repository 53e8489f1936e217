"""The ASGI app: the JSON API, the live feeds, and the static front end, mountable anywhere.

Every URL the page uses is relative to the app's root (the HTML carries a
``<base href>`` set from the ASGI ``root_path``), so ``app.mount("/dag", ui)``
in a Starlette or FastAPI service works without configuration.  Pages are
routed in the browser by the URL fragment (``#/runs/<id>``), so the server
serves one HTML file.
"""

from __future__ import annotations

import contextlib
import html
import os
from collections.abc import AsyncIterator, Iterable, Mapping
from importlib import resources
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from asyncdag._definitions import PipelineDefinition
from asyncdag._errors import AsyncdagError
from asyncdag._version import __version__

from ._automation import live_launcher
from ._endpoints import ENDPOINTS, UIState
from ._guard import DEFAULT_MAX_BODY_BYTES, GuardPolicy, RequestGuard
from ._http import JSONBody, openapi_document, routes
from ._live import LiveRuns

if TYPE_CHECKING:
    from asyncdag.automation import Clock
    from asyncdag.automation._definitions import ScheduleDefinition, SensorDefinition
    from asyncdag.outputs import OutputStore
    from asyncdag.storage import RunStorage

__all__ = ["create_app"]

_STATIC = resources.files("asyncdag.ui") / "static"


def _pipelines_by_name(
    pipelines: Iterable[PipelineDefinition] | Mapping[str, PipelineDefinition],
) -> dict[str, PipelineDefinition]:
    items = pipelines.values() if isinstance(pipelines, Mapping) else pipelines
    out: dict[str, PipelineDefinition] = {}
    for pipeline in items:
        if not isinstance(pipeline, PipelineDefinition):
            raise AsyncdagError(
                f"create_app(pipelines=...) takes pipelines made with @pipeline, got {pipeline!r}"
            )
        if pipeline.name in out and out[pipeline.name] is not pipeline:
            raise AsyncdagError(
                f"two pipelines are named {pipeline.name!r}; give one another name with "
                "@pipeline(name=...)"
            )
        out[pipeline.name] = pipeline
    return out


def _root_path(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


def create_app(
    pipelines: Iterable[PipelineDefinition] | Mapping[str, PipelineDefinition] = (),
    *,
    storage: RunStorage | None = None,
    jaeger_url: str | None = None,
    title: str = "asyncdag",
    allowed_hosts: Iterable[str] | None = None,
    auth_token: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    schedules: Iterable[ScheduleDefinition] = (),
    sensors: Iterable[SensorDefinition] = (),
    run_schedules: bool = True,
    clock: Clock | None = None,
    output_store: OutputStore | None = None,
    persist_outputs: bool = True,
) -> Starlette:
    """The web UI as an ASGI app: the pipelines' graphs, a config playground, live runs.

    ``storage`` keeps the run history (default: an in-memory store, gone with
    the process; ``asyncdag ui`` passes the SQLite store the CLI shares).
    ``jaeger_url`` (default ``$ASYNCDAG_JAEGER_URL``) turns trace ids into
    links to ``<jaeger_url>/trace/<id>``.

    The UI runs code, so it guards itself wherever it is mounted: changes
    (launch, cancel, re-run, validate) only from its own pages, with a JSON body
    of at most ``max_body_bytes`` (1 MiB); a Content-Security-Policy and no
    framing on every response.  ``allowed_hosts`` (names or addresses,
    ``*.example.com``, or ``*``) refuses any other ``Host`` header, against DNS
    rebinding; the default ``None`` leaves the Host to the app you mount the UI in
    (Starlette's ``TrustedHostMiddleware``), since only it knows its names.
    ``asyncdag ui`` passes the localhost names and the bound address.
    ``auth_token`` (16+ URL-safe characters) makes every request show it:
    ``Authorization: Bearer``, or open the page once with ``?token=`` and the
    server keeps it in an HttpOnly, SameSite=Strict cookie.

    Launched runs live in a task group the app's lifespan opens.  Mounted in
    another app, enter that lifespan from the host's own, since Starlette does
    not run a mounted app's lifespan::

        ui = create_app([my_pipeline], storage=SqliteStorage())

        @contextlib.asynccontextmanager
        async def lifespan(app):
            async with ui.router.lifespan_context(ui):
                yield

        app = Starlette(routes=[Mount("/dag", app=ui)], lifespan=lifespan)

    ``schedules`` and ``sensors`` are listed on the Automation page, where they
    can be turned on and off; the lifespan also runs them (with ``clock``,
    default the system's) unless ``run_schedules=False``, their runs launched
    like the page's own.  Another process (``asyncdag scheduler run``) may run
    the same ones on the same storage: each tick still runs once.

    Runs launched here store their steps' outputs, so a failed run can be
    re-executed from its page: in ``output_store``, else (unless
    ``persist_outputs=False``) the default location, ``$ASYNCDAG_HOME/outputs``.
    """
    policy = GuardPolicy(
        allowed_hosts=allowed_hosts, auth_token=auth_token, max_body_bytes=max_body_bytes
    )
    if storage is None:
        from asyncdag.storage import InMemoryStorage

        storage = InMemoryStorage()
    from asyncdag.automation._status import by_name as automation_by_name

    automation = automation_by_name([*schedules, *sensors])
    by_name = _pipelines_by_name(pipelines)
    for definition in automation.values():  # a schedule's pipeline is served too
        by_name.setdefault(definition.pipeline.name, definition.pipeline)
    if output_store is None and persist_outputs:
        from asyncdag.outputs import FilesystemOutputStore

        output_store = FilesystemOutputStore()
    live = LiveRuns(storage, output_store=output_store)
    scheduler = None
    if run_schedules and automation:
        from asyncdag.automation import Scheduler

        scheduler = Scheduler(
            automation.values(), storage=storage, clock=clock, launcher=live_launcher(live)
        )
    jaeger = jaeger_url if jaeger_url is not None else os.environ.get("ASYNCDAG_JAEGER_URL")
    info = {
        "title": title,
        "version": __version__,
        "jaeger_url": jaeger.rstrip("/") if jaeger else None,
    }
    index_template = (_STATIC / "index.html").read_text(encoding="utf-8")

    async def index(request: Request) -> Response:
        page = index_template.replace("__BASE__", html.escape(_root_path(request) + "/"))
        page = page.replace("__TITLE__", html.escape(title))
        return HTMLResponse(page, headers={"Cache-Control": "no-cache"})

    async def openapi_json(request: Request) -> Response:
        document = openapi_document(
            ENDPOINTS, server_url=_root_path(request), version=str(info["version"])
        )
        return JSONBody(document)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        message = exc.detail
        if exc.status_code == 404:
            message = f"nothing at {request.url.path}; the API is described at api/openapi.json"
        return JSONBody(
            {"error": message}, status_code=exc.status_code, headers=exc.headers or None
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with live.running():
            if scheduler is None:
                yield
                return
            async with scheduler.running():  # stops before the live runs are cancelled
                yield

    app = Starlette(
        routes=[
            Route("/", index, methods=["GET"]),
            Route("/api/openapi.json", openapi_json, methods=["GET"]),
            *routes(ENDPOINTS),
            Mount("/static", app=StaticFiles(directory=str(_STATIC)), name="static"),
        ],
        middleware=[Middleware(RequestGuard, policy=policy)],
        exception_handlers={HTTPException: http_error},
        lifespan=lifespan,
    )
    app.state.ui = UIState(
        pipelines=by_name, live=live, info=info, automation=automation, scheduler=scheduler
    )
    app.state.live = live
    app.state.pipelines = by_name
    app.state.storage = storage
    return app


def static_dir() -> Any:
    """Where the front end's files are (for tests and packaging checks)."""
    return _STATIC
