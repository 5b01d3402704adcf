"""`digest serve`: the HTTP side. Feeds and OPML with validators (304s), and one-click unsubscribe.

An ASGI app (Starlette), on the same store and config as the job:
    GET  /feeds/...                   the feed files, with ETag and Last-Modified; a matching
                                      conditional request gets 304 Not Modified
    GET  /unsubscribe/TOKEN           a page with a confirm button; changes nothing (mail
                                      scanners prefetch links)
    POST /unsubscribe/TOKEN           unsubscribes (RFC 8058: the body List-Unsubscribe=One-Click,
                                      no cookie needed) and answers 200, never a redirect;
                                      repeating it is harmless; a tampered token gets 400
Every response carries headers that keep a page inert: a strict Content-Security-Policy, nosniff,
no framing, no referrer.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from digest.config import Config
from digest.render import default_templates_dir
from digest.store import Store
from digest.tokens import BadToken, load_secrets, read_unsubscribe_token

# Feed readers and browsers need the right types; not every system's mime table has them.
mimetypes.add_type("application/rss+xml", ".rss")
mimetypes.add_type("application/atom+xml", ".atom")
mimetypes.add_type("text/x-opml", ".opml")

SECURITY_HEADERS = [
    (b"content-security-policy",
     b"default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; "
     b"base-uri 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


class SecureHeaders:
    """ASGI middleware: the security headers on every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + SECURITY_HEADERS
            await send(message)

        await self.app(scope, receive, with_headers)


def create_app(config: Config, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> ASGIApp:
    pages = Environment(
        loader=FileSystemLoader(default_templates_dir()),
        autoescape=select_autoescape(enabled_extensions=("html.j2",), default=True),
    ).get_template("page.html.j2")
    keys = load_secrets(config.data_dir)
    config.feeds_dir.mkdir(parents=True, exist_ok=True)

    def page(status: int, title: str, *lines: str, **form: Any) -> HTMLResponse:
        html = pages.render(title=title, lines=lines, form_action=form.get("action"),
                            button=form.get("button", ""))
        return HTMLResponse(html, status_code=status, headers={"cache-control": "no-store"})

    def subscriber(request: Request) -> tuple[str, str] | None:
        try:
            return read_unsubscribe_token(keys, request.path_params["token"])
        except BadToken:
            return None

    async def unsubscribe_page(request: Request) -> Response:
        found = subscriber(request)
        if found is None:
            return page(400, "This link is not valid",
                        "The unsubscribe link was changed or cut short. Use the link from the "
                        "newest email, or write to the address the digest comes from.")
        profile, address = found
        return page(200, "Unsubscribe?",
                    f"Stop sending the “{profile}” digest to {address}?",
                    action=request.url.path, button="Unsubscribe")

    async def unsubscribe(request: Request) -> Response:
        found = subscriber(request)
        if found is None:
            return page(400, "This link is not valid",
                        "The unsubscribe link was changed or cut short; nothing was changed.")
        profile, address = found
        with Store.open(config.store_path) as store:
            store.unsubscribe(profile, address, clock())
        # 200 with a page, never a redirect: RFC 8058 senders expect a final answer.
        return page(200, "You are unsubscribed",
                    f"{address} will get no more “{profile}” digests, starting with the next one.")

    app = Starlette(
        routes=[
            Mount("/feeds", app=StaticFiles(directory=config.feeds_dir, check_dir=False)),
            Route("/unsubscribe/{token}", unsubscribe_page, methods=["GET", "HEAD"]),
            Route("/unsubscribe/{token}", unsubscribe, methods=["POST"]),
        ]
    )
    return SecureHeaders(app)
