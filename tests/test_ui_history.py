"""The UI over a run history on a bad day: odd values, a damaged file, a run killed with -9.

Never a 500: what a run stored is served as JSON a browser parses, a failing
history is a 503 that says what is wrong, and a run whose process died stops
being "running" (its event stream ends) as it does in the CLI.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asyncdag import Event, EventType, RunStatus
from asyncdag.storage import InMemoryStorage, RunRecord, RunStorage, SqliteStorage, StorageError
from asyncdag.ui import create_app
from ui_server import TEST_PIPELINES, lifespan, load_hello_world, sse_messages

pytestmark = pytest.mark.anyio

HANG_GUARD = 60  # seconds; only stops a broken test from hanging, never asserts speed
SLOW = Path(__file__).parent / "pipelines" / "slow.py"
ODD = b"report-\xe9t\xe9.csv".decode("utf-8", "surrogateescape")


def strict_json(text: str) -> Any:
    """Parse as a browser does: NaN and Infinity are not JSON."""

    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


async def served(storage: RunStorage) -> tuple[Any, httpx.AsyncClient]:
    app = create_app([load_hello_world(), *TEST_PIPELINES], storage=storage)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
    return app, client


async def test_runs_with_nan_config_and_surrogate_text_are_served_as_strict_json(
    storage: RunStorage,
) -> None:
    config = {"solids": {"a": {"config": {"x": math.nan, "y": -math.inf}}}, ODD: ODD}
    await storage.create_run(
        RunRecord(run_id="odd", pipeline_name="odd", run_config=config, tags={ODD: ODD})
    )
    await storage.add_events(
        "odd",
        [
            Event("odd", 0, 1.0, EventType.LOG, message=f"reading {ODD}", data={"v": math.inf}),
            Event("odd", 1, 2.0, EventType.RUN_SUCCESS, data={"duration": math.nan}),
        ],
    )
    await storage.finish_run("odd", RunStatus.SUCCESS, end_time=2.0)
    app, client = await served(storage)
    async with lifespan(app), client:
        runs = await client.get("/api/runs")
        assert runs.status_code == 200, runs.text
        (run,) = strict_json(runs.text)["runs"]
        assert run["run_config"]["solids"]["a"]["config"] == {"x": None, "y": None}
        assert run["tags"] == {ODD: ODD}
        one = await client.get("/api/runs/odd")
        assert one.status_code == 200 and strict_json(one.text)["run_config"][ODD] == ODD
        page = await client.get("/api/runs/odd/events")
        assert page.status_code == 200
        events = strict_json(page.text)["events"]
        assert events[0]["message"] == f"reading {ODD}" and events[0]["data"] == {"v": None}
        messages = await sse_messages(app, "/api/runs/odd/events/stream")
        streamed = [e for kind, _, data in messages if kind == "events" for e in strict_json(data)]
        assert [e["seq"] for e in streamed] == [0, 1]
        assert messages[-1][0] == "end"
        (runs_message,) = await sse_messages(app, "/api/runs/stream", stop_after=1)
        assert strict_json(runs_message[2])["runs"][0]["run_id"] == "odd"


HOSTILE_TEXT = st.text(st.characters(blacklist_categories=(), codec=None), max_size=20)
HOSTILE_VALUES = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | HOSTILE_TEXT,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(HOSTILE_TEXT, children, max_size=3)
    ),
    max_leaves=10,
)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    config=st.dictionaries(HOSTILE_TEXT, HOSTILE_VALUES, max_size=3),
    tags=st.dictionaries(HOSTILE_TEXT, HOSTILE_TEXT, max_size=3),
    messages=st.lists(HOSTILE_TEXT, max_size=5),
    data=st.lists(st.dictionaries(HOSTILE_TEXT, HOSTILE_VALUES, max_size=3), max_size=5),
)
async def test_whatever_a_run_stored_is_served_whole_never_a_500(
    storage: RunStorage,
    config: dict[str, Any],
    tags: dict[str, str],
    messages: list[str],
    data: list[dict[str, Any]],
) -> None:
    run_id = f"run-{len(await storage.list_runs())}"
    await storage.create_run(
        RunRecord(run_id=run_id, pipeline_name="odd", run_config=config, tags=tags)
    )
    events = [
        Event(run_id, seq, 1.0, EventType.LOG, message=message, data=item)
        for seq, (message, item) in enumerate(zip(messages, data, strict=False))
    ]
    await storage.add_events(run_id, events)
    await storage.finish_run(run_id, RunStatus.SUCCESS, end_time=2.0)
    app, client = await served(storage)
    async with lifespan(app), client:
        listed = await client.get("/api/runs")
        one = await client.get(f"/api/runs/{run_id}")
        page = await client.get(f"/api/runs/{run_id}/events")
        streamed = _events(await sse_messages(app, f"/api/runs/{run_id}/events/stream?after=-1"))
    for response in (listed, one, page):
        assert response.status_code == 200, response.text
        strict_json(response.text)
    assert run_id in [r["run_id"] for r in strict_json(listed.text)["runs"]]
    served_events = strict_json(page.text)["events"]
    assert [e["message"] for e in served_events] == [e.message for e in events]
    assert [e["seq"] for e in streamed] == [e.seq for e in events]


class BrokenStorage(InMemoryStorage):
    """A history that fails every call, as a damaged or vanished database does."""

    async def create_run(self, record: RunRecord) -> None:
        raise StorageError("run history /x/asyncdag.db is damaged (test); move it aside")

    async def list_runs(self, **kwargs: Any) -> list[RunRecord]:
        raise StorageError("run history /x/asyncdag.db is damaged (test); move it aside")

    async def get_run(self, run_id: str) -> RunRecord | None:
        raise StorageError("run history /x/asyncdag.db is damaged (test); move it aside")


async def test_a_failing_history_is_a_503_saying_what_is_wrong_never_a_500() -> None:
    app, client = await served(BrokenStorage())
    async with lifespan(app), client:
        for path in ("/api/runs", "/api/runs/some-run", "/api/runs/some-run/events"):
            response = await client.get(path)
            assert response.status_code == 503, (path, response.text)
            assert "damaged" in response.json()["error"]
        launched = await client.post("/api/runs", json={"pipeline": "hey_pipeline"})
        assert launched.status_code == 503, launched.text
        assert "not started" in launched.json()["error"]
        (message,) = await sse_messages(app, "/api/runs/stream")
        assert message[0] == "error" and "damaged" in json.loads(message[2])["error"]


async def test_a_damaged_sqlite_file_is_a_503(tmp_path: Path) -> None:
    path = tmp_path / "asyncdag.db"
    async with SqliteStorage(path) as storage:
        for n in range(30):
            await storage.create_run(RunRecord(run_id=f"r{n}", pipeline_name="p" * 300))
    size = path.stat().st_size
    with path.open("r+b") as file:
        file.seek(4096)
        file.write(bytes(range(256)) * ((size - 4096) // 256 + 1))
    async with SqliteStorage(path, recover_orphans=False) as storage:
        app, client = await served(storage)
        async with lifespan(app), client:
            response = await client.get("/api/runs")
    assert response.status_code == 503
    assert "damaged" in response.json()["error"]


# -- a run of another process killed with SIGKILL -----------------------------------------


def start_cli_run(home: Path) -> tuple[subprocess.Popen[str], str]:
    """``asyncdag pipeline execute`` of a run that waits forever; returns it once it waits."""
    script = Path(sys.executable).parent / "asyncdag"
    env = {**os.environ, "ASYNCDAG_HOME": str(home)}
    process = subprocess.Popen(
        [str(script), "pipeline", "execute", "-f", str(SLOW), "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    for line in process.stdout:
        event = json.loads(line)
        if event["type"] == "STEP_START" and event["step_key"] == "wait_forever":
            return process, str(event["run_id"])
    raise AssertionError("the run ended before its step started")


@pytest.mark.slow
async def test_a_run_killed_with_sigkill_is_marked_failed_and_its_stream_ends(
    tmp_path: Path,
) -> None:
    process, run_id = start_cli_run(tmp_path)
    try:
        async with SqliteStorage(tmp_path / "asyncdag.db") as storage:
            app, client = await served(storage)
            async with lifespan(app), client:
                before = (await client.get(f"/api/runs/{run_id}")).json()
                assert before["status"] == "STARTED"
                messages: list[tuple[str, str | None, str]] = []

                async def follow() -> None:
                    messages.extend(await sse_messages(app, f"/api/runs/{run_id}/events/stream"))

                with anyio.fail_after(HANG_GUARD):
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(follow)
                        await anyio.sleep(0.1)  # the stream is following the live run
                        process.kill()
                        await anyio.to_thread.run_sync(process.wait)
                kind, _, data = messages[-1]
                assert kind == "end"
                ended = json.loads(data)["run"]
                assert ended["status"] == "FAILURE" and "killed" in ended["failure_reason"]
                streamed = _events(messages)
                assert streamed[-1]["type"] == "RUN_FAILURE"
                assert [e["seq"] for e in streamed] == list(range(len(streamed)))
                (listed,) = (await client.get("/api/runs")).json()["runs"]
                assert listed["run_id"] == run_id and listed["status"] == "FAILURE"
                assert listed["end_time"] == streamed[-2]["timestamp"]  # its last event's time
    finally:
        process.kill()
        process.wait()


def _events(messages: Sequence[tuple[str, str | None, str]]) -> list[dict[str, Any]]:
    return [e for kind, _, data in messages if kind == "events" for e in json.loads(data)]
