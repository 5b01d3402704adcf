"""`digest schedule`: the long-running service. APScheduler (3.x) only triggers; the ledger decides.

Jobs, each with an explicit id so a restart replaces rather than duplicates them:
    fetch:SOURCE     ingest one source, on its own cron (`schedule`, in UTC) or hourly
    digest:PROFILE   compose and deliver the profile's digest at its local `deliver_at`, on the
                     days its frequency calls for (daily, weekdays, weekly on `weekday`)
    subscribers      every 15 minutes: the digests due for people who subscribed on the web (they
                     come and go while the service runs, so they get no job of their own)
    catch-up         once at start: a full cycle, so a service that was down sends what it missed
Jobs run one at a time (one worker: the store is one SQLite file), coalesce (a backlog of missed
runs fires once) and have a misfire grace (a late start still runs). Whatever triggers a digest
job, it composes only what `compose.due_window` says is due, so a restart, a misfire or a manual
`digest run` alongside never sends a digest twice, and after downtime ONE digest covers the gap.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from types import FrameType

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from digest import pipeline, subscriptions
from digest.channels.feed import publish_feeds
from digest.channels.mail import make_sender
from digest.config import Config, ProfileConfig, SourceConfig
from digest.errors import DigestError
from digest.feeds import PublishError
from digest.render import Renderer
from digest.store import open_store
from digest.store.leader import Leadership, leadership

log = logging.getLogger(__name__)

FETCH_GRACE_S = 30 * 60  # a fetch more than 30 min late is skipped: the next one comes soon
DIGEST_GRACE_S = 12 * 3600  # a digest late by up to 12 h still goes out (a machine woke up late)
LEAD_CHECK_S = 15  # how often a leader makes sure it still leads (between jobs)
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
SUBSCRIBERS_EVERY_MIN = 15  # a web subscriber's digest comes within this long of its time


@dataclass(frozen=True, slots=True)
class JobPlan:
    """One job the service runs: its id, when, and what (a source's fetch or a profile's digest)."""

    job_id: str
    trigger: BaseTrigger
    grace_s: int
    source: str | None = None
    profile: str | None = None
    subscribers: bool = False  # the web subscribers' job


def plan(config: Config) -> list[JobPlan]:
    """Every job of the service, from the config alone (pure: the tests read the triggers)."""
    jobs = [
        JobPlan(f"fetch:{s.name}", source_trigger(s), FETCH_GRACE_S, source=s.name)
        for s in config.sources
        if s.enabled
    ]
    jobs += [
        JobPlan(f"digest:{p.name}", profile_trigger(p), DIGEST_GRACE_S, profile=p.name)
        for p in config.profiles
    ]
    jobs.append(
        JobPlan(
            "subscribers",
            # Started at a fixed past instant, so it fires on the quarter hours, whenever it starts.
            IntervalTrigger(minutes=SUBSCRIBERS_EVERY_MIN, start_date=_EPOCH, timezone=UTC),
            DIGEST_GRACE_S,
            subscribers=True,
        )
    )
    return jobs


def source_trigger(source: SourceConfig) -> BaseTrigger:
    if source.schedule is None:
        return IntervalTrigger(hours=1, timezone=UTC)
    return crontab_trigger(source.schedule)


def profile_trigger(profile: ProfileConfig) -> CronTrigger:
    hour, minute = (int(part) for part in profile.deliver_at.split(":"))
    days = {"daily": "*", "weekdays": "mon-fri", "weekly": profile.weekday[:3]}
    return CronTrigger(
        day_of_week=days[profile.frequency], hour=hour, minute=minute, timezone=profile.timezone
    )


_CRON_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def crontab_trigger(expression: str) -> CronTrigger:
    """A five-field crontab line (in UTC) as a CronTrigger, weekdays numbered as cron numbers them.

    APScheduler 3 counts weekdays from Monday = 0, crontab from Sunday = 0; the day-of-week field
    is rewritten as names, so "30 1 * * 1-5" means Monday to Friday, as in crontab.
    """
    minute, hour, day, month, weekdays = expression.split()
    return CronTrigger(
        minute=minute,
        hour=hour,
        day=day,
        month=month,
        day_of_week=_weekday_names(weekdays),
        timezone=UTC,
    )


def _weekday_names(field: str) -> str:
    if field == "*":
        return "*"
    chosen: set[int] = set()
    for item in field.split(","):
        body, _, step_text = item.partition("/")
        step = int(step_text) if step_text else 1
        if body == "*":
            low, high = 0, 6
        else:
            bounds = [_day_number(bound) for bound in body.split("-")]
            low, high = bounds[0], bounds[-1]
            if len(bounds) == 1 and step_text:
                high = 6  # "1/2": from Monday on, every other day
        chosen.update(day % 7 for day in range(low, high + 1, step))
    return ",".join(_CRON_DAYS[day] for day in sorted(chosen))


def _day_number(text: str) -> int:
    if text.isdigit():
        return int(text)  # 7 is Sunday too; taken modulo 7 by the caller
    return _CRON_DAYS.index(text.lower()[:3])


def next_runs(config: Config, now: datetime) -> list[tuple[str, datetime | None]]:
    """When each job fires next after `now` (for the log at start and `digest status`)."""
    return [(job.job_id, job.trigger.get_next_fire_time(None, now)) for job in plan(config)]


# -- the running service ------------------------------------------------------------------------


class Service:
    """The scheduler with its jobs, wired to the pipeline. `run()` blocks until SIGTERM/SIGINT."""

    def __init__(self, config: Config, clock: Callable[[], datetime]) -> None:
        self.config = config
        self.clock = clock
        self.scheduler = BlockingScheduler(
            executors={"default": ThreadPoolExecutor(max_workers=1)},
            job_defaults={"coalesce": True, "max_instances": 1},
            timezone=UTC,
        )
        for job in plan(config):
            self.scheduler.add_job(
                self._job,
                trigger=job.trigger,
                id=job.job_id,
                name=job.job_id,
                kwargs={"source": job.source, "profile": job.profile,
                        "subscribers": job.subscribers},
                misfire_grace_time=job.grace_s,
                replace_existing=True,
            )
        self.lost_lead = False

    def _job(
        self,
        source: str | None = None,
        profile: str | None = None,
        everything: bool = False,
        subscribers: bool = False,
    ) -> None:
        if pipeline.STOPPING.is_set():
            return
        try:
            with open_store(self.config) as store:
                if source is not None:
                    with pipeline.make_fetcher(self.config) as fetcher:
                        pipeline.ingest(self.config, store, fetcher, self.clock, only=[source])
                    # The all-papers feed follows every fetch, not only the digest times.
                    publish_feeds(
                        self.config, store, Renderer(), self.clock, claimant=pipeline.run_id(),
                        lease=self.config.delivery.claim_lease,
                    )
                    return
                chosen: list[ProfileConfig] | None
                if subscribers:
                    chosen = subscriptions.active_profiles(store)
                    if not chosen:
                        return
                else:
                    chosen = None if everything else [self.config.profile(profile or "")]
                with (
                    make_sender(self.config) as sender,
                    pipeline.open_poster(self.config) as poster,
                ):
                    if everything:
                        with pipeline.make_fetcher(self.config) as fetcher:
                            pipeline.run_cycle(
                                self.config, store, self.clock, sender, fetcher=fetcher,
                                poster=poster,
                            )
                    else:
                        pipeline.run_cycle(
                            self.config, store, self.clock, sender, profiles=chosen, poster=poster
                        )
        except PublishError:
            pass  # publish_feeds said it once and recorded it for `digest status`
        except DigestError as exc:  # one line, no traceback: the next job tries again
            log.error("job failed: %s", exc, extra={"source": source or "", "profile": profile or ""})
        except Exception:  # a bug: one failed job must not stop the service; the next one tries again
            log.exception(
                "job failed", extra={"source": source or "", "profile": profile or ""}
            )

    def stop(self, signum: int, frame: FrameType | None) -> None:
        """On SIGTERM or SIGINT: no new job starts, the one running finishes its current step
        (a standby just stops waiting)."""
        log.info("stopping: %s received", signal.Signals(signum).name)
        self._shut_down()

    def _shut_down(self) -> None:
        pipeline.STOPPING.set()
        if self.scheduler.running:
            threading.Thread(target=self.scheduler.shutdown, kwargs={"wait": True}).start()

    def _check_lead(self, lead: Leadership) -> None:
        """Between jobs: a leader whose lock went (its database connection dropped) stops, since
        another scheduler may lead by now."""
        if not lead.leading():
            self.lost_lead = True
            self._shut_down()

    def run(self) -> None:
        """Take the store's lead (waiting as a standby while another scheduler has it), then run
        the jobs until SIGTERM/SIGINT. Raises LostLead when the lead was lost meanwhile."""
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        lead = leadership(self.config)
        try:
            if not lead.wait(pipeline.STOPPING):
                log.info("stopped")
                return
            log.info("leading: this process schedules the store's jobs")
            # At start, one full cycle: fetch everything, then deliver whatever is due or overdue.
            self.scheduler.add_job(
                self._job, id="catch-up", name="catch-up", kwargs={"everything": True},
                next_run_time=self.clock(), misfire_grace_time=None,
            )
            self.scheduler.add_job(
                self._check_lead, "interval", seconds=LEAD_CHECK_S, id="lead", name="lead",
                kwargs={"lead": lead},
            )
            for job_id, when in next_runs(self.config, self.clock()):
                log.info("job %s: next run %s", job_id, when.isoformat() if when else "never")
            self.scheduler.start()
        finally:
            lead.release()
        if self.lost_lead:
            raise LostLead(
                "lost the store's lead (its database connection dropped): stopped scheduling; "
                "start it again to wait as a standby"
            )
        log.info("stopped")


class LostLead(DigestError):
    """The scheduler's lock went while it ran; another may lead by now."""
