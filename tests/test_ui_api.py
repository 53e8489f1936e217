"""The UI's JSON API and live feeds, in-process through httpx's ASGI transport.

Every test runs on asyncio and trio, with the UI served at the root and mounted
at ``/dag`` inside a host Starlette app (whose lifespan enters the UI's).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest
from starlette.routing import Route

from asyncdag import Event, EventType, RunStatus
from asyncdag.storage import InMemoryStorage, RunRecord, SqliteStorage
from asyncdag.ui import create_app
from ui_server import (
    TEST_PIPELINES,
    chatty_pipeline,
    lifespan,
    load_hello_world,
    mounted_in_host,
    sse_messages,
)

pytestmark = pytest.mark.anyio

FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}
JSON_TYPE = {"Content-Type": "application/json"}


class UI:
    """A UI app being served, and how to talk to it."""

    def __init__(self, asgi: Any, prefix: str, storage: Any) -> None:
        self.asgi = asgi
        self.prefix = prefix
        self.storage = storage
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=asgi), base_url="http://test"
        )

    def url(self, path: str) -> str:
        return self.prefix + path

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.client.get(self.url(path), **kwargs)

    async def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.client.post(self.url(path), **kwargs)

    async def stream(self, path: str, **kwargs: Any) -> list[tuple[str, str | None, Any]]:
        messages = await sse_messages(self.asgi, self.url(path), **kwargs)
        return [(event, id, json.loads(data)) for event, id, data in messages]

    async def launch(self, pipeline: str, **body: Any) -> str:
        response = await self.post("/api/runs", json={"pipeline": pipeline, **body})
        assert response.status_code == 201, response.text
        return str(response.json()["run_id"])

    async def events_until_end(self, run_id: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Follow the run's live feed to its end: every event, and the final run record."""
        messages = await self.stream(f"/api/runs/{run_id}/events/stream")
        events = [e for kind, _, data in messages if kind == "events" for e in data]
        kind, _, end = messages[-1]
        assert kind == "end"
        return events, end["run"]


@pytest.fixture(params=["root", "mounted"])
async def ui(request: pytest.FixtureRequest) -> AsyncIterator[UI]:
    storage = InMemoryStorage()
    app = create_app([load_hello_world(), *TEST_PIPELINES], storage=storage)
    asgi, prefix = (app, "") if request.param == "root" else (mounted_in_host(app), "/dag")
    served = UI(asgi, prefix, storage)
    async with lifespan(asgi), served.client:
        yield served


# --- pages and static files -----------------------------------------------------------------


async def test_index_sets_base_href_to_the_mount_root(ui: UI) -> None:
    response = await ui.get("/")
    assert response.status_code == 200
    assert f'<base href="{ui.prefix}/">' in response.text
    assert 'src="static/js/app.js"' in response.text  # relative: resolved against <base>


async def test_static_front_end_is_served_from_the_package(ui: UI) -> None:
    for path in ("app.js", "layout.js", "graph.js", "eventlog.js", "gantt.js", "run.js"):
        response = await ui.get(f"/static/js/{path}")
        assert response.status_code == 200, path
        assert "javascript" in response.headers["content-type"]
    css = await ui.get("/static/style.css")
    assert css.status_code == 200 and ".node" in css.text


async def test_mounted_app_leaves_the_host_routes_alone() -> None:
    host = mounted_in_host(create_app([load_hello_world()]))
    async with (
        lifespan(host),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=host), base_url="http://test"
        ) as client,
    ):
        assert (await client.get("/")).text == "host app"
        assert (await client.get("/dag/api/pipelines")).status_code == 200
        assert (await client.get("/api/pipelines")).status_code == 404


# --- pipelines ------------------------------------------------------------------------------


async def test_pipelines_lists_every_loaded_pipeline_with_its_step_count(ui: UI) -> None:
    response = await ui.get("/api/pipelines")
    assert response.status_code == 200
    by_name = {p["name"]: p for p in response.json()["pipelines"]}
    assert set(by_name) == {"hey_pipeline", *(p.name for p in TEST_PIPELINES)}
    assert by_name["hey_pipeline"]["step_count"] == 2
    assert by_name["slow_pipeline"]["description"] == "Waits a long time: the run to cancel."


async def test_pipeline_graph_has_edges_labelled_by_input_name(ui: UI) -> None:
    graph = (await ui.get("/api/pipelines/hey_pipeline")).json()
    assert [n["name"] for n in graph["nodes"]] == ["get_name", "hey"]
    assert graph["edges"] == [
        {"from": "get_name", "output": "result", "to": "hey", "input": "name"}
    ]
    hey = graph["nodes"][1]
    assert hey["is_async"] is True
    assert hey["inputs"] == [
        {
            "name": "name",
            "type": "str",
            "has_default": False,
            "source": {"kind": "output", "node": "get_name", "output": "result"},
        }
    ]


async def test_pipeline_graph_describes_each_solid(ui: UI) -> None:
    greet = (await ui.get("/api/pipelines/configured_pipeline")).json()["nodes"][0]
    assert greet["description"] == "Greets `name`, `times` times."
    assert greet["pool"] == "io"
    assert greet["timeout"] == 30
    assert greet["outputs"] == [
        {"name": "result", "type": "str", "required": True, "dynamic": False}
    ]
    assert greet["inputs"][0]["source"] == {"kind": "config"}
    assert greet["config_schema"]["required"] == ["greeting"]
    assert greet["config_schema"]["properties"]["times"]["default"] == 1
    explode = (await ui.get("/api/pipelines/failing_pipeline")).json()["nodes"][0]
    assert explode["retry_policy"]["max_retries"] == 1
    assert explode["retry_policy"]["retry_on"] == ["Exception"]


async def test_config_schema_is_the_run_config_json_schema(ui: UI) -> None:
    schema = (await ui.get("/api/pipelines/configured_pipeline/config-schema")).json()
    assert schema["required"] == ["solids"]
    assert schema["properties"]["solids"]["required"] == ["greet"]


async def test_scaffold_of_hello_world_validates(ui: UI) -> None:
    scaffold = (await ui.get("/api/pipelines/hey_pipeline/scaffold")).json()
    assert scaffold["config"]["execution"] == {"max_concurrency": None, "concurrency_limits": {}}
    check = await ui.post("/api/pipelines/hey_pipeline/validate", json={"yaml": scaffold["yaml"]})
    assert check.json() == {"valid": True, "errors": []}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/pipelines/nope"),
        ("GET", "/api/pipelines/nope/config-schema"),
        ("GET", "/api/pipelines/nope/scaffold"),
        ("POST", "/api/pipelines/nope/validate"),
    ],
)
async def test_unknown_pipeline_is_a_404_naming_the_loaded_ones(
    ui: UI, method: str, path: str
) -> None:
    response = await ui.client.request(method, ui.url(path), json={})
    assert response.status_code == 404
    assert "no pipeline named 'nope'" in response.json()["error"]
    assert "hey_pipeline" in response.json()["error"]


# --- validation -----------------------------------------------------------------------------


async def test_validation_reports_every_error_with_its_path_and_line(ui: UI) -> None:
    text = "solids:\n  greet:\n    config:\n      greting: hi\n"
    result = (
        await ui.post("/api/pipelines/configured_pipeline/validate", json={"yaml": text})
    ).json()
    assert result["valid"] is False
    by_path = {e["path"]: e for e in result["errors"]}
    assert set(by_path) == {
        "solids.greet.config.greting",
        "solids.greet.config.greeting",
        "solids.greet.inputs.name",
    }
    assert "did you mean 'greeting'" in by_path["solids.greet.config.greting"]["message"]
    assert by_path["solids.greet.config.greting"]["line"] == 4


async def test_valid_config_as_yaml_or_json_validates(ui: UI) -> None:
    config = {"solids": {"greet": {"config": {"greeting": "Hey"}, "inputs": {"name": "Kan"}}}}
    as_json = await ui.post("/api/pipelines/configured_pipeline/validate", json={"config": config})
    assert as_json.json() == {"valid": True, "errors": []}
    text = "solids:\n  greet:\n    config: {greeting: Hey}\n    inputs: {name: Kan}\n"
    as_yaml = await ui.post("/api/pipelines/configured_pipeline/validate", json={"yaml": text})
    assert as_yaml.json() == {"valid": True, "errors": []}


async def test_invalid_yaml_is_an_error_at_its_line_not_a_4xx(ui: UI) -> None:
    response = await ui.post(
        "/api/pipelines/hey_pipeline/validate", json={"yaml": "execution:\n  a: [1,\n"}
    )
    assert response.status_code == 200
    (error,) = response.json()["errors"]
    assert "invalid YAML" in error["message"]
    assert error["line"] == 3


async def test_yaml_that_is_not_a_mapping_is_an_error(ui: UI) -> None:
    response = await ui.post("/api/pipelines/hey_pipeline/validate", json={"yaml": "- 1\n- 2\n"})
    (error,) = response.json()["errors"]
    assert error["message"] == "the run config must be a mapping, got list"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"config": [1]}', "`config` must be a JSON object"),
        (b'{"yaml": 3}', "`yaml` must be a string"),
    ],
)
async def test_malformed_validation_requests_are_400(ui: UI, content: bytes, message: str) -> None:
    response = await ui.post(
        "/api/pipelines/hey_pipeline/validate", content=content, headers=JSON_TYPE
    )
    assert response.status_code == 400
    assert message in response.json()["error"]


# --- launching and watching runs ------------------------------------------------------------


async def test_launched_hello_world_streams_its_events_to_the_end(ui: UI) -> None:
    run_id = await ui.launch("hey_pipeline", yaml="", tags={"who": "kan"})
    events, final = await ui.events_until_end(run_id)
    assert [e["seq"] for e in events] == list(range(len(events)))
    assert "Hey, Kan!" in [e["message"] for e in events if e["type"] == "LOG"]
    assert events[-1]["type"] == "RUN_SUCCESS"
    assert final["status"] == "SUCCESS"
    record = (await ui.get(f"/api/runs/{run_id}")).json()
    assert record["status"] == "SUCCESS"
    assert record["tags"] == {"who": "kan"}
    runs = (await ui.get("/api/runs")).json()["runs"]
    assert runs[0]["run_id"] == run_id


async def test_launch_rejects_invalid_config_with_every_error(ui: UI) -> None:
    response = await ui.post(
        "/api/runs",
        json={"pipeline": "configured_pipeline", "yaml": "solids: {greet: {config: {}}}"},
    )
    assert response.status_code == 422
    paths = {e["path"] for e in response.json()["errors"]}
    assert paths == {"solids.greet.config.greeting", "solids.greet.inputs.name"}
    assert (await ui.get("/api/runs")).json()["runs"] == []


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({}, 400, "say which pipeline"),
        ({"pipeline": 3}, 400, "say which pipeline"),
        ({"pipeline": "nope"}, 404, "no pipeline named 'nope'"),
        ({"pipeline": "hey_pipeline", "tags": ["a"]}, 400, "`tags` must be an object"),
        ({"pipeline": "hey_pipeline", "tags": {"": "x"}}, 400, "`tags` must be an object"),
        ({"pipeline": "hey_pipeline", "parent_run_id": 7}, 400, "`parent_run_id`"),
        ({"pipeline": "hey_pipeline", "config": "x"}, 400, "`config` must be a JSON object"),
    ],
)
async def test_bad_launch_requests_are_4xx(
    ui: UI, body: dict[str, Any], status: int, message: str
) -> None:
    response = await ui.post("/api/runs", json=body)
    assert response.status_code == status
    assert message in response.json()["error"]


async def test_launch_without_the_lifespan_is_a_503_that_says_what_to_do() -> None:
    app = create_app([load_hello_world()])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.post("/api/runs", json={"pipeline": "hey_pipeline"})
    assert response.status_code == 503
    assert "lifespan_context" in response.json()["error"]


async def test_launching_a_pipeline_that_leaves_a_resource_to_its_caller_is_a_422() -> None:
    from asyncdag import pipeline, solid

    @solid(required_resources={"http"})
    def fetch(context: Any) -> None:
        pass

    @pipeline  # its runs are given "http" by an application (resources={...}); the UI has none
    def needs_http() -> None:
        fetch()

    storage = InMemoryStorage()
    app = create_app([needs_http], storage=storage)
    transport = httpx.ASGITransport(app=app)
    async with lifespan(app), httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        response = await c.post("/api/runs", json={"pipeline": "needs_http"})
    assert response.status_code == 422
    assert "solid 'fetch' requires resource(s) ['http']" in response.json()["error"]
    assert await storage.list_runs() == []


async def test_events_page_after_a_cursor(ui: UI) -> None:
    run_id = await ui.launch(
        "chatty_pipeline", config={"solids": {"chatter": {"config": {"count": 25}}}}
    )
    all_events, _ = await ui.events_until_end(run_id)
    first = (await ui.get(f"/api/runs/{run_id}/events", params={"limit": 10})).json()
    assert [e["seq"] for e in first["events"]] == list(range(10))
    assert first["cursor"] == 9 and first["done"] is False
    rest = (await ui.get(f"/api/runs/{run_id}/events", params={"after": 9, "limit": 1000})).json()
    assert [e["seq"] for e in rest["events"]] == list(range(10, len(all_events)))
    assert rest["done"] is True
    empty = (await ui.get(f"/api/runs/{run_id}/events", params={"after": rest["cursor"]})).json()
    assert empty == {"events": [], "cursor": rest["cursor"], "done": True}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"after": "x"}, "'after' must be an integer"),
        ({"after": "-2"}, "'after' must be >= -1"),
        ({"limit": "0"}, "'limit' must be >= 1"),
    ],
)
async def test_bad_event_cursors_are_400(ui: UI, params: dict[str, str], message: str) -> None:
    run_id = await ui.launch("hey_pipeline")
    await ui.events_until_end(run_id)
    response = await ui.get(f"/api/runs/{run_id}/events", params=params)
    assert response.status_code == 400
    assert message in response.json()["error"]


async def test_event_stream_resumes_after_last_event_id(ui: UI) -> None:
    run_id = await ui.launch(
        "chatty_pipeline", config={"solids": {"chatter": {"config": {"count": 5}}}}
    )
    events, _ = await ui.events_until_end(run_id)
    resumed = await ui.stream(f"/api/runs/{run_id}/events/stream", headers={"Last-Event-ID": "4"})
    seqs = [e["seq"] for kind, _, data in resumed if kind == "events" for e in data]
    assert seqs == list(range(5, len(events)))
    last_id = [id for kind, id, _ in resumed if kind == "events"][-1]
    assert last_id == str(len(events) - 1)  # the id a reconnecting browser sends back
    by_query = await ui.stream(f"/api/runs/{run_id}/events/stream?after={len(events) - 1}")
    assert [kind for kind, _, _ in by_query] == ["end"]


async def test_bad_last_event_id_is_400(ui: UI) -> None:
    run_id = await ui.launch("hey_pipeline")
    await ui.events_until_end(run_id)
    response = await ui.get(f"/api/runs/{run_id}/events/stream", headers={"Last-Event-ID": "seven"})
    assert response.status_code == 400
    assert "Last-Event-ID" in response.json()["error"]


async def test_a_run_with_50000_events_streams_in_batches() -> None:
    storage = InMemoryStorage()
    app = create_app([chatty_pipeline], storage=storage)
    served = UI(app, "", storage)
    async with lifespan(app), served.client:
        await _stream_50000_events(served)


async def _stream_50000_events(ui: UI) -> None:
    count = 50_000
    run_id = await ui.launch(
        "chatty_pipeline", config={"solids": {"chatter": {"config": {"count": count}}}}
    )
    messages = await ui.stream(f"/api/runs/{run_id}/events/stream")
    batches = [data for kind, _, data in messages if kind == "events"]
    seqs = [e["seq"] for batch in batches for e in batch]
    assert seqs == list(range(len(seqs)))  # live: every event once, in order
    assert len(seqs) > count
    assert max(len(b) for b in batches) <= 2000
    # Read again once the run has ended: full batches of 2000, then the rest.
    replay = await ui.stream(f"/api/runs/{run_id}/events/stream")
    sizes = [len(data) for kind, _, data in replay if kind == "events"]
    assert sizes == [2000] * (len(seqs) // 2000) + [len(seqs) % 2000]


async def test_cancel_a_live_run_from_the_api(ui: UI) -> None:
    run_id = await ui.launch("slow_pipeline")
    # The first batch arrives once the slow step has started; then the client leaves.
    while True:
        seen = await ui.stream(f"/api/runs/{run_id}/events/stream", stop_after=1)
        types = [e["type"] for e in seen[0][2]]
        if "STEP_START" in types:
            break
        await anyio.sleep(0.01)
    assert (await ui.get(f"/api/runs/{run_id}")).json()["live"] is True
    response = await ui.post(f"/api/runs/{run_id}/cancel")
    assert response.status_code == 202
    events, final = await ui.events_until_end(run_id)
    types = [e["type"] for e in events]
    assert "STEP_CANCELED" in types and types[-1] == "RUN_CANCELED"
    assert final["status"] == "CANCELED"
    again = await ui.post(f"/api/runs/{run_id}/cancel")
    assert again.status_code == 409
    assert "already ended CANCELED" in again.json()["error"]


async def test_cancel_a_run_of_another_process_is_409(ui: UI) -> None:
    await ui.storage.create_run(
        RunRecord(
            run_id="elsewhere",
            pipeline_name="hey_pipeline",
            status=RunStatus.STARTED,
            pid=1,
            hostname="other",
        )
    )
    response = await ui.post("/api/runs/elsewhere/cancel")
    assert response.status_code == 409
    assert "another process (pid 1 on other)" in response.json()["error"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/runs/nope"),
        ("GET", "/api/runs/nope/events"),
        ("GET", "/api/runs/nope/events/stream"),
        ("POST", "/api/runs/nope/cancel"),
        ("POST", "/api/runs/nope/rerun"),
    ],
)
async def test_unknown_run_is_404(ui: UI, method: str, path: str) -> None:
    response = await ui.client.request(method, ui.url(path))
    assert response.status_code == 404
    assert "no run 'nope'" in response.json()["error"]


async def test_rerun_launches_the_same_config_and_tags_as_a_child(ui: UI) -> None:
    config = {"solids": {"chatter": {"config": {"count": 2}}}}
    parent = await ui.launch("chatty_pipeline", config=config, tags={"team": "data"})
    await ui.events_until_end(parent)
    response = await ui.post(f"/api/runs/{parent}/rerun")
    assert response.status_code == 201
    child = response.json()["run_id"]
    _, final = await ui.events_until_end(child)
    assert final["parent_run_id"] == parent
    assert final["tags"] == {"team": "data"}
    assert final["run_config"]["solids"] == config["solids"]


async def test_rerun_of_a_pipeline_not_loaded_is_409(ui: UI) -> None:
    await ui.storage.create_run(
        RunRecord(run_id="old", pipeline_name="gone", status=RunStatus.STARTED)
    )
    await ui.storage.finish_run("old", RunStatus.SUCCESS, end_time=1.0)
    response = await ui.post("/api/runs/old/rerun")
    assert response.status_code == 409
    assert "did not load" in response.json()["error"]


async def test_runs_filter_by_pipeline_and_status(ui: UI) -> None:
    ok = await ui.launch("hey_pipeline")
    await ui.events_until_end(ok)
    failed = await ui.launch("failing_pipeline")
    await ui.events_until_end(failed)
    by_status = (await ui.get("/api/runs", params={"status": "failure"})).json()["runs"]
    assert [r["run_id"] for r in by_status] == [failed]
    by_pipeline = (await ui.get("/api/runs", params={"pipeline": "hey_pipeline"})).json()["runs"]
    assert [r["run_id"] for r in by_pipeline] == [ok]
    newest_first = (await ui.get("/api/runs")).json()["runs"]
    assert [r["run_id"] for r in newest_first] == [failed, ok]
    assert [
        r["run_id"] for r in (await ui.get("/api/runs", params={"limit": 1})).json()["runs"]
    ] == [failed]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"status": "DONE"}, "unknown run status 'DONE'"),
        ({"limit": "ten"}, "'limit' must be an integer"),
        ({"offset": "-1"}, "'offset' must be >= 0"),
    ],
)
async def test_bad_run_filters_are_400(ui: UI, params: dict[str, str], message: str) -> None:
    response = await ui.get("/api/runs", params=params)
    assert response.status_code == 400
    assert message in response.json()["error"]
    if "status" in params:
        stream = await ui.get("/api/runs/stream", params=params)
        assert stream.status_code == 400


async def test_runs_feed_sends_the_run_list_and_then_its_changes(ui: UI) -> None:
    first = await ui.stream("/api/runs/stream", stop_after=1)
    assert first == [("runs", None, {"runs": []})]
    run_id = await ui.launch("hey_pipeline")
    await ui.events_until_end(run_id)
    ((kind, _, data),) = await ui.stream("/api/runs/stream", stop_after=1)
    assert kind == "runs" and [r["run_id"] for r in data["runs"]] == [run_id]


async def test_events_of_a_run_recorded_by_another_process_come_from_storage(ui: UI) -> None:
    storage = ui.storage
    await storage.create_run(
        RunRecord(run_id="cli-run", pipeline_name="hey_pipeline", status=RunStatus.STARTED)
    )
    events = [
        Event("cli-run", 0, 1.0, EventType.RUN_START),
        Event("cli-run", 1, 2.0, EventType.LOG, "hey", 20, "Hey, Kan!"),
        Event("cli-run", 2, 3.0, EventType.RUN_SUCCESS),
    ]
    await storage.add_events("cli-run", events)
    await storage.finish_run("cli-run", RunStatus.SUCCESS, end_time=3.0)
    messages = await ui.stream("/api/runs/cli-run/events/stream?after=0")
    assert [e["seq"] for kind, _, data in messages if kind == "events" for e in data] == [1, 2]
    assert messages[-1][2]["run"]["status"] == "SUCCESS"
    assert (await ui.get("/api/runs/cli-run")).json()["live"] is False


# --- the API's shape ------------------------------------------------------------------------


async def test_openapi_document_describes_every_api_route(ui: UI) -> None:
    doc = (await ui.get("/api/openapi.json")).json()
    assert doc["openapi"].startswith("3.")
    assert doc["servers"] == [{"url": ui.prefix or "/"}]
    app = ui.asgi if not ui.prefix else ui.asgi.routes[1].app
    declared = {
        (route.path, method.lower())
        for route in app.routes
        if isinstance(route, Route) and route.path.startswith("/api")
        for method in route.methods or ()
        if method != "HEAD"
    }
    documented = {(path, method) for path, ops in doc["paths"].items() for method in ops}
    assert declared == documented
    launch = doc["paths"]["/api/runs"]["post"]
    assert set(launch["responses"]) == {"201", "400", "404", "422", "503"}


async def test_unknown_routes_and_methods_get_json_errors(ui: UI) -> None:
    missing = await ui.get("/api/nothing-here")
    assert missing.status_code == 404
    assert "api/openapi.json" in missing.json()["error"]
    wrong_method = await ui.client.delete(ui.url("/api/pipelines"))
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]


async def test_info_names_the_jaeger_url_when_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASYNCDAG_JAEGER_URL", "http://jaeger:16686/")
    app = create_app([load_hello_world()])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        info = (await c.get("/api/info")).json()
    assert info["jaeger_url"] == "http://jaeger:16686"
    assert info["pipelines"] == ["hey_pipeline"]
    explicit = create_app([load_hello_world()], jaeger_url="http://other")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=explicit), base_url="http://t"
    ) as c:
        assert (await c.get("/api/info")).json()["jaeger_url"] == "http://other"


async def test_sqlite_history_survives_the_server(tmp_path: Any) -> None:
    path = tmp_path / "runs.db"
    with SqliteStorage(path) as storage:
        app = create_app([load_hello_world()], storage=storage)
        served = UI(app, "", storage)
        async with lifespan(app), served.client:
            run_id = await served.launch("hey_pipeline")
            await served.events_until_end(run_id)
    with SqliteStorage(path) as storage:
        app = create_app([load_hello_world()], storage=storage)
        served = UI(app, "", storage)
        async with lifespan(app), served.client:
            events, final = await served.events_until_end(run_id)
    assert final["status"] == "SUCCESS"
    assert "Hey, Kan!" in [e["message"] for e in events]


async def test_shutdown_cancels_runs_still_going() -> None:
    storage = InMemoryStorage()
    app = create_app([*TEST_PIPELINES], storage=storage)
    served = UI(app, "", storage)
    async with served.client:
        async with lifespan(app):
            run_id = await served.launch("slow_pipeline")
        record = await storage.get_run(run_id)
    assert record is not None and record.status is RunStatus.CANCELED


def test_create_app_rejects_what_is_not_a_pipeline() -> None:
    from asyncdag import AsyncdagError

    with pytest.raises(AsyncdagError, match="takes pipelines made with @pipeline"):
        create_app([object()])  # type: ignore[list-item]
    assert chatty_pipeline.name == "chatty_pipeline"


async def test_pipeline_graph_shows_fan_out_collect_and_optional_outputs() -> None:
    from pathlib import Path

    from asyncdag._workspace import load_pipelines

    examples = Path(__file__).resolve().parent.parent / "examples"
    loaded = load_pipelines(files=[examples / "crawler.py", examples / "branching.py"])
    app = create_app(list(loaded.values()), storage=InMemoryStorage())
    served = UI(app, "", None)
    async with lifespan(app), served.client:
        crawler = (await served.get("/api/pipelines/crawler")).json()
        branching = (await served.get("/api/pipelines/branching")).json()
    nodes = {n["name"]: n for n in crawler["nodes"]}
    assert nodes["fetch"]["mapped_over"] == {"node": "discover", "output": "urls"}
    assert nodes["discover"]["outputs"] == [
        {"name": "urls", "type": "Any", "required": False, "dynamic": True}
    ]
    assert nodes["summarize"]["inputs"][0]["source"]["kind"] == "collect"
    assert {(e["from"], e["to"], e["input"]) for e in crawler["edges"]} == {
        ("discover", "fetch", "url"),
        ("fetch", "summarize", "pages"),
    }
    route = next(n for n in branching["nodes"] if n["name"] == "route")
    assert [(o["name"], o["required"]) for o in route["outputs"]] == [
        ("small", False),
        ("large", False),
    ]
