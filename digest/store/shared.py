"""What processes on several hosts share through the store (issue 17): the feed files, the
signing keys, the rate-limit counters and the source claims. Tables: feed_files, signing_keys,
rate_counts, source_claims (migration 16).

A concern of its own, not four additions to others: each is small, each exists because the store
is the one thing every host sees (a web replica, a worker on another machine), and the reasons
and the trade-offs are the same for all four, so they read best together.

    feed files     With PostgreSQL (`shared` True) the feeds a run publishes are rows, not
                   files: every web replica answers the same bytes, ETag and Last-Modified from
                   one row, no volume shared by the hosts is needed, and a feed is small (tens to
                   hundreds of kB). A row is rewritten only when its bytes changed, so its
                   Last-Modified stays. With SQLite the feeds stay files in feeds_dir
                   (digest.feeds), which nginx may serve; these methods are then unused.
    signing keys   The keys that sign the links in mail and pages (digest.tokens). With
                   PostgreSQL, one row every host reads, created once (INSERT ... ON CONFLICT DO
                   NOTHING, then read: two hosts starting at once agree); a secret.key found in
                   the data directory at the first use is imported, so links mailed before the
                   switch keep working. With SQLite, the secret.key file beside the store.
    rate counts    A counter per (key, bucket of time), incremented atomically (INSERT ... ON
                   CONFLICT DO UPDATE ... RETURNING): every replica counts into the same rows.
                   Old buckets are pruned by the same statement's transaction.
    source claims  A row per source, taken by one `digest run` before it fetches the source
                   (INSERT ... ON CONFLICT (source) DO UPDATE ... WHERE the claim expired ...
                   RETURNING): workers started by the same cron tick on several hosts fetch each
                   source once between them. A claim is held with a lease while fetching (a
                   killed worker's claim expires with it), then kept for a cool-down, its
                   `fetched` time set (a worker that skipped the source waits for that before
                   composing, so its digests have the papers).
    block claims   No table: on PostgreSQL a session advisory lock per block of due profiles
                   (pg_try_advisory_lock, keyed by the run's day and the block's first profile),
                   taken by the worker that ranks and composes the block and given back once its
                   digests are saved; another worker reaching the block skips it instead of
                   composing it a second time. A killed worker's locks go with its connection.
                   SQLite: always taken (one host; the write lock serialises the runs).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import ClassVar

from digest.errors import StoreError
from digest.store.base import Connected, _chunks
from digest.tokens import SECRET_FILE, load_secrets

LINK_KEYS = "links"  # the signing_keys row of the links' keys (the file secret.key's lines)


@dataclass(frozen=True, slots=True)
class FeedFile:
    """One feed file kept in the store: its bytes and validators."""

    path: str  # relative to feeds_dir, as digest.feeds names it ("profiles/NAME.atom")
    body: bytes
    etag: str  # a hash of the bytes: the same on every host
    modified: datetime  # when these bytes were first published


@dataclass(frozen=True, slots=True)
class FeedFileHead:
    """A feed file's validators and size, without its bytes (what a 304 needs)."""

    etag: str
    modified: datetime
    size: int


@dataclass(frozen=True, slots=True)
class SourceClaim:
    """Who holds a source's claim, and until when."""

    source: str
    claimant: str
    claimed: datetime
    until: datetime  # the lease while fetching, then the end of the cool-down
    fetched: datetime | None  # when its fetch ended (None: still fetching, or killed)


def feed_etag(body: bytes) -> str:
    return hashlib.blake2b(body, digest_size=16).hexdigest()


class SharedStoreMixin(Connected):
    """The shared-state concern (see the module's docstring)."""

    # Whether processes on several hosts share this store, so that feeds and signing keys live
    # in it (PostgreSQL) rather than in files beside it (SQLite).
    shared: ClassVar[bool] = False

    # -- feed files ---------------------------------------------------------------------------

    def put_feed_files(self, files: Mapping[str, bytes], at: datetime) -> list[str]:
        """Keep these feed files (path -> bytes), in one transaction; the paths whose bytes
        changed (the others are not rewritten, so their `modified` stays), sorted."""
        tags = {path: feed_etag(body) for path, body in files.items()}
        changed = []
        with self._transaction():
            known: dict[str, str] = {}
            for chunk in _chunks(sorted(files)):
                marks = ",".join("?" * len(chunk))
                known.update(
                    self._db.execute(
                        f"SELECT path, etag FROM feed_files WHERE path IN ({marks})", chunk
                    ).fetchall()
                )
            rows = []
            for path in sorted(files):
                if known.get(path) == tags[path]:
                    continue
                changed.append(path)
                rows.append((path, files[path], tags[path], at.isoformat()))
            self._db.executemany(
                """INSERT INTO feed_files (path, body, etag, modified) VALUES (?, ?, ?, ?)
                   ON CONFLICT (path) DO UPDATE SET body = excluded.body, etag = excluded.etag,
                   modified = excluded.modified""",
                rows,
            )
        return changed

    def feed_file(self, path: str) -> FeedFile | None:
        row = self._db.execute(
            "SELECT body, etag, modified FROM feed_files WHERE path = ?", (path,)
        ).fetchone()
        if row is None:
            return None
        return FeedFile(path, bytes(row[0]), row[1], datetime.fromisoformat(row[2]))

    def feed_file_head(self, path: str) -> FeedFileHead | None:
        row = self._db.execute(
            "SELECT etag, modified, length(body) FROM feed_files WHERE path = ?", (path,)
        ).fetchone()
        if row is None:
            return None
        return FeedFileHead(row[0], datetime.fromisoformat(row[1]), int(row[2]))

    def feed_files_modified(self, paths: Iterable[str]) -> dict[str, datetime]:
        """When each of these feed files that is kept was last changed."""
        found: dict[str, datetime] = {}
        for chunk in _chunks(sorted(set(paths))):
            marks = ",".join("?" * len(chunk))
            for path, modified in self._db.execute(
                f"SELECT path, modified FROM feed_files WHERE path IN ({marks})", chunk
            ):
                found[path] = datetime.fromisoformat(modified)
        return found

    # -- signing keys -------------------------------------------------------------------------

    def signing_keys(self, data_dir: Path | None = None) -> list[str]:
        """The keys that sign links, newest first. SQLite: the file secret.key in `data_dir`
        (the store's folder unless given), created when missing (digest.tokens.load_secrets).
        PostgreSQL: the store's row, created at the first use from `data_dir`'s secret.key when
        there is one (links already mailed keep working), else from a new random key; of hosts
        doing it at once, the first insert wins and every host reads the same keys."""
        folder = self.path.parent if data_dir is None else data_dir
        if not self.shared:
            return load_secrets(folder)
        row = self._db.execute("SELECT keys FROM signing_keys WHERE name = ?", (LINK_KEYS,)).fetchone()
        if row is None:
            with self._transaction():
                self._db.execute(
                    """INSERT INTO signing_keys (name, keys) VALUES (?, ?)
                       ON CONFLICT (name) DO NOTHING""",
                    (LINK_KEYS, _local_keys(folder)),
                )
            row = self._db.execute(
                "SELECT keys FROM signing_keys WHERE name = ?", (LINK_KEYS,)
            ).fetchone()
        keys = [line.strip() for line in str(row[0]).splitlines()]
        keys = [key for key in keys if key and not key.startswith("#")]
        if not keys:
            raise StoreError(f"{self.path}: the store's signing_keys row holds no key")
        return keys

    # -- rate counts --------------------------------------------------------------------------

    def count_event(self, key: str, bucket: int, prune_before: int) -> tuple[int, int]:
        """One more event of `key` in `bucket` (a number of time, counted by the caller); the
        counts of this bucket (this event included) and of the one before. Buckets before
        `prune_before` go, every key's, in the same transaction."""
        with self._transaction():
            (count,) = self._db.execute(
                """INSERT INTO rate_counts (bucket, key, count) VALUES (?, ?, 1)
                   ON CONFLICT (bucket, key) DO UPDATE SET count = rate_counts.count + 1
                   RETURNING count""",
                (bucket, key),
            ).fetchone()
            before = self._db.execute(
                "SELECT count FROM rate_counts WHERE bucket = ? AND key = ?", (bucket - 1, key)
            ).fetchone()
            self._db.execute("DELETE FROM rate_counts WHERE bucket < ?", (prune_before,))
        return int(count), int(before[0]) if before else 0

    # -- source claims ------------------------------------------------------------------------

    def claim_source(self, source: str, claimant: str, now: datetime, until: datetime) -> bool:
        """Take `source` for `claimant` until `until`, unless another holds an unexpired claim
        (one whose `until` is after `now`); whether it was taken. Atomic on both backends: of
        workers claiming at once, one gets it."""
        with self._transaction():
            row = self._db.execute(
                """INSERT INTO source_claims (source, claimant, claimed, until, fetched)
                   VALUES (?, ?, ?, ?, NULL)
                   ON CONFLICT (source) DO UPDATE SET claimant = excluded.claimant,
                       claimed = excluded.claimed, until = excluded.until, fetched = NULL
                   WHERE source_claims.until <= excluded.claimed
                      OR source_claims.claimant = excluded.claimant
                   RETURNING claimant""",
                (source, claimant, now.isoformat(), until.isoformat()),
            ).fetchone()
        return row is not None

    def finish_source(self, source: str, claimant: str, at: datetime, until: datetime) -> bool:
        """`claimant` fetched `source` at `at`: its claim is kept until `until` (the cool-down);
        False when the claim was no longer its own (its lease ran out and another took it)."""
        with self._transaction():
            cursor = self._db.execute(
                """UPDATE source_claims SET fetched = ?, until = ?
                   WHERE source = ? AND claimant = ?""",
                (at.isoformat(), until.isoformat(), source, claimant),
            )
        return cursor.rowcount > 0

    def release_source(self, source: str, claimant: str) -> None:
        """Give up `claimant`'s claim of `source` (a fetch that failed: another may try)."""
        with self._transaction():
            self._db.execute(
                "DELETE FROM source_claims WHERE source = ? AND claimant = ?", (source, claimant)
            )

    # -- block claims -------------------------------------------------------------------------

    def claim_block(self, key: int) -> bool:
        """Take the block of due profiles numbered `key` (a signed 64-bit number, the same for
        every worker of a run: `pipeline.block_key`) for this store's connection, unless another
        connection holds it; whether it was taken. PostgreSQL: a session advisory lock, held until
        `release_block` or until the connection closes (a killed worker's go with it). SQLite:
        always taken (one host; its write lock and the stored digests serialise the runs)."""
        if not self.dialect.try_claim:
            return True
        row = self._db.execute(self.dialect.try_claim, (key,)).fetchone()
        return bool(row[0])

    def release_block(self, key: int) -> None:
        """Give back the block `claim_block(key)` took (its digests are saved, or composing failed)."""
        if self.dialect.release_claim:
            self._db.execute(self.dialect.release_claim, (key,))

    def source_claims(self, sources: Iterable[str] | None = None) -> list[SourceClaim]:
        """The sources' claims (every claim when None), by source."""
        wanted = None if sources is None else set(sources)
        rows = self._db.execute(
            "SELECT source, claimant, claimed, until, fetched FROM source_claims ORDER BY source"
        ).fetchall()
        return [
            SourceClaim(
                source, claimant, datetime.fromisoformat(claimed), datetime.fromisoformat(until),
                datetime.fromisoformat(fetched) if fetched else None,
            )
            for source, claimant, claimed, until, fetched in rows
            if wanted is None or source in wanted
        ]


def _local_keys(folder: Path) -> str:
    """The keys to start a shared store with: the data directory's secret.key when there is one
    (as it is, every line), else a new random key."""
    path = folder / SECRET_FILE
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        return secrets.token_urlsafe(32) + "\n"
    except (OSError, UnicodeDecodeError) as exc:
        raise StoreError(f"{path}: cannot read the signing key to import: {exc}") from None
    if not any(line.strip() and not line.strip().startswith("#") for line in text.splitlines()):
        return secrets.token_urlsafe(32) + "\n"
    return text
