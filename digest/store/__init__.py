"""The only place that talks SQL: the store, split by concern behind protocols.

    protocols.py    what a store answers, one Protocol per concern, StoreBackend all of them
    diff.py         the identity diff, pure: stored papers + records -> what to write
    schema.py       the ordered migrations and how a store is brought up to date
    dialect.py      the connection the concerns' SQL runs on, and the bits of SQL that differ
    sqlite.py       opening the SQLite file; `Store`, the concerns below composed
    postgres.py     the PostgreSQL store: `Store` on an adapter over psycopg (issue 17)
    papers.py  runs.py  digests.py  ledger.py  subscribers.py  feedback.py  maintenance.py
    shared.py (what hosts share: feed files, signing keys, rate counts, source claims)
                    one concern each: its tables, its SQL, a mixin of `Store`

`open_store(config)` is the one place a store is opened from the configuration (and so where a
backend is chosen); other modules name `Store` (or a protocol) only as a type.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from digest.config import Config
from digest.errors import StoreError
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
    SharedStore,
    StoreBackend,
    SubscriberStore,
)
from digest.store.runs import KEEP_SOURCE_RUNS
from digest.store.schema import MIGRATIONS, SCHEMA_VERSION
from digest.store.shared import FeedFile, FeedFileHead, SourceClaim
from digest.store.sqlite import Store

__all__ = [
    "KEEP_SOURCE_RUNS",
    "MIGRATIONS",
    "PRUNE_BATCH",
    "SCHEMA_VERSION",
    "UNFINISHED_DELIVERIES",
    "DigestStore",
    "FeedFile",
    "FeedFileHead",
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
    "SharedStore",
    "SizeSample",
    "SourceClaim",
    "Store",
    "StoreBackend",
    "StoreSize",
    "SubscriberStore",
    "is_postgresql_url",
    "open_store",
    "open_store_at",
    "plan_ingest",
]


def open_store(config: Config) -> Store:
    """The store `config` names, open and migrated: the PostgreSQL database of `[store] url`
    (or url_env), else the SQLite file at `config.store_path`. The one place a backend is
    chosen."""
    if config.store.postgresql:
        try:
            from digest.store.postgres import PostgresStore, target_from_config
        except ImportError as exc:
            raise StoreError(
                f"[store] url names a PostgreSQL database, which needs psycopg ({exc}): "
                "pip install 'paperdigest[postgresql]'"
            ) from None
        return PostgresStore.connect(target_from_config(config.store))
    return Store.open(config.store_path)


def is_postgresql_url(target: str) -> bool:
    """Whether `target` (of `digest store copy --to`) names a PostgreSQL database, not a file."""
    return target.startswith(("postgresql://", "postgres://"))


def open_store_at(target: str) -> Store:
    """The store at `target`, open and migrated: a `postgresql://` URL (its password in the URL
    or libpq's PGPASSWORD / ~/.pgpass), else the path of a SQLite file (made if missing). For
    `digest store copy`, which names a store outside the configuration."""
    if is_postgresql_url(target):
        try:
            from digest.store.postgres import PgTarget, PostgresStore
        except ImportError as exc:
            raise StoreError(
                f"{target.partition('://')[0]}:// names a PostgreSQL database, which needs "
                f"psycopg ({exc}): pip install 'paperdigest[postgresql]'"
            ) from None
        return PostgresStore.connect(PgTarget(target))
    from pathlib import Path

    return Store.open(Path(target).expanduser())


if TYPE_CHECKING:
    from digest.store.postgres import PostgresStore

    def _answers_every_concern(store: Store) -> StoreBackend:
        return store  # mypy checks here that the SQLite Store implements the protocols

    def _postgresql_answers_every_concern(store: PostgresStore) -> StoreBackend:
        return store  # and the PostgreSQL one
