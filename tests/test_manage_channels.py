"""A web subscriber chooses on the manage page how the digest reaches them: by email and in their
feed (the default), or in the feed only, where no digest mail is made or sent and the page shows
the feed's addresses first.

The app runs on a real store and mails into the real Maildir outbox; the clock is the test's.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import feedparser
import pytest
from bs4 import BeautifulSoup
from freezegun import freeze_time
from helpers import digest, outbox, text_of, write_config
from starlette.testclient import TestClient

from digest import subscriptions
from digest.config import Config, load_config
from digest.models import Interests, Subscriber
from digest.pipeline import preview
from digest.store import Store
from digest.store.subscribers import _interests_from_json
from digest.web import create_app

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
TUESDAY = NOW + timedelta(days=1)  # 10:00 in Berlin: the 07:30 slot has passed
BASE = "https://digest.example.org"
ADDRESS = "new@example.org"
INTERESTS = {
    "keywords": "language model\nagents, reinforcement learning",
    "authors": "Ada Lovelace",
    "categories": "cs.CL",
    "examples": "",
    "frequency": "daily",
    "weekday": "monday",
    "timezone": "Europe/Berlin",
    "deliver_at": "07:30",
}
FEED_ONLY_HINT = "Add this address to your feed reader"


class Site:
    """The app on a fresh data folder, with a clock the test moves."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.config_path = write_config(tmp_path)
        self.config: Config = load_config(self.config_path)
        self.now = NOW
        self.client = TestClient(create_app(self.config, lambda: self.now), base_url=BASE)

    def settle(self) -> None:
        assert self.client.app.state.site.signups.wait_idle(timeout=10)  # type: ignore[attr-defined]

    def store(self) -> Store:
        self.settle()
        return Store.open(self.config.store_path)

    def subscriber(self) -> Subscriber:
        with self.store() as store:
            found = store.subscriber_by_address(ADDRESS)
        assert found is not None
        return found

    def submit(self, path: str, data: dict[str, str], *, form_page: str | None = None):  # type: ignore[no-untyped-def]
        """GET the page with the form (for its CSRF token and cookie), then POST it."""
        page = self.client.get(form_page or path)
        field = BeautifulSoup(page.text, "html.parser").find("input", attrs={"name": "csrf"})
        assert field is not None, page.text
        return self.client.post(path, data={"csrf": str(field["value"]), **data})

    def digest_mails(self) -> list[str]:
        """The texts of the digests mailed to ADDRESS (not its confirmation)."""
        self.settle()
        return [text for text in (text_of(m) for m in outbox(self.tmp_path) if m["To"] == ADDRESS)
                if "/confirm/" not in text]

    def run(self, when: datetime) -> None:
        """`digest run --no-fetch` at `when`: compose what is due, write the feeds, send mail."""
        self.settle()
        with freeze_time(when):
            result = digest(self.config_path, "run", "--no-fetch")
        assert result.exit_code == 0, result.output

    def feed_entries(self) -> int:
        profile = self.subscriber().profile
        answer = self.client.get(f"/feeds/profiles/{profile}.atom")
        assert answer.status_code == 200
        parsed = feedparser.parse(answer.content)
        assert not parsed.bozo
        return len(parsed.entries)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    made = Site(tmp_path)
    yield made
    made.client.app.state.site.close()  # type: ignore[attr-defined]


def confirmed(site: Site) -> str:
    """Subscribe ADDRESS and confirm it; its manage link."""
    assert site.submit("/subscribe", {"email": ADDRESS, **INTERESTS}, form_page="/").status_code == 200
    site.settle()
    [mail] = [text_of(m) for m in outbox(site.tmp_path) if m["To"] == ADDRESS]
    [link] = re.findall(rf"{re.escape(BASE)}(/confirm/\S+)", mail)
    page = site.submit(link, {})
    anchor = BeautifulSoup(page.text, "html.parser").find("a", string="Manage your subscription")
    assert anchor is not None
    return str(anchor["href"])


def ingest(site: Site) -> None:
    """Read the captured sources an hour after the subscription was confirmed (a digest covers
    what was first seen since then)."""
    with freeze_time(NOW + timedelta(hours=1)):
        digest(site.config_path, "ingest")


def switch(site: Site, manage: str, channels: str):  # type: ignore[no-untyped-def]
    return site.submit(manage, {"action": "save", **INTERESTS, "channels": channels})


def chosen(page_text: str) -> list[str]:
    soup = BeautifulSoup(page_text, "html.parser")
    return [str(radio["value"]) for radio in soup.select("input[name=channels][checked]")]


def test_a_new_subscription_is_email_and_feed_and_the_choice_is_labelled_in_a_fieldset(
    site: Site,
) -> None:
    manage = confirmed(site)
    assert site.subscriber().interests.email is True
    page = site.client.get(manage)
    soup = BeautifulSoup(page.text, "html.parser")
    radios = soup.select("input[type=radio][name=channels]")
    assert sorted(str(r["value"]) for r in radios) == ["email", "feed"]
    for radio in radios:
        label = soup.find("label", attrs={"for": radio["id"]})
        assert label is not None and label.get_text(strip=True), radio
        fieldset = radio.find_parent("fieldset")
        assert fieldset is not None and fieldset.legend is not None
        assert fieldset.legend.get_text(strip=True) == "How the digest reaches you"
        assert radio.find_parent("form").find("input", attrs={"name": "action"})["value"] == "save"  # type: ignore[union-attr,index]
    assert chosen(page.text) == ["email"]
    assert FEED_ONLY_HINT not in page.text
    assert "<script" not in page.text and " style=" not in page.text  # nothing the CSP would refuse


def test_switching_to_feed_only_is_stored_and_the_page_shows_the_feed_addresses_first(
    site: Site,
) -> None:
    manage = confirmed(site)
    saved = switch(site, manage, "feed")
    assert saved.status_code == 200 and "No more emails" in saved.text
    subscriber = site.subscriber()
    assert subscriber.interests.email is False
    assert subscriber.interests.keywords == ("language model", "agents", "reinforcement learning")
    with site.store() as store:
        [web] = [p for p in subscriptions.with_subscribers(site.config, store).profiles
                 if p.name == subscriber.profile]
    assert web.emails == ()

    page = site.client.get(manage)
    assert chosen(page.text) == ["feed"]  # the stored choice, written back into the form
    soup = BeautifulSoup(page.text, "html.parser")
    assert "feed only" in soup.select_one("p.lede strong").get_text()  # type: ignore[union-attr]
    feeds = [code.get_text() for code in soup.select("code.feed")]
    assert feeds == [f"{BASE}/feeds/profiles/{subscriber.profile}.atom",
                     f"{BASE}/feeds/profiles/{subscriber.profile}.rss"]
    assert FEED_ONLY_HINT in page.text
    # Prominent: the feed comes before the interests form.
    headings = [h.get_text() for h in soup.find_all("h2")]
    assert headings.index("Your feed") < headings.index("Your interests")


def test_a_feed_only_subscriber_gets_the_feed_entry_and_no_email_and_switching_back_restores_it(
    site: Site,
) -> None:
    manage = confirmed(site)
    ingest(site)
    switch(site, manage, "feed")
    site.run(TUESDAY)
    assert site.digest_mails() == []
    profile = site.subscriber().profile
    with site.store() as store:
        rows = store.deliveries(profile=profile)
        [made] = store.digests(profile, limit=1)
    assert [(row.channel, row.status) for row in rows] == [("feed", "sent")]  # no mail row made
    assert made.items and site.feed_entries() == len(made.items)  # the feed got the digest

    assert "by email again" in switch(site, manage, "email").text
    assert site.subscriber().interests.email is True
    site.now = TUESDAY + timedelta(days=1)
    site.run(site.now)
    [mail] = site.digest_mails()  # Wednesday's (nothing new that day: it says so)
    assert "Manage your subscription: " in mail
    with site.store() as store:
        channels = {row.channel for row in store.deliveries(profile=profile, day=site.now.date())}
    assert channels == {"feed", f"mail:{ADDRESS}"}


def test_a_digest_mail_made_before_switching_to_feed_only_is_not_sent(site: Site) -> None:
    manage = confirmed(site)
    ingest(site)
    with site.store() as store:  # composed while the subscription still had email
        config = subscriptions.with_subscribers(site.config, store)
        [web] = [p for p in config.profiles if p.name.startswith("web-")]
        made = preview(config, store, web, lambda: TUESDAY)
        assert made.items
        # Its ledger rows, as a run composing it then would make them (one per address, and feed).
        store.save_digest(made, [f"mail:{address}" for address in web.emails] + ["feed"], TUESDAY)
        assert {r.channel for r in store.deliveries(profile=web.name, statuses=["pending"])} == {
            f"mail:{ADDRESS}", "feed"}
    switch(site, manage, "feed")
    site.run(TUESDAY)
    assert site.digest_mails() == []
    with site.store() as store:
        [row] = [r for r in store.deliveries(profile=web.name) if r.kind == "mail"]
    assert row.status == "skipped"
    assert site.feed_entries() > 0


def test_an_unknown_choice_is_the_form_s_one_line_error_and_nothing_is_saved(site: Site) -> None:
    manage = confirmed(site)
    switch(site, manage, "feed")
    wrong = switch(site, manage, "fax")
    assert wrong.status_code == 400 and "Nothing was saved" in wrong.text
    soup = BeautifulSoup(wrong.text, "html.parser")
    problems = soup.select("#problems li a")
    assert [(a["href"], a.get_text()) for a in problems] == [
        ("#channels", "Choose email and feed, or feed only.")]
    assert soup.find(id="channels") is not None  # the link leads to the first choice
    assert soup.select_one("#channels-error").get_text() == "Choose email and feed, or feed only."  # type: ignore[union-attr]
    for radio in soup.select("input[name=channels]"):
        assert radio.get("aria-invalid") == "true"
        assert "channels-error" in str(radio.get("aria-describedby"))
    assert chosen(wrong.text) == ["feed"]  # the stored choice, not a silent switch back to email
    assert site.subscriber().interests.email is False
    # An empty field (an old form, the subscribe form) is the default, not a mistake.
    assert site.submit(manage, {"action": "save", **INTERESTS}).status_code == 200
    assert site.subscriber().interests.email is True


def test_the_form_reads_and_writes_the_choice_and_old_rows_without_it_mean_email() -> None:
    form = {**INTERESTS, "channels": "feed"}
    checked = subscriptions.read_form(form, with_address=False)
    assert checked.errors == {} and checked.interests is not None
    assert checked.interests.email is False
    assert subscriptions.form_values(checked.interests)["channels"] == "feed"
    # The subscribe form has no choice: email and feed.
    plain = subscriptions.read_form({**INTERESTS, "email": ADDRESS}, with_address=True)
    assert plain.interests is not None and plain.interests.email is True
    assert subscriptions.form_values(plain.interests)["channels"] == "email"
    bad = subscriptions.read_form({**INTERESTS, "channels": "pigeon"}, with_address=False)
    assert bad.interests is None and list(bad.errors) == ["channels"]
    # A subscription stored before the choice existed has no "email" key: it keeps its mail.
    assert _interests_from_json('{"keywords": ["x"], "frequency": "daily"}') == Interests(keywords=("x",))
    subscriber = Subscriber("web-00", ADDRESS, Interests(keywords=("x",), email=False), "active", NOW, NOW)
    assert subscriptions.to_profile(subscriber).emails == ()
    assert subscriptions.to_profile(
        Subscriber("web-00", ADDRESS, Interests(keywords=("x",)), "active", NOW, NOW)).emails == (ADDRESS,)
