"""Who may talk to the UI: one ASGI middleware in front of every route, and the headers it adds.

The UI launches runs, which run code, so a request is checked before any
endpoint sees it, in this order:

1. **Host** (when ``allowed_hosts`` is set; ``asyncdag ui`` always sets it): a
   ``Host`` header outside the list is refused (403), which defeats DNS
   rebinding (a web page whose name was re-pointed at 127.0.0.1).
2. **Access token** (when ``auth_token`` is set): ``Authorization: Bearer``, the
   cookie the server sets when the page is opened with ``?token=``, or that
   query parameter itself; without it, 401.
3. **State changes** (any method but GET, HEAD and OPTIONS, including routes
   added later): a foreign ``Origin`` (or, without one, ``Referer``) is refused
   (403), and so is a browser's cross-site request without either
   (``Sec-Fetch-Site``).  Clients that send none of them (curl, httpx) are not
   browsers and pass.  A body must be ``application/json`` (415) and at most
   ``max_body_bytes`` (413): an HTML form or a ``no-cors`` fetch can send
   neither a JSON content type nor a same-origin ``Origin``.

Every response of the app also carries a Content-Security-Policy that allows
only the app's own scripts, styles and connections and no framing, with
``X-Frame-Options: DENY``, ``X-Content-Type-Options: nosniff``, a same-origin
``Referrer-Policy`` and ``Cross-Origin-Resource-Policy``.  Mounted inside
another app, the middleware guards and marks only the UI's own routes.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import ipaddress
import json
import re
import socket
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import attrs
from starlette.requests import cookie_parser

from asyncdag._errors import AsyncdagError

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "LOCAL_HOSTS",
    "SECURITY_HEADERS",
    "TOKEN_HINT",
    "GuardPolicy",
    "RequestGuard",
    "check_token",
    "hosts_for_bind",
    "is_loopback",
    "page_url",
]

#: Largest request body the API reads (1 MiB): run config is a few kilobytes.
DEFAULT_MAX_BODY_BYTES = 1 << 20
#: Names every local server answers to.
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")

SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
        b"connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'self'; "
        b"form-action 'self'; frame-ancestors 'none'",
    ),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
)

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_DIGITS = re.compile(r"[0-9]+")
_TOKEN = re.compile(r"[A-Za-z0-9._~-]{16,}")
TOKEN_HINT = "make one with: python -c 'import secrets; print(secrets.token_urlsafe())'"


def _host_name(host: str) -> str:
    """The name in a Host header or URL netloc, lower-cased, without port, brackets or final dot."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    if host.count(":") == 1:
        host = host.partition(":")[0]
    return host.rstrip(".")


def _host_allowed(name: str, allowed: tuple[str, ...]) -> bool:
    for pattern in allowed:
        if pattern == "*" or pattern == name:
            return True
        if pattern.startswith("*.") and name.endswith(pattern[1:]):
            return True
    return False


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` serves this machine only (localhost, 127.0.0.0/8, ::1)."""
    name = _host_name(host)
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def hosts_for_bind(host: str, extra: Iterable[str] = ()) -> tuple[str, ...]:
    """The Host names a server bound to ``host`` answers to by default, plus ``extra``.

    Localhost names and the bound address; for a wildcard bind (0.0.0.0, ::) the
    machine's host name and its addresses instead of the wildcard.
    """
    names = [*LOCAL_HOSTS, _host_name(host)]
    if _host_name(host) in ("", "0.0.0.0", "::"):
        names.remove(_host_name(host))
        hostname = socket.gethostname()
        names.append(hostname.lower())
        with contextlib.suppress(OSError):  # the name does not resolve: the name alone, then
            names += [str(info[4][0]) for info in socket.getaddrinfo(hostname, None)]
    return tuple(dict.fromkeys([*names, *(_host_patterns(extra) or ())]))


def _host_patterns(hosts: Iterable[str] | None) -> tuple[str, ...] | None:
    if hosts is None:
        return None
    if isinstance(hosts, str):
        hosts = [hosts]
    return tuple(h.lower() if h.startswith("*") else _host_name(h) for h in hosts)


def check_token(token: str | None) -> str | None:
    """``token`` if it is fit to guard the UI (16+ URL-safe characters); else AsyncdagError."""
    if token is None:
        return None
    if not _TOKEN.fullmatch(token):
        raise AsyncdagError(
            "the UI's access token must be at least 16 letters, digits, '-', '_', '.' or '~'; "
            + TOKEN_HINT
        )
    return token


def page_url(host: str, port: int, token: str | None) -> str:
    """The URL to open a UI bound to ``host``:``port``, with its token: what the command prints."""
    name = _host_name(host)
    if is_loopback(host):
        name = "localhost"
    elif name in ("", "0.0.0.0", "::"):
        name = socket.gethostname().lower()
    elif ":" in name:
        name = f"[{name}]"
    query = f"?{urlencode({'token': token})}" if token else ""
    return f"http://{name}:{port}/{query}"


@attrs.frozen(kw_only=True)
class GuardPolicy:
    """What :class:`RequestGuard` enforces; built by ``create_app`` from its arguments."""

    allowed_hosts: tuple[str, ...] | None = attrs.field(default=None, converter=_host_patterns)
    auth_token: str | None = attrs.field(default=None, converter=check_token)
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES

    @property
    def cookie_name(self) -> str:
        """Named after the token, so two UIs on one host (cookies ignore ports) keep theirs apart."""
        digest = hashlib.sha256((self.auth_token or "").encode()).hexdigest()[:12]
        return f"asyncdag_ui_{digest}"


def _headers(scope: dict[str, Any]) -> dict[str, str]:
    """The request's headers by lower-case name (latin-1, as HTTP defines them); last one wins."""
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", ())}


class _Refusal(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


class RequestGuard:
    """ASGI middleware: the Host, token, origin and body checks, and the security headers."""

    def __init__(self, app: Any, *, policy: GuardPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_marked(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), *SECURITY_HEADERS]}
            await send(message)

        headers = _headers(scope)
        try:
            self._check_host(headers)
            redirect = self._check_token(scope, headers)
            if redirect is not None:
                await redirect(send_marked)
                return
            if scope["method"] not in _SAFE_METHODS:
                self._check_origin(headers)
                receive = await self._checked_body(headers, receive)
                if receive is None:  # the client left while sending
                    return
        except _Refusal as refusal:
            await _refuse(refusal, send_marked)
            return
        await self.app(scope, receive, send_marked)

    # --- the checks, in order ------------------------------------------------------------

    def _check_host(self, headers: dict[str, str]) -> None:
        allowed = self.policy.allowed_hosts
        if allowed is None:
            return
        host = headers.get("host", "")
        if not _host_allowed(_host_name(host), allowed):
            # Not naming the hosts it does answer to: a rebound page could read this reply.
            raise _Refusal(
                403,
                f"this server does not answer to the host {host!r} (DNS rebinding?); to serve "
                "a name, start it with `asyncdag ui --allowed-host NAME` "
                "(create_app(allowed_hosts=...))",
            )

    def _check_token(self, scope: dict[str, Any], headers: dict[str, str]) -> Any:
        """None when the request may go on; a redirect that sets the cookie; or a refusal."""
        token = self.policy.auth_token
        if token is None:
            return None
        given = []
        scheme, _, credentials = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            given.append(credentials.strip())
        cookie = cookie_parser(headers.get("cookie", "")).get(self.policy.cookie_name)
        if cookie:
            given.append(cookie)
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        from_query = [v for k, v in query if k == "token"]
        if any(_same(token, candidate) for candidate in given):
            return None
        if from_query and _same(token, from_query[-1]):
            if scope["method"] in ("GET", "HEAD") and _is_index(scope):
                rest = urlencode([(k, v) for k, v in query if k != "token"])
                return _cookie_redirect(scope, self.policy, rest)
            return None
        raise _Refusal(
            401,
            "this asyncdag UI needs its access token: open the URL `asyncdag ui` printed "
            "(it ends in ?token=...), or send the header Authorization: Bearer TOKEN",
            {"www-authenticate": 'Bearer realm="asyncdag"'},
        )

    def _check_origin(self, headers: dict[str, str]) -> None:
        host = headers.get("host", "").lower()
        for name in ("origin", "referer"):
            value = headers.get(name)
            if value is None:
                continue
            source = _netloc(value)
            if not source or source != host:
                shown = value if name == "origin" else (source or value)
                raise _Refusal(
                    403,
                    f"cross-origin request refused: it comes from {shown!r} ({name.title()}), "
                    f"not from this server's own pages at {host!r}; the UI accepts launches, "
                    "cancels and other changes only from its own pages (or from clients that "
                    "are not browsers, such as curl)",
                )
            return  # the Origin (or, lacking it, the Referer) is this server's own
        site = headers.get("sec-fetch-site")
        if site in ("cross-site", "same-site"):
            raise _Refusal(
                403,
                f"cross-origin request refused (Sec-Fetch-Site: {site}); the UI accepts "
                "changes only from its own pages",
            )

    async def _checked_body(self, headers: dict[str, str], receive: Any) -> Any:
        """A receive that replays the whole body, once it is known to be small JSON (or empty)."""
        limit = self.policy.max_body_bytes
        too_large = _Refusal(
            413,
            f"the request body is larger than {limit:,} bytes, the most this server reads; "
            "run config is usually a few kilobytes",
        )
        length = headers.get("content-length", "")
        if _DIGITS.fullmatch(length) and (len(length) > 18 or int(length) > limit):
            raise too_large
        chunks = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        media_type = headers.get("content-type", "").partition(";")[0].strip().lower()
        if body and media_type != "application/json":
            shown = headers.get("content-type") or "none"
            raise _Refusal(
                415,
                f"the request body must be JSON, sent as Content-Type: application/json "
                f"(got {shown!r})",
            )
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return dict(await receive())

        return replay


def _netloc(url: str) -> str:
    """The host[:port] of an Origin or Referer, lower-cased; "" for "null" or a malformed one."""
    try:
        return urlsplit(url).netloc.lower()
    except ValueError:  # "http://[" and the like
        return ""


def _same(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode(), given.encode("utf-8", "surrogateescape"))


def _is_index(scope: dict[str, Any]) -> bool:
    root = str(scope.get("root_path", "")).rstrip("/")
    path = str(scope.get("path", ""))
    return path.removeprefix(root) in ("", "/")


def _cookie_redirect(scope: dict[str, Any], policy: GuardPolicy, query: str) -> Any:
    """303 to the page without ``?token=``, setting the cookie the page's requests then carry."""
    root = str(scope.get("root_path", "")).rstrip("/") + "/"
    location = root + (f"?{query}" if query else "")
    cookie = f"{policy.cookie_name}={policy.auth_token}; Path={root}; HttpOnly; SameSite=Strict" + (
        "; Secure" if scope.get("scheme") == "https" else ""
    )

    async def respond(send: Any) -> None:
        headers = [
            (b"location", location.encode("latin-1")),
            (b"set-cookie", cookie.encode("latin-1")),
            (b"cache-control", b"no-store"),
            (b"content-length", b"0"),
        ]
        await send({"type": "http.response.start", "status": 303, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    return respond


async def _refuse(refusal: _Refusal, send: Any) -> None:
    body = json.dumps({"error": refusal.message}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *((k.encode(), v.encode()) for k, v in refusal.headers.items()),
    ]
    await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
