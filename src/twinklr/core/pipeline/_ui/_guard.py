"""What keeps the web view safe: every request needs the token (when there is one) or
a loopback ``Host`` (against DNS rebinding), every response gets the security headers,
and what changes something needs the token or the same origin."""

from __future__ import annotations

import ipaddress
import os
import secrets
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

COOKIE = "twinklr_ui_token"
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def same_origin(request: Request) -> bool:
    """Whether ``request`` comes from a page of this view (what changing anything
    without the token needs)."""
    if request.headers.get("sec-fetch-site") == "same-origin":
        return True
    origin = request.headers.get("origin")
    host = request.headers.get("host")
    return origin is not None and host is not None and origin == f"{request.url.scheme}://{host}"


def host_name(host_header: str) -> str:
    """The name in a ``Host`` header, without its port."""
    if host_header.startswith("["):
        return host_header.partition("]")[0] + "]"
    return host_header.rpartition(":")[0] if ":" in host_header else host_header


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Guard:
    """Every request: the token (when there is one) or a loopback Host; the headers."""

    def __init__(self, app: ASGIApp, token: Callable[[], str | None]) -> None:
        self.app = app
        self.token = token  # read at each request: the view's token may be set later

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        token = self.token()
        set_cookie = False
        if token is None:
            if not is_loopback(host_name(request.headers.get("host", ""))):
                await _refuse(scope, receive, send, 403, "this view answers loopback names only")
                return
        else:
            offered = _offered_token(request)
            if offered is None or not secrets.compare_digest(offered.encode(), token.encode()):
                await _refuse(scope, receive, send, 401, "a token is needed (?token=...)")
                return
            set_cookie = request.query_params.get("token") is not None

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.extend((k.lower().encode(), v.encode()) for k, v in HEADERS.items())
                if set_cookie and token is not None:
                    cookie = f"{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict"
                    headers.append((b"set-cookie", cookie.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _offered_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.query_params.get("token") or request.cookies.get(COOKIE)


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, message: str) -> None:
    response = JSONResponse({"error": message}, status, headers=HEADERS)
    await response(scope, receive, send)


def environment_token() -> str | None:
    """The token in ``TWINKLR_UI_TOKEN``, if set (so it stays out of ``ps``)."""
    return os.environ.get("TWINKLR_UI_TOKEN") or None
