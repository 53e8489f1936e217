"""Crawl a site: stream discovered URLs into fetch steps, then collect a summary.

``discover`` is an async generator solid: it reads the site's index pages one
after another and yields a ``DynamicOutput`` per link as soon as it sees it.
Each link's ``fetch`` step starts right away, while ``discover`` is still
reading later index pages (streaming fan-out); ``summarize`` gets every page's
result, in mapping-key order, once all are done.  The site is a resource: a
small local HTTP server started for the run and stopped after it (or, with
``resources.site.config.base_url``, a site of your own), so the example runs
offline, from the script or through the CLI:

    python examples/crawler.py [--pages 40] [--backend trio]
    asyncdag pipeline execute -f examples/crawler.py

Needs ``httpx``.
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import re
import threading
from collections.abc import Iterator
from typing import Any

try:
    import httpx
except ImportError:  # pragma: no cover - only without the extra
    raise ImportError("this example needs httpx: pip install 'asyncdag[examples]'") from None

from asyncdag import (
    DynamicOut,
    DynamicOutput,
    InitResourceContext,
    execute_pipeline,
    pipeline,
    resource,
    solid,
)
from asyncdag.config import Field

PER_INDEX_PAGE = 10


def _site_handler(pages: int) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            match = re.fullmatch(r"/index/(\d+)", self.path)
            if match:
                start = int(match.group(1)) * PER_INDEX_PAGE
                links = [
                    f'<a href="/page/{i}">page {i}</a>'
                    for i in range(start, min(start + PER_INDEX_PAGE, pages))
                ]
                if start + PER_INDEX_PAGE < pages:
                    links.append(f'<a rel="next" href="/index/{int(match.group(1)) + 1}">next</a>')
                body = "\n".join(links)
            elif match := re.fullmatch(r"/page/(\d+)", self.path):
                n = int(match.group(1))
                body = "<p>" + " ".join(["word"] * (n % 7 + 1)) + "</p>"
            else:
                self.send_error(404)
                return
            data = body.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextlib.contextmanager
def local_site(pages: int) -> Iterator[str]:
    """A threaded HTTP server on a free port serving ``pages`` linked pages."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _site_handler(pages))
    # A short poll keeps shutdown() quick: the resource's teardown waits for it.
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@resource(
    config_schema={
        "base_url": Field(str, default="", description="crawl this site; empty: a local one"),
        "pages": Field(int, default=40, description="pages of the local site"),
    }
)
def site(context: InitResourceContext) -> Iterator[str]:
    """The base URL to crawl: the one configured, or a local site served for the run."""
    config = context.resource_config
    if config["base_url"]:
        yield config["base_url"]
        return
    with local_site(config["pages"]) as base_url:
        yield base_url


@solid(outs={"urls": DynamicOut()}, required_resources={"site"})
async def discover(context):
    """Follow the index pages, yielding each linked page as soon as it is seen."""
    base = context.resources.site
    async with httpx.AsyncClient(base_url=base) as client:
        path: str | None = "/index/0"
        while path is not None:
            html = (await client.get(path)).text
            for link in re.findall(r'<a href="(/page/\d+)"', html):
                yield DynamicOutput(base + link, mapping_key=link.rsplit("/", 1)[1].zfill(6))
            nxt = re.search(r'<a rel="next" href="([^"]+)"', html)
            path = nxt.group(1) if nxt else None


@solid(pool="http")
async def fetch(url: str) -> dict[str, Any]:
    async with httpx.AsyncClient() as client:
        response = await client.get(url)
    return {"url": url, "status": response.status_code, "words": len(response.text.split())}


@solid
def summarize(context, pages: list[dict[str, Any]]) -> dict[str, Any]:
    summary = {
        "pages": len(pages),
        "ok": sum(1 for p in pages if p["status"] == 200),
        "words": sum(p["words"] for p in pages),
    }
    context.log.info(f"crawled {summary}")
    return summary


# The bound and the pool's limit are default run config, so the CLI and the UI use them too.
@pipeline(
    resources={"site": site},
    config={"execution": {"max_concurrency": 8, "concurrency_limits": {"http": 6}}},
)
def crawler():
    summarize(discover().map(fetch).collect())


def run(base_url: str = "", *, pages: int = 40, backend: str = "asyncio") -> dict[str, Any]:
    """Crawl ``base_url`` (empty: a local site of ``pages`` pages); return the summary."""
    result = execute_pipeline(
        crawler,
        {"resources": {"site": {"config": {"base_url": base_url, "pages": pages}}}},
        backend=backend,
    )
    return result.output_for_solid("summarize")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=40)
    parser.add_argument("--backend", default="asyncio", choices=["asyncio", "trio"])
    args = parser.parse_args()
    print(run(pages=args.pages, backend=args.backend))


if __name__ == "__main__":
    main()
