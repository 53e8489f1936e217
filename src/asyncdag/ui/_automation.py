"""Schedules and sensors in the web UI: the API the Automation page uses, and hosting the scheduler.

The app's lifespan hosts a :class:`~asyncdag.automation.Scheduler` (unless
``run_schedules=False``) whose runs are launched through :class:`LiveRuns`, so a
scheduled run shows live like one launched from the page.  Listing and
toggling work either way: the state lives in the run storage, shared with
``asyncdag scheduler run`` and ``asyncdag schedule start|stop``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from asyncdag.automation._definitions import AutomationDefinition
from asyncdag.automation._status import describe, lookup, set_running, tick_data

from ._http import ApiError, Endpoint, Param, int_query, json_body

if TYPE_CHECKING:
    from asyncdag._api import RunHandle
    from asyncdag._definitions import PipelineDefinition
    from asyncdag.automation import Scheduler

    from ._live import LiveRuns

__all__ = ["AUTOMATION_ENDPOINTS", "live_launcher"]


def live_launcher(live: LiveRuns) -> Any:
    """A scheduler launcher that starts runs in the UI's own task group, so they show live."""

    async def launch(
        pipeline: PipelineDefinition,
        run_config: Mapping[str, Any],
        *,
        tags: Mapping[str, str],
        run_id: str,
    ) -> RunHandle:
        return await live.launch(pipeline, run_config, tags=tags, run_id=run_id)

    return launch


def _automation(request: Request) -> Mapping[str, AutomationDefinition]:
    found: Mapping[str, AutomationDefinition] = request.app.state.ui.automation
    return found


def _scheduler(request: Request) -> Scheduler | None:
    found: Scheduler | None = request.app.state.ui.scheduler
    return found


def _now(request: Request) -> float:
    scheduler = _scheduler(request)
    return scheduler.clock.now() if scheduler is not None else time.time()


def _named(request: Request) -> AutomationDefinition:
    from asyncdag.automation._status import UnknownInstigatorError

    try:
        return lookup(_automation(request), request.path_params["name"])
    except UnknownInstigatorError as exc:
        raise ApiError(404, str(exc)) from None


async def list_automation(request: Request) -> Response:
    storage = request.app.state.ui.live.storage
    pipeline = request.query_params.get("pipeline") or None
    now = _now(request)
    rows = [
        await describe(d, storage, now=now, next_ticks=5)
        for d in _automation(request).values()
        if pipeline is None or d.pipeline.name == pipeline
    ]
    return JSONResponse({"automation": rows, "scheduler_running": _scheduler(request) is not None})


async def get_automation(request: Request) -> Response:
    definition = _named(request)
    storage = request.app.state.ui.live.storage
    return JSONResponse(await describe(definition, storage, now=_now(request), next_ticks=5))


async def list_ticks(request: Request) -> Response:
    definition = _named(request)
    storage = request.app.state.ui.live.storage
    limit = int_query(request, "limit", 50, minimum=1)
    before_text = request.query_params.get("before")
    before = None
    if before_text:
        try:
            before = float(before_text)
        except ValueError:
            raise ApiError(
                400, f"`before` must be a tick time (seconds), got {before_text!r}"
            ) from None
    ticks = await storage.list_ticks(definition.name, limit=limit, before=before)
    return JSONResponse({"ticks": [tick_data(t, definition) for t in ticks]})


async def set_status(request: Request) -> Response:
    definition = _named(request)
    body = await json_body(request)
    wanted = body.get("status")
    if not isinstance(wanted, str) or wanted.upper() not in ("RUNNING", "STOPPED"):
        raise ApiError(400, 'send {"status": "RUNNING"} or {"status": "STOPPED"}')
    storage = request.app.state.ui.live.storage
    now = _now(request)
    await set_running(storage, definition, wanted.upper() == "RUNNING", now=now)
    scheduler = _scheduler(request)
    if scheduler is not None:
        scheduler.wake(definition.name)
    return JSONResponse(await describe(definition, storage, now=now, next_ticks=5))


_NAME = Param("name", "path", "schedule or sensor name", required=True)

AUTOMATION_ENDPOINTS: list[Endpoint] = [
    Endpoint(
        "GET",
        "/api/automation",
        list_automation,
        "Every schedule and sensor: state, next ticks, last tick",
        (Param("pipeline", "query", "only those of this pipeline"),),
    ),
    Endpoint(
        "GET",
        "/api/automation/{name}",
        get_automation,
        "One schedule or sensor",
        (_NAME,),
        responses={200: "OK", 404: "no such schedule or sensor"},
    ),
    Endpoint(
        "GET",
        "/api/automation/{name}/ticks",
        list_ticks,
        "A schedule's or sensor's ticks, newest first, with the runs they started",
        (
            _NAME,
            Param("limit", "query", "most ticks returned (default 50)", {"type": "integer"}),
            Param("before", "query", "only ticks before this time (seconds)", {"type": "number"}),
        ),
        responses={200: "OK", 400: "bad paging", 404: "no such schedule or sensor"},
    ),
    Endpoint(
        "POST",
        "/api/automation/{name}/status",
        set_status,
        "Turn a schedule or sensor on or off",
        (_NAME,),
        body={
            "type": "object",
            "required": ["status"],
            "properties": {"status": {"type": "string", "enum": ["RUNNING", "STOPPED"]}},
        },
        responses={
            200: "the new state",
            400: "malformed request",
            404: "no such schedule or sensor",
        },
    ),
]
