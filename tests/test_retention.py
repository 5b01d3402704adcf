"""Retention (issue 16, item 5): [store] keep_days prunes old digests, their items and ledger rows,
runs, HTTP validators and short links, once a day at the end of a run; `digest store vacuum`;
the store's line in `digest status`.

Real SQLite files in tmp_path, freezegun for the clock, no network. The rule that matters most:
a digest a delivery still owes (pending, sending, deferred, uncertain) is never pruned.
"""

from __future__ import annotations

import logging
import random
import sqlite3
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from string import ascii_letters

import pytest
from freezegun import freeze_time
from helpers import digest, record, write_config

from digest import retention
from digest.config import load_config
from digest.errors import ConfigError
from digest.models import Digest, FetchResult, Reasons, ScoredPaper, SourceRun
from digest.status import gather, render
from digest.store import KEEP_SOURCE_RUNS, UNFINISHED_DELIVERIES, Store

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
TODAY = NOW.date()
CUTOFF = NOW - timedelta(days=90)  # keep_days' default
OLD = TODAY - timedelta(days=120)
RECENT = TODAY - timedelta(days=3)


def papers(store: Store, count: int = 3) -> list[str]:
    """`count` papers in the store (items refer to them); their keys."""
    records = [record(title=f"Paper number {i}", arxiv_id=f"2611.{i:05d}") for i in range(count)]
    store.ingest(records, NOW - timedelta(days=200))
    return [f"2611.{i:05d}" for i in range(count)]


def save(
    store: Store,
    profile: str,
    day: date,
    keys: list[str],
    statuses: tuple[str, ...] = ("sent", "sent"),
    padding: int = 0,
) -> None:
    """A stored digest of `day` with an item per key and a ledger row per status."""
    until = datetime.combine(day, time(7), tzinfo=UTC)
    items = []
    for position, key in enumerate(keys):
        paper = store.paper(key)
        assert paper is not None
        # Padding as random letters: packed items are compressed, and it must take room.
        filler = "".join(random.Random(f"{profile}{day}{position}").choices(ascii_letters, k=padding))
        reasons = Reasons(keywords=(f"{day}-{position}-" + filler,))
        items.append(ScoredPaper(paper=paper, score=1.0 - position / 10, reasons=reasons))
    composed = Digest(
        profile=profile,
        day=day,
        timezone="UTC",
        since=until - timedelta(days=1),
        until=until,
        scanned=len(keys),
        sources=(),
        items=tuple(items),
    )
    channels = [f"mail:{profile}{i}@example.org" for i in range(len(statuses))]
    store.save_digest(composed, channels, until)
    store._db.executemany(  # the store's own connection: either backend, autocommit
        "UPDATE deliveries SET status = ? WHERE profile = ? AND day = ? AND channel = ?",
        [(status, profile, day.isoformat(), channel) for status, channel in zip(statuses, channels, strict=True)],
    )


def table_rows(store: Store, table: str) -> int:
    return int(store._db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def run(store: Store, source: str, started: datetime) -> None:
    run_id = store.begin_run("ingest", started)
    store.record_source_run(run_id, SourceRun(source, started, 1.0, 1, 5, 0, "ok"))
    store.finish_run(run_id, started + timedelta(seconds=1))


# -- Store.prune ------------------------------------------------------------------------------------


def test_prune_removes_what_is_older_than_the_cutoff_and_keeps_the_rest(store: Store) -> None:
    keys = papers(store)
    save(store, "ann", OLD, keys)
    save(store, "bob", OLD - timedelta(days=1), keys[:1], statuses=("failed", "skipped", "sent"))
    save(store, "ann", RECENT, keys)
    save(store, "ann", CUTOFF.date(), keys)  # on the cutoff day itself: kept
    # Runs: 55 old and 5 recent of one source (its newest 50 stay, however old), an old run
    # that fetched nothing (`run --no-fetch` has none; an ingest that crashed), a recent one.
    for i in range(55):
        run(store, "arxiv", NOW - timedelta(days=200 - i))
    for i in range(5):
        run(store, "arxiv", NOW - timedelta(days=5 - i))
    store.begin_run("ingest", NOW - timedelta(days=150))
    store.begin_run("ingest", NOW - timedelta(days=1))
    # HTTP validators saved long ago and lately; short links of old and recent mails.
    store.ingest([], NOW - timedelta(days=100), [FetchResult("https://old.example.org/", 200, b"", etag='"1"')])
    store.ingest([], NOW - timedelta(days=2), [FetchResult("https://new.example.org/", 200, b"", etag='"2"')])
    store.save_short_links(
        {"feedbackOld1": "/feedback/old", "unsubscribe1": "/unsubscribe/tok", "manageLink01": "/manage/tok",
         "digestOld001": "/digest-links/2026-08-01/ann"},
        NOW - timedelta(days=100),
    )
    store.save_short_links(
        {"feedbackNew1": "/feedback/new", "digestNew001": "/digest-links/2026-11-20/ann"},
        NOW - timedelta(days=2),
    )

    report = store.prune(CUTOFF, NOW)

    assert (report.digests, report.deliveries) == (2, 5)
    assert (report.source_runs, report.runs) == (10, 11)
    assert (report.http_validators, report.short_links, report.kept_unfinished) == (1, 2, 0)
    assert report.before == CUTOFF.date()
    assert [d.day for d in store.digests("ann")] == [RECENT, CUTOFF.date()]
    assert store.digests("bob") == []
    assert {row.day for row in store.deliveries()} == {RECENT, CUTOFF.date()}
    # The kept digests' items, packed in their rows: 3 papers each.
    assert [len(d.items) for d in store.digests("ann")] == [3, 3]
    history = store.source_runs("arxiv", limit=100)
    assert len(history) == KEEP_SOURCE_RUNS
    assert history[-1].started == NOW - timedelta(days=200 - 10)
    assert table_rows(store, "runs") == KEEP_SOURCE_RUNS + 1  # and the recent run without any
    assert store.validators("https://old.example.org/") == (None, None)
    assert store.validators("https://new.example.org/") == ('"2"', None)
    assert store.short_link("feedbackOld1") is None
    assert store.short_link("feedbackNew1") == "/feedback/new"
    # A digest's feedback code goes as its digest's feedback links did.
    assert store.short_link("digestOld001") is None
    assert store.short_link("digestNew001") == "/digest-links/2026-11-20/ann"
    # An old mail's unsubscribe and manage links are the same in every later mail: kept.
    assert store.short_link("unsubscribe1") == "/unsubscribe/tok"
    assert store.short_link("manageLink01") == "/manage/tok"
    # Papers are never pruned: identifying a new sighting needs every paper ever seen.
    assert store.count_papers() == 3
    assert store.meta(retention.PRUNED_AT) == NOW.isoformat()
    assert "2 digests (5 ledger rows)" in report.line()


@pytest.mark.parametrize("status", UNFINISHED_DELIVERIES)
def test_prune_keeps_an_old_digest_a_delivery_still_owes(store: Store, status: str) -> None:
    keys = papers(store)
    # One channel sent it, another still owes it: the digest stays, every row and item with it.
    save(store, "ann", OLD, keys, statuses=("sent", status))
    save(store, "bob", OLD, keys, statuses=("sent", "failed"))

    report = store.prune(CUTOFF, NOW)

    assert (report.digests, report.kept_unfinished) == (1, 1)
    kept = store.digest("ann", OLD)
    assert kept is not None and [item.paper.key for item in kept.items] == keys
    assert sorted(row.status for row in store.deliveries(profile="ann")) == sorted(("sent", status))
    assert store.digest("bob", OLD) is None
    assert "kept 1 older digest an unfinished delivery needs" in report.line()


def test_prune_goes_in_batches_and_misses_nothing(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("digest.store.maintenance.PRUNE_BATCH", 2)
    keys = papers(store, 1)
    for age in range(100, 110):
        for profile in ("ann", "bob", "cy"):
            owed = profile == "bob" and age % 3 == 0
            save(store, profile, TODAY - timedelta(days=age), keys, ("sent", "pending" if owed else "sent"))
    save(store, "ann", RECENT, keys)
    store.save_short_links({f"feedback{i:04d}": f"/feedback/{i}" for i in range(85)}, NOW - timedelta(days=100))
    report = store.prune(CUTOFF, NOW)
    assert (report.digests, report.kept_unfinished, report.deliveries) == (27, 3, 54)
    assert report.short_links == 85 and table_rows(store, "short_links") == 0
    assert [d.day for d in store.digests("ann")] == [RECENT]
    assert [d.day for d in store.digests("bob")] == [TODAY - timedelta(days=age) for age in (102, 105, 108)]


def test_prune_is_idempotent(store: Store) -> None:
    keys = papers(store)
    save(store, "ann", OLD, keys)
    save(store, "ann", RECENT, keys)
    assert store.prune(CUTOFF, NOW).removed > 0
    again = store.prune(CUTOFF, NOW)
    assert again.removed == 0 and again.kept_unfinished == 0
    assert [d.day for d in store.digests("ann")] == [RECENT]


def test_prune_takes_a_date_as_midnight_utc(store: Store) -> None:
    keys = papers(store)
    save(store, "ann", RECENT - timedelta(days=1), keys)
    save(store, "ann", RECENT, keys)
    assert store.prune(RECENT, NOW).digests == 1
    assert [d.day for d in store.digests("ann")] == [RECENT]


# -- once a day, at the end of a run ---------------------------------------------------------------


def test_a_run_prunes_once_a_day(tmp_path: Path) -> None:
    config = write_config(tmp_path, profiles="")
    path = tmp_path / "data" / "paperdigest.sqlite3"
    with Store.open(path) as store:
        keys = papers(store)
        save(store, "ann", OLD, keys)
    with freeze_time(NOW) as clock:
        assert digest(config, "run", "--no-fetch").exit_code == 0
        with Store.open(path) as store:
            assert store.digests("ann") == []
            save(store, "ann", OLD, keys)  # as if it came back: the same day prunes no more
        clock.tick(timedelta(hours=3))
        assert digest(config, "run", "--no-fetch").exit_code == 0
        with Store.open(path) as store:
            assert [d.day for d in store.digests("ann")] == [OLD]
            assert store.meta(retention.PRUNED_AT) == NOW.isoformat()
        clock.tick(timedelta(days=1))  # the next day's first run prunes again
        assert digest(config, "run", "--no-fetch").exit_code == 0
        with Store.open(path) as store:
            assert store.digests("ann") == []
            assert [s.day for s in store.size_samples(TODAY)] == [TODAY, TODAY + timedelta(days=1)]


def test_after_run_logs_one_line_when_something_went(
    tmp_path: Path, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    config = load_config(write_config(tmp_path, profiles="", extra="[store]\nkeep_days = 30"))
    keys = papers(store)
    save(store, "ann", TODAY - timedelta(days=40), keys)
    with caplog.at_level(logging.INFO, logger="digest.retention"):
        report = retention.after_run(config, store, NOW)
        assert retention.after_run(config, store, NOW + timedelta(hours=1)) is None
    assert report is not None and report.digests == 1
    lines = [r.getMessage() for r in caplog.records if r.name == "digest.retention"]
    assert lines == [report.line()]
    assert lines[0].startswith(f"pruned what is older than {(TODAY - timedelta(days=30)).isoformat()}: 1 digest (")


# -- digest store vacuum ---------------------------------------------------------------------------


def test_store_vacuum_prunes_and_shrinks_the_file(tmp_path: Path) -> None:
    config = write_config(tmp_path, profiles="")
    path = tmp_path / "data" / "paperdigest.sqlite3"
    with Store.open(path) as store:
        keys = papers(store, 20)
        for age in range(120, 100, -1):
            for profile in ("ann", "bob", "cy"):
                save(store, profile, TODAY - timedelta(days=age), keys, padding=2000)
        save(store, "ann", RECENT, keys)
        store.prune(CUTOFF, NOW - timedelta(days=1))  # pruned before, but the file kept its pages
        save(store, "bob", OLD, keys, padding=2000)  # and one more is due
    wal = Path(f"{path}-wal")
    before = path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
    with freeze_time(NOW):
        result = digest(config, "store", "vacuum")
    assert result.exit_code == 0, result.output
    after = path.stat().st_size + (Path(f"{path}-wal").stat().st_size if Path(f"{path}-wal").exists() else 0)
    # (The -wal is folded into the file when the store closes: `before` is the file's pages
    # once, 61 digests' worth of which one is kept.)
    assert after < before / 3
    lines = result.output.splitlines()
    assert lines[0].startswith("pruned what is older than 2026-08-28: 1 digest (2 ledger rows)")
    assert lines[1].startswith("store: ") and " before, " in lines[1] and lines[1].endswith(f"after ({path})")
    with Store.open(path) as store:
        assert [d.day for d in store.digests("ann")] == [RECENT]
        assert store.digests("bob") == []


def test_store_vacuum_refuses_while_a_run_is_going(tmp_path: Path) -> None:
    config = write_config(tmp_path, profiles="")
    with Store.open(tmp_path / "data" / "paperdigest.sqlite3") as store:
        store.begin_run("ingest", NOW - timedelta(minutes=5))
    with freeze_time(NOW):
        result = digest(config, "store", "vacuum")
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"error: {tmp_path / 'data' / 'paperdigest.sqlite3'}: a run that started 2026-11-26 08:55 UTC "
        "has not finished; try again when it is done"
    ]


def test_store_vacuum_says_so_in_one_line_when_the_store_is_locked(tmp_path: Path) -> None:
    config = write_config(tmp_path, profiles="")
    path = tmp_path / "data" / "paperdigest.sqlite3"
    Store.open(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process writing, for longer than vacuum waits
    try:
        with freeze_time(NOW):
            result = digest(config, "store", "vacuum")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()
    assert line.startswith(f"error: {path}: could not prune the store: database is locked")
    assert "try again when it is done" in line


# -- config ----------------------------------------------------------------------------------------


def test_keep_days_defaults_to_90(tmp_path: Path) -> None:
    assert load_config(write_config(tmp_path)).store.keep_days == 90
    assert load_config(write_config(tmp_path, extra="[store]\nkeep_days = 30")).store.keep_days == 30


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("keep_days = 6", "store.keep_days: expected a number from 7 to 3650, got 6"),
        ("keep_days = 3651", "store.keep_days: expected a number from 7 to 3650, got 3651"),
        ("keep_days = 30.5", "store.keep_days: expected a whole number of days, got float 30.5"),
        ('keep_days = "90"', "store.keep_days: expected a whole number of days, got the string '90'"),
        ("keep_days = true", "store.keep_days: expected a whole number of days, got the boolean true"),
        (
            "keep = 90",
            "store.keep: unknown key (expected one of: keep_days, password_env, password_file, "
            "url, url_env)",
        ),
    ],
)
def test_a_bad_store_table_is_one_line(tmp_path: Path, toml: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(write_config(tmp_path, extra=f"[store]\n{toml}"))
    assert str(raised.value).endswith(message)
    assert "\n" not in str(raised.value)


def test_keep_days_may_not_be_shorter_than_the_feeds_window(tmp_path: Path) -> None:
    path = write_config(tmp_path, extra="[store]\nkeep_days = 10")
    path.write_text(path.read_text().replace('[output]\n', '[output]\nfeed_days = 14\n'))
    with pytest.raises(ConfigError, match=r"store\.keep_days: expected at least output\.feed_days \(14\)"):
        load_config(path)


# -- digest status ---------------------------------------------------------------------------------


def test_status_shows_the_stores_size_what_it_keeps_and_its_growth(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, profiles=""))
    with Store.open(config.store_path) as store:
        keys = papers(store, 10)
        line = render(gather(config, store, NOW)).splitlines()
        (found,) = [text for text in line if text.startswith("store: ")]
        assert ", 0 digests and 0 ledger rows kept (90 days; not pruned yet)" in found
        assert "a day over the last week" not in found
        for day in range(7, 0, -1):  # a week of runs, each adding a digest and pruning
            save(store, "ann", TODAY - timedelta(days=day), keys, padding=4000)
            retention.after_run(config, store, NOW - timedelta(days=day))
        retention.after_run(config, store, NOW)
        status = gather(config, store, NOW).store
        assert status is not None
        assert (status.digests, status.deliveries) == (7, 14)
        assert status.growth_per_day is not None and status.growth_per_day > 10_000
        found = status.line()
    assert found.startswith("store: ")
    assert "7 digests and 14 ledger rows kept (90 days; pruned 2026-11-26 09:00 UTC)" in found
    assert found.endswith(" a day over the last week")
    assert "; +" in found
