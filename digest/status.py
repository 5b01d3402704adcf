"""`digest status`: what a person (or a monitor) needs to know about a job nobody watches.

Per source, its last run and since when it fails; the next scheduled runs; today's digests (sent,
failed, pending) per profile; the age of every feed file, and since when a run could not write
them; a sentence model that cannot be loaded
(the ranking then goes on with words alone); a line per delivery channel (mail, feeds, each team
chat): what its rows of today did, and since when it is stopped, if it is. `problems` lists what
needs a person, each said once:
the command exits non-zero when there is any, so a health check or a monitor can call it. An
`empty` source (a well-formed answer with nothing in it: a weekend, an arXiv holiday) is fine.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from digest import compose, subscriptions
from digest import feeds as feed_files
from digest.config import CHAT_KINDS, Config, ProfileConfig
from digest.health import layout_change
from digest.models import Delivery, SourceRun
from digest.retention import StoreStatus, store_status
from digest.schedule import DIGEST_GRACE_S, next_runs
from digest.store import Store


@dataclass(frozen=True, slots=True)
class SourceStatus:
    name: str
    state: str  # ok | empty | unchanged | failing | layout | never run | disabled
    last_run: datetime | None = None
    since: datetime | None = None  # when the current failing streak began
    failed_runs: int = 0  # runs in that streak
    error: str | None = None


@dataclass(frozen=True, slots=True)
class ProfileStatus:
    name: str
    day: str  # the profile's local day, ISO
    sent: int
    failed: int
    pending: int  # pending, deferred or being sent
    last_digest: str | None  # day of the newest digest, ISO
    overdue: bool  # a due digest is missing well past its time


# A team chat's ledger rows are "<kind>:<name>" ("slack:lab", its kind one of CHAT_KINDS), and so
# is the store's problem part of a chat stopped for a run (circuit breaker open, deadline passed,
# a setup error).
MAIL_PART = "mail"  # the problem part of the mail channel (every address) while it is stopped
# The feeds' part is feeds.PROBLEM_PART ("feeds"); "feed", as its ledger rows are named, too.
FEED_PARTS = (feed_files.PROBLEM_PART, "feed")
# The order a channel's line counts its rows in: how it went, then what is still owed.
COUNTED = ("sent", "skipped", "pending", "sending", "deferred", "failed", "uncertain")
OWED = ("pending", "sending", "deferred", "uncertain")  # a run still delivers them, whatever day


@dataclass(frozen=True, slots=True)
class ChannelStatus:
    """One delivery channel: "mail" (every address), "feeds", or a team chat ("slack:lab")."""

    name: str
    counts: tuple[tuple[str, int], ...]  # (status, rows) in COUNTED order, none of them 0
    state: str  # ok | idle (no rows) | needs a person | stopped (its problem is stored)
    problem: str | None = None  # while stopped: why, on one line
    since: datetime | None = None


@dataclass(frozen=True, slots=True)
class FeedStatus:
    path: str  # relative to feeds_dir
    age: timedelta | None  # None: missing


@dataclass(frozen=True, slots=True)
class Status:
    now: datetime
    sources: tuple[SourceStatus, ...]
    next_runs: tuple[tuple[str, datetime | None], ...]
    profiles: tuple[ProfileStatus, ...]
    web: tuple[ProfileStatus, ...]  # the active web subscribers
    feeds: tuple[FeedStatus, ...]
    problems: tuple[str, ...]
    # "could not be written since ...: error" while the last run could not write feed files.
    feeds_problem: str | None = None
    channels: tuple[ChannelStatus, ...] = ()
    store: StoreStatus | None = None  # its size, what it keeps, how fast it grows


def gather(config: Config, store: Store, now: datetime) -> Status:
    problems: list[str] = []
    sources = []
    for source in config.sources:
        found = source_status(source.name, store.source_runs(source.name, 50), source.enabled)
        sources.append(found)
        if found.state == "failing":
            problems.append(
                f"source {found.name} failing since {_when(found.since)} "
                f"({found.failed_runs} runs): {found.error}"
            )
        elif found.state == "layout":  # the error begins "probable layout change": said once
            problems.append(f"source {found.name}: {layout_change(found.error or 'no reason')}")

    profiles: list[ProfileStatus] = []
    # People who subscribed on the web: counted together, each named only when in trouble.
    web: list[ProfileStatus] = []
    today: list[Delivery] = []  # every profile's rows of its local day, for the channel lines
    for profile in (*config.profiles, *subscriptions.active_profiles(store)):
        digests, trouble = profile_status(profile, store, now)
        (web if subscriptions.is_web_profile(profile.name) else profiles).append(digests)
        problems += trouble
        today += store.deliveries(profile=profile.name, day=date.fromisoformat(digests.day))
    problems += ledger_problems(config, store, now)

    feeds = []
    paths = feed_files.published_paths(p.name for p in config.profiles)
    feeds_expected = store.count_papers() > 0  # every cycle after the first ingest writes them
    parts = store.problems()
    # Feed files a run could not write (disk full, permissions): said once, with the error,
    # until a run writes them all. The mail went out regardless.
    found_parts = [parts.pop(part) for part in FEED_PARTS if part in parts]
    unwritten = found_parts[0] if found_parts else None
    feeds_problem = (
        f"could not be written since {_when(unwritten[1])}: {unwritten[0]}" if unwritten else None
    )
    if feeds_problem:
        problems.append(f"feeds: {feeds_problem}")
    # In feeds_dir, or with a PostgreSQL store in the store (feed_files): one query for all.
    published = feed_files.target(config.feeds_dir, store, lambda: now).modified(paths)
    for relative in paths:
        modified = published.get(relative)
        if modified is not None:
            feeds.append(FeedStatus(relative, max(now - modified, timedelta(0))))
        else:
            feeds.append(FeedStatus(relative, None))
            if feeds_expected and not feeds_problem:
                problems.append(f"feed {relative} is missing (the next `digest run` writes it)")
    # A channel stopped for a run: said once, on its line and here, until it delivers again.
    stopped = {part: parts.pop(part) for part in list(parts) if _is_channel(part)}
    for part, (problem, since) in stopped.items():
        problems.append(f"{part}: stopped since {_when(since)}: {_one_line(problem)}")
    if unwritten:
        stopped["feeds"] = unwritten
    channels = channel_status(config, store, now, today, stopped)
    # Problems of parts that belong to no source, e.g. a sentence model that failed to load.
    for part, (problem, since) in parts.items():
        problems.append(f"{part} since {_when(since)}: {problem}")
    return Status(
        now=now,
        sources=tuple(sources),
        next_runs=tuple(next_runs(config, now)),
        profiles=tuple(profiles),
        web=tuple(web),
        feeds=tuple(feeds),
        problems=tuple(problems),
        feeds_problem=feeds_problem,
        channels=tuple(channels),
        store=store_status(config, store, now),
    )


def profile_status(
    profile: ProfileConfig, store: Store, now: datetime
) -> tuple[ProfileStatus, list[str]]:
    """A profile's digests of its local day, and what in them needs a person."""
    day = now.astimezone(ZoneInfo(profile.timezone)).date()
    rows = store.deliveries(profile=profile.name, day=day)
    latest = store.digests(profile.name, limit=1)
    slot = compose.last_slot(profile, now)
    # Overdue: the next run would make a digest (the same rule it uses) for a slot that
    # passed longer ago than the service's misfire grace.
    overdue = bool(
        slot is not None
        and now - slot > timedelta(seconds=DIGEST_GRACE_S)
        and compose.due_window(profile, now, latest[0] if latest else None) is not None
    )
    status = ProfileStatus(
        name=profile.name,
        day=day.isoformat(),
        sent=sum(r.status == "sent" for r in rows if r.channel != "feed"),
        failed=sum(r.status == "failed" for r in rows),
        pending=sum(r.status in ("pending", "deferred", "sending") for r in rows),
        last_digest=latest[0].day.isoformat() if latest else None,
        overdue=overdue,
    )
    problems = []
    for row in rows:
        if row.channel == "feed" and row.status == "deferred":
            continue  # feed files that could not be written: the feeds line says it, once
        if row.status == "failed":
            problems.append(f"profile {profile.name}: {row.channel}: failed: {row.error}")
        elif row.status == "deferred":
            problems.append(f"profile {profile.name}: {row.channel}: deferred: {row.error}")
    if overdue:
        problems.append(f"profile {profile.name}: the digest due {_when(slot)} was not made")
    return status, problems


def ledger_problems(config: Config, store: Store, now: datetime) -> list[str]:
    """Deliveries of any day that need a person: a message handed over without an answer
    ('uncertain': did the reader get it?), and a row still 'sending' past its claim lease (the
    run that claimed it stopped; the next run takes it over)."""
    problems = []
    lease = config.delivery.claim_lease
    for row in store.deliveries(statuses=("uncertain", "sending")):
        whom = f"profile {row.profile}: {row.channel}: the digest of {row.day.isoformat()}"
        if row.status == "uncertain":
            again = (row.updated or now) + config.delivery.uncertain_quarantine
            problems.append(
                f"{whom}: uncertain since {_when(row.updated)}: handed over, but no answer came "
                f"(it may have arrived; ask {row.address or 'the reader'}); "
                f"sent again by the first run after {_when(again)} "
                "(or settle it: digest uncertain --arrived | --resend)"
            )
        elif row.updated is not None and now - row.updated > lease:
            problems.append(
                f"{whom}: still sending since {_when(row.updated)}, past its {_age(lease)} claim "
                "lease: the run that claimed it stopped; the next run "
                + ("marks it uncertain: it was being handed over" if row.message_id and row.address
                   else "sends it")
            )
    return problems


def channel_status(
    config: Config,
    store: Store,
    now: datetime,
    today: Iterable[Delivery],
    stopped: Mapping[str, tuple[str, datetime]],
) -> list[ChannelStatus]:
    """A line per channel: mail and feeds always, a chat when configured, stopped or in the ledger.

    Its window is the one the profile lines use: the rows of each profile's local day (`today`,
    so its numbers add up to theirs), and the rows of earlier days a run still owes (pending,
    sending, deferred, uncertain), as `digest run` delivers those too. A channel needs a person
    for the very rows "needs a person" names (so neither says "all well" without the other):
    today's failed ones and deferred ones (a feed row's deferral is the feeds' problem instead),
    and any day's uncertain ones and ones still sending past their claim lease."""
    lease = config.delivery.claim_lease
    rows: dict[tuple[str, str, date], tuple[Delivery, bool]] = {
        (row.profile, row.channel, row.day): (row, False) for row in store.deliveries(statuses=OWED)
    }
    rows.update({(row.profile, row.channel, row.day): (row, True) for row in today})
    configured = [f"{chat.kind}:{chat.name}" for chat in config.chats]
    found: dict[str, list[tuple[Delivery, bool]]] = {
        name: [] for name in ("mail", "feeds", *configured)
    }
    named = list(found)  # in this order; the others (chats no longer configured) by name
    for row, of_today in rows.values():
        found.setdefault(_channel_of(row), []).append((row, of_today))
    for part in stopped:
        found.setdefault(part, [])
    channels = []
    for name in named + sorted(set(found) - set(named)):
        counted = Counter(row.status for row, _ in found[name])
        if name in stopped:
            problem, since = stopped[name]
            state, why, when = "stopped", _one_line(problem), since
        else:
            troubled = any(_needs_a_person(row, of_today, lease, now) for row, of_today in found[name])
            state = "needs a person" if troubled else "ok" if found[name] else "idle"
            why, when = None, None
        counts = tuple((status, counted[status]) for status in COUNTED if counted[status])
        channels.append(ChannelStatus(name, counts, state, why, when))
    return channels


def _channel_of(row: Delivery) -> str:
    """The channel line a ledger row is counted on: every address's on "mail"."""
    return {"mail": "mail", "feed": "feeds"}.get(row.kind, row.channel)


def _is_channel(part: str) -> bool:
    """A problem part named after a channel: "mail", or a chat's "<kind>:<name>"."""
    kind, _, name = part.partition(":")
    return part == MAIL_PART or (kind in CHAT_KINDS and bool(name))


def _needs_a_person(row: Delivery, of_today: bool, lease: timedelta, now: datetime) -> bool:
    """Whether `profile_status` or `ledger_problems` names this row."""
    if row.status == "uncertain":
        return True
    if row.status == "sending":
        return row.updated is not None and now - row.updated > lease
    return of_today and (
        row.status == "failed" or (row.status == "deferred" and row.channel != "feed")
    )


def source_status(name: str, runs: list[SourceRun], enabled: bool = True) -> SourceStatus:
    """A source's state from its run history (newest first)."""
    if not enabled:
        return SourceStatus(name, "disabled", runs[0].started if runs else None)
    if not runs:
        return SourceStatus(name, "never run")
    last = runs[0]
    if last.status not in ("failed", "layout"):
        return SourceStatus(name, last.status, last.started)
    streak = []
    for run in runs:
        if run.status != last.status:
            break
        streak.append(run)
    return SourceStatus(
        name,
        "failing" if last.status == "failed" else "layout",
        last.started,
        since=streak[-1].started,
        failed_runs=len(streak),
        error=last.error,
    )


def render(status: Status) -> str:
    lines = ["sources:"]
    width = max((len(s.name) for s in status.sources), default=0)
    for source in status.sources:
        line = f"  {source.name:<{width}}  {source.state:<9}"
        if source.last_run:
            line += f"  last run {_when(source.last_run)} ({_age(status.now - source.last_run)} ago)"
        if source.since:
            line += f"; since {_when(source.since)}, {source.failed_runs} runs"
        lines.append(line)
    lines.append("next runs:")
    for job_id, when in status.next_runs:
        lines.append(f"  {job_id:<{width + 8}}  {_when(when) if when else 'never'}")
    lines.append("digests today (each profile's local day):")
    for profile in status.profiles:
        lines.append(
            f"  {profile.name}: {profile.sent} sent, {profile.failed} failed, "
            f"{profile.pending} pending; last digest {profile.last_digest or 'none yet'}"
            + ("; OVERDUE" if profile.overdue else "")
        )
    if status.web:
        web = status.web
        lines.append(
            f"  web subscribers: {len(web)} active, {sum(p.sent for p in web)} sent, "
            f"{sum(p.failed for p in web)} failed, {sum(p.pending for p in web)} pending"
            + (f"; {sum(p.overdue for p in web)} OVERDUE" if any(p.overdue for p in web) else "")
        )
    lines.append("feeds:")
    if status.feeds_problem:
        lines.append(f"  {status.feeds_problem}")
    for feed in status.feeds:
        lines.append(f"  {feed.path}: " + (f"{_age(feed.age)} old" if feed.age is not None else "missing"))
    lines.append("channels (today's digests, and what earlier days still owe):")
    for channel in status.channels:
        lines.append(f"  {channel_line(channel)}")
    if status.store is not None:
        lines.append(status.store.line())
    if status.problems:
        lines.append("needs a person:")
        lines += [f"  - {problem}" for problem in status.problems]
    else:
        lines.append("all well")
    return "\n".join(lines)


def channel_line(channel: ChannelStatus) -> str:
    """ "mail: 198 sent, 2 pending, 1 failed — needs a person", "feeds: 2 sent — ok",
    "matrix:room: nothing today — idle", "slack:lab: 1 pending — stopped since WHEN: WHY"."""
    counts = ", ".join(f"{rows} {status}" for status, rows in channel.counts) or "nothing today"
    state = channel.state
    if state == "stopped":
        state = f"stopped since {_when(channel.since)}: {channel.problem}"
    return f"{channel.name}: {counts} — {state}"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M %Z") if moment else "?"


def _age(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"
