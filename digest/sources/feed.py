"""Any RSS or Atom feed (journal tables of contents, lab blogs, bioRxiv or arXiv RSS), via feedparser.

feedparser never raises: it sets `bozo` and salvages what it can with a lenient parser. The rules
here turn that into the project's contract:

- an empty body, an HTML page or JSON is a ParseError, said plainly; so is XML declaring an
  external entity or an entity made of entities (XXE, a "billion laughs" bomb): a feed never needs
  one, and nothing is expanded or read;
- a well-formed feed with no entries is [] (an honest empty day);
- a body cut off mid-way (well-formed up to where it stops) keeps the entries it completed, counted
  by expat itself rather than by feedparser's lenient re-parse, whose last entry may be half of one;
  the cut is reported in the result's `skipped`: {"cut off mid-entry": 1} for the entry it broke,
  {"missing after the cut": n} for entries an RSS 1.0 channel listed that never came, and
  {"body cut off between entries": 1} when it broke between two entries of a feed that lists
  none (how many followed is unknown);
  if no complete entry is left the feed is a ParseError, never an empty day;
- other damage mid-document (a stray "&", a wrong charset) is left to feedparser's recovery.

Entries are keyed by what they carry: an arXiv id (in a link or guid on arXiv or on a mirror that
names it, digest.sources.common.arxiv_id_from_link), a DOI (prism:doi, dc:identifier, a doi.org
link), else the guid or the link as `source_key`. Journal tables of contents (Nature's RDF, PRISM
metadata) lose their boilerplate: the "Nature, Published online: <date>; doi:..." line, an abstract
that only repeats the title, authors listed twice; their date is prism:publicationDate or dc:date
when there is no pubDate.
"""

from __future__ import annotations

import calendar
import io
import re
import xml.sax
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import unquote
from xml.parsers import expat

import feedparser
from bs4 import BeautifulSoup

from digest.errors import ParseError
from digest.models import CUT_BETWEEN, CUT_ENTRY, CUT_MISSING, Origin, Parsed, Record
from digest.sources import arxiv
from digest.sources.common import (
    MAX_TITLE,
    arxiv_id_from_link,
    control_share,
    decode_text,
    describe_start,
    parse_datetime,
)
from digest.text import doi as valid_doi
from digest.text import one_line, optional_line, repair, safe_url

EXPECTED = "expected an RSS or Atom feed"
ARXIV_PDF = "https://arxiv.org/pdf/"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# What may precede the root element: white space, the XML declaration, comments.
_PROLOGUE = re.compile(r"^(?:\s+|<\?xml[^>]*\?>|<!--.*?-->)*", re.DOTALL)
# What `skipped` says about entries left out (see the module's docstring).
NO_TITLE = "no title"
TOO_LONG = f"title over {MAX_TITLE} characters"
# The local names of entries: RSS items (0.9x, 1.0, 2.0) and Atom entries.
_ENTRY_NAMES = frozenset({"item", "entry"})
_RDF_LI = "http://www.w3.org/1999/02/22-rdf-syntax-ns# li"
# The XML declaration's charset, when it names a one-byte one UTF-8 bytes are often mislabelled as.
_ONE_BYTE_CHARSET = re.compile(
    rb"^(\s*<\?xml[^>]*?encoding\s*=\s*[\"'])"
    rb"(iso-8859-1|iso-8859-15|latin-?1|windows-1252|cp1252|us-ascii)([\"'])",
    re.IGNORECASE,
)
# Markup inside text that claims to be plain: script and style with their content, then any tag.
_SCRIPT = re.compile(r"<(script|style)\b[^>]*>.*?</\1\s*>", re.DOTALL | re.IGNORECASE)
_TAG = re.compile(r"</?[A-Za-z][\w:-]*(?:\s[^<>]*)?/?>")
_BLOCK_TAGS = ["br", "p", "div", "li", "tr", "td", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote"]
# arXiv's own feeds open the abstract with "arXiv:2508.13426v1 Announce Type: cross Abstract: ".
_ARXIV_PREAMBLE = re.compile(r"^arXiv:\S+\s+Announce Type:\s*([\w-]+)\s+Abstract:\s*", re.I)
# Initials after a surname, as in "Zhang, Y., Li, X.-M.": "Y.", "X.-M.", "J. R.", "Ch.", "JM".
_INITIALS = re.compile(r"(?:[A-Z][a-z]?\.(?:[\s-]*[A-Z][a-z]?\.)*|[A-Z]{1,3})")


# Journals' boilerplate before the abstract: Nature's "Nature, Published online: 13 December 2023;
# doi:10.1038/s41586-023-06831-w" (its journals' name first, "Nature Catalysis, ...").
_PUBLISHED_ONLINE = re.compile(
    r"^[^;]{0,120}?\bPublished online:\s*[^;]{1,40};\s*(?:doi:\s*)?10\.\d{4,9}/\S+\s*",
    re.IGNORECASE,
)
# A placeholder where an abstract should be ("XXX.").
_PLACEHOLDER = re.compile(r"X{3,}\.?", re.IGNORECASE)


def parse(body: bytes, origin: Origin) -> list[Record]:
    _refuse_non_feed(body)
    if arxiv.is_legacy_rss(body):  # ids, marks and author links in markup: arXiv's parser reads them
        return arxiv.parse_rss(body, origin)
    body = _utf8_declared_right(body)
    shape = _shape(body)
    # A stream, never bare bytes or a str: feedparser fetches a str that looks like a URL and
    # opens bytes that name an existing file, and a parser must touch neither network nor disk.
    parsed = feedparser.parse(io.BytesIO(body), sanitize_html=True, resolve_relative_uris=False)
    entries: list[Mapping[str, Any]] = list(parsed.entries)
    skipped: dict[str, int] = {}
    if shape.cut:
        # The lenient re-parse of a cut body makes an entry of the broken one: keep those expat
        # saw end, and say what the cut cost.
        del entries[shape.complete :]
        if shape.open_entry:
            skipped[CUT_ENTRY] = 1
        missing = (shape.listed or 0) - shape.complete - shape.open_entry
        if missing > 0:
            skipped[CUT_MISSING] = missing
        if not skipped:
            skipped[CUT_BETWEEN] = 1
    if not entries:
        # Where a cut body stops, in expat's words; other damage as feedparser judged it (it reads
        # a wrong charset declaration right, and expat does not).
        _refuse_empty(parsed, body, shape.error if shape.cut else _xml_error(parsed))
        return Parsed()
    records = []
    for entry in entries:
        record = _record(entry, origin)
        if isinstance(record, Record):
            records.append(record)
        else:
            skipped[record] = skipped.get(record, 0) + 1
    return Parsed(records, skipped=skipped)


# -- telling a feed from something else ---------------------------------------------------------


def _refuse_non_feed(body: bytes) -> None:
    text = decode_text(body[:2048])
    head = _PROLOGUE.sub("", text.lstrip("\ufeff"), count=1)
    lowered = head.lower()
    if not head:
        raise ParseError(f"{EXPECTED}, got an empty body")
    share = control_share(body[:4096])
    if share:
        raise ParseError(
            f"{EXPECTED}, got binary data ({share}% of the bytes are control characters)"
        )
    if lowered.startswith(("<!doctype html", "<html")):
        raise ParseError(f"{EXPECTED}, got an HTML page ({describe_start(head)})")
    if head.startswith(("{", "[")):
        raise ParseError(f"{EXPECTED}, got JSON ({describe_start(head)})")


def _utf8_declared_right(body: bytes) -> bytes:
    """UTF-8 bytes whose XML declaration names Latin-1, Windows-1252 or ASCII, declared UTF-8.

    Read as declared they would turn "é" into "Ã©"; non-ASCII text that decodes as UTF-8 is
    practically never anything else. (The other way round, Latin-1 bytes declared UTF-8,
    feedparser already reads right.)
    """
    declared = _ONE_BYTE_CHARSET.match(body)
    if declared is None or body.isascii():
        return body
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return body
    return declared.expand(rb"\1utf-8\3") + body[declared.end() :]


class _EntityRefused(Exception):
    """An entity declaration a feed has no use for."""


@dataclass(slots=True)
class _Shape:
    """What expat saw of the body's structure, before feedparser reads it."""

    complete: int = 0  # entries whose end tag was read
    open_entry: bool = False  # an entry was open where the body stopped
    cut: bool = False  # well-formed until the body ended mid-document
    listed: int | None = None  # the entries an RSS 1.0 channel lists (its rdf:Seq)
    error: str | None = None  # expat's words for where the body stopped


def _shape(body: bytes) -> _Shape:
    """Count complete entries and tell a cut-off body from one damaged mid-way; refuse external
    entities and entities built of entities.

    expat reads no DTD and no external entity (param entity parsing is off, and no handler loads
    one), and the declaration handler stops the parse before anything is expanded.
    """
    shape = _Shape()
    parser = expat.ParserCreate(namespace_separator=" ")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    depth = 0  # entries open (an entry inside an entry is not counted twice)
    in_listing = False

    def start(name: str, _attributes: object) -> None:
        nonlocal depth, in_listing
        local = name.rpartition(" ")[2]
        if local in _ENTRY_NAMES:
            depth += 1
        elif local == "items" and depth == 0:
            in_listing = True
        elif in_listing and name == _RDF_LI:
            shape.listed = (shape.listed or 0) + 1

    def end(name: str) -> None:
        nonlocal depth, in_listing
        local = name.rpartition(" ")[2]
        if local in _ENTRY_NAMES and depth:
            depth -= 1
            shape.complete += depth == 0
        elif local == "items":
            in_listing = False

    def declared(
        name: str, _parameter: int, value: str | None, _base: object, system: str | None,
        public: str | None, _notation: object,
    ) -> None:
        if system or public or (value is not None and "&" in value):
            raise _EntityRefused(name)

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.EntityDeclHandler = declared
    try:
        parser.Parse(body, False)
    except _EntityRefused as refused:
        raise ParseError(
            f"{EXPECTED}, got XML declaring the entity {one_line(refused, 40)!r} (external, or "
            "made of other entities): refused, a feed never needs one"
        ) from None
    except expat.ExpatError:  # damaged mid-way: feedparser's recovery decides
        return _Shape()
    except ValueError:  # a charset expat cannot read ("multi-byte encodings are not supported")
        return _Shape()
    try:
        parser.Parse(b"", True)
    except expat.ExpatError as exc:
        shape.cut = True
        shape.open_entry = depth > 0
        shape.error = _expat_error(exc)
    return shape


def _expat_error(exc: expat.ExpatError) -> str:
    return f"{expat.errors.messages[exc.code]} at line {exc.lineno}, column {exc.offset}"


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


def _record(parsed_entry: Mapping[str, Any], origin: Origin) -> Record | str:
    """The entry as a Record, or why it was left out (a reason for `skipped`)."""
    # A plain dict: feedparser's own mapping answers a missing `updated` with `published`.
    entry = dict(parsed_entry)
    title = _plain(entry.get("title_detail"))
    if not title:
        return NO_TITLE
    if len(title) > MAX_TITLE:
        return TOO_LONG
    link = safe_url(entry.get("link"))
    guid = one_line(entry.get("id"))
    arxiv_id, version = _arxiv_id(guid, link, *_hrefs(entry))
    doi = _doi(entry)
    authors = _authors(entry)
    abstract, preamble_type = _abstract(entry)
    abstract = _without_boilerplate(abstract, title, authors)
    announce_type = optional_line(entry.get("arxiv_announce_type")) or preamble_type
    published = _utc(entry.get("published_parsed"))
    updated = _utc(entry.get("updated_parsed"))
    stated = entry.get("published") or entry.get("updated")
    if published is None and any(key.startswith("prism_") for key in entry):
        # A journal's article has one date, its publication's: PRISM's, else Dublin Core's
        # (dc:date, which feedparser files as `updated`), else its issue's cover date.
        published, stated = _journal_date(entry) or (updated, stated)
    listed = _listed(stated, published or updated)
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
        authors=authors,
        categories=_categories(entry),
        published=published,
        updated=updated,
        listed=listed,
        announce_type=announce_type,
        abs_url=link,
        pdf_url=_pdf_url(entry, arxiv_id),
    )


def _journal_date(entry: Mapping[str, Any]) -> tuple[datetime, str] | None:
    """prism:publicationDate, else dc:date, else prism:coverDate, with the text it was read from."""
    for key in ("prism_publicationdate", "updated", "prism_coverdate"):
        raw = one_line(entry.get(key))
        when = _utc(entry.get("updated_parsed")) if key == "updated" else parse_datetime(raw)
        if raw and when:
            return when, raw
    return None


def _without_boilerplate(abstract: str, title: str, authors: Sequence[str]) -> str:
    """The abstract without what journals' feeds put before it: Nature's "Nature, Published
    online: <date>; doi:<doi>" line, a repeat of the title, the author list; and nothing at all
    when that is all there was, or a placeholder ("XXX.")."""
    text = _PUBLISHED_ONLINE.sub("", abstract, count=1)
    text = _without_prefix(text, title)
    if len(authors) > 1:  # one name first is more often a sentence's subject than a byline
        text = _without_prefix(text, ", ".join(authors))
    return "" if _PLACEHOLDER.fullmatch(text) else text


def _without_prefix(text: str, prefix: str) -> str:
    """`text` without a leading `prefix` (case, spacing and punctuation aside) and the
    punctuation after it, when what follows starts anew (a capital, a digit, a sign) rather than
    goes on with the sentence: "Fresh water from thin air is..." stays whole."""
    wanted = _fold(prefix)
    if not wanted or not _fold(text).startswith(wanted):
        return text
    for end in range(len(wanted) // 2, len(text) + 1):
        if (end == len(text) or not text[end].isalnum()) and _fold(text[:end]) == wanted:
            rest = text[end:].lstrip(" .,:;|-–—")
            return text if rest[:1].islower() else rest
    return text


def _fold(text: str) -> str:
    return re.sub(r"[\W_]+", " ", text.casefold()).strip()


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
        return _html_to_text(repair(value))
    return one_line(repair(_TAG.sub(" ", _SCRIPT.sub(" ", value))))


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
    names = [one_line(repair(str(a.get("name") or ""))) for a in authors if isinstance(a, Mapping)]
    names = [name for name in names if name]
    if len(names) == 1:
        return _split_names(names[0])  # dc:creator is often one "A, B and C" string
    # Journals' feeds may name an author twice (Nature repeats a consortium's members).
    return tuple(dict.fromkeys(names))


def _split_names(text: str) -> tuple[str, ...]:
    """'A. One, B. Two and C. Three' -> three names; 'Zhang, Y.; Li, X.' and 'Zhang, Y., Li, X.' -> two."""
    parts = text.split(";") if ";" in text else re.split(r",|\s+and\s+|\s+&\s+", text)
    names = [name for name in (one_line(part) for part in parts) if name]
    if ";" not in text and _surname_initials_pairs(names):
        names = [
            f"{surname}, {initials}"
            for surname, initials in zip(names[::2], names[1::2], strict=True)
        ]
    return tuple(dict.fromkeys(names))


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
    """The first arXiv id a guid or link names (on arXiv, as an OAI id, or on a mirror)."""
    for candidate in candidates:
        arxiv_id, version = arxiv_id_from_link(candidate)
        if arxiv_id:
            return arxiv_id, version
    return None, None


def _hrefs(entry: Mapping[str, Any]) -> list[str]:
    return [str(link.get("href")) for link in entry.get("links") or [] if isinstance(link, Mapping)]


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
