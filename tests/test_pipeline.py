"""The ingest half of the pipeline, wired for real (store, fetcher) over a mock HTTP transport."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from helpers import T0, Handler, by_host, lines, make_config

from digest.fetch import Fetcher, FetchPolicy
from digest.pipeline import ingest
from digest.store import Store

pytestmark = pytest.mark.usefixtures("fake_kind")


@pytest.fixture
def run(tmp_path: Path, store: Store) -> Iterator[Callable[..., dict[str, object]]]:
    """Ingest once with a handler answering every request; return each source's run by name."""
    clock = iter(T0 + timedelta(seconds=i) for i in range(10_000))
    fetchers: list[Fetcher] = []

    def go(handler: Handler, *names: str, day: int = 0) -> dict[str, object]:
        fetcher = Fetcher(
            FetchPolicy(retries=1, backoff_s=0),
            transport=httpx.MockTransport(handler),
            sleep=lambda s: None,
        )
        fetchers.append(fetcher)
        config = make_config(tmp_path, *names)
        report = ingest(config, store, fetcher, lambda: next(clock) + timedelta(days=day))
        return {r.source: r for r in report.sources}

    yield go
    for fetcher in fetchers:
        fetcher.close()


def test_new_papers_are_counted_per_source(run, store: Store) -> None:  # type: ignore[no-untyped-def]
    runs = run(by_host(a=lines("2501.1", "2501.2"), b=lines("2501.2", "2501.3")), "a", "b")
    assert [(r.status, r.fetched, r.parsed, r.new) for r in runs.values()] == [
        ("ok", 1, 2, 2),
        ("ok", 1, 2, 1),
    ]
    again = run(by_host(a=lines("2501.1", "2501.2"), b=lines("2501.2", "2501.3")), "a", "b")
    assert [r.new for r in again.values()] == [0, 0]
    assert store.count_papers() == 3


def test_one_broken_source_never_stops_the_others(run, store: Store) -> None:  # type: ignore[no-untyped-def]
    runs = run(by_host(a=500, b=lines("2501.1"), c=b"BROKEN page", d=b"CRASH"), "a", "b", "c", "d")
    assert runs["a"].status == "failed" and "HTTP 500" in runs["a"].error
    assert runs["b"].status == "ok" and runs["b"].new == 1
    assert runs["c"].status == "failed"
    assert (
        runs["c"].error
        == "https://c.example.org/list?d=2026-11-20: expected lines of 'id title', got BROKEN"
    )
    assert runs["d"].status == "failed" and "KeyError" in runs["d"].error
    history = store.source_runs("c")
    assert [(h.status, h.error) for h in history] == [("failed", runs["c"].error)]


def test_a_failed_source_loses_nothing_already_stored(run, store: Store) -> None:  # type: ignore[no-untyped-def]
    run(by_host(a=lines("2501.1", "2501.2")), "a")
    before = store.papers()
    run(by_host(a=b"BROKEN"), "a")
    run(by_host(a=503), "a")
    assert store.papers() == before
    assert [r.status for r in store.source_runs("a")] == ["failed", "failed", "ok"]


def test_a_failed_parse_stores_nothing_and_keeps_no_validators(run, store: Store) -> None:  # type: ignore[no-untyped-def]
    run(by_host(a=b"BROKEN"), "a")
    assert store.count_papers() == 0
    assert store.validators("https://a.example.org/list?d=2026-11-20") == (None, None)


def test_not_modified_is_unchanged_never_empty(run, store: Store) -> None:  # type: ignore[no-untyped-def]
    run(by_host(a=lines("2501.1", "2501.2")), "a")
    seen: list[str | None] = []

    def not_modified(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("If-None-Match"))
        return httpx.Response(304)

    runs = run(not_modified, "a")
    assert seen == ['"v1"'], "the stored ETag is sent back"
    assert (runs["a"].status, runs["a"].error, runs["a"].parsed) == ("unchanged", None, 0)


def test_zero_records_are_empty_and_a_sharp_drop_is_a_probable_layout_change(run) -> None:  # type: ignore[no-untyped-def]
    # A well-formed answer with nothing in it is a quiet day, not a problem (issue 14).
    first = run(by_host(a=b""), "a")
    assert (first["a"].status, first["a"].error) == ("empty", None)
    for day in range(1, 4):
        assert (
            run(by_host(a=lines(*(f"25{day:02}.{i}" for i in range(10)))), "a", day=day)["a"].status
            == "ok"
        )
    dropped = run(by_host(a=lines("2505.1", "2505.2", "2505.3", "2505.4")), "a", day=5)
    assert dropped["a"].status == "layout"
    assert (
        dropped["a"].error
        == "probable layout change: 4 records, under half the recent median of 10"
    )
    normal = run(by_host(a=lines(*(f"2506.{i}" for i in range(6)))), "a", day=6)
    assert (normal["a"].status, normal["a"].error) == ("ok", None)
