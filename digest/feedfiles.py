"""The feed files over HTTP, fast: an ASGI app that answers most requests with one stat.

Feed readers poll, and nearly every poll is a conditional GET that should end in 304 Not Modified.
Starlette's StaticFiles does several file system calls per request in a worker thread (realpath,
stat) and builds its validators anew each time: ~1,850 304s per second on the 2-core machine,
under the target of 2,000 (bench/serve_speed.py; ~7,700-8,200 with this app). Here a request
costs one stat on the event loop: the validators, the headers and (within a memory budget) the
bytes of each file, plain and gzipped, are kept per version of the file, a version being its
(device, inode, mtime in ns, size). `digest run` replaces a feed by renaming a new file over it
(digest.feeds.write_atomic), so a new version has a new inode.

Served: GET and HEAD of the .rss, .atom and .opml files under the folder, with ETag,
Last-Modified, Cache-Control and `Vary: Accept-Encoding`; If-None-Match (weak comparison, lists,
`*`) and, when it is absent, If-Modified-Since answer 304 (RFC 9110, 13.1 and 13.2.2). A client
whose Accept-Encoding takes gzip (q-values, `*` and `identity` as RFC 9110 12.5.3 has them) gets
the file gzipped, with `Content-Encoding: gzip` and its own ETag (the plain one with `-gzip` inside
the quotes); each version is compressed once, in a worker thread, and a file whose gzip would not
be smaller (a few dozen bytes) is always sent plain. Either ETag of the current version
gets a 304 (see _matched). Anything else gets the app's 404 page (raised as HTTPException, as
StaticFiles does): other names, hidden files (the temp files of write_atomic), folders (no
listings), `..` or empty segments, NUL, and symlinks that lead out of the folder; other methods
get 405. Range requests get the whole file.

With a `source` (digest.web.feeds.StoreFeeds), the files are rows of a PostgreSQL store, not
files in the folder: the same validators and answers, an identity made from the row (its ETag,
modified time and size) instead of a stat, so every replica reading that row answers alike.

With a `personal` hook (digest serve's digest.web.personal), a web subscriber's feed is made
current before it is answered (built when missing or older than its latest digest) and every
200 or 304 of one is reported, so a run builds only the personal feeds someone reads. The other
files cost what they did: the hook is asked only about `profiles/web-...` paths.
"""

from __future__ import annotations

import os
import re
import stat
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from email.utils import formatdate, mktime_tz, parsedate_tz
from hashlib import blake2b
from pathlib import Path
from typing import Protocol

import anyio
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
# On every 200 and 304 of a feed, gzipped or not: a cache keeps the two codings apart.
VARY = b"Accept-Encoding"
# Bytes of file contents (plain and gzipped) kept in memory; past it, what a reader needs for a 200
# is read (and compressed) again.
DEFAULT_MEMORY = 64 * 1024 * 1024
# Once per version, so the smallest output: ~5 ms for a 300 kB feed, which shrinks ~6 times.
GZIP_LEVEL = 9

_ENTITY_TAG = re.compile(rb'(?:W/)?("[^"]*")')
_QVALUE = re.compile(r"(?:0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?)")

Identity = tuple[int, int, int, int]  # st_dev, st_ino, st_mtime_ns, st_size
Headers = tuple[tuple[bytes, bytes], ...]


@dataclass(frozen=True, slots=True)
class Variant:
    """One representation of a file version, plain or gzipped: its ETag and its answers' headers."""

    gzipped: bool
    etag: bytes
    ok_headers: Headers
    not_modified_headers: Headers


@dataclass(frozen=True, slots=True)
class FileVersion:
    """One version of one file: its validators and the headers of its answers, made once."""

    path: Path  # made once: building a Path per request costs more than the stat itself
    identity: Identity
    last_modified: bytes  # an IMF-fixdate, as sent
    modified_at: int  # the mtime in whole seconds, what If-Modified-Since is compared with
    plain: Variant
    gzip: Variant | None  # None when gzip would not make the file smaller


@dataclass(frozen=True, slots=True)
class Accepted:
    """What a request's Accept-Encoding allows (RFC 9110 12.5.3)."""

    gzip: bool  # gzip is acceptable
    identity: bool  # the plain bytes are acceptable
    prefer_gzip: bool  # send gzip when the file has it


NO_FIELD = Accepted(gzip=False, identity=True, prefer_gzip=False)
# Distinct Accept-Encoding values seen, parsed once: clients send few (a browser, a reader or two).
_ACCEPT_CACHE_SIZE = 256
_accept_cache: dict[bytes, Accepted] = {}


class PersonalFeeds(Protocol):
    """What FeedFiles asks about personal feeds (implemented by digest.web.personal)."""

    def profile_of(self, relative: str) -> str | None:
        """The web subscriber whose feed file this path names, or None."""

    async def prepare(self, profile: str, modified_ns: int | None) -> bool:
        """Make the profile's feed current (its file's mtime, None when there is no file):
        True when the file was written now and must be looked at again."""

    def served(self, profile: str) -> None:
        """The profile's feed was answered (200 or 304): someone reads it."""


class FeedFiles:
    """ASGI app serving the feed files under `directory` (mounted at /feeds by digest.web)."""

    def __init__(
        self, directory: str | Path, memory: int = DEFAULT_MEMORY,
        personal: PersonalFeeds | None = None, source: FeedSource | None = None,
    ) -> None:
        self.directory = Path(directory)
        # Where the files are: None, the folder (a stat a request); else a FeedSource (the
        # store's feed_files with PostgreSQL: one query of the validators a request).
        self.source = source
        self.memory = memory
        self.personal = personal
        # Only files that exist get here (one entry per file), so a client cannot grow it.
        self.versions: dict[str, FileVersion] = {}
        # (relative path, gzipped) -> (version identity, bytes); least recently served last; sized
        # by `memory`. A plain and a gzipped body are kept and pushed out independently.
        self.bodies: OrderedDict[tuple[str, bool], tuple[Identity, bytes]] = OrderedDict()
        self.body_bytes = 0
        # Files being read: requests for a new version wait for the one reading it, so a version is
        # compressed once, not once per reader that asked in the same few milliseconds.
        self.loading: dict[str, anyio.Event] = {}

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
        source = self.source
        found = _stat(full) if source is None else await source.stat(relative)
        personal = self.personal
        profile = None if personal is None else personal.profile_of(relative)
        if (
            personal is not None
            and profile is not None
            and await personal.prepare(profile, None if found is None else found[2])
        ):
            found = _stat(full) if source is None else await source.stat(relative, fresh=True)
        if found is None:
            self.forget(relative)
            raise HTTPException(404)

        identity = found
        fresh: tuple[bytes, bytes | None] | None = None  # the bytes, if read for this request
        if version is None or version.identity != identity:
            pending = self.loading.get(relative)
            if pending is not None:
                await pending.wait()
                version = self.versions.get(relative)
        if version is None or version.identity != identity:
            loaded = await self.load(relative, full, content_type, None, True)
            if loaded is None:
                raise HTTPException(404)
            version, plain, compressed = loaded
            fresh = (plain, compressed)

        match_values: list[bytes] = []
        since: bytes | None = None
        accept_values: list[bytes] = []
        for name, value in scope["headers"]:
            if name == b"if-none-match":
                match_values.append(value)
            elif name == b"if-modified-since":
                since = value
            elif name == b"accept-encoding":
                accept_values.append(value)
        accepted = accepted_codings(accept_values)
        variant = _selected(version, accepted)

        held = not_modified(version, variant, accepted, match_values, since)
        if held is not None:
            await send({"type": "http.response.start", "status": 304,
                        "headers": list(held.not_modified_headers)})
            await send({"type": "http.response.body", "body": b""})
            if personal is not None and profile is not None:
                personal.served(profile)
            return
        if fresh is not None:
            body = fresh[1] if variant.gzipped else fresh[0]
        else:
            body = self.cached_body(relative, version, variant.gzipped)
        if body is None:  # never kept, or pushed out of memory by other files: read it again
            loaded = await self.load(relative, full, content_type, version, variant.gzipped)
            if loaded is None:
                raise HTTPException(404)
            version, plain, compressed = loaded  # a new version if the file changed since the stat
            variant = _selected(version, accepted)
            body = compressed if variant.gzipped else plain
        assert body is not None  # a gzip variant's bytes are read with it
        # A fresh list per response: middlewares may change the headers they are given.
        await send({"type": "http.response.start", "status": 200,
                    "headers": list(variant.ok_headers)})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})
        if personal is not None and profile is not None:
            personal.served(profile)

    async def load(
        self, relative: str, full: Path, content_type: bytes, known: FileVersion | None,
        gzipped: bool,
    ) -> tuple[FileVersion, bytes, bytes | None] | None:
        """Read a file, remember its version and keep its bytes; None (and forgotten) if not servable.

        Returns the version, the bytes and the gzipped bytes. A new version is always compressed
        (its gzip headers need the compressed length, and most readers take gzip); the bytes of
        the `known` version, read again, only when `gzipped` ones are wanted.
        """
        done = anyio.Event()
        first = self.loading.setdefault(relative, done) is done
        try:
            # Reading and compressing in a worker thread; the caches change here, on the event loop.
            if self.source is None:
                read = await anyio.to_thread.run_sync(
                    self.read, full, gzipped, None if known is None else known.identity
                )
            else:
                read = await self.source.read(
                    relative, gzipped, None if known is None else known.identity
                )
            if read is None:
                self.forget(relative)
                return None
            identity, modified_at, body, compressed = read
            if known is not None and identity == known.identity:
                version = known
            else:
                assert compressed is not None
                version = _version(full, identity, modified_at, content_type, body, compressed)
                self.versions[relative] = version
            self.keep_body((relative, False), identity, body)
            if version.gzip is None:
                compressed = None  # not smaller: never sent
            elif compressed is not None:
                self.keep_body((relative, True), identity, compressed)
            return version, body, compressed
        finally:
            if first:  # the caches are up to date: the requests waiting for this version go on
                del self.loading[relative]
                done.set()

    def read(
        self, full: Path, compress: bool, known: Identity | None
    ) -> tuple[Identity, int, bytes, bytes | None] | None:
        """The file's identity, mtime in seconds, bytes and gzipped bytes (only if `compress` or
        the file is not the `known` version); None if it is not a regular file in the folder."""
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
        compressed = _gzip(body) if compress or identity != known else None
        return identity, int(opened.st_mtime), body, compressed

    def cached_body(self, relative: str, version: FileVersion, gzipped: bool) -> bytes | None:
        key = (relative, gzipped)
        kept = self.bodies.get(key)
        if kept is None or kept[0] != version.identity:
            return None
        self.bodies.move_to_end(key)
        return kept[1]

    def keep_body(self, key: tuple[str, bool], identity: Identity, body: bytes) -> None:
        self.drop_body(key)
        if len(body) > self.memory:
            return
        self.bodies[key] = (identity, body)
        self.body_bytes += len(body)
        while self.body_bytes > self.memory:
            _, (_, evicted) = self.bodies.popitem(last=False)
            self.body_bytes -= len(evicted)

    def drop_body(self, key: tuple[str, bool]) -> None:
        kept = self.bodies.pop(key, None)
        if kept is not None:
            self.body_bytes -= len(kept[1])

    def forget(self, relative: str) -> None:
        self.versions.pop(relative, None)
        self.drop_body((relative, False))
        self.drop_body((relative, True))


def accepted_codings(values: list[bytes]) -> Accepted:
    """Whether gzip and the plain bytes are acceptable, and which to send (RFC 9110 12.5.3).

    gzip (or its alias x-gzip) is acceptable when listed with a q above 0, or, not listed, when
    `*` is; the plain bytes unless `identity;q=0`, or `*;q=0` with no `identity`. gzip is sent
    when acceptable and its q is not below an `identity` entry's (or `*`'s, standing for it).
    No field at all means no preference: the plain bytes, as most servers do.
    """
    if not values:
        return NO_FIELD
    field = values[0] if len(values) == 1 else b",".join(values)
    accepted = _accept_cache.get(field)
    if accepted is None:
        if len(_accept_cache) >= _ACCEPT_CACHE_SIZE:  # bounded: a client sending junk cannot grow it
            _accept_cache.clear()
        accepted = _accept_cache[field] = _parse_accept_encoding(field)
    return accepted


def _parse_accept_encoding(field: bytes) -> Accepted:
    weights: dict[str, float] = {}
    for element in field.decode("latin-1").split(","):
        coding, *parameters = element.split(";")
        coding = coding.strip().lower()
        if not coding:
            continue
        weight = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                value = value.strip()
                weight = float(value) if _QVALUE.fullmatch(value) else -1.0
        if weight < 0:  # a malformed q: the element is left out, as if not sent
            continue
        if coding == "x-gzip":  # RFC 9110 8.4.1.3: to be taken as gzip
            coding = "gzip"
        weights[coding] = max(weight, weights.get(coding, 0.0))
    star = weights.get("*")
    gzip_q = weights.get("gzip", star)
    identity_q = weights.get("identity", star)
    gzip = gzip_q is not None and gzip_q > 0
    return Accepted(
        gzip=gzip,
        identity=identity_q is None or identity_q > 0,
        prefer_gzip=gzip_q is not None and gzip_q > 0 and gzip_q >= (identity_q or 0.0),
    )


def _selected(version: FileVersion, accepted: Accepted) -> Variant:
    """The representation a 200 would carry. When neither coding is acceptable, the plain bytes
    (RFC 9110 12.5.3 allows that rather than a 415)."""
    if accepted.prefer_gzip and version.gzip is not None:
        return version.gzip
    return version.plain


def not_modified(
    version: FileVersion, selected: Variant, accepted: Accepted, match_values: list[bytes],
    since: bytes | None,
) -> Variant | None:
    """RFC 9110 13.2.2 for GET and HEAD: If-None-Match decides when present, else If-Modified-Since.

    The representation a 304 stands for (its ETag is sent), or None for a 200.
    """
    if match_values:
        return _matched(version, selected, accepted, match_values)
    if since is not None and _not_modified_since(version, since):
        return selected
    return None


def _matched(
    version: FileVersion, selected: Variant, accepted: Accepted, match_values: list[bytes]
) -> Variant | None:
    """If-None-Match, by weak comparison (RFC 9110 8.8.3.2), with either ETag of this version.

    The plain and the gzipped bytes are two representations, so they have two strong ETags (RFC
    9110 8.8.3), but one content: a client holding either is up to date, whichever coding it
    accepts now, and gets a 304 (the common practice: nginx, which marks a gzipped response's ETag
    weak, matches either with the plain one by weak comparison). Which ETag the 304 carries
    tells a cache which stored response it may use (RFC 9111 4.3.4): the one the request selects
    if the client sent it (or `*`); else the one the client holds, when that is acceptable to it
    (a client that held the plain feed and now takes gzip keeps its plain copy: server-driven
    negotiation may pick any acceptable representation, and this one costs no bytes); else the
    selected one (a client that held gzip and now refuses it: a reader that keeps the decoded feed
    is up to date, and a cache holding only the gzipped response finds no match for the ETag and
    must not use the 304 for it, so nothing is served in a coding the client refused).
    """
    etag = selected.etag
    for value in match_values:
        if value == etag:  # what a reader sends back nearly every time
            return selected
    other = version.gzip if selected is version.plain else version.plain
    held_other = False
    for value in match_values:
        if value.strip() == b"*":
            return selected
        for tag in _ENTITY_TAG.findall(value):
            if tag == etag:
                return selected
            if other is not None and tag == other.etag:
                held_other = True
    if not held_other:
        return None
    assert other is not None
    return other if (accepted.gzip if other.gzipped else accepted.identity) else selected


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


def gzip_bytes(body: bytes) -> bytes:
    """A version's gzipped bytes, the same each time (for a FeedSource)."""
    return _gzip(body)


def _gzip(body: bytes) -> bytes:
    # A gzip member with mtime 0 and a fixed level: the same bytes each time a version's file is
    # compressed again, so the Content-Length kept with the version stays true.
    return zlib.compress(body, GZIP_LEVEL, wbits=31)


def _version(
    path: Path, identity: Identity, modified_at: int, content_type: bytes, body: bytes,
    compressed: bytes,
) -> FileVersion:
    # Opaque and short; it changes with any part of the identity.
    digest = blake2b(repr(identity).encode(), digest_size=8).hexdigest()
    last_modified = formatdate(modified_at, usegmt=True).encode()

    def variant(etag: bytes, size: int, coding: Headers) -> Variant:
        return Variant(
            gzipped=bool(coding),
            etag=etag,
            ok_headers=(
                (b"content-type", content_type),
                *coding,
                (b"content-length", str(size).encode()),
                (b"etag", etag),
                (b"last-modified", last_modified),
                (b"cache-control", CACHE_CONTROL),
                (b"vary", VARY),
            ),
            # RFC 9110 15.4.5: a 304 repeats the ETag, Cache-Control and Vary a 200 would have had.
            not_modified_headers=(
                (b"etag", etag), (b"cache-control", CACHE_CONTROL), (b"vary", VARY)
            ),
        )

    plain = variant(f'"{digest}"'.encode(), len(body), ())
    gzip = None
    if len(compressed) < len(body):
        gzip = variant(f'"{digest}-gzip"'.encode(), len(compressed),
                       ((b"content-encoding", b"gzip"),))
    return FileVersion(
        path=path,
        identity=identity,
        last_modified=last_modified,
        modified_at=modified_at,
        plain=plain,
        gzip=gzip,
    )


def _stat(full: Path) -> Identity | None:
    """The identity of the regular file at `full`, or None."""
    try:
        # On the event loop: a stat of a local file takes microseconds, less than a thread hop.
        found = full.stat()
    except (OSError, ValueError):
        return None
    if not stat.S_ISREG(found.st_mode):
        return None
    return (found.st_dev, found.st_ino, found.st_mtime_ns, found.st_size)


class FeedSource(Protocol):
    """Where feed files are when they are not in the folder (digest.web.feeds' StoreFeeds: the
    store's feed_files). An identity is (0, a number from the ETag, modified in ns, size): made
    from the one row every host reads, so every replica derives the same ETag and Last-Modified
    (the version's validators come from the identity alone, see _version)."""

    async def stat(self, relative: str, fresh: bool = False) -> Identity | None:
        """The file's identity, None when there is none; `fresh`: as it is now, not as read a
        moment ago (the personal feed this request just built)."""

    async def read(
        self, relative: str, compress: bool, known: Identity | None
    ) -> tuple[Identity, int, bytes, bytes | None] | None:
        """As FeedFiles.read: identity, modified in whole seconds, bytes, gzipped bytes (when
        `compress` or not the `known` version); None when there is no such file."""


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
