"""`digest serve`: the HTTP side, on the same config and store as the job (Starlette on uvicorn).

    GET  /feeds/...           the feed files and OPML, with ETag and Last-Modified (304s)
    GET  / , /subscribe       the subscribe form        POST /subscribe       sign up, mail a link
    GET  /confirm/TOKEN       what will be confirmed    POST /confirm/TOKEN   the double opt-in
    GET  /manage/TOKEN        interests, pause, feed    POST /manage/TOKEN    save, pause, resume
    GET  /feedback/TOKEN      "more like this?"         POST /feedback/TOKEN  record it (or undo)
    GET  /unsubscribe/TOKEN   a confirm button          POST /unsubscribe/TOKEN  RFC 8058 one-click

Why every change is a POST behind a GET page: mail scanners and link previews open every link in a
message, so a GET must never subscribe, mark or unsubscribe anything.

Security, in one place:
  - Tokens in links are HMAC-signed (digest.tokens), one purpose each; a bad one gets 400.
  - Forms carry a CSRF token bound to a cookie nonce and to the form's scope, and a cross-site
    Origin is refused. The one-click unsubscribe POST is the exception RFC 8058 asks for: it needs
    no cookie, its signed token is the authority.
  - Subscribe requests are rate limited per client address, and confirmation mails per recipient
    and overall (digest.subscriptions). The page never tells whether an address is subscribed.
  - Nothing redirects: every POST answers with its page, so there is no redirect to abuse.
  - Pages are autoescaped templates, under a CSP that allows no script at all.
"""

from __future__ import annotations

import hmac
import logging
import mimetypes
import re
import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from digest import compose, subscriptions
from digest.config import WEEKDAYS, Config, ProfileConfig
from digest.deliver import Sender
from digest.errors import DigestError
from digest.feedfiles import FeedFiles
from digest.models import Interests, Subscriber
from digest.notices import notice_mail
from digest.render import default_templates_dir
from digest.store import Store
from digest.tokens import (
    BadToken,
    confirm_token,
    csrf_token,
    load_secrets,
    manage_token,
    read_confirm_token,
    read_csrf_token,
    read_feedback_token,
    read_manage_token,
    read_unsubscribe_token,
    unsubscribe_token,
)

log = logging.getLogger(__name__)

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
    # same-origin, not no-referrer: with no-referrer browsers send "Origin: null" on a form's POST,
    # and the CSRF check needs the real origin. Token URLs still never leak to another site.
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
CSRF_COOKIE = "pd_form"
_NONCE_RE = re.compile(r"^[A-Za-z0-9_-]{22}$")
MAX_FORM_BYTES = 64 * 1024
SUBSCRIBES_PER_CLIENT = 10  # POSTs to /subscribe per client address per window
SUBSCRIBE_WINDOW = timedelta(hours=1)

Clock = Callable[[], datetime]


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


class RateLimiter:
    """At most `limit` events per key in any `window` (a sliding window, in memory, per process)."""

    def __init__(self, limit: int, window: timedelta, max_keys: int = 100_000) -> None:
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self._events: dict[str, deque[datetime]] = {}

    def allow(self, key: str, now: datetime) -> bool:
        if len(self._events) >= self.max_keys:  # bounded memory: forget the quiet keys
            self._events = {k: v for k, v in self._events.items() if v and v[-1] > now - self.window}
        events = self._events.setdefault(key, deque())
        while events and events[0] <= now - self.window:
            events.popleft()
        if len(events) >= self.limit:
            return False
        events.append(now)
        return True

    def retry_after(self, key: str, now: datetime) -> int:
        events = self._events.get(key)
        if not events:
            return 0
        return max(1, int((events[0] + self.window - now).total_seconds()))


@dataclass(frozen=True, slots=True)
class Reader:
    """Who a manage link belongs to: a web subscriber, or an address of a config.toml profile."""

    profile: str
    address: str
    subscriber: Subscriber | None  # None for a config.toml profile
    configured: ProfileConfig | None


class _FormRefused(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


def create_app(
    config: Config,
    clock: Clock = lambda: datetime.now(UTC),
    sender: Callable[[], Sender] | None = None,
) -> ASGIApp:
    """The app. `sender` makes the mail sender for confirmation mails (default: as the job does)."""
    from digest.pipeline import make_sender

    templates = Environment(
        loader=FileSystemLoader(default_templates_dir()),
        autoescape=select_autoescape(enabled_extensions=("html.j2",), default=True),
    )
    keys = load_secrets(config.data_dir)
    config.feeds_dir.mkdir(parents=True, exist_ok=True)
    base = config.output.base_url
    own_origins = {_origin(base)}
    secure_cookie = base.startswith("https://")
    make_mail_sender = sender or (lambda: make_sender(config))
    subscribe_limit = RateLimiter(SUBSCRIBES_PER_CLIENT, SUBSCRIBE_WINDOW)
    weekdays = [(day, day.title()) for day in WEEKDAYS]
    zones = [(zone, zone.replace("_", " ")) for zone in subscriptions.TIMEZONES]

    def store() -> Store:
        return Store.open(config.store_path)

    # -- responses ------------------------------------------------------------------------------

    def html(template: str, status: int, request: Request | None = None, scope: str = "",
             headers: dict[str, str] | None = None, **context: Any) -> HTMLResponse:
        nonce = None
        if request is not None and scope:
            nonce = _nonce(request)
            context["csrf"] = csrf_token(keys, nonce, scope, clock().timestamp())
        body = templates.get_template(template).render(
            {"weekdays": weekdays, "timezones": zones, "errors": {}, "values": {}, **context}
        )
        response = HTMLResponse(body, status_code=status, headers={"cache-control": "no-store"})
        for name, value in (headers or {}).items():
            response.headers[name] = value
        if request is not None and nonce and request.cookies.get(CSRF_COOKIE) != nonce:
            response.set_cookie(CSRF_COOKIE, nonce, max_age=12 * 3600, path="/", httponly=True,
                                secure=secure_cookie, samesite="lax")
        return response

    def notice(status: int, title: str, *lines: str, request: Request | None = None,
               scope: str = "", action: str | None = None, button: str = "",
               hidden: dict[str, str] | None = None,
               links: tuple[tuple[str, str], ...] = (), headers: dict[str, str] | None = None,
               ) -> HTMLResponse:
        return html("page.html.j2", status, request, scope, headers, title=title, lines=lines,
                    form_action=action, button=button, hidden=hidden or {}, links=links)

    def bad_link(what: str, problem: BadToken) -> HTMLResponse:
        return notice(400, "This link does not work",
                      f"{str(problem)[0].upper()}{str(problem)[1:]}. Nothing was changed.",
                      f"Use the {what} link from the newest email.",
                      links=(("Subscribe again", "/"),) if "expired" in str(problem) else ())

    async def checked_form(request: Request, scope: str) -> dict[str, str]:
        """The POSTed form, once its origin and CSRF token are checked (else _FormRefused)."""
        def refused() -> _FormRefused:  # the page is made only when a form is refused
            return _FormRefused(notice(
                403, "This form has expired",
                "For your safety the form only works for a while, and only from this "
                "site. Nothing was changed; open the page again and resend it."))

        origin = request.headers.get("origin")
        if origin is not None and origin not in own_origins | {_origin(str(request.base_url))}:
            raise refused()
        if request.headers.get("sec-fetch-site") == "cross-site":
            raise refused()
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                raise _FormRefused(notice(413, "Too much text", "The form was too large to read."))
        try:
            form = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=60))
        except (UnicodeDecodeError, ValueError):
            raise _FormRefused(notice(400, "Unreadable form", "The form could not be read.")) from None
        nonce = request.cookies.get(CSRF_COOKIE, "")
        try:
            signed_nonce, signed_scope = read_csrf_token(keys, form.get("csrf", ""), clock().timestamp())
        except BadToken:
            raise refused() from None
        if not (nonce and hmac.compare_digest(signed_nonce, nonce) and signed_scope == scope):
            raise refused()
        return form

    # -- subscribe and confirm ------------------------------------------------------------------

    async def subscribe_page(request: Request) -> Response:
        return html("subscribe.html.j2", 200, request, "subscribe", title="Get new papers you care about",
                    values={"timezone": "UTC", "deliver_at": "07:00", "frequency": "daily"})

    async def subscribe(request: Request) -> Response:
        now = clock()
        client = request.client.host if request.client else "unknown"
        if not subscribe_limit.allow(client, now):
            wait = subscribe_limit.retry_after(client, now)
            return notice(429, "Too many tries",
                          f"Please wait {max(1, wait // 60)} minutes before subscribing again.",
                          headers={"retry-after": str(wait)})
        try:
            form = await checked_form(request, "subscribe")
        except _FormRefused as refused:
            return refused.response
        checked = subscriptions.read_form(form, with_address=True)
        if checked.errors or checked.address is None or checked.interests is None:
            return html("subscribe.html.j2", 400, request, "subscribe", title="Get new papers you care about",
                        values=checked.values, errors=checked.errors)
        with store() as db:
            outcome = subscriptions.sign_up(db, checked.address, checked.interests, now)
        if outcome.mail is not None:
            profile, address = outcome.subscriber.profile, outcome.subscriber.address
            link = (
                f"{base}/confirm/{confirm_token(keys, profile, address, now.timestamp())}"
                if outcome.mail == "confirm"
                else f"{base}/manage/{manage_token(keys, profile, address)}"
            )
            message = notice_mail(config, outcome.mail, address, link, now)
            try:
                await run_in_threadpool(_send, make_mail_sender, message, address)
            except DigestError as exc:
                log.warning("subscribe: the %s mail to %s was not sent: %s", outcome.mail, address, exc)
                return notice(503, "The email could not be sent",
                              "Our mail server did not take the message just now. Please try "
                              "again in a few minutes.")
        elif outcome.limited:
            log.warning("subscribe: mail to %s held back by the rate limit", checked.address)
        return notice(200, "Check your inbox",
                      f"We sent a link to {checked.address}. Open it to confirm; nothing is sent "
                      "before you do.",
                      "Nothing there after a few minutes? Look in your spam folder. We send at most "
                      f"{subscriptions.CONFIRMATIONS_PER_ADDRESS_PER_DAY} of these emails a day.")

    def confirmed_pending(token: str) -> tuple[str, str]:
        return read_confirm_token(keys, token, clock().timestamp())

    async def confirm_page(request: Request) -> Response:
        try:
            profile, address = confirmed_pending(request.path_params["token"])
        except BadToken as problem:
            return bad_link("confirmation", problem)
        with store() as db:
            subscriber = db.subscriber(profile)
        if subscriber is None or subscriber.address != address:
            return notice(404, "Subscription not found",
                          "This subscription no longer exists. Subscribe again to start over.",
                          links=(("Subscribe", "/"),))
        if subscriber.status != "pending" and not subscriber.unsubscribed:
            return notice(200, "You are subscribed", f"{address} already gets the digest.",
                          links=(("Manage your subscription", _manage_link(keys, subscriber)),))
        return notice(200, "Confirm your subscription", f"Send the digest to {address}?",
                      _describe(subscriber.interests), request=request, scope=f"confirm:{profile}",
                      action=request.url.path, button="Confirm")

    async def confirm(request: Request) -> Response:
        try:
            profile, address = confirmed_pending(request.path_params["token"])
        except BadToken as problem:
            return bad_link("confirmation", problem)
        try:
            await checked_form(request, f"confirm:{profile}")
        except _FormRefused as refused:
            return refused.response
        with store() as db:
            subscriber = subscriptions.confirm(db, profile, address, clock())
        if subscriber is None:
            return notice(404, "Subscription not found",
                          "This subscription no longer exists. Subscribe again to start over.",
                          links=(("Subscribe", "/"),))
        log.info("subscribe: %s confirmed %s", address, profile)
        return notice(200, "You are subscribed",
                      f"Your first digest comes to {address} {_when(subscriber.interests)}.",
                      "Every email has links to change your interests, pause, or leave.",
                      links=(("Manage your subscription", _manage_link(keys, subscriber)),))

    # -- manage ---------------------------------------------------------------------------------

    def reader(token: str) -> Reader | Response:
        """Who a manage link belongs to, or the page saying why it does not work."""
        try:
            profile, address = read_manage_token(keys, token)
        except BadToken as problem:
            return bad_link("manage", problem)
        def gone() -> Response:
            return notice(404, "Subscription not found", "This subscription no longer exists.",
                          links=(("Subscribe", "/"),))

        with store() as db:
            if subscriptions.is_web_profile(profile):
                subscriber = db.subscriber(profile)
                if subscriber is None or subscriber.address != address:
                    return gone()
                return Reader(profile, address, subscriber, None)
        configured = next((p for p in config.profiles if p.name == profile), None)
        if configured is None or address not in (e.lower() for e in configured.emails):
            return gone()
        return Reader(profile, address, None, configured)

    def manage_view(request: Request, who: Reader, status: int = 200, saved: str = "",
                    values: dict[str, str] | None = None,
                    errors: dict[str, str] | None = None) -> Response:
        with store() as db:
            unsubscribed = db.is_unsubscribed(who.profile, who.address)
            latest = db.digests(who.profile, limit=1)
        subscriber = who.subscriber
        if unsubscribed:
            state = "unsubscribed"
        elif subscriber is not None:
            state = {"pending": "waiting for your confirmation", "active": "active",
                     "paused": "paused"}[subscriber.status]
        else:
            state = "active"
        last = None
        if latest:
            digest = latest[0]
            last = {
                "day_label": compose.day_label(digest),
                "papers": [
                    {"title": compose.one_line(item.paper.title),
                     "url": compose.safe_url(compose.paper_url(item.paper)),
                     "why": compose.reasons_line(item.reasons)}
                    for item in digest.items
                ],
            }
        interests = subscriber.interests if subscriber else None
        feed_rss, feed_atom = (f"{base}/feeds/profiles/{who.profile}.{kind}" for kind in ("rss", "atom"))
        return html(
            "manage.html.j2", status, request, f"manage:{who.profile}",
            title="Your digest", address=who.address, state=state, saved=saved,
            unsubscribed=unsubscribed, editable=subscriber is not None,
            paused=subscriber is not None and subscriber.status == "paused",
            values=values or (subscriptions.form_values(interests) if interests else {}),
            errors=errors or {}, summary=_summary(who.configured) if who.configured else [],
            feed_rss=feed_rss, feed_atom=feed_atom, last=last,
            next_note=(f"Digests are made {_when(interests)}." if interests else ""),
            action=request.url.path,
            unsubscribe_action=f"/unsubscribe/{unsubscribe_token(keys, who.profile, who.address)}",
        )

    async def manage_page(request: Request) -> Response:
        who = reader(request.path_params["token"])
        return who if isinstance(who, Response) else manage_view(request, who)

    async def manage(request: Request) -> Response:
        who = reader(request.path_params["token"])
        if isinstance(who, Response):
            return who
        try:
            form = await checked_form(request, f"manage:{who.profile}")
        except _FormRefused as refused:
            return refused.response
        action, now = form.get("action", ""), clock()
        with store() as db:
            if action == "resubscribe":
                db.resubscribe(who.profile, who.address)
                return manage_view(request, who, saved="You are subscribed again.")
            subscriber = who.subscriber
            if subscriber is None:
                return notice(400, "Not possible here",
                              "This digest is set up by the people who run this service.")
            if action == "save":
                checked = subscriptions.read_form(form, with_address=False)
                if checked.interests is None:
                    return manage_view(request, who, 400, values=dict(checked.values),
                                       errors=dict(checked.errors))
                subscriber = subscriptions.update_interests(db, subscriber, checked.interests, now)
                saved = "Saved. The next digest uses these interests."
            elif action in ("pause", "resume"):
                subscriber = subscriptions.set_paused(db, subscriber, action == "pause", now)
                saved = ("Paused: no digest until you resume." if action == "pause"
                         else "Resumed: the digest comes again.")
            else:
                return notice(400, "Unknown action", "The form asked for something unknown.")
        return manage_view(request, Reader(who.profile, who.address, subscriber, None), saved=saved)

    # -- feedback -------------------------------------------------------------------------------

    def feedback_target(token: str) -> tuple[str, str, str, str] | Response:
        try:
            profile, key, mark = read_feedback_token(keys, token)
        except BadToken as problem:
            return bad_link("feedback", problem)
        with store() as db:
            paper = db.paper(key)
        if paper is None:
            return notice(404, "Paper not found", "This paper is no longer kept here.")
        return profile, key, mark, compose.one_line(paper.title)

    async def feedback_page(request: Request) -> Response:
        target = feedback_target(request.path_params["token"])
        if isinstance(target, Response):
            return target
        profile, _, mark, title = target
        question = "More papers like this one?" if mark == "more" else "Not relevant to you?"
        button = "Yes, more like this" if mark == "more" else "Mark as not relevant"
        return notice(200, question, title, request=request, scope=f"feedback:{profile}",
                      action=request.url.path, button=button, hidden={"action": "mark"})

    async def feedback(request: Request) -> Response:
        target = feedback_target(request.path_params["token"])
        if isinstance(target, Response):
            return target
        profile, key, mark, title = target
        try:
            form = await checked_form(request, f"feedback:{profile}")
        except _FormRefused as refused:
            return refused.response
        undo = form.get("action") == "undo"
        with store() as db:
            db.mark(profile, key, None if undo else mark, clock())
        if undo:
            return notice(200, "Taken back", f"Your mark on “{title}” is gone.")
        said = ("You will see more papers like it." if mark == "more"
                else "You will see fewer papers like it.")
        return notice(200, "Thanks, noted", f"“{title}”: {said}", request=request,
                      scope=f"feedback:{profile}", action=request.url.path, button="Undo",
                      hidden={"action": "undo"})

    # -- unsubscribe ----------------------------------------------------------------------------

    def subscriber_of(request: Request) -> tuple[str, str] | None:
        try:
            return read_unsubscribe_token(keys, request.path_params["token"])
        except BadToken:
            return None

    async def unsubscribe_page(request: Request) -> Response:
        found = subscriber_of(request)
        if found is None:
            return notice(400, "This link is not valid",
                          "The unsubscribe link was changed or cut short. Use the link from the "
                          "newest email, or write to the address the digest comes from.")
        _, address = found
        return notice(200, "Unsubscribe?", f"Stop sending this digest to {address}?",
                      action=request.url.path, button="Unsubscribe",
                      hidden={"List-Unsubscribe": "One-Click"})

    async def unsubscribe(request: Request) -> Response:
        found = subscriber_of(request)
        if found is None:
            return notice(400, "This link is not valid",
                          "The unsubscribe link was changed or cut short; nothing was changed.")
        profile, address = found
        with store() as db:
            db.unsubscribe(profile, address, clock())
        log.info("unsubscribe: %s left %s", address, profile)
        # 200 with a page, never a redirect: RFC 8058 senders expect a final answer.
        return notice(200, "You are unsubscribed",
                      f"{address} will get no more of these digests, starting with the next one.")

    async def not_found(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        if status == 405:
            return notice(405, "Not allowed", "This address does not take that kind of request.")
        return notice(status, "Page not found", "There is nothing at this address.",
                      links=(("Subscribe", "/"),))

    app = Starlette(
        routes=[
            Mount("/feeds", app=FeedFiles(config.feeds_dir)),
            Route("/", subscribe_page, methods=["GET", "HEAD"]),
            Route("/subscribe", subscribe_page, methods=["GET", "HEAD"]),
            Route("/subscribe", subscribe, methods=["POST"]),
            Route("/confirm/{token}", confirm_page, methods=["GET", "HEAD"]),
            Route("/confirm/{token}", confirm, methods=["POST"]),
            Route("/manage/{token}", manage_page, methods=["GET", "HEAD"]),
            Route("/manage/{token}", manage, methods=["POST"]),
            Route("/feedback/{token}", feedback_page, methods=["GET", "HEAD"]),
            Route("/feedback/{token}", feedback, methods=["POST"]),
            Route("/unsubscribe/{token}", unsubscribe_page, methods=["GET", "HEAD"]),
            Route("/unsubscribe/{token}", unsubscribe, methods=["POST"]),
        ],
        exception_handlers={404: not_found, 405: not_found},
    )
    app.router.redirect_slashes = False  # no redirects at all: none to abuse, none to follow
    return SecureHeaders(app)


def _send(make: Callable[[], Sender], message: Any, address: str) -> None:
    with make() as sender:
        sender.send(message, address)


def _nonce(request: Request) -> str:
    """The browser's form nonce (its cookie), or a new one."""
    nonce = request.cookies.get(CSRF_COOKIE, "")
    return nonce if _NONCE_RE.match(nonce) else secrets.token_urlsafe(16)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _manage_link(keys: list[str], subscriber: Subscriber) -> str:
    return f"/manage/{manage_token(keys, subscriber.profile, subscriber.address)}"


def _when(interests: Interests) -> str:
    days = {"daily": "every day", "weekdays": "on weekdays",
            "weekly": f"every {interests.weekday.title()}"}[interests.frequency]
    return f"{days} at {interests.deliver_at} ({interests.timezone.replace('_', ' ')})"


def _describe(interests: Interests) -> str:
    parts = [
        f"{label}: {', '.join(values)}"
        for label, values in (
            ("keywords", interests.keywords),
            ("authors", interests.authors),
            ("categories", interests.categories),
            ("papers like", interests.examples),
        )
        if values
    ]
    return f"Interests: {'; '.join(parts)}. Delivered {_when(interests)}."


def _summary(profile: ProfileConfig) -> list[tuple[str, str]]:
    rows = [
        ("Keywords", ", ".join(profile.keywords)),
        ("Authors", ", ".join(profile.authors)),
        ("Categories", ", ".join(profile.categories)),
        ("Papers like", ", ".join(profile.examples)),
        ("When", f"{profile.frequency} at {profile.deliver_at} ({profile.timezone})"),
    ]
    return [(label, value) for label, value in rows if value]
