"""`digest rank` and `digest feedback` as a user runs them, on the captured sample pages, at a fixed time."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from freezegun import freeze_time
from helpers import sample_config

from digest.cli import cli
from digest.pipeline import day_bounds

PROFILE = """
[profiles.ml]
keywords = ["language model", "reasoning"]
categories = ["cs.CL"]
examples = ["2607.21981", "9999.99999"]
negative_keywords = ["protein"]
max_items = 5
timezone = "America/New_York"
"""


@pytest.fixture
def config(tmp_path: Path) -> str:
    """The offline sample config (captured pages, no network) with a profile, ingested once."""
    path = sample_config(tmp_path, PROFILE)
    with freeze_time("2026-11-23 02:00:00"):  # still the 22nd in New York
        assert run(str(path), "ingest").exit_code == 0
    return str(path)


def run(config: str, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--config", config, *args])


def ranked(config: str, *args: str) -> list[dict[str, Any]]:
    """`digest rank --json` as a list of objects (warnings on stderr left aside)."""
    output = run(config, "rank", *args, "--json").output
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


@freeze_time("2026-11-23 03:00:00")
def test_rank_prints_the_local_days_ranking_with_reasons(
    config: str, caplog: pytest.LogCaptureFixture
) -> None:
    result = run(config, "rank", "ml")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()  # warnings go to stderr
    assert lines[0] == "ml · 2026-11-22 (America/New_York) · 5 chosen of 533 new papers"
    assert lines[1].startswith("  1  ")
    assert 'matches "' in lines[2] or "similar to: " in lines[2]
    assert "examples paper '9999.99999' is not in the store" in caplog.text
    ranked_titles = [line[13:] for line in lines[1:] if line[:3].strip().isdigit()]
    assert len(ranked_titles) == 5
    assert "J-CoT: Chain-of-Thought in J-Space" not in ranked_titles, "a liked paper is not offered"
    assert 'similar to: "J-CoT: Chain-of-Thought in J-Space"' in result.output


@freeze_time("2026-11-23 03:00:00")
def test_rank_json_carries_the_reasons_and_another_day_is_empty(config: str) -> None:
    items = ranked(config, "ml")
    assert [item["rank"] for item in items] == [1, 2, 3, 4, 5]
    assert items[0]["score"] >= items[-1]["score"] > 0
    assert all(item["keywords"] or item["similar_to"] for item in items)
    assert not any("protein" in item["title"].lower() for item in items)
    other = run(config, "rank", "ml", "--date", "2026-11-21")
    assert other.exit_code == 0 and "0 chosen of 0 new papers" in other.output
    assert "no new papers that day" in other.output


@freeze_time("2026-11-23 03:00:00")
def test_feedback_less_removes_a_paper_and_pushes_its_like_down(config: str) -> None:
    before = ranked(config, "ml")
    top = before[0]
    marked = run(config, "feedback", "ml", top["key"], "less")
    assert marked.exit_code == 0 and f"ml: marked less: {top['key']}" in marked.output
    after = ranked(config, "ml")
    assert top["key"] not in [item["key"] for item in after]
    assert any(item["parts"].get("less", 0) < 0 for item in after)
    cleared = run(config, "feedback", "ml", top["key"], "clear")
    assert cleared.exit_code == 0
    again = ranked(config, "ml")
    assert again == before


def test_feedback_on_unknown_papers_or_profiles_is_a_clear_error(config: str) -> None:
    unknown_paper = run(config, "feedback", "ml", "2999.00001", "more")
    assert unknown_paper.exit_code == 1
    assert "paper '2999.00001' is not in the store" in unknown_paper.output
    unknown_profile = run(config, "feedback", "nobody", "2607.21981", "more")
    assert unknown_profile.exit_code == 2 and "no profile named 'nobody'" in unknown_profile.output
    bad_mark = run(config, "feedback", "ml", "2607.21981", "maybe")
    assert bad_mark.exit_code == 2


def test_rank_refuses_a_bad_date(config: str) -> None:
    result = run(config, "rank", "ml", "--date", "tomorrow")
    assert result.exit_code == 2 and "expected a date like" in result.output


def test_a_local_day_is_23_or_25_hours_across_daylight_saving() -> None:
    spring_start, spring_end = day_bounds(date(2026, 3, 8), "America/New_York")
    assert (spring_end - spring_start).total_seconds() == 23 * 3600
    autumn_start, autumn_end = day_bounds(date(2026, 11, 1), "America/New_York")
    assert (autumn_end - autumn_start).total_seconds() == 25 * 3600
    assert autumn_start.isoformat() == "2026-11-01T04:00:00+00:00"
