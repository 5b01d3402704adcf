"""The feeds over HTTP: the files (digest.feedfiles, with 304s) and the index page at /feeds/.

    GET  /feeds/              the public feeds, where every feed's channel link points
    GET  /feeds/...           the feed files and OPML, with ETag and Last-Modified (304s), from
                              feeds_dir, or with a PostgreSQL store from its feed_files (every
                              replica answers the same bytes and validators: StoreFeeds); a
                              web subscriber's feed is built first when missing or stale, and
                              its reads are recorded (personal.py)
"""

from __future__ import annotations

import time
from datetime import datetime

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from digest import feeds, subscriptions
from digest.feedfiles import FeedFiles, Identity, gzip_bytes
from digest.web.pages import bind
from digest.web.personal import _ns
from digest.web.site import Site

PUBLIC_FILES = (feeds.ALL_ATOM, feeds.ALL_RSS, feeds.OPML_PATH)


def routes(site: Site) -> list[BaseRoute]:
    source = None
    if site.feeds_in_store:
        source = StoreFeeds(site)
    else:
        site.config.feeds_dir.mkdir(parents=True, exist_ok=True)
    return [
        Route("/feeds/", bind(site, feed_index), methods=["GET", "HEAD"]),
        # A personal feed is built when missing or stale, and its reads are recorded.
        Mount("/feeds", app=FeedFiles(site.config.feeds_dir, personal=site.personal, source=source)),
    ]


# How long a feed's validators, read from the store, are trusted: readers polling a feed cost
# one query a second, not one a request; a run's new version is served by every replica within
# this long. bench/serve_speed.py --store postgresql, 2 cores: 12,700 304s/s (8,900 gzipped), as
# from files (12,500); with a query on the store's one thread for each, 5,600 (4,500).
FRESH_S = 1.0


class StoreFeeds:
    """The feed files of a PostgreSQL store (feed_files), for FeedFiles: its validators read
    from the store at most once every FRESH_S seconds per feed (one small query on the store's
    thread), its bytes when a version is new to this process."""

    def __init__(self, site: Site) -> None:
        self.site = site
        # path -> (when read, by time.monotonic; its identity): only feeds that exist, so a
        # client asking for made-up names cannot grow it
        self.heads: dict[str, tuple[float, Identity]] = {}

    async def stat(self, relative: str, fresh: bool = False) -> Identity | None:
        known = self.heads.get(relative)
        now = time.monotonic()
        if known is not None and not fresh and now - known[0] < FRESH_S:
            return known[1]
        head = await self.site.db(lambda store: store.feed_file_head(relative))
        if head is None:
            self.heads.pop(relative, None)
            return None
        identity = _identity(head.etag, head.modified, head.size)
        self.heads[relative] = (now, identity)
        return identity

    async def read(
        self, relative: str, compress: bool, known: Identity | None
    ) -> tuple[Identity, int, bytes, bytes | None] | None:
        found = await self.site.db(lambda store: store.feed_file(relative))
        if found is None:
            return None
        identity = _identity(found.etag, found.modified, len(found.body))
        compressed = None
        if compress or identity != known:
            compressed = await anyio.to_thread.run_sync(gzip_bytes, found.body)
        return identity, int(found.modified.timestamp()), found.body, compressed


def _identity(etag: str, modified: datetime, size: int) -> Identity:
    """A stored file's identity, from its row alone (the same on every replica)."""
    return (0, int(etag[:15], 16), _ns(modified), size)


async def feed_index(site: Site, request: Request) -> Response:
    """The public feeds, so a reader can pick one. A web subscriber's feed is private: its name
    is its address, and it is never listed."""
    folder = site.config.feeds_dir
    if site.feeds_in_store:
        public = [*PUBLIC_FILES, *(
            path for profile in site.config.profiles
            if not subscriptions.is_web_profile(profile.name)
            for path in feeds.profile_feed_paths(profile.name)
        )]
        kept = await site.db(lambda store: store.feed_files_modified(public))
        found = [name for name in PUBLIC_FILES if name in kept]
        found += sorted(name for name in public[len(PUBLIC_FILES):] if name in kept)
    else:
        found = [name for name in PUBLIC_FILES if (folder / name).is_file()]
    profiles = folder / feeds.PROFILES_FOLDER
    if not site.feeds_in_store and profiles.is_dir():
        found += sorted(
            f"{feeds.PROFILES_FOLDER}/{path.name}" for path in profiles.iterdir()
            if path.suffix in feeds.SUFFIXES and not path.name.startswith("web-")
        )
    if not found:
        return site.notice(200, "Feeds", "No feed is published yet: the next `digest run` writes them.")
    return site.notice(200, "Feeds", "Subscribe to one in your feed reader (Atom or RSS), or import "
                       "feeds.opml to have them all. New papers of every source are in all.atom.",
                       links=tuple((name, feeds.feed_url(site.base, name)) for name in found))
