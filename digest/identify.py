"""One key per paper, and one Paper merged from every listing that showed it. Pure functions.

Keys, in order of preference:
    2411.01234 / hep-th/9901001     the arXiv id without version (a v2 is the same paper)
    doi:10.1101/2024.01.02.123456   a DOI, lowercased
    src:<source>:<id>               the source's own id
    title:<normalised title>        a text listing with no id, until an id is learned for that title
"""

from __future__ import annotations

import dataclasses
import operator
import re
import unicodedata
from datetime import datetime
from functools import lru_cache
from typing import Any

from digest.models import PAPER_DATA_FIELDS, VOLATILE_FIELDS, Paper, Record

TITLE_PREFIX = "title:"
# One C call instead of a getattr per field: these run once per record on the ingest hot path.
_record_data = operator.attrgetter(*PAPER_DATA_FIELDS)
_paper_data = operator.attrgetter(*PAPER_DATA_FIELDS)
_NON_WORD = re.compile(r"[\W_]+")
_COMBINING_MARK = re.compile(r"[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")


@lru_cache(maxsize=65536)
def normalize_title(title: str) -> str:
    """Case, accents, punctuation and spacing folded: 'Transformers: A Survey' -> 'transformers a survey'."""
    if not title.isascii():
        title = _COMBINING_MARK.sub("", unicodedata.normalize("NFKD", title))
    return _NON_WORD.sub(" ", title.casefold()).strip()


def normalize_doi(doi: str) -> str:
    doi = doi.strip().lower()
    for prefix in ("https://doi.org/", "http://doi.org/", "https://dx.doi.org/", "doi:"):
        if doi.startswith(prefix):
            doi = doi[len(prefix) :]
    return doi


def paper_key(record: Record) -> str:
    if record.arxiv_id:
        return record.arxiv_id
    if record.doi:
        return "doi:" + normalize_doi(record.doi)
    if record.source_key:
        return f"src:{record.origin.source}:{record.source_key}"
    return TITLE_PREFIX + normalize_title(record.title)


def is_title_key(key: str) -> bool:
    return key.startswith(TITLE_PREFIX)


def key_rank(key: str) -> int:
    """0 for the best kind of key (an arXiv id), up to 3 for a title: a paper takes a better key when one turns up."""
    for rank, prefix in enumerate(("doi:", "src:", TITLE_PREFIX), start=1):
        if key.startswith(prefix):
            return rank
    return 0


def new_paper(record: Record, seen_at: datetime) -> Paper:
    """A paper first seen in this record. Built positionally: it runs once per new paper."""
    if record.doi:
        record = dataclasses.replace(record, doi=normalize_doi(record.doi))
    source = record.origin.source
    title, *data = _record_data(record)
    values: tuple[Any, ...] = (
        paper_key(record),
        title,
        seen_at,
        source,
        record.origin.listing,
        *data,
        (source,),
    )
    return Paper(*values)


# new_paper relies on Paper listing Record's fields in Record's order, between first_listing and sources.
assert [f.name for f in dataclasses.fields(Paper)] == [
    "key",
    "title",
    "first_seen",
    "first_source",
    "first_listing",
    *PAPER_DATA_FIELDS[1:],
    "sources",
], "Paper and Record fields are out of step: see new_paper()"


def merge(paper: Paper, record: Record) -> Paper:
    """The stored paper updated with what another listing says about it.

    Stable facts keep their first value and are only filled in when missing; volatile ones (upvotes,
    comment counts, the latest version) take the newer listing's value. A longer abstract wins, because
    text listings cut abstracts short.
    """
    changes: dict[str, object] = {}
    for name, new, old in zip(
        PAPER_DATA_FIELDS, _record_data(record), _paper_data(paper), strict=True
    ):
        if new is None or new == "" or new == () or new == old:
            continue
        if name == "doi":
            new = normalize_doi(new)
        if name == "version":
            if old is None or new > old:
                changes[name] = new
        elif name == "abstract":
            if len(new) > len(old):
                changes[name] = new
        elif old is None or old == "" or old == () or (name in VOLATILE_FIELDS and new != old):
            changes[name] = new
    # A paper known by its title (or DOI) takes a better key as soon as a listing gives one.
    record_key = paper_key(record)
    if key_rank(record_key) < key_rank(paper.key):
        changes["key"] = record_key
    if record.origin.source not in paper.sources:
        changes["sources"] = (*paper.sources, record.origin.source)
    if not changes:
        return paper  # the same object: callers can tell "nothing changed" cheaply
    return dataclasses.replace(paper, **changes)  # type: ignore[arg-type]
