"""HTTP plumbing of the JSON API: errors as 4xx JSON, request parsing, routes and OpenAPI.

Each endpoint is declared once (:class:`Endpoint`: method, path, parameters,
body, responses), so the routes Starlette serves and the document at
``/api/openapi.json`` cannot disagree.  Every bad request becomes a 4xx with a
JSON ``{"error": ...}``: a client never learns about a mistake from a 500.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import attrs
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from asyncdag._events import RunStatus
from asyncdag._workspace import find_error
from asyncdag.storage import StorageError

__all__ = [
    "INT64_MAX",
    "ApiError",
    "Endpoint",
    "Handler",
    "JSONBody",
    "Param",
    "int_query",
    "int_value",
    "json_body",
    "json_text",
    "openapi_document",
    "routes",
    "statuses",
    "tags_of",
]

Handler = Callable[[Request], Awaitable[Response]]


_INTEGER = re.compile(r"-?[0-9]+")

#: Largest integer a query parameter or header may carry: SQLite's (signed 64-bit).
INT64_MAX = 2**63 - 1


class JSONBody(JSONResponse):
    """A JSON response that renders whatever it is given: never a 500 for one odd value.

    Text with lone surrogates (a non-UTF-8 file name decoded by Python) is sent as
    ``\\uXXXX`` escapes, and NaN or infinity (which JSON lacks) as ``null``, as
    JavaScript's ``JSON.stringify`` does.
    """

    def render(self, content: Any) -> bytes:
        return json_text(content).encode("utf-8")


def json_text(data: Any) -> str:
    """``data`` as JSON text that encodes to UTF-8 and that every JSON parser reads."""
    try:
        text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except ValueError:  # NaN or infinity somewhere
        data = _finite(data)
        text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: escape it
        return json.dumps(data, allow_nan=False, separators=(",", ":"))
    return text


def _finite(data: Any) -> Any:
    if isinstance(data, float) and not math.isfinite(data):
        return None
    if isinstance(data, dict):
        return {k: _finite(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_finite(v) for v in data]
    return data


class ApiError(Exception):
    """A request the API refuses: rendered as ``{"error": message, ...extra}`` with ``status``."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra

    def response(self) -> JSONResponse:
        return JSONBody({"error": self.message, **self.extra}, status_code=self.status)


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


def _json_int(text: str) -> int:
    limit = sys.get_int_max_str_digits()
    if len(text.lstrip("-")) > limit:
        raise ApiError(
            400,
            f"the request body holds an integer of {len(text.lstrip('-')):,} digits; "
            f"the most is {limit:,} (send it as a string)",
        )
    return int(text)


async def json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw, parse_int=_json_int)
    except RecursionError:
        raise ApiError(400, "the request body is nested too deeply to read") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(400, f"the request body must be a JSON object, got {type(body).__name__}")
    return body


def int_value(
    value: str | None, what: str, default: int, *, minimum: int, maximum: int = INT64_MAX
) -> int:
    """An integer from a query parameter or header, within bounds, or a 400 naming ``what``."""
    if value is None or value == "":
        return default
    text = value.strip()
    if not _INTEGER.fullmatch(text):
        raise ApiError(400, f"{what} must be an integer, got {_short(value)}")
    if len(text) > 20:  # past any int64, and refused before Python reads a long number
        raise ApiError(400, f"{what} must be at most {maximum}, got a {len(text)}-digit number")
    number = int(text)
    if number < minimum:
        raise ApiError(400, f"{what} must be >= {minimum}, got {number}")
    if number > maximum:
        raise ApiError(400, f"{what} must be at most {maximum}, got {number}")
    return number


def _short(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:40] + "...")


def int_query(
    request: Request, name: str, default: int, *, minimum: int, maximum: int = INT64_MAX
) -> int:
    value = request.query_params.get(name)
    return int_value(value, f"query parameter {name!r}", default, minimum=minimum, maximum=maximum)


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
            except Exception as exc:
                # The run history failing (locked, damaged, unreachable) is the server's
                # problem, not the request's: a 503 that says what is wrong, never a 500.
                error = find_error(exc, StorageError)
                if error is None:
                    raise
                return ApiError(503, str(error)).response()

        endpoint.__name__ = handler.__name__
        return endpoint

    return [Route(e.path, wrap(e.handler), methods=[e.method]) for e in endpoints]
