"""The JSON API under ``/api``: one small function per endpoint, and the table that declares them.

Handlers find the app's pipelines, live runs and server info on
``request.app.state.ui`` (a :class:`UIState`), so each is a plain function of
its request, in the manner of Starlette's endpoints.  :data:`ENDPOINTS` is the
one declaration the routes and the OpenAPI document are both made from.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anyio
import attrs
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from asyncdag._definitions import PipelineDefinition
from asyncdag._errors import AsyncdagError, ConfigError
from asyncdag._events import StepStatus
from asyncdag._workspace import (
    STEP_SUMMARY_EVENTS,
    describe_pipeline,
    graph_view,
    pipeline_summary,
    summarize_steps,
)
from asyncdag.storage import StorageError

from ._automation import AUTOMATION_ENDPOINTS
from ._config_check import check_config, scaffold_yaml
from ._http import (
    ApiError,
    Endpoint,
    JSONBody,
    Param,
    int_query,
    int_value,
    json_body,
    statuses,
    tags_of,
)
from ._live import BATCH_SIZE, LiveRuns, UINotRunningError

__all__ = ["ENDPOINTS", "UIState"]


@attrs.frozen
class UIState:
    """What every handler needs: the loaded pipelines, the live runs, and the server's info.

    ``automation`` holds the schedules and sensors by name; ``scheduler`` the one the
    app's lifespan runs (None with ``run_schedules=False``).
    """

    pipelines: Mapping[str, PipelineDefinition]
    live: LiveRuns
    info: Mapping[str, Any]
    automation: Mapping[str, Any] = attrs.field(factory=dict)
    scheduler: Any = None


_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _state(request: Request) -> UIState:
    state: UIState = request.app.state.ui
    return state


def _pipeline_named(request: Request, name: str) -> PipelineDefinition:
    pipelines = _state(request).pipelines
    try:
        return pipelines[name]
    except KeyError:
        known = ", ".join(sorted(pipelines)) or "none"
        raise ApiError(404, f"no pipeline named {name!r}; loaded: {known}") from None


async def _run_named(request: Request) -> dict[str, Any]:
    run_id = request.path_params["run_id"]
    record = await _state(request).live.get_run(run_id)
    if record is None:
        raise ApiError(404, f"no run {run_id!r} in this server's run storage")
    return record


# --- pipelines ------------------------------------------------------------------------------


async def get_info(request: Request) -> Response:
    state = _state(request)
    return JSONBody({**state.info, "pipelines": sorted(state.pipelines)})


async def list_pipelines(request: Request) -> Response:
    pipelines = _state(request).pipelines.values()
    return JSONBody({"pipelines": [pipeline_summary(p) for p in pipelines]})


async def get_pipeline(request: Request) -> Response:
    return JSONBody(describe_pipeline(_pipeline_named(request, request.path_params["name"])))


async def get_graph(request: Request) -> Response:
    import anyio.to_thread

    pipeline = _pipeline_named(request, request.path_params["name"])
    # Collapsing 100,000 nodes takes a moment: not on the event loop.
    return JSONBody(await anyio.to_thread.run_sync(graph_view, pipeline))


async def get_config_schema(request: Request) -> Response:
    from asyncdag.config import run_config_json_schema

    pipeline = _pipeline_named(request, request.path_params["name"])
    return JSONBody(run_config_json_schema(pipeline))


async def get_scaffold(request: Request) -> Response:
    from asyncdag.config import default_run_config

    config = default_run_config(_pipeline_named(request, request.path_params["name"]))
    return JSONBody({"config": config, "yaml": scaffold_yaml(config)})


async def _checked(
    pipeline: PipelineDefinition, body: Mapping[str, Any]
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """check_config in a worker thread: parsing a large config must not stall the event loop."""
    return await anyio.to_thread.run_sync(check_config, pipeline, body)


async def validate(request: Request) -> Response:
    pipeline = _pipeline_named(request, request.path_params["name"])
    body = await json_body(request)
    _, errors = await _checked(pipeline, body)
    return JSONBody({"valid": not errors, "errors": errors})


# --- launching ------------------------------------------------------------------------------


def _launch_error(exc: Exception) -> ApiError:
    """What launching a run raised, as the API says it: 503 with no lifespan or no history
    to record it in, else 422."""
    if isinstance(exc, UINotRunningError):
        return ApiError(503, str(exc))
    if isinstance(exc, StorageError):  # the run history cannot record it: nothing ran
        return ApiError(503, f"the run was not started: {exc}")
    if isinstance(exc, ConfigError):
        errors = [{"path": e.path, "message": e.message, "line": None} for e in exc.errors]
        return ApiError(422, str(exc), errors=errors)
    return ApiError(422, str(exc))


def _loaded_pipeline_of(
    request: Request, record: Mapping[str, Any], verb: str
) -> PipelineDefinition:
    pipeline = _state(request).pipelines.get(record["pipeline_name"])
    if pipeline is None:
        raise ApiError(
            409,
            f"run {record['run_id']!r} is of pipeline {record['pipeline_name']!r}, which "
            f"this server did not load; start the UI with its file (-f) to {verb} it",
        )
    return pipeline


async def _start(
    request: Request, pipeline: PipelineDefinition, body: Mapping[str, Any], parent: str | None
) -> Response:
    live = _state(request).live
    tags = tags_of(body)
    config, errors = await _checked(pipeline, body)
    if errors:
        raise ApiError(422, f"the run config has {len(errors)} error(s)", errors=errors)
    try:
        handle = await live.launch(pipeline, config, tags=tags, parent_run_id=parent)
    except (
        AsyncdagError
    ) as exc:  # config was checked above; kept for config that resolves differently
        raise _launch_error(exc) from None
    record = await live.get_run(handle.run_id)
    return JSONBody({"run_id": handle.run_id, "run": record}, status_code=201)


async def launch(request: Request) -> Response:
    body = await json_body(request)
    name = body.get("pipeline")
    if not isinstance(name, str) or not name:
        raise ApiError(400, "say which pipeline to run: {'pipeline': NAME, 'yaml': ...}")
    pipeline = _pipeline_named(request, name)
    parent = body.get("parent_run_id")
    if parent is not None and not isinstance(parent, str):
        raise ApiError(400, "`parent_run_id` must be a run id string")
    return await _start(request, pipeline, body, parent)


async def rerun(request: Request) -> Response:
    record = await _run_named(request)
    pipeline = _loaded_pipeline_of(request, record, "re-run")
    body = {"config": record["run_config"] or {}, "tags": record["tags"] or {}}
    return await _start(request, pipeline, body, record["run_id"])


async def reexecute(request: Request) -> Response:
    """Re-execute a recorded run: from its failure, or the steps the body selects."""
    record = await _run_named(request)
    body = await json_body(request)
    from_failure = body.get("from_failure", False)
    steps = body.get("steps")
    if not isinstance(from_failure, bool):
        raise ApiError(400, "`from_failure` must be true or false")
    if steps is not None and (
        not isinstance(steps, list) or not steps or not all(isinstance(s, str) and s for s in steps)
    ):
        raise ApiError(400, "`steps` must be a non-empty list of selection strings ('fetch*')")
    if from_failure and steps is not None:
        raise ApiError(400, "give `from_failure` or `steps`, not both")
    if not from_failure and steps is None:
        raise ApiError(400, "say what to re-execute: {'from_failure': true} or {'steps': [...]}")
    if record["status"] not in ("SUCCESS", "FAILURE", "CANCELED"):
        raise ApiError(409, f"run {record['run_id']!r} has not ended; re-execute it once it has")
    pipeline = _loaded_pipeline_of(request, record, "re-execute")
    live = _state(request).live
    try:
        handle = await live.launch(
            pipeline,
            None,
            tags=None,
            reexecute_from=record["run_id"],
            from_failure=from_failure,
            step_selection=steps,
        )
    except AsyncdagError as exc:  # a ReexecutionError, a ConfigError of a subset, no lifespan
        raise _launch_error(exc) from None
    return JSONBody(
        {"run_id": handle.run_id, "run": await live.get_run(handle.run_id)}, status_code=201
    )


async def cancel(request: Request) -> Response:
    record = await _run_named(request)
    handle = _state(request).live.handle(record["run_id"])
    if handle is None or handle.done:
        if record["status"] in ("SUCCESS", "FAILURE", "CANCELED"):
            raise ApiError(
                409,
                f"run {record['run_id']!r} already ended {record['status']}; nothing to cancel",
            )
        raise ApiError(
            409,
            f"run {record['run_id']!r} is executing in another process (pid {record['pid']} "
            f"on {record['hostname']}); cancel it there (Ctrl-C)",
        )
    handle.cancel()
    return JSONBody({"run_id": record["run_id"], "status": "CANCELING"}, status_code=202)


# --- run history and live feeds -------------------------------------------------------------


async def list_runs(request: Request) -> Response:
    limit = int_query(request, "limit", 200, minimum=1)
    offset = int_query(request, "offset", 0, minimum=0)
    runs = await _state(request).live.list_runs(
        pipeline_name=request.query_params.get("pipeline") or None,
        status=statuses(request),
        limit=limit,
        offset=offset,
        root_run_id=request.query_params.get("root") or None,
    )
    return JSONBody({"runs": runs})


async def runs_stream(request: Request) -> Response:
    feed = _state(request).live.runs_feed(
        pipeline_name=request.query_params.get("pipeline") or None,
        status=statuses(request),
        limit=int_query(request, "limit", 200, minimum=1),
    )
    return StreamingResponse(feed, media_type="text/event-stream", headers=_SSE_HEADERS)


async def get_run(request: Request) -> Response:
    record = await _run_named(request)
    handle = _state(request).live.handle(record["run_id"])
    if handle is not None:
        record["trace_id"] = handle.trace_id
    return JSONBody(record)


async def get_events(request: Request) -> Response:
    record = await _run_named(request)
    after = int_query(request, "after", -1, minimum=-1)
    limit = int_query(request, "limit", BATCH_SIZE, minimum=1)
    events, done = await _state(request).live.get_events(record["run_id"], after=after, limit=limit)
    cursor = events[-1]["seq"] if events else after
    return JSONBody({"events": events, "cursor": cursor, "done": done and len(events) < limit})


async def get_steps(request: Request) -> Response:
    import anyio.to_thread

    record = await _run_named(request)
    wanted = _step_statuses(request)
    live = _state(request).live
    handle = live.handle(record["run_id"])
    if handle is not None:
        events = list(handle.event_log)
    else:
        events = await live.storage.get_events(record["run_id"], types=STEP_SUMMARY_EVENTS)
    finished = record["status"] in ("SUCCESS", "FAILURE", "CANCELED")
    rows = await anyio.to_thread.run_sync(lambda: summarize_steps(events, run_finished=finished))
    return JSONBody(
        {"steps": [row.to_dict() for row in rows if not wanted or row.status in wanted]}
    )


def _step_statuses(request: Request) -> set[str]:
    value = request.query_params.get("status") or ""
    wanted = {part.strip().upper() for part in value.split(",") if part.strip()}
    unknown = wanted - {s.value for s in StepStatus}
    if unknown:
        valid = ", ".join(s.value for s in StepStatus)
        raise ApiError(400, f"unknown step status {sorted(unknown)[0]!r}; use one of {valid}")
    return wanted


async def events_stream(request: Request) -> Response:
    record = await _run_named(request)
    header = request.headers.get("last-event-id")
    if header:
        after = int_value(header, "Last-Event-ID (an event seq)", -1, minimum=-1)
    else:
        after = int_query(request, "after", -1, minimum=-1)
    feed = _state(request).live.event_feed(record["run_id"], after=after)
    return StreamingResponse(feed, media_type="text/event-stream", headers=_SSE_HEADERS)


# --- the table ------------------------------------------------------------------------------

_CONFIG_BODY: dict[str, Any] = {
    "type": "object",
    "properties": {
        "yaml": {"type": "string", "description": "run config as YAML text"},
        "config": {"type": "object", "description": "run config as JSON (wins over yaml)"},
    },
}
_LAUNCH_BODY = {
    "type": "object",
    "required": ["pipeline"],
    "properties": {
        "pipeline": {"type": "string"},
        **_CONFIG_BODY["properties"],
        "tags": {"type": "object", "additionalProperties": {"type": "string"}},
        "parent_run_id": {"type": "string"},
    },
}
_NAME = Param("name", "path", "pipeline name", required=True)
_RUN_ID = Param("run_id", "path", "run id", required=True)
_AFTER = Param("after", "query", "return events with seq > after", {"type": "integer"})
_RUN_FILTERS = (
    Param("pipeline", "query", "only runs of this pipeline"),
    Param("status", "query", "comma-separated run statuses"),
    Param("limit", "query", "most runs returned (default 200)", {"type": "integer"}),
)

ENDPOINTS: list[Endpoint] = [
    Endpoint("GET", "/api/info", get_info, "Server version, options and pipeline names"),
    Endpoint("GET", "/api/pipelines", list_pipelines, "Every loaded pipeline"),
    Endpoint(
        "GET",
        "/api/pipelines/{name}",
        get_pipeline,
        "A pipeline's graph: nodes with their solid's details, and edges",
        (_NAME,),
        responses={200: "OK", 404: "no such pipeline"},
    ),
    Endpoint(
        "GET",
        "/api/pipelines/{name}/graph",
        get_graph,
        "The graph to draw: as /api/pipelines/{name} up to 2,000 nodes, past that collapsed "
        "into groups of nodes running the same solid in the same place (each with `members`)",
        (_NAME,),
        responses={200: "OK", 404: "no such pipeline"},
    ),
    Endpoint(
        "GET",
        "/api/pipelines/{name}/config-schema",
        get_config_schema,
        "The JSON Schema of the pipeline's run config",
        (_NAME,),
        responses={200: "OK", 404: "no such pipeline"},
    ),
    Endpoint(
        "GET",
        "/api/pipelines/{name}/scaffold",
        get_scaffold,
        "A run config to start from, with defaults and typed placeholders",
        (_NAME,),
        responses={200: "OK", 404: "no such pipeline"},
    ),
    Endpoint(
        "POST",
        "/api/pipelines/{name}/validate",
        validate,
        "Check run config; every error with its path (and YAML line)",
        (_NAME,),
        body=_CONFIG_BODY,
        responses={200: "validity and errors", 400: "malformed request", 404: "no such pipeline"},
    ),
    Endpoint(
        "GET",
        "/api/runs",
        list_runs,
        "Run history, newest first",
        (
            *_RUN_FILTERS,
            Param("offset", "query", "skip this many", {"type": "integer"}),
            Param("root", "query", "only the runs of this run's re-execution chain"),
        ),
        responses={200: "OK", 400: "bad filter"},
    ),
    Endpoint(
        "POST",
        "/api/runs",
        launch,
        "Launch a run",
        body=_LAUNCH_BODY,
        responses={
            201: "launched",
            400: "malformed request",
            404: "no such pipeline",
            422: "invalid run config",
            503: "the app's lifespan is not running",
        },
    ),
    Endpoint(
        "GET",
        "/api/runs/stream",
        runs_stream,
        "Server-Sent Events: `runs` messages with the run list whenever it changes",
        _RUN_FILTERS,
        responses={200: "text/event-stream", 400: "bad filter"},
        streams=True,
    ),
    Endpoint(
        "GET",
        "/api/runs/{run_id}",
        get_run,
        "One run",
        (_RUN_ID,),
        responses={200: "OK", 404: "no such run"},
    ),
    Endpoint(
        "GET",
        "/api/runs/{run_id}/events",
        get_events,
        "A page of a run's events after a cursor (seq)",
        (_RUN_ID, _AFTER, Param("limit", "query", "page size", {"type": "integer"})),
        responses={200: "OK", 400: "bad cursor", 404: "no such run"},
    ),
    Endpoint(
        "GET",
        "/api/runs/{run_id}/steps",
        get_steps,
        "Each step of a run: status, attempts, times, and for a failed one its error "
        "(type, message, traceback)",
        (_RUN_ID, Param("status", "query", "only steps in these comma-separated statuses")),
        responses={200: "OK", 400: "bad status", 404: "no such run"},
    ),
    Endpoint(
        "GET",
        "/api/runs/{run_id}/events/stream",
        events_stream,
        "Server-Sent Events: `events` batches (id = last seq) until one `end`; "
        "resumes after Last-Event-ID",
        (_RUN_ID, _AFTER, Param("Last-Event-ID", "header", "resume after this seq")),
        responses={200: "text/event-stream", 400: "bad cursor", 404: "no such run"},
        streams=True,
    ),
    Endpoint(
        "POST",
        "/api/runs/{run_id}/cancel",
        cancel,
        "Cancel a run this server is executing",
        (_RUN_ID,),
        responses={202: "canceling", 404: "no such run", 409: "finished or not ours"},
    ),
    Endpoint(
        "POST",
        "/api/runs/{run_id}/rerun",
        rerun,
        "Launch a new run with a run's pipeline, config and tags",
        (_RUN_ID,),
        responses={201: "launched", 404: "no such run", 409: "pipeline not loaded", 422: "invalid"},
    ),
    Endpoint(
        "POST",
        "/api/runs/{run_id}/reexecute",
        reexecute,
        "Re-execute a run from its failure (`from_failure`) or for selected steps (`steps`, "
        "Dagster's syntax); the other steps' outputs are reused from the run's stored outputs",
        (_RUN_ID,),
        body={
            "type": "object",
            "properties": {
                "from_failure": {"type": "boolean"},
                "steps": {"type": "array", "items": {"type": "string"}},
            },
        },
        responses={
            201: "launched",
            400: "malformed request",
            404: "no such run",
            409: "run not ended, or its pipeline not loaded",
            422: "cannot be re-executed as asked",
            503: "the app's lifespan is not running",
        },
    ),
    *AUTOMATION_ENDPOINTS,
]
