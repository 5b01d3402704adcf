"""What every concern of the SQLite store shares: the connection, its transactions, its patience.

Each concern (papers.py, runs.py, digests.py, ledger.py, subscribers.py, feedback.py,
maintenance.py) is a mixin over `Connected` that runs its SQL on `self._db`; sqlite.py composes
them into `Store`. A statement lives in the module of the table it writes or reads first; a
concern that needs another's table calls that module's functions, which take the connection.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_CHUNK = 500  # SQLite's limit on bound parameters is well above this
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


class Connected:
    """One open SQLite connection (`_db`) to the store file at `path`."""

    _db: sqlite3.Connection
    path: Path

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

    @contextmanager
    def patience(self, seconds: float) -> Iterator[None]:
        """Within it, wait at most `seconds` for another process holding the write lock (30 s,
        the store's own patience, otherwise): a command a person waits for says so sooner."""
        self._db.execute(f"PRAGMA busy_timeout = {int(seconds * 1000)}")
        try:
            yield
        finally:
            self._db.execute("PRAGMA busy_timeout = 30000")


def _chunks(values: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


def _locked_hint(exc: sqlite3.Error) -> str:
    text = str(exc)
    if "locked" in text or "busy" in text:
        return f"{text} (a running `digest run` or `digest schedule` is using it: try again when it is done)"
    return text
