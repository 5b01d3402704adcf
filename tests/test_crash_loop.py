"""A crash loop (issue 15): `digest run` killed with SIGKILL at random moments, re-run after each.

Many profiles over three channels: two mail addresses each (aiosmtpd on 127.0.0.1), the feed files,
and one team chat all profiles share (a generic JSON webhook; tests/webhooks.py's receiver on
127.0.0.1, its copies counted by the digest's id). Each run is a real `digest run --no-fetch --now`
process, killed after a seeded-random wait. A run that ends first is a clean run, and the next
one runs a day later (new digests, new ledger rows), so every kill lands on work. Then one run to
the end. From the servers' copies (mail by Message-ID, chat posts by digest id) and the ledger: no message
lost, none twice, at most one 'uncertain' per kill (a run killed after the server's 354 or as a
post starts: it may have arrived), each named by `digest status`, and every profile's feed files
well-formed.

The clock: each run gets its own through the CLI's context object, starting a claim lease and a
half after the run before and ticking at the wall clock's pace, so a claim a killed run left
'sending' is stale for the next run without waiting out a real lease ([delivery] claim_lease is one
minute at least). The quarantine is longer than the loop's days: after it, by design, an
uncertain mail is sent again. The papers are ingested once, in-process, under freezegun.
bench/crash_loop.py runs 200 profiles x 20 kills and prints the figures; the test a smaller loop.
"""

from __future__ import annotations

import email
import email.policy
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import feedparser
from freezegun import freeze_time
from helpers import MONDAY, ROOT, Recorder, digest, start_server, write_config
from webhooks import Receiver, serving

from digest.store import Store

LEASE = timedelta(minutes=1)  # [delivery] claim_lease's minimum
STEP = LEASE + timedelta(seconds=30)  # each run starts this long after the one before
# Longer than the loop's days: an uncertain mail is not sent again (after the default 24 h it
# would be, a second copy by design, unless a person settles it first).
QUARANTINE_HOURS = 720

# A `digest run` whose clock starts at argv[2] and runs at the wall clock's pace.
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

# The test's loop (bench/crash_loop.py: 200 profiles, 20 kills).
PROFILES, KILLS = 100, 10

KEYWORDS = ("language model", "reinforcement learning", "agent", "diffusion", "graph")


CHAT = "webhook:team"  # the chat every profile posts to, as the ledger names it


def profiles_toml(count: int, webhook_port: int) -> str:
    """`count` profiles in Berlin, two readers each and the team chat, keywords the captured
    papers match."""
    tables = [
        f'[chat.team]\nkind = "webhook"\nurl = "http://127.0.0.1:{webhook_port}/hook"\n'
    ]
    for number in range(count):
        keywords = ", ".join(f'"{KEYWORDS[(number + i) % len(KEYWORDS)]}"' for i in range(2))
        tables.append(
            f"[profiles.p{number:03}]\n"
            f'email = ["a{number:03}@example.org", "b{number:03}@example.org"]\n'
            f"keywords = [{keywords}]\n"
            'chat = ["team"]\n'
            'timezone = "Europe/Berlin"\n'
        )
    return "\n" + "\n".join(tables)


@dataclass
class Figures:
    profiles: int
    kills: int = 0  # runs killed before they ended
    clean: int = 0  # runs that ended before their kill (the next run is a day later)
    days: int = 0  # days of digests: two mails per profile each
    rows: int = 0  # mail and chat rows in the ledger
    chat_rows: int = 0  # of them, the chat's
    copies: int = 0  # messages the servers got
    strays: int = 0  # of them, with a Message-ID no ledger row records
    statuses: Counter[str] = field(default_factory=Counter)  # the ledger's mail and chat rows
    feed_rows: Counter[str] = field(default_factory=Counter)  # and its feed rows
    lost: list[str] = field(default_factory=list)  # no copy, and the ledger does not say why
    duplicates: list[str] = field(default_factory=list)  # more than one copy
    uncertain: list[str] = field(default_factory=list)  # rows the ledger marks uncertain
    uncertain_copies: int = 0  # how many of those the server did get
    unnamed: list[str] = field(default_factory=list)  # uncertain, but `digest status` is silent
    feeds: int = 0  # profile feed files written and well-formed
    bad_feeds: list[str] = field(default_factory=list)
    seconds: float = 0.0
    final_exit: int = 0
    final_output: str = ""  # the last run's lines from its "feeds:" line on

    def summary(self) -> str:
        return (
            f"{self.profiles} profiles x (2 addresses + a chat + feeds), {self.kills} kills, "
            f"{self.clean} runs ended first, {self.days} days: {self.copies} copies for "
            f"{self.rows} messages ({self.chat_rows} chat posts; {self.strays} unknown to the "
            f"ledger), {len(self.lost)} lost, "
            f"{len(self.duplicates)} duplicates, {len(self.uncertain)} uncertain "
            f"({self.uncertain_copies} of them arrived, {len(self.unnamed)} not named by "
            "`digest status`), "
            f"ledger {dict(sorted(self.statuses.items()))}, "
            f"feed rows {dict(sorted(self.feed_rows.items()))}, "
            f"{self.feeds} of {2 * self.profiles} profile feeds valid, {self.seconds:.1f} s"
        )


def crash_loop(
    folder: Path, *, profiles: int, kills: int, seed: int = 15, waits: tuple[float, float] = (0.05, 1.5)
) -> Figures:
    """Kill `digest run` `kills` times at seeded-random moments, run it once more to the end,
    and count what the server got against what the ledger says."""
    controller, recorder = start_server()
    try:
        with serving() as webhook:  # the chat's receiver on 127.0.0.1, answering 200
            return _loop(
                folder, recorder, controller.port, webhook, profiles, kills, random.Random(seed),
                waits,
            )
    finally:
        controller.stop()


def _loop(
    folder: Path,
    recorder: Recorder,
    port: int,
    webhook: Receiver,
    profiles: int,
    kills: int,
    chance: random.Random,
    waits: tuple[float, float],
) -> Figures:
    started = time.monotonic()
    config = write_config(
        folder,
        profiles=profiles_toml(profiles, webhook.port),
        smtp_port=port,
        extra=(
            f"[delivery]\nclaim_lease = {LEASE.seconds // 60}\n"
            f"uncertain_quarantine = {QUARANTINE_HOURS}\n\n[rank]\nembeddings = false\n"
        ),
    )
    with freeze_time(MONDAY - timedelta(hours=1)):
        assert digest(config, "ingest").exit_code == 0
    figures = Figures(profiles)
    log = folder / "runs.log"
    day, run = 0, 0  # a run that ends on its own moves the next one to the next day

    def start() -> subprocess.Popen[bytes]:
        at = MONDAY + timedelta(days=day) + run * STEP
        with log.open("ab") as out:
            return subprocess.Popen(
                [sys.executable, "-c", DRIVER, str(config), at.isoformat()],
                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
            )

    while figures.kills < kills:
        process = start()
        try:
            process.wait(timeout=chance.uniform(*waits))
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait()
            figures.kills += 1
            run += 1
        else:
            figures.clean += 1
            day, run = day + 1, 0
    final = start()
    try:
        figures.final_exit = final.wait(timeout=300)
    finally:
        if final.poll() is None:  # it hung: the test fails, and leaves no process behind
            final.kill()
            final.wait()
    figures.final_output = log.read_text(encoding="utf-8").rpartition("feeds: ")[2]
    figures.days = day + 1

    with Store.open(folder / "data" / "paperdigest.sqlite3") as store:
        every = store.deliveries()
    rows = [row for row in every if row.channel.startswith("mail:") or row.channel == CHAT]
    figures.feed_rows = Counter(row.status for row in every if row.channel == "feed")
    figures.rows = len(rows)
    figures.chat_rows = sum(row.channel == CHAT for row in rows)
    figures.statuses = Counter(row.status for row in rows)
    copies = Counter(
        str(email.message_from_bytes(data, policy=email.policy.default)["Message-ID"])
        for _, data in recorder.received
    )
    posts = webhook.copies(lambda seen: str(seen.body["id"]))  # by the digest's id, PROFILE/DAY
    known = {row.message_id for row in rows if row.address}
    known_posts = {f"{row.profile}/{row.day.isoformat()}" for row in rows if row.channel == CHAT}
    figures.strays = sum(n for message_id, n in copies.items() if message_id not in known) + sum(
        n for post, n in posts.items() if post not in known_posts
    )
    figures.copies = sum(copies.values()) + sum(posts.values())
    for row in rows:
        if row.channel == CHAT:
            who = f"{row.channel} {row.day} {row.profile}"
            found = posts[f"{row.profile}/{row.day.isoformat()}"]
        else:
            who = f"{row.address} {row.day}"
            found = copies[row.message_id] if row.message_id else 0
        if row.status == "uncertain":
            figures.uncertain.append(who)
            figures.uncertain_copies += found
        if found > 1:
            figures.duplicates.append(who)
        elif found == 0 and row.status != "uncertain":
            figures.lost.append(who)
    with freeze_time(MONDAY + timedelta(days=day) + (run + 1) * STEP):
        status = digest(config, "status").output
    lines = status.splitlines()
    figures.unnamed = [
        who for who in figures.uncertain if not any(_names(line, who) for line in lines)
    ]
    feeds_dir = folder / "data" / "feeds" / "profiles"
    for number in range(profiles):
        for suffix in ("atom", "rss"):
            path = feeds_dir / f"p{number:03}.{suffix}"
            parsed = feedparser.parse(path.read_bytes()) if path.exists() else None
            if parsed is None or parsed.bozo or not parsed.entries:
                figures.bad_feeds.append(path.name)
            else:
                figures.feeds += 1
    figures.seconds = time.monotonic() - started
    return figures


def _names(line: str, who: str) -> bool:
    """Does a `digest status` line name this uncertain row ("ADDRESS DAY" or "CHAT DAY PROFILE")?"""
    parts = who.split()
    if parts[0] == CHAT:
        return f"profile {parts[2]}: {CHAT}: the digest of {parts[1]}" in line
    return f"ask {parts[0]}" in line and parts[1] in line


def test_a_run_killed_again_and_again_loses_nothing_and_sends_nothing_twice(
    tmp_path: Path,
) -> None:
    figures = crash_loop(tmp_path, profiles=PROFILES, kills=KILLS, waits=(0.3, 1.5))
    print(figures.summary())
    # The last run says which mails a killed run left uncertain, and exits 1 for them alone.
    said = [line for line in figures.final_output.splitlines() if line.startswith("error: ")]
    assert all("it may have arrived" in line for line in said), figures.final_output
    assert figures.final_exit == (1 if said else 0), figures.final_output
    assert (figures.lost, figures.duplicates, figures.strays) == ([], [], 0), figures.summary()
    assert figures.rows == 3 * PROFILES * figures.days  # two addresses and the chat
    assert set(figures.statuses) <= {"sent", "uncertain"}, figures.summary()
    assert len(figures.uncertain) <= figures.kills, figures.summary()
    assert figures.unnamed == [], figures.summary()
    assert figures.bad_feeds == [], figures.summary()
