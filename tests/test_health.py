"""Empty is not broken (issue 14): the health judgement, what an honest empty answer looks like for
each kind, and a layout change (a renamed CSS class, a renamed JSON key) reported on the first
run, through the real pipeline over httpx.MockTransport. The clock is passed in, never read."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from helpers import FIXTURES, by_host, make_config

from digest import status
from digest.config import SourceConfig
from digest.fetch import Fetcher, FetchPolicy
from digest.health import LAYOUT, judge, layout_change
from digest.models import SourceRun
from digest.pipeline import ingest
from digest.sources import SOURCE_KINDS
from digest.store import Store

TUESDAY = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)  # 07:00 in New York: Monday night's mailing
SATURDAY = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
ARXIV, HF = FIXTURES / "arxiv", FIXTURES / "hf"
LISTING = (ARXIV / "arxiv_list_cs.CL_recent_2026-07-27_newlayout.html").read_bytes()
NO_UPDATES = (ARXIV / "arxiv_list_cs_9101_no_updates_prettified.html").read_bytes()
API_50 = (ARXIV / "arxiv_api_2026-07-13_cat-cs.AI-LG_50entries_newformat.xml").read_bytes()
API_EMPTY = (
    ARXIV / "arxiv_api_2026-04-12_id_list-0000.0000_empty-result_from-arxivpy-recording.xml"
).read_bytes()
ATOM_7 = (ARXIV / "arxiv_atom_cs.AI_2025-08-20_7entries_trimmed.xml").read_bytes()
HF_30 = (HF / "hf_api_daily_papers_2026-06-12_30items.json").read_bytes()
HF_LISTING = (HF / "hf_papers_listing_2026-09-28_reconstructed.html").read_bytes()
EMPTY_FEED = b"<?xml version='1.0'?><rss version='2.0'><channel><title>Lab</title></channel></rss>"
NO_POSTS = b'{"messages": [{"status": "no posts found", "interval": "2026-11-28:2026-11-28"}]}'


def arxiv_rss(*ids: str) -> bytes:
    """An arXiv RSS 2.0 channel listing these ids (no items: a weekend's honest empty feed)."""
    items = "".join(
        f"<item><title>Paper {i}</title><link>https://arxiv.org/abs/{i}</link>"
        f"<description>arXiv:{i}v1 Announce Type: new Abstract: On {i}.</description>"
        f"<guid isPermaLink='false'>oai:arXiv.org:{i}v1</guid></item>"
        for i in ids
    )
    return (
        "<?xml version='1.0' encoding='UTF-8'?><rss version='2.0'><channel>"
        f"<title>cs.LG updates on arXiv.org</title>{items}</channel></rss>"
    ).encode()


@pytest.fixture
def read(tmp_path: Path, store: Store) -> Iterator[object]:
    """read(kind, body, at): one ingest of source "src" of that kind answering `body`; its run."""
    fetchers: list[Fetcher] = []

    def go(kind: str, body: bytes, at: datetime = TUESDAY) -> SourceRun:
        fetcher = Fetcher(
            FetchPolicy(retries=1, backoff_s=0),
            transport=httpx.MockTransport(by_host(src=body)),
            sleep=lambda s: None,
        )
        fetchers.append(fetcher)
        source = SourceConfig("src", kind, ("https://src.example.org/list",))
        (run,) = ingest(make_config(tmp_path, source), store, fetcher, lambda: at).sources
        return run

    yield go
    for fetcher in fetchers:
        fetcher.close()


def problems(tmp_path: Path, store: Store, kind: str, at: datetime) -> list[str]:
    """What `digest status` says needs a person about source "src"."""
    config = make_config(tmp_path, SourceConfig("src", kind, ("https://src.example.org/list",)))
    found = status.gather(config, store, at)
    return [p for p in found.problems if p.startswith("source ")]


# -- the judgement -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parsed", "usual", "unread", "expected", "verdict"),
    [
        (0, None, 0, True, ("empty", None)),  # a first run on an empty day
        (0, 40.0, 0, True, ("empty", None)),  # a well-formed empty answer, even on a weekday
        (0, 40.0, 0, False, ("empty", None)),
        (0, None, 3, True, ("layout", f"{LAYOUT}: the answer holds 3 entries but none could be read")),
        (0, None, 1, False, ("layout", f"{LAYOUT}: the answer holds 1 entry but none could be read")),
        (4, 10.0, 0, True, ("layout", f"{LAYOUT}: 4 records, under half the recent median of 10")),
        (4, 10.0, 0, False, ("ok", None)),  # a short Saturday
        (5, 10.0, 0, True, ("ok", None)),
        (4, None, 0, True, ("ok", None)),  # no history yet: nothing to compare with
    ],
)
def test_judge(
    parsed: int, usual: float | None, unread: int, expected: bool, verdict: tuple[str, str | None]
) -> None:
    assert judge(parsed, usual, unread=unread, expected=expected) == verdict


def test_a_layout_change_is_said_once() -> None:
    assert layout_change("no <dl>") == "probable layout change: no <dl>"
    assert layout_change("probable layout change: no <dl>") == "probable layout change: no <dl>"


# -- honest empty answers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        ("arxiv-rss", (ARXIV / "arxiv_rss_empty_synthetic.xml").read_bytes()),
        ("arxiv-rss", arxiv_rss()),
        ("arxiv-api", API_EMPTY),
        ("arxiv-listing", NO_UPDATES),
        ("hf-daily", b"[]"),
        ("biorxiv", NO_POSTS),
        ("feed", EMPTY_FEED),
    ],
    ids=["arxiv-rss", "arxiv-rss-built", "arxiv-api", "arxiv-listing", "hf", "biorxiv", "feed"],
)
def test_an_honest_empty_answer_is_empty_on_any_day_and_needs_no_person(
    read, tmp_path: Path, store: Store, kind: str, body: bytes  # type: ignore[no-untyped-def]
) -> None:
    for at in (SATURDAY, TUESDAY + timedelta(days=7)):  # a quiet day, then a day with a mailing
        run = read(kind, body, at)
        assert (run.status, run.error, run.parsed) == ("empty", None, 0)
    assert problems(tmp_path, store, kind, TUESDAY + timedelta(days=7, minutes=5)) == []
    assert status.source_status("src", store.source_runs("src")).state == "empty"


@pytest.mark.parametrize(
    ("kind", "body", "entries"),
    [
        ("arxiv-listing", LISTING, 50),
        ("arxiv-api", API_50, 50),
        ("hf-daily", HF_30, 30),
        ("hf-html", HF_LISTING, 28),
        ("arxiv-rss", ATOM_7, 7),
        ("arxiv-listing", NO_UPDATES, 0),
        ("arxiv-api", API_EMPTY, 0),
        ("arxiv-rss", arxiv_rss(), 0),
        ("hf-daily", b"[]", 0),
    ],
)
def test_each_kind_counts_the_entries_of_its_envelope(kind: str, body: bytes, entries: int) -> None:
    assert SOURCE_KINDS[kind].entries_in(body) == entries


# -- a layout change on the first run ------------------------------------------------------------


def test_a_renamed_listing_id_is_a_layout_change_on_the_first_run(  # type: ignore[no-untyped-def]
    read, tmp_path: Path, store: Store
) -> None:
    renamed = LISTING.replace(b"<dl id='articles'>", b"<dl id='articles-list'>")
    assert renamed != LISTING
    run = read("arxiv-listing", renamed)
    assert run.status == "layout"
    assert run.error == (
        f"{LAYOUT}: https://src.example.org/list: no <dl id='articles'> listing on the page"
    )
    (problem,) = problems(tmp_path, store, "arxiv-listing", TUESDAY + timedelta(minutes=5))
    assert problem.count("probable layout change") == 1
    assert problem.startswith("source src: probable layout change: https://src.example.org/list")


def test_a_renamed_css_class_is_a_layout_change_on_the_first_run(  # type: ignore[no-untyped-def]
    read, tmp_path: Path, store: Store
) -> None:
    # The parser still finds its <dl id='articles'> but no title in any row: it returns nothing
    # without raising, and the rows it could not read say the layout changed.
    renamed = LISTING.replace(b"list-title", b"paper-title")
    run = read("arxiv-listing", renamed, SATURDAY)  # even on a day without a mailing
    assert (run.status, run.parsed) == ("layout", 0)
    assert run.error == f"{LAYOUT}: the answer holds 50 entries but none could be read"
    assert problems(tmp_path, store, "arxiv-listing", SATURDAY + timedelta(minutes=5)) == [
        f"source src: {LAYOUT}: the answer holds 50 entries but none could be read"
    ]


@pytest.mark.parametrize("rename", ["paper.id", "paper"])
def test_a_renamed_json_field_is_a_layout_change_on_the_first_run(  # type: ignore[no-untyped-def]
    read, store: Store, rename: str
) -> None:
    items = json.loads(HF_30)
    for item in items:
        if rename == "paper.id":
            item["paper"]["paperId"] = item["paper"].pop("id")
        else:
            item["paperData"] = item.pop("paper")
    run = read("hf-daily", json.dumps(items).encode())
    assert (run.status, run.parsed) == ("layout", 0)
    assert run.error == f"{LAYOUT}: the answer holds 30 entries but none could be read"
    assert store.count_papers() == 0


def test_a_renamed_api_element_is_a_layout_change_on_the_first_run(read) -> None:  # type: ignore[no-untyped-def]
    renamed = API_50.replace(b"<id>http://arxiv.org/abs/", b"<paper-id>http://arxiv.org/abs/")
    renamed = renamed.replace(b"</id>\n    <title>", b"</paper-id>\n    <title>")
    run = read("arxiv-api", renamed)
    assert (run.status, run.parsed) == ("layout", 0), run.error


def test_a_layout_run_keeps_no_validators_so_the_next_run_looks_again(  # type: ignore[no-untyped-def]
    read, store: Store
) -> None:
    read("arxiv-listing", LISTING.replace(b"list-title", b"paper-title"))
    assert store.validators("https://src.example.org/list") == (None, None)
    read("arxiv-listing", LISTING)
    assert store.validators("https://src.example.org/list")[0] == '"v1"'


# -- a collapse, judged by the calendar ----------------------------------------------------------


def test_a_collapse_is_a_layout_change_only_on_a_day_that_should_have_content(
    read, tmp_path: Path, store: Store  # type: ignore[no-untyped-def]
) -> None:
    monday = TUESDAY - timedelta(days=1)
    for day in range(3):  # Monday to Wednesday mornings: ten papers each
        ids = [f"2611.{day}{i:04d}" for i in range(10)]
        assert read("arxiv-rss", arxiv_rss(*ids), monday + timedelta(days=day)).status == "ok"
    # Thursday morning, after Wednesday night's mailing: two papers is a collapse.
    thursday = monday + timedelta(days=3)
    collapsed = read("arxiv-rss", arxiv_rss("2611.30001", "2611.30002"), thursday)
    assert collapsed.status == "layout"
    (problem,) = problems(tmp_path, store, "arxiv-rss", thursday + timedelta(minutes=5))
    assert problem == f"source src: {LAYOUT}: 2 records, under half the recent median of 10"
    # Saturday morning: no mailing on Friday night, so two papers is no alarm.
    quiet = read("arxiv-rss", arxiv_rss("2611.50001", "2611.50002"), SATURDAY)
    assert (quiet.status, quiet.error) == ("ok", None)
    assert problems(tmp_path, store, "arxiv-rss", SATURDAY + timedelta(minutes=5)) == []


def test_a_short_hugging_face_weekend_is_no_layout_change(read) -> None:  # type: ignore[no-untyped-def]
    items = json.loads(HF_30)
    friday = SATURDAY - timedelta(days=1)
    assert read("hf-daily", HF_30, friday - timedelta(days=1)).status == "ok"
    assert read("hf-daily", json.dumps(items[:3]).encode(), SATURDAY).status == "ok"
    monday = friday + timedelta(days=3)
    assert read("hf-daily", json.dumps(items[3:6]).encode(), monday).status == "layout"
