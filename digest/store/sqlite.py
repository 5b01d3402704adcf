"""The SQLite store: one file in the data directory, WAL, schema versioned (schema.py).

Opening the file (its pragmas, the patience a new store's switch to WAL needs) and `Store`, the
concerns composed: papers.py, runs.py, digests.py, ledger.py, subscribers.py, feedback.py,
maintenance.py, shared.py, each a mixin running its SQL on the one connection. Every write happens inside
one transaction, so a run that fails half-way leaves the store exactly as it was.
"""

from __future__ import annotations

import inspect
import sqlite3
import time
import types
from collections.abc import Callable
from pathlib import Path

from digest.errors import StoreError
from digest.store.base import store_errors, what_went_wrong
from digest.store.digests import DigestStoreMixin
from digest.store.feedback import FeedbackStoreMixin
from digest.store.ledger import LedgerStoreMixin
from digest.store.maintenance import MaintenanceStoreMixin
from digest.store.papers import PaperStoreMixin
from digest.store.runs import RunStoreMixin
from digest.store.schema import SchemaMixin
from digest.store.shared import SharedStoreMixin
from digest.store.subscribers import SubscriberStoreMixin


class Store(
    PaperStoreMixin,
    RunStoreMixin,
    DigestStoreMixin,
    LedgerStoreMixin,
    SubscriberStoreMixin,
    FeedbackStoreMixin,
    MaintenanceStoreMixin,
    SharedStoreMixin,
    SchemaMixin,
):
    """A SQLite store. Use `Store.open(path)` (or `digest.store.open_store(config)`); close it
    (or use `with`)."""

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
            # A statement that may have to be undone alone inside a transaction (a ledger row's
            # foreign key, an upsert) keeps the pages it changes in a statement journal, which
            # SQLite spills to a temporary file past 64 kB: two 16 kB pages and more a digest
            # saved, 52 kB written a profile a day (issue 16). In memory they are a few pages.
            db.execute("PRAGMA temp_store=MEMORY")
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"{path}: cannot open the store: {what_went_wrong(exc)}") from None
        store = cls(db, path)
        store._migrate()
        return store

    def another(self) -> Store:
        """A second connection to the same store (a reader beside a writer, say); close it too."""
        return type(self).open(self.path)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# Every public method says its SQLite errors as a StoreError naming the file (base.store_errors):
# a damaged page met by any query is one line and a non-zero exit, never a traceback.
for _name in dir(Store):
    _method = inspect.getattr_static(Store, _name)
    if not _name.startswith("_") and isinstance(_method, types.FunctionType):
        setattr(Store, _name, store_errors(_method))


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
