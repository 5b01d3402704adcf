"""tf-idf vectors of the stored papers, as scikit-learn's TfidfVectorizer makes them, without it.

The ranking fits tf-idf once a run (digest.rank). It used TfidfVectorizer(analyzer=...,
sublinear_tf=True, min_df=..., dtype=float32), and importing scikit-learn for it took over half
a second of every run (its estimators' machinery, scipy.stats), for these few steps:

- counts: each document's words (from the analyzer) counted, columns given in order of first
  appearance, then renumbered in the words' sorted order; words in fewer than `min_df`
  documents left out;
- weights: 1 + log(count), times idf = 1 + log((1 + documents) / (1 + documents with the word));
- each row scaled to unit length.

tests/test_tfidf.py compares the vocabulary, the idf and every vector (values, and the order of
each row's entries, which later sums depend on) with TfidfVectorizer's, bit for bit. scikit-learn
is still what digest.learn trains the readers' models with, imported only then.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Generic, TypeVar

import numpy as np
import scipy.sparse as sp

Document = TypeVar("Document")


class TfIdf(Generic[Document]):
    """`fit_transform(documents)` once, then `transform(others)` with the same words and idf."""

    def __init__(self, analyzer: Callable[[Document], Iterable[str]], *, min_df: int = 1) -> None:
        self.analyzer = analyzer
        self.min_df = min_df
        self.vocabulary: dict[str, int] = {}  # word -> column, in the words' sorted order
        self.idf = np.zeros(0, dtype=np.float32)

    def fit_transform(self, documents: Sequence[Document]) -> sp.csr_matrix:
        """Learn the words and their idf from `documents`, and return their vectors. ValueError
        when no word is left (no document has one, or none is in `min_df` documents)."""
        first_seen: dict[str, int] = {}
        counts = self._counts(documents, first_seen, learn=True)
        if not first_seen:
            raise ValueError("empty vocabulary: the documents hold no words")
        words = sorted(first_seen)
        columns = np.fromiter((first_seen[word] for word in words), np.int64, len(words))
        in_documents = np.bincount(counts.indices, minlength=counts.shape[1])[columns]
        kept = in_documents >= self.min_df
        if not kept.any():
            raise ValueError(f"no word is in {self.min_df} documents or more")
        # One column selection renumbers and prunes; each row keeps its entries' order.
        counts = counts[:, columns[kept]]
        self.vocabulary = {
            word: column
            for column, word in enumerate(word for word, keep in zip(words, kept, strict=True) if keep)
        }
        # float32 throughout, in scikit-learn's order of operations (smoothed idf).
        smoothed = in_documents[kept].astype(np.float32) + np.float32(1.0)
        idf = np.full_like(smoothed, len(documents) + 1, dtype=np.float32)
        idf /= smoothed
        np.log(idf, out=idf)
        idf += np.float32(1.0)
        self.idf = idf
        return self._weighted(counts)

    def transform(self, documents: Sequence[Document]) -> sp.csr_matrix:
        """The vectors of `documents` over the fitted words (others are left out)."""
        return self._weighted(self._counts(documents, self.vocabulary, learn=False))

    def _counts(
        self, documents: Sequence[Document], columns: dict[str, int], *, learn: bool
    ) -> sp.csr_matrix:
        """Documents x words counts; with `learn`, a new word gets the next column."""
        indices: list[int] = []
        values: list[int] = []
        starts = [0]
        for document in documents:
            counted = Counter(self.analyzer(document))  # words in order of first appearance
            if learn:
                indices += [columns.setdefault(word, len(columns)) for word in counted]
                values += counted.values()
            else:
                for word, count in counted.items():
                    column = columns.get(word)
                    if column is not None:
                        indices.append(column)
                        values.append(count)
            starts.append(len(indices))
        matrix = sp.csr_matrix(
            (
                np.asarray(values, dtype=np.float32),
                np.asarray(indices, dtype=np.int32),
                np.asarray(starts, dtype=np.int32),
            ),
            shape=(len(documents), len(columns)),
        )
        matrix.sort_indices()
        return matrix

    def _weighted(self, counts: sp.csr_matrix) -> sp.csr_matrix:
        """Sublinear tf times idf, each row scaled to unit length (sums of squares in float64,
        row by row, as scikit-learn's normalize does)."""
        data = counts.data
        np.log(data, out=data)
        data += np.float32(1.0)
        data *= self.idf[counts.indices]
        lengths = np.diff(counts.indptr)
        squares = np.zeros(counts.shape[0], dtype=np.float64)
        filled = lengths > 0
        squares[filled] = np.add.reduceat((data * data).astype(np.float64), counts.indptr[:-1][filled])
        norms = np.repeat(np.sqrt(squares), lengths)
        counts.data = np.divide(
            data.astype(np.float64), norms, out=np.zeros(len(norms)), where=norms != 0
        ).astype(np.float32)
        return counts
