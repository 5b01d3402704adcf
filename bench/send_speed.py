"""Benchmark: mail 2,000 digests of ~30 kB through SMTP on one connection, and into the Maildir outbox.

    python bench/send_speed.py [--messages 2000] [--repeat 5] [--kind email raw]

A local aiosmtpd server, in its own process (so it has the second core, as a real server would
have its own machine), accepts every message and throws it away. Each repeat starts from a fresh
store holding one digest with a pending ledger row per address, and times `deliver_mail` with a
real `SmtpSender`: for every row, claim it, build its message, send it, settle it. Two kinds of
message are timed: `email`, an `email.message.EmailMessage` built per row (text and HTML parts),
`raw`, the bytes written out directly, as digest.render.build_message does (the pipeline's
way), and `rendered`, the email rendered per reader by digest.render, as `digest run` does. Both are multipart/alternative, 20 papers in ~8 kB of text and ~19 kB of HTML with inlined
CSS: ~30 kB on the wire. Then the raw rows go to a Maildir outbox (one fsync per message), and
to a sender that does nothing, which leaves the cost of the ledger (claim, settle) alone.
Prints the median messages per second. Target: at least 200 messages/s through SMTP on the
2-core machine. A rendered digest of 20 papers is ~58 kB, twice the synthetic message, and the
pure-Python test server's work grows with the bytes: `nothing, rendered` shows what the client
side costs without it.
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import random
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from digest.channels.mail import Mail, Outbox, Sender, SmtpSender, deliver_mail, wire_bytes
from digest.config import SmtpConfig
from digest.models import Delivery, Digest
from digest.store import Store

DAY = date(2026, 6, 30)
NOW = datetime(2026, 6, 30, 7, tzinfo=UTC)
SENDER = "paperdigest <digest@example.org>"
VOCABULARY = (
    "diffusion model transformer attention sparse graph neural retrieval benchmark robust "
    "learning reinforcement policy gradient language vision contrastive self-supervised "
    "tokenizer scaling law inference latency quantization pruning distillation agents "
    "reasoning chain-of-thought alignment preference optimisation naïve Schrödinger – ≥"
)
WORDS = VOCABULARY.split()


# -- the server: accepts everything, keeps nothing -------------------------------------------------


class Discard:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "250 2.0.0 accepted"


def serve(port: int, ready: Event, stop: Event) -> None:
    from aiosmtpd.controller import Controller

    controller = Controller(Discard(), hostname="127.0.0.1", port=port)
    controller.start()
    ready.set()
    stop.wait()
    controller.stop()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- realistic messages ----------------------------------------------------------------------------


def bodies(seed: int = 0) -> tuple[str, str]:
    """A digest of 20 papers as text (~8 kB) and as HTML with inlined CSS (~19 kB)."""
    rng = random.Random(seed)
    text, html = ["Your papers for 2026-06-30\n"], ["<html><body style='margin:0;padding:0'>"]
    for number in range(20):
        title = " ".join(rng.choices(WORDS, k=12)).capitalize()
        authors = ", ".join(
            f"{rng.choice('ABCDEFGH')}. {rng.choice(WORDS).title()}" for _ in range(4)
        )
        excerpt = " ".join(rng.choices(WORDS, k=20))
        link = f"https://arxiv.org/abs/2606.{10000 + number}"
        text.append(f"\n{number + 1}. {title}\n   {authors}\n   {excerpt}\n   {link}\n")
        html.append(
            "<table role='presentation' style='width:100%;border-collapse:collapse;"
            "font-family:-apple-system,Segoe UI,Roboto,sans-serif;margin:0 0 16px 0'><tr>"
            f"<td style='padding:12px 16px;border-left:3px solid #3b6fd4;color:#1a1a1a'>"
            f"<a href='{link}' style='color:#1f4fb5;font-size:17px;font-weight:600;"
            f"text-decoration:none'>{title}</a>"
            f"<p style='margin:4px 0;color:#555;font-size:13px'>{authors}</p>"
            f"<p style='margin:6px 0;color:#222;font-size:15px;line-height:1.45'>{excerpt}</p>"
            f"<p style='margin:4px 0;color:#777;font-size:12px'>matches &quot;{title.split()[0]}"
            "&quot;; in cs.LG</p></td></tr></table>"
        )
    html.append("</body></html>")
    return "".join(text), "".join(html)


def message_id(row: Delivery) -> str:
    token = hashlib.sha256(row.channel.encode()).hexdigest()[:12]
    return f"<{row.day.isoformat()}.{row.profile}.{token}@example.org>"


def email_builder(text: str, html: str) -> Callable[[Delivery], Mail]:
    def build(row: Delivery) -> Mail:
        message = EmailMessage()
        message["From"] = SENDER
        message["To"] = row.address or ""
        message["Subject"] = "Your papers for 2026-06-30: 20 new"
        message["Message-ID"] = message_id(row)
        message.set_content(text)
        message.add_alternative(html, subtype="html")
        return message

    return build


@dataclass(frozen=True, slots=True)
class RawMail:
    message_id: str
    sender: str
    recipient: str
    data: bytes


def raw_builder(text: str, html: str) -> Callable[[Delivery], Mail]:
    # The parts are encoded once; per message only two headers change (as in render.build_message).
    placeholder = Delivery("bench", "mail:RECIPIENT@example.org", DAY, "pending")
    template = wire_bytes(email_builder(text, html)(placeholder))
    to_line = b"To: RECIPIENT@example.org\r\n"
    id_line = f"Message-ID: {message_id(placeholder)}\r\n".encode()
    assert to_line in template and id_line in template

    def build(row: Delivery) -> Mail:
        data = template.replace(to_line, f"To: {row.address}\r\n".encode(), 1)
        data = data.replace(id_line, f"Message-ID: {message_id(row)}\r\n".encode(), 1)
        return RawMail(message_id(row), "digest@example.org", row.address or "", data)

    return build


def rendered_builder(seed: int = 0) -> Callable[[Delivery], Mail]:
    """What `digest run` does per row: render the digest's email for the reader, write the bytes.

    One digest of 20 papers for every reader, rendered by digest.render as the pipeline does; its
    paper cards are made once and shared, the shell and footer are made per reader.
    """
    from digest.models import Paper, Reasons, ScoredPaper, SourceNote
    from digest.render import EmailLinks, Renderer, build_message
    from digest.render import message_id as render_message_id

    rng = random.Random(seed)
    items = []
    for number in range(20):
        paper = Paper(
            key=f"2606.{10000 + number}",
            title=" ".join(rng.choices(WORDS, k=12)).capitalize(),
            first_seen=NOW - timedelta(hours=3),
            first_source="arxiv-lg",
            first_listing="https://rss.arxiv.org/atom/cs.LG",
            arxiv_id=f"2606.{10000 + number}",
            abstract=". ".join(" ".join(rng.choices(WORDS, k=18)).capitalize() for _ in range(6)),
            authors=tuple(f"{rng.choice('ABCDEFGH')}. {rng.choice(WORDS).title()}" for _ in range(7)),
            categories=("cs.LG", "cs.CL"),
            primary_category="cs.LG",
            code_url=f"https://github.com/example/{number}",
            sources=("arxiv-lg", "hf-daily"),
        )
        reasons = Reasons(keywords=(rng.choice(WORDS),), categories=("cs.LG",))
        items.append(ScoredPaper(paper, 20.0 - number, reasons))
    digest = Digest(
        "bench", DAY, "UTC", NOW - timedelta(days=1), NOW, 2000,
        (SourceNote("arxiv-lg", "ok"),), tuple(items),
    )
    renderer = Renderer()

    def build(row: Delivery) -> Mail:
        address = row.address or ""
        links = EmailLinks(
            feed_rss="https://digest.example.org/feeds/profiles/bench.rss",
            feed_atom="https://digest.example.org/feeds/profiles/bench.atom",
            unsubscribe=f"https://digest.example.org/unsubscribe/{address}",
            unsubscribe_mailto="mailto:digest@example.org",
        )
        rendered = renderer.email(digest, recipient=address, links=links)
        return build_message(
            rendered,
            sender=SENDER,
            recipient=address,
            message_id=render_message_id(digest, address, SENDER),
            date=NOW,
            list_id="<bench.paperdigest.example.org>",
            links=links,
        )

    return build


class NoSender:
    """Sends nothing: what is left is the ledger's cost."""

    def send(self, message: Mail, recipient: str) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> NoSender:
        return self

    def __exit__(self, *exc_info: object) -> None:
        pass


# -- one timed run -----------------------------------------------------------------------------------


def timed_run(
    folder: Path, count: int, make_sender: Callable[[], Sender], build: Callable[[Delivery], Mail]
) -> tuple[float, int]:
    """Seconds to deliver `count` pending rows from a fresh store, and the number sent."""
    with Store.open(folder / "s.sqlite3") as store:
        store.save_digest(
            Digest("bench", DAY, "UTC", NOW - timedelta(days=1), NOW, 2000, (), ()),
            channels=[f"mail:reader{n:05d}@example.org" for n in range(count)],
            now=NOW,
        )
        with make_sender() as sender:
            began = time.perf_counter()
            report = deliver_mail(
                store, sender, build, lambda: NOW, claimant="bench", sleep=lambda s: None
            )
            elapsed = time.perf_counter() - began
    if isinstance(sender, SmtpSender) and sender.connections != 1:
        raise SystemExit(f"expected one SMTP connection, the run opened {sender.connections}")
    return elapsed, report.sent


def measure(
    label: str,
    repeat: int,
    count: int,
    make_sender: Callable[[], Sender],
    build: Callable[[Delivery], Mail],
) -> float:
    rates = []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as folder:
            elapsed, sent = timed_run(Path(folder), count, make_sender, build)
        assert sent == count, f"{label}: sent {sent} of {count}"
        rates.append(count / elapsed)
    median = statistics.median(rates)
    listed = ", ".join(f"{rate:.0f}" for rate in rates)
    print(f"{label:<22} {median:>8.0f}   {listed}")
    return median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--kind", nargs="+", choices=("email", "raw", "rendered"), default=["email", "raw", "rendered"]
    )
    args = parser.parse_args()

    text, html = bodies()
    builders = {
        "email": email_builder(text, html),
        "raw": raw_builder(text, html),
        "rendered": rendered_builder(),
    }
    sample = builders["email"](Delivery("p", "mail:x@example.org", DAY, "pending"))
    print(
        f"{args.messages} messages of {len(wire_bytes(sample)) / 1000:.1f} kB "
        f"(text {len(text) / 1000:.1f} kB + HTML {len(html) / 1000:.1f} kB), "
        f"median of {args.repeat} runs"
    )

    context = multiprocessing.get_context("spawn")
    ready, stop = context.Event(), context.Event()
    port = free_port()
    server = context.Process(target=serve, args=(port, ready, stop), daemon=True)
    server.start()
    try:
        if not ready.wait(30):
            raise SystemExit("the SMTP server did not start")
        settings = SmtpConfig(host="127.0.0.1", port=port, security="none")
        print(f"\n{'to':<22} {'msg/s':>8}   runs")
        medians = {
            kind: measure(
                f"SMTP, {kind}",
                args.repeat,
                args.messages,
                lambda: SmtpSender(settings),
                builders[kind],
            )
            for kind in args.kind
        }
    finally:
        stop.set()
        server.join(10)
    with tempfile.TemporaryDirectory() as outbox_parent:
        outbox = Path(outbox_parent) / "outbox"
        counter = iter(range(1_000_000))
        outbox_rate = measure(
            "Maildir outbox, raw",
            args.repeat,
            args.messages,
            lambda: Outbox(outbox / str(next(counter))),
            builders["raw"],
        )
    ledger_rate = measure(
        "nothing (ledger only)", args.repeat, args.messages, NoSender, builders["raw"]
    )
    render_rate = measure(
        "nothing, rendered", args.repeat, args.messages, NoSender, builders["rendered"]
    )

    print()
    for kind, median in medians.items():
        print(f"SMTP ({kind}): median {median:.0f} messages/s (target >= 200), one connection")
    print(f"Maildir outbox: median {outbox_rate:.0f} messages/s (write, fsync, rename)")
    print(f"claim + build + settle alone: median {ledger_rate:.0f} deliveries/s")
    print(f"claim + render + settle alone: median {render_rate:.0f} deliveries/s")


if __name__ == "__main__":
    main()
