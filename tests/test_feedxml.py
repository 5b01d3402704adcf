"""digest.feedxml: the same feed bytes feedgen made, for realistic and hostile papers, and valid.

The reference is the feed builder digest/feeds.py had before issue 16 (feedgen 1.0 through lxml),
kept here: every feed built both ways must be byte-identical, and read back by feedparser to the
same entries.
"""

from __future__ import annotations

import random
import re
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, timezone
from email.utils import format_datetime
from urllib.parse import quote

import feedparser
import feedrules
import lxml.html
import pytest
from digests import (
    DIFFUSION,
    FEEDBACK,
    HOSTILE,
    KEYS,
    POLICY,
    SITE,
    feedback_of,
    paper,
    sample_digest,
    scored,
)
from feedgen.feed import FeedGenerator
from lxml import etree
from markupsafe import escape

from digest import __version__, feeds, feedxml
from digest.models import Digest, Paper, Reasons, ScoredPaper
from digest.render import FeedbackLinks, Renderer
from digest.text import one_line

BASE = "https://digest.example.org/feeds"


# -- the reference: digest/feeds.py's feedgen builder before issue 16 -----------------------------


def feedgen_profile_feed(profile: str, digests: list[Digest], feedback: FeedbackLinks | None) -> tuple[bytes, bytes]:
    entries = [
        (item, digest.until - timedelta(seconds=position - 1), position)  # fixed per digest and place
        for digest in sorted(digests, key=lambda d: d.day, reverse=True)
        for position, item in enumerate(digest.items, start=1)
    ][:200]
    return _feedgen_files(
        profile,
        f"paperdigest · {profile}",
        f"New research papers chosen for the {profile} profile, with the reasons why.",
        feeds.profile_feed_paths(profile),
        entries,
        max((d.until for d in digests), default=datetime(1970, 1, 1, tzinfo=UTC)),
        Renderer(),
        feedback,
    )


def feedgen_all_papers_feed(papers: list[Paper]) -> tuple[bytes, bytes]:
    chosen = sorted(papers, key=lambda p: (p.first_seen, p.key), reverse=True)[:200]
    return _feedgen_files(
        "all",
        "paperdigest · all new papers",
        "Every new paper paperdigest has seen in the last days, newest first.",
        (feeds.ALL_RSS, feeds.ALL_ATOM),
        all_papers_entries(chosen),
        max((p.first_seen for p in chosen), default=datetime(1970, 1, 1, tzinfo=UTC)),
        Renderer(),
        None,
    )


def all_papers_entries(chosen: list[Paper]) -> list[tuple[ScoredPaper, datetime, int]]:
    """Each paper dated when first seen, or a second below the paper before it if that is lower."""
    entries: list[tuple[ScoredPaper, datetime, int]] = []
    for p in chosen:
        stamp = min(p.first_seen, entries[-1][1] - timedelta(seconds=1)) if entries else p.first_seen
        entries.append((ScoredPaper(p, 0.0, Reasons()), stamp, 0))
    return entries


def _feedgen_files(
    name: str,
    title: str,
    subtitle: str,
    paths: tuple[str, str],
    entries: list[tuple[ScoredPaper, datetime, int]],
    updated: datetime,
    renderer: Renderer,
    feedback: FeedbackLinks | None,
) -> tuple[bytes, bytes]:
    generator = FeedGenerator()
    generator.id(f"urn:paperdigest:feed:{quote(name)}")
    generator.title(title)
    generator.subtitle(subtitle)
    generator.language("en")
    generator.author({"name": "paperdigest"})
    generator.generator("paperdigest", version=__version__, uri="https://pypi.org/project/paperdigest/")
    generator.updated(updated)
    generator.lastBuildDate(updated)
    for item, stamp, position in entries:
        paper_ = item.paper
        fields = renderer.paper_fields(paper_)
        entry = generator.add_entry(order="append")
        entry.id(feeds.item_id(paper_.key))
        entry.guid(feeds.item_id(paper_.key), permalink=False)
        entry.title(fields["title"])
        entry.link(href=fields["url"] or f"{BASE}/")
        if fields["excerpt"]:
            entry.summary(str(escape(fields["excerpt"])), type="html")
        html = renderer.item_html(item, position, feedback) if position else renderer.card(paper_)
        entry.content(str(html), type="html")
        if paper_.authors:
            entry.author({"name": fields["authors"]})
        for category in dict.fromkeys(c for c in (paper_.primary_category, *paper_.categories) if c):
            entry.category(term=one_line(category))
        entry.published(stamp)
        entry.updated(stamp)
    made = []
    for kind, path in zip(("rss", "atom"), paths, strict=True):
        generator.link(
            [
                {"href": f"{BASE}/{path}", "rel": "self", "type": f"application/{kind}+xml"},
                {"href": f"{BASE}/", "rel": "alternate"},
            ],
            replace=True,
        )
        made.append(generator.rss_str(pretty=True) if kind == "rss" else generator.atom_str(pretty=True))
    return made[0], made[1]


# -- papers to build feeds of --------------------------------------------------------------------

# Every kind of character scraped text brings that XML and HTML treat specially, except what
# lxml refuses (tested on its own below).
_ALPHABET = (
    list("abcdefghij KLMNOP 0123 .,;:!?-_/()[]{}") * 3
    + ["<", ">", "&", '"', "'", "]]>", "<![CDATA[", "<script>", "&amp;", "&#13;", "\t", "\r", "\n",
       "\r\n", "\x7f", "\x85", "\u2028", "\u202e", "\u200b", "\ufeff", "é", "ß", "Ω", "✓", "😀",
       "\U0010fffd", "\xa0", "\\", "%", "#"]
)


def _noise(rng: random.Random, length: int) -> str:
    return "".join(rng.choice(_ALPHABET) for _ in range(length))


def random_papers(seed: int, count: int) -> list[Paper]:
    rng = random.Random(seed)
    made = []
    for n in range(count):
        key = f"26{rng.randint(1, 12):02d}.{n:05d}" if rng.random() < 0.8 else f"title:{_noise(rng, 12)}"
        made.append(
            paper(
                key,
                _noise(rng, rng.randint(0, 90)),
                arxiv_id=key if not key.startswith("title:") else None,
                abstract=_noise(rng, rng.randint(0, 400)),
                ai_summary=_noise(rng, 60) if rng.random() < 0.2 else None,
                authors=tuple(_noise(rng, rng.randint(0, 20)) for _ in range(rng.randint(0, 8))),
                author_count=rng.choice([None, 0, 1, 12]),
                categories=tuple(_noise(rng, rng.randint(0, 8)) for _ in range(rng.randint(0, 3))),
                primary_category=rng.choice([None, "cs.LG", _noise(rng, 5)]),
                code_url=rng.choice([None, "https://github.com/x/y?a=1&b=<2>", "javascript:alert(1)"]),
                project_url=rng.choice([None, f"https://example.org/{quote(_noise(rng, 8))}"]),
                pdf_url=rng.choice([None, "https://arxiv.org/pdf/x", "  https://evil.example/\r\nX: y"]),
                upvotes=rng.choice([None, 0, 3]),
                first_seen=datetime(2026, 11, 22, 21, tzinfo=UTC) + timedelta(minutes=rng.randint(0, 5000)),
            )
        )
    return made


def random_digests(seed: int, papers: list[Paper], profile: str) -> list[Digest]:
    """Three days of 18 papers each; a paper is in one digest only, as in a profile's feed."""
    rng = random.Random(seed)
    chosen = rng.sample(papers, min(len(papers), 54))
    digests = []
    for back in range(3):
        items = tuple(
            ScoredPaper(
                p,
                rng.random(),
                Reasons(keywords=(_noise(rng, 10),), similar_to=rng.choice([None, _noise(rng, 20)])),
            )
            for p in chosen[back * 18 : back * 18 + 18]
        )
        day = date(2026, 11, 23) - timedelta(days=back)
        # Offsets other than UTC too: a feed writes each date with its own offset.
        tz = UTC if back != 1 else timezone(timedelta(hours=5, minutes=30))
        digests.append(replace(sample_digest(), profile=profile, day=day, items=items,
                               until=datetime(2026, 11, 23 - back, 7, 0, 0, 123456, tzinfo=tz)))
    return digests


def digest_sets() -> list[tuple[str, list[Digest]]]:
    count_only = replace(paper("2611.07777", "Only a count"), authors=(), author_count=12)
    title_keyed = replace(paper("title:a survey of everything", "A survey of everything"), arxiv_id=None)
    return [
        ("sample", [sample_digest()]),
        ("hostile", [sample_digest(items=(scored(HOSTILE, 3.0, keywords=("<i>x</i>",)),
                                          scored(title_keyed, 1.0), scored(count_only, 0.5)))]),
        ("empty", []),
        *[(f"random-{seed}", random_digests(seed, random_papers(seed, 60), "me")) for seed in range(6)],
    ]


# -- byte for byte --------------------------------------------------------------------------------


@pytest.mark.parametrize("name, digests", digest_sets(), ids=[name for name, _ in digest_sets()])
def test_a_profile_feed_is_byte_identical_to_feedgens(name: str, digests: list[Digest]) -> None:
    built = feeds.profile_feed("me", digests, Renderer(), BASE, 200, FEEDBACK)
    rss, atom = feedgen_profile_feed("me", digests, FEEDBACK)
    assert without_markers(built.rss) == rss
    assert without_markers(built.atom) == atom
    # One marker before each digest's entries (digest.feeds splices a feed by them).
    assert built.atom.count(b"<!-- paperdigest-day ") == len([d for d in digests if d.items])


def without_markers(data: bytes) -> bytes:
    """A profile feed without its day markers (comments): what feedgen made."""
    return re.sub(rb"(?m)^ *<!-- paperdigest-day [^\n]*-->\n", b"", data)


@pytest.mark.parametrize("seed", range(3))
def test_the_all_papers_feed_is_byte_identical_to_feedgens(seed: int) -> None:
    papers = [DIFFUSION, POLICY, HOSTILE, *random_papers(seed, 60)]
    built = feeds.all_papers_feed(papers, Renderer(), BASE, 200)
    assert (built.rss, built.atom) == feedgen_all_papers_feed(papers)
    empty = feeds.all_papers_feed([], Renderer(), BASE, 200)
    assert (empty.rss, empty.atom) == feedgen_all_papers_feed([])


def test_feedparser_reads_the_same_entries_from_both() -> None:
    digests = random_digests(7, [DIFFUSION, POLICY, HOSTILE, *random_papers(7, 60)], "me")
    built = feeds.profile_feed("me", digests, Renderer(), BASE, 200, FEEDBACK)
    reference = feedgen_profile_feed("me", digests, FEEDBACK)
    for kind, ours, theirs in zip(("rss", "atom"), (built.rss, built.atom), reference, strict=True):
        mine, ref = feedparser.parse(ours), feedparser.parse(theirs)
        assert not mine.bozo, mine.get("bozo_exception")
        assert len(mine.entries) == len(ref.entries) == 54
        # (An RSS item has no updated: feedparser warns when asked for one.)
        updated = ("updated_parsed",) if kind == "atom" else ()
        for a, b in zip(mine.entries, ref.entries, strict=True):
            for field in ("id", "title", "link", "published_parsed", *updated, "summary",
                          "content", "author", "tags"):
                assert a.get(field) == b.get(field), field


# -- valid, and hostile text stays text ------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_feeds_of_hostile_random_papers_are_well_formed_and_pass_the_validators_rules(seed: int) -> None:
    digests = random_digests(seed, [HOSTILE, *random_papers(seed, 60)], "me")
    built = feeds.profile_feed("me", digests, Renderer(), BASE, 200, FEEDBACK)
    strict = etree.XMLParser(recover=False, resolve_entities=False)
    for data in (built.rss, built.atom):
        root = etree.fromstring(data, strict)
        assert len(root.findall(".//item") + root.findall("{http://www.w3.org/2005/Atom}entry")) == 54
        assert feedrules.problems(data) == []


@pytest.mark.parametrize("bad", ["\x00", "\x01", "\x0b", "\x1f", "\ufffe", "\uffff"])
def test_a_paper_xml_cannot_hold_is_left_out_and_the_feed_still_written(
    bad: str, caplog: pytest.LogCaptureFixture
) -> None:
    # one_line drops the controls from every text before it is shown, as it did for feedgen; the
    # two noncharacters it keeps, which lxml refused for the whole feed (feedgen raised at
    # serialisation), now leave out the one paper.
    broken = replace(POLICY, key="2611.00666", title=f"Broken {bad} title")
    odd_reason = scored(DIFFUSION, 1.0, similar_to=f"an example {bad}")
    digest = sample_digest(items=(scored(broken, 2.0), odd_reason, scored(POLICY, 0.5)))
    built = feeds.profile_feed("me", [digest], Renderer(), BASE, 200, FEEDBACK)
    cleaned = one_line(bad) == ""
    for data in (built.rss, built.atom):
        parsed = feedparser.parse(data)
        assert not parsed.bozo
        kept = [entry.id for entry in parsed.entries]
        assert (feeds.item_id("2611.00666") in kept) == cleaned
        assert (feeds.item_id(DIFFUSION.key) in kept) == cleaned
        assert feeds.item_id(POLICY.key) in kept
        assert feedrules.problems(data) == []
    assert ("left out paper 2611.00666" in caplog.text) == (not cleaned)
    if cleaned:  # and then byte for byte what feedgen made
        assert (without_markers(built.rss), without_markers(built.atom)) == feedgen_profile_feed(
            "me", [digest], FEEDBACK
        )


@pytest.mark.parametrize(
    "value",
    ["plain", "a < b > c & d", 'quote " and \' apostrophe', "]]> <![CDATA[x]]>", "tab\there",
     "line\nfeed", "cr\rlf\r\n", "\x7f\x85\u2028\u202e", "zoë 😀 \U0010fffd", "&amp; &#13;", ""],
)
def test_text_and_attributes_are_escaped_as_lxml_escapes_them(value: str) -> None:
    element = etree.Element("e", a=value)
    element.text = value
    # (An empty text is still a text: lxml writes <e></e>, as the f-string here.)
    assert etree.tostring(element, encoding="UTF-8") == (
        f"<e a={feedxml._attr(value)}>{feedxml._text(value)}</e>".encode()
    )
    assert etree.fromstring(f"<e a={feedxml._attr(value)}>{feedxml._text(value)}</e>").get("a") == value


def test_every_character_lxml_refuses_is_refused() -> None:
    element = etree.Element("e")
    for code in [*range(0x20), 0x7F, 0x85, *range(0xD7FE, 0xE001), 0xFFFD, 0xFFFE, 0xFFFF, 0x10000]:
        char = chr(code)
        try:
            element.text = char
            refused = False
        except ValueError:
            refused = True
        if refused:
            with pytest.raises(ValueError, match="XML"):
                feedxml._text(f"x{char}y")
        else:
            feedxml._text(f"x{char}y")


def test_dates_need_a_timezone_and_rss_dates_are_english_rfc822() -> None:
    text = feedxml.entry_text(entry_id="urn:x", title="t", link="https://x.org/")
    with pytest.raises(ValueError, match="timezone"):
        feedxml.entry_xml(text, datetime(2026, 1, 1), "<p>x</p>")
    start = datetime(2026, 1, 1, 0, 0, 0, 999, tzinfo=UTC)
    for days in range(0, 400, 13):
        when = (start + timedelta(days=days, seconds=days * 3607)).astimezone(timezone(timedelta(hours=-7)))
        assert feedxml._rfc822(when) == format_datetime(when)


def test_a_feeds_bytes_depend_on_each_input() -> None:
    digest = sample_digest()
    one = feeds.profile_feed("me", [digest], Renderer(), BASE, 200, FEEDBACK)
    other_key = feeds.profile_feed("me", [digest], Renderer(), BASE, 200,
                                   FeedbackLinks("me", SITE, ("another-key", *KEYS)))
    other_base = feeds.profile_feed("me", [digest], Renderer(), f"{SITE}/elsewhere", 200, FEEDBACK)
    later = feeds.profile_feed("me", [replace(digest, until=digest.until + timedelta(hours=1))],
                               Renderer(), BASE, 200, FEEDBACK)
    for changed in (other_key, other_base, later):
        assert changed.rss != one.rss and changed.atom != one.atom


# -- the per-paper cache (digest.feeds._paper_text) ------------------------------------------------


def test_the_per_paper_cache_changes_no_byte() -> None:
    digests = random_digests(3, [DIFFUSION, HOSTILE, *random_papers(3, 60)], "me")
    feeds._PAPER_TEXTS.clear()
    cold = feeds.profile_feed("me", digests, Renderer(), BASE, 200, FEEDBACK)
    assert feeds._PAPER_TEXTS  # it was filled
    warm = feeds.profile_feed("me", digests, Renderer(), BASE, 200, FEEDBACK)
    assert (warm.rss, warm.atom) == (cold.rss, cold.atom)
    # Kept by the paper's value: the same paper as a new object finds it, and the bytes agree.
    copies = [replace(d, items=tuple(replace(i, paper=replace(i.paper)) for i in d.items)) for d in digests]
    again = feeds.profile_feed("me", copies, Renderer(), BASE, 200, FEEDBACK)
    assert (again.rss, again.atom) == (cold.rss, cold.atom)


def test_the_per_paper_cache_is_keyed_on_everything_an_entry_shows() -> None:
    def atom_of(item_paper: Paper, base: str = BASE, feedback: FeedbackLinks = FEEDBACK) -> bytes:
        digest = sample_digest(items=(scored(item_paper, 1.0),))
        return feeds.profile_feed(feedback.profile, [digest], Renderer(), base, 200, feedback).atom

    first = atom_of(DIFFUSION)
    assert atom_of(DIFFUSION) == first
    # Same key, any field an entry shows changed: a new entry, never the kept one.
    for changed in (
        replace(DIFFUSION, title="A New Title"),
        replace(DIFFUSION, authors=("Someone Else",)),
        replace(DIFFUSION, abstract="Another excerpt entirely."),
        replace(DIFFUSION, categories=("math.OC",)),
        replace(DIFFUSION, abs_url=None, arxiv_id=None, doi=None),
    ):
        assert atom_of(changed) != first, changed
    # A paper without a web page links to the site: another site, another link.
    no_page = paper("title:\u200b", "\u200b")  # no words to search arXiv for: no link of its own
    for base in (BASE, "https://elsewhere.example/feeds"):
        assert feedparser.parse(atom_of(no_page, base)).entries[0].link == f"{base}/"
    # Same paper, another profile: its own feedback links.
    theirs = FeedbackLinks("them", SITE, tuple(KEYS))
    assert feedback_links_of(atom_of(DIFFUSION, feedback=theirs)) == [
        ("them", DIFFUSION.key, "more"), ("them", DIFFUSION.key, "less")
    ]
    assert feedback_links_of(first) == [("me", DIFFUSION.key, "more"), ("me", DIFFUSION.key, "less")]


def feedback_links_of(atom: bytes) -> list[tuple[str, str, str]]:
    content = feedparser.parse(atom).entries[0].content[0].value
    fragment = lxml.html.fragment_fromstring(content, create_parent="div")
    return [feedback_of(href) for href in fragment.xpath(".//p[@class='feedback']/a/@href")]


def test_the_same_instant_at_two_offsets_is_written_with_each_offset() -> None:
    # Dates are formatted once per instant and offset: equal datetimes, different text.
    text = feedxml.entry_text(entry_id="urn:x", title="t", link="https://x.org/")
    utc = datetime(2026, 11, 23, 7, tzinfo=UTC)
    berlin = utc.astimezone(timezone(timedelta(hours=1)))
    assert utc == berlin
    rss_utc, atom_utc = feedxml.entry_xml(text, utc, "<p>x</p>")
    rss_berlin, atom_berlin = feedxml.entry_xml(text, berlin, "<p>x</p>")
    assert "<pubDate>Mon, 23 Nov 2026 07:00:00 +0000</pubDate>" in rss_utc
    assert "<pubDate>Mon, 23 Nov 2026 08:00:00 +0100</pubDate>" in rss_berlin
    assert "<updated>2026-11-23T07:00:00+00:00</updated>" in atom_utc
    assert "<updated>2026-11-23T08:00:00+01:00</updated>" in atom_berlin
