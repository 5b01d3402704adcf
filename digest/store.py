"""The only place that talks SQL. One SQLite file in the data directory, WAL, schema versioned.

What the store answers: which of these records are new (`ingest`), when and where each paper was first
seen (`paper`, `papers`), what later sightings replaced in it (`paper_history`), and each source's run
history (`source_runs`). Every write happens inside one transaction, so a run that fails half-way
leaves the store exactly as it was.
"""

from __future__ import annotations

import functools
import itertools
import json
import operator
import sqlite3
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from digest.errors import StoreError
from digest.identify import (
    is_title_key,
    key_rank,
    merge,
    new_paper,
    normalize_doi,
    normalize_title,
    paper_key,
)
from digest.models import (
    PAPER_DATA_FIELDS,
    VOLATILE_FIELDS,
    Delivery,
    Digest,
    DigestHead,
    Feedback,
    FetchResult,
    Interests,
    Paper,
    Reasons,
    Record,
    ScoredPaper,
    SignupRequest,
    SourceNote,
    SourceRun,
    Subscriber,
)
from digest.sources.common import split_arxiv_id

# Each entry moves the schema from version N to N+1; PRAGMA user_version says where a file stands.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE papers (
        key TEXT PRIMARY KEY,
        arxiv_id TEXT,
        doi TEXT,
        title TEXT NOT NULL,
        title_norm TEXT NOT NULL,
        first_seen TEXT NOT NULL,
        first_source TEXT NOT NULL,
        first_listing TEXT NOT NULL,
        published TEXT,
        listed TEXT,
        abstract TEXT NOT NULL,  -- its own column: the longest text, kept out of the JSON
        data TEXT NOT NULL  -- JSON: every other Paper field
    );
    CREATE INDEX papers_title_norm ON papers(title_norm);
    CREATE INDEX papers_doi ON papers(doi) WHERE doi IS NOT NULL;
    CREATE INDEX papers_first_seen ON papers(first_seen);
    CREATE TABLE sightings (
        key TEXT NOT NULL REFERENCES papers(key) ON UPDATE CASCADE ON DELETE CASCADE,
        source TEXT NOT NULL,
        first_seen TEXT NOT NULL,
        last_seen TEXT NOT NULL,
        PRIMARY KEY (key, source)
    ) WITHOUT ROWID;
    CREATE INDEX sightings_by_source ON sightings(source);
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        command TEXT NOT NULL,
        started TEXT NOT NULL,
        finished TEXT
    );
    CREATE TABLE source_runs (
        run_id INTEGER NOT NULL REFERENCES runs(id),
        source TEXT NOT NULL,
        started TEXT NOT NULL,
        duration_s REAL NOT NULL,
        fetched INTEGER NOT NULL,
        parsed INTEGER NOT NULL,
        new INTEGER NOT NULL,
        status TEXT NOT NULL,
        error TEXT,
        PRIMARY KEY (run_id, source)
    );
    CREATE INDEX source_runs_by_source ON source_runs(source, started);
    CREATE TABLE http_cache (
        url TEXT PRIMARY KEY,
        etag TEXT,
        last_modified TEXT,
        updated TEXT NOT NULL
    );
    """,
    # 2: a person's "more like this" / "not relevant" marks, read by the ranking.
    """
    CREATE TABLE feedback (
        profile TEXT NOT NULL,
        key TEXT NOT NULL REFERENCES papers(key) ON UPDATE CASCADE ON DELETE CASCADE,
        mark TEXT NOT NULL CHECK (mark IN ('more', 'less')),
        marked TEXT NOT NULL,
        PRIMARY KEY (profile, key)
    ) WITHOUT ROWID;
    CREATE INDEX feedback_by_key ON feedback(key);
    """,
    # 3: composed digests (what each profile was given, kept for the rolling feeds) and the
    # delivery ledger: one row per (profile, channel, digest day).
    """
    CREATE TABLE digests (
        profile TEXT NOT NULL,
        day TEXT NOT NULL,
        timezone TEXT NOT NULL,
        since TEXT NOT NULL,
        until TEXT NOT NULL,
        scanned INTEGER NOT NULL,
        sources TEXT NOT NULL,  -- JSON: [[source, status, error], ...]
        PRIMARY KEY (profile, day)
    ) WITHOUT ROWID;
    CREATE TABLE digest_items (
        profile TEXT NOT NULL,
        day TEXT NOT NULL,
        position INTEGER NOT NULL,
        key TEXT NOT NULL REFERENCES papers(key) ON UPDATE CASCADE,
        score REAL NOT NULL,
        reasons TEXT NOT NULL,  -- JSON: the Reasons fields
        PRIMARY KEY (profile, day, position),
        FOREIGN KEY (profile, day) REFERENCES digests(profile, day) ON DELETE CASCADE
    ) WITHOUT ROWID;
    CREATE INDEX digest_items_by_key ON digest_items(key);
    CREATE TABLE deliveries (
        profile TEXT NOT NULL,
        channel TEXT NOT NULL,
        day TEXT NOT NULL,
        status TEXT NOT NULL
            CHECK (status IN ('pending', 'sending', 'sent', 'deferred', 'failed', 'skipped')),
        attempts INTEGER NOT NULL DEFAULT 0,
        updated TEXT NOT NULL,
        claimed_by TEXT,
        error TEXT,
        message_id TEXT,
        PRIMARY KEY (profile, channel, day),
        FOREIGN KEY (profile, day) REFERENCES digests(profile, day) ON DELETE CASCADE
    ) WITHOUT ROWID;
    CREATE INDEX deliveries_by_status ON deliveries(status, day);
    """,
    # 4: addresses that unsubscribed from a profile (one-click links in every email).
    """
    CREATE TABLE unsubscribed (
        profile TEXT NOT NULL,
        address TEXT NOT NULL,  -- lower case
        at TEXT NOT NULL,
        PRIMARY KEY (profile, address)
    ) WITHOUT ROWID;
    """,
    # 5: subscriptions made on the web (double opt-in), and the confirmation mails sent, which
    # the rate limit counts.
    """
    CREATE TABLE subscribers (
        profile TEXT PRIMARY KEY,
        address TEXT NOT NULL UNIQUE,  -- lower case, one web subscription per address
        interests TEXT NOT NULL,  -- JSON: the Interests fields
        status TEXT NOT NULL CHECK (status IN ('pending', 'active', 'paused')),
        created TEXT NOT NULL,
        updated TEXT NOT NULL,
        confirmed TEXT
    ) WITHOUT ROWID;
    CREATE TABLE confirmation_mails (
        address TEXT NOT NULL,
        at TEXT NOT NULL
    );
    CREATE INDEX confirmation_mails_by_time ON confirmation_mails(at);
    """,
    # 6: each paper's sentence vector (float16, computed once, by the model named beside it),
    # each profile's model learned from its marks, and problems a person should hear about
    # that belong to no source (a sentence model that could not be loaded).
    """
    CREATE TABLE embeddings (
        key TEXT PRIMARY KEY REFERENCES papers(key) ON UPDATE CASCADE ON DELETE CASCADE,
        model TEXT NOT NULL,
        vector BLOB NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE learned_profiles (
        profile TEXT PRIMARY KEY,
        fingerprint TEXT NOT NULL,
        coefficients BLOB NOT NULL,  -- float32, one per embedding dimension
        intercept REAL NOT NULL,
        trained TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE problems (
        part TEXT PRIMARY KEY,
        problem TEXT NOT NULL,
        since TEXT NOT NULL
    ) WITHOUT ROWID;
    -- Papers a reader liked, imported from their reference manager: they count as "more" marks,
    -- with the file's own title and abstract for papers no source has listed (never candidates).
    CREATE TABLE library (
        profile TEXT NOT NULL,
        key TEXT NOT NULL,  -- the stored paper's key, or the key identify.paper_key gives it
        paper TEXT NOT NULL,  -- JSON: title, abstract, authors, arxiv_id, doi, file
        imported TEXT NOT NULL,
        model TEXT,  -- its sentence vector, for a paper the store does not hold
        vector BLOB,
        PRIMARY KEY (profile, key)
    ) WITHOUT ROWID;
    CREATE INDEX library_by_key ON library(key);
    """,
    # 7: the short links of text emails; sign-ups from the web wait here until a worker sends their mail, so a request does the
    # same work for any address and a full mail budget delays a mail instead of dropping it;
    # the network of each mail's requester, so the budget is shared fairly between networks.
    """
    CREATE TABLE signup_requests (
        id INTEGER PRIMARY KEY,
        network TEXT NOT NULL,  -- the requester's network: its IPv4 /24 or IPv6 /48
        address TEXT NOT NULL,
        interests TEXT NOT NULL,  -- JSON: the Interests fields
        library BLOB,  -- a library file sent with the form, as sent
        library_name TEXT,
        received TEXT NOT NULL,
        not_before TEXT NOT NULL,  -- a claimed request's lease, or a failed one's next try
        attempts INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX signup_requests_by_network ON signup_requests(network);
    ALTER TABLE confirmation_mails ADD COLUMN network TEXT NOT NULL DEFAULT '';
    CREATE INDEX confirmation_mails_by_network ON confirmation_mails(network, at);
    -- BASE/l/CODE: the short form of an action link in a text email (digest.tokens.short_code)
    CREATE TABLE short_links (
        code TEXT PRIMARY KEY,
        target TEXT NOT NULL,  -- one of our paths: /feedback/TOKEN, /manage/TOKEN, /unsubscribe/TOKEN
        created TEXT NOT NULL
    ) WITHOUT ROWID;
    """,
    # 8: the values a later, more trusted or more complete sighting replaced (identify.merge),
    # so healing a paper loses nothing: one row per ingest that changed the paper.
    """
    CREATE TABLE paper_history (
        key TEXT NOT NULL REFERENCES papers(key) ON UPDATE CASCADE ON DELETE CASCADE,
        changed_at TEXT NOT NULL,
        source TEXT NOT NULL,  -- the source whose sighting replaced them
        fields TEXT NOT NULL  -- JSON: the replaced fields' values, as they were stored
    );
    CREATE INDEX paper_history_by_key ON paper_history(key, changed_at);
    """,
    # 9: a delivery may be 'uncertain' (handed over, no answer: it may have arrived). SQLite
    # cannot change a CHECK constraint, so the ledger is copied into a table that allows it.
    """
    CREATE TABLE deliveries_new (
        profile TEXT NOT NULL,
        channel TEXT NOT NULL,
        day TEXT NOT NULL,
        status TEXT NOT NULL
            CHECK (status IN ('pending', 'sending', 'sent', 'deferred', 'failed', 'skipped',
                              'uncertain')),
        attempts INTEGER NOT NULL DEFAULT 0,
        updated TEXT NOT NULL,
        claimed_by TEXT,
        error TEXT,
        message_id TEXT,
        PRIMARY KEY (profile, channel, day),
        FOREIGN KEY (profile, day) REFERENCES digests(profile, day) ON DELETE CASCADE
    ) WITHOUT ROWID;
    INSERT INTO deliveries_new
        SELECT profile, channel, day, status, attempts, updated, claimed_by, error, message_id
        FROM deliveries;
    DROP TABLE deliveries;
    ALTER TABLE deliveries_new RENAME TO deliveries;
    CREATE INDEX deliveries_by_status ON deliveries(status, day);
    """,
    # 10: retention ([store] keep_days, Store.prune): the digests of a day found by their day;
    # a digest's ledger rows found by (profile, day), which deleting a digest also needs (its
    # foreign key would otherwise scan the whole ledger for each digest); short links found by
    # age; small facts about the store (when it was last pruned) and a daily sample of its size
    # (for `digest status`'s growth).
    """
    CREATE INDEX digests_by_day ON digests(day);
    CREATE INDEX deliveries_by_digest ON deliveries(profile, day);
    CREATE INDEX short_links_by_created ON short_links(created);
    CREATE TABLE meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE store_sizes (
        day TEXT PRIMARY KEY,  -- UTC
        used_bytes INTEGER NOT NULL,  -- pages in use (not free) times the page size
        file_bytes INTEGER NOT NULL,  -- the file and its -wal
        digests INTEGER NOT NULL,
        deliveries INTEGER NOT NULL
    ) WITHOUT ROWID;
    """,
    # 11: each profile's latest digest (its day and end) in a row of its own, kept with every
    # digest saved: the due check of every run reads it, and an idle run of 100,000 profiles
    # must not scan months of digests to learn that nothing is due. Pruning leaves it alone.
    """
    CREATE TABLE digest_heads (
        profile TEXT PRIMARY KEY,
        day TEXT NOT NULL,
        until TEXT NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO digest_heads SELECT profile, max(day), until FROM digests GROUP BY profile;
    """,
    # 12: a compact digest record (issue 16). A 10,000-profile day wrote 180,000 digest_items
    # rows (5.8 kB a digest with their key index); now a digest's items are one BLOB in its own
    # row: zlib of the JSON [[key, score, {reason: value, ...}], ...], each item's Reasons
    # without the fields at their defaults (_pack_items). Measured on bench/job_speed.py's 2,000
    # digests of 18 items, bytes a digest: 1,728 as plain JSON, 341 zlib'd, 347 with columns
    # ({keys, scores, reasons}) zlib'd, 328 with reasons by position, 303 with a preset zlib
    # dictionary. Named reasons keep a newer version's fields ignorable, and a dictionary would
    # have to stay the same forever for 11% less. 341 it is: 18 us to decode, where the JSON of
    # its 18 rows took 34.
    # Its items are filled by _pack_digest_items (Python: SQLite has no zlib), which then drops
    # their old rows; a script that builds old stores from MIGRATIONS stops before this one.
    #
    # Packed keys cannot follow a paper re-keyed by ON UPDATE CASCADE: paper_aliases keeps every
    # key a paper had (old -> the key it has now, chains flattened) and reading resolves them.
    #
    # The sources' notes are the same for every digest of a run: one digest_sources row each,
    # named by id. last_day is the latest day of a digest using them, so retention deletes the
    # notes no digest of its cutoff or later uses without looking at those digests.
    #
    # Rows in the order they are written: a day's digests and ledger rows are added together, so
    # they should be side by side in the file. Keyed by profile first (WITHOUT ROWID, until 11),
    # each profile's new row went into a page of its own among the months kept: with 90 days of
    # 2,000 profiles, saving a day's digests wrote 83 kB a digest (16 kB pages, to the WAL and
    # then the file) and claiming and settling their ledger rows 49 kB more. Now digests is a
    # rowid table (rows appended; its key (profile, day) an index of small entries) and the
    # ledger is keyed (day, profile, channel), which also finds a digest's rows as
    # deliveries_by_digest did: 7.5 and 4.5 kB. SQLite cannot change a table's key, so both are
    # copied into new tables.
    """
    CREATE TABLE paper_aliases (
        old TEXT PRIMARY KEY,  -- a key a paper had
        key TEXT NOT NULL  -- the key it has now
    ) WITHOUT ROWID;
    CREATE INDEX paper_aliases_by_key ON paper_aliases(key);
    CREATE TABLE digest_sources (
        id INTEGER PRIMARY KEY,
        sources TEXT NOT NULL UNIQUE,  -- JSON: [[source, status, error], ...]
        last_day TEXT NOT NULL  -- the latest day of a digest naming it
    );
    INSERT INTO digest_sources (sources, last_day)
        SELECT sources, max(day) FROM digests GROUP BY sources;
    -- Both tables are made anew, so their children go first (dropping a parent would delete
    -- them through ON DELETE CASCADE): the items and the ledger are set aside in plain tables.
    CREATE TABLE old_digest_items AS
        SELECT profile, day, position, key, score, reasons FROM digest_items;
    DROP TABLE digest_items;
    CREATE TABLE old_deliveries AS SELECT * FROM deliveries;
    DROP TABLE deliveries;
    CREATE TABLE digests_new (
        profile TEXT NOT NULL,
        day TEXT NOT NULL,
        timezone TEXT NOT NULL,
        since TEXT NOT NULL,
        until TEXT NOT NULL,
        scanned INTEGER NOT NULL,
        sources_id INTEGER NOT NULL,  -- digest_sources(id)
        items BLOB,  -- _pack_items, filled by _pack_digest_items
        PRIMARY KEY (profile, day)
    );
    INSERT INTO digests_new (profile, day, timezone, since, until, scanned, sources_id)
        SELECT d.profile, d.day, d.timezone, d.since, d.until, d.scanned, s.id
        FROM digests d JOIN digest_sources s ON s.sources = d.sources ORDER BY d.day, d.profile;
    DROP TABLE digests;
    ALTER TABLE digests_new RENAME TO digests;
    CREATE INDEX digests_by_day ON digests(day, profile);
    CREATE TABLE deliveries (
        profile TEXT NOT NULL,
        channel TEXT NOT NULL,
        day TEXT NOT NULL,
        status TEXT NOT NULL
            CHECK (status IN ('pending', 'sending', 'sent', 'deferred', 'failed', 'skipped',
                              'uncertain')),
        attempts INTEGER NOT NULL DEFAULT 0,
        updated TEXT NOT NULL,
        claimed_by TEXT,
        error TEXT,
        message_id TEXT,
        PRIMARY KEY (day, profile, channel),
        FOREIGN KEY (profile, day) REFERENCES digests(profile, day) ON DELETE CASCADE
    ) WITHOUT ROWID;
    INSERT INTO deliveries
        SELECT profile, channel, day, status, attempts, updated, claimed_by, error, message_id
        FROM old_deliveries ORDER BY day, profile, channel;
    DROP TABLE old_deliveries;
    CREATE INDEX deliveries_by_status ON deliveries(status, day);
    """,
    # 13: the personal feeds someone reads (issue 16): `digest serve` records, at most once a
    # minute, each web subscriber's feed it answered; a run builds only the personal feeds read
    # within [output] personal_feed_window days (digest.channels.feed). One row a profile.
    """
    CREATE TABLE feed_reads (
        profile TEXT PRIMARY KEY,
        last_read TEXT NOT NULL  -- UTC, ISO 8601: when its feed was last answered
    ) WITHOUT ROWID;
    """,
    # 14: papers in the order `Store.papers` gives them, newest first. On first_seen alone the
    # papers of one ingest (hundreds, all seen at the same instant) were sorted again by the rest
    # of the ORDER BY in a temporary B-tree of whole rows on every read: 41 MB written to a temp
    # file by a run of 300 profiles (issue 16). It serves the first_seen ranges as well.
    """
    CREATE INDEX papers_newest ON papers(first_seen DESC, coalesce(listed, published, '') DESC, key DESC);
    DROP INDEX papers_first_seen;
    """,
    # 15: a count of the changes to who subscribed on the web, kept by triggers whoever writes:
    # an idle run (digest.quiet) compares it instead of reading 100,000 subscribers.
    """
    INSERT INTO meta (key, value) VALUES ('subscribers_changed', '0')
        ON CONFLICT (key) DO NOTHING;
    CREATE TRIGGER subscribers_inserted AFTER INSERT ON subscribers BEGIN
        UPDATE meta SET value = value + 1 WHERE key = 'subscribers_changed';
    END;
    CREATE TRIGGER subscribers_updated AFTER UPDATE ON subscribers BEGIN
        UPDATE meta SET value = value + 1 WHERE key = 'subscribers_changed';
    END;
    CREATE TRIGGER subscribers_deleted AFTER DELETE ON subscribers BEGIN
        UPDATE meta SET value = value + 1 WHERE key = 'subscribers_changed';
    END;
    CREATE TRIGGER unsubscribed_inserted AFTER INSERT ON unsubscribed BEGIN
        UPDATE meta SET value = value + 1 WHERE key = 'subscribers_changed';
    END;
    CREATE TRIGGER unsubscribed_deleted AFTER DELETE ON unsubscribed BEGIN
        UPDATE meta SET value = value + 1 WHERE key = 'subscribers_changed';
    END;
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)

_COLUMN_FIELDS = frozenset(
    {
        "key",
        "arxiv_id",
        "doi",
        "title",
        "first_seen",
        "first_source",
        "first_listing",
        "published",
        "listed",
        "abstract",
    }
)
_DATA_FIELDS = tuple(f.name for f in fields(Paper) if f.name not in _COLUMN_FIELDS)
_DATETIME_FIELDS = frozenset({"published", "updated", "first_seen"})
_TUPLE_FIELDS = frozenset({"authors", "categories", "ai_keywords", "sources"})
_CHUNK = 500  # SQLite's limit on bound parameters is well above this
# A stored digest as Store._digests_from_rows reads it: its row and its sources' notes.
_DIGEST_COLUMNS = """d.profile, d.day, d.timezone, d.since, d.until, d.scanned,
    coalesce(s.sources, '[]'), d.items"""
_DIGEST_SELECT = f"""SELECT {_DIGEST_COLUMNS}
    FROM digests d LEFT JOIN digest_sources s ON s.id = d.sources_id"""


@dataclass(frozen=True, slots=True)
class IngestOutcome:
    new_keys: tuple[str, ...]
    updated: int


@dataclass(frozen=True, slots=True)
class PaperChange:
    """Values of a paper that a later sighting replaced: when, by which source, and what they were
    (field name -> the value stored before; tuples and datetimes as in Paper)."""

    changed_at: datetime
    source: str
    fields: dict[str, Any]


class Store:
    """A SQLite store. Use `Store.open(path)`; close it (or use `with`)."""

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self._db = connection
        self.path = path

    @classmethod
    def open(cls, path: Path) -> Store:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(path, isolation_level=None, timeout=30.0)
            # Larger pages suit rows of a few kB (abstracts); it only takes on a new, empty file.
            db.execute("PRAGMA page_size=16384")
            _while_locked(lambda: db.execute("PRAGMA journal_mode=WAL"))
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"{path}: cannot open the store: {exc}") from None
        store = cls(db, path)
        store._migrate()
        return store

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- schema ---------------------------------------------------------------------------------

    def _migrate(self) -> None:
        try:
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path}: schema version {version} is newer than this paperdigest "
                    f"understands ({SCHEMA_VERSION}); upgrade paperdigest"
                )
            while version < SCHEMA_VERSION:
                with self._transaction():
                    # Read again under the write lock: another process opening the same new
                    # store may have applied this step while we waited for the lock.
                    version = self._db.execute("PRAGMA user_version").fetchone()[0]
                    if version >= SCHEMA_VERSION:
                        break
                    for statement in _statements(MIGRATIONS[version]):
                        self._db.execute(statement)
                    version += 1
                    if version == 12:
                        _pack_digest_items(self._db)
                    self._db.execute(f"PRAGMA user_version = {version}")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: not a usable paperdigest store: {exc}") from None

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        # IMMEDIATE takes the write lock up front, so two overlapping runs queue instead of deadlocking.
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- papers ---------------------------------------------------------------------------------

    def ingest(
        self,
        records: Sequence[Record],
        seen_at: datetime,
        validators: Iterable[FetchResult] = (),
    ) -> IngestOutcome:
        """Store one source's records in one transaction; say which papers were never seen before.

        HTTP validators (ETag, Last-Modified) are saved in the same transaction: a response whose
        records did not make it into the store must not be answered '304 unchanged' next time.
        """
        try:
            with self._transaction():
                outcome = self._ingest(records, seen_at)
                self._save_validators(validators, seen_at)
        except sqlite3.Error as exc:
            raise StoreError(
                f"{self.path}: could not store {len(records)} records: {exc}"
            ) from None
        return outcome

    def _ingest(self, records: Sequence[Record], seen_at: datetime) -> IngestOutcome:
        keys = {paper_key(r) for r in records}
        dois = {normalize_doi(r.doi) for r in records if r.doi}
        titles = {normalize_title(r.title) for r in records}
        known = _Index(self._load(keys, dois, titles))
        original = dict(known.by_key)
        stored_key = {key: key for key in original}  # current key -> key in the database
        new_keys: list[str] = []
        sightings: dict[str, set[str]] = {}  # paper key -> sources that showed it in this batch
        changed_by: dict[str, str] = {}  # paper key -> the source of its last change in this batch
        for record in records:
            existing = known.find(record)
            if existing is None:
                paper = new_paper(record, seen_at)
                new_keys.append(paper.key)
            else:
                paper = merge(existing, record)
                if paper is not existing:
                    changed_by[paper.key] = record.origin.source
                if paper.key != existing.key:  # an id learned for a paper known by title or DOI
                    known.forget(existing)
                    sightings.setdefault(paper.key, set()).update(
                        sightings.pop(existing.key, set())
                    )
                    changed_by.pop(existing.key, None)
                    if existing.key in stored_key:
                        stored_key[paper.key] = stored_key.pop(existing.key)
                    else:
                        new_keys[new_keys.index(existing.key)] = paper.key
            known.add(paper)
            sightings.setdefault(paper.key, set()).add(record.origin.source)

        # Re-key first (the foreign key carries sightings along), then insert and update.
        rekeyed = [(current, stored) for current, stored in stored_key.items() if current != stored]
        self._db.executemany("UPDATE papers SET key = ? WHERE key = ?", rekeyed)
        self._remember_old_keys(rekeyed)
        inserts, updates, history = [], [], []
        stamp = seen_at.isoformat()
        for key, paper in known.by_key.items():
            if key not in stored_key:
                inserts.append(_to_row(paper))
            elif original[stored_key[key]] is not paper and original[stored_key[key]] != paper:
                updates.append(_to_row(paper))
                replaced = _replaced(original[stored_key[key]], paper)
                if replaced:  # healed: the values it had are kept (identify.merge says when)
                    history.append((key, stamp, changed_by.get(key, ""), _JSON.encode(replaced)))
        self._db.executemany(f"INSERT INTO papers VALUES ({', '.join('?' * 12)})", inserts)
        # A vector is computed from title and abstract: when either changed, it is computed again.
        self._db.executemany(
            "DELETE FROM embeddings WHERE key = ?",
            [
                (key,)
                for key, paper in known.by_key.items()
                if key in stored_key
                and (original[stored_key[key]].title, original[stored_key[key]].abstract)
                != (paper.title, paper.abstract)
            ],
        )
        self._db.executemany(
            """UPDATE papers SET arxiv_id=?2, doi=?3, title=?4, title_norm=?5, first_seen=?6,
               first_source=?7, first_listing=?8, published=?9, listed=?10, abstract=?11,
               data=?12
               WHERE key=?1""",
            updates,
        )
        self._db.executemany(
            "INSERT INTO paper_history (key, changed_at, source, fields) VALUES (?, ?, ?, ?)",
            history,
        )
        self._db.executemany(
            """INSERT INTO sightings (key, source, first_seen, last_seen) VALUES (?, ?, ?, ?)
               ON CONFLICT (key, source) DO UPDATE SET last_seen = excluded.last_seen""",
            [
                (key, source, stamp, stamp)
                for key, sources in sightings.items()
                for source in sorted(sources)
            ],
        )
        return IngestOutcome(new_keys=tuple(new_keys), updated=len(updates))

    def _remember_old_keys(self, rekeyed: Sequence[tuple[str, str]]) -> None:
        """Keep each re-keyed paper's old key (pairs of (new key, old key)): a stored digest names
        its papers by the key they had then (see migration 12). Chains are flattened: when B
        becomes C, an alias A -> B becomes A -> C, so a key is resolved in one look-up."""
        self._db.executemany("UPDATE paper_aliases SET key = ? WHERE key = ?", rekeyed)
        self._db.executemany(
            """INSERT INTO paper_aliases (old, key) VALUES (?2, ?1)
               ON CONFLICT (old) DO UPDATE SET key = excluded.key""",
            rekeyed,
        )
        # A key that names a paper again is no alias any more (no loop A -> B -> A).
        self._db.executemany("DELETE FROM paper_aliases WHERE old = ?", [(c,) for c, _ in rekeyed])

    def _papers_by_key(self, keys: Iterable[str]) -> dict[str, Paper]:
        """The papers named by these keys, each under the key asked for; a key a paper had before
        it was re-keyed finds it through paper_aliases. Keys of no paper are left out."""
        wanted = sorted(set(keys))
        found = self._papers_by_key_exactly(wanted)
        missing = [key for key in wanted if key not in found]
        aliases: dict[str, str] = {}
        for chunk in _chunks(missing):
            sql = f"SELECT old, key FROM paper_aliases WHERE old IN ({', '.join('?' * len(chunk))})"
            aliases.update(self._db.execute(sql, chunk).fetchall())
        if aliases:
            current = self._papers_by_key_exactly(aliases.values())
            found.update((old, current[key]) for old, key in aliases.items() if key in current)
        return found

    def _papers_by_key_exactly(self, keys: Iterable[str]) -> dict[str, Paper]:
        found: dict[str, Paper] = {}
        for chunk in _chunks(sorted(set(keys))):
            sql = f"SELECT * FROM papers WHERE key IN ({', '.join('?' * len(chunk))})"
            for row in self._db.execute(sql, chunk):
                found[row[0]] = _stored_paper(tuple(row))
        return found

    def _load(self, keys: set[str], dois: set[str], titles: set[str]) -> list[Paper]:
        rows: dict[str, tuple[Any, ...]] = {}
        for column, values in (("key", keys), ("doi", dois), ("title_norm", titles)):
            for chunk in _chunks(sorted(values)):
                sql = f"SELECT * FROM papers WHERE {column} IN ({', '.join('?' * len(chunk))})"
                for row in self._db.execute(sql, chunk):
                    rows[row[0]] = row
        return [_from_row(row) for row in rows.values()]

    def paper_history(self, key: str) -> list[PaperChange]:
        """The values later sightings replaced in this paper, oldest first."""
        rows = self._db.execute(
            """SELECT changed_at, source, fields FROM paper_history WHERE key = ?
               ORDER BY changed_at, rowid""",
            (key,),
        )
        return [
            PaperChange(datetime.fromisoformat(at), source, _typed(json.loads(values)))
            for at, source, values in rows
        ]

    def paper(self, key: str) -> Paper | None:
        row = self._db.execute("SELECT * FROM papers WHERE key = ?", (key,)).fetchone()
        return _from_row(row) if row else None

    def count_papers(self) -> int:
        count: int = self._db.execute("SELECT count(*) FROM papers").fetchone()[0]
        return count

    def papers(
        self,
        *,
        source: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        text: str | None = None,
        limit: int | None = 50,
    ) -> list[Paper]:
        """Stored papers, newest first (by first sighting), filtered by source, time and text.

        `since` and `until` bound the first sighting: since <= first_seen < until.
        """
        where: list[str] = []
        params: list[object] = []
        if source:
            where.append("key IN (SELECT key FROM sightings WHERE source = ?)")
            params.append(source)
        if since:
            where.append("first_seen >= ?")
            params.append(since.isoformat())
        if until:
            where.append("first_seen < ?")
            params.append(until.isoformat())
        if text:
            # LIKE is case-insensitive for ASCII; escape its wildcards so the user's text is literal.
            pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            where.append(
                "(title LIKE ? ESCAPE '\\' OR abstract LIKE ? ESCAPE '\\' OR data LIKE ? ESCAPE '\\')"
            )
            params += [pattern, pattern, pattern]
        sql = "SELECT * FROM papers"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY first_seen DESC, coalesce(listed, published, '') DESC, key DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [_from_row(row) for row in self._db.execute(sql, params)]

    def find(self, reference: str) -> Paper | None:
        """A paper named by key, arXiv id (any version, 'arXiv:' prefix), DOI or exact title."""
        text = reference.strip()
        if text.lower().startswith("arxiv:"):
            text = text[6:]
        arxiv_id, _ = split_arxiv_id(text)
        for column, value in (("key", text), ("arxiv_id", arxiv_id), ("doi", normalize_doi(text))):
            if value:
                row = self._db.execute(
                    f"SELECT * FROM papers WHERE {column} = ? LIMIT 1", (value,)
                ).fetchone()
                if row:
                    return _from_row(row)
        row = self._db.execute(
            "SELECT * FROM papers WHERE title_norm = ? ORDER BY first_seen LIMIT 1",
            (normalize_title(text),),
        ).fetchone()
        return _from_row(row) if row else None

    # -- sentence vectors and learned profiles ------------------------------------------------

    def embeddings(self, keys: Sequence[str], model: str) -> dict[str, bytes]:
        """The stored vectors (float16 bytes) of these papers computed by `model`; others left out.
        Papers known only from an imported library keep theirs in the library table."""
        found: dict[str, bytes] = {}
        for chunk in _chunks(sorted(set(keys))):
            marks = ", ".join("?" * len(chunk))
            for table in ("library", "embeddings"):  # a stored paper's own vector wins
                sql = f"SELECT key, vector FROM {table} WHERE model = ? AND key IN ({marks})"
                found.update(self._db.execute(sql, [model, *chunk]).fetchall())
        return found

    def save_embeddings(self, model: str, vectors: Mapping[str, bytes]) -> None:
        """Keep papers' vectors; a paper no longer stored under that key (re-keyed) is skipped."""
        try:
            with self._transaction():
                self._db.executemany(
                    """INSERT INTO embeddings (key, model, vector)
                       SELECT ?1, ?2, ?3 WHERE EXISTS (SELECT 1 FROM papers WHERE key = ?1)
                       ON CONFLICT (key) DO UPDATE SET model = excluded.model,
                       vector = excluded.vector""",
                    [(key, model, blob) for key, blob in vectors.items()],
                )
                self._db.executemany(
                    """UPDATE library SET model = ?2, vector = ?3 WHERE key = ?1
                       AND NOT EXISTS (SELECT 1 FROM papers WHERE key = ?1)""",
                    [(key, model, blob) for key, blob in vectors.items()],
                )
        except sqlite3.Error as exc:
            raise StoreError(
                f"{self.path}: could not store {len(vectors)} vectors: {exc}"
            ) from None

    # -- libraries imported from reference managers --------------------------------------------

    def import_library(
        self, profile: str, entries: Sequence[tuple[str, dict[str, Any]]], at: datetime
    ) -> int:
        """Keep a profile's imported papers (key, fields); returns how many were new to it."""
        with self._transaction():
            before = self._db.total_changes
            self._db.executemany(
                """INSERT INTO library (profile, key, paper, imported) VALUES (?, ?, ?, ?)
                   ON CONFLICT (profile, key) DO NOTHING""",
                [(profile, key, json.dumps(fields), at.isoformat()) for key, fields in entries],
            )
            return self._db.total_changes - before

    def library(self, profiles: Iterable[str] | None = None) -> dict[str, list[str]]:
        """Each profile's imported paper keys, in import order."""
        found: dict[str, list[str]] = {}
        rows: list[tuple[str, str]] = []
        if profiles is None:
            rows = self._db.execute("SELECT profile, key FROM library ORDER BY imported, key").fetchall()
        else:
            for chunk in _chunks(sorted(set(profiles))):
                sql = f"""SELECT profile, key FROM library WHERE profile IN
                          ({", ".join("?" * len(chunk))}) ORDER BY imported, key"""
                rows += self._db.execute(sql, chunk).fetchall()
        for profile, key in rows:
            found.setdefault(profile, []).append(key)
        return found

    def library_papers(self) -> list[tuple[str, dict[str, Any], datetime]]:
        """Imported papers that no source has listed: (key, fields, imported), one per key."""
        rows = self._db.execute(
            """SELECT key, paper, MIN(imported) FROM library
               WHERE key NOT IN (SELECT key FROM papers) GROUP BY key ORDER BY key"""
        )
        return [(key, json.loads(fields), datetime.fromisoformat(at)) for key, fields, at in rows]

    def learned_profiles(self) -> dict[str, tuple[str, bytes, float]]:
        """Each profile's learned model as stored: (fingerprint, float32 coefficients, intercept)."""
        rows = self._db.execute(
            "SELECT profile, fingerprint, coefficients, intercept FROM learned_profiles"
        )
        return {profile: (print_, blob, intercept) for profile, print_, blob, intercept in rows}

    def save_learned_profiles(
        self, models: Mapping[str, tuple[str, bytes, float]], at: datetime
    ) -> None:
        with self._transaction():
            self._db.executemany(
                """INSERT INTO learned_profiles VALUES (?, ?, ?, ?, ?)
                   ON CONFLICT (profile) DO UPDATE SET fingerprint = excluded.fingerprint,
                   coefficients = excluded.coefficients, intercept = excluded.intercept,
                   trained = excluded.trained""",
                [
                    (profile, print_, blob, intercept, at.isoformat())
                    for profile, (print_, blob, intercept) in models.items()
                ],
            )

    # -- problems that belong to no source ------------------------------------------------------

    def set_problem(self, part: str, problem: str | None, at: datetime) -> None:
        """Record (or, with None, clear) a problem of one part of the tool, for `digest status`."""
        with self._transaction():
            if problem is None:
                self._db.execute("DELETE FROM problems WHERE part = ?", (part,))
            else:
                self._db.execute(
                    """INSERT INTO problems VALUES (?, ?, ?) ON CONFLICT (part)
                       DO UPDATE SET problem = excluded.problem""",
                    (part, problem, at.isoformat()),
                )

    def problems(self) -> dict[str, tuple[str, datetime]]:
        rows = self._db.execute("SELECT part, problem, since FROM problems ORDER BY part")
        return {part: (problem, datetime.fromisoformat(since)) for part, problem, since in rows}

    # -- feedback -------------------------------------------------------------------------------

    def mark(self, profile: str, key: str, mark: str | None, at: datetime) -> None:
        """Record a person's mark on a paper ("more" or "less"); None takes it back."""
        with self._transaction():
            if mark is None:
                self._db.execute(
                    "DELETE FROM feedback WHERE profile = ? AND key = ?", (profile, key)
                )
            else:
                self._db.execute(
                    """INSERT INTO feedback (profile, key, mark, marked) VALUES (?, ?, ?, ?)
                       ON CONFLICT (profile, key) DO UPDATE SET mark = excluded.mark,
                       marked = excluded.marked""",
                    (profile, key, mark, at.isoformat()),
                )

    def feedback(self, profiles: Iterable[str] | None = None) -> dict[str, Feedback]:
        """Every profile's marks (or the named profiles'), oldest first; papers imported from a
        reader's library count as "more" marks."""
        rows = self._db.execute("SELECT profile, key, mark FROM feedback ORDER BY marked, key")
        wanted = set(profiles) if profiles is not None else None
        marks: dict[str, dict[str, list[str]]] = {}
        for profile, key, mark in rows:
            if wanted is None or profile in wanted:
                marks.setdefault(profile, {"more": [], "less": []})[mark].append(key)
        # An imported library counts as "more" marks, unless the reader marked the paper since.
        for profile, keys in self.library(wanted).items():
            profile_marks = marks.setdefault(profile, {"more": [], "less": []})
            marked = {*profile_marks["more"], *profile_marks["less"]}
            profile_marks["more"][:0] = [key for key in keys if key not in marked]
        return {
            profile: Feedback(more=tuple(m["more"]), less=tuple(m["less"]))
            for profile, m in marks.items()
        }

    # -- HTTP validators --------------------------------------------------------------------------

    def validators(self, url: str) -> tuple[str | None, str | None]:
        row = self._db.execute(
            "SELECT etag, last_modified FROM http_cache WHERE url = ?", (url,)
        ).fetchone()
        return (row[0], row[1]) if row else (None, None)

    def _save_validators(self, results: Iterable[FetchResult], seen_at: datetime) -> None:
        self._db.executemany(
            """INSERT INTO http_cache (url, etag, last_modified, updated) VALUES (?, ?, ?, ?)
               ON CONFLICT (url) DO UPDATE SET etag = excluded.etag,
               last_modified = excluded.last_modified, updated = excluded.updated""",
            [
                (r.url, r.etag, r.last_modified, seen_at.isoformat())
                for r in results
                if not r.unchanged and (r.etag or r.last_modified)
            ],
        )

    # -- runs -----------------------------------------------------------------------------------

    def begin_run(self, command: str, started: datetime) -> int:
        with self._transaction():
            cursor = self._db.execute(
                "INSERT INTO runs (command, started) VALUES (?, ?)", (command, started.isoformat())
            )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def finish_run(self, run_id: int, finished: datetime) -> None:
        with self._transaction():
            self._db.execute(
                "UPDATE runs SET finished = ? WHERE id = ?", (finished.isoformat(), run_id)
            )

    def record_source_run(self, run_id: int, run: SourceRun) -> None:
        with self._transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO source_runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    run.source,
                    run.started.isoformat(),
                    run.duration_s,
                    run.fetched,
                    run.parsed,
                    run.new,
                    run.status,
                    run.error,
                ),
            )

    def source_runs(self, source: str, limit: int = 20) -> list[SourceRun]:
        """A source's run history, newest first."""
        rows = self._db.execute(
            """SELECT source, started, duration_s, fetched, parsed, new, status, error
               FROM source_runs WHERE source = ? ORDER BY started DESC, run_id DESC LIMIT ?""",
            (source, limit),
        )
        return [_source_run(row) for row in rows]

    def source_runs_between(self, since: datetime, until: datetime) -> list[SourceRun]:
        """Every source's runs that started in [since, until), oldest first."""
        rows = self._db.execute(
            """SELECT source, started, duration_s, fetched, parsed, new, status, error
               FROM source_runs WHERE started >= ? AND started < ? ORDER BY started, run_id""",
            (since.isoformat(), until.isoformat()),
        )
        return [_source_run(row) for row in rows]

    # -- digests --------------------------------------------------------------------------------

    def save_digest(self, digest: Digest, channels: Iterable[str], now: datetime) -> Digest:
        """Store a composed digest and a pending ledger row per channel, in one transaction.

        A digest is composed once: when (profile, day) is already stored (another run was first),
        the stored one is kept and returned, so every channel delivers the same digest.
        """
        try:
            with self._transaction():
                return self._insert_digest(digest, channels, now)
        except sqlite3.Error as exc:
            raise StoreError(
                f"{self.path}: could not store the digest of {digest.profile} for {digest.day}: {exc}"
            ) from None

    def _insert_digest(self, digest: Digest, channels: Iterable[str], now: datetime) -> Digest:
        """The inside of save_digest(s), in the caller's transaction."""
        taken = self._db.execute(
            "SELECT 1 FROM digests WHERE profile = ? AND day = ?",
            (digest.profile, digest.day.isoformat()),
        ).fetchone()
        if taken is not None:
            existing = self._digest(digest.profile, digest.day)
            assert existing is not None
            return existing
        day = digest.day.isoformat()
        # The run's notes on its sources, stored once (migration 12); last_day keeps them from
        # retention as long as a digest names them.
        (sources_id,) = self._db.execute(
            """INSERT INTO digest_sources (sources, last_day) VALUES (?, ?)
               ON CONFLICT (sources) DO UPDATE SET last_day = max(last_day, excluded.last_day)
               RETURNING id""",
            (_JSON.encode([[n.source, n.status, n.error] for n in digest.sources]), day),
        ).fetchone()
        self._db.execute(
            """INSERT INTO digests (profile, day, timezone, since, until, scanned, sources_id, items)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?)""",
            (
                digest.profile,
                day,
                digest.timezone,
                digest.since.isoformat(),
                digest.until.isoformat(),
                digest.scanned,
                sources_id,
                _pack_items(digest.items),
            ),
        )
        self._db.execute(
            """INSERT INTO digest_heads VALUES (?, ?, ?)
               ON CONFLICT (profile) DO UPDATE SET day = excluded.day, until = excluded.until
               WHERE excluded.day > digest_heads.day""",
            (digest.profile, day, digest.until.isoformat()),
        )
        self._db.executemany(
            """INSERT INTO deliveries (profile, channel, day, status, updated)
               VALUES (?, ?, ?, 'pending', ?)""",
            [
                (digest.profile, channel, digest.day.isoformat(), now.isoformat())
                for channel in dict.fromkeys(channels)
            ],
        )
        return digest

    def digest(self, profile: str, day: date) -> Digest | None:
        return self._digest(profile, day)

    def digest_heads(self, profiles: Iterable[str] | None = None) -> dict[str, DigestHead]:
        """Every profile's latest digest (or those of `profiles`), its day and end only: what the
        schedule needs, in one query and without reading a digest's items."""
        if profiles is None:
            rows = self._db.execute("SELECT profile, day, until FROM digest_heads").fetchall()
        else:
            rows = []
            for chunk in _chunks(list(profiles)):
                rows += self._db.execute(
                    "SELECT profile, day, until FROM digest_heads WHERE profile IN "
                    f"({', '.join('?' * len(chunk))})",
                    chunk,
                ).fetchall()
        return {
            profile: DigestHead(profile, date.fromisoformat(day), datetime.fromisoformat(until))
            for profile, day, until in rows
        }

    def save_digests(
        self, composed: Sequence[tuple[Digest, Iterable[str]]], now: datetime
    ) -> list[Digest]:
        """Store many composed digests, each with a pending ledger row per channel, in ONE
        transaction (a run's hundreds of digests cost one commit, not one each). As save_digest:
        a (profile, day) already stored (another run was first) keeps the stored digest, which
        is returned in its place."""
        saved: list[Digest] = []
        try:
            with self._transaction():
                for digest, channels in composed:
                    saved.append(self._insert_digest(digest, channels, now))
        except sqlite3.Error as exc:
            raise StoreError(
                f"{self.path}: could not store {len(composed)} digests: {exc}"
            ) from None
        return saved

    def digests(
        self,
        profile: str,
        *,
        since_day: date | None = None,
        before_day: date | None = None,
        limit: int | None = None,
    ) -> list[Digest]:
        """A profile's stored digests, newest day first (of days >= since_day, < before_day)."""
        sql = f"{_DIGEST_SELECT} WHERE d.profile = ?"
        params: list[object] = [profile]
        if since_day is not None:
            sql += " AND d.day >= ?"
            params.append(since_day.isoformat())
        if before_day is not None:
            sql += " AND d.day < ?"
            params.append(before_day.isoformat())
        sql += " ORDER BY d.day DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return self._digests_from_rows(self._db.execute(sql, params).fetchall())

    def digests_for(self, pairs: Sequence[tuple[str, date]]) -> dict[tuple[str, date], Digest]:
        """Many stored digests, by (profile, day), in a few queries: the digest rows a few hundred
        at a time, then each paper they name once. Pairs with no stored digest are left out."""
        wanted = sorted({(profile, day.isoformat()) for profile, day in pairs})
        rows: list[tuple[Any, ...]] = []
        size = _CHUNK // 2  # two parameters a pair
        for start in range(0, len(wanted), size):
            chunk = wanted[start : start + size]
            # The pairs as a table joined to the digests' key (CROSS JOIN keeps it the outer
            # loop): a key look-up a pair, where `(profile, day) IN (...)` scans the table.
            sql = f"""WITH wanted (profile, day) AS (VALUES {', '.join(['(?, ?)'] * len(chunk))})
                      SELECT {_DIGEST_COLUMNS} FROM wanted w
                      CROSS JOIN digests d ON d.profile = w.profile AND d.day = w.day
                      LEFT JOIN digest_sources s ON s.id = d.sources_id"""
            rows += self._db.execute(sql, [value for pair in chunk for value in pair]).fetchall()
        return {(d.profile, d.day): d for d in self._digests_from_rows(rows)}

    def _digest(self, profile: str, day: date) -> Digest | None:
        row = self._db.execute(
            f"{_DIGEST_SELECT} WHERE d.profile = ? AND d.day = ?",
            (profile, day.isoformat()),
        ).fetchone()
        return self._digests_from_rows([row])[0] if row else None

    def _digests_from_rows(self, rows: Sequence[tuple[Any, ...]]) -> list[Digest]:
        """Digests from rows of _DIGEST_SELECT, in their order; their papers read once each. An
        item whose paper the store no longer holds is left out (as the join of old did)."""
        unpacked = [_unpack_items(row[-1]) for row in rows]
        papers = self._papers_by_key(key for items in unpacked for key, _, _ in items)
        notes: dict[str, tuple[SourceNote, ...]] = {}  # the same few texts for every digest
        found = []
        for (profile, day, timezone, since, until, scanned, sources, _), items in zip(
            rows, unpacked, strict=True
        ):
            if sources not in notes:
                notes[sources] = tuple(SourceNote(*note) for note in json.loads(sources))
            found.append(
                Digest(
                    profile=profile,
                    day=date.fromisoformat(day),
                    timezone=timezone,
                    since=datetime.fromisoformat(since),
                    until=datetime.fromisoformat(until),
                    scanned=scanned,
                    sources=notes[sources],
                    items=tuple(
                        ScoredPaper(papers[key], score, reasons)
                        for key, score, reasons in items
                        if key in papers
                    ),
                )
            )
        return found

    # -- personal feeds' readers ------------------------------------------------------------------

    def record_feed_reads(self, profiles: Iterable[str], at: datetime) -> None:
        """Mark these profiles' feeds as read at `at`, in ONE transaction (`digest serve`
        gathers a minute's reads); a mark never moves back in time."""
        from datetime import UTC

        stamp = at.astimezone(UTC).isoformat()
        rows = [(profile, stamp) for profile in profiles]
        if not rows:
            return
        try:
            with self._transaction():
                self._db.executemany(
                    """INSERT INTO feed_reads (profile, last_read) VALUES (?, ?)
                       ON CONFLICT (profile) DO UPDATE
                       SET last_read = max(last_read, excluded.last_read)""",
                    rows,
                )
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: could not record {len(rows)} feed reads: {exc}") from None

    def feed_readers(self, since: datetime) -> set[str]:
        """The profiles whose feed was read at `since` or later."""
        from datetime import UTC

        rows = self._db.execute(
            "SELECT profile FROM feed_reads WHERE last_read >= ?",
            (since.astimezone(UTC).isoformat(),),
        )
        return {profile for (profile,) in rows}

    # -- subscribers ------------------------------------------------------------------------------

    def unsubscribe(self, profile: str, address: str, at: datetime) -> bool:
        """Stop mailing `address` for `profile`; False when it had already unsubscribed."""
        with self._transaction():
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO unsubscribed (profile, address, at) VALUES (?, ?, ?)",
                (profile, address.lower(), at.isoformat()),
            )
        return cursor.rowcount == 1

    def is_unsubscribed(self, profile: str, address: str) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM unsubscribed WHERE profile = ? AND address = ?",
            (profile, address.lower()),
        ).fetchone()
        return row is not None

    def resubscribe(self, profile: str, address: str) -> None:
        """Take back an unsubscribe (the person confirmed a new subscription)."""
        with self._transaction():
            self._db.execute(
                "DELETE FROM unsubscribed WHERE profile = ? AND address = ?",
                (profile, address.lower()),
            )

    def subscriber(self, profile: str) -> Subscriber | None:
        rows = self._subscribers("WHERE s.profile = ?", (profile,))
        return rows[0] if rows else None

    def subscriber_by_address(self, address: str) -> Subscriber | None:
        rows = self._subscribers("WHERE s.address = ?", (address.lower(),))
        return rows[0] if rows else None

    def subscribers(self, status: str | None = None) -> list[Subscriber]:
        """Web subscribers, oldest first; with `status`, only those in it."""
        if status is None:
            return self._subscribers("", ())
        return self._subscribers("WHERE s.status = ?", (status,))

    def _subscribers(self, where: str, parameters: tuple[Any, ...]) -> list[Subscriber]:
        rows = self._db.execute(
            f"""SELECT s.profile, s.address, s.interests, s.status, s.created, s.updated,
                       s.confirmed, u.at IS NOT NULL
                FROM subscribers s
                LEFT JOIN unsubscribed u ON u.profile = s.profile AND u.address = s.address
                {where} ORDER BY s.created, s.profile""",
            parameters,
        )
        return [
            Subscriber(
                profile=profile,
                address=address,
                interests=_interests_from_json(interests),
                status=status,
                created=datetime.fromisoformat(created),
                updated=datetime.fromisoformat(updated),
                confirmed=datetime.fromisoformat(confirmed) if confirmed else None,
                unsubscribed=bool(unsubscribed),
            )
            for profile, address, interests, status, created, updated, confirmed, unsubscribed in rows
        ]

    def save_subscriber(self, subscriber: Subscriber) -> None:
        """Insert or replace a web subscriber (its unsubscribe state is kept apart)."""
        with self._transaction():
            self._db.execute(
                """INSERT INTO subscribers
                       (profile, address, interests, status, created, updated, confirmed)
                   VALUES (?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (profile) DO UPDATE SET address = excluded.address,
                       interests = excluded.interests, status = excluded.status,
                       updated = excluded.updated, confirmed = excluded.confirmed""",
                (
                    subscriber.profile,
                    subscriber.address.lower(),
                    json.dumps(asdict(subscriber.interests), ensure_ascii=False),
                    subscriber.status,
                    subscriber.created.isoformat(),
                    subscriber.updated.isoformat(),
                    subscriber.confirmed.isoformat() if subscriber.confirmed else None,
                ),
            )

    def confirmation_mails_since(
        self, since: datetime, address: str | None = None, network: str | None = None
    ) -> int:
        """How many confirmation mails were sent since `since` (to `address`, or asked for from
        `network`, or all of them)."""
        where, parameters = "at >= ?", [since.isoformat()]
        if address is not None:
            where, parameters = where + " AND address = ?", [*parameters, address.lower()]
        if network is not None:
            where, parameters = where + " AND network = ?", [*parameters, network]
        row = self._db.execute(f"SELECT count(*) FROM confirmation_mails WHERE {where}", parameters)
        return int(row.fetchone()[0])

    def oldest_confirmation_mail_since(self, since: datetime) -> datetime | None:
        row = self._db.execute(
            "SELECT min(at) FROM confirmation_mails WHERE at >= ?", (since.isoformat(),)
        ).fetchone()
        return datetime.fromisoformat(row[0]) if row[0] else None

    def record_confirmation_mail(self, address: str, at: datetime, network: str = "") -> None:
        with self._transaction():
            # Rows older than a week count for no limit; drop them as we go.
            self._db.execute(
                "DELETE FROM confirmation_mails WHERE at < ?",
                ((at - timedelta(days=7)).isoformat(),),
            )
            self._db.execute(
                "INSERT INTO confirmation_mails (address, at, network) VALUES (?, ?, ?)",
                (address.lower(), at.isoformat(), network),
            )

    # -- short links ----------------------------------------------------------------------------

    def save_short_links(self, links: Mapping[str, str], at: datetime) -> None:
        """Keep code -> path (a code is made from its path, so a code already kept is the same)."""
        with self._transaction():
            self._db.executemany(
                "INSERT OR IGNORE INTO short_links (code, target, created) VALUES (?, ?, ?)",
                [(code, target, at.isoformat()) for code, target in links.items()],
            )

    def short_link(self, code: str) -> str | None:
        row = self._db.execute("SELECT target FROM short_links WHERE code = ?", (code,)).fetchone()
        return str(row[0]) if row else None

    # -- sign-ups waiting for their mail --------------------------------------------------------

    def queue_signup(self, request: SignupRequest) -> None:
        with self._transaction():
            self._db.execute(
                """INSERT INTO signup_requests
                       (network, address, interests, library, library_name, received, not_before)
                   VALUES (?, ?, ?, ?, ?, ?, ?)""",
                (
                    request.network,
                    request.address.lower(),
                    json.dumps(asdict(request.interests), ensure_ascii=False),
                    request.library,
                    request.library_name,
                    request.received.isoformat(),
                    request.received.isoformat(),
                ),
            )

    def signups_waiting(self, network: str | None = None) -> int:
        """Sign-ups whose mail is not sent yet (from `network`, or from anywhere)."""
        if network is None:
            row = self._db.execute("SELECT count(*) FROM signup_requests").fetchone()
        else:
            row = self._db.execute(
                "SELECT count(*) FROM signup_requests WHERE network = ?", (network,)
            ).fetchone()
        return int(row[0])

    def claim_signup(self, now: datetime, lease: timedelta, fair_since: datetime) -> SignupRequest | None:
        """The next sign-up to handle, leased to the caller until now + lease (a worker that dies
        leaves it to another after that). Fair: the network with the fewest mails since
        `fair_since` goes first, so one network's flood does not hold back everyone else's."""
        with self._transaction():
            row = self._db.execute(
                """SELECT r.id, r.network, r.address, r.interests, r.library, r.library_name,
                          r.received, r.attempts
                   FROM signup_requests r
                   WHERE r.not_before <= ?
                   ORDER BY (SELECT count(*) FROM confirmation_mails m
                             WHERE m.network = r.network AND m.at >= ?), r.id
                   LIMIT 1""",
                (now.isoformat(), fair_since.isoformat()),
            ).fetchone()
            if row is None:
                return None
            self._db.execute(
                "UPDATE signup_requests SET not_before = ?, attempts = attempts + 1 WHERE id = ?",
                ((now + lease).isoformat(), row[0]),
            )
        number, network, address, interests, library, library_name, received, attempts = row
        return SignupRequest(
            network=network,
            address=address,
            interests=_interests_from_json(interests),
            received=datetime.fromisoformat(received),
            library=library,
            library_name=library_name,
            id=number,
            attempts=attempts + 1,
        )

    def retry_signup(self, number: int, not_before: datetime) -> None:
        with self._transaction():
            self._db.execute(
                "UPDATE signup_requests SET not_before = ? WHERE id = ?", (not_before.isoformat(), number)
            )

    def finish_signup(self, number: int) -> None:
        with self._transaction():
            self._db.execute("DELETE FROM signup_requests WHERE id = ?", (number,))

    # -- the delivery ledger --------------------------------------------------------------------

    def deliveries(
        self,
        *,
        profile: str | None = None,
        day: date | None = None,
        statuses: Iterable[str] | None = None,
    ) -> list[Delivery]:
        """Ledger rows, oldest day first, filtered by profile, day and status."""
        where, params = [], []
        if profile is not None:
            where.append("profile = ?")
            params.append(profile)
        if day is not None:
            where.append("day = ?")
            params.append(day.isoformat())
        if statuses is not None:
            wanted = list(statuses)
            where.append(f"status IN ({', '.join('?' * len(wanted))})")
            params += wanted
        sql = "SELECT profile, channel, day, status, attempts, updated, error, message_id FROM deliveries"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY day, profile, channel"
        return [
            Delivery(
                profile=r[0],
                channel=r[1],
                day=date.fromisoformat(r[2]),
                status=r[3],
                attempts=r[4],
                updated=datetime.fromisoformat(r[5]),
                error=r[6],
                message_id=r[7],
            )
            for r in self._db.execute(sql, params)
        ]

    def claim(
        self,
        delivery: Delivery,
        claimant: str,
        now: datetime,
        *,
        stale_before: datetime,
        quarantined_before: datetime | None = None,
    ) -> bool:
        """Take one delivery for this run; False when it is sent, given up, or another run has it.

        A row another run claimed before `stale_before` counts as abandoned (that run crashed).
        An 'uncertain' row (handed over, no answer) is taken only when its last try was before
        `quarantined_before`; without it, never. The claim clears the row's Message-ID: it is
        written again by `handing_over`, just before this try's message goes.
        """
        return self.claim_many(
            [delivery], claimant, now, stale_before=stale_before,
            quarantined_before=quarantined_before,
        )[0]

    def claim_many(
        self,
        deliveries: Sequence[Delivery],
        claimant: str,
        now: datetime,
        *,
        stale_before: datetime,
        quarantined_before: datetime | None = None,
    ) -> list[bool]:
        """`claim` for many rows in ONE transaction (one commit for a batch of messages, not one
        a message): for each row, whether this run got it."""
        quarantine = None if quarantined_before is None else quarantined_before.isoformat()
        got = []
        with self._transaction():
            for delivery in deliveries:
                cursor = self._db.execute(
                    """UPDATE deliveries SET status = 'sending', claimed_by = ?, updated = ?,
                       attempts = attempts + 1, message_id = NULL
                       WHERE profile = ? AND channel = ? AND day = ?
                       AND (status IN ('pending', 'deferred')
                            OR (status = 'sending' AND updated < ?)
                            OR (status = 'uncertain' AND ? IS NOT NULL AND updated < ?))""",
                    (
                        claimant, now.isoformat(), delivery.profile, delivery.channel,
                        delivery.day.isoformat(), stale_before.isoformat(), quarantine, quarantine,
                    ),
                )
                got.append(cursor.rowcount == 1)
        return got

    def settle_many(self, outcomes: Sequence[Outcome], claimant: str, now: datetime) -> None:
        """`settle` for many claimed rows in one transaction."""
        if outcomes:
            with self._transaction():
                self._settle_all(outcomes, claimant, now)

    def _settle_all(self, outcomes: Sequence[Outcome], claimant: str, now: datetime) -> None:
        self._db.executemany(
            """UPDATE deliveries SET status = ?, updated = ?, error = ?,
               message_id = coalesce(?, message_id), claimed_by = NULL
               WHERE profile = ? AND channel = ? AND day = ? AND claimed_by = ?""",
            [
                (
                    outcome.status, now.isoformat(), outcome.error, outcome.message_id,
                    outcome.row.profile, outcome.row.channel, outcome.row.day.isoformat(),
                    claimant,
                )
                for outcome in outcomes
            ],
        )

    def release_many(
        self, deliveries: Sequence[Delivery], claimant: str, now: datetime, *, error: str | None
    ) -> None:
        """`release` for many claimed rows in one transaction."""
        if not deliveries:
            return
        with self._transaction():
            self._db.executemany(
                """UPDATE deliveries SET status = 'pending', updated = ?, error = ?,
                   attempts = max(attempts - 1, 0), claimed_by = NULL
                   WHERE profile = ? AND channel = ? AND day = ? AND claimed_by = ?""",
                [
                    (now.isoformat(), error, d.profile, d.channel, d.day.isoformat(), claimant)
                    for d in deliveries
                ],
            )

    def handing_over(
        self,
        delivery: Delivery,
        claimant: str,
        now: datetime,
        message_id: str,
        settled: Sequence[Outcome] = (),
    ) -> None:
        """Record, before a claimed delivery's message goes, that it is going: a run killed from
        here on may have handed it over (see `abandoned_hand_overs`). The outcomes of the
        messages before it (`settled`) are written in the same transaction: one commit a message,
        and a run killed at any moment leaves at most this one handed over and not settled."""
        with self._transaction():
            self._settle_all(settled, claimant, now)
            self._db.execute(
                """UPDATE deliveries SET updated = ?, message_id = ?
                   WHERE profile = ? AND channel = ? AND day = ? AND claimed_by = ?
                   AND status = 'sending'""",
                (
                    now.isoformat(),
                    message_id,
                    delivery.profile,
                    delivery.channel,
                    delivery.day.isoformat(),
                    claimant,
                ),
            )

    def abandoned_hand_overs(
        self, stale_before: datetime, error: str, *, kind: str = "mail"
    ) -> list[Delivery]:
        """Rows of a channel `kind` ("mail", "slack", ...) a run claimed before `stale_before` and
        stopped with (killed) while handing their message over (`handing_over`): it may have
        arrived, so they become 'uncertain', dated from the hand-over, instead of being sent
        again. The rows, as they are now."""
        with self._transaction():
            found = self._db.execute(
                """SELECT profile, channel, day FROM deliveries
                   WHERE status = 'sending' AND message_id IS NOT NULL AND updated < ?
                   AND substr(channel, 1, ?) = ?""",
                (stale_before.isoformat(), len(kind) + 1, kind + ":"),
            ).fetchall()
            self._db.executemany(
                """UPDATE deliveries SET status = 'uncertain', error = ?, claimed_by = NULL
                   WHERE profile = ? AND channel = ? AND day = ? AND status = 'sending'""",
                [(error, *row) for row in found],
            )
        keys = set(map(tuple, found))
        return [
            row
            for row in self.deliveries(statuses=["uncertain"])
            if (row.profile, row.channel, row.day.isoformat()) in keys
        ]

    def release(
        self, delivery: Delivery, claimant: str, now: datetime, *, error: str | None = None
    ) -> None:
        """Give a claimed delivery back untried ('pending', its try not counted): the channel
        stopped before its message could go (circuit breaker, deadline)."""
        self.release_many([delivery], claimant, now, error=error)

    def settle(
        self,
        delivery: Delivery,
        claimant: str,
        status: str,
        now: datetime,
        *,
        error: str | None = None,
        message_id: str | None = None,
    ) -> None:
        """Record how a claimed delivery ended: sent, deferred, failed, skipped or uncertain."""
        self.settle_many([Outcome(delivery, status, error, message_id)], claimant, now)


    def settle_uncertain(self, status: str, now: datetime, profile: str | None = None) -> int:
        """A person's word on the uncertain deliveries (of `profile`, or all): "sent" (it
        arrived) or "pending" (it did not: the next run sends it). How many rows changed."""
        if status not in ("sent", "pending"):
            raise ValueError(f"an uncertain delivery becomes sent or pending, not {status!r}")
        said = "a person said it arrived" if status == "sent" else "a person asked to send it again"
        where, parameters = "status = 'uncertain'", []
        if profile is not None:
            where, parameters = where + " AND profile = ?", [profile]
        with self._transaction():
            cursor = self._db.execute(
                f"UPDATE deliveries SET status = ?, updated = ?, error = ? WHERE {where}",
                [status, now.isoformat(), said, *parameters],
            )
        return cursor.rowcount

    # -- retention ------------------------------------------------------------------------------

    def prune(self, before: datetime | date, now: datetime) -> PruneReport:
        """Delete what is older than `before`: the digests of earlier days with their items and
        ledger rows, runs and their source runs, HTTP validators not renewed since, short links
        made for mails of earlier days, and the sources' notes no digest kept names. Idempotent.

        Never what an unfinished delivery needs: a digest with a ledger row still pending,
        sending, deferred or uncertain is kept, items and rows, however old (checked again in
        each batch's transaction, so a row that changed meanwhile counts as it is then). Papers
        (and their history, marks, vectors and old keys) are never pruned: identifying a new sighting
        compares it with every paper ever seen, so a paper forgotten would come back as new. Each
        source keeps its newest KEEP_SOURCE_RUNS runs, however old, for its health and status.

        Digests go PRUNE_BATCH at a time, each batch in one transaction, so a first prune of a
        large store never holds the write lock for long; runs, validators and links go in the
        last one, with the time of this prune.
        """
        from datetime import UTC

        cutoff = (
            before.astimezone(UTC)
            if isinstance(before, datetime)
            else datetime.combine(before, datetime.min.time(), tzinfo=UTC)
        )
        cutoff_day, cutoff_at = cutoff.date().isoformat(), cutoff.isoformat()
        unfinished = ", ".join("?" * len(UNFINISHED_DELIVERIES))
        counts = dict.fromkeys(("digests", "ledger", "kept"), 0)
        after: tuple[str, str] = ("", "")  # (day, profile) of the last digest looked at
        try:
            while True:
                with self._transaction():
                    old = self._db.execute(
                        f"""SELECT d.day, d.profile, EXISTS (SELECT 1 FROM deliveries l
                                WHERE l.profile = d.profile AND l.day = d.day
                                AND l.status IN ({unfinished}))
                            FROM digests d WHERE d.day < ? AND (d.day, d.profile) > (?, ?)
                            ORDER BY d.day, d.profile LIMIT ?""",
                        (*UNFINISHED_DELIVERIES, cutoff_day, *after, PRUNE_BATCH),
                    ).fetchall()
                    doomed = [(profile, day) for day, profile, owed in old if not owed]
                    # Ledger rows first (for the count); deleting a digest would cascade to them.
                    counts["ledger"] += self._db.executemany(
                        "DELETE FROM deliveries WHERE profile = ? AND day = ?", doomed
                    ).rowcount
                    counts["digests"] += self._db.executemany(
                        "DELETE FROM digests WHERE profile = ? AND day = ?", doomed
                    ).rowcount
                    counts["kept"] += len(old) - len(doomed)
                if len(old) < PRUNE_BATCH:
                    break
                after = (old[-1][0], old[-1][1])
            with self._transaction():
                source_runs = 0
                sources = [row[0] for row in self._db.execute("SELECT DISTINCT source FROM source_runs")]
                for source in sources:
                    kept = self._db.execute(
                        """SELECT started FROM source_runs WHERE source = ?
                           ORDER BY started DESC LIMIT 1 OFFSET ?""",
                        (source, KEEP_SOURCE_RUNS - 1),
                    ).fetchone()
                    if kept is not None:
                        source_runs += self._db.execute(
                            "DELETE FROM source_runs WHERE source = ? AND started < ?",
                            (source, min(kept[0], cutoff_at)),
                        ).rowcount
                runs = self._db.execute(
                    """DELETE FROM runs WHERE started < ?
                       AND NOT EXISTS (SELECT 1 FROM source_runs s WHERE s.run_id = runs.id)""",
                    (cutoff_at,),
                ).rowcount
                # A URL's validators are renewed when it answers with new content; one that has
                # not for this long is fetched in full once, then remembered again.
                validators = self._db.execute(
                    "DELETE FROM http_cache WHERE updated < ?", (cutoff_at,)
                ).rowcount
                # Sources' notes no digest of the cutoff day or later names (last_day), nor an
                # older one kept for an unfinished delivery (few, found by their day).
                self._db.execute(
                    """DELETE FROM digest_sources WHERE last_day < ?1 AND id NOT IN
                       (SELECT sources_id FROM digests WHERE day < ?1 AND sources_id IS NOT NULL)""",
                    (cutoff_day,),
                )
            # A short link is kept from the mail that first carried it (digest.until). A
            # feedback link names one paper of one profile's digest, and a digest's feedback
            # code (/digest-links/DAY/PROFILE) that digest, so each is carried by its mail alone; manage and unsubscribe links are the same in every mail to an
            # address, so their first mail's date says nothing: they are kept (one of each per
            # address), and an old mail's unsubscribe link always works. In batches as well: a
            # busy day's mails hold a million links.
            links, batch = 0, PRUNE_BATCH * 20
            while True:
                with self._transaction():
                    deleted = self._db.execute(
                        """DELETE FROM short_links WHERE code IN (
                               SELECT code FROM short_links WHERE created < ?
                               AND (substr(target, 1, 10) = '/feedback/'
                                    OR substr(target, 1, 14) = '/digest-links/') LIMIT ?)""",
                        (cutoff_at, batch),
                    ).rowcount
                links += deleted
                if deleted < batch:
                    break
            with self._transaction():
                self._db.execute("DELETE FROM store_sizes WHERE day < ?", (cutoff_day,))
                self._set_meta("pruned_at", now.isoformat())
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: could not prune the store: {_locked_hint(exc)}") from None
        return PruneReport(
            before=cutoff.date(),
            digests=counts["digests"],
            deliveries=counts["ledger"],
            runs=runs,
            source_runs=source_runs,
            http_validators=validators,
            short_links=links,
            kept_unfinished=counts["kept"],
        )

    def meta(self, key: str) -> str | None:
        """A small fact about the store itself (e.g. "pruned_at"), or None."""
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else None

    def set_meta(self, key: str, value: str | None) -> None:
        """Keep a small fact about the store (None: forget it)."""
        with self._transaction():
            if value is None:
                self._db.execute("DELETE FROM meta WHERE key = ?", (key,))
            else:
                self._set_meta(key, value)

    def quiet_facts(self) -> tuple[bool, datetime | None, str, str]:
        """What an idle run checks (digest.quiet), a few index look-ups: whether a delivery is
        open (pending, deferred or sending), when the oldest uncertain one was tried, the newest
        paper's first sighting, and the count of changes to the web subscribers."""
        open_rows = self._db.execute(
            "SELECT EXISTS (SELECT 1 FROM deliveries WHERE status IN ('pending', 'deferred', 'sending'))"
        ).fetchone()[0]
        uncertain = self._db.execute(
            "SELECT min(updated) FROM deliveries WHERE status = 'uncertain'"
        ).fetchone()[0]
        newest = self._db.execute("SELECT max(first_seen) FROM papers").fetchone()[0]
        return (
            bool(open_rows),
            datetime.fromisoformat(uncertain) if uncertain else None,
            str(newest or ""),
            self.meta("subscribers_changed") or "",
        )

    def _set_meta(self, key: str, value: str) -> None:
        self._db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def size(self) -> StoreSize:
        """The store's size now: its file and -wal on disk, and the bytes of the pages in use."""
        page_size = self._db.execute("PRAGMA page_size").fetchone()[0]
        pages = self._db.execute("PRAGMA page_count").fetchone()[0]
        free = self._db.execute("PRAGMA freelist_count").fetchone()[0]
        return StoreSize(
            file_bytes=_file_size(self.path),
            wal_bytes=_file_size(self.path.with_name(self.path.name + "-wal")),
            used_bytes=(pages - free) * page_size,
        )

    def kept_counts(self) -> tuple[int, int]:
        """How many digests and ledger rows the store holds (a count over each: not cheap)."""
        digests = self._db.execute("SELECT count(*) FROM digests").fetchone()[0]
        ledger = self._db.execute("SELECT count(*) FROM deliveries").fetchone()[0]
        return int(digests), int(ledger)

    def record_size(self, now: datetime) -> SizeSample:
        """Keep today's (UTC) sample of the store's size and counts, for its growth."""
        from datetime import UTC

        size = self.size()
        digests, ledger = self.kept_counts()
        sample = SizeSample(
            day=now.astimezone(UTC).date(),
            used_bytes=size.used_bytes,
            file_bytes=size.file_bytes + size.wal_bytes,
            digests=digests,
            deliveries=ledger,
        )
        with self._transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO store_sizes VALUES (?, ?, ?, ?, ?)",
                (sample.day.isoformat(), sample.used_bytes, sample.file_bytes, digests, ledger),
            )
        return sample

    def size_samples(self, since: date) -> list[SizeSample]:
        """The daily size samples from `since` on, oldest first."""
        rows = self._db.execute(
            "SELECT day, used_bytes, file_bytes, digests, deliveries FROM store_sizes "
            "WHERE day >= ? ORDER BY day",
            (since.isoformat(),),
        )
        return [SizeSample(date.fromisoformat(row[0]), *row[1:]) for row in rows]

    def unfinished_runs(self, since: datetime) -> list[datetime]:
        """When the runs that started since `since` and have not finished started (a run still
        going, or one that was killed)."""
        from datetime import UTC

        rows = self._db.execute(
            "SELECT started FROM runs WHERE finished IS NULL AND started >= ? ORDER BY started",
            (since.astimezone(UTC).isoformat(),),
        )
        return [datetime.fromisoformat(row[0]) for row in rows]

    @contextmanager
    def patience(self, seconds: float) -> Iterator[None]:
        """Within it, wait at most `seconds` for another process holding the write lock (30 s,
        the store's own patience, otherwise): a command a person waits for says so sooner."""
        self._db.execute(f"PRAGMA busy_timeout = {int(seconds * 1000)}")
        try:
            yield
        finally:
            self._db.execute("PRAGMA busy_timeout = 30000")

    def vacuum(self) -> None:
        """Rewrite the file without its free pages (SQLite VACUUM), then fold the -wal back into
        it and truncate it. Waits a few seconds at most for a job writing to the store."""
        try:
            with self.patience(5):
                self._db.execute("VACUUM")
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: could not vacuum the store: {_locked_hint(exc)}") from None


# What a delivery still owes: retention keeps its digest, items and ledger rows, whatever its age.
UNFINISHED_DELIVERIES = ("pending", "sending", "deferred", "uncertain")
# Each source's newest runs, kept however old: its health and `digest status` read this many.
KEEP_SOURCE_RUNS = 50
PRUNE_BATCH = 5000  # digests looked at in one transaction of a prune


@dataclass(frozen=True, slots=True)
class PruneReport:
    """What one `Store.prune` deleted, per table, and the old digests it kept."""

    before: date
    digests: int = 0  # with their items, packed in their rows
    deliveries: int = 0
    runs: int = 0
    source_runs: int = 0
    http_validators: int = 0
    short_links: int = 0
    kept_unfinished: int = 0  # digests older than `before` an unfinished delivery still needs

    @property
    def removed(self) -> int:
        return (
            self.digests + self.deliveries + self.runs + self.source_runs
            + self.http_validators + self.short_links
        )

    def line(self) -> str:
        """One line for the log and the terminal."""
        text = (
            f"pruned what is older than {self.before.isoformat()}: "
            f"{_counted(self.digests, 'digest')} ({_counted(self.deliveries, 'ledger row')}), "
            f"{_counted(self.runs, 'run')} "
            f"({_counted(self.source_runs, 'source run')}), "
            f"{_counted(self.http_validators, 'HTTP validator')}, "
            f"{_counted(self.short_links, 'short link')}"
        )
        if self.kept_unfinished:
            text += (
                f"; kept {_counted(self.kept_unfinished, 'older digest')} an unfinished "
                "delivery needs"
            )
        return text


def _counted(count: int, thing: str) -> str:
    return f"{count:,} {thing}" + ("" if count == 1 else "s")


@dataclass(frozen=True, slots=True)
class StoreSize:
    file_bytes: int  # the database file
    wal_bytes: int  # its -wal beside it
    used_bytes: int  # pages in use, free pages not counted

    @property
    def total_bytes(self) -> int:
        return self.file_bytes + self.wal_bytes


@dataclass(frozen=True, slots=True)
class SizeSample:
    day: date  # UTC
    used_bytes: int
    file_bytes: int
    digests: int
    deliveries: int


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _statements(script: str) -> Iterator[str]:
    """A migration's statements, one by one (a trigger's body holds semicolons of its own)."""
    statement = ""
    for line in script.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            yield statement
            statement = ""
    if statement.strip():
        yield statement


def _locked_hint(exc: sqlite3.Error) -> str:
    text = str(exc)
    if "locked" in text or "busy" in text:
        return f"{text} (a running `digest run` or `digest schedule` is using it: try again when it is done)"
    return text


def _while_locked(statement: Callable[[], object], patience_s: float = 30.0) -> None:
    """Run a statement SQLite's busy timeout does not cover (switching to WAL), retrying while
    another process holds the file: two runs starting at once on a new store both get in."""
    waited, pause = 0.0, 0.01
    while True:
        try:
            statement()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or waited >= patience_s:
                raise
        time.sleep(pause)
        waited += pause
        pause = min(pause * 2, 0.5)


class _Index:
    """The papers one ingest may touch, findable by key, DOI and normalised title."""

    def __init__(self, papers: Iterable[Paper]) -> None:
        self.by_key: dict[str, Paper] = {}
        self.by_doi: dict[str, str] = {}
        self.by_title: dict[str, str] = {}
        for paper in papers:
            self.add(paper)

    def add(self, paper: Paper) -> None:
        self.by_key[paper.key] = paper
        if paper.doi:
            self.by_doi[paper.doi] = paper.key
        title = normalize_title(paper.title)
        current = self.by_title.get(title)
        # For a title shared by several papers, prefer the one with the best key (an id over a title).
        if current is None or current not in self.by_key or key_rank(paper.key) < key_rank(current):
            self.by_title[title] = paper.key

    def forget(self, paper: Paper) -> None:
        self.by_key.pop(paper.key, None)

    def find(self, record: Record) -> Paper | None:
        candidates = [paper_key(record)]
        if record.doi:
            candidates.append(self.by_doi.get(normalize_doi(record.doi), ""))
        title_key = self.by_title.get(normalize_title(record.title), "")
        if not (record.arxiv_id or record.doi) or is_title_key(title_key):
            # A listing without ids matches by title; a listing with ids only claims title-keyed papers.
            candidates.append(title_key)
        for key in candidates:
            paper = self.by_key.get(key)
            if paper is not None:
                return paper
        return None


def _chunks(values: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


_paper_data = operator.attrgetter(*_DATA_FIELDS)
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _to_row(paper: Paper) -> tuple[Any, ...]:
    # The hot path of an ingest: plain loops, empty values left out, tuples written as JSON arrays.
    data: dict[str, Any] = {}
    for name, value in zip(_DATA_FIELDS, _paper_data(paper), strict=True):
        if value is None or value == "" or value == ():
            continue
        data[name] = value.isoformat() if isinstance(value, date) else value
    return (
        paper.key,
        paper.arxiv_id,
        paper.doi,
        paper.title,
        normalize_title(paper.title),
        paper.first_seen.isoformat(),
        paper.first_source,
        paper.first_listing,
        paper.published.isoformat() if paper.published else None,
        paper.listed.isoformat() if paper.listed else None,
        paper.abstract,
        _JSON.encode(data),
    )


# What a paper's history keeps when a sighting replaces it: every stored fact but the volatile ones
# (upvotes and the like change daily: they are no correction) and the bookkeeping (key, sources,
# first sighting). The authority is kept with them: the kind of source the old values came from.
_HISTORY_FIELDS = tuple(
    name for name in (*PAPER_DATA_FIELDS, "authority") if name not in VOLATILE_FIELDS
)
_history_data = operator.attrgetter(*_HISTORY_FIELDS)


def _replaced(before: Paper, after: Paper) -> dict[str, Any]:
    """The stored values `after` replaced (empty fields filled in replace nothing), as JSON values;
    nothing when only the authority moved (a more trusted source said the same)."""
    replaced: dict[str, Any] = {}
    for name, old, new in zip(
        _HISTORY_FIELDS, _history_data(before), _history_data(after), strict=True
    ):
        if old != new and old is not None and old != "" and old != ():
            replaced[name] = old.isoformat() if isinstance(old, date) else old
    if replaced.keys() <= {"authority"}:
        return {}
    return replaced


def _typed(values: dict[str, Any]) -> dict[str, Any]:
    """JSON values back as Paper holds them: lists as tuples, dates and datetimes parsed."""
    for name, value in values.items():
        if isinstance(value, list):
            values[name] = tuple(value)
        elif name in _DATETIME_FIELDS:
            values[name] = datetime.fromisoformat(value)
        elif name == "listed":
            values[name] = date.fromisoformat(value)
    return values


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a claimed delivery ended, to be written to the ledger (see Store.settle_many)."""

    row: Delivery
    status: str  # sent, deferred, failed, skipped or uncertain
    error: str | None = None
    message_id: str | None = None


@functools.lru_cache(maxsize=8192)
def _stored_paper(row: tuple[Any, ...]) -> Paper:
    """A paper read as part of a digest: the same stored row gives the same (immutable) Paper,
    so a run reading 10,000 digests of the same 500 papers decodes each once and holds it once.
    Keyed on the whole row, so a paper changed since is decoded anew."""
    return _from_row(row)


def _from_row(row: Sequence[Any]) -> Paper:
    (
        key,
        arxiv_id,
        doi,
        title,
        _title_norm,
        first_seen,
        first_source,
        first_listing,
        published,
        listed,
        abstract,
        data_json,
    ) = row
    values: dict[str, Any] = json.loads(data_json)
    for name, value in values.items():
        if name in _TUPLE_FIELDS:
            values[name] = tuple(value)
        elif name in _DATETIME_FIELDS:
            values[name] = datetime.fromisoformat(value)
    return Paper(
        key=key,
        arxiv_id=arxiv_id,
        doi=doi,
        title=title,
        first_seen=datetime.fromisoformat(first_seen),
        first_source=first_source,
        first_listing=first_listing,
        published=datetime.fromisoformat(published) if published else None,
        listed=date.fromisoformat(listed) if listed else None,
        abstract=abstract,
        **values,
    )


def _source_run(row: Sequence[Any]) -> SourceRun:
    source, started, duration_s, fetched, parsed, new, status, error = row
    return SourceRun(
        source=source,
        started=datetime.fromisoformat(started),
        duration_s=duration_s,
        fetched=fetched,
        parsed=parsed,
        new=new,
        status=status,
        error=error,
    )


def _interests_from_json(text: str) -> Interests:
    values: dict[str, Any] = json.loads(text)
    known = {f.name for f in fields(Interests)}  # a field added later falls back to its default
    chosen: dict[str, Any] = {
        k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in known
    }
    return Interests(**chosen)


# Reasons' fields and their defaults: a packed item leaves out the fields at their default.
_REASON_DEFAULTS = tuple((f.name, f.default) for f in fields(Reasons))
_REASON_NAMES = frozenset(name for name, _ in _REASON_DEFAULTS)


def _packed_reasons(reasons: Reasons) -> dict[str, Any]:
    """Reasons as a JSON object without the fields at their default. "At its default" is exact:
    the same type and the same text (0 is not 0.0, -0.0 is not 0.0), so a round trip gives
    back what was stored."""
    packed: dict[str, Any] = {}
    for name, default in _REASON_DEFAULTS:
        value = getattr(reasons, name)
        if value == default and type(value) is type(default) and repr(value) == repr(default):
            continue
        packed[name] = value
    return packed


def _reasons_from(values: dict[str, Any]) -> Reasons:
    """Reasons from their JSON object (packed, or every field as digest_items held them)."""
    known: dict[str, Any] = {}
    for name, value in values.items():
        if name not in _REASON_NAMES:
            continue  # written by a newer paperdigest
        if name == "parts":
            known[name] = tuple((label, part) for label, part in value)
        elif isinstance(value, list):
            known[name] = tuple(value)
        else:
            known[name] = value
    return Reasons(**known)


def _pack_items(items: Sequence[ScoredPaper]) -> bytes:
    """A digest's items as digests.items holds them (migration 12 says why this layout)."""
    text = _JSON.encode(
        [[item.paper.key, item.score, _packed_reasons(item.reasons)] for item in items]
    )
    return zlib.compress(text.encode(), 9)


def _unpack_items(blob: bytes | None) -> list[tuple[str, float, Reasons]]:
    """(paper key, score, reasons) of each item, in order; an item's elements after these three
    (a newer paperdigest's) are ignored."""
    if not blob:
        return []
    return [
        (item[0], item[1], _reasons_from(item[2])) for item in json.loads(zlib.decompress(blob))
    ]


def _pack_digest_items(db: sqlite3.Connection) -> None:
    """Migration 12's second half: each digest's items, set aside from digest_items, packed into
    digests.items, then the copy dropped. Runs in the migration's transaction."""
    rows = db.execute(
        "SELECT profile, day, key, score, reasons FROM old_digest_items"
        " ORDER BY profile, day, position"
    )
    packed: list[tuple[bytes, str, str]] = []
    for (profile, day), items in itertools.groupby(rows, key=operator.itemgetter(0, 1)):
        text = _JSON.encode(
            [
                [key, score, _packed_reasons(_reasons_from(json.loads(reasons)))]
                for _, _, key, score, reasons in items
            ]
        )
        packed.append((zlib.compress(text.encode(), 9), profile, day))
        if len(packed) == 1000:  # months of digests are not held in memory at once
            db.executemany("UPDATE digests SET items = ? WHERE profile = ? AND day = ?", packed)
            packed.clear()
    db.executemany("UPDATE digests SET items = ? WHERE profile = ? AND day = ?", packed)
    db.execute("UPDATE digests SET items = ? WHERE items IS NULL", (_pack_items(()),))
    db.execute("DROP TABLE old_digest_items")
