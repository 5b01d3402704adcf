import json
from datetime import UTC, date, datetime

import pytest
from bs4 import BeautifulSoup
from helpers import FIXTURES

from digest.errors import LayoutChanged, ParseError
from digest.models import Origin, skipped_of
from digest.sources import Parser
from digest.sources.hf import parse_daily_api, parse_listing_html, parse_paper_page

ORIGIN = Origin("hf", "https://huggingface.co/api/daily_papers")
HF = FIXTURES / "hf"
LISTING = HF / "hf_papers_listing_2026-09-28_reconstructed.html"


@pytest.mark.parametrize(
    ("name", "count"),
    [
        ("hf_api_daily_papers_2026-05-08_3items_pretty.json", 3),
        ("hf_api_daily_papers_2026-06-12_30items.json", 30),
        ("hf_api_daily_papers_2026-07-10_to_13_limit25.json", 25),
        ("hf_api_daily_papers_date-2024-08-02_reserialized.json", 16),
        ("hf_api_daily_papers_date-2025-07-22_reserialized.json", 16),
        ("hf_api_daily_papers_date-2026-08-21_reserialized.json", 17),
    ],
)
def test_every_api_capture_parses_whole(name: str, count: int) -> None:
    body = (HF / name).read_bytes()
    records = parse_daily_api(body, ORIGIN)
    assert len(records) == count == len(json.loads(body))
    assert all(r.title and r.arxiv_id and r.abstract and r.authors for r in records)
    assert all(r.abs_url == f"https://huggingface.co/papers/{r.arxiv_id}" for r in records)


def test_exact_fields_of_a_current_api_record() -> None:
    first = parse_daily_api(
        (HF / "hf_api_daily_papers_2026-05-08_3items_pretty.json").read_bytes(), ORIGIN
    )[0]
    assert first.arxiv_id == "2605.05242"
    assert (
        first.title
        == "Beyond Semantic Similarity: Rethinking Retrieval for Agentic Search via Direct Corpus Interaction"
    )
    assert (
        first.authors[:3] == ("Zhuofeng Li", "Haoxiang Zhang", "Cong Wei")
        and len(first.authors) == 19
    )
    assert (first.upvotes, first.comment_count) == (86, 3)
    assert first.published == datetime(2026, 5, 3, tzinfo=UTC)
    assert first.listed == date(2026, 5, 8), "the day it was featured on the daily list"
    assert first.ai_summary is not None and first.ai_summary.startswith(
        "Direct corpus interaction enables"
    )
    assert first.ai_keywords[:2] == ("retrieval systems", "lexical retrieval")
    assert (first.code_url, first.github_stars) == (
        "https://github.com/DCI-Agent/DCI-Agent-Lite",
        101,
    )
    assert first.pdf_url == "https://arxiv.org/pdf/2605.05242"
    assert first.organization == "TIGER-Lab"


def test_exact_fields_of_a_2024_api_record() -> None:
    sam = parse_daily_api(
        (HF / "hf_api_daily_papers_date-2024-08-02_reserialized.json").read_bytes(), ORIGIN
    )[0]
    assert (sam.arxiv_id, sam.title) == (
        "2408.00714",
        "SAM 2: Segment Anything in Images and Videos",
    )
    assert sam.authors[:2] == ("Nikhila Ravi", "Valentin Gabeur") and len(sam.authors) == 18
    assert (sam.upvotes, sam.comment_count, sam.ai_summary) == (35, 1, None)
    assert sam.listed == date(2024, 8, 2), "no submittedOnDailyAt in 2024: the item's own date"
    assert (
        sam.thumbnail_url
        == "https://cdn-thumbnails.huggingface.co/social-thumbnails/papers/2408.00714.png"
    )


def test_a_multi_day_answer_keeps_each_papers_day() -> None:
    records = parse_daily_api(
        (HF / "hf_api_daily_papers_2026-07-10_to_13_limit25.json").read_bytes(), ORIGIN
    )
    days = [r.listed for r in records]
    assert (days.count(date(2026, 7, 13)), days.count(date(2026, 7, 10))) == (14, 11)


def test_the_listing_page_reads_its_embedded_json() -> None:
    records = parse_listing_html(LISTING.read_bytes(), ORIGIN)
    assert len(records) == 28
    first = records[0]
    assert first.arxiv_id == "2609.31620"
    assert first.title.startswith("FuseReg: Regularizing Layer Fusion Mitigates")
    assert (first.upvotes, first.comment_count, first.github_stars) == (110, 2, 12)
    assert first.code_url == "https://github.com/Hongyang-Du/FuseReg"
    assert first.project_url == "https://hongyang-du.github.io/FuseReg/"
    assert first.listed == date(2026, 9, 28)
    assert first.organization == "USC Physical Superintelligence (PSI) Lab"
    names = [name for r in records for name in r.authors]
    assert "Christopher D'Mello" in names and "Meghan O'Connell" in names, (
        "double-escaped names mended"
    )


def test_the_listing_page_falls_back_to_its_cards() -> None:
    soup = BeautifulSoup(LISTING.read_bytes(), "lxml")
    del soup.find(attrs={"data-target": "DailyPapers"})["data-props"]
    from_cards = parse_listing_html(str(soup).encode(), ORIGIN)
    from_json = parse_listing_html(LISTING.read_bytes(), ORIGIN)
    assert [(r.arxiv_id, r.title) for r in from_cards] == [(r.arxiv_id, r.title) for r in from_json]
    first = from_cards[0]
    assert (first.upvotes, first.comment_count, first.github_stars) == (110, 2, 12)
    assert first.organization == "USC Physical Superintelligence (PSI) Lab"
    assert (
        sum(1 for a, b in zip(from_cards, from_json, strict=True) if a.upvotes == b.upvotes) == 26
    )


def test_a_page_with_neither_json_nor_cards_is_a_layout_change() -> None:
    page = b"<!DOCTYPE html><html><head><title>Daily Papers</title></head><body><main>Soon.</main></body></html>"
    with pytest.raises(
        LayoutChanged, match="neither the DailyPapers data-props JSON nor any paper card"
    ):
        parse_listing_html(page, ORIGIN)


def test_the_paper_page() -> None:
    (paper,) = parse_paper_page(
        (HF / "hf_paper_page_2509.24002_bs4-prettified.html").read_bytes(), ORIGIN
    )
    assert (paper.arxiv_id, paper.upvotes, paper.github_stars) == ("2509.24002", 118, 182)
    assert (
        paper.title == "MCPMark: A Benchmark for Stress-Testing Realistic and Comprehensive MCP Use"
    )
    assert (paper.code_url, paper.project_url) == (
        "https://github.com/eval-sys/mcpmark",
        "https://mcpmark.ai/",
    )
    assert paper.listed == date(2025, 10, 1) and len(paper.authors) == 15
    with pytest.raises(LayoutChanged):
        parse_paper_page(b"<html><body>Not found</body></html>", ORIGIN)


WHOLE_API = (HF / "hf_api_daily_papers_2026-05-08_3items_pretty.json").read_bytes()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            b'[{"paper": {"id": "2501.00001", "title": "Cut',
            "expected a JSON array of daily papers, got JSON cut off after 45 characters (it ends mid-value)",
        ),
        (
            WHOLE_API[: len(WHOLE_API) // 2],
            f"expected a JSON array of daily papers, got JSON cut off after {len(WHOLE_API) // 2:,} characters",
        ),
        (
            WHOLE_API[: WHOLE_API.index(b'"upvotes"')],
            "got JSON cut off after",
        ),
        (
            b'[{"paper": {"id": "2501.00001"}} {"paper": {}}]',
            "got malformed JSON at line 1 column 34 (Expecting ',' delimiter)",
        ),
        (
            b"<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1></body></html>",
            'got an HTML/XML page (starts with "<!DOCTYPE html><html><body><h1>502 Bad Gateway',
        ),
        (b'{"error": "Invalid date"}', "^Hugging Face answered with an error: Invalid date$"),
        (
            b'{"error": {"message": "Rate limit reached", "code": 429}}',
            "^Hugging Face answered with an error: Rate limit reached$",
        ),
        (
            b'{"papers": [], "total": 0}',
            '^expected a JSON array of daily papers, got a JSON object with keys "papers", "total"$',
        ),
        (b'"maintenance"', "got a JSON string$"),
        (b"", "got an empty body"),
        (b" \n\t ", "got an empty body"),
        (b"[" * 200_000, "^expected a JSON array of daily papers, got JSON nested too deep to read$"),
        (
            b'[{"paper": {"id": "2501.00001", "upvotes": ' + b"9" * 5001 + b"}}]",
            "^expected a JSON array of daily papers, got JSON holding a number of over 4,300 digits$",
        ),
        (bytes(range(256)) * 8, "malformed JSON at line 1 column 1"),
    ],
    ids=[
        "cut-mid-string", "cut-at-half", "cut-mid-record", "malformed", "html", "error-object",
        "error-object-nested", "other-object", "string", "empty", "blank", "deep", "huge-int",
        "binary",
    ],
)
def test_bad_api_bodies_are_one_clear_error(body: bytes, message: str) -> None:
    """`message` is part of the error's text; with ^ or $, its start or its end."""
    with pytest.raises(ParseError) as raised:
        parse_daily_api(body, ORIGIN)
    text, core = str(raised.value), message.removeprefix("^").removesuffix("$")
    assert core in text
    assert text.startswith(core) or not message.startswith("^"), text
    assert text.endswith(core) or not message.endswith("$"), text
    assert "\n" not in text, "one line"


def test_latin1_and_utf8_bodies_read_the_same() -> None:
    item = '[{"paper": {"id": "2501.00001", "title": "Étude de réseaux", "authors": [{"name": "José Núñez"}]}}]'
    utf8 = parse_daily_api(item.encode(), ORIGIN)
    latin1 = parse_daily_api(item.encode("latin-1"), ORIGIN)
    assert utf8 == latin1
    assert (utf8[0].title, utf8[0].authors) == ("Étude de réseaux", ("José Núñez",))


@pytest.mark.parametrize("parse", [parse_listing_html, parse_paper_page])
def test_binary_data_where_a_page_was_expected(parse: Parser) -> None:
    with pytest.raises(ParseError, match=r"^expected an HTML page, got binary data \(\d+% of the bytes"):
        parse(bytes(range(256)) * 8, ORIGIN)


def test_a_broken_embed_of_any_kind_falls_back_to_the_cards() -> None:
    page = LISTING.read_bytes()
    soup = BeautifulSoup(page, "lxml")
    soup.find(attrs={"data-target": "DailyPapers"})["data-props"] = "[" * 100_000
    from_cards = parse_listing_html(str(soup).encode(), ORIGIN)
    assert [r.arxiv_id for r in from_cards] == [r.arxiv_id for r in parse_listing_html(page, ORIGIN)]


def test_json_where_the_listing_page_was_expected() -> None:
    with pytest.raises(ParseError, match="expected an HTML page, got JSON"):
        parse_listing_html(b'[{"paper": {}}]', ORIGIN)


def test_an_empty_array_is_an_empty_listing_and_odd_items_are_skipped() -> None:
    assert parse_daily_api(b"[]", ORIGIN) == []
    assert skipped_of(parse_daily_api(b"[]", ORIGIN)) == {}
    odd = b'[1, "x", {"paper": {"title": "No id"}}, {"paper": {"id": "2501.00001"}}, {"paper": {"id": "2501.00002", "title": "Kept"}}]'
    records = parse_daily_api(odd, ORIGIN)
    assert [r.arxiv_id for r in records] == ["2501.00002"]
    assert skipped_of(records) == {"no arXiv id or no title": 4}, "left out, and said"


def test_hostile_fields_stay_inert() -> None:
    item = {
        "paper": {
            "id": "2501.00001",
            "title": "<script>alert(1)</script>\r\nInjected: yes",
            "githubRepo": "javascript:alert(1)",
            "projectPage": "data:text/html,x",
            "upvotes": "many",
            "authors": [{"name": "A\x00B", "hidden": False}, {"name": "Hidden", "hidden": True}],
        },
        "thumbnail": "//cdn.example/x.png",
    }
    (record,) = parse_daily_api(json.dumps([item]).encode(), ORIGIN)
    assert record.title == "<script>alert(1)</script> Injected: yes", "plain text, one line"
    assert (record.code_url, record.project_url, record.upvotes) == (None, None, None)
    assert record.authors == ("AB",)
    assert record.thumbnail_url == "https://cdn.example/x.png"


def test_mojibake_in_the_api_is_repaired() -> None:
    item = {"paper": {"id": "2501.00001", "title": "RÃ©sumÃ© of GarcÃ­a", "summary": "Ãœber.",
                      "authors": [{"name": "JosÃ© RaÃºl Romero"}]}}
    (record,) = parse_daily_api(json.dumps([item]).encode(), ORIGIN)
    assert (record.title, record.abstract, record.authors) == (
        "Résumé of García", "Über.", ("José Raúl Romero",)
    )
