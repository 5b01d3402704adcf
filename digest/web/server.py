"""Running the app: uvicorn, with a deadline on each request's head and on idle connections.

uvicorn closes a keep-alive connection that sends nothing for a while, but a client that sends
a request head one byte at a time keeps its connection (and a file descriptor) forever: 2,000
such connections stayed open. Here a connection must deliver each complete request head within
HEAD_TIMEOUT of connecting or of the previous response, or it is closed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.h11_impl import H11Protocol

HEAD_TIMEOUT = 10.0  # seconds to send a request's line and headers
KEEP_ALIVE_TIMEOUT = 5  # seconds an idle keep-alive connection is kept


class _HeadDeadline:
    """Mixed into a uvicorn protocol: close the connection when a request head is late."""

    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop
    _head_timer: asyncio.TimerHandle | None = None

    def _arm(self) -> None:
        self._disarm()
        if not self.transport.is_closing():
            self._head_timer = self.loop.call_later(HEAD_TIMEOUT, self._too_slow)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _too_slow(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)  # type: ignore[misc]

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        self._arm()


class GuardedH11Protocol(_HeadDeadline, H11Protocol):
    def handle_events(self) -> None:
        super().handle_events()
        if self.cycle is not None and not self.cycle.response_complete:
            self._disarm()  # a whole head arrived: the app has the request now


def guarded_protocol() -> type[asyncio.Protocol]:
    """uvicorn's fastest HTTP/1.1 protocol here, with the head deadline."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # httptools is optional: h11 is uvicorn's own
        return GuardedH11Protocol

    class GuardedHttpToolsProtocol(_HeadDeadline, HttpToolsProtocol):
        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

    return GuardedHttpToolsProtocol


def server_config(app: ASGIApp, host: str, port: int, proxies: str, **options: Any) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=guarded_protocol(),
        timeout_keep_alive=KEEP_ALIVE_TIMEOUT,
        log_level="warning",
        server_header=False,
        # At this level the access log prints nothing, yet it would format each request's path
        # and address: ~4% of the server's time on 304s (py-spy, under bench/serve_speed.py).
        access_log=False,
        proxy_headers=True,
        forwarded_allow_ips=proxies,  # the rate limits must see the client, not the proxy
        **options,
    )


def run(app: ASGIApp, host: str, port: int, proxies: str) -> None:
    uvicorn.Server(server_config(app, host, port, proxies)).run()
