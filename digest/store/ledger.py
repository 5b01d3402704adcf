"""The delivery ledger: one row per (profile, channel, digest day), claimed by a run, handed
over, settled or released, so a re-run, a crash or two overlapping runs never send the same
digest twice and never skip one. Table: deliveries."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from digest.models import Delivery
from digest.store.base import Connected
from digest.store.dialect import Connection

# What a delivery still owes: retention keeps its digest, items and ledger rows, whatever its age.
UNFINISHED_DELIVERIES = ("pending", "sending", "deferred", "uncertain")


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a claimed delivery ended, to be written to the ledger (see Store.settle_many)."""

    row: Delivery
    status: str  # sent, deferred, failed, skipped or uncertain
    error: str | None = None
    message_id: str | None = None



class LedgerStoreMixin(Connected):
    """The delivery-ledger concern of the SQLite store."""

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
        # Without quarantined_before, `updated < NULL` is never true: no uncertain row is taken.
        quarantine = None if quarantined_before is None else quarantined_before.isoformat()
        takeable = """(status IN ('pending', 'deferred')
                       OR (status = 'sending' AND updated < ?)
                       OR (status = 'uncertain' AND updated < ?))"""
        if self.dialect.skip_locked:
            # Workers on several hosts at once: a row another worker's transaction holds is
            # skipped, not waited for (it is that worker's); the row is checked again once
            # locked, so two workers never both take it.
            sql = f"""UPDATE deliveries SET status = 'sending', claimed_by = ?, updated = ?,
                      attempts = attempts + 1, message_id = NULL
                      WHERE (day, profile, channel) IN (
                          SELECT day, profile, channel FROM deliveries
                          WHERE profile = ? AND channel = ? AND day = ? AND {takeable}
                          {self.dialect.skip_locked})"""
        else:  # SQLite: this run holds the store's one write lock already
            sql = f"""UPDATE deliveries SET status = 'sending', claimed_by = ?, updated = ?,
                      attempts = attempts + 1, message_id = NULL
                      WHERE profile = ? AND channel = ? AND day = ? AND {takeable}"""
        got = []
        with self._transaction():
            for delivery in deliveries:
                cursor = self._db.execute(
                    sql,
                    (
                        claimant, now.isoformat(), delivery.profile, delivery.channel,
                        delivery.day.isoformat(), stale_before.isoformat(), quarantine,
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
                f"""UPDATE deliveries SET status = 'pending', updated = ?, error = ?,
                   attempts = {self.dialect.greatest}(attempts - 1, 0), claimed_by = NULL
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
        # One statement: a row another worker claims meanwhile is either changed here, checked
        # again once locked, or left to that worker (PostgreSQL lets writers overlap).
        with self._transaction():
            found = self._db.execute(
                """UPDATE deliveries SET status = 'uncertain', error = ?, claimed_by = NULL
                   WHERE status = 'sending' AND message_id IS NOT NULL AND updated < ?
                   AND substr(channel, 1, ?) = ?
                   RETURNING profile, channel, day""",
                (error, stale_before.isoformat(), len(kind) + 1, kind + ":"),
            ).fetchall()
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


def add_pending(
    db: Connection, profile: str, day: date, channels: Iterable[str], now: datetime
) -> None:
    """A pending row per channel for a digest just saved, in the caller's transaction."""
    add_rows(db, pending_rows(profile, day, channels, now))


def pending_rows(
    profile: str, day: date, channels: Iterable[str], now: datetime
) -> list[tuple[str, str, str, str]]:
    """The pending rows of a digest just saved (one a channel), for `add_rows`."""
    return [(profile, channel, day.isoformat(), now.isoformat()) for channel in dict.fromkeys(channels)]


def add_rows(db: Connection, rows: Sequence[tuple[str, str, str, str]]) -> None:
    """Pending rows (`pending_rows`) in the caller's transaction, in one statement."""
    if rows:
        db.executemany(
            """INSERT INTO deliveries (profile, channel, day, status, updated)
               VALUES (?, ?, ?, 'pending', ?)""",
            rows,
        )


def delete_rows(db: Connection, digests: Sequence[tuple[str, str]]) -> int:
    """Delete the ledger rows of these (profile, day) digests, in the caller's transaction."""
    return db.executemany("DELETE FROM deliveries WHERE profile = ? AND day = ?", digests).rowcount


def open_rows(db: Connection) -> tuple[bool, datetime | None]:
    """Whether a delivery is open (pending, deferred or sending), and when the oldest uncertain
    one was tried (a few index look-ups, for an idle run)."""
    open_rows = db.execute(
        "SELECT EXISTS (SELECT 1 FROM deliveries WHERE status IN ('pending', 'deferred', 'sending'))"
    ).fetchone()[0]
    uncertain = db.execute("SELECT min(updated) FROM deliveries WHERE status = 'uncertain'").fetchone()[0]
    return bool(open_rows), datetime.fromisoformat(uncertain) if uncertain else None


def count_rows(db: Connection) -> int:
    return int(db.execute("SELECT count(*) FROM deliveries").fetchone()[0])
