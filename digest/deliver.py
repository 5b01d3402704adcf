"""The delivery edge: hand composed digests to a Maildir outbox or an SMTP server, led by the ledger.

    deliver_mail(store, sender, build, clock, claimant=...)
        for each mail row of the ledger that is pending, deferred, or abandoned by a crashed run:
            claim it (this run only) -> build(row) -> sender.send -> settle sent|deferred|failed|skipped

Two senders, one `Sender` protocol:
    Outbox(path)           a Maildir any mail client opens; files written atomically, named by Message-ID
    SmtpSender(settings)   one SMTP connection reused for the whole run, reconnected once if dropped
Both take a `Mail`: an `email.message.EmailMessage`, or a message already written out as bytes
(`digest.render.OutgoingMail`, any object with message_id, sender and data: see `RawMail`).

How sure is "exactly once"? A row is claimed in a write transaction before its message is sent, so two
overlapping runs never both send it, and a re-run never sends a row the ledger says is sent. The one gap
is a crash after the server accepted a message but before the ledger recorded it: the row stays
'sending', and once its lease runs out the next run sends it again (SMTP has no way to ask "did you get
that one?"). The outbox closes even that gap: its file is named after the Message-ID, so `build` must
give the same Message-ID each time it builds the same row.

Errors (see digest/errors.py): TransientDeliveryError is retried, now and in later runs;
PermanentDeliveryError (a bounce) is recorded and never retried; a plain DeliveryError (login refused,
outbox not writable) is a setup problem that would fail every message, so it stops the run's mail.
"""

from __future__ import annotations

import hashlib
import logging
import os
import smtplib
import ssl
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import getaddresses
from pathlib import Path
from types import TracebackType
from typing import NamedTuple, Protocol, Self

from digest.config import SmtpConfig
from digest.errors import DeliveryError, PermanentDeliveryError, TransientDeliveryError
from digest.models import Delivery
from digest.progress import Progress, no_progress
from digest.store import Store
from digest.text import one_line

log = logging.getLogger(__name__)

MAILDIR_SUFFIX = ".paperdigest"
RECONNECT_PAUSE_S = 0.5  # give a server that just dropped us a moment before knocking again
_MAX_ERROR = 300  # characters of an error kept in the ledger


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
    """The server could not be reached (or would not talk to us): every message would fail alike."""


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
        if isinstance(message, EmailMessage):
            from_addr = _bare_address(message.get("From", ""))
        else:
            from_addr = message.sender
        for attempt in (1, 2):
            connection = self._connect()
            try:
                # One recipient per message: a refusal is about this address alone.
                if isinstance(message, EmailMessage):
                    connection.send_message(message, from_addr=from_addr, to_addrs=[recipient])
                else:
                    connection.sendmail(from_addr, [recipient], message.data)
                return
            except smtplib.SMTPServerDisconnected as exc:
                # Servers close idle connections, or after so many messages: reconnect, once.
                self._drop()
                if attempt == 2:
                    raise TransientDeliveryError(
                        f"{self.where}: the server closed the connection: {one_line(str(exc), limit=_MAX_ERROR)}"
                    ) from None
                self._sleep(RECONNECT_PAUSE_S)
            except smtplib.SMTPRecipientsRefused as exc:
                code, text = next(iter(exc.recipients.values()), (-1, b""))
                raise self._refused(f"RCPT TO <{recipient}>", code, text) from None
            except smtplib.SMTPSenderRefused as exc:
                raise self._refused(
                    f"MAIL FROM <{from_addr}>", exc.smtp_code, exc.smtp_error
                ) from None
            except smtplib.SMTPDataError as exc:
                raise self._refused("DATA", exc.smtp_code, exc.smtp_error) from None
            except smtplib.SMTPResponseException as exc:
                raise self._refused("the message", exc.smtp_code, exc.smtp_error) from None
            except smtplib.SMTPNotSupportedError as exc:
                # e.g. a non-ASCII address and a server without SMTPUTF8: trying again will not help.
                raise PermanentDeliveryError(f"{self.where}: {one_line(str(exc), limit=_MAX_ERROR)}") from None
            except OSError as exc:  # timeout, connection reset, any other SMTPException
                self._drop()
                raise TransientDeliveryError(
                    f"{self.where}: sending failed: {one_line(str(exc) or type(exc).__name__, limit=_MAX_ERROR)}"
                ) from None
            finally:
                # smtplib closes the socket itself on a 421 answer; do not reuse it.
                if self._connection is not None and self._connection.sock is None:
                    self._connection = None

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
    """What one `deliver_mail` call did. `left`: not tried, the server was unreachable."""

    sent: int = 0
    deferred: int = 0
    failed: int = 0
    skipped: int = 0
    left: int = 0
    problems: tuple[Problem, ...] = ()


def deliver_mail(
    store: Store,
    sender: Sender,
    build: Callable[[Delivery], Mail | None],
    clock: Callable[[], datetime],
    *,
    claimant: str,
    retry_delays: Sequence[float] = (1.0, 4.0, 15.0),
    max_attempts: int = 5,
    lease: timedelta = timedelta(minutes=15),
    sleep: Callable[[float], None] = time.sleep,
    stopping: Callable[[], bool] = lambda: False,
    progress: Progress = no_progress,
) -> DeliveryReport:
    """Send every mail delivery the ledger still owes, each at most once, and record how it went.

    `build(row)` makes the row's message (None: nothing to send, the row is 'skipped'); it must
    give the same Message-ID each time for the same row. `claimant` names this run in the ledger.
    A transient error is retried after each of `retry_delays`, then the row is 'deferred' for the
    next run, or 'failed' once it has had `max_attempts` tries over all runs. A bounce is 'failed'
    at once. When the server cannot be reached at all, the row is deferred (never failed: it is
    not the address's fault) and the rest are left for the next run. A setup problem (login
    refused, outbox not writable) defers the row in hand and is raised: no message could go.
    A 'sending' row claimed more than `lease` ago was abandoned by a crashed run and is taken over.
    When `stopping()` turns true (SIGTERM), the run ends between two messages; the rest wait.
    """
    counts = {"sent": 0, "deferred": 0, "failed": 0, "skipped": 0}
    problems: list[Problem] = []
    rows = [
        row
        for row in store.deliveries(statuses=("pending", "deferred", "sending"))
        if row.channel.startswith("mail:")
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
        if not store.claim(row, claimant, now, stale_before=now - lease):
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
        try:
            _send_with_retries(sender, message, address, retry_delays, sleep)
        except PermanentDeliveryError as exc:
            settle(row, "failed", one_line(str(exc), limit=_MAX_ERROR))
        except _Unreachable as exc:
            settle(row, "deferred", one_line(str(exc), limit=_MAX_ERROR))
            left = len(rows) - index - 1
            log.warning("mail: %s; %d more deliveries left for the next run", exc, left)
            return _report(counts, problems, left)
        except TransientDeliveryError as exc:
            if attempts >= max_attempts:
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
    progress("mail", len(rows), len(rows), f"{counts['sent']} sent")
    return _report(counts, problems, 0)


def _send_with_retries(
    sender: Sender,
    message: Mail,
    address: str,
    delays: Sequence[float],
    sleep: Callable[[float], None],
) -> None:
    """Send once, and again after each delay while the error is transient."""
    for delay in delays:
        try:
            sender.send(message, address)
            return
        except TransientDeliveryError as exc:
            log.debug("mail to %s: %s; trying again in %.0f s", address, exc, delay)
            sleep(delay)
    sender.send(message, address)


def _report(counts: dict[str, int], problems: list[Problem], left: int) -> DeliveryReport:
    return DeliveryReport(
        sent=counts["sent"],
        deferred=counts["deferred"],
        failed=counts["failed"],
        skipped=counts["skipped"],
        left=left,
        problems=tuple(problems),
    )
