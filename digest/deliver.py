"""The delivery edge: hand composed digests to a Maildir outbox or an SMTP server, led by the ledger.

    deliver_mail(store, sender, build, clock, claimant=...)
        for each mail row of the ledger that is pending, deferred, abandoned by a crashed run (its
        claim older than the lease), or uncertain and out of its quarantine:
            claim it (this run only) -> build(row) -> sender.send
            -> settle sent|deferred|failed|skipped|uncertain, or give it back pending

Two senders, one `Sender` protocol:
    Outbox(path)           a Maildir any mail client opens; files written atomically, named by Message-ID
    SmtpSender(settings)   one SMTP connection reused for the whole run, reconnected once if dropped
Both take a `Mail`: an `email.message.EmailMessage`, or a message already written out as bytes
(`digest.render.OutgoingMail`, any object with message_id, sender and data: see `RawMail`).

How sure is "exactly once"? By outcome, as sure as SMTP allows. A row is claimed in a write
transaction before its message is sent, so two overlapping runs never both send it, and a re-run
never sends a row the ledger says is sent. SmtpSender drives the conversation stage by stage, so it
knows whether a failure came before the message was handed over (connect, EHLO, STARTTLS, AUTH,
MAIL FROM, RCPT TO, DATA before its 354: the message provably did not go, so it is retried) or
after the body's end-of-data line was written (a timeout or a lost connection before the final
answer: the server may have stored it). The latter is 'uncertain': never re-sent by the run, and
by a later run only after a quarantine; `digest status` shows it to a person. The ledger records
the hand-over as it starts (after the server's 354, `Store.handing_over`), so a run killed after
that (the server may have accepted the message before the ledger recorded it) leaves a row
'sending' with its Message-ID: once its lease runs out the next run makes it 'uncertain' instead
of sending it again, and a row killed before it (claimed, not handed over) is simply sent. The
outbox closes those gaps itself: its file is named after the Message-ID, so `build` must give the
same Message-ID each time it builds the same row, and its crashed claims are sent again.

Errors (see digest/errors.py): TransientDeliveryError is retried, now and in later runs;
PermanentDeliveryError (a bounce) is recorded and never retried; UncertainDeliveryError is recorded
'uncertain'; a plain DeliveryError (login refused, outbox not writable) is a setup problem that would
fail every message, so it stops the run's mail. Failures to reach the server (refused, timed out,
no answer) are counted by a circuit breaker: after `breaker` of them in a row the run sends no more
mail and leaves the rest pending. A deadline bounds the whole mail step the same way.
"""

from __future__ import annotations

import copy as copy_module
import hashlib
import io
import logging
import os
import re
import smtplib
import ssl
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.generator import BytesGenerator
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.policy import SMTPUTF8 as SMTPUTF8_POLICY
from email.utils import getaddresses
from pathlib import Path
from types import TracebackType
from typing import NamedTuple, Protocol, Self

from digest.config import SmtpConfig
from digest.errors import (
    DeliveryError,
    PermanentDeliveryError,
    TransientDeliveryError,
    UncertainDeliveryError,
)
from digest.models import Delivery
from digest.progress import Progress, no_progress
from digest.store import Store
from digest.text import one_line

log = logging.getLogger(__name__)

MAILDIR_SUFFIX = ".paperdigest"
RECONNECT_PAUSE_S = 0.5  # give a server that just dropped us a moment before knocking again
_MAX_ERROR = 300  # characters of an error kept in the ledger
_LEADING_DOT = re.compile(rb"(?m)^\.")


class RawMail(Protocol):
    """A message already written out, as digest.render.OutgoingMail is: RFC 5322 bytes, CRLF."""

    @property
    def message_id(self) -> str: ...

    @property
    def sender(self) -> str: ...  # the bare envelope address

    @property
    def data(self) -> bytes: ...


Mail = EmailMessage | RawMail


class Sender(Protocol):
    """Something that hands one message to one recipient: the outbox, or an SMTP server.

    Used as a context manager (`with make_sender(config) as sender:`), which closes it.
    """

    def send(self, message: Mail, recipient: str) -> None: ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None: ...


def message_id_of(message: Mail) -> str | None:
    """The Message-ID header, as the ledger records it."""
    if isinstance(message, EmailMessage):
        found = message.get("Message-ID")
        return str(found).strip() if found else None
    return message.message_id or None


def wire_bytes(message: Mail) -> bytes:
    """The message as it goes over SMTP and into the Maildir: bytes with CRLF line ends."""
    if isinstance(message, EmailMessage):
        return message.as_bytes(policy=SMTP_POLICY)
    return message.data


# -- the Maildir outbox ---------------------------------------------------------------------------


class Outbox:
    """A Maildir (tmp/, new/, cur/) that any mail client can open, for runs without an SMTP server.

    Each message is written to tmp/, flushed to disk, then renamed into new/, so a reader never sees
    half a message. The file name is a hash of the Message-ID and the recipient: writing the same
    message twice (a crash before the ledger recorded the first) leaves one file.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._made = False

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Nothing is held open between messages."""

    @staticmethod
    def file_name(message: Mail, recipient: str) -> str:
        """The message's Maildir name: stable for one (Message-ID, recipient), unique otherwise."""
        message_id = message_id_of(message)
        if not message_id:
            raise ValueError("the message has no Message-ID; the outbox names its files after it")
        digest = hashlib.sha256(f"{message_id}\n{recipient}".encode())
        return digest.hexdigest()[:32] + MAILDIR_SUFFIX

    def send(self, message: Mail, recipient: str) -> None:
        name = self.file_name(message, recipient)
        data = wire_bytes(message)
        try:
            self._make_dirs()
            if self._holds(name):
                return
            self._write(name, data)
        except OSError as exc:
            raise DeliveryError(
                f"{self.path}: cannot write to the outbox: {exc.strerror or exc}"
            ) from None

    def _make_dirs(self) -> None:
        if not self._made:
            for sub in ("tmp", "new", "cur"):
                (self.path / sub).mkdir(parents=True, exist_ok=True)
            self._made = True

    def _holds(self, name: str) -> bool:
        """Is the message already here: in new/, or in cur/ (a mail client read it, adding ':2,S')?"""
        if (self.path / "new" / name).exists():
            return True
        with os.scandir(self.path / "cur") as entries:
            return any(entry.name.startswith(name) for entry in entries)

    def _write(self, name: str, data: bytes) -> None:
        fd, temporary_name = tempfile.mkstemp(dir=self.path / "tmp", prefix=name + ".")
        temporary = Path(temporary_name)
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            temporary.replace(self.path / "new" / name)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        _fsync_dir(self.path / "new")  # so the rename itself survives a power cut


def _fsync_dir(path: Path) -> None:
    if os.name != "posix":  # Windows cannot open a directory; its renames are durable enough
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- SMTP -----------------------------------------------------------------------------------------


class _Secret:
    """A password that does not show itself: its repr and str are '***'."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "***"

    __str__ = __repr__


class _Unreachable(TransientDeliveryError):
    """The server could not be reached, or stopped answering before the message was handed over:
    every message would likely fail alike (the circuit breaker counts these)."""


class _Dropped(Exception):
    """The server closed the connection before the message was handed over (`stage`)."""

    def __init__(self, stage: str) -> None:
        super().__init__(stage)
        self.stage = stage


class SmtpSender:
    """Sends through one SMTP server, on one connection opened at the first message and reused.

    Use it as a context manager, so the connection is closed with QUIT. Not thread-safe: each run
    has its own. The password is read from the environment or a file only when connecting, and
    never appears in a log line, an error message or an exception chain.
    """

    def __init__(
        self,
        settings: SmtpConfig,
        *,
        environ: Mapping[str, str] = os.environ,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self._environ = environ
        self._sleep = sleep
        self._connection: smtplib.SMTP | None = None
        self.where = f"{settings.host}:{settings.port}"
        self.connections = 0  # how many connections were opened (the benchmark and tests read it)
        # Called after the server's 354, just before the body goes: from then on the message may
        # arrive. deliver_mail records it in the ledger, for a run killed mid-send.
        self.on_hand_over: Callable[[], None] | None = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            connection.quit()
        except (smtplib.SMTPException, OSError):
            connection.close()  # the server is gone already; just drop the socket

    def send(self, message: Mail, recipient: str) -> None:
        """Hand one message to the server, for one recipient, stage by stage.

        Up to the server's 354 answer to DATA, nothing was handed over: a refusal is transient (4xx)
        or permanent (5xx), a timeout or a lost connection transient (`_Unreachable`: the breaker
        counts those), and a connection the server dropped while idle is opened again, once. Once
        the body is written, a timeout or a lost connection before the final answer is an
        `UncertainDeliveryError`: the server may have stored the message, so it is never re-sent
        here (smtplib's `sendmail` would not say at which stage it failed; hence the stages).
        """
        if isinstance(message, EmailMessage):
            from_addr = _bare_address(message.get("From", ""))
        else:
            from_addr = message.sender
        for attempt in (1, 2):
            reused = self._connection is not None
            connection = self._connect()
            try:
                self._send_on(connection, message, from_addr, recipient)
                return
            except _Dropped as exc:
                # Servers close idle connections, or after so many messages: reconnect, once.
                self._drop()
                if attempt == 2 or not reused:
                    raise _Unreachable(
                        f"{self.where}: the server closed the connection at {exc.stage}"
                    ) from None
                self._sleep(RECONNECT_PAUSE_S)
            except (UncertainDeliveryError, _Unreachable):
                self._drop()  # the conversation is in an unknown state: never reuse it
                raise
            finally:
                # smtplib closes the socket itself on a 421 answer; do not reuse it.
                if self._connection is not None and self._connection.sock is None:
                    self._connection = None

    def _send_on(
        self, connection: smtplib.SMTP, message: Mail, from_addr: str, recipient: str
    ) -> None:
        """One try on an open connection: MAIL FROM, RCPT TO, DATA, the body, the final answer."""
        options: list[str] = []
        if isinstance(message, EmailMessage):
            international = not (from_addr + recipient).isascii()
            if international and not connection.has_extn("smtputf8"):
                # trying again will not help
                raise PermanentDeliveryError(
                    f"{self.where}: the address needs SMTPUTF8, which the server does not offer"
                )
            if international:
                options = ["SMTPUTF8", "BODY=8BITMIME"]
            data = _flatten(message, international=international)
        else:
            data = message.data
        # One recipient per message: a refusal is about this address alone.
        stage = f"MAIL FROM <{from_addr}>"
        code, text = self._ask(stage, lambda: connection.mail(from_addr, options))
        if code != 250:
            self._reset(connection)
            raise self._refused(stage, code, text)
        stage = f"RCPT TO <{recipient}>"
        code, text = self._ask(stage, lambda: connection.rcpt(recipient))
        if code not in (250, 251):
            self._reset(connection)
            raise self._refused(stage, code, text)

        def data_command() -> tuple[int, bytes]:
            connection.putcmd("data")
            return connection.getreply()

        code, text = self._ask("DATA", data_command)
        if code != 354:
            self._reset(connection)
            raise self._refused("DATA", code, text)
        if self.on_hand_over is not None:
            try:
                self.on_hand_over()
            except BaseException:
                self._drop()  # mid-DATA: never reuse this conversation
                raise
        # Handing over. A body that could not be written whole lacks its end-of-data line, so the
        # server cannot have taken it: still safe to try again.

        def write_body() -> tuple[int, bytes]:
            connection.send(_dot_stuffed(data))
            return 0, b""

        self._ask("the message body", write_body)
        try:
            code, text = connection.getreply()
        except (smtplib.SMTPException, OSError) as exc:
            waited = "no answer within the timeout" if _timed_out(exc) else "the connection was lost"
            raise UncertainDeliveryError(
                f"{self.where}: the message was handed over, then {waited} "
                f"({self.settings.timeout_s:g} s) before the server's answer: it may have arrived"
            ) from None
        if not 200 <= code <= 299:
            raise self._refused("DATA", code, text)

    def _ask(self, stage: str, command: Callable[[], tuple[int, bytes]]) -> tuple[int, bytes]:
        """One command before the message is handed over: a lost connection or a timeout is
        reported as such, never as uncertain (the message cannot have gone)."""
        try:
            return command()
        except smtplib.SMTPServerDisconnected as exc:
            if _timed_out(exc):
                raise _Unreachable(
                    f"{self.where}: no answer to {stage} within {self.settings.timeout_s:g} s"
                ) from None
            raise _Dropped(stage) from None
        except smtplib.SMTPNotSupportedError as exc:
            raise PermanentDeliveryError(f"{self.where}: {one_line(str(exc), limit=_MAX_ERROR)}") from None
        except OSError as exc:  # a timeout, a reset, any other SMTPException
            raise _Unreachable(
                f"{self.where}: {stage} failed: "
                f"{one_line(str(exc) or type(exc).__name__, limit=_MAX_ERROR)}"
            ) from None

    @staticmethod
    def _reset(connection: smtplib.SMTP) -> None:
        """After a refusal, RSET so the connection can carry the next message."""
        try:
            connection.rset()
        except (smtplib.SMTPException, OSError):
            connection.close()  # sock None: send() drops it

    def _refused(self, stage: str, code: int, text: bytes | str) -> DeliveryError:
        answer = _answer(code, text)
        kind = PermanentDeliveryError if 500 <= code <= 599 else TransientDeliveryError
        return kind(f"{self.where}: {stage} refused: {answer}")

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    def _connect(self) -> smtplib.SMTP:
        if self._connection is not None:
            return self._connection
        settings = self.settings
        # Read before connecting: a missing password is a setup problem, found without the network.
        password = self._password() if settings.username else None
        connection = self._open()
        if settings.username and password is not None:
            self._login(connection, settings.username, password)
        self._connection = connection
        self.connections += 1
        return connection

    def _open(self) -> smtplib.SMTP:
        settings, where = self.settings, self.where
        context = ssl.create_default_context()
        connection: smtplib.SMTP | None = None
        try:
            if settings.security == "tls":
                connection = smtplib.SMTP_SSL(
                    settings.host, settings.port, timeout=settings.timeout_s, context=context
                )
            else:
                connection = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout_s)
            connection.ehlo()
            if settings.security == "starttls":
                connection.starttls(context=context)
                connection.ehlo()
            return connection
        except ssl.SSLCertVerificationError as exc:
            problem: DeliveryError = DeliveryError(
                f"{where}: the server's TLS certificate is not trusted: {exc.verify_message}"
            )
        except smtplib.SMTPNotSupportedError:
            problem = DeliveryError(
                f"{where}: the server does not offer STARTTLS; "
                "set smtp.security to 'tls' (port 465) or 'none'"
            )
        except smtplib.SMTPResponseException as exc:  # the greeting or EHLO was refused
            answer = _answer(exc.smtp_code, exc.smtp_error)
            if 500 <= exc.smtp_code <= 599:
                problem = DeliveryError(f"{where}: the server refuses this client: {answer}")
            else:
                problem = _Unreachable(f"{where}: the server is busy: {answer}")
        except OSError as exc:  # refused, unreachable, timeout, TLS handshake, disconnected
            problem = _Unreachable(
                f"{where}: cannot connect: {one_line(str(exc) or type(exc).__name__, limit=_MAX_ERROR)}"
            )
        if connection is not None:
            connection.close()
        raise problem

    def _login(self, connection: smtplib.SMTP, username: str, password: _Secret) -> None:
        # The problem is raised outside the `except` block, so no exception raised while the
        # password was in hand is chained to it (not even as __context__).
        where = self.where
        try:
            connection.login(username, password.reveal())
            return
        except smtplib.SMTPAuthenticationError as exc:
            answer = _answer(exc.smtp_code, exc.smtp_error)
            if 400 <= exc.smtp_code <= 499:  # 454: a temporary failure on the server's side
                problem: DeliveryError = _Unreachable(f"{where}: login failed for now: {answer}")
            else:
                problem = DeliveryError(f"{where}: login refused for user {username} ({answer})")
        except UnicodeEncodeError:  # its args hold the whole "\0user\0password" string
            problem = DeliveryError(
                f"{where}: cannot log in as {username}: smtplib sends only ASCII passwords"
            )
        except smtplib.SMTPNotSupportedError:
            problem = DeliveryError(
                f"{where}: the server does not offer AUTH (login) on this connection; "
                "check smtp.security"
            )
        except smtplib.SMTPServerDisconnected:
            problem = _Unreachable(f"{where}: the server closed the connection during login")
        except smtplib.SMTPException as exc:  # e.g. "No suitable authentication method found."
            problem = DeliveryError(f"{where}: cannot log in as {username}: {one_line(str(exc), limit=_MAX_ERROR)}")
        except OSError as exc:
            problem = _Unreachable(f"{where}: connection lost during login: {type(exc).__name__}")
        connection.close()
        raise problem

    def _password(self) -> _Secret:
        settings = self.settings
        if settings.password_env is not None:
            value = self._environ.get(settings.password_env)
            if not value:
                raise DeliveryError(
                    f"smtp.password_env: the environment variable {settings.password_env} "
                    "is not set (it should hold the SMTP password)"
                )
            return _Secret(value)
        if settings.password_file is not None:
            path = settings.password_file
            try:
                value = path.read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as exc:
                raise DeliveryError(
                    f"{path}: cannot read the SMTP password file: {exc.strerror or type(exc).__name__}"
                ) from None
            except UnicodeDecodeError:
                # Its message would quote a byte of the password.
                raise DeliveryError(f"{path}: the SMTP password file is not UTF-8 text") from None
            if not value:
                raise DeliveryError(f"{path}: the SMTP password file is empty")
            return _Secret(value)
        raise DeliveryError(f"smtp: user {settings.username} needs password_env or password_file")


def _bare_address(header: str) -> str:
    """'paperdigest <digest@example.org>' -> 'digest@example.org' (the SMTP envelope sender)."""
    for _, address in getaddresses([str(header)]):
        if "@" in address:
            return address
    raise ValueError(f"the message has no usable From address: {header!r}")


def _flatten(message: EmailMessage, *, international: bool) -> bytes:
    """The message as smtplib's send_message writes it: Bcc left out, CRLF line ends."""
    copy = copy_module.copy(message)
    del copy["Bcc"]
    del copy["Resent-Bcc"]
    with io.BytesIO() as out:
        policy = SMTPUTF8_POLICY if international else message.policy
        BytesGenerator(out, policy=policy).flatten(copy, linesep="\r\n")
        return out.getvalue()


def _dot_stuffed(data: bytes) -> bytes:
    """The body as DATA carries it: a leading dot doubled, ending in CRLF '.' CRLF."""
    quoted = _LEADING_DOT.sub(b"..", data)
    if not quoted.endswith(b"\r\n"):
        quoted += b"\r\n"
    return quoted + b".\r\n"


def _timed_out(exc: BaseException) -> bool:
    """Is it (or what smtplib turned into 'Connection unexpectedly closed') a socket timeout?"""
    return isinstance(exc, TimeoutError) or isinstance(exc.__context__, TimeoutError)


def _answer(code: int, text: bytes | str) -> str:
    """An SMTP answer as one safe line: '550 5.1.1 no such user'."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return one_line(f"{code} {text}", limit=_MAX_ERROR)


# -- the ledger-driven loop -----------------------------------------------------------------------


class Problem(NamedTuple):
    """A delivery that did not go out in this run, and why (one line, safe to show)."""

    profile: str
    address: str
    error: str


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """What one `deliver_mail` call did. `left`: not tried (or given back untried): the server
    could not be reached, the circuit breaker opened, the run's deadline passed or it was stopped.
    `uncertain`: handed over without an answer; a person should look (see `digest status`)."""

    sent: int = 0
    deferred: int = 0
    failed: int = 0
    skipped: int = 0
    left: int = 0
    problems: tuple[Problem, ...] = ()
    uncertain: int = 0


class _Breaker:
    """Counts consecutive failures to reach the server (refused, timed out, no answer); any
    answer from it (even a refusal of one address) resets the count. Open at `limit`."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.strikes = 0

    def answered(self) -> None:
        self.strikes = 0

    def strike(self) -> bool:
        """Count one failure; True when that opens the breaker."""
        self.strikes += 1
        return self.strikes >= self.limit


class _BreakerOpen(Exception):
    def __init__(self, cause: DeliveryError) -> None:
        super().__init__(str(cause))
        self.cause = cause


class _OutOfTime(Exception):
    def __init__(self, cause: DeliveryError) -> None:
        super().__init__(str(cause))
        self.cause = cause


_ABANDONED = (
    "the run sending it stopped (killed?) while handing it over, and never recorded how it went: "
    "it may have arrived"
)

DEFAULT_LEASE = timedelta(minutes=15)
DEFAULT_QUARANTINE = timedelta(hours=24)
DEFAULT_BREAKER = 3


def deliver_mail(
    store: Store,
    sender: Sender,
    build: Callable[[Delivery], Mail | None],
    clock: Callable[[], datetime],
    *,
    claimant: str,
    retry_delays: Sequence[float] = (1.0, 4.0, 15.0),
    max_attempts: int = 5,
    lease: timedelta = DEFAULT_LEASE,
    quarantine: timedelta = DEFAULT_QUARANTINE,
    breaker: int = DEFAULT_BREAKER,
    deadline: timedelta | None = None,
    sleep: Callable[[float], None] = time.sleep,
    stopping: Callable[[], bool] = lambda: False,
    progress: Progress = no_progress,
) -> DeliveryReport:
    """Send every mail delivery the ledger still owes, each at most once, and record how it went.

    `build(row)` makes the row's message (None: nothing to send, the row is 'skipped'); it must
    give the same Message-ID each time for the same row. `claimant` names this run in the ledger.
    Only a failure that proves the message did not go is retried: a transient error is tried
    again after each of `retry_delays`, then the row is 'deferred' for the next run, or 'failed'
    once it has had `max_attempts` tries over all runs. A bounce is 'failed' at once. A message
    handed over without an answer is 'uncertain': never re-sent by this run, and by a later run
    only once `quarantine` has passed since. After `breaker` failures in a row to reach the server
    (refused, timed out, no answer) the run stops sending: the row in hand and the rest stay
    pending, no try counted (it is not the address's fault). So does a run past its `deadline`
    (counted from its start). A setup problem (login refused, outbox not writable) defers the row
    in hand and is raised: no message could go. A 'sending' row claimed more than `lease` ago was
    abandoned by a crashed run: taken over, or made 'uncertain' when that run had begun handing
    its message over (a sender with `on_hand_over`, as SmtpSender, says when: after the server's
    354). When `stopping()` turns true (SIGTERM), the run ends between two messages; the rest wait.
    """
    counts = {"sent": 0, "deferred": 0, "failed": 0, "skipped": 0, "uncertain": 0}
    problems: list[Problem] = []
    started = clock()
    ends = started + deadline if deadline is not None else None
    trips = _Breaker(breaker)
    # A run killed while handing a message over (its claim is past the lease) may have sent it:
    # 'uncertain', as a send with no answer is, not sent again. Only a sender that says when it
    # hands over (SmtpSender's on_hand_over) marks it; the outbox's second copy is harmless.
    marks = sender if isinstance(sender, SmtpSender) else None
    if marks is not None:
        for row in store.abandoned_hand_overs(started - lease, _ABANDONED):
            counts["uncertain"] += 1
            problems.append(Problem(row.profile, row.address or row.channel, _ABANDONED))
            log.warning(
                "mail %s %s to %s: uncertain (%s)", row.profile, row.day, row.address,
                _ABANDONED, extra={"profile": row.profile},
            )
    rows = [
        row
        for row in store.deliveries(statuses=("pending", "deferred", "sending", "uncertain"))
        if row.channel.startswith("mail:")
        and (row.status != "uncertain" or _quarantined_until(row, quarantine) < started)
    ]

    def settle(
        row: Delivery, status: str, error: str | None = None, message_id: str | None = None
    ) -> None:
        store.settle(row, claimant, status, clock(), error=error, message_id=message_id)
        counts[status] += 1
        address = row.address or row.channel
        if error is not None:
            problems.append(Problem(row.profile, address, error))
        shown = f"{status} ({error})" if error else status
        log.info(
            "mail %s %s to %s: %s", row.profile, row.day, address, shown,
            extra={"profile": row.profile},
        )

    for index, row in enumerate(rows):
        progress("mail", index, len(rows), row.address or row.channel)
        if stopping():  # SIGTERM: stop between two messages; the rest stay pending
            left = len(rows) - index
            log.info("mail: stopping; %d deliveries left for the next run", left)
            return _report(counts, problems, left)
        now = clock()
        if ends is not None and now >= ends:
            left = len(rows) - index
            log.warning(
                "mail: the run's deadline (%s after its start) has passed; "
                "%d deliveries left pending for the next run", deadline, left,
            )
            return _report(counts, problems, left)
        if not store.claim(
            row, claimant, now, stale_before=now - lease, quarantined_before=now - quarantine
        ):
            continue  # sent or given up meanwhile, or another run is on it
        attempts = row.attempts + 1  # the claim counted this try
        address = row.address or ""
        try:
            message = build(row)
        except Exception as exc:  # one digest that cannot be built must not block the others
            log.exception(
                "mail %s %s to %s: could not build the message", row.profile, row.day, address
            )
            error = one_line(f"could not build the message: {type(exc).__name__}: {exc}", limit=_MAX_ERROR)
            settle(row, "failed" if attempts >= max_attempts else "deferred", error)
            continue
        if message is None:
            settle(row, "skipped")
            continue
        if marks is not None:
            marks.on_hand_over = _marker(store, row, claimant, clock, message)
        try:
            _send_with_retries(sender, message, address, retry_delays, sleep, trips, clock, ends)
        except UncertainDeliveryError as exc:
            settle(row, "uncertain", one_line(str(exc), limit=_MAX_ERROR), message_id_of(message))
            if trips.strikes >= trips.limit:
                return _stop_channel(
                    sender, counts, problems, len(rows) - index - 1, exc, trips.strikes
                )
        except PermanentDeliveryError as exc:
            settle(row, "failed", one_line(str(exc), limit=_MAX_ERROR))
        except (_BreakerOpen, _OutOfTime) as stop:
            # The message did not go, and not for this address's fault: give the row back.
            store.release(row, claimant, clock(), error=one_line(str(stop.cause), limit=_MAX_ERROR))
            left = len(rows) - index
            if isinstance(stop, _BreakerOpen):
                return _stop_channel(sender, counts, problems, left, stop.cause, trips.strikes)
            log.warning(
                "mail: the run's deadline (%s after its start) has passed; "
                "%d deliveries left pending for the next run", deadline, left,
            )
            return _report(counts, problems, left)
        except TransientDeliveryError as exc:
            if isinstance(exc, _Unreachable):
                # Not the address's fault: never 'failed' for it, however many runs it takes.
                settle(row, "deferred", one_line(str(exc), limit=_MAX_ERROR))
            elif attempts >= max_attempts:
                settle(row, "failed", one_line(f"gave up after {attempts} tries: {exc}", limit=_MAX_ERROR))
            else:
                settle(row, "deferred", one_line(str(exc), limit=_MAX_ERROR))
        except DeliveryError as exc:  # login refused, outbox not writable: no message could go
            settle(row, "deferred", one_line(str(exc), limit=_MAX_ERROR))
            raise
        except Exception as exc:  # a bug on the sending side; the next run may do better
            log.exception("mail %s %s to %s: unexpected error", row.profile, row.day, address)
            error = one_line(f"{type(exc).__name__}: {exc}", limit=_MAX_ERROR)
            settle(row, "failed" if attempts >= max_attempts else "deferred", error)
        else:
            settle(row, "sent", message_id=message_id_of(message))
        finally:
            if marks is not None:
                marks.on_hand_over = None
    progress("mail", len(rows), len(rows), f"{counts['sent']} sent")
    return _report(counts, problems, 0)


def _marker(
    store: Store, row: Delivery, claimant: str, clock: Callable[[], datetime], message: Mail
) -> Callable[[], None]:
    """What the sender calls as it hands `row`'s message over: the ledger records it."""

    def handing_over() -> None:
        store.handing_over(row, claimant, clock(), message_id_of(message) or "")

    return handing_over


def _quarantined_until(row: Delivery, quarantine: timedelta) -> datetime:
    """When an 'uncertain' row may be sent again: its quarantine counted from the attempt."""
    assert row.updated is not None
    return row.updated + quarantine


def _stop_channel(
    sender: Sender,
    counts: dict[str, int],
    problems: list[Problem],
    left: int,
    cause: DeliveryError,
    strikes: int,
) -> DeliveryReport:
    """The circuit breaker opened: said once, the rest left pending for the next run."""
    where = getattr(sender, "where", "the mail server")
    log.warning(
        "mail: %s failed %d times in a row (last: %s); no more mail this run, "
        "%d deliveries left pending for the next run",
        where, strikes, cause, left,
    )
    return _report(counts, problems, left)


def _send_with_retries(
    sender: Sender,
    message: Mail,
    address: str,
    delays: Sequence[float],
    sleep: Callable[[float], None],
    trips: _Breaker,
    clock: Callable[[], datetime],
    ends: datetime | None,
) -> None:
    """Send once, and again after each delay while the error proves the message did not go.

    Raises _BreakerOpen when a failure to reach the server opens the breaker, _OutOfTime when
    the run's deadline would pass before the next try; an uncertain send is never tried again.
    """
    tries = len(delays) + 1
    for number in range(tries):
        try:
            sender.send(message, address)
            trips.answered()
            return
        except UncertainDeliveryError:
            trips.strike()
            raise
        except _Unreachable as exc:
            if trips.strike():
                raise _BreakerOpen(exc) from None
            failure: TransientDeliveryError = exc
        except TransientDeliveryError as exc:  # the server answered: a 4xx
            trips.answered()
            failure = exc
        except DeliveryError:
            trips.answered()
            raise
        if number == tries - 1:
            raise failure
        delay = delays[number]
        if ends is not None and clock() + timedelta(seconds=delay) >= ends:
            if isinstance(failure, _Unreachable):
                raise _OutOfTime(failure)
            raise failure
        log.debug("mail to %s: %s; trying again in %.0f s", address, failure, delay)
        sleep(delay)


def _report(counts: dict[str, int], problems: list[Problem], left: int) -> DeliveryReport:
    return DeliveryReport(
        sent=counts["sent"],
        deferred=counts["deferred"],
        failed=counts["failed"],
        skipped=counts["skipped"],
        left=left,
        problems=tuple(problems),
        uncertain=counts["uncertain"],
    )
