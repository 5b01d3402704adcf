"""Feedback from an email's "more like this" and "not relevant" links.

    GET  /feedback/TOKEN      "more like this?"         POST /feedback/TOKEN  record it (or undo)
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from digest.text import one_line
from digest.tokens import BadToken, read_feedback_token
from digest.web.pages import bind
from digest.web.site import FormRefused, Site


def routes(site: Site) -> list[Route]:
    return [
        Route("/feedback/{token}", bind(site, feedback_page), methods=["GET", "HEAD"]),
        Route("/feedback/{token}", bind(site, feedback), methods=["POST"]),
    ]


async def feedback_page(site: Site, request: Request) -> Response:
    target = await _target(site, request.path_params["token"])
    if isinstance(target, Response):
        return target
    profile, _, mark, title = target
    question = "More papers like this one?" if mark == "more" else "Not relevant to you?"
    button = "Yes, more like this" if mark == "more" else "Mark as not relevant"
    return site.notice(200, question, title, request=request, scope=f"feedback:{profile}",
                       action=request.url.path, button=button, hidden={"action": "mark"})


async def feedback(site: Site, request: Request) -> Response:
    target = await _target(site, request.path_params["token"])
    if isinstance(target, Response):
        return target
    profile, key, mark, title = target
    try:
        form = await site.checked_form(request, f"feedback:{profile}")
    except FormRefused as refused:
        return refused.response
    undo, now = form.fields.get("action") == "undo", site.clock()
    await site.db(lambda db: db.mark(profile, key, None if undo else mark, now))
    if undo:
        return site.notice(200, "Taken back", f"Your mark on “{title}” is gone.")
    said = ("You will see more papers like it." if mark == "more"
            else "You will see fewer papers like it.")
    return site.notice(200, "Thanks, noted", f"“{title}”: {said}", request=request,
                       scope=f"feedback:{profile}", action=request.url.path, button="Undo",
                       hidden={"action": "undo"})


async def _target(site: Site, token: str) -> tuple[str, str, str, str] | Response:
    """(profile, paper key, mark, the paper's title) of a feedback link, or the page saying why
    it does not work."""
    try:
        profile, key, mark = read_feedback_token(site.keys, token)
    except BadToken as problem:
        return site.bad_link("feedback", problem)
    paper = await site.db(lambda db: db.paper(key))
    if paper is None:
        return site.notice(404, "Paper not found", "This paper is no longer kept here.")
    return profile, key, mark, one_line(paper.title)
