"""Fetch URLs concurrently through one shared ``httpx.AsyncClient`` resource.

The client is a resource: set up once, before the first step that needs it,
shared by every fetch step on the run's event loop, and closed after the run
(also when it fails or is cancelled).  Its ``timeout`` and ``base_url`` are
resource config; the URL list is a solid's config; ``max_concurrency`` bounds
the fetch steps running at once.  All of it comes from ``fetch_urls.yaml``,
which is also the pipeline's default run config.  Without a ``base_url`` the
resource serves a small local test site for the run's duration, so the example
runs offline, from the script or through the CLI:

    python examples/fetch_urls.py                      # against a local test server
    python examples/fetch_urls.py --base-url http://127.0.0.1:8000
    python examples/fetch_urls.py -c other.yaml --backend trio
    asyncdag pipeline execute -f examples/fetch_urls.py

Needs ``httpx`` (``pip install httpx``).
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import re
import threading
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import attrs

try:
    import httpx
except ImportError:  # pragma: no cover - only without the extra
    raise ImportError("this example needs httpx: pip install 'asyncdag[examples]'") from None

from asyncdag import InitResourceContext, execute_pipeline, pipeline, resource, solid
from asyncdag.config import load_run_config

CONFIG_FILE = Path(__file__).with_name("fetch_urls.yaml")
# The graph is fixed when the pipeline is defined, so the URLs (known only from
# config) are dealt round-robin to this many fetch steps.
SHARDS = 4


# --- the resource ----------------------------------------------------------------------------


@attrs.frozen
class HttpConfig:
    base_url: str | None = attrs.field(
        default=None,
        metadata={"description": "fetch from here; unset: a local test server, for this run"},
    )
    timeout: float = attrs.field(default=10.0, metadata={"description": "seconds per request"})


@resource(config_schema=HttpConfig)
async def http_client(context: InitResourceContext) -> AsyncIterator[httpx.AsyncClient]:
    """One connection pool for the whole run; closed when the run ends."""
    config: HttpConfig = context.resource_config
    with contextlib.ExitStack() as stack:
        base_url = config.base_url or stack.enter_context(local_server())
        context.log.info("HTTP client for %s (timeout %ss)", base_url, config.timeout)
        async with httpx.AsyncClient(base_url=base_url, timeout=config.timeout) as client:
            yield client


# --- the solids ------------------------------------------------------------------------------


@solid(config_schema={"urls": list[str]})
def list_urls(context: Any) -> list[str]:
    return list(context.solid_config["urls"])


@solid(required_resources={"http"})
async def fetch(context: Any, urls: list[str], shard: int) -> list[dict[str, Any]]:
    """Fetch every SHARDS-th URL, starting at ``shard``, with the shared client."""
    client: httpx.AsyncClient = context.resources.http
    results = []
    for url in urls[shard::SHARDS]:
        try:
            response = await client.get(url)
        except httpx.HTTPError as exc:
            context.log.warning("%s failed: %s: %s", url, type(exc).__name__, exc)
            results.append({"url": url, "status": None, "bytes": 0})
            continue
        context.log.info("%s -> %d (%d bytes)", url, response.status_code, len(response.content))
        results.append({"url": url, "status": response.status_code, "bytes": len(response.content)})
    return results


@solid
def summarise(context: Any, fetched: list[list[dict[str, Any]]]) -> dict[str, Any]:
    rows = sorted((row for shard in fetched for row in shard), key=lambda row: row["url"])
    statuses = Counter("error" if row["status"] is None else row["status"] for row in rows)
    summary = {
        "requests": len(rows),
        "status_codes": dict(sorted(statuses.items(), key=lambda item: str(item[0]))),
        "bytes": sum(row["bytes"] for row in rows),
        "urls": rows,
    }
    context.log.info(
        "%d requests, %d bytes, status codes %s",
        summary["requests"],
        summary["bytes"],
        summary["status_codes"],
    )
    return summary


@pipeline(resources={"http": http_client}, config=load_run_config(CONFIG_FILE))
def fetch_urls() -> None:
    urls = list_urls()
    summarise([fetch.alias(f"fetch_{shard}")(urls, shard) for shard in range(SHARDS)])


# --- a local server to fetch from ------------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    """``/bytes/N`` answers 200 with N bytes; ``/status/C`` answers C; anything else is 404."""

    def do_GET(self) -> None:
        if match := re.fullmatch(r"/bytes/(\d+)", self.path):
            status, body = 200, b"x" * int(match.group(1))
        elif match := re.fullmatch(r"/status/(\d{3})", self.path):
            status = int(match.group(1))
            body = b"" if status in (204, 304) else f"status {status}".encode()
        else:
            status, body = 404, b"not found"
        self.send_response(status)
        if status not in (204, 304):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if status not in (204, 304):
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep the example's output to the run's own log


@contextlib.contextmanager
def local_server() -> Iterator[str]:
    """Serve ``_Handler`` on 127.0.0.1 at a free port in a thread; yield its base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    # A short poll keeps shutdown() quick: the resource's teardown waits for it.
    thread = threading.Thread(
        target=server.serve_forever, args=(0.05,), name="fetch-urls-server", daemon=True
    )
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield f"http://{host}:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def run_config_for(base_url: str | None, *config_files: str | Path) -> dict[str, Any]:
    """The YAML run config with the client's base_url filled in (None: the local server)."""
    run_config = load_run_config(*(config_files or (CONFIG_FILE,)))
    if base_url is not None:
        resources = run_config.setdefault("resources", {})
        http = resources.setdefault("http", {})
        http.setdefault("config", {})["base_url"] = base_url
    return run_config


def print_summary(summary: dict[str, Any]) -> None:
    for row in summary["urls"]:
        status = row["status"] if row["status"] is not None else "error"
        print(f"  {status!s:>5}  {row['bytes']:>7} bytes  {row['url']}")
    codes = ", ".join(f"{code}: {count}" for code, count in summary["status_codes"].items())
    print(f"{summary['requests']} requests, {summary['bytes']} bytes; status codes {{{codes}}}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", help="fetch from here instead of a local test server")
    parser.add_argument(
        "-c", "--config", action="append", help=f"run config YAML (default: {CONFIG_FILE.name})"
    )
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    args = parser.parse_args(argv)

    run_config = run_config_for(args.base_url, *(args.config or ()))
    result = execute_pipeline(fetch_urls, run_config, backend=args.backend)
    print_summary(result.output_for_solid("summarise"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
