"""Benchmark: render 10,000 personal emails of 20 papers each, plus 10,000 feed pairs.

    python bench/render_speed.py [--profiles 10000] [--items 20] [--repeat 3] [--workers 1 2]
                                 [--email-only]

Papers are 2,000 real arXiv papers from the shared corpus (../shared/corpus). Each profile's
digest holds 20 of them with reasons (matched keywords, a pinned author, categories), as the
ranking gives them. Per profile, one run of the job does what `digest run` does after ranking:
the HTML (CSS inlined) and text email, the MIME message as bytes, and the profile's RSS and
Atom feed, each with the reader's signed links (manage, unsubscribe, and "More like this" / "Not
relevant" on every paper). A paper's card is rendered once per process and shared by every
reader; a profile's feedback links are signed once here for its email and feed (`digest run`
makes every feed before the first email, so with many profiles it signs them twice).
Prints the median over the repeats, for one process and for a pool of two (the machine's cores),
and the cost of a full 7-day feed window (140 items) apart.
Target: at most 60 s for everything on the 2-core machine. `--email-only` times the email and its
MIME message alone (the mail channel's share of the CPU), without the feeds.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from rank_speed import DEFAULT_CORPUS, load_papers

from digest import feeds
from digest.models import Digest, Paper, Reasons, ScoredPaper, SourceNote
from digest.render import (
    EmailLinks,
    FeedbackLinks,
    LinkShortener,
    Renderer,
    build_message,
    message_id,
)
from digest.tokens import manage_token, unsubscribe_token

BASE = "https://digest.example.org"
SENDER = "paperdigest <digest@example.org>"
DAY = date(2026, 6, 30)
KEYS = ["bench-signing-key"]


def make_digests(papers: list[Paper], profiles: int, items: int, seed: int = 0) -> list[Digest]:
    rng = random.Random(seed)
    until = datetime(2026, 6, 30, 7, tzinfo=UTC)
    digests = []
    for number in range(profiles):
        chosen = rng.sample(papers, items)
        scored = []
        for rank, paper in enumerate(chosen):
            words = paper.title.split()
            reasons = Reasons(
                keywords=tuple(w.lower() for w in words[:2]),
                authors=paper.authors[:1] if rank % 3 == 0 else (),
                categories=paper.categories[:1],
                parts=(("keywords", 3.0), ("categories", 0.5)),
            )
            scored.append(ScoredPaper(paper, 20.0 - rank, reasons))
        digests.append(
            Digest(
                profile=f"p{number:05d}",
                day=DAY,
                timezone="UTC",
                since=until - timedelta(days=1),
                until=until,
                scanned=len(papers),
                sources=(SourceNote("arxiv-cs", "ok"),),
                items=tuple(scored),
            )
        )
    return digests


def render_all(digests: list[Digest], email_only: bool = False) -> int:
    """Everything one run makes per profile; returns the bytes made (so nothing is optimised away)."""
    renderer = Renderer()
    shorten = LinkShortener(BASE, tuple(KEYS))
    made = 0
    for digest in digests:
        recipient = f"{digest.profile}@example.org"
        # As MailBuilder.links makes them: every token signed, one HMAC each, and the text
        # part's links short.
        links = EmailLinks(
            feed_rss=f"{BASE}/feeds/profiles/{digest.profile}.rss",
            feed_atom=f"{BASE}/feeds/profiles/{digest.profile}.atom",
            unsubscribe=f"{BASE}/unsubscribe/{unsubscribe_token(KEYS, digest.profile, recipient)}",
            unsubscribe_mailto="mailto:unsubscribe@example.org",
            manage=f"{BASE}/manage/{manage_token(KEYS, digest.profile, recipient)}",
            feedback=FeedbackLinks(digest.profile, BASE, tuple(KEYS)),
            shorten=shorten,
        )
        rendered = renderer.email(digest, recipient=recipient, links=links)
        message = build_message(
            rendered,
            sender=SENDER,
            recipient=recipient,
            message_id=message_id(digest, recipient, SENDER),
            date=digest.until,
            list_id=f"<{digest.profile}.paperdigest.example.org>",
            links=links,
        )
        shorten.take()  # as the mail channel does, a batch at a time
        made += len(message.data)
        if email_only:
            continue
        feed = feeds.profile_feed(
            digest.profile, [digest], renderer, f"{BASE}/feeds", 200, links.feedback
        )
        made += len(feed.rss) + len(feed.atom)
    return made


def timed(digests: list[Digest], workers: int, email_only: bool) -> float:
    began = time.perf_counter()
    if workers == 1:
        render_all(digests, email_only)
    else:
        chunks = [digests[i::workers] for i in range(workers)]
        with ProcessPoolExecutor(max_workers=workers) as pool:
            list(pool.map(render_all, chunks, [email_only] * workers))
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--profiles", type=int, default=10_000)
    parser.add_argument("--items", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--email-only", action="store_true",
                        help="the email and its MIME message alone, no feeds")
    args = parser.parse_args()

    papers = load_papers(args.corpus)[-2_000:]
    digests = make_digests(papers, args.profiles, args.items)
    print(f"{args.profiles:,} profiles × {args.items} papers (from {len(papers):,} papers)")
    for workers in args.workers:
        runs = [timed(digests, workers, args.email_only) for _ in range(args.repeat)]
        median = statistics.median(runs)
        print(
            f"  {workers} process{'es' if workers > 1 else ''}: median {median:.1f} s "
            f"(runs {', '.join(f'{r:.1f}' for r in runs)}), "
            f"{median / args.profiles * 1000:.2f} ms per profile "
            f"({'email + message' if args.email_only else 'email + message + RSS + Atom'})"
        )
    if args.email_only:
        return

    # A full rolling window: 7 days of 20 papers in one profile's feed.
    week = [
        Digest(d.profile, DAY - timedelta(days=k), d.timezone, d.since, d.until, d.scanned,
               d.sources, d.items)
        for k, d in enumerate(digests[:7])
    ]
    renderer = Renderer()
    feeds.profile_feed("week", week, renderer, f"{BASE}/feeds", 200)  # warm the card cache

    def week_feed(name: str) -> None:
        # A profile of its own each time: its feedback links are signed afresh, as in a run.
        feedback = FeedbackLinks(name, BASE, tuple(KEYS))
        feeds.profile_feed(name, week, renderer, f"{BASE}/feeds", 200, feedback)

    began = time.perf_counter()
    for number in range(100):
        week_feed(f"week{number}")
    per_pair = (time.perf_counter() - began) / 100
    print(f"  a 7-day feed pair (140 items): {per_pair * 1000:.1f} ms")


if __name__ == "__main__":
    main()
