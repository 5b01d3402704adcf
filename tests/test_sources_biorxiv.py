from datetime import UTC, date, datetime

import pytest
from helpers import FIXTURES

from digest.errors import ParseError
from digest.models import Origin
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


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"messages": [{"status": "ok"}], "collection": [{"title": "cut', "malformed JSON"),
        (b'{"messages": [{"status": "ok"}]}', "with a 'collection' list"),
        (b"[1, 2]", "got a JSON array"),
        (b"<html><body>Service unavailable</body></html>", "got an HTML/XML page"),
    ],
)
def test_bad_bodies_are_clear_errors(body: bytes, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse(body, ORIGIN)
