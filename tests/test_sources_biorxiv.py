from datetime import UTC, date, datetime

import pytest
from helpers import FIXTURES

from digest.errors import ParseError
from digest.models import Origin, skipped_of
from digest.sources.biorxiv import parse

ORIGIN = Origin("biorxiv", "https://api.biorxiv.org/details/biorxiv/2024-01-01/2024-12-31/0")
DATA = FIXTURES / "biorxiv"


@pytest.mark.parametrize(
    ("name", "count", "distinct"),
    [
        ("biorxiv_api_details_2024-01-01_2024-12-31_cursor0_100items.json", 100, 79),
        ("medrxiv_api_details_2024-01-01_2024-12-31_cursor0_100items.json", 100, 99),
        ("biorxiv_api_details_2026-07-15_2026-07-18_TRIMMED_3items.json", 3, 3),
    ],
)
def test_every_capture_parses_whole(name: str, count: int, distinct: int) -> None:
    records = parse((DATA / name).read_bytes(), ORIGIN)
    assert len(records) == count
    assert len({r.doi for r in records}) == distinct, "each version of a preprint is an item"
    assert all(r.doi and r.title and r.abstract and r.authors for r in records)


def test_exact_fields_of_a_biorxiv_record() -> None:
    first = parse(
        (DATA / "biorxiv_api_details_2024-01-01_2024-12-31_cursor0_100items.json").read_bytes(),
        ORIGIN,
    )[0]
    assert (
        first.title
        == "Adaptation to heavy-metal contaminated environments proceeds via selection on pre-existing genetic variation"
    )
    assert (first.doi, first.version) == ("10.1101/029900", 3)
    assert first.authors[:2] == ("Wright, K. M.", "Gaudinier, A.") and len(first.authors) == 21
    assert first.categories == ("evolutionary biology",)
    assert first.updated == datetime(2024, 12, 16, tzinfo=UTC) and first.published is None
    assert first.listed == date(2024, 12, 16)
    assert first.abs_url == "https://www.biorxiv.org/content/10.1101/029900v3"
    assert first.pdf_url == "https://www.biorxiv.org/content/10.1101/029900v3.full.pdf"


def test_exact_fields_of_a_medrxiv_record() -> None:
    first = parse(
        (DATA / "medrxiv_api_details_2024-01-01_2024-12-31_cursor0_100items.json").read_bytes(),
        ORIGIN,
    )[0]
    assert first.doi == "10.1101/2023.10.21.23297352"
    assert first.abs_url == "https://www.medrxiv.org/content/10.1101/2023.10.21.23297352v3"
    assert first.categories == ("infectious diseases",)
    assert first.journal_ref is None, "'NA' means not yet published"
    published = [
        r
        for r in parse(
            (DATA / "medrxiv_api_details_2024-01-01_2024-12-31_cursor0_100items.json").read_bytes(),
            ORIGIN,
        )
        if r.journal_ref
    ]
    assert published[0].journal_ref == "10.1007/s12020-024-03982-2"


def test_no_posts_found_is_an_empty_listing() -> None:
    body = b'{"messages": [{"status": "no posts found", "interval": "2026-11-21:2026-11-21", "cursor": 0}]}'
    assert parse(body, ORIGIN) == []


SMALL = (DATA / "biorxiv_api_details_2026-07-15_2026-07-18_TRIMMED_3items.json").read_bytes()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            b'{"messages": [{"status": "ok"}], "collection": [{"title": "cut',
            "expected a bioRxiv details response, got JSON cut off after 62 characters (it ends mid-value)",
        ),
        (SMALL[: len(SMALL) // 2], "expected a bioRxiv details response, got JSON cut off after"),
        (
            SMALL[: SMALL.index(b'"published"')],
            "expected a bioRxiv details response, got JSON cut off after",
        ),
        (b'{"messages": [{"status": "ok"}]}', "expected a bioRxiv details response with a 'collection' list"),
        (b"[1, 2]", "expected a bioRxiv details response (a JSON object), got a JSON array"),
        (
            b"<html><body>Service unavailable</body></html>",
            'expected a bioRxiv details response, got an HTML/XML page (starts with "<html><body>Service unavailable',
        ),
        (
            b'{"messages": [{"status": "Error: invalid date format (2026-13-01); use YYYY-MM-DD"}]}',
            "bioRxiv answered with an error: Error: invalid date format (2026-13-01); use YYYY-MM-DD",
        ),
        (b'{"error": "Service temporarily unavailable"}', "bioRxiv answered with an error: Service temporarily unavailable"),
        (b"", "expected a bioRxiv details response, got an empty body"),
        (b'{"a": ' * 200_000, "expected a bioRxiv details response, got JSON nested too deep to read"),
        (
            b'{"messages": [{"status": "ok", "count": ' + b"1" * 5001 + b"}], \"collection\": []}",
            "expected a bioRxiv details response, got JSON holding a number of over 4,300 digits",
        ),
        (bytes(range(256)) * 8, "expected a bioRxiv details response, got malformed JSON at line 1 column 1"),
    ],
    ids=[
        "cut-mid-string", "cut-at-half", "cut-mid-record", "no-collection", "array", "html",
        "error-status", "error-object", "empty", "deep", "huge-int", "binary",
    ],
)
def test_bad_bodies_are_one_clear_error(body: bytes, message: str) -> None:
    with pytest.raises(ParseError) as raised:
        parse(body, ORIGIN)
    assert str(raised.value).startswith(message)
    assert "\n" not in str(raised.value)


def test_items_without_a_doi_or_title_are_left_out_and_said() -> None:
    body = (
        b'{"messages": [{"status": "ok"}], "collection": ['
        b'{"doi": "10.1101/2026.01.01.000001", "title": "Kept", "version": "1"},'
        b'{"doi": "not a doi", "title": "Bad DOI"}, {"doi": "10.1101/2026.01.01.000002"}, 7]}'
    )
    records = parse(body, ORIGIN)
    assert [r.doi for r in records] == ["10.1101/2026.01.01.000001"]
    assert skipped_of(records) == {"no DOI or no title": 3}


def test_mojibake_in_the_api_is_repaired() -> None:
    body = (
        '{"messages": [{"status": "ok"}], "collection": [{"doi": "10.1101/2026.01.01.000001", '
        '"title": "CaracterizaciÃ³n genÃ³mica", "authors": "GarcÃ­a, J.; MÃ¼ller, K.", '
        '"abstract": "Ãšnico.", "version": "1"}]}'
    ).encode()
    (record,) = parse(body, ORIGIN)
    assert (record.title, record.authors, record.abstract) == (
        "Caracterización genómica",
        ("García, J.", "Müller, K."),
        "Único.",
    )
