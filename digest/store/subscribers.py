"""Web state: subscribers made on the web, unsubscribes, the confirmation mails their rate limit
counts, sign-ups waiting for their mail, short links, and which personal feeds are read. Tables:
subscribers, unsubscribed, confirmation_mails, signup_requests, short_links, feed_reads."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import asdict, fields
from datetime import datetime, timedelta
from typing import Any

from digest.errors import StoreError
from digest.models import Interests, SignupRequest, Subscriber
from digest.store.base import Connected, what_went_wrong
from digest.store.dialect import CONFIRM_LOCK, Connection


class SubscriberStoreMixin(Connected):
    """The subscribers concern of the SQLite store."""

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
                    f"""INSERT INTO feed_reads (profile, last_read) VALUES (?, ?)
                       ON CONFLICT (profile) DO UPDATE SET last_read =
                       {self.dialect.greatest}(feed_reads.last_read, excluded.last_read)""",
                    rows,
                )
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: could not record {len(rows)} feed reads: {what_went_wrong(exc)}") from None

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
                """INSERT INTO unsubscribed (profile, address, at) VALUES (?, ?, ?)
                   ON CONFLICT (profile, address) DO NOTHING""",
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

    def record_confirmation_mail_within(
        self, address: str, at: datetime, network: str, since: datetime, limit: int
    ) -> bool:
        """Record a confirmation mail to `address` unless it already got `limit` since `since`;
        whether it was recorded (and so may be sent). The count and the insert are one
        transaction under one lock (SQLite's write lock; on PostgreSQL an advisory lock), so two
        web replicas' sign-up workers cannot both send the address's last allowed mail."""
        with self._transaction():
            if self.dialect.exclusive:
                self._db.execute(self.dialect.exclusive, (CONFIRM_LOCK,))
            (count,) = self._db.execute(
                "SELECT count(*) FROM confirmation_mails WHERE at >= ? AND address = ?",
                (since.isoformat(), address.lower()),
            ).fetchone()
            if int(count) >= limit:
                return False
            self._db.execute(
                "DELETE FROM confirmation_mails WHERE at < ?",
                ((at - timedelta(days=7)).isoformat(),),
            )
            self._db.execute(
                "INSERT INTO confirmation_mails (address, at, network) VALUES (?, ?, ?)",
                (address.lower(), at.isoformat(), network),
            )
        return True

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
                """INSERT INTO short_links (code, target, created) VALUES (?, ?, ?)
                   ON CONFLICT (code) DO NOTHING""",
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
            # Locked, so two workers (web replicas) never take the same one; one another holds
            # is passed over (SQLite: the write lock serialises them already).
            row = self._db.execute(
                f"""SELECT r.id, r.network, r.address, r.interests, r.library, r.library_name,
                          r.received, r.attempts
                   FROM signup_requests r
                   WHERE r.not_before <= ?
                   ORDER BY (SELECT count(*) FROM confirmation_mails m
                             WHERE m.network = r.network AND m.at >= ?), r.id
                   LIMIT 1{self.dialect.skip_locked}""",
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


def prune_short_links(db: Connection, cutoff_at: str, limit: int) -> int:
    """Delete up to `limit` feedback and digest short links made before `cutoff_at` (ISO 8601),
    in the caller's transaction; how many went (see maintenance.prune for which are kept)."""
    deleted: int = db.execute(
        """DELETE FROM short_links WHERE code IN (
               SELECT code FROM short_links WHERE created < ?
               AND (substr(target, 1, 10) = '/feedback/'
                    OR substr(target, 1, 14) = '/digest-links/') LIMIT ?)""",
        (cutoff_at, limit),
    ).rowcount
    return deleted


def _interests_from_json(text: str) -> Interests:
    values: dict[str, Any] = json.loads(text)
    known = {f.name for f in fields(Interests)}  # a field added later falls back to its default
    chosen: dict[str, Any] = {
        k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in known
    }
    return Interests(**chosen)

