"""Personal feeds in `digest serve`: which are read, and the ones a run left unbuilt, built when asked.

A run builds a web subscriber's feed only if it was read within [output] personal_feed_window
days, or if it is the subscriber's only channel (digest.channels.feed): most subscribers read the
email and never open their feed. So the server, through digest.feedfiles' `personal` hook:

  - remembers, in memory, each personal feed it answered (200 or 304), and writes these read
    marks to the store (feed_reads) in one transaction at most once a minute, and at shutdown;
  - builds a personal feed whose file is missing, or older than the profile's latest digest,
    before answering: with the run's code (channels.feed.build_profile_feed), its digests read
    in the store's thread, the files built in a worker thread and published where the
    deployment's feeds go (feeds_dir from a worker thread; with PostgreSQL, the store's
    feed_files from the store's thread), once however many readers ask at the same time. Only a subscriber's feed is ever built: any other name stays a
    404 and writes nothing, so nobody can fill the disk with made-up names.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread

from digest import feeds, subscriptions
from digest.channels.feed import build_profile_feed, feed_digests
from digest.config import Config
from digest.errors import DigestError
from digest.models import Digest
from digest.render import Renderer
from digest.store import Store

if TYPE_CHECKING:  # digest.web.site makes this object
    from digest.web.site import Clock, StoreThread

# Site.publish_feed: runs what it is given with the deployment's feed target, where it may run.
Publish = Callable[[Callable[[feeds.FeedTarget], list[str]]], Awaitable[list[str]]]

log = logging.getLogger(__name__)

# Read marks are written at most this often (and at shutdown): one transaction for all of them.
FLUSH_SECONDS = 60.0
# A profile's latest digest, once read from the store, is trusted this long: a reader polling
# every few seconds costs no store query each time.
CHECK_AGAIN = timedelta(seconds=60)
# The subscribers whose feed may be built: confirmed and not unsubscribed.
FEED_STATUSES = ("active", "paused")


@dataclass(slots=True)
class _Checked:
    """What the store said of a profile whose feed file exists."""

    at: datetime  # when it was asked
    newest: datetime | None  # the end of its latest digest (None: no digest, or no subscriber)
    built_for: datetime | None = None  # the digest end this process built the feed for

    def stale(self, modified_ns: int) -> bool:
        """A file written before the latest digest was made does not show it (a run that built
        the feed wrote it afterwards). Built once here for that digest: a file whose bytes did
        not change keeps its old mtime (feeds.publish), and is not built again and again."""
        if self.newest is None or self.built_for == self.newest:
            return False
        return modified_ns < _ns(self.newest)


class PersonalFeeds:
    """The `personal` hook of the /feeds app (digest.feedfiles.PersonalFeeds), and the read marks."""

    def __init__(
        self, config: Config, clock: Clock, db: StoreThread, keys: Sequence[str],
        publish: Publish,
    ) -> None:
        self.config = config
        self.publish = publish  # Site.publish_feed: to feeds_dir, or to the store
        self.clock = clock
        self.db = db
        self.keys = tuple(keys)
        self.read: set[str] = set()  # profiles whose feed was answered since the last flush
        self.checked: dict[str, _Checked] = {}  # only profiles whose file exists
        self.building: dict[str, anyio.Event] = {}  # profiles whose feed is being built now

    def profile_of(self, relative: str) -> str | None:
        folder, _, name = relative.partition("/")
        stem, dot, suffix = name.rpartition(".")
        if (
            folder != feeds.PROFILES_FOLDER
            or "/" in name
            or not dot
            or f".{suffix}" not in feeds.SUFFIXES
            or not subscriptions.is_web_profile(stem)
        ):
            return None
        return stem

    def served(self, profile: str) -> None:
        self.read.add(profile)

    async def prepare(self, profile: str, modified_ns: int | None) -> bool:
        """Build the feed if its file is missing or older than the profile's latest digest;
        True when it was written (or another request's build ended), so the file is looked at
        again."""
        if modified_ns is not None:
            now = self.clock()
            checked = self.checked.get(profile)
            if checked is None or now - checked.at >= CHECK_AGAIN:
                newest = await self.db(lambda store: _newest(store, profile))
                checked = self.checked[profile] = _Checked(
                    now, newest, checked.built_for if checked is not None else None
                )
            if not checked.stale(modified_ns):
                return False
        return await self.build(profile, modified_ns is not None)

    async def build(self, profile: str, exists: bool) -> bool:
        pending = self.building.get(profile)
        if pending is not None:  # another request is building it: its files answer this one too
            await pending.wait()
            return True
        done = self.building[profile] = anyio.Event()
        try:
            found = await self.db(lambda store: _feed_of(store, self.config, profile))
            if found is None:  # not a subscriber: what is there (if anything) is served as it is
                if exists:
                    self.checked[profile] = _Checked(self.clock(), None)
                return False
            newest, digests = found
            try:
                # Built in a worker thread (a fresh renderer: its caches are a run's, and this
                # process lives for months), then published where the deployment's feeds go.
                built = await anyio.to_thread.run_sync(
                    build_profile_feed, self.config, Renderer(), profile, digests, self.keys
                )
                files = {built.rss_path: built.rss, built.atom_path: built.atom}
                await self.publish(lambda target: target.publish(files))
            except DigestError as exc:  # feeds.PublishError: the old file, if any, is served
                log.warning("feeds: could not build the feed of %s: %s", profile, exc)
                return False
            log.info("feeds: built the feed of %s on request", profile)
            self.checked[profile] = _Checked(self.clock(), newest, newest)
            return True
        finally:
            del self.building[profile]
            done.set()

    async def flush(self) -> None:
        """Write the read marks gathered so far, in one transaction; kept for the next flush
        if the store cannot take them now."""
        if not self.read:
            return
        marks, self.read = self.read, set()
        at = self.clock()
        try:
            await self.db(lambda store: store.record_feed_reads(sorted(marks), at))
        except DigestError as exc:
            self.read |= marks
            log.warning("feeds: could not record %d feed reads: %s", len(marks), exc)

    async def keep_flushing(self) -> None:
        """Flush the read marks every FLUSH_SECONDS, for as long as the server runs."""
        while True:
            await anyio.sleep(FLUSH_SECONDS)
            await self.flush()


def _newest(store: Store, profile: str) -> datetime | None:
    latest = store.digests(profile, limit=1)
    return latest[0].until if latest else None


def _feed_of(
    store: Store, config: Config, profile: str
) -> tuple[datetime | None, list[Digest]] | None:
    """A subscriber's latest digest end and the digests its feed shows; None if `profile` is
    not a subscriber whose feed may be built."""
    subscriber = store.subscriber(profile)
    if subscriber is None or subscriber.unsubscribed or subscriber.status not in FEED_STATUSES:
        return None
    digests = feed_digests(store, config, profile)
    return (digests[0].until if digests else None), digests


def _ns(moment: datetime) -> int:
    """A moment as a file's st_mtime_ns counts it (exactly: no float on the way)."""
    return (moment - _EPOCH) // timedelta(microseconds=1) * 1000


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
