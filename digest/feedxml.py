"""RSS 2.0 and Atom 1.0 documents written as text: what digest/feeds.py publishes.

The bytes are the ones feedgen 1.0 makes (through lxml, pretty-printed, UTF-8) for the fields
digest/feeds.py sets, so the published files did not change when it stopped using feedgen;
tests/test_feedxml.py checks that against feedgen for realistic and hostile papers. Written
directly because feedgen builds two lxml trees per feed and objects per entry: at 10,000 profiles
that was most of a run's feed time (issue 16).

Untrusted text reaches the XML only through `_text` and `_attr`, which escape it as lxml does
(& < > and CR in text; also " TAB LF in attributes) and refuse, with ValueError as lxml does,
what XML 1.0 cannot hold: C0 controls other than TAB LF CR, lone surrogates, U+FFFE and U+FFFF.
A caller leaves out the entry whose fields raise (digest.feeds does), never the whole feed.
A caller that escapes pieces ahead (`text`, an `XmlText`: digest.feeds escapes each paper's card
once a run) gets the same bytes: the escaping is character by character, so escaping the pieces
and joining them is escaping the whole, and a piece XML cannot hold raises as the whole would.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NewType

RSS_DOCS = "http://www.rssboard.org/rss-specification"  # feedgen's <docs>, kept
_DECLARATION = "<?xml version='1.0' encoding='UTF-8'?>\n"
# What lxml refuses to put in a document (checked against it, code point by code point).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
# RFC 822 dates in English whatever the locale (feedgen switched the process's locale to "C").
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


# Text already escaped as XML character data, by `text` (or `joined` from such pieces) only: what
# entry_xml_escaped takes, so that unescaped text cannot be handed to it by mistake.
XmlText = NewType("XmlText", str)


@dataclass(frozen=True, slots=True)
class FeedHead:
    """What a feed says about itself, in both formats."""

    id: str  # Atom <id> (RSS has none)
    title: str
    subtitle: str  # Atom <subtitle>, RSS <description>
    site_url: str  # RSS <link>, Atom <link rel="alternate">
    updated: datetime  # Atom <updated>, RSS <lastBuildDate>; with a timezone
    author: str  # Atom's feed author, standing for entries that name none
    language: str = "en"
    generator: str = "paperdigest"
    generator_version: str = ""
    generator_uri: str = ""


@dataclass(frozen=True, slots=True)
class EntryText:
    """What an entry says of its paper (not when, nor its content), escaped once: the same in
    every feed that holds the paper, so a caller can keep it (digest.feeds does, per paper)."""

    rss_head: str  # <item>, title, link, and the summary as <description>
    rss_tail: str  # guid, categories
    atom_head: str  # <entry>, id, title
    atom_author: str  # "" or <author>
    atom_tail: str  # link, summary, categories
    has_summary: bool


def entry_text(
    *,
    entry_id: str,
    title: str,
    link: str,
    summary_html: str = "",
    author: str = "",
    categories: tuple[str, ...] = (),
) -> EntryText:
    """An entry's own words. `entry_id` is Atom's <id> and RSS's <guid isPermaLink="false">;
    `summary_html` (HTML, carried escaped; "": none) is Atom's <summary type="html"> and RSS's
    <description>; `author` ("": none) is Atom's only: RSS wants an email for one.

    Raises ValueError when a field cannot be written as XML (see the module's docstring).
    """
    title, entry_id = _text(title), _text(entry_id)
    rss_head = f"    <item>\n      <title>{title}</title>\n      <link>{_text(link)}</link>\n"
    atom_tail = f"    <link href={_attr(link)}/>\n"
    if summary_html:
        summary = _text(summary_html)
        rss_head += f"      <description>{summary}</description>\n"
        atom_tail += f'    <summary type="html">{summary}</summary>\n'
    rss_tail = f'      <guid isPermaLink="false">{entry_id}</guid>\n'
    for category in categories:
        rss_tail += f"      <category>{_text(category)}</category>\n"
        atom_tail += f"    <category term={_attr(category)}/>\n"
    return EntryText(
        rss_head=rss_head,
        rss_tail=rss_tail,
        atom_head=f"  <entry>\n    <id>{entry_id}</id>\n    <title>{title}</title>\n",
        atom_author=f"    <author>\n      <name>{_text(author)}</name>\n    </author>\n" if author else "",
        atom_tail=atom_tail,
        has_summary=bool(summary_html),
    )


def entry_xml(entry: EntryText, when: datetime, content_html: str) -> tuple[str, str]:
    """One entry as an RSS <item> and as an Atom <entry>, indented for their place in the feed:
    its paper's words (`entry`), its date (published and updated; with a timezone) and its content (HTML,
    carried escaped: Atom's <content type="html">, RSS's <content:encoded>, or its <description>
    when there is no summary, as feedgen did).

    Raises ValueError when the content or date cannot be written (see the module's docstring).
    """
    return entry_xml_escaped(entry, when, text(content_html))


def entry_xml_escaped(entry: EntryText, when: datetime, content: XmlText) -> tuple[str, str]:
    """entry_xml with its content already escaped (`text`, `joined`): the longest string of an
    entry, which digest.feeds escapes in pieces, each paper's card once a run."""
    if not content:
        raise ValueError("an entry needs content")
    stamp, rfc822 = _dates(when)
    rss_content = (
        f"      <content:encoded>{content}</content:encoded>\n"
        if entry.has_summary
        else f"      <description>{content}</description>\n"
    )
    rss = (
        f"{entry.rss_head}{rss_content}{entry.rss_tail}"
        f"      <pubDate>{rfc822}</pubDate>\n    </item>\n"
    )
    atom = (
        f"{entry.atom_head}    <updated>{stamp}</updated>\n{entry.atom_author}"
        f'    <content type="html">{content}</content>\n{entry.atom_tail}'
        f"    <published>{stamp}</published>\n  </entry>\n"
    )
    return rss, atom


def text(value: str) -> XmlText:
    """`value` as XML character data, escaped; raises ValueError when XML cannot hold it."""
    return XmlText(_text(value))


def joined(*pieces: XmlText) -> XmlText:
    """Escaped pieces as one: the same as escaping them joined (see the module's docstring)."""
    return XmlText("".join(pieces))


def rss(head: FeedHead, self_url: str, items: Iterable[str]) -> bytes:
    """The RSS 2.0 document: the channel, then the items (from `entry_xml`) in order."""
    return document(rss_start(head, self_url), [item.encode("utf-8") for item in items], RSS_END)


def atom(head: FeedHead, self_url: str, entries: Iterable[str]) -> bytes:
    """The Atom 1.0 document: the feed's own elements, then the entries (from `entry_xml`)."""
    return document(atom_start(head, self_url), [entry.encode("utf-8") for entry in entries], ATOM_END)


def document(start: str, entries: Iterable[bytes], end: str) -> bytes:
    """A feed from its start (rss_start, atom_start), its entries as UTF-8 bytes and its end:
    digest.feeds hands over the entries of a feed's older days as the file holds them."""
    return b"".join((start.encode("utf-8"), *entries, end.encode("utf-8")))


RSS_END = "  </channel>\n</rss>\n"
ATOM_END = "</feed>\n"


def rss_start(head: FeedHead, self_url: str) -> str:
    """An RSS 2.0 document up to its items: the channel's own elements."""
    return "".join((
        _DECLARATION,
        '<rss xmlns:atom="http://www.w3.org/2005/Atom" '
        'xmlns:content="http://purl.org/rss/1.0/modules/content/" version="2.0">\n',
        "  <channel>\n",
        f"    <title>{_text(head.title)}</title>\n",
        f"    <link>{_text(head.site_url)}</link>\n",
        f"    <description>{_text(head.subtitle)}</description>\n",
        f'    <atom:link href={_attr(self_url)} rel="self" type="application/rss+xml"/>\n',
        f"    <docs>{RSS_DOCS}</docs>\n",
        f"    <generator>{_text(head.generator)}</generator>\n",
        f"    <language>{_text(head.language)}</language>\n",
        f"    <lastBuildDate>{_dates(head.updated)[1]}</lastBuildDate>\n",
    ))


def atom_start(head: FeedHead, self_url: str) -> str:
    """An Atom 1.0 document up to its entries: the feed's own elements."""
    generator = "<generator"
    if head.generator_uri:
        generator += f" uri={_attr(head.generator_uri)}"
    if head.generator_version:
        generator += f" version={_attr(head.generator_version)}"
    return "".join((
        _DECLARATION,
        f'<feed xmlns="http://www.w3.org/2005/Atom" xml:lang={_attr(head.language)}>\n',
        f"  <id>{_text(head.id)}</id>\n",
        f"  <title>{_text(head.title)}</title>\n",
        f"  <updated>{_dates(head.updated)[0]}</updated>\n",
        f"  <author>\n    <name>{_text(head.author)}</name>\n  </author>\n",
        f'  <link href={_attr(self_url)} rel="self" type="application/atom+xml"/>\n',
        f'  <link href={_attr(head.site_url)} rel="alternate"/>\n',
        f"  {generator}>{_text(head.generator)}</generator>\n",
        f"  <subtitle>{_text(head.subtitle)}</subtitle>\n",
    ))


def _text(value: str) -> str:
    """`value` as XML character data, escaped as lxml escapes it."""
    if _NOT_XML.search(value):
        raise ValueError(f"not a string XML can hold (a control character?): {value[:80]!r}")
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#13;")


def _attr(value: str) -> str:
    """`value` as a double-quoted XML attribute value, escaped as lxml escapes it."""
    escaped = _text(value).replace('"', "&quot;").replace("\n", "&#10;").replace("\t", "&#9;")
    return f'"{escaped}"'


def _dates(when: datetime) -> tuple[str, str]:
    """A feed date as Atom (RFC 3339) and RSS (RFC 822) write it; it must have a timezone."""
    offset = when.utcoffset()
    if offset is None:  # as feedgen: a feed's dates say their offset
        raise ValueError(f"a feed date without a timezone: {when.isoformat()}")
    return _formatted(when, offset)


# Every profile's feed of a run has the same dates (a digest's time, a second apart per item):
# each is formatted once. Kept by instant *and* offset, as 07:00+00:00 and 08:00+01:00 are equal
# datetimes written differently.
@functools.lru_cache(maxsize=4096)
def _formatted(when: datetime, offset: timedelta) -> tuple[str, str]:
    return when.isoformat(), _rfc822(when)


def _rfc822(when: datetime) -> str:
    """'Mon, 23 Nov 2026 07:00:00 +0000', as strftime('%a, %d %b %Y %H:%M:%S %z') in the C locale."""
    return (
        f"{_DAYS[when.weekday()]}, {when.day:02d} {_MONTHS[when.month - 1]} "
        f"{when.strftime('%Y %H:%M:%S %z')}"
    )
