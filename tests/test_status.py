"""`digest status` over a simulated week (issue 14, "Empty is not broken"): a weekend and an arXiv
holiday, with the honest empty answers each source gives on its quiet days, never make the health
check fail; a real layout change does, on its first run, said once.

The real CLI runs `digest run` every morning under freezegun; each source is a file per day
(`{date}` in its path), a captured page or an honest empty answer. Nothing touches the network.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from freezegun import freeze_time
from helpers import FIXTURES, digest, outbox, text_of, write_config

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
