"""Several workers (issue 17): four `digest run --no-fetch` processes at once on one PostgreSQL
store, 2,000 due profiles, mail to aiosmtpd on 127.0.0.1.

Each worker is a real process with a clock of its own (tests/test_crash_loop.py's DRIVER: it
starts at the instant given and ticks at the wall clock's pace; never the wall clock's date). The
papers (the captured arXiv API and Hugging Face pages) are ingested once, in-process under
freezegun. Afterwards the SMTP server's copies (by Message-ID) are counted against the ledger as
test_crash_loop does: a row with no copy that the ledger does not call 'uncertain' is lost, a row
with two copies is a duplicate, a copy no ledger row records is a stray. 'uncertain' (a run killed
between handing a message over and hearing the answer: it may have arrived) is what the ledger
says of such a row, never sent again within its quarantine, at most one a killed worker.

- four workers share the work: every row sent once, each of the two blocks composed and sent by
  one worker (a block is claimed before it is ranked);
- one worker SIGKILLed mid-run (the first to send 50 mails): the claims it held stay 'sending' while the others finish theirs,
  and a run with a clock past [delivery] claim_lease (its minimum, one minute) finishes its rows;
- the database restarted mid-run: each worker carries on or ends with one line naming the store
  (no traceback, exit 1), and a run after the lease completes the rest.
"""

from __future__ import annotations

import email
import email.policy
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from freezegun import freeze_time
from helpers import MONDAY, ROOT, Recorder, digest, write_config
from pgserver import PgServer

from digest.models import Delivery

PROFILES, WORKERS = 2000, 4
LEASE = timedelta(minutes=1)  # [delivery] claim_lease's minimum
AFTER_LEASE = LEASE + timedelta(seconds=30)  # the follow-up run's clock, after the workers'
QUARANTINE_HOURS = 720  # an uncertain mail is not sent again within the test
KEYWORDS = ("language model", "reinforcement learning", "agent", "diffusion", "graph")
WORKER_TIMEOUT = 240  # seconds: a worker that takes longer hangs (the test fails, kills it)

# `digest [-v] run --no-fetch` whose clock starts at argv[2] and ticks at the wall clock's pace;
# argv[3] is "-v" (a log line a message, a digest) or "" (what a deployment's log shows).
DRIVER = """
import sys, time
from datetime import datetime, timedelta
from digest.cli import _Context, cli
start, began = datetime.fromisoformat(sys.argv[2]), time.monotonic()
def clock():
    return start + timedelta(seconds=time.monotonic() - began)
cli.main(args=[*filter(None, sys.argv[3:4]), "--config", sys.argv[1], "run", "--no-fetch"],
         obj=_Context(sys.argv[1], clock), prog_name="digest")
"""


def profiles_toml(count: int) -> str:
    """`count` profiles in Berlin (due at 07:00 there, 06:00 UTC), one reader each, keywords the
    captured papers match, five papers a digest."""
    tables = []
    for number in range(count):
        keywords = ", ".join(f'"{KEYWORDS[(number + i) % len(KEYWORDS)]}"' for i in range(2))
        tables.append(
            f"[profiles.p{number:04}]\n"
            f'email = ["r{number:04}@example.org"]\n'
            f"keywords = [{keywords}]\n"
            "max_items = 5\n"
            'timezone = "Europe/Berlin"\n'
        )
    return "\n" + "\n".join(tables)


@dataclass
class Farm:
    """Four workers' setting: the config (store: url_env), the SMTP server, the store's URL."""

    folder: Path
    config: Path
    recorder: Recorder
    url: str
    logs: list[Path] = field(default_factory=list)

    def start(self, at: datetime, name: str, *, verbose: bool = True) -> subprocess.Popen[bytes]:
        log = self.folder / f"{name}.log"
        self.logs.append(log)
        with log.open("wb") as out:
            return subprocess.Popen(
                [sys.executable, "-c", DRIVER, str(self.config), at.isoformat(),
                 "-v" if verbose else ""],
                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
            )

    def ledger(self) -> list[Delivery]:
        from digest.store.postgres import PgTarget, PostgresStore

        with PostgresStore.connect(PgTarget(self.url)) as store:
            return [row for row in store.deliveries() if row.channel.startswith("mail:")]


@pytest.fixture
def farm(
    tmp_path: Path,
    postgresql_database_url: str,
    smtp_server: tuple[Recorder, int],
    monkeypatch: pytest.MonkeyPatch,
) -> Farm:
    recorder, port = smtp_server
    monkeypatch.setenv("DIGEST_TEST_DB", postgresql_database_url)  # the workers inherit it
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # digest.configcache's
    config = write_config(
        tmp_path,
        profiles=profiles_toml(PROFILES),
        smtp_port=port,
        extra=(
            f"[delivery]\nclaim_lease = {LEASE.seconds // 60}\n"
            f"uncertain_quarantine = {QUARANTINE_HOURS}\n\n"
            '[rank]\nembeddings = false\n\n[store]\nurl_env = "DIGEST_TEST_DB"\n'
        ),
    )
    with freeze_time(MONDAY - timedelta(hours=1)):
        assert digest(config, "ingest").exit_code == 0
    return Farm(tmp_path, config, recorder, postgresql_database_url)


@dataclass
class Count:
    rows: int = 0
    copies: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    lost: list[str] = field(default_factory=list)  # no copy, and the ledger does not say why
    duplicates: list[str] = field(default_factory=list)  # more than one copy
    uncertain: list[str] = field(default_factory=list)
    uncertain_copies: int = 0  # how many of those did arrive
    strays: int = 0  # copies with a Message-ID no ledger row records

    def __str__(self) -> str:
        return (
            f"{self.rows} rows, {self.copies} copies, ledger {dict(sorted(self.statuses.items()))}, "
            f"{len(self.lost)} lost {self.lost[:5]}, {len(self.duplicates)} duplicates "
            f"{self.duplicates[:5]}, {len(self.uncertain)} uncertain ({self.uncertain_copies} "
            f"arrived), {self.strays} strays"
        )


def count(farm: Farm) -> Count:
    """The server's copies against the ledger (test_crash_loop's rules)."""
    rows = farm.ledger()
    copies = Counter(
        str(email.message_from_bytes(data, policy=email.policy.default)["Message-ID"])
        for _, data in farm.recorder.received
    )
    figures = Count(rows=len(rows), copies=sum(copies.values()))
    figures.statuses = Counter(row.status for row in rows)
    known = {row.message_id for row in rows if row.message_id}
    figures.strays = sum(n for message_id, n in copies.items() if message_id not in known)
    for row in rows:
        who = f"{row.address} {row.day} ({row.status})"
        found = copies[row.message_id] if row.message_id else 0
        if row.status == "uncertain":
            figures.uncertain.append(who)
            figures.uncertain_copies += found
        if found > 1:
            figures.duplicates.append(who)
        elif found == 0 and row.status != "uncertain":
            figures.lost.append(who)
    return figures


def finish(process: subprocess.Popen[bytes], timeout: float = WORKER_TIMEOUT) -> int:
    try:
        return process.wait(timeout=timeout)
    finally:
        if process.poll() is None:  # it hung: the test fails, and leaves no process behind
            process.kill()
            process.wait()


@pytest.fixture
def workers() -> Iterator[list[subprocess.Popen[bytes]]]:
    """The test's worker processes, none left running after it, whatever happened."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


def sent_by(log: Path) -> int:
    """How many mails a worker said it sent ("mail: N sent, ...", 0 when it ended before)."""
    said = re.search(r"^mail: (\d+) sent", log.read_text(encoding="utf-8", errors="replace"), re.M)
    return int(said.group(1)) if said else 0


def composed_by(log: Path) -> int:
    """How many digests a worker composed (its log line per digest)."""
    text = log.read_text(encoding="utf-8", errors="replace")
    return len(re.findall(r"composed the digest of ", text))


def mails_logged(log: Path) -> int:
    """How many mails a worker's log says were sent so far (a line per message, with -v)."""
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return 0
    return len(re.findall(r"\bmail p\d+ \S+ to \S+: sent", text))


def tracebacks(output: str) -> list[str]:
    """The log records of a run's -v output that hold a traceback, but for DEBUG ones (the mail
    builder's thread says at debug level, with its traceback, why it builds in the run's
    thread instead): what a person reads of a failure must be one line, not a dump."""
    records = re.split(r"(?m)^(?=\d{4}-\d\d-\d\dT\S+ [A-Z]+ )", output)
    return [
        record for record in records
        if "Traceback" in record and not re.match(r"\S+ DEBUG ", record)
    ]


def wait_for(condition, seconds: float = 120.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


def split(farm: Farm, names: list[str]) -> str:
    return ", ".join(
        f"{name}: composed {composed_by(farm.folder / f'{name}.log')}, "
        f"sent {sent_by(farm.folder / f'{name}.log')}"
        for name in names
    )


def test_four_workers_on_one_postgresql_store_send_each_digest_once_and_share_the_work(
    farm: Farm, workers: list[subprocess.Popen[bytes]]
) -> None:
    began = time.monotonic()
    names = [f"worker{i}" for i in range(WORKERS)]
    workers += [farm.start(MONDAY, name) for name in names]
    codes = [finish(process) for process in workers]
    logs = {name: (farm.folder / f"{name}.log").read_text(errors="replace") for name in names}
    assert codes == [0] * WORKERS, logs
    figures = count(farm)
    print(f"{figures}; {split(farm, names)}; {time.monotonic() - began:.1f} s")
    assert figures.rows == PROFILES  # one reader a profile, one day
    assert figures.statuses == Counter({"sent": PROFILES}), figures  # every row settled
    assert (figures.lost, figures.duplicates, figures.strays) == ([], [], 0), figures
    assert figures.copies == PROFILES
    # Exactly one message per (profile, day): each reader got one.
    assert set(farm.recorder.recipients().values()) == {1}
    assert len(farm.recorder.recipients()) == PROFILES
    # They shared it: what each says it sent adds up, and the two blocks of 1,000 profiles
    # (pipeline.BLOCK) went to two workers, each block claimed by one (the other two found both
    # claimed, and nothing left once their holders had stored them).
    sent = [sent_by(farm.folder / f"{name}.log") for name in names]
    assert sum(sent) == PROFILES, split(farm, names)
    assert sum(n > 0 for n in sent) >= 2, split(farm, names)
    # Every digest was composed once (a worker that finds a profile composed skips it).
    assert sum(composed_by(farm.folder / f"{name}.log") for name in names) == PROFILES


def test_a_worker_killed_mid_run_leaves_its_claims_to_a_run_after_the_lease(
    farm: Farm, workers: list[subprocess.Popen[bytes]]
) -> None:
    names = [f"worker{i}" for i in range(WORKERS)]
    workers += [farm.start(MONDAY, name) for name in names]
    logs = [farm.folder / f"{name}.log" for name in names]
    # Killed in the middle of its mail: it has sent some, and holds the claims of its batch (the
    # first worker to send 50; a worker that found every block claimed sends none).
    wait_for(
        lambda: any(mails_logged(log) >= 50 for log in logs)
        or all(process.poll() is not None for process in workers),
        seconds=WORKER_TIMEOUT,
    )
    index = next((i for i, log in enumerate(logs) if mails_logged(log) >= 50), None)
    assert index is not None, f"no worker sent 50 mails: {split(farm, names)}"
    victim = workers[index]
    assert victim.poll() is None, f"{names[index]} ended before it could be killed"
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    codes = [finish(process) for process in workers[:WORKERS] if process is not victim]
    assert codes == [0] * (WORKERS - 1), split(farm, names)
    left = count(farm)
    print(f"after the kill: {left}; {split(farm, names)}")
    # The claims the killed worker held are still its own: within the lease no one takes them.
    assert left.statuses["sending"] > 0, left
    assert left.duplicates == [] and left.strays == 0, left

    # A run after the lease takes the abandoned claims over (or names them uncertain).
    follow_up = farm.start(MONDAY + AFTER_LEASE, "follow-up")
    workers.append(follow_up)
    code = finish(follow_up)
    said = (farm.folder / "follow-up.log").read_text(errors="replace")
    figures = count(farm)
    print(f"in the end: {figures}; follow-up sent {sent_by(farm.folder / 'follow-up.log')}")
    assert figures.rows == PROFILES
    assert (figures.lost, figures.duplicates, figures.strays) == ([], [], 0), figures
    assert set(figures.statuses) <= {"sent", "uncertain"}, figures  # every row settled
    # At most the one message the killed worker was handing over is uncertain; the run says so.
    assert len(figures.uncertain) <= 1, figures
    assert code == (1 if figures.uncertain else 0), said
    if figures.uncertain:
        assert "1 handed over with no answer" in said, said
    assert set(farm.recorder.recipients().values()) == {1}
    assert len(farm.recorder.recipients()) == PROFILES - len(figures.uncertain) + (
        figures.uncertain_copies
    )


def test_the_database_restarted_mid_run_the_workers_end_cleanly_and_a_later_run_completes(
    farm: Farm, workers: list[subprocess.Popen[bytes]], postgresql_server: PgServer
) -> None:
    names = [f"worker{i}" for i in range(WORKERS)]
    workers += [farm.start(MONDAY, name) for name in names]
    wait_for(lambda: len(farm.recorder.received) >= 300, seconds=WORKER_TIMEOUT)
    postgresql_server.restart()  # fast: every session ended, the same socket again
    codes = [finish(process) for process in workers]
    outputs = {name: (farm.folder / f"{name}.log").read_text(errors="replace") for name in names}
    print(f"exits {codes}")
    for name, code in zip(names, codes, strict=True):
        output = outputs[name]
        assert tracebacks(output) == [], output
        if code != 0:  # failed cleanly: one line naming the store (without a password)
            errors = [line for line in output.splitlines() if line.startswith("error: ")]
            assert len(errors) == 1, output
            assert "postgresql://postgres@/" in errors[0], errors
            assert code == 1, output
    mid = count(farm)
    print(f"after the restart: {mid}")
    assert mid.duplicates == [] and mid.strays == 0, mid

    follow_up = farm.start(MONDAY + AFTER_LEASE, "follow-up")
    workers.append(follow_up)
    code = finish(follow_up)
    said = (farm.folder / "follow-up.log").read_text(errors="replace")
    figures = count(farm)
    print(f"in the end: {figures}; follow-up sent {sent_by(farm.folder / 'follow-up.log')}")
    assert tracebacks(said) == [], said
    assert figures.rows == PROFILES, said
    assert (figures.lost, figures.duplicates, figures.strays) == ([], [], 0), figures
    assert set(figures.statuses) <= {"sent", "uncertain"}, figures
    # A worker cut off between handing a message over and recording its answer: uncertain.
    assert len(figures.uncertain) <= WORKERS, figures
    assert code == (1 if figures.uncertain else 0), said
    assert set(farm.recorder.recipients().values()) == {1}
