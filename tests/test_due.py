"""Which digests are due, read without reading digests (issue 16), and saving many at once."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from helpers import make_config, profile

from digest import compose
from digest.models import Digest, DigestHead
from digest.pipeline import compose_due
from digest.store import Store

NOW = datetime(2026, 11, 23, 7, 30, tzinfo=UTC)  # Monday 07:30 UTC, after a 07:00 UTC slot


def empty_digest(name: str, day: date, until: datetime) -> Digest:
    return Digest(name, day, "UTC", until - timedelta(days=1), until, 0, (), ())


def test_digest_heads_are_each_profiles_latest_day_and_end(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.sqlite3") as store:
        for day in (date(2026, 11, 20), date(2026, 11, 22), date(2026, 11, 21)):
            until = datetime.combine(day, datetime.min.time(), tzinfo=UTC) + timedelta(hours=7)
            store.save_digest(empty_digest("alice", day, until), ["feed"], NOW)
        store.save_digest(
            empty_digest("bob", date(2026, 11, 19), NOW - timedelta(days=4)), ["feed"], NOW
        )
        heads = store.digest_heads()
    assert heads == {
        "alice": DigestHead("alice", date(2026, 11, 22), datetime(2026, 11, 22, 7, tzinfo=UTC)),
        "bob": DigestHead("bob", date(2026, 11, 19), NOW - timedelta(days=4)),
    }


def test_a_head_decides_as_the_whole_digest_would() -> None:
    reader = profile("alice", deliver_at="07:00", timezone="UTC")
    for until in (NOW - timedelta(days=1), NOW - timedelta(minutes=10)):
        whole = empty_digest("alice", until.date(), until)
        head = DigestHead("alice", whole.day, whole.until)
        assert compose.due_window(reader, NOW, head) == compose.due_window(reader, NOW, whole)
    # Yesterday's digest: today's is due; today's: nothing is.
    assert compose.due_window(reader, NOW, DigestHead("alice", date(2026, 11, 22), NOW - timedelta(days=1)))
    assert compose.due_window(reader, NOW, DigestHead("alice", date(2026, 11, 23), NOW)) is None


def test_no_due_digest_is_missed_and_none_is_made_twice(tmp_path: Path) -> None:
    """Three profiles: one made today already, one made yesterday, one never: the due check
    from the heads composes exactly the two that are due, and nothing on a second pass."""
    readers = tuple(profile(name, deliver_at="07:00", timezone="UTC") for name in ("a", "b", "c"))
    config = make_config(tmp_path, profiles=readers)
    with Store.open(tmp_path / "s.sqlite3") as store:
        store.save_digest(empty_digest("a", date(2026, 11, 23), NOW - timedelta(minutes=20)), [], NOW)
        store.save_digest(empty_digest("b", date(2026, 11, 22), NOW - timedelta(days=1)), [], NOW)

        def made(now: datetime) -> list[str]:
            return sorted(
                d.profile
                for d in compose_due(config, store, readers, lambda: now, targets=lambda p: ["feed"])
            )

        assert made(NOW) == ["b", "c"]
        assert made(NOW + timedelta(minutes=5)) == []
        assert sorted(row.profile for row in store.deliveries()) == ["b", "c"]


def test_saving_many_digests_keeps_one_already_stored(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s.sqlite3") as store:
        first = empty_digest("a", date(2026, 11, 23), NOW)
        store.save_digest(first, ["feed"], NOW)
        again = empty_digest("a", date(2026, 11, 23), NOW + timedelta(hours=1))
        other = empty_digest("b", date(2026, 11, 23), NOW)
        saved = store.save_digests([(again, ["feed", "mail:x@example.org"]), (other, ["feed"])], NOW)
        rows = sorted((row.profile, row.channel) for row in store.deliveries())
    assert saved[0] == first and saved[1] is other
    assert rows == [("a", "feed"), ("b", "feed")]


def test_a_store_of_the_previous_schema_gets_its_heads_from_its_digests(tmp_path: Path) -> None:
    import sqlite3

    from digest.store import MIGRATIONS

    path = tmp_path / "s.sqlite3"
    db = sqlite3.connect(path)
    for script in MIGRATIONS[:10]:  # as a store made before migration 11 is
        db.executescript(script)
    for day in ("2026-11-21", "2026-11-22"):
        db.execute(
            "INSERT INTO digests VALUES ('alice', ?, 'UTC', ?, ?, 0, '[]')",
            (day, f"{day}T07:00:00+00:00", f"{day}T07:00:00+00:00"),
        )
    db.execute("PRAGMA user_version = 10")
    db.commit()
    db.close()
    with Store.open(path) as store:
        assert store.digest_heads() == {
            "alice": DigestHead("alice", date(2026, 11, 22), datetime(2026, 11, 22, 7, tzinfo=UTC))
        }
