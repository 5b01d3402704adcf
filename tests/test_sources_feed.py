"""The generic RSS/Atom parser: a real arXiv Atom capture, two synthetic feeds, and bad input."""

from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from helpers import FIXTURES

from digest.errors import ParseError
from digest.models import Origin, Record, skipped_of
from digest.sources.feed import parse

ORIGIN = Origin("feed", "https://journal.example.org/rss")
FEEDS = FIXTURES / "feeds"
ARXIV_ATOM = FEEDS / "arxiv_atom_cs.AI_2025-08-20_7entries_trimmed.xml"
JOURNAL = FEEDS / "journal_toc_rss2_synthetic.xml"
BLOG = FEEDS / "lab_blog_atom_synthetic.xml"
NATURE = FEEDS / "nature_rdf_2023-12-19_8items_trimmed.xml"
CELL = FEEDS / "cell_rdf_2015-11-09_8items_trimmed.xml"
ARXIV_API_50 = FIXTURES / "arxiv" / "arxiv_api_2026-07-13_cat-cs.AI-LG_50entries_newformat.xml"


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
    assert skipped_of(records) == {"no title": 1}, "the untitled item is left out, and said"
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
        (b"\x00\x01binary garbage", "got binary data (12% of the bytes are control characters)"),
        (
            b"<rss version='2.0'><!-- " + b"x" * 200 + b" -->\x00<channel>",
            "got malformed XML (not well-formed (invalid token) at line 2, column 228",
        ),
    ],
    ids=["empty", "blank", "html", "xhtml", "json", "other-xml", "binary", "garbage"],
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


# -- journals' own feeds: real captures (tests/fixtures/SOURCES.md) --------------------------------


def test_the_nature_capture_gives_its_eight_items() -> None:
    records = parse(NATURE.read_bytes(), ORIGIN)
    assert skipped_of(records) == {}
    assert [r.doi for r in records] == [
        "10.1038/s41586-023-06960-2",
        "10.1038/s41586-023-06932-6",
        "10.1038/d41586-023-03794-w",
        "10.1038/d41586-023-03793-x",
        "10.1038/d41586-023-04054-7",
        "10.1038/s41586-023-06951-3",
        "10.1038/s41586-023-06831-w",
        "10.1038/s41586-023-06810-1",
    ]
    assert all(r.abs_url == "https://www.nature.com/articles/" + r.doi.split("/")[1] for r in records)
    assert all(r.source_key is None and r.arxiv_id is None and r.pdf_url is None for r in records)
    assert all("Published online" not in r.abstract and "doi:" not in r.abstract for r in records)
    assert [r.listed for r in records] == [date(2023, 12, 18)] * 4 + [
        date(2023, 12, 15),
        date(2023, 12, 14),
        date(2023, 12, 13),
        date(2023, 12, 13),
    ]
    assert all(r.published == datetime.combine(r.listed, datetime.min.time(), UTC) for r in records), (
        "no pubDate: dc:date is the article's publication date"
    )


def test_exact_fields_of_nature_items() -> None:
    correction, placeholder, shrimp, highlights, books, _, genomes, cortex = parse(
        NATURE.read_bytes(), ORIGIN
    )
    assert (
        correction.title
        == "Author Correction: Rift-induced disruption of cratonic keels drives kimberlite volcanism"
    )
    assert correction.abstract == "", "after the 'Published online' line, only the title again"
    assert correction.authors[:2] == ("Thomas M. Gernon", "Stephen M. Jones")
    assert len(correction.authors) == 14 and correction.authors[-1] == "Anne Glerum"

    assert placeholder.abstract == "", "Nature's 'XXX.' placeholder is no abstract"

    assert shrimp.title == "How brine shrimps cope with salt"
    assert shrimp.abstract == "Mutant ion pumps help brine shrimp survive highly saline waters."
    assert shrimp.authors == ("Lucia Brunello",)
    assert shrimp.published == datetime(2023, 12, 18, tzinfo=UTC)

    assert highlights.authors == () and highlights.abstract == (
        "Highlights from News & Views published in late 2023."
    )
    assert books.abstract == "Andrew Robinson reviews five of the best science picks.", (
        "an author's name that begins a sentence is kept"
    )
    assert books.authors == ("Andrew Robinson",)

    assert genomes.title == "Indigenous Australian genomes show deep structure and rich novel variation"
    assert genomes.authors == (
        "Matthew Silcocks",
        "Ashley Farlow",
        "Azure Hermes",
        "Georgia Tsambos",
        "Hardip R. Patel",
        "Sharon Huebner",
        "Gareth Baynam",
        "Misty R. Jenkins",
        "Damjan Vukcevic",
        "Simon Easteal",
        "Stephen Leslie",
    ), "the feed names 19, 8 of them twice: each once, in first-seen order"
    assert genomes.abstract.startswith("Analysis of the genomes of 159 individuals")
    assert (genomes.published, genomes.updated) == (
        datetime(2023, 12, 13, tzinfo=UTC),
        datetime(2023, 12, 13, tzinfo=UTC),
    )
    assert cortex.abstract == (
        "Offline cortical reactivations predict the gradual drift and separation in sensory "
        "cortical response patterns and may enhance sensory discrimination."
    )


def test_the_cell_capture_gives_its_eight_items() -> None:
    records = parse(CELL.read_bytes(), ORIGIN)
    assert skipped_of(records) == {}
    assert [r.doi for r in records] == [
        "10.1016/j.cell.2015.10.050",
        "10.1016/j.cell.2015.10.017",
        "10.1016/j.cell.2015.10.060",
        "10.1016/j.cell.2015.10.057",
        "10.1016/j.cell.2015.10.054",
        "10.1016/j.cell.2015.10.045",
        "10.1016/j.cell.2015.10.039",
        "10.1016/j.cell.2015.10.013",
    ], "dc:identifier holds a bare DOI"
    assert [r.published.date() if r.published else None for r in records] == [
        date(2015, 11, 6),
        date(2015, 10, 29),
        *[date(2015, 11, 5)] * 6,
    ], "prism:publicationDate, as there is no pubDate"
    assert all(r.abstract and r.authors and r.source_key is None for r in records)


def test_exact_fields_of_cell_items() -> None:
    first, escrt, *_, fezf2 = parse(CELL.read_bytes(), ORIGIN)
    assert first.title == (
        "Broadly Neutralizing Alphavirus Antibodies Bind an Epitope on E2 and Inhibit Entry and Egress"
    )
    assert first.abs_url == "http://www.cell.com/cell/abstract/S0092-8674(15)01406-3?rss=yes"
    assert first.abstract.startswith("A class of broadly neutralizing monoclonal antibodies")
    assert first.abstract.endswith("therapeutic development against multiple alphaviruses.")
    assert len(first.authors) == 15, "one comma-separated dc:creator, split"
    assert first.authors[:2] == ("Julie M. Fox", "Feng Long")
    assert first.authors[4] == "Mareike K.S. van Duijl-Richter"
    assert first.listed == date(2015, 11, 6)
    assert (escrt.published, escrt.listed) == (datetime(2015, 10, 29, tzinfo=UTC), date(2015, 10, 29))
    assert escrt.authors[3] == "Frédéric Humbert"
    assert fezf2.authors == (
        "Hiroyuki Takaba",
        "Yasuyuki Morishita",
        "Yoshihiko Tomofuji",
        "Lynett Danks",
        "Takeshi Nitta",
        "Noriko Komatsu",
        "Tatsuhiko Kodama",
        "Hiroshi Takayanagi",
    )


def test_a_journal_date_from_prism_when_there_is_no_dc_date() -> None:
    body = rss(
        "<item><title>T</title><guid>g</guid>"
        "<prism:publicationDate>2026-03-02</prism:publicationDate>"
        "<prism:coverDate>2026-04-01</prism:coverDate></item>"
    ).replace(b"<rss ", b'<rss xmlns:prism="http://prismstandard.org/namespaces/basic/2.0/" ')
    record = only(parse(body, ORIGIN))
    assert (record.published, record.listed) == (datetime(2026, 3, 2, tzinfo=UTC), date(2026, 3, 2))
    cover_only = body.replace(b"<prism:publicationDate>2026-03-02</prism:publicationDate>", b"")
    assert only(parse(cover_only, ORIGIN)).published == datetime(2026, 4, 1, tzinfo=UTC)


def test_a_repeated_title_and_byline_before_the_abstract_are_dropped() -> None:
    item = (
        "<item><title>Fast Solvers</title><guid>g</guid><dc:creator>Ada Lovelace</dc:creator>"
        "<dc:creator>Alan Turing</dc:creator><description>&lt;p&gt;Fast Solvers&lt;/p&gt;"
        "&lt;p&gt;Ada Lovelace, Alan Turing&lt;/p&gt;&lt;p&gt;We solve fast.&lt;/p&gt;</description></item>"
        "<item><title>Fresh water from thin air</title><guid>h</guid>"
        "<description>Fresh water from thin air is possible.</description></item>"
    )
    solvers, water = parse(rss(item), ORIGIN)
    assert solvers.abstract == "We solve fast."
    assert water.abstract == "Fresh water from thin air is possible.", "a sentence that goes on is kept"


# -- a body cut off ------------------------------------------------------------------------------


def _cut_after(body: bytes, end_tag: bytes, count: int, extra: int = 0) -> bytes:
    """`body` cut `extra` bytes after its `count`-th `end_tag`."""
    at = 0
    for _ in range(count):
        at = body.index(end_tag, at) + len(end_tag)
    return body[: at + extra]


def test_a_feed_cut_to_24_of_50_entries_keeps_24_and_says_one_was_cut() -> None:
    body = ARXIV_API_50.read_bytes()
    whole = parse(body, ORIGIN)
    assert len(whole) == 50 and skipped_of(whole) == {}
    cut = parse(_cut_after(body, b"</entry>", 24, extra=400), ORIGIN)
    assert cut == whole[:24], "the 25th entry, cut in the middle, is not stored"
    assert skipped_of(cut) == {"cut off mid-entry": 1}


def test_a_feed_cut_between_entries_says_so() -> None:
    body = ARXIV_API_50.read_bytes()
    cut = parse(_cut_after(body, b"</entry>", 24), ORIGIN)
    assert len(cut) == 24
    assert skipped_of(cut) == {"body cut off between entries": 1}


def test_a_feed_cut_at_half_keeps_what_came_whole() -> None:
    body = ARXIV_API_50.read_bytes()
    half = body[: len(body) // 2]
    cut = parse(half, ORIGIN)
    assert cut == parse(body, ORIGIN)[: half.count(b"</entry>")]
    assert skipped_of(cut) == {"cut off mid-entry": 1}


def test_an_rdf_feed_cut_mid_item_counts_the_items_it_listed_but_never_sent() -> None:
    body = NATURE.read_bytes()
    cut = parse(_cut_after(body, b"</item>", 4, extra=300), ORIGIN)
    assert [r.doi for r in cut] == [r.doi for r in parse(body, ORIGIN)[:4]]
    assert skipped_of(cut) == {"cut off mid-entry": 1, "missing after the cut": 3}


@pytest.mark.parametrize("kept", range(1, len("</item>")))
def test_a_cut_inside_an_end_tag_loses_that_entry(kept: int) -> None:
    body = CELL.read_bytes()
    third = _cut_after(body, b"</item>", 3)
    cut = parse(third[: -len(b"</item>")] + b"</item>"[:kept], ORIGIN)
    assert len(cut) == 2, "'</ite' does not close the third item"
    assert skipped_of(cut) == {"cut off mid-entry": 1, "missing after the cut": 5}


def test_a_cut_right_after_an_end_tag_keeps_that_entry() -> None:
    cut = parse(_cut_after(CELL.read_bytes(), b"</item>", 3, extra=4), ORIGIN)
    assert len(cut) == 3
    assert skipped_of(cut) == {"missing after the cut": 5}


def test_a_feed_cut_before_its_channel_closes_is_an_error_when_no_entry_is_whole() -> None:
    body = CELL.read_bytes()
    with pytest.raises(ParseError, match=r"^expected an RSS or Atom feed, got malformed XML \(unclosed token at line"):
        parse(body[: body.index(b"<item ") + 40], ORIGIN)


# -- hostile XML ---------------------------------------------------------------------------------


LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE rss [
<!ENTITY a "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa">
<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">
<!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">
<!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;">
<!ENTITY f "&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;">
]>
<rss version="2.0"><channel><title>t</title><item><title>&f;</title><guid>x</guid></item></channel></rss>"""


def test_an_entity_bomb_is_refused_before_anything_expands() -> None:
    with pytest.raises(ParseError) as raised:
        parse(LAUGHS, ORIGIN)
    assert str(raised.value) == (
        "expected an RSS or Atom feed, got XML declaring the entity 'b' (external, or made of "
        "other entities): refused, a feed never needs one"
    )


@pytest.mark.parametrize(
    "declaration",
    [
        '<!ENTITY secret SYSTEM "file://{path}">',
        '<!ENTITY secret PUBLIC "-//x//y" "file://{path}">',
        '<!ENTITY % secret SYSTEM "file://{path}"> %secret;',
    ],
    ids=["system", "public", "parameter"],
)
def test_an_external_entity_is_refused_and_the_file_never_read(
    declaration: str, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("THE-SECRET-TEXT")
    doctype = declaration.format(path=secret)
    body = (
        f'<?xml version="1.0"?><!DOCTYPE rss [{doctype}]><rss version="2.0"><channel><title>t</title>'
        "<item><title>T &secret;</title><description>&secret;</description><guid>g</guid></item>"
        "</channel></rss>"
    ).encode()
    with pytest.raises(ParseError, match="got XML declaring the entity 'secret'") as raised:
        parse(body, ORIGIN)
    assert "THE-SECRET-TEXT" not in str(raised.value)


def test_a_character_entity_declared_in_the_doctype_is_harmless_and_read() -> None:
    body = (
        b'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY nbsp "&#160;">]><rss version="2.0"><channel>'
        b"<title>t</title><item><title>Deep&nbsp;learning</title><guid>g</guid></item></channel></rss>"
    )
    assert only(parse(body, ORIGIN)).title == "Deep learning"


def test_markup_nested_200000_deep_is_read_without_a_crash() -> None:
    body = rss("<item><title>T</title><guid>g</guid><description>" + "<div>" * 200_000 + "</description></item>")
    assert only(parse(body, ORIGIN)).title == "T"


def test_utf8_declared_latin1_is_read_as_utf8() -> None:
    item = "<item><title>Étude naïve des réseaux</title><guid>g</guid><description>Résumé</description></item>"
    body = rss(item, encoding="ISO-8859-1")  # the bytes are UTF-8
    record = only(parse(body, ORIGIN))
    assert (record.title, record.abstract) == ("Étude naïve des réseaux", "Résumé"), "no 'Ã©'"


def test_binary_data_is_refused() -> None:
    with pytest.raises(ParseError, match=r"^expected an RSS or Atom feed, got binary data \(11% of the bytes"):
        parse(bytes(range(256)) * 40, ORIGIN)


def test_a_title_longer_than_any_title_is_left_out_and_said() -> None:
    items = f"<item><title>{'Word ' * 120}</title><guid>long</guid></item><item><title>Short</title><guid>s</guid></item>"
    records = parse(rss(items), ORIGIN)
    assert [r.title for r in records] == ["Short"]
    assert skipped_of(records) == {"title over 500 characters": 1}


# -- arXiv ids in other sites' links -------------------------------------------------------------


@pytest.mark.parametrize(
    ("link", "arxiv_id", "version"),
    [
        ("https://www.alphaxiv.org/abs/2604.26934", "2604.26934", None),
        ("https://www.alphaxiv.org/overview/2604.26934v2", "2604.26934", 2),
        ("https://huggingface.co/papers/2604.26934", "2604.26934", None),
        ("https://hf.co/papers/2604.26934", "2604.26934", None),
        ("https://tldr.takara.ai/p/2604.26934", "2604.26934", None),
        ("https://ar5iv.labs.arxiv.org/html/2604.26934", "2604.26934", None),
        ("https://export.arxiv.org/abs/2604.26934v3", "2604.26934", 3),
        ("https://arxiv.org/pdf/2604.26934v2", "2604.26934", 2),
    ],
)
def test_an_entry_linking_a_mirror_is_keyed_by_its_arxiv_id(
    link: str, arxiv_id: str, version: int | None
) -> None:
    record = only(parse(rss(f"<item><title>T</title><link>{link}</link></item>"), ORIGIN))
    assert (record.arxiv_id, record.version, record.source_key) == (arxiv_id, version, None)
    assert record.abs_url == link
    assert record.pdf_url == f"https://arxiv.org/pdf/{arxiv_id}"


def test_digits_in_another_sites_link_are_no_arxiv_id() -> None:
    items = (
        "<item><title>A</title><link>https://doi.org/10.1234/2604.26934</link></item>"
        "<item><title>B</title><link>https://blog.example.org/2604.26934</link></item>"
    )
    doi, blog = parse(rss(items), ORIGIN)
    assert (doi.arxiv_id, doi.doi) == (None, "10.1234/2604.26934")
    assert (blog.arxiv_id, blog.source_key) == (None, "https://blog.example.org/2604.26934")


def test_an_arxiv_id_in_an_atom_entrys_other_link() -> None:
    body = (
        b'<feed xmlns="http://www.w3.org/2005/Atom"><title>t</title><entry><id>tag:x,1</id>'
        b'<title>T</title><link rel="alternate" href="https://lab.example.org/post"/>'
        b'<link rel="related" href="https://huggingface.co/papers/2604.26934"/></entry></feed>'
    )
    record = only(parse(body, ORIGIN))
    assert (record.arxiv_id, record.abs_url) == ("2604.26934", "https://lab.example.org/post")


def test_mojibake_in_a_feed_is_repaired() -> None:
    item = (
        "<item><title>GarcÃ­a's lemma, donâ€™t panic</title><guid>g</guid>"
        "<dc:creator>PÃ¡l ErdÅ‘s</dc:creator><description>Ãœber die RÃ¤nder</description></item>"
    )
    record = only(parse(rss(item), ORIGIN))
    assert record.title == "García's lemma, don’t panic"
    assert record.authors == ("Pál Erdős",)
    assert record.abstract == "Über die Ränder"
