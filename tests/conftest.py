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


def fake_parse(body: bytes, origin: Origin) -> list[Record]:
    """A stand-in parser for pipeline tests: one paper per line, 'id title'; 'BROKEN' fails to parse."""
    from digest.errors import ParseError

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


def lines(*ids: str) -> bytes:
    return "\n".join(f"{i} Paper {i}" for i in ids).encode()
