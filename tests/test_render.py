"""The email: compose's shared words, the templates, the MIME message, and hostile input."""

from __future__ import annotations

import binascii
import email
import email.policy
import re
from dataclasses import replace
from datetime import date
from pathlib import Path

import lxml.html
import pytest
from digests import (
    COMPOSED,
    DIFFUSION,
    FEEDBACK,
    HOSTILE,
    KEYS,
    LINKS,
    POLICY,
    SITE,
    assert_golden,
    feedback_of,
    paper,
    readable,
    sample_digest,
    scored,
)
from helpers import write_config

from digest import compose
from digest.config import load_config
from digest.errors import ConfigError
from digest.models import SourceNote
from digest.render import (
    EmailLinks,
    FeedbackLinks,
    LinkShortener,
    Renderer,
    build_message,
    message_id,
)
from digest.text import safe_url
from digest.tokens import read_feedback_token, read_manage_token

SENDER = "paperdigest <digest@example.org>"


def mail(digest=None, recipient: str = "reader@example.org", links: EmailLinks = LINKS) -> bytes:  # type: ignore[no-untyped-def]
    digest = digest or sample_digest()
    rendered = Renderer().email(digest, recipient=recipient, links=links)
    return build_message(
        rendered,
        sender=SENDER,
        recipient=recipient,
        message_id=message_id(digest, recipient, SENDER),
        date=digest.until,
        list_id="paperdigest me <me.paperdigest.digest.example.org>",
        links=links,
    ).data


def parsed(data: bytes) -> email.message.EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)
    return message


def html_of(data: bytes) -> str:
    body = parsed(data).get_body(("html",))
    assert body is not None
    return str(body.get_content())


def text_of(data: bytes) -> str:
    body = parsed(data).get_body(("plain",))
    assert body is not None
    return str(body.get_content())


# -- the whole message ----------------------------------------------------------------------------


def test_a_whole_email_matches_the_golden_file() -> None:
    # Nothing in it is volatile (Date is when the digest was composed, the boundary comes from the
    # Message-ID); the headers that would be are normalised anyway, as rss2email does.
    text = readable(mail())
    text = re.sub(r"(?m)^(Date|Message-ID): .*$", r"\1: <normalised>", text)
    assert_golden("email.txt", text)


def test_the_message_is_multipart_alternative_text_first_html_last_with_list_headers() -> None:
    message = parsed(mail())
    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    assert message["Subject"] == "3 new papers for you · Nov 23 (diffusion model, reinforcement learning)"
    assert message["From"] == SENDER and message["To"] == "reader@example.org"
    assert message["Date"] == "Mon, 23 Nov 2026 07:00:00 +0000"
    assert message["Message-ID"] == message_id(sample_digest(), "reader@example.org", SENDER)
    assert message["List-Id"] == "paperdigest me <me.paperdigest.digest.example.org>"
    unsubscribe = message["List-Unsubscribe"]
    assert "<mailto:unsubscribe@example.org?subject=unsubscribe%20me>" in unsubscribe
    assert "<https://digest.example.org/unsubscribe/TOKEN>" in unsubscribe
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert not message.defects


def test_message_ids_differ_per_recipient_and_day_and_repeat_for_the_same_digest() -> None:
    digest = sample_digest()
    one = message_id(digest, "a@example.org", SENDER)
    assert one == message_id(digest, "A@example.org", SENDER)
    assert one != message_id(digest, "b@example.org", SENDER)
    assert one != message_id(replace(digest, day=digest.day.replace(day=24)), "a@example.org", SENDER)
    assert mail(digest, "a@example.org") == mail(digest, "a@example.org")  # byte-identical re-send


def test_the_html_part_encodes_each_card_once_and_reads_back_as_if_encoded_whole() -> None:
    # The cards, the same for every reader, are quoted-printable once a run; the pieces are joined
    # by soft line breaks, which a mail client removes.
    rendered = Renderer().email(sample_digest(), recipient="r@example.org", links=LINKS)
    assert "".join(rendered.html_parts) == rendered.html and len(rendered.html_parts) == 7
    options = {
        "sender": SENDER, "recipient": "r@example.org", "message_id": "<m@example.org>",
        "date": sample_digest().until, "list_id": "<l.example.org>", "links": LINKS,
    }
    pieces = build_message(rendered, **options).data
    whole = build_message(replace(rendered, html_parts=()), **options).data
    assert pieces != whole and html_of(pieces) == html_of(whole)
    assert text_of(pieces) == text_of(whole)
    html_body = pieces.partition(b"Content-Type: text/html")[2]
    assert max(len(line) for line in html_body.split(b"\r\n")) <= 76


def test_the_text_part_encodes_each_papers_block_once_and_reads_back_as_if_encoded_whole() -> None:
    renderer = Renderer()
    rendered = renderer.email(sample_digest(), recipient="r@example.org", links=LINKS)
    items = len(sample_digest().items)
    assert "".join(rendered.text_parts) == rendered.text and len(rendered.text_parts) == 4 * items + 1
    # The shared halves are the very objects every reader's email holds.
    other = renderer.email(sample_digest(), recipient="s@example.org", links=LINKS)
    assert all(a is b for a, b in zip(rendered.text_parts[1::2], other.text_parts[1::2], strict=True))
    options = {
        "sender": SENDER, "recipient": "r@example.org", "message_id": "<m@example.org>",
        "date": sample_digest().until, "list_id": "<l.example.org>", "links": LINKS,
    }
    pieces = build_message(rendered, **options).data
    whole = build_message(replace(rendered, text_parts=()), **options).data
    assert pieces != whole and text_of(pieces) == text_of(whole)
    text_body = pieces.partition(b"Content-Type: text/plain")[2].partition(b"--=_paperdigest")[0]
    assert max(len(line) for line in text_body.split(b"\r\n")) <= 76


def test_an_item_mark_in_the_readers_own_words_makes_the_text_whole_not_wrong() -> None:
    # The text is first rendered with a mark per item; a recipient holding one cannot move items.
    recipient = "r\x00item0\x00@example.org"
    rendered = Renderer().email(sample_digest(), recipient=recipient, links=LINKS)
    assert rendered.text_parts == ()
    assert rendered.text.count("1. ") == 1 and recipient in rendered.text


@pytest.mark.parametrize(
    "parts",
    [
        ("a" * 75, "b" * 80, "=" * 40),  # full last lines, with and without an escape at the end
        ("x \t", "é" * 30 + " ", "\n.\n", "end"),  # trailing white space, a lone dot
        ("line\n", "card\n", "\nafter"),  # pieces that end and start with a line end
        ("", "only a card", ""),
    ],
)
def test_quoted_printable_in_pieces_reads_back_as_the_whole(parts: tuple[str, ...]) -> None:
    from digest.render import _quoted_printable, _quoted_printable_parts

    encoded = _quoted_printable_parts(parts)
    assert binascii.a2b_qp(encoded) == binascii.a2b_qp(_quoted_printable("".join(parts)))
    assert b"\n" not in encoded.replace(b"\r\n", b"")
    assert max(len(line) for line in encoded.split(b"\r\n")) <= 76


def test_the_html_has_its_css_inlined_and_keeps_only_the_media_queries() -> None:
    html = html_of(mail())
    tree = lxml.html.fromstring(html)
    title = tree.xpath("//a[@class='title']")[0]
    assert "font-size: 18px" in title.get("style")
    styles = tree.xpath("//style")
    assert len(styles) == 1 and "prefers-color-scheme: dark" in styles[0].text
    assert 'name="viewport"' in html  # readable at 375 px: the sheet is fluid up to 640 px
    assert "max-width: 640px" in tree.xpath("//div[@class='sheet']")[0].get("style")


def test_each_paper_shows_its_link_authors_categories_excerpt_reasons_and_links() -> None:
    tree = lxml.html.fromstring(html_of(mail()))
    first = tree.xpath("//div[@class='item']")[0]
    assert first.xpath(".//a[@class='title']/@href") == ["https://arxiv.org/abs/2611.01234"]
    authors = first.xpath(".//p[@class='authors']")[0].text_content()
    assert authors == "Jane Doe, Ana Lima, Wei Zhang and 3 others"
    assert first.xpath(".//p[@class='meta']")[0].text_content() == "arXiv:2611.01234 · cs.LG · cs.CV · 42 upvotes"
    assert first.xpath(".//p[@class='excerpt']")[0].text_content() == (
        "We propose consistency diffusion models. They sample in one step. Experiments on "
        "ImageNet show a 10x speed-up at equal FID."
    )
    why = first.xpath(".//p[@class='why']")[0].text_content()
    assert why == 'Why: matches "diffusion model"; by Jane Doe; in cs.LG; 42 upvotes'
    links = {a.text_content(): a.get("href") for a in first.xpath(".//p[@class='links']/a")}
    assert links == {
        "PDF": "https://arxiv.org/pdf/2611.01234",
        "Code": "https://github.com/example/cdm",
        "Discussion": "https://huggingface.co/papers/2611.01234",
    }
    second = tree.xpath("//div[@class='item']")[1]
    # The source's AI summary is preferred to the abstract.
    assert "Implicit policies make offline RL stable" in second.text_content()
    third = tree.xpath("//div[@class='item']")[2]
    # Known only by its title: it links to arXiv's search for that title, never to nowhere.
    assert third.xpath(".//a[@class='title']/@href") == [
        "https://arxiv.org/search/?query=A+Survey+of+Everything&searchtype=title"
    ]
    assert third.xpath(".//p[@class='authors']")[0].text_content() == "12 authors"


# -- the reader's own links: feedback on each paper, the manage page -------------------------------


def test_each_paper_has_more_like_this_and_not_relevant_links_for_this_profile_and_paper() -> None:
    digest = sample_digest()
    items = lxml.html.fromstring(html_of(mail(digest))).xpath("//div[@class='item']")
    assert len(items) == len(digest.items) == 3
    for element, item in zip(items, digest.items, strict=True):
        links = element.xpath(".//p[@class='feedback']/a")
        assert [a.text_content() for a in links] == ["More like this", "Not relevant"]
        assert [feedback_of(a.get("href")) for a in links] == [
            ("me", item.paper.key, "more"),
            ("me", item.paper.key, "less"),
        ]


def test_the_text_part_has_the_same_feedback_links_under_each_paper() -> None:
    digest = sample_digest()
    body = text_of(mail(digest)).replace("\r\n", "\n").split("\n-- \n")[0]  # not the footer
    blocks = re.split(r"(?m)^\d+\. ", body)[1:]
    # Short links (78 columns): one code for the digest, a mark and the paper's position after
    # it; digest.web.links makes the HTML part's link of the same mark from them.
    marks = LinkShortener(SITE, tuple(KEYS)).feedback("me", digest.day)
    assert re.fullmatch(rf"{re.escape(SITE)}/l/[A-Za-z0-9_-]{{12}}\.", marks)
    for position, (block, item) in enumerate(zip(blocks, digest.items, strict=True), 1):
        more = re.findall(r"(?m)^   More like this: (\S+)$", block)
        less = re.findall(r"(?m)^   Not relevant: (\S+)$", block)
        assert more + less == [f"{marks}m{position}", f"{marks}l{position}"]
        assert [feedback_of(url) for url in FEEDBACK.urls(item.paper.key)] == [
            ("me", item.paper.key, "more"),
            ("me", item.paper.key, "less"),
        ]


def test_the_text_part_keeps_to_78_columns_for_a_web_subscriber_on_a_failed_day() -> None:
    """A terminal mail reader shows 78 columns: long titles, the day's line, a failed source's
    notice, the footer and every action link (short links) fit. The longest profile name (a web
    subscriber's) and many sources are the worst case."""
    profile = "web-0123456789abcdef"
    base = "https://papers.digest.example.org"
    links = replace(
        LINKS,
        feed_rss=f"{base}/feeds/profiles/{profile}.rss",
        feed_atom=f"{base}/feeds/profiles/{profile}.atom",
        unsubscribe=f"{base}/unsubscribe/{'x' * 90}",
        manage=f"{base}/manage/{'y' * 90}",
        feedback=FeedbackLinks(profile, base, tuple(KEYS)),
        shorten=LinkShortener(base, tuple(KEYS)),
    )
    long_title = paper("2611.07777", "Towards " + "very long and carefully hyphenated-title words " * 4,
                       arxiv_id="2611.07777")
    sources = tuple(SourceNote(f"arxiv-source-number-{n}", "ok") for n in range(8))
    digest = sample_digest(profile=profile, items=(*sample_digest().items, scored(long_title, 1.0)),
                           sources=(*sources, SourceNote("biorxiv", "failed", "[Errno -2] DNS")))
    rendered = Renderer().email(digest, recipient="someone.with.a.long.name@example.org", links=links)
    lines = rendered.text.splitlines()
    too_long = [line for line in lines if len(line) > 78]
    assert too_long == [], too_long
    assert sum(f"{base}/l/" in line for line in lines) == 2 * len(digest.items) + 2
    assert "biorxiv could not be read today" in rendered.text
    assert "very long and carefully hyphenated-title" in rendered.text.replace("\n   ", " ")


def short(url: str, profile: str = "me") -> str:
    """The short link a text part gives for one of our links, in an email of `profile`."""
    return LinkShortener(SITE, tuple(KEYS))(url, group=profile)


def test_the_footer_links_to_the_readers_manage_page_beside_unsubscribe() -> None:
    data = mail()
    footer = lxml.html.fromstring(html_of(data)).xpath("//div[@class='footer']")[0]
    links = {a.text_content(): a.get("href") for a in footer.xpath(".//a")}
    assert links["Unsubscribe"] == f"{SITE}/unsubscribe/TOKEN"
    manage = links["Manage your subscription"]
    assert read_manage_token(KEYS, manage.removeprefix(f"{SITE}/manage/")) == (
        "me",
        "reader@example.org",
    )
    text = text_of(data).replace("\r\n", "\n")
    assert (f"\nManage your subscription: {short(manage)}\nUnsubscribe: {short(f'{SITE}/unsubscribe/TOKEN')}\n"
            in text)


def test_without_feedback_or_manage_links_the_email_shows_neither() -> None:
    data = mail(links=replace(LINKS, manage=None, feedback=None))
    html, text = html_of(data), text_of(data)
    assert not lxml.html.fromstring(html).xpath("//p[@class='feedback'] | //a[contains(@href, '/manage/')]")
    for body in (html, text):
        assert "More like this" not in body and "Not relevant" not in body
        assert "Manage your subscription" not in body and "Unsubscribe" in body


def count_card_renders(renderer: Renderer) -> list[object]:
    """Makes the renderer note each paper card it renders; the list grows by one per render."""
    renders: list[object] = []
    original = renderer._paper.render

    def counting(**fields: object) -> str:
        renders.append(fields)
        return original(**fields)

    renderer._paper.render = counting  # type: ignore[method-assign]
    return renders


def test_one_profiles_feedback_links_never_reach_another_profiles_email_or_feed() -> None:
    # Two profiles with the very same items (the same objects): the cached cards are shared, the
    # feedback links are each profile's own, whatever the order of rendering.
    renderer = Renderer()
    cards = count_card_renders(renderer)
    mine = sample_digest()
    theirs = replace(mine, profile="them")
    for digest in (mine, theirs, mine, theirs):
        feedback = FeedbackLinks(digest.profile, SITE, tuple(KEYS))
        links = replace(LINKS, feedback=feedback)
        html = renderer.email(digest, recipient="r@example.org", links=links).html
        hrefs = lxml.html.fromstring(html).xpath("//p[@class='feedback']/a/@href")
        assert len(hrefs) == 6 and {feedback_of(h)[0] for h in hrefs} == {digest.profile}
        for position, item in enumerate(digest.items, 1):
            feed_item = lxml.html.fragment_fromstring(
                renderer.item_html(item, position, feedback), create_parent="div"
            )
            marks = [feedback_of(h) for h in feed_item.xpath(".//p[@class='feedback']/a/@href")]
            assert marks == [
                (digest.profile, item.paper.key, "more"),
                (digest.profile, item.paper.key, "less"),
            ]
            assert 'class="feedback"' not in renderer.item_html(item, position)  # no profile
    assert len(cards) == 3  # one card per paper, shared by both profiles


def test_the_header_says_how_many_papers_were_scanned_from_which_sources_for_which_day() -> None:
    text = text_of(mail())
    assert "Monday, Nov 23 · chosen from 314 new papers from arxiv-lg, hf-daily" in text


def test_counts_are_said_with_their_plural_only_when_they_have_one() -> None:
    one_upvote = replace(DIFFUSION, upvotes=1)
    digest = sample_digest(
        scanned=1,
        sources=(SourceNote("arxiv-lg", "ok"),),
        items=(scored(one_upvote, 3.0, keywords=("diffusion model",), upvotes=1),),
    )
    text = text_of(mail(digest))
    assert "1 new paper for you" in text and "chosen from 1 new paper from arxiv-lg" in text
    assert "1 upvote" in text and "1 upvotes" not in text
    nothing = text_of(mail(sample_digest(scanned=0, items=())))
    assert "no new papers from" in nothing and "chosen from 0" not in nothing


# -- empty and broken days ------------------------------------------------------------------------


def test_an_empty_day_says_so_briefly() -> None:
    digest = sample_digest(items=())
    message = parsed(mail(digest))
    assert message["Subject"] == "No new papers for you · Nov 23"
    assert "None of today's 314 new papers scored above your threshold." in text_of(mail(digest))


def test_a_quiet_day_without_listings_is_not_blamed_on_the_threshold() -> None:
    text = text_of(mail(sample_digest(items=(), scanned=0)))
    assert "No new papers were listed in this period" in text


def test_a_failed_source_is_named_and_nothing_new_is_never_claimed() -> None:
    digest = sample_digest(
        items=(),
        scanned=0,
        sources=(
            SourceNote("arxiv-lg", "failed", "https://rss.arxiv.org/atom/cs.LG: HTTP 503"),
            SourceNote("hf-daily", "ok"),
        ),
    )
    for body in (text_of(mail(digest)), html_of(mail(digest))):
        assert "arxiv-lg could not be read today." in body
        # The technical error is for `digest status` and `digest history`, not for readers.
        assert "HTTP 503" not in body and "rss.arxiv.org" not in body
        assert "No new papers were listed" not in body
        assert "not a quiet day" in body
    assert "from hf-daily" in text_of(mail(digest))  # the header names only the sources read


def test_a_digest_covering_several_days_says_which() -> None:
    digest = sample_digest(since=COMPOSED.replace(day=20))
    assert compose.day_label(digest) == "Nov 20 – Nov 23"


# -- hostile input --------------------------------------------------------------------------------

def test_hostile_text_never_becomes_markup_a_header_or_a_crash() -> None:
    item = scored(HOSTILE, 5.0, keywords=("<i>x</i>\r\nSubject: spam",))
    digest = sample_digest(items=(item,))
    data = mail(digest)
    message = parsed(data)
    assert [name for name, _ in message.items()] == [
        "From", "To", "Subject", "Date", "Message-ID", "List-Id", "List-Unsubscribe",
        "List-Unsubscribe-Post", "Auto-Submitted", "MIME-Version", "Content-Type",
    ]
    assert "\n" not in message["Subject"] and "\r" not in message["Subject"]
    tree = lxml.html.fromstring(html_of(data))
    assert not tree.xpath("//script | //img | //b | //i")
    assert not tree.xpath("//*[@onerror]")
    hrefs = tree.xpath("//a/@href")
    assert all(h.startswith(("https://", "mailto:")) for h in hrefs), hrefs
    assert "https://evil.example/" not in hrefs  # a URL with a line break in it is dropped
    html = html_of(data)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "\x00" not in html and "\u202e" not in html
    text = text_of(data)
    assert "Bcc: victim@example.org" in text  # shown as the title's text, on the title's line
    assert not re.search(r"(?m)^Bcc:", text)


def test_a_hostile_paper_key_or_base_url_stays_inside_its_link() -> None:
    key = '"><script>alert(1)</script><a href="javascript:x">'
    item = scored(paper(key, "<b>bold</b>"), 1.0, keywords=("x",))
    base = "https://digest.example.org/a&b=c"  # an ampersand: escaped in the attribute
    links = replace(LINKS, feedback=FeedbackLinks("me", base, tuple(KEYS)))
    data = mail(sample_digest(items=(item,)), links=links)
    tree = lxml.html.fromstring(html_of(data))
    assert not tree.xpath("//script | //b | //a[starts-with(@href, 'javascript')]")
    hrefs = tree.xpath("//p[@class='feedback']/a/@href")
    assert len(hrefs) == 2 and all(h.startswith(f"{base}/feedback/") for h in hrefs)
    tokens = [h.removeprefix(f"{base}/feedback/") for h in hrefs]
    # The key travels inside the signed token only: URL-safe base64, whatever the key holds.
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+", token) for token in tokens)
    assert [read_feedback_token(KEYS, t) for t in tokens] == [("me", key, "more"), ("me", key, "less")]


@pytest.mark.parametrize(
    "base",
    ["javascript:alert(1)", "file:///etc", "//digest.example.org", "", 'https://digest.example.org/"<d>'],
)
def test_feedback_links_are_only_ever_made_on_an_http_base(base: str) -> None:
    with pytest.raises(ValueError, match="http"):
        FeedbackLinks("me", base, tuple(KEYS))


def test_the_signing_keys_are_never_printed() -> None:
    assert KEYS[0] not in repr(FEEDBACK) and KEYS[0] not in repr(LINKS)


def test_a_ten_kilobyte_title_is_rendered_whole_and_the_subject_stays_short() -> None:
    long_title = "Very " * 2000
    item = scored(paper("2611.00001", long_title, arxiv_id="2611.00001"), 1.0, keywords=("very",))
    data = mail(sample_digest(items=(item,)))
    assert len(parsed(data)["Subject"]) < 100
    assert "Very Very" in html_of(data)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://arxiv.org/abs/1", "https://arxiv.org/abs/1"),
        ("http://example.org/x?a=1&b=2", "http://example.org/x?a=1&b=2"),
        ("javascript:alert(1)", None),
        ("JaVaScRiPt:alert(1)", None),
        ("data:text/html,hi", None),
        ("//evil.example/x", None),
        ("https://ok.example/\nX: y", None),
        ("https:///nohost", None),
        ("", None),
        (None, None),
    ],
)
def test_only_plain_http_links_are_kept(url: str | None, expected: str | None) -> None:
    assert safe_url(url) == expected


# -- the shared words -----------------------------------------------------------------------------


def test_an_excerpt_is_two_or_three_sentences_and_never_over_the_limit() -> None:
    assert compose.excerpt(DIFFUSION).count(".") == 3
    assert compose.excerpt(POLICY) == POLICY.ai_summary
    rambling = paper("1", "t", abstract="Word " * 400 + ".")
    cut = compose.excerpt(rambling)
    assert len(cut) <= compose.EXCERPT_CHARS and cut.endswith("…")


def test_authors_are_shortened_but_pinned_authors_stay_named() -> None:
    reasons = scored(DIFFUSION, 1.0, authors=("Ravi Patel",)).reasons
    assert compose.author_line(DIFFUSION, reasons) == (
        "Jane Doe, Ana Lima, Wei Zhang, Ravi Patel and 2 others"
    )
    assert compose.author_line(POLICY) == "Sam Roe, Jane Doe"


def test_the_subject_names_the_count_day_and_top_keywords() -> None:
    assert compose.subject(sample_digest(items=sample_digest().items[:1])) == (
        "1 new paper for you · Nov 23 (diffusion model)"
    )


def test_a_card_is_rendered_once_per_paper_and_shared_by_every_reader() -> None:
    renderer = Renderer()
    cards = count_card_renders(renderer)
    for reader in range(5):
        renderer.email(sample_digest(), recipient=f"r{reader}@example.org", links=LINKS)
    assert len(cards) == 3


def test_each_item_says_which_paper_and_when_as_a_reader_cites_it() -> None:
    from datetime import date

    listed = paper(
        "2611.09999", "Dated", arxiv_id="2611.09999", listed=date(2026, 11, 22), categories=("cs.LG",)
    )
    no_id = replace(listed, key="doi:10.1101/1", arxiv_id=None, listed=None, title="Undated")
    digest = sample_digest(items=(scored(listed, 2.0), scored(no_id, 1.0)))
    lines = text_of(mail(digest)).splitlines()
    assert "   arXiv:2611.09999 · Nov 22, 2026 · cs.LG" in lines
    assert lines[lines.index("2. Undated") + 1 :].count("   cs.LG") >= 1  # no id, no date: not made up


@pytest.mark.parametrize(
    ("title", "shown"),
    [
        (
            "IDENTIFICATION OF AN EARLY SUBSET OF CEREBELLAR NUCLEI NEURONS IN MICE",
            "Identification of an early subset of cerebellar nuclei neurons in mice",
        ),
        (
            "SARS-COV-2 SPIKE PROTEIN AND DNA REPAIR: A STUDY OF COVID-19",
            "SARS-COV-2 spike protein and DNA repair: A study of COVID-19",
        ),
        ("Attention Is All You Need", "Attention Is All You Need"),  # cased by its authors
        ("BERT", "BERT"),  # too short to tell a shouted title from a name
    ],
)
def test_an_all_caps_title_is_shown_in_sentence_case(title: str, shown: str) -> None:
    item = scored(paper("2611.09998", title, arxiv_id="2611.09998"), 1.0)
    assert f"1. {shown}" in text_of(mail(sample_digest(items=(item,)))).splitlines()
    assert compose.display_title(title) == shown


def test_a_thumbnail_the_source_gives_is_shown_in_the_html_only_and_only_if_http() -> None:
    pictured = paper(
        "2611.09997", "Pictured", arxiv_id="2611.09997",
        thumbnail_url="https://cdn-thumbnails.huggingface.co/social-thumbnails/papers/2611.09997.png",
    )
    hostile = paper("2611.09996", "Hostile", arxiv_id="2611.09996", thumbnail_url="javascript:alert(1)")
    message = mail(sample_digest(items=(scored(pictured, 2.0), scored(hostile, 1.0))))
    images = lxml.html.fromstring(html_of(message)).xpath("//img[@class='thumb']")
    assert [img.get("src") for img in images] == [pictured.thumbnail_url]
    assert "max-width: 560px" in (images[0].get("style") or "")  # never wider than a phone
    assert "thumbnails" not in text_of(message) and "javascript" not in html_of(message)


def test_thumbnails_can_be_left_out_of_the_email_and_stay_in_the_feed() -> None:
    pictured = paper(
        "2611.09997", "Pictured", arxiv_id="2611.09997",
        thumbnail_url="https://cdn-thumbnails.huggingface.co/social-thumbnails/papers/2611.09997.png",
    )
    digest = sample_digest(items=(scored(pictured, 2.0),))
    renderer = Renderer()
    without = renderer.email(digest, recipient="reader@example.org", links=LINKS, thumbnails=False)
    with_them = renderer.email(digest, recipient="reader@example.org", links=LINKS)
    assert "<img" not in without.html and 'class="thumb"' in with_them.html
    assert pictured.thumbnail_url in str(renderer.item_html(digest.items[0], 1))  # the feed keeps it


def test_email_thumbnails_is_a_setting(tmp_path: Path) -> None:
    assert load_config(write_config(tmp_path)).email.thumbnails is True
    assert load_config(write_config(tmp_path, extra="thumbnails = false")).email.thumbnails is False
    with pytest.raises(ConfigError, match=r"email\.thumbnails"):
        load_config(write_config(tmp_path, extra='thumbnails = "no"'))


def test_a_title_only_paper_links_to_a_search_that_fits_the_text_part() -> None:
    long_title = "Towards " + "a very long title about many things in machine learning " * 3
    item = scored(paper("title:towards", long_title), 1.0)
    rendered = Renderer().email(sample_digest(items=(item,)), recipient="r@example.org", links=LINKS)
    html_link = lxml.html.fromstring(rendered.html).xpath("//a[@class='title']/@href")[0]
    assert html_link.startswith("https://arxiv.org/search/?query=Towards+a+very+long")
    assert html_link.endswith("learning&searchtype=title")  # the whole title in HTML
    [text_link] = [line.strip() for line in rendered.text.splitlines() if "arxiv.org/search" in line]
    assert text_link.startswith("https://arxiv.org/search/?query=Towards+a+very+long")
    assert len(text_link) <= 75 and text_link.endswith("&searchtype=title")


def test_a_blocks_feedback_links_are_signed_once_for_its_feeds_and_its_emails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A run delivers 1,000 profiles at a time, every feed of the block before its emails: the
    # emails must find the links the feeds signed (issue 16), and the next block's too.
    signed: list[tuple[str, str]] = []
    real_urls = FeedbackLinks.urls

    def counting(self: FeedbackLinks, paper_key: str) -> tuple[str, str]:
        signed.append((self.profile, paper_key))
        return real_urls(self, paper_key)

    monkeypatch.setattr(FeedbackLinks, "urls", counting)
    renderer = Renderer()
    keys = [f"2611.{n:05d}" for n in range(18)]
    for block in range(3):
        links = [FeedbackLinks(f"p{block}-{n}", SITE, tuple(KEYS)) for n in range(1000)]
        feeds = [renderer.feedback_urls(link, key) for link in links for key in keys]
        emails = [renderer.feedback_urls(link, key) for link in links for key in keys]
        assert emails == feeds
    assert len(signed) == len(set(signed)) == 3 * 1000 * 18


def test_the_feedback_cache_changes_no_link_and_keeps_each_profiles_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mine, theirs = FEEDBACK, FeedbackLinks("them", SITE, tuple(KEYS))
    rotated = FeedbackLinks("me", SITE, ("a-newer-key", *KEYS))
    elsewhere = FeedbackLinks("me", "https://other.example.org", tuple(KEYS))
    cached = Renderer()
    made = {
        (links, key): cached.feedback_urls(links, key)
        for links in (mine, theirs, rotated, elsewhere)
        for key in (DIFFUSION.key, POLICY.key)
    }
    assert len(set(made.values())) == len(made)  # every input its own links
    for (links, key), urls in made.items():
        assert cached.feedback_urls(links, key) == urls == links.urls(key)  # as signed afresh
        tokens = [url.removeprefix(f"{links.base_url}/feedback/") for url in urls]
        assert [read_feedback_token(links.keys, token) for token in tokens] == [
            (links.profile, key, "more"), (links.profile, key, "less")
        ]
    # And with no cache at all, the items' HTML is the same.
    digest = sample_digest()
    warm = [cached.item_html(item, n, mine) for n, item in enumerate(digest.items, 1)]
    monkeypatch.setattr("digest.render._FEEDBACK_CACHE", 0)
    cold = Renderer()
    assert [cold.item_html(item, n, mine) for n, item in enumerate(digest.items, 1)] == warm
    assert len(cold._feedback) == 0


def test_a_days_feedback_codes_share_their_first_characters() -> None:
    """Issue 16: the store keeps a day's digest codes side by side (their first 4 characters
    come from the day), so a day's thousands are written to a few pages, not one page each."""
    shorten = LinkShortener(SITE, tuple(KEYS))
    monday, tuesday = date(2026, 11, 23), date(2026, 11, 24)
    codes = {
        (profile, day): shorten.feedback(profile, day).removeprefix(f"{SITE}/l/")
        for profile in ("me", "you", "web-0123456789abcdef") for day in (monday, tuesday)
    }
    assert len(set(codes.values())) == 6  # each digest its own code
    assert len({code[:4] for (_, day), code in codes.items() if day == monday}) == 1
    assert codes[("me", monday)][:4] != codes[("me", tuesday)][:4]


# -- the shell of a shape, rendered once a run --------------------------------------------------

# Every character escaping or the inliner treats apart, and some it might: each value of a shell
# holds them all.
NASTY = "a&b <i>x</i> \"q\" 'p' &amp; “s” é 😀 \xa0nbsp \u2028 \x0c \x01"


def made_whole(renderer: Renderer) -> Renderer:
    """The renderer with every email's shell rendered (and inlined) whole for its reader, as
    before shells were rendered once a shape."""
    renderer._cut_html_shell = lambda shape: None  # type: ignore[method-assign]

    def text_shell(fields, items):  # type: ignore[no-untyped-def]
        from digest.render import _text_mark

        return renderer._text.render(items=[_text_mark(n) for n in range(items)], **fields)

    renderer._text_shell = text_shell  # type: ignore[method-assign]
    return renderer


@pytest.mark.parametrize(
    "value",
    [
        NASTY,  # made whole: characters the inliner may write otherwise
        NASTY.replace("\xa0", " ").replace("\x0c", "").replace("\x01", "").replace("\u2028", ""),
        'https://x.example/?a=1&b="2"&c=<3>',
        "plain",
    ],
)
@pytest.mark.parametrize("items", [0, 3])
def test_a_shell_rendered_once_holds_each_readers_values_as_rendering_it_whole_would(
    value: str, items: int
) -> None:
    digest = sample_digest(
        profile=f"me{value}",
        sources=(SourceNote(f"src{value}", "ok"), SourceNote(f"bad{value}", "failed", "x")),
        items=sample_digest().items[:items],
    )
    links = replace(
        LINKS, feed_rss=f"{SITE}/r{value}", feed_atom=f"{SITE}/a{value}",
        unsubscribe=f"{SITE}/u{value}", manage=None if items else f"{SITE}/m{value}",
    )
    once, whole = Renderer(), made_whole(Renderer())
    for recipient in (f"r{value}@example.org", "s@example.org"):  # the second: the shell kept
        fast = once.email(digest, recipient=recipient, links=links)
        slow = whole.email(digest, recipient=recipient, links=links)
        assert (fast.html, fast.text, fast.subject) == (slow.html, slow.text, slow.subject)
        assert fast.html_parts == slow.html_parts and fast.text_parts == slow.text_parts
    assert once._html_shells and None not in once._html_shells.values()


def test_a_shell_is_kept_per_shape_and_shared_by_every_reader_of_it() -> None:
    renderer = Renderer()
    for profile in ("a", "b", "c"):
        renderer.email(sample_digest(profile=profile), recipient=f"{profile}@example.org", links=LINKS)
    renderer.email(sample_digest(items=()), recipient="d@example.org", links=LINKS)
    assert len(renderer._html_shells) == 2 and len(renderer._text_shells) == 2


def test_a_subject_is_encoded_as_email_header_encodes_it() -> None:
    # Written directly, on one line or folded over several, as email.header writes it.
    import random
    from email.header import Header

    from digest.render import _encoded_word

    rng = random.Random(16)
    alphabet = [*"ab ,()·–é数😀_=?-!*+/\t\x01", "naïve ", "20 new papers for you · Jun 30 ", "  "]
    for _ in range(3000):
        value = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 80)))  # folded too
        if value.isascii():
            continue
        _encoded_word.cache_clear()
        assert _encoded_word(value) == Header(value, "utf-8").encode(linesep="\r\n", maxlinelen=76)


def test_the_header_values_kept_between_messages_are_each_messages_own() -> None:
    # The date, the day's label and a bare address are worked out once and kept: by what they
    # are made of, never handing one message another's.
    from datetime import timedelta, timezone
    from email.utils import format_datetime, formataddr, parseaddr

    from digest.render import _address, _date_header, _day_label

    utc = sample_digest().until
    berlin = utc.astimezone(timezone(timedelta(hours=1)))
    assert utc == berlin and _date_header(utc) != _date_header(berlin)
    assert (_date_header(utc), _date_header(berlin)) == (format_datetime(utc), format_datetime(berlin))
    one_day = sample_digest()
    three_days = sample_digest(since=one_day.since - timedelta(days=2))
    assert [_day_label(one_day), _day_label(three_days), _day_label(one_day)] == [
        compose.day_label(one_day), compose.day_label(three_days), compose.day_label(one_day),
    ]
    assert _day_label(three_days) != _day_label(one_day)
    for text in ("a.b+c_d-e@mail-1.example.org", "Ünï Côde <u@example.org>", '"a b"@example.org',
                 "a..b@example.org", "x@example.org (comment)"):
        name, address = parseaddr(text)
        assert _address(text) == (formataddr((name, address), charset="utf-8") if name else address)


def test_an_items_reasons_line_is_made_once_for_its_feed_and_its_email(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Kept for the Reasons object itself: an equal one of another digest gets its own, the same.
    made: list[str] = []
    real_one_line = compose.one_line

    def counting(value: object, limit: int | None = None) -> str:
        made.append(str(value))
        return real_one_line(value, limit)

    monkeypatch.setattr(compose, "one_line", counting)
    item = sample_digest().items[0]
    renderer = Renderer()
    renderer.item_parts(item, 1, FEEDBACK)  # the feed's
    rendered = renderer.email(sample_digest(items=(item,)), recipient="r@example.org", links=LINKS)
    line = compose.reasons_line(item.reasons)
    summary = item.reasons.summary()
    assert made.count(summary) == 1 and f"Why: {line}" in rendered.text
    equal = replace(item.reasons)
    assert equal is not item.reasons and compose.reasons_line(equal) == line
    assert made.count(summary) == 2


def test_the_reasons_lines_kept_are_the_newest(monkeypatch: pytest.MonkeyPatch) -> None:
    # The next block's feeds make new lines while the last lines of this one may still be asked.
    from digest.models import Reasons

    monkeypatch.setattr(compose, "_REASONS_LINES", type(compose._REASONS_LINES)())
    monkeypatch.setattr(compose, "_REASONS_KEPT", 3)
    made: list[object] = []
    real_one_line = compose.one_line
    monkeypatch.setattr(compose, "one_line", lambda value: made.append(value) or real_one_line(value))
    reasons = [Reasons(keywords=(f"word {n}",)) for n in range(4)]
    for each in reasons:
        compose.reasons_line(each)
    for each in reasons[1:]:
        compose.reasons_line(each)
    assert len(made) == 4
    compose.reasons_line(reasons[0])
    assert len(made) == 5


def test_a_papers_email_parts_are_found_by_the_object_and_by_its_value_alike() -> None:
    # Found first by the Paper object itself; an equal copy (a digest read back from the store)
    # and the other thumbnail setting are found by value, and each paper keeps its own.
    renderer = Renderer()
    pictured = replace(DIFFUSION, thumbnail_url="https://example.org/t.png")
    card = renderer._email_card(pictured, True)
    assert renderer._email_card(pictured, True) is card
    assert renderer._email_card(replace(pictured), True) is card
    assert renderer._email_card(pictured, False) != card and "t.png" not in renderer._email_card(pictured, False)
    assert renderer._email_card(pictured, True) is card  # after the other setting
    assert renderer._email_card(POLICY, True) != card
    assert renderer._text_halves(POLICY) != renderer._text_halves(pictured)
    assert renderer._text_halves(replace(POLICY)) == renderer._text_halves(POLICY)
