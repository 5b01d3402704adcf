"""Digests -> RSS 2.0 and Atom files (digest.feedxml), plus an OPML list of them, written atomically.

Feeds are rebuilt from stored data on every run, and must not change when the data did not: an
item's id is the paper's key (never a version or a time), every date comes from the store (when
the digest was composed, when the paper was first seen), and nothing reads the clock. A file whose
bytes did not change is not rewritten, so its mtime (a web server's Last-Modified) stays put.
An entry's dates depend on its own digest and place in it only, so newer days never move them.

A profile's entry is written once, like a sent email. When a profile gets a new digest, its feed
is rebuilt from the new digest's entries and its older days' entries as its files hold them
(`previous`), not rendered again: each day's entries follow a comment
    <!-- paperdigest-day DAY FINGERPRINT CHECKSUM -->
where FINGERPRINT hashes everything that decided those bytes and is known without the digest's
items (ENTRY_FORMAT, the release, the renderer's templates, the feeds' and the links' addresses, an
id of the signing key (a MAC under it, never the key), the profile, the day and the digest's end)
and CHECKSUM the entries as written. A day is taken from the files only when both files hold it
with the fingerprint it would have now and intact, it is still in the window (its digest among
those given) and wholly shown (a day cut by max_items is rendered); at any doubt (a file
missing, unreadable, damaged, edited, of an older format) the day or the whole feed is rendered,
giving the same bytes a full rebuild gives, and reading the files never fails the feed. The
trade, deliberate: a paper whose text is corrected later (a new title, a fixed abstract) keeps
its first text in the entries already written, as in the emails already sent; the new text shows
in the digests to come, and in every entry once a fingerprint input changes (a new release, new
templates, a new key).

Where they go (`target`): with a SQLite store, files in feeds_dir (served as-is by any web
server); with a PostgreSQL store, rows of the store (`InStore`), so that every `digest serve`
replica on every host answers the same bytes and validators without a shared volume. Layout
(paths relative to feeds_dir, the same in both):
    all.rss  all.atom                  every new paper of the last days, newest first
    profiles/NAME.rss  NAME.atom       one profile's digests of the last days, best first per day,
                                       each item with the profile's feedback links
    feeds.opml                         every feed above, for a reader's "import"
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import re
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from stat import S_ISREG
from typing import TYPE_CHECKING, Protocol
from urllib.parse import quote
from weakref import WeakKeyDictionary
from xml.etree import ElementTree

from markupsafe import escape

from digest import __version__, durable, feedxml
from digest.errors import DeliveryError, StoreError
from digest.models import Digest, Paper, Reasons, ScoredPaper
from digest.render import FeedbackLinks, Renderer
from digest.text import one_line

if TYPE_CHECKING:
    from digest.store.protocols import SharedStore

log = logging.getLogger(__name__)

# When there is nothing at all to date a feed by: a fixed instant, never the clock.
_NO_DATA = datetime(1970, 1, 1, tzinfo=UTC)

# -- where the files go: the one place that knows (pipeline, status, web and the emails ask here) --

ALL_RSS, ALL_ATOM = "all.rss", "all.atom"
OPML_PATH = "feeds.opml"
PROFILES_FOLDER = "profiles"
SUFFIXES = (".rss", ".atom")
URL_PATH = "/feeds"  # where feeds_dir is served, under the base URL
PROBLEM_PART = "feeds"  # the part named in the store's problems when the files cannot be written


def profile_feed_paths(profile: str) -> tuple[str, str]:
    """Where a profile's RSS and Atom files go, relative to feeds_dir."""
    return f"{PROFILES_FOLDER}/{profile}.rss", f"{PROFILES_FOLDER}/{profile}.atom"


def published_paths(profiles: Iterable[str]) -> list[str]:
    """Every file a cycle publishes for these profiles, relative to feeds_dir."""
    return [ALL_RSS, ALL_ATOM, OPML_PATH] + [
        path for profile in profiles for path in profile_feed_paths(profile)
    ]


def feeds_url(base_url: str) -> str:
    """Where feeds_dir is served: the base of every feed's address."""
    return f"{base_url}{URL_PATH}"


def feed_url(base_url: str, relative: str) -> str:
    """The public address of a feed file (`relative` to feeds_dir)."""
    return f"{feeds_url(base_url)}/{relative}"


def on_disk(feeds_dir: Path, paths: Iterable[str]) -> bool:
    """Whether every one of these files is there (a folder that cannot be read: no)."""
    try:
        return all((feeds_dir / path).is_file() for path in paths)
    except OSError:
        return False


@dataclass(frozen=True, slots=True)
class FeedFiles:
    """One feed in both formats: where each is published, and its bytes."""

    name: str  # "all" or the profile's name
    title: str
    rss_path: str  # relative to feeds_dir, with "/" separators
    atom_path: str
    rss: bytes
    atom: bytes


def item_id(paper_key: str) -> str:
    """The stable id of a paper in every feed: its key, as a URN."""
    return "urn:paperdigest:paper:" + quote(paper_key, safe=":")


def profile_feed(
    profile: str,
    digests: Sequence[Digest],
    renderer: Renderer,
    base_url: str,
    max_items: int,
    feedback: FeedbackLinks | None = None,
    previous: WrittenFeed | None = None,
) -> FeedFiles:
    """A profile's feed: the papers of its recent digests, newest digest first, best first.

    With `feedback` (the profile's), each item ends with its "More like this" and "Not relevant"
    links, as in the email. The links are signed, not random, so the bytes stay the same.
    With `previous` (the profile's files as published), a digest's entries written there under
    a marker that still matches are taken as they are instead of rendered again (see the
    module's docstring): the same bytes as rendering them.
    """
    if feedback is not None and feedback.profile != profile:
        raise ValueError(f"feedback links of {feedback.profile!r} in the feed of {profile!r}")
    inputs = _entry_inputs(renderer, base_url, feedback)
    written = _written_days(previous, profile)
    rss_items: list[bytes] = []
    atom_entries: list[bytes] = []
    room = max_items
    for digest in sorted(digests, key=lambda d: d.day, reverse=True):
        shown = digest.items[:room]
        room -= len(shown)
        if not shown:
            continue
        # A day cut short by max_items is never taken from a file: next time it may hold more.
        fingerprint = (
            _fingerprint(inputs, profile, digest)
            if len(shown) == len(digest.items)
            else _PARTIAL
        )
        found = written.get(digest.day)
        if fingerprint != _PARTIAL and found is not None and found.fingerprint == fingerprint:
            rss_block, atom_block = found.rss, found.atom
        else:
            rss_block, atom_block = _entries_utf8(
                profile,
                [
                    # The digest's time, a second earlier for each paper before it (_stamp).
                    (item, _stamp(digest.until, position - 1), position)
                    for position, item in enumerate(shown, start=1)
                ],
                renderer,
                base_url,
                feedback,
            )
        rss_items += (_marker(_RSS_INDENT, digest.day, fingerprint, rss_block), rss_block)
        atom_entries += (_marker(_ATOM_INDENT, digest.day, fingerprint, atom_block), atom_block)
    return _feed_files(
        name=profile,
        title=profile_feed_title(profile),
        subtitle=f"New research papers chosen for the {profile} profile, with the reasons why.",
        paths=profile_feed_paths(profile),
        updated=max((d.until for d in digests), default=_NO_DATA),
        base_url=base_url,
        rss_items=rss_items,
        atom_entries=atom_entries,
    )


def all_papers_feed(
    papers: Sequence[Paper], renderer: Renderer, base_url: str, max_items: int
) -> FeedFiles:
    """Every newly seen paper, newest first: for readers who want the whole stream."""
    chosen = sorted(papers, key=lambda p: (p.first_seen, p.key), reverse=True)[:max_items]
    entries = []
    previous: datetime | None = None
    for paper in chosen:
        # A second apart among papers first seen together (one source's listing), each below the
        # one before it: a date of its own that newer papers do not move, unless they were first
        # seen within as many seconds (then they push it down, to keep every date its own).
        stamp = paper.first_seen if previous is None else min(paper.first_seen, previous - _A_SECOND)
        entries.append((ScoredPaper(paper, 0.0, Reasons()), stamp, 0))
        previous = stamp
    rss_items, atom_entries = _entries_utf8("all", entries, renderer, base_url, None)  # no profile
    return _feed_files(
        name="all",
        title="paperdigest · all new papers",
        subtitle="Every new paper paperdigest has seen in the last days, newest first.",
        paths=(ALL_RSS, ALL_ATOM),
        updated=max((p.first_seen for p in chosen), default=_NO_DATA),
        base_url=base_url,
        rss_items=[rss_items],
        atom_entries=[atom_entries],
    )


def _entries_utf8(
    name: str,
    entries: Sequence[tuple[ScoredPaper, datetime, int]],
    renderer: Renderer,
    base_url: str,
    feedback: FeedbackLinks | None,
) -> tuple[bytes, bytes]:
    """Entries (paper, date, position; 0 in the all-papers feed) as RSS items and as Atom
    entries, each format's as one UTF-8 text. An entry XML cannot hold is left out, never the
    feed."""
    rss_items: list[str] = []
    atom_entries: list[str] = []
    for item, stamp, position in entries:
        try:
            rss_item, atom_entry = feedxml.entry_xml_escaped(
                _paper_text(item.paper, renderer, f"{base_url}/"),
                stamp,
                _content(item, position, renderer, feedback),
            )
        except ValueError as exc:  # a string XML cannot hold (U+FFFF, which one_line keeps)
            log.warning("feed %s: left out paper %s: %s", name, item.paper.key, exc)
            continue
        rss_items.append(rss_item)
        atom_entries.append(atom_entry)
    return "".join(rss_items).encode("utf-8"), "".join(atom_entries).encode("utf-8")


def _feed_files(
    *,
    name: str,
    title: str,
    subtitle: str,
    paths: tuple[str, str],
    updated: datetime,
    base_url: str,
    rss_items: Sequence[bytes],
    atom_entries: Sequence[bytes],
) -> FeedFiles:
    rss_path, atom_path = paths
    # Each entry is written once in both formats; only the feed's self link differs.
    head = _head(name, title, subtitle, updated, f"{base_url}/")
    return FeedFiles(
        name=name,
        title=title,
        rss_path=rss_path,
        atom_path=atom_path,
        rss=feedxml.document(feedxml.rss_start(head, f"{base_url}/{rss_path}"), rss_items, feedxml.RSS_END),
        atom=feedxml.document(
            feedxml.atom_start(head, f"{base_url}/{atom_path}"), atom_entries, feedxml.ATOM_END
        ),
    )


# -- taking a digest's entries from the feed as written (see the module's docstring) ---------------

# Part of every fingerprint: bump it when this module or digest/feedxml.py changes how an entry is
# written, so that files written before are rendered anew, not spliced.
ENTRY_FORMAT = "1"
_RSS_INDENT, _ATOM_INDENT = "    ", "  "
_PARTIAL = "partial"  # a day cut short by max_items: never taken from a file
# Before each digest's entries: its day, the fingerprint of what decided them, their checksum.
_MARKER_START = b"<!-- paperdigest-day "
_MARKER = re.compile(
    rb" *<!-- paperdigest-day ([0-9]{4}-[0-9]{2}-[0-9]{2}) ([0-9a-f]{16}|partial) ([0-9a-f]{8}) -->\n"
)


@dataclass(frozen=True, slots=True)
class WrittenFeed:
    """A profile's feed files as published (None: missing, or they could not be read)."""

    rss: bytes | None
    atom: bytes | None


@dataclass(frozen=True, slots=True)
class _WrittenDay:
    """One digest's entries as a feed file holds them, in both formats."""

    fingerprint: str
    rss: bytes  # as the file holds them: UTF-8
    atom: bytes


def _marker(indent: str, day: date, fingerprint: str, block: bytes) -> bytes:
    said = f"{indent}<!-- paperdigest-day {day.isoformat()} {fingerprint} {_checksum(block)} -->\n"
    return said.encode("ascii")


def _checksum(block: bytes) -> str:
    """Of a day's entries as written, so that a file damaged or edited by hand is not taken as
    written: against accidents, not an adversary (one who can edit the files can serve anything)."""
    return f"{zlib.crc32(block):08x}"


def _written_days(previous: WrittenFeed | None, profile: str) -> dict[date, _WrittenDay]:
    """The days whose entries both files hold intact, by day; {} (everything rendered anew) at
    the least doubt: a file missing, not UTF-8, cut short, without markers (an older format),
    or with a day whose entries do not match their checksum. Never raises."""
    if previous is None or previous.rss is None or previous.atom is None:
        return {}
    try:
        rss = _blocks(previous.rss, feedxml.RSS_END.encode())
        atom = _blocks(previous.atom, feedxml.ATOM_END.encode())
    except Exception:  # doubt, not a failed feed: the feed is then rendered whole
        log.warning("feed %s: its files as written could not be read back; rendered anew", profile,
                    exc_info=True)
        return {}
    return {
        day: _WrittenDay(fingerprint, rss_block, atom[day][1])
        for day, (fingerprint, rss_block) in rss.items()
        if day in atom and atom[day][0] == fingerprint
    }


def _blocks(data: bytes, end: bytes) -> dict[date, tuple[str, bytes]]:
    """A file's days: day -> (fingerprint, its entries as written); {} if anything is in doubt.
    The file is searched as bytes (a marker is ASCII, and UTF-8 never holds its bytes inside
    another character): no decoding of what is taken as it is."""
    if not data.endswith(end):
        return {}
    marks = []
    at = data.find(_MARKER_START)
    while at != -1:
        line_start = data.rfind(b"\n", 0, at) + 1
        mark = _MARKER.match(data, line_start)
        if mark is None:
            return {}
        marks.append(mark)
        at = data.find(_MARKER_START, mark.end())
    found: dict[date, tuple[str, bytes]] = {}
    for number, mark in enumerate(marks):
        stop = marks[number + 1].start() if number + 1 < len(marks) else len(data) - len(end)
        block = data[mark.end() : stop]
        day = date.fromisoformat(mark[1].decode("ascii"))
        if _checksum(block) != mark[3].decode("ascii") or day in found:
            return {}
        found[day] = (mark[2].decode("ascii"), block)
    return found


def _fingerprint(inputs: str, profile: str, digest: Digest) -> str:
    """What decided a digest's entries, known without its items: `inputs` (_entry_inputs), the
    profile, the day and the digest's end (`until`, which dates its entries)."""
    said = f"{inputs}\n{profile}\n{digest.day.isoformat()}\n{digest.until.isoformat()}"
    return hashlib.blake2b(said.encode("utf-8"), digest_size=8).hexdigest()


def _entry_inputs(renderer: Renderer, base_url: str, feedback: FeedbackLinks | None) -> str:
    """What decides every entry of a profile's feed beside its digest: the entry format and the
    release, the renderer's templates, the addresses, and which key signs the feedback links."""
    links = f"{feedback.base_url} {_key_id(feedback.keys[0])}" if feedback and feedback.keys else "-"
    return "\n".join((ENTRY_FORMAT, __version__, _renderer_fingerprint(renderer), base_url, links))


@functools.lru_cache(maxsize=8)
def _key_id(key: str) -> str:
    """Names the signing key without telling it: a MAC of a fixed text under the key, as every
    feedback link already is one of its own text."""
    return hmac.new(key.encode("utf-8"), b"paperdigest feed entries", hashlib.sha256).hexdigest()[:16]


def _renderer_fingerprint(renderer: Renderer) -> str:
    """The renderer's templates and styles (every file of its folder) and a sample item as it
    renders it (which catches a change in the item's own tags), computed once per renderer."""
    found = _RENDERERS.get(renderer)
    if found is None:
        made = hashlib.blake2b(digest_size=16)
        folders = getattr(renderer.env.loader, "searchpath", [])
        for folder in folders:
            for path in sorted(Path(folder).rglob("*")):
                if path.is_file():
                    made.update(f"{path.relative_to(folder)}\n".encode())
                    made.update(path.read_bytes())
        made.update("".join(renderer.item_parts(_SAMPLE_ITEM, 1, _SAMPLE_LINKS)).encode())
        found = _RENDERERS[renderer] = made.hexdigest()
    return found


_RENDERERS: WeakKeyDictionary[Renderer, str] = WeakKeyDictionary()
_SAMPLE_ITEM = ScoredPaper(
    Paper(
        key="2601.00001",
        title="A sample <paper>",
        first_seen=_NO_DATA,
        first_source="sample",
        first_listing="https://example.org/",
        sources=("sample",),
        arxiv_id="2601.00001",
        abstract="What it found & why.",
        authors=("A. Author", "B. Author"),
        categories=("cs.LG",),
        primary_category="cs.LG",
        code_url="https://example.org/code",
    ),
    1.0,
    Reasons(keywords=("sample",), authors=("A. Author",)),
)
_SAMPLE_LINKS = FeedbackLinks("sample", "https://example.org", ("not-a-key",))


def _content(
    item: ScoredPaper, position: int, renderer: Renderer, feedback: FeedbackLinks | None
) -> feedxml.XmlText:
    """An entry's content, escaped: the email's item (the profile's position, reasons and feedback
    links around the paper's card), or in the all-papers feed (position 0) the card alone. The
    card, most of the bytes and the same in every profile's feed, is escaped once a run; only the
    profile's few words are escaped per item. Raises ValueError as feedxml.text does."""
    if not position:
        return _escaped_card(renderer.card(item.paper))
    before, card, after = renderer.item_parts(item, position, feedback)
    return feedxml.joined(feedxml.text(before), _escaped_card(card), feedxml.text(after))


def _escaped_card(card: str) -> feedxml.XmlText:
    """A paper's card escaped for XML, kept by the card's HTML itself (the renderer hands out
    the same string object for a paper all run, whose hash Python keeps: a look-up costs next to
    nothing). A card XML cannot hold raises each time, never kept."""
    found = _ESCAPED_CARDS.get(card)
    if found is None:
        found = feedxml.text(str(card))  # as a str: Markup's replace would escape its arguments
        if len(_ESCAPED_CARDS) >= _PAPER_TEXTS_KEPT:
            _ESCAPED_CARDS.clear()
        _ESCAPED_CARDS[card] = found
    return found


_ESCAPED_CARDS: dict[str, feedxml.XmlText] = {}


def _stamp(when: datetime, place: int) -> datetime:
    """A profile feed's entry's published and updated date: its digest's time, a second earlier
    for each paper before it in the digest. Each entry then has one of its own (feed validators
    warn about equal ones), and it depends only on the entry's own digest and place in it, never
    on what else the feed holds: an entry's dates, like its bytes, do not change when newer days
    come in."""
    return when - place * _A_SECOND


_A_SECOND = timedelta(seconds=1)


def _head(name: str, title: str, subtitle: str, updated: datetime, site_url: str) -> feedxml.FeedHead:
    return feedxml.FeedHead(
        id=f"urn:paperdigest:feed:{quote(name)}",
        title=title,
        subtitle=subtitle,
        site_url=site_url,
        # From stored data, never the clock: unchanged data, unchanged bytes.
        updated=updated,
        # Atom wants an author for every entry: the feed's stands for entries whose paper names
        # none (a listing that gave only a count of authors).
        author="paperdigest",
        language="en",
        generator="paperdigest",
        generator_version=__version__,
        generator_uri="https://pypi.org/project/paperdigest/",
    )


def _paper_text(paper: Paper, renderer: Renderer, fallback_url: str) -> feedxml.EntryText:
    """A paper's words in a feed entry (title, link, excerpt, authors, categories), escaped once
    a process and shared by every profile's feed that holds the paper.

    Kept by the paper's whole value (every field, so a changed paper is made anew) and the
    fallback URL: nothing else goes in, as the fields are a function of the paper alone
    (digest.render's paper_fields). A paper whose text XML cannot hold raises ValueError each
    time, never kept.
    """
    key = (paper, fallback_url)
    found = _PAPER_TEXTS.get(key)
    if found is None:
        fields = renderer.paper_fields(paper)
        found = feedxml.entry_text(
            entry_id=item_id(paper.key),
            title=fields["title"],
            link=fields["url"] or fallback_url,  # a paper without a web page: the site
            # The excerpt for readers that show a line. Readers take an RSS description as HTML,
            # so the untrusted text is escaped as HTML first.
            summary_html=str(escape(fields["excerpt"])) if fields["excerpt"] else "",
            # Names, never "5 authors" (a listing's count) as if it were one.
            author=fields["authors"] if paper.authors else "",
            categories=tuple(
                one_line(c)
                for c in dict.fromkeys(c for c in (paper.primary_category, *paper.categories) if c)
            ),
        )
        if len(_PAPER_TEXTS) >= _PAPER_TEXTS_KEPT:
            _PAPER_TEXTS.clear()
        _PAPER_TEXTS[key] = found
    return found


# A run's feeds hold its new papers (some 500 a day) and the feed window's older ones.
_PAPER_TEXTS_KEPT = 8192
_PAPER_TEXTS: dict[tuple[Paper, str], feedxml.EntryText] = {}


def profile_feed_title(profile: str) -> str:
    return f"paperdigest · {profile}"


def opml(feeds: Iterable[tuple[str, str]], base_url: str) -> bytes:
    """An OPML 2.0 subscription list of feeds, given as (title, Atom path), for a reader's import."""
    root = ElementTree.Element("opml", version="2.0")
    head = ElementTree.SubElement(root, "head")
    ElementTree.SubElement(head, "title").text = "paperdigest feeds"
    body = ElementTree.SubElement(root, "body")
    for title, atom_path in feeds:
        ElementTree.SubElement(
            body,
            "outline",
            type="rss",
            text=title,
            title=title,
            xmlUrl=f"{base_url}/{atom_path}",
            htmlUrl=f"{base_url}/",
        )
    ElementTree.indent(root)
    return bytes(ElementTree.tostring(root, encoding="utf-8", xml_declaration=True)) + b"\n"


# -- writing --------------------------------------------------------------------------------------


class PublishError(DeliveryError):
    """Some feed files could not be written (each was tried; the others were written).

    The message names the first file and its OS error; `failed` maps each file (relative to
    feeds_dir) to its error, `changed` lists the files that were written.
    """

    def __init__(self, failed: Mapping[str, str], changed: Sequence[str]) -> None:
        first = next(iter(failed.values()))
        more = f" (and {len(failed) - 1} more files)" if len(failed) > 1 else ""
        super().__init__(first + more)
        self.failed = dict(failed)
        self.changed = list(changed)


def publish(feeds_dir: Path, files: dict[str, bytes]) -> list[str]:
    """Write the files (paths relative to feeds_dir) as one batch; return the paths that changed.

    Each goes to a hidden temp file beside it; then one flush puts them all on disk, each is
    renamed into place and each folder fsynced once (digest.durable's guarantee: a reader sees
    the old file or the new one, and when this returns every changed file is on disk). A file
    whose bytes did not change is not rewritten, which keeps its mtime and so its HTTP
    Last-Modified. A file that cannot be written does not stop the others: every one is tried,
    then PublishError names the ones that failed.
    """
    batch = durable.Batch()
    relative_of: dict[Path, str] = {}
    failed: dict[str, str] = {}
    folders: set[Path] = set()  # made (or found) once a batch: a batch's files share a folder
    for relative, data in sorted(files.items()):
        path = feeds_dir / relative
        try:
            if _holds(path, data):
                continue
            if path.parent not in folders:
                path.parent.mkdir(parents=True, exist_ok=True)
                folders.add(path.parent)
            _sweep_once(path.parent)
            batch.put(path, data, mode=0o644)  # readable by the web server, as any published file
        except OSError as exc:
            failed[relative] = _cannot_write(path, exc)
            continue
        relative_of[path] = relative
    try:
        batch.commit()
    except durable.CommitError as exc:
        for path, error in exc.failed.items():
            failed[relative_of.pop(path)] = _cannot_write(path, error)
    if failed:
        raise PublishError(dict(sorted(failed.items())), sorted(relative_of.values()))
    return sorted(relative_of.values())


def _holds(path: Path, data: bytes) -> bool:
    """Whether the file is there with these bytes; read only when its size says it may be (a
    feed that got a new day has grown: most files a run writes are not read back)."""
    try:
        found = path.stat()
    except (FileNotFoundError, NotADirectoryError):  # as Path.is_file: not there
        return False
    return S_ISREG(found.st_mode) and found.st_size == len(data) and path.read_bytes() == data


class FeedTarget(Protocol):
    """Where a deployment's feed files are published: a folder (`Folder`, with a SQLite store)
    or the store itself (`InStore`, with PostgreSQL: shared by every host, see
    digest/store/shared.py). Paths are relative to feeds_dir, "/"-separated, in both."""

    in_store: bool

    def publish(self, files: dict[str, bytes]) -> list[str]:
        """Publish the files; the paths whose bytes changed (the others stay as they were, with
        their Last-Modified). Raises PublishError when some could not be written."""

    def present(self, paths: Iterable[str]) -> bool:
        """Whether every one of these files is published."""

    def modified(self, paths: Iterable[str]) -> dict[str, datetime]:
        """When each of these files that is published last changed."""

    def read(self, path: str) -> bytes | None:
        """A published file's bytes; None when it is missing or cannot be read (never raises:
        a caller only saves work with them, see profile_feed)."""


class Folder:
    """Feed files in feeds_dir (a SQLite store's deployment: `digest serve` or nginx serves it)."""

    in_store = False

    def __init__(self, feeds_dir: Path) -> None:
        self.feeds_dir = feeds_dir

    def publish(self, files: dict[str, bytes]) -> list[str]:
        return publish(self.feeds_dir, files)

    def present(self, paths: Iterable[str]) -> bool:
        return on_disk(self.feeds_dir, paths)

    def modified(self, paths: Iterable[str]) -> dict[str, datetime]:
        found = {}
        for relative in paths:
            try:
                stat = (self.feeds_dir / relative).stat()
            except (OSError, ValueError):
                continue
            if S_ISREG(stat.st_mode):
                found[relative] = datetime.fromtimestamp(stat.st_mtime, tz=UTC)
        return found

    def read(self, path: str) -> bytes | None:
        try:
            return (self.feeds_dir / path).read_bytes()
        except (OSError, ValueError):
            return None


class InStore:
    """Feed files kept in a shared store (PostgreSQL), each with its ETag and Last-Modified: every
    web replica answers the same bytes and validators from one row, and no volume shared by the
    hosts is needed (a feed is tens to hundreds of kB). `clock` dates a file's new bytes. Used on
    the store's own thread (the store object is not shared between threads)."""

    in_store = True

    def __init__(self, store: SharedStore, clock: Callable[[], datetime]) -> None:
        self.store = store
        self.clock = clock

    def publish(self, files: dict[str, bytes]) -> list[str]:
        if not files:
            return []
        try:
            return self.store.put_feed_files(files, self.clock())
        except StoreError as exc:
            raise PublishError(
                {path: f"{path}: cannot keep the feed file in the store: {exc}" for path in sorted(files)},
                [],
            ) from None

    def present(self, paths: Iterable[str]) -> bool:
        wanted = set(paths)
        return len(self.store.feed_files_modified(wanted)) == len(wanted)

    def modified(self, paths: Iterable[str]) -> dict[str, datetime]:
        return self.store.feed_files_modified(paths)

    def read(self, path: str) -> bytes | None:
        try:
            found = self.store.feed_file(path)
        except StoreError as exc:
            log.warning("feeds: cannot read %s back from the store (rendered anew): %s", path, exc)
            return None
        return found.body if found is not None else None


def target(feeds_dir: Path, store: SharedStore, clock: Callable[[], datetime]) -> FeedTarget:
    """Where this deployment's feeds go: into a shared store (PostgreSQL), else into feeds_dir."""
    return InStore(store, clock) if store.shared else Folder(feeds_dir)


def write_atomic(path: Path, data: bytes) -> bool:
    """Replace `path` with `data` (a batch of one file, as `publish`); False when its bytes were
    already these, so it was not rewritten. Raises DeliveryError if it cannot be written."""
    return bool(publish(path.parent, {path.name: data}))


def _cannot_write(path: Path, exc: OSError) -> str:
    return f"{path}: cannot write the feed file: {exc}"


STALE_TEMP = timedelta(days=1)  # a temp file older than this is a killed run's, not a batch's
_swept: set[Path] = set()  # the folders this process has swept: once is enough


def _sweep_once(folder: Path) -> None:
    """Remove the hidden temp files a killed publish left in `folder` (feedfiles refuses hidden
    names, so no reader saw them), once per folder and process: a folder holds every profile's
    feeds, too many to list at each publish."""
    if folder not in _swept:
        durable.sweep(folder, _is_temp, STALE_TEMP)
        _swept.add(folder)


def _is_temp(name: str) -> bool:
    target = durable.hidden_temp_target(name)
    return target is not None and target.endswith((*SUFFIXES, ".opml"))
