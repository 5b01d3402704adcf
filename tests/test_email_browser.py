"""The HTML email in a real browser: readable at 375 px and 1280 px wide, in light and dark mode.

Headless Chromium (Debian's, driven by Playwright) opens the rendered email from a file:// URL;
nothing else may be requested. Each case saves a full-page screenshot in its tmp_path (pytest
keeps the last runs' folders under /tmp/pytest-of-$USER/), to look at by eye.

Without a browser the tests are skipped on a developer's machine, but fail in CI (CI is set):
.ci/run installs chromium, so a missing one there is a broken setup, not a reason to skip.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from digests import LINKS, paper, sample_digest, scored
from freezegun import freeze_time
from helpers import (
    CHROMIUM,
    PNG_SIGNATURE,
    contrast,
    digest,
    luminance,
    outbox,
    playwright_or_skip,
    sample_config,
)

from digest.models import Digest, SourceNote
from digest.render import Renderer

# A URL with no place to break a line (no "/" or "-" after its start): the kind of token that
# pushes an email wider than a phone's screen unless the CSS lets it break anywhere. 243
# characters: five lines at 375 px, yet short enough for the excerpt to keep it whole.
TOKEN_URL = "https://example.org/download?token=" + "0123456789abcdef" * 13

HOSTILE_PAPER = paper(
    "2611.00002",
    "A" * 10_000,  # a 10 kB title with no space in it
    arxiv_id="2611.00002",
    abstract=f"The data is at {TOKEN_URL} for anyone.",
    authors=("B" * 500,),
    categories=("cs." + "X" * 300,),
    code_url=TOKEN_URL,
)


def sample() -> Digest:
    return sample_digest()


def hostile() -> Digest:
    """Unbroken words in every place one can reach: title, excerpt, authors, meta (and a failed
    source whose error holds one, which the warning must not show)."""
    return sample_digest(
        items=(scored(HOSTILE_PAPER, 2.0, keywords=("a" * 300,)), *sample_digest().items),
        sources=(
            SourceNote("biorxiv", "failed", f"{TOKEN_URL}: HTTP 503 Service Unavailable"),
            SourceNote("hf-daily", "ok"),
        ),
    )


DIGESTS = {"sample": sample, "hostile": hostile}
WIDTHS = (375, 1280)  # an iPhone's width, and a desktop's
SCHEMES = ("light", "dark")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One Chromium for the whole module: launching it is most of a case's cost."""
    with playwright_or_skip()() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield launched
        launched.close()


@pytest.fixture
def open_email(browser: Any, tmp_path: Path) -> Iterator[Any]:
    """open_email(digest, width, scheme) -> a page showing that email, offline."""
    contexts = []
    requested: list[str] = []

    def offline(route: Any) -> None:
        # Only the email's own file may load: no remote image, font or tracking pixel.
        if route.request.url.startswith("file://"):
            route.continue_()
        else:
            requested.append(route.request.url)
            route.abort()

    def open_(digest: Digest, width: int, scheme: str) -> Any:
        html = Renderer().email(digest, recipient="reader@example.org", links=LINKS).html
        path = tmp_path / "email.html"
        path.write_text(html, encoding="utf-8")
        context = browser.new_context(viewport={"width": width, "height": 800}, color_scheme=scheme)
        contexts.append(context)
        context.route("**/*", offline)
        page = context.new_page()
        page.goto(path.as_uri())
        return page

    yield open_
    for context in contexts:
        context.close()
    assert not requested, f"the email asked the network for {requested}"


# What the browser computed, read in one round trip. A text's background is that of the
# nearest element that paints one (a paragraph on the sheet has none of its own).
MEASURE = """() => {
  const style = (element) => getComputedStyle(element);
  const background = (element) => {
    while (element && style(element).backgroundColor === 'rgba(0, 0, 0, 0)') {
      element = element.parentElement;
    }
    return element ? style(element).backgroundColor : 'rgb(255, 255, 255)';
  };
  const texts = [...document.querySelectorAll('.sheet *')].filter((element) =>
    [...element.childNodes].some((node) => node.nodeType === 3 && node.textContent.trim()));
  return {
    scrollWidth: document.documentElement.scrollWidth,
    innerWidth: window.innerWidth,
    sheet: style(document.querySelector('.sheet')).backgroundColor,
    excerpts: [...document.querySelectorAll('.excerpt')].map((element) =>
      ({color: style(element).color, fontSize: parseFloat(style(element).fontSize)})),
    texts: texts.map((element) => ({
      what: element.tagName.toLowerCase() + (element.className ? '.' + element.className : ''),
      color: style(element).color,
      background: background(element),
    })),
  };
}"""


FEEDBACK_LINKS = """(links) => links.map((link) => {
  const box = link.getBoundingClientRect();
  return {text: link.textContent, left: box.left, right: box.right, width: box.width,
          decoration: getComputedStyle(link).textDecorationLine};
})"""


# -- the checks -----------------------------------------------------------------------------------

CASES = [
    pytest.param(name, width, scheme, id=f"{name}-{width}px-{scheme}")
    for name in DIGESTS
    for width in WIDTHS
    for scheme in SCHEMES
]


@pytest.mark.parametrize(("name", "width", "scheme"), CASES)
def test_the_email_is_readable_at_phone_and_desktop_width_in_light_and_dark_mode(
    open_email: Any, tmp_path: Path, name: str, width: int, scheme: str
) -> None:
    page = open_email(DIGESTS[name](), width, scheme)
    seen = page.evaluate(MEASURE)
    if name == "hostile":  # the long words really are on the page, not cut away before it
        assert page.locator(".excerpt", has_text=TOKEN_URL).count() == 1
        # A failed source is named in words; its long technical error never reaches a reader.
        assert page.locator(".warning", has_text="biorxiv could not be read today").count() == 1
        assert page.locator(".warning", has_text=TOKEN_URL).count() == 0

    # Nothing is wider than the screen: no sideways scrolling, even for a 10 kB unbroken title.
    assert seen["scrollWidth"] <= seen["innerWidth"] == width

    # The first paper's title is a link the reader can see, inside the screen.
    title = page.locator("a.title").first
    assert title.is_visible()
    box = title.bounding_box()
    assert box is not None and box["width"] > 0 and box["height"] > 0
    assert box["x"] >= 0 and box["x"] + box["width"] <= width

    # Each paper's "More like this" and "Not relevant", and the footer's manage link: there,
    # inside the screen, and underlined (grey alone would not say "link").
    links = page.locator(".feedback a, .footer a").evaluate_all(FEEDBACK_LINKS)
    assert [link["text"] for link in links] == [
        *["More like this", "Not relevant"] * len(DIGESTS[name]().items),
        "RSS", "Atom", "Manage your subscription", "Unsubscribe",
    ]
    for link in links:
        assert link["width"] > 0 and link["left"] >= 0 and link["right"] <= width, link
        assert "underline" in link["decoration"], link

    # Body text is big enough to read on a phone without zooming.
    assert seen["excerpts"], "no excerpt rendered"
    for excerpt in seen["excerpts"]:
        assert excerpt["fontSize"] >= 14

    # The sheet follows the reader's colour scheme, and the excerpt stays readable on it.
    sheet, text = seen["sheet"], seen["excerpts"][0]["color"]
    if scheme == "dark":
        assert luminance(sheet) < 0.05, f"the sheet is not dark in dark mode: {sheet}"
        assert luminance(text) > 0.5, f"the excerpt is not light in dark mode: {text}"
    else:
        assert luminance(sheet) > 0.9, f"the sheet is not light in light mode: {sheet}"
        assert luminance(text) < 0.05, f"the excerpt is not dark in light mode: {text}"
    assert contrast(text, sheet) >= 4.5

    # Not only the excerpt: every piece of text (muted lines, links, reasons, the warning, the
    # footer) meets the same AA minimum against what is behind it.
    faint = {
        f"{t['what']}: {t['color']} on {t['background']} ({contrast(t['color'], t['background']):.2f})"
        for t in seen["texts"]
        if contrast(t["color"], t["background"]) < 4.5
    }
    assert not faint, sorted(faint)

    # A full-page screenshot, to look at; it is exactly the viewport wide (nothing stuck out).
    shot = tmp_path / f"{name}-{width}px-{scheme}.png"
    page.screenshot(path=str(shot), full_page=True)
    data = shot.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 1000
    assert int.from_bytes(data[16:20], "big") == width  # the PNG header's width field


def test_dark_mode_really_differs_from_light_mode(open_email: Any) -> None:
    """Guards the test itself: if color_scheme emulation stopped working, both would be light."""
    light = open_email(sample(), 375, "light").evaluate(MEASURE)["sheet"]
    dark = open_email(sample(), 375, "dark").evaluate(MEASURE)["sheet"]
    assert luminance(light) > 0.9 > 0.05 > luminance(dark)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_title_without_a_link_does_not_look_like_one(open_email: Any, scheme: str) -> None:
    # A paper with no title to search for has no link: its title is a <span>, in the text's colour.
    untitled = scored(paper("2611.00009", " ", arxiv_id=None), 0.5)
    page = open_email(sample_digest(items=(*sample().items, untitled)), 375, scheme)
    link = page.eval_on_selector("a.title", "element => getComputedStyle(element).color")
    plain = page.eval_on_selector("span.title", "element => getComputedStyle(element).color")
    excerpt = page.eval_on_selector(".excerpt", "element => getComputedStyle(element).color")
    assert plain != link and plain == excerpt


@pytest.mark.parametrize("scheme", SCHEMES)
def test_the_quickstarts_first_email_reads_well_on_a_phone(browser: Any, tmp_path: Path, scheme: str) -> None:
    """The README's main command (`digest --config samples/offline.toml run --now`) mails the demo
    digest to the outbox; that email, opened at a phone's width, is what a new user first sees."""
    with freeze_time("2026-11-26 08:00:00", auto_tick_seconds=1):
        result = digest(sample_config(tmp_path), "run", "--now")
    assert result.exit_code == 0 and "10 of 533 new papers" in result.output, result.output
    [first] = outbox(tmp_path, "demo-data/outbox")
    html_part = first.get_body(("html",))
    assert html_part is not None
    path = tmp_path / "first.html"
    path.write_text(str(html_part.get_content()), encoding="utf-8")
    asked: list[str] = []

    def offline(route: Any) -> None:  # the email itself; the sources' thumbnails are refused
        if route.request.url.startswith("file://"):
            route.continue_()
        else:
            asked.append(route.request.url)
            route.abort()

    context = browser.new_context(viewport={"width": 375, "height": 800}, color_scheme=scheme)
    try:
        context.route("**/*", offline)
        page = context.new_page()
        page.goto(path.as_uri())
        seen = page.evaluate(MEASURE)
        assert seen["scrollWidth"] <= seen["innerWidth"] == 375
        assert page.locator("a.title").count() >= 5 and page.locator("a.title").first.is_visible()
        faint = [t for t in seen["texts"] if contrast(t["color"], t["background"]) < 4.5]
        assert not faint, faint
        page.screenshot(path=str(tmp_path / f"first-email-{scheme}.png"), full_page=True)
    finally:
        context.close()
    assert all(url.startswith("https://") for url in asked), asked  # pictures, never http or files
