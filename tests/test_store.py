import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest
from helpers import T0, record

from digest.errors import StoreError
from digest.identify import new_paper
from digest.models import FetchResult, SourceRun
from digest.store import MIGRATIONS, SCHEMA_VERSION, Store
from digest.store.papers import _to_row


def test_only_never_seen_papers_are_new(store: Store) -> None:
    first = store.ingest(
        [record("A", arxiv_id="2501.00001"), record("B", arxiv_id="2501.00002")], T0
    )
    again = store.ingest(
        [record("A", arxiv_id="2501.00001"), record("C", arxiv_id="2501.00003")], T0
    )
    assert first.new_keys == ("2501.00001", "2501.00002")
    assert again.new_keys == ("2501.00003",)
    assert store.count_papers() == 3


def test_a_new_version_is_not_a_new_paper(store: Store) -> None:
    store.ingest([record("A", arxiv_id="2501.00001", version=1)], T0)
    outcome = store.ingest(
        [record("A (revised)", arxiv_id="2501.00001", version=2)], T0 + timedelta(days=3)
    )
    assert outcome.new_keys == ()
    paper = store.paper("2501.00001")
    assert paper is not None
    assert paper.version == 2
    assert paper.title == "A (revised)", "a newer version's title, from a source as trusted"
    assert [h.fields for h in store.paper_history("2501.00001")] == [{"title": "A", "version": 1}]


def test_duplicates_inside_one_listing_count_once(store: Store) -> None:
    outcome = store.ingest(
        [record("A", arxiv_id="2501.00001"), record("A", arxiv_id="2501.00001", version=2)], T0
    )
    assert outcome.new_keys == ("2501.00001",)


def test_hugging_face_and_arxiv_sightings_merge_into_one_paper(store: Store) -> None:
    store.ingest(
        [
            record(
                "Diffusion Forcing",
                source="hf",
                listing="https://huggingface.co/api/daily_papers",
                arxiv_id="2407.01392",
                upvotes=55,
                code_url="https://github.com/x/y",
            )
        ],
        T0,
    )
    outcome = store.ingest(
        [
            record(
                "Diffusion Forcing",
                source="arxiv-lg",
                listing="https://rss.arxiv.org/atom/cs.LG",
                arxiv_id="2407.01392",
                version=1,
                categories=("cs.LG", "cs.CV"),
                primary_category="cs.LG",
            )
        ],
        T0 + timedelta(hours=2),
    )
    assert outcome.new_keys == ()
    paper = store.paper("2407.01392")
    assert paper is not None
    assert paper.upvotes == 55 and paper.code_url == "https://github.com/x/y"
    assert paper.categories == ("cs.LG", "cs.CV") and paper.primary_category == "cs.LG"
    assert paper.sources == ("hf", "arxiv-lg")
    assert (paper.first_seen, paper.first_source) == (T0, "hf")
    assert paper.first_listing == "https://huggingface.co/api/daily_papers"
    assert [p.key for p in store.papers(source="arxiv-lg")] == ["2407.01392"]


def test_a_text_entry_is_keyed_by_title_until_an_id_is_known(store: Store) -> None:
    assert store.ingest([record("Transformer in Transformer", source="text")], T0).new_keys == (
        "title:transformer in transformer",
    )
    learned = store.ingest(
        [record("Transformer in Transformer", source="api", arxiv_id="2103.00112")], T0
    )
    assert learned.new_keys == ()
    assert store.paper("title:transformer in transformer") is None
    paper = store.paper("2103.00112")
    assert paper is not None and paper.sources == ("text", "api")
    # The sightings moved with the key: the paper is still found under the text source.
    assert [p.key for p in store.papers(source="text")] == ["2103.00112"]
    # A later text listing of the same title is the known paper, not a new one.
    assert store.ingest([record("Transformer in  transformer", source="text")], T0).new_keys == ()


def test_a_title_learned_and_used_within_one_batch(store: Store) -> None:
    outcome = store.ingest(
        [record("Same Title", source="t"), record("Same title", source="t", arxiv_id="2501.1")], T0
    )
    assert outcome.new_keys == ("2501.1",)
    assert store.count_papers() == 1


def test_a_doi_keyed_paper_takes_the_arxiv_id(store: Store) -> None:
    store.ingest([record("P", source="journal", doi="10.1/ABC")], T0)
    assert (
        store.ingest(
            [record("P", source="api", arxiv_id="2501.00009", doi="10.1/abc")], T0
        ).new_keys
        == ()
    )
    paper = store.paper("2501.00009")
    assert paper is not None and paper.doi == "10.1/abc"


def test_a_failed_ingest_leaves_the_store_as_it_was(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.ingest([record("A", arxiv_id="2501.00001", upvotes=1)], T0)

    def broken(*args: object) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr("digest.store.runs.save_validators", broken)
    with pytest.raises(StoreError, match="could not store 2 records: disk I/O error"):
        store.ingest(
            [record("A", arxiv_id="2501.00001", upvotes=9), record("B", arxiv_id="2501.00002")], T0
        )
    monkeypatch.undo()
    assert store.count_papers() == 1
    paper = store.paper("2501.00001")
    assert paper is not None and paper.upvotes == 1


def test_validators_are_saved_with_the_records(store: Store) -> None:
    url = "https://example.org/feed"
    store.ingest(
        [record("A", arxiv_id="2501.1")],
        T0,
        validators=[FetchResult(url, 200, b"x", etag='"v1"', last_modified="Fri, 20 Nov 2026")],
    )
    assert store.validators(url) == ('"v1"', "Fri, 20 Nov 2026")
    store.ingest([], T0, validators=[FetchResult(url, 304, None)])
    assert store.validators(url) == ('"v1"', "Fri, 20 Nov 2026"), "a 304 keeps the validators"
    assert store.validators("https://example.org/other") == (None, None)


def test_run_history_per_source_newest_first(store: Store) -> None:
    for day, parsed in enumerate((30, 28, 0)):
        run_id = store.begin_run("ingest", T0 + timedelta(days=day))
        store.record_source_run(
            run_id,
            SourceRun(
                "hf", T0 + timedelta(days=day), 1.5, 1, parsed, parsed, "ok" if parsed else "layout"
            ),
        )
    history = store.source_runs("hf")
    assert [(r.parsed, r.status) for r in history] == [(0, "layout"), (28, "ok"), (30, "ok")]
    assert history[0].duration_s == 1.5
    assert store.source_runs("other") == []


def test_papers_are_listed_newest_first_with_filters(store: Store) -> None:
    store.ingest([record("Old graph paper", source="a", arxiv_id="2501.1")], T0)
    store.ingest(
        [record("New diffusion paper", source="b", arxiv_id="2501.2", abstract="About 100% of it")],
        T0 + timedelta(days=1),
    )
    assert [p.key for p in store.papers()] == ["2501.2", "2501.1"]
    assert [p.key for p in store.papers(source="a")] == ["2501.1"]
    assert [p.key for p in store.papers(since=T0 + timedelta(hours=1))] == ["2501.2"]
    assert [p.key for p in store.papers(text="DIFFUSION")] == ["2501.2"]
    assert [p.key for p in store.papers(text="100%")] == ["2501.2"]
    assert store.papers(text="0%_") == [], "LIKE wildcards in the user's text are literal"


def test_statement_journals_stay_in_memory_not_temporary_files(tmp_path: Path) -> None:
    # Each digest saved needs a statement journal (its ledger rows' foreign key), of 16 kB pages:
    # spilled to temporary files they were 52 kB written a profile a day (issue 16).
    with Store.open(tmp_path / "s.sqlite3") as opened:
        assert opened._db.execute("PRAGMA temp_store").fetchone()[0] == 2  # MEMORY
        with opened.another() as other:
            assert other._db.execute("PRAGMA temp_store").fetchone()[0] == 2


def test_the_store_is_one_wal_file_with_a_versioned_schema(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    Store.open(path).close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()
    with Store.open(path) as reopened:  # opening again migrates nothing and loses nothing
        reopened.ingest([record("A", arxiv_id="2501.1")], T0)
    with Store.open(path) as reopened:
        assert reopened.count_papers() == 1


def test_a_store_of_schema_5_upgrades_to_vectors_and_libraries_keeping_everything(
    tmp_path: Path,
) -> None:
    """The release before sentence vectors wrote schema 5: build such a file with its own
    migrations, fill it, open it with this version."""
    path = tmp_path / "v5.sqlite3"
    db = sqlite3.connect(path)
    for script in MIGRATIONS[:5]:
        db.executescript(script)
    papers = [new_paper(record(t, arxiv_id=k), T0) for t, k in (("A", "2501.1"), ("B", "2501.2"))]
    db.executemany(f"INSERT INTO papers VALUES ({', '.join('?' * 12)})", map(_to_row, papers))
    db.execute("INSERT INTO feedback VALUES ('me', '2501.1', 'more', ?)", (T0.isoformat(),))
    db.execute("PRAGMA user_version = 5")
    db.commit()
    db.close()
    with Store.open(path) as upgraded:
        assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert upgraded.count_papers() == 2
        upgraded.save_embeddings("m", {"2501.1": b"\x00" * 768})
        assert upgraded.embeddings(["2501.1", "2501.2"], "m") == {"2501.1": b"\x00" * 768}
        upgraded.import_library("me", [("2501.2", {"title": "B"})], T0)
        assert upgraded.feedback(["me"])["me"].more == ("2501.2", "2501.1")


def test_a_newer_schema_or_a_foreign_file_is_refused_clearly(tmp_path: Path) -> None:
    newer = tmp_path / "newer.sqlite3"
    db = sqlite3.connect(newer)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(StoreError, match="newer than this paperdigest understands"):
        Store.open(newer)
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match=r"junk\.sqlite3: "):
        Store.open(junk)


def test_an_unchanged_listing_rewrites_no_paper(store: Store) -> None:
    listing = [record("A", arxiv_id="2501.1", upvotes=3), record("B", arxiv_id="2501.2")]
    assert store.ingest(listing, T0).updated == 0
    assert store.ingest(listing, T0 + timedelta(days=1)).updated == 0
    changed = store.ingest([record("A", arxiv_id="2501.1", upvotes=4)], T0 + timedelta(days=2))
    assert (changed.new_keys, changed.updated) == ((), 1)


def _digest_of(papers: list, day_offset: int = 0):  # type: ignore[no-untyped-def,type-arg]
    from digest.models import Digest, Reasons, ScoredPaper, SourceNote

    reasons = Reasons(
        keywords=("diffusion model",),
        title_keywords=("diffusion model",),
        authors=("Jane Doe",),
        categories=("cs.LG",),
        similar_to="An Example",
        similarity=0.4,
        upvotes=3,
        parts=(("keywords", 2.5), ("authors", 8.0)),
        colleagues=("Sam Roe",),
    )
    return Digest(
        profile="me",
        day=(T0 + timedelta(days=day_offset)).date(),
        timezone="Europe/Berlin",
        since=T0 - timedelta(days=1),
        until=T0,
        scanned=7,
        sources=(SourceNote("hf", "ok"), SourceNote("arxiv", "failed", "HTTP 503")),
        items=tuple(ScoredPaper(p, 10.0 - i, reasons) for i, p in enumerate(papers)),
    )


def test_a_digest_is_stored_whole_once_with_a_pending_row_per_channel(store: Store) -> None:
    store.ingest([record("Paper A", arxiv_id="2611.00001"), record("Paper B", arxiv_id="2611.00002")], T0)
    papers = [store.paper("2611.00002"), store.paper("2611.00001")]
    digest = _digest_of(papers)
    assert store.save_digest(digest, ["mail:a@example.org", "feed"], T0) is digest
    assert store.digest("me", digest.day) == digest  # every field, reasons included, in order
    other = _digest_of(papers[:1])
    assert store.save_digest(other, ["mail:a@example.org"], T0) == digest  # the first one stays
    rows = store.deliveries(profile="me")
    assert [(r.channel, r.status, r.attempts) for r in rows] == [
        ("feed", "pending", 0), ("mail:a@example.org", "pending", 0)
    ]
    later = _digest_of(papers[:1], day_offset=1)
    store.save_digest(later, ["feed"], T0)
    assert [d.day for d in store.digests("me")] == [later.day, digest.day]  # newest first
    assert [d.day for d in store.digests("me", since_day=later.day)] == [later.day]


def test_a_paper_in_a_digest_keeps_its_place_when_it_learns_its_arxiv_id(store: Store) -> None:
    store.ingest([record("Mixture of Experts at Scale")], T0)
    (keyed_by_title,) = store.papers()
    store.save_digest(_digest_of([keyed_by_title]), ["feed"], T0)
    store.ingest([record("Mixture of Experts at Scale", arxiv_id="2611.04321")], T0)
    (item,) = store.digest("me", T0.date()).items  # type: ignore[union-attr]
    assert item.paper.key == "2611.04321"


def test_a_claimed_delivery_is_taken_by_one_run_only(store: Store) -> None:
    store.ingest([record("Paper A", arxiv_id="2611.00001")], T0)
    store.save_digest(_digest_of([store.paper("2611.00001")]), ["mail:a@example.org"], T0)
    (row,) = store.deliveries()
    stale_before = T0 - timedelta(minutes=15)
    assert store.claim(row, "run-1", T0, stale_before=stale_before)
    assert not store.claim(row, "run-2", T0, stale_before=stale_before)
    store.settle(row, "run-2", "sent", T0)  # not run-2's claim: ignored
    assert store.deliveries()[0].status == "sending"
    store.settle(row, "run-1", "sent", T0, message_id="<m@x>")
    (done,) = store.deliveries()
    assert (done.status, done.attempts, done.message_id) == ("sent", 1, "<m@x>")
    assert not store.claim(row, "run-3", T0 + timedelta(days=1), stale_before=T0 + timedelta(hours=1))


def _open_and_count(path: str) -> int:
    with Store.open(Path(path)) as store:
        return store.count_papers()


def test_processes_opening_one_new_store_at_once_all_get_in(tmp_path: Path) -> None:
    # Each waits for the write lock, then finds the schema already made by another; before the
    # version was read again under the lock, most of these runs failed "table already exists".
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(4) as pool:
        for attempt in range(5):
            path = str(tmp_path / f"store-{attempt}.sqlite3")
            assert pool.map(_open_and_count, [path] * 4) == [0, 0, 0, 0]


def test_papers_are_read_in_their_order_from_an_index_not_sorted_again(store: Store) -> None:
    """Issue 16: the papers of one ingest share their first sighting; ordering them by the rest
    of the ORDER BY must not sort whole rows in a temporary B-tree (a file, for a big store) on
    every read, as it did with an index on first_seen alone."""
    if store.dialect.name != "sqlite":
        pytest.skip("SQLite's query plan (PostgreSQL plans by its statistics)")
    store.ingest([record(f"P{n}", arxiv_id=f"2501.{n:05}") for n in range(30)], T0)
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)
    try:
        newest = store.papers(limit=None)
        window = store.papers(since=T0 - timedelta(hours=1), until=T0 + timedelta(hours=1), limit=5)
    finally:
        store._db.set_trace_callback(None)
    assert len(newest) == 30 and len(window) == 5
    reads = [sql for sql in statements if sql.startswith("SELECT * FROM papers")]
    assert len(reads) == 2
    for sql in reads:
        plan = " ".join(row[-1] for row in store._db.execute("EXPLAIN QUERY PLAN " + sql))
        assert "TEMP B-TREE" not in plan, plan
        assert "papers_newest" in plan, plan
    # The order itself: newest sighting first, then the newest listing, then the key.
    assert [p.key for p in newest] == sorted((p.key for p in newest), reverse=True)
