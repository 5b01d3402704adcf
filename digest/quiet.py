"""An idle run's shortcut: "nothing is due before T", remembered by the last run that looked.

A scheduled job runs every hour or so, and most runs find nothing to do. Finding that out takes
every profile (config.toml's, and the web subscribers in the store: reading 100,000 of them costs
seconds) and a look at every feed's files. So a run that went through them all remembers, in the
store, when the next digest falls due and what it saw: a hash of config.toml, the count of changes
to the web subscribers (kept by triggers, whoever writes), the newest paper, when the feed folders
last changed, and that no delivery was left open. A later run before that moment that sees the same is idle without reading a single
profile (issue 16: an idle run of 100,000 profiles in at most 1 s).

    remember(config, store, profiles, now)   at the end of a run over every profile
    quiet_until(config, store, now)          at the start of the next: the moment, or None

What makes a run look again: the moment passing (the earliest next slot of any profile, an
uncertain delivery's quarantine ending, or the next UTC day, when retention prunes), config.toml
changing, a subscriber signing up, confirming, pausing, editing or leaving, a new paper (the
all-papers feed changes), a feed file deleted or added (`digest serve` building a personal feed
someone asked for is one), or any delivery open (pending, deferred or being sent). `digest run
--now`, `-p PROFILE` and a fetch that finds papers always look.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta

from digest import __version__
from digest.compose import next_slot
from digest.config import Config, ProfileConfig
from digest.errors import StoreError
from digest.feeds import PROFILES_FOLDER
from digest.models import DigestHead
from digest.store import Store

log = logging.getLogger(__name__)

QUIET = "quiet"  # the store's meta key: {"until": ISO instant, "seen": what the run saw}


def quiet_until(config: Config, store: Store, now: datetime) -> datetime | None:
    """When the next digest falls due, if nothing changed since the last full run said so and
    that moment is still ahead; None: the run must look at every profile."""
    try:
        kept = json.loads(store.meta(QUIET) or "null")
        until = datetime.fromisoformat(kept["until"])
        seen = kept["seen"]
    except (TypeError, KeyError, ValueError):  # none kept yet, or by another version
        return None
    if now >= until or seen != _seen(config, store.quiet_facts()):
        return None
    return until


def remember(
    config: Config,
    store: Store,
    profiles: Iterable[ProfileConfig],
    now: datetime,
) -> datetime | None:
    """After a run over every profile: keep when the next one falls due and what this run saw
    (nothing, when a delivery is still open: the next run must try it). Never fails the run."""
    try:
        facts = store.quiet_facts()
        seen = _seen(config, facts)
        if seen is None:
            store.set_meta(QUIET, None)
            return None
        heads = store.digest_heads()
        # The next UTC day: retention prunes once a day (digest.retention.after_run).
        until = datetime.combine(now.astimezone(UTC).date() + timedelta(days=1), time(), UTC)
        _, uncertain, _, _ = facts
        if uncertain is not None:  # its quarantine's end is when a run may send it again
            until = min(until, uncertain + config.delivery.uncertain_quarantine)
        for profile in profiles:
            head = heads.get(profile.name)
            slot = _next_slot(
                profile.timezone, profile.deliver_at, profile.frequency, profile.weekday,
                head.day if head else None, now,
            )
            if slot is None:  # no slot in the days ahead: not a schedule to count on
                store.set_meta(QUIET, None)
                return None
            until = min(until, slot)
        store.set_meta(QUIET, json.dumps({"until": until.isoformat(), "seen": seen}))
        return until
    except (StoreError, OSError) as exc:
        log.warning("could not keep when the next digest is due: %s", exc)
        return None


def _seen(
    config: Config, facts: tuple[bool, datetime | None, str, str]
) -> list[str] | None:
    """What decides whether anything could be due (`facts`: Store.quiet_facts()): None while a
    delivery is open."""
    open_rows, _, newest, subscribers = facts
    if open_rows:
        return None
    try:
        configured = hashlib.blake2b(config.path.read_bytes(), digest_size=16).hexdigest()
    except OSError:  # a config not read from a file (or gone): always look
        return None
    return [__version__, configured, newest, subscribers, *_folders(config)]


def _folders(config: Config) -> list[str]:
    """When the feed folders last changed: a feed file deleted (or added) by hand changes its
    folder, and the next run looks, and writes it again."""
    changed = []
    for folder in (config.feeds_dir, config.feeds_dir / PROFILES_FOLDER):
        try:
            changed.append(str(folder.stat().st_mtime_ns))
        except OSError:
            changed.append("")
    return changed


# Profiles share a few schedules: their next slots are worked out once a schedule and last day.
@functools.lru_cache(maxsize=4096)
def _next_slot(
    timezone: str, deliver_at: str, frequency: str, weekday: str, last_day: date | None,
    now: datetime,
) -> datetime | None:
    schedule = ProfileConfig(
        name="", timezone=timezone, deliver_at=deliver_at, frequency=frequency, weekday=weekday
    )
    previous = DigestHead("", last_day, now) if last_day is not None else None
    return next_slot(schedule, now, previous)
