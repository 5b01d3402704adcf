"""The whole web journey in a real headless Chromium, against `digest serve`'s app on loopback.

Subscribe (the browser's time zone preselected), confirm from the mail in the outbox, edit
interests, import a library file, receive a digest, mark a paper "not relevant" from the email's
link, unsubscribe with one click and undo it, open the feeds' page, and `digest preview` the web
subscriber's email. Every
page is checked at 375 px and 1280 px wide (no horizontal overflow; a screenshot of each is saved
in tmp_path), its text contrast is measured, and every form control must have a label. The
browser may ask nothing of any host but the app's (an email's thumbnails aside).

Skipped without a browser on a developer's machine; in CI (CI is set) a missing one fails.
"""

from __future__ import annotations

import email
import email.policy
import mailbox
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from bs4 import BeautifulSoup
from freezegun import freeze_time
from helpers import (
    CHROMIUM,
    PNG_SIGNATURE,
    contrast,
    digest,
    free_port,
    playwright_or_skip,
    write_config,
)

from digest.channels.mail import Outbox
from digest.compose import one_line
from digest.config import Config, load_config
from digest.pipeline import run_cycle
from digest.store import Store
from digest.web import create_app, server

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
WIDTHS = (375, 1280)
LIBRARY = Path(__file__).parent / "fixtures" / "library" / "zotero_export_synthetic.bib"

# The page's measurements, in one round trip: overflow, unlabelled controls, and each text's
# colour against the nearest painted background.
MEASURE = """() => {
  const style = (element) => getComputedStyle(element);
  const background = (element) => {
    while (element && style(element).backgroundColor === 'rgba(0, 0, 0, 0)') {
      element = element.parentElement;
    }
    return element ? style(element).backgroundColor : 'rgb(255, 255, 255)';
  };
  const controls = [...document.querySelectorAll('input, select, textarea')]
    .filter((control) => control.type !== 'hidden');
  const texts = [...document.querySelectorAll('main *')].filter((element) =>
    [...element.childNodes].some((node) => node.nodeType === 3 && node.textContent.trim()));
  return {
    scrollWidth: document.documentElement.scrollWidth,
    innerWidth: window.innerWidth,
    unlabelled: controls.filter((control) => control.labels.length === 0).map((c) => c.name),
    texts: texts.map((element) => ({
      what: element.tagName.toLowerCase() + (element.className ? '.' + element.className : ''),
      color: style(element).color,
      background: background(element),
    })),
  };
}"""


class Journey:
    """The app served by uvicorn in a thread, its data folder, and a clock the test moves."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.config_path = write_config(tmp_path, base_url=self.base)
        self.config: Config = load_config(self.config_path)
        self.now = NOW
        self.app = create_app(self.config, lambda: self.now)
        # As `digest serve` runs it (with its deadlines on slow requests).
        self.server = uvicorn.Server(server.server_config(self.app, "127.0.0.1", self.port, "127.0.0.1"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.pages: list[str] = []

    def __enter__(self) -> Journey:
        self.thread.start()
        for _ in range(500):
            if self.server.started:
                return self
            time.sleep(0.01)
        raise RuntimeError("the app did not start")

    def __exit__(self, *exc_info: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def mails_to(self, address: str) -> list[email.message.EmailMessage]:
        assert self.app.state.site.signups.wait_idle(timeout=10)  # sign-up mails go off the request
        box = mailbox.Maildir(self.config.outbox_dir, create=False)
        found = [
            email.message_from_bytes(box.get_bytes(key), policy=email.policy.default)
            for key in box.iterkeys()
        ]
        return [m for m in found if m["To"] == address]  # type: ignore[misc]

    def check(self, page: Any, name: str) -> None:
        """The page at both widths: no overflow, labelled controls, readable text, a screenshot."""
        self.pages.append(name)
        for width in WIDTHS:
            page.set_viewport_size({"width": width, "height": 900})
            seen = page.evaluate(MEASURE)
            assert seen["scrollWidth"] <= seen["innerWidth"], f"{name} overflows at {width}px"
            assert not seen["unlabelled"], f"{name}: controls without a label {seen['unlabelled']}"
            for text in seen["texts"]:
                ratio = contrast(text["color"], text["background"])
                assert ratio >= 4.5, f"{name}: {text['what']} has contrast {ratio:.2f}"
            shot = self.tmp_path / f"{len(self.pages):02d}-{name}-{width}px.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.read_bytes().startswith(PNG_SIGNATURE)
        page.set_viewport_size({"width": 1280, "height": 900})


@pytest.fixture
def browser_page(tmp_path: Path) -> Iterator[tuple[Any, list[str]]]:
    sync_playwright = playwright_or_skip()
    elsewhere: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        # A reader in India: the subscribe form should preselect their time zone.
        context = browser.new_context(viewport={"width": 1280, "height": 900}, timezone_id="Asia/Kolkata")

        def loopback_only(route: Any) -> None:
            if route.request.url.startswith("http://127.0.0.1:"):
                route.continue_()
            else:
                elsewhere.append(route.request.url)
                route.abort()

        context.route("**/*", loopback_only)
        yield context.new_page(), elsewhere
        browser.close()


def test_subscribe_confirm_edit_receive_mark_and_unsubscribe_in_a_browser(
    tmp_path: Path, browser_page: tuple[Any, list[str]]
) -> None:
    page, elsewhere = browser_page
    journey = Journey(tmp_path)
    with freeze_time(NOW):  # papers first seen on Monday morning, for Tuesday's digest
        digest(journey.config_path, "ingest")
    with journey:
        # Subscribe, with the keyboard for the last step.
        page.goto(journey.base + "/")
        journey.check(page, "subscribe")
        # The browser's zone is preselected (Chromium calls it "Asia/Calcutta"), the one script
        # allowed by the page's CSP.
        assert page.get_by_label("Time zone").input_value() == "Asia/Kolkata"
        page.get_by_label("Email address").fill("reader@example.org")
        page.get_by_label("Keywords and phrases").fill("zymurgy")
        page.get_by_label("Time zone").select_option("Europe/Berlin")
        page.get_by_label("Time", exact=True).fill("07:30")
        page.get_by_role("button", name="Subscribe").focus()
        with page.expect_navigation():
            page.keyboard.press("Enter")
        assert page.get_by_role("heading", name="Check your inbox").is_visible(), page.content()[-3000:]
        journey.check(page, "check-inbox")

        # A mistake is shown beside its field.
        page.goto(journey.base + "/")
        page.get_by_label("Email address").fill("not an address")
        page.get_by_label("Keywords and phrases").fill("x")
        page.get_by_role("button", name="Subscribe").click()
        assert page.locator("#email-error").is_visible()
        journey.check(page, "subscribe-mistake")

        # Confirm from the mail in the outbox.
        [confirmation] = journey.mails_to("reader@example.org")
        link = next(
            word for word in confirmation.get_body(("plain",)).get_content().split()  # type: ignore[union-attr]
            if "/confirm/" in word
        )
        page.goto(link)
        journey.check(page, "confirm")
        page.get_by_role("button", name="Confirm").click()
        assert page.get_by_role("heading", name="You are subscribed").is_visible()
        journey.check(page, "confirmed")

        # Edit interests on the manage page.
        page.get_by_role("link", name="Manage your subscription").click()
        journey.check(page, "manage")
        page.get_by_label("Keywords and phrases").fill("language model\nagent")
        page.get_by_role("button", name="Save changes").click()
        assert page.get_by_text("Saved.").is_visible()
        with Store.open(journey.config.store_path) as store:
            subscriber = store.subscriber_by_address("reader@example.org")
        assert subscriber is not None and subscriber.interests.keywords == ("language model", "agent")

        # Import a Zotero export as papers liked: the page reports it, skipped entries listed.
        page.get_by_label("Your library (optional)").set_input_files(str(LIBRARY))
        page.get_by_role("button", name="Save changes").click()
        assert page.get_by_text("Imported 6 papers from zotero_export_synthetic.bib").is_visible()
        assert page.locator("ul.skipped li").count() == 2
        assert page.get_by_text("Your library: 6 papers imported").is_visible()
        journey.check(page, "manage-imported")
        with Store.open(journey.config.store_path) as store:
            assert len(store.library([subscriber.profile])[subscriber.profile]) == 6

        # The next morning's run mails the digest.
        with Store.open(journey.config.store_path) as store, Outbox(journey.config.outbox_dir) as box:
            run_cycle(journey.config, store, lambda: NOW + timedelta(days=1), box)
        [letter] = [m for m in journey.mails_to("reader@example.org") if "/confirm/" not in str(m)]
        html = letter.get_body(("html",)).get_content()  # type: ignore[union-attr]
        soup = BeautifulSoup(html, "html.parser")
        first_title = soup.select_one(".title").get_text(strip=True)  # type: ignore[union-attr]
        not_relevant = soup.find("a", string="Not relevant")
        assert not_relevant is not None, "every item needs a 'Not relevant' link"

        # "Not relevant" from the email: a page asks, the button records it.
        page.goto(str(not_relevant["href"]))
        journey.check(page, "feedback")
        page.get_by_role("button", name="Mark as not relevant").click()
        assert page.get_by_role("heading", name="Thanks, noted").is_visible()
        journey.check(page, "feedback-noted")
        with Store.open(journey.config.store_path) as store:
            marks = store.feedback([subscriber.profile])[subscriber.profile].less
            assert [one_line(store.paper(key).title) for key in marks] == [first_title]  # type: ignore[union-attr]

        # One-click unsubscribe from the header's https link.
        https_link = next(
            part.strip(" <>") for part in str(letter["List-Unsubscribe"]).split(",")
            if "/unsubscribe/" in part
        )
        page.goto(https_link)
        journey.check(page, "unsubscribe")
        page.get_by_role("button", name="Unsubscribe").click()
        assert page.get_by_role("heading", name="You are unsubscribed").is_visible()
        journey.check(page, "unsubscribed")
        with Store.open(journey.config.store_path) as store:
            assert store.is_unsubscribed(subscriber.profile, "reader@example.org")

        # Changed their mind: the unsubscribed page leads to the manage page, which undoes it.
        page.get_by_role("link", name="Subscribe again").click()
        journey.check(page, "manage-unsubscribed")
        page.get_by_role("button", name="Subscribe again").click()
        assert page.get_by_text("You are subscribed again.").is_visible()
        with Store.open(journey.config.store_path) as store:
            assert not store.is_unsubscribed(subscriber.profile, "reader@example.org")

        # The feeds' own page, where every feed's channel link points: it lists the public feeds.
        page.goto(journey.base + "/feeds/")
        journey.check(page, "feeds")
        page.get_by_role("link", name="all.atom").click()
        assert "<feed" in page.content() or page.url.endswith("/feeds/all.atom")

        assert not elsewhere, f"the pages asked other hosts for {elsewhere}"

        # `digest preview` knows a web subscriber: its email, opened in the browser. An email
        # may show the sources' thumbnails (https only); the test's browser refuses to load them.
        preview = tmp_path / "preview.html"
        with freeze_time(NOW + timedelta(days=1)):  # the morning of the digest it received
            made = digest(journey.config_path, "preview", subscriber.profile, "-o", str(preview))
        assert made.exit_code == 0, made.output
        page.goto("about:blank")
        page.set_content(preview.read_text(encoding="utf-8"))
        assert page.locator(".title").count() >= 1
        journey.check(page, "preview")
        assert all(url.startswith("https://") and url.endswith(".png") for url in elsewhere), elsewhere
    assert len(list(tmp_path.glob("*.png"))) == 2 * len(journey.pages) == 28
