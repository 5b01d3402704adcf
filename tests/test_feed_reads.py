"""Feeds only where they are read: a run builds a web subscriber's feed only when `digest serve`
saw it read within [output] personal_feed_window days (or it is their only channel), and
`digest serve` builds a missing or stale personal feed when a reader asks for it."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import feedparser
import pytest
from helpers import record, write_config
from starlette.testclient import TestClient

from digest import feeds, status, subscriptions
from digest.channels.feed import build_profile_feed, feed_digests, publish_feeds, publish_first_feed
from digest.config import Config, load_config
from digest.errors import ConfigError, StoreError
from digest.models import Digest, Interests, ScoredPaper, Subscriber
from digest.models import Reasons as Why
from digest.render import Renderer
from digest.store import Store
from digest.web import create_app

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
DAY = date(2026, 11, 23)
SIGNED_UP = NOW - timedelta(days=20)  # when the subscribers' first (empty) feeds were written
CONFIGURED = ("ml", "quiet")  # tests/helpers.py's TWO_PROFILES
READ, UNREAD, FEED_ONLY = "web-00000000000000aa", "web-00000000000000bb", "web-00000000000000cc"
NOBODY = "web-0123456789abcdef"  # no such subscriber
SKIPPED = "not read in 30 days: built when asked"


@dataclass
class Setup:
    config: Config  # as config.toml says (no subscribers): what `digest serve` runs on
    store: Store

    @property
    def feeds_dir(self) -> Path:
        return self.config.feeds_dir

    def path(self, profile: str, kind: str = "atom") -> Path:
        rss, atom = feeds.profile_feed_paths(profile)
        return self.feeds_dir / (atom if kind == "atom" else rss)

    def run(self, now: datetime = NOW) -> list[str]:
        """A run's feed pass, on the config with the subscribers (as digest.pipeline has it)."""
        full = subscriptions.with_subscribers(self.config, self.store)
        return publish_feeds(
            full, self.store, Renderer(), lambda: now, claimant="test", lease=timedelta(minutes=5)
        )

    def feed_rows(self, day: date = DAY) -> dict[str, tuple[str, str | None]]:
        return {
            row.profile: (row.status, row.error)
            for row in self.store.deliveries(day=day)
            if row.channel == "feed"
        }

    def save_digests(self, day: date, profiles: tuple[str, ...], keys: list[str]) -> dict[str, Digest]:
        """A digest of `keys` for each profile on `day`, with its "feed" row (as a run stores it)."""
        until = NOW + (day - DAY)
        papers = [self.store.paper(key) for key in keys]
        made = {
            profile: Digest(
                profile, day, "UTC", until - timedelta(days=1), until, len(keys), (),
                tuple(ScoredPaper(paper, 1.0, Why(keywords=("x",))) for paper in papers if paper),
            )
            for profile in profiles
        }
        self.store.save_digests([(digest, ["feed"]) for digest in made.values()], until)
        return made


def subscriber(profile: str, *, email: bool = True, status: str = "active") -> Subscriber:
    return Subscriber(
        profile, f"{profile}@example.org", Interests(keywords=("x",), email=email), status,
        SIGNED_UP, SIGNED_UP, confirmed=SIGNED_UP,
    )


def backdate(path: Path, to: datetime = SIGNED_UP) -> None:
    """The file as if written at `to` (the tests' clock is not the file system's)."""
    stamp = to.timestamp()
    os.utime(path, (stamp, stamp))


def identity(path: Path) -> tuple[int, int, bytes]:
    found = path.stat()
    return found.st_ino, found.st_mtime_ns, path.read_bytes()


def entry_ids(path: Path) -> list[str]:
    parsed = feedparser.parse(path.read_bytes())
    assert not parsed.bozo, parsed.get("bozo_exception")
    return [entry.id for entry in parsed.entries]


def every_file(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


def ids_of(keys: list[str]) -> list[str]:
    return [feeds.item_id(key) for key in keys]


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    """Two config.toml profiles and three web subscribers (one read yesterday, one never read,
    one feed only), each with its first (empty) feed from sign-up and a digest of DAY."""
    config = load_config(write_config(tmp_path))
    with Store.open(config.store_path) as store:
        for profile in (READ, UNREAD):
            store.save_subscriber(subscriber(profile))
        store.save_subscriber(subscriber(FEED_ONLY, email=False))
        store.ingest([record(f"Paper {n}", arxiv_id=f"2611.0000{n}") for n in range(4)], SIGNED_UP)
        for profile in (READ, UNREAD, FEED_ONLY):
            publish_first_feed(
                config, profile, store.signing_keys(config.data_dir),
                feeds.target(config.feeds_dir, store, lambda: SIGNED_UP),
            )
            for kind in ("rss", "atom"):
                backdate(Setup(config, store).path(profile, kind))
        store.record_feed_reads([READ], NOW - timedelta(days=1))
        made = Setup(config, store)
        made.save_digests(DAY, (*CONFIGURED, READ, UNREAD, FEED_ONLY), ["2611.00000", "2611.00001"])
        yield made


def test_a_run_builds_only_the_feeds_someone_reads(setup: Setup) -> None:
    unread_before = {kind: identity(setup.path(UNREAD, kind)) for kind in ("rss", "atom")}
    written = setup.run()
    for profile in (*CONFIGURED, READ, FEED_ONLY):
        assert entry_ids(setup.path(profile)) == ids_of(["2611.00000", "2611.00001"]), profile
        assert entry_ids(setup.path(profile, "rss")) == ids_of(["2611.00000", "2611.00001"])
    # The unread subscriber's files are left exactly as they were: not even rewritten.
    assert {kind: identity(setup.path(UNREAD, kind)) for kind in ("rss", "atom")} == unread_before
    assert not any(UNREAD in path for path in written)
    rows = setup.feed_rows()
    assert rows[UNREAD] == ("skipped", SKIPPED)
    assert {profile: rows[profile] for profile in (*CONFIGURED, READ, FEED_ONLY)} == dict.fromkeys(
        (*CONFIGURED, READ, FEED_ONLY), ("sent", None)
    )
    # `digest status` owes nothing and names no problem for the skipped row.
    found = status.gather(setup.config, setup.store, NOW)
    assert not [line for line in found.problems if UNREAD in line or "feed" in line]
    feeds_line = next(channel for channel in found.channels if channel.name == "feeds")
    assert feeds_line.state == "ok" and dict(feeds_line.counts) == {"sent": 4, "skipped": 1}


def test_the_missing_file_scan_leaves_unread_personal_feeds_unbuilt(setup: Setup) -> None:
    setup.run()
    for profile in (UNREAD, READ, "ml"):
        for kind in ("rss", "atom"):
            setup.path(profile, kind).unlink()
    setup.run(NOW + timedelta(hours=1))  # no open row: only the scan for missing files
    assert not setup.path(UNREAD).exists() and not setup.path(UNREAD, "rss").exists()
    assert entry_ids(setup.path(READ)) == entry_ids(setup.path("ml")) == ids_of(
        ["2611.00000", "2611.00001"]
    )


def test_a_read_outside_the_window_counts_as_unread(setup: Setup) -> None:
    setup.run(NOW + timedelta(days=31))  # READ's read was 32 days before
    assert setup.feed_rows()[READ] == ("skipped", SKIPPED)


def test_a_window_of_0_builds_every_personal_feed(setup: Setup) -> None:
    output = dataclasses.replace(setup.config.output, personal_feed_window=0)
    setup.config = dataclasses.replace(setup.config, output=output)
    setup.run()
    assert setup.feed_rows()[UNREAD] == ("sent", None)
    assert entry_ids(setup.path(UNREAD)) == ids_of(["2611.00000", "2611.00001"])


@pytest.mark.parametrize(
    ("value", "expected"),
    [("7", 7), ("0", 0), (None, 30), ("-1", "output.personal_feed_window: expected a number from 0")],
)
def test_the_window_is_read_from_the_config(
    tmp_path: Path, value: str | None, expected: int | str
) -> None:
    path = write_config(tmp_path)
    if value is not None:
        text = path.read_text(encoding="utf-8")
        path.write_text(text.replace("[output]\n", f"[output]\npersonal_feed_window = {value}\n"))
    if isinstance(expected, int):
        assert load_config(path).output.personal_feed_window == expected
    else:
        with pytest.raises(ConfigError, match=expected):
            load_config(path)


def client_of(setup: Setup, now: datetime = NOW) -> TestClient:
    return TestClient(create_app(setup.config, lambda: now))


def test_a_request_builds_an_unread_feed_records_the_read_and_the_next_run_rebuilds_it(
    setup: Setup,
) -> None:
    setup.run()
    assert entry_ids(setup.path(UNREAD)) == []  # still the empty feed of sign-up
    with client_of(setup) as client:
        answer = client.get(f"/feeds/profiles/{UNREAD}.atom")
        assert answer.status_code == 200
        parsed = feedparser.parse(answer.content)
        assert not parsed.bozo and parsed.version == "atom10"
        assert [entry.id for entry in parsed.entries] == ids_of(["2611.00000", "2611.00001"])
        assert answer.content == setup.path(UNREAD).read_bytes()  # written, as a run would
        # The RSS file was built with it: asked for next, it is answered as it is.
        assert entry_ids(setup.path(UNREAD, "rss")) == ids_of(["2611.00000", "2611.00001"])
        assert client.get(f"/feeds/profiles/{UNREAD}.rss").status_code == 200
    assert UNREAD in setup.store.feed_readers(NOW - timedelta(minutes=1))
    # Read now: the next run builds it with its new digest.
    setup.save_digests(DAY + timedelta(days=1), (UNREAD,), ["2611.00002"])
    setup.run(NOW + timedelta(days=1))
    assert setup.feed_rows(DAY + timedelta(days=1))[UNREAD] == ("sent", None)
    assert entry_ids(setup.path(UNREAD)) == ids_of(["2611.00002", "2611.00000", "2611.00001"])


def test_a_missing_personal_feed_is_built_on_request(setup: Setup) -> None:
    setup.run()
    setup.path(UNREAD, "rss").unlink()
    setup.path(UNREAD, "atom").unlink()
    with client_of(setup) as client:
        answer = client.get(f"/feeds/profiles/{UNREAD}.rss")
    assert answer.status_code == 200
    parsed = feedparser.parse(answer.content)
    assert parsed.version == "rss20"
    assert [entry.id for entry in parsed.entries] == ids_of(["2611.00000", "2611.00001"])
    assert setup.path(UNREAD).is_file()


def test_a_current_personal_feed_is_served_as_it_is(setup: Setup) -> None:
    setup.run()
    before = identity(setup.path(READ))  # built by the run after its digest
    with client_of(setup) as client:
        assert client.get(f"/feeds/profiles/{READ}.atom").status_code == 200
    assert identity(setup.path(READ)) == before


def test_a_feed_of_no_subscriber_is_404_and_writes_nothing(setup: Setup) -> None:
    setup.store.save_subscriber(subscriber("web-00000000000000dd", status="pending"))
    gone = subscriber("web-00000000000000ee")
    setup.store.save_subscriber(gone)
    setup.store.unsubscribe(gone.profile, gone.address, NOW)
    setup.save_digests(DAY, (gone.profile,), ["2611.00000"])
    before = every_file(setup.feeds_dir)
    with client_of(setup) as client:
        for name in (NOBODY, "web-00000000000000dd", gone.profile, "web-x/../web-y"):
            for kind in ("rss", "atom"):
                assert client.get(f"/feeds/profiles/{name}.{kind}").status_code == 404, name
    assert every_file(setup.feeds_dir) == before
    assert setup.store.feed_readers(NOW - timedelta(hours=1)) == set()  # a 404 is no read


def test_reads_are_written_in_one_transaction_and_survive_a_restart(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup.store.record_feed_reads([READ], NOW - timedelta(days=40))  # never moves back in time
    assert READ in setup.store.feed_readers(NOW - timedelta(days=2))
    transactions: list[tuple[list[str], datetime]] = []
    record_feed_reads = Store.record_feed_reads

    def counted(store: Store, profiles: list[str], at: datetime) -> None:
        transactions.append((list(profiles), at))
        record_feed_reads(store, profiles, at)

    monkeypatch.setattr(Store, "record_feed_reads", counted)
    setup.run()
    later = NOW + timedelta(hours=2)
    with client_of(setup, later) as client:
        etag = client.get(f"/feeds/profiles/{READ}.atom").headers["etag"]
        for _ in range(5):
            answer = client.get(f"/feeds/profiles/{READ}.atom", headers={"if-none-match": etag})
            assert answer.status_code == 304
        assert client.head(f"/feeds/profiles/{FEED_ONLY}.rss").status_code == 200
        assert client.get("/feeds/profiles/ml.atom").status_code == 200  # public: not a read mark
        assert client.get(f"/feeds/profiles/{NOBODY}.atom").status_code == 404
        assert transactions == []  # nothing written while serving: at most once a minute
    assert transactions == [([READ, FEED_ONLY], later)]  # at shutdown, all in one
    # A new process reads them from the store.
    with Store.open(setup.config.store_path) as store:
        assert store.feed_readers(later) == {READ, FEED_ONLY}


def test_read_marks_are_flushed_once_a_minute_while_serving(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    from digest.web import personal

    app = create_app(setup.config, lambda: NOW)
    site = app.state.site
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 3:  # the server stops
            raise asyncio.CancelledError

    monkeypatch.setattr(personal.anyio, "sleep", sleep)
    site.personal.served(READ)
    site.personal.served(FEED_ONLY)

    async def serve() -> None:
        with pytest.raises(asyncio.CancelledError):
            await site.personal.keep_flushing()

    asyncio.run(serve())
    site.close()
    assert waits == [personal.FLUSH_SECONDS] * 3
    assert setup.store.feed_readers(NOW) == {READ, FEED_ONLY}
    assert site.personal.read == set()


def test_read_marks_the_store_cannot_take_are_kept_for_the_next_flush(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = create_app(setup.config, lambda: NOW).state.site
    calls: list[list[str]] = []
    record_feed_reads = Store.record_feed_reads

    def locked_once(store: Store, profiles: list[str], at: datetime) -> None:
        calls.append(list(profiles))
        if len(calls) == 1:
            raise StoreError("database is locked")
        record_feed_reads(store, profiles, at)

    monkeypatch.setattr(Store, "record_feed_reads", locked_once)
    site.personal.served(READ)
    asyncio.run(site.personal.flush())
    assert site.personal.read == {READ}  # kept in memory
    site.personal.served(FEED_ONLY)
    asyncio.run(site.personal.flush())
    site.close()
    assert calls == [[READ], [READ, FEED_ONLY]]
    assert setup.store.feed_readers(NOW) == {READ, FEED_ONLY}


def test_the_next_days_run_renders_only_its_new_digests_and_writes_what_a_whole_rebuild_would(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup.run()  # DAY's feeds, rendered
    rendered: list[tuple[str, str]] = []
    content = feeds._content

    def counted(item: ScoredPaper, position: int, renderer: Renderer, feedback: Any) -> Any:
        rendered.append((feedback.profile if feedback else "all", item.paper.key))
        return content(item, position, renderer, feedback)

    monkeypatch.setattr(feeds, "_content", counted)
    tomorrow = DAY + timedelta(days=1)
    setup.save_digests(tomorrow, CONFIGURED, ["2611.00002", "2611.00003"])
    setup.run(NOW + timedelta(days=1))
    # Each profile's new day rendered; its older day taken from its files as they were.
    assert sorted(key for profile, key in rendered if profile == "ml") == ["2611.00002", "2611.00003"]
    for profile in CONFIGURED:
        assert entry_ids(setup.path(profile)) == ids_of(["2611.00002", "2611.00003", "2611.00000", "2611.00001"])
        digests = feed_digests(setup.store, setup.config, profile)
        whole = build_profile_feed(setup.config, Renderer(), profile, digests,
                                   setup.store.signing_keys(setup.config.data_dir))
        assert (setup.path(profile, "rss").read_bytes(), setup.path(profile).read_bytes()) == (
            whole.rss, whole.atom
        )


def test_feeds_are_written_sooner_when_a_batchs_files_grow_large(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    from digest.channels import feed

    monkeypatch.setattr(feed, "FEED_BATCH_BYTES", 1)  # every profile's pair on its own
    sizes: list[int] = []
    real_publish = feeds.publish

    def counting(folder: Path, files: dict[str, bytes]) -> list[str]:
        sizes.append(len(files))
        return real_publish(folder, files)

    monkeypatch.setattr(feeds, "publish", counting)
    setup.run()
    built = (*CONFIGURED, READ, FEED_ONLY)
    assert sizes == [2, 1] + [2] * len(built)  # all.rss and .atom, the OPML, then a pair each
    for profile in built:
        assert entry_ids(setup.path(profile)) == ids_of(["2611.00000", "2611.00001"]), profile
    assert {setup.feed_rows()[profile] for profile in built} == {("sent", None)}
