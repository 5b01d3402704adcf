"""Two unattended weeks, simulated with a fake clock, as cron runs them and as the service does.

October 19 to November 2, 2026: Europe leaves summer time on Oct 25, the US on Nov 1. arXiv
announces Sunday to Thursday at 20:00 New York time, except on a holiday (Tuesday Oct 27); Hugging
Face adds papers every four hours. The machine is down from Wednesday Oct 28 13:30 UTC to Saturday
Oct 31 12:00 UTC, and the process (store, renderer) is new after it. It runs twice: as hourly
`digest run` from cron, and as `digest schedule` firing its own jobs. Three profiles, each on its
own time zone and frequency, must get exactly the digests their frequency calls for, on their own
local day, one catch-up digest after the outage, and every paper at most once.
"""

from __future__ import annotations

import mailbox
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from helpers import make_config, record

from digest.channels.mail import Outbox
from digest.config import ProfileConfig, SourceConfig
from digest.pipeline import run_cycle
from digest.schedule import crontab_trigger, plan, profile_trigger
from digest.store import Store

START = datetime(2026, 10, 19, 0, 0, tzinfo=UTC)
END = datetime(2026, 11, 2, 0, 0, tzinfo=UTC)
OUTAGE = (datetime(2026, 10, 28, 13, 30, tzinfo=UTC), datetime(2026, 10, 31, 12, 0, tzinfo=UTC))
ARXIV_HOLIDAY = date(2026, 10, 27)
NEW_YORK, BERLIN, TOKYO = (ZoneInfo(z) for z in ("America/New_York", "Europe/Berlin", "Asia/Tokyo"))

ARXIV = SourceConfig("arxiv", "arxiv-rss", ("https://rss.arxiv.org/atom/cs.LG",))
PROFILES = (
    ProfileConfig("berlin", emails=("a@example.org",), keywords=("diffusion",), max_items=200,
                  timezone="Europe/Berlin", frequency="daily", deliver_at="07:00"),
    ProfileConfig("newyork", emails=("b@example.org",), keywords=("diffusion",), max_items=200,
                  timezone="America/New_York", frequency="weekdays", deliver_at="08:00"),
    ProfileConfig("tokyo", emails=("c@example.org",), keywords=("diffusion",), max_items=200,
                  timezone="Asia/Tokyo", frequency="weekly", weekday="monday", deliver_at="09:00"),
)


def down(moment: datetime) -> bool:
    return OUTAGE[0] <= moment < OUTAGE[1]


def announcements() -> list[tuple[datetime, str]]:
    """(when, source) of every listing event in the fortnight, machine up or not."""
    events = []
    day = START.date() - timedelta(days=1)
    while day <= END.date():
        arxiv = datetime(day.year, day.month, day.day, 20, 0, tzinfo=NEW_YORK).astimezone(UTC)
        if day.weekday() in (6, 0, 1, 2, 3) and day != ARXIV_HOLIDAY:  # Sunday to Thursday
            events.append((arxiv, "arxiv"))
        for hour in range(0, 24, 4):
            events.append((datetime(day.year, day.month, day.day, hour, 30, tzinfo=UTC), "hf"))
        day += timedelta(days=1)
    return sorted(e for e in events if START <= e[0] < END)


def timeline(mode: str) -> list[tuple[datetime, str, str | None]]:
    """(when, what, profile) of every step, machine up or not.

    cron: `digest run` at :05 every hour (fetch, then a cycle for every profile).
    service: `digest schedule`'s jobs, from the service's own triggers: fetch jobs hourly, each
    profile's digest job at its deliver_at, and the catch-up cycle whenever the process starts.
    """
    steps: list[tuple[datetime, str, str | None]] = []
    moment = START + timedelta(minutes=5)
    while moment < END:
        steps.append((moment, "fetch", None))
        if mode == "cron":
            steps.append((moment, "cycle", None))
        moment += timedelta(hours=1)
    if mode == "service":
        steps += [(START, "cycle", None), (OUTAGE[1], "cycle", None)]  # the catch-up at each start
        for job in plan(make_config(Path("/nonexistent"), ARXIV, profiles=PROFILES)):
            if job.profile is None:
                continue
            fire = job.trigger.get_next_fire_time(None, START)
            while fire is not None and fire < END:
                steps.append((fire.astimezone(UTC), "cycle", job.profile))
                fire = job.trigger.get_next_fire_time(fire, fire + timedelta(seconds=1))
    order = {"fetch": 0, "cycle": 1}
    return sorted(steps, key=lambda step: (step[0], order[step[1]], step[2] or ""))


@pytest.fixture(scope="module", params=["cron", "service"])
def fortnight(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, object]:
    tmp_path = tmp_path_factory.mktemp(f"fortnight-{request.param}")
    config = make_config(tmp_path, ARXIV, profiles=PROFILES)
    events = announcements()
    seen: list[tuple[datetime, str]] = []  # (first seen, key) of every paper the store got
    store: Store | None = None
    number = 0
    last_fetch = START - timedelta(hours=1)
    for moment, step, profile in timeline(request.param):
        if down(moment):
            if store is not None:
                store.close()  # the process dies; a new one starts after the outage
                store = None
            continue
        if store is None:
            store = Store.open(config.store_path)
        if step == "fetch":
            # What the listings show since the last fetch (those published while the machine
            # was down are missed, as arXiv's feed shows only its newest announcement).
            for _, source in [e for e in events if max(last_fetch, moment - timedelta(hours=1)) < e[0] <= moment]:
                count = 10 if source == "arxiv" else 2  # a week stays under max_items
                records = []
                for _ in range(count):
                    number += 1
                    records.append(
                        record(f"Diffusion study {number}", source=source, arxiv_id=f"2610.{number:05d}")
                    )
                store.ingest(records, moment - timedelta(minutes=1))
                seen += [(moment - timedelta(minutes=1), f"2610.{n:05d}") for n in range(number - count + 1, number + 1)]
            last_fetch = moment
            continue
        chosen = [p for p in PROFILES if p.name == profile] if profile else None
        with Outbox(config.outbox_dir) as sender:
            clock = lambda at=moment: at  # noqa: E731 - the step's frozen "now"
            run_cycle(config, store, clock, sender, profiles=chosen, claimant=f"{moment:%m%d%H%M}")
    assert store is not None
    digests = {p.name: list(reversed(store.digests(p.name))) for p in PROFILES}
    store.close()
    return {"config": config, "digests": digests, "seen": seen, "mode": request.param}


def days(fortnight: dict[str, object], profile: str) -> list[date]:
    return [d.day for d in fortnight["digests"][profile]]  # type: ignore[index]


def test_a_daily_profile_gets_one_digest_a_day_and_one_catch_up_after_the_outage(
    fortnight: dict[str, object],
) -> None:
    expected = [date(2026, 10, d) for d in range(19, 29)] + [date(2026, 10, 31), date(2026, 11, 1)]
    assert days(fortnight, "berlin") == expected
    for digest in fortnight["digests"]["berlin"]:  # type: ignore[index]
        local = digest.until.astimezone(BERLIN)
        assert local.date() == digest.day  # on its own local day...
        if digest.day != date(2026, 10, 31):  # ...at its local time, DST or not
            expected_time = (7, 5) if fortnight["mode"] == "cron" else (7, 0)
            assert (local.hour, local.minute) == expected_time
    catch_up = fortnight["digests"]["berlin"][-2]  # type: ignore[index]
    assert catch_up.since < OUTAGE[0] and catch_up.until >= OUTAGE[1]  # one digest for the gap


def test_a_weekdays_profile_skips_weekends_and_catches_up_once(fortnight: dict[str, object]) -> None:
    expected = [date(2026, 10, d) for d in (19, 20, 21, 22, 23, 26, 27, 28, 30)]
    assert days(fortnight, "newyork") == expected
    for digest in fortnight["digests"]["newyork"]:  # type: ignore[index]
        assert digest.day.weekday() < 5


def test_a_weekly_profile_gets_mondays_only(fortnight: dict[str, object]) -> None:
    assert days(fortnight, "tokyo") == [date(2026, 10, 19), date(2026, 10, 26)]
    week = fortnight["digests"]["tokyo"][1]  # type: ignore[index]
    assert week.since == fortnight["digests"]["tokyo"][0].until  # type: ignore[index]


@pytest.mark.parametrize("profile", ["berlin", "newyork", "tokyo"])
def test_every_paper_is_offered_at_most_once_and_none_is_lost(
    fortnight: dict[str, object], profile: str
) -> None:
    digests = fortnight["digests"][profile]  # type: ignore[index]
    keys = [item.paper.key for digest in digests for item in digest.items]
    assert len(keys) == len(set(keys))
    first, last = digests[0], digests[-1]
    expected = {key for when, key in fortnight["seen"] if first.since <= when < last.until}  # type: ignore[attr-defined]
    assert set(keys) == expected  # every paper of the covered time, in exactly one digest


def test_the_holiday_and_weekends_bring_no_arxiv_papers_but_the_digest_still_comes(
    fortnight: dict[str, object],
) -> None:
    by_day = {d.day: d for d in fortnight["digests"]["berlin"]}  # type: ignore[index]
    after_holiday = by_day[date(2026, 10, 28)]  # covers Tuesday's (missing) announcement
    assert all(item.paper.sources == ("hf",) for item in after_holiday.items)
    saturday = by_day[date(2026, 10, 24)]  # Friday evening: no announcement
    assert all(item.paper.sources == ("hf",) for item in saturday.items)
    assert by_day[date(2026, 10, 27)].items  # Monday's announcement arrived overnight


def test_each_digest_was_mailed_exactly_once(fortnight: dict[str, object]) -> None:
    config = fortnight["config"]
    box = mailbox.Maildir(config.outbox_dir, create=False)  # type: ignore[attr-defined]
    recipients = Counter(str(message["To"]) for message in box)
    assert recipients == Counter(
        {"a@example.org": 12, "b@example.org": 9, "c@example.org": 2}
    )


def test_the_service_plans_its_jobs_with_ids_at_local_times_across_dst() -> None:
    config = make_config(Path("/nonexistent"), ARXIV, profiles=PROFILES)
    jobs = {job.job_id: job for job in plan(config)}
    assert set(jobs) == {
        "fetch:arxiv", "digest:berlin", "digest:newyork", "digest:tokyo", "subscribers"
    }
    # Web subscribers have no job each: one job every 15 minutes finds whose digest is due.
    assert jobs["subscribers"].subscribers
    quarter = jobs["subscribers"].trigger.get_next_fire_time(None, datetime(2026, 10, 23, 12, 7, tzinfo=UTC))
    assert quarter == datetime(2026, 10, 23, 12, 15, tzinfo=UTC)
    berlin = profile_trigger(PROFILES[0])
    before = berlin.get_next_fire_time(None, datetime(2026, 10, 23, 12, tzinfo=UTC))
    after = berlin.get_next_fire_time(None, datetime(2026, 10, 25, 12, tzinfo=UTC))
    assert before.astimezone(UTC).hour == 5 and after.astimezone(UTC).hour == 6
    assert before.astimezone(BERLIN).hour == after.astimezone(BERLIN).hour == 7
    weekdays = profile_trigger(PROFILES[1])
    saturday = datetime(2026, 10, 24, 0, tzinfo=UTC)
    assert weekdays.get_next_fire_time(None, saturday).astimezone(NEW_YORK).date() == date(2026, 10, 26)


@pytest.mark.parametrize(
    ("expression", "first_fire"),
    [
        ("30 1 * * 1-5", datetime(2026, 10, 26, 1, 30, tzinfo=UTC)),  # crontab's 1 is Monday
        ("0 2 * * 0", datetime(2026, 10, 25, 2, 0, tzinfo=UTC)),  # and 0 is Sunday
        ("0 2 * * 7", datetime(2026, 10, 25, 2, 0, tzinfo=UTC)),  # so is 7
        ("0 3 * * sat", datetime(2026, 10, 24, 3, 0, tzinfo=UTC)),
    ],
)
def test_crontab_weekdays_mean_what_they_mean_in_crontab(expression: str, first_fire: datetime) -> None:
    friday_evening = datetime(2026, 10, 23, 20, 0, tzinfo=UTC)
    assert crontab_trigger(expression).get_next_fire_time(None, friday_evening) == first_fire
