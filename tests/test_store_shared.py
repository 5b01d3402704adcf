"""What processes on several hosts share through the store (digest/store/shared.py, issue 17):
feed files with their validators, the links' signing keys, rate-limit counters, source claims.
Every test runs on both backends (the `store` fixture); the races on PostgreSQL's own."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

from helpers import make_config, record, together

from digest import feeds, status
from digest.store import Store
from digest.store.postgres import PgTarget, PostgresStore
from digest.tokens import SECRET_FILE, feedback_token, read_feedback_token

T = TypeVar("T")
AT = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)


# -- feed files -----------------------------------------------------------------------------------


def test_feed_files_are_kept_with_validators_and_rewritten_only_when_their_bytes_change(
    store: Store,
) -> None:
    assert store.put_feed_files({"all.atom": b"<feed/>", "profiles/a.rss": b"<rss/>"}, AT) == [
        "all.atom", "profiles/a.rss",
    ]
    kept = store.feed_file("all.atom")
    assert kept is not None and kept.body == b"<feed/>" and kept.modified == AT
    head = store.feed_file_head("all.atom")
    assert head is not None and (head.etag, head.modified, head.size) == (kept.etag, AT, 7)
    later = AT + timedelta(hours=1)
    # The same bytes: not rewritten, so Last-Modified (and the ETag) stay.
    assert store.put_feed_files({"all.atom": b"<feed/>", "profiles/a.rss": b"<rss>1</rss>"}, later) == [
        "profiles/a.rss"
    ]
    assert store.feed_file("all.atom") == kept
    changed = store.feed_file("profiles/a.rss")
    assert changed is not None and changed.modified == later and changed.body == b"<rss>1</rss>"
    assert store.feed_files_modified(["all.atom", "profiles/a.rss", "nope.rss"]) == {
        "all.atom": AT, "profiles/a.rss": later,
    }
    assert store.feed_file("nope.rss") is None and store.feed_file_head("nope.rss") is None


def test_the_feed_target_is_the_store_on_postgresql_and_the_folder_on_sqlite(
    store: Store, tmp_path: Path
) -> None:
    target = feeds.target(tmp_path / "feeds", store, lambda: AT)
    assert target.publish({"all.rss": b"<rss/>"}) == ["all.rss"]
    assert target.present(["all.rss"]) and not target.present(["all.rss", "all.atom"])
    assert list(target.modified(["all.rss"])) == ["all.rss"]
    in_store = store.dialect.name == "postgresql"
    assert target.in_store is in_store
    assert (tmp_path / "feeds" / "all.rss").exists() is not in_store
    assert (store.feed_file("all.rss") is not None) is in_store


# -- signing keys ---------------------------------------------------------------------------------


def test_signing_keys_are_created_once_and_read_back_the_same(store: Store, tmp_path: Path) -> None:
    data = tmp_path / "keys-data"
    keys = store.signing_keys(data)
    assert keys and store.signing_keys(data) == keys
    with store.another() as other:
        assert other.signing_keys(data) == keys  # another connection (a host) reads the same
    # SQLite keeps them in the data directory's secret.key; PostgreSQL in the store, no file.
    assert (data / SECRET_FILE).exists() is (store.dialect.name == "sqlite")


def test_a_local_secret_key_is_imported_into_a_postgresql_store_so_mailed_links_keep_working(
    postgresql_database_url: str, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / SECRET_FILE).write_text("the-old-key\n# a comment\nolder-key\n", encoding="ascii")
    token = feedback_token(["the-old-key", "older-key"], "alice", "paper-1", "more")
    with PostgresStore.connect(PgTarget(postgresql_database_url)) as pg:
        keys = pg.signing_keys(data)
        assert keys == ["the-old-key", "older-key"]
        assert read_feedback_token(keys, token) == ("alice", "paper-1", "more")
    # Another host, with no secret.key of its own, gets the same keys from the store.
    with PostgresStore.connect(PgTarget(postgresql_database_url)) as pg:
        assert pg.signing_keys(tmp_path / "elsewhere") == ["the-old-key", "older-key"]


def test_hosts_creating_the_signing_keys_at_once_agree_on_them(
    postgresql_database_url: str, tmp_path: Path
) -> None:
    def first_use(n: int) -> list[str]:
        with PostgresStore.connect(PgTarget(postgresql_database_url)) as pg:
            return pg.signing_keys(tmp_path / f"host-{n}")

    found = together(4, first_use)
    assert all(isinstance(keys, list) for keys in found), found
    assert len({tuple(keys) for keys in found if isinstance(keys, list)}) == 1


# -- rate counts ----------------------------------------------------------------------------------


def test_rate_counts_are_counted_per_key_and_bucket_and_old_buckets_pruned(store: Store) -> None:
    assert store.count_event("subscribe:1.2.3.4", 100, 99) == (1, 0)
    assert store.count_event("subscribe:1.2.3.4", 100, 99) == (2, 0)
    assert store.count_event("subscribe:5.6.7.8", 100, 99) == (1, 0)
    assert store.count_event("subscribe:1.2.3.4", 101, 100) == (1, 2)  # the previous bucket's
    assert store.count_event("subscribe:1.2.3.4", 103, 102) == (1, 0)
    (left,) = store._db.execute("SELECT count(*) FROM rate_counts").fetchone()
    assert left == 1  # buckets 100 and 101 went


def test_rate_counts_from_many_connections_at_once_lose_no_event(store: Store) -> None:
    def hit(n: int) -> int:
        with store.another() as other:
            for _ in range(10):
                other.count_event("subscribe:flood", 7, 6)
        return n

    assert all(isinstance(r, int) for r in together(4, hit))
    assert store.count_event("subscribe:flood", 7, 6) == (41, 0)


# -- source claims --------------------------------------------------------------------------------


def test_a_source_claim_is_one_workers_until_it_expires_or_is_given_up(store: Store) -> None:
    lease = timedelta(minutes=15)
    assert store.claim_source("arxiv", "worker-a", AT, AT + lease)
    assert not store.claim_source("arxiv", "worker-b", AT + timedelta(minutes=1), AT + lease)
    assert store.claim_source("biorxiv", "worker-b", AT, AT + lease)  # another source: free
    # worker-a's lease runs out (killed mid-fetch): worker-b may take it.
    assert store.claim_source("arxiv", "worker-b", AT + lease, AT + 2 * lease)
    assert not store.finish_source("arxiv", "worker-a", AT + lease, AT + lease)  # not its own
    done = AT + lease + timedelta(minutes=2)
    assert store.finish_source("arxiv", "worker-b", done, done + timedelta(minutes=10))
    (claim,) = store.source_claims(["arxiv"])
    assert (claim.claimant, claim.fetched, claim.until) == ("worker-b", done, done + timedelta(minutes=10))
    # In its cool-down nobody takes it; after it, the next run's worker does.
    assert not store.claim_source("arxiv", "worker-c", done + timedelta(minutes=9), done + lease)
    assert store.claim_source("arxiv", "worker-c", done + timedelta(minutes=10), done + lease)
    store.release_source("biorxiv", "worker-b")
    assert store.claim_source("biorxiv", "worker-c", AT + timedelta(minutes=1), AT + lease)


def test_of_workers_claiming_a_source_at_once_exactly_one_gets_it(store: Store) -> None:
    def claim(n: int) -> bool:
        with store.another() as other:
            return other.claim_source("arxiv", f"worker-{n}", AT, AT + timedelta(minutes=15))

    got = together(4, claim)
    assert sorted(got, key=str) == [False, False, False, True], got


def test_a_confirmation_mail_is_recorded_only_within_the_limit_even_from_many_at_once(
    store: Store,
) -> None:
    """Sign-up workers of several replicas sending to the same addresses at once: each address
    gets at most its day's limit (the count and the insert are one locked step)."""
    limit, addresses = 3, [f"flood-{n}@example.org" for n in range(40)]
    workers = 6
    start = threading.Barrier(workers)
    sent: list[list[bool]] = [[] for _ in range(workers)]

    def send(n: int) -> None:
        with store.another() as own:  # opened first (a connection of the thread's own), then
            start.wait()  # all released at once
            for k, address in enumerate(addresses):
                sent[n].append(own.record_confirmation_mail_within(
                    address, AT + timedelta(seconds=k), "net", AT - timedelta(days=1), limit
                ))

    threads = [threading.Thread(target=send, args=(n,)) for n in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert all(len(got) == len(addresses) for got in sent)
    for k, address in enumerate(addresses):
        assert sum(got[k] for got in sent) == limit, address
        assert store.confirmation_mails_since(AT - timedelta(days=1), address) == limit


def test_status_tells_the_feeds_ages_from_where_they_are_kept(store: Store, tmp_path: Path) -> None:
    """`digest status`'s feed ages: the files' mtimes with SQLite, the rows' with PostgreSQL."""
    config = make_config(tmp_path)
    store.ingest([record("A Paper", arxiv_id="2611.00001")], AT)
    feeds.target(config.feeds_dir, store, lambda: AT).publish({feeds.ALL_ATOM: b"<feed/>"})
    found = {feed.path: feed.age for feed in status.gather(config, store, AT + timedelta(hours=2)).feeds}
    if store.dialect.name == "postgresql":
        assert found[feeds.ALL_ATOM] == timedelta(hours=2)
    else:  # a file's mtime is the wall clock's: some age, not missing
        assert found[feeds.ALL_ATOM] is not None
    assert found[feeds.ALL_RSS] is None
