"""The only place that talks HTTP: one polite httpx client for every source.

Politeness and robustness, in the order a request meets them:
  - a minimum interval between two requests to the same host (arXiv asks for 3 s, one at a time);
  - conditional GET: If-None-Match / If-Modified-Since, and a 304 means "unchanged", never "empty";
  - retries with exponential backoff on timeouts, connection errors, 429 and 5xx, honouring Retry-After
    (not for a host DNS says does not exist);
  - a cap on the body size, enforced while streaming, so a 30 MB answer is never read whole.

`file://` URLs are read from disk under the same cap, and a replay folder of captured responses
stands in for the network (see ReplayTransport), so the whole pipeline runs offline.

POST (and PUT) for webhooks go through the same client, timeouts, User-Agent and per-host interval,
but a delivery must happen once: a request is sent again only when it provably never reached the
server (refused or unreachable, a connect or pool timeout, a 429 or 503 answer). Once the body may
have been read (a read timeout, a dropped connection, a 5xx other than 503), UncertainPostError says
so and nothing is retried; a 4xx is a RejectedPostError with the server's words.

A Fetcher is sequential by design (one request at a time); do not share one between threads.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from types import TracebackType
from typing import TypeVar
from urllib.parse import unquote, urlsplit

import httpx

from digest import __version__
from digest.errors import FetchError, NotReplayed
from digest.models import FetchResult
from digest.text import one_line

PROJECT_URL = "https://github.com/paperdigest/paperdigest"
ARXIV_HOSTS = ("arxiv.org", "export.arxiv.org", "rss.arxiv.org")
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_REDIRECTS = 5
# A POST is sent again only on an answer that says it was not taken: too many requests, or the
# service is down for now. A 500, 502 or 504 may come after the message was posted.
POST_RETRY_STATUSES = frozenset({429, 503})
POST_REPLY_BYTES = 256 * 1024  # a webhook's answer ("ok", an event id) is small; more is cut


def user_agent(contact: str) -> str:
    """Identify the tool and who runs it, as arXiv and most sites ask of automated clients."""
    return f"paperdigest/{__version__} (+{PROJECT_URL}; mailto:{contact})"


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class FetchPolicy:
    user_agent: str = user_agent("unknown@example.org")
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 30.0
    max_bytes: int = 10 * 1024 * 1024
    retries: int = 3
    deadline_s: float = 120.0  # one URL's whole fetch: every attempt, wait and byte of the body
    backoff_s: float = 2.0
    max_backoff_s: float = 60.0
    max_retry_after_s: float = 300.0
    default_interval_s: float = 1.0
    host_intervals: Mapping[str, float] = field(
        default_factory=lambda: dict.fromkeys(ARXIV_HOSTS, 3.0)
    )

    def interval(self, host: str) -> float:
        return self.host_intervals.get(host, self.default_interval_s)


class Fetcher:
    """Fetches URLs under a FetchPolicy. Clock and sleep are injected so tests never wait."""

    def __init__(
        self,
        policy: FetchPolicy,
        *,
        transport: httpx.BaseTransport | None = None,
        replay_dir: Path | None = None,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.policy = policy
        self._sleep = sleep
        self._monotonic = monotonic
        self._now = now
        self._replaying = replay_dir is not None
        if replay_dir is not None:
            transport = ReplayTransport(replay_dir)
        self._client = httpx.Client(
            transport=transport,
            headers={"User-Agent": policy.user_agent},
            timeout=httpx.Timeout(policy.read_timeout_s, connect=policy.connect_timeout_s),
            follow_redirects=False,  # followed by hand, so that only http(s) targets are accepted
        )
        self._last_request: dict[str, float] = {}

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def fetch(
        self,
        url: str,
        *,
        etag: str | None = None,
        last_modified: str | None = None,
        accept_error_body: bool = False,
    ) -> FetchResult:
        """GET one URL. Raises FetchError with a one-line reason when it cannot be had.

        accept_error_body: a 4xx answer's body is returned instead of raised (the arXiv API explains a
        bad query in an Atom feed sent with HTTP 400; its parser turns that into a clear message).
        """
        scheme = urlsplit(url).scheme
        if scheme == "file":
            return self._read_file(url)
        if scheme not in ("http", "https"):
            raise FetchError(f"cannot fetch {url!r}: only http(s) and file URLs are supported")
        headers = {}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        return self._retrying(lambda began: self._attempt(url, headers, accept_error_body, began))

    def _retrying(self, attempt_once: Callable[[float], T], retries: int | None = None) -> T:
        """`attempt_once(began)` until it answers, retried with backoff (or the server's
        Retry-After) while it raises _Retryable, within the retries (the policy's unless given)
        and the fetch deadline."""
        attempts = (self.policy.retries if retries is None else retries) + 1
        began = self._monotonic()
        for attempt in range(1, attempts + 1):
            try:
                return attempt_once(began)
            except _Retryable as retry:
                if attempt == attempts:
                    raise FetchError(f"{retry.reason} after {attempts} attempts") from None
                wait = retry.wait_s if retry.wait_s is not None else self._backoff(attempt)
                spent = self._monotonic() - began
                if spent + wait > self.policy.deadline_s:  # a server that hangs costs one deadline
                    raise FetchError(
                        f"{retry.reason}; gave up after {attempt} attempts and {spent:.0f} s"
                        f" (the fetch deadline is {self.policy.deadline_s:.0f} s)"
                    ) from None
                self._sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    def post(
        self,
        url: str,
        body: Mapping[str, object] | list[object] | bytes,
        headers: Mapping[str, str] | None = None,
        *,
        method: str = "POST",
        on_hand_over: Callable[[], None] | None = None,
        retries: int | None = None,
    ) -> PostResult:
        """POST (or PUT: Matrix sends a message with PUT and a transaction id) one body, once.

        A mapping or list is sent as JSON (Content-Type application/json, UTF-8); bytes as they are,
        with the caller's Content-Type. Retried, with the GET's backoff and Retry-After, only when
        the request provably did not reach the server; see the module docstring. Raises
        RejectedPostError (4xx: never again), UncertainPostError (it may have arrived), or a plain
        FetchError (it did not go: retries used up, the host not found, not http(s)).

        `on_hand_over()` is called as a request starts to go out on an open connection (httpcore's
        trace: its headers are being sent), before each attempt's first byte: from then on the
        server may get it. A ledger records it there, so a run killed later leaves the message
        'uncertain', and one killed while connecting or waiting to retry does not.
        """
        if urlsplit(url).scheme not in ("http", "https"):
            raise RejectedPostError(f"cannot {method} to {_shown(url)}: only http(s) URLs", 0)
        sent_headers = dict(headers or {})
        if isinstance(body, bytes):
            content = body
        else:
            content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
            if not any(name.lower() == "content-type" for name in sent_headers):
                sent_headers["Content-Type"] = "application/json; charset=utf-8"
        return self._retrying(
            lambda began: self._post_attempt(method, url, content, sent_headers, on_hand_over),
            retries,
        )

    def _post_attempt(
        self,
        method: str,
        url: str,
        content: bytes,
        headers: dict[str, str],
        on_hand_over: Callable[[], None] | None,
    ) -> PostResult:
        shown = _shown(url)
        self._wait_for_turn(url)
        extensions = {"trace": _hand_over_trace(on_hand_over)} if on_hand_over else None
        try:
            with self._client.stream(
                method, url, content=content, headers=headers, extensions=extensions
            ) as response:
                status = response.status_code
                if status in POST_RETRY_STATUSES:
                    raise _Retryable(
                        f"HTTP {status} {response.reason_phrase} from {shown}",
                        self._retry_after(response),
                    )
                if 200 <= status < 300:
                    # Delivered: an answer cut short changes nothing about that.
                    return PostResult(url, status, _read_some(response), dict(response.headers))
                said = _said(response)
                if 300 <= status < 400:
                    where = one_line(response.headers.get("Location", ""), 200) or "nowhere"
                    raise RejectedPostError(
                        f"HTTP {status} {response.reason_phrase} from {shown}: a webhook is not"
                        f" redirected (it points to {where})",
                        status,
                    )
                if 400 <= status < 500:
                    raise RejectedPostError(
                        f"HTTP {status} {response.reason_phrase} from {shown}{said}", status
                    )
                raise UncertainPostError(
                    f"HTTP {status} {response.reason_phrase} from {shown}{said}: the message may"
                    " have been posted"
                )
        except (httpx.ConnectTimeout, httpx.PoolTimeout):
            raise _Retryable(f"timed out connecting to {shown}") from None
        except httpx.ConnectError as exc:
            if _unknown_host(exc):
                raise FetchError(
                    f"{shown}: the host {httpx.URL(url).host} is not found (DNS)"
                ) from None
            raise _Retryable(f"connection failed for {shown}: {exc or type(exc).__name__}") from None
        except httpx.TimeoutException as exc:  # read or write: the body went, or part of it
            raise UncertainPostError(
                f"{type(exc).__name__} waiting for {shown}: the message may have been posted",
                timed_out=True,
            ) from None
        except httpx.TransportError as exc:  # the connection dropped after the request was sent
            raise UncertainPostError(
                f"connection lost with {shown} ({one_line(exc, 120) or type(exc).__name__}):"
                " the message may have been posted"
            ) from None

    def _backoff(self, attempt: int) -> float:
        return float(min(self.policy.backoff_s * 2 ** (attempt - 1), self.policy.max_backoff_s))

    def _attempt(
        self, url: str, headers: dict[str, str], accept_error_body: bool, fetch_began: float
    ) -> FetchResult:
        began = self._monotonic()
        for _ in range(MAX_REDIRECTS + 1):
            self._wait_for_turn(url)
            try:
                with self._client.stream("GET", url, headers=headers) as response:
                    location = response.headers.get("Location")
                    if response.is_redirect and location:
                        url = self._redirect_target(url, location)
                        continue
                    return self._result(url, response, accept_error_body, began, fetch_began)
            except httpx.TimeoutException:
                raise _Retryable(f"timed out fetching {url}") from None
            except httpx.TransportError as exc:
                if _unknown_host(exc):  # no such name: asking again only wastes the backoff
                    host = httpx.URL(url).host
                    raise FetchError(f"{url}: the host {host} is not found (DNS)") from None
                raise _Retryable(
                    f"connection failed for {url}: {exc or type(exc).__name__}"
                ) from None
        raise FetchError(f"more than {MAX_REDIRECTS} redirects from {url}")

    def _result(
        self,
        url: str,
        response: httpx.Response,
        accept_error_body: bool,
        began: float,
        fetch_began: float,
    ) -> FetchResult:
        status = response.status_code
        if status == 304:
            return FetchResult(url=url, status=304, body=None, elapsed_s=self._monotonic() - began)
        if status in RETRY_STATUSES:
            raise _Retryable(f"HTTP {status} {response.reason_phrase}", self._retry_after(response))
        if status >= 400 and not (accept_error_body and status < 500):
            raise FetchError(f"HTTP {status} {response.reason_phrase} for {url}")
        if 300 <= status < 400:
            raise FetchError(
                f"HTTP {status} {response.reason_phrase} without a usable Location for {url}"
            )
        body = self._read_capped(response, url, fetch_began)
        return FetchResult(
            url=url,
            status=status,
            body=body,
            etag=response.headers.get("ETag"),
            last_modified=response.headers.get("Last-Modified"),
            elapsed_s=self._monotonic() - began,
        )

    def _read_capped(self, response: httpx.Response, url: str, fetch_began: float) -> bytes:
        limit = self.policy.max_bytes
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > limit:
            raise FetchError(
                f"body larger than {_size(limit)} (Content-Length {declared}) at {url}"
            )
        chunks, size = [], 0
        try:
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > limit:
                    raise FetchError(f"body larger than {_size(limit)} at {url}")
                # A server dripping bytes never trips the read timeout; the deadline stops it.
                if self._monotonic() - fetch_began > self.policy.deadline_s:
                    raise FetchError(
                        f"the body of {url} was still coming after"
                        f" {self.policy.deadline_s:.0f} s (the fetch deadline)"
                    )
                chunks.append(chunk)
        except httpx.DecodingError as exc:
            raise FetchError(f"undecodable body (Content-Encoding) at {url}: {exc}") from None
        return b"".join(chunks)

    def _retry_after(self, response: httpx.Response) -> float | None:
        """Seconds the server asked us to wait, capped; None when it did not say."""
        value = response.headers.get("Retry-After", "").strip()
        if not value:
            return None
        if value.isdigit():
            wait = float(value)
        else:
            try:
                wait = (parsedate_to_datetime(value) - self._now()).total_seconds()
            except (TypeError, ValueError):
                return None
        if wait > self.policy.max_retry_after_s:
            raise FetchError(
                f"HTTP {response.status_code}: the server asks to retry after {wait:.0f} s, "
                f"more than the {self.policy.max_retry_after_s:.0f} s we wait"
            )
        return max(wait, 0.0)

    def _wait_for_turn(self, url: str) -> None:
        if self._replaying:
            return  # captured responses: there is no server to be polite to
        host = urlsplit(url).hostname or ""
        interval = self.policy.interval(host)
        last = self._last_request.get(host)
        if last is not None:
            wait = last + interval - self._monotonic()
            if wait > 0:
                self._sleep(wait)
        self._last_request[host] = self._monotonic()

    def _redirect_target(self, url: str, location: str) -> str:
        target = str(httpx.URL(url).join(location))
        if urlsplit(target).scheme not in ("http", "https"):
            raise FetchError(f"refused a redirect from {url} to a non-http(s) URL")
        return target

    def _read_file(self, url: str) -> FetchResult:
        path = Path(unquote(urlsplit(url).path))
        try:
            size = path.stat().st_size
            if size > self.policy.max_bytes:
                raise FetchError(f"body larger than {_size(self.policy.max_bytes)}: {path}")
            return FetchResult(url=url, status=200, body=path.read_bytes())
        except FileNotFoundError:
            raise FetchError(f"file not found: {path}") from None
        except OSError as exc:
            raise FetchError(f"cannot read {path}: {exc.strerror}") from None


class UncertainPostError(FetchError):
    """The request (its whole body, or part of it) may have reached the server, and no answer
    said what became of it: a read or write timeout, a dropped connection, a 500, 502 or 504.
    The message may have been posted, so it is not sent again here.

    For now here, beside the POST that raises it; the delivery side maps it to
    digest.errors.UncertainDeliveryError. `timed_out`: no answer within the read timeout (a
    server that hangs), as opposed to one that answered 5xx or dropped the connection."""

    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


class RejectedPostError(FetchError):
    """The server refused the request for good (a 4xx other than 429, a redirect): sending the same
    again gets the same answer. `status` is the HTTP status, the message holds the server's words."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class PostResult:
    """A POST's (or PUT's) answer: a 2xx status, the start of its body, and its headers."""

    url: str
    status: int
    body: bytes
    headers: Mapping[str, str]

    def json(self) -> object:
        """The body as JSON (Matrix answers its event id, Discord with ?wait=true its message)."""
        return json.loads(self.body)


class _Retryable(Exception):
    """A failure worth another attempt: timeouts, refused connections, 429 and 5xx."""

    def __init__(self, reason: str, wait_s: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.wait_s = wait_s


class ReplayTransport(httpx.BaseTransport):
    """Answers requests from a folder of captured responses instead of the network.

    The folder holds index.json: a list of {"url", "file", "status" (default 200), "headers"}, with
    "file" relative to the folder. A URL not in the index is a FetchError that says so.
    """

    def __init__(self, folder: Path) -> None:
        index_path = folder / "index.json"
        try:
            entries = json.loads(index_path.read_text(encoding="utf-8"))
            self._entries = {
                entry["url"]: (
                    folder / entry["file"],
                    int(entry.get("status", 200)),
                    dict(entry.get("headers", {})),
                )
                for entry in entries
            }
        except FileNotFoundError:
            raise FetchError(f"replay folder has no index.json: {index_path}") from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise FetchError(f"{index_path}: not a list of {{url, file}} entries ({exc})") from None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        entry = self._entries.get(str(request.url))
        if entry is None:
            raise NotReplayed(f"not in the replay index: {request.url}")
        path, status, headers = entry
        try:
            body = path.read_bytes()
        except OSError as exc:
            raise FetchError(
                f"replay file for {request.url} unreadable: {exc.strerror}: {path}"
            ) from None
        return httpx.Response(status, headers=headers, content=body, request=request)


def _size(limit: int) -> str:
    return f"{limit / (1024 * 1024):g} MB" if limit >= 1024 * 1024 else f"{limit} bytes"


def _hand_over_trace(on_hand_over: Callable[[], None]) -> Callable[[str, object], None]:
    """An httpcore trace callback that calls `on_hand_over` once, as the request's headers start
    to go (HTTP/1.1 or HTTP/2): the connection is open, and from here the server may get it."""
    called = False

    def trace(event: str, info: object) -> None:
        nonlocal called
        if not called and event.endswith(".send_request_headers.started"):
            called = True
            on_hand_over()

    return trace


def _shown(url: str) -> str:
    """A webhook URL as errors and logs may show it: scheme, host and port only. Its path is
    often the secret (Slack and Discord put the token there), its query may hold a token."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}/…"


def _read_some(response: httpx.Response) -> bytes:
    """Up to POST_REPLY_BYTES of a 2xx answer's body; what could not be read is left unread."""
    chunks, size = [], 0
    try:
        for chunk in response.iter_bytes():
            chunks.append(chunk)
            size += len(chunk)
            if size >= POST_REPLY_BYTES:
                break
    except httpx.HTTPError:
        pass
    return b"".join(chunks)[:POST_REPLY_BYTES]


def _said(response: httpx.Response) -> str:
    """The server's reason in a refusal, as one line cut to 200 characters: ': <words>', or ''."""
    try:
        text = _read_some(response)[:4096].decode("utf-8", "replace")
    except httpx.HTTPError:  # pragma: no cover - _read_some keeps what it has
        return ""
    words = one_line(text, 200)
    return f": {words}" if words else ""


def _unknown_host(exc: BaseException) -> bool:
    """Whether DNS answered that the name does not exist (EAI_NONAME), which trying again does
    not change; a temporary DNS failure (EAI_AGAIN) is retried like any other."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, socket.gaierror):
            return seen.errno == socket.EAI_NONAME
        seen = seen.__cause__ or seen.__context__
    return False
