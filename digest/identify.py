"""One key per paper, and one Paper merged from every listing that showed it. Pure functions.

Keys, in order of preference:
    2411.01234 / hep-th/9901001     the arXiv id without version (a v2 is the same paper)
    doi:10.1101/2024.01.02.123456   a DOI, lowercased
    src:<source>:<id>               the source's own id
    title:<normalised title>        a text listing with no id, until an id is learned for that title

Which sighting's values a paper keeps: the most trusted source kind's (AUTHORITY), a newer version's
from a source as trusted, and whole text over a cut-off copy of it from any source (see merge).
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
    return _fold(title)


def _fold(text: str) -> str:
    """normalize_title without its cache, for long texts (abstracts) compared once."""
    if not text.isascii():
        text = _COMBINING_MARK.sub("", unicodedata.normalize("NFKD", text))
    return _NON_WORD.sub(" ", text.casefold()).strip()


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


# How far each source kind (config's `kind`, carried by Origin.kind) is trusted for a paper's
# title, abstract, authors and other facts, least trusted first; kinds in one tuple rank equal.
# arXiv's own records rank highest: its API is the paper's metadata record (latest version, whole
# author list), its listings and feeds two renderings of its announcement. bioRxiv's API is the
# server's own record. Hugging Face copies arXiv's metadata (its JSON API most directly, the
# listing page's cards least). A generic feed's entry about a paper is second-hand (a lab blog or
# an aggregator may title it their own way), so Hugging Face outranks it; a plain-text listing,
# a browser's copy of a page with no ids and abstracts that may be cut, comes last. An unknown
# kind ("": a record built without one, or a paper stored before kinds were kept) ranks below all.
# Sightings of one rank replace each other's values only for a newer version: two renderings of
# one record (a listing and a feed, two feeds) would otherwise take turns on every run.
AUTHORITY: tuple[tuple[str, ...], ...] = (
    ("hf-text",),
    ("feed",),
    ("hf-html",),
    ("hf-paper",),
    ("hf-daily",),
    ("biorxiv",),
    ("arxiv-listing", "arxiv-rss"),
    ("arxiv-api",),
)
_RANK = {kind: rank for rank, kinds in enumerate(AUTHORITY, start=1) for kind in kinds}


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
        record.origin.kind,
    )
    return Paper(*values)


# new_paper relies on Paper listing Record's fields in Record's order, between first_listing and
# sources, with authority last.
assert [f.name for f in dataclasses.fields(Paper)] == [
    "key",
    "title",
    "first_seen",
    "first_source",
    "first_listing",
    *PAPER_DATA_FIELDS[1:],
    "sources",
    "authority",
], "Paper and Record fields are out of step: see new_paper()"


# Facts that name the paper or its first listing: filled in when missing, never replaced.
_FILL_ONLY = frozenset({"arxiv_id", "doi", "source_key", "listed"})
# What an entry cut off mid-way leaves short (the end of a title, an abstract, an author list).
_CUTTABLE = frozenset({"title", "abstract", "authors"})


def merge(paper: Paper, record: Record) -> Paper:
    """The stored paper updated with what another sighting says about it.

    A sighting's values replace the stored ones when its source kind is more trusted than the kind
    that gave them (AUTHORITY), or as trusted and of a newer version (v2 over v1); the version
    stored is that of the values kept. Any other sighting only fills empty fields, and one of an
    older version does nothing else. Whatever the source, a title, abstract or author list that
    carries the stored one further (the stored one is its start, as an entry cut off mid-way leaves
    it) replaces it, and a cut-off copy of the stored value never does (unless of a newer version).
    Volatile facts (upvotes, comment counts, announce type) take the newer sighting's value; ids
    and the first listing's day are only filled in.
    """
    kind = record.origin.kind
    rank, held = _RANK.get(kind, 0), _RANK.get(paper.authority, 0)
    newer = older = False
    if record.version is not None and paper.version is not None:
        newer, older = record.version > paper.version, record.version < paper.version
    replaces = rank >= held if newer else rank > held and not older
    changes: dict[str, object] = {}
    for name, new, old in zip(
        PAPER_DATA_FIELDS, _record_data(record), _paper_data(paper), strict=True
    ):
        if new is None or new == "" or new == () or new == old:
            continue
        if name == "doi":
            new = normalize_doi(new)
            if new == old:
                continue
        if old is None or old == "" or old == () or name in VOLATILE_FIELDS:
            changes[name] = new  # a blank filled, or a count that changes over time
        elif older or name in _FILL_ONLY:
            continue
        elif name in _CUTTABLE:
            cut = _cut(new, old)  # 1: the stored value was cut from it, -1: it is a cut of it
            if cut > 0 or (replaces and (newer or cut == 0)):
                changes[name] = new
        elif replaces:
            changes[name] = new
    if replaces and rank > held:
        changes["authority"] = kind
    # A paper known by its title (or DOI) takes a better key as soon as a listing gives one.
    record_key = paper_key(record)
    if key_rank(record_key) < key_rank(paper.key):
        changes["key"] = record_key
    if record.origin.source not in paper.sources:
        changes["sources"] = (*paper.sources, record.origin.source)
    if not changes:
        return paper  # the same object: callers can tell "nothing changed" cheaply
    return dataclasses.replace(paper, **changes)  # type: ignore[arg-type]


_CUT_MARKS = " \t\n.\u2026"  # the trailing dots or ellipsis a cut-off text may end with
_WORD = re.compile(r"[^\W_]")


def _cut(new: object, old: object) -> int:
    """1 when `new` carries `old` further (`old` is its start, as an entry cut off mid-way leaves
    it), -1 when `new` is such a start of `old`, else 0. Texts compare with cut-off marks, case,
    spacing and punctuation aside; an author list by its names, the last possibly cut mid-name."""
    if isinstance(new, str) and isinstance(old, str):
        return _text_cut(new, old)
    if isinstance(new, tuple) and isinstance(old, tuple):
        return 1 if _names_cut(new, old) else -1 if _names_cut(old, new) else 0
    return 0


def _text_cut(new: str, old: str) -> int:
    new_stem, old_stem = new.rstrip(_CUT_MARKS), old.rstrip(_CUT_MARKS)
    if not (new_stem and old_stem):
        return 0
    # A cut text is most often the start of the whole one as it is: no folding needed.
    if new.startswith(old_stem):
        return 1 if _WORD.search(new, len(old_stem)) else 0
    if old.startswith(new_stem):
        return -1 if _WORD.search(old, len(new_stem)) else 0
    new_fold, old_fold = _fold(new_stem), _fold(old_stem)
    if len(new_fold) > len(old_fold) and new_fold.startswith(old_fold):
        return 1 if old_fold else 0
    if len(old_fold) > len(new_fold) and old_fold.startswith(new_fold):
        return -1 if new_fold else 0
    return 0


def _names_cut(longer: tuple[str, ...], shorter: tuple[str, ...]) -> bool:
    if not shorter or len(longer) < len(shorter) or longer == shorter:
        return False
    last = len(shorter) - 1
    return longer[:last] == shorter[:last] and longer[last].startswith(
        shorter[last].rstrip(_CUT_MARKS)
    )
