"""What the test modules share: builders, fakes and constants. Import them from here (or, for
the sample digests and the links an email carries, from digests.py), never from a test module:
a test module imported as a helper is imported twice, and its tests can run twice.

Fixtures live in conftest.py. Nothing here touches the network or the wall clock.
"""

from __future__ import annotations

import asyncio
import email
import email.message
import email.policy
import mailbox
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from aiosmtpd.controller import Controller
from click.testing import CliRunner, Result

from digest import embed
from digest.config import (
    Config,
    EmailConfig,
    FetchConfig,
    OutputConfig,
    ProfileConfig,
    SourceConfig,
)
from digest.errors import ParseError
from digest.models import Origin, Paper, Record
from digest.sources import SourceKind

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"
T0 = datetime(2026, 11, 20, 21, 0, tzinfo=UTC)
MONDAY = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)  # 08:00 in Berlin

# The real `digest.embed.load_embedder`, taken before conftest's session fixture replaces it with
# one shared model (conftest imports this module first).
REAL_LOAD_EMBEDDER = embed.load_embedder


# -- records and a fake source kind ---------------------------------------------------------------


def record(
    title: str = "A Paper",
    source: str = "src",
    listing: str = "https://example.org/list",
    **fields: Any,
) -> Record:
    """A Record as a parser would give it; only what a test cares about needs saying."""
    return Record(origin=Origin(source, listing), title=title, **fields)


def fake_parse(body: bytes, origin: Origin) -> list[Record]:
    """A stand-in parser for pipeline tests: one paper per line, 'id title'; 'BROKEN' fails to parse."""
    text = body.decode()
    if text.startswith("BROKEN"):
        raise ParseError("expected lines of 'id title', got BROKEN")
    if text.startswith("CRASH"):
        raise KeyError("a parser bug")
    records = []
    for line in text.splitlines():
        arxiv_id, _, title = line.partition(" ")
        records.append(Record(origin=origin, title=title, arxiv_id=arxiv_id))
    return records


# The "fake" source kind: pages parsed by fake_parse (conftest's fake_kind fixture registers it).
FAKE_KIND = SourceKind("fake", __name__, "fake_parse", "one paper per line (tests only)")


def lines(*ids: str) -> bytes:
    """A fake source's page listing these arXiv ids, each titled 'Paper ID'."""
    return "\n".join(f"{i} Paper {i}" for i in ids).encode()


Handler = Callable[[httpx.Request], httpx.Response]


def by_host(**bodies: bytes | int) -> Handler:
    """An httpx.MockTransport handler: https://NAME.example.org/... answers bodies[NAME], a page
    (with an ETag) or, for an int, that HTTP status."""

    def handler(request: httpx.Request) -> httpx.Response:
        answer = bodies[request.url.host.split(".")[0]]
        if isinstance(answer, int):
            return httpx.Response(answer)
        return httpx.Response(200, content=answer, headers={"ETag": '"v1"'})

    return handler


# -- configs ---------------------------------------------------------------------------------------

# The captured arXiv API and Hugging Face pages: 80 papers, read from files, never fetched.
CAPTURED_SOURCES = f"""
[sources.arxiv-api]
kind = "arxiv-api"
path = "{FIXTURES / 'arxiv' / 'arxiv_api_2026-07-13_cat-cs.AI-LG_50entries_newformat.xml'}"

[sources.hf-daily]
kind = "hf-daily"
path = "{FIXTURES / 'hf' / 'hf_api_daily_papers_2026-06-12_30items.json'}"
"""

# A source whose file is missing: it fails on every run. (A missing file is a config error; one
# named by the run's date can only be missed at run time.)
BROKEN_SOURCE = """
[sources.arxiv-lg]
kind = "arxiv-rss"
path = "{date}/missing/feed.xml"
"""

# ml: two readers, ten papers a day in Berlin; quiet: one reader in New York, whose keyword
# matches nothing.
TWO_PROFILES = """
[profiles.ml]
email = ["a@example.org", "b@example.org"]
keywords = ["language model", "reinforcement learning", "agent"]
categories = ["cs.AI"]
max_items = 10
timezone = "Europe/Berlin"

[profiles.quiet]
email = ["c@example.org"]
keywords = ["zymurgy"]
min_score = 1
community_signal = false
timezone = "America/New_York"
deliver_at = "01:00"  # 02:00 there when the tests run
"""


def write_config(
    tmp_path: Path,
    sources: str = CAPTURED_SOURCES,
    *,
    profiles: str = TWO_PROFILES,
    broken_source: bool = False,
    extra: str = "",
    smtp_port: int | None = None,
    base_url: str = "https://digest.example.org",
) -> Path:
    """tmp_path/config.toml, its data in tmp_path/data; the path.

    `sources` and `profiles` are TOML tables ("" for none); `broken_source` adds BROKEN_SOURCE.
    `extra` follows the [email] table's `from`: more [email] keys, or whole tables after them.
    With `smtp_port`, mail goes to an SMTP server on 127.0.0.1 (no TLS), else to the Maildir
    tmp_path/data/outbox.
    """
    text = f"""
data_dir = "data"

[output]
base_url = "{base_url}"

[email]
from = "paperdigest <digest@example.org>"
{extra}

[fetch]
contact = "test@example.org"
{sources}{BROKEN_SOURCE if broken_source else ""}{profiles}"""
    if smtp_port is not None:
        text += f'\n[smtp]\nhost = "127.0.0.1"\nport = {smtp_port}\nsecurity = "none"\n'
    config = tmp_path / "config.toml"
    config.write_text(text, encoding="utf-8")
    return config


def sample_config(tmp_path: Path, extra: str = "") -> Path:
    """The README's offline sample config (samples/offline.toml, captured pages of every source
    kind), on a copy of samples/ and tests/fixtures/ in tmp_path, with `extra` TOML added; its
    data goes to tmp_path/demo-data."""
    shutil.copytree(ROOT / "samples", tmp_path / "samples")
    shutil.copytree(ROOT / "tests" / "fixtures", tmp_path / "tests" / "fixtures")
    path = tmp_path / "samples" / "offline.toml"
    if extra:
        path.write_text(path.read_text(encoding="utf-8") + extra, encoding="utf-8")
    return path


def make_config(
    tmp_path: Path, *sources: str | SourceConfig, profiles: tuple[ProfileConfig, ...] = ()
) -> Config:
    """A Config built in code: data and feeds in tmp_path/data (where the `store` fixture keeps
    its database), mail to the Maildir tmp_path/outbox, one retry per fetch. A source given by
    name is a "fake" one (the fake_kind fixture) listed at https://NAME.example.org/list?d={date}."""
    return Config(
        path=tmp_path / "config.toml",
        data_dir=tmp_path / "data",
        fetch=FetchConfig(contact="test@example.org", retries=1),
        sources=tuple(
            source
            if isinstance(source, SourceConfig)
            else SourceConfig(source, "fake", (f"https://{source}.example.org/list?d={{date}}",))
            for source in sources
        ),
        output=OutputConfig(feeds_dir=tmp_path / "data" / "feeds", outbox_dir=tmp_path / "outbox"),
        profiles=profiles,
        email=EmailConfig(sender="paperdigest <digest@example.org>"),
    )


# -- the command line and the outbox ---------------------------------------------------------------


def digest(config: Path, *args: str) -> Result:
    """`digest --config CONFIG ARGS` through click's CliRunner; an exception fails the test."""
    from digest.cli import cli  # on first use: conftest imports this module, the CLI everything

    return CliRunner().invoke(cli, ["--config", str(config), *args], catch_exceptions=False)


def outbox(tmp_path: Path, folder: str = "data/outbox") -> list[email.message.EmailMessage]:
    """The messages in the Maildir tmp_path/data/outbox (or tmp_path/folder), by recipient,
    then date."""
    box = mailbox.Maildir(tmp_path / folder, create=False)
    # get_bytes: the file as written (re-serialising a compat32 message would refold headers).
    messages = [
        email.message_from_bytes(box.get_bytes(key), policy=email.policy.default)
        for key in box.iterkeys()
    ]
    return sorted(messages, key=lambda m: (str(m["To"]), str(m["Date"])))


def text_of(message: email.message.EmailMessage) -> str:
    """A message's plain-text part."""
    body = message.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


# -- papers and profiles for ranking ---------------------------------------------------------------

TOPICS = {
    "diffusion": "denoising diffusion generative image synthesis sampling noise schedule score",
    "rl": "reinforcement learning policy reward agent environment exploration value function",
    "graphs": "graph neural network message passing node edge molecule representation",
    "robots": "robot manipulation grasping control locomotion sim-to-real hardware",
    "speech": "speech recognition acoustic audio spoken language transcription",
    "crypto": "blockchain cryptography consensus ledger smart contract security",
}


def paper(key: str, title: str, abstract: str = "", **fields: Any) -> Paper:
    """A stored Paper, first seen at T0; a key that starts with a digit is its arXiv id."""
    return Paper(
        key=key,
        title=title,
        first_seen=T0,
        first_source="test",
        first_listing="https://example.org/list",
        arxiv_id=key if key[0].isdigit() else None,
        abstract=abstract,
        **fields,
    )


def corpus() -> list[Paper]:
    """Twelve stored papers, two per topic, so tf-idf has something to learn from."""
    papers = []
    for number, (topic, text) in enumerate(TOPICS.items()):
        for variant in range(2):
            key = f"2605.{number:02d}{variant:03d}"
            papers.append(paper(key, f"A study of {topic} number {variant}", f"We study {text}."))
    return papers


def profile(name: str = "me", **fields: Any) -> ProfileConfig:
    return ProfileConfig(name=name, **fields)


def keys(ranked: tuple[Any, ...]) -> list[str]:
    """The paper keys of a ranking, in order."""
    return [item.paper.key for item in ranked]


# -- a real SMTP server ----------------------------------------------------------------------------


class Crash(BaseException):
    """Stands for the process dying (kill -9, power cut) mid-run: nothing may catch it."""


class Recorder:
    """An aiosmtpd handler: records what it accepted, answers scripted codes per recipient.

    `rcpt_answers[address]` / `data_answers[address]` are lists of answers used in turn, the last
    one repeating: ["451 4.3.0 try later", "250 OK"] refuses once, then accepts. After accepting a
    message for an address in `drop_after`, the server closes the connection (as on an idle timeout).
    For an address in `late`, the server stores the message, then waits that many seconds before
    its "250" (a server that answers after the client's timeout).
    """

    def __init__(self) -> None:
        self.received: list[tuple[str, bytes]] = []  # (recipient, message) per accepted message
        self.senders: list[str] = []  # the envelope sender (MAIL FROM) of each accepted message
        self.peers: set[Any] = set()  # one per connection that delivered a message
        self.rcpt_tries: Counter[str] = Counter()
        self.rcpt_answers: dict[str, list[str]] = {}
        self.data_answers: dict[str, list[str]] = {}
        self.logins: list[bytes] = []
        self.drop_after: set[str] = set()
        self.late: dict[str, float] = {}

    @staticmethod
    def _next(script: dict[str, list[str]], address: str) -> str | None:
        answers = script.get(address)
        if not answers:
            return None
        return answers.pop(0) if len(answers) > 1 else answers[0]

    # aiosmtpd calls handle_<COMMAND> hooks, when the handler has them.
    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        self.rcpt_tries[address] += 1
        answer = self._next(self.rcpt_answers, address)
        if answer is not None and not answer.startswith("2"):
            return answer
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        for address in envelope.rcpt_tos:
            answer = self._next(self.data_answers, address)
            if answer is not None and not answer.startswith("2"):
                return str(answer)
        self.peers.add(session.peer)
        self.logins.append(session.auth_data.login if session.authenticated else b"")
        self.senders.append(envelope.mail_from)
        for address in envelope.rcpt_tos:
            self.received.append((address, bytes(envelope.original_content)))
        if self.drop_after.intersection(envelope.rcpt_tos):
            # Runs once the "250" below is written: the client learns of it at its next command.
            asyncio.get_running_loop().call_soon(server.transport.close)
        delay = max((self.late.get(address, 0.0) for address in envelope.rcpt_tos), default=0.0)
        if delay:
            await asyncio.sleep(delay)
        return "250 2.0.0 accepted"

    def recipients(self) -> Counter[str]:
        return Counter(address for address, _ in self.received)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (yet)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server(**options: Any) -> tuple[Controller, Recorder]:
    """aiosmtpd on 127.0.0.1, started, with a Recorder as its handler; stop() the controller."""
    recorder = Recorder()
    controller = Controller(recorder, hostname="127.0.0.1", port=free_port(), **options)
    controller.start()
    return controller, recorder


# -- a real browser --------------------------------------------------------------------------------

# Playwright's own browser download needs the internet; Debian's chromium needs only apt.
CHROMIUM = shutil.which("chromium")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def playwright_or_skip() -> Any:
    """Playwright's sync_playwright, once Chromium is known to be there: skip without it on a
    developer's machine, fail in CI (which installs it)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = "the playwright package is not installed (pip install -e '.[test]')"
    else:
        missing = "" if CHROMIUM else "no chromium on PATH (apt-get install chromium)"
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"{missing}: CI must run the browser test, not skip it")
        pytest.skip(missing)
    return sync_playwright


# Colour arithmetic (WCAG 2.x), on colours as getComputedStyle gives them.


def rgb(css_color: str) -> tuple[int, int, int]:
    """'rgb(22, 27, 34)' or 'rgba(22, 27, 34, 1)', as getComputedStyle gives it."""
    numbers = re.findall(r"[\d.]+", css_color)
    assert len(numbers) >= 3, css_color
    if len(numbers) == 4:
        assert float(numbers[3]) == 1, f"{css_color} is see-through: no single colour to judge"
    red, green, blue = (round(float(n)) for n in numbers[:3])
    return red, green, blue


def luminance(css_color: str) -> float:
    """Relative luminance: 0 for black, 1 for white."""

    def linear(channel: int) -> float:
        c = channel / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    red, green, blue = (linear(c) for c in rgb(css_color))
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue


def contrast(one: str, other: str) -> float:
    """WCAG contrast ratio, 1 to 21; 4.5 is the AA minimum for body text."""
    lighter, darker = sorted((luminance(one), luminance(other)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


# -- the CLI in processes of its own (test_service.py, test_replicas.py) --------------------------


def digest_process(config: Path, *args: str, at: datetime = MONDAY) -> subprocess.Popen[str]:
    """`digest ARGS` in a new process whose clock starts at `at` and ticks on."""
    program = (
        "import sys; from freezegun import freeze_time; from digest.cli import main\n"
        f"with freeze_time({at.isoformat()!r}, tick=True):\n"
        f"    main(['-v', '--config', {str(config)!r}, *{list(args)!r}])\n"
    )
    return subprocess.Popen(
        [sys.executable, "-c", program],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


class Said:
    """A process's stderr, read line by line on a thread of its own as it comes."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        assert process.stderr is not None
        self.lines: list[str] = []
        self._thread = threading.Thread(
            target=lambda: self.lines.extend(iter(process.stderr.readline, "")), daemon=True
        )
        self._thread.start()

    def wait_for(self, text: str, seconds: float = 60.0) -> str:
        """The first line holding `text`, once it came."""
        wait_for(lambda: any(text in line for line in self.lines), seconds)
        return next(line for line in self.lines if text in line)

    def all(self) -> str:
        self._thread.join(timeout=60)
        return "".join(self.lines)


def wait_for(condition, seconds: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.1)


T = TypeVar("T")


def together(count: int, work: Callable[[int], T]) -> list[T | BaseException]:
    """Run work(0..count-1) on threads released at the same instant; results or exceptions."""
    start = threading.Barrier(count)
    results: list[T | BaseException] = [RuntimeError("not run")] * count

    def run(n: int) -> None:
        start.wait()
        try:
            results[n] = work(n)
        except BaseException as exc:
            results[n] = exc

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results
