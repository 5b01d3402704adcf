"""Wires the steps together: sources -> fetch -> parse -> identify -> store. Nothing else lives here.

I/O is passed in (a Store, a Fetcher, a clock), so a whole ingest runs in tests on captured pages.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from zoneinfo import ZoneInfo

from digest.config import Config, ProfileConfig, SourceConfig
from digest.errors import DigestError, SourceError
from digest.fetch import Fetcher, FetchPolicy, user_agent
from digest.health import layout_problem, recent_median
from digest.models import DayRanking, FetchResult, IngestReport, Origin, Record, SourceRun
from digest.sources import SOURCE_KINDS
from digest.store import Store

Clock = Callable[[], datetime]
log = logging.getLogger(__name__)


def make_fetcher(config: Config) -> Fetcher:
    """The one HTTP client of a run, set up from [fetch] in config.toml."""
    fetch = config.fetch
    policy = FetchPolicy(
        user_agent=user_agent(fetch.contact),
        connect_timeout_s=fetch.connect_timeout_s,
        read_timeout_s=fetch.read_timeout_s,
        max_bytes=fetch.max_bytes,
        retries=fetch.retries,
        host_intervals={**FetchPolicy().host_intervals, **fetch.host_intervals},
    )
    return Fetcher(policy, replay_dir=fetch.replay_dir)


def ingest(
    config: Config,
    store: Store,
    fetcher: Fetcher,
    clock: Clock,
    *,
    only: Sequence[str] = (),
) -> IngestReport:
    """Fetch, parse, diff and store every enabled source (or those named in `only`).

    One broken source never stops the others: its error is recorded in the run history and returned.
    """
    sources = (
        [config.source(name) for name in only] if only else [s for s in config.sources if s.enabled]
    )
    started = clock()
    run_id = store.begin_run("ingest", started)
    runs = tuple(ingest_source(source, store, fetcher, clock, run_id) for source in sources)
    store.finish_run(run_id, clock())
    return IngestReport(run_id=run_id, started=started, sources=runs)


def ingest_source(
    source: SourceConfig, store: Store, fetcher: Fetcher, clock: Clock, run_id: int
) -> SourceRun:
    started = clock()
    began = time.monotonic()
    usual = recent_median(store.source_runs(source.name))
    fetched = parsed = new = 0
    status, error = "ok", None
    try:
        results, records = _fetch_and_parse(source, store, fetcher, started)
        fetched, parsed = len(results), len(records)
        if results and all(result.unchanged for result in results):
            status = "unchanged"  # HTTP 304: nothing new, which is not the same as empty
        else:
            outcome = store.ingest(records, clock(), validators=results)
            new = len(outcome.new_keys)
            error = layout_problem(parsed, usual)
            status = "layout" if error else "ok"
    except DigestError as exc:
        status, error = "failed", str(exc)
    except Exception as exc:  # a parser bug on odd input must not stop the other sources
        log.debug("source %s: unexpected error", source.name, exc_info=True)  # shown with -v
        status, error = (
            "failed",
            f"unexpected {type(exc).__name__}: {exc} (a bug: please report it)",
        )
    run = SourceRun(
        source=source.name,
        started=started,
        duration_s=round(time.monotonic() - began, 3),
        fetched=fetched,
        parsed=parsed,
        new=new,
        status=status,
        error=error,
        recent_median=usual,
    )
    store.record_source_run(run_id, run)
    return run


def _fetch_and_parse(
    source: SourceConfig, store: Store, fetcher: Fetcher, started: datetime
) -> tuple[list[FetchResult], list[Record]]:
    kind = SOURCE_KINDS[source.kind]
    parse = kind.parser()
    results: list[FetchResult] = []
    records: list[Record] = []
    for template in source.urls:
        url = template.replace("{date}", started.date().isoformat())
        etag, last_modified = store.validators(url)
        result = fetcher.fetch(
            url, etag=etag, last_modified=last_modified, accept_error_body=kind.error_body_is_data
        )
        results.append(result)
        if result.unchanged or result.body is None:
            continue
        try:
            records.extend(parse(result.body, Origin(source.name, url)))
        except SourceError as exc:
            raise type(exc)(f"{url}: {exc}") from None
    return results, records


# tf-idf is fitted on at most this many of the most recently seen papers: plenty for word
# statistics, and it bounds the time and memory of a run on a store that grows for years.
FIT_LIMIT = 50_000


def local_day(profile: ProfileConfig, clock: Clock) -> date:
    """Today, in the profile's own time zone."""
    return clock().astimezone(ZoneInfo(profile.timezone)).date()


def day_bounds(day: date, timezone: str) -> tuple[datetime, datetime]:
    """The UTC start and end of a local day (23 or 25 hours long on a daylight-saving change)."""
    zone = ZoneInfo(timezone)
    start = datetime.combine(day, dtime.min, tzinfo=zone)
    end = datetime.combine(day + timedelta(days=1), dtime.min, tzinfo=zone)
    return start.astimezone(UTC), end.astimezone(UTC)


def rank_day(
    store: Store,
    profiles: Sequence[ProfileConfig],
    day: date,
    *,
    semantic: bool = False,
) -> dict[str, DayRanking]:
    """Rank the papers first seen on each profile's local `day`, for every profile given."""
    from digest.rank import Ranker  # numpy and scikit-learn load only when ranking

    ranker = Ranker.fit(store.papers(limit=FIT_LIMIT), semantic=semantic)
    feedback = store.feedback(p.name for p in profiles)
    rankings: dict[str, DayRanking] = {}
    by_zone: dict[str, list[ProfileConfig]] = {}
    for profile in profiles:
        by_zone.setdefault(profile.timezone, []).append(profile)
    for zone, group in by_zone.items():
        start, end = day_bounds(day, zone)
        candidates = store.papers(since=start, until=end, limit=None)
        ranked = ranker.rank(candidates, group, feedback)
        for profile in group:
            rankings[profile.name] = DayRanking(
                profile.name, day, len(candidates), ranked[profile.name]
            )
    return rankings
