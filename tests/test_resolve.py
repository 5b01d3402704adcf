"""digest.resolve: papers known only by their title, found in the arXiv API by that title."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from helpers import FIXTURES, make_config, record

from digest.config import SourceConfig
from digest.fetch import Fetcher, FetchPolicy, user_agent
from digest.identify import paper_key
from digest.models import Origin, Parsed, Record
from digest.pipeline import ingest
from digest.resolve import TITLES_PER_QUERY, matching, query_url, resolve_titles, unresolved
from digest.sources import SOURCE_KINDS, SourceKind
from digest.store import Store

NOW = datetime(2026, 6, 15, 8, 0, tzinfo=UTC)
API_ANSWER = (FIXTURES / "arxiv" / "arxiv_api_2026-06-14_all-transformer_cat-cs.LG_5entries_newformat.xml").read_bytes()
FOUND_TITLE = "Mana: Dexterous Manipulation of Articulated Tools"  # in API_ANSWER, as 2606.13677


def fetcher(handler: httpx.MockTransport) -> Fetcher:
    return Fetcher(FetchPolicy(user_agent=user_agent("ops@lab.example"), retries=0),
                   transport=handler, sleep=lambda _: None, now=lambda: NOW)


def title_only(title: str) -> object:
    """A text listing's record: a title and an abstract, no id."""
    return record(title, source="hf-text", abstract="An abstract.")


def test_a_title_only_paper_takes_its_arxiv_id_and_fields_from_the_api(store: Store) -> None:
    store.ingest([title_only("MANA: dexterous manipulation of articulated tools"),
                  title_only("A title arXiv does not know")], NOW - timedelta(hours=1))
    asked: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(parse_qs(urlsplit(str(request.url)).query)["search_query"][0])
        return httpx.Response(200, content=API_ANSWER)

    with fetcher(httpx.MockTransport(answer)) as polite:
        done = resolve_titles(store, polite, lambda: NOW, limit=50)
    assert (done.asked, done.found, done.queries, done.error) == (2, 1, 1, None)
    assert sorted(asked[0].split(" OR ")) == [
        'ti:"A title arXiv does not know"', 'ti:"MANA dexterous manipulation of articulated tools"']
    paper = store.paper("2606.13677")
    assert paper is not None and paper.arxiv_id == "2606.13677"
    assert paper.authors[:2] == ("Zhao-Heng Yin", "Guanya Shi")
    assert "hf-text" in paper.sources  # one paper, seen in both places
    assert store.paper(paper_key(record("MANA: dexterous manipulation of articulated tools"))) is None
    still = store.papers(limit=None)
    assert sum(p.key.startswith("title:") for p in still) == 1  # the unknown one waits


def test_an_unreachable_api_changes_nothing_and_says_why(store: Store) -> None:
    store.ingest([title_only(FOUND_TITLE)], NOW)
    with fetcher(httpx.MockTransport(lambda request: httpx.Response(503))) as polite:
        done = resolve_titles(store, polite, lambda: NOW, limit=50)
    assert done.found == 0 and done.error is not None and "503" in done.error
    assert [p.key for p in store.papers(limit=None)] == [paper_key(record(FOUND_TITLE))]


def test_only_recent_title_only_papers_are_asked_for_newest_first_up_to_a_limit(store: Store) -> None:
    store.ingest([title_only("Old one")], NOW - timedelta(days=10))
    store.ingest([record("Has an id", arxiv_id="2606.00001")], NOW)
    store.ingest([title_only(f"New {n}") for n in range(3)], NOW - timedelta(hours=2))
    store.ingest([title_only("Newest")], NOW - timedelta(hours=1))
    waiting = unresolved(store.papers(limit=None), NOW, limit=3)
    assert waiting[0].title == "Newest" and len(waiting) == 3
    assert all(p.key.startswith("title:") and p.title != "Old one" for p in waiting)


def test_a_query_asks_for_exact_phrases_of_words_and_a_match_must_be_the_whole_title() -> None:
    url = query_url(['Attention: "is" all you need?', "GPT-4 Technical Report"])
    query = parse_qs(urlsplit(url).query)
    assert query["search_query"] == ['ti:"Attention is all you need" OR ti:"GPT 4 Technical Report"']
    assert query["max_results"] == ["8"]
    records = [record("GPT-4 technical report"), record("GPT-4 Technical Report: an appendix")]
    assert matching(records, ["GPT-4 Technical Report"]) == [records[0]]
    assert TITLES_PER_QUERY >= 2


def parse_titles(body: bytes, origin: Origin) -> Parsed:
    """A text listing for the pipeline test: one title per line; a line ending in "..." was cut."""
    lines = body.decode().splitlines()
    kept = [line for line in lines if not line.endswith("...")]
    return Parsed([Record(origin=origin, title=line, abstract="An abstract.") for line in kept],
                  skipped={"cut off mid-entry": len(lines) - len(kept)} if len(kept) < len(lines) else None)


def test_a_run_resolves_its_new_title_only_papers_and_says_what_its_parser_left_out(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(SOURCE_KINDS, "titles", SourceKind("titles", __name__, "parse_titles", "titles"))
    config = make_config(tmp_path, SourceConfig("listing", "titles", ("https://titles.example.org/list",)))
    listing = f"{FOUND_TITLE}\nAnother paper nobody indexed\nA title cut mi...\n".encode()

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.host == "titles.example.org":
            return httpx.Response(200, content=listing, headers={"etag": '"v1"'})
        assert request.url.host == "export.arxiv.org", request.url
        return httpx.Response(200, content=API_ANSWER)

    with fetcher(httpx.MockTransport(answer)) as polite:
        report = ingest(config, store, polite, lambda: NOW)
    [run] = report.sources
    assert (run.status, run.parsed, run.error) == ("ok", 2, "left out 1 entry (cut off mid-entry)")
    assert report.resolved is not None
    assert (report.resolved.asked, report.resolved.found) == (2, 1)
    assert store.paper("2606.13677") is not None
    # A body cut short keeps no validators: the next run reads it whole, not a 304.
    assert store.validators("https://titles.example.org/list") == (None, None)
    # Turned off, nothing is asked of the API.
    off = replace(config, fetch=replace(config.fetch, resolve_titles=0))
    whole = httpx.Response(200, content=listing.replace(b"cut mi...", b"whole"), headers={"etag": '"v2"'})
    with fetcher(httpx.MockTransport(lambda request: whole)) as polite:
        assert ingest(off, store, polite, lambda: NOW + timedelta(days=1)).resolved is None
    assert store.validators("https://titles.example.org/list")[0] == '"v2"'  # a whole body: kept


def test_a_replayed_run_answers_from_its_captures_and_is_quiet_without_one(
    tmp_path: Path, store: Store
) -> None:
    store.ingest([title_only(FOUND_TITLE)], NOW)
    replay = tmp_path / "replay"
    replay.mkdir()
    (replay / "index.json").write_text("[]", encoding="utf-8")
    with Fetcher(FetchPolicy(retries=0), replay_dir=replay, sleep=lambda _: None) as replaying:
        quiet = resolve_titles(store, replaying, lambda: NOW, limit=50)
    assert (quiet.asked, quiet.found, quiet.error) == (0, 0, None)  # no capture: nothing to say
    url = query_url([FOUND_TITLE])
    (replay / "api.xml").write_bytes(API_ANSWER)
    (replay / "index.json").write_text(f'[{{"url": "{url}", "file": "api.xml"}}]', encoding="utf-8")
    with Fetcher(FetchPolicy(retries=0), replay_dir=replay, sleep=lambda _: None) as replaying:
        found = resolve_titles(store, replaying, lambda: NOW, limit=50)
    assert (found.found, found.error) == (1, None) and store.paper("2606.13677") is not None
