"""Leaving: the unsubscribe link of every email, and its RFC 8058 one-click POST.

    GET  /unsubscribe/TOKEN   a confirm button          POST /unsubscribe/TOKEN  RFC 8058 one-click

The POST needs no form cookie: mail clients send it on the reader's behalf, and the signed token
is the authority. Repeating it changes nothing (and writes nothing).
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from digest.store import Store
from digest.tokens import BadToken, manage_token, read_unsubscribe_token
from digest.web.pages import bind
from digest.web.site import Site

log = logging.getLogger("digest.web")


def routes(site: Site) -> list[Route]:
    return [
        Route("/unsubscribe/{token}", bind(site, unsubscribe_page), methods=["GET", "HEAD"]),
        Route("/unsubscribe/{token}", bind(site, unsubscribe), methods=["POST"]),
    ]


async def unsubscribe_page(site: Site, request: Request) -> Response:
    found = _subscription(site, request)
    if found is None:
        return site.notice(400, "This link is not valid",
                           "The unsubscribe link was changed or cut short. Use the link from the "
                           "newest email, or write to the address the digest comes from.")
    _, address = found
    return site.notice(200, "Unsubscribe?", f"Stop sending this digest to {address}?",
                       action=request.url.path, button="Unsubscribe",
                       hidden={"List-Unsubscribe": "One-Click"})


async def unsubscribe(site: Site, request: Request) -> Response:
    found = _subscription(site, request)
    if found is None:
        return site.notice(400, "This link is not valid",
                           "The unsubscribe link was changed or cut short; nothing was changed.")
    profile, address = found
    now = site.clock()

    def leave(db: Store) -> bool:  # a read first: a repeated POST takes no write lock
        return not db.is_unsubscribed(profile, address) and db.unsubscribe(profile, address, now)

    if await site.db(leave):
        log.info("unsubscribe: %s left %s", address, profile)
    # 200 with a page, never a redirect: RFC 8058 senders expect a final answer.
    return site.notice(
        200, "You are unsubscribed",
        f"{address} will get no more of these digests, starting with the next one.",
        "Changed your mind? Your manage page subscribes you again with one button.",
        links=(("Subscribe again", f"{site.base}/manage/{manage_token(site.keys, profile, address)}"),),
    )


def _subscription(site: Site, request: Request) -> tuple[str, str] | None:
    try:
        return read_unsubscribe_token(site.keys, request.path_params["token"])
    except BadToken:
        return None
