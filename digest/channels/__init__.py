"""Delivery channels: where a composed digest goes, each kind in a module of its own.

    feed.py   the RSS and Atom files (and the OPML list), rebuilt together once per run
    mail.py   each reader's email, into the Maildir outbox or over SMTP
    chat.py   a team chat: a Slack or Discord webhook, a Matrix room, a generic JSON webhook

A `Channel` says which ledger rows a new digest of a profile gets (`targets`) and delivers the
rows the ledger still owes (`deliver`). Mail and chat send one message per row through the shared
ledger loop (digest.deliver.deliver_rows: claim, build, send, settle, uncertain, breaker, deadline);
feeds write their files together. `open_channels` makes a run's channels from config.toml through
the registry CHANNEL_KINDS (as digest.sources has SOURCE_KINDS), and `deliver_all` runs them one
after the other, each on its own: one that fails (a full disk, a webhook's 500, SMTP down) is
recorded for `digest status` and never stops the next.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Protocol

from digest.channels.chat import ChatChannel
from digest.channels.feed import FeedChannel
from digest.channels.mail import MailChannel, Sender
from digest.config import Config, DeliveryConfig, ProfileConfig
from digest.deliver import ChannelStopped, DeliveryReport, combined
from digest.errors import DeliveryError
from digest.fetch import Fetcher
from digest.models import Digest
from digest.progress import Progress, no_progress
from digest.render import Renderer
from digest.store import Store
from digest.text import one_line

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RunContext:
    """What every channel's delivery in one run shares."""

    clock: Callable[[], datetime]
    claimant: str  # this run, as the ledger names it
    settings: DeliveryConfig  # [delivery]: claim lease, quarantine, deadline
    stopping: Callable[[], bool] = lambda: False  # SIGTERM: stop between two messages
    progress: Progress = no_progress
    started: datetime | None = None  # when the run began (None: when the first channel does)
    # The run delivers what earlier runs left open first (block None), then each block of the
    # digests it composes: `block` names the block's (profile, day) pairs, `fresh` holds its
    # digests as composed (read from there, not back from the store), and `coming` names the
    # profiles whose blocks are still to come (the first pass leaves their feeds to them).
    block: frozenset[tuple[str, date]] | None = None
    fresh: Mapping[tuple[str, date], Digest] = dataclasses.field(default_factory=dict)
    coming: frozenset[str] = frozenset()

    def time_left(self) -> timedelta:
        """What is left of the run's [delivery] deadline: it bounds the whole run, all channels
        together, counted from the run's start (deliver_all sets it when the caller did not)."""
        now = self.clock()
        return max((self.started or now) + self.settings.deadline - now, timedelta(0))

    def digest(self, store: Store, profile: str, day: date) -> Digest | None:
        """A digest to deliver: the block's own as composed, else the stored one."""
        return self.fresh.get((profile, day)) or store.digest(profile, day)

    def profiles(self) -> frozenset[str] | None:
        """The profiles of the block being delivered (None: the pass over what was left)."""
        return None if self.block is None else frozenset(profile for profile, _ in self.block)


class Channel(Protocol):
    """One way a digest reaches people."""

    # Its line in `digest run` and `digest status`, and its part in the store's problems:
    # "feeds", "mail", "slack:lab".
    @property
    def name(self) -> str: ...

    # Does a stop (its breaker, a setup problem, the deadline) end its run? Mail and chats: yes,
    # the run's later blocks leave their rows for the next run. Feeds: no, each block's files are
    # tried (a full disk fails fast; one unwritable file must not keep the others back).
    @property
    def stops_for_the_run(self) -> bool: ...

    def targets(self, profile: ProfileConfig) -> list[str]:
        """The ledger rows ("mail:ADDRESS", "feed", "slack:lab") a new digest of `profile` gets."""
        ...

    def deliver(self, run: RunContext) -> DeliveryReport:
        """Deliver what the ledger still owes on this channel; raise DeliveryError for a setup
        problem that stops it (the rows wait for the next run)."""
        ...


@dataclass(frozen=True, slots=True)
class Parts:
    """What channels are made of: the run's config, store, renderer, mail sender and HTTP client
    (None when the run replays captured pages: chats are then not posted)."""

    config: Config
    store: Store
    renderer: Renderer
    sender: Sender
    poster: Fetcher | None


def _feeds(parts: Parts) -> list[Channel]:
    return [FeedChannel(parts.config, parts.store, parts.renderer)]


def _mail(parts: Parts) -> list[Channel]:
    return [MailChannel(parts.config, parts.store, parts.renderer, parts.sender)]


def _chats(kind: str) -> Callable[[Parts], list[Channel]]:
    def make(parts: Parts) -> list[Channel]:
        return [
            ChatChannel(chat, parts.config, parts.store, parts.poster)
            for chat in parts.config.chats
            if chat.kind == kind
        ]

    return make


# Every kind of channel, by the ledger rows' prefix, in the order a run delivers them: the feeds
# first (cheap, local), then mail, then the chats.
CHANNEL_KINDS: dict[str, Callable[[Parts], list[Channel]]] = {
    "feed": _feeds,
    "mail": _mail,
    "slack": _chats("slack"),
    "discord": _chats("discord"),
    "matrix": _chats("matrix"),
    "webhook": _chats("webhook"),
}


def open_channels(parts: Parts) -> list[Channel]:
    """Every channel of this run, from config.toml."""
    return [channel for make in CHANNEL_KINDS.values() for channel in make(parts)]


def targets(channels: list[Channel], profile: ProfileConfig) -> list[str]:
    """The ledger rows a new digest of `profile` gets, over every channel."""
    return [target for channel in channels for target in channel.targets(profile)]


def deliver_all(
    channels: list[Channel], store: Store, run: RunContext
) -> dict[str, DeliveryReport]:
    """Each channel delivers on its own; one that stops (a setup problem, its breaker, its
    deadline) is recorded in the store's problems under its name and the next goes on. A channel
    that gets through clears its problem. Stops between channels when `run.stopping()`."""
    reports: dict[str, DeliveryReport] = {}
    if run.started is None:
        run = dataclasses.replace(run, started=run.clock())
    for channel in channels:
        if run.stopping():
            break
        try:
            report = channel.deliver(run)
        except DeliveryError as exc:  # login refused, outbox not writable, a webhook gone
            said = one_line(str(exc), limit=300)
            log.error("%s: %s; nothing more on this channel this run", channel.name, said)
            done = exc.report if isinstance(exc, ChannelStopped) else DeliveryReport()
            report = dataclasses.replace(done, stopped=said)
        reports[channel.name] = report
        if channel.name != "feeds":  # the feed step records its own problem (part "feeds")
            store.set_problem(channel.name, report.stopped, run.clock())
    return reports


def merged(
    before: Mapping[str, DeliveryReport], then: Mapping[str, DeliveryReport]
) -> dict[str, DeliveryReport]:
    """Two passes' reports of a run as one, channel by channel (in delivery order)."""
    names = [*before, *(name for name in then if name not in before)]
    return {
        name: combined(before[name], then[name]) if name in before and name in then
        else before.get(name) or then[name]
        for name in names
    }
