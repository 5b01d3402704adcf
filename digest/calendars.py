"""When should a source have something new? The publishing calendars sources follow (pure).

A source that gives far fewer records than usual has probably changed its layout, unless its
calendar says the day is a quiet one. Each kind of source names its calendar
(`digest.sources.SourceKind.calendar`):

- `arxiv`: arXiv announces new submissions Sunday to Thursday at 20:00 US Eastern, never on Friday
  or Saturday night, and not on its holidays (`digest/data/arxiv-holidays.txt`, from arXiv's
  published schedule). Its listings and feeds show a mailing for about a day, so they are empty on
  Saturday and Sunday (and the day after a holiday).
- `weekdays`: Monday to Friday (UTC), e.g. Hugging Face Daily Papers, which has few or no papers
  at weekends.
- `daily`: every day (bioRxiv posts at weekends too, any feed may change at any time).

Every moment is timezone-aware; arXiv's calendar is read in US Eastern, daylight saving included.
"""

from __future__ import annotations

import functools
from datetime import UTC, date, datetime, time, timedelta
from importlib import resources
from zoneinfo import ZoneInfo

ARXIV = "arxiv"
WEEKDAYS = "weekdays"
DAILY = "daily"
CALENDARS = (ARXIV, WEEKDAYS, DAILY)

EASTERN = ZoneInfo("America/New_York")
ANNOUNCE_AT = time(20, 0)  # US Eastern
ANNOUNCE_WEEKDAYS = frozenset({6, 0, 1, 2, 3})  # Sunday to Thursday (Monday is 0)
# A listing shows its mailing for about a day: a run looks back at least this far for one.
LISTING_DAY = timedelta(hours=24)


@functools.cache
def arxiv_holidays() -> frozenset[date]:
    """The days arXiv published as holidays: no announcement at 20:00 US Eastern on them."""
    text = (resources.files("digest") / "data" / "arxiv-holidays.txt").read_text("utf-8")
    return frozenset(
        date.fromisoformat(line.split()[0])
        for line in text.splitlines()
        if line.strip() and not line.startswith("#")
    )


def arxiv_announces(day: date) -> bool:
    """Does arXiv announce at 20:00 US Eastern on this (US Eastern) day?"""
    return day.weekday() in ANNOUNCE_WEEKDAYS and day not in arxiv_holidays()


def arxiv_announcements(since: datetime, until: datetime) -> list[datetime]:
    """arXiv's announcements after `since`, up to and including `until` (in US Eastern time)."""
    day = since.astimezone(EASTERN).date()
    last = until.astimezone(EASTERN).date()
    moments = []
    while day <= last:
        moment = datetime.combine(day, ANNOUNCE_AT, tzinfo=EASTERN)
        if since < moment <= until and arxiv_announces(day):
            moments.append(moment)
        day += timedelta(days=1)
    return moments


def expects_content(calendar: str, now: datetime, previous: datetime | None = None) -> bool:
    """Should a source that follows `calendar` have content at `now`? `previous` is when the
    source was last read: for arXiv, an announcement since then (looking back at least a day,
    as a listing keeps its mailing that long) means there should be."""
    if calendar == ARXIV:
        since = now - LISTING_DAY
        if previous is not None and previous < since:
            since = max(previous, now - timedelta(days=14))  # a gap this long holds one anyway
        return bool(arxiv_announcements(since, now))
    if calendar == WEEKDAYS:
        return now.astimezone(UTC).weekday() < 5
    if calendar == DAILY:
        return True
    raise ValueError(f"unknown calendar {calendar!r} (known: {', '.join(CALENDARS)})")
