"""Sample digests for the render, feed and delivery tests: realistic papers, some hostile."""

from __future__ import annotations

import email
import email.policy
import os
from datetime import UTC, date, datetime
from pathlib import Path

from digest.models import Digest, Paper, Reasons, ScoredPaper, SourceNote

GOLDEN = Path(__file__).parent / "golden"
COMPOSED = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)  # 08:00 in Berlin, when the digest was made


def paper(key: str, title: str, **fields: object) -> Paper:
    values: dict[str, object] = {
        "first_seen": datetime(2026, 11, 22, 21, 0, tzinfo=UTC),
        "first_source": "arxiv-lg",
        "first_listing": "https://rss.arxiv.org/atom/cs.LG",
        "sources": ("arxiv-lg",),
    }
    values.update(fields)
    return Paper(key=key, title=title, **values)  # type: ignore[arg-type]


DIFFUSION = paper(
    "2611.01234",
    "Consistency Diffusion Models for Fast Sampling",
    arxiv_id="2611.01234",
    abstract=(
        "We propose consistency diffusion models. They sample in one step. Experiments on "
        "ImageNet show a 10x speed-up at equal FID. Code and weights are released."
    ),
    authors=("Jane Doe", "Ana Lima", "Wei Zhang", "Omar Haddad", "Lena Fischer", "Ravi Patel"),
    categories=("cs.LG", "cs.CV"),
    primary_category="cs.LG",
    code_url="https://github.com/example/cdm",
    upvotes=42,
    sources=("arxiv-lg", "hf-daily"),
)
POLICY = paper(
    "2611.05678",
    "Offline Reinforcement Learning with Implicit Policies",
    arxiv_id="2611.05678",
    abstract="Offline RL suffers from distribution shift. We fix it.",
    ai_summary="Implicit policies make offline RL stable without a behaviour model.",
    authors=("Sam Roe", "Jane Doe"),
    categories=("cs.LG",),
    primary_category="cs.LG",
)
NO_LINKS = paper(
    "title:a survey of everything",
    "A Survey of Everything",
    abstract="",
    author_count=12,
    first_source="hf-text-1",
    sources=("hf-text-1",),
)


def scored(item: Paper, score: float, **reasons: object) -> ScoredPaper:
    return ScoredPaper(item, score, Reasons(**reasons))  # type: ignore[arg-type]


def sample_digest(**changes: object) -> Digest:
    values: dict[str, object] = {
        "profile": "me",
        "day": date(2026, 11, 23),
        "timezone": "Europe/Berlin",
        "since": datetime(2026, 11, 22, 7, 0, tzinfo=UTC),
        "until": COMPOSED,
        "scanned": 314,
        "sources": (SourceNote("arxiv-lg", "ok"), SourceNote("hf-daily", "ok")),
        "items": (
            scored(
                DIFFUSION,
                14.2,
                keywords=("diffusion model",),
                title_keywords=("diffusion model",),
                authors=("Jane Doe",),
                categories=("cs.LG",),
                upvotes=42,
                parts=(("keywords", 4.2), ("authors", 8.0), ("categories", 0.5)),
            ),
            scored(
                POLICY,
                9.1,
                keywords=("reinforcement learning",),
                similar_to="Implicit Q-Learning",
                similarity=0.41,
            ),
            scored(NO_LINKS, 1.0, categories=()),
        ),
    }
    values.update(changes)
    return Digest(**values)  # type: ignore[arg-type]


def readable(data: bytes) -> str:
    """A whole message as a person reads it: headers, then each part decoded."""
    message = email.message_from_bytes(data, policy=email.policy.default)
    lines = [f"{name}: {value}" for name, value in message.items()]
    for part in message.walk():
        if part.is_multipart():
            continue
        lines += ["", f"----- {part.get_content_type()} -----", part.get_content()]
    return "\n".join(lines).replace("\r\n", "\n")


def assert_golden(name: str, actual: str) -> None:
    """Compare with tests/golden/NAME; UPDATE_GOLDEN=1 rewrites the file (review the diff)."""
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(actual, encoding="utf-8")
    assert path.exists(), f"{path} is missing (UPDATE_GOLDEN=1 writes it)"
    assert actual == path.read_text(encoding="utf-8"), f"{name} differs (UPDATE_GOLDEN=1 to accept)"
