"""The plain data that flows between the steps. Every type is a frozen dataclass.

Direction of flow:  bytes --parse--> Record (a Parsed list) --identify--> Paper --store--> StoredPaper
                    one source run                 --> SourceRun (what the run did)
                    Paper x profile --rank--> ScoredPaper --compose--> Digest --deliver--> Delivery
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import date, datetime


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a record came from: the configured source's name and the listing (URL) it was read
    from, and the source's kind (config's `kind`), which says how far its values are trusted
    (digest.identify.AUTHORITY)."""

    source: str
    listing: str
    kind: str = ""


@dataclass(frozen=True, slots=True)
class Record:
    """One paper as one listing shows it. Parsers fill what the page has and leave the rest empty.

    All datetimes are timezone-aware UTC. Text is plain (never HTML) and untrusted.
    """

    origin: Origin
    title: str
    arxiv_id: str | None = None  # without version: "2411.01234", "hep-th/9901001"
    version: int | None = None  # the "2" of "v2", when the listing says
    doi: str | None = None
    source_key: str | None = None  # the source's own id, when there is neither arXiv id nor DOI
    abstract: str = ""
    authors: tuple[str, ...] = ()
    author_count: int | None = None  # when a listing gives a count but not the names
    categories: tuple[str, ...] = ()
    primary_category: str | None = None
    published: datetime | None = None  # first version's date
    updated: datetime | None = None  # this version's date
    listed: date | None = None  # the day the listing shows it (announce day, HF daily day)
    announce_type: str | None = None  # arXiv: new, cross, replace, replace-cross
    abs_url: str | None = None
    pdf_url: str | None = None
    code_url: str | None = None
    project_url: str | None = None
    thumbnail_url: str | None = None
    upvotes: int | None = None
    comment_count: int | None = None
    github_stars: int | None = None
    ai_summary: str | None = None
    ai_keywords: tuple[str, ...] = ()
    comment: str | None = None  # the authors' comment ("12 pages, 3 figures")
    journal_ref: str | None = None
    organization: str | None = None


class Parsed(list[Record]):
    """What a parser gives: its records (a list, as before), and the entries it left out, by
    reason ("cut off mid-entry": 1), so the source's run can say what it did not store.

    A parser that leaves nothing out may return a plain list.
    """

    def __init__(self, records: Iterable[Record] = (), skipped: Mapping[str, int] | None = None) -> None:
        super().__init__(records)
        self.skipped: dict[str, int] = dict(skipped or {})


# Why a parser left entries out of a body that was cut short (the pipeline then keeps no
# validators, so the next run reads the whole body again).
CUT_ENTRY = "cut off mid-entry"
CUT_MISSING = "missing after the cut"  # entries the answer said it held that never came
CUT_BETWEEN = "body cut off between entries"  # how many followed, nothing tells
CUT_REASONS = frozenset({CUT_ENTRY, CUT_MISSING, CUT_BETWEEN})


def skipped_of(records: Sequence[Record]) -> dict[str, int]:
    """The entries a parser left out, by reason (none for a plain list)."""
    return dict(getattr(records, "skipped", {}))


# Fields a newer sighting may overwrite even when the stored paper has a value: they change over time.
# (The version is not one: it goes with the title and abstract kept, digest.identify.merge.)
VOLATILE_FIELDS = frozenset(
    {"upvotes", "comment_count", "github_stars", "updated", "announce_type"}
)
# Paper fields copied from Record (everything but the origin).
PAPER_DATA_FIELDS = tuple(f.name for f in fields(Record) if f.name != "origin")


@dataclass(frozen=True, slots=True)
class Paper:
    """One paper, merged from every listing that showed it, keyed once (see identify.py)."""

    key: str
    title: str
    first_seen: datetime
    first_source: str
    first_listing: str
    arxiv_id: str | None = None
    version: int | None = None
    doi: str | None = None
    source_key: str | None = None
    abstract: str = ""
    authors: tuple[str, ...] = ()
    author_count: int | None = None
    categories: tuple[str, ...] = ()
    primary_category: str | None = None
    published: datetime | None = None
    updated: datetime | None = None
    listed: date | None = None
    announce_type: str | None = None
    abs_url: str | None = None
    pdf_url: str | None = None
    code_url: str | None = None
    project_url: str | None = None
    thumbnail_url: str | None = None
    upvotes: int | None = None
    comment_count: int | None = None
    github_stars: int | None = None
    ai_summary: str | None = None
    ai_keywords: tuple[str, ...] = ()
    comment: str | None = None
    journal_ref: str | None = None
    organization: str | None = None
    sources: tuple[str, ...] = ()  # every source that has shown it, in order of first sighting
    authority: str = ""  # the kind of source whose values it holds (digest.identify.merge)


@dataclass(frozen=True, slots=True)
class FetchResult:
    """What fetching one URL gave: a body, or `unchanged` (HTTP 304: nothing new, never 'empty')."""

    url: str
    status: int
    body: bytes | None
    etag: str | None = None
    last_modified: str | None = None
    elapsed_s: float = 0.0

    @property
    def unchanged(self) -> bool:
        return self.status == 304


@dataclass(frozen=True, slots=True)
class SourceRun:
    """What one source did in one run, as stored in the run history and printed by `digest ingest`."""

    source: str
    started: datetime
    duration_s: float
    fetched: int  # responses received (a 304 counts)
    parsed: int  # records parsed
    new: int  # papers never seen before
    status: str  # ok | empty (a well-formed answer with nothing) | unchanged (304) | layout | failed
    error: str | None = None
    recent_median: float | None = None  # median parsed count of this source's recent good runs

    @property
    def failed(self) -> bool:
        return self.status == "failed"


@dataclass(frozen=True, slots=True)
class Resolved:
    """What one pass of digest.resolve did."""

    asked: int  # title-only papers looked up
    found: int  # of them, found in the arXiv API with the same title
    queries: int
    error: str | None = None  # the first query that failed, in one line


@dataclass(frozen=True, slots=True)
class IngestReport:
    run_id: int
    started: datetime
    sources: tuple[SourceRun, ...] = field(default_factory=tuple)
    resolved: Resolved | None = None  # title-only papers looked up in the arXiv API
    # Sources another worker claimed (and so fetched, or is fetching) in this run's stead
    elsewhere: tuple[str, ...] = ()

    @property
    def all_failed(self) -> bool:
        """No source could be read (failed, or its page no longer has the parser's markers)."""
        return bool(self.sources) and all(run.status in ("failed", "layout") for run in self.sources)


FEEDBACK_MARKS = ("more", "less")


@dataclass(frozen=True, slots=True)
class Feedback:
    """A profile's marks: papers (keys) the person wants more of, and less of."""

    more: tuple[str, ...] = ()
    less: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Reasons:
    """Why a paper was chosen for a profile, as data for the email and the feeds to show."""

    keywords: tuple[str, ...] = ()  # the profile's own words and phrases that matched, title first
    title_keywords: tuple[str, ...] = ()  # those of `keywords` that are in the title
    authors: tuple[str, ...] = ()  # pinned authors, as the paper writes their names
    categories: tuple[str, ...] = ()  # followed categories the paper is in
    similar_to: str | None = None  # the title of the most similar example (or "more" paper)
    similarity: float = 0.0  # its cosine similarity, 0..1
    upvotes: int | None = None  # when the community signal counted
    parts: tuple[tuple[str, float], ...] = ()  # the score's parts: ("keywords", 3.2), ...
    colleagues: tuple[str, ...] = ()  # authors who often write with a pinned author
    liked_authors: tuple[str, ...] = ()  # authors who also wrote papers the reader liked

    def summary(self) -> str:
        """One line a person can read: 'matches "diffusion model"; by Jane Doe; in cs.LG'."""
        said = []
        if self.keywords:
            said.append("matches " + ", ".join(f'"{k}"' for k in self.keywords))
        if self.authors:
            said.append("by " + ", ".join(self.authors))
        if self.colleagues:
            said.append("by " + ", ".join(self.colleagues) + ", who often write with your authors")
        if self.liked_authors:
            said.append("by " + ", ".join(self.liked_authors) + ", authors of papers you liked")
        if self.similar_to:
            said.append(f'similar to: "{self.similar_to}"')
        if self.categories:
            said.append("in " + ", ".join(self.categories))
        if self.upvotes:
            said.append(f"{self.upvotes} upvote{'' if self.upvotes == 1 else 's'}")
        return "; ".join(said)


@dataclass(frozen=True, slots=True)
class ScoredPaper:
    """One paper in one profile's ranking: its score (higher is better) and why."""

    paper: Paper
    score: float
    reasons: Reasons


@dataclass(frozen=True, slots=True)
class DayRanking:
    """One profile's ranking for one of its days: what was scanned, and what was chosen."""

    profile: str
    day: date  # the profile's local day
    scanned: int  # new papers first seen that day
    papers: tuple[ScoredPaper, ...]


@dataclass(frozen=True, slots=True)
class SourceNote:
    """How one source fared during a digest's window: its last status and error, if any."""

    source: str
    status: str  # ok | empty | unchanged | layout | failed (as in SourceRun)
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.status in ("failed", "layout")


@dataclass(frozen=True, slots=True)
class Digest:
    """One profile's digest for one of its days, as composed once and stored.

    It covers the papers first seen in [since, until): from the end of the previous digest (or one
    period back) to the moment it was composed, so a digest after downtime covers every missed day.
    """

    profile: str
    day: date  # the profile's local day the digest is for
    timezone: str
    since: datetime  # UTC
    until: datetime  # UTC; also the digest's "updated" time in feeds
    scanned: int  # new papers in the window
    sources: tuple[SourceNote, ...]  # every source that ran in the window
    items: tuple[ScoredPaper, ...]

    @property
    def failed_sources(self) -> tuple[SourceNote, ...]:
        return tuple(note for note in self.sources if note.failed)


@dataclass(frozen=True, slots=True)
class DigestHead:
    """What the schedule needs of a profile's latest digest: its day and where its window ended.
    Read for every profile on every run, so it is read without the digest's items."""

    profile: str
    day: date
    until: datetime


# A delivery's life: pending -> sending (claimed by one run) -> sent | deferred | failed | skipped
# | uncertain. deferred: a transient error (4xx, connection); the next run tries again. failed: a
# permanent error (5xx, a bounce) or too many tries; never retried. skipped: nothing to send (an
# empty digest). uncertain: handed over, but no answer came (it may have arrived); a later run
# sends it again only after a quarantine, and `digest status` shows it to a person. A run that
# stops before a message could go (circuit breaker, deadline) gives its row back as pending.
DELIVERY_STATUSES = ("pending", "sending", "sent", "deferred", "failed", "skipped", "uncertain")


@dataclass(frozen=True, slots=True)
class Delivery:
    """One row of the delivery ledger: one digest (profile, day) over one channel."""

    profile: str
    # "mail:<address>", "feed", or a team chat's "<kind>:<name>" ("slack:lab", "matrix:group")
    channel: str
    day: date
    status: str  # one of DELIVERY_STATUSES
    attempts: int = 0
    updated: datetime | None = None
    error: str | None = None
    message_id: str | None = None

    @property
    def kind(self) -> str:
        """The channel kind: "mail", "feed", "slack", "discord", "matrix" or "webhook"."""
        return self.channel.partition(":")[0]

    @property
    def target(self) -> str:
        """Whom the kind delivers to: the address of a mail row, the chat's name; "" for feed."""
        return self.channel.partition(":")[2]

    @property
    def address(self) -> str | None:
        return self.channel.removeprefix("mail:") if self.channel.startswith("mail:") else None


@dataclass(frozen=True, slots=True)
class Interests:
    """What a person who subscribed on the web asked for (the web form's fields, checked)."""

    keywords: tuple[str, ...] = ()
    authors: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    examples: tuple[str, ...] = ()  # arXiv ids
    frequency: str = "daily"  # daily | weekdays | weekly
    weekday: str = "monday"
    timezone: str = "UTC"
    deliver_at: str = "07:00"
    email: bool = True  # False: feed only (no digest by email; the personal feed still gets it)


@dataclass(frozen=True, slots=True)
class Subscriber:
    """A subscription made on the web: its own profile, one address, kept in the store."""

    profile: str  # "web-" and random hex: also the (private) name of its feed
    address: str  # lower case
    interests: Interests
    status: str  # pending (not confirmed yet) | active | paused
    created: datetime
    updated: datetime
    confirmed: datetime | None = None
    unsubscribed: bool = False


@dataclass(frozen=True, slots=True)
class SignupRequest:
    """A subscribe form, accepted and waiting for a worker to record it and send its mail."""

    network: str  # the requester's network (IPv4 /24, IPv6 /48): mail budgets are per network
    address: str
    interests: Interests
    received: datetime
    library: bytes | None = None  # a library file sent with the form, and its cleaned name
    library_name: str | None = None
    id: int = 0  # given by the store
    attempts: int = 0  # mails tried so far, this one included once claimed
