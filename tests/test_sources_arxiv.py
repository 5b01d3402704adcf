from datetime import UTC, date, datetime

import pytest
from helpers import FIXTURES

from digest.errors import LayoutChanged, ParseError
from digest.models import Origin, Record, skipped_of
from digest.sources import feed
from digest.sources.arxiv import parse_api, parse_listing_html, parse_rss

ORIGIN = Origin("arxiv", "https://arxiv.org/list/cs.CL/recent")
ARXIV = FIXTURES / "arxiv"
RECENT = ARXIV / "arxiv_list_cs.CL_recent_2026-07-27_newlayout.html"


def read(name: str) -> bytes:
    return (ARXIV / name).read_bytes()


# -- listing pages ------------------------------------------------------------------------------


def test_the_recent_listing_gives_every_entry_with_its_day_and_kind() -> None:
    records = parse_listing_html(RECENT.read_bytes(), ORIGIN)
    assert len(records) == 50, "47 entries of Mon 27 Jul and the first 3 of Fri 24 Jul"
    assert all(r.arxiv_id and r.title and r.authors and r.categories for r in records)
    assert [r.listed for r in records].count(date(2026, 7, 27)) == 47
    kinds = [r.announce_type for r in records]
    assert (kinds.count("new"), kinds.count("cross")) == (32, 18)


def test_exact_fields_of_real_listing_entries() -> None:
    records = {r.arxiv_id: r for r in parse_listing_html(RECENT.read_bytes(), ORIGIN)}
    first = records["2607.22529"]
    assert (
        first.title
        == "Skill Self-Play: Pushing the Frontier of LLM Capability with Co-Evolving Skills"
    )
    assert (
        first.authors[:3] == ("Siyuan Huang", "Pengyu Cheng", "Haotian Liu")
        and len(first.authors) == 13
    )
    assert (first.categories, first.primary_category, first.announce_type) == (
        ("cs.CL",),
        "cs.CL",
        "new",
    )
    assert (first.abs_url, first.pdf_url) == (
        "https://arxiv.org/abs/2607.22529",
        "https://arxiv.org/pdf/2607.22529",
    )
    assert first.abstract == "", "/recent pages carry no abstracts"
    cross = records["2607.22513"]
    assert (
        cross.title
        == "Opaque Epistemic Mediation: How LLM Deployment Configurations Shape the Validation of Pseudo-Science"
    )
    assert cross.announce_type == "cross"
    assert (cross.categories, cross.primary_category) == (("cs.CY", "cs.AI", "cs.CL"), "cs.CY")
    assert cross.comment == "16 pages, 2 tables"
    assert cross.authors == ("Davide Scarso", "Hugo Noronha de Almeida", "Joaquim Pina")


def test_the_new_listing_tells_new_cross_and_replacements_apart() -> None:
    records = parse_listing_html(read("arxiv_list_new_synthetic.html"), ORIGIN)
    assert [(r.arxiv_id, r.announce_type) for r in records] == [
        ("2611.10001", "new"),
        ("2611.10002", "new"),
        ("2611.09999", "cross"),
        ("2609.00042", "replace"),
        ("2608.00007", "replace-cross"),
    ]
    first = records[0]
    assert first.title == "Diffusion Models Are Secretly Good Planners", (
        "markup inside a title is text"
    )
    assert (
        first.abstract
        == "We show that denoising diffusion models can be used as planners for long-horizon tasks."
    )
    assert first.listed == date(2026, 11, 20)
    assert records[1].abstract == "" and records[1].journal_ref == "J. Synth. Res. 1 (2026) 1-10"


def test_an_empty_period_is_an_honest_empty_listing() -> None:
    assert parse_listing_html(read("arxiv_list_cs_9101_no_updates_prettified.html"), ORIGIN) == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            b"<html><body><h1>Service temporarily unavailable</h1></body></html>",
            "^arXiv answered with an error page: 'Service temporarily unavailable'$",
        ),
        (b'{"error": 1}', "got JSON"),
        (b"", "empty body"),
    ],
)
def test_a_page_without_the_listing_is_reported(body: bytes, message: str) -> None:
    with pytest.raises(ParseError, match=message) as caught:
        parse_listing_html(body, ORIGIN)
    assert not isinstance(caught.value, LayoutChanged), "an error page is no layout change"


def test_a_listing_page_without_its_markers_is_a_layout_change() -> None:
    renamed = RECENT.read_bytes().replace(b"<dl id='articles'>", b"<dl id='papers'>")
    with pytest.raises(LayoutChanged, match="no <dl id='articles'>"):
        parse_listing_html(renamed, ORIGIN)


def test_a_truncated_listing_keeps_the_complete_entries() -> None:
    body = RECENT.read_bytes()
    cut = body[: body.index(b"arXiv:2607.22513")]  # in the middle of entry 30
    records = parse_listing_html(cut, ORIGIN)
    assert len(records) == 29
    assert skipped_of(records) == {"cut off mid-entry": 1, "missing after the cut": 20}, (
        "entry 30 is cut; the page's paging says 1-50, so 20 more never came"
    )


# -- the RSS service ----------------------------------------------------------------------------


def test_the_atom_flavour_of_the_rss_service() -> None:
    records = parse_rss(read("arxiv_atom_cs.AI_2025-08-20_7entries_trimmed.xml"), ORIGIN)
    assert [r.announce_type for r in records] == ["cross"] * 5 + ["new"] * 2
    first = records[0]
    assert (first.arxiv_id, first.version) == ("2508.13426", 1)
    assert (
        first.title
        == "ALIGN: Word Association Learning for Cross-Cultural Generalization in Large Language Models"
    )
    assert first.abstract.startswith("As large language models (LLMs) increasingly mediate")
    assert "Announce Type" not in first.abstract
    assert first.authors == ("Chunhua Liu", "Kabir Manandhar Shrestha", "Sukai Huang")
    assert first.categories == ("cs.CL", "cs.AI")
    assert first.listed == date(2025, 8, 20), "the announce day as arXiv gives it, in New York"


def test_the_rss_2_flavour_and_an_empty_channel() -> None:
    new, replaced = parse_rss(read("arxiv_rss_cs.LG_synthetic.xml"), ORIGIN)
    assert (new.arxiv_id, new.version, new.announce_type) == ("2611.10001", 1, "new")
    assert new.authors == ("Jane Doe", "Richard Roe", "Ann Smith")
    assert new.abstract == "We show that denoising diffusion models can be used as planners."
    assert (new.categories, new.listed) == (("cs.LG", "cs.AI"), date(2026, 11, 20))
    assert (replaced.version, replaced.announce_type) == (2, "replace-cross")
    assert parse_rss(read("arxiv_rss_empty_synthetic.xml"), ORIGIN) == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            b"<!DOCTYPE html><html><body>Rate limited</body></html>",
            "^expected an arXiv RSS or Atom feed, got an HTML error page: 'Rate limited'$",
        ),
        (
            b"<!DOCTYPE html><html><head><title>cs.LG</title></head><body>x</body></html>",
            "^expected an arXiv RSS or Atom feed, got an HTML page: 'cs.LG'$",
        ),
        (
            b"<?xml version='1.0'?><rss><channel><item><title>Cut",
            "got a body cut short before its first complete entry",
        ),
        (
            b"<?xml version='1.0'?><rss><channel><item><title>A & B</title></item></channel></rss>",
            "^expected an arXiv RSS or Atom feed, got malformed XML: xmlParseEntityRef: no name",
        ),
        (b"<?xml version='1.0'?><opml/>", "got a <opml> document"),
        (b'[{"id": 1}]', "got JSON"),
        (b"Rate exceeded.", "^expected an arXiv RSS or Atom feed, got plain text: 'Rate exceeded.'$"),
    ],
)
def test_bad_feeds_are_clear_errors(body: bytes, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_rss(body, ORIGIN)


# -- the export API -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "count"),
    [
        ("arxiv_api_2025-10-17_cat-cs.RO-neural_2entries_oldformat.xml", 2),
        ("arxiv_api_2026-03-26_all-attention_3entries_newformat.xml", 3),
        ("arxiv_api_2026-04-12_id_list-0000.0000_empty-result_from-arxivpy-recording.xml", 0),
        (
            "arxiv_api_2026-04-12_id_list-0808.05394-1707.08567_newformat_from-arxivpy-recording.xml",
            1,
        ),
        ("arxiv_api_2026-04-12_id_list-astro-ph_0601001_oldstyle-id_from-arxivpy-recording.xml", 1),
        ("arxiv_api_2026-04-12_q-testing_10entries_newformat_from-arxivpy-recording.xml", 10),
        ("arxiv_api_2026-06-14_all-transformer_cat-cs.LG_5entries_newformat.xml", 5),
        ("arxiv_api_2026-07-13_cat-cs.AI-LG_50entries_newformat.xml", 50),
        ("arxiv_api_2026-08-02_cat-cs.AI-LG-CL_sortSubmitted_25entries_newformat.xml", 25),
    ],
)
def test_every_api_capture_parses_whole(name: str, count: int) -> None:
    records = parse_api(read(name), ORIGIN)
    assert len(records) == count
    assert all(
        r.arxiv_id and r.title and r.abstract and r.authors and r.primary_category for r in records
    )


def test_exact_fields_of_a_legacy_api_entry() -> None:
    first = parse_api(read("arxiv_api_2025-10-17_cat-cs.RO-neural_2entries_oldformat.xml"), ORIGIN)[
        0
    ]
    assert (first.arxiv_id, first.version) == ("2510.14968", 1)
    assert (
        first.title
        == "RDD: Retrieval-Based Demonstration Decomposer for Planner Alignment in Long-Horizon Tasks"
    )
    assert first.authors == ("Mingxuan Yan", "Yuping Wang", "Zechun Liu", "Jiachen Li")
    assert first.primary_category == "cs.RO"
    assert first.categories == ("cs.RO", "cs.AI", "cs.CV", "cs.LG", "cs.SY", "eess.SY")
    assert first.published == datetime(2025, 10, 16, 17, 59, 37, tzinfo=UTC)
    assert first.comment is not None and first.comment.startswith(
        "39th Conference on Neural Information"
    )
    assert first.abstract.startswith("To tackle long-horizon tasks, recent hierarchical")


def test_exact_fields_of_current_api_entries() -> None:
    mana = parse_api(
        read("arxiv_api_2026-06-14_all-transformer_cat-cs.LG_5entries_newformat.xml"), ORIGIN
    )[0]
    assert (mana.arxiv_id, mana.title) == (
        "2606.13677",
        "Mana: Dexterous Manipulation of Articulated Tools",
    )
    assert mana.authors == ("Zhao-Heng Yin", "Guanya Shi", "Pieter Abbeel", "C. Karen Liu")
    assert (mana.primary_category, mana.categories) == (
        "cs.RO",
        ("cs.RO", "cs.AI", "cs.CV", "cs.LG"),
    )
    assert mana.comment == "Project Page: https://zhaohengyin.github.io/mana"
    testing = parse_api(
        read("arxiv_api_2026-04-12_q-testing_10entries_newformat_from-arxivpy-recording.xml"),
        ORIGIN,
    )[0]
    assert (testing.arxiv_id, testing.doi) == ("2202.12139", "10.1109/ICSTW55395.2022.00035")
    old = parse_api(
        read(
            "arxiv_api_2026-04-12_id_list-astro-ph_0601001_oldstyle-id_from-arxivpy-recording.xml"
        ),
        ORIGIN,
    )[0]
    assert (old.arxiv_id, old.version, old.journal_ref) == (
        "astro-ph/0601001",
        1,
        "ActaAstron.56:1-50,2006",
    )
    assert old.abs_url == "https://arxiv.org/abs/astro-ph/0601001"


def test_the_api_error_feed_is_a_clear_error() -> None:
    with pytest.raises(ParseError, match="^arXiv API error: incorrect id format for abc$"):
        parse_api(
            read("arxiv_api_2026-04-12_id_list-abc_HTTP400-error-feed_from-arxivpy-recording.xml"),
            ORIGIN,
        )


def test_hostile_text_in_a_feed_stays_plain() -> None:
    body = (
        b"<?xml version='1.0'?><feed xmlns='http://www.w3.org/2005/Atom'><entry>"
        b"<id>http://arxiv.org/abs/2611.00001v3</id><title>&lt;script&gt;alert(1)&lt;/script&gt;\r\nTitle</title>"
        b"<summary>x</summary><author><name>A</name></author></entry></feed>"
    )
    (record,) = parse_api(body, ORIGIN)
    assert record.title == "<script>alert(1)</script> Title"
    assert (record.version, record.pdf_url) == (3, "https://arxiv.org/pdf/2611.00001")


def test_a_feed_in_the_wrong_charset_is_read_not_lost() -> None:
    body = (
        "<?xml version='1.0' encoding='UTF-8'?><feed xmlns='http://www.w3.org/2005/Atom'><entry>"
        "<id>http://arxiv.org/abs/2611.00002v1</id><title>Réseaux de neurones</title>"
        "<summary>x</summary></entry></feed>"
    ).encode("latin-1")
    (record,) = parse_api(body, ORIGIN)
    assert record.title == "Réseaux de neurones"


# -- the legacy RSS 1.0 feeds (export.arxiv.org/rss/<cat>, until 2024) ---------------------------

LEGACY_CS_AI = "arxiv_rss1_cs.AI_2017-08-10_15items_reserialized.xml"
LEGACY_HEP_EX = "arxiv_rss1_hep-ex_2018-05-23_3items_trimmed_from-physbiblio-test.xml"
LEGACY_LHCB = "arxiv_rss1_hep-ex_2021-07-08_3items_abstracts-replaced_from-physbiblio-test.xml"


def test_a_legacy_feed_gives_every_item_with_its_id_version_and_kind() -> None:
    records = parse_rss(read(LEGACY_CS_AI), ORIGIN)
    assert len(records) == 15 and skipped_of(records) == {}
    assert [(r.arxiv_id, r.version, r.announce_type) for r in records] == [
        ("1708.02940", 1, "cross"),
        ("1708.02977", 1, "cross"),
        ("1708.03019", 1, "new"),
        ("1708.03044", 1, "cross"),
        ("1708.03080", 1, "cross"),
        ("1708.03151", 1, "new"),
        ("1708.03209", 1, "new"),
        ("1708.03229", 1, "new"),
        ("1708.03246", 1, "cross"),
        ("1708.03259", 1, "new"),
        ("1708.03309", 1, "cross"),
        ("1708.03310", 1, "new"),
        ("1412.1913", 2, "replace"),
        ("1703.01720", 3, "replace-cross"),
        ("1705.00594", 2, "replace"),
    ], "a cs.CY paper in the cs.AI feed is a cross-list; UPDATED is a replacement"
    assert {r.listed for r in records} == {date(2017, 8, 11)}, (
        "mailed Thu 10 Aug at 20:30 New York time: the listing of Fri 11 Aug"
    )


def test_exact_fields_of_legacy_items() -> None:
    records = {r.arxiv_id: r for r in parse_rss(read(LEGACY_CS_AI), ORIGIN)}
    first = records["1708.02940"]
    assert first.title == (
        "Role of Secondary Attributes to Boost the Prediction Accuracy of Students "
        "Employability Via Data Mining"
    ), "the '. (arXiv:1708.02940v1 [cs.CY])' suffix is gone"
    assert first.authors == ("Pooja Thakar", "Anil Mehta", "Manisha")
    assert (first.primary_category, first.categories) == ("cs.CY", ("cs.CY", "cs.AI"))
    assert first.abstract.startswith("Data Mining is best-known for its analytical and prediction")
    assert first.abstract.endswith("for better results and employment opportunities.")
    assert "<p>" not in first.abstract
    assert (first.abs_url, first.pdf_url) == (
        "https://arxiv.org/abs/1708.02940",
        "https://arxiv.org/pdf/1708.02940",
    )
    tosca = records["1708.03209"]
    assert tosca.title == "Tosca: Operationalizing Commitments Over Information Protocols"
    assert tosca.authors == ("Thomas C. King", "Akın Günay", "Amit K. Chopra", "Munindar P. Singh")
    quoted = records["1708.03044"]
    assert quoted.title == (
        '"Is there anything else I can help you with?": Challenges in Deploying an On-Demand '
        "Crowd-Powered Conversational Agent"
    )
    updated = records["1703.01720"]
    assert updated.title == "Sound-Word2Vec: Learning Word Representations Grounded in Sounds"
    assert (updated.primary_category, updated.categories) == ("cs.CL", ("cs.CL", "cs.AI"))


def test_a_legacy_feed_as_arxiv_sent_it_escaped_html_and_marks() -> None:
    plain, cross, updated = parse_rss(read(LEGACY_HEP_EX), ORIGIN)
    assert (plain.title, plain.arxiv_id, plain.version, plain.announce_type) == (
        "Measurement of Transverse Single Spin Asymmetries",
        "1805.08875",
        1,
        "new",
    )
    assert plain.authors == ("Christopher Dilks",), "the link's name; '(STAR Collaboration)' is no author"
    assert "range of $2.6<\\eta<4$. Within" in plain.abstract, "an escaped '&amp;lt;' is a '<'"
    assert plain.abstract.startswith("In 2015 the first collisions between polarized protons")
    assert plain.listed == date(2018, 5, 24)
    assert (cross.title, cross.version, cross.announce_type, cross.authors) == (
        "Recent Top quark results from the Tevatron",
        1,
        "cross",
        ("Boris Tuchming",),
    )
    assert cross.abstract == "We present recent measurements"
    assert (updated.arxiv_id, updated.version, updated.announce_type) == ("1805.06430", 2, "replace-cross")
    assert (updated.primary_category, updated.categories) == ("nucl-th", ("nucl-th", "hep-ex"))
    assert updated.authors == (
        "Shu-Sheng Xu",
        "Zhu-Fang Cui",
        "Lei Chang",
        "Joannis Papavassiliou",
        "Craig D. Roberts",
        "Hong-Shi Zong",
    )


def test_a_legacy_feed_counts_the_authors_it_does_not_show() -> None:
    lhcb, cross, updated = parse_rss(read(LEGACY_LHCB), ORIGIN)
    assert lhcb.title == (
        "Observation of excited $\\Omega_c^0$ baryons in $\\Omega_b^- \\to \\Xi_c^+ K^-\\pi^-$ decays"
    )
    assert lhcb.authors == ("LHCb collaboration", "R. Aaij")
    assert lhcb.author_count == 911, "2 shown and '909 additional authors not shown'"
    assert (cross.arxiv_id, cross.version, cross.announce_type, cross.primary_category) == (
        "2106.00550",
        2,
        "cross",
        "math.GR",
    )
    assert (updated.arxiv_id, updated.announce_type, len(updated.authors)) == (
        "2007.03939",
        "replace-cross",
        5,
    )
    assert {r.listed for r in (lhcb, cross, updated)} == {date(2021, 7, 9)}


def test_the_feed_kind_hands_a_legacy_arxiv_feed_to_the_arxiv_parser() -> None:
    for name in (LEGACY_CS_AI, LEGACY_HEP_EX, LEGACY_LHCB):
        assert feed.parse(read(name), ORIGIN) == parse_rss(read(name), ORIGIN)
    (record, *_) = feed.parse(read(LEGACY_HEP_EX), ORIGIN)
    assert record.title == "Measurement of Transverse Single Spin Asymmetries"
    assert record.authors == ("Christopher Dilks",), "no '<a href' markup in authors"


# -- charsets and mojibake ----------------------------------------------------------------------

API_50 = "arxiv_api_2026-07-13_cat-cs.AI-LG_50entries_newformat.xml"
ACCENTED = ("Cláudio Lúcio do Val Lopes", "Benoît Loucheur", "Michel Journée")


def _accented(records: list[Record]) -> list[str]:
    return [name for r in records for name in r.authors if not name.isascii()]


def test_utf8_declared_as_latin1_is_read_as_utf8() -> None:
    body = read(API_50)
    whole = parse_api(body, ORIGIN)
    assert tuple(_accented(whole)[:3]) == ACCENTED
    for declared in (b"ISO-8859-1", b"latin-1", b"windows-1252"):
        mislabelled = body.replace(b"encoding='UTF-8'", b"encoding='" + declared + b"'", 1)
        assert parse_api(mislabelled, ORIGIN) == whole, declared


def test_latin1_declared_as_utf8_is_read_as_windows_1252() -> None:
    body = read(API_50)
    whole = parse_api(body, ORIGIN)
    latin1 = body.decode("utf-8").encode("latin-1", "xmlcharrefreplace")  # $Ω$ as &#937;
    assert b"encoding='UTF-8'" in latin1[:60]
    assert parse_api(latin1, ORIGIN) == whole
    # One name in Latin-1 among UTF-8 ones: each byte sequence read as what it is.
    mixed = body.replace("Benoît".encode(), "Benoît".encode("latin-1"))
    assert parse_api(mixed, ORIGIN) == whole


def test_a_legacy_feed_in_utf8_declared_as_latin1() -> None:
    body = read(LEGACY_CS_AI).replace(b"Ak&#x131;n G&#xfc;nay", "Akın Günay".encode())
    mislabelled = b'<?xml version="1.0" encoding="ISO-8859-1"?>\n' + body
    records = {r.arxiv_id: r for r in parse_rss(mislabelled, ORIGIN)}
    assert records["1708.03209"].authors[1] == "Akın Günay"


def test_a_listing_page_is_read_as_utf8_whatever_its_meta_charset_says() -> None:
    body = RECENT.read_bytes()
    whole = parse_listing_html(body, ORIGIN)
    assert _accented(whole)[:3] == ["Lena Jäger", "Mehmet Batuhan Özdaş", "Murat Osmanoğlu"]
    mislabelled = body.replace(b"<head>", b'<head><meta charset="iso-8859-1">', 1)
    assert parse_listing_html(mislabelled, ORIGIN) == whole
    windows_1252 = body.decode("utf-8").encode("cp1252", "xmlcharrefreplace")
    assert parse_listing_html(windows_1252, ORIGIN) == whole


def test_mojibake_in_a_capture_is_repaired() -> None:
    """arxiv.py's recording of the API stored these names double-encoded."""
    raw = read("arxiv_api_2026-04-12_q-testing_10entries_newformat_from-arxivpy-recording.xml")
    assert "Aurora RamÃ\xadrez".encode() in raw and "JosÃ© RaÃºl Romero".encode() in raw
    names = _accented(parse_api(raw, ORIGIN))
    assert names == ["Aurora Ramírez", "José Raúl Romero"]
