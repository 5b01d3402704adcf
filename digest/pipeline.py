"""Wires the steps together, nothing else lives here:

    ingest:     sources -> fetch -> parse -> identify -> store
    run_cycle:  ingest -> rank -> compose -> store the digests -> feeds -> mail (ledger)

I/O is passed in (a Store, a Fetcher, a Sender, a clock), so a whole cycle runs in tests on captured
pages, a temporary folder and a local SMTP server.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo

from digest import compose, feeds, logs, subscriptions
from digest.calendars import expects_content
from digest.config import Config, ProfileConfig, SourceConfig
from digest.deliver import DEFAULT_BREAKER, DeliveryReport, Sender, deliver_mail
from digest.errors import DigestError, EmbeddingError, LayoutChanged, SourceError
from digest.fetch import Fetcher, FetchPolicy, user_agent
from digest.health import judge, layout_change, recent_median
from digest.models import (
    CUT_REASONS,
    DayRanking,
    Delivery,
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
    EmailLinks,
    FeedbackLinks,
    LinkShortener,
    OutgoingMail,
    RenderedEmail,
    Renderer,
    build_message,
    message_id,
)
from digest.resolve import resolve_titles
from digest.sources import SOURCE_KINDS
from digest.store import Store
from digest.tokens import load_secrets, manage_token, unsubscribe_token

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
) -> IngestReport:
    """Fetch, parse, diff and store every enabled source (or those named in `only`).

    One broken source never stops the others: its error is recorded in the run history and returned.
    """
    sources = (
        [config.source(name) for name in only] if only else [s for s in config.sources if s.enabled]
    )
    started = clock()
    run_id = store.begin_run("ingest", started)
    runs = []
    for done, source in enumerate(sources):
        if STOPPING.is_set():
            break
        progress("sources", done, len(sources), f"fetching {source.name}")
        runs.append(ingest_source(source, store, fetcher, clock, run_id))
        progress("sources", done + 1, len(sources), f"{source.name}: {runs[-1].status}")
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
    return IngestReport(run_id=run_id, started=started, sources=tuple(runs), resolved=resolved)


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


# -- one full cycle: ingest, rank, compose, feeds, mail --------------------------------------------


def make_sender(config: Config) -> Sender:
    """SMTP when [smtp] is configured, else the Maildir outbox in the data directory."""
    from digest.deliver import Outbox, SmtpSender

    if config.smtp is not None:
        return SmtpSender(config.smtp)
    return Outbox(config.outbox_dir)


@dataclass(frozen=True, slots=True)
class CycleReport:
    ingest: IngestReport | None  # None when the run did not fetch
    composed: tuple[Digest, ...]  # digests composed by this run
    feeds_written: tuple[str, ...]  # feed files that changed (paths relative to feeds_dir)
    mail: DeliveryReport
    # Why feed files could not be written (the mail went on regardless), or None.
    feeds_problem: str | None = None


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
    profiles: Sequence[ProfileConfig] | None = None,
    claimant: str | None = None,
    renderer: Renderer | None = None,
    now_too: bool = False,
    progress: Progress = no_progress,
) -> CycleReport:
    """One cycle for every profile whose digest is due; safe to re-run and to run twice at once.

    The ledger decides what is left to do: a digest is composed once per (profile, day), and each
    of its deliveries is claimed by one run, so a re-run after a crash only finishes what is open.
    """
    claimant = claimant or run_id()
    with logs.context(run_id=claimant):
        return _cycle(
            config, store, clock, sender, fetcher, profiles, claimant, renderer, now_too, progress
        )


def _cycle(
    config: Config,
    store: Store,
    clock: Clock,
    sender: Sender,
    fetcher: Fetcher | None,
    profiles: Sequence[ProfileConfig] | None,
    claimant: str,
    renderer: Renderer | None,
    now_too: bool = False,
    progress: Progress = no_progress,
) -> CycleReport:
    report = ingest(config, store, fetcher, clock, progress=progress) if fetcher is not None else None
    # People who subscribed on the web are profiles too; read fresh each cycle, since they
    # sign up, pause and edit their interests while the job runs.
    config = subscriptions.with_subscribers(config, store)
    chosen = list(config.profiles if profiles is None else profiles)
    composed = (
        [] if STOPPING.is_set() else compose_due(config, store, chosen, clock, now_too=now_too)
    )
    renderer = renderer or Renderer()
    written: list[str] = []
    feeds_problem = None
    if not STOPPING.is_set():
        # Channels are independent: feeds that cannot be written (disk full, permissions) are
        # recorded for `digest status` and reported, and the mail goes out all the same.
        try:
            written = publish_feeds(config, store, renderer, clock, claimant=claimant)
        except feeds.PublishError as exc:
            written, feeds_problem = exc.changed, str(exc)
    if STOPPING.is_set():
        return CycleReport(
            report, tuple(composed), tuple(written), DeliveryReport(), feeds_problem
        )
    mail = deliver_mail(
        store,
        sender,
        MailBuilder(config, store, renderer),
        clock,
        claimant=claimant,
        lease=config.delivery.claim_lease,
        quarantine=config.delivery.uncertain_quarantine,
        breaker=config.smtp.breaker if config.smtp else DEFAULT_BREAKER,
        deadline=config.delivery.deadline,
        stopping=STOPPING.is_set,
        progress=progress,
    )
    return CycleReport(
        ingest=report,
        composed=tuple(composed),
        feeds_written=tuple(written),
        mail=mail,
        feeds_problem=feeds_problem,
    )


def mail_channel(address: str) -> str:
    return f"mail:{address}"


def compose_due(
    config: Config,
    store: Store,
    profiles: Sequence[ProfileConfig],
    clock: Clock,
    *,
    now_too: bool = False,
) -> list[Digest]:
    """Compose and store the digest of every profile that is due and has none for its day yet
    (with `now_too`, also of those not due yet that have none for their day)."""
    now = clock()
    window_of = compose.now_window if now_too else compose.due_window
    due: dict[tuple[datetime, datetime], list[tuple[ProfileConfig, date]]] = {}
    for profile in profiles:
        latest = store.digests(profile.name, limit=1)
        window = window_of(profile, now, latest[0] if latest else None)
        if window is not None:  # else: not due yet, or composed already (by this run or another)
            day, since, until = window
            due.setdefault((since, until), []).append((profile, day))
    if not due:
        return []
    ranker = make_ranker(config, store, clock)
    feedback = store.feedback(p.name for group in due.values() for p, _ in group)
    composed = []
    # Profiles composed in the same run share a window, so most runs rank in one pass.
    for (since, until), group in due.items():
        candidates = store.papers(since=since, until=until, limit=None)
        runs = store.source_runs_between(since, until)
        ranked = rank(ranker, store, clock, candidates, [profile for profile, _ in group], feedback)
        for profile, day in group:
            digest = compose.compose(
                profile,
                day,
                since,
                until,
                scanned=len(candidates),
                items=ranked[profile.name],
                runs=runs,
            )
            channels = [
                mail_channel(address)
                for address in profile.emails
                if not store.is_unsubscribed(profile.name, address)
            ] + ["feed"]
            saved = store.save_digest(digest, channels, now)
            if saved is digest:
                composed.append(digest)
                with logs.context(profile=profile.name):
                    log.info(
                        "composed the digest of %s: %d of %d new papers",
                        day,
                        len(digest.items),
                        len(candidates),
                    )
    return composed


def publish_feeds(
    config: Config, store: Store, renderer: Renderer, clock: Clock, *, claimant: str
) -> list[str]:
    """Rebuild the feeds whose data changed and write the files that changed.

    A profile's feed changes only when it gets a new digest (its "feed" row in the ledger is then
    open) or when its files are missing; the others are left as they are, so a run with nothing
    new costs next to nothing, whatever the number of profiles. The rolling window is counted back
    from the newest stored data, not from today, so a feed's bytes change only when its data does.
    A profile's items carry its feedback links, signed with the same keys as the emails'.

    Files that cannot be written raise feeds.PublishError, once the others are written: the
    problem is recorded (part "feeds", for `digest status`) and the "feed" rows of the profiles
    whose files failed are deferred, so the next run writes them; a run that writes every file
    clears the problem.
    """
    output = config.output
    keys = tuple(load_secrets(config.data_dir))
    base = feeds.feeds_url(output.base_url)
    open_rows = [
        row
        for row in store.deliveries(statuses=("pending", "deferred", "sending"))
        if row.channel == "feed"
    ]
    changed_profiles = {row.profile for row in open_rows}
    recent = store.papers(limit=1)
    papers = (
        store.papers(
            since=recent[0].first_seen - timedelta(days=output.feed_days),
            limit=output.feed_max_items,
        )
        if recent
        else []
    )
    everything = feeds.all_papers_feed(papers, renderer, base, output.feed_max_items)
    files = {everything.rss_path: everything.rss, everything.atom_path: everything.atom}
    listing = [(everything.title, everything.atom_path)]
    for profile in config.profiles:
        rss_path, atom_path = feeds.profile_feed_paths(profile.name)
        if not subscriptions.is_web_profile(profile.name):  # a web subscriber's feed is private
            listing.append((feeds.profile_feed_title(profile.name), atom_path))
        if profile.name not in changed_profiles and feeds.on_disk(
            output.feeds_dir, (rss_path, atom_path)
        ):
            continue
        latest = store.digests(profile.name, limit=1)
        since_day = latest[0].day - timedelta(days=output.feed_days - 1) if latest else None
        digests = store.digests(profile.name, since_day=since_day) if latest else []
        feedback = FeedbackLinks(profile.name, output.base_url, keys)
        built = feeds.profile_feed(
            profile.name, digests, renderer, base, output.feed_max_items, feedback
        )
        files[built.rss_path] = built.rss
        files[built.atom_path] = built.atom
    files[feeds.OPML_PATH] = feeds.opml(listing, base)
    failure: feeds.PublishError | None = None
    try:
        changed = feeds.publish(output.feeds_dir, files)
    except feeds.PublishError as exc:
        failure, changed = exc, exc.changed
    # Every digest now in its feed counts as delivered on the "feed" channel; one whose feed
    # could not be written waits for the next run.
    now = clock()
    for row in open_rows:
        if store.claim(row, claimant, now, stale_before=now - config.delivery.claim_lease):
            paths = feeds.profile_feed_paths(row.profile)
            missed = [failure.failed[p] for p in sorted(paths) if p in failure.failed] if failure else []
            if missed:
                store.settle(row, claimant, "deferred", now, error=missed[0])
            else:
                store.settle(row, claimant, "sent", now)
    if failure is not None:
        log.error("feeds: %s", failure)
        store.set_problem(feeds.PROBLEM_PART, str(failure), now)
        raise failure
    store.set_problem(feeds.PROBLEM_PART, None, now)
    return changed


def publish_first_feed(config: Config, profile: str) -> list[str]:
    """A new subscriber's feed, valid and empty, so its address works from the start (the
    first digest fills it); a feed already there is left as it is."""
    output = config.output
    if feeds.on_disk(output.feeds_dir, feeds.profile_feed_paths(profile)):
        return []
    links = FeedbackLinks(profile, output.base_url, tuple(load_secrets(config.data_dir)))
    built = feeds.profile_feed(
        profile, [], Renderer(), feeds.feeds_url(output.base_url), output.feed_max_items, links
    )
    return feeds.publish(output.feeds_dir, {built.rss_path: built.rss, built.atom_path: built.atom})


class MailBuilder:
    """Turns a ledger row into the message for its recipient (None: nothing to send)."""

    def __init__(self, config: Config, store: Store, renderer: Renderer) -> None:
        self.config = config
        self.store = store
        self.renderer = renderer
        self.keys = load_secrets(config.data_dir)
        self.profiles = {p.name: p for p in config.profiles}
        self._digests: dict[tuple[str, date], Digest | None] = {}
        host = urlsplit(config.output.base_url).hostname or "localhost"
        self.host = host
        self.shorten = LinkShortener(config.output.base_url, tuple(self.keys))

    def __call__(self, delivery: Delivery) -> OutgoingMail | None:
        address = delivery.address
        profile = self.profiles.get(delivery.profile)
        if (
            address is None
            or profile is None
            or address not in profile.emails
            or self.store.is_unsubscribed(profile.name, address)
        ):
            # The profile or the address left since the digest was made, or it unsubscribed:
            # checked for every message, so an unsubscribe during a run counts at once.
            log.info("%s: %s no longer subscribed; not sent", delivery.profile, address)
            return None
        key = (delivery.profile, delivery.day)
        if key not in self._digests:
            self._digests[key] = self.store.digest(delivery.profile, delivery.day)
        digest = self._digests[key]
        if digest is None:
            return None
        if not digest.items and not self.config.email.send_empty:
            return None
        return self.message(digest, address)

    def render(self, digest: Digest, address: str) -> tuple[RenderedEmail, EmailLinks]:
        """The reader's email, and its links; the text part's short links are kept in the store
        first, so each works when the mail arrives."""
        links = self.links(digest.profile, address)
        rendered = self.renderer.email(digest, recipient=address, links=links,
                                       thumbnails=self.config.email.thumbnails)
        made = self.shorten.take()
        if made:
            self.store.save_short_links(made, digest.until)
        return rendered, links

    def message(self, digest: Digest, address: str) -> OutgoingMail:
        rendered, links = self.render(digest, address)
        email = self.config.email
        return build_message(
            rendered,
            sender=email.sender,
            recipient=address,
            message_id=message_id(digest, address, email.sender),
            date=digest.until,
            list_id=f"paperdigest {digest.profile} <{digest.profile}.paperdigest.{self.host}>",
            links=links,
            reply_to=email.reply_to,
        )

    def links(self, profile: str, address: str) -> EmailLinks:
        base = self.config.output.base_url
        token = unsubscribe_token(self.keys, profile, address)
        mailto = self.config.email.unsubscribe_mailto or _bare(self.config.email.sender)
        rss_path, atom_path = feeds.profile_feed_paths(profile)
        return EmailLinks(
            feed_rss=feeds.feed_url(base, rss_path),
            feed_atom=feeds.feed_url(base, atom_path),
            unsubscribe=f"{base}/unsubscribe/{token}",
            unsubscribe_mailto=f"mailto:{mailto}?subject={quote('unsubscribe ' + profile)}",
            manage=f"{base}/manage/{manage_token(self.keys, profile, address)}",
            feedback=FeedbackLinks(profile, base, tuple(self.keys)),
            shorten=self.shorten,
        )


def _bare(address: str) -> str:
    from email.utils import parseaddr

    return parseaddr(address)[1]


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
