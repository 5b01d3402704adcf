"""Sample digests for the render, feed and delivery tests: realistic papers, some hostile, and
the links an email of them carries."""

from __future__ import annotations

import email
import email.policy
import os
from datetime import UTC, date, datetime
from pathlib import Path

from digest.models import Digest, Paper, Reasons, ScoredPaper, SourceNote
from digest.render import EmailLinks, FeedbackLinks, LinkShortener
from digest.tokens import manage_token, read_feedback_token

GOLDEN = Path(__file__).parent / "golden"
COMPOSED = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)  # 08:00 in Berlin, when the digest was made

SITE = "https://digest.example.org"
# A fixed signing key, as a data/secret.key file would hold it: the same tokens every run, so the
# golden files can hold them.
KEYS = ["golden-files-key-not-a-secret"]
FEEDBACK = FeedbackLinks("me", SITE, tuple(KEYS))
LINKS = EmailLinks(
    feed_rss=f"{SITE}/feeds/profiles/me.rss",
    feed_atom=f"{SITE}/feeds/profiles/me.atom",
    unsubscribe=f"{SITE}/unsubscribe/TOKEN",
    unsubscribe_mailto="mailto:unsubscribe@example.org?subject=unsubscribe%20me",
    manage=f"{SITE}/manage/{manage_token(KEYS, 'me', 'reader@example.org')}",
    feedback=FEEDBACK,
    shorten=LinkShortener(SITE, tuple(KEYS)),
)


def feedback_of(url: str) -> tuple[str, str, str]:
    """What a feedback link says, read as the web side reads it: (profile, paper key, mark)."""
    prefix = f"{SITE}/feedback/"
    assert url.startswith(prefix), url
    return read_feedback_token(KEYS, url.removeprefix(prefix))


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

# Hostile input in every field: markup, header injection, a 10 kB title, broken UTF-8, an RTL
# override, and links that are not http(s).
HOSTILE = paper(
    "2611.09999",
    "<script>alert(1)</script>\r\nBcc: victim@example.org\r\n" + "Long " * 2000,
    arxiv_id="2611.09999",
    abstract='<img src=x onerror="alert(1)"> Broken \udcff\udcfe UTF-8 \x00 and a \u202eRTL trick.',
    authors=("<b>Mallory</b>\nX-Evil: 1",),
    code_url="javascript:alert(1)",
    project_url="data:text/html,<script>alert(1)</script>",
    pdf_url="  https://evil.example/\r\nX: y",
    categories=("cs.LG<script>",),
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
