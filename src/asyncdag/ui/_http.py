"""HTTP plumbing of the JSON API: errors as 4xx JSON, request parsing, routes and OpenAPI.

Each endpoint is declared once (:class:`Endpoint`: method, path, parameters,
body, responses), so the routes Starlette serves and the document at
``/api/openapi.json`` cannot disagree.  Every bad request becomes a 4xx with a
JSON ``{"error": ...}``: a client never learns about a mistake from a 500.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import attrs
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from asyncdag._events import RunStatus

__all__ = [
    "ApiError",
    "Endpoint",
    "Handler",
    "Param",
    "int_query",
    "json_body",
    "openapi_document",
    "routes",
    "statuses",
    "tags_of",
]

Handler = Callable[[Request], Awaitable[Response]]


class ApiError(Exception):
    """A request the API refuses: rendered as ``{"error": message, ...extra}`` with ``status``."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra

    def response(self) -> JSONResponse:
        return JSONResponse({"error": self.message, **self.extra}, status_code=self.status)


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


async def json_body(request: Request) -> dict[str, Any]:
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


def int_query(request: Request, name: str, default: int, *, minimum: int) -> int:
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


def statuses(request: Request) -> list[RunStatus] | None:
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


def tags_of(body: Mapping[str, Any]) -> dict[str, str]:
    tags = body.get("tags") or {}
    if not isinstance(tags, dict) or not all(
        isinstance(k, str) and k and isinstance(v, str | int | float | bool)
        for k, v in tags.items()
    ):
        raise ApiError(400, "`tags` must be an object mapping non-empty names to strings")
    return {k: str(v) for k, v in tags.items()}


_ERROR = {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}


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

        endpoint.__name__ = handler.__name__
        return endpoint

    return [Route(e.path, wrap(e.handler), methods=[e.method]) for e in endpoints]
