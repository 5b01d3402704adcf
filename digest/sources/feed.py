"""Any RSS or Atom feed (journal tables of contents, preprint servers, lab blogs), through feedparser.

feedparser never raises: it flags trouble with `bozo` and salvages what it can. A salvaged feed
with entries is used; one with no entries and no recognisable format is a ParseError. Entries are
mapped to records by the ids they carry: an arXiv id in a link or guid, a DOI, else the guid.
"""

from __future__ import annotations

import calendar
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import feedparser
from bs4 import BeautifulSoup

from digest.errors import ParseError
from digest.models import Origin, Record
from digest.sources.common import (
    clean_optional,
    clean_text,
    describe_start,
    safe_url,
    split_arxiv_id,
)

_DOI = re.compile(r"\b(10\.\d{4,9}/[^\s\"<>]+)", re.IGNORECASE)
_SPACE_BEFORE_PUNCTUATION = re.compile(r" ([.,;:!?])")  # left where a tag ended a sentence
_ARXIV_HOSTS = ("arxiv.org/abs/", "arxiv.org/pdf/", "oai:arxiv.org:")


def parse(body: bytes, origin: Origin) -> list[Record]:
    head = body[:1024].lstrip().lower()
    if not head:
        raise ParseError("expected an RSS or Atom feed, got an empty body")
    if head.startswith((b"<!doctype html", b"<html")):
        text = body[:200].decode("utf-8", "replace")
        raise ParseError(f"expected an RSS or Atom feed, got an HTML page ({describe_start(text)})")
    # Bytes only: feedparser must never fetch a URL itself.
    parsed = feedparser.parse(body, sanitize_html=True, resolve_relative_uris=False)
    if not parsed.entries and (not parsed.version or parsed.bozo):
        reason = clean_text(parsed.get("bozo_exception", "")) or "no feed elements found"
        raise ParseError(f"expected an RSS or Atom feed: {reason}")
    return [record for entry in parsed.entries if (record := _record(entry, origin)) is not None]


def _record(entry: dict[str, Any], origin: Origin) -> Record | None:
    title = _plain(entry.get("title"))
    if not title:
        return None
    link = safe_url(entry.get("link"))
    guid = clean_text(entry.get("id"))
    arxiv_id, version = _arxiv_id(link, guid)
    doi = _doi(entry, link)
    # dict.get skips FeedParserDict's deprecated updated->published fallback (and its warning).
    updated = _datetime(dict.get(entry, "updated_parsed"))
    published = _datetime(dict.get(entry, "published_parsed")) or updated
    return Record(
        origin=origin,
        title=title,
        arxiv_id=arxiv_id,
        version=version,
        doi=doi,
        source_key=(guid or link) if not (arxiv_id or doi) else None,
        abstract=_abstract(entry),
        authors=_authors(entry),
        categories=tuple(
            t for t in (clean_text(tag.get("term")) for tag in entry.get("tags", [])) if t
        ),
        published=published,
        updated=updated,
        listed=published.date() if published else None,
        announce_type=clean_optional(entry.get("arxiv_announce_type")),
        abs_url=link,
        pdf_url=_pdf_link(entry),
    )


def _plain(value: object) -> str:
    """Feed text may hold markup (sanitised by feedparser): keep the words, drop every tag."""
    text = str(value or "")
    if "<" in text or "&" in text:
        text = BeautifulSoup(text, "html.parser").get_text(" ")
    return _SPACE_BEFORE_PUNCTUATION.sub(r"\1", clean_text(text))


def _abstract(entry: Mapping[str, Any]) -> str:
    contents = entry.get("content") or []
    text = contents[0].get("value", "") if contents else entry.get("summary", "")
    abstract = _plain(text)
    # arXiv's own feeds prefix the abstract: "arXiv:2508.13426v1 Announce Type: cross Abstract: ..."
    marker = abstract.find("Abstract:")
    return abstract[marker + len("Abstract:") :].strip() if 0 <= marker < 80 else abstract


def _authors(entry: Mapping[str, Any]) -> tuple[str, ...]:
    names = [clean_text(a.get("name")) for a in entry.get("authors", []) if isinstance(a, Mapping)]
    if len(names) == 1 and "," in names[0]:
        names = [clean_text(n) for n in re.split(r",|\band\b", names[0])]  # one "A, B and C" string
    return tuple(name for name in names if name)


def _arxiv_id(link: str | None, guid: str) -> tuple[str | None, int | None]:
    for candidate in (guid, link or ""):
        if any(host in candidate.lower() for host in _ARXIV_HOSTS):
            return split_arxiv_id(candidate)
    return None, None


def _doi(entry: Mapping[str, Any], link: str | None) -> str | None:
    for value in (entry.get("prism_doi"), entry.get("dc_identifier"), entry.get("id"), link):
        match = _DOI.search(str(value or ""))
        if match:
            return match.group(1).rstrip(".,;").lower()
    return None


def _pdf_link(entry: Mapping[str, Any]) -> str | None:
    for link in entry.get("links", []):
        if link.get("type") == "application/pdf" or link.get("title") == "pdf":
            return safe_url(link.get("href"))
    return None


def _datetime(value: time.struct_time | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromtimestamp(calendar.timegm(value), tz=UTC)
