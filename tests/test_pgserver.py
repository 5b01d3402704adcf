"""The throwaway PostgreSQL server the store tests run on (tests/pgserver.py, the fixtures in
conftest.py): it answers on the URL it gives, each test gets an empty database of its own, a
restart keeps what was committed, it listens on its socket only, it runs unprivileged, it is
stopped and removed after, and a machine without PostgreSQL skips (fails in CI)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pgserver
import pytest
from pgserver import PgServer


def test_the_server_answers_on_the_session_url(postgresql_url: str) -> None:
    import psycopg

    assert postgresql_url.startswith("postgresql://")
    with psycopg.connect(postgresql_url) as connection:
        assert connection.execute("select 1").fetchone() == (1,)
        assert connection.execute("select current_database()").fetchone() == ("paperdigest",)


def _tables(url: str) -> list[str]:
    import psycopg

    with psycopg.connect(url) as connection:
        rows = connection.execute(
            "select table_name from information_schema.tables"
            " where table_schema not in ('pg_catalog', 'information_schema') order by 1"
        ).fetchall()
    return [name for (name,) in rows]


@pytest.mark.parametrize("turn", [1, 2])
def test_each_test_gets_an_empty_database_of_its_own(
    turn: int, postgresql_server: PgServer, postgresql_database_url: str, postgresql_url: str
) -> None:
    """Run twice: the second turn would find the first's table if the database were shared."""
    import psycopg

    assert _tables(postgresql_database_url) == []
    with psycopg.connect(postgresql_database_url) as connection:
        connection.execute("create table marker (turn integer)")
        connection.execute("insert into marker values (%s)", (turn,))
    assert _tables(postgresql_database_url) == ["marker"]
    assert "marker" not in _tables(postgresql_url)  # nor in the session's database
    with postgresql_server.database() as another:  # nor in one made while this one lives
        assert another != postgresql_database_url
        assert _tables(another) == []


def test_a_database_is_dropped_after_its_test(postgresql_server: PgServer) -> None:
    with postgresql_server.database() as url:
        name = url.split("?")[0].rsplit("/", 1)[1]
        assert name.startswith("test_")
        assert _tables(url) == []
    with postgresql_server.connect() as connection:
        names = {n for (n,) in connection.execute("select datname from pg_database").fetchall()}
    assert name not in names


def test_a_restart_keeps_what_was_committed(
    postgresql_server: PgServer, postgresql_database_url: str
) -> None:
    import psycopg

    with psycopg.connect(postgresql_database_url) as connection:
        connection.execute("create table kept (word text)")
        connection.execute("insert into kept values ('before')")
    before = postgresql_server.pid
    survivor = psycopg.connect(postgresql_database_url, autocommit=True)
    try:
        postgresql_server.restart()
        assert postgresql_server.pid not in (None, before)  # a new postmaster, truly restarted
        with pytest.raises(psycopg.OperationalError):  # what a store sees across a restart
            survivor.execute("select 1")
    finally:
        survivor.close()
    with psycopg.connect(postgresql_database_url) as connection:
        assert connection.execute("select word from kept").fetchall() == [("before",)]


def test_it_listens_on_its_socket_only(postgresql_server: PgServer) -> None:
    with postgresql_server.connect() as connection:
        assert connection.execute("show listen_addresses").fetchone() == ("",)
        assert connection.execute("show unix_socket_directories").fetchone() == (
            str(postgresql_server.socket_dir),
        )
        # This very connection came through the socket: it has no server address.
        assert connection.execute("select inet_server_addr()").fetchone() == (None,)
    assert (postgresql_server.socket_dir / f".s.PGSQL.{pgserver.PORT}").is_socket()


def test_it_runs_unprivileged_and_fast(postgresql_server: PgServer) -> None:
    """Never as root (PostgreSQL refuses to); and durability is off, for speed."""
    pid = postgresql_server.pid
    assert pid is not None
    owner = Path(f"/proc/{pid}").stat().st_uid
    assert owner != 0
    user = postgresql_server.user
    assert owner == (user.pw_uid if user is not None else os.getuid())
    assert (user is not None) == (os.geteuid() == 0)
    with postgresql_server.connect() as connection:
        assert connection.execute("show fsync").fetchone() == ("off",)


def _alive(pid: int) -> bool:
    """A running process (a zombie, ended but not yet reaped by whoever adopted it, is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_the_server_is_stopped_and_removed_even_when_its_block_fails(
    postgresql_server: PgServer,
) -> None:
    """What the session fixture does at its end, on a server of its own (about a second)."""
    with pytest.raises(RuntimeError, match="a failed test"), pgserver.running(
        postgresql_server.bindir
    ) as server:
        pid = server.pid
        assert pid is not None and _alive(pid)
        raise RuntimeError("a failed test")
    for _ in range(100):  # pg_ctl stop waits for the pid file to go; the process ends just after
        if not _alive(pid):
            break
        time.sleep(0.05)
    assert not _alive(pid)
    assert not server.base.exists()


@pytest.mark.parametrize("named", ["", "/nonexistent/postgresql/bin"])
def test_without_postgresql_it_skips_but_fails_in_ci(
    named: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(pgserver.BINDIR_VARIABLE, named)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=pgserver.BINDIR_VARIABLE):
        pgserver.postgresql_or_skip()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must run the PostgreSQL tests"):
        pgserver.postgresql_or_skip()
