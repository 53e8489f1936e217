"""The UI's guard over plain HTTP: foreign origins, Host headers, tokens, body limits, headers.

Each refusal is a 4xx with a JSON message and launches nothing; the UI's own
pages and clients that are not browsers (curl, httpx) keep working.  Served at
the root and mounted at ``/dag`` in a host app; on asyncio and trio.  The same
attacks from a real Chromium are in ``test_ui_guard_browser.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse

from asyncdag import AsyncdagError
from asyncdag.storage import InMemoryStorage
from asyncdag.ui import create_app
from asyncdag.ui._endpoints import ENDPOINTS
from asyncdag.ui._guard import hosts_for_bind, is_loopback, page_url
from ui_server import TEST_PIPELINES, lifespan, load_hello_world, mounted_in_host

pytestmark = pytest.mark.anyio

TOKEN = "s3cret-token-for-tests-0123456789"
LAUNCH = {"pipeline": "hey_pipeline"}
FOREIGN = "http://127.0.0.1:6666"  # another port of the same machine: another origin


class Served:
    """A UI app (at the root or mounted at /dag) and an httpx client talking to it."""

    def __init__(self, app: Any, asgi: Any, prefix: str, host: str) -> None:
        self.app = app
        self.asgi = asgi
        self.prefix = prefix
        self.origin = f"http://{host}"
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=asgi), base_url=self.origin
        )

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return await self.client.request(method, self.prefix + path, **kwargs)

    async def run_count(self) -> int:
        """Runs launched, whether still only live or already in storage."""
        return len(await self.app.state.live.list_runs())


@pytest.fixture(params=["root", "mounted"])
def where(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def _serve(where: str, *, host: str = "127.0.0.1:3000", **options: Any) -> Served:
    app = create_app([load_hello_world(), *TEST_PIPELINES], storage=InMemoryStorage(), **options)
    asgi, prefix = (app, "") if where == "root" else (mounted_in_host(app), "/dag")
    return Served(app, asgi, prefix, host)


@pytest.fixture
async def ui(where: str) -> AsyncIterator[Served]:
    served = await _serve(where, allowed_hosts=hosts_for_bind("127.0.0.1"))
    async with lifespan(served.asgi), served.client:
        yield served


@pytest.fixture
async def locked(where: str) -> AsyncIterator[Served]:
    """A UI that needs the access token."""
    served = await _serve(where, auth_token=TOKEN)
    async with lifespan(served.asgi), served.client:
        yield served


# --- state changes come from the UI's own pages ---------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": FOREIGN},
        {"Origin": "null"},  # a sandboxed frame or a data: URL
        {"Origin": "http://127.0.0.1:3000.evil.example"},
        {"Referer": f"{FOREIGN}/attack.html"},
        {"Sec-Fetch-Site": "same-site"},  # a browser, another port, Origin stripped
        {"Sec-Fetch-Site": "cross-site"},
    ],
    ids=["origin", "null-origin", "lookalike-origin", "referer", "same-site", "cross-site"],
)
async def test_a_launch_from_another_origin_is_403_and_launches_nothing(
    ui: Served, headers: dict[str, str]
) -> None:
    response = await ui.request("POST", "/api/runs", json=LAUNCH, headers=headers)
    assert response.status_code == 403
    assert "cross-origin request refused" in response.json()["error"]
    assert await ui.run_count() == 0


async def test_a_launch_from_the_uis_own_page_is_accepted(ui: Served) -> None:
    headers = {
        "Origin": ui.origin,
        "Referer": f"{ui.origin}{ui.prefix}/",
        "Sec-Fetch-Site": "same-origin",
    }
    response = await ui.request("POST", "/api/runs", json=LAUNCH, headers=headers)
    assert response.status_code == 201, response.text
    assert await ui.run_count() == 1


async def test_a_client_that_sends_no_origin_is_accepted(ui: Served) -> None:
    response = await ui.request("POST", "/api/runs", json=LAUNCH)
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    "endpoint",
    [e for e in ENDPOINTS if e.method != "GET"],
    ids=lambda e: f"{e.method} {e.path}",
)
async def test_every_state_changing_endpoint_refuses_a_foreign_origin(
    ui: Served, endpoint: Any
) -> None:
    path = endpoint.path.replace("{name}", "hey_pipeline").replace("{run_id}", "any")
    response = await ui.request(endpoint.method, path, json={}, headers={"Origin": FOREIGN})
    assert response.status_code == 403
    assert "cross-origin" in response.json()["error"]


async def test_a_route_added_later_is_guarded_too() -> None:
    app = create_app([load_hello_world()])
    deleted: list[str] = []

    async def delete_everything(request: Request) -> JSONResponse:
        deleted.append("everything")
        return JSONResponse({"deleted": True})

    app.add_route("/api/everything", delete_everything, methods=["DELETE"])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        refused = await client.delete("/api/everything", headers={"Origin": FOREIGN})
        assert refused.status_code == 403
        assert deleted == []
        assert (await client.delete("/api/everything")).status_code == 200
    assert deleted == ["everything"]


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None],
)
async def test_a_body_that_is_not_json_is_415_and_launches_nothing(
    ui: Served, content_type: str | None
) -> None:
    # What <form enctype="text/plain"> sends: a JSON-looking body under a form content type.
    headers = {"Content-Type": content_type} if content_type else {}
    body = b'{"pipeline": "hey_pipeline", "x": "="}'
    response = await ui.request("POST", "/api/runs", content=body, headers=headers)
    assert response.status_code == 415
    assert "Content-Type: application/json" in response.json()["error"]
    assert await ui.run_count() == 0


async def test_json_with_a_charset_is_json(ui: Served) -> None:
    headers = {"Content-Type": "application/json; charset=utf-8"}
    response = await ui.request(
        "POST", "/api/runs", content=b'{"pipeline":"hey_pipeline"}', headers=headers
    )
    assert response.status_code == 201, response.text


async def test_a_post_without_a_body_needs_no_content_type(ui: Served) -> None:
    response = await ui.request("POST", "/api/runs/nope/cancel")
    assert response.status_code == 404  # reached the endpoint


async def test_a_body_over_the_limit_is_413(where: str) -> None:
    served = await _serve(where, max_body_bytes=100)
    async with lifespan(served.asgi), served.client:
        sized = await served.request("POST", "/api/runs", json={**LAUNCH, "pad": "x" * 100})
        assert sized.status_code == 413
        assert "larger than 100 bytes" in sized.json()["error"]

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
            yield b'{"pipeline": "hey_pipeline", "pad": "'
            for _ in range(10):
                yield b"x" * 20
            yield b'"}'

        streamed = await served.request(
            "POST", "/api/runs", content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert streamed.status_code == 413
        assert await served.run_count() == 0
        small = await served.request("POST", "/api/runs", json=LAUNCH)
        assert small.status_code == 201


async def test_the_default_body_limit_is_one_mebibyte(ui: Served) -> None:
    body = {**LAUNCH, "pad": "x" * (1 << 20)}
    response = await ui.request("POST", "/api/pipelines/hey_pipeline/validate", json=body)
    assert response.status_code == 413
    assert "1,048,576 bytes" in response.json()["error"]


# --- the Host header --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host", ["localhost", "localhost:3000", "127.0.0.1:3000", "[::1]:3000", "LOCALHOST."]
)
async def test_local_names_are_served(ui: Served, host: str) -> None:
    response = await ui.request("GET", "/api/info", headers={"Host": host})
    assert response.status_code == 200


@pytest.mark.parametrize("host", ["attacker.example", "attacker.example:3000", "127.0.0.2", ""])
async def test_any_other_host_is_refused_against_dns_rebinding(ui: Served, host: str) -> None:
    for method, path in (("GET", "/"), ("GET", "/api/runs"), ("POST", "/api/runs")):
        response = await ui.request(method, path, json=LAUNCH, headers={"Host": host})
        assert response.status_code == 403
        assert "--allowed-host" in response.json()["error"]
    assert await ui.run_count() == 0


async def test_allowed_hosts_take_names_and_domain_patterns(where: str) -> None:
    served = await _serve(where, allowed_hosts=["dag.example.com", "*.internal"])
    async with lifespan(served.asgi), served.client:
        for host, status in [
            ("dag.example.com", 200),
            ("dag.example.com:8443", 200),
            ("ci.internal", 200),
            ("internal", 403),
            ("localhost", 403),
        ]:
            response = await served.request("GET", "/api/info", headers={"Host": host})
            assert response.status_code == status, host


async def test_create_app_leaves_the_host_to_the_host_app_by_default(where: str) -> None:
    served = await _serve(where)
    async with lifespan(served.asgi), served.client:
        response = await served.request("GET", "/api/info", headers={"Host": "anything"})
        assert response.status_code == 200


def test_hosts_for_a_loopback_bind_are_the_local_names() -> None:
    assert hosts_for_bind("127.0.0.1") == ("localhost", "127.0.0.1", "::1")
    assert hosts_for_bind("::1", ["Dag.Example.com:80", "*.lan"]) == (
        "localhost",
        "127.0.0.1",
        "::1",
        "dag.example.com",
        "*.lan",
    )


def test_hosts_for_a_specific_bind_add_its_address() -> None:
    assert hosts_for_bind("192.168.1.5")[-1] == "192.168.1.5"


def test_hosts_for_a_wildcard_bind_are_this_machines_names_not_the_wildcard() -> None:
    import socket

    hosts = hosts_for_bind("0.0.0.0")
    assert "0.0.0.0" not in hosts
    assert socket.gethostname().lower() in hosts
    assert {"localhost", "127.0.0.1", "::1"} <= set(hosts)


@pytest.mark.parametrize(
    ("host", "local"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.5", False),
        ("example.com", False),
    ],
)
def test_loopback_addresses(host: str, local: bool) -> None:
    assert is_loopback(host) is local


# --- the access token -------------------------------------------------------------------------


async def test_without_the_token_every_request_is_401(locked: Served) -> None:
    for method, path in (("GET", "/"), ("GET", "/api/runs"), ("POST", "/api/runs")):
        response = await locked.request(method, path, json=LAUNCH)
        assert response.status_code == 401
        assert "access token" in response.json()["error"]
        assert response.headers["www-authenticate"].startswith("Bearer")
    wrong = await locked.request(
        "GET", "/api/runs", headers={"Authorization": "Bearer " + TOKEN[:-1] + "x"}
    )
    assert wrong.status_code == 401
    assert await locked.run_count() == 0


async def test_a_bearer_token_lets_an_api_client_in(locked: Served) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    assert (await locked.request("GET", "/api/runs", headers=headers)).status_code == 200
    launched = await locked.request("POST", "/api/runs", json=LAUNCH, headers=headers)
    assert launched.status_code == 201


async def test_the_token_in_the_page_url_becomes_a_strict_httponly_cookie(locked: Served) -> None:
    opened = await locked.request("GET", "/", params={"token": TOKEN, "x": "1"})
    assert opened.status_code == 303
    assert opened.headers["location"] == f"{locked.prefix}/?x=1"  # the token leaves the URL
    cookie = opened.headers["set-cookie"]
    assert f"={TOKEN}" in cookie
    for attribute in ("HttpOnly", "SameSite=Strict", f"Path={locked.prefix}/"):
        assert attribute in cookie
    # httpx keeps the cookie, as the browser does: the page and the API now answer.
    page = await locked.request("GET", "/")
    assert page.status_code == 200 and "<base href=" in page.text
    assert (await locked.request("POST", "/api/runs", json=LAUNCH)).status_code == 201


async def test_the_token_as_a_query_parameter_works_for_api_calls(locked: Served) -> None:
    response = await locked.request("GET", "/api/runs", params={"token": TOKEN})
    assert response.status_code == 200
    assert "set-cookie" not in response.headers


async def test_a_wrong_token_in_the_url_is_401(locked: Served) -> None:
    response = await locked.request("GET", "/", params={"token": "x" * 20})
    assert response.status_code == 401
    assert "set-cookie" not in response.headers


def test_a_weak_token_is_refused() -> None:
    with pytest.raises(AsyncdagError, match="at least 16"):
        create_app([load_hello_world()], auth_token="short")
    with pytest.raises(AsyncdagError, match=r"secrets\.token_urlsafe"):
        create_app([load_hello_world()], auth_token="has spaces and; semicolons")


def test_the_printed_url_carries_the_token() -> None:
    assert page_url("127.0.0.1", 3000, None) == "http://localhost:3000/"
    assert page_url("10.0.0.7", 8080, TOKEN) == f"http://10.0.0.7:8080/?token={TOKEN}"
    assert page_url("::", 3000, TOKEN).endswith(f":3000/?token={TOKEN}")
    assert page_url("fd00::7", 3000, None) == "http://[fd00::7]:3000/"


# --- headers on every response ----------------------------------------------------------------


async def test_every_response_forbids_framing_and_inline_code(ui: Served) -> None:
    responses = [
        await ui.request("GET", "/"),
        await ui.request("GET", "/static/js/app.js"),
        await ui.request("GET", "/api/pipelines"),
        await ui.request("GET", "/api/nothing-here"),
        await ui.request("POST", "/api/runs", json=LAUNCH, headers={"Origin": FOREIGN}),
    ]
    for response in responses:
        csp = response.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "same-origin"


async def test_the_host_apps_own_routes_keep_their_headers() -> None:
    host = mounted_in_host(create_app([load_hello_world()]))
    async with (
        lifespan(host),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=host), base_url="http://t") as c,
    ):
        own = await c.get("/")
        assert own.text == "host app"
        assert "content-security-policy" not in own.headers
        assert "x-frame-options" in (await c.get("/dag/")).headers


def test_the_page_has_no_inline_script_style_or_handler() -> None:
    import re

    from asyncdag.ui._app import static_dir

    page = (static_dir() / "index.html").read_text()
    assert re.findall(r"<script(?![^>]*\bsrc=)", page) == []
    assert "<style" not in page
    assert re.findall(r"\s(on[a-z]+|style)=", page) == []
    for script in (static_dir() / "js").iterdir():
        text = script.read_text()
        assert "innerHTML" not in text and "eval(" not in text, script.name
        assert 'setAttribute("style"' not in text, script.name


# --- `asyncdag ui`: the flags that set the guard (the process itself: test_ui_command.py) ---


@pytest.fixture
def served_by_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> list[dict[str, Any]]:
    """The app and banner `asyncdag ui` would serve, captured instead of served."""
    from asyncdag.ui import _server

    captured: list[dict[str, Any]] = []

    def run_server(app: Any, sock: Any, *, grace: float, banner: str) -> int:
        captured.append({"app": app, "banner": banner})
        return 0

    monkeypatch.setenv("ASYNCDAG_HOME", str(tmp_path))
    monkeypatch.delenv("ASYNCDAG_UI_TOKEN", raising=False)
    monkeypatch.setattr(_server, "run_server", run_server)
    return captured


def _ui_command(*args: str) -> int:
    from asyncdag.cli import main
    from ui_server import HELLO_WORLD

    return main(["ui", "-f", str(HELLO_WORLD), "--port", "0", *args])


async def test_the_token_can_come_from_the_environment(
    served_by_command: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASYNCDAG_UI_TOKEN", TOKEN)
    assert _ui_command("--host", "0.0.0.0") == 0
    (served,) = served_by_command
    assert f"/?token={TOKEN}" in served["banner"]
    transport = httpx.ASGITransport(app=served["app"])
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        assert (await client.get("/api/info")).status_code == 401
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        assert (await client.get("/api/info", headers=bearer)).status_code == 200


async def test_the_command_answers_only_to_local_names_and_allowed_hosts(
    served_by_command: list[dict[str, Any]],
) -> None:
    assert _ui_command("--allowed-host", "dag.example.com", "--allowed-host", "*.lan") == 0
    (served,) = served_by_command
    assert "token" not in served["banner"]  # none needed on loopback
    transport = httpx.ASGITransport(app=served["app"])
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        for host, status in [
            ("localhost:3000", 200),
            ("127.0.0.1:3000", 200),
            ("[::1]:3000", 200),
            ("dag.example.com", 200),
            ("ci.lan:3000", 200),
            ("rebound.attacker.example:3000", 403),
        ]:
            response = await client.get("/api/info", headers={"Host": host})
            assert response.status_code == status, host
