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
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from digest import feeds, subscriptions
from digest.config import Config, ProfileConfig
from digest.deliver import DeliveryReport
from digest.models import Delivery
from digest.render import FeedbackLinks, Renderer
from digest.store import Outcome, Store
from digest.text import one_line
from digest.tokens import load_secrets

if TYPE_CHECKING:  # the package's __init__ imports this module
    from collections.abc import Callable

    from digest.channels import RunContext

log = logging.getLogger(__name__)

FEED_CHANNEL = "feed"  # the ledger's name of a digest's feed row


class FeedChannel:
    """RSS and Atom files under [output] feeds_dir, served by `digest serve` or any web server."""

    name = "feeds"
    kind = "feed"

    def __init__(self, config: Config, store: Store, renderer: Renderer) -> None:
        self.config = config
        self.store = store
        self.renderer = renderer
        self.written: list[str] = []  # files this run changed (relative to feeds_dir)

    def targets(self, profile: ProfileConfig) -> list[str]:
        return [FEED_CHANNEL]

    def deliver(self, run: RunContext) -> DeliveryReport:
        try:
            self.written = publish_feeds(
                self.config, self.store, self.renderer, run.clock, claimant=run.claimant,
                lease=run.settings.claim_lease,
            )
        except feeds.PublishError as exc:
            self.written = exc.changed
            # Said once (the error names the first file), not once per file.
            return DeliveryReport(stopped=one_line(str(exc)))
        return DeliveryReport()


def publish_feeds(
    config: Config,
    store: Store,
    renderer: Renderer,
    clock: Callable[[], datetime],
    *,
    claimant: str,
    lease: timedelta,
) -> list[str]:
    """Rebuild the feeds whose data changed and write the files that changed.

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
    open_rows: dict[str, list[Delivery]] = {}
    for row in store.deliveries(statuses=("pending", "deferred", "sending")):
        if row.channel == FEED_CHANNEL:
            open_rows.setdefault(row.profile, []).append(row)
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
    written = _Written(output.feeds_dir)
    written.publish({everything.rss_path: everything.rss, everything.atom_path: everything.atom})
    listing = [(everything.title, everything.atom_path)]
    rebuild = []
    for profile in config.profiles:
        rss_path, atom_path = feeds.profile_feed_paths(profile.name)
        if not subscriptions.is_web_profile(profile.name):  # a web subscriber's feed is private
            listing.append((feeds.profile_feed_title(profile.name), atom_path))
        if profile.name in open_rows or not feeds.on_disk(output.feeds_dir, (rss_path, atom_path)):
            rebuild.append(profile.name)
    # Built and written FEED_BATCH profiles at a time: a run never holds every profile's bytes.
    for start in range(0, len(rebuild), FEED_BATCH):
        files: dict[str, bytes] = {}
        for name in rebuild[start : start + FEED_BATCH]:
            latest = store.digests(name, limit=1)
            since_day = latest[0].day - timedelta(days=output.feed_days - 1) if latest else None
            digests = store.digests(name, since_day=since_day) if latest else []
            feedback = FeedbackLinks(name, output.base_url, keys)
            built = feeds.profile_feed(name, digests, renderer, base, output.feed_max_items, feedback)
            files[built.rss_path] = built.rss
            files[built.atom_path] = built.atom
        written.publish(files)
    written.publish({feeds.OPML_PATH: feeds.opml(listing, base)})
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
    store.set_problem(feeds.PROBLEM_PART, None, now)
    return written.changed


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
