"""The one object every page handler works with: what the pages share, made once per process.

`Site` holds the config, the clock, the signing keys, the templates, the store (one handle, in a
thread of its own), the sign-up worker and the personal feeds' read marks (personal.py), and the helpers every page uses: rendering a page with
its CSRF token, the short notice page, and checking a POSTed form.
"""

from __future__ import annotations

import asyncio
import hmac
import re
import secrets
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, TypeVar

import anyio
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import HTMLResponse

from digest import feeds, subscriptions
from digest.channels.mail import Sender
from digest.config import WEEKDAYS, Config
from digest.errors import LibraryError
from digest.library import LibraryImport, read_library
from digest.render import default_templates_dir
from digest.store import Store, open_store
from digest.tokens import BadToken, csrf_token, read_csrf_token
from digest.web.forms import (
    LIBRARY_FIELD,
    LIBRARY_UPLOAD_MAX_BYTES,
    MAX_FORM_BYTES,
    Submitted,
    TooLarge,
    Upload,
    drain,
    media_type,
    origin_of,
    read_multipart,
    read_urlencoded,
)
from digest.web.middleware import RateLimiter
from digest.web.personal import PersonalFeeds
from digest.web.signups import SignupWorker

CSRF_COOKIE = "pd_form"
# A form, library file included, must arrive within this (2 MB at 70 kB/s).
BODY_SECONDS = 30.0
_NONCE_RE = re.compile(r"^[A-Za-z0-9_-]{22}$")

Clock = Callable[[], datetime]
T = TypeVar("T")


class FormRefused(Exception):
    """A POSTed form that is not taken (expired, cross-site, too large): `response` says why."""

    def __init__(self, response: HTMLResponse) -> None:
        self.response = response


class StoreThread:
    """The web process's one store handle, used from one thread of its own: SQLite's calls never
    block the event loop, and no request pays for opening the store (its checks, its pragmas).
    SQLite serialises writes anyway; a single thread also serialises the reads, which take well
    under a millisecond each."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="digest-store")
        self._store: Store | None = None

    async def __call__(self, work: Callable[[Store], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._run, work)

    def wait_for(self, work: Callable[[Store], T]) -> T:
        """`work` done on the store's thread, waited for (before the server serves)."""
        return self._executor.submit(self._run, work).result()

    def _run(self, work: Callable[[Store], T]) -> T:
        if self._store is None:
            self._store = open_store(self.config)
        return work(self._store)

    def close(self) -> None:
        def close_store() -> None:
            if self._store is not None:
                self._store.close()
                self._store = None

        self._executor.submit(close_store).result()


class Site:
    """What the page handlers share (see the module's docstring)."""

    def __init__(self, config: Config, clock: Clock, make_sender: Callable[[], Sender]) -> None:
        self.config = config
        self.clock = clock
        self.base = config.output.base_url
        self.db = StoreThread(config)
        # The links' signing keys: secret.key beside a SQLite store, the store's own on
        # PostgreSQL (every replica and worker signs and checks with the same keys).
        self.keys = self.db.wait_for(lambda store: store.signing_keys(config.data_dir))
        # Feeds kept in the store (PostgreSQL: every replica serves the same rows) or in feeds_dir.
        self.feeds_in_store = self.db.wait_for(lambda store: store.shared)
        self.templates = Environment(
            loader=FileSystemLoader(default_templates_dir()),
            autoescape=select_autoescape(enabled_extensions=("html.j2",), default=True),
        )
        # Which personal feeds are read (written to the store once a minute), and building
        # those a run left unbuilt when a reader asks (the /feeds app calls it).
        self.personal = PersonalFeeds(config, clock, self.db, self.keys, self.publish_feed)
        self.signups = SignupWorker(config, clock, self.keys, make_sender)
        self.subscribe_limit = RateLimiter("subscribe", SUBSCRIBES_PER_CLIENT, SUBSCRIBE_WINDOW)
        self.own_origins = {origin_of(self.base)}
        self.secure_cookie = self.base.startswith("https://")
        self.page_defaults = {
            "weekdays": [(day, day.title()) for day in WEEKDAYS],
            "timezones": [(zone, zone.replace("_", " ")) for zone in subscriptions.TIMEZONES],
            "errors": {}, "values": {}, "library_max_mb": LIBRARY_UPLOAD_MAX_BYTES // 2**20,
        }

        self._once: dict[str, str] = {}

    async def publish_feed(self, publish: Callable[[feeds.FeedTarget], T]) -> T:
        """`publish` given where this deployment's feeds go: on the store's thread when they are
        kept in the store, else in a worker thread writing to feeds_dir (its fsyncs never hold
        up the store's work)."""
        if self.feeds_in_store:
            return await self.db(lambda store: publish(feeds.InStore(store, self.clock)))
        return await run_in_threadpool(publish, feeds.Folder(self.config.feeds_dir))

    def close(self) -> None:
        self.signups.stop()
        self.db.close()

    def once(self, key: str, make: Callable[[], str]) -> str:
        """What `make` gives, made on the first call only (a page that is the same every time)."""
        if key not in self._once:
            self._once[key] = make()
        return self._once[key]

    # -- pages ----------------------------------------------------------------------------------

    def render(self, template: str, **context: Any) -> str:
        return self.templates.get_template(template).render({**self.page_defaults, **context})

    def html(self, template: str, status: int, request: Request | None = None, scope: str = "",
             headers: Mapping[str, str] | None = None, **context: Any) -> HTMLResponse:
        """A page; with `request` and `scope`, its forms carry a CSRF token for that scope."""
        nonce = None
        if request is not None and scope:
            nonce = form_nonce(request)
            context["csrf"] = self.csrf(nonce, scope)
        return self.page(self.render(template, **context), status, request, nonce, headers)

    def csrf(self, nonce: str, scope: str) -> str:
        return csrf_token(self.keys, nonce, scope, self.clock().timestamp())

    def page(self, body: str, status: int, request: Request | None = None, nonce: str | None = None,
             headers: Mapping[str, str] | None = None) -> HTMLResponse:
        """An HTML answer, never cached; it sets the form cookie when `nonce` is new."""
        response = HTMLResponse(body, status_code=status, headers={"cache-control": "no-store"})
        for name, value in (headers or {}).items():
            response.headers[name] = value
        if request is not None and nonce and request.cookies.get(CSRF_COOKIE) != nonce:
            response.set_cookie(CSRF_COOKIE, nonce, max_age=12 * 3600, path="/", httponly=True,
                                secure=self.secure_cookie, samesite="lax")
        return response

    def notice(self, status: int, title: str, *lines: str, request: Request | None = None,
               scope: str = "", action: str | None = None, button: str = "",
               hidden: dict[str, str] | None = None,
               links: tuple[tuple[str, str], ...] = (), headers: Mapping[str, str] | None = None,
               background: BackgroundTask | None = None) -> HTMLResponse:
        """The short page most answers are: a title, lines, links, and at most one button."""
        response = self.html("page.html.j2", status, request, scope, headers, title=title,
                             lines=lines, form_action=action, button=button, hidden=hidden or {},
                             links=links)
        response.background = background
        return response

    def bad_link(self, what: str, problem: BadToken) -> HTMLResponse:
        said = str(problem)
        return self.notice(400, "This link does not work",
                           f"{said[0].upper()}{said[1:]}. Nothing was changed.",
                           f"Use the {what} link from the newest email.",
                           links=(("Subscribe again", "/"),) if "expired" in said else ())

    # -- forms ----------------------------------------------------------------------------------

    async def checked_form(self, request: Request, scope: str, *, uploads: bool = False) -> Submitted:
        """The POSTed form, once its origin, size and CSRF token are checked (else FormRefused).

        A form is urlencoded, or multipart/form-data; with `uploads`, a multipart form may carry
        one library file (the field "library"), and an empty file input is no upload.
        """
        def refused() -> FormRefused:  # the page is made only when a form is refused
            return FormRefused(self.notice(
                403, "This form has expired",
                "For your safety the form only works for a while, and only from this "
                "site. Nothing was changed; open the page again and resend it."))

        multipart = media_type(request) == "multipart/form-data"

        def too_large() -> FormRefused:
            if multipart and uploads:
                mb = LIBRARY_UPLOAD_MAX_BYTES // 2**20
                return FormRefused(self.notice(
                    413, "The file is too large",
                    f"A library file can be up to {mb} MB. Nothing was changed.",
                    "Export a smaller collection of your library and send the form again.",
                    links=(("Back to the form", request.url.path),)))
            return FormRefused(self.notice(413, "Too much text", "The form was too large to read."))

        origin = request.headers.get("origin")
        if origin is not None and origin not in self.own_origins | {origin_of(str(request.base_url))}:
            raise refused()
        if request.headers.get("sec-fetch-site") == "cross-site":
            raise refused()
        limit = MAX_FORM_BYTES + (LIBRARY_UPLOAD_MAX_BYTES if multipart and uploads else 0)
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:  # no need to read it to refuse it
            await drain(request)
            raise too_large()
        upload = None
        try:
            with anyio.fail_after(BODY_SECONDS):  # a body that drips in holds a connection
                if multipart:
                    form, upload = await read_multipart(request, limit, max_files=1 if uploads else 0)
                else:
                    form = await read_urlencoded(request, limit)
        except TooLarge:
            raise too_large() from None
        except TimeoutError:
            raise FormRefused(self.notice(
                408, "The form took too long", "The form did not arrive in time. Nothing was "
                "changed; please send it again.", headers={"connection": "close"})) from None
        except (MultiPartException, UnicodeDecodeError, ValueError):
            raise FormRefused(self.notice(400, "Unreadable form", "The form could not be read.")) from None
        if sum(len(value) for value in form.values()) > MAX_FORM_BYTES:  # text in a multipart form
            raise too_large()
        nonce = request.cookies.get(CSRF_COOKIE, "")
        try:
            signed_nonce, signed_scope = read_csrf_token(self.keys, form.get("csrf", ""),
                                                         self.clock().timestamp())
        except BadToken:
            raise refused() from None
        if not (nonce and hmac.compare_digest(signed_nonce, nonce) and signed_scope == scope):
            raise refused()
        if upload is not None and len(upload.data) > LIBRARY_UPLOAD_MAX_BYTES:
            raise too_large()
        return Submitted(form, upload)

    async def checked_interests(
        self, form: Submitted, *, with_address: bool
    ) -> tuple[subscriptions.FormResult, dict[str, str], LibraryImport | None]:
        """The subscribe or manage form's interests checked and its library file read: every
        mistake by field, and the file read once."""
        checked = subscriptions.read_form(form.fields, with_address=with_address)
        errors = dict(checked.errors)
        library = None
        if form.upload is not None:
            library, problem = await _read_upload(form.upload)
            if problem:
                errors[LIBRARY_FIELD] = problem
        return checked, _in_form_order(errors), library


SUBSCRIBES_PER_CLIENT = 10  # POSTs to /subscribe per client address per window
SUBSCRIBE_WINDOW = subscriptions.MAIL_BUDGET_WINDOW


async def _read_upload(upload: Upload) -> tuple[LibraryImport | None, str]:
    """The library file read (in a worker thread: LaTeX takes time), or what is wrong with it."""
    try:
        library = await run_in_threadpool(read_library, upload.data, upload.filename)
    except LibraryError as exc:
        return None, f"This file cannot be read: {exc}."
    if not library.entries:
        first = f" ({library.skipped[0]})" if library.skipped else ""
        return None, f"{upload.filename}: no paper could be read from it{first}."
    return library, ""


def _in_form_order(errors: Mapping[str, str]) -> dict[str, str]:
    """The errors in the order of their fields on the page, the library file after the examples."""
    order = list(subscriptions.FORM_FIELDS)
    order.insert(order.index("examples") + 1, LIBRARY_FIELD)
    place = {name: number for number, name in enumerate(order)}
    return dict(sorted(errors.items(), key=lambda item: place.get(item[0], len(order))))


def form_nonce(request: Request) -> str:
    """The browser's form nonce (its cookie), or a new one."""
    nonce = request.cookies.get(CSRF_COOKIE, "")
    return nonce if _NONCE_RE.match(nonce) else secrets.token_urlsafe(16)
