"""The feed channel: each profile's RSS and Atom files, the all-papers feed and the OPML list.

    FeedChannel(config, store, renderer)
        targets(profile)  ["feed"]: every digest goes into its profile's feed
        deliver(run)      publish_feeds: rebuild the feeds whose data changed, write the files that
                          changed (digest/feeds.py builds and writes them), and settle the "feed"
                          rows of the ledger: sent when written, deferred when not, skipped
                          when nobody reads the feed

Unlike mail and chat it is not one message per row: the files are rebuilt together, once per run.
A feed file that cannot be written (disk full, permissions) fails this channel alone: the problem
is recorded (part "feeds", for `digest status`), the rows wait for the next run, and the other
channels deliver all the same.

Feeds are built only where they are read. A config.toml profile's feed is public (listed in the
OPML) and always built. A web subscriber's feed is private, and most subscribers read the email
instead: a run builds it only when `digest serve` saw it fetched within [output]
personal_feed_window days (the store's feed_reads) or when it is their only channel (feed only).
The others' "feed" rows are settled 'skipped' ("built when asked"), and `digest serve` builds
such a feed from the store the first time a reader asks for it (digest.web.personal).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

from digest import feeds, subscriptions
from digest.config import Config, ProfileConfig
from digest.deliver import DeliveryReport
from digest.models import Delivery, Digest
from digest.render import FeedbackLinks, Renderer
from digest.store import Outcome, Store
from digest.text import one_line

if TYPE_CHECKING:  # the package's __init__ imports this module
    from digest.channels import RunContext

log = logging.getLogger(__name__)

FEED_CHANNEL = "feed"  # the ledger's name of a digest's feed row


class FeedChannel:
    """RSS and Atom files under [output] feeds_dir, served by `digest serve` or any web server
    (with a PostgreSQL store, kept in the store and served by `digest serve`: feeds.InStore)."""

    name = "feeds"
    kind = "feed"
    stops_for_the_run = False

    def __init__(self, config: Config, store: Store, renderer: Renderer) -> None:
        self.config = config
        self.store = store
        self.renderer = renderer
        self.written: list[str] = []  # files this run changed (relative to feeds_dir)
        self.failed: dict[str, str] = {}  # files this run could not write, and why
        self.read: _Readership | None = None  # whose feeds this run builds, found once a run

    def targets(self, profile: ProfileConfig) -> list[str]:
        return [FEED_CHANNEL]

    def deliver(self, run: RunContext) -> DeliveryReport:
        if self.read is None:
            self.read = _Readership(self.config, self.store, run.clock())
        try:
            self.written += publish_feeds(
                self.config, self.store, self.renderer, run.clock, claimant=run.claimant,
                lease=run.settings.claim_lease, profiles=run.profiles(), coming=run.coming,
                fresh=run.fresh, read=self.read,
            )
        except feeds.PublishError as exc:
            self.written += exc.changed
            self.failed.update(exc.failed)
            # Said once for the run (naming its first file), not once per file or per block.
            said = str(feeds.PublishError(self.failed, []))
            self.store.set_problem(feeds.PROBLEM_PART, said, run.clock())
            return DeliveryReport(stopped=one_line(said))
        return DeliveryReport()


def publish_feeds(
    config: Config,
    store: Store,
    renderer: Renderer,
    clock: Callable[[], datetime],
    *,
    claimant: str,
    lease: timedelta,
    profiles: frozenset[str] | None = None,
    coming: frozenset[str] = frozenset(),
    fresh: Mapping[tuple[str, date], Digest] | None = None,
    read: _Readership | None = None,
) -> list[str]:
    """Rebuild the feeds whose data changed and write the files that changed.

    A run calls it once per pass (digest.pipeline.run_cycle): first with `profiles` None, for
    the all-papers feed, the OPML list and what earlier runs left (leaving alone the profiles
    `coming` in a later block of the run), then once per block with the block's `profiles`,
    whose new digests are in `fresh`, as composed. `read` (whose feeds are built) is found once
    a run by its caller; without it, by this call.

    A profile's feed changes only when it gets a new digest (its "feed" row in the ledger is then
    open) or when its files are missing; the others are left as they are, so a run with nothing
    new costs next to nothing, whatever the number of profiles. The rolling window is counted back
    from the newest stored data, not from today, so a feed's bytes change only when its data does.
    A profile's items carry its feedback links, signed with the same keys as the emails'.

    A web subscriber's feed is built only if someone reads it (see the module's docstring): read
    within [output] personal_feed_window days, or feed only. Otherwise its rows are settled
    'skipped' and its files left as they are, missing ones included (`digest serve` builds it
    when asked).

    Files that cannot be written raise feeds.PublishError, once the others are written: the
    problem is recorded (part "feeds", for `digest status`) and the "feed" rows of the profiles
    whose files failed are deferred, so the next run writes them; a run that writes every file
    clears the problem.
    """
    output = config.output
    keys = tuple(store.signing_keys(config.data_dir))
    fresh = fresh or {}

    def ours(profile: str) -> bool:  # is the profile this pass's to publish?
        return profile not in coming if profiles is None else profile in profiles

    open_rows: dict[str, list[Delivery]] = {}
    for row in store.deliveries(statuses=("pending", "deferred", "sending")):
        if row.channel == FEED_CHANNEL and ours(row.profile):
            open_rows.setdefault(row.profile, []).append(row)
    written = _Written(feeds.target(output.feeds_dir, store, clock))
    read = read or _Readership(config, store, clock())
    rebuild = (
        [name for name in open_rows if read.builds(name)]
        if profiles is not None
        else _whole_run(config, store, renderer, written, open_rows, ours, read)
    )
    # Built and written FEED_BATCH profiles at a time, or sooner once their files reach
    # FEED_BATCH_BYTES (a week's feed pair of 18 papers a day is about 550 kB): a run never holds
    # every profile's bytes.
    newest = {profile: digest for (profile, _), digest in fresh.items()}
    for start in range(0, len(rebuild), FEED_BATCH):
        files: dict[str, bytes] = {}
        held = 0
        batch = rebuild[start : start + FEED_BATCH]
        windows = _window_digests(store, batch, newest, output.feed_days)
        for name in batch:
            # The older days' entries are taken from the files as published, not rendered again.
            built = build_profile_feed(
                config, renderer, name, windows.pop(name), keys,
                previous=_as_written(written.target, name),
            )
            files[built.rss_path] = built.rss
            files[built.atom_path] = built.atom
            held += len(built.rss) + len(built.atom)
            if held >= FEED_BATCH_BYTES:
                written.publish(files)
                files, held = {}, 0
        if files:
            written.publish(files)
    # Every digest now in its feed counts as delivered on the "feed" channel; one whose feed
    # could not be written waits for the next run; one whose feed nobody reads is skipped.
    now = clock()
    rows = [row for profile_rows in open_rows.values() for row in profile_rows]
    got = store.claim_many(rows, claimant, now, stale_before=now - lease)
    outcomes = []
    for row in (row for row, taken in zip(rows, got, strict=True) if taken):
        paths = feeds.profile_feed_paths(row.profile)
        missed = [written.failed[p] for p in sorted(paths) if p in written.failed]
        if missed:
            outcomes.append(Outcome(row, "deferred", missed[0]))
        elif row.profile in read.unread:
            outcomes.append(Outcome(row, "skipped", read.why_skipped))
        else:
            outcomes.append(Outcome(row, "sent"))
    store.settle_many(outcomes, claimant, now)  # one transaction for every feed row, not two each
    if written.failed:
        failure = feeds.PublishError(written.failed, written.changed)
        log.error("feeds: %s", failure)
        store.set_problem(feeds.PROBLEM_PART, str(failure), now)
        raise failure
    if profiles is None:  # a block's pass that got through does not speak for the whole run
        store.set_problem(feeds.PROBLEM_PART, None, now)
    return written.changed


def _whole_run(
    config: Config,
    store: Store,
    renderer: Renderer,
    written: _Written,
    open_rows: Mapping[str, list[Delivery]],
    ours: Callable[[str], bool],
    read: _Readership,
) -> list[str]:
    """The once-a-run part: the all-papers feed and the OPML list written; the profiles whose
    feed is to be rebuilt: those with open rows, and those whose files are missing, if read."""
    output = config.output
    base = feeds.feeds_url(output.base_url)
    recent = store.papers(limit=1)
    papers = (
        store.papers(
            since=recent[0].first_seen - timedelta(days=output.feed_days),
            limit=output.feed_max_items,
        )
        if recent
        else []
    )
    everything = feeds.all_papers_feed(papers, renderer, base, output.feed_max_items)
    written.publish({everything.rss_path: everything.rss, everything.atom_path: everything.atom})
    listing = [(everything.title, everything.atom_path)]
    rebuild = []
    # Which of the other profiles' files are there, asked once (the store: a query per 500).
    published = written.target.modified(
        path
        for profile in config.profiles
        if ours(profile.name) and profile.name not in open_rows
        for path in feeds.profile_feed_paths(profile.name)
    )
    for profile in config.profiles:
        rss_path, atom_path = feeds.profile_feed_paths(profile.name)
        if not subscriptions.is_web_profile(profile.name):  # a web subscriber's feed is private
            listing.append((feeds.profile_feed_title(profile.name), atom_path))
        if (
            ours(profile.name)
            and (
                profile.name in open_rows
                or rss_path not in published
                or atom_path not in published
            )
            and read.builds(profile.name)
        ):
            rebuild.append(profile.name)
    written.publish({feeds.OPML_PATH: feeds.opml(listing, base)})
    return rebuild


class _Readership:
    """Whose feed a run builds: every config.toml profile's, and a web subscriber's when it was
    read within [output] personal_feed_window days or the subscriber gets no email."""

    def __init__(self, config: Config, store: Store, now: datetime) -> None:
        window = config.output.personal_feed_window
        self.store = store
        self.profiles = {profile.name: profile for profile in config.profiles}
        self.every_feed = window == 0  # feeds served by another web server: no reads are seen
        self.readers = (
            set() if self.every_feed else store.feed_readers(now - timedelta(days=window))
        )  # one query a pass
        self.unread: set[str] = set()  # the web subscribers whose feed was not built
        self.why_skipped = f"not read in {window} days: built when asked"

    def builds(self, name: str) -> bool:
        if (
            self.every_feed
            or not subscriptions.is_web_profile(name)
            or name in self.readers
            or self._feed_only(name)
        ):
            return True
        self.unread.add(name)
        return False

    def _feed_only(self, name: str) -> bool:
        """Whether the subscriber gets the digest in the feed only (their one channel)."""
        profile = self.profiles.get(name)
        if profile is not None:
            return not profile.emails  # subscriptions.to_profile: no address when feed only
        # Not among the config's profiles (a paused subscriber, a caller's config without them).
        subscriber = self.store.subscriber(name)
        return subscriber is not None and not subscriber.interests.email


def build_profile_feed(
    config: Config,
    renderer: Renderer,
    profile: str,
    digests: Sequence[Digest],
    keys: Sequence[str],
    previous: feeds.WrittenFeed | None = None,
) -> feeds.FeedFiles:
    """One profile's feed files (not written) from its digests (feed_digests), as every run and
    `digest serve` build them: its items carry the profile's feedback links, signed with
    `keys` (the same as the emails'). With `previous`, its files as published, the days still
    written as they would be are taken from them (feeds.profile_feed)."""
    output = config.output
    feedback = FeedbackLinks(profile, output.base_url, tuple(keys))
    return feeds.profile_feed(
        profile, digests, renderer, feeds.feeds_url(output.base_url), output.feed_max_items,
        feedback, previous,
    )


def _as_written(target: feeds.FeedTarget, profile: str) -> feeds.WrittenFeed:
    rss_path, atom_path = feeds.profile_feed_paths(profile)
    return feeds.WrittenFeed(rss=target.read(rss_path), atom=target.read(atom_path))


def feed_digests(store: Store, config: Config, profile: str) -> list[Digest]:
    """The stored digests a profile's feed shows, newest first (see _feed_digests)."""
    return _feed_digests(store, profile, None, config.output.feed_days)


def publish_profile_feed(
    config: Config,
    renderer: Renderer,
    profile: str,
    digests: Sequence[Digest],
    keys: Sequence[str],
    target: feeds.FeedTarget,
) -> list[str]:
    """Build one profile's feed files and publish them to `target` (feeds_dir or the store);
    the paths that changed. Raises feeds.PublishError when a file cannot be written."""
    built = build_profile_feed(config, renderer, profile, digests, keys)
    return target.publish({built.rss_path: built.rss, built.atom_path: built.atom})


def _feed_digests(store: Store, profile: str, newest: Digest | None, days: int) -> list[Digest]:
    """The digests a profile's feed shows, newest first: those of its last `days` days, counted
    back from its newest (this block's, as composed, when it has one)."""
    if newest is None:
        latest = store.digests(profile, limit=1)
        if not latest:
            return []
        newest = latest[0]
    since_day = newest.day - timedelta(days=days - 1)
    return [newest, *store.digests(profile, since_day=since_day, before_day=newest.day)]


def _window_digests(
    store: Store, profiles: Sequence[str], newest: Mapping[str, Digest], days: int
) -> dict[str, list[Digest]]:
    """_feed_digests for many profiles at once: each one's newest digest (`newest`'s, as
    composed, else the store's latest by its head), then its stored digests of the window's
    other days, read in a few queries for all of them (each paper once, not once a digest)."""
    heads = store.digest_heads([name for name in profiles if name not in newest])
    last_day = {name: newest[name].day if name in newest else heads[name].day
                for name in profiles if name in newest or name in heads}
    stored = store.digests_for([
        (name, day - timedelta(days=back))
        for name, day in last_day.items()
        for back in range(1 if name in newest else 0, days)
    ])
    windows: dict[str, list[Digest]] = {}
    for name in profiles:
        day = last_day.get(name)
        found = [newest[name]] if name in newest else []
        if day is not None:
            found += [
                stored[(name, day - timedelta(days=back))]
                for back in range(len(found), days)
                if (name, day - timedelta(days=back)) in stored
            ]
        windows[name] = found
    return windows


FEED_BATCH = 500  # profiles whose feeds are built, then written, together
FEED_BATCH_BYTES = 128 * 1024 * 1024  # written sooner when their files hold this much


class _Written:
    """The files one run published: which changed, which could not be written and why."""

    def __init__(self, target: feeds.FeedTarget) -> None:
        self.target = target
        self.changed: list[str] = []
        self.failed: dict[str, str] = {}

    def publish(self, files: dict[str, bytes]) -> None:
        try:
            self.changed += self.target.publish(files)
        except feeds.PublishError as exc:
            self.changed += exc.changed
            self.failed.update(exc.failed)


def publish_first_feed(
    config: Config, profile: str, keys: Sequence[str], target: feeds.FeedTarget
) -> list[str]:
    """A new subscriber's feed, valid and empty, so its address works from the start (the
    first digest fills it); a feed already there is left as it is."""
    if target.present(feeds.profile_feed_paths(profile)):
        return []
    return publish_profile_feed(config, Renderer(), profile, [], keys, target)
