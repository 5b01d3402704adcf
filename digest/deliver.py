"""The delivery loop: every message a channel owes, sent at most once, led by the ledger.

    deliver_rows(store, channel, clock, claimant=...)
        for each row of the channel's kind in the ledger that is pending, deferred, abandoned by a
        crashed run (its claim older than the lease), or uncertain and out of its quarantine:
            claim it (this run only) -> channel.build(row) -> channel.send
            -> settle sent|deferred|failed|skipped|uncertain, or give it back pending

A channel that sends one message per row (the mail channel, each team chat: digest/channels/) is a
`MessageChannel`: it builds a row's message and sends it, raising the errors of digest/errors.py.
This loop knows nothing of SMTP or HTTP; it decides, from those errors alone, what the ledger says.

How sure is "exactly once"? By outcome, as sure as the channel's protocol allows. A row is claimed
in a write transaction before its message is sent, so two overlapping runs never both send it, and
a re-run never sends a row the ledger says is sent. A channel tells apart a failure before its
message was handed over (the message provably did not go: it is retried) from one after (a timeout
or a lost connection before the answer: the server may have it). The latter is 'uncertain': never
re-sent by the run, and by a later run only after a quarantine; `digest status` shows it to a
person. A channel that marks its hand-over (`marks_hand_over`: SMTP after the server's 354, a
webhook just before its request) calls `handing_over()` as it starts, and the ledger records it, so
a run killed after that leaves a row 'sending' with its message id: once its lease runs out, the
next run makes it 'uncertain' instead of sending it again; a row killed before it is simply sent.

Errors (digest/errors.py): TransientDeliveryError is retried, now and in later runs;
UnreachableError (the server could not be reached) too, and it counts toward the circuit breaker:
after `breaker` of them in a row the channel sends no more this run and leaves the rest pending.
PermanentDeliveryError (a bounce, a 4xx webhook answer) is recorded and never retried;
UncertainDeliveryError is recorded 'uncertain'; a plain DeliveryError (login refused, an outbox not
writable, a webhook that no longer exists) is a setup problem that would fail every message, so it
stops the channel (raised, after deferring the row in hand). A deadline bounds the channel's run.
A StoreError (the store went away: a PostgreSQL server restarted) is raised as it is, not taken for
a message that cannot be built or sent: every row after it would fail the same way.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import NamedTuple, Protocol

from digest.errors import (
    DeliveryError,
    PermanentDeliveryError,
    StoreError,
    TransientDeliveryError,
    UncertainDeliveryError,
    UnreachableError,
)
from digest.models import Delivery
from digest.progress import Progress, no_progress
from digest.store import Outcome, Store
from digest.text import one_line

log = logging.getLogger(__name__)

MAX_ERROR = 300  # characters of an error kept in the ledger


class MessageChannel(Protocol):
    """A channel that sends one message per ledger row: mail (one per address), a team chat.

    `kind` is its rows' prefix in the ledger ("mail" for "mail:ADDRESS", "slack" for
    "slack:NAME"); `where` names it in messages ("the mail server smtp.example.org:587").
    """

    @property
    def kind(self) -> str: ...

    @property
    def where(self) -> str: ...

    # Does `send` call `handing_over()` as its message starts to go? Then a run killed after that
    # leaves the row 'uncertain', not sent again. (The outbox does not: a second copy of one of
    # its files is the same file.)
    @property
    def marks_hand_over(self) -> bool: ...

    def build(self, row: Delivery) -> object | None:
        """The row's message; None when there is nothing to send (the row is 'skipped'). The same
        row must give the same message id every time (the ledger records it)."""

    def message_id(self, message: object) -> str | None: ...

    def send(self, message: object, row: Delivery, handing_over: Callable[[], None]) -> None: ...

    def sync(self) -> None:
        """Make the messages sent so far durable (the outbox's folder): called before the
        ledger records them."""


# -- the ledger-driven loop -----------------------------------------------------------------------


class Problem(NamedTuple):
    """A delivery that did not go out in this run, and why (one line, safe to show)."""

    profile: str
    address: str  # whom it was for: an address, a chat's name
    error: str


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """What one channel did in a run. `left`: not tried (or given back untried): the server
    could not be reached, the circuit breaker opened, the run's deadline passed or it was stopped.
    `uncertain`: handed over without an answer; a person should look (see `digest status`).
    `stopped`: why the channel stopped before its end (breaker, deadline, a setup problem)."""

    sent: int = 0
    deferred: int = 0
    failed: int = 0
    skipped: int = 0
    left: int = 0
    problems: tuple[Problem, ...] = ()
    uncertain: int = 0
    stopped: str | None = None

    @property
    def needs_attention(self) -> bool:
        """Did anything go wrong that the run's exit code should say?"""
        return bool(self.problems or self.left or self.stopped)


def combined(first: DeliveryReport, then: DeliveryReport) -> DeliveryReport:
    """One channel's reports of two passes of a run, as one."""
    return DeliveryReport(
        sent=first.sent + then.sent,
        deferred=first.deferred + then.deferred,
        failed=first.failed + then.failed,
        skipped=first.skipped + then.skipped,
        left=first.left + then.left,
        problems=first.problems + then.problems,
        uncertain=first.uncertain + then.uncertain,
        stopped=then.stopped or first.stopped,
    )


class ChannelStopped(DeliveryError):
    """A setup problem stopped the channel (login refused, an outbox not writable, a webhook
    gone): the error's message, and what the channel had done until then."""

    def __init__(self, message: str, report: DeliveryReport) -> None:
        super().__init__(message)
        self.report = report


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


def deliver_rows(
    store: Store,
    channel: MessageChannel,
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
    only: Collection[tuple[str, date]] | None = None,
) -> DeliveryReport:
    """Send every message of `channel`'s kind the ledger still owes, each at most once, and
    record how it went; with `only`, those of these (profile, day) digests alone.

    `claimant` names this run in the ledger. Only a failure that proves the message did not go is
    retried: a transient error is tried again after each of `retry_delays`, then the row is
    'deferred' for the next run, or 'failed' once it has had `max_attempts` tries over all runs. A
    permanent refusal is 'failed' at once. A message handed over without an answer is 'uncertain':
    never re-sent by this run, and by a later run only once `quarantine` has passed since. After
    `breaker` failures in a row to reach the server (UnreachableError, or an uncertain send) the
    channel stops: the row in hand and the rest stay pending, no try counted (it is not the
    recipient's fault). So does a run past its `deadline` (counted from this call; a run's
    channels pass what is left of the run's own). A setup problem
    (a plain DeliveryError) defers the row in hand and is raised: no message could go. A 'sending'
    row claimed more than `lease` ago was abandoned by a crashed run: taken over, or made
    'uncertain' when that run had begun handing its message over. When `stopping()` turns true
    (SIGTERM), the run ends between two messages; the rest wait.
    """
    kind = channel.kind
    counts = {"sent": 0, "deferred": 0, "failed": 0, "skipped": 0, "uncertain": 0}
    problems: list[Problem] = []
    started = clock()
    ends = started + deadline if deadline is not None else None
    trips = _Breaker(breaker)

    def report(left: int, stopped: str | None = None) -> DeliveryReport:
        return _report(counts, problems, left, stopped)

    # A run killed while handing a message over may have sent it: 'uncertain', as a send with no
    # answer is, not sent again.
    if channel.marks_hand_over:
        for row in store.abandoned_hand_overs(started - lease, _ABANDONED, kind=kind):
            counts["uncertain"] += 1
            problems.append(Problem(row.profile, _whom(row), _ABANDONED))
            log.warning(
                "%s %s %s to %s: uncertain (%s)", kind, row.profile, row.day, _whom(row),
                _ABANDONED, extra={"profile": row.profile},
            )
    rows = [
        row
        for row in store.deliveries(statuses=("pending", "deferred", "sending", "uncertain"))
        if row.kind == kind
        and (only is None or (row.profile, row.day) in only)
        and (row.status != "uncertain" or _quarantined_until(row, quarantine) < started)
    ]

    ledger = _Ledger(store, claimant, clock, rows, lease, quarantine, channel.sync)

    def settle(
        row: Delivery, status: str, error: str | None = None, message_id: str | None = None
    ) -> None:
        ledger.settle(Outcome(row, status, error, message_id))
        counts[status] += 1
        if error is not None:
            problems.append(Problem(row.profile, _whom(row), error))
        shown = f"{status} ({error})" if error else status
        log.info(
            "%s %s %s to %s: %s", kind, row.profile, row.day, _whom(row), shown,
            extra={"profile": row.profile},
        )

    def out_of_time(left: int) -> DeliveryReport:
        said = (
            "the run's deadline ([delivery] deadline, counted from its start) passed; "
            f"{left} deliveries left pending for the next run"
        )
        log.warning("%s: %s", kind, said)
        return report(left, said)

    try:
        for index, row in enumerate(rows):
            progress(kind, index, len(rows), _whom(row))
            if stopping():  # SIGTERM: stop between two messages; the rest stay pending
                left = len(rows) - index
                log.info("%s: stopping; %d deliveries left for the next run", kind, left)
                return report(left)
            if ends is not None and clock() >= ends:
                return out_of_time(len(rows) - index)
            if not ledger.claimed(index):
                continue  # sent or given up meanwhile, or another run is on it
            attempts = row.attempts + 1  # the claim counted this try
            try:
                message = channel.build(row)
            except StoreError:  # not this message's fault: the store is gone for every row
                raise
            except Exception as exc:  # one digest that cannot be built must not block the others
                log.exception("%s %s %s to %s: could not build the message", kind, row.profile,
                              row.day, _whom(row))
                error = one_line(f"could not build the message: {type(exc).__name__}: {exc}", limit=MAX_ERROR)
                settle(row, "failed" if attempts >= max_attempts else "deferred", error)
                continue
            if message is None:
                settle(row, "skipped")
                continue
            message_id = channel.message_id(message)
            handing_over = ledger.marker(row, message_id)
            try:
                _send_with_retries(
                    channel, message, row, handing_over, retry_delays, sleep, trips, clock, ends
                )
            except UncertainDeliveryError as exc:
                settle(row, "uncertain", one_line(str(exc), limit=MAX_ERROR), message_id)
                if trips.strikes >= trips.limit:
                    return _stop_channel(channel, report, len(rows) - index - 1, exc, trips.strikes)
            except PermanentDeliveryError as exc:
                settle(row, "failed", one_line(str(exc), limit=MAX_ERROR))
            except (_BreakerOpen, _OutOfTime) as stop:
                # The message did not go, and not for this recipient's fault: give the row back.
                ledger.give_back(row, one_line(str(stop.cause), limit=MAX_ERROR))
                left = len(rows) - index
                if isinstance(stop, _BreakerOpen):
                    return _stop_channel(channel, report, left, stop.cause, trips.strikes)
                return out_of_time(left)
            except TransientDeliveryError as exc:
                if isinstance(exc, UnreachableError):
                    # Not the recipient's fault: never 'failed' for it, however many runs it takes.
                    settle(row, "deferred", one_line(str(exc), limit=MAX_ERROR))
                elif attempts >= max_attempts:
                    settle(row, "failed", one_line(f"gave up after {attempts} tries: {exc}", limit=MAX_ERROR))
                else:
                    settle(row, "deferred", one_line(str(exc), limit=MAX_ERROR))
            except DeliveryError as exc:  # login refused, outbox not writable: no message could go
                said = one_line(str(exc), limit=MAX_ERROR)
                settle(row, "deferred", said)
                raise ChannelStopped(said, report(len(rows) - index - 1, said)) from exc
            except StoreError:  # the hand-over could not be recorded: the store is gone
                raise
            except Exception as exc:  # a bug on the sending side; the next run may do better
                log.exception("%s %s %s to %s: unexpected error", kind, row.profile, row.day, _whom(row))
                error = one_line(f"{type(exc).__name__}: {exc}", limit=MAX_ERROR)
                settle(row, "failed" if attempts >= max_attempts else "deferred", error)
            else:
                settle(row, "sent", message_id=message_id)
        progress(kind, len(rows), len(rows), f"{counts['sent']} sent")
        return report(0)
    finally:
        # Write the outcomes still held, and give back the rows claimed but never tried.
        ledger.close()


# Rows claimed, and their outcomes written, this many to a transaction: a batch of messages costs
# one commit, not three a message.
CLAIM_BATCH = 100


class _Ledger:
    """The ledger's side of one channel's run, written in batches.

    Rows are claimed CLAIM_BATCH at a time, in one transaction. Outcomes are held and written
    together: at the end of each batch, or, for a channel that marks its hand-over, in the very
    transaction that records the next message's hand-over (so each message costs one commit, and
    a run killed at any moment leaves at most one message handed over and not settled: the one
    it was sending, which the next run makes 'uncertain'). What a kill loses is therefore only the
    record of messages already sent: their rows stay 'sending' without a hand-over, and the next
    run, after the lease, sends them again. That is harmless where it can happen: the outbox
    writes the same file again (its name is the Message-ID), and SMTP and chats, which mark the
    hand-over, never hold more than the one outcome the next hand-over writes.
    """

    def __init__(
        self,
        store: Store,
        claimant: str,
        clock: Callable[[], datetime],
        rows: Sequence[Delivery],
        lease: timedelta,
        quarantine: timedelta,
        sync: Callable[[], None],
    ) -> None:
        self.store, self.claimant, self.clock, self.sync = store, claimant, clock, sync
        self.rows, self.lease, self.quarantine = rows, lease, quarantine
        self.got: dict[int, bool] = {}  # by index in rows: claimed by this run, not yet settled
        self.held: list[Outcome] = []
        self.next_batch = 0  # the index the next claim starts at

    def claimed(self, index: int) -> bool:
        """Is row `index` this run's? Claims its batch when it comes to it."""
        if index >= self.next_batch:
            self.flush()
            batch = self.rows[index : index + CLAIM_BATCH]
            now = self.clock()
            got = self.store.claim_many(
                batch, self.claimant, now, stale_before=now - self.lease,
                quarantined_before=now - self.quarantine,
            )
            self.got = {index + n: taken for n, taken in enumerate(got)}
            self.next_batch = index + len(batch)
        return self.got.pop(index, False)

    def settle(self, outcome: Outcome) -> None:
        self.held.append(outcome)

    def flush(self) -> None:
        if self.held:
            self.sync()  # what the ledger is about to record as sent is on disk first
            self.store.settle_many(self.held, self.claimant, self.clock())
            self.held = []

    def marker(self, row: Delivery, message_id: str | None) -> Callable[[], None]:
        """What the channel calls as it hands `row`'s message over: the ledger records it, with
        the outcomes held so far."""

        def handing_over() -> None:
            if self.held:
                self.sync()
            held, self.held = self.held, []
            self.store.handing_over(row, self.claimant, self.clock(), message_id or "", held)

        return handing_over

    def give_back(self, row: Delivery, error: str) -> None:
        self.flush()
        self.store.release(row, self.claimant, self.clock(), error=error)

    def close(self) -> None:
        self.flush()
        untried = [self.rows[index] for index, taken in self.got.items() if taken]
        self.got = {}
        self.store.release_many(untried, self.claimant, self.clock(), error=None)


def _whom(row: Delivery) -> str:
    """Whom a row delivers to, as messages say it: the address, the chat's name, "feed"."""
    return row.target or row.channel


def _quarantined_until(row: Delivery, quarantine: timedelta) -> datetime:
    """When an 'uncertain' row may be sent again: its quarantine counted from the attempt."""
    assert row.updated is not None
    return row.updated + quarantine


def _stop_channel(
    channel: MessageChannel,
    report: Callable[[int, str | None], DeliveryReport],
    left: int,
    cause: DeliveryError,
    strikes: int,
) -> DeliveryReport:
    """The circuit breaker opened: said once, the rest left pending for the next run (with
    nothing left, the uncertain rows say enough)."""
    if left == 0:
        return report(0, None)
    said = (
        f"{channel.where} failed {strikes} times in a row (last: {cause}); "
        f"nothing more sent this run, {left} deliveries left pending for the next run"
    )
    log.warning("%s: %s", channel.kind, said)
    return report(left, one_line(said, limit=MAX_ERROR))


def _send_with_retries(
    channel: MessageChannel,
    message: object,
    row: Delivery,
    handing_over: Callable[[], None],
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
            channel.send(message, row, handing_over)
            trips.answered()
            return
        except UncertainDeliveryError:
            trips.strike()
            raise
        except UnreachableError as exc:
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
            if isinstance(failure, UnreachableError):
                raise _OutOfTime(failure)
            raise failure
        log.debug("%s to %s: %s; trying again in %.0f s", channel.kind, _whom(row), failure, delay)
        sleep(delay)


def _report(
    counts: dict[str, int], problems: list[Problem], left: int, stopped: str | None
) -> DeliveryReport:
    return DeliveryReport(
        sent=counts["sent"],
        deferred=counts["deferred"],
        failed=counts["failed"],
        skipped=counts["skipped"],
        left=left,
        problems=tuple(problems),
        uncertain=counts["uncertain"],
        stopped=stopped,
    )
