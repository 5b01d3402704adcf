"""Retention: the store keeps [store] keep_days days of what it no longer needs.

Once a day, at the end of a run (`after_run`), `Store.prune` deletes the digests of older days with
their items and ledger rows, old runs, stale HTTP validators and old short links; a digest a
delivery still owes is kept whatever its age, and papers are never pruned. The same run keeps a
daily sample of the store's size, from which `digest status` tells how fast it grows.
`digest store vacuum` prunes at once and gives the freed pages back to the file system.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from digest.config import Config
from digest.errors import StoreError
from digest.store import MaintenanceStore, PruneReport

log = logging.getLogger(__name__)
PRUNED_AT = "pruned_at"  # the store's meta key: when it was last pruned (UTC, ISO)
GROWTH_DAYS = 7  # growth is measured over this many days of samples


def cutoff(config: Config, now: datetime) -> datetime:
    """What is older than this goes."""
    return now.astimezone(UTC) - timedelta(days=config.store.keep_days)


def prune(config: Config, store: MaintenanceStore, now: datetime) -> PruneReport:
    """Prune now, whenever it last happened; keep today's size sample."""
    report = store.prune(cutoff(config, now), now)
    store.record_size(now)
    return report


def last_pruned(store: MaintenanceStore) -> datetime | None:
    value = store.meta(PRUNED_AT)
    return datetime.fromisoformat(value) if value else None


def after_run(config: Config, store: MaintenanceStore, now: datetime) -> PruneReport | None:
    """At the end of a run that started `now`: prune, unless it was done today already (UTC).
    Logs one line when something went; a failure is logged and never fails the run (the next
    one tries again)."""
    last = last_pruned(store)
    if last is not None and last.astimezone(UTC).date() >= now.astimezone(UTC).date():
        return None
    try:
        report = prune(config, store, now)
    except StoreError as exc:
        log.warning("could not prune the store: %s", exc)
        return None
    if report.removed or report.kept_unfinished:
        log.info("%s", report.line())
    return report


@dataclass(frozen=True, slots=True)
class StoreStatus:
    """The store's line in `digest status`."""

    file_bytes: int  # the file and its -wal
    wal_bytes: int
    digests: int
    deliveries: int
    keep_days: int
    pruned_at: datetime | None
    growth_per_day: float | None  # bytes in use, a day, over the last GROWTH_DAYS days

    def line(self) -> str:
        text = (
            f"store: {human_bytes(self.file_bytes)}"
            + (f" ({human_bytes(self.wal_bytes)} of it -wal)" if self.wal_bytes else "")
            + f", {self.digests:,} digest{'' if self.digests == 1 else 's'} and "
            + f"{self.deliveries:,} ledger row{'' if self.deliveries == 1 else 's'}"
            + f" kept ({self.keep_days} days; "
            + (f"pruned {self.pruned_at:%Y-%m-%d %H:%M %Z})" if self.pruned_at else "not pruned yet)")
        )
        if self.growth_per_day is not None:
            sign = "+" if self.growth_per_day >= 0 else "-"
            text += f"; {sign}{human_bytes(abs(self.growth_per_day))} a day over the last week"
        return text


def store_status(config: Config, store: MaintenanceStore, now: datetime) -> StoreStatus:
    size = store.size()
    samples = store.size_samples((now.astimezone(UTC) - timedelta(days=GROWTH_DAYS)).date())
    growth = None
    if len(samples) >= 2 and samples[-1].day > samples[0].day:
        days = (samples[-1].day - samples[0].day).days
        growth = (samples[-1].used_bytes - samples[0].used_bytes) / days
    # Counting a large ledger takes seconds, and a health check calls this often: the counts
    # of the newest sample (taken by the day's prune); counted now only when there is none.
    if samples:
        digests, deliveries = samples[-1].digests, samples[-1].deliveries
    else:
        digests, deliveries = store.kept_counts()
    return StoreStatus(
        file_bytes=size.total_bytes,
        wal_bytes=size.wal_bytes,
        digests=digests,
        deliveries=deliveries,
        keep_days=config.store.keep_days,
        pruned_at=last_pruned(store),
        growth_per_day=growth,
    )


def human_bytes(count: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    raise AssertionError("unreachable")
