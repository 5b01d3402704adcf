"""RSS and Atom feeds: valid, parsed back by feedparser, stable to the byte, written atomically."""

from __future__ import annotations

import html
import os
import re
import shutil
import stat
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import feedparser
import feedrules
import lxml.html
import pytest
from digests import (
    COMPOSED,
    DIFFUSION,
    FEEDBACK,
    HOSTILE,
    KEYS,
    POLICY,
    SITE,
    assert_golden,
    feedback_of,
    paper,
    sample_digest,
    scored,
)
from freezegun import freeze_time
from helpers import MONDAY, digest, outbox, sample_config, write_config

from digest import durable, feeds
from digest.errors import DeliveryError
from digest.models import Digest, ScoredPaper
from digest.render import FeedbackLinks, Renderer, default_templates_dir
from digest.store import Store
from digest.tokens import load_secrets, read_feedback_token, read_manage_token
from digest.web.links import feedback_path

BASE = "https://digest.example.org/feeds"


def profile_feed(*digests, max_items: int = 200) -> feeds.FeedFiles:  # type: ignore[no-untyped-def]
    return feeds.profile_feed(
        "me", digests or (sample_digest(),), Renderer(), BASE, max_items, FEEDBACK
    )


def content_of(entry: feedparser.FeedParserDict) -> str:
    """An entry's HTML: feedparser gives an RSS item without <description> its content as summary."""
    return str(entry.content[0].value if "content" in entry else entry.summary)


def feedback_links(content: str) -> list[tuple[str, str, str]]:
    """The feedback links in an item's HTML content, read as the web side reads them."""
    fragment = lxml.html.fragment_fromstring(content, create_parent="div")
    return [feedback_of(href) for href in fragment.xpath(".//p[@class='feedback']/a/@href")]


def test_both_feeds_match_their_golden_files() -> None:
    feed = profile_feed()
    assert_golden("profile.rss", feed.rss.decode())
    assert_golden("profile.atom", feed.atom.decode())


@pytest.mark.parametrize("kind", ["rss", "atom"])
def test_a_profile_feed_parses_cleanly_with_one_item_per_paper_keyed_by_the_paper(kind: str) -> None:
    feed = profile_feed()
    parsed = feedparser.parse(getattr(feed, kind))
    assert not parsed.bozo, parsed.get("bozo_exception")
    assert parsed.version == ("rss20" if kind == "rss" else "atom10")
    ids = [entry.id for entry in parsed.entries]
    assert ids == [feeds.item_id(item.paper.key) for item in sample_digest().items]
    assert len(set(ids)) == len(ids)
    assert ids[0] == "urn:paperdigest:paper:2611.01234"  # the key: no version, no timestamp
    first = parsed.entries[0]
    assert first.link == "https://arxiv.org/abs/2611.01234"
    assert first.title == "Consistency Diffusion Models for Fast Sampling"
    self_links = [link.href for link in parsed.feed.links if link.rel == "self"]
    assert self_links == [f"{BASE}/profiles/me.{kind}"]
    # The same excerpt, reasons and links as the email.
    content = html.unescape(first.content[0].value)  # <content type="html">, <content:encoded>
    assert "They sample in one step." in content
    assert 'Why: matches "diffusion model"; by Jane Doe' in content
    assert "https://github.com/example/cdm" in content
    assert parsed.feed.updated_parsed[:6] == (2026, 11, 23, 7, 0, 0)  # the digest's time


@pytest.mark.parametrize("kind", ["rss", "atom"])
def test_each_profile_feed_item_has_its_papers_feedback_links(kind: str) -> None:
    digest = sample_digest()
    parsed = feedparser.parse(getattr(profile_feed(digest), kind))
    assert not parsed.bozo and len(parsed.entries) == len(digest.items) == 3
    for entry, item in zip(parsed.entries, digest.items, strict=True):
        # feedparser has unescaped <content:encoded> / <content type="html"> to the item's HTML.
        content = lxml.html.fragment_fromstring(content_of(entry), create_parent="div")
        labels = content.xpath(".//p[@class='feedback']/a/text()")
        assert labels == ["More like this", "Not relevant"]
        assert feedback_links(content_of(entry)) == [
            ("me", item.paper.key, "more"),
            ("me", item.paper.key, "less"),
        ]


def test_the_all_papers_feed_has_no_feedback_links() -> None:
    feed = feeds.all_papers_feed([DIFFUSION, POLICY], Renderer(), BASE, 200)
    for data in (feed.rss, feed.atom):
        entries = feedparser.parse(data).entries
        assert len(entries) == 2
        assert all(feedback_links(content_of(entry)) == [] for entry in entries)
        assert b"/feedback/" not in data and b"More like this" not in data


def test_a_profile_feed_never_carries_another_profiles_feedback_links() -> None:
    theirs = FeedbackLinks("them", SITE, tuple(KEYS))
    with pytest.raises(ValueError, match="feedback links of 'them' in the feed of 'me'"):
        feeds.profile_feed("me", [sample_digest()], Renderer(), BASE, 200, theirs)


def test_a_run_signs_each_emails_and_feeds_links_with_the_stores_key(tmp_path: Path) -> None:
    # The whole job, as `digest run` makes them: every link must be one the web side accepts,
    # with the key in data/secret.key, for the profile, the paper and the reader it was made for.
    data = tmp_path / "data"
    data.mkdir()
    (data / "secret.key").write_text("a-fixed-key-for-this-test\n", encoding="ascii")
    keys = load_secrets(data)

    def read(url: str, kind: str) -> tuple[str, ...]:
        prefix = f"{SITE}/{kind}/"
        assert url.startswith(prefix), url
        token = url.removeprefix(prefix)
        return read_feedback_token(keys, token) if kind == "feedback" else read_manage_token(keys, token)

    def unshorten(url: str) -> str:
        """The link a text email's short link stands for, as `digest serve` finds it: the
        store's path for the code, and for a digest's feedback code (CODE.m3) the paper's."""
        code, dot, suffix = url.removeprefix(f"{SITE}/l/").partition(".")
        assert len(code) == 12, url
        with Store.open(data / "paperdigest.sqlite3") as store:
            target = store.short_link(code)
            if target is not None and dot:
                target = feedback_path(store, keys, target, suffix)
        assert target is not None, url
        return SITE + target

    with freeze_time(MONDAY, auto_tick_seconds=1):
        result = digest(write_config(tmp_path), "run")
    assert result.exit_code == 0, result.output

    feed = feedparser.parse((data / "feeds" / "profiles" / "ml.atom").read_bytes())
    feed_keys = [
        read(href, "feedback")
        for entry in feed.entries
        for href in lxml.html.fragment_fromstring(content_of(entry), create_parent="div").xpath(
            ".//p[@class='feedback']/a/@href"
        )
    ]
    papers = [key for _, key, _ in feed_keys[::2]]
    assert len(papers) == len(feed.entries) == 10
    assert feed_keys == [("ml", key, mark) for key in papers for mark in ("more", "less")]
    assert [feeds.item_id(key) for key in papers] == [entry.id for entry in feed.entries]
    everything = (data / "feeds" / "all.atom").read_bytes()
    assert b"/feedback/" not in everything and len(feedparser.parse(everything).entries) == 80

    messages = [m for m in outbox(tmp_path) if str(m["To"]) in ("a@example.org", "b@example.org")]
    assert len(messages) == 2
    for message in messages:
        html_part, text_part = message.get_body(("html",)), message.get_body(("plain",))
        assert html_part is not None and text_part is not None
        tree = lxml.html.fromstring(str(html_part.get_content()))
        marks = [read(href, "feedback") for href in tree.xpath("//p[@class='feedback']/a/@href")]
        assert marks == feed_keys  # the same papers, in the same order, as the profile's feed
        # The text part has the short form of the same links: the store leads each to its path.
        text = str(text_part.get_content()).replace("\r\n", "\n")
        in_text = re.findall(r"(?m)^   (?:More like this|Not relevant): (\S+)$", text)
        assert [read(unshorten(url), "feedback") for url in in_text] == feed_keys
        manage = tree.xpath("//div[@class='footer']//a[text()='Manage your subscription']/@href")
        assert [read(url, "manage") for url in manage] == [("ml", str(message["To"]))]
        [short_manage] = re.findall(r"(?m)^Manage your subscription: (\S+)$", text)
        assert unshorten(short_manage) == manage[0]


def test_unchanged_data_gives_byte_identical_files() -> None:
    first, second = profile_feed(), profile_feed()
    assert (first.rss, first.atom) == (second.rss, second.atom)


def entries_of(data: bytes) -> list[str]:
    """A feed's entries as written: each RSS <item> or Atom <entry>, whole."""
    return re.findall(r"(?s)<item>.*?</item>|<entry>.*?</entry>", data.decode())


def test_a_feed_rebuilt_with_one_more_day_keeps_every_older_entry_byte_identical() -> None:
    # Its dates too: a reader must not see yesterday's items as updated today.
    monday = sample_digest(day=sample_digest().day - timedelta(days=1),
                           until=sample_digest().until - timedelta(days=1))
    tuesday = sample_digest(items=(scored(HOSTILE, 9.0), scored(paper("2611.09999", "New"), 1.0)))
    before, after = profile_feed(monday), profile_feed(monday, tuesday)
    for kind in ("rss", "atom"):
        old, new = entries_of(getattr(before, kind)), entries_of(getattr(after, kind))
        assert len(old) == 3 and len(new) == 5
        assert new[2:] == old  # the older day's entries, as they were
    # The all-papers feed too: papers first seen together keep their dates as newer ones come.
    later = [paper(f"2611.0900{n}", f"Later {n}", first_seen=DIFFUSION.first_seen + timedelta(days=1))
             for n in range(3)]
    first = feeds.all_papers_feed([DIFFUSION, POLICY], Renderer(), BASE, 200)
    second = feeds.all_papers_feed([DIFFUSION, POLICY, *later], Renderer(), BASE, 200)
    for kind in ("rss", "atom"):
        assert entries_of(getattr(second, kind))[3:] == entries_of(getattr(first, kind))


def test_entries_sharing_a_time_each_have_a_date_of_their_own() -> None:
    updated = re.findall(r"<updated>(.*?)</updated>", profile_feed().atom.decode())[1:]
    assert updated == ["2026-11-23T07:00:00+00:00", "2026-11-23T06:59:59+00:00",
                       "2026-11-23T06:59:58+00:00"]
    together = feeds.all_papers_feed([DIFFUSION, POLICY], Renderer(), BASE, 200)
    assert re.findall(r"<published>(.*?)</published>", together.atom.decode()) == [
        "2026-11-22T21:00:00+00:00", "2026-11-22T20:59:59+00:00"
    ]


def test_a_version_bump_keeps_the_item_id() -> None:
    bumped = replace(DIFFUSION, version=3, upvotes=50)
    digest = sample_digest(items=(scored(bumped, 14.0),))
    ids = [e.id for e in feedparser.parse(profile_feed(digest).atom).entries]
    assert ids == ["urn:paperdigest:paper:2611.01234"]


def test_the_feed_holds_the_newest_digests_first_and_at_most_max_items() -> None:
    older = sample_digest(day=sample_digest().day - timedelta(days=1), items=(scored(POLICY, 1.0),))
    newer = sample_digest(items=(scored(DIFFUSION, 2.0),))
    parsed = feedparser.parse(profile_feed(older, newer).rss)
    assert [e.id.rsplit(":", 1)[1] for e in parsed.entries] == ["2611.01234", "2611.05678"]
    assert len(feedparser.parse(profile_feed(older, newer, max_items=1).rss).entries) == 1


def test_the_all_papers_feed_is_newest_first_and_capped() -> None:
    papers = [
        paper(f"2611.{n:05d}", f"Paper {n}", arxiv_id=f"2611.{n:05d}",
              first_seen=DIFFUSION.first_seen + timedelta(minutes=n))
        for n in range(250)
    ]
    feed = feeds.all_papers_feed(papers, Renderer(), BASE, 200)
    for data in (feed.rss, feed.atom):
        parsed = feedparser.parse(data)
        assert not parsed.bozo
        assert len(parsed.entries) == 200
        assert parsed.entries[0].title == "Paper 249"
        assert len({e.id for e in parsed.entries}) == 200


def test_an_empty_feed_is_still_valid_and_dated_from_data_not_the_clock() -> None:
    feed = feeds.profile_feed("me", [], Renderer(), BASE, 200)
    for data in (feed.rss, feed.atom):
        parsed = feedparser.parse(data)
        assert not parsed.bozo and parsed.entries == []
    assert b"1970" in feed.atom


def test_hostile_text_in_a_feed_stays_text() -> None:
    digest = sample_digest(items=(scored(HOSTILE, 3.0, keywords=("<i>x</i>",)),))
    feed = profile_feed(digest)
    for data in (feed.rss, feed.atom):
        parsed = feedparser.parse(data)
        assert not parsed.bozo
        entry = parsed.entries[0]
        assert "<script>" in entry.title  # the title is text; a reader shows it, never runs it
        raw = ElementTree.fromstring(data)
        # Every element a reader renders as HTML: content, content:encoded, description, summary.
        html_payloads = [
            el.text
            for el in raw.iter()
            if el.tag.endswith(("content", "encoded", "description", "summary")) and el.text
        ]
        assert len(html_payloads) >= 2
        for payload in html_payloads:
            fragment = lxml.html.fragment_fromstring(payload, create_parent="div")
            assert not fragment.xpath("//script | //img | //i")
            assert all(h.startswith("https://") for h in fragment.xpath("//a/@href"))
        # The hostile paper's feedback links are still whole, and name it.
        assert feedback_links(content_of(entry)) == [
            ("me", HOSTILE.key, "more"),
            ("me", HOSTILE.key, "less"),
        ]


def test_opml_lists_every_feed() -> None:
    built = [profile_feed(), feeds.all_papers_feed([DIFFUSION], Renderer(), BASE, 200)]
    root = ElementTree.fromstring(feeds.opml([(f.title, f.atom_path) for f in built], BASE))
    urls = [o.get("xmlUrl") for o in root.iter("outline")]
    assert urls == [f"{BASE}/profiles/me.atom", f"{BASE}/all.atom"]
    assert root.find("head/title") is not None


def test_publishing_writes_atomically_and_leaves_unchanged_files_alone(tmp_path: Path) -> None:
    feed = profile_feed()
    files = {feed.rss_path: feed.rss, feed.atom_path: feed.atom}
    assert feeds.publish(tmp_path, files) == ["profiles/me.atom", "profiles/me.rss"]
    target = tmp_path / "profiles" / "me.rss"
    assert target.read_bytes() == feed.rss
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    os.utime(target, (1_000_000_000, 1_000_000_000))
    assert feeds.publish(tmp_path, files) == []  # the same bytes: nothing rewritten
    assert target.stat().st_mtime == 1_000_000_000  # so Last-Modified stays true
    assert sorted(p.name for p in (tmp_path / "profiles").iterdir()) == ["me.atom", "me.rss"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "all.rss"
    target.write_bytes(b"old")

    def disk_full(descriptor: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    monkeypatch.setattr(durable, "syncfs", disk_full)
    with pytest.raises(DeliveryError, match=r"all\.rss: cannot write the feed file: .*No space left"):
        feeds.write_atomic(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["all.rss"]


def test_an_unusable_feeds_dir_is_named(tmp_path: Path) -> None:
    (tmp_path / "feeds").write_text("a file where the folder should be")
    with pytest.raises(DeliveryError, match="feeds/all.rss: cannot write the feed file"):
        feeds.publish(tmp_path / "feeds", {"all.rss": b"x"})


def test_atom_entries_have_an_author_and_an_updated_of_their_own() -> None:
    """What the W3C feed validator checks: an author for every entry (the feed's stands in for
    a paper that names none), never a count such as "12 authors" as a name; no two entries
    with the same atom:updated."""
    count_only = replace(paper("2611.07777", "Only a count"), authors=(), author_count=12)
    digest_ = sample_digest(items=(*sample_digest().items, scored(count_only, 0.5)))
    atom = ElementTree.fromstring(profile_feed(digest_).atom)
    ns = {"a": "http://www.w3.org/2005/Atom"}
    assert [n.text for n in atom.findall("a:author/a:name", ns)] == ["paperdigest"]
    entries = atom.findall("a:entry", ns)
    names = [n.text or "" for e in entries for n in e.findall("a:author/a:name", ns)]
    assert names and not any(re.fullmatch(r"\d+ authors", name) for name in names)
    updated = [e.findtext("a:updated", namespaces=ns) for e in entries]
    assert len(entries) == 4 and len(set(updated)) == len(updated)


def test_every_feed_a_first_run_publishes_passes_the_validators_rules(tmp_path: Path) -> None:
    with freeze_time("2026-11-26 08:00:00", auto_tick_seconds=1):
        result = digest(sample_config(tmp_path), "run", "--now")
    assert result.exit_code == 0, result.output
    folder = tmp_path / "demo-data" / "feeds"
    published = sorted(folder.rglob("*.atom")) + sorted(folder.rglob("*.rss"))
    assert [p.name for p in published] == ["all.atom", "demo.atom", "all.rss", "demo.rss"]
    for path in published:
        assert feedparser.parse(path.read_bytes()).entries, path
        assert feedrules.problems(path.read_bytes()) == [], path


def test_hostile_empty_and_title_keyed_feeds_pass_the_validators_rules() -> None:
    title_keyed = replace(paper("title:a survey of everything", "A survey of everything"), arxiv_id=None)
    hostile = sample_digest(items=(scored(HOSTILE, 1.0), scored(title_keyed, 0.5)))
    for made in (profile_feed(hostile), profile_feed(), feeds.profile_feed(
            "web-0123456789abcdef", [], Renderer(), f"{SITE}/feeds", 50,
            FeedbackLinks("web-0123456789abcdef", SITE, tuple(KEYS)))):
        assert feedrules.problems(made.atom) == []
        assert feedrules.problems(made.rss) == []


@pytest.mark.parametrize(
    "fault, expected",
    [
        (lambda atom: atom.replace(b'<link href="https://digest.example.org/feeds/profiles/me.atom" rel="self"',
                                   b'<link href="https://digest.example.org/feeds/profiles/me.atom" rel="x"'),
         "MissingSelf"),
        (lambda atom: re.sub(rb"<updated>[^<]+</updated>", b"<updated>2026-11-23T07:00:00+00:00</updated>",
                             atom), "DuplicateUpdated"),
        (lambda atom: re.sub(rb"<author>\s*<name>paperdigest</name>\s*</author>", b"", atom, count=1)
         .replace(b"<author>", b"<contributor>").replace(b"</author>", b"</contributor>"), "MissingAuthor"),
        (lambda atom: atom.replace(b"https://arxiv.org/pdf/", b"/pdf/", 1), "ContainsRelRef"),
        (lambda atom: atom.replace(b"&lt;p class=", b"&lt;script&gt;x()&lt;/script&gt;&lt;p class=", 1),
         "SecurityRisk"),
    ],
)
def test_the_rules_checker_catches_what_the_validator_would(fault: Any, expected: str) -> None:
    """Guards the checker: each fault, made in a good feed, is named."""
    good = profile_feed().atom
    assert feedrules.problems(good) == []
    assert any(problem.startswith(expected) for problem in feedrules.problems(fault(good)))


# -- a profile's older days taken from its files as written (feeds.profile_feed's `previous`) -----


def week(days: int = 7, start: int = 0, per_day: int = 3) -> list[Digest]:
    """A profile's digests of `days` days from Monday + `start`, newest first; papers of their own."""
    made = []
    for n in range(start, start + days):
        items = tuple(
            scored(paper(f"2611.{n:02d}{i:03d}", f"Paper {i} of day {n}", arxiv_id=f"2611.{n:02d}{i:03d}",
                         abstract="Findings & <claims>."), 10.0 - i, keywords=("diffusion",))
            for i in range(per_day)
        )
        made.append(sample_digest(day=sample_digest().day + timedelta(days=n),
                                  until=COMPOSED + timedelta(days=n), items=items))
    return made[::-1]


def build(digests: list[Digest], previous: feeds.FeedFiles | None = None, *, renderer: Renderer | None = None,
          base: str = BASE, links: FeedbackLinks = FEEDBACK, max_items: int = 200) -> feeds.FeedFiles:
    written = feeds.WrittenFeed(previous.rss, previous.atom) if previous else None
    return feeds.profile_feed("me", digests, renderer or Renderer(), base, max_items, links, written)


@pytest.fixture
def rendered(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The keys of the papers whose entries were rendered (not taken from a file)."""
    keys: list[str] = []
    content = feeds._content

    def counted(item: ScoredPaper, *args: Any) -> Any:
        keys.append(item.paper.key)
        return content(item, *args)

    monkeypatch.setattr(feeds, "_content", counted)
    return keys


def test_a_spliced_feed_is_byte_identical_to_a_full_rebuild(rendered: list[str]) -> None:
    yesterday = build(week(6))
    rendered.clear()
    spliced = build(week(7), yesterday)
    assert rendered == [item.paper.key for item in week(7)[0].items]  # only the new day's
    whole = build(week(7))
    assert (spliced.rss, spliced.atom) == (whole.rss, whole.atom)
    for data in (spliced.rss, spliced.atom):
        parsed = feedparser.parse(data)
        assert not parsed.bozo and len(parsed.entries) == 21
        assert feedrules.problems(data) == []
    # A day out of the window goes; a day gone from the store (not among the digests) too.
    rendered.clear()
    later = build(week(7, start=1), spliced)
    assert rendered == [item.paper.key for item in week(7, start=1)[0].items]
    assert (later.rss, later.atom) == (build(week(7, start=1)).rss, build(week(7, start=1)).atom)
    pruned = [d for d in week(7, start=1) if d.day != week(7, start=1)[3].day]
    assert build(pruned, later).atom == build(pruned).atom


def test_a_day_cut_short_by_max_items_is_rendered_again_and_the_feed_is_the_same(
    rendered: list[str],
) -> None:
    before = build(week(3), max_items=7)  # 3 + 3 + 1 of the oldest day's 3
    assert b" partial " in before.atom
    rendered.clear()
    after = build(week(3, start=1), before, max_items=7)
    # The new day and the day now cut short are rendered; the one whole day in between is not.
    assert rendered == [i.paper.key for d in week(3, start=1)[::2] for i in d.items][:4]
    assert after.atom == build(week(3, start=1), max_items=7).atom
    assert after.rss == build(week(3, start=1), max_items=7).rss


@pytest.mark.parametrize(
    "change", ["feeds_url", "links_url", "key", "templates", "version", "until", "profile"]
)
def test_a_changed_fingerprint_input_renders_the_day_again(
    change: str, rendered: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    yesterday = build(week(6))
    digests, templates, base, links = week(7), None, BASE, FEEDBACK
    if change == "feeds_url":  # where a paper without a page of its own links to
        base = "https://other.example/feeds"
    elif change == "links_url":  # where the feedback links go
        links = FeedbackLinks("me", "https://other.example", tuple(KEYS))
    elif change == "key":
        links = FeedbackLinks("me", SITE, ("a-new-key", *KEYS))  # the newest key signs
    elif change == "templates":
        templates = tmp_path / "templates"
        shutil.copytree(default_templates_dir(), templates)
        with (templates / "email.css").open("a") as css:  # not even in a feed's item
            css.write("\n/* changed */\n")
    elif change == "version":
        monkeypatch.setattr(feeds, "__version__", "99.0")
    elif change == "until":
        digests = [replace(d, until=d.until + timedelta(minutes=1)) for d in digests]
    elif change == "profile":  # another profile's file given by mistake
        links = FeedbackLinks("them", SITE, tuple(KEYS))
        digests = [replace(d, profile="them") for d in digests]
    rendered.clear()
    spliced = feeds.profile_feed(links.profile, digests, Renderer(templates), base, 200, links,
                                 feeds.WrittenFeed(yesterday.rss, yesterday.atom))
    assert len(rendered) == 21  # every day rendered again
    whole = feeds.profile_feed(links.profile, digests, Renderer(templates), base, 200, links)
    assert (spliced.rss, spliced.atom) == (whole.rss, whole.atom)


def damaged(data: bytes) -> list[bytes]:
    """The file edited by hand, cut short, of an older format (no markers), with a marker
    damaged, not UTF-8, or empty."""
    text = data.decode()
    return [
        text.replace("Paper 1 of day 2", "Paper 1 of day two").encode(),  # inside an entry
        text.replace("</title>", "</title>\n", 3).encode(),
        data[: len(data) // 2],
        re.sub(r"(?m)^ *<!-- paperdigest-day [^\n]*-->\n", "", text).encode(),
        text.replace("<!-- paperdigest-day 2026-11-2", "<!-- paperdigest-day 2026-13-2", 1).encode(),
        data.replace(b"Paper 0 of day 3", b"Paper 0 of day \xff"),  # not UTF-8
        b"",
    ]


@pytest.mark.parametrize("kind", ["rss", "atom"])
def test_a_damaged_or_old_format_file_makes_the_feed_rendered_whole(kind: str, rendered: list[str]) -> None:
    yesterday = build(week(6))
    whole = build(week(7))
    for bad in damaged(getattr(yesterday, kind)):
        previous = replace(yesterday, **{kind: bad})
        rendered.clear()
        rebuilt = build(week(7), previous)
        assert len(rendered) == 21, bad[:200]
        assert (rebuilt.rss, rebuilt.atom) == (whole.rss, whole.atom)
    # Missing files: rendered whole, as on a first run.
    rendered.clear()
    assert build(week(7), feeds.WrittenFeed(None, yesterday.atom)).atom == whole.atom  # type: ignore[arg-type]
    assert len(rendered) == 21


def test_reading_a_published_feed_back_from_a_folder_and_from_the_store(tmp_path: Path) -> None:
    yesterday = build(week(6))
    files = {"profiles/me.rss": yesterday.rss, "profiles/me.atom": yesterday.atom}
    with Store.open(tmp_path / "store.sqlite3") as store:
        for target in (feeds.Folder(tmp_path / "feeds"), feeds.InStore(store, lambda: COMPOSED)):
            assert target.read("profiles/me.atom") is None
            target.publish(files)
            assert target.read("profiles/me.rss") == yesterday.rss
            previous = feeds.WrittenFeed(target.read("profiles/me.rss"), target.read("profiles/me.atom"))
            spliced = feeds.profile_feed("me", week(7), Renderer(), BASE, 200, FEEDBACK, previous)
            assert spliced.atom == build(week(7)).atom
    unreadable = tmp_path / "feeds" / "profiles" / "it.atom"
    unreadable.mkdir()  # a folder where the file should be
    assert feeds.Folder(tmp_path / "feeds").read("profiles/it.atom") is None


def test_a_batch_reads_each_profiles_window_as_one_profile_at_a_time_would(tmp_path: Path) -> None:
    from digest.channels.feed import _feed_digests, _window_digests

    with Store.open(tmp_path / "store.sqlite3") as store:
        days = {"a": range(9), "b": (0, 2, 3, 8), "c": (5,)}  # "d" has none
        made: dict[str, list[Digest]] = {}
        for name, numbers in days.items():
            for digest in week(9, per_day=2):
                if (digest.day - week(9)[-1].day).days in numbers:
                    made.setdefault(name, []).append(replace(digest, profile=name))
        # (Their papers are not stored: read back, both ways, they have no items.)
        for digests in made.values():
            store.save_digests([(d, ["feed"]) for d in digests[1:]], COMPOSED)
        fresh = {"a": made["a"][0], "c": made["c"][0]}  # composed this run, not yet read back
        store.save_digests([(d, ["feed"]) for d in fresh.values()], COMPOSED)
        names = ["a", "b", "c", "d"]
        windows = _window_digests(store, names, fresh, 7)
        for name in names:
            assert windows[name] == _feed_digests(store, name, fresh.get(name), 7), name
        assert [d.day for d in windows["a"]] == [d.day for d in made["a"][:7]]
        assert windows["d"] == []
