"""The PostgreSQL store (issue 17): how it is named in config.toml (never with its password),
chosen by open_store, migrated once by processes starting together, shared by workers that take
disjoint rows without waiting, and failing in one line that names it. The concerns themselves
run on both backends through the `store` fixture (tests/conftest.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pytest
from helpers import T0, digest, record, together, write_config
from pgserver import PgServer

from digest.config import load_config, url_has_password, url_without_password
from digest.errors import ConfigError, StoreError
from digest.models import Digest, Interests, SignupRequest, SourceNote
from digest.store import SCHEMA_VERSION, Store, open_store
from digest.store.postgres import (
    PgTarget,
    PostgresStore,
    as_copy,
    target_from_config,
    translate,
)

T = TypeVar("T")


@pytest.fixture
def pg(postgresql_database_url: str) -> Iterator[PostgresStore]:
    with PostgresStore.connect(PgTarget(postgresql_database_url)) as opened:
        yield opened


# -- SQL as the concerns write it ---------------------------------------------------------------


def test_placeholders_become_psycopgs_and_a_percent_stays_a_percent() -> None:
    assert translate("SELECT a FROM t WHERE b = ? AND c = ?") == (
        "SELECT a FROM t WHERE b = %s AND c = %s",
        None,
    )
    # Numbered ones are filled from their value, each time they appear; a bare `?` after them
    # is one above the largest so far (SQLite's rule).
    assert translate("UPDATE t SET a = ?2 WHERE k = ?1 AND ?1 <> ? ") == (
        "UPDATE t SET a = %s WHERE k = %s AND %s <> %s ",
        (1, 0, 0, 2),
    )
    # Quoted text is left alone but for its percent signs, which psycopg would read.
    assert translate("SELECT '?%', \"odd?\" FROM t WHERE x LIKE '%' || ?") == (
        "SELECT '?%%', \"odd?\" FROM t WHERE x LIKE '%%' || %s",
        None,
    )


def test_a_plain_insert_of_many_rows_goes_as_a_copy() -> None:
    assert as_copy("INSERT INTO papers VALUES (?, ?, ?)") == "COPY papers FROM STDIN"
    assert as_copy("INSERT INTO h (key, fields)\n  VALUES (?, ?)") == "COPY h (key, fields) FROM STDIN"
    for sql in (
        "INSERT INTO t VALUES (?, ?) ON CONFLICT (a) DO NOTHING",
        "INSERT INTO t (a, b) VALUES (?, 'pending')",
        "INSERT INTO t (a) VALUES (?) RETURNING a",
        "INSERT INTO t SELECT ?1 WHERE EXISTS (SELECT 1 FROM u WHERE k = ?1)",
        "UPDATE t SET a = ?",
    ):
        assert as_copy(sql) is None, sql


def test_rows_copied_are_the_rows_inserted(pg: PostgresStore) -> None:
    pg._db.execute("CREATE TABLE t (a BIGINT, b TEXT, c BYTEA)")
    cursor = pg._db.executemany(
        "INSERT INTO t VALUES (?, ?, ?)", [(1, "100% ?\t\\N", b"\x00\xff"), (True, None, None)]
    )
    assert cursor.rowcount == 2
    assert pg._db.execute("SELECT * FROM t ORDER BY b").fetchall() == [
        (1, "100% ?\t\\N", b"\x00\xff"),
        (1, None, None),
    ]


# -- [store] in config.toml ---------------------------------------------------------------------


def _store_config(tmp_path: Path, lines: str) -> Any:
    return load_config(write_config(tmp_path, extra=f"[store]\n{lines}")).store


def test_a_postgresql_url_and_where_its_password_comes_from(tmp_path: Path) -> None:
    store = _store_config(
        tmp_path, 'url = "postgresql://digest@db.example.org:5432/digest"\npassword_env = "PGPW"'
    )
    assert (store.url, store.password_env, store.postgresql) == (
        "postgresql://digest@db.example.org:5432/digest",
        "PGPW",
        True,
    )
    store = _store_config(tmp_path, 'url_env = "DIGEST_DB"\npassword_file = "secrets/pg"')
    assert store.url_env == "DIGEST_DB" and store.password_file == tmp_path / "secrets" / "pg"
    assert not _store_config(tmp_path, "keep_days = 30").postgresql


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ('url = "postgresql://digest:hunter2@db/digest"', "never goes into config.toml"),
        ('url = "postgres://db/digest?password=hunter2"', "never goes into config.toml"),
        ('url = "mysql://db/digest"', "expected a PostgreSQL URL"),
        ('url = "postgresql://db/d"\nurl_env = "X"', "url or url_env, not both"),
        ('url = "postgresql://db/d"\npassword_env = "A"\npassword_file = "b"', "not both"),
        ('password_env = "A"', "for a PostgreSQL url"),
    ],
)
def test_a_wrong_store_setting_is_refused_without_echoing_a_password(
    tmp_path: Path, lines: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        _store_config(tmp_path, lines)
    assert "hunter2" not in str(caught.value)


def test_a_url_is_shown_without_its_password() -> None:
    assert url_without_password("postgresql://u:s3cret@h:5432/db?sslmode=require") == (
        "postgresql://u@h:5432/db?sslmode=require"
    )
    assert url_without_password("postgres://h/db?password=s3cret&host=/run/pg") == (
        "postgres://h/db?host=/run/pg"
    )
    assert url_has_password("postgresql://u:@h/db")
    assert not url_has_password("postgresql://u@h/db?host=/tmp")


def test_the_password_comes_from_the_environment_or_a_file(tmp_path: Path) -> None:
    store = _store_config(tmp_path, 'url = "postgresql://u@h/db"\npassword_env = "PGPW"')
    assert target_from_config(store, {"PGPW": "s3cret"}).password == "s3cret"
    with pytest.raises(StoreError, match="PGPW is not set"):
        target_from_config(store, {})
    (tmp_path / "pw").write_text("from-a-file\n")
    store = _store_config(tmp_path, 'url = "postgresql://u@h/db"\npassword_file = "pw"')
    target = target_from_config(store, {})
    assert target.password == "from-a-file" and "from-a-file" not in repr(target)
    store = _store_config(tmp_path, 'url_env = "DIGEST_DB"')
    target = target_from_config(store, {"DIGEST_DB": "postgresql://u:s3cret@h/db"})
    assert target.where == "postgresql://u@h/db" and target.password is None


def test_open_store_chooses_the_backend_from_the_config(
    tmp_path: Path, postgresql_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with open_store(load_config(write_config(tmp_path))) as store:
        assert type(store) is Store and store.path == tmp_path / "data" / "paperdigest.sqlite3"
    monkeypatch.setenv("DIGEST_TEST_DB", postgresql_database_url)
    config = load_config(write_config(tmp_path, extra='[store]\nurl_env = "DIGEST_TEST_DB"'))
    with open_store(config) as store:
        assert isinstance(store, PostgresStore)
        store.ingest([record("P", arxiv_id="2611.00001")], T0)
        with store.another() as other:  # a second connection to the same database
            assert other.count_papers() == 1


# -- migrating ------------------------------------------------------------------------------------


def test_processes_opening_one_new_database_at_once_create_the_schema_once(
    postgresql_database_url: str,
) -> None:
    # Each connection takes the advisory lock, then finds the schema made by the first.
    results = together(6, lambda _: PostgresStore.connect(PgTarget(postgresql_database_url)))
    stores = [r for r in results if isinstance(r, PostgresStore)]
    try:
        assert len(stores) == 6, [r for r in results if not isinstance(r, PostgresStore)]
        versions = stores[0]._db.execute("SELECT version FROM schema_version").fetchall()
        assert versions == [(SCHEMA_VERSION,)]
    finally:
        for store in stores:
            store.close()


def test_a_database_of_someone_else_or_of_a_newer_schema_is_refused(
    postgresql_database_url: str, postgresql_server: PgServer
) -> None:
    name = urlsplit(postgresql_database_url).path.lstrip("/")
    with postgresql_server.connect(name) as db:
        db.execute("CREATE TABLE accounts (id int)")
    with pytest.raises(StoreError, match="not a paperdigest store"):
        PostgresStore.connect(PgTarget(postgresql_database_url))
    with postgresql_server.connect(name) as db:
        db.execute("DROP TABLE accounts")
    PostgresStore.connect(PgTarget(postgresql_database_url)).close()
    with postgresql_server.connect(name) as db:
        db.execute("UPDATE schema_version SET version = %s", (SCHEMA_VERSION + 1,))
    with pytest.raises(StoreError, match="newer than this paperdigest understands"):
        PostgresStore.connect(PgTarget(postgresql_database_url))


# -- several workers at once ------------------------------------------------------------------------


def _digest(store: Store, profile: str) -> Digest:
    until = T0 + timedelta(hours=10)
    return Digest(
        profile, until.date(), "UTC", until - timedelta(days=1), until, 1,
        (SourceNote("arxiv", "ok"),), (),
    )  # fmt: skip


def test_a_row_another_worker_holds_is_skipped_not_waited_for(pg: PostgresStore) -> None:
    pg.save_digest(_digest(pg, "me"), ["mail:a@example.org", "mail:b@example.org"], T0)
    first, second = pg.deliveries()
    stale = T0 - timedelta(minutes=15)
    with pg.another() as other:
        other._db.execute("BEGIN")  # another worker, in the middle of claiming `first`
        other._db.execute(
            "SELECT 1 FROM deliveries WHERE channel = ? FOR UPDATE", ("mail:a@example.org",)
        )
        began = time.monotonic()
        assert pg.claim_many([first, second], "worker-1", T0, stale_before=stale) == [False, True]
        assert time.monotonic() - began < 5  # not the 30 s of the lock's patience
        other._db.execute("ROLLBACK")
    assert pg.claim(first, "worker-1", T0, stale_before=stale)
    assert not pg.claim(second, "worker-2", T0, stale_before=stale)


def test_workers_claiming_the_same_rows_take_each_once(pg: PostgresStore) -> None:
    channels = [f"mail:{n}@example.org" for n in range(40)]
    pg.save_digest(_digest(pg, "me"), channels, T0)
    rows = pg.deliveries()
    workers = [pg.another() for _ in range(4)]
    try:
        got = together(
            4,
            lambda n: workers[n].claim_many(
                rows, f"worker-{n}", T0, stale_before=T0 - timedelta(minutes=15)
            ),
        )
    finally:
        for worker in workers:
            worker.close()
    taken = [sum(flags) for flags in got]  # type: ignore[arg-type]
    assert sum(taken) == len(rows)
    assert {d.status for d in pg.deliveries()} == {"sending"}


def test_ingests_and_digests_saved_at_once_keep_one_of_each(pg: PostgresStore) -> None:
    workers = [pg.another() for _ in range(3)]
    try:
        for round_ in range(5):
            batch = [record(f"Paper {round_}-{n}", arxiv_id=f"2611.{round_}{n:04}") for n in range(30)]
            outcomes = together(3, lambda n, batch=batch: workers[n].ingest(batch, T0))
            assert all(not isinstance(o, BaseException) for o in outcomes), outcomes
            # Exactly one of the ingests found them new.
            assert sorted(len(o.new_keys) for o in outcomes) == [0, 0, 30]  # type: ignore[union-attr]
            digest = _digest(pg, f"p{round_}")
            saved = together(3, lambda n, d=digest: workers[n].save_digest(d, ["feed"], T0))
            assert all(s == digest for s in saved), saved
    finally:
        for worker in workers:
            worker.close()
    assert pg.count_papers() == 150
    assert len(pg.deliveries()) == 5


def test_workers_saving_the_same_digests_in_opposite_orders_never_deadlock(
    pg: PostgresStore,
) -> None:
    """A save locks each digest's key as it inserts it; saved in one order for all writers, two
    saves of overlapping sets wait for each other at most, where opposite orders would deadlock
    (and PostgreSQL would fail one of them). Each digest has source notes of its own here, so
    the row they would share in digest_sources does not make the saves take turns anyway."""
    workers = [pg.another() for _ in range(2)]
    try:
        for round_ in range(5):
            digests = [
                (replace(_digest(pg, f"r{round_}-p{n:03}"), sources=(SourceNote("arxiv", "failed", f"e{n}"),)), ["feed"])
                for n in range(150)
            ]
            orders = [digests, digests[::-1]]
            saved = together(2, lambda n, orders=orders: workers[n].save_digests(orders[n], T0))
            assert all(not isinstance(s, BaseException) for s in saved), saved
            assert [d.profile for d in saved[1]] == [d.profile for d, _ in orders[1]]  # type: ignore[union-attr]
    finally:
        for worker in workers:
            worker.close()
    assert len(pg.deliveries()) == 5 * 150


def test_two_workers_never_claim_the_same_signup(pg: PostgresStore) -> None:
    for n in range(2):
        pg.queue_signup(SignupRequest("192.0.2.0/24", f"s{n}@example.org", Interests(), T0))
    with pg.another() as other:
        other._db.execute("BEGIN")  # another worker, holding the first request
        other._db.execute("SELECT 1 FROM signup_requests WHERE address = 's0@example.org' FOR UPDATE")
        began = time.monotonic()
        claimed = pg.claim_signup(T0, timedelta(minutes=5), T0)
        assert claimed is not None and claimed.address == "s1@example.org"
        assert time.monotonic() - began < 5
        other._db.execute("ROLLBACK")


# -- failing in one line ------------------------------------------------------------------------


def test_a_server_that_cannot_be_reached_is_named_in_one_line(tmp_path: Path) -> None:
    url = f"postgresql://digest:s3cret@/digest?host={tmp_path}&port=5432"
    with pytest.raises(StoreError) as caught:
        PostgresStore.connect(PgTarget(url))
    message = str(caught.value)
    assert message.startswith(f"postgresql://digest@/digest?host={tmp_path}&port=5432: cannot connect")
    assert "\n" not in message and "s3cret" not in message


def test_a_connection_lost_mid_run_fails_in_one_line(
    pg: PostgresStore, postgresql_server: PgServer
) -> None:
    pg.ingest([record("P", arxiv_id="2611.00001")], T0)
    postgresql_server.restart()
    with pytest.raises(StoreError) as caught:
        pg.ingest([record("Q", arxiv_id="2611.00002")], T0)
    message = str(caught.value)
    assert message.startswith(pg.where + ": ") and "\n" not in message
    assert "connection" in message
    with pg.another() as again:  # the server is back: a new connection works, nothing was lost
        assert again.count_papers() == 1


def test_check_reads_every_table_and_backup_points_to_pg_dump(pg: PostgresStore, tmp_path: Path) -> None:
    pg.ingest([record("P", arxiv_id="2611.00001")], T0)
    assert pg.check() == [] and pg.check(quick=True) == []
    with pytest.raises(StoreError, match="pg_dump"):
        pg.backup(tmp_path / "copy.sqlite3")
    pg.vacuum()
    assert pg.size().used_bytes > 0


def test_the_cli_works_on_postgresql_and_names_it_without_the_password(
    tmp_path: Path, postgresql_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGEST_TEST_DB", postgresql_database_url)
    config = write_config(tmp_path, extra='[store]\nurl_env = "DIGEST_TEST_DB"')
    assert load_config(config).store_name == postgresql_database_url
    result = digest(config, "ingest")  # the captured sources, into PostgreSQL
    assert result.exit_code == 0, result.output
    with PostgresStore.connect(PgTarget(postgresql_database_url)) as store:
        assert store.count_papers() > 0
    assert digest(config, "store", "check").output == "ok\n"
    # A database that is not there: one line naming it, without the password, exit 1.
    monkeypatch.setenv("DIGEST_TEST_DB", postgresql_database_url.replace("postgres@", "postgres:s3cret@").replace("/test_", "/gone_"))
    result = digest(config, "papers")
    assert result.exit_code == 1
    assert "s3cret" not in result.output and "gone_" in result.output
    assert "does not exist" in result.output and len(result.output.strip().splitlines()) == 1


def test_vacuum_on_postgresql_does_not_ask_the_sqlite_schedulers_lock(
    tmp_path: Path, postgresql_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A `digest schedule` on this host holds data/schedule.lock; PostgreSQL's VACUUM works
    beside it (and schedulers of a PostgreSQL store lead through the database, not that file)."""
    from digest.lock import ProcessLock

    monkeypatch.setenv("DIGEST_TEST_DB", postgresql_database_url)
    config = write_config(tmp_path, extra='[store]\nurl_env = "DIGEST_TEST_DB"')
    with ProcessLock(tmp_path / "data" / "schedule.lock"):
        result = digest(config, "store", "vacuum")
    assert result.exit_code == 0, result.output
    assert "after (" in result.output


def test_a_postgresql_store_is_not_opened_as_a_file(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="PostgresStore.connect"):
        PostgresStore.open(tmp_path / "s.sqlite3")
    assert not (tmp_path / "s.sqlite3").exists()


# -- block claims ---------------------------------------------------------------------------------


def test_a_block_claimed_by_one_connection_is_refused_to_another_until_released(
    pg: PostgresStore,
) -> None:
    key = -0x1234_5678_9ABC_DEF0  # any signed 64-bit number (pipeline.block_key's)
    with pg.another() as other:
        assert pg.claim_block(key)
        assert not other.claim_block(key)
        assert other.claim_block(key + 1)  # another block is free
        pg.release_block(key)
        assert other.claim_block(key)
        assert not pg.claim_block(key)
    # The connection that held it closed (a worker killed mid-block): the block is free again,
    # once the server has ended that session (it does so after the client has gone).
    deadline = time.monotonic() + 10
    while not pg.claim_block(key):
        assert time.monotonic() < deadline, "the closed connection's claim was not released"
        time.sleep(0.05)
    pg.release_block(key)
