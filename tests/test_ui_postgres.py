"""The web UI on PostgreSQL storage: a run written on one host streams live to a UI on another.

Two :class:`PostgresStorage` objects on one database stand for two hosts: the
UI reads through one, a run writes through the other.  The UI's feed waits in
``wait_for_events``, which LISTEN/NOTIFY wakes when the other host commits.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest

from asyncdag import Event, EventType, RunStatus
from asyncdag.storage import PostgresStorage, RunRecord
from asyncdag.ui import _live, create_app
from ui_server import lifespan, load_hello_world, sse_messages

pytestmark = pytest.mark.anyio

HANG_GUARD = 60  # seconds; only stops a broken test from hanging, never asserts speed


async def test_a_ui_streams_a_run_written_on_another_host_as_it_happens(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without a NOTIFY the feed would sleep an hour between reads: only LISTEN wakes it.
    monkeypatch.setattr(_live, "_STORAGE_POLL_MAX", 3600.0)
    monkeypatch.setattr(_live, "_KEEPALIVE", 3600.0)
    messages: list[tuple[str, str | None, str]] = []

    def delivered() -> list[int]:
        return [
            e["seq"] for kind, _, data in messages if kind == "events" for e in json.loads(data)
        ]

    async with PostgresStorage(postgres_url) as ui_host, PostgresStorage(postgres_url) as run_host:
        await run_host.create_run(
            RunRecord(run_id="remote", pipeline_name="hey_pipeline", status=RunStatus.STARTED)
        )
        app = create_app([load_hello_world()], storage=ui_host)
        with anyio.fail_after(HANG_GUARD):
            async with lifespan(app), anyio.create_task_group() as tg:
                tg.start_soon(
                    lambda: sse_messages(app, "/api/runs/remote/events/stream", into=messages)
                )
                for seq in range(3):
                    await run_host.add_events(
                        "remote", [Event("remote", seq, 1.0 + seq, EventType.LOG, message=f"{seq}")]
                    )
                    while delivered() != list(range(seq + 1)):  # shown while the run goes on
                        await anyio.sleep(0.01)
                await run_host.finish_run("remote", RunStatus.SUCCESS, end_time=4.0)
    kind, _, data = messages[-1]
    end: Any = json.loads(data)
    assert kind == "end" and end["run"]["status"] == "SUCCESS"
    assert delivered() == [0, 1, 2]
