"""The manage page, linked in every email's footer: interests, pause, the feed, the last digest.

    GET  /manage/TOKEN        interests, pause, feed    POST /manage/TOKEN    save, pause, resume

A web subscriber edits everything, and chooses how the digest reaches them: by email and in
their feed, or in the feed only (no emails; the page then shows the feed's addresses first). A
config.toml profile's reader sees its interests (the people who run the service set them) and can
unsubscribe or subscribe again. The form may carry a library file (BibTeX, RIS or CSL-JSON) whose
papers count as liked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from digest import compose, feeds, subscriptions
from digest.config import ProfileConfig
from digest.models import Subscriber
from digest.pipeline import LibraryReport, import_library
from digest.store import Store
from digest.text import one_line, safe_url
from digest.tokens import BadToken, read_manage_token, unsubscribe_token
from digest.web.forms import Upload
from digest.web.pages import bind, summary, when
from digest.web.site import FormRefused, Site

SKIPPED_SHOWN = 10  # skipped entries listed on the manage page after an import


@dataclass(frozen=True, slots=True)
class Reader:
    """Who a manage link belongs to: a web subscriber, or an address of a config.toml profile."""

    profile: str
    address: str
    subscriber: Subscriber | None  # None for a config.toml profile
    configured: ProfileConfig | None


def routes(site: Site) -> list[Route]:
    return [
        Route("/manage/{token}", bind(site, manage_page), methods=["GET", "HEAD"]),
        Route("/manage/{token}", bind(site, manage), methods=["POST"]),
    ]


async def manage_page(site: Site, request: Request) -> Response:
    who = await _reader(site, request.path_params["token"])
    return who if isinstance(who, Response) else await _view(site, request, who)


async def manage(site: Site, request: Request) -> Response:
    who = await _reader(site, request.path_params["token"])
    if isinstance(who, Response):
        return who
    try:
        form = await site.checked_form(request, f"manage:{who.profile}", uploads=True)
    except FormRefused as refused:
        return refused.response
    action, now = form.fields.get("action", ""), site.clock()
    subscriber = who.subscriber
    if action == "save" and subscriber is not None:
        checked, errors, library = await site.checked_interests(form, with_address=False)
        if errors or checked.interests is None:
            values = dict(checked.values)
            if values["channels"] not in subscriptions.CHANNELS:  # not a choice: show the stored one
                values["channels"] = subscriptions.form_values(subscriber.interests)["channels"]
            return await _view(site, request, who, 400, values=values, errors=errors,
                               library_again=form.upload is not None and "library" not in errors)
        interests, upload = checked.interests, form.upload

        def save(db: Store) -> tuple[Subscriber, LibraryReport | None]:
            done = (import_library(db, who.profile, library, upload.filename, site.clock)
                    if upload is not None and library is not None else None)
            return subscriptions.update_interests(db, subscriber, interests, now), done

        changed, report = await site.db(save)
        return await _view(site, request, Reader(who.profile, who.address, changed, None),
                           saved=_saved(subscriber.interests.email, interests.email),
                           imported=_import_summary(report, upload))
    if action == "resubscribe":
        await site.db(lambda db: db.resubscribe(who.profile, who.address))
        return await _view(site, request, who, saved="You are subscribed again.")
    if subscriber is None:
        return site.notice(400, "Not possible here",
                           "This digest is set up by the people who run this service.")
    if action not in ("pause", "resume"):
        return site.notice(400, "Unknown action", "The form asked for something unknown.")
    paused = await site.db(lambda db: subscriptions.set_paused(db, subscriber, action == "pause", now))
    saved = ("Paused: no digest until you resume." if action == "pause"
             else "Resumed: the digest comes again.")
    return await _view(site, request, Reader(who.profile, who.address, paused, None), saved=saved)


def _saved(had_email: bool, has_email: bool) -> str:
    """What the page says after a save: the channel change, when there was one."""
    if had_email and not has_email:
        return "Saved. No more emails: your feed, below, gets each digest."
    if has_email and not had_email:
        return "Saved. The digest comes by email again, and to your feed."
    return "Saved. The next digest uses these interests."


async def _reader(site: Site, token: str) -> Reader | Response:
    """Who a manage link belongs to, or the page saying why it does not work."""
    try:
        profile, address = read_manage_token(site.keys, token)
    except BadToken as problem:
        return site.bad_link("manage", problem)
    if subscriptions.is_web_profile(profile):
        subscriber = await site.db(lambda db: db.subscriber(profile))
        if subscriber is not None and subscriber.address == address:
            return Reader(profile, address, subscriber, None)
    else:
        configured = next((p for p in site.config.profiles if p.name == profile), None)
        if configured is not None and address in (e.lower() for e in configured.emails):
            return Reader(profile, address, None, configured)
    return site.notice(404, "Subscription not found", "This subscription no longer exists.",
                       links=(("Subscribe", "/"),))


async def _view(site: Site, request: Request, who: Reader, status: int = 200, saved: str = "",
                values: dict[str, str] | None = None, errors: dict[str, str] | None = None,
                imported: dict[str, Any] | None = None, library_again: bool = False) -> Response:
    unsubscribed, latest, library = await site.db(lambda db: (
        db.is_unsubscribed(who.profile, who.address),
        db.digests(who.profile, limit=1),
        len(db.library([who.profile]).get(who.profile, [])),
    ))
    subscriber = who.subscriber
    if unsubscribed:
        state = "unsubscribed"
    elif subscriber is not None:
        state = {"pending": "waiting for your confirmation", "active": "active",
                 "paused": "paused"}[subscriber.status]
    else:
        state = "active"
    feed_only = subscriber is not None and not subscriber.interests.email
    if feed_only and state in ("active", "paused"):
        state += ", feed only"
    last = None
    if latest:
        digest = latest[0]
        last = {
            "day_label": compose.day_label(digest),
            "papers": [
                {"title": one_line(item.paper.title),
                 "url": safe_url(compose.paper_url(item.paper)),
                 "why": compose.reasons_line(item.reasons)}
                for item in digest.items
            ],
        }
    interests = subscriber.interests if subscriber else None
    feed_rss, feed_atom = (
        feeds.feed_url(site.base, path) for path in feeds.profile_feed_paths(who.profile)
    )
    papers = compose.count(library, "paper")
    return site.html(
        "manage.html.j2", status, request, f"manage:{who.profile}",
        title="Your digest", address=who.address, state=state, saved=saved,
        unsubscribed=unsubscribed, editable=subscriber is not None,
        paused=subscriber is not None and subscriber.status == "paused", feed_only=feed_only,
        values=values or (subscriptions.form_values(interests) if interests else {}),
        errors=errors or {}, summary=summary(who.configured) if who.configured else [],
        feed_rss=feed_rss, feed_atom=feed_atom, last=last, imported=imported,
        library_again=library_again,
        library_line=(f"Your library: {papers} imported, counted as papers you liked."
                      if library else "Your library: no papers imported yet."),
        next_note=(f"Digests are made {when(interests)}." if interests else ""),
        action=request.url.path,
        unsubscribe_action=f"/unsubscribe/{unsubscribe_token(site.keys, who.profile, who.address)}",
    )


def _import_summary(report: LibraryReport | None, upload: Upload | None) -> dict[str, Any] | None:
    """What the manage page says after an import: counts, and the first skipped entries."""
    if report is None or upload is None:
        return None
    summary = (f"Imported {compose.count(report.entries, 'paper')} from {upload.filename} "
               f"({report.added:,} new); "
               f"{compose.count(len(report.skipped), 'entry', 'entries')} skipped.")
    return {
        "summary": summary,
        "skipped": report.skipped[:SKIPPED_SHOWN],
        "more": max(0, len(report.skipped) - SKIPPED_SHOWN),
    }
