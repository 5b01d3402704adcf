"""digest.feedfiles: feed files with validators, 304s by RFC 9110, gzip for clients that take it,
and nothing outside the folder."""

from __future__ import annotations

import gzip
import os
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import anyio
import feedparser
import pytest
from helpers import write_config
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.routing import Mount
from starlette.testclient import TestClient
from starlette.types import Message

from digest import feedfiles
from digest.config import load_config
from digest.feedfiles import FeedFiles
from digest.feeds import write_atomic
from digest.web import create_app

MODIFIED = datetime(2026, 11, 20, 7, 30, 15, tzinfo=UTC)
RSS = b"<rss version='2.0'><channel><title>all</title></channel></rss>\n"
ATOM = b"<feed xmlns='http://www.w3.org/2005/Atom'><title>ml</title></feed>\n"
OPML = b"<opml version='2.0'/>\n"
# A feed of the usual kind, tens of items, which gzip makes several times smaller. (The ones above
# are so small that gzip would not make them smaller: they are always sent plain.)
PAPERS = (
    "<?xml version='1.0' encoding='utf-8'?>\n<rss version='2.0'><channel><title>papers</title>"
    "<link>https://digest.example.org/feeds/</link><description>New papers</description>"
    + "".join(
        f"<item><title>Paper {n}: sparse attention for long-context language models</title>"
        f"<link>https://arxiv.org/abs/2611.{n:05d}</link><guid>arXiv:2611.{n:05d}</guid>"
        f"<description>We study paper {n}&#x27;s method on long documents.</description></item>"
        for n in range(40)
    )
    + "</channel></rss>\n"
).encode()


def put(path: Path, data: bytes, when: datetime = MODIFIED) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    stamp = int(when.timestamp()) * 10**9
    os.utime(path, ns=(stamp, stamp))
    return path


@pytest.fixture
def feeds_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "feeds"
    put(folder / "all.rss", RSS)
    put(folder / "profiles" / "ml.atom", ATOM)
    put(folder / "feeds.opml", OPML)
    put(folder / "papers.rss", PAPERS)
    return folder


def client_for(folder: Path, memory: int | None = None) -> TestClient:
    files = FeedFiles(folder) if memory is None else FeedFiles(folder, memory=memory)
    return TestClient(Starlette(routes=[Mount("/feeds", app=files)]))


@pytest.fixture
def client(feeds_dir: Path) -> TestClient:
    return client_for(feeds_dir)


def test_a_feed_comes_whole_with_its_type_and_validators(client: TestClient) -> None:
    response = client.get("/feeds/all.rss")
    assert response.status_code == 200
    assert response.content == RSS
    assert response.headers["content-type"] == "application/rss+xml"
    assert response.headers["content-length"] == str(len(RSS))
    assert response.headers["etag"].startswith('"') and response.headers["etag"].endswith('"')
    assert response.headers["last-modified"] == format_datetime(MODIFIED, usegmt=True)
    assert response.headers["cache-control"] == "public, max-age=300"


def test_each_kind_of_file_has_its_content_type(client: TestClient) -> None:
    assert client.get("/feeds/profiles/ml.atom").headers["content-type"] == "application/atom+xml"
    assert client.get("/feeds/feeds.opml").headers["content-type"] == "text/x-opml; charset=utf-8"
    assert client.get("/feeds/profiles/ml.atom").content == ATOM


@pytest.mark.parametrize(
    "if_none_match",
    ["{etag}", "W/{etag}", '"other", {etag}', '"a",W/{etag} , "b"', "*", " * "],
)
def test_if_none_match_with_the_etag_a_weak_one_a_list_or_star_gets_304(
    client: TestClient, if_none_match: str
) -> None:
    etag = client.get("/feeds/all.rss").headers["etag"]
    response = client.get("/feeds/all.rss", headers={"if-none-match": if_none_match.format(etag=etag)})
    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["etag"] == etag
    assert response.headers["cache-control"] == "public, max-age=300"
    assert "content-length" not in response.headers or response.headers["content-length"] == "0"


@pytest.mark.parametrize("if_none_match", ['"other"', 'W/"other", "x"', "", "garbage"])
def test_if_none_match_with_other_tags_gets_the_feed(client: TestClient, if_none_match: str) -> None:
    response = client.get("/feeds/all.rss", headers={"if-none-match": if_none_match})
    assert response.status_code == 200 and response.content == RSS


def test_if_modified_since_gets_304_unless_the_file_is_newer(client: TestClient) -> None:
    modified = client.get("/feeds/all.rss").headers["last-modified"]
    later = format_datetime(datetime(2026, 11, 21, tzinfo=UTC), usegmt=True)
    earlier = format_datetime(datetime(2026, 11, 20, 7, 30, 14, tzinfo=UTC), usegmt=True)
    for since, status in ((modified, 304), (later, 304), (earlier, 200), ("not a date", 200)):
        response = client.get("/feeds/all.rss", headers={"if-modified-since": since})
        assert response.status_code == status, since
    # Other HTTP-date forms (RFC 850, asctime) are dates too.
    assert client.get(
        "/feeds/all.rss", headers={"if-modified-since": "Friday, 20-Nov-26 07:30:15 GMT"}
    ).status_code == 304
    assert client.get(
        "/feeds/all.rss", headers={"if-modified-since": "Fri Nov 20 07:30:15 2026"}
    ).status_code == 304


def test_if_none_match_takes_precedence_over_if_modified_since(client: TestClient) -> None:
    first = client.get("/feeds/all.rss")
    etag, modified = first.headers["etag"], first.headers["last-modified"]
    stale = client.get(
        "/feeds/all.rss", headers={"if-none-match": '"other"', "if-modified-since": modified}
    )
    assert stale.status_code == 200
    early = format_datetime(datetime(2000, 1, 1, tzinfo=UTC), usegmt=True)
    fresh = client.get("/feeds/all.rss", headers={"if-none-match": etag, "if-modified-since": early})
    assert fresh.status_code == 304


def test_a_changed_file_gets_a_new_etag_and_a_200(feeds_dir: Path, client: TestClient) -> None:
    feed = feeds_dir / "all.rss"
    etag = client.get("/feeds/all.rss").headers["etag"]
    put(feed, RSS.replace(b"all", b"new"), datetime(2026, 11, 21, tzinfo=UTC))
    again = client.get("/feeds/all.rss", headers={"if-none-match": etag})
    assert again.status_code == 200
    assert again.content == RSS.replace(b"all", b"new")
    assert again.headers["etag"] != etag
    assert again.headers["last-modified"] == "Sat, 21 Nov 2026 00:00:00 GMT"
    assert client.get(
        "/feeds/all.rss", headers={"if-none-match": again.headers["etag"]}
    ).status_code == 304


def test_a_replaced_file_of_the_same_size_and_mtime_still_gets_a_new_etag(
    feeds_dir: Path, client: TestClient
) -> None:
    feed = feeds_dir / "all.rss"
    before = feed.stat()
    etag = client.get("/feeds/all.rss").headers["etag"]
    # As `digest run` publishes: a new file renamed over the old one (a new inode).
    write_atomic(feed, RSS.replace(b"all", b"one"))
    os.utime(feed, ns=(before.st_atime_ns, before.st_mtime_ns))
    again = client.get("/feeds/all.rss", headers={"if-none-match": etag})
    assert again.status_code == 200 and again.content == RSS.replace(b"all", b"one")


def test_head_has_the_headers_of_a_get_and_no_body(client: TestClient) -> None:
    get = client.get("/feeds/profiles/ml.atom")
    head = client.head("/feeds/profiles/ml.atom")
    assert head.status_code == 200 and head.content == b""
    for name in ("content-type", "content-length", "etag", "last-modified", "cache-control"):
        assert head.headers[name] == get.headers[name]
    conditional = client.head("/feeds/profiles/ml.atom", headers={"if-none-match": get.headers["etag"]})
    assert conditional.status_code == 304


def test_other_methods_get_405(client: TestClient) -> None:
    response = client.post("/feeds/all.rss")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"


@pytest.mark.parametrize(
    "path",
    [
        "/feeds/missing.rss",
        "/feeds/profiles/missing.atom",
        "/feeds/profiles",  # a folder: no listing
        "/feeds/profiles/",
        "/feeds/",
        "/feeds/notes.txt",  # not a feed
        "/feeds/.all.rss.tmp1234",  # a temp file of write_atomic
        "/feeds/.draft.rss",  # hidden
        "/feeds/../secret.rss",
        "/feeds/%2e%2e/secret.rss",
        "/feeds/..%2fsecret.rss",
        "/feeds/profiles/..%2f..%2fsecret.rss",
        "/feeds/%2e/all.rss",
        "/feeds//all.rss",
        "/feeds/%2f" + "tmp/secret.rss",  # an absolute path after the mount point
        "/feeds/all.rss%00.txt",
        "/feeds/profiles%5c..%5c..%5csecret.rss",
        "/feeds/outside.rss",  # a symlink out of the folder
    ],
)
def test_nothing_but_the_feed_files_is_served(feeds_dir: Path, path: str) -> None:
    secret = put(feeds_dir.parent / "secret.rss", b"<secret/>")
    (feeds_dir / "outside.rss").symlink_to(secret)
    put(feeds_dir / "notes.txt", b"notes")
    put(feeds_dir / ".all.rss.tmp1234", b"<half")
    put(feeds_dir / ".draft.rss", b"<half")
    response = client_for(feeds_dir).get(path)
    assert response.status_code == 404, path
    assert b"secret" not in response.content and b"half" not in response.content


@pytest.mark.parametrize(
    "path",
    ["/feeds/../secret.rss", "/feeds/profiles/../../secret.rss", "/feeds/./all.rss",
     "/feeds/{secret}", "/feeds/all.rss\x00.rss", "/feeds/..\\secret.rss"],
)
def test_unnormalised_paths_reaching_the_app_are_refused(feeds_dir: Path, path: str) -> None:
    # What a client library would tidy up before sending, given to the app as a server could.
    secret = put(feeds_dir.parent / "secret.rss", b"<secret/>")
    path = path.format(secret=secret)  # an absolute path after the mount point
    scope = {"type": "http", "method": "GET", "path": path, "root_path": "/feeds", "headers": []}

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        raise AssertionError(f"answered {message}")

    with pytest.raises(HTTPException) as refused:
        anyio.run(FeedFiles(feeds_dir), scope, receive, send)
    assert refused.value.status_code == 404


def test_a_symlink_inside_the_folder_is_served(feeds_dir: Path, client: TestClient) -> None:
    (feeds_dir / "latest.atom").symlink_to(feeds_dir / "profiles" / "ml.atom")
    assert client.get("/feeds/latest.atom").content == ATOM


def test_a_deleted_file_is_404(feeds_dir: Path, client: TestClient) -> None:
    assert client.get("/feeds/all.rss").status_code == 200
    (feeds_dir / "all.rss").unlink()
    assert client.get("/feeds/all.rss").status_code == 404


def test_files_past_the_memory_budget_are_read_again(feeds_dir: Path) -> None:
    big = put(feeds_dir / "big.atom", b"<feed>" + b"x" * 5000 + b"</feed>")
    client = client_for(feeds_dir, memory=len(RSS) + 10)
    for _ in range(2):  # the second round is served with the first round's validators
        assert client.get("/feeds/big.atom").content == big.read_bytes()
        assert client.get("/feeds/all.rss").content == RSS
        assert client.get("/feeds/profiles/ml.atom").content == ATOM


def test_the_web_app_serves_feeds_with_security_headers_and_its_404_page(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path))
    put(config.feeds_dir / "all.rss", RSS)
    client = TestClient(create_app(config, lambda: MODIFIED))
    etag = client.get("/feeds/all.rss").headers["etag"]
    not_modified = client.get("/feeds/all.rss", headers={"if-none-match": etag})
    assert not_modified.status_code == 304
    assert not_modified.headers["x-content-type-options"] == "nosniff"
    assert "default-src 'none'" in not_modified.headers["content-security-policy"]
    missing = client.get("/feeds/missing.rss")
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("text/html")


# -- gzip ------------------------------------------------------------------------------------------


def fetch(
    client: TestClient, path: str, headers: dict[str, str] | None = None, method: str = "GET"
) -> tuple[Any, bytes]:
    """The response (httpx's, or httpx2's in newer Starlette) and its bytes as sent: the
    response's content would be decoded from gzip."""
    with client.stream(method, path, headers=headers) as response:
        return response, b"".join(response.iter_raw())


@pytest.fixture
def bare_client(feeds_dir: Path) -> TestClient:
    """A client that sends no Accept-Encoding at all (httpx sends "gzip, deflate" by default)."""
    client = client_for(feeds_dir)
    del client.headers["accept-encoding"]
    return client


def test_a_client_that_accepts_gzip_gets_the_feed_gzipped(client: TestClient) -> None:
    response, sent = fetch(client, "/feeds/papers.rss", {"accept-encoding": "gzip"})
    assert response.status_code == 200
    assert response.headers["content-encoding"] == "gzip"
    assert gzip.decompress(sent) == PAPERS
    assert response.headers["content-length"] == str(len(sent))
    assert len(sent) < len(PAPERS) / 4
    assert response.headers.get_list("vary") == ["Accept-Encoding"]
    assert response.headers["content-type"] == "application/rss+xml"
    assert response.headers["last-modified"] == format_datetime(MODIFIED, usegmt=True)
    assert response.headers["cache-control"] == "public, max-age=300"


def test_a_gzipped_feed_parses_back_to_its_items(client: TestClient) -> None:
    _, sent = fetch(client, "/feeds/papers.rss", {"accept-encoding": "gzip"})
    parsed = feedparser.parse(gzip.decompress(sent))
    assert not parsed.bozo
    assert len(parsed.entries) == 40
    assert parsed.entries[7].title == "Paper 7: sparse attention for long-context language models"
    assert parsed.entries[7].link == "https://arxiv.org/abs/2611.00007"


@pytest.mark.parametrize(
    ("accept_encoding", "gzipped"),
    [
        ("gzip", True),
        ("GZip", True),
        ("gzip, deflate, br, zstd", True),  # what browsers send
        ("deflate;q=1.0, gzip;q=0.8", True),
        (" gzip ; Q=0.001 ", True),
        ("x-gzip", True),  # an alias of gzip
        ("*", True),
        ("br, *;q=0.5", True),
        ("gzip, identity;q=0.5", True),
        ("gzip;q=0.5, identity;q=0.5", True),  # a tie: the fewer bytes
        ("identity;q=0, gzip", True),
        ("gzip;q=0", False),
        ("gzip;q=0.000", False),
        ("GZIP;Q=0", False),
        ("gzip;q=0, *", False),  # gzip's own entry decides, not `*`
        ("*, gzip;q=0", False),
        ("gzip;q=0, x-gzip;q=0", False),
        ("*;q=0", False),
        ("*;q=0, identity", False),
        ("identity", False),
        ("deflate, br", False),
        ("", False),  # no coding wanted
        ("gzip;q=0.5, identity", False),  # the client prefers the plain bytes
        ("gzip;q=1.5", False),  # not a qvalue: the entry is left out
        ("gzip;q=high", False),
    ],
)
def test_gzip_is_sent_only_when_accept_encoding_takes_it(
    client: TestClient, accept_encoding: str, gzipped: bool
) -> None:
    response, sent = fetch(client, "/feeds/papers.rss", {"accept-encoding": accept_encoding})
    assert response.status_code == 200
    assert ("content-encoding" in response.headers) is gzipped
    assert (gzip.decompress(sent) if gzipped else sent) == PAPERS
    assert response.headers["content-length"] == str(len(sent))
    assert response.headers.get_list("vary") == ["Accept-Encoding"]


def test_a_client_sending_no_accept_encoding_gets_the_plain_feed(bare_client: TestClient) -> None:
    response, sent = fetch(bare_client, "/feeds/papers.rss")
    assert response.status_code == 200
    assert "content-encoding" not in response.headers
    assert sent == PAPERS and response.headers["content-length"] == str(len(PAPERS))
    assert response.headers.get_list("vary") == ["Accept-Encoding"]


def test_a_file_gzip_would_not_make_smaller_is_sent_plain_with_vary(client: TestClient) -> None:
    response, sent = fetch(client, "/feeds/feeds.opml", {"accept-encoding": "gzip"})
    assert "content-encoding" not in response.headers
    assert sent == OPML and response.headers["content-length"] == str(len(OPML))
    assert response.headers.get_list("vary") == ["Accept-Encoding"]


def test_the_gzipped_feed_has_its_own_strong_etag(client: TestClient) -> None:
    plain = fetch(client, "/feeds/papers.rss", {"accept-encoding": "identity"})[0].headers["etag"]
    gzipped = fetch(client, "/feeds/papers.rss", {"accept-encoding": "gzip"})[0].headers["etag"]
    assert plain != gzipped
    assert plain.startswith('"') and gzipped.startswith('"')  # strong, not W/
    assert gzipped == plain[:-1] + '-gzip"'


def etags(client: TestClient) -> dict[str, str]:
    return {
        "plain": fetch(client, "/feeds/papers.rss", {"accept-encoding": "identity"})[0].headers["etag"],
        "gzip": fetch(client, "/feeds/papers.rss", {"accept-encoding": "gzip"})[0].headers["etag"],
    }


@pytest.mark.parametrize(
    ("if_none_match", "accept_encoding", "sent_etag"),
    [
        ("{plain}", None, "plain"),
        ("{plain}", "identity", "plain"),
        ("{gzip}", "gzip", "gzip"),
        ("W/{gzip}", "gzip", "gzip"),
        ('"other", {gzip}', "gzip, deflate", "gzip"),
        # The client holds the plain feed and now takes gzip: its copy is this version, and
        # acceptable to it, so it keeps it (the 304 names the copy it holds).
        ("{plain}", "gzip", "plain"),
        # It holds the gzipped feed and now refuses gzip: the content is this version, but the
        # 304 names the representation a 200 would have carried.
        ("{gzip}", None, "plain"),
        ("{gzip}", "gzip;q=0", "plain"),
        # It holds the plain feed and now refuses it: the 304 names the gzipped one.
        ("{plain}", "gzip, identity;q=0", "gzip"),
        # A cache holding both: the one this request selects.
        ("{plain}, {gzip}", "gzip", "gzip"),
        ("{gzip}, {plain}", "identity", "plain"),
        ("*", "gzip", "gzip"),
        ("*", None, "plain"),
    ],
)
def test_either_etag_of_the_current_version_gets_304(
    feeds_dir: Path, if_none_match: str, accept_encoding: str | None, sent_etag: str
) -> None:
    client = client_for(feeds_dir)
    tags = etags(client)
    headers = {"if-none-match": if_none_match.format(**tags)}
    if accept_encoding is None:
        del client.headers["accept-encoding"]
    else:
        headers["accept-encoding"] = accept_encoding
    for method in ("GET", "HEAD"):
        response, sent = fetch(client, "/feeds/papers.rss", headers, method)
        assert response.status_code == 304, method
        assert sent == b""
        assert response.headers["etag"] == tags[sent_etag]
        assert response.headers.get_list("vary") == ["Accept-Encoding"]
        assert response.headers["cache-control"] == "public, max-age=300"
        assert "content-encoding" not in response.headers


def test_if_modified_since_gets_304_with_the_etag_of_the_selected_coding(client: TestClient) -> None:
    tags = etags(client)
    modified = format_datetime(MODIFIED, usegmt=True)
    for accept_encoding, sent_etag in (("gzip", "gzip"), ("identity", "plain")):
        response = client.get(
            "/feeds/papers.rss",
            headers={"if-modified-since": modified, "accept-encoding": accept_encoding},
        )
        assert response.status_code == 304
        assert response.headers["etag"] == tags[sent_etag]
        assert response.headers.get_list("vary") == ["Accept-Encoding"]


def test_a_changed_file_gets_a_200_whichever_etag_the_client_holds(
    feeds_dir: Path, client: TestClient
) -> None:
    old = etags(client)
    changed = PAPERS.replace(b"sparse", b"dense")
    put(feeds_dir / "papers.rss", changed, datetime(2026, 11, 21, tzinfo=UTC))
    for held in old.values():
        response, sent = fetch(
            client, "/feeds/papers.rss", {"if-none-match": held, "accept-encoding": "gzip"}
        )
        assert response.status_code == 200
        assert gzip.decompress(sent) == changed
        assert response.headers["etag"] not in old.values()


@pytest.mark.parametrize("accept_encoding", ["gzip", "identity"])
def test_head_has_the_headers_of_a_get_in_either_coding(
    client: TestClient, accept_encoding: str
) -> None:
    headers = {"accept-encoding": accept_encoding}
    get, sent = fetch(client, "/feeds/papers.rss", headers)
    head, nothing = fetch(client, "/feeds/papers.rss", headers, "HEAD")
    assert head.status_code == 200 and nothing == b""
    assert head.headers.multi_items() == get.headers.multi_items()
    assert head.headers["content-length"] == str(len(sent))
    assert ("content-encoding" in head.headers) is (accept_encoding == "gzip")


@pytest.fixture
def compressions(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sizes of the files digest.feedfiles compresses, one per compression."""
    made: list[int] = []
    compress = feedfiles._gzip

    def counted(body: bytes) -> bytes:
        made.append(len(body))
        return compress(body)

    monkeypatch.setattr(feedfiles, "_gzip", counted)
    return made


def test_a_version_is_compressed_once_not_per_request(
    feeds_dir: Path, client: TestClient, compressions: list[int]
) -> None:
    for _ in range(5):
        _, sent = fetch(client, "/feeds/papers.rss", {"accept-encoding": "gzip"})
        assert gzip.decompress(sent) == PAPERS
    assert compressions == [len(PAPERS)]
    changed = PAPERS.replace(b"sparse", b"dense")
    put(feeds_dir / "papers.rss", changed, datetime(2026, 11, 21, tzinfo=UTC))
    for _ in range(3):
        assert gzip.decompress(fetch(client, "/feeds/papers.rss")[1]) == changed
    assert compressions == [len(PAPERS), len(changed)]


def test_readers_asking_at_once_for_a_new_version_share_one_compression(
    feeds_dir: Path, compressions: list[int]
) -> None:
    files = FeedFiles(feeds_dir)
    answers: list[tuple[int, bytes]] = []

    async def get() -> None:
        scope = {"type": "http", "method": "GET", "path": "/papers.rss", "root_path": "",
                 "headers": [(b"accept-encoding", b"gzip")]}
        status = 0

        async def receive() -> Message:
            return {"type": "http.request", "body": b""}

        async def send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            else:
                answers.append((status, message["body"]))

        await files(scope, receive, send)

    async def readers() -> None:
        async with anyio.create_task_group() as group:
            for _ in range(8):
                group.start_soon(get)

    anyio.run(readers)
    assert [(status, gzip.decompress(body)) for status, body in answers] == [(200, PAPERS)] * 8
    assert compressions == [len(PAPERS)]


def test_past_the_memory_budget_gzip_is_made_again_only_for_gzip(
    feeds_dir: Path, compressions: list[int]
) -> None:
    client = client_for(feeds_dir, memory=len(PAPERS) // 20)  # no room for the feed, even gzipped
    for _ in range(2):
        response, sent = fetch(client, "/feeds/papers.rss", {"accept-encoding": "gzip"})
        assert gzip.decompress(sent) == PAPERS
        assert response.headers["content-length"] == str(len(sent))
    assert len(compressions) == 2
    for _ in range(2):
        response, sent = fetch(client, "/feeds/papers.rss", {"accept-encoding": "identity"})
        assert sent == PAPERS and response.headers["content-length"] == str(len(PAPERS))
    assert len(compressions) == 2  # the plain feed is read again, not compressed


def test_the_web_app_sends_gzipped_feeds_with_one_vary(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path))
    put(config.feeds_dir / "papers.rss", PAPERS)
    client = TestClient(create_app(config, lambda: MODIFIED))
    response, sent = fetch(client, "/feeds/papers.rss", {"accept-encoding": "gzip"})
    assert response.headers["content-encoding"] == "gzip" and gzip.decompress(sent) == PAPERS
    assert response.headers.get_list("vary") == ["Accept-Encoding"]
    not_modified = client.get(
        "/feeds/papers.rss",
        headers={"if-none-match": response.headers["etag"], "accept-encoding": "gzip"},
    )
    assert not_modified.status_code == 304
    assert not_modified.headers.get_list("vary") == ["Accept-Encoding"]
