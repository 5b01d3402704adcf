"""The schema: one ordered list of migrations for both backends (`STEPS`), each moving a store
from version N to N+1 with each engine's SQL, and `_migrate`, which applies the missing ones at
open, each in a transaction of its own.

SQLite's PRAGMA user_version says where a file stands; its steps 1-15 are the scripts every
SQLite store went through (`MIGRATIONS`, never changed). PostgreSQL stores start at version 15:
its step 15 creates that whole schema at once (POSTGRESQL_15), steps 1-14 have no PostgreSQL
SQL, and the `schema_version` table says where a database stands. A later step carries both.
"""

from __future__ import annotations

import itertools
import json
import operator
import re
import sqlite3
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from digest.errors import StoreError
from digest.store.base import _JSON, Connected, what_went_wrong
from digest.store.dialect import MIGRATE_LOCK, Connection
from digest.store.digests import _pack_items, _packed_reasons, _reasons_from

# SQLite's scripts: each entry moves the schema from version N to N+1; PRAGMA user_version says
# where a file stands. STEPS below pairs them with PostgreSQL's.
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

# PostgreSQL's whole schema of version 15, in one step: the tables, indexes and triggers the 15
# SQLite scripts above leave, column for column in the same order (statements such as
# `INSERT INTO source_runs VALUES (...)` and `SELECT * FROM papers` rely on it).
#
# Types: TEXT stays TEXT, and timestamps stay ISO 8601 text as in SQLite, so they sort the same
# and a store copied between the backends is byte for byte the same; every TEXT column is
# COLLATE "C" (bytewise, as SQLite compares), whatever the database's locale. INTEGER becomes
# BIGINT, REAL DOUBLE PRECISION, BLOB BYTEA; booleans stay integers. SQLite's INTEGER PRIMARY KEY
# is an identity column (BY DEFAULT, so a copied store keeps its ids), and paper_history, which
# SQLite reads in `rowid` order, has a column of that name, so the SQL text stays the same.
# Schema 15's triggers counting the changes to web subscribers are plpgsql, one function.
_POSTGRESQL_15 = """
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
        abstract TEXT NOT NULL,
        data TEXT NOT NULL
    );
    CREATE INDEX papers_title_norm ON papers(title_norm);
    CREATE INDEX papers_doi ON papers(doi) WHERE doi IS NOT NULL;
    CREATE INDEX papers_newest
        ON papers(first_seen DESC, coalesce(listed, published, '') DESC, key DESC);
    CREATE TABLE sightings (
        key TEXT NOT NULL REFERENCES papers(key) ON UPDATE CASCADE ON DELETE CASCADE,
        source TEXT NOT NULL,
        first_seen TEXT NOT NULL,
        last_seen TEXT NOT NULL,
        PRIMARY KEY (key, source)
    );
    CREATE INDEX sightings_by_source ON sightings(source);
    CREATE TABLE runs (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        command TEXT NOT NULL,
        started TEXT NOT NULL,
        finished TEXT
    );
    CREATE TABLE source_runs (
        run_id BIGINT NOT NULL REFERENCES runs(id),
        source TEXT NOT NULL,
        started TEXT NOT NULL,
        duration_s DOUBLE PRECISION NOT NULL,
        fetched BIGINT NOT NULL,
        parsed BIGINT NOT NULL,
        new BIGINT NOT NULL,
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
    CREATE TABLE feedback (
        profile TEXT NOT NULL,
        key TEXT NOT NULL REFERENCES papers(key) ON UPDATE CASCADE ON DELETE CASCADE,
        mark TEXT NOT NULL CHECK (mark IN ('more', 'less')),
        marked TEXT NOT NULL,
        PRIMARY KEY (profile, key)
    );
    CREATE INDEX feedback_by_key ON feedback(key);
    CREATE TABLE unsubscribed (
        profile TEXT NOT NULL,
        address TEXT NOT NULL,
        at TEXT NOT NULL,
        PRIMARY KEY (profile, address)
    );
    CREATE TABLE subscribers (
        profile TEXT PRIMARY KEY,
        address TEXT NOT NULL UNIQUE,
        interests TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('pending', 'active', 'paused')),
        created TEXT NOT NULL,
        updated TEXT NOT NULL,
        confirmed TEXT
    );
    CREATE TABLE confirmation_mails (
        address TEXT NOT NULL,
        at TEXT NOT NULL,
        network TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX confirmation_mails_by_time ON confirmation_mails(at);
    CREATE INDEX confirmation_mails_by_network ON confirmation_mails(network, at);
    CREATE TABLE embeddings (
        key TEXT PRIMARY KEY REFERENCES papers(key) ON UPDATE CASCADE ON DELETE CASCADE,
        model TEXT NOT NULL,
        vector BYTEA NOT NULL
    );
    CREATE TABLE learned_profiles (
        profile TEXT PRIMARY KEY,
        fingerprint TEXT NOT NULL,
        coefficients BYTEA NOT NULL,
        intercept DOUBLE PRECISION NOT NULL,
        trained TEXT NOT NULL
    );
    CREATE TABLE problems (
        part TEXT PRIMARY KEY,
        problem TEXT NOT NULL,
        since TEXT NOT NULL
    );
    CREATE TABLE library (
        profile TEXT NOT NULL,
        key TEXT NOT NULL,
        paper TEXT NOT NULL,
        imported TEXT NOT NULL,
        model TEXT,
        vector BYTEA,
        PRIMARY KEY (profile, key)
    );
    CREATE INDEX library_by_key ON library(key);
    CREATE TABLE signup_requests (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        network TEXT NOT NULL,
        address TEXT NOT NULL,
        interests TEXT NOT NULL,
        library BYTEA,
        library_name TEXT,
        received TEXT NOT NULL,
        not_before TEXT NOT NULL,
        attempts BIGINT NOT NULL DEFAULT 0
    );
    CREATE INDEX signup_requests_by_network ON signup_requests(network);
    CREATE TABLE short_links (
        code TEXT PRIMARY KEY,
        target TEXT NOT NULL,
        created TEXT NOT NULL
    );
    CREATE INDEX short_links_by_created ON short_links(created);
    CREATE TABLE paper_history (
        key TEXT NOT NULL REFERENCES papers(key) ON UPDATE CASCADE ON DELETE CASCADE,
        changed_at TEXT NOT NULL,
        source TEXT NOT NULL,
        fields TEXT NOT NULL,
        rowid BIGINT GENERATED BY DEFAULT AS IDENTITY
    );
    CREATE INDEX paper_history_by_key ON paper_history(key, changed_at);
    CREATE TABLE meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE store_sizes (
        day TEXT PRIMARY KEY,
        used_bytes BIGINT NOT NULL,
        file_bytes BIGINT NOT NULL,
        digests BIGINT NOT NULL,
        deliveries BIGINT NOT NULL
    );
    CREATE TABLE digest_heads (
        profile TEXT PRIMARY KEY,
        day TEXT NOT NULL,
        until TEXT NOT NULL
    );
    CREATE TABLE paper_aliases (
        old TEXT PRIMARY KEY,
        key TEXT NOT NULL
    );
    CREATE INDEX paper_aliases_by_key ON paper_aliases(key);
    CREATE TABLE digest_sources (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        sources TEXT NOT NULL UNIQUE,
        last_day TEXT NOT NULL
    );
    CREATE TABLE digests (
        profile TEXT NOT NULL,
        day TEXT NOT NULL,
        timezone TEXT NOT NULL,
        since TEXT NOT NULL,
        until TEXT NOT NULL,
        scanned BIGINT NOT NULL,
        sources_id BIGINT NOT NULL,
        items BYTEA,
        PRIMARY KEY (profile, day)
    );
    CREATE INDEX digests_by_day ON digests(day, profile);
    CREATE TABLE deliveries (
        profile TEXT NOT NULL,
        channel TEXT NOT NULL,
        day TEXT NOT NULL,
        status TEXT NOT NULL
            CHECK (status IN ('pending', 'sending', 'sent', 'deferred', 'failed', 'skipped',
                              'uncertain')),
        attempts BIGINT NOT NULL DEFAULT 0,
        updated TEXT NOT NULL,
        claimed_by TEXT,
        error TEXT,
        message_id TEXT,
        PRIMARY KEY (day, profile, channel),
        FOREIGN KEY (profile, day) REFERENCES digests(profile, day) ON DELETE CASCADE
    );
    CREATE INDEX deliveries_by_status ON deliveries(status, day);
    CREATE TABLE feed_reads (
        profile TEXT PRIMARY KEY,
        last_read TEXT NOT NULL
    );
    INSERT INTO meta (key, value) VALUES ('subscribers_changed', '0');
    CREATE FUNCTION count_subscriber_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE meta SET value = (value::bigint + 1)::text WHERE key = 'subscribers_changed';
        RETURN NULL;
    END
    $$;
    CREATE TRIGGER subscribers_changed AFTER INSERT OR UPDATE OR DELETE ON subscribers
        FOR EACH ROW EXECUTE FUNCTION count_subscriber_change();
    CREATE TRIGGER unsubscribed_changed AFTER INSERT OR DELETE ON unsubscribed
        FOR EACH ROW EXECUTE FUNCTION count_subscriber_change();
"""
POSTGRESQL_15 = re.sub(r"\bTEXT\b", 'TEXT COLLATE "C"', _POSTGRESQL_15)


@dataclass(frozen=True, slots=True)
class Migration:
    """One step of the schema, to `version`, in each engine's SQL (None: that backend has no
    such step: a PostgreSQL store starts at version 15)."""

    version: int
    sqlite: str
    postgresql: str | None


# The one ordered list. A new step appends Migration(16, "<SQLite>", "<PostgreSQL>"): each
# store, whichever its backend, goes through the steps after its own version, in order.
STEPS: tuple[Migration, ...] = (
    *(
        Migration(number, script, POSTGRESQL_15 if number == 15 else None)
        for number, script in enumerate(MIGRATIONS, start=1)
    ),
    # 16: what processes on several hosts share through the store (digest/store/shared.py):
    # feed files with their validators, the links' signing keys, rate-limit counters per time
    # bucket, and each source's claim by the `digest run` fetching it (issue 17).
    Migration(
        16,
        """
        CREATE TABLE feed_files (
            path TEXT PRIMARY KEY,
            body BLOB NOT NULL,
            etag TEXT NOT NULL,
            modified TEXT NOT NULL
        );
        CREATE TABLE signing_keys (
            name TEXT PRIMARY KEY,
            keys TEXT NOT NULL  -- one key a line, newest first, as secret.key
        ) WITHOUT ROWID;
        CREATE TABLE rate_counts (
            bucket INTEGER NOT NULL,
            key TEXT NOT NULL,
            count INTEGER NOT NULL,
            PRIMARY KEY (bucket, key)
        ) WITHOUT ROWID;
        CREATE TABLE source_claims (
            source TEXT PRIMARY KEY,
            claimant TEXT NOT NULL,
            claimed TEXT NOT NULL,
            until TEXT NOT NULL,  -- the lease while fetching, then the end of the cool-down
            fetched TEXT  -- when the fetch ended; NULL while fetching
        ) WITHOUT ROWID;
        """,
        """
        CREATE TABLE feed_files (
            path TEXT COLLATE "C" PRIMARY KEY,
            body BYTEA NOT NULL,
            etag TEXT COLLATE "C" NOT NULL,
            modified TEXT COLLATE "C" NOT NULL
        );
        CREATE TABLE signing_keys (
            name TEXT COLLATE "C" PRIMARY KEY,
            keys TEXT COLLATE "C" NOT NULL
        );
        CREATE TABLE rate_counts (
            bucket BIGINT NOT NULL,
            key TEXT COLLATE "C" NOT NULL,
            count BIGINT NOT NULL,
            PRIMARY KEY (bucket, key)
        );
        CREATE TABLE source_claims (
            source TEXT COLLATE "C" PRIMARY KEY,
            claimant TEXT COLLATE "C" NOT NULL,
            claimed TEXT COLLATE "C" NOT NULL,
            until TEXT COLLATE "C" NOT NULL,
            fetched TEXT COLLATE "C"
        );
        """,
    ),
)
SCHEMA_VERSION = len(STEPS)
POSTGRESQL_FIRST = 15  # the version a new PostgreSQL store is created at


class SchemaMixin(Connected):
    """Migrating the store on open (SQLite here; PostgreSQL in migrate_postgresql)."""

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
                    for statement in _statements(STEPS[version].sqlite):
                        self._db.execute(statement)
                    version += 1
                    if version == 12:
                        _pack_digest_items(self._db)
                    self._db.execute(f"PRAGMA user_version = {version}")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: not a usable paperdigest store: {what_went_wrong(exc)}") from None


def migrate_postgresql(db: Connection, where: str) -> None:
    """Bring a PostgreSQL database up to SCHEMA_VERSION: a new (empty) one gets the whole schema
    of version POSTGRESQL_FIRST, then every later step. Two processes opening a new database at
    once are serialised by a transaction-scoped advisory lock: the second finds the work done."""
    while True:
        db.execute("BEGIN")
        try:
            db.execute("SELECT pg_advisory_xact_lock(?)", (MIGRATE_LOCK,))
            version = _postgresql_version(db)
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{where}: schema version {version} is newer than this paperdigest "
                    f"understands ({SCHEMA_VERSION}); upgrade paperdigest"
                )
            if version == SCHEMA_VERSION:
                db.execute("COMMIT")
                return
            if version == 0:
                if _postgresql_tables(db):
                    raise StoreError(
                        f"{where}: the database holds tables but no paperdigest schema_version: "
                        "not a paperdigest store (give paperdigest a database of its own)"
                    )
                db.execute("CREATE TABLE schema_version (version BIGINT NOT NULL)")
                db.execute("INSERT INTO schema_version VALUES (0)")
                version = POSTGRESQL_FIRST - 1
            step = STEPS[version]
            assert step.postgresql is not None, f"migration {step.version} has no PostgreSQL SQL"
            db.execute(step.postgresql)
            db.execute("UPDATE schema_version SET version = ?", (step.version,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise


def _postgresql_version(db: Connection) -> int:
    if db.execute("SELECT to_regclass('schema_version')").fetchone()[0] is None:
        return 0
    row = db.execute("SELECT version FROM schema_version").fetchone()
    return int(row[0]) if row else 0


def _postgresql_tables(db: Connection) -> int:
    return int(
        db.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()"
        ).fetchone()[0]
    )


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



def _pack_digest_items(db: Connection) -> None:
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
