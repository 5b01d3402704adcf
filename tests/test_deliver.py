"""Delivery against a real SMTP server (aiosmtpd on 127.0.0.1) and a real Maildir; no network.

The server's handler (helpers.Recorder) records every accepted message and can answer scripted
codes per recipient, so retries, bounces, dropped connections and logins are the real smtplib
conversation.
"""

from __future__ import annotations

import logging
import mailbox
import os
import threading
import traceback
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from helpers import T0, Crash, Recorder, free_port, start_server
from ledger import (
    DAY,
    Clock,
    Sleeps,
    addresses,
    build,
    message_id,
    open_store,
    owe,
    prepared,
    run,
    statuses,
)

from digest.channels.mail import RECONNECT_PAUSE_S, Outbox, SmtpSender, deliver_mail
from digest.config import SmtpConfig
from digest.deliver import DeliveryReport
from digest.errors import (
    DeliveryError,
    PermanentDeliveryError,
    StoreError,
    TransientDeliveryError,
)
from digest.models import Delivery, Digest

PASSWORD = "correct horse battery staple"
WRONG_PASSWORD = "Tr0ub4dor&3-wrong"
USER = "digest"


# -- a real SMTP server -----------------------------------------------------------------------


def authenticator(
    server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == USER.encode()
        and auth_data.password == PASSWORD.encode()
    )
    # handled=False: let aiosmtpd answer "535 5.7.8 Authentication credentials invalid".
    return AuthResult(success=ok, handled=False, auth_data=auth_data)


class Pipelining(Recorder):
    """A server that offers PIPELINING (RFC 2920), as postfix does: the client then sends MAIL
    FROM, RCPT TO and DATA in one write (aiosmtpd reads them in turn; it does not offer it)."""

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", responses[-1]]


@pytest.fixture(params=["one command at a time", "pipelining"])
def smtp(request: pytest.FixtureRequest) -> Iterator[tuple[Recorder, SmtpConfig]]:
    """aiosmtpd on 127.0.0.1, every test run against it twice: offering PIPELINING and not."""
    recorder = Pipelining() if request.param == "pipelining" else Recorder()
    controller = Controller(recorder, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield recorder, SmtpConfig(host="127.0.0.1", port=controller.port, security="none", timeout_s=5)
    controller.stop()


@pytest.fixture
def smtp_auth() -> Iterator[tuple[Recorder, SmtpConfig]]:
    controller, recorder = start_server(authenticator=authenticator, auth_require_tls=False)
    yield recorder, SmtpConfig(host="127.0.0.1", port=controller.port, security="none", timeout_s=5)
    controller.stop()


# -- SMTP: one connection, retries, bounces -----------------------------------------------------


def test_one_connection_carries_every_message(
    tmp_path: Path, smtp: tuple[Recorder, SmtpConfig]
) -> None:
    recorder, settings = smtp
    owed = addresses(25)
    with open_store(tmp_path) as store, SmtpSender(settings) as sender:
        owe(store, owed)
        report = run(store, sender, Clock())
        rows = store.deliveries()
    assert report == DeliveryReport(sent=25)
    assert recorder.recipients() == Counter(owed)
    assert len(recorder.peers) == 1, "one connection reused for all messages"
    assert sender.connections == 1
    assert {row.status for row in rows} == {"sent"}
    assert all(row.message_id == message_id(row) for row in rows)


def test_the_envelope_sender_is_the_bare_from_address(smtp: tuple[Recorder, SmtpConfig]) -> None:
    recorder, settings = smtp
    row = Delivery("alice", "mail:a@example.org", DAY, "sending")
    with SmtpSender(settings) as sender:
        sender.send(build(row), "a@example.org")
    ((address, content),) = recorder.received
    assert address == "a@example.org"
    assert recorder.senders == ["digest@example.org"]
    assert b"Subject: Your papers for 2026-11-20" in content


def test_a_message_already_written_out_is_sent_as_it_is(
    tmp_path: Path, smtp: tuple[Recorder, SmtpConfig]
) -> None:
    recorder, settings = smtp
    with open_store(tmp_path) as store, SmtpSender(settings) as sender:
        owe(store, ["a@example.org", "b@example.org"])
        report = run(store, sender, Clock(), make=prepared)
        rows = store.deliveries()
    assert report == DeliveryReport(sent=2)
    assert recorder.senders == ["digest@example.org", "digest@example.org"]
    assert [content for _, content in recorder.received] == [prepared(row).data for row in rows], (
        "byte for byte (a leading dot survives the SMTP dot-stuffing)"
    )
    assert [row.message_id for row in rows] == [message_id(row) for row in rows]


def test_a_dropped_connection_is_opened_again_once(
    tmp_path: Path, smtp: tuple[Recorder, SmtpConfig]
) -> None:
    recorder, settings = smtp
    recorder.drop_after.add("reader000@example.org")
    pauses, retries = Sleeps(), Sleeps()
    with open_store(tmp_path) as store, SmtpSender(settings, sleep=pauses) as sender:
        owe(store, addresses(3))
        report = run(store, sender, Clock(), sleep=retries)
    assert report == DeliveryReport(sent=3)
    assert recorder.recipients() == Counter(addresses(3))
    assert sender.connections == 2
    assert len(recorder.peers) == 2
    assert pauses == [RECONNECT_PAUSE_S], "the sender reconnected by itself"
    assert retries == [], "so the message needed no retry"


@pytest.mark.parametrize("stage", ["rcpt", "data"])
def test_a_451_is_retried_and_delivered_once(
    tmp_path: Path, smtp: tuple[Recorder, SmtpConfig], stage: str
) -> None:
    recorder, settings = smtp
    script = recorder.rcpt_answers if stage == "rcpt" else recorder.data_answers
    script["x@example.org"] = ["451 4.3.0 try later", "250 OK"]
    sleeps = Sleeps()
    with open_store(tmp_path) as store, SmtpSender(settings) as sender:
        owe(store, ["a@example.org", "x@example.org", "z@example.org"])
        report = run(store, sender, Clock(), sleep=sleeps)
        (row,) = [r for r in store.deliveries() if r.address == "x@example.org"]
    assert report == DeliveryReport(sent=3)
    assert sleeps == [1.0], "one retry, after the first delay"
    assert recorder.recipients() == Counter(["a@example.org", "x@example.org", "z@example.org"])
    assert (row.status, row.attempts, row.error) == ("sent", 1, None)


def test_a_transient_error_defers_then_fails_after_max_attempts(
    tmp_path: Path, smtp: tuple[Recorder, SmtpConfig]
) -> None:
    recorder, settings = smtp
    recorder.rcpt_answers["slow@example.org"] = ["451 4.3.0 try later"]
    clock, sleeps = Clock(), Sleeps()
    with open_store(tmp_path) as store, SmtpSender(settings) as sender:
        owe(store, ["slow@example.org"])
        first = run(store, sender, clock, sleep=sleeps, retry_delays=(1.0, 4.0), max_attempts=2)
        (after_first,) = store.deliveries()
        clock.advance(timedelta(hours=1))
        second = run(store, sender, clock, sleep=sleeps, retry_delays=(1.0, 4.0), max_attempts=2)
        (after_second,) = store.deliveries()
    assert sleeps == [1.0, 4.0, 1.0, 4.0]
    assert recorder.rcpt_tries["slow@example.org"] == 6
    assert (first.deferred, after_first.status) == (1, "deferred")
    assert after_first.error is not None and "451 4.3.0 try later" in after_first.error
    assert (second.failed, after_second.status) == (1, "failed")
    assert after_second.error is not None and after_second.error.startswith("gave up after 2 tries")
    assert recorder.received == []


def test_a_bounce_fails_once_is_never_retried_and_blocks_nobody(
    tmp_path: Path, smtp: tuple[Recorder, SmtpConfig]
) -> None:
    recorder, settings = smtp
    recorder.rcpt_answers["bad@example.org"] = ["550 5.1.1 no such user"]
    clock, sleeps = Clock(), Sleeps()
    with open_store(tmp_path) as store, SmtpSender(settings) as sender:
        owe(store, ["a@example.org", "bad@example.org", "c@example.org"])
        report = run(store, sender, clock, sleep=sleeps)
        clock.advance(timedelta(days=1))
        rerun = run(store, sender, clock, claimant="run-2", sleep=sleeps)
        (bounced,) = [r for r in store.deliveries() if r.address == "bad@example.org"]
    assert (report.sent, report.failed) == (2, 1)
    assert report.problems[0].profile == "alice"
    assert report.problems[0].address == "bad@example.org"
    assert "550 5.1.1 no such user" in report.problems[0].error
    assert bounced.status == "failed"
    assert bounced.error is not None and "550 5.1.1 no such user" in bounced.error
    assert "\n" not in bounced.error
    assert sleeps == [], "a bounce is not retried within the run"
    assert rerun == DeliveryReport()
    assert recorder.rcpt_tries["bad@example.org"] == 1, "nor in a later run"
    assert recorder.recipients() == Counter(["a@example.org", "c@example.org"])


def test_smtp_answers_map_to_transient_and_permanent_errors(
    smtp: tuple[Recorder, SmtpConfig],
) -> None:
    recorder, settings = smtp
    recorder.rcpt_answers["full@example.org"] = ["452 4.2.2 mailbox full"]
    recorder.data_answers["spam@example.org"] = ["554 5.7.1 looks like spam"]
    row = Delivery("alice", "mail:x@example.org", DAY, "sending")
    with SmtpSender(settings) as sender:
        with pytest.raises(TransientDeliveryError, match="452 4.2.2 mailbox full"):
            sender.send(build(row), "full@example.org")
        with pytest.raises(PermanentDeliveryError, match="DATA refused: 554 5.7.1 looks like spam"):
            sender.send(build(row), "spam@example.org")
        sender.send(build(row), "fine@example.org")  # the connection is still good
    assert recorder.recipients() == Counter(["fine@example.org"])
    assert len(recorder.peers) == 1


# -- crashes and overlapping runs ---------------------------------------------------------------


def test_a_crash_between_messages_then_reruns_send_each_digest_once(
    tmp_path: Path, smtp: tuple[Recorder, SmtpConfig]
) -> None:
    recorder, settings = smtp
    owed = addresses(6)
    clock = Clock()
    built: list[str] = []

    def build_then_die(row: Delivery) -> EmailMessage:
        if len(built) == 2:
            raise Crash  # the third message: the process dies with the row claimed
        built.append(row.channel)
        return build(row)

    with open_store(tmp_path) as store:
        owe(store, owed)
        with SmtpSender(settings) as sender, pytest.raises(Crash):
            run(store, sender, clock, make=build_then_die, claimant="run-1")
        assert recorder.recipients() == Counter(owed[:2])
        assert statuses(store)[owed[2]] == "sending"

        # A minute later: the abandoned row is still within its lease; the rest go out.
        clock.advance(timedelta(minutes=1))
        with SmtpSender(settings) as sender:
            soon = run(store, sender, clock, claimant="run-2")
        assert soon == DeliveryReport(sent=3)
        assert statuses(store)[owed[2]] == "sending"

        # After the lease, the abandoned row is taken over and sent.
        clock.advance(timedelta(minutes=15))
        with SmtpSender(settings) as sender:
            later = run(store, sender, clock, claimant="run-3")
        assert later == DeliveryReport(sent=1)
        assert set(statuses(store).values()) == {"sent"}
    assert recorder.recipients() == Counter(owed), "every digest exactly once"


def test_two_overlapping_runs_never_send_the_same_digest_twice(
    tmp_path: Path, smtp: tuple[Recorder, SmtpConfig], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Claims of 5 rows at a time: the two runs take turns, each holding a batch the other skips.
    monkeypatch.setattr("digest.deliver.CLAIM_BATCH", 5)
    recorder, settings = smtp
    owed = addresses(60)
    with open_store(tmp_path) as store:
        owe(store, owed)
    both_started = threading.Barrier(2, timeout=10)
    reports: dict[str, DeliveryReport] = {}
    failures: list[BaseException] = []

    def one_run(claimant: str) -> None:
        first = True

        def build_in_step(row: Delivery) -> EmailMessage:
            nonlocal first
            if first:  # both runs hold a claim before either sends: they truly overlap
                first = False
                both_started.wait()
            return build(row)

        try:
            with open_store(tmp_path) as store, SmtpSender(settings) as sender:
                reports[claimant] = run(
                    store, sender, Clock(), claimant=claimant, make=build_in_step
                )
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=one_run, args=(name,)) for name in ("run-a", "run-b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == []
    assert recorder.recipients() == Counter(owed), "no duplicates, none missing"
    assert reports["run-a"].sent + reports["run-b"].sent == 60
    assert reports["run-a"].sent > 0 and reports["run-b"].sent > 0
    with open_store(tmp_path) as store:
        assert set(statuses(store).values()) == {"sent"}


# -- what build says ----------------------------------------------------------------------------


def test_nothing_to_send_is_skipped_and_a_broken_digest_blocks_nobody(
    tmp_path: Path, smtp: tuple[Recorder, SmtpConfig]
) -> None:
    recorder, settings = smtp

    def make(row: Delivery) -> EmailMessage | None:
        if row.address == "empty@example.org":
            return None
        if row.address == "broken@example.org":
            raise KeyError("a template bug")
        return build(row)

    with open_store(tmp_path) as store, SmtpSender(settings) as sender:
        owe(store, ["broken@example.org", "empty@example.org", "ok@example.org"])
        report = run(store, sender, Clock(), make=make)
        status = statuses(store)
    assert (report.sent, report.skipped, report.deferred) == (1, 1, 1)
    assert status == {
        "broken@example.org": "deferred",
        "empty@example.org": "skipped",
        "ok@example.org": "sent",
    }
    assert "could not build the message: KeyError" in report.problems[0].error
    assert recorder.recipients() == Counter(["ok@example.org"])


def test_a_store_gone_while_building_ends_the_run_instead_of_failing_each_message(
    tmp_path: Path, smtp: tuple[Recorder, SmtpConfig]
) -> None:
    """A StoreError (a PostgreSQL server restarted under the run) is no broken digest: it ends
    the channel's run with the store's one line, not a traceback a row and every row deferred
    against a store that is gone (tests/test_workers.py restarts a real one)."""
    recorder, settings = smtp
    tried: list[str] = []

    def make(row: Delivery) -> EmailMessage | None:
        tried.append(row.address or "")
        if row.address == "second@example.org":
            raise StoreError("postgresql://digest@db/digest: lost the connection to the store")
        return build(row)

    with open_store(tmp_path) as store, SmtpSender(settings) as sender:
        owe(store, ["first@example.org", "second@example.org", "third@example.org"])
        with pytest.raises(StoreError, match="lost the connection"):
            run(store, sender, Clock(), make=make)
    assert tried == ["first@example.org", "second@example.org"]  # the third never tried
    assert recorder.recipients() == Counter(["first@example.org"])


def test_feed_rows_are_left_alone(tmp_path: Path, smtp: tuple[Recorder, SmtpConfig]) -> None:
    _, settings = smtp
    with open_store(tmp_path) as store, SmtpSender(settings) as sender:
        store.save_digest(
            Digest("bob", DAY, "UTC", T0 - timedelta(days=1), T0, 0, (), ()),
            channels=["feed", "mail:b@example.org"],
            now=T0,
        )
        run(store, sender, Clock())
        assert {row.channel: row.status for row in store.deliveries()} == {
            "feed": "pending",
            "mail:b@example.org": "sent",
        }


def test_one_info_line_per_delivery_with_profile_address_and_status(
    tmp_path: Path, smtp: tuple[Recorder, SmtpConfig], caplog: pytest.LogCaptureFixture
) -> None:
    recorder, settings = smtp
    recorder.rcpt_answers["bad@example.org"] = ["550 5.1.1 no such user"]
    caplog.set_level(logging.INFO, logger="digest.deliver")
    with open_store(tmp_path) as store, SmtpSender(settings) as sender:
        owe(store, ["a@example.org", "bad@example.org"])
        run(store, sender, Clock())
    lines = [r.getMessage() for r in caplog.records if r.name == "digest.deliver"]
    assert lines[0] == "mail alice 2026-11-20 to a@example.org: sent"
    assert lines[1].startswith("mail alice 2026-11-20 to bad@example.org: failed (")
    assert len(lines) == 2


# -- an unreachable server, a wrong setup -----------------------------------------------------


def test_an_unreachable_server_opens_the_breaker_and_leaves_every_row_pending(
    tmp_path: Path,
) -> None:
    settings = SmtpConfig(host="127.0.0.1", port=free_port(), security="none", timeout_s=5)
    sleeps = Sleeps()
    with open_store(tmp_path) as store, SmtpSender(settings) as sender:
        owe(store, addresses(4))
        report = run(store, sender, Clock(), sleep=sleeps, max_attempts=1)
        rows = store.deliveries()
    assert sleeps == [1.0, 4.0], "three refusals in a row open the breaker"
    assert (report.deferred, report.failed, report.left, report.problems) == (0, 0, 4, ())
    assert [(row.status, row.attempts) for row in rows] == [("pending", 0)] * 4, (
        "never 'deferred' or 'failed' for the server's fault, nor a try counted"
    )
    assert rows[0].error is not None and "cannot connect" in rows[0].error


def test_starttls_on_a_server_without_it_is_a_setup_error(
    smtp: tuple[Recorder, SmtpConfig],
) -> None:
    _, settings = smtp
    plain = SmtpConfig(host=settings.host, port=settings.port, security="starttls", timeout_s=5)
    row = Delivery("alice", "mail:a@example.org", DAY, "sending")
    with SmtpSender(plain) as sender, pytest.raises(DeliveryError, match="STARTTLS") as caught:
        sender.send(build(row), "a@example.org")
    assert not isinstance(caught.value, TransientDeliveryError | PermanentDeliveryError)


# -- logging in; the password never shows -------------------------------------------------------


def with_password_env(settings: SmtpConfig) -> SmtpConfig:
    return SmtpConfig(
        host=settings.host,
        port=settings.port,
        security="none",
        username=USER,
        password_env="PAPERDIGEST_SMTP_PASSWORD",
        timeout_s=5,
    )


def exception_chain(exc: BaseException | None) -> Iterator[BaseException]:
    while exc is not None:
        yield exc
        exc = exc.__cause__ or exc.__context__


def test_login_with_a_password_from_the_environment(
    smtp_auth: tuple[Recorder, SmtpConfig],
) -> None:
    recorder, settings = smtp_auth
    row = Delivery("alice", "mail:a@example.org", DAY, "sending")
    environ = {"PAPERDIGEST_SMTP_PASSWORD": PASSWORD}
    with SmtpSender(with_password_env(settings), environ=environ) as sender:
        sender.send(build(row), "a@example.org")
        sender.send(build(row), "b@example.org")
    assert recorder.logins == [USER.encode(), USER.encode()]
    assert len(recorder.peers) == 1


def test_login_with_a_password_from_a_file(
    tmp_path: Path, smtp_auth: tuple[Recorder, SmtpConfig]
) -> None:
    recorder, settings = smtp_auth
    secret = tmp_path / "smtp-password"
    secret.write_text(PASSWORD + "\n", encoding="utf-8")  # as `echo ... > file` leaves it
    with_file = SmtpConfig(
        host=settings.host,
        port=settings.port,
        security="none",
        username=USER,
        password_file=secret,
        timeout_s=5,
    )
    row = Delivery("alice", "mail:a@example.org", DAY, "sending")
    with SmtpSender(with_file, environ={}) as sender:
        sender.send(build(row), "a@example.org")
    assert recorder.logins == [USER.encode()]


def shown(error: BaseException) -> str:
    """Everything a person could see of an error: its traceback, and every exception chained."""
    text = "".join(traceback.format_exception(error))
    return text + "".join(f"{exc!r} {exc} {exc.args!r}" for exc in exception_chain(error))


def test_a_wrong_password_is_a_setup_error_that_never_shows_the_password(
    smtp_auth: tuple[Recorder, SmtpConfig], caplog: pytest.LogCaptureFixture
) -> None:
    recorder, settings = smtp_auth
    caplog.set_level(logging.DEBUG)
    row = Delivery("alice", "mail:a@example.org", DAY, "sending")
    environ = {"PAPERDIGEST_SMTP_PASSWORD": WRONG_PASSWORD}
    with (
        SmtpSender(with_password_env(settings), environ=environ) as sender,
        pytest.raises(DeliveryError) as caught,
    ):
        sender.send(build(row), "a@example.org")
    error = caught.value
    assert str(error) == (
        f"127.0.0.1:{settings.port}: login refused for user {USER} "
        "(535 5.7.8 Authentication credentials invalid)"
    )
    assert not isinstance(error, TransientDeliveryError | PermanentDeliveryError)
    assert WRONG_PASSWORD not in shown(error)
    assert WRONG_PASSWORD not in caplog.text
    assert recorder.received == []


def test_a_password_smtplib_cannot_send_is_not_shown_either(
    smtp_auth: tuple[Recorder, SmtpConfig],
) -> None:
    # smtplib encodes the whole "\0user\0password" as ASCII: its UnicodeEncodeError holds the password.
    _, settings = smtp_auth
    password = "pässwörd-wrong"
    row = Delivery("alice", "mail:a@example.org", DAY, "sending")
    environ = {"PAPERDIGEST_SMTP_PASSWORD": password}
    with (
        SmtpSender(with_password_env(settings), environ=environ) as sender,
        pytest.raises(DeliveryError, match="only ASCII passwords") as caught,
    ):
        sender.send(build(row), "a@example.org")
    assert password not in shown(caught.value)


def test_a_refused_login_stops_the_run_and_keeps_the_rest_pending(
    tmp_path: Path, smtp_auth: tuple[Recorder, SmtpConfig]
) -> None:
    recorder, settings = smtp_auth
    environ = {"PAPERDIGEST_SMTP_PASSWORD": WRONG_PASSWORD}
    with (
        open_store(tmp_path) as store,
        SmtpSender(with_password_env(settings), environ=environ) as sender,
    ):
        owe(store, addresses(3))
        with pytest.raises(DeliveryError, match="login refused"):
            run(store, sender, Clock())
        rows = store.deliveries()
    assert [row.status for row in rows] == ["deferred", "pending", "pending"]
    assert rows[0].error is not None and "login refused for user digest" in rows[0].error
    assert all(WRONG_PASSWORD not in (row.error or "") for row in rows)
    assert recorder.received == []


def test_a_missing_password_names_the_variable_or_the_file(tmp_path: Path) -> None:
    # Nothing listens on this port: the password is looked for before any connection is tried.
    port = free_port()
    from_env = SmtpConfig(
        host="127.0.0.1", port=port, security="none", username=USER, password_env="NO_SUCH_VAR"
    )
    missing = tmp_path / "no-such-secret"
    from_file = SmtpConfig(
        host="127.0.0.1", port=port, security="none", username=USER, password_file=missing
    )
    row = Delivery("alice", "mail:a@example.org", DAY, "sending")
    with SmtpSender(from_env, environ={}) as sender, pytest.raises(DeliveryError) as by_env:
        sender.send(build(row), "a@example.org")
    with SmtpSender(from_file, environ={}) as sender, pytest.raises(DeliveryError) as by_file:
        sender.send(build(row), "a@example.org")
    assert "NO_SUCH_VAR" in str(by_env.value)
    assert str(missing) in str(by_file.value)
    for caught in (by_env.value, by_file.value):
        assert not isinstance(caught, TransientDeliveryError), "a setup error, not a network one"


# -- the Maildir outbox -------------------------------------------------------------------------


def test_the_outbox_writes_a_message_once_and_mail_clients_read_it(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox")
    row = Delivery("alice", "mail:a@example.org", DAY, "sending")
    message = build(row)
    outbox.send(message, "a@example.org")
    outbox.send(message, "a@example.org")  # a re-run after a crash before the ledger said 'sent'
    files = list((tmp_path / "outbox" / "new").iterdir())
    assert len(files) == 1
    assert files[0].name.endswith(".paperdigest")
    assert list((tmp_path / "outbox" / "tmp").iterdir()) == []
    raw = files[0].read_bytes()
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b""), "CRLF line ends"
    (read,) = mailbox.Maildir(tmp_path / "outbox", create=False).values()
    assert read["Subject"] == "Your papers for 2026-11-20"
    assert read["To"] == "a@example.org"
    assert read["Message-ID"] == message_id(row)


def test_the_outbox_keeps_one_file_per_recipient_and_respects_read_mail(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox")
    row = Delivery("alice", "mail:a@example.org", DAY, "sending")
    message = build(row)
    outbox.send(message, "a@example.org")
    outbox.send(message, "b@example.org")  # same Message-ID, another recipient: its own file
    assert len(list((tmp_path / "outbox" / "new").iterdir())) == 2
    # A mail client reads the first: it moves to cur/ with flags. Sending again adds nothing.
    box = mailbox.Maildir(tmp_path / "outbox", create=False)
    for key in list(box.keys()):  # iterating a mailbox gives messages, not keys
        read = box.get_message(key)
        read.set_subdir("cur")
        read.add_flag("S")
        box[key] = read
    outbox.send(message, "a@example.org")
    assert list((tmp_path / "outbox" / "new").iterdir()) == []
    assert len(list((tmp_path / "outbox" / "cur").iterdir())) == 2


def test_the_outbox_writes_a_message_already_written_out_byte_for_byte(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox")
    mail = prepared(Delivery("alice", "mail:a@example.org", DAY, "sending"))
    outbox.send(mail, "a@example.org")
    outbox.send(mail, "a@example.org")
    (written,) = (tmp_path / "outbox" / "new").iterdir()
    assert written.read_bytes() == mail.data
    assert written.name == Outbox.file_name(mail, "a@example.org")


def test_an_unwritable_outbox_names_its_path(tmp_path: Path) -> None:
    (tmp_path / "not-a-dir").write_text("x")
    outbox = Outbox(tmp_path / "not-a-dir" / "outbox")
    row = Delivery("alice", "mail:a@example.org", DAY, "sending")
    with pytest.raises(DeliveryError, match="not-a-dir/outbox: cannot write to the outbox"):
        outbox.send(build(row), "a@example.org")


def test_an_unwritable_outbox_stops_the_run(tmp_path: Path) -> None:
    (tmp_path / "not-a-dir").write_text("x")
    with open_store(tmp_path) as store:
        owe(store, addresses(3))
        with pytest.raises(DeliveryError, match="cannot write to the outbox"):
            run(store, Outbox(tmp_path / "not-a-dir" / "outbox"), Clock())
        assert list(statuses(store).values()) == ["deferred", "pending", "pending"]


def test_a_crash_after_writing_to_the_outbox_leaves_one_file(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox")
    owed = addresses(3)

    class DiesAfterWriting:
        """The outbox, but the process dies right after the file is written, before the ledger."""

        def send(self, message: EmailMessage, recipient: str) -> None:
            outbox.send(message, recipient)
            if recipient == owed[1]:
                raise Crash

        def close(self) -> None:
            outbox.close()

    clock = Clock()
    with open_store(tmp_path) as store:
        owe(store, owed)
        with pytest.raises(Crash):
            run(store, DiesAfterWriting(), clock)
        clock.advance(timedelta(minutes=20))  # past the lease: the row is taken over
        report = run(store, outbox, clock, claimant="run-2")
        assert set(statuses(store).values()) == {"sent"}
    assert report == DeliveryReport(sent=2)
    box = mailbox.Maildir(tmp_path / "outbox", create=False)
    assert sorted(str(message["To"]) for message in box) == owed, "each digest exactly once"


def test_a_kill_before_a_batchs_outcomes_are_written_loses_nothing_and_doubles_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 16: the outbox's outcomes are written once per batch. A run killed after sending a
    batch and before writing its outcomes leaves the rows 'sending'; the next run, after the
    lease, sends them again, and the outbox, naming files by Message-ID, keeps one copy each."""
    owed = addresses(3)
    clock = Clock()
    with open_store(tmp_path) as store:
        owe(store, owed)

        def killed(*args: object, **kwargs: object) -> None:
            raise Crash

        with monkeypatch.context() as patch:
            patch.setattr(store, "settle_many", killed)
            with pytest.raises(Crash):
                run(store, Outbox(tmp_path / "outbox"), clock)
        assert set(statuses(store).values()) == {"sending"}
        clock.advance(timedelta(minutes=20))  # past the lease: the rows are taken over
        report = run(store, Outbox(tmp_path / "outbox"), clock, claimant="run-2")
        assert set(statuses(store).values()) == {"sent"}
    assert report == DeliveryReport(sent=3)
    box = mailbox.Maildir(tmp_path / "outbox", create=False)
    assert sorted(str(message["To"]) for message in box) == owed, "each digest exactly once"


def test_a_stop_request_ends_the_run_between_two_messages(
    tmp_path: Path, smtp: tuple[Recorder, SmtpConfig]
) -> None:
    recorder, settings = smtp
    owed = addresses(4)
    sent_so_far = recorder.recipients

    with open_store(tmp_path) as store:
        owe(store, owed)
        with SmtpSender(settings) as sender:
            report = deliver_mail(
                store, sender, build, Clock(), claimant="run-1", sleep=lambda s: None,
                stopping=lambda: sum(sent_so_far().values()) >= 2,  # SIGTERM after two
            )
        assert (report.sent, report.left) == (2, 2)
        assert sorted(statuses(store).values()) == ["pending", "pending", "sent", "sent"]


def test_each_mail_is_reported_as_it_goes_out(tmp_path: Path) -> None:
    seen: list[tuple[str, int, int, str]] = []
    with open_store(tmp_path) as store:
        owe(store, addresses(3))
        report = run(store, Outbox(tmp_path / "outbox"), Clock(), progress=lambda *s: seen.append(s))
    assert report == DeliveryReport(sent=3)
    assert [(phase, done, total) for phase, done, total, _ in seen] == [
        ("mail", 0, 3), ("mail", 1, 3), ("mail", 2, 3), ("mail", 3, 3)
    ]
    assert seen[-1][3] == "3 sent"


def test_a_channel_stopped_by_a_setup_problem_keeps_its_counts(tmp_path: Path) -> None:
    """deliver_all records why a channel stopped, and what it did and left until then."""
    from digest import channels
    from digest.channels.mail import SenderRows
    from digest.config import DeliveryConfig
    from digest.deliver import deliver_rows

    class Rows:  # the mail rows of an outbox that cannot be written, as a channel
        name = "mail"

        def __init__(self, outbox: Outbox) -> None:
            self.rows = SenderRows(outbox, build)

        def targets(self, profile: object) -> list[str]:
            return []

        def deliver(self, run: channels.RunContext) -> DeliveryReport:
            return deliver_rows(store, self.rows, run.clock, claimant=run.claimant)

    (tmp_path / "not-a-dir").write_text("x")
    with open_store(tmp_path) as store:
        owe(store, addresses(3))
        clock = Clock()
        reports = channels.deliver_all(
            [Rows(Outbox(tmp_path / "not-a-dir" / "outbox"))], store,
            channels.RunContext(clock, "run-1", DeliveryConfig()),
        )
        problems = store.problems()
    report = reports["mail"]
    assert (report.deferred, report.left) == (1, 2)
    assert report.stopped is not None and "cannot write to the outbox" in report.stopped
    assert report.needs_attention
    assert "cannot write to the outbox" in problems["mail"][0]


def test_the_outbox_syncs_its_folder_once_a_batch_before_the_ledger_records_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 16: one flush of the messages' data and one fsync of new/ for a batch of messages,
    not one each, and always before the batch's outcomes are written: a message the ledger says
    is sent is on disk."""
    from digest import durable

    events: list[str] = []
    real_flush, real_fsync_folder = durable.flush, durable.fsync_folder
    monkeypatch.setattr(
        durable, "flush", lambda files: (events.append("flush"), real_flush(files))[1]
    )
    monkeypatch.setattr(
        durable, "fsync_folder", lambda path: (events.append("sync"), real_fsync_folder(path))[1]
    )
    with open_store(tmp_path) as store:
        real_settle_many = store.settle_many

        def recording(outcomes: Any, claimant: str, now: datetime) -> None:
            events.append(f"record {len(outcomes)}")
            real_settle_many(outcomes, claimant, now)

        monkeypatch.setattr(store, "settle_many", recording)
        owe(store, addresses(5))
        report = run(store, Outbox(tmp_path / "outbox"), Clock())
        assert set(statuses(store).values()) == {"sent"}
    assert report.sent == 5
    assert events == ["flush", "sync", "record 5"]
    assert len(list((tmp_path / "outbox" / "new").iterdir())) == 5


def test_the_outbox_lists_read_mail_only_when_cur_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 16: with many read messages in cur/, checking each new message must not list them
    all again; a message a client moves to cur/ meanwhile is still found."""
    outbox = Outbox(tmp_path / "outbox")
    rows = [Delivery(f"p{n}", f"mail:r{n}@example.org", DAY, "sending") for n in range(30)]
    (tmp_path / "outbox" / "cur").mkdir(parents=True)
    for n in range(500):  # read mail of earlier days
        (tmp_path / "outbox" / "cur" / f"{n:032x}.paperdigest:2,S").write_bytes(b"")
    listings: list[object] = []
    real_scandir = os.scandir

    def counted(path: object) -> object:
        if Path(str(path)).name == "cur":
            listings.append(path)
        return real_scandir(path)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "scandir", counted)
    for row in rows:
        outbox.send(build(row), row.address or "")
    assert len(listings) == 1  # once, not once a message
    # A client reads the first message: it moves to cur/ with flags; sending it again adds nothing.
    first = Outbox.file_name(build(rows[0]), "r0@example.org")
    (tmp_path / "outbox" / "new" / first).rename(tmp_path / "outbox" / "cur" / f"{first}:2,S")
    outbox.send(build(rows[0]), "r0@example.org")
    assert not (tmp_path / "outbox" / "new" / first).exists()
    assert len(listings) == 2
