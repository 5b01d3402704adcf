"""Exactly once by outcome (issue 15): SMTP servers that answer late, hang, refuse or stall.

A send whose outcome is unknown (the timeout fell after the message was handed over) is
'uncertain': never re-sent by the run, re-sent by a later run only after the quarantine, shown by
`digest status`. Only a failure that proves the message did not go is retried; failures to reach
the server open a circuit breaker that leaves the rest pending. Servers are real sockets on
127.0.0.1 (aiosmtpd, or a scripted one for stalls at a chosen stage), with short timeouts; the
clock is injected, never the wall clock's.
"""

from __future__ import annotations

import socket
import socketserver
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from freezegun import freeze_time
from helpers import T0, Crash, Recorder, digest, free_port, make_config, start_server, write_config
from ledger import DAY, Clock, Sleeps, addresses, build, open_store, owe, run, statuses

from digest.channels.mail import SmtpSender
from digest.config import DeliveryConfig, SmtpConfig, load_config
from digest.deliver import DeliveryReport
from digest.errors import TransientDeliveryError, UncertainDeliveryError
from digest.models import Delivery
from digest.status import gather
from digest.store import MIGRATIONS, SCHEMA_VERSION, Store

TIMEOUT_S = 0.3  # the client's; a late server answers after LATE_S
LATE_S = 1.0


def settings_for(port: int, **options: Any) -> SmtpConfig:
    return SmtpConfig(host="127.0.0.1", port=port, security="none", timeout_s=TIMEOUT_S, **options)


@pytest.fixture
def late_server() -> Iterator[tuple[Recorder, SmtpConfig]]:
    """aiosmtpd that stores every message, then answers its 250 after the client's timeout."""
    controller, recorder = start_server()
    yield recorder, settings_for(controller.port)
    controller.stop()


# -- a scripted server: stalls at a chosen stage of the conversation ---------------------------

STAGES = ("greeting", "ehlo", "mail", "rcpt", "data", "end")


class Scripted(socketserver.StreamRequestHandler):
    """Speaks just enough SMTP; stays silent (until the client gives up) at `server.stall`.

    Every message whose end-of-data line arrived is recorded in `server.received`, answered or not.
    """

    server: ScriptedServer

    def handle(self) -> None:
        server = self.server
        server.connections += 1
        if not self.say("greeting", b"220 scripted ESMTP"):
            return
        in_data = False
        body: list[bytes] = []
        while line := self.rfile.readline():
            if in_data:
                if line == b".\r\n":
                    in_data = False
                    server.received.append(b"".join(body))
                    body = []
                    if not self.say("end", b"250 2.0.0 accepted"):
                        return
                else:
                    body.append(line)
                continue
            verb = line[:4].upper()
            if verb == b"EHLO" or verb == b"HELO":
                self.say("ehlo", b"250 scripted")
            elif verb == b"MAIL":
                self.say("mail", b"250 OK")
            elif verb == b"RCPT":
                self.say("rcpt", b"250 OK")
            elif verb == b"DATA":
                in_data = self.say("data", b"354 go ahead")
            elif verb == b"QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:
                self.wfile.write(b"250 OK\r\n")

    def say(self, stage: str, answer: bytes) -> bool:
        """Answer, unless this is the stage to stall at: then wait for the client to hang up (or,
        with `server.hang_up`, close the connection at once, without a word)."""
        if stage == self.server.stall:
            if not self.server.hang_up:
                self.rfile.read()  # until the client closes the connection
            return False
        self.wfile.write(answer + b"\r\n")
        return True


class ScriptedServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, stall: str, hang_up: bool = False) -> None:
        super().__init__(("127.0.0.1", 0), Scripted)
        self.stall = stall
        self.hang_up = hang_up
        self.connections = 0
        self.received: list[bytes] = []


@pytest.fixture
def scripted() -> Iterator[Any]:
    servers: list[ScriptedServer] = []

    def start(stall: str, hang_up: bool = False) -> ScriptedServer:
        server = ScriptedServer(stall, hang_up)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def port_of(server: ScriptedServer) -> int:
    return int(server.server_address[1])


# -- the sender: where the failure happened decides what it means ------------------------------


@pytest.mark.parametrize("stage", STAGES)
def test_a_stall_before_the_handover_is_transient_after_it_uncertain(
    scripted: Any, stage: str
) -> None:
    server = scripted(stage)
    row = Delivery("alice", "mail:a@example.org", DAY, "sending")
    expected = UncertainDeliveryError if stage == "end" else TransientDeliveryError
    with (
        SmtpSender(settings_for(port_of(server)), sleep=Sleeps()) as sender,
        pytest.raises(expected) as caught,
    ):
        sender.send(build(row), "a@example.org")
    assert not isinstance(caught.value, UncertainDeliveryError) or stage == "end"
    assert server.connections == 1, "a timeout is never followed by a reconnect within the send"
    assert len(server.received) == (1 if stage == "end" else 0)
    if stage == "end":
        assert "handed over" in str(caught.value) and "may have arrived" in str(caught.value)


def test_a_connection_closed_after_the_end_of_data_is_uncertain_too(
    tmp_path: Path, scripted: Any
) -> None:
    server = scripted("end", hang_up=True)
    sleeps = Sleeps()
    with (
        open_store(tmp_path) as store,
        SmtpSender(settings_for(port_of(server)), sleep=sleeps) as sender,
    ):
        owe(store, ["a@example.org"])
        report = run(store, sender, Clock(), sleep=sleeps)
        (row,) = store.deliveries()
    assert (report.uncertain, row.status, row.attempts) == (1, "uncertain", 1)
    assert row.error is not None and "the connection was lost" in row.error
    assert (len(server.received), server.connections, sleeps) == (1, 1, [])


def test_a_server_that_answers_only_after_the_timeout_gets_each_message_once_over_three_runs(
    tmp_path: Path, late_server: tuple[Recorder, SmtpConfig]
) -> None:
    recorder, settings = late_server
    owed = addresses(3)
    recorder.late = dict.fromkeys(owed, LATE_S)
    clock, sleeps = Clock(), Sleeps()
    reports = []
    with open_store(tmp_path) as store:
        owe(store, owed)
        for number in range(3):
            with SmtpSender(settings) as sender:
                reports.append(run(store, sender, clock, claimant=f"run-{number}", sleep=sleeps))
            clock.advance(timedelta(hours=1))
        rows = store.deliveries()
        config = make_config(tmp_path)
        problems = gather(config, store, clock()).problems
    assert recorder.recipients() == Counter(owed), "exactly one copy per recipient"
    assert reports[0] == DeliveryReport(uncertain=3, problems=reports[0].problems)
    assert reports[1:] == [DeliveryReport(), DeliveryReport()], "never re-sent in quarantine"
    assert sleeps == [], "an uncertain send is never retried"
    assert [row.status for row in rows] == ["uncertain"] * 3
    assert all(row.attempts == 1 and row.message_id for row in rows)
    for address in owed:
        (line,) = [p for p in problems if address in p]
        assert "uncertain since 2026-11-20 21:00 UTC" in line
        assert "sent again by the first run after 2026-11-21 21:00 UTC" in line


def test_after_the_quarantine_a_later_run_sends_it_again_once(
    tmp_path: Path, late_server: tuple[Recorder, SmtpConfig]
) -> None:
    recorder, settings = late_server
    recorder.late = {"a@example.org": LATE_S}
    clock = Clock()
    with open_store(tmp_path) as store:
        owe(store, ["a@example.org"])
        with SmtpSender(settings) as sender:
            first = run(store, sender, clock, quarantine=timedelta(hours=6))
        recorder.late = {}  # the server is mended
        clock.advance(timedelta(hours=5, minutes=59))
        with SmtpSender(settings) as sender:
            early = run(store, sender, clock, claimant="run-2", quarantine=timedelta(hours=6))
        clock.advance(timedelta(minutes=2))
        with SmtpSender(settings) as sender:
            later = run(store, sender, clock, claimant="run-3", quarantine=timedelta(hours=6))
        (row,) = store.deliveries()
    assert (first.uncertain, early, later.sent) == (1, DeliveryReport(), 1)
    assert (row.status, row.attempts, row.error) == ("sent", 2, None)
    assert recorder.recipients() == Counter({"a@example.org": 2}), (
        "the quarantine's price: one more copy, a day later, instead of eight per run"
    )


def test_digest_status_exits_1_naming_an_uncertain_digest(
    tmp_path: Path, late_server: tuple[Recorder, SmtpConfig]
) -> None:
    recorder, settings = late_server
    recorder.late = {"a@example.org": LATE_S}
    path = write_config(tmp_path, profiles="", extra="[delivery]\nuncertain_quarantine = 12")
    config = load_config(path)
    with Store.open(config.store_path) as store:
        owe(store, ["a@example.org"])
        with freeze_time(T0 + timedelta(hours=1)):
            quiet = digest(path, "status")
        with SmtpSender(settings) as sender:
            run(store, sender, Clock(), quarantine=config.delivery.uncertain_quarantine)
    with freeze_time(T0 + timedelta(hours=1)):
        shown = digest(path, "status")
    assert quiet.exit_code == 0, quiet.output
    assert shown.exit_code == 1, shown.output
    assert (
        "profile alice: mail:a@example.org: the digest of 2026-11-20: uncertain since "
        "2026-11-20 21:00 UTC"
    ) in shown.output
    assert "sent again by the first run after 2026-11-21 09:00 UTC" in shown.output


# -- a server that hangs, refuses, or answers 4xx ------------------------------------------------


def test_a_hung_server_stops_the_channel_after_three_timeouts_leaving_every_row_pending(
    tmp_path: Path,
) -> None:
    # Listening, never accepting: the kernel completes the handshake, nobody ever says 220.
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(50)
        settings = settings_for(hung.getsockname()[1])
        sleeps = Sleeps()
        with open_store(tmp_path) as store, SmtpSender(settings) as sender:
            owe(store, addresses(20))
            started = time.monotonic()
            report = run(store, sender, Clock(), sleep=sleeps)
            took = time.monotonic() - started
            rows = store.deliveries()
        hung.setblocking(False)
        knocks = 0
        while True:
            try:
                hung.accept()[0].close()
            except BlockingIOError:
                break
            knocks += 1
    assert knocks == 3, "three connection attempts in all, for 20 messages"
    assert sleeps == [1.0, 4.0]
    assert took < 3 * TIMEOUT_S + 2, f"{took:.1f} s: bounded by three timeouts"
    assert (report.left, report.deferred, report.problems) == (20, 0, ())
    assert {(row.status, row.attempts) for row in rows} == {("pending", 0)}
    assert rows[0].error is not None and "cannot connect" in rows[0].error


def test_a_server_that_stalls_after_the_greeting_is_not_sent_anything_twice(
    tmp_path: Path, scripted: Any
) -> None:
    server = scripted("mail")
    with open_store(tmp_path) as store, SmtpSender(settings_for(port_of(server))) as sender:
        owe(store, addresses(5))
        report = run(store, sender, Clock())
        status = statuses(store)
    assert server.connections == 3
    assert report.left == 5
    assert set(status.values()) == {"pending"}


def test_a_refused_connection_opens_the_breaker_once_and_says_so_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(free_port())
    sleeps = Sleeps()
    with open_store(tmp_path) as store, SmtpSender(settings) as sender:
        owe(store, addresses(4))
        report = run(store, sender, Clock(), sleep=sleeps, breaker=2)
        rows = store.deliveries()
    assert sleeps == [1.0]
    assert (report.left, report.deferred, report.failed) == (4, 0, 0)
    assert {(row.status, row.attempts) for row in rows} == {("pending", 0)}
    said = [r.getMessage() for r in caplog.records if "in a row" in r.getMessage()]
    assert len(said) == 1
    assert "failed 2 times in a row" in said[0] and "4 deliveries left pending" in said[0]


def test_a_451_then_250_is_retried_and_arrives_once(
    tmp_path: Path, late_server: tuple[Recorder, SmtpConfig]
) -> None:
    recorder, settings = late_server
    recorder.data_answers["x@example.org"] = ["451 4.3.0 try later", "250 OK"]
    with open_store(tmp_path) as store, SmtpSender(settings) as sender:
        owe(store, ["x@example.org", "y@example.org"])
        report = run(store, sender, Clock())
    assert report == DeliveryReport(sent=2)
    assert recorder.recipients() == Counter(["x@example.org", "y@example.org"])


def test_a_550_fails_and_is_never_sent_again(
    tmp_path: Path, late_server: tuple[Recorder, SmtpConfig]
) -> None:
    recorder, settings = late_server
    recorder.data_answers["x@example.org"] = ["550 5.7.1 refused"]
    clock = Clock()
    with open_store(tmp_path) as store:
        owe(store, ["x@example.org"])
        for number in range(3):
            with SmtpSender(settings) as sender:
                run(store, sender, clock, claimant=f"run-{number}")
            clock.advance(timedelta(days=2))
        (row,) = store.deliveries()
    assert (row.status, row.attempts) == ("failed", 1)
    assert recorder.received == []


def test_the_deadline_counts_from_the_runs_start_over_every_channel(tmp_path: Path) -> None:
    """A run whose ingest and ranking used up its [delivery] deadline sends nothing more: the
    deadline bounds the whole job, not each channel anew."""
    from digest import channels
    from digest.channels.mail import MailChannel, Outbox
    from digest.render import Renderer

    config = replace(make_config(tmp_path), delivery=DeliveryConfig(deadline=timedelta(minutes=40)))
    clock = Clock()
    with open_store(tmp_path) as store, Outbox(tmp_path / "outbox") as outbox:
        owe(store, addresses(3))
        mail = MailChannel(config, store, Renderer(), outbox)
        late = channels.RunContext(
            clock, "run-1", config.delivery, started=clock() - timedelta(minutes=41)
        )
        reports = channels.deliver_all([mail], store, late)
        assert list(statuses(store).values()) == ["pending"] * 3
        in_time = replace(late, started=clock() - timedelta(minutes=39))
        assert channels.deliver_all([mail], store, in_time)["mail"].left == 0
    assert (reports["mail"].sent, reports["mail"].left) == (0, 3)
    assert "deadline" in (reports["mail"].stopped or "")


def test_the_run_deadline_leaves_the_rest_pending(
    tmp_path: Path, late_server: tuple[Recorder, SmtpConfig]
) -> None:
    recorder, settings = late_server
    owed = addresses(4)
    recorder.rcpt_answers[owed[1]] = ["451 4.3.0 try later"]
    clock = Clock()

    class Slow(SmtpSender):
        """Each conversation takes 3 s of the injected clock."""

        def send(self, message: Any, recipient: str) -> None:
            clock.advance(timedelta(seconds=3))
            super().send(message, recipient)

    def sleep(seconds: float) -> None:
        clock.advance(timedelta(seconds=seconds))

    with open_store(tmp_path) as store, Slow(settings) as sender:
        owe(store, owed)
        report = run(store, sender, clock, sleep=sleep, deadline=timedelta(seconds=10))
        status = statuses(store)
    # The first goes at 3 s. The second is refused at 6 s, tried again at 10 s: its next pause
    # would pass the deadline, so it is deferred there and then, and the rest wait.
    assert (report.sent, report.deferred, report.left) == (1, 1, 2)
    assert list(status.values()) == ["sent", "deferred", "pending", "pending"]
    assert recorder.recipients() == Counter([owed[0]])


# -- the claim lease ---------------------------------------------------------------------------


def test_a_row_still_sending_past_its_lease_is_a_problem_then_taken_over(
    tmp_path: Path, late_server: tuple[Recorder, SmtpConfig]
) -> None:
    recorder, settings = late_server
    lease = timedelta(minutes=5)
    config = replace(make_config(tmp_path), delivery=DeliveryConfig(claim_lease=lease))
    clock = Clock()
    with open_store(tmp_path) as store:
        owe(store, ["a@example.org"])
        (row,) = store.deliveries()
        assert store.claim(row, "crashed-run", clock(), stale_before=clock() - lease)
        clock.advance(timedelta(minutes=4))
        within = gather(config, store, clock()).problems
        with SmtpSender(settings) as sender:
            early = run(store, sender, clock, lease=lease)
        clock.advance(timedelta(minutes=2))
        past = gather(config, store, clock()).problems
        with SmtpSender(settings) as sender:
            later = run(store, sender, clock, lease=lease)
        after = gather(config, store, clock()).problems
    assert within == () and after == ()
    assert past == (
        "profile alice: mail:a@example.org: the digest of 2026-11-20: still sending since "
        "2026-11-20 21:00 UTC, past its 5 min claim lease: the run that claimed it stopped; "
        "the next run sends it",
    )
    assert (early, later.sent) == (DeliveryReport(), 1)
    assert recorder.recipients() == Counter(["a@example.org"])


class KilledAfterTheServerAnswered(SmtpSender):
    """The process dies after the server took the message, before the ledger recorded it."""

    def send(self, message: Any, recipient: str) -> None:
        super().send(message, recipient)
        raise Crash


def test_a_run_killed_after_handing_a_message_over_leaves_it_uncertain_not_sent_twice(
    tmp_path: Path, smtp_server: tuple[Recorder, int]
) -> None:
    """The next run past the lease cannot know whether the server got it (the ledger recorded the
    hand-over, after the server's 354): 'uncertain', named and quarantined, not re-sent. A run
    killed before the hand-over (claimed, not yet going) is simply sent again (test_run.py)."""
    recorder, port = smtp_server
    lease = timedelta(minutes=5)
    config = replace(make_config(tmp_path), delivery=DeliveryConfig(claim_lease=lease))
    clock = Clock()
    with open_store(tmp_path) as store:
        owe(store, ["a@example.org", "b@example.org"])
        with pytest.raises(Crash), KilledAfterTheServerAnswered(settings_for(port)) as killed:
            run(store, killed, clock, lease=lease)
        clock.advance(timedelta(minutes=4))
        with SmtpSender(settings_for(port)) as sender:
            early = run(store, sender, clock, lease=lease)  # within the lease: a is not touched
            clock.advance(timedelta(minutes=2))
            report = run(store, sender, clock, lease=lease)
            again = run(store, sender, clock, lease=lease)
        rows = {row.address: row for row in store.deliveries()}
        problems = gather(config, store, clock()).problems
    assert (early.sent, early.uncertain) == (1, 0)
    assert (report.sent, report.uncertain, again) == (0, 1, DeliveryReport())
    assert report.problems[0].address == "a@example.org"
    assert "it may have arrived" in report.problems[0].error
    assert (rows["a@example.org"].status, rows["b@example.org"].status) == ("uncertain", "sent")
    assert rows["a@example.org"].updated == T0  # quarantined from the hand-over
    assert rows["a@example.org"].message_id == build(rows["a@example.org"])["Message-ID"]
    assert recorder.recipients() == Counter(["a@example.org", "b@example.org"])
    assert len(problems) == 1 and "uncertain since 2026-11-20 21:00 UTC" in problems[0]


def test_the_outbox_sends_a_killed_runs_hand_over_again_its_copy_is_the_same_file(
    tmp_path: Path,
) -> None:
    from digest.channels.mail import Outbox

    lease = timedelta(minutes=5)
    clock = Clock()
    with open_store(tmp_path) as store:
        owe(store, ["a@example.org"])
        (row,) = store.deliveries()
        assert store.claim(row, "killed-run", clock(), stale_before=clock() - lease)
        message = build(row)
        store.handing_over(row, "killed-run", clock(), str(message["Message-ID"]))
        Outbox(tmp_path / "outbox").send(message, "a@example.org")  # then the kill
        clock.advance(timedelta(minutes=6))
        report = run(store, Outbox(tmp_path / "outbox"), clock, lease=lease)
        status = statuses(store)
    assert (report.sent, report.uncertain) == (1, 0)
    assert status == {"a@example.org": "sent"}
    assert len(list((tmp_path / "outbox" / "new").iterdir())) == 1


def test_the_config_keys_and_their_defaults(tmp_path: Path) -> None:
    default = load_config(write_config(tmp_path, profiles="", smtp_port=2525))
    assert default.delivery.claim_lease == timedelta(minutes=15)
    assert default.delivery.uncertain_quarantine == timedelta(hours=24)
    assert default.delivery.deadline == timedelta(minutes=40)
    assert default.smtp is not None and default.smtp.breaker == 3
    path = write_config(
        tmp_path,
        profiles="",
        extra="[delivery]\nclaim_lease = 5\nuncertain_quarantine = 0.5\ndeadline = 10",
        smtp_port=2525,
    )
    path.write_text(path.read_text() + "breaker = 5\n")
    chosen = load_config(path)
    assert chosen.delivery.claim_lease == timedelta(minutes=5)
    assert chosen.delivery.uncertain_quarantine == timedelta(minutes=30)
    assert chosen.delivery.deadline == timedelta(minutes=10)
    assert chosen.smtp is not None and chosen.smtp.breaker == 5


def test_a_store_at_schema_8_keeps_its_ledger_and_takes_uncertain(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    db = sqlite3.connect(path)
    for migration in MIGRATIONS[:8]:
        db.executescript(migration)
    db.execute(
        "INSERT INTO digests VALUES ('alice', '2026-11-20', 'UTC', 'a', 'b', 0, '[]')"
    )
    db.execute(
        "INSERT INTO deliveries VALUES ('alice', 'mail:a@example.org', '2026-11-20', 'sent', 1,"
        " '2026-11-20T21:00:00+00:00', NULL, NULL, '<m@x>')"
    )
    db.execute(
        "INSERT INTO deliveries VALUES ('alice', 'mail:b@example.org', '2026-11-20', 'pending', 0,"
        " '2026-11-20T21:00:00+00:00', NULL, NULL, NULL)"
    )
    db.execute("PRAGMA user_version = 8")
    db.commit()
    db.close()
    with Store.open(path) as store:
        before = [(row.address, row.status, row.message_id) for row in store.deliveries()]
        pending = store.deliveries(statuses=("pending",))[0]
        assert store.claim(pending, "run-1", T0, stale_before=T0)
        store.settle(pending, "run-1", "uncertain", T0, error="no answer")
        after = statuses(store)
    assert before == [("a@example.org", "sent", "<m@x>"), ("b@example.org", "pending", None)]
    assert after == {"a@example.org": "sent", "b@example.org": "uncertain"}
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_a_person_settles_uncertain_mails_with_digest_uncertain(
    tmp_path: Path, late_server: tuple[Recorder, SmtpConfig]
) -> None:
    """After checking with the recipients: --resend sends at the next run without waiting for the
    quarantine; --arrived marks the rest sent, never to be sent again."""
    recorder, settings = late_server
    recorder.late = {"a@example.org": LATE_S, "b@example.org": LATE_S}
    path = write_config(tmp_path, profiles="")
    config = load_config(path)
    clock = Clock()
    with Store.open(config.store_path) as store:
        owe(store, ["a@example.org"], profile="alice")
        owe(store, ["b@example.org"], profile="bob")
        with SmtpSender(settings) as sender:
            assert run(store, sender, clock).uncertain == 2
    listed = digest(path, "uncertain")
    assert "alice  mail:a@example.org  digest of 2026-11-20  uncertain since" in listed.output
    assert "bob  mail:b@example.org" in listed.output and "--arrived, or --resend" in listed.output
    assert "1 to be sent again" in digest(path, "uncertain", "alice", "--resend").output
    assert "1 marked sent" in digest(path, "uncertain", "--arrived").output
    assert digest(path, "uncertain").output.strip() == "no uncertain deliveries"
    recorder.late = {}
    with Store.open(config.store_path) as store, SmtpSender(settings) as sender:
        again = run(store, sender, clock, claimant="run-2")  # within the quarantine
        statuses = {row.channel: row.status for row in store.deliveries()}
    assert again.sent == 1 and statuses == {"mail:a@example.org": "sent", "mail:b@example.org": "sent"}
    assert recorder.recipients() == Counter({"a@example.org": 2, "b@example.org": 1})


def test_a_row_killed_during_its_hand_over_is_said_to_become_uncertain(tmp_path: Path) -> None:
    lease = timedelta(minutes=5)
    config = replace(make_config(tmp_path), delivery=DeliveryConfig(claim_lease=lease))
    clock = Clock()
    with open_store(tmp_path) as store:
        owe(store, ["a@example.org"])
        (row,) = store.deliveries()
        assert store.claim(row, "killed-run", clock(), stale_before=clock() - lease)
        store.handing_over(row, "killed-run", clock(), "<m1@example.org>")
        clock.advance(timedelta(minutes=6))
        past = gather(config, store, clock()).problems
    assert past == (
        "profile alice: mail:a@example.org: the digest of 2026-11-20: still sending since "
        "2026-11-20 21:00 UTC, past its 5 min claim lease: the run that claimed it stopped; "
        "the next run marks it uncertain: it was being handed over",
    )
