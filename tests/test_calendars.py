"""The publishing calendars: arXiv's announcements (weekly schedule, holidays, US Eastern time with
its daylight saving), weekdays and every day. Pure: every moment is given, no clock is read."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from importlib import resources

import pytest

from digest import calendars
from digest.calendars import (
    ARXIV,
    CALENDARS,
    DAILY,
    EASTERN,
    WEEKDAYS,
    arxiv_announcements,
    arxiv_announces,
    arxiv_holidays,
    expects_content,
)
from digest.sources import SOURCE_KINDS, envelope


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_arxiv_announces_sunday_to_thursday_nights() -> None:
    week = [date(2026, 11, 15) + timedelta(days=i) for i in range(7)]  # Sunday .. Saturday
    assert [d.strftime("%a") for d in week if arxiv_announces(d)] == [
        "Sun", "Mon", "Tue", "Wed", "Thu"
    ]


@pytest.mark.parametrize(
    "day",
    [
        date(2025, 1, 1),  # New Year's Day, a Wednesday
        date(2025, 7, 6),  # a Sunday: no Monday mailing
        date(2025, 11, 27),  # Thanksgiving
        date(2026, 1, 19),  # Martin Luther King Jr. Day
        date(2026, 11, 26),  # Thanksgiving
        date(2026, 12, 29),
    ],
)
def test_no_announcement_on_arxiv_holidays(day: date) -> None:
    assert day.weekday() in calendars.ANNOUNCE_WEEKDAYS, "a day arXiv would otherwise announce"
    assert not arxiv_announces(day)


def test_the_holiday_file_is_arxivs_published_schedule_and_says_where_it_comes_from() -> None:
    text = (resources.files("digest") / "data" / "arxiv-holidays.txt").read_text("utf-8")
    assert "https://info.arxiv.org/help/availability.html#holiday" in text
    rows = [line.split(maxsplit=2) for line in text.splitlines() if line and line[0] != "#"]
    for day, weekday, _what in rows:
        assert date.fromisoformat(day).strftime("%A") == weekday, day
    assert {d.year for d in arxiv_holidays()} == {2025, 2026}
    assert len(arxiv_holidays()) == len(rows) == 17
    assert date(2025, 5, 26) not in arxiv_holidays(), "listed briefly, then withdrawn by arXiv"


def test_announcements_are_at_20_00_eastern_across_daylight_saving() -> None:
    # US daylight saving ends on Sunday 1 November 2026: 20:00 is 00:00 UTC before, 01:00 after.
    found = arxiv_announcements(utc(2026, 10, 29, 12), utc(2026, 11, 3, 12))
    assert [m.astimezone(UTC) for m in found] == [
        utc(2026, 10, 30, 0),  # Thursday 29 October, EDT
        utc(2026, 11, 2, 1),  # Sunday 1 November, EST
        utc(2026, 11, 3, 1),  # Monday 2 November
    ]
    assert all(m.tzinfo == EASTERN for m in found)


def test_an_announcement_counts_from_its_minute_on() -> None:
    monday_8pm = datetime(2026, 11, 23, 20, 0, tzinfo=EASTERN)
    assert arxiv_announcements(monday_8pm - timedelta(minutes=1), monday_8pm) == [monday_8pm]
    assert arxiv_announcements(monday_8pm, monday_8pm + timedelta(hours=1)) == []


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (utc(2026, 11, 23, 12), True),  # Monday morning: Sunday night's mailing
        (utc(2026, 11, 20, 12), True),  # Friday morning: Thursday night's
        (utc(2026, 11, 21, 12), False),  # Saturday: no mailing on Friday night
        (utc(2026, 11, 22, 12), False),  # Sunday morning: none on Saturday night
        (utc(2026, 11, 23, 1, 30), True),  # Sunday 20:30 in New York: just announced
        (utc(2026, 11, 27, 12), False),  # the Friday after Thanksgiving (a holiday Thursday)
        (utc(2026, 11, 26, 12), True),  # Thanksgiving morning: Wednesday night's mailing
        (utc(2027, 11, 26, 12), True),  # 2027's holidays are not published: the weekly schedule
    ],
)
def test_arxiv_expects_content_after_an_announcement(now: datetime, expected: bool) -> None:
    assert expects_content(ARXIV, now, now - timedelta(hours=1)) is expected
    assert expects_content(ARXIV, now) is expected


def test_arxiv_looks_back_to_the_previous_read_when_it_is_older_than_a_day() -> None:
    saturday = utc(2026, 11, 21, 12)
    assert expects_content(ARXIV, saturday, previous=utc(2026, 11, 19, 12)), "Thursday's mailing"
    assert not expects_content(ARXIV, saturday, previous=utc(2026, 11, 21, 11))


def test_weekdays_and_daily() -> None:
    saturday, monday = utc(2026, 11, 21, 12), utc(2026, 11, 23, 12)
    assert (expects_content(WEEKDAYS, saturday), expects_content(WEEKDAYS, monday)) == (False, True)
    assert expects_content(DAILY, saturday) and expects_content(DAILY, monday)
    with pytest.raises(ValueError, match="unknown calendar 'lunar'"):
        expects_content("lunar", monday)


def test_every_kind_names_a_calendar_and_an_envelope_rule_that_exist() -> None:
    for kind in SOURCE_KINDS.values():
        assert kind.calendar in CALENDARS, kind.name
        assert kind.entries is None or callable(getattr(envelope, kind.entries)), kind.name
    arxiv_kinds = {k.name for k in SOURCE_KINDS.values() if k.calendar == ARXIV}
    assert arxiv_kinds == {"arxiv-listing", "arxiv-rss", "arxiv-api"}
    assert SOURCE_KINDS["hf-daily"].calendar == WEEKDAYS
    assert SOURCE_KINDS["biorxiv"].calendar == DAILY
