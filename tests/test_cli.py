"""The `digest` command as a user runs it, through click's CliRunner, offline on captured pages."""

from __future__ import annotations

import gc
import re
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from freezegun import freeze_time
from helpers import FIXTURES, sample_config, write_config

from digest.cli import RUN_GC_THRESHOLDS, cli

TEXT_SAMPLES = sorted((FIXTURES / "hf").glob("0*.txt"))


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def table(output: str) -> dict[str, list[str]]:
    """The ingest table as {source: [status, fetched, parsed, new, errors]}."""
    rows = {}
    for line in output.splitlines()[1:]:
        cells = line.split()
        if len(cells) == 6 and cells[2].isdigit():
            rows[cells[0]] = cells[1:]
    return rows


def text_sources(**paths: str | Path) -> str:
    """[sources.NAME] tables of kind hf-text, one per keyword argument."""
    return "".join(
        f'[sources.{name}]\nkind = "hf-text"\npath = "{path}"\n' for name, path in paths.items()
    )


def test_the_four_text_samples_report_81_27_47_48_new_then_nothing(tmp_path: Path) -> None:
    assert len(TEXT_SAMPLES) == 4
    sources = "".join(
        f'[sources.text-{i}]\nkind = "hf-text"\npath = "{p}"\n' for i, p in enumerate(TEXT_SAMPLES)
    )
    config = str(write_config(tmp_path, sources, profiles=""))
    new_counts = []
    for i in range(4):
        result = invoke("--config", config, "ingest", "--source", f"text-{i}")
        assert result.exit_code == 0, result.output
        new_counts.append(int(table(result.output)[f"text-{i}"][3]))
    assert new_counts == [81, 27, 47, 48]
    for i in range(4):
        again = table(invoke("--config", config, "ingest", "--source", f"text-{i}").output)
        assert again[f"text-{i}"][3] == "0"
    listed = invoke("--config", config, "papers", "--limit", "1000", "--json")
    assert len(listed.output.splitlines()) == 203


def test_the_offline_sample_config_ingests_every_source(tmp_path: Path) -> None:
    # Run the README's main job on a copy, so the test leaves no demo-data behind.
    config = str(sample_config(tmp_path))
    result = invoke("--config", config, "ingest")
    assert result.exit_code == 0, result.output
    rows = table(result.output)
    assert {name: row[0] for name, row in rows.items()} == dict.fromkeys(rows, "ok")
    assert [rows[f"hf-text-{i}"][3] for i in range(1, 5)] == ["81", "27", "47", "48"]
    assert rows["arxiv-cl-recent"][2] == "50" and rows["biorxiv"][2] == "100"
    again = table(invoke("--config", config, "ingest").output)
    assert {row[3] for row in again.values()} == {"0"}
    assert (tmp_path / "demo-data" / "paperdigest.sqlite3").exists()


def test_the_quickstart_run_now_ends_in_an_email_and_says_when_the_next_is_due(
    tmp_path: Path,
) -> None:
    """The README's first command: the samples ingested and the demo digest in the outbox, at
    an hour when the demo profile (07:00 UTC) is not due; then one a day, as ever."""
    config = str(sample_config(tmp_path))
    outbox = tmp_path / "demo-data" / "outbox" / "new"
    with freeze_time("2026-11-26 04:30:00", auto_tick_seconds=1):  # papers seen, then ranked
        first = invoke("--config", config, "run", "--now")
        assert first.exit_code == 0, first.output
        assert "demo: digest of 2026-11-26: 10 of 533 new papers" in first.output
        assert "mail: 1 sent" in first.output and "any mail client opens the Maildir" in first.output
        assert len(list(outbox.iterdir())) == 1
        again = invoke("--config", config, "run", "--now")  # today's is made: not twice
        assert "no digest was due" in again.output
        assert re.search(r"demo: next digest Fri Nov 27 07:00 \(UTC\), in 26 h \d+ min\n", again.output)
    with freeze_time("2026-11-26 07:05:00"):  # its usual time that day: already made
        assert "no digest was due" in invoke("--config", config, "run", "--no-fetch").output
    assert len(list(outbox.iterdir())) == 1


def test_a_run_with_nothing_due_says_when_each_digest_is_due_and_how_to_have_it_now(
    tmp_path: Path,
) -> None:
    config = str(sample_config(tmp_path))
    with freeze_time("2026-11-26 06:15:00"):
        result = invoke("--config", config, "run", "--no-fetch")
    assert result.exit_code == 0, result.output
    assert (
        "no digest was due\n  demo: next digest Thu Nov 26 07:00 (UTC), in 45 min;"
        " `digest run --now` makes today's at once\n"
    ) in result.output


def test_a_run_has_the_cycle_collector_run_less_often(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # At the default thresholds a big run spent 3 s of 40 in full collections (issue 16).
    set_to: list[tuple[int, ...]] = []
    monkeypatch.setattr(gc, "set_threshold", lambda *values: set_to.append(values))
    config = str(sample_config(tmp_path))
    with freeze_time("2026-11-26 06:15:00"):
        assert invoke("--config", config, "run", "--no-fetch").exit_code == 0
    assert set_to == [RUN_GC_THRESHOLDS]


def test_a_config_mistake_is_one_line_and_exit_code_2(tmp_path: Path) -> None:
    config = write_config(tmp_path, '[sources.x]\nkind = "feed"\nurl = "ftp://x"\n', profiles="")
    result = CliRunner().invoke(cli, ["--config", str(config), "ingest"])
    assert result.exit_code == 2
    assert (
        result.output == f"error: {config}: sources.x.url: expected an http(s) URL, got 'ftp://x'\n"
    )


def test_exit_code_is_1_only_when_every_source_failed(tmp_path: Path) -> None:
    sources = text_sources(gone="{date}-missing.txt", good=TEXT_SAMPLES[0])
    config = str(write_config(tmp_path, sources, profiles=""))
    some = CliRunner().invoke(cli, ["--config", config, "ingest"])
    assert some.exit_code == 0
    assert table(some.output)["gone"][0] == "failed"
    assert re.search(r"^error: gone: .*file not found", some.output, re.MULTILINE)
    every = CliRunner().invoke(cli, ["--config", config, "ingest", "--source", "gone"])
    assert every.exit_code == 1


def test_papers_lists_newest_first_with_filters(tmp_path: Path) -> None:
    config = str(write_config(tmp_path, text_sources(t=TEXT_SAMPLES[0]), profiles=""))
    invoke("--config", config, "ingest")
    found = invoke("--config", config, "papers", "--text", "CSWin", "--source", "t")
    assert found.exit_code == 0
    assert "CSWin Transformer: A General Vision Transformer Backbone" in found.output
    assert len(found.output.splitlines()) == 1
    nothing = CliRunner().invoke(cli, ["--config", config, "papers", "--since", "2999-01-01"])
    assert nothing.exit_code == 0 and "no papers match" in nothing.output
    bad = CliRunner().invoke(cli, ["--config", config, "papers", "--since", "yesterday"])
    assert bad.exit_code == 2 and "expected a date like" in bad.output


@pytest.mark.parametrize("command", sorted(cli.commands))
def test_every_command_has_help(command: str) -> None:
    result = invoke(command, "--help")
    assert result.exit_code == 0
    assert f"Usage: cli {command}" in result.output or f"Usage: digest {command}" in result.output
    assert len(result.output.splitlines()) > 3


def test_history_shows_each_sources_runs(tmp_path: Path) -> None:
    good = TEXT_SAMPLES[0]
    sources = text_sources(gone="{date}-missing.txt", good=good, idle=good)
    config = str(write_config(tmp_path, sources, profiles=""))
    invoke("--config", config, "ingest", "--source", "gone", "--source", "good")
    invoke("--config", config, "ingest", "--source", "good")
    result = invoke("--config", config, "history")
    lines = result.output.splitlines()
    assert lines[0] == "gone:" and "failed" in lines[1] and "file not found" in lines[1]
    assert lines[2] == "good:"
    assert "ok" in lines[3] and "parsed 81, new 0" in lines[3], "newest first"
    assert "parsed 81, new 81" in lines[4]
    assert lines[5] == "idle: never run"
    unknown = CliRunner().invoke(cli, ["--config", config, "history", "nope"])
    assert unknown.exit_code == 2 and "no source named 'nope'" in unknown.output
