"""The app: every page group's routes around one Site, the error pages, and the middleware."""

from __future__ import annotations

import asyncio
import mimetypes
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Mount, Route

from digest.channels.mail import Sender
from digest.config import Config
from digest.web import feedback, feeds, manage, subscribe, unsubscribe
from digest.web.links import ShortLinks
from digest.web.middleware import AccessLog, SecureHeaders
from digest.web.pages import script_hash, zone_script
from digest.web.site import Clock, Site

# Feed readers and browsers need the right types; not every system's mime table has them.
mimetypes.add_type("application/rss+xml", ".rss")
mimetypes.add_type("application/atom+xml", ".atom")
mimetypes.add_type("text/x-opml", ".opml")


def create_app(
    config: Config,
    clock: Clock = lambda: datetime.now(UTC),
    sender: Callable[[], Sender] | None = None,
) -> Starlette:
    """The app. `sender` makes the mail sender for confirmation mails (default: as the job does).
    Its Site is `app.state.site`."""
    from digest.channels.mail import make_sender

    site = Site(config, clock, sender or (lambda: make_sender(config)))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        site.signups.wake()  # sign-ups queued before a restart get their mail
        flushing = asyncio.create_task(site.personal.keep_flushing())
        try:
            yield
        finally:
            flushing.cancel()
            with suppress(asyncio.CancelledError):
                await flushing
            await site.personal.flush()  # the reads since the last flush, before the store closes
            site.close()

    async def error_page(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        if status == 405:
            allowed = sorted({
                method
                for route in app.router.routes
                if isinstance(route, Route) and route.methods
                and route.matches(request.scope)[0] != Match.NONE
                for method in route.methods
            })
            return site.notice(405, "Not allowed", "This address does not take that kind of request.",
                               headers={"allow": ", ".join(allowed)})
        return site.notice(status, "Page not found", "There is nothing at this address.",
                           links=(("Subscribe", "/"),))

    app = Starlette(
        routes=[
            *feeds.routes(site),
            *subscribe.routes(site),
            *manage.routes(site),
            *feedback.routes(site),
            *unsubscribe.routes(site),
        ],
        exception_handlers={404: error_page, 405: error_page},
        middleware=[Middleware(AccessLog),
                    Middleware(SecureHeaders, scripts=(script_hash(zone_script()),))],
        lifespan=lifespan,
    )
    # Added last: a short link is answered by the routes above, as their own path would be.
    app.router.routes.append(Mount("/l", app=ShortLinks(site, app.router)))
    app.router.redirect_slashes = False  # no redirects at all: none to abuse, none to follow
    app.state.site = site
    return app
