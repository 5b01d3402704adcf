"""One scheduler leads a store, others stand by (digest.store.leader): on PostgreSQL through a
session advisory lock, tried against a real server (tests/pgserver.py)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from digest.lock import ProcessLock
from digest.store.leader import FileLeadership, PostgresLeadership, process_name
from tests.pgserver import PgServer

ROOT = Path(__file__).resolve().parents[1]
POLL_S = 0.1


def leadership(url: str) -> PostgresLeadership:
    import psycopg

    return PostgresLeadership(lambda: psycopg.connect(url, autocommit=True), "the test store")


@pytest.fixture
def stopping() -> Iterator[threading.Event]:
    """Set at the end of the test, so that no standby outlives it (a failed one included)."""
    event = threading.Event()
    yield event
    event.set()


@pytest.fixture
def leads(postgresql_database_url: str, stopping: threading.Event) -> Iterator[list[PostgresLeadership]]:
    made: list[PostgresLeadership] = []
    yield made
    stopping.set()
    for lead in made:
        lead.release()


def standing_by(
    lead: FileLeadership | PostgresLeadership, stopping: threading.Event
) -> tuple[threading.Thread, list[bool]]:
    result: list[bool] = []
    thread = threading.Thread(
        target=lambda: result.append(lead.wait(stopping, POLL_S)), daemon=True
    )
    thread.start()
    return thread, result


def test_one_leads_the_other_stands_by_naming_it_and_takes_over_when_released(
    postgresql_database_url: str, leads: list[PostgresLeadership], stopping: threading.Event,
    caplog: pytest.LogCaptureFixture,
) -> None:
    first, second = leadership(postgresql_database_url), leadership(postgresql_database_url)
    leads += (first, second)
    assert first.wait(stopping, POLL_S) and first.leading()
    caplog.set_level(logging.INFO, logger="digest.store.leader")
    thread, result = standing_by(second, stopping)
    time.sleep(10 * POLL_S)
    assert thread.is_alive() and not result  # still waiting
    assert f"{process_name()} leads" in caplog.text  # the leader, by its connection's name
    assert caplog.text.count("standby:") == 1  # said once, not every poll
    first.release()
    thread.join(timeout=10)
    assert result == [True] and second.leading() and not first.leading()


def test_a_standby_stops_waiting_when_asked(
    postgresql_database_url: str, leads: list[PostgresLeadership], stopping: threading.Event
) -> None:
    first, second = leadership(postgresql_database_url), leadership(postgresql_database_url)
    leads += (first, second)
    assert first.wait(stopping, POLL_S)
    thread, result = standing_by(second, stopping)
    stopping.set()
    thread.join(timeout=10)
    assert result == [False] and first.leading()


def test_the_lead_of_a_killed_process_is_taken_over(
    postgresql_database_url: str, leads: list[PostgresLeadership], stopping: threading.Event
) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, threading, time, psycopg\n"
         "from digest.store.leader import PostgresLeadership\n"
         f"lead = PostgresLeadership(lambda: psycopg.connect({postgresql_database_url!r}, autocommit=True), 'x')\n"
         "assert lead.wait(threading.Event(), 0.1)\n"
         "print('leading', flush=True); time.sleep(120)"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "leading"
        standby = leadership(postgresql_database_url)
        leads.append(standby)
        thread, result = standing_by(standby, stopping)
        time.sleep(5 * POLL_S)
        assert not result
        holder.kill()  # SIGKILL: the server drops the lock with the connection
        started = time.monotonic()
        thread.join(timeout=30)
        assert result == [True], "the standby did not take over"
        assert time.monotonic() - started < 10
    finally:
        holder.kill()
        holder.wait()


def test_a_leader_whose_lock_went_knows_it_no_longer_leads(
    postgresql_database_url: str, leads: list[PostgresLeadership], stopping: threading.Event
) -> None:
    """(Its connection alive, but the lock gone: a connection pooler between them could do that.)"""
    lead = leadership(postgresql_database_url)
    leads.append(lead)
    assert lead.wait(stopping, POLL_S)
    assert lead._connection is not None
    lead._connection.execute("SELECT pg_advisory_unlock_all()")
    assert not lead.leading()


def test_a_leader_whose_database_restarted_knows_it_no_longer_leads(
    postgresql_server: PgServer, postgresql_database_url: str, leads: list[PostgresLeadership]
) -> None:
    lead = leadership(postgresql_database_url)
    leads.append(lead)
    assert lead.wait(threading.Event(), POLL_S) and lead.leading()
    postgresql_server.restart()
    assert not lead.leading()
    # ... and can stand in line again once the database is back.
    assert lead.wait(threading.Event(), POLL_S) and lead.leading()


def test_a_standby_keeps_trying_while_the_database_is_away(
    postgresql_server: PgServer, postgresql_database_url: str, leads: list[PostgresLeadership],
    stopping: threading.Event, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="digest.store.leader")
    lead = leadership(postgresql_database_url)
    leads.append(lead)
    postgresql_server.stop("fast")
    try:
        thread, result = standing_by(lead, stopping)
        time.sleep(5 * POLL_S)
        assert not result and "cannot reach the database" in caplog.text
    finally:
        postgresql_server.start()
    thread.join(timeout=30)
    assert result == [True]


def test_on_sqlite_the_lead_is_a_lock_file_beside_the_store(
    tmp_path: Path, stopping: threading.Event
) -> None:
    path = tmp_path / "schedule.lock"
    with ProcessLock(path):
        standby = FileLeadership(path)
        thread, result = standing_by(standby, stopping)
        time.sleep(5 * POLL_S)
        assert not result
    thread.join(timeout=10)
    assert result == [True] and standby.leading()
    standby.release()
