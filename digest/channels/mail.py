"""The mail channel: each reader's email, built from a stored digest, into an outbox or over SMTP.

    MailChannel(config, store, renderer, sender)
        targets(profile)  "mail:ADDRESS" for each address of the profile still subscribed
        build(row)        MailBuilder: the stored digest -> that reader's OutgoingMail (or None)
        send(...)         the Sender: the Maildir outbox or an SMTP server
    deliver(run)          digest.deliver.deliver_rows over the "mail:" rows of the ledger

Two senders, one `Sender` protocol:
    Outbox(path)           a Maildir any mail client opens; files written atomically, named by Message-ID
    SmtpSender(settings)   one SMTP connection reused for the whole run, reconnected once if dropped
Both take a `Mail`: an `email.message.EmailMessage`, or a message already written out as bytes
(`digest.render.OutgoingMail`, any object with message_id, sender and data: see `RawMail`).

SmtpSender drives the conversation stage by stage, so it knows whether a failure came before the
message was handed over (connect, EHLO, STARTTLS, AUTH, MAIL FROM, RCPT TO, DATA before its 354:
the message provably did not go, so it is retried) or after the body's end-of-data line was
written (a timeout or a lost connection before the final answer: the server may have stored it,
UncertainDeliveryError). It says when it hands over (after the server's 354), so the ledger can
record it (see digest/deliver.py). The outbox needs no such care: its file is named after the
Message-ID, so the same message written twice is one file.
"""

from __future__ import annotations

import copy as copy_module
import hashlib
import io
import logging
import os
import smtplib
import ssl
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from email.generator import BytesGenerator
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.policy import SMTPUTF8 as SMTPUTF8_POLICY
from email.utils import getaddresses, parseaddr
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self, TypeVar
from urllib.parse import quote, urlsplit

from digest import durable, feeds
from digest.config import Config, ProfileConfig, SmtpConfig, read_password
from digest.deliver import DEFAULT_BREAKER, MAX_ERROR, DeliveryReport, deliver_rows
from digest.errors import (
    DeliveryError,
    PermanentDeliveryError,
    TransientDeliveryError,
    UncertainDeliveryError,
    UnreachableError,
)
from digest.models import Delivery, Digest
from digest.render import (
    EmailLinks,
    FeedbackLinks,
    LinkShortener,
    OutgoingMail,
    RenderedEmail,
    Renderer,
    build_message,
    message_id,
)
from digest.store import Store
from digest.text import one_line
from digest.tokens import manage_token, unsubscribe_token

if TYPE_CHECKING:  # the package's __init__ imports this module
    from digest.channels import RunContext

log = logging.getLogger(__name__)

MAILDIR_SUFFIX = ".paperdigest"
# Messages built at a time, their short links kept in one transaction: a transaction for each
# message's ~40 links (random keys, a page each) took longer than rendering it.
BUILD_AHEAD = 100
# A batch: each row's message (None: nothing to send; an exception: why it could not be built),
# the short links the batch made, and when the newest of its digests ends.
_Batch = tuple[dict[tuple[str, str, date], "OutgoingMail | Exception | None"], dict[str, str], datetime]
_Answer = TypeVar("_Answer")
RECONNECT_PAUSE_S = 0.5  # give a server that just dropped us a moment before knocking again


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

    Each message is written to tmp/ and renamed into new/, so a reader never sees half a message.
    The file name is a hash of the Message-ID and the recipient: writing the same message twice
    (a crash before the ledger recorded the first) leaves one file.

    Messages are written in batches (digest.durable): with `sync_later`, which the delivery loop
    sets, `send()` writes the message to tmp/ unsynced and `sync()` commits the batch: one flush
    of the filesystem for all of its messages, their renames into new/, one fsync of new/. The
    loop calls `sync()` before the ledger records the batch, so a message recorded sent is on
    disk. A kill before that leaves at most temp files in tmp/ (removed once older than 36 hours,
    the Maildir rule) and the batch's rows open in the ledger: the next run writes them again,
    and finds the ones already renamed. Without `sync_later` each message is a batch of its own.
    """

    STALE_TEMP = timedelta(hours=36)  # the Maildir rule for tmp/: older is a killed writer's

    def __init__(self, path: Path, *, sync_later: bool = False) -> None:
        self.path = path
        self.sync_later = sync_later
        self._made = False
        self._batch = durable.Batch()
        self._queued: set[str] = set()  # names in the batch, not yet in new/
        self._failed: str | None = None  # why the last batch could not be committed
        self._read: tuple[int, set[str]] = (-1, set())  # cur/'s mtime, our names in it (_holds)
        self._new, self._tmp, self._cur = path / "new", path / "tmp", path / "cur"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Nothing is held open between messages; a batch not yet committed is committed (a
        failed one was said already, by `sync`)."""
        if self._failed is None:
            self.sync()

    def sync(self) -> None:
        """Commit the batch: when this returns, its messages are in new/ and on disk."""
        if self._failed is not None:
            # The ledger still holds the failed batch's outcomes: never let it record them.
            raise DeliveryError(self._failed)
        if not self._queued:
            return
        self._queued = set()
        try:
            self._batch.commit()
        except durable.CommitError as exc:
            self._failed = self._cannot_write(next(iter(exc.failed.values())))
            raise DeliveryError(self._failed) from None

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
        self._failed = None  # a new batch: the failed one's outcomes were never recorded
        try:
            self._make_dirs()
            if self._holds(name):
                return
            self._batch.put(self._new / name, data, temp_dir=self._tmp)
        except OSError as exc:
            raise DeliveryError(self._cannot_write(exc)) from None
        self._queued.add(name)
        if not self.sync_later:
            self.sync()

    def _cannot_write(self, exc: OSError) -> str:
        return f"{self.path}: cannot write to the outbox: {exc.strerror or exc}"

    def _make_dirs(self) -> None:
        if not self._made:
            for sub in ("tmp", "new", "cur"):
                (self.path / sub).mkdir(parents=True, exist_ok=True)
            durable.sweep(self.path / "tmp", lambda name: True, self.STALE_TEMP)
            self._made = True

    def _holds(self, name: str) -> bool:
        """Is the message already here: in this batch, in new/, or in cur/ (a mail client read it,
        adding ':2,S' or its own flags)? cur/ is listed again only when it changed (its mtime),
        not once a message: a mailbox of 100,000 read messages would cost 100,000 entries a
        message."""
        if name in self._queued or (self._new / name).exists():
            return True
        changed = self._cur.stat().st_mtime_ns
        if changed != self._read[0]:
            with os.scandir(self._cur) as entries:
                # Every name we give has the same length: the rest is the client's flags.
                self._read = (changed, {entry.name[: len(name)] for entry in entries})
        return name in self._read[1]


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
        or permanent (5xx), a timeout or a lost connection transient (`UnreachableError`: the breaker
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
                    raise UnreachableError(
                        f"{self.where}: the server closed the connection at {exc.stage}"
                    ) from None
                self._sleep(RECONNECT_PAUSE_S)
            except (UncertainDeliveryError, UnreachableError):
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
        if not options and connection.has_extn("pipelining") and (from_addr + recipient).isascii():
            self._envelope_pipelined(connection, from_addr, recipient)
        else:
            self._envelope(connection, from_addr, options, recipient)
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

    def _envelope(
        self, connection: smtplib.SMTP, from_addr: str, options: list[str], recipient: str
    ) -> None:
        """MAIL FROM, RCPT TO and DATA, each answered before the next goes; back at the 354."""
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

    def _envelope_pipelined(self, connection: smtplib.SMTP, from_addr: str, recipient: str) -> None:
        """The same three commands in one write to a server that offers PIPELINING (RFC 2920),
        their answers read after: two round trips fewer a message. Each answer is judged as if
        it had come alone, the first refusal named; nothing is handed over before the 354."""
        stages = (
            (f"MAIL FROM <{from_addr}>", (250,)),
            (f"RCPT TO <{recipient}>", (250, 251)),
            ("DATA", (354,)),
        )

        def commands() -> list[tuple[int, bytes]]:
            connection.send(
                f"mail FROM:{smtplib.quoteaddr(from_addr)}\r\n"
                f"rcpt TO:{smtplib.quoteaddr(recipient)}\r\ndata\r\n"
            )
            answers = []
            for _ in stages:
                answers.append(connection.getreply())
                if answers[-1][0] == 421:  # closing: no more answers come
                    break
            return answers

        answers = self._ask(stages[0][0], commands)
        for (stage, wanted), (code, text) in zip(stages, answers, strict=False):
            if code in wanted:
                continue
            if code == 421 or answers[-1][0] == 354:
                # Closing, or a server in DATA after a refusal: this conversation is over.
                connection.close()  # sock None: send() drops it
            else:
                self._reset(connection)
            raise self._refused(stage, code, text)

    def _ask(self, stage: str, command: Callable[[], _Answer]) -> _Answer:
        """One command before the message is handed over: a lost connection or a timeout is
        reported as such, never as uncertain (the message cannot have gone)."""
        try:
            return command()
        except smtplib.SMTPServerDisconnected as exc:
            if _timed_out(exc):
                raise UnreachableError(
                    f"{self.where}: no answer to {stage} within {self.settings.timeout_s:g} s"
                ) from None
            raise _Dropped(stage) from None
        except smtplib.SMTPNotSupportedError as exc:
            raise PermanentDeliveryError(f"{self.where}: {one_line(str(exc), limit=MAX_ERROR)}") from None
        except OSError as exc:  # a timeout, a reset, any other SMTPException
            raise UnreachableError(
                f"{self.where}: {stage} failed: "
                f"{one_line(str(exc) or type(exc).__name__, limit=MAX_ERROR)}"
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
                problem = UnreachableError(f"{where}: the server is busy: {answer}")
        except OSError as exc:  # refused, unreachable, timeout, TLS handshake, disconnected
            problem = UnreachableError(
                f"{where}: cannot connect: {one_line(str(exc) or type(exc).__name__, limit=MAX_ERROR)}"
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
                problem: DeliveryError = UnreachableError(f"{where}: login failed for now: {answer}")
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
            problem = UnreachableError(f"{where}: the server closed the connection during login")
        except smtplib.SMTPException as exc:  # e.g. "No suitable authentication method found."
            problem = DeliveryError(f"{where}: cannot log in as {username}: {one_line(str(exc), limit=MAX_ERROR)}")
        except OSError as exc:
            problem = UnreachableError(f"{where}: connection lost during login: {type(exc).__name__}")
        connection.close()
        raise problem

    def _password(self) -> _Secret:
        settings = self.settings
        value = read_password(
            "smtp", "SMTP", settings.password_env, settings.password_file, self._environ,
            DeliveryError,
        )
        if value is not None:
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
    # bytes.replace: a regular expression took twice as long over a 60 kB message.
    quoted = data.replace(b"\n.", b"\n..")
    if quoted.startswith(b"."):
        quoted = b"." + quoted
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
    return one_line(f"{code} {text}", limit=MAX_ERROR)



def make_sender(config: Config) -> Sender:
    """SMTP when [smtp] is configured, else the Maildir outbox in the data directory."""
    if config.smtp is not None:
        return SmtpSender(config.smtp)
    return Outbox(config.outbox_dir)


# -- building a reader's email from a stored digest -------------------------------------------------


class MailBuilder:
    """Turns a ledger row into the message for its recipient (None: nothing to send)."""

    def __init__(self, config: Config, store: Store, renderer: Renderer) -> None:
        self.config = config
        self.store = store
        self.renderer = renderer
        self.keys = store.signing_keys(config.data_dir)
        self.profiles = {p.name: p for p in config.profiles}
        host = urlsplit(config.output.base_url).hostname or "localhost"
        self.host = host
        self.shorten = LinkShortener(config.output.base_url, tuple(self.keys))
        # The links of the pass's readers, made by `begin` (to keep their short forms) and used
        # again for each reader's email: each costs two signatures. Kept for the pass alone.
        self._links: dict[tuple[str, str], EmailLinks] = {}
        self._mailto = config.email.unsubscribe_mailto or parseaddr(config.email.sender)[1]
        # The run's open mail rows in the ledger's order (read at the first message), and the
        # messages built ahead for the next of them (or why one could not be built).
        self._upcoming: dict[tuple[str, str, date], int] | None = None
        self._rows: list[Delivery] = []
        self._ahead: dict[tuple[str, str, date], OutgoingMail | Exception | None] = {}
        # While prefetching: the worker thread, its own store connection, and the batch it is
        # building (the index of its first row in the run's rows).
        self._worker: ThreadPoolExecutor | None = None
        self._reader: Store | None = None
        self._next: tuple[int, Future[_Batch]] | None = None
        # The pass of the run being delivered: its rows (RunContext.block) and digests.
        self._run: RunContext | None = None

    def begin(self, run: RunContext | None) -> None:
        """A new pass of the run (None: none): its block's rows only (every open row for the pass
        over what was left), and its digests just composed, rendered from memory, not read back."""
        self._run = run
        self._upcoming, self._rows, self._ahead = None, [], {}
        self._links = {}
        fresh = run.fresh if run is not None else {}
        # The block's short links, kept in one transaction before its first mail goes: its
        # digests' feedback codes, and its readers' manage and unsubscribe links (written once in
        # a reader's life). Kept a batch of mails at a time, they were written to the same pages
        # over and over: 3.2 MB a batch of 100 mails in a store of 100,000 readers.
        mailed = [
            digest for digest in fresh.values()
            if digest.items and (profile := self.profiles.get(digest.profile)) and profile.emails
        ]
        for digest in mailed:
            self.shorten.feedback(digest.profile, digest.day)
            for address in self.profiles[digest.profile].emails:
                links = self._links[(digest.profile, address)] = self._made_links(digest.profile, address)
                for url in (links.unsubscribe, links.manage):
                    if url:
                        self.shorten(url, group=digest.profile)
        # Codes made for no digest of this pass (a batch built ahead whose rows another worker
        # sent, then a pass with nothing to mail) are left for the next take: kept with the
        # next block's, or by the batch that uses them, never marked kept without being kept.
        made = self.shorten.take() if mailed else {}
        if made:
            try:
                self.store.save_short_links(made, max(digest.until for digest in mailed))
            except BaseException:
                self.shorten.forget(made)  # each batch keeps its own again
                raise

    def __call__(self, delivery: Delivery) -> OutgoingMail | None:
        address = delivery.address
        profile = self.profiles.get(delivery.profile)
        if (
            address is None
            or profile is None
            or address not in profile.emails
            or self.store.is_unsubscribed(profile.name, address)
        ):
            # The profile or the address left since the digest was made, or it unsubscribed:
            # checked for every message, so an unsubscribe during a run counts at once.
            log.info("%s: %s no longer subscribed; not sent", delivery.profile, address)
            return None
        key = _row_key(delivery)
        if key not in self._ahead:
            self._build_ahead(delivery)
        built = self._ahead.pop(key)
        if isinstance(built, Exception):
            raise built
        return built

    def _build_ahead(self, delivery: Delivery) -> None:
        """This row's message and those of the next open rows, BUILD_AHEAD in all, with the short
        links of them all kept in one transaction (one a message cost more than rendering it).
        Whether a row's address is still subscribed is checked when it is sent, not here; a
        message built for a row another run sends, or that is not sent, is dropped. While
        `prefetching`, the batch after this one is built meanwhile on a thread of its own."""
        if self._upcoming is None:
            self._rows = [
                row
                for row in self.store.deliveries(statuses=("pending", "deferred", "sending", "uncertain"))
                if row.kind == "mail"
                and (self._run is None or self._run.block is None or (row.profile, row.day) in self._run.block)
            ]
            self._upcoming = {_row_key(row): index for index, row in enumerate(self._rows)}
        start = self._upcoming.get(_row_key(delivery))
        rows = [delivery] if start is None else [delivery, *self._rows[start + 1:start + BUILD_AHEAD]]
        batch = self._prefetched(start)
        if batch is None:
            batch = self._batch(rows, self.store)
        built, made, until = batch
        self._ahead = built
        if made:
            try:
                self.store.save_short_links(made, until)
            except BaseException:
                self.shorten.forget(made)
                self._ahead.clear()  # none of them may go: their links would not work
                raise
        following = None if start is None else start + BUILD_AHEAD
        if self._worker is not None and following is not None and following < len(self._rows):
            self._next = (following, self._worker.submit(
                self._batch_in_worker, self._rows[following:following + BUILD_AHEAD]
            ))

    def _prefetched(self, start: int | None) -> _Batch | None:
        """The worker's batch, when it starts at `start`; any other is dropped (and the short
        links it made are made again when needed)."""
        if self._next is None:
            return None
        (first, future), self._next = self._next, None
        try:
            batch = future.result()
        except Exception:  # the worker could not read the store: build here instead
            log.debug("mail: building ahead failed; building in the run's thread", exc_info=True)
            return None
        if first == start:
            return batch
        self.shorten.forget(batch[1])
        return None

    def _batch_in_worker(self, rows: list[Delivery]) -> _Batch:
        if self._reader is None:  # the worker's own connection: sqlite3's are not shared
            self._reader = self.store.another()
        return self._batch(rows, self._reader)

    def _batch(self, rows: list[Delivery], store: Store) -> _Batch:
        """The messages of `rows` (or why one could not be built), the short links they made,
        and when the newest of their digests ends."""
        built: dict[tuple[str, str, date], OutgoingMail | Exception | None] = {}
        # Read once for the batch's rows of a profile and day, kept no longer: a run of 100,000
        # readers holds two batches' digests, not all of them.
        digests: dict[tuple[str, date], Digest | None] = {}
        for row in rows:
            try:
                built[_row_key(row)] = self._built(row, store, digests)
            except Exception as exc:  # this row's alone: raised when it is asked for
                built[_row_key(row)] = exc
        untils = [
            digest.until
            for row in rows
            if (digest := digests.get((row.profile, row.day))) is not None
        ]
        return built, self.shorten.take(), max(untils, default=datetime.min.replace(tzinfo=UTC))

    @contextmanager
    def prefetching(self) -> Iterator[None]:
        """Within it, each batch's successor is built on a thread of its own while this one's
        messages go out (sending is mostly waiting for the server). One thread at a time uses
        the renderer and the shortener: the run's thread builds only when the worker is idle."""
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mail-builder")
        try:
            yield
        finally:
            worker, self._worker = self._worker, None
            self._prefetched(None)  # wait for it; what it made is not kept
            if self._reader is not None:
                worker.submit(self._reader.close).result()
                self._reader = None
            worker.shutdown(wait=True)

    def _built(
        self, row: Delivery, store: Store, digests: dict[tuple[str, date], Digest | None]
    ) -> OutgoingMail | None:
        key = (row.profile, row.day)
        if key not in digests:
            digests[key] = (
                self._run.digest(store, row.profile, row.day)
                if self._run is not None
                else store.digest(row.profile, row.day)
            )
        digest = digests[key]
        if digest is None or row.address is None:
            return None
        if not digest.items and not self.config.email.send_empty:
            return None
        links = self.links(digest.profile, row.address)
        rendered = self.renderer.email(digest, recipient=row.address, links=links,
                                       thumbnails=self.config.email.thumbnails)
        return self._message(digest, row.address, rendered, links)

    def render(self, digest: Digest, address: str) -> tuple[RenderedEmail, EmailLinks]:
        """The reader's email, and its links; the text part's short links are kept in the store
        first, so each works when the mail arrives."""
        links = self.links(digest.profile, address)
        rendered = self.renderer.email(digest, recipient=address, links=links,
                                       thumbnails=self.config.email.thumbnails)
        made = self.shorten.take()
        if made:
            self.store.save_short_links(made, digest.until)
        return rendered, links

    def message(self, digest: Digest, address: str) -> OutgoingMail:
        rendered, links = self.render(digest, address)
        return self._message(digest, address, rendered, links)

    def _message(
        self, digest: Digest, address: str, rendered: RenderedEmail, links: EmailLinks
    ) -> OutgoingMail:
        email = self.config.email
        return build_message(
            rendered,
            sender=email.sender,
            recipient=address,
            message_id=message_id(digest, address, email.sender),
            date=digest.until,
            list_id=f"paperdigest {digest.profile} <{digest.profile}.paperdigest.{self.host}>",
            links=links,
            reply_to=email.reply_to,
        )

    def links(self, profile: str, address: str) -> EmailLinks:
        """The reader's links: those `begin` made for the pass's readers, else made now."""
        return self._links.get((profile, address)) or self._made_links(profile, address)

    def _made_links(self, profile: str, address: str) -> EmailLinks:
        base = self.config.output.base_url
        token = unsubscribe_token(self.keys, profile, address)
        mailto = self._mailto
        rss_path, atom_path = feeds.profile_feed_paths(profile)
        return EmailLinks(
            feed_rss=feeds.feed_url(base, rss_path),
            feed_atom=feeds.feed_url(base, atom_path),
            unsubscribe=f"{base}/unsubscribe/{token}",
            unsubscribe_mailto=f"mailto:{mailto}?subject={quote('unsubscribe ' + profile)}",
            manage=f"{base}/manage/{manage_token(self.keys, profile, address)}",
            feedback=FeedbackLinks(profile, base, tuple(self.keys)),
            shorten=self.shorten,
        )


def _row_key(row: Delivery) -> tuple[str, str, date]:
    return row.profile, row.channel, row.day


# -- the channel --------------------------------------------------------------------------------


def mail_channel(address: str) -> str:
    """The ledger's name of one address's mail row."""
    return f"mail:{address}"


class SenderRows:
    """A Sender and a builder as digest.deliver's MessageChannel: one message per "mail:" row."""

    kind = "mail"

    def __init__(self, sender: Sender, build: Callable[[Delivery], Mail | None]) -> None:
        self.sender = sender
        self._build = build
        if isinstance(sender, Outbox):
            sender.sync_later = True  # the loop calls sync() before it records a batch

    def sync(self) -> None:
        if isinstance(self.sender, Outbox):
            self.sender.sync()

    @property
    def where(self) -> str:
        if isinstance(self.sender, SmtpSender):
            return f"the mail server {self.sender.where}"
        if isinstance(self.sender, Outbox):
            return f"the outbox {self.sender.path}"
        return "the mail sender"

    @property
    def marks_hand_over(self) -> bool:
        # Only SMTP says when it hands over; the outbox's second copy is the same file.
        return isinstance(self.sender, SmtpSender)

    def build(self, row: Delivery) -> Mail | None:
        return self._build(row)

    def message_id(self, message: object) -> str | None:
        return message_id_of(message)  # type: ignore[arg-type]

    def send(self, message: object, row: Delivery, handing_over: Callable[[], None]) -> None:
        smtp = self.sender if isinstance(self.sender, SmtpSender) else None
        if smtp is not None:
            smtp.on_hand_over = handing_over
        try:
            self.sender.send(message, row.address or "")  # type: ignore[arg-type]
        finally:
            if smtp is not None:
                smtp.on_hand_over = None


def deliver_mail(
    store: Store,
    sender: Sender,
    build: Callable[[Delivery], Mail | None],
    clock: Callable[[], datetime],
    *,
    claimant: str,
    **options: Any,
) -> DeliveryReport:
    """Every mail delivery the ledger still owes, through `sender`, each message from `build`:
    digest.deliver.deliver_rows over the "mail:" rows (its keyword options pass through)."""
    return deliver_rows(store, SenderRows(sender, build), clock, claimant=claimant, **options)


class MailChannel:
    """Email: one "mail:ADDRESS" row per address of a profile, sent through the run's Sender."""

    name = "mail"
    kind = "mail"
    stops_for_the_run = True

    def __init__(self, config: Config, store: Store, renderer: Renderer, sender: Sender) -> None:
        self.config = config
        self.store = store
        self.sender = sender
        self.builder = MailBuilder(config, store, renderer)

    def targets(self, profile: ProfileConfig) -> list[str]:
        return [
            mail_channel(address)
            for address in profile.emails
            if not self.store.is_unsubscribed(profile.name, address)
        ]

    def deliver(self, run: RunContext) -> DeliveryReport:
        self.builder.begin(run)
        try:
            with self.builder.prefetching():
                return self._deliver(run)
        finally:
            self.builder.begin(None)  # the block's digests are not kept past it

    def _deliver(self, run: RunContext) -> DeliveryReport:
        config = self.config
        return deliver_rows(
            self.store,
            SenderRows(self.sender, self.builder),
            run.clock,
            claimant=run.claimant,
            lease=run.settings.claim_lease,
            quarantine=run.settings.uncertain_quarantine,
            breaker=config.smtp.breaker if config.smtp else DEFAULT_BREAKER,
            deadline=run.time_left(),
            stopping=run.stopping,
            progress=run.progress,
            only=run.block,
        )
