"""`digest serve` over HTTP: feeds with 304s, one-click unsubscribe (RFC 8058), hostile tokens."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from helpers import write_config
from starlette.testclient import TestClient

from digest.config import load_config
from digest.store import Store
from digest.tokens import load_secrets, unsubscribe_token
from digest.web import create_app

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


@pytest.fixture
def site(tmp_path: Path) -> tuple[TestClient, Path]:
    config = load_config(write_config(tmp_path))
    feeds = config.feeds_dir
    (feeds / "profiles").mkdir(parents=True)
    (feeds / "all.rss").write_bytes(b"<rss version='2.0'><channel><title>t</title></channel></rss>")
    (feeds / "profiles" / "ml.atom").write_bytes(b"<feed xmlns='http://www.w3.org/2005/Atom'/>")
    (feeds / "feeds.opml").write_bytes(b"<opml version='2.0'/>")
    # No `with`: startup/shutdown hooks are not needed, and the client stays usable.
    return TestClient(create_app(config, lambda: NOW)), tmp_path


def test_feeds_are_served_with_types_and_validators_and_304_when_unchanged(
    site: tuple[TestClient, Path],
) -> None:
    client, _ = site
    first = client.get("/feeds/all.rss")
    assert first.status_code == 200
    assert first.headers["content-type"].startswith("application/rss+xml")
    assert client.get("/feeds/profiles/ml.atom").headers["content-type"].startswith(
        "application/atom+xml"
    )
    etag, modified = first.headers["etag"], first.headers["last-modified"]
    assert client.get("/feeds/all.rss", headers={"if-none-match": etag}).status_code == 304
    assert client.get("/feeds/all.rss", headers={"if-modified-since": modified}).status_code == 304
    assert client.get("/feeds/all.rss", headers={"if-none-match": '"other"'}).status_code == 200


def test_a_changed_feed_gets_a_new_etag(site: tuple[TestClient, Path]) -> None:
    client, tmp_path = site
    etag = client.get("/feeds/all.rss").headers["etag"]
    feed = tmp_path / "data" / "feeds" / "all.rss"
    feed.write_bytes(feed.read_bytes() + b"\n")
    again = client.get("/feeds/all.rss", headers={"if-none-match": etag})
    assert again.status_code == 200 and again.headers["etag"] != etag


def test_no_path_escapes_the_feeds_folder(site: tuple[TestClient, Path]) -> None:
    client, _ = site
    for path in ("/feeds/../paperdigest.sqlite3", "/feeds/%2e%2e/secret.key", "/feeds/..%2fsecret.key"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert b"sqlite" not in response.content.lower()


def token(tmp_path: Path, profile: str = "ml", address: str = "a@example.org") -> str:
    return unsubscribe_token(load_secrets(tmp_path / "data"), profile, address)


def unsubscribed(tmp_path: Path, profile: str = "ml", address: str = "a@example.org") -> bool:
    with Store.open(tmp_path / "data" / "paperdigest.sqlite3") as store:
        return store.is_unsubscribed(profile, address)


def test_a_get_shows_a_confirm_button_and_changes_nothing(site: tuple[TestClient, Path]) -> None:
    client, tmp_path = site
    link = f"/unsubscribe/{token(tmp_path)}"
    page = client.get(link)
    assert page.status_code == 200
    assert '<form method="post"' in page.text and "a@example.org" in page.text
    assert not unsubscribed(tmp_path)


def test_rfc8058_one_click_post_unsubscribes_with_200_no_redirect_and_can_repeat(
    site: tuple[TestClient, Path],
) -> None:
    client, tmp_path = site
    link = f"/unsubscribe/{token(tmp_path)}"
    for _ in range(2):  # a mail provider may send it twice: harmless
        response = client.post(
            link,
            content=b"List-Unsubscribe=One-Click",
            headers={"content-type": "application/x-www-form-urlencoded"},
            follow_redirects=False,
        )
        assert response.status_code == 200
        assert "location" not in response.headers
    assert unsubscribed(tmp_path)
    assert not unsubscribed(tmp_path, address="b@example.org")  # scoped to one subscriber


def test_a_tampered_token_gets_400_and_changes_nothing(site: tuple[TestClient, Path]) -> None:
    client, tmp_path = site
    good = token(tmp_path)
    # Not the last character: its low two bits are base64 padding, which decoding ignores.
    flipped = good[:-5] + ("A" if good[-5] != "A" else "B") + good[-4:]
    for bad in (flipped, "x", good + "x", good[:-6]):
        assert client.post(f"/unsubscribe/{bad}").status_code == 400
        assert client.get(f"/unsubscribe/{bad}").status_code == 400
    assert not unsubscribed(tmp_path)


def test_pages_carry_security_headers_and_render_hostile_text_inert(
    site: tuple[TestClient, Path],
) -> None:
    client, tmp_path = site
    link = f"/unsubscribe/{token(tmp_path, address='<script>alert(1)</script>@example.org')}"
    page = client.get(link)
    assert "<script>alert(1)" not in page.text and "&lt;script&gt;" in page.text
    headers = page.headers
    assert "default-src 'none'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "same-origin"  # a token URL never leaks to another site
    assert client.get("/feeds/all.rss").headers["x-content-type-options"] == "nosniff"


def test_each_request_is_logged_once_without_its_token(
    site: tuple[TestClient, Path], caplog: pytest.LogCaptureFixture
) -> None:
    client, tmp_path = site
    secret = token(tmp_path)
    with caplog.at_level("INFO", logger="digest.access"):
        client.get(f"/unsubscribe/{secret}")
        client.get("/feeds/profiles/web-0123456789abcdef.atom")
        client.get("/")
    lines = [r.getMessage() for r in caplog.records if r.name == "digest.access"]
    assert len(lines) == 3
    assert "GET /unsubscribe/… 200" in lines[0] and secret not in "\n".join(lines)
    assert "GET /feeds/profiles/….atom 404" in lines[1] and "0123456789abcdef" not in lines[1]
    assert "GET / 200" in lines[2] and lines[2].endswith(" ms")


def test_a_405_names_the_methods_the_address_takes(site: tuple[TestClient, Path]) -> None:
    client, _ = site
    answer = client.put("/subscribe")
    assert answer.status_code == 405
    assert answer.headers["allow"] == "GET, HEAD, POST"


def test_the_feeds_address_lists_the_public_feeds_and_not_the_private_ones(
    site: tuple[TestClient, Path],
) -> None:
    client, tmp_path = site
    feeds = tmp_path / "data" / "feeds"
    (feeds / "profiles").mkdir(parents=True, exist_ok=True)
    for name in ("all.atom", "all.rss", "feeds.opml", "profiles/ml.atom", "profiles/web-0123abcd.atom"):
        (feeds / name).write_text("<feed/>", encoding="utf-8")
    page = client.get("/feeds/")
    assert page.status_code == 200
    for name in ("all.atom", "all.rss", "feeds.opml", "profiles/ml.atom"):
        assert f'href="https://digest.example.org/feeds/{name}"' in page.text
    assert "web-0123abcd" not in page.text  # a web subscriber's feed address is private


def test_the_unsubscribed_page_leads_back_to_this_reader_s_manage_page(
    site: tuple[TestClient, Path],
) -> None:
    from bs4 import BeautifulSoup

    from digest.tokens import read_manage_token

    client, tmp_path = site
    page = client.post(
        f"/unsubscribe/{token(tmp_path)}",
        content=b"List-Unsubscribe=One-Click",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    anchor = BeautifulSoup(page.text, "html.parser").find("a", string="Subscribe again")
    assert anchor is not None
    manage = str(anchor["href"]).rsplit("/manage/", 1)[1]
    keys = load_secrets(tmp_path / "data")
    assert read_manage_token(keys, manage) == ("ml", "a@example.org")
    again = client.get(f"/manage/{manage}")
    assert again.status_code == 200 and "Subscribe again" in again.text
