from datetime import UTC, date, datetime

import pytest
from helpers import FIXTURES

from digest.errors import LayoutChanged, ParseError
from digest.models import Origin
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
    ("body", "error", "message"),
    [
        (
            b"<html><body><h1>Service temporarily unavailable</h1></body></html>",
            LayoutChanged,
            "no <dl id='articles'>",
        ),
        (b'{"error": 1}', ParseError, "got JSON"),
        (b"", ParseError, "empty body"),
    ],
)
def test_a_page_without_the_listing_is_reported(
    body: bytes, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        parse_listing_html(body, ORIGIN)


def test_a_truncated_listing_keeps_the_complete_entries() -> None:
    body = RECENT.read_bytes()
    cut = body[: body.index(b"arXiv:2607.22513")]  # in the middle of entry 30
    assert len(parse_listing_html(cut, ORIGIN)) == 29


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
            "expected an arXiv RSS or Atom feed, got an HTML page",
        ),
        (b"<?xml version='1.0'?><rss><channel><item><title>Cut", "got malformed XML"),
        (b"<?xml version='1.0'?><opml/>", "got a <opml> document"),
        (b'[{"id": 1}]', "got JSON"),
    ],
)
def test_bad_feeds_are_clear_errors(body: bytes, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_rss(body, ORIGIN)


def test_entities_are_not_expanded() -> None:
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;">]>'
        b"<rss><channel><item><title>&b;</title><guid>oai:arXiv.org:2611.00001v1</guid></item></channel></rss>"
    )
    (record,) = parse_rss(bomb, ORIGIN)
    assert "aaaaaaaaaa" not in record.title


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
