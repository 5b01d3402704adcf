"""Records that are whole, and heal: a later sighting from a more trusted source, of a newer
version, or simply more complete, replaces what the store holds; the replaced values are kept."""

from __future__ import annotations

import dataclasses
import sqlite3
from datetime import timedelta
from pathlib import Path

import httpx
from helpers import FIXTURES, T0, by_host, make_config

from digest.config import SourceConfig
from digest.fetch import Fetcher, FetchPolicy
from digest.identify import AUTHORITY, merge, new_paper
from digest.models import Origin, Record
from digest.pipeline import ingest
from digest.sources import SOURCE_KINDS
from digest.store import MIGRATIONS, Store
from digest.store.papers import _to_row

ARXIV_LISTING = FIXTURES / "arxiv" / "arxiv_list_cs.CL_recent_2026-07-27_newlayout.html"
ARXIV_API = FIXTURES / "arxiv" / "arxiv_api_2026-07-13_cat-cs.AI-LG_50entries_newformat.xml"
HF_DAILY = FIXTURES / "hf" / "hf_api_daily_papers_2026-07-10_to_13_limit25.json"
HF_TEXT = FIXTURES / "hf" / "001_381180b719109949.txt"


def seen(kind: str, title: str = "A Paper", source: str = "", **fields: object) -> Record:
    """A record from a source of this kind (named after it unless `source` says otherwise)."""
    origin = Origin(source or kind, f"https://example.org/{kind}", kind)
    return Record(origin=origin, title=title, **fields)  # type: ignore[arg-type]


def parsed(kind: str, path: Path, source: str = "") -> list[Record]:
    """A captured page read by its kind's own parser, as the pipeline reads it."""
    parse = SOURCE_KINDS[kind].parser()
    return list(parse(path.read_bytes(), Origin(source or kind, path.as_uri(), kind)))


def cut(record: Record) -> Record:
    """The record as a listing cut off mid-entry gives it: half its title, its first two authors,
    the first half of its abstract."""
    return dataclasses.replace(
        record,
        title=record.title[: len(record.title) // 2],
        authors=record.authors[:2],
        abstract=record.abstract[: len(record.abstract) // 2],
    )


def history_rows(store: Store) -> int:
    count: int = store._db.execute("SELECT count(*) FROM paper_history").fetchone()[0]
    return count


# -- the order ---------------------------------------------------------------------------------------


def test_every_source_kind_has_one_place_in_the_authority_order() -> None:
    ranked = [kind for kinds in AUTHORITY for kind in kinds]
    assert sorted(ranked) == sorted(SOURCE_KINDS), "a new kind needs its place in AUTHORITY"
    assert AUTHORITY[-1] == ("arxiv-api",) and AUTHORITY[0] == ("hf-text",)


# -- merge, pure ---------------------------------------------------------------------------------------


def test_a_cut_entry_heals_from_the_same_source_and_a_cut_copy_never_replaces_a_whole_one() -> None:
    full = seen(
        "arxiv-listing",
        "Diffusion Models Are Secretly Good Planners",
        arxiv_id="2611.10001",
        authors=("Ada Lovelace", "Alan Turing", "Grace Hopper", "Edsger Dijkstra", "Barbara Liskov"),
        abstract="We show that diffusion models plan. They plan well.",
    )
    stored = new_paper(cut(full), T0)
    assert len(stored.authors) == 2 and stored.title == "Diffusion Models Are "
    healed = merge(stored, full)
    assert (healed.title, healed.authors, healed.abstract) == (
        full.title,
        full.authors,
        full.abstract,
    )
    # The cut copy again, even from the most trusted source, takes nothing back.
    assert merge(healed, dataclasses.replace(cut(full), origin=seen("arxiv-api").origin)).title == full.title
    assert merge(healed, cut(full)) is healed


def test_an_author_cut_mid_name_and_a_title_cut_with_an_ellipsis_heal() -> None:
    stored = new_paper(
        seen("hf-daily", "Kernel Methods, Rev…", arxiv_id="2611.09999", authors=("Ann Lee", "Bo Ch")),
        T0,
    )
    whole = seen(
        "hf-text", "Kernel methods, revisited", authors=("Ann Lee", "Bo Chen", "Cy Dee")
    )
    healed = merge(stored, whole)
    assert healed.title == "Kernel methods, revisited", "a less trusted source heals a cut title"
    assert healed.authors == ("Ann Lee", "Bo Chen", "Cy Dee")
    assert healed.authority == "hf-daily", "healing is no reason to trust the healer more"


def test_a_more_trusted_source_replaces_and_a_less_trusted_one_only_fills_blanks() -> None:
    hf = seen(
        "hf-daily",
        "Soofi: A Sovereign Model",
        arxiv_id="2607.09424",
        authors=("The Soofi-Team", "Benedikt Droste"),
        abs_url="https://huggingface.co/papers/2607.09424",
        upvotes=3,
    )
    api = seen(
        "arxiv-api",
        "Soofi: a sovereign model",
        arxiv_id="2607.09424",
        version=1,
        authors=("The Soofi-Team", ":", "Benedikt Droste"),
        abs_url="https://arxiv.org/abs/2607.09424",
        categories=("cs.CL",),
    )
    paper = merge(new_paper(hf, T0), api)
    assert (paper.title, paper.authors, paper.abs_url) == (api.title, api.authors, api.abs_url)
    assert (paper.upvotes, paper.categories, paper.authority) == (3, ("cs.CL",), "arxiv-api")

    later = merge(
        paper,
        dataclasses.replace(hf, upvotes=40, code_url="https://github.com/soofi/soofi"),
    )
    assert (later.title, later.authors, later.abs_url) == (api.title, api.authors, api.abs_url)
    assert (later.upvotes, later.code_url) == (40, "https://github.com/soofi/soofi")
    assert later.authority == "arxiv-api"


def test_a_newer_version_replaces_from_a_source_as_trusted_and_an_older_one_replaces_nothing() -> None:
    v1 = seen("arxiv-rss", "Deep Nets for Vision", arxiv_id="2501.00001", version=1, abstract="Old.")
    v2 = seen("arxiv-listing", "Deep Nets", arxiv_id="2501.00001", version=2, abstract="New.")
    paper = merge(new_paper(v1, T0), v2)
    assert (paper.title, paper.abstract, paper.version) == ("Deep Nets", "New.", 2), (
        "a newer version's title wins, even a shorter one"
    )
    assert paper.authority == "arxiv-rss", "listing and RSS rank equal: the first kind stays"
    older = merge(paper, dataclasses.replace(v1, comment="10 pages"))
    assert (older.title, older.abstract, older.version) == ("Deep Nets", "New.", 2)
    assert older.comment == "10 pages", "an older version still fills blanks"
    # A less trusted source's newer version fills blanks only: its title is not arXiv's.
    blog = seen("feed", "Our new paper on vision!", arxiv_id="2501.00001", version=3)
    assert merge(paper, blog).title == "Deep Nets"


def test_sources_of_equal_rank_never_take_turns() -> None:
    listing = seen("arxiv-listing", "Tiny  Recursive Models", arxiv_id="2510.1", abstract="A b.")
    rss = seen("arxiv-rss", "Tiny Recursive Models", arxiv_id="2510.1", abstract="A  b.")
    paper = merge(new_paper(listing, T0), rss)
    assert (paper.title, paper.abstract) == (listing.title, listing.abstract)
    assert merge(merge(paper, listing), rss) is paper, "nothing changes the second time round"


# -- the store: healing, history, vectors -----------------------------------------------------------


def test_a_truncated_listing_heals_from_the_same_and_from_a_more_trusted_source(store: Store) -> None:
    full = next(r for r in parsed("arxiv-listing", ARXIV_LISTING, "arxiv-cl") if len(r.authors) == 5)
    full = dataclasses.replace(full, abstract="Grapheme-level metrics for every script. " * 3)
    store.ingest([cut(full)], T0)
    key = full.arxiv_id or ""
    stored = store.paper(key)
    assert stored is not None and len(stored.authors) == 2
    store.save_embeddings("m", {key: b"\x00" * 8})

    outcome = store.ingest([full], T0 + timedelta(days=1))
    assert (outcome.new_keys, outcome.updated) == ((), 1)
    healed = store.paper(key)
    assert healed is not None
    assert (healed.title, healed.authors, healed.abstract) == (
        full.title,
        full.authors,
        full.abstract,
    )
    assert store.embeddings([key], "m") == {}, "a changed title or abstract drops the vector"
    [change] = store.paper_history(key)
    assert (change.changed_at, change.source) == (T0 + timedelta(days=1), "arxiv-cl")
    assert change.fields == {
        "title": cut(full).title,
        "abstract": cut(full).abstract,
        "authors": full.authors[:2],
    }

    # The arXiv API, more trusted, says the same: it takes the paper over and changes nothing.
    api = dataclasses.replace(full, origin=Origin("api", "https://export.arxiv.org/api", "arxiv-api"))
    store.save_embeddings("m", {key: b"\x00" * 8})
    assert store.ingest([api], T0 + timedelta(days=2)).updated == 1
    again = store.paper(key)
    assert again is not None and again.authority == "arxiv-api"
    assert len(store.paper_history(key)) == 1, "no values replaced, no history"
    assert store.embeddings([key], "m") == {key: b"\x00" * 8}


def test_a_cut_entry_healed_by_the_arxiv_api_keeps_the_listing_values_in_history(store: Store) -> None:
    full = next(r for r in parsed("arxiv-listing", ARXIV_LISTING, "arxiv-cl") if len(r.authors) == 5)
    store.ingest([cut(full)], T0)
    api = dataclasses.replace(full, origin=Origin("api", "https://export.arxiv.org/api", "arxiv-api"))
    store.ingest([api], T0 + timedelta(hours=3))
    paper = store.paper(full.arxiv_id or "")
    assert paper is not None
    assert (paper.title, paper.authors, paper.authority) == (full.title, full.authors, "arxiv-api")
    assert paper.sources == ("arxiv-cl", "api")
    [change] = store.paper_history(paper.key)
    assert change.source == "api"
    assert change.fields == {
        "title": cut(full).title,
        "authors": full.authors[:2],
        "authority": "arxiv-listing",
    }


def test_hugging_face_then_the_arxiv_api_the_api_wins_and_the_reverse_only_fills(
    store: Store, tmp_path: Path
) -> None:
    hf, api = parsed("hf-daily", HF_DAILY, "hf"), parsed("arxiv-api", ARXIV_API, "api")
    store.ingest(hf, T0)
    outcome = store.ingest(api, T0 + timedelta(hours=1))
    paper = store.paper("2607.09424")
    api_record = next(r for r in api if r.arxiv_id == "2607.09424")
    hf_record = next(r for r in hf if r.arxiv_id == "2607.09424")
    assert paper is not None
    assert (paper.published, paper.authors, paper.abs_url) == (
        api_record.published,
        api_record.authors,
        "https://arxiv.org/abs/2607.09424",
    )
    assert (paper.upvotes, paper.thumbnail_url, paper.listed) == (
        hf_record.upvotes,
        hf_record.thumbnail_url,
        hf_record.listed,
    ), "what only Hugging Face says stays"
    [change] = store.paper_history("2607.09424")
    assert change.fields == {
        "published": hf_record.published,
        "authors": hf_record.authors,
        "abs_url": "https://huggingface.co/papers/2607.09424",
        "authority": "hf-daily",
    }
    assert outcome.updated == 2, "the two papers both pages list"

    # Both pages again: nothing changes, nothing is written to the history.
    before = history_rows(store)
    assert store.ingest(hf, T0 + timedelta(days=1)).updated == 0
    assert store.ingest(api, T0 + timedelta(days=1)).updated == 0
    assert history_rows(store) == before

    # The other way round, in a new store: Hugging Face after the API only fills blanks.
    with Store.open(tmp_path / "other.sqlite3") as other:
        other.ingest(api, T0)
        other.ingest(hf, T0 + timedelta(hours=1))
        reverse = other.paper("2607.09424")
        assert reverse is not None
        assert (reverse.published, reverse.authors) == (api_record.published, api_record.authors)
        assert reverse.upvotes == hf_record.upvotes
        assert history_rows(other) == 0


def test_a_title_keyed_text_paper_takes_the_arxiv_apis_fields(store: Store) -> None:
    text = parsed("hf-text", HF_TEXT, "hf-text")[1]  # WeedSense: 5 authors, no names, no id
    cut_abstract = text.abstract[:300] + "…"
    store.ingest([dataclasses.replace(text, abstract=cut_abstract)], T0)
    key = "title:weedsense multi task learning for weed segmentation height estimation and growth stage classification"
    assert store.paper(key) is not None
    api = seen(
        "arxiv-api",
        "WeedSense: Multi-task learning for weed segmentation, height estimation and growth stage classification",
        source="api",
        arxiv_id="2508.99999",
        version=1,
        abstract=text.abstract,
        authors=tuple(f"Author {n}" for n in "ABCDE"),
    )
    assert store.ingest([api], T0 + timedelta(hours=1)).new_keys == ()
    assert store.paper(key) is None
    paper = store.paper("2508.99999")
    assert paper is not None
    assert (paper.title, paper.abstract, paper.authors) == (api.title, api.abstract, api.authors)
    assert (paper.author_count, paper.authority, paper.sources) == (5, "arxiv-api", ("hf-text", "api"))
    [change] = store.paper_history("2508.99999")
    assert change.fields == {
        "title": text.title,
        "abstract": cut_abstract,
        "authority": "hf-text",
    }


def test_the_same_listing_twice_changes_nothing_and_writes_no_history(store: Store) -> None:
    listing = parsed("arxiv-listing", ARXIV_LISTING, "arxiv-cl")
    assert len(store.ingest(listing, T0).new_keys) == len({r.arxiv_id for r in listing})
    again = store.ingest(listing, T0 + timedelta(days=1))
    assert (again.new_keys, again.updated, history_rows(store)) == ((), 0, 0)


def test_a_store_of_schema_7_upgrades_and_its_papers_heal(tmp_path: Path) -> None:
    """Papers stored before kinds were kept hold no authority: any known source may correct them."""
    path = tmp_path / "v7.sqlite3"
    db = sqlite3.connect(path)
    for script in MIGRATIONS[:7]:
        db.executescript(script)
    old = new_paper(seen("", "Half a ti", source="arxiv", arxiv_id="2501.1", authors=("A",)), T0)
    db.execute(f"INSERT INTO papers VALUES ({', '.join('?' * 12)})", _to_row(old))
    db.execute("PRAGMA user_version = 7")
    db.commit()
    db.close()
    with Store.open(path) as upgraded:
        upgraded.ingest(
            [seen("hf-daily", "Half a title, whole", source="hf", arxiv_id="2501.1", authors=("B",))],
            T0 + timedelta(days=1),
        )
        paper = upgraded.paper("2501.1")
        assert paper is not None
        assert (paper.title, paper.authors, paper.authority) == ("Half a title, whole", ("B",), "hf-daily")
        assert [c.fields for c in upgraded.paper_history("2501.1")] == [
            {"title": "Half a ti", "authors": ("A",)}
        ]


def test_the_pipeline_gives_each_record_its_sources_kind(store: Store, tmp_path: Path) -> None:
    def source(name: str, kind: str) -> SourceConfig:
        return SourceConfig(name, kind, (f"https://{name}.example.org/{kind}",))

    config = make_config(tmp_path, source("hf", "hf-daily"), source("api", "arxiv-api"))
    handler = by_host(hf=HF_DAILY.read_bytes(), api=ARXIV_API.read_bytes())
    clock = iter(T0 + timedelta(seconds=i) for i in range(1000))
    with Fetcher(
        FetchPolicy(retries=1, backoff_s=0), transport=httpx.MockTransport(handler), sleep=lambda s: None
    ) as fetcher:
        ingest(config, store, fetcher, lambda: next(clock))
    both = store.paper("2607.09424")
    only_hf = next(p for p in store.papers(source="hf", limit=None) if p.sources == ("hf",))
    assert both is not None and (both.authority, both.sources) == ("arxiv-api", ("hf", "api"))
    assert only_hf.authority == "hf-daily"


def test_a_title_only_paper_resolved_in_the_arxiv_api_takes_its_title_and_abstract(
    store: Store,
) -> None:
    from digest.resolve import resolve_titles

    answer = (
        FIXTURES / "arxiv" / "arxiv_api_2026-06-14_all-transformer_cat-cs.LG_5entries_newformat.xml"
    ).read_bytes()
    now = T0
    text = seen("hf-text", "MANA: dexterous manipulation of articulated tools", abstract="An abstract.")
    store.ingest([text], now - timedelta(hours=1))
    with Fetcher(
        FetchPolicy(retries=0),
        transport=httpx.MockTransport(lambda request: httpx.Response(200, content=answer)),
        sleep=lambda s: None,
    ) as fetcher:
        assert resolve_titles(store, fetcher, lambda: now, limit=5).found == 1
    paper = store.paper("2606.13677")
    assert paper is not None
    assert paper.title == "Mana: Dexterous Manipulation of Articulated Tools"
    assert paper.abstract.startswith("Articulated tool manipulation remains a major challenge")
    assert paper.authority == "arxiv-api"
    [change] = store.paper_history("2606.13677")
    assert change.fields == {"title": text.title, "abstract": "An abstract.", "authority": "hf-text"}
