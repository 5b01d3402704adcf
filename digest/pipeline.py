"""Wires the steps together, nothing else lives here:

    ingest:     sources -> fetch -> parse -> identify -> store
    run_cycle:  ingest -> rank -> compose -> store the digests and their ledger rows
                -> every channel (digest/channels/: feeds, mail, team chats), each on its own

I/O is passed in (a Store, a Fetcher, a Sender, a clock), so a whole cycle runs in tests on captured
pages, a temporary folder and a local SMTP server.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from digest import channels, compose, logs, quiet, subscriptions
from digest.calendars import expects_content
from digest.channels.feed import FeedChannel
from digest.channels.mail import Sender
from digest.config import Config, ProfileConfig, SourceConfig
from digest.deliver import DeliveryReport
from digest.errors import DigestError, EmbeddingError, LayoutChanged, SourceError, StoreError
from digest.fetch import Fetcher, FetchPolicy, user_agent
from digest.health import judge, layout_change, recent_median
from digest.models import (
    CUT_REASONS,
    DayRanking,
    Digest,
    Feedback,
    FetchResult,
    IngestReport,
    Origin,
    Paper,
    Record,
    ScoredPaper,
    SourceRun,
    skipped_of,
)
from digest.progress import Progress, no_progress
from digest.render import (
    Renderer,
)
from digest.resolve import resolve_titles
from digest.sources import SOURCE_KINDS
from digest.store import Store

if TYPE_CHECKING:
    from digest.embed import PaperVectors
    from digest.library import LibraryImport
    from digest.rank import Ranker

Clock = Callable[[], datetime]
log = logging.getLogger(__name__)

# Set on SIGTERM by `digest schedule`: a cycle checks it between steps and stops cleanly there
# (every step is its own transaction, so stopping between two loses nothing).
STOPPING = threading.Event()


def make_fetcher(config: Config) -> Fetcher:
    """The one HTTP client of a run, set up from [fetch] in config.toml."""
    fetch = config.fetch
    policy = FetchPolicy(
        user_agent=user_agent(fetch.contact),
        connect_timeout_s=fetch.connect_timeout_s,
        read_timeout_s=fetch.read_timeout_s,
        max_bytes=fetch.max_bytes,
        retries=fetch.retries,
        deadline_s=fetch.deadline_s,
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
    progress: Progress = no_progress,
    claimant: str | None = None,
) -> IngestReport:
    """Fetch, parse, diff and store every enabled source (or those named in `only`).

    One broken source never stops the others: its error is recorded in the run history and returned.

    With a `claimant` (a `digest run`'s on a shared store: PostgreSQL), each source is claimed in
    the store before it is fetched (store.claim_source): of workers started at once, one fetches
    it and the others skip it ("fetched by another worker", in the report's `elsewhere`). The
    claim is held for SOURCE_LEASE while fetching (a killed worker's claim expires with it), then
    kept for SOURCE_COOL_DOWN after a fetch that got through; a failed fetch gives it up, so
    another worker may try. Without one (`digest ingest`, the scheduler's per-source fetch: a
    person or the one scheduler asked for this fetch), every source is fetched.
    """
    sources = (
        [config.source(name) for name in only] if only else [s for s in config.sources if s.enabled]
    )
    started = clock()
    run_id = store.begin_run("ingest", started)
    runs = []
    elsewhere = []
    for done, source in enumerate(sources):
        if STOPPING.is_set():
            break
        if claimant is not None:
            now = clock()
            if not store.claim_source(source.name, claimant, now, now + SOURCE_LEASE):
                elsewhere.append(source.name)
                log.info("%s: fetched by another worker", source.name)
                progress("sources", done + 1, len(sources), f"{source.name}: fetched by another worker")
                continue
        progress("sources", done, len(sources), f"fetching {source.name}")
        try:
            runs.append(ingest_source(source, store, fetcher, clock, run_id))
        except BaseException:
            if claimant is not None:
                _let_go(store, source.name, claimant)
            raise
        if claimant is not None:
            if runs[-1].failed:
                _let_go(store, source.name, claimant)
            else:
                now = clock()
                store.finish_source(source.name, claimant, now, now + SOURCE_COOL_DOWN)
        progress("sources", done + 1, len(sources), f"{source.name}: {runs[-1].status}")
    if elsewhere:
        _wait_for_others(store, elsewhere, clock)
    resolved = None
    if config.fetch.resolve_titles and not STOPPING.is_set():
        # Title-only papers (text listings) found in the arXiv API by their title: their ids,
        # authors and links, before anything is embedded or ranked.
        resolved = resolve_titles(store, fetcher, clock, config.fetch.resolve_titles)
    if any(run.new for run in runs) and not STOPPING.is_set():
        # By time, not by the keys the sources reported: a later source of the run may have
        # given one of those papers an arXiv id, and so a new key.
        embed_papers(config, store, clock, store.papers(since=started, limit=None))
    store.finish_run(run_id, clock())
    return IngestReport(
        run_id=run_id, started=started, sources=tuple(runs), resolved=resolved,
        elsewhere=tuple(elsewhere),
    )


# A source's claim while it is fetched (a killed worker's lets another fetch it after this), and
# how long it is kept after a fetch that got through: workers of the same cron tick, started a
# few minutes apart, fetch it once between them; the next tick's fetch it again.
SOURCE_LEASE = timedelta(minutes=15)
SOURCE_COOL_DOWN = timedelta(minutes=10)


CLAIM_POLL_S = 2.0  # how often a worker looks whether the sources others fetch are in


def _wait_for_others(store: Store, sources: Sequence[str], clock: Clock) -> None:
    """Wait until the other workers' fetches of `sources` have ended (their claims say fetched,
    are given up, or their lease ran out), so the digests this run composes have their papers."""
    for _ in range(int(SOURCE_LEASE.total_seconds() / CLAIM_POLL_S) + 1):
        now = clock()
        fetching = [
            claim.source for claim in store.source_claims(sources)
            if claim.fetched is None and claim.until > now
        ]
        if not fetching or STOPPING.is_set():
            return
        log.info("waiting for another worker to fetch %s", ", ".join(fetching))
        STOPPING.wait(CLAIM_POLL_S)


def _let_go(store: Store, source: str, claimant: str) -> None:
    """Give up a claim after a failed fetch (another worker may try); a store that cannot is
    left to the lease."""
    try:
        store.release_source(source, claimant)
    except StoreError as exc:
        log.warning("%s: could not give up the claim: %s", source, exc)


def ingest_source(
    source: SourceConfig, store: Store, fetcher: Fetcher, clock: Clock, run_id: int
) -> SourceRun:
    started = clock()
    began = time.monotonic()
    history = store.source_runs(source.name)
    usual = recent_median(history)
    # Empty or broken? An answer's envelope and the kind's calendar tell (digest.health).
    kind = SOURCE_KINDS[source.kind]
    last_read = next((run.started for run in history if not run.failed), None)
    fetched = parsed = new = 0
    status, error = "ok", None
    try:
        results, records, skipped = _fetch_and_parse(source, store, fetcher, started)
        fetched, parsed = len(results), len(records)
        if results and all(result.unchanged for result in results):
            status = "unchanged"  # HTTP 304: nothing new, which is not the same as empty
        else:
            unread = 0 if records else sum(kind.entries_in(r.body) or 0 for r in results if r.body)
            expected = expects_content(kind.calendar, started, last_read)
            status, error = judge(parsed, usual, unread=unread, expected=expected)
            # A layout run, or a body cut short, keeps no validators: the next run reads the
            # page again (and its missing entries) instead of getting a 304.
            cut = bool(CUT_REASONS & skipped.keys())
            keep = results if not (error or cut) else ()
            outcome = store.ingest(records, clock(), validators=keep)
            new = len(outcome.new_keys)
            if skipped and not error:  # entries the parser left out (cut, unreadable): said
                error = "left out " + ", ".join(
                    f"{count} {'entry' if count == 1 else 'entries'} ({reason})"
                    for reason, count in sorted(skipped.items())
                )
    except LayoutChanged as exc:  # the markers the parser needs are missing
        status, error = "layout", layout_change(str(exc))
    except StoreError:  # not this source's fault: a store that cannot keep it stops the ingest
        raise
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
    with logs.context(source=source.name):
        log.log(
            logging.WARNING if error else logging.INFO,
            "fetched %d, parsed %d, new %d: %s%s",
            fetched,
            parsed,
            new,
            status,
            f" ({error})" if error else "",
        )
    return run


def _fetch_and_parse(
    source: SourceConfig, store: Store, fetcher: Fetcher, started: datetime
) -> tuple[list[FetchResult], list[Record], dict[str, int]]:
    """Every URL of the source fetched and parsed: the answers, the records, and the entries the
    parser left out, by reason (models.Parsed)."""
    kind = SOURCE_KINDS[source.kind]
    parse = kind.parser()
    results: list[FetchResult] = []
    records: list[Record] = []
    skipped: Counter[str] = Counter()
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
            parsed = parse(result.body, Origin(source.name, url, source.kind))
        except SourceError as exc:
            raise type(exc)(f"{url}: {exc}") from None
        records.extend(parsed)
        skipped.update(skipped_of(parsed))
    return results, records, dict(skipped)


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


def paper_vectors(config: Config, store: Store, clock: Clock) -> PaperVectors | None:
    """Sentence vectors kept in the store, computed by the configured model for papers that
    have none; None (ranking by words alone, with a warning for `digest status`) when
    embeddings are switched off or the model cannot be loaded."""
    from digest import embed  # onnxruntime loads only when something is embedded

    if not config.rank.embeddings:
        return None
    try:
        embedder = embed.load_embedder(config.rank.model)
    except EmbeddingError as exc:
        _embedding_problem(store, clock, exc)
        return None
    store.set_problem(EMBEDDINGS, None, clock())
    return embed.PaperVectors(
        embedder,
        load=lambda keys, model: {
            key: embed.from_blob(blob) for key, blob in store.embeddings(keys, model).items()
        },
        save=lambda model, vectors: store.save_embeddings(
            model, {key: embed.to_blob(vector) for key, vector in vectors.items()}
        ),
    )


EMBEDDINGS = "embeddings"  # the part named in `digest status` when the model fails


def _embedding_problem(store: Store, clock: Clock, exc: EmbeddingError) -> None:
    log.warning("%s; ranking by words alone", exc)
    store.set_problem(EMBEDDINGS, f"{exc}; ranking by words alone", clock())


def embed_papers(config: Config, store: Store, clock: Clock, papers: Sequence[Paper]) -> None:
    """Embed papers once, when they are first stored; the ranking reads the vectors back."""
    vectors = paper_vectors(config, store, clock)
    if vectors is None:
        return
    began = time.monotonic()
    try:
        vectors.papers(papers)
    except EmbeddingError as exc:
        _embedding_problem(store, clock, exc)
        return
    log.info("embedded %d new papers in %.1f s", len(papers), time.monotonic() - began)


def make_ranker(config: Config, store: Store, clock: Clock) -> Ranker:
    """The ranking model of a run: tf-idf fitted on the stored papers (and those of imported
    libraries that no source listed), their sentence vectors, and the profiles' models learned
    from marks in earlier runs."""
    from digest.learn import from_stored
    from digest.rank import Ranker  # numpy and scikit-learn load only when ranking

    corpus = store.papers(limit=FIT_LIMIT) + library_papers(store)
    ranker = Ranker.fit(corpus, vectors=paper_vectors(config, store, clock))
    ranker.learned.update(
        (profile, from_stored(stored)) for profile, stored in store.learned_profiles().items()
    )
    return ranker


LIBRARY_SOURCE = "library"  # the first_source of a paper known only from an imported library
LIBRARY_MAX_BYTES = 20 * 1024 * 1024  # a real 5,000-entry library with abstracts fits


@dataclass(frozen=True, slots=True)
class LibraryReport:
    entries: int  # usable entries in the file
    added: int  # new to the profile's library
    in_store: int  # of the entries, papers the store holds (listed by a source)
    skipped: tuple[str, ...]  # one line per bad entry


def read_library_file(data: bytes, filename: str) -> LibraryImport:
    """A reference-manager export read into papers (LibraryError for a file that cannot be)."""
    from digest.errors import LibraryError
    from digest.library import read_library

    if len(data) > LIBRARY_MAX_BYTES:
        raise LibraryError(f"{filename}: over {LIBRARY_MAX_BYTES // 2**20} MB; export fewer papers")
    return read_library(data, filename)


def import_library(
    store: Store, profile: str, parsed: LibraryImport, filename: str, clock: Clock
) -> LibraryReport:
    """A read export becomes the profile's liked papers. An entry the store holds (same arXiv
    id, DOI or title) is that paper; any other is kept with the file's own title and abstract,
    so the ranking can read it, and it is never offered as a new paper."""
    from digest.identify import paper_key

    keyed: dict[str, dict[str, Any]] = {}
    in_store = 0
    for entry in parsed.entries:
        fields: dict[str, Any] = {
            "title": entry.title,
            "abstract": entry.abstract,
            "authors": list(entry.authors),
            "arxiv_id": entry.arxiv_id,
            "doi": entry.doi,
            "file": filename,
        }
        stored = next(
            filter(None, (store.find(ref) for ref in (entry.arxiv_id, entry.doi) if ref)), None
        ) or (store.find(entry.title) if entry.title else None)
        if stored is not None:
            in_store += 1
            key = stored.key
        else:
            key = paper_key(_library_record(fields))
        keyed.setdefault(key, fields)
    added = store.import_library(profile, list(keyed.items()), clock())
    return LibraryReport(len(parsed.entries), added, in_store, parsed.skipped)


def _library_record(fields: Mapping[str, Any]) -> Record:
    return Record(
        origin=Origin(LIBRARY_SOURCE, str(fields.get("file") or "")),
        title=str(fields.get("title") or fields.get("arxiv_id") or fields.get("doi") or ""),
        arxiv_id=fields.get("arxiv_id") or None,
        doi=fields.get("doi") or None,
        abstract=str(fields.get("abstract") or ""),
        authors=tuple(str(a) for a in fields.get("authors") or ()),
    )


def library_papers(store: Store) -> list[Paper]:
    """Imported papers that no source listed, as papers the ranking can look up."""
    from digest.identify import new_paper

    papers = []
    for key, fields, imported in store.library_papers():
        paper = new_paper(_library_record(fields), imported)
        papers.append(dataclasses.replace(paper, key=key))
    return papers


def rank(
    ranker: Ranker,
    store: Store,
    clock: Clock,
    candidates: Sequence[Paper],
    profiles: Sequence[ProfileConfig],
    feedback: Mapping[str, Feedback],
) -> dict[str, tuple[ScoredPaper, ...]]:
    """Rank, and keep the profile models trained meanwhile. A sentence model that fails while
    embedding leaves the ranking to the words, with a warning."""
    from digest.learn import to_stored

    try:
        ranked = ranker.rank(candidates, profiles, feedback)
    except EmbeddingError as exc:
        _embedding_problem(store, clock, exc)
        ranker.vectors = None
        ranked = ranker.rank(candidates, profiles, feedback)
    if ranker.retrained:
        store.save_learned_profiles(
            {name: to_stored(ranker.learned[name]) for name in ranker.retrained}, clock()
        )
        ranker.retrained.clear()
    return ranked


def rank_day(
    config: Config, store: Store, profiles: Sequence[ProfileConfig], day: date, clock: Clock
) -> dict[str, DayRanking]:
    """Rank the papers first seen on each profile's local `day`, for every profile given."""
    ranker = make_ranker(config, store, clock)
    feedback = store.feedback(p.name for p in profiles)
    rankings: dict[str, DayRanking] = {}
    by_zone: dict[str, list[ProfileConfig]] = {}
    for profile in profiles:
        by_zone.setdefault(profile.timezone, []).append(profile)
    for zone, group in by_zone.items():
        start, end = day_bounds(day, zone)
        candidates = store.papers(since=start, until=end, limit=None)
        ranked = rank(ranker, store, clock, candidates, group, feedback)
        for profile in group:
            rankings[profile.name] = DayRanking(
                profile.name, day, len(candidates), ranked[profile.name]
            )
    return rankings


# -- one full cycle: ingest, rank, compose, then every channel ------------------------------------


# Profiles ranked, composed, stored and delivered together: what a run holds at once (their
# rankings, digests and messages) is one block's, whatever the number of profiles.
BLOCK = 1000


@contextmanager
def open_poster(config: Config) -> Iterator[Fetcher | None]:
    """The HTTP client team chats are posted with, closed after the run; None when no chat is
    configured or the run replays captured pages (a replayed run must never post to a real chat)."""
    if config.fetch.replay_dir is not None or not config.chats:
        yield None
        return
    with make_fetcher(config) as poster:
        yield poster


@dataclass(frozen=True, slots=True)
class Composed:
    """What a run says of a digest it composed: the digest itself lives no longer than its block."""

    profile: str
    day: date
    items: int
    scanned: int
    failed_sources: tuple[str, ...]

    @classmethod
    def of(cls, digest: Digest) -> Composed:
        failed = tuple(note.source for note in digest.failed_sources)
        return cls(digest.profile, digest.day, len(digest.items), digest.scanned, failed)


@dataclass(frozen=True, slots=True)
class CycleReport:
    ingest: IngestReport | None  # None when the run did not fetch
    composed: tuple[Composed, ...]  # digests composed by this run
    feeds_written: tuple[str, ...]  # feed files that changed (paths relative to feeds_dir)
    # What each channel did, by its name ("feeds", "mail", "slack:lab"), in delivery order.
    channels: Mapping[str, DeliveryReport] = dataclasses.field(default_factory=dict)
    # Set when the run was idle by the last full run's word (digest.quiet): nothing is due before.
    quiet_until: datetime | None = None

    @property
    def mail(self) -> DeliveryReport:
        return self.channels.get("mail", DeliveryReport())

    @property
    def feeds_problem(self) -> str | None:
        """Why feed files could not be written (the other channels went on regardless)."""
        feed = self.channels.get("feeds")
        return feed.stopped if feed is not None else None


def run_id() -> str:
    """Who claims ledger rows: unique per run, readable in the ledger (host, pid, random)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def run_cycle(
    config: Config,
    store: Store,
    clock: Clock,
    sender: Sender,
    *,
    fetcher: Fetcher | None = None,
    poster: Fetcher | None = None,
    profiles: Sequence[ProfileConfig] | None = None,
    claimant: str | None = None,
    renderer: Renderer | None = None,
    now_too: bool = False,
    progress: Progress = no_progress,
    whole_config: Callable[[], Config] | None = None,
) -> CycleReport:
    """One cycle for every profile whose digest is due; safe to re-run and to run twice at once.

    `sender` takes the mail, `poster` posts to team chats (None: chats wait for a run that has
    one). The ledger decides what is left to do: a digest is composed once per (profile, day), and
    each of its deliveries is claimed by one run, so a re-run after a crash only finishes what is
    open. `config` may be the head of a big config, without its profiles
    (digest.config.load_config_head): `whole_config` then gives the whole one, read only once the
    run knows it is not idle.

    First every channel delivers what earlier runs left open; then the due profiles go through
    rank -> compose -> store -> every channel BLOCK at a time, each channel delivering the block's
    digests from memory, as composed (none is read back to be rendered). A channel that stops
    (a setup problem, its breaker, the deadline) sits out the rest of the run.
    """
    claimant = claimant or run_id()
    started = clock()
    with logs.context(run_id=claimant):
        # Workers on several hosts share a store's sources (claims); one host's SQLite store
        # fetches as it always did, so a run right after another (a config just fixed) fetches.
        report = (
            ingest(
                config, store, fetcher, clock, progress=progress,
                claimant=claimant if store.shared else None,
            )
            if fetcher is not None
            else None
        )
        # A run over every profile, after one that found when the next digest falls due and
        # nothing changed since: idle, without reading a profile (digest.quiet).
        whole = profiles is None and not now_too
        if whole and not STOPPING.is_set():
            until = quiet.quiet_until(config, store, clock())
            if until is not None:
                log.info("nothing is due before %s (as the last full run found)", f"{until:%Y-%m-%d %H:%M} UTC")
                idle = channels.Parts(config, store, renderer or Renderer(), sender, poster)
                said = {channel.name: DeliveryReport() for channel in channels.open_channels(idle)}
                return CycleReport(report, (), (), said, quiet_until=until)
        if whole_config is not None:
            config = whole_config()
        # People who subscribed on the web are profiles too; read fresh each cycle, since they
        # sign up, pause and edit their interests while the job runs.
        config = subscriptions.with_subscribers(config, store)
        renderer = renderer or Renderer()
        parts = channels.Parts(config, store, renderer, sender, poster)
        opened = channels.open_channels(parts)
        chosen = list(config.profiles if profiles is None else profiles)
        due = [] if STOPPING.is_set() else due_profiles(store, chosen, clock(), now_too=now_too)
        run = channels.RunContext(
            clock, claimant, config.delivery, STOPPING.is_set, progress, started=started,
            coming=frozenset(entry.profile.name for entry in due),
        )
        delivered = channels.deliver_all(opened, store, run)
        composer = Composer(
            config, store, clock, targets=lambda profile: channels.targets(opened, profile)
        )
        composed: list[Composed] = []

        def compose_claimed(start: int, key: int, todo: list[Due] | None = None) -> None:
            """Compose the block at `start`, claimed as `key` (given back once its digests are
            saved, or composing failed), then deliver it."""
            nonlocal delivered
            try:
                # Another run at work on the same store may have composed some of them by now.
                todo = composer.still_due(todo if todo is not None else due[start : start + BLOCK])
                digests, ours = composer.compose(todo)
            finally:
                store.release_block(key)
            composed.extend(Composed.of(digest) for digest in ours)
            fresh = {(digest.profile, digest.day): digest for digest in digests}
            going, benched = _still_going(opened, delivered)
            # A channel that stopped for the run leaves this block's rows for the next run.
            left = {
                channel.name: DeliveryReport(
                    left=sum(len(channel.targets(entry.profile)) for entry in todo)
                )
                for channel in benched
            }
            passed = channels.deliver_all(
                going, store, dataclasses.replace(run, block=frozenset(fresh), fresh=fresh)
            )
            delivered = channels.merged(delivered, {**passed, **left})

        # A block is claimed before it is ranked: of workers reaching it at once one composes it,
        # the others skip it, and come back to it once after their other blocks.
        skipped: list[int] = []
        for start in block_starts(len(due), claimant):
            if STOPPING.is_set():
                break
            key = block_key(due[start])
            if store.claim_block(key):
                compose_claimed(start, key)
            else:
                log.info("block starting at %s: another worker is composing it", due[start].profile.name)
                skipped.append(start)
        for start in skipped:
            if STOPPING.is_set():
                break
            # What the other worker saved meanwhile is done; the rest is left to it while it
            # holds the block (a worker killed meanwhile let it go: its profiles are due again).
            todo = composer.still_due(due[start : start + BLOCK])
            if not todo:
                continue
            key = block_key(due[start])
            if store.claim_block(key):
                compose_claimed(start, key, todo)
            else:
                log.info(
                    "block starting at %s: another worker is still composing it, left to it",
                    due[start].profile.name,
                )
        written = next((c.written for c in opened if isinstance(c, FeedChannel)), [])
        if not STOPPING.is_set():  # [store] keep_days: once a day, after the delivery
            from digest.retention import after_run

            after_run(config, store, started)
            if whole:
                quiet.remember(config, store, config.profiles, clock())
        return CycleReport(report, tuple(composed), tuple(written), delivered)


def block_starts(count: int, claimant: str) -> list[int]:
    """Where each block of `count` due profiles starts, in the order this run takes them: from a
    block chosen by the run's id, round to the one before it. Runs started together on one store
    (several workers) then begin apart and each composes mostly blocks no other has done, where
    in one order they would rank every profile twice; one run alone does every block either way."""
    starts = list(range(0, count, BLOCK))
    if not starts:
        return starts
    first = int(hashlib.blake2b(claimant.encode(), digest_size=4).hexdigest(), 16) % len(starts)
    return starts[first:] + starts[:first]


def block_key(first: Due) -> int:
    """The number a block of due profiles is claimed by (`Store.claim_block`): a stable signed
    64-bit hash of its day and its first profile's name, the same for every worker of the run."""
    name = f"{first.day.isoformat()} {first.profile.name}".encode()
    return int.from_bytes(hashlib.blake2b(name, digest_size=8).digest(), "big", signed=True)


def _still_going(
    opened: Sequence[channels.Channel], delivered: Mapping[str, DeliveryReport]
) -> tuple[list[channels.Channel], list[channels.Channel]]:
    """The channels that deliver the next block, and those that stopped for the run."""
    going: list[channels.Channel] = []
    benched: list[channels.Channel] = []
    for channel in opened:
        stopped = delivered.get(channel.name, DeliveryReport()).stopped
        (benched if stopped and channel.stops_for_the_run else going).append(channel)
    return going, benched


@dataclass(frozen=True, slots=True)
class Due:
    """A profile whose digest is to be composed now: its day and the [since, until) it covers."""

    profile: ProfileConfig
    day: date
    since: datetime
    until: datetime


def due_profiles(
    store: Store, profiles: Sequence[ProfileConfig], now: datetime, *, now_too: bool = False
) -> list[Due]:
    """Every profile whose digest is due `now` and not composed yet (with `now_too`, also those
    not due yet that have none for their day), those of one window together."""
    window_of = compose.now_window if now_too else compose.due_window
    heads = store.digest_heads()  # one query, no digest read: an idle run costs next to nothing
    due = []
    for profile in profiles:
        window = window_of(profile, now, heads.get(profile.name))
        if window is not None:  # else: not due yet, or composed already (by this run or another)
            due.append(Due(profile, *window))
    # Profiles of one window rank against the same papers, so most blocks rank in one pass.
    due.sort(key=lambda entry: (entry.since, entry.until))
    return due


class Composer:
    """rank -> compose -> store for a block of due profiles; the ranking model is fitted once per
    run, at the first block, and serves every block."""

    def __init__(
        self,
        config: Config,
        store: Store,
        clock: Clock,
        *,
        targets: Callable[[ProfileConfig], list[str]],
    ) -> None:
        self.config, self.store, self.clock, self.targets = config, store, clock, targets
        self._ranker: Ranker | None = None
        # The papers and source runs of a window, read once for all the blocks that share it.
        self._window: tuple[tuple[datetime, datetime], list[Paper], list[SourceRun]] | None = None

    def still_due(self, block: Sequence[Due]) -> list[Due]:
        """The block without the profiles whose digest for the day is stored by now (another run
        composed it since this one read the heads): ranking them again would be wasted."""
        heads = self.store.digest_heads(entry.profile.name for entry in block)
        return [
            entry for entry in block
            if (head := heads.get(entry.profile.name)) is None or head.day < entry.day
        ]

    def compose(self, block: Sequence[Due]) -> tuple[list[Digest], list[Digest]]:
        """The block's digests as stored (another run may have composed some first: its digest
        stands), and of them those this run composed."""
        if not block:
            return [], []
        if self._ranker is None:
            self._ranker = make_ranker(self.config, self.store, self.clock)
        feedback = self.store.feedback(entry.profile.name for entry in block)
        made: list[Digest] = []
        windows: dict[tuple[datetime, datetime], list[Due]] = {}
        for entry in block:
            windows.setdefault((entry.since, entry.until), []).append(entry)
        for (since, until), group in windows.items():
            candidates, runs = self._papers(since, until)
            profiles = [entry.profile for entry in group]
            ranked = rank(self._ranker, self.store, self.clock, candidates, profiles, feedback)
            made += [
                compose.compose(
                    entry.profile, entry.day, since, until, scanned=len(candidates),
                    items=ranked[entry.profile.name], runs=runs,
                )
                for entry in group
            ]
        by_name = {entry.profile.name: entry.profile for entry in block}
        # One transaction (one fsync) for the block's digests and their ledger rows.
        saved = self.store.save_digests(
            [(digest, self.targets(by_name[digest.profile])) for digest in made], self.clock()
        )
        ours = [digest for digest, kept in zip(made, saved, strict=True) if kept is digest]
        for digest in ours:
            with logs.context(profile=digest.profile):
                log.info(
                    "composed the digest of %s: %d of %d new papers",
                    digest.day, len(digest.items), digest.scanned,
                )
        return saved, ours

    def _papers(self, since: datetime, until: datetime) -> tuple[list[Paper], list[SourceRun]]:
        if self._window is None or self._window[0] != (since, until):
            papers = self.store.papers(since=since, until=until, limit=None)
            self._window = ((since, until), papers, self.store.source_runs_between(since, until))
        return self._window[1], self._window[2]


def compose_due(
    config: Config,
    store: Store,
    profiles: Sequence[ProfileConfig],
    clock: Clock,
    *,
    targets: Callable[[ProfileConfig], list[str]],
    now_too: bool = False,
) -> list[Digest]:
    """Compose and store the digest of every profile that is due and has none for its day yet
    (with `now_too`, also of those not due yet that have none for their day), each with a
    pending ledger row per channel `targets(profile)` names; the digests this run composed."""
    due = due_profiles(store, profiles, clock(), now_too=now_too)
    composer = Composer(config, store, clock, targets=targets)
    composed: list[Digest] = []
    for start in range(0, len(due), BLOCK):
        composed += composer.compose(due[start : start + BLOCK])[1]
    return composed


def preview(config: Config, store: Store, profile: ProfileConfig, clock: Clock) -> Digest:
    """The digest the profile would get now (or its stored one for today): nothing is saved."""
    now = clock()
    latest = store.digests(profile.name, limit=1)
    previous = latest[0] if latest else None
    if previous is not None and previous.until >= (compose.last_slot(profile, now) or now):
        return previous  # today's digest is made: show it
    day, since, until = compose.preview_window(profile, now, previous)
    candidates = store.papers(since=since, until=until, limit=None)
    ranker = make_ranker(config, store, clock)
    items = rank(ranker, store, clock, candidates, [profile], store.feedback([profile.name]))[
        profile.name
    ]
    return compose.compose(
        profile,
        day,
        since,
        until,
        scanned=len(candidates),
        items=items,
        runs=store.source_runs_between(since, until),
    )
