"""Short links: BASE/l/CODE, the form a text email gives its action links (78 columns).

    GET, HEAD, POST  /l/CODE         the page (and the form) of the link it stands for
    GET, HEAD, POST  /l/CODE.mN      "More like this" on paper N of a digest ("lN": "Not relevant")

The store maps a code to one of our own paths (digest.render.LinkShortener made it), and the
request is answered as if it had been made to that path: no redirect, so nothing here can send a
browser anywhere else, and a code is as good as the link it stands for. A digest's feedback links
share one code, kept as /digest-links/DAY/PROFILE: the paper is found in the stored digest and
its feedback link made here, signed with the site's newest key.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date

from starlette.routing import Router
from starlette.types import Receive, Scope, Send

from digest.render import DIGEST_LINKS
from digest.store import Store
from digest.tokens import feedback_token
from digest.web.site import Site

_CODE = re.compile(r"^[A-Za-z0-9_-]{12}$")
_FEEDBACK = re.compile(r"^([ml])([1-9][0-9]{0,3})$")  # a mark and a paper's position, from 1
# Where a short link may lead: the pages with a signed token, nothing else.
_TARGET = re.compile(r"^/(feedback|manage|unsubscribe)/[A-Za-z0-9_.-]+$")


class ShortLinks:
    """An ASGI app mounted at /l: finds the code's path and hands the request to the router."""

    def __init__(self, site: Site, router: Router) -> None:
        self.site = site
        self.router = router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        code, dot, suffix = scope["path"].rsplit("/", 1)[-1].partition(".")
        target = None
        if _CODE.match(code):
            target = await self.site.db(lambda db: db.short_link(code))
        if target is not None and (dot or target.startswith(DIGEST_LINKS)):
            found = target
            target = await self.site.db(lambda db: feedback_path(db, self.site.keys, found, suffix))
        if target is None or not _TARGET.match(target):
            response = self.site.notice(404, "This link does not work",
                                        "It was changed or cut short. Use the link from the newest email.")
            await response(scope, receive, send)
            return
        # As the request would have come: the mount's root path undone, the target's path.
        root = scope.get("app_root_path", "")
        await self.router({**scope, "root_path": root, "path": root + target,
                           "raw_path": (root + target).encode()}, receive, send)


def feedback_path(store: Store, keys: Sequence[str], target: str, suffix: str) -> str | None:
    """The feedback link a digest's short code and its suffix ("m3") stand for; None for a
    suffix that names no paper of the digest (or a digest the store no longer keeps)."""
    match = _FEEDBACK.match(suffix)
    day_text, _, profile = target.removeprefix(DIGEST_LINKS).partition("/")
    if match is None or not target.startswith(DIGEST_LINKS) or not profile:
        return None
    try:
        day = date.fromisoformat(day_text)
    except ValueError:
        return None
    digest = store.digest(profile, day)
    position = int(match.group(2))
    if digest is None or position > len(digest.items):
        return None
    mark = "more" if match.group(1) == "m" else "less"
    return f"/feedback/{feedback_token(keys, profile, digest.items[position - 1].paper.key, mark)}"
