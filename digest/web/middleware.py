"""What wraps every request: security headers, the access log, a per-client rate limit."""

from __future__ import annotations

import logging
import re
import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from digest.store.protocols import SharedStore

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
    """At most about `limit` events per key in any `window`, counted in the store, so every web
    replica on every host shares one count (issue 17); the same code on SQLite.

    A counter per (key, bucket of `window`) is incremented atomically (store.count_event: INSERT
    ... ON CONFLICT DO UPDATE SET count = count + 1 RETURNING count); the sliding window is
    approximated from the current bucket and the previous one, weighted by how much of it still
    lies in the window (as nginx's and Cloudflare's limiters do). A refused event counts too: a
    client that keeps hammering stays refused. Buckets older than the previous one are pruned by
    the same transaction. One small write a subscribe POST (SQLite: ~0.1 ms, see the README).
    """

    def __init__(self, name: str, limit: int, window: timedelta) -> None:
        self.name = name
        self.limit = limit
        self.window = window

    def hit(self, store: SharedStore, key: str, now: datetime) -> int:
        """Count one event of `key` at `now`: 0 when it is allowed, else the seconds to wait."""
        span = self.window.total_seconds()
        position = now.timestamp() / span
        bucket = int(position)
        current, previous = store.count_event(f"{self.name}:{key}", bucket, bucket - 1)
        passed = position - bucket  # how much of the current bucket has gone by
        if previous * (1 - passed) + current <= self.limit:
            return 0
        # Past the limit within this bucket: when it ends, the previous bucket's weight is gone.
        return max(1, int((1 - passed) * span))
