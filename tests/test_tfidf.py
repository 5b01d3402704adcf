"""digest.tfidf makes the vectors scikit-learn's TfidfVectorizer made for the ranking, bit for bit:
the same words, the same idf, the same values in the same order in every row (later sums depend
on the order)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import scipy.sparse as sp
from helpers import corpus
from sklearn.feature_extraction.text import TfidfVectorizer

from digest.rank import _analyzer
from digest.tfidf import TfIdf

WORDS = [f"w{n}" for n in range(400)] + ["graph", "graphs", "ünïcode", "变换器", "model"]


def documents(count: int, seed: int) -> list[str]:
    """Documents of Zipf-ish words (some rare, some in most), a few empty."""
    rng = random.Random(seed)
    weights = [1 / (rank + 1) for rank in range(len(WORDS))]
    return [
        " ".join(rng.choices(WORDS, weights, k=rng.randint(0, 120))) if n % 97 else ""
        for n in range(count)
    ]


def sklearn_vectors(
    texts: list[str], min_df: int, others: list[str]
) -> tuple[TfidfVectorizer, sp.csr_matrix, sp.csr_matrix]:
    reference = TfidfVectorizer(analyzer=str.split, sublinear_tf=True, min_df=min_df, dtype=np.float32)
    fitted = sp.csr_matrix(reference.fit_transform(texts))
    return reference, fitted, sp.csr_matrix(reference.transform(others))


def same(ours: sp.csr_matrix, theirs: sp.csr_matrix) -> bool:
    return (
        ours.shape == theirs.shape
        and np.array_equal(ours.indptr, theirs.indptr)
        and np.array_equal(ours.indices, theirs.indices)
        and np.array_equal(ours.data, theirs.data)
        and ours.data.dtype == theirs.data.dtype == np.float32
    )


@pytest.mark.parametrize(("count", "min_df", "seed"), [(1500, 2, 1), (300, 1, 2), (40, 3, 3)])
def test_the_vectors_are_scikit_learns_bit_for_bit(count: int, min_df: int, seed: int) -> None:
    texts, others = documents(count, seed), [*documents(200, seed + 100), "unseen words only"]
    reference, fitted, transformed = sklearn_vectors(texts, min_df, others)
    ours = TfIdf(str.split, min_df=min_df)
    assert same(ours.fit_transform(texts), fitted)
    assert ours.vocabulary == reference.vocabulary_
    assert np.array_equal(ours.idf, reference.idf_) and ours.idf.dtype == np.float32
    assert same(ours.transform(others), transformed)


def test_the_rankings_papers_give_scikit_learns_vectors_too() -> None:
    papers = corpus()
    reference = TfidfVectorizer(analyzer=_analyzer, sublinear_tf=True, min_df=1, dtype=np.float32)
    fitted = sp.csr_matrix(reference.fit_transform(papers))
    ours = TfIdf(_analyzer, min_df=1)
    assert same(ours.fit_transform(papers), fitted)
    assert same(ours.transform(papers[:3]), sp.csr_matrix(reference.transform(papers[:3])))


def test_no_words_at_all_is_a_value_error_as_before() -> None:
    with pytest.raises(ValueError):
        TfIdf(str.split).fit_transform(["", " "])
    with pytest.raises(ValueError):  # every word in one document only
        TfIdf(str.split, min_df=2).fit_transform(["a b", "c d"])
