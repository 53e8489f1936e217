"""A FastAPI service that awaits a pipeline per request, with the web UI mounted beside it.

``GET /report?pages=5`` runs ``page_report``: a fan-out of page fetches through the
service's one shared ``httpx.AsyncClient``, then a word count.  What it shows:

- The client belongs to the service: opened in its lifespan and handed to each run
  with ``resources={"http": client}``, used as it is and never closed by a run.  The
  pipeline's own ``http`` resource (a client of the run's own) is for runs started
  elsewhere: the CLI, or "Launch run" in the UI.
- The runs appear in the UI mounted at ``/dag`` because they are given the same
  ``storage=`` the UI reads; the UI's lifespan (its task group for the runs it
  launches) is entered from the service's own, as Starlette does not run a mounted
  app's lifespan.
- A library run prints nothing: the events go to the ``asyncdag`` logger, for the
  service's logging configuration to route (``ASYNCDAG_LOG_LEVEL=INFO`` prints them).
- Cancelling the request's task (a timeout around the call, the server shutting down)
  cancels its run, recorded CANCELED; ``cancel_is_error=False`` keeps such runs out of the
  error rate of their traces.

The pages come from ``/upstream``, a stand-in for the API a real service would read,
served in-process (``UPSTREAM_URL`` points the client at a real one)::

    pip install -e '.[examples,ui]'
    python examples/fastapi_service.py --port 8000   # or: uvicorn --app-dir examples fastapi_service:app
    curl 'http://127.0.0.1:8000/report?pages=5'
    open http://127.0.0.1:8000/dag/

It also runs through the CLI as it is: ``asyncdag pipeline execute -f examples/fastapi_service.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

try:
    import httpx
    from fastapi import FastAPI, HTTPException, Query, Request
except ImportError:  # pragma: no cover - only without the extras
    raise ImportError(
        "this example needs FastAPI and httpx: pip install 'asyncdag[examples,ui]'"
    ) from None

from asyncdag import (
    DynamicOut,
    DynamicOutput,
    execute_pipeline_async,
    pipeline,
    resource,
    solid,
)
from asyncdag.config import Field
from asyncdag.storage import InMemoryStorage, RunStorage
from asyncdag.ui import create_app

# --- the upstream API (a stand-in) --------------------------------------------------------------

TEXT = "the quick brown fox jumps over the lazy dog while asyncdag runs"
PAGES = 100

upstream = FastAPI(title="upstream", docs_url=None, redoc_url=None, openapi_url=None)


@upstream.get("/pages/{n}")
async def page(n: int) -> dict[str, Any]:
    if not 1 <= n <= PAGES:
        raise HTTPException(404, detail=f"no page {n}; pages are 1 to {PAGES}")
    words = TEXT.split()
    return {"n": n, "text": " ".join(words[: 3 + n % len(words)])}


def upstream_client() -> httpx.AsyncClient:
    """A client of the upstream API: ``UPSTREAM_URL``, or the stand-in served in-process."""
    url = os.environ.get("UPSTREAM_URL")
    if url:
        return httpx.AsyncClient(base_url=url, timeout=10)
    return httpx.AsyncClient(base_url="http://upstream", transport=httpx.ASGITransport(upstream))


# --- the pipeline -------------------------------------------------------------------------------


@resource
async def own_client() -> AsyncIterator[httpx.AsyncClient]:
    """A client for this run alone, closed after it: for runs the service did not start."""
    async with upstream_client() as client:
        yield client


@solid(
    config_schema={"pages": Field(int, default=5, description="how many pages to read")},
    outs={"page": DynamicOut()},
)
def page_numbers(context: Any) -> Iterator[DynamicOutput]:
    for n in range(1, context.solid_config["pages"] + 1):
        yield DynamicOutput(n, mapping_key=f"p{n}")


@solid(required_resources={"http"})
async def fetch_page(context: Any, n: int) -> str:
    response = await context.resources.http.get(f"/pages/{n}")
    response.raise_for_status()
    return str(response.json()["text"])


@solid
def count_words(texts: list[str]) -> dict[str, int]:
    return {"pages": len(texts), "words": sum(len(text.split()) for text in texts)}


@pipeline(resources={"http": own_client})
def page_report() -> None:
    count_words(page_numbers().map(fetch_page).collect())


# --- the service --------------------------------------------------------------------------------


def create_service(*, storage: RunStorage | None = None) -> FastAPI:
    """The service: ``/report`` runs ``page_report``; the UI at ``/dag`` shows its runs."""
    # One store for the runs the endpoint starts and for the UI: a run is in the UI only if
    # it was given the UI's storage.  SqliteStorage("runs.db") would keep them across restarts.
    storage = storage if storage is not None else InMemoryStorage()
    ui = create_app([page_report], storage=storage)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with upstream_client() as client, ui.router.lifespan_context(ui):
            app.state.http = client  # one connection pool for every request's run
            yield

    service = FastAPI(title="page reports", lifespan=lifespan)

    @service.get("/report")
    async def report(request: Request, pages: int = Query(5, ge=1, le=200)) -> dict[str, Any]:
        result = await execute_pipeline_async(
            page_report,
            {"solids": {"page_numbers": {"config": {"pages": pages}}}},
            resources={"http": request.app.state.http},
            storage=storage,
            max_concurrency=16,
            tags={"source": "api"},
            raise_on_error=False,
            cancel_is_error=False,
        )
        if not result.success:
            reason = result.status.value
            for step in result.failed_steps:
                if step.error is not None:
                    reason = f"{step.key}: {step.error.type}: {step.error.message}"
                    break
            raise HTTPException(502, detail=f"run {result.run_id} failed ({reason})")
        return {"run_id": result.run_id, **result.output_for_solid("count_words")}

    service.mount("/upstream", upstream)
    service.mount("/dag", ui)
    return service


app = create_service()


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    uvicorn.run(app, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
