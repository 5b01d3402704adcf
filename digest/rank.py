"""Ranking: new papers x interest profiles -> each profile's best papers, with reasons (pure).

A paper's score for a profile is a sum of points (weights in `Weights`):

    keywords   for each of the profile's words or phrases found: idf squared (scaled to 0..1, so a
               generic word counts little) x (BM25 saturation of its count in the abstract +
               `title` if it is in the title) x `keyword`
    examples   tf-idf cosine (title and abstract, fitted on the stored corpus) to the CLOSEST
               paper the person liked (examples, "more" marks, an imported library) x `example`:
               the closest, not the centroid, because a reader's examples are often several topics
    semantic   the sentence-embedding similarity to that same liked paper, rescaled from
               EMBEDDING_FLOOR to 1, x `semantic` (the liked paper is the one with the best mean
               of the two similarities, and it is named in the reasons)
    learned    max(0, 2p - 1) x `learned`, p from the profile's logistic model of its marks
               (learn.py), once it has enough of them
    authors    `author` for each pinned author on the paper (at most two count)
    colleagues `colleague` for each author on the paper who wrote at least two stored papers with
               one of the profile's pinned authors: their research group (at most two count)
    liked authors `liked_author` for each author of the liked papers on the paper, a third for
               each liked paper they are on (at most one each, two in all)
    categories `category` when the paper's primary category is followed, half for a cross-list
    community  `community` x log10(1 + Hugging Face upvotes), when the profile allows it
    less       minus `less` x the similarity to the closest paper marked "less"

Topic before popularity: a paper is chosen only with topical evidence (a keyword, a pinned
author, a colleague, an author of a liked paper, a similarity of SHOWN_SIMILARITY to a liked paper,
or a learned preference); upvotes and categories only order such papers (categories are evidence
only for a profile that follows nothing else). Left out entirely: papers holding a negative
keyword, papers whose primary category is excluded, and papers the person already liked or marked.
A paper with no positive score is never chosen.

Every signal is a sparse matrix (papers x features) times a profiles x features matrix, computed in
blocks of profiles, so cost grows linearly with profiles and no Python loop runs over
profiles x papers. Reasons are worked out only for the papers finally chosen.
"""

from __future__ import annotations

import logging
import math
import os
import random
import threading
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from digest.config import ProfileConfig
from digest.identify import normalize_title
from digest.learn import BACKGROUND, MIN_DISLIKED, MIN_LIKED, LearnedProfile, fingerprint, train
from digest.models import Feedback, Paper, Reasons, ScoredPaper
from digest.sources.common import split_arxiv_id
from digest.terms import (
    author_keys,
    author_match_key,
    content_words,
    is_content,
    phrase,
    words,
)
from digest.tfidf import TfIdf

if TYPE_CHECKING:
    from digest.embed import VectorSource

log = logging.getLogger(__name__)

_BLOCK = 1024  # profiles scored at once: bounds memory at papers x _BLOCK floats
_SIMILARITY_SLICE = 1024  # marked papers compared with the candidates at once
_THREADS = max(1, min(os.cpu_count() or 1, 2))
_BM25_K1 = 1.2
_BM25_B = 0.75
_MAX_PHRASE = 6  # words in the longest phrase matched
COLLEAGUE_PAPERS = 2  # stored papers written with a pinned author that make someone a colleague
_MAX_GROUP = 50  # papers with more authors than this are big collaborations, not colleagues
# Similarity to a liked paper (the mean of tf-idf cosine and rescaled sentence similarity) from
# which it is topical evidence and named as a reason; below, it is noise.
SHOWN_SIMILARITY = 0.1
# Sentence cosines between two unrelated abstracts of one field sit around 0.1-0.3, so a cosine
# is rescaled from this floor to 1 before it counts: (cos - floor) / (1 - floor), at least 0.
EMBEDDING_FLOOR = 0.25


@dataclass(frozen=True, slots=True)
class Weights:
    """Points per unit of each signal. See the module docstring for how they combine."""

    keyword: float = 1.0
    title: float = 2.0  # a keyword in the title counts as much as this many in the abstract
    example: float = 6.0  # x tf-idf cosine to the closest liked paper
    semantic: float = 6.0  # x sentence-embedding similarity to that same paper (rescaled 0..1)
    # x max(0, 2p - 1), p the profile's learned probability of "more": it only lifts papers; a
    # two-sided model pushed down papers that other evidence (a liked author) rightly brought in.
    learned: float = 2.0
    author: float = 8.0
    colleague: float = 4.0
    liked_author: float = 6.0  # per author of the liked papers on the paper (two at most)
    category: float = 0.5  # a coarse signal (hundreds of papers a day): a tie-breaker
    community: float = 0.5
    less: float = 8.0  # x fused similarity to the closest paper marked "less"


@dataclass(frozen=True, slots=True)
class _TextModel:
    """tf-idf over title and abstract, fitted on the stored corpus."""

    vectorizer: TfIdf[Paper]
    corpus_vectors: sp.csr_matrix  # one L2-normalised row per corpus paper
    word_idf: Mapping[str, float]
    unseen_idf: float  # the idf of a word the corpus never used: as rare as it gets
    kept: sp.dia_matrix  # 1 for the words similarity counts, 0 for those in most papers


def _document(paper: Paper) -> str:
    # The title twice: it is the authors' own summary of the paper.
    return f"{paper.title}. {paper.title}. {paper.abstract}"


def _analyzer(paper: Paper) -> list[str]:
    # The vectorizer is handed papers, not strings: their words come from the same cache the
    # keyword matching reads, so no text is tokenized twice. The title counts twice (see above).
    title = _content_words(paper.title)
    return [*title, *title, *_content_words(paper.abstract)]


@lru_cache(maxsize=8192)
def _words(text: str) -> tuple[str, ...]:
    return tuple(words(text))


@lru_cache(maxsize=8192)
def _content_words(text: str) -> tuple[str, ...]:
    return tuple(content_words(text))


@dataclass
class Ranker:
    """A ranking model fitted on the stored corpus. `Ranker.fit(papers)`, then `rank(...)`."""

    corpus: Sequence[Paper]
    text: _TextModel | None
    weights: Weights = field(default_factory=Weights)
    vectors: VectorSource | None = None  # sentence embeddings; None ranks by words alone
    _by_id: dict[str, int] = field(default_factory=dict)
    _by_title: dict[str, int] = field(default_factory=dict)
    # author key (full or initials form) -> {co-author's full key: stored papers together}
    _coauthors: dict[str, dict[str, int]] = field(default_factory=dict)
    _colleagues: dict[str, frozenset[str]] = field(default_factory=dict)  # cache of `colleagues`
    # Learned profiles by profile name: pass in the ones kept from earlier runs; `retrained`
    # names those this ranker had to fit anew (for the caller to keep).
    learned: dict[str, LearnedProfile] = field(default_factory=dict)
    retrained: set[str] = field(default_factory=set)
    _background: np.ndarray | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def fit(
        cls,
        corpus: Sequence[Paper],
        *,
        weights: Weights | None = None,
        vectors: VectorSource | None = None,
    ) -> Ranker:
        """Fit tf-idf on `corpus` (the stored papers); examples are looked up in it.

        `vectors` gives sentence embeddings of papers (digest.embed.PaperVectors); without it the
        ranking uses words only.
        """
        ranker = cls(
            corpus=corpus, text=_fit_text(corpus), weights=weights or Weights(), vectors=vectors
        )
        for row, paper in enumerate(corpus):
            ranker._by_id[paper.key] = row
            if paper.arxiv_id:
                ranker._by_id[paper.arxiv_id] = row
            ranker._by_title.setdefault(normalize_title(paper.title), row)
            ranker._count_coauthors(paper)
        return ranker

    def _count_coauthors(self, paper: Paper) -> None:
        if len(paper.authors) > _MAX_GROUP:
            return  # a 300-author collaboration does not make its members colleagues
        keys = [k for k in map(author_keys, paper.authors) if k]
        for mine in keys:
            for key in mine:
                counts = self._coauthors.setdefault(key, {})
                for theirs in keys:
                    if theirs is not mine and key not in theirs:
                        counts[theirs[0]] = counts.get(theirs[0], 0) + 1

    def embed(self, papers: Sequence[Paper]) -> np.ndarray:
        """Sentence embeddings of papers, L2-normalised (each paper embedded once, then kept)."""
        assert self.vectors is not None
        return self.vectors.papers(papers)

    def learned_profile(
        self, profile: str, liked: Sequence[int], disliked: Sequence[int]
    ) -> LearnedProfile | None:
        """The profile's model of its marks (corpus rows), trained only when they changed; None
        before it has enough of each kind, or without sentence embeddings."""
        if self.vectors is None or len(liked) < MIN_LIKED or len(disliked) < MIN_DISLIKED:
            return None
        print_ = fingerprint(
            self.vectors.name,
            (self.corpus[row].key for row in liked),
            (self.corpus[row].key for row in disliked),
        )
        known = self.learned.get(profile)
        if known is not None and known.fingerprint == print_:
            return known
        model = train(
            print_,
            self.embed([self.corpus[row] for row in liked]),
            self.embed([self.corpus[row] for row in disliked]),
            self._background_vectors(),
        )
        with self._lock:
            self.learned[profile] = model
            self.retrained.add(profile)
        return model

    def _background_vectors(self) -> np.ndarray:
        with self._lock:
            if self._background is None:
                sample = random.Random(0).sample(
                    range(len(self.corpus)), min(BACKGROUND, len(self.corpus))
                )
                self._background = self.embed([self.corpus[row] for row in sorted(sample)])
            return self._background

    def colleagues(self, pinned_key: str) -> frozenset[str]:
        """Full-name keys of the people who wrote at least COLLEAGUE_PAPERS stored papers with a
        pinned author: learned from the store's co-authorship, never from the profile."""
        known = self._colleagues.get(pinned_key)
        if known is None:
            counts = self._coauthors.get(pinned_key, {})
            known = frozenset(key for key, n in counts.items() if n >= COLLEAGUE_PAPERS)
            self._colleagues[pinned_key] = known
        return known

    def find(self, reference: str) -> int | None:
        """The corpus row of a paper named by key, arXiv id (any version, 'arXiv:' prefix) or title."""
        text = reference.strip()
        if text.lower().startswith("arxiv:"):
            text = text[6:]
        arxiv_id, _ = split_arxiv_id(text)
        for key in (text, arxiv_id):
            if key and key in self._by_id:
                return self._by_id[key]
        return self._by_title.get(normalize_title(text))

    def rank(
        self,
        candidates: Sequence[Paper],
        profiles: Sequence[ProfileConfig],
        feedback: Mapping[str, Feedback] | None = None,
    ) -> dict[str, tuple[ScoredPaper, ...]]:
        """Each profile's best candidates, best first, at most `max_items`, with their reasons."""
        feedback = feedback or {}
        results: dict[str, tuple[ScoredPaper, ...]] = {p.name: () for p in profiles}
        if not candidates or not profiles:
            return results
        # In key order, so that equal scores always come out in the same order.
        papers = _PaperFeatures.build(sorted(candidates, key=lambda p: p.key), profiles, self)
        marks = self._resolve_marks(profiles, feedback)
        similarity = _Similarity.build(papers, marks, self)
        blocks = [profiles[start : start + _BLOCK] for start in range(0, len(profiles), _BLOCK)]

        def rank_block(block: Sequence[ProfileConfig]) -> dict[str, tuple[ScoredPaper, ...]]:
            signals = _ProfileSignals.build(block, marks, self, papers, similarity)
            return _choose(papers, signals, block, self)

        # Two blocks at a time: scipy and numpy release the GIL in their products, so one
        # block's matrix work overlaps the other's Python (the reasons) on a second core.
        workers = min(_THREADS, len(blocks))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for ranked in pool.map(rank_block, blocks):
                results.update(ranked)
        return results

    def _resolve_marks(
        self, profiles: Sequence[ProfileConfig], feedback: Mapping[str, Feedback]
    ) -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
        """Each profile's liked and disliked corpus rows. Their vectors are fetched here, on the
        calling thread: the vector source may read a store, which belongs to this thread."""
        marks = {
            p.name: (
                _liked_rows(p, feedback.get(p.name, Feedback()), self),
                _resolve(feedback.get(p.name, Feedback()).less, self, p.name, "less"),
            )
            for p in profiles
        }
        if self.vectors is not None:
            rows = sorted({row for pair in marks.values() for rows in pair for row in rows})
            self.embed([self.corpus[row] for row in rows])
            if any(len(a) >= MIN_LIKED and len(b) >= MIN_DISLIKED for a, b in marks.values()):
                self._background_vectors()
        return marks

    # -- used by the feature builders -----------------------------------------------------------

    def term_idf(self, terms: Sequence[tuple[str, ...]]) -> np.ndarray:
        """The idf of each keyword or phrase: a phrase is as rare as its rarest word, plus a bit
        for each further word (exact phrase counts would need a pass over the whole corpus)."""
        if self.text is None:
            return np.ones(len(terms), dtype=np.float64)
        idf = self.text.word_idf
        values = []
        for term in terms:
            known = [idf.get(word, self.text.unseen_idf) for word in term if is_content(word)]
            values.append(max(known) + 0.5 * (len(known) - 1) if known else 1.0)
        # Scaled so that a word the corpus never used is worth 1, then squared: a generic word
        # ("streaming", "feed-forward": idf around half the maximum) is worth a quarter, so one
        # common word never outweighs a strong similarity to a paper the reader liked.
        scaled = np.minimum(np.asarray(values, dtype=np.float64) / self.text.unseen_idf, 1.0)
        return np.asarray(scaled**2)

    def text_vectors(self, papers: Sequence[Paper]) -> sp.csr_matrix:
        assert self.text is not None
        return _normalised(self.text.vectorizer.transform(papers) @ self.text.kept)


def _fit_text(corpus: Sequence[Paper]) -> _TextModel | None:
    documents = list(corpus)
    if not documents:
        log.warning("the store holds no papers yet: example papers cannot count until it does")
        return None
    vectorizer = TfIdf(_analyzer, min_df=2 if len(documents) >= 1000 else 1)
    try:
        vectors = vectorizer.fit_transform(documents)
    except ValueError:  # no word at all: every paper is empty or only stop words
        log.warning("the stored papers hold no words to learn from: example papers cannot count")
        return None
    # Words in over half the corpus ("model", "method") tell papers apart poorly: they are left
    # out of the similarity vectors, but keep their (low) idf, so a keyword "model" counts little.
    in_documents = np.bincount(vectors.indices, minlength=vectors.shape[1])
    common = in_documents > 0.5 * len(documents) if len(documents) >= 20 else in_documents < 0
    kept = sp.diags((~common).astype(np.float32))
    vocabulary, idf = vectorizer.vocabulary, vectorizer.idf
    word_idf = {word: float(idf[column]) for word, column in vocabulary.items()}
    unseen = math.log((1 + len(documents)) / 1) + 1.0  # the smoothed idf for df = 0 (digest.tfidf)
    return _TextModel(vectorizer, _normalised(vectors @ kept), word_idf, unseen, kept)


def _normalised(vectors: sp.csr_matrix) -> sp.csr_matrix:
    """Rows scaled to unit length (rows of zeros stay zero)."""
    norms = np.sqrt(np.asarray(vectors.multiply(vectors).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    return sp.csr_matrix(sp.diags((1.0 / norms).astype(np.float32)) @ vectors)


# -- features of the day's papers ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Vocabulary:
    """The keywords, authors and categories of every profile in the run, each with a column."""

    terms: dict[tuple[str, ...], int]
    authors: dict[str, int]
    categories: dict[str, int]

    @classmethod
    def of(cls, profiles: Sequence[ProfileConfig], ranker: Ranker) -> _Vocabulary:
        terms: dict[tuple[str, ...], int] = {}
        authors: dict[str, int] = {}
        categories: dict[str, int] = {}
        for profile in profiles:
            for text in (*profile.keywords, *profile.negative_keywords):
                term = _usable_phrase(text)
                if term:
                    terms.setdefault(term, len(terms))
            for name in profile.authors:
                key = author_match_key(name)
                if key:
                    authors.setdefault(key, len(authors))
                    for colleague in ranker.colleagues(key):
                        authors.setdefault(colleague, len(authors))
            for category in (*profile.categories, *profile.exclude_categories):
                categories.setdefault(category.casefold(), len(categories))
        return cls(terms, authors, categories)


@dataclass(frozen=True, slots=True)
class _PaperFeatures:
    """The candidates as sparse matrices, each built once per run for all profiles."""

    papers: Sequence[Paper]
    vocabulary: _Vocabulary
    keyword_points: sp.csr_matrix  # papers x terms: idf x (BM25 abstract + title boost)
    term_hits: sp.csr_matrix  # papers x terms: 1 where the term occurs anywhere
    title_hits: sp.csr_matrix  # papers x terms: 1 where the term is in the title
    author_hits: sp.csr_matrix  # papers x pinned authors
    primary: sp.csr_matrix  # papers x categories: 1 for the primary category
    cross: sp.csr_matrix  # papers x categories: 1 for any other category
    upvotes: np.ndarray  # log10(1 + upvotes) per paper
    text_vectors: sp.csr_matrix | None  # tf-idf rows, L2-normalised
    embeddings: np.ndarray | None  # sentence embeddings, L2-normalised
    # For the reasons of the few papers picked: cheap set lookups instead of matrix slicing.
    row_of_key: Mapping[str, int]
    term_sets: tuple[frozenset[int], ...]  # each paper's matched term columns
    title_sets: tuple[frozenset[int], ...]  # each paper's term columns in the title
    author_keys: tuple[tuple[tuple[str, tuple[str, ...]], ...], ...]  # (name, its keys)

    @classmethod
    def build(
        cls, papers: Sequence[Paper], profiles: Sequence[ProfileConfig], ranker: Ranker
    ) -> _PaperFeatures:
        vocabulary = _Vocabulary.of(profiles, ranker)
        terms = vocabulary.terms
        lengths = sorted({len(term) for term in terms})
        title_rows: list[dict[int, int]] = []
        abstract_rows: list[dict[int, int]] = []
        abstract_lengths = []
        for paper in papers:
            title_rows.append(_count_terms(_words(paper.title), terms, lengths))
            abstract_words = _words(paper.abstract)
            abstract_rows.append(_count_terms(abstract_words, terms, lengths))
            abstract_lengths.append(len(abstract_words))
        shape = (len(papers), max(len(terms), 1))
        title_counts = _csr(title_rows, shape)
        abstract_counts = _csr(abstract_rows, shape)
        title_hits = (title_counts > 0).astype(np.float64).tocsr()
        term_hits = ((title_counts + abstract_counts) > 0).astype(np.float64).tocsr()

        # BM25 saturation of the abstract counts, scaled by each term's idf.
        saturated = abstract_counts.astype(np.float64).tocsr()
        average = max(float(np.mean(abstract_lengths)), 1.0)
        norm = _BM25_K1 * (1 - _BM25_B + _BM25_B * np.asarray(abstract_lengths) / average)
        row_of_value = np.repeat(np.arange(len(papers)), np.diff(saturated.indptr))
        tf = saturated.data
        saturated.data = tf * (_BM25_K1 + 1) / (tf + norm[row_of_value])
        idf = ranker.term_idf(list(terms)) if terms else np.ones(1)
        keyword_points = sp.csr_matrix(
            (saturated + ranker.weights.title * title_hits) @ sp.diags(idf)
        )

        names_and_keys = tuple(
            tuple((name, author_keys(name)) for name in paper.authors) for paper in papers
        )
        author_rows = [
            {
                vocabulary.authors[key]: 1
                for _, keys in paper_authors
                for key in keys
                if key in vocabulary.authors
            }
            for paper_authors in names_and_keys
        ]
        primary_rows, cross_rows = [], []
        for paper in papers:
            main = (paper.primary_category or next(iter(paper.categories), "")).casefold()
            primary_rows.append(
                {vocabulary.categories[main]: 1} if main in vocabulary.categories else {}
            )
            cross_rows.append(
                {
                    vocabulary.categories[c.casefold()]: 1
                    for c in paper.categories
                    if c.casefold() in vocabulary.categories and c.casefold() != main
                }
            )
        upvotes = np.log10(1 + np.asarray([max(p.upvotes or 0, 0) for p in papers], np.float64))
        return cls(
            papers=papers,
            vocabulary=vocabulary,
            keyword_points=keyword_points,
            term_hits=term_hits,
            title_hits=title_hits,
            author_hits=_csr(author_rows, (len(papers), max(len(vocabulary.authors), 1))),
            primary=_csr(primary_rows, (len(papers), max(len(vocabulary.categories), 1))),
            cross=_csr(cross_rows, (len(papers), max(len(vocabulary.categories), 1))),
            upvotes=upvotes,
            text_vectors=ranker.text_vectors(papers) if ranker.text else None,
            embeddings=ranker.embed(papers) if ranker.vectors else None,
            row_of_key={paper.key: row for row, paper in enumerate(papers)},
            term_sets=_row_sets(term_hits),
            title_sets=_row_sets(title_hits),
            author_keys=names_and_keys,
        )


def _row_sets(matrix: sp.csr_matrix) -> tuple[frozenset[int], ...]:
    columns = np.split(matrix.indices, matrix.indptr[1:-1])
    return tuple(frozenset(row.tolist()) for row in columns)


def _count_terms(
    text_words: Sequence[str], terms: Mapping[tuple[str, ...], int], lengths: Sequence[int]
) -> dict[int, int]:
    """How often each term occurs in a word sequence: {term column: count}."""
    counts: dict[int, int] = {}
    for size in lengths:
        for start in range(len(text_words) - size + 1):
            column = terms.get(tuple(text_words[start : start + size]))
            if column is not None:
                counts[column] = counts.get(column, 0) + 1
    return counts


def _csr(rows: Sequence[Mapping[int, int | float]], shape: tuple[int, int]) -> sp.csr_matrix:
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([len(row) for row in rows])
    indices = np.fromiter((c for row in rows for c in row), dtype=np.int64, count=int(indptr[-1]))
    data = np.fromiter((v for row in rows for v in row.values()), np.float64, int(indptr[-1]))
    return sp.csr_matrix((data, indices, indptr), shape=shape)


# -- what each profile asks for ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Similarity:
    """Every marked paper of the run (liked or "less", any profile) against every candidate,
    computed once for all blocks: blocks share most of their marked papers."""

    row_of: Mapping[int, int]  # corpus row -> row below
    text: np.ndarray | None  # marked papers x candidates: tf-idf cosine (float16)
    meaning: np.ndarray | None  # marked papers x candidates: rescaled sentence similarity (float16)

    @classmethod
    def build(
        cls,
        papers: _PaperFeatures,
        marks: Mapping[str, tuple[tuple[int, ...], tuple[int, ...]]],
        ranker: Ranker,
    ) -> _Similarity:
        rows = sorted({row for pair in marks.values() for chosen in pair for row in chosen})
        shape = (len(rows), len(papers.papers))
        corpus_text = ranker.text.corpus_vectors if ranker.text is not None else None
        candidate_text = papers.text_vectors.T.tocsc() if papers.text_vectors is not None else None
        embeddings = papers.embeddings if ranker.vectors is not None else None
        text = np.zeros(shape, np.float16) if corpus_text is not None and candidate_text is not None else None
        meaning = np.zeros(shape, np.float16) if embeddings is not None else None
        # In slices of marked papers: a sparse product's temporaries grow with its size.
        for start in range(0, len(rows), _SIMILARITY_SLICE):
            chosen = rows[start : start + _SIMILARITY_SLICE]
            part = slice(start, start + len(chosen))
            if text is not None and corpus_text is not None and candidate_text is not None:
                text[part] = (corpus_text[chosen] @ candidate_text).toarray()
            if meaning is not None and embeddings is not None:
                cosine = ranker.embed([ranker.corpus[row] for row in chosen]) @ embeddings.T
                cosine -= EMBEDDING_FLOOR
                np.maximum(cosine, 0.0, out=cosine)
                meaning[part] = cosine * (1 / (1 - EMBEDDING_FLOOR))
        return cls({row: i for i, row in enumerate(rows)}, text, meaning)


@dataclass(frozen=True, slots=True)
class _Liked:
    """A block's liked (or disliked) papers against the candidates, and each profile's share."""

    rows: tuple[tuple[int, ...], ...]  # corpus rows, per profile
    distinct: np.ndarray  # the corpus row of each row below
    index: np.ndarray  # profiles x most liked: rows into the matrices below; -1 pads
    text: np.ndarray | None  # distinct liked papers x candidates: tf-idf cosine (float16)
    meaning: np.ndarray | None  # distinct liked papers x candidates: sentence similarity (float16)

    @classmethod
    def build(cls, rows: tuple[tuple[int, ...], ...], similarity: _Similarity) -> _Liked:
        distinct = sorted({row for chosen in rows for row in chosen})
        position = {row: i for i, row in enumerate(distinct)}
        index = np.full((len(rows), max((len(r) for r in rows), default=0)), -1, dtype=np.int64)
        for i, chosen in enumerate(rows):
            index[i, : len(chosen)] = [position[row] for row in chosen]
        shared = [similarity.row_of[row] for row in distinct]
        text = similarity.text[shared] if similarity.text is not None else None
        meaning = similarity.meaning[shared] if similarity.meaning is not None else None
        return cls(rows, np.asarray(distinct, dtype=np.int64), index, text, meaning)


@dataclass(frozen=True, slots=True)
class _ProfileSignals:
    """A block of profiles as matrices whose columns match `_PaperFeatures`' features."""

    keywords: sp.csr_matrix  # profiles x terms
    negatives: sp.csr_matrix  # profiles x terms
    authors: sp.csr_matrix  # profiles x authors
    colleagues: sp.csr_matrix  # profiles x authors: the pinned authors' colleagues
    colleague_keys: tuple[frozenset[str], ...]
    follows: sp.csr_matrix  # profiles x categories
    excludes: sp.csr_matrix  # profiles x categories
    community: np.ndarray  # 1 where the profile allows the community signal
    liked: _Liked  # examples and "more" marks
    disliked: _Liked  # "less" marks
    liked_authors: sp.csr_matrix  # papers x profiles: authors of the profile's liked papers
    category_feeds: np.ndarray  # True for profiles that follow categories and nothing else
    learned: tuple[LearnedProfile | None, ...]  # a model of the profile's marks, once it has enough
    known: tuple[frozenset[str], ...]  # keys the person liked or marked: never offered again

    @classmethod
    def build(
        cls,
        profiles: Sequence[ProfileConfig],
        marks: Mapping[str, tuple[tuple[int, ...], tuple[int, ...]]],
        ranker: Ranker,
        papers: _PaperFeatures,
        similarity: _Similarity,
    ) -> _ProfileSignals:
        vocabulary = papers.vocabulary
        size = len(profiles)

        def matrix(columns: Iterable[Iterable[int]], width: int) -> sp.csr_matrix:
            return _csr([dict.fromkeys(row, 1) for row in columns], (size, max(width, 1)))

        def term_columns(texts: Iterable[str]) -> list[int]:
            return [vocabulary.terms[t] for t in map(_usable_phrase, texts) if t]

        for profile in profiles:
            _warn_about(profile)

        pinned_keys = [[k for k in map(author_match_key, p.authors) if k] for p in profiles]
        colleague_keys = tuple(
            frozenset().union(*(ranker.colleagues(k) for k in keys)).difference(keys)
            for keys in pinned_keys
        )
        liked_rows = tuple(marks[p.name][0] for p in profiles)
        disliked_rows = tuple(marks[p.name][1] for p in profiles)
        return cls(
            keywords=matrix((term_columns(p.keywords) for p in profiles), len(vocabulary.terms)),
            negatives=matrix(
                (term_columns(p.negative_keywords) for p in profiles), len(vocabulary.terms)
            ),
            authors=matrix(
                ([vocabulary.authors[k] for k in keys] for keys in pinned_keys),
                len(vocabulary.authors),
            ),
            colleagues=matrix(
                ([vocabulary.authors[k] for k in keys] for keys in colleague_keys),
                len(vocabulary.authors),
            ),
            colleague_keys=colleague_keys,
            follows=matrix(
                ([vocabulary.categories[c.casefold()] for c in p.categories] for p in profiles),
                len(vocabulary.categories),
            ),
            excludes=matrix(
                (
                    [vocabulary.categories[c.casefold()] for c in p.exclude_categories]
                    for p in profiles
                ),
                len(vocabulary.categories),
            ),
            community=np.asarray([p.community_signal for p in profiles], dtype=np.float64),
            liked=_Liked.build(liked_rows, similarity),
            disliked=_Liked.build(disliked_rows, similarity),
            liked_authors=_liked_authors(papers, liked_rows, ranker),
            category_feeds=np.asarray(
                [
                    bool(p.categories) and not (p.keywords or pinned or liked)
                    for p, pinned, liked in zip(profiles, pinned_keys, liked_rows, strict=True)
                ]
            ),
            learned=tuple(
                ranker.learned_profile(p.name, liked, disliked)
                for p, liked, disliked in zip(profiles, liked_rows, disliked_rows, strict=True)
            ),
            known=tuple(
                frozenset(ranker.corpus[row].key for row in (*liked, *disliked))
                for liked, disliked in zip(liked_rows, disliked_rows, strict=True)
            ),
        )


def _liked_authors(
    papers: _PaperFeatures, liked_rows: Sequence[Sequence[int]], ranker: Ranker
) -> sp.csr_matrix:
    """Papers x profiles: how many people on each paper also wrote a paper the profile liked,
    each counted by the share of liked papers they are on (a third each, at most one)."""
    columns: dict[str, dict[int, float]] = {}  # author's full key -> {profile: weight}
    for column, rows in enumerate(liked_rows):
        for key, count in _liked_people(rows, ranker).items():
            columns.setdefault(key, {})[column] = min(count, 3) / 3
    rows_out: list[dict[int, float]] = []
    for paper_authors in papers.author_keys:
        weights: dict[int, float] = {}
        for _, keys in paper_authors:
            for column, weight in columns.get(keys[0], {}).items() if keys else ():
                weights[column] = weights.get(column, 0.0) + weight
        rows_out.append(weights)
    return _csr(rows_out, (len(papers.papers), max(len(liked_rows), 1)))


def _liked_people(rows: Sequence[int], ranker: Ranker) -> dict[str, int]:
    """The authors of the liked papers (full-name keys), each with how many of those papers they
    are on. Collaborations of over _MAX_GROUP authors are left out: liking one is no sign."""
    counts: dict[str, int] = {}
    for row in rows:
        authors = ranker.corpus[row].authors
        if len(authors) <= _MAX_GROUP:
            for key in {keys[0] for keys in map(author_keys, authors) if keys}:
                counts[key] = counts.get(key, 0) + 1
    return counts


@lru_cache(maxsize=100_000)
def _usable_phrase(text: str) -> tuple[str, ...] | None:
    """The words a keyword matches by, or None when it has no word that means anything."""
    term = phrase(text)[:_MAX_PHRASE]
    return term if any(is_content(word) for word in term) else None


def _warn_about(profile: ProfileConfig) -> None:
    """Say what a person should fix in a profile; the ranking goes on with what is usable."""
    unusable = [k for k in (*profile.keywords, *profile.negative_keywords) if not _usable_phrase(k)]
    if unusable:
        log.warning(
            "profile %s: keywords %s hold no word to match (only stop words or symbols); left out",
            profile.name,
            ", ".join(repr(k) for k in unusable),
        )
    if not (profile.keywords or profile.authors or profile.categories or profile.examples):
        log.warning(
            "profile %s: no keywords, authors, categories or examples: nothing ranks it, so its"
            " digest stays empty until one is given (or papers are marked 'more')",
            profile.name,
        )


def _liked_rows(profile: ProfileConfig, marks: Feedback, ranker: Ranker) -> tuple[int, ...]:
    rows = _resolve(profile.examples, ranker, profile.name, "examples")
    rows += _resolve(marks.more, ranker, profile.name, "more")
    return tuple(dict.fromkeys(rows))


def _resolve(references: Iterable[str], ranker: Ranker, profile: str, what: str) -> tuple[int, ...]:
    rows = []
    for reference in references:
        row = ranker.find(reference)
        if row is None:
            log.warning(
                "profile %s: %s paper %r is not in the store; it counts once a source lists it",
                profile,
                what,
                reference,
            )
        else:
            rows.append(row)
    return tuple(rows)


# -- scores and the final choice -------------------------------------------------------------------


def _choose(
    papers: _PaperFeatures,
    signals: _ProfileSignals,
    profiles: Sequence[ProfileConfig],
    ranker: Ranker,
) -> dict[str, tuple[ScoredPaper, ...]]:
    closest = _closest(papers, signals.liked)
    parts = _score_parts(papers, signals, closest, ranker.weights)
    total = sum(parts.values(), np.zeros((len(papers.papers), len(profiles))))
    left_out = (papers.term_hits @ signals.negatives.T) + (papers.primary @ signals.excludes.T)
    total[left_out.toarray() > 0] = -np.inf
    # Topic before popularity: upvotes and categories only order papers that are on topic.
    total[~_topical(papers, signals, closest, parts)] = -np.inf
    for column, known in enumerate(signals.known):
        for key in known:
            if key in papers.row_of_key:
                total[papers.row_of_key[key], column] = -np.inf
    # Equal scores go in key order (papers are sorted by key): a far smaller nudge than any
    # score shown, so the same data always gives the same digest.
    total -= np.arange(len(papers.papers))[:, None] * 1e-9
    most = min(max(p.max_items for p in profiles), len(papers.papers))
    top = np.argpartition(-total, most - 1, axis=0)[:most]
    picks: list[np.ndarray] = []
    for column, profile in enumerate(profiles):
        rows = top[:, column]
        rows = rows[np.argsort(-total[rows, column], kind="stable")][: profile.max_items]
        scores = total[rows, column]
        picks.append(rows[(scores > 0) & (scores >= profile.min_score)])
    return _explain(papers, signals, parts, total, closest, ranker, profiles, picks)


@dataclass(frozen=True, slots=True)
class _Closest:
    """For each paper and profile: the liked paper most like it, and how alike they are."""

    text: np.ndarray  # papers x profiles: tf-idf cosine to that liked paper
    meaning: np.ndarray  # papers x profiles: its sentence similarity, rescaled to 0..1
    fused: np.ndarray  # papers x profiles: the mean of the two (what "closest" is chosen by)
    row: np.ndarray  # papers x profiles: its corpus row, -1 when the profile likes nothing


def _closest(papers: _PaperFeatures, liked: _Liked, *, detail: bool = True) -> _Closest:
    """Similarity to the closest liked paper, not to their mean: a reader's examples are often
    about several topics, and a paper near one of them is what they asked for. Without `detail`
    only `fused` is filled (all the "less" marks need)."""
    count, (size, most) = len(papers.papers), liked.index.shape
    # Liked papers x papers: picking a profile's liked papers copies whole rows.
    text, meaning = liked.text, liked.meaning
    result = _Closest(
        text=np.zeros((count, size), np.float32),
        meaning=np.zeros((count, size), np.float32),
        fused=np.zeros((count, size), np.float32),
        row=np.full((count, size), -1, dtype=np.int64),
    )
    available = [m for m in (text, meaning) if m is not None]
    if not available or not most:
        return result

    def fused(rows: np.ndarray) -> np.ndarray:  # float16 in, float32 out: half the memory kept
        values: np.ndarray = available[0][rows].astype(np.float32)
        if len(available) == 2:
            values += available[1][rows]
            values *= 0.5
        return values

    # One liked paper at a time (a profile has few): the best so far and its row, profiles x
    # papers, kept in place; an index of -1 pads profiles that like fewer papers.
    best = np.full((size, count), -1.0, dtype=np.float32)
    chosen = np.full((size, count), -1, dtype=np.int64)
    for j in range(most):
        rows = liked.index[:, j]
        values = fused(rows)
        values[rows < 0] = -1.0
        better = values > best
        np.copyto(best, values, where=better)
        np.copyto(chosen, rows[:, None], where=better)
    result.fused[:] = np.maximum(best, 0.0).T
    if not detail:
        return result
    found = chosen >= 0
    paper_columns = np.arange(count)[None, :]
    if text is not None:
        result.text[:] = np.where(found, text[chosen, paper_columns], 0.0).T
    if meaning is not None:
        result.meaning[:] = np.where(found, meaning[chosen, paper_columns], 0.0).T
    result.row[:] = np.where(found, liked.distinct[chosen], -1).T
    return result


def _score_parts(
    papers: _PaperFeatures, signals: _ProfileSignals, closest: _Closest, weights: Weights
) -> dict[str, np.ndarray]:
    """Each signal's points, papers x profiles."""
    parts = {
        "keywords": weights.keyword * (papers.keyword_points @ signals.keywords.T).toarray(),
        "authors": weights.author
        * np.minimum((papers.author_hits @ signals.authors.T).toarray(), 2.0),
        "colleagues": weights.colleague
        * np.minimum((papers.author_hits @ signals.colleagues.T).toarray(), 2.0),
        "categories": weights.category
        * np.minimum(
            (papers.primary @ signals.follows.T).toarray()
            + 0.5 * (papers.cross @ signals.follows.T).toarray(),
            1.0,
        ),
        "community": weights.community * np.outer(papers.upvotes, signals.community),
        "liked authors": weights.liked_author
        * np.minimum(signals.liked_authors.toarray()[:, : len(signals.known)], 2.0),
        "examples": weights.example * closest.text,
        "semantic": weights.semantic * closest.meaning,
    }
    if any(len(rows) for rows in signals.disliked.rows):
        parts["less"] = -weights.less * _closest(papers, signals.disliked, detail=False).fused
    if papers.embeddings is not None and any(m is not None for m in signals.learned):
        parts["learned"] = weights.learned * _learned_points(papers.embeddings, signals.learned)
    return parts


def _learned_points(embeddings: np.ndarray, models: Sequence[LearnedProfile | None]) -> np.ndarray:
    """max(0, 2p - 1) for each paper and profile with a learned model (p: its probability of
    "more"): what the model likes is lifted; what it does not like is left to the "less" marks."""
    points = np.zeros((len(embeddings), len(models)))
    columns = [i for i, model in enumerate(models) if model is not None]
    if columns and embeddings.shape[1]:
        chosen = [models[i] for i in columns]
        coefficients = np.stack([m.coefficients for m in chosen if m is not None])
        intercepts = np.asarray([m.intercept for m in chosen if m is not None])
        logits = embeddings @ coefficients.T + intercepts
        points[:, columns] = np.maximum(2.0 / (1.0 + np.exp(-np.clip(logits, -30, 30))) - 1.0, 0.0)
    return points


def _topical(
    papers: _PaperFeatures,
    signals: _ProfileSignals,
    closest: _Closest,
    parts: Mapping[str, np.ndarray],
) -> np.ndarray:
    """Papers x profiles: True where a paper is on the profile's topic. Upvotes are never
    evidence, and categories only for a profile that follows nothing else (its reader asked for
    a category feed): elsewhere they only order papers that are on topic."""
    evidence: np.ndarray = (papers.term_hits @ signals.keywords.T).toarray() > 0
    if signals.category_feeds.any():
        in_category = ((papers.primary + papers.cross) @ signals.follows.T).toarray() > 0
        evidence |= in_category & signals.category_feeds
    evidence |= (papers.author_hits @ (signals.authors + signals.colleagues).T).toarray() > 0
    evidence |= parts["liked authors"] > 0
    evidence |= closest.fused >= SHOWN_SIMILARITY
    if "learned" in parts:
        evidence |= parts["learned"] > 0
    return evidence


def _explain(
    papers: _PaperFeatures,
    signals: _ProfileSignals,
    parts: Mapping[str, np.ndarray],
    total: np.ndarray,
    closest: _Closest,
    ranker: Ranker,
    profiles: Sequence[ProfileConfig],
    picks: Sequence[np.ndarray],
) -> dict[str, tuple[ScoredPaper, ...]]:
    """Each pick with its reasons. Everything numeric is gathered for the whole block at once;
    what is left per pick is a few set lookups."""
    counts = [len(rows) for rows in picks]
    pick_rows = np.concatenate(picks).astype(np.int64) if picks else np.zeros(0, np.int64)
    pick_columns = np.repeat(np.arange(len(profiles)), counts)
    scores = np.round(total[pick_rows, pick_columns], 4).tolist()
    points = {
        name: np.round(part[pick_rows, pick_columns], 4).tolist() for name, part in parts.items()
    }
    point_items = list(points.items())
    rows_list = pick_rows.tolist()
    all_papers, term_sets, title_sets = papers.papers, papers.term_sets, papers.title_sets
    closeness = closest.fused[pick_rows, pick_columns]
    similar_row = np.where(closeness >= SHOWN_SIMILARITY, closest.row[pick_rows, pick_columns], -1)
    similar_row, similarity = similar_row.tolist(), np.round(closeness, 4).tolist()
    results: dict[str, tuple[ScoredPaper, ...]] = {}
    start = 0
    for column, (profile, count) in enumerate(zip(profiles, counts, strict=True)):
        # One entry per term, in the profile's first spelling: "graph" and "Graphs" are one keyword.
        first_spelling: dict[tuple[str, ...], str] = {}
        for text in profile.keywords:
            if term := _usable_phrase(text):
                first_spelling.setdefault(term, text)
        keyword_columns = [
            (text, papers.vocabulary.terms.get(term)) for term, text in first_spelling.items()
        ]
        pinned = {key for key in map(author_match_key, profile.authors) if key}
        circle = signals.colleague_keys[column]
        liked_author_points = points.get("liked authors")
        # Only for a profile whose picks got such points: this loop is the hot path.
        liked_people = (
            _liked_people(signals.liked.rows[column], ranker)
            if liked_author_points and any(liked_author_points[start : start + count])
            else {}
        )
        followed = {c.casefold() for c in profile.categories}
        chosen = []
        # The hot loop of a big run (one pass per pick): plain lists, positional arguments.
        for i in range(start, start + count):
            row = rows_list[i]
            paper = all_papers[row]
            found, in_title = term_sets[row], title_sets[row]
            title_keywords = [text for text, term in keyword_columns if term in in_title]
            keywords = title_keywords + [
                text for text, term in keyword_columns if term in found and term not in in_title
            ]
            liked = similar_row[i]
            reasons = Reasons(
                tuple(keywords),
                tuple(title_keywords),
                tuple(
                    [name for name, keys in papers.author_keys[row] if not pinned.isdisjoint(keys)]
                )
                if pinned
                else (),
                tuple([c for c in paper.categories if c.casefold() in followed])
                if followed
                else (),
                ranker.corpus[liked].title if liked >= 0 else None,
                similarity[i] if liked >= 0 else 0.0,
                paper.upvotes if profile.community_signal and paper.upvotes else None,
                tuple([(name, values[i]) for name, values in point_items if values[i]]),
                tuple(
                    [name for name, keys in papers.author_keys[row] if not circle.isdisjoint(keys)]
                )
                if circle
                else (),
                tuple(
                    [
                        name
                        for name, keys in papers.author_keys[row]
                        if keys and keys[0] in liked_people
                    ]
                )
                if liked_author_points and liked_author_points[i]
                else (),
            )
            chosen.append(ScoredPaper(paper, scores[i], reasons))
        results[profile.name] = tuple(chosen)
        start += count
    return results
