from datetime import UTC, datetime

import pytest
from helpers import FIXTURES

from digest.errors import LayoutChanged
from digest.models import Origin
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


@pytest.mark.parametrize(
    "body",
    [b"", b"new\n\nSubscribe\n\n", b"<!DOCTYPE html><html><body>502</body></html>", b'{"a": 1}'],
)
def test_a_body_without_entries_is_a_layout_change(body: bytes) -> None:
    with pytest.raises(LayoutChanged):
        parse(body, ORIGIN)


def test_broken_utf8_never_crashes() -> None:
    (only,) = parse(b"Caf\xe9 Title\n\n" + b"x" * 200, ORIGIN)
    assert only.title == "Café Title"
