"""The sign-up worker: records queued subscribe forms and sends their mails, off the requests.

POST /subscribe only checks the form and queues it (digest.store, `signup_requests`): the same
work, and so the same time, whether the address is new, pending or already subscribed. This
worker, a thread of the web process with a store handle of its own, then does what depends on the
address (digest.subscriptions.sign_up) and sends the confirmation or manage-link mail.

The hour's mail budget (subscriptions.CONFIRMATIONS_PER_HOUR) is shared fairly: the next request
handled is the one whose network has had the fewest mails today, so a flood from a few places
waits behind everyone else. Past the budget a mail waits for the window to move; it is never
dropped (the page said when it would come). A request is leased while it is handled: if the
process dies, another worker takes it up after LEASE, and its mail may then go out twice (its
send had an unknown outcome). A mail the server defers (or that meets no server) is tried
again later, RETRIES times; one it refuses for good (no such mailbox) is not.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from digest.channels.mail import Sender
from digest.config import Config
from digest.errors import DigestError, LibraryError, PermanentDeliveryError
from digest.library import read_library
from digest.models import SignupRequest
from digest.notices import notice_mail
from digest.store import Store, open_store
from digest.subscriptions import next_mail_at, sign_up
from digest.tokens import confirm_token, manage_token

log = logging.getLogger(__name__)

LEASE = timedelta(minutes=10)
RETRIES = (timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=30), timedelta(hours=2))
# The network with the fewest mails over this time goes first.
FAIRNESS_WINDOW = timedelta(days=1)
POLL_SECONDS = 5.0  # how often an idle worker looks for requests queued by other processes


class SignupWorker:
    """Handles queued sign-ups in a thread of its own, started by the first `wake()`."""

    def __init__(self, config: Config, clock: Callable[[], datetime], keys: list[str],
                 make_sender: Callable[[], Sender]) -> None:
        self.config = config
        self.clock = clock
        self.keys = keys
        self.make_sender = make_sender
        self._wake = threading.Event()
        self._state = threading.Condition()
        self._asked = 0  # wake-ups so far; a round that began after wake-up N has seen its request
        self._done = 0
        self._stopping = False
        self._thread: threading.Thread | None = None

    def wake(self) -> None:
        """A request was queued (or the worker should start): handle what is due."""
        with self._state:
            self._asked += 1
            if self._thread is None or not self._thread.is_alive():
                self._stopping = False
                self._thread = threading.Thread(target=self._loop, name="digest-signups", daemon=True)
                self._thread.start()
        self._wake.set()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until every request queued before this call had its turn (for tests, shutdown)."""
        with self._state:
            asked = self._asked
            return self._state.wait_for(lambda: self._done >= asked or self._stopping, timeout)

    def stop(self, timeout: float = 10.0) -> None:
        with self._state:
            self._stopping = True
            thread = self._thread
        self._wake.set()
        if thread is not None:
            thread.join(timeout)

    def _loop(self) -> None:
        try:
            store = open_store(self.config)
        except DigestError as exc:
            log.error("sign-ups: %s", exc)
            with self._state:
                self._stopping = True
                self._state.notify_all()
            return
        with store:
            while True:
                with self._state:
                    if self._stopping:
                        self._state.notify_all()
                        return
                    began = self._asked
                self._wake.clear()
                try:
                    wait = self.handle_due(store)
                except DigestError as exc:  # a damaged store, a full disk: try again later
                    log.error("sign-ups: %s", exc)
                    wait = POLL_SECONDS
                with self._state:
                    self._done = max(self._done, began)
                    self._state.notify_all()
                self._wake.wait(min(wait, POLL_SECONDS))

    def handle_due(self, store: Store) -> float:
        """Handle every request that is due now; the seconds until the mail budget has room
        again (or POLL_SECONDS)."""
        while True:
            now = self.clock()
            opens = next_mail_at(store, now)
            if opens > now:
                return max(1.0, (opens - now).total_seconds())
            request = store.claim_signup(now, LEASE, fair_since=now - FAIRNESS_WINDOW)
            if request is None:
                return POLL_SECONDS
            self._handle(store, request, now)

    def _handle(self, store: Store, request: SignupRequest, now: datetime) -> None:
        outcome = sign_up(store, request.address, request.interests, now, request.network)
        # The file goes only into a subscription this request made: anyone may type a subscribed
        # address, and a stranger must not change someone's profile.
        if outcome.created and request.library is not None:
            self._import(store, outcome.subscriber.profile, request)
        if outcome.mail is None:
            if outcome.limited:
                log.warning("sign-ups: mail to %s held back: it had its %s for today",
                            request.address, "share of these mails")
            store.finish_signup(request.id)
            return
        profile, address = outcome.subscriber.profile, outcome.subscriber.address
        link = (
            f"{self.config.output.base_url}/confirm/"
            f"{confirm_token(self.keys, profile, address, now.timestamp())}"
            if outcome.mail == "confirm"
            else f"{self.config.output.base_url}/manage/{manage_token(self.keys, profile, address)}"
        )
        message = notice_mail(self.config, outcome.mail, address, link, now)
        try:
            with self.make_sender() as sender:
                sender.send(message, address)
        except PermanentDeliveryError as exc:  # no such mailbox: trying again will not help
            log.warning("sign-ups: the %s mail to %s was refused, given up: %s", outcome.mail,
                        address, exc)
            store.finish_signup(request.id)
            return
        except DigestError as exc:
            if request.attempts > len(RETRIES):
                log.error("sign-ups: the %s mail to %s was not sent after %d tries, given up: %s",
                          outcome.mail, address, request.attempts, exc)
                store.finish_signup(request.id)
            else:
                later = RETRIES[request.attempts - 1]
                log.warning("sign-ups: the %s mail to %s was not sent (tried again in %d min): %s",
                            outcome.mail, address, later.total_seconds() // 60, exc)
                store.retry_signup(request.id, now + later)
            return
        store.finish_signup(request.id)
        log.info("sign-ups: %s mail sent to %s", outcome.mail, address)

    def _import(self, store: Store, profile: str, request: SignupRequest) -> None:
        from digest.pipeline import import_library

        name = request.library_name or "library"
        try:
            library = read_library(request.library or b"", name)
        except LibraryError as exc:  # it was read once already, when the form came
            log.warning("sign-ups: the library of %s could not be read: %s", profile, exc)
            return
        report = import_library(store, profile, library, name, self.clock)
        log.info("sign-ups: %s imported %d papers (%d new) from %s", profile, report.entries,
                 report.added, name)
