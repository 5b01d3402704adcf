from datetime import UTC, date, datetime

import pytest
from conftest import FIXTURES

from digest.errors import ParseError
from digest.models import Origin
from digest.sources.feed import parse

ORIGIN = Origin("feed", "https://journal.example.org/rss")
FEEDS = FIXTURES / "feeds"


def read(name: str) -> bytes:
    return (FEEDS / name).read_bytes()


def test_a_real_arxiv_atom_feed_read_as_a_generic_feed() -> None:
    records = parse(read("arxiv_atom_cs.AI_2025-08-20_7entries_trimmed.xml"), ORIGIN)
    assert len(records) == 7
    first = records[0]
    assert (first.arxiv_id, first.version, first.announce_type) == ("2508.13426", 1, "cross")
    assert (
        first.title
        == "ALIGN: Word Association Learning for Cross-Cultural Generalization in Large Language Models"
    )
    assert first.abstract.startswith("As large language models (LLMs) increasingly mediate")
    assert first.authors == ("Chunhua Liu", "Kabir Manandhar Shrestha", "Sukai Huang")
    assert first.categories == ("cs.CL", "cs.AI")
    assert first.listed == date(2025, 8, 20)
    assert [r.announce_type for r in records].count("new") == 2


def test_a_journal_table_of_contents_with_dois() -> None:
    article, editorial = parse(read("journal_toc_rss2_synthetic.xml"), ORIGIN)
    assert article.title == "Graph Neural Networks for Protein Folding", (
        "markup in a title becomes text"
    )
    assert article.doi == "10.5555/jsr.2026.0042"
    assert article.abstract == "We fold proteins with graphs."
    assert article.authors == ("Ada Lovelace", "Alan Turing")
    assert article.categories == ("Computational Biology",)
    assert article.published == datetime(2026, 11, 19, 8, 0, tzinfo=UTC)
    assert (editorial.doi, editorial.source_key) == (
        None,
        "https://journal.example.org/jsr/editorial-7",
    )


def test_an_atom_blog_with_an_arxiv_link_and_hostile_content() -> None:
    post, dangerous = parse(read("lab_blog_atom_synthetic.xml"), ORIGIN)
    assert post.title == "Our new paper on sparse attention"
    assert (post.arxiv_id, post.version) == ("2611.01234", 2)
    assert post.pdf_url == "https://arxiv.org/pdf/2611.01234v2"
    assert post.abstract == "Sparse attention, explained.", (
        "the script is dropped, not kept as text"
    )
    assert post.published == datetime(2026, 11, 20, 8, 30, tzinfo=UTC), "offsets converted to UTC"
    assert dangerous.abs_url is None, "javascript: links never leave the parser"
    assert dangerous.source_key == "tag:lab.example.org,2026:post-13"


def test_an_empty_feed_is_an_empty_listing() -> None:
    empty = b"<?xml version='1.0'?><rss version='2.0'><channel><title>t</title></channel></rss>"
    assert parse(empty, ORIGIN) == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            b"<!DOCTYPE html><html><head><title>Login</title></head><body>Sign in</body></html>",
            "got an HTML page",
        ),
        (b"", "got an empty body"),
        (b'{"items": []}', "expected an RSS or Atom feed"),
    ],
)
def test_what_is_not_a_feed_is_a_clear_error(body: bytes, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse(body, ORIGIN)


def test_a_truncated_feed_keeps_the_entries_it_has() -> None:
    body = read("journal_toc_rss2_synthetic.xml")
    cut = body[: body.index(b"An Editorial")]
    records = parse(cut, ORIGIN)
    assert [r.doi for r in records] == ["10.5555/jsr.2026.0042"]


def test_a_wrong_charset_never_crashes() -> None:
    body = (
        "<?xml version='1.0' encoding='utf-8'?><rss version='2.0'><channel><item>"
        "<title>Réseaux\r\nde neurones</title><link>https://a.example/1</link></item></channel></rss>"
    ).encode("latin-1")
    (record,) = parse(body, ORIGIN)
    assert record.title.startswith("R") and record.title.endswith("seaux de neurones")
