"""`digest serve`: the HTTP side, on the same config and store as the job (Starlette on uvicorn).

    GET  /feeds/...           the feed files and OPML, with ETag and Last-Modified (304s)
    GET  / , /subscribe       the subscribe form        POST /subscribe       sign up, mail a link
    GET  /confirm/TOKEN       what will be confirmed    POST /confirm/TOKEN   the double opt-in
    GET  /manage/TOKEN        interests, pause, feed    POST /manage/TOKEN    save, pause, resume
    (the subscribe and manage forms may carry a library file: BibTeX, RIS or CSL-JSON, whose
    papers count as liked: read once, then imported by digest.pipeline.import_library as
    `digest profile import` does)
    GET  /feedback/TOKEN      "more like this?"         POST /feedback/TOKEN  record it (or undo)
    GET  /unsubscribe/TOKEN   a confirm button          POST /unsubscribe/TOKEN  RFC 8058 one-click

Why every change is a POST behind a GET page: mail scanners and link previews open every link in a
message, so a GET must never subscribe, mark or unsubscribe anything.

Security, in one place:
  - Tokens in links are HMAC-signed (digest.tokens), one purpose each; a bad one gets 400.
  - Forms carry a CSRF token bound to a cookie nonce and to the form's scope, and a cross-site
    Origin is refused. The one-click unsubscribe POST is the exception RFC 8058 asks for: it needs
    no cookie, its signed token is the authority.
  - A form is read up to a size cap, and answered 413 beyond it: 64 kB of text; the subscribe
    and manage forms (multipart/form-data) add one library file of up to 2 MB.
  - Subscribe requests are rate limited per client address, and confirmation mails per recipient
    and overall (digest.subscriptions). The page never tells whether an address is subscribed.
  - A library file (BibTeX, RIS, CSL-JSON) sent with the subscribe form is imported only into a
    subscription that form creates: a stranger who types a subscribed address changes nothing.
  - Nothing redirects: every POST answers with its page, so there is no redirect to abuse.
  - Pages are autoescaped templates, under a CSP that allows no script at all.
"""

from __future__ import annotations

import hmac
import logging
import mimetypes
import re
import secrets
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Match, Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from digest import compose, subscriptions
from digest.config import WEEKDAYS, Config, ProfileConfig
from digest.deliver import Sender
from digest.errors import DigestError, LibraryError
from digest.feedfiles import FeedFiles
from digest.library import LibraryImport, read_library
from digest.models import Interests, Subscriber
from digest.notices import notice_mail
from digest.pipeline import LibraryReport, import_library, publish_first_feed
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
MAX_FORM_BYTES = 64 * 1024  # a form's text: its urlencoded body, or the text fields of a multipart one
MAX_FORM_FIELDS = 60
# A library file sent with the subscribe or manage form (`digest profile import` takes up to 20 MB).
LIBRARY_UPLOAD_MAX_BYTES = 2 * 1024 * 1024
LIBRARY_FIELD = "library"
SKIPPED_SHOWN = 10  # skipped entries listed on the manage page after an import
# A refused upload's rest is still read (and dropped) up to this, so the browser gets the page
# rather than a reset connection; a body longer than this has the connection closed on it.
DRAIN_MAX_BYTES = 32 * 1024 * 1024
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


# Tokens are credentials (a manage link lets its holder edit a subscription), and a web
# subscriber's feed name is its private address: neither is written to a log.
_SECRET_PATH = re.compile(r"^/(confirm|manage|feedback|unsubscribe)/[^/]+|^/feeds/profiles/web-[^/.]+")


def _loggable(path: str) -> str:
    return _SECRET_PATH.sub(lambda m: m.group(0).rsplit("/", 1)[0] + "/…", path)


class AccessLog:
    """ASGI middleware: one log line per request (method, path without secrets, status, time)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.log = logging.getLogger("digest.access")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.log.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        status = 0

        async def recorded(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recorded)
        finally:
            client = scope.get("client") or ("-", 0)
            self.log.info(
                "%s %s %s %d %.1f ms", client[0], scope["method"], _loggable(scope["path"]),
                status or 500, (time.perf_counter() - began) * 1000,
            )


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


@dataclass(frozen=True, slots=True)
class Upload:
    """A file sent with a form: its base name (cleaned, for messages and the format) and bytes."""

    filename: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Submitted:
    """A checked form: its text fields, and the library file when one was chosen."""

    fields: dict[str, str]
    upload: Upload | None = None


class _FormRefused(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


class _TooLarge(Exception):
    pass


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
            {"weekdays": weekdays, "timezones": zones, "errors": {}, "values": {},
             "library_max_mb": LIBRARY_UPLOAD_MAX_BYTES // 2**20, **context}
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
               background: BackgroundTask | None = None) -> HTMLResponse:
        response = html("page.html.j2", status, request, scope, headers, title=title, lines=lines,
                        form_action=action, button=button, hidden=hidden or {}, links=links)
        response.background = background
        return response

    def bad_link(what: str, problem: BadToken) -> HTMLResponse:
        return notice(400, "This link does not work",
                      f"{str(problem)[0].upper()}{str(problem)[1:]}. Nothing was changed.",
                      f"Use the {what} link from the newest email.",
                      links=(("Subscribe again", "/"),) if "expired" in str(problem) else ())

    async def read_upload(upload: Upload) -> tuple[LibraryImport | None, str]:
        """The library file read (in a worker thread: LaTeX takes time), or what is wrong with it."""
        try:
            library = await run_in_threadpool(read_library, upload.data, upload.filename)
        except LibraryError as exc:
            return None, f"This file cannot be read: {exc}."
        if not library.entries:
            first = f" ({library.skipped[0]})" if library.skipped else ""
            return None, f"{upload.filename}: no paper could be read from it{first}."
        return library, ""

    async def checked_interests(
        form: Submitted, *, with_address: bool
    ) -> tuple[subscriptions.FormResult, dict[str, str], LibraryImport | None]:
        """The subscribe or manage form's interests checked and its library file read: every
        mistake by field, and the file read once."""
        checked = subscriptions.read_form(form.fields, with_address=with_address)
        errors = dict(checked.errors)
        library = None
        if form.upload is not None:
            library, problem = await read_upload(form.upload)
            if problem:
                errors["library"] = problem
        return checked, errors, library

    async def checked_form(request: Request, scope: str, *, uploads: bool = False) -> Submitted:
        """The POSTed form, once its origin, size and CSRF token are checked (else _FormRefused).

        A form is urlencoded, or multipart/form-data; with `uploads`, a multipart form may carry
        one library file (the field "library"), and an empty file input is no upload.
        """
        def refused() -> _FormRefused:  # the page is made only when a form is refused
            return _FormRefused(notice(
                403, "This form has expired",
                "For your safety the form only works for a while, and only from this "
                "site. Nothing was changed; open the page again and resend it."))

        multipart = _media_type(request) == "multipart/form-data"

        def too_large() -> _FormRefused:
            if multipart and uploads:
                mb = LIBRARY_UPLOAD_MAX_BYTES // 2**20
                return _FormRefused(notice(
                    413, "The file is too large",
                    f"A library file can be up to {mb} MB. Nothing was changed.",
                    "Export a smaller collection of your library and send the form again.",
                    links=(("Back to the form", request.url.path),)))
            return _FormRefused(notice(413, "Too much text", "The form was too large to read."))

        def unreadable() -> _FormRefused:
            return _FormRefused(notice(400, "Unreadable form", "The form could not be read."))

        origin = request.headers.get("origin")
        if origin is not None and origin not in own_origins | {_origin(str(request.base_url))}:
            raise refused()
        if request.headers.get("sec-fetch-site") == "cross-site":
            raise refused()
        limit = MAX_FORM_BYTES + (LIBRARY_UPLOAD_MAX_BYTES if multipart and uploads else 0)
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:  # no need to read it to refuse it
            await _drain(request)
            raise too_large()
        upload = None
        try:
            if multipart:
                form, upload = await _read_multipart(request, limit, max_files=1 if uploads else 0)
            else:
                body = await _read_body(request, limit)
                form = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True,
                                      max_num_fields=MAX_FORM_FIELDS))
        except _TooLarge:
            raise too_large() from None
        except (MultiPartException, UnicodeDecodeError, ValueError):
            raise unreadable() from None
        if sum(len(value) for value in form.values()) > MAX_FORM_BYTES:  # text in a multipart form
            raise too_large()
        nonce = request.cookies.get(CSRF_COOKIE, "")
        try:
            signed_nonce, signed_scope = read_csrf_token(keys, form.get("csrf", ""), clock().timestamp())
        except BadToken:
            raise refused() from None
        if not (nonce and hmac.compare_digest(signed_nonce, nonce) and signed_scope == scope):
            raise refused()
        if upload is not None and len(upload.data) > LIBRARY_UPLOAD_MAX_BYTES:
            raise too_large()
        return Submitted(form, upload)

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
            form = await checked_form(request, "subscribe", uploads=True)
        except _FormRefused as refused:
            return refused.response
        checked, errors, library = await checked_interests(form, with_address=True)
        if errors or checked.address is None or checked.interests is None:
            return html("subscribe.html.j2", 400, request, "subscribe", title="Get new papers you care about",
                        values=checked.values, errors=_in_form_order(errors),
                        library_again=form.upload is not None and "library" not in errors)
        with store() as db:
            outcome = subscriptions.sign_up(db, checked.address, checked.interests, now)
        upload = form.upload
        # The file goes only into a subscription this form made: anyone may type a subscribed
        # address. It is imported after the answer is sent, so the answer takes as long either way.
        later = None
        if outcome.created and upload is not None and library is not None:
            later = BackgroundTask(import_later, outcome.subscriber.profile, library, upload.filename)
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
                              "again in a few minutes.", background=later)
        elif outcome.limited:
            log.warning("subscribe: mail to %s held back by the rate limit", checked.address)
        # The same words whether or not the address had a subscription (and so whether the file
        # was imported): the page must not tell a stranger who is subscribed.
        read: tuple[str, ...] = ()
        if upload is not None and library is not None:
            read = (
                f"We read {_papers(len(library.entries))} from {upload.filename}"
                + (f" ({_entries(len(library.skipped))} could not be used)" if library.skipped else "")
                + ". Once you confirm, they count as papers you liked. If this address already "
                "had a subscription, the file was not added to it: add it on the page that "
                "subscription's emails link to.",
            )
        return notice(200, "Check your inbox",
                      f"We sent a link to {checked.address}. Open it to confirm; nothing is sent "
                      "before you do.",
                      *read,
                      "Nothing there after a few minutes? Look in your spam folder. We send at most "
                      f"{subscriptions.CONFIRMATIONS_PER_ADDRESS_PER_DAY} of these emails a day.",
                      background=later)

    def import_later(profile: str, library: LibraryImport, filename: str) -> None:
        """A new subscriber's library, imported once the subscribe page is sent (a worker thread)."""
        with store() as db:
            report = import_library(db, profile, library, filename, clock)
        log.info("subscribe: %s imported %d papers (%d new) from %s", profile, report.entries,
                 report.added, filename)

    def confirmed_pending(token: str) -> tuple[str, str]:
        return read_confirm_token(keys, token, clock().timestamp())

    async def confirm_page(request: Request) -> Response:
        try:
            profile, address = confirmed_pending(request.path_params["token"])
        except BadToken as problem:
            return bad_link("confirmation", problem)
        with store() as db:
            subscriber = db.subscriber(profile)
            library = len(db.library([profile]).get(profile, []))
        if subscriber is None or subscriber.address != address:
            return notice(404, "Subscription not found",
                          "This subscription no longer exists. Subscribe again to start over.",
                          links=(("Subscribe", "/"),))
        if subscriber.status != "pending" and not subscriber.unsubscribed:
            return notice(200, "You are subscribed", f"{address} already gets the digest.",
                          links=(("Manage your subscription", _manage_link(keys, subscriber)),))
        # What is confirmed includes the library sent with the form: its owner should see it.
        sent = (f"With {_papers(library)} from an uploaded library, counted as papers you liked.",)
        return notice(200, "Confirm your subscription", f"Send the digest to {address}?",
                      _describe(subscriber.interests), *(sent if library else ()),
                      request=request, scope=f"confirm:{profile}",
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
        try:  # the personal feed answers from now on, empty until the first digest
            await run_in_threadpool(publish_first_feed, config, profile)
        except DigestError as exc:  # the next run writes it; the subscription stands
            log.warning("subscribe: the feed of %s was not written yet: %s", profile, exc)
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
                    errors: dict[str, str] | None = None,
                    imported: dict[str, Any] | None = None, library_again: bool = False) -> Response:
        with store() as db:
            unsubscribed = db.is_unsubscribed(who.profile, who.address)
            latest = db.digests(who.profile, limit=1)
            library = len(db.library([who.profile]).get(who.profile, []))
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
            feed_rss=feed_rss, feed_atom=feed_atom, last=last, imported=imported,
            library_again=library_again,
            library_line=(f"Your library: {_papers(library)} imported, counted as papers you liked."
                          if library else "Your library: no papers imported yet."),
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
            form = await checked_form(request, f"manage:{who.profile}", uploads=True)
        except _FormRefused as refused:
            return refused.response
        action, now = form.fields.get("action", ""), clock()
        if action == "save" and who.subscriber is not None:
            checked, errors, library = await checked_interests(form, with_address=False)
            if errors or checked.interests is None:
                return manage_view(request, who, 400, values=dict(checked.values),
                                   errors=_in_form_order(errors),
                                   library_again=form.upload is not None and "library" not in errors)
            current, interests, upload = who.subscriber, checked.interests, form.upload

            def save() -> tuple[Subscriber, LibraryReport | None]:
                with store() as db:
                    done = (import_library(db, who.profile, library, upload.filename, clock)
                            if upload is not None and library is not None else None)
                    return subscriptions.update_interests(db, current, interests, now), done

            changed, report = await run_in_threadpool(save)
            saved = "Saved. The next digest uses these interests."
            return manage_view(request, Reader(who.profile, who.address, changed, None),
                               saved=saved, imported=_import_summary(report, upload))
        with store() as db:
            if action == "resubscribe":
                db.resubscribe(who.profile, who.address)
                return manage_view(request, who, saved="You are subscribed again.")
            subscriber = who.subscriber
            if subscriber is None:
                return notice(400, "Not possible here",
                              "This digest is set up by the people who run this service.")
            if action in ("pause", "resume"):
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
        undo = form.fields.get("action") == "undo"
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
                      f"{address} will get no more of these digests, starting with the next one.",
                      "Changed your mind? Your manage page subscribes you again with one button.",
                      links=(("Subscribe again", f"{base}/manage/{manage_token(keys, profile, address)}"),))

    async def not_found(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        if status == 405:
            allowed = sorted({
                method
                for route in app.router.routes
                if isinstance(route, Route) and route.methods
                and route.matches(request.scope)[0] != Match.NONE
                for method in route.methods
            })
            return notice(405, "Not allowed", "This address does not take that kind of request.",
                          headers={"allow": ", ".join(allowed)})
        return notice(status, "Page not found", "There is nothing at this address.",
                      links=(("Subscribe", "/"),))

    async def feed_index(request: Request) -> Response:
        """The public feeds, where every feed's channel link points: a reader can pick one."""
        folder = config.feeds_dir
        found = [name for name in ("all.atom", "all.rss", "feeds.opml") if (folder / name).is_file()]
        profiles = folder / "profiles"
        if profiles.is_dir():
            found += sorted(
                f"profiles/{path.name}" for path in profiles.iterdir()
                if path.suffix in (".atom", ".rss") and not path.name.startswith("web-")
            )
        if not found:
            return notice(200, "Feeds", "No feed is published yet: the next `digest run` writes them.")
        return notice(200, "Feeds", "Subscribe to one in your feed reader (Atom or RSS), or import "
                      "feeds.opml to have them all. New papers of every source are in all.atom.",
                      links=tuple((name, f"{base}/feeds/{name}") for name in found))

    app = Starlette(
        routes=[
            Route("/feeds/", feed_index, methods=["GET", "HEAD"]),
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
    return AccessLog(SecureHeaders(app))


def _send(make: Callable[[], Sender], message: Any, address: str) -> None:
    with make() as sender:
        sender.send(message, address)


def _papers(number: int) -> str:
    return compose.count(number, "paper")


def _entries(number: int) -> str:
    return compose.count(number, "entry", "entries")


def _in_form_order(errors: Mapping[str, str]) -> dict[str, str]:
    """The errors in the order of their fields on the page, the library file after the examples."""
    order = list(subscriptions.FORM_FIELDS)
    order.insert(order.index("examples") + 1, LIBRARY_FIELD)
    place = {name: number for number, name in enumerate(order)}
    return dict(sorted(errors.items(), key=lambda item: place.get(item[0], len(order))))


def _import_summary(report: LibraryReport | None, upload: Upload | None) -> dict[str, Any] | None:
    """What the manage page says after an import: counts, and the first skipped entries."""
    if report is None or upload is None:
        return None
    summary = (f"Imported {_papers(report.entries)} from {upload.filename} ({report.added:,} new)"
               f"; {_entries(len(report.skipped))} skipped.")
    return {
        "summary": summary,
        "skipped": report.skipped[:SKIPPED_SHOWN],
        "more": max(0, len(report.skipped) - SKIPPED_SHOWN),
    }


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").partition(";")[0].strip().lower()


async def _body_chunks(request: Request, limit: int) -> AsyncGenerator[bytes, None]:
    """The request's body, chunk by chunk; _TooLarge once it passes `limit` bytes (its rest is
    read and dropped first, up to DRAIN_MAX_BYTES)."""
    size, more = 0, True
    while more:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk: bytes = message.get("body", b"")
        more = bool(message.get("more_body", False))
        size += len(chunk)
        if size > limit:
            if more:
                await _drain(request)
            raise _TooLarge()
        if chunk:
            yield chunk


async def _drain(request: Request) -> None:
    """Read the rest of a refused body (up to DRAIN_MAX_BYTES), so the browser sees our answer:
    one that is still sending when the server answers and closes often shows a reset instead."""
    drained, more = 0, True
    while more and drained <= DRAIN_MAX_BYTES:
        message = await request.receive()
        if message["type"] != "http.request":
            return
        drained += len(message.get("body", b""))
        more = bool(message.get("more_body", False))


async def _read_body(request: Request, limit: int) -> bytes:
    body = bytearray()
    async with aclosing(_body_chunks(request, limit)) as chunks:
        async for chunk in chunks:
            body += chunk
    return bytes(body)


async def _read_multipart(
    request: Request, limit: int, max_files: int
) -> tuple[dict[str, str], Upload | None]:
    """A multipart/form-data body: its text fields, and its file "library" when one was chosen.

    Starlette's parser (python-multipart) keeps a file part in a spooled temporary file; the
    whole body is capped at `limit`, and a form with more than `max_files` file parts is refused
    (MultiPartException), as is one with more than MAX_FORM_FIELDS text fields.
    """
    async with aclosing(_body_chunks(request, limit)) as chunks:
        parser = MultiPartParser(request.headers, chunks, max_files=max_files,
                                 max_fields=MAX_FORM_FIELDS, max_part_size=limit)
        form: FormData = await parser.parse()
    fields: dict[str, str] = {}
    upload = None
    try:
        for name, value in form.multi_items():
            if isinstance(value, str):
                fields[name] = value
            elif name == LIBRARY_FIELD:
                data = await value.read()
                filename = _upload_name(value.filename or "")
                if data or filename:  # an empty file input sends a part with no name and no bytes
                    upload = Upload(filename or "your file", data)
    finally:
        await form.close()
    return fields, upload


def _upload_name(raw: str) -> str:
    """An uploaded file's name as one short line: no folders, control or direction characters.
    Its extension is kept: it tells read_library the format."""
    name = subscriptions.clean_text(re.split(r"[\\/]", raw)[-1])
    if name.strip(".") == "":
        return ""
    if len(name) > 120:
        stem, dot, suffix = name.rpartition(".")
        name = f"{stem[:100]}….{suffix[:12]}" if dot and len(suffix) <= 12 else name[:120]
    return name


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
