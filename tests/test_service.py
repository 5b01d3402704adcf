"""The service as people run it: `digest schedule` in its own process, its lock and SIGTERM,
two `digest run` processes at once, and `digest status` for monitoring.

Processes run the real CLI under freezegun (a frozen start that ticks on), never the wall clock's
date; mail goes to aiosmtpd on 127.0.0.1.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from freezegun import freeze_time
from helpers import MONDAY, ROOT, Recorder, Said, digest_process, wait_for, write_config

from digest.cli import cli
from digest.lock import AlreadyRunning, ProcessLock
from digest.store import Store

# -- the lock ----------------------------------------------------------------------------------


def test_a_second_holder_is_refused_with_the_first_ones_pid(tmp_path: Path) -> None:
    with (
        ProcessLock(tmp_path / "schedule.lock"),
        pytest.raises(AlreadyRunning, match=rf"pid {os.getpid()}\b"),
    ):
        ProcessLock(tmp_path / "schedule.lock").acquire()
    with ProcessLock(tmp_path / "schedule.lock"):  # released: free again
        pass


def test_the_lock_of_a_killed_process_is_taken_over(tmp_path: Path) -> None:
    lock = tmp_path / "schedule.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from pathlib import Path; from digest.lock import ProcessLock\n"
         f"ProcessLock(Path({str(lock)!r})).acquire(); print('held', flush=True); time.sleep(60)"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    with pytest.raises(AlreadyRunning, match=rf"pid {holder.pid}\b"):
        ProcessLock(lock).acquire()
    holder.kill()  # SIGKILL: no chance to clean up; the pid stays in the file
    holder.wait()
    assert lock.read_text().strip() == str(holder.pid)
    with ProcessLock(lock):
        assert lock.read_text().strip() == str(os.getpid())


# -- digest schedule ---------------------------------------------------------------------------


def test_the_service_catches_up_at_start_and_a_twin_stands_by_until_it_stops_on_sigterm(
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path)
    service = digest_process(config, "schedule")
    twin: subprocess.Popen[str] | None = None
    try:
        outbox = tmp_path / "data" / "outbox" / "new"
        wait_for(lambda: outbox.is_dir() and len(list(outbox.iterdir())) == 3)  # the catch-up run
        twin = digest_process(config, "schedule")
        said = Said(twin)
        said.wait_for(f"another `digest schedule` (pid {service.pid}) leads")
        assert twin.poll() is None  # waiting, not gone
        service.send_signal(signal.SIGTERM)
        _, errors = service.communicate(timeout=60)
        assert service.returncode == 0, errors
        assert "stopping: SIGTERM received" in errors
        assert errors.rstrip().endswith("stopped")
        # The standby takes over (within its 5 s poll) and catches up: nothing is due twice.
        said.wait_for("leading: this process", seconds=30)
        said.wait_for('Job "catch-up')
        twin.send_signal(signal.SIGTERM)
        twin.wait(timeout=60)
        assert twin.returncode == 0, said.all()
        assert said.all().rstrip().endswith("stopped")
    finally:
        service.kill()
        if twin is not None:
            twin.kill()
    assert len(list(outbox.iterdir())) == 3  # nothing sent twice by the hand-over


def test_two_schedulers_on_one_postgresql_store_one_leads_the_other_takes_over_after_a_kill(
    tmp_path: Path, postgresql_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGEST_TEST_DB", postgresql_database_url)
    config = write_config(tmp_path, extra='[store]\nurl_env = "DIGEST_TEST_DB"')
    first = digest_process(config, "schedule")
    second: subprocess.Popen[str] | None = None
    try:
        first_said = Said(first)
        first_said.wait_for("leading: this process")
        outbox = tmp_path / "data" / "outbox" / "new"
        wait_for(lambda: outbox.is_dir() and len(list(outbox.iterdir())) == 3)  # its catch-up
        second = digest_process(config, "schedule")
        second_said = Said(second)
        # It names the leader by its lock connection: "paperdigest schedule PID@HOST leads".
        second_said.wait_for(f"paperdigest schedule {first.pid}@")
        assert second.poll() is None and "leading" not in "".join(second_said.lines)
        first.kill()  # SIGKILL: the server drops its lock with its connection
        killed = time.monotonic()
        second_said.wait_for("leading: this process", seconds=60)
        assert time.monotonic() - killed < 60
        second_said.wait_for('Job "catch-up')
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=60)
        assert second.returncode == 0, second_said.all()
    finally:
        first.kill()
        if second is not None:
            second.kill()
    assert len(list(outbox.iterdir())) == 3  # the new leader's catch-up sent nothing twice


def test_a_standby_stops_on_sigterm_without_ever_leading(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    holder = ProcessLock(tmp_path / "data" / "schedule.lock")
    with holder:
        standby = digest_process(config, "schedule")
        try:
            said = Said(standby)
            said.wait_for(f"(pid {os.getpid()}) leads")
            standby.send_signal(signal.SIGTERM)
            standby.wait(timeout=60)
        finally:
            standby.kill()  # a failed wait must not leave it standing by for good
        errors = said.all()
    assert standby.returncode == 0, errors
    assert "leading" not in errors and errors.rstrip().endswith("stopped")
    assert not (tmp_path / "data" / "outbox").exists()  # it never ran a job


# -- two `digest run` processes ------------------------------------------------------------------


def test_two_digest_run_processes_at_once_deliver_each_digest_once(
    tmp_path: Path, smtp_server: tuple[Recorder, int]
) -> None:
    recorder, port = smtp_server
    config = write_config(tmp_path, smtp_port=port)
    runs = [digest_process(config, "run") for _ in range(2)]
    outputs = [run.communicate(timeout=120) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    assert recorder.recipients() == Counter(
        {"a@example.org": 1, "b@example.org": 1, "c@example.org": 1}
    )
    # Between them the two runs sent three messages, however they shared the work.
    assert sum(int(out.split("mail: ")[1].split(" sent")[0]) for out, _ in outputs) == 3


# -- digest status -------------------------------------------------------------------------------


def status(config: Path, at: datetime) -> tuple[int, str]:
    with freeze_time(at):
        result = CliRunner().invoke(cli, ["--config", str(config), "status"])
    return result.exit_code, result.output


def test_status_is_quiet_and_zero_when_all_is_well(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    with freeze_time(MONDAY, auto_tick_seconds=1):
        assert CliRunner().invoke(cli, ["--config", str(config), "run"]).exit_code == 0
    for feed in (tmp_path / "data" / "feeds").rglob("*.*"):  # file times are the disk's, not frozen
        os.utime(feed, (MONDAY.timestamp(), MONDAY.timestamp()))
    code, output = status(config, MONDAY + timedelta(hours=1))
    assert code == 0, output
    assert "all well" in output
    assert "ml: 2 sent, 0 failed, 0 pending; last digest 2026-11-23" in output
    assert "digest:ml" in output and "fetch:arxiv-api" in output
    assert "profiles/ml.rss: 60 min old" in output
    with freeze_time(MONDAY + timedelta(hours=1)):
        quiet = CliRunner().invoke(cli, ["--config", str(config), "status", "--quiet"])
    assert quiet.exit_code == 0 and quiet.output == ""


def test_status_exits_1_naming_a_failing_source_and_since_when(tmp_path: Path) -> None:
    config = write_config(tmp_path, broken_source=True)
    for hours in (0, 1, 2):
        with freeze_time(MONDAY + timedelta(hours=hours), auto_tick_seconds=1):
            CliRunner().invoke(cli, ["--config", str(config), "ingest"])
    code, output = status(config, MONDAY + timedelta(hours=3))
    assert code == 1
    assert "source arxiv-lg failing since 2026-11-23 07:00 UTC (3 runs)" in output
    assert "missing/feed.xml" in output


def test_status_exits_1_when_a_digest_is_overdue(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    with freeze_time(MONDAY, auto_tick_seconds=1):
        CliRunner().invoke(cli, ["--config", str(config), "run"])
    code, output = status(config, MONDAY + timedelta(days=1, hours=13))  # nothing ran since
    assert code == 1
    assert "profile ml: the digest due 2026-11-24 06:00 UTC was not made" in output


def test_a_fetch_job_ingests_its_source_and_refreshes_the_all_papers_feed(tmp_path: Path) -> None:
    from digest.config import load_config
    from digest.schedule import Service

    config = load_config(write_config(tmp_path))
    service = Service(config, lambda: MONDAY)
    service._job(source="hf-daily")
    feed = tmp_path / "data" / "feeds" / "all.rss"
    assert feed.read_text(encoding="utf-8").count("<item>") == 30  # hf-daily's 30 papers
    assert not (tmp_path / "data" / "outbox").exists()  # a fetch job sends nothing
    jobs = {job.id for job in service.scheduler.get_jobs()}
    # (The catch-up and the lead check join them when the service takes the lead.)
    assert jobs == {"fetch:arxiv-api", "fetch:hf-daily", "digest:ml", "digest:quiet", "subscribers"}


def test_a_fetch_job_whose_feeds_cannot_be_written_says_so_once_without_a_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from digest.config import load_config
    from digest.schedule import Service

    config = load_config(write_config(tmp_path))
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "data" / "feeds").write_text("a file where the feeds folder should be")
    caplog.set_level(logging.INFO)
    Service(config, lambda: MONDAY)._job(source="hf-daily")
    said = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len([r for r in said if "cannot write the feed file" in r.getMessage()]) == 1, said
    assert not any(r.exc_info for r in said)  # one line, not a traceback
    with Store.open(config.store_path) as store:
        assert "feeds" in store.problems()  # and `digest status` says it
