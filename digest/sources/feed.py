"""Any RSS or Atom feed (journal tables of contents, lab blogs, bioRxiv or arXiv RSS), via feedparser.

feedparser never raises: it sets `bozo` and salvages what it can with a lenient parser. The rules
here turn that into the project's contract:

- an empty body, an HTML page or JSON is a ParseError, said plainly;
- a well-formed feed with no entries is [] (an honest empty day);
- a feed that is not well-formed keeps the entries it completed; an entry cut off by truncation
  is dropped (its abstract may be cut short and would be stored as if whole), and if no complete
  entry is left the feed is a ParseError, never an empty day.

Entries are keyed by what they carry: an arXiv id (arXiv abs link or `oai:arXiv.org:` guid), a
DOI (prism:doi, dc:identifier, a doi.org link), else the guid or the link as `source_key`.
"""

from __future__ import annotations

import calendar
import io
import re
import xml.sax
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import unquote

import feedparser
from bs4 import BeautifulSoup

from digest.errors import ParseError
from digest.models import Origin, Record
from digest.sources.common import decode_text, describe_start, split_arxiv_id
from digest.text import doi as valid_doi
from digest.text import one_line, optional_line, safe_url

EXPECTED = "expected an RSS or Atom feed"
ARXIV_PDF = "https://arxiv.org/pdf/"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# What may precede the root element: white space, the XML declaration, comments.
_PROLOGUE = re.compile(r"^(?:\s+|<\?xml[^>]*\?>|<!--.*?-->)*", re.DOTALL)
# The start and end tags of an entry, with or without a namespace prefix (<entry>, <rss:item>).
_ENTRY_START = re.compile(rb"<(?:[\w.-]+:)?(?:entry|item)[\s>/]")
_ENTRY_END = re.compile(rb"</(?:[\w.-]+:)?(?:entry|item)\s*>")
# Markup inside text that claims to be plain: script and style with their content, then any tag.
_SCRIPT = re.compile(r"<(script|style)\b[^>]*>.*?</\1\s*>", re.DOTALL | re.IGNORECASE)
_TAG = re.compile(r"</?[A-Za-z][\w:-]*(?:\s[^<>]*)?/?>")
_BLOCK_TAGS = ["br", "p", "div", "li", "tr", "td", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote"]
# Where an arXiv id can sit: an abs page link or an OAI guid ("oai:arXiv.org:2508.13426v1").
_ARXIV_REF = re.compile(r"^(?:https?://(?:[\w-]+\.)*arxiv\.org/abs/|oai:arxiv\.org:)(.+)$", re.I)
# arXiv's own feeds open the abstract with "arXiv:2508.13426v1 Announce Type: cross Abstract: ".
_ARXIV_PREAMBLE = re.compile(r"^arXiv:\S+\s+Announce Type:\s*([\w-]+)\s+Abstract:\s*", re.I)
# Initials after a surname, as in "Zhang, Y., Li, X.-M.": "Y.", "X.-M.", "J. R.", "Ch.", "JM".
_INITIALS = re.compile(r"(?:[A-Z][a-z]?\.(?:[\s-]*[A-Z][a-z]?\.)*|[A-Z]{1,3})")


def parse(body: bytes, origin: Origin) -> list[Record]:
    _refuse_non_feed(body)
    # A stream, never bare bytes or a str: feedparser fetches a str that looks like a URL and
    # opens bytes that name an existing file, and a parser must touch neither network nor disk.
    parsed = feedparser.parse(io.BytesIO(body), sanitize_html=True, resolve_relative_uris=False)
    xml_error = _xml_error(parsed)
    entries: list[Mapping[str, Any]] = list(parsed.entries)
    if xml_error and entries and _last_entry_cut_off(body):
        entries.pop()
    if not entries:
        _refuse_empty(parsed, body, xml_error)
        return []
    return [record for entry in entries if (record := _record(entry, origin)) is not None]


# -- telling a feed from something else ---------------------------------------------------------


def _refuse_non_feed(body: bytes) -> None:
    text = decode_text(body[:2048])
    head = _PROLOGUE.sub("", text.lstrip("\ufeff"), count=1)
    lowered = head.lower()
    if not head:
        raise ParseError(f"{EXPECTED}, got an empty body")
    if lowered.startswith(("<!doctype html", "<html")):
        raise ParseError(f"{EXPECTED}, got an HTML page ({describe_start(head)})")
    if head.startswith(("{", "[")):
        raise ParseError(f"{EXPECTED}, got JSON ({describe_start(head)})")


def _xml_error(parsed: Mapping[str, Any]) -> str | None:
    """What made the XML unreadable, or None when it is well-formed.

    A wrong charset declaration also sets `bozo` (CharacterEncodingOverride) but feedparser has
    then read the feed correctly, so only SAX errors count as damage.
    """
    error = parsed.get("bozo_exception")
    if isinstance(error, xml.sax.SAXParseException):
        return f"{error.getMessage()} at line {error.getLineNumber()}, column {error.getColumnNumber()}"
    if isinstance(error, xml.sax.SAXException):
        return str(error.getMessage())
    return None


def _last_entry_cut_off(body: bytes) -> bool:
    """True when the body ends inside an entry: its last <entry>/<item> was never closed."""
    starts = [match.start() for match in _ENTRY_START.finditer(body)]
    ends = [match.start() for match in _ENTRY_END.finditer(body)]
    return bool(starts) and (not ends or starts[-1] > ends[-1])


def _refuse_empty(parsed: Mapping[str, Any], body: bytes, xml_error: str | None) -> None:
    """No entries: fine for a well-formed feed, a ParseError for anything else."""
    start = describe_start(decode_text(body[:2048]))
    if xml_error:
        raise ParseError(f"{EXPECTED}, got malformed XML ({xml_error}; {start})")
    if not parsed.get("version"):
        error = parsed.get("bozo_exception")
        reason = one_line(error)[:120] if error else "no channel, feed or entry elements"
        raise ParseError(f"{EXPECTED}, got XML that is neither RSS nor Atom ({reason}; {start})")


# -- one entry ----------------------------------------------------------------------------------


def _record(parsed_entry: Mapping[str, Any], origin: Origin) -> Record | None:
    # A plain dict: feedparser's own mapping answers a missing `updated` with `published`.
    entry = dict(parsed_entry)
    title = _plain(entry.get("title_detail"))
    if not title:
        return None
    link = safe_url(entry.get("link"))
    guid = one_line(entry.get("id"))
    arxiv_id, version = _arxiv_id(guid, link)
    doi = _doi(entry)
    abstract, preamble_type = _abstract(entry)
    announce_type = optional_line(entry.get("arxiv_announce_type")) or preamble_type
    published = _utc(entry.get("published_parsed"))
    updated = _utc(entry.get("updated_parsed"))
    listed = _listed(entry.get("published") or entry.get("updated"), published or updated)
    if (announce_type or "").startswith("replace"):
        # A replacement's date in the feed is the new version's, not the first version's.
        published, updated = None, updated or published
    return Record(
        origin=origin,
        title=title,
        arxiv_id=arxiv_id,
        version=version,
        doi=doi,
        source_key=None if (arxiv_id or doi) else (guid or link),
        abstract=abstract,
        authors=_authors(entry),
        categories=_categories(entry),
        published=published,
        updated=updated,
        listed=listed,
        announce_type=announce_type,
        abs_url=link,
        pdf_url=_pdf_url(entry, arxiv_id),
    )


def _plain(detail: object) -> str:
    """A feedparser text construct ({type, value}) as one line of plain text, all markup gone.

    HTML-typed text was sanitised by feedparser (scripts removed) and is reduced to its words.
    Text typed plain is literal, yet feeds often smuggle escaped tags into it; those are removed
    too, while a bare "<" that opens no tag ("n < m", "$n<m$") is kept.
    """
    if not isinstance(detail, Mapping):
        return ""
    value = str(detail.get("value") or "")
    if "html" in str(detail.get("type") or ""):
        return _html_to_text(value)
    return one_line(_TAG.sub(" ", _SCRIPT.sub(" ", value)))


def _html_to_text(html: str) -> str:
    soup = BeautifulSoup(html, "html.parser")
    for hidden in soup(["script", "style"]):
        hidden.decompose()
    # Blocks and line breaks separate words; inline tags do not ("H<sub>2</sub>O" is "H2O").
    for block in soup.find_all(_BLOCK_TAGS):
        block.insert_after(" ")
    return one_line(soup.get_text())


def _abstract(entry: Mapping[str, Any]) -> tuple[str, str | None]:
    """The summary (else the first content) as plain text, and the announce type of an arXiv preamble."""
    contents = entry.get("content") or [None]
    text = _plain(entry.get("summary_detail") or contents[0])
    preamble = _ARXIV_PREAMBLE.match(text)
    if preamble is None:
        return text, None
    return text[preamble.end() :], preamble.group(1).lower()


def _authors(entry: Mapping[str, Any]) -> tuple[str, ...]:
    authors = entry.get("authors") or []
    names = [one_line(a.get("name")) for a in authors if isinstance(a, Mapping)]
    names = [name for name in names if name]
    if len(names) == 1:
        return _split_names(names[0])  # dc:creator is often one "A, B and C" string
    return tuple(names)


def _split_names(text: str) -> tuple[str, ...]:
    """'A. One, B. Two and C. Three' -> three names; 'Zhang, Y.; Li, X.' and 'Zhang, Y., Li, X.' -> two."""
    parts = text.split(";") if ";" in text else re.split(r",|\s+and\s+|\s+&\s+", text)
    names = [name for name in (one_line(part) for part in parts) if name]
    if ";" not in text and _surname_initials_pairs(names):
        names = [
            f"{surname}, {initials}"
            for surname, initials in zip(names[::2], names[1::2], strict=True)
        ]
    return tuple(names)


def _surname_initials_pairs(parts: Sequence[str]) -> bool:
    """True for ['Zhang', 'Y.', 'Li', 'X.-M.']: bioRxiv's RSS writes 'Last, F., Last, F.'."""
    return (
        len(parts) % 2 == 0
        and bool(parts)
        and all(_INITIALS.fullmatch(part) for part in parts[1::2])
        and not any(_INITIALS.fullmatch(part) for part in parts[::2])
    )


def _categories(entry: Mapping[str, Any]) -> tuple[str, ...]:
    tags = entry.get("tags") or []
    terms = (one_line(tag.get("term")) for tag in tags if isinstance(tag, Mapping))
    return tuple(dict.fromkeys(term for term in terms if term))  # unique, in feed order


def _arxiv_id(*candidates: str | None) -> tuple[str | None, int | None]:
    for candidate in candidates:
        match = _ARXIV_REF.match(candidate or "")
        if match:
            arxiv_id, version = split_arxiv_id(match.group(1))
            if arxiv_id:
                return arxiv_id, version
    return None, None


def _doi(entry: Mapping[str, Any]) -> str | None:
    """The first DOI the entry states: prism:doi, dc:identifier, or its guid or a link on doi.org."""
    links = [link.get("href") for link in entry.get("links") or [] if isinstance(link, Mapping)]
    candidates = [entry.get("prism_doi"), entry.get("dc_identifier"), entry.get("id"), *links]
    for candidate in candidates:
        found = valid_doi(unquote(one_line(candidate)))
        if found:
            return found.lower()
    return None


def _pdf_url(entry: Mapping[str, Any], arxiv_id: str | None) -> str | None:
    for link in entry.get("links") or []:
        if isinstance(link, Mapping) and link.get("type") == "application/pdf":
            url = safe_url(link.get("href"))
            if url:
                return url
    # arXiv's feeds link only the abstract page; its PDF address follows from the id.
    return ARXIV_PDF + arxiv_id if arxiv_id else None


def _utc(value: object) -> datetime | None:
    """feedparser's *_parsed (a struct_time, already in UTC) as an aware datetime."""
    if not isinstance(value, tuple) or len(value) < 6:
        return None
    try:
        return _EPOCH + timedelta(seconds=calendar.timegm(value))
    except (OverflowError, TypeError, ValueError):
        return None


def _listed(stated: object, fallback: datetime | None) -> date | None:
    """The day the feed shows, as it writes it: '2025-08-20T00:00:00-04:00' is the 20th.

    Read from the raw date in the feed's own time zone, like the arXiv parsers do, so a journal
    item dated 'Tue, 17 Nov 2026 00:30:00 +0100' is listed on the 17th, not on the UTC 16th.
    """
    text = one_line(stated)
    try:
        return datetime.fromisoformat(text).date()
    except ValueError:
        pass
    try:
        return parsedate_to_datetime(text).date()
    except (TypeError, ValueError, IndexError):
        return fallback.date() if fallback else None
