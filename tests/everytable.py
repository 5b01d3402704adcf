"""A few rows in every table of the store, written through the store's own methods, and all of
them read back the same way: the round trip every backend must make (test_store_upgrade.py), and
what tests/fixtures/store-v15.sqlite3 holds (made by `python3 tests/everytable.py FILE` with the
release of schema 15; a later release must still read it all back, see test_store_upgrade.py).
"""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from helpers import record

from digest.models import (
    Digest,
    FetchResult,
    Interests,
    Reasons,
    ScoredPaper,
    SignupRequest,
    SourceNote,
    SourceRun,
    Subscriber,
)
from digest.store import Store

AT = datetime(2026, 11, 20, 21, 0, tzinfo=UTC)
DAY = date(2026, 11, 21)
MODEL = "all-MiniLM-L6-v2-int8"
VECTOR = bytes(range(256)) * 3  # float16 bytes, as stored: every byte value
URL = "https://export.arxiv.org/api/query?search_query=cat:cs.LG"
INTERESTS = Interests(
    keywords=("diffusion", "Schrödinger bridge"), authors=("Jane Doe",), categories=("cs.LG",),
    examples=("2611.00001",), frequency="weekly", weekday="friday", timezone="Europe/Berlin",
    deliver_at="08:30", email=False,
)  # fmt: skip


def fill(store: Store) -> None:
    """Rows in every table, each value of an unusual kind somewhere (non-ASCII text, bytes of
    every value, a float's full precision, NULLs, a percent sign and a question mark)."""
    store.ingest(
        [
            record("Diffusion Models Are Score Matchers", source="arxiv", arxiv_id="2611.00001",
                   abstract="We show 100% of ?-marks survive: Schrödinger, naïve, 𝔼[x].",
                   authors=("Jane Doe", "Zoë Roe"), categories=("cs.LG", "stat.ML")),
            record("A Journal Paper", source="journal", doi="10.1/ABC"),
            record("Only a Title", source="text"),
        ],
        AT,
        [FetchResult(URL, 200, b"", etag='W/"e-1"', last_modified="Fri, 20 Nov 2026 21:00:00 GMT")],
    )  # fmt: skip
    # The journal paper learns its arXiv id (re-keyed: an alias) and a new title (history).
    store.ingest(
        [record("A Journal Paper, Revised", source="arxiv", arxiv_id="2611.00002", doi="10.1/abc",
                upvotes=7)],
        AT + timedelta(hours=1),
    )  # fmt: skip
    store.save_embeddings(MODEL, {"2611.00001": VECTOR, "lib:1": VECTOR[::-1]})
    run = store.begin_run("run", AT)
    store.record_source_run(
        run, SourceRun("arxiv", AT, 1.2345678901234567, 3, 2, 1, "ok", None)
    )
    store.record_source_run(run, SourceRun("hf", AT, 0.5, 1, 0, 0, "failed", "HTTP 503"))
    store.finish_run(run, AT + timedelta(minutes=2))
    store.begin_run("ingest", AT + timedelta(hours=2))  # never finished
    store.set_problem("embeddings", "the sentence model could not be loaded", AT)
    paper = store.paper("2611.00001")
    assert paper is not None
    reasons = Reasons(keywords=("diffusion",), similarity=0.8123456789012345, upvotes=0,
                      parts=(("keywords", 3.2), ("similarity", 0.1 + 0.2)))  # fmt: skip
    until = datetime(2026, 11, 21, 7, 0, tzinfo=UTC)
    digest = Digest(
        "me", DAY, "Europe/Berlin", until - timedelta(days=1), until, 531,
        (SourceNote("arxiv", "ok"), SourceNote("hf", "failed", "HTTP 503")),
        (ScoredPaper(paper, 0.3333333333333333, reasons),),
    )  # fmt: skip
    store.save_digest(digest, ["mail:me@example.org", "feed"], AT)
    (row, _) = sorted(store.deliveries(), key=lambda d: d.channel != "feed")
    assert store.claim(row, "run-1", AT, stale_before=AT - timedelta(minutes=15))
    store.settle(row, "run-1", "sent", AT, message_id="<m1@example.org>")
    created = AT - timedelta(days=3)
    store.save_subscriber(
        Subscriber("web-00ff", "Reader@Example.org", INTERESTS, "active", created, AT, AT)
    )
    store.save_subscriber(Subscriber("web-0a0a", "waiting@example.org", Interests(), "pending", AT, AT))
    store.unsubscribe("web-00ff", "reader@example.org", AT)
    store.record_confirmation_mail("waiting@example.org", AT, "192.0.2.0/24")
    store.save_short_links({"AbC123": "/feedback/TOKEN", "zZ9": "/unsubscribe/T?x=1%"}, AT)
    store.queue_signup(
        SignupRequest("2001:db8::/48", "New@Example.org", INTERESTS, AT, b"\x00@article{x}\xff", "lib.bib")
    )
    store.record_feed_reads(["web-00ff"], AT)
    store.mark("me", "2611.00001", "more", AT)
    store.mark("me", "2611.00002", "less", AT + timedelta(seconds=1))
    store.import_library(
        "me", [("lib:1", {"title": "Ünïcode Library Paper", "authors": ["A. Person"]}),
               ("2611.00001", {"title": "Diffusion Models Are Score Matchers"})], AT,
    )  # fmt: skip
    store.save_embeddings(MODEL, {"lib:1": VECTOR[::-1]})
    store.save_learned_profiles({"me": ("fp-1", VECTOR[:64], -0.1 - 0.2)}, AT)
    store.set_meta("pruned_at", AT.isoformat())
    store.record_size(AT)
    if hasattr(store, "put_feed_files"):  # schema 16 on: what hosts share (shared.py)
        fill_16(store)


def fill_16(store: Store) -> None:
    """Rows in the tables of migration 16 (feed_files, rate_counts, source_claims; a SQLite
    store keeps its signing keys in secret.key, not in signing_keys)."""
    store.put_feed_files({"all.atom": VECTOR, "profiles/Zoë.rss": b"<rss>100% ?</rss>"}, AT)
    store.count_event("subscribe:192.0.2.1", 12345, 12344)
    store.claim_source("arxiv", "host:1:abc", AT, AT + timedelta(minutes=15))
    store.finish_source("arxiv", "host:1:abc", AT, AT + timedelta(minutes=10))
    store.claim_source("hf", "host:2:def", AT, AT + timedelta(minutes=15))


def read(store: Store) -> dict[str, Any]:
    """Everything fill() wrote, as the store's methods answer (claiming the waiting sign-up is
    the last read: it changes the row)."""
    keys = ["2611.00001", "2611.00002", "title:only a title", "lib:1"]
    facts = store.quiet_facts()
    return {
        "papers": store.papers(limit=None),
        "by doi": store.find("10.1/ABC"),
        "aliased": [store.paper(key) for key in keys],
        "history": {key: store.paper_history(key) for key in keys},
        "embeddings": store.embeddings(keys, MODEL),
        "source runs": store.source_runs("arxiv") + store.source_runs("hf"),
        "unfinished": store.unfinished_runs(AT - timedelta(days=1)),
        "validators": store.validators(URL),
        "problems": store.problems(),
        "digest": store.digest("me", DAY),
        "heads": store.digest_heads(),
        "deliveries": store.deliveries(),
        "subscribers": store.subscribers(),
        "unsubscribed": store.is_unsubscribed("web-00ff", "READER@example.org"),
        "mails": store.confirmation_mails_since(AT - timedelta(days=1), network="192.0.2.0/24"),
        "oldest mail": store.oldest_confirmation_mail_since(AT - timedelta(days=1)),
        "links": [store.short_link(code) for code in ("AbC123", "zZ9", "none")],
        "readers": store.feed_readers(AT),
        "feedback": store.feedback(),
        "library": store.library(),
        "library papers": store.library_papers(),
        "learned": store.learned_profiles(),
        "meta": [store.meta("pruned_at"), facts[0], facts[1], facts[2]],
        "sizes": [(s.day, s.digests, s.deliveries) for s in store.size_samples(DAY - timedelta(days=9))],
        "waiting": store.signups_waiting("2001:db8::/48"),
        "signup": store.claim_signup(AT + timedelta(days=1), timedelta(minutes=5), AT),
        **read_16(store),
    }


SINCE_16 = ("feed files", "rate counts", "source claims")  # parts a store of schema 15 lacks


def read_16(store: Store) -> dict[str, Any]:
    return {
        "feed files": [store.feed_file(path) for path in ("all.atom", "profiles/Zoë.rss", "no")],
        "rate counts": store.count_event("subscribe:192.0.2.1", 12345, 12344),
        "source claims": store.source_claims(),
    }


if __name__ == "__main__":  # python3 tests/everytable.py FILE: a store of this release
    with Store.open(Path(sys.argv[1])) as made:
        fill(made)
