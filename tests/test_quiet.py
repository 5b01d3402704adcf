"""An idle run reads no profile (digest.quiet, issue 16), and never misses what is due.

The last run over every profile keeps when the next digest falls due and what it saw; a run
before then that sees the same returns at once. Each test counts the runs that looked at every
profile (subscriptions.with_subscribers is where a run starts reading them). The clock is frozen.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from freezegun import freeze_time
from helpers import MONDAY, digest, outbox, write_config

from digest import configcache, subscriptions
from digest.config import Config
from digest.models import Interests, Subscriber
from digest.store import Store


@pytest.fixture
def looked(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """One entry per run that read every profile."""
    calls: list[int] = []
    real = subscriptions.with_subscribers

    def counted(config: object, store: Store) -> object:
        calls.append(1)
        return real(config, store)  # type: ignore[arg-type]

    monkeypatch.setattr(subscriptions, "with_subscribers", counted)
    yield calls


def run_at(config: Path, hours: float) -> str:
    """`digest run --no-fetch` at MONDAY + hours; its output (exit code 0 required)."""
    with freeze_time(MONDAY + timedelta(hours=hours)):
        result = digest(config, "run", "--no-fetch")
    assert result.exit_code == 0, result.output
    return result.output


def first_day(tmp_path: Path) -> Path:
    """The captured papers stored, and Monday's digests composed and mailed (3 mails)."""
    config = write_config(tmp_path)
    with freeze_time(MONDAY - timedelta(hours=2)):
        assert digest(config, "ingest").exit_code == 0
    assert "ml: digest of 2026-11-23" in run_at(config, 0)
    assert len(outbox(tmp_path)) == 3
    return config


def test_idle_runs_read_no_profile_and_the_next_days_digests_come_on_time(
    tmp_path: Path, looked: list[int]
) -> None:
    """Hourly runs through a day: those before the next slot read no profile; the first one at
    Tuesday's slot (07:00 in Berlin, hour 23) composes both digests. One more looks: the first
    after midnight UTC (the store is pruned once a day)."""
    config = first_day(tmp_path)
    looked.clear()
    outputs = {hour: run_at(config, hour) for hour in range(1, 26)}
    for hour in (*range(1, 23), 24, 25):
        assert "no digest was due" in outputs[hour], (hour, outputs[hour])
        assert "mail: 0 sent" in outputs[hour]
    assert "ml: digest of 2026-11-24" in outputs[23]
    assert "quiet: digest of 2026-11-24" in outputs[23]
    assert len(outbox(tmp_path)) == 6  # Monday's three, Tuesday's three, none twice
    # Midnight UTC (hour 17: 00:00 on Tuesday), Tuesday's slot (23), and nothing else.
    assert len(looked) == 2, looked


def test_a_change_makes_the_next_run_look(tmp_path: Path, looked: list[int]) -> None:
    config = first_day(tmp_path)
    store_path = tmp_path / "data" / "paperdigest.sqlite3"
    looked.clear()
    run_at(config, 1)
    assert looked == []

    # config.toml edited: a new profile, due now, gets its digest at once.
    config.write_text(
        config.read_text() + '\n[profiles.late]\nemail = ["d@example.org"]\nkeywords = ["agent"]\n'
        'timezone = "Europe/Berlin"\n'
    )
    assert "late: digest of 2026-11-23" in run_at(config, 2)
    assert len(looked) == 1
    run_at(config, 3)
    assert len(looked) == 1

    # A web subscriber confirmed (any write to the subscribers counts, whoever makes it).
    with Store.open(store_path) as store:
        store.save_subscriber(Subscriber(
            profile="web-00000000000000aa", address="e@example.org",
            interests=Interests(keywords=("agent",), timezone="Europe/Berlin", deliver_at="08:00"),
            status="active", created=MONDAY, updated=MONDAY, confirmed=MONDAY,
        ))
    assert "web-00000000000000aa: digest of 2026-11-23" in run_at(config, 4)
    assert len(looked) == 2

    # A delivery left open (a crash, a deferral): the next run looks, and sends it.
    with sqlite3.connect(store_path) as db:
        db.execute("UPDATE deliveries SET status = 'pending' WHERE channel = 'mail:c@example.org'")
    db.close()
    sent = run_at(config, 5)
    assert "mail: 1 sent" in sent
    assert len(looked) == 3

    # A feed file deleted by hand: written again by the next run.
    feed = tmp_path / "data" / "feeds" / "profiles" / "quiet.atom"
    feed.unlink()
    assert "feeds: 1 files changed" in run_at(config, 6)
    assert feed.is_file() and len(looked) == 4
    run_at(config, 7)
    assert len(looked) == 4


def test_asked_for_runs_always_look(tmp_path: Path, looked: list[int]) -> None:
    config = first_day(tmp_path)
    looked.clear()
    with freeze_time(MONDAY + timedelta(hours=1)):
        assert digest(config, "run", "--no-fetch", "--now").exit_code == 0
        assert len(looked) == 1
        assert digest(config, "run", "--no-fetch", "-p", "ml").exit_code == 0
        assert len(looked) > 1
        asked = len(looked)
        assert digest(config, "run", "--no-fetch").exit_code == 0
        assert len(looked) == asked  # the runs asked for left the kept moment as it was


def test_an_idle_run_of_a_big_config_reads_its_head_not_its_profiles(
    tmp_path: Path, looked: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A config big enough to be kept (digest.configcache) is read in two steps: an idle run
    stops at its head, without the profiles (100,000 of them are half a second); the run at the
    next slot reads them, once, and composes."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(configcache, "CACHE_FROM_BYTES", 64)  # this small config counts as big
    read: list[int] = []
    whole = configcache.Kept.whole

    def counted(kept: configcache.Kept) -> Config:
        read.append(1)
        return whole(kept)

    monkeypatch.setattr(configcache.Kept, "whole", counted)
    config = first_day(tmp_path)  # read and checked: kept from now on
    read.clear()
    idle = run_at(config, 1)
    assert "no digest was due" in idle and "mail: 0 sent" in idle
    assert "  nothing is due before 2026-11-24 00:00 UTC\n" in idle  # the next UTC day (pruning)
    assert read == []
    due = run_at(config, 23)
    assert "ml: digest of 2026-11-24" in due and "quiet: digest of 2026-11-24" in due
    assert read == [1]
    assert len(outbox(tmp_path)) == 6
