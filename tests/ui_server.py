"""Helpers for the UI tests: pipelines to serve, the ASGI lifespan run by hand, a real server.

Not a test module: ``test_ui_api.py`` and ``test_ui_browser.py`` import it.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from asyncdag import RetryPolicy, pipeline, solid
from asyncdag.config import Field

ROOT = Path(__file__).resolve().parent.parent
HELLO_WORLD = ROOT / "examples" / "hello_world.py"
#: The browser tests drive Debian's Chromium; they are skipped where it is missing.
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
#: A browser test module's ``pytestmark``: marked, and skipped only where Chromium is missing.
BROWSER_TEST = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="Debian's Chromium is not installed at /usr/bin/chromium (apt-get install chromium)",
    ),
]


def shot(page: Any, name: str) -> Path:
    """Save a screenshot of ``page`` as test-artifacts/screenshots/NAME.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def load_hello_world() -> Any:
    from asyncdag._workspace import load_pipelines

    return load_pipelines(files=[HELLO_WORLD])["hey_pipeline"]


# --- pipelines the tests launch ------------------------------------------------------------

#: Set by a test to let ``gated_pipeline``'s first step finish.
GATES: dict[str, threading.Event] = {}


@solid(config_schema={"seconds": Field(float, default=3600.0)})
async def wait(context):
    """Sleep for config `seconds`: a step that runs until it is cancelled."""
    context.log.info(f"waiting {context.solid_config['seconds']}s")
    await anyio.sleep(context.solid_config["seconds"])
    return 1


@solid
def after(value: int) -> int:
    return value + 1


@pipeline(description="Waits a long time: the run to cancel.")
def slow_pipeline():
    after(wait())


@solid(retry_policy=RetryPolicy(max_retries=1))
def explode() -> int:
    """Always raises, so a run shows a retry, a failure and a traceback."""
    raise ValueError("boom: the solid failed on purpose")


@solid
def never(value: int) -> int:
    return value


@pipeline(description="A step that fails after one retry; its child is skipped.")
def failing_pipeline():
    never(explode())


@solid(config_schema={"count": int})
async def chatter(context) -> int:
    """Logs `count` messages: a run with many events."""
    for i in range(context.solid_config["count"]):
        context.log.info(f"message {i}")
    return context.solid_config["count"]


@pipeline(description="Logs as many messages as its config asks for.")
def chatty_pipeline():
    chatter()


@solid(config_schema={"greeting": str, "times": Field(int, default=1)}, pool="io", timeout=30)
def greet(context, name: str) -> str:
    """Greets `name`, `times` times."""
    return " ".join(
        [f"{context.solid_config['greeting']}, {name}!"] * context.solid_config["times"]
    )


@pipeline(description="Needs config: a greeting and an input value.")
def configured_pipeline():
    greet()


TEST_PIPELINES = [slow_pipeline, failing_pipeline, chatty_pipeline, configured_pipeline]

#: Step keys of ``flaky_pipeline`` that fail while they are in this set: the tests' flag file.
FAILING: set[str] = set()


@solid
def ingest() -> int:
    return 20


@solid
def brittle(context, value: int) -> int:
    """Fails while a test keeps its step key in ``FAILING``."""
    if context.step_key in FAILING:
        raise RuntimeError(f"{context.step_key} fails while its flag is set")
    return value + 1


@solid
def publish(value: int) -> int:
    return value * 2


@pipeline(description="Fails where a test says, then is re-executed from its failure.")
def flaky_pipeline():
    publish(brittle(ingest()))


def mounted_in_host(ui_app: Any) -> Any:
    """A host Starlette app with its own page at ``/`` and ``ui_app`` mounted at ``/dag``."""
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Mount, Route

    @contextlib.asynccontextmanager
    async def host_lifespan(app: Starlette) -> AsyncIterator[None]:
        async with ui_app.router.lifespan_context(ui_app):
            yield

    async def hello(request: Any) -> Any:
        return PlainTextResponse("host app")

    return Starlette(routes=[Route("/", hello), Mount("/dag", app=ui_app)], lifespan=host_lifespan)


# --- the ASGI lifespan, run by hand (httpx's ASGI transport does not) --------------------


@contextlib.asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[None]:
    """Run ``app``'s lifespan around the block: startup before, shutdown after."""
    send_in, receive_in = anyio.create_memory_object_stream[dict[str, Any]](4)
    send_out, receive_out = anyio.create_memory_object_stream[dict[str, Any]](4)

    async def receive() -> dict[str, Any]:
        return await receive_in.receive()

    async def send(message: dict[str, Any]) -> None:
        await send_out.send(message)

    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    async with anyio.create_task_group() as tg:
        tg.start_soon(app, scope, receive, send)
        await send_in.send({"type": "lifespan.startup"})
        message = await receive_out.receive()
        assert message["type"] == "lifespan.startup.complete", message
        try:
            yield
        finally:
            await send_in.send({"type": "lifespan.shutdown"})
            message = await receive_out.receive()
            assert message["type"] == "lifespan.shutdown.complete", message


async def sse_messages(
    app: Any,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    stop_after: int | None = None,
    into: list[tuple[str, str | None, str]] | None = None,
) -> list[tuple[str, str | None, str]]:
    """Call an SSE endpoint in-process and parse its messages as (event, id, data).

    With ``stop_after``, the client disconnects after that many messages (the
    runs feed never ends by itself); else it reads until the server closes.
    Messages are appended to ``into`` as they arrive, for a test to watch.
    """
    raw = ""
    messages: list[tuple[str, str | None, str]] = [] if into is None else into
    done = anyio.Event()
    status: list[int] = []

    async def receive() -> dict[str, Any]:
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal raw
        if message["type"] == "http.response.start":
            status.append(message["status"])
            return
        raw += message.get("body", b"").decode()
        while "\n\n" in raw:
            block, raw = raw.split("\n\n", 1)
            fields: dict[str, str] = {}
            for line in block.split("\n"):
                if line.startswith(":"):
                    continue
                key, _, value = line.partition(": ")
                fields[key] = value
            if "event" in fields:
                messages.append((fields["event"], fields.get("id"), fields.get("data", "")))
        if stop_after is not None and len(messages) >= stop_after:
            done.set()
        if not message.get("more_body", False):
            done.set()

    path, _, query = path.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query.encode(),
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
    }
    await app(scope, receive, send)
    assert status == [200], status
    return messages


# --- a real server on a free port ----------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serve_in_thread(app: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free 127.0.0.1 port; yield its base URL."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


# --- Chromium --------------------------------------------------------------------------------


def launch_chromium(playwright: Any, *args: str) -> Any:
    """Debian's Chromium, headless, through Playwright (which never downloads a browser)."""
    return playwright.chromium.launch(
        executable_path=str(CHROMIUM),
        args=[
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            *args,
        ],
    )


def watch_console(page: Any) -> list[str]:
    """Collect the page's uncaught errors and Content-Security-Policy violations as they happen."""
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"uncaught: {exc}"))
    page.on(
        "console",
        lambda message: (
            problems.append(f"CSP: {message.text}")
            if "Content Security Policy" in message.text
            else None
        ),
    )
    return problems
