"""Subscribing: the form, the sign-up (queued for digest.web.signups), and the double opt-in.

    GET  / , /subscribe       the subscribe form        POST /subscribe       queue a sign-up
    GET  /confirm/TOKEN       what will be confirmed    POST /confirm/TOKEN   the double opt-in

A sign-up request does the same work for any address (checks the form, queues it), and its page
says the same words, so neither its time nor its text tells a stranger who is subscribed.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from digest import compose, subscriptions
from digest.channels.feed import publish_first_feed
from digest.errors import DigestError
from digest.models import SignupRequest
from digest.store import Store
from digest.tokens import BadToken, read_confirm_token
from digest.web.pages import bind, describe, manage_link, when, zone_script
from digest.web.site import FormRefused, Site, form_nonce

log = logging.getLogger("digest.web")

TITLE = "Get new papers you care about"
BLANK_FORM = {"timezone": "UTC", "deliver_at": "07:00", "frequency": "daily"}
_CSRF_MARK = "csrfmark0a9f3c"  # stands for the token in the form rendered once


def routes(site: Site) -> list[Route]:
    return [
        Route("/", bind(site, subscribe_page), methods=["GET", "HEAD"]),
        Route("/subscribe", bind(site, subscribe_page), methods=["GET", "HEAD"]),
        Route("/subscribe", bind(site, subscribe), methods=["POST"]),
        Route("/confirm/{token}", bind(site, confirm_page), methods=["GET", "HEAD"]),
        Route("/confirm/{token}", bind(site, confirm), methods=["POST"]),
    ]


async def subscribe_page(site: Site, request: Request) -> Response:
    # The blank form is the same for everyone but its token: it is rendered once.
    blank = site.once("subscribe-form", lambda: site.render(
        "subscribe.html.j2", title=TITLE, values=BLANK_FORM, csrf=_CSRF_MARK,
        zone_script=Markup(zone_script())))
    nonce = form_nonce(request)
    return site.page(blank.replace(_CSRF_MARK, site.csrf(nonce, "subscribe"), 1), 200, request, nonce)


async def subscribe(site: Site, request: Request) -> Response:
    now = site.clock()
    client = request.client.host if request.client else "unknown"
    # Counted in the store: every replica's POSTs from this client count together.
    wait = await site.db(lambda db: site.subscribe_limit.hit(db, client, now))
    if wait:
        return site.notice(429, "Too many tries",
                           f"Please wait {max(1, wait // 60)} minutes before subscribing again.",
                           headers={"retry-after": str(wait)})
    try:
        form = await site.checked_form(request, "subscribe", uploads=True)
    except FormRefused as refused:
        return refused.response
    checked, errors, library = await site.checked_interests(form, with_address=True)
    if errors or checked.address is None or checked.interests is None:
        return site.html("subscribe.html.j2", 400, request, "subscribe", title=TITLE,
                         values=checked.values, errors=errors,
                         library_again=form.upload is not None and "library" not in errors)
    upload = form.upload if library is not None else None
    network = subscriptions.client_network(client)
    signup = SignupRequest(
        network=network, address=checked.address, interests=checked.interests, received=now,
        library=upload.data if upload else None, library_name=upload.filename if upload else None,
    )

    def queue(db: Store) -> timedelta | None:
        if subscriptions.network_over_budget(db, network, now):
            return None
        delay = subscriptions.mail_delay(db, now)
        db.queue_signup(signup)
        return delay

    delay = await site.db(queue)
    if delay is None:
        log.warning("subscribe: sign-ups from %s held back: the network had its share this hour",
                    network)
        return site.notice(429, "Too many sign-ups from your network",
                           "Many subscriptions were asked for from your network in the last hour. "
                           "Please try again in an hour; nothing was changed.",
                           headers={"retry-after": "3600"})
    site.signups.wake()
    # The same words whether or not the address had a subscription (and so whether the file
    # will be imported): the page must not tell a stranger who is subscribed.
    read: tuple[str, ...] = ()
    if upload is not None and library is not None:
        skipped = compose.count(len(library.skipped), "entry", "entries")
        read = (
            f"We read {compose.count(len(library.entries), 'paper')} from {upload.filename}"
            + (f" ({skipped} could not be used)" if library.skipped else "")
            + ". Once you confirm, they count as papers you liked. If this address already "
            "had a subscription, the file was not added to it: add it on the page that "
            "subscription's emails link to.",
        )
    if delay:
        sending = (f"Many people are signing up just now: the link to {checked.address} may take "
                   f"up to {_hours(delay)} to arrive. Open it to confirm; nothing is sent before "
                   "you do.")
    else:
        sending = (f"We are sending a link to {checked.address}. Open it to confirm; nothing is "
                   "sent before you do.")
    return site.notice(200, "Check your inbox", sending, *read,
                       "Nothing there after a few minutes? Look in your spam folder. We send at most "
                       f"{subscriptions.CONFIRMATIONS_PER_ADDRESS_PER_DAY} of these emails a day.")


def _hours(delay: timedelta) -> str:
    hours = round(delay.total_seconds() / 3600)
    return compose.count(max(1, hours), "hour")


def _confirming(site: Site, request: Request) -> tuple[str, str] | Response:
    """(profile, address) of a confirmation link, or the page saying why it does not work."""
    try:
        return read_confirm_token(site.keys, request.path_params["token"], site.clock().timestamp())
    except BadToken as problem:
        return site.bad_link("confirmation", problem)


def _gone(site: Site) -> Response:
    return site.notice(404, "Subscription not found",
                       "This subscription no longer exists. Subscribe again to start over.",
                       links=(("Subscribe", "/"),))


async def confirm_page(site: Site, request: Request) -> Response:
    found = _confirming(site, request)
    if isinstance(found, Response):
        return found
    profile, address = found
    subscriber, library = await site.db(
        lambda db: (db.subscriber(profile), len(db.library([profile]).get(profile, [])))
    )
    if subscriber is None or subscriber.address != address:
        return _gone(site)
    if subscriber.status != "pending" and not subscriber.unsubscribed:
        return site.notice(200, "You are subscribed", f"{address} already gets the digest.",
                           links=(("Manage your subscription", manage_link(site.keys, subscriber)),))
    # What is confirmed includes the library sent with the form: its owner should see it.
    sent = (f"With {compose.count(library, 'paper')} from an uploaded library, counted as papers "
            "you liked.",)
    return site.notice(200, "Confirm your subscription", f"Send the digest to {address}?",
                       describe(subscriber.interests), *(sent if library else ()),
                       request=request, scope=f"confirm:{profile}",
                       action=request.url.path, button="Confirm")


async def confirm(site: Site, request: Request) -> Response:
    found = _confirming(site, request)
    if isinstance(found, Response):
        return found
    profile, address = found
    try:
        await site.checked_form(request, f"confirm:{profile}")
    except FormRefused as refused:
        return refused.response
    now = site.clock()
    subscriber = await site.db(lambda db: subscriptions.confirm(db, profile, address, now))
    if subscriber is None:
        return _gone(site)
    log.info("subscribe: %s confirmed %s", address, profile)
    try:  # the personal feed answers from now on, empty until the first digest
        await site.publish_feed(
            lambda target: publish_first_feed(site.config, profile, site.keys, target)
        )
    except DigestError as exc:  # the next run writes it; the subscription stands
        log.warning("subscribe: the feed of %s was not written yet: %s", profile, exc)
    return site.notice(200, "You are subscribed",
                       f"Your first digest comes to {address} {when(subscriber.interests)}.",
                       "Every email has links to change your interests, pause, or leave.",
                       links=(("Manage your subscription", manage_link(site.keys, subscriber)),))
