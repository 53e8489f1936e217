"""How long the web UI takes to show a big run, against running that pipeline from Python.

One pipeline of ``--steps`` independent no-op solids (100,000 by default) is run three
ways in one process, and the UI's two pages are opened in Debian's Chromium:

- ``python``: ``await execute_pipeline_async(p)``, nothing recorded: the baseline;
- ``run page``: the run's page opened on a recorded run, until its log counts every
  event, its status is final and its graph is drawn;
- ``graph``: the pipeline's page, until its graph is drawn.

Each page time is reported as a ratio to the Python run (the goal: within 2x), so a
busy shared machine slows both sides alike.  Needs the ``ui`` extra, Playwright and
``/usr/bin/chromium``.

    .venv/bin/python benchmarks/bench_ui.py [--steps 100000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the tests' uvicorn-in-a-thread helper

from asyncdag import PipelineDefinition, execute_pipeline_async, pipeline, solid  # noqa: E402

CHROMIUM = "/usr/bin/chromium"


@solid
def noop() -> int:
    return 1


def wide(steps: int) -> PipelineDefinition:
    @pipeline(name="wide")
    def wide_pipeline() -> None:
        for i in range(steps):
            noop.alias(f"s{i}")()

    return wide_pipeline


async def python_run(p: PipelineDefinition) -> float:
    started = time.perf_counter()
    await execute_pipeline_async(p)
    return time.perf_counter() - started


async def recorded_run(p: PipelineDefinition, storage: Any) -> tuple[str, int]:
    result = await execute_pipeline_async(p, storage=storage)
    return result.run_id, len(result.events)


def page_times(url: str, run_id: str, events: int, steps: int) -> dict[str, float]:
    from playwright.sync_api import expect, sync_playwright

    times: dict[str, float] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        page.set_default_timeout(600_000)
        expect.set_options(timeout=600_000)
        started = time.perf_counter()
        page.goto(f"{url}/#/runs/{run_id}")
        expect(page.locator("[data-testid=log-count]")).to_have_text(f"{events} events")
        expect(page.locator("[data-testid=run-status] [data-status]")).to_have_attribute(
            "data-status", "SUCCESS"
        )
        expect(page.locator("[data-testid=graph] [data-node]").first).to_have_attribute(
            "data-state", "success"
        )
        times["run page"] = time.perf_counter() - started
        started = time.perf_counter()
        page.goto(f"{url}/#/pipelines/wide")
        expect(page.locator("[data-testid=graph] [data-node]").first).to_be_visible()
        times["graph"] = time.perf_counter() - started
        browser.close()
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--json", metavar="PATH", help="also write the figures here")
    args = parser.parse_args()
    if not os.path.exists(CHROMIUM):
        print(f"{CHROMIUM} is missing: apt-get install chromium", file=sys.stderr)
        return 2

    from asyncdag.storage import SqliteStorage
    from asyncdag.ui import create_app
    from ui_server import serve_in_thread

    p = wide(args.steps)
    python = anyio.run(python_run, p)
    with tempfile.TemporaryDirectory() as tmp, SqliteStorage(Path(tmp) / "runs.db") as storage:
        run_id, events = anyio.run(recorded_run, p, storage)
        with serve_in_thread(create_app([p], storage=storage)) as url:
            pages = page_times(url, run_id, events, args.steps)
    figures = {"steps": args.steps, "events": events, "python": python, **pages}
    print(f"{args.steps:,} steps, {events:,} events")
    print(f"  python run  {python:7.2f} s")
    for name, seconds in pages.items():
        print(f"  {name:<10}  {seconds:7.2f} s  {seconds / python:5.2f}x the Python run")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
