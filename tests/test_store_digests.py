"""Stored digests in their compact record (issue 16, schema 12): each digest's items packed into
its own row, its sources' notes shared, papers re-keyed after a digest named them, many digests
read at once, and a store of schema 11 carried over exactly.

Real SQLite files in tmp_path; no network, no clock.
"""

from __future__ import annotations

import json
import random
import sqlite3
from dataclasses import fields
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from helpers import T0, record

from digest.models import Digest, Reasons, ScoredPaper, SourceNote
from digest.store import MIGRATIONS, SCHEMA_VERSION, Store

DAY = date(2026, 11, 21)
UNTIL = datetime(2026, 11, 21, 7, 0, tzinfo=UTC)

EVERY_REASON = Reasons(
    keywords=("diffusion model", "sampling"),
    title_keywords=("diffusion model",),
    authors=("Jane Doe",),
    categories=("cs.LG", "stat.ML"),
    similar_to="A paper you liked",
    similarity=0.8123456789012345,
    upvotes=0,  # zero upvotes is not "no community signal" (None)
    parts=(("keywords", 3.2), ("authors", 1.0), ("similarity", 0.1 + 0.2)),
    colleagues=("John Roe",),
    liked_authors=("Ann Poe", "Bo Li"),
)


def ingest(store: Store, count: int) -> list[str]:
    """`count` papers in the store; their keys."""
    keys = [f"2611.{i:05d}" for i in range(count)]
    store.ingest([record(f"Paper number {i}", arxiv_id=key) for i, key in enumerate(keys)], T0)
    return keys


def digest_of(
    store: Store,
    profile: str,
    keys: list[str],
    reasons: list[Reasons] | None = None,
    day: date = DAY,
    sources: tuple[SourceNote, ...] = (SourceNote("arxiv", "ok"), SourceNote("hf", "failed", "timeout")),
) -> Digest:
    items = []
    for position, key in enumerate(keys):
        paper = store.paper(key)
        assert paper is not None
        why = reasons[position] if reasons else Reasons(keywords=(f"word{position}",))
        items.append(ScoredPaper(paper, 1.0 / (position + 3), why))
    until = UNTIL + (day - DAY)
    return Digest(profile, day, "Europe/Berlin", until - timedelta(days=1), until, 531, sources, tuple(items))


def test_a_digest_with_every_reason_set_reads_back_the_same(store: Store) -> None:
    keys = ingest(store, 4)
    odd = [
        EVERY_REASON,
        Reasons(),  # every field at its default
        Reasons(similarity=-0.0, upvotes=None, similar_to=""),  # near the defaults, not at them
        Reasons(similarity=0, keywords=("ünïcødé \"quoted\"",)),  # an int 0, not 0.0
    ]
    composed = digest_of(store, "ann", keys, odd)
    store.save_digest(composed, ["feed"], T0)
    back = store.digest("ann", DAY)
    assert back == composed
    assert back is not None
    # Equal is not enough for the edge cases: the types and the sign come back too.
    assert [type(item.reasons.similarity) for item in back.items] == [float, float, float, int]
    assert str(back.items[2].reasons.similarity) == "-0.0"
    assert back.items[0].reasons.upvotes == 0 and back.items[1].reasons.upvotes is None
    assert back.items[0].reasons.parts[2] == ("similarity", 0.1 + 0.2)


def test_a_digest_of_no_items_and_no_sources_reads_back_the_same(store: Store) -> None:
    composed = digest_of(store, "ann", [], sources=())
    store.save_digest(composed, ["feed"], T0)
    assert store.digest("ann", DAY) == composed
    assert store.digests("ann") == [composed]


def test_fields_a_newer_version_wrote_are_ignored(store: Store) -> None:
    import zlib

    keys = ingest(store, 1)
    store.save_digest(digest_of(store, "ann", keys), ["feed"], T0)
    newer = [[keys[0], 0.5, {"keywords": ["a"], "novelty": 0.9}, "an element of the future"]]
    store._db.execute("UPDATE digests SET items = ?", (zlib.compress(json.dumps(newer).encode()),))
    back = store.digest("ann", DAY)
    assert back is not None
    assert [(i.paper.key, i.score, i.reasons) for i in back.items] == [
        (keys[0], 0.5, Reasons(keywords=("a",)))
    ]


def test_a_paper_re_keyed_after_a_digest_named_it_is_still_in_it(store: Store) -> None:
    keys = ingest(store, 1)
    store.ingest([record("Transformer in Transformer", source="text")], T0)
    title_key = "title:transformer in transformer"
    composed = digest_of(store, "ann", [title_key, keys[0]])
    store.save_digest(composed, ["feed"], T0)
    # The paper learns a DOI, then an arXiv id: two re-keys, the second of the first's key.
    store.ingest([record("Transformer in Transformer", source="journal", doi="10.1/tnt")], T0)
    assert store.paper("doi:10.1/tnt") is not None
    day_two = digest_of(store, "bob", ["doi:10.1/tnt"], day=DAY + timedelta(days=1))
    store.save_digest(day_two, ["feed"], T0)
    store.ingest(
        [record("Transformer in Transformer", source="api", arxiv_id="2103.00112", doi="10.1/tnt")],
        T0,
    )
    paper = store.paper("2103.00112")
    assert paper is not None and store.paper(title_key) is None
    back = store.digest("ann", DAY)
    later = store.digests_for([("bob", DAY + timedelta(days=1))])
    assert back is not None
    assert [item.paper for item in back.items] == [paper, composed.items[1].paper]
    assert [item.reasons for item in back.items] == [item.reasons for item in composed.items]
    assert [item.paper for item in later["bob", DAY + timedelta(days=1)].items] == [paper]


def test_digests_for_reads_many_digests_at_once(store: Store) -> None:
    keys = ingest(store, 30)
    rng = random.Random(7)
    saved = {}
    for n in range(600):  # more than one query's worth of pairs
        profile, day = f"p{n % 300:03d}", DAY + timedelta(days=n // 300)
        saved[profile, day] = digest_of(store, profile, rng.sample(keys, 18), day=day)
    store.save_digests([(d, ["feed"]) for d in saved.values()], T0)
    wanted = [*saved, ("p000", DAY), ("nobody", DAY), ("p001", DAY - timedelta(days=9))]
    found = store.digests_for(wanted)
    assert store.digests_for([]) == {}
    assert found == saved  # a pair twice counts once; pairs with no digest are left out


def test_digests_sharing_their_sources_notes_store_them_once(store: Store) -> None:
    other = (SourceNote("arxiv", "layout", "the page changed"),)
    store.save_digests(
        [(digest_of(store, f"p{n}", []), ["feed"]) for n in range(5)]
        + [(digest_of(store, "q", [], sources=other), ["feed"])],
        T0,
    )
    assert store.digest("q", DAY) == digest_of(store, "q", [], sources=other)
    assert store.digest("p3", DAY) == digest_of(store, "p3", [])
    assert store._db.execute("SELECT count(*) FROM digest_sources").fetchone()[0] == 2


def test_pruning_keeps_the_notes_of_kept_digests_only(store: Store) -> None:
    now = UNTIL + timedelta(days=200)
    old, recent = DAY, DAY + timedelta(days=150)
    gone = (SourceNote("arxiv", "failed", "old news"),)
    owed = (SourceNote("arxiv", "failed", "still owed"),)
    shared = (SourceNote("arxiv", "ok"),)
    store.save_digest(digest_of(store, "a", [], day=old, sources=gone), ["feed"], T0)
    store.save_digest(digest_of(store, "b", [], day=old, sources=owed), ["feed"], T0)
    store.save_digest(digest_of(store, "c", [], day=old, sources=shared), ["feed"], T0)
    store.save_digest(digest_of(store, "c", [], day=recent, sources=shared), ["feed"], T0)
    for row in store.deliveries():
        if row.profile != "b":  # b's is still pending: its digest stays, notes and all
            store.claim(row, "run", T0, stale_before=T0)
            store.settle(row, "run", "sent", T0)
    report = store.prune(now - timedelta(days=90), now)
    assert (report.digests, report.kept_unfinished) == (2, 1)
    assert store.digest("b", old) == digest_of(store, "b", [], day=old, sources=owed)
    assert store.digest("c", recent) == digest_of(store, "c", [], day=recent, sources=shared)
    notes = {row[0] for row in store._db.execute("SELECT sources FROM digest_sources")}
    assert notes == {'[["arxiv","failed","still owed"]]', '[["arxiv","ok",null]]'}


def test_a_store_of_schema_11_keeps_its_digests_exactly(tmp_path: Path) -> None:
    """Build a schema-11 file with its own migrations, fill it with rows as that version wrote
    them (reasons with every field, with an unknown one, with few), open it with this version:
    every digest, item, reason and ledger row is still there, as schema 11 gave them."""
    path = tmp_path / "v11.sqlite3"
    with Store.open(tmp_path / "papers.sqlite3") as source:
        keys = ingest(source, 5)
        papers = {key: source.paper(key) for key in keys}
    db = sqlite3.connect(path)
    for script in MIGRATIONS[:11]:
        db.executescript(script)
    from digest.store.papers import _to_row

    db.executemany(
        f"INSERT INTO papers VALUES ({', '.join('?' * 12)})",
        [_to_row(p) for p in papers.values() if p is not None],
    )
    every = {f.name: getattr(EVERY_REASON, f.name) for f in fields(Reasons)}
    old_reasons = [
        json.dumps(every),
        json.dumps({**dict.fromkeys(every), "keywords": [], "title_keywords": [], "authors": [],
                    "categories": [], "similarity": 0.0, "parts": [], "colleagues": [],
                    "liked_authors": [], "unknown_later_field": 1}),
        json.dumps({"keywords": ["only this"]}),  # an older writer's fewer fields
    ]
    sources = '[["arxiv","ok",null],["hf","failed","timeout"]]'
    for profile, day, count in (("ann", "2026-11-20", 3), ("ann", "2026-11-21", 0), ("bob", "2026-11-21", 5)):
        db.execute(
            "INSERT INTO digests VALUES (?, ?, 'Europe/Berlin', ?, ?, 531, ?)",
            (profile, day, f"{day}T06:00:00+00:00", f"{day}T07:00:00.123456+00:00", sources),
        )
        db.execute(
            "INSERT INTO digest_heads VALUES (?, ?, ?) ON CONFLICT (profile) DO UPDATE SET"
            " day = excluded.day, until = excluded.until",
            (profile, day, f"{day}T07:00:00.123456+00:00"),
        )
        for position in range(count):
            db.execute(
                "INSERT INTO digest_items VALUES (?, ?, ?, ?, ?, ?)",
                (profile, day, position, keys[(position * 2) % 5], 0.1 * 3 + position,
                 old_reasons[position % 3]),
            )
        db.execute(
            "INSERT INTO deliveries VALUES (?, 'mail:x@example.org', ?, 'sent', 1, ?, NULL, NULL, '<m@x>')",
            (profile, day, f"{day}T07:01:00+00:00"),
        )
        db.execute(
            "INSERT INTO deliveries VALUES (?, 'feed', ?, 'pending', 0, ?, NULL, NULL, NULL)",
            (profile, day, f"{day}T07:01:00+00:00"),
        )
    db.execute("PRAGMA user_version = 11")
    db.commit()

    # What schema 11 held, read straight from its rows: the digests as Store.digest made them.
    expected: dict[tuple[str, str], tuple[object, ...]] = {}
    for profile, day, tz, since, until, scanned, notes in db.execute("SELECT * FROM digests"):
        items = [
            (key, score, reasons)
            for key, score, reasons in db.execute(
                "SELECT key, score, reasons FROM digest_items WHERE profile = ? AND day = ?"
                " ORDER BY position",
                (profile, day),
            )
        ]
        expected[profile, day] = (tz, since, until, scanned, json.loads(notes), items)
    ledger = sorted(db.execute("SELECT * FROM deliveries").fetchall())
    db.close()

    with Store.open(path) as store:
        upgraded = store.digests_for([(p, date.fromisoformat(d)) for p, d in expected])
        heads = store.digest_heads()
        after_ledger = sorted(
            (r.profile, r.channel, r.day.isoformat(), r.status, r.attempts, r.updated.isoformat(),
             None, r.error, r.message_id)
            for r in store.deliveries()
        )
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert len(upgraded) == 3
    for (profile, day), (tz, since, until, scanned, notes, items) in expected.items():
        got = upgraded[profile, date.fromisoformat(day)]
        assert (got.timezone, got.since.isoformat(), got.until.isoformat(), got.scanned) == (
            tz, since, until, scanned
        )
        assert [[n.source, n.status, n.error] for n in got.sources] == notes
        assert [(i.paper, i.score) for i in got.items] == [(papers[k], s) for k, s, _ in items]
        for item, (_, _, reasons) in zip(got.items, items, strict=True):
            written = {k: v for k, v in json.loads(reasons).items() if k != "unknown_later_field"}
            defaults = Reasons()
            for name in every:
                value = getattr(item.reasons, name)
                if name in written:
                    want = written[name]
                    if name == "parts":
                        want = tuple(tuple(p) for p in want)
                    elif isinstance(want, list):
                        want = tuple(want)
                    assert value == want and type(value) is type(want), name
                else:
                    assert value == getattr(defaults, name), name
    assert heads["bob"].day == date(2026, 11, 21)
    assert after_ledger == ledger
    with sqlite3.connect(path) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_schema")}
    assert "digest_items" not in tables and "deliveries_by_digest" not in tables


def test_500_digests_of_18_items_take_little_room(tmp_path: Path) -> None:
    """The compact record's budget: 500 digests of 18 items (each with a keyword or two, a
    category and the score's parts, as the ranking gives them) and their two ledger rows grow the
    store by less than 1.5 kB a digest. Schema 11 took 6.4 kB (items 5.1, their key index 0.7,
    the ledger 0.45, the digest row 0.15); the packed items alone measure about 0.35 kB, the
    digest row and its head 0.2, the two ledger rows 0.35."""
    path = tmp_path / "s.sqlite3"
    rng = random.Random(16)
    words = [f"term{n}" for n in range(400)]
    with Store.open(path) as store:
        keys = ingest(store, 531)
        store.save_digest(digest_of(store, "warm-up", keys[:1]), ["feed"], T0)
        papers = {key: store.paper(key) for key in keys}

        def used() -> int:
            with sqlite3.connect(path) as db:
                return int(db.execute("SELECT sum(pgsize) FROM dbstat").fetchone()[0])

        before = used()
        composed = []
        for n in range(500):
            items = []
            for position, key in enumerate(rng.sample(keys, 18)):
                words_hit = tuple(rng.sample(words, rng.choice((1, 1, 2))))
                score = round(2.0 - position * 0.07 + rng.random() / 100, 4)
                reasons = Reasons(
                    keywords=words_hit,
                    title_keywords=words_hit[:1] if rng.random() < 0.3 else (),
                    categories=("cs.LG",) if rng.random() < 0.5 else (),
                    parts=(("keywords", round(score - 0.5, 4)), ("categories", 0.5)),
                )
                paper = papers[key]
                assert paper is not None
                items.append(ScoredPaper(paper, score, reasons))
            composed.append(
                (
                    Digest(f"p{n:06d}", DAY, "UTC", UNTIL - timedelta(days=1), UNTIL, 531, (),
                           tuple(items)),
                    ["feed", f"mail:reader{n:06d}@example.org"],
                )
            )
        store.save_digests(composed, T0)
        grown = used() - before
    assert grown / 500 < 1500, f"{grown / 500:.0f} bytes a digest"


def test_a_days_digests_and_ledger_rows_are_written_side_by_side(tmp_path: Path) -> None:
    """With two months of digests kept, saving the next day's for 300 profiles writes about as
    many pages as the new rows fill, not one page a profile (as tables keyed by profile first
    did: each profile's new row went into a page of its own). Pages written: the WAL's frames."""
    path = tmp_path / "s.sqlite3"
    profiles = [f"p{n:04d}" for n in range(300)]
    with Store.open(path) as store:
        keys = ingest(store, 20)
        for offset in range(61):
            day = DAY + timedelta(days=offset)
            composed = [(digest_of(store, name, keys[:3], day=day), ["feed", f"mail:{name}@example.org"])
                        for name in profiles]
            if offset == 60:
                store._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            store.save_digests(composed, T0)
        _, frames, _ = store._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    # The new rows: 300 digests of ~0.2 kB and 600 ledger rows of ~0.1 kB, 16 kB pages: ~8 pages,
    # and the indexes' entries (57 when measured). Keyed by profile first, this took 397.
    assert frames < 120, frames
