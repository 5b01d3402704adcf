"""digest.feedfiles: feed files with validators, 304s by RFC 9110, and nothing outside the folder."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

import anyio
import pytest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.routing import Mount
from starlette.testclient import TestClient
from starlette.types import Message
from test_run import write_config

from digest.config import load_config
from digest.feedfiles import FeedFiles
from digest.feeds import write_atomic
from digest.web import create_app

MODIFIED = datetime(2026, 11, 20, 7, 30, 15, tzinfo=UTC)
RSS = b"<rss version='2.0'><channel><title>all</title></channel></rss>\n"
ATOM = b"<feed xmlns='http://www.w3.org/2005/Atom'><title>ml</title></feed>\n"
OPML = b"<opml version='2.0'/>\n"


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
