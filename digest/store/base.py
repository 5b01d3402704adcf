"""What every concern of the SQLite store shares: the connection, its transactions, its patience.

Each concern (papers.py, runs.py, digests.py, ledger.py, subscribers.py, feedback.py,
maintenance.py) is a mixin over `Connected` that runs its SQL on `self._db`; sqlite.py composes
them into `Store`. A statement lives in the module of the table it writes or reads first; a
concern that needs another's table calls that module's functions, which take the connection.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar, ParamSpec, TypeVar

from digest.errors import StoreError
from digest.store.dialect import SQLITE, Connection, Dialect

P = ParamSpec("P")
R = TypeVar("R")

_CHUNK = 500  # SQLite's limit on bound parameters is well above this
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


class Connected:
    """One open connection (`_db`) to the store at `path`: sqlite3's, or postgres.py's adapter
    (whose SQL text differs only where `dialect` says)."""

    _db: Connection
    path: Path
    dialect: ClassVar[Dialect] = SQLITE

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        # IMMEDIATE takes the write lock up front, so two overlapping runs queue instead of deadlocking.
        self._db.execute(self.dialect.begin)
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
        self._db.execute(self.dialect.patience_sql(seconds))
        try:
            yield
        finally:
            self._db.execute(self.dialect.patience_sql(30))


def _chunks(values: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


def what_went_wrong(exc: Exception) -> str:
    """What went wrong, in one line: SQLite's words and, where it helps, what to do about it."""
    text = str(exc).replace("\n", " ")
    if "locked" in text or "busy" in text:
        return f"{text} (a running `digest run` or `digest schedule` is using it: try again when it is done)"
    return text + next((hint for words, hint in _HINTS if any(w in text for w in words)), "")


# Words of SQLite's messages and what they mean for a person looking after the store.
_HINTS = (
    (
        ("malformed", "not a database", "corrupt"),
        " (the store file is damaged: `digest store check` lists the damage; restore it from a "
        "backup made by `digest store backup`)",
    ),
    (("disk I/O error",), " (the disk is failing or full, or the file changed under the store)"),
    (("readonly", "read-only"), " (the file or its folder is not writable by this user)"),
    (("database or disk is full",), " (free some space on its disk)"),
)


def store_errors(method: Callable[P, R]) -> Callable[P, R]:
    """`method` of a store, its SQLite errors told as a StoreError of one line naming the store's
    file and what is wrong (a damaged file, a failing disk, no permission to write...).

    A ProgrammingError (a closed connection, a statement that does not fit) is a bug in
    paperdigest, not a state of the store: it stays what it is.
    """

    @functools.wraps(method)
    def told(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except sqlite3.ProgrammingError:
            raise
        except sqlite3.DatabaseError as exc:
            store = args[0]
            assert isinstance(store, Connected)
            raise StoreError(f"{store.path}: {what_went_wrong(exc)}") from None

    return told
