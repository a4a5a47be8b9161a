"""Who may talk to the server: the ``Host`` and ``Origin`` checks, the access token, the security headers.

Pure ASGI (``BaseHTTPMiddleware`` breaks streaming and disconnect detection). Loopback is not a
boundary for a browser: through DNS rebinding a foreign page reaches ``127.0.0.1`` under its own
host name, so a ``Host`` that is not ours is refused (403), and so is an ``Origin`` that is neither
this server nor a configured CORS origin, which also stops cross-site POSTs from starting paid
generations.

The token travels as an ``HttpOnly``, ``SameSite=Strict`` cookie, which ``fetch`` and
``EventSource`` send by themselves: the page never sees it, and it never sits in a URL after the
first visit, ``/?token=...``, which sets the cookie and redirects to a URL without it. Scripts may
send ``Authorization: Bearer TOKEN`` instead. See ``docs/browser.md`` for the trade-offs.
"""

from __future__ import annotations

import hmac
from http.cookies import CookieError, SimpleCookie
from urllib.parse import parse_qsl, urlencode, urlsplit

from starlette.datastructures import MutableHeaders
from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pipeline.apps.serve._errors import refusal
from pipeline.apps.serve._settings import LOOPBACK_NAMES, ServeSettings

COOKIE = "rillet_token"

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; "
    "require-trusted-types-for 'script'; trusted-types rillet-report"
)
"""No inline script or style, nothing from another origin; ``innerHTML`` only through the one Trusted
Types policy that takes the server-sanitised report."""

SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
}


def host_name(host: str) -> str:
    """The name part of a ``Host`` header: ``[::1]:8000`` → ``::1``, ``localhost:8000`` → ``localhost``."""
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class Guard:
    """Checks every HTTP request before the app sees it, and adds the security headers to every answer."""

    def __init__(self, app: ASGIApp, settings: ServeSettings) -> None:
        self.app = app
        self.settings = settings
        names = set(LOOPBACK_NAMES) | {name.lower() for name in settings.allowed_hosts}
        if not settings.wildcard:
            names.add(settings.host.lower())
        self._any_host = settings.wildcard and not settings.allowed_hosts
        self._hosts = frozenset(names)
        self._cors = frozenset(settings.cors_origins)
        self._token = settings.token.encode() if settings.token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        denial = self._check(scope)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await (denial or self.app)(scope, receive, send_with_headers)

    def _check(self, scope: Scope) -> Response | None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        if not self._any_host and host_name(host).lower() not in self._hosts:
            return refusal(403, f"host {host!r} is not served here")
        origin = headers.get("origin")
        if origin is not None and not self._same_origin(origin, host) and origin not in self._cors:
            return refusal(403, f"origin {origin!r} may not use this server")
        if self._token is None or (scope["method"] == "OPTIONS" and origin in self._cors):
            return None  # a CORS preflight carries no credentials
        offered = _bearer(headers.get("authorization")) or _cookie(headers.get("cookie"))
        if offered is not None and hmac.compare_digest(offered.encode(), self._token):
            return None
        return self._exchange(scope) or refusal(
            401, "an access token is required: open the URL rillet serve printed"
        )

    def _same_origin(self, origin: str, host: str) -> bool:
        parts = urlsplit(origin)
        return parts.scheme in ("http", "https") and parts.netloc.lower() == host.lower()

    def _exchange(self, scope: Scope) -> Response | None:
        """``GET /?token=T``: sets the cookie and redirects to the same URL without the token."""
        if scope["method"] != "GET" or scope["path"] != "/":
            return None
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"))
        tokens = [value for name, value in query if name == "token"]
        if not tokens or self._token is None or not hmac.compare_digest(tokens[-1].encode(), self._token):
            return None
        rest = urlencode([(name, value) for name, value in query if name != "token"])
        response = RedirectResponse("/" + (f"?{rest}" if rest else ""), status_code=303)
        secure = scope.get("scheme") == "https"
        response.set_cookie(COOKIE, tokens[-1], httponly=True, samesite="strict", secure=secure, path="/")
        return response


def _bearer(value: str | None) -> str | None:
    if value and value[:7].lower() == "bearer ":
        return value[7:].strip()
    return None


def _cookie(value: str | None) -> str | None:
    if not value:
        return None
    cookie = SimpleCookie()
    try:
        cookie.load(value)
    except CookieError:
        return None
    morsel = cookie.get(COOKIE)
    return morsel.value if morsel is not None else None
