from datetime import UTC, datetime

import pytest
from helpers import FIXTURES

from digest.errors import LayoutChanged, ParseError
from digest.models import Origin, skipped_of
from digest.sources.hf_text import parse

ORIGIN = Origin("hf-text", "file:///listing.txt")
SAMPLES = sorted((FIXTURES / "hf").glob("0*.txt"))


@pytest.mark.parametrize(("index", "count"), [(0, 81), (1, 39), (2, 71), (3, 72)])
def test_every_entry_of_the_real_samples_is_parsed(index: int, count: int) -> None:
    records = parse(SAMPLES[index].read_bytes(), ORIGIN)
    assert len(records) == count
    assert all(r.title and r.abstract for r in records)
    assert all(r.arxiv_id is None and r.source_key is None for r in records), "the text has no ids"
    assert not {"new", "Subscribe", "Daily Papers", "Mar 11"} & {r.title for r in records}


def test_exact_fields_of_real_entries() -> None:
    first, second = parse(SAMPLES[0].read_bytes(), ORIGIN)[:2]
    assert (
        first.title
        == "Utilizing BERT for Information Retrieval: Survey, Applications, Resources, and Challenges"
    )
    assert first.abstract.startswith(
        "Recent years have witnessed a substantial increase in the use of deep learning"
    )
    assert first.abstract.endswith("suggest directions for future research in the area.")
    assert (
        second.title
        == "Improving Adversarial Robustness of Masked Autoencoders via Test-time Frequency-domain Prompting"
    )
    assert first.origin == ORIGIN


def test_author_counts_and_dates_attach_to_their_entry() -> None:
    records = parse(SAMPLES[1].read_bytes(), ORIGIN)
    by_title = {r.title: r for r in records}
    risky = by_title[
        "Learn to Rank Risky Investors: A Case Study of Predicting Retail Traders' Behaviour and Profitability"
    ]
    assert (risky.author_count, risky.published) == (2, None), (
        "'Sep 20' has no year: left out, not guessed"
    )
    bert = by_title["Pretrained Transformers for Text Ranking: BERT and Beyond"]
    assert (bert.author_count, bert.published) == (3, datetime(2020, 10, 13, tzinfo=UTC))
    assert sum(1 for r in records if r.author_count) == 38


def test_crlf_upvotes_and_a_truncated_last_entry() -> None:
    text = (
        "new\r\n\r\nSubscribe\r\n\r\nNov 20\r\n\r\nA Title\r\n\r\n"
        + "An abstract. " * 20
        + "\r\n\r\n42\r\n\r\nA Second Title Cut Off"
    )
    first, second = parse(text.encode(), ORIGIN)
    assert (first.title, first.upvotes) == ("A Title", 42)
    assert (second.title, second.abstract) == ("A Second Title Cut Off", "")


def test_hostile_text_stays_plain_text() -> None:
    text = (
        "Nov 20\n\n<script>alert(1)</script> Title\x00\x1b[31m\n\n"
        + "Abstract with <b>tags</b>. " * 10
    )
    (only,) = parse(text.encode(), ORIGIN)
    assert only.title == "<script>alert(1)</script> Title[31m", (
        "control characters are dropped; escaping is the renderer's job"
    )


def test_a_listing_without_entries_is_a_layout_change() -> None:
    with pytest.raises(LayoutChanged, match="no paper entries"):
        parse(b"new\n\nSubscribe\n\n", ORIGIN)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "expected a plain-text listing, got an empty body"),
        (b" \r\n\n\t", "expected a plain-text listing, got an empty body"),
        (
            b"<!DOCTYPE html><html><body>502</body></html>",
            'expected a plain-text listing, got markup (starts with "<!DOCTYPE html><html><body>502</body></html>")',
        ),
        (b'{"a": 1}', 'expected a plain-text listing, got JSON (starts with "{"a": 1}")'),
    ],
    ids=["empty", "blank", "html", "json"],
)
def test_what_is_not_a_text_listing_is_one_clear_error(body: bytes, message: str) -> None:
    with pytest.raises(ParseError) as raised:
        parse(body, ORIGIN)
    assert str(raised.value) == message
    assert not isinstance(raised.value, LayoutChanged), "a wrong body, not a changed page"


def test_broken_utf8_never_crashes() -> None:
    (only,) = parse(b"Caf\xe9 Title\n\n" + b"x" * 200, ORIGIN)
    assert only.title == "Café Title"


@pytest.mark.parametrize(
    ("body", "share"),
    [
        (bytes(range(256)) * 40, 11),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00\x00\x00\x01\x00\x08\x06\x00\x00\x00", 59),
        ("Nov 20\n\nA Title\n\nAn abstract.".encode("utf-16-le"), 50),
    ],
    ids=["random", "png-header", "utf16-without-bom"],
)
def test_binary_is_refused_whole(body: bytes, share: int) -> None:
    with pytest.raises(ParseError) as raised:
        parse(body, ORIGIN)
    assert str(raised.value) == f"not a text listing: {share}% of the bytes are control characters"


def test_utf16_with_its_byte_order_mark_is_read() -> None:
    text = "Nov 20\n\nÉtude des réseaux\n\n" + "Un résumé. " * 20
    (only,) = parse(text.encode("utf-16"), ORIGIN)
    assert only.title == "Étude des réseaux"


def test_latin1_and_utf8_listings_read_the_same() -> None:
    text = "Nov 20\n\nÉtude des réseaux\n\n" + "Un résumé naïf. " * 12
    assert parse(text.encode("latin-1"), ORIGIN) == parse(text.encode(), ORIGIN)


def test_a_title_longer_than_any_title_is_left_out_and_said() -> None:
    run_on = "A paragraph the layout rules take for a title " * 12  # 552 characters, no full stop
    text = f"Nov 20\n\nA Title\n\n{'An abstract. ' * 20}\n\n{run_on}\n\nNext Title\n\n{'Another. ' * 20}"
    records = parse(text.encode(), ORIGIN)
    assert [r.title for r in records] == ["A Title", "Next Title"]
    assert skipped_of(records) == {"title over 500 characters": 1}
    assert all(len(r.title) <= 500 for r in records)


def test_a_listing_of_nothing_but_overlong_titles_is_a_layout_change() -> None:
    with pytest.raises(LayoutChanged, match=r"\(1 with a title over 500 characters left out\)"):
        parse(("x" * 600).encode(), ORIGIN)


def test_one_stray_control_character_is_no_reason_to_refuse() -> None:
    text = "Nov 20\n\nA Title\x07\n\n" + "An abstract. " * 20
    (only,) = parse(text.encode(), ORIGIN)
    assert only.title == "A Title"


def test_mojibake_in_a_text_listing_is_repaired() -> None:
    text = "Nov 20\n\nRÃ©seaux de GarcÃ­a\n\n" + "Un rÃ©sumÃ© de la mÃ©thode. " * 8
    (only,) = parse(text.encode(), ORIGIN)
    assert only.title == "Réseaux de García"
    assert only.abstract.startswith("Un résumé de la méthode.")
