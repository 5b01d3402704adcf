"""The identity diff as a pure function (digest.store.diff.plan_ingest): stored candidates and one
source's records in, the plan an ingest writes out. No SQLite here: each case pins what
Store.ingest wrote before the diff left its transaction."""

import dataclasses
from datetime import timedelta

import pytest
from helpers import T0, record

from digest.identify import new_paper
from digest.models import Origin, Paper, Record
from digest.store.diff import IngestOutcome, candidate_lookups, plan_ingest


def stored(rec: Record) -> Paper:
    """A paper as the store holds it after `rec` was first seen at T0."""
    return new_paper(rec, T0)


LATER = T0 + timedelta(days=1)


def test_a_new_record_is_one_insert_and_a_sighting() -> None:
    plan = plan_ingest([], [record("A", source="arxiv", arxiv_id="2501.00001")], T0)
    assert [p.key for p in plan.inserts] == ["2501.00001"]
    assert plan.inserts[0].first_seen == T0 and plan.inserts[0].first_source == "arxiv"
    assert (plan.updates, plan.rekeyed) == ((), ())
    assert plan.sightings == (("2501.00001", "arxiv"),)
    assert plan.outcome == IngestOutcome(new_keys=("2501.00001",), updated=0)
    assert plan.seen_at == T0


def test_the_same_record_again_writes_only_its_sighting() -> None:
    rec = record("A", source="arxiv", arxiv_id="2501.00001")
    plan = plan_ingest([stored(rec)], [rec], LATER)
    assert (plan.inserts, plan.updates, plan.rekeyed, plan.new_keys) == ((), (), (), ())
    assert plan.sightings == (("2501.00001", "arxiv"),)  # its last_seen moves on


def test_an_arxiv_version_bump_updates_the_paper_and_keeps_what_it_replaced() -> None:
    before = stored(record("A", arxiv_id="2501.00001", version=1))
    plan = plan_ingest([before], [record("A (revised)", source="rss", arxiv_id="2501.00001", version=2)], LATER)
    assert plan.new_keys == () and plan.inserts == ()
    (update,) = plan.updates
    assert (update.paper.key, update.paper.title, update.paper.version) == ("2501.00001", "A (revised)", 2)
    assert dict(update.replaced) == {"title": "A", "version": 1}
    assert update.source == "rss"
    assert update.text_changed, "a new title: its sentence vector is computed again"
    assert update.paper.first_seen == T0, "the first sighting stays"
    assert plan.outcome.updated == 1


def test_a_corrected_title_from_a_more_trusted_source_replaces_it_with_history() -> None:
    hf = Record(
        Origin("hf", "https://example.org/hf", "hf-daily"), "Soofi: A Sovereign Model",
        arxiv_id="2607.09424", upvotes=3,
    )
    api = Record(
        Origin("api", "https://example.org/api", "arxiv-api"), "Soofi: a sovereign model",
        arxiv_id="2607.09424", version=1,
    )
    plan = plan_ingest([stored(hf)], [api], LATER)
    (update,) = plan.updates
    assert update.paper.title == "Soofi: a sovereign model"
    assert update.replaced["title"] == "Soofi: A Sovereign Model"
    assert update.replaced["authority"] == "hf-daily"
    assert update.source == "api"


def test_a_volatile_change_updates_the_row_but_writes_no_history_and_keeps_the_vector() -> None:
    before = stored(record("A", source="hf", arxiv_id="2501.00001", upvotes=1))
    plan = plan_ingest([before], [record("A", source="hf", arxiv_id="2501.00001", upvotes=9)], LATER)
    (update,) = plan.updates
    assert update.paper.upvotes == 9
    assert dict(update.replaced) == {}
    assert not update.text_changed


def test_a_doi_match_re_keys_the_stored_paper_to_its_arxiv_id() -> None:
    before = stored(record("P", source="journal", doi="10.1/ABC"))
    assert before.key == "doi:10.1/abc"
    plan = plan_ingest([before], [record("P", source="api", arxiv_id="2501.00009", doi="10.1/abc")], LATER)
    assert plan.rekeyed == (("2501.00009", "doi:10.1/abc"),)  # (new key, old key)
    assert plan.new_keys == () and plan.inserts == ()
    assert [u.paper.key for u in plan.updates] == ["2501.00009"]
    assert plan.sightings == (("2501.00009", "api"),)


def test_a_title_keyed_paper_takes_the_id_a_later_listing_knows() -> None:
    before = stored(record("Transformer in Transformer", source="text"))
    assert before.key == "title:transformer in transformer"
    plan = plan_ingest(
        [before], [record("Transformer in Transformer", source="api", arxiv_id="2103.00112")], LATER
    )
    assert plan.rekeyed == (("2103.00112", "title:transformer in transformer"),)
    assert plan.new_keys == ()
    (update,) = plan.updates
    assert update.paper.sources == ("text", "api")


def test_a_title_learned_within_one_batch_is_one_new_paper_under_its_id() -> None:
    plan = plan_ingest(
        [],
        [record("Same Title", source="text"), record("Same title", source="api", arxiv_id="2501.1")],
        T0,
    )
    assert plan.new_keys == ("2501.1",)
    assert [p.key for p in plan.inserts] == ["2501.1"]
    assert plan.rekeyed == ()
    # The title sighting moved to the id, sources in order.
    assert plan.sightings == (("2501.1", "api"), ("2501.1", "text"))


def test_duplicates_inside_one_batch_are_one_paper() -> None:
    plan = plan_ingest(
        [], [record("A", arxiv_id="2501.00001"), record("A", arxiv_id="2501.00001", version=2)], T0
    )
    assert plan.new_keys == ("2501.00001",)
    assert len(plan.inserts) == 1 and plan.inserts[0].version == 2


def test_a_listing_with_an_id_never_claims_another_ids_paper_by_its_title() -> None:
    other = stored(record("Same Title", arxiv_id="2501.00001"))
    plan = plan_ingest([other], [record("Same Title", arxiv_id="2501.00002")], T0)
    assert plan.new_keys == ("2501.00002",)
    assert plan.updates == () and plan.rekeyed == ()


def test_a_listing_without_ids_finds_a_paper_by_its_title() -> None:
    known = stored(record("Deep Nets", arxiv_id="2501.00001"))
    plan = plan_ingest([known], [record("deep   nets", source="text")], LATER)
    assert plan.new_keys == () and plan.inserts == ()
    assert plan.sightings == (("2501.00001", "text"),)


def test_new_keys_keep_the_order_of_the_records() -> None:
    records = [record(t, arxiv_id=f"2501.0000{i}") for i, t in enumerate("CAB")]
    assert plan_ingest([], records, T0).new_keys == ("2501.00000", "2501.00001", "2501.00002")


def test_candidates_are_looked_up_by_key_doi_and_normalised_title() -> None:
    keys, dois, titles = candidate_lookups(
        [record("A  Title", arxiv_id="2501.00001"), record("B", doi="10.1/XYZ")]
    )
    assert keys == {"2501.00001", "doi:10.1/xyz"}
    assert dois == {"10.1/xyz"}
    assert titles == {"a title", "b"}


def test_the_plan_is_a_frozen_value() -> None:
    plan = plan_ingest([], [record("A", arxiv_id="2501.00001")], T0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.inserts = ()  # type: ignore[misc]
