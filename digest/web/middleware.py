"""What wraps every request: security headers, the access log, a per-client rate limit."""

from __future__ import annotations

import logging
import re
import time
from collections import deque
from datetime import datetime, timedelta

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Scripts: none but those whose hashes SecureHeaders is given (the time-zone preselect).
CSP = ("default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; "
       "base-uri 'none'")
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    # same-origin, not no-referrer: with no-referrer browsers send "Origin: null" on a form's POST,
    # and the CSRF check needs the real origin. Token URLs still never leak to another site.
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


class SecureHeaders:
    """ASGI middleware: the security headers on every response; `scripts` are the CSP sources
    ('sha256-...') of the inline scripts the pages may run."""

    def __init__(self, app: ASGIApp, scripts: tuple[str, ...] = ()) -> None:
        self.app = app
        policy = CSP + (f"; script-src {' '.join(scripts)}" if scripts else "")
        self.headers = [(b"content-security-policy", policy.encode()), *SECURITY_HEADERS]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + self.headers
            await send(message)

        await self.app(scope, receive, with_headers)


# Tokens are credentials (a manage link lets its holder edit a subscription), and a web
# subscriber's feed name is its private address: neither is written to a log.
_SECRET_PATH = re.compile(
    r"^/(confirm|manage|feedback|unsubscribe|l)/[^/]+|^/feeds/profiles/web-[^/.]+"
)


def loggable(path: str) -> str:
    return _SECRET_PATH.sub(lambda m: m.group(0).rsplit("/", 1)[0] + "/…", path)


class AccessLog:
    """ASGI middleware: one log line per request (method, path without secrets, status, time)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.log = logging.getLogger("digest.access")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.log.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        status = 0

        async def recorded(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recorded)
        finally:
            client = scope.get("client") or ("-", 0)
            self.log.info(
                "%s %s %s %d %.1f ms", client[0], scope["method"], loggable(scope["path"]),
                status or 500, (time.perf_counter() - began) * 1000,
            )


class RateLimiter:
    """At most `limit` events per key in any `window` (a sliding window, in memory, per process)."""

    def __init__(self, limit: int, window: timedelta, max_keys: int = 100_000) -> None:
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self._events: dict[str, deque[datetime]] = {}

    def allow(self, key: str, now: datetime) -> bool:
        if len(self._events) >= self.max_keys:  # bounded memory: forget the quiet keys
            self._events = {k: v for k, v in self._events.items() if v and v[-1] > now - self.window}
        events = self._events.setdefault(key, deque())
        while events and events[0] <= now - self.window:
            events.popleft()
        if len(events) >= self.limit:
            return False
        events.append(now)
        return True

    def retry_after(self, key: str, now: datetime) -> int:
        events = self._events.get(key)
        if not events:
            return 0
        return max(1, int((events[0] + self.window - now).total_seconds()))
