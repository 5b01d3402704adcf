"""The identity diff, pure: the stored papers an ingest may touch and one source's records in,
what to write out (no database, no clock). Every backend writes the same plan.

`plan_ingest(candidates, records, seen_at)`: each record is found among the candidates by key,
DOI or normalised title (`_Index`), merged into the paper it names (`identify.merge`) or made a
new paper (`identify.new_paper`). The plan says which papers are new, which stored ones changed
(with the values a change replaced, for their history), which stored papers take a new key (an
arXiv id learned for a paper known by its title or DOI), and which (paper, source) sightings to
record.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from digest.identify import (
    is_title_key,
    key_rank,
    merge,
    new_paper,
    normalize_doi,
    normalize_title,
    paper_key,
)
from digest.models import PAPER_DATA_FIELDS, VOLATILE_FIELDS, Paper, Record


@dataclass(frozen=True, slots=True)
class IngestOutcome:
    new_keys: tuple[str, ...]
    updated: int


@dataclass(frozen=True, slots=True)
class PaperUpdate:
    """A stored paper an ingest changed: the paper as it is now (under its current key, after any
    re-key), the values the change replaced (empty: nothing a history keeps, only filled in or
    volatile fields) and the source of the batch's last change to it."""

    paper: Paper
    replaced: Mapping[str, Any]
    source: str
    text_changed: bool  # title or abstract: its sentence vector is computed again


@dataclass(frozen=True, slots=True)
class IngestPlan:
    """What one ingest writes, in this order: re-key `rekeyed` (new key, old key), insert
    `inserts`, update `updates`, record `sightings` (paper key, source) at `seen_at`."""

    seen_at: datetime
    rekeyed: tuple[tuple[str, str], ...]
    inserts: tuple[Paper, ...]
    updates: tuple[PaperUpdate, ...]
    sightings: tuple[tuple[str, str], ...]
    new_keys: tuple[str, ...]  # in the order the records first showed them

    @property
    def outcome(self) -> IngestOutcome:
        return IngestOutcome(new_keys=self.new_keys, updated=len(self.updates))


def candidate_lookups(records: Iterable[Record]) -> tuple[set[str], set[str], set[str]]:
    """What a backend looks stored papers up by for these records: keys, DOIs, normalised titles
    (every stored paper matching any of them is a candidate for `plan_ingest`)."""
    keys: set[str] = set()
    dois: set[str] = set()
    titles: set[str] = set()
    for record in records:
        keys.add(paper_key(record))
        if record.doi:
            dois.add(normalize_doi(record.doi))
        titles.add(normalize_title(record.title))
    return keys, dois, titles


def plan_ingest(
    candidates: Iterable[Paper], records: Sequence[Record], seen_at: datetime
) -> IngestPlan:
    """What storing `records` (one source's batch, seen at `seen_at`) changes, given the stored
    papers they may name (`candidates`, see `candidate_lookups`)."""
    known = _Index(candidates)
    original = dict(known.by_key)
    stored_key = {key: key for key in original}  # current key -> key in the database
    new_keys: list[str] = []
    sightings: dict[str, set[str]] = {}  # paper key -> sources that showed it in this batch
    changed_by: dict[str, str] = {}  # paper key -> the source of its last change in this batch
    for record in records:
        existing = known.find(record)
        if existing is None:
            paper = new_paper(record, seen_at)
            new_keys.append(paper.key)
        else:
            paper = merge(existing, record)
            if paper is not existing:
                changed_by[paper.key] = record.origin.source
            if paper.key != existing.key:  # an id learned for a paper known by title or DOI
                known.forget(existing)
                sightings.setdefault(paper.key, set()).update(sightings.pop(existing.key, set()))
                changed_by.pop(existing.key, None)
                if existing.key in stored_key:
                    stored_key[paper.key] = stored_key.pop(existing.key)
                else:
                    new_keys[new_keys.index(existing.key)] = paper.key
        known.add(paper)
        sightings.setdefault(paper.key, set()).add(record.origin.source)

    inserts: list[Paper] = []
    updates: list[PaperUpdate] = []
    for key, paper in known.by_key.items():
        if key not in stored_key:
            inserts.append(paper)
            continue
        before = original[stored_key[key]]
        if before is not paper and before != paper:
            updates.append(
                PaperUpdate(
                    paper=paper,
                    # healed: the values it had are kept (identify.merge says when)
                    replaced=_replaced(before, paper),
                    source=changed_by.get(key, ""),
                    text_changed=(before.title, before.abstract) != (paper.title, paper.abstract),
                )
            )
    return IngestPlan(
        seen_at=seen_at,
        rekeyed=tuple(
            (current, stored) for current, stored in stored_key.items() if current != stored
        ),
        inserts=tuple(inserts),
        updates=tuple(updates),
        sightings=tuple(
            (key, source) for key, sources in sightings.items() for source in sorted(sources)
        ),
        new_keys=tuple(new_keys),
    )


class _Index:
    """The papers one ingest may touch, findable by key, DOI and normalised title."""

    def __init__(self, papers: Iterable[Paper]) -> None:
        self.by_key: dict[str, Paper] = {}
        self.by_doi: dict[str, str] = {}
        self.by_title: dict[str, str] = {}
        for paper in papers:
            self.add(paper)

    def add(self, paper: Paper) -> None:
        self.by_key[paper.key] = paper
        if paper.doi:
            self.by_doi[paper.doi] = paper.key
        title = normalize_title(paper.title)
        current = self.by_title.get(title)
        # For a title shared by several papers, prefer the one with the best key (an id over a title).
        if current is None or current not in self.by_key or key_rank(paper.key) < key_rank(current):
            self.by_title[title] = paper.key

    def forget(self, paper: Paper) -> None:
        self.by_key.pop(paper.key, None)

    def find(self, record: Record) -> Paper | None:
        candidates = [paper_key(record)]
        if record.doi:
            candidates.append(self.by_doi.get(normalize_doi(record.doi), ""))
        title_key = self.by_title.get(normalize_title(record.title), "")
        if not (record.arxiv_id or record.doi) or is_title_key(title_key):
            # A listing without ids matches by title; a listing with ids only claims title-keyed papers.
            candidates.append(title_key)
        for key in candidates:
            paper = self.by_key.get(key)
            if paper is not None:
                return paper
        return None


# What a paper's history keeps when a sighting replaces it: every stored fact but the volatile ones
# (upvotes and the like change daily: they are no correction) and the bookkeeping (key, sources,
# first sighting). The authority is kept with them: the kind of source the old values came from.
_HISTORY_FIELDS = tuple(
    name for name in (*PAPER_DATA_FIELDS, "authority") if name not in VOLATILE_FIELDS
)
_history_data = operator.attrgetter(*_HISTORY_FIELDS)


def _replaced(before: Paper, after: Paper) -> dict[str, Any]:
    """The stored values `after` replaced (empty fields filled in replace nothing), as JSON values;
    nothing when only the authority moved (a more trusted source said the same)."""
    replaced: dict[str, Any] = {}
    for name, old, new in zip(
        _HISTORY_FIELDS, _history_data(before), _history_data(after), strict=True
    ):
        if old != new and old is not None and old != "" and old != ():
            replaced[name] = old.isoformat() if isinstance(old, date) else old
    if replaced.keys() <= {"authority"}:
        return {}
    return replaced
