"""Ranking: new papers x interest profiles -> each profile's best papers, with reasons (pure).

A paper's score for a profile is a sum of points (weights in `Weights`):

    keywords   for each of the profile's words or phrases found: idf (scaled to 0..1) x (BM25
               saturation of its count in the abstract + `title` if it is in the title) x `keyword`
    examples   cosine similarity (tf-idf over title and abstract, fitted on the stored corpus)
               to the centroid of the papers the person liked (examples and "more" marks) x `example`
    authors    `author` for each pinned author on the paper (at most two count)
    colleagues `colleague` for each author on the paper who wrote at least two stored papers with
               one of the profile's pinned authors: their research group (at most two count)
    categories `category` when the paper's primary category is followed, half for a cross-list
    community  `community` x log10(1 + Hugging Face upvotes), when the profile allows it
    less       minus `less` x cosine similarity to the papers marked "less"

Left out entirely: papers holding a negative keyword, and papers whose primary category is
excluded. A paper with no positive evidence (score <= 0) is never chosen.

Every signal is a sparse matrix (papers x features) times a profiles x features matrix, computed in
blocks of profiles, so cost grows linearly with profiles and no Python loop runs over
profiles x papers. Reasons are worked out only for the papers finally chosen.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer

from digest.config import ProfileConfig
from digest.identify import normalize_title
from digest.models import Feedback, Paper, Reasons, ScoredPaper
from digest.sources.common import split_arxiv_id
from digest.terms import author_keys, author_match_key, is_content, phrase, words

if TYPE_CHECKING:
    from digest.semantic import Embedder

log = logging.getLogger(__name__)

_BLOCK = 1024  # profiles scored at once: bounds memory at papers x _BLOCK floats
_THREADS = max(1, min(os.cpu_count() or 1, 2))
_BM25_K1 = 1.2
_BM25_B = 0.75
_MAX_PHRASE = 6  # words in the longest phrase matched
COLLEAGUE_PAPERS = 2  # stored papers written with a pinned author that make someone a colleague
_MAX_GROUP = 50  # papers with more authors than this are big collaborations, not colleagues
SHOWN_SIMILARITY = 0.1  # a liked paper is named as a reason from this cosine on: below, it is noise


@dataclass(frozen=True, slots=True)
class Weights:
    """Points per unit of each signal. See the module docstring for how they combine."""

    keyword: float = 1.0
    title: float = 2.0  # a keyword in the title counts as much as this many in the abstract
    example: float = 12.0
    semantic: float = 2.0  # cosine of sentence embeddings (the optional extra): a light touch
    author: float = 8.0
    colleague: float = 4.0
    category: float = 0.5  # a coarse signal (hundreds of papers a day): a tie-breaker
    community: float = 0.5
    less: float = 8.0


@dataclass(frozen=True, slots=True)
class _TextModel:
    """tf-idf over title and abstract, fitted on the stored corpus."""

    vectorizer: TfidfVectorizer
    corpus_vectors: sp.csr_matrix  # one L2-normalised row per corpus paper
    word_idf: Mapping[str, float]
    unseen_idf: float  # the idf of a word the corpus never used: as rare as it gets


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
    return tuple(w for w in _words(text) if is_content(w))


@dataclass
class Ranker:
    """A ranking model fitted on the stored corpus. `Ranker.fit(papers)`, then `rank(...)`."""

    corpus: Sequence[Paper]
    text: _TextModel | None
    weights: Weights = field(default_factory=Weights)
    embedder: Embedder | None = None
    _by_id: dict[str, int] = field(default_factory=dict)
    _by_title: dict[str, int] = field(default_factory=dict)
    # author key (full or initials form) -> {co-author's full key: stored papers together}
    _coauthors: dict[str, dict[str, int]] = field(default_factory=dict)
    _colleagues: dict[str, frozenset[str]] = field(default_factory=dict)  # cache of `colleagues`
    _embeddings: dict[str, np.ndarray] = field(default_factory=dict)  # cache of `embed`, by key

    @classmethod
    def fit(
        cls,
        corpus: Sequence[Paper],
        *,
        weights: Weights | None = None,
        semantic: bool = False,
        embedder: Embedder | None = None,
    ) -> Ranker:
        """Fit tf-idf on `corpus` (the stored papers); examples are looked up in it.

        `semantic` loads the sentence-embedding extra (a DigestError says how to install it when
        it is missing); `embedder` passes one in instead.
        """
        if semantic and embedder is None:
            from digest.semantic import load_embedder

            embedder = load_embedder()
        ranker = cls(
            corpus=corpus, text=_fit_text(corpus), weights=weights or Weights(), embedder=embedder
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
        """Sentence embeddings of papers, each paper embedded once per ranker (the slow part)."""
        assert self.embedder is not None
        missing = {p.key: p for p in papers if p.key not in self._embeddings}
        if missing:
            vectors = self.embedder.embed([_document(p) for p in missing.values()])
            self._embeddings.update(zip(missing, vectors, strict=True))
        if not papers:
            return np.zeros((0, self.embedder.dimensions), dtype=np.float32)
        return np.stack([self._embeddings[p.key] for p in papers])

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
        blocks = [profiles[start : start + _BLOCK] for start in range(0, len(profiles), _BLOCK)]

        def rank_block(block: Sequence[ProfileConfig]) -> dict[str, tuple[ScoredPaper, ...]]:
            signals = _ProfileSignals.build(block, feedback, self, papers)
            return _choose(papers, signals, block, self)

        # Two blocks at a time: scipy and numpy release the GIL in their products, so one
        # block's matrix work overlaps the other's Python (the reasons) on a second core.
        workers = min(_THREADS, len(blocks))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for ranked in pool.map(rank_block, blocks):
                results.update(ranked)
        return results

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
        # Scaled so that a word the corpus never used is worth 1: points stay comparable.
        return np.minimum(np.asarray(values, dtype=np.float64) / self.text.unseen_idf, 1.0)

    def vectors(self, papers: Sequence[Paper]) -> sp.csr_matrix:
        assert self.text is not None
        matrix: sp.csr_matrix = self.text.vectorizer.transform(papers)
        return matrix


def _fit_text(corpus: Sequence[Paper]) -> _TextModel | None:
    documents = list(corpus)
    if not documents:
        log.warning("the store holds no papers yet: example papers cannot count until it does")
        return None
    vectorizer = TfidfVectorizer(
        analyzer=_analyzer,
        sublinear_tf=True,
        # Words in over half the corpus ("model", "method") tell papers apart poorly.
        max_df=0.5 if len(documents) >= 20 else 1.0,
        min_df=2 if len(documents) >= 1000 else 1,
        dtype=np.float32,
    )
    try:
        vectors = vectorizer.fit_transform(documents)
    except ValueError:  # no word at all: every paper is empty or only stop words
        log.warning("the stored papers hold no words to learn from: example papers cannot count")
        return None
    vocabulary: dict[str, int] = vectorizer.vocabulary_
    idf = vectorizer.idf_
    word_idf = {word: float(idf[column]) for word, column in vocabulary.items()}
    unseen = math.log((1 + len(documents)) / 1) + 1.0  # sklearn's smoothed idf for df = 0
    return _TextModel(vectorizer, sp.csr_matrix(vectors), word_idf, unseen)


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
    embeddings: np.ndarray | None  # sentence embeddings, L2-normalised (semantic extra)
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
            text_vectors=ranker.vectors(papers) if ranker.text else None,
            embeddings=ranker.embed(papers)
            if ranker.embedder
            else None,
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
    liked: sp.csr_matrix | None  # profiles x tf-idf words: centroid of liked papers
    disliked: sp.csr_matrix | None  # profiles x tf-idf words: centroid of "less" papers
    liked_rows: tuple[tuple[int, ...], ...]  # corpus rows of each profile's liked papers
    liked_embedding: np.ndarray | None  # profiles x embedding dims
    known: tuple[frozenset[str], ...]  # keys the person liked or marked: never offered again

    @classmethod
    def build(
        cls,
        profiles: Sequence[ProfileConfig],
        feedback: Mapping[str, Feedback],
        ranker: Ranker,
        papers: _PaperFeatures,
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
        liked_rows = tuple(
            _liked_rows(p, feedback.get(p.name, Feedback()), ranker) for p in profiles
        )
        disliked_rows = tuple(
            _resolve(feedback.get(p.name, Feedback()).less, ranker, p.name, "less")
            for p in profiles
        )
        liked = disliked = None
        liked_embedding = None
        if ranker.text is not None:
            liked = _centroids(liked_rows, ranker.text.corpus_vectors)
            disliked = _centroids(disliked_rows, ranker.text.corpus_vectors)
        if ranker.embedder is not None:
            liked_embedding = _embedding_centroids(liked_rows, ranker)
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
            liked=liked,
            disliked=disliked,
            liked_rows=liked_rows,
            liked_embedding=liked_embedding,
            known=tuple(
                frozenset(ranker.corpus[row].key for row in (*liked, *disliked))
                for liked, disliked in zip(liked_rows, disliked_rows, strict=True)
            ),
        )


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


def _centroids(rows: Sequence[Sequence[int]], vectors: sp.csr_matrix) -> sp.csr_matrix:
    """Each profile's mean of the given corpus rows, L2-normalised (a zero row when it has none)."""
    selection = _csr(
        [{row: 1.0 / len(chosen) for row in chosen} for chosen in rows],
        (len(rows), vectors.shape[0]),
    )
    centroids = sp.csr_matrix(selection @ vectors)
    norms = np.sqrt(np.asarray(centroids.multiply(centroids).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    return sp.csr_matrix(sp.diags(1.0 / norms) @ centroids, dtype=np.float32)


def _embedding_centroids(rows: Sequence[Sequence[int]], ranker: Ranker) -> np.ndarray:
    assert ranker.embedder is not None
    needed = sorted({row for chosen in rows for row in chosen})
    embedded = dict(zip(needed, ranker.embed([ranker.corpus[r] for r in needed]), strict=True))
    centroids = np.zeros((len(rows), ranker.embedder.dimensions), dtype=np.float32)
    for i, chosen in enumerate(rows):
        if chosen:
            mean = np.mean([embedded[r] for r in chosen], axis=0)
            centroids[i] = mean / (np.linalg.norm(mean) or 1.0)
    return centroids


# -- scores and the final choice -------------------------------------------------------------------


def _choose(
    papers: _PaperFeatures,
    signals: _ProfileSignals,
    profiles: Sequence[ProfileConfig],
    ranker: Ranker,
) -> dict[str, tuple[ScoredPaper, ...]]:
    parts = _score_parts(papers, signals, ranker.weights)
    total = sum(parts.values(), np.zeros((len(papers.papers), len(profiles))))
    left_out = (papers.term_hits @ signals.negatives.T) + (papers.primary @ signals.excludes.T)
    total[left_out.toarray() > 0] = -np.inf
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
    return _explain(papers, signals, parts, total, ranker, profiles, picks)


def _score_parts(
    papers: _PaperFeatures, signals: _ProfileSignals, weights: Weights
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
    }
    if papers.text_vectors is not None and signals.liked is not None:
        parts["examples"] = weights.example * (papers.text_vectors @ signals.liked.T).toarray()
    if papers.text_vectors is not None and signals.disliked is not None:
        parts["less"] = -weights.less * (papers.text_vectors @ signals.disliked.T).toarray()
    if papers.embeddings is not None and signals.liked_embedding is not None:
        similarity = papers.embeddings @ signals.liked_embedding.T
        parts["semantic"] = weights.semantic * np.maximum(similarity, 0.0)
    return parts


def _explain(
    papers: _PaperFeatures,
    signals: _ProfileSignals,
    parts: Mapping[str, np.ndarray],
    total: np.ndarray,
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
    centroid_cosines = (
        parts["examples"][pick_rows, pick_columns] / ranker.weights.example
        if "examples" in parts and ranker.weights.example > 0
        else None
    )
    similar_row, similarity = _most_similar_liked(
        papers, signals, ranker, pick_rows, counts, centroid_cosines
    )
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
            )
            chosen.append(ScoredPaper(paper, scores[i], reasons))
        results[profile.name] = tuple(chosen)
        start += count
    return results


def _most_similar_liked(
    papers: _PaperFeatures,
    signals: _ProfileSignals,
    ranker: Ranker,
    pick_rows: np.ndarray,
    counts: Sequence[int],
    centroid_cosines: np.ndarray | None,
) -> tuple[list[int], list[float]]:
    """For each pick, the corpus row of its profile's most similar liked paper (-1 for none)
    and the cosine, when that cosine is worth showing (at least SHOWN_SIMILARITY).

    Computed for exactly the (pick, liked paper) pairs that can reach it: tf-idf cosines are
    never negative, so the cosine to the centroid of k liked papers is at least the best single
    cosine / k, and a pick whose centroid cosine is lower than SHOWN_SIMILARITY / k is skipped.
    """
    none: tuple[list[int], list[float]] = ([-1] * len(pick_rows), [0.0] * len(pick_rows))
    if ranker.text is None or papers.text_vectors is None or not len(pick_rows):
        return none
    liked_per_pick = [signals.liked_rows[c] for c, n in enumerate(counts) for _ in range(n)]
    sizes = np.fromiter((len(rows) for rows in liked_per_pick), np.int64, len(liked_per_pick))
    if centroid_cosines is not None:
        reachable = centroid_cosines * np.maximum(sizes, 1) >= SHOWN_SIMILARITY - 1e-6
        liked_per_pick = [
            rows if ok else () for rows, ok in zip(liked_per_pick, reachable, strict=True)
        ]
        sizes = np.where(reachable, sizes, 0)
    if not sizes.sum():
        return none
    pair_pick = np.repeat(np.arange(len(pick_rows)), sizes)
    pair_liked = np.fromiter(
        (row for rows in liked_per_pick for row in rows), np.int64, int(sizes.sum())
    )
    liked_vectors = ranker.text.corpus_vectors[pair_liked]
    paper_vectors = papers.text_vectors[pick_rows[pair_pick]]
    cosines = np.asarray(liked_vectors.multiply(paper_vectors).sum(axis=1)).ravel()
    # Best pair of each pick: sort by pick, then by cosine descending; take each group's first.
    order = np.lexsort((-cosines, pair_pick))
    firsts = order[np.concatenate(([0], np.cumsum(sizes)[:-1]))[sizes > 0]]
    best_row, best_cosine = none[0][:], none[1][:]
    for pair in firsts.tolist():
        if cosines[pair] >= SHOWN_SIMILARITY:
            best_row[pair_pick[pair]] = int(pair_liked[pair])
            best_cosine[pair_pick[pair]] = round(float(cosines[pair]), 4)
    return best_row, best_cosine
