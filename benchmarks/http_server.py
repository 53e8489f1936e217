"""A tiny HTTP/1.1 keep-alive server on 127.0.0.1 for W6, run in its own process.

It answers every GET with the request path as the body, so the client can
check it got the right answer.  A raw anyio TCP server rather than uvicorn:
the server's own cost is the same for both sides of the comparison, and the
smaller it is, the less it dilutes the ratio the benchmark is about.  Running
it in a separate process keeps its work off the measured event loop.

Run as ``python http_server.py PORT``; it prints ``ready`` once listening.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import anyio.abc

__all__ = ["free_port", "running_server", "serve"]

_MAX_HEADER = 64 * 1024


async def _handle(stream: anyio.abc.SocketStream) -> None:
    buffer = b""
    async with stream:
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > _MAX_HEADER:
                    return
                try:
                    buffer += await stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    return
                continue
            head, buffer = buffer[:end], buffer[end + 4 :]
            request_line = head.split(b"\r\n", 1)[0]
            parts = request_line.split(b" ")
            path = parts[1] if len(parts) >= 2 else b"/"
            closing = b"connection: close" in head.lower()
            response = (
                b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: "
                + str(len(path)).encode()
                + (b"\r\nconnection: close" if closing else b"")
                + b"\r\n\r\n"
                + path
            )
            try:
                await stream.send(response)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                return
            if closing:
                return


async def serve(port: int) -> None:
    """Serve until killed."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=port)
    print("ready", flush=True)
    await listener.serve(_handle)


def free_port() -> int:
    """A port free on 127.0.0.1 right now (the server binds it a moment later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def running_server(*, timeout: float = 15.0) -> Iterator[str]:
    """Start the server in a child process, yield its base URL, and always stop it."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + timeout
        line = proc.stdout.readline()
        if line.strip() != "ready":
            err = proc.stderr.read() if proc.stderr else ""
            raise RuntimeError(f"benchmark HTTP server did not start on port {port}: {err}")
        # The listener is up; confirm a connection works before handing out the URL.
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(serve, int(sys.argv[1]))
