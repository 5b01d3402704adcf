"""The malformed corpus of the arXiv kinds (issue 14): real captures cut short anywhere, an HTML
error page or plain text where the answer should be, an empty body, an entity bomb and an
external entity. Each gives the whole entries it holds with what it left out, or one clear
message; never a half record. (Wrong charsets: test_sources_arxiv.py.)"""

from collections.abc import Callable

import pytest
from helpers import FIXTURES

from digest.errors import LayoutChanged, ParseError
from digest.models import Origin, Record, skipped_of
from digest.sources.arxiv import parse_api, parse_listing_html, parse_rss

ORIGIN = Origin("arxiv", "https://arxiv.org/list/cs.CL/recent")
Parser = Callable[[bytes, Origin], list[Record]]

LISTING = "arxiv_list_cs.CL_recent_2026-07-27_newlayout.html"
ATOM = "arxiv_atom_cs.AI_2025-08-20_7entries_trimmed.xml"
LEGACY = "arxiv_rss1_cs.AI_2017-08-10_15items_reserialized.xml"
LEGACY_ESCAPED = "arxiv_rss1_hep-ex_2018-05-23_3items_trimmed_from-physbiblio-test.xml"
API = "arxiv_api_2026-07-13_cat-cs.AI-LG_50entries_newformat.xml"
API_OLD = "arxiv_api_2025-10-17_cat-cs.RO-neural_2entries_oldformat.xml"

CAPTURES = [
    (parse_listing_html, LISTING),
    (parse_rss, ATOM),
    (parse_rss, LEGACY),
    (parse_rss, LEGACY_ESCAPED),
    (parse_api, API),
    (parse_api, API_OLD),
]
KINDS = {
    "listing": (parse_listing_html, "arXiv listing page"),
    "rss": (parse_rss, "arXiv RSS or Atom feed"),
    "api": (parse_api, "arXiv API Atom feed"),
}


def read(name: str) -> bytes:
    return (FIXTURES / "arxiv" / name).read_bytes()


def cut_after(body: bytes, marker: bytes) -> bytes:
    return body[: body.index(marker) + len(marker)]


# -- cut short ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("parse", "name"), CAPTURES)
def test_no_prefix_of_a_capture_gives_a_half_record(parse: Parser, name: str) -> None:
    """Cut at 300 places: each record is the whole capture's record, and a loss is always said."""
    body = read(name)
    whole = {record.arxiv_id: record for record in parse(body, ORIGIN)}
    for end in range(1, len(body), max(1, len(body) // 300)):
        try:
            records = parse(body[:end], ORIGIN)
        except ParseError as exc:
            assert "got a body cut short before its first complete entry" in str(exc), end
            continue
        assert all(whole[r.arxiv_id] == r for r in records), f"a half record when cut at {end}"
        if len(records) < len(whole):
            assert skipped_of(records), f"{len(whole) - len(records)} lost unsaid at {end}"


@pytest.mark.parametrize(
    ("parse", "name", "count", "skipped"),
    [
        (parse_listing_html, LISTING, 25, {"cut off mid-entry": 1, "missing after the cut": 24}),
        (parse_rss, ATOM, 2, {"cut off mid-entry": 1}),
        (parse_rss, LEGACY, 6, {"cut off mid-entry": 1, "missing after the cut": 8}),
        (parse_api, API, 25, {"cut off mid-entry": 1, "missing after the cut": 24}),
    ],
)
def test_a_capture_cut_in_half(parse: Parser, name: str, count: int, skipped: dict[str, int]) -> None:
    body = read(name)
    records = parse(body[: len(body) // 2], ORIGIN)
    assert len(records) == count
    assert skipped_of(records) == skipped
    assert records == parse(body, ORIGIN)[:count]


def test_a_listing_cut_inside_an_entry_stores_none_of_it() -> None:
    """Issue 14: 'stored a paper with 2 of its 5 authors'. Entry 2 has five; cut after two."""
    body = read(LISTING)
    records = parse_listing_html(cut_after(body, b"Ashini Kavindya</a>"), ORIGIN)
    assert [r.arxiv_id for r in records] == ["2607.22529"]
    assert skipped_of(records) == {"cut off mid-entry": 1, "missing after the cut": 48}


def test_an_api_answer_cut_inside_an_entry_stores_none_of_it() -> None:
    body = read(API)
    records = parse_api(cut_after(body, b"<name>Abzal Nurgazy</name>"), ORIGIN)  # entry 22, author 2
    assert len(records) == 21 and "2607.09544" not in {r.arxiv_id for r in records}
    assert skipped_of(records) == {"cut off mid-entry": 1, "missing after the cut": 28}


def test_a_legacy_feed_cut_between_items_counts_what_its_item_list_promised() -> None:
    body = read(LEGACY)
    tenth = [i for i in range(len(body)) if body.startswith(b"</item>", i)][9] + len(b"</item>")
    records = parse_rss(body[:tenth], ORIGIN)
    assert len(records) == 10
    assert skipped_of(records) == {"missing after the cut": 5}, "rdf:Seq lists 15"


def test_a_feed_cut_between_entries_says_so() -> None:
    body = read(ATOM)
    third = [i for i in range(len(body)) if body.startswith(b"</entry>", i)][2] + len(b"</entry>")
    records = parse_rss(body[:third], ORIGIN)
    assert len(records) == 3
    assert skipped_of(records) == {"body cut off between entries": 1}, (
        "the RSS service's feeds do not say how many entries they hold"
    )


def test_a_feed_cut_in_its_closing_tags_lost_nothing() -> None:
    body = read(ATOM)
    assert body.endswith(b"</entry>\n</feed>")
    records = parse_rss(body[:-4], ORIGIN)
    assert records == parse_rss(body, ORIGIN) and skipped_of(records) == {}


@pytest.mark.parametrize(("parse", "what"), KINDS.values(), ids=KINDS)
def test_a_body_cut_before_its_first_entry_is_an_error(parse: Parser, what: str) -> None:
    body = read({"arXiv listing page": LISTING, "arXiv RSS or Atom feed": ATOM}.get(what, API))
    start = body.index(b"<dt>" if parse is parse_listing_html else b"<entry>")
    with pytest.raises(
        ParseError, match=f"^expected an {what}, got a body cut short before its first complete entry$"
    ):
        parse(body[: start + 20], ORIGIN)


# -- not an answer ------------------------------------------------------------------------------

SERVICE_UNAVAILABLE = (
    b"<!DOCTYPE html><html><head><title>503 Service Unavailable</title></head><body>"
    b"<h1>Service Unavailable</h1><p>The server is temporarily unable to service your request."
    b"</p></body></html>"
)
NOT_FOUND = (
    b"<!DOCTYPE html><html lang='en'><head><title>arXiv.org e-Print archive</title></head>"
    b"<body><header><a href='/'>arXiv</a></header><main><h1>Not Found</h1>"
    b"<p>The requested URL was not found on this server.</p></main></body></html>"
)
MAINTENANCE = (
    b"<html><head><title>arXiv is down for maintenance</title></head><body>"
    b"<p>We expect to be back shortly.</p></body></html>"
)


@pytest.mark.parametrize(
    ("body", "heading"),
    [
        (SERVICE_UNAVAILABLE, "503 Service Unavailable"),
        (b"Rate exceeded.", "Rate exceeded."),
        (NOT_FOUND, "Not Found"),
        (MAINTENANCE, "arXiv is down for maintenance"),
    ],
)
def test_an_error_page_for_a_listing_quotes_its_own_heading(body: bytes, heading: str) -> None:
    with pytest.raises(ParseError) as caught:
        parse_listing_html(body, ORIGIN)
    assert str(caught.value) == f"arXiv answered with an error page: '{heading}'"
    assert not isinstance(caught.value, LayoutChanged)


def test_plain_text_for_a_listing_is_said_to_be_plain_text() -> None:
    with pytest.raises(ParseError) as caught:
        parse_listing_html(b"Hello from a proxy\n", ORIGIN)
    assert str(caught.value) == "expected an arXiv listing page, got plain text: 'Hello from a proxy'"


@pytest.mark.parametrize(("parse", "what"), [KINDS["rss"], KINDS["api"]], ids=["rss", "api"])
def test_an_error_page_for_a_feed_quotes_its_own_heading(parse: Parser, what: str) -> None:
    with pytest.raises(ParseError) as caught:
        parse(SERVICE_UNAVAILABLE, ORIGIN)
    assert str(caught.value) == f"expected an {what}, got an HTML error page: '503 Service Unavailable'"
    with pytest.raises(ParseError) as caught:
        parse(b"Rate exceeded.\n", ORIGIN)
    assert str(caught.value) == f"expected an {what}, got plain text: 'Rate exceeded.'"


@pytest.mark.parametrize(("parse", "what"), KINDS.values(), ids=KINDS)
@pytest.mark.parametrize("body", [b"", b"  \r\n\t ", b"\xef\xbb\xbf\n"], ids=["empty", "blank", "bom"])
def test_an_empty_body_is_an_error(parse: Parser, what: str, body: bytes) -> None:
    with pytest.raises(ParseError, match=f"^expected an {what}, got an empty body$"):
        parse(body, ORIGIN)


# -- hostile XML --------------------------------------------------------------------------------

BILLION_LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + b"".join(
        b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10)
        for i in range(1, 10)
    )
    + b"]>"
)
EXTERNAL = b'<?xml version="1.0"?><!DOCTYPE feed [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'


def _atom(prologue: bytes, entity: bytes) -> bytes:
    return prologue + (
        b'<feed xmlns="http://www.w3.org/2005/Atom"><entry><id>http://arxiv.org/abs/2611.00001v1'
        b"</id><title>T &" + entity + b";</title><summary>x</summary><author><name>A</name>"
        b"</author></entry></feed>"
    )


def _rss(prologue: bytes, entity: bytes) -> bytes:
    return prologue + (
        b"<rss version='2.0'><channel><item><title>T &" + entity + b";</title>"
        b"<guid>oai:arXiv.org:2611.00001v1</guid></item></channel></rss>"
    )


def _listing(prologue: bytes, entity: bytes) -> bytes:
    doctype = prologue.replace(b'<?xml version="1.0"?>', b"").replace(b"DOCTYPE feed", b"DOCTYPE html")
    doctype = doctype.replace(b"DOCTYPE lolz", b"DOCTYPE html")
    page = read(LISTING).replace(b"<!DOCTYPE html>", doctype, 1)
    return page.replace(b"Siyuan Huang", b"&" + entity + b";", 1)


@pytest.mark.parametrize(
    ("parse", "what", "build"),
    [
        (parse_rss, "arXiv RSS or Atom feed", _rss),
        (parse_rss, "arXiv RSS or Atom feed", _atom),
        (parse_api, "arXiv API Atom feed", _atom),
        (parse_listing_html, "arXiv listing page", _listing),
    ],
    ids=["rss", "rss-atom", "api", "listing"],
)
@pytest.mark.parametrize(
    ("prologue", "entity"), [(BILLION_LAUGHS, b"lol9"), (EXTERNAL, b"xxe")], ids=["bomb", "xxe"]
)
def test_xml_declaring_its_own_entities_is_refused_unread(
    parse: Parser, what: str, build: Callable[[bytes, bytes], bytes], prologue: bytes, entity: bytes
) -> None:
    with pytest.raises(ParseError) as caught:
        parse(build(prologue, entity), ORIGIN)
    assert str(caught.value) == (
        f"expected an {what}, got a document declaring its own entities (<!DOCTYPE ... [...]>),"
        " which arXiv never sends: refused unread"
    )


def test_an_undeclared_entity_is_never_read_from_a_file() -> None:
    """Without a DTD nothing can name a file; an unknown entity is malformed XML, said so."""
    with pytest.raises(ParseError, match="^expected an arXiv API Atom feed, got malformed XML: "):
        parse_api(_atom(b"", b"xxe"), ORIGIN)
