"""Each source ingested by one worker per run (issue 17): `digest run` workers started at once,
on one host or several, claim each source in the store before fetching it; the others skip it
("fetched by another worker") and wait for its papers; a killed worker's claim expires with its
lease. On both backends (the `store` fixture), the workers as threads with store handles of
their own over a mock HTTP transport."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from helpers import T0, lines, make_config

from digest import pipeline
from digest.fetch import Fetcher, FetchPolicy
from digest.models import IngestReport
from digest.store import Store

pytestmark = pytest.mark.usefixtures("fake_kind")

SOURCES = ("a", "b", "c", "d")


class Counting:
    """A mock HTTP transport's handler counting the requests per source; each answer waits at
    the barrier first, so the workers' fetches overlap."""

    def __init__(self, pause: threading.Event | None = None) -> None:
        self.asked: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.pause = pause

    def __call__(self, request: httpx.Request) -> httpx.Response:
        name = request.url.host.split(".")[0]
        with self.lock:
            self.asked[name] += 1
        if self.pause is not None:
            self.pause.wait(0.05)
        return httpx.Response(200, content=lines(f"2501.{ord(name)}"))


def _worker(
    tmp_path: Path, store: Store, handler: Counting, claimant: str, clock: Callable[..., object]
) -> IngestReport:
    config = make_config(tmp_path, *SOURCES)
    with store.another() as own, Fetcher(
        FetchPolicy(retries=1, backoff_s=0), transport=httpx.MockTransport(handler),
        sleep=lambda s: None,
    ) as fetcher:
        return pipeline.ingest(config, own, fetcher, clock, claimant=claimant)  # type: ignore[arg-type]


def test_workers_at_once_fetch_each_source_once_between_them(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pipeline, "CLAIM_POLL_S", 0.05)
    handler = Counting(threading.Event())
    start = threading.Barrier(3)
    reports: list[IngestReport] = []

    def work(n: int) -> None:
        start.wait()
        reports.append(_worker(tmp_path, store, handler, f"host-{n}:1:run", lambda: T0))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(reports) == 3
    assert handler.asked == Counter(dict.fromkeys(SOURCES, 1))  # each fetched once, by one
    fetched = sorted(run.source for report in reports for run in report.sources)
    skipped = sorted(name for report in reports for name in report.elsewhere)
    assert fetched == list(SOURCES)
    assert sorted(fetched + skipped) == sorted(SOURCES * 3)
    assert store.count_papers() == len(SOURCES)
    assert all(claim.fetched == T0 for claim in store.source_claims())


def test_a_second_run_in_the_cool_down_skips_and_the_next_ticks_run_fetches(
    tmp_path: Path, store: Store
) -> None:
    handler = Counting()
    _worker(tmp_path, store, handler, "first", lambda: T0)
    soon = _worker(tmp_path, store, handler, "second", lambda: T0 + timedelta(minutes=5))
    assert soon.sources == () and soon.elsewhere == SOURCES
    later = T0 + pipeline.SOURCE_COOL_DOWN
    hour = _worker(tmp_path, store, handler, "third", lambda: later)
    assert [run.source for run in hour.sources] == list(SOURCES)
    assert handler.asked == Counter(dict.fromkeys(SOURCES, 2))


def test_a_killed_workers_claim_expires_with_its_lease(tmp_path: Path, store: Store) -> None:
    # A worker claimed "a" and was killed mid-fetch: no `fetched`, its lease running.
    assert store.claim_source("a", "killed", T0, T0 + pipeline.SOURCE_LEASE)
    handler = Counting()
    waited: list[float] = []
    clock_at = [T0 + timedelta(minutes=1)]

    def clock() -> object:
        return clock_at[0]

    def pause(seconds: float) -> bool:  # the waiting worker's poll: time runs out the lease
        waited.append(seconds)
        clock_at[0] = T0 + pipeline.SOURCE_LEASE
        return False

    original = pipeline.STOPPING.wait
    pipeline.STOPPING.wait = pause  # type: ignore[method-assign]
    try:
        report = _worker(tmp_path, store, handler, "alive", clock)
    finally:
        pipeline.STOPPING.wait = original  # type: ignore[method-assign]
    assert report.elsewhere == ("a",) and waited  # it waited for the killed worker's fetch
    assert "a" not in handler.asked
    # The next run, after the lease: the source is claimed again and fetched.
    after = _worker(tmp_path, store, handler, "next", lambda: T0 + pipeline.SOURCE_LEASE)
    assert [run.source for run in after.sources] == list(SOURCES)
    assert handler.asked["a"] == 1


def test_a_failed_fetch_gives_its_claim_up_for_another_worker(tmp_path: Path, store: Store) -> None:
    def failing(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500)

    config = make_config(tmp_path, "a")
    with Fetcher(FetchPolicy(retries=1, backoff_s=0), transport=httpx.MockTransport(failing),
                 sleep=lambda s: None) as fetcher:
        report = pipeline.ingest(config, store, fetcher, lambda: T0, claimant="one")
    assert report.sources[0].status == "failed"
    assert store.source_claims() == []
    assert store.claim_source("a", "two", T0, T0 + pipeline.SOURCE_LEASE)


def test_without_a_claimant_every_source_is_fetched(tmp_path: Path, store: Store) -> None:
    """`digest ingest` (a person asked for this fetch) fetches even in another's cool-down."""
    handler = Counting()
    _worker(tmp_path, store, handler, "run", lambda: T0)
    config = make_config(tmp_path, *SOURCES)
    with Fetcher(FetchPolicy(retries=1, backoff_s=0), transport=httpx.MockTransport(handler),
                 sleep=lambda s: None) as fetcher:
        report = pipeline.ingest(config, store, fetcher, lambda: T0 + timedelta(minutes=1))
    assert [run.source for run in report.sources] == list(SOURCES)
    assert handler.asked == Counter(dict.fromkeys(SOURCES, 2))


def test_a_run_claims_sources_only_on_a_store_shared_by_hosts(tmp_path: Path, store: Store) -> None:
    """`digest run` (run_cycle) claims on PostgreSQL; one host's SQLite store fetches every
    source on every run, as before (a run right after another, a config just fixed, fetches)."""
    handler = Counting()
    config = make_config(tmp_path, *SOURCES)
    for minute in (0, 5):  # the second run inside the first one's cool-down
        with Fetcher(
            FetchPolicy(retries=1, backoff_s=0), transport=httpx.MockTransport(handler),
            sleep=lambda s: None,
        ) as fetcher:
            pipeline.run_cycle(
                config, store, lambda m=minute: T0 + timedelta(minutes=m), sender=None,  # type: ignore[arg-type]
                fetcher=fetcher,
            )
    expected = 1 if store.shared else 2
    assert handler.asked == Counter(dict.fromkeys(SOURCES, expected))
    assert bool(store.source_claims()) == store.shared
