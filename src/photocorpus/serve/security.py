"""Who may talk to the app, and what the browser may do with its pages.

The rules (docs/serve.md explains them for users):

* **Token.** ``photocorpus serve`` prints ``http://HOST:PORT/?token=T`` (as Jupyter does). Opening it
  stores the token in an HttpOnly, SameSite=Strict cookie and redirects to the grid. Scripts may send
  it as the ``X-Photocorpus-Token`` header instead. Tokens are compared with
  :func:`hmac.compare_digest`. Bound to loopback, reads need no token (only this machine can reach
  the port); bound to anything else, every request but ``/healthz`` needs it. Writes always need it.
* **CSRF.** Writes (POST) also need the ``X-CSRF-Token`` header equal to the csrf cookie (the
  double-submit pattern: a foreign page can make the browser send our cookies but can neither read
  them nor set our headers). The upload form of the search page, which cannot set headers, sends the
  same value as a form field, checked by its route.
* **Origin and Host.** A write whose ``Origin`` is not this server is refused, and so is any request
  whose ``Host`` is not the bound address or a loopback name: a page on a hostile domain that re-points
  its DNS to 127.0.0.1 (DNS rebinding) arrives with its own name as Host.
* **Headers.** A Content-Security-Policy with no inline script (our JS is in static files) and
  ``frame-ancestors 'none'``, ``X-Content-Type-Options: nosniff`` and no Referer (the token may be in
  the first URL).

Cookie names carry the port: browsers share cookies between ports of one host, and two servers on
one machine must not overwrite each other's sessions.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import urlsplit

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

TOKEN_HEADER = "x-photocorpus-token"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
OPEN_PATHS = frozenset({"/healthz"})
FORM_CSRF_PATHS = frozenset({"/search"})  # multipart forms: the route checks the csrf form field
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# The map page runs regl (WebGL), which compiles its draw calls with new Function(): that page alone
# allows eval, still with no inline script and no other origin.
MAP_CONTENT_SECURITY_POLICY = CONTENT_SECURITY_POLICY.replace(
    "script-src 'self'", "script-src 'self' 'unsafe-eval'"
)


@dataclass(frozen=True)
class AccessPolicy:
    """The server's token and where it listens; decides what a request may do."""

    token: str
    host: str
    port: int

    @property
    def loopback_only(self) -> bool:
        return is_loopback(self.host)

    @property
    def token_cookie(self) -> str:
        return f"pc_token_{self.port}"

    @property
    def csrf_cookie(self) -> str:
        return f"pc_csrf_{self.port}"

    def token_ok(self, presented: str | None) -> bool:
        return bool(presented) and hmac.compare_digest(presented.encode(), self.token.encode())  # type: ignore[union-attr]

    def host_ok(self, host_header: str | None) -> bool:
        """The Host header names this server: the bound address, a loopback name, or (bound to all
        interfaces) anything, since the token guards that case."""
        if not host_header:
            return False
        name = _host_name(host_header)
        if self.host in ("0.0.0.0", "::", ""):
            return True
        return name in LOOPBACK_NAMES or name == self.host.strip("[]").lower()

    def origin_ok(self, origin: str | None, host_header: str | None) -> bool:
        """A browser's Origin is ours: same host and port as the Host it sent (and that passed
        :meth:`host_ok`). No Origin at all (a script, curl) is judged by the token and CSRF alone."""
        if origin is None:
            return True
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return False
        return parts.netloc.lower() == (host_header or "").lower()


def is_loopback(host: str) -> bool:
    name = host.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _host_name(host_header: str) -> str:
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def new_token() -> str:
    return secrets.token_urlsafe(24)


def request_cookies(headers: dict[str, str]) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(headers.get("cookie", ""))
    except Exception:  # a malformed Cookie header is simply no cookies
        return {}
    return {k: m.value for k, m in jar.items()}


def cookie_header(name: str, value: str, *, http_only: bool) -> str:
    flags = "; HttpOnly" if http_only else ""
    return f"{name}={value}; Path=/; SameSite=Strict{flags}"


class SecurityMiddleware:
    """ASGI middleware applying :class:`AccessPolicy` and the security headers to every response.

    Plain ASGI rather than ``BaseHTTPMiddleware``: it adds no task or body copy per request, which
    matters to the load benchmark's 50 concurrent clients.
    """

    def __init__(self, app: ASGIApp, policy: AccessPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        cookies = request_cookies(headers)
        policy = self.policy
        path = scope["path"]
        method = scope["method"]
        refusal = self._refusal(method, path, headers, cookies)
        if refusal is not None:
            status, message = refusal
            await _send_json(send, status, {"error": message}, policy, path)
            return
        csrf = cookies.get(policy.csrf_cookie)
        new_csrf = None if csrf else secrets.token_urlsafe(24)
        scope.setdefault("state", {})["csrf"] = csrf or new_csrf

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = list(message.get("headers", []))
                extra += security_headers(path)
                if new_csrf is not None:
                    set_cookie = cookie_header(policy.csrf_cookie, new_csrf, http_only=False)
                    extra.append((b"set-cookie", set_cookie.encode("latin-1")))
                message["headers"] = extra
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _refusal(
        self, method: str, path: str, headers: dict[str, str], cookies: dict[str, str]
    ) -> tuple[int, str] | None:
        policy = self.policy
        if not policy.host_ok(headers.get("host")):
            return 400, (
                "this server answers only to its own address (Host header refused: DNS rebinding guard); "
                "open the URL that `photocorpus serve` printed"
            )
        if path in OPEN_PATHS:
            return None
        token = headers.get(TOKEN_HEADER) or cookies.get(policy.token_cookie)
        authorised = policy.token_ok(token)
        if path == "/" and method in SAFE_METHODS:
            return None  # the ?token= landing route checks the token itself
        write = method not in SAFE_METHODS
        if not authorised and (write or not policy.loopback_only):
            return 403, (
                "this needs the server's token: open the URL with ?token= that `photocorpus serve` printed, "
                "or send the header X-Photocorpus-Token"
            )
        if not write:
            return None
        if not policy.origin_ok(headers.get("origin"), headers.get("host")):
            return 403, "a write from another site (Origin header) is refused; use the app's own pages"
        if path in FORM_CSRF_PATHS:
            return None
        sent = headers.get(CSRF_HEADER, "")
        cookie = cookies.get(policy.csrf_cookie, "")
        if not (sent and cookie and hmac.compare_digest(sent.encode(), cookie.encode())):
            return 403, (
                "a write needs the X-CSRF-Token header equal to the csrf cookie the app set; "
                "reload the page and try again"
            )
        return None


def security_headers(path: str) -> list[tuple[bytes, bytes]]:
    policy = MAP_CONTENT_SECURITY_POLICY if path.startswith("/map") else CONTENT_SECURITY_POLICY
    return [
        (b"content-security-policy", policy.encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"no-referrer"),
        (b"cross-origin-resource-policy", b"same-origin"),
    ]


async def _send_json(send: Send, status: int, body: dict[str, Any], policy: AccessPolicy, path: str) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
                *security_headers(path),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})
