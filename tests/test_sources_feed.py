"""The generic RSS/Atom parser: a real arXiv Atom capture, two synthetic feeds, and bad input."""

from datetime import UTC, date, datetime

import pytest
from helpers import FIXTURES

from digest.errors import ParseError
from digest.models import Origin, Record
from digest.sources.feed import parse

ORIGIN = Origin("feed", "https://journal.example.org/rss")
FEEDS = FIXTURES / "feeds"
ARXIV_ATOM = FEEDS / "arxiv_atom_cs.AI_2025-08-20_7entries_trimmed.xml"
JOURNAL = FEEDS / "journal_toc_rss2_synthetic.xml"
BLOG = FEEDS / "lab_blog_atom_synthetic.xml"


def rss(items: str, encoding: str = "utf-8") -> bytes:
    """A small RSS 2.0 document around `items`, for the edge cases below."""
    return (
        f'<?xml version="1.0" encoding="{encoding}"?>'
        '<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/">'
        f"<channel><title>Edge cases</title><link>https://e.example/</link>{items}</channel></rss>"
    ).encode()


def only(records: list[Record]) -> Record:
    assert len(records) == 1, records
    return records[0]


# -- the real arXiv RSS service capture (Atom) --------------------------------------------------


def test_the_arxiv_atom_capture_gives_its_seven_entries_in_order() -> None:
    records = parse(ARXIV_ATOM.read_bytes(), ORIGIN)
    assert [(r.arxiv_id, r.announce_type) for r in records] == [
        ("2508.13426", "cross"),
        ("2508.13428", "cross"),
        ("2508.13429", "cross"),
        ("2508.13434", "cross"),
        ("2508.13435", "cross"),
        ("2508.14001", "new"),
        ("2508.14002", "new"),
    ]
    assert all(r.version == 1 and r.listed == date(2025, 8, 20) for r in records)
    assert all(r.doi is None and r.source_key is None for r in records), "keyed by arXiv id"
    assert all(r.origin == ORIGIN for r in records)


def test_exact_fields_of_real_arxiv_atom_entries() -> None:
    first, _, third, *_, last = parse(ARXIV_ATOM.read_bytes(), ORIGIN)
    assert (
        first.title
        == "ALIGN: Word Association Learning for Cross-Cultural Generalization in Large Language Models"
    )
    assert first.abstract.startswith(
        "As large language models (LLMs) increasingly mediate cross-cultural communication,"
    ), "the 'arXiv:... Announce Type: cross Abstract:' preamble is dropped"
    assert first.abstract.endswith("improving cultural alignment in AI models.")
    assert first.authors == ("Chunhua Liu", "Kabir Manandhar Shrestha", "Sukai Huang")
    assert first.categories == ("cs.CL", "cs.AI")
    assert first.published == datetime(2025, 8, 20, 4, 0, tzinfo=UTC), "-04:00 converted to UTC"
    assert first.updated == datetime(2025, 8, 20, 4, 0, 19, tzinfo=UTC)
    assert (first.abs_url, first.pdf_url) == (
        "https://arxiv.org/abs/2508.13426",
        "https://arxiv.org/pdf/2508.13426",
    )
    # One author whose name has no comma stays one name; arXiv's TeX accent is kept as written.
    assert third.authors == ("Paulo Andr\\'e Lima de Castro",)
    assert third.categories == ("q-fin.CP", "cs.AI")
    assert last.title == "Reward Shaping in Multi-Agent Reinforcement Learning"
    assert (
        last.abstract == "We study reward shaping techniques in cooperative multi-agent settings."
    )
    assert last.authors == ("Carol White", "Dave Brown")
    assert (last.categories, last.announce_type) == (("cs.AI", "cs.MA"), "new")


# -- a journal table of contents (RSS 2.0, synthetic) -------------------------------------------


def test_the_journal_toc_keeps_every_titled_item() -> None:
    records = parse(JOURNAL.read_bytes(), ORIGIN)
    assert [(r.doi, r.source_key) for r in records] == [
        ("10.5555/jsr.2026.0042", None),
        ("10.5555/jsr.2026.0043", None),
        ("10.5555/jsr.2026.0009.cor", None),
        (None, "jsr-editorial-7"),
        (None, "https://journal.example.org/jsr/cfp-robustness"),
    ], "the untitled item is skipped; without a DOI the guid, else the link, is the key"


def test_exact_fields_of_journal_items() -> None:
    article, water, correction, editorial, call = parse(JOURNAL.read_bytes(), ORIGIN)
    assert article.title == "Graph Neural Networks for Protein Folding", "escaped markup dropped"
    assert article.doi == "10.5555/jsr.2026.0042", "prism:doi, lower-cased"
    assert article.abstract == "We fold proteins with graphs. Accuracy improves by 12 %."
    assert article.authors == ("Ada Lovelace", "Alan Turing")
    assert article.categories == ("Computational Biology", "Machine Learning")
    assert article.published == datetime(2026, 11, 19, 8, 0, tzinfo=UTC)
    assert article.listed == date(2026, 11, 19)
    assert article.updated is None, "RSS gives one date, the publication date"
    assert article.abs_url == "https://journal.example.org/jsr/article/10.5555/jsr.2026.0042"
    assert article.pdf_url == "https://journal.example.org/jsr/article/10.5555/jsr.2026.0042.pdf"
    assert article.arxiv_id is None and article.announce_type is None

    assert water.title == "Catalysis of H2O splitting at room temperature", "no space in H2O"
    assert water.doi == "10.5555/jsr.2026.0043", "from dc:identifier 'doi:...'"
    assert water.authors == ("Ana Silva", "Bo Chen", "Carl Ng"), "one dc:creator string, split"
    assert water.published == datetime(2026, 11, 16, 23, 30, tzinfo=UTC)
    assert water.listed == date(2026, 11, 17), "the day the feed wrote (+0100), not the UTC day"
    assert water.pdf_url is None

    assert correction.title == 'A correction to "Fast solvers"'
    assert correction.doi == "10.5555/jsr.2026.0009.cor", "from a doi.org guid"
    assert editorial.abs_url == "https://journal.example.org/jsr/editorial-7"
    assert (call.published, call.updated, call.listed) == (None, None, None), "no date given"


# -- a lab blog (Atom, synthetic) ---------------------------------------------------------------


def test_exact_fields_of_blog_posts() -> None:
    paper, retreat, hostile = parse(BLOG.read_bytes(), ORIGIN)
    assert paper.title == "Our new paper on sparse attention & memory"
    assert (paper.arxiv_id, paper.version, paper.source_key) == ("2611.01234", 2, None)
    assert paper.abstract == "Sparse attention, explained. With code.", "content, script dropped"
    assert paper.authors == ("Grace Hopper", "Katherine Johnson")
    assert paper.categories == ("cs.LG", "cs.CL")
    assert paper.published == datetime(2026, 11, 20, 8, 30, tzinfo=UTC)
    assert paper.updated == datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    assert paper.pdf_url == "https://arxiv.org/pdf/2611.01234v2", "the link typed application/pdf"

    assert retreat.source_key == "tag:lab.example.org,2026:post-11"
    assert retreat.abstract == "We measured H2O intake at the retreat.", "XHTML summary as text"
    assert retreat.published is None
    assert retreat.updated == datetime(2026, 11, 12, 23, 45, tzinfo=UTC)
    assert retreat.listed == date(2026, 11, 12), "from updated when there is no published date"
    assert retreat.abs_url == "https://lab.example.org/posts/retreat-2026/"

    assert hostile.abs_url is None, "javascript: links never leave the parser"
    assert hostile.source_key == "tag:lab.example.org,2026:post-13", "the guid, not the bad link"
    assert hostile.abstract == "Nothing to see."


# -- other real-world shapes, inline ------------------------------------------------------------


def test_biorxiv_rss_surname_initials_string_and_dc_identifier() -> None:
    body = b"""<?xml version="1.0" encoding="UTF-8"?>
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns="http://purl.org/rss/1.0/"
 xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:prism="http://prismstandard.org/namespaces/basic/2.0/">
<channel rdf:about="http://connect.biorxiv.org/biorxiv_xml/neuroscience">
<title>bioRxiv Channel: Neuroscience</title><link>http://biorxiv.org</link><description>x</description>
</channel>
<item rdf:about="http://biorxiv.org/cgi/content/short/2024.03.14.584946v1?rss=1">
<title><![CDATA[Cortical dynamics of choice]]></title>
<link>http://biorxiv.org/cgi/content/short/2024.03.14.584946v1?rss=1</link>
<description><![CDATA[We show things.]]></description>
<dc:creator><![CDATA[ Zhang, Y., Li, X.-M., Wang, Z. ]]></dc:creator>
<dc:date>2024-03-17</dc:date>
<dc:identifier>doi:10.1101/2024.03.14.584946</dc:identifier>
<dc:publisher>Cold Spring Harbor Laboratory</dc:publisher>
</item>
</rdf:RDF>"""
    record = only(parse(body, ORIGIN))
    assert record.authors == ("Zhang, Y.", "Li, X.-M.", "Wang, Z."), "surname and initials rejoined"
    assert (record.doi, record.source_key) == ("10.1101/2024.03.14.584946", None)
    assert record.updated == datetime(2024, 3, 17, tzinfo=UTC) and record.published is None
    assert record.listed == date(2024, 3, 17)
    assert record.abs_url == "http://biorxiv.org/cgi/content/short/2024.03.14.584946v1?rss=1"


def test_arxiv_rss2_replacement_has_no_first_version_date() -> None:
    item = """<item><title>Old Paper, New Version</title>
      <link>https://arxiv.org/abs/2401.00001</link>
      <description>arXiv:2401.00001v3 Announce Type: replace
Abstract: A revised abstract.</description>
      <guid isPermaLink="false">oai:arXiv.org:2401.00001v3</guid>
      <category>cs.LG</category><category>stat.ML</category>
      <pubDate>Wed, 20 Aug 2025 00:00:00 -0400</pubDate>
      <arxiv:announce_type>replace</arxiv:announce_type>
      <dc:creator>A. Author, B. Author and C. Author</dc:creator></item>"""
    body = rss(item).replace(b"<rss ", b'<rss xmlns:arxiv="http://arxiv.org/schemas/atom" ')
    record = only(parse(body, ORIGIN))
    assert (record.arxiv_id, record.version, record.announce_type) == ("2401.00001", 3, "replace")
    assert record.abstract == "A revised abstract."
    assert record.authors == ("A. Author", "B. Author", "C. Author")
    assert record.categories == ("cs.LG", "stat.ML")
    assert record.published is None, "a replacement's date is not the first version's"
    assert record.updated == datetime(2025, 8, 20, 4, 0, tzinfo=UTC), "it is this version's"
    assert record.listed == date(2025, 8, 20)
    assert record.pdf_url == "https://arxiv.org/pdf/2401.00001"


def test_a_dc_identifier_that_is_not_a_doi_is_ignored() -> None:
    item = "<item><title>T</title><guid>g-1</guid><dc:identifier>urn:isbn:0451450523</dc:identifier></item>"
    record = only(parse(rss(item), ORIGIN))
    assert (record.doi, record.source_key) == (None, "g-1")


@pytest.mark.parametrize(
    "body",
    [
        rss(""),
        b'<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>t</title>'
        b"<id>urn:x</id><updated>2026-11-21T00:00:00Z</updated></feed>",
    ],
    ids=["rss", "atom"],
)
def test_a_well_formed_feed_without_entries_is_an_empty_listing(body: bytes) -> None:
    assert parse(body, ORIGIN) == []


# -- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "got an empty body"),
        (b" \r\n\t", "got an empty body"),
        (
            b"<!DOCTYPE html><html><head><title>Login</title></head><body>Sign in</body></html>",
            'got an HTML page (starts with "<!DOCTYPE html><html><head><title>Login',
        ),
        (
            b'<?xml version="1.0"?>\n<!-- proxy -->\n<html xmlns="http://www.w3.org/1999/xhtml">'
            b"<body>Blocked</body></html>",
            'got an HTML page (starts with "<html xmlns=',
        ),
        (b'{"items": []}', 'got JSON (starts with "{"items": []}")'),
        (b"<note><to>x</to></note>", "got XML that is neither RSS nor Atom"),
        (b"\x00\x01binary garbage", "got malformed XML (not well-formed (invalid token)"),
    ],
    ids=["empty", "blank", "html", "xhtml", "json", "other-xml", "garbage"],
)
def test_what_is_not_a_feed_is_a_clear_error(body: bytes, message: str) -> None:
    with pytest.raises(ParseError, match="^expected an RSS or Atom feed, ") as raised:
        parse(body, ORIGIN)
    assert message in str(raised.value)


def test_a_body_naming_a_local_file_is_not_read_as_that_file() -> None:
    # feedparser.parse(bytes) opens bytes that name an existing file; the parser must not.
    with pytest.raises(ParseError, match="malformed XML"):
        parse(str(BLOG).encode(), ORIGIN)


def test_a_truncated_feed_keeps_only_the_entries_it_completed() -> None:
    body = ARXIV_ATOM.read_bytes()
    whole = parse(body, ORIGIN)
    third_abstract = body.index(b"Abstract: Autonomous trading")
    cut = parse(body[:third_abstract], ORIGIN)
    assert cut == whole[:2], "the third entry, cut in its abstract, is dropped; two stay whole"
    assert parse(body[: body.rindex(b"</feed>")], ORIGIN) == whole, "only </feed> missing"


def test_a_feed_truncated_before_its_first_complete_entry_is_an_error_not_empty() -> None:
    body = ARXIV_ATOM.read_bytes()
    with pytest.raises(ParseError, match="got malformed XML \\(no element found"):
        parse(body[: body.index(b"</entry>")], ORIGIN)
    with pytest.raises(ParseError, match="got malformed XML"):
        parse(rss("")[:-20], ORIGIN)


def test_a_stray_ampersand_mid_feed_loses_no_entry() -> None:
    body = JOURNAL.read_bytes().replace(b"A correction to", b"A correction & update to")
    records = parse(body, ORIGIN)
    assert len(records) == 5
    assert records[2].title == 'A correction & update to "Fast solvers"'


def test_latin1_bytes_declared_utf8_are_read_not_lost() -> None:
    item = "<item><title>Étude des réseaux</title><guid>g</guid><description>Résumé naïf</description></item>"
    body = rss(item).decode().encode("latin-1")
    record = only(parse(body, ORIGIN))
    assert (record.title, record.abstract) == ("Étude des réseaux", "Résumé naïf")


def test_an_empty_feed_with_a_wrong_charset_is_still_an_empty_listing() -> None:
    body = rss("").decode().replace("Edge cases", "Revue bibliographique é").encode("latin-1")
    assert parse(body, ORIGIN) == [], "a charset override is not damage"


def test_bytes_invalid_in_every_charset_never_crash() -> None:
    body = rss("<item><title>Bad \x81\x8d\x90 bytes</title></item>").replace(b"\xc2", b"")
    record = only(parse(body, ORIGIN))
    assert record.title.startswith("Bad") and record.title.endswith("bytes")


def test_hostile_markup_in_titles_never_survives() -> None:
    plain = "&lt;script&gt;alert(1)&lt;/script&gt;Safe &lt;b&gt;title&lt;/b&gt;"
    items = (
        f"<item><title>{plain}</title><guid>plain</guid>"
        "<description>&lt;iframe src=x&gt;&lt;/iframe&gt;Text &lt;style&gt;p{}&lt;/style&gt;only</description></item>"
        "<item><title><![CDATA[<script>alert(1)</script>Safe <b>title</b>]]></title><guid>cdata</guid></item>"
    )
    records = parse(rss(items), ORIGIN)
    assert [r.title for r in records] == ["Safe title", "Safe title"]
    assert records[0].abstract == "Text only"
    atom = (
        b'<feed xmlns="http://www.w3.org/2005/Atom"><title>t</title><entry><id>a</id>'
        b'<title type="html">&lt;script&gt;alert(1)&lt;/script&gt;Safe &lt;b&gt;title&lt;/b&gt;</title>'
        b"</entry></feed>"
    )
    assert only(parse(atom, ORIGIN)).title == "Safe title"


def test_a_bare_less_than_sign_in_plain_text_is_kept() -> None:
    record = only(parse(rss("<item><title>Bounds for n&lt;m when k &lt; 2</title></item>"), ORIGIN))
    assert record.title == "Bounds for n<m when k < 2"


@pytest.mark.parametrize("scheme", ["javascript:alert(1)", "data:text/html,x", "vbscript:x"])
def test_only_http_links_leave_the_parser(scheme: str) -> None:
    item = (
        f"<item><title>T</title><link>{scheme}</link><guid>g</guid>"
        f'<enclosure url="{scheme}" type="application/pdf" length="1"/></item>'
    )
    record = only(parse(rss(item), ORIGIN))
    assert (record.abs_url, record.pdf_url) == (None, None)


def test_cr_lf_and_tabs_are_folded_to_single_spaces() -> None:
    item = (
        "<item><title>Line one\r\n  line two\tend</title>"
        "<description>First\r\n\r\nsecond\rthird</description></item>"
    )
    record = only(parse(rss(item), ORIGIN))
    assert (record.title, record.abstract) == ("Line one line two end", "First second third")
