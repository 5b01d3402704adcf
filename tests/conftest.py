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


class _RememberingEmbedder:
    """The real sentence model, remembering every text it embedded: the suite builds hundreds of
    fresh stores holding the same captured papers, and embeds each text once."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.name, self.dimensions = model.name, model.dimensions
        self.seen: dict[str, Any] = {}

    def embed(self, texts: Any) -> Any:
        import numpy as np

        missing = [t for t in dict.fromkeys(texts) if t not in self.seen]
        if missing:
            self.seen.update(zip(missing, self.model.embed(missing), strict=True))
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        return np.stack([self.seen[t] for t in texts])


REAL_LOAD_EMBEDDER: Any = None


@pytest.fixture(autouse=True, scope="session")
def _one_sentence_model_per_session() -> Any:
    """`digest.embed.load_embedder` gives the shipped model loaded once per session; a test
    that names a model folder (or checks a broken one) still reaches the real loader."""
    global REAL_LOAD_EMBEDDER
    from digest import embed

    REAL_LOAD_EMBEDDER = embed.load_embedder
    shared: list[_RememberingEmbedder] = []

    def load(model_dir: Path | None = None) -> Any:
        if model_dir is not None:
            return REAL_LOAD_EMBEDDER(model_dir)
        if not shared:
            shared.append(_RememberingEmbedder(REAL_LOAD_EMBEDDER()))
        return shared[0]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(embed, "load_embedder", load)
        yield
