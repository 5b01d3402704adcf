"""`digest status` over a simulated week (issue 14, "Empty is not broken"): a weekend and an arXiv
holiday, with the honest empty answers each source gives on its quiet days, never make the health
check fail; a real layout change does, on its first run, said once.

The real CLI runs `digest run` every morning under freezegun; each source is a file per day
(`{date}` in its path), a captured page or an honest empty answer. Nothing touches the network.

Then a line per delivery channel (issue 15, item 2): mail, feeds and each team chat, counted from a
real ledger written through the store's own claim and settle, and a channel stopped for a run
(its problem stored) said on its line and under "needs a person", so never "all well".
"""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from freezegun import freeze_time
from helpers import FIXTURES, digest, make_config, outbox, profile, text_of, write_config

from digest.config import ChatConfig, Config, load_config
from digest.models import Digest
from digest.status import gather, render
from digest.store import Store

# Thanksgiving week 2026: arXiv announces Sunday to Wednesday nights, not on Thanksgiving
# (Thursday 26 November, an arXiv holiday), nor on Friday or Saturday night.
MONDAY = date(2026, 11, 23)
WEEK = [MONDAY + timedelta(days=i) for i in range(8)]  # Monday 23 to Monday 30
MAILING_MORNINGS = {date(2026, 11, d) for d in (23, 24, 25, 26, 30)}
RUN_AT = 12  # UTC: 07:00 in New York, after the night's mailing reached the feeds

SOURCES = """
[sources.arxiv-rss]
kind = "arxiv-rss"
path = "pages/arxiv-rss-{date}.xml"

[sources.arxiv-api]
kind = "arxiv-api"
path = "pages/arxiv-api-{date}.xml"

[sources.hf-daily]
kind = "hf-daily"
path = "pages/hf-daily-{date}.json"

[sources.biorxiv]
kind = "biorxiv"
path = "pages/biorxiv-{date}.json"
"""

PROFILE = """
[profiles.me]
email = ["me@example.org"]
keywords = ["language model", "agent"]
deliver_at = "06:00"
"""

RSS, RSS_EMPTY = "arxiv_rss_cs.LG_synthetic.xml", "arxiv_rss_empty_synthetic.xml"
API = "arxiv_api_2026-07-13_cat-cs.AI-LG_50entries_newformat.xml"
API_EMPTY = "arxiv_api_2026-04-12_id_list-0000.0000_empty-result_from-arxivpy-recording.xml"
NO_POSTS = b'{"messages": [{"status": "no posts found", "interval": "%s:%s", "cursor": 0}]}'


def fixture(path: str) -> bytes:
    return (FIXTURES / path).read_bytes()


def pages_for(day: date) -> dict[str, bytes]:
    """What each source answers on `day`'s morning: content, or its honest empty answer."""
    mailing = day in MAILING_MORNINGS
    hf = json.loads(fixture("hf/hf_api_daily_papers_2026-06-12_30items.json"))
    return {
        "arxiv-rss": fixture(f"arxiv/{RSS if mailing else RSS_EMPTY}"),
        "arxiv-api": fixture(f"arxiv/{API if mailing else API_EMPTY}"),
        # Hugging Face: a short Saturday (3 of the usual 30), nothing on Sunday.
        "hf-daily": {5: json.dumps(hf[:3]).encode(), 6: b"[]"}.get(
            day.weekday(), json.dumps(hf).encode()
        ),
        # bioRxiv posts every day, but on Thanksgiving and on Sunday nothing was posted.
        "biorxiv": (
            NO_POSTS % (day.isoformat().encode(), day.isoformat().encode())
            if day in (date(2026, 11, 26), date(2026, 11, 29))
            else fixture("biorxiv/biorxiv_api_details_2026-07-15_2026-07-18_TRIMMED_3items.json")
        ),
    }


def write_pages(tmp_path: Path, day: date, pages: dict[str, bytes]) -> None:
    folder = tmp_path / "pages"
    folder.mkdir(exist_ok=True)
    for name, body in pages.items():
        suffix = "json" if name in ("hf-daily", "biorxiv") else "xml"
        (folder / f"{name}-{day.isoformat()}.{suffix}").write_bytes(body)


def run_and_check(config: Path, day: date) -> tuple[int, str, str]:
    """`digest run` that morning, then `digest status` and `digest status --quiet` five minutes on:
    status's exit code, its output, and what --quiet printed."""
    at = datetime.combine(day, datetime.min.time(), tzinfo=UTC).replace(hour=RUN_AT)
    with freeze_time(at, auto_tick_seconds=1):
        ran = digest(config, "run")
    assert ran.exit_code == 0, ran.output
    with freeze_time(at + timedelta(minutes=5)):
        shown = digest(config, "status")
        quiet = digest(config, "status", "--quiet")
    assert quiet.exit_code == shown.exit_code
    return shown.exit_code, shown.output, quiet.output


def states(output: str) -> dict[str, str]:
    """Each source's state, as `digest status` lists them."""
    block = output.split("sources:\n", 1)[1].split("next runs:", 1)[0]
    return {m.group(1): m.group(2) for m in re.finditer(r"^  (\S+)\s+(\S+)", block, re.M)}


def test_a_week_with_a_weekend_and_an_arxiv_holiday_needs_no_person(tmp_path: Path) -> None:
    config = write_config(tmp_path, SOURCES, profiles=PROFILE)
    seen: dict[str, dict[str, str]] = {}
    for day in WEEK:
        write_pages(tmp_path, day, pages_for(day))
        code, output, quiet = run_and_check(config, day)
        assert code == 0, output
        assert "needs a person" not in output and "all well" in output
        assert quiet == ""
        seen[day.strftime("%a %d")] = states(output)

    quiet_arxiv = {"arxiv-rss": "empty", "arxiv-api": "empty"}
    busy_arxiv = {"arxiv-rss": "ok", "arxiv-api": "ok"}
    assert seen == {
        "Mon 23": {**busy_arxiv, "hf-daily": "ok", "biorxiv": "ok"},
        "Tue 24": {**busy_arxiv, "hf-daily": "ok", "biorxiv": "ok"},
        "Wed 25": {**busy_arxiv, "hf-daily": "ok", "biorxiv": "ok"},
        "Thu 26": {**busy_arxiv, "hf-daily": "ok", "biorxiv": "empty"},
        "Fri 27": {**quiet_arxiv, "hf-daily": "ok", "biorxiv": "ok"},  # no mailing on Thanksgiving
        "Sat 28": {**quiet_arxiv, "hf-daily": "ok", "biorxiv": "ok"},  # 3 of 30: a weekend
        "Sun 29": {**quiet_arxiv, "hf-daily": "empty", "biorxiv": "empty"},
        "Mon 30": {**busy_arxiv, "hf-daily": "ok", "biorxiv": "ok"},
    }
    # Readers are not told that a source failed on a quiet day either.
    mails = outbox(tmp_path)
    assert len(mails) == len(WEEK)
    assert not [m["Subject"] for m in mails if "could not be read" in text_of(m)]

    # The first morning something is really wrong (Hugging Face renamed a field the parser
    # needs), the health check fails and says so once.
    tuesday = WEEK[-1] + timedelta(days=1)
    pages = pages_for(tuesday)
    items = json.loads(pages["hf-daily"])
    for item in items:
        item["paper"]["paperId"] = item["paper"].pop("id")
    pages["hf-daily"] = json.dumps(items).encode()
    write_pages(tmp_path, tuesday, pages)
    code, output, quiet = run_and_check(config, tuesday)
    assert code == 1
    assert quiet.splitlines() == [
        "source hf-daily: probable layout change: the answer holds 30 entries but none could be read"
    ]
    assert output.count("probable layout change") == 1
    assert states(output)["hf-daily"] == "layout"


def test_an_empty_arxiv_feed_on_a_mailing_morning_is_empty_not_a_problem(tmp_path: Path) -> None:
    # Decided (issue 14: "a well-formed empty answer is `empty`"): a small category can have
    # nothing new in a mailing, and an RSS channel with no items is well formed. A feed that
    # lost its items' fields is caught by its envelope instead (tests/test_health.py).
    config = write_config(tmp_path, SOURCES, profiles=PROFILE)
    for day in WEEK[:2]:
        pages = pages_for(day)
        if day == WEEK[1]:  # Tuesday, after Monday night's mailing
            pages["arxiv-rss"] = fixture("arxiv/arxiv_rss_empty_synthetic.xml")
        write_pages(tmp_path, day, pages)
        code, output, _ = run_and_check(config, day)
        assert code == 0, output
    assert states(output)["arxiv-rss"] == "empty"


# -- a line per channel (issue 15, item 2) -------------------------------------------------------

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
TODAY, YESTERDAY = NOW.date(), NOW.date() - timedelta(days=1)
PEOPLE = (profile("alice", deliver_at="07:00"), profile("bob", deliver_at="07:00"))
ERRORS = {"failed": "550 no such user", "deferred": "429 slow down", "uncertain": "no answer"}


def ledger(store: Store, name: str, day: date, rows: dict[str, str], at: datetime) -> None:
    """`name`'s digest of `day`, with a ledger row per channel, each taken to its status (and,
    when it ends in trouble, an error) the way a run does: claimed at `at`, then settled."""
    store.save_digest(
        Digest(
            profile=name,
            day=day,
            timezone="UTC",
            since=at - timedelta(days=1),
            until=at,
            scanned=0,
            sources=(),
            items=(),
        ),
        channels=list(rows),
        now=at,
    )
    for row in store.deliveries(profile=name, day=day):
        status = rows[row.channel]
        if status == "pending":
            continue
        assert store.claim(row, "run-1", at, stale_before=at)
        if status != "sending":
            store.settle(row, "run-1", status, at, error=ERRORS.get(status))


def channel_lines(output: str) -> list[str]:
    """The lines of `digest status`'s channels section, as printed."""
    block = output.split("channels (today's digests, and what earlier days still owe):\n", 1)[1]
    lines = []
    for line in block.splitlines():
        if not line.startswith("  "):
            break
        lines.append(line)
    return lines


def test_each_channel_has_its_line_and_a_stopped_one_needs_a_person(
    tmp_path: Path, store: Store
) -> None:
    config = make_config(tmp_path, profiles=PEOPLE)
    at = NOW.replace(hour=7)
    ledger(store, "alice", TODAY, {
        "mail:a@example.org": "sent",
        "mail:b@example.org": "sent",
        "mail:c@example.org": "failed",
        "feed": "sent",
        "slack:lab": "pending",  # given back untried: the channel stopped
        "matrix:room": "sent",
        "webhook:ops": "sending",  # claimed at 07:00, past its 15 minute lease by noon
    }, at)
    ledger(store, "bob", TODAY, {
        "mail:d@example.org": "pending",
        "feed": "sent",
        "slack:lab": "pending",
        "matrix:room": "deferred",
    }, at)
    # Earlier days: a mail still owed (uncertain) is counted, one settled long ago is not.
    ledger(store, "bob", YESTERDAY, {"mail:d@example.org": "uncertain"}, at - timedelta(days=1))
    ledger(store, "carol", YESTERDAY, {"mail:e@example.org": "sent"}, at - timedelta(days=1))
    store.set_problem("mail", "the mail server failed 3 times in a row\n  (connection refused)",
                      NOW.replace(hour=11))
    store.set_problem("slack:lab", "Slack answered 404: no_service", NOW.replace(hour=11, minute=5))

    found = gather(config, store, NOW)
    output = render(found)

    assert channel_lines(output) == [
        "  mail: 2 sent, 1 pending, 1 failed, 1 uncertain — stopped since 2026-11-26 11:00 UTC: "
        "the mail server failed 3 times in a row (connection refused)",
        "  feeds: 2 sent — ok",
        "  matrix:room: 1 sent, 1 deferred — needs a person",
        "  slack:lab: 2 pending — stopped since 2026-11-26 11:05 UTC: Slack answered 404: no_service",
        "  webhook:ops: 1 sending — needs a person",
    ]
    # Each stopped channel is said once under "needs a person", by its name; each troubled row
    # with its channel.
    assert found.problems == (
        "profile alice: mail:c@example.org: failed: 550 no such user",
        "profile bob: matrix:room: deferred: 429 slow down",
        "profile bob: mail:d@example.org: the digest of 2026-11-25: uncertain since "
        "2026-11-25 07:00 UTC: handed over, but no answer came (it may have arrived; ask "
        "d@example.org); sent again by the first run after 2026-11-26 07:00 UTC "
        "(or settle it: digest uncertain --arrived | --resend)",
        "profile alice: webhook:ops: the digest of 2026-11-26: still sending since "
        "2026-11-26 07:00 UTC, past its 15 min claim lease: the run that claimed it stopped; "
        "the next run sends it",
        "mail: stopped since 2026-11-26 11:00 UTC: the mail server failed 3 times in a row "
        "(connection refused)",
        "slack:lab: stopped since 2026-11-26 11:05 UTC: Slack answered 404: no_service",
    )
    assert "all well" not in output
    assert output.index("channels (") < output.index("needs a person:")
    # The profile lines count the same rows (each profile's day): no feed as sent, and what is
    # deferred or being sent as pending; the uncertain mail of yesterday is on no profile line.
    assert "  alice: 3 sent, 1 failed, 2 pending; last digest 2026-11-26" in output
    assert "  bob: 0 sent, 0 failed, 3 pending; last digest 2026-11-26" in output


def test_a_stopped_channel_alone_fails_the_health_check(tmp_path: Path) -> None:
    # Every row sent, nothing failing anywhere: only the stopped chat is wrong, and that is enough.
    path = write_config(tmp_path, profiles="""
[profiles.alice]
email = ["a@example.org"]
deliver_at = "07:00"
""")
    config = load_config(path)
    with Store.open(config.store_path) as store:
        ledger(store, "alice", TODAY,
               {"mail:a@example.org": "sent", "feed": "sent", "discord:team": "sent"},
               NOW.replace(hour=7))
        healthy = gather(config, store, NOW)
        store.set_problem("discord:team", "the deadline passed before Discord answered",
                          NOW.replace(hour=7, minute=30))
        # A chat stopped before it ever delivered has a line too, with nothing to count.
        store.set_problem("matrix:group", "no access token", NOW.replace(hour=7, minute=30))
    assert healthy.problems == () and render(healthy).endswith("all well")

    with freeze_time(NOW):
        shown = digest(path, "status")
        quiet = digest(path, "status", "--quiet")
    assert shown.exit_code == quiet.exit_code == 1
    assert channel_lines(shown.output) == [
        "  mail: 1 sent — ok",
        "  feeds: 1 sent — ok",
        "  discord:team: 1 sent — stopped since 2026-11-26 07:30 UTC: "
        "the deadline passed before Discord answered",
        "  matrix:group: nothing today — stopped since 2026-11-26 07:30 UTC: no access token",
    ]
    assert "all well" not in shown.output
    assert quiet.output.splitlines() == [
        "discord:team: stopped since 2026-11-26 07:30 UTC: the deadline passed before Discord "
        "answered",
        "matrix:group: stopped since 2026-11-26 07:30 UTC: no access token",
    ]


def test_a_clean_ledger_shows_every_channel_ok(tmp_path: Path, store: Store) -> None:
    config = make_config(tmp_path, profiles=PEOPLE)
    at = NOW.replace(hour=7)
    every = {"mail:a@example.org": "sent", "feed": "sent", "slack:lab": "sent",
             "matrix:room": "sent"}
    ledger(store, "alice", TODAY, {**every, "mail:b@example.org": "skipped"}, at)
    ledger(store, "bob", TODAY, {**every, "webhook:ops": "sending"}, NOW - timedelta(minutes=5))
    ledger(store, "bob", YESTERDAY, {"discord:team": "sent"}, at - timedelta(days=1))  # not today

    found = gather(config, store, NOW)
    output = render(found)

    assert channel_lines(output) == [
        "  mail: 2 sent, 1 skipped — ok",
        "  feeds: 2 sent — ok",
        "  matrix:room: 2 sent — ok",
        "  slack:lab: 2 sent — ok",
        "  webhook:ops: 1 sending — ok",  # within its claim lease: a run is at it
    ]
    assert found.problems == () and output.endswith("\nall well")


def test_configured_chats_come_first_and_one_not_used_yet_is_idle(
    tmp_path: Path, store: Store
) -> None:
    config = dataclasses.replace(
        make_config(tmp_path, profiles=PEOPLE[:1]),
        chats=(
            ChatConfig("team", "discord", url="https://discord.example.org/api/webhooks/1/x"),
            ChatConfig("lab", "slack", url="https://hooks.slack.example.org/services/x"),
        ),
    )
    # "matrix:old" is in the ledger but no longer configured: still counted, after the others.
    ledger(store, "alice", TODAY, {"mail:a@example.org": "sent", "feed": "sent",
                                   "slack:lab": "sent", "matrix:old": "sent"}, NOW.replace(hour=7))
    found = gather(config, store, NOW)
    assert channel_lines(render(found)) == [
        "  mail: 1 sent — ok",
        "  feeds: 1 sent — ok",
        "  discord:team: nothing today — idle",
        "  slack:lab: 1 sent — ok",
        "  matrix:old: 1 sent — ok",
    ]
    assert found.problems == ()


def test_nothing_delivered_yet_is_idle_not_a_problem(tmp_path: Path, store: Store) -> None:
    config: Config = make_config(tmp_path)
    found = gather(config, store, NOW)
    assert [(c.name, c.state, c.counts) for c in found.channels] == [
        ("mail", "idle", ()),
        ("feeds", "idle", ()),
    ]
    assert channel_lines(render(found)) == [
        "  mail: nothing today — idle",
        "  feeds: nothing today — idle",
    ]
    assert found.problems == ()


def test_feed_files_that_could_not_be_written_stop_the_feeds_line(
    tmp_path: Path, store: Store
) -> None:
    config = make_config(tmp_path)
    store.set_problem("feeds", "all.atom: cannot write the feed file: [Errno 28] No space left",
                      NOW.replace(hour=7))
    found = gather(config, store, NOW)
    assert channel_lines(render(found)) == [
        "  mail: nothing today — idle",
        "  feeds: nothing today — stopped since 2026-11-26 07:00 UTC: "
        "all.atom: cannot write the feed file: [Errno 28] No space left",
    ]
    assert found.problems == (  # said once, as before
        "feeds: could not be written since 2026-11-26 07:00 UTC: "
        "all.atom: cannot write the feed file: [Errno 28] No space left",
    )
