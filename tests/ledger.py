"""The delivery tests' shared fakes: ledger rows, messages, an injected clock and sleep.

Imported by test_deliver.py and test_deliver_faults.py (a test module is never imported by another).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from helpers import T0

from digest.channels.mail import deliver_mail
from digest.deliver import DeliveryReport
from digest.models import Delivery, Digest
from digest.store import Store

DAY = date(2026, 11, 20)

# -- ledger rows, messages, time --------------------------------------------------------------


class Clock:
    """The injected clock: stands still unless a test moves it."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, by: timedelta) -> None:
        self.now += by


def open_store(tmp_path: Path) -> Store:
    return Store.open(tmp_path / "s.sqlite3")


def owe(store: Store, addresses: list[str], profile: str = "alice") -> None:
    """Store an (empty) digest with one pending mail row per address."""
    store.save_digest(
        Digest(
            profile=profile,
            day=DAY,
            timezone="UTC",
            since=T0 - timedelta(days=1),
            until=T0,
            scanned=0,
            sources=(),
            items=(),
        ),
        channels=[f"mail:{address}" for address in addresses],
        now=T0,
    )


def addresses(count: int) -> list[str]:
    return [f"reader{n:03}@example.org" for n in range(count)]


def message_id(row: Delivery) -> str:
    """The same row always gets the same Message-ID (the outbox relies on it)."""
    token = hashlib.sha256(f"{row.profile}|{row.day}|{row.channel}".encode()).hexdigest()[:16]
    return f"<{row.profile}.{row.day:%Y%m%d}.{token}@paperdigest.test>"


def build(row: Delivery) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "paperdigest <digest@example.org>"
    message["To"] = row.address or ""
    message["Subject"] = f"Your papers for {row.day}"
    message["Message-ID"] = message_id(row)
    message.set_content(f"Hello {row.address},\nthree new papers today.\n")
    message.add_alternative("<p>three new papers today</p>", subtype="html")
    return message


@dataclass(frozen=True)
class Prepared:
    """A message already written out as bytes, like digest.render.OutgoingMail (a RawMail)."""

    message_id: str
    sender: str
    recipient: str
    data: bytes


def prepared(row: Delivery) -> Prepared:
    address = row.address or ""
    data = (
        "From: paperdigest <digest@example.org>\r\n"
        f"To: {address}\r\n"
        f"Subject: Prepared papers for {row.day}\r\n"
        f"Message-ID: {message_id(row)}\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "\r\n"
        ".a line that starts with a dot\r\n"
        "three new papers today\r\n"
    ).encode()
    return Prepared(message_id(row), "digest@example.org", address, data)


def statuses(store: Store) -> dict[str, str]:
    return {row.channel.removeprefix("mail:"): row.status for row in store.deliveries()}


class Sleeps(list[float]):
    """An injected sleep that records the delays instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def run(
    store: Store,
    sender: Any,
    clock: Clock,
    *,
    claimant: str = "run-1",
    make: Callable[[Delivery], EmailMessage | None] = build,
    sleep: Callable[[float], None] = lambda s: None,
    **options: Any,
) -> DeliveryReport:
    return deliver_mail(store, sender, make, clock, claimant=claimant, sleep=sleep, **options)
