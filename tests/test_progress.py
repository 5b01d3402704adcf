"""Progress while sources are fetched and mail goes out: bars on a terminal, lines elsewhere."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import pytest
from helpers import T0, by_host, lines, make_config

from digest.fetch import Fetcher, FetchPolicy
from digest.pipeline import ingest
from digest.progress import TerminalProgress
from digest.store import Store


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def steps(progress: TerminalProgress) -> None:
    progress("sources", 0, 2, "fetching a")
    progress("sources", 1, 2, "a: ok")
    progress("sources", 1, 2, "fetching b")
    progress("sources", 2, 2, "b: failed")


def test_off_a_terminal_each_finished_step_is_a_line_or_nothing() -> None:
    plain = io.StringIO()
    steps(TerminalProgress(plain, plain_lines=True))
    assert plain.getvalue() == "sources 1/2: a: ok\nsources 2/2: b: failed\n"
    quiet = io.StringIO()
    steps(TerminalProgress(quiet, plain_lines=False))  # `digest run`: its log says each step
    assert quiet.getvalue() == ""


def test_on_a_terminal_a_phase_is_a_bar_that_goes_when_it_ends() -> None:
    terminal = Terminal()
    progress = TerminalProgress(terminal, plain_lines=True)
    steps(progress)
    drawn = terminal.getvalue()
    assert "sources:" in drawn and "/2" in drawn and "\n" not in drawn  # redrawn in place
    assert drawn.endswith("\r") and progress.bars == {}  # cleared: the table follows


@pytest.mark.usefixtures("fake_kind")
def test_ingest_reports_each_source_as_it_is_done(store: Store, tmp_path: Path) -> None:
    seen: list[tuple[str, int, int, str]] = []
    transport = httpx.MockTransport(by_host(a=lines("2501.00001"), b=b"BROKEN"))
    config = make_config(tmp_path, "a", "b")
    with Fetcher(FetchPolicy(retries=1), transport=transport, sleep=lambda s: None) as fetcher:
        ingest(config, store, fetcher, lambda: T0, progress=lambda *step: seen.append(step))
    assert seen == [
        ("sources", 0, 2, "fetching a"),
        ("sources", 1, 2, "a: ok"),
        ("sources", 1, 2, "fetching b"),
        ("sources", 2, 2, "b: failed"),
    ]
