"""Shared test helpers. No test touches the network or the wall clock."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from digest.models import Origin, Record

FIXTURES = Path(__file__).parent / "fixtures"
T0 = datetime(2026, 11, 20, 21, 0, tzinfo=UTC)


def record(
    title: str = "A Paper",
    source: str = "src",
    listing: str = "https://example.org/list",
    **fields: Any,
) -> Record:
    """A Record as a parser would give it; only what a test cares about needs saying."""
    return Record(origin=Origin(source, listing), title=title, **fields)


@pytest.fixture
def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    from digest.store import Store

    with Store.open(tmp_path / "data" / "paperdigest.sqlite3") as opened:
        yield opened
