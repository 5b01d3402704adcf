"""The HTTP client, over httpx.MockTransport, with a fake clock: no network, no real waiting."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from digest.errors import FetchError
from digest.fetch import (
    POST_REPLY_BYTES,
    Fetcher,
    FetchPolicy,
    RejectedPostError,
    UncertainPostError,
    user_agent,
)

Handler = Callable[[httpx.Request], httpx.Response]


class FakeClock:
    """monotonic() and sleep() for a Fetcher: sleeping advances the clock and is recorded."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 3))
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fetcher_for(clock: FakeClock) -> Iterator[Callable[..., Fetcher]]:
    made: list[Fetcher] = []

    def make(handler: Handler, **policy: object) -> Fetcher:
        fetcher = Fetcher(
            FetchPolicy(user_agent=user_agent("ops@lab.example"), **policy),  # type: ignore[arg-type]
            transport=httpx.MockTransport(handler),
            sleep=clock.sleep,
            monotonic=clock.monotonic,
            now=lambda: datetime(2026, 11, 20, 12, 0, 0, tzinfo=UTC),
        )
        made.append(fetcher)
        return fetcher

    yield make
    for fetcher in made:
        fetcher.close()


def answers(*responses: httpx.Response | type[Exception]) -> tuple[Handler, list[httpx.Request]]:
    """A handler giving these answers in turn (an exception class is raised), and the requests seen."""
    seen: list[httpx.Request] = []
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(answer, type):
            raise answer("simulated", request=request)  # type: ignore[call-arg]
        return answer

    return handler, seen


def test_a_200_gives_the_body_and_its_validators(fetcher_for: Callable[..., Fetcher]) -> None:
    handler, seen = answers(
        httpx.Response(
            200,
            content=b"<feed/>",
            headers={"ETag": '"abc"', "Last-Modified": "Fri, 20 Nov 2026 20:00:00 GMT"},
        )
    )
    result = fetcher_for(handler).fetch("https://rss.arxiv.org/atom/cs.LG")
    assert (result.status, result.body, result.etag) == (200, b"<feed/>", '"abc"')
    assert result.last_modified == "Fri, 20 Nov 2026 20:00:00 GMT"
    assert "mailto:ops@lab.example" in seen[0].headers["User-Agent"]
    assert seen[0].headers["User-Agent"].startswith("paperdigest/")


def test_conditional_get_and_304_is_unchanged(fetcher_for: Callable[..., Fetcher]) -> None:
    handler, seen = answers(httpx.Response(304))
    result = fetcher_for(handler).fetch(
        "https://a.org/f", etag='"abc"', last_modified="Fri, 20 Nov 2026 20:00:00 GMT"
    )
    assert result.unchanged and result.body is None
    assert seen[0].headers["If-None-Match"] == '"abc"'
    assert seen[0].headers["If-Modified-Since"] == "Fri, 20 Nov 2026 20:00:00 GMT"


def test_retry_after_in_seconds_is_honoured(
    fetcher_for: Callable[..., Fetcher], clock: FakeClock
) -> None:
    handler, seen = answers(
        httpx.Response(429, headers={"Retry-After": "7"}), httpx.Response(200, content=b"ok")
    )
    assert fetcher_for(handler, default_interval_s=0).fetch("https://a.org/f").body == b"ok"
    assert clock.sleeps == [7.0]
    assert len(seen) == 2


def test_retry_after_as_an_http_date_is_honoured(
    fetcher_for: Callable[..., Fetcher], clock: FakeClock
) -> None:
    handler, _ = answers(
        httpx.Response(503, headers={"Retry-After": "Fri, 20 Nov 2026 12:00:30 GMT"}),
        httpx.Response(200, content=b"ok"),
    )
    fetcher_for(handler, default_interval_s=0).fetch("https://a.org/f")
    assert clock.sleeps == [30.0]


def test_a_retry_after_beyond_the_cap_gives_up_at_once(
    fetcher_for: Callable[..., Fetcher], clock: FakeClock
) -> None:
    handler, seen = answers(httpx.Response(503, headers={"Retry-After": "86400"}))
    with pytest.raises(FetchError, match="retry after 86400 s, more than the 300 s we wait"):
        fetcher_for(handler).fetch("https://a.org/f")
    assert len(seen) == 1 and clock.sleeps == []


def test_5xx_is_retried_with_exponential_backoff(
    fetcher_for: Callable[..., Fetcher], clock: FakeClock
) -> None:
    handler, seen = answers(
        httpx.Response(500), httpx.Response(502), httpx.Response(200, content=b"ok")
    )
    assert fetcher_for(handler, default_interval_s=0).fetch("https://a.org/f").body == b"ok"
    assert clock.sleeps == [2.0, 4.0]
    assert len(seen) == 3


def test_exhausted_retries_say_what_and_how_often(fetcher_for: Callable[..., Fetcher]) -> None:
    handler, seen = answers(httpx.Response(503))
    with pytest.raises(FetchError, match=r"^HTTP 503 Service Unavailable after 4 attempts$"):
        fetcher_for(handler, default_interval_s=0).fetch("https://a.org/f")
    assert len(seen) == 4


def test_a_404_is_not_retried(fetcher_for: Callable[..., Fetcher]) -> None:
    handler, seen = answers(httpx.Response(404))
    with pytest.raises(FetchError, match="HTTP 404 Not Found for https://a.org/f"):
        fetcher_for(handler).fetch("https://a.org/f")
    assert len(seen) == 1


def test_timeouts_are_retried_then_reported(
    fetcher_for: Callable[..., Fetcher], clock: FakeClock
) -> None:
    handler, seen = answers(httpx.ReadTimeout)
    with pytest.raises(FetchError, match=r"^timed out fetching https://a.org/f after 2 attempts$"):
        fetcher_for(handler, retries=1, default_interval_s=0).fetch("https://a.org/f")
    assert len(seen) == 2 and clock.sleeps == [2.0]
    refused, _ = answers(httpx.ConnectError)
    with pytest.raises(
        FetchError, match="connection failed for https://b.org/f: simulated after 2 attempts"
    ):
        fetcher_for(refused, retries=1).fetch("https://b.org/f")


def test_a_host_dns_does_not_know_fails_at_once_and_a_temporary_dns_failure_is_retried(
    fetcher_for: Callable[..., Fetcher], clock: FakeClock
) -> None:
    import socket

    def dns(errno: int) -> Handler:
        seen: list[httpx.Request] = []

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            reason = socket.gaierror(errno, "Name or service not known")
            raise httpx.ConnectError(f"[Errno {errno}] {reason.strerror}") from reason

        handler.seen = seen  # type: ignore[attr-defined]
        return handler

    unknown = dns(socket.EAI_NONAME)
    with pytest.raises(FetchError, match=r"^https://no.such.host/f: the host no.such.host is not found \(DNS\)$"):
        fetcher_for(unknown, retries=3).fetch("https://no.such.host/f")
    assert len(unknown.seen) == 1 and clock.sleeps == []  # type: ignore[attr-defined]
    temporary = dns(socket.EAI_AGAIN)
    with pytest.raises(FetchError, match="after 4 attempts"):
        fetcher_for(temporary, retries=3, default_interval_s=0).fetch("https://a.org/f")
    assert len(temporary.seen) == 4  # type: ignore[attr-defined]


def test_a_server_that_hangs_costs_one_deadline_not_every_retry(
    fetcher_for: Callable[..., Fetcher], clock: FakeClock
) -> None:
    """Each attempt waits out its 30 s read timeout; the fetch deadline (60 s here) stops the
    retries instead of spending 4 x 30 s and the backoffs between."""
    attempts = 0

    def hangs(request: httpx.Request) -> httpx.Response:
        nonlocal attempts
        attempts += 1
        clock.now += 30.0  # the read timeout, waited out
        raise httpx.ReadTimeout("timed out", request=request)

    with pytest.raises(FetchError, match=r"gave up after 2 attempts and 62 s \(the fetch deadline is 60 s\)"):
        fetcher_for(hangs, retries=3, deadline_s=60, default_interval_s=0).fetch("https://a.org/f")
    assert attempts == 2 and clock.sleeps == [2.0]


def test_a_body_that_drips_in_is_cut_at_the_deadline(
    fetcher_for: Callable[..., Fetcher], clock: FakeClock
) -> None:
    class Drip(httpx.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            for _ in range(100):
                clock.now += 20.0  # a byte now and then: never a read timeout
                yield b"x"

    def drips(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=Drip())

    with pytest.raises(FetchError, match=r"still coming after 60 s \(the fetch deadline\)"):
        fetcher_for(drips, deadline_s=60).fetch("https://a.org/f")


def test_a_30_mb_body_is_refused_without_reading_it_whole(
    fetcher_for: Callable[..., Fetcher],
) -> None:
    produced: list[int] = []

    def endless() -> Iterator[bytes]:
        for _ in range(30 * 16):  # 30 MB in 64 kB pieces
            produced.append(1)
            yield b"x" * 65536

    streamed, _ = answers(httpx.Response(200, content=endless()))
    with pytest.raises(FetchError, match="body larger than 10 MB at https://a.org/big"):
        fetcher_for(streamed).fetch("https://a.org/big")
    assert len(produced) < 30 * 16 / 2, "reading stopped soon after the cap"

    declared, _ = answers(
        httpx.Response(200, content=b"x", headers={"Content-Length": str(30 * 1024 * 1024)})
    )
    with pytest.raises(FetchError, match=r"body larger than 10 MB \(Content-Length 31457280\)"):
        fetcher_for(declared).fetch("https://a.org/big")


def test_arxiv_hosts_get_3_seconds_between_requests(
    fetcher_for: Callable[..., Fetcher], clock: FakeClock
) -> None:
    handler, _ = answers(httpx.Response(200, content=b"ok"))
    fetcher = fetcher_for(handler)
    starts = []
    for _ in range(3):
        starts.append(clock.now)
        fetcher.fetch("https://export.arxiv.org/api/query?id_list=1")
        clock.now += 0.5  # the parse takes half a second
    assert clock.sleeps == [2.5, 2.5]
    clock.sleeps.clear()
    fetcher.fetch("https://huggingface.co/api/daily_papers")
    assert clock.sleeps == [], "another host is not held up by arXiv's interval"


def test_file_urls_are_read_from_disk_under_the_cap(
    fetcher_for: Callable[..., Fetcher], tmp_path: Path
) -> None:
    handler, seen = answers(httpx.Response(500))
    page = tmp_path / "listing page.txt"
    page.write_bytes(b"hello")
    fetcher = fetcher_for(handler, max_bytes=10)
    assert fetcher.fetch(page.as_uri()).body == b"hello"
    with pytest.raises(FetchError, match="file not found: .*missing.txt"):
        fetcher.fetch((tmp_path / "missing.txt").as_uri())
    page.write_bytes(b"x" * 11)
    with pytest.raises(FetchError, match="body larger than 10 bytes"):
        fetcher.fetch(page.as_uri())
    assert seen == [], "no HTTP for file URLs"


def test_redirects_are_followed_to_http_only(fetcher_for: Callable[..., Fetcher]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/old":
            return httpx.Response(301, headers={"Location": "/new"})
        if request.url.path == "/evil":
            return httpx.Response(302, headers={"Location": "file:///etc/passwd"})
        return httpx.Response(200, content=request.url.path.encode())

    fetcher = fetcher_for(handler, default_interval_s=0)
    result = fetcher.fetch("https://a.org/old")
    assert (result.body, result.url) == (b"/new", "https://a.org/new")
    with pytest.raises(
        FetchError, match="refused a redirect from https://a.org/evil to a non-http"
    ):
        fetcher.fetch("https://a.org/evil")


def test_an_error_body_is_returned_when_the_source_explains_errors(
    fetcher_for: Callable[..., Fetcher],
) -> None:
    handler, _ = answers(
        httpx.Response(400, content=b"<feed><entry><title>Error</title></entry></feed>")
    )
    result = fetcher_for(handler).fetch(
        "https://export.arxiv.org/api/query?id_list=abc", accept_error_body=True
    )
    assert (result.status, result.body) == (
        400,
        b"<feed><entry><title>Error</title></entry></feed>",
    )


def test_other_schemes_are_refused(fetcher_for: Callable[..., Fetcher]) -> None:
    handler, _ = answers(httpx.Response(200))
    with pytest.raises(FetchError, match="only http"):
        fetcher_for(handler).fetch("ftp://a.org/x")


def test_replay_folder_answers_without_network(tmp_path: Path, clock: FakeClock) -> None:
    (tmp_path / "page.json").write_bytes(b"[]")
    (tmp_path / "index.json").write_text(
        json.dumps(
            [
                {
                    "url": "https://export.arxiv.org/api/query?q=1",
                    "file": "page.json",
                    "headers": {"ETag": '"r"'},
                }
            ]
        )
    )
    with Fetcher(
        FetchPolicy(retries=0), replay_dir=tmp_path, sleep=clock.sleep, monotonic=clock.monotonic
    ) as fetcher:
        for _ in range(3):
            result = fetcher.fetch("https://export.arxiv.org/api/query?q=1")
        assert (result.body, result.etag) == (b"[]", '"r"')
        assert clock.sleeps == [], "nobody to be polite to when replaying"
        with pytest.raises(
            FetchError, match="^not in the replay index: https://example.org/other$"
        ):
            fetcher.fetch("https://example.org/other")


def test_a_replay_folder_without_index_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="replay folder has no index.json"):
        Fetcher(FetchPolicy(), replay_dir=tmp_path)


# -- POST: webhooks, where a message must go once ------------------------------------------------

HOOK = "https://hooks.example.org/services/T000/B000/SECRET"


def test_a_post_sends_json_with_the_user_agent_and_gives_the_answer(
    fetcher_for: Callable[..., Fetcher],
) -> None:
    handler, seen = answers(httpx.Response(200, content=b"ok", headers={"X-Id": "7"}))
    result = fetcher_for(handler).post(HOOK, {"text": "héllo"}, {"X-Extra": "1"})
    assert (result.status, result.body, result.headers["x-id"]) == (200, b"ok", "7")
    (request,) = seen
    assert request.method == "POST" and str(request.url) == HOOK
    assert request.headers["Content-Type"] == "application/json; charset=utf-8"
    assert request.headers["User-Agent"].startswith("paperdigest/")
    assert request.headers["X-Extra"] == "1"
    assert json.loads(request.content) == {"text": "héllo"}


def test_a_put_with_bytes_sends_them_as_they_are(fetcher_for: Callable[..., Fetcher]) -> None:
    handler, seen = answers(httpx.Response(200, json={"event_id": "$e1"}))
    result = fetcher_for(handler).post(
        "https://matrix.example.org/send/1", b"<x/>", {"Content-Type": "text/xml"}, method="PUT"
    )
    assert result.json() == {"event_id": "$e1"}
    assert seen[0].method == "PUT" and seen[0].content == b"<x/>"
    assert seen[0].headers["Content-Type"] == "text/xml"


def test_a_post_keeps_the_per_host_interval(
    fetcher_for: Callable[..., Fetcher], clock: FakeClock
) -> None:
    handler, _ = answers(httpx.Response(204))
    fetcher = fetcher_for(handler, default_interval_s=1.5)
    fetcher.post(HOOK, {"a": 1})
    fetcher.post(HOOK, {"a": 2})
    assert clock.sleeps == [1.5]


@pytest.mark.parametrize("status", [429, 503])
def test_a_429_or_503_is_retried_after_what_the_server_asks(
    fetcher_for: Callable[..., Fetcher], clock: FakeClock, status: int
) -> None:
    handler, seen = answers(
        httpx.Response(status, headers={"Retry-After": "7"}), httpx.Response(200, content=b"ok")
    )
    assert fetcher_for(handler, default_interval_s=0).post(HOOK, {"a": 1}).status == 200
    assert len(seen) == 2 and clock.sleeps == [7.0]


@pytest.mark.parametrize("error", [httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout])
def test_a_post_that_never_reached_the_server_is_retried(
    fetcher_for: Callable[..., Fetcher], clock: FakeClock, error: type[Exception]
) -> None:
    handler, seen = answers(error, httpx.Response(200))
    assert fetcher_for(handler, default_interval_s=0).post(HOOK, {"a": 1}).status == 200
    assert len(seen) == 2 and clock.sleeps == [2.0]


def test_a_post_that_never_went_says_so_after_its_retries_without_the_secret_path(
    fetcher_for: Callable[..., Fetcher],
) -> None:
    handler, seen = answers(httpx.ConnectError)
    with pytest.raises(FetchError) as caught:
        fetcher_for(handler, retries=2, default_interval_s=0).post(HOOK, {"a": 1})
    assert not isinstance(caught.value, (UncertainPostError, RejectedPostError))
    assert str(caught.value) == (
        "connection failed for https://hooks.example.org/…: simulated after 3 attempts"
    )
    assert "SECRET" not in str(caught.value) and len(seen) == 3


def test_a_post_to_a_host_dns_does_not_know_fails_at_once(
    fetcher_for: Callable[..., Fetcher],
) -> None:
    import socket

    def handler(request: httpx.Request) -> httpx.Response:
        reason = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        raise httpx.ConnectError("no such name") from reason

    with pytest.raises(FetchError, match=r"the host hooks.example.org is not found \(DNS\)$"):
        fetcher_for(handler, retries=3).post(HOOK, {"a": 1})


@pytest.mark.parametrize(
    "error", [httpx.ReadTimeout, httpx.WriteTimeout, httpx.RemoteProtocolError, httpx.ReadError]
)
def test_a_post_that_may_have_arrived_is_never_sent_again(
    fetcher_for: Callable[..., Fetcher], clock: FakeClock, error: type[Exception]
) -> None:
    handler, seen = answers(error, httpx.Response(200))
    with pytest.raises(UncertainPostError, match="the message may have been posted$"):
        fetcher_for(handler, retries=3).post(HOOK, {"a": 1})
    assert len(seen) == 1 and clock.sleeps == []


@pytest.mark.parametrize("status", [500, 502, 504])
def test_a_server_error_after_the_post_is_uncertain_not_retried(
    fetcher_for: Callable[..., Fetcher], status: int
) -> None:
    handler, seen = answers(httpx.Response(status, text="upstream hiccup"))
    with pytest.raises(UncertainPostError, match=f"HTTP {status} .*: upstream hiccup: the message"):
        fetcher_for(handler, retries=3).post(HOOK, {"a": 1})
    assert len(seen) == 1


def test_a_4xx_is_rejected_for_good_with_the_servers_words_on_one_short_line(
    fetcher_for: Callable[..., Fetcher],
) -> None:
    words = "invalid_payload\r\n<b>no</b>\x00 " + "x" * 5000
    handler, seen = answers(httpx.Response(400, text=words))
    with pytest.raises(RejectedPostError) as caught:
        fetcher_for(handler, retries=3).post(HOOK, {"a": 1})
    message = str(caught.value)
    assert caught.value.status == 400 and len(seen) == 1
    assert message.startswith("HTTP 400 Bad Request from https://hooks.example.org/…: invalid_payload <b>no</b> xxx")
    assert "\n" not in message and "\x00" not in message and message.endswith("…")
    assert len(message) < 300
    gone, _ = answers(httpx.Response(404, text=""))
    with pytest.raises(RejectedPostError, match=r"^HTTP 404 Not Found from https://hooks.example.org/…$"):
        fetcher_for(gone).post(HOOK, {"a": 1})


def test_a_redirected_post_is_not_followed(fetcher_for: Callable[..., Fetcher]) -> None:
    handler, seen = answers(httpx.Response(301, headers={"Location": "https://new.example/h"}))
    with pytest.raises(RejectedPostError, match="not redirected \\(it points to https://new.example/h\\)"):
        fetcher_for(handler).post(HOOK, {"a": 1})
    assert len(seen) == 1


def test_a_post_to_another_scheme_is_refused(fetcher_for: Callable[..., Fetcher]) -> None:
    handler, seen = answers(httpx.Response(200))
    with pytest.raises(RejectedPostError, match="only http"):
        fetcher_for(handler).post("file:///etc/passwd", {"a": 1})
    assert seen == []


def test_a_long_answer_to_a_post_is_cut(fetcher_for: Callable[..., Fetcher]) -> None:
    handler, _ = answers(httpx.Response(200, content=b"x" * (POST_REPLY_BYTES * 3)))
    assert len(fetcher_for(handler).post(HOOK, {"a": 1}).body) == POST_REPLY_BYTES
