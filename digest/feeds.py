"""Digests -> RSS 2.0 and Atom files (digest.feedxml), plus an OPML list of them, written atomically.

Feeds are rebuilt from stored data on every run, and must not change when the data did not: an
item's id is the paper's key (never a version or a time), every date comes from the store (when
the digest was composed, when the paper was first seen), and nothing reads the clock. A file whose
bytes did not change is not rewritten, so its mtime (a web server's Last-Modified) stays put.

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

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from stat import S_ISREG
from typing import TYPE_CHECKING, Protocol
from urllib.parse import quote
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
) -> FeedFiles:
    """A profile's feed: the papers of its recent digests, newest digest first, best first.

    With `feedback` (the profile's), each item ends with its "More like this" and "Not relevant"
    links, as in the email. The links are signed, not random, so the bytes stay the same.
    """
    if feedback is not None and feedback.profile != profile:
        raise ValueError(f"feedback links of {feedback.profile!r} in the feed of {profile!r}")
    entries: list[tuple[ScoredPaper, datetime, int]] = []
    for digest in sorted(digests, key=lambda d: d.day, reverse=True):
        for position, item in enumerate(digest.items, start=1):
            entries.append((item, digest.until, position))
    entries = entries[:max_items]
    newest = max((d.until for d in digests), default=_NO_DATA)
    return _feed_files(
        name=profile,
        title=profile_feed_title(profile),
        subtitle=f"New research papers chosen for the {profile} profile, with the reasons why.",
        paths=profile_feed_paths(profile),
        entries=entries,
        updated=newest,
        renderer=renderer,
        base_url=base_url,
        feedback=feedback,
    )


def all_papers_feed(
    papers: Sequence[Paper], renderer: Renderer, base_url: str, max_items: int
) -> FeedFiles:
    """Every newly seen paper, newest first: for readers who want the whole stream."""
    chosen = sorted(papers, key=lambda p: (p.first_seen, p.key), reverse=True)[:max_items]
    entries = [(ScoredPaper(paper, 0.0, Reasons()), paper.first_seen, 0) for paper in chosen]
    return _feed_files(
        name="all",
        title="paperdigest · all new papers",
        subtitle="Every new paper paperdigest has seen in the last days, newest first.",
        paths=(ALL_RSS, ALL_ATOM),
        entries=entries,
        updated=max((p.first_seen for p in chosen), default=_NO_DATA),
        renderer=renderer,
        base_url=base_url,
        feedback=None,  # no profile: nobody's interests to tell
    )


def _feed_files(
    *,
    name: str,
    title: str,
    subtitle: str,
    paths: tuple[str, str],
    entries: Sequence[tuple[ScoredPaper, datetime, int]],
    updated: datetime,
    renderer: Renderer,
    base_url: str,
    feedback: FeedbackLinks | None,
) -> FeedFiles:
    rss_path, atom_path = paths
    # Each entry is written once in both formats; only the feed's self link differs.
    items: list[str] = []
    atom_entries: list[str] = []
    for index, (item, when, position) in enumerate(entries):
        # Papers of one digest share its time; a second apart, each entry has an updated of its
        # own (feed validators warn about equal ones), in the feed's order, from stored data.
        stamp = when - timedelta(seconds=index)
        # The email's item (with the profile's reasons and feedback links), or in the all-papers
        # feed (position 0) the paper's card alone.
        html = renderer.item_html(item, position, feedback) if position else renderer.card(item.paper)
        try:
            rss_item, atom_entry = feedxml.entry_xml(
                _paper_text(item.paper, renderer, f"{base_url}/"), stamp, str(html)
            )
        except ValueError as exc:  # a string XML cannot hold (U+FFFF, which one_line keeps)
            log.warning("feed %s: left out paper %s: %s", name, item.paper.key, exc)
            continue
        items.append(rss_item)
        atom_entries.append(atom_entry)
    head = _head(name, title, subtitle, updated, f"{base_url}/")
    return FeedFiles(
        name=name,
        title=title,
        rss_path=rss_path,
        atom_path=atom_path,
        rss=feedxml.rss(head, f"{base_url}/{rss_path}", items),
        atom=feedxml.atom(head, f"{base_url}/{atom_path}", atom_entries),
    )


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
    for relative, data in sorted(files.items()):
        path = feeds_dir / relative
        try:
            if path.is_file() and path.read_bytes() == data:
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
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
