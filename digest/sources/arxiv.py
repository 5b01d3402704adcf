"""arXiv: listing pages, the RSS service (RSS 2.0 and Atom, and the legacy RSS 1.0 feeds of
export.arxiv.org/rss) and the export API (Atom).

arXiv marks each announced paper as new, a cross-list from another category, or a replacement;
records carry that as `announce_type` (new, cross, replace, replace-cross) so later steps can, for
instance, leave replacements out of a digest.

Bodies are read as what they are, not as what they claim (issue 14):

- Charset. An XML body declared as a single-byte charset (ISO-8859-1, windows-1252, ASCII) whose
  bytes are UTF-8 is read as UTF-8; in a body declared (or defaulting to) UTF-8, a byte sequence
  that is not UTF-8 is read as windows-1252, the usual wrong charset, and the rest stays UTF-8.
  Listing pages are read the same way whatever their <meta charset>. Mojibake left in a field
  ("PÃ¡l") is repaired by digest.text.repair.
- A body cut short. The entries it completed are kept; the entry it cut is left out and counted
  in the run (`Parsed.skipped`, "cut off mid-entry"), and so are the entries its envelope
  announced but it no longer holds (RSS 1.0's item list, the API's result counts, a listing's
  paging or "showing N of M entries"): "missing after the cut". A body cut between two entries
  where nothing tells how many followed says "body cut off between entries". A cut body with no
  complete entry is a ParseError, never an empty day.
- An HTML error page (503, "Rate exceeded", not found, maintenance) is a ParseError that quotes
  the page's own title, not a layout change.
- XML that declares its own entities (billion laughs, an external entity naming a file) is
  refused unread; the parser never expands entities nor opens a file or the network anyway.
"""

from __future__ import annotations

import codecs
import contextlib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from email.utils import parsedate_to_datetime

import lxml.html
from lxml import etree

from digest.errors import LayoutChanged, ParseError
from digest.models import CUT_BETWEEN, CUT_ENTRY, CUT_MISSING, Origin, Parsed, Record
from digest.sources.common import describe_start, parse_datetime, split_arxiv_id
from digest.text import doi as valid_doi
from digest.text import one_line, repair

ATOM = "{http://www.w3.org/2005/Atom}"
ARXIV = "{http://arxiv.org/schemas/atom}"
DC = "{http://purl.org/dc/elements/1.1/}"
OPENSEARCH = "{http://a9.com/-/spec/opensearch/1.1/}"
RDF = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}"
RSS1 = "{http://purl.org/rss/1.0/}"
ABS = "https://arxiv.org/abs/"
PDF = "https://arxiv.org/pdf/"

# Why entries were left out (Parsed.skipped), as the source's run shows them; the cut reasons
# are the feed kind's too (digest.sources.feed).
UNREADABLE = "no arXiv id or no title"

# The elements that are entries: RSS items (1.0 and 2.0), Atom entries.
_ENTRY_NAMES = frozenset({"entry", "item"})
# A function that reads one whole entry into a record (None: no arXiv id or no title).
_EntryReader = Callable[[etree._Element, Origin], Record | None]
_ENTRY_END = re.compile(rb"</(?:[\w.-]+:)?(?:entry|item)\s*>")
# A DOCTYPE with an internal subset: entity declarations, which arXiv never sends.
_INTERNAL_SUBSET = re.compile(rb"<!DOCTYPE[^>\[]*\[", re.IGNORECASE)
# The XML declaration's encoding, after an optional byte order mark.
_DECLARED = re.compile(rb"""^(?:\xef\xbb\xbf)?\s*<\?xml\b[^>]*?\bencoding\s*=\s*["']([^"']*)["']""")
_SINGLE_BYTE = frozenset(
    {"iso-8859-1", "iso8859-1", "iso_8859-1", "latin-1", "latin1", "l1", "windows-1252",
     "cp1252", "us-ascii", "ascii", "iso-8859-15", "latin-9"}
)

_CATEGORY_CODE = re.compile(r"\(([A-Za-z-]+(?:\.[A-Za-z-]+)?)\)\s*$")
_DESCRIPTOR = re.compile(r"^\s*(Title|Authors|Comments|Journal-ref|Subjects):\s*")
_DAY_HEADING = re.compile(r"^\w{3}, (\d{1,2} \w{3} \d{4})")
_PAGE_DAY = re.compile(r"submissions for \w{3}, (\d{1,2} \w{3} \d{2,4})")
_SHOWING = re.compile(r"showing (?:first )?(\d+) of \d+ entries", re.IGNORECASE)
_ANNOUNCE = re.compile(r"Announce Type:\s*([\w-]+)")
# A legacy feed's title ends with the id, the primary category and a mark:
# "Recent Top quark results. (arXiv:1805.09166v1 [hep-ex] CROSS LISTED)".
_LEGACY_SUFFIX = re.compile(
    r"\.?\s*\(arXiv:(?P<ref>\S+?)\s*\[(?P<category>[^\]\s]+)\]"
    r"(?:\s+(?P<mark>UPDATED|CROSS LISTED))?\)\s*$"
)
_FEED_CATEGORY = re.compile(r"^(\S+) updates on arXiv\.org", re.IGNORECASE)
_NOT_SHOWN = re.compile(r"(\d+) additional authors? not shown", re.IGNORECASE)
# What the title or heading of a page that is not an answer says.
_ERROR_WORDS = re.compile(
    r"\b(?:[45]\d\d|error|unavailable|rate[ -]?(?:limit(?:ed)?|exceeded)|too many requests|"
    r"not found|forbidden|access denied|maintenance|temporarily|bad gateway|timed? ?out|"
    r"blocked|captcha)\b",
    re.IGNORECASE,
)


def _cp1252_fallback(error: UnicodeError) -> tuple[str, int]:
    """A codec error handler: bytes that are not UTF-8 read as windows-1252 (else Latin-1)."""
    if not isinstance(error, UnicodeDecodeError):
        raise error
    bad = error.object[error.start : error.end]
    text = "".join(
        bytes([byte]).decode("cp1252", errors="ignore") or chr(byte) for byte in bad
    )
    return text, error.end


codecs.register_error("digest-cp1252", _cp1252_fallback)


# -- listing pages ------------------------------------------------------------------------------


def parse_listing_html(body: bytes, origin: Origin) -> list[Record]:
    """/list/<cat>/new, /list/<cat>/recent and monthly listing pages (2024+ arxiv-browse layout)."""
    what = "an arXiv listing page"
    _refuse_non_html(body)
    # A page that does not end is cut: only entries whose <dd> the body closes are whole.
    cut = not body.rstrip().lower().endswith(b"</html>")
    try:
        root = _html_root(body)
    except (etree.ParserError, ValueError) as exc:
        if cut:
            raise ParseError(_cut_before_first(what)) from None
        raise ParseError(f"expected {what}, got unparsable HTML ({exc})") from None
    if not _xpath(root, '//dl[@id="articles"]'):
        _refuse_error_page(root)
        if not body.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<"):
            raise ParseError(f"expected {what}, got plain text: '{_first_words(body)}'")
        if cut:
            raise ParseError(_cut_before_first(what))
        raise LayoutChanged("no <dl id='articles'> listing on the page")
    start = re.search(rb"""id=["']articles["']""", body)
    closed = len(re.findall(rb"</dd\s*>", body[start.start() :], re.IGNORECASE)) if start else 0
    records: list[Record] = []
    day = _page_day(root)
    section = None
    pending_dt = None
    entries = complete = cut_entries = unreadable = 0
    for element in _xpath(root, '//h3 | //dl[@id="articles"]/dt | //dl[@id="articles"]/dd'):
        if element.tag == "h3":
            heading = one_line(element.text_content())
            day = _heading_day(heading) or day
            section = _heading_section(heading) or section
        elif element.tag == "dt":
            if pending_dt is not None:  # a <dt> without its <dd>
                unreadable += 1
            pending_dt = element
        elif pending_dt is not None:
            entries += 1
            pending_dt, dt = None, pending_dt
            if cut and entries > closed:
                cut_entries += 1
                continue
            complete += 1
            record = _listing_record(dt, element, origin, day, section)
            if record is None:
                unreadable += 1
            else:
                records.append(record)
    if pending_dt is not None:
        if cut:
            cut_entries += 1
        else:
            unreadable += 1
    return _finish(
        records,
        what=what,
        cut=cut,
        complete=complete,
        cut_entries=cut_entries,
        unreadable=unreadable,
        announced=_listing_announced(root, complete + cut_entries) if cut else None,
        more_may_follow=True,
    )


def _listing_announced(root: lxml.html.HtmlElement, seen: int) -> int | None:
    """How many entries a page says it shows: its paging ("Total of 408 entries: 1-50"), else
    its day or section headings ("showing 47 of 47 entries") when they count more than were
    seen. None when it cannot tell (the sections a cut page lost say nothing)."""
    for span in _xpath(root, '//div[@class="paging"]/span'):
        match = re.fullmatch(r"(\d+)\s*-\s*(\d+)", one_line(span.text_content()))
        if match:
            return int(match.group(2)) - int(match.group(1)) + 1
    shown = sum(
        int(match.group(1))
        for h3 in _xpath(root, "//h3")
        if (match := _SHOWING.search(one_line(h3.text_content())))
    )
    return shown if shown > seen else None


def _heading_day(heading: str) -> datetime | None:
    match = _DAY_HEADING.match(heading)
    if not match:
        return None
    try:
        return datetime.strptime(match.group(1), "%d %b %Y").replace(tzinfo=UTC)
    except ValueError:
        return None


def _page_day(root: lxml.html.HtmlElement) -> datetime | None:
    """/new pages say their day once, in the h2: 'New submissions for Fri, 20 Nov 26'."""
    for heading in _xpath(root, "//h2"):
        match = _PAGE_DAY.search(one_line(heading.text_content()))
        if match:
            for pattern in ("%d %b %y", "%d %b %Y"):
                try:
                    return datetime.strptime(match.group(1), pattern).replace(tzinfo=UTC)
                except ValueError:
                    continue
    return None


def _heading_section(heading: str) -> str | None:
    lowered = heading.lower()
    if lowered.startswith("new submissions"):
        return "new"
    if lowered.startswith(("cross submissions", "cross-lists", "cross lists")):
        return "cross"
    if lowered.startswith("replacement"):
        return "replace"
    return None


def _listing_record(
    dt: lxml.html.HtmlElement,
    dd: lxml.html.HtmlElement,
    origin: Origin,
    day: datetime | None,
    section: str | None,
) -> Record | None:
    links = _xpath(dt, './/a[@title="Abstract"]')
    arxiv_id, version = split_arxiv_id(
        (links[0].get("href", "") + " " + links[0].text_content()) if links else dt.text_content()
    )
    title = _field(dd, "list-title")
    if not arxiv_id or not title:
        return None
    marker = dt.text_content().lower()
    is_cross = "cross-list" in marker
    if section == "replace" or "(replaced)" in marker:
        announce = "replace-cross" if is_cross else "replace"
    elif section == "cross" or is_cross:
        announce = "cross"
    else:
        announce = "new"
    categories = _subjects(dd)
    primary = _xpath(dd, './/span[@class="primary-subject"]')
    primary_codes = _CATEGORY_CODE.findall(primary[0].text_content()) if primary else []
    abstract = _xpath(dd, './/p[contains(concat(" ", normalize-space(@class), " "), " mathjax ")]')
    return Record(
        origin=origin,
        title=title,
        arxiv_id=arxiv_id,
        version=version,
        abstract=_clean(abstract[0].text_content()) if abstract else "",
        authors=tuple(
            name
            for name in (
                _clean(a.text_content())
                for a in _xpath(dd, './/div[contains(@class, "list-authors")]//a')
            )
            if name
        ),
        categories=categories,
        primary_category=primary_codes[0]
        if primary_codes
        else (categories[0] if categories else None),
        listed=day.date() if day else None,
        announce_type=announce,
        abs_url=ABS + arxiv_id,
        pdf_url=PDF + arxiv_id,
        comment=_field(dd, "list-comments") or None,
        journal_ref=_field(dd, "list-journal-ref") or None,
    )


def _field(dd: lxml.html.HtmlElement, css_class: str) -> str:
    found = _xpath(
        dd, f'.//div[contains(concat(" ", normalize-space(@class), " "), " {css_class} ")]'
    )
    if not found:
        return ""
    return one_line(_DESCRIPTOR.sub("", _clean(found[0].text_content())))


def _subjects(dd: lxml.html.HtmlElement) -> tuple[str, ...]:
    text = _field(dd, "list-subjects")
    codes = []
    for part in text.split(";"):
        match = _CATEGORY_CODE.search(part.strip())
        if match and match.group(1) not in codes:
            codes.append(match.group(1))
    return tuple(codes)


# -- the RSS service: rss.arxiv.org/rss/<cat> and /atom/<cat>; export.arxiv.org/rss/<cat> -------


def parse_rss(body: bytes, origin: Origin) -> list[Record]:
    """arXiv's RSS service in either flavour, and the legacy RSS 1.0 feeds. An empty channel
    (weekends, holidays) is []."""
    what = "an arXiv RSS or Atom feed"
    document = _xml(body, what)
    root = document.root
    if root.tag == f"{ATOM}feed":
        return _records(document, root.iter(f"{ATOM}entry"), what, _rss_atom_entry, origin)
    if root.tag == "rss":
        return _records(document, root.iter("item"), what, _rss_item, origin)
    if root.tag == f"{RDF}RDF":
        return _legacy_rss(document, origin, what)
    raise ParseError(f"expected an RSS or Atom feed, got a <{_local_name(root)}> document")


def is_legacy_rss(body: bytes) -> bool:
    """True for one of arXiv's RSS 1.0 feeds (export.arxiv.org/rss/<cat>, 2008-2024): the feed
    kind hands them to `parse_rss`, which knows their titles and author links."""
    head = body[:4096]
    return b"http://purl.org/rss/1.0/" in head and (
        re.search(rb"""<channel\s+rdf:about=["']https?://(?:export\.)?arxiv\.org/""", head)
        is not None
    )


def _rss_atom_entry(entry: etree._Element, origin: Origin) -> Record | None:
    arxiv_id, version = split_arxiv_id(_text(entry, f"{ATOM}id"))
    title = _clean(_text(entry, f"{ATOM}title"))
    if not arxiv_id or not title:
        return None
    summary = _text(entry, f"{ATOM}summary")
    return Record(
        origin=origin,
        title=title,
        arxiv_id=arxiv_id,
        version=version,
        abstract=_abstract_after_marker(summary),
        authors=_creators(_text(entry, f"{DC}creator")),
        categories=tuple(c.get("term", "") for c in entry.iter(f"{ATOM}category") if c.get("term")),
        updated=parse_datetime(_text(entry, f"{ATOM}updated")),
        listed=_local_date(_text(entry, f"{ATOM}published")),
        announce_type=_announce_type(entry, summary),
        abs_url=ABS + arxiv_id,
        pdf_url=PDF + arxiv_id,
    )


def _rss_item(item: etree._Element, origin: Origin) -> Record | None:
    arxiv_id, version = split_arxiv_id(_text(item, "guid") or _text(item, "link"))
    title = _clean(_text(item, "title"))
    if not arxiv_id or not title:
        return None
    description = _text(item, "description")
    listed = None
    with contextlib.suppress(TypeError, ValueError):
        listed = parsedate_to_datetime(_text(item, "pubDate")).date()
    return Record(
        origin=origin,
        title=title,
        arxiv_id=arxiv_id,
        version=version,
        abstract=_abstract_after_marker(description),
        authors=_creators(_text(item, f"{DC}creator")),
        categories=tuple(one_line(c.text) for c in item.iter("category") if one_line(c.text)),
        listed=listed,
        announce_type=_announce_type(item, description),
        abs_url=ABS + arxiv_id,
        pdf_url=PDF + arxiv_id,
    )


def _abstract_after_marker(text: str) -> str:
    """'arXiv:2508.13426v1 Announce Type: cross \\nAbstract: As large...' -> 'As large...'."""
    _, found, abstract = text.partition("Abstract:")
    return _clean(abstract if found else text)


def _announce_type(element: etree._Element, summary: str) -> str | None:
    declared = one_line(_text(element, f"{ARXIV}announce_type"))
    if declared:
        return declared
    match = _ANNOUNCE.search(summary)
    return match.group(1) if match else None


def _creators(text: str) -> tuple[str, ...]:
    """dc:creator is one string: 'A. Author, B. Author and C. Author'."""
    names = []
    for part in re.split(r",|\band\b", repair(text)):
        name = one_line(part)
        if name:
            names.append(name)
    return tuple(names)


def _local_date(text: str) -> date | None:
    """The announce day as arXiv states it ('2025-08-20T00:00:00-04:00' is the 20th, in New York)."""
    try:
        return date.fromisoformat(one_line(text)[:10])
    except ValueError:
        return None


# -- the legacy RSS 1.0 feeds: export.arxiv.org/rss/<cat> ---------------------------------------


def _legacy_rss(document: _Document, origin: Origin, what: str) -> list[Record]:
    """RSS 1.0 (rdf:RDF) as arXiv served it until 2024: the id, version, primary category and a
    mark in the title, the abstract as HTML, the authors as HTML links."""
    root = document.root
    channel = root.find(f"{RSS1}channel")
    feed_category = None
    listed = None
    announced = None
    if channel is not None:
        match = _FEED_CATEGORY.match(one_line(_text(channel, f"{RSS1}title")))
        feed_category = match.group(1) if match else None
        listed = _mailing_day(_text(channel, f"{DC}date"))
        sequence = channel.find(f"{RSS1}items/{RDF}Seq")
        if sequence is not None:
            announced = len(sequence.findall(f"{RDF}li"))

    def record(item: etree._Element, origin: Origin) -> Record | None:
        return _legacy_item(item, origin, feed_category, listed)

    return _records(document, root.iter(f"{RSS1}item"), what, record, origin, announced)


def _legacy_item(
    item: etree._Element, origin: Origin, feed_category: str | None, listed: date | None
) -> Record | None:
    title = _clean(_text(item, f"{RSS1}title"))
    suffix = _LEGACY_SUFFIX.search(title)
    if suffix:
        title = title[: suffix.start()].rstrip()
        arxiv_id, version = split_arxiv_id(suffix.group("ref"))
        primary: str | None = suffix.group("category")
        mark = suffix.group("mark")
    else:
        arxiv_id, version = None, None
        primary, mark = None, None
    if not arxiv_id:
        arxiv_id, version = split_arxiv_id(item.get(f"{RDF}about") or _text(item, f"{RSS1}link"))
    if not arxiv_id or not title:
        return None
    same = primary is None or feed_category is None or (
        primary == feed_category or primary.startswith(feed_category + ".")
    )
    if mark == "UPDATED":
        announce = "replace" if same else "replace-cross"
    elif mark == "CROSS LISTED" or not same:
        announce = "cross"
    else:
        announce = "new"
    categories = tuple(
        dict.fromkeys(c for c in (primary, None if same else feed_category) if c)
    )
    creator = item.find(f"{DC}creator")
    authors, author_count = _linked_authors(_markup(creator) if creator is not None else "")
    description = item.find(f"{RSS1}description")
    return Record(
        origin=origin,
        title=title,
        arxiv_id=arxiv_id,
        version=version,
        abstract=_html_to_text(_markup(description)) if description is not None else "",
        authors=authors,
        author_count=author_count,
        categories=categories,
        primary_category=primary,
        listed=listed,
        announce_type=announce,
        abs_url=ABS + arxiv_id,
        pdf_url=PDF + arxiv_id,
    )


def _mailing_day(text: str) -> date | None:
    """The listing day of a legacy feed. Its dc:date is the mailing, '2018-05-23T20:30:00-05:00':
    arXiv announces at 20:00 New York time, and names the listing after the next day."""
    try:
        stamp = datetime.fromisoformat(one_line(text))
    except ValueError:
        return None
    return stamp.date() + timedelta(days=1) if stamp.hour >= 20 else stamp.date()


def _markup(element: etree._Element) -> str:
    """What an element holds as HTML: its text (escaped HTML, as arXiv sent it: the parser has
    unescaped it) and its children (HTML a copy of the feed stored as markup)."""
    children = "".join(etree.tostring(child, encoding="unicode", with_tail=True) for child in element)
    return (element.text or "") + children


def _html_to_text(markup: str) -> str:
    """An HTML fragment as one line of plain text: paragraphs and line breaks separate words,
    scripts and styles are dropped, character references ("2.6&lt;\\eta") are read."""
    if "<" not in markup and "&" not in markup:
        return _clean(markup)
    fragment = _fragment(markup)
    if fragment is None:
        return _clean(markup)
    return _clean(fragment.text_content())


def _fragment(markup: str) -> lxml.html.HtmlElement | None:
    try:
        fragment = lxml.html.fragment_fromstring(markup, create_parent="div")
    except (etree.ParserError, ValueError):
        return None
    for hidden in _xpath(fragment, ".//script | .//style"):
        hidden.drop_tree()
    for block in _xpath(fragment, ".//p | .//br | .//div | .//li"):
        block.tail = " " + (block.tail or "")
    return fragment


def _linked_authors(markup: str) -> tuple[tuple[str, ...], int | None]:
    """dc:creator as arXiv's legacy feeds wrote it: '<a href="...">Name</a>, <a ...>Name</a>',
    sometimes with 'et al. (909 additional authors not shown)'. The names, and the number of
    authors when some are not shown."""
    if "<a" not in markup.lower():
        return _creators(_html_to_text(markup)), None
    fragment = _fragment(markup)
    if fragment is None:
        return _creators(markup), None
    names = tuple(name for name in (_clean(a.text_content()) for a in fragment.iter("a")) if name)
    hidden = _NOT_SHOWN.search(one_line(fragment.text_content()))
    return names, len(names) + int(hidden.group(1)) if hidden else None


# -- the export API: export.arxiv.org/api/query -------------------------------------------------


def parse_api(body: bytes, origin: Origin) -> list[Record]:
    """The API's Atom feed, current (2025+) and legacy format. Its error feed becomes a ParseError."""
    what = "an arXiv API Atom feed"
    document = _xml(body, what)
    root = document.root
    if root.tag != f"{ATOM}feed":
        raise ParseError(
            f"expected an arXiv API Atom feed, got a <{_local_name(root)}> document"
        )
    entries = list(root.iter(f"{ATOM}entry"))
    for entry in entries:
        entry_id = _text(entry, f"{ATOM}id")
        if "/api/errors" in entry_id:
            raise ParseError(
                f"arXiv API error: {one_line(_text(entry, f'{ATOM}summary')) or entry_id}"
            )
    return _records(document, entries, what, _api_entry, origin, _api_announced(root))


def _api_announced(root: etree._Element) -> int | None:
    """How many entries the answer says it holds: this page of the results."""
    try:
        total = int(one_line(_text(root, f"{OPENSEARCH}totalResults")))
        start = int(one_line(_text(root, f"{OPENSEARCH}startIndex")) or 0)
        per_page = int(one_line(_text(root, f"{OPENSEARCH}itemsPerPage")))
    except ValueError:
        return None
    return max(0, min(per_page, total - start))


def _api_entry(entry: etree._Element, origin: Origin) -> Record | None:
    arxiv_id, version = split_arxiv_id(_text(entry, f"{ATOM}id"))
    title = _clean(_text(entry, f"{ATOM}title"))
    if not arxiv_id or not title:
        return None
    primary = entry.find(f"{ARXIV}primary_category")
    categories = tuple(c.get("term", "") for c in entry.iter(f"{ATOM}category") if c.get("term"))
    return Record(
        origin=origin,
        title=title,
        arxiv_id=arxiv_id,
        version=version,
        doi=valid_doi(_text(entry, f"{ARXIV}doi")),
        abstract=_clean(_text(entry, f"{ATOM}summary")),
        authors=tuple(
            name
            for name in (_clean(_text(a, f"{ATOM}name")) for a in entry.iter(f"{ATOM}author"))
            if name
        ),
        categories=categories,
        primary_category=(primary.get("term") if primary is not None else None)
        or (categories[0] if categories else None),
        published=parse_datetime(_text(entry, f"{ATOM}published")),
        updated=parse_datetime(_text(entry, f"{ATOM}updated")),
        abs_url=ABS + arxiv_id,
        pdf_url=PDF + arxiv_id,  # unversioned: the latest version, like the paper's key
        comment=_clean(_text(entry, f"{ARXIV}comment")) or None,
        journal_ref=_clean(_text(entry, f"{ARXIV}journal_ref")) or None,
    )


# -- reading a body -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Document:
    """An XML body as far as it goes: its root, the entries (item, entry) the body closed, and
    whether the body ends before the document does (`tail`: what follows the last closed entry)."""

    root: etree._Element
    closed: frozenset[etree._Element]
    cut: bool
    tail: bytes


def _xml(body: bytes, what: str) -> _Document:
    _refuse_non_xml(body, what)
    body = _utf8(body)
    # A hardened parser: no entity expansion (billion laughs), no DTD, file or network access
    # (XXE), no huge trees. It is fed the body, then told the end: a body cut short is known.
    parser = etree.XMLPullParser(
        events=("start", "end"),
        resolve_entities=False,
        no_network=True,
        huge_tree=False,
        load_dtd=False,
    )
    try:
        parser.feed(body)
    except etree.XMLSyntaxError as exc:
        raise ParseError(f"expected {what}, got malformed XML: {exc}") from None
    try:
        parser.close()
        error = None
    except etree.XMLSyntaxError as exc:
        error = exc
    root = None
    closed = []
    for event, element in parser.read_events():
        if not isinstance(element, etree._Element):
            continue
        if root is None:
            root = element
        elif event == "end" and _local_name(element) in _ENTRY_NAMES:
            closed.append(element)
    # Well-formed as far as it goes, but not closed: the body was cut. (The parser keeps the end
    # of what it is fed until it is told there is no more, so an error there shows only now.)
    cut = error is not None and (root is None or not _closes(body, root))
    if error is not None and not cut:
        raise ParseError(f"expected {what}, got malformed XML: {error}")
    if root is None or (cut and not closed):
        raise ParseError(_cut_before_first(what))
    ends = list(_ENTRY_END.finditer(body))
    tail = body[ends[-1].end() :].strip() if cut and ends else b""
    return _Document(root, frozenset(closed), cut, tail)


def _records(
    document: _Document,
    entries: Iterable[etree._Element],
    what: str,
    read: _EntryReader,
    origin: Origin,
    announced: int | None = None,
) -> Parsed:
    """The records of a feed's entries: whole ones read, a cut one left out and counted."""
    records = []
    complete = cut_entries = unreadable = 0
    for entry in entries:
        if entry not in document.closed:
            cut_entries += 1
            continue
        complete += 1
        record = read(entry, origin)
        if record is None:
            unreadable += 1
        else:
            records.append(record)
    if document.cut and not cut_entries and document.tail and not document.tail.startswith(b"</"):
        cut_entries = 1  # an entry's start tag, itself cut
    return _finish(
        records,
        what=what,
        cut=document.cut,
        complete=complete,
        cut_entries=cut_entries,
        unreadable=unreadable,
        announced=announced,
        more_may_follow=not document.tail.startswith(b"</"),
    )


def _finish(
    records: Sequence[Record],
    *,
    what: str,
    cut: bool,
    complete: int,
    cut_entries: int,
    unreadable: int,
    announced: int | None,
    more_may_follow: bool,
) -> Parsed:
    """The records, with what was left out; a ParseError when a cut body cannot be trusted."""
    skipped: dict[str, int] = {}
    if unreadable:
        skipped[UNREADABLE] = unreadable
    if not cut:
        return Parsed(records, skipped)
    if complete == 0:
        raise ParseError(_cut_before_first(what))
    if cut_entries:
        skipped[CUT_ENTRY] = cut_entries
    if announced is not None:
        missing = announced - complete - cut_entries
        if missing > 0:
            skipped[CUT_MISSING] = missing
    elif more_may_follow and not cut_entries:
        skipped[CUT_BETWEEN] = 1  # whether entries followed, and how many, nothing tells
    return Parsed(records, skipped)


def _closes(body: bytes, root: etree._Element) -> bool:
    """True when the body ends with its root's end tag ("</rss>", "</rdf:RDF>")."""
    end = re.search(rb"</([\w.:-]+)\s*>\s*$", body[-256:])
    return end is not None and end.group(1).rsplit(b":", 1)[-1].decode() == _local_name(root)


def _cut_before_first(what: str) -> str:
    return f"expected {what}, got a body cut short before its first complete entry"


def _utf8(body: bytes) -> bytes:
    """The body as UTF-8 XML, its declared charset checked against its bytes (see the module's
    docstring). A last character cut in half is dropped with the rest of the cut."""
    declared_match = _DECLARED.match(body)
    declared = declared_match.group(1).decode("ascii", "replace").strip().lower() if (
        declared_match
    ) else "utf-8"
    length = _utf8_length(body)
    if declared in _SINGLE_BYTE:
        if length is None or body[:length].isascii() or declared_match is None:
            return body  # the declaration is right: the parser decodes it
        start, end = declared_match.span(1)
        return body[:start] + b"UTF-8" + body[end:length]
    if declared not in ("utf-8", "utf8"):
        return body  # UTF-16 and the like: the parser's business
    if length is not None:
        return body[:length]
    return body.decode("utf-8", errors="digest-cp1252").encode("utf-8")


def _utf8_length(body: bytes) -> int | None:
    """How many bytes of the body are UTF-8: all, or all but a last character cut in half; None
    when some bytes are not UTF-8."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.end == len(body) and exc.reason == "unexpected end of data":
            return exc.start
        return None
    return len(body)


def _html_text(body: bytes) -> str:
    """A page's bytes as text: UTF-8 (arXiv's charset) where they are, windows-1252 where not."""
    length = _utf8_length(body)
    if length is not None:
        text = body[:length].decode("utf-8")
    else:
        text = body.decode("utf-8", errors="digest-cp1252")
    return text.lstrip("\ufeff")


def _html_root(body: bytes) -> lxml.html.HtmlElement:
    """A page parsed from its text (an XHTML page's XML declaration, now wrong, dropped)."""
    return lxml.html.fromstring(re.sub(r"^\s*<\?xml[^>]*\?>", "", _html_text(body)))


def _refuse_non_xml(body: bytes, what: str) -> None:
    head = body[:1024].lstrip()
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:].lstrip()
    if not head:
        raise ParseError(f"expected {what}, got an empty body")
    lowered = head.lower()
    if lowered.startswith((b"<!doctype html", b"<html")):
        raise ParseError(f"expected {what}, got {_describe_page(body)}")
    if head.startswith((b"{", b"[")):
        raise ParseError(f"expected {what}, got JSON")
    if not head.startswith(b"<"):
        raise ParseError(f"expected {what}, got plain text: '{_first_words(body)}'")
    _refuse_entities(body, what)


def _refuse_non_html(body: bytes) -> None:
    what = "an arXiv listing page"
    head = body[:1024].lstrip()
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:].lstrip()
    if not head:
        raise ParseError(f"expected {what}, got an empty body")
    if head.startswith((b"{", b"[")):
        raise ParseError(f"expected {what}, got JSON")
    if head.startswith(b"<?xml") and b"<html" not in body[:4096].lower():
        raise ParseError(f"expected {what}, got an XML document")
    _refuse_entities(body, what)


def _refuse_entities(body: bytes, what: str) -> None:
    if _INTERNAL_SUBSET.search(body):
        raise ParseError(
            f"expected {what}, got a document declaring its own entities (<!DOCTYPE ... [...]>),"
            " which arXiv never sends: refused unread"
        )


def _refuse_error_page(root: lxml.html.HtmlElement) -> None:
    """A page that is no listing and says it is an error: 503, rate limits, not found."""
    for heading in _headings(root):
        if _ERROR_WORDS.search(heading):
            raise ParseError(f"arXiv answered with an error page: '{heading}'")


def _headings(root: lxml.html.HtmlElement) -> list[str]:
    """What a page says it is: its title and first headings, else its text if it is short."""
    found = [
        one_line(element.text_content(), limit=120)
        for element in _xpath(root, "//title | //h1 | //h2")
    ]
    found = [text for text in found if text]
    if not found:
        text = one_line(root.text_content())
        if text and len(text) <= 200:
            found.append(one_line(text, limit=120))
    return found


def _describe_page(body: bytes) -> str:
    """'an HTML page: "503 Service Unavailable"' (its title or heading), else how it starts."""
    with contextlib.suppress(etree.ParserError, ValueError):
        headings = _headings(_html_root(body))
        if headings:
            error = next((h for h in headings if _ERROR_WORDS.search(h)), None)
            if error:
                return f"an HTML error page: '{error}'"
            return f"an HTML page: '{headings[0]}'"
    return f"an HTML page ({describe_start(_html_text(body[:1024]))})"


def _first_words(body: bytes) -> str:
    return one_line(_html_text(body[:400]), limit=80)


def _local_name(element: etree._Element) -> str:
    """'{http://purl.org/rss/1.0/}item' -> 'item' (also for a prefix a cut body never bound)."""
    return str(element.tag).rsplit("}", 1)[-1].rsplit(":", 1)[-1]


def _clean(text: str) -> str:
    """Scraped text as one plain line, mojibake repaired."""
    return one_line(repair(text))


def _text(element: etree._Element, tag: str) -> str:
    found = element.find(tag)
    return "".join(str(text) for text in found.itertext()) if found is not None else ""


def _xpath(node: lxml.html.HtmlElement, path: str) -> list[lxml.html.HtmlElement]:
    """The elements an XPath finds (lxml's typing also allows strings and numbers)."""
    return [found for found in node.xpath(path) if isinstance(found, lxml.html.HtmlElement)]
