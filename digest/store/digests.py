"""Digests: each composed digest (its items packed into its row), each profile's latest digest
(digest_heads) and the sources' notes they share. Tables: digests, digest_heads, digest_sources.
A digest is saved with its ledger rows (ledger.py) in one transaction."""

from __future__ import annotations

import json
import sqlite3
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import fields
from datetime import date, datetime
from typing import Any

from digest.errors import StoreError
from digest.models import Digest, DigestHead, Reasons, ScoredPaper, SourceNote
from digest.store import ledger
from digest.store.base import _CHUNK, _JSON, Connected, _chunks, what_went_wrong
from digest.store.dialect import Connection
from digest.store.papers import papers_by_key

# A profile's newest digest, kept up to date as digests are saved (the schedule reads only these).
_SAVE_HEAD = """INSERT INTO digest_heads VALUES (?, ?, ?)
    ON CONFLICT (profile) DO UPDATE SET day = excluded.day, until = excluded.until
    WHERE excluded.day > digest_heads.day"""

# A stored digest as Store._digests_from_rows reads it: its row and its sources' notes.
_DIGEST_COLUMNS = """d.profile, d.day, d.timezone, d.since, d.until, d.scanned,
    coalesce(s.sources, '[]'), d.items"""
_DIGEST_SELECT = f"""SELECT {_DIGEST_COLUMNS}
    FROM digests d LEFT JOIN digest_sources s ON s.id = d.sources_id"""



class DigestStoreMixin(Connected):
    """The digests concern of the SQLite store."""

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
                f"{self.path}: could not store the digest of {digest.profile} for {digest.day}: {what_went_wrong(exc)}"
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
        sources = _sources_json(digest)
        if not self._inserted(digest, day, self._sources_id(sources, day)):
            existing = self._digest(digest.profile, digest.day)
            assert existing is not None
            return existing
        self._db.execute(_SAVE_HEAD, (digest.profile, day, digest.until.isoformat()))
        ledger.add_pending(self._db, digest.profile, digest.day, channels, now)
        return digest

    def _sources_id(self, sources: str, day: str) -> int:
        """The id of these notes on the run's sources, stored once (migration 12); last_day keeps
        them from retention as long as a digest names them."""
        (sources_id,) = self._db.execute(
            f"""INSERT INTO digest_sources (sources, last_day) VALUES (?, ?)
               ON CONFLICT (sources) DO UPDATE
               SET last_day = {self.dialect.greatest}(digest_sources.last_day, excluded.last_day)
               RETURNING id""",
            (sources, day),
        ).fetchone()
        return int(sources_id)

    def _inserted(self, digest: Digest, day: str, sources_id: int) -> bool:
        """Insert the digest's row; False when (profile, day) is stored already. Another run
        saving the same digest meanwhile (PostgreSQL lets writers overlap; SQLite's write lock
        does not) wins: its digest is the one kept."""
        inserted = self._db.execute(
            """INSERT INTO digests (profile, day, timezone, since, until, scanned, sources_id, items)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (profile, day) DO NOTHING RETURNING 1""",
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
        ).fetchone()
        return inserted is not None

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
        saved: list[Digest | None] = [None] * len(composed)
        # In one order for every writer, (profile, day): two workers saving overlapping sets
        # then wait for each other at most, where opposite orders would deadlock on PostgreSQL.
        order = sorted(range(len(composed)), key=lambda n: (composed[n][0].profile, composed[n][0].day))
        try:
            with self._transaction():
                # A statement a digest (its insert says whether another run was first); its
                # sources' notes, its head and its ledger rows go in together after.
                sources_ids: dict[str, int] = {}
                heads: list[tuple[str, str, str]] = []
                pending: list[tuple[str, str, str, str]] = []
                for n in order:
                    digest, channels = composed[n]
                    day = digest.day.isoformat()
                    sources = _sources_json(digest)
                    if sources not in sources_ids:
                        sources_ids[sources] = self._sources_id(sources, day)
                    if not self._inserted(digest, day, sources_ids[sources]):
                        saved[n] = self._digest(digest.profile, digest.day)
                        continue
                    saved[n] = digest
                    heads.append((digest.profile, day, digest.until.isoformat()))
                    pending += ledger.pending_rows(digest.profile, digest.day, channels, now)
                self._db.executemany(_SAVE_HEAD, heads)
                ledger.add_rows(self._db, pending)
        except sqlite3.Error as exc:
            raise StoreError(
                f"{self.path}: could not store {len(composed)} digests: {what_went_wrong(exc)}"
            ) from None
        return [digest for digest in saved if digest is not None]

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
                      {self.dialect.ordered_join} digests d ON d.profile = w.profile AND d.day = w.day
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
        papers = papers_by_key(self._db, (key for items in unpacked for key, _, _ in items))
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


def old_digests(
    db: Connection, cutoff_day: str, after: tuple[str, str], limit: int
) -> list[tuple[str, str, int]]:
    """Retention's next batch: (day, profile, owed) of up to `limit` digests of days before
    `cutoff_day`, after (day, profile) `after`, in that order; owed when a ledger row of it is
    unfinished (ledger.UNFINISHED_DELIVERIES)."""
    unfinished = ", ".join("?" * len(ledger.UNFINISHED_DELIVERIES))
    rows: list[tuple[str, str, int]] = db.execute(
        f"""SELECT d.day, d.profile, EXISTS (SELECT 1 FROM deliveries l
                WHERE l.profile = d.profile AND l.day = d.day
                AND l.status IN ({unfinished}))
            FROM digests d WHERE d.day < ? AND (d.day, d.profile) > (?, ?)
            ORDER BY d.day, d.profile LIMIT ?""",
        (*ledger.UNFINISHED_DELIVERIES, cutoff_day, *after, limit),
    ).fetchall()
    return rows


def delete_digests(db: Connection, doomed: Sequence[tuple[str, str]]) -> int:
    """Delete these (profile, day) digests, in the caller's transaction; how many went."""
    return db.executemany("DELETE FROM digests WHERE profile = ? AND day = ?", doomed).rowcount


def prune_sources(db: Connection, cutoff_day: str) -> None:
    """Sources' notes no digest of the cutoff day or later names (last_day), nor an older one
    kept for an unfinished delivery (few, found by their day)."""
    db.execute(
        """DELETE FROM digest_sources WHERE last_day < ?1 AND id NOT IN
           (SELECT sources_id FROM digests WHERE day < ?1 AND sources_id IS NOT NULL)""",
        (cutoff_day,),
    )


def count_digests(db: Connection) -> int:
    return int(db.execute("SELECT count(*) FROM digests").fetchone()[0])


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


def _sources_json(digest: Digest) -> str:
    """A digest's notes on its run's sources as digest_sources.sources holds them."""
    return _JSON.encode([[note.source, note.status, note.error] for note in digest.sources])


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

