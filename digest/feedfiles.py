"""The feed files over HTTP, fast: an ASGI app that answers most requests with one stat.

Feed readers poll, and nearly every poll is a conditional GET that should end in 304 Not Modified.
Starlette's StaticFiles does several file system calls per request in a worker thread (realpath,
stat) and builds its validators anew each time: ~1,850 304s per second on the 2-core machine,
under the target of 2,000 (bench/serve_speed.py; ~7,700-8,200 with this app). Here a request
costs one stat on the event loop: the validators, the headers and (within a memory budget) the
bytes of each file are kept per version of the file, a version being its (device, inode, mtime in
ns, size). `digest run` replaces a feed by renaming a new file over it
(digest.feeds.write_atomic), so a new version has a new inode.

Served: GET and HEAD of the .rss, .atom and .opml files under the folder, with ETag,
Last-Modified and Cache-Control; If-None-Match (weak comparison, lists, `*`) and, when it is
absent, If-Modified-Since answer 304 (RFC 9110, 13.1 and 13.2.2). Anything else gets the app's
404 page (raised as HTTPException, as StaticFiles does): other names, hidden files (the temp files
of write_atomic), folders (no listings), `..` or empty segments, NUL, and symlinks that lead out
of the folder; other methods get 405. Range requests get the whole file.
"""

from __future__ import annotations

import os
import re
import stat
from collections import OrderedDict
from dataclasses import dataclass
from email.utils import formatdate, mktime_tz, parsedate_tz
from hashlib import blake2b
from pathlib import Path

import anyio.to_thread
from starlette.exceptions import HTTPException
from starlette.types import Receive, Scope, Send

# Only what digest.feeds publishes. Types with no charset parameter are XML, which names its own.
CONTENT_TYPES = {
    ".rss": b"application/rss+xml",
    ".atom": b"application/atom+xml",
    ".opml": b"text/x-opml; charset=utf-8",
}
# Readers may reuse a feed for 5 minutes without asking; a run publishes at most a few times a day.
CACHE_CONTROL = b"public, max-age=300"
# Bytes of file contents kept in memory; files past it are read again when a reader needs a 200.
DEFAULT_MEMORY = 64 * 1024 * 1024

_ENTITY_TAG = re.compile(rb'(?:W/)?("[^"]*")')

Identity = tuple[int, int, int, int]  # st_dev, st_ino, st_mtime_ns, st_size
Headers = tuple[tuple[bytes, bytes], ...]


@dataclass(frozen=True, slots=True)
class FileVersion:
    """One version of one file: its validators and the headers of its answers, made once."""

    path: Path  # made once: building a Path per request costs more than the stat itself
    identity: Identity
    etag: bytes
    last_modified: bytes  # an IMF-fixdate, as sent
    modified_at: int  # the mtime in whole seconds, what If-Modified-Since is compared with
    ok_headers: Headers
    not_modified_headers: Headers


class FeedFiles:
    """ASGI app serving the feed files under `directory` (mounted at /feeds by digest.web)."""

    def __init__(self, directory: str | Path, memory: int = DEFAULT_MEMORY) -> None:
        self.directory = Path(directory)
        self.memory = memory
        # Only files that exist get here (one entry per file), so a client cannot grow it.
        self.versions: dict[str, FileVersion] = {}
        # Least recently served last; sized by `memory`.
        self.bodies: OrderedDict[str, tuple[Identity, bytes]] = OrderedDict()
        self.body_bytes = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        method = scope["method"]
        if method not in ("GET", "HEAD"):
            raise HTTPException(405, headers={"Allow": "GET, HEAD"})
        relative = _relative_path(scope)
        if relative is None:
            raise HTTPException(404)
        content_type = CONTENT_TYPES.get("." + relative.rpartition(".")[2])
        if content_type is None:
            raise HTTPException(404)
        version = self.versions.get(relative)
        full = self.directory / relative if version is None else version.path
        try:
            # On the event loop: a stat of a local file takes microseconds, less than a thread hop.
            found = full.stat()
        except (OSError, ValueError):
            found = None
        if found is None or not stat.S_ISREG(found.st_mode):
            self.forget(relative)
            raise HTTPException(404)

        identity = (found.st_dev, found.st_ino, found.st_mtime_ns, found.st_size)
        body = None
        if version is None or version.identity != identity:
            loaded = await self.load(relative, full, content_type)
            if loaded is None:
                raise HTTPException(404)
            version, body = loaded

        if not_modified(version, scope["headers"]):
            await send({"type": "http.response.start", "status": 304,
                        "headers": list(version.not_modified_headers)})
            await send({"type": "http.response.body", "body": b""})
            return
        if body is None:
            body = self.cached_body(relative, version)
        if body is None:  # pushed out of memory by other files: read it again
            loaded = await self.load(relative, full, content_type)
            if loaded is None:
                raise HTTPException(404)
            version, body = loaded
        # A fresh list per response: middlewares may change the headers they are given.
        await send({"type": "http.response.start", "status": 200,
                    "headers": list(version.ok_headers)})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})

    async def load(
        self, relative: str, full: Path, content_type: bytes
    ) -> tuple[FileVersion, bytes] | None:
        """Read a new version of a file and remember it; None (and forgotten) if not servable."""
        # The reading in a worker thread; the caches are changed here, on the event loop only.
        read = await anyio.to_thread.run_sync(self.read, full)
        if read is None:
            self.forget(relative)
            return None
        identity, modified_at, body = read
        version = _version(full, identity, modified_at, len(body), content_type)
        self.versions[relative] = version
        self.keep_body(relative, identity, body)
        return version, body

    def read(self, full: Path) -> tuple[Identity, int, bytes] | None:
        try:
            # Once per version, so its cost does not matter: the file, symlinks followed, must
            # really lie in the folder.
            if not full.resolve().is_relative_to(self.directory.resolve()):
                return None
            # The validators come from the open file itself: a rename over the path after the
            # caller's stat cannot pair the old bytes with the new version, or the other way.
            with full.open("rb") as handle:
                opened = os.fstat(handle.fileno())
                if not stat.S_ISREG(opened.st_mode):
                    return None
                body = handle.read()
        except (OSError, ValueError, RuntimeError):  # RuntimeError: a symlink loop (Python < 3.13)
            return None
        identity = (opened.st_dev, opened.st_ino, opened.st_mtime_ns, opened.st_size)
        return identity, int(opened.st_mtime), body

    def cached_body(self, relative: str, version: FileVersion) -> bytes | None:
        kept = self.bodies.get(relative)
        if kept is None or kept[0] != version.identity:
            return None
        self.bodies.move_to_end(relative)
        return kept[1]

    def keep_body(self, relative: str, identity: Identity, body: bytes) -> None:
        self.drop_body(relative)
        if len(body) > self.memory:
            return
        self.bodies[relative] = (identity, body)
        self.body_bytes += len(body)
        while self.body_bytes > self.memory:
            _, (_, evicted) = self.bodies.popitem(last=False)
            self.body_bytes -= len(evicted)

    def drop_body(self, relative: str) -> None:
        kept = self.bodies.pop(relative, None)
        if kept is not None:
            self.body_bytes -= len(kept[1])

    def forget(self, relative: str) -> None:
        self.versions.pop(relative, None)
        self.drop_body(relative)


def not_modified(version: FileVersion, headers: list[tuple[bytes, bytes]]) -> bool:
    """RFC 9110 13.2.2 for GET and HEAD: If-None-Match decides when present, else If-Modified-Since."""
    match_values: list[bytes] = []
    since: bytes | None = None
    for name, value in headers:
        if name == b"if-none-match":
            match_values.append(value)
        elif name == b"if-modified-since":
            since = value
    if match_values:
        return any(_etag_matches(version.etag, value) for value in match_values)
    if since is not None:
        return _not_modified_since(version, since)
    return False


def _etag_matches(etag: bytes, field: bytes) -> bool:
    """Weak comparison (RFC 9110 8.8.3.2) of our ETag with an If-None-Match field's list, or `*`."""
    if field == etag:  # what a reader sends back nearly every time
        return True
    if field.strip() == b"*":
        return True
    return any(tag == etag for tag in _ENTITY_TAG.findall(field))


def _not_modified_since(version: FileVersion, field: bytes) -> bool:
    if field == version.last_modified:  # the reader sent back what it was given
        return True
    try:
        parsed = parsedate_tz(field.decode("latin-1"))
    except (ValueError, IndexError):
        return False
    if parsed is None:  # not an HTTP-date: the field is ignored (RFC 9110 13.1.3)
        return False
    return version.modified_at <= mktime_tz(parsed)


def _version(
    path: Path, identity: Identity, modified_at: int, size: int, content_type: bytes
) -> FileVersion:
    # Opaque and short; it changes with any part of the identity.
    digest = blake2b(repr(identity).encode(), digest_size=8).hexdigest()
    etag = f'"{digest}"'.encode()
    last_modified = formatdate(modified_at, usegmt=True).encode()
    return FileVersion(
        path=path,
        identity=identity,
        etag=etag,
        last_modified=last_modified,
        modified_at=modified_at,
        ok_headers=(
            (b"content-type", content_type),
            (b"content-length", str(size).encode()),
            (b"etag", etag),
            (b"last-modified", last_modified),
            (b"cache-control", CACHE_CONTROL),
        ),
        # RFC 9110 15.4.5: a 304 repeats the ETag and Cache-Control a 200 would have had.
        not_modified_headers=((b"etag", etag), (b"cache-control", CACHE_CONTROL)),
    )


def _relative_path(scope: Scope) -> str | None:
    """The path below the mount point, or None when it is not a plain relative path of names."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    if not path.startswith("/"):
        return None
    relative = path[1:]
    # Each segment a plain, visible name: no "", ".", "..", no hidden (temp) files, no "\", no NUL.
    for segment in relative.split("/"):
        if not segment or segment.startswith(".") or "\\" in segment or "\x00" in segment:
            return None
    return relative

