"""Short links: BASE/l/CODE, the form a text email gives its action links (78 columns).

    GET, HEAD, POST  /l/CODE   the page (and the form) of the link it stands for

The store maps a code to one of our own paths (digest.render.LinkShortener made it), and the
request is answered as if it had been made to that path: no redirect, so nothing here can send a
browser anywhere else, and a code is as good as the link it stands for.
"""

from __future__ import annotations

import re

from starlette.routing import Router
from starlette.types import Receive, Scope, Send

from digest.web.site import Site

_CODE = re.compile(r"^[A-Za-z0-9_-]{12}$")
# Where a short link may lead: the pages with a signed token, nothing else.
_TARGET = re.compile(r"^/(feedback|manage|unsubscribe)/[A-Za-z0-9_.-]+$")


class ShortLinks:
    """An ASGI app mounted at /l: finds the code's path and hands the request to the router."""

    def __init__(self, site: Site, router: Router) -> None:
        self.site = site
        self.router = router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        code = scope["path"].rsplit("/", 1)[-1]
        target = None
        if _CODE.match(code):
            target = await self.site.db(lambda db: db.short_link(code))
        if target is None or not _TARGET.match(target):
            response = self.site.notice(404, "This link does not work",
                                        "It was changed or cut short. Use the link from the newest email.")
            await response(scope, receive, send)
            return
        # As the request would have come: the mount's root path undone, the target's path.
        root = scope.get("app_root_path", "")
        await self.router({**scope, "root_path": root, "path": root + target,
                           "raw_path": (root + target).encode()}, receive, send)
