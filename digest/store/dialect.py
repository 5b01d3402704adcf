"""What the concerns' SQL runs on, whichever the backend: a `Connection` (sqlite3's own, or
postgres.py's adapter over psycopg, which takes the same `?` placeholders), and the few pieces of
SQL text that truly differ between the engines (`Dialect`).

Every statement of the concern modules is written once, in the subset both SQLite and
PostgreSQL accept; where the text must differ the statement takes a fragment from
`store.dialect` (SQLITE or POSTGRESQL) instead of being written twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

# PostgreSQL advisory locks (one 64-bit number each, the database's own): migrating at open, and
# an ingest's read-plan-write of the papers (what SQLite's one write lock gave).
MIGRATE_LOCK = 0x70645F6D69677261  # "pd_migra"
INGEST_LOCK = 0x70645F696E676573  # "pd_inges"
# Counting then recording a confirmation mail (two web replicas' sign-up workers at once).
CONFIRM_LOCK = 0x70645F636F6E6669  # "pd_confi"


class Cursor(Protocol):
    """What the concerns read from a statement's result."""

    @property
    def rowcount(self) -> int: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """sqlite3.Connection as the concerns use it (autocommit: they say BEGIN and COMMIT)."""

    def execute(self, sql: str, parameters: Any = ..., /) -> Cursor: ...
    def executemany(self, sql: str, parameters: Iterable[Any], /) -> Cursor: ...
    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Dialect:
    """The SQL text that differs between the engines."""

    name: str  # "sqlite" or "postgresql"
    # Starts a writing transaction. SQLite's IMMEDIATE takes the write lock up front (two
    # overlapping runs queue instead of deadlocking); PostgreSQL locks rows as they are written.
    begin: str
    case_insensitive_like: str  # SQLite's LIKE ignores ASCII case; PostgreSQL's ILIKE does
    greatest: str  # the larger of two values: SQLite's scalar max(a, b), PostgreSQL's greatest
    # A join the planner must take in the order written (SQLite: CROSS JOIN, PostgreSQL has no
    # CROSS JOIN ... ON and plans a small VALUES list as the outer loop anyway)
    ordered_join: str
    # A SELECT's rows locked for this transaction, rows another holds skipped (SQLite: every
    # writer holds the one write lock already)
    skip_locked: str
    # The store's patience with a lock another connection holds, in milliseconds
    patience: str

    # Within a transaction, wait for the lock of this number and hold it until its end (SQLite:
    # nothing to say, the transaction holds the one write lock)
    exclusive: str
    # A session lock of this number taken if free (one row: whether it was), and given back:
    # a block of due profiles claimed by one worker (SQLite: one host, its write lock and the
    # stored digests serialise the runs already, so there is nothing to say)
    try_claim: str
    release_claim: str

    def patience_sql(self, seconds: float) -> str:
        return self.patience.format(ms=int(seconds * 1000))

    def one_of(self, column: str, values: list[Any]) -> tuple[str, list[Any]]:
        """`column` equal to one of `values` (at most a few hundred), and its parameters: SQLite's
        `IN (?, ?, ...)`; PostgreSQL's `= ANY(?)` of one array, a statement whatever the count,
        so it is parsed and planned once for all the chunks (the shared corpus ingested again
        into a full store: its look-ups took 0.90 s, now 0.34 s)."""
        if self.name == "postgresql":
            return f"{column} = ANY(?)", [values]
        return f"{column} IN ({', '.join('?' * len(values))})", values


SQLITE = Dialect(
    name="sqlite",
    begin="BEGIN IMMEDIATE",
    case_insensitive_like="LIKE",
    greatest="max",
    ordered_join="CROSS JOIN",
    skip_locked="",
    patience="PRAGMA busy_timeout = {ms}",
    exclusive="",
    try_claim="",
    release_claim="",
)
POSTGRESQL = Dialect(
    name="postgresql",
    begin="BEGIN",
    case_insensitive_like="ILIKE",
    greatest="greatest",
    ordered_join="JOIN",
    skip_locked=" FOR UPDATE SKIP LOCKED",
    patience="SET lock_timeout = {ms}",
    exclusive="SELECT pg_advisory_xact_lock(?)",
    try_claim="SELECT pg_try_advisory_lock(?)",
    release_claim="SELECT pg_advisory_unlock(?)",
)
