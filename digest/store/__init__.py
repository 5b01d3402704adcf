"""The only place that talks SQL: the store, split by concern behind protocols.

    protocols.py    what a store answers, one Protocol per concern, StoreBackend all of them
    diff.py         the identity diff, pure: stored papers + records -> what to write
    schema.py       the ordered migrations and how a store is brought up to date
    sqlite.py       opening the SQLite file; `Store`, the concerns below composed
    papers.py  runs.py  digests.py  ledger.py  subscribers.py  feedback.py  maintenance.py
                    one concern each: its tables, its SQL, a mixin of `Store`

`open_store(config)` is the one place a store is opened from the configuration (and so where a
backend is chosen); other modules name `Store` (or a protocol) only as a type.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from digest.config import Config
from digest.store.diff import IngestOutcome, IngestPlan, PaperUpdate, plan_ingest
from digest.store.ledger import UNFINISHED_DELIVERIES, Outcome
from digest.store.maintenance import PRUNE_BATCH, PruneReport, SizeSample, StoreSize
from digest.store.papers import PaperChange
from digest.store.protocols import (
    DigestStore,
    FeedbackStore,
    LedgerStore,
    MaintenanceStore,
    PaperStore,
    RunStore,
    StoreBackend,
    SubscriberStore,
)
from digest.store.runs import KEEP_SOURCE_RUNS
from digest.store.schema import MIGRATIONS, SCHEMA_VERSION
from digest.store.sqlite import Store

__all__ = [
    "KEEP_SOURCE_RUNS",
    "MIGRATIONS",
    "PRUNE_BATCH",
    "SCHEMA_VERSION",
    "UNFINISHED_DELIVERIES",
    "DigestStore",
    "FeedbackStore",
    "IngestOutcome",
    "IngestPlan",
    "LedgerStore",
    "MaintenanceStore",
    "Outcome",
    "PaperChange",
    "PaperStore",
    "PaperUpdate",
    "PruneReport",
    "RunStore",
    "SizeSample",
    "Store",
    "StoreBackend",
    "StoreSize",
    "SubscriberStore",
    "open_store",
    "plan_ingest",
]


def open_store(config: Config) -> Store:
    """The store `config` names, open and migrated (a SQLite file at `config.store_path`; a
    backend chosen by another setting would be opened here, and only here)."""
    return Store.open(config.store_path)


if TYPE_CHECKING:

    def _answers_every_concern(store: Store) -> StoreBackend:
        return store  # mypy checks here that the SQLite Store implements the protocols
