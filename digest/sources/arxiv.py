"""arXiv: listing pages, the RSS service (RSS 2.0 and Atom) and the export API (Atom).

arXiv marks each announced paper as new, a cross-list from another category, or a replacement;
records carry that as `announce_type` (new, cross, replace, replace-cross) so later steps can, for
instance, leave replacements out of a digest.
"""

from __future__ import annotations

import contextlib
import re
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime

import lxml.html
from lxml import etree

from digest.errors import LayoutChanged, ParseError
from digest.models import Origin, Record
from digest.sources.common import decode_text, describe_start, parse_datetime, split_arxiv_id
from digest.text import doi as valid_doi
from digest.text import one_line, optional_line

ATOM = "{http://www.w3.org/2005/Atom}"
ARXIV = "{http://arxiv.org/schemas/atom}"
DC = "{http://purl.org/dc/elements/1.1/}"
ABS = "https://arxiv.org/abs/"
PDF = "https://arxiv.org/pdf/"

# A hardened XML parser: no entity expansion (billion laughs), no network, no huge trees.
_XML_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
_CATEGORY_CODE = re.compile(r"\(([A-Za-z-]+(?:\.[A-Za-z-]+)?)\)\s*$")
_DESCRIPTOR = re.compile(r"^\s*(Title|Authors|Comments|Journal-ref|Subjects):\s*")
_DAY_HEADING = re.compile(r"^\w{3}, (\d{1,2} \w{3} \d{4})")
_PAGE_DAY = re.compile(r"submissions for \w{3}, (\d{1,2} \w{3} \d{2,4})")
_ANNOUNCE = re.compile(r"Announce Type:\s*([\w-]+)")


# -- listing pages ------------------------------------------------------------------------------


def parse_listing_html(body: bytes, origin: Origin) -> list[Record]:
    """/list/<cat>/new, /list/<cat>/recent and monthly listing pages (2024+ arxiv-browse layout)."""
    _refuse_non_html(body)
    try:
        root = lxml.html.fromstring(body)
    except (etree.ParserError, ValueError) as exc:
        raise ParseError(f"expected an arXiv listing page, got unparsable HTML ({exc})") from None
    listings = _xpath(root, '//dl[@id="articles"]')
    if not listings:
        raise LayoutChanged("no <dl id='articles'> listing on the page")
    records: list[Record] = []
    day = _page_day(root)
    section = None
    pending_dt = None
    for element in _xpath(root, '//h3 | //dl[@id="articles"]/dt | //dl[@id="articles"]/dd'):
        if element.tag == "h3":
            heading = one_line(element.text_content())
            day = _heading_day(heading) or day
            section = _heading_section(heading) or section
        elif element.tag == "dt":
            pending_dt = element
        elif pending_dt is not None:
            record = _listing_record(pending_dt, element, origin, day, section)
            if record is not None:
                records.append(record)
            pending_dt = None
    return records


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
        abstract=one_line(abstract[0].text_content()) if abstract else "",
        authors=tuple(
            name
            for name in (
                one_line(a.text_content())
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
    return one_line(_DESCRIPTOR.sub("", one_line(found[0].text_content())))


def _subjects(dd: lxml.html.HtmlElement) -> tuple[str, ...]:
    text = _field(dd, "list-subjects")
    codes = []
    for part in text.split(";"):
        match = _CATEGORY_CODE.search(part.strip())
        if match and match.group(1) not in codes:
            codes.append(match.group(1))
    return tuple(codes)


# -- the RSS service: rss.arxiv.org/rss/<cat> and /atom/<cat> -----------------------------------


def parse_rss(body: bytes, origin: Origin) -> list[Record]:
    """arXiv's RSS service in either flavour. An empty channel (weekends, holidays) is []."""
    root = _xml(body, "an arXiv RSS or Atom feed")
    if root.tag == f"{ATOM}feed":
        return [r for r in (_rss_atom_entry(e, origin) for e in root.iter(f"{ATOM}entry")) if r]
    if root.tag == "rss":
        return [r for r in (_rss_item(i, origin) for i in root.iter("item")) if r]
    raise ParseError(
        f"expected an RSS or Atom feed, got a <{etree.QName(root).localname}> document"
    )


def _rss_atom_entry(entry: etree._Element, origin: Origin) -> Record | None:
    arxiv_id, version = split_arxiv_id(_text(entry, f"{ATOM}id"))
    title = one_line(_text(entry, f"{ATOM}title"))
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
    title = one_line(_text(item, "title"))
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
    return one_line(abstract if found else text)


def _announce_type(element: etree._Element, summary: str) -> str | None:
    declared = one_line(_text(element, f"{ARXIV}announce_type"))
    if declared:
        return declared
    match = _ANNOUNCE.search(summary)
    return match.group(1) if match else None


def _creators(text: str) -> tuple[str, ...]:
    """dc:creator is one string: 'A. Author, B. Author and C. Author'."""
    names = []
    for part in re.split(r",|\band\b", text):
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


# -- the export API: export.arxiv.org/api/query -------------------------------------------------


def parse_api(body: bytes, origin: Origin) -> list[Record]:
    """The API's Atom feed, current (2025+) and legacy format. Its error feed becomes a ParseError."""
    root = _xml(body, "an arXiv API Atom feed")
    if root.tag != f"{ATOM}feed":
        raise ParseError(
            f"expected an arXiv API Atom feed, got a <{etree.QName(root).localname}> document"
        )
    records = []
    for entry in root.iter(f"{ATOM}entry"):
        entry_id = _text(entry, f"{ATOM}id")
        if "/api/errors" in entry_id:
            raise ParseError(
                f"arXiv API error: {one_line(_text(entry, f'{ATOM}summary')) or entry_id}"
            )
        record = _api_entry(entry, origin, entry_id)
        if record is not None:
            records.append(record)
    return records


def _api_entry(entry: etree._Element, origin: Origin, entry_id: str) -> Record | None:
    arxiv_id, version = split_arxiv_id(entry_id)
    title = one_line(_text(entry, f"{ATOM}title"))
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
        abstract=one_line(_text(entry, f"{ATOM}summary")),
        authors=tuple(
            name
            for name in (one_line(_text(a, f"{ATOM}name")) for a in entry.iter(f"{ATOM}author"))
            if name
        ),
        categories=categories,
        primary_category=(primary.get("term") if primary is not None else None)
        or (categories[0] if categories else None),
        published=parse_datetime(_text(entry, f"{ATOM}published")),
        updated=parse_datetime(_text(entry, f"{ATOM}updated")),
        abs_url=ABS + arxiv_id,
        pdf_url=PDF + arxiv_id,  # unversioned: the latest version, like the paper's key
        comment=optional_line(_text(entry, f"{ARXIV}comment")),
        journal_ref=optional_line(_text(entry, f"{ARXIV}journal_ref")),
    )


# -- shared -------------------------------------------------------------------------------------


def _xml(body: bytes, what: str) -> etree._Element:
    head = body[:1024].lstrip()
    if not head:
        raise ParseError(f"expected {what}, got an empty body")
    lowered = head.lower()
    if lowered.startswith((b"<!doctype html", b"<html")):
        raise ParseError(
            f"expected {what}, got an HTML page ({describe_start(head.decode('utf-8', 'replace'))})"
        )
    if head.startswith((b"{", b"[")):
        raise ParseError(f"expected {what}, got JSON")
    try:
        return etree.fromstring(body, _XML_PARSER)
    except etree.XMLSyntaxError as exc:
        repaired = _as_utf8(body)
        if (
            repaired is not None
        ):  # a wrong charset: read the bytes as cp1252 rather than lose the feed
            try:
                return etree.fromstring(repaired, _XML_PARSER)
            except etree.XMLSyntaxError:
                pass
        raise ParseError(f"expected {what}, got malformed XML: {exc}") from None


def _as_utf8(body: bytes) -> bytes | None:
    """Bytes that are not valid UTF-8 (a mislabelled Latin-1 feed), re-encoded; None if they are."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        text = re.sub(r"^<\?xml[^>]*\?>", "", decode_text(body).lstrip())
        return text.encode("utf-8")
    return None


def _refuse_non_html(body: bytes) -> None:
    head = body[:1024].lstrip()
    if not head:
        raise ParseError("expected an arXiv listing page, got an empty body")
    if head.startswith((b"{", b"[")):
        raise ParseError("expected an arXiv listing page, got JSON")
    if head.startswith(b"<?xml") and b"<html" not in body[:4096].lower():
        raise ParseError("expected an arXiv listing page, got an XML document")


def _text(element: etree._Element, tag: str) -> str:
    found = element.find(tag)
    return "".join(str(text) for text in found.itertext()) if found is not None else ""


def _xpath(node: lxml.html.HtmlElement, path: str) -> list[lxml.html.HtmlElement]:
    """The elements an XPath finds (lxml's typing also allows strings and numbers)."""
    return [found for found in node.xpath(path) if isinstance(found, lxml.html.HtmlElement)]
