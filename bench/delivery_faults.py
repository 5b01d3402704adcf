"""Benchmark (issue 15 "Figures"): the whole `digest run` against servers that misbehave.

    python bench/delivery_faults.py [--profiles 200] [--quick] [--only slow hung-smtp ...]

Every server listens on 127.0.0.1 and lives in this process, in threads: an SMTP server
(aiosmtpd) and a webhook receiver (the standard library's http.server) that store what they get,
and a TCP server that accepts connections and never says a word. Each mode starts from a fresh
folder: a config.toml with N profiles, each with one address (mail over SMTP) and the shared chat
`[chat.team] kind = "webhook"`, a store filled by `digest ingest` of captured pages (the arXiv API
and Hugging Face files of tests/fixtures/, read as data), `[rank] embeddings = false` and
`[log] format = "json"` (one line per delivery with a millisecond time). The job runs as a real
process, as cron runs it:

    python -m digest --config CFG run --no-fetch --now

or, when the runs need a clock an hour apart, through a small driver handing `digest run` a clock
(as tests/test_crash_loop.py does). The modes:

  slow          an SMTP server that stores each message and answers 250 only after the client's
                `[smtp] timeout` (2 s), and a webhook receiver that stores the POST and answers 200
                after `[fetch] read_timeout` (1 s). 3 runs an hour apart: copies stored per
                message (by Message-ID, by the webhook's Idempotency-Key) must be exactly 1; the
                ledger's status counts (uncertain expected) and the exit codes.
  hung-smtp     an SMTP server that accepts the connection and never answers, every timeout at
                its default ([smtp] timeout 30 s): the wall time until the run gives up on mail
                (at most 2 minutes), and the webhook got every digest, the feeds were written.
  hung-webhook  the same for a webhook receiver that accepts and never answers ([fetch]
                read_timeout 30 s): every mail arrived.
  hung-tls-webhook  the same server behind an https:// webhook URL (Slack's and Discord's
                are https): the TLS handshake is never answered, so each post is a connect
                timeout ([fetch] connect_timeout 10 s), which the client retries.
  feeds-full    `[output] feeds_dir` on a full filesystem (a 64 kB tmpfs filled up; as root)
                or, when mounting is not possible, a file where the folder should be (ENOTDIR):
                100% of mail and webhook deliveries made, the run's `error: feeds:` line, exit 1.

One setting is not the default in every mode: `[fetch] host_intervals = {"127.0.0.1" = 0}`, so
N webhook posts to the one loopback host are not spaced 1 s apart (the default politeness
interval per host); it does not change how long a hung server holds the run (each hung request
waits far longer than the interval). `--quick` runs fewer profiles, and the hung modes with 5 s
timeouts (not the default figure; the table says so). Prints a table of the figures at the end;
exits 1 when a figure misses its target.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email.parser
import email.policy
import errno
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from digest.store import Store  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures"  # captured pages, read as data (nothing imported)
SOURCES = f"""
[sources.arxiv-api]
kind = "arxiv-api"
path = "{FIXTURES / 'arxiv' / 'arxiv_api_2026-07-13_cat-cs.AI-LG_50entries_newformat.xml'}"

[sources.hf-daily]
kind = "hf-daily"
path = "{FIXTURES / 'hf' / 'hf_api_daily_papers_2026-06-12_30items.json'}"
"""
KEYWORDS = ("language model", "reinforcement learning", "agent", "diffusion", "graph")
TARGET_S = 120.0  # a hung server may hold a run this long, by default
RUN_LIMIT_S = 600.0  # a run still going then is killed (the bench's own guard)

# `digest run` with a clock starting at argv[2], at the wall clock's pace.
DRIVER = """
import sys, time
from datetime import datetime, timedelta
from digest.cli import _Context, cli
start, began = datetime.fromisoformat(sys.argv[2]), time.monotonic()
def clock():
    return start + timedelta(seconds=time.monotonic() - began)
cli.main(args=["--config", sys.argv[1], "run", "--no-fetch", "--now"],
         obj=_Context(sys.argv[1], clock), prog_name="digest")
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- the servers ----------------------------------------------------------------------------------


class MailKeeper:
    """An aiosmtpd handler that keeps each message's (Message-ID, recipient), then answers 250,
    after `late_s` when it is set (a server that stored the message and answers late)."""

    def __init__(self, late_s: float = 0.0) -> None:
        self.late_s = late_s
        self.received: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._headers = email.parser.BytesHeaderParser(policy=email.policy.default)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content = envelope.original_content or envelope.content or b""
        if isinstance(content, str):
            content = content.encode("utf-8", "replace")
        message_id = str(self._headers.parsebytes(content).get("Message-ID", "")).strip()
        with self._lock:
            for recipient in envelope.rcpt_tos:
                self.received.append((message_id, recipient))
        if self.late_s:
            await asyncio.sleep(self.late_s)
        return "250 2.0.0 stored"

    def copies(self) -> Counter[str]:
        with self._lock:
            return Counter(message_id for message_id, _ in self.received)


@contextlib.contextmanager
def smtp_server(late_s: float = 0.0) -> Iterator[tuple[int, MailKeeper]]:
    from aiosmtpd.controller import Controller

    keeper = MailKeeper(late_s)
    port = free_port()
    controller = Controller(keeper, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, keeper
    finally:
        controller.stop()


class HookKeeper:
    """What the webhook receiver stored: each POST's Idempotency-Key (one per digest)."""

    def __init__(self, late_s: float = 0.0) -> None:
        self.late_s = late_s
        self.keys: list[str] = []
        self._lock = threading.Lock()

    def store(self, key: str) -> None:
        with self._lock:
            self.keys.append(key)

    def copies(self) -> Counter[str]:
        with self._lock:
            return Counter(self.keys)


@contextlib.contextmanager
def webhook_server(late_s: float = 0.0) -> Iterator[tuple[str, HookKeeper]]:
    """A webhook receiver: stores each POST, answers 200 (after `late_s` when set)."""
    keeper = HookKeeper(late_s)

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            json.loads(body)  # a JSON document, or the handler fails (and the bench says so)
            keeper.store(self.headers.get("Idempotency-Key", ""))
            if keeper.late_s:
                time.sleep(keeper.late_s)
            answer = b'{"ok": true}'
            try:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)
            except OSError:  # the client gave up waiting: the message is stored all the same
                pass

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", keeper
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@dataclass
class Hung:
    """A TCP server that accepts every connection and never answers (SMTP or HTTP alike)."""

    port: int = 0
    connections: int = 0
    first_at: float | None = None  # the wall clock (time.time()) at the first connection
    _held: list[socket.socket] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)


@contextlib.contextmanager
def hung_server() -> Iterator[Hung]:
    hung = Hung()
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen(64)
    listening.settimeout(0.2)
    hung.port = int(listening.getsockname()[1])

    def accept() -> None:
        while not hung._stop.is_set():
            try:
                connection, _ = listening.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            hung._held.append(connection)  # held open, never read, never written
            if hung.first_at is None:
                hung.first_at = time.time()
            hung.connections += 1

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield hung
    finally:
        hung._stop.set()
        thread.join(5)
        for connection in hung._held:
            connection.close()
        listening.close()


# -- a folder, a config, a store --------------------------------------------------------------


def profiles_toml(count: int) -> str:
    tables = []
    for number in range(count):
        keywords = ", ".join(f'"{KEYWORDS[(number + i) % len(KEYWORDS)]}"' for i in range(2))
        tables.append(
            f"[profiles.p{number:03}]\n"
            f'email = ["r{number:03}@example.org"]\n'
            f"keywords = [{keywords}]\n"
            'timezone = "UTC"\n'
            'chat = ["team"]\n'
        )
    return "\n".join(tables)


def write_config(
    folder: Path,
    *,
    profiles: int,
    smtp_port: int,
    hook_url: str,
    smtp_timeout: float | None = None,
    read_timeout: float | None = None,
    connect_timeout: float | None = None,
    feeds_dir: Path | None = None,
) -> Path:
    """folder/config.toml (data in folder/data); timeouts left out are at their defaults."""
    output = f'feeds_dir = "{feeds_dir}"\n' if feeds_dir is not None else ""
    smtp_extra = f"timeout = {smtp_timeout:g}\n" if smtp_timeout is not None else ""
    fetch_extra = f"read_timeout = {read_timeout:g}\n" if read_timeout is not None else ""
    if connect_timeout is not None:
        fetch_extra += f"connect_timeout = {connect_timeout:g}\n"
    text = f"""data_dir = "data"

[output]
base_url = "https://digest.example.org"
{output}
[email]
from = "paperdigest <digest@example.org>"

[smtp]
host = "127.0.0.1"
port = {smtp_port}
security = "none"
{smtp_extra}
[fetch]
contact = "bench@example.org"
host_intervals = {{ "127.0.0.1" = 0 }}
{fetch_extra}
[rank]
embeddings = false

[log]
format = "json"
level = "info"

[chat.team]
kind = "webhook"
url = "{hook_url}"
{SOURCES}
{profiles_toml(profiles)}"""
    config = folder / "config.toml"
    config.write_text(text, encoding="utf-8")
    return config


def ingest(config: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "digest", "--config", str(config), "ingest"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    if done.returncode != 0:
        raise SystemExit(f"digest ingest failed ({done.returncode}):\n{done.stderr[-2000:]}")


@dataclass
class Run:
    """One `digest run` process: exit code, wall time, output, and its log's events."""

    exit_code: int
    seconds: float
    stdout: str
    stderr: str
    started: float  # the wall clock (time.time()) at its start
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def errors(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("error: ")]

    def said(self, prefix: str) -> list[str]:
        return [line for line in self.stdout.splitlines() if line.startswith(prefix)]

    def channel_times(self) -> dict[str, tuple[float, float]]:
        """Per channel, the first and last log line about it, in seconds from the start."""
        times: dict[str, list[float]] = {}
        for event in self.events:
            channel = _channel_of(event)
            if channel:
                at = datetime.fromisoformat(event["time"]).timestamp() - self.started
                times.setdefault(channel, []).append(at)
        return {name: (min(found), max(found)) for name, found in times.items()}

    def gave_up(self, channel: str, began_at: float | None) -> tuple[float, float] | None:
        """When the run stopped `channel` (its breaker's line, its last), in seconds from the
        start, and how long it was on it: from `began_at` (the wall clock when the channel first
        reached the server), else from the last line of another channel before its first."""
        spans = self.channel_times()
        if channel not in spans:
            return None
        first, last = spans[channel]
        if began_at is not None:
            return last, last - (began_at - self.started)
        before = [end for name, (_, end) in spans.items() if name != channel and end <= first]
        return last, last - max(before, default=0.0)


def _channel_of(event: dict[str, Any]) -> str | None:
    text = str(event.get("event", ""))
    logger = str(event.get("logger", ""))
    for kind in ("mail", "webhook"):
        if text.startswith((f"{kind} ", f"{kind}:")):
            return kind
    if text.startswith("feeds") or logger.startswith(("digest.feeds", "digest.channels.feed")):
        return "feeds"
    return None


def run_job(config: Path, clock_start: datetime | None = None) -> Run:
    """`python -m digest --config CFG run --no-fetch --now`, or the driver with a clock."""
    if clock_start is None:
        command = [sys.executable, "-m", "digest", "--config", str(config), "run", "--no-fetch",
                   "--now"]
    else:
        command = [sys.executable, "-c", DRIVER, str(config), clock_start.isoformat()]
    started_wall, started = time.time(), time.monotonic()
    process = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        stdout, stderr = process.communicate(timeout=RUN_LIMIT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
        stderr += f"\nerror: bench: killed after {RUN_LIMIT_S:g} s\n"
    seconds = time.monotonic() - started
    events = []
    for line in stderr.splitlines():
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                events.append(json.loads(line))
    assert process.returncode is not None
    return Run(process.returncode, seconds, stdout, stderr, started_wall, events)


def ledger(config: Path) -> Counter[str]:
    """The ledger's rows by channel kind and status: "mail uncertain" -> 3."""
    with Store.open(config.parent / "data" / "paperdigest.sqlite3") as store:
        rows = store.deliveries()
    return Counter(f"{row.kind} {row.status}" for row in rows)


def statuses_text(counts: Counter[str]) -> str:
    return ", ".join(f"{name} {n}" for name, n in sorted(counts.items()))


def feed_files(folder: Path, profiles: int) -> int:
    """How many profile feed files (RSS and Atom) are on disk."""
    found = folder / "data" / "feeds" / "profiles"
    return sum(
        (found / f"p{number:03}.{suffix}").is_file()
        for number in range(profiles)
        for suffix in ("rss", "atom")
    )


# -- the figures --------------------------------------------------------------------------------


@dataclass
class Figure:
    mode: str
    runs: int
    copies: str  # copies stored per message
    wall: str  # wall time(s)
    statuses: str
    exit_codes: str
    ok: bool
    notes: list[str] = field(default_factory=list)


def copies_text(copies: Counter[str]) -> str:
    """'{1x: 9}': how many messages were stored how many times (9 messages, once each)."""
    spread = Counter(copies.values())
    return "{" + ", ".join(f"{n}x: {m}" for n, m in sorted(spread.items())) + "}"


def stored_text(copies: Counter[str], expected: int) -> str:
    """'200/200, 1 copy each': distinct messages stored of those expected, and their copies."""
    spread = sorted(set(copies.values()))
    each = "1 copy each" if spread == [1] else f"copies {copies_text(copies)}"
    return f"{len(copies)}/{expected}, {each}"


def slow(folder: Path, profiles: int, runs: int = 3) -> Figure:
    smtp_timeout, read_timeout = 2.0, 1.0
    with (
        smtp_server(late_s=smtp_timeout + 2) as (port, mail),
        webhook_server(late_s=read_timeout + 2) as (url, hook),
    ):
        config = write_config(folder, profiles=profiles, smtp_port=port, hook_url=url,
                              smtp_timeout=smtp_timeout, read_timeout=read_timeout)
        ingest(config)
        start = datetime.now(UTC)
        done = []
        notes = []
        for number in range(runs):
            run = run_job(config, start + timedelta(hours=number))
            done.append(run)
            counts = ledger(config)
            notes.append(
                f"run {number + 1}: exit {run.exit_code}, {run.seconds:.1f} s; "
                + "; ".join(run.said("mail:") + run.said("webhook:"))
            )
            notes.append(f"  ledger: {statuses_text(counts)}")
            notes.append(f"  stored so far: {len(mail.received)} mails "
                         f"{copies_text(mail.copies())}, {len(hook.keys)} posts "
                         f"{copies_text(hook.copies())}")
        time.sleep(smtp_timeout + 2.5)  # the last late answers, so every stored copy is counted
    mail_copies, hook_copies = mail.copies(), hook.copies()
    counts = ledger(config)
    ok = (
        bool(mail_copies) and bool(hook_copies)
        and set(mail_copies.values()) == {1} and set(hook_copies.values()) == {1}
        and counts["mail uncertain"] == len(mail_copies)
        and counts["webhook uncertain"] == len(hook_copies)
    )
    return Figure(
        mode=f"slow ack (smtp timeout {smtp_timeout:g} s, read_timeout {read_timeout:g} s)",
        runs=runs,
        copies=f"mail {stored_text(mail_copies, len(mail_copies))}, "
        f"webhook {stored_text(hook_copies, len(hook_copies))}",
        wall=", ".join(f"{run.seconds:.1f}" for run in done) + " s",
        statuses=statuses_text(counts),
        exit_codes=", ".join(str(run.exit_code) for run in done),
        ok=ok,
        notes=notes,
    )


def hung(
    folder: Path, profiles: int, which: str, timeout: float | None, *, tls: bool = False
) -> Figure:
    """`which` ("mail" or "webhook") hangs; the other channel's server is a normal one. With
    `tls`, the webhook's URL is https: the hung server never answers the TLS handshake."""
    with contextlib.ExitStack() as stack:
        hang = stack.enter_context(hung_server())
        if which == "mail":
            url, hook = stack.enter_context(webhook_server())
            port, mail = hang.port, None
        else:
            port, mail = stack.enter_context(smtp_server())
            scheme = "https" if tls else "http"
            url, hook = f"{scheme}://127.0.0.1:{hang.port}/hook", None
        config = write_config(
            folder, profiles=profiles, smtp_port=port, hook_url=url,
            smtp_timeout=timeout if which == "mail" else None,
            read_timeout=timeout if which == "webhook" and not tls else None,
            connect_timeout=timeout if which == "webhook" and tls else None,
        )
        ingest(config)
        run = run_job(config)
        connections, first_at = hang.connections, hang.first_at
    counts = ledger(config)
    feeds = feed_files(folder, profiles)
    gave_up = run.gave_up(which, first_at)
    notes = [f"exit {run.exit_code}, {run.seconds:.1f} s; {connections} connections to the hung "
             "server"]
    notes += ["  " + line for line in run.said("feeds:") + run.said("mail:") + run.said("webhook:")]
    notes += ["  " + line for line in run.errors if line.startswith(f"error: {which}")][:1]
    spans = run.channel_times()
    notes.append("  log, s from the start: " + ", ".join(
        f"{name} {first:.1f}-{last:.1f}" for name, (first, last) in sorted(spans.items(),
                                                                           key=lambda kv: kv[1])
    ))
    if which == "mail":
        other = hook.copies() if hook else Counter[str]()
        delivered = f"webhook {stored_text(other, profiles)}"
        others_ok = len(other) == profiles and set(other.values()) == {1}
    else:
        other = mail.copies() if mail else Counter[str]()
        delivered = f"mail {stored_text(other, profiles)}"
        others_ok = len(other) == profiles and set(other.values()) == {1}
    delivered += f"; feed files {feeds}/{2 * profiles}"
    others_ok = others_ok and feeds == 2 * profiles
    notes.append("  " + delivered)
    channel_s = (
        f"{which} gave up at {gave_up[0]:.1f} s, {gave_up[1]:.1f} s after its first connection"
        if gave_up else f"{which}: no log line"
    )
    notes.append(f"  {channel_s}")
    within = run.seconds <= TARGET_S if timeout is None else True
    setting = "[smtp] timeout" if which == "mail" else "[fetch] read_timeout"
    if tls:
        setting = "[fetch] connect_timeout"
    timeouts = f"{setting} {timeout:g} s (--quick)" if timeout is not None else f"{setting} default"
    if timeout is None and not within:
        notes.append(f"  OVER {TARGET_S:g} s by default: see {setting}")
    return Figure(
        mode=f"hung {'SMTP' if which == 'mail' else 'https webhook' if tls else 'webhook'}"
        f" ({timeouts})",
        runs=1,
        copies=delivered,
        wall=f"{run.seconds:.1f} s ({channel_s})",
        statuses=statuses_text(counts),
        exit_codes=str(run.exit_code),
        ok=within and others_ok and run.exit_code == 1,
        notes=notes,
    )


@contextlib.contextmanager
def full_volume(path: Path) -> Iterator[str]:
    """`path` as a folder on a full filesystem (a 64 kB tmpfs, filled), or else a file where
    the folder should be. Yields which it is."""
    path.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(path)], capture_output=True
    ).returncode == 0
    if not mounted:
        path.rmdir()
        path.write_text("not a folder\n", encoding="utf-8")
        try:
            yield "feeds_dir is a file (ENOTDIR): mounting a tmpfs was not possible"
        finally:
            path.unlink()
        return
    try:
        with (path / "filler").open("wb", buffering=0) as out:  # unbuffered: closes cleanly
            try:
                while True:
                    out.write(b"\0" * 4096)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
        yield "feeds_dir on a full 64 kB tmpfs (ENOSPC)"
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def feeds_full(folder: Path, profiles: int) -> Figure:
    feeds_dir = folder / "feeds"
    with (
        smtp_server() as (port, mail),
        webhook_server() as (url, hook),
    ):
        config = write_config(folder, profiles=profiles, smtp_port=port, hook_url=url,
                              feeds_dir=feeds_dir)
        ingest(config)
        with full_volume(feeds_dir) as how:
            run = run_job(config)
    counts = ledger(config)
    mails, posts = mail.copies(), hook.copies()
    said = [line for line in run.errors if line.startswith("error: feeds:")]
    delivered = f"mail {stored_text(mails, profiles)}, webhook {stored_text(posts, profiles)}"
    notes = [how, f"exit {run.exit_code}, {run.seconds:.1f} s"]
    notes += ["  " + line for line in run.said("feeds:") + run.said("mail:") + run.said("webhook:")]
    notes += ["  " + (said[0] if said else "no `error: feeds:` line!")]
    ok = (
        len(mails) == profiles and len(posts) == profiles
        and set(mails.values()) == {1} and set(posts.values()) == {1}
        and bool(said) and run.exit_code == 1
    )
    return Figure(
        mode="feeds volume full" if "tmpfs" in how else "feeds folder is a file",
        runs=1,
        copies=delivered,
        wall=f"{run.seconds:.1f} s",
        statuses=statuses_text(counts),
        exit_codes=str(run.exit_code),
        ok=ok,
        notes=notes,
    )


MODES = ("slow", "hung-smtp", "hung-webhook", "hung-tls-webhook", "feeds-full")


def table(figures: list[Figure]) -> str:
    """The figures as a Markdown table."""
    head = ("mode", "runs", "copies per message", "wall time", "ledger at the end", "exit",
            "target")
    rows = [
        (f.mode, str(f.runs), f.copies, f.wall, f.statuses, f.exit_codes,
         "met" if f.ok else "MISSED")
        for f in figures
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, default=200, help="for the hung and full modes")
    parser.add_argument("--slow-profiles", type=int, default=20)
    parser.add_argument("--quick", action="store_true",
                        help="20 profiles, and 5 s timeouts for the hung servers (not the defaults)")
    parser.add_argument("--only", nargs="+", choices=MODES,
                        help=f"these modes (default: all; --quick: all but {MODES[3]})")
    options = parser.parse_args()
    modes = options.only or [m for m in MODES if not (options.quick and m == "hung-tls-webhook")]
    profiles = 20 if options.quick else options.profiles
    slow_profiles = min(options.slow_profiles, 10) if options.quick else options.slow_profiles
    hung_timeout = 5.0 if options.quick else None
    figures: list[Figure] = []
    began = time.monotonic()
    for mode in modes:
        print(f"== {mode}", flush=True)
        with tempfile.TemporaryDirectory(prefix=f"faults-{mode}-") as name:
            folder = Path(name)
            if mode == "slow":
                figure = slow(folder, slow_profiles)
            elif mode == "hung-smtp":
                figure = hung(folder, profiles, "mail", hung_timeout)
            elif mode == "hung-webhook":
                figure = hung(folder, profiles, "webhook", hung_timeout)
            elif mode == "hung-tls-webhook":
                figure = hung(folder, profiles, "webhook", hung_timeout, tls=True)
            else:
                figure = feeds_full(folder, profiles)
        for line in figure.notes:
            print(line)
        print(f"   -> {'ok' if figure.ok else 'MISSED'}", flush=True)
        figures.append(figure)
    print(f"\nfigures ({time.monotonic() - began:.0f} s in all):")
    print(table(figures))
    sys.exit(0 if all(figure.ok for figure in figures) else 1)


if __name__ == "__main__":
    main()
