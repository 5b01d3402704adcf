"""A profile that learns from its reader's ratings (pure).

Once a profile has at least MIN_LIKED liked papers (examples and "more" marks) and MIN_DISLIKED
papers marked "less", a logistic regression on sentence embeddings learns what separates them:
liked papers are the positives; "less" papers and a background sample of stored papers (most
papers are not for any one reader) are the negatives. Its probability p of "more" adds
`Weights.learned` x max(0, 2p - 1) to a paper's score. Before that (cold start), the examples and
keywords decide alone. A model is retrained only when the marks change: its fingerprint is the
model name and the marked keys, and the caller keeps models between runs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

MIN_LIKED = 3
MIN_DISLIKED = 2
BACKGROUND = 200  # stored papers sampled as "probably not for this reader"
_LESS_WEIGHT = 3.0  # a "less" mark says far more than a background paper does


@dataclass(frozen=True, slots=True)
class LearnedProfile:
    fingerprint: str
    coefficients: np.ndarray  # one per embedding dimension
    intercept: float


def fingerprint(model: str, liked: Iterable[str], disliked: Iterable[str]) -> str:
    """What a learned model depends on: when none of it changed, the model is reused."""
    text = "\n".join([model, ",".join(sorted(liked)), ",".join(sorted(disliked))])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def train(
    print_: str, liked: np.ndarray, disliked: np.ndarray, background: np.ndarray
) -> LearnedProfile:
    """Fit one profile's model; `print_` is its fingerprint. All arrays are papers x dims."""
    from sklearn.linear_model import LogisticRegression

    features = np.vstack([liked, disliked, background])
    labels = np.concatenate([np.ones(len(liked)), np.zeros(len(disliked) + len(background))])
    negatives = len(disliked) * _LESS_WEIGHT + len(background)
    weights = np.concatenate(
        [
            np.full(len(liked), negatives / max(len(liked), 1)),  # both classes weigh the same
            np.full(len(disliked), _LESS_WEIGHT),
            np.ones(len(background)),
        ]
    )
    model = LogisticRegression(C=1.0, solver="newton-cg", max_iter=100)  # 4 ms a profile
    model.fit(features, labels, sample_weight=weights)
    return LearnedProfile(
        print_, np.asarray(model.coef_[0], dtype=np.float32), float(model.intercept_[0])
    )


def to_stored(model: LearnedProfile) -> tuple[str, bytes, float]:
    """As the store keeps it: fingerprint, float32 coefficients as bytes, intercept."""
    return model.fingerprint, np.asarray(model.coefficients, np.float32).tobytes(), model.intercept


def from_stored(stored: tuple[str, bytes, float]) -> LearnedProfile:
    print_, blob, intercept = stored
    return LearnedProfile(print_, np.frombuffer(blob, dtype=np.float32), float(intercept))
