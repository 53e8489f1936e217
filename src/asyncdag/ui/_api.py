"""The JSON API under ``/api``, and the OpenAPI document generated from the same table.

Each endpoint is declared once in :data:`ENDPOINTS`-building code below
(method, path, parameters, body, responses), so the routes Starlette serves
and the document at ``/api/openapi.json`` cannot disagree.  Handlers turn
every bad request into a 4xx with a JSON ``{"error": ...}``: a client never
learns about a mistake from a 500.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import attrs
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from asyncdag._definitions import Collect, Constant, FanIn, FromOutput, PipelineDefinition
from asyncdag._errors import AsyncdagError, ConfigError
from asyncdag._events import RunStatus
from asyncdag.storage import StorageError
from asyncdag.storage._codec import dumps

from ._live import BATCH_SIZE, LiveRuns, UINotRunningError, storage_error_in

__all__ = ["ApiError", "SafeJSONResponse", "build_api"]

Handler = Callable[[Request], Awaitable[Response]]


class SafeJSONResponse(JSONResponse):
    """JSON any browser parses, whatever a run stored: ``NaN`` and the infinities as the
    strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``, lone surrogates escaped, values JSON
    has no type for as their nearest JSON value.  Starlette's own would raise (a 500) on
    the first two."""

    def render(self, content: Any) -> bytes:
        return dumps(content, strict=True).encode("ascii")


class ApiError(Exception):
    """A request the API refuses: rendered as ``{"error": message, ...extra}`` with ``status``."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra

    def response(self) -> SafeJSONResponse:
        return SafeJSONResponse({"error": self.message, **self.extra}, status_code=self.status)


@attrs.frozen
class Param:
    name: str
    where: str  # "path", "query" or "header"
    description: str
    schema: Mapping[str, Any] = attrs.field(factory=lambda: {"type": "string"})
    required: bool = False


@attrs.frozen
class Endpoint:
    method: str
    path: str
    handler: Handler
    summary: str
    params: tuple[Param, ...] = ()
    body: Mapping[str, Any] | None = None
    responses: Mapping[int, str] = attrs.field(factory=lambda: {200: "OK"})
    streams: bool = False


# --- describing pipelines -------------------------------------------------------------------


def _type_name(annotation: Any) -> str:
    if annotation is inspect.Parameter.empty or annotation is inspect.Signature.empty:
        return "Any"
    if isinstance(annotation, str):
        return annotation
    if getattr(annotation, "__module__", None) == "builtins":
        return str(annotation.__name__)
    return str(annotation).replace("typing.", "")


def _output_type(solid: Any) -> str:
    try:
        return _type_name(inspect.signature(solid.fn).return_annotation)
    except (TypeError, ValueError):
        return "Any"


def _source(source: Any) -> dict[str, Any]:
    if isinstance(source, FromOutput):
        return {"kind": "output", "node": source.node, "output": source.output}
    if isinstance(source, FanIn):
        return {"kind": "fan_in", "sources": [_source(s) for s in source.sources]}
    if isinstance(source, Constant):
        return {"kind": "constant", "value": repr(source.value)[:200]}
    if isinstance(source, Collect):
        return {
            "kind": "collect",
            "node": source.node,
            "output": source.output,
            "producer": source.producer,
            "producer_output": source.producer_output,
        }
    return {"kind": "unknown"}


def _outputs(solid: Any) -> list[dict[str, Any]]:
    from asyncdag import DynamicOut

    if not solid.outs:
        return [{"name": "result", "type": _output_type(solid), "required": True, "dynamic": False}]
    return [
        {
            "name": name,
            "type": "Any",
            "required": getattr(out, "is_required", True),
            "dynamic": isinstance(out, DynamicOut),
        }
        for name, out in solid.outs.items()
    ]


def _node(node: Any) -> dict[str, Any]:
    from asyncdag.config import config_json_schema

    solid = node.solid
    inputs = []
    for input_def in solid.input_defs:
        source = node.inputs.get(input_def.name)
        inputs.append(
            {
                "name": input_def.name,
                "type": _type_name(input_def.annotation),
                "has_default": input_def.has_default,
                "source": _source(source) if source is not None else {"kind": "config"},
            }
        )
    policy = solid.retry_policy
    return {
        "name": node.name,
        "solid": solid.name,
        "description": solid.description,
        "is_async": solid.is_async,
        "inputs": inputs,
        "outputs": _outputs(solid),
        "mapped_over": (
            {"node": node.dynamic[0], "output": node.dynamic[1]} if node.dynamic else None
        ),
        "after": list(node.after),
        "config_schema": (
            config_json_schema(solid.config_schema) if solid.config_schema is not None else None
        ),
        "pool": solid.pool,
        "retry_policy": policy.describe() if policy is not None else None,
        "timeout": solid.timeout,
        "tags": dict(solid.tags),
        "required_resources": sorted(solid.required_resources),
        "upstream": list(node.upstream),
    }


def _edges(pipeline: PipelineDefinition) -> list[dict[str, Any]]:
    edges: list[dict[str, Any]] = []
    for node in pipeline.nodes.values():
        for input_name, source in node.inputs.items():
            items = source.sources if isinstance(source, FanIn) else (source,)
            for item in items:
                if isinstance(item, FromOutput | Collect):
                    edges.append(
                        {
                            "from": item.node,
                            "output": item.output,
                            "to": node.name,
                            "input": input_name,
                        }
                    )
        for before in node.after:
            edges.append({"from": before, "output": None, "to": node.name, "input": None})
    return edges


def pipeline_summary(pipeline: PipelineDefinition) -> dict[str, Any]:
    return {
        "name": pipeline.name,
        "description": pipeline.description,
        "step_count": len(pipeline.nodes),
        "tags": dict(pipeline.tags),
        "resources": sorted(pipeline.resource_defs),
    }


def pipeline_graph(pipeline: PipelineDefinition) -> dict[str, Any]:
    return {
        **pipeline_summary(pipeline),
        "nodes": [_node(node) for node in pipeline.nodes.values()],
        "edges": _edges(pipeline),
    }


# --- run config as YAML text ----------------------------------------------------------------

_PATH_PART = re.compile(r"[^.\[\]]+|\[\d+\]")


def _line_of(root: Any, path: str) -> int | None:
    """The 1-based YAML line of the deepest node along ``path`` (``solids.hey.config[2]``)."""
    import yaml

    node = root
    line = None if node is None else node.start_mark.line + 1
    for part in _PATH_PART.findall(path):
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if getattr(k, "value", None) == part), None)
            if match is None:
                break
            key = next(k for k, v in node.value if v is match)
            node, line = match, key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and part.startswith("["):
            index = int(part[1:-1])
            if index >= len(node.value):
                break
            node = node.value[index]
            line = node.start_mark.line + 1
        else:
            break
    return line


def parse_config(body: Mapping[str, Any]) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The run config a request carries, as ``yaml`` text or a ``config`` object, or its errors."""
    if "config" in body and body["config"] is not None:
        config = body["config"]
        if not isinstance(config, dict):
            raise ApiError(400, "`config` must be a JSON object (or send YAML text as `yaml`)")
        return config, []
    text = body.get("yaml", "")
    if text is None:
        text = ""
    if not isinstance(text, str):
        raise ApiError(400, "`yaml` must be a string of YAML text")
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        line = mark.line + 1 if mark else None
        return None, [{"path": "", "message": f"{where}invalid YAML: {problem}", "line": line}]
    if data is None:
        return {}, []
    if not isinstance(data, dict):
        return None, [
            {
                "path": "",
                "message": f"the run config must be a mapping, got {type(data).__name__}",
                "line": 1,
            }
        ]
    return data, []


def check_config(
    pipeline: PipelineDefinition, body: Mapping[str, Any]
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """Parse and resolve a request's run config: (config, []) or (None, every error with its path)."""
    from asyncdag.config import resolve_run_config

    config, errors = parse_config(body)
    if config is None:
        return None, errors
    try:
        resolve_run_config(pipeline, config)
    except ConfigError as exc:
        root = None
        text = body.get("yaml")
        if isinstance(text, str) and "config" not in body:
            import yaml

            try:
                root = yaml.compose(text)
            except yaml.YAMLError:
                root = None
        return None, [
            {"path": e.path, "message": e.message, "line": _line_of(root, e.path)}
            for e in exc.errors
        ]
    except AsyncdagError as exc:
        return None, [{"path": "", "message": str(exc), "line": None}]
    return config, []


def scaffold_yaml(config: Mapping[str, Any]) -> str:
    import yaml

    return str(yaml.safe_dump(dict(config), sort_keys=False, default_flow_style=False))


# --- request helpers ------------------------------------------------------------------------


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    import json

    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(400, f"the request body must be a JSON object, got {type(body).__name__}")
    return body


def _int_query(request: Request, name: str, default: int, *, minimum: int) -> int:
    value = request.query_params.get(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise ApiError(400, f"query parameter {name!r} must be an integer, got {value!r}") from None
    if number < minimum:
        raise ApiError(400, f"query parameter {name!r} must be >= {minimum}, got {number}")
    return number


def _statuses(request: Request) -> list[RunStatus] | None:
    value = request.query_params.get("status")
    if not value:
        return None
    out = []
    for part in value.split(","):
        try:
            out.append(RunStatus(part.strip().upper()))
        except ValueError:
            valid = ", ".join(s.value for s in RunStatus)
            raise ApiError(400, f"unknown run status {part!r}; use one of {valid}") from None
    return out


def _tags(body: Mapping[str, Any]) -> dict[str, str]:
    tags = body.get("tags") or {}
    if not isinstance(tags, dict) or not all(
        isinstance(k, str) and k and isinstance(v, str | int | float | bool)
        for k, v in tags.items()
    ):
        raise ApiError(400, "`tags` must be an object mapping non-empty names to strings")
    return {k: str(v) for k, v in tags.items()}


_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


# --- the endpoints --------------------------------------------------------------------------

_ERROR = {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}
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


def build_api(
    pipelines: Mapping[str, PipelineDefinition],
    live: LiveRuns,
    *,
    info: Mapping[str, Any],
) -> tuple[list[Endpoint], Callable[[str], dict[str, Any]]]:
    """The endpoints over ``pipelines`` and ``live``, and a function rendering the OpenAPI document."""

    def pipeline_named(request: Request) -> PipelineDefinition:
        name = request.path_params["name"]
        try:
            return pipelines[name]
        except KeyError:
            known = ", ".join(sorted(pipelines)) or "none"
            raise ApiError(404, f"no pipeline named {name!r}; loaded: {known}") from None

    async def run_named(request: Request) -> dict[str, Any]:
        run_id = request.path_params["run_id"]
        record = await live.get_run(run_id)
        if record is None:
            raise ApiError(404, f"no run {run_id!r} in this server's run storage")
        return record

    async def get_info(request: Request) -> Response:
        return SafeJSONResponse({**info, "pipelines": sorted(pipelines)})

    async def list_pipelines(request: Request) -> Response:
        return SafeJSONResponse({"pipelines": [pipeline_summary(p) for p in pipelines.values()]})

    async def get_pipeline(request: Request) -> Response:
        return SafeJSONResponse(pipeline_graph(pipeline_named(request)))

    async def get_config_schema(request: Request) -> Response:
        from asyncdag.config import run_config_json_schema

        return SafeJSONResponse(run_config_json_schema(pipeline_named(request)))

    async def get_scaffold(request: Request) -> Response:
        from asyncdag.config import default_run_config

        config = default_run_config(pipeline_named(request))
        return SafeJSONResponse({"config": config, "yaml": scaffold_yaml(config)})

    async def validate(request: Request) -> Response:
        pipeline = pipeline_named(request)
        body = await _json_body(request)
        _, errors = check_config(pipeline, body)
        return SafeJSONResponse({"valid": not errors, "errors": errors})

    async def start(
        pipeline: PipelineDefinition, body: Mapping[str, Any], parent: str | None
    ) -> Response:
        tags = _tags(body)
        config, errors = check_config(pipeline, body)
        if errors:
            raise ApiError(422, f"the run config has {len(errors)} error(s)", errors=errors)
        try:
            handle = await live.launch(pipeline, config, tags=tags, parent_run_id=parent)
        except UINotRunningError as exc:
            raise ApiError(503, str(exc)) from None
        except StorageError as exc:  # the run history cannot record it: nothing ran
            raise ApiError(503, f"the run was not started: {exc}") from None
        except ConfigError as exc:  # checked above; kept for config that resolves differently
            errors = [{"path": e.path, "message": e.message, "line": None} for e in exc.errors]
            raise ApiError(422, str(exc), errors=errors) from None
        except AsyncdagError as exc:
            raise ApiError(422, str(exc)) from None
        record = await live.get_run(handle.run_id)
        return SafeJSONResponse({"run_id": handle.run_id, "run": record}, status_code=201)

    async def launch(request: Request) -> Response:
        body = await _json_body(request)
        name = body.get("pipeline")
        if not isinstance(name, str) or not name:
            raise ApiError(400, "say which pipeline to run: {'pipeline': NAME, 'yaml': ...}")
        if name not in pipelines:
            known = ", ".join(sorted(pipelines)) or "none"
            raise ApiError(404, f"no pipeline named {name!r}; loaded: {known}")
        parent = body.get("parent_run_id")
        if parent is not None and not isinstance(parent, str):
            raise ApiError(400, "`parent_run_id` must be a run id string")
        return await start(pipelines[name], body, parent)

    async def rerun(request: Request) -> Response:
        record = await run_named(request)
        pipeline = pipelines.get(record["pipeline_name"])
        if pipeline is None:
            raise ApiError(
                409,
                f"run {record['run_id']!r} is of pipeline {record['pipeline_name']!r}, which "
                "this server did not load; start the UI with its file (-f) to re-run it",
            )
        body = {"config": record["run_config"] or {}, "tags": record["tags"] or {}}
        return await start(pipeline, body, record["run_id"])

    async def list_runs(request: Request) -> Response:
        limit = _int_query(request, "limit", 200, minimum=1)
        offset = _int_query(request, "offset", 0, minimum=0)
        runs = await live.list_runs(
            pipeline_name=request.query_params.get("pipeline") or None,
            status=_statuses(request),
            limit=limit,
            offset=offset,
        )
        return SafeJSONResponse({"runs": runs})

    async def runs_stream(request: Request) -> Response:
        feed = live.runs_feed(
            pipeline_name=request.query_params.get("pipeline") or None,
            status=_statuses(request),
            limit=_int_query(request, "limit", 200, minimum=1),
        )
        return StreamingResponse(feed, media_type="text/event-stream", headers=_SSE_HEADERS)

    async def get_run(request: Request) -> Response:
        record = await run_named(request)
        handle = live.handle(record["run_id"])
        if handle is not None:
            record["trace_id"] = handle.trace_id
        return SafeJSONResponse(record)

    async def get_events(request: Request) -> Response:
        record = await run_named(request)
        after = _int_query(request, "after", -1, minimum=-1)
        limit = _int_query(request, "limit", BATCH_SIZE, minimum=1)
        events, done = await live.get_events(record["run_id"], after=after, limit=limit)
        cursor = events[-1]["seq"] if events else after
        return SafeJSONResponse(
            {"events": events, "cursor": cursor, "done": done and len(events) < limit}
        )

    async def events_stream(request: Request) -> Response:
        record = await run_named(request)
        after = -1
        header = request.headers.get("last-event-id")
        if header:
            try:
                after = int(header)
            except ValueError:
                raise ApiError(400, f"Last-Event-ID must be an event seq, got {header!r}") from None
        else:
            after = _int_query(request, "after", -1, minimum=-1)
        feed = live.event_feed(record["run_id"], after=after)
        return StreamingResponse(feed, media_type="text/event-stream", headers=_SSE_HEADERS)

    async def cancel(request: Request) -> Response:
        record = await run_named(request)
        handle = live.handle(record["run_id"])
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
        return SafeJSONResponse(
            {"run_id": record["run_id"], "status": "CANCELING"}, status_code=202
        )

    endpoints = [
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
            responses={
                200: "validity and errors",
                400: "malformed request",
                404: "no such pipeline",
            },
        ),
        Endpoint(
            "GET",
            "/api/runs",
            list_runs,
            "Run history, newest first",
            (*_RUN_FILTERS, Param("offset", "query", "skip this many", {"type": "integer"})),
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
            responses={
                201: "launched",
                404: "no such run",
                409: "pipeline not loaded",
                422: "invalid",
            },
        ),
    ]

    def openapi(server_url: str) -> dict[str, Any]:
        return openapi_document(endpoints, server_url=server_url, version=str(info["version"]))

    return endpoints, openapi


def openapi_document(endpoints: list[Endpoint], *, server_url: str, version: str) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for endpoint in endpoints:
        operation: dict[str, Any] = {
            "summary": endpoint.summary,
            "operationId": endpoint.handler.__name__,
            "responses": {},
        }
        if endpoint.params:
            operation["parameters"] = [
                {
                    "name": p.name,
                    "in": p.where,
                    "description": p.description,
                    "required": p.required,
                    "schema": dict(p.schema),
                }
                for p in endpoint.params
            ]
        if endpoint.body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": dict(endpoint.body)}},
            }
        for status, description in endpoint.responses.items():
            if status >= 400:
                content = {"application/json": {"schema": _ERROR}}
            elif endpoint.streams:
                content = {"text/event-stream": {"schema": {"type": "string"}}}
            else:
                content = {"application/json": {"schema": {"type": "object"}}}
            operation["responses"][str(status)] = {"description": description, "content": content}
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = operation
    paths["/api/openapi.json"] = {
        "get": {
            "summary": "This document",
            "operationId": "openapi",
            "responses": {"200": {"description": "OpenAPI 3.1 document"}},
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "asyncdag UI API",
            "version": version,
            "description": "Pipelines, run config validation, launching, run history and "
            "live run events (Server-Sent Events).",
        },
        "servers": [{"url": server_url or "/"}],
        "paths": paths,
    }


def routes(endpoints: list[Endpoint]) -> list[Route]:
    def wrap(handler: Handler) -> Handler:
        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request)
            except ApiError as exc:
                return exc.response()
            except Exception as exc:
                # The run history failing (locked, damaged, unreachable) is the server's
                # problem, not the request's: a 503 that says what is wrong, never a 500.
                error = storage_error_in(exc)
                if error is None:
                    raise
                return ApiError(503, str(error)).response()

        endpoint.__name__ = handler.__name__
        return endpoint

    return [Route(e.path, wrap(e.handler), methods=[e.method]) for e in endpoints]
