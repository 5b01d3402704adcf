"""The feed channel: each profile's RSS and Atom files, the all-papers feed and the OPML list.

    FeedChannel(config, store, renderer)
        targets(profile)  ["feed"]: every digest goes into its profile's feed
        deliver(run)      publish_feeds: rebuild the feeds whose data changed, write the files that
                          changed (digest/feeds.py builds and writes them), and settle the "feed"
                          rows of the ledger: sent when written, deferred when not

Unlike mail and chat it is not one message per row: the files are rebuilt together, once per run.
A feed file that cannot be written (disk full, permissions) fails this channel alone: the problem
is recorded (part "feeds", for `digest status`), the rows wait for the next run, and the other
channels deliver all the same.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from digest import feeds, subscriptions
from digest.config import Config, ProfileConfig
from digest.deliver import DeliveryReport
from digest.models import Delivery, Digest
from digest.render import FeedbackLinks, Renderer
from digest.store import Outcome, Store
from digest.text import one_line
from digest.tokens import load_secrets

if TYPE_CHECKING:  # the package's __init__ imports this module
    from digest.channels import RunContext

log = logging.getLogger(__name__)

FEED_CHANNEL = "feed"  # the ledger's name of a digest's feed row


class FeedChannel:
    """RSS and Atom files under [output] feeds_dir, served by `digest serve` or any web server."""

    name = "feeds"
    kind = "feed"
    stops_for_the_run = False

    def __init__(self, config: Config, store: Store, renderer: Renderer) -> None:
        self.config = config
        self.store = store
        self.renderer = renderer
        self.written: list[str] = []  # files this run changed (relative to feeds_dir)
        self.failed: dict[str, str] = {}  # files this run could not write, and why

    def targets(self, profile: ProfileConfig) -> list[str]:
        return [FEED_CHANNEL]

    def deliver(self, run: RunContext) -> DeliveryReport:
        try:
            self.written += publish_feeds(
                self.config, self.store, self.renderer, run.clock, claimant=run.claimant,
                lease=run.settings.claim_lease, profiles=run.profiles(), coming=run.coming,
                fresh=run.fresh,
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
) -> list[str]:
    """Rebuild the feeds whose data changed and write the files that changed.

    A run calls it once per pass (digest.pipeline.run_cycle): first with `profiles` None, for
    the all-papers feed, the OPML list and what earlier runs left (leaving alone the profiles
    `coming` in a later block of the run), then once per block with the block's `profiles`,
    whose new digests are in `fresh`, as composed.

    A profile's feed changes only when it gets a new digest (its "feed" row in the ledger is then
    open) or when its files are missing; the others are left as they are, so a run with nothing
    new costs next to nothing, whatever the number of profiles. The rolling window is counted back
    from the newest stored data, not from today, so a feed's bytes change only when its data does.
    A profile's items carry its feedback links, signed with the same keys as the emails'.

    Files that cannot be written raise feeds.PublishError, once the others are written: the
    problem is recorded (part "feeds", for `digest status`) and the "feed" rows of the profiles
    whose files failed are deferred, so the next run writes them; a run that writes every file
    clears the problem.
    """
    output = config.output
    keys = tuple(load_secrets(config.data_dir))
    base = feeds.feeds_url(output.base_url)
    fresh = fresh or {}

    def ours(profile: str) -> bool:  # is the profile this pass's to publish?
        return profile not in coming if profiles is None else profile in profiles

    open_rows: dict[str, list[Delivery]] = {}
    for row in store.deliveries(statuses=("pending", "deferred", "sending")):
        if row.channel == FEED_CHANNEL and ours(row.profile):
            open_rows.setdefault(row.profile, []).append(row)
    written = _Written(output.feeds_dir)
    rebuild = (
        list(open_rows)
        if profiles is not None
        else _whole_run(config, store, renderer, written, open_rows, ours)
    )
    # Built and written FEED_BATCH profiles at a time: a run never holds every profile's bytes.
    newest = {profile: digest for (profile, _), digest in fresh.items()}
    for start in range(0, len(rebuild), FEED_BATCH):
        files: dict[str, bytes] = {}
        for name in rebuild[start : start + FEED_BATCH]:
            digests = _feed_digests(store, name, newest.get(name), output.feed_days)
            feedback = FeedbackLinks(name, output.base_url, keys)
            built = feeds.profile_feed(name, digests, renderer, base, output.feed_max_items, feedback)
            files[built.rss_path] = built.rss
            files[built.atom_path] = built.atom
        written.publish(files)
    # Every digest now in its feed counts as delivered on the "feed" channel; one whose feed
    # could not be written waits for the next run.
    now = clock()
    rows = [row for profile_rows in open_rows.values() for row in profile_rows]
    got = store.claim_many(rows, claimant, now, stale_before=now - lease)
    outcomes = []
    for row in (row for row, taken in zip(rows, got, strict=True) if taken):
        paths = feeds.profile_feed_paths(row.profile)
        missed = [written.failed[p] for p in sorted(paths) if p in written.failed]
        outcomes.append(
            Outcome(row, "deferred", missed[0]) if missed else Outcome(row, "sent")
        )
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
) -> list[str]:
    """The once-a-run part: the all-papers feed and the OPML list written; the profiles whose
    feed is to be rebuilt: those with open rows, and those whose files are missing."""
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
    for profile in config.profiles:
        rss_path, atom_path = feeds.profile_feed_paths(profile.name)
        if not subscriptions.is_web_profile(profile.name):  # a web subscriber's feed is private
            listing.append((feeds.profile_feed_title(profile.name), atom_path))
        if ours(profile.name) and (
            profile.name in open_rows
            or not feeds.on_disk(output.feeds_dir, (rss_path, atom_path))
        ):
            rebuild.append(profile.name)
    written.publish({feeds.OPML_PATH: feeds.opml(listing, base)})
    return rebuild


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


FEED_BATCH = 500  # profiles whose feeds are built, then written, together


class _Written:
    """The files one run published: which changed, which could not be written and why."""

    def __init__(self, feeds_dir: Path) -> None:
        self.feeds_dir = feeds_dir
        self.changed: list[str] = []
        self.failed: dict[str, str] = {}

    def publish(self, files: dict[str, bytes]) -> None:
        try:
            self.changed += feeds.publish(self.feeds_dir, files)
        except feeds.PublishError as exc:
            self.changed += exc.changed
            self.failed.update(exc.failed)


def publish_first_feed(config: Config, profile: str) -> list[str]:
    """A new subscriber's feed, valid and empty, so its address works from the start (the
    first digest fills it); a feed already there is left as it is."""
    output = config.output
    if feeds.on_disk(output.feeds_dir, feeds.profile_feed_paths(profile)):
        return []
    links = FeedbackLinks(profile, output.base_url, tuple(load_secrets(config.data_dir)))
    built = feeds.profile_feed(
        profile, [], Renderer(), feeds.feeds_url(output.base_url), output.feed_max_items, links
    )
    return feeds.publish(output.feeds_dir, {built.rss_path: built.rss, built.atom_path: built.atom})
