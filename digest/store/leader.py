"""Who leads: one `digest schedule` per store schedules; any other waits as a hot standby.

Two schedulers on one store would fetch every source twice and race for every digest (the ledger
keeps each digest to one send, but the work is doubled). So a scheduler first takes the store's
leadership, and one that cannot take it waits, trying again every few seconds, until the leader
stops or dies:

- SQLite (one host): an flock(2) on `schedule.lock` beside the store (digest.lock). The kernel
  drops it when its holder dies, however it dies.
- PostgreSQL (any number of hosts): a session advisory lock, held on a connection of its own.
  The server drops it when that connection ends: the process died, or its host went (TCP
  keepalives notice a silent peer within about 30 seconds). The connection is named after its
  process (application_name "paperdigest schedule PID@HOST"), so a standby can say who leads.

A leader asks `leading()` between jobs; on PostgreSQL the answer is no once its lock connection
has dropped (the database restarted, the network went): the lock may be someone else's by then,
so it stops scheduling and says so, and whatever supervises it starts it again, as a standby.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from digest.config import Config
from digest.errors import StoreError
from digest.lock import AlreadyRunning, ProcessLock

log = logging.getLogger(__name__)

LOCK_FILE = "schedule.lock"  # beside a SQLite store, in data_dir
# The advisory lock's key: any constant 64-bit number no other program on the database uses
# ("paperdigest" in ASCII, truncated to fit a bigint).
ADVISORY_KEY = int.from_bytes(b"pdigest!", "big") & 0x7FFF_FFFF_FFFF_FFFF
POLL_S = 5.0  # how often a standby tries to take the lead
_KEEPALIVES = {"tcp_keepalives_idle": 10, "tcp_keepalives_interval": 5, "tcp_keepalives_count": 4}


class Leadership(Protocol):
    """A store's scheduling lead, taken by at most one process at a time."""

    def wait(self, stopping: threading.Event, poll_s: float = POLL_S) -> bool:
        """Block until this process leads (True) or `stopping` is set first (False)."""
        ...

    def leading(self) -> bool:
        """Whether this process still leads (asked between jobs)."""
        ...

    def release(self) -> None: ...


def leadership(config: Config) -> Leadership:
    """The lead of the store `config` names."""
    if config.store.postgresql:
        from digest.store.postgres import connect, target_from_config

        target = target_from_config(config.store)
        return PostgresLeadership(lambda: connect(target, process_name()), target.where)
    return FileLeadership(config.data_dir / LOCK_FILE)


def process_name() -> str:
    return f"paperdigest schedule {os.getpid()}@{socket.gethostname()}"


class FileLeadership:
    """The lead of a SQLite store: an flock on a file beside it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = ProcessLock(path)

    def wait(self, stopping: threading.Event, poll_s: float = POLL_S) -> bool:
        said = False
        while not stopping.is_set():
            try:
                self._lock.acquire()
                return True
            except AlreadyRunning as exc:
                if not said:
                    log.info(
                        "standby: %s: another `digest schedule` (pid %s) leads; taking over when"
                        " it stops", self.path, exc.holder,
                    )
                    said = True
            stopping.wait(poll_s)
        return False

    def leading(self) -> bool:
        return True  # an flock is never taken away from a live process

    def release(self) -> None:
        self._lock.release()


class PostgresLeadership:
    """The lead of a PostgreSQL store: a session advisory lock on a connection of its own.

    `connect()` opens a new autocommit psycopg connection to the store's database; `label` names
    the store in messages (its URL without a password)."""

    def __init__(self, connect: Callable[[], Any], label: str) -> None:
        self.connect = connect
        self.label = label
        self._connection: Any = None

    def wait(self, stopping: threading.Event, poll_s: float = POLL_S) -> bool:
        said: str | None = None
        while not stopping.is_set():
            try:
                if self._try():
                    return True
                leader = self._leader() or "another process"
                problem = f"{leader} leads"
            except StoreError as exc:  # the database is away: keep trying, as a standby would
                problem = str(exc)
                self._drop()
            if problem != said:
                log.info("standby: %s: %s; taking over when it stops", self.label, problem)
                said = problem
            stopping.wait(poll_s)
        return False

    def leading(self) -> bool:
        if self._connection is None:
            return False
        try:
            held = self._connection.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND pid = pg_backend_pid() AND objid = %s AND classid = %s",
                _key_halves(),
            ).fetchone()[0]
        except _database_error() as exc:  # the lock's connection failed: the lead is gone
            log.error("%s: lost the lead: the lock's connection failed: %s", self.label, exc)
            self._drop()
            return False
        return bool(held)

    def release(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):  # closing the connection drops the lock anyway
                self._connection.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_KEY,))
            self._drop()

    def _try(self) -> bool:
        try:
            if self._connection is None:
                self._connection = self.connect()
                self._connection.execute(
                    "SELECT set_config('application_name', %s, false)", (process_name(),)
                )
                # The server's own check on this connection's peer (over TCP): a leader whose
                # host vanished without a word loses the lock in about 30 s, not the system's
                # default two hours.
                for setting, value in _KEEPALIVES.items():
                    self._connection.execute(f"SET {setting} = {value}")
            row = self._connection.execute(
                "SELECT pg_try_advisory_lock(%s)", (ADVISORY_KEY,)
            ).fetchone()
        except StoreError:
            raise
        except _database_error() as exc:
            raise StoreError(f"{self.label}: cannot reach the database: {_first_line(exc)}") from None
        return bool(row[0])

    def _leader(self) -> str | None:
        """The application_name of the connection holding the lock (another process's)."""
        row = self._connection.execute(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.granted AND l.objid = %s AND l.classid = %s",
            _key_halves(),
        ).fetchone()
        return row[0] if row and row[0] else None

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.close()


def _database_error() -> type[Exception]:
    """psycopg's error root, imported only where PostgreSQL is used (an optional dependency)."""
    import psycopg

    return psycopg.Error


def _key_halves() -> tuple[int, int]:
    """pg_locks shows a bigint advisory key as two 32-bit halves: (low as objid, high as classid)."""
    return ADVISORY_KEY & 0xFFFF_FFFF, ADVISORY_KEY >> 32


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
