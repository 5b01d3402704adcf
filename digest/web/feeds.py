"""The feeds over HTTP: the files (digest.feedfiles, with 304s) and the index page at /feeds/.

    GET  /feeds/              the public feeds, where every feed's channel link points
    GET  /feeds/...           the feed files and OPML, with ETag and Last-Modified (304s); a
                              web subscriber's feed is built first when missing or stale, and
                              its reads are recorded (personal.py)
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from digest import feeds
from digest.feedfiles import FeedFiles
from digest.web.pages import bind
from digest.web.site import Site

PUBLIC_FILES = (feeds.ALL_ATOM, feeds.ALL_RSS, feeds.OPML_PATH)


def routes(site: Site) -> list[BaseRoute]:
    site.config.feeds_dir.mkdir(parents=True, exist_ok=True)
    return [
        Route("/feeds/", bind(site, feed_index), methods=["GET", "HEAD"]),
        # A personal feed is built when missing or stale, and its reads are recorded.
        Mount("/feeds", app=FeedFiles(site.config.feeds_dir, personal=site.personal)),
    ]


async def feed_index(site: Site, request: Request) -> Response:
    """The public feeds, so a reader can pick one. A web subscriber's feed is private: its name
    is its address, and it is never listed."""
    folder = site.config.feeds_dir
    found = [name for name in PUBLIC_FILES if (folder / name).is_file()]
    profiles = folder / feeds.PROFILES_FOLDER
    if profiles.is_dir():
        found += sorted(
            f"{feeds.PROFILES_FOLDER}/{path.name}" for path in profiles.iterdir()
            if path.suffix in feeds.SUFFIXES and not path.name.startswith("web-")
        )
    if not found:
        return site.notice(200, "Feeds", "No feed is published yet: the next `digest run` writes them.")
    return site.notice(200, "Feeds", "Subscribe to one in your feed reader (Atom or RSS), or import "
                       "feeds.opml to have them all. New papers of every source are in all.atom.",
                       links=tuple((name, feeds.feed_url(site.base, name)) for name in found))
