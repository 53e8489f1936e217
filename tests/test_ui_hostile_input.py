"""Hostile input at the UI's JSON API: always a 4xx with a message or a normal answer, never a 500.

Bodies nested thousands deep, integers of thousands of digits, query
parameters past SQLite's 64-bit integers, NaN, YAML dates and "billion laughs";
then hypothesis throws random text (lone surrogates, control characters),
random non-finite numbers and random nesting at every endpoint that takes input.
The history is SQLite, where an integer of 2^63 or more raises OverflowError.
"""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
import anyio.from_thread
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asyncdag import pipeline, solid
from asyncdag.config import Field
from asyncdag.storage import SqliteStorage
from asyncdag.ui import create_app
from test_config_data import BILLION_LAUGHS
from ui_server import lifespan, load_hello_world

JSON = {"Content-Type": "application/json"}


@solid(
    config_schema={
        "anything": Field(Any, is_required=False),
        "number": Field(float, default=0.0),
        "text": Field(str, default=""),
    }
)
def accept(context: Any) -> None:
    """Takes any config and does nothing: the pipeline hostile config is launched with."""


@pipeline
def open_pipeline():
    accept()


TOKEN = "hostile-input-token-0123456789"


class Api:
    """The UI app on SQLite with every guard on, and a client that passes them."""

    def __init__(self, path: Path) -> None:
        self.storage = SqliteStorage(path)
        self.app = create_app(
            [load_hello_world(), open_pipeline],
            storage=self.storage,
            allowed_hosts=["test"],
            auth_token=TOKEN,
        )
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app),
            base_url="http://test",
            headers={"Authorization": f"Bearer {TOKEN}"},
        )

    async def finished_run(self) -> str:
        """A run of hello world, ended and stored."""
        launched = await self.client.post("/api/runs", json={"pipeline": "hey_pipeline"})
        run_id = str(launched.json()["run_id"])
        async with self.client.stream("GET", f"/api/runs/{run_id}/events/stream") as feed:
            async for _ in feed.aiter_bytes():
                pass
        return run_id


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    served = Api(tmp_path / "runs.db")
    with served.storage:
        async with lifespan(served.app), served.client:
            yield served


def _nested(depth: int, leaf: str = "1") -> bytes:
    return ("[" * depth + leaf + "]" * depth).encode()


# --- bodies ---------------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("path", ["/api/runs", "/api/pipelines/open_pipeline/validate"])
async def test_a_body_nested_thousands_deep_is_400(api: Api, path: str) -> None:
    body = b'{"pipeline": "open_pipeline", "config": ' + _nested(100_000) + b"}"
    response = await api.client.post(path, content=body, headers=JSON)
    assert response.status_code == 400
    assert response.json()["error"] == "the request body is nested too deeply to read"


@pytest.mark.anyio
async def test_config_nested_hundreds_deep_is_an_error_with_its_path(api: Api) -> None:
    config = b'{"solids": {"accept": {"config": {"anything": ' + _nested(500) + b"}}}}"
    body = b'{"pipeline": "open_pipeline", "config": ' + config + b"}"
    checked = await api.client.post(
        "/api/pipelines/open_pipeline/validate", content=body, headers=JSON
    )
    (error,) = checked.json()["errors"]
    assert error["path"].startswith("solids.accept.config.anything[0][0]")
    assert "nests deeper than 100 levels" in error["message"]
    launched = await api.client.post("/api/runs", content=body, headers=JSON)
    assert launched.status_code == 422


@pytest.mark.anyio
async def test_an_integer_of_5000_digits_is_400_in_json_and_an_error_at_its_line_in_yaml(
    api: Api,
) -> None:
    body = b'{"pipeline": "open_pipeline", "config": {"x": ' + b"9" * 5000 + b"}}"
    response = await api.client.post("/api/runs", content=body, headers=JSON)
    assert response.status_code == 400
    assert "an integer of 5,000 digits; the most is 4,300" in response.json()["error"]
    text = "solids:\n  accept:\n    config:\n      anything: " + "9" * 5000 + "\n"
    checked = await api.client.post("/api/pipelines/open_pipeline/validate", json={"yaml": text})
    (error,) = checked.json()["errors"]
    assert error["line"] == 4 and "more than 4300 digits" in error["message"]


@pytest.mark.anyio
async def test_billion_laughs_is_refused_and_the_server_keeps_serving(api: Api) -> None:
    response = await api.client.post(
        "/api/pipelines/open_pipeline/validate", json={"yaml": BILLION_LAUGHS}
    )
    (error,) = response.json()["errors"]
    assert "'billion laughs'" in error["message"]
    launched = await api.client.post(
        "/api/runs", json={"pipeline": "open_pipeline", "yaml": BILLION_LAUGHS}
    )
    assert launched.status_code == 422
    assert (await api.client.get("/api/info")).status_code == 200


@pytest.mark.anyio
async def test_config_is_checked_off_the_event_loop(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    from asyncdag.ui import _endpoints

    loop_thread = threading.get_ident()
    checked_in: list[int] = []
    real = _endpoints.check_config

    def recording(pipeline: Any, body: Any) -> Any:
        checked_in.append(threading.get_ident())
        return real(pipeline, body)

    monkeypatch.setattr(_endpoints, "check_config", recording)
    await api.client.post("/api/pipelines/open_pipeline/validate", json={"yaml": ""})
    await api.client.post("/api/runs", json={"pipeline": "open_pipeline"})
    assert len(checked_in) == 2
    assert loop_thread not in checked_in


# --- config values that are not JSON ----------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    "body",
    [
        {"yaml": "solids:\n  accept:\n    config:\n      number: .nan\n"},
        {"yaml": "solids:\n  accept:\n    config:\n      number: -.inf\n"},
        {"yaml": "solids:\n  accept:\n    config:\n      number: 1.0e+999\n"},
    ],
)
async def test_non_finite_numbers_fail_validation_with_path_and_line(
    api: Api, body: dict[str, str]
) -> None:
    checked = await api.client.post("/api/pipelines/open_pipeline/validate", json=body)
    assert checked.json()["valid"] is False
    (error,) = checked.json()["errors"]
    assert (error["path"], error["line"]) == ("solids.accept.config.number", 4)
    assert "not a finite number" in error["message"]
    launched = await api.client.post("/api/runs", json={"pipeline": "open_pipeline", **body})
    assert launched.status_code == 422
    assert (await api.client.get("/api/runs")).status_code == 200


@pytest.mark.anyio
async def test_nan_sent_as_json_fails_validation_with_its_path(api: Api) -> None:
    body = b'{"config": {"solids": {"accept": {"config": {"anything": [NaN, Infinity]}}}}}'
    checked = await api.client.post(
        "/api/pipelines/open_pipeline/validate", content=body, headers=JSON
    )
    paths = [e["path"] for e in checked.json()["errors"]]
    assert paths == ["solids.accept.config.anything[0]", "solids.accept.config.anything[1]"]


@pytest.mark.anyio
async def test_a_yaml_date_under_any_is_launched_as_its_text(api: Api) -> None:
    text = "solids:\n  accept:\n    config:\n      anything: {day: 2024-05-01}\n"
    checked = await api.client.post("/api/pipelines/open_pipeline/validate", json={"yaml": text})
    assert checked.json() == {"valid": True, "errors": []}
    launched = await api.client.post("/api/runs", json={"pipeline": "open_pipeline", "yaml": text})
    assert launched.status_code == 201, launched.text
    run_id = launched.json()["run_id"]
    async with api.client.stream("GET", f"/api/runs/{run_id}/events/stream") as feed:
        async for _ in feed.aiter_bytes():
            pass
    record = (await api.client.get(f"/api/runs/{run_id}")).json()
    assert record["status"] == "SUCCESS"
    assert record["run_config"]["solids"]["accept"]["config"] == {"anything": {"day": "2024-05-01"}}
    assert (await api.client.get("/api/runs")).status_code == 200


# --- query parameters and headers past SQLite's integers --------------------------------------

HUGE = [str(2**63), str(10**30), "9" * 5000, "-" + "9" * 30]


@pytest.mark.anyio
@pytest.mark.parametrize("value", HUGE)
@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/api/runs", "limit"),
        ("/api/runs", "offset"),
        ("/api/runs/stream", "limit"),
        ("/api/runs/{run}/events", "after"),
        ("/api/runs/{run}/events", "limit"),
        ("/api/runs/{run}/events/stream", "after"),
    ],
)
async def test_query_integers_past_64_bits_are_400(
    api: Api, path: str, name: str, value: str
) -> None:
    run_id = await api.finished_run()
    response = await api.client.get(path.format(run=run_id), params={name: value})
    assert response.status_code == 400
    assert f"query parameter {name!r} must be" in response.json()["error"]


@pytest.mark.anyio
@pytest.mark.parametrize("value", HUGE)
async def test_a_last_event_id_past_64_bits_is_400(api: Api, value: str) -> None:
    run_id = await api.finished_run()
    response = await api.client.get(
        f"/api/runs/{run_id}/events/stream", headers={"Last-Event-ID": value}
    )
    assert response.status_code == 400
    assert "Last-Event-ID" in response.json()["error"]


@pytest.mark.anyio
async def test_the_largest_64_bit_cursor_is_served(api: Api) -> None:
    run_id = await api.finished_run()
    top = str(2**63 - 1)
    assert (await api.client.get("/api/runs", params={"offset": top})).json()["runs"] == []
    assert (await api.client.get("/api/runs", params={"limit": top})).status_code == 200
    page = await api.client.get(f"/api/runs/{run_id}/events", params={"after": top})
    assert page.json()["events"] == []


# --- headers the guard reads -------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Origin": "http://["}, 403),
        ({"Referer": "http://[::1"}, 403),
        ({"Content-Length": "9" * 5000}, 413),
        ({"Host": "[::1"}, 403),
        ({"Authorization": "Bearer \u00e9t\u00e9"}, 401),
        ({"Cookie": '=;;=; asyncdag_ui_x="\\'}, 401),
    ],
)
async def test_malformed_headers_are_refused_with_a_message(
    api: Api, headers: dict[str, str], status: int
) -> None:
    raw = {k: v.encode("latin-1") for k, v in headers.items()}
    if status == 401:
        api.client.headers.pop("Authorization")
    response = await api.client.post(
        "/api/runs", content=b'{"pipeline": "open_pipeline"}', headers={**JSON, **raw}
    )
    assert response.status_code == status
    assert response.json()["error"]


# --- anything at all: never a 500 -------------------------------------------------------------

ODD_TEXT = st.text(
    st.characters(exclude_categories=())  # lone surrogates included
    | st.sampled_from(["\ud800", "\udfff", "\x00", "\x1b", "\u2028", "\ufeff", "&", "=", "%"]),
    max_size=12,
)
ODD_NUMBERS = st.sampled_from([float("nan"), float("inf"), float("-inf"), 2**63, -(2**63) - 1])
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | ODD_NUMBERS | ODD_TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(ODD_TEXT, inner, max_size=3),
    max_leaves=15,
)
DEEP = st.integers(0, 3000).map(lambda depth: _nested(depth, "0").decode())
NAMES = st.sampled_from(["open_pipeline", "hey_pipeline"]) | ODD_TEXT


def _config(value: Any) -> dict[str, Any]:
    return {"solids": {"accept": {"config": {"anything": value}}}}


BODIES = st.one_of(
    st.builds(lambda v: {"config": _config(v)}, JSON_VALUES),
    st.builds(lambda v: {"config": v}, JSON_VALUES),
    st.builds(lambda t: {"yaml": t}, ODD_TEXT),
    st.builds(lambda v: {"yaml": f"solids: {{accept: {{config: {{number: {v}}}}}}}"}, ODD_TEXT),
    st.builds(
        lambda name, tags, v: {"pipeline": name, "tags": tags, "config": _config(v)},
        NAMES,
        st.dictionaries(ODD_TEXT, JSON_VALUES, max_size=2),
        JSON_VALUES,
    ),
).map(lambda body: json.dumps(body).encode())  # NaN and Infinity as Python writes them
RAW_BODIES = (
    BODIES | DEEP.map(lambda deep: f'{{"config": {deep}}}'.encode()) | st.binary(max_size=20)
)
PARAMS = st.dictionaries(
    st.sampled_from(["limit", "offset", "after", "status", "pipeline"]),
    ODD_TEXT | st.integers().map(str) | ODD_NUMBERS.map(str),
    max_size=3,
)


def _query(params: dict[str, str]) -> str:
    return "&".join(f"{k}={quote(v, safe='', errors='surrogatepass')}" for k, v in params.items())


#: One app per backend for every example (see ``portal_api``), and how many examples.
ON_EACH_BACKEND = pytest.mark.parametrize("portal_api", ["asyncio", "trio"], indirect=True)
FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def portal_api(tmp_path_factory: pytest.TempPathFactory, request: Any) -> Iterator[Any]:
    """One event loop (on each backend) serving one app for every hypothesis example."""
    with anyio.from_thread.start_blocking_portal(request.param) as portal:
        served = Api(tmp_path_factory.mktemp("fuzz") / "runs.db")
        with (
            served.storage,
            portal.wrap_async_context_manager(lifespan(served.app)),
            portal.wrap_async_context_manager(served.client),
        ):
            run_id = portal.call(served.finished_run)
            yield portal, served, run_id


@pytest.mark.slow
@ON_EACH_BACKEND
@FUZZ
@given(
    body=RAW_BODIES,
    name=NAMES,
    params=PARAMS,
    last_event_id=ODD_TEXT | st.integers().map(str),
)
def test_random_input_to_every_endpoint_is_never_a_500(
    portal_api: Any, body: bytes, name: str, params: dict[str, str], last_event_id: str
) -> None:
    portal, api, run_id = portal_api
    query = _query(params)
    pipe = quote(name, safe="", errors="surrogatepass")
    header = last_event_id.encode("utf-8", "surrogatepass")

    async def every_endpoint() -> list[tuple[str, int]]:
        client = api.client
        calls = {
            "validate": lambda: client.post(
                f"/api/pipelines/{pipe}/validate", content=body, headers=JSON
            ),
            "launch": lambda: client.post("/api/runs", content=body, headers=JSON),
            "runs": lambda: client.get(f"/api/runs?{query}"),
            "events": lambda: client.get(f"/api/runs/{run_id}/events?{query}"),
            "feed": lambda: client.get(f"/api/runs/{run_id}/events/stream?{query}"),
            "resume": lambda: client.get(
                f"/api/runs/{run_id}/events/stream", headers={"Last-Event-ID": header}
            ),
            "run": lambda: client.get(f"/api/runs/{pipe}"),
        }
        return [(what, (await call()).status_code) for what, call in calls.items()]

    for what, status in portal.call(every_endpoint):
        assert status < 500, (what, status)


HEADER_TEXT = st.text(st.characters(codec="latin-1"), max_size=30)


@pytest.mark.slow
@ON_EACH_BACKEND
@FUZZ
@given(
    headers=st.dictionaries(
        st.sampled_from(
            [
                "Host",
                "Origin",
                "Referer",
                "Sec-Fetch-Site",
                "Content-Type",
                "Cookie",
                "Authorization",
            ]
        ),
        HEADER_TEXT | st.sampled_from(["null", "http://test", "application/json", "Bearer "]),
        max_size=4,
    ),
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "OPTIONS"]),
    path=st.sampled_from(["/", "/api/runs", "/api/pipelines/open_pipeline/validate", "/x"]),
)
def test_random_headers_are_never_a_500(
    portal_api: Any, headers: dict[str, str], method: str, path: str
) -> None:
    portal, api, _ = portal_api
    raw = {k: v.encode("latin-1") for k, v in headers.items()}

    async def send() -> int:
        response = await api.client.request(
            method, path, content=b'{"pipeline": "open_pipeline"}', headers=raw
        )
        return response.status_code

    assert portal.call(send) < 500
